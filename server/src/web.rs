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

pub fn router(leptos: LeptosOptions, app: AppState) -> Router {
    let routes = generate_route_list(App);
    let state = WebState { leptos: leptos.clone(), app: app.clone() };
    let ctx = {
        let app = app.clone();
        move || provide_context(app.clone())
    };
    let pkg = ServeDir::new(PathBuf::from(leptos.site_root.as_ref()).join("pkg"));
    let middleware = tower::ServiceBuilder::new()
        .catch_panic()
        // Session cookies and bearer keys never reach the trace log.
        .sensitive_headers([http::header::COOKIE, http::header::SET_COOKIE, http::header::AUTHORIZATION])
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .compression();
    Router::new()
        .nest_service("/pkg", pkg)
        .leptos_routes_with_context(&state, routes, ctx.clone(), {
            let leptos = leptos.clone();
            move || shell(leptos.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<WebState, _>(ctx, shell))
        .layer(middleware)
        .with_state(state)
}
