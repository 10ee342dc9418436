//! Forwarding with failover: the endpoints of a model in the order its policy gives, each tried
//! at most once ([`try_endpoint`]), a full one (at its cap) after the others, until one answers.
use super::answer::Answer;
use super::body::RequestBody;
use super::call::CallCtx;
use super::clock::SharedClock;
use super::error::GatewayError;
use super::load::InFlight;
use super::op::{Op, Translation};
use super::record::FailReason;
use super::slots::{self, Slot, Slots};
use super::snapshot::{Endpoint, Mode, Route};
use super::upload::Upload;
use super::upstream::{Payload, SendError, Upstream, UpstreamBody};
use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Duration;

/// What forwarding needs of the gateway.
pub struct Forwarder {
    pub upstream: Upstream,
    pub clock: SharedClock,
    /// Time allowed until an upstream's response headers arrive (streams may run longer).
    pub first_byte_timeout: Duration,
    /// Failures in a row that cool an endpoint down, and for how long.
    pub fail_threshold: u32,
    pub cooldown: Duration,
    /// When every endpoint is at its cap: how long a call waits for a slot, and how many calls
    /// of one model may wait at once.
    pub slot_wait: Duration,
    pub slot_queue: usize,
}

/// The call as it goes upstream: the parsed body (its `model` replaced per endpoint) for an
/// endpoint that speaks the operation's API, its translation for one that speaks chat
/// completions (`None`: none, or one that could not be made), the caller's `Accept` and
/// Anthropic headers, and `stream_options` to ask a stream for its usage chunk, if the gateway
/// adds them (for the body as it is, and for its translation).
pub struct Outgoing<'a> {
    pub op: Op,
    pub body: &'a RequestBody<'a>,
    /// A multipart call's form (`body` is then its text fields): what every endpoint is sent,
    /// with its own model.
    pub upload: Option<&'a Upload>,
    /// The conversation key the cache-affinity policy routes by, hashed (`affinity.rs`).
    pub affinity: Option<u64>,
    pub translated: Option<&'a RequestBody<'a>>,
    pub accept: Option<&'a HeaderValue>,
    /// `anthropic-version` and `anthropic-beta`, for an endpoint that speaks Messages natively.
    pub anthropic: SmallVec<[(HeaderName, HeaderValue); 2]>,
    pub stream_options: Option<String>,
    pub translated_stream_options: Option<String>,
}

/// The key header Anthropic's API reads.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// One endpoint's try.
enum Try {
    /// It answered: the call goes back with it, with whether the gateway asked for its usage
    /// chunk and how its answer is translated.
    Answered(Reply),
    /// It failed for `why`: the next endpoint may be tried. `reply`: the error it answered (a
    /// 5xx, a 429), the caller's to see if no other try follows; else `error`.
    Failed { why: FailReason, reply: Option<Reply>, error: GatewayError },
    /// It cannot take the call: its URL does not parse (validated at save time: only a
    /// hand-edited database gets here), or it speaks neither the operation's API nor chat
    /// completions the call could be translated to.
    Skipped,
}

/// An upstream's response and what goes with it to the caller.
struct Reply {
    resp: http::Response<UpstreamBody>,
    injected_usage: bool,
    translation: Option<Translation>,
    in_flight: Option<InFlight>,
}

impl Forwarder {
    /// Sends the call to the model's endpoints in its policy's order until one answers, as its
    /// retry policy allows. `last_resort`: no fallback model follows, so the last endpoint's
    /// error answer (a 5xx, a 429) is the caller's to see rather than a reason to fall back.
    pub async fn with_failover(
        &self,
        route: &Route,
        out: &Outgoing<'_>,
        call: &mut CallCtx,
        last_resort: bool,
    ) -> Result<Answer, GatewayError> {
        let now = self.clock.now_ms();
        let n = route.endpoints.len();
        route.retry.budget.deposit();
        // Fused: asked again after it ran out, when a waited-for endpoint failed.
        let usable = |i: usize| route.endpoints[i].usable(now);
        let mut candidates = route.balancer.candidates_for(n, &usable, out.affinity).fuse();
        // Endpoints skipped because they were at their cap, to wait on once the others were tried.
        let mut full: SmallVec<[(usize, Arc<Slots>); 4]> = SmallVec::new();
        let mut failure = GatewayError::UpstreamUnavailable;
        // The last failed try's error answer and its slot, given to the caller if no try follows.
        let mut pending: Option<(i64, Reply, Option<Slot>)> = None;
        let mut tries = 0usize;
        loop {
            let next = match self.next_endpoint(route, &mut candidates, &mut full).await {
                Ok(next) => next,
                Err(busy) => {
                    failure = busy;
                    None
                }
            };
            let Some((i, slot)) = next else { break };
            if tries > 0 {
                if !route.retry.may_try(tries, n) {
                    break;
                }
                if !route.retry.budget.withdraw(self.clock.now_ms()) {
                    call.retry_refused();
                    tracing::warn!(model = %route.name, "retry budget spent: not retrying");
                    break;
                }
            }
            tries += 1;
            let ep = &route.endpoints[i];
            match self.try_endpoint(route, i, out, call).await {
                Try::Answered(reply) => return Ok(self.answer(call, ep.id, reply, slot)),
                Try::Failed { why, reply, error } => {
                    failure = error;
                    pending = reply.map(|r| (ep.id, r, slot));
                    if !route.retry.retries(why) {
                        break;
                    }
                }
                Try::Skipped => tries -= 1,
            }
        }
        match pending {
            Some((endpoint, reply, slot)) if last_resort => Ok(self.answer(call, endpoint, reply, slot)),
            _ => Err(failure),
        }
    }

    fn answer(&self, call: &mut CallCtx, endpoint: i64, r: Reply, slot: Option<Slot>) -> Answer {
        call.answered_by(endpoint, r.resp.status().as_u16(), slot, r.in_flight);
        Answer { resp: r.resp, injected_usage: r.injected_usage, translation: r.translation }
    }

    /// The next endpoint to try and its slot: the policy's next with a free slot, else (when
    /// only full ones are left) the first of them to free one; `None` when all were tried.
    async fn next_endpoint(
        &self,
        route: &Route,
        candidates: &mut impl Iterator<Item = usize>,
        full: &mut SmallVec<[(usize, Arc<Slots>); 4]>,
    ) -> Result<Option<(usize, Option<Slot>)>, GatewayError> {
        for i in candidates.by_ref() {
            // Drained, or out after failed health checks: never tried, not even as a last resort.
            if route.endpoints[i].out_of_rotation() {
                continue;
            }
            match &route.endpoints[i].slots {
                None => return Ok(Some((i, None))),
                Some(s) => match s.try_take() {
                    Some(slot) => return Ok(Some((i, Some(slot)))),
                    None => full.push((i, s.clone())),
                },
            }
        }
        if full.is_empty() {
            return Ok(None);
        }
        match slots::wait_any(full, &route.waiting, self.slot_queue, self.slot_wait).await {
            Ok((i, slot)) => {
                full.retain(|(j, _)| *j != i);
                Ok(Some((i, Some(slot))))
            }
            Err(why) => Err(GatewayError::EndpointsBusy { model: route.name.to_string(), why }),
        }
    }

    /// Sends the call to endpoint `i` (with its own key, never the caller's).
    async fn try_endpoint(&self, route: &Route, i: usize, out: &Outgoing<'_>, call: &mut CallCtx) -> Try {
        let ep = &route.endpoints[i];
        let mut extra: SmallVec<[(HeaderName, HeaderValue); 3]> = SmallVec::new();
        let (op, body, stream_options, translation) = match ep.mode(out.op) {
            Mode::Native => {
                if out.op == Op::Messages {
                    extra.extend(ep.x_api_key.iter().map(|k| (X_API_KEY, k.clone())));
                    extra.extend(out.anthropic.iter().cloned());
                }
                (out.op, out.body, &out.stream_options, None)
            }
            Mode::Translated(t) => match out.translated {
                Some(body) => (t.upstream(), body, &out.translated_stream_options, Some(t)),
                None => return Try::Skipped,
            },
            Mode::Cannot => return Try::Skipped,
        };
        let Some(target) = ep.target(op) else {
            tracing::warn!(model = %route.name, endpoint = i, "endpoint URL does not parse");
            return Try::Skipped;
        };
        // Counted in flight (and timed) for the policies that read it, from the send to the end
        // of the answer.
        let reads_load = route.policy.counts_load();
        let in_flight = reads_load.then(|| ep.load.enter());
        let sent_ms = self.clock.now_ms();
        let send = |body: Payload| {
            tokio::time::timeout(self.first_byte_timeout, self.upstream.post(target, ep.auth.as_ref(), out.accept, &extra, body))
        };
        let mut injected = stream_options.as_deref().filter(|_| !ep.skip_stream_usage && !ep.health.refuses_stream_options());
        let mut answer = match out.upload {
            Some(form) => send(Payload::Form(form.body_for(&ep.model_id))).await,
            None => send(Payload::Json(Bytes::from(body.rewritten(&ep.model_json, injected)))).await,
        };
        // An upstream that refuses the `stream_options` we added (older servers validate every
        // field): the same request without them, and that endpoint's streams go without from
        // now on. A 400 it gives again is the caller's to see.
        if injected.is_some() && matches!(&answer, Ok(Ok(r)) if r.status() == http::StatusCode::BAD_REQUEST) {
            ep.health.set_refuses_stream_options();
            tracing::warn!(model = %route.name, endpoint = i, "upstream refused stream_options.include_usage; its streams are sent without it (usage unknown)");
            injected = None;
            answer = send(Payload::Json(Bytes::from(body.with_model(&ep.model_json)))).await;
        }
        call.tried();
        let reply = |resp, in_flight| Reply { resp, injected_usage: injected.is_some(), translation, in_flight };
        match answer {
            // Rate-limited upstream (a provider's quota, a server's queue): rested for as long as
            // it asks (`retry-after-ms`, `Retry-After` seconds; at most MAX_REST); its 429 is the
            // caller's to see if no other try follows.
            Ok(Ok(resp)) if resp.status() == http::StatusCode::TOO_MANY_REQUESTS => {
                let rest = retry_after_ms(resp.headers()).unwrap_or(self.cooldown.as_millis() as u64).min(MAX_REST_MS);
                ep.health.rest_until(self.clock.now_ms() + rest);
                call.failed_on(ep.id, FailReason::Status429);
                tracing::warn!(model = %route.name, endpoint = i, rest_ms = rest, "upstream 429, resting the endpoint");
                let error = GatewayError::UpstreamUnavailable;
                Try::Failed { why: FailReason::Status429, reply: Some(reply(resp, in_flight)), error }
            }
            Ok(Ok(resp)) if resp.status().is_server_error() => {
                self.failed(ep, FailReason::Status5xx, call);
                tracing::warn!(model = %route.name, endpoint = i, status = %resp.status(), "upstream 5xx");
                Try::Failed { why: FailReason::Status5xx, reply: Some(reply(resp, in_flight)), error: GatewayError::UpstreamUnavailable }
            }
            Ok(Ok(resp)) => {
                ep.health.success();
                if reads_load {
                    ep.load.observe_ttfb(self.clock.now_ms().saturating_sub(sent_ms) * 1000);
                }
                Try::Answered(reply(resp, in_flight))
            }
            Ok(Err(e)) => {
                tracing::warn!(model = %route.name, endpoint = i, error = %e, "upstream unreachable");
                let (why, error) = match e {
                    SendError::ConnectTimeout => (FailReason::ConnectTimeout, GatewayError::UpstreamTimeout),
                    SendError::Unreachable(_) => (FailReason::Unreachable, GatewayError::UpstreamUnavailable),
                };
                self.failed(ep, why, call);
                Try::Failed { why, reply: None, error }
            }
            Err(_) => {
                self.failed(ep, FailReason::FirstByteTimeout, call);
                tracing::warn!(model = %route.name, endpoint = i, "upstream first-byte timeout");
                Try::Failed { why: FailReason::FirstByteTimeout, reply: None, error: GatewayError::UpstreamTimeout }
            }
        }
    }

    /// Counts a failure of `ep` against the threshold and cool-down (at once: the next pick
    /// sees it), and in the call's record under its reason.
    fn failed(&self, ep: &Endpoint, why: FailReason, call: &mut CallCtx) {
        ep.health.failure(self.clock.now_ms(), self.fail_threshold, self.cooldown.as_millis() as u64);
        call.failed_on(ep.id, why);
    }
}

/// The longest an upstream's 429 rests an endpoint, whatever it asks.
const MAX_REST_MS: u64 = 10 * 60 * 1000;

/// How long a 429 asks to wait: OpenAI's `retry-after-ms`, else `Retry-After` in seconds (an
/// HTTP date is not read: the endpoint then rests for the cool-down).
fn retry_after_ms(h: &http::HeaderMap) -> Option<u64> {
    let num = |name: &str| h.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    num("retry-after-ms").map(|ms| ms.ceil() as u64).or_else(|| num("retry-after").map(|s| (s * 1000.0).ceil() as u64))
}
