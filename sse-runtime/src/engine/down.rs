//! A place an engine found unreachable (a Redis hash slot's node, a Postgres): until a short
//! while has passed, publishes to it fail at once with its error instead of each waiting out
//! the timeouts; then one tries again while the others still fail.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::BrokerError;

/// The places found down, each with its error, for `down_for` after each failure.
pub(crate) struct Downs<K> {
    down_for: Duration,
    places: Mutex<HashMap<K, Down>>,
}

struct Down {
    until: Instant,
    error: BrokerError,
    probing: bool,
}

impl<K: Eq + Hash> Downs<K> {
    pub(crate) fn new(down_for: Duration) -> Self {
        Self {
            down_for,
            places: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a publish to `place` may go now: not while it counts as down, except the one
    /// that tries again once the while has passed.
    pub(crate) fn may_try(&self, place: &K) -> Result<(), BrokerError> {
        let mut places = self.places.lock().unwrap_or_else(PoisonError::into_inner);
        match places.get_mut(place) {
            None => Ok(()),
            Some(down) if down.probing || Instant::now() < down.until => Err(down.error.clone()),
            Some(down) => {
                down.probing = true;
                Ok(())
            }
        }
    }

    /// What a publish to `place` found.
    pub(crate) fn found<T>(&self, place: K, answer: &Result<T, BrokerError>) {
        let mut places = self.places.lock().unwrap_or_else(PoisonError::into_inner);
        match answer {
            Ok(_) => drop(places.remove(&place)),
            Err(error) => drop(places.insert(
                place,
                Down {
                    until: Instant::now() + self.down_for,
                    error: error.clone(),
                    probing: false,
                },
            )),
        }
    }
}
