//! The mock upstream's other model kinds, with known usage: rerank (`/rerank`, the Cohere /
//! Jina / vLLM shape, `prompt_tokens` 3 per document), speech (`/audio/speech`: audio bytes
//! streamed in four pieces, 1,000 bytes each, byte `i` of the whole being `i % 251`), image
//! generation (`/images/generations`: `n` tiny images, `usage` 7 input and 100 output tokens
//! per image, as OpenAI's image models report it; edits too, from a form), transcription and
//! translation (`/audio/transcriptions`, `/audio/translations`: a form with the audio, answered
//! with its length and `usage.seconds` of a WAV's duration, rounded up, or of 16,000 bytes a
//! second for anything else).
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
    // A number in JSON, a string in a form (edits).
    let n = req.get("n").and_then(|n| n.as_u64().or_else(|| n.as_str()?.parse().ok())).unwrap_or(1).min(10);
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

/// The boundary of a `multipart/form-data` request.
pub fn boundary(headers: &axum::http::HeaderMap) -> Option<String> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE)?.to_str().ok()?;
    ct.to_ascii_lowercase().starts_with("multipart/form-data").then(|| multer::parse_boundary(ct).ok()).flatten()
}

/// A form as JSON: each text field as a string, each file as `{"filename", "content_type",
/// "bytes", "sha256", "seconds"}` (read as it streams in, never held whole).
pub async fn read_form(body: Body, boundary: String) -> Value {
    use sha2::Digest;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut out = serde_json::Map::new();
    while let Ok(Some(mut field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_owned();
        let Some(filename) = field.file_name().map(str::to_owned) else {
            out.insert(name, Value::String(field.text().await.unwrap_or_default()));
            continue;
        };
        let content_type = field.content_type().map(|m| m.to_string());
        let (mut digest, mut len, mut head) = (sha2::Sha256::new(), 0u64, Vec::new());
        while let Ok(Some(chunk)) = field.chunk().await {
            digest.update(&chunk);
            len += chunk.len() as u64;
            if head.len() < 44 {
                head.extend_from_slice(&chunk[..chunk.len().min(44 - head.len())]);
            }
        }
        out.insert(
            name,
            json!({"filename": filename, "content_type": content_type, "bytes": len,
            "sha256": hex::encode(digest.finalize()), "seconds": seconds_of(&head, len)}),
        );
    }
    Value::Object(out)
}

/// A canonical WAV's duration (its data over its byte rate), else 16,000 bytes a second;
/// rounded up.
fn seconds_of(head: &[u8], len: u64) -> u64 {
    let wav = head.len() >= 44 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE";
    let (data, rate) = match wav {
        true => (len.saturating_sub(44), u32::from_le_bytes([head[28], head[29], head[30], head[31]]) as u64),
        false => (len, 16_000),
    };
    data.div_ceil(rate.max(1))
}

/// A transcription (or translation) of the form's `file`.
pub fn transcription(req: &Value, what: &str) -> Response {
    let file = req.get("file").cloned().unwrap_or(Value::Null);
    let bytes = file.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    let seconds = file.get("seconds").and_then(Value::as_u64).unwrap_or(0);
    let text = format!("mock {what} of {bytes} bytes");
    let usage = json!({"type": "duration", "seconds": seconds});
    match req.get("response_format").and_then(Value::as_str) {
        Some("text" | "srt" | "vtt") => {
            Response::builder().header("content-type", "text/plain; charset=utf-8").body(Body::from(text)).expect("static headers")
        }
        Some("verbose_json") => axum::Json(
            json!({"task": what, "language": "english", "duration": seconds as f64, "text": text, "segments": [], "usage": usage}),
        )
        .into_response(),
        _ => axum::Json(json!({"text": text, "usage": usage})).into_response(),
    }
}
