//! An endpoint's cap on calls in flight at once (a self-hosted server's inference slots);
//! NULL: no cap.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Endpoints {
    Table,
    MaxConcurrent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let col =
            ColumnDef::new(Endpoints::MaxConcurrent).big_integer().null().check(Expr::col(Endpoints::MaxConcurrent).gte(1)).to_owned();
        m.alter_table(Table::alter().table(Endpoints::Table).add_column(col).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Endpoints::Table).drop_column(Endpoints::MaxConcurrent).to_owned()).await
    }
}
