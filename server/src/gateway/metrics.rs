//! `/metrics`: the gateway's traffic in OpenMetrics (what Prometheus asks for) or Prometheus's
//! classic text format, for `maas serve` and every `maas gateway` replica.
//!
//! The request path adds to the usage meter's per-thread [`Series`] (under the thread's own
//! lock, which the meter takes anyway); a scrape merges the threads' series and encodes them
//! with prometheus-client. Names follow the OpenTelemetry gen_ai semantic conventions where
//! they exist (`gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_
//! seconds`, `gen_ai_client_token_usage`), the rest are `maas_gateway_*`. Label values are
//! bounded: models the gateway serves, endpoints, operations, status classes, outcomes and rule
//! names; never API keys or workspaces (those are in the usage tables).
use super::op::Op;
use super::record::{Call, FailReason, Outcome};
use super::snapshot::Snapshot;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Seconds: the usage histograms' bounds (the usage rollups' BUCKETS_MS), so both agree.
fn duration_bounds() -> impl Iterator<Item = f64> {
    app::ssr::usage_rollups::BUCKETS_MS.iter().map(|ms| *ms as f64 / 1000.0)
}

/// Tokens per call: the gen_ai.client.token.usage buckets OpenTelemetry advises.
const TOKEN_BOUNDS: [u64; 14] = [1, 4, 16, 64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, 67_108_864];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CallKey {
    /// A served model's name; calls naming no served model are counted under "" (what callers
    /// send is unbounded).
    model: Arc<str>,
    endpoint_id: Option<i64>,
    op: Op,
    status_class: u8,
    outcome: Outcome,
}

#[derive(Clone, Debug)]
struct Hist<const N: usize> {
    /// Per bucket, not cumulative; the last one is above every bound.
    counts: [u64; N],
    sum: f64,
}

impl<const N: usize> Default for Hist<N> {
    fn default() -> Self {
        Hist { counts: [0; N], sum: 0.0 }
    }
}

impl<const N: usize> Hist<N> {
    fn observe(&mut self, bucket: usize, value: f64) {
        self.counts[bucket] += 1;
        self.sum += value;
    }

    fn merge(&mut self, o: &Self) {
        for i in 0..N {
            self.counts[i] += o.counts[i];
        }
        self.sum += o.sum;
    }

    /// (count, cumulative buckets) as prometheus-client takes them.
    fn cumulative(&self, bounds: impl Iterator<Item = f64>) -> (u64, Vec<(f64, u64)>) {
        let mut seen = 0;
        let mut out: Vec<(f64, u64)> = bounds
            .zip(self.counts.iter())
            .map(|(b, n)| {
                seen += n;
                (b, seen)
            })
            .collect();
        let count = self.counts.iter().sum();
        out.push((f64::INFINITY, count));
        (count, out)
    }
}

const DURATION_BUCKETS: usize = app::ssr::usage_rollups::BUCKETS;
const TOKEN_BUCKETS: usize = TOKEN_BOUNDS.len() + 1;

/// A counter of a call series: its name, its help, and what it counts.
type SparseCounter = (&'static str, &'static str, fn(&CallSeries) -> u64);

#[derive(Clone, Debug, Default)]
struct CallSeries {
    requests: u64,
    failovers: u64,
    usage_unknown: u64,
    duration: Hist<DURATION_BUCKETS>,
    ttft: Hist<DURATION_BUCKETS>,
    input_tokens: Hist<TOKEN_BUCKETS>,
    output_tokens: Hist<TOKEN_BUCKETS>,
    /// Input tokens read from the upstream's prompt cache (part of the input).
    cached_tokens: u64,
    /// Input tokens written to it (Anthropic's cache writes; part of the input).
    cache_write_tokens: u64,
    /// Of the operation's unit besides tokens.
    units: u64,
    /// What the calls cost, nano-units of the currency (each call rounded once).
    spend_nanos: u64,
    /// Answered calls no price covered: cost unknown, not 0.
    cost_unknown: u64,
}

/// What `/metrics` counts, since the process started: one per serving thread, merged at scrape.
#[derive(Clone, Debug, Default)]
pub struct Series {
    calls: FxHashMap<CallKey, CallSeries>,
    rate_limited: FxHashMap<(Arc<str>, Box<str>), u64>,
    upstream_failures: FxHashMap<(i64, FailReason), u64>,
    /// (model asked for, fallback model that answered; "" when none did).
    fallbacks: FxHashMap<(Arc<str>, Arc<str>), u64>,
    /// Retries not made because the model's retry budget was spent, by model.
    retries_refused: FxHashMap<Arc<str>, u64>,
}

fn token_bucket(n: u64) -> usize {
    TOKEN_BOUNDS.iter().position(|&b| n <= b).unwrap_or(TOKEN_BOUNDS.len())
}

impl Series {
    pub fn record(&mut self, c: &Call) {
        let key = CallKey {
            model: if c.maas_model_id.is_some() { c.model.clone() } else { Arc::from("") },
            endpoint_id: c.endpoint_id,
            op: c.op,
            status_class: (c.status / 100) as u8,
            outcome: c.outcome,
        };
        let s = self.calls.entry(key).or_default();
        s.requests += 1;
        s.failovers += u64::from(c.failovers);
        s.units += c.units;
        match c.cost {
            Some(n) => s.spend_nanos += n.max(0) as u64,
            None => s.cost_unknown += 1,
        }
        s.duration.observe(app::ssr::usage_rollups::bucket(c.total_ms), c.total_ms as f64 / 1000.0);
        if let Some(t) = c.ttfb_ms {
            s.ttft.observe(app::ssr::usage_rollups::bucket(t), t as f64 / 1000.0);
        }
        match c.tokens {
            Some(t) => {
                s.input_tokens.observe(token_bucket(t.input), t.input as f64);
                s.cached_tokens += t.cached;
                s.cache_write_tokens += t.cache_write;
                // Embeddings have no output tokens: not an observation of 0.
                if c.op != Op::Embeddings {
                    s.output_tokens.observe(token_bucket(t.output), t.output as f64);
                }
            }
            // Refusals never reach an upstream: their tokens are not "unknown", there are none.
            None if c.endpoint_id.is_some() && c.op.counts_tokens() => s.usage_unknown += 1,
            None => {}
        }
    }

    pub fn rate_limited(&mut self, model: &Arc<str>, rule: &str) {
        *self.rate_limited.entry((model.clone(), Box::from(rule))).or_default() += 1;
    }

    pub fn upstream_failed(&mut self, endpoint_id: i64, reason: FailReason) {
        *self.upstream_failures.entry((endpoint_id, reason)).or_default() += 1;
    }

    pub fn fell_back(&mut self, asked: &Arc<str>, answered: Option<&Arc<str>>) {
        *self.fallbacks.entry((asked.clone(), answered.cloned().unwrap_or_else(|| Arc::from("")))).or_default() += 1;
    }

    pub fn retry_refused(&mut self, model: &Arc<str>) {
        *self.retries_refused.entry(model.clone()).or_default() += 1;
    }

    pub fn merge(&mut self, o: &Series) {
        for (k, v) in &o.calls {
            let s = self.calls.entry(k.clone()).or_default();
            s.requests += v.requests;
            s.failovers += v.failovers;
            s.usage_unknown += v.usage_unknown;
            s.duration.merge(&v.duration);
            s.ttft.merge(&v.ttft);
            s.input_tokens.merge(&v.input_tokens);
            s.output_tokens.merge(&v.output_tokens);
            s.cached_tokens += v.cached_tokens;
            s.cache_write_tokens += v.cache_write_tokens;
            s.spend_nanos += v.spend_nanos;
            s.cost_unknown += v.cost_unknown;
            s.units += v.units;
        }
        for (k, v) in &o.rate_limited {
            *self.rate_limited.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.upstream_failures {
            *self.upstream_failures.entry(*k).or_default() += v;
        }
        for (k, v) in &o.fallbacks {
            *self.fallbacks.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.retries_refused {
            *self.retries_refused.entry(k.clone()).or_default() += v;
        }
    }
}

/// One scrape: the merged series and what the snapshot says now.
#[derive(Debug)]
struct Scrape {
    series: Series,
    /// Endpoint id → (model, URL, upstream model id).
    endpoints: FxHashMap<i64, (Arc<str>, String, String)>,
    /// Model → endpoints cooling down now.
    cooling: Vec<(Arc<str>, i64)>,
    /// Each endpoint now: (model, endpoint id, its state, calls in flight where its model's
    /// policy counts them).
    states: Vec<(Arc<str>, i64, &'static str, Option<u64>)>,
    revision: i64,
}

fn status_class(c: u8) -> String {
    format!("{c}xx")
}

impl Scrape {
    fn endpoint(&self, id: Option<i64>) -> (String, String) {
        match id.and_then(|id| self.endpoints.get(&id)) {
            Some((_, url, model)) => (url.clone(), model.clone()),
            None => (id.map(|i| format!("#{i}")).unwrap_or_default(), String::new()),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Calls in a stable order, so two scrapes list series alike.
        let mut calls: Vec<(&CallKey, &CallSeries)> = self.series.calls.iter().collect();
        calls.sort_by(|a, b| {
            (&a.0.model, a.0.endpoint_id, a.0.op.name(), a.0.status_class, a.0.outcome.as_str()).cmp(&(
                &b.0.model,
                b.0.endpoint_id,
                b.0.op.name(),
                b.0.status_class,
                b.0.outcome.as_str(),
            ))
        });
        let gen_ai = |k: &CallKey| -> Labels {
            let (_, upstream_model) = self.endpoint(k.endpoint_id);
            let mut l: Labels =
                vec![("gen_ai_operation_name", k.op.gen_ai_name().to_owned()), ("gen_ai_request_model", k.model.to_string())];
            if !upstream_model.is_empty() {
                l.push(("gen_ai_response_model", upstream_model));
            }
            if k.outcome != Outcome::Ok {
                l.push(("error_type", k.outcome.as_str().to_owned()));
            }
            l
        };

        let mut m = enc.encode_descriptor(
            "gen_ai_server_request_duration",
            "Time from a request's arrival to its answer's last byte (or the client leaving).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (k, v) in &calls {
            let (count, buckets) = v.duration.cumulative(duration_bounds());
            m.encode_family(&gen_ai(k))?.encode_histogram::<NoLabelSet>(v.duration.sum, count, &buckets, None)?;
        }
        let mut m = enc.encode_descriptor(
            "gen_ai_server_time_to_first_token",
            "Time from a request's arrival to the first byte of its answer's body (first token of a stream).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (k, v) in calls.iter().filter(|(_, v)| v.ttft.counts.iter().any(|n| *n > 0)) {
            let (count, buckets) = v.ttft.cumulative(duration_bounds());
            m.encode_family(&gen_ai(k))?.encode_histogram::<NoLabelSet>(v.ttft.sum, count, &buckets, None)?;
        }
        let mut m = enc.encode_descriptor(
            "gen_ai_client_token_usage",
            "Tokens per call as the upstream reported them, by gen_ai_token_type (input, output).",
            None,
            MetricType::Histogram,
        )?;
        let token_bounds = || TOKEN_BOUNDS.iter().map(|b| *b as f64);
        for (k, v) in &calls {
            for (kind, h) in [("input", &v.input_tokens), ("output", &v.output_tokens)] {
                if h.counts.iter().all(|n| *n == 0) {
                    continue;
                }
                let mut l = gen_ai(k);
                l.push(("gen_ai_token_type", kind.to_owned()));
                let (count, buckets) = h.cumulative(token_bounds());
                m.encode_family(&l)?.encode_histogram::<NoLabelSet>(h.sum, count, &buckets, None)?;
            }
        }

        let own = |k: &CallKey| -> Labels {
            let (endpoint, _) = self.endpoint(k.endpoint_id);
            vec![
                ("model", k.model.to_string()),
                ("endpoint", endpoint),
                ("operation", k.op.name().to_owned()),
                ("status_class", status_class(k.status_class)),
                ("outcome", k.outcome.as_str().to_owned()),
            ]
        };
        let mut m = enc.encode_descriptor(
            "maas_gateway_requests",
            "Calls by model, endpoint (the one that answered), operation, status class and outcome; refusals included.",
            None,
            MetricType::Counter,
        )?;
        for (k, v) in &calls {
            m.encode_family(&own(k))?.encode_counter::<NoLabelSet, _, u64>(&v.requests, None)?;
        }
        let mut m = enc.encode_descriptor(
            "maas_gateway_units",
            "What operations besides chat are counted in, by unit: documents reranked, characters spoken, images made or edited, seconds of audio transcribed (as the upstream reports them).",
            None,
            MetricType::Counter,
        )?;
        for (k, v) in calls.iter().filter(|(_, v)| v.units > 0) {
            let mut labels = own(k);
            labels.push(("unit", k.op.unit().map_or("", |u| u.as_str()).to_owned()));
            m.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&v.units, None)?;
        }
        // Counters of a call series with its own labels, each written where it is not 0.
        let sparse: [SparseCounter; 5] = [
            (
                "maas_gateway_cached_tokens",
                "Input tokens the upstreams read from their prompt cache (OpenAI's cached_tokens, Anthropic's cache_read_input_tokens), part of the input tokens.",
                |v| v.cached_tokens,
            ),
            (
                "maas_gateway_cache_write_tokens",
                "Input tokens the upstreams wrote to their prompt cache (Anthropic's cache_creation_input_tokens), part of the input tokens.",
                |v| v.cache_write_tokens,
            ),
            (
                "maas_spend",
                "What the calls cost at their model's prices, in nano-units (10^-9) of the installation's currency (MAAS_CURRENCY), each call rounded once, half to even: divide by 1e9 for the currency.",
                |v| v.spend_nanos,
            ),
            (
                "maas_gateway_cost_unknown",
                "Answered calls whose cost is unknown (no price in force, or no usage reported): never counted as free.",
                |v| v.cost_unknown,
            ),
            (
                "maas_gateway_usage_unknown",
                "Answered calls whose upstream reported no token usage (tokens unknown, not 0).",
                |v| v.usage_unknown,
            ),
        ];
        for (name, help, value) in sparse {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (k, v) in calls.iter().filter(|(_, v)| value(v) > 0) {
                m.encode_family(&own(k))?.encode_counter::<NoLabelSet, _, u64>(&value(v), None)?;
            }
        }
        let mut failovers: std::collections::BTreeMap<&str, u64> = Default::default();
        for (k, v) in &calls {
            *failovers.entry(&k.model).or_default() += v.failovers;
        }
        let mut m = enc.encode_descriptor(
            "maas_gateway_failovers",
            "Endpoints given up on before the one that answered, by model.",
            None,
            MetricType::Counter,
        )?;
        for (model, n) in failovers {
            m.encode_family(&vec![("model", model.to_owned())])?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        let mut limited: Vec<_> = self.series.rate_limited.iter().collect();
        limited.sort();
        let mut m = enc.encode_descriptor(
            "maas_gateway_rate_limited",
            "Calls refused with 429, by model and the rule that refused them.",
            None,
            MetricType::Counter,
        )?;
        for ((model, rule), n) in limited {
            m.encode_family(&vec![("model", model.to_string()), ("rule", rule.to_string())])?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        let mut failures: Vec<_> = self.series.upstream_failures.iter().collect();
        failures.sort_by_key(|((id, r), _)| (*id, r.as_str()));
        let mut m = enc.encode_descriptor(
            "maas_gateway_upstream_failures",
            "Upstream failures by endpoint and reason (a failed-over call counts here and succeeds elsewhere).",
            None,
            MetricType::Counter,
        )?;
        for ((id, reason), n) in failures {
            let model = self.endpoints.get(id).map(|e| e.0.to_string()).unwrap_or_default();
            let (endpoint, _) = self.endpoint(Some(*id));
            m.encode_family(&vec![("model", model), ("endpoint", endpoint), ("reason", reason.as_str().to_owned())])?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        let mut fallbacks: Vec<_> = self.series.fallbacks.iter().collect();
        fallbacks.sort();
        let mut m = enc.encode_descriptor(
            "maas_gateway_fallbacks",
            "Calls whose model's endpoints could not answer, by model asked for and the fallback model that answered (\"\": none did).",
            None,
            MetricType::Counter,
        )?;
        for ((asked, to), n) in fallbacks {
            m.encode_family(&vec![("model", asked.to_string()), ("to", to.to_string())])?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        let mut refused: Vec<_> = self.series.retries_refused.iter().collect();
        refused.sort();
        let mut m = enc.encode_descriptor(
            "maas_gateway_retries_refused",
            "Retries not made because the model's retry budget was spent, by model.",
            None,
            MetricType::Counter,
        )?;
        for (model, n) in refused {
            m.encode_family(&vec![("model", model.to_string())])?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        let mut m = enc.encode_descriptor(
            "maas_gateway_endpoints_cooling_down",
            "Endpoints of a model skipped now after repeated failures.",
            None,
            MetricType::Gauge,
        )?;
        for (model, n) in &self.cooling {
            m.encode_family(&vec![("model", model.to_string())])?.encode_gauge(n)?;
        }
        let mut m = enc.encode_descriptor(
            "maas_gateway_endpoint_state",
            "Each endpoint's state now (1 for the one it is in): usable, cooling (after failures or an upstream's 429), unhealthy (failed its health checks) or draining (by hand).",
            None,
            MetricType::Gauge,
        )?;
        for (model, id, state, _) in &self.states {
            let (endpoint, _) = self.endpoint(Some(*id));
            for s in ["usable", "cooling", "unhealthy", "draining"] {
                let labels = vec![("model", model.to_string()), ("endpoint", endpoint.clone()), ("state", s.to_owned())];
                m.encode_family(&labels)?.encode_gauge(&((*state == s) as i64))?;
            }
        }
        let mut m = enc.encode_descriptor(
            "maas_gateway_endpoint_in_flight",
            "Calls in flight on each endpoint of a model whose policy counts them (least busy, fastest, cache affinity), on this gateway.",
            None,
            MetricType::Gauge,
        )?;
        for (model, id, _, n) in &self.states {
            if let Some(n) = n {
                let (endpoint, _) = self.endpoint(Some(*id));
                m.encode_family(&vec![("model", model.to_string()), ("endpoint", endpoint)])?.encode_gauge(&(*n as i64))?;
            }
        }
        let mut g =
            enc.encode_descriptor("maas_gateway_config_revision", "Configuration revision this gateway serves.", None, MetricType::Gauge)?;
        g.encode_gauge(&self.revision)?;
        Ok(())
    }
}

/// The exposition of the traffic since start (`series`), with the configuration `snap` serves
/// and its endpoints' health at `now_ms` (monotonic).
pub fn render(snap: &Snapshot, series: Series, now_ms: u64) -> String {
    let now = now_ms;
    let mut endpoints = FxHashMap::default();
    let mut cooling = Vec::new();
    let mut states = Vec::new();
    for route in snap.models.values() {
        let counted = route.policy.counts_load();
        for e in &route.endpoints {
            endpoints.insert(e.id, (route.name.clone(), e.url.clone(), e.model_id.clone()));
            states.push((route.name.clone(), e.id, e.state(now), counted.then(|| e.load.in_flight())));
        }
        cooling.push((route.name.clone(), route.endpoints.iter().filter(|e| !e.health.usable(now)).count() as i64));
    }
    cooling.sort();
    states.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let scrape = Scrape { series, endpoints, cooling, states, revision: snap.revision };
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "could not encode /metrics");
    }
    out
}

/// Who may scrape: with a token, only a request bearing it; without, nobody on this listener
/// (the metrics are then served on `--metrics-listen` only, or not at all).
#[derive(Clone)]
pub struct ScrapeAuth {
    pub token: Option<Arc<str>>,
}

impl ScrapeAuth {
    fn allows(&self, headers: &http::HeaderMap) -> Result<(), &'static str> {
        let Some(want) = &self.token else {
            return Err("/metrics is not served on this address: set MAAS_METRICS_TOKEN (and send it as `Authorization: Bearer <token>`) or scrape --metrics-listen");
        };
        let got = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        // Compared by digest: equal time whatever the token's first differing byte.
        match got {
            Some(t) if app::ssr::crypto::sha256(t) == app::ssr::crypto::sha256(want) => Ok(()),
            _ => Err("missing or wrong scrape token: send `Authorization: Bearer <MAAS_METRICS_TOKEN>`"),
        }
    }
}

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The same exposition in Prometheus's classic text format (0.0.4), for scrapers and tools that
/// do not ask for OpenMetrics (`promtool check metrics`, curl): a counter family is named with
/// its `_total` suffix, and OpenMetrics' `# UNIT` and `# EOF` lines go.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].into_iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `GET /metrics`, the exposition `render` gives, behind `auth` (`None`: open, for the dedicated
/// metrics listener).
pub fn router(render: impl Fn() -> String + Clone + Send + Sync + 'static, auth: Option<ScrapeAuth>) -> axum::Router {
    use axum::response::IntoResponse;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: http::HeaderMap| {
            let (render, auth) = (render.clone(), auth.clone());
            async move {
                if let Some(a) = &auth {
                    if let Err(msg) = a.allows(&headers) {
                        let status = if a.token.is_some() { http::StatusCode::UNAUTHORIZED } else { http::StatusCode::NOT_FOUND };
                        return (status, [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{msg}\n")).into_response();
                    }
                }
                // Prometheus asks for OpenMetrics; anything else gets the classic text format.
                let wants_openmetrics = headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("application/openmetrics-text"));
                let body = render();
                if wants_openmetrics {
                    ([(http::header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
                } else {
                    ([(http::header::CONTENT_TYPE, TEXT_FORMAT)], to_text_format(&body)).into_response()
                }
            }
        }),
    )
}
