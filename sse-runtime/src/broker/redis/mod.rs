//! The Redis broker: every process using the same Redis (or Redis Cluster) shares ids, history
//! and events.
//!
//! Publishing runs a Lua script on the keys of the groups published to, atomically: for each
//! group, `INCRBY` its id sequence, `XADD` the encoded events to its stream (trimmed to the
//! history bound), and publish them, one message, on its channel. Redis runs scripts one at a
//! time, so the ids of a group's events rise in the order they are delivered, and each
//! process, listening to the group, receives every event of it in id order. No key is shared
//! by groups: a group's keys are all in the hash slot of `{group}`, so groups spread over the
//! nodes of a cluster, where events travel by sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) only
//! within their group's shard. Each process listens only to the groups it has subscribers for
//! (one subscription per group, not per client) and hands each event, stamped once, to its
//! local registry.
//!
//! Both sides run on a thread of the broker's own (`sse-redis`) with a small runtime, started on
//! first use, so they work the same under any runtime of the caller's, or none. Publishes are
//! queued and sent in batches ([`publisher`]): concurrent publishes share round trips, script
//! calls and messages. `publish!` waits for its answer on its own thread;
//! [`Hub::publish_async`](crate::Hub::publish_async) awaits it instead. Both sides send their
//! commands over one connection per node ([`router`]). The listening side ([`listener`]) starts
//! with the first local group: a process that only publishes never listens.
//!
//! Keys of group `g` (see [`Keys`]): `sse:{g}:seq` (the last id given), `sse:{g}:epoch` (the first
//! id of the current sequence: older ids come from before Redis lost it), both kept 7 days after
//! the group's last event; `sse:{g}:history` (a stream with an entry per batch, `<last id>-0`,
//! with the time `t` and the batch `d`: `<first id>:<length>,<length>... <the events, back to
//! back>`; it expires when the group has been quiet for the history age); the channel
//! `sse:{g}:events`, whose messages are batches as in `d`.

use std::{
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use once_cell::sync::OnceCell;
use tokio::sync::{mpsc, oneshot};

use super::{Broker, BrokerError, ControlSink, Publishing};
use crate::{
    event::Draft,
    registry::{Deliver, Held, Registry},
    resume::CatchUp,
    EventId, GroupName, PublishError,
};

mod listener;
mod publisher;
mod router;
mod scripts;
mod wire;

use listener::{Command, Listener};
use publisher::{Publisher, Reply};
use router::Router;

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
}

impl Keys {
    fn of(group: &str) -> Self {
        Self {
            seq: format!("sse:{{{group}}}:seq"),
            epoch: format!("sse:{{{group}}}:epoch"),
            history: format!("sse:{{{group}}}:history"),
            channel: format!("sse:{{{group}}}:events"),
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
/// How long connecting may take before a request gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long Redis may take to answer one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a reconnecting client waits for its missed events before its stream ends (it then
/// comes back after the `retry:` delay and asks again).
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);
/// After a publish found Redis (a cluster's slot) unreachable, how long the others to it fail at
/// once with its error instead of each waiting out the timeouts; then the next one tries again.
const DOWN_FOR: Duration = Duration::from_millis(250);

/// Where Redis is, as the settings name it.
pub(crate) use crate::config::RedisUrl as Target;

impl Target {
    fn unreachable(&self, error: redis::RedisError) -> BrokerError {
        BrokerError::caused_by(format!("cannot reach Redis at {}", self.shown), error)
    }

    fn failed(&self, error: redis::RedisError) -> BrokerError {
        BrokerError::caused_by(format!("Redis at {} failed", self.shown), error)
    }

    fn closed(&self) -> BrokerError {
        BrokerError::new(format!("Redis at {} closed the connection", self.shown))
    }

    /// `connecting`, given up after [`CONNECT_TIMEOUT`].
    async fn connect_within<T>(
        &self,
        connecting: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(connected) => connected.map_err(|e| self.unreachable(e)),
            Err(_) => Err(BrokerError::new(format!(
                "cannot reach Redis at {}: no answer within {CONNECT_TIMEOUT:?}",
                self.shown
            ))),
        }
    }

    /// `asking`, given up after [`COMMAND_TIMEOUT`].
    async fn answer_within<T>(
        &self,
        asking: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, asking).await {
            Ok(answer) => answer.map_err(|e| self.failed(e)),
            Err(_) => Err(self.no_answer()),
        }
    }

    fn no_answer(&self) -> BrokerError {
        BrokerError::new(format!(
            "Redis at {} did not answer within {COMMAND_TIMEOUT:?}",
            self.shown
        ))
    }
}

pub(crate) struct RedisBroker {
    target: Target,
    limits: Limits,
    /// The broker's own thread and runtime, started on first use by either side.
    background: OnceCell<Background>,
    publisher: Arc<Publisher>,
    /// The command connections, shared by both sides.
    router: Arc<Router>,
    registry: Weak<dyn Deliver>,
    /// The listening side, started when the first local group opens.
    listener: OnceCell<mpsc::UnboundedSender<Command>>,
    /// Where the listening side hands the messages of the control channel.
    control: Arc<OnceCell<ControlSink>>,
}

/// The history bound, as the scripts take it.
#[derive(Clone, Copy)]
struct Limits {
    events: usize,
    age_us: u64,
    /// How long a group's sequence lives after its last event.
    seq_ttl_ms: u64,
}

/// A thread named `sse-redis` running a small runtime of its own, on which the broker talks to
/// Redis: it works the same under any runtime of the caller's, or none, and never parks the
/// caller's runtime. It stops, and with it everything spawned on it, when the broker is dropped.
struct Background {
    runtime: tokio::runtime::Handle,
    /// Dropped with the broker, which ends the thread.
    _stop: oneshot::Sender<()>,
}

impl Background {
    fn start() -> Result<Self, BrokerError> {
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sse-redis".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        let _ = started.send(Ok(runtime.handle().clone()));
                        let _ = runtime.block_on(stopped);
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                    }
                }
            });
        let cannot = |why: &dyn std::fmt::Display| {
            BrokerError::new(format!("cannot start the Redis thread: {why}"))
        };
        thread.map_err(|error| cannot(&error))?;
        let runtime = match handle.recv() {
            Ok(Ok(runtime)) => runtime,
            Ok(Err(error)) => return Err(cannot(&error)),
            Err(error) => return Err(cannot(&error)),
        };
        Ok(Self {
            runtime,
            _stop: stop,
        })
    }
}

impl RedisBroker {
    /// A broker on `target` whose groups keep `history` (events, age), delivering to `registry`.
    pub(crate) fn new(
        target: Target,
        history: (usize, Duration),
        registry: Weak<Registry>,
    ) -> Self {
        let limits = Limits {
            events: history.0,
            // PEXPIRE 0 would delete the history at once.
            age_us: (history.1.as_micros() as u64).max(1_000),
            seq_ttl_ms: SEQ_TTL.max(history.1).as_millis() as u64,
        };
        let router = Arc::new(Router::new(target.clone()));
        Self {
            publisher: Arc::new(Publisher::new(target.clone(), limits, router.clone())),
            router,
            target,
            limits,
            background: OnceCell::new(),
            registry,
            listener: OnceCell::new(),
            control: Arc::default(),
        }
    }

    /// The runtime of the broker's thread, started on first use (tried again by the next use
    /// if it could not start), with the publishing side's sender on it.
    fn runtime(&self) -> Result<&tokio::runtime::Handle, BrokerError> {
        let background = self.background.get_or_try_init(|| {
            let background = Background::start()?;
            drop(background.runtime.spawn(self.publisher.clone().run()));
            Ok::<_, BrokerError>(background)
        })?;
        Ok(&background.runtime)
    }

    /// Queues a publish of `draft` to `group`; `reply` gets the answer.
    fn queue(&self, group: &str, draft: Draft, reply: Reply) {
        match self.runtime() {
            Ok(_) => self.publisher.publish(group.to_owned(), draft, reply),
            Err(error) => reply(Err(error)),
        }
    }

    fn tell_listener(&self, command: Command) {
        let listener = self.listener.get_or_init(|| {
            let (commands, received) = mpsc::unbounded_channel();
            let listener = Listener::new(
                self.target.clone(),
                self.limits,
                self.registry.clone(),
                received,
                self.router.clone(),
                self.control.clone(),
            );
            match self.runtime() {
                Ok(runtime) => drop(runtime.spawn(listener.run())),
                Err(error) => tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "cannot start the Redis listener: no events will arrive"
                ),
            }
            commands
        });
        // If the listener is gone, a catch-up's reply channel closes and says so.
        let _ = listener.send(command);
    }
}

/// The broker's thread stopped before it answered.
fn stopped() -> BrokerError {
    BrokerError::new("the Redis thread stopped")
}

impl Broker for RedisBroker {
    fn publish(&self, _: &Registry, group: &str, draft: Draft) -> Result<EventId, PublishError> {
        // A `std` channel: waiting on it neither needs nor disturbs a runtime this thread may
        // be running.
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.queue(
            group,
            draft,
            Box::new(move |answered| {
                let _ = reply.send(answered);
            }),
        );
        let id = answer.recv().unwrap_or_else(|_| Err(stopped()));
        Ok(EventId(id.map_err(PublishError::Broker)?))
    }

    fn publish_async(&self, _: &Registry, group: &str, draft: Draft) -> Publishing {
        let (reply, answer) = oneshot::channel();
        self.queue(
            group,
            draft,
            Box::new(move |answered| {
                let _ = reply.send(answered);
            }),
        );
        Box::pin(async move {
            let id = answer.await.unwrap_or_else(|_| Err(stopped()));
            Ok(EventId(id.map_err(PublishError::Broker)?))
        })
    }

    fn check(&self) -> Result<(), BrokerError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let publisher = self.publisher.clone();
        self.runtime()?.spawn(async move {
            let _ = reply.send(publisher.ping().await);
        });
        answer.recv().unwrap_or_else(|_| Err(stopped()))
    }

    fn shares_history(&self) -> bool {
        true
    }

    fn on_control(&self, sink: ControlSink) {
        let _ = self.control.set(sink);
    }

    fn watch(&self, group: &GroupName, held: Held) {
        self.tell_listener(match held {
            Held::Opened => Command::Subscribe(group.clone()),
            Held::Freed => Command::Unsubscribe(group.clone()),
        });
    }

    fn catch_up(&self, groups: Vec<GroupName>, from: Vec<Option<u64>>) -> CatchUp {
        let (reply, answer) = oneshot::channel();
        self.tell_listener(Command::CatchUp {
            groups,
            from,
            reply,
        });
        Box::pin(async move {
            match tokio::time::timeout(CATCH_UP_PATIENCE, answer).await {
                Ok(Ok(caught_up)) => caught_up,
                Ok(Err(_)) => Err(BrokerError::new("the Redis listener stopped")),
                Err(_) => Err(BrokerError::new(format!(
                    "Redis did not give the missed events within {CATCH_UP_PATIENCE:?}"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_s_keys_share_its_hash_slot_and_its_channel_names_it() {
        let keys = Keys::of("yo.bob");
        for key in [&keys.seq, &keys.epoch, &keys.history, &keys.channel] {
            assert!(key.starts_with("sse:{yo.bob}:"), "{key}");
        }
        assert_eq!(Keys::group_of_channel(&keys.channel), Some("yo.bob"));
        assert_eq!(Keys::group_of_channel("sse:events:yo"), None);
    }
}
