//! Reading the audit log (the console's Audit page, the admin API, the CSV export) and the
//! admin API's access log. Writing is `ssr::audit`'s, inside each change's transaction.
use crate::error::AppError;
use crate::ssr::audit::Entity as AuditEntity;
use crate::ssr::entities::{api_access, audit_entry};
use crate::ssr::SResult;
use crate::types::*;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select};

pub const MAX_PER_PAGE: u64 = 200;
/// The CSV export's bound: a year of a busy platform's changes.
pub const MAX_EXPORT_ROWS: u64 = 100_000;

fn view(e: audit_entry::Model) -> AuditEntry {
    AuditEntry {
        id: e.id,
        at: e.at,
        actor_kind: e.actor_kind,
        actor: e.actor_name,
        via: e.via,
        entity: e.entity,
        entity_id: e.entity_id,
        action: e.action,
        diff: e.diff,
    }
}

/// The filter as a query, or the fields that are wrong.
fn query(f: &AuditFilter) -> SResult<Select<audit_entry::Entity>> {
    let mut e = FieldErrors::default();
    let mut q = audit_entry::Entity::find();
    if !f.actor.trim().is_empty() {
        q = q.filter(audit_entry::Column::ActorName.eq(f.actor.trim()));
    }
    match f.entity.trim() {
        "" => {}
        name => match AuditEntity::parse(name) {
            Some(ent) => q = q.filter(audit_entry::Column::Entity.eq(ent.as_str())),
            None => e.add("entity", format!("one of {}", AuditEntity::ALL.map(|e| e.as_str()).join(", "))),
        },
    }
    if let Some(id) = f.entity_id {
        q = q.filter(audit_entry::Column::EntityId.eq(id));
    }
    let mut day = |field: &str, s: &str| match s.trim() {
        "" => None,
        d => crate::days::parse_day(d).or_else(|| {
            e.add(field, "a day as YYYY-MM-DD");
            None
        }),
    };
    let (from, to) = (day("from", &f.from), day("to", &f.to));
    if let (Some(a), Some(b)) = (from, to) {
        if b < a {
            e.add("to", "on or after the first day");
        }
    }
    e.into_result()?;
    if let Some(d) = from {
        q = q.filter(audit_entry::Column::At.gte(d * 86_400));
    }
    if let Some(d) = to {
        q = q.filter(audit_entry::Column::At.lt((d + 1) * 86_400));
    }
    Ok(q)
}

/// Newest first; `page` counts from 0.
pub async fn list(db: &impl ConnectionTrait, f: &AuditFilter, page: u64, per_page: u64) -> SResult<AuditPage> {
    crate::validate::list_query("", page).into_result()?;
    let q = query(f)?;
    let total = q.clone().count(db).await?;
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let items =
        q.order_by_desc(audit_entry::Column::Id).offset(page * per_page).limit(per_page).all(db).await?.into_iter().map(view).collect();
    Ok(AuditPage { items, total })
}

/// The distinct actors, for the filter's choices.
pub async fn actors(db: &impl ConnectionTrait) -> SResult<Vec<String>> {
    Ok(audit_entry::Entity::find()
        .select_only()
        .column(audit_entry::Column::ActorName)
        .distinct()
        .order_by_asc(audit_entry::Column::ActorName)
        .into_tuple::<String>()
        .all(db)
        .await?)
}

/// The filtered log as CSV (oldest first, UTC times in RFC 3339), at most
/// [`MAX_EXPORT_ROWS`] rows: a wider export is refused with the reason.
pub async fn export_csv(db: &impl ConnectionTrait, f: &AuditFilter) -> SResult<String> {
    let q = query(f)?;
    let n = q.clone().count(db).await?;
    if n > MAX_EXPORT_ROWS {
        return Err(AppError::field("to", &format!("{n} changes match: narrow the days to at most {MAX_EXPORT_ROWS}")).into());
    }
    let mut out = String::from("time,actor_kind,actor,via,entity,entity_id,action,diff\n");
    for e in q.order_by_asc(audit_entry::Column::Id).all(db).await? {
        let row =
            [crate::days::format_rfc3339(e.at), e.actor_kind, e.actor_name, e.via, e.entity, e.entity_id.to_string(), e.action, e.diff];
        out.push_str(&row.iter().map(|c| super::usage::csv_field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    Ok(out)
}

/// The admin API's latest write calls, newest first.
pub async fn access(db: &impl ConnectionTrait, page: u64, per_page: u64) -> SResult<(Vec<AccessEntry>, u64)> {
    crate::validate::list_query("", page).into_result()?;
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let total = api_access::Entity::find().count(db).await?;
    let items = api_access::Entity::find()
        .order_by_desc(api_access::Column::Id)
        .offset(page * per_page)
        .limit(per_page)
        .all(db)
        .await?
        .into_iter()
        .map(|a| AccessEntry { at: a.at, actor: a.actor_name, method: a.method, path: a.path, status: a.status })
        .collect();
    Ok((items, total))
}

/// Deletes access-log rows older than `before` (Unix seconds); the audit log itself is kept.
pub async fn prune_access(db: &impl ConnectionTrait, before: i64) -> SResult<u64> {
    Ok(api_access::Entity::delete_many().filter(api_access::Column::At.lt(before)).exec(db).await?.rows_affected)
}
