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

/// Publishes a batch: several events of several groups (whose keys must share a hash slot in a
/// cluster), in one call. KEYS: seq, epoch, history of each group. ARGV: max events, max age
/// in µs, how long a sequence lives after its last event in ms, the publishing command
/// (`PUBLISH`, or `SPUBLISH` in a cluster); then for each group its channel, its count of
/// events, their lengths (`<n>,<n>...`) and the events. Returns the first id given to each
/// group; its events have that id and the ones after it, in order.
const PUBLISH: &str = r"
-- Trim with XDEL, not MAXLEN: only XDEL records the highest id deleted, which tells a
-- reconnecting client whether it missed events that are gone. At most `budget` entries go.
local function trim(history, max_events, oldest_kept, budget)
  local excess = redis.call('XLEN', history) - max_events
  local extra = 1
  while budget > 0 do
    local want = math.min(math.max(excess, 0) + extra, budget)
    local oldest = redis.call('XRANGE', history, '-', '+', 'COUNT', want)
    local doomed = {}
    for _, entry in ipairs(oldest) do
      if excess <= 0 and tonumber(entry[2][2]) >= oldest_kept then break end
      doomed[#doomed + 1] = entry[1]
      excess = excess - 1
    end
    if #doomed > 0 then redis.call('XDEL', history, unpack(doomed)) end
    if #doomed < want then return end
    budget = budget - #doomed
    extra = 16
  end
end

local max_events, max_age, ttl, publish = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local oldest_kept = now - max_age
local at = string.format('%d', now)
local history_ttl = math.max(1, math.floor(max_age / 1000))
local firsts = {}
local arg = 5
for g = 1, #KEYS, 3 do
  local seq, epoch, history = KEYS[g], KEYS[g + 1], KEYS[g + 2]
  local channel, count, lengths = ARGV[arg], tonumber(ARGV[arg + 1]), ARGV[arg + 2]
  local events = arg + 3
  arg = events + count
  ensure_seq(seq, epoch, ttl)
  local first = redis.call('INCRBY', seq, count) - count + 1
  redis.call('PEXPIRE', seq, ttl)
  redis.call('PEXPIRE', epoch, ttl)
  for i = 0, count - 1 do
    redis.call('XADD', history, string.format('%d-0', first + i), 't', at, 'd', ARGV[events + i])
  end
  trim(history, max_events, oldest_kept, count + 100)
  redis.call('PEXPIRE', history, history_ttl)
  local first_id = string.format('%d', first)
  local payload = table.concat(ARGV, '', events, arg - 1)
  redis.call(publish, channel, first_id .. ':' .. lengths .. ' ' .. payload)
  firsts[#firsts + 1] = first_id
end
return firsts
";

/// KEYS: seq, epoch, history. ARGV: the id after which the group's events are wanted (`-`: none
/// are, only where the group stands), max events, how long the sequence lives. Returns seq,
/// epoch, now (µs), the highest id trimmed away (all of them, when the history expired), the
/// count of entries after the id, and each entry's id, time and encoded event.
const READ: &str = r"
ensure_seq(KEYS[1], KEYS[2], ARGV[3])
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

/// The script that publishes batches.
pub(super) fn publish() -> Script {
    Script::new(&format!("{PRELUDE}{PUBLISH}"))
}

/// The script that reads a group's history.
pub(super) fn read() -> Script {
    Script::new(&format!("{PRELUDE}{READ}"))
}
