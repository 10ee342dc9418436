//! The OpenAI-compatible gateway (`/v1/*`): authenticates platform keys, applies each model's
//! rate limits and load balancing, forwards to the chosen upstream with its own key, streams
//! the answer back, and fails over to the next endpoint when one cannot answer.
pub mod balancer;
pub mod error;
pub mod limiter;
pub mod snapshot;

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::GatewayError;
use limiter::{Clock, Limiter, SystemClock};
use serde_json::{json, Map, Value};
use snapshot::{Caller, Snapshot};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub body_limit: usize,
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive (streams may run longer).
    pub first_byte_timeout: Duration,
    pub fail_threshold: u32,
    pub cooldown: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            body_limit: 10 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(120),
            fail_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    limiter: Limiter,
    clock: SystemClock,
    client: reqwest::Client,
    pub config: GatewayConfig,
}

#[derive(Clone, Copy)]
enum Op {
    Chat,
    Completions,
    Embeddings,
}

impl Op {
    /// Position in `Endpoint::urls`.
    fn index(self) -> usize {
        self as usize
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client with static settings");
        Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            limiter: Limiter::new(SystemClock::default()),
            clock: SystemClock::default(),
            client,
            config,
        })
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
        Router::new()
            .route("/v1/models", get(list_models))
            .route("/v1/chat/completions", post(|s, h, b| proxy(s, h, b, Op::Chat)))
            .route("/v1/completions", post(|s, h, b| proxy(s, h, b, Op::Completions)))
            .route("/v1/embeddings", post(|s, h, b| proxy(s, h, b, Op::Embeddings)))
            .with_state(self.clone())
    }

    /// Counts a failure of `ep` against the configured threshold and cool-down.
    fn failed(&self, ep: &snapshot::Endpoint) {
        ep.health.failure(self.clock.now_ms(), self.config.fail_threshold, self.config.cooldown.as_millis() as u64);
    }

    fn authenticate(&self, snap: &Snapshot, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(GatewayError::InvalidApiKey)?;
        snap.keys.get(&app::ssr::crypto::sha256_hex(token)).copied().ok_or(GatewayError::InvalidApiKey)
    }
}

async fn list_models(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Result<Response, GatewayError> {
    let snap = gw.snapshot.load_full();
    gw.authenticate(&snap, &headers)?;
    let mut data: Vec<Value> = snap
        .models
        .values()
        .map(|r| json!({"id": r.name, "object": "model", "created": r.created, "owned_by": r.owned_by}))
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| GatewayError::BodyTooLarge(limit))
}

async fn proxy(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body, op: Op) -> Result<Response, GatewayError> {
    // One snapshot for the whole request, even if a new one is published meanwhile.
    let snap = gw.snapshot.load_full();
    let caller = gw.authenticate(&snap, &headers)?;
    let bytes = read_body(body, &headers, gw.config.body_limit).await?;
    let mut req: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::BadRequest(format!("We could not parse the JSON body of your request: {e}")))?;
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(GatewayError::BadRequest("You must provide a model parameter.".into())),
    };
    let route = snap.models.get(&model).cloned().ok_or(GatewayError::ModelNotFound(model))?;
    let admission = gw.limiter.check(&route.checks_for(&caller)).map_err(GatewayError::RateLimited)?;

    let now = gw.clock.now_ms();
    let order = route.balancer.order(route.endpoints.len(), &|i| route.endpoints[i].health.usable(now));
    let mut failure = GatewayError::UpstreamUnavailable;
    for (attempt, &i) in order.iter().enumerate() {
        let ep = &route.endpoints[i];
        let last = attempt + 1 == order.len();
        req.insert("model".into(), Value::String(ep.model_id.clone()));
        let body = serde_json::to_vec(&req).expect("a JSON map serializes");
        let Some(urls) = &ep.urls else {
            // Validated at save time, so only a hand-edited database gets here.
            tracing::warn!(model = %route.name, endpoint = i, "endpoint URL does not parse");
            continue;
        };
        let mut up = gw.client.post(urls[op.index()].clone()).header(header::CONTENT_TYPE, "application/json").body(body);
        if let Some(accept) = headers.get(header::ACCEPT) {
            up = up.header(header::ACCEPT, accept);
        }
        // The endpoint's own key, never the caller's.
        if let Some(k) = &ep.api_key {
            up = up.bearer_auth(k);
        }
        match tokio::time::timeout(gw.config.first_byte_timeout, up.send()).await {
            Ok(Ok(resp)) if resp.status().is_server_error() && !last => {
                gw.failed(ep);
                tracing::warn!(model = %route.name, endpoint = i, status = %resp.status(), "upstream 5xx, failing over");
            }
            Ok(Ok(resp)) => {
                if resp.status().is_server_error() {
                    gw.failed(ep);
                } else {
                    ep.health.success();
                }
                return Ok(stream_back(resp, admission.as_ref()));
            }
            Ok(Err(e)) => {
                gw.failed(ep);
                tracing::warn!(model = %route.name, endpoint = i, error = %e, "upstream unreachable");
                failure = if e.is_timeout() { GatewayError::UpstreamTimeout } else { GatewayError::UpstreamUnavailable };
            }
            Err(_) => {
                gw.failed(ep);
                tracing::warn!(model = %route.name, endpoint = i, "upstream first-byte timeout");
                failure = GatewayError::UpstreamTimeout;
            }
        }
    }
    Err(failure)
}

/// Status, content type and body of the upstream, streamed as it arrives. Dropping the
/// returned body (the client went away) drops the upstream response, which closes its
/// connection: the upstream sees the cancel.
fn stream_back(resp: reqwest::Response, admission: Option<&limiter::Admission>) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = resp.headers().get(name.as_str()).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            headers.insert(name, v);
        }
    }
    for (k, v) in resp.headers() {
        if k.as_str().starts_with("x-request-id") || k.as_str().starts_with("openai-") {
            if let (Ok(k), Ok(v)) = (header::HeaderName::from_bytes(k.as_str().as_bytes()), HeaderValue::from_bytes(v.as_bytes())) {
                headers.insert(k, v);
            }
        }
    }
    if let Some(a) = admission {
        headers.insert("x-ratelimit-limit-requests", HeaderValue::from(a.limit));
        headers.insert("x-ratelimit-remaining-requests", HeaderValue::from(a.remaining));
    }
    let mut res = Response::new(Body::from_stream(resp.bytes_stream()));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// Keeps the gateway on the latest configuration: rebuilds the snapshot at start and after
/// every committed change, reports the applied revision, and heartbeats.
pub fn spawn_reloader(gw: Arc<Gateway>, state: app::ssr::AppState, cluster: Option<String>, gateway_id: String) {
    tokio::spawn(async move {
        let mut changes = state.config_rev.subscribe();
        loop {
            let rev = *changes.borrow_and_update();
            let previous = gw.snapshot.load_full();
            let built = snapshot::build(&state.db, &state.secrets, cluster.as_deref(), rev, Some(&previous)).await;
            let error = match built {
                Ok(snap) => {
                    gw.publish(snap);
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not build gateway snapshot; keeping the previous one");
                    Some(format!("snapshot build failed: {e}"))
                }
            };
            let cooling = serde_json::to_string(&gw.cooling()).ok();
            if let Err(e) = report(&state.db, &gateway_id, cluster.as_deref(), gw.revision(), error, cooling).await {
                tracing::warn!(error = %e, "could not report gateway status");
            }
            state.config_applied.send_replace(gw.revision());
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                // Heartbeat: keeps the status column's "cooling down" fresh.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
}

async fn report(db: &sea_orm::DatabaseConnection, id: &str, cluster: Option<&str>, applied: i64, error: Option<String>, cooling: Option<String>) -> Result<(), sea_orm::DbErr> {
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
    };
    gateway_status::Entity::insert(row)
        .on_conflict(
            OnConflict::column(gateway_status::Column::GatewayId)
                .update_columns([gateway_status::Column::Cluster, gateway_status::Column::AppliedRevision, gateway_status::Column::Error, gateway_status::Column::Detail, gateway_status::Column::HeartbeatAt])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
