//! What the admin API reads without changing: the gateways' status, the usage rollups, the
//! audit log and the API's own access log.
use super::error::{ApiResult, ErrorBody};
use super::extract::{Json, Query};
use super::page::{Page, PageQuery, MAX_PER_PAGE};
use super::Api;
use app::ssr::entities::gateway_status;
use app::ssr::services::{audit_log, usage};
use app::types::{AccessEntry, AuditEntry, AuditFilter, DailyUsage};
use axum::extract::State;
use sea_orm::{EntityTrait, QueryOrder};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_gateways))
        .routes(routes!(daily_usage))
        .routes(routes!(list_audit))
        .routes(routes!(list_access))
}

/// A gateway (the embedded one, or a `maas gateway` replica) as it last reported.
#[derive(Serialize, ToSchema)]
pub struct GatewayInfo {
    gateway_id: String,
    /// The clusters it serves.
    serves: Vec<String>,
    applied_revision: i64,
    /// Its last reload error, if the configuration could not be applied.
    error: Option<String>,
    /// Unix second of its last report.
    heartbeat_at: i64,
    /// Reported within the last 30 seconds.
    live: bool,
}

/// List the gateways and the configuration revision each applied.
#[utoipa::path(get, path = "/gateways", tag = "status", params(PageQuery),
    responses((status = 200, body = Page<GatewayInfo>), (status = "4XX", body = ErrorBody)))]
async fn list_gateways(State(api): State<Api>, Query(p): Query<PageQuery>) -> ApiResult<Json<Page<GatewayInfo>>> {
    let rows = gateway_status::Entity::find()
        .order_by_asc(gateway_status::Column::GatewayId)
        .all(&api.app.db)
        .await
        .map_err(app::ssr::ServiceError::from)?;
    let now = app::ssr::now();
    let all = rows
        .into_iter()
        .map(|g| GatewayInfo {
            serves: g
                .serves
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .or(g.cluster.clone().map(|c| vec![c]))
                .unwrap_or_default(),
            live: now - g.heartbeat_at <= 30,
            gateway_id: g.gateway_id,
            applied_revision: g.applied_revision,
            error: g.error,
            heartbeat_at: g.heartbeat_at,
        })
        .collect();
    Ok(Json(Page::of(all, &p)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DayRange {
    /// First UTC day, `YYYY-MM-DD`.
    from: String,
    /// Last UTC day (inclusive), at most 92 days after `from`.
    to: String,
}

/// Usage per UTC day × workspace × API key × model: the billing export's rows.
#[utoipa::path(get, path = "/usage/daily", tag = "usage", params(DayRange, PageQuery),
    responses((status = 200, body = Page<DailyUsage>), (status = "4XX", body = ErrorBody)))]
async fn daily_usage(State(api): State<Api>, Query(r): Query<DayRange>, Query(p): Query<PageQuery>) -> ApiResult<Json<Page<DailyUsage>>> {
    Ok(Json(Page::of(usage::daily(&api.app.db, &r.from, &r.to).await?, &p)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The actor's name as the log shows it (`admin`, `token:ci`).
    actor: Option<String>,
    /// `marketplace_model`, `cluster`, `workspace`, `user`, `api_key`, `model` or `admin_token`.
    entity: Option<String>,
    entity_id: Option<i64>,
    /// First UTC day, `YYYY-MM-DD`.
    from: Option<String>,
    /// Last UTC day (inclusive).
    to: Option<String>,
}

impl AuditQuery {
    pub fn filter(self) -> AuditFilter {
        AuditFilter {
            actor: self.actor.unwrap_or_default(),
            entity: self.entity.unwrap_or_default(),
            entity_id: self.entity_id,
            from: self.from.unwrap_or_default(),
            to: self.to.unwrap_or_default(),
        }
    }
}

/// The audit log, newest first: who changed what, when, and the fields that moved.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery, PageQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = "4XX", body = ErrorBody)))]
async fn list_audit(State(api): State<Api>, Query(q): Query<AuditQuery>, Query(p): Query<PageQuery>) -> ApiResult<Json<Page<AuditEntry>>> {
    let (page, per_page) = p.bounds(MAX_PER_PAGE)?;
    let r = audit_log::list(&api.app.db, &q.filter(), page, per_page).await?;
    Ok(Json(Page { items: r.items, total: r.total, page: page + 1, per_page }))
}

/// The admin API's write calls, newest first, refused ones included, with their status.
#[utoipa::path(get, path = "/audit/access", tag = "audit", params(PageQuery),
    responses((status = 200, body = Page<AccessEntry>), (status = "4XX", body = ErrorBody)))]
async fn list_access(State(api): State<Api>, Query(p): Query<PageQuery>) -> ApiResult<Json<Page<AccessEntry>>> {
    let (page, per_page) = p.bounds(MAX_PER_PAGE)?;
    let (items, total) = audit_log::access(&api.app.db, page, per_page).await?;
    Ok(Json(Page { items, total, page: page + 1, per_page }))
}
