//! Platform settings: where budget alerts are sent.
use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};
use super::extract::Json;
use super::Api;
use app::ssr::services::alerts;
use axum::extract::State;
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(get_alert_webhook, set_alert_webhook))
}

/// The webhook budget alerts are sent to. Its secret is never shown.
#[derive(Serialize, ToSchema)]
pub struct AlertWebhook {
    /// `null`: none set; alerts are still recorded, in the audit log and on the console.
    url: Option<String>,
}

/// Sets the webhook budget alerts are sent to (`url` empty or null: none). Each delivery is a
/// JSON POST signed with `secret`: `x-maas-signature: sha256=<hex HMAC-SHA256 of
/// "<x-maas-timestamp>.<body>">`, retried with backoff until the webhook answers 2xx.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertWebhookBody {
    #[serde(default)]
    #[schema(max_length = 1000, example = "https://alerts.example.com/maas")]
    url: Option<String>,
    /// At least 16 characters; omitted or empty keeps the one stored.
    #[serde(default)]
    #[schema(min_length = 16, max_length = 256)]
    secret: Option<String>,
}

/// The budget alerts' webhook.
#[utoipa::path(get, path = "/settings/alert-webhook", tag = "settings",
    responses((status = 200, body = AlertWebhook), (status = "4XX", body = ErrorBody)))]
async fn get_alert_webhook(State(api): State<Api>, Extension(_c): Extension<Caller>) -> ApiResult<Json<AlertWebhook>> {
    Ok(Json(AlertWebhook { url: alerts::webhook_url(&api.app.db).await? }))
}

/// Set or remove the budget alerts' webhook.
#[utoipa::path(put, path = "/settings/alert-webhook", tag = "settings", request_body = AlertWebhookBody,
    responses((status = 200, body = AlertWebhook), (status = "4XX", body = ErrorBody)))]
async fn set_alert_webhook(
    State(api): State<Api>,
    Extension(c): Extension<Caller>,
    Json(b): Json<AlertWebhookBody>,
) -> ApiResult<Json<AlertWebhook>> {
    let (url, secret) = (b.url.unwrap_or_default(), b.secret.unwrap_or_default());
    let rev = alerts::set_webhook(&api.app.db, &c.actor, &c.who, &api.app.secrets, &url, &secret).await?;
    api.app.config_changed(rev).await;
    Ok(Json(AlertWebhook { url: alerts::webhook_url(&api.app.db).await? }))
}
