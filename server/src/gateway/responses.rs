//! OpenAI's Responses API served over an upstream that speaks only chat completions (vLLM,
//! SGLang, most OpenAI-compatible providers): the Responses request becomes a chat request
//! ([`chat_request`]), and the chat answer becomes a Responses answer: a JSON answer whole
//! ([`response_from_chat`]), a stream event by event as it arrives ([`ResponsesStream`]).
//!
//! Only stateless calls translate: the whole conversation is in `input`. What needs state the
//! gateway does not keep (`previous_response_id`, `conversation`, stored prompts, `store: true`,
//! `background`, item references) or a call forced to a tool chat completions has no form for
//! (web search, file search, computer use, code interpreter, MCP…) is refused with a 400 that
//! names it: it needs an endpoint that speaks the Responses API natively. Such tools merely
//! offered are not offered to the chat model.
//!
//! Translated: `instructions`, `input` (text, images, function calls and their outputs),
//! function tools and `tool_choice`, `max_output_tokens`, `temperature`, `top_p`, `user`,
//! `parallel_tool_calls`, `text.format` (JSON schema, JSON object), stop reasons (`incomplete`
//! for the length limit and the content filter) and usage (cached input tokens included).
//! Dropped: `reasoning` items given back as input (an encrypted summary chat cannot take),
//! `reasoning.effort`, `metadata`, `truncation`, `include`.
use super::body::RequestBody;
use super::chat_stream::{str_or, text_of, ChatSink, ChatStream, ChatUsage, Chunk, Commas, Completion, Emit, Out, Str};
use axum::body::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a member of the request cannot be served over chat completions, if it cannot.
fn needs_native(req: &RequestBody) -> Option<String> {
    let set = |k: &str| req.member(k).is_some_and(|v| !matches!(v.get(), "null" | "false"));
    let reason = if set("previous_response_id") {
        "previous_response_id: this model's endpoints speak chat completions, and the gateway keeps no responses to continue from; send the whole conversation in `input`"
    } else if set("conversation") {
        "conversation: this model's endpoints speak chat completions, and the gateway keeps no conversations; send the whole conversation in `input`"
    } else if set("prompt") {
        "prompt: stored prompt templates need an endpoint that speaks the Responses API natively"
    } else if req.member("store").is_some_and(|v| v.get() == "true") {
        "store: this model's endpoints speak chat completions, and the gateway does not store responses; leave `store` out or set it to false"
    } else if set("background") {
        "background: background responses need an endpoint that speaks the Responses API natively"
    } else {
        return None;
    };
    Some(format!("{reason} (it needs an endpoint that speaks the Responses API natively)."))
}

/// An input item: the members of every kind we translate.
#[derive(Deserialize)]
struct InputItem<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    role: Option<Str<'a>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    call_id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    arguments: Option<Str<'a>>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

/// A content part.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    refusal: Option<Str<'a>>,
    #[serde(borrow)]
    image_url: Option<&'a RawValue>,
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    description: Option<&'a RawValue>,
    #[serde(borrow)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    strict: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct TextConfig<'a> {
    #[serde(borrow)]
    format: Option<Format<'a>>,
}

#[derive(Deserialize)]
struct Format<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    schema: Option<&'a RawValue>,
    #[serde(borrow)]
    strict: Option<&'a RawValue>,
    #[serde(borrow)]
    description: Option<&'a RawValue>,
}

/// A member's value unless it is absent or `null`.
fn given(v: Option<&RawValue>) -> Option<&RawValue> {
    v.filter(|v| v.get() != "null")
}

/// A chat message's content, written: a string, or parts when it holds images.
fn write_content(o: &mut Out, raw: Option<&RawValue>, at: usize) -> Result<(), String> {
    let Some(raw) = raw else { return Err(format!("input[{at}].content: a string or an array of content parts is required")) };
    match raw.get().as_bytes().first() {
        Some(b'"') => {
            o.raw(raw.get());
            return Ok(());
        }
        Some(b'[') => {}
        _ => return Err(format!("input[{at}].content: a string or an array of content parts is required")),
    }
    let parts: Vec<Part> =
        serde_json::from_str(raw.get()).map_err(|_| format!("input[{at}].content: each part needs a type and its members"))?;
    let mut texts: Vec<&str> = Vec::new();
    let mut has_image = false;
    for p in &parts {
        match p.kind.as_ref().map(Str::as_str) {
            Some("input_text" | "output_text" | "text") => texts.push(str_or(&p.text, "")),
            Some("refusal") => texts.push(str_or(&p.refusal, "")),
            Some("input_image") => {
                if !p.image_url.is_some_and(|u| u.get().starts_with('"')) {
                    return Err(format!(
                        "input[{at}].content: an input_image by file_id needs an endpoint that speaks the Responses API natively; give its image_url"
                    ));
                }
                has_image = true;
            }
            Some(other) => {
                return Err(format!(
                    "input[{at}].content: a part of type {other:?} needs an endpoint that speaks the Responses API natively"
                ))
            }
            None => return Err(format!("input[{at}].content: each part needs a type")),
        }
    }
    if !has_image {
        o.str(&texts.join("\n"));
        return Ok(());
    }
    o.raw("[");
    for (n, p) in parts.iter().enumerate() {
        if n > 0 {
            o.raw(",");
        }
        match p.kind.as_ref().map(Str::as_str) {
            Some("input_image") => {
                o.raw("{\"type\":\"image_url\",\"image_url\":{\"url\":").raw(p.image_url.map_or("\"\"", RawValue::get));
                if let Some(detail) = p.detail.filter(|d| d.get().starts_with('"')) {
                    o.raw(",\"detail\":").raw(detail.get());
                }
                o.raw("}}");
            }
            Some("refusal") => {
                o.raw("{\"type\":\"text\",\"text\":").str(str_or(&p.refusal, "")).raw("}");
            }
            _ => {
                o.raw("{\"type\":\"text\",\"text\":").str(str_or(&p.text, "")).raw("}");
            }
        }
    }
    o.raw("]");
    Ok(())
}

/// A Responses request (parsed into its members) as a chat completions body, written straight
/// out (its `model` kept: the gateway replaces it per endpoint), or why it cannot be one.
pub fn chat_request(req: &RequestBody) -> Result<Vec<u8>, String> {
    if let Some(why) = needs_native(req) {
        return Err(why);
    }
    let input = req.member("input").ok_or("input: Field required")?;
    let items: Vec<InputItem> = match input.get().as_bytes().first() {
        Some(b'"') => Vec::new(),
        Some(b'[') => serde_json::from_str(input.get()).map_err(|e| format!("input: {e}"))?,
        _ => return Err("input: a string or an array of items is required".into()),
    };
    // The system prompts (instructions, system and developer items) first, as one.
    let mut system: Vec<String> = Vec::new();
    system.extend(Some(text_of(given(req.member("instructions")))).filter(|t| !t.is_empty()));
    for (at, item) in items.iter().enumerate() {
        match str_or(&item.kind, "message") {
            "message" => match item.role.as_ref().map(Str::as_str) {
                Some("system" | "developer") => system.extend(Some(text_of(item.content)).filter(|t| !t.is_empty())),
                Some("user" | "assistant") => {}
                _ => return Err(format!("input[{at}].role: one of user, assistant, system, developer is required")),
            },
            "function_call" | "function_call_output" | "reasoning" => {}
            "item_reference" => {
                return Err(format!(
                    "input[{at}]: an item_reference needs stored responses (an endpoint that speaks the Responses API natively); give the item itself"
                ))
            }
            other => return Err(format!("input[{at}]: an item of type {other:?} needs an endpoint that speaks the Responses API natively")),
        }
    }
    let mut buf = Vec::with_capacity(input.get().len() + 512);
    let o = &mut Out(&mut buf);
    o.raw("{\"model\":").raw(req.member("model").map_or("null", RawValue::get)).raw(",\"messages\":[");
    let mut messages = Commas::default();
    let mut sep = |o: &mut Out| messages.next(o);
    if !system.is_empty() {
        sep(o);
        o.raw("{\"role\":\"system\",\"content\":").str(&system.join("\n\n")).raw("}");
    }
    if input.get().starts_with('"') {
        sep(o);
        o.raw("{\"role\":\"user\",\"content\":").raw(input.get()).raw("}");
    }
    // An assistant message stays open while function calls follow it: calls made in one turn are
    // one assistant message (its text, if any, first).
    let mut calls_open = false;
    let close_calls = |o: &mut Out, open: &mut bool| {
        if std::mem::take(open) {
            o.raw("]}");
        }
    };
    for (at, item) in items.iter().enumerate() {
        match str_or(&item.kind, "message") {
            "message" => {
                close_calls(o, &mut calls_open);
                let role = str_or(&item.role, "");
                if role == "system" || role == "developer" {
                    continue;
                }
                sep(o);
                o.raw("{\"role\":").str(role).raw(",\"content\":");
                write_content(o, item.content, at)?;
                if role == "assistant" && matches!(items.get(at + 1).map(|n| str_or(&n.kind, "message")), Some("function_call")) {
                    o.raw(",\"tool_calls\":[");
                    calls_open = true;
                    // The first call is written by its own item, without a comma before it.
                    continue;
                }
                o.raw("}");
            }
            "function_call" => {
                if calls_open && !o.0.ends_with(b"[") {
                    o.raw(",");
                } else if !calls_open {
                    sep(o);
                    o.raw("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[");
                    calls_open = true;
                }
                o.raw("{\"id\":").str(str_or(&item.call_id, "")).raw(",\"type\":\"function\",\"function\":{\"name\":");
                o.str(str_or(&item.name, "")).raw(",\"arguments\":").str(str_or(&item.arguments, "{}")).raw("}}");
            }
            "function_call_output" => {
                close_calls(o, &mut calls_open);
                sep(o);
                o.raw("{\"role\":\"tool\",\"tool_call_id\":").str(str_or(&item.call_id, ""));
                o.raw(",\"content\":").str(&text_of(item.output)).raw("}");
            }
            // A reasoning summary of an earlier answer: chat has no place for it.
            _ => {}
        }
    }
    close_calls(o, &mut calls_open);
    o.raw("]");
    for (from, to) in [
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ] {
        if let Some(v) = given(req.member(from)) {
            o.member(to, v);
        }
    }
    let tools: Vec<Tool> = match given(req.member("tools")) {
        Some(t) => serde_json::from_str(t.get()).map_err(|e| format!("tools: {e}"))?,
        None => Vec::new(),
    };
    // A built-in tool (web search, file search, MCP…) or a namespace of tools is only offered: a
    // chat model is not offered it (Codex offers web search with every call). Forcing one is
    // refused below.
    let mut first_tool = true;
    for t in tools.iter().filter(|t| str_or(&t.kind, "") == "function") {
        o.raw(if std::mem::take(&mut first_tool) { ",\"tools\":[" } else { "," });
        o.raw("{\"type\":\"function\",\"function\":{\"name\":").raw(t.name.map_or("\"\"", RawValue::get));
        o.raw(",\"parameters\":").raw(given(t.parameters).map_or("{\"type\":\"object\",\"properties\":{}}", RawValue::get));
        for (k, v) in [("description", t.description), ("strict", t.strict)] {
            if let Some(v) = given(v) {
                o.member(k, v);
            }
        }
        o.raw("}}");
    }
    if !first_tool {
        o.raw("]");
    }
    match given(req.member("tool_choice")) {
        Some(c) if c.get().starts_with('"') => {
            o.raw(",\"tool_choice\":").raw(c.get());
        }
        Some(c) => {
            let choice: Choice = serde_json::from_str(c.get()).map_err(|e| format!("tool_choice: {e}"))?;
            match str_or(&choice.kind, "") {
                "function" => {
                    o.raw(",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":").str(str_or(&choice.name, "")).raw("}}");
                }
                kind => {
                    return Err(format!(
                        "tool_choice: the built-in tool {kind:?} needs an endpoint that speaks the Responses API natively; function tools translate"
                    ))
                }
            }
        }
        None => {}
    }
    let text: Option<TextConfig> = given(req.member("text")).and_then(|t| serde_json::from_str(t.get()).ok());
    if let Some(format) = text.and_then(|t| t.format) {
        match str_or(&format.kind, "") {
            "json_schema" => {
                o.raw(",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":");
                o.raw(given(format.name).map_or("\"response\"", RawValue::get));
                o.raw(",\"schema\":").raw(given(format.schema).map_or("null", RawValue::get));
                for (k, v) in [("strict", format.strict), ("description", format.description)] {
                    if let Some(v) = given(v) {
                        o.member(k, v);
                    }
                }
                o.raw("}}");
            }
            "json_object" => {
                o.raw(",\"response_format\":{\"type\":\"json_object\"}");
            }
            _ => {}
        }
    }
    // The gateway asks for the usage chunk as for any chat stream (unless the endpoint refuses
    // `stream_options`).
    if req.streams() {
        o.raw(",\"stream\":true");
    }
    o.raw("}");
    Ok(buf)
}

/// Chat usage as Responses usage (both count cached tokens inside the input); `null` when none.
fn write_usage(o: &mut Out, u: Option<&ChatUsage>) {
    let Some(u) = u else {
        o.raw("null");
        return;
    };
    o.raw("{\"input_tokens\":").num(u.prompt_tokens).raw(",\"input_tokens_details\":{\"cached_tokens\":").num(u.cached());
    o.raw("},\"output_tokens\":").num(u.completion_tokens).raw(",\"output_tokens_details\":{\"reasoning_tokens\":").num(u.reasoning());
    o.raw("},\"total_tokens\":").num(u.total()).raw("}");
}

/// The response's status for chat's `finish_reason`, and why it is incomplete.
fn status(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// What names a response and its message: the chat id, and the caller's model (as JSON).
struct Names {
    id: String,
    created: u64,
    model_json: String,
}

impl Names {
    fn new(chat_id: Option<&Str>, created: Option<u64>, model: &str) -> Self {
        Names {
            id: chat_id.map_or("gateway", Str::as_str).to_owned(),
            created: created.unwrap_or(0),
            model_json: serde_json::to_string(model).expect("a string serializes"),
        }
    }

    /// The response object, its output written by `output` (the items, comma-separated).
    fn write_response(
        &self,
        o: &mut Out,
        status: &str,
        incomplete: Option<&str>,
        usage: Option<&ChatUsage>,
        output: impl FnOnce(&mut Out),
    ) {
        o.raw("{\"id\":").str(&format!("resp_{}", self.id)).raw(",\"object\":\"response\",\"created_at\":").num(self.created);
        o.raw(",\"status\":").str(status).raw(",\"model\":").raw(&self.model_json).raw(",\"output\":[");
        output(o);
        o.raw("],\"usage\":");
        write_usage(o, usage);
        o.raw(",\"incomplete_details\":");
        match incomplete {
            Some(reason) => o.raw("{\"reason\":").str(reason).raw("}"),
            None => o.raw("null"),
        };
        o.raw(concat!(
            ",\"error\":null,\"instructions\":null,\"metadata\":{},\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",",
            "\"tools\":[],\"text\":{\"format\":{\"type\":\"text\"}},\"temperature\":null,\"top_p\":null,\"max_output_tokens\":null,",
            "\"previous_response_id\":null,\"store\":false,\"reasoning\":null,\"truncation\":\"disabled\",\"background\":false}"
        ));
    }

    fn message_id(&self) -> String {
        format!("msg_{}", self.id)
    }

    /// A message item; `text` `None`: added, its content still empty.
    fn write_message(&self, o: &mut Out, text: Option<&str>, status: &str) {
        o.raw("{\"type\":\"message\",\"id\":").str(&self.message_id()).raw(",\"status\":").str(status);
        o.raw(",\"role\":\"assistant\",\"content\":[");
        if let Some(text) = text {
            o.raw("{\"type\":\"output_text\",\"text\":").str(text).raw(",\"annotations\":[]}");
        }
        o.raw("]}");
    }
}

fn write_call(o: &mut Out, call_id: &str, name: &str, arguments: &str, status: &str) {
    o.raw("{\"type\":\"function_call\",\"id\":").str(&format!("fc_{call_id}")).raw(",\"call_id\":").str(call_id);
    o.raw(",\"name\":").str(name).raw(",\"arguments\":").str(arguments).raw(",\"status\":").str(status).raw("}");
}

/// A chat completion (JSON) as a Responses answer for `model` (the name the caller used).
pub fn response_from_chat(chat: &[u8], model: &str) -> Option<Vec<u8>> {
    let chat: Completion = serde_json::from_slice(chat).ok()?;
    let choice = chat.choices.first()?;
    let names = Names::new(chat.id.as_ref(), chat.created, model);
    let (status, incomplete) = status(choice.finish_reason.as_ref().map(Str::as_str));
    let mut buf = Vec::with_capacity(768);
    names.write_response(&mut Out(&mut buf), status, incomplete, chat.usage.as_ref(), |o| {
        let mut items = Commas::default();
        if let Some(text) = choice.message.content.as_ref().filter(|t| !t.as_str().is_empty()) {
            items.next(o);
            names.write_message(o, Some(text.as_str()), "completed");
        }
        for call in choice.message.tool_calls.iter().flatten() {
            items.next(o);
            let f = call.function.as_ref();
            let s = |v: Option<&'_ Str<'_>>| v.map_or("", Str::as_str).to_owned();
            write_call(o, &s(call.id.as_ref()), &s(f.and_then(|f| f.name.as_ref())), &s(f.and_then(|f| f.arguments.as_ref())), "completed");
        }
    });
    Some(buf)
}

/// A text as the events write it (JSON-escaped, without its quotes), kept in blocks that every
/// event repeating it shares: `output_text.done`, `content_part.done`, `output_item.done` and
/// `response.completed` each send the same blocks, so a 1 MB answer is held once (as it
/// arrives, escaped once, never reallocated whole) and copied for none of them.
#[derive(Default)]
struct Text {
    blocks: Vec<Bytes>,
    open: Vec<u8>,
}

/// The size a text's block is sealed at.
const BLOCK: usize = 64 << 10;
/// A text shorter than this is copied into the events that repeat it.
const SHORT: usize = 4 << 10;

impl Text {
    /// Adds what `escaped` holds: a JSON string as written (quotes included).
    fn push_json(&mut self, escaped: &[u8]) {
        let inner = &escaped[1..escaped.len() - 1];
        if self.open.capacity() == 0 {
            self.open.reserve(BLOCK.min(inner.len().max(256)));
        }
        self.open.extend_from_slice(inner);
        if self.open.len() >= BLOCK {
            self.blocks.push(Bytes::from(std::mem::take(&mut self.open)));
        }
    }

    /// Writes the text as a JSON string: its blocks shared, not copied (a short text is copied:
    /// one frame is cheaper to send than several).
    fn write(&mut self, out: &mut Emit) {
        out.push(b'"');
        if self.blocks.is_empty() && self.open.len() < SHORT {
            out.extend_from_slice(&self.open);
        } else {
            if !self.open.is_empty() {
                self.blocks.push(Bytes::from(std::mem::take(&mut self.open)));
            }
            for b in &self.blocks {
                out.share(b);
            }
        }
        out.push(b'"');
    }
}

/// An output item of a translated stream, as it builds up.
enum Item {
    Message {
        id: String,
        text: Text,
    },
    /// A function call: chat's index of it, its id, name and arguments so far.
    Call {
        index: u64,
        id: String,
        call_id: String,
        name: String,
        arguments: Text,
    },
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The item as `output_item.done` and `response.completed` list it.
    fn write_done(&mut self, out: &mut Emit) {
        match self {
            Item::Message { id, text } => {
                let o = &mut Out(out);
                o.raw("{\"type\":\"message\",\"id\":").str(id).raw(",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[");
                o.raw("{\"type\":\"output_text\",\"text\":");
                text.write(out);
                Out(out).raw(",\"annotations\":[]}]}");
            }
            Item::Call { id, call_id, name, arguments, .. } => {
                let o = &mut Out(out);
                o.raw("{\"type\":\"function_call\",\"id\":").str(id).raw(",\"call_id\":").str(call_id);
                o.raw(",\"name\":").str(name).raw(",\"arguments\":");
                arguments.write(out);
                Out(out).raw(",\"status\":\"completed\"}");
            }
        }
    }
}

/// A chat stream turned into Responses events as it arrives: `response.created`, then for each
/// text or tool call its `output_item.added`, deltas and `.done` events, and at the end
/// `response.completed` (or `response.incomplete`) with the whole output and the usage.
pub type ResponsesStream = ChatStream<Responses>;

impl ResponsesStream {
    pub fn new(model: &str) -> Self {
        ChatStream::with(Responses {
            model: model.to_owned(),
            names: None,
            seq: 0,
            items: Vec::new(),
            open: false,
            finish: None,
            usage: None,
        })
    }
}

/// The Responses side of a translated stream.
pub struct Responses {
    model: String,
    /// Set by the first chunk.
    names: Option<Names>,
    /// `sequence_number` of the next event.
    seq: u64,
    items: Vec<Item>,
    /// The last item is still open.
    open: bool,
    finish: Option<String>,
    usage: Option<ChatUsage>,
}

impl Responses {
    /// Starts an event: its SSE lines and JSON up to its `sequence_number`; the caller writes the
    /// rest of its members (each after a comma), then `}` and the end.
    fn event<'o>(&mut self, out: &'o mut Vec<u8>, kind: &str) -> Out<'o> {
        let mut o = Out(out);
        o.event(kind).raw("{\"type\":").str(kind).raw(",\"sequence_number\":").num(self.seq);
        self.seq += 1;
        o
    }

    fn names(&self) -> &Names {
        self.names.as_ref().expect("started before any item")
    }

    fn start(&mut self, chunk: Option<&Chunk>, out: &mut Emit) {
        if self.names.is_some() {
            return;
        }
        let names = Names::new(chunk.and_then(|c| c.id.as_ref()), chunk.and_then(|c| c.created), &self.model);
        let mut snapshot = Vec::with_capacity(600);
        names.write_response(&mut Out(&mut snapshot), "in_progress", None, None, |_| {});
        let snapshot = String::from_utf8(snapshot).expect("written as UTF-8");
        self.names = Some(names);
        for kind in ["response.created", "response.in_progress"] {
            self.event(out, kind).raw(",\"response\":").raw(&snapshot).raw("}").end();
        }
    }

    /// Closes the open item: its `.done` events, each sharing the item's text.
    fn close(&mut self, out: &mut Emit) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let at = self.items.len() - 1;
        let mut item = self.items.pop().expect("an open item");
        match &mut item {
            Item::Message { id, text } => {
                let mut o = self.event(out, "response.output_text.done");
                o.raw(",\"item_id\":").str(id).raw(",\"output_index\":").num(at as u64).raw(",\"content_index\":0,\"text\":");
                text.write(out);
                Out(out).raw(",\"logprobs\":[]}").end();
                let mut o = self.event(out, "response.content_part.done");
                o.raw(",\"item_id\":").str(id).raw(",\"output_index\":").num(at as u64);
                o.raw(",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":");
                text.write(out);
                Out(out).raw(",\"annotations\":[]}}").end();
            }
            Item::Call { id, name, arguments, .. } => {
                let mut o = self.event(out, "response.function_call_arguments.done");
                o.raw(",\"item_id\":").str(id).raw(",\"output_index\":").num(at as u64);
                o.raw(",\"name\":").str(name).raw(",\"arguments\":");
                arguments.write(out);
                Out(out).raw("}").end();
            }
        }
        self.event(out, "response.output_item.done").raw(",\"output_index\":").num(at as u64).raw(",\"item\":");
        item.write_done(out);
        Out(out).raw("}").end();
        self.items.push(item);
    }

    fn open(&mut self, item: Item, out: &mut Emit) {
        self.close(out);
        let at = self.items.len();
        let mut added = Vec::new();
        match &item {
            Item::Message { .. } => self.names().write_message(&mut Out(&mut added), None, "in_progress"),
            Item::Call { call_id, name, .. } => write_call(&mut Out(&mut added), call_id, name, "", "in_progress"),
        }
        let mut o = self.event(out, "response.output_item.added");
        o.raw(",\"output_index\":").num(at as u64).raw(",\"item\":");
        o.0.extend_from_slice(&added);
        o.raw("}").end();
        if let Item::Message { id, .. } = &item {
            let mut o = self.event(out, "response.content_part.added");
            o.raw(",\"item_id\":").str(id).raw(",\"output_index\":").num(at as u64);
            o.raw(",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}}").end();
        }
        self.items.push(item);
        self.open = true;
    }

    /// A delta event of the open item (`member` holding `delta`), its escaped text kept too.
    fn delta(&mut self, kind: &str, extra: &str, delta: &str, out: &mut Emit) {
        let at = self.items.len() - 1;
        let Some(item) = self.items.last() else { return };
        let id = item.id().to_owned();
        let mut o = self.event(out, kind);
        o.raw(",\"item_id\":").str(&id).raw(",\"output_index\":").num(at as u64).raw(extra).raw(",\"delta\":");
        let from = o.0.len();
        o.str(delta);
        let escaped = from..o.0.len();
        if let Some(Item::Message { text, .. } | Item::Call { arguments: text, .. }) = self.items.last_mut() {
            text.push_json(&out[escaped]);
        }
    }
}

impl ChatSink for Responses {
    fn chunk(&mut self, chunk: &Chunk<'_>, out: &mut Emit) {
        self.start(Some(chunk), out);
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.choices.first() else { return };
        let delta = choice.delta.as_ref();
        if let Some(text) = delta.and_then(|d| d.content.as_ref()).filter(|t| !t.as_str().is_empty()) {
            if !(self.open && matches!(self.items.last(), Some(Item::Message { .. }))) {
                let id = self.names().message_id();
                self.open(Item::Message { id, text: Text::default() }, out);
            }
            self.delta("response.output_text.delta", ",\"content_index\":0", text.as_str(), out);
            Out(out).raw(",\"logprobs\":[]}").end();
        }
        for call in delta.and_then(|d| d.tool_calls.as_ref()).into_iter().flatten() {
            let f = call.function.as_ref();
            if !(self.open && matches!(self.items.last(), Some(Item::Call { index, .. }) if *index == call.index)) {
                let s = |v: Option<&Str>| v.map_or("", Str::as_str).to_owned();
                let call_id = s(call.id.as_ref());
                let item = Item::Call {
                    index: call.index,
                    id: format!("fc_{call_id}"),
                    call_id,
                    name: s(f.and_then(|f| f.name.as_ref())),
                    arguments: Text::default(),
                };
                self.open(item, out);
            }
            if let Some(args) = f.and_then(|f| f.arguments.as_ref()).filter(|a| !a.as_str().is_empty()) {
                self.delta("response.function_call_arguments.delta", "", args.as_str(), out);
                Out(out).raw("}").end();
            }
        }
        if let Some(finish) = &choice.finish_reason {
            self.finish = Some(finish.as_str().to_owned());
        }
    }

    fn end(&mut self, out: &mut Emit) {
        self.start(None, out);
        self.close(out);
        let (status, incomplete) = status(self.finish.as_deref());
        let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
        self.event(out, kind).raw(",\"response\":");
        // The response object around its output, which shares the items' texts.
        let mut head = Vec::with_capacity(512);
        let mut tail = Vec::with_capacity(1024);
        let mut at_output = None;
        self.names().write_response(&mut Out(&mut head), status, incomplete, self.usage.as_ref(), |o| at_output = Some(o.0.len()));
        let split = at_output.expect("the output is written");
        tail.extend_from_slice(&head[split..]);
        head.truncate(split);
        out.extend_from_slice(&head);
        let mut items = std::mem::take(&mut self.items);
        for (at, item) in items.iter_mut().enumerate() {
            if at > 0 {
                out.push(b',');
            }
            item.write_done(out);
        }
        out.extend_from_slice(&tail);
        Out(out).raw("}").end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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
    fn a_responses_request_becomes_the_chat_request_it_means() {
        let body = json!({"model": "m", "instructions": "Be brief.", "max_output_tokens": 50, "stream": true, "user": "u1",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"role": "user", "content": [{"type": "input_text", "text": "Look"}, {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]}
            ],
            "tools": [{"type": "function", "name": "f", "description": "F", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}}});
        let chat: Value = serde_json::from_slice(&translate(body.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(
            chat,
            json!({"model": "m", "max_tokens": 50, "user": "u1", "stream": true,
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nUse tools."},
                    {"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
                    {"role": "assistant", "content": "Calling.", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "one"},
                    {"role": "tool", "tool_call_id": "c2", "content": "two"}
                ],
                "tools": [{"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}}})
        );
    }

    #[test]
    fn what_needs_state_or_a_built_in_tool_is_refused_naming_it() {
        for (body, names) in [
            (json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}), "previous_response_id"),
            (json!({"model": "m", "input": "hi", "store": true}), "store"),
            (json!({"model": "m", "input": "hi", "background": true}), "background"),
            (json!({"model": "m", "input": "hi", "conversation": "conv_1"}), "conversation"),
            (json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}), "web_search"),
            (json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}), "item_reference"),
            (json!({"model": "m"}), "input"),
        ] {
            let err = translate(body.to_string().as_bytes()).unwrap_err();
            assert!(err.contains(names), "{err}");
        }
        // Stateless calls that say so explicitly are served.
        assert!(translate(br#"{"model":"m","input":"hi","store":false,"previous_response_id":null}"#).is_ok());
        // Built-in tools only offered are not offered to a chat model; function tools are.
        let offered = json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}, {"type": "namespace", "name": "n", "tools": []},
            {"type": "function", "name": "f", "parameters": {"type": "object"}}]});
        let chat: Value = serde_json::from_slice(&translate(offered.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(chat["tools"], json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]));
        let only_builtin = json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]});
        let chat: Value = serde_json::from_slice(&translate(only_builtin.to_string().as_bytes()).unwrap()).unwrap();
        assert!(chat.get("tools").is_none(), "{chat}");
    }

    #[test]
    fn a_chat_answer_becomes_a_response_with_its_calls_status_and_usage() {
        let chat = json!({"id": "c1", "created": 7, "choices": [{"message": {"content": "Hi", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"q\":1}"}}]}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 8}}});
        let r: Value = serde_json::from_slice(&response_from_chat(chat.to_string().as_bytes(), "mine").unwrap()).unwrap();
        assert_eq!(r["model"], "mine");
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(
            r["output"][1],
            json!({"type": "function_call", "id": "fc_call_1", "call_id": "call_1", "name": "f", "arguments": "{\"q\":1}", "status": "completed"})
        );
        assert_eq!(r["usage"]["input_tokens"], 12);
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 8);
        assert_eq!(r["usage"]["output_tokens"], 3);
        assert_eq!(r["usage"]["total_tokens"], 15);
    }

    /// A chat stream of `text` then the tool calls `calls` (name, argument pieces), and usage.
    fn chat_stream(text: &[&str], calls: &[(&str, &[&str])], output: u64) -> String {
        let mut s = String::new();
        let mut chunk = |delta: Value, finish: Value| {
            s += &format!(
                "data: {}\n\n",
                json!({"id": "x", "created": 1, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            );
        };
        for t in text {
            chunk(json!({"content": t}), Value::Null);
        }
        for (i, (name, pieces)) in calls.iter().enumerate() {
            chunk(
                json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            );
            for p in *pieces {
                chunk(json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}), Value::Null);
            }
        }
        chunk(json!({}), json!(if calls.is_empty() { "stop" } else { "tool_calls" }));
        s += &format!(
            "data: {}\n\n",
            json!({"id": "x", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": output, "total_tokens": 5 + output}})
        );
        s + "data: [DONE]\n\n"
    }

    /// The output the events build, the way the SDKs accumulate them, checked for consistency.
    fn accumulate(events: &[Value]) -> (Vec<Value>, Value) {
        let mut output: Vec<Value> = Vec::new();
        let mut completed = Value::Null;
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], n as u64, "{e}");
            let at = e["output_index"].as_u64().unwrap_or(0) as usize;
            match e["type"].as_str().unwrap() {
                "response.output_item.added" => {
                    assert_eq!(at, output.len());
                    output.push(e["item"].clone());
                }
                "response.content_part.added" => output[at]["content"].as_array_mut().unwrap().push(e["part"].clone()),
                "response.output_text.delta" => {
                    let t = output[at]["content"][0]["text"].as_str().unwrap().to_owned() + e["delta"].as_str().unwrap();
                    output[at]["content"][0]["text"] = json!(t);
                }
                "response.function_call_arguments.delta" => {
                    let a = output[at]["arguments"].as_str().unwrap().to_owned() + e["delta"].as_str().unwrap();
                    output[at]["arguments"] = json!(a);
                }
                "response.output_item.done" => {
                    let mut built = output[at].clone();
                    built["status"] = json!("completed");
                    assert_eq!(built, e["item"], "the done item is what its deltas built");
                    output[at] = built;
                }
                "response.completed" | "response.incomplete" => completed = e["response"].clone(),
                _ => {}
            }
        }
        (output, completed)
    }

    #[test]
    fn a_chat_stream_becomes_responses_events_however_its_frames_split() {
        let src = chat_stream(&["Hel", "lo"], &[("f", &["{\"a\"", ":1}"]), ("g", &["{}"])], 9);
        let whole = {
            let mut t = ResponsesStream::new("mine");
            let mut out = t.frame(src.as_bytes()).concat();
            out.extend_from_slice(&t.finish().concat());
            out
        };
        for cut in 1..src.len() {
            let mut t = ResponsesStream::new("mine");
            let mut out = t.frame(&src.as_bytes()[..cut]).concat();
            out.extend_from_slice(&t.frame(&src.as_bytes()[cut..]).concat());
            out.extend_from_slice(&t.finish().concat());
            assert_eq!(out, whole, "split at {cut}");
        }
        let evs = events(&whole);
        assert_eq!(evs[0]["type"], "response.created");
        let (output, completed) = accumulate(&evs);
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["output"], json!(output));
        assert_eq!(output[0]["content"][0]["text"], "Hello");
        assert_eq!((output[1]["name"].as_str(), output[1]["arguments"].as_str()), (Some("f"), Some("{\"a\":1}")));
        assert_eq!((output[2]["name"].as_str(), output[2]["call_id"].as_str()), (Some("g"), Some("call_1")));
        assert_eq!(completed["usage"]["output_tokens"], 9);
        assert_eq!(completed["usage"]["input_tokens"], 5);
        // Each event names itself in its SSE `event:` line, as the SDKs read it.
        assert!(String::from_utf8_lossy(&whole).contains("event: response.output_text.delta\ndata: "));
    }

    #[test]
    fn a_long_text_is_kept_once_and_every_event_repeating_it_shares_it() {
        let piece = "ab\"c\\d é\n ".repeat(10);
        let pieces = vec![piece.as_str(); 2_000];
        let src = chat_stream(&pieces, &[], 7);
        let mut t = ResponsesStream::new("m");
        let mut frames = t.frame(src.as_bytes()).to_vec();
        frames.extend(t.finish());
        // Each sealed block goes out four times (output_text.done, content_part.done,
        // output_item.done, response.completed), every time the same allocation.
        let mut sent: std::collections::HashMap<*const u8, usize> = Default::default();
        for f in frames.iter().filter(|f| f.len() >= BLOCK && !f.starts_with(b"event: ")) {
            *sent.entry(f.as_ptr()).or_default() += 1;
        }
        assert!(sent.len() >= 3, "{} blocks", sent.len());
        assert!(sent.values().all(|&n| n == 4), "{sent:?}");
        let (items, completed) = accumulate(&events(&frames.concat()));
        let whole = piece.repeat(2_000);
        assert_eq!(items[0]["content"][0]["text"], whole.as_str());
        assert_eq!(completed["output"][0]["content"][0]["text"], whole.as_str());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn any_chat_stream_becomes_a_consistent_responses_stream_with_the_same_content_and_usage(
                text in proptest::collection::vec("[a-z \"\\\\]{0,6}", 0..4),
                calls in proptest::collection::vec(("[a-z_]{1,8}", proptest::collection::vec("[a-z0-9\":{} ,]{0,6}", 0..4)), 0..4),
                output in 0u64..1000,
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            ) {
                let text_refs: Vec<&str> = text.iter().map(String::as_str).collect();
                let piece_refs: Vec<Vec<&str>> = calls.iter().map(|(_, p)| p.iter().map(String::as_str).collect()).collect();
                let call_refs: Vec<(&str, &[&str])> = calls.iter().zip(&piece_refs).map(|((n, _), p)| (n.as_str(), p.as_slice())).collect();
                let src = chat_stream(&text_refs, &call_refs, output);
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(src.len() + 1)).collect();
                at.sort_unstable();
                let mut t = ResponsesStream::new("m");
                let mut out = Vec::new();
                let mut from = 0;
                for a in at {
                    out.extend_from_slice(&t.frame(&src.as_bytes()[from..a]).concat());
                    from = a;
                }
                out.extend_from_slice(&t.frame(&src.as_bytes()[from..]).concat());
                out.extend_from_slice(&t.finish().concat());
                let (items, completed) = accumulate(&events(&out));
                let joined: String = text.concat();
                let texts: Vec<&Value> = items.iter().filter(|i| i["type"] == "message").collect();
                if joined.is_empty() {
                    prop_assert!(texts.is_empty());
                } else {
                    prop_assert_eq!(texts[0]["content"][0]["text"].as_str(), Some(joined.as_str()));
                }
                let got: Vec<(String, String)> = items.iter().filter(|i| i["type"] == "function_call")
                    .map(|i| (i["name"].as_str().unwrap().to_owned(), i["arguments"].as_str().unwrap().to_owned())).collect();
                let want: Vec<(String, String)> = calls.iter().map(|(n, p)| (n.clone(), p.concat())).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(&completed["usage"]["output_tokens"], &json!(output));
                prop_assert_eq!(&completed["output"], &json!(items));
            }
        }
    }
}
