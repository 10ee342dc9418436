//! Types shared by the browser and the server: what server functions take and return.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Role::Operator),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

/// Load-balancing policy of a MaaS model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    RoundRobin,
    Random,
    Weighted,
    /// Fewest calls in flight.
    LeastBusy,
    /// Lowest recent time to first byte, with a small share exploring the others.
    Fastest,
    /// A conversation's calls to one endpoint (its prefix cache), within a load bound.
    Affinity,
}

impl Policy {
    pub const ALL: [Policy; 6] =
        [Policy::RoundRobin, Policy::Random, Policy::Weighted, Policy::LeastBusy, Policy::Fastest, Policy::Affinity];
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::Random => "random",
            Policy::Weighted => "weighted",
            Policy::LeastBusy => "least_busy",
            Policy::Fastest => "fastest",
            Policy::Affinity => "affinity",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Policy::RoundRobin => "Round-robin",
            Policy::Random => "Random",
            Policy::Weighted => "Weighted",
            Policy::LeastBusy => "Least busy",
            Policy::Fastest => "Fastest",
            Policy::Affinity => "Cache affinity",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// Whether it reads the endpoints' calls in flight and answer times (the gateway counts
    /// them only then).
    pub fn counts_load(self) -> bool {
        matches!(self, Policy::LeastBusy | Policy::Fastest | Policy::Affinity)
    }
}

/// What keeps a conversation on one endpoint under the cache-affinity policy: a member of the
/// request, or the caller's API key. A call without it goes to the least busy endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AffinityKey {
    /// OpenAI's `prompt_cache_key` (what Codex and the Agents SDK send per conversation).
    #[default]
    PromptCacheKey,
    /// OpenAI's `user`.
    User,
    /// Anthropic's `metadata.user_id` (Claude Code sends one per session).
    MetadataUserId,
    /// The caller's API key.
    ApiKey,
}

impl AffinityKey {
    pub const ALL: [AffinityKey; 4] = [AffinityKey::PromptCacheKey, AffinityKey::User, AffinityKey::MetadataUserId, AffinityKey::ApiKey];
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityKey::PromptCacheKey => "prompt_cache_key",
            AffinityKey::User => "user",
            AffinityKey::MetadataUserId => "metadata_user_id",
            AffinityKey::ApiKey => "api_key",
        }
    }
    pub fn parse(s: &str) -> AffinityKey {
        AffinityKey::ALL.into_iter().find(|k| k.as_str() == s).unwrap_or_default()
    }
}

/// An upstream failure, as a retry policy names what it retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// Refused, reset, unreachable, or no connection within the connect timeout.
    Connect,
    /// No response headers within the first-byte timeout.
    Timeout,
    /// A 5xx answer.
    #[serde(rename = "5xx")]
    Status5xx,
    /// A 429 answer (the endpoint also rests for its `Retry-After`).
    #[serde(rename = "429")]
    Status429,
}

impl RetryOn {
    pub const ALL: [RetryOn; 4] = [RetryOn::Connect, RetryOn::Timeout, RetryOn::Status5xx, RetryOn::Status429];
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::Connect => "connect",
            RetryOn::Timeout => "timeout",
            RetryOn::Status5xx => "5xx",
            RetryOn::Status429 => "429",
        }
    }
}

/// Which failed tries of a call go on to the next endpoint, how many tries a call makes, and
/// the share of the model's calls that may be retried (so that a failing fleet is not sent
/// its traffic twice over). A try is never made after a byte of the answer reached the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct RetryPolicy {
    pub on: Vec<RetryOn>,
    /// Tries per call, the first included (1: never retried); 0: each endpoint once.
    pub max_tries: u32,
    /// Retries at most this percentage of the model's calls, beyond a floor of 10 retries a
    /// second per gateway, of which 100 may come at once (so that a quiet model still fails
    /// over); 100: no budget.
    pub budget_percent: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { on: RetryOn::ALL.to_vec(), max_tries: 0, budget_percent: 20 }
    }
}

/// What an active health check asks an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// `GET <base>/models` (OpenAI-compatible servers, vLLM, SGLang): costs no tokens.
    #[default]
    Models,
    /// `GET <origin>/health` (vLLM, SGLang, TGI): costs no tokens.
    Health,
    /// A one-token chat completion: proves the model answers, at the price of a token (never
    /// counted as anyone's usage).
    Completion,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Models, ProbeKind::Health, ProbeKind::Completion];
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Models => "models",
            ProbeKind::Health => "health",
            ProbeKind::Completion => "completion",
        }
    }
    pub fn parse(s: &str) -> ProbeKind {
        ProbeKind::ALL.into_iter().find(|k| k.as_str() == s).unwrap_or_default()
    }
}

/// Active health checks of a model's endpoints: one prober per cluster probes each endpoint
/// every `interval_secs`; `unhealthy_threshold` failed probes in a row take it out of rotation,
/// `healthy_threshold` passed ones bring it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct HealthCheck {
    pub probe: ProbeKind,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck { probe: ProbeKind::Models, interval_secs: 10, timeout_secs: 5, healthy_threshold: 2, unhealthy_threshold: 3 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    #[default]
    ApiKey,
    Workspace,
}

impl RuleTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleTarget::ApiKey => "api_key",
            RuleTarget::Workspace => "workspace",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(RuleTarget::ApiKey),
            "workspace" => Some(RuleTarget::Workspace),
            _ => None,
        }
    }
}

/// What a rate-limit rule counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Calls admitted per window.
    #[default]
    Requests,
    /// Tokens (input + output) per window: consumed by finished calls plus reserved by calls
    /// in flight.
    Tokens,
    /// Calls in flight at once (a stream until its end or the client leaving); no window.
    Concurrent,
}

impl RuleKind {
    pub const ALL: [RuleKind; 3] = [RuleKind::Requests, RuleKind::Tokens, RuleKind::Concurrent];
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Requests => "requests",
            RuleKind::Tokens => "tokens",
            RuleKind::Concurrent => "concurrent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Whether the rule counts over a window (a duration field); concurrency has none.
    pub fn windowed(self) -> bool {
        self != RuleKind::Concurrent
    }
    /// The unit of its limit, for labels: "requests", "tokens", "calls at once".
    pub fn unit(self) -> &'static str {
        match self {
            RuleKind::Requests => "requests",
            RuleKind::Tokens => "tokens",
            RuleKind::Concurrent => "calls at once",
        }
    }
}

/// Field path → message, e.g. `endpoints.1.url` → "must start with http:// or https://".
/// Paths are stable so the form can show each message next to its field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.0.entry(field.into()).or_insert_with(|| msg.into());
    }
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn single(field: &str, msg: &str) -> Self {
        let mut e = Self::default();
        e.add(field, msg);
        e
    }
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        write!(f, "{}", parts.join("; "))
    }
}

// ---- marketplace, clusters, workspaces, keys ----

/// What kind of model a marketplace model is: the operations the gateway serves it (a call of
/// another kind's operation is refused, saying which it serves).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Chat completions, completions, Anthropic's Messages, OpenAI's Responses.
    #[default]
    Chat,
    /// Embeddings.
    Embedding,
    /// Reranking (`/v1/rerank`).
    Rerank,
    /// Transcription and translation of audio.
    SpeechToText,
    /// Speech synthesis.
    TextToSpeech,
    /// Image generation and edits.
    Image,
}

impl ModelKind {
    pub const ALL: [ModelKind; 6] =
        [ModelKind::Chat, ModelKind::Embedding, ModelKind::Rerank, ModelKind::SpeechToText, ModelKind::TextToSpeech, ModelKind::Image];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
            ModelKind::Rerank => "rerank",
            ModelKind::SpeechToText => "speech_to_text",
            ModelKind::TextToSpeech => "text_to_speech",
            ModelKind::Image => "image",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Chat => "Chat",
            ModelKind::Embedding => "Embedding",
            ModelKind::Rerank => "Rerank",
            ModelKind::SpeechToText => "Speech to text",
            ModelKind::TextToSpeech => "Text to speech",
            ModelKind::Image => "Image",
        }
    }

    /// A stored kind; anything unknown is chat.
    pub fn parse(s: &str) -> ModelKind {
        ModelKind::ALL.into_iter().find(|k| k.as_str() == s).unwrap_or_default()
    }

    /// What its calls are counted in besides tokens (usage's `units`), if anything.
    pub fn unit(self) -> Option<Unit> {
        match self {
            ModelKind::Chat | ModelKind::Embedding => None,
            ModelKind::Rerank => Some(Unit::Documents),
            ModelKind::SpeechToText => Some(Unit::Seconds),
            ModelKind::TextToSpeech => Some(Unit::Characters),
            ModelKind::Image => Some(Unit::Images),
        }
    }

    /// Whether calls report tokens (token rules and quotas count them): all but speech
    /// synthesis, which is counted by request rules alone.
    pub fn counts_tokens(self) -> bool {
        self != ModelKind::TextToSpeech
    }
}

/// The unit a model's calls are counted in besides tokens (usage's `units`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Documents reranked.
    Documents,
    /// Characters of text spoken.
    Characters,
    /// Images made or edited.
    Images,
    /// Seconds of audio, as the upstream reports them (`usage.seconds`).
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Documents => "documents",
            Unit::Characters => "characters",
            Unit::Images => "images",
            Unit::Seconds => "seconds",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MarketplaceModel {
    pub id: i64,
    pub name: String,
    pub provider: String,
    pub description: String,
    pub tags: Vec<String>,
    pub published: bool,
    #[serde(default)]
    pub kind: ModelKind,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketplaceInput {
    pub name: String,
    pub provider: String,
    pub description: String,
    /// Comma-separated, as typed.
    pub tags: String,
    #[serde(default)]
    pub kind: ModelKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Cluster {
    pub id: i64,
    pub name: String,
    pub entry_address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Workspace {
    pub id: i64,
    pub name: String,
    pub members: Vec<String>,
    pub quota: Option<QuotaView>,
}

pub use crate::days::Period;

/// A budget of tokens, requests and/or money per calendar day or month (UTC) for a workspace
/// or an API key, as the form sends it: numbers as typed, empty for "no budget of this kind".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaInput {
    pub period: Period,
    pub tokens: String,
    pub requests: String,
    /// Money, a decimal of the installation's currency (`"25.50"`).
    pub spend: String,
    /// What the money budget does with calls to an unpriced model: `refuse` or `pass`.
    pub unpriced: String,
    /// Alert thresholds of the money budget, percent, comma-separated (`"50, 80, 100"`).
    pub alerts: String,
}

/// A quota form's fields, as both quota server functions take them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaForm {
    pub period: String,
    pub tokens: String,
    pub requests: String,
    #[serde(default)]
    pub spend: String,
    #[serde(default)]
    pub unpriced: String,
    #[serde(default)]
    pub alerts: String,
}

impl QuotaInput {
    /// From a form's fields; the period must be `day` or `month`, the budgets are checked by
    /// the service.
    pub fn from_form(f: QuotaForm) -> Result<Self, crate::error::AppError> {
        let period = Period::parse(&f.period).ok_or_else(|| crate::error::AppError::field("period", "choose day or month"))?;
        Ok(QuotaInput { period, tokens: f.tokens, requests: f.requests, spend: f.spend, unpriced: f.unpriced, alerts: f.alerts })
    }
}

/// A quota and what is spent of it in the current period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct QuotaView {
    pub period: Period,
    pub tokens: Option<i64>,
    pub requests: Option<i64>,
    /// Spent in the current period, as the gateways last wrote it (they add to it with every
    /// usage flush).
    pub spent_tokens: i64,
    pub spent_requests: i64,
    /// The budget in money, a decimal of the currency (`None`: no money budget).
    pub spend: Option<String>,
    /// What the period spent in money (a decimal of the currency, every call rounded once).
    pub spent_money: String,
    /// The money budget is reached (compared on the server, in integers).
    pub spend_reached: bool,
    /// What the money budget does with calls to an unpriced model: `refuse` or `pass`.
    pub unpriced: String,
    /// Alert thresholds of the money budget, percent.
    pub alerts: Vec<u16>,
    /// The highest threshold crossed this period (an alert was raised).
    pub alerted: Option<u16>,
    /// The installation's currency (ISO 4217).
    pub currency: String,
    /// When the current period ends (Unix second): the quota is whole again.
    pub resets_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApiKeyInfo {
    pub id: i64,
    pub workspace_id: i64,
    pub public_id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
    /// What the key's holders chose, and the operator's limit: the key works within both.
    pub own: KeyScope,
    pub limit: KeyScope,
    /// Past its last day (of either layer).
    pub expired: bool,
    pub quota: Option<QuotaView>,
}

/// Until when and for which models an API key works, as one layer sets it (its holder's
/// choice, or the operator's limit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct KeyScope {
    /// The last day (UTC, `YYYY-MM-DD`) the key works; `None`: no end.
    pub last_day: Option<String>,
    /// MaaS model ids the key may call; `None`: every model.
    pub models: Option<Vec<i64>>,
}

impl KeyScope {
    pub fn from_stored(expires_at: Option<i64>, models: Option<&str>) -> KeyScope {
        KeyScope { last_day: expires_at.map(crate::days::last_day_of), models: models.map(parse_ids) }
    }

    /// What the gateway applies from both stored layers: the earlier expiry, the models in
    /// both lists (sorted). A list that does not parse allows nothing: closed, not open.
    pub fn effective_stored(
        own_expires: Option<i64>,
        limit_expires: Option<i64>,
        own_models: Option<&str>,
        limit_models: Option<&str>,
    ) -> (Option<i64>, Option<Vec<i64>>) {
        (earlier(own_expires, limit_expires), in_both(own_models.map(parse_ids), limit_models.map(parse_ids)))
    }

    /// What applies of this layer and `limit` together, as the console shows it (the same
    /// rule as [`KeyScope::effective_stored`]; `YYYY-MM-DD` days order as they read).
    pub fn within(&self, limit: &KeyScope) -> KeyScope {
        KeyScope {
            last_day: earlier(self.last_day.clone(), limit.last_day.clone()),
            models: in_both(self.models.clone(), limit.models.clone()),
        }
    }
}

/// The earlier of two ends; `None` is no end.
fn earlier<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The ids in both lists (`b` sorted, as stored lists are read), in the first's order; `None`
/// is every id.
fn in_both(a: Option<Vec<i64>>, b: Option<Vec<i64>>) -> Option<Vec<i64>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.into_iter().filter(|m| b.binary_search(m).is_ok()).collect()),
        (a, b) => a.or(b),
    }
}

/// A stored JSON list of ids, sorted and without repeats; anything else: none.
fn parse_ids(s: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = serde_json::from_str(s).unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Returned once, at creation: the only time the secret exists outside the caller's hands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    pub info: ApiKeyInfo,
    pub secret: String,
}

// ---- MaaS models ----

/// What the form says about an endpoint's upstream key. The saved key is never sent back, so
/// an edit either keeps it, replaces it, or clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyChange {
    #[default]
    Keep,
    Set(String),
    Clear,
}

/// An API an endpoint speaks natively. The gateway serves Messages and Responses calls to an
/// endpoint that speaks only chat completions by translating them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI's chat completions (with completions and embeddings): every vLLM, SGLang, TGI.
    Chat,
    /// Anthropic's Messages API (`/v1/messages`).
    Messages,
    /// OpenAI's Responses API (`/v1/responses`).
    Responses,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Chat, Api::Messages, Api::Responses];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Messages => "messages",
            Api::Responses => "responses",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Api::Chat => "Chat completions",
            Api::Messages => "Messages",
            Api::Responses => "Responses",
        }
    }

    pub fn parse(s: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// How a set is stored: names joined by commas (`chat,messages`), in declaration order.
    pub fn join(apis: &[Api]) -> String {
        Api::ALL.into_iter().filter(|a| apis.contains(a)).map(Api::as_str).collect::<Vec<_>>().join(",")
    }

    /// A stored set; unknown names are skipped, and nothing at all is chat (the default).
    pub fn split(s: &str) -> Vec<Api> {
        let apis: Vec<Api> = s.split(',').filter_map(|a| Api::parse(a.trim())).collect();
        if apis.is_empty() {
            vec![Api::Chat]
        } else {
            apis
        }
    }
}

/// The APIs an endpoint speaks when nothing says otherwise: chat completions, as every vLLM and
/// SGLang deployment does (Messages and Responses are then translated).
pub fn default_apis() -> Vec<Api> {
    vec![Api::Chat]
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInput {
    /// The saved endpoint this row edits (to keep its key); `None` for a new row.
    pub id: Option<i64>,
    pub model_id: String,
    pub url: String,
    pub api_key: KeyChange,
    /// As typed; validated to an integer 0–100.
    pub weight: String,
    /// Do not ask this upstream for a stream's usage (`stream_options.include_usage`): for
    /// servers that refuse the option. Its streams' tokens are then unknown.
    #[serde(default)]
    pub skip_stream_usage: bool,
    /// As typed: the most calls the gateway sends this upstream at once (its inference
    /// slots); empty for no cap.
    #[serde(default)]
    pub max_concurrent: String,
    /// The APIs it speaks natively (at least one).
    #[serde(default = "default_apis")]
    pub native_apis: Vec<Api>,
    /// Drained: no new calls (calls under way finish).
    #[serde(default)]
    pub draining: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInput {
    #[serde(default)]
    pub kind: RuleKind,
    pub target: RuleTarget,
    pub workspace_id: Option<i64>,
    pub api_key_id: Option<i64>,
    pub limit: String,
    pub duration: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInput {
    pub marketplace_model_id: Option<i64>,
    pub cluster_id: Option<i64>,
    pub policy: Policy,
    pub endpoints: Vec<EndpointInput>,
    pub rules: Vec<RuleInput>,
    /// As typed: the output tokens a call that gives no `max_tokens` reserves in token rules
    /// and quotas; empty for the gateway's default.
    #[serde(default)]
    pub reserve_output: String,
    /// What the cache-affinity policy keeps a conversation by.
    #[serde(default)]
    pub affinity_key: AffinityKey,
    /// Other MaaS models (ids, in order) that answer when none of this one's endpoints can.
    #[serde(default)]
    pub fallbacks: Vec<i64>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// `None`: no active health checks (failures seen on calls still cool an endpoint down).
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EndpointView {
    pub id: i64,
    pub model_id: String,
    pub url: String,
    pub has_key: bool,
    pub weight: i32,
    pub skip_stream_usage: bool,
    pub max_concurrent: Option<i64>,
    pub native_apis: Vec<Api>,
    #[serde(default)]
    pub draining: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RuleView {
    pub kind: RuleKind,
    pub target: RuleTarget,
    pub workspace_id: i64,
    pub api_key_id: Option<i64>,
    pub limit: i64,
    pub duration: i64,
}

/// A saved model as the edit form loads it (no upstream secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ModelDetail {
    pub id: i64,
    pub marketplace_model_id: i64,
    pub cluster_id: i64,
    pub policy: Policy,
    pub enabled: bool,
    pub endpoints: Vec<EndpointView>,
    pub rules: Vec<RuleView>,
    /// `None`: the gateway's default.
    #[serde(default)]
    pub reserve_output: Option<i64>,
    #[serde(default)]
    pub affinity_key: AffinityKey,
    #[serde(default)]
    pub fallbacks: Vec<i64>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// The model's configuration revision: an edit saved against it is refused (412) once
    /// someone else has changed the model since.
    #[serde(default)]
    pub revision: i64,
}

/// An endpoint's health as its cluster's prober judged it, with its latest transitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EndpointHealth {
    pub endpoint_id: i64,
    pub url: String,
    /// `None`: not probed yet.
    pub healthy: Option<bool>,
    /// Unix seconds of the last transition.
    pub since: i64,
    /// Why the last probe failed ("" when it passed).
    pub reason: String,
    /// Newest first.
    pub events: Vec<HealthEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HealthEvent {
    /// Unix seconds.
    pub at: i64,
    pub healthy: bool,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum GatewayState {
    /// Every live gateway serving the cluster (`replicas` of them) applied this model's latest
    /// revision.
    Synced {
        replicas: u32,
    },
    /// Some live gateway has not applied it yet, or none serves the cluster.
    Pending {
        revision: i64,
        reason: String,
    },
    Error(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ModelRow {
    pub id: i64,
    pub name: String,
    pub model_ids: Vec<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub published: bool,
    pub cluster: String,
    pub access_path: String,
    pub policy: Policy,
    pub gateway: GatewayState,
    /// Endpoint URLs the serving gateway(s) report as cooling down after repeated failures.
    pub cooling: Vec<String>,
    /// Gateways of the cluster that stopped reporting: "gw-b gone, last seen 3 min ago".
    pub gone: Vec<String>,
    /// Calls and tokens of the last 24 hours (all endpoints, all callers).
    pub usage_24h: UsageFigures,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPage {
    pub rows: Vec<ModelRow>,
    /// The platform currency the rows' spend is in.
    #[serde(default)]
    pub currency: String,
    pub total: u64,
    pub page: u64,
    pub per_page: u64,
}

/// Everything the create/edit form needs for its dropdowns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormOptions {
    pub marketplace: Vec<MarketplaceModel>,
    pub clusters: Vec<Cluster>,
    pub workspaces: Vec<Workspace>,
    pub keys: Vec<ApiKeyInfo>,
    /// MaaS models a model may fall back to: (id, name, cluster id).
    #[serde(default)]
    pub models: Vec<(i64, String, i64)>,
}

/// One entry of the marketplace user view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offering {
    pub name: String,
    pub provider: String,
    pub description: String,
    pub tags: Vec<String>,
    pub base_url: String,
    /// The APIs the model is served over: chat completions where an endpoint speaks it, and
    /// Messages and Responses where an endpoint speaks them or chat completions (translated).
    #[serde(default)]
    pub apis: Vec<Api>,
    /// Copy-ready snippets (language, code), made on the server (`ssr::snippets`).
    #[serde(default)]
    pub snippets: Vec<(String, String)>,
    #[serde(default)]
    pub kind: ModelKind,
}

/// `{entry}/v1`, whatever trailing slash the operator typed.
pub fn access_path(entry_address: &str) -> String {
    format!("{}/v1", entry_address.trim_end_matches('/'))
}

pub fn parse_tags(s: &str) -> Vec<String> {
    let mut tags: Vec<String> = s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    tags.dedup();
    tags
}

// ---- Usage ----

/// The periods the Usage page shows, each with the width of its chart buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageRange {
    Hour,
    #[default]
    Day,
    Week,
    Month,
}

impl UsageRange {
    pub const ALL: [UsageRange; 4] = [UsageRange::Hour, UsageRange::Day, UsageRange::Week, UsageRange::Month];

    pub fn minutes(self) -> i64 {
        match self {
            UsageRange::Hour => 60,
            UsageRange::Day => 1440,
            UsageRange::Week => 7 * 1440,
            UsageRange::Month => 30 * 1440,
        }
    }

    /// Chart resolution: 60, 96, 168 and 120 points.
    pub fn bucket_minutes(self) -> i64 {
        match self {
            UsageRange::Hour => 1,
            UsageRange::Day => 15,
            UsageRange::Week => 60,
            UsageRange::Month => 360,
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            UsageRange::Hour => "1h",
            UsageRange::Day => "24h",
            UsageRange::Week => "7d",
            UsageRange::Month => "30d",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.param() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            UsageRange::Hour => "Last hour",
            UsageRange::Day => "Last 24 hours",
            UsageRange::Week => "Last 7 days",
            UsageRange::Month => "Last 30 days",
        }
    }

    /// The unit of a chart bucket, for axis titles ("requests / 15 min").
    pub fn bucket_label(self) -> &'static str {
        match self {
            UsageRange::Hour => "min",
            UsageRange::Day => "15 min",
            UsageRange::Week => "hour",
            UsageRange::Month => "6 h",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFilter {
    pub range: UsageRange,
    pub model: Option<i64>,
    pub workspace: Option<i64>,
    pub key: Option<i64>,
}

/// What a set of calls adds up to. Tokens are the sums of the calls whose upstream reported
/// usage; `usage_unknown` says how many did not (never counted as 0 tokens).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UsageFigures {
    pub requests: i64,
    /// Upstream errors and malformed requests (not 429s, not cancels).
    pub errors: i64,
    pub rate_limited: i64,
    pub cancelled: i64,
    pub usage_unknown: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    /// Input tokens read from the upstream's prompt cache (part of `input_tokens`).
    #[serde(default)]
    pub cached_tokens: i64,
    /// Input tokens written to the upstream's prompt cache (Anthropic's cache writes; part of
    /// `input_tokens`).
    #[serde(default)]
    pub cache_write_tokens: i64,
    /// Of the operations' units besides tokens: documents reranked, characters spoken, images
    /// made, seconds of audio transcribed.
    #[serde(default)]
    pub units: i64,
    /// What `units` counts, where one model's calls are summed (its kind's unit); `None` for
    /// sums over models of several kinds.
    #[serde(default)]
    pub unit: Option<String>,
    /// What the calls cost in the platform currency, an exact decimal (the priced calls only).
    #[serde(default)]
    pub cost: String,
    /// Calls an upstream answered that no price covered (or that reported no usage): their
    /// cost is unknown, never counted as 0.
    #[serde(default)]
    pub cost_unknown: i64,
    pub failovers: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
}

/// One row of a usage table: what it is (`label`, `detail`) and its figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageLine {
    pub label: String,
    pub detail: String,
    pub figures: UsageFigures,
}

/// A chart drawn on the server, as SVG markup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageChart {
    pub title: String,
    pub svg: String,
}

/// A choice of the Usage page's filters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: i64,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub filter: UsageFilter,
    pub totals: UsageFigures,
    pub charts: Vec<UsageChart>,
    pub top_workspaces: Vec<UsageLine>,
    pub top_keys: Vec<UsageLine>,
    /// The first rows (by tokens; endpoints by errors, then requests), and how many more.
    pub models: Vec<UsageLine>,
    pub endpoints: Vec<UsageLine>,
    pub models_hidden: usize,
    pub endpoints_hidden: usize,
    /// Calls a fallback model answered, per model asked for and fallback (the model's figures
    /// above count them under the fallback).
    #[serde(default)]
    pub fallbacks: Vec<UsageLine>,
    pub model_choices: Vec<Choice>,
    pub workspace_choices: Vec<Choice>,
    pub key_choices: Vec<Choice>,
    /// The platform currency the costs are in (ISO 4217).
    #[serde(default)]
    pub currency: String,
    /// The CSV export's default period (the last 30 UTC days), as YYYY-MM-DD.
    pub export_from: String,
    pub export_to: String,
}

/// A key's usage for its owner's keys page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyUsage {
    pub key_id: i64,
    pub day: UsageFigures,
    pub month: UsageFigures,
    /// The platform currency their spend is in.
    #[serde(default)]
    pub currency: String,
}

impl UsageFigures {
    /// What the calls cost, for people: "0.0246 USD", "+3 unpriced" where some calls' cost is
    /// unknown (never shown as free); `None` when no call was priced or unpriced.
    pub fn spend_text(&self, currency: &str) -> Option<String> {
        let priced = self.cost.bytes().any(|b| (b'1'..=b'9').contains(&b));
        match (priced, self.cost_unknown) {
            (false, 0) => None,
            (true, 0) => Some(format!("{} {currency}", self.cost)),
            (false, n) => Some(format!("cost unknown for {n}")),
            (true, n) => Some(format!("{} {currency} (+{n} unpriced)", self.cost)),
        }
    }
}

/// Formats a token or request count for people: 950, 12.3k, 4.5M.
pub fn compact_count(n: i64) -> String {
    let a = n.unsigned_abs() as f64;
    let (v, unit) = if a >= 1e9 {
        (a / 1e9, "G")
    } else if a >= 1e6 {
        (a / 1e6, "M")
    } else if a >= 1e4 {
        (a / 1e3, "k")
    } else {
        return n.to_string();
    };
    let sign = if n < 0 { "-" } else { "" };
    if v >= 100.0 {
        format!("{sign}{v:.0}{unit}")
    } else {
        format!("{sign}{v:.1}{unit}")
    }
}

/// A latency for people: 840 ms, 2.4 s; "–" without calls.
pub fn latency_label(ms: Option<f64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

impl QuotaView {
    /// "1.2k of 5000 tokens · 3 of 100 requests this month, resets 2027-01-01".
    pub fn summary(&self) -> String {
        let of = |spent: i64, budget: Option<i64>, unit: &str| budget.map(|b| format!("{} of {b} {unit}", compact_count(spent)));
        let money = self.spend.as_ref().map(|b| format!("{} of {b} {}", self.spent_money, self.currency));
        let parts: Vec<String> = [of(self.spent_tokens, self.tokens, "tokens"), of(self.spent_requests, self.requests, "requests"), money]
            .into_iter()
            .flatten()
            .collect();
        let period = match self.period {
            Period::Day => "today",
            Period::Month => "this month",
        };
        let alert = self.alerted.map(|p| format!(" · alert: {p} % of the money budget")).unwrap_or_default();
        format!("{} {period}, resets {}{alert}", parts.join(" · "), crate::days::format_day(self.resets_at.div_euclid(86_400)))
    }

    /// Whether a budget is spent (calls are refused until it resets).
    pub fn spent(&self) -> bool {
        self.tokens.is_some_and(|b| self.spent_tokens >= b) || self.requests.is_some_and(|b| self.spent_requests >= b) || self.spend_reached
    }
}

// ---- admin API tokens and the audit log ----

/// What an admin token may do on `/api/v1`: read everything an operator reads, or also write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAccess {
    #[default]
    Read,
    Write,
}

impl TokenAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAccess::Read => "read",
            TokenAccess::Write => "write",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(TokenAccess::Read),
            "write" => Some(TokenAccess::Write),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenInfo {
    pub id: i64,
    pub name: String,
    /// The token's visible prefix (`adm_…`), to tell tokens apart; not a credential.
    pub public_id: String,
    pub access: TokenAccess,
    pub created_by: String,
    pub created_at: i64,
    /// The last day (UTC) it works; `None`: no end.
    pub last_day: Option<String>,
    pub revoked: bool,
    pub expired: bool,
    pub last_used_at: Option<i64>,
}

/// Returned once, at creation: the only time the secret exists outside the caller's hands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedAdminToken {
    pub info: AdminTokenInfo,
    pub secret: String,
}

/// One change in the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// `user`, `token` or `system`.
    pub actor_kind: String,
    pub actor: String,
    /// `console`, `api` or `system`.
    pub via: String,
    pub entity: String,
    pub entity_id: i64,
    pub action: String,
    /// JSON object: field → `{"old": …, "new": …}`.
    pub diff: String,
}

/// What the audit log is filtered by (all optional): the actor's name, the kind of entity
/// (and one of them), UTC days `from`..=`to` as `YYYY-MM-DD`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub actor: String,
    pub entity: String,
    pub entity_id: Option<i64>,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub total: u64,
}

/// One write call to the admin API and its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AccessEntry {
    pub at: i64,
    pub actor: String,
    pub method: String,
    pub path: String,
    pub status: i32,
}

/// A new version of a MaaS model's prices, in the platform currency, as decimals (exact: read
/// into integers, never floats). Empty fields are 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    /// Unix second it takes effect from; absent: now. Never in the past (calls already made
    /// keep the price they were made at).
    #[serde(default)]
    pub effective_from: Option<i64>,
    /// Per million input tokens (cached ones excepted), e.g. `"0.15"`; at most 6 decimals.
    #[serde(default)]
    pub input_per_million: String,
    /// Per million input tokens read from the upstream's prompt cache.
    #[serde(default)]
    pub cached_input_per_million: String,
    /// Per million input tokens written to the upstream's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`); empty: priced as input.
    #[serde(default)]
    pub cache_write_per_million: String,
    /// Per million output tokens.
    #[serde(default)]
    pub output_per_million: String,
    /// Per unit of the model's kind besides tokens (document, character, image, second).
    #[serde(default)]
    pub per_unit: String,
    /// Per call answered.
    #[serde(default)]
    pub per_call: String,
}

/// One version of a MaaS model's prices: the input's figures as exact decimals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PriceVersion {
    pub id: i64,
    pub effective_from: i64,
    /// The platform currency (ISO 4217), set once for the installation.
    pub currency: String,
    pub input_per_million: String,
    pub cached_input_per_million: String,
    /// `None`: cache writes are priced as input.
    #[serde(default)]
    pub cache_write_per_million: Option<String>,
    pub output_per_million: String,
    pub per_unit: String,
    pub per_call: String,
}

/// One UTC day × workspace × key × model of usage: the billing export's line, and the admin
/// API's usage resource. Ids are absent for calls refused before they named one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DailyUsage {
    pub day: String,
    pub workspace_id: Option<i64>,
    pub workspace: String,
    pub api_key_id: Option<i64>,
    pub api_key: String,
    pub model_id: Option<i64>,
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    /// Input tokens read from the upstream's prompt cache (part of `input_tokens`).
    #[serde(default)]
    pub cached_tokens: i64,
    /// Input tokens written to the upstream's prompt cache (Anthropic's cache writes; part of
    /// `input_tokens`).
    #[serde(default)]
    pub cache_write_tokens: i64,
    /// Of the operations' units besides tokens: documents reranked, characters spoken, images
    /// made, seconds of audio transcribed.
    #[serde(default)]
    pub units: i64,
    /// What `units` counts: the model's kind's unit (`documents`, `seconds`, `characters`,
    /// `images`), or none.
    #[serde(default)]
    pub unit: Option<String>,
    /// Calls whose upstream reported no usage: their tokens are not in the sums.
    pub requests_usage_unknown: i64,
    /// What these calls cost in the platform currency, an exact decimal (each call rounded
    /// half to even to 10⁻⁹ once; the lines add up to any total exactly).
    #[serde(default)]
    pub cost: String,
    /// Calls answered whose cost is unknown (no price in force, or no usage reported).
    #[serde(default)]
    pub cost_unknown: i64,
    /// The model these calls asked for, when `model` is a fallback that answered them instead
    /// (the model asked for could not); absent otherwise.
    #[serde(default)]
    pub asked_model_id: Option<i64>,
    #[serde(default)]
    pub asked_model: String,
}

/// A short-lived key the console's playground calls the gateway with (see
/// `ssr::services::playground`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaygroundKey {
    pub key_id: i64,
    pub secret: String,
    /// Unix second it stops working.
    pub expires_at: i64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_and_latencies_read_as_people_write_them() {
        use super::{compact_count, latency_label};
        let counts = [(950, "950"), (9_999, "9999"), (12_345, "12.3k"), (-12_345, "-12.3k"), (99_960, "100.0k"), (123_456, "123k")];
        for (n, want) in counts {
            assert_eq!(compact_count(n), want);
        }
        assert_eq!(compact_count(4_500_000), "4.5M");
        assert_eq!(compact_count(2_049_999_999), "2.0G");
        assert_eq!(compact_count(i64::MIN), "-9223372037G");
        assert_eq!(latency_label(None), "–");
        assert_eq!(latency_label(Some(839.6)), "840 ms");
        assert_eq!(latency_label(Some(1_049.0)), "1.0 s");
        assert_eq!(latency_label(Some(2_440.0)), "2.4 s");
    }
}
