"""The Lua scripts: every decision riprap asks Redis for is one of these, run with `EVALSHA`.

Why scripts: a decision reads state, decides and writes it back. As separate commands that is a
race between processes (cameri/nostream#467) and a crash between a write and its `PEXPIRE`
leaves a key that never expires (alisaifee/limits#14); `MULTI` cannot branch on what it read and
`WATCH` loops spin under contention. A script runs atomically, so check, update and TTL are one
step.

Rules every script here keeps (a test reads this module and checks them):

* Every key a script touches arrives in `KEYS[]`, and all keys of one script share one
  `{hash tag}`, so the script runs on one Redis Cluster node
  (gravitee-io/gravitee-api-management#17370). Numbers arrive in `ARGV`, as decimal strings.
* Every write sets a TTL in the same script, at least as long as the state can matter.
* Values are decimal integers (or floats for the breaker's thresholds in ARGV): never pickles.
* Time is the server's `TIME` when the time argument is empty, else the caller's (in
  `time_source="client"` mode). Scripts that call `TIME` and then write start with
  `redis.replicate_commands()` where it exists (Redis 3.2-4 need it; from 5 on it is the
  default and the call is a no-op).

GCRA keeps the theoretical arrival time (TAT) in integer nanoseconds, exactly as the in-process
core does. Lua numbers are doubles, exact only below 2**53 (104 days of nanoseconds), so the
scripts carry a time as two numbers, whole seconds and nanoseconds (`s, n`), and store it as the
decimal string of the whole nanosecond count. The breaker works in integer microseconds, which
doubles hold exactly until the year 2255.
"""

from __future__ import annotations

__all__ = [
    "BREAKER_ACQUIRE",
    "BREAKER_FORCE_OPEN",
    "BREAKER_RECORD",
    "BREAKER_RELEASE",
    "BREAKER_RESET",
    "BREAKER_SNAPSHOT",
    "GCRA_ACQUIRE",
    "GCRA_CANCEL",
    "QUORUM_VOTE",
    "SCRIPTS",
    "TIME_PROBE",
]

# --- GCRA ---------------------------------------------------------------------------------------

GCRA_ACQUIRE = """-- riprap GCRA: take `cost` from one bucket, or say how long until it could.
-- KEYS[1]  the bucket: its TAT in nanoseconds (a decimal string); missing means full
-- ARGV[1]  now in nanoseconds ('' = the server's TIME)
-- ARGV[2], ARGV[3]  cost: n x the emission interval T, as whole seconds and nanoseconds
-- ARGV[4], ARGV[5]  tolerance tau = burst x T, as whole seconds and nanoseconds
-- ARGV[6]  the longest wait to reserve, in nanoseconds ('0': admit now or refuse; '' = any)
-- ARGV[7]  TTL margin in milliseconds (tau + T, rounded up)
-- Returns 1: admitted; {0, s, n}: refused, the wait as (s, n); {2, s, n, tat, before}:
-- reserved, wait (s, n) then proceed (`tat` and `before` let the caller give it back).
--
-- Times are (seconds, nanoseconds) pairs: a double holds whole nanoseconds exactly only up to
-- 2**53 (104 days). The arithmetic is written out inline: it runs on every decision, and
-- local functions would be created anew on every call.
if redis.replicate_commands then redis.replicate_commands() end
local B = 1000000000
local tonumber, sub = tonumber, string.sub
local key = KEYS[1]
local now_s, now_n
local arg = ARGV[1]
if arg == '' then
  local t = redis.call('TIME')
  now_s, now_n = tonumber(t[1]), tonumber(t[2]) * 1000
elseif #arg <= 9 then
  now_s, now_n = 0, tonumber(arg)
else
  now_s, now_n = tonumber(sub(arg, 1, -10)), tonumber(sub(arg, -9))
end
-- The stored TAT; anything that is not a count of nanoseconds counts as a full bucket.
local before = redis.call('GET', key)
local tat_s, tat_n
if before then
  if #before <= 9 then
    tat_s, tat_n = 0, tonumber(before)
  elseif #before <= 20 then
    tat_s, tat_n = tonumber(sub(before, 1, -10)), tonumber(sub(before, -9))
  end
  if not tat_s or not tat_n then tat_s, tat_n = nil, nil end
end
-- end = max(tat, now) + cost
local end_s, end_n = now_s, now_n
if tat_s and (tat_s > now_s or (tat_s == now_s and tat_n > now_n)) then
  end_s, end_n = tat_s, tat_n
end
end_s, end_n = end_s + tonumber(ARGV[2]), end_n + tonumber(ARGV[3])
if end_n >= B then end_s, end_n = end_s + 1, end_n - B end
-- Past 2**64 - 1 ns (the core's end of time): refused, with the longest wait.
if end_s > 18446744073 or (end_s == 18446744073 and end_n > 709551615) then
  return {0, 18446744073, 709551615}
end
-- lim = now + tau: admitted iff end <= lim; else the wait is end - lim.
local lim_s, lim_n = now_s + tonumber(ARGV[4]), now_n + tonumber(ARGV[5])
if lim_n >= B then lim_s, lim_n = lim_s + 1, lim_n - B end
local margin = tonumber(ARGV[7])
local function ttl_ms(s, n)  -- (s, n) - now, in whole milliseconds rounded up, + margin
  s, n = s - now_s, n - now_n
  if n < 0 then s, n = s - 1, n + B end
  return s * 1000 + math.ceil(n / 1000000) + margin
end
local tat = string.format('%d', end_n)
if end_s > 0 then tat = string.format('%d%09d', end_s, end_n) end
if end_s < lim_s or (end_s == lim_s and end_n <= lim_n) then
  redis.call('SET', key, tat, 'PX', ttl_ms(end_s, end_n))
  return 1
end
local wait_s, wait_n = end_s - lim_s, end_n - lim_n
if wait_n < 0 then wait_s, wait_n = wait_s - 1, wait_n + B end
local bound = ARGV[6]
if bound ~= '' then
  local max_s, max_n = 0, 0
  if #bound > 9 then
    max_s, max_n = tonumber(sub(bound, 1, -10)), tonumber(sub(bound, -9))
  else
    max_n = tonumber(bound)
  end
  if wait_s > max_s or (wait_s == max_s and wait_n > max_n) then
    -- Refused: nothing to write, but a key someone stored without a TTL gets one.
    if tat_s and redis.call('PTTL', key) == -1 then
      redis.call('PEXPIRE', key, ttl_ms(tat_s, tat_n))
    end
    return {0, wait_s, wait_n}
  end
end
redis.call('SET', key, tat, 'PX', ttl_ms(end_s, end_n))
if not tat_s then before = '' end
return {2, wait_s, wait_n, tat, before}
"""

GCRA_CANCEL = """-- riprap GCRA: give back a reservation that nobody reserved after.
-- KEYS[1]  the bucket
-- ARGV[1]  the TAT the reservation left (its end)
-- ARGV[2]  the TAT before it ('' = the bucket was full)
-- Returns 1 if it was given back, 0 if a later reservation (or admission) moved the TAT.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# --- circuit breaker ----------------------------------------------------------------------------

_BREAKER_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
-- KEYS[1]  the breaker's state (a hash), KEYS[2] its window (a hash); one hash tag
-- ARGV[1]  now in microseconds ('' = the server's TIME)
-- ARGV[2]  a fresh incarnation id, used only if the state is missing
-- ARGV[3]  open timeout (us)      ARGV[4]  bucket width (us)       ARGV[5]  buckets
-- ARGV[6]  failure_threshold      ARGV[7]  minimum_calls           ARGV[8]  failure_rate_threshold
-- ARGV[9]  slow_call_rate_threshold ('' = no slow-call tracking)
-- ARGV[10] half_open_max_calls    ARGV[11] success_threshold       ARGV[12] TTL (ms)
local S, W = KEYS[1], KEYS[2]
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local timeout, width, buckets = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl = tonumber(ARGV[12])
local FIELDS = {'st', 'gen', 'inc', 'oat', 'osn', 'cf', 'inf', 'hs', 'la', 'lf'}
local raw = redis.call('HMGET', S, unpack(FIELDS))
local s = {}
for i, f in ipairs(FIELDS) do s[f] = raw[i] end
local dirty = {}
local function put(f, v) s[f] = v; dirty[#dirty + 1] = f end
if not s.st then
  -- Missing: never used, evicted, flushed or expired. Start again CLOSED, under a new id.
  s = {}
  put('st', '0'); put('gen', '0'); put('inc', ARGV[2]); put('cf', '0')
end
local function num(f) return tonumber(s[f]) or 0 end
local function save()
  local args = {}
  for _, f in ipairs(dirty) do
    if s[f] then args[#args + 1] = f; args[#args + 1] = s[f] end
  end
  if #args > 0 then redis.call('HSET', S, unpack(args)) end
  local gone = {}
  for _, f in ipairs(dirty) do if not s[f] then gone[#gone + 1] = f end end
  if #gone > 0 then redis.call('HDEL', S, unpack(gone)) end
  redis.call('PEXPIRE', S, ttl)
  if redis.call('EXISTS', W) == 1 then redis.call('PEXPIRE', W, ttl) end
end
local function n2s(x) return string.format('%d', x) end
local function new_generation() put('gen', n2s(num('gen') + 1)) end
local transitioned = 0
local function open()
  put('st', '1'); put('oat', n2s(now))
  if not s.osn then put('osn', n2s(now)) end
  put('inf', nil); put('hs', nil); put('la', nil)
  new_generation()
end
local function close()
  put('st', '0'); put('cf', '0'); put('osn', nil); put('oat', nil)
  put('inf', nil); put('hs', nil); put('la', nil)
  redis.call('DEL', W)
  new_generation()
end
-- A due OPEN -> HALF_OPEN.
local function poll()
  if s.st == '1' and now - num('oat') >= timeout then
    put('st', '2'); put('inf', '0'); put('hs', '0'); put('la', n2s(now)); put('oat', nil)
    new_generation()
  end
end
-- The window: a ring of `buckets` buckets of `width` us; fields h (newest bucket), ts, tf, tw
-- (totals) and s<i>, f<i>, w<i> (bucket i's successes, failures, slow calls).
local function rotate()
  local w = redis.call('HMGET', W, 'h', 'ts', 'tf', 'tw')
  local head = tonumber(w[1]) or 0
  local t = {tonumber(w[2]) or 0, tonumber(w[3]) or 0, tonumber(w[4]) or 0}
  local e = math.floor(now / width)
  if e > head then
    local steps = math.min(e - head, buckets)
    for k = 1, steps do
      local slot = (e - steps + k) % buckets
      local old = redis.call('HMGET', W, 's' .. slot, 'f' .. slot, 'w' .. slot)
      for j = 1, 3 do t[j] = t[j] - (tonumber(old[j]) or 0) end
      redis.call('HDEL', W, 's' .. slot, 'f' .. slot, 'w' .. slot)
    end
    head = e
    redis.call('HSET', W, 'h', n2s(head), 'ts', n2s(t[1]), 'tf', n2s(t[2]), 'tw', n2s(t[3]))
  end
  return head, t
end
local function age(f) if s[f] then return math.max(0, now - num(f)) end return -1 end
"""

_OUTCOME = """
local function trips(t)
  if num('cf') >= tonumber(ARGV[6]) then return true end
  local calls = t[1] + t[2]
  if calls < tonumber(ARGV[7]) then return false end
  if t[2] / calls > tonumber(ARGV[8]) then return true end
  return ARGV[9] ~= '' and t[3] / calls >= tonumber(ARGV[9])
end
"""

BREAKER_ACQUIRE = (
    "-- riprap circuit breaker: admit or reject one call.\n"
    + _BREAKER_PRELUDE
    + """
-- Returns {admitted, state, generation, incarnation, trial, retry_after_us, lost_trials}.
poll()
local st = s.st
local admitted, trial, retry, lost = 0, 0, 0, 0
if st == '0' then
  admitted = 1
elseif st == '1' then
  retry = math.max(0, num('oat') + timeout - now)
else
  if num('inf') < tonumber(ARGV[10]) then
    put('inf', n2s(num('inf') + 1)); put('la', n2s(now))
    admitted, trial = 1, 1
  elseif now - num('la') >= timeout then
    -- Every trial slot taken and no trial admitted for a whole open timeout: presume the
    -- trial calls lost (their process died or hangs) and start a new trial generation.
    lost = num('inf')
    put('inf', '1'); put('la', n2s(now))
    new_generation()
    admitted, trial = 1, 1
  end
end
save()
return {admitted, tonumber(s.st), s.gen, s.inc, trial, retry, lost}
"""
)

BREAKER_RECORD = (
    "-- riprap circuit breaker: how an admitted call ended.\n"
    + _BREAKER_PRELUDE
    + _OUTCOME
    + """
-- ARGV[13] the permit's generation, ARGV[14] its incarnation,
-- ARGV[15] outcome (0 success, 1 failure, 2 ignored), ARGV[16] slow (0/1).
-- Returns {state, generation, incarnation, counted (1 if it moved the state machine)}.
local outcome = ARGV[15]
if outcome == '1' then put('lf', n2s(now)) end
local current = s.gen == ARGV[13] and s.inc == ARGV[14] and s.st ~= '1'
if not current then
  save()
  return {tonumber(s.st), s.gen, s.inc, 0}
end
if outcome == '2' then
  if s.st == '2' then put('inf', n2s(math.max(0, num('inf') - 1))) end
  save()
  return {tonumber(s.st), s.gen, s.inc, 1}
end
local failed = outcome == '1'
local head, t = rotate()
local slot = head % buckets
local fields = {}
if failed then
  t[2] = t[2] + 1
  redis.call('HINCRBY', W, 'f' .. slot, 1)
  put('cf', n2s(num('cf') + 1))
else
  t[1] = t[1] + 1
  redis.call('HINCRBY', W, 's' .. slot, 1)
  put('cf', '0')
end
if ARGV[16] == '1' then
  t[3] = t[3] + 1
  redis.call('HINCRBY', W, 'w' .. slot, 1)
end
redis.call('HSET', W, 'h', n2s(head), 'ts', n2s(t[1]), 'tf', n2s(t[2]), 'tw', n2s(t[3]))
if s.st == '0' then
  if trips(t) then open() end
else
  if failed then
    open()
  else
    put('inf', n2s(math.max(0, num('inf') - 1)))
    put('hs', n2s(num('hs') + 1))
    if num('hs') >= tonumber(ARGV[11]) then close() end
  end
end
save()
return {tonumber(s.st), s.gen, s.inc, 1}
"""
)

BREAKER_RELEASE = (
    "-- riprap circuit breaker: a call that did not finish gives its trial slot back.\n"
    + _BREAKER_PRELUDE
    + """
-- ARGV[13] the permit's generation, ARGV[14] its incarnation.
-- Returns {state, generation, incarnation}.
if s.gen == ARGV[13] and s.inc == ARGV[14] and s.st == '2' then
  put('inf', n2s(math.max(0, num('inf') - 1)))
end
save()
return {tonumber(s.st), s.gen, s.inc}
"""
)

BREAKER_SNAPSHOT = (
    "-- riprap circuit breaker: the state and window, as of now.\n"
    + _BREAKER_PRELUDE
    + """
-- Returns {state, generation, incarnation, successes, failures, slow, consecutive failures,
-- trials in flight, trial successes, age of opened_at, of open_since, of the last failure
-- (us; -1 = none), retry_after (us)}.
poll()
local _, t = rotate()
local retry = 0
if s.st == '1' then retry = math.max(0, num('oat') + timeout - now) end
local in_flight, successes = 0, 0
if s.st == '2' then in_flight, successes = num('inf'), num('hs') end
save()
return {tonumber(s.st), s.gen, s.inc, t[1], t[2], t[3], num('cf'), in_flight, successes,
  age('oat'), age('osn'), age('lf'), retry}
"""
)

BREAKER_RESET = (
    "-- riprap circuit breaker: back to CLOSED with an empty window.\n"
    + _BREAKER_PRELUDE
    + """
-- Returns {state, generation, incarnation}.
close()
save()
return {tonumber(s.st), s.gen, s.inc}
"""
)

BREAKER_FORCE_OPEN = (
    "-- riprap circuit breaker: open now, as if it had tripped.\n"
    + _BREAKER_PRELUDE
    + """
-- Returns {state, generation, incarnation}.
open()
save()
return {tonumber(s.st), s.gen, s.inc}
"""
)

QUORUM_VOTE = """-- riprap quorum breaker: publish this process's vote and count the live ones.
-- KEYS[1]  every live voter (a sorted set: member = voter id, score = when its vote expires, us)
-- KEYS[2]  the voters that say "open" (the same shape); one hash tag
-- ARGV[1]  now in microseconds ('' = the server's TIME)
-- ARGV[2]  this voter's id        ARGV[3]  its vote (1 open, 0 closed; '' = only count)
-- ARGV[4]  how long a vote lives (us)   ARGV[5]  quorum (a fraction of live voters)
-- ARGV[6]  TTL of both keys (ms)
-- Returns {open (1 if at least `quorum` of the live voters say open), open votes, live voters,
-- us until the oldest open vote expires (0 unless open)}.
if redis.replicate_commands then redis.replicate_commands() end
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local expires = string.format('%d', now + tonumber(ARGV[4]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now))
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], expires, ARGV[2])
  if ARGV[3] == '1' then
    redis.call('ZADD', KEYS[2], expires, ARGV[2])
  else
    redis.call('ZREM', KEYS[2], ARGV[2])
  end
end
local live, opened = redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
if live == 0 or opened / live < tonumber(ARGV[5]) then return {0, opened, live, 0} end
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {1, opened, live, math.max(0, tonumber(oldest[2]) - now)}
"""

TIME_PROBE = """-- riprap: does this server allow TIME inside a script? (asked after a script error)
-- KEYS[1]  unused (a script with a key runs on the node that owns it)
if redis.replicate_commands then redis.replicate_commands() end
return redis.call('TIME')
"""

#: Every script, by name (the static checks iterate over this).
SCRIPTS: dict[str, str] = {
    "GCRA_ACQUIRE": GCRA_ACQUIRE,
    "GCRA_CANCEL": GCRA_CANCEL,
    "BREAKER_ACQUIRE": BREAKER_ACQUIRE,
    "BREAKER_RECORD": BREAKER_RECORD,
    "BREAKER_RELEASE": BREAKER_RELEASE,
    "BREAKER_SNAPSHOT": BREAKER_SNAPSHOT,
    "BREAKER_RESET": BREAKER_RESET,
    "BREAKER_FORCE_OPEN": BREAKER_FORCE_OPEN,
    "QUORUM_VOTE": QUORUM_VOTE,
    "TIME_PROBE": TIME_PROBE,
}
