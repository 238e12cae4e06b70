//! The workloads, each against one running system: fan-out, latency, many groups, capacity,
//! churn. Every wait is bounded; what a system did not deliver in time is reported, not hidden.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use futures_util::{stream, StreamExt};
use serde::Serialize;

use crate::{
    client::{self, Publisher, Shared, Subscriber},
    systems::{self, Running},
};

/// How big each workload is.
pub(crate) struct Sizes {
    pub(crate) fanout_subscribers: Vec<usize>,
    /// Events per fan-out round: about this many deliveries in all.
    pub(crate) fanout_deliveries: u64,
    /// Fan-out rounds on the same streams, of which the median is reported: one round can be
    /// twice as fast as the next on this shared machine.
    pub(crate) fanout_rounds: usize,
    pub(crate) latency_subscribers: usize,
    pub(crate) latency_rate: u64,
    pub(crate) latency_events: u64,
    pub(crate) groups: usize,
    pub(crate) group_events: u64,
    pub(crate) publishers: usize,
    /// Many groups with events published inside the server: events in all, and per batch.
    pub(crate) batch_events: u64,
    pub(crate) batch_size: u64,
    pub(crate) capacity: Vec<usize>,
    /// Fan-out and capacity again, each stream opened on a connection that loaded a page first.
    pub(crate) after_page_fanout: Vec<usize>,
    pub(crate) after_page_capacity: Vec<usize>,
    /// Pages: concurrent clients, and seconds with each kind of connection.
    pub(crate) page_clients: usize,
    pub(crate) page_secs: f64,
    pub(crate) churn_cycles: u64,
    pub(crate) churn_concurrency: usize,
    /// The longest any one phase may take.
    pub(crate) patience: Duration,
}

impl Sizes {
    pub(crate) fn full() -> Self {
        Self {
            fanout_subscribers: vec![100, 1_000, 10_000],
            fanout_deliveries: 400_000,
            fanout_rounds: 5,
            latency_subscribers: 10_000,
            // 20k deliveries/s: well within every fast system's fan-out rate, so this measures
            // delay, not queueing behind an overload.
            latency_rate: 2,
            latency_events: 20,
            groups: 10_000,
            group_events: 20_000,
            publishers: 16,
            batch_events: 200_000,
            batch_size: 1_000,
            capacity: vec![10_000, 19_000],
            after_page_fanout: vec![1_000, 10_000],
            after_page_capacity: vec![10_000, 19_000],
            page_clients: 32,
            page_secs: 5.0,
            churn_cycles: 100_000,
            churn_concurrency: 64,
            patience: Duration::from_secs(20),
        }
    }

    /// The workloads, by the names `--only` takes.
    pub(crate) const WORKLOADS: &'static [&'static str] = &[
        "fanout",
        "latency",
        "groups",
        "inproc",
        "capacity",
        "churn",
        "afterpage",
        "pages",
    ];

    /// Keeps only the workloads named in `list` (comma-separated).
    pub(crate) fn only(&mut self, list: &str) -> Result<(), String> {
        let keep: Vec<&str> = list.split(',').collect();
        if let Some(unknown) = keep.iter().find(|w| !Self::WORKLOADS.contains(w)) {
            return Err(format!(
                "unknown workload {unknown:?}: expected some of {}",
                Self::WORKLOADS.join(",")
            ));
        }
        if !keep.contains(&"fanout") {
            self.fanout_subscribers.clear();
        }
        if !keep.contains(&"latency") {
            self.latency_events = 0;
        }
        if !keep.contains(&"groups") {
            self.group_events = 0;
        }
        if !keep.contains(&"inproc") {
            self.batch_events = 0;
        }
        if !keep.contains(&"afterpage") {
            self.after_page_fanout.clear();
            self.after_page_capacity.clear();
        }
        if !keep.contains(&"pages") {
            self.page_clients = 0;
        }
        if !keep.contains(&"capacity") {
            self.capacity.clear();
        }
        if !keep.contains(&"churn") {
            self.churn_cycles = 0;
        }
        Ok(())
    }

    pub(crate) fn quick() -> Self {
        Self {
            fanout_subscribers: vec![10, 100],
            fanout_deliveries: 2_000,
            fanout_rounds: 2,
            latency_subscribers: 100,
            latency_rate: 100,
            latency_events: 20,
            groups: 100,
            group_events: 500,
            publishers: 4,
            batch_events: 500,
            batch_size: 100,
            capacity: vec![200],
            after_page_fanout: vec![100],
            after_page_capacity: vec![200],
            page_clients: 4,
            page_secs: 0.5,
            churn_cycles: 500,
            churn_concurrency: 8,
            patience: Duration::from_secs(20),
        }
    }
}

/// Fan-out: one group, `subscribers` streams, events published one after the other, in
/// several rounds: the median round's figures, and the range of the rounds' rates.
#[derive(Serialize, Clone)]
pub(crate) struct FanOut {
    pub(crate) subscribers: usize,
    /// How many of them opened (all, unless the system refused some).
    pub(crate) opened: usize,
    /// Events planned per round, and the fewest published within the patience in a round.
    pub(crate) events: u64,
    pub(crate) published: u64,
    /// The server's CPU time (all its processes, user + system) per delivery: what one
    /// delivery costs, whatever the number of cores. Over all the rounds: the kernel counts
    /// CPU time in 10 ms ticks, a tenth of a short round's.
    pub(crate) server_cpu_us_per_delivery: f64,
    /// The same for the load generator (this program: its subscribers and its publisher), to
    /// tell a round bound by the server from one bound by the load generator on the same cores.
    pub(crate) generator_cpu_us_per_delivery: f64,
    /// Deliveries, and deliveries expected, summed over the rounds.
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    /// Deliveries/s: the median round, and every round's.
    pub(crate) per_sec: f64,
    pub(crate) rounds_per_sec: Vec<f64>,
}

/// Latency: a steady rate of events to many subscribers, publish → receive.
#[derive(Serialize, Clone)]
pub(crate) struct Latency {
    pub(crate) subscribers: usize,
    pub(crate) rate: u64,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// At a steady low rate each delivery is a write of its own: what that costs the server.
    pub(crate) server_cpu_us_per_delivery: f64,
}

/// Many groups: one subscriber each, events to random groups from concurrent publishers.
#[derive(Serialize, Clone)]
pub(crate) struct Groups {
    pub(crate) groups: usize,
    /// How many of the groups' subscribers opened.
    pub(crate) opened: usize,
    /// The server's CPU time per delivery (here, per publish: one subscriber each).
    pub(crate) server_cpu_us_per_delivery: f64,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) secs: f64,
    pub(crate) per_sec: f64,
}

/// Pages: a small page loaded over and over by concurrent clients.
#[derive(Serialize, Clone)]
pub(crate) struct Pages {
    /// On one kept-alive connection per client, or a new connection per page.
    pub(crate) keep_alive: bool,
    pub(crate) clients: usize,
    pub(crate) loaded: u64,
    pub(crate) failed: u64,
    pub(crate) per_sec: f64,
    /// The server's CPU time per page loaded.
    pub(crate) server_cpu_us_per_page: f64,
}

/// Capacity: what an idle open stream costs the server.
#[derive(Serialize, Clone)]
pub(crate) struct Capacity {
    pub(crate) wanted: usize,
    pub(crate) opened: usize,
    pub(crate) rss_mb: f64,
    pub(crate) per_stream_kb: f64,
}

/// Churn: streams opened and closed as fast as they go.
#[derive(Serialize, Clone)]
pub(crate) struct Churn {
    pub(crate) cycles: u64,
    pub(crate) failed: u64,
    pub(crate) secs: f64,
    pub(crate) per_sec: f64,
    pub(crate) rss_before_mb: f64,
    pub(crate) rss_after_mb: f64,
}

const MB: f64 = 1024.0 * 1024.0;

/// Opens `n` streams, the i-th to `group(i)`, a few hundred at a time. Those that fail are tried
/// once more, fewer at a time, as browsers would retry (Pushpin's origin drops some of a burst).
pub(crate) async fn open(
    system: &Running,
    shared: &Arc<Shared>,
    n: usize,
    group: impl Fn(usize) -> String,
    patience: Duration,
    page: Option<&client::Url>,
) -> (Vec<Subscriber>, Option<String>) {
    let deadline = tokio::time::Instant::now() + patience;
    let mut opened = Vec::with_capacity(n);
    let mut failed: Vec<usize> = (0..n).collect();
    let mut first_error = None;
    for at_once in [256, 32] {
        let attempts = stream::iter(std::mem::take(&mut failed))
            .map(|i| {
                let group = group(i);
                async move {
                    let opening = client::subscribe(&system.sub, &group, shared, false, page);
                    let outcome = tokio::time::timeout_at(deadline, opening)
                        .await
                        .unwrap_or_else(|_| Err("timed out opening".to_owned()));
                    (i, outcome)
                }
            })
            .buffer_unordered(at_once)
            .collect::<Vec<_>>()
            .await;
        for (i, attempt) in attempts {
            match attempt {
                Ok(subscriber) => opened.push(subscriber),
                Err(e) => {
                    failed.push(i);
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    let error = first_error
        .filter(|_| !failed.is_empty())
        .map(|e| format!("{} of {n} streams did not open: {e}", failed.len()));
    (opened, error)
}

/// Waits until `shared.delivered` reaches `expected` or stops moving for a while.
async fn until_delivered(shared: &Shared, expected: u64, patience: Duration) {
    let deadline = Instant::now() + patience;
    let mut last = (0, Instant::now());
    while shared.delivered.load(Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = shared.delivered.load(Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            return;
        }
    }
}

/// A publisher to `system`, once every one of `subscribers` has seen a probe on `group`; those
/// that never did are noted in `notes`, after `what`.
async fn ready_publisher(
    system: &Running,
    group: &str,
    subscribers: &[Subscriber],
    patience: Duration,
    (what, notes): (&str, &mut Vec<String>),
) -> Result<Publisher, String> {
    let mut publisher = Publisher::connect(&system.publish, system.format).await?;
    let unreached = publisher
        .until_all_subscribed(group, subscribers, patience)
        .await?;
    notes.extend(unreached.map(|e| format!("{what}: {e}")));
    Ok(publisher)
}

/// Fan-out to `subscribers` already open on `group`, out of `wanted`. What did not go as
/// planned but still gave a figure is noted in `notes`.
pub(crate) async fn fan_out(
    system: &Running,
    shared: &Shared,
    (subscribers, wanted): (&[Subscriber], usize),
    group: &str,
    sizes: &Sizes,
    notes: &mut Vec<String>,
) -> Result<FanOut, String> {
    let n = subscribers.len() as u64;
    let events = (sizes.fanout_deliveries / wanted as u64).max(10);
    let mut rounds = Vec::with_capacity(sizes.fanout_rounds);
    client::publishing(|| async {
        let what = format!("fan-out to {wanted}");
        let mut publisher =
            ready_publisher(system, group, subscribers, sizes.patience, (&what, notes)).await?;
        for _ in 0..sizes.fanout_rounds {
            let cpu_before = (system.cpu_secs(), systems::own_cpu_secs());
            let round_began = unix_ms();
            let started = shared.reset();
            // A system slower than the patience gets the events it took in that time, and is
            // measured on those.
            let deadline = Instant::now() + sizes.patience;
            let mut published = 0;
            while published < events && Instant::now() < deadline {
                publisher
                    .publish(group, &shared.event_data(published))
                    .await?;
                published += 1;
            }
            until_delivered(shared, published * n, sizes.patience).await;
            let delivered = shared.delivered.load(Relaxed);
            let secs = (shared.last_delivery_us() - started) as f64 / 1e6;
            let cpu_secs = system.cpu_secs() - cpu_before.0;
            let generator_cpu_secs = systems::own_cpu_secs() - cpu_before.1;
            // When, so a tool watching the server (`perf stat -I`) can tell the rounds apart.
            eprintln!(
                "   {what}: round of {delivered} deliveries from {round_began} to {} (Unix ms)",
                unix_ms()
            );
            rounds.push(Round {
                published,
                delivered,
                per_sec: delivered as f64 / secs.max(1e-6),
                cpu_secs,
                generator_cpu_secs,
            });
        }
        Ok::<_, String>(())
    })?;
    let median = |figure: fn(&Round) -> f64| {
        let mut all: Vec<f64> = rounds.iter().map(figure).collect();
        all.sort_unstable_by(f64::total_cmp);
        all[all.len() / 2]
    };
    let per_delivery = |secs: fn(&Round) -> f64| {
        rounds.iter().map(secs).sum::<f64>() * 1e6
            / rounds.iter().map(|r| r.delivered).sum::<u64>().max(1) as f64
    };
    let published = rounds.iter().map(|r| r.published).min().unwrap_or(0);
    Ok(FanOut {
        subscribers: wanted,
        opened: subscribers.len(),
        events,
        published,
        server_cpu_us_per_delivery: per_delivery(|r| r.cpu_secs),
        generator_cpu_us_per_delivery: per_delivery(|r| r.generator_cpu_secs),
        delivered: rounds.iter().map(|r| r.delivered).sum(),
        expected: rounds.iter().map(|r| r.published * n).sum(),
        per_sec: median(|r| r.per_sec),
        rounds_per_sec: rounds.iter().map(|r| r.per_sec).collect(),
    })
}

/// One fan-out round's figures.
struct Round {
    published: u64,
    delivered: u64,
    per_sec: f64,
    /// CPU time of the server, and of the load generator.
    cpu_secs: f64,
    generator_cpu_secs: f64,
}

/// Events at a steady rate to `subscribers` already open on `group`.
pub(crate) async fn latency(
    system: &Running,
    shared: &Shared,
    subscribers: &[Subscriber],
    group: &str,
    sizes: &Sizes,
    notes: &mut Vec<String>,
) -> Result<Latency, String> {
    let events = sizes.latency_events;
    let (cpu_before, published) = client::publishing(|| async {
        let mut publisher = ready_publisher(
            system,
            group,
            subscribers,
            sizes.patience,
            ("latency", notes),
        )
        .await?;
        for subscriber in subscribers {
            subscriber.seen.latencies_us.lock().unwrap().clear();
        }
        shared.reset();
        shared.recording.store(true, Relaxed);
        let cpu_before = system.cpu_secs();
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / sizes.latency_rate as u32);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let publishing = async {
            for seq in 0..events {
                ticks.tick().await;
                publisher.publish(group, &shared.event_data(seq)).await?;
            }
            Ok::<_, String>(())
        };
        let published = tokio::time::timeout(sizes.patience, publishing).await;
        Ok::<_, String>((cpu_before, published))
    })?;
    let expected = events * subscribers.len() as u64;
    until_delivered(shared, expected, sizes.patience).await;
    shared.recording.store(false, Relaxed);
    let server_cpu_secs = system.cpu_secs() - cpu_before;
    published.map_err(|_| "publishing did not finish in time".to_owned())??;
    let mut all: Vec<u32> = Vec::with_capacity(expected as usize);
    for subscriber in subscribers {
        all.extend(subscriber.seen.latencies_us.lock().unwrap().drain(..));
    }
    if all.is_empty() {
        return Err("no event arrived".to_owned());
    }
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Ok(Latency {
        subscribers: subscribers.len(),
        rate: sizes.latency_rate,
        delivered: all.len() as u64,
        expected,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        server_cpu_us_per_delivery: server_cpu_secs * 1e6 / all.len() as f64,
    })
}

/// One subscriber on each of `sizes.groups` groups, events to random groups: published one
/// HTTP request each (what every system can be asked), and then, where the system has a batch
/// route, published inside the server in batches. Streams that did not open are noted in
/// `notes`; the events go to the groups of those that did.
pub(crate) async fn many_groups(
    system: &Running,
    shared: &Arc<Shared>,
    sizes: &Sizes,
    notes: &mut Vec<String>,
) -> Result<(Option<Groups>, Option<Groups>), String> {
    let (subscribers, error) = open(
        system,
        shared,
        sizes.groups,
        |i| format!("g{i}"),
        sizes.patience,
        None,
    )
    .await;
    if subscribers.is_empty() {
        return Err(error.unwrap_or_default());
    }
    notes.extend(error.map(|e| format!("many groups: {e}")));
    // Subscribers see no probe here (that would be one publish per group): the headers arrived,
    // and a second lets a system that subscribes after answering (Pushpin) catch up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let opened = subscribers.len();
    let run =
        |expected, publishers| groups_run(system, shared, sizes, opened, expected, publishers);
    let over_http = if sizes.group_events > 0 {
        let per_publisher = sizes.group_events / sizes.publishers as u64;
        let subscribers = &subscribers;
        let publishes = (0..sizes.publishers).map(|p| {
            let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ p as u64);
            let publishes = (0..per_publisher).map(move |seq| {
                let to = &subscribers[random.below(subscribers.len() as u64) as usize];
                (to.group.clone(), seq)
            });
            (system.publish.clone(), publishes.collect::<Vec<_>>())
        });
        let expected = per_publisher * sizes.publishers as u64;
        Some(run(expected, publishes.collect()).await?)
    } else {
        None
    };
    let in_process = match &system.batch {
        // Every group has a subscriber here unless some did not open (then fewer deliveries
        // are expected than published, and the count says so).
        Some(batch) if sizes.batch_events > 0 && opened == sizes.groups => {
            let batches = sizes.batch_events / sizes.batch_size;
            let target = format!("{}/{}", sizes.groups, sizes.batch_size);
            // Two publishers, so a batch is always under way while the other one's answer
            // travels.
            let publishes = (0..2u64).map(|p| {
                let mine = (0..batches)
                    .filter(|b| b % 2 == p)
                    .map(|seq| (target.clone(), seq));
                (batch.clone(), mine.collect::<Vec<_>>())
            });
            let expected = batches * sizes.batch_size;
            // A server without the batch route (an older build) keeps its HTTP figure.
            run(expected, publishes.collect())
                .await
                .inspect_err(|e| notes.push(format!("many groups in process: {e}")))
                .ok()
        }
        _ => None,
    };
    Ok((over_http, in_process))
}

/// One run of many groups: each publisher (a URL, and what to publish: the `{group}` of its
/// URL and a sequence number each) publishes its list, all of them at once; `expected`
/// deliveries in all.
async fn groups_run(
    system: &Running,
    shared: &Shared,
    sizes: &Sizes,
    opened: usize,
    expected: u64,
    publishers: Vec<(client::Url, Vec<(String, u64)>)>,
) -> Result<Groups, String> {
    let (cpu_before, started) = client::publishing(|| async {
        let mut connected = Vec::with_capacity(publishers.len());
        for (url, publishes) in publishers {
            connected.push((Publisher::connect(&url, system.format).await?, publishes));
        }
        let cpu_before = system.cpu_secs();
        let started = shared.reset();
        let runs = connected
            .into_iter()
            .map(|(mut publisher, publishes)| async move {
                for (to, seq) in publishes {
                    publisher.publish(&to, &shared.event_data(seq)).await?;
                }
                Ok::<_, String>(())
            });
        let publishing = futures_util::future::try_join_all(runs);
        tokio::time::timeout(sizes.patience, publishing)
            .await
            .map_err(|_| "publishing did not finish in time".to_owned())??;
        Ok::<_, String>((cpu_before, started))
    })?;
    until_delivered(shared, expected, sizes.patience).await;
    let delivered = shared.delivered.load(Relaxed);
    let secs = (shared.last_delivery_us() - started) as f64 / 1e6;
    let server_cpu_secs = system.cpu_secs() - cpu_before;
    Ok(Groups {
        groups: sizes.groups,
        opened,
        server_cpu_us_per_delivery: server_cpu_secs * 1e6 / delivered.max(1) as f64,
        delivered,
        expected,
        secs,
        per_sec: delivered as f64 / secs.max(1e-6),
    })
}

/// Pages from `sizes.page_clients` concurrent clients, on kept-alive connections and on a new
/// connection each.
pub(crate) async fn pages(system: &Running, sizes: &Sizes) -> Result<Vec<Pages>, String> {
    let page = system.page.as_ref().ok_or("the system has no page")?;
    let mut results = Vec::new();
    for keep_alive in [true, false] {
        let cpu_before = system.cpu_secs();
        let started = Instant::now();
        let (loaded, failed) =
            client::load_pages(page, sizes.page_clients, sizes.page_secs, keep_alive).await;
        let secs = started.elapsed().as_secs_f64();
        let cpu_secs = system.cpu_secs() - cpu_before;
        if loaded == 0 {
            return Err(format!("no page loaded ({failed} failed)"));
        }
        results.push(Pages {
            keep_alive,
            clients: sizes.page_clients,
            loaded,
            failed,
            per_sec: loaded as f64 / secs,
            server_cpu_us_per_page: cpu_secs * 1e6 / loaded as f64,
        });
        // Let the closed connections' sockets go before the next measure.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(results)
}

/// Opens streams up to each of `counts` and weighs the server each time; with `page`, each
/// stream on a connection that loaded that page first.
pub(crate) async fn capacity(
    system: &Running,
    shared: &Arc<Shared>,
    sizes: &Sizes,
    (counts, page): (&[usize], Option<&client::Url>),
) -> (Vec<Capacity>, Option<String>) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = system.rss_bytes();
    let mut open_now: Vec<Subscriber> = Vec::new();
    let mut results = Vec::new();
    for &wanted in counts {
        let more = wanted.saturating_sub(open_now.len());
        let (opened, error) = open(
            system,
            shared,
            more,
            |_| "idle".to_owned(),
            sizes.patience * 2,
            page,
        )
        .await;
        open_now.extend(opened);
        // Let the server settle (allocators hand memory back lazily, Python collects).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = system.rss_bytes();
        results.push(Capacity {
            wanted,
            opened: open_now.len(),
            rss_mb: rss as f64 / MB,
            per_stream_kb: rss.saturating_sub(idle) as f64 / 1024.0 / open_now.len().max(1) as f64,
        });
        if error.is_some() {
            return (results, error);
        }
    }
    (results, None)
}

/// Opens and closes streams from `sizes.churn_concurrency` loops until `sizes.churn_cycles`.
pub(crate) async fn churn(system: &Running, shared: &Arc<Shared>, sizes: &Sizes) -> Churn {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = system.rss_bytes();
    let started = Instant::now();
    let deadline = started + sizes.patience;
    let per_loop = sizes.churn_cycles / sizes.churn_concurrency as u64;
    let loops = (0..sizes.churn_concurrency).map(|_| async move {
        let (mut done, mut failed) = (0u64, 0u64);
        while done < per_loop && Instant::now() < deadline {
            match client::subscribe(&system.sub, "churn", shared, true, None).await {
                Ok(subscriber) => drop(subscriber),
                Err(_) => failed += 1,
            }
            done += 1;
        }
        (done, failed)
    });
    let counts = futures_util::future::join_all(loops).await;
    let secs = started.elapsed().as_secs_f64();
    let cycles = counts.iter().map(|c| c.0).sum::<u64>();
    let failed = counts.iter().map(|c| c.1).sum();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Churn {
        cycles,
        failed,
        secs,
        per_sec: (cycles - failed) as f64 / secs,
        rss_before_mb: rss_before as f64 / MB,
        rss_after_mb: system.rss_bytes() as f64 / MB,
    }
}

/// xorshift64: random groups without a dependency.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Now, in milliseconds since the Unix epoch.
fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}
