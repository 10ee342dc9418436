//! A MaaS model's output reservation: the output tokens a call that gives no `max_tokens`
//! reserves in token rules and quotas until its real usage is known; NULL: the gateway's
//! default (1,024).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MaasModels {
    Table,
    ReserveOutputTokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let col = ColumnDef::new(MaasModels::ReserveOutputTokens)
            .big_integer()
            .null()
            .check(Expr::col(MaasModels::ReserveOutputTokens).gte(1))
            .to_owned();
        m.alter_table(Table::alter().table(MaasModels::Table).add_column(col).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(MaasModels::Table).drop_column(MaasModels::ReserveOutputTokens).to_owned()).await
    }
}
