//! The admin API's one error type and its one JSON shape, documented in the OpenAPI document:
//! `{"error": {"message": "…", "fields": {"endpoints.1.url": "…"}}}` (`fields` only for 422).
//! Every failure of the layers below (`AppError`, `ServiceError`, axum's extractors) is mapped
//! here, once; bad input is never a 500.
use app::error::AppError;
use app::ssr::ServiceError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub fields: Option<BTreeMap<String, String>>,
    pub retry_after_secs: Option<u64>,
}

/// An error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// For 422: each invalid field (dotted path into the request body, `endpoints.1.url`) and
    /// what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), fields: None, retry_after_secs: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// A body over [`super::idempotency::MAX_BODY`].
    pub fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {} bytes", super::idempotency::MAX_BODY))
    }
    pub fn field(field: &str, message: &str) -> Self {
        AppError::field(field, message).into()
    }
    /// Renames the service's field names to the API body's (`cluster` → `cluster_id`).
    pub fn rename_fields(mut self, rename: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(f) = self.fields.take() {
            self.fields = Some(f.into_iter().map(|(k, v)| (rename(&k).unwrap_or(k), v)).collect());
        }
        self
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after_secs = match &e {
            AppError::RateLimited { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let (message, fields) = match e {
            AppError::Invalid(f) => ("the request has invalid fields".to_owned(), Some(f.0)),
            e => (e.to_string(), None),
        };
        ApiError { status, message, fields, retry_after_secs }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        e.into_app().into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
            }
            // Over the body limit: 413, as the idempotency layer says it (one status for one condition).
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
            // Wrong types, unknown fields, broken JSON: malformed, the caller's to fix.
            r => ApiError::bad_request(r.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { message: self.message, fields: self.fields } };
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"maas-admin\""));
        }
        if let Some(s) = self.retry_after_secs {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
