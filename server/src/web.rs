//! The axum router: console pages, server functions and static assets behind one middleware
//! stack. `router(state)` is what `maas serve` listens with and what tests drive with `oneshot`.
use app::ssr::AppState;
use app::{shell, App};
use axum::extract::FromRef;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::path::PathBuf;
use tower_http::services::ServeDir;
use tower_http::ServiceBuilderExt;

/// Router state: what leptos_axum needs plus ours.
#[derive(Clone)]
pub struct WebState {
    pub leptos: LeptosOptions,
    pub app: AppState,
}

impl FromRef<WebState> for LeptosOptions {
    fn from_ref(s: &WebState) -> Self {
        s.leptos.clone()
    }
}

/// Where the built site lives (`pkg/maas.js`, `pkg/maas_bg.wasm`, `pkg/maas.css`).
pub fn site_root() -> PathBuf {
    std::env::var_os("MAAS_SITE_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target/site"))
}

pub fn leptos_options(addr: std::net::SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("maas")
        .site_root(site_root().to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

/// The pages' Content-Security-Policy: scripts only by this response's nonce (and what they
/// import: the WASM bundle's JS), WASM compiled from our own origin, nothing framed or posted
/// elsewhere.
fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic' 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Pages and server-function answers are per user (a new key's secret among them): no cache
/// keeps them. The built assets under /pkg are the same for everyone.
async fn no_store_unless_asset(uri: http::Uri, mut res: axum::response::Response) -> axum::response::Response {
    if !uri.path().starts_with("/pkg/") {
        res.headers_mut().entry(http::header::CACHE_CONTROL).or_insert(http::HeaderValue::from_static("no-store"));
    }
    res
}

pub fn router(leptos: LeptosOptions, app: AppState) -> Router {
    router_with(leptos, app, crate::admin_api::Limits::from_env())
}

/// [`router`] with the admin API's rate limit given (tests set a small one).
pub fn router_with(leptos: LeptosOptions, app: AppState, limits: crate::admin_api::Limits) -> Router {
    let (admin_api, api_docs) = crate::admin_api::router(app.clone(), limits);
    let routes = generate_route_list(App);
    let state = WebState { leptos: leptos.clone(), app: app.clone() };
    let ctx = {
        let app = app.clone();
        move || {
            provide_context(app.clone());
            // Pages: the nonce leptos_axum generated for this response's inline scripts (the
            // hydration script and the resources' data) is the only way a script runs.
            if let (Some(nonce), Some(opts)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>()) {
                if let Ok(v) = http::HeaderValue::from_str(&page_csp(&nonce)) {
                    opts.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
                }
            }
        }
    };
    let pkg = ServeDir::new(PathBuf::from(leptos.site_root.as_ref()).join("pkg"));
    use http::{header, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer;
    let hsts = app.secure_cookies.then(|| HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    let middleware = tower::ServiceBuilder::new()
        .catch_panic()
        // Session cookies and bearer keys never reach the trace log.
        .sensitive_headers([header::COOKIE, header::SET_COOKIE, header::AUTHORIZATION])
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .compression()
        .layer(axum::middleware::from_fn_with_state(app.allowed_origins.clone(), crate::csrf::layer))
        // Every console response: not framed, not sniffed, no referrer to other origins; and
        // (pages set their own, with their nonce) a CSP that runs nothing.
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::STRICT_TRANSPORT_SECURITY, move |_: &http::Response<_>| hsts.clone()))
        .layer(axum::middleware::map_response(no_store_unless_asset));
    Router::new()
        .nest_service("/pkg", pkg)
        .route("/usage/export.csv", axum::routing::get(export_usage_csv))
        .route("/audit/export.csv", axum::routing::get(export_audit_csv))
        .nest("/api/v1", admin_api)
        .merge(api_docs)
        .leptos_routes_with_context(&state, routes, ctx.clone(), {
            let leptos = leptos.clone();
            move || shell(leptos.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<WebState, _>(ctx, shell))
        .layer(middleware)
        .with_state(state)
}

#[derive(serde::Deserialize)]
struct ExportQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// The billing export (`/usage/export.csv?from=YYYY-MM-DD&to=YYYY-MM-DD`, UTC days, inclusive):
/// a file download for operators, behind the same guard as the server functions.
async fn export_usage_csv(
    axum::extract::State(st): axum::extract::State<WebState>,
    headers: http::HeaderMap,
    q: axum::extract::Query<ExportQuery>,
) -> axum::response::Response {
    use app::error::AppError;
    use app::ssr::auth::{guard, Need};
    use axum::response::IntoResponse;
    let text = |status: u16, msg: String| {
        (
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST),
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            msg,
        )
            .into_response()
    };
    if let Err(e) = guard(&st.app, &headers, Need::Operator).await {
        let e = e.into_app();
        return text(e.status(), format!("{e}\n"));
    }
    match app::ssr::services::usage::export_csv(&st.app.db, &q.from, &q.to).await {
        Ok(csv) => {
            let name = format!("attachment; filename=\"maas-usage-{}-{}.csv\"", q.from.trim(), q.to.trim());
            let disposition =
                http::HeaderValue::from_str(&name).unwrap_or(http::HeaderValue::from_static("attachment; filename=\"maas-usage.csv\""));
            (
                [
                    (http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/csv; charset=utf-8")),
                    (http::header::CONTENT_DISPOSITION, disposition),
                ],
                csv,
            )
                .into_response()
        }
        Err(e) => match e.into_app() {
            AppError::Invalid(f) => text(400, f.0.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()),
            e => text(e.status(), format!("{e}\n")),
        },
    }
}

#[derive(serde::Deserialize)]
struct AuditExportQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    entity: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// The audit log's CSV export (`/audit/export.csv?actor=&entity=&from=&to=`, the Audit page's
/// filter): a file download for operators.
async fn export_audit_csv(
    axum::extract::State(st): axum::extract::State<WebState>,
    headers: http::HeaderMap,
    q: axum::extract::Query<AuditExportQuery>,
) -> axum::response::Response {
    use app::error::AppError;
    use app::ssr::auth::{guard, Need};
    use axum::response::IntoResponse;
    let text = |status: u16, msg: String| {
        (
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST),
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            msg,
        )
            .into_response()
    };
    if let Err(e) = guard(&st.app, &headers, Need::Operator).await {
        let e = e.into_app();
        return text(e.status(), format!("{e}\n"));
    }
    let f = app::types::AuditFilter { actor: q.0.actor, entity: q.0.entity, entity_id: None, from: q.0.from, to: q.0.to };
    match app::ssr::services::audit_log::export_csv(&st.app.db, &f).await {
        Ok(csv) => (
            [
                (http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (http::header::CONTENT_DISPOSITION, "attachment; filename=\"maas-audit.csv\""),
            ],
            csv,
        )
            .into_response(),
        Err(e) => match e.into_app() {
            AppError::Invalid(f) => text(400, f.0.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()),
            e => text(e.status(), format!("{e}\n")),
        },
    }
}
