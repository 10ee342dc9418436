use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;
use server_fn::codec::Postcard;

#[server(endpoint = "keys/list", output = Postcard)]
pub async fn list_keys() -> Result<Vec<ApiKeyInfo>, AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, who| async move { keys::list(&st.db, &who).await }).await
}

#[server(endpoint = "keys/create", output = Postcard)]
pub async fn create_key(workspace_id: i64, name: String) -> Result<CreatedApiKey, AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, who| async move {
        let (k, rev) = keys::create(&st.db, &crate::ssr::audit::Actor::console(&who), &who, workspace_id, &name).await?;
        st.config_changed(rev).await;
        Ok(k)
    })
    .await
}

#[server(endpoint = "keys/revoke", output = Postcard)]
pub async fn revoke_key(id: i64) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, who| async move {
        let rev = keys::revoke(&st.db, &crate::ssr::audit::Actor::console(&who), &who, id).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

/// The models a key can be scoped to.
#[server(endpoint = "keys/models", output = Postcard)]
pub async fn list_key_models() -> Result<Vec<Choice>, AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, _| async move { keys::scope_choices(&st.db).await }).await
}

/// Sets a key's last day (`YYYY-MM-DD`, empty: none) and models (comma-separated MaaS model
/// ids; `all_models`: every model): an operator's call sets the operator's limit, a member's
/// the holder's own narrowing.
#[server(endpoint = "keys/scope", output = Postcard)]
pub async fn set_key_scope(id: i64, last_day: String, all_models: bool, models: String) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, who| async move {
        let models = if all_models {
            None
        } else {
            let mut ids = Vec::new();
            for part in models.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                ids.push(part.parse::<i64>().map_err(|_| AppError::field("models", "model ids, separated by commas"))?);
            }
            Some(ids)
        };
        let scope = KeyScope { last_day: Some(last_day).filter(|d| !d.trim().is_empty()), models };
        let rev = keys::set_scope(&st.db, &crate::ssr::audit::Actor::console(&who), &who, id, &scope).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

/// Sets a key's quota (as [`crate::api::workspaces::set_workspace_quota`] a workspace's).
/// Operators only.
#[server(endpoint = "keys/quota", output = Postcard)]
pub async fn set_key_quota(
    id: i64,
    period: String,
    tokens: String,
    requests: String,
    // Absent from an older console's form: no money budget.
    #[server(default)] spend: String,
    #[server(default)] unpriced: String,
    #[server(default)] alerts: String,
) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::quotas};
    super::edge::run(Need::Operator, |st, who| async move {
        let rev = quotas::set_key(
            &st.db,
            &crate::ssr::audit::Actor::console(&who),
            &who,
            id,
            &QuotaInput::from_form(QuotaForm { period, tokens, requests, spend, unpriced, alerts })?,
        )
        .await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

/// Renames a key: its workspace's members, or an operator.
#[server(endpoint = "keys/rename", output = Postcard)]
pub async fn rename_key(id: i64, name: String) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(
        Need::Login,
        |st, who| async move { keys::rename(&st.db, &crate::ssr::audit::Actor::console(&who), &who, id, &name).await },
    )
    .await
}
