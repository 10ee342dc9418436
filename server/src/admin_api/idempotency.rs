//! `Idempotency-Key` on creates: a script that retries a POST (a timeout, a dropped
//! connection) with the same key gets the first answer again, never a second entity.
//!
//! The first request with a key claims it (a row with no answer yet, under the table's primary
//! key, so two racing requests cannot both run), runs, and stores its answer; a retry with the
//! same key and the same request replays it (`Idempotent-Replayed: true`); the same key on a
//! different request is refused (422), and one still being served answers 409. A 5xx answer
//! is not kept: the retry runs again. Keys are the caller's own and live 24 hours. Answers are
//! stored encrypted (an API key's one-time secret is among them).
use super::auth::Caller;
use super::error::ApiError;
use app::ssr::crypto::sha256_hex;
use app::ssr::entities::idempotency_key;
use app::ssr::AppState;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use std::sync::Arc;

pub const HEADER: &str = "idempotency-key";
const TTL_SECS: i64 = 24 * 3600;
/// Admin API bodies are small; a model with 64 endpoints and 64 rules is ~40 KB.
pub const MAX_BODY: usize = 1 << 20;

pub async fn layer(State(g): State<Arc<super::auth::Guard>>, req: Request, next: Next) -> Response {
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str().map(str::trim) {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => return ApiError::bad_request("Idempotency-Key: 1 to 255 visible ASCII characters").into_response(),
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return ApiError::too_large().into_response(),
    };
    let fingerprint = sha256_hex(&format!("{} {}\n{}", parts.method, parts.uri, String::from_utf8_lossy(&bytes)));
    match claim(&g.app, &caller.key, &key, &fingerprint).await {
        Ok(Claim::Replay(status, sealed)) => {
            let body = g.app.secrets.decrypt(&sealed).unwrap_or_default();
            let mut res =
                (StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK), [(http::header::CONTENT_TYPE, "application/json")], body)
                    .into_response();
            res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return res;
        }
        Ok(Claim::Run) => {}
        Err(e) => return e.into_response(),
    }
    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = res.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let outcome = if parts.status.is_server_error() {
        idempotency_key::Entity::delete_by_id((caller.key.clone(), key.clone())).exec(&g.app.db).await.map(|_| ())
    } else {
        idempotency_key::Entity::update_many()
            .col_expr(idempotency_key::Column::Status, Expr::value(parts.status.as_u16() as i32))
            .col_expr(idempotency_key::Column::Body, Expr::value(g.app.secrets.encrypt(&String::from_utf8_lossy(&bytes))))
            .filter(idempotency_key::Column::ActorKey.eq(caller.key.clone()))
            .filter(idempotency_key::Column::Key.eq(key.clone()))
            .exec(&g.app.db)
            .await
            .map(|_| ())
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "idempotency key: storing the answer");
    }
    Response::from_parts(parts, Body::from(bytes))
}

enum Claim {
    Run,
    Replay(i32, String),
}

async fn claim(app: &AppState, actor_key: &str, key: &str, fingerprint: &str) -> Result<Claim, ApiError> {
    let now = app::ssr::now();
    let db = &app.db;
    // Expired keys go first, so a key reused after a day starts afresh.
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::CreatedAt.lt(now - TTL_SECS))
        .exec(db)
        .await
        .map_err(app::ssr::ServiceError::from)?;
    let row = idempotency_key::ActiveModel {
        actor_key: Set(actor_key.to_owned()),
        key: Set(key.to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        status: Set(None),
        body: Set(None),
        created_at: Set(now),
    };
    if row.insert(db).await.is_ok() {
        return Ok(Claim::Run);
    }
    let found =
        idempotency_key::Entity::find_by_id((actor_key.to_owned(), key.to_owned())).one(db).await.map_err(app::ssr::ServiceError::from)?;
    match found {
        None => Err(ApiError::new(StatusCode::CONFLICT, "a request with this Idempotency-Key is being served; retry shortly")),
        Some(r) if r.fingerprint != fingerprint => Err(ApiError::field("Idempotency-Key", "already used for a different request")),
        Some(idempotency_key::Model { status: Some(s), body, .. }) => Ok(Claim::Replay(s, body.unwrap_or_default())),
        Some(_) => Err(ApiError::new(StatusCode::CONFLICT, "a request with this Idempotency-Key is being served; retry shortly")),
    }
}
