//! How long publishes and reads wait for and hold the registry's locks, for the hub benchmark
//! (`sse-bench-hub`). Only with the `lock-timing` feature: without it, [`timed`] takes
//! the lock and hands its guard back as it is, so nothing is measured and nothing costs.

/// The locks a publish and a read take.
#[derive(Clone, Copy)]
pub(crate) enum Lock {
    /// A shard of the map of groups, to find a group.
    Shard,
    /// A group's ring, written by a publish.
    RingWrite,
    /// A group's ring, read by a subscriber.
    RingRead,
    /// A group's members, woken (or cut) by a publish.
    Members,
}

/// Takes a lock with `acquire`.
#[cfg(not(feature = "lock-timing"))]
#[inline(always)]
pub(crate) fn timed<G>(_: Lock, acquire: impl FnOnce() -> G) -> G {
    acquire()
}

#[cfg(feature = "lock-timing")]
pub(crate) use measured::timed;
#[cfg(feature = "lock-timing")]
pub use measured::{lock_totals, LockTotals};

#[cfg(feature = "lock-timing")]
mod measured {
    use std::{
        cell::Cell,
        ops::{Deref, DerefMut},
        sync::Mutex,
        time::Instant,
    };

    use super::Lock;

    const LOCKS: [Lock; 4] = [Lock::Shard, Lock::RingWrite, Lock::RingRead, Lock::Members];

    /// What the process spent on one lock: every acquisition by threads that have ended, and by
    /// the calling thread.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct LockTotals {
        /// Which lock: `shard`, `ring write`, `ring read` or `members`.
        pub lock: &'static str,
        /// How many times it was taken.
        pub taken: u64,
        /// Nanoseconds from asking for it to getting it.
        pub waited_ns: u64,
        /// Nanoseconds from getting it to letting it go.
        pub held_ns: u64,
    }

    /// One lock's counts.
    #[derive(Clone, Copy)]
    struct Count {
        taken: u64,
        waited_ns: u64,
        held_ns: u64,
    }

    const ZERO: Count = Count {
        taken: 0,
        waited_ns: 0,
        held_ns: 0,
    };

    impl Count {
        fn add(self, other: Count) -> Count {
            Count {
                taken: self.taken + other.taken,
                waited_ns: self.waited_ns + other.waited_ns,
                held_ns: self.held_ns + other.held_ns,
            }
        }
    }

    /// Per lock, in the order of `LOCKS`.
    type Counts = [Count; LOCKS.len()];

    /// Each thread counts for itself, so counting adds no cache line shared between cores;
    /// its counts join the process's when it ends.
    struct ThreadCounts(Cell<Counts>);

    impl Drop for ThreadCounts {
        fn drop(&mut self) {
            let mut ended = ENDED.lock().unwrap_or_else(|e| e.into_inner());
            *ended = sum(*ended, self.0.get());
        }
    }

    static ENDED: Mutex<Counts> = Mutex::new([ZERO; LOCKS.len()]);

    thread_local! {
        static MINE: ThreadCounts = const { ThreadCounts(Cell::new([ZERO; LOCKS.len()])) };
    }

    fn sum(a: Counts, b: Counts) -> Counts {
        std::array::from_fn(|lock| a[lock].add(b[lock]))
    }

    fn count(lock: Lock, waited_ns: u64, held_ns: u64) {
        MINE.with(|mine| {
            let mut counts = mine.0.get();
            let once = Count {
                taken: 1,
                waited_ns,
                held_ns,
            };
            counts[lock as usize] = counts[lock as usize].add(once);
            mine.0.set(counts);
        });
    }

    fn name(lock: Lock) -> &'static str {
        match lock {
            Lock::Shard => "shard",
            Lock::RingWrite => "ring write",
            Lock::RingRead => "ring read",
            Lock::Members => "members",
        }
    }

    /// Every lock's totals: those of the threads that ended, and the calling thread's.
    pub fn lock_totals() -> [LockTotals; LOCKS.len()] {
        let ended = *ENDED.lock().unwrap_or_else(|e| e.into_inner());
        let counts = sum(ended, MINE.with(|mine| mine.0.get()));
        LOCKS.map(|lock| {
            let Count {
                taken,
                waited_ns,
                held_ns,
            } = counts[lock as usize];
            LockTotals {
                lock: name(lock),
                taken,
                waited_ns,
                held_ns,
            }
        })
    }

    /// A lock's guard that counts, when it is let go, how long it was waited for and held.
    pub(crate) struct Timed<G> {
        guard: G,
        lock: Lock,
        waited: u64,
        since: Instant,
    }

    /// Takes a lock with `acquire`, timing the wait and, until the guard drops, the hold.
    pub(crate) fn timed<G>(lock: Lock, acquire: impl FnOnce() -> G) -> Timed<G> {
        let asked = Instant::now();
        let guard = acquire();
        let since = Instant::now();
        let waited = since.duration_since(asked).as_nanos() as u64;
        Timed {
            guard,
            lock,
            waited,
            since,
        }
    }

    impl<G> Drop for Timed<G> {
        fn drop(&mut self) {
            count(
                self.lock,
                self.waited,
                self.since.elapsed().as_nanos() as u64,
            );
        }
    }

    impl<G: Deref> Deref for Timed<G> {
        type Target = G::Target;

        fn deref(&self) -> &G::Target {
            &self.guard
        }
    }

    impl<G: DerefMut> DerefMut for Timed<G> {
        fn deref_mut(&mut self) -> &mut G::Target {
            &mut self.guard
        }
    }
}
