//! The model a call asked for, beside the model that answered it, in the usage rows:
//! `asked_model_id` is set only when a fallback model answered (NULL: the model asked for
//! answered, or none was named), so the common row is unchanged and a fallback is one more
//! group. The blocks (the unfiltered views' pre-added sums) do not carry it: the console reads
//! fallbacks from the hourly rows through a partial index that holds only theirs.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 2] = ["usage_minutes", "usage_hours"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES {
            let col = ColumnDef::new(Alias::new("asked_model_id")).big_integer().null().to_owned();
            m.alter_table(Table::alter().table(Alias::new(t)).add_column(col).to_owned()).await?;
        }
        let db = m.get_connection();
        let sql = "CREATE INDEX idx_usage_hours_fallback ON usage_hours (hour) WHERE asked_model_id IS NOT NULL";
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_usage_hours_fallback").table(Alias::new("usage_hours")).to_owned()).await?;
        for t in TABLES {
            m.alter_table(Table::alter().table(Alias::new(t)).drop_column(Alias::new("asked_model_id")).to_owned()).await?;
        }
        Ok(())
    }
}
