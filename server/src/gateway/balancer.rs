//! Load-balancing policies. A policy is a small trait: it picks one endpoint index among those
//! still eligible, and [`Balancer::candidates`] turns that pick into the order failover walks:
//! the pick, then the other usable endpoints, then the cooled-down ones as a last resort, each
//! at most once.
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many endpoints per model (`app::validate::MAX_ENDPOINTS`): a candidate set fits
/// in one `u64`.
pub const MAX_ENDPOINTS: usize = 64;

pub trait Balancer: Send + Sync {
    /// The policy's choice among the endpoints `0..n` for which `eligible` holds, or `None` when
    /// none of them qualifies (no weight, say).
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize>;

    /// Every endpoint of `0..n` (n ≤ [`MAX_ENDPOINTS`]), in the order to try them: the policy's
    /// pick among the `usable` ones first (among all of them when none is usable), then the
    /// remaining usable ones rotating from the pick, then the unusable ones.
    fn candidates(&self, n: usize, usable: &dyn Fn(usize) -> bool) -> Candidates {
        let n = n.min(MAX_ENDPOINTS);
        let all = if n == MAX_ENDPOINTS { u64::MAX } else { (1u64 << n) - 1 };
        // Health is read once, so an endpoint that cools down mid-request is not offered twice.
        let usable_mask = (0..n).filter(|&i| usable(i)).fold(0u64, |m, i| m | 1 << i);
        let first = if usable_mask != 0 { self.pick(n, &|i| usable_mask & (1 << i) != 0) } else { self.pick(n, &|_| true) };
        Candidates { n, first, start: first.unwrap_or(0), usable: usable_mask, left: all }
    }
}

/// The failover order of one request; see [`Balancer::candidates`].
pub struct Candidates {
    n: usize,
    first: Option<usize>,
    start: usize,
    usable: u64,
    /// Endpoints not yet yielded.
    left: u64,
}

impl Iterator for Candidates {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if let Some(f) = self.first.take() {
            self.left &= !(1 << f);
            return Some(f);
        }
        let next_in = |set: u64| (0..self.n).map(|k| (self.start + k) % self.n).find(|&i| set & (1 << i) != 0);
        let i = next_in(self.left & self.usable).or_else(|| next_in(self.left))?;
        self.left &= !(1 << i);
        Some(i)
    }
}

/// Strict rotation over the eligible endpoints.
#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        (0..n).map(|_| self.next.fetch_add(1, Ordering::Relaxed) % n).find(|&i| eligible(i))
    }
}

/// Uniform over the eligible endpoints; seeded, so tests can check the distribution.
pub struct Random {
    rng: Mutex<SmallRng>,
}

impl Random {
    pub fn new(seed: u64) -> Self {
        Random { rng: Mutex::new(SmallRng::seed_from_u64(seed)) }
    }
}

impl Balancer for Random {
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let count = (0..n).filter(|&i| eligible(i)).count();
        if count == 0 {
            return None;
        }
        let k = self.rng.lock().gen_range(0..count);
        (0..n).filter(|&i| eligible(i)).nth(k)
    }
}

/// Smooth weighted round-robin, as nginx: every sum-of-weights consecutive picks split exactly
/// by weight, interleaved rather than in runs. Weight 0 is never picked (a standby endpoint,
/// reached only by failover).
pub struct Weighted {
    state: Mutex<Swrr>,
}

struct Swrr {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl Weighted {
    pub fn new(weights: Vec<i64>) -> Self {
        let current = vec![0; weights.len()];
        Weighted { state: Mutex::new(Swrr { weights, current }) }
    }
}

impl Balancer for Weighted {
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut s = self.state.lock();
        let Swrr { weights, current } = &mut *s;
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..n.min(weights.len()) {
            if weights[i] <= 0 || !eligible(i) {
                continue;
            }
            current[i] += weights[i];
            total += weights[i];
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const ALL: &dyn Fn(usize) -> bool = &|_| true;

    fn first(b: &dyn Balancer, n: usize, usable: &dyn Fn(usize) -> bool) -> usize {
        b.candidates(n, usable).next().unwrap()
    }

    #[test]
    fn round_robin_rotates_strictly() {
        let b = RoundRobin::default();
        let picks: Vec<usize> = (0..7).map(|_| first(&b, 3, ALL)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(b.candidates(3, ALL).collect::<Vec<_>>(), [1, 2, 0], "failover continues in rotation");
    }

    #[test]
    fn cooled_endpoints_are_skipped_unless_all_are_and_come_last() {
        let b = RoundRobin::default();
        let not1 = |i: usize| i != 1;
        let picks: Vec<usize> = (0..4).map(|_| first(&b, 3, &not1)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(b.candidates(3, &not1).collect::<Vec<_>>(), [0, 2, 1], "cooled endpoint is the last resort");
        let none = |_: usize| false;
        let mut all_down: Vec<usize> = b.candidates(3, &none).collect();
        all_down.sort();
        assert_eq!(all_down, [0, 1, 2], "all down: still tries each once");
    }

    #[test]
    fn every_endpoint_is_offered_exactly_once() {
        for n in [1, 2, 5, 63, 64] {
            for b in [&RoundRobin::default() as &dyn Balancer, &Random::new(3), &Weighted::new(vec![1; n])] {
                let some: &dyn Fn(usize) -> bool = &|i| i % 3 != 0;
                let none: &dyn Fn(usize) -> bool = &|_| false;
                for usable in [some, ALL, none] {
                    let mut seen: Vec<usize> = b.candidates(n, usable).collect();
                    seen.sort();
                    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n}");
                }
            }
        }
    }

    #[test]
    fn weighted_splits_every_100_exactly_and_interleaves() {
        let b = Weighted::new(vec![50, 30, 20]);
        for window in 0..5 {
            let mut counts = [0; 3];
            let mut seq = Vec::new();
            for _ in 0..100 {
                let i = first(&b, 3, ALL);
                counts[i] += 1;
                seq.push(i);
            }
            assert_eq!(counts, [50, 30, 20], "window {window}");
            // Interleaved: never more than 2 of the heaviest in a row at 50%.
            assert!(seq.windows(3).all(|w| !(w[0] == 0 && w[1] == 0 && w[2] == 0)), "{seq:?}");
        }
        let b = Weighted::new(vec![5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| first(&b, 3, ALL)).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0], "nginx's documented sequence for 5/1/1");
    }

    #[test]
    fn weighted_zero_weight_is_only_a_standby() {
        let b = Weighted::new(vec![0, 100]);
        assert!((0..50).all(|_| b.candidates(2, ALL).collect::<Vec<_>>() == [1, 0]));
        // The weighted endpoint cooled down: the standby is usable, so it goes first.
        assert_eq!(b.candidates(2, &|i| i == 0).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn random_is_uniform_seeded() {
        let b = Random::new(42);
        let mut counts = [0u32; 4];
        let n = 40_000;
        for _ in 0..n {
            counts[first(&b, 4, ALL)] += 1;
        }
        // Chi-square with 3 degrees of freedom; 16.27 is the 0.001 critical value.
        let e = n as f64 / 4.0;
        let chi: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi < 16.27, "{counts:?} chi2={chi}");
        // Uniform over the usable ones only.
        let mut counts = [0u32; 4];
        for _ in 0..3_000 {
            counts[first(&b, 4, &|i| i != 2)] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!(counts.iter().enumerate().filter(|(i, _)| *i != 2).all(|(_, &c)| (900..1100).contains(&c)), "{counts:?}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// 1 to 8 endpoints whose weights (0 included: standbys) total exactly 100.
        fn weights() -> impl Strategy<Value = Vec<i64>> {
            proptest::collection::vec(0i64..=100, 0..8).prop_map(|mut cuts| {
                cuts.push(0);
                cuts.push(100);
                cuts.sort_unstable();
                cuts.windows(2).map(|w| w[1] - w[0]).collect()
            })
        }

        proptest! {
            #[test]
            fn weighted_splits_every_cycle_of_100_picks_exactly(w in weights()) {
                let b = Weighted::new(w.clone());
                for _cycle in 0..3 {
                    let mut counts = vec![0i64; w.len()];
                    for _ in 0..100 {
                        counts[b.pick(w.len(), ALL).unwrap()] += 1;
                    }
                    prop_assert_eq!(&counts, &w);
                }
            }

            #[test]
            fn round_robin_serves_each_endpoint_once_per_cycle(n in 1usize..32, skip in 0usize..32) {
                let b = RoundRobin::default();
                let usable = move |i: usize| n == 1 || i != skip % n;
                let eligible = if n == 1 { 1 } else { n - 1 };
                for _cycle in 0..3 {
                    let mut seen: Vec<usize> = (0..eligible).map(|_| b.pick(n, &usable).unwrap()).collect();
                    seen.sort_unstable();
                    seen.dedup();
                    prop_assert_eq!(seen.len(), eligible);
                }
            }

            #[test]
            fn failover_order_names_every_endpoint_once(w in weights()) {
                let b = Weighted::new(w.clone());
                let mut order: Vec<usize> = b.candidates(w.len(), ALL).collect();
                order.sort_unstable();
                prop_assert_eq!(order, (0..w.len()).collect::<Vec<_>>());
            }
        }
    }
}
