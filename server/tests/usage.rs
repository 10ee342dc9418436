//! The usage tables as the console reads them, on a real SQLite file (and PostgreSQL with
//! MAAS_TEST_DB=postgres): sums over any range, the hourly compaction counting every call
//! exactly once (late rows of a compacted hour included), retention, the Usage page's report,
//! a user's per-key usage, and the CSV export.
mod common;
use app::ssr::services::{keys, models, usage, workspaces};
use app::ssr::usage_rollups::{self, aggregate, bucket, By, MinuteRow, Scope, Sums};
use app::types::*;
use common::*;

/// A rollup of `n` calls of `tokens` (input, output) each, all of `ms` total and ttfb.
fn sums(n: i64, input: i64, output: i64, ms: u64) -> Sums {
    let mut s = Sums {
        requests: n,
        usage_known: n,
        input: n * input,
        output: n * output,
        total: n * (input + output),
        // A tenth of the input read from the cache.
        cached: n * input / 10,
        units: n * 2,
        latency_ms: n * ms as i64,
        ttfb_ms: n * ms as i64,
        ..Default::default()
    };
    s.latency_hist[bucket(ms)] = n;
    s.ttfb_hist[bucket(ms)] = n;
    s
}

struct Row {
    minute: i64,
    model: Option<i64>,
    ws: Option<i64>,
    key: Option<i64>,
    outcome: &'static str,
    sums: Sums,
}

async fn insert(env: &Env, rows: &[Row]) {
    let rows: Vec<MinuteRow> = rows
        .iter()
        .map(|r| MinuteRow {
            minute: r.minute,
            gateway_id: "gw-test",
            maas_model_id: r.model,
            model: "chat",
            endpoint_id: None,
            workspace_id: r.ws,
            api_key_id: r.key,
            operation: "chat",
            outcome: r.outcome,
            status: if r.outcome == "ok" { 200 } else { 429 },
            asked_model_id: None,
            sums: &r.sums,
        })
        .collect();
    usage_rollups::insert_minutes(env.db(), &rows).await.unwrap();
}

async fn requests_in(env: &Env, from: i64, to: i64, bucket: Option<i64>) -> (i64, i64) {
    let g = aggregate(env.db(), &Scope { from_minute: from, to_minute: to, ..Default::default() }, By::Outcome, bucket).await.unwrap();
    g.iter().fold((0, 0), |(r, t), g| (r + g.sums.requests, t + g.sums.total))
}

/// A flush larger than one INSERT statement (they bind at most 32,000 values: 695 rows) lands
/// whole: every row of every statement, the last short one included, with its values in their
/// columns (each key its own tokens).
#[tokio::test]
async fn a_flush_of_several_statements_stores_every_row_with_its_own_values() {
    let env = env().await;
    let minute = 600_000 * 60;
    let rows: Vec<Row> = (1..=1_500)
        .map(|k| Row { minute, model: Some(1 + k % 7), ws: Some(1 + k / 100), key: Some(k), outcome: "ok", sums: sums(1, k, 1, 30) })
        .collect();
    insert(&env, &rows).await;
    assert_eq!(requests_in(&env, minute, minute + 1, None).await, (1_500, (1..=1_500).map(|k| k + 1).sum::<i64>()));
    let by_key = aggregate(
        env.db(),
        &Scope { from_minute: minute, to_minute: minute + 1, keys: Some(vec![700, 1_500]), ..Default::default() },
        By::KeyOutcome,
        None,
    )
    .await
    .unwrap();
    let mut got: Vec<(Option<i64>, i64)> = by_key.iter().map(|g| (g.int(1), g.sums.input)).collect();
    got.sort();
    assert_eq!(got, vec![(Some(700), 700), (Some(1_500), 1_500)], "the second statement's first row and the last row");
    let last = aggregate(
        env.db(),
        &Scope { from_minute: minute, to_minute: minute + 1, keys: Some(vec![1_500]), ..Default::default() },
        By::Outcome,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (last[0].sums.latency_ms, last[0].sums.latency_hist[bucket(30)], last[0].sums.ttfb_hist[bucket(30)]),
        (30, 1, 1),
        "histograms in their columns"
    );
}

#[tokio::test]
async fn compaction_keeps_every_call_counted_exactly_once_late_rows_included() {
    let env = env().await;
    // Two complete hours (10:00-11:59 of some day) and the current one.
    let h0 = 500_000 * 60;
    let ok = |minute, n| Row { minute, model: Some(1), ws: Some(1), key: Some(1), outcome: "ok", sums: sums(n, 5, 2, 40) };
    insert(&env, &[ok(h0 + 1, 3), ok(h0 + 59, 4), ok(h0 + 60, 5), ok(h0 + 125, 6)]).await;
    let now = h0 + 130;
    assert_eq!(requests_in(&env, h0, now, Some(60)).await, (18, 18 * 7));

    let written = usage_rollups::compact(env.db(), now).await.unwrap();
    assert_eq!(written, 2, "one hourly row per complete hour and dimensions");
    // Hour resolution now reads the hourly rows and the current hour's minute rows: the same.
    assert_eq!(requests_in(&env, h0, now, Some(60)).await, (18, 18 * 7));
    // Minute resolution reads the minute rows, compacted or not: the same.
    assert_eq!(requests_in(&env, h0, now, Some(1)).await, (18, 18 * 7));
    // Filtered, compacted rows and pending ones are found by different indexes (migration
    // m20261206_000001): still every row, once; another key's filter finds none.
    for (key, all, second_hour_only) in [(1, 18, 11), (2, 0, 0)] {
        let scope = Scope { from_minute: h0, to_minute: now, keys: Some(vec![key]), models: Some(vec![1]), ..Default::default() };
        let g = aggregate(env.db(), &scope, By::KeyOutcome, Some(15)).await.unwrap();
        assert_eq!(g.iter().map(|g| g.sums.requests).sum::<i64>(), all, "key {key}, quarter-hour buckets");
        let second_hour = Scope { from_minute: h0 + 60, ..scope };
        let g = aggregate(env.db(), &second_hour, By::Outcome, Some(1)).await.unwrap();
        assert_eq!(
            g.iter().map(|g| g.sums.requests).sum::<i64>(),
            second_hour_only,
            "key {key}, minute buckets from the second hour: one row compacted, one pending"
        );
    }
    // A second compaction has nothing to do.
    assert_eq!(usage_rollups::compact(env.db(), now).await.unwrap(), 0);

    // A replica's late flush into an hour already compacted: counted once, compacted next run.
    insert(&env, &[ok(h0 + 30, 2)]).await;
    assert_eq!(requests_in(&env, h0, now, Some(60)).await.0, 20);
    assert_eq!(usage_rollups::compact(env.db(), now).await.unwrap(), 1);
    assert_eq!(requests_in(&env, h0, now, Some(60)).await.0, 20);
    assert_eq!(requests_in(&env, h0, now, Some(360)).await.0, 20);

    // Retention: compacted minute rows go after their time, hourly rows stay.
    let (minutes, hours) = usage_rollups::retain(env.db(), now + 3 * 1440, 2 * 1440, 400 * 24).await.unwrap();
    assert_eq!((minutes, hours), (4, 0), "the four compacted minute rows of the two old hours");
    assert_eq!(requests_in(&env, h0, now, Some(60)).await.0, 20, "hourly rows still count them");
    let (_, hours) = usage_rollups::retain(env.db(), now + 401 * 1440, 2 * 1440, 400 * 24).await.unwrap();
    assert_eq!(hours, 3);
}

#[tokio::test]
async fn the_report_sums_per_period_and_filter_and_draws_the_charts() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let (id, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    let other_ws = workspaces::create(env.db(), &app::ssr::audit::Actor::system(), "team-b").await.unwrap();
    let (other_key, _) = keys::create(env.db(), &app::ssr::audit::Actor::system(), &op, other_ws, "batch").await.unwrap();
    let now = app::ssr::now() / 60;
    let row = |minute, ws, key, outcome, s| Row { minute, model: Some(id), ws: Some(ws), key: Some(key), outcome, sums: s };
    insert(
        &env,
        &[
            row(now - 5, f.ws, f.key, "ok", sums(10, 100, 20, 300)),
            row(now - 5, f.ws, f.key, "rate_limited", Sums { requests: 3, ..Default::default() }),
            row(now - 2, other_ws, other_key.info.id, "ok", sums(2, 1000, 500, 2000)),
            // Three days ago: in 7 d and 30 d only.
            row(now - 3 * 1440, f.ws, f.key, "ok", sums(7, 1, 1, 50)),
        ],
    )
    .await;

    let day = usage::report(env.db(), &UsageFilter { range: UsageRange::Day, ..Default::default() }).await.unwrap();
    assert_eq!((day.totals.requests, day.totals.rate_limited, day.totals.total_tokens), (15, 3, 10 * 120 + 2 * 1500));
    assert_eq!(day.totals.usage_unknown, 3, "the 429s: no usage");
    // Top keys by tokens: batch (3,000) before ci (1,200).
    let top: Vec<(&str, i64)> = day.top_keys.iter().map(|l| (l.label.as_str(), l.figures.total_tokens)).collect();
    assert_eq!(top, [("batch", 3000), ("ci", 1200)]);
    let top_ws: Vec<&str> = day.top_workspaces.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(top_ws, ["team-b", "team-a"]);
    assert_eq!(day.models.len(), 1);
    assert_eq!(day.models[0].label, "deepseek-chat");
    // p50 of 10 calls at 300 ms and 2 at 2 s: within the 250-500 ms bucket.
    assert!(day.totals.p50_ms.is_some_and(|p| (250.0..=500.0).contains(&p)), "{:?}", day.totals.p50_ms);
    assert_eq!(day.charts.len(), 4);
    for c in &day.charts {
        assert!(
            c.svg.starts_with("<svg role=\"img\"") && c.svg.contains("viewBox") && c.svg.contains("<polyline") || c.svg.contains("<path"),
            "{}: {}",
            c.title,
            &c.svg[..200.min(c.svg.len())]
        );
    }
    assert!(day.charts[0].svg.contains("calls / 15 min"), "axis title with the bucket unit");

    let week = usage::report(env.db(), &UsageFilter { range: UsageRange::Week, ..Default::default() }).await.unwrap();
    assert_eq!(week.totals.requests, 22);
    let hour_team_a =
        usage::report(env.db(), &UsageFilter { range: UsageRange::Hour, workspace: Some(f.ws), ..Default::default() }).await.unwrap();
    assert_eq!(hour_team_a.totals.requests, 13);
    let by_key = usage::report(env.db(), &UsageFilter { range: UsageRange::Month, key: Some(other_key.info.id), ..Default::default() })
        .await
        .unwrap();
    assert_eq!((by_key.totals.requests, by_key.totals.input_tokens), (2, 2000));

    // The management list: the model's last 24 h.
    let list = models::list(env.db(), "", 0, 20).await.unwrap();
    assert_eq!((list.rows[0].usage_24h.requests, list.rows[0].usage_24h.total_tokens), (15, 4200));

    // A user sees their own workspace's keys only.
    let user = env.user("alice", Role::User).await;
    workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), f.ws, "alice").await.unwrap();
    let mine = usage::key_usage(env.db(), &user).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].key_id, mine[0].day.requests, mine[0].month.requests, mine[0].month.total_tokens), (f.key, 13, 20, 1200 + 14));
}

#[tokio::test]
async fn the_csv_export_has_one_line_per_day_workspace_key_and_model_with_exact_sums() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let day0 = usage::parse_day("2026-11-02").unwrap();
    let m = |d: i64, h: i64| (day0 + d) * 1440 + h * 60;
    let row = |minute, n| Row { minute, model: Some(9), ws: Some(f.ws), key: Some(f.key), outcome: "ok", sums: sums(n, 10, 1, 20) };
    insert(&env, &[row(m(0, 1), 2), row(m(0, 23), 3), row(m(1, 0), 4), row(m(5, 0), 100)]).await;
    // Half of it compacted: the export adds hourly and minute rows alike.
    usage_rollups::compact(env.db(), m(0, 12)).await.unwrap();

    let csv = usage::export_csv(env.db(), "2026-11-02", "2026-11-03").await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "day,workspace_id,workspace,api_key_id,api_key,model_id,model,requests,input_tokens,output_tokens,total_tokens,requests_usage_unknown,cached_tokens,units,unit,asked_model_id,asked_model,cost,cost_unknown,cache_write_tokens");
    assert_eq!(lines[1], format!("2026-11-02,{},team-a,{},ci,9,chat,5,50,5,55,0,5,10,,,,0.00,0,0", f.ws, f.key));
    assert_eq!(lines[2], format!("2026-11-03,{},team-a,{},ci,9,chat,4,40,4,44,0,4,8,,,,0.00,0,0", f.ws, f.key));
    assert_eq!(lines.len(), 3, "the 7th is outside the period: {csv}");

    for (from, to, field) in
        [("2026-11-03", "2026-11-02", "to"), ("2026-02-30", "2026-11-02", "from"), ("2025-01-01", "2026-12-31", "to"), ("", "x", "from")]
    {
        match usage::export_csv(env.db(), from, to).await {
            Err(app::ssr::ServiceError::App(app::error::AppError::Invalid(e))) => assert!(e.get(field).is_some(), "{from}..{to}: {e:?}"),
            other => panic!("{from}..{to}: {other:?}"),
        }
    }
}

/// A call a fallback model answered is counted under the model that answered it and under the
/// model asked for: through the hourly compaction, on the Usage page (its own table, the models
/// table counting it under the fallback), in the daily usage and the CSV.
#[tokio::test]
async fn calls_a_fallback_answered_count_under_the_model_asked_for_and_the_one_that_answered() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let sys = app::ssr::audit::Actor::system();
    let (chat, _) = models::create(env.db(), &sys, &env.state.secrets, &weighted_input(&f)).await.unwrap();
    let backup_mm = app::ssr::services::catalog::create_marketplace(
        env.db(),
        &sys,
        &MarketplaceInput { name: "backup".into(), provider: "Local".into(), ..Default::default() },
    )
    .await
    .unwrap();
    app::ssr::services::catalog::set_published(env.db(), &sys, backup_mm, true).await.unwrap();
    let backup =
        models::create(env.db(), &sys, &env.state.secrets, &ModelInput { marketplace_model_id: Some(backup_mm), ..weighted_input(&f) })
            .await
            .unwrap()
            .0;
    let now = app::ssr::now() / 60;
    // Two hours ago (compacted below) and now: chat answered 4 itself, backup 3 for chat, and
    // backup 5 of its own.
    let (own, fell_back, backups_own) = (sums(4, 10, 1, 20), sums(3, 100, 10, 20), sums(5, 1, 1, 20));
    let mut rows = Vec::new();
    for minute in [now - 120, now - 1] {
        for (model, name, asked, s) in
            [(chat, "deepseek-chat", None, &own), (backup, "backup", Some(chat), &fell_back), (backup, "backup", None, &backups_own)]
        {
            rows.push(MinuteRow {
                minute,
                gateway_id: "gw-test",
                maas_model_id: Some(model),
                model: name,
                endpoint_id: None,
                workspace_id: Some(f.ws),
                api_key_id: Some(f.key),
                operation: "chat",
                outcome: "ok",
                status: 200,
                asked_model_id: asked,
                sums: s,
            });
        }
    }
    usage_rollups::insert_minutes(env.db(), &rows).await.unwrap();
    usage_rollups::compact(env.db(), now - 60).await.unwrap();

    for range in [UsageRange::Hour, UsageRange::Day] {
        let r = usage::report(env.db(), &UsageFilter { range, ..Default::default() }).await.unwrap();
        let n = if range == UsageRange::Hour { 1 } else { 2 };
        let lines: Vec<(&str, i64, i64)> =
            r.fallbacks.iter().map(|l| (l.label.as_str(), l.figures.requests, l.figures.input_tokens)).collect();
        assert_eq!(lines, [("deepseek-chat → backup", 3 * n, 300 * n)], "{range:?}");
        let models: Vec<(&str, i64)> = r.models.iter().map(|l| (l.label.as_str(), l.figures.requests)).collect();
        assert_eq!(models, [("backup", 8 * n), ("deepseek-chat", 4 * n)], "{range:?}: the answering model counts them");
    }

    let today = usage::format_day(now.div_euclid(1440));
    let daily = usage::daily(env.db(), &today, &today).await.unwrap();
    let mut lines: Vec<(String, Option<i64>, String, i64)> =
        daily.iter().map(|d| (d.model.clone(), d.asked_model_id, d.asked_model.clone(), d.requests)).collect();
    lines.sort();
    // (The rows two hours ago may fall on yesterday just after midnight.)
    let n = if (now - 120).div_euclid(1440) == now.div_euclid(1440) { 2 } else { 1 };
    assert_eq!(
        lines,
        [
            ("backup".into(), None, "".into(), 5 * n),
            ("backup".into(), Some(chat), "deepseek-chat".into(), 3 * n),
            ("deepseek-chat".into(), None, "".into(), 4 * n),
        ]
    );
    let csv = usage::export_csv(env.db(), &today, &today).await.unwrap();
    let line = format!(",backup,{},{},{},{},0,{},{},,{chat},deepseek-chat,0.00,0,0", 3 * n, 300 * n, 30 * n, 330 * n, 30 * n, 6 * n);
    assert!(csv.lines().any(|l| l.ends_with(&line)), "{line} in {csv}");
}

/// Model names come from callers (a 404 is counted under what was sent): written into the
/// flush's statement, they are quoted, never run.
#[tokio::test]
async fn hostile_model_names_are_stored_as_sent() {
    let env = env().await;
    let s = sums(1, 1, 1, 10);
    for name in ["x'); DROP TABLE usage_minutes; --", "back\\slash '' \"quote\"", "é漢字\u{1F600}"] {
        let row = MinuteRow {
            minute: 1,
            gateway_id: "gw",
            maas_model_id: None,
            model: name,
            endpoint_id: None,
            workspace_id: None,
            api_key_id: None,
            operation: "chat",
            outcome: "not_found",
            status: 404,
            asked_model_id: None,
            sums: &s,
        };
        usage_rollups::insert_minutes(env.db(), &[row]).await.unwrap();
        let g = aggregate(env.db(), &Scope { from_minute: 0, to_minute: 10, ..Default::default() }, By::ModelOutcome, None).await.unwrap();
        assert!(g.iter().any(|g| g.text(1) == Some(name)), "{name}: {g:?}");
    }
}

/// The unfiltered views of a day and longer read the quarters and day blocks the compaction
/// keeps: 40 days of calls from many keys and models (refused ones without key or model among
/// them), compacted in passes with late rows between them, must add up there exactly as the
/// calls themselves do, for every range and every grouping the Usage page asks for.
#[tokio::test]
async fn quarters_and_day_blocks_sum_exactly_what_was_recorded() {
    use std::collections::BTreeMap;
    let env = env().await;
    // 40 days ending some minutes into an hour of day 20,040 (not a multiple of 16).
    let now = 20_040 * 1440 + 17 * 60 + 23;
    let start = now - 40 * 1440;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n) as i64
    };
    let mut calls: Vec<Row> = (0..900)
        .map(|_| {
            let refused = next(10) == 0;
            let model = if next(12) == 0 { None } else { Some(1 + next(5)) };
            let key = if refused { None } else { Some(1 + next(8)) };
            Row {
                minute: start + next(40 * 1440),
                model,
                ws: key.map(|k| 1 + k % 3),
                key,
                outcome: if refused {
                    "unauthenticated"
                } else if next(7) == 0 {
                    "rate_limited"
                } else {
                    "ok"
                },
                sums: sums(1 + next(4), 1 + next(500), next(300), next(3000) as u64),
            }
        })
        .collect();
    calls.sort_by_key(|c| c.minute);
    async fn store(env: &Env, cs: &[Row]) {
        let names: Vec<String> = cs.iter().map(|c| format!("m{}", c.model.unwrap_or(99))).collect();
        let rows: Vec<MinuteRow> = cs
            .iter()
            .zip(&names)
            .map(|(c, name)| MinuteRow {
                minute: c.minute,
                gateway_id: "gw-test",
                maas_model_id: c.model,
                model: name,
                endpoint_id: c.model.map(|m| 100 + m),
                workspace_id: c.ws,
                api_key_id: c.key,
                operation: "chat",
                outcome: c.outcome,
                status: 200,
                asked_model_id: None,
                sums: &c.sums,
            })
            .collect();
        usage_rollups::insert_minutes(env.db(), &rows).await.unwrap();
    }
    // The first 30 days, compacted; late rows into those days (a replica's delayed flush) with
    // the rest; compacted again up to the current hour, whose rows stay minute rows.
    let (early, rest) = calls.split_at(calls.iter().position(|c| c.minute >= start + 30 * 1440).unwrap());
    store(&env, early).await;
    usage_rollups::compact(env.db(), start + 30 * 1440).await.unwrap();
    let late: Vec<Row> = (0..40)
        .map(|i| Row {
            minute: start + next(30 * 1440),
            model: Some(1 + i % 5),
            ws: Some(1),
            key: Some(3),
            outcome: "ok",
            sums: sums(2, 7, 3, 90),
        })
        .collect();
    store(&env, &late).await;
    store(&env, rest).await;
    usage_rollups::compact(env.db(), now).await.unwrap();
    calls.extend(late);

    for hours in [24, 7 * 24, 30 * 24, 30 * 24 + 5, 37] {
        let from = (now / 60 - hours) * 60;
        let scope = Scope { from_minute: from, to_minute: now + 1, ..Default::default() };
        let inside: Vec<&Row> = calls.iter().filter(|c| c.minute >= from && c.minute <= now).collect();
        let fold = |groups: &[usage_rollups::Group], key: &dyn Fn(&usage_rollups::Group) -> String| {
            let mut got: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
            for g in groups {
                let e = got.entry(key(g)).or_default();
                *e = (e.0 + g.sums.requests, e.1 + g.sums.input, e.2 + g.sums.total, e.3 + g.sums.latency_hist.iter().sum::<i64>());
            }
            got
        };
        let expect = |key: &dyn Fn(&Row) -> String, hist: bool| {
            let mut want: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
            for c in &inside {
                let e = want.entry(key(c)).or_default();
                *e = (e.0 + c.sums.requests, e.1 + c.sums.input, e.2 + c.sums.total, e.3 + if hist { c.sums.requests } else { 0 });
            }
            want
        };
        let keys = aggregate(env.db(), &scope, By::KeyOutcome, None).await.unwrap();
        assert_eq!(
            fold(&keys, &|g| format!("{:?}/{:?}/{}", g.int(0), g.int(1), g.text(2).unwrap())),
            expect(&|c| format!("{:?}/{:?}/{}", c.ws, c.key, c.outcome), false),
            "keys over {hours} h"
        );
        let spaces = aggregate(env.db(), &scope, By::WorkspaceOutcome, None).await.unwrap();
        assert_eq!(
            fold(&spaces, &|g| format!("{:?}/{}", g.int(0), g.text(1).unwrap())),
            expect(&|c| format!("{:?}/{}", c.ws, c.outcome), false),
            "workspaces over {hours} h"
        );
        // The database's ranking of keys: most tokens, then requests, then id.
        let mut per_key: BTreeMap<Option<i64>, (i64, i64)> = BTreeMap::new();
        for c in &inside {
            let e = per_key.entry(c.key).or_default();
            *e = (e.0 + c.sums.total, e.1 + c.sums.requests);
        }
        let mut want: Vec<(Option<i64>, (i64, i64))> = per_key.into_iter().collect();
        want.sort_by_key(|(k, (t, r))| (std::cmp::Reverse(*t), std::cmp::Reverse(*r), *k));
        let want: Vec<Option<i64>> = want.into_iter().take(4).map(|(k, _)| k).collect();
        assert_eq!(usage_rollups::rank_keys(env.db(), &scope, 4).await.unwrap(), want, "top keys over {hours} h");
        let models = aggregate(env.db(), &scope, By::ModelEndpointOutcome, None).await.unwrap();
        assert_eq!(
            fold(&models, &|g| format!("{:?}/{}/{:?}/{}", g.int(0), g.text(1).unwrap(), g.int(2), g.text(3).unwrap())),
            expect(&|c| format!("{:?}/m{}/{:?}/{}", c.model, c.model.unwrap_or(99), c.model.map(|m| 100 + m), c.outcome), true),
            "models and endpoints over {hours} h"
        );
        for bucket in [15, 60, 360] {
            let series = aggregate(env.db(), &scope, By::Outcome, Some(bucket)).await.unwrap();
            assert_eq!(
                fold(&series, &|g| format!("{}/{}", g.at_minute, g.text(0).unwrap())),
                expect(&|c| format!("{}/{}", c.minute / bucket * bucket, c.outcome), true),
                "series in buckets of {bucket} min over {hours} h"
            );
        }
    }
    // Retention takes the blocks with the hourly rows (a block once it has wholly passed).
    usage_rollups::retain(env.db(), now + 420 * 1440, 2 * 1440, 400 * 24).await.unwrap();
    let scope = Scope { from_minute: now - 30 * 1440, to_minute: now + 1, ..Default::default() };
    let keys = aggregate(env.db(), &scope, By::KeyOutcome, None).await.unwrap();
    let left: i64 = keys.iter().map(|g| g.sums.requests).sum();
    let current_hour: i64 = calls.iter().filter(|c| c.minute >= now / 60 * 60).map(|c| c.sums.requests).sum();
    assert_eq!(left, current_hour, "only the current hour's minute rows, never compacted");
}
