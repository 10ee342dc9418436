//! Platform API keys. The secret exists in clear only in the answer to `create`; the database
//! keeps its SHA-256, which is what the gateway looks up.
use super::workspaces;
use crate::error::AppError;
use crate::ssr::crypto::{random_hex, sha256_hex};
use crate::ssr::entities::{api_key, workspace};
use crate::ssr::{bump_revision, now, SResult};
use crate::types::*;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionSession, TransactionTrait};

/// Prefix that makes a leaked key recognisable to secret scanners.
pub const SECRET_PREFIX: &str = "sk-maas-";

fn view(k: api_key::Model) -> ApiKeyInfo {
    ApiKeyInfo {
        id: k.id,
        workspace_id: k.workspace_id,
        public_id: k.public_id,
        name: k.name,
        created_at: k.created_at,
        revoked: k.revoked_at.is_some(),
    }
}

pub async fn list(db: &impl ConnectionTrait, who: &CurrentUser) -> SResult<Vec<ApiKeyInfo>> {
    let mut q = api_key::Entity::find().order_by_asc(api_key::Column::Id);
    if let Some(ids) = workspaces::visible_ids(db, who).await? {
        q = q.filter(api_key::Column::WorkspaceId.is_in(ids));
    }
    Ok(q.all(db).await?.into_iter().map(view).collect())
}

pub async fn create<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    who: &CurrentUser,
    workspace_id: i64,
    name: &str,
) -> SResult<(CreatedApiKey, i64)> {
    let mut e = FieldErrors::default();
    crate::validate::name_like(&mut e, "name", name, 64);
    e.into_result()?;
    if workspace::Entity::find_by_id(workspace_id).one(db).await?.is_none() || !workspaces::can_see(db, who, workspace_id).await? {
        // The same answer for "no such workspace" and "not yours": ids are not an oracle.
        return Err(AppError::field("workspace", "choose one of your workspaces").into());
    }
    let secret = format!("{SECRET_PREFIX}{}", random_hex(24));
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let k = api_key::ActiveModel {
        workspace_id: Set(workspace_id),
        public_id: Set(format!("key_{}", random_hex(6))),
        name: Set(name.trim().to_owned()),
        secret_hash: Set(sha256_hex(&secret)),
        created_by: Set(Some(who.id)),
        created_at: Set(now()),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok((CreatedApiKey { info: view(k), secret }, rev))
}

pub async fn revoke<C: TransactionTrait + ConnectionTrait>(db: &C, who: &CurrentUser, key_id: i64) -> SResult<i64> {
    let Some(k) = api_key::Entity::find_by_id(key_id).one(db).await? else {
        return Err(AppError::NotFound("API key".into()).into());
    };
    if !workspaces::can_see(db, who, k.workspace_id).await? {
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
    txn.commit().await?;
    Ok(rev)
}
