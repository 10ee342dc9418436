//! Load-balancing policies. A policy is a small trait: it picks one endpoint index among those
//! still eligible (a pure selection over the candidates, as pingora's `select_with`; health is
//! the filter passed in), and [`Balancer::candidates`] turns that pick into the order failover
//! walks: the pick, then the other usable endpoints, then the cooled-down ones as a last
//! resort, each at most once. The load-aware policies read each endpoint's [`Load`].
use super::load::Load;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// At most this many endpoints per model (`app::validate::MAX_ENDPOINTS`): a candidate set fits
/// in one `u64`.
pub const MAX_ENDPOINTS: usize = 64;

pub trait Balancer: Send + Sync {
    /// The policy's choice among the endpoints `0..n` for which `eligible` holds, or `None` when
    /// none of them qualifies (no weight, say).
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize>;

    /// The choice for a call whose affinity key hashes to `key` (only cache affinity reads it).
    fn pick_for(&self, n: usize, eligible: &dyn Fn(usize) -> bool, _key: Option<u64>) -> Option<usize> {
        self.pick(n, eligible)
    }

    /// Every endpoint of `0..n` (n ≤ [`MAX_ENDPOINTS`]), in the order to try them: the policy's
    /// pick among the `usable` ones first (among all of them when none is usable), then the
    /// remaining usable ones rotating from the pick, then the unusable ones.
    fn candidates(&self, n: usize, usable: &dyn Fn(usize) -> bool) -> Candidates {
        self.candidates_for(n, usable, None)
    }

    /// [`Self::candidates`] for a call with an affinity key.
    fn candidates_for(&self, n: usize, usable: &dyn Fn(usize) -> bool, key: Option<u64>) -> Candidates {
        let n = n.min(MAX_ENDPOINTS);
        let all = if n == MAX_ENDPOINTS { u64::MAX } else { (1u64 << n) - 1 };
        // Health is read once, so an endpoint that cools down mid-request is not offered twice.
        let usable_mask = (0..n).filter(|&i| usable(i)).fold(0u64, |m, i| m | 1 << i);
        let first =
            if usable_mask != 0 { self.pick_for(n, &|i| usable_mask & (1 << i) != 0, key) } else { self.pick_for(n, &|_| true, key) };
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

/// Fewest calls in flight (ties taken in turn, so an idle fleet is not all sent to the first).
pub struct LeastBusy {
    loads: Vec<Arc<Load>>,
    next: AtomicUsize,
}

impl LeastBusy {
    pub fn new(loads: Vec<Arc<Load>>) -> Self {
        LeastBusy { loads, next: AtomicUsize::new(0) }
    }
}

impl Balancer for LeastBusy {
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = n.min(self.loads.len());
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(|k| (start + k) % n).filter(|&i| eligible(i)).min_by_key(|&i| self.loads[i].busy())
    }
}

/// Lowest recent time to first byte, with one call in [`EXPLORE`] sent to any eligible
/// endpoint so a slow one that recovers is noticed; endpoints not measured yet go first.
pub struct Fastest {
    loads: Vec<Arc<Load>>,
    rng: Mutex<SmallRng>,
}

/// One call in this many explores (uniform over the eligible endpoints).
pub const EXPLORE: u32 = 16;

impl Fastest {
    pub fn new(loads: Vec<Arc<Load>>, seed: u64) -> Self {
        Fastest { loads, rng: Mutex::new(SmallRng::seed_from_u64(seed)) }
    }
}

impl Balancer for Fastest {
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = n.min(self.loads.len());
        let (explore, k) = {
            let mut rng = self.rng.lock();
            (rng.gen_range(0..EXPLORE) == 0, rng.gen_range(0..n.max(1)))
        };
        if explore {
            let count = (0..n).filter(|&i| eligible(i)).count();
            if count > 0 {
                return (0..n).filter(|&i| eligible(i)).nth(k % count);
            }
        }
        (0..n).filter(|&i| eligible(i)).min_by_key(|&i| self.loads[i].ttfb_us().map_or(0, |t| t.saturating_add(1)))
    }
}

/// Cache affinity: a conversation's calls go to one endpoint while it is usable and not
/// overloaded. Rendezvous hashing of the call's key with each endpoint's id (removing an
/// endpoint moves only the conversations it had; ids, not positions, so an edit that reorders
/// the rows moves nothing), bounded load: an endpoint is passed over while it holds more than
/// [`LOAD_BOUND`] times its share of the calls in flight, the next by score takes the call. A
/// call without a key goes to the least busy.
pub struct Affinity {
    /// The endpoints' ids, mixed.
    ids: Vec<u64>,
    least_busy: LeastBusy,
}

/// How far above an even share of the calls in flight an endpoint may go before its
/// conversations spill to their next endpoint (1.25: the bound of consistent hashing with
/// bounded loads, Mirrokni et al.).
pub const LOAD_BOUND: (u64, u64) = (5, 4);

impl Affinity {
    pub fn new(ids: Vec<i64>, loads: Vec<Arc<Load>>) -> Self {
        // Mixed once here: a score is then one mix per endpoint.
        Affinity { ids: ids.into_iter().map(|i| mix(i as u64)).collect(), least_busy: LeastBusy::new(loads) }
    }
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Balancer for Affinity {
    fn pick(&self, n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.least_busy.pick(n, eligible)
    }

    fn pick_for(&self, n: usize, eligible: &dyn Fn(usize) -> bool, key: Option<u64>) -> Option<usize> {
        let Some(key) = key else { return self.pick(n, eligible) };
        let n = n.min(self.ids.len());
        let loads = &self.least_busy.loads;
        let (mut total, mut count) = (0u64, 0u64);
        for i in (0..n).filter(|&i| eligible(i)) {
            total += loads[i].busy();
            count += 1;
        }
        if count == 0 {
            return None;
        }
        // This call included, spread evenly, times the bound (rounded up).
        let cap = ((total + 1) * LOAD_BOUND.0).div_ceil(count * LOAD_BOUND.1);
        // The best score under the bound, else (every endpoint past it) the best score.
        let mut under: Option<(u64, usize)> = None;
        let mut top: Option<(u64, usize)> = None;
        for i in (0..n).filter(|&i| eligible(i)) {
            let s = mix(key ^ self.ids[i]);
            if top.is_none_or(|(t, _)| s > t) {
                top = Some((s, i));
            }
            if loads[i].busy() < cap && under.is_none_or(|(u, _)| s > u) {
                under = Some((s, i));
            }
        }
        under.or(top).map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const ALL: &dyn Fn(usize) -> bool = &|_| true;

    fn loads(in_flight: &[u64]) -> Vec<Arc<Load>> {
        in_flight
            .iter()
            .map(|&n| {
                let l = Arc::new(Load::default());
                for _ in 0..n {
                    std::mem::forget(l.enter());
                }
                l
            })
            .collect()
    }

    #[test]
    fn least_busy_picks_the_fewest_in_flight_and_takes_ties_in_turn() {
        let b = LeastBusy::new(loads(&[5, 0, 2]));
        assert!((0..10).all(|_| first(&b, 3, ALL) == 1));
        assert_eq!(first(&b, 3, &|i| i != 1), 2, "the least busy of the usable ones");
        let idle = LeastBusy::new(loads(&[0, 0, 0]));
        let mut picks: Vec<usize> = (0..6).map(|_| first(&idle, 3, ALL)).collect();
        picks.sort_unstable();
        assert_eq!(picks, [0, 0, 1, 1, 2, 2], "an idle fleet is shared, not all sent to the first");
        // A guard counts while it lives, and only then: never below zero.
        let l = Arc::new(Load::default());
        let (a, c) = (l.enter(), l.enter());
        assert_eq!(l.in_flight(), 2);
        drop((a, c));
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn fastest_sends_most_to_the_fastest_and_a_share_to_the_others() {
        let l = loads(&[0, 0]);
        let b = Fastest::new(l.clone(), 7);
        // Not measured yet: tried first.
        l[0].observe_ttfb(100_000);
        assert!((0..20).filter(|_| first(&b, 2, ALL) == 1).count() >= 15, "the unmeasured one goes first");
        l[1].observe_ttfb(5_000);
        let mut counts = [0u32; 2];
        for _ in 0..3_200 {
            counts[first(&b, 2, ALL)] += 1;
        }
        // 1 in 16 explores, half of those land on the slow one: ~100 of 3,200.
        assert!(counts[1] >= 2_900, "{counts:?}");
        assert!((50..=150).contains(&counts[0]), "the slow one keeps its probe share: {counts:?}");
        // It recovers: its average follows within a few answers, and so does the split.
        for _ in 0..8 {
            l[0].observe_ttfb(1_000);
        }
        let fast_now = (0..1_000).filter(|_| first(&b, 2, ALL) == 0).count();
        assert!(fast_now >= 900, "{fast_now}");
    }

    #[test]
    fn affinity_keeps_each_key_on_one_endpoint_and_moves_only_a_removed_endpoints_keys() {
        let ids = vec![11, 12, 13, 14];
        let b = Affinity::new(ids.clone(), loads(&[0, 0, 0, 0]));
        let key = |k: u64| Some(mix(k));
        let home: Vec<usize> = (0..50).map(|k| b.candidates_for(4, ALL, key(k)).next().unwrap()).collect();
        for _ in 0..20 {
            for k in 0..50 {
                assert_eq!(b.candidates_for(4, ALL, key(k)).next().unwrap(), home[k as usize]);
            }
        }
        let mut spread = [0; 4];
        home.iter().for_each(|&i| spread[i] += 1);
        assert!(spread.iter().all(|&c| c >= 5), "keys spread over the endpoints: {spread:?}");
        // Endpoint 13 removed (the others keep their ids, at new positions): only its keys move.
        let b3 = Affinity::new(vec![11, 12, 14], loads(&[0, 0, 0]));
        for k in 0..50u64 {
            let now = [11, 12, 14][b3.candidates_for(3, ALL, key(k)).next().unwrap()];
            if ids[home[k as usize]] != 13 {
                assert_eq!(now, ids[home[k as usize]], "key {k} moved");
            }
        }
        // Unusable: its keys go elsewhere for now, the others stay.
        let not0 = |i: usize| i != 0;
        for k in 0..50u64 {
            let now = b.candidates_for(4, &not0, key(k)).next().unwrap();
            assert!(now != 0 && (home[k as usize] == 0 || now == home[k as usize]));
        }
        // Overloaded past the bound: its conversations spill to their next endpoint.
        let busy = Affinity::new(ids.clone(), loads(&[40, 0, 0, 0]));
        for k in 0..50u64 {
            assert_ne!(busy.candidates_for(4, ALL, key(k)).next().unwrap(), 0);
        }
        // No key: the least busy.
        let keyless = busy.candidates_for(4, &|i| i != 1, None).next().unwrap();
        assert!(keyless == 2 || keyless == 3, "{keyless}");
    }

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
