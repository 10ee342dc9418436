//! Exact sliding-window rate limiting: no window of `duration` ever admits more than `limit`.
//! Each counter keeps the admission times inside its window (a sliding log). A request is
//! checked against every applicable rule under one lock and recorded in all of them only if
//! all admit it, so a rejection consumes nothing anywhere.
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Milliseconds on a monotonic clock; injected so tests move time instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

pub struct SystemClock(Instant);
impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// A counter's identity survives config reloads as long as the rule means the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub model_id: i64,
    pub target: &'static str,
    pub subject_id: i64,
    pub duration_ms: u64,
}

#[derive(Clone, Debug)]
pub struct RuleCheck {
    pub key: CounterKey,
    pub limit: u64,
    /// Names the rule in the 429 (`x-maas-ratelimit-rule`).
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rule: String,
    pub limit: u64,
    pub duration_secs: u64,
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The tightest rule's limit and what remains of it, for the response headers.
    pub limit: u64,
    pub remaining: u64,
}

pub struct Limiter<C: Clock = SystemClock> {
    clock: C,
    // FxHash: keys are small integers we build ourselves (not caller-chosen strings), so a
    // DoS-resistant hasher buys nothing and costs ~20 ns per lookup.
    logs: Mutex<FxHashMap<CounterKey, VecDeque<u64>>>,
    last_sweep_ms: AtomicU64,
}

/// Idle counters are dropped at most this often: a sweep walks every counter, so doing it per
/// N checks would cost O(keys) again and again under load.
const SWEEP_INTERVAL_MS: u64 = 5_000;

impl<C: Clock> Limiter<C> {
    pub fn new(clock: C) -> Self {
        Limiter { clock, logs: Mutex::new(FxHashMap::default()), last_sweep_ms: AtomicU64::new(0) }
    }

    pub fn check<R: std::borrow::Borrow<RuleCheck>>(&self, rules: &[R]) -> Result<Option<Admission>, Rejection> {
        if rules.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let mut logs = self.logs.lock();
        self.maybe_sweep(&mut logs, now);
        if let [r] = rules {
            let r = r.borrow();
            // The common case, one rule: a single lookup.
            let log = logs.entry(r.key.clone()).or_default();
            expire(log, now, r.key.duration_ms);
            let used = log.len() as u64;
            if used >= r.limit {
                return Err(reject(r, log.front().copied().unwrap_or(now), now));
            }
            log.push_back(now);
            return Ok(Some(Admission { limit: r.limit, remaining: r.limit - used - 1 }));
        }
        let mut tightest: Option<Admission> = None;
        for r in rules {
            let r = r.borrow();
            let used = match logs.get_mut(&r.key) {
                Some(log) => {
                    expire(log, now, r.key.duration_ms);
                    log.len() as u64
                }
                None => 0,
            };
            if used >= r.limit {
                let oldest = logs.get(&r.key).and_then(|l| l.front().copied()).unwrap_or(now);
                return Err(reject(r, oldest, now));
            }
            let remaining = r.limit - used - 1;
            if tightest.as_ref().is_none_or(|t| remaining < t.remaining) {
                tightest = Some(Admission { limit: r.limit, remaining });
            }
        }
        for r in rules {
            logs.entry(r.borrow().key.clone()).or_default().push_back(now);
        }
        Ok(tightest)
    }

    /// Every SWEEP_INTERVAL_MS, drops counters whose window is empty (bounded memory).
    fn maybe_sweep(&self, logs: &mut FxHashMap<CounterKey, VecDeque<u64>>, now: u64) {
        if now.saturating_sub(self.last_sweep_ms.load(Ordering::Relaxed)) >= SWEEP_INTERVAL_MS {
            self.last_sweep_ms.store(now, Ordering::Relaxed);
            retain_live(logs, now);
        }
    }

    /// Counters currently held (idle ones are evicted by the periodic sweep).
    pub fn len(&self) -> usize {
        self.logs.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every counter whose window holds nothing.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        retain_live(&mut self.logs.lock(), now);
    }
}

/// Keeps only counters with an admission still inside their window.
fn retain_live(logs: &mut FxHashMap<CounterKey, VecDeque<u64>>, now: u64) {
    logs.retain(|k, log| {
        expire(log, now, k.duration_ms);
        !log.is_empty()
    });
}

fn reject(r: &RuleCheck, oldest: u64, now: u64) -> Rejection {
    let wait_ms = (oldest + r.key.duration_ms).saturating_sub(now);
    Rejection { rule: r.label.clone(), limit: r.limit, duration_secs: r.key.duration_ms / 1000, retry_after_secs: wait_ms.div_ceil(1000).max(1) }
}

/// Drops admissions that left the window `(now - duration, now]`.
fn expire(log: &mut VecDeque<u64>, now: u64, duration_ms: u64) {
    while log.front().is_some_and(|&t| t + duration_ms <= now) {
        log.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct FakeClock(Arc<AtomicU64>);
    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }
    impl FakeClock {
        fn advance(&self, ms: u64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }

    fn rule(subject: i64, limit: u64, secs: u64, target: &'static str) -> RuleCheck {
        RuleCheck { key: CounterKey { model_id: 1, target, subject_id: subject, duration_ms: secs * 1000 }, limit, label: format!("{target}:{subject}:{limit}/{secs}s") }
    }

    #[test]
    fn limit_plus_one_is_refused_and_the_window_slides() {
        let clock = FakeClock::default();
        clock.advance(1_000_000);
        let l = Limiter::new(clock.clone());
        let r = [rule(7, 100, 60, "api_key")];
        for i in 0..100 {
            assert_eq!(l.check(&r).unwrap().unwrap().remaining, 99 - i);
            clock.advance(100); // 100 requests over 10 s
        }
        let rej = l.check(&r).unwrap_err();
        // The first admission (at t0) leaves the window at t0+60 s; now is t0+10 s.
        assert_eq!(rej.retry_after_secs, 50);
        assert_eq!((rej.limit, rej.duration_secs), (100, 60));
        clock.advance(49_999);
        assert!(l.check(&r).is_err(), "still inside the window");
        clock.advance(1);
        assert!(l.check(&r).is_ok(), "the oldest left: exactly one slot");
        assert!(l.check(&r).is_err());
    }

    #[test]
    fn no_window_ever_admits_more_than_the_limit() {
        let clock = FakeClock::default();
        let l = Limiter::new(clock.clone());
        let r = [rule(1, 5, 10, "workspace")];
        let mut admitted = Vec::new();
        for step in 0..2000u64 {
            if l.check(&r).is_ok() {
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
            l.check(&[key.clone(), ws.clone()]).unwrap();
        }
        for _ in 0..5 {
            let rej = l.check(&[key.clone(), ws.clone()]).unwrap_err();
            assert_eq!(rej.rule, "workspace:2:3/60s", "names the rule that fired");
        }
        // The key rule saw only the 3 admitted requests: 7 more fit.
        for _ in 0..7 {
            l.check(&[key.clone()]).unwrap();
        }
        assert!(l.check(&[key]).is_err());
    }

    #[test]
    fn concurrent_requests_admit_exactly_the_limit() {
        let l = Arc::new(Limiter::new(SystemClock::default()));
        let r = [rule(1, 100, 3600, "api_key")];
        let admitted = Arc::new(AtomicU64::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (l, r, admitted) = (l.clone(), r.clone(), admitted.clone());
                s.spawn(move || {
                    for _ in 0..125 {
                        if l.check(&r).is_ok() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 100, "1,000 concurrent attempts, limit 100");
    }

    #[test]
    fn idle_counters_are_evicted() {
        let clock = FakeClock::default();
        let l = Limiter::new(clock.clone());
        for k in 0..100_000 {
            l.check(&[rule(k, 10, 1, "api_key")]).unwrap();
        }
        assert_eq!(l.len(), 100_000);
        clock.advance(1_000);
        l.sweep();
        assert_eq!(l.len(), 0, "windows passed: nothing held");

        // Without an explicit sweep: checks themselves evict idle counters every 5 s.
        for k in 0..1_000 {
            l.check(&[rule(k, 10, 1, "api_key")]).unwrap();
        }
        clock.advance(SWEEP_INTERVAL_MS);
        l.check(&[rule(-1, 10, 1, "api_key")]).unwrap();
        assert_eq!(l.len(), 1, "only the counter just used remains");
    }
}
