//! Quotas of workspaces and API keys: an operator sets or removes them; everyone who sees the
//! subject sees what is spent of it this period (from the `quota_spent` ledger the gateways
//! add to; see `server/src/gateway/quota.rs`).
use super::visibility;
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::entities::{api_key, quota, quota_spent, workspace};
use crate::ssr::pricing::{format_nanos, parse_money};
use crate::ssr::{bump_revision, now, SResult};
use crate::types::*;
use crate::validate;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, Statement, TransactionSession, TransactionTrait,
};
use std::collections::HashMap;

/// Ids bound in one query at most (see [`views`]).
const MAX_BOUND_IDS: usize = 1_000;

/// The quotas of `target` subjects among `ids` (all when `None`), with what each spent in its
/// current period.
pub async fn views(db: &impl ConnectionTrait, target: RuleTarget, ids: Option<&[i64]>) -> SResult<HashMap<i64, QuotaView>> {
    let mut q = quota::Entity::find().filter(quota::Column::Target.eq(target.as_str()));
    // A few ids are bound in the query; many (a workspace's million keys) would pass the
    // databases' bound on variables (SQLite 32,766): then the target's quotas, one per subject
    // that has one, are read and kept if among `ids`.
    let wanted: Option<std::collections::HashSet<i64>> = match ids {
        Some(ids) if ids.len() <= MAX_BOUND_IDS => {
            let col = match target {
                RuleTarget::ApiKey => quota::Column::ApiKeyId,
                RuleTarget::Workspace => quota::Column::WorkspaceId,
            };
            q = q.filter(col.is_in(ids.iter().copied()));
            None
        }
        Some(ids) => Some(ids.iter().copied().collect()),
        None => None,
    };
    let mut quotas = q.all(db).await?;
    if let Some(wanted) = wanted {
        quotas.retain(|q| q.subject().is_some_and(|(_, s)| wanted.contains(&s)));
    }
    if quotas.is_empty() {
        return Ok(HashMap::new());
    }
    let t = now();
    let spent = ledger(db, t, Some(target)).await?;
    let currency = super::currency::currency(db).await?;
    let starts = [Period::Day.start(t), Period::Month.start(t)];
    let mut alerted: HashMap<(i64, i64), u16> = HashMap::new();
    for (subject, start, percent) in super::alerts::crossed(db, target, starts).await? {
        let a = alerted.entry((subject, start)).or_default();
        *a = (*a).max(percent);
    }
    Ok(quotas
        .into_iter()
        .filter_map(|q| {
            let (_, subject) = q.subject()?;
            let period = Period::parse(&q.period)?;
            let s = spent.get(&(target, subject, period.start(t))).copied().unwrap_or_default();
            Some((
                subject,
                QuotaView {
                    period,
                    tokens: q.tokens,
                    requests: q.requests,
                    spent_tokens: s.tokens,
                    spent_requests: s.requests,
                    spend: q.spend_nanos.map(format_nanos),
                    spent_money: format_nanos(s.nanos),
                    spend_reached: q.spend_nanos.is_some_and(|b| s.nanos >= b),
                    unpriced: q.unpriced.clone(),
                    alerts: alert_percents(&q.alert_percents),
                    alerted: alerted.get(&(subject, period.start(t))).copied(),
                    currency: currency.clone(),
                    resets_at: period.end(t),
                },
            ))
        })
        .collect())
}

/// What a subject spent in one period, as the ledger holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    pub tokens: i64,
    pub requests: i64,
    /// Money, nano-units of the currency.
    pub nanos: i64,
}

/// What the ledger holds for the day and the month containing `now_secs` (of `target`'s
/// subjects only, if given): (target, subject, period start) → what was spent. What the
/// console shows and what a gateway starts its quotas from.
pub async fn ledger(
    db: &impl ConnectionTrait,
    now_secs: i64,
    target: Option<RuleTarget>,
) -> Result<HashMap<(RuleTarget, i64, i64), Spent>, sea_orm::DbErr> {
    let mut q = quota_spent::Entity::find()
        .filter(quota_spent::Column::PeriodStart.is_in([Period::Day.start(now_secs), Period::Month.start(now_secs)]));
    if let Some(t) = target {
        q = q.filter(quota_spent::Column::Target.eq(t.as_str()));
    }
    Ok(q.all(db)
        .await?
        .into_iter()
        .filter_map(|r| {
            let spent = Spent { tokens: r.tokens, requests: r.requests, nanos: r.cost_nanos };
            Some(((RuleTarget::parse(&r.target)?, r.subject_id, r.period_start), spent))
        })
        .collect())
}

/// Alert thresholds as stored (`"50,80,100"`), ascending.
pub fn alert_percents(stored: &str) -> Vec<u16> {
    stored.split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

/// Alert thresholds as typed (`"50, 80, 100"`): whole percents in `1..=1000`, at most eight,
/// stored ascending without repeats.
fn parse_alerts(e: &mut FieldErrors, s: &str) -> String {
    let mut out: Vec<u16> = Vec::new();
    for p in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        match p.trim_end_matches('%').parse::<u16>() {
            Ok(v) if (1..=1000).contains(&v) => out.push(v),
            _ => {
                e.add("alerts", format!("{p:?}: percents of the money budget, whole numbers from 1 to 1000, e.g. 50, 80, 100"));
                return String::new();
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.len() > 8 {
        e.add("alerts", "at most 8 thresholds");
    }
    out.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// The budget as typed: empty is none; else a whole number within `1..=max`.
fn budget(e: &mut FieldErrors, field: &str, s: &str, max: i64) -> Option<i64> {
    if s.trim().is_empty() {
        return None;
    }
    validate::parse_int(s, 1, max).map_err(|m| e.add(field, m)).ok()
}

/// A quota's budgets as the audit log records them.
struct Audited<'a> {
    period: &'a str,
    tokens: Option<i64>,
    requests: Option<i64>,
    spend: Option<i64>,
    unpriced: &'a str,
    alerts: &'a str,
}

impl Audited<'_> {
    fn json(q: Option<Audited<'_>>) -> serde_json::Value {
        let q = q.as_ref();
        serde_json::json!({
            "quota_period": q.map(|q| q.period),
            "quota_tokens": q.and_then(|q| q.tokens),
            "quota_requests": q.and_then(|q| q.requests),
            "quota_spend": q.and_then(|q| q.spend).map(format_nanos),
            "quota_unpriced": q.and_then(|q| q.spend.map(|_| q.unpriced)),
            "quota_alerts": q.map(|q| q.alerts).filter(|a| !a.is_empty()),
        })
    }
}

/// Sets (or, with every budget empty, removes) the quota of a workspace or a key. Operators
/// only. A quota set mid-period starts from what the subject's usage rows already hold for the
/// period, so a budget given on the 20th counts the month from the 1st.
pub async fn set<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    target: RuleTarget,
    subject_id: i64,
    input: &QuotaInput,
) -> SResult<i64> {
    if who.role != Role::Operator {
        return Err(AppError::Forbidden.into());
    }
    let workspace_id = match target {
        RuleTarget::Workspace => workspace::Entity::find_by_id(subject_id).one(db).await?.map(|w| w.id),
        RuleTarget::ApiKey => api_key::Entity::find_by_id(subject_id).one(db).await?.map(|k| k.workspace_id),
    };
    let Some(workspace_id) = workspace_id else {
        return Err(AppError::NotFound(if target == RuleTarget::Workspace { "workspace" } else { "API key" }.into()).into());
    };
    let mut e = FieldErrors::default();
    let tokens = budget(&mut e, "tokens", &input.tokens, validate::MAX_TOKEN_LIMIT);
    let requests = budget(&mut e, "requests", &input.requests, validate::MAX_LIMIT);
    let spend = match input.spend.trim() {
        "" => None,
        s => parse_money(s).map_err(|m| e.add("spend", m.0)).ok(),
    };
    let unpriced = match input.unpriced.trim() {
        "" | "refuse" => "refuse",
        "pass" => "pass",
        _ => {
            e.add("unpriced", "choose refuse or pass");
            "refuse"
        }
    };
    let alerts = parse_alerts(&mut e, &input.alerts);
    if !alerts.is_empty() && input.spend.trim().is_empty() {
        e.add("alerts", "alerts watch the money budget: set one");
    }
    e.into_result()?;
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let existing = quota::Entity::find()
        .filter(quota::Column::Target.eq(target.as_str()))
        .filter(match target {
            RuleTarget::ApiKey => quota::Column::ApiKeyId.eq(subject_id),
            RuleTarget::Workspace => quota::Column::WorkspaceId.eq(subject_id),
        })
        .one(&txn)
        .await?;
    // Audited on its subject: the workspace's or the key's quota changed.
    let before = existing.as_ref().map(|q| Audited {
        period: &q.period,
        tokens: q.tokens,
        requests: q.requests,
        spend: q.spend_nanos,
        unpriced: &q.unpriced,
        alerts: &q.alert_percents,
    });
    let wanted = tokens.is_some() || requests.is_some() || spend.is_some();
    let after = wanted.then_some(Audited { period: input.period.as_str(), tokens, requests, spend, unpriced, alerts: &alerts });
    let (before, after) = (Audited::json(before), Audited::json(after));
    let entity = if target == RuleTarget::Workspace { Entity::Workspace } else { Entity::ApiKey };
    if before != after {
        audit::record(&txn, actor, entity, subject_id, Action::Update, Some(&before), Some(&after)).await?;
    }
    match (existing, wanted) {
        (Some(q), false) => {
            quota::Entity::delete_by_id(q.id).exec(&txn).await?;
        }
        (None, false) => {}
        (existing, true) => {
            let mut am: quota::ActiveModel = match existing {
                Some(q) => q.into(),
                None => quota::ActiveModel {
                    target: Set(target.as_str().to_owned()),
                    workspace_id: Set(workspace_id),
                    api_key_id: Set((target == RuleTarget::ApiKey).then_some(subject_id)),
                    ..Default::default()
                },
            };
            am.period = Set(input.period.as_str().to_owned());
            am.tokens = Set(tokens);
            am.requests = Set(requests);
            am.spend_nanos = Set(spend);
            am.unpriced = Set(unpriced.to_owned());
            am.alert_percents = Set(alerts.clone());
            am.save(&txn).await?;
            seed_ledger(&txn, target, subject_id, input.period.start(now())).await?;
        }
    }
    txn.commit().await?;
    Ok(rev)
}

/// The period's ledger row, if it has none yet, from the usage rows: hourly rows for the
/// compacted hours, minute rows for the rest (never both: compaction flags what it folded).
async fn seed_ledger(db: &impl ConnectionTrait, target: RuleTarget, subject_id: i64, period_start: i64) -> SResult<()> {
    let col = match target {
        RuleTarget::ApiKey => "api_key_id",
        RuleTarget::Workspace => "workspace_id",
    };
    let (hour, minute) = (period_start / 3600, period_start / 60);
    let sql = format!(
        "INSERT INTO quota_spent (target, subject_id, period_start, tokens, requests, cost_nanos) \
         SELECT '{t}', {subject_id}, {period_start}, COALESCE(SUM(tokens), 0), COALESCE(SUM(requests), 0), COALESCE(SUM(cost_nanos), 0) FROM ( \
           SELECT total_tokens AS tokens, requests, cost_nanos FROM usage_hours WHERE {col} = {subject_id} AND hour >= {hour} \
           UNION ALL SELECT total_tokens, requests, cost_nanos FROM usage_minutes WHERE {col} = {subject_id} AND compacted = FALSE AND minute >= {minute} \
         ) spent WHERE TRUE ON CONFLICT (target, subject_id, period_start) DO NOTHING",
        t = target.as_str()
    );
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    Ok(())
}

/// Sets a workspace's quota; whoever sees the workspace sees it ([`views`]).
pub async fn set_workspace<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    workspace_id: i64,
    input: &QuotaInput,
) -> SResult<i64> {
    set(db, actor, who, RuleTarget::Workspace, workspace_id, input).await
}

/// Sets a key's quota (operators), after checking the key is visible like every key action.
pub async fn set_key<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    key_id: i64,
    input: &QuotaInput,
) -> SResult<i64> {
    match api_key::Entity::find_by_id(key_id).one(db).await? {
        Some(k) if visibility::can_see(db, who, k.workspace_id).await? => set(db, actor, who, RuleTarget::ApiKey, key_id, input).await,
        _ => Err(AppError::NotFound("API key".into()).into()),
    }
}
