//! The one error type of server functions. It crosses the network in postcard, as every server
//! function's answer does (`api`), so the browser gets the same variant the server produced
//! (field errors stay attached to their fields), and the HTTP status is set from it once, in
//! `api::edge`.
use crate::types::FieldErrors;
use serde::{Deserialize, Serialize};
use server_fn::codec::PostcardEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("please log in")]
    Unauthenticated,
    #[error("your account is not allowed to do this")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    #[error("please fix the highlighted fields")]
    Invalid(FieldErrors),
    #[error("{0}")]
    Conflict(String),
    /// Someone else changed it since the caller loaded it (`If-Match`, the edit form's revision).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Too many attempts (logins): try again after the wait, which is also the `Retry-After`.
    #[error("{message}; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64, message: String },
    /// Details are in the server log (with no secrets); the browser only learns that it failed.
    #[error("the server could not complete this request; please try again")]
    Internal,
    /// The request never reached our code, or its answer could not be read.
    #[error("could not reach the server: {0}")]
    Transport(String),
}

impl AppError {
    pub fn fields(&self) -> Option<&FieldErrors> {
        match self {
            AppError::Invalid(f) => Some(f),
            _ => None,
        }
    }
    pub fn field(field: &str, msg: &str) -> Self {
        AppError::Invalid(FieldErrors::single(field, msg))
    }
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated => 401,
            AppError::Forbidden => 403,
            AppError::NotFound(_) => 404,
            AppError::Invalid(_) => 422,
            AppError::Conflict(_) => 409,
            AppError::PreconditionFailed(_) => 412,
            AppError::RateLimited { .. } => 429,
            AppError::Internal => 500,
            AppError::Transport(_) => 400,
        }
    }
}

impl From<FieldErrors> for AppError {
    fn from(f: FieldErrors) -> Self {
        AppError::Invalid(f)
    }
}

impl FromServerFnError for AppError {
    type Encoder = PostcardEncoding;
    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // On the server this runs when a request cannot even be decoded: that is the caller's
        // fault (400), not a server failure (the framework's default 500).
        #[cfg(feature = "ssr")]
        if matches!(value, ServerFnErrorErr::Args(_) | ServerFnErrorErr::Deserialization(_)) {
            if let Some(opts) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
                opts.set_status(http::StatusCode::BAD_REQUEST);
            }
        }
        AppError::Transport(value.to_string())
    }
}
