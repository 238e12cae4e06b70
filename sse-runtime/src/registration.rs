//! Which waker a future holds: a future polled at every wake of a busy task need only be polled
//! again when it may be ready, or when the task's waker changed.
//!
//! An open stream polls its keep-alive timer each time it is woken, once per delivery, and a
//! connection its server's phase watch at each of its wakes. Polling either registers the waker
//! again, which takes a lock or an atomic write each time; until they fire they keep the waker
//! they took, so the stream or connection checks whether they fired (an atomic read) and polls
//! them only then.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

/// The waker a future took when it was last polled, if it took one.
#[derive(Default)]
pub(crate) struct Registration(Option<Waker>);

impl Registration {
    /// Whether the future holds `cx`'s waker: then it wakes the task when it fires.
    pub(crate) fn holds(&self, cx: &Context<'_>) -> bool {
        (self.0.as_ref()).is_some_and(|waker| waker.will_wake(cx.waker()))
    }

    /// Polls `future`, and remembers `cx`'s waker if it took it.
    pub(crate) fn poll<F: Future + ?Sized>(
        &mut self,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        // Out of budget, tokio's futures answer without registering (and wake the task at once).
        let registers = tokio::task::coop::has_budget_remaining();
        let poll = future.poll(cx);
        self.0 = (poll.is_pending() && registers).then(|| cx.waker().clone());
        poll
    }

    /// The future was reset, and holds no waker until it is polled again.
    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }
}
