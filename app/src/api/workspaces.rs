use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;
use server_fn::codec::Postcard;

/// Operators see every workspace, users only their own.
#[server(endpoint = "workspaces/list", output = Postcard)]
pub async fn list_workspaces() -> Result<Vec<Workspace>, AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(Need::Login, |st, who| async move { workspaces::list(&st.db, &who).await }).await
}

#[server(endpoint = "workspaces/create", output = Postcard)]
pub async fn create_workspace(name: String) -> Result<i64, AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(
        Need::Operator,
        |st, who| async move { workspaces::create(&st.db, &crate::ssr::audit::Actor::console(&who), &name).await },
    )
    .await
}

#[server(endpoint = "workspaces/add-member", output = Postcard)]
pub async fn add_member(workspace_id: i64, username: String) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(Need::Operator, |st, who| async move {
        workspaces::add_member(&st.db, &crate::ssr::audit::Actor::console(&who), workspace_id, &username).await
    })
    .await
}

#[server(endpoint = "users/list", output = Postcard)]
pub async fn list_users() -> Result<Vec<UserSummary>, AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(Need::Operator, |st, _| async move { workspaces::list_users(&st.db).await }).await
}

#[server(endpoint = "users/create", output = Postcard)]
pub async fn create_user(username: String, password: String, role: String) -> Result<i64, AppError> {
    use crate::ssr::{auth, auth::Need};
    super::edge::run(Need::Operator, |st, who| async move {
        let role = Role::parse(&role).ok_or_else(|| AppError::field("role", "choose operator or user"))?;
        auth::create_user(&st.db, &crate::ssr::audit::Actor::console(&who), &username, &password, role).await
    })
    .await
}

/// Sets a workspace's quota: `period` is `day` or `month`, the budgets whole numbers or empty
/// (both empty: no quota). Operators only.
#[server(endpoint = "workspaces/quota", output = Postcard)]
pub async fn set_workspace_quota(
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
        let rev = quotas::set_workspace(
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

#[server(endpoint = "workspaces/rename", output = Postcard)]
pub async fn rename_workspace(id: i64, name: String) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(Need::Operator, |st, who| async move {
        workspaces::rename(&st.db, &crate::ssr::audit::Actor::console(&who), id, &name).await
    })
    .await
}

/// Deletes a workspace with its API keys, quota and the rules that name it.
#[server(endpoint = "workspaces/delete", output = Postcard)]
pub async fn delete_workspace(id: i64) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(Need::Operator, |st, who| async move {
        let rev = workspaces::delete(&st.db, &crate::ssr::audit::Actor::console(&who), id).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

#[server(endpoint = "workspaces/remove-member", output = Postcard)]
pub async fn remove_member(workspace_id: i64, username: String) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(Need::Operator, |st, who| async move {
        workspaces::remove_member(&st.db, &crate::ssr::audit::Actor::console(&who), workspace_id, &username).await
    })
    .await
}

#[server(endpoint = "users/delete", output = Postcard)]
pub async fn delete_user(id: i64) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::workspaces};
    super::edge::run(Need::Operator, |st, who| async move {
        workspaces::delete_user(&st.db, &crate::ssr::audit::Actor::console(&who), &who, id).await
    })
    .await
}
