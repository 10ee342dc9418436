//! Marketplace models and clusters (operators only, except reading the user view).
use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;
use server_fn::codec::Postcard;

#[server(endpoint = "marketplace/list", output = Postcard)]
pub async fn list_marketplace() -> Result<Vec<MarketplaceModel>, AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    super::edge::run(Need::Operator, |st, _| async move { catalog::list_marketplace(&st.db).await }).await
}

#[server(endpoint = "marketplace/create", output = Postcard)]
pub async fn create_marketplace(
    name: String,
    provider: String,
    description: String,
    tags: String,
    kind: Option<ModelKind>,
) -> Result<i64, AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    let input = MarketplaceInput { name, provider, description, tags, kind: kind.unwrap_or_default() };
    super::edge::run(Need::Operator, |st, who| async move {
        catalog::create_marketplace(&st.db, &crate::ssr::audit::Actor::console(&who), &input).await
    })
    .await
}

#[server(endpoint = "marketplace/publish", output = Postcard)]
pub async fn set_published(id: i64, published: bool) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    super::edge::run(Need::Operator, |st, who| async move {
        let rev = catalog::set_published(&st.db, &crate::ssr::audit::Actor::console(&who), id, published).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

#[server(endpoint = "clusters/list", output = Postcard)]
pub async fn list_clusters() -> Result<Vec<Cluster>, AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    super::edge::run(Need::Operator, |st, _| async move { catalog::list_clusters(&st.db).await }).await
}

#[server(endpoint = "clusters/create", output = Postcard)]
pub async fn create_cluster(name: String, entry_address: String) -> Result<i64, AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    super::edge::run(Need::Operator, |st, who| async move {
        catalog::create_cluster(&st.db, &crate::ssr::audit::Actor::console(&who), &name, &entry_address).await
    })
    .await
}

/// The marketplace user view: any logged-in account.
#[server(endpoint = "offerings", output = Postcard)]
pub async fn offerings() -> Result<Vec<Offering>, AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(Need::Login, |st, _| async move { models::offerings(&st.db).await }).await
}

#[server(endpoint = "marketplace/update", output = Postcard)]
pub async fn update_marketplace(
    id: i64,
    name: String,
    provider: String,
    description: String,
    tags: String,
    kind: Option<ModelKind>,
) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    let input = MarketplaceInput { name, provider, description, tags, kind: kind.unwrap_or_default() };
    super::edge::run(Need::Operator, |st, who| async move {
        let (_, rev) = catalog::update_marketplace(&st.db, &crate::ssr::audit::Actor::console(&who), id, &input).await?;
        if let Some(rev) = rev {
            st.config_changed(rev).await;
        }
        Ok(())
    })
    .await
}

#[server(endpoint = "marketplace/delete", output = Postcard)]
pub async fn delete_marketplace(id: i64) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    super::edge::run(Need::Operator, |st, who| async move {
        catalog::delete_marketplace(&st.db, &crate::ssr::audit::Actor::console(&who), id).await
    })
    .await
}

#[server(endpoint = "clusters/update", output = Postcard)]
pub async fn update_cluster(id: i64, name: String, entry_address: String) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    super::edge::run(Need::Operator, |st, who| async move {
        let (_, rev) = catalog::update_cluster(&st.db, &crate::ssr::audit::Actor::console(&who), id, &name, &entry_address).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

#[server(endpoint = "clusters/delete", output = Postcard)]
pub async fn delete_cluster(id: i64) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::catalog};
    super::edge::run(Need::Operator, |st, who| async move {
        catalog::delete_cluster(&st.db, &crate::ssr::audit::Actor::console(&who), id).await
    })
    .await
}
