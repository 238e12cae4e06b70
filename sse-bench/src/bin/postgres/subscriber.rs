//! Publish → receive latency across processes: a process of this program in `subscribe` mode
//! holds a stream of one group on a hub of its own, and measures how long each `tick` event
//! took from its publisher (its data: when it was published, µs since 1970; the two processes
//! share the machine's clock). The benchmark talks to it through the group itself: a `ready`
//! event makes it say `ready` (it hears the group), a `report` event makes it print what it
//! measured since the last report and start again.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;

use crate::servers::{cpu_of, Error};

/// How many events the stream may fall behind before it is cut.
const SUBSCRIBER_QUEUE: usize = 8_192;
/// How long the subscribing process may take to hear its group, or to report.
const PATIENCE: Duration = Duration::from_secs(20);

/// Now, in µs since 1970.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_micros() as u64)
}

/// `subscribe BROKER_URL GROUP`: the subscribing process, until its stdin closes.
pub(crate) fn run(broker_url: &str, group: &str) -> Result<(), Error> {
    // A queue as deep as the bench server's: on this busy machine the process may wait for a
    // core for longer than the default 256 events take at 1,000 events/s, and would be cut.
    let config = sse::Config::default().subscriber_queue(SUBSCRIBER_QUEUE);
    let hub = sse::Hub::connect(config.broker(broker_url)?)?;
    let group = sse::GroupName::new(group)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The benchmark closes our stdin when it is done, or dies.
    std::thread::spawn(|| {
        let _ = std::io::stdin().lines().count();
        std::process::exit(0);
    });
    runtime.block_on(async move {
        let mut stream = hub.subscribe(group, &sse::LastEventId::default())?;
        let mut parser = Parser::default();
        let mut latencies_us: Vec<u64> = Vec::new();
        let mut ready = false;
        while let Some(chunk) = stream.next().await {
            let now = now_us();
            for (event, data) in parser.events(&chunk) {
                match event.as_str() {
                    "tick" => {
                        if let Ok(sent) = data.parse::<u64>() {
                            latencies_us.push(now.saturating_sub(sent));
                        }
                    }
                    "ready" if !ready => {
                        ready = true;
                        println!("ready");
                    }
                    "report" => {
                        latencies_us.sort_unstable();
                        let at = |q: f64| {
                            let last = latencies_us.len().saturating_sub(1);
                            latencies_us
                                .get((last as f64 * q) as usize)
                                .copied()
                                .unwrap_or(0)
                        };
                        let (p50, p99, max) = (at(0.5), at(0.99), at(1.0));
                        println!("received {} {p50} {p99} {max}", latencies_us.len());
                        latencies_us.clear();
                    }
                    _ => {}
                }
            }
        }
        Err("the stream ended".into())
    })
}

/// SSE events out of a stream's chunks: each one's name and data (one line of data here).
#[derive(Default)]
struct Parser {
    /// A line not yet ended.
    partial: String,
    event: String,
    data: String,
}

impl Parser {
    fn events(&mut self, chunk: &[u8]) -> Vec<(String, String)> {
        self.partial.push_str(&String::from_utf8_lossy(chunk));
        let mut events = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                let event = std::mem::take(&mut self.event);
                events.push((event, std::mem::take(&mut self.data)));
            } else if let Some(event) = line.strip_prefix("event:") {
                self.event = event.trim_start().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data = data.trim_start().to_owned();
            }
        }
        events
    }
}

/// What the subscribing process measured: events received, and their latency.
pub(crate) struct Received {
    pub(crate) events: u64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

/// A subscribing process, killed when dropped.
pub(crate) struct Subscriber {
    process: Child,
    lines: mpsc::Receiver<String>,
}

impl Subscriber {
    /// A process of this program subscribed to `group` through the broker at `broker_url`.
    pub(crate) fn start(broker_url: &str, group: &str) -> Result<Subscriber, Error> {
        let mut process = Command::new(std::env::current_exe()?)
            .args(["subscribe", broker_url, group])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = process.stdout.take().ok_or("a piped stdout")?;
        let (said, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if said.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Subscriber { process, lines })
    }

    /// The CPU time of the process so far.
    pub(crate) fn cpu(&self) -> Result<Duration, Error> {
        cpu_of(self.process.id())
    }

    /// Waits until the process hears `hub`'s events of `group`, which it publishes meanwhile.
    pub(crate) async fn ready(&self, hub: &sse::Hub, group: &str) -> Result<(), Error> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            hub.publish_async(group, Some("ready"), "?").await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.lines.try_iter().any(|line| line == "ready") {
                return Ok(());
            }
        }
        Err(format!("the subscribing process never heard group {group}").into())
    }

    /// What the process measured since its last report: `hub` asks it in `group`.
    pub(crate) async fn report(&self, hub: &sse::Hub, group: &str) -> Result<Received, Error> {
        hub.publish_async(group, Some("report"), "?").await?;
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let line = match self.lines.try_recv() {
                Ok(line) => line,
                Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            };
            let fields: Vec<u64> = match line.strip_prefix("received ") {
                Some(figures) => figures.split(' ').filter_map(|f| f.parse().ok()).collect(),
                None => continue,
            };
            if let [events, p50, p99, max] = fields[..] {
                return Ok(Received {
                    events,
                    p50: Duration::from_micros(p50),
                    p99: Duration::from_micros(p99),
                    max: Duration::from_micros(max),
                });
            }
        }
        Err("the subscribing process did not report".into())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
