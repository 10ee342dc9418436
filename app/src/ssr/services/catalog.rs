//! Marketplace models and clusters: what MaaS models are built from.
use crate::error::AppError;
use crate::ssr::entities::{cluster, maas_model, marketplace_model};
use crate::ssr::{bump_revision, now, on_unique, SResult};
use crate::types::*;
use crate::validate;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionSession, TransactionTrait};

pub fn to_view(m: marketplace_model::Model) -> MarketplaceModel {
    MarketplaceModel {
        id: m.id,
        name: m.name,
        provider: m.provider,
        description: m.description,
        tags: serde_json::from_str(&m.tags).unwrap_or_default(),
        published: m.published,
    }
}

pub async fn list_marketplace(db: &impl ConnectionTrait) -> SResult<Vec<MarketplaceModel>> {
    Ok(marketplace_model::Entity::find()
        .order_by_asc(marketplace_model::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(to_view)
        .collect())
}

pub async fn create_marketplace(db: &impl ConnectionTrait, input: &MarketplaceInput) -> SResult<i64> {
    validate::marketplace(input).into_result()?;
    let am = marketplace_model::ActiveModel {
        name: Set(input.name.trim().to_owned()),
        provider: Set(input.provider.trim().to_owned()),
        description: Set(input.description.trim().to_owned()),
        tags: Set(serde_json::to_string(&parse_tags(&input.tags)).expect("tags serialize")),
        published: Set(false),
        created_at: Set(now()),
        ..Default::default()
    };
    let m = am
        .insert(db)
        .await
        .map_err(|e| on_unique(e, "name", "a marketplace model with this name exists"))?;
    Ok(m.id)
}

/// Publishing changes what the gateway serves (an unpublished model answers 404), so the
/// MaaS models built on it move to the new revision.
pub async fn set_published<C: TransactionTrait>(db: &C, id: i64, published: bool) -> SResult<i64> {
    let txn = db.begin().await?;
    let found = marketplace_model::Entity::find_by_id(id).one(&txn).await?;
    let Some(m) = found else {
        return Err(AppError::NotFound("marketplace model".into()).into());
    };
    let rev = bump_revision(&txn).await?;
    let mut am: marketplace_model::ActiveModel = m.into();
    am.published = Set(published);
    am.update(&txn).await?;
    maas_model::Entity::update_many()
        .col_expr(maas_model::Column::Revision, Expr::value(rev))
        .filter(maas_model::Column::MarketplaceModelId.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(rev)
}

pub async fn list_clusters(db: &impl ConnectionTrait) -> SResult<Vec<Cluster>> {
    Ok(cluster::Entity::find()
        .order_by_asc(cluster::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(|c| Cluster { id: c.id, name: c.name, entry_address: c.entry_address })
        .collect())
}

pub async fn create_cluster(db: &impl ConnectionTrait, name: &str, entry_address: &str) -> SResult<i64> {
    validate::cluster(name, entry_address).into_result()?;
    let am = cluster::ActiveModel {
        name: Set(name.trim().to_owned()),
        entry_address: Set(entry_address.trim().trim_end_matches('/').to_owned()),
        created_at: Set(now()),
        ..Default::default()
    };
    let c = am.insert(db).await.map_err(|e| on_unique(e, "name", "a cluster with this name exists"))?;
    Ok(c.id)
}
