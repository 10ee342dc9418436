//! The audit log: who changed what, when, and which fields moved. Every write service takes
//! the [`Actor`] and records its change with [`record`] inside its own transaction, so a change
//! and its audit row commit (or roll back) together; nothing else writes configuration.
//!
//! Diffs are built from snapshots the services make of the entity before and after the
//! change: plain JSON with secrets already replaced by "set" / "cleared" / "replaced"
//! ([`secret_marker`]), so no secret can reach this table, its CSV or the API.
use super::entities::audit_entry;
use super::{now, SResult};
use crate::types::CurrentUser;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use serde_json::{Map, Value};

/// Who makes a change, and through which door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user's or the token's id; `None` for the system.
    pub id: Option<i64>,
    /// Copied into the row, so the log reads the same after the account is gone.
    pub name: String,
    pub via: Via,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Token,
    /// The server itself: first-start seeding of the demo.
    System,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Console,
    Api,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::System => "system",
        }
    }
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Console => "console",
            Via::Api => "api",
            Via::System => "system",
        }
    }
}

impl Actor {
    /// A logged-in user in the console.
    pub fn console(u: &CurrentUser) -> Self {
        Actor { kind: ActorKind::User, id: Some(u.id), name: u.username.clone(), via: Via::Console }
    }
    /// A logged-in user calling the admin API with their session.
    pub fn api_user(u: &CurrentUser) -> Self {
        Actor { via: Via::Api, ..Actor::console(u) }
    }
    pub fn token(id: i64, name: &str) -> Self {
        Actor { kind: ActorKind::Token, id: Some(id), name: format!("token:{name}"), via: Via::Api }
    }
    pub fn system() -> Self {
        Actor { kind: ActorKind::System, id: None, name: "system".into(), via: Via::System }
    }
}

/// What kind of thing changed (the log's `entity` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    MarketplaceModel,
    Cluster,
    Workspace,
    User,
    ApiKey,
    Model,
    AdminToken,
    /// A platform setting (the budget alerts' webhook).
    Setting,
}

impl Entity {
    pub const ALL: [Entity; 8] = [
        Entity::MarketplaceModel,
        Entity::Cluster,
        Entity::Workspace,
        Entity::User,
        Entity::ApiKey,
        Entity::Model,
        Entity::AdminToken,
        Entity::Setting,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::MarketplaceModel => "marketplace_model",
            Entity::Cluster => "cluster",
            Entity::Workspace => "workspace",
            Entity::User => "user",
            Entity::ApiKey => "api_key",
            Entity::Model => "model",
            Entity::AdminToken => "admin_token",
            Entity::Setting => "setting",
        }
    }
    pub fn parse(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// What happened to it (the log's `action` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
    Enable,
    Disable,
    Publish,
    Unpublish,
    Revoke,
    AddMember,
    RemoveMember,
    /// A budget's alert threshold was crossed.
    Alert,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Enable => "enable",
            Action::Disable => "disable",
            Action::Publish => "publish",
            Action::Unpublish => "unpublish",
            Action::Revoke => "revoke",
            Action::AddMember => "add_member",
            Action::RemoveMember => "remove_member",
            Action::Alert => "alert",
        }
    }
}

/// How a secret field appears in a snapshot: whether one is stored, never its value.
pub fn secret_marker(stored: bool) -> Value {
    Value::from(if stored { "set" } else { "none" })
}

/// The fields that differ between two snapshots (JSON objects), as
/// `{"field": {"old": …, "new": …}}`; a created entity has only `new`s, a deleted one only
/// `old`s. Nested values (a model's endpoints) are compared whole.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Value {
    let empty = Map::new();
    let obj = |v: Option<&Value>| v.and_then(Value::as_object).unwrap_or(&empty).clone();
    let (b, a) = (obj(before), obj(after));
    let mut out = Map::new();
    for k in b.keys().chain(a.keys().filter(|k| !b.contains_key(*k))) {
        let (old, new) = (b.get(k), a.get(k));
        if old == new {
            continue;
        }
        let mut change = Map::new();
        if let Some(o) = old.filter(|_| before.is_some()) {
            change.insert("old".into(), o.clone());
        }
        if let Some(n) = new.filter(|_| after.is_some()) {
            change.insert("new".into(), n.clone());
        }
        out.insert(k.clone(), Value::Object(change));
    }
    Value::Object(out)
}

/// Writes one audit row, in the caller's transaction.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    entity: Entity,
    entity_id: i64,
    action: Action,
    before: Option<&Value>,
    after: Option<&Value>,
) -> SResult<()> {
    audit_entry::ActiveModel {
        at: Set(now()),
        actor_kind: Set(actor.kind.as_str().to_owned()),
        actor_id: Set(actor.id),
        actor_name: Set(actor.name.clone()),
        via: Set(actor.via.as_str().to_owned()),
        entity: Set(entity.as_str().to_owned()),
        entity_id: Set(entity_id),
        action: Set(action.as_str().to_owned()),
        diff: Set(diff(before, after).to_string()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_only_changed_fields() {
        let b = json!({"name": "a", "url": "http://x", "weight": 1});
        let a = json!({"name": "a", "url": "http://y", "weight": 1, "tags": ["t"]});
        assert_eq!(diff(Some(&b), Some(&a)), json!({"url": {"old": "http://x", "new": "http://y"}, "tags": {"new": ["t"]}}));
    }

    #[test]
    fn created_and_deleted_entities_show_one_side() {
        let v = json!({"name": "a"});
        assert_eq!(diff(None, Some(&v)), json!({"name": {"new": "a"}}));
        assert_eq!(diff(Some(&v), None), json!({"name": {"old": "a"}}));
    }
}
