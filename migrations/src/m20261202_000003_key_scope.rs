//! Keys that expire and keys scoped to models, in two layers: the operator's limits
//! (`limit_expires_at`, `limit_models`) and the key holder's own narrowing (`expires_at`,
//! `models`). The gateway applies both (the earlier expiry, the models in both lists), so a
//! user can narrow what an operator allowed and never widen it. Models are MaaS model ids as a
//! JSON list; NULL: no restriction. Expiries are Unix seconds; NULL: never.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    ExpiresAt,
    Models,
    LimitExpiresAt,
    LimitModels,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for c in [ApiKeys::ExpiresAt, ApiKeys::LimitExpiresAt] {
            m.alter_table(Table::alter().table(ApiKeys::Table).add_column(ColumnDef::new(c).big_integer().null()).to_owned()).await?;
        }
        for c in [ApiKeys::Models, ApiKeys::LimitModels] {
            m.alter_table(Table::alter().table(ApiKeys::Table).add_column(ColumnDef::new(c).text().null()).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in [ApiKeys::ExpiresAt, ApiKeys::LimitExpiresAt, ApiKeys::Models, ApiKeys::LimitModels] {
            m.alter_table(Table::alter().table(ApiKeys::Table).drop_column(c).to_owned()).await?;
        }
        Ok(())
    }
}
