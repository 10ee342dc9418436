//! `maas mock-upstream`: a small OpenAI-compatible upstream for tests, benchmarks and the demo.
//!
//! Behaviour is chosen per endpoint by path segments before the operation, so one mock serves
//! many differently-behaving "endpoints":
//!   `/v1/chat/completions`                          normal
//!   `/status/503/v1/chat/completions`               answers 503 (OpenAI-shaped error body)
//!   `/delay/200/...`                                waits 200 ms before answering
//!   `/chunks/5/chunk-delay/100/...`                 streams 5 chunks, 100 ms apart
//!   `/drop/...`                                     drops the connection before answering
//!   `/drop-after/2/...`                             sends headers and 2 chunks, then drops it
//!   `/name/a/...`                                   labels replies ("from a") to tell endpoints apart
//!   `/size/1000000/...`                             answers chat with 1,000,000 characters (streams: 1,000 a chunk)
//! A chat request with `tools` and no tool result yet is answered with a call of its first tool
//! (`{"q": "mock"}`), streamed or not, with known usage (11 in, 6 out).
//! `/v1/messages` and `/v1/responses` answer natively (`mock_native.rs`); `/v1/rerank`,
//! `/v1/audio/speech` and `/v1/images/generations` as those models do (`mock_kinds.rs`).
//! It records what it received (`GET /_mock/requests`: path, model, Authorization, x-api-key,
//! anthropic-version and -beta, stream_options, the body) and counts
//! requests and streams the client cancelled before they finished, and the most calls it had
//! in flight at once, in all and per `/name/` (`GET /_mock/stats`): what a concurrency limit
//! must keep below its bound.
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct MockConfig {
    /// Default latency before answering, ms.
    pub latency_ms: u64,
    /// Default number of stream chunks and their spacing.
    pub chunks: u32,
    pub chunk_delay_ms: u64,
}

#[derive(Default)]
pub struct MockState {
    pub config: MockConfig,
    received: Mutex<Vec<Value>>,
    cancelled: AtomicU64,
    completed: AtomicU64,
    /// Per `/name/` label ("" without one): (in flight now, most ever at once). A stream is in
    /// flight until its last chunk or its cancel.
    flights: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
    /// The same over all names.
    flight_all: Mutex<(u64, u64)>,
    /// Recording costs a lock per request; benchmarks turn it off.
    pub record: bool,
}

pub fn router(config: MockConfig, record: bool) -> Router {
    let state = Arc::new(MockState { config, record, ..Default::default() });
    Router::new().fallback(handle).with_state(state)
}

#[derive(Default, Debug)]
struct Directives {
    status: Option<u16>,
    delay_ms: Option<u64>,
    chunks: Option<u32>,
    chunk_delay_ms: Option<u64>,
    drop: bool,
    drop_after: Option<u32>,
    name: Option<String>,
    /// Answer chat with this many characters of text (a stream: in pieces of 1,000).
    size: Option<usize>,
}

fn parse(path: &str) -> (Directives, String) {
    let mut d = Directives::default();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut i = 0;
    while i < segs.len() {
        let next = segs.get(i + 1).copied();
        match (segs[i], next) {
            ("status", Some(v)) => {
                d.status = v.parse().ok();
                i += 2
            }
            ("delay", Some(v)) => {
                d.delay_ms = v.parse().ok();
                i += 2
            }
            ("chunks", Some(v)) => {
                d.chunks = v.parse().ok();
                i += 2
            }
            ("chunk-delay", Some(v)) => {
                d.chunk_delay_ms = v.parse().ok();
                i += 2
            }
            ("name", Some(v)) => {
                d.name = Some(v.to_owned());
                i += 2
            }
            ("size", Some(v)) => {
                d.size = v.parse().ok();
                i += 2
            }
            ("drop-after", Some(v)) => {
                d.drop_after = v.parse().ok();
                i += 2
            }
            ("drop", _) => {
                d.drop = true;
                i += 1
            }
            _ => break,
        }
    }
    (d, format!("/{}", segs[i..].join("/")))
}

async fn handle(State(st): State<Arc<MockState>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let path = uri.path().to_owned();
    if method == Method::GET && path == "/_mock/requests" {
        return axum::Json(Value::Array(st.received.lock().clone())).into_response();
    }
    if method == Method::GET && path == "/_mock/stats" {
        let n = st.received.lock().len();
        let peaks: serde_json::Map<String, Value> = st.flights.lock().iter().map(|(k, (_, peak))| (k.clone(), json!(peak))).collect();
        let (in_flight, peak) = *st.flight_all.lock();
        return axum::Json(
            json!({"requests": n, "cancelled": st.cancelled.load(Ordering::SeqCst), "completed": st.completed.load(Ordering::SeqCst),
            "in_flight": in_flight, "peak_in_flight": peak, "peaks": peaks}),
        )
        .into_response();
    }
    let (d, op) = parse(&path);
    // Counted when recording (tests); benchmarks skip the two locks.
    let flight = st.record.then(|| Flight::enter(&st, d.name.clone().unwrap_or_default()));
    // A form (an upload) is read as it streams in: its text fields and a digest of each file.
    let req: Value = match crate::mock_kinds::boundary(&headers) {
        Some(b) => crate::mock_kinds::read_form(body, b).await,
        None => serde_json::from_slice(&axum::body::to_bytes(body, 256 << 20).await.unwrap_or_default()).unwrap_or(Value::Null),
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
    if st.record {
        let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
        st.received.lock().push(json!({"path": path, "model": model, "authorization": header("authorization"), "name": d.name,
            "stream_options": req.get("stream_options"), "x_api_key": header("x-api-key"),
            "anthropic_version": header("anthropic-version"), "anthropic_beta": header("anthropic-beta"), "body": req}));
    }
    let delay = d.delay_ms.unwrap_or(st.config.latency_ms);
    if delay > 0 {
        // Dropped mid-wait (the caller went away) counts as cancelled.
        let mut waiting = CancelGuard { st: st.clone(), done: false, counts_completion: false };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        waiting.done = true;
    }
    if let Some(code) = d.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A rate-limited upstream says how long to wait, as OpenAI does.
        let wait: &[(&str, &str)] = if code == 429 { &[("retry-after-ms", "2000"), ("retry-after", "2")] } else { &[] };
        return (
            status,
            wait.iter()
                .map(|(k, v)| (axum::http::HeaderName::from_static(k), axum::http::HeaderValue::from_static(v)))
                .collect::<axum::http::HeaderMap>(),
            axum::Json(json!({"error": {"message": format!("mock error {code}"), "type": "server_error", "param": null, "code": null}})),
        )
            .into_response();
    }
    if d.drop {
        let s = futures_util::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("mock drop")) });
        return Response::new(Body::from_stream(s));
    }
    if let Some(n) = d.drop_after {
        // Headers and `n` chunks reach the caller, then the connection dies mid-answer.
        let s = async_stream::stream! {
            for i in 0..n {
                yield Ok::<Bytes, std::io::Error>(Bytes::from(format!("data: {{\"chunk\": {i}}}\n\n")));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            yield Err(std::io::Error::other("mock drop"));
        };
        return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(s)).expect("static headers");
    }
    let from = d.name.clone().map(|n| format!(" from {n}")).unwrap_or_default();
    let created = app::ssr::now();
    match op.as_str() {
        p if p.ends_with("/messages") => crate::mock_native::messages(&req, &model, &from),
        p if p.ends_with("/rerank") => crate::mock_kinds::rerank(&req, &model),
        p if p.ends_with("/audio/speech") => crate::mock_kinds::speech(&req),
        p if p.ends_with("/images/generations") || p.ends_with("/images/edits") => crate::mock_kinds::images(&req, created),
        p if p.ends_with("/audio/transcriptions") => crate::mock_kinds::transcription(&req, "transcript"),
        p if p.ends_with("/audio/translations") => crate::mock_kinds::transcription(&req, "translation"),
        p if p.ends_with("/responses") => crate::mock_native::responses(&req, &model, &from, created),
        "/v1/models" | "/models" => axum::Json(json!({"object": "list", "data": [{"id": "mock-model", "object": "model", "created": created, "owned_by": "mock"}]})).into_response(),
        p if p.ends_with("/chat/completions") => {
            // Given tools and no tool result yet, it calls the first tool (`{"q": "mock"}`).
            let last_is_tool = req.pointer("/messages").and_then(Value::as_array).and_then(|m| m.last()).and_then(|m| m.get("role")) == Some(&json!("tool"));
            let tool = req.pointer("/tools/0/function/name").and_then(Value::as_str).filter(|_| !last_is_tool).map(str::to_owned);
            if let Some(tool) = tool {
                let usage = json!({"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17});
                if req.get("stream").and_then(Value::as_bool) == Some(true) {
                    let with_usage = req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
                    let chunk = |delta: Value, finish: Value| format!("data: {}\n\n", json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}));
                    let mut events = vec![
                        chunk(json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_mock", "type": "function", "function": {"name": tool, "arguments": ""}}]}), Value::Null),
                        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\": "}}]}), Value::Null),
                        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"mock\"}"}}]}), Value::Null),
                        chunk(json!({}), json!("tool_calls")),
                    ];
                    if with_usage {
                        events.push(format!("data: {}\n\n", json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage})));
                    }
                    events.push("data: [DONE]\n\n".into());
                    return Response::builder().header("content-type", "text/event-stream").body(Body::from(events.concat())).expect("static headers");
                }
                return axum::Json(json!({
                    "id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_mock", "type": "function", "function": {"name": tool, "arguments": "{\"q\": \"mock\"}"}}]}, "finish_reason": "tool_calls"}],
                    "usage": usage
                })).into_response();
            }
            if req.get("stream").and_then(Value::as_bool) == Some(true) {
                if let Some(size) = d.size {
                    let usage = req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
                    return big_sse(model, size, usage);
                }
                let chunks = d.chunks.unwrap_or(if st.config.chunks > 0 { st.config.chunks } else { 3 });
                let gap = Duration::from_millis(d.chunk_delay_ms.unwrap_or(st.config.chunk_delay_ms));
                let usage = req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
                return sse(st.clone(), model, from, chunks, gap, usage, flight);
            }
            axum::Json(json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": d.size.map_or_else(|| format!("Hello{from}!"), |n| "x".repeat(n))}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            })).into_response()
        }
        p if p.ends_with("/completions") => axum::Json(json!({
            "id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": format!("Hello{from}!"), "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        })).into_response(),
        p if p.ends_with("/embeddings") => {
            let n = match req.get("input") { Some(Value::Array(a)) => a.len(), _ => 1 };
            // Input i gets [i + 1/8, i + 2/8, …, i + 1]: exact in float32, so a client can check
            // order and decoding. The official SDKs ask for base64 (little-endian float32) unless
            // told otherwise, as OpenAI and vLLM answer it.
            let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
            let data: Vec<Value> = (0..n)
                .map(|i| {
                    let v: Vec<f32> = (1..=8).map(|k| i as f32 + k as f32 / 8.0).collect();
                    let embedding = if base64 { json!(b64(&v)) } else { json!(v) };
                    json!({"object": "embedding", "index": i, "embedding": embedding})
                })
                .collect();
            axum::Json(json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 3, "total_tokens": 3}})).into_response()
        }
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"message": format!("mock has no route {path}"), "type": "invalid_request_error", "param": null, "code": null}}))).into_response(),
    }
}

/// A call in flight, counted from its arrival until its answer is over (dropped).
struct Flight {
    st: Arc<MockState>,
    name: String,
}

impl Flight {
    fn enter(st: &Arc<MockState>, name: String) -> Self {
        let mut all = st.flight_all.lock();
        all.0 += 1;
        all.1 = all.1.max(all.0);
        drop(all);
        let mut flights = st.flights.lock();
        let f = flights.entry(name.clone()).or_default();
        f.0 += 1;
        f.1 = f.1.max(f.0);
        Flight { st: st.clone(), name }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.st.flight_all.lock().0 -= 1;
        if let Some(f) = self.st.flights.lock().get_mut(&self.name) {
            f.0 -= 1;
        }
    }
}

/// Counts a wait or a stream as cancelled unless it ran to the end (and a finished stream as
/// completed).
struct CancelGuard {
    st: Arc<MockState>,
    done: bool,
    counts_completion: bool,
}
impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.st.cancelled.fetch_add(1, Ordering::SeqCst);
        } else if self.counts_completion {
            self.st.completed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A stream of `size` characters in pieces of 1,000 (`/size/N`), for memory measurements.
fn big_sse(model: String, size: usize, usage: bool) -> Response {
    let s = async_stream::stream! {
        let piece = "x".repeat(1_000);
        for _ in 0..size / 1_000 {
            let c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            yield Ok::<Bytes, std::io::Error>(Bytes::from(format!("data: {c}\n\n")));
        }
        let end = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        yield Ok(Bytes::from(format!("data: {end}\n\n")));
        if usage {
            let u = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model, "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": size / 4, "total_tokens": 5 + size / 4}});
            yield Ok(Bytes::from(format!("data: {u}\n\n")));
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    };
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(s)).expect("static headers")
}

fn sse(st: Arc<MockState>, model: String, from: String, chunks: u32, gap: Duration, usage: bool, flight: Option<Flight>) -> Response {
    let s = async_stream::stream! {
        let _flight = flight;
        let mut guard = CancelGuard { st, done: false, counts_completion: true };
        let created = app::ssr::now();
        for i in 0..chunks {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let delta = if i == 0 { json!({"role": "assistant", "content": format!("chunk {i}{from}")}) } else { json!({"content": format!(" chunk {i}")}) };
            let c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
            yield Ok::<Bytes, std::io::Error>(Bytes::from(format!("data: {c}\n\n")));
        }
        let end = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        yield Ok(Bytes::from(format!("data: {end}\n\n")));
        if usage {
            let u = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks}});
            yield Ok(Bytes::from(format!("data: {u}\n\n")));
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
        guard.done = true;
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(s))
        .expect("static headers")
}

/// `v` as OpenAI's base64 embedding encoding: the little-endian float32 bytes, base64 (standard
/// alphabet, padded).
fn b64(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn directives_come_before_the_operation() {
        let (d, op) = super::parse("/name/a/status/503/chunks/4/chunk-delay/50/v1/chat/completions");
        assert_eq!(
            (d.name.as_deref(), d.status, d.chunks, d.chunk_delay_ms, op.as_str()),
            (Some("a"), Some(503), Some(4), Some(50), "/v1/chat/completions")
        );
        assert!(super::parse("/drop/chat/completions").0.drop);
        assert_eq!(super::parse("/drop-after/2/v1/chat/completions").0.drop_after, Some(2));
    }
}
