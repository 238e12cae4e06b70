//! Publishing through Redis, measured against real `redis-server` processes that this program
//! starts on free loopback ports and stops at the end, side by side in one run:
//!
//! 1. From one process, in-process: first a lone publisher, 10,000 publishes one after the
//!    other, each awaited (what a handler publishing now and then costs Redis), beside as many
//!    `PING`s sent the same way by `redis-benchmark` (the part of it any request costs, on
//!    one node); then events/s
//!    with 1, 8 and 64 concurrent publishers, as async
//!    tasks (`Hub::publish_async`) and as threads (`Hub::publish`, what `publish!` calls), and
//!    the CPU time of the `redis-server` processes per event; also tasks publishing each event
//!    with an idempotency key of its own (`Hub::idempotent`), and tasks publishing each to a
//!    group of its own (groups spread over the shards); with 1 Redis and with a 3-node
//!    Redis Cluster. Beside the CPU time of the `redis-server` processes, the time they spent
//!    inside the publishing script (`INFO commandstats`); the rest is reading requests and
//!    writing answers. With `--before PATH`, the same program built from an earlier commit runs
//!    first, against a Redis of its own, and its table is printed alongside.
//! 2. Over HTTP, with `--http`: two instances sharing the Redis, events posted to the first by
//!    1, 8 and 64 connections (events/s, Redis CPU µs/event), and the publish→receive latency
//!    to a stream of the second (p50/p99 at 200 events/s): ours (two processes of this program
//!    in `node` mode) on 1 Redis and on the cluster; nchan over Redis and django-eventstream
//!    over Redis (`/work/shared/peers/peer`), on 1 Redis.
//!
//! ```sh
//! cargo run --release -p sse-bench --features redis --bin sse-bench-redis-publish -- \
//!     [SECONDS] [--http | --http-only] [--fanout] [--before PATH]
//! ```

use std::{
    process::Command,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

mod fanout;
mod http;
mod servers;

use servers::{Error, Redis};

const PUBLISHERS: [usize; 3] = [1, 8, 64];
/// How many publishes the lone publisher makes, one after the other.
const LONE: u64 = 10_000;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, broker_url] = args.as_slice() {
        if mode == "node" {
            return node(broker_url);
        }
    }
    let seconds = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let run_for = Duration::from_secs(seconds);
    let before = args
        .iter()
        .position(|arg| arg == "--before")
        .and_then(|i| args.get(i + 1));

    println!("## In-process publishing, {seconds} s each");
    println!();
    println!("| Redis | publishers | how | events/s | Redis CPU µs/event | in scripts |");
    println!("|---|---:|---|---:|---:|---:|");
    if let Some(before) = before {
        let output = Command::new(before).arg(seconds.to_string()).output()?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            // `| Redis | publishers | how | events/s | Redis CPU µs/event | [in scripts |]`
            let fields: Vec<&str> = line.split('|').map(str::trim).collect();
            if let ["", redis, publishers, how, rate, cpu, rest @ ..] = fields.as_slice() {
                if rate.parse::<f64>().is_ok() {
                    let scripts = rest.first().copied().unwrap_or_default();
                    println!(
                        "| {redis}, before | {publishers} | {how} | {rate} | {cpu} | {scripts} |"
                    );
                }
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let in_process = !args.iter().any(|arg| arg == "--http-only");
    for redis in [Redis::single()?, Redis::cluster()?]
        .into_iter()
        .filter(|_| in_process)
    {
        let hub = sse::Hub::connect(sse::Config::default().broker(&redis.url)?)?;
        let pings = measure(&redis, || redis.ping_one_by_one(LONE).unwrap_or(0))?;
        pings.print(&redis, 1, "floor: 10,000 PINGs, each awaited");
        let lone = measure(&redis, || runtime.block_on(lone(&hub)))?;
        lone.print(&redis, 1, "lone: 10,000 publishes, each awaited");
        for publishers in PUBLISHERS {
            let tasks = measure(&redis, || {
                runtime.block_on(async_publishers(&hub, publishers, Tasks::OneGroup, run_for))
            })?;
            tasks.print(&redis, publishers, "tasks, publish_async");
            let keyed = measure(&redis, || {
                runtime.block_on(async_publishers(&hub, publishers, Tasks::Keyed, run_for))
            })?;
            keyed.print(&redis, publishers, "tasks, each event with a key");
            if publishers > 1 {
                let spread = measure(&redis, || {
                    runtime.block_on(async_publishers(
                        &hub,
                        publishers,
                        Tasks::GroupEach,
                        run_for,
                    ))
                })?;
                spread.print(&redis, publishers, "tasks, a group each");
            }
            let threads = measure(&redis, || thread_publishers(&hub, publishers, run_for))?;
            threads.print(&redis, publishers, "threads, publish");
        }
    }

    if args.iter().any(|arg| arg.starts_with("--http")) {
        runtime.block_on(over_http(run_for))?;
    }
    if args.iter().any(|arg| arg == "--fanout") {
        fanout::measure()?;
    }
    Ok(())
}

/// Every system over HTTP: publish rates and latency across processes.
async fn over_http(run_for: Duration) -> Result<(), Error> {
    println!();
    println!(
        "## Over HTTP, two instances sharing Redis, {} s each",
        run_for.as_secs()
    );
    println!();
    println!("| system | publishers | events/s | Redis CPU µs/event | in scripts |");
    println!("|---|---:|---:|---:|---:|");
    let mut latencies = Vec::new();
    let systems: [(&str, Option<&str>); 4] = [
        ("sse, 1 Redis", None),
        ("sse, 3-node Cluster", None),
        ("nchan over Redis", Some("nchan-redis")),
        ("django-eventstream over Redis", Some("django-eventstream")),
    ];
    for (name, peer) in systems {
        let redis = match name.contains("Cluster") {
            true => Redis::cluster()?,
            false => Redis::single()?,
        };
        let start = || match peer {
            None => http::Instance::ours(&redis.url),
            Some(peer) => http::Instance::peer(peer, redis.port),
        };
        let (a, b) = match (start(), start()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(why), _) | (_, Err(why)) => {
                println!("| {name} | could not start: {why} | | |");
                continue;
            }
        };
        for publishers in PUBLISHERS {
            redis.script_time()?;
            let cpu_before = redis.cpu()?;
            let started = Instant::now();
            let events = http::publish_flat_out(&a, publishers, run_for).await?;
            let measured = Measured {
                events,
                took: started.elapsed(),
                redis_cpu: redis.cpu()? - cpu_before,
                in_scripts: redis.script_time()?,
            };
            let (rate, cpu, scripts) = measured.figures();
            println!("| {name} | {publishers} | {rate:.0} | {cpu:.1} | {scripts:.1} |");
        }
        latencies.push((name, http::latency(&a, &b, 200, run_for).await));
    }
    println!();
    println!("| system | publish→receive p50 | p99 | received |");
    println!("|---|---:|---:|---:|");
    for (name, latency) in latencies {
        match latency {
            Ok((p50, p99, received, sent)) => {
                println!("| {name} | {p50:.2?} | {p99:.2?} | {received} of {sent} |")
            }
            Err(why) => println!("| {name} | failed: {why:?} | | |"),
        }
    }
    Ok(())
}

/// `node BROKER_URL`: serves `POST /pub/{group}` (the body as the data of a `tick` event) and
/// `GET /sub/{group}` on a free port, saying where on its first line.
fn node(broker_url: &str) -> Result<(), Error> {
    use axum::{
        extract::Path,
        http::StatusCode,
        response::{IntoResponse, Response},
        routing::{get, post},
    };

    let hub = sse::Hub::connect(sse::Config::default().broker(broker_url)?)?;
    let publishing = hub.clone();
    let app = axum::Router::new()
        .route(
            "/pub/{group}",
            post(move |Path(group): Path<String>, body: String| async move {
                let published = publishing.publish_async(&group, Some("tick"), body).await;
                match published {
                    Ok(id) => id.to_string().into_response(),
                    Err(error) => {
                        (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
                    }
                }
            }),
        )
        .route(
            "/sub/{group}",
            get(
                move |Path(group): Path<sse::GroupName>, last: sse::LastEventId| async move {
                    let stream: Response = hub.subscribe([group], &last).into_response();
                    stream
                },
            ),
        );
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// How publishing tasks publish.
#[derive(Clone, Copy)]
enum Tasks {
    /// All to one group.
    OneGroup,
    /// Each to a group of its own.
    GroupEach,
    /// All to one group, each event with an idempotency key of its own.
    Keyed,
}

/// One task publishing [`LONE`] events to one group, each after the last one's answer; how
/// many it published.
async fn lone(hub: &sse::Hub) -> u64 {
    for published in 0..LONE {
        if hub
            .publish_async("lone", Some("tick"), published)
            .await
            .is_err()
        {
            return published;
        }
    }
    LONE
}

/// `publishers` tasks publishing as fast as they can for `run_for`, as `how` says; how many
/// events they published.
async fn async_publishers(hub: &sse::Hub, publishers: usize, how: Tasks, run_for: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + run_for;
    let tasks: Vec<_> = (0..publishers)
        .map(|publisher| {
            let hub = hub.clone();
            let group = match how {
                Tasks::GroupEach => format!("bench-{publisher}"),
                Tasks::OneGroup | Tasks::Keyed => "bench".to_owned(),
            };
            tokio::spawn(async move {
                let mut published = 0;
                while tokio::time::Instant::now() < deadline {
                    let data = format!("{publisher}-{published}");
                    let published_ok = match how {
                        Tasks::Keyed => {
                            let keyed = hub.idempotent(&data);
                            keyed.publish_async(&group, Some("tick"), &data).await
                        }
                        Tasks::OneGroup | Tasks::GroupEach => {
                            hub.publish_async(&group, Some("tick"), &data).await
                        }
                    };
                    if published_ok.is_err() {
                        break;
                    }
                    published += 1;
                }
                published
            })
        })
        .collect();
    let mut published = 0;
    for task in tasks {
        published += task.await.unwrap_or(0);
    }
    published
}

/// `publishers` threads publishing as fast as they can for `run_for`; how many events they published.
fn thread_publishers(hub: &sse::Hub, publishers: usize, run_for: Duration) -> u64 {
    let published = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for publisher in 0..publishers {
            let (hub, published, stop) = (hub.clone(), &published, &stop);
            scope.spawn(move || {
                let mut mine = 0;
                while !stop.load(Ordering::Relaxed) {
                    let data = format!("{publisher}-{mine}");
                    if hub.publish("bench", Some("tick"), data).is_err() {
                        break;
                    }
                    mine += 1;
                }
                published.fetch_add(mine, Ordering::Relaxed);
            });
        }
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
    });
    published.into_inner()
}

/// Events published in a while, the Redis CPU time they took, and Redis's time inside scripts.
struct Measured {
    events: u64,
    took: Duration,
    redis_cpu: Duration,
    in_scripts: Duration,
}

impl Measured {
    /// Events per second, Redis CPU µs per event, and µs inside scripts per event.
    fn figures(&self) -> (f64, f64, f64) {
        let per_second = self.events as f64 / self.took.as_secs_f64();
        let per_event = |time: Duration| time.as_secs_f64() * 1e6 / self.events.max(1) as f64;
        (
            per_second,
            per_event(self.redis_cpu),
            per_event(self.in_scripts),
        )
    }

    fn print(&self, redis: &Redis, publishers: usize, how: &str) {
        let (rate, cpu, scripts) = self.figures();
        println!(
            "| {} | {publishers} | {how} | {rate:.0} | {cpu:.1} | {scripts:.1} |",
            redis.name
        );
    }
}

/// Runs `publish`, which says how many events it published, with the Redis CPU time it took.
fn measure(redis: &Redis, publish: impl FnOnce() -> u64) -> Result<Measured, Error> {
    redis.script_time()?;
    let cpu_before = redis.cpu()?;
    let started = Instant::now();
    let events = publish();
    let redis_cpu = redis.cpu()? - cpu_before;
    Ok(Measured {
        events,
        took: started.elapsed(),
        redis_cpu,
        in_scripts: redis.script_time()?,
    })
}
