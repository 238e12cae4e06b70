//! A subscriber's side of the registry: reading what its groups received since its last read,
//! from their rings, merged in the order the groups received it.

use std::{
    sync::{
        atomic::{
            fence,
            Ordering::{Acquire, Relaxed, SeqCst},
        },
        Arc, PoisonError,
    },
    task::{Context, Poll},
    time::Instant,
};

use super::{
    lock,
    members::{CloseHandle, Waiter},
    ring::Stored,
    Group, Registry,
};
use crate::{
    lock_timing::{timed, Lock},
    one_or_many::OneOrMany,
};

/// What a subscriber's read found, when it found something.
pub(crate) enum Read {
    /// Events were handed over.
    Events,
    /// The subscriber fell too far behind.
    Overflow,
    ShutDown,
    /// The server closed the stream.
    Closed,
}

/// A subscriber's side of the registry: its place in each of its groups.
pub(crate) struct Reader {
    registry: Arc<Registry>,
    waiter: Arc<Waiter>,
    /// Each group, and the subscriber's key among its members.
    members: OneOrMany<(Arc<Group>, usize)>,
}

thread_local! {
    /// Events of several groups being merged, with their group's index: one vector per
    /// thread, reused by every read of several groups, rather than one kept by each stream.
    static MERGE: std::cell::Cell<Vec<(usize, Stored)>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Reader {
    /// The reader of a subscriber of `registry` with `waiter`, a member of each of these groups
    /// under its key there.
    pub(super) fn new(
        registry: Arc<Registry>,
        waiter: Arc<Waiter>,
        members: Vec<(Arc<Group>, usize)>,
    ) -> Self {
        Self {
            registry,
            waiter,
            members: members.into(),
        }
    }

    /// Hands `take` the events published since the last read, in the order their groups
    /// received them, with the index of their group, until about `budget` bytes were taken;
    /// before them, tells `reserve` about how many bytes they make, so they can be gathered
    /// without growing a buffer again and again. `take` says whether it sent the event (or had
    /// sent it already).
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        budget: usize,
        reserve: impl FnOnce(usize),
        mut take: impl FnMut(usize, &Stored) -> bool,
    ) -> Poll<Read> {
        // Register and clear `woken` before looking, so an event published in between wakes
        // us (the publish fences too). Still clear: whoever sets it from here on wakes us.
        self.waiter.waker.register(cx.waker());
        if self.waiter.woken.load(Relaxed) {
            self.waiter.woken.store(false, Relaxed);
            fence(SeqCst);
        }
        if self.waiter.closed.load(Relaxed) {
            return Poll::Ready(Read::Closed);
        }
        if self.waiter.done.load(Relaxed) {
            return Poll::Ready(Read::Overflow);
        }
        let mut sent = 0;
        let mut take = |index: usize, stored: &Stored| {
            sent += u64::from(take(index, stored));
        };
        let read = match &self.members[..] {
            [(group, _)] => self.read_one(group, budget, reserve, &mut take),
            _ => self.read_merged(cx, budget, reserve, &mut take),
        };
        match read {
            Some(0) if self.registry.is_shut_down() => Poll::Ready(Read::ShutDown),
            Some(0) => Poll::Pending,
            Some(_) => {
                self.registry.counters.delivered(sent);
                Poll::Ready(Read::Events)
            }
            None => {
                if self.waiter.finish() {
                    // Cut here, not by a publish (which counted its cuts).
                    self.registry.streams.fetch_sub(1, Relaxed);
                    self.registry.counters.dropped(1);
                }
                Poll::Ready(Read::Overflow)
            }
        }
    }

    /// Reads one group straight from its ring. `None` when events it had not read are gone.
    fn read_one(
        &self,
        group: &Group,
        budget: usize,
        reserve: impl FnOnce(usize),
        take: &mut impl FnMut(usize, &Stored),
    ) -> Option<u64> {
        let position = &self.waiter.positions[0];
        let start = position.load(Relaxed);
        // Nothing new: most reads of a served stream end here (it reads until nothing is
        // left), and then they write nothing that other readers of the group share.
        if group.head.load(Acquire) == start {
            return Some(0);
        }
        let ring = timed(Lock::RingRead, || {
            group.ring.read().unwrap_or_else(PoisonError::into_inner)
        });
        let offset = start.checked_sub(ring.first_pos)?;
        let mut bytes = 0;
        let unread = ring
            .events
            .range((offset as usize).min(ring.events.len())..);
        let count = unread
            .clone()
            .take_while(|stored| {
                let more = bytes < budget;
                bytes += if more { stored.bytes.len() } else { 0 };
                more
            })
            .count();
        reserve(bytes);
        unread.take(count).for_each(|stored| take(0, stored));
        drop(ring);
        position.store(start + count as u64, Relaxed);
        Some(count as u64)
    }

    /// Reads several groups and merges them by arrival. An event its group received after this
    /// read looked at another group waits for the next read: an earlier event of that other
    /// group may not have been visible yet.
    fn read_merged(
        &mut self,
        cx: &mut Context<'_>,
        budget: usize,
        reserve: impl FnOnce(usize),
        take: &mut impl FnMut(usize, &Stored),
    ) -> Option<u64> {
        let mut merge = MERGE.take();
        let mut horizon: Option<Instant> = None;
        for (index, (group, _)) in self.members.iter().enumerate() {
            let ring = timed(Lock::RingRead, || {
                group.ring.read().unwrap_or_else(PoisonError::into_inner)
            });
            let pos = self.waiter.positions[index].load(Relaxed);
            let offset = pos.checked_sub(ring.first_pos)?;
            let mut found = 0;
            for stored in ring.events.iter().skip(offset as usize) {
                if found >= budget {
                    break;
                }
                found += stored.bytes.len();
                merge.push((index, stored.clone()));
            }
            let looked = Instant::now();
            drop(ring);
            horizon = Some(horizon.map_or(looked, |h| h.min(looked)));
        }
        // Stable: a group's events keep their order among equal times.
        merge.sort_by_key(|(_, stored)| stored.at);
        reserve(merge.iter().map(|(_, stored)| stored.bytes.len()).sum());
        let mut taken = 0;
        let mut events = 0;
        let mut held_back = false;
        for (index, stored) in &merge {
            if taken >= budget {
                break;
            }
            if horizon.is_some_and(|horizon| stored.at >= horizon) {
                held_back = true;
                break;
            }
            take(*index, stored);
            taken += stored.bytes.len();
            self.waiter.positions[*index].fetch_add(1, Relaxed);
            events += 1;
        }
        merge.clear();
        MERGE.set(merge);
        if held_back && events == 0 {
            cx.waker().wake_by_ref();
        }
        Some(events)
    }
}

impl Reader {
    /// How soon a client is asked to come back after a shutdown ended its stream.
    pub(crate) fn shutdown_retry(&self) -> std::time::Duration {
        self.registry.config.shutdown_retry
    }

    /// How long the stream may be idle before it sends a keep-alive comment, if it does.
    pub(crate) fn keep_alive(&self) -> Option<std::time::Duration> {
        self.registry.config.keep_alive
    }

    /// What closes this stream from outside.
    pub(crate) fn close_handle(&self) -> CloseHandle {
        CloseHandle(self.waiter.clone())
    }

    /// The engine's history gave the end of the group at `index`, `end`: from now on this
    /// process knows the group ended, though it held the group only after.
    pub(crate) fn ended(&self, index: usize, end: u64) {
        self.members[index].0.ended(end);
    }

    /// The stream gave its client `events` missed events from the engine's history.
    pub(crate) fn replayed(&self, events: u64) {
        self.registry.counters.replayed(events);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        tracing::debug!(groups = self.members.len(), "unsubscribed");
        let registry = &self.registry;
        if self.waiter.finish() {
            registry.streams.fetch_sub(1, Relaxed);
        }
        let now = Instant::now();
        for (group, key) in self.members.iter() {
            let mut members = lock(&group.members);
            // A cut subscriber was already removed from the group that cut it, and its key
            // there may belong to someone else by now.
            let mine = members
                .slab
                .get(*key)
                .is_some_and(|member| Arc::ptr_eq(&member.waiter, &self.waiter));
            if !mine {
                continue;
            }
            members.slab.remove(*key);
            if members.slab.is_empty() && members.idle_since.is_none() {
                members.idle_since = Some(now);
                drop(members);
                let mut shard = lock(registry.shard(group.name.as_str()));
                shard.idle.push_back((now, group.name.clone()));
                shard.free_expired(now, &registry.config, &registry.watch);
            }
        }
    }
}
