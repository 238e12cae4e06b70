//! One connection's response body: the start of the stream, its events, keep-alives, its end.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::time::{Instant, Sleep};

use crate::{
    event,
    registry::{Next, Subscription},
};

/// The body of an open stream. It never ends by itself: only when the client leaves (the body is
/// dropped), falls too far behind, or the hub shuts down.
pub(crate) struct EventStream {
    /// Sent first: the `retry:` hint, and a `stream-reset` if the client could not be resumed.
    start: Option<Bytes>,
    subscription: Subscription,
    keep_alive: Option<KeepAlive>,
    shutdown_retry: Duration,
    ended: bool,
}

struct KeepAlive {
    every: Duration,
    timer: Pin<Box<Sleep>>,
}

impl EventStream {
    pub(crate) fn new(
        start: Option<Bytes>,
        subscription: Subscription,
        keep_alive: Option<Duration>,
        shutdown_retry: Duration,
    ) -> Self {
        let keep_alive = keep_alive.map(|every| KeepAlive {
            every,
            timer: Box::pin(tokio::time::sleep(every)),
        });
        Self {
            start,
            subscription,
            keep_alive,
            shutdown_retry,
            ended: false,
        }
    }

    fn sent_something(&mut self) {
        if let Some(keep_alive) = &mut self.keep_alive {
            let next = Instant::now() + keep_alive.every;
            keep_alive.timer.as_mut().reset(next);
        }
    }
}

type Chunk = Option<Result<Frame<Bytes>, Infallible>>;

fn chunk(bytes: impl Into<Bytes>) -> Poll<Chunk> {
    Poll::Ready(Some(Ok(Frame::data(bytes.into()))))
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Chunk> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(start) = this.start.take() {
            this.sent_something();
            return chunk(start);
        }
        match this.subscription.poll_next(cx) {
            Poll::Ready(Next::Events(bytes)) => {
                this.sent_something();
                chunk(bytes)
            }
            Poll::Ready(Next::Overflow) => {
                tracing::debug!("subscriber fell too far behind: stream cut, it will resume");
                this.ended = true;
                chunk(Bytes::from_static(b": too far behind, reconnect\n\n"))
            }
            Poll::Ready(Next::ShutDown) => {
                this.ended = true;
                chunk(event::retry_hint(this.shutdown_retry))
            }
            Poll::Pending => {
                let Some(keep_alive) = &mut this.keep_alive else {
                    return Poll::Pending;
                };
                if keep_alive.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sent_something();
                chunk(Bytes::from_static(event::KEEP_ALIVE))
            }
        }
    }
}
