//! Presence and closing across processes, on Redis.
//!
//! Keys of group `g`, both in the hash slot of `{g}` (so this works on a cluster):
//! - `sse:{g}:presence`, a hash: per user, a JSON object giving, per process, the user's count
//!   of open streams there and the metadata of their latest one: `{"p1a2…":[2,"meta"]}`;
//! - `sse:{g}:procs`, a sorted set: per process, until when (Redis's clock, ms) its entries
//!   count. A process pushes that deadline to `now + ttl` with every write, and at least every
//!   `ttl / 3` (its heartbeat, which also writes all its entries again, in case Redis lost
//!   them). Readers ignore the entries of a process past its deadline, so the users of a
//!   process that died vanish at most `ttl` after its last heartbeat. Both keys expire `ttl`
//!   after their last write.
//!
//! Every change of a user's count in a process runs one script on the group's keys, which
//! tells whether the user thereby joined the group (their first stream in any live process)
//! or left it (their last one): Redis runs scripts one at a time, so each first stream and
//! each last one is seen by exactly one script. A heartbeat also removes the entries of
//! processes past their deadline, and reports as left the users who had no other.
//!
//! Closing goes over one channel shared by all groups, `sse:control`: `<process> user <id>` or
//! `<process> group <name>` (on a cluster a sharded channel, `SPUBLISH`). The broker's
//! listener, which every process with streams runs, listens to it with its groups' channels
//! and hands its messages here ([`Shared::control_sink`]).
//!
//! All of it runs on a thread of its own (`sse-presence`), one command at a time, in the order
//! they were given: a process's changes reach Redis in the order they happened.

use std::{
    collections::hash_map::RandomState,
    future::Future,
    hash::BuildHasher,
    sync::{Mutex, PoisonError, Weak},
    time::Duration,
};

use once_cell::sync::OnceCell;
use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    Cmd, Pipeline, RedisFuture, Script, Value,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    broker::{ControlSink, CONTROL_CHANNEL},
    config::{RedisNodes, RedisUrl},
    identity::Closing,
    BrokerError, GroupName,
};
/// How long connecting, or one command, may take.
const PATIENCE: Duration = Duration::from_secs(2);
/// How long to wait before connecting again after the link was lost.
const BACKOFF: Duration = Duration::from_millis(500);

/// KEYS: presence, procs. ARGV: process, ttl (ms), full ('1': the process's whole list for the
/// group; the process's entries of users not in it are removed, and so are the entries of dead
/// processes), then `user, streams, meta` triples. Returns `user, joined ('1') or left ('0'),
/// meta` triples.
const SYNC: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, ttl, full = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
redis.call('ZADD', KEYS[2], now + ttl, me)
local dead = {}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)) do dead[p] = true end
local mine, users = {}, {}
for i = 4, #ARGV, 3 do
  mine[ARGV[i]] = {tonumber(ARGV[i + 1]), ARGV[i + 2]}
  table.insert(users, ARGV[i])
end
if full then
  for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
    if mine[user] == nil then
      mine[user] = false
      table.insert(users, user)
    end
  end
end
local out = {}
for _, user in ipairs(users) do
  local raw = redis.call('HGET', KEYS[1], user)
  local entry = {}
  if raw then entry = cjson.decode(raw) end
  local before = next(entry) ~= nil
  for p, _ in pairs(entry) do
    if dead[p] then entry[p] = nil end
  end
  local m = mine[user]
  if m and m[1] > 0 then entry[me] = m else entry[me] = nil end
  local after = next(entry) ~= nil
  if after then
    redis.call('HSET', KEYS[1], user, cjson.encode(entry))
  else
    redis.call('HDEL', KEYS[1], user)
  end
  if after and not before then
    table.insert(out, user); table.insert(out, '1'); table.insert(out, m and m[2] or '')
  elseif before and not after then
    table.insert(out, user); table.insert(out, '0'); table.insert(out, '')
  end
end
if full then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now) end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return out
";

/// KEYS: presence, procs. Returns `user, streams, meta` triples: the users with streams in
/// processes before their deadline, their streams summed.
const READ: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do live[p] = true end
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local streams, meta = 0, ''
  for p, count in pairs(cjson.decode(all[i + 1])) do
    if live[p] then
      streams = streams + count[1]
      meta = count[2]
    end
  end
  if streams > 0 then
    table.insert(out, all[i]); table.insert(out, string.format('%d', streams)); table.insert(out, meta)
  end
end
return out
";

/// A user in a group: with their count of streams and the metadata of their latest one, or
/// (in [`Local::changed`]) with 1 when they joined, 0 when they left.
pub(crate) struct Entry {
    pub(crate) user: String,
    pub(crate) streams: usize,
    pub(crate) meta: String,
}

/// What the Redis side asks of this process's presence.
pub(crate) trait Local: Send + Sync {
    /// Per group, this process's users in it.
    fn snapshot(&self) -> Vec<(GroupName, Vec<Entry>)>;
    /// Users joined (`streams` 1) or left (0) `group`, in the whole deployment.
    fn changed(&self, group: GroupName, changes: Vec<Entry>);
    /// Another process closed the streams of a user or a group.
    fn closed_elsewhere(&self, closing: Closing);
}

enum Command {
    Update(GroupName, Entry),
    Read(GroupName, oneshot::Sender<Result<Vec<Entry>, BrokerError>>),
    Close(Closing, oneshot::Sender<Result<(), BrokerError>>),
}

/// The Redis side of a hub's presence; its thread starts with the first use.
pub(crate) struct Shared {
    target: RedisUrl,
    ttl: Duration,
    local: Weak<dyn Local>,
    /// Names this process in Redis.
    process: String,
    commands: OnceCell<Mutex<mpsc::UnboundedSender<Command>>>,
}

impl Shared {
    pub(crate) fn new(target: RedisUrl, ttl: Duration, local: Weak<dyn Local>) -> Self {
        let process = format!("p{:016x}", RandomState::new().hash_one(std::process::id()));
        Self {
            target,
            ttl,
            local,
            process,
            commands: OnceCell::new(),
        }
    }

    /// What the broker's listener hands the control channel's messages to: closes from other
    /// processes.
    pub(crate) fn control_sink(&self) -> ControlSink {
        let (local, process) = (self.local.clone(), self.process.clone());
        std::sync::Arc::new(move |message: &[u8]| {
            let Some(closing) = parse_close(message, &process) else {
                return;
            };
            if let Some(local) = local.upgrade() {
                local.closed_elsewhere(closing);
            }
        })
    }

    /// The count of `user`'s streams of `group` here changed.
    pub(crate) fn update(&self, group: GroupName, user: String, streams: usize, meta: String) {
        let entry = Entry {
            user,
            streams,
            meta,
        };
        self.send(Command::Update(group, entry));
    }

    /// The users with streams of `group` open, in every live process.
    pub(crate) fn read(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Vec<Entry>, BrokerError>> + Send + 'static {
        let group = GroupName::new(group);
        let (reply, answer) = oneshot::channel();
        if let Ok(group) = &group {
            self.send(Command::Read(group.clone(), reply));
        }
        async move {
            match group {
                // No stream can be in a group with an invalid name.
                Err(_) => Ok(Vec::new()),
                Ok(_) => answer.await.unwrap_or_else(|_| Err(stopped())),
            }
        }
    }

    /// Tells every other process to close these streams.
    pub(crate) fn close(
        &self,
        closing: &Closing,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Close(closing.clone(), reply));
        async move { answer.await.unwrap_or_else(|_| Err(stopped())) }
    }

    fn send(&self, command: Command) {
        let commands = self.commands.get_or_init(|| {
            let (commands, received) = mpsc::unbounded_channel();
            let side = Side {
                target: self.target.clone(),
                ttl: self.ttl,
                local: self.local.clone(),
                process: self.process.clone(),
                sync: Script::new(SYNC),
                read: Script::new(READ),
            };
            let started = std::thread::Builder::new()
                .name("sse-presence".into())
                .spawn(move || side.run_on_own_runtime(received));
            if let Err(error) = started {
                tracing::error!(%error, "cannot start the sse-presence thread");
            }
            Mutex::new(commands)
        });
        let commands = commands.lock().unwrap_or_else(PoisonError::into_inner);
        // A stopped thread answers nothing: the reply's sender is dropped, which says so.
        let _ = commands.send(command);
    }
}

fn stopped() -> BrokerError {
    BrokerError::new("the Redis presence thread stopped")
}

/// The thread's side.
struct Side {
    target: RedisUrl,
    ttl: Duration,
    local: Weak<dyn Local>,
    process: String,
    sync: Script,
    read: Script,
}

impl Side {
    fn run_on_own_runtime(self, commands: mpsc::UnboundedReceiver<Command>) {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.run(commands)),
            Err(error) => tracing::error!(%error, "cannot start the Redis presence runtime"),
        }
    }

    async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let lost = match self.connect().await {
                Ok(connection) => match self.serve(connection, &mut commands).await {
                    Ok(()) => return,
                    Err(lost) => lost,
                },
                Err(lost) => lost,
            };
            tracing::warn!(
                redis = %self.target.shown, error = &lost as &dyn std::error::Error,
                "Redis presence link down: presence and closes wait until it is back"
            );
            let pause = tokio::time::sleep(BACKOFF);
            tokio::pin!(pause);
            // Meanwhile reads and closes fail; changes are written again by the next heartbeat.
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    command = commands.recv() => match command {
                        None => return,
                        Some(Command::Read(_, reply)) => drop(reply.send(Err(lost.clone()))),
                        Some(Command::Close(_, reply)) => drop(reply.send(Err(lost.clone()))),
                        Some(Command::Update(..)) => {}
                    },
                }
            }
        }
    }

    async fn connect(&self) -> Result<Link, BrokerError> {
        match &self.target.nodes {
            RedisNodes::Single(client) => {
                let connecting = client.get_multiplexed_async_connection();
                self.within(connecting).await.map(Link::Single)
            }
            RedisNodes::Cluster(seeds) => {
                let connecting = async {
                    let builder = ClusterClientBuilder::new(seeds.clone())
                        .connection_timeout(PATIENCE)
                        .response_timeout(PATIENCE);
                    builder.build()?.get_async_connection().await
                };
                self.within(connecting).await.map(Link::Cluster)
            }
        }
    }

    /// `asking`, given up after [`PATIENCE`].
    async fn within<T>(
        &self,
        asking: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        let shown = &self.target.shown;
        match tokio::time::timeout(PATIENCE, asking).await {
            Ok(answer) => {
                answer.map_err(|e| BrokerError::caused_by(format!("Redis at {shown} failed"), e))
            }
            Err(_) => Err(BrokerError::new(format!(
                "Redis at {shown} did not answer within {PATIENCE:?}"
            ))),
        }
    }

    /// Serves commands and heartbeats until the link is lost (`Err`) or the hub is gone (`Ok`).
    async fn serve(
        &self,
        mut connection: Link,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), BrokerError> {
        let mut heartbeat = tokio::time::interval(self.ttl / 3);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let Some(local) = self.local.upgrade() else { return Ok(()) };
                    let snapshot = local.snapshot();
                    drop(local);
                    for (group, entries) in snapshot {
                        self.sync(&mut connection, group, &entries, true).await?;
                    }
                }
                command = commands.recv() => match command {
                    None => return Ok(()),
                    Some(Command::Update(group, entry)) => {
                        self.sync(&mut connection, group, &[entry], false).await?;
                    }
                    Some(Command::Read(group, reply)) => {
                        let read = self.read_group(&mut connection, &group).await;
                        let failed = read.as_ref().err().cloned();
                        let _ = reply.send(read);
                        if let Some(failed) = failed {
                            return Err(failed);
                        }
                    }
                    Some(Command::Close(closing, reply)) => {
                        let message = match &closing {
                            Closing::User(user) => format!("{} user {user}", self.process),
                            Closing::Group(group) => format!("{} group {group}", self.process),
                        };
                        let mut publishing = redis::cmd(connection.publish());
                        publishing.arg(CONTROL_CHANNEL).arg(message);
                        let sent = self.within(publishing.query_async::<()>(&mut connection)).await;
                        let failed = sent.as_ref().err().cloned();
                        let _ = reply.send(sent);
                        if let Some(failed) = failed {
                            return Err(failed);
                        }
                    }
                },
            }
        }
    }

    /// Writes this process's `entries` of `group` (all of them when `full`), and passes on who
    /// joined or left.
    async fn sync(
        &self,
        connection: &mut Link,
        group: GroupName,
        entries: &[Entry],
        full: bool,
    ) -> Result<(), BrokerError> {
        let mut invocation = self.sync.key(presence_key(&group));
        invocation.key(procs_key(&group)).arg(&self.process);
        invocation
            .arg(self.ttl.as_millis() as u64)
            .arg(if full { "1" } else { "0" });
        for entry in entries {
            invocation
                .arg(&entry.user)
                .arg(entry.streams)
                .arg(&entry.meta);
        }
        let reply: Vec<String> = self.within(invocation.invoke_async(connection)).await?;
        let changes = triples(reply, |joined| Some(usize::from(joined == "1")));
        if let (false, Some(local)) = (changes.is_empty(), self.local.upgrade()) {
            local.changed(group, changes);
        }
        Ok(())
    }

    async fn read_group(
        &self,
        connection: &mut Link,
        group: &GroupName,
    ) -> Result<Vec<Entry>, BrokerError> {
        let mut invocation = self.read.key(presence_key(group));
        invocation.key(procs_key(group));
        let reply: Vec<String> = self.within(invocation.invoke_async(connection)).await?;
        Ok(triples(reply, |streams| streams.parse().ok()))
    }
}

/// A connection to the one Redis, or to a cluster: the `redis` crate's cluster connection, which
/// sends each command to the node of its keys' slot. Presence runs one command at a time, so a
/// node that hangs holding up the others costs it nothing more.
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Link {
    /// How the control channel is published to: sharded on a cluster, where the listener
    /// hears it with its groups' sharded channels.
    fn publish(&self) -> &'static str {
        match self {
            Link::Single(_) => "PUBLISH",
            Link::Cluster(_) => "SPUBLISH",
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(cmd),
            Link::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}

/// A message of the control channel as a close, unless this process sent it (and closed its
/// streams already) or it is malformed.
fn parse_close(message: &[u8], this_process: &str) -> Option<Closing> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.splitn(3, ' ');
    let (process, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
    if process == this_process {
        return None;
    }
    match kind {
        "user" => Some(Closing::User(name.to_owned())),
        "group" => GroupName::new(name).ok().map(Closing::Group),
        _ => None,
    }
}

fn presence_key(group: &GroupName) -> String {
    format!("sse:{{{group}}}:presence")
}

fn procs_key(group: &GroupName) -> String {
    format!("sse:{{{group}}}:procs")
}

/// A reply of `user, number, meta` triples as entries (`number` read by `streams`; a triple it
/// cannot read is skipped).
fn triples(reply: Vec<String>, streams: impl Fn(&str) -> Option<usize>) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(reply.len() / 3);
    let mut items = reply.into_iter();
    while let (Some(user), Some(number), Some(meta)) = (items.next(), items.next(), items.next()) {
        if let Some(streams) = streams(&number) {
            entries.push(Entry {
                user,
                streams,
                meta,
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_s_presence_keys_share_its_hash_slot() {
        let group = GroupName::new("yo.bob").unwrap();
        assert_eq!(presence_key(&group), "sse:{yo.bob}:presence");
        assert_eq!(procs_key(&group), "sse:{yo.bob}:procs");
    }

    #[test]
    fn closes_are_read_from_other_processes_only() {
        assert_eq!(
            parse_close(b"p1 user alice smith", "p2"),
            Some(Closing::User("alice smith".into()))
        );
        let room = GroupName::new("room.7").unwrap();
        assert_eq!(
            parse_close(b"p1 group room.7", "p2"),
            Some(Closing::Group(room))
        );
        assert_eq!(parse_close(b"p1 user alice", "p1"), None, "its own");
        assert_eq!(parse_close(b"p1 group not a group", "p2"), None);
        assert_eq!(parse_close(b"p1 nothing", "p2"), None);
    }

    #[test]
    fn replies_are_read_three_by_three() {
        let reply = ["alice", "2", "m", "bob", "x", "", "carol"].map(String::from);
        let entries = triples(reply.to_vec(), |n| n.parse().ok());
        let read: Vec<(&str, usize)> = entries
            .iter()
            .map(|e| (e.user.as_str(), e.streams))
            .collect();
        assert_eq!(read, [("alice", 2)]);
    }
}
