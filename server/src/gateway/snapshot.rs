//! The immutable configuration the gateway serves from, built whole from the database and
//! swapped in atomically: readers never see half a change.
use super::admission::limiter::{Counter, CounterKey, RuleCheck};
use super::admission::quota::QuotaCheck;
use super::balancer::{self, Balancer};
use super::op::{Api, Op, Translation};
use super::upstream::Target;
use app::ssr::crypto::SecretBox;
use app::ssr::entities::{api_key, cluster, endpoint, maas_model, marketplace_model, model_price, rule};
use app::ssr::pricing::Schedule;
use app::types::{Policy, RuleKind, RuleTarget};
use futures_util::TryStreamExt;
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, StreamTrait};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

pub struct Endpoint {
    /// The endpoint's row id (usage is recorded per endpoint).
    pub id: i64,
    pub model_id: String,
    /// `model_id` as a JSON string, ready to splice into the forwarded body.
    pub model_json: String,
    /// As the operator typed it, for the status column.
    pub url: String,
    /// The operator turned off asking this upstream for its streams' usage.
    pub skip_stream_usage: bool,
    /// Where `compose_base(url)` + each operation's path points, in `Op::ALL` order, parsed once per
    /// snapshot (parsing on every request showed up in profiles); `None` if the URL is invalid.
    targets: Option<[Target; Op::ALL.len()]>,
    /// The APIs it speaks natively, as bits of `1 << Api as u8`.
    apis: u8,
    /// `Bearer <the endpoint's own key>`, marked sensitive so it is never logged.
    pub auth: Option<http::HeaderValue>,
    /// The same key bare, as Anthropic's API takes it (`x-api-key`) on native Messages calls.
    pub x_api_key: Option<http::HeaderValue>,
    /// Shared with the previous snapshot's same endpoint, so a reload does not forget failures.
    pub health: Arc<Health>,
    /// Its cap on calls at once, if any (carried over like `health`: calls in flight count).
    pub slots: Option<Arc<super::slots::Slots>>,
    /// Its calls in flight and time to first byte, for the load-aware policies (carried over
    /// like `health`).
    pub load: Arc<super::load::Load>,
    /// Drained by hand: never tried (calls under way finish).
    pub draining: bool,
}

impl Endpoint {
    /// Where to send `op`; `None` when the endpoint's URL does not parse.
    pub fn target(&self, op: Op) -> Option<&Target> {
        self.targets.as_ref().map(|t| &t[op as usize])
    }

    /// Out of rotation by an operator or the health checks: drained by hand, or failed its
    /// probes. Never tried, not even as a last resort (a cooling endpoint is, last).
    pub fn out_of_rotation(&self) -> bool {
        self.draining || self.health.probed_out()
    }

    /// In rotation now: not out of rotation and not cooling down.
    pub fn usable(&self, now_ms: u64) -> bool {
        !self.out_of_rotation() && self.health.usable(now_ms)
    }

    /// Its state as `/metrics` names it: draining, unhealthy, usable or cooling.
    pub fn state(&self, now_ms: u64) -> &'static str {
        if self.draining {
            "draining"
        } else if self.health.probed_out() {
            "unhealthy"
        } else if self.health.usable(now_ms) {
            "usable"
        } else {
            "cooling"
        }
    }

    pub fn speaks(&self, api: Api) -> bool {
        self.apis & (1 << api as u8) != 0
    }

    /// How this endpoint takes `op`.
    pub fn mode(&self, op: Op) -> Mode {
        if self.speaks(op.api()) {
            return Mode::Native;
        }
        match op.translation() {
            Some(t) if self.speaks(Api::Chat) => Mode::Translated(t),
            _ => Mode::Cannot,
        }
    }
}

/// How an endpoint takes an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As the caller sent it (its `model` replaced).
    Native,
    /// Translated for chat completions, the answer translated back.
    Translated(Translation),
    /// Not at all: it speaks neither the operation's API nor one it translates to.
    Cannot,
}

/// Consecutive failures and a cool-down deadline (ms on the gateway's clock), and what the
/// endpoint was seen to refuse.
#[derive(Default)]
pub struct Health {
    fails: AtomicU32,
    cooled_until: AtomicU64,
    /// It answered 400 to a stream the gateway had added `stream_options.include_usage` to, and
    /// took the same request without: its streams go without (their usage is unknown).
    refuses_stream_options: std::sync::atomic::AtomicBool,
    /// Out of rotation: its cluster's prober saw it fail its health checks (`probe.rs`).
    probed_out: std::sync::atomic::AtomicBool,
}

impl Health {
    pub fn probed_out(&self) -> bool {
        self.probed_out.load(Ordering::Relaxed)
    }
    pub fn set_probed_out(&self, out: bool) {
        self.probed_out.store(out, Ordering::Relaxed);
    }
    pub fn refuses_stream_options(&self) -> bool {
        self.refuses_stream_options.load(Ordering::Relaxed)
    }
    pub fn set_refuses_stream_options(&self) {
        self.refuses_stream_options.store(true, Ordering::Relaxed);
    }
    pub fn usable(&self, now_ms: u64) -> bool {
        self.cooled_until.load(Ordering::Relaxed) <= now_ms
    }
    pub fn success(&self) {
        self.fails.store(0, Ordering::Relaxed);
        self.cooled_until.store(0, Ordering::Relaxed);
    }
    /// Out of rotation until `until_ms` (an upstream's 429 asked for that long), unless it is
    /// cooled down for longer already.
    pub fn rest_until(&self, until_ms: u64) {
        self.cooled_until.fetch_max(until_ms, Ordering::Relaxed);
    }
    /// Counts a failure; the `threshold`-th in a row cools the endpoint down.
    pub fn failure(&self, now_ms: u64, threshold: u32, cooldown_ms: u64) {
        if self.fails.fetch_add(1, Ordering::Relaxed) + 1 >= threshold {
            self.cooled_until.store(now_ms + cooldown_ms, Ordering::Relaxed);
        }
    }
}

/// A model's rules, indexed by whom they apply to: a request looks up its key's and its
/// workspace's, in constant time however many keys have rules (a scan of every rule cost a
/// model with per-key rules for 10k keys 10k comparisons per request).
#[derive(Default)]
pub struct Rules {
    by_key: FxHashMap<i64, SmallVec<[RuleCheck; 1]>>,
    by_workspace: FxHashMap<i64, SmallVec<[RuleCheck; 1]>>,
}

impl Rules {
    pub fn add(&mut self, target: RuleTarget, subject_id: i64, check: RuleCheck) {
        let index = match target {
            RuleTarget::ApiKey => &mut self.by_key,
            RuleTarget::Workspace => &mut self.by_workspace,
        };
        index.entry(subject_id).or_default().push(check);
    }

    pub fn iter(&self) -> impl Iterator<Item = &RuleCheck> {
        self.by_key.values().chain(self.by_workspace.values()).flatten()
    }

    /// The rules that apply to this caller: its key's, then its workspace's.
    pub fn for_caller(&self, caller: &Caller) -> SmallVec<[&RuleCheck; 4]> {
        let key = self.by_key.get(&caller.key_id).into_iter().flatten();
        key.chain(self.by_workspace.get(&caller.workspace_id).into_iter().flatten()).collect()
    }
}

pub struct Route {
    pub id: i64,
    /// The marketplace name clients put in `model` (shared with every usage record of it).
    pub name: Arc<str>,
    pub owned_by: String,
    pub created: i64,
    /// What kind of model it is: the operations it is served.
    pub kind: app::types::ModelKind,
    pub policy: Policy,
    /// What the cache-affinity policy keeps a conversation by.
    pub affinity_key: app::types::AffinityKey,
    pub endpoints: Vec<Endpoint>,
    pub balancer: Box<dyn Balancer>,
    pub rules: Rules,
    /// Output tokens a call that gives no `max_tokens` reserves (see [`super::reserve`]).
    pub reserve_output: u64,
    /// Calls waiting for a slot because every capped endpoint is full (bounded).
    pub waiting: std::sync::atomic::AtomicUsize,
    pub retry: super::retry::Retry,
    /// Models (ids) that answer, in order, when none of this one's endpoints can.
    pub fallbacks: Vec<i64>,
    pub health_check: Option<app::types::HealthCheck>,
    /// Its price versions; `None`: never priced (its calls' cost is unknown).
    pub prices: Option<Arc<Schedule>>,
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: i64,
    pub workspace_id: i64,
    /// Unix second from which the key no longer works (the earlier of its holder's and the
    /// operator's expiry); `None`: never. Checked per request: time passes between snapshots.
    pub expires_at: Option<i64>,
    /// MaaS models the key may call (in both its holder's and the operator's lists), sorted;
    /// `None`: every model.
    pub models: Option<Arc<[i64]>>,
}

impl Caller {
    pub fn may_call(&self, model_id: i64) -> bool {
        self.models.as_ref().is_none_or(|m| m.binary_search(&model_id).is_ok())
    }
}

#[derive(Default)]
pub struct Snapshot {
    pub revision: i64,
    // FxHash: looked up on every request; the tables are built from operator data and a
    // caller's string only probes them, so there is no collision attack to resist.
    pub models: FxHashMap<String, Arc<Route>>,
    /// The same routes by MaaS model id (fallbacks name models by id).
    pub by_id: FxHashMap<i64, Arc<Route>>,
    /// SHA-256 of a platform key's secret → its owner. Revoked keys are absent.
    pub keys: FxHashMap<[u8; 32], Caller>,
    /// Counters of rules no longer served (model disabled, rule removed) that still held
    /// admissions: if the rule comes back within its window it resumes counting them, so
    /// toggling a model off and on never lets a window admit more than its limit. The
    /// heartbeat drops each once its window is empty (`Gateway::release_idle_counters`),
    /// so a disabled model's counters do not outlive their window. Behind a lock: the sweep
    /// removes from it while the snapshot serves.
    pub retired: Mutex<FxHashMap<CounterKey, Arc<Counter>>>,
    /// Quotas by subject (a key's, a workspace's).
    pub quotas: FxHashMap<(RuleTarget, i64), super::admission::quota::QuotaCheck>,
    /// Where budget alerts are sent, if the operator set a webhook.
    pub alert_webhook: Option<Arc<app::ssr::services::alerts::Webhook>>,
}

impl Snapshot {
    /// The quotas that apply to this caller: its key's, then its workspace's (the order
    /// [`super::admission::quota::check`] locks them in).
    pub fn quotas_for(&self, caller: &Caller) -> SmallVec<[&super::admission::quota::QuotaCheck; 2]> {
        if self.quotas.is_empty() {
            return SmallVec::new();
        }
        [(RuleTarget::ApiKey, caller.key_id), (RuleTarget::Workspace, caller.workspace_id)]
            .iter()
            .filter_map(|k| self.quotas.get(k))
            .collect()
    }
}

/// `https://api.deepseek.com` → `https://api.deepseek.com/v1`; URLs with a path stay as typed.
pub fn compose_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    if after_scheme.contains('/') {
        url.to_owned()
    } else {
        format!("{url}/v1")
    }
}

/// The configuration as read from the database, what [`assemble`] turns into a snapshot:
/// enabled models of published marketplace entries (on the served cluster), their endpoints and
/// rules in order, and the quotas with what their periods spent.
#[derive(Clone, Default)]
pub struct Rows {
    pub models: Vec<(maas_model::Model, marketplace_model::Model)>,
    pub endpoints: HashMap<i64, Vec<endpoint::Model>>,
    pub rules: HashMap<i64, Vec<rule::Model>>,
    pub quotas: FxHashMap<(RuleTarget, i64), QuotaCheck>,
    pub prices: HashMap<i64, Vec<model_price::Model>>,
}

/// One API key as the snapshot knows it: (secret hash in hex, key id, workspace id, holder's
/// expiry, operator's expiry, holder's models, operator's models).
pub type KeyRow = (String, i64, i64, Option<i64>, Option<i64>, Option<String>, Option<String>);

/// Builds the snapshot of `revision` from the database: enabled MaaS models whose marketplace
/// entry is published, on `cluster` (every cluster when `None`; a name on several clusters
/// resolves to the oldest), and every key that is not revoked.
pub async fn build(
    db: &(impl ConnectionTrait + StreamTrait),
    secrets: &SecretBox,
    cluster_name: Option<&str>,
    revision: i64,
    previous: Option<&Snapshot>,
    now_secs: i64,
) -> Result<Snapshot, DbErr> {
    let rows = load(db, cluster_name, previous, now_secs).await?;
    let mut snap = assemble(rows, secrets, revision, previous);
    // Streamed, three columns: with many keys, loading whole rows first was most of the
    // gateway's peak memory.
    let mut keys = api_key::Entity::find()
        .select_only()
        .columns([api_key::Column::SecretHash, api_key::Column::Id, api_key::Column::WorkspaceId])
        .columns([api_key::Column::ExpiresAt, api_key::Column::LimitExpiresAt, api_key::Column::Models, api_key::Column::LimitModels])
        .filter(api_key::Column::RevokedAt.is_null())
        .into_tuple::<KeyRow>()
        .stream(db)
        .await?;
    while let Some(row) = keys.try_next().await? {
        snap.add_key(row);
    }
    snap.alert_webhook = app::ssr::services::alerts::webhook(db, secrets).await.map_err(|e| DbErr::Custom(e.to_string()))?.map(Arc::new);
    Ok(snap)
}

/// Reads what [`assemble`] needs (see [`Rows`]); the quotas' counters carry over from
/// `previous` for the same subject and period.
pub async fn load(
    db: &impl ConnectionTrait,
    cluster_name: Option<&str>,
    previous: Option<&Snapshot>,
    now_secs: i64,
) -> Result<Rows, DbErr> {
    let clusters: HashMap<i64, cluster::Model> = cluster::Entity::find().all(db).await?.into_iter().map(|c| (c.id, c)).collect();
    let models = maas_model::Entity::find()
        .find_also_related(marketplace_model::Entity)
        .filter(maas_model::Column::Enabled.eq(true))
        .filter(marketplace_model::Column::Published.eq(true))
        .order_by_asc(maas_model::Column::Id)
        .all(db)
        .await?;
    let models: Vec<(maas_model::Model, marketplace_model::Model)> = models
        .into_iter()
        .filter_map(|(m, mm)| Some((m, mm?)))
        .filter(|(m, _)| cluster_name.is_none_or(|c| clusters.get(&m.cluster_id).is_some_and(|x| x.name == c)))
        .collect();
    let ids: Vec<i64> = models.iter().map(|(m, _)| m.id).collect();
    let mut endpoints: HashMap<i64, Vec<endpoint::Model>> = HashMap::new();
    for e in endpoint::Entity::find()
        .filter(endpoint::Column::MaasModelId.is_in(ids.clone()))
        .order_by_asc(endpoint::Column::Position)
        .all(db)
        .await?
    {
        endpoints.entry(e.maas_model_id).or_default().push(e);
    }
    let mut rules: HashMap<i64, Vec<rule::Model>> = HashMap::new();
    for r in rule::Entity::find().filter(rule::Column::MaasModelId.is_in(ids.clone())).order_by_asc(rule::Column::Position).all(db).await? {
        rules.entry(r.maas_model_id).or_default().push(r);
    }
    let mut prices: HashMap<i64, Vec<model_price::Model>> = HashMap::new();
    for p in model_price::Entity::find().filter(model_price::Column::MaasModelId.is_in(ids)).all(db).await? {
        prices.entry(p.maas_model_id).or_default().push(p);
    }
    let quota_counters = previous.map(|p| p.quotas.values().map(|q| (q.key, q.counter().clone())).collect()).unwrap_or_default();
    let quotas = super::admission::quota::load(db, &quota_counters, now_secs).await?;
    Ok(Rows { models, endpoints, rules, quotas, prices })
}

/// The snapshot of `revision` from `rows`, without touching a database: what survives from
/// `previous` (endpoint health and slots, rule counters) is carried over. Keys are added after
/// ([`Snapshot::add_key`]).
pub fn assemble(rows: Rows, secrets: &SecretBox, revision: i64, previous: Option<&Snapshot>) -> Snapshot {
    let Rows { models, endpoints: mut eps, mut rules, quotas, mut prices } = rows;
    // Health of endpoints that survive the change (same model, URL and Model ID) carries over.
    // Previous routes by id, found once: a scan per endpoint was quadratic in the models.
    let previous_routes: HashMap<i64, &Route> = previous.map(|p| p.models.values().map(|r| (r.id, &**r)).collect()).unwrap_or_default();
    let old_endpoint = |model: i64, url: &str, model_id: &str| -> Option<&Endpoint> {
        previous_routes.get(&model)?.endpoints.iter().find(|e| e.url == url && e.model_id == model_id)
    };
    // Slots carry over too, resized to the new cap: calls in flight keep counting against it.
    let slots_for = |old: Option<&Endpoint>, cap: Option<i64>| -> Option<Arc<super::slots::Slots>> {
        let cap = u32::try_from(cap?).ok().filter(|c| *c > 0)?;
        match old.and_then(|e| e.slots.clone()) {
            Some(s) => {
                s.resize(cap);
                Some(s)
            }
            None => Some(super::slots::Slots::new(cap)),
        }
    };
    // Counters outlive snapshots: the same rule meaning keeps counting what it already admitted.
    let mut counters: FxHashMap<CounterKey, Arc<Counter>> =
        previous_routes.values().flat_map(|r| r.rules.iter()).map(|c| (c.key, c.counter().clone())).collect();
    if let Some(p) = previous {
        counters.extend(p.retired.lock().iter().map(|(k, c)| (*k, c.clone())));
    }
    let mut snap = Snapshot { revision, quotas, ..Default::default() };
    for (m, mm) in models {
        if snap.models.contains_key(&mm.name) {
            continue;
        }
        let mut endpoints: Vec<endpoint::Model> = eps.remove(&m.id).unwrap_or_default();
        if endpoints.len() > balancer::MAX_ENDPOINTS {
            // Validation refuses more; only a hand-edited database gets here.
            tracing::warn!(model = %mm.name, count = endpoints.len(), "more endpoints than the gateway balances; serving the first {}", balancer::MAX_ENDPOINTS);
            endpoints.truncate(balancer::MAX_ENDPOINTS);
        }
        let policy = m.policy();
        // Each endpoint's previous self, found once: its health, slots and load carry over.
        let olds: Vec<Option<&Endpoint>> = endpoints.iter().map(|e| old_endpoint(m.id, &e.url, &e.model_id)).collect();
        let loads: Vec<Arc<super::load::Load>> = olds.iter().map(|o| o.map(|o| o.load.clone()).unwrap_or_default()).collect();
        let seed = m.id as u64 ^ revision as u64;
        let balancer: Box<dyn Balancer> = match policy {
            Policy::RoundRobin => Box::new(balancer::RoundRobin::default()),
            Policy::Random => Box::new(balancer::Random::new(seed)),
            Policy::Weighted => Box::new(balancer::Weighted::new(endpoints.iter().map(|e| e.weight as i64).collect())),
            Policy::LeastBusy => Box::new(balancer::LeastBusy::new(loads.clone())),
            Policy::Fastest => Box::new(balancer::Fastest::new(loads.clone(), seed)),
            Policy::Affinity => Box::new(balancer::Affinity::new(endpoints.iter().map(|e| e.id).collect(), loads.clone())),
        };
        let mut model_rules = Rules::default();
        for r in rules.remove(&m.id).unwrap_or_default() {
            let Some(target) = RuleTarget::parse(&r.target) else { continue };
            let Some(subject) = (match target {
                RuleTarget::ApiKey => r.api_key_id,
                RuleTarget::Workspace => Some(r.workspace_id),
            }) else {
                continue;
            };
            let Some(kind) = RuleKind::parse(&r.kind) else { continue };
            let duration_ms = if kind.windowed() { r.duration_secs as u64 * 1000 } else { 0 };
            let key = CounterKey { model_id: m.id, target, subject_id: subject, kind, duration_ms };
            let (t, limit) = (target.as_str(), r.limit_value);
            let label = match kind {
                RuleKind::Requests => format!("{t}:{subject}:{limit}/{}s", r.duration_secs),
                RuleKind::Tokens => format!("{t}:{subject}:{limit}tokens/{}s", r.duration_secs),
                RuleKind::Concurrent => format!("{t}:{subject}:{limit}concurrent"),
            };
            let check = RuleCheck::counted_in(&mut counters, key, limit as u64, label);
            model_rules.add(target, subject, check);
        }
        let route = Route {
            id: m.id,
            name: Arc::from(mm.name.as_str()),
            owned_by: mm.provider.clone(),
            created: m.created_at,
            kind: app::types::ModelKind::parse(&mm.kind),
            policy,
            affinity_key: app::types::AffinityKey::parse(&m.affinity_key),
            endpoints: endpoints
                .into_iter()
                .zip(olds.into_iter().zip(loads))
                .map(|(e, (old, load))| {
                    let key = e.api_key_enc.as_deref().and_then(|k| secrets.decrypt(k));
                    Endpoint {
                        id: e.id,
                        health: old.map(|o| o.health.clone()).unwrap_or_default(),
                        slots: slots_for(old, e.max_concurrent),
                        url: e.url.clone(),
                        model_json: serde_json::to_string(&e.model_id).expect("a string serializes"),
                        model_id: e.model_id,
                        skip_stream_usage: e.skip_stream_usage,
                        targets: parse_targets(&compose_base(&e.url)),
                        apis: Api::split(&e.native_apis).into_iter().fold(0, |bits, a| bits | 1 << a as u8),
                        x_api_key: key.as_deref().and_then(sensitive),
                        auth: key.as_deref().and_then(bearer),
                        load,
                        draining: e.draining,
                    }
                })
                .collect(),
            balancer,
            rules: model_rules,
            reserve_output: m.reserve_output_tokens.map_or(super::admission::reserve::DEFAULT_OUTPUT_TOKENS, |r| r.max(1) as u64),
            waiting: Default::default(),
            // The budget carries over: a reload does not hand a failing fleet a fresh one.
            retry: super::retry::Retry::new(&m.retry(), previous_routes.get(&m.id).map(|r| r.retry.budget.clone()).unwrap_or_default()),
            fallbacks: m.fallbacks(),
            health_check: m.health_check(),
            prices: prices.remove(&m.id).map(|v| Arc::new(Schedule::new(v.iter().map(|p| (p.effective_from, p.rates())).collect()))),
        };
        let route = Arc::new(route);
        snap.by_id.insert(m.id, route.clone());
        snap.models.insert(mm.name, route);
    }
    let served: FxHashSet<CounterKey> = snap.models.values().flat_map(|r| r.rules.iter()).map(|c| c.key).collect();
    snap.retired = Mutex::new(counters.into_iter().filter(|(k, c)| !served.contains(k) && c.holds_admissions()).collect());
    snap
}

impl Snapshot {
    /// Adds a key that may call (not revoked), with its effective scope.
    pub fn add_key(&mut self, (hash, key_id, workspace_id, own_expiry, limit_expiry, own_models, limit_models): KeyRow) {
        let mut digest = [0u8; 32];
        if hex::decode_to_slice(&hash, &mut digest).is_ok() {
            let scope = app::types::KeyScope::effective_stored(own_expiry, limit_expiry, own_models.as_deref(), limit_models.as_deref());
            let models = scope.1.map(|m| Arc::from(m.into_boxed_slice()));
            self.keys.insert(digest, Caller { key_id, workspace_id, expires_at: scope.0, models });
        }
    }
}

fn parse_targets(base: &str) -> Option<[Target; Op::ALL.len()]> {
    let parsed: Vec<Target> = Op::ALL.iter().map(|op| Target::parse(&format!("{base}{}", op.path()))).collect::<Option<_>>()?;
    parsed.try_into().ok()
}

fn bearer(key: &str) -> Option<http::HeaderValue> {
    sensitive(&format!("Bearer {key}"))
}

/// A header value marked sensitive, so it is never logged.
fn sensitive(value: &str) -> Option<http::HeaderValue> {
    let mut v = http::HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn gateway_paths_name_their_operations() {
        use super::Op;
        assert!(matches!(Op::at("/v1/chat/completions"), Some(Op::Chat)));
        assert!(matches!(Op::at("/v1/completions"), Some(Op::Completions)));
        assert!(matches!(Op::at("/v1/embeddings"), Some(Op::Embeddings)));
        for other in ["/v1/models", "/chat/completions", "/v1/chat/completions/", "/v2/completions", "/v1"] {
            assert!(Op::at(other).is_none(), "{other}");
        }
    }

    #[test]
    fn base_gets_v1_only_without_a_path() {
        assert_eq!(super::compose_base("https://api.deepseek.com"), "https://api.deepseek.com/v1");
        assert_eq!(super::compose_base("https://api.deepseek.com/"), "https://api.deepseek.com/v1");
        assert_eq!(super::compose_base("http://h:1/openai/v1/"), "http://h:1/openai/v1");
    }
}
