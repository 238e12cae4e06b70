//! How fast one process publishes through Redis: events/s with 1, 8 and 64 concurrent publishers,
//! as async tasks (`Hub::publish_async`) and as threads (`Hub::publish`, what `publish!` calls),
//! and the `redis-server`'s CPU time per event. It starts a `redis-server` of its own on a free
//! loopback port and stops it at the end.
//!
//! ```sh
//! cargo run --release -p sse-bench --features redis --bin sse-bench-redis-publish [-- SECONDS]
//! ```

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

const PUBLISHERS: [usize; 3] = [1, 8, 64];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(seconds) => seconds.parse()?,
        None => 3,
    };
    let run_for = Duration::from_secs(seconds);
    let redis = RedisServer::start()?;
    let result = measure(&redis, run_for);
    drop(redis);
    result
}

fn measure(redis: &RedisServer, run_for: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let config = sse::Config::default().broker(&redis.url)?;
    let hub = sse::Hub::connect(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    println!("publishers  how                    events/s  redis CPU µs/event");
    for publishers in PUBLISHERS {
        let tasks =
            redis.measure(|| runtime.block_on(async_publishers(&hub, publishers, run_for)))?;
        tasks.print(publishers, "tasks, publish_async");
        let threads = redis.measure(|| thread_publishers(&hub, publishers, run_for))?;
        threads.print(publishers, "threads, publish");
    }
    Ok(())
}

/// `publishers` tasks publishing as fast as they can for `run_for`; how many events they published.
async fn async_publishers(hub: &sse::Hub, publishers: usize, run_for: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + run_for;
    let tasks: Vec<_> = (0..publishers)
        .map(|publisher| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut published = 0;
                while tokio::time::Instant::now() < deadline {
                    let data = format!("{publisher}-{published}");
                    hub.publish_async("bench", Some("tick"), data)
                        .await
                        .expect("Redis publishes");
                    published += 1;
                }
                published
            })
        })
        .collect();
    let mut published = 0;
    for task in tasks {
        published += task.await.expect("a publisher task ends");
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
                    hub.publish("bench", Some("tick"), data)
                        .expect("Redis publishes");
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

/// Events published in a while, and the Redis CPU time they took.
struct Measured {
    events: u64,
    took: Duration,
    redis_cpu: Duration,
}

impl Measured {
    fn print(&self, publishers: usize, how: &str) {
        let per_second = self.events as f64 / self.took.as_secs_f64();
        let cpu_us = self.redis_cpu.as_secs_f64() * 1e6 / self.events.max(1) as f64;
        println!("{publishers:>10}  {how:<21} {per_second:>9.0}  {cpu_us:>18.1}");
    }
}

/// A `redis-server` of this program's own, killed when dropped.
struct RedisServer {
    url: String,
    process: Child,
}

impl RedisServer {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()?;
        let server = RedisServer {
            url: format!("redis://127.0.0.1:{port}/0"),
            process,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("redis-server did not listen on {port}").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// Runs `publish`, which says how many events it published.
    fn measure(&self, publish: impl FnOnce() -> u64) -> std::io::Result<Measured> {
        let cpu_before = self.cpu()?;
        let started = Instant::now();
        let events = publish();
        let took = started.elapsed();
        Ok(Measured {
            events,
            took,
            redis_cpu: self.cpu()? - cpu_before,
        })
    }

    /// The server's CPU time so far, user and system (`/proc/<pid>/stat`).
    fn cpu(&self) -> std::io::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.id()))?;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of the whole line, 12 and 13 after the name.
        let times = fields.get(11..13).unwrap_or_default();
        let ticks: u64 = times.iter().filter_map(|f| f.parse::<u64>().ok()).sum();
        // SAFETY: sysconf only reads a constant of the system.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_micros(ticks * 1_000_000 / per_second))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
