//! One call as the gateway saw it when it ended: what the usage meter and `/metrics` record.
use super::op::Op;
use super::usage::Tokens;
use std::sync::Arc;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// The upstream answered with an error status, broke off, or none could be reached.
    UpstreamError,
    RateLimited,
    Unauthenticated,
    /// A key calling a model outside its scope (403).
    Forbidden,
    NotFound,
    /// Malformed or oversized request.
    BadRequest,
    /// The client left before the answer ended.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::NotFound => "not_found",
            Outcome::BadRequest => "bad_request",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One call, as the gateway saw it when it ended.
#[derive(Clone, Debug)]
pub struct Call {
    /// The MaaS model's name, or what the caller sent when it named none the gateway serves.
    pub model: Arc<str>,
    pub maas_model_id: Option<i64>,
    /// The MaaS model the caller asked for, when a fallback (`maas_model_id`) answered instead.
    pub asked_model_id: Option<i64>,
    pub endpoint_id: Option<i64>,
    pub workspace_id: Option<i64>,
    pub api_key_id: Option<i64>,
    pub op: Op,
    pub status: u16,
    pub outcome: Outcome,
    /// Endpoints tried before the one that answered.
    pub failovers: u32,
    /// Until the first byte of the answer's body went to the client (time to first token, for
    /// a stream); `None` when no body byte was sent.
    pub ttfb_ms: Option<u64>,
    pub total_ms: u64,
    /// `None`: the upstream reported no usage (or none was asked). Unknown, never 0.
    pub tokens: Option<Tokens>,
    /// Of its operation's unit besides tokens (documents, characters, images), when answered.
    pub units: u64,
    /// What it cost, nano-units of the platform currency; `None`: unknown (an upstream ran it
    /// and no price covered it, or it reported no usage).
    pub cost: Option<i64>,
    /// When it ended, Unix ms.
    pub at_ms: u64,
}

/// Why an upstream failed a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// Answered 5xx.
    Status5xx,
    /// Answered 429 (rested for its Retry-After).
    Status429,
    ConnectTimeout,
    Unreachable,
    /// No response headers within the first-byte timeout.
    FirstByteTimeout,
    /// The answer broke off mid-body.
    BrokenBody,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Status5xx => "status_5xx",
            FailReason::Status429 => "status_429",
            FailReason::ConnectTimeout => "connect_timeout",
            FailReason::Unreachable => "unreachable",
            FailReason::FirstByteTimeout => "first_byte_timeout",
            FailReason::BrokenBody => "broken_body",
        }
    }
}
