//! The last step: the upstream's answer goes back to the client as it arrives (status, chosen
//! headers, the admission's `x-ratelimit-*` headers, the body streamed), read for usage on its
//! way, and the call ends with it.
use super::anthropic::{self, MessagesStream};
use super::call::CallCtx;
use super::chat_stream::Frames;
use super::error;
use super::op::{Dialect, Translation};
use super::responses::{self, ResponsesStream};
use super::upstream::UpstreamBody;
use super::usage::{JsonEnds, SseUsage, Tokens};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use hyper::body::{Body as _, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

const MAAS_ENDPOINT: header::HeaderName = header::HeaderName::from_static("x-maas-endpoint");
const MAAS_TRIES: header::HeaderName = header::HeaderName::from_static("x-maas-tries");
const MAAS_FALLBACK: header::HeaderName = header::HeaderName::from_static("x-maas-fallback-model");

/// An upstream's answer, as forwarding got it.
pub struct Answer {
    pub resp: http::Response<UpstreamBody>,
    /// The gateway asked the stream for its usage chunk (which the client did not ask for, so
    /// it is cut on the way back).
    pub injected_usage: bool,
    /// How the answer is translated for the caller's API (its endpoint spoke chat completions).
    pub translation: Option<Translation>,
}

/// Headers of the upstream's answer that reach the caller (besides the body's framing).
fn passes_through(name: &header::HeaderName) -> bool {
    name == header::CONTENT_TYPE
        || name == header::CACHE_CONTROL
        || name.as_str().starts_with("x-request-id")
        || name.as_str().starts_with("openai-")
        // A rate-limited upstream's wait, on the 429 the caller sees when no endpoint is left.
        || name == header::RETRY_AFTER
        || name.as_str() == "retry-after-ms"
}

/// Status, selected headers and body of the upstream, streamed as it arrives. Dropping the
/// returned body (the client went away) drops the upstream response, which closes its
/// connection: the upstream sees the cancel. The call goes with the body and ends with it.
pub fn stream_back(answer: Answer, call: CallCtx) -> Response {
    let (parts, incoming) = answer.resp.into_parts();
    let ct = parts.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    let sse = ct.starts_with(b"text/event-stream");
    let translate = answer.translation.map(|t| Translate::new(t, parts.status.as_u16(), sse, call.model()));
    let mut headers = HeaderMap::with_capacity(8);
    for (k, v) in &parts.headers {
        if passes_through(k) && !(translate.is_some() && k == header::CONTENT_TYPE) {
            headers.append(k.clone(), v.clone());
        }
    }
    if let Some(t) = &translate {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(t.content_type()));
    }
    error::admission_headers(&mut headers, call.ticket());
    // Which endpoint answered (its id, never its URL) and after how many tries.
    if let Some((endpoint, tries)) = call.answered() {
        headers.insert(MAAS_ENDPOINT, HeaderValue::from(endpoint));
        headers.insert(MAAS_TRIES, HeaderValue::from(tries));
    }
    // The fallback model that answered, when the one asked for could not.
    if let Some(v) = call.fallback().and_then(|m| HeaderValue::from_str(m).ok()) {
        headers.insert(MAAS_FALLBACK, v);
    }
    if call.op().dialect() == Dialect::Anthropic {
        error::anthropic_admission_headers(&mut headers, call.ticket(), call.unix_ms());
    }
    // The body's exact size hint (upstream Content-Length) becomes our Content-Length.
    let body = if call.holds_something() || translate.is_some() {
        let scan = if !call.metered() {
            Scan::Off
        } else if sse {
            // A translated stream's usage chunk is the translation's to read, not to cut.
            Scan::Sse(SseUsage::new(answer.injected_usage && translate.is_none()))
        } else if ct.starts_with(b"application/json") {
            Scan::Json(JsonEnds::default())
        } else {
            Scan::Off
        };
        Body::new(AnswerBody { inner: incoming, scan, translate, call, held: None, ready: VecDeque::new(), ended: false, broke: false })
    } else {
        // Unmetered and holding nothing: the call's end has nothing to do (it ends here).
        Body::new(incoming)
    };
    let mut res = Response::new(body);
    *res.status_mut() = parts.status;
    *res.headers_mut() = headers;
    res
}

/// What a translated answer becomes on its way (see `op.rs`'s translations).
enum Translate {
    /// A chat stream, event by event, into Messages events.
    Messages(MessagesStream),
    /// A chat stream, event by event, into Responses events.
    Responses(ResponsesStream),
    /// A JSON answer (or an error) read whole, up to [`WHOLE_MAX`], and translated at its end.
    Whole { buf: Vec<u8>, status: u16, model: String, translation: Translation },
}

/// The most of a non-streamed answer read to be translated (a chat completion is kilobytes).
const WHOLE_MAX: usize = 16 << 20;

impl Translate {
    fn new(t: Translation, status: u16, sse: bool, model: &str) -> Self {
        match t {
            Translation::MessagesOverChat if sse && status < 400 => Translate::Messages(MessagesStream::new(model)),
            Translation::ResponsesOverChat if sse && status < 400 => Translate::Responses(ResponsesStream::new(model)),
            _ => Translate::Whole { buf: Vec::new(), status, model: model.to_owned(), translation: t },
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Translate::Messages(_) | Translate::Responses(_) => "text/event-stream",
            Translate::Whole { .. } => "application/json",
        }
    }

    fn frame(&mut self, data: &[u8]) -> Frames {
        match self {
            Translate::Messages(m) => m.frame(data),
            Translate::Responses(r) => r.frame(data),
            Translate::Whole { buf, .. } => {
                if buf.len() < WHOLE_MAX {
                    buf.extend_from_slice(&data[..data.len().min(WHOLE_MAX - buf.len())]);
                }
                Frames::new()
            }
        }
    }

    fn finish(&mut self) -> Frames {
        match self {
            Translate::Messages(m) => m.finish(),
            Translate::Responses(r) => r.finish(),
            Translate::Whole { buf, status, model, translation } => {
                let body = std::mem::take(buf);
                const UNREADABLE: &str = "The upstream's answer could not be read as a chat completion.";
                let out = match translation {
                    Translation::MessagesOverChat if *status >= 400 => anthropic::error_from_upstream(*status, &body),
                    Translation::MessagesOverChat => {
                        anthropic::message_from_chat(&body, model).unwrap_or_else(|| anthropic::error_body(502, UNREADABLE))
                    }
                    // Chat's errors are OpenAI's, as the Responses API's are.
                    Translation::ResponsesOverChat if *status >= 400 => body,
                    Translation::ResponsesOverChat => responses::response_from_chat(&body, model).unwrap_or_else(|| {
                        serde_json::to_vec(
                            &serde_json::json!({"error": {"message": UNREADABLE, "type": "api_error", "param": null, "code": null}}),
                        )
                        .expect("a JSON value serializes")
                    }),
                };
                Frames::from_buf([Bytes::from(out)])
            }
        }
    }
}

/// What is read of an answer as it passes through.
enum Scan {
    Json(JsonEnds),
    Sse(SseUsage),
    /// Neither JSON nor a stream (an upstream's HTML error page…), or metering off.
    Off,
}

/// The upstream's answer on its way to the client. The call ends as soon as the answer is over
/// (before its last bytes are handed on, so a client's next call already sees its limits
/// settled), or when hyper drops the body (the client left).
struct AnswerBody {
    inner: UpstreamBody,
    scan: Scan,
    /// The answer's translation for the caller's API, if its upstream speaks another.
    translate: Option<Translate>,
    call: CallCtx,
    /// What the SSE reader held back until the end (an event without its blank line).
    held: Option<Bytes>,
    /// Frames ready for the client, in order (a translated frame may be several).
    ready: VecDeque<Bytes>,
    ended: bool,
    broke: bool,
}

impl AnswerBody {
    /// The tokens the answer reports (`None`: unknown).
    fn tokens(&self) -> Option<Tokens> {
        match &self.scan {
            Scan::Json(j) => j.usage(),
            Scan::Sse(s) => s.tokens,
            Scan::Off => None,
        }
    }

    /// Whether something waits for the upstream's end to go out (a translation always may).
    fn holds(&self) -> bool {
        self.held.is_some() || self.translate.is_some() || matches!(&self.scan, Scan::Sse(s) if s.holds())
    }

    /// The answer is over: the call ends.
    fn over(&mut self) {
        self.ended = true;
        let tokens = self.tokens();
        self.call.answer_over(true, false, tokens);
    }

    fn sent(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.call.first_byte();
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return self.sent(b);
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                None => {
                    if let Scan::Sse(s) = &mut self.scan {
                        self.held = s.finish();
                    }
                    let held = self.held.take();
                    let mut tail = Frames::new();
                    if let Some(t) = &mut self.translate {
                        if let Some(h) = held {
                            tail.extend(t.frame(&h));
                        }
                        tail.extend(t.finish());
                    } else {
                        tail.extend(held);
                    }
                    self.ready.extend(tail.into_iter().filter(|b| !b.is_empty()));
                    if !self.ready.is_empty() {
                        self.call.first_byte();
                    }
                    self.over();
                }
                Some(Err(e)) => {
                    self.broke = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let data = match &mut self.scan {
                            Scan::Json(j) => {
                                j.feed(&data);
                                data
                            }
                            Scan::Sse(s) => s.frame(data),
                            Scan::Off => data,
                        };
                        match &mut self.translate {
                            Some(t) => {
                                let frames = t.frame(&data);
                                self.ready.extend(frames.into_iter().filter(|b| !b.is_empty()));
                            }
                            None if !data.is_empty() => self.ready.push_back(data),
                            None => {}
                        }
                        // A body with a length is over with its last byte: hyper may not poll again.
                        if self.inner.is_end_stream() && !self.holds() {
                            if !self.ready.is_empty() {
                                self.call.first_byte();
                            }
                            self.over();
                        }
                        if let Some(b) = self.ready.pop_front() {
                            return self.sent(b);
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && (self.ended && self.held.is_none() || (self.inner.is_end_stream() && !self.holds()))
    }

    fn size_hint(&self) -> SizeHint {
        // An SSE body may lose an event (the injected usage), a translated one is another body:
        // their length is no longer known.
        match &self.scan {
            _ if self.translate.is_some() => SizeHint::default(),
            Scan::Sse(_) => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        // Over already, or cut: broken off by the upstream, or left by the client (what usage
        // arrived counts, else the estimate).
        let ended = self.ended || (self.inner.is_end_stream() && !self.holds());
        let tokens = self.tokens();
        self.call.answer_over(ended, self.broke, tokens);
    }
}
