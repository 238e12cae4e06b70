//! A stream's head, then its body, moved to its socket as it comes.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::body::Body;
use bytes::{Buf, Bytes};
use http_body::Body as _;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

use super::{phase::Closing, Stream};

/// Moves a stream's body to its socket until either ends, or the server closes its streams.
///
/// It is the whole of what serves an open stream: a tokio task's, or a writer thread's slot.
pub(super) struct Pump<Io> {
    io: Io,
    body: Body,
    /// What the body gave that the socket has not taken yet.
    unsent: Bytes,
    /// Everything written was flushed: on a buffering transport (TLS), written is not sent.
    flushed: bool,
    /// The body ended: once `unsent` is written, the connection closes.
    ended: bool,
    /// Running while the socket takes nothing.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Polled first: once the server is gone (its runtime shutting down, say), the body is not
    /// polled again, as it may use that runtime's timers from the writer threads. Declared last,
    /// so dropped last: the server counts a stream ended only once its body is dropped, and with
    /// it the subscription whose close the hooks and webhooks hear.
    closing: Closing,
}

impl<Io> Pump<Io> {
    pub(super) fn new(io: Io, stream: Stream, closing: Closing) -> Self {
        Pump {
            io,
            body: stream.body,
            unsent: stream.head,
            flushed: false,
            ended: false,
            stalled: None,
            closing,
        }
    }

    /// The socket, for a writer thread to register it with its poll before its first poll.
    pub(super) fn io_mut(&mut self) -> &mut Io {
        &mut self.io
    }
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
        let timeout = self.closing.stall_timeout();
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
        if this.closing.poll(cx).is_ready() {
            tracing::debug!("stream closed: the shutdown timeout passed, or the server is gone");
            return Poll::Ready(());
        }
        if this.client_left(cx) {
            return Poll::Ready(());
        }
        loop {
            if !this.unsent.is_empty() {
                match Pin::new(&mut this.io).poll_write(cx, &this.unsent) {
                    Poll::Ready(Ok(written)) if written > 0 => {
                        this.unsent.advance(written);
                        if this.unsent.is_empty() {
                            // Written whole: its buffer goes now, not when the next chunk
                            // comes, which for an idle stream is hours away.
                            this.unsent = Bytes::new();
                        }
                        this.flushed = false;
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
                // Nothing more for now: what was written goes out before the task sleeps.
                Poll::Pending if this.flushed => return Poll::Pending,
                Poll::Pending => match Pin::new(&mut this.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        this.flushed = true;
                        this.stalled = None;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return this.poll_stall(cx),
                },
            }
        }
    }
}
