//! Workspaces, their members, and user accounts.
use super::visibility::visible_ids;
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::entities::{user, workspace, workspace_member};
use crate::ssr::{bump_revision, now, on_unique, SResult};
use crate::types::*;
use crate::validate;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionSession, TransactionTrait,
};
use serde_json::{json, Value};
use std::collections::HashMap;

pub async fn list(db: &impl ConnectionTrait, who: &CurrentUser) -> SResult<Vec<Workspace>> {
    let mut q = workspace::Entity::find().order_by_asc(workspace::Column::Name);
    if let Some(ids) = visible_ids(db, who).await? {
        q = q.filter(workspace::Column::Id.is_in(ids));
    }
    let spaces = q.all(db).await?;
    let ids: Vec<i64> = spaces.iter().map(|w| w.id).collect();
    let mut quotas = super::quotas::views(db, RuleTarget::Workspace, Some(&ids)).await?;
    let users: HashMap<i64, String> = user::Entity::find().all(db).await?.into_iter().map(|u| (u.id, u.username)).collect();
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

fn snapshot(name: &str) -> Value {
    json!({"name": name})
}

pub async fn get(db: &impl ConnectionTrait, who: &CurrentUser, id: i64) -> SResult<Workspace> {
    // One answer for "no such workspace" and "not yours".
    list(db, who).await?.into_iter().find(|w| w.id == id).ok_or_else(|| AppError::NotFound("workspace".into()).into())
}

const DUPLICATE: &str = "a workspace with this name exists";

fn check_name(name: &str) -> SResult<()> {
    let mut e = FieldErrors::default();
    validate::name_like(&mut e, "name", name, 64);
    Ok(e.into_result()?)
}

pub async fn create<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, name: &str) -> SResult<i64> {
    check_name(name)?;
    let txn = db.begin().await?;
    let w = workspace::ActiveModel { name: Set(name.trim().to_owned()), created_at: Set(now()), ..Default::default() }
        .insert(&txn)
        .await
        .map_err(|e| on_unique(e, "name", DUPLICATE))?;
    audit::record(&txn, actor, Entity::Workspace, w.id, Action::Create, None, Some(&snapshot(&w.name))).await?;
    txn.commit().await?;
    Ok(w.id)
}

pub async fn rename<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, id: i64, name: &str) -> SResult<()> {
    check_name(name)?;
    let txn = db.begin().await?;
    let Some(w) = workspace::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("workspace".into()).into());
    };
    let before = snapshot(&w.name);
    let mut am: workspace::ActiveModel = w.into();
    am.name = Set(name.trim().to_owned());
    let w = am.update(&txn).await.map_err(|e| on_unique(e, "name", DUPLICATE))?;
    audit::record(&txn, actor, Entity::Workspace, id, Action::Update, Some(&before), Some(&snapshot(&w.name))).await?;
    txn.commit().await?;
    Ok(())
}

/// Deletes a workspace with its keys, quotas and rules (the schema cascades): the gateway
/// stops accepting those keys at the new revision.
pub async fn delete<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, id: i64) -> SResult<i64> {
    let txn = db.begin().await?;
    let Some(w) = workspace::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("workspace".into()).into());
    };
    let rev = bump_revision(&txn).await?;
    workspace::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(&txn, actor, Entity::Workspace, id, Action::Delete, Some(&snapshot(&w.name)), None).await?;
    txn.commit().await?;
    Ok(rev)
}

pub async fn add_member<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, workspace_id: i64, username: &str) -> SResult<()> {
    let txn = db.begin().await?;
    if workspace::Entity::find_by_id(workspace_id).one(&txn).await?.is_none() {
        return Err(AppError::NotFound("workspace".into()).into());
    }
    let Some(u) = user::Entity::find().filter(user::Column::Username.eq(username.trim())).one(&txn).await? else {
        return Err(AppError::field("username", "no user with this name").into());
    };
    workspace_member::ActiveModel { workspace_id: Set(workspace_id), user_id: Set(u.id) }
        .insert(&txn)
        .await
        .map_err(|e| on_unique(e, "username", "already a member"))?;
    audit::record(&txn, actor, Entity::Workspace, workspace_id, Action::AddMember, None, Some(&json!({"member": u.username}))).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn remove_member<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, workspace_id: i64, username: &str) -> SResult<()> {
    let txn = db.begin().await?;
    let u = user::Entity::find().filter(user::Column::Username.eq(username.trim())).one(&txn).await?;
    let removed = match &u {
        Some(u) => workspace_member::Entity::delete_by_id((workspace_id, u.id)).exec(&txn).await?.rows_affected,
        None => 0,
    };
    if removed == 0 {
        return Err(AppError::NotFound("member".into()).into());
    }
    audit::record(&txn, actor, Entity::Workspace, workspace_id, Action::RemoveMember, Some(&json!({"member": username.trim()})), None)
        .await?;
    txn.commit().await?;
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

pub async fn get_user(db: &impl ConnectionTrait, id: i64) -> SResult<UserSummary> {
    list_users(db).await?.into_iter().find(|u| u.id == id).ok_or_else(|| AppError::NotFound("user".into()).into())
}

/// Deletes an account with its sessions, memberships and admin tokens (the schema cascades;
/// the keys it created stay with their workspaces). Refused for the caller's own account and
/// for the last operator: the console must keep someone who can run it.
pub async fn delete_user<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, who: &CurrentUser, id: i64) -> SResult<()> {
    if id == who.id {
        return Err(AppError::Conflict("you cannot delete your own account".into()).into());
    }
    let txn = db.begin().await?;
    let Some(u) = user::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::NotFound("user".into()).into());
    };
    if u.role == Role::Operator.as_str() {
        let operators = user::Entity::find().filter(user::Column::Role.eq(Role::Operator.as_str())).all(&txn).await?.len();
        if operators <= 1 {
            return Err(AppError::Conflict("this is the last operator account".into()).into());
        }
    }
    user::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(&txn, actor, Entity::User, id, Action::Delete, Some(&json!({"username": u.username, "role": u.role})), None).await?;
    txn.commit().await?;
    Ok(())
}
