//! The MaaS models by their marketplace names: what key scopes, usage reports and forms list.
use crate::ssr::entities::{maas_model, marketplace_model};
use crate::ssr::SResult;
use sea_orm::{ConnectionTrait, EntityTrait, QuerySelect, RelationTrait};

/// Every MaaS model's id and the kind of its marketplace model.
pub async fn kinds(db: &impl ConnectionTrait) -> SResult<std::collections::HashMap<i64, crate::types::ModelKind>> {
    let rows = maas_model::Entity::find()
        .select_only()
        .column(maas_model::Column::Id)
        .column(marketplace_model::Column::Kind)
        .join(sea_orm::JoinType::InnerJoin, maas_model::Relation::Marketplace.def())
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(id, kind)| (id, crate::types::ModelKind::parse(&kind))).collect())
}

/// Every MaaS model's id and marketplace name (what clients put in `model`).
pub async fn names(db: &impl ConnectionTrait) -> SResult<Vec<(i64, String)>> {
    Ok(maas_model::Entity::find()
        .select_only()
        .column(maas_model::Column::Id)
        .column(marketplace_model::Column::Name)
        .join(sea_orm::JoinType::InnerJoin, maas_model::Relation::Marketplace.def())
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?)
}
