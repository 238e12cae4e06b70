//! Presence and closing streams across processes, on Redis.
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
//! Closing goes over one channel shared by all groups, [`CONTROL_CHANNEL`]: `<process> user <id>`
//! or `<process> group <name>` (on a cluster a sharded channel, `SPUBLISH`). The listener,
//! which every process with streams runs, hears it with its groups' channels and reads its
//! messages with [`closing`].
//!
//! All of it runs as the engine's presence task ([`presence_task`](crate::engine::presence_task)),
//! over the engine's command connections. When Redis does not answer, a change is lost until
//! the next heartbeat writes them all again; reads and closes fail with the error.

use std::{sync::Arc, time::Duration};

use redis::Script;

use super::link::{Router, Target};
use crate::{
    engine::{control, presence_task::Store, Entry},
    identity::Closing,
    BrokerError, GroupName,
};

/// The channel on which processes tell each other to close streams.
pub(super) const CONTROL_CHANNEL: &str = "sse:control";

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

/// This process's side of presence and closes in Redis.
pub(super) struct Presence {
    target: Target,
    ttl: Duration,
    process: Arc<str>,
    router: Arc<Router>,
    sync: Script,
    read: Script,
}

impl Presence {
    pub(super) fn new(
        target: Target,
        ttl: Duration,
        process: Arc<str>,
        router: Arc<Router>,
    ) -> Self {
        Self {
            target,
            ttl,
            process,
            router,
            sync: Script::new(SYNC),
            read: Script::new(READ),
        }
    }
}

impl Store for Presence {
    async fn sync(
        &self,
        group: &GroupName,
        entries: &[Entry],
        full: bool,
    ) -> Result<Vec<Entry>, BrokerError> {
        let mut invocation = self.sync.key(presence_key(group));
        invocation.key(procs_key(group)).arg(&*self.process);
        invocation
            .arg(self.ttl.as_millis() as u64)
            .arg(if full { "1" } else { "0" });
        for entry in entries {
            invocation
                .arg(&entry.user)
                .arg(entry.streams)
                .arg(&entry.meta);
        }
        let slot = self.router.slot_of(group.as_str());
        let reply: Vec<String> = self.router.invoke(slot, &invocation).await?;
        Ok(triples(reply, |joined| Some(usize::from(joined == "1"))))
    }

    async fn read(&self, group: &GroupName) -> Result<Vec<Entry>, BrokerError> {
        let mut invocation = self.read.key(presence_key(group));
        invocation.key(procs_key(group));
        let slot = self.router.slot_of(group.as_str());
        let reply: Vec<String> = self.router.invoke(slot, &invocation).await?;
        Ok(triples(reply, |streams| streams.parse().ok()))
    }

    async fn close(&self, closing: &Closing) -> Result<(), BrokerError> {
        let message = control::close_message(&self.process, closing);
        let mut publishing = redis::cmd(self.target.publish_command());
        publishing.arg(CONTROL_CHANNEL).arg(message);
        // The channel's name has no hash tag: its slot is that of the whole name.
        let slot = self.router.slot_of(CONTROL_CHANNEL);
        self.router.command(slot, &publishing).await
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
