//! Two figures of every usage table, zero for rows from before:
//! - `cached_tokens`: the input tokens the upstream read from its prompt cache (OpenAI's
//!   `cached_tokens`, Anthropic's `cache_read_input_tokens`), part of `input_tokens`;
//! - `units`: what an operation is counted in besides tokens (rerank: documents, speech:
//!   characters, images: images; the row's operation says which).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 5] = ["usage_minutes", "usage_hours", "usage_quarters", "usage_model_blocks", "usage_key_blocks"];
const COLUMNS: [&str; 2] = ["cached_tokens", "units"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES {
            for c in COLUMNS {
                let col = ColumnDef::new(Alias::new(c)).big_integer().not_null().default(0).to_owned();
                m.alter_table(Table::alter().table(Alias::new(t)).add_column(col).to_owned()).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES {
            for c in COLUMNS {
                m.alter_table(Table::alter().table(Alias::new(t)).drop_column(Alias::new(c)).to_owned()).await?;
            }
        }
        Ok(())
    }
}
