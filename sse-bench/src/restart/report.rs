//! What a rolling restart found, per system: the figures from the clients' reports, and one
//! Markdown table with the systems side by side.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::{client::ClientReport, run::Sizes};

/// When things happened, in µs since the run started.
pub(super) struct Timeline {
    /// The start of the window measured before the kill.
    pub(super) before_from: u64,
    pub(super) killed_at: u64,
    /// When every process of the killed one was gone.
    pub(super) gone_at: u64,
    /// When the killed process listened again.
    pub(super) listening_at: u64,
    /// When every client of the killed process had caught up (or the bench stopped waiting).
    pub(super) storm_until: u64,
    /// When publishing stopped.
    pub(super) ended_at: u64,
}

/// CPU seconds used so far by each side of the run.
#[derive(Clone, Copy, Default)]
pub(super) struct CpuSecs {
    pub(super) survivor: f64,
    /// The killed process, or after the kill the restarted one.
    pub(super) other: f64,
    pub(super) redis: f64,
    /// This program: the clients and the publisher.
    pub(super) load_generator: f64,
}

/// CPU used over a window, in cores busy on average.
#[derive(Serialize, Default)]
pub(super) struct Cores {
    survivor: f64,
    other: f64,
    redis: f64,
    load_generator: f64,
}

impl Cores {
    /// Between two readings `secs` apart; the other process's count starts again at its restart.
    fn between(from: CpuSecs, to: CpuSecs, secs: f64, other_restarted: bool) -> Self {
        let per_sec = |used: f64| used.max(0.0) / secs.max(1e-6);
        let other_from = if other_restarted { 0.0 } else { from.other };
        Cores {
            survivor: per_sec(to.survivor - from.survivor),
            other: per_sec(to.other - other_from),
            redis: per_sec(to.redis - from.redis),
            load_generator: per_sec(to.load_generator - from.load_generator),
        }
    }
}

/// CPU readings at the start of the window before the kill, just before the kill, and at the
/// end of the storm.
pub(super) struct Cpu {
    pub(super) before_from: CpuSecs,
    pub(super) killed_at: CpuSecs,
    pub(super) storm_until: CpuSecs,
}

/// Publish → receive latency over one window, on the surviving process's undisturbed clients.
#[derive(Serialize, Default)]
pub(super) struct Window {
    secs: f64,
    events: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
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
        }
    }
}

/// The surviving process's latency over one tenth of a second, from the kill.
#[derive(Serialize)]
pub(super) struct Slice {
    from_ms: i64,
    events: usize,
    p99_ms: f64,
    max_ms: f64,
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
    gone_ms: f64,
    restart_ms: f64,
    reconnected_ms: f64,
    resumed_ms: f64,
    resumed_median_ms: f64,
    /// From a client's first attempt to reconnect until it had caught up: the median and the
    /// slowest client (the server's part of the catch-up, without the client's wait).
    attempt_to_resumed_median_ms: f64,
    attempt_to_resumed_p99_ms: f64,
    attempt_to_resumed_max_ms: f64,
    /// Clients of the killed process that never caught up; clients of the survivor whose
    /// stream ended.
    never_resumed: usize,
    survivor_drops: usize,
    /// Streams reopened on the surviving process and on the restarted one; failed attempts.
    reopened_on_survivor: u64,
    reopened_on_restarted: u64,
    failed_opens: u64,
    failures: BTreeMap<String, u64>,
    /// Connections the machine's listening sockets dropped during the storm, their accept
    /// queue full (the SYN is sent again a second later).
    listen_overflows: u64,
    /// The most attempts (failed or not) one client made after its first stream.
    most_attempts: u64,
    before: Window,
    storm: Window,
    after: Window,
    cpu_before: Cores,
    cpu_storm: Cores,
    /// The survivor's latency by tenths of a second, from a second before the kill to a
    /// second after the storm.
    timeline: Vec<Slice>,
}

impl Outcome {
    pub(super) fn not_measured(system: &str, why: String) -> Self {
        Outcome {
            system: system.to_owned(),
            notes: vec![why],
            failed: true,
            ..Outcome::default()
        }
    }

    /// Whether the run went to its end.
    pub(super) fn measured(&self) -> bool {
        !self.failed
    }

    /// Whether every client got every event once and caught up after the restart.
    pub(super) fn lost_nothing(&self) -> bool {
        self.missed == 0 && self.duplicated == 0 && self.foreign == 0 && self.never_resumed == 0
    }

    pub(super) fn new(
        system: &str,
        time: Timeline,
        cpu: Cpu,
        (published, publish_errors): (u64, u64),
        listen_overflows: u64,
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
        let mut attempt_to_resumed: Vec<u64> = moved
            .iter()
            .filter_map(|c| Some(c.resumed_at?.saturating_sub(c.retried_at?)))
            .collect();
        attempt_to_resumed.sort_unstable();
        let quantile = |sorted: &[u64], q: f64| {
            let at = (sorted.len().saturating_sub(1) as f64 * q).round() as usize;
            ms(sorted.get(at).copied().unwrap_or(0))
        };
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
        let tenth = 100_000;
        let timeline = (time.killed_at.saturating_sub(10 * tenth)..time.storm_until + 10 * tenth)
            .step_by(tenth as usize)
            .map(|from| {
                let slice = window(from, from + tenth);
                Slice {
                    from_ms: (from as i64 - time.killed_at as i64) / 1000,
                    events: slice.events,
                    p99_ms: slice.p99_ms,
                    max_ms: slice.max_ms,
                }
            })
            .collect();
        let before = window(time.before_from, time.killed_at);
        let storm = window(time.killed_at, time.storm_until + 1);
        let cpu_before = Cores::between(cpu.before_from, cpu.killed_at, before.secs, false);
        let cpu_storm = Cores::between(cpu.killed_at, cpu.storm_until, storm.secs, true);
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
            gone_ms: ms(time.gone_at - time.killed_at),
            restart_ms: ms(time.listening_at - time.killed_at),
            listen_overflows,
            reconnected_ms: ms(moved
                .iter()
                .filter_map(|c| since_kill(c.reopened_at))
                .max()
                .unwrap_or(0)),
            resumed_ms: ms(resumed.last().copied().unwrap_or(0)),
            resumed_median_ms: quantile(&resumed, 0.5),
            attempt_to_resumed_median_ms: quantile(&attempt_to_resumed, 0.5),
            attempt_to_resumed_p99_ms: quantile(&attempt_to_resumed, 0.99),
            attempt_to_resumed_max_ms: quantile(&attempt_to_resumed, 1.0),
            never_resumed: moved.iter().filter(|c| c.resumed_at.is_none()).count(),
            survivor_drops: clients
                .iter()
                .filter(|c| c.first_server == 0 && c.dropped_at.is_some())
                .count(),
            reopened_on_survivor: clients.iter().map(|c| c.reopened_on[0]).sum(),
            reopened_on_restarted: clients.iter().map(|c| c.reopened_on[1]).sum(),
            failed_opens: clients.iter().map(|c| c.failed_opens).sum(),
            failures: clients.iter().flat_map(|c| &c.failures).fold(
                BTreeMap::new(),
                |mut all, (why, count)| {
                    *all.entry(why.clone()).or_default() += count;
                    all
                },
            ),
            most_attempts: clients
                .iter()
                .map(|c| c.reopened_on[0] + c.reopened_on[1] + c.failed_opens)
                .max()
                .unwrap_or(0),
            before,
            storm,
            cpu_before,
            cpu_storm,
            timeline,
            after: window(time.storm_until + 1, time.ended_at),
        }
    }
}

/// How one row shows a system's figure.
type Row<'a> = &'a dyn Fn(&Outcome) -> String;

/// The systems side by side, one row per figure.
pub(super) fn table(sizes: &Sizes, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "#### A rolling restart: {} clients on {} groups, {} events/s, reconnecting within {} ms{}\n\n| |",
        sizes.clients,
        sizes.groups,
        sizes.rate,
        sizes.retry_ms,
        if sizes.forget_ids {
            " **without** `Last-Event-ID` (a control)"
        } else {
            ""
        }
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
            "{:.1} / {:.1} / {:.1} ({} events, {:.1} s)",
            w.p50_ms, w.p99_ms, w.max_ms, w.events, w.secs
        )
    };
    let cores = |c: &Cores| {
        let percent = |cores: f64| format!("{:.0} %", cores * 100.0);
        format!(
            "{} / {} / {} / {}",
            percent(c.survivor),
            percent(c.other),
            percent(c.redis),
            percent(c.load_generator)
        )
    };
    let rows: [(&str, Row<'_>); 17] = [
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
        ("killed process gone / listening again, after", &|o| {
            format!("{:.0} / {:.0} ms", o.gone_ms, o.restart_ms)
        }),
        ("every client reconnected after", &|o| {
            format!("{:.0} ms", o.reconnected_ms)
        }),
        ("**every client caught up after** (median)", &|o| {
            format!("**{:.0} ms** ({:.0} ms)", o.resumed_ms, o.resumed_median_ms)
        }),
        (
            "a client's first reconnect attempt → caught up, median / p99 / slowest",
            &|o| {
                format!(
                    "{:.1} / {:.1} / {:.1} ms",
                    o.attempt_to_resumed_median_ms,
                    o.attempt_to_resumed_p99_ms,
                    o.attempt_to_resumed_max_ms
                )
            },
        ),
        ("never caught up; survivor's streams ended", &|o| {
            format!("{}; {}", o.never_resumed, o.survivor_drops)
        }),
        (
            "reconnections: to the survivor / to the restarted / failed",
            &|o| {
                format!(
                    "{} / {} / {} (at most {} attempts by one client; {} SYNs dropped, accept queues full)",
                    o.reopened_on_survivor,
                    o.reopened_on_restarted,
                    o.failed_opens,
                    o.most_attempts,
                    o.listen_overflows
                )
            },
        ),
        (
            "survivor's latency p50 / p99 / max ms, before the kill",
            &|o| window(&o.before),
        ),
        ("… during the storm (kill → all caught up)", &|o| {
            window(&o.storm)
        }),
        ("… after", &|o| window(&o.after)),
        (
            "CPU before the kill: survivor / killed / Redis / load generator (100 % = a core)",
            &|o| cores(&o.cpu_before),
        ),
        (
            "… during the storm: survivor / restarted / Redis / load generator",
            &|o| cores(&o.cpu_storm),
        ),
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
        if !outcome.failures.is_empty() {
            let whys: Vec<String> = (outcome.failures.iter())
                .map(|(why, count)| format!("{count} × {why}"))
                .collect();
            let _ = write!(
                out,
                "\n\n- {}: failed opens: {}",
                outcome.system,
                whys.join(", ")
            );
        }
        for note in &outcome.notes {
            let _ = write!(out, "\n\n- {}: {note}", outcome.system);
        }
    }
    out.push('\n');
    out
}
