//! Publishing through PostgreSQL, measured against a real `postgres` and a real `redis-server`
//! that this program starts on free loopback ports and stops at the end, side by side in one
//! run (issue 21):
//!
//! 1. The outbox: tasks, each with a connection of its own from a pool, publishing inside
//!    their own transactions (`BEGIN; sse::postgres::Outbox::publish …; COMMIT`), one event
//!    per transaction and 100 per transaction (also in one `Outbox::publish_all`), 1 and 64 of
//!    them, to one group and to a group each; also with `synchronous_commit = off` on their
//!    sessions. Events/s, the CPU time of the whole Postgres server (the postmaster and every
//!    child of it) per event, and this process's (the publishers') per event. Also what a
//!    process listening to a group costs while nothing is published.
//! 2. The engine's publish path (`Hub::publish_async` on a hub with the Postgres engine), 1 and
//!    64 tasks, beside the same on the Redis engine: events/s, and the server's CPU per event.
//! 3. Publish → receive across processes at a steady 1,000 events/s for 10 s: a process of
//!    this program in `subscribe` mode holds a stream of the group on a hub of its own; p50,
//!    p99 and max, through the Postgres engine, through the outbox (a transaction per event,
//!    committed; also at 200 events/s), and through the Redis engine.
//!
//! Postgres runs with its defaults (`fsync` and `synchronous_commit` on): each commit waits for
//! its WAL to reach the disk. A Postgres-engine subscriber process listens throughout part 1
//! and 2, as a deployment's would.
//!
//! ```sh
//! cargo build --release -p sse-bench --features postgres,redis --bin sse-bench-postgres
//! target/release/sse-bench-postgres [SECONDS]   # each throughput figure over SECONDS (4)
//! ```

use std::{
    future::Future,
    time::{Duration, Instant},
};

use sqlx::{postgres::PgPoolOptions, Connection, PgPool};

mod server;
#[path = "../redis_publish/servers.rs"]
#[allow(dead_code)] // the Redis Cluster and the peers' port serve `sse-bench-redis-publish` only
mod servers;
mod subscriber;

use server::Postgres;
use servers::{cpu_of, Error, Redis};
use subscriber::{now_us, Subscriber};

/// The group whose latency is measured; the throughput runs publish to others.
const LATENCY_GROUP: &str = "latency";
/// Publishers' connections of their own.
const PUBLISHERS: usize = 64;
/// The steady rate of the latency runs (the goal's), and how long each lasts.
const LATENCY_RATE: u64 = 1_000;
const LATENCY_FOR: Duration = Duration::from_secs(10);
/// How long the cost of listening while nothing is published is measured.
const IDLE_FOR: Duration = Duration::from_secs(5);

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, broker_url, group] = args.as_slice() {
        if mode == "subscribe" {
            return subscriber::run(broker_url, group);
        }
    }
    let seconds = args.first().and_then(|s| s.parse().ok()).unwrap_or(4);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(measure(Duration::from_secs(seconds)))
}

async fn measure(run_for: Duration) -> Result<(), Error> {
    let postgres = Postgres::start().await?;
    let redis = Redis::single()?;
    let redis_version = std::process::Command::new("redis-server")
        .arg("--version")
        .output()?;
    println!(
        "{} (fsync on, synchronous_commit on unless said)",
        postgres.version
    );
    println!("{}", String::from_utf8_lossy(&redis_version.stdout).trim());
    print_flush_latency(&postgres, "before")?;

    let pg_hub = sse::Hub::connect(sse::Config::default().broker(&postgres.url)?)?;
    // The engine's commits not waiting for the disk (`sse.durable_publish = off`).
    let fast_url = format!("{}?options=-c%20sse.durable_publish%3Doff", postgres.url);
    let pg_fast_hub = sse::Hub::connect(sse::Config::default().broker(&fast_url)?)?;
    let pg_subscriber = Subscriber::start(&postgres.url, LATENCY_GROUP)?;
    pg_subscriber.ready(&pg_hub, LATENCY_GROUP).await?;
    let pool = publishers_pool(&postgres.url, true).await?;
    print_idle(&postgres, &pg_subscriber).await?;

    println!();
    println!(
        "## The outbox: a transaction per task, {} s each",
        run_for.as_secs()
    );
    println!();
    println!("| publishers | groups | events per transaction | synchronous_commit | events/s | transactions/s | Postgres CPU µs/event | publishers' CPU µs/event |");
    println!("|---:|---:|---:|---|---:|---:|---:|---:|");
    let runs = [
        (1, 1, 1, false),
        (1, 1, 100, false),
        (1, 1, 100, true),
        (64, 1, 1, false),
        (64, 64, 1, false),
        (64, 1, 100, false),
        (64, 64, 100, false),
        (64, 64, 100, true),
    ];
    for (publishers, groups, per_transaction, together) in runs {
        let outbox = Outbox {
            publishers,
            groups,
            per_transaction,
            together,
        };
        let per_transaction = match together {
            true => format!("{per_transaction} (`publish_all`)"),
            false => per_transaction.to_string(),
        };
        let own_before = own_cpu()?;
        let (events, took, cpu) = timed(&postgres, outbox.run(&pool, &pg_hub, run_for)).await?;
        let transactions = events / outbox.per_transaction as u64;
        println!(
            "| {publishers} | {groups} | {per_transaction} | on | {:.0} | {:.0} | {:.1} | {:.1} |",
            events as f64 / took.as_secs_f64(),
            transactions as f64 / took.as_secs_f64(),
            cpu_per_event(cpu, events),
            cpu_per_event(own_cpu()? - own_before, events),
        );
    }
    pool.close().await;
    let unsynced = publishers_pool(&postgres.url, false).await?;
    for groups in [1, 64] {
        let outbox = Outbox {
            publishers: PUBLISHERS,
            groups,
            per_transaction: 1,
            together: false,
        };
        let own_before = own_cpu()?;
        let (events, took, cpu) = timed(&postgres, outbox.run(&unsynced, &pg_hub, run_for)).await?;
        let rate = events as f64 / took.as_secs_f64();
        println!(
            "| {PUBLISHERS} | {groups} | 1 | off | {rate:.0} | {rate:.0} | {:.1} | {:.1} |",
            cpu_per_event(cpu, events),
            cpu_per_event(own_cpu()? - own_before, events),
        );
    }

    println!();
    println!(
        "## The engine's publish path: `Hub::publish_async` from tasks, {} s each",
        run_for.as_secs()
    );
    println!();
    println!("| engine | publishers | groups | events/s | server CPU µs/event | publishers' CPU µs/event |");
    println!("|---|---:|---:|---:|---:|---:|");
    let redis_hub = sse::Hub::connect(sse::Config::default().broker(&redis.url)?)?;
    for (publishers, groups) in [(1, 1), (64, 1), (64, 64)] {
        let postgres_hubs = [
            ("Postgres", &pg_hub),
            ("Postgres, `sse.durable_publish = off`", &pg_fast_hub),
        ];
        for (name, hub) in postgres_hubs {
            let own_before = own_cpu()?;
            let (events, took, cpu) =
                timed(&postgres, engine(hub, publishers, groups, run_for)).await?;
            let rate = events as f64 / took.as_secs_f64();
            let cpu = cpu_per_event(cpu, events);
            let own = cpu_per_event(own_cpu()? - own_before, events);
            println!("| {name} | {publishers} | {groups} | {rate:.0} | {cpu:.1} | {own:.1} |");
        }
        let (cpu_before, own_before) = (redis.cpu()?, own_cpu()?);
        let started = Instant::now();
        let events = engine(&redis_hub, publishers, groups, run_for).await?;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        let cpu = cpu_per_event(redis.cpu()? - cpu_before, events);
        let own = cpu_per_event(own_cpu()? - own_before, events);
        println!("| Redis | {publishers} | {groups} | {rate:.0} | {cpu:.1} | {own:.1} |");
    }

    println!();
    println!(
        "## Publish → receive in another process, {} s each",
        LATENCY_FOR.as_secs()
    );
    println!();
    println!("| path | events/s | received | p50 | p99 | max | server CPU µs/event |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let engine_publish = |hub: &sse::Hub| {
        let hub = hub.clone();
        move |data: String| {
            let hub = hub.clone();
            async move {
                hub.publish_async(LATENCY_GROUP, Some("tick"), data)
                    .await
                    .map(drop)
                    .map_err(Error::from)
            }
        }
    };
    let (sent, _, cpu) = timed(&postgres, steady(LATENCY_RATE, engine_publish(&pg_hub))).await?;
    let received = pg_subscriber.report(&pg_hub, LATENCY_GROUP).await?;
    print_latency(
        "Postgres engine, `publish_async`",
        LATENCY_RATE,
        &received,
        sent,
        cpu,
    );
    let (sent, _, cpu) = timed(
        &postgres,
        steady(LATENCY_RATE, engine_publish(&pg_fast_hub)),
    )
    .await?;
    let received = pg_subscriber.report(&pg_hub, LATENCY_GROUP).await?;
    let path = "Postgres engine, `sse.durable_publish = off`";
    print_latency(path, LATENCY_RATE, &received, sent, cpu);

    let latency_pool = publishers_pool(&postgres.url, true).await?;
    // Also at a rate a transaction per event keeps up with.
    for rate in [LATENCY_RATE, LATENCY_RATE / 5] {
        let committing = |data: String| {
            let (hub, pool) = (pg_hub.clone(), latency_pool.clone());
            async move {
                let mut transaction = pool.begin().await?;
                let outbox = sse::postgres::Outbox::new(&hub);
                outbox
                    .publish(&mut transaction, LATENCY_GROUP, Some("tick"), data)
                    .await?;
                transaction.commit().await?;
                Ok(())
            }
        };
        let (sent, _, cpu) = timed(&postgres, steady(rate, committing)).await?;
        let received = pg_subscriber.report(&pg_hub, LATENCY_GROUP).await?;
        let path = "Postgres outbox, a transaction per event";
        print_latency(path, rate, &received, sent, cpu);
    }

    let redis_subscriber = Subscriber::start(&redis.url, LATENCY_GROUP)?;
    redis_subscriber.ready(&redis_hub, LATENCY_GROUP).await?;
    let cpu_before = redis.cpu()?;
    let sent = steady(LATENCY_RATE, engine_publish(&redis_hub)).await?;
    let cpu = redis.cpu()? - cpu_before;
    let received = redis_subscriber.report(&redis_hub, LATENCY_GROUP).await?;
    print_latency(
        "Redis engine, `publish_async`",
        LATENCY_RATE,
        &received,
        sent,
        cpu,
    );
    print_flush_latency(&postgres, "after")
}

/// A pool for the publishers' connections, all open; with `synced` false, their sessions have
/// `synchronous_commit = off` (a commit does not wait for the disk).
async fn publishers_pool(url: &str, synced: bool) -> Result<PgPool, Error> {
    let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
    if !synced {
        options = options.options([("synchronous_commit", "off")]);
    }
    // A rate the transactions do not keep up with queues its publishers for the pool: they
    // wait (the latency says how long) instead of failing.
    let pool = PgPoolOptions::new()
        .min_connections(PUBLISHERS as u32)
        .max_connections(PUBLISHERS as u32)
        .acquire_timeout(Duration::from_secs(600))
        .connect_with(options)
        .await?;
    sse::postgres::migrate(&mut *pool.acquire().await?).await?;
    Ok(pool)
}

/// Runs `work`, which says how many events it published, with how long it took and the
/// Postgres CPU time it cost.
async fn timed(
    postgres: &Postgres,
    work: impl Future<Output = Result<u64, Error>>,
) -> Result<(u64, Duration, Duration), Error> {
    let cpu_before = postgres.cpu()?;
    let started = Instant::now();
    let events = work.await?;
    Ok((events, started.elapsed(), postgres.cpu()? - cpu_before))
}

/// The CPU time of this process so far: the publishers, their hub and its engine's thread.
fn own_cpu() -> Result<Duration, Error> {
    cpu_of(std::process::id())
}

fn cpu_per_event(cpu: Duration, events: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / events.max(1) as f64
}

/// Tasks publishing through the outbox.
#[derive(Clone, Copy)]
struct Outbox {
    publishers: usize,
    /// Publisher `i` publishes to group `i % groups`.
    groups: usize,
    per_transaction: usize,
    /// The transaction's events in one `Outbox::publish_all`, or one `Outbox::publish` each.
    together: bool,
}

impl Outbox {
    /// Publishes as fast as the tasks can for `run_for`: how many events were committed.
    async fn run(self, pool: &PgPool, hub: &sse::Hub, run_for: Duration) -> Result<u64, Error> {
        let deadline = tokio::time::Instant::now() + run_for;
        let tasks: Vec<_> = (0..self.publishers)
            .map(|publisher| {
                let (pool, hub) = (pool.clone(), hub.clone());
                let group = format!("outbox-{}", publisher % self.groups);
                tokio::spawn(async move {
                    let mut connection = pool.acquire().await?;
                    let outbox = sse::postgres::Outbox::new(&hub);
                    let mut committed = 0;
                    while tokio::time::Instant::now() < deadline {
                        let mut transaction = connection.begin().await?;
                        let data = |i| format!("{publisher}-{committed}-{i}");
                        if self.together {
                            let events = (0..self.per_transaction).map(|i| (Some("tick"), data(i)));
                            outbox.publish_all(&mut transaction, &group, events).await?;
                        } else {
                            for i in 0..self.per_transaction {
                                outbox
                                    .publish(&mut transaction, &group, Some("tick"), data(i))
                                    .await?;
                            }
                        }
                        transaction.commit().await?;
                        committed += self.per_transaction as u64;
                    }
                    Ok::<u64, Error>(committed)
                })
            })
            .collect();
        let mut committed = 0;
        for task in tasks {
            committed += task.await??;
        }
        Ok(committed)
    }
}

/// `publishers` tasks publishing on `hub` as fast as they can for `run_for`, publisher `i` to
/// group `i % groups`: how many events they published.
async fn engine(
    hub: &sse::Hub,
    publishers: usize,
    groups: usize,
    run_for: Duration,
) -> Result<u64, Error> {
    let deadline = tokio::time::Instant::now() + run_for;
    let tasks: Vec<_> = (0..publishers)
        .map(|publisher| {
            let hub = hub.clone();
            let group = format!("engine-{}", publisher % groups);
            tokio::spawn(async move {
                let mut published = 0;
                while tokio::time::Instant::now() < deadline {
                    let data = format!("{publisher}-{published}");
                    hub.publish_async(&group, Some("tick"), data).await?;
                    published += 1;
                }
                Ok::<u64, Error>(published)
            })
        })
        .collect();
    let mut published = 0;
    for task in tasks {
        published += task.await??;
    }
    Ok(published)
}

/// Calls `publish` with the time now as the event's data, `rate` times a second for
/// [`LATENCY_FOR`], each publish a task of its own (one taking longer than the interval does
/// not hold up the next): how many events were published.
async fn steady<F>(rate: u64, publish: impl Fn(String) -> F) -> Result<u64, Error>
where
    F: Future<Output = Result<(), Error>> + Send + 'static,
{
    let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let deadline = tokio::time::Instant::now() + LATENCY_FOR;
    let mut tasks = Vec::new();
    while every.tick().await < deadline {
        tasks.push(tokio::spawn(publish(now_us().to_string())));
    }
    let mut published = 0;
    for task in tasks {
        task.await??;
        published += 1;
    }
    Ok(published)
}

fn print_latency(path: &str, rate: u64, received: &subscriber::Received, sent: u64, cpu: Duration) {
    println!(
        "| {path} | {rate} | {} of {sent} | {:.2?} | {:.2?} | {:.2?} | {:.1} |",
        received.events,
        received.p50,
        received.p99,
        received.max,
        cpu_per_event(cpu, sent),
    );
}

/// What a process listening to a group costs while nothing is published: Postgres's CPU and
/// the process's own, per second, over [`IDLE_FOR`].
async fn print_idle(postgres: &Postgres, listening: &Subscriber) -> Result<(), Error> {
    let (postgres_before, process_before) = (postgres.cpu()?, listening.cpu()?);
    tokio::time::sleep(IDLE_FOR).await;
    let per_second = |cpu: Duration| cpu.as_secs_f64() * 1e6 / IDLE_FOR.as_secs_f64();
    println!(
        "idle, one process listening to one group: Postgres CPU {:.0} µs/s, the process's {:.0} µs/s",
        per_second(postgres.cpu()? - postgres_before),
        per_second(listening.cpu()? - process_before),
    );
    Ok(())
}

fn print_flush_latency(postgres: &Postgres, when: &str) -> Result<(), Error> {
    let (median, p90) = postgres.flush_latency()?;
    println!("{when}: 8 kB written and fdatasync'ed on the data directory's disk: median {median:.2?}, p90 {p90:.2?}");
    Ok(())
}
