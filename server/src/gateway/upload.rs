//! Multipart uploads (`multipart/form-data`: audio to transcribe or translate, images to edit),
//! read from the client as they arrive and spooled, never held whole in memory, so that every
//! endpoint tried gets the same body with its own model name.
//!
//! The form is re-encoded on its way in: its parts, except `model`, are written with the
//! gateway's own boundary to the spool (memory up to [`IN_MEMORY`], beyond it an anonymous
//! temporary file: unlinked from the start, so nothing is left behind if the process dies).
//! Each try sends the endpoint's `model` part first, then the spool, then the closing boundary,
//! with an exact Content-Length. Text fields (parts without a file name) are also gathered as a
//! JSON object, which the request path reads as it reads a JSON body (the model, `n`).
use super::error::GatewayError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue};
use hyper::body::{Frame, SizeHint};
use serde_json::{Map, Value};
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;

/// What of a spool stays in memory before it moves to a file.
const IN_MEMORY: usize = 1 << 20;
/// A text field longer than this is passed on but not read (a prompt is a few kilobytes).
const TEXT_MAX: usize = 64 << 10;
/// The pieces a spooled file is sent in.
const CHUNK: u64 = 256 << 10;

/// A multipart request, read and spooled.
pub struct Upload {
    /// The text fields as a JSON object (the first of each name, `model` included).
    pub fields: Vec<u8>,
    boundary: String,
    spool: Spool,
}

enum Spool {
    Memory(Bytes),
    File { file: Arc<std::fs::File>, len: u64 },
}

/// Whether a request's body is a multipart form.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().get(..19).is_some_and(|m| m.eq_ignore_ascii_case("multipart/form-data")))
}

impl Upload {
    /// Reads the form of `body` within `limit` bytes (413 beyond it): a truncated body, broken
    /// framing or a form without its boundary is a 400 that says so.
    pub async fn read(body: Body, headers: &HeaderMap, limit: usize) -> Result<Upload, GatewayError> {
        if super::body::declared_length(headers).is_some_and(|n| n > limit) {
            return Err(GatewayError::BodyTooLarge(limit));
        }
        let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let theirs = multer::parse_boundary(ct).map_err(|_| {
            GatewayError::BadRequest(format!("We could not read your upload: its Content-Type ({ct:?}) names no multipart boundary."))
        })?;
        let limits = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
        let mut form = multer::Multipart::with_constraints(body.into_data_stream(), theirs, limits);
        let boundary = format!("maas-{:032x}", rand::random::<u128>());
        let mut fields = Map::new();
        let mut spool = SpoolWriter::default();
        let unreadable = |e: multer::Error| form_error(e, limit);
        while let Some(mut field) = form.next_field().await.map_err(unreadable)? {
            let name = field.name().unwrap_or("").to_owned();
            let text = field.file_name().is_none();
            let head = part_head(&boundary, field.headers());
            // A text field is read (up to TEXT_MAX) before it is written: `model` is not.
            let mut start = Vec::new();
            let mut spilled = false;
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                if text && !spilled && start.len() + chunk.len() <= TEXT_MAX {
                    start.extend_from_slice(&chunk);
                    continue;
                }
                if !spilled {
                    spilled = true;
                    spool.write(&head).await?;
                    spool.write(&start).await?;
                }
                spool.write(&chunk).await?;
            }
            if text && !spilled {
                let value = String::from_utf8_lossy(&start).into_owned();
                let is_model = name == "model";
                if !fields.contains_key(&name) {
                    fields.insert(name, Value::String(value));
                }
                if is_model {
                    continue;
                }
                spool.write(&head).await?;
                spool.write(&start).await?;
            }
            spool.write(b"\r\n").await?;
        }
        let fields = serde_json::to_vec(&fields).expect("a JSON object serializes");
        Ok(Upload { fields, boundary, spool: spool.finish().await? })
    }

    /// The body for an endpoint whose model is `model`, and its Content-Type.
    pub fn body_for(&self, model: &str) -> UploadBody {
        let head = format!("--{b}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n", b = self.boundary);
        let tail = format!("--{}--\r\n", self.boundary);
        let (spool, spool_len) = match &self.spool {
            Spool::Memory(b) => (Reader::Memory(Some(b.clone())), b.len() as u64),
            Spool::File { file, len } => (Reader::File { file: file.clone(), at: 0, len: *len, pending: None }, *len),
        };
        let content_type = HeaderValue::from_str(&format!("multipart/form-data; boundary={}", self.boundary)).expect("a plain boundary");
        UploadBody {
            remaining: (head.len() + tail.len()) as u64 + spool_len,
            head: Some(Bytes::from(head)),
            spool,
            tail: Some(Bytes::from(tail)),
            content_type,
        }
    }
}

/// A part's opening: the boundary and the part's own headers (its name, file name, type).
fn part_head(boundary: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut head = format!("--{boundary}\r\n").into_bytes();
    for (k, v) in headers {
        head.extend_from_slice(k.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// What went wrong reading the form, for its caller (multer counts the limit itself).
fn form_error(e: multer::Error, limit: usize) -> GatewayError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => GatewayError::BodyTooLarge(limit),
        multer::Error::IncompleteStream | multer::Error::IncompleteFieldData { .. } | multer::Error::IncompleteHeaders => {
            GatewayError::BadRequest(
                "We could not read your upload: the multipart body ended before its closing boundary (truncated).".into(),
            )
        }
        e => GatewayError::BadRequest(format!("We could not read your upload as multipart/form-data: {e}")),
    }
}

/// The spool as it is written: memory, then a file once it outgrows [`IN_MEMORY`].
#[derive(Default)]
struct SpoolWriter {
    mem: Vec<u8>,
    file: Option<(tokio::fs::File, u64)>,
}

impl SpoolWriter {
    async fn write(&mut self, b: &[u8]) -> Result<(), GatewayError> {
        match &mut self.file {
            Some((f, len)) => {
                *len += b.len() as u64;
                f.write_all(b).await.map_err(spool_error)
            }
            None if self.mem.len() + b.len() <= IN_MEMORY => {
                self.mem.extend_from_slice(b);
                Ok(())
            }
            None => {
                let f = tokio::task::spawn_blocking(tempfile::tempfile).await.map_err(|e| spool_error(e.into()))?.map_err(spool_error)?;
                let mut f = tokio::fs::File::from_std(f);
                let mem = std::mem::take(&mut self.mem);
                f.write_all(&mem).await.map_err(spool_error)?;
                f.write_all(b).await.map_err(spool_error)?;
                self.file = Some((f, (mem.len() + b.len()) as u64));
                Ok(())
            }
        }
    }

    async fn finish(self) -> Result<Spool, GatewayError> {
        match self.file {
            Some((mut f, len)) => {
                f.flush().await.map_err(spool_error)?;
                Ok(Spool::File { file: Arc::new(f.into_std().await), len })
            }
            None => Ok(Spool::Memory(Bytes::from(self.mem))),
        }
    }
}

/// The gateway could not spool (a full disk): its own fault, said without the path.
fn spool_error(e: std::io::Error) -> GatewayError {
    tracing::error!(error = %e, "could not spool an upload to a temporary file");
    GatewayError::Internal("The gateway could not store your upload for forwarding.".into())
}

/// One try's body: the `model` part, the spool, the closing boundary.
pub struct UploadBody {
    head: Option<Bytes>,
    spool: Reader,
    tail: Option<Bytes>,
    remaining: u64,
    pub content_type: HeaderValue,
}

enum Reader {
    Memory(Option<Bytes>),
    /// Read at positions, not through the file's offset: tries share the file, and a try's
    /// body may still be read after the next try started (an upstream that answered early).
    File {
        file: Arc<std::fs::File>,
        at: u64,
        len: u64,
        pending: Option<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
    },
}

impl Reader {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        match self {
            Reader::Memory(b) => Poll::Ready(b.take().filter(|b| !b.is_empty()).map(Ok)),
            Reader::File { file, at, len, pending } => {
                if pending.is_none() {
                    if *at >= *len {
                        return Poll::Ready(None);
                    }
                    let (file, from, n) = (file.clone(), *at, CHUNK.min(*len - *at) as usize);
                    *pending = Some(tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0; n];
                        file.read_exact_at(&mut buf, from)?;
                        Ok(Bytes::from(buf))
                    }));
                }
                let handle = pending.as_mut().expect("set above");
                let read = std::task::ready!(Pin::new(handle).poll(cx));
                *pending = None;
                let read = read.map_err(std::io::Error::other).and_then(|r| r);
                if let Ok(b) = &read {
                    *at += b.len() as u64;
                }
                Poll::Ready(Some(read))
            }
        }
    }
}

impl hyper::body::Body for UploadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let next = match this.head.take() {
            Some(h) => Some(Ok(h)),
            None => match std::task::ready!(this.spool.poll_next(cx)) {
                Some(r) => Some(r),
                None => this.tail.take().map(Ok),
            },
        };
        if let Some(Ok(b)) = &next {
            this.remaining = this.remaining.saturating_sub(b.len() as u64);
        }
        Poll::Ready(next.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
