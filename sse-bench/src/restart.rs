//! `sse-bench restart`: a rolling restart under load (`scripts/bench restart`).
//!
//! Two server processes of one system share one `redis-server` that the bench starts on a free
//! loopback port. Clients open streams of a few groups, half on each process, and events are
//! published steadily to the first process, each carrying its group's sequence number and its
//! send time. Then the second process is killed with `SIGKILL` and started again on its port;
//! each of its clients waits a random part of the retry time, reconnects to a random process
//! (the other one if that one refuses) with its `Last-Event-ID`, and checks what it gets.
//!
//! Reported per system, side by side: how long until every client had a stream again and had
//! caught up, the events each client missed or got twice (totals and the worst client), the
//! surviving process's publish → receive latency and CPU before the kill and during the storm,
//! and the reconnections. It exits non-zero if a client of `sse` missed or repeated an event.

mod client;
mod report;
mod run;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, ExitCode},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinSet};

use crate::{
    client::{PubFormat, Publisher, Shared, Url},
    systems::{self, Running},
};
use report::Outcome;
pub(crate) use run::Sizes;
use run::{group_name, Phase, Run};

/// A rolling restart of each of `systems` in turn; prints the table and writes `restart.md`
/// and `restart.json` to `out`.
pub(crate) fn run(sizes: &Sizes, out: &Path, systems: &[String]) -> ExitCode {
    if let Err(e) = crate::raise_open_files_limit() {
        return crate::fail(&e);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The surviving process's clients read on a runtime of their own: their latency is the
    // server's, not the time they would wait behind thousands of reconnecting clients' work
    // in this program's run queue.
    let survivor_clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("survivor-clients")
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut outcomes = Vec::new();
    for name in systems {
        eprintln!("== {name}");
        let work = out.join("restart").join(name);
        let outcome = std::fs::create_dir_all(&work)
            .map_err(|e| format!("{}: {e}", work.display()))
            .and_then(|()| {
                runtime.block_on(measure(name, sizes, &work, survivor_clients.handle()))
            });
        match outcome {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                eprintln!("   {name}: {e}");
                outcomes.push(Outcome::not_measured(name, e));
            }
        }
    }
    let table = report::table(sizes, &outcomes);
    println!("{table}");
    let json = serde_json::to_string_pretty(&(sizes, &outcomes)).expect("results serialize");
    let written = std::fs::write(out.join("restart.md"), &table)
        .and_then(|()| std::fs::write(out.join("restart.json"), json));
    if let Err(e) = written {
        return crate::fail(&format!("writing the results to {}: {e}", out.display()));
    }
    eprintln!("wrote restart.md and restart.json to {}", out.display());
    match outcomes.iter().find(|o| o.system == "sse") {
        Some(ours) if !ours.measured() => crate::fail("sse could not be measured"),
        Some(ours) if !ours.lost_nothing() => {
            crate::fail("a client of sse missed or repeated events, or never caught up")
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The processes of one measure, stopped however it ends.
#[derive(Default)]
struct Processes {
    redis: Option<Child>,
    servers: [Option<Running>; 2],
}

impl Drop for Processes {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(server) = server.take() {
                server.stop();
            }
        }
        if let Some(mut redis) = self.redis.take() {
            let _ = redis.kill();
            let _ = redis.wait();
        }
    }
}

impl Processes {
    /// CPU seconds used so far by each process, and by this program.
    fn cpu_secs(&self) -> report::CpuSecs {
        let server = |n: usize| self.servers[n].as_ref().map_or(0.0, Running::cpu_secs);
        let redis = self
            .redis
            .as_ref()
            .map_or(0.0, |redis| systems::usage_of_groups(&[redis.id()]).1);
        report::CpuSecs {
            survivor: server(0),
            other: server(1),
            redis,
            load_generator: systems::own_cpu_secs(),
        }
    }
}

/// How many connections the machine's listening sockets dropped so far because their accept
/// queue was full (`ListenOverflows` in `/proc/net/netstat`): such a client tries again only
/// after its SYN's retransmission timeout, one second at first.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut tcp_ext = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// A `redis-server` on a free loopback port, keeping nothing on disk; its port.
fn start_redis(work: &Path, processes: &mut Processes) -> Result<u16, String> {
    let port = systems::free_port()?;
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(work);
    processes.redis = Some(systems::spawn(command, &work.join("redis.log"))?);
    systems::wait_port(port)?;
    Ok(port)
}

/// Waits until `done` holds, checking every 10 ms, for at most `patience`; whether it held.
async fn until(patience: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// One system's rolling restart, its files and logs in `work`; the survivor's clients are
/// spawned on `survivor_clients`.
async fn measure(
    name: &str,
    sizes: &Sizes,
    work: &Path,
    survivor_clients: &tokio::runtime::Handle,
) -> Result<Outcome, String> {
    if name.starts_with("sse") && !cfg!(feature = "redis") {
        return Err(
            "our server shares its groups through Redis only when built with the `redis` \
             feature: run `scripts/bench restart`, or build with `--features redis`"
                .to_owned(),
        );
    }
    let mut processes = Processes::default();
    let redis_port = start_redis(work, &mut processes)?;
    let mut ports = [0; 2];
    for (n, port) in ports.iter_mut().enumerate() {
        // One at a time: the first listens before the second looks for a free port.
        *port = systems::free_port()?;
        let dir = work.join(["survivor", "killed"][n]);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        processes.servers[n] = Some(systems::start_on(name, &dir, *port, Some(redis_port))?);
    }
    let survivor = processes.servers[0].as_ref().expect("started");
    let (publish_url, format, sub) = (
        survivor.publish.clone(),
        survivor.format,
        survivor.sub.clone(),
    );
    let (phase, watching) = watch::channel(Phase::Running);
    let run = Arc::new(Run {
        shared: Shared::new(),
        servers: ports.map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
        sub,
        published: (0..sizes.groups).map(|_| AtomicU64::new(0)).collect(),
        phase: watching,
        retry: Duration::from_millis(sizes.retry_ms),
        forget_ids: sizes.forget_ids,
        opened: AtomicUsize::new(0),
        subscribed: AtomicUsize::new(0),
        dropped: AtomicUsize::new(0),
        away: AtomicUsize::new(0),
    });
    let mut notes = Vec::new();

    // Streams opened a few hundred at a time, as pages load.
    // Dropped (on an early return), the set ends every client.
    let mut clients = JoinSet::new();
    for id in 0..sizes.clients {
        let following = client::follow(run.clone(), id);
        if id % 2 == 0 {
            clients.spawn_on(following, survivor_clients);
        } else {
            clients.spawn(following);
        }
        if id % 256 == 255 || id + 1 == sizes.clients {
            let opened = until(sizes.patience(), || run.opened.load(SeqCst) > id).await;
            if !opened {
                return Err(format!(
                    "only {} of {} streams opened",
                    run.opened.load(SeqCst),
                    id + 1
                ));
            }
        }
    }
    let publisher = publish(run.clone(), publish_url, format, sizes.rate);
    let all_subscribed = until(sizes.patience(), || {
        run.subscribed.load(SeqCst) == sizes.clients
    })
    .await;
    if !all_subscribed {
        notes.push(format!(
            "{} of {} clients never got a first event",
            sizes.clients - run.subscribed.load(SeqCst),
            sizes.clients
        ));
    }
    // A second of steady state, then the window measured before the kill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_from = run.shared.now_us();
    let cpu_before_from = processes.cpu_secs();
    tokio::time::sleep(Duration::from_secs_f64(sizes.before_secs)).await;

    let killed_at = run.shared.now_us();
    let cpu_at_kill = processes.cpu_secs();
    let overflows_at_kill = listen_overflows();
    if let Some(killed) = processes.servers[1].take() {
        killed.kill();
    }
    let gone_at = run.shared.now_us();
    let dir = work.join("restarted");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    processes.servers[1] = Some(systems::start_on(name, &dir, ports[1], Some(redis_port))?);
    let listening_at = run.shared.now_us();
    let on_killed = sizes.clients / 2;
    let all_back = until(sizes.patience(), || {
        run.dropped.load(SeqCst) >= on_killed && run.away.load(SeqCst) == 0
    })
    .await;
    let storm_until = run.shared.now_us();
    let listen_overflows = listen_overflows().saturating_sub(overflows_at_kill);
    let cpu_storm_until = processes.cpu_secs();
    if !all_back {
        notes.push(format!(
            "{} clients were still away after {} s",
            run.away.load(SeqCst),
            sizes.patience_secs
        ));
    }
    tokio::time::sleep(Duration::from_secs_f64(sizes.after_secs)).await;

    let ended_at = run.shared.now_us();
    phase.send_replace(Phase::Ending);
    let publishing = tokio::task::spawn_blocking(move || publisher.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the publisher panicked".to_owned())?;
    phase.send_replace(Phase::Draining);
    let phase = Arc::new(phase);
    let stopper = {
        let phase = phase.clone();
        let patience = sizes.patience();
        tokio::spawn(async move {
            tokio::time::sleep(patience).await;
            phase.send_replace(Phase::Stopped);
        })
    };
    let mut reports = Vec::with_capacity(clients.len());
    while let Some(report) = clients.join_next().await {
        reports.push(report.map_err(|e| format!("a client failed: {e}"))?);
    }
    if *phase.borrow() == Phase::Stopped {
        notes.push("some clients never got their group's last event".to_owned());
    }
    stopper.abort();
    drop(processes);
    notes.extend(publishing.error);
    Ok(Outcome::new(
        name,
        report::Timeline {
            before_from,
            killed_at,
            gone_at,
            listening_at,
            storm_until,
            ended_at,
        },
        report::Cpu {
            before_from: cpu_before_from,
            killed_at: cpu_at_kill,
            storm_until: cpu_storm_until,
        },
        (publishing.published, publishing.errors),
        listen_overflows,
        &reports,
        notes,
    ))
}

/// What the publisher did.
struct Published {
    published: u64,
    errors: u64,
    /// The first error, if any.
    error: Option<String>,
}

/// Publishes `rate` events a second to the groups in turn, through the surviving process, on
/// a thread and runtime of its own (its answers are not queued behind the clients' reads),
/// until the run ends.
fn publish(
    run: Arc<Run>,
    url: Url,
    format: PubFormat,
    rate: f64,
) -> std::thread::JoinHandle<Published> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let mut done = Published {
                published: 0,
                errors: 0,
                error: None,
            };
            let mut publisher = match Publisher::connect(&url, format).await {
                Ok(publisher) => publisher,
                Err(e) => {
                    done.error = Some(format!("publisher: {e}"));
                    return done;
                }
            };
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut phase = run.phase.clone();
            for n in 0.. {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = phase.wait_for(|phase| *phase >= Phase::Ending) => break,
                }
                let group = n % run.published.len();
                let seq = run.published[group].load(SeqCst) + 1;
                let data = run.shared.event_data(seq);
                match publisher.publish(&group_name(group), &data).await {
                    Ok(()) => {
                        run.published[group].store(seq, SeqCst);
                        done.published += 1;
                    }
                    Err(e) => {
                        done.errors += 1;
                        done.error.get_or_insert(format!("publish: {e}"));
                    }
                }
            }
            done
        })
    })
}
