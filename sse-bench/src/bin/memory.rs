//! Where an idle stream's memory goes, and what TLS costs: our server in a child process whose
//! allocator counts what it holds, streams opened on it by this process.
//!
//! ```text
//! sse-bench-memory [--streams N] [--events K] [--at-once N] [plain | page | tls | tls-page]..
//! ```
//!
//! For each way of opening a stream (by a connection's first request, after a page on the same
//! connection, and both over rustls), a fresh child serves `#[sse::subscribe]` streams with
//! `sse::serve` (the bench server's `Config`), and `N` streams (19,000 by default) are opened on
//! it, 256 at a time as the bench opens them (`--at-once`). The child then says what it holds per stream: its RSS, the bytes its allocator gave and
//! did not get back (asked for, and as glibc's chunks: rounded, with their header), how many
//! allocations, and which sizes. Then `K` events (20) are published one at a time, each read
//! by every stream before the next, the streams' sockets left unread (the kernel takes them):
//! the child's CPU per delivery, with its writes (and encryption) and nothing of the client's.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    future::IntoFuture,
    io,
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicI64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{extract::Path, http::StatusCode, response::Html, routing::get, Router};
use futures_util::{stream, StreamExt};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStdin, ChildStdout},
    sync::mpsc,
};
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};

/// Counts what the program holds from the allocator, in all and by size.
struct Counting;

/// Allocations by size, in 16-byte steps up to 64 KiB; the last counts everything larger.
const CLASSES: usize = 4097;
static LIVE: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
/// What glibc's chunks take: the usable size and the 8-byte header of each.
static LIVE_CHUNKS: AtomicI64 = AtomicI64::new(0);

fn class(size: usize) -> usize {
    size.div_ceil(16).min(CLASSES - 1)
}

fn counted(ptr: *mut u8, size: usize, sign: i64) {
    if ptr.is_null() {
        return;
    }
    LIVE[class(size)].fetch_add(sign, Relaxed);
    LIVE_BYTES.fetch_add(sign * size as i64, Relaxed);
    // SAFETY: `ptr` is a live allocation of the system allocator (glibc's malloc).
    let usable = unsafe { libc::malloc_usable_size(ptr.cast()) };
    LIVE_CHUNKS.fetch_add(sign * (usable as i64 + 8), Relaxed);
}

// SAFETY: every call goes to `System`, which upholds the contract; the counts only read.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc(layout) };
        counted(ptr, layout.size(), 1);
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        counted(ptr, layout.size(), 1);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        counted(ptr, layout.size(), -1);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(ptr, layout.size(), -1);
        // SAFETY: the caller's contract, passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new.is_null() {
            counted(ptr, layout.size(), 1);
        } else {
            counted(new, new_size, 1);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const USAGE: &str = "usage: sse-bench-memory [--streams N] [--events K] [--at-once N] [plain | page | tls | tls-page]..";

/// The ways a stream is opened, by the names the command line takes.
const MODES: [&str; 4] = ["plain", "page", "tls", "tls-page"];

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    raise_open_files_limit()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    if args.first().map(String::as_str) == Some("serve") {
        return runtime.block_on(serve(args.get(1..3)));
    }
    let (mut streams, mut events, mut at_once, mut modes) = (19_000, 20, 256, Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = || -> Result<usize, String> {
            let value = args.next().ok_or(USAGE)?;
            value.parse().map_err(|e| format!("{arg} {value}: {e}"))
        };
        match arg.as_str() {
            "--streams" => streams = number()?,
            "--events" => events = number()? as u64,
            "--at-once" => at_once = number()?.max(1),
            mode if MODES.contains(&mode) => modes.push(mode.to_owned()),
            other => return Err(format!("{USAGE}; not {other:?}")),
        }
    }
    if modes.is_empty() {
        modes = MODES.map(str::to_owned).to_vec();
    }
    println!("| stream opened | streams | RSS / stream, B | heap asked / stream, B | heap chunks / stream, B | allocations / stream | CPU µs / delivery | largest sizes per stream (bytes × count) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for mode in modes {
        let row = runtime.block_on(measure(&mode, streams, events, at_once))?;
        println!("{row}");
    }
    Ok(())
}

/// What the child holds at one moment.
#[derive(Clone)]
struct Weight {
    rss: i64,
    asked: i64,
    chunks: i64,
    classes: Vec<i64>,
    cpu_us: i64,
    delivered: i64,
}

impl Weight {
    fn parse(line: &str) -> Result<Self, String> {
        let numbers: Vec<i64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the child's report {line:?}: {e}"))?;
        let [rss, asked, chunks, cpu_us, delivered, ref classes @ ..] = numbers[..] else {
            return Err(format!("the child's report {line:?} is short"));
        };
        Ok(Weight {
            rss,
            asked,
            chunks,
            classes: classes.to_vec(),
            cpu_us,
            delivered,
        })
    }

    fn now() -> String {
        let mut line = format!(
            "{} {} {} {} {}",
            rss_bytes(),
            LIVE_BYTES.load(Relaxed),
            LIVE_CHUNKS.load(Relaxed),
            cpu_us(),
            sse::hub().stats().delivered
        );
        for count in &LIVE {
            line.push(' ');
            line.push_str(&count.load(Relaxed).to_string());
        }
        line
    }
}

/// A child serving streams, and how to talk to it.
struct Server {
    child: Child,
    ask: ChildStdin,
    answers: tokio::io::Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

impl Server {
    async fn start(tls: Option<(&[u8], &[u8])>) -> Result<Self, String> {
        let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        command.arg("serve");
        if let Some((cert, key)) = tls {
            command.args([hex(cert), hex(key)]);
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting the server: {e}"))?;
        let ask = child.stdin.take().ok_or("no stdin")?;
        let mut answers = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let addr = answers
            .next_line()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the server said nothing")?
            .parse()
            .map_err(|e| format!("the server's address: {e}"))?;
        Ok(Server {
            child,
            ask,
            answers,
            addr,
        })
    }

    async fn ask(&mut self, what: &str) -> Result<Weight, String> {
        self.ask
            .write_all(format!("{what}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let line = self.answers.next_line().await.map_err(|e| e.to_string())?;
        Weight::parse(&line.ok_or("the server ended")?)
    }
}

/// Something a stream's bytes come over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn measure(
    mode: &str,
    streams: usize,
    events: u64,
    at_once: usize,
) -> Result<String, String> {
    let tls = mode.starts_with("tls");
    let page = mode.ends_with("page");
    let made =
        rcgen::generate_simple_self_signed(["localhost".to_owned()]).map_err(|e| e.to_string())?;
    let (cert, key) = (made.cert.der().to_vec(), made.signing_key.serialize_der());
    let mut server = Server::start(tls.then_some((&cert[..], &key[..]))).await?;
    let connector = tls.then(|| connector(cert.clone())).transpose()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.ask("weigh").await?;
    let addr = server.addr;
    let opened: Vec<Result<Box<dyn Io>, String>> = stream::iter(0..streams)
        .map(|_| open(addr, connector.clone(), page))
        .buffer_unordered(at_once)
        .collect()
        .await;
    let mut open_streams = Vec::with_capacity(streams);
    for stream in opened {
        open_streams.push(stream?);
    }
    // Allocators hand memory back lazily.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.ask("weigh").await?;
    let published = server.ask(&format!("publish {events} {streams}")).await?;
    let n = streams as f64;
    let per = |field: fn(&Weight) -> i64| (field(&after) - field(&before)) as f64 / n;
    let mut sizes: Vec<(usize, f64)> = (0..CLASSES)
        .map(|class| {
            let count = after.classes[class] - before.classes[class];
            (class * 16, count as f64 / n)
        })
        .filter(|&(_, per_stream)| per_stream >= 0.5)
        .collect();
    sizes.sort_by(|a, b| (b.0 as f64 * b.1).total_cmp(&(a.0 as f64 * a.1)));
    let sizes: Vec<String> = sizes
        .iter()
        .take(12)
        .map(|(size, count)| format!("{size}×{count:.1}"))
        .collect();
    let deliveries = (published.delivered - after.delivered) as f64;
    let cpu = (published.cpu_us - after.cpu_us) as f64 / deliveries.max(1.0);
    let allocations: i64 = (0..CLASSES)
        .map(|class| after.classes[class] - before.classes[class])
        .sum();
    drop(open_streams);
    server.child.kill().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "| {mode} | {streams} | {:.0} | {:.0} | {:.0} | {:.1} | {cpu:.3} ({deliveries:.0} deliveries) | {} |",
        per(|w| w.rss),
        per(|w| w.asked),
        per(|w| w.chunks),
        allocations as f64 / n,
        sizes.join(", ")
    ))
}

fn connector(cert: Vec<u8>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert))
        .map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens a stream (after a page, with `page`) and reads its head and first event.
async fn open(
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    page: bool,
) -> Result<Box<dyn Io>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut io: Box<dyn Io> = match tls {
        Some(connector) => Box::new(
            connector
                .connect(ServerName::try_from("localhost").expect("a name"), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?,
        ),
        None => Box::new(tcp),
    };
    let mut read = Vec::new();
    if page {
        send(&mut io, b"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
        let head = read_until(&mut io, &mut read, b"\r\n\r\n").await?;
        let length: usize = String::from_utf8_lossy(&read[..head])
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|n| n.trim().parse().ok())
            .ok_or("the page has no content-length")?;
        while read.len() < head + length {
            read_more(&mut io, &mut read).await?;
        }
        read.drain(..head + length);
    }
    send(
        &mut io,
        b"GET /sub/idle HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await?;
    let head = read_until(&mut io, &mut read, b"\r\n\r\n").await?;
    if !read.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "the stream's answer: {}",
            String::from_utf8_lossy(&read[..head])
        ));
    }
    read.drain(..head);
    read_until(&mut io, &mut read, b"\n\n").await?;
    Ok(io)
}

/// Writes `request` and flushes it (TLS holds what is written until then).
async fn send(io: &mut Box<dyn Io>, request: &[u8]) -> Result<(), String> {
    io.write_all(request).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())
}

/// Reads until `read` holds `end`; where it ends.
async fn read_until(io: &mut Box<dyn Io>, read: &mut Vec<u8>, end: &[u8]) -> Result<usize, String> {
    // Bounded: a stream's head and first event are small.
    for _ in 0..1_000 {
        if let Some(at) = read.windows(end.len()).position(|w| w == end) {
            return Ok(at + end.len());
        }
        read_more(io, read).await?;
    }
    Err("no end in what the server sent".to_owned())
}

async fn read_more(io: &mut Box<dyn Io>, read: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = [0; 4096];
    match tokio::time::timeout(Duration::from_secs(20), io.read(&mut buf)).await {
        Ok(Ok(0)) => Err("the server closed".to_owned()),
        Ok(Ok(n)) => {
            read.extend_from_slice(&buf[..n]);
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the server sent nothing for 20 s".to_owned()),
    }
}

/// The child: serves streams, and answers `weigh` and `publish K N` on stdin with a [`Weight`].
async fn serve(tls: Option<&[String]>) -> Result<(), String> {
    let config = sse::Config::default()
        .max_streams(20_000)
        .subscriber_queue(8_192)
        .history(1_000, Duration::from_secs(60));
    sse::init(config).map_err(|e| e.to_string())?;
    let app = Router::new().route("/sub/{group}", get(sub)).route(
        "/page",
        get(|| async { Html("<!doctype html><title>yo</title>") }),
    );
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", tcp.local_addr().map_err(|e| e.to_string())?);
    match tls {
        Some([cert, key]) => {
            let listener = TlsListener::new(tcp, unhex(cert)?, unhex(key)?)?;
            tokio::spawn(sse::serve(listener, app).into_future());
        }
        _ => {
            tokio::spawn(sse::serve(tcp, app).into_future());
        }
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(what) = line.strip_prefix("publish ") {
            let numbers: Vec<u64> = what.split(' ').filter_map(|n| n.parse().ok()).collect();
            let [events, streams] = numbers[..] else {
                return Err(format!("publish what? {line:?}"));
            };
            publish(events, streams).await;
        }
        println!("{}", Weight::now());
    }
    Ok(())
}

#[sse::subscribe]
async fn sub(Path(group): Path<String>) -> Result<sse::GroupName, StatusCode> {
    sse::GroupName::new(group).map_err(|_| StatusCode::BAD_REQUEST)
}

/// Publishes `events` of 100 bytes to the idle streams' group, each once every one of the
/// `streams` took the one before (or 10 s passed).
async fn publish(events: u64, streams: u64) {
    let data = "x".repeat(100);
    for _ in 0..events {
        let target = sse::hub().stats().delivered + streams;
        if sse::publish!("idle", data.as_str()).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while sse::hub().stats().delivered < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // The last writes, after the last read.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Accepts TLS connections, their handshakes done concurrently.
struct TlsListener {
    handshaken: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    fn new(tcp: TcpListener, cert: Vec<u8>, key: Vec<u8>) -> Result<Self, String> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .map_err(|e| e.to_string())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let addr = tcp.local_addr().map_err(|e| e.to_string())?;
        let (done, handshaken) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = tcp.accept().await else {
                    continue;
                };
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = done.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { handshaken, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

fn rss_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time of this process, user and system, in microseconds.
fn cpu_us() -> i64 {
    // SAFETY: `usage` is a valid rusage for the kernel to fill in.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or(""), 16))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("a key or certificate in hex: {e}"))
}

fn raise_open_files_limit() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill in and read.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(format!("getrlimit: {}", io::Error::last_os_error()));
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(format!("setrlimit: {}", io::Error::last_os_error()));
        }
    }
    Ok(())
}
