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
    /// Resolves once the server `watched` is at this phase or past it, or gone (its future was
    /// dropped: as good as closing).
    pub(super) fn reached(self, watched: &watch::Receiver<Phase>) -> Reached {
        let mut waiting = watched.clone();
        Reached {
            probe: watched.clone(),
            wait: Box::pin(async move {
                let _ = waiting.wait_for(|now| *now >= self).await;
            }),
            registration: Registration::default(),
        }
    }
}

/// What [`Phase::reached`] returns. A connection or a stream polls it at every wake of its
/// task besides its own work, so it looks at the phase only when the phase changed or its
/// waker did. (Waiting on a `watch` locks the list of its waiters at every poll, and all the
/// connections and streams of a server share that list: for a stream, one lock for every
/// delivery.)
pub(super) struct Reached {
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Tells, without a lock, whether the phase changed since `wait` was last polled.
    probe: watch::Receiver<Phase>,
    /// The waker `wait` holds, and wakes when the phase changes.
    registration: Registration,
}

impl Future for Reached {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let unchanged = matches!(this.probe.has_changed(), Ok(false));
        if unchanged && this.registration.holds(cx) {
            return Poll::Pending;
        }
        // Marked seen before looking: a change from here on shows at the next poll.
        this.probe.mark_unchanged();
        this.registration.poll(this.wait.as_mut(), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_closes_when_the_server_closes_or_is_gone_and_not_before() {
        let (phase, receiver) = watch::channel(Phase::Serving);
        let mut closing = std::pin::pin!(Phase::Closing.reached(&receiver));
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(closing.as_mut().poll(&mut cx).is_pending());
        phase.send_replace(Phase::Draining);
        assert!(closing.as_mut().poll(&mut cx).is_pending(), "draining");
        phase.send_replace(Phase::Closing);
        assert!(closing.as_mut().poll(&mut cx).is_ready());

        let mut gone = std::pin::pin!(Phase::Closing.reached(&receiver));
        assert!(gone.as_mut().poll(&mut cx).is_ready(), "closing already");
        let (phase, receiver) = watch::channel(Phase::Serving);
        let mut gone = std::pin::pin!(Phase::Closing.reached(&receiver));
        assert!(gone.as_mut().poll(&mut cx).is_pending());
        drop(phase);
        assert!(gone.as_mut().poll(&mut cx).is_ready(), "the server is gone");
    }

    #[tokio::test]
    async fn a_waiting_stream_is_woken_when_the_server_closes() {
        let (phase, receiver) = watch::channel(Phase::Serving);
        let waiting = tokio::spawn(Phase::Closing.reached(&receiver));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits");
        phase.send_replace(Phase::Closing);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
    }
}
