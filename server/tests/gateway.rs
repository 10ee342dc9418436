//! The gateway contract of DESIGN.md, end to end over loopback: a real SQLite file, the real
//! server router on port 0, and `maas mock-upstream` on port 0 as the only simulated part.
mod common;
use app::ssr::services::{catalog, keys, models, workspaces};
use app::ssr::AppState;
use app::types::*;
use common::{demo_serve, DemoServe};
use serde_json::{json, Value};
use server::gateway::{spawn_reloader, Gateway, GatewayConfig, Serves};
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    _env: common::Env,
    state: AppState,
    base: String,
    mock: String,
    http: reqwest::Client,
    key: String,
    key_id: i64,
    ws: i64,
    gw: Arc<Gateway>,
    mm: i64,
    cluster: i64,
    op: CurrentUser,
}

async fn serve(router: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("http://{addr}")
}

async fn harness() -> Harness {
    harness_with(server::mock_upstream::router(Default::default(), true), |_| {}).await
}

/// A harness whose upstream mock is `mock` and whose gateway's configuration `adjust` changes.
async fn harness_with(mock: axum::Router, adjust: impl FnOnce(&mut GatewayConfig)) -> Harness {
    let env = common::env().await;
    let state = server::bootstrap::state(env.db().clone(), "test-secret", false, 1, true);
    let op = env.user("op", Role::Operator).await;
    let mock = serve(mock).await;
    let db = &state.db;
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
    let (k, rev) = keys::create(db, &app::ssr::audit::Actor::system(), &op, ws, "k").await.unwrap();
    let mut config = GatewayConfig {
        first_byte_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        body_limit: 64 * 1024,
        heartbeat: Duration::from_millis(200),
        ..Default::default()
    };
    adjust(&mut config);
    let gw = Gateway::new(config);
    // Serves the harness's cluster, whose entry address is http://127.0.0.1:1.
    spawn_reloader(gw.clone(), state.clone(), Serves::EntryAddresses(vec!["http://127.0.0.1:1".into()]), "test".into());
    state.config_changed(rev).await;
    // As `maas serve` composes and serves it.
    let front = server::compose::console(&gw, state.clone(), "127.0.0.1:0".parse().unwrap(), common::metrics_without_token(&gw));
    let base = common::serve_front(front).await;
    Harness { _env: env, state, base, mock, http: reqwest::Client::new(), key: k.secret, key_id: k.info.id, ws, gw, mm, cluster, op }
}

fn ep(url: String, model_id: &str, weight: &str, key: Option<&str>) -> EndpointInput {
    EndpointInput {
        id: None,
        model_id: model_id.into(),
        url,
        api_key: key.map(|k| KeyChange::Set(k.into())).unwrap_or_default(),
        weight: weight.into(),
        skip_stream_usage: false,
        max_concurrent: String::new(),
        native_apis: app::types::default_apis(),
        draining: false,
    }
}

impl Harness {
    /// Creates and enables the model `chat`; returns once the gateway serves it.
    async fn model(&self, policy: Policy, endpoints: Vec<EndpointInput>, rules: Vec<RuleInput>) -> i64 {
        self.model_of(self.mm, policy, endpoints, rules).await
    }
    /// A published marketplace entry of `kind`.
    async fn marketplace(&self, name: &str, kind: ModelKind) -> i64 {
        let sys = app::ssr::audit::Actor::system();
        let input = MarketplaceInput { name: name.into(), provider: "p".into(), kind, ..Default::default() };
        let mm = catalog::create_marketplace(&self.state.db, &sys, &input).await.unwrap();
        catalog::set_published(&self.state.db, &sys, mm, true).await.unwrap();
        mm
    }
    /// Creates and enables a model of the marketplace entry `mm`; returns once the gateway serves it.
    async fn model_of(&self, mm: i64, policy: Policy, endpoints: Vec<EndpointInput>, rules: Vec<RuleInput>) -> i64 {
        self.model_with(mm, policy, endpoints, |input| input.rules = rules).await
    }
    /// The same, with its input adjusted first.
    async fn model_with(&self, mm: i64, policy: Policy, endpoints: Vec<EndpointInput>, adjust: impl FnOnce(&mut ModelInput)) -> i64 {
        let mut input =
            ModelInput { marketplace_model_id: Some(mm), cluster_id: Some(self.cluster), policy, endpoints, ..Default::default() };
        adjust(&mut input);
        let (id, _) = models::create(&self.state.db, &app::ssr::audit::Actor::system(), &self.state.secrets, &input).await.unwrap();
        self.enable(id, true).await;
        id
    }
    /// Switches the model on or off; returns once the gateway applied it.
    async fn enable(&self, id: i64, on: bool) {
        let rev = models::set_enabled(&self.state.db, &app::ssr::audit::Actor::system(), id, None, on).await.unwrap();
        self.state.config_changed(rev).await;
    }
    /// Replaces the model's policy and endpoints (no rules); returns once the gateway serves it.
    async fn update(&self, id: i64, policy: Policy, endpoints: Vec<EndpointInput>) {
        self.replace(id, policy, endpoints, vec![]).await
    }
    /// Replaces the model's policy, endpoints and rules; returns once the gateway serves it.
    async fn replace(&self, id: i64, policy: Policy, endpoints: Vec<EndpointInput>, rules: Vec<RuleInput>) {
        let input = ModelInput {
            marketplace_model_id: Some(self.mm),
            cluster_id: Some(self.cluster),
            policy,
            endpoints,
            rules,
            reserve_output: String::new(),
            affinity_key: Default::default(),
            ..Default::default()
        };
        let rev = models::update(&self.state.db, &app::ssr::audit::Actor::system(), &self.state.secrets, id, None, &input).await.unwrap();
        self.state.config_changed(rev).await;
    }
    fn up(&self, directives: &str) -> String {
        format!("{}{directives}", self.mock)
    }
    async fn chat(&self, body: Value) -> reqwest::Response {
        self.http.post(format!("{}/v1/chat/completions", self.base)).bearer_auth(&self.key).json(&body).send().await.unwrap()
    }
    async fn received(&self) -> Vec<Value> {
        self.http.get(format!("{}/_mock/requests", self.mock)).send().await.unwrap().json().await.unwrap()
    }
    async fn stats(&self) -> Value {
        self.http.get(format!("{}/_mock/stats", self.mock)).send().await.unwrap().json().await.unwrap()
    }
}

fn hello() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json::<Value>().await.unwrap()["error"].clone())
}

#[tokio::test]
async fn forwards_with_model_rewrite_endpoint_key_and_path_composition() {
    let h = harness().await;
    // No path → /v1 appended; a path is kept as typed.
    h.model(Policy::RoundRobin, vec![ep(h.up(""), "up-a", "", Some("sk-endpoint-a")), ep(h.up("/name/b"), "up-b", "", None)], vec![]).await;
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    h.chat(hello()).await;
    let rx = h.received().await;
    assert_eq!(rx[0]["path"], "/v1/chat/completions");
    assert_eq!(rx[0]["model"], "up-a");
    assert_eq!(rx[0]["authorization"], "Bearer sk-endpoint-a", "the endpoint's key");
    assert_eq!(rx[1]["path"], "/name/b/chat/completions");
    assert_eq!(rx[1]["model"], "up-b");
    assert_eq!(rx[1]["authorization"], Value::Null, "no key configured: none sent, never the caller's");
    assert!(rx.iter().all(|r| !r.to_string().contains(&h.key)));
    // Completions and embeddings (of an embedding model) go to their own paths.
    let embed = h.marketplace("embed", ModelKind::Embedding).await;
    h.model_of(embed, Policy::RoundRobin, vec![ep(h.up(""), "up-e", "", None)], vec![]).await;
    let r = h
        .http
        .post(format!("{}/v1/embeddings", h.base))
        .bearer_auth(&h.key)
        .json(&json!({"model": "embed", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"].as_array().unwrap().len(), 2);
    let r = h
        .http
        .post(format!("{}/v1/completions", h.base))
        .bearer_auth(&h.key)
        .json(&json!({"model": "chat", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["object"], "text_completion");
    let rx = h.received().await;
    assert!(rx[2]["path"].as_str().unwrap().ends_with("/embeddings") && rx[3]["path"].as_str().unwrap().ends_with("/completions"));
}

#[tokio::test]
async fn errors_are_openai_shaped_with_the_documented_statuses() {
    let h = harness().await;
    let id = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let url = format!("{}/v1/chat/completions", h.base);
    let (s, e) = error_of(h.http.post(&url).json(&hello()).send().await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("invalid_api_key")), "missing key");
    let (s, e) = error_of(h.http.post(&url).bearer_auth("sk-maas-nope").json(&hello()).send().await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("invalid_api_key")), "unknown key");
    let (s, e) = error_of(h.chat(json!({"model": "nope", "messages": []})).await).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("model_not_found")));
    let (s, e) = error_of(h.chat(json!({"messages": []})).await).await;
    assert_eq!(s, 400);
    assert_eq!(e["message"], "You must provide a model parameter.");
    let r = h.http.post(&url).bearer_auth(&h.key).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(error_of(r).await.0, 400);
    let big = json!({"model": "chat", "messages": [{"role": "user", "content": "x".repeat(100 * 1024)}]});
    let (s, e) = error_of(h.chat(big).await).await;
    assert_eq!((s, e["code"].as_str()), (413, Some("request_too_large")));
    // Chunked (no Content-Length): still 413 once the limit is passed.
    let chunks = futures_util::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let r = h.http.post(&url).bearer_auth(&h.key).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(
        error_of(r).await,
        (
            413,
            json!({"message": "Request body is larger than the limit of 65536 bytes.", "type": "invalid_request_error", "param": null, "code": "request_too_large"})
        )
    );
    // The auth scheme is case-insensitive.
    let r = h.http.post(&url).header("authorization", format!("BEARER {}", h.key)).json(&hello()).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Disabled → 404 on the very next request after the change commits.
    h.enable(id, false).await;
    assert_eq!(error_of(h.chat(hello()).await).await.0, 404);
    h.enable(id, true).await;
    assert_eq!(h.chat(hello()).await.status(), 200);
    // Unpublished → 404.
    let rev = catalog::set_published(&h.state.db, &app::ssr::audit::Actor::system(), h.mm, false).await.unwrap();
    h.state.config_changed(rev).await;
    assert_eq!(error_of(h.chat(hello()).await).await.0, 404);
    let rev = catalog::set_published(&h.state.db, &app::ssr::audit::Actor::system(), h.mm, true).await.unwrap();
    h.state.config_changed(rev).await;
    // Revoked → 401 on the next request.
    let rev = keys::revoke(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id).await.unwrap();
    h.state.config_changed(rev).await;
    assert_eq!(error_of(h.chat(hello()).await).await.0, 401);
}

#[tokio::test]
async fn upstream_statuses_pass_through_and_no_upstream_is_502() {
    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up("/status/429"), "m", "", None)], vec![]).await;
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["message"].as_str()), (429, Some("mock error 429")), "upstream 4xx passes through as is");

    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep("http://127.0.0.1:1".into(), "m", "", None)], vec![]).await;
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["code"].as_str()), (502, Some("upstream_unavailable")));

    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up("/delay/5000"), "m", "", None)], vec![]).await;
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["code"].as_str()), (504, Some("upstream_timeout")), "first-byte timeout is 2 s here");
}

#[tokio::test]
async fn round_robin_rotates_and_weighted_splits_each_100_exactly() {
    let h = harness().await;
    let eps = |ws: [&str; 3]| {
        vec![ep(h.up("/name/a"), "a", ws[0], None), ep(h.up("/name/b"), "b", ws[1], None), ep(h.up("/name/c"), "c", ws[2], None)]
    };
    let id = h.model(Policy::RoundRobin, eps(["", "", ""]), vec![]).await;
    for _ in 0..6 {
        assert_eq!(h.chat(hello()).await.status(), 200);
    }
    let names: Vec<String> = h.received().await.iter().map(|r| r["model"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["a", "b", "c", "a", "b", "c"]);

    h.update(id, Policy::Weighted, eps(["50", "30", "20"])).await;
    for _ in 0..200 {
        assert_eq!(h.chat(hello()).await.status(), 200);
    }
    let names: Vec<String> = h.received().await[6..].iter().map(|r| r["model"].as_str().unwrap().to_owned()).collect();
    for w in names.chunks(100) {
        let count = |n: &str| w.iter().filter(|x| *x == n).count();
        assert_eq!((count("a"), count("b"), count("c")), (50, 30, 20));
    }
    assert!(!names[..10].iter().all(|n| n == "a"), "interleaved, not in runs: {:?}", &names[..10]);
}

#[tokio::test]
async fn failover_skips_refused_and_5xx_endpoints_and_cools_them_down() {
    let h = harness().await;
    h.model(
        Policy::RoundRobin,
        vec![
            ep("http://127.0.0.1:1".into(), "dead", "", None),
            ep(h.up("/status/503"), "broken", "", None),
            ep(h.up("/name/ok"), "ok", "", None),
        ],
        vec![],
    )
    .await;
    for _ in 0..6 {
        let r = h.chat(hello()).await;
        assert_eq!(r.status(), 200, "every request is answered by the healthy endpoint");
    }
    let rx = h.received().await;
    let broken = rx.iter().filter(|r| r["model"] == "broken").count();
    let ok = rx.iter().filter(|r| r["model"] == "ok").count();
    assert_eq!(ok, 6);
    // The 503 endpoint is tried at most once per request, and after 3 failures in a row it is
    // cooled down and no longer tried first.
    assert!((3..6).contains(&broken), "broken tried {broken} times");
    // Both failing endpoints are cooling down, and the management list says so once the
    // gateway reports (it does on every reload and heartbeat).
    let cold: Vec<String> = h.gw.cooling().into_values().flatten().collect();
    assert_eq!(cold, ["http://127.0.0.1:1".to_string(), h.up("/status/503")]);
    let (_, rev) = keys::create(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.ws, "bump").await.unwrap();
    h.state.config_changed(rev).await;
    let row = models::list(&h.state.db, "", 0, 20).await.unwrap().rows.remove(0);
    let mut want = vec![h.up("/status/503"), "http://127.0.0.1:1".to_string()];
    want.sort();
    assert_eq!(row.cooling, want);
}

#[tokio::test]
async fn rate_limits_refuse_with_headers_and_consume_nothing_on_rejection() {
    let h = harness().await;
    h.model(
        Policy::RoundRobin,
        vec![ep(h.up(""), "m", "", None)],
        vec![
            kind_rule(&h, RuleKind::Requests, "3", "60"),
            RuleInput {
                kind: app::types::RuleKind::Requests,
                target: RuleTarget::Workspace,
                workspace_id: Some(h.ws),
                api_key_id: None,
                limit: "100".into(),
                duration: "60".into(),
            },
        ],
    )
    .await;
    for i in 0..3 {
        let r = h.chat(hello()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3", "the tightest rule's");
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], (2 - i).to_string().as_str());
        // The first admission leaves a minute after it (up to one 60 ms tick late).
        let reset = r.headers()["x-ratelimit-reset-requests"].to_str().unwrap().to_owned();
        assert!(["59.", "1m0"].iter().any(|p| reset.starts_with(p)), "{reset}");
    }
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 429);
    let hd = r.headers().clone();
    assert_eq!(hd["x-ratelimit-limit-requests"], "3");
    assert_eq!(hd["x-ratelimit-remaining-requests"], "0");
    let retry: u64 = hd["retry-after"].to_str().unwrap().parse().unwrap();
    // The first admission leaves 60 s after it (plus at most one 60 ms tick), rounded up.
    assert!((59..=61).contains(&retry), "{retry}");
    // The same wait to the millisecond, for the OpenAI SDKs' own retries.
    let retry_ms: u64 = hd["retry-after-ms"].to_str().unwrap().parse().unwrap();
    assert!((58_000..=60_060).contains(&retry_ms), "{retry_ms}");
    assert_eq!(retry_ms.div_ceil(1000).max(1), retry, "Retry-After is retry-after-ms rounded up");
    let reset = hd["x-ratelimit-reset-requests"].to_str().unwrap();
    assert!(
        reset.starts_with("59.") || reset.starts_with("1m0") || reset.starts_with("1m1"),
        "as precise as Retry-After is rounded: {reset}"
    );
    assert_eq!(hd["x-maas-ratelimit-rule"], format!("api_key:{}:3/60s", h.key_id).as_str());
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(h.received().await.len(), 3, "refused requests never reach the upstream");
}

#[tokio::test]
async fn a_thousand_concurrent_requests_against_limit_100_admit_exactly_100() {
    let h = Arc::new(harness().await);
    h.model(
        Policy::RoundRobin,
        vec![ep(h.up(""), "m", "", None)],
        vec![RuleInput {
            kind: app::types::RuleKind::Requests,
            target: RuleTarget::Workspace,
            workspace_id: Some(h.ws),
            api_key_id: None,
            limit: "100".into(),
            duration: "3600".into(),
        }],
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.chat(hello()).await.status().as_u16() }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((ok, limited), (100, 900));
}

#[tokio::test]
async fn streams_arrive_as_they_are_produced_and_client_disconnect_cancels_upstream() {
    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up("/chunks/20/chunk-delay/150"), "m", "", None)], vec![]).await;
    let mut r = h.chat(json!({"model": "chat", "stream": true, "messages": []})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(2), r.chunk()).await.expect("first chunk in time").unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    // The upstream needs ~3 s for the whole stream; we already hold its first chunk.
    let s = h.stats().await;
    assert_eq!((s["completed"].as_u64(), s["cancelled"].as_u64()), (Some(0), Some(0)), "first chunk before the upstream finished");
    drop(r);
    let mut cancelled = 0;
    for _ in 0..50 {
        cancelled = h.stats().await["cancelled"].as_u64().unwrap();
        if cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cancelled, 1, "the upstream saw the client go away");

    // A full stream ends with [DONE], and include_usage yields the usage chunk.
    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up("/chunks/2"), "m", "", None)], vec![]).await;
    let text = h
        .chat(json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true}, "messages": []}))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"usage\"") && text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn models_endpoint_lists_enabled_models_and_status_turns_synced() {
    let h = harness().await;
    let (s, e) = error_of(h.http.get(format!("{}/v1/models", h.base)).send().await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("invalid_api_key")), "the list needs a key too");
    let r = h.http.get(format!("{}/v1/models", h.base)).bearer_auth(&h.key).send().await.unwrap();
    // OpenAI's list, which Anthropic's SDKs read as one page too.
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"object": "list", "data": [], "has_more": false, "first_id": null, "last_id": null})
    );
    h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let v: Value = h.http.get(format!("{}/v1/models", h.base)).bearer_auth(&h.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"][0]["id"], "chat");
    assert_eq!(v["data"][0]["object"], "model");
    let page = models::list(&h.state.db, "", 0, 20).await.unwrap();
    assert_eq!(page.rows[0].gateway, GatewayState::Synced { replicas: 1 }, "the embedded gateway reported the model's revision");

    // One model (the SDKs' `models.retrieve`), also when its name holds a slash, sent raw or
    // percent-encoded.
    let get = |path: &str| h.http.get(format!("{}/v1/models/{path}", h.base)).bearer_auth(&h.key).send();
    let v: Value = get("chat").await.unwrap().json().await.unwrap();
    assert_eq!((v["id"].as_str(), v["object"].as_str()), (Some("chat"), Some("model")));
    let mm = catalog::create_marketplace(
        &h.state.db,
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "org/llama-3".into(), provider: "p".into(), ..Default::default() },
    )
    .await
    .unwrap();
    catalog::set_published(&h.state.db, &app::ssr::audit::Actor::system(), mm, true).await.unwrap();
    let id = h.model_of(mm, Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    for path in ["org/llama-3", "org%2Fllama-3"] {
        let v: Value = get(path).await.unwrap().json().await.unwrap();
        assert_eq!(v["id"], "org/llama-3", "{path}");
    }
    let (s, e) = error_of(get("nope").await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("model_not_found")), "{e}");
    let (s, e) = error_of(h.http.get(format!("{}/v1/models/chat", h.base)).send().await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("invalid_api_key")), "{e}");
    // Disabled: gone from the gateway at once.
    h.enable(id, false).await;
    assert_eq!(get("org/llama-3").await.unwrap().status(), 404);
}

/// Polls the mock until it has seen `want` cancelled requests (bounded: 5 s).
async fn wait_cancelled(h: &Harness, want: u64) -> u64 {
    let mut cancelled = 0;
    for _ in 0..50 {
        cancelled = h.stats().await["cancelled"].as_u64().unwrap();
        if cancelled >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancelled
}

#[tokio::test]
async fn a_client_that_gives_up_cancels_the_pending_upstream_request() {
    let h = harness().await;
    // A long non-streamed completion: the upstream is still thinking when the client leaves.
    h.model(Policy::RoundRobin, vec![ep(h.up("/delay/10000"), "m", "", None)], vec![]).await;
    let gave_up = tokio::time::timeout(Duration::from_millis(300), h.chat(hello())).await;
    assert!(gave_up.is_err(), "the upstream takes 10 s");
    assert_eq!(wait_cancelled(&h, 1).await, 1, "the upstream saw the request cancelled, long before its 10 s");
}

/// A listener that never accepts, with its accept queue already full: the kernel drops further
/// SYNs, so connecting to it hangs (on loopback, as a black-holed host would elsewhere).
async fn black_hole() -> (String, tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            held.push(s);
        }
    }
    (format!("http://{addr}"), listener, held)
}

#[tokio::test]
async fn connect_timeout_fails_over_and_alone_is_a_504() {
    let h = harness().await;
    let (hole, _listener, _held) = black_hole().await;
    let id = h.model(Policy::RoundRobin, vec![ep(hole.clone(), "hole", "", None), ep(h.up("/name/ok"), "ok", "", None)], vec![]).await;
    // Round-robin starts at the black hole: its connect times out (1 s here), then failover.
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.received().await.iter().map(|r| r["model"].as_str().unwrap()).collect::<Vec<_>>(), ["ok"]);

    h.update(id, Policy::RoundRobin, vec![ep(hole, "hole", "", None)]).await;
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["code"].as_str()), (504, Some("upstream_timeout")), "{e}");
}

#[tokio::test]
async fn a_change_committed_by_another_process_is_picked_up_from_the_database() {
    let h = harness().await;
    let id = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    assert_eq!(h.chat(hello()).await.status(), 200);
    // Another console on the same database disables the model: nothing signals this process.
    let other = server::bootstrap::open_db(&h._env.db_url()).await.unwrap();
    models::set_enabled(&other, &app::ssr::audit::Actor::system(), id, None, false).await.unwrap();
    let mut status = 200;
    for _ in 0..50 {
        status = h.chat(hello()).await.status().as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 404, "the heartbeat saw the new revision and rebuilt");
}

#[tokio::test]
async fn the_last_endpoints_5xx_passes_through_with_its_body() {
    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up("/status/503"), "a", "", None), ep(h.up("/status/500"), "b", "", None)], vec![]).await;
    // Both fail: the first fails over, the second's answer is what the client gets.
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["message"].as_str()), (500, Some("mock error 500")));
    assert_eq!(h.received().await.len(), 2, "each endpoint tried once");
}

#[tokio::test]
async fn an_in_flight_stream_finishes_on_the_snapshot_it_started_with() {
    let h = harness().await;
    let id = h.model(Policy::RoundRobin, vec![ep(h.up("/chunks/6/chunk-delay/100"), "m", "", None)], vec![]).await;
    let mut r = h.chat(json!({"model": "chat", "stream": true, "messages": []})).await;
    let mut text = String::from_utf8(r.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    // Disabled while the stream runs: new requests are refused at once...
    h.enable(id, false).await;
    assert_eq!(error_of(h.chat(hello()).await).await.0, 404);
    // ...and the running one is not cut off.
    while let Some(c) = r.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(text.matches("chat.completion.chunk").count(), 7, "6 chunks and the finish chunk");
}

#[tokio::test]
async fn an_upstream_that_drops_the_connection_fails_over_or_never_looks_complete() {
    let h = harness().await;
    // Dies before answering: nothing was sent to the client yet, so the next endpoint answers.
    let id = h.model(Policy::RoundRobin, vec![ep(h.up("/drop"), "m", "", None), ep(h.up("/name/ok"), "ok", "", None)], vec![]).await;
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "Hello from ok!");

    // Dies mid-stream: the client already has the headers and the first chunks, so there is no
    // failover; the stream must end in an error, never in what looks like a complete answer.
    // Another endpoint stands by: a cut stream is never retried on it (the client has part of it).
    h.update(id, Policy::Weighted, vec![ep(h.up("/drop-after/2"), "m", "100", None), ep(h.up("/name/spare"), "spare", "0", None)]).await;
    let mut r = h.chat(json!({"model": "chat", "stream": true, "messages": []})).await;
    assert_eq!(r.status(), 200);
    let mut got = String::new();
    let end = loop {
        match r.chunk().await {
            Ok(Some(c)) => got.push_str(std::str::from_utf8(&c).unwrap()),
            Ok(None) => break "clean end",
            Err(_) => break "error",
        }
    };
    assert!(got.contains("\"chunk\": 1"), "the chunks sent before the drop arrived: {got}");
    assert_eq!(end, "error", "a cut-off stream is reported as such, not ended cleanly");
    assert!(h.received().await.iter().all(|r| r["model"] != "spare"), "a stream cut mid-way is not retried");
}

#[tokio::test]
async fn a_body_cut_short_is_a_400_not_a_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let mut tcp = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://")).await.unwrap();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{{\"model\":", h.key);
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.shutdown().await.unwrap(); // 490 bytes short: the body ends early
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("could not read the body"), "{answer}");
    assert_eq!(h.received().await.len(), 0);
}

/// A hand-written HTTP/1.1 upstream, to see the wire: it counts connections, records each
/// request's head, answers a fixed chat completion, and with `close_idle_after` closes each
/// connection that long after answering, without saying so (as a server whose keep-alive
/// timeout is shorter than ours does).
struct RawUpstream {
    url: String,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    heads: Arc<parking_lot::Mutex<Vec<String>>>,
}

/// The lines of an HTTP/1 request head (without their CRLF), or None if the connection ends
/// first.
async fn read_head(r: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> Option<Vec<String>> {
    use tokio::io::AsyncBufReadExt;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(head);
        }
        head.push(line.trim_end().to_owned());
    }
}

async fn raw_upstream(close_idle_after: Option<Duration>) -> RawUpstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/base", l.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let heads = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (count, log) = (connections.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let log = log.clone();
            tokio::spawn(async move {
                let mut tcp = BufReader::new(tcp);
                loop {
                    let Some(head) = read_head(&mut tcp).await else { return };
                    let head: String = head.iter().map(|l| format!("{l}\r\n")).collect();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    tcp.read_exact(&mut body).await.unwrap();
                    log.lock().push(head);
                    let answer = r#"{"id":"raw","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"raw"},"finish_reason":"stop"}]}"#;
                    let resp =
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
                    tcp.get_mut().write_all(resp.as_bytes()).await.unwrap();
                    if let Some(idle) = close_idle_after {
                        tokio::time::sleep(idle).await;
                        return;
                    }
                }
            });
        }
    });
    RawUpstream { url, connections, heads }
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_requests_are_origin_form_with_host() {
    let h = harness().await;
    let up = raw_upstream(None).await;
    h.model(Policy::RoundRobin, vec![ep(up.url.clone(), "m", "", None)], vec![]).await;
    for _ in 0..20 {
        let r = h.chat(hello()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "raw");
    }
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "20 requests in a row share one connection");
    let heads = up.heads.lock().clone();
    let authority = up.url.trim_start_matches("http://").trim_end_matches("/base");
    for head in &heads {
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("POST /base/chat/completions HTTP/1.1"), "origin-form request line, on the endpoint's base path");
        assert!(lines.any(|l| l.eq_ignore_ascii_case(&format!("host: {authority}"))), "Host names the upstream: {head}");
    }
    assert_eq!(heads.len(), 20);
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_failure() {
    let h = harness().await;
    let up = raw_upstream(Some(Duration::from_millis(10))).await;
    let id = h.model(Policy::RoundRobin, vec![ep(up.url.clone(), "m", "", None)], vec![]).await;
    for i in 0..10 {
        let r = h.chat(hello()).await;
        assert_eq!(r.status(), 200, "request {i}");
        // The connection went back to the pool open; the upstream closes it meanwhile.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 10, "one connection per answer");
    assert!(!h.gw.cooling().contains_key(&id), "no failure was counted against the endpoint");
}

#[tokio::test]
async fn what_a_rule_counted_survives_a_configuration_change() {
    let h = harness().await;
    let rule = kind_rule(&h, RuleKind::Requests, "3", "60");
    let input = |endpoint: &str| ModelInput {
        marketplace_model_id: Some(h.mm),
        cluster_id: Some(h.cluster),
        policy: Policy::RoundRobin,
        endpoints: vec![ep(h.up(endpoint), "m", "", None)],
        rules: vec![rule.clone()],
        reserve_output: String::new(),
        affinity_key: Default::default(),
        ..Default::default()
    };
    let id = h.model(Policy::RoundRobin, input("").endpoints, vec![rule.clone()]).await;
    for _ in 0..2 {
        assert_eq!(h.chat(hello()).await.status(), 200);
    }
    // An edit that keeps the rule (a new endpoint) rebuilds the snapshot: the two admissions
    // still count, so one more fits, not three.
    let rev = models::update(&h.state.db, &app::ssr::audit::Actor::system(), &h.state.secrets, id, None, &input("/name/b")).await.unwrap();
    h.state.config_changed(rev).await;
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "Hello from b!", "served by the new snapshot");
    assert_eq!(error_of(h.chat(hello()).await).await.0, 429);
}

#[tokio::test]
async fn status_rows_of_gateways_gone_for_a_day_are_deleted() {
    use app::ssr::entities::gateway_status;
    use sea_orm::{EntityTrait, Set};
    let h = harness().await;
    let now = app::ssr::now();
    let row = |id: &str, heartbeat_at: i64| gateway_status::ActiveModel {
        gateway_id: Set(id.into()),
        cluster: Set(Some("local".into())),
        applied_revision: Set(1),
        error: Set(None),
        detail: Set(None),
        heartbeat_at: Set(heartbeat_at),
        serves: Set(None),
    };
    gateway_status::Entity::insert_many([row("gone@10.0.0.9:8080", now - 25 * 3600), row("quiet@10.0.0.9:8081", now - 2 * 3600)])
        .exec(&h.state.db)
        .await
        .unwrap();
    // Another gateway process starts: its reloader cleans up on its first pass.
    spawn_reloader(
        Gateway::new(GatewayConfig::default()),
        h.state.clone(),
        Serves::EntryAddresses(vec!["http://127.0.0.1:1".into()]),
        "second".into(),
    );
    let ids = || async {
        gateway_status::Entity::find().all(&h.state.db).await.unwrap().into_iter().map(|g| g.gateway_id).collect::<Vec<String>>()
    };
    for _ in 0..50 {
        if !ids().await.iter().any(|id| id.starts_with("gone")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut left = ids().await;
    left.sort();
    assert_eq!(
        left,
        ["quiet@10.0.0.9:8081", "second", "test"],
        "gone for 25 h: deleted; silent for 2 h: kept (shown as gone); the live ones kept"
    );
}

/// `router` served over TLS on 127.0.0.1 with a certificate from a private CA (files in
/// `dir`), offering HTTP/2 and HTTP/1.1 by ALPN as hosted model APIs do; returns the https base
/// URL and the HTTP version of every request it got.
async fn serve_tls(router: axum::Router, dir: &std::path::Path) -> (String, Arc<parking_lot::Mutex<Vec<http::Version>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let versions = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = versions.clone();
    let router = router.layer(axum::middleware::map_request(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            seen.lock().push(req.version());
            req
        }
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, versions)
}

#[tokio::test]
async fn https_endpoints_behind_a_private_ca_are_trusted_only_when_configured_and_speak_http2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::private_ca(dir.path());
    let roots = server::gateway::upstream::parse_ca_pem(&ca).unwrap();

    // Not configured: the certificate is refused, as an impostor's would be.
    let mock = server::mock_upstream::router(Default::default(), true);
    let (https, _) = serve_tls(mock.clone(), dir.path()).await;
    let h = harness_with(mock, |_| {}).await;
    h.model(Policy::RoundRobin, vec![ep(https, "m", "", None)], vec![]).await;
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["code"].as_str()), (502, Some("upstream_unavailable")), "{e}");
    assert!(h.received().await.is_empty(), "nothing reached the upstream");

    // Configured: forwarded over HTTP/2, streamed, and a client going away cancels the stream.
    let mock = server::mock_upstream::router(Default::default(), true);
    let (https, versions) = serve_tls(mock.clone(), dir.path()).await;
    let h = harness_with(mock, |c| c.upstream_roots = roots).await;
    let id = h.model(Policy::RoundRobin, vec![ep(https.clone(), "private-model", "", Some("sk-upstream"))], vec![]).await;
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["object"], "chat.completion");
    let got = h.received().await;
    assert_eq!(
        (got[0]["model"].as_str(), got[0]["authorization"].as_str()),
        (Some("private-model"), Some("Bearer sk-upstream")),
        "{got:?}"
    );

    h.update(id, Policy::RoundRobin, vec![ep(format!("{https}/chunks/20/chunk-delay/150"), "m", "", None)]).await;
    let mut r = h.chat(json!({"model": "chat", "stream": true, "messages": []})).await;
    let first = tokio::time::timeout(Duration::from_secs(2), r.chunk()).await.expect("first chunk in time").unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(r);
    assert_eq!(wait_cancelled(&h, 1).await, 1, "the upstream saw the stream cancelled");
    let versions = versions.lock().clone();
    assert!(!versions.is_empty() && versions.iter().all(|v| *v == http::Version::HTTP_2), "{versions:?}");
}

#[tokio::test]
async fn a_burst_on_a_rule_gives_its_memory_back_once_its_window_has_passed() {
    let h = harness().await;
    let rule = kind_rule(&h, RuleKind::Requests, "100", "1");
    h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![rule]).await;
    // A burst over more milliseconds (1 ms ticks for a 1 s window) than a counter holds inline.
    for _ in 0..12 {
        assert_eq!(h.chat(hello()).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(h.gw.release_idle_counters(), 0, "inside its window: kept");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(h.gw.release_idle_counters(), 1, "the window passed: the rule's counter shrank");
    assert_eq!(h.gw.release_idle_counters(), 0, "and stays inline");
}

#[tokio::test]
async fn switching_a_model_off_and_on_does_not_reset_its_limits() {
    let h = harness().await;
    let rule = |limit: &str| kind_rule(&h, RuleKind::Requests, limit, "60");
    let id = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![rule("3")]).await;
    for _ in 0..3 {
        assert_eq!(h.chat(hello()).await.status(), 200);
    }
    h.enable(id, false).await;
    assert_eq!(h.chat(hello()).await.status(), 404);
    h.enable(id, true).await;
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["code"].as_str()), (429, Some("rate_limit_exceeded")), "the window still holds its 3 admissions: {e}");

    // Likewise a rule removed and added back within its window (here with a higher limit).
    h.update(id, Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)]).await;
    assert_eq!(h.chat(hello()).await.status(), 200, "no rule: admitted (and not counted anywhere)");
    h.replace(id, Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![rule("4")]).await;
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0", "3 earlier admissions + this one, of 4");
    assert_eq!(h.chat(hello()).await.status(), 429);
}

#[tokio::test]
async fn a_disabled_models_counters_are_dropped_once_their_window_has_passed() {
    let h = harness().await;
    let rule = kind_rule(&h, RuleKind::Requests, "5", "1");
    let id = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![rule]).await;
    assert_eq!(h.chat(hello()).await.status(), 200);
    h.enable(id, false).await;
    h.gw.release_idle_counters();
    assert_eq!(h.gw.retired_counters(), 1, "inside its window: kept for the model's return");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    h.gw.release_idle_counters();
    assert_eq!(h.gw.retired_counters(), 0, "the window passed: nothing left to remember");
}

/// A forward proxy that only tunnels (CONNECT), as egress proxies do for https: it records the
/// request line and Proxy-Authorization of each tunnel, then relays bytes both ways.
async fn connect_proxy() -> (String, Arc<parking_lot::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(tcp);
                let Some(head) = read_head(&mut client).await else { return };
                let auth = head
                    .iter()
                    .find(|l| l.to_ascii_lowercase().starts_with("proxy-authorization:"))
                    .map_or("", |l| l["proxy-authorization:".len()..].trim())
                    .to_owned();
                log.lock().push(format!("{} | {auth}", head[0]));
                let target = head[0].split(' ').nth(1).unwrap().to_owned();
                let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                // The client sends nothing more until it has our answer: the buffer is empty.
                let mut client = client.into_inner();
                client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn https_endpoints_go_through_the_egress_proxy_unless_no_proxy_names_them() {
    use server::gateway::upstream::{parse_ca_pem, Proxies};
    let dir = tempfile::tempdir().unwrap();
    let roots = parse_ca_pem(&common::tls::private_ca(dir.path())).unwrap();
    let (proxy, tunnels) = connect_proxy().await;

    let mock = server::mock_upstream::router(Default::default(), true);
    let (https, _) = serve_tls(mock.clone(), dir.path()).await;
    let endpoint = https.trim_start_matches("https://").to_owned();
    let (r, p) = (roots.clone(), proxy.clone());
    let h = harness_with(mock, move |c| {
        c.upstream_roots = r;
        c.proxies = Arc::new(Proxies::builder().https(format!("http://maas:s3cret@{p}")).build());
        assert_eq!(server::gateway::upstream::unsupported_proxy_scheme(&c.proxies), None);
    })
    .await;
    h.model(Policy::RoundRobin, vec![ep(https.clone(), "m", "", None)], vec![]).await;
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["object"], "chat.completion");
    // One tunnel to the endpoint, with the proxy URL's credentials (base64 of maas:s3cret); the
    // proxy saw only host and port, TLS ran end to end through it.
    assert_eq!(tunnels.lock().clone(), [format!("CONNECT {endpoint} HTTP/1.1 | Basic bWFhczpzM2NyZXQ=")]);

    // NO_PROXY names the endpoint's host: connected to directly.
    let mock = server::mock_upstream::router(Default::default(), true);
    let (https, _) = serve_tls(mock.clone(), dir.path()).await;
    let h = harness_with(mock, move |c| {
        c.upstream_roots = roots;
        c.proxies = Arc::new(Proxies::builder().https(format!("http://{proxy}")).no("127.0.0.1").build());
    })
    .await;
    h.model(Policy::RoundRobin, vec![ep(https, "m", "", None)], vec![]).await;
    assert_eq!(h.chat(hello()).await.status(), 200);
    assert_eq!(tunnels.lock().len(), 1, "no tunnel for a NO_PROXY host");
}

#[tokio::test]
async fn an_egress_proxy_of_an_unsupported_scheme_fails_the_request_without_going_around_it() {
    use server::gateway::upstream::{parse_ca_pem, Proxies};
    let dir = tempfile::tempdir().unwrap();
    let roots = parse_ca_pem(&common::tls::private_ca(dir.path())).unwrap();
    let mock = server::mock_upstream::router(Default::default(), true);
    let (https, _) = serve_tls(mock.clone(), dir.path()).await;
    let h = harness_with(mock, move |c| {
        c.upstream_roots = roots;
        c.proxies = Arc::new(Proxies::builder().https("socks5://127.0.0.1:1").build());
        // What `maas` warns about at start.
        assert_eq!(server::gateway::upstream::unsupported_proxy_scheme(&c.proxies).as_deref(), Some("socks5"));
    })
    .await;
    h.model(Policy::RoundRobin, vec![ep(https, "m", "", None)], vec![]).await;
    // The operator asked for all https egress to go through the proxy: a direct connection
    // would bypass it, so the request fails as an unreachable upstream.
    let (s, e) = error_of(h.chat(hello()).await).await;
    assert_eq!((s, e["code"].as_str()), (502, Some("upstream_unavailable")), "{e}");
    assert_eq!(h.received().await.len(), 0, "nothing reached the endpoint");
}

/// A rolling restart sends SIGTERM: the real `maas serve` stops accepting connections at once
/// but lets a stream already under way run to its end, then exits cleanly.
#[tokio::test]
async fn on_sigterm_new_connections_are_refused_and_streams_under_way_finish() {
    let mock = serve(server::mock_upstream::router(Default::default(), true)).await;
    let DemoServe { mut child, base, port, key, dir: _dir } = demo_serve(&format!("{mock}/chunks/10/chunk-delay/100"), &[]);

    let body = json!({"model": "demo-chat", "stream": true, "messages": []});
    let mut stream = reqwest::Client::new().post(format!("{base}/v1/chat/completions")).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let first = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("chunk 0"), "{first}");

    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "still accepting connections 1 s after SIGTERM");

    let mut rest = String::new();
    while let Some(c) = stream.chunk().await.unwrap() {
        rest.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(rest.contains("chunk 9") && rest.trim_end().ends_with("data: [DONE]"), "the stream was cut: {rest}");
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    panic!("maas serve did not exit within 5 s of its last stream ending");
}

/// The stored usage rows, summed per outcome: (requests, usage_known, input, output, total).
async fn usage_by_outcome(h: &Harness) -> std::collections::BTreeMap<String, [i64; 5]> {
    use sea_orm::EntityTrait;
    h.gw.flush_usage(&h.state.db, "test").await.unwrap();
    let rows = app::ssr::entities::usage_minute::Entity::find().all(&h.state.db).await.unwrap();
    let mut by = std::collections::BTreeMap::new();
    for r in rows {
        let t: &mut [i64; 5] = by.entry(r.outcome.clone()).or_default();
        for (i, v) in [r.requests, r.usage_known, r.input_tokens, r.output_tokens, r.total_tokens].into_iter().enumerate() {
            t[i] += v;
        }
    }
    by
}

/// Replaces the `"created":N` stamps (seconds) of the mock's chunks, which two runs may differ in.
fn without_created(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\"created\":") {
        out.push_str(&rest[..i + 10]);
        rest = rest[i + 10..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out + rest
}

#[tokio::test]
async fn every_call_is_metered_with_the_upstreams_exact_tokens_streamed_or_not() {
    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up(""), "up", "", None)], vec![]).await;
    let embed = h.marketplace("embed", ModelKind::Embedding).await;
    h.model_of(embed, Policy::RoundRobin, vec![ep(h.up(""), "up", "", None)], vec![]).await;
    let post = |path: &'static str, body: Value| {
        let (http, base, key) = (h.http.clone(), h.base.clone(), h.key.clone());
        async move { http.post(format!("{base}/v1{path}")).bearer_auth(key).json(&body).send().await.unwrap() }
    };
    // Non-streamed: chat and completions 5 + 2, embeddings 3 (input only).
    assert_eq!(post("/chat/completions", hello()).await.status(), 200);
    assert_eq!(post("/completions", json!({"model": "chat", "prompt": "hi"})).await.status(), 200);
    assert_eq!(post("/embeddings", json!({"model": "embed", "input": ["a", "b"]})).await.status(), 200);
    // A stream whose client did not ask for usage: the gateway asked, read it (5 + 3), and the
    // client got exactly the stream the upstream sends without it.
    let stream = json!({"model": "chat", "stream": true, "messages": []});
    let got = post("/chat/completions", stream.clone()).await.text().await.unwrap();
    let direct = h
        .http
        .post(format!("{}/v1/chat/completions", h.mock))
        .json(&json!({"model": "up", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(without_created(&got), without_created(&direct));
    assert!(!got.contains("usage"), "{got}");
    let asked: Vec<Value> = h.received().await.into_iter().map(|r| r["stream_options"].clone()).collect();
    // chat, completions, embeddings, the stream (through the gateway), the direct stream.
    assert_eq!(asked, [Value::Null, Value::Null, Value::Null, json!({"include_usage": true}), Value::Null]);
    // One that asked: it gets the usage chunk, as from the upstream.
    let mut with = stream.clone();
    with["stream_options"] = json!({"include_usage": true});
    let got = post("/chat/completions", with).await.text().await.unwrap();
    assert!(got.contains(r#""usage":{"completion_tokens":3,"prompt_tokens":5,"total_tokens":8}"#), "{got}");

    let by = usage_by_outcome(&h).await;
    // 5 ok calls: 3 non-streamed (5+2, 5+2, 3+0), 2 streams (5+3 each).
    assert_eq!(by["ok"], [5, 5, 5 + 5 + 3 + 5 + 5, 2 + 2 + 3 + 3, 7 + 7 + 3 + 8 + 8], "{by:?} (embeddings: no output tokens)");
}

#[tokio::test]
async fn refused_cancelled_failed_over_and_usage_less_calls_are_each_one_record() {
    let h = harness().await;
    // An upstream that reports no usage at all.
    let bare =
        serve(axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(|| async { axum::Json(json!({"choices": [{"message": {"content": "hi"}}]})) }),
        ))
        .await;
    h.model(
        Policy::RoundRobin,
        vec![ep(h.up("/status/503"), "broken", "", None), ep(h.up("/chunks/20/chunk-delay/100"), "slow", "", None)],
        vec![kind_rule(&h, RuleKind::Requests, "5", "60")],
    )
    .await;
    let mm2 = catalog::create_marketplace(
        &h.state.db,
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "bare".into(), provider: "p".into(), ..Default::default() },
    )
    .await
    .unwrap();
    catalog::set_published(&h.state.db, &app::ssr::audit::Actor::system(), mm2, true).await.unwrap();
    h.model_of(mm2, Policy::RoundRobin, vec![ep(format!("{bare}/v1"), "bare", "", None)], vec![]).await;

    // Round-robin starts on the 503: the call fails over and is one record of the endpoint that
    // answered, with one failover.
    assert_eq!(h.chat(hello()).await.status(), 200);
    // A client that leaves a stream after its first chunk: cancelled.
    let mut s = h.chat(json!({"model": "chat", "stream": true, "messages": []})).await;
    assert!(s.chunk().await.unwrap().is_some());
    drop(s);
    // No usage from the upstream: unknown, not 0.
    let bare_call = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&h.key)
        .json(&json!({"model": "bare", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bare_call.status(), 200);
    bare_call.text().await.unwrap();
    // Refusals, counted under what the caller sent.
    let bad_key = h.http.post(format!("{}/v1/chat/completions", h.base)).bearer_auth("sk-nope").json(&hello()).send().await.unwrap();
    assert_eq!(bad_key.status(), 401);
    assert_eq!(h.chat(json!({"model": "no-such-model", "messages": []})).await.status(), 404);
    for _ in 0..3 {
        h.chat(hello()).await.text().await.unwrap();
    }
    assert_eq!(h.chat(hello()).await.status(), 429);
    // The cancelled stream's record is taken when the gateway notices the client left.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let by = usage_by_outcome(&h).await;
    assert_eq!(by["cancelled"][0], 1, "{by:?}");
    assert_eq!(by["unauthenticated"][0], 1, "{by:?}");
    assert_eq!(by["not_found"][0], 1, "{by:?}");
    assert_eq!(by["rate_limited"][0], 1, "{by:?}");
    // Admitted by the rule (5 a minute): the failed-over call, the stream, three more; ok: those
    // but the stream, and the usage-less call (another model, no rule): usage known for 4.
    assert_eq!(by["ok"][0..2], [5, 4], "{by:?}");
    use app::ssr::entities::usage_minute::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let rows = Entity::find().all(&h.state.db).await.unwrap();
    let nf = rows.iter().find(|r| r.outcome == "not_found").unwrap();
    assert_eq!((nf.model.as_str(), nf.status, nf.workspace_id), ("no-such-model", 404, Some(h.ws)));
    let unauth = rows.iter().find(|r| r.outcome == "unauthenticated").unwrap();
    assert_eq!((unauth.status, unauth.workspace_id, unauth.api_key_id), (401, None, None));
    let bare_rows = Entity::find().filter(Column::Model.eq("bare")).all(&h.state.db).await.unwrap();
    assert_eq!((bare_rows[0].requests, bare_rows[0].usage_known, bare_rows[0].total_tokens), (1, 0, 0));
    // The failed-over call: recorded once, on the endpoint that answered, with its failover.
    let failovers: i64 = rows.iter().filter(|r| r.model == "chat" && r.outcome == "ok").map(|r| r.failovers).sum();
    assert!(failovers >= 1, "{rows:?}");
    assert!(rows.iter().filter(|r| r.outcome == "ok" && r.model == "chat").all(|r| r.endpoint_id.is_some()));
}

/// A rolling restart loses no usage: the real `maas serve` (flushing only every hour here) gets
/// calls and a stream under way at SIGTERM; once it exited, the database holds every one.
#[tokio::test]
async fn on_sigterm_the_usage_of_every_call_is_flushed_before_exit() {
    let mock = serve(server::mock_upstream::router(Default::default(), true)).await;
    let DemoServe { mut child, base, key, dir, .. } =
        demo_serve(&format!("{mock}/chunks/10/chunk-delay/100"), &[("MAAS_USAGE_FLUSH", "1h")]);
    let db_url = format!("sqlite://{}/maas.db?mode=rwc", dir.path().display());
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let r = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "demo-chat", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let mut stream = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "demo-chat", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert!(stream.chunk().await.unwrap().is_some());
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    while stream.chunk().await.unwrap().is_some() {}
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");

    let db = app::ssr::connect(&db_url).await.unwrap();
    let totals = server::gateway::meter::totals(&db, sea_orm::Condition::all()).await.unwrap();
    // 21 calls, each with the mock's usage: 20 × (5 + 2) and the stream's 5 + 10.
    assert_eq!(totals, [21, 21, 21 * 5, 20 * 2 + 10, 20 * 7 + 15]);
}

/// An upstream that refuses the `stream_options` the gateway adds (a 400, as servers that
/// validate every field answer): the stream is sent again without, and from then on that
/// endpoint's streams go without; the client never sees the refusal.
#[tokio::test]
async fn an_upstream_refusing_stream_options_gets_streams_without_them() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let h = harness().await;
    let (with, without) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (w, wo) = (with.clone(), without.clone());
    let strict = serve(axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let (w, wo) = (w.clone(), wo.clone());
            async move {
                use axum::response::IntoResponse;
                if body.get("stream_options").is_some() {
                    w.fetch_add(1, Ordering::SeqCst);
                    return (http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": "unknown field stream_options"}})))
                        .into_response();
                }
                wo.fetch_add(1, Ordering::SeqCst);
                ([("content-type", "text/event-stream")], "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
                    .into_response()
            }
        }),
    ))
    .await;
    h.model(Policy::RoundRobin, vec![ep(format!("{strict}/v1"), "strict", "", None)], vec![]).await;
    let stream = json!({"model": "chat", "stream": true, "messages": []});
    for round in 0..3 {
        let r = h.chat(stream.clone()).await;
        assert_eq!(r.status(), 200, "round {round}");
        assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    }
    // Refused once, then never offered again.
    assert_eq!((with.load(Ordering::SeqCst), without.load(Ordering::SeqCst)), (1, 3));
    let by = usage_by_outcome(&h).await;
    assert_eq!(by["ok"][0..2], [3, 0], "three calls, usage unknown: {by:?}");
    // A client's own bad request still gets the upstream's 400 (sent once: no injection now).
    let mut bad = stream.clone();
    bad["stream_options"] = json!({"include_usage": true});
    assert_eq!(h.chat(bad).await.status(), 400);
    assert_eq!(with.load(Ordering::SeqCst), 2);
}

/// An operator turns off asking an endpoint for its streams' usage: its streams go as the client
/// sent them, and their tokens are recorded as unknown (never 0).
#[tokio::test]
async fn an_endpoint_set_to_skip_stream_usage_is_never_sent_stream_options() {
    let h = harness().await;
    let e = EndpointInput { skip_stream_usage: true, ..ep(h.up(""), "up", "", None) };
    h.model(Policy::RoundRobin, vec![e], vec![]).await;
    let text = h.chat(json!({"model": "chat", "stream": true, "messages": []})).await.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]") && !text.contains("usage"), "{text}");
    let asked: Vec<Value> = h.received().await.into_iter().map(|r| r["stream_options"].clone()).collect();
    assert_eq!(asked, [Value::Null]);
    let by = usage_by_outcome(&h).await;
    assert_eq!(by["ok"][0..2], [1, 0], "one call, usage unknown: {by:?}");
}

/// 10,000 mixed calls from 50 concurrent clients: answered, rate limited, unknown model and
/// failed over. The stored rollups add up to exactly the calls made, per outcome, and to what
/// the mock upstream itself received (answered calls plus the 503s failed over from).
#[tokio::test]
async fn ten_thousand_mixed_calls_add_up_exactly_in_the_stored_usage() {
    let h = harness().await;
    let (limited, _) = keys::create(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.ws, "limited").await.unwrap();
    // `chat`: round-robin over a 503 and a good endpoint (every other call fails over once);
    // key `limited` may make 100 calls an hour.
    h.model(
        Policy::RoundRobin,
        vec![ep(h.up("/status/503"), "broken", "", None), ep(h.up(""), "up", "", None)],
        vec![RuleInput {
            kind: app::types::RuleKind::Requests,
            target: RuleTarget::ApiKey,
            workspace_id: Some(h.ws),
            api_key_id: Some(limited.info.id),
            limit: "100".into(),
            duration: "3600".into(),
        }],
    )
    .await;
    const CALLS: usize = 10_000;
    let sent = Arc::new(parking_lot::Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (http, base, key, other, sent, next) =
                (h.http.clone(), h.base.clone(), h.key.clone(), limited.secret.clone(), sent.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= CALLS {
                        return;
                    }
                    // 1 in 10 to an unknown model, 2 in 10 with the limited key, the rest plain.
                    let (key, model) = match i % 10 {
                        0 => (&key, "no-such-model"),
                        1 | 2 => (&other, "chat"),
                        _ => (&key, "chat"),
                    };
                    let r = http
                        .post(format!("{base}/v1/chat/completions"))
                        .bearer_auth(key)
                        .json(&json!({"model": model, "messages": []}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    r.bytes().await.unwrap();
                    *sent.lock().entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let sent = sent.lock().clone();
    assert_eq!(sent.values().sum::<usize>(), CALLS);
    assert_eq!((sent[&404], sent[&429]), (1_000, 2_000 - 100), "{sent:?}");
    let by = usage_by_outcome(&h).await;
    assert_eq!(by["ok"][0] as usize, sent[&200], "{by:?}");
    assert_eq!(by["rate_limited"][0] as usize, sent[&429]);
    assert_eq!(by["not_found"][0] as usize, sent[&404]);
    assert_eq!(by.values().map(|t| t[0]).sum::<i64>() as usize, CALLS, "no other outcome: {by:?}");
    // Exact tokens: the mock reports 5 + 2 for every answered call.
    assert_eq!((by["ok"][1], by["ok"][4]), (sent[&200] as i64, 7 * sent[&200] as i64));
    // The mock saw every answered call once, plus one 503 per failover.
    use sea_orm::EntityTrait;
    let failovers: i64 = app::ssr::entities::usage_minute::Entity::find().all(&h.state.db).await.unwrap().iter().map(|r| r.failovers).sum();
    let received = h.stats().await["requests"].as_i64().unwrap();
    assert!(failovers > 0);
    assert_eq!(received, sent[&200] as i64 + failovers, "upstream requests = answered + failed over: {sent:?} {by:?}");
}

/// A SIGTERM in the middle of traffic from 20 concurrent clients: every call a client got an
/// answer for is in the stored usage once the process exited, and nothing else is.
#[tokio::test]
async fn a_sigterm_in_the_middle_of_traffic_loses_no_call_and_invents_none() {
    let mock = serve(server::mock_upstream::router(Default::default(), false)).await;
    let DemoServe { mut child, base, key, dir, .. } = demo_serve(&format!("{mock}/latency/5"), &[("MAAS_USAGE_FLUSH", "1h")]);
    let db_url = format!("sqlite://{}/maas.db?mode=rwc", dir.path().display());
    // One connection per call: after SIGTERM a new call is refused at connect, never half-sent.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let answered = Arc::new(std::sync::atomic::AtomicI64::new(0));
    // The demo key's rule (600 a minute) may refuse the tail of the traffic on a slow machine,
    // where more calls get in between the SIGTERM and the listener closing: refused calls are
    // recorded too (with no usage), so they are counted apart.
    let refused = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (http, base, key, answered, refused) = (http.clone(), base.clone(), key.clone(), answered.clone(), refused.clone());
            tokio::spawn(async move {
                // Bounded: at most 5,000 calls a client.
                for _ in 0..5_000 {
                    let Ok(r) = http
                        .post(format!("{base}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&json!({"model": "demo-chat", "messages": []}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let status = r.status().as_u16();
                    assert!(status == 200 || status == 429, "{status}");
                    if r.bytes().await.is_ok() {
                        let n = if status == 200 { &answered } else { &refused };
                        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    for c in clients {
        c.await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    let refused = refused.load(std::sync::atomic::Ordering::SeqCst);
    let db = app::ssr::connect(&db_url).await.unwrap();
    use sea_orm::EntityTrait;
    let rows = app::ssr::entities::usage_minute::Entity::find().all(&db).await.unwrap();
    let count = |outcome: &str| rows.iter().filter(|r| r.outcome == outcome).map(|r| r.requests).sum::<i64>();
    assert_eq!(count("ok"), answered, "every answered call recorded, once, and no other as answered");
    assert_eq!(count("rate_limited"), refused);
    // A call whose client saw no whole answer as the process stopped (its connection cut) is
    // recorded as it ended: cancelled, never as answered; at most one per client.
    let cancelled = count("cancelled");
    assert!(rows.iter().all(|r| ["ok", "rate_limited", "cancelled"].contains(&r.outcome.as_str())), "{rows:?}");
    assert!(cancelled <= 20, "{cancelled} cancelled");
    let [requests, known, ..] = server::gateway::meter::totals(&db, sea_orm::Condition::all()).await.unwrap();
    assert_eq!(requests, answered + refused + cancelled);
    assert!(known >= answered + refused, "refused calls carry no usage: known");
}

/// A key scoped to one model calls that one (and lists only it); another model is a 403
/// `model_not_allowed`, recorded as forbidden under the key. A key past its last day is a 401
/// that says it expired; one whose last day is today still works.
#[tokio::test]
async fn keys_scoped_to_models_and_keys_that_expired_are_refused_as_openai_would() {
    use app::ssr::entities::api_key;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let h = harness().await;
    let chat = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let mm = catalog::create_marketplace(
        &h.state.db,
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "embed".into(), provider: "p".into(), ..Default::default() },
    )
    .await
    .unwrap();
    catalog::set_published(&h.state.db, &app::ssr::audit::Actor::system(), mm, true).await.unwrap();
    h.model_of(mm, Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let listed = || async {
        let v: Value = h.http.get(format!("{}/v1/models", h.base)).bearer_auth(&h.key).send().await.unwrap().json().await.unwrap();
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(listed().await, ["chat", "embed"]);

    // The operator scopes the key to `chat`, through until today.
    let today = app::days::format_day(app::ssr::now().div_euclid(86_400));
    let rev = keys::set_scope(
        &h.state.db,
        &app::ssr::audit::Actor::system(),
        &h.op,
        h.key_id,
        &KeyScope { last_day: Some(today), models: Some(vec![chat]) },
    )
    .await
    .unwrap();
    h.state.config_changed(rev).await;
    assert_eq!(h.chat(hello()).await.status(), 200);
    assert_eq!(listed().await, ["chat"], "the other model is absent from the key's list");
    let other = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(&h.key)
        .json(&json!({"model": "embed", "messages": []}))
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(other).await;
    assert_eq!((s, e["code"].as_str(), e["type"].as_str()), (403, Some("model_not_allowed"), Some("invalid_request_error")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("`embed`"), "{e}");
    let r = h.http.get(format!("{}/v1/models/embed", h.base)).bearer_auth(&h.key).send().await.unwrap();
    assert_eq!(r.status(), 404, "nor can it be retrieved");

    // Time passes: the stored expiry is now behind us (set in the database, as a day later).
    let k = api_key::Entity::find_by_id(h.key_id).one(&h.state.db).await.unwrap().unwrap();
    let mut am: api_key::ActiveModel = k.into();
    am.limit_expires_at = Set(Some(app::ssr::now() - 1));
    am.update(&h.state.db).await.unwrap();
    let rev = app::ssr::bump_revision(&h.state.db).await.unwrap();
    h.state.config_changed(rev).await;
    for r in [h.chat(hello()).await, h.http.get(format!("{}/v1/models", h.base)).bearer_auth(&h.key).send().await.unwrap()] {
        let (s, e) = error_of(r).await;
        assert_eq!((s, e["code"].as_str()), (401, Some("api_key_expired")), "{e}");
        assert!(e["message"].as_str().unwrap().contains("expired at"), "{e}");
    }
    // Both refusals are in the usage.
    let by = usage_by_outcome(&h).await;
    assert_eq!(by.get("forbidden").map(|v| v[0]), Some(1), "{by:?}");
    assert!(by.get("unauthenticated").is_some_and(|v| v[0] >= 1), "{by:?}");
}

fn kind_rule(h: &Harness, kind: RuleKind, limit: &str, duration: &str) -> RuleInput {
    RuleInput {
        kind,
        target: RuleTarget::ApiKey,
        workspace_id: Some(h.ws),
        api_key_id: Some(h.key_id),
        limit: limit.into(),
        duration: duration.into(),
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn token_rules_reserve_then_settle_to_the_real_usage_and_say_so_in_openais_headers() {
    let h = harness().await;
    h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![kind_rule(&h, RuleKind::Tokens, "40", "60")]).await;
    // Reserves its size in tokens (a quarter of its bytes) plus max_tokens; the mock reports 7.
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
    let estimate = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4) + 1;
    let mut consumed = 0;
    loop {
        let r = h.chat(body.clone()).await;
        if consumed >= 40 {
            assert_eq!(r.status(), 429, "{consumed} tokens consumed of 40");
            assert_eq!(header(&r, "x-ratelimit-limit-tokens").as_deref(), Some("40"));
            assert_eq!(header(&r, "x-ratelimit-remaining-tokens").as_deref(), Some("0"));
            let reset = header(&r, "x-ratelimit-reset-tokens").unwrap();
            assert!(reset.starts_with("59.") || reset.starts_with("1m0"), "until the first call's tokens leave: {reset}");
            assert!(header(&r, "x-ratelimit-limit-requests").is_none(), "no request rule applies");
            assert_eq!(header(&r, "x-maas-ratelimit-rule"), Some(format!("api_key:{}:40tokens/60s", h.key_id)));
            let (_, e) = error_of(r).await;
            assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("tokens"), Some("rate_limit_exceeded")));
            assert!(e["message"].as_str().unwrap().contains("40 tokens per 60 s"), "{e}");
            break;
        }
        assert_eq!(r.status(), 200, "{consumed} tokens consumed of 40");
        assert_eq!(header(&r, "x-ratelimit-limit-tokens").as_deref(), Some("40"));
        // Remaining moves after each call: what the earlier calls really used, and this one's
        // reservation.
        let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
        assert_eq!(remaining, 40u64.saturating_sub(consumed + estimate), "after {consumed} consumed");
        assert_eq!(r.json::<Value>().await.unwrap()["usage"]["total_tokens"], 7);
        consumed += 7;
    }
    assert_eq!(h.received().await.len(), 6, "six calls of 7 tokens: the sixth took the window past 40");
}

/// A call without `max_tokens` reserves the model's own output reservation when it sets one
/// (a model known for short answers need not hold 1,024 tokens per call), the gateway's
/// default otherwise; an invalid reservation is refused next to its field.
#[tokio::test]
async fn a_call_without_max_tokens_reserves_the_models_own_output_reservation() {
    let h = harness().await;
    let rules = vec![kind_rule(&h, RuleKind::Tokens, "100000", "60")];
    let model = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], rules.clone()).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let prompt = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4);
    let remaining = |r: &reqwest::Response| header(r, "x-ratelimit-remaining-tokens").unwrap().parse::<u64>().unwrap();
    assert_eq!(remaining(&h.chat(body.clone()).await), 100_000 - prompt - 1_024, "the gateway's default");
    let mut input = ModelInput {
        marketplace_model_id: Some(h.mm),
        cluster_id: Some(h.cluster),
        policy: Policy::RoundRobin,
        endpoints: vec![ep(h.up(""), "m", "", None)],
        rules,
        reserve_output: "300".into(),
        affinity_key: Default::default(),
        ..Default::default()
    };
    let rev = models::update(&h.state.db, &app::ssr::audit::Actor::system(), &h.state.secrets, model, None, &input).await.unwrap();
    h.state.config_changed(rev).await;
    // The first call used 7 (the mock's usage).
    assert_eq!(remaining(&h.chat(body.clone()).await), 100_000 - 7 - prompt - 300, "the model's reservation");
    assert_eq!(models::get(&h.state.db, model).await.unwrap().reserve_output, Some(300), "the form shows it again");
    input.reserve_output = "0".into();
    let err =
        models::update(&h.state.db, &app::ssr::audit::Actor::system(), &h.state.secrets, model, None, &input).await.unwrap_err().into_app();
    assert!(matches!(&err, app::error::AppError::Invalid(f) if f.get("reserve_output") == Some("must be at least 1")), "{err:?}");
}

#[tokio::test]
async fn a_streamed_call_settles_its_tokens_from_the_usage_chunk_and_a_usage_less_one_keeps_its_estimate() {
    let h = harness().await;
    let model = h
        .model(Policy::RoundRobin, vec![ep(h.up("/chunks/4"), "m", "", None)], vec![kind_rule(&h, RuleKind::Tokens, "100000", "60")])
        .await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 500});
    let estimate = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(4) + 500;
    let remaining = |r: &reqwest::Response| header(r, "x-ratelimit-remaining-tokens").unwrap().parse::<u64>().unwrap();
    let r = h.chat(body.clone()).await;
    assert_eq!(remaining(&r), 100_000 - estimate);
    let text = r.text().await.unwrap();
    assert!(!text.contains("\"usage\""), "the client did not ask for the usage chunk: {text}");
    // The mock's usage chunk said 5 + 4 tokens.
    let r = h.chat(body.clone()).await;
    assert_eq!(remaining(&r), 100_000 - 9 - estimate, "settled to the stream's real usage");
    r.text().await.unwrap();
    // An endpoint that is never asked for usage: its streams keep their estimate.
    h.replace(
        model,
        Policy::RoundRobin,
        vec![EndpointInput { skip_stream_usage: true, ..ep(h.up("/chunks/4"), "m", "", None) }],
        vec![kind_rule(&h, RuleKind::Tokens, "100000", "60")],
    )
    .await;
    h.chat(body.clone()).await.text().await.unwrap();
    let r = h.chat(body.clone()).await;
    assert_eq!(
        remaining(&r),
        100_000 - 9 - 9 - estimate - estimate,
        "the counter survived the change; the usage-less call counts its estimate"
    );
}

#[tokio::test]
async fn a_concurrency_rule_of_10_holds_the_upstream_to_10_under_200_concurrent_streams() {
    let h = harness().await;
    h.model(
        Policy::RoundRobin,
        vec![ep(h.up("/chunks/4/chunk-delay/150"), "m", "", None)],
        vec![kind_rule(&h, RuleKind::Concurrent, "10", "")],
    )
    .await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let calls = (0..200).map(|_| {
        let (http, url, key, body) = (h.http.clone(), format!("{}/v1/chat/completions", h.base), h.key.clone(), body.clone());
        tokio::spawn(async move {
            let r = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let (retry, text) = (header(&r, "retry-after"), r.text().await.unwrap());
            (status, retry, text)
        })
    });
    let mut by_status = std::collections::BTreeMap::<u16, u32>::new();
    for c in calls.collect::<Vec<_>>() {
        let (status, retry, text) = c.await.unwrap();
        *by_status.entry(status).or_default() += 1;
        if status == 429 {
            assert_eq!(retry.as_deref(), Some("1"));
            assert!(text.contains("10 calls at once"), "{text}");
        } else {
            assert!(text.ends_with("data: [DONE]\n\n"), "an admitted stream runs to its end");
        }
    }
    let stats = h.stats().await;
    assert!(stats["peak_in_flight"].as_u64().unwrap() <= 10, "the upstream saw {} at once", stats["peak_in_flight"]);
    let admitted = by_status.get(&200).copied().unwrap_or(0);
    assert!(admitted >= 10, "at least the first ten streams: {by_status:?}");
    assert_eq!(admitted + by_status.get(&429).copied().unwrap_or(0), 200, "{by_status:?}");
    assert_eq!(stats["requests"].as_u64(), Some(admitted as u64), "a refused call never reaches the upstream");
    // All ended: the places are free again.
    for _ in 0..3 {
        assert_eq!(h.chat(body.clone()).await.status(), 200);
    }
}

/// A gateway of its own on the harness's database (a restarted process, or another replica),
/// with `adjust`ed configuration; returns once it serves the current revision.
async fn another_gateway(h: &Harness, adjust: impl FnOnce(&mut GatewayConfig)) -> (Arc<Gateway>, String) {
    let mut config =
        GatewayConfig { first_byte_timeout: Duration::from_secs(2), heartbeat: Duration::from_millis(100), ..Default::default() };
    adjust(&mut config);
    let gw = Gateway::new(config);
    spawn_reloader(gw.clone(), h.state.clone(), Serves::EntryAddresses(vec!["http://127.0.0.1:1".into()]), "restarted".into());
    let want = app::ssr::current_revision(&h.state.db).await.unwrap();
    for _ in 0..100 {
        if gw.revision() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.revision() >= want, "the new gateway loaded the configuration");
    let base = common::serve_front(server::compose::replica(&gw, common::metrics_without_token(&gw))).await;
    (gw, base)
}

/// Money: each call priced at its model's version in force when it ended, exactly (integers:
/// $3 / M input, $0.30 / M cached, $15 / M output are 3,000, 300 and 15,000 nano per token),
/// streamed or not; a price change applies from its moment on; a model without a price has
/// its calls' cost unknown, never 0.
#[tokio::test]
async fn calls_are_priced_at_the_version_in_force_when_they_end_and_unpriced_ones_are_unknown() {
    use app::ssr::entities::usage_minute;
    use app::ssr::services::prices;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let clock = server::gateway::clock::ManualClock::at(app::ssr::now() * 1000);
    let w = clock.clone();
    let h = harness_with(server::mock_upstream::router(Default::default(), true), move |c| c.clock = Arc::new(w)).await;
    let chat = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let sys = app::ssr::audit::Actor::system();
    let price = |input: &str, cached: &str, output: &str, call: &str, from: Option<i64>| PriceInput {
        effective_from: from,
        input_per_million: input.into(),
        cached_input_per_million: cached.into(),
        output_per_million: output.into(),
        per_unit: String::new(),
        per_call: call.into(),
        ..Default::default()
    };
    let (v1, _) = prices::add(&h.state.db, &sys, chat, &price("3", "0.30", "15", "", None)).await.unwrap();
    assert_eq!((v1.input_per_million.as_str(), v1.cached_input_per_million.as_str(), v1.currency.as_str()), ("3.00", "0.30", "USD"));
    let change = app::ssr::now() + 120;
    let (_, rev) = prices::add(&h.state.db, &sys, chat, &price("1", "", "5", "0.001", Some(change))).await.unwrap();
    h.state.config_changed(rev).await;
    // A version in the past, a negative or over-precise price: refused, naming the field.
    let refused = prices::add(&h.state.db, &sys, chat, &price("-1", "0.0000001", "", "", Some(1))).await;
    match refused {
        Err(app::ssr::ServiceError::App(app::error::AppError::Invalid(f))) => {
            assert_eq!(f.get("input_per_million"), Some("never negative"));
            assert_eq!(f.get("cached_input_per_million"), Some("at most 6 decimals"));
            assert!(f.get("effective_from").is_some_and(|m| m.starts_with("must not be in the past")), "{f:?}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }

    clock.set_unix_ms((app::ssr::now() + 1) * 1000);
    let stream = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let h = &h;
    let stream = &stream;
    let calls = |n: usize| async move {
        for i in 0..n {
            let r = h.chat(if i % 2 == 0 { hello() } else { stream.clone() }).await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap();
        }
    };
    let stored = |after: i64| async move {
        h.gw.flush_usage(&h.state.db, "test").await.unwrap();
        let rows = usage_minute::Entity::find().filter(usage_minute::Column::Id.gt(after)).all(&h.state.db).await.unwrap();
        let sum = |f: fn(&usage_minute::Model) -> i64| rows.iter().map(f).sum::<i64>();
        let last = rows.iter().map(|r| r.id).max().unwrap_or(after);
        (
            last,
            [
                sum(|r| r.requests),
                sum(|r| r.input_tokens),
                sum(|r| r.cached_tokens),
                sum(|r| r.output_tokens),
                sum(|r| r.cost_nanos),
                sum(|r| r.cost_unknown),
            ],
        )
    };
    calls(3).await;
    let (last, [n, input, cached, output, cost, unknown]) = stored(0).await;
    assert_eq!((n, unknown), (3, 0));
    assert!(input > 0 && output > 0);
    assert_eq!(cost, (input - cached) * 3_000 + cached * 300 + output * 15_000, "version 1: {input} in ({cached} cached), {output} out");

    // After the change: $1 / M input, $5 / M output, $0.001 a call.
    clock.set_unix_ms(change * 1000);
    calls(2).await;
    let (last, [n, input, cached, output, cost, unknown]) = stored(last).await;
    assert_eq!((n, unknown), (2, 0));
    assert_eq!(cost, (input - cached) * 1_000 + output * 5_000 + 2 * 1_000_000, "version 2");

    // A model without a price: its answered calls' cost is unknown; a refused call costs 0.
    let free_mm = h.marketplace("unpriced", ModelKind::Chat).await;
    h.model_of(free_mm, Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let r = h.chat(json!({"model": "unpriced", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.chat(json!({"model": "no-such-model", "messages": []})).await.status(), 404);
    let (_, [n, _, _, _, cost, unknown]) = stored(last).await;
    assert_eq!((n, cost, unknown), (2, 0, 1));

    // /metrics: the spend by model, in nano-units, as the usage rows have it; unpriced calls counted apart.
    let rows = usage_minute::Entity::find().all(&h.state.db).await.unwrap();
    let spent: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    let text = h.gw.metrics_text();
    let sum_of = |name: &str, model: &str| -> i64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("model=\"{model}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum()
    };
    assert_eq!(sum_of("maas_spend_total", "chat"), spent, "{text}");
    assert_eq!(sum_of("maas_gateway_cost_unknown_total", "unpriced"), 1, "{text}");
}

#[tokio::test]
async fn a_spent_monthly_quota_refuses_with_insufficient_quota_across_a_restart_until_the_month_turns() {
    // Both gateways on one clock the test moves (its wall crosses the month).
    let clock = server::gateway::clock::ManualClock::at(app::ssr::now() * 1000);
    let w = clock.clone();
    let h = harness_with(server::mock_upstream::router(Default::default(), true), move |c| c.clock = Arc::new(w)).await;
    // Streams from an endpoint never asked for usage: each call keeps its estimate (its size
    // plus max_tokens 2,000), about 2,020 tokens, so the third takes the 5,000 past its end.
    h.model(Policy::RoundRobin, vec![EndpointInput { skip_stream_usage: true, ..ep(h.up("/chunks/2"), "m", "", None) }], vec![]).await;
    let rev = app::ssr::services::quotas::set_workspace(
        &h.state.db,
        &app::ssr::audit::Actor::system(),
        &h.op,
        h.ws,
        &QuotaInput { period: Period::Month, tokens: "5000".into(), requests: "".into(), ..Default::default() },
    )
    .await
    .unwrap();
    h.state.config_changed(rev).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 2000});
    let call = |base: String| {
        let (http, key, body) = (h.http.clone(), h.key.clone(), body.clone());
        async move { http.post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap() }
    };
    for _ in 0..3 {
        let r = call(h.base.clone()).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let refused = call(h.base.clone()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-should-retry").as_deref(), Some("false"), "the SDKs do not retry a spent quota");
    let month_end = Period::Month.end(server::gateway::clock::Clock::unix_secs(&clock));
    let (_, e) = error_of(refused).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("insufficient_quota"), Some("insufficient_quota")));
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("your workspace's monthly quota of 5000 tokens"), "{msg}");
    assert!(msg.contains(&format!("resets at {} UTC", app::days::format_utc(month_end))), "{msg}");
    assert_eq!(h.received().await.len(), 3, "a refused call never reaches the upstream");

    // The console shows what was spent once the gateway flushed it.
    h.gw.flush_usage(&h.state.db, "test").await.unwrap();
    let spaces = app::ssr::services::workspaces::list(&h.state.db, &h.op).await.unwrap();
    let q = spaces.iter().find(|w| w.id == h.ws).unwrap().quota.clone().unwrap();
    assert!(q.spent() && q.spent_tokens > 5000 && q.spent_requests == 3, "{q:?}");

    // A restarted gateway starts from the ledger: still spent.
    let w = clock.clone();
    let (_, restarted) = another_gateway(&h, move |c| c.clock = Arc::new(w)).await;
    assert_eq!(call(restarted.clone()).await.status(), 429, "the restart knows what was spent");
    // The month turns: the budget is whole again.
    clock.set_unix_ms(month_end * 1000);
    let r = call(restarted).await;
    assert_eq!(r.status(), 200, "a new month");
    r.text().await.unwrap();
}

/// A workspace's daily budget in money: each call reserves its estimate's price (prompt size
/// and max_tokens at the model's rates, plus the price per call) and settles to its real cost,
/// so sequential calls stop exactly when spent reaches the budget, a concurrent burst is held to
/// it by the reservations, the spend equals the usage rows' cost to the nano, unpriced models
/// are refused or let through as the budget says, and a restarted gateway and the next day know
/// where they stand.
#[tokio::test]
async fn a_money_budget_reserves_each_calls_estimated_price_and_refuses_once_spent() {
    use app::ssr::entities::usage_minute;
    use app::ssr::services::{prices, quotas};
    use sea_orm::EntityTrait;
    let clock = server::gateway::clock::ManualClock::at(app::ssr::now() * 1000);
    let w = clock.clone();
    let h = harness_with(server::mock_upstream::router(Default::default(), true), move |c| c.clock = Arc::new(w)).await;
    let chat = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let sys = app::ssr::audit::Actor::system();
    // 1 per million input tokens, 2 per million output, 0.01 per call: a call costs 0.01 and a
    // few tens of thousands of nano-units.
    let price = PriceInput {
        effective_from: None,
        input_per_million: "1".into(),
        cached_input_per_million: String::new(),
        output_per_million: "2".into(),
        per_unit: String::new(),
        per_call: "0.01".into(),
        ..Default::default()
    };
    let (_, rev) = prices::add(&h.state.db, &sys, chat, &price).await.unwrap();
    h.state.config_changed(rev).await;
    // The price is in force from now: the gateway's clock moves past it.
    clock.set_unix_ms((app::ssr::now() + 1) * 1000);
    let budget = |spend: &str, unpriced: &str| QuotaInput {
        period: Period::Day,
        spend: spend.into(),
        unpriced: unpriced.into(),
        alerts: "50, 100".into(),
        ..Default::default()
    };
    let rev = quotas::set_workspace(&h.state.db, &sys, &h.op, h.ws, &budget("0.05", "refuse")).await.unwrap();
    h.state.config_changed(rev).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10});

    // Five calls of just over 0.01 spend just over 0.05: the sixth is refused.
    for i in 0..5 {
        let r = h.chat(body.clone()).await;
        assert_eq!(r.status(), 200, "call {i}");
        r.text().await.unwrap();
    }
    let refused = h.chat(body.clone()).await;
    assert_eq!(refused.status(), 429);
    let day_end = Period::Day.end(server::gateway::clock::Clock::unix_secs(&clock));
    let (_, e) = error_of(refused).await;
    assert_eq!(e["code"], "insufficient_quota");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("your workspace's daily quota of 0.05 USD in money"), "{msg}");
    assert!(msg.contains(&format!("resets at {} UTC", app::days::format_utc(day_end))), "{msg}");

    // What the budget counted is what the usage rows say the calls cost, to the nano-unit.
    h.gw.flush_usage(&h.state.db, "test").await.unwrap();
    let rows = usage_minute::Entity::find().all(&h.state.db).await.unwrap();
    let cost: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    let (input, output): (i64, i64) = (rows.iter().map(|r| r.input_tokens).sum(), rows.iter().map(|r| r.output_tokens).sum());
    assert_eq!(cost, 5 * 10_000_000 + input * 1_000 + output * 2_000, "hand-computed: 5 calls at 0.01, tokens at 1 and 2 per million");
    let spaces = app::ssr::services::workspaces::list(&h.state.db, &h.op).await.unwrap();
    let q = spaces.iter().find(|w| w.id == h.ws).unwrap().quota.clone().unwrap();
    assert_eq!(q.spent_money, app::ssr::pricing::format_nanos(cost));
    assert!(q.spend_reached && q.spent(), "{q:?}");
    assert_eq!((q.spend.as_deref(), q.currency.as_str(), q.alerts.as_slice()), (Some("0.05"), "USD", &[50u16, 100][..]));

    // A restarted gateway starts from the ledger: still spent. The day turns: whole again.
    let w = clock.clone();
    let (_, restarted) = another_gateway(&h, move |c| c.clock = Arc::new(w)).await;
    let call = |base: &str| h.http.post(format!("{base}/v1/chat/completions")).bearer_auth(&h.key).json(&body).send();
    assert_eq!(call(&restarted).await.unwrap().status(), 429, "the restart knows what was spent");
    clock.set_unix_ms(day_end * 1000);

    // A burst of 20 at once on a new day: the reservations (each call's estimate, about
    // 0.01004) hold it to the budget: five admitted, whatever the order they end in.
    let wave: Vec<_> = (0..20).map(|_| tokio::spawn(call(&h.base))).collect();
    let mut by_status = std::collections::BTreeMap::<u16, u32>::new();
    for c in wave {
        *by_status.entry(c.await.unwrap().unwrap().status().as_u16()).or_default() += 1;
    }
    assert_eq!(by_status, [(200, 5), (429, 15)].into_iter().collect(), "the budget holds under concurrency");

    // A model without a price: refused (403) while the budget refuses what it cannot price,
    // let through uncounted once it says so.
    let free_mm = h.marketplace("unpriced", ModelKind::Chat).await;
    h.model_of(free_mm, Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    // With the restarted gateway also applying changes, the harness's own is waited for.
    let applied = || async {
        let want = app::ssr::current_revision(&h.state.db).await.unwrap();
        for _ in 0..100 {
            if h.gw.revision() >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    applied().await;
    clock.set_unix_ms((day_end + 86_400) * 1000);
    let unpriced = json!({"model": "unpriced", "messages": [{"role": "user", "content": "hi"}]});
    let (status, e) = error_of(h.chat(unpriced.clone()).await).await;
    assert_eq!((status, e["code"].as_str()), (403, Some("model_unpriced")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("has no price"), "{e}");
    let rev = quotas::set_workspace(&h.state.db, &sys, &h.op, h.ws, &budget("0.05", "pass")).await.unwrap();
    h.state.config_changed(rev).await;
    applied().await;
    for _ in 0..8 {
        let r = h.chat(unpriced.clone()).await;
        assert_eq!(r.status(), 200, "uncounted: never fills the budget: {}", r.text().await.unwrap());
    }
    assert_eq!(h.chat(body.clone()).await.status(), 200, "the budget is untouched by unpriced calls");
}

/// Budget alerts: each threshold fires once per period (however many flushes see it), is in
/// the audit log and on the console, and reaches the operator's webhook signed; a delivery the
/// webhook refuses is retried after its backoff, never before.
#[tokio::test]
async fn budget_alerts_fire_once_per_threshold_and_reach_a_signed_webhook_retried_until_taken() {
    use app::ssr::services::{alerts, prices, quotas};
    use server::gateway::budget_alerts;
    // The operator's webhook: refuses its first delivery, then takes them, keeping each.
    type Got = Arc<parking_lot::Mutex<Vec<(axum::http::HeaderMap, String)>>>;
    let got: Got = Arc::default();
    let refused_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (g, r) = (got.clone(), refused_once.clone());
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (g, r) = (g.clone(), r.clone());
            async move {
                g.lock().push((headers, body));
                if r.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let clock = server::gateway::clock::ManualClock::at(app::ssr::now() * 1000);
    let w = clock.clone();
    let h = harness_with(server::mock_upstream::router(Default::default(), true), move |c| c.clock = Arc::new(w)).await;
    let chat = h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![]).await;
    let sys = app::ssr::audit::Actor::system();
    let price = PriceInput { per_call: "0.01".into(), ..Default::default() };
    let (_, rev) = prices::add(&h.state.db, &sys, chat, &price).await.unwrap();
    h.state.config_changed(rev).await;
    clock.set_unix_ms((app::ssr::now() + 1) * 1000);
    let secret = "a-signing-secret-of-32-characters";
    let rev = alerts::set_webhook(&h.state.db, &sys, &h.op, &h.state.secrets, &hook_url, secret).await.unwrap();
    h.state.config_changed(rev).await;
    let input = QuotaInput { period: Period::Day, spend: "0.04".into(), alerts: "100, 50".into(), ..Default::default() };
    let rev = quotas::set_workspace(&h.state.db, &sys, &h.op, h.ws, &input).await.unwrap();
    h.state.config_changed(rev).await;
    let h = &h;
    let calls = |n: usize| async move {
        for _ in 0..n {
            let r = h.chat(hello()).await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap();
        }
    };
    let count = || async { app::ssr::entities::quota_alert::Entity::find().all(&h.state.db).await.unwrap() };
    use sea_orm::EntityTrait;

    // Half the budget: the 50 % alert, once, however many flushes see it.
    calls(2).await;
    for _ in 0..3 {
        h.gw.flush_usage(&h.state.db, "test").await.unwrap();
    }
    let fired = count().await;
    assert_eq!(fired.iter().map(|a| (a.percent, a.spent_nanos, a.budget_nanos)).collect::<Vec<_>>(), vec![(50, 20_000_000, 40_000_000)]);
    // Its first delivery is refused: not retried before its backoff, then taken.
    assert_eq!(budget_alerts::send_due(&h.gw, &h.state.db).await.unwrap(), 0);
    assert_eq!(budget_alerts::send_due(&h.gw, &h.state.db).await.unwrap(), 0, "not due again before its backoff");
    assert_eq!(got.lock().len(), 1);
    clock.set_unix_ms(server::gateway::clock::Clock::unix_ms(&clock) + 3_000);
    assert_eq!(budget_alerts::send_due(&h.gw, &h.state.db).await.unwrap(), 1);
    assert_eq!(budget_alerts::send_due(&h.gw, &h.state.db).await.unwrap(), 0, "delivered once");
    {
        let got = got.lock();
        let (headers, body) = got.last().unwrap();
        let ts: i64 = headers["x-maas-timestamp"].to_str().unwrap().parse().unwrap();
        assert_eq!(headers["x-maas-signature"].to_str().unwrap(), budget_alerts::signature(secret, ts, body.as_bytes()));
        assert_ne!(
            headers["x-maas-signature"].to_str().unwrap(),
            budget_alerts::signature("another-secret-of-enough-length", ts, body.as_bytes())
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["target"].as_str(), v["subject_id"].as_i64()),
            (Some("budget.alert"), Some("workspace"), Some(h.ws))
        );
        assert_eq!(
            (v["percent"].as_i64(), v["spent"].as_str(), v["budget"].as_str(), v["currency"].as_str()),
            (Some(50), Some("0.02"), Some("0.04"), Some("USD"))
        );
    }

    // The whole budget: the 100 % alert; the next call is refused.
    calls(2).await;
    assert_eq!(h.chat(hello()).await.status(), 429);
    h.gw.flush_usage(&h.state.db, "test").await.unwrap();
    assert_eq!(count().await.iter().map(|a| a.percent).collect::<Vec<_>>(), vec![50, 100]);
    assert_eq!(budget_alerts::send_due(&h.gw, &h.state.db).await.unwrap(), 1);
    assert_eq!(got.lock().len(), 3, "one refused and two taken deliveries");
    // On the console, and in the audit log.
    let spaces = app::ssr::services::workspaces::list(&h.state.db, &h.op).await.unwrap();
    let q = spaces.iter().find(|w| w.id == h.ws).unwrap().quota.clone().unwrap();
    assert_eq!(q.alerted, Some(100));
    assert!(q.summary().contains("alert: 100 % of the money budget"), "{}", q.summary());
    let audit = app::ssr::entities::audit_entry::Entity::find().all(&h.state.db).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "alert" && e.entity == "workspace" && e.entity_id == h.ws).count(), 2);
    // A bad webhook is refused next to its fields and changes nothing.
    let err = alerts::set_webhook(&h.state.db, &sys, &h.op, &h.state.secrets, "ftp://x", "short").await.unwrap_err().into_app();
    let app::error::AppError::Invalid(f) = err else { panic!("{err:?}") };
    assert_eq!((f.get("url"), f.get("secret")), (Some("must start with http:// or https://"), Some("at least 16 characters")));
    assert_eq!(alerts::webhook_url(&h.state.db).await.unwrap(), Some(hook_url));
}

#[tokio::test]
async fn quotas_are_set_by_operators_only_with_errors_next_to_their_fields() {
    let h = harness().await;
    let member = h._env.user("member", Role::User).await;
    let input = |tokens: &str, requests: &str| QuotaInput {
        period: Period::Day,
        tokens: tokens.into(),
        requests: requests.into(),
        ..Default::default()
    };
    use app::ssr::services::quotas;
    let err = quotas::set_workspace(&h.state.db, &app::ssr::audit::Actor::system(), &member, h.ws, &input("10", "")).await.unwrap_err();
    assert!(matches!(err.into_app(), app::error::AppError::Forbidden), "a user may not set quotas");
    let err =
        quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id, &input("ten", "0")).await.unwrap_err().into_app();
    let app::error::AppError::Invalid(f) = err else { panic!("{err:?}") };
    assert_eq!((f.get("tokens"), f.get("requests")), (Some("must be a whole number"), Some("must be at least 1")));
    let err = quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id, &input("1000000000001", ""))
        .await
        .unwrap_err()
        .into_app();
    assert!(matches!(&err, app::error::AppError::Invalid(f) if f.get("tokens") == Some("must be at most 1000000000000")), "{err:?}");
    let money = |spend: &str, unpriced: &str, alerts: &str| QuotaInput {
        period: Period::Day,
        spend: spend.into(),
        unpriced: unpriced.into(),
        alerts: alerts.into(),
        ..Default::default()
    };
    let err = quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id, &money("-1", "maybe", "50, 200%, x"))
        .await
        .unwrap_err()
        .into_app();
    let app::error::AppError::Invalid(f) = err else { panic!("{err:?}") };
    assert_eq!((f.get("spend"), f.get("unpriced")), (Some("never negative"), Some("choose refuse or pass")));
    assert!(f.get("alerts").is_some_and(|m| m.starts_with("\"x\": percents")), "{f:?}");
    for (spend, want) in [
        ("0", "more than 0 (leave it empty for no budget)"),
        ("0.0000000001", "at most 9 decimals"),
        ("2000000000", "at most 1,000,000,000"),
    ] {
        let err =
            quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id, &money(spend, "", "")).await.unwrap_err();
        assert!(matches!(err.into_app(), app::error::AppError::Invalid(f) if f.get("spend") == Some(want)), "{spend}");
    }
    let err = quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id, &money("", "", "80")).await.unwrap_err();
    assert!(
        matches!(err.into_app(), app::error::AppError::Invalid(f) if f.get("alerts") == Some("alerts watch the money budget: set one"))
    );
    assert!(matches!(
        quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, 999_999, &input("1", "")).await.unwrap_err().into_app(),
        app::error::AppError::NotFound(_)
    ));
    // Set, seen on the keys list with nothing spent, then removed with both budgets empty.
    quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id, &input("", "100")).await.unwrap();
    let keys = app::ssr::services::keys::list(&h.state.db, &h.op).await.unwrap();
    let q = keys.iter().find(|k| k.id == h.key_id).unwrap().quota.clone().unwrap();
    assert_eq!((q.period, q.tokens, q.requests, q.spent_requests), (Period::Day, None, Some(100), 0));
    quotas::set_key(&h.state.db, &app::ssr::audit::Actor::system(), &h.op, h.key_id, &input("", "")).await.unwrap();
    let keys = app::ssr::services::keys::list(&h.state.db, &h.op).await.unwrap();
    assert!(keys.iter().find(|k| k.id == h.key_id).unwrap().quota.is_none(), "removed");
}

#[tokio::test]
async fn endpoints_capped_at_4_concurrent_spill_to_the_next_and_a_full_model_queues_then_answers_429() {
    let h = harness_with(server::mock_upstream::router(Default::default(), true), |c| {
        c.slot_wait = Duration::from_millis(300);
    })
    .await;
    let capped = |name: &str| EndpointInput {
        max_concurrent: "4".into(),
        ..ep(h.up(&format!("/name/{name}/chunks/4/chunk-delay/300")), "m", "", None)
    };
    h.model(Policy::RoundRobin, vec![capped("a"), capped("b"), capped("c")], vec![]).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let wave: Vec<_> = (0..20)
        .map(|_| {
            let (http, url, key, body) = (h.http.clone(), format!("{}/v1/chat/completions", h.base), h.key.clone(), body.clone());
            tokio::spawn(async move {
                let r = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.text().await.unwrap())
            })
        })
        .collect();
    // 20 streams of ~1.2 s against 3 × 4 slots: 12 run, 8 wait 300 ms for a slot and give up.
    let mut by_status = std::collections::BTreeMap::<u16, u32>::new();
    for c in wave {
        let (status, text) = c.await.unwrap();
        *by_status.entry(status).or_default() += 1;
        if status == 429 {
            assert!(text.contains("endpoints_busy") && text.contains("none freed within 0.3 s"), "{text}");
        }
    }
    assert_eq!(by_status, [(200, 12), (429, 8)].into_iter().collect(), "three endpoints of 4 slots each");
    let stats = h.stats().await;
    for name in ["a", "b", "c"] {
        assert_eq!(stats["peaks"][name].as_u64(), Some(4), "endpoint {name} filled to its cap, never past it: {stats}");
    }
    assert_eq!(stats["requests"].as_u64(), Some(12), "a call refused for want of a slot never reaches an upstream");
    // Slots free as streams end: a wave the caps hold is served whole, queued calls included.
    let h2 = harness_with(server::mock_upstream::router(Default::default(), true), |c| c.slot_wait = Duration::from_secs(20)).await;
    let capped = |name: &str| EndpointInput {
        max_concurrent: "2".into(),
        ..ep(h2.up(&format!("/name/{name}/chunks/2/chunk-delay/100")), "m", "", None)
    };
    h2.model(Policy::RoundRobin, vec![capped("a"), capped("b")], vec![]).await;
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let (http, url, key, body) = (h2.http.clone(), format!("{}/v1/chat/completions", h2.base), h2.key.clone(), body.clone());
            tokio::spawn(async move { http.post(url).bearer_auth(key).json(&body).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), 200, "queued until a slot freed");
    }
    let stats = h2.stats().await;
    assert!(
        stats["peak_in_flight"].as_u64().unwrap() <= 4
            && stats["peaks"]["a"].as_u64() <= Some(2)
            && stats["peaks"]["b"].as_u64() <= Some(2),
        "{stats}"
    );
}

/// Refused calls (401, 404, 429) and calls no upstream answered carry no usage: the daily usage
/// and its CSV count them as known (zero tokens), as `/metrics` leaves them out of
/// `maas_gateway_usage_unknown`; only an answer without usage is unknown.
#[tokio::test]
async fn refused_calls_carry_no_usage_and_are_not_counted_as_unknown() {
    let h = harness().await;
    let rule = kind_rule(&h, RuleKind::Requests, "1", "60");
    h.model(Policy::RoundRobin, vec![ep(h.up(""), "m", "", None)], vec![rule]).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    let unknown_key = h.http.post(format!("{}/v1/chat/completions", h.base)).bearer_auth("sk-nobody").json(&body).send().await.unwrap();
    assert_eq!(unknown_key.status(), 401);
    assert_eq!(h.chat(json!({"model": "nope", "messages": []})).await.status(), 404);
    assert_eq!(h.chat(body.clone()).await.status(), 200);
    assert_eq!(h.chat(body).await.status(), 429);
    h.gw.flush_usage(&h.state.db, "test").await.unwrap();
    let [requests, known, ..] = server::gateway::meter::totals(&h.state.db, sea_orm::Condition::all()).await.unwrap();
    assert_eq!((requests, known), (4, 4), "refused calls are not 'usage unknown'");
    assert!(!h.gw.metrics_text().contains("maas_gateway_usage_unknown{"), "nor in /metrics");
    // Each refusal is recorded under the model the caller named, an unknown key's too.
    use sea_orm::EntityTrait;
    let mut rows: Vec<(String, String)> = app::ssr::entities::usage_minute::Entity::find()
        .all(&h.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.outcome, r.model))
        .collect();
    rows.sort();
    let want = [("not_found", "nope"), ("ok", "chat"), ("rate_limited", "chat"), ("unauthenticated", "chat")];
    assert_eq!(rows, want.map(|(o, m)| (o.to_owned(), m.to_owned())));
}

/// An unknown path under `/v1` is the API's 404 in OpenAI's shape, never the console's HTML page.
#[tokio::test]
async fn an_unknown_path_under_v1_is_a_json_404() {
    let h = harness().await;
    for (method, path) in [("GET", "/v1"), ("POST", "/v1/nope"), ("GET", "/v1/files/x/content")] {
        let r = h.http.request(method.parse().unwrap(), format!("{}{path}", h.base)).bearer_auth(&h.key).send().await.unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        assert!(header(&r, "content-type").unwrap().starts_with("application/json"), "{method} {path}");
        let (_, e) = error_of(r).await;
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["message"], format!("Invalid URL ({method} {path})"));
    }
    // The gateway's own routes still answer.
    assert_eq!(h.http.get(format!("{}/v1/models", h.base)).bearer_auth(&h.key).send().await.unwrap().status(), 200);
}

/// An upstream whose health a test flips: while `down`, every request (probes included) gets a
/// 503. It counts the probes (GETs) and the calls (POSTs) it gets.
#[derive(Clone, Default)]
struct Flaky {
    down: Arc<std::sync::atomic::AtomicBool>,
    probes: Arc<std::sync::atomic::AtomicU64>,
    calls: Arc<std::sync::atomic::AtomicU64>,
}

impl Flaky {
    fn router(&self) -> axum::Router {
        use axum::response::IntoResponse;
        use std::sync::atomic::Ordering::SeqCst;
        let f = self.clone();
        axum::Router::new().fallback(move |method: http::Method| {
            let f = f.clone();
            async move {
                let get = method == http::Method::GET;
                if get { &f.probes } else { &f.calls }.fetch_add(1, SeqCst);
                if f.down.load(SeqCst) {
                    return (http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                }
                match get {
                    true => axum::Json(json!({"object": "list", "data": [{"id": "flaky", "object": "model"}]})).into_response(),
                    false => axum::Json(json!({"id": "c", "object": "chat.completion", "created": 0, "model": "flaky",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from flaky!"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
                    .into_response(),
                }
            }
        })
    }
    fn count(n: &std::sync::atomic::AtomicU64) -> u64 {
        n.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The shared verdict on `endpoint` (healthy, its run of like probes), once the prober wrote one.
async fn health_row(h: &Harness, endpoint: i64) -> Option<app::ssr::entities::endpoint_health::Model> {
    use sea_orm::EntityTrait;
    app::ssr::entities::endpoint_health::Entity::find_by_id(endpoint).one(&h.state.db).await.unwrap()
}

/// Polls (every 20 ms, at most 15 s) until `endpoint`'s shared verdict is `healthy`.
async fn wait_health(h: &Harness, endpoint: i64, healthy: bool) {
    for _ in 0..750 {
        if health_row(h, endpoint).await.is_some_and(|r| r.healthy == healthy) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("endpoint {endpoint} never became healthy={healthy}");
}

#[tokio::test]
async fn a_failing_endpoint_leaves_rotation_after_its_failed_probes_and_comes_back_once_it_passes_again() {
    use server::gateway::probe::spawn_prober;
    let h = harness().await;
    let flaky = Flaky::default();
    let flaky_url = serve(flaky.router()).await;
    let check = HealthCheck { probe: ProbeKind::Models, interval_secs: 1, timeout_secs: 1, healthy_threshold: 2, unhealthy_threshold: 2 };
    let id = h
        .model_with(h.mm, Policy::RoundRobin, vec![ep(h.up("/name/ok"), "ok", "", None), ep(flaky_url.clone(), "flaky", "", None)], |m| {
            m.health_check = Some(check)
        })
        .await;
    let eps = models::get(&h.state.db, id).await.unwrap().endpoints;
    let (ok, bad) = (eps[0].id, eps[1].id);
    // Two gateways serve the cluster, each with its prober: one of them probes each endpoint.
    let (other, other_base) = another_gateway(&h, |_| {}).await;
    spawn_prober(h.gw.clone(), h.state.db.clone(), "gw-a".into());
    spawn_prober(other.clone(), h.state.db.clone(), "gw-b".into());
    wait_health(&h, bad, true).await;
    // Both in rotation: round robin gives the flaky one its share.
    for _ in 0..4 {
        assert_eq!(h.chat(hello()).await.status(), 200);
    }
    assert_eq!(Flaky::count(&flaky.calls), 2);

    flaky.set_down(true);
    let probes_before = Flaky::count(&flaky.probes);
    wait_health(&h, bad, false).await;
    // Out at its second failed probe in a row (one probe an interval: within 2 × 1 s).
    let failed = Flaky::count(&flaky.probes) - probes_before;
    assert!((2..=3).contains(&failed), "{failed} failed probes before it left the rotation");
    let row = health_row(&h, bad).await.unwrap();
    assert_eq!(row.reason, "answered HTTP 503");
    // Once out, on both gateways, no user call goes to it and none fails.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let calls = Flaky::count(&flaky.calls);
    for base in [&h.base, &other_base] {
        for _ in 0..10 {
            let r = h.http.post(format!("{base}/v1/chat/completions")).bearer_auth(&h.key).json(&hello()).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(header(&r, "x-maas-endpoint"), Some(ok.to_string()));
            assert_eq!(header(&r, "x-maas-tries").as_deref(), Some("1"), "no call tried the unhealthy endpoint");
        }
    }
    assert_eq!(Flaky::count(&flaky.calls), calls);
    let metrics = h.gw.metrics_text();
    assert!(
        metrics.contains(&format!("maas_gateway_endpoint_state{{model=\"chat\",endpoint=\"{flaky_url}\",state=\"unhealthy\"}} 1")),
        "{metrics}"
    );

    // Probing load does not grow with the replicas: one probe an interval in all.
    let (p0, t0) = (Flaky::count(&flaky.probes), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probes = Flaky::count(&flaky.probes) - p0;
    let bound = t0.elapsed().as_secs() + 1;
    assert!(probes <= bound, "{probes} probes in {:?} from two gateways", t0.elapsed());

    // Recovered: back in rotation after two passed probes, on both gateways.
    flaky.set_down(false);
    wait_health(&h, bad, true).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for base in [&h.base, &other_base] {
        let mut answered_by = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let r = h.http.post(format!("{base}/v1/chat/completions")).bearer_auth(&h.key).json(&hello()).send().await.unwrap();
            answered_by.insert(header(&r, "x-maas-endpoint").unwrap());
        }
        assert_eq!(answered_by, [ok.to_string(), bad.to_string()].into_iter().collect());
    }
    // Its transitions, for the console: out (why), back.
    let events = models::endpoint_health(&h.state.db, id).await.unwrap();
    let flaky_events: Vec<(bool, String)> =
        events.iter().find(|e| e.endpoint_id == bad).unwrap().events.iter().map(|e| (e.healthy, e.reason.clone())).collect();
    assert_eq!(flaky_events, [(true, "passed 2 probes in a row".to_string()), (false, "answered HTTP 503".to_string())]);
    // A probe is nobody's usage: the meter holds the calls made above, not one more.
    let metered: i64 = h.gw.meter.pending().values().sum::<i64>() + other.meter.pending().values().sum::<i64>();
    assert_eq!(metered, 4 + 20 + 8);
}

#[tokio::test]
async fn when_no_endpoint_of_a_model_answers_its_fallback_model_does_and_no_cycle_can_be_configured() {
    let h = harness().await;
    let backup_mm = h.marketplace("backup", ModelKind::Chat).await;
    let backup = h.model_of(backup_mm, Policy::RoundRobin, vec![ep(h.up("/name/backup"), "b", "", None)], vec![]).await;
    let dead = vec![ep("http://127.0.0.1:1".into(), "dead", "", None), ep(h.up("/status/503"), "broken", "", None)];
    let chat = h.model_with(h.mm, Policy::RoundRobin, dead.clone(), |m| m.fallbacks = vec![backup]).await;
    let r = h.chat(hello()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-maas-fallback-model").as_deref(), Some("backup"));
    assert_eq!(header(&r, "x-maas-tries").as_deref(), Some("3"), "both endpoints of chat, then backup's");
    assert_eq!(r.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "Hello from backup!");
    // Usage under the model that answered; /metrics counts the fallback taken.
    let pending = h.gw.meter.pending();
    assert_eq!(pending.get(&("ok", 200)), Some(&1));
    let metrics = h.gw.metrics_text();
    assert!(metrics.contains("maas_gateway_fallbacks_total{model=\"chat\",to=\"backup\"} 1"), "{metrics}");
    let usage: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("maas_gateway_requests_total{") && l.contains("outcome=\"ok\""))
        .map(str::to_owned)
        .collect();
    assert!(usage.iter().all(|l| l.contains("model=\"backup\"")), "{usage:?}");
    // The stored row names both: the model that answered and the one asked for.
    {
        use sea_orm::EntityTrait;
        h.gw.flush_usage(&h.state.db, "test").await.unwrap();
        let rows = app::ssr::entities::usage_minute::Entity::find().all(&h.state.db).await.unwrap();
        let stored: Vec<_> = rows.iter().map(|r| (r.model.as_str(), r.maas_model_id, r.asked_model_id, r.requests)).collect();
        assert_eq!(stored, [("backup", Some(backup), Some(chat), 1)]);
    }

    // backup → chat would make a cycle (chat → backup → chat); chat → chat is one too.
    let sys = app::ssr::audit::Actor::system();
    let mut input = ModelInput {
        marketplace_model_id: Some(backup_mm),
        cluster_id: Some(h.cluster),
        endpoints: vec![ep(h.up("/name/backup"), "b", "", None)],
        fallbacks: vec![chat],
        ..Default::default()
    };
    let field = |r: Result<i64, app::ssr::ServiceError>| match r {
        Err(app::ssr::ServiceError::App(app::error::AppError::Invalid(f))) => f.get("fallbacks").map(str::to_owned),
        other => panic!("{:?}", other.map(|_| ())),
    };
    let refused = models::update(&h.state.db, &sys, &h.state.secrets, backup, None, &input).await;
    assert_eq!(field(refused).as_deref(), Some("these fallbacks lead back to this model (a cycle)"));
    input.fallbacks = vec![backup];
    let refused = models::update(&h.state.db, &sys, &h.state.secrets, backup, None, &input).await;
    assert_eq!(field(refused).as_deref(), Some("a model cannot fall back to itself"));

    // A key that may not call the fallback model gets the model's own failure.
    let rev = keys::set_scope(&h.state.db, &sys, &h.op, h.key_id, &KeyScope { last_day: None, models: Some(vec![chat]) }).await.unwrap();
    h.state.config_changed(rev).await;
    assert_eq!(h.chat(hello()).await.status(), 503, "its last endpoint's answer");
    // Deleting the fallback model takes it out of chat's list (chat can be saved as it loads).
    models::delete(&h.state.db, &sys, backup, None).await.unwrap();
    assert_eq!(models::get(&h.state.db, chat).await.unwrap().fallbacks, Vec::<i64>::new());
}

#[tokio::test]
async fn retries_follow_the_models_policy_and_never_exceed_its_budget() {
    // The failing endpoint never cools down here: every call tries it first.
    let h = harness_with(server::mock_upstream::router(Default::default(), true), |c| c.fail_threshold = u32::MAX).await;
    let two = || vec![ep(h.up("/status/503"), "broken", "", None), ep(h.up("/name/ok"), "ok", "", None)];
    // 5xx not retried: the first endpoint's 503 is the answer.
    let id =
        h.model_with(h.mm, Policy::RoundRobin, two(), |m| m.retry = RetryPolicy { on: vec![RetryOn::Connect], ..Default::default() }).await;
    let (s, _) = error_of(h.chat(hello()).await).await;
    assert_eq!(s, 503);
    // One try a call: the same.
    let input = |retry: RetryPolicy| ModelInput {
        marketplace_model_id: Some(h.mm),
        cluster_id: Some(h.cluster),
        endpoints: two(),
        retry,
        ..Default::default()
    };
    let sys = app::ssr::audit::Actor::system();
    let rev = models::update(&h.state.db, &sys, &h.state.secrets, id, None, &input(RetryPolicy { max_tries: 1, ..Default::default() }))
        .await
        .unwrap();
    h.state.config_changed(rev).await;
    let statuses: Vec<u16> = futures_util::future::join_all((0..4).map(|_| async { h.chat(hello()).await.status().as_u16() })).await;
    assert!(statuses.contains(&503) && statuses.contains(&200), "{statuses:?}");
    // No budget beyond the floor (0 %), on a model no call has banked retries for yet: of 200
    // calls that each need a retry, at most the floor's burst and rate are retried (100, then
    // 10 a second).
    let budget = h.marketplace("budget", ModelKind::Chat).await;
    let only_broken_first = vec![ep(h.up("/status/503"), "broken", "100", None), ep(h.up("/name/ok"), "ok", "0", None)];
    h.model_with(budget, Policy::Weighted, only_broken_first, |m| m.retry = RetryPolicy { budget_percent: 0, ..Default::default() }).await;
    let t0 = std::time::Instant::now();
    let mut retried = 0u64;
    for _ in 0..200 {
        let body = json!({"model": "budget", "messages": [{"role": "user", "content": "hi"}]});
        if h.chat(body).await.status() == 200 {
            retried += 1;
        }
    }
    let bound = 100 + (t0.elapsed().as_millis() as u64).div_ceil(100);
    assert!(retried >= 100 && retried <= bound, "{retried} retries in {:?}", t0.elapsed());
    let metrics = h.gw.metrics_text();
    assert!(metrics.contains(&format!("maas_gateway_retries_refused_total{{model=\"budget\"}} {}", 200 - retried)), "{metrics}");
}
