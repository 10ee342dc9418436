//! Load-balancing policies as pure selection over endpoint indexes. A policy yields the first
//! candidate; failover continues through the rest in the order the policy gives.
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

pub enum Balancer {
    RoundRobin(AtomicUsize),
    Random(Mutex<rand::rngs::SmallRng>),
    /// Smooth weighted round-robin (nginx): every sum-of-weights consecutive picks split
    /// exactly by weight, interleaved rather than in runs.
    Weighted(Mutex<Swrr>),
}

pub struct Swrr {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl Swrr {
    pub fn new(weights: Vec<i64>) -> Self {
        let n = weights.len();
        Swrr { weights, current: vec![0; n] }
    }
    /// Next index among those `usable`; `None` when no usable endpoint has weight.
    pub fn next(&mut self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !usable(i) || self.weights[i] == 0 {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

impl Balancer {
    pub fn round_robin() -> Self {
        Balancer::RoundRobin(AtomicUsize::new(0))
    }
    pub fn random(seed: u64) -> Self {
        use rand::SeedableRng;
        Balancer::Random(Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)))
    }
    pub fn weighted(weights: Vec<i64>) -> Self {
        Balancer::Weighted(Mutex::new(Swrr::new(weights)))
    }

    /// The order in which to try `n` endpoints: the policy's pick first (among `usable` ones,
    /// or among all when none is usable), then the others, rotating from the pick.
    pub fn order(&self, n: usize, usable: &dyn Fn(usize) -> bool) -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        let any_usable = (0..n).any(usable);
        let ok = |i: usize| !any_usable || usable(i);
        let first = match self {
            Balancer::RoundRobin(next) => {
                // Strict rotation over the usable endpoints.
                let mut pick = 0;
                for _ in 0..n {
                    let i = next.fetch_add(1, Ordering::Relaxed) % n;
                    if ok(i) {
                        pick = i;
                        break;
                    }
                }
                pick
            }
            Balancer::Random(rng) => {
                use rand::Rng;
                let candidates: Vec<usize> = (0..n).filter(|&i| ok(i)).collect();
                candidates[rng.lock().gen_range(0..candidates.len())]
            }
            Balancer::Weighted(s) => {
                let mut s = s.lock();
                s.next(&ok).or_else(|| s.next(&|_| true)).unwrap_or(0)
            }
        };
        let mut out = Vec::with_capacity(n);
        out.push(first);
        // Failover: the usable ones first, then the cooled-down ones as a last resort.
        out.extend((1..n).map(|k| (first + k) % n).filter(|&i| usable(i)));
        out.extend((1..n).map(|k| (first + k) % n).filter(|&i| !usable(i)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const ALL: &dyn Fn(usize) -> bool = &|_| true;

    #[test]
    fn round_robin_rotates_strictly() {
        let b = Balancer::round_robin();
        let picks: Vec<usize> = (0..7).map(|_| b.order(3, ALL)[0]).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(b.order(3, ALL), [1, 2, 0], "failover continues in rotation");
    }

    #[test]
    fn round_robin_skips_cooled_endpoints_unless_all_are() {
        let b = Balancer::round_robin();
        let not1 = |i: usize| i != 1;
        let picks: Vec<usize> = (0..4).map(|_| b.order(3, &not1)[0]).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(b.order(3, &not1).last(), Some(&1), "cooled endpoint is the last resort");
        let none = |_: usize| false;
        assert_eq!(b.order(3, &none).len(), 3, "all down: still tries them all");
    }

    #[test]
    fn weighted_splits_every_100_exactly_and_interleaves() {
        let b = Balancer::weighted(vec![50, 30, 20]);
        for window in 0..5 {
            let mut counts = [0; 3];
            let mut seq = Vec::new();
            for _ in 0..100 {
                let i = b.order(3, ALL)[0];
                counts[i] += 1;
                seq.push(i);
            }
            assert_eq!(counts, [50, 30, 20], "window {window}");
            // Interleaved: never more than 2 of the heaviest in a row at 50%.
            assert!(seq.windows(3).all(|w| !(w[0] == 0 && w[1] == 0 && w[2] == 0)), "{seq:?}");
        }
        let b = Balancer::weighted(vec![5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| b.order(3, ALL)[0]).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0], "nginx's documented sequence for 5/1/1");
    }

    #[test]
    fn weighted_zero_weight_is_never_picked_first() {
        let b = Balancer::weighted(vec![0, 100]);
        assert!((0..50).all(|_| b.order(2, ALL)[0] == 1));
    }

    #[test]
    fn random_is_uniform_seeded() {
        let b = Balancer::random(42);
        let mut counts = [0u32; 4];
        let n = 40_000;
        for _ in 0..n {
            counts[b.order(4, ALL)[0]] += 1;
        }
        // Chi-square with 3 degrees of freedom; 16.27 is the 0.001 critical value.
        let e = n as f64 / 4.0;
        let chi: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi < 16.27, "{counts:?} chi2={chi}");
    }
}
