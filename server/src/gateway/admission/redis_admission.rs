//! Admission in Redis, shared by every replica of a cluster: one script checks and records all
//! of a call's rules and quotas (see [`super::redis_limiter`]). Token reservations and
//! concurrency places are leases in Redis ([`SharedHold`]), renewed while the call runs; a
//! replica that dies holding them frees them when they run out. Their end (the tokens consumed)
//! is sent without making the client wait: one script call per call, pipelined on the serving
//! thread's multiplexed connection with the other calls' checks. An end Redis does not take
//! goes to the outage journal.
use super::hold::Consumed;
use super::journal::{Entry, Journal, JournalOp};
use super::limiter::RuleCheck;
use super::quota::{QuotaCheck, Reservation};
use super::redis_limiter::{shared_quotas, LeaseArgs, RedisError, Refused, SharedAdmission, SharedCounter, SharedQuota};
use smallvec::SmallVec;
use std::sync::Arc;

/// A call's counters in Redis: its rules', then its quotas' budgets for the current period.
pub struct SharedClaim {
    pub workspace_id: i64,
    pub quotas: SmallVec<[SharedQuota; 4]>,
    /// 0 when the call holds no lease (request rules and request budgets only).
    pub lease_id: u64,
}

impl SharedClaim {
    pub fn new(workspace_id: i64, rules: &[&RuleCheck], quotas: &[&QuotaCheck], now_secs: i64) -> Self {
        let quotas: SmallVec<[SharedQuota; 4]> = quotas.iter().flat_map(|q| shared_quotas(q, now_secs)).collect();
        let holds = rules.iter().any(|r| SharedCounter::Rule(r.key).leased()) || quotas.iter().any(|q| q.counter.leased());
        SharedClaim { workspace_id, quotas, lease_id: if holds { rand::random::<u64>() } else { 0 } }
    }

    /// The counters the call counts in, each once (rules on one counter, say 10/min and 6/min
    /// on one key, share it): its rules', then its quotas' budgets.
    pub fn counters(&self, rules: &[&RuleCheck]) -> SmallVec<[SharedCounter; 4]> {
        let rules =
            rules.iter().enumerate().filter(|&(i, r)| !rules[..i].iter().any(|o| o.key == r.key)).map(|(_, r)| SharedCounter::Rule(r.key));
        rules.chain(self.quotas.iter().map(|q| q.counter)).collect()
    }
}

pub struct RedisAdmission {
    pub journal: Arc<Journal>,
}

impl RedisAdmission {
    /// Checks and records the claim in Redis: the headers' figures and the call's lease, or
    /// Redis's refusal; `Err` when Redis did not answer.
    pub async fn admit(
        &self,
        claim: &SharedClaim,
        rules: &[&RuleCheck],
        estimate: Reservation,
    ) -> Result<Result<(SharedAdmission, Option<SharedHold>), Refused>, RedisError> {
        let lease = LeaseArgs { estimate, lease_id: claim.lease_id, lease_ms: self.journal.lease_ms };
        let decision = self.journal.redis.check(claim.workspace_id, rules, &claim.quotas, lease).await?;
        Ok(decision.map(|figures| {
            let hold = (claim.lease_id != 0)
                .then(|| SharedHold::new(&self.journal, claim.workspace_id, claim.lease_id, claim.counters(rules), estimate, false));
            (figures, hold)
        }))
    }
}

/// What a call holds in Redis (or, admitted during an outage, in the journal): its lease on
/// token and concurrency counters, renewed while it runs and ended with it (dropped: ended
/// with the estimate).
pub struct SharedHold(Option<Box<Lease>>);

struct Lease {
    journal: Arc<Journal>,
    workspace_id: i64,
    id: u64,
    /// Those it holds a lease on.
    counters: SmallVec<[SharedCounter; 2]>,
    estimate: Reservation,
    /// Taken on the local counters while Redis was away: its end goes to the journal too, after
    /// its start.
    journaled: bool,
    renewer: Option<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for SharedHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedHold").field("id", &self.0.as_ref().map(|l| l.id)).finish()
    }
}

impl SharedHold {
    /// The lease `id` on the leased ones of `counters`.
    pub fn new(
        journal: &Arc<Journal>,
        workspace_id: i64,
        id: u64,
        counters: SmallVec<[SharedCounter; 4]>,
        estimate: Reservation,
        journaled: bool,
    ) -> Self {
        let counters: SmallVec<[SharedCounter; 2]> = counters.into_iter().filter(|c| c.leased()).collect();
        // Renewed every third of its length while the call runs (a stream may outlast it).
        let renewer = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (journal, keys) = (journal.clone(), counters.clone());
            let every = std::time::Duration::from_millis(journal.lease_ms / 3);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // A failure is left to the next renewal (or the lease runs out, as a dead
                    // replica's does).
                    let _ = journal.redis.renew(workspace_id, &keys, id, journal.lease_ms).await;
                }
            })
            .abort_handle()
        });
        SharedHold(Some(Box::new(Lease { journal: journal.clone(), workspace_id, id, counters, estimate, journaled, renewer })))
    }

    /// The call ended having consumed `consumed`.
    pub fn end(&mut self, consumed: Consumed) {
        let Some(mut lease) = self.0.take() else { return };
        if let Some(r) = lease.renewer.take() {
            r.abort();
        }
        match tokio::runtime::Handle::try_current().ok() {
            Some(rt) if !lease.journaled => {
                rt.spawn(async move {
                    if lease.journal.redis.settle(lease.workspace_id, &lease.counters, lease.id, lease.estimate, consumed).await.is_err() {
                        lease.journal_end(consumed);
                    }
                });
            }
            _ => {
                lease.journal_end(consumed);
                if lease.journal.retry_at_ms() == 0 {
                    lease.journal.replay_soon();
                }
            }
        }
    }
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        self.end(Consumed::Estimate);
    }
}

impl Lease {
    fn journal_end(&self, consumed: Consumed) {
        let at_ms = self.journal.now_ms();
        let ws = self.workspace_id;
        self.journal.write(self.counters.iter().flat_map(|&counter| {
            let end = Entry { workspace_id: ws, counter, at_ms, op: JournalOp::EndLease(self.id) };
            let record = match counter.consumed(consumed, self.estimate) {
                Some(t) if t > 0 => Some(Entry { workspace_id: ws, counter, at_ms, op: JournalOp::Record(t) }),
                _ => None,
            };
            std::iter::once(end).chain(record)
        }));
    }
}
