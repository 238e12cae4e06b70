//! Engines: what carries a hub's events, ids, history, presence and closes between processes.
//!
//! The hub owns the pipeline (check names → the engine takes the publish → the registry stores
//! and wakes); an engine is the one plug in it. Two exist: [`Memory`], the default, for which
//! this process is the whole deployment, and the Redis engine (feature `redis`, [`redis`]),
//! which shares everything between the processes on one Redis or Redis Cluster. The hub asks
//! an engine through [`Engine`]; whatever arrives from other processes enters the hub through
//! the one [`Sink`] it hands the engine when it starts. No engine sees the registry.

use std::{future::Future, pin::Pin, sync::Arc};

use crate::{
    event::Draft,
    group::Held,
    identity::Closing,
    resume::{CatchUp, CaughtUp, Since},
    BrokerError, EventId, GroupName, PublishError,
};

mod background;
pub(crate) mod batch;
mod control;
mod down;
mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod presence_task;
mod queue;
#[cfg(feature = "redis")]
mod redis;
mod threaded;

pub(crate) use memory::Memory;

/// An engine's answer to a publish, on its way.
pub(crate) type Publishing = Pin<Box<dyn Future<Output = Result<EventId, PublishError>> + Send>>;

/// An engine's answer to a presence read, on its way.
pub(crate) type PresenceRead =
    Pin<Box<dyn Future<Output = Result<Vec<Entry>, BrokerError>> + Send>>;

/// An engine's answer to a close sent to the other processes, on its way.
pub(crate) type Sent = Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>;

/// What an engine does with a publish.
pub(crate) enum Taken<T> {
    /// Nothing: the event's group numbers it with its own sequence, and keeps it, in this
    /// process. The hub stores it.
    Here(Draft),
    /// Sent: the engine gives it its id and carries it to every process, this one included
    /// (through the [`Sink`]). Here is its answer.
    Sent(T),
}

/// A user in a group: with their count of streams and the metadata of their latest one, or
/// (in [`Sink::presence_changed`]) with 1 when they joined, 0 when they left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) user: String,
    pub(crate) streams: usize,
    pub(crate) meta: String,
}

/// The seam between a hub and what carries its events between processes. Each default is what
/// an engine does when this process is the whole deployment: the in-memory engine's.
pub(crate) trait Engine: Send + Sync {
    /// Starts passing what arrives from other processes to `sink` (the in-memory engine has
    /// no other process: nothing ever arrives).
    fn start(&self, _sink: Arc<dyn Sink>) {}

    /// Stops: nothing more arrives, and the engine lets go of its sink. The hub calls it when
    /// its last handle is dropped.
    fn stop(&self) {}

    /// Whether the engine can be used now (what [`sse::init`](crate::init) checks).
    fn check(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Whether ids, history, presence and closes are shared by processes, kept by the engine,
    /// rather than each group's and each stream's here.
    fn shared(&self) -> bool {
        false
    }

    /// Takes a publish of `draft` to `group`, waiting for the engine's answer. With an
    /// idempotency `key` (a valid one), a publish repeated within the window is answered with
    /// the first one's id and publishes nothing.
    fn publish(
        &self,
        _group: &str,
        draft: Draft,
        _key: Option<&str>,
    ) -> Taken<Result<EventId, PublishError>> {
        Taken::Here(draft)
    }

    /// [`Engine::publish`] for async callers: the answer is waited for without blocking the
    /// caller's thread. The draft is taken at once, whether the answer is awaited or not.
    fn publish_async(&self, _group: &str, draft: Draft, _key: Option<&str>) -> Taken<Publishing> {
        Taken::Here(draft)
    }

    /// `group` started or stopped being held here: start or stop receiving its events.
    fn watch(&self, _group: &GroupName, _held: Held) {}

    /// What came after a position: per group of `groups`, its events from where `from` says
    /// (after an id, its last ones, or none: only where the group stands), from the history the
    /// engine keeps. Asked only when that history is [`shared`](Engine::shared) and the local
    /// rings do not cover what a client needs; the in-memory engine has nothing to add to them.
    fn history(&self, groups: Vec<GroupName>, from: Vec<Since>) -> CatchUp {
        let _ = groups;
        Box::pin(std::future::ready(Ok(CaughtUp::nothing(from))))
    }

    /// The count of `entry.user`'s streams of `group` in this process changed: the engine
    /// tells the deployment, and passes back through the sink who joined or left in it.
    fn count(&self, _group: GroupName, _entry: Entry) {}

    /// The users with streams of `group` open in every process.
    fn presence(&self, _group: &str) -> PresenceRead {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Tells every other process to close the streams of a user or a group.
    fn close(&self, _closing: &Closing) -> Sent {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Where what other processes publish, and say, enters this one: handed by the hub to its
/// engine.
pub(crate) trait Sink: Send + Sync {
    /// An event of `group` (encoded without its id line) with the id the engine gave it, in id
    /// order; dropped when no such group is held here.
    fn event(&self, group: &str, id: u64, encoded: &[u8]);

    /// Every event of `group` with an id above `id` is now handed over: from there on the
    /// local ring is a complete history of the group.
    fn complete_after(&self, group: &str, id: u64);

    /// Users joined (`streams` 1) or left (0) `group`, in the whole deployment.
    fn presence_changed(&self, group: GroupName, changes: Vec<Entry>);

    /// Per group, this process's users in it: what the engine writes again now and then, in
    /// case it lost them.
    fn presence_here(&self) -> Vec<(GroupName, Vec<Entry>)>;

    /// Another process closed the streams of a user or a group.
    fn close(&self, closing: Closing);
}

/// Where an engine is, as `SSE_BROKER_URL` or [`Config::broker`](crate::Config::broker) names
/// it: parsed, and shown without its password. (No variant without an engine feature.)
#[derive(Debug, Clone)]
pub(crate) enum Url {
    /// `redis://…`, `redis+cluster://…`, or several `redis://` URLs: a Redis or a cluster.
    #[cfg(feature = "redis")]
    Redis(redis::Target),
    /// `postgres://…` (or `postgresql://…`): a PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::Target>),
}

impl Url {
    /// The engine named by `url`, or why it cannot be used.
    pub(crate) fn parse(url: &str) -> Result<Self, BrokerError> {
        #[cfg(feature = "redis")]
        if url.starts_with("redis") {
            return redis::Target::parse(url).map(Url::Redis);
        }
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return postgres::Target::parse(url).map(|target| Url::Postgres(Box::new(target)));
        }
        let shown = redacted(url);
        let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
        Err(BrokerError::new(match scheme {
            "redis" | "redis+cluster" => format!(
                "broker {shown:?}: sse was built without its `redis` feature, so events stay in this process"
            ),
            "postgres" | "postgresql" => format!(
                "broker {shown:?}: sse was built without its `postgres` feature, so events stay in this process"
            ),
            _ => format!(
                "broker {shown:?}: unknown kind, expected redis://, redis+cluster:// or postgres://"
            ),
        }))
    }

    /// The engine this URL names, for a hub whose groups keep `history`.
    pub(crate) fn engine(&self, history: History) -> Arc<dyn Engine> {
        match *self {
            #[cfg(feature = "redis")]
            Url::Redis(ref target) => Arc::new(redis::RedisEngine::new(target.clone(), history)),
            #[cfg(feature = "postgres")]
            Url::Postgres(ref target) => {
                Arc::new(postgres::PostgresEngine::new(*target.clone(), history))
            }
        }
    }
}

/// How much history each group keeps, as the settings say: the engine keeps as much.
#[derive(Debug, Clone, Copy)]
pub(crate) struct History {
    pub(crate) events: usize,
    pub(crate) age: std::time::Duration,
    /// How long a publish's idempotency key is remembered.
    pub(crate) idempotency_window: std::time::Duration,
    /// How long the users of a process that died stay present.
    pub(crate) presence_ttl: std::time::Duration,
}

/// The engine of a process-wide hub whose `SSE_BROKER_URL` is wrong: every publish says so,
/// rather than keeping events in a process that was meant to share them.
pub(crate) struct Unusable(pub(crate) BrokerError);

impl Engine for Unusable {
    fn check(&self) -> Result<(), BrokerError> {
        Err(self.0.clone())
    }

    fn publish(&self, _: &str, _: Draft, _: Option<&str>) -> Taken<Result<EventId, PublishError>> {
        Taken::Sent(Err(PublishError::Broker(self.0.clone())))
    }

    fn publish_async(&self, _: &str, _: Draft, _: Option<&str>) -> Taken<Publishing> {
        let refused = Err(PublishError::Broker(self.0.clone()));
        Taken::Sent(Box::pin(std::future::ready(refused)))
    }
}

/// `url` with its password hidden, fit for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("redis://:secret@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
    }
}
