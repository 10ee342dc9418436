//! Budget alerts on the gateway's side (see `app::ssr::services::alerts`): after each usage
//! flush, the thresholds its quotas' money budgets crossed are recorded (once per threshold
//! and period, whichever gateway sees it first); a sender task delivers due alerts to the
//! operator's webhook, signed and retried with backoff. Neither runs on a call's path.
use super::admission::quota::QuotaCheck;
use super::upstream::{Payload, Target};
use super::Gateway;
use app::ssr::services::alerts::{self, Crossing, Webhook};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sea_orm::DatabaseConnection;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// How often due deliveries are looked for.
const SEND_EVERY: Duration = Duration::from_secs(1);
/// How long one delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Records the thresholds `quotas` crossed at `now_secs` (after a flush, so what they spent
/// includes every gateway's flushed calls).
pub async fn record_crossings(db: &DatabaseConnection, quotas: &[QuotaCheck], now_secs: i64) -> Result<(), sea_orm::DbErr> {
    for q in quotas {
        let Some(money) = &q.spend else { continue };
        let crossed = q.crossed(now_secs);
        if crossed.is_empty() {
            continue;
        }
        let spent = q.spent(now_secs);
        for percent in crossed {
            let c = Crossing {
                target: q.key.target,
                subject_id: q.key.subject_id,
                period: q.key.period,
                period_start: spent.period_start,
                percent,
                spent_nanos: spent.nanos.min(i64::MAX as u64) as i64,
                budget_nanos: money.nanos.min(i64::MAX as u64) as i64,
            };
            alerts::record(db, &c).await.map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
            q.alerted(now_secs, percent);
        }
    }
    Ok(())
}

/// `x-maas-signature`'s value for `body` sent at Unix second `timestamp`: `sha256=` and the
/// hex HMAC-SHA256, keyed by the webhook's secret, of `"{timestamp}.{body}"` (the timestamp is
/// signed so a captured delivery cannot be replayed later as new).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Delivers due alerts every second, as long as the process runs.
pub fn spawn_sender(gw: Arc<Gateway>, db: DatabaseConnection) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SEND_EVERY).await;
            if let Err(e) = send_due(&gw, &db).await {
                tracing::warn!(error = %e, "could not deliver budget alerts; retrying");
            }
        }
    });
}

/// Sends each due alert this gateway claims; an alert the webhook does not take (no answer, or
/// not 2xx) is tried again after its backoff.
pub async fn send_due(gw: &Gateway, db: &DatabaseConnection) -> Result<usize, app::ssr::ServiceError> {
    let snap = gw.snapshot();
    let Some(hook) = snap.alert_webhook.clone() else { return Ok(0) };
    let now = gw.clock.unix_secs();
    let due = alerts::due(db, now).await?;
    if due.is_empty() {
        return Ok(0);
    }
    // The installation's, not a quota's: the budget that raised an alert may be gone since.
    let currency = app::ssr::services::currency::currency(db).await?;
    let mut sent = 0;
    for alert in due {
        if !alerts::claim(db, &alert, now).await? {
            continue; // another gateway sends this attempt
        }
        let body = alerts::payload(&alert, &currency).to_string();
        if deliver(gw, &hook, alert.id, now, body).await {
            alerts::delivered(db, alert.id).await?;
            sent += 1;
        }
    }
    Ok(sent)
}

async fn deliver(gw: &Gateway, hook: &Webhook, id: i64, now: i64, body: String) -> bool {
    let Some(target) = Target::parse(&hook.url) else { return false };
    let header = |v: String| HeaderValue::try_from(v).ok();
    let (Some(sig), Some(ts), Some(idv)) =
        (header(signature(&hook.secret, now, body.as_bytes())), header(now.to_string()), header(id.to_string()))
    else {
        return false;
    };
    let extra = [
        (HeaderName::from_static("x-maas-signature"), sig),
        (HeaderName::from_static("x-maas-timestamp"), ts),
        (HeaderName::from_static("x-maas-alert-id"), idv),
    ];
    let sent = gw.forwarder.upstream.post(&target, None, None, &extra, Payload::Json(body.into()));
    match tokio::time::timeout(SEND_TIMEOUT, sent).await {
        Ok(Ok(resp)) if resp.status().is_success() => true,
        Ok(Ok(resp)) => {
            tracing::warn!(alert = id, status = resp.status().as_u16(), "the alert webhook refused a budget alert; it is retried");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(alert = id, error = %e, "could not reach the alert webhook; the alert is retried");
            false
        }
        Err(_) => {
            tracing::warn!(alert = id, "the alert webhook did not answer in time; the alert is retried");
            false
        }
    }
}
