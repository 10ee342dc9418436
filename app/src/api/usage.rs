use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;
use server_fn::codec::Postcard;

/// The Usage page's content, rendered on the server as HTML for the query string's values
/// (validated on the server). The page is read-only: the browser needs its markup, not the code
/// that builds it, which keeps tables and charts out of the WASM bundle.
#[server(endpoint = "usage/page", output = Postcard)]
pub async fn get_usage_page(range: String, model: String, workspace: String, key: String) -> Result<String, AppError> {
    use crate::ssr::{auth::Need, services::usage};
    super::edge::run(Need::Operator, |st, _| async move {
        let f = usage::filter_from_query(&range, &model, &workspace, &key)?;
        let t = std::time::Instant::now();
        let report = usage::report(&st.db, &f).await?;
        let html = crate::pages::usage::render(report);
        tracing::debug!(range = %range, ms = t.elapsed().as_millis() as u64, "usage page computed");
        Ok(html)
    })
    .await
}

/// The caller's keys' requests and tokens (24 h, 30 d): their own workspaces only.
#[server(endpoint = "usage/keys", output = Postcard)]
pub async fn list_key_usage() -> Result<Vec<KeyUsage>, AppError> {
    use crate::ssr::{auth::Need, services::usage};
    super::edge::run(Need::Login, |st, who| async move { usage::key_usage(&st.db, &who).await }).await
}
