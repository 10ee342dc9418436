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
use super::limiter::Lease;
use super::snapshot::Op;
use super::usage::Tokens;
use app::ssr::entities::usage_minute;
use app::ssr::usage_rollups::{insert_minutes, MinuteRow};
use hyper::body::Body as _;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, TransactionTrait};
use std::sync::Arc;

pub use app::ssr::usage_rollups::{bucket, Sums, BUCKETS, BUCKETS_MS};
/// Rollups a serving thread holds between two flushes before it folds new ones into overflow.
pub const MAX_ROWS: usize = 50_000;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// The upstream answered with an error status, broke off, or none could be reached.
    UpstreamError,
    RateLimited,
    Unauthenticated,
    /// A key calling a model outside its scope (403).
    Forbidden,
    NotFound,
    /// Malformed or oversized request.
    BadRequest,
    /// The client left before the answer ended.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::NotFound => "not_found",
            Outcome::BadRequest => "bad_request",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One call, as the gateway saw it when it ended.
#[derive(Clone, Debug)]
pub struct Call {
    /// The MaaS model's name, or what the caller sent when it named none the gateway serves.
    pub model: Arc<str>,
    pub maas_model_id: Option<i64>,
    pub endpoint_id: Option<i64>,
    pub workspace_id: Option<i64>,
    pub api_key_id: Option<i64>,
    pub op: Op,
    pub status: u16,
    pub outcome: Outcome,
    /// Endpoints tried before the one that answered.
    pub failovers: u32,
    /// Until the first byte of the answer's body went to the client (time to first token, for
    /// a stream); `None` when no body byte was sent.
    pub ttfb_ms: Option<u64>,
    pub total_ms: u64,
    /// `None`: the upstream reported no usage (or none was asked). Unknown, never 0.
    pub tokens: Option<Tokens>,
    /// When it ended, Unix ms.
    pub at_ms: u64,
}

impl Call {
    /// Stamps the call's end: its total time since `started`, and when (Unix ms).
    pub fn ended(&mut self, started: std::time::Instant) {
        self.total_ms = started.elapsed().as_millis() as u64;
        self.at_ms = app::ssr::now_ms();
    }
}

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
}

/// Adds one call to a rollup.
fn add(s: &mut Sums, c: &Call) {
    s.requests += 1;
    s.failovers += i64::from(c.failovers);
    if let Some(t) = c.tokens {
        s.usage_known += 1;
        s.input += t.input as i64;
        s.output += t.output as i64;
        s.total += t.total as i64;
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
        };
        let mut guard = self.shards.get_or_default().lock();
        let shard = &mut *guard;
        shard.series.record(&c);
        if shard.rollups.len() >= MAX_ROWS && !shard.rollups.contains_key(&key) {
            key =
                Key { model: Arc::from("(overflow)"), maas_model_id: None, endpoint_id: None, workspace_id: None, api_key_id: None, ..key };
        }
        add(shard.rollups.entry(key).or_default(), &c);
    }

    /// A call refused by `rule` (for `/metrics`; the call itself is recorded by [`Self::record`]).
    pub fn rate_limited(&self, model: &Arc<str>, rule: &str) {
        self.shards.get_or_default().lock().series.rate_limited(model, rule);
    }

    /// An upstream that failed a call (the call may still succeed on another endpoint).
    pub fn upstream_failed(&self, endpoint_id: i64, reason: super::metrics::FailReason) {
        self.shards.get_or_default().lock().series.upstream_failed(endpoint_id, reason);
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

/// What the meter reads of an answer as it passes through.
pub enum Scan {
    Json(super::usage::JsonEnds),
    Sse(super::usage::SseUsage),
    /// Neither JSON nor a stream (an upstream's HTML error page…): no usage to read.
    Off,
}

/// The upstream's answer on its way to the client, read for usage, recorded when dropped:
/// hyper drops it once the last byte is sent, or when the client leaves.
pub struct MeteredBody {
    inner: super::upstream::UpstreamBody,
    scan: Scan,
    meter: Arc<Meter>,
    call: Call,
    started: std::time::Instant,
    /// What the SSE reader held back until the end (an event without its blank line).
    held: Option<axum::body::Bytes>,
    ended: bool,
    broke: bool,
    /// What the call holds in token and concurrency rules: settled with the usage read here.
    lease: Lease,
}

impl MeteredBody {
    /// `call` is complete but for the outcome, times and tokens, which the body's end sets.
    pub fn new(
        inner: super::upstream::UpstreamBody,
        scan: Scan,
        meter: Arc<Meter>,
        call: Call,
        started: std::time::Instant,
        lease: Lease,
    ) -> Self {
        MeteredBody { inner, scan, meter, call, started, held: None, ended: false, broke: false, lease }
    }

    /// The tokens the answer reports (an error answer without usage used none; `None`:
    /// unknown).
    fn tokens(&self) -> Option<Tokens> {
        match &self.scan {
            Scan::Json(j) => j.usage(),
            Scan::Sse(s) => s.tokens,
            Scan::Off => None,
        }
    }

    /// Ends the call's lease with its usage, as soon as the answer is over: before its last
    /// bytes are handed on, so a client's next call already sees the window settled.
    fn settle(&mut self) {
        let tokens = self.tokens().map(|t| t.total).or((self.call.status >= 400).then_some(0));
        std::mem::take(&mut self.lease).settle(tokens);
    }

    fn holds(&self) -> bool {
        self.held.is_some() || matches!(&self.scan, Scan::Sse(s) if s.holds())
    }

    fn sent(&mut self, data: axum::body::Bytes) -> std::task::Poll<Option<Result<hyper::body::Frame<axum::body::Bytes>, hyper::Error>>> {
        if self.call.ttfb_ms.is_none() {
            self.call.ttfb_ms = Some(self.started.elapsed().as_millis() as u64);
        }
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
    }
}

impl hyper::body::Body for MeteredBody {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<axum::body::Bytes>, hyper::Error>>> {
        use std::task::Poll;
        loop {
            if let Some(b) = self.held.take() {
                return self.sent(b);
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_frame(cx)) {
                None => {
                    self.ended = true;
                    if let Scan::Sse(s) = &mut self.scan {
                        self.held = s.finish();
                    }
                    self.settle();
                }
                Some(Err(e)) => {
                    self.broke = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let data = match &mut self.scan {
                            Scan::Json(j) => {
                                j.feed(&data);
                                data
                            }
                            Scan::Sse(s) => s.frame(data),
                            Scan::Off => data,
                        };
                        // A body with a length is over with its last byte: hyper may not poll again.
                        if self.inner.is_end_stream() && !self.holds() {
                            self.ended = true;
                            self.settle();
                        }
                        if !data.is_empty() {
                            return self.sent(data);
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_none() || (self.inner.is_end_stream() && !self.holds())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        // An SSE body may lose an event (the injected usage): its length is no longer known.
        match &self.scan {
            Scan::Sse(_) => hyper::body::SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        let ended = self.ended || (self.inner.is_end_stream() && !self.holds());
        self.call.outcome = if self.broke {
            Outcome::UpstreamError
        } else if !ended {
            Outcome::Cancelled
        } else if self.call.status < 400 {
            Outcome::Ok
        } else {
            Outcome::UpstreamError
        };
        self.call.tokens = self.tokens();
        self.call.ended(self.started);
        if let (true, Some(ep)) = (self.broke, self.call.endpoint_id) {
            self.meter.upstream_failed(ep, super::metrics::FailReason::BrokenBody);
        }
        self.meter.record(self.call.clone());
        // Cancelled or broken: what usage arrived, else the estimate (settled already if over).
        self.settle();
    }
}

/// An unmetered answer that holds its call's lease until the body ends or is dropped
/// (concurrency and token rules; with metering off, token rules keep each call's estimate).
pub struct Leased {
    inner: super::upstream::UpstreamBody,
    _lease: Lease,
}

impl Leased {
    pub fn new(inner: super::upstream::UpstreamBody, lease: Lease) -> Self {
        Leased { inner, _lease: lease }
    }
}

impl hyper::body::Body for Leased {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<axum::body::Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
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

    fn call(key: i64, tokens: Option<Tokens>, total_ms: u64) -> Call {
        Call {
            model: Arc::from("m"),
            maas_model_id: Some(1),
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
            at_ms: 120_000,
        }
    }

    #[test]
    fn calls_of_one_minute_and_dimensions_add_up_and_unknown_usage_counts_apart() {
        let m = Meter::default();
        m.record(call(7, Some(Tokens { input: 5, output: 2, total: 7 }), 40));
        m.record(call(7, None, 3_000));
        m.record(call(8, Some(Tokens { input: 1, output: 1, total: 2 }), 10));
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
            m.record(call(k, Some(Tokens { input: 1, output: 1, total: 2 }), 1));
        }
        let rows = m.take();
        assert_eq!(rows.len(), MAX_ROWS + 1);
        let requests: i64 = rows.values().map(|s| s.requests).sum();
        assert_eq!(requests, MAX_ROWS as i64 + 1000);
        let overflow = rows.iter().find(|(k, _)| &*k.model == "(overflow)").unwrap();
        assert_eq!((overflow.1.requests, overflow.0.api_key_id), (1000, None));
    }
}
