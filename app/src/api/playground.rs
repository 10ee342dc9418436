//! The playground's short-lived key (see `ssr::services::playground`).
use crate::error::AppError;
use crate::types::PlaygroundKey;
use leptos::prelude::*;
use server_fn::codec::Postcard;

/// A key for `model` in one of the caller's workspaces, working for a few minutes.
#[server(endpoint = "playground/start", output = Postcard)]
pub async fn start_playground(workspace_id: i64, model: String) -> Result<PlaygroundKey, AppError> {
    use crate::ssr::{audit::Actor, auth::Need, services::playground};
    super::edge::run(Need::Login, |st, who| async move {
        let (k, rev) = playground::issue(&st.db, &Actor::console(&who), &who, workspace_id, &model).await?;
        // The gateway knows the key before the browser uses it.
        st.config_changed(rev).await;
        Ok(k)
    })
    .await
}

/// Revokes a playground key when the playground is done with it (only playground keys, only
/// the caller's own workspaces').
#[server(endpoint = "playground/end", output = Postcard)]
pub async fn end_playground(key_id: i64) -> Result<(), AppError> {
    use crate::ssr::{
        audit::Actor,
        auth::Need,
        entities::api_key,
        services::{keys, playground},
    };
    use sea_orm::EntityTrait;
    super::edge::run(Need::Login, |st, who| async move {
        match api_key::Entity::find_by_id(key_id).one(&st.db).await? {
            Some(k) if k.name == playground::KEY_NAME => {}
            _ => return Err(AppError::NotFound("playground key".into()).into()),
        }
        let rev = keys::revoke(&st.db, &Actor::console(&who), &who, key_id).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}
