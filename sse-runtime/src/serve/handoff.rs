//! The rest of a connection that is not a stream `serve` writes itself: hyper serves it, as
//! under `axum::serve`, starting with the bytes `serve` read already.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{Mutex, PoisonError},
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

use super::{Connection, Phase};

/// Serves the rest of a connection with hyper, starting with the bytes already `read`; the
/// first request gets `answer` if the app gave one already. Ends when the client leaves, or
/// after the request under way when the server drains.
pub(super) async fn serve<Io, Addr>(
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
        limits,
        mut phase,
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
    // HTTP/2 with prior knowledge goes to hyper-util's builder, which speaks both versions
    // when axum's `http2` feature is on (hyper bounds its header list to 16 KiB). HTTP/1 goes
    // to hyper's own, which holds later heads to the same bounds as `serve`'s own reading.
    let http2 = read.starts_with(b"PRI * HTTP/2.0\r\n");
    let io = TokioIo::new(Rewound { read, io });
    let result = if http2 {
        let builder = auto::Builder::new(TokioExecutor::new());
        let served = std::pin::pin!(builder.serve_connection_with_upgrades(io, service));
        until_drained(served, &mut phase, |served| served.graceful_shutdown()).await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_head_bytes);
        let served = std::pin::pin!(builder.serve_connection(io, service).with_upgrades());
        let result = until_drained(served, &mut phase, |served| served.graceful_shutdown()).await;
        result.map_err(Into::into)
    };
    if let Err(error) = result {
        tracing::trace!(%error, "connection ended with an error");
    }
}

/// Awaits `served`, shutting it down gracefully when the server drains: it ends after the
/// request under way, if any.
async fn until_drained<Served: Future>(
    mut served: Pin<&mut Served>,
    phase: &mut watch::Receiver<Phase>,
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

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
