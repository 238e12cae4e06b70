//! What the integration tests share: a server on a free loopback port, a real HTTP client, an
//! independent SSE parser (`eventsource-stream`) to read what the server wrote, and a relay that
//! cuts connections as a network would.

use std::{
    future::Future,
    net::SocketAddr,
    sync::atomic::{AtomicU16, Ordering},
    time::Duration,
};

use axum::Router;
pub use eventsource_stream::Event;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

#[cfg(any(feature = "redis", feature = "postgres"))]
pub mod nodes;
#[cfg(feature = "postgres")]
pub mod postgres_server;
#[cfg(feature = "redis")]
pub mod redis_servers;

/// How long any one wait in a test may last before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Serves `app` with [`sse::serve`] on 127.0.0.1 on a free port, in the background.
///
/// Each accepted socket gets a fixed 64 KiB send buffer instead of the kernel's autotuned one
/// (up to 4 MiB here), so a client that stops reading stalls the server after a known, small
/// amount of data, as it would on a real network sooner or later.
pub async fn serve(app: Router) -> SocketAddr {
    serve_writing_on(app, true).await
}

/// Like [`serve`], with streams written by the test's own runtime (`writer_threads(false)`)
/// instead of `sse`'s writer threads: nothing is written while the test's thread runs, so a
/// test can publish past a stream's queue before the stream reads anything.
pub async fn serve_on_app_runtime(app: Router) -> SocketAddr {
    serve_writing_on(app, false).await
}

async fn serve_writing_on(app: Router, writer_threads: bool) -> SocketAddr {
    let (listener, addr) = listen().await;
    let server = sse::serve(listener, app).writer_threads(writer_threads);
    tokio::spawn(async move { server.await.unwrap() });
    addr
}

/// Like [`serve`], with `axum::serve` instead: every stream goes through hyper.
pub async fn serve_with_axum(app: Router) -> SocketAddr {
    let (listener, addr) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A listener on a free loopback port whose sockets have a 64 KiB send buffer.
pub async fn listen() -> (impl axum::serve::Listener<Addr = SocketAddr>, SocketAddr) {
    use axum::serve::ListenerExt;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(64 * 1024);
    });
    (listener, addr)
}

/// Serves a stream of `group` from `hub` (a hub of the test's own, not the global one) at `/`.
pub async fn serve_hub(hub: &sse::Hub, group: &str) -> SocketAddr {
    serve(hub_app(hub, group)).await
}

/// A stream of `group` from `hub` at `/`.
pub fn hub_app(hub: &sse::Hub, group: &str) -> Router {
    let hub = hub.clone();
    let group = sse::GroupName::new(group).unwrap();
    Router::new().route(
        "/",
        axum::routing::get(
            move |last: sse::LastEventId| async move { hub.subscribe([group], &last) },
        ),
    )
}

/// `/{room}/{user}`: a stream of `room` as `user` (metadata `<user>'s meta`); `/{room}`: an
/// anonymous one.
pub fn presence_app(hub: &sse::Hub) -> Router {
    let (as_user, anonymous) = (hub.clone(), hub.clone());
    Router::new()
        .route(
            "/{room}/{user}",
            axum::routing::get(
                move |axum::extract::Path((room, user)): axum::extract::Path<(
                    sse::GroupName,
                    String,
                )>,
                      last: sse::LastEventId| async move {
                    let who = sse::Identity::new(&user).with_meta(format!("{user}'s meta"));
                    as_user.subscribe(sse::Join::group(room).identity(who), &last)
                },
            ),
        )
        .route(
            "/{room}",
            axum::routing::get(
                move |axum::extract::Path(room): axum::extract::Path<sse::GroupName>,
                      last: sse::LastEventId| async move {
                    anonymous.subscribe([room], &last)
                },
            ),
        )
}

/// An open SSE stream, decoded by an independent parser.
pub struct Client {
    /// The headers of the `200` answer.
    pub response_headers: reqwest::header::HeaderMap,
    events: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>,
    /// The id of the stream's `stream-start` event, once read: where the stream started.
    pub started_at: Option<String>,
}

impl Client {
    /// Opens `url` with `headers`; panics unless the answer is `200`.
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Client {
        let response = request(url, headers).await;
        assert_eq!(response.status(), 200, "opening {url}");
        Client::from_response(response)
    }

    /// Reads the body of `response` as an event stream.
    pub fn from_response(response: reqwest::Response) -> Client {
        let response_headers = response.headers().clone();
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|event| event.expect("a well-formed event stream"));
        Client {
            response_headers,
            events: Box::pin(events),
            started_at: None,
        }
    }

    /// The next event, waiting at most [`PATIENCE`]; `None` when the stream ended. The
    /// `stream-start` event is not one: its id goes to [`Client::started_at`], as a page that
    /// does not listen for it ignores it.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let event = within(self.events.next()).await?;
            if event.event != sse::STREAM_START {
                return Some(event);
            }
            self.started_at = Some(event.id);
        }
    }

    /// The data of the events until the stream ends (`stream-end` shown as `END`), and the id
    /// of the last one; panics if it does not end.
    pub async fn to_the_end(&mut self) -> (Vec<String>, String) {
        let (mut seen, mut last) = (Vec::new(), String::new());
        while let Some(event) = self.next().await {
            seen.push(match event.event.as_str() {
                sse::STREAM_END => "END".to_owned(),
                _ => event.data,
            });
            last = event.id;
        }
        (seen, last)
    }

    /// The next `n` events; panics if the stream ends first.
    pub async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            match self.next().await {
                Some(event) => events.push(event),
                None => panic!("stream ended after {} of {n} events", events.len()),
            }
        }
        events
    }
}

/// A GET with `headers`, over a fresh connection, accepting `text/event-stream` as
/// `EventSource` does.
pub async fn request(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = http_client().get(url).header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    within(request.send()).await.unwrap()
}

/// A client that opens a new connection per request and never uses a proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap()
}

/// Awaits `future`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("waited too long")
}

/// Polls `condition` every 10 ms until it holds; panics after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a raw HTTP/1.0 request for an event stream and returns the raw connection, to read
/// exact bytes.
pub async fn raw_get(addr: SocketAddr, path: &str, headers: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{headers}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp
}

/// Reads from `tcp` until `needle` has been seen; returns everything read.
pub async fn read_until(tcp: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    within(async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "connection closed before {needle:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8(seen).unwrap()
}

/// Makes one request on `tcp`, `GET /page` of an app that answers it `a page`, and reads the
/// answer: the connection is kept alive, and the server's hyper reads the next request.
pub async fn one_page(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(tcp, "a page").await;
}

/// Reads until the server closes the connection (or resets it), waiting at most [`PATIENCE`];
/// returns what came.
pub async fn read_to_close(tcp: &mut (impl AsyncRead + Unpin)) -> String {
    let mut all = Vec::new();
    let mut buf = [0; 64 * 1024];
    within(async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&all).into_owned()
}

/// Sends a raw HTTP/1.0 GET for an event stream whose other headers is given as bytes (they may be any bytes), from a
/// socket whose receive buffer is `recv_buffer` bytes, and returns the connection.
pub async fn raw_get_bytes(
    addr: SocketAddr,
    path: &str,
    headers: &[u8],
    recv_buffer: Option<u32>,
) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut tcp = socket.connect(addr).await.unwrap();
    let mut request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n")
            .into_bytes();
    request.extend_from_slice(headers);
    request.extend_from_slice(b"\r\n");
    tcp.write_all(&request).await.unwrap();
    tcp
}

/// Reads `tcp` until the server closes it; returns the body (after the HTTP/1.0 head).
pub async fn read_body_to_end(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    within(tcp.read_to_end(&mut all)).await.unwrap();
    let body_at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head")
        + 4;
    all.split_off(body_at)
}

/// The events in a complete SSE body, read by the independent parser (`stream-start` left out,
/// as a page that does not listen for it never sees it).
pub async fn parse_events(body: Vec<u8>) -> Vec<Event> {
    futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body)])
        .eventsource()
        .map(|event| event.expect("a well-formed event stream"))
        .filter(|event| std::future::ready(event.event != sse::STREAM_START))
        .collect()
        .await
}

/// A TCP relay on loopback in front of a server, that a test cuts as a network would: it drops
/// every connection it relays at once ([`Relay::cut`]), and keeps new ones waiting (at most
/// [`PATIENCE`]) while held ([`Relay::hold`]), so clients stay away while the test publishes.
/// Its tasks, and the connections they relay, end when it is dropped.
pub struct Relay {
    addr: SocketAddr,
    gate: watch::Sender<Gate>,
    accepting: JoinHandle<()>,
}

/// What the relay's connections obey; each watches it.
#[derive(Default)]
struct Gate {
    /// New connections wait while it is set.
    held: bool,
    /// How many cuts so far: a relayed connection ends when it changes.
    cuts: u64,
    /// Connections accepted and not relayed yet.
    waiting: usize,
}

impl Relay {
    /// Relays connections to 127.0.0.1 on a free port to `target`, a loopback address.
    pub async fn start(target: SocketAddr) -> Relay {
        assert!(target.ip().is_loopback(), "the relay stays on loopback");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = watch::Sender::new(Gate::default());
        let accepting = tokio::spawn(accept(listener, target, gate.clone()));
        Relay {
            addr,
            gate,
            accepting,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection relayed so far, both ways.
    pub fn cut(&self) {
        self.gate.send_modify(|gate| gate.cuts += 1);
    }

    /// Keeps connections accepted from now on waiting, until [`Relay::release`].
    pub fn hold(&self) {
        self.gate.send_modify(|gate| gate.held = true);
    }

    /// Relays the waiting connections, and new ones at once.
    pub fn release(&self) {
        self.gate.send_modify(|gate| gate.held = false);
    }

    /// How many accepted connections wait to be relayed: clients trying to come back while held.
    pub fn waiting(&self) -> usize {
        self.gate.borrow().waiting
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Aborting it drops its set of connection tasks, which aborts them.
        self.accepting.abort();
    }
}

/// Accepts connections and relays each in a task of its own, owned here.
async fn accept(listener: TcpListener, target: SocketAddr, gate: watch::Sender<Gate>) {
    let mut connections = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(relay(client, target, gate.clone()));
    }
}

/// Waits while the relay is held, then copies both ways until either side closes or a cut.
async fn relay(mut client: TcpStream, target: SocketAddr, gate: watch::Sender<Gate>) {
    let mut changes = gate.subscribe();
    gate.send_modify(|gate| gate.waiting += 1);
    let _ = tokio::time::timeout(PATIENCE, changes.wait_for(|gate| !gate.held)).await;
    gate.send_modify(|gate| gate.waiting -= 1);
    let cuts = gate.borrow().cuts;
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = changes.wait_for(|gate| gate.cuts != cuts) => {}
    }
}

/// This process's resident memory, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// A free port for a server of a test's own (`redis-server`, `postgres`), each handed out once, below the kernel's ephemeral range
/// (32768 and up by default): while a test's Redis is down for a restart, neither another
/// test's Redis nor a socket bound to port 0 can take its port.
pub fn free_port() -> u16 {
    free_port_in(20_000, 6_000, port_is_free)
}

pub(crate) fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port from `first` to `first + span` for which `free` holds, starting at a place of this
/// process's own so that test processes running at once seldom try the same ones.
pub(crate) fn free_port_in(first: u16, span: u16, free: impl Fn(u16) -> bool) -> u16 {
    static HANDED_OUT: AtomicU16 = AtomicU16::new(0);
    let start = std::process::id() % 3_000 * 2;
    (0..span)
        .map(|_| {
            let handed_out = u32::from(HANDED_OUT.fetch_add(1, Ordering::Relaxed));
            first + ((start + handed_out) % u32::from(span)) as u16
        })
        .find(|&port| free(port))
        .expect("a free port on 127.0.0.1")
}
