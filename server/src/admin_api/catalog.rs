//! Marketplace models and clusters.
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Path, Query};
use super::page::{matches, Page, PageQuery};
use super::{created, Api};
use app::ssr::services::catalog;
use app::types::{Cluster, MarketplaceInput, MarketplaceModel, ModelKind};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_marketplace, create_marketplace))
        .routes(routes!(get_marketplace, replace_marketplace, delete_marketplace))
        .routes(routes!(publish))
        .routes(routes!(unpublish))
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, replace_cluster, delete_cluster))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MarketplaceFilter {
    /// In the name, provider or a tag.
    search: Option<String>,
    published: Option<bool>,
}

/// A marketplace model as written.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketplaceBody {
    /// What clients put in `model`: letters, digits and `-_.:/`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:/-]+$")]
    name: String,
    #[schema(min_length = 1, max_length = 128)]
    provider: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    description: String,
    /// Up to 16, each up to 32 characters, no commas.
    #[serde(default)]
    #[schema(max_items = 16)]
    tags: Vec<String>,
    /// What kind of model it is: the operations the gateway serves it (default `chat`).
    #[serde(default)]
    kind: ModelKind,
}

impl MarketplaceBody {
    /// The console's input (tags comma-separated, as typed there), checked by the same service.
    fn input(self) -> ApiResult<MarketplaceInput> {
        if self.tags.iter().any(|t| t.contains(',')) {
            return Err(ApiError::field("tags", "a tag cannot contain a comma"));
        }
        Ok(MarketplaceInput {
            name: self.name,
            provider: self.provider,
            description: self.description,
            tags: self.tags.join(","),
            kind: self.kind,
        })
    }
}

/// List marketplace models.
#[utoipa::path(get, path = "/marketplace-models", tag = "marketplace", params(MarketplaceFilter, PageQuery),
    responses((status = 200, body = Page<MarketplaceModel>), (status = "4XX", body = ErrorBody)))]
async fn list_marketplace(
    State(api): State<Api>,
    Query(f): Query<MarketplaceFilter>,
    Query(p): Query<PageQuery>,
) -> ApiResult<Json<Page<MarketplaceModel>>> {
    let all = catalog::list_marketplace(&api.app.db).await?;
    let tags = |m: &MarketplaceModel| m.tags.join(" ");
    let all = all
        .into_iter()
        .filter(|m| f.published.is_none_or(|p| m.published == p) && matches(&f.search, &[&m.name, &m.provider, &tags(m)]))
        .collect();
    Ok(Json(Page::of(all, &p)?))
}

/// Create a marketplace model (unpublished). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/marketplace-models", tag = "marketplace", request_body = MarketplaceBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried create with the same key returns the first answer")),
    responses((status = 201, body = MarketplaceModel), (status = "4XX", body = ErrorBody)))]
async fn create_marketplace(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Json(b): Json<MarketplaceBody>,
) -> ApiResult<Response> {
    let id = catalog::create_marketplace(&api.app.db, &c.actor, &b.input()?).await?;
    created(&format!("/api/v1/marketplace-models/{id}"), catalog::get_marketplace(&api.app.db, id).await?)
}

/// Get a marketplace model.
#[utoipa::path(get, path = "/marketplace-models/{id}", tag = "marketplace", params(("id" = i64, Path)),
    responses((status = 200, body = MarketplaceModel), (status = "4XX", body = ErrorBody)))]
async fn get_marketplace(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<MarketplaceModel>> {
    Ok(Json(catalog::get_marketplace(&api.app.db, id).await?))
}

/// Replace a marketplace model's name, provider, description, tags and kind (a new name or
/// kind is applied by the gateways before the answer).
#[utoipa::path(put, path = "/marketplace-models/{id}", tag = "marketplace", params(("id" = i64, Path)), request_body = MarketplaceBody,
    responses((status = 200, body = MarketplaceModel), (status = "4XX", body = ErrorBody)))]
async fn replace_marketplace(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<MarketplaceBody>,
) -> ApiResult<Json<MarketplaceModel>> {
    let (m, rev) = catalog::update_marketplace(&api.app.db, &c.actor, id, &b.input()?).await?;
    if let Some(rev) = rev {
        api.app.config_changed(rev).await;
    }
    Ok(Json(m))
}

/// Delete a marketplace model (409 while MaaS models are built on it).
#[utoipa::path(delete, path = "/marketplace-models/{id}", tag = "marketplace", params(("id" = i64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete_marketplace(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    catalog::delete_marketplace(&api.app.db, &c.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish a marketplace model: its MaaS models become callable.
#[utoipa::path(post, path = "/marketplace-models/{id}/publish", tag = "marketplace", params(("id" = i64, Path)),
    responses((status = 200, body = MarketplaceModel), (status = "4XX", body = ErrorBody)))]
async fn publish(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<Json<MarketplaceModel>> {
    set_published(api, c, id, true).await
}

/// Unpublish a marketplace model: the gateway answers 404 for its MaaS models.
#[utoipa::path(post, path = "/marketplace-models/{id}/unpublish", tag = "marketplace", params(("id" = i64, Path)),
    responses((status = 200, body = MarketplaceModel), (status = "4XX", body = ErrorBody)))]
async fn unpublish(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<Json<MarketplaceModel>> {
    set_published(api, c, id, false).await
}

async fn set_published(api: Api, c: Caller, id: i64, published: bool) -> ApiResult<Json<MarketplaceModel>> {
    let rev = catalog::set_published(&api.app.db, &c.actor, id, published).await?;
    api.app.config_changed(rev).await;
    Ok(Json(catalog::get_marketplace(&api.app.db, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchFilter {
    /// In the name.
    search: Option<String>,
}

/// A cluster as written.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterBody {
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.:/-]+$")]
    name: String,
    /// The gateway's base URL as clients reach it (`https://gw.example.com`).
    #[schema(pattern = r"^https?://")]
    entry_address: String,
}

/// List clusters.
#[utoipa::path(get, path = "/clusters", tag = "clusters", params(SearchFilter, PageQuery),
    responses((status = 200, body = Page<Cluster>), (status = "4XX", body = ErrorBody)))]
async fn list_clusters(
    State(api): State<Api>,
    Query(f): Query<SearchFilter>,
    Query(p): Query<PageQuery>,
) -> ApiResult<Json<Page<Cluster>>> {
    let all = catalog::list_clusters(&api.app.db).await?.into_iter().filter(|c| matches(&f.search, &[&c.name])).collect();
    Ok(Json(Page::of(all, &p)?))
}

/// Create a cluster. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/clusters", tag = "clusters", request_body = ClusterBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried create with the same key returns the first answer")),
    responses((status = 201, body = Cluster), (status = "4XX", body = ErrorBody)))]
async fn create_cluster(State(api): State<Api>, Extension(c): Extension<Caller>, Json(b): Json<ClusterBody>) -> ApiResult<Response> {
    let id = catalog::create_cluster(&api.app.db, &c.actor, &b.name, &b.entry_address).await?;
    created(&format!("/api/v1/clusters/{id}"), catalog::get_cluster(&api.app.db, id).await?)
}

/// Get a cluster.
#[utoipa::path(get, path = "/clusters/{id}", tag = "clusters", params(("id" = i64, Path)),
    responses((status = 200, body = Cluster), (status = "4XX", body = ErrorBody)))]
async fn get_cluster(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Cluster>> {
    Ok(Json(catalog::get_cluster(&api.app.db, id).await?))
}

/// Replace a cluster's name and entry address.
#[utoipa::path(put, path = "/clusters/{id}", tag = "clusters", params(("id" = i64, Path)), request_body = ClusterBody,
    responses((status = 200, body = Cluster), (status = "4XX", body = ErrorBody)))]
async fn replace_cluster(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<ClusterBody>,
) -> ApiResult<Json<Cluster>> {
    let (cluster, rev) = catalog::update_cluster(&api.app.db, &c.actor, id, &b.name, &b.entry_address).await?;
    api.app.config_changed(rev).await;
    Ok(Json(cluster))
}

/// Delete a cluster (409 while it has models).
#[utoipa::path(delete, path = "/clusters/{id}", tag = "clusters", params(("id" = i64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete_cluster(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    catalog::delete_cluster(&api.app.db, &c.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
