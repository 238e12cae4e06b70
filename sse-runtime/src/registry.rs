//! Groups and their subscribers: where a published event goes, and what a client reads next.
//!
//! Each group keeps its recent events in one ring of shared bytes. That ring is at once the
//! history a reconnecting client replays from and the queue every live subscriber reads from:
//! a subscriber is only a position in the rings of its groups, so fan-out copies no bytes and
//! allocates nothing per subscriber, and a slow subscriber costs no memory, only lag. A
//! subscriber that lags more than the queue bound is cut off by the publish that overflows it,
//! even while its connection is too stalled to be written to; it reconnects and replays.
//!
//! Nothing is locked for all groups at once. Groups are found through shards of a map (locked
//! only to find, create or free a group); each group numbers its own events, and guards its ring
//! with a read-write lock that publishes to it write and its readers share, and its members (who
//! to wake) with a mutex that only publishes, subscribes and leaves take. A subscriber's position
//! in each group is an atomic it alone writes; the publish that overflows it reads it to cut it.
//! A publish reads the positions only when the lowest one the group last saw could be past the
//! bound, and wakes only the subscribers that have read since they were last woken: a publish
//! to a group of subscribers that keep up is one pass over who to wake, writing nothing they
//! share with it.
//!
//! Each stored event also records when its group received it, under the ring's lock. A reader of
//! several groups merges them in that order and holds back an event received after it looked at
//! another of its groups, so events come in the order their groups received them, whatever the
//! cores involved.
//!
//! With a broker shared between processes (Redis), ids come from the broker and events arrive
//! through [`Deliver`], in id order; the rings then hold what this process received since it
//! started listening to each group, and older history is read from the broker.

use std::{
    collections::{hash_map::RandomState, HashMap, VecDeque},
    hash::BuildHasher,
    ops::DerefMut,
    sync::{
        atomic::{
            fence, AtomicBool, AtomicU64, AtomicUsize,
            Ordering::{Acquire, Relaxed, Release, SeqCst},
        },
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::task::AtomicWaker;
use slab::Slab;

#[allow(unsafe_code)]
mod arena;

pub(crate) use arena::Run;

use crate::{
    event::{self, Draft},
    group::Held,
    lock_timing::{timed, Lock},
    resume::{self, LocalHistory, Plan},
    stats::Counters,
    Config, EventId, GroupName, PublishError, SubscribeError,
};

/// Shards of the map of groups: enough that cores rarely meet on one. Each publish takes its
/// group's shard to find it: with 64, two threads publishing to 100 groups each met on nearly
/// every shard (1.24× one thread in the hub bench); with 1,024, 1.77× (256 KiB per hub).
const SHARDS: usize = 1024;

pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    streams: AtomicUsize,
    shut_down: AtomicBool,
    /// Ids come from a broker shared by processes, not from the groups here.
    ids_from_broker: bool,
    watch: GroupWatch,
    pub(crate) config: Config,
    pub(crate) counters: Counters,
}

/// Told when a group starts or stops being held here, in the order it happens to each group.
pub(crate) type GroupWatch = Box<dyn Fn(&GroupName, Held) + Send + Sync>;

/// Aligned to 128 bytes (two cache lines, as neighbouring lines are fetched in pairs), so cores
/// working on different shards never write to one line.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    groups: HashMap<GroupName, Arc<Group>>,
    /// Groups whose last subscriber left, oldest first, to free once their history expires.
    idle: VecDeque<(Instant, GroupName)>,
    /// The last id given here to an event of a group not held (stored nowhere); groups made
    /// later number their events above it.
    unheld: u64,
}

struct Group {
    name: GroupName,
    /// The ring's head (the position after its last event), set after each event is stored:
    /// a reader that has read up to it looks no further, without touching the ring's lock.
    head: AtomicU64,
    ring: RwLock<Ring>,
    members: Mutex<Members>,
}

struct Ring {
    events: VecDeque<Stored>,
    /// Where the events' bytes are, one after another.
    arena: arena::Arena,
    /// How many bytes the events take.
    bytes: usize,
    /// The position of `events[0]`: positions count this group's events since it was made.
    first_pos: u64,
    /// The group's last id: given here, or delivered by the broker.
    last_id: u64,
    /// Every event of the group with a greater id is still in `events` (`u64::MAX`: not known
    /// yet, the broker is still starting to deliver the group here).
    complete_after: u64,
}

/// An event in a group's ring.
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) id: u64,
    /// When the group received it, for merging several groups in that order.
    at: Instant,
    /// The whole event, its id line last.
    pub(crate) bytes: Run,
    /// How many of `bytes` come before the id line.
    pub(crate) body_len: usize,
}

#[derive(Default)]
struct Members {
    slab: Slab<Member>,
    /// No member's position is below it (positions only grow): while every member is within
    /// the queue bound of it, a publish cuts nobody and need not read their positions.
    lowest: u64,
    idle_since: Option<Instant>,
}

/// A subscriber, as one of its groups knows it: its waiter, and which of its positions is here.
struct Member {
    waiter: Arc<Waiter>,
    index: usize,
}

/// What a subscriber's task and the groups it listens to share.
struct Waiter {
    waker: AtomicWaker,
    /// Set by the publish that wakes it, cleared by its read: the publishes before that read
    /// need not wake it again (a wake writes to a line its reader shares).
    woken: AtomicBool,
    /// Set once the stream stops counting as open: cut for lagging, or gone.
    done: AtomicBool,
    /// Set when the server closes the stream ([`CloseHandle`], [`Registry::close_group`]).
    closed: AtomicBool,
    /// In each of its groups, the position of the next event it reads.
    positions: Box<[AtomicU64]>,
}

impl Waiter {
    /// Wakes its task, unless an earlier publish did and the task has not read since.
    fn wake(&self) {
        if !self.woken.load(Relaxed) {
            self.woken.store(true, Relaxed);
            self.waker.wake();
        }
    }

    /// Marks the stream as no longer open; `true` for the one caller that did it first.
    fn finish(&self) -> bool {
        !self.done.swap(true, Relaxed)
    }

    fn close(&self) {
        self.closed.store(true, Relaxed);
        self.waker.wake();
    }
}

/// Ends one stream from outside its task: its next read is [`Read::Closed`].
pub(crate) struct CloseHandle(Arc<Waiter>);

impl CloseHandle {
    pub(crate) fn close(&self) {
        self.0.close();
    }
}

/// How a new stream starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// From these positions (per group, the id it starts after): what follows them in the local
    /// rings is replayed, then the live events.
    At(Vec<u64>),
    /// With a `stream-reset`: the client's `Last-Event-ID` cannot be resumed from. The stream
    /// goes on live from these positions.
    Reset(&'static str, Vec<u64>),
    /// Per group, the id after which the engine's shared history has to give the events (none:
    /// only where the group stands), since the local rings do not cover them; live events are
    /// held meanwhile.
    CatchUp(Vec<Option<u64>>),
}

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

/// Ids start at the clock's microseconds, so a restarted process gives ids above the old ones
/// and a client's `Last-Event-ID` from before the restart is recognised as too old, not reused.
fn clock_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave the state half-changed in a way that matters
    // more than stopping every stream would, so keep going.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    pub(crate) fn new(config: Config, ids_from_broker: bool, watch: GroupWatch) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            streams: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            ids_from_broker,
            watch,
            config,
            counters: Counters::default(),
        }
    }

    fn shard(&self, group: &str) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(group) as usize % SHARDS]
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Relaxed)
    }

    /// The shard of `group`, locked, without the groups whose history expired.
    fn shard_of(&self, group: &str) -> impl DerefMut<Target = Shard> + '_ {
        let mut shard = timed(Lock::Shard, || lock(self.shard(group)));
        shard.free_expired(Instant::now(), &self.config, &self.watch);
        shard
    }

    /// The group, if it is held here.
    fn held(&self, group: &str) -> Option<Arc<Group>> {
        self.shard_of(group).groups.get(group).cloned()
    }

    /// Gives the event the next id of its group and hands it to the group's subscribers, if it
    /// has any. A group nobody holds keeps nothing, but its id still rises.
    pub(crate) fn publish(&self, group: &str, draft: Draft) -> Result<EventId, PublishError> {
        if self.is_shut_down() {
            return Err(PublishError::ShutDown);
        }
        let mut shard = self.shard_of(group);
        let id = match shard.groups.get(group).cloned() {
            Some(group) => {
                drop(shard);
                self.push(&group, None, draft.as_bytes())
            }
            None => {
                shard.unheld = (shard.unheld + 1).max(clock_id());
                shard.unheld
            }
        };
        Ok(EventId(id))
    }

    /// Appends an event to `group` (`encoded` without its id line, with `given` id from a
    /// broker, or the group's next one), wakes its subscribers and cuts those it leaves too far
    /// behind. Returns the id; an id from a broker not above the group's last is a repeat and
    /// is dropped.
    fn push(&self, group: &Group, given: Option<u64>, encoded: &[u8]) -> u64 {
        let config = &self.config;
        let (id, first, head) = {
            let mut ring = timed(Lock::RingWrite, || {
                group.ring.write().unwrap_or_else(PoisonError::into_inner)
            });
            let id = match given {
                Some(id) if id <= ring.last_id => return id,
                Some(id) => id,
                None => ring.last_id + 1,
            };
            ring.last_id = id;
            let held = ring.bytes;
            let bytes = ring
                .arena
                .append(&[encoded, event::IdLine::new(id).as_bytes()], held);
            ring.bytes += bytes.len();
            // Taken under the lock, so a group's events are in the order of their times.
            let at = Instant::now();
            ring.events.push_back(Stored {
                id,
                at,
                bytes,
                body_len: encoded.len(),
            });
            ring.trim(at, config);
            group.head.store(ring.head(), Release);
            (id, ring.first_pos, ring.head())
        };
        let queue = config.subscriber_queue as u64;
        let (mut removed, mut cut) = (0, 0);
        // Pairs with the fence of `Reader::poll_read`: either its read sees this event, or
        // this sees that it is no longer woken.
        fence(SeqCst);
        let mut members = timed(Lock::Members, || lock(&group.members));
        if members.lowest >= first && head.saturating_sub(members.lowest) <= queue {
            for (_, member) in &members.slab {
                member.waiter.wake();
            }
        } else {
            let mut lowest = u64::MAX;
            members.slab.retain(|_, member| {
                let pos = member.waiter.positions[member.index].load(Relaxed);
                // Later publishes may have grown the ring since `head`, and the subscriber may
                // have read them already: it is then ahead, not behind.
                let keep = pos >= first && head.saturating_sub(pos) <= queue;
                if keep {
                    lowest = lowest.min(pos);
                    member.waiter.wake();
                } else {
                    removed += 1;
                    // It may have been cut by another of its groups already.
                    cut += usize::from(member.waiter.finish());
                    member.waiter.waker.wake();
                }
                keep
            });
            members.lowest = lowest;
        }
        let idle_since = (removed > 0 && members.slab.is_empty() && members.idle_since.is_none())
            .then(Instant::now);
        if idle_since.is_some() {
            members.idle_since = idle_since;
        }
        drop(members);
        if cut > 0 {
            self.streams.fetch_sub(cut, Relaxed);
            self.counters.dropped(cut as u64);
            tracing::debug!(id, cut, "subscribers too far behind: cut, they will resume");
        }
        if let Some(since) = idle_since {
            lock(self.shard(group.name.as_str()))
                .idle
                .push_back((since, group.name.clone()));
        }
        id
    }

    /// Opens a subscription to `groups`, resuming after the given ids (one per group) when the
    /// history allows it, or as `resume` says it cannot be. Returns the reader and how its
    /// stream starts.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        groups: &[GroupName],
        resume: Result<Option<Vec<u64>>, &'static str>,
    ) -> Result<(Reader, Start), SubscribeError> {
        if self.is_shut_down() {
            return Err(SubscribeError::ShutDown);
        }
        let max = self.config.max_streams;
        if self
            .streams
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            return Err(SubscribeError::TooManyStreams);
        }
        let now = Instant::now();
        let held: Vec<Arc<Group>> = groups.iter().map(|name| self.hold(name, now)).collect();
        let plan = resume::plan(resume, &self.histories(&held, now), self.ids_from_broker);
        let waiter = Arc::new(Waiter {
            waker: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            done: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            positions: held.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        let mut replayed = 0;
        let mut positions = Vec::with_capacity(held.len());
        let members = held
            .into_iter()
            .enumerate()
            .map(|(index, group)| {
                let mut members = lock(&group.members);
                let ring = group.ring.read().unwrap_or_else(PoisonError::into_inner);
                let (pos, at) = match &plan {
                    Plan::From(ids) if ids[index] < ring.position_id() => {
                        (ring.position_after(ids[index]), ids[index])
                    }
                    _ => (ring.head(), ring.position_id()),
                };
                replayed += ring.head() - pos;
                positions.push(at);
                drop(ring);
                waiter.positions[index].store(pos, Relaxed);
                members.idle_since = None;
                members.lowest = if members.slab.is_empty() {
                    pos
                } else {
                    members.lowest.min(pos)
                };
                let key = members.slab.insert(Member {
                    waiter: waiter.clone(),
                    index,
                });
                drop(members);
                (group, key)
            })
            .collect();
        let start = match plan {
            Plan::Live | Plan::From(_) => Start::At(positions),
            Plan::Reset(why) => Start::Reset(why, positions),
            Plan::CatchUp(from) => Start::CatchUp(from),
        };
        self.counters.replayed(replayed);
        tracing::debug!(?groups, ?start, "subscribed");
        if replayed > 0 {
            tracing::debug!(
                ?groups,
                events = replayed,
                "replaying what the client missed"
            );
        }
        let reader = Reader {
            registry: self.clone(),
            waiter,
            members,
            merge: Vec::new(),
        };
        Ok((reader, start))
    }

    /// The group named `name`, made if it is not held yet.
    fn hold(&self, name: &GroupName, now: Instant) -> Arc<Group> {
        let mut shard = lock(self.shard(name.as_str()));
        shard.free_expired(now, &self.config, &self.watch);
        if let Some(group) = shard.groups.get(name.as_str()) {
            return group.clone();
        }
        // Above every id this process gave the name, so its old ids are recognised as old.
        let last_id = clock_id().max(shard.unheld);
        let group = Arc::new(Group {
            name: name.clone(),
            head: AtomicU64::new(0),
            ring: RwLock::new(Ring {
                events: VecDeque::new(),
                arena: arena::Arena::default(),
                bytes: 0,
                first_pos: 0,
                last_id: if self.ids_from_broker { 0 } else { last_id },
                // With a shared broker, what came before the group was held here is not here.
                complete_after: if self.ids_from_broker {
                    u64::MAX
                } else {
                    last_id
                },
            }),
            members: Mutex::default(),
        });
        shard.groups.insert(name.clone(), group.clone());
        (self.watch)(name, Held::Opened);
        group
    }

    /// What each of `groups`' local history can tell a client that comes back.
    fn histories(&self, groups: &[Arc<Group>], now: Instant) -> Vec<LocalHistory> {
        let history = |group: &Arc<Group>| {
            let ring = group.ring.read().unwrap_or_else(PoisonError::into_inner);
            LocalHistory {
                last: ring.position_id(),
                replayable_after: ring.replayable_after(now, &self.config),
                complete: ring.complete_after != u64::MAX,
            }
        };
        groups.iter().map(history).collect()
    }

    /// Ends every stream (each sends a last `retry:` hint) and refuses new streams and events.
    pub(crate) fn shut_down(&self) {
        self.shut_down.store(true, Relaxed);
        for shard in self.shards.iter() {
            for group in lock(shard).groups.values() {
                for (_, member) in &lock(&group.members).slab {
                    member.waiter.waker.wake();
                }
            }
        }
    }

    /// Closes every stream of `group`; how many there were.
    pub(crate) fn close_group(&self, group: &str) -> usize {
        self.held(group).map_or(0, |group| {
            let members = lock(&group.members);
            members
                .slab
                .iter()
                .for_each(|(_, member)| member.waiter.close());
            members.slab.len()
        })
    }

    pub(crate) fn subscriber_count(&self, group: &str) -> usize {
        self.held(group)
            .map_or(0, |group| lock(&group.members).slab.len())
    }

    pub(crate) fn group_count(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = lock(shard);
                shard.free_expired(now, &self.config, &self.watch);
                shard.groups.len()
            })
            .sum()
    }

    pub(crate) fn open_streams(&self) -> usize {
        self.streams.load(Relaxed)
    }
}

/// What an engine shared by processes hands this one, through the hub.
impl Registry {
    /// An event of `group` (encoded without its id line) with the id the engine gave it, in id
    /// order; dropped when no such group is held here.
    pub(crate) fn deliver(&self, group: &str, id: u64, encoded: &[u8]) {
        if let Some(group) = self.held(group) {
            self.push(&group, Some(id), encoded);
        }
    }

    /// Every event of `group` with an id above `id` is now delivered here: from there on the
    /// ring is a complete history.
    pub(crate) fn complete_after(&self, group: &str, id: u64) {
        if let Some(group) = self.held(group) {
            let mut ring = group.ring.write().unwrap_or_else(PoisonError::into_inner);
            // Trimming may have set a later floor already.
            if ring.complete_after == u64::MAX {
                ring.complete_after = id;
            }
        }
    }
}

impl Shard {
    /// Frees the groups that have had no subscriber for longer than their history lasts.
    fn free_expired(&mut self, now: Instant, config: &Config, watch: &GroupWatch) {
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
            let Some(group) = self.groups.get(name.as_str()) else {
                continue;
            };
            // The group may have gained subscribers, or lost them again later, since.
            if lock(&group.members).idle_since == Some(since) {
                self.groups.remove(name.as_str());
                watch(&name, Held::Freed);
            }
        }
    }
}

impl Ring {
    fn head(&self) -> u64 {
        self.first_pos + self.events.len() as u64
    }

    /// The id of the group's last event known here: where a stream starting now stands.
    fn position_id(&self) -> u64 {
        match self.complete_after {
            u64::MAX => self.last_id,
            complete => self.last_id.max(complete),
        }
    }

    /// Drops what neither the history nor any subscriber's queue needs any more.
    fn trim(&mut self, now: Instant, config: &Config) {
        let keep = config.history_events.max(config.subscriber_queue);
        while let Some(front) = self.events.front() {
            let expired = now.duration_since(front.at) > config.history_age;
            if self.events.len() <= keep && !expired {
                break;
            }
            self.complete_after = front.id;
            self.first_pos += 1;
            self.bytes -= front.bytes.len();
            self.events.pop_front();
        }
    }

    /// A client that saw this id, or a later one, can be given everything it missed.
    fn replayable_after(&self, now: Instant, config: &Config) -> u64 {
        let skip = self.events.len().saturating_sub(config.history_events);
        let mut floor = match skip {
            0 => self.complete_after,
            n => self.events[n - 1].id,
        };
        for stored in self.events.iter().skip(skip) {
            if now.duration_since(stored.at) <= config.history_age {
                break;
            }
            floor = stored.id;
        }
        floor
    }

    /// The position of the first event with an id above `id`.
    fn position_after(&self, id: u64) -> u64 {
        self.first_pos + self.events.partition_point(|stored| stored.id <= id) as u64
    }
}

/// A subscriber's side of the registry: its place in each of its groups.
pub(crate) struct Reader {
    registry: Arc<Registry>,
    waiter: Arc<Waiter>,
    /// Each group, and the subscriber's key among its members.
    members: Vec<(Arc<Group>, usize)>,
    /// Events of several groups being merged, with their group's index (kept to reuse its
    /// memory).
    merge: Vec<(usize, Stored)>,
}

impl Reader {
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
        let read = match self.members.as_slice() {
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
        let mut merge = std::mem::take(&mut self.merge);
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
        self.merge = merge;
        if held_back && events == 0 {
            cx.waker().wake_by_ref();
        }
        Some(events)
    }
}

impl Reader {
    /// What closes this stream from outside.
    pub(crate) fn close_handle(&self) -> CloseHandle {
        CloseHandle(self.waiter.clone())
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
        for (group, key) in &self.members {
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
