//! Hot-path micro-benchmarks: balancer pick, finding a caller's rules, and limiter check (also
//! with 100k active counters).
use app::types::{RuleKind, RuleTarget};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use server::gateway::admission::limiter::{CounterKey, Limiter, RuleCheck};
use server::gateway::balancer::{Affinity, Balancer, Fastest, LeastBusy, Random, RoundRobin, Weighted};
use server::gateway::clock::{Clock, SystemClock};
use server::gateway::load::Load;
use server::gateway::snapshot::{Caller, Rules};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn key(target: RuleTarget, subject: i64, duration_ms: u64) -> CounterKey {
    CounterKey { model_id: 1, target, subject_id: subject, kind: RuleKind::Requests, duration_ms }
}

fn rule(subject: i64, limit: u64) -> RuleCheck {
    RuleCheck::new(key(RuleTarget::ApiKey, subject, 1_000), limit, String::new())
}

fn balancers(c: &mut Criterion) {
    let all = |_: usize| true;
    let rr = RoundRobin::default();
    c.bench_function("balancer/round_robin/3", |b| b.iter(|| black_box(rr.candidates(3, &all).next())));
    let w = Weighted::new(vec![50, 30, 20]);
    c.bench_function("balancer/weighted/3", |b| b.iter(|| black_box(w.candidates(3, &all).next())));
    let r = Random::new(1);
    c.bench_function("balancer/random/3", |b| b.iter(|| black_box(r.candidates(3, &all).next())));
    // Every policy over 16 endpoints, the load-aware ones over loads that differ (target: a
    // pick in at most 100 ns).
    let loads: Vec<Arc<Load>> = (0..16)
        .map(|i| {
            let l = Arc::new(Load::default());
            for _ in 0..(i * 7) % 5 {
                std::mem::forget(l.enter());
            }
            l.observe_ttfb(1_000 + (i as u64 * 3_331) % 9_000);
            l
        })
        .collect();
    let rr = RoundRobin::default();
    c.bench_function("balancer/round_robin/16", |b| b.iter(|| black_box(rr.candidates(16, &all).next())));
    let lb = LeastBusy::new(loads.clone());
    c.bench_function("balancer/least_busy/16", |b| b.iter(|| black_box(lb.candidates(16, &all).next())));
    let f = Fastest::new(loads.clone(), 1);
    c.bench_function("balancer/fastest/16", |b| b.iter(|| black_box(f.candidates(16, &all).next())));
    let a = Affinity::new((100..116).collect(), loads);
    let mut k = 0u64;
    c.bench_function("balancer/affinity/16", |b| {
        b.iter(|| {
            k = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
            black_box(a.candidates_for(16, &all, Some(k)).next())
        })
    });
}

fn limiter(c: &mut Criterion) {
    let l = Limiter::new(SystemClock::default());
    let one = [rule(1, u64::MAX)];
    c.bench_function("limiter/check/1 rule", |b| b.iter(|| black_box(l.check(&one, 0).is_ok())));
    // A token rule's whole cost: the check that reserves, and the settle at the call's end.
    let tokens = [RuleCheck::new(CounterKey { kind: RuleKind::Tokens, ..key(RuleTarget::ApiKey, 1, 60_000) }, u64::MAX, String::new())];
    c.bench_function("limiter/check+settle/1 token rule", |b| {
        b.iter(|| l.check(&tokens, black_box(1_500)).unwrap().hold.settle(Some(black_box(1_200))))
    });
    // A concurrency rule's: the check that takes a place, and the release.
    let conc = [RuleCheck::new(CounterKey { kind: RuleKind::Concurrent, ..key(RuleTarget::ApiKey, 1, 0) }, u64::MAX, String::new())];
    c.bench_function("limiter/check+release/1 concurrency rule", |b| b.iter(|| drop(black_box(l.check(&conc, 0).unwrap()))));
    // One of each kind on one caller, as a key with all three would have.
    let all = [one[0].clone(), tokens[0].clone(), conc[0].clone()];
    c.bench_function("limiter/check+settle/3 rules (one per kind)", |b| {
        b.iter(|| l.check(&all, black_box(1_500)).unwrap().hold.settle(Some(black_box(1_200))))
    });
    let two = [rule(1, u64::MAX), RuleCheck::new(key(RuleTarget::Workspace, 1, 1_000), u64::MAX, String::new())];
    c.bench_function("limiter/check/2 rules", |b| b.iter(|| black_box(l.check(&two, 0).is_ok())));

    let rules: Vec<[RuleCheck; 1]> = (0..100_000).map(|k| [rule(k, u64::MAX)]).collect();
    many_keys(c, "limiter/check/100k active keys", Limiter::new(SystemClock::default()), &rules);
}

/// Checks `rules` (one key each) in a scattered order after admitting each once.
fn many_keys(c: &mut Criterion, name: &str, limiter: Limiter, rules: &[[RuleCheck; 1]]) {
    for r in rules {
        limiter.check(r, 0).unwrap();
    }
    let mut i = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 7919) % rules.len();
            black_box(limiter.check(&rules[i], 0).is_ok())
        })
    });
}

/// A clock that moves 20 us per reading: the limiter sees time pass as it would at 50,000
/// requests per second, about what the whole gateway serves on this machine.
#[derive(Debug)]
struct AtFiftyThousandPerSecond(AtomicU64);
impl Clock for AtFiftyThousandPerSecond {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(20, Ordering::Relaxed) / 1000
    }
    fn unix_ms(&self) -> i64 {
        0
    }
}

fn limiter_realistic(c: &mut Criterion) {
    // 100k keys, each checked in turn at 50k req/s overall: every key is active (admitted within
    // its window) and holds the few admissions a real key has, not the tens that a loop at
    // millions of checks per second piles up in the "100k active keys" case above.
    let rules: Vec<[RuleCheck; 1]> =
        (0..100_000).map(|k| [RuleCheck::new(key(RuleTarget::ApiKey, k, 10_000), u64::MAX, String::new())]).collect();
    many_keys(c, "limiter/check/100k active keys at 50k req/s", Limiter::new(AtFiftyThousandPerSecond(AtomicU64::new(1_000_000))), &rules);
}

/// A model with a per-key rule for each of 100k keys and one workspace rule: the rules of one
/// caller are found without looking at the others.
fn rules_of_a_caller(c: &mut Criterion) {
    let mut rules = Rules::default();
    for k in 0..100_000 {
        rules.add(RuleTarget::ApiKey, k, rule(k, 10));
    }
    rules.add(RuleTarget::Workspace, 1, RuleCheck::new(key(RuleTarget::Workspace, 1, 1_000), 1_000, String::new()));
    let mut k = 0;
    c.bench_function("rules/for a caller among 100k per-key rules", |b| {
        b.iter(|| {
            k = (k + 7919) % 100_000;
            black_box(rules.for_caller(&Caller { key_id: k, workspace_id: 1, expires_at: None, models: None }).len())
        })
    });
}

/// Issue 29: what pricing adds to a call. At its end: the version in force (three versions) and
/// the cost of its usage, rounded once. At admission, with a money budget: the estimate's price
/// and a money reservation beside the tokens in a quota, settled to the real cost.
fn pricing(c: &mut Criterion) {
    use app::ssr::pricing::{Rates, Schedule, Used};
    use server::gateway::admission::quota::{self, Money, QuotaCheck, QuotaKey, Reservation, Unpriced};
    use server::gateway::admission::Consumed;
    let rates =
        |i: i64| Rates { input: 150_000 * i, cached_input: 15_000 * i, cache_write: None, output: 600_000 * i, unit: 0, call: 1_000 * i };
    let prices = Schedule::new(vec![(1_700_000_000, rates(1)), (1_750_000_000, rates(2)), (1_800_000_000, rates(3))]);
    let used = Used { input: 1_234, cached: 200, cache_write: 0, output: 567, units: 0 };
    c.bench_function("pricing/cost of a call (version lookup + rounding)", |b| {
        b.iter(|| black_box(black_box(&prices).at(black_box(1_760_000_000)).map(|r| r.cost_nanos(black_box(used)))))
    });
    let key = QuotaKey { target: RuleTarget::ApiKey, subject_id: 1, period: app::days::Period::Month };
    let plain = QuotaCheck::new(key, Some(u64::MAX / 4), None);
    let money = QuotaCheck::new(key, Some(u64::MAX / 4), None).with_spend(Money {
        nanos: u64::MAX / 4,
        unpriced: Unpriced::Refuse,
        currency: "USD".into(),
        alerts: std::sync::Arc::new([]),
    });
    let now = 1_760_000_000;
    let settle = Consumed::Used { tokens: 1_801, nanos: Some(541_000) };
    c.bench_function("pricing/quota check+settle, tokens only", |b| {
        b.iter(|| quota::check(&[&plain], now, Reservation { tokens: 2_000, nanos: 0 }).unwrap().end(black_box(settle)))
    });
    c.bench_function("pricing/quota check+settle, with a money budget (estimate priced)", |b| {
        b.iter(|| {
            let nanos = prices.at(now).map_or(0, |r| r.cost_nanos(Used { input: 1_500, output: 500, ..Default::default() })) as u64;
            quota::check(&[&money], now, Reservation { tokens: 2_000, nanos }).unwrap().end(black_box(settle))
        })
    });
}

criterion_group!(benches, balancers, rules_of_a_caller, limiter, limiter_realistic, pricing);
criterion_main!(benches);
