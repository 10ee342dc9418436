//! Cross-site request forgery: a state-changing request to the console is served only when it
//! comes from the console's own pages. `SameSite` cookies keep other *sites* out, not other
//! origins of the same site (another port of the same host), so this checks the origin itself:
//!
//! - `Origin` present: it must be the request's own (`scheme://` + the `Host` it was sent to)
//!   or one of the configured `MAAS_ALLOWED_ORIGINS` (a proxy in front that rewrites `Host`);
//! - no `Origin`, but `Sec-Fetch-Site`: it must be `same-origin` (or `none`, typed by the user);
//! - neither: not a browser (curl, scripts), which carries no victim's cookie; served.
//!
//! And server functions take only the two bodies the console sends: form-encoded and JSON, so
//! a JSON body cannot arrive as `text/plain` (which browsers send cross-origin unasked).
//! Safe methods (GET, HEAD, OPTIONS) change nothing and pass.
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, Method, StatusCode};
use std::sync::Arc;

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    CrossOrigin(String),
    CrossSite(String),
    ContentType(String),
}

impl Refusal {
    /// The refusal as the caller reads it: for a server function, the `AppError` it would
    /// have answered with, in its encoding (the console shows it like any other failure); for
    /// anything else, that error as JSON.
    fn into_response_for(self, path: &str) -> Response {
        let (status, msg) = match self {
            Refusal::CrossOrigin(o) => (StatusCode::FORBIDDEN, format!("cross-origin request refused: {o} is not this console's origin")),
            Refusal::CrossSite(s) => (StatusCode::FORBIDDEN, format!("cross-site request refused (Sec-Fetch-Site: {s})")),
            Refusal::ContentType(t) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("server functions take application/x-www-form-urlencoded or application/json, not `{t}`"),
            ),
        };
        let error = app::error::AppError::Transport(msg);
        if is_server_function(path) {
            use server_fn::error::FromServerFnError;
            let answer = error.ser();
            (status, [(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response()
        } else {
            (status, [(header::CONTENT_TYPE, "application/json")], serde_json::to_string(&error).unwrap_or_default()).into_response()
        }
    }
}

/// Server functions live under `/api/`; the admin API (`/api/v1`) is not one of them.
fn is_server_function(path: &str) -> bool {
    path.starts_with("/api/") && !path.starts_with("/api/v1/")
}

/// The decision, on the request's method, path and headers alone.
pub fn check(method: &Method, path: &str, headers: &http::HeaderMap, allowed: &[String]) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: header::HeaderName| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(origin) = text(header::ORIGIN) {
        if !same_origin(&origin, text(header::HOST).as_deref()) && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&origin)) {
            return Err(Refusal::CrossOrigin(origin));
        }
    } else if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            return Err(Refusal::CrossSite(site));
        }
    }
    // Server functions; the admin API (`/api/v1`) takes JSON through its own extractor, which
    // refuses any other body type (and a DELETE has no body at all).
    if is_server_function(path) {
        let ct = text(header::CONTENT_TYPE).unwrap_or_default();
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/x-www-form-urlencoded" && mime != "application/json" {
            return Err(Refusal::ContentType(ct));
        }
    }
    Ok(())
}

/// `Origin` is `scheme://host[:port]`; the request is same-origin when that authority is the
/// `Host` the browser sent it to. ("null", sent by sandboxed frames and some redirects, never is.)
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

pub async fn layer(State(allowed): State<Arc<[String]>>, req: Request, next: Next) -> Response {
    match check(req.method(), req.uri().path(), req.headers(), &allowed) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            tracing::warn!(method = %req.method(), path = req.uri().path(), ?refusal, "refused a state-changing request from another origin");
            refusal.into_response_for(req.uri().path())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn origins() {
        let post = Method::POST;
        let none: &[String] = &[];
        assert_eq!(check(&post, "/api/x", &h(&[("origin", "http://c.example:3000"), ("host", "c.example:3000"), FORM]), none), Ok(()));
        // Another port of the same host is another origin.
        assert!(matches!(
            check(&post, "/api/x", &h(&[("origin", "http://c.example:8080"), ("host", "c.example:3000"), FORM]), none),
            Err(Refusal::CrossOrigin(_))
        ));
        assert!(matches!(
            check(&post, "/api/x", &h(&[("origin", "null"), ("host", "c.example:3000"), FORM]), none),
            Err(Refusal::CrossOrigin(_))
        ));
        // Behind a proxy that rewrites Host: the configured public origin.
        let public = ["https://console.example.com".to_owned()];
        assert_eq!(
            check(&post, "/api/x", &h(&[("origin", "https://console.example.com"), ("host", "10.0.0.5:3000"), FORM]), &public),
            Ok(())
        );
        // No Origin: Sec-Fetch-Site decides; neither: not a browser.
        assert!(matches!(check(&post, "/api/x", &h(&[("sec-fetch-site", "same-site"), FORM]), none), Err(Refusal::CrossSite(_))));
        assert_eq!(check(&post, "/api/x", &h(&[("sec-fetch-site", "same-origin"), FORM]), none), Ok(()));
        assert_eq!(check(&post, "/api/x", &h(&[FORM]), none), Ok(()));
        // Safe methods pass whatever their origin.
        assert_eq!(check(&Method::GET, "/models", &h(&[("origin", "http://evil.example")]), none), Ok(()));
    }

    #[test]
    fn server_functions_take_form_or_json_only() {
        let post = Method::POST;
        assert!(matches!(check(&post, "/api/models/save", &h(&[("content-type", "text/plain")]), &[]), Err(Refusal::ContentType(_))));
        assert!(matches!(check(&post, "/api/models/save", &h(&[]), &[]), Err(Refusal::ContentType(_))));
        assert_eq!(check(&post, "/api/models/save", &h(&[("content-type", "application/json; charset=utf-8")]), &[]), Ok(()));
    }
}
