//! The OpenAI-compatible gateway (`/v1/*`): authenticates platform keys, applies each model's
//! rate limits and load balancing, forwards to the chosen upstream with its own key, streams
//! the answer back, and fails over to the next endpoint when one cannot answer.
pub mod balancer;
pub mod body;
pub mod error;
pub mod limiter;
pub mod meter;
pub mod metrics;
pub mod quota;
pub mod redis_limiter;
pub mod reserve;
pub mod shared_limits;
pub mod slots;
pub mod snapshot;
pub mod upstream;
pub mod usage;

use app::types::RuleKind;
use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{rejection::PathRejection, Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use body::{BodyError, RequestBody};
use error::GatewayError;
use limiter::{Admitted, Clock, Limiter, Rejection, RuleCheck, SystemClock};
use redis_limiter::RedisLimiter;
use serde_json::{json, Value};
use snapshot::{Caller, Op, Snapshot};
use std::sync::Arc;
use std::time::Duration;
use upstream::{SendError, Upstream};

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub body_limit: usize,
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive (streams may run longer).
    pub first_byte_timeout: Duration,
    pub fail_threshold: u32,
    pub cooldown: Duration,
    /// How often the reloader reports status and checks the database's revision.
    pub heartbeat: Duration,
    /// CAs trusted for https endpoints besides Mozilla's (private model servers behind an
    /// internal CA); see [`upstream::parse_ca_pem`].
    pub upstream_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Egress proxies for https endpoints (default none; `maas` reads HTTPS_PROXY and NO_PROXY).
    pub proxies: Arc<upstream::Proxies>,
    /// Record every call's usage (see `meter`); off only to measure what metering costs.
    pub usage_metering: bool,
    /// Unix seconds now: quota periods and key expiry (injected by tests to cross a month).
    pub wall_clock: WallClock,
    /// When every endpoint of a model is at its cap: how long a call waits for a slot, and how
    /// many calls of one model may wait at once, before the 429.
    pub slot_wait: Duration,
    pub slot_queue: usize,
    /// With Redis: how long a call's token reservations and place in concurrency rules outlive
    /// a replica that died holding them (renewed every third of it while the call runs).
    pub lease: Duration,
}

/// A source of Unix seconds.
#[derive(Clone)]
pub struct WallClock(pub Arc<dyn Fn() -> i64 + Send + Sync>);

impl Default for WallClock {
    fn default() -> Self {
        WallClock(Arc::new(app::ssr::now))
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

impl WallClock {
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            body_limit: 10 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(120),
            fail_threshold: 3,
            cooldown: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            upstream_roots: Vec::new(),
            proxies: upstream::no_proxies(),
            usage_metering: true,
            wall_clock: WallClock::default(),
            slot_wait: Duration::from_secs(10),
            slot_queue: 1_000,
            lease: Duration::from_secs(60),
        }
    }
}

/// Where rate-limit counters live: in this process (one replica), or in Redis, shared by every
/// replica serving the cluster (see [`shared_limits`]).
enum RateLimits {
    Local(Limiter),
    Shared(Arc<shared_limits::SharedLimits>),
}

/// Why a call was not admitted.
#[derive(Debug)]
pub enum Refusal {
    Rate(Rejection),
    Quota(quota::QuotaExceeded),
}

impl From<Refusal> for GatewayError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Rate(r) => GatewayError::RateLimited(r),
            Refusal::Quota(q) => GatewayError::QuotaExceeded(q),
        }
    }
}

/// Checks the call against `quotas`, then `rules`, on this process's counters: quotas first
/// (their reservation is the cheaper to give back), and a refusal by either leaves nothing
/// consumed in the other. The embedded gateway's check, and a replica's while Redis is away.
fn check_locally(
    limiter: &Limiter,
    rules: &[&RuleCheck],
    quotas: &[&quota::QuotaCheck],
    now_secs: i64,
    estimate: u64,
) -> Result<Admitted, Refusal> {
    let mut in_quota = limiter::Lease::default();
    if !quotas.is_empty() {
        quota::check(quotas, now_secs, estimate, in_quota.quotas()).map_err(Refusal::Quota)?;
    }
    let mut admitted = match limiter.check(rules, estimate) {
        Ok(a) => a,
        Err(rej) => {
            in_quota.cancel();
            return Err(Refusal::Rate(rej));
        }
    };
    admitted.lease.merge(in_quota);
    Ok(admitted)
}

impl RateLimits {
    /// Checks the call against `rules` and `quotas` at wall time `now_secs` (reserving
    /// `estimate` tokens in token rules and token budgets), all together: a refusal by one
    /// leaves nothing consumed in the others.
    async fn check(
        &self,
        caller: &Caller,
        rules: &[&RuleCheck],
        quotas: &[&quota::QuotaCheck],
        now_secs: i64,
        estimate: u64,
    ) -> Result<Admitted, Refusal> {
        match self {
            RateLimits::Local(l) => check_locally(l, rules, quotas, now_secs, estimate),
            RateLimits::Shared(shared) => shared.check(caller.workspace_id, rules, quotas, now_secs, estimate).await,
        }
    }

    /// The counters of this process.
    fn local(&self) -> &Limiter {
        match self {
            RateLimits::Local(l) => l,
            RateLimits::Shared(shared) => &shared.local,
        }
    }
}

pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// Usage of every call, aggregated until the next flush (see [`Gateway::flush_usage`]).
    pub meter: Arc<meter::Meter>,
    /// Where [`spawn_usage_flusher`] writes the usage, for the last flush at exit.
    usage_sink: std::sync::OnceLock<(sea_orm::DatabaseConnection, String)>,
    limits: RateLimits,
    clock: SystemClock,
    upstream: Upstream,
    pub config: GatewayConfig,
}

impl Gateway {
    /// A gateway counting rate limits in this process (the embedded mode, one replica).
    pub fn new(config: GatewayConfig) -> Arc<Self> {
        Self::with_limits(config, RateLimits::Local(Limiter::new(SystemClock::default())))
    }

    /// A gateway whose rate limits are shared, through `redis`, with every replica using it.
    pub fn shared(config: GatewayConfig, redis: RedisLimiter) -> Arc<Self> {
        let lease_ms = config.lease.as_millis() as u64;
        Self::with_limits(
            config,
            RateLimits::Shared(shared_limits::SharedLimits::new(redis, Limiter::new(SystemClock::default()), lease_ms)),
        )
    }

    fn with_limits(config: GatewayConfig, limits: RateLimits) -> Arc<Self> {
        Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            meter: Arc::default(),
            usage_sink: std::sync::OnceLock::new(),
            limits,
            clock: SystemClock::default(),
            upstream: Upstream::new(config.connect_timeout, &config.upstream_roots, config.proxies.clone()),
            config,
        })
    }

    /// What this replica admitted while Redis could not answer and Redis does not know yet.
    pub fn outage_journal_len(&self) -> usize {
        match &self.limits {
            RateLimits::Local(_) => 0,
            RateLimits::Shared(shared) => shared.journal_len(),
        }
    }

    /// Publishes a new snapshot; requests already running keep the one they started with.
    pub fn publish(&self, snap: Snapshot) {
        self.snapshot.store(Arc::new(snap));
    }

    pub fn revision(&self) -> i64 {
        self.snapshot.load().revision
    }

    /// MaaS model id → URLs of its endpoints that are cooling down now.
    pub fn cooling(&self) -> std::collections::BTreeMap<i64, Vec<String>> {
        let now = self.clock.now_ms();
        let snap = self.snapshot.load();
        snap.models
            .values()
            .filter_map(|r| {
                let cold: Vec<String> = r.endpoints.iter().filter(|e| !e.health.usable(now)).map(|e| e.url.clone()).collect();
                (!cold.is_empty()).then_some((r.id, cold))
            })
            .collect()
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Op::ALL
            .into_iter()
            // `{*model}`: model names may hold slashes (`org/model`), sent raw by some clients
            // and percent-encoded (`org%2Fmodel`) by others; both arrive decoded.
            .fold(Router::new().route("/v1/models", get(list_models)).route("/v1/models/{*model}", get(retrieve_model)), |router, op| {
                router.route(&format!("/v1{}", op.path()), post(move |s, r| proxy(s, r, op)))
            })
            .with_state(self.clone())
    }

    /// The process's front service: the gateway's own routes go straight to their handlers and
    /// everything else to `rest` (the console's router, which also holds [`Self::router`]).
    pub fn front(self: &Arc<Self>, rest: Router) -> Front {
        Front { gw: self.clone(), rest }
    }

    /// Gives back the heap memory of rate-limit counters whose bursts have left their window,
    /// and drops the counters of rules no longer served once their window is empty (a walk over
    /// every rule of the snapshot: run off the serving threads). Returns how many served
    /// counters gave memory back.
    pub fn release_idle_counters(&self) -> usize {
        // The counters' own clock: their stamps are on it.
        let now = self.limits.local().now_ms();
        let snap = self.snapshot.load();
        snap.retired.lock().retain(|_, counter| {
            counter.release_idle(now);
            counter.holds_admissions()
        });
        snap.models.values().flat_map(|route| route.rules.iter()).filter(|rule| rule.counter().release_idle(now)).count()
    }

    /// Counters kept for rules no longer served (see [`Snapshot::retired`]).
    pub fn retired_counters(&self) -> usize {
        self.snapshot.load().retired.lock().len()
    }

    /// Writes the usage recorded since the last flush as rows of `gateway_id` (one transaction).
    /// Then adds the calls counted against quotas to their ledger and reads it back (what the
    /// other replicas spent meanwhile).
    pub async fn flush_usage(&self, db: &sea_orm::DatabaseConnection, gateway_id: &str) -> Result<usize, sea_orm::DbErr> {
        let rows = self.meter.flush(db, gateway_id).await?;
        let quotas: Vec<quota::QuotaCheck> = self.snapshot.load().quotas.values().cloned().collect();
        quota::flush(db, &quotas, self.config.wall_clock.now()).await?;
        Ok(rows)
    }

    /// The last flush, once the server stopped serving (every answer under way has ended and
    /// been recorded): a rolling restart loses no usage.
    pub async fn final_usage_flush(&self) {
        if let Some((db, id)) = self.usage_sink.get() {
            match self.flush_usage(db, id).await {
                Ok(rows) => tracing::info!(rows, "usage flushed at exit"),
                Err(e) => tracing::error!(error = %e, "could not flush usage at exit"),
            }
        }
    }

    /// Counts a failure of `ep` against the configured threshold and cool-down, and in
    /// `/metrics` under its reason.
    fn failed_with(&self, ep: &snapshot::Endpoint, reason: metrics::FailReason) {
        ep.health.failure(self.clock.now_ms(), self.config.fail_threshold, self.config.cooldown.as_millis() as u64);
        if self.config.usage_metering {
            self.meter.upstream_failed(ep.id, reason);
        }
    }

    fn authenticate(&self, snap: &Snapshot, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
            .map(|(_, token)| token.trim())
            .ok_or(GatewayError::InvalidApiKey)?;
        let caller = snap.keys.get(&app::ssr::crypto::sha256(token)).ok_or(GatewayError::InvalidApiKey)?;
        match caller.expires_at {
            // Wall-clock time (the limiter's clock counts from the start), read only for keys
            // that have an expiry.
            Some(at) if self.config.wall_clock.now() >= at => Err(GatewayError::KeyExpired(at)),
            _ => Ok(caller.clone()),
        }
    }
}

/// See [`Gateway::front`]. On the hot path this skips the router's path matching, its boxed
/// handler clone and its extractors: fewer instructions and allocations per proxied request.
#[derive(Clone)]
pub struct Front {
    gw: Arc<Gateway>,
    rest: Router,
}

impl Front {
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }
}

impl tower::Service<axum::extract::Request> for Front {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        match Op::at(req.uri().path()) {
            Some(op) if req.method() == axum::http::Method::POST => {
                let gw = self.gw.clone();
                Box::pin(async move { Ok(proxy(State(gw), req, op).await) })
            }
            // Other methods, /v1/models and everything else: the router (405s included).
            _ => Box::pin(tower::Service::call(&mut self.rest, req)),
        }
    }
}

async fn list_models(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Result<Response, GatewayError> {
    let snap = gw.snapshot.load_full();
    let caller = gw.authenticate(&snap, &headers)?;
    let mut data: Vec<Value> = snap.models.values().filter(|r| caller.may_call(r.id)).map(|r| model_object(r)).collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
}

/// One model, as OpenAI's `GET /v1/models/{model}` (the SDKs' `models.retrieve`): any model
/// the list shows, else 404 `model_not_found`.
async fn retrieve_model(
    State(gw): State<Arc<Gateway>>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let snap = gw.snapshot.load_full();
    let caller = gw.authenticate(&snap, &headers)?;
    let Path(name) = name.map_err(|e| GatewayError::BadRequest(format!("We could not read the model name in the path: {e}")))?;
    // A model outside the key's list is not shown to it: the same 404 as no model at all.
    let r = snap.models.get(name.as_str()).filter(|r| caller.may_call(r.id)).ok_or(GatewayError::ModelNotFound(name))?;
    Ok(axum::Json(model_object(r)).into_response())
}

/// A model as OpenAI lists it.
fn model_object(r: &snapshot::Route) -> Value {
    json!({"id": r.name, "object": "model", "created": r.created, "owned_by": r.owned_by})
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // Over the limit (a chunked body, or one longer than it declared) is 413; anything else
        // is a body that could not be read (the client aborted or sent broken framing).
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return GatewayError::BodyTooLarge(limit);
            }
            cause = c.source();
        }
        GatewayError::BadRequest(format!("We could not read the body of your request: {e}"))
    })
}

/// A call, as far as the gateway has got with it: what the usage meter records if it ends
/// here (a refusal) or when its answer ends.
struct CallSoFar {
    op: Op,
    started: std::time::Instant,
    model: Option<Arc<str>>,
    maas_model_id: Option<i64>,
    caller: Option<Caller>,
}

impl CallSoFar {
    fn call(&self, status: u16, outcome: meter::Outcome, endpoint_id: Option<i64>, failovers: u32) -> meter::Call {
        meter::Call {
            model: self.model.clone().unwrap_or_else(|| Arc::from("")),
            maas_model_id: self.maas_model_id,
            endpoint_id,
            workspace_id: self.caller.as_ref().map(|c| c.workspace_id),
            api_key_id: self.caller.as_ref().map(|c| c.key_id),
            op: self.op,
            status,
            outcome,
            failovers,
            ttfb_ms: None,
            // Set when the call ends (`Call::ended`): for an answer, when its body is dropped.
            total_ms: 0,
            tokens: None,
            at_ms: 0,
        }
    }
}

async fn proxy(State(gw): State<Arc<Gateway>>, req: axum::extract::Request, op: Op) -> Response {
    let mut so_far = CallSoFar { op, started: std::time::Instant::now(), model: None, maas_model_id: None, caller: None };
    match forward(&gw, req, op, &mut so_far).await {
        Ok(resp) => resp,
        Err(e) => {
            if !gw.config.usage_metering {
                return e.into_response();
            }
            let outcome = e.outcome();
            if let (GatewayError::RateLimited(rej), Some(model)) = (&e, &so_far.model) {
                gw.meter.rate_limited(model, &rej.rule);
            }
            let resp = e.into_response();
            let mut call = so_far.call(resp.status().as_u16(), outcome, None, 0);
            call.ended(so_far.started);
            gw.meter.record(call);
            resp
        }
    }
}

async fn forward(gw: &Arc<Gateway>, req: axum::extract::Request, op: Op, so_far: &mut CallSoFar) -> Result<Response, GatewayError> {
    // The whole request rather than the HeaderMap extractor, which clones every header.
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    // One snapshot for the whole request, even if a new one is published meanwhile.
    let snap = gw.snapshot.load_full();
    let caller = gw.authenticate(&snap, headers)?;
    so_far.caller = Some(caller.clone());
    let bytes = read_body(body, headers, gw.config.body_limit).await?;
    let req = RequestBody::parse(&bytes).map_err(|e| match e {
        BodyError::Malformed(e) => GatewayError::BadRequest(format!("We could not parse the JSON body of your request: {e}")),
        BodyError::NoModel => GatewayError::BadRequest("You must provide a model parameter.".into()),
    })?;
    let Some(route) = snap.models.get(req.model()) else {
        // Counted under what the caller sent (bounded: a model name is at most 128 characters).
        so_far.model = Some(Arc::from(req.model().chars().take(128).collect::<String>()));
        return Err(GatewayError::ModelNotFound(req.model().to_owned()));
    };
    so_far.model = Some(route.name.clone());
    so_far.maas_model_id = Some(route.id);
    if !caller.may_call(route.id) {
        return Err(GatewayError::ModelNotAllowed(route.name.to_string()));
    }
    let now = gw.clock.now_ms();
    let rules = route.rules.for_caller(&caller);
    let quotas = snap.quotas_for(&caller);
    // Only token rules and quotas need the estimate (a look at two members of the parsed body).
    let estimate = if !quotas.is_empty() || rules.iter().any(|r| r.key.kind == RuleKind::Tokens) {
        reserve::estimate(op, bytes.len(), &req, route.reserve_output)
    } else {
        0
    };
    let mut admitted = gw.limits.check(&caller, &rules, &quotas, gw.config.wall_clock.now(), estimate).await?;
    // Streams: ask the upstream for its usage chunk when the client did not (cut again on the
    // way back, so the client gets the stream it asked for).
    let stream_options = match op {
        Op::Chat | Op::Completions if gw.config.usage_metering && req.streams() => usage::with_include_usage(req.member("stream_options")),
        _ => None,
    };

    let n = route.endpoints.len();
    // Fused: asked again after it ran out, when a waited-for endpoint failed.
    let mut candidates = route.balancer.candidates(n, &|i| route.endpoints[i].health.usable(now)).fuse();
    let mut failure = GatewayError::UpstreamUnavailable;
    // Endpoints skipped because they were at their cap, to wait on once the others were tried.
    let mut full: smallvec::SmallVec<[(usize, Arc<slots::Slots>); 4]> = smallvec::SmallVec::new();
    let mut tried = 0usize;
    // Failover: each endpoint at most once, in the policy's order; a full one after the others.
    loop {
        let (i, slot) = match candidates.next() {
            Some(i) => match &route.endpoints[i].slots {
                None => (i, None),
                Some(s) => match s.try_take() {
                    Some(slot) => (i, Some(slot)),
                    None => {
                        full.push((i, s.clone()));
                        continue;
                    }
                },
            },
            None if full.is_empty() => break,
            None => match slots::wait_any(&full, &route.waiting, gw.config.slot_queue, gw.config.slot_wait).await {
                Ok((i, slot)) => {
                    full.retain(|(j, _)| *j != i);
                    (i, Some(slot))
                }
                Err(why) => {
                    std::mem::take(&mut admitted.lease).settle(Some(0));
                    return Err(GatewayError::EndpointsBusy { model: route.name.to_string(), why });
                }
            },
        };
        let attempt = tried;
        tried += 1;
        let ep = &route.endpoints[i];
        let last = tried == n;
        let Some(target) = ep.target(op) else {
            // Validated at save time, so only a hand-edited database gets here.
            tracing::warn!(model = %route.name, endpoint = i, "endpoint URL does not parse");
            continue;
        };
        let mut injected = stream_options.as_deref().filter(|_| !ep.skip_stream_usage && !ep.health.refuses_stream_options());
        let body = Bytes::from(req.rewritten(&ep.model_json, injected));
        // The endpoint's own key, never the caller's.
        let send = |body: Bytes| {
            tokio::time::timeout(
                gw.config.first_byte_timeout,
                gw.upstream.post(target, ep.auth.as_ref(), headers.get(header::ACCEPT), body),
            )
        };
        let mut answer = send(body).await;
        // An upstream that refuses the `stream_options` we added (older servers validate every
        // field): the same request without them, and that endpoint's streams go without from
        // now on. A 400 it gives again is the caller's to see.
        if injected.is_some() && matches!(&answer, Ok(Ok(r)) if r.status() == http::StatusCode::BAD_REQUEST) {
            ep.health.set_refuses_stream_options();
            tracing::warn!(model = %route.name, endpoint = i, "upstream refused stream_options.include_usage; its streams are sent without it (usage unknown)");
            injected = None;
            answer = send(Bytes::from(req.with_model(&ep.model_json))).await;
        }
        match answer {
            Ok(Ok(resp)) if resp.status().is_server_error() && !last => {
                gw.failed_with(ep, metrics::FailReason::Status5xx);
                tracing::warn!(model = %route.name, endpoint = i, status = %resp.status(), "upstream 5xx, failing over");
            }
            Ok(Ok(resp)) => {
                if resp.status().is_server_error() {
                    gw.failed_with(ep, metrics::FailReason::Status5xx);
                } else {
                    ep.health.success();
                }
                let metered = gw.config.usage_metering.then(|| {
                    let call = so_far.call(resp.status().as_u16(), meter::Outcome::Ok, Some(ep.id), attempt as u32);
                    (gw.meter.clone(), call, so_far.started, injected.is_some())
                });
                admitted.lease.hold_slot(slot);
                return Ok(stream_back(resp, admitted, metered));
            }
            Ok(Err(e)) => {
                tracing::warn!(model = %route.name, endpoint = i, error = %e, "upstream unreachable");
                failure = match e {
                    SendError::ConnectTimeout => {
                        gw.failed_with(ep, metrics::FailReason::ConnectTimeout);
                        GatewayError::UpstreamTimeout
                    }
                    SendError::Unreachable(_) => {
                        gw.failed_with(ep, metrics::FailReason::Unreachable);
                        GatewayError::UpstreamUnavailable
                    }
                };
            }
            Err(_) => {
                gw.failed_with(ep, metrics::FailReason::FirstByteTimeout);
                tracing::warn!(model = %route.name, endpoint = i, "upstream first-byte timeout");
                failure = GatewayError::UpstreamTimeout;
            }
        }
    }
    // No upstream answered: the call used no tokens.
    std::mem::take(&mut admitted.lease).settle(Some(0));
    Err(failure)
}

/// Headers of the upstream's answer that reach the caller (besides the body's framing).
fn passes_through(name: &header::HeaderName) -> bool {
    name == header::CONTENT_TYPE
        || name == header::CACHE_CONTROL
        || name.as_str().starts_with("x-request-id")
        || name.as_str().starts_with("openai-")
}

/// Status, selected headers and body of the upstream, streamed as it arrives. Dropping the
/// returned body (the client went away) drops the upstream response, which closes its
/// connection: the upstream sees the cancel.
/// With `metered` (the meter, the call so far, when it started, whether the gateway asked for
/// the stream's usage chunk), the body is read for usage on its way and recorded at its end.
/// The call's `admitted.lease` goes with the body: released, and its tokens settled, when the
/// body ends or is dropped.
fn stream_back(
    resp: http::Response<upstream::UpstreamBody>,
    admitted: Admitted,
    metered: Option<(Arc<meter::Meter>, meter::Call, std::time::Instant, bool)>,
) -> Response {
    let (parts, incoming) = resp.into_parts();
    let mut headers = HeaderMap::with_capacity(8);
    for (k, v) in &parts.headers {
        if passes_through(k) {
            headers.append(k.clone(), v.clone());
        }
    }
    error::admission_headers(&mut headers, &admitted);
    let lease = admitted.lease;
    // The body's exact size hint (upstream Content-Length) becomes our Content-Length.
    let body = match metered {
        None if lease.is_empty() => Body::new(incoming),
        None => Body::new(meter::Leased::new(incoming, lease)),
        Some((m, call, started, injected)) => {
            let ct = parts.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
            let scan = if ct.starts_with(b"text/event-stream") {
                meter::Scan::Sse(usage::SseUsage::new(injected))
            } else if ct.starts_with(b"application/json") {
                meter::Scan::Json(usage::JsonEnds::default())
            } else {
                meter::Scan::Off
            };
            Body::new(meter::MeteredBody::new(incoming, scan, m, call, started, lease))
        }
    };
    let mut res = Response::new(body);
    *res.status_mut() = parts.status;
    *res.headers_mut() = headers;
    res
}

/// Flushes the gateway's usage into `db` every `every`, as rows of `gateway_id`; a failed
/// flush keeps its rows for the next one.
pub fn spawn_usage_flusher(gw: Arc<Gateway>, db: sea_orm::DatabaseConnection, gateway_id: String, every: Duration) {
    let gateway_id: String = gateway_id.chars().take(128).collect();
    if gw.usage_sink.set((db.clone(), gateway_id.clone())).is_err() {
        return; // one flusher per gateway
    }
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            let flushed = gw.flush_usage(&db, &gateway_id).await;
            if matches!(flushed, Ok(n) if n > 0) {
                // Out of the flush's transaction: the next commit does not pay for it (see
                // `app::ssr::connect`).
                if let Err(e) = app::ssr::checkpoint(&db).await {
                    tracing::debug!(error = %e, "WAL checkpoint after the usage flush failed; the next one retries");
                }
            }
            match flushed {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("usage flushes again");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "could not flush usage; keeping it in memory for the next try");
                }
                Err(_) => {}
            }
        }
    });
}

/// Which clusters a gateway serves, as its status reports them (the management list counts a
/// gateway for a cluster only when it serves it).
#[derive(Clone, Debug)]
pub enum Serves {
    /// A replica (`maas gateway --cluster`, or `maas serve --cluster`): that cluster's models only.
    Cluster(String),
    /// `maas serve`'s embedded gateway: every cluster's models are on its `/v1`, but it serves a
    /// cluster only when the cluster's entry address is one of these origins (its own address,
    /// its public origins): a cluster whose entry address points at replicas is theirs.
    EntryAddresses(Vec<String>),
}

impl Serves {
    /// The names to report, as JSON; on a database error, none (never "all").
    async fn names(&self, db: &sea_orm::DatabaseConnection) -> Option<String> {
        use app::ssr::entities::cluster;
        use sea_orm::EntityTrait;
        let names: Vec<String> = match self {
            Serves::Cluster(c) => vec![c.clone()],
            Serves::EntryAddresses(own) => cluster::Entity::find()
                .all(db)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|c| app::ssr::services::models::entry_is_own(&c.entry_address, own))
                .map(|c| c.name)
                .collect(),
        };
        serde_json::to_string(&names).ok()
    }
}

/// Keeps the gateway on the latest configuration: builds the snapshot at start and whenever the
/// configuration revision moves, reports the applied revision, and heartbeats. A snapshot is
/// rebuilt only for a new revision (or after a failed build), never on a timer: with many keys
/// and models a rebuild costs milliseconds and, while it runs, a second snapshot's memory.
pub fn spawn_reloader(gw: Arc<Gateway>, state: app::ssr::AppState, serves: Serves, gateway_id: String) {
    // The status table's key holds 128 characters (a long host name must not stop the reports).
    let gateway_id: String = gateway_id.chars().take(128).collect();
    let cluster = match &serves {
        Serves::Cluster(c) => Some(c.clone()),
        Serves::EntryAddresses(_) => None,
    };
    tokio::spawn(async move {
        let mut changes = state.config_rev.subscribe();
        let mut wanted = *changes.borrow_and_update();
        let mut built: Option<i64> = None;
        let mut error: Option<String> = None;
        let (mut forgot_at, mut swept_at) = (0, 0);
        loop {
            if built != Some(wanted) {
                let previous = gw.snapshot.load_full();
                match snapshot::build(&state.db, &state.secrets, cluster.as_deref(), wanted, Some(&previous), gw.config.wall_clock.now())
                    .await
                {
                    Ok(snap) => {
                        gw.publish(snap);
                        built = Some(wanted);
                        error = None;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not build gateway snapshot; keeping the previous one");
                        error = Some(format!("snapshot build failed: {e}"));
                    }
                }
            }
            // Every 5 s at most, whatever the heartbeat (a walk over every rule: 100k rules take
            // a few ms, on a blocking thread).
            let now = app::ssr::now();
            if now - swept_at >= 5 {
                swept_at = now;
                let sweep = gw.clone();
                tokio::task::spawn_blocking(move || sweep.release_idle_counters());
            }
            let cooling = serde_json::to_string(&gw.cooling()).ok();
            let served = serves.names(&state.db).await;
            if let Err(e) = report(&state.db, &gateway_id, cluster.as_deref(), served, gw.revision(), error.clone(), cooling).await {
                tracing::warn!(error = %e, "could not report gateway status");
            }
            // Once a minute: other processes' rows from long ago (every replica does it; the
            // delete is idempotent and the table small).
            if now - forgot_at >= 60 {
                forgot_at = now;
                if let Err(e) = app::ssr::services::models::forget_gone_gateways(&state.db, now).await {
                    tracing::warn!(error = %e, "could not delete the status of gone gateways");
                }
            }
            state.config_applied.send_replace(gw.revision());
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    wanted = wanted.max(*changes.borrow_and_update());
                }
                // Heartbeat: keeps the status column's "cooling down" fresh, retries a failed
                // build, and picks up a change committed by another process on the same database
                // (which signals nobody here): the database's revision is the truth.
                _ = tokio::time::sleep(gw.config.heartbeat) => {
                    if let Ok(rev) = app::ssr::current_revision(&state.db).await {
                        wanted = wanted.max(rev);
                    }
                }
            }
        }
    });
}

async fn report(
    db: &sea_orm::DatabaseConnection,
    id: &str,
    cluster: Option<&str>,
    serves: Option<String>,
    applied: i64,
    error: Option<String>,
    cooling: Option<String>,
) -> Result<(), sea_orm::DbErr> {
    use app::ssr::entities::gateway_status;
    use sea_orm::sea_query::OnConflict;
    use sea_orm::{EntityTrait, Set};
    let row = gateway_status::ActiveModel {
        gateway_id: Set(id.to_owned()),
        cluster: Set(cluster.map(str::to_owned)),
        applied_revision: Set(applied),
        error: Set(error),
        detail: Set(cooling),
        heartbeat_at: Set(app::ssr::now()),
        serves: Set(serves),
    };
    gateway_status::Entity::insert(row)
        .on_conflict(
            OnConflict::column(gateway_status::Column::GatewayId)
                .update_columns([
                    gateway_status::Column::Cluster,
                    gateway_status::Column::AppliedRevision,
                    gateway_status::Column::Error,
                    gateway_status::Column::Detail,
                    gateway_status::Column::HeartbeatAt,
                    gateway_status::Column::Serves,
                ])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
