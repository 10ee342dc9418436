//! Who calls the admin API, what they may do, and how often: one middleware in front of every
//! `/api/v1` route (the OpenAPI document and the docs page aside).
//!
//! - `Authorization: Bearer maas-admin-…`: an admin token; read-only tokens are refused (403)
//!   on every method that writes.
//! - No `Authorization`, a console session: an operator's session may read and write (the
//!   interactive reference page uses it; the CSRF layer has already checked the origin of
//!   state-changing requests); a user's session is refused (403).
//! - Each caller (token or session) has its own GCRA budget ([`Limits`]): over it, 429 with
//!   `Retry-After`.
//! - Every write call, refused ones included, is written to the access log with its status.
use super::error::ApiError;
use app::ssr::audit::Actor;
use app::ssr::auth::{guard, Need};
use app::ssr::entities::api_access;
use app::ssr::services::admin_tokens::{self, SECRET_PREFIX};
use app::ssr::AppState;
use app::types::{CurrentUser, Role, TokenAccess};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{Method, StatusCode};
use sea_orm::{ActiveModelTrait, Set};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The caller of an admin API request, as the handlers receive it (request extension).
#[derive(Clone, Debug)]
pub struct Caller {
    /// Whose rights apply: the operator, or the operator who made the token.
    pub who: CurrentUser,
    /// Who the audit log names.
    pub actor: Actor,
    /// False for a user's session: known (and so named in the access log), but refused.
    pub operator: bool,
    pub may_write: bool,
    /// The caller's own rate budget and idempotency keys: `token:<id>` or `user:<id>`.
    pub key: String,
}

/// Requests per second and burst of each caller.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limits {
    /// `MAAS_ADMIN_API_RATE` requests per second per token (default 20), bursts of twice that.
    pub fn from_env() -> Self {
        let per_second = std::env::var("MAAS_ADMIN_API_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::new(20).expect("20 > 0"));
        Limits { per_second, burst: per_second.saturating_mul(NonZeroU32::new(2).expect("2 > 0")) }
    }
}

pub struct Guard {
    pub app: AppState,
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl Guard {
    pub fn new(app: AppState, limits: Limits) -> Arc<Self> {
        let limiter = DefaultKeyedRateLimiter::keyed(Quota::per_second(limits.per_second).allow_burst(limits.burst));
        Arc::new(Guard { app, limiter, checks: AtomicU64::new(0) })
    }

    /// `Err(seconds to wait)` when the caller is over its budget.
    fn admit(&self, key: &str) -> Result<(), u64> {
        // Keys are tokens and operators, a bounded set; idle ones are dropped now and then so
        // revoked tokens do not stay in memory.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1))
    }
}

fn writes(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The caller behind the request's credentials.
pub async fn authenticate(app: &AppState, headers: &http::HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        let value = auth.to_str().unwrap_or_default();
        let Some(secret) = value.strip_prefix("Bearer ").map(str::trim) else {
            return Err(unauthorized("send the admin token as `Authorization: Bearer maas-admin-…`"));
        };
        if secret.starts_with(app::ssr::services::keys::SECRET_PREFIX) {
            return Err(unauthorized(
                "this is a gateway API key (for /v1); the admin API takes an admin token, made under Admin tokens in the console",
            ));
        }
        if !secret.starts_with(SECRET_PREFIX) {
            return Err(unauthorized("not an admin token"));
        }
        let t =
            admin_tokens::authenticate(&app.db, secret).await?.ok_or_else(|| unauthorized("unknown, revoked or expired admin token"))?;
        return Ok(Caller {
            actor: Actor::token(t.id, &t.name),
            operator: true,
            may_write: t.access == TokenAccess::Write,
            key: format!("token:{}", t.id),
            who: t.created_by,
        });
    }
    match guard(app, headers, Need::Login).await {
        Ok(u) => Ok(Caller {
            actor: Actor::api_user(&u),
            operator: u.role == Role::Operator,
            may_write: true,
            key: format!("user:{}", u.id),
            who: u,
        }),
        Err(_) => Err(unauthorized("send an admin token as `Authorization: Bearer maas-admin-…`")),
    }
}

pub async fn layer(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let caller = authenticate(&g.app, req.headers()).await;
    let res = match &caller {
        Err(_) => None,
        Ok(c) if !c.operator => Some(ApiError::new(StatusCode::FORBIDDEN, "the admin API is for operators").into_response()),
        Ok(c) => match g.admit(&c.key) {
            Err(wait) => Some(
                ApiError {
                    retry_after_secs: Some(wait),
                    ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many admin API calls from this token")
                }
                .into_response(),
            ),
            Ok(()) if writes(&method) && !c.may_write => {
                Some(ApiError::new(StatusCode::FORBIDDEN, "this admin token is read-only").into_response())
            }
            Ok(()) => None,
        },
    };
    let res = match (res, caller.as_ref()) {
        (Some(refused), _) => refused,
        (None, Err(e)) => ApiError::new(e.status, e.message.clone()).into_response(),
        (None, Ok(c)) => {
            req.extensions_mut().insert(c.clone());
            next.run(req).await
        }
    };
    if writes(&method) {
        log_access(&g.app, caller.as_ref().ok(), &method, &path, res.status()).await;
    }
    res
}

/// One access-log row. A failure to write it is logged, not turned into the caller's error:
/// the change itself (and its audit row) has already committed.
async fn log_access(app: &AppState, c: Option<&Caller>, method: &Method, path: &str, status: StatusCode) {
    let (kind, id, name) = match c {
        Some(c) => (c.actor.kind.as_str(), c.actor.id, c.actor.name.clone()),
        None => ("none", None, "unauthenticated".to_owned()),
    };
    let row = api_access::ActiveModel {
        at: Set(app::ssr::now()),
        actor_kind: Set(kind.to_owned()),
        actor_id: Set(id),
        actor_name: Set(name),
        method: Set(method.as_str().to_owned()),
        path: Set(path.chars().take(256).collect()),
        status: Set(status.as_u16() as i32),
        ..Default::default()
    };
    if let Err(e) = row.insert(&app.db).await {
        tracing::error!(error = %e, "admin API access log");
    }
}
