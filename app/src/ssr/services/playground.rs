//! The console's playground: a short-lived API key, issued for one model and one of the
//! caller's workspaces, that the browser uses to call the real gateway (`/v1` on the console's
//! own origin). It goes through everything an application's key does (the workspace's rules and
//! quota, the model's balancing); it works for [`TTL_SECS`] at most and is revoked when the
//! playground is done with it. The secret is in the answer only, never logged.
use super::keys;
use crate::error::AppError;
use crate::ssr::audit::Actor;
use crate::ssr::entities::{maas_model, marketplace_model};
use crate::ssr::{now, SResult};
use crate::types::*;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};

pub const TTL_SECS: i64 = 15 * 60;
/// What a playground key is called in the keys list (and how its holders tell it apart).
pub const KEY_NAME: &str = "playground";

/// Issues the key; returns it and the configuration revision that carries it.
pub async fn issue<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    who: &CurrentUser,
    workspace_id: i64,
    model: &str,
) -> SResult<(PlaygroundKey, i64)> {
    let ws = keys::own_workspace(db, who, workspace_id).await?;
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
    let expires_at = now() + TTL_SECS;
    // The holder's own layer: minutes, and this model only.
    let extra = [("playground_model", serde_json::json!(model.trim())), ("expires_at", serde_json::json!(expires_at))];
    let (k, secret, rev) = keys::insert(db, actor, who, ws, KEY_NAME, Some(expires_at), Some(&ids), &extra).await?;
    Ok((PlaygroundKey { key_id: k.id, secret, expires_at }, rev))
}
