//! The console's playground: a short-lived API key, issued for one model and one of the
//! caller's workspaces, that the browser uses to call the real gateway (`/v1` on the console's
//! own origin). It goes through everything an application's key does (the workspace's rules and
//! quota, the model's balancing); it works for [`TTL_SECS`] at most and is revoked when the
//! playground is done with it. The secret is in the answer only, never logged.
use super::{keys, workspaces};
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::crypto::{random_hex, sha256_hex};
use crate::ssr::entities::{api_key, maas_model, marketplace_model};
use crate::ssr::{bump_revision, now, SResult};
use crate::types::*;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionSession, TransactionTrait};

pub const TTL_SECS: i64 = 15 * 60;
/// What a playground key is called in the keys list (and how its holders tell it apart).
pub const KEY_NAME: &str = "playground";

/// Issues the key; returns it and the configuration revision that carries it.
pub async fn issue<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, who: &CurrentUser, workspace_id: i64, model: &str) -> SResult<(PlaygroundKey, i64)> {
    if !workspaces::can_see(db, who, workspace_id).await? || crate::ssr::entities::workspace::Entity::find_by_id(workspace_id).one(db).await?.is_none() {
        return Err(AppError::field("workspace", "choose one of your workspaces").into());
    }
    // The MaaS models clients reach under this name (enabled, published): the key is scoped to them.
    let ids: Vec<i64> = maas_model::Entity::find()
        .find_also_related(marketplace_model::Entity)
        .filter(maas_model::Column::Enabled.eq(true))
        .filter(marketplace_model::Column::Published.eq(true))
        .filter(marketplace_model::Column::Name.eq(model.trim()))
        .all(db)
        .await?
        .into_iter()
        .map(|(m, _)| m.id)
        .collect();
    if ids.is_empty() {
        return Err(AppError::field("model", "this model is not available").into());
    }
    let secret = format!("{}{}", keys::SECRET_PREFIX, random_hex(24));
    let expires_at = now() + TTL_SECS;
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let k = api_key::ActiveModel {
        workspace_id: Set(workspace_id),
        public_id: Set(format!("key_{}", random_hex(6))),
        name: Set(KEY_NAME.to_owned()),
        secret_hash: Set(sha256_hex(&secret)),
        created_by: Set(Some(who.id)),
        created_at: Set(now()),
        revoked_at: Set(None),
        // The holder's own layer: minutes, and this model only.
        expires_at: Set(Some(expires_at)),
        models: Set(Some(serde_json::to_string(&ids).expect("ids serialize"))),
        limit_expires_at: Set(None),
        limit_models: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let after = serde_json::json!({"name": k.name, "workspace_id": workspace_id, "public_id": k.public_id, "playground_model": model.trim(), "expires_at": expires_at});
    audit::record(&txn, actor, Entity::ApiKey, k.id, Action::Create, None, Some(&after)).await?;
    txn.commit().await?;
    Ok((PlaygroundKey { key_id: k.id, secret, expires_at }, rev))
}
