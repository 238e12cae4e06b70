//! `sse::serve`: axum's server, except that open streams are written straight to their sockets.
//!
//! A stream lives for hours and is written to far more than read from. Served by hyper, each
//! one keeps a whole HTTP/1 connection: an 8 KiB read buffer, an 8 KiB write buffer, and chunked
//! framing around every write. So `serve` reads the first request of each connection itself
//! (`head.rs`). When it is a `GET` that accepts `text/event-stream` and the app answers `200`
//! with such a stream, `serve` writes the head, then hands the body's bytes to the socket as
//! they come (`pump.rs`), and the close of the connection ends the body: a stream costs its body
//! and its socket, nothing more. Streams over TCP or Unix sockets are written on threads of
//! their own (`writers.rs`), so requests are never queued behind a burst of writes. Every other
//! connection (any other request or answer, HTTP/2, upgrades, bytes that are not HTTP/1) goes
//! to hyper exactly as with `axum::serve` (`handoff.rs`), with the bytes read so far and, when
//! the app already answered the first request, that answer. When a later request on such a
//! kept-alive HTTP/1 connection is answered with a stream (a browser's `EventSource` on its
//! page's connection), hyper hands the socket back and the stream is written as a first
//! request's would be.
//!
//! Both paths hold a request head to the same bounds: it must arrive within the header read
//! timeout and fit in the head size limit (431 otherwise). A shutdown lets the requests under
//! way finish, for at most the shutdown timeout.

mod handoff;
mod head;
mod phase;
mod pump;
mod writers;

use std::{
    future::{Future, IntoFuture},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use axum::{body::Body, extract::ConnectInfo, response::Response, serve::Listener, Router};
use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpSocket, ToSocketAddrs},
    sync::watch,
};
use tower_service::Service;

use head::Head;
use phase::{CloseOnDrop, Closing, Phase, Streams};
use pump::Pump;
use writers::{Socket, Writers};

/// The smallest head size limit: RFC 9112 asks that request lines of 8,000 octets be accepted.
const MIN_HEAD_BYTES: usize = 8 * 1024;

/// Serves `app` on `listener`, like [`axum::serve()`], with SSE streams written straight to
/// their sockets.
///
/// A drop-in replacement for `axum::serve(listener, app)`: every route, extractor and
/// middleware works as there, HTTP/2 and upgrades included, and handlers can use
/// [`ConnectInfo`] with the listener's address type. What differs is the cost of a stream
/// opened over HTTP/1 (what `EventSource` does), by the first request of a connection or by a
/// later one on a kept-alive connection (a page's, reused by its `EventSource`): no HTTP
/// machinery stays with it, which makes an open stream several times smaller and each event
/// cheaper to send, events waiting for it going out together, written by threads of their own
/// while requests are served (see [`Serve::writer_threads`] and `BENCHMARKS.md`). Such a
/// stream's response has `connection: close` and is delimited by the close of the connection,
/// which browsers and proxies read as they read any HTTP/1 body. Its bytes are flushed
/// whenever the stream has nothing more to send, so a buffering transport (TLS) sends each
/// event at once.
///
/// What a client may do is bounded, so a few clients cannot hold the server's memory or its
/// tasks: a request head must arrive within [`Serve::header_read_timeout`] and fit in
/// [`Serve::max_head_bytes`], and a client that takes nothing from its stream for
/// [`Serve::stall_timeout`] while events wait for it is disconnected; it reconnects and
/// resumes when it can.
///
/// ```no_run
/// use axum::{routing::get, Router};
///
/// #[sse::subscribe("yo")]
/// async fn yo_events() {}
///
/// # #[tokio::main] async fn main() {
/// let app = Router::new().route("/events/yo", get(yo_events));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await.unwrap();
/// sse::serve(listener, app).await.unwrap();
/// # }
/// ```
pub fn serve<L: Listener>(listener: L, app: Router) -> Serve<L> {
    Serve {
        listener,
        app,
        limits: Limits {
            stall_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(30),
            max_head_bytes: 32 * 1024,
            writer_threads: true,
        },
        shutdown_timeout: Duration::from_secs(10),
        signal: std::future::pending(),
    }
}

/// How many connections a listener from [`bind`] holds before they are accepted.
///
/// ```
/// // A listener of tokio's own holds 1,024; `sse::bind` holds this many.
/// assert!(sse::LISTEN_BACKLOG >= 4 * 1024);
/// ```
pub const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` for [`serve`] (or `axum::serve`), holding up to [`LISTEN_BACKLOG`]
/// connections not accepted yet (the kernel's `net.core.somaxconn` caps it).
///
/// `tokio::net::TcpListener::bind` holds 1,024. When a process restarts, or another one dies,
/// its clients' `EventSource`s all come back within the same few milliseconds; past the
/// backlog, the kernel drops their connection requests, and each one waits for its client to
/// try again, a second or more later (`BENCHMARKS.md`, "A rolling restart under load").
///
/// ```
/// use std::future::IntoFuture;
///
/// use axum::{routing::get, Router};
///
/// #[sse::subscribe("yo")]
/// async fn yo_events() {}
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let app = Router::new().route("/events/yo", get(yo_events));
/// let listener = sse::bind("127.0.0.1:0").await?; // a port the kernel has free
/// println!("listening on {}", listener.local_addr()?);
/// tokio::spawn(sse::serve(listener, app).into_future());
/// # Ok(())
/// # }
/// ```
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut failed = None;
    for addr in tokio::net::lookup_host(addr).await? {
        match listen_on(addr) {
            Ok(listener) => return Ok(listener),
            Err(error) => failed = Some(error),
        }
    }
    Err(failed.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does on Unix: a restarted server can bind its port at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The server [`serve`] returns; await it to run it.
#[must_use = "a server does nothing until awaited"]
pub struct Serve<L, Signal = std::future::Pending<()>> {
    listener: L,
    app: Router,
    limits: Limits,
    shutdown_timeout: Duration,
    signal: Signal,
}

/// What every connection is held to, and how its stream is written.
#[derive(Clone, Copy)]
struct Limits {
    stall_timeout: Duration,
    header_read_timeout: Duration,
    max_head_bytes: usize,
    /// Streams are written by the writer threads, not by the connection's runtime.
    writer_threads: bool,
}

impl<L, Signal> Serve<L, Signal> {
    /// How long a stream's client may take nothing while events wait for it before it is
    /// disconnected (60 s by default). Its subscription is cut sooner, when it falls
    /// [`Config::subscriber_queue`](crate::Config::subscriber_queue) events behind; this
    /// frees its socket too.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// sse::serve(listener, axum::Router::new())
    ///     .stall_timeout(Duration::from_secs(20))
    /// #   .with_graceful_shutdown(async {})
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.limits.stall_timeout = timeout;
        self
    }

    /// How long a client may take to send a whole request head (30 s by default, as hyper's):
    /// a connection whose head is not complete by then is closed, without an answer. It
    /// holds for the first request, read by `serve`, and for every later one on a kept-alive
    /// connection, read by hyper, where it also closes a connection left idle between two
    /// requests for that long.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// sse::serve(listener, axum::Router::new())
    ///     .header_read_timeout(Duration::from_secs(10))
    /// #   .with_graceful_shutdown(async {})
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// The longest request head accepted, request line and headers (32 KiB by default; at
    /// least 8 KiB, as RFC 9112 asks: less counts as 8 KiB). A longer one is answered
    /// `431 Request Header Fields Too Large` and its connection closed, so a client can never
    /// make the server hold more than this for a head. `serve` reads no more than this of a
    /// first request, and hyper, which by default lets a head grow to about 400 KB, is held to
    /// it for later ones. HTTP/2 has hyper's own bound, 16 KiB of header list.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// sse::serve(listener, axum::Router::new())
    ///     .max_head_bytes(16 * 1024)
    /// #   .with_graceful_shutdown(async {})
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_head_bytes = bytes.max(MIN_HEAD_BYTES);
        self
    }

    /// Whether open streams are written by writer threads of their own (the default) or by
    /// the runtime that serves the app.
    ///
    /// By default a stream over TCP or a Unix socket, once answered, is written by threads
    /// `sse` starts with the first stream: one per core (or as many as `TOKIO_WORKER_THREADS`
    /// says), named `sse-writer`, each polling its streams' sockets itself, and one named
    /// `sse-drivers` that runs their timers; they are shared by every server of the process.
    /// A publish wakes every stream of its group at once; written by the app's runtime, those
    /// writes would queue the requests behind them, the next publish among them. On threads of
    /// their own, requests are answered while streams are written, and each write carries
    /// every event published meanwhile: several times fewer writes and less CPU per event under
    /// load (`BENCHMARKS.md`). The stream's body (a [`Subscription`](crate::Subscription), or any
    /// `text/event-stream` body the app answers with) is then polled on those threads.
    ///
    /// `false` keeps everything on the app's runtime, for an app that wants no threads but its
    /// own (a process per core, say). Streams over other transports (TLS) are always written
    /// there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// sse::serve(listener, axum::Router::new())
    ///     .writer_threads(false)
    /// #   .with_graceful_shutdown(async {})
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn writer_threads(mut self, own: bool) -> Self {
        self.limits.writer_threads = own;
        self
    }

    /// How long, after the shutdown signal, connections may take to finish before they are
    /// closed (10 s by default): the server's future ends within this of the signal, however
    /// the clients behave (see [`with_graceful_shutdown`](Self::with_graceful_shutdown)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// sse::serve(listener, axum::Router::new())
    ///     .shutdown_timeout(Duration::from_secs(5))
    ///     .with_graceful_shutdown(async {
    ///         // Stops at once: a real server waits for `tokio::signal::ctrl_c()` here.
    ///         sse::hub().shutdown();
    ///     })
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Stops when `signal` completes: no new connection is accepted, and connections close
    /// once they answered the request under way, if any (a connection still sending its head
    /// has none, and closes at once). Streams end with their hub: shut it down in `signal`, as
    /// below, so that they end with a retry hint and their clients come back to the next
    /// server. The server's future ends once every connection has, or at the
    /// [`shutdown_timeout`](Self::shutdown_timeout), when those still open are closed.
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// sse::serve(listener, app)
    ///     .with_graceful_shutdown(async {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         sse::hub().shutdown();
    ///     })
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn with_graceful_shutdown<S>(self, signal: S) -> Serve<L, S>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            app: self.app,
            limits: self.limits,
            shutdown_timeout: self.shutdown_timeout,
            signal,
        }
    }
}

impl<L, Signal> IntoFuture for Serve<L, Signal>
where
    L: Listener,
    L::Addr: Clone + Sync + 'static,
    Signal: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let Serve {
            mut listener,
            app,
            limits,
            shutdown_timeout,
            signal,
        } = self;
        Box::pin(async move {
            // Every connection holds a receiver until it ends: closed once all have.
            let (phase, _) = watch::channel(Phase::Serving);
            let streams = Arc::new(Streams::new(limits.stall_timeout));
            let _close_streams = CloseOnDrop(streams.clone());
            let mut signal = std::pin::pin!(signal);
            loop {
                tokio::select! {
                    // Like axum's, the listener retries failed accepts itself.
                    (io, peer) = listener.accept() => {
                        let connection = Connection {
                            app: app.clone(),
                            limits,
                            phase: phase.subscribe(),
                            streams: streams.clone(),
                        };
                        tokio::spawn(connection.serve(io, peer));
                    }
                    () = &mut signal => break,
                }
            }
            drop(listener);
            phase.send_replace(Phase::Draining);
            let ended = async {
                phase.closed().await;
                streams.ended().await;
            };
            if tokio::time::timeout(shutdown_timeout, ended).await.is_err() {
                tracing::debug!(
                    connections = phase.receiver_count(),
                    streams = streams.open(),
                    ?shutdown_timeout,
                    "connections still open at the shutdown timeout: closed"
                );
                phase.send_replace(Phase::Closing);
                streams.close();
                phase.closed().await;
                streams.ended().await;
            }
            Ok(())
        })
    }
}

/// What a connection's task holds besides its socket.
struct Connection {
    app: Router,
    limits: Limits,
    /// The server's phase; dropped when the connection ends, which the server waits for.
    phase: watch::Receiver<Phase>,
    /// The server's streams, which its stream joins.
    streams: Arc<Streams>,
}

/// A stream the app answered, for `serve` to write to the socket itself: its head, then its
/// body's bytes as they come.
struct Stream {
    head: Bytes,
    body: Body,
}

/// What became of a connection's first request.
enum First {
    /// A stream: its head and body go to the socket.
    Stream(Stream),
    /// Anything else, for hyper: the bytes read so far and, if the app answered, its answer.
    Other {
        read: Bytes,
        answer: Option<Response>,
    },
    /// Nothing more to do: the head was refused, or the server drains.
    Done,
}

impl Connection {
    async fn serve<Io, Addr>(self, io: Io, peer: Addr)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Addr: Clone + Send + Sync + 'static,
    {
        let phase = self.phase.clone();
        let streams = self.streams.clone();
        let limits = self.limits;
        let stream = tokio::select! {
            stream = self.run(io, peer) => stream,
            () = Phase::Closing.reached(&phase) => {
                tracing::debug!("connection closed: the shutdown timeout passed");
                return;
            }
        };
        let Some((io, stream)) = stream else { return };
        // Counted among the server's streams before the connection stops counting.
        let closing = Closing::new(streams);
        drop(phase);
        // A stream written here gets a task of its own too, holding the stream and nothing of
        // what answering its request took: this task's future has room for all of that, the
        // socket included (5.8 KB over TLS, 6 % of it the stream's).
        let Some(writers) = limits.writer_threads.then(Writers::get).flatten() else {
            tokio::spawn(Pump::new(io, stream, closing));
            return;
        };
        let mut io = Some(io);
        match Socket::adopt(&mut io) {
            Some(Ok(socket)) => writers.hand_over(Pump::new(socket, stream, closing)),
            Some(Err(error)) => {
                tracing::warn!(%error, "a stream's socket could not move to the writer threads: closed");
            }
            // Neither a TCP nor a Unix socket (TLS, say): written on this runtime.
            None => {
                if let Some(io) = io {
                    tokio::spawn(Pump::new(io, stream, closing));
                }
            }
        }
    }

    /// Answers the connection's requests until one is answered with a stream: the socket and
    /// that stream.
    async fn run<Io, Addr>(mut self, mut io: Io, peer: Addr) -> Option<(Io, Stream)>
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Addr: Clone + Send + Sync + 'static,
    {
        // Boxed, so what reading the first request, or hyper, needs is not part of the
        // connection's task for as long as a stream stays open.
        let first = Box::pin(self.first_request(&mut io, &peer)).await;
        match first {
            Ok(First::Stream(stream)) => Some((io, stream)),
            // A later request may still be a stream: hyper hands the socket back for it.
            Ok(First::Other { read, answer }) => {
                Box::pin(handoff::serve(io, read, answer, self, peer)).await
            }
            Ok(First::Done) => None,
            Err(error) => {
                tracing::debug!(%error, "connection ended before its first request");
                None
            }
        }
    }

    async fn first_request<Io, Addr>(&mut self, io: &mut Io, peer: &Addr) -> io::Result<First>
    where
        Io: AsyncRead + AsyncWrite + Unpin,
        Addr: Clone + Send + Sync + 'static,
    {
        let limits = self.limits;
        let reading = tokio::time::timeout(
            limits.header_read_timeout,
            head::read(io, limits.max_head_bytes),
        );
        let (read, head) = tokio::select! {
            read = reading => read.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "no whole request head within the header read timeout")
            })??,
            // A connection that has not sent a whole request has none under way: closed.
            () = Phase::Draining.reached(&self.phase) => return Ok(First::Done),
        };
        let mut request = match head {
            Head::Stream(request) => *request,
            Head::Other => {
                let read = read.freeze();
                return Ok(First::Other { read, answer: None });
            }
            Head::TooLarge => {
                tracing::debug!(
                    max_head_bytes = limits.max_head_bytes,
                    "request head too large: 431"
                );
                io.write_all(head::TOO_LARGE).await?;
                io.shutdown().await?;
                return Ok(First::Done);
            }
        };
        request.extensions_mut().insert(ConnectInfo(peer.clone()));
        let version = request.version();
        // Not stopped by a shutdown: the request is under way, and gets its answer.
        let Ok(response) = self.app.call(request).await;
        if !head::is_stream(&response) {
            let read = read.freeze();
            let answer = Some(response);
            return Ok(First::Other { read, answer });
        }
        Ok(First::Stream(Stream::of(version, response)))
    }
}

impl Stream {
    /// The stream `response` (one [`head::is_stream`] accepts) answers a request of `version`
    /// with.
    fn of(version: axum::http::Version, response: Response) -> Self {
        let (parts, body) = response.into_parts();
        let head = head::stream_head(version, &parts.headers);
        Stream { head, body }
    }
}
