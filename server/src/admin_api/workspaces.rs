//! Workspaces, their members and quotas, and user accounts.
use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};
use super::extract::{Json, Path, Query};
use super::page::{matches, Page, PageQuery};
use super::{created, Api};
use app::ssr::auth;
use app::ssr::services::{quotas, workspaces};
use app::types::{Period, QuotaInput, Role, UserSummary, Workspace};
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
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, rename_workspace, delete_workspace))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(set_workspace_quota))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, delete_user))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkspaceFilter {
    /// In the name or a member's username.
    search: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceBody {
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.:/-]+$")]
    name: String,
}

/// List workspaces with their members and quota.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces", params(WorkspaceFilter, PageQuery),
    responses((status = 200, body = Page<Workspace>), (status = "4XX", body = ErrorBody)))]
async fn list_workspaces(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Query(f): Query<WorkspaceFilter>,
    Query(p): Query<PageQuery>,
) -> ApiResult<Json<Page<Workspace>>> {
    let all = workspaces::list(&api.app.db, &c.who).await?;
    let all = all.into_iter().filter(|w| matches(&f.search, &[&w.name, &w.members.join(" ")])).collect();
    Ok(Json(Page::of(all, &p)?))
}

/// Create a workspace. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", request_body = WorkspaceBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried create with the same key returns the first answer")),
    responses((status = 201, body = Workspace), (status = "4XX", body = ErrorBody)))]
async fn create_workspace(State(api): State<Api>, Extension(c): Extension<Caller>, Json(b): Json<WorkspaceBody>) -> ApiResult<Response> {
    let id = workspaces::create(&api.app.db, &c.actor, &b.name).await?;
    created(&format!("/api/v1/workspaces/{id}"), workspaces::get(&api.app.db, &c.who, id).await?)
}

/// Get a workspace.
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces", params(("id" = i64, Path)),
    responses((status = 200, body = Workspace), (status = "4XX", body = ErrorBody)))]
async fn get_workspace(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<Json<Workspace>> {
    Ok(Json(workspaces::get(&api.app.db, &c.who, id).await?))
}

/// Rename a workspace.
#[utoipa::path(patch, path = "/workspaces/{id}", tag = "workspaces", params(("id" = i64, Path)), request_body = WorkspaceBody,
    responses((status = 200, body = Workspace), (status = "4XX", body = ErrorBody)))]
async fn rename_workspace(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<WorkspaceBody>,
) -> ApiResult<Json<Workspace>> {
    workspaces::rename(&api.app.db, &c.actor, id, &b.name).await?;
    Ok(Json(workspaces::get(&api.app.db, &c.who, id).await?))
}

/// Delete a workspace with its API keys, quota and the rules that name it.
#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces", params(("id" = i64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete_workspace(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let rev = workspaces::delete(&api.app.db, &c.actor, id).await?;
    api.app.config_changed(rev).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    username: String,
}

/// Add a user to a workspace.
#[utoipa::path(post, path = "/workspaces/{id}/members", tag = "workspaces", params(("id" = i64, Path)), request_body = MemberBody,
    responses((status = 200, body = Workspace), (status = "4XX", body = ErrorBody)))]
async fn add_member(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<MemberBody>,
) -> ApiResult<Json<Workspace>> {
    workspaces::add_member(&api.app.db, &c.actor, id, &b.username).await?;
    Ok(Json(workspaces::get(&api.app.db, &c.who, id).await?))
}

/// Remove a user from a workspace.
#[utoipa::path(delete, path = "/workspaces/{id}/members/{username}", tag = "workspaces", params(("id" = i64, Path), ("username" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn remove_member(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path((id, username)): Path<(i64, String)>,
) -> ApiResult<StatusCode> {
    workspaces::remove_member(&api.app.db, &c.actor, id, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A quota: a budget of tokens, requests and/or money per UTC day or month. Every budget
/// null removes the quota.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    period: Period,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000_000i64)]
    tokens: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000i64)]
    requests: Option<i64>,
    /// A budget in money: a decimal string of the installation's currency (exact; at most
    /// nine decimals), e.g. `"25.50"`.
    #[serde(default)]
    #[schema(example = "25.50")]
    spend: Option<String>,
    /// What the money budget does with calls to a model without a price in force: `refuse`
    /// (the default) or `pass` (let them through, uncounted).
    #[serde(default)]
    unpriced: Option<String>,
    /// Percents of the money budget at which an alert is raised once per period (the console,
    /// the audit log and the alert webhook), e.g. `[50, 80, 100]`.
    #[serde(default)]
    alerts: Vec<u16>,
}

impl QuotaBody {
    pub fn input(&self) -> QuotaInput {
        let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        QuotaInput {
            period: self.period,
            tokens: n(self.tokens),
            requests: n(self.requests),
            spend: self.spend.clone().unwrap_or_default(),
            unpriced: self.unpriced.clone().unwrap_or_default(),
            alerts: self.alerts.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
        }
    }
}

/// Set or remove a workspace's quota.
#[utoipa::path(put, path = "/workspaces/{id}/quota", tag = "workspaces", params(("id" = i64, Path)), request_body = QuotaBody,
    responses((status = 200, body = Workspace), (status = "4XX", body = ErrorBody)))]
async fn set_workspace_quota(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    Json(b): Json<QuotaBody>,
) -> ApiResult<Json<Workspace>> {
    let rev = quotas::set_workspace(&api.app.db, &c.actor, &c.who, id, &b.input()).await?;
    api.app.config_changed(rev).await;
    Ok(Json(workspaces::get(&api.app.db, &c.who, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// In the username.
    search: Option<String>,
    role: Option<Role>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.:/-]+$")]
    username: String,
    /// 8 to 256 characters; stored as an Argon2id hash, never returned.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    role: Role,
}

/// List user accounts.
#[utoipa::path(get, path = "/users", tag = "users", params(UserFilter, PageQuery),
    responses((status = 200, body = Page<UserSummary>), (status = "4XX", body = ErrorBody)))]
async fn list_users(State(api): State<Api>, Query(f): Query<UserFilter>, Query(p): Query<PageQuery>) -> ApiResult<Json<Page<UserSummary>>> {
    let all = workspaces::list_users(&api.app.db).await?;
    let all = all.into_iter().filter(|u| f.role.is_none_or(|r| u.role == r) && matches(&f.search, &[&u.username])).collect();
    Ok(Json(Page::of(all, &p)?))
}

/// Create a user account. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/users", tag = "users", request_body = UserBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried create with the same key returns the first answer")),
    responses((status = 201, body = UserSummary), (status = "4XX", body = ErrorBody)))]
async fn create_user(State(api): State<Api>, Extension(c): Extension<Caller>, Json(b): Json<UserBody>) -> ApiResult<Response> {
    let id = auth::create_user(&api.app.db, &c.actor, &b.username, &b.password, b.role).await?;
    created(&format!("/api/v1/users/{id}"), workspaces::get_user(&api.app.db, id).await?)
}

/// Get a user account.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = UserSummary), (status = "4XX", body = ErrorBody)))]
async fn get_user(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<UserSummary>> {
    Ok(Json(workspaces::get_user(&api.app.db, id).await?))
}

/// Delete a user account with its sessions, memberships and admin tokens (409 for your own
/// account and for the last operator).
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn delete_user(State(api): State<Api>, Extension(c): Extension<Caller>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    workspaces::delete_user(&api.app.db, &c.actor, &c.who, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
