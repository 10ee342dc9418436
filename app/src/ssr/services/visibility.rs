//! Which workspaces a caller sees: every one for an operator, their own for a user. The base of
//! every service that shows or changes a workspace's things (keys, quotas, usage).
use crate::ssr::entities::workspace_member;
use crate::ssr::SResult;
use crate::types::*;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

/// Workspace ids the caller may see: all for an operator, their own for a user.
pub async fn visible_ids(db: &impl ConnectionTrait, who: &CurrentUser) -> SResult<Option<Vec<i64>>> {
    if who.role == Role::Operator {
        return Ok(None);
    }
    Ok(Some(
        workspace_member::Entity::find()
            .filter(workspace_member::Column::UserId.eq(who.id))
            .all(db)
            .await?
            .into_iter()
            .map(|m| m.workspace_id)
            .collect(),
    ))
}

pub async fn can_see(db: &impl ConnectionTrait, who: &CurrentUser, workspace_id: i64) -> SResult<bool> {
    Ok(match visible_ids(db, who).await? {
        None => true,
        Some(ids) => ids.contains(&workspace_id),
    })
}
