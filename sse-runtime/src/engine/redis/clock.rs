//! Redis's clock as this process reckons it, per hash slot: what the publishing script would
//! otherwise ask with `TIME`, a call in every publish. A publish that finds no recent reading
//! for its slot asks the script for Redis's time with its answer; the publishes after it send
//! that reading plus the time elapsed on this process's monotonic clock. Time stamps stay those
//! of the Redis serving the group (the clocks of the machines running the processes do not
//! matter), off by at most half the round trip of the reading, and a reading is taken again
//! every [`READ_EVERY`], so drift between the clocks does not add up.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How long a reading of Redis's clock is used.
const READ_EVERY: Duration = Duration::from_secs(10);
/// A reading whose round trip took longer is not kept: it could be off by half of it.
const SLOWEST_READING: Duration = Duration::from_millis(4);

/// The last reading of each slot's Redis clock (slot `0` for a single Redis).
#[derive(Default)]
pub(super) struct Clocks {
    readings: Mutex<HashMap<u16, Reading>>,
}

/// Redis's clock, in µs, at an instant of this process.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    micros: u64,
}

impl Clocks {
    /// Redis's time now, in µs, on the node serving `slot`; `None` when it is to be read.
    pub(super) fn now(&self, slot: u16) -> Option<u64> {
        let readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        let reading = readings.get(&slot)?;
        let elapsed = reading.at.elapsed();
        (elapsed < READ_EVERY).then(|| reading.micros + elapsed.as_micros() as u64)
    }

    /// Keeps `micros`, the time Redis gave for `slot` in a request sent at `sent` and
    /// answered now, unless the round trip was too slow to place it.
    pub(super) fn read(&self, slot: u16, sent: Instant, micros: u64) {
        let round_trip = sent.elapsed();
        if round_trip > SLOWEST_READING {
            return;
        }
        let reading = Reading {
            at: sent + round_trip / 2,
            micros,
        };
        let mut readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        readings.insert(slot, reading);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_read_until_a_reading_is_kept_then_its_time_goes_on_from_it() {
        let clocks = Clocks::default();
        assert_eq!(clocks.now(7), None);
        clocks.read(7, Instant::now(), 1_000_000);
        let now = clocks.now(7).expect("a reading just taken");
        assert!(now >= 1_000_000, "{now}");
        assert_eq!(clocks.now(8), None);
    }

    #[test]
    fn a_reading_from_a_slow_round_trip_is_not_kept() {
        let clocks = Clocks::default();
        let Some(long_ago) = Instant::now().checked_sub(SLOWEST_READING * 2) else {
            return;
        };
        clocks.read(3, long_ago, 1_000_000);
        assert_eq!(clocks.now(3), None);
    }
}
