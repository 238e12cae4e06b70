//! The Redis engine: every process using the same Redis (or Redis Cluster) shares ids, history
//! and events.
//!
//! Publishing runs a Lua script on the keys of the groups published to, atomically: for each
//! group, `INCRBY` its id sequence, `XADD` the encoded events to its stream (trimmed to the
//! history bound: roughly, by whole nodes of the stream, and reading skips the rest), and
//! publish them, one message, on its channel. Events with idempotency keys travel in their
//! group's message too; the script drops those whose key it has seen. Redis runs scripts one at a
//! time, so the ids of a group's events rise in the order they are delivered, and each
//! process, listening to the group, receives every event of it in id order. No key is shared
//! by groups: a group's keys are all in the hash slot of `{group}`, so groups spread over the
//! nodes of a cluster, where events travel by sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) only
//! within their group's shard. Each process listens only to the groups it has subscribers for
//! (one subscription per group, not per client) and hands each event, stamped once, to its
//! local registry.
//!
//! Everything runs on a thread of the engine's own (`sse-redis`) with a small runtime, started
//! on first use, so it works the same under any runtime of the caller's, or none; how Redis is
//! reached (connections, timeouts, backoff) is [`link`]'s alone. Publishes are queued and sent
//! in batches ([`publisher`]): concurrent publishes share round trips, script calls and
//! messages. `publish!` waits for its answer on its own thread;
//! [`Hub::publish_async`](crate::Hub::publish_async) awaits it instead. The listening side
//! ([`listener`]) starts with the first local group: a process that only publishes never
//! listens. Presence and closes ([`presence`]) use the same command connections, and closes
//! from other processes arrive on the listening side's connection.
//!
//! Keys of group `g` (see [`Keys`]): `sse:{g}:seq` (the last id given), `sse:{g}:epoch` (the first
//! id of the current sequence: older ids come from before Redis lost it), both kept 7 days after
//! the group's last event; `sse:{g}:history` (a stream with an entry per batch, `<last id>-0`,
//! with the time `t` and the batch `d`: `<first id>:<length>,<length>... <the events, back to
//! back>`; it expires when the group has been quiet for the history age); the channel
//! `sse:{g}:events`, whose messages are batches as in `d`; `sse:{g}:seen:0` and `:1` (hashes of
//! the ids idempotency keys got, with their time, each holding at most two windows of them).
//! Each process renews a group's expiries at most every [`RENEWAL`], setting them that much
//! longer, and reckons Redis's clock ([`clock`]): a lone publish pays no call for either.

use std::{sync::Arc, time::Duration};

use once_cell::sync::OnceCell;
use tokio::sync::mpsc;

use super::{
    background::Background,
    control,
    presence_task::{self, ClosesHeard},
    queue::Pending,
    threaded::{self, Listening, Tasks, Threaded},
    History, Sink,
};
use crate::BrokerError;

mod clock;
mod link;
mod listener;
mod presence;
mod publisher;
mod scripts;
mod wire;

use link::Router;
pub(crate) use link::Target;
use listener::Listener;
use presence::Presence;
use publisher::Publisher;

/// The keys of a group: all in the hash slot of `{group}`, so a group lives on one node of a
/// cluster and its script touches nothing else.
struct Keys {
    /// The last id given; it starts at Redis's clock in microseconds.
    seq: String,
    /// The first id of the current sequence: older ids come from before Redis lost it.
    epoch: String,
    /// A stream with an entry per batch: its id is `<the batch's last id>-0`, with the time
    /// `t` (µs) and the batch `d` (see [`wire`]).
    history: String,
    /// Where its batches are published (sharded in a cluster).
    channel: String,
    /// The two hashes of the idempotency keys given (see [`scripts`]).
    seen: [String; 2],
}

impl Keys {
    fn of(group: &str) -> Self {
        Self {
            seq: format!("sse:{{{group}}}:seq"),
            epoch: format!("sse:{{{group}}}:epoch"),
            history: format!("sse:{{{group}}}:history"),
            channel: format!("sse:{{{group}}}:events"),
            seen: [0, 1].map(|parity| format!("sse:{{{group}}}:seen:{parity}")),
        }
    }

    /// The group a channel belongs to.
    fn group_of_channel(channel: &str) -> Option<&str> {
        channel.strip_prefix("sse:{")?.strip_suffix("}:events")
    }
}

/// How long a group's sequence outlives its last event (at least), so a client that comes back
/// to a group whose history expired learns that it missed events.
const SEQ_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a process publishing to a group renews its expiries (at most): a lone publish then
/// makes no call for them, and a quiet group's history outlives its age by this much at most.
const RENEWAL: Duration = Duration::from_secs(1);
/// After a publish found Redis (a cluster's slot) unreachable, how long the others to it fail at
/// once with its error instead of each waiting out the timeouts; then the next one tries again.
const DOWN_FOR: Duration = Duration::from_millis(250);

pub(crate) struct RedisEngine {
    target: Target,
    limits: Limits,
    /// The engine's own thread and runtime, started on first use, until the engine stops.
    background: OnceCell<Background>,
    publisher: Arc<Publisher>,
    /// The command connections, shared by publishing, listening and presence.
    router: Arc<Router>,
    /// Names this process in Redis: in presence entries and on the control channel.
    process: Arc<str>,
    /// The listening side, started when the first local group opens, and presence and closes,
    /// started with the first stream that has an identity, or close.
    tasks: Tasks,
}

/// The history bound, as the scripts take it.
#[derive(Clone, Copy)]
struct Limits {
    events: usize,
    age_us: u64,
    /// How long a group's sequence lives after its last event.
    seq_ttl_ms: u64,
    /// How long a process's presence entries last unless refreshed.
    presence_ttl: Duration,
    /// How long an idempotency key is remembered, in ms.
    once_ms: u64,
    /// How often publishing renews a group's expiries, in ms: they are set this much longer.
    renewal_ms: u64,
}

impl RedisEngine {
    /// An engine on `target` whose groups keep `history`.
    pub(crate) fn new(target: Target, history: History) -> Self {
        let limits = Limits {
            events: history.events,
            // PEXPIRE 0 would delete the history at once.
            age_us: (history.age.as_micros() as u64).max(1_000),
            seq_ttl_ms: SEQ_TTL.max(history.age).as_millis() as u64,
            presence_ttl: history.presence_ttl,
            once_ms: history.idempotency_window.as_millis().max(1) as u64,
            renewal_ms: RENEWAL.min(history.age).as_millis().max(1) as u64,
        };
        let router = Arc::new(Router::new(target.clone()));
        Self {
            publisher: Arc::new(Publisher::new(target.clone(), limits, router.clone())),
            router,
            target,
            limits,
            background: OnceCell::new(),
            process: control::process_name().into(),
            tasks: Tasks::default(),
        }
    }

    /// The runtime of the engine's thread, started on first use (tried again by the next use
    /// if it could not start), with the publishing side's sender on it.
    fn runtime(&self) -> Result<&tokio::runtime::Handle, BrokerError> {
        let background = self.background.get_or_try_init(|| {
            let background = Background::start("Redis")?;
            drop(background.runtime.spawn(self.publisher.clone().run()));
            Ok::<_, BrokerError>(background)
        })?;
        Ok(&background.runtime)
    }
}

/// The engine's thread stopped before it answered.
fn stopped() -> BrokerError {
    BrokerError::new("the Redis thread stopped")
}

impl Threaded for RedisEngine {
    const NAME: &'static str = "Redis";

    fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    fn thread(&self) -> Result<(), BrokerError> {
        self.runtime().map(drop)
    }

    fn enqueue(&self, publish: Pending) {
        self.publisher.publish(publish);
    }

    fn start_listener(
        &self,
        sink: Arc<dyn Sink>,
        commands: mpsc::UnboundedReceiver<Listening>,
        closes: ClosesHeard,
    ) -> Result<(), BrokerError> {
        let (target, process, router) = (
            self.target.clone(),
            self.process.clone(),
            self.router.clone(),
        );
        let listener = Listener::new(target, self.limits, (sink, closes), process, router);
        self.runtime()?.spawn(threaded::listen(listener, commands));
        Ok(())
    }

    fn start_presence(
        &self,
        sink: Arc<dyn Sink>,
        commands: mpsc::UnboundedReceiver<presence_task::Command>,
        closes: ClosesHeard,
    ) -> Result<(), BrokerError> {
        let (target, ttl) = (self.target.clone(), self.limits.presence_ttl);
        let (process, router) = (self.process.clone(), self.router.clone());
        let shown = target.shown.clone();
        let store = Presence::new(target, ttl, process, router);
        let running = presence_task::run(store, sink, (ttl, shown), closes, commands);
        self.runtime()?.spawn(running);
        Ok(())
    }

    fn stop_thread(&self) {
        if let Some(background) = self.background.get() {
            background.stop();
        }
        self.publisher.stop();
    }

    fn reachable(&self) -> Result<(), BrokerError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let publisher = self.publisher.clone();
        self.runtime()?.spawn(async move {
            let _ = reply.send(publisher.ping().await);
        });
        answer.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_s_keys_share_its_hash_slot_and_its_channel_names_it() {
        let keys = Keys::of("yo.bob");
        let [even, odd] = &keys.seen;
        for key in [
            &keys.seq,
            &keys.epoch,
            &keys.history,
            &keys.channel,
            even,
            odd,
        ] {
            assert!(key.starts_with("sse:{yo.bob}:"), "{key}");
        }
        assert_eq!(Keys::group_of_channel(&keys.channel), Some("yo.bob"));
        assert_eq!(Keys::group_of_channel("sse:events:yo"), None);
    }
}
