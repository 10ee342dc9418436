//! Admin tokens and the audit log (operators only).
use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;
use server_fn::codec::Postcard;

#[server(endpoint = "admin-tokens/list", output = Postcard)]
pub async fn list_admin_tokens() -> Result<Vec<AdminTokenInfo>, AppError> {
    use crate::ssr::{auth::Need, services::admin_tokens};
    super::edge::run(Need::Operator, |st, _| async move { admin_tokens::list(&st.db).await }).await
}

/// `access`: `read` or `write`; `last_day`: `YYYY-MM-DD` or empty for no end.
#[server(endpoint = "admin-tokens/create", output = Postcard)]
pub async fn create_admin_token(name: String, access: String, last_day: String) -> Result<CreatedAdminToken, AppError> {
    use crate::ssr::{audit::Actor, auth::Need, services::admin_tokens};
    super::edge::run(Need::Operator, |st, who| async move {
        let access = TokenAccess::parse(&access).ok_or_else(|| AppError::field("access", "choose read or write"))?;
        admin_tokens::create(&st.db, &Actor::console(&who), &who, &name, access, &last_day).await
    })
    .await
}

#[server(endpoint = "admin-tokens/revoke", output = Postcard)]
pub async fn revoke_admin_token(id: i64) -> Result<(), AppError> {
    use crate::ssr::{audit::Actor, auth::Need, services::admin_tokens};
    super::edge::run(Need::Operator, |st, who| async move { admin_tokens::revoke(&st.db, &Actor::console(&who), id).await }).await
}

/// The Audit page's content for the query string's filter, rendered on the server as HTML
/// (read-only, like the Usage page: no table code in the WASM).
#[server(endpoint = "audit/page", output = Postcard)]
pub async fn get_audit_page(actor: String, entity: String, from: String, to: String, page: u64) -> Result<String, AppError> {
    use crate::ssr::{auth::Need, services::audit_log};
    super::edge::run(Need::Operator, |st, _| async move {
        let f = AuditFilter { actor, entity, entity_id: None, from, to };
        let list = audit_log::list(&st.db, &f, page, crate::pages::audit::PER_PAGE).await?;
        let actors = audit_log::actors(&st.db).await?;
        Ok(crate::pages::audit::render(&f, page, list, actors))
    })
    .await
}
