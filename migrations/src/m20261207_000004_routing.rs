//! Routing for self-hosted fleets: the load-aware policies (`least_busy`, `fastest`,
//! `affinity`), what the cache-affinity policy keeps a conversation by (default OpenAI's
//! `prompt_cache_key`), and an endpoint drained by hand (no new calls; calls under way finish).
//!
//! The first schema checks `policy` against the seed's three policies, and SQLite cannot
//! change a CHECK without rebuilding the table (with the foreign keys of endpoints and rules
//! pointing at it). So a load-aware policy is stored in `routing_policy`, with `policy` set to
//! `round_robin`: what a binary from before this migration (a rolling upgrade) then serves.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MaasModels {
    Table,
    RoutingPolicy,
    AffinityKey,
}

#[derive(DeriveIden)]
enum Endpoints {
    Table,
    Draining,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let key = ColumnDef::new(MaasModels::AffinityKey).string_len(32).not_null().default("prompt_cache_key").to_owned();
        m.alter_table(Table::alter().table(MaasModels::Table).add_column(key).to_owned()).await?;
        let routing = ColumnDef::new(MaasModels::RoutingPolicy).string_len(16).null().to_owned();
        m.alter_table(Table::alter().table(MaasModels::Table).add_column(routing).to_owned()).await?;
        let draining = ColumnDef::new(Endpoints::Draining).boolean().not_null().default(false).to_owned();
        m.alter_table(Table::alter().table(Endpoints::Table).add_column(draining).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Endpoints::Table).drop_column(Endpoints::Draining).to_owned()).await?;
        m.alter_table(Table::alter().table(MaasModels::Table).drop_column(MaasModels::RoutingPolicy).to_owned()).await?;
        m.alter_table(Table::alter().table(MaasModels::Table).drop_column(MaasModels::AffinityKey).to_owned()).await
    }
}
