//! `sse-bench soak`: our server under a mixed load for a stated number of minutes, its memory
//! sampled all along. Not run by CI (`scripts/bench soak --minutes N`).
//!
//! - **Healthy** clients read streams of many groups and check, by the sequence number the
//!   publisher writes into every event, that they get each event exactly once, also across the
//!   reconnections they make now and then, which resume with `Last-Event-ID`.
//! - **Stalled** clients open a stream and never read it; they leave after two to five minutes
//!   and come back, and say whether the server had closed them by then.
//! - **Churn**: loops that open a stream and drop it at once.
//! - **Hostile** clients, in turn: a head sent a line a second that never ends, a head over the
//!   size limit, a head that never stops, bytes that are not HTTP. Each answer (or close) is
//!   checked against what the server promises.
//!
//! Every 10 s a line: the server's RSS (from /proc, every process of it) and the counters. At
//! the end the publisher stops, the healthy clients read what remains, and the events they
//! never got are counted. It exits non-zero if any was lost or duplicated, or any client got an
//! answer the server does not promise.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::watch,
    task::JoinSet,
};

use crate::{client, scan::Scanner, systems};

/// How the soak is sized: every figure has a flag.
#[derive(Serialize)]
pub(crate) struct Sizes {
    minutes: f64,
    healthy: usize,
    groups: usize,
    /// Events per second to each group.
    rate: f64,
    stalled: usize,
    hostile: usize,
    churners: usize,
}

impl Sizes {
    /// `--minutes N --healthy N --groups N --rate N --stalled N --hostile N --churners N
    /// --out DIR`, each optional; returns the sizes and the output directory, if given.
    pub(crate) fn parse(args: &[String]) -> Result<(Self, Option<PathBuf>), String> {
        let mut out = None;
        let mut sizes = Sizes {
            minutes: 10.0,
            healthy: 6_000,
            groups: 60,
            rate: 2.0,
            stalled: 1_000,
            hostile: 400,
            churners: 16,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = |value: &str| -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| *n >= 0.0)
                    .ok_or_else(|| format!("{flag}: not a number: {value}"))
            };
            let count = || number(value).map(|n| n as usize);
            match flag.as_str() {
                "--minutes" => sizes.minutes = number(value)?,
                "--rate" => sizes.rate = number(value)?,
                "--healthy" => sizes.healthy = count()?,
                "--groups" => sizes.groups = count()?.max(1),
                "--stalled" => sizes.stalled = count()?,
                "--hostile" => sizes.hostile = count()?,
                "--churners" => sizes.churners = count()?,
                "--out" => out = Some(PathBuf::from(value)),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok((sizes, out))
    }
}

/// Where the soak is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// The publisher stopped: healthy clients read what remains.
    Draining,
    Stopped,
}

/// What every client reports into.
#[derive(Default, Serialize)]
struct Counters {
    published: AtomicU64,
    publish_errors: AtomicU64,
    /// Healthy streams open now.
    healthy_open: AtomicU64,
    /// Healthy streams (re)opened, the first ones included.
    healthy_opens: AtomicU64,
    /// Healthy streams the server ended.
    healthy_ended_by_server: AtomicU64,
    /// Opens that failed (refused, not `200`), healthy or churn.
    open_errors: AtomicU64,
    received: AtomicU64,
    /// Events a healthy client found missing: between two it got, across a resume, or at the end.
    lost: AtomicU64,
    duplicated: AtomicU64,
    /// Events that were not the publisher's (`stream-reset`: a resume the server could not make).
    resets: AtomicU64,
    stalled_rounds: AtomicU64,
    /// Stalled clients the server had closed by the time they left.
    stalled_closed_by_server: AtomicU64,
    churn_cycles: AtomicU64,
    /// Heads that never end, closed by the server; and the longest time one took, in ms.
    slow_heads_closed: AtomicU64,
    slow_head_longest_ms: AtomicU64,
    /// Heads too large, and heads that never stop, answered 431.
    too_large_refused: AtomicU64,
    /// Bytes that are not HTTP, answered 400.
    garbage_refused: AtomicU64,
    /// Anything a client got that the server does not promise.
    unexpected: AtomicU64,
}

/// The state every task shares.
struct Soak {
    addr: SocketAddr,
    counters: Counters,
    /// The last sequence number published to each group (0: none yet).
    published: Vec<AtomicU64>,
    phase: watch::Receiver<Phase>,
    /// The first few unexpected answers, to report.
    surprises: Mutex<Vec<String>>,
}

impl Soak {
    fn surprise(&self, what: String) {
        self.counters.unexpected.fetch_add(1, Relaxed);
        let mut surprises = self.surprises.lock().unwrap();
        if surprises.len() < 20 {
            surprises.push(what);
        }
    }

    fn stopped(&self) -> bool {
        *self.phase.borrow() == Phase::Stopped
    }
}

/// One line of the report: the state of things `secs` into the soak.
#[derive(Serialize)]
struct Sample {
    secs: u64,
    rss_bytes: u64,
    healthy_open: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    stalled_closed_by_server: u64,
    churn_cycles: u64,
    slow_heads_closed: u64,
    too_large_refused: u64,
    garbage_refused: u64,
    unexpected: u64,
}

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The size of every event's data.
const EVENT_BYTES: usize = 512;

pub(crate) fn run(sizes: &Sizes, out: &Path) -> ExitCode {
    if let Err(e) = crate::raise_open_files_limit() {
        return crate::fail(&e);
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        return crate::fail(&format!("{}: {e}", out.display()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let system = match systems::start("sse", out) {
        Ok(system) => system,
        Err(e) => return crate::fail(&format!("could not start the server: {e}")),
    };
    let report = runtime.block_on(soak(sizes, &system));
    system.stop();
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    if let Err(e) = std::fs::write(out.join("soak.json"), json) {
        return crate::fail(&format!("writing soak.json: {e}"));
    }
    println!("{}", report.table());
    eprintln!("wrote soak.json to {}", out.display());
    let counters = &report.counters;
    let bad = counters.lost.load(Relaxed)
        + counters.duplicated.load(Relaxed)
        + counters.resets.load(Relaxed)
        + counters.unexpected.load(Relaxed)
        + counters.publish_errors.load(Relaxed);
    if bad > 0 {
        return crate::fail("events were lost or duplicated, or clients got unexpected answers");
    }
    ExitCode::SUCCESS
}

#[derive(Serialize)]
struct Report<'a> {
    sizes: &'a Sizes,
    samples: Vec<Sample>,
    counters: Counters,
    surprises: Vec<String>,
}

async fn soak<'a>(sizes: &'a Sizes, system: &systems::Running) -> Report<'a> {
    let (phase, watching) = watch::channel(Phase::Running);
    let soak = Arc::new(Soak {
        addr: system.sub.addr,
        counters: Counters::default(),
        published: (0..sizes.groups).map(|_| AtomicU64::new(0)).collect(),
        phase: watching,
        surprises: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let mut samples = vec![sample(&soak, system, started)];
    eprintln!("{}", sample_header());
    eprintln!("{}", samples[0].line());

    let mut clients = JoinSet::new();
    // Opened a few at a time, as pages load.
    for n in 0..sizes.healthy {
        clients.spawn(healthy(soak.clone(), n % sizes.groups, n as u64));
        if n % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for n in 0..sizes.stalled {
        clients.spawn(stalled(soak.clone(), n % sizes.groups, n as u64));
    }
    for n in 0..sizes.churners {
        clients.spawn(churn(soak.clone(), n));
    }
    for n in 0..sizes.hostile {
        clients.spawn(hostile(soak.clone(), n));
    }
    let publisher = tokio::spawn(publish(soak.clone(), sizes.rate));

    let deadline = started + Duration::from_secs_f64(sizes.minutes * 60.0);
    let mut next = Instant::now() + SAMPLE_EVERY;
    while next < deadline {
        tokio::time::sleep_until(next.into()).await;
        let sample = sample(&soak, system, started);
        eprintln!("{}", sample.line());
        samples.push(sample);
        next += SAMPLE_EVERY;
    }
    tokio::time::sleep_until(deadline.into()).await;

    // The publisher stops; healthy clients read what remains, for at most 30 s.
    phase.send_replace(Phase::Draining);
    let _ = publisher.await;
    let drained = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = &mut drained => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if soak.counters.healthy_open.load(Relaxed) == 0 { break; }
            }
        }
    }
    phase.send_replace(Phase::Stopped);
    while clients.join_next().await.is_some() {}
    let sample = sample(&soak, system, started);
    eprintln!("{}", sample.line());
    samples.push(sample);
    let soak = Arc::into_inner(soak).expect("every task ended");
    Report {
        sizes,
        samples,
        counters: soak.counters,
        surprises: soak.surprises.into_inner().unwrap(),
    }
}

fn sample(soak: &Soak, system: &systems::Running, started: Instant) -> Sample {
    let c = &soak.counters;
    Sample {
        secs: started.elapsed().as_secs(),
        rss_bytes: system.rss_bytes(),
        healthy_open: c.healthy_open.load(Relaxed),
        received: c.received.load(Relaxed),
        lost: c.lost.load(Relaxed),
        duplicated: c.duplicated.load(Relaxed),
        stalled_closed_by_server: c.stalled_closed_by_server.load(Relaxed),
        churn_cycles: c.churn_cycles.load(Relaxed),
        slow_heads_closed: c.slow_heads_closed.load(Relaxed),
        too_large_refused: c.too_large_refused.load(Relaxed),
        garbage_refused: c.garbage_refused.load(Relaxed),
        unexpected: c.unexpected.load(Relaxed),
    }
}

fn sample_header() -> String {
    "| min | server RSS | healthy open | received | lost | dup | stalled closed | churn | slow heads closed | 431 | 400 | unexpected |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned()
}

impl Sample {
    fn line(&self) -> String {
        format!(
            "| {:.1} | {:.1} MB | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.secs as f64 / 60.0,
            self.rss_bytes as f64 / 1e6,
            self.healthy_open,
            self.received,
            self.lost,
            self.duplicated,
            self.stalled_closed_by_server,
            self.churn_cycles,
            self.slow_heads_closed,
            self.too_large_refused,
            self.garbage_refused,
            self.unexpected,
        )
    }
}

impl Report<'_> {
    /// The samples of whole minutes, then the totals, as Markdown.
    fn table(&self) -> String {
        let mut table = sample_header();
        let last = self.samples.len().saturating_sub(1);
        for (n, sample) in self.samples.iter().enumerate() {
            if n == last || sample.secs % 60 < SAMPLE_EVERY.as_secs() {
                table.push('\n');
                table.push_str(&sample.line());
            }
        }
        let c = &self.counters;
        let rss: Vec<u64> = self.samples.iter().map(|s| s.rss_bytes).collect();
        let after_a_minute = self
            .samples
            .iter()
            .find(|s| s.secs >= 60)
            .map_or("–".to_owned(), |s| {
                format!("{:.1} MB", s.rss_bytes as f64 / 1e6)
            });
        table.push_str(&format!(
            "\n\nserver RSS: {:.1} MB at start, {} after 1 min, {:.1} MB at most, {:.1} MB at the end\n\
             published {} events ({} errors); healthy clients: {} opens ({} ended by the server, {} failed opens), \
             {} events received, {} lost, {} duplicated, {} stream-resets\n\
             stalled: {} rounds, {} closed by the server by the time they left; churn: {} cycles\n\
             hostile: {} never-ending heads closed (longest {:.1} s), {} too-large heads answered 431, \
             {} garbage answered 400, {} unexpected answers",
            rss.first().copied().unwrap_or(0) as f64 / 1e6,
            after_a_minute,
            rss.iter().max().copied().unwrap_or(0) as f64 / 1e6,
            rss.last().copied().unwrap_or(0) as f64 / 1e6,
            c.published.load(Relaxed),
            c.publish_errors.load(Relaxed),
            c.healthy_opens.load(Relaxed),
            c.healthy_ended_by_server.load(Relaxed),
            c.open_errors.load(Relaxed),
            c.received.load(Relaxed),
            c.lost.load(Relaxed),
            c.duplicated.load(Relaxed),
            c.resets.load(Relaxed),
            c.stalled_rounds.load(Relaxed),
            c.stalled_closed_by_server.load(Relaxed),
            c.churn_cycles.load(Relaxed),
            c.slow_heads_closed.load(Relaxed),
            c.slow_head_longest_ms.load(Relaxed) as f64 / 1e3,
            c.too_large_refused.load(Relaxed),
            c.garbage_refused.load(Relaxed),
            c.unexpected.load(Relaxed),
        ));
        for surprise in &self.surprises {
            table.push_str(&format!("\n- {surprise}"));
        }
        table
    }
}

/// A small, seeded source of randomness (xorshift64*): the soak needs variety, not quality.
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn new(seed: u64) -> Self {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration between `low` and `high` seconds.
    fn secs(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low * 1000 + self.next() % ((high - low) * 1000).max(1))
    }
}

/// Publishes `rate` events a second to every group, in turn, each carrying its group's next
/// sequence number, until the soak drains.
async fn publish(soak: Arc<Soak>, rate: f64) {
    let url = client::Url::parse(&format!("http://{}/pub/{{group}}", soak.addr)).expect("a URL");
    let mut publisher = match client::Publisher::connect(&url, client::PubFormat::Body).await {
        Ok(publisher) => publisher,
        Err(e) => return soak.surprise(format!("publisher: {e}")),
    };
    let groups = soak.published.len();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / (rate * groups as f64)));
    let mut phase = soak.phase.clone();
    for n in 0.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = phase.wait_for(|phase| *phase >= Phase::Draining) => return,
        }
        let group = n % groups;
        let seq = soak.published[group].load(Relaxed) + 1;
        let mut data = format!("{seq} ");
        data.push_str(&"x".repeat(EVENT_BYTES - data.len()));
        match publisher.publish(&format!("g{group}"), &data).await {
            Ok(()) => {
                soak.published[group].store(seq, Relaxed);
                soak.counters.published.fetch_add(1, Relaxed);
            }
            Err(e) => {
                soak.counters.publish_errors.fetch_add(1, Relaxed);
                soak.surprise(format!("publish: {e}"));
            }
        }
    }
}

/// Sends a `GET` for `path` that accepts a stream, with `last_id` as `Last-Event-ID` if any;
/// returns the connection and what came after the `200` head.
async fn open(
    tcp: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    last_id: &[u8],
) -> Result<Vec<u8>, String> {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n")
            .into_bytes();
    if !last_id.is_empty() {
        request.extend_from_slice(b"Last-Event-ID: ");
        request.extend_from_slice(last_id);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    tcp.write_all(&request).await.map_err(|e| e.to_string())?;
    let mut read = Vec::with_capacity(1024);
    let mut buf = [0; 4096];
    loop {
        let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before an answer".to_owned());
        }
        read.extend_from_slice(&buf[..n]);
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            if !read.starts_with(b"HTTP/1.1 200 ") {
                let line = read.split(|&b| b == b'\r').next().unwrap_or_default();
                return Err(format!("answered {}", String::from_utf8_lossy(line)));
            }
            return Ok(read.split_off(end + 4));
        }
        if read.len() > 64 * 1024 {
            return Err("a head longer than 64 KiB".to_owned());
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // Closed with a reset: thousands of reconnections leave no TIME_WAIT behind.
    tcp.set_zero_linger().map_err(|e| e.to_string())?;
    Ok(tcp)
}

/// What a healthy client knows of its group's events.
#[derive(Default)]
struct Seen {
    last_seq: Option<u64>,
    last_id: Vec<u8>,
}

impl Seen {
    /// Checks an event's data against what came before.
    fn event(&mut self, data: &[u8], counters: &Counters) {
        // A `stream-start` (no data): where the stream starts, after what was seen.
        if data.is_empty() {
            return;
        }
        let seq = data
            .split(|&b| b == b' ')
            .next()
            .and_then(|seq| std::str::from_utf8(seq).ok()?.parse::<u64>().ok());
        let Some(seq) = seq else {
            // Not the publisher's: a stream-reset. What follows cannot be checked against
            // what came before.
            counters.resets.fetch_add(1, Relaxed);
            self.last_seq = None;
            return;
        };
        match self.last_seq {
            Some(last) if seq <= last => {
                counters.duplicated.fetch_add(1, Relaxed);
                return;
            }
            Some(last) => counters.lost.fetch_add(seq - last - 1, Relaxed),
            None => 0,
        };
        counters.received.fetch_add(1, Relaxed);
        self.last_seq = Some(seq);
    }
}

/// A client that reads a stream of group `group`, reconnecting every few minutes with
/// `Last-Event-ID`, until the soak drains and it has the group's last event.
async fn healthy(soak: Arc<Soak>, group: usize, seed: u64) {
    let mut random = Random::new(seed);
    let mut phase = soak.phase.clone();
    let path = format!("/sub/g{group}");
    let mut seen = Seen::default();
    let counters = &soak.counters;
    let caught_up = |seen: &Seen, phase: Phase| {
        phase >= Phase::Draining && seen.last_seq >= Some(soak.published[group].load(Relaxed))
    };
    while !soak.stopped() && !caught_up(&seen, *phase.borrow()) {
        let mut tcp = match connect(soak.addr).await {
            Ok(tcp) => tcp,
            Err(e) => {
                counters.open_errors.fetch_add(1, Relaxed);
                soak.surprise(format!("healthy connect: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let body = match open(&mut tcp, soak.addr, &path, &seen.last_id).await {
            Ok(body) => body,
            Err(e) => {
                counters.open_errors.fetch_add(1, Relaxed);
                soak.surprise(format!("healthy open: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        counters.healthy_opens.fetch_add(1, Relaxed);
        counters.healthy_open.fetch_add(1, Relaxed);
        let mut scanner = Scanner::resuming(std::mem::take(&mut seen.last_id));
        scanner.feed(&body, &mut |data| seen.event(data, counters));
        let leave_at = tokio::time::Instant::now() + random.secs(60, 240);
        let mut buf = vec![0; 16 * 1024];
        loop {
            tokio::select! {
                read = tcp.read(&mut buf) => match read {
                    Ok(n) if n > 0 => scanner.feed(&buf[..n], &mut |data| seen.event(data, counters)),
                    _ => {
                        counters.healthy_ended_by_server.fetch_add(1, Relaxed);
                        break;
                    }
                },
                () = tokio::time::sleep_until(leave_at) => break,
                _ = phase.changed() => {}
            }
            if soak.stopped() || caught_up(&seen, *phase.borrow()) {
                break;
            }
        }
        seen.last_id = scanner.last_id;
        counters.healthy_open.fetch_sub(1, Relaxed);
    }
    let last = soak.published[group].load(Relaxed);
    match seen.last_seq {
        Some(seq) => counters.lost.fetch_add(last.saturating_sub(seq), Relaxed),
        None => {
            soak.surprise(format!("a healthy client of g{group} never got an event"));
            counters.lost.fetch_add(1, Relaxed)
        }
    };
}

/// A client that opens a stream of `group` and never reads it; it leaves after two to five
/// minutes, noting whether the server had closed it, and comes back.
async fn stalled(soak: Arc<Soak>, group: usize, seed: u64) {
    let mut random = Random::new(seed ^ 0x5151);
    let mut phase = soak.phase.clone();
    let path = format!("/sub/g{group}");
    while !soak.stopped() {
        let socket = TcpSocket::new_v4().expect("a socket");
        // Small, so the server's writes block soon.
        let _ = socket.set_recv_buffer_size(4096);
        let stream = async {
            let mut tcp = socket.connect(soak.addr).await.map_err(|e| e.to_string())?;
            tcp.set_zero_linger().map_err(|e| e.to_string())?;
            open(&mut tcp, soak.addr, &path, b"").await?;
            Ok::<_, String>(tcp)
        };
        let tcp = match stream.await {
            Ok(tcp) => tcp,
            Err(e) => {
                soak.counters.open_errors.fetch_add(1, Relaxed);
                soak.surprise(format!("stalled open: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(random.secs(120, 300)) => {}
            _ = phase.wait_for(|phase| *phase == Phase::Stopped) => return,
        }
        // What is left to read ends with the close, if the server closed it.
        let mut buf = [0; 16 * 1024];
        let closed = loop {
            match tcp.try_read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        soak.counters.stalled_rounds.fetch_add(1, Relaxed);
        if closed {
            soak.counters.stalled_closed_by_server.fetch_add(1, Relaxed);
        }
    }
}

/// Opens a stream and drops it at once, 20 times a second, until the soak stops.
async fn churn(soak: Arc<Soak>, n: usize) {
    let path = format!("/sub/churn{n}");
    while !soak.stopped() {
        let opened = match connect(soak.addr).await {
            Ok(mut tcp) => open(&mut tcp, soak.addr, &path, b"").await.map(drop),
            Err(e) => Err(e),
        };
        match opened {
            Ok(()) => soak.counters.churn_cycles.fetch_add(1, Relaxed),
            Err(e) => {
                soak.counters.open_errors.fetch_add(1, Relaxed);
                soak.surprise(format!("churn open: {e}"));
                0
            }
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long the server may take to close a head that never ends: its header read timeout
/// (30 s by default), and some.
const SLOW_HEAD_CLOSED_WITHIN: Duration = Duration::from_secs(45);

/// A hostile client: one of four attacks in turn, each on a new connection, two seconds apart.
async fn hostile(soak: Arc<Soak>, n: usize) {
    let mut phase = soak.phase.clone();
    for round in n.. {
        let attack = async {
            match round % 4 {
                0 => slow_head(&soak).await,
                1 => too_large(&soak, false).await,
                2 => too_large(&soak, true).await,
                _ => garbage(&soak, round as u64).await,
            }
        };
        tokio::select! {
            result = attack => if let Err(e) = result { soak.surprise(e) },
            _ = phase.wait_for(|phase| *phase == Phase::Stopped) => return,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Reads until the server closes the connection; returns what came.
async fn read_to_close(tcp: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

fn first_line(answer: &[u8]) -> String {
    let line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line).into_owned()
}

/// A head sent a line a second, that never ends: the server must close it, unanswered, by its
/// header read timeout.
async fn slow_head(soak: &Soak) -> Result<(), String> {
    let mut tcp = TcpStream::connect(soak.addr)
        .await
        .map_err(|e| e.to_string())?;
    let since = Instant::now();
    tcp.write_all(b"GET /sub/g0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0; 1024];
    let answer = loop {
        tokio::select! {
            read = tcp.read(&mut buf) => break match read {
                Ok(n) => buf[..n].to_vec(),
                Err(_) => Vec::new(),
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if since.elapsed() > SLOW_HEAD_CLOSED_WITHIN {
                    return Err(format!("a slow head still open after {SLOW_HEAD_CLOSED_WITHIN:?}"));
                }
                // The server may have closed it meanwhile.
                let _ = tcp.write_all(b"X-Slow: 1\r\n").await;
            }
        }
    };
    if !answer.is_empty() {
        return Err(format!("a slow head answered {}", first_line(&answer)));
    }
    let took = since.elapsed().as_millis() as u64;
    soak.counters.slow_heads_closed.fetch_add(1, Relaxed);
    soak.counters.slow_head_longest_ms.fetch_max(took, Relaxed);
    Ok(())
}

/// A head of 64 KiB, whole; or, `endless`, one written until the server stops it (4 MiB at
/// most): it must answer 431.
async fn too_large(soak: &Soak, endless: bool) -> Result<(), String> {
    let tcp = TcpStream::connect(soak.addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut reading, mut writing) = tcp.into_split();
    // 64 header lines of 1 KiB.
    let padding = format!("X-Padding: {}\r\n", "p".repeat(1012)).repeat(64);
    let write = async move {
        let _ = writing
            .write_all(b"GET /sub/g0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n")
            .await;
        for _ in 0..if endless { 64 } else { 1 } {
            if writing.write_all(padding.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = writing.write_all(b"\r\n").await;
    };
    let answer = tokio::join!(write, read_to_close(&mut reading)).1;
    if !answer.starts_with(b"HTTP/1.1 431 ") {
        return Err(format!(
            "a head over the limit (endless: {endless}) answered {:?}",
            first_line(&answer)
        ));
    }
    soak.counters.too_large_refused.fetch_add(1, Relaxed);
    Ok(())
}

/// The start of a TLS handshake and random bytes: the server must answer 400.
async fn garbage(soak: &Soak, seed: u64) -> Result<(), String> {
    let mut random = Random::new(seed);
    let mut bytes: Vec<u8> = b"\x16\x03\x01".to_vec();
    bytes.extend((0..256).map(|_| random.next() as u8));
    bytes.extend_from_slice(b"\r\n\r\n");
    let mut tcp = TcpStream::connect(soak.addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(&bytes).await.map_err(|e| e.to_string())?;
    let answer = read_to_close(&mut tcp).await;
    if !answer.starts_with(b"HTTP/1.1 400 ") {
        return Err(format!("garbage answered {:?}", first_line(&answer)));
    }
    soak.counters.garbage_refused.fetch_add(1, Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::{Counters, Seen};

    #[test]
    fn a_stream_start_keeps_what_was_seen_and_a_reset_forgets_it() {
        let counters = Counters::default();
        let mut seen = Seen::default();
        for data in ["1 x", "2 x", "", "3 x"] {
            seen.event(data.as_bytes(), &counters);
        }
        assert_eq!(seen.last_seq, Some(3));
        seen.event(br#"{"reason":"id older than the history"}"#, &counters);
        assert_eq!(seen.last_seq, None);
        seen.event(b"9 x", &counters);
        let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Relaxed);
        assert_eq!(
            (
                count(&counters.received),
                count(&counters.lost),
                count(&counters.resets)
            ),
            (4, 0, 1)
        );
    }
}
