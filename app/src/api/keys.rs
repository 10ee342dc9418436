use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[server(endpoint = "keys/list")]
pub async fn list_keys() -> Result<Vec<ApiKeyInfo>, AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, who| async move { keys::list(&st.db, &who).await }).await
}

#[server(endpoint = "keys/create")]
pub async fn create_key(workspace_id: i64, name: String) -> Result<CreatedApiKey, AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, who| async move {
        let (k, rev) = keys::create(&st.db, &who, workspace_id, &name).await?;
        st.config_changed(rev).await;
        Ok(k)
    })
    .await
}

#[server(endpoint = "keys/revoke")]
pub async fn revoke_key(id: i64) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::keys};
    super::edge::run(Need::Login, |st, who| async move {
        let rev = keys::revoke(&st.db, &who, id).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}
