//! Rate limits shared by every gateway replica of a cluster, in Redis: the same sliding-window
//! semantics as the in-process [`Limiter`](super::limiter::Limiter) (no window of `duration`
//! ever admits more than `limit`; a request is admitted only if every applicable rule admits it,
//! and a rejection consumes nothing), made atomic across replicas by running the whole
//! check-then-record as one Lua script, which Redis executes with nothing interleaved.
//!
//! Each counter is a sorted set of admissions scored by the millisecond they were admitted, on
//! the Redis server's clock (`TIME`), so replicas with skewed clocks still share one window. The
//! cost is one member per admission inside the window (a 10,000-per-hour rule holds up to
//! 10,000 members, ~0.6 MiB), and every key expires one window after its last admission.
//!
//! All keys of one request carry the caller's workspace as a hash tag (`{ws:7}`): the rules that
//! apply to a caller are its key's and its workspace's, so one script's keys share a Redis
//! Cluster slot.
use super::limiter::{Admission, Rejection, RuleCheck};
use app::types::RuleTarget;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thread_local::ThreadLocal;

/// KEYS: one counter per rule. ARGV: a member unique to this request, then `limit, duration_ms`
/// per rule. Returns `{1, limit, remaining}` for the tightest rule when admitted, or
/// `{0, rule_index (1-based), wait_ms}` when refused.
const CHECK_AND_RECORD: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best_limit, best_left = -1, -1
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local dur = tonumber(ARGV[2 * i + 1])
  -- The window is (now - dur, now]: an admission at now - dur has left it.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - dur)
  local used = redis.call('ZCARD', key)
  if used >= limit then
    -- The (used - limit + 1)-th oldest admission must leave before one more fits.
    local e = redis.call('ZRANGE', key, used - limit, used - limit, 'WITHSCORES')
    local frees = now
    if e[2] then frees = tonumber(e[2]) + dur end
    return {0, i, frees - now}
  end
  local left = limit - used - 1
  if best_left < 0 or left < best_left then
    best_limit, best_left = limit, left
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return {1, best_limit, best_left}
"#;

pub struct RedisLimiter {
    client: redis::Client,
    script: redis::Script,
    /// One multiplexed connection per serving thread: each runtime drives its own, as with the
    /// upstream pools (see upstream.rs).
    conns: ThreadLocal<tokio::sync::OnceCell<ConnectionManager>>,
    /// Makes each admission's member unique across replicas (random) and requests (counter).
    replica: u64,
    seq: AtomicU64,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

impl RedisLimiter {
    /// Parses the URL only; connections open on first use, one per serving thread.
    /// `timeout` bounds connecting and each check, so a stalled Redis costs a request at most that.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        Ok(RedisLimiter {
            client: redis::Client::open(url)?,
            script: redis::Script::new(CHECK_AND_RECORD),
            conns: ThreadLocal::new(),
            replica: rand::random(),
            seq: AtomicU64::new(0),
            timeout,
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, RedisError> {
        let cell = self.conns.get_or_default();
        let config = ConnectionManagerConfig::new().set_connection_timeout(Some(self.timeout)).set_response_timeout(Some(self.timeout)).set_number_of_retries(1);
        Ok(cell.get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config)).await?.clone())
    }

    /// Round trip to Redis, for start-up checks.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await?;
        Ok(())
    }

    /// Checks and records one request against `rules` (all of one caller, in `workspace_id`).
    /// `Err` only when Redis could not answer; the caller decides what to do then.
    pub async fn check<R: Borrow<RuleCheck>>(&self, workspace_id: i64, rules: &[R]) -> Result<Result<Option<Admission>, Rejection>, RedisError> {
        if rules.is_empty() {
            return Ok(Ok(None));
        }
        let mut inv = self.script.prepare_invoke();
        inv.arg(format!("{:016x}-{}", self.replica, self.seq.fetch_add(1, Ordering::Relaxed)));
        for r in rules {
            let r = r.borrow();
            inv.key(counter_key(workspace_id, r)).arg(r.limit).arg(r.key.duration_ms);
        }
        let mut conn = self.conn().await?;
        let (admitted, a, b): (i64, i64, i64) = inv.invoke_async(&mut conn).await?;
        if admitted == 1 {
            return Ok(Ok(Some(Admission { limit: a as u64, remaining: b as u64 })));
        }
        let r = rules.get((a - 1) as usize).map(Borrow::borrow).ok_or_else(|| redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "rule index out of range")))?;
        let wait_ms = b.max(0) as u64;
        Ok(Err(Rejection { rule: r.label.clone(), limit: r.limit, duration_secs: r.key.duration_ms / 1000, retry_after_secs: wait_ms.div_ceil(1000).max(1) }))
    }
}

/// `maas:rl:{ws:W}:m<model>:<target>:<subject>:<duration ms>`: the same counter for the same
/// rule meaning, across reloads and replicas (as [`CounterKey`](super::limiter::CounterKey)).
fn counter_key(workspace_id: i64, r: &RuleCheck) -> String {
    let target = match r.key.target {
        RuleTarget::ApiKey => "key",
        RuleTarget::Workspace => "ws",
    };
    format!("maas:rl:{{ws:{workspace_id}}}:m{}:{target}:{}:{}", r.key.model_id, r.key.subject_id, r.key.duration_ms)
}
