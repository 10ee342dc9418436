//! MaaS models with their endpoints and rules. Every answer carrying a model has its revision
//! as `ETag`; `If-Match` on PUT, PATCH and DELETE makes the change conditional on it (412 when
//! someone changed the model since), through the same check the console's edit form uses.
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Path, Query};
use super::page::{Page, PageQuery};
use super::Api;
use app::ssr::services::{models, prices};
use app::types::{
    AffinityKey, EndpointInput, HealthCheck, KeyChange, ModelDetail, ModelInput, ModelRow, Policy, PriceInput, PriceVersion, RetryPolicy,
    RuleInput, RuleKind, RuleTarget,
};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_models, create_model))
        .routes(routes!(get_model, replace_model, patch_model, delete_model))
        .routes(routes!(model_health))
        .routes(routes!(list_prices, add_price))
}

/// An endpoint as written. `api_key`: absent keeps the saved key of the endpoint `id` names
/// (none for a new endpoint), a string sets it, null clears it. It is stored encrypted and
/// never returned.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    /// The saved endpoint this one replaces (to keep its key); absent for a new endpoint.
    #[serde(default)]
    id: Option<i64>,
    /// The model name the upstream expects.
    #[schema(min_length = 1, max_length = 256)]
    model_id: String,
    /// The upstream's OpenAI-compatible base URL.
    #[schema(pattern = r"^https?://", max_length = 2048)]
    url: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable, value_type = Option<String>)]
    api_key: Option<Option<String>>,
    /// 0 to 100; required by the weighted policy (the weights total 100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    weight: Option<i64>,
    #[serde(default)]
    skip_stream_usage: bool,
    /// The most calls at once to this upstream; absent: no cap.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100_000)]
    max_concurrent: Option<i64>,
    /// The APIs the endpoint speaks natively; absent: `["chat"]` (Messages and Responses calls
    /// are then translated to chat completions).
    #[serde(default = "app::types::default_apis")]
    native_apis: Vec<app::types::Api>,
    /// Drained: no new calls (calls under way finish).
    #[serde(default)]
    draining: bool,
}

/// A member that may be given as null (`Some(None)`), told apart from one not given (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A rate-limit rule as written.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    #[serde(default)]
    kind: RuleKind,
    target: RuleTarget,
    workspace_id: i64,
    /// Required when `target` is `api_key`.
    #[serde(default)]
    api_key_id: Option<i64>,
    #[schema(minimum = 1)]
    limit: i64,
    /// The window of `requests` and `tokens` rules, in seconds; none for `concurrent`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604_800)]
    duration_secs: Option<i64>,
}

/// A whole model as written (POST, PUT). New models start disabled: enable with PATCH.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    marketplace_model_id: i64,
    cluster_id: i64,
    #[serde(default)]
    policy: Policy,
    #[schema(min_items = 1, max_items = 64)]
    endpoints: Vec<EndpointBody>,
    #[serde(default)]
    #[schema(max_items = 64)]
    rules: Vec<RuleBody>,
    /// Output tokens a call without `max_tokens` reserves in token rules and quotas; absent:
    /// the gateway's default.
    #[serde(default)]
    reserve_output_tokens: Option<i64>,
    /// What the `affinity` policy keeps a conversation on one endpoint by (default
    /// `prompt_cache_key`).
    #[serde(default)]
    affinity_key: AffinityKey,
    /// Other MaaS models (ids, on the same cluster, in order) that answer when none of this
    /// one's endpoints can; following them must never lead back to this model.
    #[serde(default)]
    #[schema(max_items = 5)]
    fallbacks: Vec<i64>,
    /// Which failed tries go on to the next endpoint, how many, and the retry budget.
    #[serde(default)]
    retry: RetryPolicy,
    /// Active health checks of the endpoints; absent or null: none.
    #[serde(default)]
    health_check: Option<HealthCheck>,
}

/// Part of a model (PATCH): the fields given replace the saved ones. `enabled` is changed
/// on its own (not with other fields), as the console's toggle does.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPatch {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    marketplace_model_id: Option<i64>,
    #[serde(default)]
    cluster_id: Option<i64>,
    #[serde(default)]
    policy: Option<Policy>,
    #[serde(default)]
    endpoints: Option<Vec<EndpointBody>>,
    #[serde(default)]
    rules: Option<Vec<RuleBody>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable, value_type = Option<i64>)]
    reserve_output_tokens: Option<Option<i64>>,
    #[serde(default)]
    affinity_key: Option<AffinityKey>,
    #[serde(default)]
    fallbacks: Option<Vec<i64>>,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    /// null turns the health checks off.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable, value_type = Option<HealthCheck>)]
    health_check: Option<Option<HealthCheck>>,
}

fn num(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl EndpointBody {
    fn input(self) -> EndpointInput {
        let api_key = match self.api_key {
            None => KeyChange::Keep,
            Some(None) => KeyChange::Clear,
            Some(Some(k)) => KeyChange::Set(k),
        };
        EndpointInput {
            id: self.id,
            model_id: self.model_id,
            url: self.url,
            api_key,
            weight: num(self.weight),
            skip_stream_usage: self.skip_stream_usage,
            max_concurrent: num(self.max_concurrent),
            native_apis: self.native_apis,
            draining: self.draining,
        }
    }
}

impl RuleBody {
    fn input(self) -> RuleInput {
        RuleInput {
            kind: self.kind,
            target: self.target,
            workspace_id: Some(self.workspace_id),
            api_key_id: self.api_key_id,
            limit: self.limit.to_string(),
            duration: num(self.duration_secs),
        }
    }
}

impl ModelBody {
    fn input(self) -> ModelInput {
        ModelInput {
            marketplace_model_id: Some(self.marketplace_model_id),
            cluster_id: Some(self.cluster_id),
            policy: self.policy,
            endpoints: self.endpoints.into_iter().map(EndpointBody::input).collect(),
            rules: self.rules.into_iter().map(RuleBody::input).collect(),
            reserve_output: num(self.reserve_output_tokens),
            affinity_key: self.affinity_key,
            fallbacks: self.fallbacks,
            retry: self.retry,
            health_check: self.health_check,
        }
    }
}

/// The saved model as the input that would save it unchanged (keys kept).
fn as_input(m: &ModelDetail) -> ModelInput {
    ModelInput {
        marketplace_model_id: Some(m.marketplace_model_id),
        cluster_id: Some(m.cluster_id),
        policy: m.policy,
        endpoints: m
            .endpoints
            .iter()
            .map(|e| EndpointInput {
                id: Some(e.id),
                model_id: e.model_id.clone(),
                url: e.url.clone(),
                api_key: KeyChange::Keep,
                weight: e.weight.to_string(),
                skip_stream_usage: e.skip_stream_usage,
                max_concurrent: num(e.max_concurrent),
                native_apis: e.native_apis.clone(),
                draining: e.draining,
            })
            .collect(),
        rules: m
            .rules
            .iter()
            .map(|r| RuleInput {
                kind: r.kind,
                target: r.target,
                workspace_id: Some(r.workspace_id),
                api_key_id: r.api_key_id,
                limit: r.limit.to_string(),
                duration: if r.kind.windowed() { r.duration.to_string() } else { String::new() },
            })
            .collect(),
        reserve_output: num(m.reserve_output),
        affinity_key: m.affinity_key,
        fallbacks: m.fallbacks.clone(),
        retry: m.retry.clone(),
        health_check: m.health_check,
    }
}

/// The service's field names as the body's.
fn body_fields(e: impl Into<ApiError>) -> ApiError {
    e.into().rename_fields(|f| {
        let renamed = match f {
            "marketplace_model" => "marketplace_model_id".to_owned(),
            "cluster" => "cluster_id".to_owned(),
            "reserve_output" => "reserve_output_tokens".to_owned(),
            f if f.starts_with("rules.") && (f.ends_with(".workspace") || f.ends_with(".api_key") || f.ends_with(".duration")) => {
                format!("{f}{}", if f.ends_with(".duration") { "_secs" } else { "_id" })
            }
            _ => return None,
        };
        Some(renamed)
    })
}

/// `If-Match`: the revision the caller expects (`"41"`; `*` or absent: any).
fn if_match(h: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(v) = h.get(header::IF_MATCH) else { return Ok(None) };
    let v = v.to_str().unwrap_or_default().trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request("If-Match: the model's ETag, as GET returned it (\"41\")"))
}

fn with_etag(m: ModelDetail, status: StatusCode) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", m.revision)).expect("digits");
    let mut res = (status, Json(m)).into_response();
    res.headers_mut().insert(header::ETAG, etag);
    res
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelFilter {
    /// In the model name, a tag, the cluster or an endpoint's model id.
    search: Option<String>,
}

/// List MaaS models (newest first) with their gateway status and last-24-hour usage.
#[utoipa::path(get, path = "/models", tag = "models", params(ModelFilter, PageQuery),
    responses((status = 200, body = Page<ModelRow>), (status = "4XX", body = ErrorBody)))]
async fn list_models(State(api): State<Api>, Query(f): Query<ModelFilter>, Query(p): Query<PageQuery>) -> ApiResult<Json<Page<ModelRow>>> {
    let (page, per_page) = p.bounds(models::MAX_PER_PAGE)?;
    let r = models::list(&api.app.db, f.search.as_deref().unwrap_or_default(), page, per_page).await?;
    Ok(Json(Page { items: r.rows, total: r.total, page: page + 1, per_page }))
}

/// Create a MaaS model (disabled). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/models", tag = "models", request_body = ModelBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried create with the same key returns the first answer")),
    responses((status = 201, body = ModelDetail, headers(("ETag" = String))), (status = "4XX", body = ErrorBody)))]
async fn create_model(State(api): State<Api>, Extension(c): Extension<Caller>, Json(b): Json<ModelBody>) -> ApiResult<Response> {
    let (id, rev) = models::create(&api.app.db, &c.actor, &api.app.secrets, &b.input()).await.map_err(body_fields)?;
    api.app.config_changed(rev).await;
    let mut res = with_etag(models::get(&api.app.db, id).await?, StatusCode::CREATED);
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&format!("/api/v1/models/{id}")).expect("ascii"));
    Ok(res)
}

/// Get a MaaS model (no upstream keys: `has_key` says whether one is saved).
/// Each endpoint of a MaaS model with its health as the active health checks last judged it
/// (`healthy` null: not probed) and its latest transitions, newest first.
#[utoipa::path(get, path = "/models/{id}/health", tag = "models", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<app::types::EndpointHealth>), (status = "4XX", body = ErrorBody)))]
async fn model_health(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Vec<app::types::EndpointHealth>>> {
    Ok(Json(models::endpoint_health(&api.app.db, id).await?))
}

/// A MaaS model's price versions, oldest first: each in force from `effective_from` until the
/// next, as exact decimals of the platform currency.
#[utoipa::path(get, path = "/models/{id}/prices", tag = "models", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<PriceVersion>), (status = "4XX", body = ErrorBody)))]
async fn list_prices(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Vec<PriceVersion>>> {
    Ok(Json(prices::list(&api.app.db, id).await?))
}

/// Add a price version to a MaaS model, in force from `effective_from` (now when absent; never
/// in the past): calls made before it keep the price they were made at. Prices are decimals
/// (per million tokens: at most 6 decimals; per unit and per call: at most 12), never negative.
#[utoipa::path(post, path = "/models/{id}/prices", tag = "models", request_body = PriceInput, params(("id" = i64, Path)),
    responses((status = 201, body = PriceVersion), (status = "4XX", body = ErrorBody)))]
async fn add_price(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<PriceInput>,
) -> ApiResult<Response> {
    let (v, rev) = prices::add(&api.app.db, &c.actor, id, &b).await?;
    api.app.config_changed(rev).await;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

#[utoipa::path(get, path = "/models/{id}", tag = "models", params(("id" = i64, Path)),
    responses((status = 200, body = ModelDetail, headers(("ETag" = String))), (status = "4XX", body = ErrorBody)))]
async fn get_model(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Response> {
    Ok(with_etag(models::get(&api.app.db, id).await?, StatusCode::OK))
}

/// Replace a MaaS model whole: endpoints and rules not given are removed.
#[utoipa::path(put, path = "/models/{id}", tag = "models", request_body = ModelBody,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "the ETag you read: 412 if the model changed since")),
    responses((status = 200, body = ModelDetail, headers(("ETag" = String))), (status = "4XX", body = ErrorBody)))]
async fn replace_model(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(b): Json<ModelBody>,
) -> ApiResult<Response> {
    let rev = models::update(&api.app.db, &c.actor, &api.app.secrets, id, if_match(&headers)?, &b.input()).await.map_err(body_fields)?;
    api.app.config_changed(rev).await;
    Ok(with_etag(models::get(&api.app.db, id).await?, StatusCode::OK))
}

/// Change part of a MaaS model: `{"enabled": true}` switches it on; other fields replace the
/// saved ones.
#[utoipa::path(patch, path = "/models/{id}", tag = "models", request_body = ModelPatch,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "the ETag you read: 412 if the model changed since")),
    responses((status = 200, body = ModelDetail, headers(("ETag" = String))), (status = "4XX", body = ErrorBody)))]
async fn patch_model(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(p): Json<ModelPatch>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let config = p.marketplace_model_id.is_some()
        || p.cluster_id.is_some()
        || p.policy.is_some()
        || p.endpoints.is_some()
        || p.rules.is_some()
        || p.reserve_output_tokens.is_some()
        || p.affinity_key.is_some()
        || p.fallbacks.is_some()
        || p.retry.is_some()
        || p.health_check.is_some();
    let rev = match (p.enabled, config) {
        (Some(_), true) => return Err(ApiError::field("enabled", "change enabled in a request of its own")),
        (None, false) => return Err(ApiError::bad_request("nothing to change: give enabled, or fields of the model")),
        (Some(on), false) => models::set_enabled(&api.app.db, &c.actor, id, expected, on).await?,
        (None, true) => {
            let mut input = as_input(&models::get(&api.app.db, id).await?);
            if let Some(v) = p.marketplace_model_id {
                input.marketplace_model_id = Some(v);
            }
            if let Some(v) = p.cluster_id {
                input.cluster_id = Some(v);
            }
            if let Some(v) = p.policy {
                input.policy = v;
            }
            if let Some(v) = p.endpoints {
                input.endpoints = v.into_iter().map(EndpointBody::input).collect();
            }
            if let Some(v) = p.rules {
                input.rules = v.into_iter().map(RuleBody::input).collect();
            }
            if let Some(v) = p.reserve_output_tokens {
                input.reserve_output = num(v);
            }
            if let Some(v) = p.affinity_key {
                input.affinity_key = v;
            }
            if let Some(v) = p.fallbacks {
                input.fallbacks = v;
            }
            if let Some(v) = p.retry {
                input.retry = v;
            }
            if let Some(v) = p.health_check {
                input.health_check = v;
            }
            models::update(&api.app.db, &c.actor, &api.app.secrets, id, expected, &input).await.map_err(body_fields)?
        }
    };
    api.app.config_changed(rev).await;
    Ok(with_etag(models::get(&api.app.db, id).await?, StatusCode::OK))
}

/// Delete a MaaS model: the gateway stops serving it.
#[utoipa::path(delete, path = "/models/{id}", tag = "models",
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "the ETag you read: 412 if the model changed since")),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete_model(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let rev = models::delete(&api.app.db, &c.actor, id, if_match(&headers)?).await?;
    api.app.config_changed(rev).await;
    Ok(StatusCode::NO_CONTENT)
}
