//! Groups and their subscribers: where a published event goes, and what a client reads next.
//!
//! Each group keeps its recent events in one ring of shared bytes. That ring is at once the
//! history a reconnecting client replays from and the queue every live subscriber reads from:
//! a subscriber is only a position in the rings of its groups, so fan-out copies no bytes and
//! allocates nothing per subscriber, and a slow subscriber costs no memory, only lag. A
//! subscriber that lags more than the queue bound is cut off by the publish that overflows it,
//! even while its connection is too stalled to be written to; it reconnects and replays.
//!
//! One lock guards every group, so ids are given in the same order events enter their groups
//! and a subscriber of several groups sees one consistent order.
//!
//! With a broker shared between processes (Redis), ids come from the broker and events arrive
//! through [`Registry::deliver`], in id order; the rings then hold what this process received
//! since it started listening to each group, and older history is read from the broker.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use slab::Slab;

use crate::{
    axum::Resume,
    broker::Broker,
    event::{self, Draft},
    stats::Counters,
    Config, EventId, GroupName, PublishError,
};

/// A subscriber reads at most this many bytes at once, so one write never grows unbounded.
const BATCH_BYTES: usize = 64 * 1024;

pub(crate) struct Registry {
    state: Mutex<State>,
    pub(crate) config: Config,
    pub(crate) counters: Counters,
    pub(crate) broker: Box<dyn Broker>,
}

struct State {
    /// The last id given; ids of a later process start above it (see `first_id`).
    last_id: u64,
    groups: Slab<Group>,
    by_name: HashMap<GroupName, usize>,
    /// Groups whose last subscriber left, oldest first, to free once their history expires.
    idle: VecDeque<(Instant, GroupName)>,
    streams: usize,
    shut_down: bool,
}

struct Group {
    name: GroupName,
    ring: VecDeque<Stored>,
    /// The position of `ring[0]`: positions count this group's events since it was created.
    first_pos: u64,
    /// Every event of the group with a greater id is still in `ring`.
    complete_after: u64,
    subscribers: Slab<Member>,
    idle_since: Option<Instant>,
}

/// A subscriber, as one of its groups knows it.
struct Member {
    waiter: Arc<Waiter>,
    /// The position of the next event it reads.
    pos: u64,
}

/// What a subscriber's task and the registry share.
#[derive(Default)]
struct Waiter {
    waker: AtomicWaker,
    /// Set under the registry's lock when a publish left the subscriber too far behind.
    cut: AtomicBool,
}

struct Stored {
    id: u64,
    at: Instant,
    bytes: Bytes,
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub(crate) enum Refused {
    TooManyStreams,
    ShutDown,
}

/// How a new stream starts.
pub(crate) enum Start {
    /// With the next event (or the missed ones, which its cursors already point at).
    Live,
    /// With a `stream-reset`: the client's `Last-Event-ID` cannot be resumed from.
    Reset(Bytes),
    /// With the events after this id from the broker's shared history, which the local rings
    /// do not cover; live events are held meanwhile.
    CatchUp(u64),
}

/// What a subscription has to say next.
pub(crate) enum Next {
    Events(Bytes),
    /// The subscriber fell too far behind.
    Overflow,
    ShutDown,
}

/// Ids start at the clock's microseconds, so a restarted process gives ids above the old ones
/// and a client's `Last-Event-ID` from before the restart is recognised as too old, not reused.
fn first_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Registry {
    pub(crate) fn new(config: Config, broker: Box<dyn Broker>) -> Self {
        Self {
            state: Mutex::new(State {
                // With a shared broker, ids come from it: only those delivered here count.
                last_id: if broker.shares_history() {
                    0
                } else {
                    first_id()
                },
                groups: Slab::new(),
                by_name: HashMap::new(),
                idle: VecDeque::new(),
                streams: 0,
                shut_down: false,
            }),
            config,
            counters: Counters::default(),
            broker,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than stopping every stream would, so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.lock().shut_down
    }

    /// Gives the event its id and hands it to the group's subscribers, if it has any.
    pub(crate) fn publish(&self, group: &str, draft: Draft) -> Result<EventId, PublishError> {
        let now = Instant::now();
        let mut state = self.lock();
        if state.shut_down {
            return Err(PublishError::ShutDown);
        }
        state.last_id += 1;
        let id = state.last_id;
        state.free_expired(now, &self.config, &*self.broker);
        let cut = state.push(group, id, now, || draft.stamp(EventId(id)), &self.config);
        drop(state);
        self.counters.dropped(cut as u64);
        Ok(EventId(id))
    }

    /// Hands an event that already has its id (from a shared broker, in id order) to the
    /// group's subscribers, if it has any. An id not above the group's last is a repeat.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn deliver(&self, group: &str, id: u64, bytes: Bytes) {
        let now = Instant::now();
        let mut state = self.lock();
        state.last_id = state.last_id.max(id);
        state.free_expired(now, &self.config, &*self.broker);
        let cut = state.push(group, id, now, || bytes, &self.config);
        drop(state);
        self.counters.dropped(cut as u64);
    }

    /// The broker now delivers every event of `group` with an id above `id`: from there on the
    /// ring is a complete history, and resumes it covers need not ask the broker.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn complete_after(&self, group: &str, id: u64) {
        let mut state = self.lock();
        if let Some(&slot) = state.by_name.get(group) {
            let group = &mut state.groups[slot];
            // Trimming may have set a later floor already.
            if group.complete_after == u64::MAX {
                group.complete_after = id;
            }
        }
    }

    /// Opens a subscription to `groups`, resuming after `last` when the history allows it.
    /// Returns the subscription and how its stream starts.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        groups: &[GroupName],
        last: Resume,
    ) -> Result<(Subscription, Start), Refused> {
        let now = Instant::now();
        let id_is_shared = self.broker.shares_history();
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.shut_down {
            return Err(Refused::ShutDown);
        }
        if state.streams >= self.config.max_streams {
            return Err(Refused::TooManyStreams);
        }
        state.free_expired(now, &self.config, &*self.broker);
        let last_id = state.last_id;
        let slots: Vec<usize> = groups
            .iter()
            .map(|name| {
                let slot = state.slot_or_create(name, &*self.broker);
                state.groups[slot].trim(now, &self.config);
                slot
            })
            .collect();

        let resume_after = match last {
            Resume::None => Ok(None),
            Resume::Invalid(why) => Err(why),
            Resume::Id(id)
                if id <= last_id
                    && slots.iter().all(|&slot| {
                        state.groups[slot].replayable_after(now, &self.config) <= id
                    }) =>
            {
                Ok(Some(id))
            }
            // The broker's shared history may cover what the local rings do not.
            Resume::Id(_) if id_is_shared => Ok(None),
            Resume::Id(id) if id > last_id => Err("unknown id"),
            Resume::Id(_) => Err("id older than the history"),
        };
        let start = match (resume_after, last) {
            (Err(why), _) => Start::Reset(event::stream_reset(why, EventId(last_id))),
            (Ok(None), Resume::Id(id)) => Start::CatchUp(id),
            (Ok(_), _) => Start::Live,
        };

        let waiter = Arc::new(Waiter::default());
        let mut replay = 0;
        let cursors: Vec<Cursor> = slots
            .into_iter()
            .map(|slot| {
                let group = &mut state.groups[slot];
                group.idle_since = None;
                let pos = match resume_after {
                    Ok(Some(after)) => group.position_after(after),
                    _ => group.head(),
                };
                replay += group.head() - pos;
                let waiter = waiter.clone();
                Cursor {
                    slot,
                    key: group.subscribers.insert(Member { waiter, pos }),
                }
            })
            .collect();
        state.streams += 1;
        drop(guard);
        self.counters.replayed(replay);
        tracing::debug!(?groups, reset = ?resume_after.err(), "subscribed");
        if replay > 0 {
            tracing::debug!(?groups, events = replay, "replaying what the client missed");
        }
        let subscription = Subscription {
            registry: self.clone(),
            waiter,
            cursors,
            skip_through: 0,
        };
        Ok((subscription, start))
    }

    /// Ends every stream (each sends a last `retry:` hint) and refuses new streams and events.
    pub(crate) fn shut_down(&self) {
        let mut state = self.lock();
        state.shut_down = true;
        for (_, group) in &state.groups {
            for (_, member) in &group.subscribers {
                member.waiter.waker.wake();
            }
        }
    }

    pub(crate) fn subscriber_count(&self, group: &str) -> usize {
        let state = self.lock();
        state
            .by_name
            .get(group)
            .map_or(0, |&slot| state.groups[slot].subscribers.len())
    }

    pub(crate) fn group_count(&self) -> usize {
        let mut state = self.lock();
        state.free_expired(Instant::now(), &self.config, &*self.broker);
        state.groups.len()
    }

    pub(crate) fn open_streams(&self) -> usize {
        self.lock().streams
    }
}

impl State {
    /// Appends the event to `group`'s ring and wakes its subscribers, if the group is held here;
    /// cuts those it leaves too far behind, and returns how many it cut.
    fn push(
        &mut self,
        group: &str,
        id: u64,
        now: Instant,
        bytes: impl FnOnce() -> Bytes,
        config: &Config,
    ) -> usize {
        let Some(&slot) = self.by_name.get(group) else {
            return 0;
        };
        let group = &mut self.groups[slot];
        if group.ring.back().is_some_and(|last| last.id >= id) {
            return 0;
        }
        group.ring.push_back(Stored {
            id,
            at: now,
            bytes: bytes(),
        });
        group.trim(now, config);
        let cut = group.wake_or_cut(config.subscriber_queue as u64);
        self.streams -= cut;
        if cut > 0 {
            self.left(slot, now);
            tracing::debug!(id, cut, "subscribers too far behind: cut, they will resume");
        }
        cut
    }

    fn slot_or_create(&mut self, name: &GroupName, broker: &dyn Broker) -> usize {
        if let Some(&slot) = self.by_name.get(name.as_str()) {
            return slot;
        }
        let slot = self.groups.insert(Group {
            name: name.clone(),
            ring: VecDeque::new(),
            first_pos: 0,
            // With a shared broker, what came before the group was held here is not here.
            complete_after: if broker.shares_history() {
                u64::MAX
            } else {
                self.last_id
            },
            subscribers: Slab::new(),
            idle_since: None,
        });
        self.by_name.insert(name.clone(), slot);
        broker.group_opened(name);
        slot
    }

    /// Frees the groups that have had no subscriber for longer than their history lasts.
    fn free_expired(&mut self, now: Instant, config: &Config, broker: &dyn Broker) {
        let keep_for = if config.history_events == 0 {
            Duration::ZERO
        } else {
            config.history_age
        };
        while let Some((since, _)) = self.idle.front() {
            if now.duration_since(*since) < keep_for {
                break;
            }
            let Some((since, name)) = self.idle.pop_front() else {
                break;
            };
            let Some(&slot) = self.by_name.get(name.as_str()) else {
                continue;
            };
            // The group may have gained subscribers, or lost them again later, since.
            if self.groups[slot].idle_since == Some(since) {
                self.by_name.remove(name.as_str());
                self.groups.remove(slot);
                broker.group_freed(&name);
            }
        }
    }

    fn unsubscribe(
        &mut self,
        waiter: &Arc<Waiter>,
        cursors: &[Cursor],
        config: &Config,
        broker: &dyn Broker,
    ) {
        let now = Instant::now();
        for cursor in cursors {
            let group = &mut self.groups[cursor.slot];
            // A cut subscriber was already removed from the group that cut it, and its key
            // there may belong to someone else by now.
            let mine = group
                .subscribers
                .get(cursor.key)
                .is_some_and(|member| Arc::ptr_eq(&member.waiter, waiter));
            if mine {
                group.subscribers.remove(cursor.key);
                self.left(cursor.slot, now);
            }
        }
        if !waiter.cut.load(Ordering::Relaxed) {
            self.streams -= 1;
        }
        self.free_expired(now, config, broker);
    }

    /// Notes that a subscriber left group `slot`: when it was the last, the group starts idling.
    fn left(&mut self, slot: usize, now: Instant) {
        let group = &mut self.groups[slot];
        if group.subscribers.is_empty() && group.idle_since.is_none() {
            group.idle_since = Some(now);
            self.idle.push_back((now, group.name.clone()));
        }
    }
}

impl Group {
    fn head(&self) -> u64 {
        self.first_pos + self.ring.len() as u64
    }

    /// Drops what neither the history nor any subscriber's queue needs any more.
    fn trim(&mut self, now: Instant, config: &Config) {
        let keep = config.history_events.max(config.subscriber_queue);
        while let Some(front) = self.ring.front() {
            let expired = now.duration_since(front.at) > config.history_age;
            if self.ring.len() <= keep && !expired {
                break;
            }
            self.complete_after = front.id;
            self.first_pos += 1;
            self.ring.pop_front();
        }
    }

    /// Wakes the subscribers that have something new to read, and cuts those that now lag more
    /// than `queue` events (or lost an event to trimming). Returns how many were cut.
    fn wake_or_cut(&mut self, queue: u64) -> usize {
        let (first, head) = (self.first_pos, self.head());
        let mut cut = 0;
        self.subscribers.retain(|_, member| {
            let keep = member.pos >= first && head - member.pos <= queue;
            if !keep {
                member.waiter.cut.store(true, Ordering::Relaxed);
                cut += 1;
            }
            member.waiter.waker.wake();
            keep
        });
        cut
    }

    /// A client that saw this id, or a later one, can be given everything it missed.
    fn replayable_after(&self, now: Instant, config: &Config) -> u64 {
        let skip = self.ring.len().saturating_sub(config.history_events);
        let mut floor = match skip {
            0 => self.complete_after,
            n => self.ring[n - 1].id,
        };
        for stored in self.ring.iter().skip(skip) {
            if now.duration_since(stored.at) <= config.history_age {
                break;
            }
            floor = stored.id;
        }
        floor
    }

    /// The position of the first event with an id above `id`.
    fn position_after(&self, id: u64) -> u64 {
        self.first_pos + self.ring.partition_point(|stored| stored.id <= id) as u64
    }
}

/// One open stream's place in each of its groups.
pub(crate) struct Subscription {
    registry: Arc<Registry>,
    waiter: Arc<Waiter>,
    cursors: Vec<Cursor>,
    /// Events with this id or a lower one were sent already (caught up from the broker).
    skip_through: u64,
}

/// Where the subscriber is in one of its groups: its `Member` there.
struct Cursor {
    slot: usize,
    key: usize,
}

impl Subscription {
    /// The stream sent `events` missed events from the broker's history: from here on, skip
    /// the ids up to `through`, which it has sent or which came before the client's.
    pub(crate) fn caught_up(&mut self, through: u64, events: u64) {
        self.skip_through = through;
        self.registry.counters.replayed(events);
        if events > 0 {
            tracing::debug!(events, "replaying what the client missed, from the broker");
        }
    }

    /// The events published since the last call, in id order, as one chunk of bytes.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        // Register before looking, so an event published in between wakes us.
        self.waiter.waker.register(cx.waker());
        let mut guard = self.registry.lock();
        let state = &mut *guard;
        let trimmed_away = |cursor: &Cursor| {
            let group = &state.groups[cursor.slot];
            group.subscribers[cursor.key].pos < group.first_pos
        };
        let cut = self.waiter.cut.load(Ordering::Relaxed);
        if cut || self.cursors.iter().any(trimmed_away) {
            if !cut {
                // Cut here, not by a publish (which counted its cuts).
                self.registry.counters.dropped(1);
            }
            return Poll::Ready(Next::Overflow);
        }
        let mut batch = Batch::Empty;
        let mut events = 0;
        while batch.len() < BATCH_BYTES {
            let next = self
                .cursors
                .iter()
                .filter_map(|cursor| {
                    let group = &state.groups[cursor.slot];
                    let pos = group.subscribers[cursor.key].pos;
                    let stored = group.ring.get((pos - group.first_pos) as usize)?;
                    Some((stored.id, cursor))
                })
                .min_by_key(|(id, _)| *id);
            let Some((id, cursor)) = next else { break };
            let group = &mut state.groups[cursor.slot];
            let member = &mut group.subscribers[cursor.key];
            if id > self.skip_through {
                batch.push(&group.ring[(member.pos - group.first_pos) as usize].bytes);
                events += 1;
            }
            member.pos += 1;
        }
        match batch.into_bytes() {
            Some(bytes) => {
                self.registry.counters.delivered(events);
                Poll::Ready(Next::Events(bytes))
            }
            // What was published before the shutdown is sent before the stream ends.
            None if state.shut_down => Poll::Ready(Next::ShutDown),
            None => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        tracing::debug!(groups = self.cursors.len(), "unsubscribed");
        self.registry.lock().unsubscribe(
            &self.waiter,
            &self.cursors,
            &self.registry.config,
            &*self.registry.broker,
        );
    }
}

/// Events read in one go: a single event is handed on as the shared bytes themselves.
enum Batch {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Empty => 0,
            Batch::One(bytes) => bytes.len(),
            Batch::Many(buf) => buf.len(),
        }
    }

    fn push(&mut self, bytes: &Bytes) {
        *self = match std::mem::replace(self, Batch::Empty) {
            Batch::Empty => Batch::One(bytes.clone()),
            Batch::One(first) => {
                let mut buf = BytesMut::with_capacity((first.len() + bytes.len()) * 4);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(bytes);
                Batch::Many(buf)
            }
            Batch::Many(mut buf) => {
                buf.extend_from_slice(bytes);
                Batch::Many(buf)
            }
        }
    }

    fn into_bytes(self) -> Option<Bytes> {
        match self {
            Batch::Empty => None,
            Batch::One(bytes) => Some(bytes),
            Batch::Many(buf) => Some(buf.freeze()),
        }
    }
}
