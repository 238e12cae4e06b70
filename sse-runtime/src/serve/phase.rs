//! Where a server is in its life, which every connection watches, and its open streams, which
//! it counts and closes.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use slab::Slab;
use tokio::sync::{watch, Notify};

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

/// What [`Phase::reached`] returns. A connection polls it at every wake of its task besides
/// its own work, so it looks at the phase only when the phase changed or its waker did.
/// (Waiting on a `watch` locks the list of its waiters at every poll, and all the connections
/// of a server share that list.)
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

/// The streams a server writes: what they are held to, and how the server waits for them and
/// closes them all when its shutdown timeout passes or it is gone.
///
/// What a stream keeps of the server is here, once, and each stream holds only its place among
/// them ([`Closing`]): its waker, registered once, rather than a waiter of its own on the
/// phase's `watch` (a boxed future of 200 bytes with its allocation), a receiver of that
/// `watch` and its own copy of the limits. An idle stream is mostly such records, and a server
/// holds tens of thousands of them.
pub(super) struct Streams {
    /// How long a stream's client may take nothing while bytes wait for it.
    stall_timeout: Duration,
    closed: AtomicBool,
    /// The streams open now; `ended` is told when the last one ends.
    open: AtomicUsize,
    ended: Notify,
    wakers: Mutex<Slab<Waker>>,
}

impl Streams {
    pub(super) fn new(stall_timeout: Duration) -> Self {
        Streams {
            stall_timeout,
            closed: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            ended: Notify::new(),
            wakers: Mutex::default(),
        }
    }

    /// Closes every stream the server writes, and those it starts from now on.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers());
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Resolves once no stream is open.
    pub(super) async fn ended(&self) {
        loop {
            // Made before looking: an end from here on wakes it.
            let ended = self.ended.notified();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }

    /// The streams open now.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, Slab<Waker>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes [`Streams`] when dropped: a server's future that is dropped closes its streams, as
/// one that reached its shutdown timeout does.
pub(super) struct CloseOnDrop(pub(super) Arc<Streams>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One open stream's place among its server's [`Streams`]: it counts as open until dropped,
/// and tells the stream when to close.
pub(super) struct Closing {
    streams: Arc<Streams>,
    /// The stream's waker among the server's, once polled, and a copy to tell whether it
    /// changed without taking their lock.
    registered: Option<(usize, Waker)>,
}

impl Closing {
    pub(super) fn new(streams: Arc<Streams>) -> Self {
        streams.open.fetch_add(1, Ordering::AcqRel);
        Closing {
            streams,
            registered: None,
        }
    }

    /// How long the stream's client may take nothing while bytes wait for it.
    pub(super) fn stall_timeout(&self) -> Duration {
        self.streams.stall_timeout
    }

    /// Ready once the server closes its streams.
    pub(super) fn poll(&mut self, cx: &Context<'_>) -> Poll<()> {
        if self.streams.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &self.registered {
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let mut wakers = self.streams.wakers();
        // Again under the lock: `close` takes the wakers under it.
        if self.streams.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match &mut self.registered {
            Some((key, registered)) => {
                if let Some(kept) = wakers.get_mut(*key) {
                    kept.clone_from(&waker);
                }
                *registered = waker;
            }
            None => {
                let key = wakers.insert(waker.clone());
                self.registered = Some((key, waker));
            }
        }
        Poll::Pending
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            // Taken already if the server closed its streams.
            self.streams.wakers().try_remove(key);
        }
        if self.streams.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.streams.ended.notify_waiters();
        }
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
    async fn streams_close_together_and_the_server_sees_the_last_one_end() {
        let streams = Arc::new(Streams::new(Duration::from_secs(1)));
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let mut closing = Closing::new(streams.clone());
                tokio::spawn(std::future::poll_fn(move |cx| closing.poll(cx)))
            })
            .collect();
        let mut ended = std::pin::pin!(streams.ended());
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        tokio::task::yield_now().await;
        assert_eq!(streams.open(), 3);
        assert!(ended.as_mut().poll(&mut cx).is_pending(), "three are open");
        assert!(
            waiting.iter().all(|stream| !stream.is_finished()),
            "they wait"
        );
        streams.close();
        for stream in waiting {
            tokio::time::timeout(Duration::from_secs(5), stream)
                .await
                .expect("woken")
                .unwrap();
        }
        assert_eq!(streams.open(), 0);
        assert!(ended.as_mut().poll(&mut cx).is_ready());
        let mut late = Closing::new(streams.clone());
        assert!(late.poll(&cx).is_ready(), "closed before it started");
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
