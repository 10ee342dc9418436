use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

/// The Usage page: the query string's values as they came (validated on the server).
#[server(endpoint = "usage/report")]
pub async fn get_usage_report(range: String, model: String, workspace: String, key: String) -> Result<UsageReport, AppError> {
    use crate::ssr::{auth::Need, services::usage};
    super::edge::run(Need::Operator, |st, _| async move {
        let f = usage::filter_from_query(&range, &model, &workspace, &key)?;
        usage::report(&st.db, &f).await
    })
    .await
}

/// The caller's keys' requests and tokens (24 h, 30 d): their own workspaces only.
#[server(endpoint = "usage/keys")]
pub async fn list_key_usage() -> Result<Vec<KeyUsage>, AppError> {
    use crate::ssr::{auth::Need, services::usage};
    super::edge::run(Need::Login, |st, who| async move { usage::key_usage(&st.db, &who).await }).await
}
