//! OpenAI-shaped errors, the gateway's one error type, mapped to a response once.
use super::admission::quota::Budget;
use app::types::{RuleKind, RuleTarget};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

// Parsed once, not on every response (a `&'static str` name is validated and hashed each time).
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
pub const RATELIMIT_LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
pub const RATELIMIT_REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
pub const RATELIMIT_RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const RATELIMIT_RULE: HeaderName = HeaderName::from_static("x-maas-ratelimit-rule");
/// The wait in milliseconds, which the official OpenAI SDKs (Python and Node) prefer to
/// `Retry-After`'s whole seconds when they retry a 429 themselves: a slot freeing in 80 ms is
/// retried after 80 ms, not after a second.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

impl From<super::admission::Refusal> for GatewayError {
    fn from(r: super::admission::Refusal) -> Self {
        match r {
            super::admission::Refusal::Rate(r) => GatewayError::RateLimited(r),
            super::admission::Refusal::Quota(q) => GatewayError::QuotaExceeded(q),
        }
    }
}

#[derive(Debug)]
pub enum GatewayError {
    InvalidApiKey,
    /// The key's expiry (Unix second) has passed.
    KeyExpired(i64),
    /// The key is scoped to other models than this one.
    ModelNotAllowed(String),
    /// The model has no price in force and a budget in money of the caller's refuses such calls.
    Unpriced(String),
    ModelNotFound(String),
    /// No operation at this path (method and path, as OpenAI words it).
    UnknownPath(String),
    BadRequest(String),
    /// No endpoint of the model takes the operation: none speaks its API, nor chat completions
    /// it translates to (`api`: the API's label).
    OperationNotServed {
        model: String,
        api: &'static str,
    },
    /// The model is of another kind than the operation's (a chat call to a rerank model).
    WrongKind {
        model: String,
        kind: app::types::ModelKind,
        path: &'static str,
    },
    BodyTooLarge(usize),
    RateLimited(super::admission::limiter::Rejection),
    /// Every endpoint of the model is at its cap on calls at once, and no slot freed in time (or
    /// too many calls wait already).
    EndpointsBusy {
        model: String,
        why: super::slots::NoSlot,
    },
    /// A workspace's or key's quota for the period is spent.
    QuotaExceeded(super::admission::quota::QuotaExceeded),
    /// No upstream could be reached (connection refused, DNS…).
    UpstreamUnavailable,
    /// Upstreams were reached but did not answer in time.
    UpstreamTimeout,
    /// The gateway itself failed the call (it could not spool an upload): the message is the
    /// caller's, the cause is in the log.
    Internal(String),
}

impl GatewayError {
    /// How the usage meter files this refusal.
    pub fn outcome(&self) -> super::record::Outcome {
        use super::record::Outcome;
        match self {
            GatewayError::InvalidApiKey | GatewayError::KeyExpired(_) => Outcome::Unauthenticated,
            GatewayError::ModelNotAllowed(_) | GatewayError::Unpriced(_) => Outcome::Forbidden,
            GatewayError::ModelNotFound(_) | GatewayError::UnknownPath(_) => Outcome::NotFound,
            GatewayError::BadRequest(_)
            | GatewayError::BodyTooLarge(_)
            | GatewayError::OperationNotServed { .. }
            | GatewayError::WrongKind { .. } => Outcome::BadRequest,
            GatewayError::RateLimited(_) | GatewayError::QuotaExceeded(_) | GatewayError::EndpointsBusy { .. } => Outcome::RateLimited,
            GatewayError::UpstreamUnavailable | GatewayError::UpstreamTimeout | GatewayError::Internal(_) => Outcome::UpstreamError,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.into_response_in(super::op::Dialect::OpenAi)
    }
}

impl GatewayError {
    /// The answer in `dialect`: OpenAI's error shape, or Anthropic's on its own API (same
    /// status and headers).
    pub fn into_response_in(self, dialect: super::op::Dialect) -> Response {
        let (status, kind, code, message, headers) = self.described();
        let mut res = match dialect {
            super::op::Dialect::OpenAi => {
                let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
                (status, axum::Json(body)).into_response()
            }
            super::op::Dialect::Anthropic => (
                status,
                [(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                super::anthropic::error_body(status.as_u16(), &message),
            )
                .into_response(),
        };
        res.headers_mut().extend(headers);
        res
    }

    /// Status, OpenAI's error type and code, the message, and the headers of this error.
    fn described(self) -> (StatusCode, &'static str, &'static str, String, HeaderMap) {
        match self {
            GatewayError::InvalidApiKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided. Pass a platform key as `Authorization: Bearer <key>`.".to_string(),
                HeaderMap::new(),
            ),
            GatewayError::KeyExpired(at) => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "api_key_expired",
                format!(
                    "This API key expired at {} UTC. Ask for a new key, or for this one to be extended, on the console's keys page.",
                    app::days::format_utc(at)
                ),
                HeaderMap::new(),
            ),
            GatewayError::ModelNotAllowed(m) => (
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "model_not_allowed",
                format!(
                    "This API key may not call the model `{m}`: it is scoped to other models. Its models are on the console's keys page."
                ),
                HeaderMap::new(),
            ),
            GatewayError::Unpriced(m) => (
                StatusCode::FORBIDDEN,
                "insufficient_quota",
                "model_unpriced",
                format!(
                    "The model `{m}` has no price, and a budget in money on this API key or its workspace refuses calls it cannot price. \
                     An operator can price the model, or let unpriced calls through the budget, on the console."
                ),
                HeaderMap::new(),
            ),
            GatewayError::ModelNotFound(m) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("The model `{m}` does not exist or you do not have access to it."),
                HeaderMap::new(),
            ),
            GatewayError::UnknownPath(what) => {
                (StatusCode::NOT_FOUND, "invalid_request_error", "unknown_url", format!("Invalid URL ({what})"), HeaderMap::new())
            }
            GatewayError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", m, HeaderMap::new()),
            GatewayError::OperationNotServed { model, api } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "operation_not_supported",
                format!(
                    "The model `{model}` is not served over the {api} API: none of its endpoints speaks it, nor chat completions the gateway would translate it to."
                ),
                HeaderMap::new(),
            ),
            GatewayError::WrongKind { model, kind, path } => {
                let serves: Vec<String> =
                    super::op::Op::ALL.into_iter().filter(|op| op.kind() == kind).map(|op| format!("/v1{}", op.path())).collect();
                (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "operation_not_supported",
                    format!(
                        "The model `{model}` is {} {} model: it is not served on /v1{path}. Call it on {}.",
                        if matches!(kind, app::types::ModelKind::Embedding | app::types::ModelKind::Image) { "an" } else { "a" },
                        kind.label().to_lowercase(),
                        serves.join(" or ")
                    ),
                    HeaderMap::new(),
                )
            }
            GatewayError::BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("Request body is larger than the limit of {limit} bytes."),
                HeaderMap::new(),
            ),
            GatewayError::RateLimited(r) => {
                let mut h = HeaderMap::new();
                h.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(r.retry_after_secs));
                h.insert(RETRY_AFTER_MS, HeaderValue::from(r.wait_ms));
                // The refusing rule's own headers, as OpenAI sends them (none exist for
                // concurrency).
                let names = match r.kind {
                    RuleKind::Requests => Some((RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET)),
                    RuleKind::Tokens => Some((RATELIMIT_LIMIT_TOKENS, RATELIMIT_REMAINING_TOKENS, RATELIMIT_RESET_TOKENS)),
                    RuleKind::Concurrent => None,
                };
                if let Some((limit, remaining, reset)) = names {
                    h.insert(limit, HeaderValue::from(r.limit));
                    h.insert(remaining, HeaderValue::from_static("0"));
                    h.insert(reset, reset_header(r.wait_ms));
                }
                // Labels are built from ids and numbers; a value that cannot be a header is left out.
                if let Ok(v) = HeaderValue::from_str(&r.rule) {
                    h.insert(RATELIMIT_RULE, v);
                }
                let (kind, what) = match r.kind {
                    RuleKind::Requests => ("requests", format!("{} requests per {} s", r.limit, r.duration_secs)),
                    RuleKind::Tokens => {
                        ("tokens", format!("{} tokens per {} s (consumed plus reserved by calls in flight)", r.limit, r.duration_secs))
                    }
                    RuleKind::Concurrent => ("requests", format!("{} calls at once", r.limit)),
                };
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    kind,
                    "rate_limit_exceeded",
                    format!("Rate limit reached ({}): {what}. Retry after {} s.", r.rule, r.retry_after_secs),
                    h,
                )
            }
            GatewayError::EndpointsBusy { model, why } => {
                let mut h = HeaderMap::new();
                h.insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                let why = match why {
                    super::slots::NoSlot::TimedOut { waited } => format!("none freed within {} s", waited.as_secs_f64()),
                    super::slots::NoSlot::QueueFull { waiting } => format!("{waiting} calls are already waiting for one"),
                };
                (
                    StatusCode::TOO_MANY_REQUESTS, "requests", "endpoints_busy",
                    format!("Every endpoint of the model `{model}` is serving as many calls as it is allowed at once, and {why}. Retry shortly."),
                    h,
                )
            }
            GatewayError::QuotaExceeded(q) => {
                let mut h = HeaderMap::new();
                h.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(q.retry_after_secs));
                // The official SDKs retry 429s on their own; a spent quota is not worth it.
                h.insert(HeaderName::from_static("x-should-retry"), HeaderValue::from_static("false"));
                let whose = match q.target {
                    RuleTarget::ApiKey => "this API key's",
                    RuleTarget::Workspace => "your workspace's",
                };
                let period = match q.period {
                    app::days::Period::Day => "daily",
                    app::days::Period::Month => "monthly",
                };
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "insufficient_quota",
                    "insufficient_quota",
                    format!(
                        "You exceeded {whose} {period} quota of {}. It resets at {} UTC; an operator can raise it on the console.",
                        match q.budget_of {
                            Budget::Tokens => format!("{} tokens", q.budget),
                            Budget::Requests => format!("{} requests", q.budget),
                            Budget::Spend => format!(
                                "{} {} in money",
                                app::ssr::pricing::format_nanos(q.budget.min(i64::MAX as u64) as i64),
                                q.currency.as_deref().unwrap_or("")
                            ),
                        },
                        app::days::format_utc(q.resets_at)
                    ),
                    h,
                )
            }
            GatewayError::UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                "api_error",
                "upstream_unavailable",
                "No upstream endpoint of this model could be reached.".to_string(),
                HeaderMap::new(),
            ),
            GatewayError::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                "upstream_timeout",
                "The upstream endpoints did not answer in time.".to_string(),
                HeaderMap::new(),
            ),
            GatewayError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal_error", m, HeaderMap::new()),
        }
    }
}

/// Anthropic's `anthropic-ratelimit-*` headers of a call admitted on its API: the same figures
/// as the `x-ratelimit-*` ones, the reset as an RFC 3339 time (`now_ms`: Unix ms now).
pub fn anthropic_admission_headers(h: &mut HeaderMap, a: &super::admission::Ticket, now_ms: i64) {
    let reset = |ms: u64| HeaderValue::from_str(&app::days::format_rfc3339((now_ms + ms as i64 + 999).div_euclid(1000))).ok();
    for ([limit, remaining, reset_at], admission) in [(ANTHROPIC_REQUESTS, &a.requests), (ANTHROPIC_TOKENS, &a.tokens)] {
        let Some(x) = admission else { continue };
        h.insert(limit, HeaderValue::from(x.limit));
        h.insert(remaining, HeaderValue::from(x.remaining));
        if let Some(v) = reset(x.reset_ms) {
            h.insert(reset_at, v);
        }
    }
}

/// A 429's `anthropic-ratelimit-*` headers: the refusing rule's limit, none remaining, and when
/// its wait is over (none exist for concurrency rules).
pub fn anthropic_refusal_headers(h: &mut HeaderMap, kind: RuleKind, limit: u64, wait_ms: u64, now_ms: i64) {
    let [limit_h, remaining, reset_at] = match kind {
        RuleKind::Requests => ANTHROPIC_REQUESTS,
        RuleKind::Tokens => ANTHROPIC_TOKENS,
        RuleKind::Concurrent => return,
    };
    h.insert(limit_h, HeaderValue::from(limit));
    h.insert(remaining, HeaderValue::from_static("0"));
    if let Ok(v) = HeaderValue::from_str(&app::days::format_rfc3339((now_ms + wait_ms as i64 + 999).div_euclid(1000))) {
        h.insert(reset_at, v);
    }
}

// Anthropic's names for the same figures (limit, remaining, reset), built at compile time rather
// than formatted on every answer.
const ANTHROPIC_REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("anthropic-ratelimit-requests-limit"),
    HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
    HeaderName::from_static("anthropic-ratelimit-requests-reset"),
];
const ANTHROPIC_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
    HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
    HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
];

/// The `x-ratelimit-*` headers of an admitted call: the tightest request rule's and the
/// tightest token rule's.
pub fn admission_headers(h: &mut HeaderMap, a: &super::admission::Ticket) {
    if let Some(r) = &a.requests {
        h.insert(RATELIMIT_LIMIT, HeaderValue::from(r.limit));
        h.insert(RATELIMIT_REMAINING, HeaderValue::from(r.remaining));
        h.insert(RATELIMIT_RESET, reset_header(r.reset_ms));
    }
    if let Some(t) = &a.tokens {
        h.insert(RATELIMIT_LIMIT_TOKENS, HeaderValue::from(t.limit));
        h.insert(RATELIMIT_REMAINING_TOKENS, HeaderValue::from(t.remaining));
        h.insert(RATELIMIT_RESET_TOKENS, reset_header(t.reset_ms));
    }
}

/// `x-ratelimit-reset-requests` as OpenAI writes it (Go's duration format: `20ms`, `1.5s`,
/// `6m0s`, `1h2m3s`), which client libraries parse to pace themselves. Sent on every admitted
/// response, so written into a stack buffer: `format!` took ~2k instructions per request.
pub fn reset_header(ms: u64) -> HeaderValue {
    let mut out = [0u8; 48];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        out[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    let mut digits = itoa::Buffer::new();
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if ms < 1000 {
        put(digits.format(ms).as_bytes());
        put(b"ms");
    } else {
        if h > 0 {
            put(digits.format(h).as_bytes());
            put(b"h");
        }
        if h > 0 || m > 0 {
            put(digits.format(m).as_bytes());
            put(b"m");
        }
        put(digits.format(s).as_bytes());
        if frac > 0 {
            // Three digits, trailing zeros dropped: 500 → ".5", 1 → ".001".
            let f = [b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8];
            let keep = if frac % 100 == 0 {
                2
            } else if frac % 10 == 0 {
                3
            } else {
                4
            };
            put(&f[..keep]);
        }
        put(b"s");
    }
    HeaderValue::from_bytes(&out[..len]).expect("digits and unit letters")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reset_is_written_as_openai_writes_durations() {
        for (ms, want) in [
            (0, "0ms"),
            (20, "20ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (59_001, "59.001s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (3_723_000, "1h2m3s"),
            (86_400_000, "24h0m0s"),
        ] {
            assert_eq!(super::reset_header(ms), want, "{ms} ms");
        }
    }
}
