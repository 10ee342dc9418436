//! Rate limiting of three kinds, every rule checked atomically with the others that apply:
//!
//! - **requests** per window: sliding window, no window of `duration` ever admits more than
//!   `limit`, under any concurrency;
//! - **tokens** per window: a call is admitted only while the tokens consumed in the window plus
//!   the tokens reserved by calls in flight are below the limit. Admission reserves an estimate
//!   (the caller's); the call's end replaces it by the real usage ([`RuleHold::settle`]; unknown
//!   usage keeps the estimate). So a window consumes at most its limit plus the overshoot of the
//!   calls that were in flight when it filled (each beyond its estimate), never more;
//! - **concurrent** calls: in flight at once, released when the call's [`RuleHold`] is dropped
//!   (a stream's end, the client leaving, an error).
//!
//! Windows are sliding logs, run-length encoded per tick (1 ms for windows up to 1 s, a
//! thousandth of the window beyond), so a busy counter holds about 1,000 entries and capacity
//! frees at most 0.1% of the window late, never early. Consumed tokens are stamped when the
//! call ends (later than it began: conservative). A request is checked against every
//! applicable rule with all their counters locked and is recorded in all of them only if all
//! admit it, so a rejection consumes nothing anywhere.
//!
//! Counters belong to the configuration, not to a table looked up per request: the snapshot
//! gives each rule its [`Counter`] (carried over from the previous snapshot for the same
//! [`CounterKey`]), so a check is one lock on memory of its own, not a hash probe into a shared
//! map of every active key; and memory is bounded by the rules configured, not by the keys that
//! happen to be active. Counters that fall idle give back what they spilled to the heap
//! ([`Counter::release_idle`], run by the gateway's heartbeat).
use super::hold::Consumed;
use crate::gateway::clock::{Clock, SharedClock};
use app::types::{RuleKind, RuleTarget};
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use std::borrow::Borrow;
use std::sync::Arc;

/// A counter's identity survives config reloads as long as the rule means the same thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub model_id: i64,
    pub target: RuleTarget,
    pub subject_id: i64,
    pub kind: RuleKind,
    /// The window; 0 for concurrency.
    pub duration_ms: u64,
}

#[derive(Clone, Debug)]
pub struct RuleCheck {
    pub key: CounterKey,
    pub limit: u64,
    /// Names the rule in the 429 (`x-maas-ratelimit-rule`).
    pub label: String,
    /// Where this process counts the rule's admissions, always over the key's window; rules
    /// with the same key share one, so each request is counted once however many apply.
    counter: Arc<Counter>,
}

impl RuleCheck {
    /// A rule with a counter of its own.
    pub fn new(key: CounterKey, limit: u64, label: String) -> Self {
        RuleCheck { key, limit, label, counter: Arc::new(Counter::new(key)) }
    }

    /// A rule counting in `counters`' counter for its key (made there if it has none yet): how
    /// a snapshot keeps counts across reloads and shares them between rules on one key.
    pub fn counted_in(counters: &mut rustc_hash::FxHashMap<CounterKey, Arc<Counter>>, key: CounterKey, limit: u64, label: String) -> Self {
        let counter = counters.entry(key).or_insert_with(|| Arc::new(Counter::new(key))).clone();
        RuleCheck { key, limit, label, counter }
    }

    /// Another rule on the same key and window (say 6/min beside 10/min), sharing the counter.
    pub fn with_limit(&self, limit: u64, label: String) -> Self {
        RuleCheck { limit, label, ..self.clone() }
    }

    pub fn counter(&self) -> &Arc<Counter> {
        &self.counter
    }
}

/// One counter's state, behind its own lock.
#[derive(Debug)]
pub struct Counter {
    kind: RuleKind,
    duration_ms: u64,
    state: Mutex<State>,
}

#[derive(Default, Debug)]
struct State {
    /// Requests admitted, or tokens consumed, inside the window (empty for concurrency).
    log: Log,
    /// Tokens reserved by calls in flight, or calls in flight.
    held: u64,
}

impl State {
    /// What the rule's limit is compared with.
    fn used(&self, kind: RuleKind) -> u64 {
        match kind {
            RuleKind::Requests => self.log.total,
            RuleKind::Tokens => self.log.total + self.held,
            RuleKind::Concurrent => self.held,
        }
    }
}

impl Counter {
    pub fn new(key: CounterKey) -> Self {
        Counter { kind: key.kind, duration_ms: key.duration_ms, state: Mutex::new(State::default()) }
    }

    fn lock_at(&self, now_ms: u64) -> MutexGuard<'_, State> {
        let mut st = self.state.lock();
        if self.kind.windowed() {
            st.log.expire(now_ms, self.duration_ms);
        }
        st
    }

    /// What admitting one call adds to the counter: one request, its token estimate, one call
    /// in flight.
    fn cost(&self, estimate: u64) -> u64 {
        match self.kind {
            RuleKind::Tokens => estimate,
            RuleKind::Requests | RuleKind::Concurrent => 1,
        }
    }

    fn admit(&self, st: &mut State, now_ms: u64, estimate: u64) {
        match self.kind {
            RuleKind::Requests => st.log.record(stamp(now_ms, self.duration_ms), 1),
            RuleKind::Tokens | RuleKind::Concurrent => st.held += self.cost(estimate),
        }
    }

    /// Drops the admissions that left the window and, if what remains fits inline, frees the
    /// heap buffer a burst spilled it into: an idle counter is back to its inline size. True
    /// when it freed one.
    pub fn release_idle(&self, now_ms: u64) -> bool {
        let mut st = self.lock_at(now_ms);
        let log = &mut st.log;
        if log.entries.spilled() && log.live().len() <= INLINE {
            let head = log.head as usize;
            log.entries.drain(..head);
            log.head = 0;
            log.entries.shrink_to_fit();
            return true;
        }
        false
    }

    /// Whether admissions are recorded that have not been seen to leave the window (expiry
    /// happens on checks and [`Self::release_idle`]), or calls are in flight.
    pub fn holds_admissions(&self) -> bool {
        let st = self.state.lock();
        st.log.total > 0 || st.held > 0
    }

    /// Entries held on the heap (0 when inline).
    pub fn heap_entries(&self) -> usize {
        let st = self.state.lock();
        if st.log.entries.spilled() {
            st.log.entries.capacity()
        } else {
            0
        }
    }

    /// Calls in flight (concurrency) or tokens reserved by them (tokens).
    pub fn held(&self) -> u64 {
        self.state.lock().held
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rule: String,
    pub kind: RuleKind,
    pub limit: u64,
    pub duration_secs: u64,
    /// Until the refusing rule's window has room again (for tokens reserved by calls in
    /// flight, or calls in flight, a hint: when they end is not known).
    pub wait_ms: u64,
    /// `wait_ms` in whole seconds, rounded up (at least 1): `Retry-After`.
    pub retry_after_secs: u64,
}

/// The wait a 429 suggests when what fills the rule is calls in flight, whose end no one knows.
const IN_FLIGHT_WAIT_MS: u64 = 1_000;

impl Rejection {
    pub fn new(r: &RuleCheck, wait_ms: u64) -> Self {
        Rejection {
            rule: r.label.clone(),
            kind: r.key.kind,
            limit: r.limit,
            duration_secs: r.key.duration_ms / 1000,
            wait_ms,
            retry_after_secs: wait_ms.div_ceil(1000).max(1),
        }
    }
}

/// The tightest applicable rule of one kind after an admission, for the `x-ratelimit-*`
/// response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub limit: u64,
    pub remaining: u64,
    /// Until the rule's next slot frees (its oldest admission in the window leaves): with
    /// `remaining` 0, when the next request can be admitted.
    pub reset_ms: u64,
}

/// An admitted call: the headers' figures and what it holds in token and concurrency rules
/// until it ends.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The tightest request rule.
    pub requests: Option<Admission>,
    /// The tightest token rule.
    pub tokens: Option<Admission>,
    pub hold: RuleHold,
}

/// What an admitted call holds in token and concurrency counters: its token reservations and
/// its places in flight. Dropped, it gives them back and counts the reservations as consumed
/// (usage unknown); [`RuleHold::settle`] counts the real usage instead. Holds nothing (no
/// allocation) under request rules alone.
#[derive(Default)]
pub struct RuleHold {
    counters: SmallVec<[(Arc<Counter>, u64); 2]>,
    clock: Option<SharedClock>,
}

impl std::fmt::Debug for RuleHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleHold").field("counters", &self.counters.len()).finish()
    }
}

impl RuleHold {
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The call ended having used `tokens` (input + output; `None`: unknown, the estimate
    /// stands).
    pub fn settle(mut self, tokens: Option<u64>) {
        self.end(tokens.map_or(Consumed::Estimate, Consumed::tokens_only));
    }

    /// The call never ran (another counter refused it): given back, nothing consumed.
    pub fn cancel(mut self) {
        self.end(Consumed::Nothing);
    }

    /// Gives back what the call holds, recording what it consumed.
    pub fn end(&mut self, consumed: Consumed) {
        if self.counters.is_empty() {
            return;
        }
        let now = self.clock.as_ref().map_or(0, |c| c.now_ms());
        for (c, reserved) in self.counters.drain(..) {
            let mut st = c.lock_at(now);
            st.held = st.held.saturating_sub(reserved);
            if c.kind == RuleKind::Tokens {
                if let Some(tokens) = consumed.tokens(reserved) {
                    st.log.record(stamp(now, c.duration_ms), tokens);
                }
            }
        }
    }
}

impl Drop for RuleHold {
    fn drop(&mut self) {
        self.end(Consumed::Estimate);
    }
}

/// Admissions inside one counter's window, oldest first, one entry per tick that had any (see
/// [`stamp`]): `stamp << COUNT_BITS | count`. Live entries are `entries[head..]`: popping the oldest only
/// moves `head`. Up to INLINE entries live inside the map's own slot, so a counter with few
/// admissions in its window (most keys, most of the time) costs one cache miss, not two or
/// three (slot, then the front and back of a separate buffer); busy counters spill to the heap.
#[derive(Default, Debug)]
struct Log {
    entries: SmallVec<[u64; INLINE]>,
    head: u32,
    total: u64,
}

/// Six: a key at a steady few requests per window (5 admissions in the criterion bench's 100k
/// keys at 50k req/s) stays inline. With 3 it spilled, and that bench took 249 ns instead of 160
/// on this machine; the slot grows from 80 to 104 bytes.
const INLINE: usize = 6;

/// A counter holds at most about this many entries: admissions are stamped with the last
/// millisecond of their tick, `duration / TICKS_PER_WINDOW` long (at least 1 ms). Stamping at
/// the tick's end makes an admission leave the window up to one tick (0.1% of the window) late,
/// never early, so no window ever admits more than the limit; one entry per millisecond would
/// let a key busy every millisecond under a 7-day rule grow one counter to 600 million entries.
const TICKS_PER_WINDOW: u64 = 1000;

/// The stamp of an admission at `now` under a window of `duration_ms`.
fn stamp(now: u64, duration_ms: u64) -> u64 {
    let tick = (duration_ms / TICKS_PER_WINDOW).max(1);
    now / tick * tick + tick - 1
}

const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
fn at(e: u64) -> u64 {
    e >> COUNT_BITS
}
fn count(e: u64) -> u64 {
    e & COUNT_MASK
}

impl Log {
    fn live(&self) -> &[u64] {
        &self.entries[self.head as usize..]
    }

    /// Drops admissions that left the window `(now - duration, now]`.
    fn expire(&mut self, now: u64, duration_ms: u64) {
        let mut head = self.head as usize;
        while let Some(&e) = self.entries.get(head) {
            if at(e) + duration_ms > now {
                break;
            }
            self.total -= count(e);
            head += 1;
        }
        if head == self.entries.len() {
            // Empty: start over at the front (a spilled buffer keeps its capacity).
            self.entries.clear();
            head = 0;
        } else if head >= 64 && head * 2 >= self.entries.len() {
            // Mostly dead prefix: slide the live part down, amortised O(1) per entry.
            self.entries.drain(..head);
            head = 0;
        }
        self.head = head as u32;
    }

    /// Records `n` admissions (requests, or tokens) stamped `stamp` (see [`stamp`]).
    fn record(&mut self, stamp: u64, mut n: u64) {
        while n > 0 {
            let head = self.head as usize;
            match self.entries[head..].last_mut() {
                // An entry holds a million; more in one tick start another for the same tick.
                Some(e) if at(*e) == stamp && count(*e) < COUNT_MASK => {
                    let add = n.min(COUNT_MASK - count(*e));
                    *e += add;
                    n -= add;
                    self.total += add;
                }
                _ => {
                    if head > 0 && self.entries.len() == INLINE && !self.entries.spilled() {
                        // Inline and full, with dead entries at the front: reuse their room
                        // rather than spilling to the heap.
                        self.entries.drain(..head);
                        self.head = 0;
                    }
                    let add = n.min(COUNT_MASK);
                    self.entries.push(stamp << COUNT_BITS | add);
                    n -= add;
                    self.total += add;
                }
            }
        }
    }

    /// How long until the window holds less than now (its oldest entry leaves); 0 when empty.
    fn next_slot_ms(&self, duration_ms: u64, now: u64) -> u64 {
        self.leaves_at(1, duration_ms).map_or(0, |t| t.saturating_sub(now))
    }

    /// When `must_leave` of what the window holds will have left it; `None` when it holds
    /// less than that.
    fn leaves_at(&self, mut must_leave: u64, duration_ms: u64) -> Option<u64> {
        for &e in self.live() {
            if count(e) >= must_leave {
                return Some(at(e) + duration_ms);
            }
            must_leave -= count(e);
        }
        None
    }
}

pub struct Limiter {
    clock: SharedClock,
}

impl Limiter {
    pub fn new(clock: impl Clock) -> Self {
        Self::on(Arc::new(clock))
    }

    /// On the gateway's clock.
    pub fn on(clock: SharedClock) -> Self {
        Limiter { clock }
    }

    /// Checks a call against every rule that applies and, if all admit it, records it in each:
    /// `estimate` is what it reserves in token rules until it ends (see [`RuleHold`]).
    pub fn check<R: Borrow<RuleCheck>>(&self, rules: &[R], estimate: u64) -> Result<Admitted, Rejection> {
        self.admit(rules, estimate, true)
    }

    /// Records a call another limiter admitted (Redis), whatever the counters hold: so that
    /// they know what this replica admitted when they have to limit on their own.
    pub fn record<R: Borrow<RuleCheck>>(&self, rules: &[R], estimate: u64) -> Admitted {
        self.admit(rules, estimate, false).unwrap_or_default()
    }

    fn admit<R: Borrow<RuleCheck>>(&self, rules: &[R], estimate: u64, enforce: bool) -> Result<Admitted, Rejection> {
        if rules.is_empty() {
            return Ok(Admitted::default());
        }
        let now = self.clock.now_ms();
        if let [r] = rules {
            // The common case, one rule: one lock.
            let r = r.borrow();
            let c = &*r.counter;
            let mut st = c.lock_at(now);
            if enforce && st.used(c.kind) >= r.limit {
                return Err(reject(r, &st, now));
            }
            c.admit(&mut st, now, estimate);
            let mut admitted = Admitted::default();
            self.report(&mut admitted, r, &st, now);
            drop(st);
            self.hold(&mut admitted.hold, &r.counter, estimate);
            return Ok(admitted);
        }
        // Several rules: lock each distinct counter once, in address order (no deadlock between
        // two requests locking the same counters), check every rule, then record in each counter.
        let mut counters: SmallVec<[&Arc<Counter>; 4]> = rules.iter().map(|r| &r.borrow().counter).collect();
        counters.sort_unstable_by_key(|c| Arc::as_ptr(c) as usize);
        counters.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let mut states: SmallVec<[MutexGuard<'_, State>; 4]> = counters.iter().map(|c| c.lock_at(now)).collect();
        let index = |r: &RuleCheck| counters.iter().position(|c| Arc::ptr_eq(c, &r.counter)).expect("every rule's counter is locked");
        // (remaining after this call, rule) of the rule of each kind with the least room left.
        let mut tightest: [Option<(u64, &RuleCheck)>; 2] = [None, None];
        for r in rules {
            let r = r.borrow();
            let st = &states[index(r)];
            let used = st.used(r.key.kind);
            if enforce && used >= r.limit {
                return Err(reject(r, st, now));
            }
            let slot = match r.key.kind {
                RuleKind::Requests => 0,
                RuleKind::Tokens => 1,
                RuleKind::Concurrent => continue,
            };
            let remaining = r.limit.saturating_sub(used + r.counter.cost(estimate));
            if tightest[slot].is_none_or(|(least, _)| remaining < least) {
                tightest[slot] = Some((remaining, r));
            }
        }
        for (c, st) in counters.iter().zip(states.iter_mut()) {
            c.admit(st, now, estimate);
        }
        let mut admitted = Admitted::default();
        for (_, r) in tightest.into_iter().flatten() {
            self.report(&mut admitted, r, &states[index(r)], now);
        }
        drop(states);
        for c in counters {
            self.hold(&mut admitted.hold, c, estimate);
        }
        Ok(admitted)
    }

    /// The headers' figures of `r` after this admission (the tightest rule of its kind).
    fn report(&self, admitted: &mut Admitted, r: &RuleCheck, st: &State, now: u64) {
        let a = Admission {
            limit: r.limit,
            remaining: r.limit.saturating_sub(st.used(r.key.kind)),
            reset_ms: st.log.next_slot_ms(r.key.duration_ms, now),
        };
        match r.key.kind {
            RuleKind::Requests => admitted.requests = Some(a),
            RuleKind::Tokens => admitted.tokens = Some(a),
            RuleKind::Concurrent => {}
        }
    }

    /// Puts what the call holds in `c` (if anything) into its hold.
    fn hold(&self, held: &mut RuleHold, c: &Arc<Counter>, estimate: u64) {
        if c.kind == RuleKind::Requests {
            return;
        }
        if held.clock.is_none() {
            held.clock = Some(self.clock.clone());
        }
        held.counters.push((c.clone(), c.cost(estimate)));
    }
}

fn reject(r: &RuleCheck, st: &State, now: u64) -> Rejection {
    let d = r.key.duration_ms;
    let wait = match r.key.kind {
        // One more fits once the (used - limit + 1) oldest have left.
        RuleKind::Requests => st.log.leaves_at(st.log.total + 1 - r.limit, d).map_or(0, |t| t.saturating_sub(now)),
        RuleKind::Tokens => match st.log.leaves_at(st.used(RuleKind::Tokens) + 1 - r.limit, d) {
            Some(t) => t.saturating_sub(now),
            // The reservations of calls in flight alone fill it.
            None => IN_FLIGHT_WAIT_MS.min(d),
        },
        RuleKind::Concurrent => IN_FLIGHT_WAIT_MS,
    };
    Rejection::new(r, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    type FakeClock = crate::gateway::clock::ManualClock;

    fn rule(subject: i64, limit: u64, secs: u64, target: &'static str) -> RuleCheck {
        let t = if target == "workspace" { RuleTarget::Workspace } else { RuleTarget::ApiKey };
        RuleCheck::new(
            CounterKey { model_id: 1, target: t, subject_id: subject, kind: RuleKind::Requests, duration_ms: secs * 1000 },
            limit,
            format!("{target}:{subject}:{limit}/{secs}s"),
        )
    }

    #[test]
    fn limit_plus_one_is_refused_and_the_window_slides() {
        let clock = FakeClock::default();
        clock.advance(960_000); // t0, the start of a 60 ms tick (a 60 s window has 1,000 ticks)
        let l = Limiter::new(clock.clone());
        let r = [rule(7, 100, 60, "api_key")];
        for i in 0..100 {
            let a = l.check(&r, 0).unwrap().requests.unwrap();
            assert_eq!(a.remaining, 99 - i);
            // Until the first admission (stamped t0+59 ms) leaves the window.
            assert_eq!(a.reset_ms, 60_059 - i * 100, "request {i}");
            clock.advance(100); // 100 requests over 10 s
        }
        let rej = l.check(&r, 0).unwrap_err();
        // The first admission is stamped t0+59 ms (its tick's end), so it leaves the window at
        // t0+60.059 s; now is t0+10 s: 50.059 s to wait, rounded up.
        assert_eq!(rej.retry_after_secs, 51);
        assert_eq!((rej.limit, rej.duration_secs), (100, 60));
        clock.advance(50_058);
        assert!(l.check(&r, 0).is_err(), "still inside the window");
        clock.advance(1);
        assert!(l.check(&r, 0).is_ok(), "the oldest left: exactly one slot");
        assert!(l.check(&r, 0).is_err());
    }

    #[test]
    fn admissions_in_the_same_millisecond_leave_together() {
        let clock = FakeClock::default();
        clock.advance(10_000);
        let l = Limiter::new(clock.clone());
        let r = [rule(3, 5, 1, "api_key")];
        for _ in 0..3 {
            l.check(&r, 0).unwrap();
        }
        clock.advance(10);
        for _ in 0..2 {
            l.check(&r, 0).unwrap();
        }
        clock.advance(500);
        assert_eq!(l.check(&r, 0).unwrap_err().retry_after_secs, 1, "the first three leave 490 ms from now");
        clock.advance(490);
        for _ in 0..3 {
            l.check(&r, 0).expect("the first three left together");
        }
        let rej = l.check(&r, 0).unwrap_err();
        assert_eq!(rej.retry_after_secs, 1, "the next two leave 10 ms from now, rounded up to a second");
    }

    /// The limiter against the definition, over random traffic: a naive list of every
    /// admission's stamp (its tick's last ms, see `stamp`), where a request is admitted iff each
    /// rule's window `(now - d, now]` holds fewer stamps than its limit, and is then recorded in
    /// every rule. Decisions and Retry-After must agree; and, on the raw admission times, no
    /// window of any rule ever holds more than its limit.
    #[test]
    fn agrees_with_a_naive_sliding_log_on_random_traffic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for round in 0..20 {
            let clock = FakeClock::default();
            clock.advance(1_000_000);
            let l = Limiter::new(clock.clone());
            let (limit_a, limit_b) = (rng.gen_range(1..12), rng.gen_range(1..40));
            // Windows of 1 s (1 ms ticks) up to 8 s (8 ms ticks).
            let rules = [rule(1, limit_a, rng.gen_range(1..4), "api_key"), rule(1, limit_b, rng.gen_range(2..9), "workspace")];
            let mut stamps: Vec<Vec<u64>> = vec![Vec::new(), Vec::new()];
            let mut admitted: Vec<u64> = Vec::new();
            for step in 0..3_000 {
                // Bursts in one millisecond, short gaps, and long idle stretches.
                clock.advance(match rng.gen_range(0..10) {
                    0..=3 => 0,
                    4..=8 => rng.gen_range(1..300),
                    _ => rng.gen_range(1_000..9_000),
                });
                let now = clock.now_ms();
                let inside = |i: usize| -> Vec<u64> { stamps[i].iter().copied().filter(|&t| t + rules[i].key.duration_ms > now).collect() };
                let admit = (0..2).all(|i| (inside(i).len() as u64) < rules[i].limit);
                match l.check(&rules, 0) {
                    Ok(_) => {
                        assert!(admit, "round {round} step {step}: admitted, but the window is full");
                        for (i, r) in rules.iter().enumerate() {
                            stamps[i].push(stamp(now, r.key.duration_ms));
                        }
                        admitted.push(now);
                    }
                    Err(rej) => {
                        assert!(!admit, "round {round} step {step}: refused with room in every window");
                        // Retry-After: the rule that refused frees a slot then (rounded up).
                        let i = rules.iter().position(|r| r.label == rej.rule).unwrap();
                        let held = inside(i);
                        let frees = held[held.len() - rules[i].limit as usize] + rules[i].key.duration_ms;
                        assert_eq!(rej.retry_after_secs, (frees - now).div_ceil(1000).max(1), "round {round} step {step}");
                    }
                }
            }
            for r in &rules {
                for (k, &t) in admitted.iter().enumerate() {
                    let in_window = admitted[k..].iter().take_while(|&&u| u < t + r.key.duration_ms).count() as u64;
                    assert!(in_window <= r.limit, "round {round}: {in_window} admissions within {} ms of {t}", r.key.duration_ms);
                }
            }
        }
    }

    #[test]
    fn a_busy_counter_under_a_long_window_stays_small() {
        let clock = FakeClock::default();
        let l = Limiter::new(clock.clone());
        // A week-long rule, a request every millisecond for an hour: one entry per 604.8 s
        // tick instead of one per millisecond.
        let r = [rule(1, u64::MAX / 2, 7 * 24 * 3600, "api_key")];
        for _ in 0..3_600_000 {
            clock.advance(1);
            l.check(&r, 0).unwrap();
        }
        let st = r[0].counter.state.lock();
        let log = &st.log;
        assert_eq!(log.total, 3_600_000);
        assert!(log.live().len() <= 8, "{} entries", log.live().len());
    }

    #[test]
    fn no_window_ever_admits_more_than_the_limit() {
        let clock = FakeClock::default();
        let l = Limiter::new(clock.clone());
        let r = [rule(1, 5, 10, "workspace")];
        let mut admitted = Vec::new();
        for step in 0..2000u64 {
            if l.check(&r, 0).is_ok() {
                admitted.push(clock.now_ms());
            }
            clock.advance(7 + step % 13);
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|&&u| u < t + 10_000).count();
            assert!(in_window <= 5, "window starting at {t} admitted {in_window}");
        }
        // ~26 s of simulated time at 5 per 10 s: at least 10 admitted (the limiter is not just refusing).
        assert!(admitted.len() >= 10, "{}", admitted.len());
    }

    #[test]
    fn rejection_by_one_rule_consumes_nothing_in_the_others() {
        let clock = FakeClock::default();
        let l = Limiter::new(clock.clone());
        let key = rule(1, 10, 60, "api_key");
        let ws = rule(2, 3, 60, "workspace");
        for _ in 0..3 {
            l.check(&[key.clone(), ws.clone()], 0).unwrap();
        }
        for _ in 0..5 {
            let rej = l.check(&[key.clone(), ws.clone()], 0).unwrap_err();
            assert_eq!(rej.rule, "workspace:2:3/60s", "names the rule that fired");
        }
        // The key rule saw only the 3 admitted requests: 7 more fit.
        for _ in 0..7 {
            l.check(std::slice::from_ref(&key), 0).unwrap();
        }
        assert!(l.check(&[key], 0).is_err());
    }

    #[test]
    fn concurrent_requests_admit_exactly_the_limit() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let l = Arc::new(Limiter::new(crate::gateway::clock::SystemClock::default()));
        let r = [rule(1, 100, 3600, "api_key")];
        let admitted = Arc::new(AtomicU64::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (l, r, admitted) = (l.clone(), r.clone(), admitted.clone());
                s.spawn(move || {
                    for _ in 0..125 {
                        if l.check(&r, 0).is_ok() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 100, "1,000 concurrent attempts, limit 100");
    }

    #[test]
    fn rules_sharing_a_counter_count_each_request_once() {
        let clock = FakeClock::default();
        let l = Limiter::new(clock.clone());
        // The same key and window twice (say 10/min and 6/min): one counter, two limits.
        let loose = rule(1, 10, 60, "api_key");
        let tight = loose.with_limit(6, "tight".into());
        for i in 0..6 {
            let a = l.check(&[loose.clone(), tight.clone()], 0).unwrap().requests.unwrap();
            assert_eq!((a.limit, a.remaining), (6, 5 - i), "the tighter rule is the one reported");
        }
        assert_eq!(l.check(&[loose.clone(), tight], 0).unwrap_err().rule, "tight", "6 requests, counted once each");
        for _ in 0..4 {
            l.check(std::slice::from_ref(&loose), 0).unwrap();
        }
        assert!(l.check(&[loose], 0).is_err(), "10 in all");
    }

    #[test]
    fn idle_counters_give_their_memory_back() {
        let clock = FakeClock::default();
        clock.advance(1_000_000);
        let l = Limiter::new(clock.clone());
        let rules: Vec<[RuleCheck; 1]> = (0..100_000).map(|k| [rule(k, 100, 1, "api_key")]).collect();
        // A burst over 20 ms on every key: 20 ticks each, more than fit inline.
        for _ in 0..20 {
            for r in &rules {
                l.check(r, 0).unwrap();
            }
            clock.advance(1);
        }
        let held = |rules: &[[RuleCheck; 1]]| rules.iter().map(|r| r[0].counter.heap_entries()).sum::<usize>();
        assert!(held(&rules) >= 100_000 * 20, "the burst spilled every counter to the heap");
        rules[0][0].counter.release_idle(clock.now_ms());
        assert!(rules[0][0].counter.heap_entries() > 0, "still inside its window: kept");
        clock.advance(1_000);
        for r in &rules {
            r[0].counter.release_idle(clock.now_ms());
        }
        assert_eq!(held(&rules), 0, "windows passed: every counter is back to its inline size");
        // And they still count: the window is empty, so the full limit is there again.
        for _ in 0..100 {
            l.check(&rules[7], 0).unwrap();
        }
        assert!(l.check(&rules[7], 0).is_err());
    }

    fn kind_rule(subject: i64, kind: RuleKind, limit: u64, secs: u64) -> RuleCheck {
        let key = CounterKey { model_id: 1, target: RuleTarget::ApiKey, subject_id: subject, kind, duration_ms: secs * 1000 };
        RuleCheck::new(key, limit, format!("{}:{subject}:{limit}/{secs}s", kind.as_str()))
    }

    #[test]
    fn a_token_rule_admits_until_consumed_plus_reserved_reach_it_settles_and_slides() {
        let clock = FakeClock::default();
        clock.advance(960_000); // the start of a 60 ms tick
        let l = Limiter::new(clock.clone());
        let r = [kind_rule(1, RuleKind::Tokens, 1_000, 60)];
        let a = l.check(&r, 400).unwrap();
        assert_eq!(a.tokens.as_ref().map(|t| (t.limit, t.remaining)), Some((1_000, 600)), "the estimate is reserved at once");
        assert!(a.requests.is_none());
        let b = l.check(&r, 400).unwrap();
        let c = l.check(&r, 400).unwrap();
        assert_eq!(c.tokens.as_ref().unwrap().remaining, 0, "800 reserved + 400: over the limit, and admitted since 800 < 1,000");
        let refused = l.check(&r, 1).unwrap_err();
        assert_eq!((refused.kind, refused.limit), (RuleKind::Tokens, 1_000));
        assert_eq!(refused.wait_ms, 1_000, "only reservations fill it: when they end is unknown, a second is the hint");
        // A settles at its real usage, 100 tokens: 100 consumed + 800 reserved.
        clock.advance(1_000);
        a.hold.settle(Some(100));
        let d = l.check(&r, 50).unwrap();
        assert_eq!(d.tokens.as_ref().unwrap().remaining, 50, "1,000 - 100 consumed - 800 - 50 reserved");
        // B's usage is unknown: its estimate stands as consumed. C never ran: nothing.
        drop(b.hold);
        c.hold.cancel();
        d.hold.settle(Some(450));
        // 100 + 400 + 450 consumed, nothing reserved.
        let e = l.check(&r, 0).unwrap();
        assert_eq!(e.tokens.as_ref().unwrap().remaining, 50);
        // All settled at t0+1 s, in the tick ending at t0+1.019 s: they leave 60 s after it.
        assert_eq!(e.tokens.as_ref().unwrap().reset_ms, 60_019);
        e.hold.settle(Some(60));
        let full = l.check(&r, 1).unwrap_err();
        assert_eq!((full.kind, full.wait_ms), (RuleKind::Tokens, 60_019), "1,010 consumed: 11 must leave, with the rest of their tick");
        clock.advance(60_018);
        assert!(l.check(&r, 1).is_err(), "still inside the window");
        clock.advance(1);
        let f = l.check(&r, 1).unwrap();
        assert_eq!(f.tokens.unwrap().remaining, 999, "the window slid past every consumed token");
    }

    #[test]
    fn a_concurrency_rule_counts_calls_in_flight_and_a_refusal_holds_nothing() {
        let clock = FakeClock::default();
        let l = Limiter::new(clock.clone());
        let conc = kind_rule(1, RuleKind::Concurrent, 2, 0);
        let reqs = kind_rule(1, RuleKind::Requests, 100, 60);
        let both = [conc.clone(), reqs.clone()];
        let a = l.check(&both, 0).unwrap();
        let b = l.check(&both, 0).unwrap();
        assert_eq!(a.requests.as_ref().unwrap().remaining, 99, "the request rule counts as usual beside it");
        for _ in 0..5 {
            assert_eq!(l.check(&both, 0).unwrap_err().kind, RuleKind::Concurrent);
        }
        assert_eq!(conc.counter().held(), 2);
        drop(a);
        let c = l.check(&both, 0).unwrap();
        assert_eq!(c.requests.unwrap().remaining, 97, "the five refused calls consumed no request");
        drop((b, c.hold));
        assert_eq!(conc.counter().held(), 0, "every call ended: nothing held");
        assert!(!conc.counter().holds_admissions());
    }

    /// docs/gateway.md's guarantee, on random traffic (calls of random estimates and real usage,
    /// overlapping, ending in random order): for every window, the tokens of the calls that
    /// ended in it are at most limit - 1, plus the estimate of the call admitted last among
    /// them, plus what the calls then in flight used beyond their estimates.
    #[test]
    fn a_token_window_consumes_at_most_its_limit_plus_the_overshoot_in_flight() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
        struct Done {
            admitted: u64,
            ended: u64,
            estimate: u64,
            real: u64,
            in_flight_then: Vec<usize>,
        }
        for round in 0..30 {
            let clock = FakeClock::default();
            clock.advance(1_000_000);
            let l = Limiter::new(clock.clone());
            let (limit, secs) = (rng.gen_range(100..5_000), rng.gen_range(1..5));
            let r = [kind_rule(1, RuleKind::Tokens, limit, secs)];
            let mut calls: Vec<Done> = Vec::new();
            let mut open: Vec<(usize, RuleHold)> = Vec::new();
            for _ in 0..2_000 {
                clock.advance(rng.gen_range(0..120));
                let now = clock.now_ms();
                if open.len() < 8 && rng.gen_bool(0.6) {
                    let estimate = rng.gen_range(0..limit / 2);
                    if let Ok(a) = l.check(&r, estimate) {
                        let id = calls.len();
                        calls.push(Done {
                            admitted: now,
                            ended: u64::MAX,
                            estimate,
                            real: 0,
                            in_flight_then: open.iter().map(|(i, _)| *i).chain([id]).collect(),
                        });
                        open.push((id, a.hold));
                    }
                } else if !open.is_empty() {
                    let (id, lease) = open.swap_remove(rng.gen_range(0..open.len()));
                    let real = rng.gen_range(0..limit);
                    calls[id].ended = now;
                    calls[id].real = real;
                    lease.settle(Some(real));
                }
            }
            let d = secs * 1000;
            for t in calls.iter().map(|c| c.ended).filter(|&e| e != u64::MAX) {
                let ended: Vec<&Done> = calls.iter().filter(|c| c.ended != u64::MAX && c.ended <= t && c.ended + d > t).collect();
                let consumed: u64 = ended.iter().map(|c| c.real).sum();
                let last = ended.iter().max_by_key(|c| c.admitted).unwrap();
                let overshoot: u64 = last
                    .in_flight_then
                    .iter()
                    .map(|&i| &calls[i])
                    .filter(|c| c.ended <= t)
                    .map(|c| c.real.saturating_sub(c.estimate))
                    .sum();
                assert!(
                    consumed < limit + last.estimate + overshoot,
                    "round {round}: {consumed} tokens in the window ending at {t}, limit {limit}, estimate {}, overshoot {overshoot}",
                    last.estimate
                );
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
            /// Real threads race on the same counters at each instant (a key's rule and its
            /// workspace's rule): however they interleave, no window of either rule ever holds
            /// more admissions than its limit, and a rejected request is recorded in neither.
            #[test]
            fn no_window_admits_more_than_its_limit_under_any_interleaving(
                key_limit in 1u64..15,
                ws_limit in 1u64..30,
                key_secs in 1u64..4,
                ws_secs in 1u64..6,
                steps in proptest::collection::vec((0u64..900, 1usize..10), 1..50),
            ) {
                let clock = FakeClock::default();
                clock.advance(1_000_000);
                let l = Limiter::new(clock.clone());
                let rules = [rule(1, key_limit, key_secs, "api_key"), rule(1, ws_limit, ws_secs, "workspace")];
                let mut admitted: Vec<u64> = Vec::new();
                for (advance, racers) in steps {
                    clock.advance(advance);
                    let now = clock.now_ms();
                    let wins = std::thread::scope(|s| {
                        let handles: Vec<_> = (0..racers).map(|_| s.spawn(|| l.check(&rules, 0).is_ok())).collect();
                        handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count()
                    });
                    admitted.extend(std::iter::repeat_n(now, wins));
                }
                for r in &rules {
                    let d = r.key.duration_ms;
                    for &t in &admitted {
                        let inside = admitted.iter().filter(|&&a| a <= t && a + d > t).count() as u64;
                        prop_assert!(inside <= r.limit, "{} admissions in the {} ms window ending at {}, limit {}", inside, d, t, r.limit);
                    }
                }
            }
        }
    }
}
