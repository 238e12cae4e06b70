//! Presence: who has streams open to each group, in this process or (with Redis) in any; the
//! join and leave events; closing the streams of a user or a group, and refusing their
//! reconnections for a while.
//!
//! Only streams that carry an [`Identity`] count. This process keeps, per group, each user's
//! count of open streams here and the metadata of the latest one, and, per user, what closes
//! each of their streams. In memory that is the whole truth, and a user's first stream in a
//! group and their last one are noticed here, under one lock, in the order they happen. With
//! an engine shared by processes every change of a count goes to the engine
//! ([`Engine::count`]), which decides joins and leaves for the whole deployment and passes
//! them back.

use std::{
    collections::HashMap,
    fmt::Write,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Instant,
};

use slab::Slab;

use crate::{
    config::PresenceSettings as Settings,
    engine::{Engine, Entry},
    hooks::{Hooks, StreamInfo, Worker},
    identity::Closing,
    registry::{CloseHandle, Registry},
    subscription::OnClose,
    BrokerError, GroupName, Identity, LastEventId, CLOSED_ID,
};

/// The event published to a group when a user's first stream in it opens (with
/// [`Config::presence_events`](crate::Config::presence_events)). Its data is JSON: `{"user":"alice","meta":"..."}`.
///
/// ```
/// assert_eq!(sse::PRESENCE_JOIN, "presence-join");
/// ```
///
/// ```js
/// source.addEventListener("presence-join", (e) => online.add(JSON.parse(e.data).user));
/// ```
pub const PRESENCE_JOIN: &str = "presence-join";

/// The event published to a group when a user's last stream in it closes (with
/// [`Config::presence_events`](crate::Config::presence_events)). Its data is JSON: `{"user":"alice"}`.
///
/// ```
/// assert_eq!(sse::PRESENCE_LEAVE, "presence-leave");
/// ```
///
/// ```js
/// source.addEventListener("presence-leave", (e) => online.delete(JSON.parse(e.data).user));
/// ```
pub const PRESENCE_LEAVE: &str = "presence-leave";

/// A user connected to a group, as [`Hub::presence`](crate::Hub::presence) lists them. With
/// feature `json` (on by default) it is `serde::Serialize`, as `{"user":"alice","streams":2,"meta":"Alice"}`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = sse::Hub::new(sse::Config::default());
/// let yo = sse::GroupName::new("yo")?;
/// let alice = sse::Identity::new("alice").with_meta("Alice");
/// let _tab = hub.subscribe(sse::Join::group(yo.clone()).identity(alice.clone()), &Default::default())?;
/// let _other_tab = hub.subscribe(sse::Join::group(yo).identity(alice), &Default::default())?;
/// let present = hub.presence("yo").await?;
/// assert_eq!((present[0].user.as_str(), present[0].streams, present[0].meta.as_str()), ("alice", 2, "Alice"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "json", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Present {
    /// The user id ([`Identity::user`]).
    pub user: String,
    /// How many streams of the group the user has open (in every process, with Redis).
    pub streams: usize,
    /// The metadata of the user's latest stream (of the latest in one of the processes, with
    /// Redis).
    pub meta: String,
}

/// A user's first stream of a group opened, or their last one closed.
pub(crate) enum Change {
    Join { user: String, meta: String },
    Leave { user: String },
}

impl Change {
    /// The event that says so: its name and its JSON data.
    pub(crate) fn event(&self) -> (&'static str, String) {
        let mut data = String::from("{\"user\":");
        match self {
            Change::Join { user, meta } => {
                json_string(&mut data, user);
                data.push_str(",\"meta\":");
                json_string(&mut data, meta);
                data.push('}');
                (PRESENCE_JOIN, data)
            }
            Change::Leave { user } => {
                json_string(&mut data, user);
                data.push('}');
                (PRESENCE_LEAVE, data)
            }
        }
    }
}

/// Appends `text` as a JSON string.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Publishes what a [`Change`] says to its group (given by the hub, which can publish).
pub(crate) type Announce = Arc<dyn Fn(&GroupName, &Change) + Send + Sync>;

pub(crate) struct Presence {
    registry: Arc<Registry>,
    hooks: Hooks,
    settings: Settings,
    /// Runs the hooks and publishes join and leave events, in order, off the delivery path.
    worker: Worker,
    table: Mutex<Table>,
    /// Whether `table.closed` may hold anything: most subscribes then skip the lock.
    any_closed: AtomicBool,
    /// The last stream number given.
    streams: AtomicU64,
    announce: Announce,
    /// Carries counts, reads and closes to the other processes, if any.
    engine: Arc<dyn Engine>,
}

#[derive(Default)]
struct Table {
    /// Per group, each user's streams here.
    groups: HashMap<GroupName, HashMap<String, Count>>,
    /// Per user, what closes each of their streams here.
    users: HashMap<String, Slab<CloseHandle>>,
    /// Closed recently: until when their reconnections are refused.
    closed: HashMap<Closing, Instant>,
}

struct Count {
    streams: usize,
    meta: String,
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

fn forget_expired(closed: &mut HashMap<Closing, Instant>) {
    let now = Instant::now();
    closed.retain(|_, until| *until > now);
}

/// A user's count of streams in a group, after a stream opened or closed.
struct Counted {
    /// A stream opened (or closed).
    opened: bool,
    group: GroupName,
    user: String,
    streams: usize,
    meta: String,
}

impl Presence {
    /// The presence of the streams of `registry`, in every process that shares `engine`; join
    /// and leave events are published with `announce`.
    pub(crate) fn new(
        registry: Arc<Registry>,
        hooks: Hooks,
        settings: Settings,
        engine: Arc<dyn Engine>,
        announce: Announce,
    ) -> Self {
        Presence {
            registry,
            hooks,
            settings,
            worker: Worker::default(),
            table: Mutex::default(),
            any_closed: AtomicBool::new(false),
            streams: AtomicU64::new(0),
            announce,
            engine,
        }
    }

    /// Whether a stream asked for with `last` must be refused with `204 No Content`: it comes
    /// back from a `stream-closed` event, or it is a reconnection (it has a `Last-Event-ID`)
    /// of a user or to a group closed less than `close_memory` ago. A user who opens a stream
    /// afresh (logged in again) is back: their later reconnections are served.
    pub(crate) fn refuses(
        &self,
        groups: &[GroupName],
        identity: Option<&Identity>,
        last: &LastEventId,
    ) -> bool {
        if last.as_bytes() == Some(CLOSED_ID.as_bytes()) {
            return true;
        }
        if !self.any_closed.load(Relaxed) {
            return false;
        }
        let mut table = lock(&self.table);
        forget_expired(&mut table.closed);
        self.any_closed.store(!table.closed.is_empty(), Relaxed);
        let user = identity.map(|who| Closing::User(who.user.clone()));
        if last.as_bytes().is_none() {
            if let Some(user) = user {
                table.closed.remove(&user);
            }
            return false;
        }
        let mut closing = groups.iter().cloned().map(Closing::Group).chain(user);
        closing.any(|closing| table.closed.contains_key(&closing))
    }

    /// A stream opened: runs the open hook, counts it if it has an identity, and returns what
    /// its subscription does once dropped.
    pub(crate) fn opened(
        self: &Arc<Self>,
        groups: &[GroupName],
        identity: Option<Identity>,
        close: CloseHandle,
    ) -> Option<OnClose> {
        let hooked = self.hooks.on_open.is_some() || self.hooks.hear_closes();
        if identity.is_none() && !hooked {
            return None; // nothing to count, nobody to tell
        }
        let number = self.streams.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(StreamInfo::new(number, groups.to_vec(), identity));
        self.hooks.opened(&self.worker, &info);
        let key = info.identity().map(|who| self.count_in(who, groups, close));
        if key.is_none() && !self.hooks.hear_closes() {
            return None;
        }
        let this = self.clone();
        Some(Box::new(move |reason| {
            if let Some(key) = key {
                this.count_out(&info, key);
            }
            this.hooks.closed(&this.worker, info, reason);
        }))
    }

    /// Counts a new stream of `who`; returns its key among the user's streams.
    fn count_in(&self, who: &Identity, groups: &[GroupName], close: CloseHandle) -> usize {
        let mut table = lock(&self.table);
        let key = table
            .users
            .entry(who.user.clone())
            .or_default()
            .insert(close);
        let counted = groups.iter().map(|group| {
            let users = table.groups.entry(group.clone()).or_default();
            let count = users.entry(who.user.clone()).or_insert(Count {
                streams: 0,
                meta: String::new(),
            });
            count.streams += 1;
            count.meta.clone_from(&who.meta);
            Counted {
                opened: true,
                group: group.clone(),
                user: who.user.clone(),
                streams: count.streams,
                meta: who.meta.clone(),
            }
        });
        let counted: Vec<Counted> = counted.collect();
        self.report(table, counted);
        key
    }

    /// A stream counted by [`Presence::count_in`] closed.
    fn count_out(&self, info: &StreamInfo, key: usize) {
        let Some(who) = info.identity() else {
            return;
        };
        let mut table = lock(&self.table);
        if let Some(streams) = table.users.get_mut(&who.user) {
            streams.try_remove(key);
            if streams.is_empty() {
                table.users.remove(&who.user);
            }
        }
        let mut counted = Vec::new();
        for group in info.groups() {
            let Some(users) = table.groups.get_mut(group) else {
                continue;
            };
            let Some(count) = users.get_mut(&who.user) else {
                continue;
            };
            count.streams -= 1;
            counted.push(Counted {
                opened: false,
                group: group.clone(),
                user: who.user.clone(),
                streams: count.streams,
                meta: count.meta.clone(),
            });
            if count.streams == 0 {
                users.remove(&who.user);
                if users.is_empty() {
                    table.groups.remove(group);
                }
            }
        }
        self.report(table, counted);
    }

    /// Passes changed counts on: to a shared engine, which decides joins and leaves, or (in
    /// memory) straight to the join and leave events. Called with the table locked, so changes
    /// are passed on in the order they happened.
    fn report(&self, table: MutexGuard<'_, Table>, counted: Vec<Counted>) {
        if self.engine.shared() {
            for counted in counted {
                let entry = Entry {
                    user: counted.user,
                    streams: counted.streams,
                    meta: counted.meta,
                };
                self.engine.count(counted.group, entry);
            }
            return drop(table);
        }
        let changes = counted.into_iter().filter_map(|counted| {
            let change = match (counted.opened, counted.streams) {
                (false, 0) => Change::Leave { user: counted.user },
                (true, 1) => Change::Join {
                    user: counted.user,
                    meta: counted.meta,
                },
                _ => return None,
            };
            Some((counted.group, change))
        });
        self.announce_all(changes.collect());
        drop(table);
    }

    /// Tells the webhooks of joins and leaves, and publishes their events, on the worker, if
    /// they are wanted.
    fn announce_all(&self, changes: Vec<(GroupName, Change)>) {
        for (group, change) in &changes {
            let (name, data) = change.event();
            self.hooks.presence_changed(group, name, &data);
        }
        if !self.settings.events || changes.is_empty() {
            return;
        }
        let announce = self.announce.clone();
        self.worker.run(move || {
            for (group, change) in &changes {
                announce(group, change);
            }
        });
    }

    /// The hooks and webhooks it tells.
    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// The users with streams of `group` open: here, or with a shared engine in every process.
    pub(crate) fn presence(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Vec<Present>, BrokerError>> + Send + 'static {
        let shared = self.engine.shared().then(|| self.engine.presence(group));
        let local = shared.is_none().then(|| self.local_presence(group));
        async move {
            let Some(reading) = shared else {
                return Ok(local.unwrap_or_default());
            };
            let entries = reading.await?;
            let present = entries.into_iter().map(|entry| Present {
                user: entry.user,
                streams: entry.streams,
                meta: entry.meta,
            });
            Ok(present.collect())
        }
    }

    fn local_presence(&self, group: &str) -> Vec<Present> {
        let table = lock(&self.table);
        let Some(users) = table.groups.get(group) else {
            return Vec::new();
        };
        let mut present: Vec<Present> = users
            .iter()
            .map(|(user, count)| Present {
                user: user.clone(),
                streams: count.streams,
                meta: count.meta.clone(),
            })
            .collect();
        present.sort_by(|a, b| a.user.cmp(&b.user));
        present
    }

    /// Closes the streams of a user or a group here and in every other process.
    pub(crate) fn close(
        &self,
        closing: Closing,
    ) -> impl Future<Output = Result<usize, BrokerError>> + Send + 'static {
        let elsewhere = self.engine.close(&closing);
        let here = self.close_here(closing);
        async move {
            elsewhere.await?;
            Ok(here)
        }
    }

    /// Closes the streams here of a user or a group, and refuses their reconnections for
    /// `close_memory`; how many streams it closed.
    pub(crate) fn close_here(&self, closing: Closing) -> usize {
        let mut table = lock(&self.table);
        let closed = match &closing {
            Closing::User(user) => table.users.get(user).map_or(0, |streams| {
                streams.iter().for_each(|(_, stream)| stream.close());
                streams.len()
            }),
            Closing::Group(group) => self.registry.close_group(group.as_str()),
        };
        tracing::debug!(?closing, closed, "closing streams");
        if !self.settings.close_memory.is_zero() {
            forget_expired(&mut table.closed);
            let until = Instant::now() + self.settings.close_memory;
            table.closed.insert(closing, until);
            self.any_closed.store(true, Relaxed);
        }
        closed
    }
}

/// What a shared engine asks of this process's presence.
impl Presence {
    /// Per group, this process's users in it.
    pub(crate) fn here(&self) -> Vec<(GroupName, Vec<Entry>)> {
        let table = lock(&self.table);
        let entries = |users: &HashMap<String, Count>| {
            let entries = users.iter().map(|(user, count)| Entry {
                user: user.clone(),
                streams: count.streams,
                meta: count.meta.clone(),
            });
            entries.collect()
        };
        let groups = table.groups.iter();
        groups
            .map(|(group, users)| (group.clone(), entries(users)))
            .collect()
    }

    /// Users joined (`streams` 1) or left (0) `group`, in the whole deployment.
    pub(crate) fn changed(&self, group: GroupName, changes: Vec<Entry>) {
        let changes = changes.into_iter().map(|entry| {
            let change = match entry.streams {
                0 => Change::Leave { user: entry.user },
                _ => Change::Join {
                    user: entry.user,
                    meta: entry.meta,
                },
            };
            (group.clone(), change)
        });
        self.announce_all(changes.collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_leave_data_are_json_whatever_the_text() {
        let join = Change::Join {
            user: "a\"b".into(),
            meta: "line\nbreak\u{1}".into(),
        };
        assert_eq!(
            join.event(),
            (
                PRESENCE_JOIN,
                r#"{"user":"a\"b","meta":"line\nbreak\u0001"}"#.to_owned()
            )
        );
        let leave = Change::Leave { user: "é".into() };
        assert_eq!(
            leave.event(),
            (PRESENCE_LEAVE, r#"{"user":"é"}"#.to_owned())
        );
    }
}
