//! One call's context, carried through every step of the request path, and its one end.
//!
//! A call ends in exactly one place, [`CallCtx::finish`], whatever happened to it: answered
//! (when its answer's body ends, or is dropped because the client left), refused before or at
//! admission, failed on every endpoint, or dropped with the request while it waited for an
//! upstream. The end records the call in the usage meter and `/metrics`, and ends every hold
//! the call took (its admission ticket, with the real usage or the estimate; its endpoint slot).
use super::admission::{Consumed, Ticket};
use super::clock::SharedClock;
use super::error::GatewayError;
use super::load::InFlight;
use super::meter::Meter;
use super::op::Op;
use super::record::{Call, FailReason, Outcome};
use super::slots::Slot;
use super::snapshot::Caller;
use super::usage::Tokens;
use app::ssr::pricing::{Schedule, Used};
use axum::response::Response;
use smallvec::SmallVec;
use std::sync::Arc;

/// The status a call dropped before any answer is recorded with (nginx's "client closed
/// request"): no HTTP status was ever sent.
pub const CLIENT_CLOSED: u16 = 499;

/// A [`Call`] as far as the call got.
struct Record {
    /// The served model's name, or what the caller sent; `None` until the body is read.
    model: Option<Arc<str>>,
    maas_model_id: Option<i64>,
    endpoint_id: Option<i64>,
    workspace_id: Option<i64>,
    api_key_id: Option<i64>,
    op: Op,
    status: u16,
    outcome: Outcome,
    failovers: u32,
    ttfb_ms: Option<u64>,
    tokens: Option<Tokens>,
    /// What the request asks for in its operation's unit (counted once answered).
    units: u64,
    /// The model's prices (of the model that answers it).
    prices: Option<Arc<Schedule>>,
}

pub struct CallCtx {
    clock: SharedClock,
    started_ms: u64,
    /// Where the call is recorded; `None` with metering off (its holds are still ended).
    meter: Option<Arc<Meter>>,
    /// The record so far: what the meter gets if the call ends now (see [`Call`]).
    record: Record,
    /// What admission gave the call, ended with what it consumed.
    ticket: Ticket,
    consumed: Consumed,
    /// Its place on a capped endpoint, held until the answer ends.
    slot: Option<Slot>,
    /// Counted in flight on its endpoint (for the load-aware policies) until the answer ends.
    in_flight: Option<InFlight>,
    /// Endpoints that failed it on the way (for `/metrics`; their health was told at once).
    failures: SmallVec<[(i64, FailReason); 2]>,
    /// Tries made (endpoints sent the call), across the model and its fallbacks.
    tries: u32,
    /// The model the caller asked for (name, id), when a fallback model answers instead.
    asked: Option<Arc<str>>,
    asked_id: Option<i64>,
    /// A retry was not made because the model's retry budget was spent.
    retry_refused: bool,
    /// The rule that refused it (for `/metrics`).
    refused_by: Option<String>,
    finished: bool,
}

impl CallCtx {
    /// A call of `op` starting now; until a step says more, it ends as dropped by its client.
    pub fn begin(op: Op, clock: SharedClock, meter: Option<Arc<Meter>>) -> Self {
        let started_ms = clock.now_ms();
        CallCtx {
            clock,
            started_ms,
            meter,
            record: Record {
                model: None,
                maas_model_id: None,
                endpoint_id: None,
                workspace_id: None,
                api_key_id: None,
                op,
                status: CLIENT_CLOSED,
                outcome: Outcome::Cancelled,
                failovers: 0,
                ttfb_ms: None,
                tokens: None,
                units: 0,
                prices: None,
            },
            ticket: Ticket::default(),
            consumed: Consumed::Estimate,
            slot: None,
            in_flight: None,
            failures: SmallVec::new(),
            tries: 0,
            asked: None,
            asked_id: None,
            retry_refused: false,
            refused_by: None,
            finished: false,
        }
    }

    pub fn op(&self) -> Op {
        self.record.op
    }

    /// Unix ms now, on the gateway's clock.
    pub fn unix_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    /// The model the caller named (`""` before its body was read).
    pub fn model(&self) -> &str {
        self.record.model.as_deref().unwrap_or("")
    }

    /// Whether the call is metered (its answer is read for usage).
    pub fn metered(&self) -> bool {
        self.meter.is_some()
    }

    pub fn identified(&mut self, caller: &Caller) {
        self.record.workspace_id = Some(caller.workspace_id);
        self.record.api_key_id = Some(caller.key_id);
    }

    /// The model it names: a served one (`id`), or what the caller sent (bounded by the
    /// caller: a model name is at most 128 characters).
    pub fn routed(&mut self, model: Arc<str>, id: Option<i64>, prices: Option<Arc<Schedule>>) {
        self.record.model = Some(model);
        self.record.maas_model_id = id;
        self.record.prices = prices;
    }

    /// What the request asks for in its operation's unit (see `Op::units`).
    pub fn asks_for(&mut self, units: Option<u64>) {
        self.record.units = units.unwrap_or(0);
    }

    pub fn admitted(&mut self, ticket: Ticket) {
        self.ticket = ticket;
    }

    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// The endpoint that answered and the tries it took (for the caller's headers).
    pub fn answered(&self) -> Option<(i64, u32)> {
        self.record.endpoint_id.map(|e| (e, self.record.failovers + 1))
    }

    /// The model that answered, when it is a fallback of the one asked for.
    pub fn fallback(&self) -> Option<&str> {
        self.asked.as_ref().and(self.record.model.as_deref())
    }

    /// An endpoint is sent the call.
    pub fn tried(&mut self) {
        self.tries += 1;
    }

    /// Its model's endpoints could not answer: `route`, a fallback, is tried next. The call is
    /// recorded under the model that answers it.
    pub fn falls_back_to(&mut self, name: Arc<str>, id: i64, prices: Option<Arc<Schedule>>) {
        if self.asked.is_none() {
            self.asked = self.record.model.take();
            self.asked_id = self.record.maas_model_id;
        }
        self.routed(name, Some(id), prices);
    }

    pub fn retry_refused(&mut self) {
        self.retry_refused = true;
    }

    /// An endpoint failed it (it may still be answered by another).
    pub fn failed_on(&mut self, endpoint_id: i64, why: FailReason) {
        self.failures.push((endpoint_id, why));
    }

    /// An endpoint answered with `status` (the call's last try); `slot` is its place on that
    /// endpoint.
    pub fn answered_by(&mut self, endpoint_id: i64, status: u16, slot: Option<Slot>, in_flight: Option<InFlight>) {
        self.in_flight = in_flight;
        self.record.endpoint_id = Some(endpoint_id);
        self.record.status = status;
        self.record.outcome = Outcome::Ok;
        self.record.failovers = self.tries.saturating_sub(1);
        self.slot = slot;
    }

    /// Whether ending now would record or give back anything: with metering off, an answer
    /// holding nothing need not be watched to its end.
    pub fn holds_something(&self) -> bool {
        self.meter.is_some() || self.slot.is_some() || !self.ticket.holds_nothing()
    }

    /// The first byte of the answer's body goes to the client now.
    pub fn first_byte(&mut self) {
        if self.record.ttfb_ms.is_none() {
            self.record.ttfb_ms = Some(self.elapsed_ms());
        }
    }

    /// The answer's body is over (`ended`), broke off, or was dropped with the client gone:
    /// `tokens` as it reported them. Ends the call.
    pub fn answer_over(&mut self, ended: bool, broke: bool, tokens: Option<Tokens>) {
        let status = self.record.status;
        self.record.outcome = if broke {
            Outcome::UpstreamError
        } else if !ended {
            Outcome::Cancelled
        } else if status < 400 {
            Outcome::Ok
        } else {
            Outcome::UpstreamError
        };
        if let (true, Some(ep)) = (broke, self.record.endpoint_id) {
            self.failures.push((ep, FailReason::BrokenBody));
        }
        self.record.tokens = tokens;
        // Seconds of audio are known only from the answer.
        if self.record.op.unit() == Some(super::op::Unit::Seconds) {
            self.record.units = tokens.map_or(0, |t| t.seconds);
        }
        // With metering off, nothing is read: every call keeps its estimate. An error answer
        // without usage used no tokens. The cost is filled in at the end (see `finish`).
        self.consumed = match (self.meter.is_some(), tokens) {
            (false, _) => Consumed::Estimate,
            (true, Some(t)) => Consumed::tokens_only(t.total),
            (true, None) if status >= 400 => Consumed::Used { tokens: 0, nanos: Some(0) },
            (true, None) => Consumed::Estimate,
        };
        self.finish();
    }

    /// The call ends with `e` as its answer (refused, or no upstream answered).
    pub fn refuse(mut self, e: GatewayError) -> Response {
        self.record.outcome = e.outcome();
        if let GatewayError::RateLimited(rejection) = &e {
            self.refused_by = Some(rejection.rule.clone());
        }
        // What it reserved was not used: no upstream ran it.
        self.consumed = Consumed::Used { tokens: 0, nanos: Some(0) };
        let dialect = self.record.op.dialect();
        // Anthropic's clients read the refusing rule's figures from their own headers too.
        let anthropic = match &e {
            GatewayError::RateLimited(r) if dialect == super::op::Dialect::Anthropic => Some((r.kind, r.limit, r.wait_ms)),
            _ => None,
        };
        let mut resp = e.into_response_in(dialect);
        if let Some((kind, limit, wait_ms)) = anthropic {
            super::error::anthropic_refusal_headers(resp.headers_mut(), kind, limit, wait_ms, self.clock.unix_ms());
        }
        self.record.status = resp.status().as_u16();
        self.finish();
        resp
    }

    fn elapsed_ms(&self) -> u64 {
        self.clock.now_ms().saturating_sub(self.started_ms)
    }

    /// The one end of every call: records it, ends its holds. Runs once.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // Counted when an upstream answered it (not an error, and not cut off).
        let r = &self.record;
        let units = if r.outcome == Outcome::Ok && r.status < 400 { r.units } else { 0 };
        let at_ms = self.clock.unix_ms().max(0);
        let cost = cost_of(r, units, at_ms / 1000);
        // Money budgets settle to the cost where it is known (their reservation stands where not).
        let consumed = match self.consumed {
            Consumed::Used { tokens, .. } => Consumed::Used { tokens, nanos: cost.map(|c| c.max(0) as u64) },
            other => other,
        };
        std::mem::take(&mut self.ticket).end(consumed);
        self.slot = None;
        self.in_flight = None;
        let Some(meter) = &self.meter else { return };
        for &(endpoint, why) in &self.failures {
            meter.upstream_failed(endpoint, why);
        }
        let r = &mut self.record;
        if let (Some(rule), Some(model)) = (&self.refused_by, &r.model) {
            meter.rate_limited(model, rule);
        }
        if let Some(asked) = &self.asked {
            meter.fell_back(asked, r.model.as_ref().filter(|_| r.endpoint_id.is_some()));
        }
        if self.retry_refused {
            meter.retry_refused(self.asked.as_ref().or(r.model.as_ref()));
        }
        meter.record(Call {
            // A call refused before its model was read is counted under "".
            model: r.model.take().unwrap_or_else(|| Arc::from("")),
            maas_model_id: r.maas_model_id,
            asked_model_id: self.asked_id,
            endpoint_id: r.endpoint_id,
            workspace_id: r.workspace_id,
            api_key_id: r.api_key_id,
            op: r.op,
            status: r.status,
            outcome: r.outcome,
            failovers: r.failovers,
            ttfb_ms: r.ttfb_ms,
            total_ms: self.clock.now_ms().saturating_sub(self.started_ms),
            tokens: r.tokens,
            units,
            cost,
            at_ms: at_ms as u64,
        });
    }
}

/// What the call cost, nano-units, at its model's prices in force at Unix second `at`: 0 when
/// no upstream ran it or it answered an error (not billed); `None` (unknown) when one answered
/// and no price was in force, or the answer reported no usage of the tokens it is priced in.
fn cost_of(r: &Record, units: u64, at: i64) -> Option<i64> {
    if r.endpoint_id.is_none() || r.status >= 400 {
        return Some(0);
    }
    let rates = r.prices.as_ref()?.at(at)?;
    let tokens = match r.tokens {
        Some(t) => t,
        None if r.op.counts_tokens() => return None,
        None => Tokens::default(),
    };
    Some(rates.cost_nanos(Used {
        input: tokens.input,
        cached: tokens.cached,
        cache_write: tokens.cache_write,
        output: tokens.output,
        units,
    }))
}

impl Drop for CallCtx {
    fn drop(&mut self) {
        self.finish();
    }
}
