//! The outage journal: what a replica did on its own counters while Redis could not answer
//! (requests admitted, token and concurrency leases taken and ended), replayed into Redis in
//! order, at the times it happened, as soon as Redis answers again. Also the outage's state:
//! whether Redis is being left alone after a failure.
use super::redis_limiter::{RedisLimiter, Replayed, SharedCounter};
use crate::gateway::clock::SharedClock;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// After a failure Redis is left alone this long: a black-holed Redis costs one request a
/// timeout per second, not every request.
const REDIS_RETRY_MS: u64 = 1_000;

/// What the journal holds at most (about 100 bytes each). Beyond it, an outage's admissions are
/// still limited on this replica's counters but no longer replayed into Redis (logged once).
const JOURNAL_MAX: usize = 500_000;

pub struct Journal {
    pub(super) redis: RedisLimiter,
    clock: SharedClock,
    pub(super) lease_ms: u64,
    /// When Redis may be asked again after a failure; 0 when it answered last (a deadline,
    /// now + REDIS_RETRY_MS, is never 0), so this one atomic is both the pause and the "outage
    /// logged" flag.
    retry_at_ms: AtomicU64,
    entries: Mutex<Entries>,
    /// The journal holds something: read on every check (a line written only on outages).
    pending: AtomicBool,
    /// One replay at a time; calls that find the journal pending wait for it.
    replay_gate: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Entries {
    entries: Vec<Entry>,
    /// Entries dropped for want of room since the last replay.
    dropped: u64,
}

pub struct Entry {
    pub workspace_id: i64,
    pub counter: SharedCounter,
    /// On the gateway's monotonic clock.
    pub at_ms: u64,
    pub op: JournalOp,
}

#[derive(Clone, Copy)]
pub enum JournalOp {
    Record(u64),
    Lease { amount: u64, id: u64 },
    EndLease(u64),
}

impl Journal {
    pub fn new(redis: RedisLimiter, clock: SharedClock, lease_ms: u64) -> Arc<Self> {
        Arc::new(Journal {
            redis,
            clock,
            lease_ms: lease_ms.max(3),
            retry_at_ms: AtomicU64::new(0),
            entries: Mutex::default(),
            pending: AtomicBool::new(false),
            replay_gate: tokio::sync::Mutex::new(()),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// When Redis may be asked again (0: it answered last).
    pub fn retry_at_ms(&self) -> u64 {
        self.retry_at_ms.load(Ordering::Relaxed)
    }

    /// Redis answered: the outage, if there was one, is over. Written only when an outage ends,
    /// so no shared cache line is written on every request by every serving thread.
    pub fn answered(&self, outage: u64) {
        if outage != 0 && self.retry_at_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("redis answers again: rate limits are shared across replicas");
        }
    }

    /// Redis failed at `now`: left alone for a while. Logged once per outage, not per request.
    pub fn outage_from(&self, now: u64, error: &str) {
        if self.retry_at_ms.swap(now + REDIS_RETRY_MS, Ordering::Relaxed) == 0 {
            tracing::error!(error, "redis unavailable: rate limits fall back to this replica's own counters");
        }
    }

    /// Whether something waits to be replayed.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Replays the journal, or waits for the replay under way; false when Redis failed.
    pub async fn replay_pending(&self) -> bool {
        let _one = self.replay_gate.lock().await;
        !self.pending.load(Ordering::Relaxed) || self.replay().await
    }

    /// Replays the journal into Redis on a task of its own.
    pub fn replay_soon(self: &Arc<Self>) {
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
            let mut j = self.entries.lock();
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
        let now = self.now_ms();
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
                    JournalOp::Record(amount) => Replayed::Record { counter, ago_ms, amount },
                    JournalOp::Lease { amount, id } => Replayed::Lease { counter, ago_ms, amount, lease_id: id },
                    JournalOp::EndLease(id) => Replayed::EndLease { counter, lease_id: id },
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
        let mut j = self.entries.lock();
        failed.append(&mut j.entries);
        j.entries = failed;
        self.pending.store(true, Ordering::Relaxed);
        false
    }

    pub fn write(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut j = self.entries.lock();
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
    pub fn waiting(&self) -> usize {
        self.entries.lock().entries.len()
    }
}
