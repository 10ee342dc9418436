//! Workspaces, their members, and user accounts.
use crate::error::AppError;
use crate::ssr::entities::{user, workspace, workspace_member};
use crate::ssr::{now, on_unique, SResult};
use crate::types::*;
use crate::validate;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use std::collections::HashMap;

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

pub async fn list(db: &impl ConnectionTrait, who: &CurrentUser) -> SResult<Vec<Workspace>> {
    let mut q = workspace::Entity::find().order_by_asc(workspace::Column::Name);
    if let Some(ids) = visible_ids(db, who).await? {
        q = q.filter(workspace::Column::Id.is_in(ids));
    }
    let spaces = q.all(db).await?;
    let ids: Vec<i64> = spaces.iter().map(|w| w.id).collect();
    let mut quotas = super::quotas::views(db, RuleTarget::Workspace, Some(&ids)).await?;
    let users: HashMap<i64, String> =
        user::Entity::find().all(db).await?.into_iter().map(|u| (u.id, u.username)).collect();
    let mut members: HashMap<i64, Vec<String>> = HashMap::new();
    for m in workspace_member::Entity::find().all(db).await? {
        if let Some(name) = users.get(&m.user_id) {
            members.entry(m.workspace_id).or_default().push(name.clone());
        }
    }
    Ok(spaces
        .into_iter()
        .map(|w| {
            let mut m = members.remove(&w.id).unwrap_or_default();
            m.sort();
            Workspace { quota: quotas.remove(&w.id), id: w.id, name: w.name, members: m }
        })
        .collect())
}

pub async fn create(db: &impl ConnectionTrait, name: &str) -> SResult<i64> {
    let mut e = FieldErrors::default();
    validate::name_like(&mut e, "name", name, 64);
    e.into_result()?;
    let w = workspace::ActiveModel { name: Set(name.trim().to_owned()), created_at: Set(now()), ..Default::default() }
        .insert(db)
        .await
        .map_err(|e| on_unique(e, "name", "a workspace with this name exists"))?;
    Ok(w.id)
}

pub async fn add_member(db: &impl ConnectionTrait, workspace_id: i64, username: &str) -> SResult<()> {
    if workspace::Entity::find_by_id(workspace_id).one(db).await?.is_none() {
        return Err(AppError::NotFound("workspace".into()).into());
    }
    let Some(u) = user::Entity::find().filter(user::Column::Username.eq(username.trim())).one(db).await? else {
        return Err(AppError::field("username", "no user with this name").into());
    };
    workspace_member::ActiveModel { workspace_id: Set(workspace_id), user_id: Set(u.id) }
        .insert(db)
        .await
        .map_err(|e| on_unique(e, "username", "already a member"))?;
    Ok(())
}

pub async fn list_users(db: &impl ConnectionTrait) -> SResult<Vec<UserSummary>> {
    Ok(user::Entity::find()
        .order_by_asc(user::Column::Username)
        .all(db)
        .await?
        .into_iter()
        .filter_map(|u| Role::parse(&u.role).map(|role| UserSummary { id: u.id, username: u.username, role }))
        .collect())
}
