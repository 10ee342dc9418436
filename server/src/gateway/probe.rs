//! Active health checks: the endpoints of models with a health check are probed every interval,
//! and an endpoint that fails `unhealthy_threshold` probes in a row leaves the rotation until it
//! passes `healthy_threshold` in a row.
//!
//! One gateway of a cluster probes each endpoint, however many serve it: a probe is claimed in
//! the database first (`endpoint_health`: a conditional UPDATE, so two replicas cannot both
//! claim one), and every replica reads the verdicts from there each round. The prober that
//! claimed an endpoint keeps it while it lives (its claim is renewed at each probe); if it
//! dies, another takes over once its lease (two intervals) has run out. A probe is no user's
//! call: it is never metered, limited or counted in `/metrics`' calls.
//!
//! An endpoint starts healthy (a model edit does not take its endpoints out of rotation until
//! they are probed), and its health row, with its transitions, stays with it across edits.
use super::op::Op;
use super::snapshot::{compose_base, Endpoint};
use super::upstream::{Payload, Target, Upstream};
use super::Gateway;
use app::ssr::entities::{endpoint_health, endpoint_health_event};
use app::types::{HealthCheck, ModelKind, ProbeKind};
use http_body_util::BodyExt;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use std::sync::Arc;
use std::time::Duration;

/// How often the prober looks for due probes (the finest interval is a second).
const TICK: Duration = Duration::from_millis(250);
/// Transitions kept per endpoint.
const EVENTS_KEPT: u64 = 20;

/// Runs the health checks of the models `gw` serves, as gateway `me`, until the process ends.
pub fn spawn_prober(gw: Arc<Gateway>, db: DatabaseConnection, me: String) {
    let me: String = me.chars().take(128).collect();
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(TICK).await;
            match round(&gw, &db, &me).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("health checks read and write their database again");
                }
                Ok(()) => {}
                // Said once: each replica keeps routing on the verdicts it last read.
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "health checks cannot reach their database; keeping the last verdicts");
                }
                Err(_) => {}
            }
        }
    });
}

/// An endpoint under a health check, as this round sees it.
struct Checked<'s> {
    model: &'s str,
    kind: ModelKind,
    ep: &'s Endpoint,
    check: HealthCheck,
}

/// One round: claims and runs the probes that are due, records their verdicts, and applies
/// every checked endpoint's verdict to this gateway's routing.
async fn round(gw: &Gateway, db: &DatabaseConnection, me: &str) -> Result<(), DbErr> {
    let snap = gw.snapshot();
    let mut checked = Vec::new();
    for route in snap.models.values() {
        match route.health_check {
            // Checks turned off: the endpoints are back in rotation.
            None => route.endpoints.iter().for_each(|e| e.health.set_probed_out(false)),
            Some(check) => checked.extend(route.endpoints.iter().map(|ep| Checked { model: &route.name, kind: route.kind, ep, check })),
        }
    }
    if checked.is_empty() {
        return Ok(());
    }
    let now = gw.clock.unix_ms();
    let ids: Vec<i64> = checked.iter().map(|c| c.ep.id).collect();
    let mut rows = endpoint_health::of(db, ids.clone()).await?;
    let new: Vec<endpoint_health::ActiveModel> = ids
        .iter()
        .filter(|id| !rows.contains_key(id))
        .map(|&id| endpoint_health::ActiveModel {
            endpoint_id: Set(id),
            healthy: Set(true),
            streak: Set(0),
            since: Set(now / 1000),
            reason: Set(String::new()),
            checked_at: Set(0),
            prober: Set(None),
            lease_until: Set(0),
        })
        .collect();
    if !new.is_empty() {
        // Another replica may add the same rows at the same time: theirs stand.
        endpoint_health::Entity::insert_many(new)
            .on_conflict(OnConflict::column(endpoint_health::Column::EndpointId).do_nothing().to_owned())
            .try_insert()
            .exec(db)
            .await?;
        rows.extend(endpoint_health::of(db, ids).await?);
    }
    let mut due = Vec::new();
    for c in &checked {
        let Some(row) = rows.get(&c.ep.id) else { continue };
        let interval = i64::from(c.check.interval_secs) * 1000;
        if row.checked_at + interval <= now
            && (row.lease_until <= now || row.prober.as_deref() == Some(me))
            && claim(db, c.ep.id, me, now, interval).await?
        {
            due.push(c);
        }
    }
    let verdicts = futures_util::future::join_all(due.iter().map(|c| probe(&gw.forwarder.upstream, c))).await;
    for (c, verdict) in due.into_iter().zip(verdicts) {
        if let Some(row) = rows.get_mut(&c.ep.id) {
            record(db, row, c, verdict, gw.clock.unix_ms()).await?;
        }
    }
    for c in &checked {
        if let Some(row) = rows.get(&c.ep.id) {
            c.ep.health.set_probed_out(!row.healthy);
        }
    }
    Ok(())
}

/// Claims the probe of `endpoint` for gateway `me`: only if it is due, and no other gateway
/// holds it (or its lease ran out). One conditional UPDATE: of two replicas claiming at once,
/// one wins.
async fn claim(db: &DatabaseConnection, endpoint: i64, me: &str, now: i64, interval: i64) -> Result<bool, DbErr> {
    let r = endpoint_health::Entity::update_many()
        .col_expr(endpoint_health::Column::Prober, Expr::value(me))
        .col_expr(endpoint_health::Column::LeaseUntil, Expr::value(now + 2 * interval))
        .filter(endpoint_health::Column::EndpointId.eq(endpoint))
        .filter(endpoint_health::Column::CheckedAt.lte(now - interval))
        .filter(Condition::any().add(endpoint_health::Column::LeaseUntil.lte(now)).add(endpoint_health::Column::Prober.eq(me)))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Writes a probe's verdict on `row`: its run of like results, and a transition (with its
/// event) when the run reaches the threshold.
async fn record(
    db: &DatabaseConnection,
    row: &mut endpoint_health::Model,
    c: &Checked<'_>,
    verdict: Result<(), String>,
    now: i64,
) -> Result<(), DbErr> {
    let passed = verdict.is_ok();
    row.streak = if passed { row.streak.max(0) + 1 } else { row.streak.min(0) - 1 };
    let flips = match row.healthy {
        true => !passed && row.streak.unsigned_abs() >= c.check.unhealthy_threshold,
        false => passed && row.streak.unsigned_abs() >= c.check.healthy_threshold,
    };
    row.reason = verdict.err().unwrap_or_default().chars().take(500).collect();
    row.checked_at = now;
    if flips {
        row.healthy = !row.healthy;
        row.since = now / 1000;
        let why = if row.healthy { format!("passed {} probes in a row", row.streak) } else { row.reason.clone() };
        match row.healthy {
            true => tracing::info!(model = c.model, endpoint = c.ep.id, "endpoint healthy again: back in rotation"),
            false => {
                tracing::warn!(model = c.model, endpoint = c.ep.id, reason = %why, "endpoint failed its health checks: out of rotation")
            }
        }
        endpoint_health_event::Entity::insert(endpoint_health_event::ActiveModel {
            endpoint_id: Set(c.ep.id),
            at: Set(now / 1000),
            healthy: Set(row.healthy),
            reason: Set(why),
            ..Default::default()
        })
        .exec(db)
        .await?;
        let oldest_kept = endpoint_health_event::Entity::find()
            .select_only()
            .column(endpoint_health_event::Column::Id)
            .filter(endpoint_health_event::Column::EndpointId.eq(c.ep.id))
            .order_by_desc(endpoint_health_event::Column::Id)
            .offset(EVENTS_KEPT - 1)
            .limit(1)
            .into_tuple::<i64>()
            .one(db)
            .await?;
        if let Some(id) = oldest_kept {
            endpoint_health_event::Entity::delete_many()
                .filter(endpoint_health_event::Column::EndpointId.eq(c.ep.id))
                .filter(endpoint_health_event::Column::Id.lt(id))
                .exec(db)
                .await?;
        }
    }
    endpoint_health::Entity::update_many()
        .col_expr(endpoint_health::Column::Healthy, Expr::value(row.healthy))
        .col_expr(endpoint_health::Column::Streak, Expr::value(row.streak))
        .col_expr(endpoint_health::Column::Since, Expr::value(row.since))
        .col_expr(endpoint_health::Column::Reason, Expr::value(row.reason.clone()))
        .col_expr(endpoint_health::Column::CheckedAt, Expr::value(row.checked_at))
        .filter(endpoint_health::Column::EndpointId.eq(c.ep.id))
        .exec(db)
        .await?;
    Ok(())
}

/// Probes one endpoint: `Ok` for a 2xx answer, read whole, within the timeout; else why not.
async fn probe(up: &Upstream, c: &Checked<'_>) -> Result<(), String> {
    let ep = c.ep;
    let timeout = Duration::from_secs(u64::from(c.check.timeout_secs));
    let ask = async {
        let parse = |url: String| Target::parse(&url).ok_or_else(|| format!("{url} does not parse"));
        let sent = match c.check.probe {
            ProbeKind::Models => up.get(&parse(format!("{}/models", compose_base(&ep.url)))?, ep.auth.as_ref()).await,
            ProbeKind::Health => up.get(&parse(format!("{}/health", origin(&ep.url)))?, ep.auth.as_ref()).await,
            ProbeKind::Completion => {
                // The smallest call the model's kind serves: one token of chat, one embedding.
                let (op, body) = match c.kind {
                    ModelKind::Embedding => (Op::Embeddings, serde_json::json!({"model": ep.model_id, "input": "ping"})),
                    _ => (
                        Op::Chat,
                        serde_json::json!({"model": ep.model_id, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}),
                    ),
                };
                let target = ep.target(op).ok_or("the endpoint's URL does not parse")?;
                up.post(target, ep.auth.as_ref(), None, &[], Payload::Json(body.to_string().into())).await
            }
        };
        let resp = sent.map_err(|e| format!("unreachable: {e}"))?;
        let status = resp.status();
        // Read whole: the connection goes back to the pool.
        resp.into_body().collect().await.map_err(|e| format!("answer broke off: {e}"))?;
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("answered HTTP {}", status.as_u16())),
        }
    };
    tokio::time::timeout(timeout, ask).await.unwrap_or_else(|_| Err(format!("no answer within {} s", c.check.timeout_secs)))
}

/// `https://host:port/any/path` → `https://host:port`: where vLLM, SGLang and TGI serve `/health`.
fn origin(url: &str) -> String {
    let url = url.trim_end_matches('/');
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_is_asked_at_the_origin() {
        assert_eq!(super::origin("http://10.0.0.5:8000/v1"), "http://10.0.0.5:8000");
        assert_eq!(super::origin("https://api.example.com"), "https://api.example.com");
        assert_eq!(super::origin("http://h:1/openai/v1/"), "http://h:1");
    }
}
