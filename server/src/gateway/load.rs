//! What the load-aware policies read of each endpoint: its calls in flight (counted by a guard
//! a try takes and its answer gives back when it ends, so the count can never go negative,
//! the drift LiteLLM's least-busy users report) and a decaying average of its time to first
//! byte. One per endpoint, carried across snapshots as its health is.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Not measured yet.
const UNMEASURED: u64 = u64::MAX;

#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU64,
    /// Calls in flight on the other replicas of the cluster, as last read from Redis (0 without
    /// Redis, or when it cannot be reached: this replica then routes on its own count).
    elsewhere: AtomicU64,
    /// Exponentially weighted time to first byte, in µs ([`UNMEASURED`] before the first).
    ttfb_us: AtomicU64,
}

impl Default for Load {
    fn default() -> Self {
        Load { in_flight: AtomicU64::new(0), elsewhere: AtomicU64::new(0), ttfb_us: AtomicU64::new(UNMEASURED) }
    }
}

/// One call in flight on an endpoint, until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Load>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Load {
    /// A call starts on the endpoint; it is counted until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Calls in flight on this replica.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls in flight across the cluster: this replica's now, the others' as last shared.
    pub fn busy(&self) -> u64 {
        self.in_flight() + self.elsewhere.load(Ordering::Relaxed)
    }

    pub fn set_elsewhere(&self, n: u64) {
        self.elsewhere.store(n, Ordering::Relaxed);
    }

    /// A try's time to first byte: weighs half against the average so far, so an endpoint
    /// that changed speed is seen at its new speed after a handful of answers (which the
    /// fastest policy's exploring share brings a slow one within a few hundred calls).
    pub fn observe_ttfb(&self, us: u64) {
        let us = us.min(UNMEASURED - 1);
        let _ = self
            .ttfb_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| Some(if old == UNMEASURED { us } else { old / 2 + us / 2 }));
    }

    /// The average time to first byte, µs; `None` before the first answer.
    pub fn ttfb_us(&self) -> Option<u64> {
        Some(self.ttfb_us.load(Ordering::Relaxed)).filter(|&t| t != UNMEASURED)
    }
}
