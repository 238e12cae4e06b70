//! What other threads hand a writer thread: new streams, and wakes of the streams it writes.
//!
//! A stream's waker is a pointer to its slot's [`WakeCell`], which lives as long as the process:
//! cloning and dropping it cost nothing and allocate nothing, and waking it queues the slot in
//! its thread's inbox. A waker kept past its stream's end wakes the slot's next stream, which is
//! polled once for nothing.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    task::{RawWaker, RawWakerVTable, Waker},
};

use mio::{Registry, Token};

use super::{super::pump::Pump, socket::Socket};

/// A writer thread's inbox, shared with every thread that hands it streams or wakes them.
pub(super) struct Inbox {
    queued: Mutex<Queued>,
    /// Wakes the thread from its poll.
    waker: mio::Waker,
}

/// What waits for the thread's next turn.
#[derive(Default)]
pub(super) struct Queued {
    /// Streams handed to the thread, not in a slot yet.
    pub(super) streams: Vec<Pump<Socket>>,
    /// Slots whose stream was woken.
    pub(super) woken: Vec<u32>,
    /// The thread waits on its poll, or is about to, with nothing queued: the next to queue
    /// something wakes it. While it works, queuing costs no system call.
    asleep: bool,
}

impl Inbox {
    /// The inbox of the thread that polls `registry`, whose poll `token` wakes.
    pub(super) fn new(registry: &Registry, token: Token) -> std::io::Result<Self> {
        Ok(Inbox {
            queued: Mutex::default(),
            waker: mio::Waker::new(registry, token)?,
        })
    }

    /// Hands `stream` to the thread.
    pub(super) fn hand_over(&self, stream: Pump<Socket>) {
        self.queue(|queued| queued.streams.push(stream));
    }

    /// Takes what waits into `taken` (left empty by its last use), so that its vectors' room is
    /// reused from turn to turn. The thread is awake.
    pub(super) fn take(&self, taken: &mut Queued) {
        let mut queued = self.queued();
        std::mem::swap(&mut queued.streams, &mut taken.streams);
        std::mem::swap(&mut queued.woken, &mut taken.woken);
        queued.asleep = false;
    }

    /// Whether the thread may wait on its poll until woken: nothing waits for it, and what is
    /// queued from now on wakes it.
    pub(super) fn sleep(&self) -> bool {
        let mut queued = self.queued();
        queued.asleep = queued.streams.is_empty() && queued.woken.is_empty();
        queued.asleep
    }

    fn queue(&self, push: impl FnOnce(&mut Queued)) {
        let mut queued = self.queued();
        push(&mut queued);
        let wake = std::mem::take(&mut queued.asleep);
        drop(queued);
        if wake {
            if let Err(error) = self.waker.wake() {
                tracing::warn!(%error, "a writer thread could not be woken");
            }
        }
    }

    fn queued(&self) -> MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A slot's waker, the same for every stream the slot holds.
pub(super) struct WakeCell {
    inbox: &'static Inbox,
    slot: u32,
    /// In the inbox, or in the thread's current turn, and not polled since.
    queued: AtomicBool,
}

impl WakeCell {
    pub(super) fn new(inbox: &'static Inbox, slot: u32) -> Self {
        WakeCell {
            inbox,
            slot,
            queued: AtomicBool::new(false),
        }
    }

    /// The waker of the slot's streams.
    pub(super) fn waker(&'static self) -> Waker {
        let data = (self as *const WakeCell).cast::<()>();
        // SAFETY: `data` points to a `WakeCell` that lives as long as the process and is `Sync`;
        // the vtable's functions only read it through a shared reference, and `clone` hands out
        // the same pointer, so every contract of `RawWaker` holds.
        unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
    }

    /// Marks the slot queued by its own thread: `true` if it was not yet, and is to be polled
    /// this turn.
    pub(super) fn queue(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// Marks the slot as about to be polled: a wake from here on queues it again. (Read and
    /// written as one, with `wake`'s, so the poll sees what was done before any wake it missed.)
    pub(super) fn unqueue(&self) {
        self.queued.swap(false, Ordering::AcqRel);
    }

    fn wake(&self) {
        if self.queue() {
            let slot = self.slot;
            self.inbox.queue(|queued| queued.woken.push(slot));
        }
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake, drop_waker);

// SAFETY (the four functions): `data` is a `WakeCell::waker`'s, a pointer to a `WakeCell` that
// lives as long as the process.
unsafe fn clone_waker(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: see above.
    unsafe { &*data.cast::<WakeCell>() }.wake();
}

unsafe fn drop_waker(_: *const ()) {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Events, Poll};

    use super::*;

    /// Whether `poll` has an event now.
    fn stirred(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        !events.is_empty()
    }

    #[test]
    fn a_slot_is_queued_once_until_polled_and_its_thread_woken_only_when_asleep() {
        let mut poll = Poll::new().unwrap();
        let inbox: &'static Inbox =
            Box::leak(Box::new(Inbox::new(poll.registry(), Token(0)).unwrap()));
        let cell: &'static WakeCell = Box::leak(Box::new(WakeCell::new(inbox, 7)));
        let waker = cell.waker();
        assert!(waker.will_wake(&waker.clone()), "one waker for the slot");

        assert!(inbox.sleep(), "nothing queued");
        waker.wake_by_ref();
        let twin = waker.clone();
        twin.wake();
        assert!(stirred(&mut poll), "asleep: woken");
        let mut taken = Queued::default();
        inbox.take(&mut taken);
        assert_eq!(taken.woken, [7], "queued once");

        taken.woken.clear();
        cell.unqueue();
        waker.wake_by_ref();
        assert!(!stirred(&mut poll), "awake: not woken");
        assert!(!inbox.sleep(), "something queued");
        inbox.take(&mut taken);
        assert_eq!(taken.woken, [7], "queued again once polled");
    }
}
