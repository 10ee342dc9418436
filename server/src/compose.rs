//! The one composition of what a process serves: `maas serve` (console, admin API and gateway on
//! one listener) and `maas gateway` (the data plane of one cluster). `main` and the tests build
//! their service here, so the tests go through the very front and routers production does.
use crate::gateway::{Front, Gateway};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// `maas serve`: the gateway's front before the console's router (pages, server functions, the
/// admin API), which also holds the gateway's other routes and `metrics` (`/metrics`).
pub fn console(gw: &Arc<Gateway>, state: app::ssr::AppState, local: SocketAddr, metrics: Router) -> Front {
    gw.front(crate::web::router(crate::web::leptos_options(local), state).merge(gw.router()).merge(metrics))
}

/// `maas gateway`: `/v1` for the cluster's models, `metrics`, and `GET /healthz` (the applied
/// configuration revision) for load balancers and orchestrators.
pub fn replica(gw: &Arc<Gateway>, metrics: Router) -> Front {
    let g = gw.clone();
    let healthz = axum::routing::get(move || async move { axum::Json(serde_json::json!({"status": "ok", "revision": g.revision()})) });
    gw.front(gw.router().merge(metrics).route("/healthz", healthz))
}
