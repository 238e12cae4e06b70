//! The Redis broker: every process using the same Redis shares ids, history and events.
//!
//! Publishing runs one Lua script on the group's keys only, atomically: `INCR` the group's id
//! sequence, `XADD` the encoded event to the group's stream (trimmed to the history bound),
//! `PUBLISH` it on the group's channel. Redis runs scripts one at a time, so the ids of a group's
//! events rise in the order they are delivered, and each process, listening on one pub/sub
//! connection, receives every event of a group in id order. No key is shared by groups: a
//! group's keys are all in the hash slot of `{group}`, so groups spread over the nodes of a
//! cluster. Each process listens only to the groups it has subscribers for (one `SUBSCRIBE` per
//! group, not per client) and hands each event, stamped once, to its local registry.
//!
//! Both sides run on a thread of the broker's own (`sse-redis`) with a small runtime, started on
//! first use, so they work the same under any runtime of the caller's, or none. Every publish of
//! the process goes over one multiplexed connection, where concurrent publishes are pipelined:
//! they share round trips. `publish!` sends its request there and waits for the answer on its
//! own thread; [`Hub::publish_async`](crate::Hub::publish_async) awaits it instead. The
//! listening side starts with the first local group: a process that only publishes never
//! listens.
//!
//! Keys of group `g` (see [`Keys`]): `sse:{g}:seq` (the last id given), `sse:{g}:epoch` (the first
//! id of the current sequence: older ids come from before Redis lost it), both kept 7 days after
//! the group's last event; `sse:{g}:history` (a stream of `<id>-0` entries with the time `t` and
//! the encoded event `d`; it expires when the group has been quiet for the history age); the
//! channel `sse:{g}:events`.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError, Weak},
    task::Poll,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{
    future::{try_join_all, BoxFuture, Shared},
    FutureExt, StreamExt,
};
use once_cell::sync::OnceCell;
use redis::{
    aio::{MultiplexedConnection, PubSubSink, PubSubStream},
    Script,
};
use tokio::sync::{mpsc, oneshot};

use super::{Broker, BrokerError, Publishing};
use crate::{
    event::Draft,
    registry::{Deliver, Held, Registry},
    resume::{self, CatchUp, CaughtUp, SharedEvent, SharedHistory},
    EventId, GroupName, PublishError,
};

/// The keys of a group: all in the hash slot of `{group}`, so a group lives on one node of a
/// cluster and its script touches nothing else.
struct Keys {
    /// The last id given; it starts at Redis's clock in microseconds.
    seq: String,
    /// The first id of the current sequence: older ids come from before Redis lost it.
    epoch: String,
    /// A stream of `<id>-0` entries with the time `t` (µs) and the encoded event `d`.
    history: String,
    /// Where its events are published: `<id> <encoded event>`.
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
/// How long connecting may take before a publish gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long Redis may take to answer one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a reconnecting client waits for its missed events before its stream ends (it then
/// comes back after the `retry:` delay and asks again).
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);
/// After a publish found Redis unreachable, how long the others fail at once with its error
/// instead of each waiting out the timeouts; then the next one tries again.
const DOWN_FOR: Duration = Duration::from_millis(250);
/// How often the listening side asks Redis whether it is there, and how long it waits for the
/// answer: a Redis that hangs without closing its sockets is noticed within the sum.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_PATIENCE: Duration = Duration::from_secs(1);
/// Reconnection delays of the listening side: doubling from the first to the last.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Run first by both scripts. KEYS: seq, epoch; the last ARGV: how long the sequence lives
/// after its last event, in ms. A group's sequence starts at Redis's clock in
/// microseconds, as in memory: after Redis lost it (restart without persistence, or the group
/// was quiet longer than its sequence lives), ids go on above the old ones, so an old
/// `Last-Event-ID` is seen as too old, not reused. Redis's own clock, so that the clocks of the
/// machines running the processes do not matter.
const ENSURE_SEQ: &str = r"
local time = redis.call('TIME')
local now = time[1] * 1000000 + time[2]
if redis.call('EXISTS', KEYS[1]) == 0 then
  local micros = string.format('%d', now)
  redis.call('SET', KEYS[1], micros, 'PX', ARGV[#ARGV])
  redis.call('SET', KEYS[2], micros, 'PX', ARGV[#ARGV])
end
";

/// KEYS: seq, epoch, history. ARGV: channel, encoded event, max events, max age in µs, how long
/// the sequence lives after its last event in ms.
const PUBLISH: &str = r"
local id = string.format('%d', redis.call('INCR', KEYS[1]))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[3], id .. '-0', 't', string.format('%d', now), 'd', ARGV[2])
-- Trim with XDEL, not MAXLEN: only XDEL records the highest id deleted, which tells a
-- reconnecting client whether it missed events that are gone.
local excess = redis.call('XLEN', KEYS[3]) - tonumber(ARGV[3])
local oldest_kept = now - tonumber(ARGV[4])
for _ = 1, 100 do
  local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
  if oldest == nil or (excess <= 0 and tonumber(oldest[2][2]) >= oldest_kept) then break end
  redis.call('XDEL', KEYS[3], oldest[1])
  excess = excess - 1
end
redis.call('PEXPIRE', KEYS[3], math.max(1, math.floor(tonumber(ARGV[4]) / 1000)))
redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[2])
return id
";

/// KEYS: seq, epoch, history. ARGV: the id after which the group's events are wanted (`-`: none
/// are, only where the group stands), max events, how long the sequence lives. Returns seq, epoch, now (µs), the highest id
/// trimmed away (all of them, when the history expired), the count of entries after the id, and
/// each entry's id, time and encoded event.
const READ: &str = r"
local seq = redis.call('GET', KEYS[1])
local trimmed = '0-0'
local entries = {}
if ARGV[1] ~= '-' then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    -- Expired, or never written: every event up to the group's last id is gone.
    trimmed = seq
  else
    local info = redis.call('XINFO', 'STREAM', KEYS[3])
    for j = 1, #info, 2 do
      if info[j] == 'max-deleted-entry-id' then trimmed = info[j + 1] end
    end
    entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
  end
end
local out = {seq, redis.call('GET', KEYS[2]), string.format('%d', now), trimmed, tostring(#entries)}
for _, entry in ipairs(entries) do
  table.insert(out, entry[1])
  table.insert(out, entry[2][2])
  table.insert(out, entry[2][4])
end
return out
";

/// Where Redis is, as the settings name it.
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
            Err(_) => Err(BrokerError::new(format!(
                "Redis at {} did not answer within {COMMAND_TIMEOUT:?}",
                self.shown
            ))),
        }
    }
}

pub(crate) struct RedisBroker {
    target: Target,
    limits: Limits,
    /// The broker's own thread and runtime, started on first use by either side.
    background: OnceCell<Background>,
    publisher: Arc<Publisher>,
    registry: Weak<dyn Deliver>,
    /// The listening side, started when the first local group opens.
    listener: OnceCell<mpsc::UnboundedSender<Command>>,
}

/// The history bound, as the scripts take it.
#[derive(Clone, Copy)]
struct Limits {
    events: usize,
    age_us: u64,
    /// How long a group's sequence lives after its last event.
    seq_ttl_ms: u64,
}

enum Command {
    Subscribe(GroupName),
    Unsubscribe(GroupName),
    CatchUp {
        groups: Vec<GroupName>,
        from: Vec<Option<u64>>,
        reply: oneshot::Sender<Result<CaughtUp, BrokerError>>,
    },
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

/// What the publishing side asks Redis.
enum Ask {
    /// Run the publish script; the answer is the event's id.
    Publish { group: String, draft: Draft },
    /// Whether Redis answers (what [`sse::init`](crate::init) checks); the answer is 0.
    Ping,
}

/// The publishing side: every publish of the process goes over one multiplexed connection, so
/// concurrent publishes share its round trips (they are pipelined: sent without waiting for
/// the answers before them).
struct Publisher {
    target: Target,
    limits: Limits,
    script: Script,
    /// The connection, or the attempt to make it that every publish meanwhile waits for. `None`
    /// until the first publish, and after a publish on it failed (the next one reconnects).
    connection: Mutex<Option<Connecting>>,
    /// Why the last publish failed, while Redis counts as down.
    down: Mutex<Option<Down>>,
}

type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, BrokerError>>>;

/// Redis found unreachable: until `until`, publishes fail at once with `error` instead of each
/// waiting out the timeouts; then one tries again (`probing`) while the others still fail.
struct Down {
    until: Instant,
    error: BrokerError,
    probing: bool,
}

impl Publisher {
    async fn ask(self: Arc<Self>, ask: Ask) -> Result<u64, BrokerError> {
        self.may_try()?;
        let answer = self.send(&ask).await;
        *self.down.lock().unwrap_or_else(PoisonError::into_inner) = match &answer {
            Ok(_) => None,
            Err(error) => Some(Down {
                until: Instant::now() + DOWN_FOR,
                error: error.clone(),
                probing: false,
            }),
        };
        answer
    }

    /// Whether a request may go to Redis now: not while Redis counts as down, except the one
    /// that tries again after [`DOWN_FOR`].
    fn may_try(&self) -> Result<(), BrokerError> {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        match down.as_mut() {
            None => Ok(()),
            Some(down) if down.probing || Instant::now() < down.until => Err(down.error.clone()),
            Some(down) => {
                down.probing = true;
                Ok(())
            }
        }
    }

    /// Sends `ask`, on a new connection if the shared one turns out to have closed. That is the
    /// only retry: a command that failed otherwise may have reached Redis (a timeout, or a
    /// connection that closed with commands in flight; the `redis` crate does not say which),
    /// and sending a publish again could publish it twice. The connection is replaced instead,
    /// for the next request.
    async fn send(&self, ask: &Ask) -> Result<u64, BrokerError> {
        let mut retried = false;
        loop {
            let connecting = self.connecting();
            let connection = connecting.clone().await;
            let answer = match connection {
                Ok(connection) => self.answer(ask, connection).await,
                Err(error) => Err(Some(error)),
            };
            match answer {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    // Whatever went wrong, the connection may be out of step with Redis, or dead.
                    self.forget(&connecting);
                    match error {
                        Some(error) => return Err(error),
                        None if retried => return Err(self.target.closed()),
                        None => retried = true,
                    }
                }
            }
        }
    }

    /// Redis's answer to `ask` on `connection`, or why there is none: `None` when the
    /// connection had closed before the request was sent (Redis restarted since it was last
    /// used), so it certainly did not reach Redis.
    async fn answer(
        &self,
        ask: &Ask,
        mut connection: MultiplexedConnection,
    ) -> Result<u64, Option<BrokerError>> {
        let connection = &mut connection;
        let asking = async move {
            match ask {
                Ask::Publish { group, draft } => {
                    let keys = Keys::of(group);
                    let mut invocation = self.script.key(keys.seq);
                    invocation
                        .key(keys.epoch)
                        .key(keys.history)
                        .arg(keys.channel)
                        .arg(draft.as_bytes())
                        .arg(self.limits.events)
                        .arg(self.limits.age_us)
                        .arg(self.limits.seq_ttl_ms);
                    invocation.invoke_async(connection).await
                }
                Ask::Ping => redis::cmd("PING").query_async(connection).await.map(|()| 0),
            }
        };
        let mut asking = std::pin::pin!(asking);
        // The connection's driver, which writes to the socket, is a task of this same thread:
        // it cannot have sent anything before the first poll returns. A request refused then
        // was refused by a driver that had stopped, its connection closed.
        let first_poll = std::future::poll_fn(|cx| Poll::Ready(asking.as_mut().poll(cx)));
        if let Poll::Ready(Err(error)) = first_poll.await {
            return Err((!error.is_connection_dropped()).then(|| self.target.failed(error)));
        }
        self.target.answer_within(asking).await.map_err(Some)
    }

    /// The connection, made by the first publish that needs one and shared by the others.
    fn connecting(&self) -> Connecting {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let connecting = connection.get_or_insert_with(|| {
            let target = self.target.clone();
            let making = async move {
                let connecting = target.client.get_multiplexed_async_connection();
                target.connect_within(connecting).await
            };
            making.boxed().shared()
        });
        connecting.clone()
    }

    /// Drops `failed`, unless another publish already replaced it.
    fn forget(&self, failed: &Connecting) {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if connection.as_ref().is_some_and(|c| c.ptr_eq(failed)) {
            *connection = None;
        }
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
        Self {
            publisher: Arc::new(Publisher {
                target: target.clone(),
                limits,
                script: Script::new(&format!("{ENSURE_SEQ}{PUBLISH}")),
                connection: Mutex::new(None),
                down: Mutex::new(None),
            }),
            target,
            limits,
            background: OnceCell::new(),
            registry,
            listener: OnceCell::new(),
        }
    }

    /// The runtime of the broker's thread, started on first use (tried again by the next use
    /// if it could not start).
    fn runtime(&self) -> Result<&tokio::runtime::Handle, BrokerError> {
        let background = self.background.get_or_try_init(Background::start)?;
        Ok(&background.runtime)
    }

    /// Runs `ask` on the broker's runtime, concurrently with the others, and hands its answer
    /// to `reply` there.
    fn ask(
        &self,
        ask: Ask,
        reply: impl FnOnce(Result<u64, BrokerError>) + Send + 'static,
    ) -> Result<(), BrokerError> {
        let publisher = self.publisher.clone();
        self.runtime()?
            .spawn(async move { reply(publisher.ask(ask).await) });
        Ok(())
    }

    /// `ask`'s answer, waited for on this thread (a `std` channel: it neither needs nor
    /// disturbs a runtime this thread may be running).
    fn ask_blocking(&self, ask: Ask) -> Result<u64, BrokerError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.ask(ask, move |answered| {
            let _ = reply.send(answered);
        })?;
        answer.recv().unwrap_or_else(|_| Err(stopped()))
    }

    fn tell_listener(&self, command: Command) {
        let listener = self.listener.get_or_init(|| {
            let (commands, received) = mpsc::unbounded_channel();
            let listener = Listener {
                target: self.target.clone(),
                limits: self.limits,
                registry: self.registry.clone(),
                commands: received,
                read: Script::new(&format!("{ENSURE_SEQ}{READ}")),
                groups: HashMap::new(),
            };
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
        let group = group.to_owned();
        let id = self.ask_blocking(Ask::Publish { group, draft });
        Ok(EventId(id.map_err(PublishError::Broker)?))
    }

    fn publish_async(&self, _: &Registry, group: &str, draft: Draft) -> Publishing {
        let (reply, answer) = oneshot::channel();
        let group = group.to_owned();
        let asked = self.ask(Ask::Publish { group, draft }, move |answered| {
            let _ = reply.send(answered);
        });
        Box::pin(async move {
            asked.map_err(PublishError::Broker)?;
            let id = answer.await.unwrap_or_else(|_| Err(stopped()));
            Ok(EventId(id.map_err(PublishError::Broker)?))
        })
    }

    fn check(&self) -> Result<(), BrokerError> {
        self.ask_blocking(Ask::Ping).map(drop)
    }

    fn shares_history(&self) -> bool {
        true
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

/// The listening side: one pub/sub connection for the groups this process has subscribers
/// for, one connection for reading histories. Commands are handled in the order they were
/// sent, so a catch-up always runs after its groups' `SUBSCRIBE` was confirmed: whatever is
/// published later arrives live, whatever was published earlier is in the history read.
struct Listener {
    target: Target,
    limits: Limits,
    registry: Weak<dyn Deliver>,
    commands: mpsc::UnboundedReceiver<Command>,
    read: Script,
    /// The groups this process listens to, each with its mark: every event of the group with
    /// this id or a lower one was delivered here, or published before the group was listened
    /// to. After a reconnection, what follows the mark is fetched. `None` until the first read
    /// after the group's `SUBSCRIBE`.
    groups: HashMap<GroupName, Option<u64>>,
}

impl Listener {
    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut was_down = false;
        loop {
            let lost = match self.connect().await {
                Ok((sink, messages, connection)) => {
                    if was_down {
                        tracing::info!(redis = %self.target.shown, "Redis is back: listening again");
                    }
                    backoff = FIRST_BACKOFF;
                    match self.serve(sink, messages, connection).await {
                        Ok(()) => return,
                        Err(lost) => lost,
                    }
                }
                Err(lost) => lost,
            };
            was_down = true;
            tracing::warn!(
                redis = %self.target.shown, error = &lost as &dyn std::error::Error, retry_in = ?backoff,
                "Redis link down: streams stay open, events resume when it is back"
            );
            if !self.wait_offline(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(
        &self,
    ) -> Result<(PubSubSink, PubSubStream, MultiplexedConnection), BrokerError> {
        let client = &self.target.client;
        let connecting = async {
            let (sink, messages) = client.get_async_pubsub().await?.split();
            let connection = client.get_multiplexed_async_connection().await?;
            Ok((sink, messages, connection))
        };
        self.target.connect_within(connecting).await
    }

    /// Waits `delay`, keeping track of groups opened and freed meanwhile; `false` when the hub
    /// is gone.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let pause = tokio::time::sleep(delay);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(Command::Subscribe(group)) => {
                        self.groups.entry(group).or_insert(None);
                    }
                    Some(Command::Unsubscribe(group)) => {
                        self.groups.remove(&group);
                    }
                    Some(Command::CatchUp { reply, .. }) => {
                        let down = format!("Redis at {} is unreachable", self.target.shown);
                        let _ = reply.send(Err(BrokerError::new(down)));
                    }
                },
            }
        }
    }

    /// Listens until the connection is lost (`Err`) or the hub is gone (`Ok`).
    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut messages: PubSubStream,
        connection: MultiplexedConnection,
    ) -> Result<(), BrokerError> {
        let groups: Vec<GroupName> = self.groups.keys().cloned().collect();
        let channels: Vec<String> = groups
            .iter()
            .map(|g| Keys::of(g.as_str()).channel)
            .collect();
        if !channels.is_empty() {
            sink.subscribe(&channels)
                .await
                .map_err(|e| self.target.failed(e))?;
        }
        // Back after an outage: fetch what was published while nobody here was listening.
        let marks: Vec<Option<u64>> = groups.iter().map(|group| self.groups[group]).collect();
        let histories = self.read_history(&connection, &groups, &marks).await?;
        let mut missed: Vec<(&GroupName, &SharedEvent)> = groups
            .iter()
            .zip(&marks)
            .zip(&histories)
            .flat_map(|((group, mark), history)| {
                let missed = history.entries.iter();
                let missed = missed.filter(move |e| mark.is_some_and(|mark| e.id > mark));
                missed.map(move |entry| (group, entry))
            })
            .collect();
        missed.sort_by_key(|(_, entry)| entry.at_us);
        for (group, entry) in missed {
            self.deliver(group.as_str(), entry.id, &entry.encoded);
        }
        for (group, history) in groups.into_iter().zip(&histories) {
            self.listening_from(group, history.seq);
        }

        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(BrokerError::new("the pub/sub connection closed"));
                    };
                    self.receive(&message);
                }
                _ = ping.tick() => {
                    // A Redis that hangs (stopped, or cut off without a reset) keeps its
                    // sockets open: only a question it does not answer tells.
                    match tokio::time::timeout(PING_PATIENCE, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(self.target.failed(e)),
                        Err(_) => {
                            return Err(BrokerError::new(format!(
                                "Redis at {} did not answer a PING within {PING_PATIENCE:?}",
                                self.target.shown
                            )))
                        }
                    }
                }
                command = self.commands.recv() => match command {
                    None => return Ok(()),
                    Some(Command::Subscribe(group)) => {
                        if self.groups.contains_key(&group) {
                            continue;
                        }
                        self.groups.insert(group.clone(), None);
                        sink.subscribe(Keys::of(group.as_str()).channel)
                            .await
                            .map_err(|e| self.target.failed(e))?;
                        let read = [group.clone()];
                        let history = self.read_history(&connection, &read, &[None]).await?;
                        self.listening_from(group, history[0].seq);
                    }
                    Some(Command::Unsubscribe(group)) => {
                        if self.groups.remove(&group).is_some() {
                            sink.unsubscribe(Keys::of(group.as_str()).channel)
                                .await
                                .map_err(|e| self.target.failed(e))?;
                        }
                    }
                    Some(Command::CatchUp { groups, from, reply }) => {
                        if reply.is_closed() {
                            continue;
                        }
                        let histories = self.read_history(&connection, &groups, &from).await?;
                        let _ = reply.send(Ok(resume::caught_up(histories, &from, self.limits.age_us)));
                    }
                },
            }
        }
    }

    /// A message on a group's channel: `<id> <encoded event>`.
    fn receive(&mut self, message: &redis::Msg) {
        let Some(group) = Keys::group_of_channel(message.get_channel_name()) else {
            return;
        };
        let payload = message.get_payload_bytes();
        let parsed = payload.iter().position(|&b| b == b' ').and_then(|space| {
            let id = std::str::from_utf8(&payload[..space]).ok()?.parse().ok()?;
            Some((id, &payload[space + 1..]))
        });
        let Some(mark) = self.groups.get_mut(group) else {
            return; // left over from a group just unsubscribed
        };
        match parsed {
            // Already fetched from the history when the link came back.
            Some((id, _)) if mark.is_some_and(|mark| id <= mark) => {}
            Some((id, draft)) => {
                *mark = Some(id);
                self.deliver(group, id, draft);
            }
            None => tracing::warn!(
                channel = message.get_channel_name(),
                "ignored a malformed event"
            ),
        }
    }

    /// Every event of `group` published after the sequence stood at `seq` reaches this process
    /// (its `SUBSCRIBE` was confirmed before `seq` was read), or was fetched.
    fn listening_from(&mut self, group: GroupName, seq: u64) {
        let Some(mark) = self.groups.get_mut(&group) else {
            return;
        };
        let first_time = mark.is_none();
        *mark = Some(mark.map_or(seq, |mark| mark.max(seq)));
        if let (true, Some(registry)) = (first_time, self.registry.upgrade()) {
            registry.complete_after(group.as_str(), seq);
        }
    }

    fn deliver(&self, group: &str, id: u64, draft: &[u8]) {
        if let Some(registry) = self.registry.upgrade() {
            registry.deliver(group, id, draft);
        }
    }

    /// The shared history of each of `groups` after its id in `from`: one script call a group
    /// (a group's keys are in one hash slot, not theirs together), sent together.
    async fn read_history(
        &self,
        connection: &MultiplexedConnection,
        groups: &[GroupName],
        from: &[Option<u64>],
    ) -> Result<Vec<SharedHistory>, BrokerError> {
        let reads = groups.iter().zip(from).map(|(group, after)| {
            let keys = Keys::of(group.as_str());
            let mut invocation = self.read.key(keys.seq);
            invocation.key(keys.epoch).key(keys.history);
            match after {
                // Stream ids are below 2^64; an id above every real one is simply unknown.
                Some(after) => invocation.arg((*after).min(u64::MAX - 1)),
                None => invocation.arg("-"),
            };
            invocation
                .arg(self.limits.events)
                .arg(self.limits.seq_ttl_ms);
            let mut connection = connection.clone();
            async move {
                invocation
                    .invoke_async::<Vec<Vec<u8>>>(&mut connection)
                    .await
            }
        });
        let replies = self.target.answer_within(try_join_all(reads)).await?;
        let histories: Option<Vec<SharedHistory>> =
            replies.into_iter().map(parse_history).collect();
        histories.ok_or_else(|| {
            BrokerError::new(format!(
                "Redis at {} gave an unexpected history",
                self.target.shown
            ))
        })
    }
}

/// The reply of the read script for one group, field by field.
fn parse_history(reply: Vec<Vec<u8>>) -> Option<SharedHistory> {
    let mut items = reply.into_iter();
    // Numbers and stream ids (`<n>-<m>`, of which `n` is ours).
    let number = |item: Option<Vec<u8>>| -> Option<u64> {
        let item = item?;
        let text = std::str::from_utf8(&item).ok()?;
        text.split('-').next()?.parse().ok()
    };
    let mut next = || number(items.next());
    let (seq, epoch, now_us, trimmed, count) = (next()?, next()?, next()?, next()?, next()?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let (id, at_us) = (number(items.next())?, number(items.next())?);
        let encoded = Bytes::from(items.next()?);
        entries.push(SharedEvent { id, at_us, encoded });
    }
    Some(SharedHistory {
        seq,
        epoch,
        now_us,
        trimmed,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reply_is_read_field_by_field() {
        let reply: Vec<Vec<u8>> = ["120", "100", "10000", "105-0", "1", "111-0", "9000", "D"]
            .iter()
            .map(|item| item.as_bytes().to_vec())
            .collect();
        let history = parse_history(reply.clone()).unwrap();
        assert_eq!(
            (history.seq, history.epoch, history.now_us),
            (120, 100, 10_000)
        );
        assert_eq!(history.trimmed, 105);
        assert_eq!(
            (history.entries[0].id, history.entries[0].at_us),
            (111, 9_000)
        );
        assert_eq!(history.entries[0].encoded, "D");
        assert!(parse_history(reply[..6].to_vec()).is_none(), "truncated");
    }

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
