//! A group's members, and how a publish wakes them: each subscriber's position in the group is
//! an atomic it alone writes, which the publish that overflows it reads to cut it; a subscriber
//! that has not read since it was last woken is not woken again.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Instant,
};

use futures_util::task::AtomicWaker;
use slab::Slab;

use crate::one_or_many::OneOrMany;

/// Who a group wakes when it receives an event.
#[derive(Default)]
pub(super) struct Members {
    pub(super) slab: Slab<Member>,
    /// No member's position is below it (positions only grow): while every member is within
    /// the queue bound of it, a publish cuts nobody and need not read their positions.
    pub(super) lowest: u64,
    pub(super) idle_since: Option<Instant>,
}

/// A subscriber, as one of its groups knows it: its waiter, and which of its positions is here.
pub(super) struct Member {
    pub(super) waiter: Arc<Waiter>,
    pub(super) index: usize,
}

/// What a subscriber's task and the groups it listens to share.
pub(super) struct Waiter {
    pub(super) waker: AtomicWaker,
    /// Set by the publish that wakes it, cleared by its read: the publishes before that read
    /// need not wake it again (a wake writes to a line its reader shares).
    pub(super) woken: AtomicBool,
    /// Set once the stream stops counting as open: cut for lagging, or gone.
    pub(super) done: AtomicBool,
    /// Set when the server closes the stream ([`CloseHandle`],
    /// [`Registry::close_group`](super::Registry::close_group)).
    pub(super) closed: AtomicBool,
    /// In each of its groups, the position of the next event it reads.
    pub(super) positions: OneOrMany<AtomicU64>,
}

impl Members {
    /// After a publish stored its event, with the ring now holding the positions from `first`
    /// to `head`: cuts (removes) the members more than `queue` events behind `head`, and wakes
    /// the others if `wake` (else their wake is put off: see `Ring::wake`). Returns how many
    /// streams it cut that were still open, and when the group was left without members, if
    /// this left it so.
    ///
    /// The publish fences before it takes the members' lock, pairing with the fence of
    /// `Reader::poll_read`.
    pub(super) fn wake_or_cut(
        &mut self,
        first: u64,
        head: u64,
        queue: u64,
        wake: bool,
    ) -> (usize, Option<Instant>) {
        let (mut removed, mut cut) = (0, 0);
        if self.lowest >= first && head.saturating_sub(self.lowest) <= queue {
            if wake {
                for (_, member) in &self.slab {
                    member.waiter.wake();
                }
            }
        } else {
            let mut lowest = u64::MAX;
            self.slab.retain(|_, member| {
                let pos = member.waiter.positions[member.index].load(Relaxed);
                // Later publishes may have grown the ring since `head`, and the subscriber may
                // have read them already: it is then ahead, not behind.
                let keep = pos >= first && head.saturating_sub(pos) <= queue;
                if keep {
                    lowest = lowest.min(pos);
                    if wake {
                        member.waiter.wake();
                    }
                } else {
                    removed += 1;
                    // It may have been cut by another of its groups already.
                    cut += usize::from(member.waiter.finish());
                    member.waiter.waker.wake();
                }
                keep
            });
            self.lowest = lowest;
        }
        let idle_since =
            (removed > 0 && self.slab.is_empty() && self.idle_since.is_none()).then(Instant::now);
        if idle_since.is_some() {
            self.idle_since = idle_since;
        }
        (cut, idle_since)
    }
}

impl Waiter {
    /// A waiter for a subscriber of `groups` groups, at position 0 in each.
    pub(super) fn new(groups: usize) -> Self {
        Self {
            waker: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            done: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            positions: (0..groups).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Wakes its task, unless an earlier publish did and the task has not read since.
    fn wake(&self) {
        if !self.woken.load(Relaxed) {
            self.woken.store(true, Relaxed);
            self.waker.wake();
        }
    }

    /// Marks the stream as no longer open; `true` for the one caller that did it first.
    pub(super) fn finish(&self) -> bool {
        !self.done.swap(true, Relaxed)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Relaxed);
        self.waker.wake();
    }
}

/// Ends one stream from outside its task: its next read is
/// [`Read::Closed`](super::Read::Closed).
pub(crate) struct CloseHandle(pub(super) Arc<Waiter>);

impl CloseHandle {
    pub(crate) fn close(&self) {
        self.0.close();
    }
}
