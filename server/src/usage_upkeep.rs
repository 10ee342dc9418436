//! The control plane's care of the usage tables: every few minutes, complete hours of minute
//! rows are compacted into hourly rows, then rows past their retention are deleted (and the
//! admin API's access log with the hourly rows' retention). Run by
//! `maas serve` only (replicas just append minute rows); safe with several control planes on
//! one database (a compaction is one repeatable-read transaction; a concurrent one fails and
//! its rows go with the next run).
use app::ssr::usage_rollups;
use sea_orm::DatabaseConnection;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Minute rows (minute-resolution charts: the last hour and day).
    pub minutes: Duration,
    /// Hourly rows (everything longer, and the billing export).
    pub hours: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { minutes: Duration::from_secs(8 * 86_400), hours: Duration::from_secs(400 * 86_400) }
    }
}

/// One pass: compacts every complete hour, then applies the retention. Returns (hourly rows
/// written, minute rows deleted, hourly rows deleted).
pub async fn run_once(db: &DatabaseConnection, retention: Retention, now_minute: i64) -> Result<(u64, u64, u64), sea_orm::DbErr> {
    let written = usage_rollups::compact(db, now_minute).await?;
    // Minute rows serve the 24-hour charts: never fewer than two days of them.
    let keep_minutes = (retention.minutes.as_secs() / 60).max(2 * 1440) as i64;
    let keep_hours = (retention.hours.as_secs() / 3600).max(1) as i64;
    let (m, h) = usage_rollups::retain(db, now_minute, keep_minutes, keep_hours).await?;
    Ok((written, m, h))
}

pub fn spawn(db: DatabaseConnection, retention: Retention, every: Duration) {
    tokio::spawn(async move {
        loop {
            let now_minute = (app::ssr::now() / 60) as i64;
            match run_once(&db, retention, now_minute).await {
                Ok((0, 0, 0)) => {}
                Ok((compacted, minutes, hours)) => {
                    tracing::info!(compacted, minutes, hours, "usage compacted into hourly rows; old rows deleted")
                }
                // Another control plane compacting at the same moment, or the database away:
                // nothing is lost, the rows wait for the next pass.
                Err(e) => tracing::warn!(error = %e, "usage compaction failed; retrying at the next pass"),
            }
            // The admin API's access log is kept as long as hourly usage; the audit log always.
            let before = app::ssr::now() - retention.hours.as_secs() as i64;
            if let Err(e) = app::ssr::services::audit_log::prune_access(&db, before).await {
                tracing::warn!(error = %e.into_app(), "access log pruning failed; retrying at the next pass");
            }
            tokio::time::sleep(every).await;
        }
    });
}
