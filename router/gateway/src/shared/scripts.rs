//! The Lua scripts: every read-modify-write of a shared counter is one of these, so each step
//! is atomic on the server. Time is the server's (`TIME`), so replicas with skewed clocks
//! agree on windows and expiries.
//!
//! Money is integer picodollars. Redis adds them exactly (`HINCRBY` on the decimal strings);
//! Lua only *compares* them, as doubles, which is exact below 2^53 pico ($9,007) and off by at
//! most a few picodollars beyond.
//!
//! A budget is one hash, `{prefix}:{key_id}:b:{period_start}`:
//! - `seed`: who seeded it from the ledger, and when (present once seeded);
//! - `spent`: settled spend of the period; `resv`: the sum of live reservations;
//! - `r:<rid>` = `<cost>:<expires_ms>`: one live reservation; `nexp`: the soonest expiry.
//!
//! RPM and TPM windows are hashes `{prefix}:{key_id}:rpm` / `:tpm` of second → units, the
//! seconds of the last minute (older ones are deleted as they are seen).

/// Shared by every script.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Release the expired reservations of budget hash b (their replica died). Returns how many.
local function sweep(b, now)
  local nexp = tonumber(redis.call('HGET', b, 'nexp'))
  if not nexp or nexp > now then return 0 end
  local all = redis.call('HGETALL', b)
  local released, soonest = 0, nil
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 2) == 'r:' then
      local v = all[i + 1]
      local sep = string.find(v, ':', 1, true)
      local exp = tonumber(string.sub(v, sep + 1))
      if exp <= now then
        redis.call('HINCRBY', b, 'resv', '-' .. string.sub(v, 1, sep - 1))
        redis.call('HDEL', b, f)
        released = released + 1
      elseif not soonest or exp < soonest then
        soonest = exp
      end
    end
  end
  if soonest then redis.call('HSET', b, 'nexp', soonest) else redis.call('HDEL', b, 'nexp') end
  return released
end

-- The live seconds of window hash k at now_s (deleting older ones): total, {{s, n}, ...}.
local function window(k, now_s)
  local all = redis.call('HGETALL', k)
  local sum, live = 0, {}
  for i = 1, #all, 2 do
    local s, n = tonumber(all[i]), tonumber(all[i + 1])
    if now_s - s >= 60 then
      redis.call('HDEL', k, all[i])
    elseif s <= now_s then
      sum = sum + n
      live[#live + 1] = {s, n}
    end
  end
  return sum, live
end

-- Seconds until `need` units have left the window (as the local windows compute it).
local function wait_for(live, need, now_s)
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local freed = 0
  for _, e in ipairs(live) do
    freed = freed + e[2]
    if freed >= need then return math.max(1, e[1] + 60 - now_s) end
  end
  return 60
end
"#;

/// KEYS: budget, rpm, tpm. ARGV: rid, cost, budget (`-` = none), rpm (`-`), tpm (`-`),
/// tokens, ttl_ms.
///
/// Returns `{0, spent, resv, now_s}` (reserved, and one call counted), `{1, spent}` (spent:
/// final), `{2, spent, resv}` (reservations in flight fill it: worth waiting), `{3, wait_s}`
/// (RPM), `{4, wait_s, used}` (TPM), or `{-1}` (the budget is not seeded yet).
const RESERVE: &str = r#"
local b, rk, tk = KEYS[1], KEYS[2], KEYS[3]
local rid, cost, budget, rpm, tpm = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local tokens = tonumber(ARGV[6])
local now = now_ms()
local now_s = math.floor(now / 1000)
local released = 0
if budget ~= '-' then
  if redis.call('HEXISTS', b, 'seed') == 0 then return {-1} end
  released = sweep(b, now)
  local spent = redis.call('HGET', b, 'spent') or '0'
  local resv = redis.call('HGET', b, 'resv') or '0'
  local limit = tonumber(budget)
  if tonumber(spent) >= limit then return {1, spent, released} end
  if tonumber(spent) + tonumber(resv) >= limit then return {2, spent, resv, released} end
end
if rpm ~= '-' then
  local used, live = window(rk, now_s)
  local limit = tonumber(rpm)
  if used + 1 > limit then return {3, wait_for(live, used + 1 - limit, now_s)} end
end
if tpm ~= '-' then
  local used, live = window(tk, now_s)
  local limit = tonumber(tpm)
  if used + tokens > limit then
    local w = 60
    if tokens <= limit then w = wait_for(live, used + tokens - limit, now_s) end
    return {4, w, used}
  end
end
if rpm ~= '-' then
  redis.call('HINCRBY', rk, now_s, 1)
  redis.call('PEXPIRE', rk, 120000)
end
if tpm ~= '-' then
  redis.call('HINCRBY', tk, now_s, tokens)
  redis.call('PEXPIRE', tk, 120000)
end
local spent, resv = '0', '0'
if budget ~= '-' then
  local exp = now + tonumber(ARGV[7])
  redis.call('HSET', b, 'r:' .. rid, cost .. ':' .. exp)
  redis.call('HINCRBY', b, 'resv', cost)
  local nexp = tonumber(redis.call('HGET', b, 'nexp'))
  if not nexp or exp < nexp then redis.call('HSET', b, 'nexp', exp) end
  spent = redis.call('HGET', b, 'spent') or '0'
  resv = redis.call('HGET', b, 'resv')
end
return {0, spent, resv, now_s, released}
"#;

/// KEYS: budget, tpm. ARGV: rid, cost, at_s, reserved tokens, actual tokens, has budget
/// (`1`/`0`), has tpm (`1`/`0`).
///
/// Releases the reservation (idempotent: a second settle of one `rid` finds nothing to
/// release) and adds the cost to the spend (a settle arriving after its reservation expired
/// still adds it). Returns `{released, seeded}`: `seeded` 0 means the budget hash was gone
/// (Redis lost its data): nothing is added, the reseed from the ledger will hold this cost.
const SETTLE: &str = r#"
local b, tk = KEYS[1], KEYS[2]
local rid, cost = ARGV[1], ARGV[2]
local released, seeded = 0, 1
if ARGV[6] == '1' then
  if redis.call('HEXISTS', b, 'seed') == 0 then
    seeded = 0
  else
    local v = redis.call('HGET', b, 'r:' .. rid)
    if v then
      local sep = string.find(v, ':', 1, true)
      redis.call('HINCRBY', b, 'resv', '-' .. string.sub(v, 1, sep - 1))
      redis.call('HDEL', b, 'r:' .. rid)
      released = 1
    end
    if cost ~= '0' then redis.call('HINCRBY', b, 'spent', cost) end
  end
end
if ARGV[7] == '1' then
  local cur = redis.call('HGET', tk, ARGV[3])
  if cur then
    local n = tonumber(cur) - tonumber(ARGV[4]) + tonumber(ARGV[5])
    if n < 0 then n = 0 end
    redis.call('HSET', tk, ARGV[3], n)
  end
end
return {released, seeded}
"#;

/// KEYS: budget. ARGV: spent (from the ledger), seed tag, expire-at ms (`0` = never).
/// Seeds the budget exactly once: a second replica's seed (the reseed race) changes nothing.
/// Returns 1 when this call seeded it.
const SEED: &str = r#"
if redis.call('HSETNX', KEYS[1], 'seed', ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'resv', '0')
if ARGV[3] ~= '0' then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return 1
"#;

/// KEYS: budget. ARGV: spent according to the ledger. Raises the shared spend to the ledger's
/// when the ledger holds more (spend settled while Redis was unreachable, or whose settle was
/// lost); never lowers it and never adds, so nothing is counted twice. Exact comparison of the
/// decimal strings. Returns 1 when raised, 0 when not, -1 when not seeded.
const RAISE: &str = r#"
if redis.call('HEXISTS', KEYS[1], 'seed') == 0 then return -1 end
local cur, led = redis.call('HGET', KEYS[1], 'spent') or '0', ARGV[1]
if #led > #cur or (#led == #cur and led > cur) then
  redis.call('HSET', KEYS[1], 'spent', led)
  return 1
end
return 0
"#;

/// KEYS: budget, rpm, tpm. ARGV: has budget (`1`/`0`). Returns `{spent, resv, rpm used, tpm
/// used, seeded}` (expired reservations released first).
const USAGE: &str = r#"
local now = now_ms()
local now_s = math.floor(now / 1000)
local spent, resv, seeded = '0', '0', 0
if ARGV[1] == '1' and redis.call('HEXISTS', KEYS[1], 'seed') == 1 then
  sweep(KEYS[1], now)
  spent = redis.call('HGET', KEYS[1], 'spent') or '0'
  resv = redis.call('HGET', KEYS[1], 'resv') or '0'
  seeded = 1
end
local r = window(KEYS[2], now_s)
local t = window(KEYS[3], now_s)
return {spent, resv, r, t, seeded}
"#;

/// The scripts, loaded once (`EVALSHA`, with `EVAL` when the server has not seen one).
pub(super) struct Scripts {
    pub reserve: redis::Script,
    pub settle: redis::Script,
    pub seed: redis::Script,
    pub raise: redis::Script,
    pub usage: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        let with_prelude = |body: &str| redis::Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            reserve: with_prelude(RESERVE),
            settle: with_prelude(SETTLE),
            seed: redis::Script::new(SEED),
            raise: redis::Script::new(RAISE),
            usage: with_prelude(USAGE),
        }
    }
}
