//! Usage rollups the database can add up: the latency and time-to-first-byte histograms as one
//! integer column per bucket (`lat_b0..lat_b13`, `ttfb_b0..ttfb_b13`) instead of a text list,
//! so percentiles over any range and the hourly compaction are plain `SUM`s; a `compacted` flag
//! on minute rows; and `usage_hours`, the hourly rows the minute rows are compacted into (kept
//! far longer); `gateway_status.serves` and `endpoints.skip_stream_usage`. Every call is counted exactly once by "hourly rows + minute rows not compacted".
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Buckets per histogram: server/src/gateway/meter.rs BUCKETS_MS and one above the last.
const BUCKETS: usize = 14;

#[derive(DeriveIden)]
enum UsageMinutes {
    Table,
    Id,
    Minute,
    ApiKeyId,
    LatencyHist,
    TtfbHist,
    Compacted,
}

/// Which clusters a gateway serves (JSON list of names): a replica its one, `maas serve` those
/// whose entry address is its own; the status column counts a gateway only for those.
#[derive(DeriveIden)]
enum GatewayStatus {
    Table,
    Serves,
}

/// An operator's switch for upstreams that refuse `stream_options`: the gateway then does not
/// ask them for a stream's usage chunk (their streams' usage is unknown).
#[derive(DeriveIden)]
enum Endpoints {
    Table,
    SkipStreamUsage,
}

#[derive(DeriveIden)]
enum UsageHours {
    Table,
    Id,
    Hour,
    MaasModelId,
    Model,
    EndpointId,
    WorkspaceId,
    ApiKeyId,
    Operation,
    Outcome,
    Status,
    Requests,
    Failovers,
    UsageKnown,
    InputTokens,
    OutputTokens,
    TotalTokens,
    LatencyMsSum,
    TtfbMsSum,
}

fn bucket_columns() -> Vec<Alias> {
    (0..BUCKETS).map(|i| Alias::new(format!("lat_b{i}"))).chain((0..BUCKETS).map(|i| Alias::new(format!("ttfb_b{i}")))).collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for c in bucket_columns() {
            m.alter_table(
                Table::alter().table(UsageMinutes::Table).add_column(ColumnDef::new(c).big_integer().not_null().default(0)).to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(UsageMinutes::Table)
                .add_column(ColumnDef::new(UsageMinutes::Compacted).boolean().not_null().default(false))
                .to_owned(),
        )
        .await?;
        // Rows written with the text histograms: their counts into the new columns.
        let db = m.get_connection();
        let backend = db.get_database_backend();
        let rows = db.query_all_raw(Statement::from_string(backend, "SELECT id, latency_hist, ttfb_hist FROM usage_minutes")).await?;
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let mut set = Vec::new();
            for (prefix, col) in [("lat_b", "latency_hist"), ("ttfb_b", "ttfb_hist")] {
                let hist: String = row.try_get("", col)?;
                for (i, n) in hist.split(',').take(BUCKETS).enumerate() {
                    let n: i64 = n.trim().parse().unwrap_or(0);
                    set.push(format!("{prefix}{i} = {n}"));
                }
            }
            if !set.is_empty() {
                db.execute_raw(Statement::from_string(backend, format!("UPDATE usage_minutes SET {} WHERE id = {id}", set.join(", "))))
                    .await?;
            }
        }
        for c in [UsageMinutes::LatencyHist, UsageMinutes::TtfbHist] {
            m.alter_table(Table::alter().table(UsageMinutes::Table).drop_column(c).to_owned()).await?;
        }
        // The compactor's and the retention's scans.
        m.create_index(
            Index::create()
                .name("idx_usage_compacted_minute")
                .table(UsageMinutes::Table)
                .col(UsageMinutes::Compacted)
                .col(UsageMinutes::Minute)
                .to_owned(),
        )
        .await?;
        // A key's usage (the key filter, a user's keys page).
        m.create_index(
            Index::create()
                .name("idx_usage_key_minute")
                .table(UsageMinutes::Table)
                .col(UsageMinutes::ApiKeyId)
                .col(UsageMinutes::Minute)
                .to_owned(),
        )
        .await?;
        let _ = UsageMinutes::Id;

        m.alter_table(
            Table::alter().table(GatewayStatus::Table).add_column(ColumnDef::new(GatewayStatus::Serves).text().null()).to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Endpoints::Table)
                .add_column(ColumnDef::new(Endpoints::SkipStreamUsage).boolean().not_null().default(false))
                .to_owned(),
        )
        .await?;

        let int = |c: UsageHours| ColumnDef::new(c).big_integer().not_null().default(0).to_owned();
        let mut t = Table::create()
            .table(UsageHours::Table)
            .col(ColumnDef::new(UsageHours::Id).big_integer().not_null().auto_increment().primary_key())
            // Unix hours (seconds / 3600), UTC.
            .col(ColumnDef::new(UsageHours::Hour).big_integer().not_null())
            .col(ColumnDef::new(UsageHours::MaasModelId).big_integer().null())
            .col(ColumnDef::new(UsageHours::Model).string_len(128).not_null())
            .col(ColumnDef::new(UsageHours::EndpointId).big_integer().null())
            .col(ColumnDef::new(UsageHours::WorkspaceId).big_integer().null())
            .col(ColumnDef::new(UsageHours::ApiKeyId).big_integer().null())
            .col(ColumnDef::new(UsageHours::Operation).string_len(16).not_null())
            .col(ColumnDef::new(UsageHours::Outcome).string_len(24).not_null())
            .col(ColumnDef::new(UsageHours::Status).integer().not_null())
            .col(int(UsageHours::Requests))
            .col(int(UsageHours::Failovers))
            .col(int(UsageHours::UsageKnown))
            .col(int(UsageHours::InputTokens))
            .col(int(UsageHours::OutputTokens))
            .col(int(UsageHours::TotalTokens))
            .col(int(UsageHours::LatencyMsSum))
            .col(int(UsageHours::TtfbMsSum))
            .to_owned();
        for c in bucket_columns() {
            t.col(ColumnDef::new(c).big_integer().not_null().default(0));
        }
        m.create_table(t).await?;
        for (name, cols) in [
            ("idx_usage_hours_hour", vec![UsageHours::Hour]),
            ("idx_usage_hours_model_hour", vec![UsageHours::MaasModelId, UsageHours::Hour]),
            ("idx_usage_hours_workspace_hour", vec![UsageHours::WorkspaceId, UsageHours::Hour]),
            ("idx_usage_hours_key_hour", vec![UsageHours::ApiKeyId, UsageHours::Hour]),
        ] {
            let mut idx = Index::create().name(name).table(UsageHours::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            m.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UsageHours::Table).to_owned()).await?;
        m.alter_table(Table::alter().table(GatewayStatus::Table).drop_column(GatewayStatus::Serves).to_owned()).await?;
        m.alter_table(Table::alter().table(Endpoints::Table).drop_column(Endpoints::SkipStreamUsage).to_owned()).await?;
        m.drop_index(Index::drop().name("idx_usage_compacted_minute").table(UsageMinutes::Table).to_owned()).await?;
        m.drop_index(Index::drop().name("idx_usage_key_minute").table(UsageMinutes::Table).to_owned()).await?;
        for c in [UsageMinutes::LatencyHist, UsageMinutes::TtfbHist] {
            m.alter_table(
                Table::alter().table(UsageMinutes::Table).add_column(ColumnDef::new(c).string_len(256).not_null().default("")).to_owned(),
            )
            .await?;
        }
        m.alter_table(Table::alter().table(UsageMinutes::Table).drop_column(UsageMinutes::Compacted).to_owned()).await?;
        for c in bucket_columns() {
            m.alter_table(Table::alter().table(UsageMinutes::Table).drop_column(c).to_owned()).await?;
        }
        Ok(())
    }
}
