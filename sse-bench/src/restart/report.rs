//! What a rolling restart found, per system: the figures from the clients' reports, and one
//! Markdown table with the systems side by side.

use std::fmt::Write as _;

use serde::Serialize;

use super::{client::ClientReport, Sizes};

/// When things happened, in µs since the run started.
pub(super) struct Timeline {
    /// The start of the window measured before the kill.
    pub(super) before_from: u64,
    pub(super) killed_at: u64,
    /// When the killed process listened again.
    pub(super) listening_at: u64,
    /// When every client of the killed process had caught up (or the bench stopped waiting).
    pub(super) storm_until: u64,
    /// When publishing stopped.
    pub(super) ended_at: u64,
}

/// CPU seconds the surviving process used before the kill and during the storm.
pub(super) struct Cpu {
    pub(super) before: f64,
    pub(super) storm: f64,
}

/// Publish → receive latency over one window, on the surviving process's undisturbed clients.
#[derive(Serialize, Default)]
pub(super) struct Window {
    secs: f64,
    events: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The surviving process's CPU, in cores busy on average.
    cpu_cores: Option<f64>,
}

impl Window {
    fn of(latencies: &mut [u32], secs: f64) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| match latencies.len() {
            0 => 0.0,
            n => latencies[((n - 1) as f64 * q).round() as usize] as f64 / 1000.0,
        };
        Window {
            secs,
            events: latencies.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            cpu_cores: None,
        }
    }
}

/// One client's count of something, for the worst one.
#[derive(Serialize)]
pub(super) struct Worst {
    client: usize,
    group: usize,
    count: u64,
}

/// Everything measured on one system.
#[derive(Serialize, Default)]
pub(super) struct Outcome {
    pub(super) system: String,
    /// Why the run gave no figure, or what did not go as planned.
    notes: Vec<String>,
    failed: bool,
    clients: usize,
    /// Clients whose first stream was on the killed process.
    on_killed: usize,
    published: u64,
    publish_errors: u64,
    received: u64,
    missed: u64,
    clients_missing: usize,
    worst_missed: Option<Worst>,
    duplicated: u64,
    clients_duplicated: usize,
    worst_duplicated: Option<Worst>,
    /// Events that were not the publisher's (`stream-reset`).
    foreign: u64,
    /// From the kill: until the process listened again, until the last client had a stream
    /// again, and until the last one had caught up; the median client's catch-up.
    restart_ms: f64,
    reconnected_ms: f64,
    resumed_ms: f64,
    resumed_median_ms: f64,
    /// Clients of the killed process that never caught up; clients of the survivor whose
    /// stream ended.
    never_resumed: usize,
    survivor_drops: usize,
    /// Streams reopened on the surviving process and on the restarted one; failed attempts.
    reopened_on_survivor: u64,
    reopened_on_restarted: u64,
    failed_opens: u64,
    /// The most attempts (failed or not) one client made after its first stream.
    most_attempts: u64,
    before: Window,
    storm: Window,
    after: Window,
}

impl Outcome {
    pub(super) fn failed(system: &str, why: String) -> Self {
        Outcome {
            system: system.to_owned(),
            notes: vec![why],
            failed: true,
            ..Outcome::default()
        }
    }

    /// Whether every client got every event once and caught up after the restart.
    pub(super) fn lost_nothing(&self) -> bool {
        !self.failed
            && self.missed == 0
            && self.duplicated == 0
            && self.foreign == 0
            && self.never_resumed == 0
    }

    pub(super) fn new(
        system: &str,
        time: Timeline,
        cpu: Cpu,
        (published, publish_errors): (u64, u64),
        clients: &[ClientReport],
        notes: Vec<String>,
    ) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        let since_kill = |at: Option<u64>| at.map(|at| at.saturating_sub(time.killed_at));
        let worst = |count: fn(&ClientReport) -> u64| {
            clients
                .iter()
                .filter(|c| count(c) > 0)
                .max_by_key(|c| count(c))
                .map(|c| Worst {
                    client: c.id,
                    group: c.group,
                    count: count(c),
                })
        };
        let moved: Vec<&ClientReport> = clients.iter().filter(|c| c.first_server == 1).collect();
        let mut resumed: Vec<u64> = moved
            .iter()
            .filter_map(|c| since_kill(c.resumed_at))
            .collect();
        resumed.sort_unstable();
        let window = |from: u64, to: u64| {
            let mut latencies: Vec<u32> = clients
                .iter()
                .filter(|c| c.first_server == 0)
                .flat_map(|c| c.latencies.iter())
                .filter(|(at, _)| (from..to).contains(at))
                .map(|&(_, latency)| latency)
                .collect();
            Window::of(&mut latencies, to.saturating_sub(from) as f64 / 1e6)
        };
        let mut before = window(time.before_from, time.killed_at);
        before.cpu_cores = Some(cpu.before / before.secs.max(1e-6));
        let mut storm = window(time.killed_at, time.storm_until + 1);
        storm.cpu_cores = Some(cpu.storm / storm.secs.max(1e-6));
        Outcome {
            system: system.to_owned(),
            notes,
            failed: false,
            clients: clients.len(),
            on_killed: moved.len(),
            published,
            publish_errors,
            received: clients.iter().map(|c| c.received).sum(),
            missed: clients.iter().map(|c| c.missed).sum(),
            clients_missing: clients.iter().filter(|c| c.missed > 0).count(),
            worst_missed: worst(|c| c.missed),
            duplicated: clients.iter().map(|c| c.duplicated).sum(),
            clients_duplicated: clients.iter().filter(|c| c.duplicated > 0).count(),
            worst_duplicated: worst(|c| c.duplicated),
            foreign: clients.iter().map(|c| c.foreign).sum(),
            restart_ms: ms(time.listening_at - time.killed_at),
            reconnected_ms: ms(moved
                .iter()
                .filter_map(|c| since_kill(c.reopened_at))
                .max()
                .unwrap_or(0)),
            resumed_ms: ms(resumed.last().copied().unwrap_or(0)),
            resumed_median_ms: ms(resumed.get(resumed.len() / 2).copied().unwrap_or(0)),
            never_resumed: moved.iter().filter(|c| c.resumed_at.is_none()).count(),
            survivor_drops: clients
                .iter()
                .filter(|c| c.first_server == 0 && c.dropped_at.is_some())
                .count(),
            reopened_on_survivor: clients.iter().map(|c| c.reopened_on[0]).sum(),
            reopened_on_restarted: clients.iter().map(|c| c.reopened_on[1]).sum(),
            failed_opens: clients.iter().map(|c| c.failed_opens).sum(),
            most_attempts: clients
                .iter()
                .map(|c| c.reopened_on[0] + c.reopened_on[1] + c.failed_opens)
                .max()
                .unwrap_or(0),
            before,
            storm,
            after: window(time.storm_until + 1, time.ended_at),
        }
    }
}

/// The systems side by side, one row per figure.
pub(super) fn table(sizes: &Sizes, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "#### A rolling restart: {} clients on {} groups, {} events/s, reconnecting within {} ms\n\n| |",
        sizes.clients, sizes.groups, sizes.rate, sizes.retry_ms
    );
    for outcome in outcomes {
        let _ = write!(out, " {} |", outcome.system);
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(outcomes.len()));
    let worst = |worst: &Option<Worst>| {
        worst.as_ref().map_or("–".to_owned(), |w| {
            format!("{} (client {}, group r{})", w.count, w.client, w.group)
        })
    };
    let window = |w: &Window| {
        format!(
            "{:.1} / {:.1} / {:.1} ({} events, {:.1} s, CPU {})",
            w.p50_ms,
            w.p99_ms,
            w.max_ms,
            w.events,
            w.secs,
            w.cpu_cores
                .map_or("–".to_owned(), |c| format!("{:.0} %", c * 100.0))
        )
    };
    let rows: [(&str, &dyn Fn(&Outcome) -> String); 14] = [
        ("clients (on the killed process)", &|o| {
            format!("{} ({})", o.clients, o.on_killed)
        }),
        ("events published (errors)", &|o| {
            format!("{} ({})", o.published, o.publish_errors)
        }),
        ("events received", &|o| o.received.to_string()),
        ("**missed** (clients; worst)", &|o| {
            format!(
                "**{}** ({}; {})",
                o.missed,
                o.clients_missing,
                worst(&o.worst_missed)
            )
        }),
        ("**received twice** (clients; worst)", &|o| {
            format!(
                "**{}** ({}; {})",
                o.duplicated,
                o.clients_duplicated,
                worst(&o.worst_duplicated)
            )
        }),
        ("stream-resets", &|o| o.foreign.to_string()),
        ("killed process listening again after", &|o| {
            format!("{:.0} ms", o.restart_ms)
        }),
        ("every client reconnected after", &|o| {
            format!("{:.0} ms", o.reconnected_ms)
        }),
        ("**every client caught up after** (median)", &|o| {
            format!(
                "**{:.0} ms** ({:.0} ms)",
                o.resumed_ms, o.resumed_median_ms
            )
        }),
        ("never caught up; survivor's streams ended", &|o| {
            format!("{}; {}", o.never_resumed, o.survivor_drops)
        }),
        ("reconnections: to the survivor / to the restarted / failed", &|o| {
            format!(
                "{} / {} / {} (at most {} attempts by one client)",
                o.reopened_on_survivor, o.reopened_on_restarted, o.failed_opens, o.most_attempts
            )
        }),
        ("survivor's latency p50 / p99 / max ms, before the kill", &|o| {
            window(&o.before)
        }),
        ("… during the storm (kill → all caught up)", &|o| {
            window(&o.storm)
        }),
        ("… after", &|o| window(&o.after)),
    ];
    for (title, figure) in rows {
        let _ = write!(out, "\n| {title} |");
        for outcome in outcomes {
            let shown = if outcome.failed {
                "–".to_owned()
            } else {
                figure(outcome)
            };
            let _ = write!(out, " {shown} |");
        }
    }
    for outcome in outcomes {
        for note in &outcome.notes {
            let _ = write!(out, "\n\n- {}: {note}", outcome.system);
        }
    }
    out.push('\n');
    out
}
