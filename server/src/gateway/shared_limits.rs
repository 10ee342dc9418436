//! Rate limits shared by every replica of a cluster through Redis, and what happens when Redis
//! cannot answer.
//!
//! Every call is checked in Redis (one script for all its rules, see [`super::redis_limiter`])
//! and also recorded in this replica's own counters, unchecked. When Redis fails, the replica
//! limits on those counters alone, and they start from what this replica admitted itself in
//! each window, through Redis or not. What it does on them meanwhile (requests admitted, token
//! and concurrency leases taken and ended) goes into a journal that is replayed into Redis, in
//! order and at the times it happened, as soon as Redis answers again. So:
//!
//! - during an outage each replica admits at most `limit` in any window, counting what it
//!   admitted through Redis before: at most replicas × limit in all;
//! - once Redis is back and has the journals, it knows every admission of the window and the
//!   limit is shared and exact again; a window that overlaps the outage's end still holds at
//!   most replicas × limit (each replica's own share stays bounded by its counters);
//! - a connection that broke while Redis was away is retried once on a new one before it counts
//!   as a failure (see [`RedisLimiter`]), so Redis coming back does not start a second outage.
//!
//! Token reservations and concurrency places are leases in Redis, renewed while the call runs;
//! a replica that dies holding them frees them when they run out (`lease_ms`). Their end (the
//! tokens consumed) is sent without making the client wait: one script call per call, pipelined
//! on the serving thread's multiplexed connection with the other calls' checks.
use super::limiter::{Admitted, Limiter, RuleCheck};
use super::quota::{self, QuotaCheck};
use super::redis_limiter::{LeaseArgs, RedisLimiter, Refused, Replayed, SharedCounter, SharedQuota};
use super::Refusal;
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// After a failure Redis is left alone this long: a black-holed Redis costs one request a
/// timeout per second, not every request.
const REDIS_RETRY_MS: u64 = 1_000;

/// What the journal holds at most (about 100 bytes each). Beyond it, an outage's admissions are
/// still limited on this replica's counters but no longer replayed into Redis (logged once).
const JOURNAL_MAX: usize = 500_000;

pub struct SharedLimits {
    redis: RedisLimiter,
    /// This replica's own counters (see the module's documentation).
    pub(super) local: Limiter,
    /// When Redis may be asked again after a failure; 0 when it answered last (a deadline,
    /// now + REDIS_RETRY_MS, is never 0), so this one atomic is both the pause and the "outage
    /// logged" flag.
    retry_at_ms: AtomicU64,
    journal: Mutex<Journal>,
    /// The journal holds something: read on every check (a line written only on outages).
    pending: AtomicBool,
    /// One replay at a time; calls that find the journal pending wait for it (see [`Self::check`]).
    replay_gate: tokio::sync::Mutex<()>,
    lease_ms: u64,
}

#[derive(Default)]
struct Journal {
    entries: Vec<Entry>,
    /// Entries dropped for want of room since the last replay.
    dropped: u64,
}

struct Entry {
    workspace_id: i64,
    counter: SharedCounter,
    /// On the local counters' clock.
    at_ms: u64,
    op: Op,
}

#[derive(Clone, Copy)]
enum Op {
    Record(u64),
    Lease { amount: u64, id: u64 },
    EndLease(u64),
}

impl SharedLimits {
    pub fn new(redis: RedisLimiter, local: Limiter, lease_ms: u64) -> Arc<Self> {
        Arc::new(SharedLimits {
            redis,
            local,
            retry_at_ms: AtomicU64::new(0),
            journal: Mutex::default(),
            pending: AtomicBool::new(false),
            replay_gate: tokio::sync::Mutex::new(()),
            lease_ms: lease_ms.max(3),
        })
    }

    /// Checks the call against `rules` and `quotas` (all of one caller, in `workspace_id`) at
    /// wall time `now_secs`, reserving `estimate` tokens in token rules and token budgets.
    pub async fn check(
        self: &Arc<Self>,
        workspace_id: i64,
        rules: &[&RuleCheck],
        quotas: &[&QuotaCheck],
        now_secs: i64,
        estimate: u64,
    ) -> Result<Admitted, Refusal> {
        if rules.is_empty() && quotas.is_empty() {
            return Ok(Admitted::default());
        }
        let now = self.local.now_ms();
        let shared_quotas: SmallVec<[SharedQuota; 4]> = quotas.iter().flat_map(|q| q.shared(now_secs)).collect();
        let holds = rules.iter().any(|r| SharedCounter::Rule(r.key).leased()) || shared_quotas.iter().any(|q| q.counter.leased());
        let lease_id = if holds { rand::random::<u64>() } else { 0 };
        let outage = self.retry_at_ms.load(Ordering::Relaxed);
        // What this replica admitted on its own goes into Redis before anything else does, so
        // Redis never admits on a window that lacks this replica's share of it.
        if now >= outage && self.pending.load(Ordering::Relaxed) && !self.replay_pending().await {
            self.outage_from(now, "could not replay the outage journal");
        } else if now >= outage {
            match self.redis.check(workspace_id, rules, &shared_quotas, LeaseArgs { estimate, lease_id, lease_ms: self.lease_ms }).await {
                Ok(decision) => {
                    // Written only when an outage ends: no shared cache line is written on every
                    // request by every serving thread.
                    if outage != 0 && self.retry_at_ms.swap(0, Ordering::Relaxed) != 0 {
                        tracing::info!("redis answers again: rate limits are shared across replicas");
                    }
                    let shared = decision.map_err(|refused| match refused {
                        Refused::Rule(r) => Refusal::Rate(r),
                        Refused::Quota(i) => {
                            let SharedCounter::Quota { key, budget, .. } = shared_quotas[i].counter else {
                                unreachable!("quota counters only")
                            };
                            let q = quotas.iter().find(|q| q.key == key).expect("each shared budget is one of the call's quotas");
                            Refusal::Quota(q.exceeded(now_secs, budget))
                        }
                    })?;
                    let mut admitted = self.local.record(rules, estimate);
                    quota::record(quotas, now_secs, estimate, admitted.lease.quotas());
                    admitted.requests = shared.requests;
                    admitted.tokens = shared.tokens;
                    if holds {
                        admitted.lease.hold_shared(SharedLease::new(
                            self,
                            workspace_id,
                            lease_id,
                            counters(rules, &shared_quotas),
                            estimate,
                            false,
                        ));
                    }
                    return Ok(admitted);
                }
                Err(e) => self.outage_from(now, &e.to_string()),
            }
        }
        let mut admitted = super::check_locally(&self.local, rules, quotas, now_secs, estimate)?;
        let all = counters(rules, &shared_quotas);
        self.journal(all.iter().map(|&counter| {
            let op = match counter {
                c if !c.leased() => Op::Record(1),
                c if c.counts_tokens() => Op::Lease { amount: estimate, id: lease_id },
                _ => Op::Lease { amount: 1, id: lease_id },
            };
            Entry { workspace_id, counter, at_ms: now, op }
        }));
        if holds {
            admitted.lease.hold_shared(SharedLease::new(self, workspace_id, lease_id, all, estimate, true));
        }
        Ok(admitted)
    }

    /// Redis failed at `now`: left alone for a while. Logged once per outage, not per request.
    fn outage_from(&self, now: u64, error: &str) {
        if self.retry_at_ms.swap(now + REDIS_RETRY_MS, Ordering::Relaxed) == 0 {
            tracing::error!(error, "redis unavailable: rate limits fall back to this replica's own counters");
        }
    }

    /// Replays the journal, or waits for the replay under way; false when Redis failed.
    async fn replay_pending(&self) -> bool {
        let _one = self.replay_gate.lock().await;
        !self.pending.load(Ordering::Relaxed) || self.replay().await
    }

    /// Replays the journal into Redis on a task of its own.
    fn replay_soon(self: &Arc<Self>) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let this = self.clone();
            rt.spawn(async move { this.replay_pending().await });
        }
    }

    /// Writes the journal into Redis, one script per workspace (a Redis Cluster slot), oldest
    /// first; on a failure, what was not written goes back to the front of the journal (and
    /// false is returned).
    async fn replay(&self) -> bool {
        let (entries, dropped) = {
            let mut j = self.journal.lock();
            self.pending.store(false, Ordering::Relaxed);
            (std::mem::take(&mut j.entries), std::mem::take(&mut j.dropped))
        };
        if dropped > 0 {
            tracing::warn!(dropped, "the outage journal was full: some admissions made while redis was away are not in redis");
        }
        if entries.is_empty() {
            return true;
        }
        let mut by_workspace: std::collections::BTreeMap<i64, Vec<Entry>> = Default::default();
        for e in entries {
            by_workspace.entry(e.workspace_id).or_default().push(e);
        }
        let now = self.local.now_ms();
        let mut failed: Vec<Entry> = Vec::new();
        for (_, entries) in by_workspace {
            if !failed.is_empty() {
                failed.extend(entries);
                continue;
            }
            let mut counters: Vec<SharedCounter> = Vec::new();
            let mut ops = Vec::with_capacity(entries.len());
            for e in &entries {
                let counter = counters.iter().position(|c| *c == e.counter).unwrap_or_else(|| {
                    counters.push(e.counter);
                    counters.len() - 1
                });
                let ago_ms = now.saturating_sub(e.at_ms);
                ops.push(match e.op {
                    Op::Record(amount) => Replayed::Record { counter, ago_ms, amount },
                    Op::Lease { amount, id } => Replayed::Lease { counter, ago_ms, amount, lease_id: id },
                    Op::EndLease(id) => Replayed::EndLease { counter, lease_id: id },
                });
            }
            let workspace_id = entries[0].workspace_id;
            if let Err(e) = self.redis.replay(workspace_id, &counters, &ops, self.lease_ms).await {
                tracing::warn!(error = %e, "could not replay the outage journal into redis; will retry");
                failed.extend(entries);
            }
        }
        if failed.is_empty() {
            return true;
        }
        let mut j = self.journal.lock();
        failed.append(&mut j.entries);
        j.entries = failed;
        self.pending.store(true, Ordering::Relaxed);
        false
    }

    fn journal(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut j = self.journal.lock();
        for e in entries {
            if j.entries.len() < JOURNAL_MAX {
                j.entries.push(e);
            } else {
                j.dropped += 1;
            }
        }
        drop(j);
        self.pending.store(true, Ordering::Relaxed);
    }

    /// Entries waiting to be replayed (for tests).
    pub fn journal_len(&self) -> usize {
        self.journal.lock().entries.len()
    }
}

/// The counters a call counts in, each once (rules on one counter, say 10/min and 6/min on one
/// key, share it): its rules', then its quotas' budgets.
fn counters(rules: &[&RuleCheck], quotas: &[SharedQuota]) -> SmallVec<[SharedCounter; 4]> {
    let rules =
        rules.iter().enumerate().filter(|&(i, r)| !rules[..i].iter().any(|o| o.key == r.key)).map(|(_, r)| SharedCounter::Rule(r.key));
    rules.chain(quotas.iter().map(|q| q.counter)).collect()
}

/// What a call holds in Redis (or, admitted during an outage, in the journal): its lease on
/// token and concurrency counters, renewed while it runs and ended with it.
pub struct SharedLease {
    limits: Arc<SharedLimits>,
    workspace_id: i64,
    id: u64,
    /// Those it holds a lease on.
    counters: SmallVec<[SharedCounter; 2]>,
    estimate: u64,
    /// Taken on the local counters while Redis was away: its end goes to the journal too, after
    /// its start.
    journaled: bool,
    renewer: Option<tokio::task::AbortHandle>,
}

impl SharedLease {
    /// The lease `id` on the leased ones of `counters`.
    fn new(
        limits: &Arc<SharedLimits>,
        workspace_id: i64,
        id: u64,
        counters: SmallVec<[SharedCounter; 4]>,
        estimate: u64,
        journaled: bool,
    ) -> Self {
        let counters: SmallVec<[SharedCounter; 2]> = counters.into_iter().filter(|c| c.leased()).collect();
        // Renewed every third of its length while the call runs (a stream may outlast it).
        let renewer = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (limits, keys) = (limits.clone(), counters.clone());
            let every = std::time::Duration::from_millis(limits.lease_ms / 3);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // A failure is left to the next renewal (or the lease runs out, as a dead
                    // replica's does).
                    let _ = limits.redis.renew(workspace_id, &keys, id, limits.lease_ms).await;
                }
            })
            .abort_handle()
        });
        SharedLease { limits: limits.clone(), workspace_id, id, counters, estimate, journaled, renewer }
    }

    /// The call ended: `consumed` as [`super::limiter::Lease`]'s end takes it (`None`: it never ran;
    /// `Some(None)`: usage unknown, the estimate stands).
    pub(super) fn end(mut self, consumed: Option<Option<u64>>) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let tokens = consumed.map(|t| t.unwrap_or(self.estimate));
        let rt = tokio::runtime::Handle::try_current().ok();
        match rt {
            Some(rt) if !self.journaled => {
                rt.spawn(async move {
                    if self.limits.redis.settle(self.workspace_id, &self.counters, self.id, tokens).await.is_err() {
                        self.journal_end(tokens);
                    }
                });
            }
            _ => {
                self.journal_end(tokens);
                if self.limits.retry_at_ms.load(Ordering::Relaxed) == 0 {
                    self.limits.replay_soon();
                }
            }
        }
    }

    fn journal_end(&self, tokens: Option<u64>) {
        let at_ms = self.limits.local.now_ms();
        let ws = self.workspace_id;
        self.limits.journal(self.counters.iter().flat_map(|&counter| {
            let end = Entry { workspace_id: ws, counter, at_ms, op: Op::EndLease(self.id) };
            let record = match tokens {
                Some(t) if t > 0 && counter.counts_tokens() => Some(Entry { workspace_id: ws, counter, at_ms, op: Op::Record(t) }),
                _ => None,
            };
            std::iter::once(end).chain(record)
        }));
    }
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}
