//! The usage tables (`usage_minutes`, `usage_hours`): the one place that knows their columns.
//! The gateway's meter appends minute rows ([`insert_minutes`]); the control plane compacts
//! complete hours into hourly rows and drops old rows ([`compact`], [`retain`]); the console
//! adds them up ([`aggregate`]).
//!
//! Rows are appended, never updated in place (several flushes and replicas write the same
//! minute): readers sum. Each call is counted exactly once by "hourly rows + minute rows not yet
//! compacted"; minute rows stay (flagged `compacted`) for minute-resolution charts until their
//! retention ends.
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr, IsolationLevel, Statement, TransactionSession, TransactionTrait, Value};

/// Upper bounds of the latency and time-to-first-byte histogram buckets, ms; one more bucket
/// counts everything above the last. Fixed, so that percentiles over any range come from the
/// stored counts.
pub const BUCKETS_MS: [u64; 13] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000];
pub const BUCKETS: usize = BUCKETS_MS.len() + 1;

pub fn bucket(ms: u64) -> usize {
    BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(BUCKETS_MS.len())
}

/// The additive part of a rollup: what a row holds and what a query sums.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sums {
    pub requests: i64,
    pub failovers: i64,
    /// Calls whose upstream reported usage; the token sums are theirs alone.
    pub usage_known: i64,
    pub input: i64,
    pub output: i64,
    pub total: i64,
    /// Input tokens read from the upstream's prompt cache (part of `input`).
    #[serde(default)]
    pub cached: i64,
    /// Of the operation's unit besides tokens: documents reranked, characters spoken, images
    /// made (see the gateway's `Op::unit`).
    #[serde(default)]
    pub units: i64,
    /// What the calls cost, nano-units of the platform currency (each call rounded once: see
    /// `ssr::pricing`).
    #[serde(default)]
    pub cost: i64,
    /// Calls an upstream answered whose cost is unknown (no price in force, or no usage
    /// reported): never counted as free.
    #[serde(default)]
    pub cost_unknown: i64,
    /// Input tokens written to the upstream's prompt cache (part of `input`).
    #[serde(default)]
    pub cache_write: i64,
    pub latency_ms: i64,
    pub ttfb_ms: i64,
    pub latency_hist: [i64; BUCKETS],
    pub ttfb_hist: [i64; BUCKETS],
}

impl Sums {
    pub fn merge(&mut self, v: &Sums) {
        self.requests += v.requests;
        self.failovers += v.failovers;
        self.usage_known += v.usage_known;
        self.input += v.input;
        self.output += v.output;
        self.total += v.total;
        self.cached += v.cached;
        self.cache_write += v.cache_write;
        self.units += v.units;
        self.cost += v.cost;
        self.cost_unknown += v.cost_unknown;
        self.latency_ms += v.latency_ms;
        self.ttfb_ms += v.ttfb_ms;
        for i in 0..BUCKETS {
            self.latency_hist[i] += v.latency_hist[i];
            self.ttfb_hist[i] += v.ttfb_hist[i];
        }
    }
}

/// The `q` quantile (0..1) of a bucket histogram, ms, interpolated within its bucket as
/// Prometheus's `histogram_quantile` does; `None` without observations. Above the last bound
/// it answers the last bound (the histogram cannot say more).
pub fn quantile(hist: &[i64; BUCKETS], q: f64) -> Option<f64> {
    let count: i64 = hist.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut seen = 0i64;
    for (i, &n) in hist.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            let Some(&hi) = BUCKETS_MS.get(i) else { return Some(*BUCKETS_MS.last().unwrap() as f64) };
            let lo = if i == 0 { 0 } else { BUCKETS_MS[i - 1] };
            let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lo as f64 + (hi - lo) as f64 * within);
        }
        seen += n;
    }
    Some(*BUCKETS_MS.last().unwrap() as f64)
}

/// One minute row as the meter writes it.
#[derive(Clone, Debug)]
pub struct MinuteRow<'a> {
    pub minute: i64,
    pub gateway_id: &'a str,
    pub maas_model_id: Option<i64>,
    pub model: &'a str,
    pub endpoint_id: Option<i64>,
    pub workspace_id: Option<i64>,
    pub api_key_id: Option<i64>,
    pub operation: &'static str,
    pub outcome: &'static str,
    pub status: i32,
    /// The model asked for, when a fallback model answered instead.
    pub asked_model_id: Option<i64>,
    pub sums: &'a Sums,
}

/// The counts of [`Sums`], in its order: what a narrow query sums.
const COUNTS: [&str; 11] = [
    "requests",
    "failovers",
    "usage_known",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "units",
    "cost_nanos",
    "cost_unknown",
    "cache_write_tokens",
];

/// The summed columns, in [`Sums`] order, then the histogram buckets.
fn sum_columns() -> Vec<String> {
    COUNTS
        .into_iter()
        .chain(["latency_ms_sum", "ttfb_ms_sum"])
        .map(str::to_owned)
        .chain((0..BUCKETS).map(|i| format!("lat_b{i}")))
        .chain((0..BUCKETS).map(|i| format!("ttfb_b{i}")))
        .collect()
}

fn sum_values(s: &Sums) -> impl Iterator<Item = i64> + '_ {
    [
        s.requests,
        s.failovers,
        s.usage_known,
        s.input,
        s.output,
        s.total,
        s.cached,
        s.units,
        s.cost,
        s.cost_unknown,
        s.cache_write,
        s.latency_ms,
        s.ttfb_ms,
    ]
    .into_iter()
    .chain(s.latency_hist.iter().copied())
    .chain(s.ttfb_hist.iter().copied())
}

/// Dimension columns shared by both tables (besides the time column).
const DIMENSIONS: &str = "maas_model_id, model, endpoint_id, workspace_id, api_key_id, operation, outcome, status, asked_model_id";

/// Bound values per INSERT statement: under SQLite's 32,766 (PostgreSQL's bound is 65,535).
/// With 52 columns, 615 rows a statement: a 10,000-row flush is 17 statements, each prepared
/// once and cached by the driver (full batches share one text).
const MAX_VALUES: usize = 32_000;

const FIXED: [&str; 11] = [
    "minute",
    "gateway_id",
    "maas_model_id",
    "model",
    "endpoint_id",
    "workspace_id",
    "api_key_id",
    "operation",
    "outcome",
    "status",
    "asked_model_id",
];

/// `INSERT INTO usage_minutes (…) VALUES (?, …), …` for `rows` rows, with the backend's
/// placeholders. Written by hand rather than built by sea-query: the builder made one
/// expression per value (400,000 for a 10,000-row flush) only to print `?` for each.
fn insert_sql(backend: sea_orm::DatabaseBackend, rows: usize) -> String {
    let sums = sum_columns();
    let per_row = FIXED.len() + sums.len();
    let mut sql = format!("INSERT INTO usage_minutes ({}, {}) VALUES ", FIXED.join(", "), sums.join(", "));
    sql.reserve(rows * per_row * 7);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..per_row {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                sea_orm::DatabaseBackend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
                _ => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// Appends minute rows (in the caller's transaction, if any).
pub async fn insert_minutes(db: &impl ConnectionTrait, rows: &[MinuteRow<'_>]) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let per_row = FIXED.len() + sum_columns().len();
    let batch_rows = MAX_VALUES / per_row;
    let full = (rows.len() >= batch_rows).then(|| insert_sql(backend, batch_rows));
    for batch in rows.chunks(batch_rows) {
        let mut values: Vec<Value> = Vec::with_capacity(batch.len() * per_row);
        for r in batch {
            values.extend([
                r.minute.into(),
                r.gateway_id.into(),
                r.maas_model_id.into(),
                r.model.into(),
                r.endpoint_id.into(),
                r.workspace_id.into(),
                r.api_key_id.into(),
                r.operation.into(),
                r.outcome.into(),
                Value::from(r.status),
                r.asked_model_id.into(),
            ]);
            values.extend(sum_values(r.sums).map(Value::from));
        }
        let sql = match &full {
            Some(sql) if batch.len() == batch_rows => sql.clone(),
            _ => insert_sql(backend, batch.len()),
        };
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// Folds every minute row of a complete hour before `before_minute` not yet compacted into
/// hourly rows, adds them into the quarters and blocks (the unfiltered views' pre-added sums),
/// and flags them compacted, in one transaction that sees one snapshot (repeatable read: a row
/// committed meanwhile by a replica's flush is neither summed nor flagged, it goes with the next
/// run). Returns the hourly rows written.
pub async fn compact<C: TransactionTrait + ConnectionTrait>(db: &C, before_minute: i64) -> Result<u64, DbErr> {
    let before = before_minute - before_minute.rem_euclid(60);
    let sums = sum_columns();
    let selected = sums.iter().map(|c| format!("SUM({c})")).collect::<Vec<_>>().join(", ");
    // SQLite transactions are serializable already (and it refuses the setting); there the
    // pass takes the write lock at BEGIN (IMMEDIATE): a deferred one reads first, and when a
    // gateway's flush commits before its first write it fails with SQLITE_BUSY_SNAPSHOT (517),
    // which no busy timeout waits out, and the whole pass is lost until the next.
    let sqlite = db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite;
    let txn = db
        .begin_with_options(sea_orm::TransactionOptions {
            isolation_level: (!sqlite).then_some(IsolationLevel::RepeatableRead),
            access_mode: None,
            sqlite_transaction_mode: sqlite.then_some(sea_orm::SqliteTransactionMode::Immediate),
        })
        .await?;
    let backend = txn.get_database_backend();
    let run = |sql: String| txn.execute_raw(Statement::from_string(backend, sql));
    // The hourly rows this pass writes are those above the highest id it sees now (a row of a
    // concurrent pass is invisible to this snapshot whatever its id).
    let last_id: i64 = match txn
        .query_all_raw(Statement::from_string(backend, "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM usage_hours"))
        .await?
        .first()
    {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    let pending = format!("{} AND minute < {before}", compacted_is(false));
    let written = run(format!(
        "INSERT INTO usage_hours (hour, {DIMENSIONS}, {cols}) SELECT minute / 60, {DIMENSIONS}, {selected} FROM usage_minutes WHERE {pending} GROUP BY minute / 60, {DIMENSIONS}",
        cols = sums.join(", ")
    ))
    .await?
    .rows_affected();
    run(blocks::upsert("usage_quarters", &[], &[("quarter", "minute / 15"), ("outcome", "outcome")], &sums, "usage_minutes", &pending))
        .await?;
    let new_hours = format!("id > {last_id}");
    let counts: Vec<String> = COUNTS.iter().map(|c| c.to_string()).collect();
    for level in 0..blocks::LEVELS {
        let level_sql = level.to_string();
        let block = format!("hour / {}", blocks::UNIT_HOURS << level);
        let fixed = [("level", level_sql.as_str())];
        run(blocks::upsert("usage_model_blocks", &fixed, &blocks::model_keys(&block), &sums, "usage_hours", &new_hours)).await?;
        run(blocks::upsert("usage_key_blocks", &fixed, &blocks::key_keys(&block), &counts, "usage_hours", &new_hours)).await?;
    }
    run(format!("UPDATE usage_minutes SET compacted = TRUE WHERE {pending}")).await?;
    txn.commit().await?;
    Ok(written)
}

/// Deletes compacted minute rows older than `keep_minutes` and hourly rows older than
/// `keep_hours` (both from `now_minute`). Returns (minute rows, hourly rows) deleted.
pub async fn retain(db: &impl ConnectionTrait, now_minute: i64, keep_minutes: i64, keep_hours: i64) -> Result<(u64, u64), DbErr> {
    let backend = db.get_database_backend();
    let minutes = db
        .execute_raw(Statement::from_string(
            backend,
            format!("DELETE FROM usage_minutes WHERE {} AND minute < {}", compacted_is(true), now_minute - keep_minutes),
        ))
        .await?
        .rows_affected();
    let cutoff_hour = now_minute / 60 - keep_hours;
    let hours = db
        .execute_raw(Statement::from_string(backend, format!("DELETE FROM usage_hours WHERE hour < {cutoff_hour}")))
        .await?
        .rows_affected();
    // Quarters as long as hours; a block once it ends before the first day kept.
    let mut old = vec![format!("DELETE FROM usage_quarters WHERE quarter < {}", cutoff_hour * 4)];
    for level in 0..blocks::LEVELS {
        let first = cutoff_hour.div_euclid(blocks::UNIT_HOURS) >> level;
        old.extend(
            ["usage_model_blocks", "usage_key_blocks"].map(|t| format!("DELETE FROM {t} WHERE level = {level} AND block < {first}")),
        );
    }
    for sql in old {
        db.execute_raw(Statement::from_string(backend, sql)).await?;
    }
    Ok((minutes, hours))
}

/// What to add up: a time range in Unix minutes `[from, to)` and optional filters.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub from_minute: i64,
    pub to_minute: i64,
    /// Only these MaaS models; `None`: all.
    pub models: Option<Vec<i64>>,
    /// Only these workspaces (a user's own); `None`: all.
    pub workspaces: Option<Vec<i64>>,
    /// Only these API keys; `None`: all.
    pub keys: Option<Vec<i64>>,
}

impl Scope {
    fn unfiltered(&self) -> bool {
        self.models.is_none() && self.workspaces.is_none() && self.keys.is_none()
    }

    /// The filters as SQL conditions (ids only, written out), each starting with " AND".
    fn filters(&self) -> String {
        let list = |v: &[i64]| if v.is_empty() { "NULL".to_string() } else { v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ") };
        let mut out = String::new();
        for (col, ids) in [("maas_model_id", &self.models), ("workspace_id", &self.workspaces), ("api_key_id", &self.keys)] {
            if let Some(ids) = ids {
                out.push_str(&format!(" AND {col} IN ({})", list(ids)));
            }
        }
        out
    }
}

/// What the sums are grouped by, besides time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Outcome,
    KeyOutcome,
    ModelOutcome,
    /// Workspace and outcome (the top workspaces).
    WorkspaceOutcome,
    /// Model, endpoint and outcome: the per-model and per-endpoint tables from one scan.
    ModelEndpointOutcome,
    /// Workspace, key, model and the model asked for (the billing export).
    WorkspaceKeyModel,
    /// The model asked for, the fallback model that answered, and outcome: only the calls a
    /// fallback answered.
    Fallback,
}

impl By {
    fn columns(self) -> &'static [&'static str] {
        match self {
            By::Outcome => &["outcome"],
            By::KeyOutcome => &["workspace_id", "api_key_id", "outcome"],
            By::WorkspaceOutcome => &["workspace_id", "outcome"],
            By::ModelOutcome => &["maas_model_id", "model", "outcome"],
            By::ModelEndpointOutcome => &["maas_model_id", "model", "endpoint_id", "outcome"],
            By::WorkspaceKeyModel => &["workspace_id", "api_key_id", "maas_model_id", "model", "asked_model_id"],
            By::Fallback => &["asked_model_id", "maas_model_id", "model", "outcome"],
        }
    }

    /// Whether the latency sums and histograms are needed (percentiles); the others sum only
    /// the counts: a third of the columns, a third of the scan's work.
    fn latencies(self) -> bool {
        matches!(self, By::Outcome | By::ModelEndpointOutcome)
    }

    /// The columns summed for this grouping, in [`Sums`] order.
    fn summed(self) -> Vec<String> {
        if self.latencies() {
            sum_columns()
        } else {
            COUNTS.iter().map(|c| c.to_string()).collect()
        }
    }
}

/// One group of an [`aggregate`]: its time bucket (Unix minute it starts at, with a bucket of
/// `bucket_minutes`; 0 when not grouped by time), its dimension values (as [`By::columns`]:
/// integers or text), and its sums.
#[derive(Clone, Debug)]
pub struct Group {
    pub at_minute: i64,
    pub dims: Vec<Value>,
    pub sums: Sums,
}

impl Group {
    pub fn int(&self, i: usize) -> Option<i64> {
        match self.dims.get(i) {
            Some(Value::BigInt(v)) => *v,
            Some(Value::Int(v)) => v.map(i64::from),
            _ => None,
        }
    }

    pub fn text(&self, i: usize) -> Option<&str> {
        match self.dims.get(i) {
            Some(Value::String(Some(s))) => Some(s.as_str()),
            _ => None,
        }
    }
}

/// Sums the usage of `scope`, grouped by `by` and, with `bucket_minutes`, by time buckets of
/// that many minutes. Buckets under an hour read the minute rows (all of them: they are kept
/// past the longest minute-resolution range); an hour and more read the hourly rows plus the
/// minute rows not compacted yet, so a call is never counted twice nor missed. Unfiltered
/// views of an hour and more read the quarters and blocks instead of the hourly rows (see
/// [`blocks`]): the same sums from a few rows per key instead of one per key and hour.
pub async fn aggregate(db: &impl ConnectionTrait, scope: &Scope, by: By, bucket_minutes: Option<i64>) -> Result<Vec<Group>, DbErr> {
    let unfiltered = scope.unfiltered();
    let all_minutes = Table::Minutes { only_uncompacted: false };
    let pending = Table::Minutes { only_uncompacted: true };
    let parts = match (by, bucket_minutes) {
        // The last hour: minute rows only.
        _ if (scope.to_minute - scope.from_minute) < 60 => vec![query(db, scope, by, bucket_minutes, all_minutes).await?],
        (By::Outcome, Some(b)) if unfiltered && b % 15 == 0 => {
            vec![blocks::quarters(db, scope, b).await?, query(db, scope, by, bucket_minutes, pending).await?]
        }
        (By::ModelEndpointOutcome | By::KeyOutcome | By::WorkspaceOutcome, None) if unfiltered => {
            let split = blocks::Split::of(scope);
            let head = Scope { to_minute: split.head_end_hour * 60, ..scope.clone() };
            let (head, units, tail) = tokio::try_join!(
                async {
                    if split.head_end_hour > split.first_hour {
                        query(db, &head, by, None, Table::Hours).await
                    } else {
                        Ok(Vec::new())
                    }
                },
                blocks::units(db, by, &split),
                query(db, scope, by, None, pending),
            )?;
            vec![head, units, tail]
        }
        // Buckets under an hour: minute rows, compacted or not.
        (_, Some(b)) if b < 60 => vec![query(db, scope, by, bucket_minutes, all_minutes).await?],
        _ => vec![query(db, scope, by, bucket_minutes, Table::Hours).await?, query(db, scope, by, bucket_minutes, pending).await?],
    };
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().unwrap_or_default());
    }
    // Groups from several tables with the same bucket and dimensions become one.
    let mut merged: std::collections::BTreeMap<(i64, String), Group> = std::collections::BTreeMap::new();
    for g in parts.into_iter().flatten() {
        match merged.entry((g.at_minute, format!("{:?}", g.dims))) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().sums.merge(&g.sums),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(g);
            }
        }
    }
    Ok(merged.into_values().collect())
}

/// The quarters and day blocks: what they hold, how compaction adds into them, how a range is
/// read from them. Their tables are made by migration `m20261202_000002_usage_blocks`.
mod blocks {
    use super::*;

    /// A block of level L covers 2^L units of this many hours, aligned on multiples of its
    /// size: 6 h to 16 days. Sub-day units keep the first partial unit of a range short (at
    /// most 5 hourly partitions: with day units, a 24-hour view read up to 23).
    pub const UNIT_HOURS: i64 = 6;
    pub const LEVELS: u32 = 7;

    /// Dimension columns of the model blocks and the expressions that fill them from hourly
    /// rows; `block` is the block number's expression. Absent ids are 0 (see the migration).
    pub fn model_keys(block: &str) -> Vec<(&'static str, String)> {
        vec![
            ("block", block.to_owned()),
            ("maas_model_id", "COALESCE(maas_model_id, 0)".into()),
            ("model", "model".into()),
            ("endpoint_id", "COALESCE(endpoint_id, 0)".into()),
            ("outcome", "outcome".into()),
        ]
    }

    pub fn key_keys(block: &str) -> Vec<(&'static str, String)> {
        vec![
            ("block", block.to_owned()),
            ("api_key_id", "COALESCE(api_key_id, 0)".into()),
            ("workspace_id", "COALESCE(workspace_id, 0)".into()),
            ("outcome", "outcome".into()),
        ]
    }

    /// Adds the sums of `from` rows matching `filter`, grouped by `keys` (column, expression),
    /// into `table`: a new row per new key, added to the existing row otherwise. `fixed` are
    /// constant key columns (not grouped by: PostgreSQL reads `GROUP BY 2` as a position).
    pub fn upsert<K: AsRef<str>>(
        table: &str,
        fixed: &[(&str, &str)],
        keys: &[(&str, K)],
        values: &[String],
        from: &str,
        filter: &str,
    ) -> String {
        let join = |v: Vec<String>| v.join(", ");
        let targets = join(fixed.iter().map(|(c, _)| c.to_string()).chain(keys.iter().map(|(c, _)| c.to_string())).collect());
        let grouped = join(keys.iter().map(|(_, e)| e.as_ref().to_owned()).collect());
        let selected = join(
            fixed
                .iter()
                .map(|(_, v)| v.to_string())
                .chain(keys.iter().map(|(_, e)| e.as_ref().to_owned()))
                .chain(values.iter().map(|c| format!("SUM({c})")))
                .collect(),
        );
        let set = join(values.iter().map(|c| format!("{c} = {table}.{c} + excluded.{c}")).collect());
        format!(
            "INSERT INTO {table} ({targets}, {vals}) SELECT {selected} FROM {from} WHERE {filter} GROUP BY {grouped} ON CONFLICT ({targets}) DO UPDATE SET {set}",
            vals = values.join(", ")
        )
    }

    /// How a range `[from, to)` is read: the hours `first_hour..head_end_hour` of its first,
    /// partial unit from hourly rows, then whole units from `first_unit` to the unit the range
    /// ends in (to its end: nothing is recorded after now) from blocks.
    pub struct Split {
        pub first_hour: i64,
        pub head_end_hour: i64,
        first_unit: i64,
        last_unit: i64,
    }

    impl Split {
        pub fn of(scope: &Scope) -> Split {
            let first_hour = scope.from_minute.div_euclid(60);
            let first_unit = (first_hour + UNIT_HOURS - 1).div_euclid(UNIT_HOURS);
            Split {
                first_hour,
                head_end_hour: first_unit * UNIT_HOURS,
                first_unit,
                last_unit: (scope.to_minute - 1).div_euclid(UNIT_HOURS * 60),
            }
        }

        /// The SQL condition selecting the blocks of the whole units; `None` when there are none.
        pub fn which(&self) -> Option<String> {
            let cover = cover(self.first_unit, self.last_unit);
            (!cover.is_empty())
                .then(|| cover.iter().map(|(l, b)| format!("(level = {l} AND block = {b})")).collect::<Vec<_>>().join(" OR "))
        }
    }

    /// Aligned blocks covering the units `first..=last` exactly, as few as alignment allows
    /// (30 days: at most 12).
    pub fn cover(first: i64, last: i64) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        let mut day = first;
        while day <= last {
            let mut level = LEVELS - 1;
            while level > 0 && (day.rem_euclid(1 << level) != 0 || day + (1 << level) - 1 > last) {
                level -= 1;
            }
            out.push((level, day >> level));
            day += 1 << level;
        }
        out
    }

    /// The sums over the whole units of `split` grouped by `by` (model × endpoint × outcome,
    /// workspace × key × outcome, workspace × outcome), from their blocks.
    pub async fn units(db: &impl ConnectionTrait, by: By, split: &Split) -> Result<Vec<Group>, DbErr> {
        let Some(which) = split.which() else {
            return Ok(Vec::new());
        };
        let (table, dims) = match by {
            By::ModelEndpointOutcome => ("usage_model_blocks", "NULLIF(maas_model_id, 0), model, NULLIF(endpoint_id, 0), outcome"),
            By::KeyOutcome => ("usage_key_blocks", "NULLIF(workspace_id, 0), NULLIF(api_key_id, 0), outcome"),
            By::WorkspaceOutcome => ("usage_key_blocks", "NULLIF(workspace_id, 0), outcome"),
            _ => return Err(DbErr::Custom(format!("no blocks for {by:?}"))),
        };
        let sql = format!(
            "SELECT CAST(0 AS BIGINT), {dims}, {sums} FROM {table} WHERE {which} GROUP BY {keys}",
            sums = summed(by),
            keys = by.columns().iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
        );
        decode(db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await?, by)
    }

    /// The compacted part of `scope`'s time series per outcome in buckets of `bucket` minutes
    /// (a multiple of 15).
    pub async fn quarters(db: &impl ConnectionTrait, scope: &Scope, bucket: i64) -> Result<Vec<Group>, DbErr> {
        let at = format!("((quarter * 15) / {bucket}) * {bucket}");
        let sql = format!(
            "SELECT CAST({at} AS BIGINT), outcome, {sums} FROM usage_quarters WHERE quarter >= {from} AND quarter < {to} GROUP BY {at}, outcome",
            sums = summed(By::Outcome),
            from = scope.from_minute.div_euclid(15),
            to = (scope.to_minute + 14).div_euclid(15)
        );
        decode(db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await?, By::Outcome)
    }

    fn summed(by: By) -> String {
        by.summed().iter().map(|c| format!("CAST(SUM({c}) AS BIGINT)")).collect::<Vec<_>>().join(", ")
    }
}

/// The `n` API keys of `scope` with the most tokens (then requests), counted and ordered by
/// the database: a page with the top ten of 10,000 keys reads ten rows back instead of every
/// key's (rows come one by one from SQLite, ~5 µs each). `None` is the calls without a key.
pub async fn rank_keys(db: &impl ConnectionTrait, scope: &Scope, n: usize) -> Result<Vec<Option<i64>>, DbErr> {
    let filters = scope.filters();
    let (from, to) = (scope.from_minute, scope.to_minute);
    let minutes = |compacted: bool| {
        format!("SELECT api_key_id AS k, total_tokens AS t, requests AS r FROM usage_minutes WHERE {} AND minute >= {from} AND minute < {to}{filters}", compacted_is(compacted))
    };
    let hours = |from_hour: i64, to_hour: i64| {
        format!("SELECT api_key_id, total_tokens, requests FROM usage_hours WHERE hour >= {from_hour} AND hour < {to_hour}{filters}")
    };
    let parts = if to - from < 60 {
        vec![minutes(true), minutes(false)]
    } else if scope.unfiltered() {
        // As `aggregate` reads them: the first unit's hours, whole units as blocks, pending rows.
        let split = blocks::Split::of(scope);
        let mut parts = vec![minutes(false), hours(split.first_hour, split.head_end_hour)];
        if let Some(which) = split.which() {
            parts.push(format!("SELECT NULLIF(api_key_id, 0), total_tokens, requests FROM usage_key_blocks WHERE {which}"));
        }
        parts
    } else {
        vec![minutes(false), hours(from.div_euclid(60), (to + 59).div_euclid(60))]
    };
    let sql =
        format!("SELECT k FROM ({}) u GROUP BY k ORDER BY SUM(t) DESC, SUM(r) DESC, COALESCE(k, 0) LIMIT {n}", parts.join(" UNION ALL "));
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    rows.iter().map(|r| r.try_get_by_index::<Option<i64>>(0)).collect()
}

/// The condition selecting compacted or pending minute rows, written out rather than bound: the
/// planner picks a partial index (pending rows by minute; compacted ones by minute, model,
/// workspace or key: migration m20261206_000001) only when it sees the index's own condition.
fn compacted_is(compacted: bool) -> &'static str {
    if compacted {
        "compacted = TRUE"
    } else {
        "compacted = FALSE"
    }
}

enum Table {
    Minutes { only_uncompacted: bool },
    Hours,
}

async fn query(db: &impl ConnectionTrait, scope: &Scope, by: By, bucket_minutes: Option<i64>, table: Table) -> Result<Vec<Group>, DbErr> {
    // Time in the table's unit: minutes, or hours (an hour row covers its whole hour, so the
    // range's hours are those the range starts and ends in).
    let (name, time, from, to, unit) = match table {
        Table::Minutes { .. } => ("usage_minutes", "minute", scope.from_minute, scope.to_minute, 1),
        Table::Hours => ("usage_hours", "hour", scope.from_minute.div_euclid(60), (scope.to_minute + 59).div_euclid(60), 60),
    };
    // The range's rows matching the filters (and, for minute rows, [`compacted_is`]).
    let rows = |compacted: Option<bool>| {
        let mut q = Query::select();
        q.from(Alias::new(name));
        let time_col = || Expr::col(Alias::new(time));
        q.and_where(time_col().gte(from)).and_where(time_col().lt(to));
        if let Some(c) = compacted {
            q.and_where(Expr::cust(compacted_is(c)));
        }
        if let Some(m) = &scope.models {
            q.and_where(Expr::col(Alias::new("maas_model_id")).is_in(m.clone()));
        }
        if let Some(ws) = &scope.workspaces {
            q.and_where(Expr::col(Alias::new("workspace_id")).is_in(ws.clone()));
        }
        if let Some(k) = &scope.keys {
            q.and_where(Expr::col(Alias::new("api_key_id")).is_in(k.clone()));
        }
        if by == By::Fallback {
            // Written out: the partial index on hourly rows holds exactly these.
            q.and_where(Expr::cust("asked_model_id IS NOT NULL"));
        }
        q
    };
    let mut q = match table {
        Table::Hours => rows(None),
        Table::Minutes { only_uncompacted: true } => rows(Some(false)),
        // Both halves in one statement: one snapshot, so a compaction committing between two
        // reads can neither hide a row nor show it twice. The halves pass on the columns the
        // outer query groups and sums.
        Table::Minutes { only_uncompacted: false } => {
            let raw = |mut half: sea_orm::sea_query::SelectStatement| {
                half.column(Alias::new(time));
                for c in by.columns() {
                    half.column(Alias::new(*c));
                }
                for c in &by.summed() {
                    half.column(Alias::new(c.as_str()));
                }
                half
            };
            let mut both = raw(rows(Some(true)));
            both.union(sea_orm::sea_query::UnionType::All, raw(rows(Some(false))));
            let mut q = Query::select();
            q.from_subquery(both, Alias::new("u"));
            q
        }
    };
    match bucket_minutes {
        // The bucket's start, in minutes: (time * unit) / bucket * bucket.
        Some(b) => {
            let b = std::cmp::max(b, unit);
            q.expr_as(Expr::cust(format!("(({time} * {unit}) / {b}) * {b}")), Alias::new("at"));
        }
        None => {
            q.expr_as(Expr::val(0i64), Alias::new("at"));
        }
    }
    for c in by.columns() {
        q.column(Alias::new(*c));
    }
    // Cast: SUM of a bigint is numeric on PostgreSQL.
    for c in &by.summed() {
        q.expr(Expr::cust(format!("CAST(SUM({c}) AS BIGINT)")));
    }
    if bucket_minutes.is_some() {
        q.add_group_by([Expr::cust("at")]);
    }
    for c in by.columns() {
        q.add_group_by([Expr::col(Alias::new(*c))]);
    }
    decode(db.query_all(&q).await?, by)
}

/// Rows of (bucket start, `by`'s dimensions, `by`'s sums) as groups.
fn decode(rows: Vec<sea_orm::QueryResult>, by: By) -> Result<Vec<Group>, DbErr> {
    let n = by.columns().len();
    let summed = by.summed().len();
    rows.into_iter()
        .map(|row| {
            let at_minute: i64 = row.try_get_by_index(0)?;
            let mut dims = Vec::with_capacity(n);
            for (i, c) in by.columns().iter().enumerate() {
                dims.push(if *c == "model" || *c == "outcome" {
                    Value::String(row.try_get_by_index::<Option<String>>(1 + i)?)
                } else {
                    Value::BigInt(row.try_get_by_index::<Option<i64>>(1 + i)?)
                });
            }
            let mut v = (0..summed).map(|j| row.try_get_by_index::<Option<i64>>(1 + n + j).map(Option::unwrap_or_default));
            let mut s = Sums::default();
            let counts = [
                &mut s.requests,
                &mut s.failovers,
                &mut s.usage_known,
                &mut s.input,
                &mut s.output,
                &mut s.total,
                &mut s.cached,
                &mut s.units,
                &mut s.cost,
                &mut s.cost_unknown,
                &mut s.cache_write,
            ];
            for slot in counts {
                *slot = v.next().unwrap()?;
            }
            if by.latencies() {
                for slot in [&mut s.latency_ms, &mut s.ttfb_ms].into_iter().chain(s.latency_hist.iter_mut()).chain(s.ttfb_hist.iter_mut()) {
                    *slot = v.next().unwrap()?;
                }
            }
            Ok(Group { at_minute, dims, sums: s })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_a_range_exactly_and_few() {
        for first in 80_000..80_070 {
            for len in 1..=130 {
                let last = first + len - 1;
                let cover = blocks::cover(first, last);
                let mut days = Vec::new();
                for (level, block) in &cover {
                    let start = block << level;
                    assert_eq!(start.rem_euclid(1 << level), 0);
                    days.extend(start..start + (1 << level));
                }
                assert_eq!(days, (first..=last).collect::<Vec<_>>(), "{first}+{len}: {cover:?}");
                assert!(cover.len() <= 12, "{first}+{len}: {} blocks", cover.len());
            }
        }
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let mut h = [0i64; BUCKETS];
        assert_eq!(quantile(&h, 0.5), None);
        h[bucket(40)] = 10; // 25..50 ms
        assert_eq!(quantile(&h, 0.5), Some(37.5));
        assert_eq!(quantile(&h, 1.0), Some(50.0));
        h[BUCKETS - 1] = 90; // above 120 s
        assert_eq!(quantile(&h, 0.95), Some(120_000.0));
        assert_eq!(quantile(&h, 0.05), Some(37.5));
    }
}
