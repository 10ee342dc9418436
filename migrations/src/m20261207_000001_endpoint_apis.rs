//! The APIs an endpoint speaks natively (`chat`, `messages`, `responses`, comma-separated):
//! Messages and Responses calls go to an endpoint that speaks them as they are, and are
//! translated to chat completions for one that does not. Existing endpoints speak chat.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Endpoints {
    Table,
    NativeApis,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let col = ColumnDef::new(Endpoints::NativeApis).string_len(64).not_null().default("chat").to_owned();
        m.alter_table(Table::alter().table(Endpoints::Table).add_column(col).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Endpoints::Table).drop_column(Endpoints::NativeApis).to_owned()).await
    }
}
