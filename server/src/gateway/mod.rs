//! The OpenAI-compatible gateway (`/v1/*`): authenticates platform keys, applies each model's
//! rate limits and load balancing, forwards to the chosen upstream with its own key, streams
//! the answer back, and fails over to the next endpoint when one cannot answer.
pub mod admission;
pub mod affinity;
pub mod answer;
pub mod anthropic;
pub mod balancer;
pub mod body;
pub mod budget_alerts;
pub mod call;
pub mod chat_stream;
pub mod clock;
pub mod error;
pub mod forward;
pub mod load;
pub mod meter;
pub mod metrics;
pub mod op;
pub mod probe;
pub mod record;
pub mod responses;
pub mod retry;
pub mod shared_load;
pub mod slots;
pub mod snapshot;
pub mod upload;
pub mod upstream;
pub mod usage;

use admission::reserve::Estimate;
use admission::{Admission, Admit, Claim, Ticket};
use answer::Answer;
use app::types::RuleKind;
use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{rejection::PathRejection, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use body::{BodyError, RequestBody};
use call::CallCtx;
use clock::{SharedClock, SystemClock};
use error::GatewayError;
use forward::{Forwarder, Outgoing};
use op::Op;
use serde_json::{json, Value};
use smallvec::SmallVec;
use snapshot::{Caller, Route, Snapshot};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub body_limit: usize,
    /// The limit of a multipart upload (audio to transcribe, images to edit): spooled, not held
    /// in memory, so it may be larger.
    pub upload_limit: usize,
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
    /// The gateway's one clock (injected by tests to move time, or cross a month).
    pub clock: SharedClock,
    /// When every endpoint of a model is at its cap: how long a call waits for a slot, and how
    /// many calls of one model may wait at once, before the 429.
    pub slot_wait: Duration,
    pub slot_queue: usize,
    /// With Redis: how long a call's token reservations and place in concurrency rules outlive
    /// a replica that died holding them (renewed every third of it while the call runs).
    pub lease: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            body_limit: 10 * 1024 * 1024,
            upload_limit: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(120),
            fail_threshold: 3,
            cooldown: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            upstream_roots: Vec::new(),
            proxies: upstream::no_proxies(),
            usage_metering: true,
            clock: Arc::new(SystemClock::default()),
            slot_wait: Duration::from_secs(10),
            slot_queue: 1_000,
            lease: Duration::from_secs(60),
        }
    }
}

pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// Usage of every call, aggregated until the next flush (see [`Gateway::flush_usage`]).
    pub meter: Arc<meter::Meter>,
    /// Where [`spawn_usage_flusher`] writes the usage, for the last flush at exit.
    usage_sink: std::sync::OnceLock<(sea_orm::DatabaseConnection, String)>,
    admission: Admission,
    forwarder: Forwarder,
    clock: SharedClock,
    pub config: GatewayConfig,
}

impl Gateway {
    /// A gateway counting rate limits in this process (the embedded mode, one replica).
    pub fn new(config: GatewayConfig) -> Arc<Self> {
        let local = admission::local::LocalAdmission::on(config.clock.clone());
        Self::with_admission(config, Admission::Local(local))
    }

    /// A gateway whose rate limits are shared, through `redis`, with every replica using it.
    pub fn shared(config: GatewayConfig, redis: admission::redis_limiter::RedisLimiter) -> Arc<Self> {
        let journal = admission::journal::Journal::new(redis, config.clock.clone(), config.lease.as_millis() as u64);
        let local = admission::local::LocalAdmission::on(config.clock.clone());
        let shared = admission::outage::OutageFallback { redis: admission::redis_admission::RedisAdmission { journal }, local };
        Self::with_admission(config, Admission::Shared(shared))
    }

    fn with_admission(config: GatewayConfig, admission: Admission) -> Arc<Self> {
        let forwarder = Forwarder {
            upstream: upstream::Upstream::new(config.connect_timeout, &config.upstream_roots, config.proxies.clone()),
            clock: config.clock.clone(),
            first_byte_timeout: config.first_byte_timeout,
            fail_threshold: config.fail_threshold,
            cooldown: config.cooldown,
            slot_wait: config.slot_wait,
            slot_queue: config.slot_queue,
        };
        Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            meter: Arc::default(),
            usage_sink: std::sync::OnceLock::new(),
            admission,
            forwarder,
            clock: config.clock.clone(),
            config,
        })
    }

    /// What this replica admitted while Redis could not answer and Redis does not know yet.
    pub fn outage_journal_len(&self) -> usize {
        self.admission.outage_journal_len()
    }

    /// Publishes a new snapshot; requests already running keep the one they started with.
    pub fn publish(&self, snap: Snapshot) {
        self.snapshot.store(Arc::new(snap));
    }

    /// The snapshot served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
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
            .fold(
                Router::new()
                    .route("/v1/models", get(list_models))
                    .route("/v1/models/{*model}", get(retrieve_model))
                    .route("/v1/messages/count_tokens", post(count_tokens))
                    // Anything else under /v1 is the API's own 404, never the console's page.
                    .route("/v1", axum::routing::any(unknown_path))
                    .route("/v1/{*rest}", axum::routing::any(unknown_path)),
                |router, op| router.route(&format!("/v1{}", op.path()), post(move |State(gw): State<Arc<Gateway>>, r| handle(gw, r, op))),
            )
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
        let now = self.clock.now_ms();
        let snap = self.snapshot.load();
        snap.retired.lock().retain(|_, counter| {
            counter.release_idle(now);
            counter.holds_admissions()
        });
        snap.models.values().flat_map(|route| route.rules.iter()).filter(|rule| rule.counter().release_idle(now)).count()
    }

    /// `/metrics`'s exposition of this gateway's traffic since start.
    pub fn metrics_text(&self) -> String {
        metrics::render(&self.snapshot.load(), self.meter.series(), self.clock.now_ms())
    }

    /// `GET /metrics` for this gateway, behind `auth` (`None`: open).
    pub fn metrics_router(self: &Arc<Self>, auth: Option<metrics::ScrapeAuth>) -> Router {
        let gw = self.clone();
        metrics::router(move || gw.metrics_text(), auth)
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
        let quotas: Vec<admission::quota::QuotaCheck> = self.snapshot.load().quotas.values().cloned().collect();
        let now = self.clock.unix_secs();
        admission::quota::flush(db, &quotas, now).await?;
        // An alert not recorded now is recorded at the next flush (its threshold stays crossed).
        if let Err(e) = budget_alerts::record_crossings(db, &quotas, now).await {
            tracing::warn!(error = %e, "could not record budget alerts; the next flush retries");
        }
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

    /// Who calls: the platform key in `Authorization: Bearer`, known, not revoked, not expired.
    fn identify(&self, snap: &Snapshot, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
            .map(|(_, token)| token.trim())
            // Anthropic's clients send the key as `x-api-key`.
            .or_else(|| headers.get(X_API_KEY).and_then(|v| v.to_str().ok()).map(str::trim))
            .ok_or(GatewayError::InvalidApiKey)?;
        let caller = snap.keys.get(&app::ssr::crypto::sha256(token)).ok_or(GatewayError::InvalidApiKey)?;
        match caller.expires_at {
            // Wall-clock time, read only for keys that have an expiry.
            Some(at) if self.clock.unix_secs() >= at => Err(GatewayError::KeyExpired(at)),
            _ => Ok(caller.clone()),
        }
    }
}

const X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

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
                Box::pin(async move { Ok(handle(gw, req, op).await) })
            }
            // Other methods, /v1/models and everything else: the router (405s included).
            _ => Box::pin(tower::Service::call(&mut self.rest, req)),
        }
    }
}

/// Anthropic's `POST /v1/messages/count_tokens` (Claude Code calls it before long requests): an
/// estimate, the request's size in tokens as admission reserves it, since no tokenizer runs in
/// the gateway and a chat upstream has no such call.
async fn count_tokens(State(gw): State<Arc<Gateway>>, req: axum::extract::Request) -> Response {
    let dialect = Op::Messages.dialect();
    let (parts, body) = req.into_parts();
    let snap = gw.snapshot.load_full();
    if let Err(e) = gw.identify(&snap, &parts.headers) {
        return e.into_response_in(dialect);
    }
    let bytes = match read_body(body, &parts.headers, gw.config.body_limit).await.and_then(|b| parse_body(&b).map(|_| b.len())) {
        Ok(n) => n,
        Err(e) => return e.into_response_in(dialect),
    };
    axum::Json(json!({"input_tokens": admission::reserve::prompt_tokens(bytes)})).into_response()
}

/// `Invalid URL (POST /v1/nope)`, in OpenAI's shape.
async fn unknown_path(method: axum::http::Method, uri: axum::http::Uri) -> GatewayError {
    GatewayError::UnknownPath(format!("{method} {}", uri.path()))
}

async fn list_models(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Result<Response, GatewayError> {
    let snap = gw.snapshot.load_full();
    let caller = gw.identify(&snap, &headers)?;
    let mut data: Vec<Value> = snap.models.values().filter(|r| caller.may_call(r.id)).map(|r| model_object(r)).collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    // OpenAI's list, and Anthropic's page (one page: `has_more` false).
    let (first, last) = (data.first().map(|m| m["id"].clone()), data.last().map(|m| m["id"].clone()));
    Ok(axum::Json(json!({"object": "list", "data": data, "has_more": false, "first_id": first, "last_id": last})).into_response())
}

/// One model, as OpenAI's `GET /v1/models/{model}` (the SDKs' `models.retrieve`): any model
/// the list shows, else 404 `model_not_found`.
async fn retrieve_model(
    State(gw): State<Arc<Gateway>>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let snap = gw.snapshot.load_full();
    let caller = gw.identify(&snap, &headers)?;
    let Path(name) = name.map_err(|e| GatewayError::BadRequest(format!("We could not read the model name in the path: {e}")))?;
    // A model outside the key's list is not shown to it: the same 404 as no model at all.
    let r = snap.models.get(name.as_str()).filter(|r| caller.may_call(r.id)).ok_or(GatewayError::ModelNotFound(name))?;
    Ok(axum::Json(model_object(r)).into_response())
}

/// A model as OpenAI lists it, with the members Anthropic's SDKs read too (`type`,
/// `display_name`, `created_at`).
fn model_object(r: &snapshot::Route) -> Value {
    json!({"id": r.name, "object": "model", "created": r.created, "owned_by": r.owned_by,
           "type": "model", "display_name": r.name, "created_at": app::days::format_rfc3339(r.created)})
}

/// The request path of every forwarded operation, top to bottom: identify the caller, read and
/// route the call, admit it, forward it with failover, and stream the answer back. The call's
/// context goes through every step, and the call ends in one place whatever happens
/// ([`CallCtx`]'s end: recorded, its holds given back).
async fn handle(gw: Arc<Gateway>, req: axum::extract::Request, op: Op) -> Response {
    let mut call = CallCtx::begin(op, gw.clock.clone(), gw.config.usage_metering.then(|| gw.meter.clone()));
    match gw.serve(req, &mut call).await {
        Ok(answer) => answer::stream_back(answer, call),
        Err(e) => call.refuse(e),
    }
}

impl Gateway {
    /// The steps of [`handle`], each a function named for what it does.
    async fn serve(&self, req: axum::extract::Request, call: &mut CallCtx) -> Result<Answer, GatewayError> {
        // The whole request rather than the HeaderMap extractor, which clones every header.
        let (parts, body) = req.into_parts();
        // One snapshot for the whole call, even if a new one is published meanwhile.
        let snap = self.snapshot.load_full();
        let identified = self.identify(&snap, &parts.headers);
        // Read even for a caller refused below: its record names the model it sent, and its
        // connection stays usable (a body left unread closes it).
        let incoming = self.read_request(call.op(), body, &parts.headers).await.map_err(|e| refusal_first(&identified, e))?;
        let req = parse_body(incoming.json()).map_err(|e| refusal_first(&identified, e))?;
        let route = find_route(&snap, &req, call);
        let caller = identified?;
        call.identified(&caller);
        let op = call.op();
        let route = allowed_route(route, &req, &caller, op)?;
        let units = op.units(&req);
        call.asks_for(units);
        // The body endpoints that speak only chat completions get (Messages, Responses over chat).
        let translated = translate_request(op, route, &req)?;
        let ticket = self.admit(&snap, route, &caller, &req, incoming.json().len(), op, units).await?;
        call.admitted(ticket);
        let sent = Sent { req: &req, incoming: &incoming, headers: &parts.headers, caller: &caller };
        // The model's own endpoints, then its fallbacks (those of its kind the caller's key may
        // call), in order. Admission ran once, on the model asked for.
        let fallbacks: SmallVec<[&Route; 2]> = route
            .fallbacks
            .iter()
            .filter_map(|id| snap.by_id.get(id))
            .filter(|fb| fb.kind == route.kind && caller.may_call(fb.id))
            .map(|fb| &**fb)
            .collect();
        let mut failure = match self.forward(route, &sent, translated, call, fallbacks.is_empty()).await {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        for (k, fallback) in fallbacks.iter().enumerate() {
            // A fallback that cannot take the call at all is passed over.
            let Ok(translated) = translate_request(op, fallback, &req) else { continue };
            call.falls_back_to(fallback.name.clone(), fallback.id, fallback.prices.clone());
            tracing::info!(model = %route.name, fallback = %fallback.name, "no endpoint answered: falling back");
            match self.forward(fallback, &sent, translated, call, k + 1 == fallbacks.len()).await {
                Ok(answer) => return Ok(answer),
                Err(e) => failure = e,
            }
        }
        Err(failure)
    }

    /// Forwards the call to `route`'s endpoints with failover (its body `translated` for those
    /// that speak only chat completions); `last_resort`: no fallback follows.
    async fn forward(
        &self,
        route: &Route,
        sent: &Sent<'_>,
        translated: Option<Vec<u8>>,
        call: &mut CallCtx,
        last_resort: bool,
    ) -> Result<Answer, GatewayError> {
        let op = call.op();
        let translated = translated.as_deref().map(parse_body).transpose()?;
        let out = Outgoing {
            op,
            body: sent.req,
            upload: sent.incoming.upload(),
            affinity: affinity::key_of(route, sent.req, sent.caller),
            accept: sent.headers.get(header::ACCEPT),
            anthropic: anthropic::passed_headers(op, sent.headers),
            stream_options: self.stream_options(op, sent.req),
            translated_stream_options: translated.as_ref().and_then(|t| self.stream_options(Op::Chat, t)),
            translated: translated.as_ref(),
        };
        self.forwarder.with_failover(route, &out, call, last_resort).await
    }

    /// The request's body as `op` takes it: JSON, or a multipart upload (spooled).
    async fn read_request(&self, op: Op, body: Body, headers: &HeaderMap) -> Result<Incoming, GatewayError> {
        if op.takes_form() && upload::is_form(headers) {
            return Ok(Incoming::Form(upload::Upload::read(body, headers, self.config.upload_limit).await?));
        }
        if !op.takes_json() {
            // Read anyway (within the limit), so the connection stays usable.
            let _ = read_body(body, headers, self.config.body_limit).await;
            return Err(GatewayError::BadRequest(format!(
                "POST /v1{} takes a multipart/form-data upload (the file, and `model` as a form field).",
                op.path()
            )));
        }
        Ok(Incoming::Json(read_body(body, headers, self.config.body_limit).await?))
    }

    /// Checks the call against every rule of the route and every quota that applies to the
    /// caller, at once: one ticket of what it holds, or the refusal.
    #[allow(clippy::too_many_arguments)] // the call's parts, each read once by the step before
    async fn admit(
        &self,
        snap: &Snapshot,
        route: &Route,
        caller: &Caller,
        req: &RequestBody<'_>,
        body_len: usize,
        op: Op,
        units: Option<u64>,
    ) -> Result<Ticket, GatewayError> {
        let rules = route.rules.for_caller(caller);
        let quotas = snap.quotas_for(caller);
        // Only token rules and quotas need the estimate (a look at two members of the parsed body).
        let estimate = if op.counts_tokens() && (!quotas.is_empty() || rules.iter().any(|r| r.key.kind == RuleKind::Tokens)) {
            Estimate::of(op, body_len, req, route.reserve_output)
        } else {
            Estimate::default()
        };
        let now_secs = self.clock.unix_secs();
        // Priced only for a caller with a budget in money.
        let cost = match quotas.iter().any(|q| q.spend.is_some()) {
            false => 0,
            true => estimate
                .cost(units, route.prices.as_deref(), now_secs, &quotas)
                .map_err(|_| GatewayError::Unpriced(route.name.to_string()))?,
        };
        let claim =
            Claim { workspace_id: caller.workspace_id, rules: &rules, quotas: &quotas, now_secs, estimate: estimate.tokens(), cost };
        Ok(self.admission.admit(&claim).await?)
    }

    /// Streams: ask the upstream for its usage chunk when the client did not (cut again on the
    /// way back, so the client gets the stream it asked for).
    fn stream_options(&self, op: Op, req: &RequestBody<'_>) -> Option<String> {
        match op {
            Op::Chat | Op::Completions if self.config.usage_metering && req.streams() => {
                usage::with_include_usage(req.member("stream_options"))
            }
            _ => None,
        }
    }
}

/// What the caller sent, as every model the call is forwarded to reads it.
struct Sent<'a> {
    req: &'a RequestBody<'a>,
    incoming: &'a Incoming,
    headers: &'a HeaderMap,
    caller: &'a Caller,
}

/// A request's body as read: JSON, or an upload whose text fields the path reads as JSON.
enum Incoming {
    Json(Bytes),
    Form(upload::Upload),
}

impl Incoming {
    fn json(&self) -> &[u8] {
        match self {
            Incoming::Json(b) => b,
            Incoming::Form(f) => &f.fields,
        }
    }

    fn upload(&self) -> Option<&upload::Upload> {
        match self {
            Incoming::Json(_) => None,
            Incoming::Form(f) => Some(f),
        }
    }
}

/// The request's body, whole, within `limit` (413 beyond it).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, GatewayError> {
    if body::declared_length(headers).is_some_and(|n| n > limit) {
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

/// The body the route's endpoints that speak only chat completions get for `op`; `None` when
/// every endpoint speaks the operation's API (or, when some do, the call cannot be translated:
/// those get it, the others are passed over). Refused when no endpoint can take the call.
fn translate_request(op: Op, route: &Route, req: &RequestBody<'_>) -> Result<Option<Vec<u8>>, GatewayError> {
    let mut translation = None;
    let mut native = route.endpoints.is_empty();
    for ep in route.endpoints.iter() {
        match ep.mode(op) {
            snapshot::Mode::Native => native = true,
            snapshot::Mode::Translated(t) => translation = Some(t),
            snapshot::Mode::Cannot => {}
        }
    }
    let Some(t) = translation else {
        return match native {
            true => Ok(None),
            false => Err(GatewayError::OperationNotServed { model: route.name.to_string(), api: op.api().label() }),
        };
    };
    let body = match t {
        op::Translation::MessagesOverChat => anthropic::chat_request(req),
        op::Translation::ResponsesOverChat => responses::chat_request(req),
    };
    match body {
        Ok(body) => Ok(Some(body)),
        Err(_) if native => Ok(None),
        Err(e) => Err(GatewayError::BadRequest(e)),
    }
}

/// The body as JSON with a `model`.
fn parse_body(bytes: &[u8]) -> Result<RequestBody<'_>, GatewayError> {
    RequestBody::parse(bytes).map_err(|e| match e {
        BodyError::Malformed(e) => GatewayError::BadRequest(format!("We could not parse the JSON body of your request: {e}")),
        BodyError::NoModel => GatewayError::BadRequest("You must provide a model parameter.".into()),
    })
}

/// The served model the call names, if any; the call is recorded under it (or under what the
/// caller sent, bounded: a model name is at most 128 characters).
fn find_route<'s>(snap: &'s Snapshot, req: &RequestBody<'_>, call: &mut CallCtx) -> Option<&'s Route> {
    let route = snap.models.get(req.model());
    match route {
        Some(route) => call.routed(route.name.clone(), Some(route.id), route.prices.clone()),
        None => call.routed(Arc::from(req.model().chars().take(128).collect::<String>()), None, None),
    }
    route.map(|r| &**r)
}

/// The route, if there is one, the caller's key may call it, and it is of the kind that
/// serves `op`.
fn allowed_route<'s>(route: Option<&'s Route>, req: &RequestBody<'_>, caller: &Caller, op: Op) -> Result<&'s Route, GatewayError> {
    let route = route.ok_or_else(|| GatewayError::ModelNotFound(req.model().to_owned()))?;
    if !caller.may_call(route.id) {
        return Err(GatewayError::ModelNotAllowed(route.name.to_string()));
    }
    if route.kind != op.kind() {
        return Err(GatewayError::WrongKind { model: route.name.to_string(), kind: route.kind, path: op.path() });
    }
    Ok(route)
}

/// A refused key is answered before what is wrong with the body (401 before 400 or 413).
fn refusal_first(identified: &Result<Caller, GatewayError>, e: GatewayError) -> GatewayError {
    match identified {
        Err(GatewayError::KeyExpired(at)) => GatewayError::KeyExpired(*at),
        Err(_) => GatewayError::InvalidApiKey,
        Ok(_) => e,
    }
}

/// Flushes the gateway's usage into `db` every `every`, as rows of `gateway_id`; a failed
/// flush keeps its rows for the next one.
pub fn spawn_usage_flusher(gw: Arc<Gateway>, db: sea_orm::DatabaseConnection, gateway_id: String, every: Duration) {
    let gateway_id: String = gateway_id.chars().take(128).collect();
    if gw.usage_sink.set((db.clone(), gateway_id.clone())).is_err() {
        return; // one flusher per gateway
    }
    budget_alerts::spawn_sender(gw.clone(), db.clone());
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
                match snapshot::build(&state.db, &state.secrets, cluster.as_deref(), wanted, Some(&previous), gw.clock.unix_secs()).await {
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
            let now = gw.clock.unix_secs();
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
