//! `sse::serve`: axum's server, except that open streams are written straight to their sockets.
//!
//! A stream lives for hours and is written to far more than read from. Served by hyper, each
//! one keeps a whole HTTP/1 connection: an 8 KiB read buffer, an 8 KiB write buffer, and chunked
//! framing around every write. So `serve` reads the first request of each connection itself.
//! When it is a `GET` that accepts `text/event-stream` and the app answers `200` with such a
//! stream, `serve` writes the head, then hands the body's bytes to the socket as they come, and
//! the close of the connection ends the body: a stream costs its body and its socket, nothing
//! more. Every other connection (any other request or answer, HTTP/2, upgrades, a head it cannot
//! read) goes to hyper exactly as with `axum::serve`, with the bytes read so far and, when the
//! app already answered the first request, that answer.

use std::{
    convert::Infallible,
    future::{Future, IntoFuture},
    io,
    pin::Pin,
    sync::{Mutex, PoisonError},
    task::{ready, Context, Poll},
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::{header, HeaderName, HeaderValue, Method, StatusCode, Version},
    response::Response,
    serve::Listener,
    Router,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body as _;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    sync::watch,
    time::Sleep,
};
use tower_service::Service;

/// The longest first request head `serve` reads itself; a longer one goes to hyper, which
/// answers it as usual.
const MAX_HEAD: usize = 16 * 1024;
/// Headers of a first request, at most; more go to hyper too.
const MAX_HEADERS: usize = 64;

/// Serves `app` on `listener`, like [`axum::serve()`], with SSE streams written straight to
/// their sockets.
///
/// A drop-in replacement for `axum::serve(listener, app)`: every route, extractor and
/// middleware works as there, HTTP/2 and upgrades included, and handlers can use
/// [`ConnectInfo`] with the listener's address type. What differs is the cost of a stream
/// opened by the first request of a connection (what `EventSource` does): no HTTP machinery
/// stays with it, which makes an open stream several times smaller and each event cheaper to
/// send (see `BENCHMARKS.md`). Such a stream's response has `connection: close` and is
/// delimited by the close of the connection, which browsers and proxies read as they read any
/// HTTP/1 body.
///
/// A client that takes nothing from its stream for [`Serve::stall_timeout`] while events
/// wait for it is disconnected; it reconnects and resumes when it can.
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
        stall_timeout: Duration::from_secs(60),
        signal: std::future::pending(),
    }
}

/// The server [`serve`] returns; await it to run it.
#[must_use = "a server does nothing until awaited"]
pub struct Serve<L, Signal = std::future::Pending<()>> {
    listener: L,
    app: Router,
    stall_timeout: Duration,
    signal: Signal,
}

impl<L, Signal> Serve<L, Signal> {
    /// How long a stream's client may take nothing while events wait for it before it is
    /// disconnected (60 s by default). Its subscription is cut sooner, when it falls
    /// [`Config::subscriber_queue`](crate::Config::subscriber_queue) events behind; this
    /// frees its socket too.
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// use std::time::Duration;
    ///
    /// sse::serve(listener, app)
    ///     .stall_timeout(Duration::from_secs(20))
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Stops when `signal` completes: no new connection is accepted, connections served by
    /// hyper finish their requests and close, and the server's future ends once every
    /// connection has. Streams end with their hub: shut it down in `signal`, as below, so that
    /// they end with a retry hint and their clients come back to the next server.
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
            stall_timeout: self.stall_timeout,
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
            stall_timeout,
            signal,
        } = self;
        Box::pin(async move {
            // Dropped when the signal comes: connections watch for that.
            let (stopping, stop) = watch::channel(());
            // Held by every connection: closed once all have ended.
            let (all_ended, alive) = watch::channel(());
            let mut signal = std::pin::pin!(signal);
            loop {
                tokio::select! {
                    // Like axum's, the listener retries failed accepts itself.
                    (io, peer) = listener.accept() => {
                        let connection = Connection { app: app.clone(), stall_timeout, stop: stop.clone(), alive: alive.clone() };
                        tokio::spawn(connection.serve(io, peer));
                    }
                    () = &mut signal => break,
                }
            }
            drop((listener, stopping, stop, alive));
            all_ended.closed().await;
            Ok(())
        })
    }
}

/// What a connection's task holds besides its socket.
struct Connection {
    app: Router,
    stall_timeout: Duration,
    /// Changes (closes) when the server stops.
    stop: watch::Receiver<()>,
    /// Held until the connection ends.
    alive: watch::Receiver<()>,
}

impl Connection {
    async fn serve<Io, Addr>(mut self, mut io: Io, peer: Addr)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Addr: Clone + Send + Sync + 'static,
    {
        // Boxed, so what reading the first request needs is not part of the connection's task
        // for as long as the stream stays open.
        let first = Box::pin(first_request(&mut io, &peer, self.app.clone()));
        let first = tokio::select! {
            first = first => first,
            // A connection that sent no request yet is idle: closed.
            _ = self.stop.changed() => return,
        };
        match first {
            Ok(First::Stream(body)) => {
                let Connection {
                    stall_timeout,
                    alive,
                    ..
                } = self;
                Pump {
                    io,
                    body,
                    unsent: Bytes::new(),
                    ended: false,
                    stall_timeout,
                    stalled: None,
                }
                .await;
                drop(alive);
            }
            Ok(First::Other { read, answer }) => {
                Box::pin(hand_to_hyper(io, read, answer, self, peer)).await
            }
            Err(error) => tracing::trace!(%error, "connection ended before its first request"),
        }
    }
}

/// What became of a connection's first request.
enum First {
    /// A stream whose head was written: its body goes to the socket.
    Stream(Body),
    /// Anything else, for hyper: the bytes read so far and, if the app answered, its answer.
    Other {
        read: Bytes,
        answer: Option<Response>,
    },
}

async fn first_request<Io, Addr>(io: &mut Io, peer: &Addr, mut app: Router) -> io::Result<First>
where
    Io: AsyncRead + AsyncWrite + Unpin,
    Addr: Clone + Send + Sync + 'static,
{
    let mut read = BytesMut::with_capacity(1024);
    let mut request = loop {
        read.reserve(1024);
        if io.read_buf(&mut read).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match parse_head(&read) {
            Head::Partial if read.len() < MAX_HEAD => continue,
            Head::Stream(request) => break *request,
            Head::Partial | Head::Other => {
                let read = read.freeze();
                return Ok(First::Other { read, answer: None });
            }
        }
    };
    request.extensions_mut().insert(ConnectInfo(peer.clone()));
    let version = request.version();
    let Ok(response) = app.call(request).await;
    if !is_stream(&response) {
        let read = read.freeze();
        let answer = Some(response);
        return Ok(First::Other { read, answer });
    }
    let (parts, body) = response.into_parts();
    io.write_all(&stream_head(version, &parts.headers)).await?;
    Ok(First::Stream(body))
}

enum Head {
    /// Not all of it yet.
    Partial,
    /// A request `serve` may answer with a stream of its own.
    Stream(Box<Request>),
    Other,
}

fn parse_head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(bytes) {
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(_)) => {
            stream_request(&head).map_or(Head::Other, |request| Head::Stream(Box::new(request)))
        }
        Err(_) => Head::Other,
    }
}

/// The request, if it is one a stream may answer: a `GET` with no body, no upgrade and no
/// expectation, over HTTP/1, that accepts `text/event-stream`.
fn stream_request(head: &httparse::Request<'_, '_>) -> Option<Request> {
    if head.method? != "GET" {
        return None;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.version_mut() = match head.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    *request.uri_mut() = head.path?.parse().ok()?;
    let mut accepts_stream = false;
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        match name {
            header::CONTENT_LENGTH if value != "0" => return None,
            header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT => return None,
            header::ACCEPT => {
                accepts_stream |= value
                    .as_bytes()
                    .windows(b"text/event-stream".len())
                    .any(|window| window.eq_ignore_ascii_case(b"text/event-stream"));
            }
            _ => {}
        }
        request.headers_mut().append(name, value);
    }
    accepts_stream.then_some(request)
}

fn is_stream(response: &Response) -> bool {
    let headers = response.headers();
    response.status() == StatusCode::OK
        && headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"))
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
}

/// The head of a `200` stream whose body ends with the connection.
fn stream_head(version: Version, headers: &axum::http::HeaderMap) -> Bytes {
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(match version {
        Version::HTTP_10 => b"HTTP/1.0 200 OK\r\n",
        _ => b"HTTP/1.1 200 OK\r\n",
    });
    let mut field = |name: &[u8], value: &[u8]| {
        head.put_slice(name);
        head.put_slice(b": ");
        head.put_slice(value);
        head.put_slice(b"\r\n");
    };
    for (name, value) in headers {
        // The connection is ours to describe.
        if name != header::CONNECTION && name.as_str() != "keep-alive" {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !headers.contains_key(header::DATE) {
        field(
            b"date",
            httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
        );
    }
    field(b"connection", b"close");
    head.put_slice(b"\r\n");
    head.freeze()
}

/// Moves a stream's body to its socket until either ends.
struct Pump<Io> {
    io: Io,
    body: Body,
    /// What the body gave that the socket has not taken yet.
    unsent: Bytes,
    /// The body ended: once `unsent` is written, the connection closes.
    ended: bool,
    stall_timeout: Duration,
    /// Running while the socket takes nothing.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Pump<Io> {
    /// The client closed, or sent something: a stream's connection carries nothing more.
    fn client_left(&mut self, cx: &mut Context<'_>) -> bool {
        let mut scratch = [0; 64];
        let mut scratch = ReadBuf::new(&mut scratch);
        match Pin::new(&mut self.io).poll_read(cx, &mut scratch) {
            Poll::Pending => false,
            Poll::Ready(Ok(())) => {
                if !scratch.filled().is_empty() {
                    tracing::debug!("client sent more on a stream's connection: closed");
                }
                true
            }
            Poll::Ready(Err(_)) => true,
        }
    }

    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let timeout = self.stall_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        tracing::debug!(
            ?timeout,
            "client took nothing from its stream: disconnected"
        );
        Poll::Ready(())
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Future for Pump<Io> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.client_left(cx) {
            return Poll::Ready(());
        }
        loop {
            if !this.unsent.is_empty() {
                match Pin::new(&mut this.io).poll_write(cx, &this.unsent) {
                    Poll::Ready(Ok(written)) if written > 0 => {
                        this.unsent.advance(written);
                        this.stalled = None;
                        continue;
                    }
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return this.poll_stall(cx),
                }
            }
            if this.ended {
                return Pin::new(&mut this.io).poll_shutdown(cx).map(drop);
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.unsent = data;
                    }
                }
                Poll::Ready(None | Some(Err(_))) => this.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Serves the rest of a connection with hyper, as `axum::serve` does, starting with the bytes
/// already read; the first request gets `answer` if the app gave one already.
async fn hand_to_hyper<Io, Addr>(
    io: Io,
    read: Bytes,
    answer: Option<Response>,
    connection: Connection,
    peer: Addr,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Addr: Clone + Send + Sync + 'static,
{
    let Connection {
        app,
        mut stop,
        alive,
        ..
    } = connection;
    let answer = Mutex::new(answer);
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let answer = answer.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut app = app.clone();
        let peer = peer.clone();
        async move {
            if let Some(answer) = answer {
                return Ok::<_, Infallible>(answer);
            }
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            app.call(request).await
        }
    });
    let io = TokioIo::new(Rewound { read, io });
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut served = std::pin::pin!(builder.serve_connection_with_upgrades(io, service));
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = stop.changed() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = result {
        tracing::trace!(%error, "connection ended with an error");
    }
    drop(alive);
}

/// A connection whose first bytes were read already, and are read again.
struct Rewound<Io> {
    read: Bytes,
    io: Io,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Rewound<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Rewound<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes())
    }

    fn streams(text: &str) -> bool {
        matches!(head(text), Head::Stream(_))
    }

    #[test]
    fn only_a_plain_get_that_accepts_a_stream_is_answered_here() {
        let accept = "Accept: text/event-stream\r\n";
        assert!(streams(&format!(
            "GET /e HTTP/1.1\r\nHost: h\r\n{accept}\r\n"
        )));
        assert!(streams(
            "GET /e HTTP/1.1\r\nAccept: text/html, Text/Event-Stream;q=1\r\n\r\n"
        ));
        assert!(streams(&format!(
            "GET /e HTTP/1.1\r\nContent-Length: 0\r\n{accept}\r\n"
        )));
        for other in [
            "GET /e HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
            format!("POST /e HTTP/1.1\r\n{accept}Content-Length: 0\r\n\r\n"),
            format!("HEAD /e HTTP/1.1\r\n{accept}\r\n"),
            format!("GET /e HTTP/1.1\r\n{accept}Content-Length: 5\r\n\r\nhello"),
            format!("GET /e HTTP/1.1\r\n{accept}Transfer-Encoding: chunked\r\n\r\n"),
            format!("GET /e HTTP/1.1\r\n{accept}Connection: upgrade\r\nUpgrade: h2c\r\n\r\n"),
            format!("GET /e HTTP/1.1\r\n{accept}Expect: 100-continue\r\n\r\n"),
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
            "GET /e HTTP/1.1\r\nBad Header: x\r\n\r\n".to_string(),
        ] {
            assert!(matches!(head(&other), Head::Other), "{other:?}");
        }
        assert!(matches!(
            head("GET /e HTTP/1.1\r\nAccept: te"),
            Head::Partial
        ));
    }

    #[test]
    fn the_request_is_what_the_client_sent() {
        let Head::Stream(request) = head(
            "GET /events/yo?lastEventId=7 HTTP/1.0\r\nHost: h\r\nAccept: text/event-stream\r\nX-Two: a\r\nX-Two: b\r\n\r\n",
        ) else {
            panic!("a stream request");
        };
        assert_eq!(request.version(), Version::HTTP_10);
        assert_eq!(request.uri(), "/events/yo?lastEventId=7");
        assert_eq!(request.headers()["host"], "h");
        let twos: Vec<_> = request.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["a", "b"]);
    }

    #[test]
    fn the_head_says_the_connection_ends_the_body() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            header::DATE,
            HeaderValue::from_static("Wed, 25 Nov 2026 06:00:00 GMT"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        assert_eq!(
            stream_head(Version::HTTP_11, &headers),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             date: Wed, 25 Nov 2026 06:00:00 GMT\r\nconnection: close\r\n\r\n"
        );
        headers.remove(header::DATE);
        let head = stream_head(Version::HTTP_10, &headers);
        assert!(head.starts_with(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\ndate: "));
        assert!(head.ends_with(b" GMT\r\nconnection: close\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_rewound_connection_reads_what_was_read_first() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut rewound = Rewound {
            read: Bytes::from_static(b"GET / HTTP/1.1\r\n"),
            io: near,
        };
        far.write_all(b"Host: h\r\n\r\n").await.unwrap();
        let mut first = [0; 4];
        rewound.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET ");
        let mut rest = vec![0; 23];
        rewound.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, b"/ HTTP/1.1\r\nHost: h\r\n\r\n");
        rewound
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0; 27];
        far.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 204 No Content\r\n\r\n");
    }
}
