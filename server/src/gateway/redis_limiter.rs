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
use super::limiter::{Admission, Rejection, RuleCheck};
use app::types::RuleTarget;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::borrow::Borrow;
use std::time::Duration;
use thread_local::ThreadLocal;

/// KEYS: two per rule (its ticks' sorted set, its counts' hash). ARGV: `limit, duration_ms` per
/// rule. Returns `{1, limit, remaining, ms until its oldest admission leaves}` for the tightest
/// rule when admitted, or
/// `{0, rule_index (1-based), wait_ms}` when refused. Runs atomically: nothing interleaves.
const CHECK_AND_RECORD: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 2
local best_limit, best_left, best = -1, -1, 1
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, dur = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  -- The window is (now - dur, now]: a tick stamped at or before now - dur has left it.
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now - dur)
  if #gone > 0 then
    local counts = redis.call('HMGET', h, unpack(gone))
    local sum = 0
    for j = 1, #counts do sum = sum + (tonumber(counts[j]) or 0) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - dur)
    redis.call('HDEL', h, unpack(gone))
    redis.call('HINCRBY', h, 'n', -sum)
  end
  local used = tonumber(redis.call('HGET', h, 'n')) or 0
  if used >= limit then
    -- One more fits once the (used - limit + 1) oldest admissions have left.
    local must = used - limit + 1
    local ticks = redis.call('ZRANGE', z, 0, -1)
    local counts = {}
    if #ticks > 0 then counts = redis.call('HMGET', h, unpack(ticks)) end
    local frees = now
    for j = 1, #ticks do
      local c = tonumber(counts[j]) or 0
      if c >= must then
        frees = tonumber(ticks[j]) + dur
        break
      end
      must = must - c
    end
    return {0, i, frees - now}
  end
  local left = limit - used - 1
  if best_left < 0 or left < best_left then
    best_limit, best_left, best = limit, left, i
  end
end
-- Rules with the same key (10/min and 6/min on one API key) share its counter: record once.
-- (Redis runs Lua 5.1: no goto.)
local recorded = {}
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  if not recorded[z] then
    recorded[z] = true
    local dur = tonumber(ARGV[2 * i])
    local tick = math.max(math.floor(dur / 1000), 1)
    local stamp = string.format('%d', math.floor(now / tick) * tick + tick - 1)
    redis.call('HINCRBY', h, 'n', 1)
    -- Only a tick's first admission adds its stamp and moves the expiry: set then, one window
    -- and a tick ahead, the keys outlive every admission of the tick (which leave the window
    -- at stamp + dur). Later admissions in a busy tick cost two increments, not five calls.
    if redis.call('HINCRBY', h, stamp, 1) == 1 then
      redis.call('ZADD', z, stamp, stamp)
      redis.call('PEXPIRE', z, dur + tick)
      redis.call('PEXPIRE', h, dur + tick)
    end
  end
end
local oldest = redis.call('ZRANGE', KEYS[2 * best - 1], 0, 0)
local reset = tonumber(oldest[1]) + tonumber(ARGV[2 * best]) - now
return {1, best_limit, best_left, reset}
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
    script: redis::Script,
    /// One multiplexed connection per serving thread: each runtime drives its own, as with the
    /// upstream pools (see upstream.rs).
    conns: ThreadLocal<tokio::sync::OnceCell<Conn>>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

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
        Ok(RedisLimiter { client, script: redis::Script::new(CHECK_AND_RECORD), conns: ThreadLocal::new(), timeout })
    }

    async fn conn(&self) -> Result<Conn, RedisError> {
        let open = || async {
            Ok::<_, redis::RedisError>(match &self.client {
                Client::Single(c) => {
                    let config = ConnectionManagerConfig::new().set_connection_timeout(Some(self.timeout)).set_response_timeout(Some(self.timeout)).set_number_of_retries(1);
                    Conn::Single(ConnectionManager::new_with_config(c.clone(), config).await?)
                }
                Client::Cluster(c) => Conn::Cluster(c.get_async_connection().await?),
            })
        };
        Ok(self.conns.get_or_default().get_or_try_init(open).await?.clone())
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        Ok(match self.conn().await? {
            Conn::Single(mut c) => cmd.query_async(&mut c).await?,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await?,
        })
    }

    /// Round trip to Redis, for start-up checks.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.query::<String>(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Checks and records one request against `rules` (all of one caller, in `workspace_id`).
    /// `Err` only when Redis could not answer; the caller decides what to do then.
    pub async fn check<R: Borrow<RuleCheck>>(&self, workspace_id: i64, rules: &[R]) -> Result<Result<Option<Admission>, Rejection>, RedisError> {
        if rules.is_empty() {
            return Ok(Ok(None));
        }
        let mut inv = self.script.prepare_invoke();
        for r in rules {
            let r = r.borrow();
            let key = counter_key(workspace_id, r);
            inv.key(format!("{key}:ticks")).key(key + ":counts").arg(r.limit).arg(r.key.duration_ms);
        }
        let reply: Vec<i64> = match self.conn().await? {
            Conn::Single(mut c) => inv.invoke_async(&mut c).await?,
            Conn::Cluster(mut c) => inv.invoke_async(&mut c).await?,
        };
        match reply[..] {
            [1, limit, remaining, reset] => Ok(Ok(Some(Admission { limit: limit as u64, remaining: remaining as u64, reset_ms: reset.max(0) as u64 }))),
            [0, i, wait] => {
                let r = rules.get((i - 1) as usize).map(Borrow::borrow).ok_or_else(|| unexpected("rule index out of range"))?;
                Ok(Err(Rejection::new(r, wait.max(0) as u64)))
            }
            _ => Err(unexpected("unexpected reply from the rate-limit script")),
        }
    }
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError(redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, what)))
}

/// `maas:rl:{ws:W}:m<model>:<target>:<subject>:<duration ms>` (then `:ticks` and `:counts`): the
/// same counter for the same rule meaning, across reloads and replicas (as
/// [`CounterKey`](super::limiter::CounterKey)).
pub fn counter_key(workspace_id: i64, r: &RuleCheck) -> String {
    let target = match r.key.target {
        RuleTarget::ApiKey => "key",
        RuleTarget::Workspace => "ws",
    };
    format!("maas:rl:{{ws:{workspace_id}}}:m{}:{target}:{}:{}", r.key.model_id, r.key.subject_id, r.key.duration_ms)
}
