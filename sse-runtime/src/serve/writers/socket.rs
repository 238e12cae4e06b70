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
pub(in crate::serve) enum Socket {
    Tcp(mio::net::TcpStream),
    #[cfg(unix)]
    Unix(mio::net::UnixStream),
}

impl Socket {
    /// Takes the socket out of `io` when it is a tokio TCP or Unix socket, out of its runtime;
    /// leaves any other kind in `io`. The error is the socket's, lost with it.
    pub(in crate::serve) fn adopt<Io: 'static>(io: &mut Option<Io>) -> Option<io::Result<Self>> {
        let io = io as &mut dyn Any;
        if let Some(tcp) = taken(io, tokio::net::TcpStream::into_std) {
            return Some(tcp.map(|tcp| Socket::Tcp(mio::net::TcpStream::from_std(tcp))));
        }
        #[cfg(unix)]
        if let Some(unix) = taken(io, tokio::net::UnixStream::into_std) {
            return Some(unix.map(|unix| Socket::Unix(mio::net::UnixStream::from_std(unix))));
        }
        None
    }

    /// Registers the socket with a writer thread's poll under `token`, for both directions:
    /// a client leaving is read, a full socket waits to be writable.
    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Socket::Tcp(tcp) => registry.register(tcp, token, interest),
            #[cfg(unix)]
            Socket::Unix(unix) => registry.register(unix, token, interest),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(tcp) => tcp.read(buf),
            #[cfg(unix)]
            Socket::Unix(unix) => unix.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(tcp) => tcp.write(buf),
            #[cfg(unix)]
            Socket::Unix(unix) => unix.write(buf),
        }
    }

    fn shutdown(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(tcp) => tcp.shutdown(Shutdown::Write),
            #[cfg(unix)]
            Socket::Unix(unix) => unix.shutdown(Shutdown::Write),
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
        let read = std::task::ready!(non_blocking(|| this.read(buf.initialize_unfilled())))?;
        buf.advance(read);
        Poll::Ready(Ok(()))
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
