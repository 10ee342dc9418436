//! Usage rollups: one row per (minute, model, endpoint, workspace, key, operation, outcome,
//! status) and flush of one gateway process, written by the gateway's usage meter every few
//! seconds; readers sum the rows (several flushes and replicas write the same minute).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageMinutes {
    Table,
    Id,
    Minute,
    GatewayId,
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
    LatencyHist,
    TtfbHist,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let int = |c: UsageMinutes| ColumnDef::new(c).big_integer().not_null().default(0).to_owned();
        m.create_table(
            Table::create()
                .table(UsageMinutes::Table)
                .col(ColumnDef::new(UsageMinutes::Id).big_integer().not_null().auto_increment().primary_key())
                // Unix minutes (seconds / 60), UTC.
                .col(ColumnDef::new(UsageMinutes::Minute).big_integer().not_null())
                .col(ColumnDef::new(UsageMinutes::GatewayId).string_len(128).not_null())
                // No foreign keys: usage outlives the models, endpoints and keys it names.
                .col(ColumnDef::new(UsageMinutes::MaasModelId).big_integer().null())
                .col(ColumnDef::new(UsageMinutes::Model).string_len(128).not_null())
                .col(ColumnDef::new(UsageMinutes::EndpointId).big_integer().null())
                .col(ColumnDef::new(UsageMinutes::WorkspaceId).big_integer().null())
                .col(ColumnDef::new(UsageMinutes::ApiKeyId).big_integer().null())
                .col(ColumnDef::new(UsageMinutes::Operation).string_len(16).not_null())
                .col(ColumnDef::new(UsageMinutes::Outcome).string_len(24).not_null())
                .col(ColumnDef::new(UsageMinutes::Status).integer().not_null())
                .col(int(UsageMinutes::Requests))
                .col(int(UsageMinutes::Failovers))
                // Calls whose upstream reported usage; the token sums are theirs alone.
                .col(int(UsageMinutes::UsageKnown))
                .col(int(UsageMinutes::InputTokens))
                .col(int(UsageMinutes::OutputTokens))
                .col(int(UsageMinutes::TotalTokens))
                .col(int(UsageMinutes::LatencyMsSum))
                .col(int(UsageMinutes::TtfbMsSum))
                // Counts per fixed bucket (gateway/meter.rs BUCKETS_MS), comma-separated.
                .col(ColumnDef::new(UsageMinutes::LatencyHist).string_len(256).not_null())
                .col(ColumnDef::new(UsageMinutes::TtfbHist).string_len(256).not_null())
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("idx_usage_minute", vec![UsageMinutes::Minute]),
            ("idx_usage_model_minute", vec![UsageMinutes::MaasModelId, UsageMinutes::Minute]),
            ("idx_usage_workspace_minute", vec![UsageMinutes::WorkspaceId, UsageMinutes::Minute]),
        ] {
            let mut idx = Index::create().name(name).table(UsageMinutes::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            m.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UsageMinutes::Table).to_owned()).await
    }
}
