//! Scale-out (DESIGN.md "Processes and modes"): several gateway replicas serving one cluster
//! share one rate limit through a real Redis ("under concurrent load the limit is exact, in one
//! process and across replicas"), follow the control plane's changes through a real PostgreSQL
//! within a second, and keep limiting per replica when Redis goes away.
mod common;
use app::ssr::services::{catalog, keys, models, workspaces};
use app::ssr::AppState;
use app::types::*;
use common::daemons::{Postgres, Redis, RedisCluster};
use sea_orm::EntityTrait;
use serde_json::{json, Value};
use server::gateway::admission::redis_limiter::{RedisConfig, RedisLimiter, Refused, SharedCounter};
use server::gateway::{spawn_reloader, Gateway, GatewayConfig, Serves};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn serve(router: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("http://{addr}")
}

/// What the tests create: a published marketplace model `chat` on cluster `local`, a workspace
/// with one key, and the mock upstream.
struct Fixture {
    op: CurrentUser,
    mm: i64,
    cluster: i64,
    ws: i64,
    key: String,
    key_id: i64,
    mock: String,
}

async fn fixture(state: &AppState) -> Fixture {
    let db = &state.db;
    let id = app::ssr::auth::create_user(db, &app::ssr::audit::Actor::system(), "op", "password123", Role::Operator).await.unwrap();
    let op = CurrentUser { id, username: "op".into(), role: Role::Operator };
    let mm = catalog::create_marketplace(
        db,
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "chat".into(), provider: "p".into(), ..Default::default() },
    )
    .await
    .unwrap();
    catalog::set_published(db, &app::ssr::audit::Actor::system(), mm, true).await.unwrap();
    let cluster = catalog::create_cluster(db, &app::ssr::audit::Actor::system(), "local", "http://127.0.0.1:1").await.unwrap();
    let ws = workspaces::create(db, &app::ssr::audit::Actor::system(), "team").await.unwrap();
    let (k, _) = keys::create(db, &app::ssr::audit::Actor::system(), &op, ws, "k").await.unwrap();
    let mock = serve(server::mock_upstream::router(Default::default(), true)).await;
    Fixture { op, mm, cluster, ws, key: k.secret, key_id: k.info.id, mock }
}

impl Fixture {
    /// Creates and enables `chat` with these rules; returns the model id and the revision.
    async fn model(&self, state: &AppState, rules: Vec<RuleInput>) -> (i64, i64) {
        self.model_at(state, "", rules).await
    }
    /// The same, its endpoint at `path` of the mock (`/chunks/4/chunk-delay/150`).
    async fn model_at(&self, state: &AppState, path: &str, rules: Vec<RuleInput>) -> (i64, i64) {
        let endpoints = vec![EndpointInput {
            id: None,
            model_id: "up".into(),
            url: format!("{}{path}", self.mock),
            api_key: KeyChange::default(),
            weight: "".into(),
            skip_stream_usage: false,
            max_concurrent: String::new(),
            native_apis: app::types::default_apis(),
            draining: false,
        }];
        let input = ModelInput {
            marketplace_model_id: Some(self.mm),
            cluster_id: Some(self.cluster),
            policy: Policy::RoundRobin,
            endpoints,
            rules,
            reserve_output: String::new(),
            affinity_key: Default::default(),
            ..Default::default()
        };
        let (id, _) = models::create(&state.db, &app::ssr::audit::Actor::system(), &state.secrets, &input).await.unwrap();
        let rev = models::set_enabled(&state.db, &app::ssr::audit::Actor::system(), id, None, true).await.unwrap();
        (id, rev)
    }
    fn workspace_rule(&self, limit: u64, secs: u64) -> RuleInput {
        RuleInput {
            kind: app::types::RuleKind::Requests,
            target: RuleTarget::Workspace,
            workspace_id: Some(self.ws),
            api_key_id: None,
            limit: limit.to_string(),
            duration: secs.to_string(),
        }
    }
    fn kind_rule(&self, kind: app::types::RuleKind, limit: u64, secs: &str) -> RuleInput {
        RuleInput {
            kind,
            target: RuleTarget::ApiKey,
            workspace_id: Some(self.ws),
            api_key_id: Some(self.key_id),
            limit: limit.to_string(),
            duration: secs.into(),
        }
    }
    fn key_rule(&self, limit: u64, secs: u64) -> RuleInput {
        RuleInput {
            kind: app::types::RuleKind::Requests,
            target: RuleTarget::ApiKey,
            workspace_id: Some(self.ws),
            api_key_id: Some(self.key_id),
            limit: limit.to_string(),
            duration: secs.to_string(),
        }
    }
}

/// The rule that refused a call in Redis (a test of rules only).
fn rule_refusal(r: Refused) -> server::gateway::admission::limiter::Rejection {
    match r {
        Refused::Rule(r) => r,
        Refused::Quota(i) => panic!("refused by quota {i}, not a rule"),
    }
}

const NO_LEASE: server::gateway::admission::redis_limiter::LeaseArgs = server::gateway::admission::redis_limiter::LeaseArgs {
    estimate: server::gateway::admission::quota::Reservation { tokens: 0, nanos: 0 },
    lease_id: 0,
    lease_ms: 60_000,
};

fn hello() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
}

/// Two in-process replicas on one database, each with its own Redis connections (as two
/// processes would have), both serving on their own port.
struct Replicas {
    _env: common::Env,
    state: AppState,
    fx: Fixture,
    gws: Vec<Arc<Gateway>>,
    bases: Vec<String>,
    http: reqwest::Client,
}

async fn replicas(redis_url: &str) -> Replicas {
    let env = common::env().await;
    let state = env.state.clone();
    let fx = fixture(&state).await;
    let mut gws = Vec::new();
    let mut bases = Vec::new();
    for i in 0..2 {
        let redis = RedisLimiter::new(&RedisConfig { url: redis_url.into(), ..Default::default() }, Duration::from_millis(300)).unwrap();
        let gw = Gateway::shared(GatewayConfig { heartbeat: Duration::from_millis(100), ..Default::default() }, redis);
        spawn_reloader(gw.clone(), state.clone(), Serves::Cluster("local".into()), format!("replica-{i}"));
        bases.push(common::serve_front(server::compose::replica(&gw, common::metrics_without_token(&gw))).await);
        gws.push(gw);
    }
    Replicas { _env: env, state, fx, gws, bases, http: reqwest::Client::new() }
}

impl Replicas {
    /// Creates and enables `chat` with `rules`; returns once every replica serves it.
    async fn model(&self, rules: Vec<RuleInput>) -> i64 {
        let (id, rev) = self.fx.model(&self.state, rules).await;
        self.applied(rev).await;
        id
    }
    /// Waits until every replica has applied `rev` (each polls the database's revision).
    async fn applied(&self, rev: i64) {
        for _ in 0..200 {
            if self.gws.iter().all(|g| g.revision() >= rev) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("replicas did not apply revision {rev} within 5 s");
    }
    /// `n` calls with `body` at once, alternating replicas, each read to its end: how many got
    /// each status.
    async fn burst(self: &Arc<Self>, n: usize, body: &Value) -> std::collections::BTreeMap<u16, u32> {
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let (r, body) = (self.clone(), body.clone());
                tokio::spawn(async move {
                    let res = r
                        .http
                        .post(format!("{}/v1/chat/completions", r.bases[i % 2]))
                        .bearer_auth(&r.fx.key)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let status = res.status().as_u16();
                    res.text().await.unwrap();
                    status
                })
            })
            .collect();
        let mut by_status = std::collections::BTreeMap::new();
        for c in calls {
            *by_status.entry(c.await.unwrap()).or_default() += 1;
        }
        by_status
    }
    async fn chat(&self, replica: usize) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.bases[replica]))
            .bearer_auth(&self.fx.key)
            .json(&hello())
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_thousand_concurrent_requests_over_two_replicas_admit_exactly_the_limit() {
    let redis = Redis::start().await;
    let r = Arc::new(replicas(&redis.url).await);
    r.model(vec![r.fx.workspace_rule(100, 3600)]).await;
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { (i % 2, r.chat(i % 2).await.status().as_u16()) })
        })
        .collect();
    let mut ok = [0; 2];
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (replica, 200) => ok[replica] += 1,
            (_, 429) => refused += 1,
            (_, s) => panic!("unexpected status {s}"),
        }
    }
    // Each replica got 500 attempts: counting alone, each would admit 100 (200 in all).
    assert_eq!(ok[0] + ok[1], 100, "one limit for both replicas (admitted per replica: {ok:?})");
    assert_eq!(refused, 900);
}

#[tokio::test]
async fn a_rejection_on_one_replica_reports_the_rule_and_consumes_nothing_anywhere() {
    let redis = Redis::start().await;
    let r = replicas(&redis.url).await;
    // Key: 3 per minute; workspace: 5 per minute.
    r.model(vec![r.fx.key_rule(3, 60), r.fx.workspace_rule(5, 60)]).await;
    for (i, replica) in [0, 1, 0].into_iter().enumerate() {
        let res = r.chat(replica).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-ratelimit-limit-requests"], "3", "the tightest rule");
        assert_eq!(res.headers()["x-ratelimit-remaining-requests"], (2 - i).to_string().as_str());
        // Until the first admission (on replica 0) leaves: about a minute, on Redis's clock.
        let reset = res.headers()["x-ratelimit-reset-requests"].to_str().unwrap().to_owned();
        assert!(["59.", "1m0"].iter().any(|p| reset.starts_with(p)), "{reset}");
    }
    // The fourth, on the other replica, is refused by the key rule: it saw the other's admissions.
    let res = r.chat(1).await;
    assert_eq!(res.status(), 429);
    let h = res.headers().clone();
    assert_eq!(h["x-maas-ratelimit-rule"], format!("api_key:{}:3/60s", r.fx.key_id).as_str());
    assert_eq!(h["x-ratelimit-limit-requests"], "3");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    // The first admission leaves 60 s after it, plus at most one 60 ms tick, rounded up.
    assert!((59..=61).contains(&retry), "{retry}");
    let reset = h["x-ratelimit-reset-requests"].to_str().unwrap();
    assert!(reset.starts_with("59.") || reset.starts_with("1m0") || reset.starts_with("1m1"), "{reset}");
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "rate_limit_exceeded");

    // Refusals by the key rule consumed nothing of the workspace's 5: another key of the same
    // workspace still gets exactly 2 (5 - the 3 admitted).
    let (other, rev) = keys::create(&r.state.db, &app::ssr::audit::Actor::system(), &r.fx.op, r.fx.ws, "other").await.unwrap();
    for _ in 0..3 {
        assert_eq!(r.chat(1).await.status(), 429);
    }
    r.applied(rev).await;
    let call =
        |replica: usize| r.http.post(format!("{}/v1/chat/completions", r.bases[replica])).bearer_auth(&other.secret).json(&hello()).send();
    assert_eq!(call(0).await.unwrap().status(), 200);
    assert_eq!(call(1).await.unwrap().status(), 200);
    let res = call(0).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["x-maas-ratelimit-rule"], format!("workspace:{}:5/60s", r.fx.ws).as_str());
}

#[tokio::test]
async fn when_redis_goes_away_each_replica_keeps_limiting_on_its_own() {
    let mut redis = Redis::start().await;
    let r = replicas(&redis.url).await;
    r.model(vec![r.fx.key_rule(2, 60)]).await;
    assert_eq!(r.chat(0).await.status(), 200);
    assert_eq!(r.chat(1).await.status(), 200);
    assert_eq!(r.chat(0).await.status(), 429, "shared: the two replicas' admissions fill one window");
    redis.stop();
    // Each replica now counts alone, from what it admitted itself (one each): one more each,
    // then refusals, replicas × limit in the window; requests keep being served.
    for replica in [0, 1] {
        assert_eq!(r.chat(replica).await.status(), 200);
        let res = r.chat(replica).await;
        assert_eq!(res.status(), 429, "replica {replica} limits on its own counters");
        assert_eq!(res.headers()["x-maas-ratelimit-rule"], format!("api_key:{}:2/60s", r.fx.key_id).as_str());
    }
}

/// The whole deployment as operators run it: `maas migrate` on PostgreSQL, the control plane's
/// services writing to it, and two `maas gateway --cluster local` processes reading it and
/// sharing Redis.
#[tokio::test]
async fn gateway_replicas_on_postgres_and_redis_follow_changes_and_share_limits() {
    let (pg, redis) = tokio::join!(Postgres::start(), Redis::start());
    let state = control_plane_on(&pg).await;
    let fx = fixture(&state).await;
    let (id, rev) = fx.model(&state, vec![fx.workspace_rule(50, 3600)]).await;

    let (_procs, bases) = gateway_processes(&pg.url, &[("REDIS_URL", &redis.url)]);
    let http = reqwest::Client::new();
    let chat = |base: &str| http.post(format!("{base}/v1/chat/completions")).bearer_auth(&fx.key).json(&hello()).send();
    // A replica accepts connections only once its configuration is loaded: its very first
    // answer is the model's, never a 404 from an empty snapshot.
    for base in &bases {
        let addr = base.trim_start_matches("http://").to_owned();
        let mut up = false;
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(up, "{base} did not start within 10 s");
        assert_eq!(chat(base).await.unwrap().status(), 200, "{base}: first answer");
        let health: Value = http.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
        assert!(health["revision"].as_i64().unwrap() >= rev, "{health}");
    }
    // 2 used; 200 concurrent requests over both replicas: exactly 48 more fit.
    let results = futures_util::future::join_all((0..200).map(|i| chat(&bases[i % 2]))).await;
    let ok = results.iter().filter(|r| r.as_ref().unwrap().status() == 200).count();
    assert_eq!(ok, 48, "one shared limit of 50 across both processes");

    // Disabling the model in the control plane reaches both replicas within a second (they poll
    // the database's revision twice a second). Bounded at 3 s here: a slow CI box must not
    // turn a working deployment red, while a replica that never follows still fails.
    let changed = Instant::now();
    models::set_enabled(&state.db, &app::ssr::audit::Actor::system(), id, None, false).await.unwrap();
    for base in &bases {
        loop {
            let s = chat(base).await.unwrap().status().as_u16();
            if s == 404 {
                break;
            }
            assert!(changed.elapsed() < Duration::from_secs(3), "{base} still serves a disabled model after 3 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("both replicas followed the change in {:?}", changed.elapsed());
    // Each replica reports its applied revision in the gateway status the console shows.
    let want = app::ssr::current_revision(&state.db).await.unwrap();
    for _ in 0..100 {
        let rows = app::ssr::entities::gateway_status::Entity::find().all(&state.db).await.unwrap();
        let mut synced: Vec<String> = rows
            .iter()
            .filter(|r| r.applied_revision >= want && r.cluster.as_deref() == Some("local"))
            .map(|r| r.gateway_id.clone())
            .collect();
        synced.sort();
        if synced == ["gw-0", "gw-1"] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("both replicas should report revision {want} in gateway_status");
}

/// `maas migrate` on `pg`, then the control plane's state on it (secret key `pg-secret`, as
/// [`gateway_processes`] are given).
async fn control_plane_on(pg: &Postgres) -> AppState {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maas")).args(["migrate", "--database-url", &pg.url]).output().unwrap();
    assert!(out.status.success(), "maas migrate on PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
    let db = app::ssr::connect(&pg.url).await.unwrap();
    let rev = app::ssr::current_revision(&db).await.unwrap();
    server::bootstrap::state(db, "pg-secret", false, rev, false)
}

/// Two `maas gateway --cluster local` processes (`gw-0`, `gw-1`) on the database at `db_url`,
/// with `env` besides: the processes (killed when dropped) and their base URLs.
fn gateway_processes(db_url: &str, env: &[(&str, &str)]) -> (Vec<Killed>, Vec<String>) {
    let mut procs = Vec::new();
    let mut bases = Vec::new();
    for i in 0..2 {
        let port = common::daemons::free_port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_maas"));
        cmd.args([
            "gateway",
            "--cluster",
            "local",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "1",
            "--gateway-id",
            &format!("gw-{i}"),
        ])
        .env("DATABASE_URL", db_url)
        .env("MAAS_SECRET_KEY", "pg-secret")
        .env("MAAS_DATA_DIR", "/nonexistent")
        .stdout(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        procs.push(Killed(cmd.spawn().unwrap()));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    (procs, bases)
}

/// Kills the child process when the test ends, pass or fail.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Redis restarted (empty) while no call came: each serving thread's connection is now broken.
/// The first call after it is still served through Redis (the broken connection is retried once
/// on a new one), not on the replica's own counters, which are full here.
#[tokio::test]
async fn a_connection_broken_by_a_redis_restart_is_retried_before_falling_back() {
    let mut redis = Redis::start().await;
    let r = replicas(&redis.url).await;
    r.model(vec![r.fx.key_rule(2, 60)]).await;
    assert_eq!(r.chat(0).await.status(), 200);
    assert_eq!(r.chat(0).await.status(), 200);
    assert_eq!(r.chat(0).await.status(), 429);
    redis.restart().await;
    assert_eq!(r.chat(0).await.status(), 200, "served by the new, empty Redis: its own counters (2 of 2) would refuse");
    assert_eq!(r.chat(1).await.status(), 200);
    assert_eq!(r.chat(0).await.status(), 429, "one admission each in the new Redis: the shared window is full");
    assert_eq!(r.chat(1).await.status(), 429);
}

/// The bound across an outage: a key that spent 30 of its 50 per 60 s through Redis gets a
/// burst over both replicas while Redis goes away and comes back (with its data, as a Redis run
/// with persistence does). No more than replicas × limit = 100 are admitted in the window; once
/// both replicas have replayed what they admitted on their own, Redis knows every admission and
/// the window stays shut.
#[tokio::test]
async fn a_redis_outage_mid_burst_admits_at_most_replicas_times_the_limit_and_redis_learns_every_admission() {
    let mut redis = Redis::start_persistent().await;
    let r = Arc::new(replicas(&redis.url).await);
    let model = r.model(vec![r.fx.key_rule(50, 60)]).await;
    let mut admitted = 0u64;
    for i in 0..30 {
        assert_eq!(r.chat(i % 2).await.status(), 200);
        admitted += 1;
    }
    let burst: Vec<_> = (0..6)
        .map(|w| {
            let r = r.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                for i in 0..60 {
                    if r.chat((w + i) % 2).await.status() == 200 {
                        ok += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                ok
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart().await;
    for b in burst {
        admitted += b.await.unwrap();
    }
    assert!(admitted <= 100, "{admitted} admitted in one window of a 50-per-60-s rule on two replicas");
    assert!(admitted >= 50, "the limit itself was reachable: {admitted}");
    for _ in 0..100 {
        if r.gws.iter().all(|g| g.outage_journal_len() == 0) {
            break;
        }
        let _ = r.chat(0).await;
        let _ = r.chat(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(r.gws.iter().all(|g| g.outage_journal_len() == 0), "both replicas replayed their outage into Redis");
    for replica in [0, 1, 0, 1] {
        assert_eq!(r.chat(replica).await.status(), 429, "the window is full, and Redis knows it");
    }
    use server::gateway::admission::limiter::CounterKey;
    let key = server::gateway::admission::redis_limiter::counter_key(
        r.fx.ws,
        &CounterKey { model_id: model, target: RuleTarget::ApiKey, subject_id: r.fx.key_id, kind: RuleKind::Requests, duration_ms: 60_000 },
    );
    let mut c = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let in_redis: u64 = redis::cmd("HGET").arg(format!("{key}:counts")).arg("n").query_async(&mut c).await.unwrap();
    assert!(in_redis >= admitted, "Redis counts {in_redis} of the {admitted} admissions");
}

/// 200 concurrent streams over two replicas against one concurrency rule of 10: the upstream
/// never sees more than 10 at once (the mock measures its own peak), the others get 429, and
/// once they ended new calls are admitted again.
#[tokio::test]
async fn a_concurrency_rule_of_10_holds_across_two_replicas() {
    let redis = Redis::start().await;
    let r = Arc::new(replicas(&redis.url).await);
    let (_, rev) = r.fx.model_at(&r.state, "/chunks/4/chunk-delay/150", vec![r.fx.kind_rule(RuleKind::Concurrent, 10, "")]).await;
    r.applied(rev).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let by_status = r.burst(200, &body).await;
    let stats: Value = r.http.get(format!("{}/_mock/stats", r.fx.mock)).send().await.unwrap().json().await.unwrap();
    assert!(stats["peak_in_flight"].as_u64().unwrap() <= 10, "the upstream saw {} at once: {by_status:?}", stats["peak_in_flight"]);
    let admitted = by_status.get(&200).copied().unwrap_or(0);
    assert!(admitted >= 10, "{by_status:?}");
    assert_eq!(admitted + by_status.get(&429).copied().unwrap_or(0), 200, "{by_status:?}");
    // Their ends reach Redis just after the clients saw them: allow a moment.
    let mut again = 0;
    for i in 0..40 {
        if r.http.post(format!("{}/v1/chat/completions", r.bases[i % 2])).bearer_auth(&r.fx.key).json(&body).send().await.unwrap().status()
            == 200
        {
            again += 1;
            if again == 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(again, 2, "every stream ended: places are free on both replicas");
}

/// A token rule of 10,000 per 60 s over two replicas under 400 concurrent streams, each
/// reserving exactly what it then uses: admitted while consumed + reserved < 10,000, summed over
/// both replicas, so exactly ceil(10,000 / tokens per call) calls, consuming at most the limit
/// plus the last call's estimate (docs/gateway.md's bound, with no overshoot).
#[tokio::test]
async fn a_token_rule_over_two_replicas_consumes_at_most_its_limit_plus_the_overshoot() {
    let redis = Redis::start().await;
    let r = Arc::new(replicas(&redis.url).await);
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 100});
    let estimate = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4) + 100;
    // The mock's stream reports 5 + chunks tokens.
    let (_, rev) =
        r.fx.model_at(&r.state, &format!("/chunks/{}", estimate - 5), vec![r.fx.kind_rule(RuleKind::Tokens, 10_000, "60")]).await;
    r.applied(rev).await;
    let admitted = r.burst(400, &body).await.get(&200).copied().unwrap_or(0) as u64;
    assert!(admitted * estimate < 10_000 + estimate, "{admitted} calls of {estimate} tokens");
    assert_eq!(admitted, 10_000u64.div_ceil(estimate), "{admitted} calls of {estimate} tokens: shared, not per replica");
}

/// A workspace's request quota is one budget for both replicas, in Redis: a burst over both
/// admits exactly the budget (counting on their own and learning of each other at their
/// flushes, each would admit it: twice as many). When Redis loses the count (restarted empty)
/// it is seeded again from what the replicas know was spent (the ledger they flushed), so the
/// spent quota stays spent.
#[tokio::test]
async fn a_quota_is_one_budget_across_replicas_and_survives_redis_losing_it() {
    use app::days::Period;
    use app::ssr::services::quotas;
    let redis = Redis::start().await;
    let r = Arc::new(replicas(&redis.url).await);
    r.model(vec![]).await;
    let input = QuotaInput { period: Period::Day, tokens: "".into(), requests: "30".into(), ..Default::default() };
    let rev = quotas::set_workspace(&r.state.db, &app::ssr::audit::Actor::system(), &r.fx.op, r.fx.ws, &input).await.unwrap();
    r.applied(rev).await;
    let by_status = r.burst(200, &hello()).await;
    assert_eq!(by_status.get(&200), Some(&30), "one budget for both replicas: {by_status:?}");
    assert_eq!(by_status.get(&429), Some(&170), "{by_status:?}");
    let refused = r.chat(1).await;
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");

    // Twice, as their periodic flushes would: each writes its calls, then reads back the other's.
    for _ in 0..2 {
        for (i, gw) in r.gws.iter().enumerate() {
            gw.flush_usage(&r.state.db, &format!("replica-{i}")).await.unwrap();
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let spent = quotas::ledger(&r.state.db, now, None).await.unwrap();
    assert_eq!(
        spent.get(&(RuleTarget::Workspace, r.fx.ws, Period::Day.start(now))).map(|s| s.requests),
        Some(30),
        "the ledger holds both replicas' calls"
    );
    let mut c = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    for replica in 0..2 {
        assert_eq!(r.chat(replica).await.status(), 429, "replica {replica}: seeded from the ledger, the quota is still spent");
    }
}

/// A key's token quota across two replicas under 200 concurrent streams, each reserving
/// exactly what it then uses: admitted while spent + reserved < the budget, summed over both
/// replicas, so exactly ceil(budget / tokens per call) calls.
#[tokio::test]
async fn a_token_quota_over_two_replicas_admits_until_spent_plus_reserved_reach_it() {
    use app::days::Period;
    let redis = Redis::start().await;
    let r = Arc::new(replicas(&redis.url).await);
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 100});
    let estimate = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4) + 100;
    r.fx.model_at(&r.state, &format!("/chunks/{}", estimate - 5), vec![]).await;
    let input = QuotaInput { period: Period::Month, tokens: "5000".into(), requests: "".into(), ..Default::default() };
    let rev =
        app::ssr::services::quotas::set_key(&r.state.db, &app::ssr::audit::Actor::system(), &r.fx.op, r.fx.key_id, &input).await.unwrap();
    r.applied(rev).await;
    let admitted = r.burst(200, &body).await.get(&200).copied().unwrap_or(0) as u64;
    assert_eq!(admitted, 5_000u64.div_ceil(estimate), "{admitted} calls of {estimate} tokens: one budget, not one per replica");
}

/// A workspace's daily budget in money over two replicas under 400 concurrent streams: one
/// budget in Redis, each call reserving its estimate's price and settling to its real cost.
/// The spend ends at most one call's reservation above the budget (the last admitted), never
/// one budget per replica; topped up call by call it reaches the budget; the ledger and the
/// usage rows agree to the nano-unit.
#[tokio::test]
async fn a_money_budget_over_two_replicas_ends_within_one_reservation_of_it() {
    use app::days::Period;
    use app::ssr::services::{prices, quotas};
    let redis = Redis::start().await;
    let r = Arc::new(replicas(&redis.url).await);
    let sys = app::ssr::audit::Actor::system();
    let (id, rev) = r.fx.model_at(&r.state, "/chunks/10", vec![]).await;
    r.applied(rev).await;
    let price = PriceInput {
        effective_from: None,
        input_per_million: "1".into(),
        cached_input_per_million: String::new(),
        output_per_million: "2".into(),
        per_unit: String::new(),
        per_call: "0.001".into(),
        ..Default::default()
    };
    let (_, rev) = prices::add(&r.state.db, &sys, id, &price).await.unwrap();
    r.applied(rev).await;
    // Prices are in force from the second after they are added.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let budget_nanos: i64 = 50_000_000;
    let input = QuotaInput { period: Period::Day, spend: "0.05".into(), ..Default::default() };
    let rev = quotas::set_workspace(&r.state.db, &sys, &r.fx.op, r.fx.ws, &input).await.unwrap();
    r.applied(rev).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 100});
    // What each call reserves: 0.001, its body's size at 1 / M and 100 tokens at 2 / M.
    let reservation = 1_000_000 + (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4) as i64 * 1_000 + 100 * 2_000;
    // The calls that top it up below give no max_tokens: they reserve the default output.
    let top_up = 1_000_000 + (serde_json::to_vec(&hello()).unwrap().len() as u64).div_ceil(4) as i64 * 1_000 + 1_024 * 2_000;

    let by_status = r.burst(400, &body).await;
    let admitted = by_status.get(&200).copied().unwrap_or(0);
    assert!(admitted >= 40 && by_status.contains_key(&429), "{by_status:?}");
    let spent = || async {
        // Twice, as their periodic flushes would: each writes its calls, then reads the other's.
        for _ in 0..2 {
            for (i, gw) in r.gws.iter().enumerate() {
                gw.flush_usage(&r.state.db, &format!("replica-{i}")).await.unwrap();
            }
        }
        let now = app::ssr::now();
        let ledger = quotas::ledger(&r.state.db, now, None).await.unwrap();
        ledger.get(&(RuleTarget::Workspace, r.fx.ws, Period::Day.start(now))).map_or(0, |s| s.nanos)
    };
    let after_burst = spent().await;
    assert!(after_burst <= budget_nanos + reservation, "{after_burst} spent of {budget_nanos}: one budget, not one per replica");
    // Topped up one call at a time (each settled before the next): admitted while spent < budget.
    let mut refused = None;
    for i in 0..100 {
        let res = r.chat(i % 2).await;
        if res.status() == 429 {
            refused = Some(res);
            break;
        }
        res.text().await.unwrap();
    }
    let refused: Value = refused.expect("the budget fills").json().await.unwrap();
    assert_eq!(refused["error"]["code"], "insufficient_quota", "{refused}");
    let total = spent().await;
    assert!(total >= budget_nanos && total <= budget_nanos + top_up, "{total} spent of {budget_nanos} (a call reserves {top_up})");
    let rows = app::ssr::entities::usage_minute::Entity::find().all(&r.state.db).await.unwrap();
    assert_eq!(total, rows.iter().map(|r| r.cost_nanos).sum::<i64>(), "the ledger is what the usage rows say the calls cost");
}

/// A replica that dies holding a place in a concurrency rule does not block the key for good:
/// its lease runs out; a live call's lease, renewed, does not.
#[tokio::test]
async fn leases_of_a_dead_replica_run_out_and_renewed_ones_do_not() {
    use server::gateway::admission::limiter::{CounterKey, RuleCheck};
    use server::gateway::admission::redis_limiter::LeaseArgs;
    let redis = Redis::start().await;
    let l = RedisLimiter::new(&RedisConfig { url: redis.url.clone(), ..Default::default() }, Duration::from_secs(2)).unwrap();
    let one = [RuleCheck::new(
        CounterKey { model_id: 1, target: RuleTarget::ApiKey, subject_id: 1, kind: RuleKind::Concurrent, duration_ms: 0 },
        1,
        "c".into(),
    )];
    let lease = |id| LeaseArgs { estimate: Default::default(), lease_id: id, lease_ms: 400 };
    assert!(l.check(7, &one, &[], lease(1)).await.unwrap().is_ok());
    let rej = rule_refusal(l.check(7, &one, &[], lease(2)).await.unwrap().unwrap_err());
    assert_eq!((rej.kind, rej.retry_after_secs), (RuleKind::Concurrent, 1));
    // Renewed at 250 ms: still held at 500 ms.
    tokio::time::sleep(Duration::from_millis(250)).await;
    l.renew(7, &[SharedCounter::Rule(one[0].key)], 1, 400).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(l.check(7, &one, &[], lease(3)).await.unwrap().is_err(), "renewed: still in flight");
    // Never renewed again (its replica died): free once it ran out.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(l.check(7, &one, &[], lease(4)).await.unwrap().is_ok(), "the dead replica's lease ran out");
    // An ended lease frees its place at once.
    l.settle(7, &[SharedCounter::Rule(one[0].key)], 4, Default::default(), server::gateway::admission::Consumed::Nothing).await.unwrap();
    assert!(l.check(7, &one, &[], lease(5)).await.unwrap().is_ok());
}

/// A Redis that accepts connections but never answers (a hung server, a black-holed route):
/// the first request waits out the timeout, then the replica leaves Redis alone for a second
/// and answers from its own counters at once.
#[tokio::test]
async fn a_hung_redis_costs_one_timeout_not_one_per_request() {
    // Bound but never accepting: connects complete in the backlog, nothing is ever read.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = replicas(&format!("redis://{}", hole.local_addr().unwrap())).await;
    r.model(vec![r.fx.key_rule(5, 60)]).await;
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(r.chat(0).await.status(), 200);
    }
    assert_eq!(r.chat(0).await.status(), 429, "limited by the replica's own counters meanwhile");
    // Without the pause each of the 6 would wait the 300 ms timeout (1.8 s in all).
    assert!(started.elapsed() < Duration::from_millis(1_200), "took {:?}", started.elapsed());
}

/// The Redis counters against the definition, on Redis's own clock: the (limit+1)-th in a window
/// is refused with the right wait, the window slides, and a busy counter under a long window
/// holds one entry per tick, not one per admission (a 1,000,000-per-day quota must not cost
/// Redis a million members).
#[tokio::test]
async fn redis_counters_slide_and_stay_small() {
    use server::gateway::admission::limiter::{CounterKey, RuleCheck};
    use server::gateway::admission::redis_limiter::counter_key;
    let redis = Redis::start().await;
    let l = RedisLimiter::new(&RedisConfig { url: redis.url.clone(), ..Default::default() }, Duration::from_secs(2)).unwrap();
    let rule = |subject: i64, limit: u64, ms: u64| {
        RuleCheck::new(
            CounterKey {
                model_id: 1,
                target: RuleTarget::ApiKey,
                subject_id: subject,
                kind: app::types::RuleKind::Requests,
                duration_ms: ms,
            },
            limit,
            format!("r{subject}"),
        )
    };
    let short = [rule(1, 5, 1_000)];
    for i in 0..5 {
        assert_eq!(l.check(7, &short, &[], NO_LEASE).await.unwrap().unwrap().requests.unwrap().remaining, 4 - i);
    }
    let started = Instant::now();
    let rej = rule_refusal(l.check(7, &short, &[], NO_LEASE).await.unwrap().unwrap_err());
    assert_eq!((rej.rule.as_str(), rej.limit, rej.retry_after_secs), ("r1", 5, 1));
    // Still refused while the window holds them; admitted once they left (1 s + one 1 ms tick).
    assert!(l.check(7, &short, &[], NO_LEASE).await.unwrap().is_err());
    tokio::time::sleep(Duration::from_millis(1_050).saturating_sub(started.elapsed())).await;
    assert!(l.check(7, &short, &[], NO_LEASE).await.unwrap().is_ok(), "the window slid");

    // Two rules on one key and window (10 and 6 per minute) share a counter: each request is
    // counted once in it, so the tighter rule admits 6, not 3.
    let loose = rule(3, 10, 60_000);
    let tight = loose.with_limit(6, "tight".into());
    for _ in 0..6 {
        l.check(7, &[loose.clone(), tight.clone()], &[], NO_LEASE).await.unwrap().unwrap();
    }
    assert_eq!(rule_refusal(l.check(7, &[loose, tight], &[], NO_LEASE).await.unwrap().unwrap_err()).rule, "tight");

    // 2,000 admissions under a 1,000 s window (1 s ticks): a handful of entries, exact total.
    let long = [rule(2, 1_000_000, 1_000_000)];
    for _ in 0..2_000 {
        l.check(7, &long, &[], NO_LEASE).await.unwrap().unwrap();
    }
    let key = counter_key(7, &long[0].key);
    let mut c = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let entries: u64 = redis::cmd("ZCARD").arg(format!("{key}:ticks")).query_async(&mut c).await.unwrap();
    let total: u64 = redis::cmd("HGET").arg(format!("{key}:counts")).arg("n").query_async(&mut c).await.unwrap();
    assert_eq!(total, 2_000);
    assert!(entries <= 5, "{entries} entries for 2,000 admissions within a few seconds");
    let ttl: i64 = redis::cmd("PTTL").arg(format!("{key}:counts")).query_async(&mut c).await.unwrap();
    assert!(ttl > 999_000 && ttl <= 1_001_000, "expires a window after the last admission: {ttl} ms");
}

/// A gateway pointed at the wrong place refuses to start and says why, touching nothing: a
/// database without the schema (it never migrates: that is the control plane's job), and no
/// secret key to decrypt the endpoints' keys with (it never makes one up).
#[test]
fn a_misconfigured_gateway_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = |db: &str, data_dir: &std::path::Path, key: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_maas"));
        c.args(["gateway", "--cluster", "local", "--listen", "127.0.0.1:0", "--database-url", db])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("MAAS_SECRET_KEY");
        if let Some(k) = key {
            c.args(["--secret-key", k]);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success(), "started anyway");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let empty = format!("sqlite://{}/empty.db?mode=rwc", dir.path().display());
    let err = gateway(&empty, dir.path(), Some("k"));
    assert!(err.contains("maas migrate"), "{err}");
    let tables: Vec<String> = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use sea_orm::{ConnectionTrait, Statement};
            let db = app::ssr::connect(&empty).await.unwrap();
            let rows = db
                .query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT name FROM sqlite_master WHERE type = 'table'"))
                .await
                .unwrap();
            rows.iter().map(|r| r.try_get::<String>("", "name").unwrap()).collect()
        })
    };
    assert!(tables.is_empty(), "the gateway created tables: {tables:?}");

    // A migrated database, but no MAAS_SECRET_KEY and no secret.key in the data directory.
    let migrated = format!("sqlite://{}/maas.db?mode=rwc", dir.path().display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maas")).args(["migrate", "--database-url", &migrated]).output().unwrap();
    assert!(out.status.success());
    let err = gateway(&migrated, &dir.path().join("no-such-dir"), None);
    assert!(err.contains("MAAS_SECRET_KEY is not set"), "{err}");
    assert!(!dir.path().join("no-such-dir").exists(), "no key was invented");

    // A CA file for a TLS Redis that is not there.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .args(["gateway", "--cluster", "local", "--listen", "127.0.0.1:0", "--database-url", &migrated, "--secret-key", "k"])
        .args(["--redis-url", "rediss://127.0.0.1:1", "--redis-ca-cert", "/nonexistent/ca.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started anyway");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("REDIS_CA_CERT /nonexistent/ca.pem"), "{err}");

    // A lease too short to be renewed in time (renewal every third of it).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .args(["gateway", "--cluster", "local", "--listen", "127.0.0.1:0", "--database-url", &migrated, "--secret-key", "k"])
        .args(["--redis-url", "redis://127.0.0.1:1", "--redis-lease", "2s"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started anyway");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAAS_REDIS_LEASE must be at least 3s"), "{err}");
}

/// Managed Redis speaks TLS: `rediss://` connects with it, trusts a private CA only when given
/// it (REDIS_CA_CERT), and then shares limits as over plain TCP.
#[tokio::test]
async fn limits_are_shared_through_a_redis_that_speaks_only_tls() {
    use server::gateway::admission::limiter::{CounterKey, RuleCheck};
    let (redis, ca) = Redis::start_tls().await;
    let untrusted = RedisLimiter::new(&RedisConfig { url: redis.url.clone(), ..Default::default() }, Duration::from_secs(2)).unwrap();
    let err = untrusted.ping().await.expect_err("a certificate from an unknown CA is refused").to_string();
    assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");

    let l =
        RedisLimiter::new(&RedisConfig { url: redis.url.clone(), ca_pem: Some(ca), ..Default::default() }, Duration::from_secs(2)).unwrap();
    l.ping().await.unwrap();
    let rule = [RuleCheck::new(
        CounterKey { model_id: 1, target: RuleTarget::ApiKey, subject_id: 1, kind: app::types::RuleKind::Requests, duration_ms: 60_000 },
        3,
        "r".into(),
    )];
    for i in 0..3 {
        assert_eq!(l.check(1, &rule, &[], NO_LEASE).await.unwrap().unwrap().requests.unwrap().remaining, 2 - i);
    }
    assert_eq!(rule_refusal(l.check(1, &rule, &[], NO_LEASE).await.unwrap().unwrap_err()).rule, "r");
}

/// A Redis Cluster: each workspace's counters live on the node of its slot (hash tag
/// `{ws:W}`), and two replicas still admit exactly each limit.
#[tokio::test]
async fn limits_are_exact_on_a_redis_cluster() {
    use server::gateway::admission::limiter::{CounterKey, RuleCheck};
    let cluster = RedisCluster::start(3).await;
    // A single seed is enough: the client learns the other nodes from it.
    let seed = cluster.url.split(',').next().unwrap().to_owned();
    let replica = |url: String| RedisLimiter::new(&RedisConfig { url, cluster: true, ca_pem: None }, Duration::from_secs(2)).unwrap();
    let (a, b) = (replica(seed), replica(cluster.url.clone()));
    a.ping().await.unwrap();
    let workspaces: Vec<i64> = (1..=12).collect();
    for &ws in &workspaces {
        // A key rule and a workspace rule: one script, two counters, one slot.
        let rules = [
            RuleCheck::new(
                CounterKey {
                    model_id: 1,
                    target: RuleTarget::ApiKey,
                    subject_id: ws * 100,
                    kind: app::types::RuleKind::Requests,
                    duration_ms: 60_000,
                },
                7,
                "key".into(),
            ),
            RuleCheck::new(
                CounterKey {
                    model_id: 1,
                    target: RuleTarget::Workspace,
                    subject_id: ws,
                    kind: app::types::RuleKind::Requests,
                    duration_ms: 60_000,
                },
                5,
                "ws".into(),
            ),
        ];
        let mut admitted = 0;
        for i in 0..10 {
            let l = if i % 2 == 0 { &a } else { &b };
            if l.check(ws, &rules, &[], NO_LEASE).await.unwrap().is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5, "workspace {ws}: the workspace rule's 5, across both replicas");
    }
    let per_node = cluster.keys_per_node();
    assert_eq!(per_node.iter().sum::<u64>(), 4 * workspaces.len() as u64, "two keys per counter: {per_node:?}");
    assert!(per_node.iter().filter(|&&n| n > 0).count() >= 2, "workspaces spread over the nodes: {per_node:?}");
}

/// Two `maas gateway` processes on PostgreSQL each flush their own usage rows; the console's
/// Usage page sums both, and the management list counts both replicas (`Synced 2/2`).
#[tokio::test]
async fn two_replicas_usage_lands_in_postgres_and_the_console_shows_the_sum() {
    let pg = Postgres::start().await;
    let state = control_plane_on(&pg).await;
    let fx = fixture(&state).await;
    fx.model(&state, vec![]).await;
    let (_procs, bases) = gateway_processes(&pg.url, &[("MAAS_USAGE_FLUSH", "200ms")]);
    let http = reqwest::Client::new();
    for (i, base) in bases.iter().enumerate() {
        let addr = base.trim_start_matches("http://").to_owned();
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // 30 calls through gw-0, 20 through gw-1.
        for _ in 0..(30 - 10 * i) {
            let r = http.post(format!("{base}/v1/chat/completions")).bearer_auth(&fx.key).json(&hello()).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap();
        }
    }
    let filter = UsageFilter { range: UsageRange::Hour, ..Default::default() };
    let mut report = None;
    for _ in 0..100 {
        let r = app::ssr::services::usage::report(&state.db, &filter).await.unwrap();
        if r.totals.requests == 50 {
            report = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = report.expect("the usage of both replicas within 10 s");
    assert_eq!((report.totals.input_tokens, report.totals.total_tokens), (50 * 5, 50 * 7));
    let mut by_gateway = std::collections::BTreeMap::new();
    for r in app::ssr::entities::usage_minute::Entity::find().all(&state.db).await.unwrap() {
        *by_gateway.entry(r.gateway_id).or_insert(0) += r.requests;
    }
    assert_eq!(by_gateway, [("gw-0".to_owned(), 30), ("gw-1".to_owned(), 20)].into(), "each replica flushed its own rows");
    let row = models::list(&state.db, "", 0, 20).await.unwrap().rows.remove(0);
    assert_eq!(row.gateway, GatewayState::Synced { replicas: 2 });
    assert_eq!(row.usage_24h.requests, 50);
}

/// Least busy across replicas: each sees the other's calls in flight (shared through Redis
/// every 100 ms), so a call through one replica goes where the cluster has fewest; the views
/// agree once calls stop starting and ending, and all return to zero when the load stops.
#[tokio::test]
async fn least_busy_counts_the_calls_in_flight_on_every_replica() {
    let mut redis = Redis::start().await;
    let r = replicas(&redis.url).await;
    for (i, gw) in r.gws.iter().enumerate() {
        server::gateway::shared_load::spawn(gw.clone(), format!("replica-{i}"));
    }
    let stream = |name: &str| EndpointInput {
        model_id: name.into(),
        url: format!("{}/name/{name}/chunks/30/chunk-delay/100", r.fx.mock),
        native_apis: app::types::default_apis(),
        ..Default::default()
    };
    let input = ModelInput {
        marketplace_model_id: Some(r.fx.mm),
        cluster_id: Some(r.fx.cluster),
        policy: Policy::LeastBusy,
        endpoints: vec![stream("a"), stream("b")],
        ..Default::default()
    };
    let sys = app::ssr::audit::Actor::system();
    let (id, _) = models::create(&r.state.db, &sys, &r.state.secrets, &input).await.unwrap();
    r.applied(models::set_enabled(&r.state.db, &sys, id, None, true).await.unwrap()).await;
    let eps: Vec<String> = models::get(&r.state.db, id).await.unwrap().endpoints.iter().map(|e| e.id.to_string()).collect();
    let busy = |replica: usize| -> Vec<u64> { r.gws[replica].snapshot().models["chat"].endpoints.iter().map(|e| e.load.busy()).collect() };
    let open = |replica: usize| {
        r.http
            .post(format!("{}/v1/chat/completions", r.bases[replica]))
            .bearer_auth(&r.fx.key)
            .json(&json!({"model": "chat", "stream": true, "messages": []}))
            .send()
    };
    // Three long streams through replica 0: least busy there puts two on one endpoint, one on
    // the other.
    let mut held = Vec::new();
    for _ in 0..3 {
        let res = open(0).await.unwrap();
        assert_eq!(res.status(), 200);
        held.push(res);
    }
    let zero = busy(0);
    assert_eq!(zero.iter().sum::<u64>(), 3);
    // Within a few periods replica 1 sees what replica 0 holds (the bound: a period and a round trip).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(busy(1), zero, "replica 1's view of the cluster is replica 0's");
    // A call through replica 1 goes to the endpoint with fewer calls in the cluster.
    let less = eps[if zero[0] < zero[1] { 0 } else { 1 }].clone();
    let res = open(1).await.unwrap();
    assert_eq!(res.headers()["x-maas-endpoint"], less.as_str());
    held.push(res);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(busy(0), busy(1), "both replicas see the same four calls");
    assert_eq!(busy(0).iter().sum::<u64>(), 4);
    // The load stops: every count returns to zero, on both.
    drop(held);
    let mut settled = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if busy(0) == [0, 0] && busy(1) == [0, 0] {
            settled = true;
            break;
        }
    }
    assert!(settled, "counts after the load stopped: {:?} {:?}", busy(0), busy(1));

    // Redis goes away: each replica routes on its own calls again (it says so in its log).
    let held = open(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(busy(1).iter().sum::<u64>(), 1, "replica 1 sees replica 0's stream");
    redis.stop();
    let mut own = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if busy(1) == [0, 0] {
            own = true;
            break;
        }
    }
    assert!(own, "without Redis replica 1 counts only its own calls: {:?}", busy(1));
    assert_eq!(busy(0).iter().sum::<u64>(), 1, "replica 0 still counts the stream it holds");
    drop(held);
}
