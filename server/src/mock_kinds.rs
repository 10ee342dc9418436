//! The mock upstream's other model kinds, with known usage: rerank (`/rerank`, the Cohere /
//! Jina / vLLM shape, `prompt_tokens` 3 per document), speech (`/audio/speech`: audio bytes
//! streamed in four pieces, 1,000 bytes each, byte `i` of the whole being `i % 251`), image
//! generation (`/images/generations`: `n` tiny images, `usage` 7 input and 100 output tokens
//! per image, as OpenAI's image models report it).
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::Duration;

/// The audio the mock speaks: 4,000 bytes.
pub fn speech_bytes() -> Vec<u8> {
    (0..4_000u32).map(|i| (i % 251) as u8).collect()
}

pub fn rerank(req: &Value, model: &str) -> Response {
    let docs: Vec<String> = req
        .get("documents")
        .and_then(Value::as_array)
        .map(|d| d.iter().map(|d| d.as_str().or_else(|| d.get("text").and_then(Value::as_str)).unwrap_or("").to_owned()).collect())
        .unwrap_or_default();
    let query = req.get("query").and_then(Value::as_str).unwrap_or("");
    // Scored by shared characters with the query: deterministic, and different per document.
    let mut results: Vec<(usize, f64)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (i, d.chars().filter(|c| query.contains(*c)).count() as f64 / (d.chars().count().max(1) as f64)))
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top = req.get("top_n").and_then(Value::as_u64).map_or(results.len(), |n| n as usize);
    let with_docs = req.get("return_documents").and_then(Value::as_bool).unwrap_or(true);
    let results: Vec<Value> = results
        .into_iter()
        .take(top)
        .map(|(i, s)| {
            let mut r = json!({"index": i, "relevance_score": s});
            if with_docs {
                r["document"] = json!({"text": docs[i]});
            }
            r
        })
        .collect();
    let tokens = 3 * docs.len();
    axum::Json(json!({"id": "rerank-mock", "model": model, "results": results, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
        .into_response()
}

pub fn speech(req: &Value) -> Response {
    let kind = match req.get("response_format").and_then(Value::as_str) {
        Some("wav") => "audio/wav",
        Some("opus") => "audio/ogg",
        Some("pcm") => "audio/pcm",
        _ => "audio/mpeg",
    };
    let audio = speech_bytes();
    let s = async_stream::stream! {
        for piece in audio.chunks(1_000) {
            yield Ok::<Bytes, std::io::Error>(Bytes::copy_from_slice(piece));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    Response::builder().header("content-type", kind).body(Body::from_stream(s)).expect("static headers")
}

pub fn images(req: &Value, created: i64) -> Response {
    let n = req.get("n").and_then(Value::as_u64).unwrap_or(1).min(10);
    let url = req.get("response_format").and_then(Value::as_str) == Some("url");
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if url {
                json!({"url": format!("https://images.example/mock-{i}.png")})
            } else {
                json!({"b64_json": format!("bW9jay1pbWFnZS0{i}")})
            }
        })
        .collect();
    axum::Json(json!({"created": created, "data": data,
        "usage": {"input_tokens": 7, "output_tokens": 100 * n, "total_tokens": 7 + 100 * n, "input_tokens_details": {"text_tokens": 7, "image_tokens": 0}}}))
    .into_response()
}
