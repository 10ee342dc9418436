//! The Anthropic Messages API served over an upstream that speaks only chat completions (vLLM,
//! SGLang, most OpenAI-compatible providers): the Messages request becomes a chat request
//! ([`chat_request`]), and the chat answer becomes a Messages answer: a JSON answer whole
//! ([`message_from_chat`]), a stream event by event as it arrives ([`MessagesStream`], never
//! buffered whole), an upstream error in Anthropic's error shape ([`error_body`]).
//!
//! Translated: system prompts, text and image blocks, tools (`tool_use` / `tool_result` both
//! ways, `tool_choice`), `max_tokens`, `temperature`, `top_p`, `stop_sequences`, `metadata.user_id`,
//! stop reasons and usage (cached prompt tokens reported apart, as Anthropic counts them).
//! Dropped: blocks chat completions has no form for (thinking, documents), `top_k`.
use super::body::RequestBody;
use super::chat_stream::{str_or, text_of, ChatSink, ChatStream, ChatUsage, Chunk, Commas, Completion, Emit, Out, Str};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const ANTHROPIC_VERSION: axum::http::HeaderName = axum::http::HeaderName::from_static("anthropic-version");
const ANTHROPIC_BETA: axum::http::HeaderName = axum::http::HeaderName::from_static("anthropic-beta");
/// The version sent to a native endpoint when the caller gives none (Anthropic requires one).
const DEFAULT_VERSION: axum::http::HeaderValue = axum::http::HeaderValue::from_static("2023-06-01");

/// The caller's `anthropic-version` (or the default) and `anthropic-beta`, passed on to an
/// endpoint that speaks Messages natively; none for other operations.
pub fn passed_headers(
    op: super::op::Op,
    headers: &axum::http::HeaderMap,
) -> smallvec::SmallVec<[(axum::http::HeaderName, axum::http::HeaderValue); 2]> {
    let mut out = smallvec::SmallVec::new();
    if op == super::op::Op::Messages {
        out.push((ANTHROPIC_VERSION, headers.get(ANTHROPIC_VERSION).cloned().unwrap_or(DEFAULT_VERSION)));
        if let Some(beta) = headers.get(ANTHROPIC_BETA) {
            out.push((ANTHROPIC_BETA, beta.clone()));
        }
    }
    out
}

#[derive(Deserialize)]
struct Turn<'a> {
    #[serde(borrow)]
    role: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

/// A content block: the members of every kind we translate (others are skipped unread).
#[derive(Deserialize)]
struct ContentBlock<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    source: Option<ImageSource<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_use_id: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ImageSource<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    media_type: Option<Str<'a>>,
    #[serde(borrow)]
    data: Option<Str<'a>>,
    #[serde(borrow)]
    url: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    description: Option<&'a RawValue>,
    #[serde(borrow)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolChoice<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
}

/// A content: a string, or blocks.
enum Content<'a> {
    Text(Str<'a>),
    Blocks(Vec<ContentBlock<'a>>),
}

fn content(raw: &RawValue) -> Option<Content<'_>> {
    match raw.get().as_bytes().first() {
        Some(b'"') => serde_json::from_str(raw.get()).ok().map(Content::Text),
        Some(b'[') => serde_json::from_str(raw.get()).ok().map(Content::Blocks),
        _ => None,
    }
}

/// A Messages request (parsed into its members) as a chat completions body, written straight
/// out (its `model` kept: the gateway replaces it per endpoint). Only the members translated are
/// read; tool schemas and tool inputs are copied as they are.
pub fn chat_request(req: &RequestBody) -> Result<Vec<u8>, String> {
    let turns: Vec<Turn> = match req.member("messages") {
        Some(m) => serde_json::from_str(m.get()).map_err(|_| "messages: an array of messages is required".to_owned())?,
        None => return Err("messages: Field required".into()),
    };
    // Every system prompt, the top one and those within the conversation (Claude Code's
    // mid-conversation system messages), first as one: chat templates refuse them elsewhere.
    let mut system: Vec<String> = Vec::new();
    system.extend(Some(text_of(req.member("system"))).filter(|t| !t.is_empty()));
    for turn in &turns {
        match turn.role.as_ref().map(Str::as_str) {
            Some("user" | "assistant") => {}
            Some("system") => system.extend(Some(text_of(turn.content)).filter(|t| !t.is_empty())),
            _ => return Err("messages: each message's role must be \"user\", \"assistant\" or \"system\"".into()),
        }
    }
    let mut buf = Vec::with_capacity(req.member("messages").map_or(0, |m| m.get().len()) + 512);
    let o = &mut Out(&mut buf);
    o.raw("{\"model\":").raw(req.member("model").map_or("null", RawValue::get)).raw(",\"messages\":[");
    let mut messages = Commas::default();
    let mut sep = |o: &mut Out| messages.next(o);
    if !system.is_empty() {
        sep(o);
        o.raw("{\"role\":\"system\",\"content\":").str(&system.join("\n\n")).raw("}");
    }
    for turn in &turns {
        let role = str_or(&turn.role, "");
        if role == "system" {
            continue;
        }
        let blocks = match turn.content.and_then(content) {
            Some(Content::Text(s)) => {
                sep(o);
                o.raw("{\"role\":").str(role).raw(",\"content\":").str(s.as_str()).raw("}");
                continue;
            }
            Some(Content::Blocks(blocks)) => blocks,
            None => return Err("messages: each message needs a content string or array".into()),
        };
        // Text alone goes as a string (every chat server takes it); images need the parts.
        let has_image = blocks.iter().any(|b| str_or(&b.kind, "") == "image" && image_url(b).is_some());
        let mut texts: Vec<&str> = Vec::new();
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        let po = &mut Out(&mut parts);
        let co = &mut Out(&mut calls);
        for b in &blocks {
            match str_or(&b.kind, "") {
                "text" => {
                    let text = str_or(&b.text, "");
                    texts.push(text);
                    if has_image {
                        if !po.0.is_empty() {
                            po.raw(",");
                        }
                        po.raw("{\"type\":\"text\",\"text\":").str(text).raw("}");
                    }
                }
                "image" => {
                    if let Some(url) = image_url(b) {
                        if !po.0.is_empty() {
                            po.raw(",");
                        }
                        po.raw("{\"type\":\"image_url\",\"image_url\":{\"url\":").str(&url).raw("}}");
                    }
                }
                "tool_use" => {
                    if !co.0.is_empty() {
                        co.raw(",");
                    }
                    co.raw("{\"id\":")
                        .str(str_or(&b.id, ""))
                        .raw(",\"type\":\"function\",\"function\":{\"name\":")
                        .str(str_or(&b.name, ""));
                    co.raw(",\"arguments\":").str(b.input.map_or("{}", RawValue::get)).raw("}}");
                }
                // A tool's result is its own chat message, before the user's other blocks.
                "tool_result" => {
                    sep(o);
                    o.raw("{\"role\":\"tool\",\"tool_call_id\":").str(str_or(&b.tool_use_id, ""));
                    o.raw(",\"content\":").str(&text_of(b.content)).raw("}");
                }
                _ => {}
            }
        }
        let has_content = has_image || !texts.is_empty();
        if role == "assistant" {
            sep(o);
            o.raw("{\"role\":\"assistant\",\"content\":");
            write_content(o, has_image, &parts, &texts);
            if !calls.is_empty() {
                o.raw(",\"tool_calls\":[");
                o.0.extend_from_slice(&calls);
                o.raw("]");
            }
            o.raw("}");
        } else if has_content {
            sep(o);
            o.raw("{\"role\":\"user\",\"content\":");
            write_content(o, has_image, &parts, &texts);
            o.raw("}");
        }
    }
    o.raw("]");
    for (from, to) in [("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")] {
        if let Some(v) = req.member(from) {
            o.member(to, v);
        }
    }
    let metadata: Option<Metadata> = req.member("metadata").and_then(|m| serde_json::from_str(m.get()).ok());
    if let Some(user) = metadata.and_then(|m| m.user_id).filter(|u| u.get().starts_with('"')) {
        o.raw(",\"user\":").raw(user.get());
    }
    let tools: Vec<Tool> = req.member("tools").and_then(|t| serde_json::from_str(t.get()).ok()).unwrap_or_default();
    let mut first_tool = true;
    for t in tools.iter().filter(|t| t.input_schema.is_some()) {
        o.raw(if std::mem::take(&mut first_tool) { ",\"tools\":[" } else { "," });
        o.raw("{\"type\":\"function\",\"function\":{\"name\":").raw(t.name.map_or("\"\"", RawValue::get));
        o.raw(",\"description\":").raw(t.description.map_or("\"\"", RawValue::get));
        o.raw(",\"parameters\":").raw(t.input_schema.map_or("{}", RawValue::get)).raw("}}");
    }
    if !first_tool {
        o.raw("]");
    }
    let choice: Option<ToolChoice> = req.member("tool_choice").and_then(|c| serde_json::from_str(c.get()).ok());
    match choice.as_ref().map(|c| (str_or(&c.kind, ""), c)) {
        Some(("auto", _)) => o.raw(",\"tool_choice\":\"auto\""),
        Some(("any", _)) => o.raw(",\"tool_choice\":\"required\""),
        Some(("none", _)) => o.raw(",\"tool_choice\":\"none\""),
        Some(("tool", c)) => o.raw(",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":").str(str_or(&c.name, "")).raw("}}"),
        _ => o,
    };
    // The gateway asks for the usage chunk as for any chat stream (unless the endpoint refuses
    // `stream_options`).
    if req.streams() {
        o.raw(",\"stream\":true");
    }
    o.raw("}");
    Ok(buf)
}

/// An image block's source as a URL chat takes (`data:` for base64); `None` for other sources.
fn image_url(b: &ContentBlock) -> Option<String> {
    let src = b.source.as_ref()?;
    match str_or(&src.kind, "") {
        "base64" => Some(format!("data:{};base64,{}", str_or(&src.media_type, "image/png"), str_or(&src.data, ""))),
        "url" => Some(str_or(&src.url, "").to_owned()),
        _ => None,
    }
}

/// A message's content: its parts when it holds an image, else its texts as one string, `null`
/// when it has none.
fn write_content(o: &mut Out, has_image: bool, parts: &[u8], texts: &[&str]) {
    if has_image {
        o.raw("[");
        o.0.extend_from_slice(parts);
        o.raw("]");
    } else if texts.is_empty() {
        o.raw("null");
    } else {
        o.str(&texts.join("\n"));
    }
}

/// Chat's `finish_reason` as Messages' `stop_reason`.
fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Chat usage as Messages usage: Anthropic's `input_tokens` leaves out what was read from the
/// cache (`cache_read_input_tokens`), OpenAI's `prompt_tokens` holds it.
fn write_usage(o: &mut Out, u: Option<&ChatUsage>) {
    let u = u.copied().unwrap_or_default();
    o.raw("{\"input_tokens\":").num(u.prompt_tokens.saturating_sub(u.cached()));
    o.raw(",\"output_tokens\":").num(u.completion_tokens);
    o.raw(",\"cache_read_input_tokens\":").num(u.cached()).raw(",\"cache_creation_input_tokens\":0}");
}

/// A tool call's arguments (a JSON string in chat) as Messages' `input` object: as they are when
/// they are one, else `{}`.
fn write_tool_input(o: &mut Out, arguments: Option<&Str>) {
    let args = arguments.map(Str::as_str).unwrap_or("").trim();
    let is_object = args.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(args).is_ok();
    o.raw(if is_object { args } else { "{}" });
}

/// A chat completion (JSON) as a Messages answer for `model` (the name the caller used).
pub fn message_from_chat(chat: &[u8], model: &str) -> Option<Vec<u8>> {
    let chat: Completion = serde_json::from_slice(chat).ok()?;
    let choice = chat.choices.first()?;
    let mut buf = Vec::with_capacity(256);
    let o = &mut Out(&mut buf);
    o.raw("{\"id\":").str(&format!("msg_{}", chat.id.as_ref().map_or("gateway", Str::as_str)));
    o.raw(",\"type\":\"message\",\"role\":\"assistant\",\"model\":").str(model).raw(",\"content\":[");
    let mut blocks = Commas::default();
    let mut sep = |o: &mut Out| blocks.next(o);
    if let Some(text) = choice.message.content.as_ref().filter(|t| !t.as_str().is_empty()) {
        sep(o);
        o.raw("{\"type\":\"text\",\"text\":").str(text.as_str()).raw("}");
    }
    for call in choice.message.tool_calls.iter().flatten() {
        sep(o);
        let f = call.function.as_ref();
        o.raw("{\"type\":\"tool_use\",\"id\":").str(call.id.as_ref().map_or("", Str::as_str));
        o.raw(",\"name\":").str(f.and_then(|f| f.name.as_ref()).map_or("", Str::as_str)).raw(",\"input\":");
        write_tool_input(o, f.and_then(|f| f.arguments.as_ref()));
        o.raw("}");
    }
    o.raw("],\"stop_reason\":").str(stop_reason(choice.finish_reason.as_ref().map_or("stop", Str::as_str)));
    o.raw(",\"stop_sequence\":null,\"usage\":");
    write_usage(o, chat.usage.as_ref());
    o.raw("}");
    Some(buf)
}

/// Anthropic's error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// An error answer in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "error", "error": {"type": error_type(status), "message": message}}))
        .expect("a JSON value serializes")
}

/// An upstream's error answer (OpenAI's shape, or anything) in Anthropic's shape.
pub fn error_from_upstream(status: u16, body: &[u8]) -> Vec<u8> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")).or_else(|| v.get("detail")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("The upstream answered {status}."));
    error_body(status, &message)
}

/// The block a translated stream has open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call: chat's index of it.
    Tool(u64),
}

/// A chat stream turned into Messages events as it arrives: each chat chunk becomes the
/// `content_block_*` events it means, and the end (`[DONE]`) the `message_delta` with the stop
/// reason and usage, then `message_stop`.
pub type MessagesStream = ChatStream<Messages>;

impl MessagesStream {
    pub fn new(model: &str) -> Self {
        let model_json = serde_json::to_string(model).expect("a string serializes");
        ChatStream::with(Messages { model_json, started: false, open: None, next: 0, stop: None, usage: None })
    }
}

/// The Messages side of a translated stream: what is open, what the end will say.
pub struct Messages {
    /// The caller's model name, as a JSON string.
    model_json: String,
    started: bool,
    open: Option<Block>,
    /// Index of the next content block.
    next: u64,
    stop: Option<&'static str>,
    usage: Option<ChatUsage>,
}

impl ChatSink for Messages {
    fn chunk(&mut self, chunk: &Chunk<'_>, out: &mut Emit) {
        self.start(chunk.id.as_ref().map_or("gateway", Str::as_str), out);
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.choices.first() else { return };
        let delta = choice.delta.as_ref();
        if let Some(text) = delta.and_then(|d| d.content.as_ref()).filter(|t| !t.as_str().is_empty()) {
            if self.open != Some(Block::Text) {
                self.open(Block::Text, out);
                Out(out).raw("{\"type\":\"text\",\"text\":\"\"}}").end();
            }
            let o = &mut Out(out);
            o.event("content_block_delta").raw("{\"type\":\"content_block_delta\",\"index\":").num(self.next - 1);
            o.raw(",\"delta\":{\"type\":\"text_delta\",\"text\":").str(text.as_str()).raw("}}").end();
        }
        for call in delta.and_then(|d| d.tool_calls.as_ref()).into_iter().flatten() {
            let f = call.function.as_ref();
            if self.open != Some(Block::Tool(call.index)) {
                self.open(Block::Tool(call.index), out);
                let o = &mut Out(out);
                o.raw("{\"type\":\"tool_use\",\"id\":").str(call.id.as_ref().map_or("", Str::as_str));
                o.raw(",\"name\":").str(f.and_then(|f| f.name.as_ref()).map_or("", Str::as_str)).raw(",\"input\":{}}}").end();
            }
            if let Some(args) = f.and_then(|f| f.arguments.as_ref()).filter(|a| !a.as_str().is_empty()) {
                let o = &mut Out(out);
                o.event("content_block_delta").raw("{\"type\":\"content_block_delta\",\"index\":").num(self.next - 1);
                o.raw(",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":").str(args.as_str()).raw("}}").end();
            }
        }
        if let Some(finish) = &choice.finish_reason {
            self.stop = Some(stop_reason(finish.as_str()));
        }
    }

    fn end(&mut self, out: &mut Emit) {
        self.start("gateway", out);
        self.close(out);
        let o = &mut Out(out);
        o.event("message_delta").raw("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":").str(self.stop.unwrap_or("end_turn"));
        o.raw(",\"stop_sequence\":null},\"usage\":");
        write_usage(o, self.usage.as_ref());
        o.raw("}").end();
        o.event("message_stop").raw("{\"type\":\"message_stop\"}").end();
    }
}

impl Messages {
    fn start(&mut self, id: &str, out: &mut Emit) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let o = &mut Out(out);
        o.event("message_start").raw("{\"type\":\"message_start\",\"message\":{\"id\":").str(&format!("msg_{id}"));
        o.raw(",\"type\":\"message\",\"role\":\"assistant\",\"model\":").raw(&self.model_json);
        o.raw(",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}").end();
    }

    fn close(&mut self, out: &mut Emit) {
        if self.open.take().is_some() {
            Out(out).event("content_block_stop").raw("{\"type\":\"content_block_stop\",\"index\":").num(self.next - 1).raw("}").end();
        }
    }

    /// Opens the next block: its `content_block_start` up to its `content_block`, which the
    /// caller writes (and ends).
    fn open(&mut self, block: Block, out: &mut Emit) {
        self.close(out);
        Out(out).event("content_block_start").raw("{\"type\":\"content_block_start\",\"index\":").num(self.next).raw(",\"content_block\":");
        self.next += 1;
        self.open = Some(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: &[u8]) -> Result<Vec<u8>, String> {
        chat_request(&RequestBody::parse(body).unwrap())
    }

    fn events(sse: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(sse)
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()))
            .collect()
    }

    #[test]
    fn a_messages_request_becomes_the_chat_request_it_means() {
        let body = json!({"model": "claude", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"], "stream": true, "metadata": {"user_id": "u1"},
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}, {"type": "text", "text": "Thanks"}]},
            {"role": "system", "content": "Mid-conversation."}
        ]});
        let chat: Value = serde_json::from_slice(&translate(body.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(
            chat,
            json!({"model": "claude", "max_tokens": 100, "stop": ["END"], "user": "u1", "stream": true,
            "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "system", "content": "Be brief.\n\nMid-conversation."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "user", "content": "Thanks"}
            ]})
        );
        assert!(translate(b"{\"model\": \"m\"}").unwrap_err().contains("messages"));
    }

    #[test]
    fn a_chat_answer_becomes_a_message_with_its_tool_calls_stop_reason_and_usage() {
        let chat = json!({"id": "c1", "choices": [{"message": {"content": "Let me look.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 6}}});
        let m: Value = serde_json::from_slice(&message_from_chat(chat.to_string().as_bytes(), "claude").unwrap()).unwrap();
        assert_eq!(
            m["content"],
            json!([{"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}])
        );
        assert_eq!((m["stop_reason"].as_str(), m["model"].as_str()), (Some("tool_use"), Some("claude")));
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 4, "output_tokens": 4, "cache_read_input_tokens": 6, "cache_creation_input_tokens": 0})
        );
    }

    #[test]
    fn a_chat_stream_becomes_messages_events_however_its_frames_split() {
        let chunk = |delta: Value, finish: Value| {
            format!("data: {}\n\n", json!({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
        };
        let stream = [
            chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "t1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            format!(
                "data: {}\n\n",
                json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}})
            ),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let mut whole = None;
        for split in [1, 5, 64, stream.len()] {
            let mut t = MessagesStream::new("claude");
            let mut out = Vec::new();
            for f in stream.as_bytes().chunks(split) {
                out.extend_from_slice(&t.frame(f).concat());
            }
            out.extend_from_slice(&t.finish().concat());
            let got = events(&out);
            if let Some(w) = &whole {
                assert_eq!(&got, w, "frames of {split}");
            }
            whole = Some(got);
        }
        let ev = whole.unwrap();
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let text: String = ev.iter().filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str)).collect();
        let args: String = ev.iter().filter_map(|e| e.pointer("/delta/partial_json").and_then(Value::as_str)).collect();
        assert_eq!((text.as_str(), args.as_str()), ("Hello", "{\"city\":\"Paris\"}"));
        assert_eq!(ev[5]["content_block"], json!({"type": "tool_use", "id": "t1", "name": "weather", "input": {}}));
        assert_eq!(ev[9]["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[9]["usage"]["output_tokens"], 5);
        assert_eq!(ev[9]["usage"]["input_tokens"], 9);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A piece of an answer: text, or a tool call whose arguments arrive in pieces.
        #[derive(Clone, Debug)]
        enum Piece {
            Text(String),
            Tool { name: String, args: Vec<String> },
        }

        fn piece() -> impl Strategy<Value = Piece> {
            prop_oneof![
                "[a-zA-Z0-9 \"\\\\é\n{}]{1,12}".prop_map(Piece::Text),
                ("[a-z_]{1,8}", proptest::collection::vec("[a-z0-9\":{} ,]{0,6}", 0..4))
                    .prop_map(|(name, args)| Piece::Tool { name, args }),
            ]
        }

        /// The chat stream an OpenAI-compatible server sends for `pieces`, and the blocks a
        /// Messages client must see: consecutive texts are one block, each tool call one block.
        fn stream_of(pieces: &[Piece], output: u64) -> (String, Vec<(String, String)>) {
            let chunk = |delta: Value, finish: Value| {
                format!("data: {}\n\n", json!({"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
            };
            let (mut sse, mut blocks, mut tool) = (String::new(), Vec::<(String, String)>::new(), 0);
            for p in pieces {
                match p {
                    Piece::Text(t) => {
                        sse += &chunk(json!({"content": t}), Value::Null);
                        match blocks.last_mut() {
                            Some((kind, text)) if kind == "text" => text.push_str(t),
                            _ => blocks.push(("text".into(), t.clone())),
                        }
                    }
                    Piece::Tool { name, args } => {
                        sse += &chunk(
                            json!({"tool_calls": [{"index": tool, "id": format!("t{tool}"), "type": "function", "function": {"name": name, "arguments": ""}}]}),
                            Value::Null,
                        );
                        for a in args {
                            sse += &chunk(json!({"tool_calls": [{"index": tool, "function": {"arguments": a}}]}), Value::Null);
                        }
                        blocks.push((format!("tool_use:{name}"), args.concat()));
                        tool += 1;
                    }
                }
            }
            sse += &chunk(json!({}), json!(if tool > 0 { "tool_calls" } else { "stop" }));
            sse += &format!(
                "data: {}\n\n",
                json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": output, "total_tokens": 3 + output}})
            );
            sse += "data: [DONE]\n\n";
            (sse, blocks)
        }

        proptest! {
            #[test]
            fn any_chat_stream_becomes_a_valid_messages_stream_with_the_same_content_and_usage(
                pieces in proptest::collection::vec(piece(), 0..8),
                output in 0u64..10_000,
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            ) {
                let (sse, want) = stream_of(&pieces, output);
                let bytes = sse.as_bytes();
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
                at.push(0);
                at.push(bytes.len());
                at.sort_unstable();
                let mut t = MessagesStream::new("m");
                let mut out = Vec::new();
                for w in at.windows(2) {
                    out.extend_from_slice(&t.frame(&bytes[w[0]..w[1]]).concat());
                }
                out.extend_from_slice(&t.finish().concat());
                let ev = events(&out);
                // Well formed: one start, blocks opened and closed in order, one delta, one stop.
                prop_assert_eq!(ev.first().map(|e| e["type"].clone()), Some(json!("message_start")));
                prop_assert_eq!(ev.last().map(|e| e["type"].clone()), Some(json!("message_stop")));
                let mut got: Vec<(String, String)> = Vec::new();
                let mut open: Option<u64> = None;
                for e in &ev[1..ev.len() - 2] {
                    match e["type"].as_str().unwrap() {
                        "content_block_start" => {
                            prop_assert!(open.is_none());
                            let index = e["index"].as_u64().unwrap();
                            prop_assert_eq!(index, got.len() as u64);
                            open = Some(index);
                            let b = &e["content_block"];
                            let kind = match b["type"].as_str().unwrap() {
                                "text" => "text".to_owned(),
                                _ => format!("tool_use:{}", b["name"].as_str().unwrap()),
                            };
                            got.push((kind, String::new()));
                        }
                        "content_block_delta" => {
                            prop_assert_eq!(e["index"].as_u64(), open);
                            let d = &e["delta"];
                            let piece = d.get("text").or_else(|| d.get("partial_json")).and_then(Value::as_str).unwrap();
                            got.last_mut().unwrap().1.push_str(piece);
                        }
                        "content_block_stop" => {
                            prop_assert_eq!(e["index"].as_u64(), open);
                            open = None;
                        }
                        other => prop_assert!(false, "unexpected event {}", other),
                    }
                }
                prop_assert!(open.is_none());
                // Tool calls with no argument pieces open a block with an empty input.
                prop_assert_eq!(got, want);
                let delta = &ev[ev.len() - 2];
                prop_assert_eq!(delta["usage"]["output_tokens"].as_u64(), Some(output));
                let stop = if pieces.iter().any(|p| matches!(p, Piece::Tool { .. })) { "tool_use" } else { "end_turn" };
                prop_assert_eq!(delta["delta"]["stop_reason"].as_str(), Some(stop));
            }
        }
    }

    #[test]
    fn upstream_errors_take_anthropics_shape() {
        let e: Value = serde_json::from_slice(&error_from_upstream(429, br#"{"error": {"message": "slow down", "type": "x"}}"#)).unwrap();
        assert_eq!(e, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));
    }
}
