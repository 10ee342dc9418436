//! A flush of 10,000 usage rollup rows (10,000 keys active in one minute) into a SQLite file:
//! one transaction of batched INSERTs, what the gateway does every few seconds. Also what
//! recording a call costs the serving thread.
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sea_orm::ConnectionTrait;
use server::gateway::meter::Meter;
use server::gateway::op::Op;
use server::gateway::record::{Call, Outcome};
use server::gateway::usage::Tokens;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn call(key: i64) -> Call {
    Call {
        model: Arc::from("bench-model"),
        maas_model_id: Some(1 + key % 1000),
        asked_model_id: None,
        endpoint_id: Some(1 + key % 1000),
        workspace_id: Some(1 + key / 100),
        api_key_id: Some(key),
        op: Op::Chat,
        status: 200,
        outcome: Outcome::Ok,
        failovers: 0,
        ttfb_ms: Some(120),
        total_ms: 900,
        tokens: Some(Tokens { input: 400, output: 120, total: 520, cached: 0, cache_write: 0, seconds: 0 }),
        units: 0,
        cost: Some(0),
        at_ms: 1_800_000_000_000,
    }
}

fn flush(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut g = c.benchmark_group("usage");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    // The reference, in the same run: the same database with the minute rows' indexes as they
    // were before migration m20261206_000001 made the filtered ones partial (compacted rows only).
    for (name, extra) in [
        ("sqlite", &[][..]),
        ("sqlite, every index on every row (before m20261206)", &migration::m20261206_000001_usage_append_indexes::FULL[..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = rt.block_on(server::bootstrap::open_db(&format!("sqlite://{}/maas.db?mode=rwc", dir.path().display()))).unwrap();
        for sql in extra {
            rt.block_on(db.execute_unprepared(sql)).unwrap();
        }
        let meter = Meter::default();
        // One cycle, as the flusher runs it: 10,000 calls recorded, their flush (one
        // transaction), then the WAL checkpoint outside it. Each bench times its own step.
        let cycle = || {
            for k in 0..10_000 {
                meter.record(call(k));
            }
            let t = Instant::now();
            let rows = rt.block_on(meter.flush(&db, "bench")).unwrap();
            let flushed = t.elapsed();
            assert_eq!(rows, 10_000);
            let t = Instant::now();
            rt.block_on(app::ssr::checkpoint(&db)).unwrap();
            (flushed, t.elapsed())
        };
        g.bench_function(format!("flush/10k rows/{name}"), |b| b.iter_custom(|iters| (0..iters).map(|_| cycle().0).sum()));
        // The checkpoint: no write lock held, timed apart.
        g.bench_function(format!("checkpoint after a 10k-row flush/{name}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| cycle().1).sum())
        });
    }
    g.finish();
    let m = Meter::default();
    let mut k = 0;
    c.bench_function("meter/record/one call (10k keys)", |b| {
        b.iter(|| {
            k = (k + 1) % 10_000;
            m.record(black_box(call(k)));
        })
    });
}

criterion_group!(benches, flush);
criterion_main!(benches);
