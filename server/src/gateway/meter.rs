//! The usage meter beside the gateway: one [`Meter::record`] per call, when its response ends
//! (or the client leaves, or the gateway refuses it), aggregated in memory per serving thread
//! into per-minute rollups, and [`Meter::flush`]ed into `usage_minutes` every few seconds in
//! one transaction (and once more at shutdown: a rolling restart loses no usage).
//!
//! No lock is shared by all requests: each serving thread adds to its own shard (its mutex is
//! only ever contended by the flush). Memory is bounded whatever the key count: past
//! [`MAX_ROWS`] rollups in a shard until the next flush, further calls of new dimensions are
//! added to one overflow row per minute, operation, outcome and status (model `(overflow)`,
//! no endpoint, workspace or key), so totals stay exact while the breakdown is capped.
use super::op::Op;
use super::record::{Call, FailReason, Outcome};
use app::ssr::entities::usage_minute;
use app::ssr::usage_rollups::{insert_minutes, MinuteRow};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, TransactionTrait};
use std::sync::Arc;

pub use app::ssr::usage_rollups::{bucket, Sums, BUCKETS, BUCKETS_MS};
/// Rollups a serving thread holds between two flushes before it folds new ones into overflow.
pub const MAX_ROWS: usize = 50_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    minute: i64,
    model: Arc<str>,
    maas_model_id: Option<i64>,
    endpoint_id: Option<i64>,
    workspace_id: Option<i64>,
    api_key_id: Option<i64>,
    op: Op,
    outcome: Outcome,
    status: u16,
    asked_model_id: Option<i64>,
}

/// Adds one call to a rollup.
fn add(s: &mut Sums, c: &Call) {
    s.requests += 1;
    s.failovers += i64::from(c.failovers);
    match c.tokens {
        Some(t) => {
            s.usage_known += 1;
            s.input += t.input as i64;
            s.output += t.output as i64;
            s.total += t.total as i64;
            s.cached += t.cached as i64;
            s.cache_write += t.cache_write as i64;
        }
        // No upstream ran it (refused, or none answered): it used nothing, and that is known.
        // Only an answer that reported no usage is unknown (as `/metrics` counts it).
        None if c.endpoint_id.is_none() => s.usage_known += 1,
        // An operation without tokens (speech) is counted in its unit: its usage is known.
        None if !c.op.counts_tokens() => s.usage_known += 1,
        None => {}
    }
    s.units += c.units as i64;
    match c.cost {
        Some(n) => s.cost += n,
        None => s.cost_unknown += 1,
    }
    s.latency_ms += c.total_ms as i64;
    s.latency_hist[bucket(c.total_ms)] += 1;
    if let Some(t) = c.ttfb_ms {
        s.ttfb_ms += t as i64;
        s.ttfb_hist[bucket(t)] += 1;
    }
}

/// One serving thread's part of the meter.
#[derive(Default)]
struct Shard {
    /// Since the last flush: what goes into the usage tables.
    rollups: FxHashMap<Key, Sums>,
    /// Since start, never drained: what `/metrics` exposes (bounded labels only).
    series: super::metrics::Series,
}

#[derive(Default)]
pub struct Meter {
    shards: thread_local::ThreadLocal<Mutex<Shard>>,
}

impl Meter {
    /// Adds one call to this thread's rollups: a lock of this thread's own, a hash of the
    /// call's dimensions, a few additions.
    pub fn record(&self, c: Call) {
        let mut key = Key {
            minute: (c.at_ms / 60_000) as i64,
            model: c.model.clone(),
            maas_model_id: c.maas_model_id,
            endpoint_id: c.endpoint_id,
            workspace_id: c.workspace_id,
            api_key_id: c.api_key_id,
            op: c.op,
            outcome: c.outcome,
            status: c.status,
            asked_model_id: c.asked_model_id,
        };
        let mut guard = self.shards.get_or_default().lock();
        let shard = &mut *guard;
        shard.series.record(&c);
        if shard.rollups.len() >= MAX_ROWS && !shard.rollups.contains_key(&key) {
            key = Key {
                model: Arc::from("(overflow)"),
                maas_model_id: None,
                endpoint_id: None,
                workspace_id: None,
                api_key_id: None,
                asked_model_id: None,
                ..key
            };
        }
        add(shard.rollups.entry(key).or_default(), &c);
    }

    /// A call refused by `rule` (for `/metrics`; the call itself is recorded by [`Self::record`]).
    pub fn rate_limited(&self, model: &Arc<str>, rule: &str) {
        self.shards.get_or_default().lock().series.rate_limited(model, rule);
    }

    /// An upstream that failed a call (the call may still succeed on another endpoint).
    pub fn upstream_failed(&self, endpoint_id: i64, reason: FailReason) {
        self.shards.get_or_default().lock().series.upstream_failed(endpoint_id, reason);
    }

    /// A call its model's endpoints could not answer, answered by the fallback `answered`.
    pub fn fell_back(&self, asked: &Arc<str>, answered: Option<&Arc<str>>) {
        self.shards.get_or_default().lock().series.fell_back(asked, answered);
    }

    /// A retry not made: the model's retry budget was spent.
    pub fn retry_refused(&self, model: Option<&Arc<str>>) {
        if let Some(m) = model {
            self.shards.get_or_default().lock().series.retry_refused(m);
        }
    }

    /// Every thread's `/metrics` series, merged.
    pub fn series(&self) -> super::metrics::Series {
        let mut all = super::metrics::Series::default();
        for shard in self.shards.iter() {
            all.merge(&shard.lock().series);
        }
        all
    }

    /// Takes every thread's rollups, merged.
    /// Calls recorded since the last flush, by (outcome, status): what a call's end left here.
    pub fn pending(&self) -> std::collections::BTreeMap<(&'static str, u16), i64> {
        let mut by = std::collections::BTreeMap::new();
        for shard in self.shards.iter() {
            for (k, v) in &shard.lock().rollups {
                *by.entry((k.outcome.as_str(), k.status)).or_default() += v.requests;
            }
        }
        by
    }

    /// Tokens of the calls recorded and not flushed yet, by operation: (input, output, cached).
    pub fn pending_tokens(&self) -> std::collections::BTreeMap<&'static str, (i64, i64, i64)> {
        let mut by = std::collections::BTreeMap::new();
        for shard in self.shards.iter() {
            for (k, v) in &shard.lock().rollups {
                let t: &mut (i64, i64, i64) = by.entry(k.op.name()).or_default();
                *t = (t.0 + v.input, t.1 + v.output, t.2 + v.cached);
            }
        }
        by
    }

    /// What the calls recorded and not flushed yet cost (nano-units), and how many of them have
    /// an unknown cost, by operation.
    pub fn pending_cost(&self) -> std::collections::BTreeMap<&'static str, (i64, i64)> {
        let mut by = std::collections::BTreeMap::new();
        for shard in self.shards.iter() {
            for (k, v) in &shard.lock().rollups {
                let c: &mut (i64, i64) = by.entry(k.op.name()).or_default();
                *c = (c.0 + v.cost, c.1 + v.cost_unknown);
            }
        }
        by
    }

    /// Units (besides tokens) of the calls recorded and not flushed yet, by operation.
    pub fn pending_units(&self) -> std::collections::BTreeMap<&'static str, i64> {
        let mut by = std::collections::BTreeMap::new();
        for shard in self.shards.iter() {
            for (k, v) in &shard.lock().rollups {
                *by.entry(k.op.name()).or_default() += v.units;
            }
        }
        by
    }

    fn take(&self) -> FxHashMap<Key, Sums> {
        let mut all: FxHashMap<Key, Sums> = FxHashMap::default();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut shard.lock().rollups);
            for (k, v) in taken {
                all.entry(k).or_default().merge(&v);
            }
        }
        all
    }

    /// Writes what was recorded since the last flush as rows of `gateway_id`, in one
    /// transaction. On failure the rollups are kept for the next flush (added to what comes
    /// meanwhile), so a database outage delays usage, it does not lose it. Returns the rows.
    pub async fn flush(&self, db: &DatabaseConnection, gateway_id: &str) -> Result<usize, DbErr> {
        let rows = self.take();
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let models: Vec<MinuteRow> = rows
            .iter()
            .map(|(k, s)| MinuteRow {
                minute: k.minute,
                gateway_id,
                maas_model_id: k.maas_model_id,
                model: &k.model,
                endpoint_id: k.endpoint_id,
                workspace_id: k.workspace_id,
                api_key_id: k.api_key_id,
                operation: k.op.name(),
                outcome: k.outcome.as_str(),
                status: i32::from(k.status),
                asked_model_id: k.asked_model_id,
                sums: s,
            })
            .collect();
        let written = async {
            let txn = db.begin().await?;
            insert_minutes(&txn, &models).await?;
            txn.commit().await
        }
        .await;
        drop(models);
        if let Err(e) = written {
            // Back into this thread's shard, to go out with the next flush.
            let mut shard = self.shards.get_or_default().lock();
            for (k, v) in rows {
                shard.rollups.entry(k).or_default().merge(&v);
            }
            return Err(e);
        }
        Ok(n)
    }
}

/// Sums of the stored rollups, for tests and the console: (requests, usage_known, input,
/// output, total) of the rows matching `filter`.
pub async fn totals(db: &impl ConnectionTrait, filter: sea_orm::Condition) -> Result<[i64; 5], DbErr> {
    use sea_orm::QueryFilter;
    let rows = usage_minute::Entity::find().filter(filter).all(db).await?;
    Ok(rows.iter().fold([0; 5], |t, r| {
        [t[0] + r.requests, t[1] + r.usage_known, t[2] + r.input_tokens, t[3] + r.output_tokens, t[4] + r.total_tokens]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::usage::Tokens;

    fn call(key: i64, tokens: Option<Tokens>, total_ms: u64) -> Call {
        Call {
            model: Arc::from("m"),
            maas_model_id: Some(1),
            asked_model_id: None,
            endpoint_id: Some(2),
            workspace_id: Some(3),
            api_key_id: Some(key),
            op: Op::Chat,
            status: 200,
            outcome: Outcome::Ok,
            failovers: 0,
            ttfb_ms: Some(total_ms / 2),
            total_ms,
            tokens,
            units: 0,
            cost: Some(0),
            at_ms: 120_000,
        }
    }

    #[test]
    fn calls_of_one_minute_and_dimensions_add_up_and_unknown_usage_counts_apart() {
        let m = Meter::default();
        m.record(call(7, Some(Tokens { input: 5, output: 2, total: 7, cached: 0, cache_write: 0, seconds: 0 }), 40));
        m.record(call(7, None, 3_000));
        m.record(call(8, Some(Tokens { input: 1, output: 1, total: 2, cached: 0, cache_write: 0, seconds: 0 }), 10));
        let rows = m.take();
        assert_eq!(rows.len(), 2);
        let s = rows.iter().find(|(k, _)| k.api_key_id == Some(7)).unwrap().1;
        assert_eq!((s.requests, s.usage_known, s.input, s.output, s.total), (2, 1, 5, 2, 7));
        assert_eq!(s.latency_hist[bucket(40)] + s.latency_hist[bucket(3_000)], 2);
        assert_eq!(bucket(40), 2, "40 ms is in the bucket up to 50 ms");
        assert_eq!(bucket(1_000_000), BUCKETS - 1);
        assert!(m.take().is_empty(), "taken once");
    }

    #[test]
    fn past_the_cap_new_dimensions_fold_into_one_overflow_row_and_totals_stay_exact() {
        let m = Meter::default();
        for k in 0..(MAX_ROWS as i64 + 1000) {
            m.record(call(k, Some(Tokens { input: 1, output: 1, total: 2, cached: 0, cache_write: 0, seconds: 0 }), 1));
        }
        let rows = m.take();
        assert_eq!(rows.len(), MAX_ROWS + 1);
        let requests: i64 = rows.values().map(|s| s.requests).sum();
        assert_eq!(requests, MAX_ROWS as i64 + 1000);
        let overflow = rows.iter().find(|(k, _)| &*k.model == "(overflow)").unwrap();
        assert_eq!((overflow.1.requests, overflow.0.api_key_id), (1000, None));
    }
}
