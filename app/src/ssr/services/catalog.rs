//! Marketplace models and clusters: what MaaS models are built from.
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::entities::{cluster, maas_model, marketplace_model};
use crate::ssr::{bump_revision, now, on_unique, SResult};
use crate::types::*;
use crate::validate;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionSession,
    TransactionTrait,
};
use serde_json::{json, Value};

pub fn to_view(m: marketplace_model::Model) -> MarketplaceModel {
    MarketplaceModel {
        id: m.id,
        name: m.name,
        provider: m.provider,
        description: m.description,
        tags: serde_json::from_str(&m.tags).unwrap_or_default(),
        published: m.published,
        kind: ModelKind::parse(&m.kind),
    }
}

fn snapshot(m: &MarketplaceModel) -> Value {
    json!({"name": m.name, "provider": m.provider, "description": m.description, "tags": m.tags, "published": m.published, "kind": m.kind.as_str()})
}

pub async fn list_marketplace(db: &impl ConnectionTrait) -> SResult<Vec<MarketplaceModel>> {
    Ok(marketplace_model::Entity::find().order_by_asc(marketplace_model::Column::Name).all(db).await?.into_iter().map(to_view).collect())
}

pub async fn get_marketplace(db: &impl ConnectionTrait, id: i64) -> SResult<MarketplaceModel> {
    marketplace_model::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(to_view)
        .ok_or_else(|| AppError::NotFound("marketplace model".into()).into())
}

const DUPLICATE_MARKETPLACE: &str = "a marketplace model with this name exists";

pub async fn create_marketplace<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, input: &MarketplaceInput) -> SResult<i64> {
    validate::marketplace(input).into_result()?;
    let txn = db.begin().await?;
    let am = marketplace_model::ActiveModel {
        name: Set(input.name.trim().to_owned()),
        provider: Set(input.provider.trim().to_owned()),
        description: Set(input.description.trim().to_owned()),
        tags: Set(serde_json::to_string(&parse_tags(&input.tags)).expect("tags serialize")),
        published: Set(false),
        created_at: Set(now()),
        kind: Set(input.kind.as_str().to_owned()),
        ..Default::default()
    };
    let m = am.insert(&txn).await.map_err(|e| on_unique(e, "name", DUPLICATE_MARKETPLACE))?;
    let id = m.id;
    audit::record(&txn, actor, Entity::MarketplaceModel, id, Action::Create, None, Some(&snapshot(&to_view(m)))).await?;
    txn.commit().await?;
    Ok(id)
}

/// Replaces a marketplace model's fields (its publication is [`set_published`]'s). A new name
/// or kind changes what the gateway serves: the MaaS models built on it move to a new revision
/// (returned, to wait for the gateways to apply it); the descriptive fields do not.
pub async fn update_marketplace<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    id: i64,
    input: &MarketplaceInput,
) -> SResult<(MarketplaceModel, Option<i64>)> {
    validate::marketplace(input).into_result()?;
    let txn = db.begin().await?;
    let Some(m) = marketplace_model::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("marketplace model".into()).into());
    };
    let before = snapshot(&to_view(m.clone()));
    let served_changes = m.name != input.name.trim() || ModelKind::parse(&m.kind) != input.kind;
    let mut am: marketplace_model::ActiveModel = m.into();
    am.kind = Set(input.kind.as_str().to_owned());
    am.name = Set(input.name.trim().to_owned());
    am.provider = Set(input.provider.trim().to_owned());
    am.description = Set(input.description.trim().to_owned());
    am.tags = Set(serde_json::to_string(&parse_tags(&input.tags)).expect("tags serialize"));
    let m = to_view(am.update(&txn).await.map_err(|e| on_unique(e, "name", DUPLICATE_MARKETPLACE))?);
    let rev = match served_changes {
        true => Some(new_revision_of_models_on(&txn, id).await?),
        false => None,
    };
    audit::record(&txn, actor, Entity::MarketplaceModel, id, Action::Update, Some(&before), Some(&snapshot(&m))).await?;
    txn.commit().await?;
    Ok((m, rev))
}

/// Deleting a marketplace model that MaaS models are built on is refused: they would lose
/// their name (delete them first).
pub async fn delete_marketplace<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, id: i64) -> SResult<()> {
    let txn = db.begin().await?;
    let Some(m) = marketplace_model::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("marketplace model".into()).into());
    };
    let used = maas_model::Entity::find().filter(maas_model::Column::MarketplaceModelId.eq(id)).count(&txn).await?;
    if used > 0 {
        return Err(AppError::Conflict(format!("{} MaaS model(s) are built on this marketplace model: delete them first", used)).into());
    }
    let before = snapshot(&to_view(m));
    marketplace_model::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(&txn, actor, Entity::MarketplaceModel, id, Action::Delete, Some(&before), None).await?;
    txn.commit().await?;
    Ok(())
}

/// Publishing changes what the gateway serves (an unpublished model answers 404), so the
/// MaaS models built on it move to the new revision.
pub async fn set_published<C: TransactionTrait>(db: &C, actor: &Actor, id: i64, published: bool) -> SResult<i64> {
    let txn = db.begin().await?;
    let found = marketplace_model::Entity::find_by_id(id).one(&txn).await?;
    let Some(m) = found else {
        return Err(AppError::NotFound("marketplace model".into()).into());
    };
    let was = m.published;
    let rev = new_revision_of_models_on(&txn, id).await?;
    let mut am: marketplace_model::ActiveModel = m.into();
    am.published = Set(published);
    am.update(&txn).await?;
    if was != published {
        let action = if published { Action::Publish } else { Action::Unpublish };
        audit::record(
            &txn,
            actor,
            Entity::MarketplaceModel,
            id,
            action,
            Some(&json!({"published": was})),
            Some(&json!({"published": published})),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(rev)
}

/// A new configuration revision, which the MaaS models built on marketplace model `id` move to
/// (what the gateways serve of them changed).
async fn new_revision_of_models_on(txn: &impl ConnectionTrait, id: i64) -> SResult<i64> {
    let rev = bump_revision(txn).await?;
    maas_model::Entity::update_many()
        .col_expr(maas_model::Column::Revision, Expr::value(rev))
        .filter(maas_model::Column::MarketplaceModelId.eq(id))
        .exec(txn)
        .await?;
    Ok(rev)
}

fn cluster_view(c: cluster::Model) -> Cluster {
    Cluster { id: c.id, name: c.name, entry_address: c.entry_address }
}

fn cluster_snapshot(c: &Cluster) -> Value {
    json!({"name": c.name, "entry_address": c.entry_address})
}

pub async fn list_clusters(db: &impl ConnectionTrait) -> SResult<Vec<Cluster>> {
    Ok(cluster::Entity::find().order_by_asc(cluster::Column::Name).all(db).await?.into_iter().map(cluster_view).collect())
}

pub async fn get_cluster(db: &impl ConnectionTrait, id: i64) -> SResult<Cluster> {
    cluster::Entity::find_by_id(id).one(db).await?.map(cluster_view).ok_or_else(|| AppError::NotFound("cluster".into()).into())
}

const DUPLICATE_CLUSTER: &str = "a cluster with this name exists";

pub async fn create_cluster<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, name: &str, entry_address: &str) -> SResult<i64> {
    validate::cluster(name, entry_address).into_result()?;
    let txn = db.begin().await?;
    let am = cluster::ActiveModel {
        name: Set(name.trim().to_owned()),
        entry_address: Set(entry_address.trim().trim_end_matches('/').to_owned()),
        created_at: Set(now()),
        ..Default::default()
    };
    let c = cluster_view(am.insert(&txn).await.map_err(|e| on_unique(e, "name", DUPLICATE_CLUSTER))?);
    audit::record(&txn, actor, Entity::Cluster, c.id, Action::Create, None, Some(&cluster_snapshot(&c))).await?;
    txn.commit().await?;
    Ok(c.id)
}

/// Renaming a cluster moves its models to the gateways serving the new name, so the models on
/// it take a new revision.
pub async fn update_cluster<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    id: i64,
    name: &str,
    entry_address: &str,
) -> SResult<(Cluster, i64)> {
    validate::cluster(name, entry_address).into_result()?;
    let txn = db.begin().await?;
    let Some(c) = cluster::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("cluster".into()).into());
    };
    let before = cluster_snapshot(&cluster_view(c.clone()));
    let rev = bump_revision(&txn).await?;
    let mut am: cluster::ActiveModel = c.into();
    am.name = Set(name.trim().to_owned());
    am.entry_address = Set(entry_address.trim().trim_end_matches('/').to_owned());
    let c = cluster_view(am.update(&txn).await.map_err(|e| on_unique(e, "name", DUPLICATE_CLUSTER))?);
    maas_model::Entity::update_many()
        .col_expr(maas_model::Column::Revision, Expr::value(rev))
        .filter(maas_model::Column::ClusterId.eq(id))
        .exec(&txn)
        .await?;
    audit::record(&txn, actor, Entity::Cluster, id, Action::Update, Some(&before), Some(&cluster_snapshot(&c))).await?;
    txn.commit().await?;
    Ok((c, rev))
}

/// A cluster that still has models is not deleted (409): they would have nowhere to run.
pub async fn delete_cluster<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, id: i64) -> SResult<()> {
    let txn = db.begin().await?;
    let Some(c) = cluster::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("cluster".into()).into());
    };
    let used = maas_model::Entity::find().filter(maas_model::Column::ClusterId.eq(id)).count(&txn).await?;
    if used > 0 {
        return Err(AppError::Conflict(format!("this cluster still has {used} MaaS model(s): delete or move them first")).into());
    }
    let before = cluster_snapshot(&cluster_view(c));
    cluster::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(&txn, actor, Entity::Cluster, id, Action::Delete, Some(&before), None).await?;
    txn.commit().await?;
    Ok(())
}
