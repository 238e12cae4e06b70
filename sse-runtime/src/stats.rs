//! What a hub has done so far: counters kept with atomics (no lock on the hot path), read
//! together as a [`Stats`] snapshot, written in Prometheus' text format (which [`metrics`](crate::metrics) serves).

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// The running totals a hub keeps.
#[derive(Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Relaxed);
    }

    pub(crate) fn delivered(&self, events: u64) {
        self.delivered.fetch_add(events, Relaxed);
    }

    pub(crate) fn replayed(&self, events: u64) {
        self.replayed.fetch_add(events, Relaxed);
    }

    pub(crate) fn dropped(&self, streams: u64) {
        self.dropped.fetch_add(streams, Relaxed);
    }
}

/// A snapshot of a hub's state and totals since it was made, from [`Hub::stats`](crate::Hub::stats).
///
/// Its `Display` is the Prometheus text exposition format ([`metrics`](crate::metrics) serves
/// it).
///
/// ```
/// let hub = sse::Hub::new(sse::Config::default());
/// hub.publish("yo", Some("yo"), "nobody listens yet")?;
/// let stats = hub.stats();
/// assert_eq!(stats.published, 1);
/// assert_eq!(stats.open_streams, 0);
/// assert!(stats.to_string().contains("sse_events_published_total 1\n"));
/// # Ok::<(), sse::PublishError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Groups held: with subscribers, or with history kept for clients that may come back.
    pub groups: usize,
    /// Streams open now.
    pub open_streams: usize,
    /// Events accepted by `publish`, whether anyone listened or not.
    pub published: u64,
    /// Events written to streams: one event read by three streams counts three.
    pub delivered: u64,
    /// Of those, the events a reconnecting client got back from the history after its
    /// `Last-Event-ID`.
    pub replayed: u64,
    /// Streams cut because their client fell more than `subscriber_queue` events behind (it
    /// reconnects and replays what it missed).
    pub dropped: u64,
}

impl Stats {
    pub(crate) fn new(counters: &Counters, groups: usize, open_streams: usize) -> Self {
        Self {
            groups,
            open_streams,
            published: counters.published.load(Relaxed),
            delivered: counters.delivered.load(Relaxed),
            replayed: counters.replayed.load(Relaxed),
            dropped: counters.dropped.load(Relaxed),
        }
    }
}

impl fmt::Display for Stats {
    /// Prometheus text exposition format, version 0.0.4.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metrics: [(&str, &str, &str, u64); 6] = [
            ("sse_groups", "gauge", "Groups held.", self.groups as u64),
            (
                "sse_open_streams",
                "gauge",
                "Streams open now.",
                self.open_streams as u64,
            ),
            (
                "sse_events_published_total",
                "counter",
                "Events published.",
                self.published,
            ),
            (
                "sse_events_delivered_total",
                "counter",
                "Events written to streams.",
                self.delivered,
            ),
            (
                "sse_events_replayed_total",
                "counter",
                "Events replayed to reconnecting clients.",
                self.replayed,
            ),
            (
                "sse_streams_dropped_total",
                "counter",
                "Streams cut for falling too far behind.",
                self.dropped,
            ),
        ];
        for (name, kind, help, value) in metrics {
            writeln!(
                f,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            )?;
        }
        Ok(())
    }
}
