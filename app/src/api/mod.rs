//! Server functions, one file per domain. Each one goes through `edge::run`, which finds the
//! caller, applies the role guard, and maps the service result to `AppError` + HTTP status.
//!
//! They answer in postcard (`output = Postcard`), not JSON: they are the console's own calls
//! (automation has the admin API), and reading JSON in the browser costs the WASM bundle
//! serde_json's parser plus a name-matching deserializer for every type that crosses
//! (measured: 32 KB of the gzipped bundle). Arguments stay form-encoded (what `ActionForm`
//! posts, and a page without WASM can too) or JSON (the model form's nested input).
pub mod account;
pub mod admin;
pub mod catalog;
pub mod keys;
pub mod models;
pub mod playground;
pub mod usage;
pub mod workspaces;

#[cfg(feature = "ssr")]
pub mod edge {
    use crate::error::AppError;
    use crate::ssr::auth::{guard, Need};
    use crate::ssr::{AppState, SResult};
    use crate::types::CurrentUser;
    use leptos::prelude::*;
    use std::future::Future;

    pub fn state() -> Result<AppState, AppError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from server-function context");
            AppError::Internal
        })
    }

    pub fn headers() -> http::HeaderMap {
        use_context::<http::request::Parts>().map(|p| p.headers).unwrap_or_default()
    }

    /// The client's address: the socket's peer, or with `client_ip_header` set (a proxy in
    /// front), the last entry of that header, which is what the proxy itself saw.
    pub fn client_ip(st: &AppState) -> Option<std::net::IpAddr> {
        let parts = use_context::<http::request::Parts>()?;
        match &st.client_ip_header {
            Some(h) => parts.headers.get_all(h).iter().next_back()?.to_str().ok()?.rsplit(',').next()?.trim().parse().ok(),
            None => parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()),
        }
    }

    /// Sets the response status for an error (and `Retry-After` for a 429); the one place
    /// statuses are chosen.
    pub fn fail<T>(e: AppError) -> Result<T, AppError> {
        if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
            opts.set_status(http::StatusCode::from_u16(e.status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR));
            if let AppError::RateLimited { retry_after_secs, .. } = &e {
                opts.insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(*retry_after_secs));
            }
        }
        Err(e)
    }

    pub async fn run<T, F, Fut>(need: Need, f: F) -> Result<T, AppError>
    where
        F: FnOnce(AppState, CurrentUser) -> Fut,
        Fut: Future<Output = SResult<T>>,
    {
        let st = state()?;
        let who = match guard(&st, &headers(), need).await {
            Ok(u) => u,
            Err(e) => return fail(e.into_app()),
        };
        match f(st, who).await {
            Ok(v) => Ok(v),
            Err(e) => fail(e.into_app()),
        }
    }
}
