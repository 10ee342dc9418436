//! Rate limits shared by every gateway replica of a cluster, in Redis: the same sliding-window
//! semantics as the in-process [`Limiter`](super::limiter::Limiter) (no window of `duration`
//! ever admits more than `limit`; a request is admitted only if every applicable rule admits it,
//! and a rejection consumes nothing), made atomic across replicas by running the whole
//! check-then-record as one Lua script, which Redis executes with nothing interleaved.
//!
//! Each counter is stored as the in-process one is: admissions run-length encoded per tick (a
//! thousandth of the window, at least 1 ms), each stamped with its tick's last millisecond, so
//! an admission leaves the window at most 0.1% late, never early, and a counter holds at most
//! ~1,000 entries whatever its limit (one member per admission would hold a million for a
//! 1,000,000-per-day quota, ~100 MB). Two Redis keys per counter: a sorted set of the tick
//! stamps, oldest first, and a hash of stamp → admissions plus `n`, the total. Time is the Redis
//! server's (`TIME`), so replicas with skewed clocks still share one window. Both keys expire
//! one window after the counter's last admission.
//!
//! All keys of one request carry the caller's workspace as a hash tag (`{ws:7}`): the rules that
//! apply to a caller are its key's and its workspace's, so one script's keys share a Redis
//! Cluster slot.
use super::hold::Consumed;
use super::limiter::{Admission, CounterKey, Rejection, RuleCheck};
use super::quota::{Budget, QuotaCheck, QuotaKey, Reservation};
use app::types::{RuleKind, RuleTarget};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::borrow::Borrow;
use std::time::Duration;
use thread_local::ThreadLocal;

/// The window's expiry and the sum of what it holds, shared by the scripts (Lua 5.1: no goto,
/// no modules; prepended to each script's text).
const LIB: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Drops what left the window (now - dur, now]: a tick stamped at or before now - dur has left.
local function expire_log(z, h, dur)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now - dur)
  if #gone > 0 then
    local counts = redis.call('HMGET', h, unpack(gone))
    local sum = 0
    for j = 1, #counts do sum = sum + (tonumber(counts[j]) or 0) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - dur)
    redis.call('HDEL', h, unpack(gone))
    redis.call('HINCRBY', h, 'n', -sum)
  end
  return tonumber(redis.call('HGET', h, 'n')) or 0
end
-- Drops the leases that expired (a replica that crashed, or lost Redis, holding them): what
-- they reserved is released, never counted as consumed.
local function expire_leases(lz, lh)
  local gone = redis.call('ZRANGEBYSCORE', lz, '-inf', now)
  if #gone > 0 then
    local amounts = redis.call('HMGET', lh, unpack(gone))
    local sum = 0
    for j = 1, #amounts do sum = sum + (tonumber(amounts[j]) or 0) end
    redis.call('ZREMRANGEBYSCORE', lz, '-inf', now)
    redis.call('HDEL', lh, unpack(gone))
    redis.call('HINCRBY', lh, 'sum', -sum)
  end
  return tonumber(redis.call('HGET', lh, 'sum')) or 0
end
-- When `must` of the log's entries will have left: nil if it holds fewer.
local function leaves_at(z, h, must, dur)
  local ticks = redis.call('ZRANGE', z, 0, -1)
  local counts = {}
  if #ticks > 0 then counts = redis.call('HMGET', h, unpack(ticks)) end
  for j = 1, #ticks do
    local c = tonumber(counts[j]) or 0
    if c >= must then return tonumber(ticks[j]) + dur end
    must = must - c
  end
  return nil
end
-- Records `amount` (requests or tokens) at time `at`, stamped with its tick's last millisecond.
local function record(z, h, dur, at, amount)
  if amount <= 0 or at + dur <= now then return end
  local tick = math.max(math.floor(dur / 1000), 1)
  local stamp = string.format('%d', math.floor(at / tick) * tick + tick - 1)
  redis.call('HINCRBY', h, 'n', amount)
  -- Only a tick's first admission adds its stamp and moves the expiry: set then, one window
  -- and a tick ahead, the keys outlive every admission of the tick (which leave the window at
  -- stamp + dur). Later admissions in a busy tick cost two increments, not five calls.
  if redis.call('HINCRBY', h, stamp, amount) == amount then
    redis.call('ZADD', z, stamp, stamp)
    redis.call('PEXPIRE', z, dur + tick)
    redis.call('PEXPIRE', h, dur + tick)
  end
end
local function lease(lz, lh, id, amount, expires)
  if redis.call('HSETNX', lh, id, amount) == 1 then
    redis.call('HINCRBY', lh, 'sum', amount)
  end
  redis.call('ZADD', lz, expires, id)
  local ttl = redis.call('PTTL', lz)
  if ttl < expires - now then
    redis.call('PEXPIRE', lz, expires - now)
    redis.call('PEXPIRE', lh, expires - now)
  end
end
-- A quota's spent count: seeded with what the replica asking knows was spent (`base`: the
-- ledger plus its own calls since) when Redis does not have it (the period's first call, or a
-- Redis that lost its data), kept until a day after the period ends (`expires`, Unix ms).
local function spent(h, base, expires)
  local n = redis.call('HGET', h, 'n')
  if n then return tonumber(n) end
  redis.call('HSET', h, 'n', base)
  redis.call('PEXPIREAT', h, expires)
  return base
end
-- Adds to a quota's spent count, if Redis has it: an absent one is seeded by the next check
-- from the ledger, which these calls reach with the next usage flush.
local function spend(h, amount)
  if amount > 0 and redis.call('EXISTS', h) == 1 then redis.call('HINCRBY', h, 'n', amount) end
end
local function unlease(lz, lh, id)
  local amount = tonumber(redis.call('HGET', lh, id))
  if amount then
    redis.call('HDEL', lh, id)
    redis.call('ZREM', lz, id)
    redis.call('HINCRBY', lh, 'sum', -amount)
  end
  return amount
end
"#;

/// KEYS: four per counter (its log's ticks and counts, its leases' expiries and amounts; a
/// quota's spent count is its "counts" hash). ARGV: `estimate, lease id, lease ms, cost`
/// (`cost`: the estimate's price, nano-units), then `kind, limit, duration_ms, base` per
/// counter, kind being 0 requests, 1 tokens, 2 concurrent (rules), 3 a quota's tokens, 4 its
/// requests, 5 its money; for quotas `duration_ms` is when the count may expire (Unix ms) and
/// `base` what seeds it. Returns `{1, requests' limit, remaining, reset ms, tokens'
/// limit, remaining, reset ms}` for the tightest rule of each kind when admitted (-1 where no
/// rule of the kind applies), or `{0, counter index (1-based), wait_ms}` when refused, having
/// recorded nothing. Runs atomically: nothing interleaves.
const CHECK: &str = r#"
local est, id, lease_ms, money = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #KEYS / 4
local best = { {-1, -1, 0}, {-1, -1, 0} }
-- A lease's amount on a counter of `kind`.
local function amount_of(kind)
  if kind == 2 then return 1 end
  if kind == 5 then return money end
  return est
end
for i = 1, n do
  local z, h, lz, lh = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  local kind, limit, dur = tonumber(ARGV[4 * i + 1]), tonumber(ARGV[4 * i + 2]), tonumber(ARGV[4 * i + 3])
  local logged, held = 0, 0
  if kind <= 1 then logged = expire_log(z, h, dur) end
  if kind >= 3 then logged = spent(h, tonumber(ARGV[4 * i + 4]), dur) end
  if kind ~= 0 and kind ~= 4 then held = expire_leases(lz, lh) end
  local used, cost = logged + held, 1
  if kind == 1 or kind == 3 then cost = est end
  if used >= limit then
    -- One more fits once the (used - limit + 1) oldest have left the log; what fills it with
    -- calls in flight has no known end: a second is the hint (at most the window). A quota
    -- waits for its period to turn, which the caller knows.
    if kind >= 3 then return {0, i, 0} end
    local frees = nil
    if kind ~= 2 then frees = leaves_at(z, h, used - limit + 1, dur) end
    if frees then return {0, i, frees - now} end
    if kind == 1 then return {0, i, math.min(1000, dur)} end
    return {0, i, 1000}
  end
  if kind <= 1 then
    local left = math.max(limit - used - cost, 0)
    local b = best[kind + 1]
    if b[1] < 0 or left < b[2] then best[kind + 1] = {limit, left, i} end
  end
end
-- Rules on one counter (10/min and 6/min on one API key) share it: recorded once.
local recorded = {}
for i = 1, n do
  local z = KEYS[4 * i - 3]
  if not recorded[z] then
    recorded[z] = true
    local kind, dur = tonumber(ARGV[4 * i + 1]), tonumber(ARGV[4 * i + 3])
    if kind == 0 then
      record(z, KEYS[4 * i - 2], dur, now, 1)
    elseif kind == 4 then
      redis.call('HINCRBY', KEYS[4 * i - 2], 'n', 1)
    else
      lease(KEYS[4 * i - 1], KEYS[4 * i], id, amount_of(kind), now + lease_ms)
    end
  end
end
-- Each kind's reset: until the oldest entry of its tightest rule's log leaves (this admission
-- may be it), 0 when the log is empty.
local out = {1}
for k = 1, 2 do
  local b, reset = best[k], 0
  if b[1] >= 0 then
    local i = b[3]
    local oldest = redis.call('ZRANGE', KEYS[4 * i - 3], 0, 0)
    if #oldest > 0 then reset = tonumber(oldest[1]) + tonumber(ARGV[4 * i + 3]) - now end
  end
  table.insert(out, b[1])
  table.insert(out, b[2])
  table.insert(out, reset)
end
return out
"#;

/// Ends a lease. KEYS: four per counter it holds. ARGV: `lease id`, then `kind, duration_ms,
/// consumed` per counter (consumed: the tokens, or for a money budget the nano-units, to
/// record; -1 for none). A lease that already expired is gone: its end records what was
/// consumed and releases nothing.
const SETTLE: &str = r#"
local id = ARGV[1]
for i = 1, #KEYS / 4 do
  local kind, dur, consumed = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  unlease(KEYS[4 * i - 1], KEYS[4 * i], id)
  if kind == 1 and consumed > 0 then record(KEYS[4 * i - 3], KEYS[4 * i - 2], dur, now, consumed) end
  if kind == 3 or kind == 5 then spend(KEYS[4 * i - 2], consumed) end
end
return 1
"#;

/// Extends a lease still held (a long stream). KEYS: four per counter; ARGV: `lease id, lease ms`.
const RENEW: &str = r#"
local id, lease_ms = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS / 4 do
  local lz, lh = KEYS[4 * i - 1], KEYS[4 * i]
  if redis.call('ZSCORE', lz, id) then lease(lz, lh, id, 0, now + lease_ms) end
end
return 1
"#;

/// Replays what a replica admitted on its own counters while Redis could not answer, in order.
/// KEYS: four per counter. ARGV: `lease ms`, the counters' kinds and durations (two values
/// each), then operations of four values: `op (1 record, 2 lease, 3 end lease), counter index
/// (1-based), ms ago, amount`, the lease id in place of the amount for op 3 (and after it for
/// op 2: five values).
const REPLAY: &str = r#"
local lease_ms = tonumber(ARGV[1])
local n = #KEYS / 4
local k = 2 * n + 2
while k <= #ARGV do
  local op, i, ago = tonumber(ARGV[k]), tonumber(ARGV[k + 1]), tonumber(ARGV[k + 2])
  local kind, dur = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if op == 1 then
    if kind >= 3 then
      spend(KEYS[4 * i - 2], tonumber(ARGV[k + 3]))
    else
      record(KEYS[4 * i - 3], KEYS[4 * i - 2], dur, now - ago, tonumber(ARGV[k + 3]))
    end
    k = k + 4
  elseif op == 2 then
    local expires = now - ago + lease_ms
    if expires > now then lease(KEYS[4 * i - 1], KEYS[4 * i], ARGV[k + 4], tonumber(ARGV[k + 3]), expires) end
    k = k + 5
  else
    unlease(KEYS[4 * i - 1], KEYS[4 * i], ARGV[k + 3])
    k = k + 4
  end
end
return 1
"#;

/// Where the shared counters live.
#[derive(Clone, Debug, Default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS); with `cluster`, one or more seed nodes, comma-separated.
    pub url: String,
    /// A Redis Cluster: each script goes to the node holding its workspace's slot.
    pub cluster: bool,
    /// PEM certificates of a private CA for `rediss://` (default: the system's and Mozilla's).
    pub ca_pem: Option<Vec<u8>>,
}

// One per gateway: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

pub struct RedisLimiter {
    client: Client,
    check: redis::Script,
    settle: redis::Script,
    renew: redis::Script,
    replay: redis::Script,
    share_load: redis::Script,
    /// One multiplexed connection per serving thread: each runtime drives its own, as with the
    /// upstream pools (see upstream.rs).
    conns: ThreadLocal<tokio::sync::OnceCell<Conn>>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

/// What one admission takes in Redis beside its request counts: `estimate` tokens in each token
/// rule and token budget, its cost in each money budget, and a place in each concurrency rule,
/// held under `lease_id` for `lease_ms` (renewed while the call runs, see
/// [`RedisLimiter::renew`]), so a replica that dies holding them frees them when the lease runs
/// out.
#[derive(Clone, Copy, Debug)]
pub struct LeaseArgs {
    pub estimate: Reservation,
    pub lease_id: u64,
    pub lease_ms: u64,
}

/// The tightest request rule and token rule after an admission (the headers' figures).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SharedAdmission {
    pub requests: Option<Admission>,
    pub tokens: Option<Admission>,
}

/// A counter in Redis: a rule's, or one budget of a quota in one period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedCounter {
    Rule(CounterKey),
    Quota { key: QuotaKey, period_start: i64, budget: Budget },
}

impl SharedCounter {
    /// The script's code for it (see [`CHECK`]).
    fn code(self) -> u8 {
        match self {
            SharedCounter::Rule(k) => match k.kind {
                RuleKind::Requests => 0,
                RuleKind::Tokens => 1,
                RuleKind::Concurrent => 2,
            },
            SharedCounter::Quota { budget: Budget::Tokens, .. } => 3,
            SharedCounter::Quota { budget: Budget::Requests, .. } => 4,
            SharedCounter::Quota { budget: Budget::Spend, .. } => 5,
        }
    }

    /// A rule's window (0 for concurrency and quotas).
    fn duration_ms(self) -> u64 {
        match self {
            SharedCounter::Rule(k) => k.duration_ms,
            SharedCounter::Quota { .. } => 0,
        }
    }

    /// Whether an admission holds a lease on it until the call ends (reserved tokens, a place
    /// in flight) rather than counting once.
    pub fn leased(self) -> bool {
        match self {
            SharedCounter::Rule(k) => k.kind != RuleKind::Requests,
            SharedCounter::Quota { budget, .. } => budget != Budget::Requests,
        }
    }

    /// What a lease on it holds for a call that reserved `estimate`: tokens, money, or a place.
    pub fn lease_amount(self, estimate: Reservation) -> u64 {
        match self {
            SharedCounter::Quota { budget: Budget::Spend, .. } => estimate.nanos,
            c if c.counts_tokens() => estimate.tokens,
            _ => 1,
        }
    }

    /// What its end records for a call that reserved `estimate` and consumed `consumed`
    /// (tokens, or money for a money budget); `None`: nothing (a concurrency place, a call that
    /// never ran).
    pub fn consumed(self, consumed: Consumed, estimate: Reservation) -> Option<u64> {
        match self {
            SharedCounter::Quota { budget: Budget::Spend, .. } => consumed.nanos(estimate.nanos),
            c if c.counts_tokens() => consumed.tokens(estimate.tokens),
            _ => None,
        }
    }

    /// Whether its end records the tokens consumed.
    fn counts_tokens(self) -> bool {
        matches!(self, SharedCounter::Rule(CounterKey { kind: RuleKind::Tokens, .. }) | SharedCounter::Quota { budget: Budget::Tokens, .. })
    }

    /// Its name in Redis (before the suffixes of [`keys`]).
    pub fn redis_key(self, workspace_id: i64) -> String {
        match self {
            SharedCounter::Rule(k) => counter_key(workspace_id, &k),
            SharedCounter::Quota { key, period_start, budget } => {
                let what = match budget {
                    Budget::Tokens => "tokens",
                    Budget::Requests => "requests",
                    Budget::Spend => "spend",
                };
                format!(
                    "maas:quota:{{ws:{workspace_id}}}:{}:{}:{}:{period_start}:{what}",
                    target_name(key.target),
                    key.subject_id,
                    key.period.as_str()
                )
            }
        }
    }
}

/// One quota budget to check with a call's rules.
#[derive(Clone, Copy, Debug)]
pub struct SharedQuota {
    pub counter: SharedCounter,
    pub budget: u64,
    /// What this replica knows the period spent (the ledger plus its own calls since): what
    /// seeds the count when Redis does not have it.
    pub base: u64,
    /// When Redis may forget the count (Unix ms): a day after its period ends.
    pub expires_at_ms: i64,
}

/// `q`'s budgets as counters in Redis for the period holding `now_secs`, each seeded (where
/// Redis lacks it) with what this process knows was spent: the ledger and its own calls since,
/// not what calls in flight reserve (their leases hold that).
pub fn shared_quotas(q: &QuotaCheck, now_secs: i64) -> impl Iterator<Item = SharedQuota> + '_ {
    let spent = q.spent(now_secs);
    let expires_at_ms = (q.key.period.end(now_secs) + 86_400) * 1000;
    let money = q.spend.as_ref().map(|m| m.nanos);
    [(Budget::Tokens, q.tokens, spent.tokens), (Budget::Requests, q.requests, spent.requests), (Budget::Spend, money, spent.nanos)]
        .into_iter()
        .filter_map(move |(budget, limit, base)| {
            limit.map(|limit| SharedQuota {
                counter: SharedCounter::Quota { key: q.key, period_start: spent.period_start, budget },
                budget: limit,
                base,
                expires_at_ms,
            })
        })
}

/// Why Redis refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Rule(Rejection),
    /// The quota at this index of those checked is spent.
    Quota(usize),
}

/// What a replica did on its own counters while Redis could not answer, replayed in order by
/// [`RedisLimiter::replay`] (`ago_ms`: how long before the replay it happened).
#[derive(Clone, Debug)]
pub enum Replayed {
    /// Requests admitted, or tokens consumed.
    Record {
        counter: usize,
        ago_ms: u64,
        amount: u64,
    },
    Lease {
        counter: usize,
        ago_ms: u64,
        amount: u64,
        lease_id: u64,
    },
    EndLease {
        counter: usize,
        lease_id: u64,
    },
}

/// Calls in flight per endpoint, shared by the replicas for the least-busy policy (see
/// `gateway::shared_load`): one hash, each replica's counts under `<replica>:<endpoint>` and
/// its heartbeat under `<replica>@` (Redis time). A replica writes its own counts (never adds
/// to another's: no count can drift below zero) and reads the sums of the replicas that
/// heartbeat within `stale` ms; a dead replica's fields are deleted.
const SHARE_LOAD: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, stale = ARGV[1], tonumber(ARGV[2])
redis.call('HSET', KEYS[1], me .. '@', now)
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], me .. ':' .. ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], stale * 10)
local all = redis.call('HGETALL', KEYS[1])
local alive, dead = {}, {}
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, -1) == '@' then
    if now - tonumber(all[i + 1]) <= stale then alive[string.sub(f, 1, -2)] = true else dead[#dead + 1] = f end
  end
end
local sums, out = {}, {}
for i = 1, #all, 2 do
  local r, ep = string.match(all[i], '^(.*):(%d+)$')
  if r and r ~= me then
    if alive[r] then sums[ep] = (sums[ep] or 0) + tonumber(all[i + 1]) else dead[#dead + 1] = all[i] end
  end
end
if #dead > 0 then redis.call('HDEL', KEYS[1], unpack(dead)) end
for ep, n in pairs(sums) do out[#out + 1] = tonumber(ep); out[#out + 1] = n end
return out
"#;

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{LIB}{body}"))
}

impl RedisLimiter {
    /// Parses the configuration only; connections open on first use, one per serving thread.
    /// `timeout` bounds connecting and each check, so a stalled Redis costs a request at most that.
    pub fn new(config: &RedisConfig, timeout: Duration) -> Result<Self, RedisError> {
        let certs = |root_cert: &Vec<u8>| redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert.clone()) };
        let client = if config.cluster {
            let seeds: Vec<&str> = config.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
            let mut b = redis::cluster::ClusterClient::builder(seeds).connection_timeout(timeout).response_timeout(timeout).retries(1);
            if let Some(ca) = &config.ca_pem {
                b = b.certs(certs(ca));
            }
            Client::Cluster(b.build()?)
        } else {
            Client::Single(match &config.ca_pem {
                Some(ca) => redis::Client::build_with_tls(config.url.as_str(), certs(ca))?,
                None => redis::Client::open(config.url.as_str())?,
            })
        };
        Ok(RedisLimiter {
            client,
            check: script(CHECK),
            settle: script(SETTLE),
            renew: script(RENEW),
            replay: script(REPLAY),
            share_load: redis::Script::new(SHARE_LOAD),
            conns: ThreadLocal::new(),
            timeout,
        })
    }

    async fn conn(&self) -> Result<Conn, RedisError> {
        let open = || async {
            Ok::<_, redis::RedisError>(match &self.client {
                Client::Single(c) => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout))
                        .set_number_of_retries(1);
                    Conn::Single(ConnectionManager::new_with_config(c.clone(), config).await?)
                }
                Client::Cluster(c) => Conn::Cluster(c.get_async_connection().await?),
            })
        };
        Ok(self.conns.get_or_default().get_or_try_init(open).await?.clone())
    }

    /// Runs `inv`; a connection that broke since its last use (Redis restarted, a proxy closed
    /// it) fails once with an I/O error and reconnects, so that failure is retried once on the
    /// new connection before it counts as an outage. A timeout is not retried: a hung Redis
    /// costs one timeout, not two.
    async fn invoke<T: redis::FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>) -> Result<T, RedisError> {
        let once = || async {
            Ok::<T, RedisError>(match self.conn().await? {
                Conn::Single(mut c) => inv.invoke_async(&mut c).await?,
                Conn::Cluster(mut c) => inv.invoke_async(&mut c).await?,
            })
        };
        match once().await {
            Err(RedisError(e)) if !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()) => {
                once().await
            }
            other => other,
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        Ok(match self.conn().await? {
            Conn::Single(mut c) => cmd.query_async(&mut c).await?,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await?,
        })
    }

    /// Writes this replica's (`me`) calls in flight per endpoint (`mine`) and reads the other
    /// live replicas' sums: one script, whatever the number of endpoints.
    pub async fn share_load(&self, me: &str, stale_ms: u64, mine: &[(i64, u64)]) -> Result<Vec<(i64, u64)>, RedisError> {
        let mut inv = self.share_load.prepare_invoke();
        inv.key("maas:{load}").arg(me).arg(stale_ms);
        for (ep, n) in mine {
            inv.arg(ep).arg(n);
        }
        let flat: Vec<i64> = self.invoke(&inv).await?;
        Ok(flat.chunks_exact(2).map(|p| (p[0], p[1].max(0) as u64)).collect())
    }

    /// Round trip to Redis, for start-up checks.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.query::<String>(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Checks one call against `rules` and `quotas` (all of one caller, in `workspace_id`) and,
    /// if every one admits it, records it: a request in request rules and request budgets, a
    /// lease on `lease.estimate` tokens in token rules and token budgets, and on one place in
    /// concurrency rules. `Err` only when Redis could not answer; the caller decides what to do
    /// then.
    pub async fn check<R: Borrow<RuleCheck>>(
        &self,
        workspace_id: i64,
        rules: &[R],
        quotas: &[SharedQuota],
        lease: LeaseArgs,
    ) -> Result<Result<SharedAdmission, Refused>, RedisError> {
        if rules.is_empty() && quotas.is_empty() {
            return Ok(Ok(SharedAdmission::default()));
        }
        let mut inv = self.check.prepare_invoke();
        inv.arg(lease.estimate.tokens).arg(lease.lease_id).arg(lease.lease_ms).arg(lease.estimate.nanos);
        for r in rules {
            let r = r.borrow();
            let c = SharedCounter::Rule(r.key);
            keys(&mut inv, &c.redis_key(workspace_id));
            inv.arg(c.code()).arg(r.limit).arg(r.key.duration_ms).arg(0);
        }
        for q in quotas {
            keys(&mut inv, &q.counter.redis_key(workspace_id));
            inv.arg(q.counter.code()).arg(q.budget).arg(q.expires_at_ms).arg(q.base);
        }
        let reply: Vec<i64> = self.invoke(&inv).await?;
        let admission = |limit: i64, remaining: i64, reset: i64| {
            (limit >= 0).then(|| Admission { limit: limit as u64, remaining: remaining.max(0) as u64, reset_ms: reset.max(0) as u64 })
        };
        match reply[..] {
            [1, rl, rr, rt, tl, tr, tt] => Ok(Ok(SharedAdmission { requests: admission(rl, rr, rt), tokens: admission(tl, tr, tt) })),
            [0, i, wait] => {
                let i = (i - 1) as usize;
                match rules.get(i) {
                    Some(r) => Ok(Err(Refused::Rule(Rejection::new(r.borrow(), wait.max(0) as u64)))),
                    None if i - rules.len() < quotas.len() => Ok(Err(Refused::Quota(i - rules.len()))),
                    None => Err(unexpected("counter index out of range")),
                }
            }
            _ => Err(unexpected("unexpected reply from the rate-limit script")),
        }
    }

    /// Ends lease `lease_id` on `counters` (of one workspace), taken on `estimate`: releases what
    /// it held and records what was `consumed` in its token rules and budgets and its money
    /// budgets.
    pub async fn settle(
        &self,
        workspace_id: i64,
        counters: &[SharedCounter],
        lease_id: u64,
        estimate: Reservation,
        consumed: Consumed,
    ) -> Result<(), RedisError> {
        let mut inv = self.settle.prepare_invoke();
        inv.arg(lease_id);
        for c in counters {
            keys(&mut inv, &c.redis_key(workspace_id));
            inv.arg(c.code()).arg(c.duration_ms()).arg(c.consumed(consumed, estimate).map_or(-1, |t| t as i64));
        }
        self.invoke::<i64>(&inv).await.map(drop)
    }

    /// Extends lease `lease_id` to `lease_ms` from now where it is still held.
    pub async fn renew(&self, workspace_id: i64, counters: &[SharedCounter], lease_id: u64, lease_ms: u64) -> Result<(), RedisError> {
        let mut inv = self.renew.prepare_invoke();
        inv.arg(lease_id).arg(lease_ms);
        for c in counters {
            keys(&mut inv, &c.redis_key(workspace_id));
        }
        self.invoke::<i64>(&inv).await.map(drop)
    }

    /// Writes into Redis what was done on a replica's own counters (all of one workspace) while
    /// Redis could not answer, in the order it happened, each at its own time on Redis's clock.
    pub async fn replay(&self, workspace_id: i64, counters: &[SharedCounter], ops: &[Replayed], lease_ms: u64) -> Result<(), RedisError> {
        let mut inv = self.replay.prepare_invoke();
        inv.arg(lease_ms);
        for c in counters {
            keys(&mut inv, &c.redis_key(workspace_id));
        }
        for c in counters {
            inv.arg(c.code()).arg(c.duration_ms());
        }
        for op in ops {
            match *op {
                Replayed::Record { counter, ago_ms, amount } => inv.arg(1).arg(counter + 1).arg(ago_ms).arg(amount),
                Replayed::Lease { counter, ago_ms, amount, lease_id } => inv.arg(2).arg(counter + 1).arg(ago_ms).arg(amount).arg(lease_id),
                Replayed::EndLease { counter, lease_id } => inv.arg(3).arg(counter + 1).arg(0).arg(lease_id),
            };
        }
        self.invoke::<i64>(&inv).await.map(drop)
    }
}

/// A counter's four keys: its log's ticks (sorted set) and counts (hash), its leases' expiries
/// (sorted set) and amounts (hash, with their `sum`).
fn keys(inv: &mut redis::ScriptInvocation<'_>, key: &str) {
    inv.key(format!("{key}:ticks")).key(format!("{key}:counts")).key(format!("{key}:leases")).key(format!("{key}:held"));
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError(redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, what)))
}

/// `maas:rl:{ws:W}:m<model>:<target>:<subject>:<duration ms>` for request rules,
/// `…:<subject>:tokens:<duration ms>` and `…:<subject>:concurrent` for the others (then the
/// suffixes of [`keys`]): the same counter for the same rule meaning, across reloads and
/// replicas (as [`CounterKey`](super::limiter::CounterKey)).
pub fn counter_key(workspace_id: i64, key: &CounterKey) -> String {
    let target = target_name(key.target);
    let (model, subject, ms) = (key.model_id, key.subject_id, key.duration_ms);
    match key.kind {
        RuleKind::Requests => format!("maas:rl:{{ws:{workspace_id}}}:m{model}:{target}:{subject}:{ms}"),
        RuleKind::Tokens => format!("maas:rl:{{ws:{workspace_id}}}:m{model}:{target}:{subject}:tokens:{ms}"),
        RuleKind::Concurrent => format!("maas:rl:{{ws:{workspace_id}}}:m{model}:{target}:{subject}:concurrent"),
    }
}

fn target_name(target: RuleTarget) -> &'static str {
    match target {
        RuleTarget::ApiKey => "key",
        RuleTarget::Workspace => "ws",
    }
}
