//! Prompt-cache writes (issue 29): Anthropic reports the input tokens it wrote to its prompt
//! cache (`cache_creation_input_tokens`) apart, and bills them at a rate of their own.
//!
//! - Every usage table: `cache_write_tokens` (part of the input tokens, as cached reads are).
//! - `model_prices.cache_write_pico`: their price per token; NULL: priced as input.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ModelPrices {
    Table,
    CacheWritePico,
}

const USAGE_TABLES: [&str; 5] = ["usage_minutes", "usage_hours", "usage_quarters", "usage_model_blocks", "usage_key_blocks"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in USAGE_TABLES {
            let col = ColumnDef::new(Alias::new("cache_write_tokens")).big_integer().not_null().default(0).to_owned();
            m.alter_table(Table::alter().table(Alias::new(t)).add_column(col).to_owned()).await?;
        }
        m.alter_table(
            Table::alter()
                .table(ModelPrices::Table)
                .add_column(ColumnDef::new(ModelPrices::CacheWritePico).big_integer().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(ModelPrices::Table).drop_column(ModelPrices::CacheWritePico).to_owned()).await?;
        for t in USAGE_TABLES {
            m.alter_table(Table::alter().table(Alias::new(t)).drop_column(Alias::new("cache_write_tokens")).to_owned()).await?;
        }
        Ok(())
    }
}
