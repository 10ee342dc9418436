//! Hot-path micro-benchmarks: balancer pick and limiter check (also with 100k active counters).
use app::types::RuleTarget;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use server::gateway::balancer::{Balancer, Random, RoundRobin, Weighted};
use server::gateway::limiter::{CounterKey, Limiter, RuleCheck, SystemClock};

fn rule(subject: i64, limit: u64) -> RuleCheck {
    RuleCheck { key: CounterKey { model_id: 1, target: RuleTarget::ApiKey, subject_id: subject, duration_ms: 1_000 }, limit, label: String::new() }
}

fn balancers(c: &mut Criterion) {
    let all = |_: usize| true;
    let rr = RoundRobin::default();
    c.bench_function("balancer/round_robin/3", |b| b.iter(|| black_box(rr.candidates(3, &all).next())));
    let w = Weighted::new(vec![50, 30, 20]);
    c.bench_function("balancer/weighted/3", |b| b.iter(|| black_box(w.candidates(3, &all).next())));
    let r = Random::new(1);
    c.bench_function("balancer/random/3", |b| b.iter(|| black_box(r.candidates(3, &all).next())));
}

fn limiter(c: &mut Criterion) {
    let l = Limiter::new(SystemClock::default());
    let one = [rule(1, u64::MAX)];
    c.bench_function("limiter/check/1 rule", |b| b.iter(|| black_box(l.check(&one).is_ok())));
    let two = [rule(1, u64::MAX), RuleCheck { key: CounterKey { target: RuleTarget::Workspace, ..one[0].key }, ..rule(1, u64::MAX) }];
    c.bench_function("limiter/check/2 rules", |b| b.iter(|| black_box(l.check(&two).is_ok())));

    let big = Limiter::new(SystemClock::default());
    let rules: Vec<[RuleCheck; 1]> = (0..100_000).map(|k| [rule(k, u64::MAX)]).collect();
    for r in &rules {
        big.check(r).unwrap();
    }
    let mut i = 0usize;
    c.bench_function("limiter/check/100k active keys", |b| {
        b.iter(|| {
            i = (i + 7919) % rules.len();
            black_box(big.check(&rules[i]).is_ok())
        })
    });
}

criterion_group!(benches, balancers, limiter);
criterion_main!(benches);
