//! MaaS models: create, edit, enable, delete, and the paginated management list.
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::crypto::SecretBox;
use crate::ssr::entities::{api_key, cluster, endpoint, gateway_status, maas_model, marketplace_model, rule, workspace};
use crate::ssr::{bump_revision, now, on_unique, SResult};
use crate::types::*;
use crate::validate;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, JoinType, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait, Set, TransactionSession, TransactionTrait,
};
use std::collections::HashMap;

pub const MAX_PER_PAGE: u64 = 100;
/// A gateway that has not reported for this long is not counted as serving.
const GATEWAY_STALE_SECS: i64 = 30;
/// A gateway silent this long is forgotten (scaled in, moved to another port): its row is
/// deleted, so replicas coming and going do not pile up rows that every list page reads.
/// Until then the list shows it as gone, with when it was last seen.
pub const GATEWAY_FORGET_SECS: i64 = 24 * 3600;

pub async fn form_options(db: &impl ConnectionTrait, who: &CurrentUser) -> SResult<FormOptions> {
    Ok(FormOptions {
        marketplace: super::catalog::list_marketplace(db).await?,
        clusters: super::catalog::list_clusters(db).await?,
        workspaces: super::workspaces::list(db, who).await?,
        keys: super::keys::list(db, who).await?.into_iter().filter(|k| !k.revoked).collect(),
        models: maas_model::Entity::find()
            .select_only()
            .column(maas_model::Column::Id)
            .column_as(marketplace_model::Column::Name, "name")
            .column(maas_model::Column::ClusterId)
            .join(JoinType::InnerJoin, maas_model::Relation::Marketplace.def())
            .order_by_asc(marketplace_model::Column::Name)
            .into_tuple()
            .all(db)
            .await?,
    })
}

/// The checks that need the database, run after the pure ones pass.
async fn check_references(
    db: &impl ConnectionTrait,
    input: &ModelInput,
    existing: Option<&maas_model::Model>,
    saved_endpoints: &[endpoint::Model],
) -> SResult<(i64, i64)> {
    let mut e = FieldErrors::default();
    let mm_id = input.marketplace_model_id.unwrap_or_default();
    let cl_id = input.cluster_id.unwrap_or_default();
    match marketplace_model::Entity::find_by_id(mm_id).one(db).await? {
        None => e.add("marketplace_model", "no such marketplace model"),
        // An existing model may stay on a since-unpublished entry; a new one must pick a published one.
        Some(m) if !m.published && existing.map(|x| x.marketplace_model_id) != Some(mm_id) => {
            e.add("marketplace_model", "this marketplace model is not published")
        }
        Some(m) => {
            // Speech synthesis reports no tokens: a token rule would never count anything.
            let kind = ModelKind::parse(&m.kind);
            for (i, r) in input.rules.iter().enumerate() {
                if r.kind == RuleKind::Tokens && !kind.counts_tokens() {
                    e.add(
                        format!("rules.{i}.kind"),
                        format!("a {} model reports no tokens: limit requests or concurrent calls", kind.label().to_lowercase()),
                    );
                }
            }
        }
    }
    if cluster::Entity::find_by_id(cl_id).one(db).await?.is_none() {
        e.add("cluster", "no such cluster");
    }
    for (i, ep) in input.endpoints.iter().enumerate() {
        if let (Some(id), KeyChange::Keep) = (ep.id, &ep.api_key) {
            if !saved_endpoints.iter().any(|s| s.id == id) {
                e.add(format!("endpoints.{i}.api_key"), "this endpoint is not part of the model");
            }
        }
        if ep.id.is_some() && input.endpoints[..i].iter().any(|o| o.id == ep.id) {
            e.add(format!("endpoints.{i}.url"), "this saved endpoint is listed twice");
        }
    }
    if let Err(m) = check_fallbacks(db, existing.map(|m| m.id), cl_id, &input.fallbacks).await? {
        e.add("fallbacks", m);
    }
    let ws_ids: Vec<i64> = input.rules.iter().filter_map(|r| r.workspace_id).collect();
    let key_ids: Vec<i64> = input.rules.iter().filter_map(|r| r.api_key_id).collect();
    let workspaces: Vec<i64> =
        workspace::Entity::find().filter(workspace::Column::Id.is_in(ws_ids)).all(db).await?.into_iter().map(|w| w.id).collect();
    let keys: HashMap<i64, api_key::Model> =
        api_key::Entity::find().filter(api_key::Column::Id.is_in(key_ids)).all(db).await?.into_iter().map(|k| (k.id, k)).collect();
    for (i, r) in input.rules.iter().enumerate() {
        let Some(ws) = r.workspace_id else { continue };
        if !workspaces.contains(&ws) {
            e.add(format!("rules.{i}.workspace"), "no such workspace");
            continue;
        }
        if r.target == RuleTarget::ApiKey {
            match r.api_key_id.and_then(|id| keys.get(&id)) {
                None => e.add(format!("rules.{i}.api_key"), "no such API key"),
                Some(k) if k.workspace_id != ws => e.add(format!("rules.{i}.api_key"), "this API key belongs to another workspace"),
                Some(k) if k.revoked_at.is_some() => e.add(format!("rules.{i}.api_key"), "this API key is revoked"),
                Some(_) => {}
            }
        }
    }
    e.into_result()?;
    Ok((mm_id, cl_id))
}

/// Fallback models must exist, and following fallbacks from the model being saved (`id`; a new
/// one has none, so nothing leads back to it) must never lead back to it: a cycle would send a
/// call round the models when all are down.
async fn check_fallbacks(db: &impl ConnectionTrait, id: Option<i64>, cluster: i64, fallbacks: &[i64]) -> SResult<Result<(), String>> {
    if fallbacks.is_empty() {
        return Ok(Ok(()));
    }
    let rows = maas_model::Entity::find()
        .select_only()
        .column(maas_model::Column::Id)
        .column(maas_model::Column::ClusterId)
        .column(maas_model::Column::Fallbacks)
        .into_tuple::<(i64, i64, String)>()
        .all(db)
        .await?;
    // Served by the same gateways: a replica serves one cluster's models only.
    if let Some((f, _, _)) = rows.iter().find(|(m, c, _)| fallbacks.contains(m) && *c != cluster) {
        return Ok(Err(format!("MaaS model {f} is on another cluster: a fallback must be on this model's cluster")));
    }
    let graph: HashMap<i64, Vec<i64>> = rows.into_iter().map(|(id, _, f)| (id, maas_model::split_ids(&f))).collect();
    Ok(crate::validate::fallback_graph(id, fallbacks, &graph))
}

/// Replaces the endpoints and rules of `model_id` with the input's, inside `txn`.
async fn write_children(
    txn: &impl ConnectionTrait,
    secrets: &SecretBox,
    model_id: i64,
    input: &ModelInput,
    saved_endpoints: &[endpoint::Model],
) -> SResult<()> {
    // A saved endpoint the input edits keeps its row (its id: its usage, its health and their
    // history stay with it); the others go, and new rows are added.
    let kept: Vec<i64> = input.endpoints.iter().filter_map(|e| e.id).filter(|id| saved_endpoints.iter().any(|s| s.id == *id)).collect();
    endpoint::Entity::delete_many()
        .filter(endpoint::Column::MaasModelId.eq(model_id))
        .filter(endpoint::Column::Id.is_not_in(kept.clone()))
        .exec(txn)
        .await?;
    rule::Entity::delete_many().filter(rule::Column::MaasModelId.eq(model_id)).exec(txn).await?;
    for (i, ep) in input.endpoints.iter().enumerate() {
        let saved = ep.id.filter(|id| kept.contains(id));
        let key = match &ep.api_key {
            KeyChange::Set(k) => Some(secrets.encrypt(k.trim())),
            KeyChange::Clear => None,
            KeyChange::Keep => saved.and_then(|id| saved_endpoints.iter().find(|s| s.id == id)).and_then(|s| s.api_key_enc.clone()),
        };
        let row = endpoint::ActiveModel {
            maas_model_id: Set(model_id),
            position: Set(i as i32),
            model_id: Set(ep.model_id.trim().to_owned()),
            url: Set(ep.url.trim().trim_end_matches('/').to_owned()),
            api_key_enc: Set(key),
            weight: Set(validate::parse_int(&ep.weight, 0, 100).unwrap_or(0) as i32),
            skip_stream_usage: Set(ep.skip_stream_usage),
            max_concurrent: Set(validate::endpoint_cap(&ep.max_concurrent).ok().flatten()),
            native_apis: Set(app_apis(&ep.native_apis)),
            draining: Set(ep.draining),
            ..Default::default()
        };
        match saved {
            Some(id) => endpoint::ActiveModel { id: sea_orm::ActiveValue::Unchanged(id), ..row }.update(txn).await?,
            None => row.insert(txn).await?,
        };
    }
    for (i, r) in input.rules.iter().enumerate() {
        rule::ActiveModel {
            maas_model_id: Set(model_id),
            position: Set(i as i32),
            target: Set(r.target.as_str().to_owned()),
            workspace_id: Set(r.workspace_id.unwrap_or_default()),
            api_key_id: Set(if r.target == RuleTarget::ApiKey { r.api_key_id } else { None }),
            kind: Set(r.kind.as_str().to_owned()),
            limit_value: Set(validate::parse_int(&r.limit, 1, validate::max_limit(r.kind)).unwrap_or(1)),
            duration_secs: Set(if r.kind.windowed() {
                validate::parse_int(&r.duration, 1, validate::MAX_DURATION_SECS).unwrap_or(1)
            } else {
                0
            }),
            ..Default::default()
        }
        .insert(txn)
        .await?;
    }
    Ok(())
}

/// The default policy is stored as NULL: what a later default then applies to.
fn retry_column(r: &crate::types::RetryPolicy) -> Option<String> {
    (*r != crate::types::RetryPolicy::default()).then(|| serde_json::to_string(r).ok()).flatten()
}

const DUPLICATE: &str = "this marketplace model already has a MaaS model on this cluster";

/// Creates a MaaS model (disabled: an operator enables it once it looks right).
pub async fn create<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    secrets: &SecretBox,
    input: &ModelInput,
) -> SResult<(i64, i64)> {
    validate::model(input).into_result()?;
    if input.endpoints.iter().any(|e| e.id.is_some() && e.api_key == KeyChange::Keep) {
        return Err(AppError::field("endpoints", "a new model has no saved endpoints").into());
    }
    let (mm_id, cl_id) = check_references(db, input, None, &[]).await?;
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let t = now();
    let m = maas_model::ActiveModel {
        marketplace_model_id: Set(mm_id),
        cluster_id: Set(cl_id),
        policy: Set(maas_model::policy_columns(input.policy).0),
        routing_policy: Set(maas_model::policy_columns(input.policy).1),
        affinity_key: Set(input.affinity_key.as_str().to_owned()),
        fallbacks: Set(maas_model::join_ids(&input.fallbacks)),
        retry_policy: Set(retry_column(&input.retry)),
        health_check: Set(input.health_check.and_then(|h| serde_json::to_string(&h).ok())),
        reserve_output_tokens: Set(validate::reserve_output(&input.reserve_output).ok().flatten()),
        enabled: Set(false),
        revision: Set(rev),
        created_at: Set(t),
        updated_at: Set(t),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| on_unique(e, "cluster", DUPLICATE))?;
    write_children(&txn, secrets, m.id, input, &[]).await?;
    let after = snapshot(&get(&txn, m.id).await?, None, input);
    audit::record(&txn, actor, Entity::Model, m.id, Action::Create, None, Some(&after)).await?;
    txn.commit().await?;
    Ok((m.id, rev))
}

/// Replaces a saved model. `expected_revision` (the revision the caller loaded: the API's
/// `If-Match`, the edit form's hidden field) makes it refuse with 412 when someone else changed
/// the model meanwhile, so no one overwrites another's edit unseen.
pub async fn update<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    secrets: &SecretBox,
    id: i64,
    expected_revision: Option<i64>,
    input: &ModelInput,
) -> SResult<i64> {
    validate::model(input).into_result()?;
    let Some(existing) = maas_model::Entity::find_by_id(id).one(db).await? else {
        return Err(AppError::NotFound("MaaS model".into()).into());
    };
    let saved = endpoint::Entity::find().filter(endpoint::Column::MaasModelId.eq(id)).all(db).await?;
    let (mm_id, cl_id) = check_references(db, input, Some(&existing), &saved).await?;
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let before = get(&txn, id).await?;
    claim(&txn, id, expected_revision, rev).await?;
    let mut am: maas_model::ActiveModel = existing.into();
    am.marketplace_model_id = Set(mm_id);
    am.cluster_id = Set(cl_id);
    let (policy, routing_policy) = maas_model::policy_columns(input.policy);
    am.policy = Set(policy);
    am.routing_policy = Set(routing_policy);
    am.affinity_key = Set(input.affinity_key.as_str().to_owned());
    am.fallbacks = Set(maas_model::join_ids(&input.fallbacks));
    am.retry_policy = Set(retry_column(&input.retry));
    am.health_check = Set(input.health_check.and_then(|h| serde_json::to_string(&h).ok()));
    am.reserve_output_tokens = Set(validate::reserve_output(&input.reserve_output).ok().flatten());
    am.revision = Set(rev);
    am.updated_at = Set(now());
    am.update(&txn).await.map_err(|e| on_unique(e, "cluster", DUPLICATE))?;
    write_children(&txn, secrets, id, input, &saved).await?;
    let after = snapshot(&get(&txn, id).await?, Some(&before), input);
    audit::record(&txn, actor, Entity::Model, id, Action::Update, Some(&snapshot(&before, None, &ModelInput::default())), Some(&after))
        .await?;
    txn.commit().await?;
    Ok(rev)
}

/// Moves the model to `rev`, inside the change's transaction, if it is still at
/// `expected` (any revision when `None`): one conditional UPDATE, so two writers racing on the
/// same model cannot both pass the check.
pub(super) async fn claim(txn: &impl ConnectionTrait, id: i64, expected: Option<i64>, rev: i64) -> SResult<()> {
    let mut q = maas_model::Entity::update_many()
        .col_expr(maas_model::Column::Revision, Expr::value(rev))
        .col_expr(maas_model::Column::UpdatedAt, Expr::value(now()))
        .filter(maas_model::Column::Id.eq(id));
    if let Some(e) = expected {
        q = q.filter(maas_model::Column::Revision.eq(e));
    }
    if q.exec(txn).await?.rows_affected == 0 {
        return Err(match maas_model::Entity::find_by_id(id).one(txn).await? {
            None => AppError::NotFound("MaaS model".into()),
            Some(m) => AppError::PreconditionFailed(format!(
                "this model was changed by someone else meanwhile (now at revision {}, you loaded {}): reload it and apply your change again",
                m.revision,
                expected.unwrap_or_default()
            )),
        }
        .into());
    }
    Ok(())
}

/// The audit log's view of a model: its fields as the form shows them, each endpoint's
/// upstream key only as "set" / "none", and, for an update (`before` given), "replaced" or
/// "cleared" where `input` changed a saved key.
fn snapshot(m: &ModelDetail, before: Option<&ModelDetail>, input: &ModelInput) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = m
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            // The saved endpoint this row edited (the input names it; rows may be rewritten).
            let saved = input.endpoints.get(i).and_then(|x| x.id);
            let had = before.and_then(|b| b.endpoints.iter().find(|o| Some(o.id) == saved)).is_some_and(|o| o.has_key);
            let key = match input.endpoints.get(i).map(|x| &x.api_key) {
                Some(KeyChange::Set(_)) if had => serde_json::Value::from("replaced"),
                Some(KeyChange::Clear) if had => serde_json::Value::from("cleared"),
                _ => audit::secret_marker(e.has_key),
            };
            serde_json::json!({"model_id": e.model_id, "url": e.url, "weight": e.weight, "api_key": key,
                "skip_stream_usage": e.skip_stream_usage, "max_concurrent": e.max_concurrent,
                "native_apis": e.native_apis, "draining": e.draining})
        })
        .collect();
    serde_json::json!({
        "marketplace_model_id": m.marketplace_model_id, "cluster_id": m.cluster_id, "policy": m.policy.as_str(),
        "affinity_key": m.affinity_key.as_str(), "fallbacks": m.fallbacks, "retry": m.retry, "health_check": m.health_check,
        "enabled": m.enabled, "reserve_output": m.reserve_output, "endpoints": endpoints, "rules": m.rules,
    })
}

pub async fn set_enabled<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    id: i64,
    expected_revision: Option<i64>,
    enabled: bool,
) -> SResult<i64> {
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let was = maas_model::Entity::find_by_id(id).one(&txn).await?.map(|m| m.enabled);
    claim(&txn, id, expected_revision, rev).await?;
    maas_model::Entity::update_many()
        .col_expr(maas_model::Column::Enabled, Expr::value(enabled))
        .filter(maas_model::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    if was != Some(enabled) {
        let action = if enabled { Action::Enable } else { Action::Disable };
        audit::record(
            &txn,
            actor,
            Entity::Model,
            id,
            action,
            Some(&serde_json::json!({"enabled": was})),
            Some(&serde_json::json!({"enabled": enabled})),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(rev)
}

pub async fn delete<C: TransactionTrait + ConnectionTrait>(db: &C, actor: &Actor, id: i64, expected_revision: Option<i64>) -> SResult<i64> {
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    let before = match maas_model::Entity::find_by_id(id).one(&txn).await? {
        Some(_) => get(&txn, id).await?,
        None => return Err(AppError::NotFound("MaaS model".into()).into()),
    };
    claim(&txn, id, expected_revision, rev).await?;
    maas_model::Entity::delete_by_id(id).exec(&txn).await?;
    // No model keeps falling back to it (a form loading such a list could not save it again).
    let listing: Vec<(i64, String)> = maas_model::Entity::find()
        .select_only()
        .column(maas_model::Column::Id)
        .column(maas_model::Column::Fallbacks)
        .filter(maas_model::Column::Fallbacks.ne(""))
        .into_tuple()
        .all(&txn)
        .await?;
    for (other, list) in listing {
        let ids = maas_model::split_ids(&list);
        if ids.contains(&id) {
            let kept: Vec<i64> = ids.into_iter().filter(|f| *f != id).collect();
            maas_model::Entity::update_many()
                .col_expr(maas_model::Column::Fallbacks, Expr::value(maas_model::join_ids(&kept)))
                .col_expr(maas_model::Column::Revision, Expr::value(rev))
                .filter(maas_model::Column::Id.eq(other))
                .exec(&txn)
                .await?;
        }
    }
    audit::record(&txn, actor, Entity::Model, id, Action::Delete, Some(&snapshot(&before, None, &ModelInput::default())), None).await?;
    txn.commit().await?;
    Ok(rev)
}

/// Each endpoint of model `id` with its health and latest transitions (newest first); no such
/// model is a 404, as `get` answers.
pub async fn endpoint_health(db: &impl ConnectionTrait, id: i64) -> SResult<Vec<crate::types::EndpointHealth>> {
    use crate::ssr::entities::{endpoint_health, endpoint_health_event};
    if maas_model::Entity::find_by_id(id).select_only().column(maas_model::Column::Id).into_tuple::<i64>().one(db).await?.is_none() {
        return Err(AppError::NotFound("MaaS model".into()).into());
    }
    let eps =
        endpoint::Entity::find().filter(endpoint::Column::MaasModelId.eq(id)).order_by_asc(endpoint::Column::Position).all(db).await?;
    let ids: Vec<i64> = eps.iter().map(|e| e.id).collect();
    let mut rows = endpoint_health::of(db, ids.clone()).await?;
    let mut events: HashMap<i64, Vec<crate::types::HealthEvent>> = HashMap::new();
    for e in endpoint_health_event::Entity::find()
        .filter(endpoint_health_event::Column::EndpointId.is_in(ids))
        .order_by_desc(endpoint_health_event::Column::Id)
        .all(db)
        .await?
    {
        events.entry(e.endpoint_id).or_default().push(crate::types::HealthEvent { at: e.at, healthy: e.healthy, reason: e.reason });
    }
    Ok(eps
        .into_iter()
        .map(|e| {
            let row = rows.remove(&e.id);
            crate::types::EndpointHealth {
                endpoint_id: e.id,
                url: e.url,
                healthy: row.as_ref().filter(|r| r.checked_at > 0).map(|r| r.healthy),
                since: row.as_ref().map_or(0, |r| r.since),
                reason: row.map(|r| r.reason).unwrap_or_default(),
                events: events.remove(&e.id).unwrap_or_default(),
            }
        })
        .collect())
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> SResult<ModelDetail> {
    let Some(m) = maas_model::Entity::find_by_id(id).one(db).await? else {
        return Err(AppError::NotFound("MaaS model".into()).into());
    };
    let endpoints = endpoint::Entity::find()
        .filter(endpoint::Column::MaasModelId.eq(id))
        .order_by_asc(endpoint::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .map(|e| EndpointView {
            id: e.id,
            model_id: e.model_id,
            url: e.url,
            has_key: e.api_key_enc.is_some(),
            weight: e.weight,
            skip_stream_usage: e.skip_stream_usage,
            max_concurrent: e.max_concurrent,
            native_apis: crate::types::Api::split(&e.native_apis),
            draining: e.draining,
        })
        .collect();
    let rules = rule::Entity::find()
        .filter(rule::Column::MaasModelId.eq(id))
        .order_by_asc(rule::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .map(|r| RuleView {
            kind: RuleKind::parse(&r.kind).unwrap_or_default(),
            target: RuleTarget::parse(&r.target).unwrap_or_default(),
            workspace_id: r.workspace_id,
            api_key_id: r.api_key_id,
            limit: r.limit_value,
            duration: r.duration_secs,
        })
        .collect();
    Ok(ModelDetail {
        id: m.id,
        marketplace_model_id: m.marketplace_model_id,
        cluster_id: m.cluster_id,
        policy: m.policy(),
        affinity_key: AffinityKey::parse(&m.affinity_key),
        fallbacks: m.fallbacks(),
        retry: m.retry(),
        health_check: m.health_check(),
        enabled: m.enabled,
        endpoints,
        rules,
        reserve_output: m.reserve_output_tokens,
        revision: m.revision,
    })
}

#[derive(Debug, FromQueryResult)]
struct ListRow {
    id: i64,
    enabled: bool,
    policy: String,
    routing_policy: Option<String>,
    revision: i64,
    name: String,
    tags: String,
    published: bool,
    cluster: String,
    entry_address: String,
}

/// One page of the management list, filtered on the server (model name, tag, cluster or an
/// endpoint's Model ID), newest first. Two indexed queries per page, whatever the total.
pub async fn list(db: &impl ConnectionTrait, search: &str, page: u64, per_page: u64) -> SResult<ModelPage> {
    crate::validate::list_query(search, page).into_result()?;
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let mut q = maas_model::Entity::find()
        .select_only()
        .column(maas_model::Column::Id)
        .column(maas_model::Column::Enabled)
        .column(maas_model::Column::Policy)
        .column(maas_model::Column::RoutingPolicy)
        .column(maas_model::Column::Revision)
        .column_as(marketplace_model::Column::Name, "name")
        .column_as(marketplace_model::Column::Tags, "tags")
        .column_as(marketplace_model::Column::Published, "published")
        .column_as(cluster::Column::Name, "cluster")
        .column_as(cluster::Column::EntryAddress, "entry_address")
        .join(JoinType::InnerJoin, maas_model::Relation::Marketplace.def())
        .join(JoinType::InnerJoin, maas_model::Relation::Cluster.def());
    let s = search.trim();
    if !s.is_empty() {
        let pat = format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let like = |col: Expr| col.like(sea_orm::sea_query::LikeExpr::new(pat.clone()).escape('\\'));
        q = q.filter(
            Condition::any()
                .add(like(Expr::col((marketplace_model::Entity, marketplace_model::Column::Name))))
                .add(like(Expr::col((marketplace_model::Entity, marketplace_model::Column::Tags))))
                .add(like(Expr::col((cluster::Entity, cluster::Column::Name))))
                .add(
                    maas_model::Column::Id.in_subquery(
                        Query::select()
                            .column(endpoint::Column::MaasModelId)
                            .from(endpoint::Entity)
                            .and_where(like(Expr::col(endpoint::Column::ModelId)))
                            .to_owned(),
                    ),
                ),
        );
    }
    let total = q.clone().count(db).await?;
    let rows: Vec<ListRow> = q
        .order_by_desc(maas_model::Column::Id)
        .offset(page.saturating_mul(per_page))
        .limit(per_page)
        .into_model::<ListRow>()
        .all(db)
        .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut model_ids: HashMap<i64, Vec<String>> = HashMap::new();
    for e in
        endpoint::Entity::find().filter(endpoint::Column::MaasModelId.is_in(ids)).order_by_asc(endpoint::Column::Position).all(db).await?
    {
        let v = model_ids.entry(e.maas_model_id).or_default();
        if !v.contains(&e.model_id) {
            v.push(e.model_id);
        }
    }
    let gateways = gateway_status::Entity::find().all(db).await?;
    let mut usage = super::usage::models_last_day(db, &rows.iter().map(|r| r.id).collect::<Vec<_>>()).await?;
    let t = now();
    let rows = rows
        .into_iter()
        .map(|r| ModelRow {
            usage_24h: usage.remove(&r.id).unwrap_or_default(),
            gateway: gateway_state(&gateways, &r.cluster, r.revision, t),
            cooling: cooling(&gateways, &r.cluster, r.id, t),
            gone: gone_gateways(&gateways, &r.cluster, t),
            id: r.id,
            model_ids: model_ids.remove(&r.id).unwrap_or_default(),
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            enabled: r.enabled,
            published: r.published,
            access_path: access_path(&r.entry_address),
            cluster: r.cluster,
            policy: maas_model::policy_of(&r.policy, r.routing_policy.as_deref()),
            name: r.name,
        })
        .collect();
    Ok(ModelPage { rows, currency: super::currency::currency(db).await?, total, page, per_page })
}

/// Deletes the status rows of gateways that have not reported for GATEWAY_FORGET_SECS.
pub async fn forget_gone_gateways<C: ConnectionTrait>(db: &C, now: i64) -> SResult<u64> {
    let gone =
        gateway_status::Entity::delete_many().filter(gateway_status::Column::HeartbeatAt.lt(now - GATEWAY_FORGET_SECS)).exec(db).await?;
    Ok(gone.rows_affected)
}

/// Whether gateway `g` serves `cluster`: the clusters it reported (`serves`), or a replica's
/// own cluster. `maas serve` reports only the clusters whose entry address is its own, so it
/// never makes a cluster whose replicas are all gone look served.
fn serves(g: &gateway_status::Model, cluster: &str) -> bool {
    match &g.serves {
        Some(list) => serde_json::from_str::<Vec<String>>(list).is_ok_and(|l| l.iter().any(|c| c == cluster)),
        None => g.cluster.as_deref() == Some(cluster),
    }
}

/// Gateways that serve `cluster` and reported recently enough to count.
fn serving<'a>(gateways: &'a [gateway_status::Model], cluster: &'a str, now: i64) -> impl Iterator<Item = &'a gateway_status::Model> {
    gateways.iter().filter(move |g| serves(g, cluster) && now - g.heartbeat_at <= GATEWAY_STALE_SECS)
}

/// "45 s", "3 min", "2 h", "4 d".
fn ago(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// Gateways of `cluster` that stopped reporting (until their row is forgotten): who, and when
/// they were last seen.
pub fn gone_gateways(gateways: &[gateway_status::Model], cluster: &str, now: i64) -> Vec<String> {
    let mut gone: Vec<&gateway_status::Model> =
        gateways.iter().filter(|g| serves(g, cluster) && now - g.heartbeat_at > GATEWAY_STALE_SECS).collect();
    gone.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
    gone.into_iter().map(|g| format!("{} gone, last seen {} ago", g.gateway_id, ago(now - g.heartbeat_at))).collect()
}

/// Whether the live gateways serving `cluster` have applied `revision`, counted (`Synced 2/2`,
/// `Pending 1/2: gw-b at revision 41`). Honest by construction: with no live gateway serving
/// the cluster, a model is Pending, never Synced.
pub fn gateway_state(gateways: &[gateway_status::Model], cluster: &str, revision: i64, now: i64) -> GatewayState {
    let mut live: Vec<&gateway_status::Model> = serving(gateways, cluster, now).collect();
    live.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
    if live.is_empty() {
        return GatewayState::Pending { revision, reason: format!("no live gateway serves cluster {cluster}") };
    }
    if let Some(err) = live.iter().find_map(|g| g.error.clone()) {
        return GatewayState::Error(err);
    }
    let behind: Vec<String> = live
        .iter()
        .filter(|g| g.applied_revision < revision)
        .map(|g| format!("{} at revision {}", g.gateway_id, g.applied_revision))
        .collect();
    let n = live.len() as u32;
    if behind.is_empty() {
        GatewayState::Synced { replicas: n }
    } else {
        GatewayState::Pending { revision, reason: format!("{}/{n}: {}, model at {revision}", n - behind.len() as u32, behind.join(", ")) }
    }
}

/// Whether a cluster's entry address is one of `own` (a gateway's own origins: `scheme://host:port`,
/// host `*` for any host on that port, as a listener on 0.0.0.0 is).
pub fn entry_is_own(entry: &str, own: &[String]) -> bool {
    fn origin(u: &str) -> Option<(String, String, u16)> {
        let (scheme, rest) = u.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next()?;
        let authority = authority.rsplit('@').next()?;
        let default = if scheme == "https" { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (
                h,
                match after.strip_prefix(':') {
                    Some(p) => p.parse().ok()?,
                    None => default,
                },
            )
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (authority, default),
            }
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "localhost" { "127.0.0.1".to_owned() } else { host };
        Some((scheme, host, port))
    }
    let Some((scheme, host, port)) = origin(entry) else { return false };
    own.iter().filter_map(|o| origin(o)).any(|(s, h, p)| s == scheme && p == port && (h == host || h == "*"))
}

/// Endpoints of model `id` that a live gateway of `cluster` reports as cooling down.
fn cooling(gateways: &[gateway_status::Model], cluster: &str, id: i64, now: i64) -> Vec<String> {
    let mut out: Vec<String> = serving(gateways, cluster, now)
        .filter_map(|g| g.detail.as_deref())
        .filter_map(|d| serde_json::from_str::<HashMap<String, Vec<String>>>(d).ok())
        .flat_map(|mut m| m.remove(&id.to_string()).unwrap_or_default())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The marketplace user view: published models that have an enabled MaaS model, one entry per
/// cluster that serves them.
pub async fn offerings(db: &impl ConnectionTrait) -> SResult<Vec<Offering>> {
    let rows: Vec<(maas_model::Model, Option<marketplace_model::Model>)> = maas_model::Entity::find()
        .find_also_related(marketplace_model::Entity)
        .filter(maas_model::Column::Enabled.eq(true))
        .filter(marketplace_model::Column::Published.eq(true))
        .all(db)
        .await?;
    let clusters: HashMap<i64, cluster::Model> = cluster::Entity::find().all(db).await?.into_iter().map(|c| (c.id, c)).collect();
    // What each model's endpoints speak, for the APIs it is served over.
    let mut speaks: HashMap<i64, Vec<Api>> = HashMap::new();
    let ids: Vec<i64> = rows.iter().map(|(m, _)| m.id).collect();
    for chunk in ids.chunks(1000) {
        let eps = endpoint::Entity::find()
            .select_only()
            .column(endpoint::Column::MaasModelId)
            .column(endpoint::Column::NativeApis)
            .filter(endpoint::Column::MaasModelId.is_in(chunk.iter().copied()))
            .into_tuple::<(i64, String)>()
            .all(db)
            .await?;
        for (model, apis) in eps {
            speaks.entry(model).or_default().extend(Api::split(&apis));
        }
    }
    let mut out: Vec<Offering> = rows
        .into_iter()
        .filter_map(|(m, mm)| {
            let mm = mm?;
            let c = clusters.get(&m.cluster_id)?;
            Some(Offering {
                name: mm.name,
                provider: mm.provider,
                description: mm.description,
                tags: serde_json::from_str(&mm.tags).unwrap_or_default(),
                base_url: access_path(&c.entry_address),
                apis: served_apis(speaks.get(&m.id).map(Vec::as_slice).unwrap_or_default()),
                snippets: Vec::new(),
                kind: ModelKind::parse(&mm.kind),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.base_url.cmp(&b.base_url)));
    for o in &mut out {
        o.snippets = crate::ssr::snippets::snippets(o).into_iter().map(|(lang, code)| (lang.to_owned(), code)).collect();
    }
    Ok(out)
}

/// The APIs a model whose endpoints speak `speaks` is served over: each API an endpoint speaks,
/// and Messages and Responses over chat completions too (translated).
pub fn served_apis(speaks: &[Api]) -> Vec<Api> {
    let chat = speaks.contains(&Api::Chat);
    Api::ALL.into_iter().filter(|a| speaks.contains(a) || (chat && *a != Api::Chat)).collect()
}

/// The stored form of an endpoint's APIs (none given: chat completions).
fn app_apis(apis: &[crate::types::Api]) -> String {
    if apis.is_empty() {
        crate::types::Api::Chat.as_str().to_owned()
    } else {
        crate::types::Api::join(apis)
    }
}
