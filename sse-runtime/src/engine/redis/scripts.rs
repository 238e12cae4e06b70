//! The Lua scripts the broker runs in Redis. Redis runs a script at once, so a group's ids, its
//! history and what is published on its channel always agree.

use redis::Script;

/// Run first by both scripts: `now`, Redis's clock in microseconds, and `ensure_seq`. A
/// group's sequence starts at Redis's clock, as in memory: after Redis lost it (restart without
/// persistence, or the group was quiet longer than its sequence lives), ids go on above the old
/// ones, so an old `Last-Event-ID` is seen as too old, not reused. Redis's own clock, so that
/// the clocks of the machines running the processes do not matter.
const PRELUDE: &str = r"
local time = redis.call('TIME')
local now = time[1] * 1000000 + time[2]
local function ensure_seq(seq, epoch, ttl)
  if redis.call('EXISTS', seq) == 0 then
    local micros = string.format('%d', now)
    redis.call('SET', seq, micros, 'PX', ttl)
    redis.call('SET', epoch, micros, 'PX', ttl)
  end
end
";

/// Publishes a batch: events of several groups (whose keys must share a hash slot in a
/// cluster), in one call. KEYS: seq, epoch, history and idempotency key of each entry. ARGV:
/// max events, max age in µs, how long a sequence lives after its last event in ms, the
/// publishing command (`PUBLISH`, or `SPUBLISH` in a cluster), how long an idempotency key is
/// remembered in ms; then for each entry its group's channel, its count of events, the events
/// as `<length>,<length>... <the events, back to back>`, and `1` when its one event carries an
/// idempotency key. Each entry's events get the next ids of their group, are published as one
/// message and kept as one entry of its history, `<first id>:<lengths> <events>` (the entry's
/// id is the last event's). An event whose key was given within the window is not published:
/// its entry answers the id the key got. Redis's work per call hardly depends on how many
/// events it carries. Returns the first id given to each entry.
const PUBLISH: &str = r"
local max_events, max_age, ttl, publish = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local once_ms = ARGV[5]
local oldest_kept = now - max_age
local at = string.format('%d', now)
local history_ttl = math.max(1, math.floor(max_age / 1000))
local firsts = {}
local arg = 6
for g = 1, #KEYS, 4 do
  local seq, epoch, history, once = KEYS[g], KEYS[g + 1], KEYS[g + 2], KEYS[g + 3]
  local channel, count, events = ARGV[arg], tonumber(ARGV[arg + 1]), ARGV[arg + 2]
  local keyed = ARGV[arg + 3] == '1'
  arg = arg + 4
  local given = keyed and redis.call('GET', once)
  if given then
    firsts[#firsts + 1] = given
  else
    local last = redis.call('INCRBY', seq, count)
    if last == count then
      -- A new sequence (or one Redis lost): it starts at Redis's clock, as in `ensure_seq`.
      last = now + count
      redis.call('SET', seq, string.format('%d', last), 'PX', ttl)
      redis.call('SET', epoch, string.format('%d', now), 'PX', ttl)
    else
      redis.call('PEXPIRE', seq, ttl)
      redis.call('PEXPIRE', epoch, ttl)
    end
    local first = string.format('%d', last - count + 1)
    local batch = first .. ':' .. events
    -- Keep the entries holding the last `max_events` events, none older than the max age.
    local keep_from = string.format('%d', math.max(0, last - max_events + 1))
    redis.call('XADD', history, 'MINID', keep_from, string.format('%d-0', last), 't', at, 'd', batch)
    -- By age, every 16 events or so: readers count older entries as gone anyway.
    local oldest = nil
    if math.floor(last / 16) ~= math.floor((last - count) / 16) then
      oldest = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)[1]
    end
    if oldest and tonumber(oldest[2][2]) < oldest_kept then
      -- Up to 16 entries a check: no more were added since the last one.
      local aged = oldest[1]
      for _, entry in ipairs(redis.call('XRANGE', history, '-', '+', 'COUNT', 16)) do
        if tonumber(entry[2][2]) >= oldest_kept then break end
        aged = entry[1]
      end
      redis.call('XTRIM', history, 'MINID', string.match(aged, '^%d+') .. '-1')
    end
    redis.call('PEXPIRE', history, history_ttl)
    redis.call(publish, channel, batch)
    if keyed then redis.call('SET', once, first, 'PX', once_ms) end
    firsts[#firsts + 1] = first
  end
end
return firsts
";

/// KEYS: seq, epoch, history. ARGV: the id after which the group's events are wanted (`-`: none
/// are, only where the group stands; `~N`: its last N events), max events, how long the
/// sequence lives. Returns seq, epoch, now (µs), the highest id trimmed away (all of them, when
/// the history expired), the count of entries holding the events wanted, and each entry's time
/// and batch, oldest first. Ids are consecutive, so what was trimmed away is what comes before
/// the first entry's first id. An entry holds a batch: the last N entries hold the last N
/// events, and maybe more.
const READ: &str = r"
ensure_seq(KEYS[1], KEYS[2], ARGV[3])
local seq = redis.call('GET', KEYS[1])
local trimmed = '0'
local entries = {}
if ARGV[1] ~= '-' then
  local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
  if first == nil then
    -- Expired, trimmed to nothing, or never written: every event up to the last id is gone.
    trimmed = seq
  else
    trimmed = string.format('%d', tonumber(string.match(first[2][4], '^(%d+):')) - 1)
    if string.sub(ARGV[1], 1, 1) == '~' then
      local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', string.sub(ARGV[1], 2))
      for i = #last, 1, -1 do table.insert(entries, last[i]) end
    else
      entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
    end
  end
end
local out = {seq, redis.call('GET', KEYS[2]), string.format('%d', now), trimmed, tostring(#entries)}
for _, entry in ipairs(entries) do
  table.insert(out, entry[2][2])
  table.insert(out, entry[2][4])
end
return out
";

/// The script that publishes batches.
pub(super) fn publish() -> Script {
    Script::new(&format!("{PRELUDE}{PUBLISH}"))
}

/// The script that reads a group's history.
pub(super) fn read() -> Script {
    Script::new(&format!("{PRELUDE}{READ}"))
}
