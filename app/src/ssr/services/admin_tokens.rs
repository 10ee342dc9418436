//! Admin tokens: bearer credentials for the admin API (`/api/v1`), made by operators in the
//! console, read-only or read-write, optionally expiring, revocable. Like API keys, the secret
//! exists in clear only in the answer to [`create`]; the database keeps its SHA-256.
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::crypto::{random_hex, sha256_hex};
use crate::ssr::entities::{admin_token, user};
use crate::ssr::{now, SResult};
use crate::types::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionSession, TransactionTrait,
};
use std::collections::HashMap;

/// Prefix that makes a leaked token recognisable to secret scanners (and tells it from an API
/// key at a glance).
pub const SECRET_PREFIX: &str = "maas-admin-";
/// `last_used_at` is written at most this often per token, not on every call.
const TOUCH_SECS: i64 = 60;

fn view(t: admin_token::Model, names: &HashMap<i64, String>) -> AdminTokenInfo {
    AdminTokenInfo {
        id: t.id,
        name: t.name,
        public_id: t.public_id,
        access: TokenAccess::parse(&t.access).unwrap_or_default(),
        created_by: names.get(&t.created_by).cloned().unwrap_or_default(),
        created_at: t.created_at,
        last_day: t.expires_at.map(crate::days::last_day_of),
        revoked: t.revoked_at.is_some(),
        expired: t.expires_at.is_some_and(|e| now() >= e),
        last_used_at: t.last_used_at,
    }
}

async fn usernames(db: &impl ConnectionTrait) -> SResult<HashMap<i64, String>> {
    Ok(user::Entity::find().all(db).await?.into_iter().map(|u| (u.id, u.username)).collect())
}

pub async fn list(db: &impl ConnectionTrait) -> SResult<Vec<AdminTokenInfo>> {
    let names = usernames(db).await?;
    Ok(admin_token::Entity::find().order_by_desc(admin_token::Column::Id).all(db).await?.into_iter().map(|t| view(t, &names)).collect())
}

/// `last_day`: `YYYY-MM-DD` (UTC, inclusive) or empty for no end.
pub async fn create<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    name: &str,
    access: TokenAccess,
    last_day: &str,
) -> SResult<CreatedAdminToken> {
    let mut e = FieldErrors::default();
    crate::validate::name_like(&mut e, "name", name, 64);
    let expires_at = super::keys::last_day_end(&mut e, "last_day", last_day);
    e.into_result()?;
    let secret = format!("{SECRET_PREFIX}{}", random_hex(24));
    let txn = db.begin().await?;
    let t = admin_token::ActiveModel {
        name: Set(name.trim().to_owned()),
        public_id: Set(format!("adm_{}", random_hex(6))),
        secret_hash: Set(sha256_hex(&secret)),
        access: Set(access.as_str().to_owned()),
        created_by: Set(who.id),
        created_at: Set(now()),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let after = serde_json::json!({"name": t.name, "public_id": t.public_id, "access": t.access, "expires_at": t.expires_at});
    audit::record(&txn, actor, Entity::AdminToken, t.id, Action::Create, None, Some(&after)).await?;
    let names = HashMap::from([(who.id, who.username.clone())]);
    let info = view(t, &names);
    txn.commit().await?;
    Ok(CreatedAdminToken { info, secret })
}

pub async fn revoke<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, id: i64) -> SResult<()> {
    let txn = db.begin().await?;
    let Some(t) = admin_token::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("admin token".into()).into());
    };
    if t.revoked_at.is_some() {
        return Ok(());
    }
    let mut am: admin_token::ActiveModel = t.into();
    am.revoked_at = Set(Some(now()));
    am.update(&txn).await?;
    audit::record(
        &txn,
        actor,
        Entity::AdminToken,
        id,
        Action::Revoke,
        Some(&serde_json::json!({"revoked": false})),
        Some(&serde_json::json!({"revoked": true})),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A token that may be used now: the bearer's identity for the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenCaller {
    pub id: i64,
    pub name: String,
    pub access: TokenAccess,
    /// The operator who made it: the token acts with an operator's rights, on their behalf.
    pub created_by: CurrentUser,
}

/// The token behind `secret`, if it is live (not revoked, not expired, its creator still an
/// operator). Unknown, revoked and expired tokens get the same `None`.
pub async fn authenticate(db: &impl ConnectionTrait, secret: &str) -> SResult<Option<TokenCaller>> {
    if !secret.starts_with(SECRET_PREFIX) {
        return Ok(None);
    }
    let Some(t) = admin_token::Entity::find().filter(admin_token::Column::SecretHash.eq(sha256_hex(secret))).one(db).await? else {
        return Ok(None);
    };
    let now = now();
    if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| now >= e) {
        return Ok(None);
    }
    let Some(u) = user::Entity::find_by_id(t.created_by).one(db).await? else {
        return Ok(None);
    };
    // A token is worth no more than its maker: an operator demoted to user loses their tokens.
    if Role::parse(&u.role) != Some(Role::Operator) {
        return Ok(None);
    }
    if t.last_used_at.is_none_or(|l| now - l >= TOUCH_SECS) {
        admin_token::Entity::update_many()
            .col_expr(admin_token::Column::LastUsedAt, Expr::value(now))
            .filter(admin_token::Column::Id.eq(t.id))
            .exec(db)
            .await?;
    }
    let access = TokenAccess::parse(&t.access).unwrap_or_default();
    Ok(Some(TokenCaller {
        id: t.id,
        name: t.name,
        access,
        created_by: CurrentUser { id: u.id, username: u.username, role: Role::Operator },
    }))
}
