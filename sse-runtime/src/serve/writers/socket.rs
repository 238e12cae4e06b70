//! A stream's socket on a writer thread: a non-blocking TCP or Unix socket read and written as
//! tokio's `AsyncRead` and `AsyncWrite`, so that the pump that serves other transports serves it.

use std::{
    any::Any,
    io::{self, Read, Write},
    net::Shutdown,
    pin::Pin,
    task::{Context, Poll},
};

use mio::{Interest, Registry, Token};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket moved to the writer threads.
///
/// It registers no waker: when it would block, the readiness event of its token, registered
/// once with its thread's poll, polls its stream again.
pub(in crate::serve) struct Socket {
    stream: Stream,
    /// A read may find something: cleared when one would block, set again by the socket's
    /// next readiness event. A stream looks for its client leaving at every poll, and this
    /// spares it a read that finds nothing each time (as tokio's readiness does).
    readable: bool,
}

enum Stream {
    Tcp(mio::net::TcpStream),
    #[cfg(unix)]
    Unix(mio::net::UnixStream),
}

impl Stream {
    fn adopt<Io: 'static>(io: &mut Option<Io>) -> Option<io::Result<Self>> {
        let io = io as &mut dyn Any;
        if let Some(tcp) = taken(io, tokio::net::TcpStream::into_std) {
            return Some(tcp.map(|tcp| Stream::Tcp(mio::net::TcpStream::from_std(tcp))));
        }
        #[cfg(unix)]
        if let Some(unix) = taken(io, tokio::net::UnixStream::into_std) {
            return Some(unix.map(|unix| Stream::Unix(mio::net::UnixStream::from_std(unix))));
        }
        None
    }
}

impl Socket {
    /// Takes the socket out of `io` when it is a tokio TCP or Unix socket, out of its runtime;
    /// leaves any other kind in `io`. The error is the socket's, lost with it.
    pub(in crate::serve) fn adopt<Io: 'static>(io: &mut Option<Io>) -> Option<io::Result<Self>> {
        let stream = Stream::adopt(io)?;
        Some(stream.map(|stream| Socket {
            stream,
            readable: true,
        }))
    }

    /// Registers the socket with a writer thread's poll under `token`, for both directions:
    /// a client leaving is read, a full socket waits to be writable.
    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match &mut self.stream {
            Stream::Tcp(tcp) => registry.register(tcp, token, interest),
            #[cfg(unix)]
            Stream::Unix(unix) => registry.register(unix, token, interest),
        }
    }

    /// The socket's token had an event: a read may find something again.
    pub(super) fn stirred(&mut self) {
        self.readable = true;
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Tcp(tcp) => tcp.read(buf),
            #[cfg(unix)]
            Stream::Unix(unix) => unix.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Tcp(tcp) => tcp.write(buf),
            #[cfg(unix)]
            Stream::Unix(unix) => unix.write(buf),
        }
    }

    fn shutdown(&self) -> io::Result<()> {
        match &self.stream {
            Stream::Tcp(tcp) => tcp.shutdown(Shutdown::Write),
            #[cfg(unix)]
            Stream::Unix(unix) => unix.shutdown(Shutdown::Write),
        }
    }
}

/// The socket in `io`, if it is an `S`, taken out of its runtime.
fn taken<S: 'static, Std>(
    io: &mut dyn Any,
    into_std: fn(S) -> io::Result<Std>,
) -> Option<io::Result<Std>> {
    let socket = io.downcast_mut::<Option<S>>()?.take()?;
    Some(into_std(socket))
}

/// `op` retried if a signal interrupted it; `Pending` when the socket would block.
fn non_blocking<T>(mut op: impl FnMut() -> io::Result<T>) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            done => return Poll::Ready(done),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.readable {
            return Poll::Pending;
        }
        match non_blocking(|| this.read(buf.initialize_unfilled())) {
            Poll::Ready(read) => {
                buf.advance(read?);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.readable = false;
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        non_blocking(|| this.write(buf))
    }

    /// Nothing to flush: what is written is the kernel's.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        non_blocking(|| self.shutdown())
    }
}
