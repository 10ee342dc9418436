//! Platform API keys. The secret exists in clear only in the answer to `create`; the database
//! keeps its SHA-256, which is what the gateway looks up.
use super::visibility;
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::crypto::{random_hex, sha256_hex};
use crate::ssr::entities::{api_key, workspace};
use crate::ssr::{bump_revision, now, SResult};
use crate::types::*;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionSession, TransactionTrait,
};

/// Prefix that makes a leaked key recognisable to secret scanners.
pub const SECRET_PREFIX: &str = "sk-maas-";

fn view(k: api_key::Model) -> ApiKeyInfo {
    let (expires, _) = KeyScope::effective_stored(k.expires_at, k.limit_expires_at, None, None);
    ApiKeyInfo {
        id: k.id,
        workspace_id: k.workspace_id,
        public_id: k.public_id,
        name: k.name,
        created_at: k.created_at,
        revoked: k.revoked_at.is_some(),
        own: KeyScope::from_stored(k.expires_at, k.models.as_deref()),
        limit: KeyScope::from_stored(k.limit_expires_at, k.limit_models.as_deref()),
        expired: expires.is_some_and(|t| now() >= t),
        quota: None,
    }
}

pub async fn list(db: &impl ConnectionTrait, who: &CurrentUser) -> SResult<Vec<ApiKeyInfo>> {
    let mut q = api_key::Entity::find().order_by_asc(api_key::Column::Id);
    if let Some(ids) = visibility::visible_ids(db, who).await? {
        q = q.filter(api_key::Column::WorkspaceId.is_in(ids));
    }
    let keys = q.all(db).await?;
    let ids: Vec<i64> = keys.iter().map(|k| k.id).collect();
    let mut quotas = super::quotas::views(db, RuleTarget::ApiKey, Some(&ids)).await?;
    Ok(keys.into_iter().map(|k| ApiKeyInfo { quota: quotas.remove(&k.id), ..view(k) }).collect())
}

/// One key as [`list`] shows it, if the caller may see it: read alone, not found in a list of
/// every key (a workspace may hold a million).
pub async fn get(db: &impl ConnectionTrait, who: &CurrentUser, id: i64) -> SResult<ApiKeyInfo> {
    let Some(k) = api_key::Entity::find_by_id(id).one(db).await? else {
        return Err(AppError::NotFound("API key".into()).into());
    };
    if !visibility::can_see(db, who, k.workspace_id).await? {
        return Err(AppError::NotFound("API key".into()).into());
    }
    let mut quotas = super::quotas::views(db, RuleTarget::ApiKey, Some(&[id])).await?;
    Ok(ApiKeyInfo { quota: quotas.remove(&id), ..view(k) })
}

pub async fn create<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    workspace_id: i64,
    name: &str,
) -> SResult<(CreatedApiKey, i64)> {
    let mut e = FieldErrors::default();
    crate::validate::name_like(&mut e, "name", name, 64);
    e.into_result()?;
    let ws = own_workspace(db, who, workspace_id).await?;
    let (k, secret, rev) = insert(db, actor, who, ws, name.trim(), None, None, &[]).await?;
    Ok((CreatedApiKey { info: view(k), secret }, rev))
}

/// A workspace the caller may make keys in (checked by [`own_workspace`]).
#[derive(Clone, Copy)]
pub struct OwnWorkspace(i64);

/// `workspace_id`, if it exists and the caller sees it; the same answer for "no such workspace"
/// and "not yours": ids are not an oracle.
pub async fn own_workspace(db: &impl ConnectionTrait, who: &CurrentUser, workspace_id: i64) -> SResult<OwnWorkspace> {
    if workspace::Entity::find_by_id(workspace_id).one(db).await?.is_none() || !visibility::can_see(db, who, workspace_id).await? {
        return Err(AppError::field("workspace", "choose one of your workspaces").into());
    }
    Ok(OwnWorkspace(workspace_id))
}

/// A new key in `ws` with the holder's own layer (`expires_at`, `models`), its audit row (name,
/// workspace and public id, plus `audit_extra`), in one transaction. Returns the row, the secret
/// (the only time it exists in clear) and the revision that carries the key.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    ws: OwnWorkspace,
    name: &str,
    expires_at: Option<i64>,
    models: Option<&[i64]>,
    audit_extra: &[(&str, serde_json::Value)],
) -> SResult<(api_key::Model, String, i64)> {
    let secret = format!("{SECRET_PREFIX}{}", random_hex(24));
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let k = api_key::ActiveModel {
        workspace_id: Set(ws.0),
        public_id: Set(format!("key_{}", random_hex(6))),
        name: Set(name.to_owned()),
        secret_hash: Set(sha256_hex(&secret)),
        created_by: Set(Some(who.id)),
        created_at: Set(now()),
        revoked_at: Set(None),
        expires_at: Set(expires_at),
        models: Set(models.map(|ids| serde_json::to_string(ids).expect("ids serialize"))),
        limit_expires_at: Set(None),
        limit_models: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut after = serde_json::json!({"name": k.name, "workspace_id": k.workspace_id, "public_id": k.public_id});
    for (field, value) in audit_extra {
        after[*field] = value.clone();
    }
    audit::record(&txn, actor, Entity::ApiKey, k.id, Action::Create, None, Some(&after)).await?;
    txn.commit().await?;
    Ok((k, secret, rev))
}

pub async fn revoke<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, who: &CurrentUser, key_id: i64) -> SResult<i64> {
    let Some(k) = api_key::Entity::find_by_id(key_id).one(db).await? else {
        return Err(AppError::NotFound("API key".into()).into());
    };
    if !visibility::can_see(db, who, k.workspace_id).await? {
        return Err(AppError::NotFound("API key".into()).into());
    }
    if k.revoked_at.is_some() {
        return crate::ssr::current_revision(db).await;
    }
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let mut am: api_key::ActiveModel = k.into();
    am.revoked_at = Set(Some(now()));
    am.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        Entity::ApiKey,
        key_id,
        Action::Revoke,
        Some(&serde_json::json!({"revoked": false})),
        Some(&serde_json::json!({"revoked": true})),
    )
    .await?;
    txn.commit().await?;
    Ok(rev)
}

/// A credential's last day as typed (`YYYY-MM-DD`, UTC, inclusive; empty for no end), as the
/// Unix second it stops working: the next midnight. A past day or a malformed one is an error
/// on `field`. Keys and admin tokens share it.
pub fn last_day_end(e: &mut FieldErrors, field: &str, day: &str) -> Option<i64> {
    match day.trim() {
        "" => None,
        day => match crate::days::parse_day(day) {
            None => {
                e.add(field, "a day as YYYY-MM-DD");
                None
            }
            Some(d) if (d + 1) * 86_400 <= now() => {
                e.add(field, "choose today or a later day");
                None
            }
            Some(d) => Some((d + 1) * 86_400),
        },
    }
}

/// Renames a key (its holders or an operator); the secret and the gateway's view are unchanged.
pub async fn rename<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    key_id: i64,
    name: &str,
) -> SResult<()> {
    let mut e = FieldErrors::default();
    crate::validate::name_like(&mut e, "name", name, 64);
    e.into_result()?;
    let txn = db.begin().await?;
    let Some(k) = api_key::Entity::find_by_id(key_id).one(&txn).await? else {
        return Err(AppError::NotFound("API key".into()).into());
    };
    if !visibility::can_see(&txn, who, k.workspace_id).await? {
        return Err(AppError::NotFound("API key".into()).into());
    }
    let before = serde_json::json!({"name": k.name});
    let mut am: api_key::ActiveModel = k.into();
    am.name = Set(name.trim().to_owned());
    am.update(&txn).await?;
    audit::record(&txn, actor, Entity::ApiKey, key_id, Action::Update, Some(&before), Some(&serde_json::json!({"name": name.trim()})))
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The models a key can be scoped to: every MaaS model, by its marketplace name.
pub async fn scope_choices(db: &impl ConnectionTrait) -> SResult<Vec<Choice>> {
    let mut out: Vec<Choice> = super::model_names::names(db).await?.into_iter().map(|(id, label)| Choice { id, label }).collect();
    out.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(out)
}

/// Sets a key's expiry and models: an operator sets the operator's limit, a member of the
/// key's workspace the holder's own layer, which can only narrow the limit (the gateway
/// applies both; what would widen it is refused here with the reason, next to the field).
pub async fn set_scope<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    key_id: i64,
    scope: &KeyScope,
) -> SResult<i64> {
    let Some(k) = api_key::Entity::find_by_id(key_id).one(db).await? else {
        return Err(AppError::NotFound("API key".into()).into());
    };
    if !visibility::can_see(db, who, k.workspace_id).await? {
        return Err(AppError::NotFound("API key".into()).into());
    }
    if k.revoked_at.is_some() {
        return Err(AppError::field("key", "this key is revoked: create a new one").into());
    }
    let as_limit = who.role == Role::Operator;
    let limit = KeyScope::from_stored(k.limit_expires_at, k.limit_models.as_deref());
    let mut e = FieldErrors::default();
    let expires_at = last_day_end(&mut e, "last_day", scope.last_day.as_deref().unwrap_or_default());
    if !as_limit {
        if let (Some(cap), want) = (k.limit_expires_at, expires_at) {
            if want.is_none_or(|t| t > cap) {
                e.add(
                    "last_day",
                    format!("the operator's limit ends on {}: choose that day or earlier", limit.last_day.clone().unwrap_or_default()),
                );
            }
        }
    }
    let models = match &scope.models {
        None => None,
        Some(ids) if ids.is_empty() => {
            e.add("models", "choose at least one model, or all models");
            None
        }
        Some(ids) => {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            let known = scope_choices(db).await?;
            let name = |id: i64| known.iter().find(|c| c.id == id).map(|c| c.label.clone());
            if let Some(bad) = ids.iter().find(|id| name(**id).is_none()) {
                e.add("models", format!("no MaaS model #{bad}"));
            } else if let (false, Some(allowed)) = (as_limit, &limit.models) {
                let outside: Vec<String> = ids.iter().filter(|id| !allowed.contains(id)).filter_map(|id| name(*id)).collect();
                if !outside.is_empty() {
                    e.add("models", format!("outside what the operator allowed: {}", outside.join(", ")));
                }
            }
            Some(ids)
        }
    };
    e.into_result()?;
    let models = models.map(|m| serde_json::to_string(&m).unwrap_or_else(|_| "[]".into()));
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    // The layer this caller sets, before and after, as the console shows it.
    let layer = |e: Option<i64>, m: Option<&str>| {
        let s = KeyScope::from_stored(e, m);
        let prefix = if as_limit { "limit_" } else { "" };
        serde_json::json!({format!("{prefix}last_day"): s.last_day, format!("{prefix}models"): s.models})
    };
    let before = if as_limit { layer(k.limit_expires_at, k.limit_models.as_deref()) } else { layer(k.expires_at, k.models.as_deref()) };
    let after = layer(expires_at, models.as_deref());
    let mut am: api_key::ActiveModel = k.into();
    if as_limit {
        am.limit_expires_at = Set(expires_at);
        am.limit_models = Set(models);
    } else {
        am.expires_at = Set(expires_at);
        am.models = Set(models);
    }
    am.update(&txn).await?;
    audit::record(&txn, actor, Entity::ApiKey, key_id, Action::Update, Some(&before), Some(&after)).await?;
    txn.commit().await?;
    Ok(rev)
}
