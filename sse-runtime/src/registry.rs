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
//! With an engine shared by processes (Redis), ids come from the engine and its events arrive
//! through [`Registry::deliver`], in id order; the rings then hold what this process received since it
//! started listening to each group, and older history is read from the engine.
//!
//! Here are the map of groups and what opens, closes and frees them; a group's ring is in
//! `ring` (its bytes in `arena`), how a publish wakes and cuts its subscribers in `members`,
//! and a subscriber's reads in `reader`.

use std::{
    collections::{hash_map::RandomState, HashMap, VecDeque},
    hash::BuildHasher,
    ops::DerefMut,
    sync::{
        atomic::{
            fence, AtomicBool, AtomicU64, AtomicUsize,
            Ordering::{Relaxed, Release, SeqCst},
        },
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

#[allow(unsafe_code)]
mod arena;
mod members;
mod reader;
mod ring;

pub(crate) use arena::Run;
pub(crate) use members::CloseHandle;
pub(crate) use reader::{Read, Reader};
pub(crate) use ring::Stored;

use members::{Member, Members, Waiter};
use ring::{Ring, Wake};

use crate::{
    cursor::Cursor,
    event::{self, Draft},
    group::Held,
    lock_timing::{timed, Lock},
    pacer,
    resume::{self, LocalHistory, Plan, Since},
    stats::Counters,
    Config, EventId, GroupName, Keep, PublishError, SubscribeError,
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
    /// Ids come from an engine shared by processes, not from the groups here.
    ids_from_engine: bool,
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

impl Group {
    /// The group ended with event `end`, as an engine says: it takes nothing after it.
    fn ended(&self, end: u64) {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        ring.end = Some(ring.end.map_or(end, |known| known.min(end)));
    }
}

/// How a new stream starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// From these positions (per group, the id it starts after): what follows them in the local
    /// rings is replayed, then the live events.
    At(Vec<Cursor>),
    /// With a `stream-reset`: the client's `Last-Event-ID` cannot be resumed from. The stream
    /// goes on live from these positions.
    Reset(&'static str, Vec<Cursor>),
    /// Per group, from where the engine's shared history has to give the events, since the
    /// local rings do not cover them; live events are held meanwhile.
    CatchUp(Vec<Since>),
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
    pub(crate) fn new(config: Config, ids_from_engine: bool, watch: GroupWatch) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            streams: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            ids_from_engine,
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
    /// has any. A group nobody holds keeps nothing, but its id still rises; except its end,
    /// which holds it (until it expires), so that streams opened later end too. A group that
    /// ended takes no more events.
    pub(crate) fn publish(
        self: &Arc<Self>,
        group: &str,
        draft: Draft,
    ) -> Result<EventId, PublishError> {
        if self.is_shut_down() {
            return Err(PublishError::ShutDown);
        }
        // The shard is let go before pushing, which may take it again to mark the group idle.
        let held = {
            let mut shard = self.shard_of(group);
            match shard.groups.get(group).cloned() {
                Some(held) => Some(held),
                None if event::is_end(draft.as_bytes()) => None,
                None => {
                    shard.unheld = (shard.unheld + 1).max(clock_id());
                    return Ok(EventId(shard.unheld));
                }
            }
        };
        let held = match held {
            Some(held) => held,
            None => {
                let name = GroupName::new(group).map_err(PublishError::InvalidGroup)?;
                self.kept(&name, None)
            }
        };
        self.push(&held, None, draft.as_bytes())
            .map(EventId)
            .ok_or(PublishError::Finished)
    }

    /// Holds `name` here, even without subscribers, until it has had none for the history's
    /// age, keeping `keep` from now on.
    pub(crate) fn keep(&self, name: &GroupName, keep: Keep) {
        self.kept(name, Some(keep));
    }

    /// Holds `name` here as [`Registry::keep`] does, keeping `keep` if given.
    fn kept(&self, name: &GroupName, keep: Option<Keep>) -> Arc<Group> {
        let now = Instant::now();
        let group = self.hold(name, now);
        if let Some(keep) = keep {
            let mut ring = group.ring.write().unwrap_or_else(PoisonError::into_inner);
            ring.keep = keep;
        }
        let mut members = lock(&group.members);
        if members.slab.is_empty() && members.idle_since.is_none() {
            members.idle_since = Some(now);
            drop(members);
            lock(self.shard(name.as_str()))
                .idle
                .push_back((now, name.clone()));
        } else {
            drop(members);
        }
        group
    }

    /// `name` ended with event `end`, as an engine shared by processes answered this process's
    /// finish: held here (as [`Registry::keep`] does) and known as ended from now on, before
    /// the end itself is delivered, so this process refuses what is published to it next.
    pub(crate) fn finished(&self, name: &GroupName, end: u64) {
        self.kept(name, None).ended(end);
    }

    /// Whether `group` is held here and ended: it takes no more events.
    pub(crate) fn is_finished(&self, group: &str) -> bool {
        self.held(group).is_some_and(|group| {
            let ring = group.ring.read().unwrap_or_else(PoisonError::into_inner);
            ring.end.is_some()
        })
    }

    /// Appends an event to `group` (`encoded` without its id line, with `given` id from an
    /// engine, or the group's next one), wakes its subscribers and cuts those it leaves too far
    /// behind (the event that follows another within the batch window wakes them at its end).
    /// Returns the id; an id from an engine not above the group's last is a repeat and is
    /// dropped. `None`: the group ended, it takes nothing more (from an engine: an event
    /// published in another process as the end was).
    fn push(
        self: &Arc<Self>,
        group: &Arc<Group>,
        given: Option<u64>,
        encoded: &[u8],
    ) -> Option<u64> {
        let config = &self.config;
        let (id, first, head, wake) = {
            let mut ring = timed(Lock::RingWrite, || {
                group.ring.write().unwrap_or_else(PoisonError::into_inner)
            });
            // Nothing after the end; an engine may still deliver what came before it.
            let after_end = |end| given.map_or(true, |id| id > end);
            if ring.end.is_some_and(after_end) {
                return None;
            }
            let id = match given {
                Some(id) if id <= ring.last_id => return Some(id),
                Some(id) => id,
                None => ring.last_id + 1,
            };
            let wake = ring.append(id, encoded, config);
            group.head.store(ring.head(), Release);
            (id, ring.first_pos, ring.head(), wake)
        };
        // Those it leaves too far behind are cut now, even when the others' wake is put off.
        self.wake(group, first, head, matches!(wake, Wake::Now));
        if let Wake::At(at) = wake {
            let (registry, group) = (self.clone(), group.clone());
            pacer::at(at, Box::new(move || registry.wake_put_off(&group)));
        }
        Some(id)
    }

    /// The wake `group` put off is due: its subscribers hear of every event stored until now.
    fn wake_put_off(&self, group: &Group) {
        let (first, head) = {
            let mut ring = timed(Lock::RingWrite, || {
                group.ring.write().unwrap_or_else(PoisonError::into_inner)
            });
            ring.woken();
            (ring.first_pos, ring.head())
        };
        self.wake(group, first, head, true);
    }

    /// Cuts `group`'s subscribers more than the queue behind, its ring now holding the
    /// positions from `first` to `head`, and wakes the others if `wake`.
    fn wake(&self, group: &Group, first: u64, head: u64, wake: bool) {
        let queue = self.config.subscriber_queue as u64;
        // Pairs with the fence of `Reader::poll_read`: either its read sees this event, or
        // this sees that it is no longer woken.
        fence(SeqCst);
        let mut members = timed(Lock::Members, || lock(&group.members));
        let (cut, idle_since) = members.wake_or_cut(first, head, queue, wake);
        drop(members);
        if cut > 0 {
            self.streams.fetch_sub(cut, Relaxed);
            self.counters.dropped(cut as u64);
            tracing::debug!(group = %group.name, cut, "subscribers too far behind: cut, they will resume");
        }
        if let Some(since) = idle_since {
            lock(self.shard(group.name.as_str()))
                .idle
                .push_back((since, group.name.clone()));
        }
    }

    /// Opens a subscription to `groups`, resuming after the given ids (one per group) when the
    /// history allows it, or as `resume` says it cannot be. Returns the reader, how its stream
    /// starts, and per group whether the client has its end already (a stream whose client
    /// has every group's end is refused). Each of `groups` becomes the name its group holds, so
    /// that an open stream keeps no copy of its own.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        groups: &mut [GroupName],
        resume: Result<Option<Vec<u64>>, &'static str>,
        rewind: usize,
    ) -> Result<(Reader, Start, Vec<bool>), SubscribeError> {
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
        for (name, group) in groups.iter_mut().zip(&held) {
            name.clone_from(&group.name);
        }
        let ends: Vec<Option<u64>> = held
            .iter()
            .map(|group| {
                group
                    .ring
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .end
            })
            .collect();
        // Per group, whether the client's id is at or past its end: it has it all.
        let mut finished: Vec<bool> = match &resume {
            Ok(Some(ids)) => ids
                .iter()
                .zip(&ends)
                .map(|(id, end)| end.is_some_and(|end| *id >= end))
                .collect(),
            _ => vec![false; held.len()],
        };
        if !finished.is_empty() && finished.iter().all(|&finished| finished) {
            self.streams.fetch_sub(1, Relaxed);
            return Err(SubscribeError::Finished);
        }
        // A new client of a group that ended gets all it kept, then its end.
        let rewind = match resume {
            Ok(None) if ends.iter().any(Option::is_some) => resume::WHOLE,
            _ => rewind,
        };
        let histories = self.histories(&held, now, rewind);
        let plan = resume::plan(resume, rewind, &histories, self.ids_from_engine);
        if let Plan::Reset(_) = plan {
            // The stream goes on from where each group stands: after its end, if it ended.
            for (finished, end) in finished.iter_mut().zip(&ends) {
                *finished = end.is_some();
            }
        }
        let waiter = Arc::new(Waiter::new(held.len()));
        let mut replayed = 0;
        let mut cursors = Vec::with_capacity(held.len());
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
                cursors.push(Cursor::at(at));
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
            Plan::Live | Plan::From(_) => Start::At(cursors),
            Plan::Reset(why) => Start::Reset(why, cursors),
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
        let reader = Reader::new(self.clone(), waiter, members);
        Ok((reader, start, finished))
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
            ring: RwLock::new(if self.ids_from_engine {
                // With a shared engine, what came before the group was held here is not here.
                Ring::new(0, u64::MAX, self.config.keep())
            } else {
                Ring::new(last_id, last_id, self.config.keep())
            }),
            members: Mutex::default(),
        });
        shard.groups.insert(name.clone(), group.clone());
        (self.watch)(name, Held::Opened);
        group
    }

    /// What each of `groups`' local history can tell a client that comes back, or that wants
    /// the last `rewind` events of each.
    fn histories(&self, groups: &[Arc<Group>], now: Instant, rewind: usize) -> Vec<LocalHistory> {
        let (config, shared) = (&self.config, self.ids_from_engine);
        let history = |group: &Arc<Group>| {
            let ring = group.ring.read().unwrap_or_else(PoisonError::into_inner);
            LocalHistory {
                last: ring.position_id(),
                replayable_after: ring.replayable_after(now, config),
                complete: ring.complete_after != u64::MAX,
                rewound_after: match rewind {
                    0 => None,
                    count => ring.rewound_after(count, now, config, shared),
                },
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
    pub(crate) fn deliver(self: &Arc<Self>, group: &str, id: u64, encoded: &[u8]) {
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
