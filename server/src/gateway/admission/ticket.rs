//! What admission hands the call: the figures of the `x-ratelimit-*` headers and every hold it
//! took, ended together when the call ends ([`Ticket::end`]) or dropped (the estimate counted).
use super::hold::Consumed;
use super::limiter::{Admission, Admitted, Rejection, RuleCheck, RuleHold};
use super::quota::{QuotaCheck, QuotaExceeded, QuotaHold};
use super::redis_admission::SharedHold;

/// What a call asks of admission: whose it is, which rules and quotas apply, the wall time of
/// its quota period, the tokens it reserves and their cost (reserved in money budgets).
#[derive(Clone, Copy)]
pub struct Claim<'a> {
    pub workspace_id: i64,
    pub rules: &'a [&'a RuleCheck],
    pub quotas: &'a [&'a QuotaCheck],
    pub now_secs: i64,
    pub estimate: u64,
    /// The estimate's cost at the model's prices, nano-units (0 without a money budget).
    pub cost: u64,
}

impl Claim<'_> {
    /// What the call reserves in quotas.
    pub fn reservation(&self) -> super::quota::Reservation {
        super::quota::Reservation { tokens: self.estimate, nanos: self.cost }
    }
}

impl Claim<'_> {
    /// Nothing to count: admitted with an empty ticket, no lock taken.
    pub fn is_free(&self) -> bool {
        self.rules.is_empty() && self.quotas.is_empty()
    }
}

/// One way to admit calls: on this process's counters (`local::LocalAdmission`), or
/// in Redis with this process's counters as the fallback (`outage::OutageFallback`).
pub trait Admit: Send + Sync {
    /// Admits `claim`, every rule and quota at once, or says why not (consuming nothing).
    fn admit(&self, claim: &Claim<'_>) -> impl std::future::Future<Output = Result<Ticket, Refusal>> + Send;
}

/// Why a call was not admitted.
#[derive(Debug)]
pub enum Refusal {
    Rate(Rejection),
    Quota(QuotaExceeded),
}

/// An admitted call's figures and holds. Holds nothing (and allocates nothing) when the call
/// counts in request rules only.
#[derive(Debug, Default)]
pub struct Ticket {
    /// The tightest request rule after this admission.
    pub requests: Option<Admission>,
    /// The tightest token rule.
    pub tokens: Option<Admission>,
    // Ended in this order: the Redis lease first (its end is sent without waiting), then this
    // process's counters.
    shared: Option<SharedHold>,
    quotas: QuotaHold,
    rules: RuleHold,
}

impl Ticket {
    /// A ticket of the local counters' admission and the quotas' holds.
    pub fn local(admitted: Admitted, quotas: QuotaHold) -> Self {
        Ticket { requests: admitted.requests, tokens: admitted.tokens, shared: None, quotas, rules: admitted.hold }
    }

    /// Adds what the call holds in Redis.
    pub fn with_shared(mut self, shared: Option<SharedHold>) -> Self {
        self.shared = shared;
        self
    }

    /// Whether the call holds anything until it ends.
    pub fn holds_nothing(&self) -> bool {
        self.shared.is_none() && self.quotas.is_empty() && self.rules.is_empty()
    }

    /// The call ended having consumed `consumed`: every hold gives back what it took.
    pub fn end(mut self, consumed: Consumed) {
        if let Some(mut s) = self.shared.take() {
            s.end(consumed);
        }
        self.quotas.end(consumed);
        self.rules.end(consumed);
    }
}
