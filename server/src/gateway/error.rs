//! OpenAI-shaped errors, the gateway's one error type, mapped to a response once.
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub enum GatewayError {
    InvalidApiKey,
    ModelNotFound(String),
    BadRequest(String),
    BodyTooLarge(usize),
    RateLimited(super::limiter::Rejection),
    /// No upstream could be reached (connection refused, DNS…).
    UpstreamUnavailable,
    /// Upstreams were reached but did not answer in time.
    UpstreamTimeout,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, kind, code, message, headers) = match self {
            GatewayError::InvalidApiKey => (
                StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key",
                "Incorrect API key provided. Pass a platform key as `Authorization: Bearer <key>`.".to_string(), HeaderMap::new(),
            ),
            GatewayError::ModelNotFound(m) => (
                StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found",
                format!("The model `{m}` does not exist or you do not have access to it."), HeaderMap::new(),
            ),
            GatewayError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", m, HeaderMap::new()),
            GatewayError::BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "request_too_large",
                format!("Request body is larger than the limit of {limit} bytes."), HeaderMap::new(),
            ),
            GatewayError::RateLimited(r) => {
                let mut h = HeaderMap::new();
                let set = |h: &mut HeaderMap, k: &'static str, v: String| {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.insert(k, v);
                    }
                };
                set(&mut h, "retry-after", r.retry_after_secs.to_string());
                set(&mut h, "x-ratelimit-limit-requests", r.limit.to_string());
                set(&mut h, "x-ratelimit-remaining-requests", "0".into());
                h.insert("x-ratelimit-reset-requests", reset_header(r.wait_ms));
                set(&mut h, "x-maas-ratelimit-rule", r.rule.clone());
                (
                    StatusCode::TOO_MANY_REQUESTS, "requests", "rate_limit_exceeded",
                    format!("Rate limit reached ({}): {} requests per {} s. Retry after {} s.", r.rule, r.limit, r.duration_secs, r.retry_after_secs),
                    h,
                )
            }
            GatewayError::UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY, "api_error", "upstream_unavailable",
                "No upstream endpoint of this model could be reached.".to_string(), HeaderMap::new(),
            ),
            GatewayError::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT, "api_error", "upstream_timeout",
                "The upstream endpoints did not answer in time.".to_string(), HeaderMap::new(),
            ),
        };
        let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut().extend(headers);
        res
    }
}

/// `x-ratelimit-reset-requests` as OpenAI writes it (Go's duration format: `20ms`, `1.5s`,
/// `6m0s`, `1h2m3s`), which client libraries parse to pace themselves.
pub fn reset_header(ms: u64) -> HeaderValue {
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0')) };
    let text = match (h, m) {
        (0, 0) if s == 0 => format!("{ms}ms"),
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    };
    HeaderValue::from_str(&text).expect("digits and unit letters")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reset_is_written_as_openai_writes_durations() {
        for (ms, want) in [(0, "0ms"), (20, "20ms"), (999, "999ms"), (1000, "1s"), (1500, "1.5s"), (59_001, "59.001s"), (60_000, "1m0s"), (360_000, "6m0s"), (3_723_000, "1h2m3s"), (86_400_000, "24h0m0s")] {
            assert_eq!(super::reset_header(ms), want, "{ms} ms");
        }
    }
}
