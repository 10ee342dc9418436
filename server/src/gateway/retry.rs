//! A model's retry policy as the failover loop applies it: which failed tries go on to the next
//! endpoint, how many tries a call makes, and a retry budget so that a failing fleet is not sent
//! its traffic twice over (Finagle's `RetryBudget`: a floor of retries per second, plus a share
//! of the calls).
//!
//! A try is only ever made before the answer's first byte went to the caller: once an upstream
//! answered, the answer streams back and nothing retries it (a stream cut mid-way is not
//! retried: the caller has part of it).
use super::record::FailReason;
use app::types::{RetryOn, RetryPolicy};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The policy of one model, compiled for the failover loop. Its budget is shared with the same
/// model's policy in the next snapshot (see `snapshot::assemble`).
pub struct Retry {
    /// `1 << RetryOn as u8` for each failure retried.
    on: u8,
    /// Tries per call, the first included; 0: each endpoint once.
    pub max_tries: u32,
    pub budget: std::sync::Arc<RetryBudget>,
}

impl Retry {
    pub fn new(policy: &RetryPolicy, budget: std::sync::Arc<RetryBudget>) -> Self {
        budget.set_percent(policy.budget_percent);
        Retry { on: policy.on.iter().fold(0, |bits, r| bits | 1 << *r as u8), max_tries: policy.max_tries, budget }
    }

    /// Whether a try that failed for `why` goes on to the next endpoint.
    pub fn retries(&self, why: FailReason) -> bool {
        let on = match why {
            FailReason::Status5xx => RetryOn::Status5xx,
            FailReason::Status429 => RetryOn::Status429,
            FailReason::ConnectTimeout | FailReason::Unreachable => RetryOn::Connect,
            FailReason::FirstByteTimeout => RetryOn::Timeout,
            // Never retried: part of the answer reached the caller.
            FailReason::BrokenBody => return false,
        };
        self.on & (1 << on as u8) != 0
    }

    /// Whether a call may make try number `tries + 1` (1-based) of `endpoints`.
    pub fn may_try(&self, tries: usize, endpoints: usize) -> bool {
        let max = if self.max_tries == 0 { endpoints } else { self.max_tries as usize };
        tries < max
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new(&RetryPolicy::default(), Default::default())
    }
}

/// Retries a model may spend: `FLOOR_PER_SEC` a second whatever the traffic (a quiet model
/// still fails over), plus `percent` % of its calls, banked up to `BANK` retries. Lock-free: a
/// call deposits with one atomic add, a retry withdraws with one compare-and-swap.
pub struct RetryBudget {
    /// What the calls deposited, in thousandths of a retry.
    banked_milli: AtomicI64,
    /// The floor as a rate: the earliest time (ms on the gateway's clock) its next retry is
    /// free, allowed to run up to `FLOOR_BURST` retries ahead (GCRA).
    floor_next_ms: AtomicU64,
    percent: AtomicU64,
}

/// Retries a second the budget always allows, and how many of them may come at once (ten
/// seconds' worth, as Finagle's default: a burst of calls meeting a dead endpoint at once all
/// fail over; a fleet failing for longer gets the floor's rate and its share).
pub const FLOOR_PER_SEC: u64 = 10;
pub const FLOOR_BURST: u64 = 100;
/// The most retries calls can bank (so that a calm hour does not buy a storm).
const BANK: i64 = 100;

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget { banked_milli: AtomicI64::new(0), floor_next_ms: AtomicU64::new(0), percent: AtomicU64::new(20) }
    }
}

impl RetryBudget {
    fn set_percent(&self, p: u32) {
        self.percent.store(u64::from(p.min(100)), Ordering::Relaxed);
    }

    /// A call of the model started: it adds its share.
    pub fn deposit(&self) {
        let p = self.percent.load(Ordering::Relaxed) as i64;
        if p == 0 || p >= 100 {
            return;
        }
        // May overshoot the bank by one call's share under a race: harmless, it is a cap.
        if self.banked_milli.load(Ordering::Relaxed) < BANK * 1000 {
            self.banked_milli.fetch_add(p * 10, Ordering::Relaxed);
        }
    }

    /// Spends one retry if the budget has one: the floor first, then what the calls banked.
    pub fn withdraw(&self, now_ms: u64) -> bool {
        if self.percent.load(Ordering::Relaxed) >= 100 {
            return true;
        }
        let interval = 1000 / FLOOR_PER_SEC;
        let floor = self.floor_next_ms.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            let next = next.max(now_ms);
            (next <= now_ms + interval * (FLOOR_BURST - 1)).then_some(next + interval)
        });
        if floor.is_ok() {
            return true;
        }
        self.banked_milli.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| (b >= 1000).then_some(b - 1000)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_allows_ten_a_second_and_the_calls_bank_their_share() {
        let b = RetryBudget::default(); // 20 %
                                        // The floor: a burst of 100, then one per 100 ms.
        assert_eq!((0..500).filter(|_| b.withdraw(1_000)).count(), 100);
        assert!(!b.withdraw(1_050));
        assert!(b.withdraw(1_100));
        // 100 calls bank 20 retries.
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!((0..50).filter(|_| b.withdraw(1_100)).count(), 20);
        // The bank is capped: 10,000 calls bank at most 100 (+ a call's share).
        for _ in 0..10_000 {
            b.deposit();
        }
        assert_eq!((0..1000).filter(|_| b.withdraw(1_100)).count(), 100);
        // A second later the floor has 10 more.
        assert_eq!((0..50).filter(|_| b.withdraw(2_100)).count(), 10);
    }

    #[test]
    fn no_budget_at_100_percent_and_only_the_floor_at_0() {
        let b = RetryBudget::default();
        b.set_percent(100);
        assert!((0..1000).all(|_| b.withdraw(0)));
        b.set_percent(0);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!((0..1000).filter(|_| b.withdraw(5_000)).count(), 100);
    }

    #[test]
    fn the_policy_names_what_it_retries() {
        let r = Retry::new(&RetryPolicy { on: vec![RetryOn::Connect], max_tries: 2, budget_percent: 20 }, Default::default());
        assert!(r.retries(FailReason::Unreachable) && r.retries(FailReason::ConnectTimeout));
        assert!(!r.retries(FailReason::Status5xx) && !r.retries(FailReason::Status429) && !r.retries(FailReason::FirstByteTimeout));
        assert!(!r.retries(FailReason::BrokenBody));
        assert!(r.may_try(1, 4) && !r.may_try(2, 4));
        let every = Retry::default();
        assert!(every.may_try(3, 4) && !every.may_try(4, 4));
    }
}
