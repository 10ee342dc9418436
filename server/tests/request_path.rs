//! The request path without a database: a snapshot assembled in memory (`snapshot::assemble`),
//! served through the front `maas gateway` composes, on the injected clock, with `maas
//! mock-upstream` as the only upstream. One test per way a call ends (answered, refused at
//! admission, failed on every endpoint, cancelled mid-stream, its answer dropped unread, dropped
//! before any answer): each leaves exactly one usage record and gives back every hold it took
//! (token and concurrency rules, the quota's reservation, the endpoint's slot).
mod common;
use app::days::Period;
use app::ssr::entities::{endpoint, maas_model, marketplace_model, rule};
use app::types::{ModelKind, RuleTarget};
use serde_json::json;
use server::gateway::admission::quota::{QuotaCheck, QuotaKey};
use server::gateway::clock::ManualClock;
use server::gateway::snapshot::{self, Rows};
use server::gateway::{Gateway, GatewayConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "sk-request-path";
const KEY_ID: i64 = 10;
const WS: i64 = 100;

struct Path {
    gw: Arc<Gateway>,
    base: String,
    http: reqwest::Client,
}

fn model(id: i64, name: &str) -> (maas_model::Model, marketplace_model::Model) {
    model_of(id, name, ModelKind::Chat)
}

fn model_of(id: i64, name: &str, kind: ModelKind) -> (maas_model::Model, marketplace_model::Model) {
    let mm = marketplace_model::Model {
        id,
        name: name.into(),
        provider: "test".into(),
        description: String::new(),
        tags: String::new(),
        published: true,
        created_at: 0,
        kind: kind.as_str().into(),
    };
    let m = maas_model::Model {
        id,
        marketplace_model_id: id,
        cluster_id: 1,
        policy: "round_robin".into(),
        enabled: true,
        revision: 1,
        reserve_output_tokens: None,
        created_at: 0,
        updated_at: 0,
        affinity_key: "prompt_cache_key".into(),
        routing_policy: None,
        fallbacks: String::new(),
        retry_policy: None,
        health_check: None,
    };
    (m, mm)
}

fn endpoint(id: i64, model: i64, url: String, cap: Option<i64>) -> endpoint::Model {
    endpoint::Model {
        id,
        maas_model_id: model,
        position: id as i32,
        model_id: format!("upstream-{id}"),
        url,
        api_key_enc: None,
        weight: 0,
        skip_stream_usage: false,
        max_concurrent: cap,
        native_apis: "chat".into(),
        draining: false,
    }
}

fn rule(id: i64, model: i64, kind: &str, target: RuleTarget, limit: i64, secs: i64) -> rule::Model {
    rule::Model {
        id,
        maas_model_id: model,
        position: id as i32,
        target: target.as_str().into(),
        workspace_id: WS,
        api_key_id: (target == RuleTarget::ApiKey).then_some(KEY_ID),
        kind: kind.into(),
        limit_value: limit,
        duration_secs: secs,
    }
}

/// Models `chat` (a capped endpoint of the mock; a token rule on the key, a concurrency rule on
/// the workspace), `once` (one request a minute for the key), `down` (two endpoints nobody
/// listens on), and a monthly token quota on the key: every kind of hold a call can take.
async fn path() -> Path {
    let mock = common::serve_router(server::mock_upstream::router(Default::default(), true)).await;
    let mut rows = Rows::default();
    for (id, name) in [(1, "chat"), (2, "once"), (3, "down"), (4, "slow"), (5, "thinking")] {
        rows.models.push(model(id, name));
    }
    rows.endpoints.insert(1, vec![endpoint(11, 1, format!("{mock}/v1"), Some(4))]);
    // Two seconds of stream: 40 chunks 50 ms apart.
    rows.endpoints.insert(4, vec![endpoint(41, 4, format!("{mock}/chunks/40/chunk-delay/50/v1"), Some(4))]);
    // Three seconds before any answer.
    rows.endpoints.insert(5, vec![endpoint(51, 5, format!("{mock}/delay/3000/v1"), Some(4))]);
    for m in [4, 5] {
        rows.rules.insert(
            m,
            vec![
                rule(m * 10, m, "tokens", RuleTarget::ApiKey, 1_000_000, 60),
                rule(m * 10 + 1, m, "concurrent", RuleTarget::Workspace, 100, 0),
            ],
        );
    }
    rows.endpoints.insert(2, vec![endpoint(21, 2, format!("{mock}/v1"), None)]);
    rows.endpoints
        .insert(3, vec![endpoint(31, 3, "http://127.0.0.1:1/v1".into(), None), endpoint(32, 3, "http://127.0.0.1:1/x/v1".into(), None)]);
    rows.rules
        .insert(1, vec![rule(1, 1, "tokens", RuleTarget::ApiKey, 1_000_000, 60), rule(2, 1, "concurrent", RuleTarget::Workspace, 100, 0)]);
    rows.rules.insert(2, vec![rule(3, 2, "requests", RuleTarget::ApiKey, 1, 60)]);
    let quota =
        QuotaCheck::new(QuotaKey { target: RuleTarget::ApiKey, subject_id: KEY_ID, period: Period::Month }, Some(1_000_000_000), None);
    rows.quotas.insert((RuleTarget::ApiKey, KEY_ID), quota);
    let clock = ManualClock::at(app::ssr::now_ms() as i64);
    let gw = Gateway::new(GatewayConfig { clock: Arc::new(clock), connect_timeout: Duration::from_secs(1), ..Default::default() });
    let mut snap = snapshot::assemble(rows, &app::ssr::crypto::SecretBox::from_passphrase("test"), 1, None);
    snap.add_key((app::ssr::crypto::sha256_hex(KEY), KEY_ID, WS, None, None, None, None));
    gw.publish(snap);
    let base = common::serve_front(server::compose::replica(&gw, axum::Router::new())).await;
    Path { gw, base, http: reqwest::Client::new() }
}

impl Path {
    async fn call(&self, model: &str, stream: bool) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(KEY)
            .json(&json!({"model": model, "stream": stream, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
    }

    /// Calls recorded so far, by (outcome, status).
    fn records(&self) -> BTreeMap<(&'static str, u16), i64> {
        self.gw.meter.pending()
    }

    /// Waits (bounded) until `n` calls are recorded: a call whose client left ends when the
    /// server notices.
    async fn recorded(&self, n: i64) -> BTreeMap<(&'static str, u16), i64> {
        for _ in 0..100 {
            if self.records().values().sum::<i64>() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.records()
    }

    /// Every hold is back: no token reserved or call in flight in any rule, nothing reserved in
    /// the quota, every slot free.
    fn assert_nothing_held(&self) {
        let snap = self.gw.snapshot();
        for route in snap.models.values() {
            for r in route.rules.iter() {
                assert_eq!(r.counter().held(), 0, "{} still holds", r.label);
            }
            for e in &route.endpoints {
                if let Some(s) = &e.slots {
                    assert_eq!(s.available(), 4, "endpoint {} still has a slot taken", e.id);
                }
            }
        }
        for q in snap.quotas.values() {
            assert_eq!(q.reserved(), 0, "the quota still holds a reservation");
        }
    }
}

#[tokio::test]
async fn an_answered_call_is_recorded_once_and_gives_everything_back() {
    let p = path().await;
    let r = p.call("chat", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "1000000");
    r.text().await.unwrap();
    assert_eq!(p.recorded(1).await, BTreeMap::from([(("ok", 200), 1)]));
    p.assert_nothing_held();
    // A stream read to its end, too.
    let r = p.call("chat", true).await;
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(p.recorded(2).await, BTreeMap::from([(("ok", 200), 2)]));
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_call_refused_at_admission_is_recorded_once_and_holds_nothing() {
    let p = path().await;
    assert_eq!(p.call("once", false).await.status(), 200);
    let refused = p.call("once", false).await;
    assert_eq!(refused.status(), 429);
    refused.text().await.unwrap();
    assert_eq!(p.recorded(2).await, BTreeMap::from([(("ok", 200), 1), (("rate_limited", 429), 1)]));
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_call_no_endpoint_answers_after_failover_is_recorded_once_and_holds_nothing() {
    let p = path().await;
    let r = p.call("down", false).await;
    assert_eq!(r.status(), 502);
    assert_eq!(p.recorded(1).await, BTreeMap::from([(("upstream_error", 502), 1)]));
    // Both endpoints were tried, each failure counted once in /metrics.
    let metrics = p.gw.metrics_text();
    assert_eq!(
        metrics.lines().filter(|l| l.starts_with("maas_gateway_upstream_failures") && l.contains("unreachable")).count(),
        2,
        "{metrics}"
    );
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_stream_the_client_leaves_midway_is_recorded_once_as_cancelled_and_gives_everything_back() {
    let p = path().await;
    let mut r = p.call("slow", true).await;
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some(), "the first chunk arrives");
    assert_eq!(p.records().values().sum::<i64>(), 0, "under way: not ended yet");
    drop(r);
    assert_eq!(p.recorded(1).await, BTreeMap::from([(("cancelled", 200), 1)]));
    p.assert_nothing_held();
}

#[tokio::test]
async fn an_answer_dropped_before_its_body_was_read_is_recorded_once_as_cancelled() {
    let p = path().await;
    let r = p.call("slow", true).await;
    assert_eq!(r.status(), 200);
    drop(r);
    assert_eq!(p.recorded(1).await, BTreeMap::from([(("cancelled", 200), 1)]));
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_call_dropped_before_any_answer_is_recorded_once_as_client_closed() {
    let p = path().await;
    // The client gives up while the upstream is still thinking.
    let gave_up = tokio::time::timeout(Duration::from_millis(300), p.call("thinking", false)).await;
    assert!(gave_up.is_err());
    assert_eq!(p.recorded(1).await, BTreeMap::from([(("cancelled", 499), 1)]));
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_messages_call_is_translated_limited_metered_and_ends_once() {
    let p = path().await;
    let r = p
        .http
        .post(format!("{}/v1/messages", p.base))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The token rule's figures in Anthropic's headers too, the reset as an RFC 3339 time.
    assert_eq!(r.headers()["anthropic-ratelimit-tokens-limit"], "1000000");
    let reset = r.headers()["anthropic-ratelimit-tokens-reset"].to_str().unwrap().to_owned();
    assert!(reset.len() == 20 && reset.ends_with('Z') && reset.as_bytes()[10] == b'T', "{reset}");
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!((m["type"].as_str(), m["content"][0]["text"].as_str()), (Some("message"), Some("Hello!")));
    assert_eq!(m["usage"]["input_tokens"], 5);
    assert_eq!(p.recorded(1).await, BTreeMap::from([(("ok", 200), 1)]));
    p.assert_nothing_held();
    // Refused in Anthropic's dialect.
    let r = p
        .http
        .post(format!("{}/v1/messages", p.base))
        .header("x-api-key", "sk-nobody")
        .json(&json!({"model": "chat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "authentication_error");
    // Malformed, not a Messages request, oversized: refused in Anthropic's dialect, nothing held.
    let post = |body: Vec<u8>| p.http.post(format!("{}/v1/messages", p.base)).header("x-api-key", KEY).body(body).send();
    for (body, status, kind) in [
        (b"{not json".to_vec(), 400, "invalid_request_error"),
        (br#"{"model": "chat", "messages": "hi"}"#.to_vec(), 400, "invalid_request_error"),
        (vec![b' '; 11 << 20], 413, "request_too_large"),
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), status);
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!((e["type"].as_str(), e["error"]["type"].as_str()), (Some("error"), Some(kind)), "{e}");
    }
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_messages_429_carries_retry_after_and_the_rules_anthropic_headers() {
    let p = path().await;
    let messages = || {
        p.http
            .post(format!("{}/v1/messages", p.base))
            .header("x-api-key", KEY)
            .json(&json!({"model": "once", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(messages().await.unwrap().status(), 200);
    let r = messages().await.unwrap();
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        (h["anthropic-ratelimit-requests-limit"].to_str().unwrap(), h["anthropic-ratelimit-requests-remaining"].to_str().unwrap()),
        ("1", "0")
    );
    let reset = h["anthropic-ratelimit-requests-reset"].to_str().unwrap();
    assert!(reset.len() == 20 && reset.ends_with('Z'), "{reset}");
    p.assert_nothing_held();
}

/// The request path with the agents' APIs: `chat` speaks chat completions only (Messages and
/// Responses are translated), `native` speaks all three (with its own key), `mixed` has a
/// chat-only endpoint and one speaking Responses, `claude` speaks Messages only.
async fn agents() -> (Path, String) {
    let mock = common::serve_router(server::mock_upstream::router(Default::default(), true)).await;
    let secrets = app::ssr::crypto::SecretBox::from_passphrase("test");
    let mut rows = Rows::default();
    for (id, name) in [(1, "chat"), (2, "native"), (3, "mixed"), (4, "claude")] {
        rows.models.push(model(id, name));
    }
    let with = |mut e: endpoint::Model, apis: &str| {
        e.native_apis = apis.into();
        e.api_key_enc = Some(secrets.encrypt("sk-upstream"));
        e
    };
    rows.endpoints.insert(1, vec![endpoint(11, 1, format!("{mock}/v1"), None)]);
    rows.endpoints.insert(2, vec![with(endpoint(21, 2, format!("{mock}/v1"), None), "chat,messages,responses")]);
    rows.endpoints.insert(
        3,
        vec![
            endpoint(31, 3, format!("{mock}/name/chat/v1"), None),
            with(endpoint(32, 3, format!("{mock}/name/native/v1"), None), "responses"),
        ],
    );
    rows.endpoints.insert(4, vec![with(endpoint(41, 4, format!("{mock}/v1"), None), "messages")]);
    rows.rules.insert(2, vec![rule(1, 2, "tokens", RuleTarget::ApiKey, 1_000_000, 60)]);
    let gw = Gateway::new(GatewayConfig { connect_timeout: Duration::from_secs(1), ..Default::default() });
    let mut snap = snapshot::assemble(rows, &secrets, 1, None);
    snap.add_key((app::ssr::crypto::sha256_hex(KEY), KEY_ID, WS, None, None, None, None));
    gw.publish(snap);
    let base = common::serve_front(server::compose::replica(&gw, axum::Router::new())).await;
    (Path { gw, base, http: reqwest::Client::new() }, mock)
}

impl Path {
    async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http.post(format!("{}/v1/{path}", self.base)).bearer_auth(KEY).json(&body).send().await.unwrap()
    }
}

async fn received(http: &reqwest::Client, mock: &str) -> Vec<serde_json::Value> {
    http.get(format!("{mock}/_mock/requests")).send().await.unwrap().json().await.unwrap()
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<serde_json::Value> {
    body.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

#[tokio::test]
async fn a_responses_call_to_a_chat_endpoint_is_translated_both_ways_and_metered() {
    let (p, mock) = agents().await;
    let r = p.post("responses", json!({"model": "chat", "instructions": "Be brief.", "input": "hi", "max_output_tokens": 50})).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["object"].as_str(), body["status"].as_str(), body["model"].as_str()),
        (Some("response"), Some("completed"), Some("chat"))
    );
    assert_eq!(body["output"][0]["content"][0]["text"], "Hello!");
    assert_eq!((body["usage"]["input_tokens"].as_u64(), body["usage"]["output_tokens"].as_u64()), (Some(5), Some(2)));
    let sent = received(&p.http, &mock).await;
    assert!(sent[0]["path"].as_str().unwrap().ends_with("/v1/chat/completions"));
    assert_eq!(sent[0]["body"]["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(sent[0]["body"]["max_tokens"], 50);

    // Streamed: Responses events, the usage the gateway asked the chat stream for.
    let r = p.post("responses", json!({"model": "chat", "input": "hi", "stream": true})).await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events[0]["type"], "response.created");
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "chunk 0 chunk 1 chunk 2");
    assert_eq!(done["response"]["usage"]["output_tokens"], 3);
    assert_eq!(received(&p.http, &mock).await[1]["stream_options"], json!({"include_usage": true}));

    // Tools: a function call item, its arguments whole.
    let tools = json!([{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]);
    let r = p.post("responses", json!({"model": "chat", "input": "find it", "tools": tools})).await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["output"][0]["type"], "function_call");
    assert_eq!((body["output"][0]["name"].as_str(), body["output"][0]["arguments"].as_str()), (Some("lookup"), Some("{\"q\": \"mock\"}")));
    assert_eq!(p.recorded(3).await, BTreeMap::from([(("ok", 200), 3)]));
    assert_eq!(p.gw.meter.pending_tokens()["responses"], (5 + 5 + 11, 2 + 3 + 6, 0));
}

#[tokio::test]
async fn what_needs_stored_state_is_refused_on_a_translated_route_and_served_by_a_native_endpoint() {
    let (p, mock) = agents().await;
    let r = p.post("responses", json!({"model": "chat", "input": "more", "previous_response_id": "resp_1"})).await;
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("previous_response_id"), "{err}");
    assert!(received(&p.http, &mock).await.is_empty(), "nothing reached an upstream");
    // A route with an endpoint speaking Responses: that one takes it, the chat one is passed over.
    for _ in 0..3 {
        let r = p.post("responses", json!({"model": "mixed", "input": "more", "previous_response_id": "resp_1"})).await;
        assert_eq!(r.status(), 200);
    }
    let sent = received(&p.http, &mock).await;
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|s| s["name"] == "native" && s["path"].as_str().unwrap().ends_with("/v1/responses")), "{sent:?}");
    assert_eq!(sent[0]["body"]["previous_response_id"], "resp_1", "passed through as it was");
    assert_eq!(p.recorded(4).await, BTreeMap::from([(("bad_request", 400), 1), (("ok", 200), 3)]));
}

#[tokio::test]
async fn native_endpoints_get_messages_and_responses_as_sent_with_anthropics_headers_and_their_own_key() {
    let (p, mock) = agents().await;
    let body = json!({"model": "native", "max_tokens": 64, "system": "Be brief.", "thinking": {"type": "enabled", "budget_tokens": 32},
        "messages": [{"role": "user", "content": "hi"}]});
    let r = p
        .http
        .post(format!("{}/v1/messages", p.base))
        .header("x-api-key", KEY)
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["anthropic-ratelimit-tokens-limit"], "1000000");
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["id"], "msg_mock", "the endpoint's own answer");
    let sent = &received(&p.http, &mock).await[0];
    assert!(sent["path"].as_str().unwrap().ends_with("/v1/messages"));
    let mut expected = body.clone();
    expected["model"] = json!("upstream-21");
    assert_eq!(sent["body"], expected, "the caller's body, its model replaced: nothing lost (thinking)");
    assert_eq!(sent["x_api_key"], "sk-upstream", "the endpoint's key, never the caller's");
    assert_eq!(sent["authorization"], "Bearer sk-upstream");
    assert_eq!(
        (sent["anthropic_version"].as_str(), sent["anthropic_beta"].as_str()),
        (Some("2023-06-01"), Some("prompt-caching-2024-07-31"))
    );

    // Streamed natively: usage from message_start and the last message_delta, cache reads apart.
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let r = p.http.post(format!("{}/v1/messages", p.base)).header("x-api-key", KEY).json(&stream).send().await.unwrap();
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    assert!(received(&p.http, &mock).await[1]["stream_options"].is_null(), "no chat option added to a native call");
    // Responses natively, streamed.
    let r = p.post("responses", json!({"model": "native", "input": "hi", "stream": true})).await;
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap()["response"]["usage"]["input_tokens_details"]["cached_tokens"], 2);
    assert_eq!(p.recorded(3).await, BTreeMap::from([(("ok", 200), 3)]));
    let tokens = p.gw.meter.pending_tokens();
    // Messages: 9 uncached + 3 read from the cache in, 4 out, twice.
    assert_eq!(tokens["messages"], (24, 8, 6));
    // Responses: 8 in of which 2 cached, 3 out.
    assert_eq!(tokens["responses"], (8, 3, 2));
    assert!(p.gw.metrics_text().contains("maas_gateway_cached_tokens_total{model=\"native\""), "{}", p.gw.metrics_text());
}

#[tokio::test]
async fn an_operation_none_of_a_models_endpoints_speaks_is_refused_in_the_callers_dialect() {
    let (p, mock) = agents().await;
    let r = p.post("chat/completions", json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "operation_not_supported");
    assert!(err["error"]["message"].as_str().unwrap().contains("Chat completions"), "{err}");
    let r = p.post("responses", json!({"model": "claude", "input": "hi"})).await;
    assert_eq!(r.status(), 400);
    // Its own API it serves.
    let r = p.post("messages", json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(received(&p.http, &mock).await.len(), 1);
    p.assert_nothing_held();
}

/// The other model kinds: `rr` (rerank), `tts` (speech), `img` (images), `stt` (speech to
/// text), `edit` (image edits), each with a failing endpoint before a working one and a rule of
/// one request a minute for the key (two for `stt`, a transcription and a translation, and for
/// `edit`, a multipart edit and a JSON one).
/// Uploads are limited to 4 MiB.
async fn kinds() -> (Path, String) {
    let mock = common::serve_router(server::mock_upstream::router(Default::default(), true)).await;
    let mut rows = Rows::default();
    let kinds = [ModelKind::Rerank, ModelKind::TextToSpeech, ModelKind::Image, ModelKind::SpeechToText, ModelKind::Image];
    for ((id, name), kind) in [(1, "rr"), (2, "tts"), (3, "img"), (4, "stt"), (5, "edit")].into_iter().zip(kinds) {
        rows.models.push(model_of(id, name, kind));
        rows.endpoints.insert(
            id,
            vec![
                endpoint(id * 10, id, format!("{mock}/name/bad/status/503/v1"), None),
                endpoint(id * 10 + 1, id, format!("{mock}/name/good/v1"), None),
            ],
        );
        let limit = if name == "stt" || name == "edit" { 2 } else { 1 };
        rows.rules.insert(id, vec![rule(id, id, "requests", RuleTarget::ApiKey, limit, 60)]);
    }
    // Priced in pico-units per token, unit and call: rerank 0.02 / M input tokens and 0.001 a
    // document; speech 0.000015 a character; images 0.5 / M output tokens, 0.04 an image and
    // 0.001 a call; transcription 0.0001 a second; image edits 0.04 an image.
    let price = |model: i64, input: i64, output: i64, unit: i64, call: i64| app::ssr::entities::model_price::Model {
        id: model,
        maas_model_id: model,
        effective_from: 0,
        input_pico: input,
        cached_input_pico: 0,
        cache_write_pico: None,
        output_pico: output,
        unit_pico: unit,
        call_pico: call,
        created_at: 0,
    };
    for p in [
        price(1, 20_000, 0, 1_000_000_000, 0),
        price(2, 0, 0, 15_000_000, 0),
        price(3, 0, 500_000, 40_000_000_000, 1_000_000_000),
        price(4, 0, 0, 100_000_000, 0),
        price(5, 0, 0, 40_000_000_000, 0),
    ] {
        rows.prices.insert(p.maas_model_id, vec![p]);
    }
    let gw = Gateway::new(GatewayConfig { connect_timeout: Duration::from_secs(1), upload_limit: 4 << 20, ..Default::default() });
    let mut snap = snapshot::assemble(rows, &app::ssr::crypto::SecretBox::from_passphrase("test"), 1, None);
    snap.add_key((app::ssr::crypto::sha256_hex(KEY), KEY_ID, WS, None, None, None, None));
    gw.publish(snap);
    let base = common::serve_front(server::compose::replica(&gw, axum::Router::new())).await;
    (Path { gw, base, http: reqwest::Client::new() }, mock)
}

#[tokio::test]
async fn rerank_speech_and_images_are_failed_over_limited_and_counted_in_their_units() {
    let (p, mock) = kinds().await;
    let rerank = json!({"model": "rr", "query": "cat", "documents": ["a cat", "a dog", "the cat sat"], "top_n": 2});
    let r = p.post("rerank", rerank.clone()).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let order: Vec<u64> = body["results"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(order, [0, 2], "the best two, best first: {body}");

    let r = p.post("audio/speech", json!({"model": "tts", "input": "Hello there", "voice": "alloy"})).await;
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().unwrap()), (200, "audio/mpeg"));
    assert_eq!(r.bytes().await.unwrap().to_vec(), server::mock_kinds::speech_bytes(), "the audio, byte for byte");

    let r = p.post("images/generations", json!({"model": "img", "prompt": "a cat", "n": 2})).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    // Each went to the failing endpoint first, then to the working one.
    let sent = received(&p.http, &mock).await;
    for path in ["/v1/rerank", "/v1/audio/speech", "/v1/images/generations"] {
        let names: Vec<&str> =
            sent.iter().filter(|s| s["path"].as_str().unwrap().ends_with(path)).map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["bad", "good"], "{path}");
    }
    // The second call of each is refused by the rule, in OpenAI's shape, and counts no units.
    for (path, body) in [
        ("rerank", rerank),
        ("audio/speech", json!({"model": "tts", "input": "Hi", "voice": "alloy"})),
        ("images/generations", json!({"model": "img", "prompt": "x"})),
    ] {
        let r = p.post(path, body).await;
        assert_eq!(r.status(), 429, "{path}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(p.recorded(6).await, BTreeMap::from([(("ok", 200), 3), (("rate_limited", 429), 3)]));
    // Units as asked: 3 documents, 11 characters, 2 images; tokens where the upstream reported them.
    assert_eq!(p.gw.meter.pending_units(), BTreeMap::from([("images", 2), ("rerank", 3), ("speech", 11)]));
    let tokens = p.gw.meter.pending_tokens();
    assert_eq!((tokens["rerank"], tokens["images"], tokens["speech"]), ((9, 0, 0), (7, 200, 0), (0, 0, 0)));
    // Priced in their units, exactly (refusals cost nothing): rerank 9 × 20,000 + 3 × 10⁹ pico,
    // speech 11 × 15,000,000, images 200 × 500,000 + 2 × 4 × 10¹⁰ + 10⁹; in nano-units.
    assert_eq!(
        p.gw.meter.pending_cost(),
        BTreeMap::from([("images", (81_100_000, 0)), ("rerank", (3_000_180, 0)), ("speech", (165_000, 0))])
    );
    let metrics = p.gw.metrics_text();
    assert!(metrics.contains("unit=\"characters\"") && metrics.contains("maas_gateway_units_total"), "{metrics}");
    p.assert_nothing_held();
}

/// A `multipart/form-data` body with `boundary`: the text fields, then the file (if any).
fn form(boundary: &str, fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    if let Some((name, filename, data)) = file {
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n"
        );
        b.extend_from_slice(head.as_bytes());
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

/// A 16 kHz, 16-bit mono WAV of `data` bytes of samples (32,000 bytes a second).
fn wav(data: u32) -> Vec<u8> {
    let mut w = Vec::with_capacity(44 + data as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    for v in [16u32.to_le_bytes(), [1, 0, 1, 0], 16_000u32.to_le_bytes(), 32_000u32.to_le_bytes(), [2, 0, 16, 0]] {
        w.extend_from_slice(&v);
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    w.extend((0..data).map(|i| (i % 253) as u8));
    w
}

impl Path {
    async fn upload(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/{path}", self.base))
            .bearer_auth(KEY)
            .header("content-type", "multipart/form-data; boundary=test-boundary")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn uploads_are_spooled_failed_over_limited_and_counted_in_seconds_and_images() {
    use sha2::Digest;
    let (p, mock) = kinds().await;
    // 3 MB of audio: past what stays in memory, so it is sent from the spool file, twice.
    let audio = wav(3_000_000);
    let digest = hex::encode(sha2::Sha256::digest(&audio));
    let body = form("test-boundary", &[("model", "stt"), ("language", "en")], Some(("file", "a.wav", &audio)));
    let r = p.upload("audio/transcriptions", body).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["text"], "mock transcript of 3000044 bytes");
    let body = form("test-boundary", &[("model", "stt"), ("response_format", "verbose_json")], Some(("file", "a.wav", &audio)));
    let r = p.upload("audio/translations", body).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!((answer["text"].as_str(), answer["duration"].as_f64()), (Some("mock translation of 3000044 bytes"), Some(94.0)));
    let edit = form("test-boundary", &[("model", "edit"), ("prompt", "add a hat"), ("n", "2")], Some(("image", "cat.png", b"png bytes")));
    let r = p.upload("images/edits", edit.clone()).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);

    // Each went to the failing endpoint, then the working one, with the endpoint's own model
    // and key (none here: never the caller's), the other fields and the file as sent.
    let sent = received(&p.http, &mock).await;
    for (path, model) in
        [("/v1/audio/transcriptions", "upstream-4"), ("/v1/audio/translations", "upstream-4"), ("/v1/images/edits", "upstream-5")]
    {
        let tries: Vec<&serde_json::Value> = sent.iter().filter(|s| s["path"].as_str().unwrap().ends_with(path)).collect();
        let names: Vec<&str> = tries.iter().map(|s| s["name"].as_str().unwrap()).collect();
        // Round robin: the translation starts where the transcription left off.
        let expected: &[&str] = if path.ends_with("translations") { &["good"] } else { &["bad", "good"] };
        assert_eq!(names, expected, "{path}");
        for t in &tries {
            assert_eq!(t["body"]["model"], format!("{model}{}", if t["name"] == "bad" { 0 } else { 1 }));
        }
        assert!(tries.iter().all(|t| t["authorization"].is_null()), "the caller's key is never forwarded");
        if path.contains("audio") {
            assert!(tries.iter().all(|t| t["body"]["file"]["sha256"] == digest.as_str()), "the file arrives whole: {tries:?}");
        } else {
            assert_eq!((&tries[1]["body"]["prompt"], &tries[1]["body"]["n"]), (&json!("add a hat"), &json!("2")));
            assert_eq!(tries[1]["body"]["image"]["bytes"], 9);
        }
    }
    assert_eq!(sent.iter().find(|s| s["path"].as_str().unwrap().ends_with("/transcriptions")).unwrap()["body"]["language"], "en");

    // Image edits take JSON too (images by URL, as gpt-image models do).
    let r = p
        .post("images/edits", json!({"model": "edit", "prompt": "add a hat", "images": [{"image_url": "https://x.example/cat.png"}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["data"].as_array().unwrap().len(), 1);
    // Limited like every call: the next one is refused by the rule.
    let r = p.upload("images/edits", edit).await;
    assert_eq!(r.status(), 429);
    // 3,000,000 bytes at 32,000 a second: 93.75 s, counted as 94; two images, then one.
    assert_eq!(p.recorded(5).await, BTreeMap::from([(("ok", 200), 4), (("rate_limited", 429), 1)]));
    assert_eq!(p.gw.meter.pending_units(), BTreeMap::from([("image_edits", 3), ("transcriptions", 94), ("translations", 94)]));
    // Seconds at 0.0001 (94 s: 9,400,000 nano each), images at 0.04 (three: 120,000,000).
    assert_eq!(
        p.gw.meter.pending_cost(),
        BTreeMap::from([("image_edits", (120_000_000, 0)), ("transcriptions", (9_400_000, 0)), ("translations", (9_400_000, 0))])
    );
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_broken_upload_is_refused_with_what_is_wrong() {
    let (p, _mock) = kinds().await;
    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let e: serde_json::Value = r.json().await.unwrap();
        (status, e["error"]["message"].as_str().unwrap().to_owned())
    };
    let file = Some(("file", "a.wav", &b"RIFF"[..]));
    let (s, m) = error(p.upload("audio/transcriptions", form("test-boundary", &[("language", "en")], file)).await).await;
    assert_eq!((s, m.as_str()), (400, "You must provide a model parameter."));
    let (s, m) = error(p.upload("audio/transcriptions", form("test-boundary", &[("model", "nope")], file)).await).await;
    assert_eq!((s, m.as_str()), (404, "The model `nope` does not exist or you do not have access to it."));
    let mut cut = form("test-boundary", &[("model", "stt")], Some(("file", "a.wav", &wav(10_000))));
    cut.truncate(cut.len() - 40);
    let (s, m) = error(p.upload("audio/transcriptions", cut).await).await;
    assert_eq!(s, 400);
    assert!(m.contains("truncated"), "{m}");
    let (s, m) =
        error(p.upload("audio/transcriptions", form("test-boundary", &[("model", "stt")], Some(("file", "a.wav", &wav(5 << 20))))).await)
            .await;
    assert_eq!((s, m.as_str()), (413, "Request body is larger than the limit of 4194304 bytes."));
    // Chunked, without a Content-Length: 413 once the limit is passed.
    let big = form("test-boundary", &[("model", "stt")], Some(("file", "a.wav", &wav(5 << 20))));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let r = p
        .http
        .post(format!("{}/v1/audio/transcriptions", p.base))
        .bearer_auth(KEY)
        .header("content-type", "multipart/form-data; boundary=test-boundary")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(error(r).await.0, 413);
    // JSON where a form is taken, and a form without its boundary.
    let (s, m) = error(p.post("audio/transcriptions", json!({"model": "stt"})).await).await;
    assert_eq!(
        (s, m.as_str()),
        (400, "POST /v1/audio/transcriptions takes a multipart/form-data upload (the file, and `model` as a form field).")
    );
    let r = p
        .http
        .post(format!("{}/v1/audio/transcriptions", p.base))
        .bearer_auth(KEY)
        .header("content-type", "multipart/form-data")
        .body("x")
        .send()
        .await
        .unwrap();
    let (s, m) = error(r).await;
    assert_eq!(s, 400);
    assert!(m.contains("names no multipart boundary"), "{m}");
    // Nothing reached an upstream, nothing is held.
    p.assert_nothing_held();
}

#[tokio::test]
async fn a_call_to_a_model_of_another_kind_is_refused_saying_where_it_is_served() {
    let (p, mock) = kinds().await;
    let r = p.post("chat/completions", json!({"model": "rr", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "operation_not_supported");
    assert_eq!(e["error"]["message"], "The model `rr` is a rerank model: it is not served on /v1/chat/completions. Call it on /v1/rerank.");
    // In Anthropic's shape on its API; a form to a model that takes none.
    let r = p.post("messages", json!({"model": "stt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await;
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(
        e["error"]["message"],
        "The model `stt` is a speech to text model: it is not served on /v1/messages. Call it on /v1/audio/transcriptions or /v1/audio/translations."
    );
    let r = p.upload("audio/transcriptions", form("test-boundary", &[("model", "img")], Some(("file", "a.wav", b"x")))).await;
    assert_eq!(r.status(), 400);
    // Nothing reached an upstream; /v1/models lists every kind.
    assert!(received(&p.http, &mock).await.is_empty());
    let models: serde_json::Value =
        p.http.get(format!("{}/v1/models", p.base)).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["edit", "img", "rr", "stt", "tts"]);
}

/// One model `m` under `policy` over endpoints `(id, url)` of one mock, on the system clock
/// (the fastest policy times real answers); returns the path, the mock and the rows to change.
async fn fleet(policy: app::types::Policy, urls: &[(i64, &str)]) -> (Path, String, Rows) {
    let mock = common::serve_router(server::mock_upstream::router(Default::default(), true)).await;
    let mut rows = Rows::default();
    let (mut m, mm) = model(1, "m");
    let (p, r) = app::ssr::entities::maas_model::policy_columns(policy);
    (m.policy, m.routing_policy) = (p, r);
    rows.models.push((m, mm));
    rows.endpoints.insert(1, urls.iter().map(|(id, u)| endpoint(*id, 1, format!("{mock}{u}"), None)).collect());
    let gw = Gateway::new(GatewayConfig { connect_timeout: Duration::from_secs(1), ..Default::default() });
    let base = common::serve_front(server::compose::replica(&gw, axum::Router::new())).await;
    let p = Path { gw, base, http: reqwest::Client::new() };
    p.republish(&rows, None);
    (p, mock, rows)
}

impl Path {
    /// Publishes `rows` (as the reloader would, carrying health and load over).
    fn republish(&self, rows: &Rows, previous: Option<Arc<snapshot::Snapshot>>) {
        let mut snap = snapshot::assemble(rows.clone(), &app::ssr::crypto::SecretBox::from_passphrase("test"), 2, previous.as_deref());
        snap.add_key((app::ssr::crypto::sha256_hex(KEY), KEY_ID, WS, None, None, None, None));
        self.gw.publish(snap);
    }

    /// A chat call with `extra` members; its answer's `x-maas-endpoint`.
    async fn routed(&self, stream: bool, extra: serde_json::Value) -> (i64, reqwest::Response) {
        let mut body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = self.http.post(format!("{}/v1/chat/completions", self.base)).bearer_auth(KEY).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        (r.headers()["x-maas-endpoint"].to_str().unwrap().parse().unwrap(), r)
    }

    fn in_flight(&self) -> Vec<u64> {
        self.gw.snapshot().models["m"].endpoints.iter().map(|e| e.load.in_flight()).collect()
    }
}

#[tokio::test]
async fn least_busy_sends_new_calls_away_from_an_endpoint_holding_a_long_stream() {
    let slow = "/chunks/40/chunk-delay/50/v1";
    let (p, _mock, _rows) = fleet(app::types::Policy::LeastBusy, &[(1, slow), (2, slow), (3, slow)]).await;
    // A stream held open (its body unread) on whichever endpoint it was sent to.
    let (busy, held) = p.routed(true, json!({})).await;
    assert_eq!(p.in_flight().iter().sum::<u64>(), 1);
    let metrics = p.gw.metrics_text();
    assert_eq!(metrics.matches("maas_gateway_endpoint_in_flight{").count(), 3, "{metrics}");
    assert!(
        metrics.contains("model=\"m\"") && metrics.lines().any(|l| l.starts_with("maas_gateway_endpoint_in_flight{") && l.ends_with(" 1"))
    );
    for _ in 0..20 {
        let (to, r) = p.routed(false, json!({})).await;
        assert_ne!(to, busy, "a new call went to the endpoint holding the stream");
        assert_eq!(r.headers()["x-maas-tries"], "1");
        r.bytes().await.unwrap();
    }
    drop(held);
    for _ in 0..100 {
        if p.in_flight().iter().all(|&n| n == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.in_flight(), [0, 0, 0], "every count back to zero once the calls ended");
}

#[tokio::test]
async fn a_drained_endpoint_gets_no_new_call_while_its_stream_under_way_finishes() {
    let (p, _mock, mut rows) = fleet(app::types::Policy::RoundRobin, &[(1, "/chunks/10/chunk-delay/50/v1"), (2, "/v1")]).await;
    // Round robin from the first: the stream lands on endpoint 1.
    let (on, stream) = p.routed(true, json!({})).await;
    assert_eq!(on, 1);
    rows.endpoints.get_mut(&1).unwrap()[0].draining = true;
    p.republish(&rows, Some(p.gw.snapshot()));
    let metrics = p.gw.metrics_text();
    assert!(metrics.lines().any(|l| l.contains("state=\"draining\"") && l.ends_with(" 1")), "{metrics}");
    assert!(!metrics.contains("maas_gateway_endpoint_in_flight{"), "round-robin counts nothing");
    for _ in 0..10 {
        let (to, r) = p.routed(false, json!({})).await;
        assert_eq!(to, 2, "the drained endpoint got a new call");
        r.bytes().await.unwrap();
    }
    let text = stream.text().await.unwrap();
    assert!(text.contains("chunk 9") && text.trim_end().ends_with("[DONE]"), "the stream under way finished: {text}");
}

#[tokio::test]
async fn cache_affinity_keeps_each_conversation_on_one_endpoint_and_moves_only_a_removed_endpoints() {
    let urls: Vec<(i64, &str)> = vec![(1, "/v1"), (2, "/v1"), (3, "/v1"), (4, "/v1")];
    let (p, _mock, mut rows) = fleet(app::types::Policy::Affinity, &urls).await;
    let mut home: BTreeMap<u32, i64> = BTreeMap::new();
    for i in 0..1_000u32 {
        let key = i % 50;
        let (to, r) = p.routed(false, json!({"prompt_cache_key": format!("conversation-{key}")})).await;
        r.bytes().await.unwrap();
        assert_eq!(*home.entry(key).or_insert(to), to, "conversation {key} moved");
    }
    let used: std::collections::BTreeSet<i64> = home.values().copied().collect();
    assert_eq!(used.len(), 4, "the conversations spread over every endpoint: {home:?}");
    // Endpoint 3 removed: only its conversations move.
    rows.endpoints.get_mut(&1).unwrap().retain(|e| e.id != 3);
    p.republish(&rows, Some(p.gw.snapshot()));
    for (key, was) in &home {
        let (to, r) = p.routed(false, json!({"prompt_cache_key": format!("conversation-{key}")})).await;
        r.bytes().await.unwrap();
        if *was != 3 {
            assert_eq!(to, *was, "conversation {key} moved although its endpoint stayed");
        }
    }
}

#[tokio::test]
async fn fastest_sends_most_calls_to_the_fast_endpoint_and_a_probe_share_to_the_slow_one() {
    let (p, _mock, _rows) = fleet(app::types::Policy::Fastest, &[(1, "/delay/40/v1"), (2, "/v1")]).await;
    let mut to_slow = 0;
    for _ in 0..320 {
        let (to, r) = p.routed(false, json!({})).await;
        r.bytes().await.unwrap();
        to_slow += (to == 1) as u32;
    }
    // Measured once (warm-up), then about one call in 32 (half of the 1 in 16 that explore).
    assert!((1..=64).contains(&to_slow), "{to_slow} of 320 calls went to the slow endpoint");
}

#[tokio::test]
async fn an_upstream_429_fails_over_and_rests_that_endpoint_for_its_retry_after() {
    let (p, _mock, _rows) = fleet(app::types::Policy::RoundRobin, &[(1, "/status/429/v1"), (2, "/v1")]).await;
    let (to, r) = p.routed(false, json!({})).await;
    assert_eq!((to, r.headers()["x-maas-tries"].to_str().unwrap()), (2, "2"), "the 429 was failed over");
    r.bytes().await.unwrap();
    // Resting for the 2 s it asked: not tried at all meanwhile.
    for _ in 0..6 {
        let (to, r) = p.routed(false, json!({})).await;
        assert_eq!((to, r.headers()["x-maas-tries"].to_str().unwrap()), (2, "1"));
        r.bytes().await.unwrap();
    }
    assert!(p.gw.metrics_text().contains("status_429"), "counted as a failed try by its reason");
    // Back in rotation after its wait; alone, its 429 and its wait reach the caller.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let tried: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let (_, r) = p.routed(false, json!({})).await;
            v.push(r.headers()["x-maas-tries"].to_str().unwrap().to_owned());
        }
        v
    };
    assert!(tried.contains(&"2".to_owned()), "tried again once rested: {tried:?}");
    let (p1, _mock, _) = fleet(app::types::Policy::RoundRobin, &[(1, "/status/429/v1")]).await;
    let r = p1
        .http
        .post(format!("{}/v1/chat/completions", p1.base))
        .bearer_auth(KEY)
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()), (429, "2"));
}
