//! The load generator's HTTP side: SSE subscribers and publishers on hyper's HTTP/1.1 client.
//!
//! A subscriber is one task that drives its connection and scans its body; every event it
//! completes is counted, and in the latency workload timed from the send time the publisher
//! wrote into the data (`"{seq} {sent_us} xxx…"`, microseconds since the bench started).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{client::conn::http1, header, Request};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, task::JoinHandle};

use crate::{http1::Connection, scan::Scanner};

/// The size of every event's data, as the issue specifies.
pub(crate) const EVENT_BYTES: usize = 100;

/// The data of a probe event, published until every subscriber has seen one.
const PROBE: &[u8] = b"probe";

/// An `http://host:port/path` URL whose path may hold `{group}`.
#[derive(Clone, Debug)]
pub(crate) struct Url {
    pub(crate) addr: SocketAddr,
    path: String,
}

impl Url {
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("not an http:// URL: {url}"))?;
        let slash = rest.find('/').unwrap_or(rest.len());
        let addr = rest[..slash]
            .parse()
            .map_err(|e| format!("bad address in {url}: {e}"))?;
        let path = match &rest[slash..] {
            "" => "/".to_owned(),
            path => path.to_owned(),
        };
        Ok(Self { addr, path })
    }

    pub(crate) fn path(&self, group: &str) -> String {
        self.path.replace("{group}", group)
    }
}

/// How a system takes a published event.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PubFormat {
    /// `POST` the data as the body to the group's URL.
    Body,
    /// Pushpin's publish API: JSON items carrying the raw SSE bytes.
    PushpinJson,
}

/// What every subscriber of a run reports into.
pub(crate) struct Shared {
    started: Instant,
    /// Events delivered to any subscriber since the last reset.
    pub(crate) delivered: AtomicU64,
    /// When the last one arrived, in µs since `started`.
    last_delivery_us: AtomicU64,
    /// Whether subscribers keep every event's latency.
    pub(crate) recording: AtomicBool,
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            delivered: AtomicU64::new(0),
            last_delivery_us: AtomicU64::new(0),
            recording: AtomicBool::new(false),
        })
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Forgets what was delivered so far; returns the time of the reset in µs.
    pub(crate) fn reset(&self) -> u64 {
        self.delivered.store(0, Relaxed);
        let now = self.now_us();
        self.last_delivery_us.store(now, Relaxed);
        now
    }

    pub(crate) fn last_delivery_us(&self) -> u64 {
        self.last_delivery_us.load(Relaxed)
    }

    /// The data of event `seq`, sent now: `EVENT_BYTES` long.
    pub(crate) fn event_data(&self, seq: u64) -> String {
        let mut data = format!("{seq} {} ", self.now_us());
        data.extend(std::iter::repeat('x').take(EVENT_BYTES.saturating_sub(data.len())));
        data
    }
}

/// What one subscriber has seen.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) events: AtomicU64,
    pub(crate) probes: AtomicU64,
    pub(crate) latencies_us: Mutex<Vec<u32>>,
}

/// An open stream; dropping it closes the connection.
pub(crate) struct Subscriber {
    pub(crate) group: String,
    pub(crate) seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// Opens `url` for `group` and returns once the `200` headers arrived. With `abort_on_close`
/// the connection is reset when closed (no TIME_WAIT), as churn needs. With `page`, that page
/// is loaded first on the same connection, as a browser's `EventSource` comes after its page.
pub(crate) async fn subscribe(
    url: &Url,
    group: &str,
    shared: &Arc<Shared>,
    abort_on_close: bool,
    page: Option<&Url>,
) -> Result<Subscriber, String> {
    let socket = open_socket(url, abort_on_close).await?;
    let host = url.addr.to_string();
    let events = (url.path(group), "text/event-stream");
    let connection = match page {
        Some(page) => {
            let mut connection = Connection::get(socket, &host, &page.path(""), "*/*")
                .await
                .map_err(|e| format!("page: {e}"))?;
            let loaded = connection.read_body(&mut |_| {}).await;
            loaded.map_err(|e| format!("page: {e}"))?;
            connection.ask(&host, &events.0, events.1).await?;
            connection
        }
        None => Connection::get(socket, &host, &events.0, events.1).await?,
    };
    let seen = Arc::new(Seen::default());
    let task = tokio::spawn(read_stream(connection, shared.clone(), seen.clone()));
    // Dropping the subscriber aborts the task, which closes the connection.
    Ok(Subscriber {
        group: group.to_owned(),
        seen,
        task,
    })
}

/// A TCP connection to `url`'s server, reset when closed if `abort_on_close`.
async fn open_socket(url: &Url, abort_on_close: bool) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(url.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    if abort_on_close {
        stream.set_zero_linger().map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// A client connection to `url`'s server, and the future that drives it.
async fn connect(
    url: &Url,
    abort_on_close: bool,
) -> Result<
    (
        http1::SendRequest<Empty<Bytes>>,
        http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>,
    ),
    String,
> {
    let stream = open_socket(url, abort_on_close).await?;
    http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// `GET`s `page` on `sender`'s connection and reads the answer to its end.
async fn get(sender: &mut http1::SendRequest<Empty<Bytes>>, page: &Url) -> Result<(), String> {
    let request = Request::get(page.path(""))
        .header(header::HOST, page.addr.to_string())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| format!("page: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("page: {e}"))?;
    let status = response.status();
    let body = response.into_body().collect().await;
    match body {
        Ok(_) if status.is_success() => Ok(()),
        Ok(_) => Err(format!("page answered {status}")),
        Err(e) => Err(format!("page: {e}")),
    }
}

/// Loads `page` over and over from `clients` concurrent clients for `secs` seconds, each on
/// one kept-alive connection, or with `keep_alive` false on a new connection each time (reset
/// when closed, so no TIME_WAIT piles up): how many loads succeeded, and how many failed.
pub(crate) async fn load_pages(
    page: &Url,
    clients: usize,
    secs: f64,
    keep_alive: bool,
) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let loops = (0..clients).map(|_| async move {
        let (mut loaded, mut failed) = (0u64, 0u64);
        let mut kept = None;
        while Instant::now() < deadline {
            if kept.is_none() {
                match connect(page, !keep_alive).await {
                    Ok((sender, conn)) => {
                        let conn = tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        kept = Some((sender, AbortOnDrop(conn)));
                    }
                    Err(_) => {
                        failed += 1;
                        continue;
                    }
                }
            }
            let Some((sender, _)) = kept.as_mut() else {
                continue;
            };
            match get(sender, page).await {
                Ok(()) => loaded += 1,
                Err(_) => {
                    failed += 1;
                    kept = None;
                }
            }
            if !keep_alive {
                kept = None;
            }
        }
        (loaded, failed)
    });
    let counts = futures_util::future::join_all(loops).await;
    (
        counts.iter().map(|c| c.0).sum(),
        counts.iter().map(|c| c.1).sum(),
    )
}

/// A task that ends when this is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a subscriber's stream to its end, counting its events.
async fn read_stream(mut connection: Connection, shared: Arc<Shared>, seen: Arc<Seen>) {
    let mut scanner = Scanner::default();
    let mut tally = Tally::default();
    let recording = || shared.recording.load(Relaxed);
    let _ = connection
        .read_body(&mut |data| {
            tally.scan(data, &mut scanner, &seen, recording());
            tally.count(&shared, &seen);
        })
        .await;
}

/// The events of one chunk of a stream, counted where every subscriber shares them once a
/// chunk, not once an event, with the clock read once: events that came in one chunk arrived
/// together, and at millions of deliveries a second the loader's own contended atomics would
/// otherwise bound the rate it can measure.
#[derive(Default)]
struct Tally {
    events: u64,
    /// The send times of its events, when latencies are recorded.
    sent_us: Vec<u64>,
}

impl Tally {
    fn scan(&mut self, data: &[u8], scanner: &mut Scanner, seen: &Seen, recording: bool) {
        scanner.feed(data, &mut |event: &[u8]| {
            if event == PROBE {
                seen.probes.fetch_add(1, Relaxed);
                return;
            }
            let mut fields = event.split(|&b| b == b' ');
            let (Some(_seq), Some(sent_us)) = (fields.next(), fields.next()) else {
                return; // not one of ours (e.g. django-eventstream's `stream-open`)
            };
            let Some(sent_us) = std::str::from_utf8(sent_us)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                return;
            };
            self.events += 1;
            if recording {
                self.sent_us.push(sent_us);
            }
        });
    }

    /// The chunk ended: its events count now.
    fn count(&mut self, shared: &Shared, seen: &Seen) {
        if self.events == 0 {
            return;
        }
        let now = shared.now_us();
        seen.events.fetch_add(self.events, Relaxed);
        shared.delivered.fetch_add(self.events, Relaxed);
        shared.last_delivery_us.fetch_max(now, Relaxed);
        if !self.sent_us.is_empty() {
            let latencies = self.sent_us.drain(..);
            let latencies =
                latencies.map(|sent| now.saturating_sub(sent).min(u32::MAX as u64) as u32);
            seen.latencies_us.lock().unwrap().extend(latencies);
        }
        self.events = 0;
    }
}

/// Runs what `publishing` makes on a runtime of its own, on this thread (the bench's main thread,
/// not one of its runtime's workers). A publisher's connection then reads the server's answer the
/// moment it arrives, instead of waiting in the workers' queue behind thousands of subscribers'
/// reads: the bench measures the server's publish path, not its own run queue.
pub(crate) fn publishing<F: std::future::Future>(publishing: impl FnOnce() -> F) -> F::Output {
    tokio::task::block_in_place(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(publishing())
    })
}

/// One keep-alive connection that publishes sequentially, opening a new one when the server
/// closes it (nginx closes a connection after 1,000 requests).
pub(crate) struct Publisher {
    url: Url,
    format: PubFormat,
    sender: http1::SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
}

impl Publisher {
    pub(crate) async fn connect(url: &Url, format: PubFormat) -> Result<Self, String> {
        let (sender, conn) = Self::open(url).await?;
        Ok(Self {
            url: url.clone(),
            format,
            sender,
            conn,
        })
    }

    async fn open(url: &Url) -> Result<(http1::SendRequest<Full<Bytes>>, JoinHandle<()>), String> {
        let stream = TcpStream::connect(url.addr)
            .await
            .map_err(|e| format!("connect to publish: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((sender, conn))
    }

    /// Publishes `data` to `group` and waits for the answer.
    pub(crate) async fn publish(&mut self, group: &str, data: &str) -> Result<(), String> {
        let (path, body, content_type) = match self.format {
            PubFormat::Body => (self.url.path(group), data.to_owned(), "text/plain"),
            PubFormat::PushpinJson => {
                // The data is ASCII without quotes or backslashes: it needs no JSON escaping.
                let content = format!("event: message\\ndata: {data}\\n\\n");
                let body = format!(
                    r#"{{"items":[{{"channel":"{group}","formats":{{"http-stream":{{"content":"{content}"}}}}}}]}}"#
                );
                (self.url.path(group), body, "application/json")
            }
        };
        let request = Request::post(path)
            .header(header::HOST, self.url.addr.to_string())
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        if self.sender.ready().await.is_err() {
            (self.sender, self.conn) = Self::open(&self.url).await?;
        }
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let status = response.status();
        // Read the answer to the end so the connection can carry the next request.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("publish answered {status}"))
        }
    }

    /// Publishes probes to `group` until every one of `subscribers` has seen one. Returns how
    /// many never did within `patience` (the measure goes on: they count as undelivered).
    pub(crate) async fn until_all_subscribed(
        &mut self,
        group: &str,
        subscribers: &[Subscriber],
        patience: Duration,
    ) -> Result<Option<String>, String> {
        let deadline = Instant::now() + patience;
        loop {
            self.publish(group, "probe").await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let waiting = subscribers
                .iter()
                .filter(|s| s.seen.probes.load(Relaxed) == 0)
                .count();
            if waiting == 0 {
                return Ok(None);
            }
            if Instant::now() > deadline {
                return Ok(Some(format!(
                    "{waiting} of {} subscribers never got a probe event",
                    subscribers.len()
                )));
            }
        }
    }
}
