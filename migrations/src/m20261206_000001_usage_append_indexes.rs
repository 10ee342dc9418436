//! Minute rows are indexed by what they are filtered on (model, workspace, key) only once they
//! are compacted. Each of those indexes starts with its id, so a flush of rows for 10,000 keys
//! touched up to 10,000 leaf pages of each, every few seconds, and SQLite writes each touched
//! page whole to the WAL: 386 ms of B-tree work for a 10,000-row flush, most of it those three
//! indexes. Partial indexes `WHERE compacted = TRUE` keep the flush to the table and one index
//! on the minute (both appended at their right edge); the hourly compaction, which flags an hour
//! of rows at once, adds them to the filtered indexes in one pass, touching each page once per
//! hour instead of once per flush. Readers split their scan the same way: rows not compacted
//! yet (the current hour, at most a few) by the pending index, the others by these.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

const DROP_FULL: [&str; 4] = [
    "DROP INDEX idx_usage_minute",
    "DROP INDEX idx_usage_model_minute",
    "DROP INDEX idx_usage_workspace_minute",
    "DROP INDEX idx_usage_key_minute",
];

const PARTIAL: [&str; 4] = [
    "CREATE INDEX idx_usage_done_minute ON usage_minutes (minute) WHERE compacted = TRUE",
    "CREATE INDEX idx_usage_done_model_minute ON usage_minutes (maas_model_id, minute) WHERE compacted = TRUE",
    "CREATE INDEX idx_usage_done_workspace_minute ON usage_minutes (workspace_id, minute) WHERE compacted = TRUE",
    "CREATE INDEX idx_usage_done_key_minute ON usage_minutes (api_key_id, minute) WHERE compacted = TRUE",
];

const DROP_PARTIAL: [&str; 4] = [
    "DROP INDEX idx_usage_done_minute",
    "DROP INDEX idx_usage_done_model_minute",
    "DROP INDEX idx_usage_done_workspace_minute",
    "DROP INDEX idx_usage_done_key_minute",
];

/// The minute rows' indexes before this migration, on every row: what `down` restores, and the
/// reference the flush benchmark (server/benches/usage_flush.rs) measures against.
pub const FULL: [&str; 4] = [
    "CREATE INDEX idx_usage_minute ON usage_minutes (minute)",
    "CREATE INDEX idx_usage_model_minute ON usage_minutes (maas_model_id, minute)",
    "CREATE INDEX idx_usage_workspace_minute ON usage_minutes (workspace_id, minute)",
    "CREATE INDEX idx_usage_key_minute ON usage_minutes (api_key_id, minute)",
];

async fn run(m: &SchemaManager<'_>, sqls: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    for sql in sqls {
        db.execute_raw(Statement::from_string(db.get_database_backend(), *sql)).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, &DROP_FULL).await?;
        run(m, &PARTIAL).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, &DROP_PARTIAL).await?;
        run(m, &FULL).await
    }
}
