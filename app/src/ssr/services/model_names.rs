//! The MaaS models by their marketplace names: what key scopes, usage reports and forms list.
use crate::ssr::entities::{maas_model, marketplace_model};
use crate::ssr::SResult;
use crate::types::ModelKind;
use sea_orm::{ConnectionTrait, EntityTrait, QuerySelect, RelationTrait};

/// Every MaaS model's id and marketplace name (what clients put in `model`).
pub async fn names(db: &impl ConnectionTrait) -> SResult<Vec<(i64, String)>> {
    Ok(names_and_kinds(db).await?.into_iter().map(|(id, name, _)| (id, name)).collect())
}

/// Every MaaS model's id, marketplace name and kind.
pub async fn names_and_kinds(db: &impl ConnectionTrait) -> SResult<Vec<(i64, String, ModelKind)>> {
    let rows = maas_model::Entity::find()
        .select_only()
        .column(maas_model::Column::Id)
        .column(marketplace_model::Column::Name)
        .column(marketplace_model::Column::Kind)
        .join(sea_orm::JoinType::InnerJoin, maas_model::Relation::Marketplace.def())
        .into_tuple::<(i64, String, String)>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(id, name, kind)| (id, name, ModelKind::parse(&kind))).collect())
}
