//! The Lua scripts the broker runs in Redis. Redis runs a script at once, so a group's ids, its
//! history and what is published on its channel always agree.

use redis::Script;

use super::Limits;

/// Run first by [`READ`]: `now`, Redis's clock in microseconds, and `ensure_seq`. A group's
/// sequence starts at Redis's clock, as in memory: after Redis lost it (restart without
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
/// cluster), in one call, an entry per group. The history bound and the publishing command are
/// set in the script's text (see [`publish`]): a call carries only what changes. ARGV: Redis's
/// time in µs as the publisher reckons it (see `clock`), or empty to have the script read it
/// and answer it last; then for each entry its group's channel, its count of events, the events
/// as `<length>,<length>... <the events, back to back>`, the positions (from 1) of its events
/// that carry an idempotency key, `<position>,<position>...` (empty when none do), `1` to renew
/// the group's expiries (else `0`), and those keys. KEYS: for each entry its group's seq, epoch
/// and history, and when it has keys, its two hashes of keys. An event whose key was given
/// within the window (or earlier in the entry) is dropped; the others get the next ids of their
/// group, are published as one message and kept as one entry of its history, `<first id>:<lengths>
/// <events>` (the entry's id is the last event's). Returns, for each entry in order, the first
/// id it gave, or for an entry with keys the id of each of its events (the one its key got, for
/// a dropped event); then Redis's time, if it read it.
///
/// A group's keys are fields of two hashes, `<id>:<time in µs>`, written to the one of the
/// current window-long period (`floor(now / window)`, even or odd) and read from both: a key
/// counts while its time is within the window, and a hash expires two periods after its
/// period began, when the next period of its parity begins, so a hash holds at most two
/// windows of keys; its empty field says which period wrote it last, so that its expiry is set
/// once a period. An entry's keys cost three calls, however many they are.
///
/// A lone publish is one call, and what Redis spends on it is mostly the calls the script makes
/// (each costs about as much as the command it runs) and its arguments: so the common case
/// makes three (`INCRBY`, `XADD`, `PUBLISH`), and the bound, constant, is no argument. Redis's
/// clock comes from the publisher, and so does when to renew expiries: each process renews a
/// group's once per renewal period it publishes in, setting them that much longer than asked,
/// so every key still lives its time after the group's last event, and the history expires at
/// most that much later. The history is trimmed every 16 events or so: by count roughly (`MINID
/// ~`: whole nodes of the stream, far cheaper than to the entry), and [`READ`] skips what exact
/// trimming would have removed; by age, and readers count older entries as gone anyway.
const PUBLISH: &str = r"
-- Ids are below 2^53, exact as Lua numbers. They go to Redis as strings written with `%d`: a
-- number given to `redis.call` is written with `%.17g`, several times slower.
-- The time, `at`, is made a number only where it is computed with: few publishes need it.
local at = ARGV[1]
if at == '' then
  local time = redis.call('TIME')
  at = string.format('%d', time[1] * 1000000 + time[2])
end
local function only(events, keep)
  -- The events of a batch (`<length>,<length>... <events>`) at the positions `keep` holds.
  local space = string.find(events, ' ', 1, true)
  local lengths, bodies, from, position = {}, {}, space + 1, 0
  for length in string.gmatch(string.sub(events, 1, space - 1), '%d+') do
    position = position + 1
    local to = from + tonumber(length)
    if keep[position] then
      lengths[#lengths + 1] = length
      bodies[#bodies + 1] = string.sub(events, from, to - 1)
    end
    from = to
  end
  return table.concat(lengths, ',') .. ' ' .. table.concat(bodies)
end
local replies = {}
local k, arg = 1, 2
while arg <= #ARGV do
  local seq, epoch, history = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local channel, counted, events, keyed, renew = ARGV[arg], ARGV[arg + 1], ARGV[arg + 2], ARGV[arg + 3], ARGV[arg + 4] == '1'
  local count = tonumber(counted)
  k, arg = k + 3, arg + 5
  -- Keyed events: the id each key got before, or the position of the same key earlier in the
  -- entry; the key of each event to publish.
  local given, same_as, once, first_at
  local fresh = count
  local current, renew_seen, period
  if keyed ~= '' then
    local now = tonumber(at)
    period = math.floor(now / 1000 / once_ms)
    local seen_from = now - once_ms * 1000
    given, same_as, once, first_at = {}, {}, {}, {}
    current = KEYS[k + period % 2]
    local previous = KEYS[k + 1 - period % 2]
    k = k + 2
    local positions, keys = {}, {}
    for p in string.gmatch(keyed, '%d+') do
      positions[#positions + 1], keys[#keys + 1] = tonumber(p), ARGV[arg]
      arg = arg + 1
    end
    -- The empty field (no key is empty) holds the period a hash was last written in.
    local in_current = redis.call('HMGET', current, '', unpack(keys))
    local in_previous = redis.call('HMGET', previous, unpack(keys))
    renew_seen = in_current[1] ~= string.format('%d', period)
    table.remove(in_current, 1)
    -- The id a key got within the window: from `<id>:<time>`.
    local function within(seen)
      if not seen then return nil end
      local id, at_us = string.match(seen, '^(%d+):(%d+)$')
      if at_us and tonumber(at_us) >= seen_from then return id end
    end
    for i, position in ipairs(positions) do
      local key = keys[i]
      local got = within(in_current[i]) or within(in_previous[i])
      if first_at[key] then
        same_as[position] = first_at[key]
      elseif got then
        given[position] = got
      else
        first_at[key], once[position] = position, key
      end
      if not once[position] then fresh = fresh - 1 end
    end
  end
  local first, next_id, new = '0', 0, false
  if fresh > 0 then
    local last = redis.call('INCRBY', seq, fresh == count and counted or string.format('%d', fresh))
    new = last == fresh
    if new then
      -- A new sequence (or one Redis lost): it starts at Redis's clock, as in `ensure_seq`.
      last = tonumber(at) + fresh
      redis.call('SET', seq, string.format('%d', last), 'PX', string.format('%d', ttl + renewal))
      redis.call('SET', epoch, at, 'PX', string.format('%d', ttl + renewal))
    end
    next_id = last - fresh + 1
    local last_id = string.format('%d', last)
    first = fresh == 1 and last_id or string.format('%d', next_id)
    local batch = events
    if fresh < count then
      local keep = {}
      for position = 1, count do
        keep[position] = not (given[position] or same_as[position])
      end
      batch = only(events, keep)
    end
    batch = first .. ':' .. batch
    if fresh < 16 and last % 16 >= fresh then
      redis.call('XADD', history, last_id, 't', at, 'd', batch)
    else
      -- Trimmed when the last id crossed a multiple of 16: to the entries holding the last
      -- `max_events` events, roughly (see `READ`), and by age.
      local keep_from = string.format('%d', math.max(0, last - max_events + 1))
      redis.call('XADD', history, 'MINID', '~', keep_from, last_id, 't', at, 'd', batch)
      local oldest_kept = tonumber(at) - max_age
      local oldest = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)[1]
      if oldest and tonumber(oldest[2][2]) < oldest_kept then
        -- Up to 16 entries a check: no more were added since the last one.
        local aged = oldest[1]
        for _, entry in ipairs(redis.call('XRANGE', history, '-', '+', 'COUNT', 16)) do
          if tonumber(entry[2][2]) >= oldest_kept then break end
          aged = entry[1]
        end
        redis.call('XTRIM', history, 'MINID', string.match(aged, '^%d+') .. '-1')
      end
    end
    redis.call(publish, channel, batch)
  end
  -- Renewed when asked even if every event was dropped: the publisher counts it as done.
  if new or renew then
    local seq_px = string.format('%d', ttl + renewal)
    if not new then
      redis.call('PEXPIRE', seq, seq_px)
      redis.call('PEXPIRE', epoch, seq_px)
    end
    redis.call('PEXPIRE', history, string.format('%d', math.floor(max_age / 1000) + renewal))
  end
  if keyed == '' then
    replies[#replies + 1] = first
  else
    local ids, seen = {}, {}
    for position = 1, count do
      local id = given[position] or ids[same_as[position]]
      if not id then
        id, next_id = string.format('%d', next_id), next_id + 1
        if once[position] then
          seen[#seen + 1] = once[position]
          seen[#seen + 1] = id .. ':' .. at
        end
      end
      ids[position] = id
      replies[#replies + 1] = id
    end
    if #seen > 0 then
      if renew_seen then
        seen[#seen + 1] = ''
        seen[#seen + 1] = string.format('%d', period)
      end
      redis.call('HSET', current, unpack(seen))
      if renew_seen then
        redis.call('PEXPIREAT', current, string.format('%d', (period + 2) * once_ms))
      end
    end
  end
end
-- The time read, for the publisher to reckon Redis's clock from.
if at ~= ARGV[1] then replies[#replies + 1] = at end
return replies
";

/// KEYS: seq, epoch, history. ARGV: the id after which the group's events are wanted (`-`: none
/// are, only where the group stands; `~N`: its last N events), max events, how long the
/// sequence lives. Returns seq, epoch, now (µs), the highest id trimmed away (all of them, when
/// the history expired), the count of entries holding the events wanted, and each entry's time
/// and batch, oldest first. Ids are consecutive, so what was trimmed away is what comes before
/// the first entry's first id. An entry holds a batch: the last N entries hold the last N
/// events, and maybe more. Publishing trims roughly: entries before the one holding the event
/// `max events` back from the last are skipped, as if trimmed.
const READ: &str = r"
ensure_seq(KEYS[1], KEYS[2], ARGV[3])
local seq = redis.call('GET', KEYS[1])
local trimmed = '0'
local entries = {}
if ARGV[1] ~= '-' then
  -- An entry's id is its last event's: the first kept is the first at or after this one.
  local kept = math.max(0, tonumber(seq) - tonumber(ARGV[2]) + 1)
  local kept_id = string.format('%d-0', kept)
  local first = redis.call('XRANGE', KEYS[3], kept_id, '+', 'COUNT', 1)[1]
  if first == nil then
    -- Expired, trimmed to nothing, or never written: every event up to the last id is gone.
    trimmed = seq
  else
    trimmed = string.format('%d', tonumber(string.match(first[2][4], '^(%d+):')) - 1)
    if string.sub(ARGV[1], 1, 1) == '~' then
      local last = redis.call('XREVRANGE', KEYS[3], '+', kept_id, 'COUNT', string.sub(ARGV[1], 2))
      for i = #last, 1, -1 do table.insert(entries, last[i]) end
    else
      -- Ids are below 2^53 (they start at Redis's clock in µs), exact as Lua numbers; a
      -- larger `after` is above them all anyway.
      local from = '(' .. ARGV[1] .. '-0'
      if tonumber(ARGV[1]) < kept then from = kept_id end
      entries = redis.call('XRANGE', KEYS[3], from, '+', 'COUNT', ARGV[2])
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

/// The script that publishes batches within `limits`, with `publish` (`PUBLISH`, or `SPUBLISH`
/// in a cluster). Ids are below 2^53 and the limits too, exact as Lua numbers.
pub(super) fn publish(limits: &Limits, publish: &str) -> Script {
    let Limits {
        events,
        age_us,
        seq_ttl_ms,
        once_ms,
        renewal_ms,
        ..
    } = limits;
    Script::new(&format!(
        "local max_events, max_age, ttl, publish, once_ms, renewal = \
         {events}, {age_us}, {seq_ttl_ms}, '{publish}', {once_ms}, {renewal_ms}\n{PUBLISH}"
    ))
}

/// The script that reads a group's history.
pub(super) fn read() -> Script {
    Script::new(&format!("{PRELUDE}{READ}"))
}
