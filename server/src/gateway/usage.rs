//! Token usage of a call, read from the upstream's answer as it passes through to the client
//! (the meter, `meter.rs`, records it). Never buffered whole:
//!
//! - a JSON answer (chat, completions, embeddings): the `usage` object is the answer's last
//!   member in every OpenAI-compatible server we know (OpenAI, vLLM, TGI, Ollama, DeepSeek), so
//!   only its first and last frames are kept (shared, not copied: most answers are one frame)
//!   and searched when the answer ends, the last [`KEEP`] bytes of the one before the last too
//!   when the usage object straddles them;
//! - a stream: each SSE event with a `usage` object is parsed (the others are passed on
//!   untouched, found by one SIMD substring search per frame). When the gateway asked for
//!   `stream_options.include_usage` on the client's behalf, the usage-only event it added is
//!   cut from what the client receives, so the client sees the stream it asked for.
//!
//! No usage (an upstream without it, a stream cut short) is `None`: unknown, never 0.
use axum::body::Bytes;
use memchr::memmem;
use serde::Deserialize;

/// Bytes searched of a JSON answer's frame before its last, when the last alone holds no usage.
pub const KEEP: usize = 2048;

// The searchers, built once (building one per call was ~300 instructions per request).
static USAGE_KEY: &[u8] = b"\"usage\"";
static FIND_USAGE: std::sync::LazyLock<memmem::Finder<'static>> = std::sync::LazyLock::new(|| memmem::Finder::new(USAGE_KEY));

fn has_usage_key(b: &[u8]) -> bool {
    FIND_USAGE.find(b).is_some()
}

/// Input, output and total tokens, as the upstream reported them, and the input tokens read
/// from the upstream's prompt cache (`cached`, part of `input`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub total: u64,
    pub cached: u64,
    /// Input tokens written to the prompt cache (Anthropic's `cache_creation_input_tokens`),
    /// part of the input.
    pub cache_write: u64,
    /// Seconds of audio (transcriptions), rounded up; 0 when not reported.
    pub seconds: u64,
}

impl Tokens {
    /// Two reports of one answer's usage as one. Anthropic's streams report input in
    /// `message_start` and the output so far in each `message_delta`, each count cumulative
    /// (and vLLM's continuous usage is too): the larger of each is the answer's.
    pub fn merged(self, other: Tokens) -> Tokens {
        let (input, output) = (self.input.max(other.input), self.output.max(other.output));
        Tokens {
            input,
            output,
            total: self.total.max(other.total).max(input + output),
            cached: self.cached.max(other.cached),
            cache_write: self.cache_write.max(other.cache_write),
            seconds: self.seconds.max(other.seconds),
        }
    }
}

/// The usage object of every API we read: OpenAI's chat and completions (prompt / completion /
/// total, cached in `prompt_tokens_details`), embeddings (prompt and total), Responses (input /
/// output, cached in `input_tokens_details`), Anthropic's Messages (input / output, which leave
/// out what was read from and written to the cache: `cache_read_input_tokens` and
/// `cache_creation_input_tokens`).
#[derive(Default, Deserialize)]
struct UsageObject {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    /// Transcriptions' `{"type": "duration", "seconds": …}`.
    seconds: Option<f64>,
}

#[derive(Default, Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
}

impl UsageObject {
    fn tokens(&self) -> Option<Tokens> {
        let input = self.prompt_tokens.or(self.input_tokens);
        let output = self.completion_tokens.or(self.output_tokens);
        let seconds = self.seconds.filter(|s| s.is_finite() && *s >= 0.0).map(|s| s.ceil() as u64);
        if input.is_none() && output.is_none() && self.total_tokens.is_none() && seconds.is_none() {
            return None;
        }
        // Anthropic's cache reads and writes are input the upstream processed: counted in the
        // input (as OpenAI's prompt_tokens counts its cached tokens), never in place of it.
        let anthropic_cache = self.cache_read_input_tokens.unwrap_or(0) + self.cache_creation_input_tokens.unwrap_or(0);
        let (input, output) = (input.unwrap_or(0) + anthropic_cache, output.unwrap_or(0));
        let details = self.prompt_tokens_details.as_ref().or(self.input_tokens_details.as_ref()).and_then(|d| d.cached_tokens);
        let cached = details.or(self.cache_read_input_tokens).unwrap_or(0);
        Some(Tokens {
            input,
            output,
            total: self.total_tokens.unwrap_or(input + output),
            cached,
            cache_write: self.cache_creation_input_tokens.unwrap_or(0),
            seconds: seconds.unwrap_or(0),
        })
    }
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn ws_end(b: &[u8], i: usize) -> usize {
    i + b[i.min(b.len())..].iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')).count()
}

/// The object after the last `"usage":` key of `bytes` that holds one (`null` and cut-off
/// objects are skipped). A `"usage"` with its quotes unescaped followed by `:` can only be an
/// object key: inside a JSON string the quotes would be escaped.
pub fn last_usage(bytes: &[u8]) -> Option<Tokens> {
    // Forward, SIMD (the reverse searcher has none: ~800 instructions for a chat answer, this
    // ~60), then the occurrences from the last: an answer holds one or two.
    let found: smallvec::SmallVec<[usize; 4]> = FIND_USAGE.find_iter(bytes).collect();
    found.into_iter().rev().find_map(|at| {
        let colon = ws_end(bytes, at + USAGE_KEY.len());
        if bytes.get(colon) != Some(&b':') {
            return None;
        }
        let rest = &bytes[ws_end(bytes, colon + 1)..];
        if rest.first() != Some(&b'{') {
            return None;
        }
        quick_usage(rest).or_else(|| {
            let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<UsageObject>();
            values.next()?.ok()?.tokens()
        })
    })
}

/// The usage object at the start of `b` read by hand (serde's general machinery was ~900
/// instructions for it): its members' keys, the counts we know, the other values skipped.
/// `None` for anything it does not expect (escapes in a key, a count that is not a plain
/// integer, a cut-off object); the caller then asks serde, which is exact.
fn quick_usage(b: &[u8]) -> Option<Tokens> {
    let mut u = UsageObject::default();
    let mut i = 1; // after `{`
    loop {
        i = ws_end(b, i);
        match b.get(i)? {
            b'}' => return u.tokens(),
            b'"' => {}
            _ => return None,
        }
        let key_end = i + 1 + b[i + 1..].iter().position(|&c| c == b'"' || c == b'\\')?;
        if b[key_end] == b'\\' {
            return None;
        }
        let key = &b[i + 1..key_end];
        i = ws_end(b, key_end + 1);
        if b.get(i)? != &b':' {
            return None;
        }
        i = ws_end(b, i + 1);
        if matches!(key, b"prompt_tokens_details" | b"input_tokens_details") && b.get(i) == Some(&b'{') {
            // The cached count, nested: this small object through serde.
            let end = skip_value(b, i)?;
            let details: Details = serde_json::from_slice(&b[i..end]).ok()?;
            let slot = if key == b"prompt_tokens_details" { &mut u.prompt_tokens_details } else { &mut u.input_tokens_details };
            *slot = Some(details);
            i = end;
        } else {
            i = count(&mut u, key, b, i)?;
        }
        i = ws_end(b, i);
        match b.get(i)? {
            b',' => i += 1,
            b'}' => return u.tokens(),
            _ => return None,
        }
    }
}

/// Reads the value at `b[i]` of member `key` into its count in `u` (a plain integer, or `null`),
/// or skips it when it is not one we count; the index after it. `None` for a count that is not a
/// plain integer (serde decides then).
fn count(u: &mut UsageObject, key: &[u8], b: &[u8], mut i: usize) -> Option<usize> {
    let slot = match key {
        b"prompt_tokens" => Some(&mut u.prompt_tokens),
        b"completion_tokens" => Some(&mut u.completion_tokens),
        b"total_tokens" => Some(&mut u.total_tokens),
        b"input_tokens" => Some(&mut u.input_tokens),
        b"output_tokens" => Some(&mut u.output_tokens),
        b"cache_read_input_tokens" => Some(&mut u.cache_read_input_tokens),
        b"cache_creation_input_tokens" => Some(&mut u.cache_creation_input_tokens),
        // A fraction, maybe: serde reads it.
        b"seconds" => return None,
        _ => None,
    };
    match slot {
        Some(slot) if b.get(i)?.is_ascii_digit() => {
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            // Not a plain integer (a fraction, an exponent): serde decides.
            if matches!(b.get(i + digits)?, b'.' | b'e' | b'E') {
                return None;
            }
            *slot = Some(std::str::from_utf8(&b[i..i + digits]).ok()?.parse().ok()?);
            i += digits;
        }
        Some(slot) if b[i..].starts_with(b"null") => {
            *slot = None;
            i += 4;
        }
        Some(_) => return None,
        None => i = skip_value(b, i)?,
    }
    Some(i)
}

/// The index just after the JSON value starting at `b[i]` (strings, nested objects and
/// arrays, numbers and literals), or `None` if it is cut off.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match *b.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            b',' | b'}' | b']' if depth == 0 => return Some(i),
            _ => i += 1,
        }
        // A top-level value ends at its separator, whitespace, or the input's end.
        if depth == 0 && b.get(i).is_none_or(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace()) {
            return Some(i);
        }
    }
}

/// The ends of a JSON answer, kept as it streams past: its last frame and the one before
/// (refcounted slices of what was sent on, never copies), and its first [`KEEP`] bytes (the
/// first frame itself; copied only when the answer starts with frames smaller than that).
#[derive(Default)]
pub struct JsonEnds {
    head: Head,
    prev: Option<Bytes>,
    last: Option<Bytes>,
}

#[derive(Default)]
enum Head {
    #[default]
    Empty,
    Frame(Bytes),
    Joined(Vec<u8>),
}

impl JsonEnds {
    pub fn feed(&mut self, frame: &Bytes) {
        match &mut self.head {
            Head::Empty => {
                self.head = Head::Frame(frame.clone());
                return;
            }
            Head::Frame(f) if f.len() < KEEP => {
                let mut joined = f.to_vec();
                joined.extend_from_slice(&frame[..frame.len().min(KEEP - joined.len())]);
                self.head = Head::Joined(joined);
            }
            Head::Joined(j) if j.len() < KEEP => {
                let take = frame.len().min(KEEP - j.len());
                j.extend_from_slice(&frame[..take]);
            }
            Head::Frame(_) | Head::Joined(_) => {}
        }
        self.prev = self.last.replace(frame.clone());
    }

    fn head(&self) -> Option<&[u8]> {
        match &self.head {
            Head::Empty => None,
            Head::Frame(f) => Some(f),
            Head::Joined(j) => Some(j),
        }
    }

    /// The answer's usage: at its end (the last frame, or across the last two), else at its
    /// start.
    pub fn usage(&self) -> Option<Tokens> {
        let Some(last) = self.last.as_ref() else {
            // One frame: the whole answer.
            return self.head().and_then(last_usage);
        };
        if let Some(t) = last_usage(last) {
            return Some(t);
        }
        let before = self.prev.as_deref().or_else(|| self.head())?;
        let mut joined = before[before.len().saturating_sub(KEEP)..].to_vec();
        joined.extend_from_slice(last);
        last_usage(&joined).or_else(|| self.head().and_then(|h| last_usage(&h[..h.len().min(KEEP)])))
    }
}

/// An SSE stream's usage, and the cut of the usage event the gateway injected.
pub struct SseUsage {
    /// Cut the usage-only event: the client did not ask for it, the gateway did.
    strip: bool,
    /// An event split across frames: its start, until its end arrives.
    partial: Vec<u8>,
    pub tokens: Option<Tokens>,
}

impl SseUsage {
    pub fn new(strip: bool) -> Self {
        SseUsage { strip, partial: Vec::new(), tokens: None }
    }

    /// What of `frame` goes on to the client: its whole events (an event split across frames
    /// waits for its end, so a `usage` key split by the network is still found). A frame of
    /// whole events without `"usage"` (nearly every one) is passed on as it is, uncopied.
    pub fn frame(&mut self, frame: Bytes) -> Bytes {
        let data = if self.partial.is_empty() {
            frame
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(&frame);
            Bytes::from(joined)
        };
        let whole_end = last_event_end(&data);
        if whole_end < data.len() {
            self.partial = data[whole_end..].to_vec();
        }
        let whole = data.slice(..whole_end);
        if !has_usage_key(&whole) {
            return whole;
        }
        let mut out = Vec::with_capacity(whole.len());
        let mut rest = &whole[..];
        while let Some(end) = event_end(rest) {
            let (event, after) = rest.split_at(end);
            self.pass(event, &mut out);
            rest = after;
        }
        Bytes::from(out)
    }

    /// Reads one whole event (blank line included) and puts what of it the client gets in `out`.
    fn pass(&mut self, event: &[u8], out: &mut Vec<u8>) {
        match last_usage(event) {
            Some(tokens) => {
                self.tokens = Some(self.tokens.map_or(tokens, |t| t.merged(tokens)));
                // The usage-only event the gateway asked for: its `choices` is empty (OpenAI's
                // and vLLM's shape), however the upstream spaces its JSON.
                if !(self.strip && empty_choices(event)) {
                    out.extend_from_slice(event);
                }
            }
            // Asked for usage, an OpenAI-style upstream adds `"usage": null` to every other
            // chunk: cut, so the client gets each chunk as it would have without the injection.
            None if self.strip => cut_null_usage(event, out),
            None => out.extend_from_slice(event),
        }
    }

    /// An event split across frames is waiting for its end.
    pub fn holds(&self) -> bool {
        !self.partial.is_empty()
    }

    /// The stream ended: an event still held (no blank line after it) goes out as it came.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = std::mem::take(&mut self.partial);
        if rest.is_empty() {
            return None;
        }
        if !has_usage_key(&rest) {
            return Some(Bytes::from(rest));
        }
        let mut out = Vec::with_capacity(rest.len());
        self.pass(&rest, &mut out);
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// Whether the event's `"choices"` is an empty array (`[]`, with any JSON whitespace).
fn empty_choices(event: &[u8]) -> bool {
    memmem::find_iter(event, b"\"choices\"").any(|at| {
        let colon = ws_end(event, at + 9);
        if event.get(colon) != Some(&b':') {
            return false;
        }
        let open = ws_end(event, colon + 1);
        event.get(open) == Some(&b'[') && event.get(ws_end(event, open + 1)) == Some(&b']')
    })
}

/// Copies `event` to `out` without its `"usage": null` members (the comma that joined each to
/// its object included).
fn cut_null_usage(event: &[u8], out: &mut Vec<u8>) {
    let mut from = 0;
    for at in FIND_USAGE.find_iter(event) {
        if at < from {
            continue;
        }
        let colon = ws_end(event, at + USAGE_KEY.len());
        if event.get(colon) != Some(&b':') {
            continue;
        }
        let value = ws_end(event, colon + 1);
        if !event[value..].starts_with(b"null") {
            continue;
        }
        let end = value + 4;
        // The member and the comma before it (`, "usage": null`), or, first in its object, the
        // comma after it (`"usage": null, `).
        let before = event[from..at].iter().rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r')).map(|i| from + i);
        let (cut_from, cut_to) = match before {
            Some(i) if event[i] == b',' => (i, end),
            _ => {
                let after = ws_end(event, end);
                if event.get(after) == Some(&b',') {
                    (at, ws_end(event, after + 1))
                } else {
                    (at, end)
                }
            }
        };
        out.extend_from_slice(&event[from..cut_from]);
        from = cut_to;
    }
    out.extend_from_slice(&event[from..]);
}

/// The end of the last whole event of `b` (after its blank line), 0 when there is none.
fn last_event_end(b: &[u8]) -> usize {
    // Nearly every frame of a stream is whole events: no search.
    if b.ends_with(b"\n\n") || b.ends_with(b"\r\n\r\n") {
        return b.len();
    }
    let lf = memmem::rfind(b, b"\n\n").map_or(0, |i| i + 2);
    let crlf = memmem::rfind(b, b"\r\n\r\n").map_or(0, |i| i + 4);
    lf.max(crlf)
}

/// The end of the first event of `b` (after its blank line: `\n\n` or `\r\n\r\n`).
pub fn event_end(b: &[u8]) -> Option<usize> {
    let lf = memmem::find(b, b"\n\n").map(|i| i + 2);
    let crlf = memmem::find(b, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// For a streaming request, the `stream_options` that ask the upstream for the usage chunk
/// when the client did not: `Some(new value)` to forward instead, or `None` when it already
/// asked. The caller's own `stream_options` members are kept.
pub fn with_include_usage(stream_options: Option<&serde_json::value::RawValue>) -> Option<String> {
    let mut opts: serde_json::Map<String, serde_json::Value> = match stream_options {
        Some(raw) => match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(serde_json::Value::Object(m)) => m,
            // Not an object: the upstream will say what is wrong with it; leave it alone.
            Ok(_) | Err(_) => return None,
        },
        None => serde_json::Map::new(),
    };
    if opts.get("include_usage").and_then(serde_json::Value::as_bool) == Some(true) {
        return None;
    }
    opts.insert("include_usage".into(), serde_json::Value::Bool(true));
    Some(serde_json::Value::Object(opts).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = r#"{"id":"x","choices":[{"message":{"content":"the \"usage\": {\"prompt_tokens\": 99}"}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

    #[test]
    fn cached_tokens_are_read_apart_in_each_apis_own_way() {
        // OpenAI's chat: cached inside prompt_tokens.
        let chat = br#"{"usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0}}}"#;
        assert_eq!(last_usage(chat), Some(Tokens { input: 12, output: 3, total: 15, cached: 8, cache_write: 0, seconds: 0 }));
        // Responses: cached inside input_tokens.
        let responses = br#"{"usage":{"input_tokens":8,"input_tokens_details":{"cached_tokens":2},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":11}}"#;
        assert_eq!(last_usage(responses), Some(Tokens { input: 8, output: 3, total: 11, cached: 2, cache_write: 0, seconds: 0 }));
        // Anthropic: cache reads and writes outside input_tokens, added to the input.
        let messages = br#"{"usage":{"input_tokens":9,"output_tokens":4,"cache_read_input_tokens":3,"cache_creation_input_tokens":5}}"#;
        assert_eq!(last_usage(messages), Some(Tokens { input: 17, output: 4, total: 21, cached: 3, cache_write: 5, seconds: 0 }));
        // The same through serde (a count the hand reader leaves to it).
        let odd = br#"{"usage":{"input_tokens":9.0,"output_tokens":4,"cache_read_input_tokens":3}}"#;
        assert_eq!(last_usage(odd), None, "a fraction is no count");
    }

    #[test]
    fn an_anthropic_streams_usage_is_its_start_and_its_last_delta() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1,\"cache_read_input_tokens\":3}}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":4}}\n\n",
        );
        let mut sse = SseUsage::new(false);
        let out = sse.frame(Bytes::from_static(stream.as_bytes()));
        assert_eq!(&out[..], stream.as_bytes(), "passed on untouched");
        assert_eq!(sse.tokens, Some(Tokens { input: 12, output: 4, total: 16, cached: 3, cache_write: 0, seconds: 0 }));
    }

    #[test]
    fn the_answers_own_usage_object_not_a_quoted_one() {
        assert_eq!(last_usage(CHAT.as_bytes()), Some(Tokens { input: 5, output: 2, total: 7, cached: 0, cache_write: 0, seconds: 0 }));
        // Embeddings: prompt and total only.
        assert_eq!(
            last_usage(br#"{"data":[],"usage":{"prompt_tokens":3,"total_tokens":3}}"#),
            Some(Tokens { input: 3, output: 0, total: 3, cached: 0, cache_write: 0, seconds: 0 })
        );
        // Unknown, never 0.
        for none in [&br#"{"choices":[]}"#[..], br#"{"usage":null}"#, br#"{"usage":{}}"#, br#"{"usage":{"prompt_tokens":5,"#, b""] {
            assert_eq!(last_usage(none), None, "{}", String::from_utf8_lossy(none));
        }
    }

    #[test]
    fn a_large_answer_keeps_only_its_ends() {
        let big = format!(r#"{{"data":[{}],"usage":{{"prompt_tokens":11,"total_tokens":11}}}}"#, "1.0,".repeat(50_000) + "1.0");
        let mut ends = JsonEnds::default();
        for chunk in big.as_bytes().chunks(1000) {
            ends.feed(&Bytes::copy_from_slice(chunk));
        }
        assert_eq!(ends.usage(), Some(Tokens { input: 11, output: 0, total: 11, cached: 0, cache_write: 0, seconds: 0 }));
        // Usage first (some servers), in one frame or byte by byte.
        let first = format!(r#"{{"usage":{{"prompt_tokens":1,"completion_tokens":1}},"data":"{}"}}"#, "x".repeat(10_000));
        let mut ends = JsonEnds::default();
        for b in first.as_bytes().chunks(1) {
            ends.feed(&Bytes::copy_from_slice(b));
        }
        assert_eq!(ends.usage(), Some(Tokens { input: 1, output: 1, total: 2, cached: 0, cache_write: 0, seconds: 0 }));
    }

    fn stream(include_usage_event: bool) -> Vec<&'static str> {
        let mut events = vec![
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        ];
        if include_usage_event {
            events.push("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n");
        }
        events.push("data: [DONE]\n\n");
        events
    }

    fn run(sse: &mut SseUsage, frames: Vec<Vec<u8>>) -> String {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&sse.frame(Bytes::from(f)));
        }
        if let Some(rest) = sse.finish() {
            out.extend_from_slice(&rest);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_injected_usage_event_is_read_and_cut_however_frames_split_it() {
        let upstream: String = stream(true).concat();
        let client_asked_for: String = stream(false).concat();
        for split in [1, 2, 7, 50, 1000] {
            let frames: Vec<Vec<u8>> = upstream.as_bytes().chunks(split).map(<[u8]>::to_vec).collect();
            let mut sse = SseUsage::new(true);
            assert_eq!(run(&mut sse, frames.clone()), client_asked_for, "frames of {split}");
            assert_eq!(sse.tokens, Some(Tokens { input: 5, output: 3, total: 8, cached: 0, cache_write: 0, seconds: 0 }));
            // The client asked for it itself: passed on, byte for byte, and read.
            let mut sse = SseUsage::new(false);
            assert_eq!(run(&mut sse, frames), upstream, "frames of {split}");
            assert_eq!(sse.tokens, Some(Tokens { input: 5, output: 3, total: 8, cached: 0, cache_write: 0, seconds: 0 }));
        }
    }

    /// The client's stream as it would have been without the gateway's `include_usage`, and the
    /// upstream's answer to it: every chunk with `"usage": null` (OpenAI's and vLLM's behaviour),
    /// then the usage-only chunk, written with Python's `json.dumps` spacing or compact.
    fn spaced_streams(spaced: bool) -> (String, String) {
        let (c, sep) = if spaced { (": ", ", ") } else { (":", ",") };
        let chunk = |delta: &str| format!("data: {{\"id\"{c}\"x\"{sep}\"choices\"{c}[{{\"delta\"{c}{delta}}}]}}\n\n");
        let with_null =
            |delta: &str| format!("data: {{\"id\"{c}\"x\"{sep}\"choices\"{c}[{{\"delta\"{c}{delta}}}]{sep}\"usage\"{c}null}}\n\n");
        let usage = format!(
            "data: {{\"id\"{c}\"x\"{sep}\"choices\"{c}[]{sep}\"usage\"{c}{{\"prompt_tokens\"{c}5{sep}\"completion_tokens\"{c}3{sep}\"total_tokens\"{c}8}}}}\n\n"
        );
        let deltas = ["{\"content\":\"a\"}", "{}"];
        let client: String = deltas.iter().map(|d| chunk(d)).chain(["data: [DONE]\n\n".to_owned()]).collect();
        let upstream: String = deltas.iter().map(|d| with_null(d)).chain([usage, "data: [DONE]\n\n".to_owned()]).collect();
        (client, upstream)
    }

    #[test]
    fn the_injection_leaves_no_trace_however_the_upstream_spaces_its_json() {
        for spaced in [false, true] {
            let (client, upstream) = spaced_streams(spaced);
            for split in [1, 3, 1000] {
                let frames: Vec<Vec<u8>> = upstream.as_bytes().chunks(split).map(<[u8]>::to_vec).collect();
                let mut sse = SseUsage::new(true);
                assert_eq!(run(&mut sse, frames), client, "spaced {spaced}, frames of {split}");
                assert_eq!(sse.tokens, Some(Tokens { input: 5, output: 3, total: 8, cached: 0, cache_write: 0, seconds: 0 }));
            }
            // Asked for by the client itself: byte for byte.
            let mut sse = SseUsage::new(false);
            assert_eq!(run(&mut sse, vec![upstream.clone().into_bytes()]), upstream);
        }
        // A `"usage": null` first in its object takes the comma after it.
        let mut out = Vec::new();
        cut_null_usage(b"data: {\"usage\": null, \"id\": 1}\n\n", &mut out);
        assert_eq!(out, b"data: {\"id\": 1}\n\n");
    }

    #[test]
    fn a_stream_without_usage_or_cut_short_is_unknown_and_untouched() {
        let upstream: String = stream(false).concat();
        let mut sse = SseUsage::new(true);
        assert_eq!(run(&mut sse, vec![upstream.clone().into_bytes()]), upstream);
        assert_eq!(sse.tokens, None);
        // Cut in the middle of the usage event: what came passes on, tokens unknown.
        let cut = &stream(true).concat()[..upstream.len() - 14 + 30];
        let mut sse = SseUsage::new(true);
        assert_eq!(run(&mut sse, vec![cut.as_bytes().to_vec()]), cut);
        assert_eq!(sse.tokens, None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn count() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                any::<u32>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
                Just(serde_json::json!(1.5)),
                Just(serde_json::json!(2e3))
            ]
        }

        proptest! {
            /// The hand reader agrees with serde on any usage object: known counts in any
            /// order, other members of any shape (OpenAI's `*_details` objects), escapes.
            #[test]
            fn the_quick_reader_agrees_with_serde(
                counts in proptest::collection::btree_map(prop_oneof!["prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens"].prop_map(String::from), count(), 0..5),
                others in proptest::collection::btree_map("[a-z_\\\\\"]{1,12}", prop_oneof![Just(serde_json::json!({"cached_tokens": 0, "x": [1, {"y": "}"}]})), Just(serde_json::json!("a,\"}b")), Just(serde_json::json!([]))], 0..3),
                pretty in any::<bool>(),
            ) {
                let mut obj: serde_json::Map<String, serde_json::Value> = others.into_iter().collect();
                obj.extend(counts);
                let v = serde_json::Value::Object(obj);
                let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
                let serde_says = serde_json::from_str::<UsageObject>(&text).ok().and_then(|u| u.tokens());
                let body = format!("{{\"id\":\"x\",\"usage\":{text}}}");
                prop_assert_eq!(last_usage(body.as_bytes()), serde_says);
                if let Some(q) = quick_usage(text.as_bytes()) {
                    prop_assert_eq!(Some(q), serde_says);
                }
            }
        }
    }

    #[test]
    fn include_usage_is_asked_for_only_when_the_client_did_not() {
        let raw = |s: &str| serde_json::value::RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(with_include_usage(None).as_deref(), Some(r#"{"include_usage":true}"#));
        assert_eq!(with_include_usage(Some(&raw(r#"{"include_usage":false,"x":1}"#))).as_deref(), Some(r#"{"include_usage":true,"x":1}"#));
        assert_eq!(with_include_usage(Some(&raw(r#"{"include_usage":true}"#))), None);
        assert_eq!(with_include_usage(Some(&raw("5"))), None);
    }
}
