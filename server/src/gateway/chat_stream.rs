//! A chat completions stream read chunk by chunk for a translator (Messages, Responses): the
//! SSE framing is undone here once (an event split across frames waits for its end, `[DONE]`
//! and a stream that ends without it both end it), and each translator says what a chunk and
//! the end become in its own events.
//!
//! Chunks and completions are read into borrowing structs of just the members translators use,
//! and the translators write their events straight into the output: no JSON tree is built on
//! either side (it cost tens of microseconds per call).
use super::usage::event_end;
use axum::body::Bytes;
use serde::Deserialize;
use std::borrow::Cow;

/// A string member, borrowed from the input unless it holds escapes.
#[derive(Deserialize, Debug, Default, Clone)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Str<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A string member's text, or `default` when it is absent.
pub fn str_or<'s>(v: &'s Option<Str>, default: &'s str) -> &'s str {
    v.as_ref().map_or(default, Str::as_str)
}

/// Any object with a `text` member (a Messages block, a Responses part).
#[derive(Deserialize)]
struct TextPart<'a> {
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

/// The text of a content given as a string, or as an array of blocks or parts: their `text`s,
/// joined by newlines. Anything else is no text.
pub fn text_of(raw: Option<&serde_json::value::RawValue>) -> String {
    let Some(raw) = raw else { return String::new() };
    match raw.get().as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Str>(raw.get()).map(|s| s.0.into_owned()).unwrap_or_default(),
        Some(b'[') => serde_json::from_str::<Vec<TextPart>>(raw.get())
            .map(|parts| parts.iter().filter_map(|p| p.text.as_ref().map(Str::as_str)).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Chat's `usage`, with the details translators report.
#[derive(Deserialize, Debug, Default, Clone, Copy)]
pub struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    pub total_tokens: Option<u64>,
    pub prompt_tokens_details: Option<TokenDetails>,
    pub completion_tokens_details: Option<TokenDetails>,
}

#[derive(Deserialize, Debug, Default, Clone, Copy)]
pub struct TokenDetails {
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl ChatUsage {
    pub fn cached(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }

    pub fn reasoning(&self) -> u64 {
        self.completion_tokens_details.map_or(0, |d| d.reasoning_tokens)
    }

    pub fn total(&self) -> u64 {
        self.total_tokens.unwrap_or(self.prompt_tokens + self.completion_tokens)
    }
}

/// A chat stream's chunk.
#[derive(Deserialize, Debug, Default)]
pub struct Chunk<'a> {
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    pub created: Option<u64>,
    #[serde(borrow, default)]
    pub choices: Vec<StreamChoice<'a>>,
    pub usage: Option<ChatUsage>,
}

#[derive(Deserialize, Debug, Default)]
pub struct StreamChoice<'a> {
    #[serde(borrow)]
    pub delta: Option<Delta<'a>>,
    #[serde(borrow)]
    pub finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize, Debug, Default)]
pub struct Delta<'a> {
    #[serde(borrow)]
    pub content: Option<Str<'a>>,
    #[serde(borrow)]
    pub tool_calls: Option<Vec<CallDelta<'a>>>,
}

/// A piece of a tool call: its first names it, the next ones add to its arguments.
#[derive(Deserialize, Debug, Default)]
pub struct CallDelta<'a> {
    #[serde(default)]
    pub index: u64,
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    #[serde(borrow)]
    pub function: Option<Function<'a>>,
}

#[derive(Deserialize, Debug, Default)]
pub struct Function<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub arguments: Option<Str<'a>>,
}

/// A (non-streamed) chat completion.
#[derive(Deserialize, Debug)]
pub struct Completion<'a> {
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    pub created: Option<u64>,
    #[serde(borrow)]
    pub choices: Vec<Choice<'a>>,
    pub usage: Option<ChatUsage>,
}

#[derive(Deserialize, Debug)]
pub struct Choice<'a> {
    #[serde(borrow)]
    pub message: Message<'a>,
    #[serde(borrow)]
    pub finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize, Debug)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub content: Option<Str<'a>>,
    #[serde(borrow)]
    pub tool_calls: Option<Vec<CallDelta<'a>>>,
}

/// Writes JSON by hand into an output buffer: fixed parts as they are, strings escaped.
pub struct Out<'o>(pub &'o mut Vec<u8>);

impl Out<'_> {
    pub fn raw(&mut self, b: &str) -> &mut Self {
        self.0.extend_from_slice(b.as_bytes());
        self
    }

    /// `s` as a JSON string, quotes included.
    pub fn str(&mut self, s: &str) -> &mut Self {
        serde_json::to_writer(&mut *self.0, s).expect("a string serializes");
        self
    }

    /// `,"key":value`: a member copied as the caller wrote it.
    pub fn member(&mut self, key: &str, value: &serde_json::value::RawValue) -> &mut Self {
        self.raw(",\"").raw(key).raw("\":").raw(value.get())
    }

    pub fn num(&mut self, n: u64) -> &mut Self {
        self.0.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }

    /// `event: kind\ndata: ` before an event's JSON.
    pub fn event(&mut self, kind: &str) -> &mut Self {
        self.raw("event: ").raw(kind).raw("\ndata: ")
    }

    /// The blank line after an event's JSON.
    pub fn end(&mut self) -> &mut Self {
        self.raw("\n\n")
    }
}

/// The commas between a list's elements: none before the first.
#[derive(Default)]
pub struct Commas(bool);

impl Commas {
    /// Before an element: a comma unless it is the first.
    pub fn next(&mut self, o: &mut Out) {
        if std::mem::replace(&mut self.0, true) {
            o.raw(",");
        }
    }
}

/// What a translated stream sends for one frame of the upstream's: usually one buffer; more
/// when a translator repeats what it keeps (see [`Emit::share`]).
pub type Frames = smallvec::SmallVec<[Bytes; 1]>;

/// Where a translator writes its events: bytes it writes (the `Vec` this derefs to), and
/// buffers it keeps and sends again as they are ([`Emit::share`]), so that a text an API
/// repeats in several events is held once and never copied for them.
#[derive(Default)]
pub struct Emit {
    buf: Vec<u8>,
    frames: Frames,
}

impl Emit {
    /// Sends `b` next, after what was written so far (a reference to it, not a copy).
    pub fn share(&mut self, b: &Bytes) {
        self.cut();
        self.frames.push(b.clone());
    }

    fn cut(&mut self) {
        if !self.buf.is_empty() {
            self.frames.push(Bytes::from(std::mem::take(&mut self.buf)));
        }
    }

    fn frames(mut self) -> Frames {
        self.cut();
        self.frames
    }
}

impl std::ops::Deref for Emit {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl std::ops::DerefMut for Emit {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// What a translator makes of a chat stream.
pub trait ChatSink {
    /// One parsed chunk (`{"choices": [{"delta": …}], "usage": …}`): its events go to `out`.
    fn chunk(&mut self, chunk: &Chunk<'_>, out: &mut Emit);
    /// The stream is over (`[DONE]`, or its end): the closing events. Called once.
    fn end(&mut self, out: &mut Emit);
}

/// A chat stream turned into another API's events as it arrives.
pub struct ChatStream<S> {
    /// An event split across frames: its start, until its end arrives.
    partial: Vec<u8>,
    done: bool,
    pub sink: S,
}

impl<S: ChatSink> ChatStream<S> {
    pub fn with(sink: S) -> Self {
        ChatStream { partial: Vec::new(), done: false, sink }
    }

    /// The translated events for `frame` of the chat stream (whole events only; a split one waits).
    pub fn frame(&mut self, frame: &[u8]) -> Frames {
        self.partial.extend_from_slice(frame);
        let mut out = Emit::default();
        while let Some(end) = event_end(&self.partial) {
            let event: Vec<u8> = self.partial.drain(..end).collect();
            self.event(&event, &mut out);
        }
        out.frames()
    }

    fn event(&mut self, event: &[u8], out: &mut Emit) {
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(data) = line.strip_prefix(b"data:") else { continue };
            let data = data.strip_prefix(b" ").unwrap_or(data);
            if data == b"[DONE]" {
                self.end(out);
            } else if self.done {
                // Nothing after the end.
            } else if let Ok(chunk) = serde_json::from_slice::<Chunk>(data) {
                self.sink.chunk(&chunk, out);
            }
        }
    }

    fn end(&mut self, out: &mut Emit) {
        if !self.done {
            self.done = true;
            self.sink.end(out);
        }
    }

    /// The chat stream ended cleanly: an event without its blank line is read, and the
    /// translated stream ends if `[DONE]` did not end it.
    pub fn finish(&mut self) -> Frames {
        let mut out = Emit::default();
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.event(&rest, &mut out);
        }
        self.end(&mut out);
        out.frames()
    }
}
