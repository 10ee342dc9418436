//! Units besides tokens, a figure of every usage table: what an operation is counted in (rerank:
//! documents, speech: characters, images: images; the row's operation says which). Rows from
//! before count none.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 5] = ["usage_minutes", "usage_hours", "usage_quarters", "usage_model_blocks", "usage_key_blocks"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES {
            let col = ColumnDef::new(Alias::new("units")).big_integer().not_null().default(0).to_owned();
            m.alter_table(Table::alter().table(Alias::new(t)).add_column(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES {
            m.alter_table(Table::alter().table(Alias::new(t)).drop_column(Alias::new("units")).to_owned()).await?;
        }
        Ok(())
    }
}
