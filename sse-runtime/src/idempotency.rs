//! Idempotency keys: a publish that carries one, repeated within the window, gets the first
//! publish's id and publishes nothing, so a publisher whose request timed out can send it again.
//!
//! A key is unique within its group. This is the table of the events numbered here (the
//! in-memory engine); an engine shared by processes keeps its keys itself, with the events.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::{EventId, PublishError};

/// The most keys remembered: past it the oldest are forgotten first, even within the window.
const MAX_KEYS: usize = 100_000;

/// Checks a key as a publish takes it: 1 to 255 bytes of visible ASCII, so that it travels as
/// it is in a header, a JSON string or a Redis key.
pub(crate) fn check(key: &str) -> Result<(), PublishError> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > 255 {
        "longer than 255 bytes"
    } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
        "a character that is not visible ASCII (letters, digits, punctuation; no spaces)"
    } else {
        return Ok(());
    };
    Err(PublishError::InvalidKey { reason })
}

/// The keys of the publishes numbered here, with their ids, for as long as the window.
pub(crate) struct Seen {
    window: Duration,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    ids: HashMap<(String, String), EventId>,
    /// Group and key, oldest first, with when they were first published.
    order: VecDeque<(Instant, (String, String))>,
}

impl Seen {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            table: Mutex::default(),
        }
    }

    /// The id `key` got in `group` within the window, or the one `publish` gives (`publish`
    /// runs at most once per key: concurrent publishes of one key wait for the first).
    pub(crate) fn once(
        &self,
        group: &str,
        key: &str,
        publish: impl FnOnce() -> Result<EventId, PublishError>,
    ) -> Result<EventId, PublishError> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some((at, _)) = table.order.front() {
            if now.duration_since(*at) < self.window && table.order.len() < MAX_KEYS {
                break;
            }
            if let Some((_, forgotten)) = table.order.pop_front() {
                table.ids.remove(&forgotten);
            }
        }
        let entry = (group.to_owned(), key.to_owned());
        if let Some(&id) = table.ids.get(&entry) {
            return Ok(id);
        }
        let id = publish()?;
        table.ids.insert(entry.clone(), id);
        table.order.push_back((now, entry));
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_publishes_once_per_group_within_the_window_and_again_after_it() {
        let seen = Seen::new(Duration::from_millis(50));
        let mut next = 0;
        let mut publish = |group, key| {
            seen.once(group, key, || {
                next += 1;
                Ok(EventId(next))
            })
        };
        assert_eq!(publish("a", "k").unwrap(), EventId(1));
        assert_eq!(publish("a", "k").unwrap(), EventId(1), "repeated");
        assert_eq!(publish("b", "k").unwrap(), EventId(2), "another group");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(publish("a", "k").unwrap(), EventId(3), "after the window");
    }

    #[test]
    fn a_failed_publish_leaves_its_key_free() {
        let seen = Seen::new(Duration::from_secs(60));
        let refused = seen.once("a", "k", || Err(PublishError::ShutDown));
        assert!(refused.is_err());
        assert_eq!(seen.once("a", "k", || Ok(EventId(7))).unwrap(), EventId(7));
    }

    #[test]
    fn keys_are_visible_ascii_of_at_most_255_bytes() {
        for good in ["k", "order-17:shipped", "a/b_c.d~e", &"x".repeat(255)] {
            assert!(check(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"x".repeat(256) as &str, "longer than 255 bytes"),
            ("a b", "a character"),
            ("é", "a character"),
            ("a\n", "a character"),
        ] {
            let err = check(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("invalid idempotency key: ") && err.contains(why),
                "{err}"
            );
        }
    }
}
