//! Where a server is in its life, which every connection and stream watches.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::watch;

use crate::registration::Registration;

/// Where the server is in its life.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Phase {
    Serving,
    /// The shutdown signal came: requests under way finish, nothing new starts.
    Draining,
    /// The shutdown timeout passed: every connection closes now.
    Closing,
}

impl Phase {
    /// Waits until the server `watched` is at this phase or past it, or gone (its future was
    /// dropped: as good as closing).
    pub(super) async fn reached(self, watched: &mut watch::Receiver<Phase>) {
        let _ = watched.wait_for(|now| *now >= self).await;
    }
}

/// Resolves once the server is closing, or gone: what an open stream waits for besides its
/// events. It is polled at every wake of its stream, so it looks at the phase only when the
/// phase changed or its waker did. (Waiting on a `watch` locks the list of its waiters at every
/// poll, and all the streams of a server share that list: one lock for every delivery.)
pub(super) struct Closing {
    reached: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Tells, without a lock, whether the phase changed since `reached` was last polled.
    probe: watch::Receiver<Phase>,
    /// The waker `reached` holds, and wakes when the phase changes.
    registration: Registration,
}

impl Closing {
    pub(super) fn new(mut phase: watch::Receiver<Phase>) -> Self {
        Closing {
            probe: phase.clone(),
            reached: Box::pin(async move { Phase::Closing.reached(&mut phase).await }),
            registration: Registration::default(),
        }
    }
}

impl Future for Closing {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let unchanged = matches!(this.probe.has_changed(), Ok(false));
        if unchanged && this.registration.holds(cx) {
            return Poll::Pending;
        }
        // Marked seen before looking: a change from here on shows at the next poll.
        this.probe.mark_unchanged();
        this.registration.poll(this.reached.as_mut(), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_closes_when_the_server_closes_or_is_gone_and_not_before() {
        let (phase, receiver) = watch::channel(Phase::Serving);
        let mut closing = std::pin::pin!(Closing::new(receiver.clone()));
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(closing.as_mut().poll(&mut cx).is_pending());
        phase.send_replace(Phase::Draining);
        assert!(closing.as_mut().poll(&mut cx).is_pending(), "draining");
        phase.send_replace(Phase::Closing);
        assert!(closing.as_mut().poll(&mut cx).is_ready());

        let mut gone = std::pin::pin!(Closing::new(receiver));
        assert!(gone.as_mut().poll(&mut cx).is_ready(), "closing already");
        let (phase, receiver) = watch::channel(Phase::Serving);
        let mut gone = std::pin::pin!(Closing::new(receiver));
        assert!(gone.as_mut().poll(&mut cx).is_pending());
        drop(phase);
        assert!(gone.as_mut().poll(&mut cx).is_ready(), "the server is gone");
    }

    #[tokio::test]
    async fn a_waiting_stream_is_woken_when_the_server_closes() {
        let (phase, receiver) = watch::channel(Phase::Serving);
        let waiting = tokio::spawn(Closing::new(receiver));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits");
        phase.send_replace(Phase::Closing);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
    }
}
