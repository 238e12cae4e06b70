//! The threads that write open streams.
//!
//! Open streams are written by a runtime of their own, one thread per core, not by the tasks of
//! the runtime that serves requests. A publish wakes every stream of its group at once: written
//! by the tasks that serve requests, thousands of writes would queue in front of the next
//! request, the next publish among them. Here requests are served while streams are written,
//! and each write carries what was published meanwhile (see `BENCHMARKS.md`, "Writer threads").

use std::{any::Any, future::Future, io, sync::OnceLock};

#[cfg(unix)]
use tokio::net::UnixStream;
use tokio::{
    net::TcpStream,
    runtime::{Builder, Runtime},
};

/// A socket moved to the writers.
pub(super) enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

/// The writers' runtime, shared by every server of the process.
#[derive(Clone, Copy)]
pub(super) struct Writers(&'static Runtime);

impl Writers {
    /// The writer threads, started by the first stream; `None` if they could not be started
    /// (then streams are written where they are served).
    pub(super) fn get() -> Option<Self> {
        static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| {
                // As many threads as cores, or as `TOKIO_WORKER_THREADS` says.
                Builder::new_multi_thread()
                    .thread_name("sse-writer")
                    .enable_all()
                    .build()
                    .inspect_err(|error| {
                        tracing::warn!(%error, "writer threads not started: streams are written by the server's runtime");
                    })
                    .ok()
            })
            .as_ref()
            .map(Writers)
    }

    /// Takes the socket out of `io` when it is a TCP or a Unix socket, and makes it a socket of
    /// the writers; leaves any other kind in `io`. The error is the socket's, lost with it.
    pub(super) fn adopt<Io: 'static>(self, io: &mut Option<Io>) -> Option<io::Result<Socket>> {
        let io = io as &mut dyn Any;
        let _writers = self.0.enter();
        if let Some(tcp) = moved(io, TcpStream::into_std, TcpStream::from_std) {
            return Some(tcp.map(Socket::Tcp));
        }
        #[cfg(unix)]
        if let Some(unix) = moved(io, UnixStream::into_std, UnixStream::from_std) {
            return Some(unix.map(Socket::Unix));
        }
        None
    }

    /// Runs `write` (a stream of a socket from [`adopt`](Self::adopt)) on the writer threads.
    pub(super) fn spawn(self, write: impl Future<Output = ()> + Send + 'static) {
        self.0.spawn(write);
    }
}

/// The socket in `io`, if it is an `S`, out of its runtime (`into_std`) and into the current one
/// (`from_std`).
fn moved<S: 'static, Std>(
    io: &mut dyn Any,
    into_std: fn(S) -> io::Result<Std>,
    from_std: fn(Std) -> io::Result<S>,
) -> Option<io::Result<S>> {
    let socket = io.downcast_mut::<Option<S>>()?.take()?;
    Some(into_std(socket).and_then(from_std))
}
