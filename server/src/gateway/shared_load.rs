//! Least busy across the cluster: each replica shares its calls in flight per endpoint through
//! Redis every [`PERIOD`] and reads the other replicas' sums, which the load-aware policies add
//! to their own live count (`Load::busy`).
//!
//! It costs the request path nothing: no Redis command per call, one script per replica per
//! period whatever the traffic (its size grows with the endpoints under a load-aware policy).
//! The bound on drift: a replica's view of another's count is at most one period plus a
//! round trip old, so two replicas' views of an endpoint differ by at most the calls that
//! started or ended on other replicas in that time. Counts are never negative: each replica
//! writes its own gauge (the guards of `load.rs` count it) and never adds to another's, and a
//! replica that stops heartbeating is dropped from the sums after [`STALE`]. A replica that
//! cannot reach Redis routes on its own count and says so once in its log.
use super::Gateway;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub const PERIOD: Duration = Duration::from_millis(100);
/// A replica whose heartbeat is older than this is left out of the sums.
const STALE: Duration = Duration::from_secs(1);

/// Shares `gw`'s load as replica `me` until the process ends.
pub fn spawn(gw: Arc<Gateway>, me: String) {
    if gw.admission.redis().is_none() {
        return;
    }
    tokio::spawn(async move {
        let Some(redis) = gw.admission.redis() else { return };
        let mut failing = false;
        loop {
            tokio::time::sleep(PERIOD).await;
            let snap = gw.snapshot();
            let loads: Vec<(i64, &Arc<super::load::Load>)> =
                snap.models.values().filter(|r| r.policy.counts_load()).flat_map(|r| r.endpoints.iter().map(|e| (e.id, &e.load))).collect();
            if loads.is_empty() {
                continue;
            }
            let mine: Vec<(i64, u64)> = loads.iter().map(|(id, l)| (*id, l.in_flight())).collect();
            match redis.share_load(&me, STALE.as_millis() as u64, &mine).await {
                Ok(others) => {
                    let others: HashMap<i64, u64> = others.into_iter().collect();
                    for (id, load) in &loads {
                        load.set_elsewhere(others.get(id).copied().unwrap_or(0));
                    }
                    if std::mem::take(&mut failing) {
                        tracing::info!("least-busy counts are shared through Redis again");
                    }
                }
                Err(e) => {
                    for (_, load) in &loads {
                        load.set_elsewhere(0);
                    }
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot share least-busy counts through Redis: routing on this replica's own counts");
                    }
                }
            }
        }
    });
}
