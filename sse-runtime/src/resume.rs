//! Where a stream resumes: the ids a stream sends, the `Last-Event-ID` a client sends back, and
//! what a broker's shared history gives a client the local history does not cover.
//!
//! Each group numbers its own events. A stream of one group sends that group's ids (`id: 17`).
//! A stream of several groups sends its position in each of them, in the stream's order of
//! groups (`id: yo.bob:17,yo:40`): group names never hold `:` or `,`, so the id reads back
//! exactly, and a client resuming with it resumes every group where it was.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::GroupName;
#[cfg(feature = "redis")]
use {
    crate::BrokerError,
    std::{future::Future, pin::Pin},
};

/// The id a reconnecting client last saw: the `Last-Event-ID` header that browsers resend, or
/// else a `lastEventId` query parameter for clients that cannot set headers.
///
/// An axum extractor; it never rejects. A value that is not an id this stream's groups gave
/// (garbage, non-UTF-8, from another stream, longer than
/// [`Config::max_last_event_id_len`](crate::Config::max_last_event_id_len)) is not an error: the
/// stream starts with a `stream-reset` event instead of a replay.
///
/// ```
/// use axum::{extract::Request, extract::FromRequestParts};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = Request::builder().uri("/events?lastEventId=42").body(()).unwrap();
/// let (mut parts, ()) = request.into_parts();
/// let last = sse::LastEventId::from_request_parts(&mut parts, &()).await.unwrap();
/// assert_eq!(last.as_bytes(), Some(&b"42"[..]));
/// assert_eq!(sse::LastEventId::new("yo.bob:17,yo:40").as_bytes(), Some(&b"yo.bob:17,yo:40"[..]));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastEventId(Option<Bytes>);

impl LastEventId {
    /// The id a client sent, as it sent it; an empty one means none.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let groups = [sse::GroupName::new("yo")?];
    /// let id = hub.publish("yo", None, "hi")?; // nobody listens: not kept
    /// let subscription = hub.subscribe(groups, &sse::LastEventId::new(id.to_string()))?;
    /// # let _ = subscription;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(id: impl Into<Bytes>) -> Self {
        Self(Some(id.into()).filter(|id| !id.is_empty()))
    }

    /// The raw value, if the client sent one.
    ///
    /// ```
    /// assert_eq!(sse::LastEventId::default().as_bytes(), None);
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }

    /// Where a stream of `groups` resumes: after these ids, one per group in `groups`' order;
    /// `Ok(None)` when the client sent no id (it starts live).
    pub(crate) fn resume(
        &self,
        groups: &[GroupName],
        max_len: usize,
    ) -> Result<Option<Vec<u64>>, &'static str> {
        let Some(raw) = &self.0 else {
            return Ok(None);
        };
        if raw.len() > max_len {
            return Err("id too long");
        }
        let text = std::str::from_utf8(raw).map_err(|_| "not an id")?;
        if let Ok(id) = text.parse::<u64>() {
            return match groups {
                [_] => Ok(Some(vec![id])),
                _ => Err("id of another stream"),
            };
        }
        let positions = parse_positions(text).ok_or("not an id")?;
        groups
            .iter()
            .map(|group| {
                positions
                    .iter()
                    .find(|(name, _)| *name == group.as_str())
                    .map(|&(_, id)| id)
                    .ok_or("id of another stream")
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

/// `name:id,name:id…`, each name a group name, none twice.
fn parse_positions(text: &str) -> Option<Vec<(&str, u64)>> {
    let mut positions: Vec<(&str, u64)> = Vec::new();
    for part in text.split(',') {
        let (name, id) = part.split_once(':')?;
        sse_names::check_group(name).ok()?;
        if !id.bytes().all(|b| b.is_ascii_digit()) || positions.iter().any(|(n, _)| *n == name) {
            return None;
        }
        positions.push((name, id.parse().ok()?));
    }
    Some(positions)
}

/// The id line of a stream at `positions` (one per group, in the stream's order), ending the
/// event it closes: `id: 17\n\n`, or `id: yo.bob:17,yo:40\n\n` for several groups.
pub(crate) fn put_id_line(out: &mut BytesMut, groups: &[GroupName], positions: &[u64]) {
    out.put_slice(b"id: ");
    if let ([_], [id]) = (groups, positions) {
        out.put_slice(itoa::Buffer::new().format(*id).as_bytes());
    } else {
        let mut text = String::with_capacity(groups.len() * 24);
        for (i, (group, id)) in groups.iter().zip(positions).enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(text, "{comma}{group}:{id}");
        }
        out.put_slice(text.as_bytes());
    }
    out.put_slice(b"\n\n");
}

/// The id alone, as a stream sends it: `17` or `yo.bob:17,yo:40`.
pub(crate) fn id_text(groups: &[GroupName], positions: &[u64]) -> String {
    let mut line = BytesMut::new();
    put_id_line(&mut line, groups, positions);
    String::from_utf8_lossy(&line[4..line.len() - 2]).into_owned()
}

/// What a broker's shared history gives a client the local history does not cover.
#[cfg(feature = "redis")]
pub(crate) enum CaughtUp {
    /// Where the stream starts, the missed events in the order their groups received them, and
    /// where each group stands after them.
    Replay {
        /// Per group, the id the stream starts from: the client's, or where the group stood for
        /// one the client had no id of.
        start: Vec<u64>,
        /// Each event: its group's index in the stream, its id, and its encoding without the id
        /// line.
        events: Vec<(usize, u64, Bytes)>,
        /// Per group: every event up to this id is in `events` or came before the client's id;
        /// the live stream skips them.
        through: Vec<u64>,
    },
    /// Some missed events are no longer kept; the stream goes on from `through`.
    Reset {
        /// Why, as the `stream-reset` event says it.
        reason: &'static str,
        /// Per group, where the stream goes on from.
        through: Vec<u64>,
    },
}

/// A broker's answer to a catch-up, on its way.
#[cfg(feature = "redis")]
pub(crate) type CatchUp = Pin<Box<dyn Future<Output = Result<CaughtUp, BrokerError>> + Send>>;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn groups(names: &[&str]) -> Vec<GroupName> {
        names.iter().map(|n| GroupName::new(*n).unwrap()).collect()
    }

    fn resume(id: &str, names: &[&str]) -> Result<Option<Vec<u64>>, &'static str> {
        LastEventId::new(id.to_owned()).resume(&groups(names), 1024)
    }

    #[test]
    fn one_group_sends_and_takes_plain_ids() {
        assert_eq!(id_text(&groups(&["yo"]), &[17]), "17");
        assert_eq!(resume("17", &["yo"]), Ok(Some(vec![17])));
        assert_eq!(resume("yo:17", &["yo"]), Ok(Some(vec![17])));
        assert_eq!(
            LastEventId::default().resume(&groups(&["yo"]), 64),
            Ok(None)
        );
    }

    #[test]
    fn several_groups_send_and_take_their_positions_in_any_order() {
        let both = groups(&["yo.bob", "yo"]);
        assert_eq!(id_text(&both, &[17, 40]), "yo.bob:17,yo:40");
        assert_eq!(
            resume("yo:40,yo.bob:17", &["yo.bob", "yo"]),
            Ok(Some(vec![17, 40]))
        );
        assert_eq!(
            resume("yo.bob:17,yo:40,extra:1", &["yo"]),
            Ok(Some(vec![40]))
        );
    }

    #[test]
    fn ids_that_do_not_fit_the_stream_are_refused_with_a_reason() {
        let cases = [
            ("17", &["a", "b"][..], "id of another stream"),
            ("a:1", &["a", "b"], "id of another stream"),
            ("a:1,a:2", &["a"], "not an id"),
            ("a:1,,b:2", &["a", "b"], "not an id"),
            ("a:-1", &["a"], "not an id"),
            ("a:+1", &["a"], "not an id"),
            ("a b:1", &["a"], "not an id"),
            ("a:99999999999999999999", &["a"], "not an id"),
            ("yo", &["yo"], "not an id"),
            ("", &["yo"], "not an id"),
        ];
        for (id, names, why) in cases {
            let got = if id.is_empty() {
                LastEventId(Some(Bytes::new())).resume(&groups(names), 64)
            } else {
                resume(id, names)
            };
            assert_eq!(got, Err(why), "{id:?}");
        }
        let long = LastEventId::new("1".repeat(65));
        assert_eq!(long.resume(&groups(&["yo"]), 64), Err("id too long"));
        let binary = LastEventId::new(&b"\xff\xfe"[..]);
        assert_eq!(binary.resume(&groups(&["yo"]), 64), Err("not an id"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// What a stream sends, a reconnect reads back exactly.
        #[test]
        fn sent_ids_read_back(
            names in prop::collection::hash_set("[a-zA-Z0-9._-]{1,20}", 1..5),
            seed in any::<u64>(),
        ) {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let groups = groups(&names);
            let positions: Vec<u64> = (0..groups.len() as u64).map(|i| seed.wrapping_mul(i + 1)).collect();
            let id = id_text(&groups, &positions);
            prop_assert!(!id.contains(['\r', '\n', '\0']));
            let back = LastEventId::new(id).resume(&groups, 4096);
            prop_assert_eq!(back, Ok(Some(positions)));
        }

        /// Anything else is a reason, never a panic.
        #[test]
        fn any_bytes_are_an_id_or_a_reason(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            let groups = groups(&["yo", "yo.bob"]);
            match LastEventId::new(raw).resume(&groups, 150) {
                Ok(Some(positions)) => prop_assert_eq!(positions.len(), 2),
                Ok(None) => {}
                Err(why) => prop_assert!(!why.is_empty()),
            }
        }
    }
}
