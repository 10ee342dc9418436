//! A chat completions stream read chunk by chunk for a translator (Messages, Responses): the
//! SSE framing is undone here once (an event split across frames waits for its end, `[DONE]`
//! and a stream that ends without it both end it), and each translator says what a chunk and
//! the end become in its own events.
use super::usage::event_end;
use axum::body::Bytes;
use serde_json::Value;

/// What a translator makes of a chat stream.
pub trait ChatSink {
    /// One parsed chunk (`{"choices": [{"delta": …}], "usage": …}`): its events go to `out`.
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>);
    /// The stream is over (`[DONE]`, or its end): the closing events. Called once.
    fn end(&mut self, out: &mut Vec<u8>);
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
    pub fn frame(&mut self, frame: &[u8]) -> Bytes {
        self.partial.extend_from_slice(frame);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.partial) {
            let event: Vec<u8> = self.partial.drain(..end).collect();
            self.event(&event, &mut out);
        }
        Bytes::from(out)
    }

    fn event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(data) = line.strip_prefix(b"data:") else { continue };
            let data = data.strip_prefix(b" ").unwrap_or(data);
            if data == b"[DONE]" {
                self.end(out);
            } else if self.done {
                // Nothing after the end.
            } else if let Ok(chunk) = serde_json::from_slice::<Value>(data) {
                self.sink.chunk(&chunk, out);
            }
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.done = true;
            self.sink.end(out);
        }
    }

    /// The chat stream ended cleanly: an event without its blank line is read, and the
    /// translated stream ends if `[DONE]` did not end it.
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.event(&rest, &mut out);
        }
        self.end(&mut out);
        Bytes::from(out)
    }
}

/// Writes one SSE event (`event: kind`, `data: json`).
pub fn sse_event(out: &mut Vec<u8>, kind: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(&mut *out, data).expect("a JSON value serializes");
    out.extend_from_slice(b"\n\n");
}
