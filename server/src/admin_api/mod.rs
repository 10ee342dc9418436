//! The admin REST API, `/api/v1`: everything an operator does in the console, for scripts,
//! CI and Terraform. JSON in and out, on the same service functions (and so the same
//! validation and the same audit rows) as the console's server functions.
//!
//! Routes and their OpenAPI 3.1 description are registered together (utoipa-axum's
//! `routes!`), so `GET /api/v1/openapi.json` cannot drift from what is served; `/api/docs`
//! is an interactive reference (Swagger UI, served from the site's own files: no CDN).
mod auth;
mod catalog;
mod error;
mod extract;
mod idempotency;
mod keys;
mod models;
mod page;
mod reads;
mod settings;
mod workspaces;

use app::ssr::AppState;
pub use auth::Limits;
use axum::response::{IntoResponse, Response};
use axum::Router;
use error::ApiResult;
use http::{header, HeaderValue, StatusCode};
use std::sync::Arc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

/// The handlers' state.
#[derive(Clone)]
pub struct Api {
    pub app: AppState,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "MaaS admin API", version = "1", description = "Provision marketplace models, clusters, workspaces, users, API keys and MaaS models; read gateway status, usage and the audit log. Authenticate with an admin token (console → Admin tokens) as `Authorization: Bearer maas-admin-…`. Errors: `{\"error\": {\"message\", \"fields\"}}` with 400 malformed, 401 no or bad token, 403 wrong role or read-only token, 404, 409 conflict, 412 stale `If-Match`, 422 invalid fields, 429 over the token's rate."),
    modifiers(&BearerAuth),
    security(("admin_token" = [])),
    tags(
        (name = "marketplace", description = "What models are offered"),
        (name = "clusters", description = "Where gateways serve them"),
        (name = "models", description = "MaaS models: endpoints, balancing, rules"),
        (name = "workspaces"), (name = "users"), (name = "api-keys"),
        (name = "status", description = "Gateways and their applied revision"),
        (name = "usage"), (name = "audit"),
        (name = "settings", description = "Where budget alerts are sent"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme("admin_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(catalog::router())
        .merge(workspaces::router())
        .merge(keys::router())
        .merge(models::router())
        .merge(reads::router())
        .merge(settings::router())
}

/// The OpenAPI document, as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes().split_for_parts();
    doc.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    doc
}

/// `/api/v1` (to nest) and the docs routes (to merge at the root).
pub fn router<S: Clone + Send + Sync + 'static>(app: AppState, limits: Limits) -> (Router<S>, Router<S>) {
    let guard = auth::Guard::new(app.clone(), limits);
    let (api, _) = routes().split_for_parts();
    let doc = Arc::new(openapi().to_json().expect("the OpenAPI document serializes"));
    let api = api
        // One bound for every body, so that an oversized one is 413 whichever layer reads it.
        .layer(axum::extract::DefaultBodyLimit::max(idempotency::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(guard.clone(), idempotency::layer))
        .layer(axum::middleware::from_fn_with_state(guard, auth::layer))
        .with_state(Api { app })
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()) }),
        )
        .fallback(|| async {
            error::ApiError::new(StatusCode::NOT_FOUND, "no such admin API route: see /api/v1/openapi.json").into_response()
        });
    let docs = Router::new().route("/api/docs", axum::routing::get(docs_page)).route("/api/docs/init.js", axum::routing::get(docs_init));
    (api, docs)
}

/// Created: 201 with `Location` and the entity.
fn created<T: serde::Serialize>(location: &str, body: T) -> ApiResult<Response> {
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_str(location).map_err(|_| error::ApiError::bad_request("bad location"))?);
    Ok(res)
}

/// The interactive reference: Swagger UI from npm's `swagger-ui-dist`, which
/// `scripts/build-site.sh` copies into the site (`/pkg/api-docs/`). Its own CSP: scripts from
/// this origin only (the start script is a file, not inline); Swagger UI styles inline.
async fn docs_page() -> Response {
    let html = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MaaS admin API</title>
<link rel="stylesheet" href="/pkg/api-docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/pkg/api-docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script></body></html>"#;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
        ],
        html,
    )
        .into_response()
}

async fn docs_init() -> Response {
    let js = "window.ui = SwaggerUIBundle({ url: '/api/v1/openapi.json', dom_id: '#swagger-ui', deepLinking: true, persistAuthorization: false });\n";
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], js).into_response()
}
