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
    broker::CatchUp,
    event,
    registry::{Next, Subscription},
};

/// The body of an open stream. It never ends by itself: only when the client leaves (the body is
/// dropped), falls too far behind, or the hub shuts down.
pub(crate) struct EventStream {
    /// Sent first: the `retry:` hint, and a `stream-reset` if the client could not be resumed.
    start: Option<Bytes>,
    /// Then, when the client resumes from an id only the broker's shared history covers, the
    /// events it missed; live events wait in the subscription meanwhile.
    catch_up: Option<CatchUp>,
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
        catch_up: Option<CatchUp>,
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
            catch_up,
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

    /// Nothing to send: a keep-alive comment if one is due.
    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Chunk> {
        let Some(keep_alive) = &mut self.keep_alive else {
            return Poll::Pending;
        };
        if keep_alive.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sent_something();
        chunk(Bytes::from_static(event::KEEP_ALIVE))
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
        if let Some(catch_up) = &mut this.catch_up {
            match catch_up.as_mut().poll(cx) {
                Poll::Pending => return this.poll_keep_alive(cx),
                Poll::Ready(Ok(caught_up)) => {
                    this.catch_up = None;
                    this.subscription
                        .caught_up(caught_up.through, caught_up.events);
                    if !caught_up.replay.is_empty() {
                        this.sent_something();
                        return chunk(caught_up.replay);
                    }
                }
                Poll::Ready(Err(error)) => {
                    // Ending with a retry hint brings the client back with the same
                    // `Last-Event-ID`, to try again, rather than losing its place.
                    tracing::warn!(%error, "missed events unavailable: stream ended, client will retry");
                    this.ended = true;
                    return chunk(event::retry_hint(this.shutdown_retry));
                }
            }
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
            Poll::Pending => this.poll_keep_alive(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;

    use super::*;
    use crate::{
        axum::Resume, broker::Memory, event::Draft, registry::Registry, Config, GroupName,
    };

    fn open(config: Config) -> (Arc<Registry>, EventStream) {
        let registry = Arc::new(Registry::new(config.clone(), Box::new(Memory)));
        let group = GroupName::new("g").unwrap();
        let (subscription, _) = registry.subscribe(&[group], Resume::None).unwrap();
        let start = Some(Bytes::from_static(b"retry: 3000\n\n"));
        let stream = EventStream::new(
            start,
            None,
            subscription,
            config.keep_alive,
            config.shutdown_retry,
        );
        (registry, stream)
    }

    fn publish(registry: &Registry, data: &str) -> u64 {
        let draft = Draft::new(Some("e"), data, 1 << 20).unwrap();
        registry.publish("g", draft).unwrap().get()
    }

    /// The next chunk of the body as text; `None` once it ended.
    async fn next(stream: &mut EventStream) -> Option<String> {
        let frame = stream.frame().await?.unwrap();
        Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn starts_with_the_start_bytes_then_keeps_alive_when_idle() {
        let (_registry, mut stream) = open(Config::default());
        assert_eq!(next(&mut stream).await.unwrap(), "retry: 3000\n\n");
        assert_eq!(next(&mut stream).await.unwrap(), ":\n\n");
        assert_eq!(next(&mut stream).await.unwrap(), ":\n\n");
    }

    #[tokio::test(start_paused = true)]
    async fn no_keep_alive_when_turned_off() {
        let (registry, mut stream) = open(Config::default().keep_alive(None));
        assert_eq!(next(&mut stream).await.unwrap(), "retry: 3000\n\n");
        tokio::time::advance(Duration::from_secs(3600)).await;
        let id = publish(&registry, "after an hour");
        assert_eq!(
            next(&mut stream).await.unwrap(),
            format!("event: e\ndata: after an hour\nid: {id}\n\n")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pending_events_are_written_in_one_chunk_in_order() {
        let (registry, mut stream) = open(Config::default());
        next(&mut stream).await;
        let a = publish(&registry, "a");
        let b = publish(&registry, "b");
        assert_eq!(
            next(&mut stream).await.unwrap(),
            format!("event: e\ndata: a\nid: {a}\n\nevent: e\ndata: b\nid: {b}\n\n")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_ends_the_stream_with_a_comment() {
        let (registry, mut stream) = open(Config::default().subscriber_queue(2));
        next(&mut stream).await;
        for _ in 0..3 {
            publish(&registry, "x");
        }
        assert_eq!(registry.open_streams(), 0, "cut by the publish");
        assert_eq!(
            next(&mut stream).await.unwrap(),
            ": too far behind, reconnect\n\n"
        );
        assert_eq!(next(&mut stream).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_stream_with_a_short_retry_hint() {
        let (registry, mut stream) = open(Config::default());
        next(&mut stream).await;
        registry.shut_down();
        assert_eq!(next(&mut stream).await.unwrap(), "retry: 500\n\n");
        assert_eq!(next(&mut stream).await, None);
    }
}
