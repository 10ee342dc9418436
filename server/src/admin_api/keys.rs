//! Platform API keys: create (the secret is in this answer only), revoke, scope, quota.
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Path, Query};
use super::page::{matches, Page, PageQuery};
use super::workspaces::QuotaBody;
use super::{created, Api};
use app::ssr::services::{keys, quotas};
use app::types::{ApiKeyInfo, CreatedApiKey, KeyScope};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key))
        .routes(routes!(revoke_key))
        .routes(routes!(set_scope))
        .routes(routes!(set_key_quota))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFilter {
    workspace_id: Option<i64>,
    /// In the name or the public id.
    search: Option<String>,
    revoked: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    workspace_id: i64,
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.:/-]+$")]
    name: String,
}

async fn find(api: &Api, c: &Caller, id: i64) -> ApiResult<ApiKeyInfo> {
    Ok(keys::get(&api.app.db, &c.who, id).await?)
}

/// List API keys.
#[utoipa::path(get, path = "/api-keys", tag = "api-keys", params(KeyFilter, PageQuery),
    responses((status = 200, body = Page<ApiKeyInfo>), (status = "4XX", body = ErrorBody)))]
async fn list_keys(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Query(f): Query<KeyFilter>,
    Query(p): Query<PageQuery>,
) -> ApiResult<Json<Page<ApiKeyInfo>>> {
    let all = keys::list(&api.app.db, &c.who).await?;
    let all = all
        .into_iter()
        .filter(|k| {
            f.workspace_id.is_none_or(|w| k.workspace_id == w)
                && f.revoked.is_none_or(|r| k.revoked == r)
                && matches(&f.search, &[&k.name, &k.public_id])
        })
        .collect();
    Ok(Json(Page::of(all, &p)?))
}

/// Create an API key for a workspace. The secret is in this answer and nowhere else. Honours
/// `Idempotency-Key` (a replay returns the same secret, kept encrypted in the idempotency record
/// for its 24 hours).
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = KeyBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried create with the same key returns the first answer")),
    responses((status = 201, body = CreatedApiKey), (status = "4XX", body = ErrorBody)))]
async fn create_key(State(api): State<Api>, Extension(c): Extension<Caller>, Json(b): Json<KeyBody>) -> ApiResult<Response> {
    let (k, rev) = keys::create(&api.app.db, &c.actor, &c.who, b.workspace_id, &b.name)
        .await
        .map_err(|e| ApiError::from(e).rename_fields(|f| (f == "workspace").then(|| "workspace_id".into())))?;
    api.app.config_changed(rev).await;
    created(&format!("/api/v1/api-keys/{}", k.info.id), k)
}

/// Get an API key (never its secret).
#[utoipa::path(get, path = "/api-keys/{id}", tag = "api-keys", params(("id" = i64, Path)),
    responses((status = 200, body = ApiKeyInfo), (status = "4XX", body = ErrorBody)))]
async fn get_key(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<Json<ApiKeyInfo>> {
    Ok(Json(find(&api, &c, id).await?))
}

/// Revoke an API key: the gateway refuses it from the next request on. Revoking twice is not
/// an error.
#[utoipa::path(post, path = "/api-keys/{id}/revoke", tag = "api-keys", params(("id" = i64, Path)),
    responses((status = 200, body = ApiKeyInfo), (status = "4XX", body = ErrorBody)))]
async fn revoke_key(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<Json<ApiKeyInfo>> {
    let rev = keys::revoke(&api.app.db, &c.actor, &c.who, id).await?;
    api.app.config_changed(rev).await;
    Ok(Json(find(&api, &c, id).await?))
}

/// The operator's limit on a key: its last day and the models it may call.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeBody {
    /// `YYYY-MM-DD` (UTC, inclusive); null: no end.
    #[serde(default)]
    last_day: Option<String>,
    /// MaaS model ids; null: every model.
    #[serde(default)]
    models: Option<Vec<i64>>,
}

/// Set the operator's limit on a key (its holders can narrow it, never widen it).
#[utoipa::path(put, path = "/api-keys/{id}/scope", tag = "api-keys", params(("id" = i64, Path)), request_body = ScopeBody,
    responses((status = 200, body = ApiKeyInfo), (status = "4XX", body = ErrorBody)))]
async fn set_scope(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<ScopeBody>,
) -> ApiResult<Json<ApiKeyInfo>> {
    let scope = KeyScope { last_day: b.last_day.filter(|d| !d.trim().is_empty()), models: b.models };
    let rev = keys::set_scope(&api.app.db, &c.actor, &c.who, id, &scope).await?;
    api.app.config_changed(rev).await;
    Ok(Json(find(&api, &c, id).await?))
}

/// Set or remove a key's quota.
#[utoipa::path(put, path = "/api-keys/{id}/quota", tag = "api-keys", params(("id" = i64, Path)), request_body = QuotaBody,
    responses((status = 200, body = ApiKeyInfo), (status = "4XX", body = ErrorBody)))]
async fn set_key_quota(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<QuotaBody>,
) -> ApiResult<Json<ApiKeyInfo>> {
    let rev = quotas::set_key(&api.app.db, &c.actor, &c.who, id, &b.input()).await?;
    api.app.config_changed(rev).await;
    Ok(Json(find(&api, &c, id).await?))
}
