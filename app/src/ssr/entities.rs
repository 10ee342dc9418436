//! SeaORM entities, one module per table. The schema itself is owned by `migrations/`.
#![allow(clippy::upper_case_acronyms)]

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod user {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub username: String,
        pub password_hash: String,
        pub role: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod session {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: i64,
        pub expires_at: i64,
        /// Unix seconds of the last request seen on the session (at most a minute stale).
        pub last_seen_at: i64,
    }
    no_relations!();
}

pub mod workspace {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspaces")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod workspace_member {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspace_members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
    }
    no_relations!();
}

pub mod api_key {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub workspace_id: i64,
        pub public_id: String,
        pub name: String,
        pub secret_hash: String,
        pub created_by: Option<i64>,
        pub created_at: i64,
        pub revoked_at: Option<i64>,
        /// The holder's own expiry and model list (JSON ids); `limit_*`: the operator's. The
        /// gateway applies both (migration `m20261202_000003_key_scope`).
        pub expires_at: Option<i64>,
        pub models: Option<String>,
        pub limit_expires_at: Option<i64>,
        pub limit_models: Option<String>,
    }
    no_relations!();
}

pub mod marketplace_model {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "marketplace_models")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub provider: String,
        pub description: String,
        pub tags: String,
        pub published: bool,
        pub created_at: i64,
        /// A `ModelKind` (`chat`, `embedding`, …): the operations the gateway serves it.
        pub kind: String,
    }
    no_relations!();
}

pub mod cluster {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "clusters")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub entry_address: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod maas_model {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "maas_models")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub marketplace_model_id: i64,
        pub cluster_id: i64,
        pub policy: String,
        pub enabled: bool,
        pub revision: i64,
        /// Output tokens reserved by a call that gives no `max_tokens` (NULL: the gateway's default).
        pub reserve_output_tokens: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
        /// What the cache-affinity policy keeps a conversation by (`types::AffinityKey`).
        pub affinity_key: String,
        /// A load-aware policy (`least_busy`, `fastest`, `affinity`), which `policy`'s check
        /// (the seed's three) cannot hold: `policy` is then `round_robin` (see [`Model::policy`]).
        pub routing_policy: Option<String>,
        /// Fallback models' ids in order, comma-separated.
        pub fallbacks: String,
        /// `types::RetryPolicy` as JSON (NULL: the default).
        pub retry_policy: Option<String>,
        /// `types::HealthCheck` as JSON (NULL: no active checks).
        pub health_check: Option<String>,
    }

    impl Model {
        /// The model's policy, wherever it is stored.
        pub fn policy(&self) -> crate::types::Policy {
            policy_of(&self.policy, self.routing_policy.as_deref())
        }
        pub fn fallbacks(&self) -> Vec<i64> {
            split_ids(&self.fallbacks)
        }
        /// Unreadable JSON (a hand-edited row) reads as the default, as a missing one does.
        pub fn retry(&self) -> crate::types::RetryPolicy {
            self.retry_policy.as_deref().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default()
        }
        pub fn health_check(&self) -> Option<crate::types::HealthCheck> {
            self.health_check.as_deref().and_then(|j| serde_json::from_str(j).ok())
        }
    }

    /// Ids as the `fallbacks` column stores them.
    pub fn split_ids(s: &str) -> Vec<i64> {
        s.split(',').filter_map(|id| id.trim().parse().ok()).collect()
    }

    pub fn join_ids(ids: &[i64]) -> String {
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    }

    /// The policy the two columns store (see [`policy_columns`]).
    pub fn policy_of(policy: &str, routing_policy: Option<&str>) -> crate::types::Policy {
        use crate::types::Policy;
        routing_policy.and_then(Policy::parse).or_else(|| Policy::parse(policy)).unwrap_or_default()
    }

    /// The columns that store `p`: (`policy`, `routing_policy`).
    pub fn policy_columns(p: crate::types::Policy) -> (String, Option<String>) {
        use crate::types::Policy;
        match p {
            Policy::RoundRobin | Policy::Random | Policy::Weighted => (p.as_str().to_owned(), None),
            Policy::LeastBusy | Policy::Fastest | Policy::Affinity => ("round_robin".to_owned(), Some(p.as_str().to_owned())),
        }
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::marketplace_model::Entity",
            from = "Column::MarketplaceModelId",
            to = "super::marketplace_model::Column::Id"
        )]
        Marketplace,
        #[sea_orm(belongs_to = "super::cluster::Entity", from = "Column::ClusterId", to = "super::cluster::Column::Id")]
        Cluster,
    }
    impl Related<super::marketplace_model::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Marketplace.def()
        }
    }
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod endpoint {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "endpoints")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub maas_model_id: i64,
        pub position: i32,
        pub model_id: String,
        pub url: String,
        pub api_key_enc: Option<String>,
        pub weight: i32,
        /// Do not add `stream_options.include_usage` to this upstream's streams.
        pub skip_stream_usage: bool,
        /// The most calls in flight to this upstream at once; `None`: no cap.
        pub max_concurrent: Option<i64>,
        /// The APIs it speaks natively, comma-separated (`chat,messages`; see `types::Api`).
        pub native_apis: String,
        /// Drained by hand: no new calls (calls under way finish).
        pub draining: bool,
    }
    no_relations!();
}

/// An endpoint's health as its cluster's prober judged it (see the `fleet` migration).
pub mod endpoint_health {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "endpoint_health")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub endpoint_id: i64,
        pub healthy: bool,
        /// Like results in a row: passed probes while healthy, failed ones while not.
        pub streak: i32,
        /// Unix seconds of the last transition (or of the first probe).
        pub since: i64,
        /// Why the last probe failed ("" after a pass).
        pub reason: String,
        /// Unix ms of the last probe.
        pub checked_at: i64,
        /// The gateway probing it until `lease_until` (unix ms).
        pub prober: Option<String>,
        pub lease_until: i64,
    }
    no_relations!();

    /// The rows of `endpoints` that exist, by endpoint id.
    pub async fn of(db: &impl ConnectionTrait, endpoints: Vec<i64>) -> Result<std::collections::HashMap<i64, Model>, DbErr> {
        Ok(Entity::find().filter(Column::EndpointId.is_in(endpoints)).all(db).await?.into_iter().map(|r| (r.endpoint_id, r)).collect())
    }
}

/// An endpoint's health transitions.
pub mod endpoint_health_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "endpoint_health_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub endpoint_id: i64,
        /// Unix seconds.
        pub at: i64,
        pub healthy: bool,
        pub reason: String,
    }
    no_relations!();
}

pub mod rule {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "rate_limit_rules")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub maas_model_id: i64,
        pub position: i32,
        pub target: String,
        pub workspace_id: i64,
        pub api_key_id: Option<i64>,
        /// `requests`, `tokens` or `concurrent` ([`crate::types::RuleKind`]).
        pub kind: String,
        /// In the kind's unit: requests or tokens per window, or calls at once.
        pub limit_value: i64,
        /// The window; 0 for a concurrency rule.
        pub duration_secs: i64,
    }
    no_relations!();
}

pub mod quota {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "quotas")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub target: String,
        pub workspace_id: i64,
        pub api_key_id: Option<i64>,
        /// `day` or `month` ([`crate::days::Period`]).
        pub period: String,
        pub tokens: Option<i64>,
        pub requests: Option<i64>,
        /// The budget in money, nano-units of the currency.
        pub spend_nanos: Option<i64>,
        /// `refuse` or `pass`: what the money budget does with calls to an unpriced model.
        pub unpriced: String,
        /// Alert thresholds of the money budget, percent, comma-separated (`""`: none).
        pub alert_percents: String,
    }
    no_relations!();

    impl Model {
        /// Whose quota this is: the key's or the workspace's (`None` for a row the CHECKs
        /// would not let in: an unknown target, a key quota without its key).
        pub fn subject(&self) -> Option<(crate::types::RuleTarget, i64)> {
            use crate::types::RuleTarget;
            match RuleTarget::parse(&self.target)? {
                RuleTarget::ApiKey => Some((RuleTarget::ApiKey, self.api_key_id?)),
                RuleTarget::Workspace => Some((RuleTarget::Workspace, self.workspace_id)),
            }
        }
    }
}

pub mod quota_spent {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "quota_spent")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub target: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub period_start: i64,
        pub tokens: i64,
        pub requests: i64,
        pub cost_nanos: i64,
    }
    no_relations!();
}

pub mod quota_alert {
    use sea_orm::entity::prelude::*;
    /// A money budget's threshold crossed in one period: at most one row per subject, period
    /// and threshold (a unique index), so the alert fires once whichever gateway sees it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "quota_alerts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub target: String,
        pub subject_id: i64,
        pub period_start: i64,
        pub percent: i32,
        pub spent_nanos: i64,
        pub budget_nanos: i64,
        pub created_at: i64,
        /// The webhook took it (or none is set).
        pub delivered: bool,
        /// Deliveries tried, and when the next may be (Unix second).
        pub attempts: i32,
        pub next_attempt_at: i64,
    }
    no_relations!();
}

pub mod gateway_status {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gateway_status")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub gateway_id: String,
        pub cluster: Option<String>,
        pub applied_revision: i64,
        pub error: Option<String>,
        pub detail: Option<String>,
        pub heartbeat_at: i64,
        /// JSON list of the cluster names this gateway serves.
        pub serves: Option<String>,
    }
    no_relations!();
}

/// Usage rollups written by the gateway's meter (server/src/gateway/meter.rs); the tables'
/// full shape, histograms included, is `ssr::usage_rollups`'s.
pub mod usage_minute {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_minutes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub minute: i64,
        pub gateway_id: String,
        pub maas_model_id: Option<i64>,
        pub model: String,
        pub endpoint_id: Option<i64>,
        pub workspace_id: Option<i64>,
        pub api_key_id: Option<i64>,
        pub operation: String,
        pub outcome: String,
        pub status: i32,
        /// The model asked for, when a fallback model (`maas_model_id`) answered instead.
        pub asked_model_id: Option<i64>,
        pub requests: i64,
        pub failovers: i64,
        pub usage_known: i64,
        pub input_tokens: i64,
        pub output_tokens: i64,
        pub total_tokens: i64,
        pub cached_tokens: i64,
        pub units: i64,
        pub cost_nanos: i64,
        pub cost_unknown: i64,
        pub cache_write_tokens: i64,
        pub latency_ms_sum: i64,
        pub ttfb_ms_sum: i64,
        /// Folded into `usage_hours` (see `ssr::usage_rollups`); the histogram bucket columns
        /// are read through that module only.
        pub compacted: bool,
    }
    no_relations!();
}

/// One version of a MaaS model's prices (pico-units of the platform currency; see
/// `ssr::pricing`), in force from `effective_from` (Unix second) until the next version.
pub mod model_price {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "model_prices")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub maas_model_id: i64,
        pub effective_from: i64,
        pub input_pico: i64,
        pub cached_input_pico: i64,
        pub cache_write_pico: Option<i64>,
        pub output_pico: i64,
        pub unit_pico: i64,
        pub call_pico: i64,
        pub created_at: i64,
    }
    no_relations!();

    impl Model {
        pub fn rates(&self) -> crate::ssr::pricing::Rates {
            crate::ssr::pricing::Rates {
                input: self.input_pico,
                cached_input: self.cached_input_pico,
                cache_write: self.cache_write_pico,
                output: self.output_pico,
                unit: self.unit_pico,
                call: self.call_pico,
            }
        }
    }
}

/// Installation-wide settings set once (`currency`).
pub mod platform_setting {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "platform_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub value: String,
    }
    no_relations!();
}

/// Bearer credentials of the admin API (`/api/v1`); the secret itself is never stored.
pub mod admin_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "admin_tokens")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub public_id: String,
        pub secret_hash: String,
        /// "read" or "write".
        pub access: String,
        pub created_by: i64,
        pub created_at: i64,
        pub expires_at: Option<i64>,
        pub revoked_at: Option<i64>,
        pub last_used_at: Option<i64>,
    }
    no_relations!();
}

pub mod audit_entry {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub at: i64,
        pub actor_kind: String,
        pub actor_id: Option<i64>,
        pub actor_name: String,
        pub via: String,
        pub entity: String,
        pub entity_id: i64,
        pub action: String,
        /// JSON object: field → {"old": …, "new": …}; secrets only as "set" / "cleared".
        pub diff: String,
    }
    no_relations!();
}

pub mod api_access {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_access_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub at: i64,
        pub actor_kind: String,
        pub actor_id: Option<i64>,
        pub actor_name: String,
        pub method: String,
        pub path: String,
        pub status: i32,
    }
    no_relations!();
}

pub mod idempotency_key {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub actor_key: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub fingerprint: String,
        pub status: Option<i32>,
        pub body: Option<String>,
        pub created_at: i64,
    }
    no_relations!();
}
