//! Budget alerts: when what a workspace or a key spent in a period crosses one of its money
//! budget's thresholds (50 %, 80 %, 100 %…), an alert is recorded once per threshold and period
//! (a unique index decides which gateway records it), written to the audit log, shown on the
//! console, and sent to the operator's webhook, signed, and retried until it is taken. The
//! gateways find crossings when they flush usage, never on a call's path.
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::crypto::SecretBox;
use crate::ssr::entities::{platform_setting, quota_alert};
use crate::ssr::pricing::format_nanos;
use crate::ssr::{bump_revision, now, SResult};
use crate::types::{CurrentUser, FieldErrors, Period, Role, RuleTarget};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionSession, TransactionTrait,
};

/// `platform_settings` names of the webhook's URL and its signing secret (encrypted).
const WEBHOOK_URL: &str = "alert_webhook_url";
const WEBHOOK_SECRET: &str = "alert_webhook_secret";

/// Deliveries tried per alert before it is left undelivered (about an hour of backoff).
pub const MAX_ATTEMPTS: i32 = 12;
/// An alert older than this is no longer sent.
const DELIVER_WITHIN_SECS: i64 = 86_400;

/// A threshold crossed: what an alert records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossing {
    pub target: RuleTarget,
    pub subject_id: i64,
    pub period: Period,
    pub period_start: i64,
    pub percent: u16,
    pub spent_nanos: i64,
    pub budget_nanos: i64,
}

/// Records `c` unless it was already (by this gateway or another): true when this call
/// recorded it, with its audit entry, in one transaction.
pub async fn record<C: ConnectionTrait + TransactionTrait>(db: &C, c: &Crossing) -> SResult<bool> {
    let txn = db.begin().await?;
    let row = quota_alert::ActiveModel {
        target: Set(c.target.as_str().to_owned()),
        subject_id: Set(c.subject_id),
        period_start: Set(c.period_start),
        percent: Set(i32::from(c.percent)),
        spent_nanos: Set(c.spent_nanos),
        budget_nanos: Set(c.budget_nanos),
        created_at: Set(now()),
        delivered: Set(false),
        attempts: Set(0),
        next_attempt_at: Set(0),
        ..Default::default()
    };
    let on_conflict = OnConflict::columns([
        quota_alert::Column::Target,
        quota_alert::Column::SubjectId,
        quota_alert::Column::PeriodStart,
        quota_alert::Column::Percent,
    ])
    .do_nothing()
    .to_owned();
    let inserted = quota_alert::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(&txn).await?;
    if inserted == 0 {
        return Ok(false);
    }
    let entity = match c.target {
        RuleTarget::Workspace => Entity::Workspace,
        RuleTarget::ApiKey => Entity::ApiKey,
    };
    let what = serde_json::json!({
        "budget_alert": format!("{} % of the {} budget in money", c.percent, c.period.as_str()),
        "spent": format_nanos(c.spent_nanos),
        "budget": format_nanos(c.budget_nanos),
    });
    audit::record(&txn, &Actor::system(), entity, c.subject_id, Action::Alert, None, Some(&what)).await?;
    txn.commit().await?;
    Ok(true)
}

/// The highest threshold crossed in the period starting at `period_start`, per subject of
/// `target` (what the console shows beside a quota).
pub async fn crossed(db: &impl ConnectionTrait, target: RuleTarget, period_starts: [i64; 2]) -> SResult<Vec<(i64, i64, u16)>> {
    let rows = quota_alert::Entity::find()
        .filter(quota_alert::Column::Target.eq(target.as_str()))
        .filter(quota_alert::Column::PeriodStart.is_in(period_starts))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.subject_id, r.period_start, r.percent.clamp(0, i32::from(u16::MAX)) as u16)).collect())
}

/// Where alerts go: the URL and the secret their signature is made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

/// The webhook, if the operator set one.
pub async fn webhook(db: &impl ConnectionTrait, secrets: &SecretBox) -> SResult<Option<Webhook>> {
    let rows = platform_setting::Entity::find().filter(platform_setting::Column::Name.is_in([WEBHOOK_URL, WEBHOOK_SECRET])).all(db).await?;
    let get = |n: &str| rows.iter().find(|r| r.name == n).map(|r| r.value.clone());
    Ok(match (get(WEBHOOK_URL), get(WEBHOOK_SECRET).and_then(|s| secrets.decrypt(&s))) {
        (Some(url), Some(secret)) => Some(Webhook { url, secret }),
        _ => None,
    })
}

/// The webhook's URL, if set (the secret is never shown again).
pub async fn webhook_url(db: &impl ConnectionTrait) -> SResult<Option<String>> {
    Ok(platform_setting::Entity::find_by_id(WEBHOOK_URL.to_owned()).one(db).await?.map(|r| r.value))
}

/// Sets the webhook (`url` empty: removes it). The secret signs every delivery (HMAC-SHA256);
/// at least 16 characters; it may be left empty to keep the one stored. Operators only. Returns
/// the configuration revision the gateways apply it at.
pub async fn set_webhook<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    secrets: &SecretBox,
    url: &str,
    secret: &str,
) -> SResult<i64> {
    if who.role != Role::Operator {
        return Err(AppError::Forbidden.into());
    }
    let (url, secret) = (url.trim(), secret.trim());
    let before = webhook_url(db).await?;
    let mut e = FieldErrors::default();
    if !url.is_empty() {
        if let Err(m) = crate::validate::http_url(url) {
            e.add("url", m);
        } else if url.len() > 1000 {
            e.add("url", "at most 1000 characters");
        }
        match secret.chars().count() {
            0 if before.is_some() => {}
            0 => e.add("secret", "required: the secret deliveries are signed with (at least 16 characters)"),
            1..16 => e.add("secret", "at least 16 characters"),
            257.. => e.add("secret", "at most 256 characters"),
            _ => {}
        }
    }
    e.into_result()?;
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    platform_setting::Entity::delete_many()
        .filter(platform_setting::Column::Name.is_in(if url.is_empty() || !secret.is_empty() {
            vec![WEBHOOK_URL, WEBHOOK_SECRET]
        } else {
            vec![WEBHOOK_URL]
        }))
        .exec(&txn)
        .await?;
    if !url.is_empty() {
        let mut rows = vec![platform_setting::ActiveModel { name: Set(WEBHOOK_URL.into()), value: Set(url.into()) }];
        if !secret.is_empty() {
            rows.push(platform_setting::ActiveModel { name: Set(WEBHOOK_SECRET.into()), value: Set(secrets.encrypt(secret)) });
        }
        platform_setting::Entity::insert_many(rows).exec(&txn).await?;
    }
    let snap = |u: Option<&str>, secret_changed: bool| serde_json::json!({"alert_webhook_url": u, "alert_webhook_secret": audit::secret_marker(u.is_some()), "secret_changed": secret_changed});
    let after = (!url.is_empty()).then_some(url);
    if before.as_deref() != after || !secret.is_empty() {
        let (b, a) = (snap(before.as_deref(), false), snap(after, !secret.is_empty()));
        audit::record(&txn, actor, Entity::Setting, 0, Action::Update, Some(&b), Some(&a)).await?;
    }
    txn.commit().await?;
    Ok(rev)
}

/// Alerts whose delivery is due at `now`: not delivered, recent, attempts left.
pub async fn due(db: &impl ConnectionTrait, now: i64) -> SResult<Vec<quota_alert::Model>> {
    Ok(quota_alert::Entity::find()
        .filter(quota_alert::Column::Delivered.eq(false))
        .filter(quota_alert::Column::Attempts.lt(MAX_ATTEMPTS))
        .filter(quota_alert::Column::NextAttemptAt.lte(now))
        .filter(quota_alert::Column::CreatedAt.gte(now - DELIVER_WITHIN_SECS))
        .order_by_asc(quota_alert::Column::Id)
        .limit(100)
        .all(db)
        .await?)
}

/// Claims the next delivery of `alert` for this gateway: true when no other took it since it
/// was read (a conditional update), with the attempt after it scheduled (2, 4, 8… seconds, at
/// most 10 minutes, after `now`).
pub async fn claim(db: &impl ConnectionTrait, alert: &quota_alert::Model, now: i64) -> SResult<bool> {
    let backoff = 2i64.pow(alert.attempts.clamp(0, 9) as u32 + 1).min(600);
    let r = quota_alert::Entity::update_many()
        .col_expr(quota_alert::Column::Attempts, sea_orm::sea_query::Expr::value(alert.attempts + 1))
        .col_expr(quota_alert::Column::NextAttemptAt, sea_orm::sea_query::Expr::value(now + backoff))
        .filter(quota_alert::Column::Id.eq(alert.id))
        .filter(quota_alert::Column::Attempts.eq(alert.attempts))
        .filter(quota_alert::Column::Delivered.eq(false))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// The webhook took `alert_id`.
pub async fn delivered(db: &impl ConnectionTrait, alert_id: i64) -> SResult<()> {
    quota_alert::Entity::update_many()
        .col_expr(quota_alert::Column::Delivered, sea_orm::sea_query::Expr::value(true))
        .filter(quota_alert::Column::Id.eq(alert_id))
        .exec(db)
        .await?;
    Ok(())
}

/// What the webhook is sent for `alert`: JSON, its money as exact decimals.
pub fn payload(alert: &quota_alert::Model, currency: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "budget.alert",
        "id": alert.id,
        "target": alert.target,
        "subject_id": alert.subject_id,
        "period_start": alert.period_start,
        "percent": alert.percent,
        "spent": format_nanos(alert.spent_nanos),
        "budget": format_nanos(alert.budget_nanos),
        "currency": currency,
        "created_at": alert.created_at,
    })
}
