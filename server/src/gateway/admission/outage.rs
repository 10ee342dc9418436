//! Admission shared through Redis, wrapped in what happens when Redis cannot answer.
//!
//! Every call is checked in Redis ([`RedisAdmission`]) and also recorded in this replica's own
//! counters, unchecked. When Redis fails, the replica limits on those counters alone
//! ([`LocalAdmission`]), and they start from what this replica admitted itself in each window,
//! through Redis or not. What it does on them meanwhile goes into the [`Journal`], replayed
//! into Redis before anything else once Redis answers again. So:
//!
//! - during an outage each replica admits at most `limit` in any window, counting what it
//!   admitted through Redis before: at most replicas × limit in all;
//! - once Redis is back and has the journals, it knows every admission of the window and the
//!   limit is shared and exact again; a window that overlaps the outage's end still holds at
//!   most replicas × limit (each replica's own share stays bounded by its counters);
//! - a connection that broke while Redis was away is retried once on a new one before it counts
//!   as a failure (see [`super::redis_limiter::RedisLimiter`]), so Redis coming back does not
//!   start a second outage.
use super::journal::{Entry, Journal, JournalOp};
use super::local::LocalAdmission;
use super::redis_admission::{RedisAdmission, SharedClaim, SharedHold};
use super::redis_limiter::{Refused, SharedCounter};
use super::ticket::{Admit, Claim, Refusal, Ticket};
use std::sync::Arc;

pub struct OutageFallback {
    pub redis: RedisAdmission,
    pub local: LocalAdmission,
}

impl OutageFallback {
    pub fn journal(&self) -> &Arc<Journal> {
        &self.redis.journal
    }
}

impl Admit for OutageFallback {
    async fn admit(&self, claim: &Claim<'_>) -> Result<Ticket, Refusal> {
        if claim.is_free() {
            return Ok(Ticket::default());
        }
        let journal = self.journal();
        let now = journal.now_ms();
        let shared = SharedClaim::new(claim.workspace_id, claim.rules, claim.quotas, claim.now_secs);
        let outage = journal.retry_at_ms();
        // What this replica admitted on its own goes into Redis before anything else does, so
        // Redis never admits on a window that lacks this replica's share of it.
        if now >= outage && journal.pending() && !journal.replay_pending().await {
            journal.outage_from(now, "could not replay the outage journal");
        } else if now >= outage {
            match self.redis.admit(&shared, claim.rules, claim.reservation()).await {
                Ok(decision) => {
                    journal.answered(outage);
                    let (figures, hold) = decision.map_err(|refused| match refused {
                        Refused::Rule(r) => Refusal::Rate(r),
                        Refused::Quota(i) => {
                            let SharedCounter::Quota { key, budget, .. } = shared.quotas[i].counter else {
                                unreachable!("quota counters only")
                            };
                            let q = claim.quotas.iter().find(|q| q.key == key).expect("each shared budget is one of the call's quotas");
                            Refusal::Quota(q.exceeded(claim.now_secs, budget))
                        }
                    })?;
                    let mut ticket = self.local.record(claim).with_shared(hold);
                    ticket.requests = figures.requests;
                    ticket.tokens = figures.tokens;
                    return Ok(ticket);
                }
                Err(e) => journal.outage_from(now, &e.to_string()),
            }
        }
        let ticket = self.local.check(claim)?;
        let all = shared.counters(claim.rules);
        let lease_id = shared.lease_id;
        journal.write(all.iter().map(|&counter| {
            let op = match counter {
                c if !c.leased() => JournalOp::Record(1),
                c => JournalOp::Lease { amount: c.lease_amount(claim.reservation()), id: lease_id },
            };
            Entry { workspace_id: claim.workspace_id, counter, at_ms: now, op }
        }));
        let hold = (lease_id != 0).then(|| SharedHold::new(journal, claim.workspace_id, lease_id, all, claim.reservation(), true));
        Ok(ticket.with_shared(hold))
    }
}
