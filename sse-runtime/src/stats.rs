//! What a hub has done so far: counters kept with atomics (no lock on the hot path), read
//! together as a [`Stats`] snapshot, written in Prometheus' text format (which [`metrics`](crate::metrics) serves).

use std::{
    cell::Cell,
    fmt,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
};

/// Stripes of the counters: each thread adds to one, so cores do not hand one cache line back
/// and forth on every publish and every read. Reading sums them.
const STRIPES: usize = 16;

/// The running totals a hub keeps.
#[derive(Default)]
pub(crate) struct Counters {
    stripes: [Stripe; STRIPES],
}

/// One stripe of every counter, alone on its cache lines (128 bytes: two lines, as neighbouring
/// lines are fetched in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    published: AtomicU64,
    delivered: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
}

/// The stripe of the calling thread: threads take stripes in turn as they first count.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = Cell::new(NEXT.fetch_add(1, Relaxed) % STRIPES);
    }
    INDEX.with(Cell::get)
}

impl Counters {
    fn mine(&self) -> &Stripe {
        &self.stripes[stripe_index()]
    }

    fn total(&self, counter: fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes.iter().map(|s| counter(s).load(Relaxed)).sum()
    }

    pub(crate) fn published(&self) {
        self.mine().published.fetch_add(1, Relaxed);
    }

    pub(crate) fn delivered(&self, events: u64) {
        self.mine().delivered.fetch_add(events, Relaxed);
    }

    pub(crate) fn replayed(&self, events: u64) {
        self.mine().replayed.fetch_add(events, Relaxed);
    }

    pub(crate) fn dropped(&self, streams: u64) {
        self.mine().dropped.fetch_add(streams, Relaxed);
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
    /// What the webhooks have done, if the hub has any ([`Config::webhooks`](crate::Config::webhooks);
    /// feature `webhooks`).
    #[cfg(feature = "webhooks")]
    pub webhooks: Option<crate::WebhookStats>,
}

impl Stats {
    #[cfg_attr(not(feature = "webhooks"), allow(unused_variables))]
    pub(crate) fn new(
        counters: &Counters,
        groups: usize,
        open_streams: usize,
        hooks: &crate::hooks::Hooks,
    ) -> Self {
        Self {
            groups,
            open_streams,
            published: counters.total(|s| &s.published),
            delivered: counters.total(|s| &s.delivered),
            replayed: counters.total(|s| &s.replayed),
            dropped: counters.total(|s| &s.dropped),
            #[cfg(feature = "webhooks")]
            webhooks: hooks.webhook_stats(),
        }
    }
}

/// A snapshot of one group in a hub, from [`Hub::group_stats`](crate::Hub::group_stats).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = sse::Hub::new(sse::Config::default());
/// let yo = sse::GroupName::new("yo")?;
/// let (_phone, _laptop) = (hub.subscribe(yo.clone(), &Default::default())?, hub.subscribe(yo, &Default::default())?);
/// let stats: sse::GroupStats = hub.group_stats("yo");
/// assert_eq!(stats.subscribers, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GroupStats {
    /// Streams open to the group in this hub (with Redis, in this process only). A stream of
    /// several groups counts in each.
    pub subscribers: usize,
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
        #[cfg(feature = "webhooks")]
        if let Some(webhooks) = &self.webhooks {
            write!(f, "{webhooks}")?;
        }
        Ok(())
    }
}
