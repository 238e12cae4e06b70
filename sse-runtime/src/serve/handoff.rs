//! The rest of a connection that is not a stream `serve` writes itself: hyper serves it, as
//! under `axum::serve`, starting with the bytes `serve` read already. When a later request of
//! a kept-alive HTTP/1 connection is answered with a stream (an `EventSource` opened by a page
//! loaded from the same server), hyper hands the socket back, and `serve` writes that stream
//! itself, as if it had been the connection's first request.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::Response,
};
use bytes::{Buf, Bytes};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::watch,
};
use tower_service::Service;

use super::{head, Connection, Phase, Stream};

/// What a connection's service and its socket tell the task that runs hyper.
#[derive(Default)]
struct Handback {
    /// A stream the app answered: hyper is not to write it.
    stream: Mutex<Option<Stream>>,
    /// Hyper gave the socket bytes it has not flushed since: the socket is not to be taken
    /// from it before they are out.
    unflushed: AtomicBool,
}

/// Serves the rest of a connection with hyper, starting with the bytes already `read`; the
/// first request gets `answer` if the app gave one already. Ends when the client leaves, or
/// after the request under way when the server drains; or, when the app answers a later
/// HTTP/1 request with a stream, with the socket and that stream, for `serve` to write.
pub(super) async fn serve<Io, Addr>(
    io: Io,
    read: Bytes,
    answer: Option<Response>,
    connection: Connection,
    peer: Addr,
) -> Option<(Io, Stream)>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Addr: Clone + Send + Sync + 'static,
{
    let Connection {
        app, limits, phase, ..
    } = connection;
    let handback = Arc::new(Handback::default());
    let answer = Mutex::new(answer);
    // In an `Arc`, so the service is `Unpin` (hyper's connection then is, and gives its parts
    // back) whatever the listener's address type.
    let peer = Arc::new(peer);
    let service = {
        let handback = handback.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let answer = answer.lock().unwrap_or_else(PoisonError::into_inner).take();
            let handback = head::may_stream(&request).then(|| handback.clone());
            let mut app = app.clone();
            let peer = peer.clone();
            async move {
                if let Some(answer) = answer {
                    return Ok::<_, Infallible>(answer);
                }
                let version = request.version();
                let mut request = request.map(Body::new);
                request
                    .extensions_mut()
                    .insert(ConnectInfo((*peer).clone()));
                let Ok(response) = app.call(request).await;
                match handback {
                    Some(handback) if head::is_stream(&response) => {
                        let stream = Stream::of(version, response);
                        *handback
                            .stream
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(stream);
                        // Hyper never answers this request: its connection is taken from it
                        // (see `Served`), and this future dropped with it.
                        std::future::pending().await
                    }
                    _ => Ok(response),
                }
            }
        })
    };
    let io = TokioIo::new(Rewound {
        read,
        io,
        handback: handback.clone(),
    });
    // HTTP/2 with prior knowledge goes to hyper-util's builder, which speaks both versions
    // when axum's `http2` feature is on (hyper bounds its header list to 16 KiB). HTTP/1 goes
    // to hyper's own, which holds later heads to the same bounds as `serve`'s own reading.
    if io.inner().read.starts_with(b"PRI * HTTP/2.0\r\n") {
        let builder = auto::Builder::new(TokioExecutor::new());
        let served = std::pin::pin!(builder.serve_connection_with_upgrades(io, service));
        let result = until_drained(served, &phase, |served| served.graceful_shutdown()).await;
        if let Err(error) = result {
            tracing::trace!(%error, "connection ended with an error");
        }
        return None;
    }
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_head_bytes);
    let mut served = Served {
        connection: builder.serve_connection(io, service).with_upgrades(),
        handback,
    };
    match until_drained(Pin::new(&mut served), &phase, |served| {
        Pin::new(&mut served.get_mut().connection).graceful_shutdown()
    })
    .await
    {
        Ok(Some(stream)) => handed_back(served.connection, stream),
        Ok(None) => None,
        Err(error) => {
            tracing::trace!(%error, "connection ended with an error");
            None
        }
    }
}

/// Hyper's HTTP/1 connection, until it ends or the app answers a stream (`Some`), once hyper
/// flushed what it wrote before.
struct Served<Connection> {
    connection: Connection,
    handback: Arc<Handback>,
}

impl<Connection> Future for Served<Connection>
where
    Connection: Future<Output = hyper::Result<()>> + Unpin,
{
    type Output = hyper::Result<Option<Stream>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(result) = Pin::new(&mut this.connection).poll(cx) {
            return Poll::Ready(result.map(|()| None));
        }
        // The service hands a stream over while hyper polls it; hyper then flushes, in the same
        // poll, unless the socket is full (and hyper will be woken when it is not).
        if this.handback.unflushed.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let stream = this
            .handback
            .stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match stream {
            Some(stream) => Poll::Ready(Ok(Some(stream))),
            None => Poll::Pending,
        }
    }
}

/// The socket of `connection`, taken back from hyper for `stream`; `None` if the client sent
/// more after the stream's request (a stream's connection carries nothing more).
fn handed_back<Io, Service>(
    connection: http1::UpgradeableConnection<TokioIo<Rewound<Io>>, Service>,
    stream: Stream,
) -> Option<(Io, Stream)>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Service: hyper::service::HttpService<hyper::body::Incoming, ResBody = Body>,
{
    let parts = connection.into_parts()?;
    let rewound = parts.io.into_inner();
    if !parts.read_buf.is_empty() || !rewound.read.is_empty() {
        tracing::debug!("client sent more after asking for a stream: closed");
        return None;
    }
    Some((rewound.io, stream))
}

/// Awaits `served`, shutting it down gracefully when the server drains: it ends after the
/// request under way, if any.
async fn until_drained<Served: Future>(
    mut served: Pin<&mut Served>,
    phase: &watch::Receiver<Phase>,
    graceful_shutdown: impl FnOnce(Pin<&mut Served>),
) -> Served::Output {
    tokio::select! {
        // Hyper first: once it has read the request `serve` read, a shutdown lets that request
        // finish; before, hyper-util's builder, still telling HTTP/2 from HTTP/1, would drop
        // the connection.
        biased;
        output = served.as_mut() => output,
        () = Phase::Draining.reached(phase) => {
            graceful_shutdown(served.as_mut());
            served.await
        }
    }
}

/// A connection whose first bytes were read already, and are read again; it tells whether
/// what hyper wrote is flushed.
struct Rewound<Io> {
    read: Bytes,
    io: Io,
    handback: Arc<Handback>,
}

impl<Io> Rewound<Io> {
    fn wrote(&self) {
        self.handback.unflushed.store(true, Ordering::Relaxed);
    }
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
        self.wrote();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Hyper flushes the socket once its own buffer is empty: then all it wrote is out.
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.handback.unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_rewound_connection_reads_what_was_read_first() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut rewound = Rewound {
            read: Bytes::from_static(b"GET / HTTP/1.1\r\n"),
            io: near,
            handback: Arc::default(),
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
