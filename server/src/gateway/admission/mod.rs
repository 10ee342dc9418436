//! Admission: whether a call may run, given every rule and quota that applies to its caller,
//! decided atomically (a refusal consumes nothing anywhere), and what it holds until it ends.
//!
//! Imports point one way, from the counters up:
//!
//! - [`hold`]: what a call consumed, as its end tells every hold;
//! - [`limiter`] (request, token and concurrency rules) and [`quota`] (budgets per day or
//!   month), each returning its own hold, which gives back what it took when ended or dropped;
//! - [`redis_limiter`] (the Redis script), [`journal`] (an outage's journal and state),
//!   [`redis_admission`] (admission in Redis, its lease as a hold);
//! - [`ticket`]: one ticket of holds for the call, with the figures of its headers;
//! - [`local`] (this process's counters) and [`outage`] (Redis, wrapped in the fallback to
//!   local counters while it does not answer): the two ways to admit, behind [`Admission`];
//! - [`reserve`]: the token estimate a call reserves.
pub mod hold;
pub mod journal;
pub mod limiter;
pub mod local;
pub mod outage;
pub mod quota;
pub mod redis_admission;
pub mod redis_limiter;
pub mod reserve;
pub mod ticket;

pub use hold::Consumed;
pub use ticket::{Admit, Claim, Refusal, Ticket};

/// Where the counters live: in this process (one replica), or in Redis, shared by every
/// replica serving the cluster, with this process's counters as the fallback.
pub enum Admission {
    Local(local::LocalAdmission),
    Shared(outage::OutageFallback),
}

impl Admission {
    /// The Redis the replicas share, if they do.
    pub fn redis(&self) -> Option<&redis_limiter::RedisLimiter> {
        match self {
            Admission::Local(_) => None,
            Admission::Shared(s) => Some(&s.redis.journal.redis),
        }
    }
}

impl Admit for Admission {
    async fn admit(&self, claim: &Claim<'_>) -> Result<Ticket, Refusal> {
        match self {
            // Synchronous: no future state machine of its own on the embedded gateway's path.
            Admission::Local(l) => l.check(claim),
            Admission::Shared(s) => s.admit(claim).await,
        }
    }
}

impl Admission {
    /// What this replica admitted while Redis could not answer and Redis does not know yet.
    pub fn outage_journal_len(&self) -> usize {
        match self {
            Admission::Local(_) => 0,
            Admission::Shared(s) => s.journal().waiting(),
        }
    }
}
