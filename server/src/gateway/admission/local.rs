//! Admission on this process's own counters: the embedded gateway's, and a replica's while
//! Redis is away.
use super::limiter::Limiter;
use super::quota;
use super::ticket::{Admit, Claim, Refusal, Ticket};

pub struct LocalAdmission {
    pub limiter: Limiter,
}

impl LocalAdmission {
    /// On fresh counters read on `clock`.
    pub fn on(clock: crate::gateway::clock::SharedClock) -> Self {
        LocalAdmission { limiter: Limiter::on(clock) }
    }

    /// Checks `claim`'s quotas, then its rules: quotas first (their reservation is the cheaper
    /// to give back), and a refusal by either leaves nothing consumed in the other.
    pub fn check(&self, claim: &Claim<'_>) -> Result<Ticket, Refusal> {
        let quotas = if claim.quotas.is_empty() {
            Default::default()
        } else {
            quota::check(claim.quotas, claim.now_secs, claim.reservation()).map_err(Refusal::Quota)?
        };
        match self.limiter.check(claim.rules, claim.estimate) {
            Ok(admitted) => Ok(Ticket::local(admitted, quotas)),
            Err(rejection) => {
                let mut quotas = quotas;
                quotas.end(super::hold::Consumed::Nothing);
                Err(Refusal::Rate(rejection))
            }
        }
    }

    /// Records `claim` without checking it (a call Redis admitted), so that these counters know
    /// what this replica admitted when they have to limit on their own.
    pub fn record(&self, claim: &Claim<'_>) -> Ticket {
        Ticket::local(self.limiter.record(claim.rules, claim.estimate), quota::record(claim.quotas, claim.now_secs, claim.reservation()))
    }
}

impl Admit for LocalAdmission {
    async fn admit(&self, claim: &Claim<'_>) -> Result<Ticket, Refusal> {
        self.check(claim)
    }
}
