//! Quotas: a budget of tokens and/or requests per calendar day or month (UTC), for a whole
//! workspace or one API key, across every model. `quota_spent` is the ledger of what each
//! period spent: every gateway adds its calls to it in its usage flush (the same transaction as
//! its usage rows), so a restart, or a replica added mid-period, starts from what was spent.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Quotas {
    Table,
    Id,
    Target,
    WorkspaceId,
    ApiKeyId,
    Period,
    Tokens,
    Requests,
}

#[derive(DeriveIden)]
enum QuotaSpent {
    Table,
    Target,
    SubjectId,
    PeriodStart,
    Tokens,
    Requests,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}
#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Quotas::Table)
                .col(ColumnDef::new(Quotas::Id).big_integer().not_null().auto_increment().primary_key())
                .col(
                    ColumnDef::new(Quotas::Target)
                        .string_len(16)
                        .not_null()
                        .check(Expr::col(Quotas::Target).is_in(["api_key", "workspace"])),
                )
                .col(ColumnDef::new(Quotas::WorkspaceId).big_integer().not_null())
                .col(ColumnDef::new(Quotas::ApiKeyId).big_integer().null())
                .col(ColumnDef::new(Quotas::Period).string_len(8).not_null().check(Expr::col(Quotas::Period).is_in(["day", "month"])))
                .col(ColumnDef::new(Quotas::Tokens).big_integer().null().check(Expr::col(Quotas::Tokens).gte(1)))
                .col(ColumnDef::new(Quotas::Requests).big_integer().null().check(Expr::col(Quotas::Requests).gte(1)))
                // A quota budgets something; none at all is no quota (deleted instead).
                .check(Expr::col(Quotas::Tokens).is_not_null().or(Expr::col(Quotas::Requests).is_not_null()))
                .foreign_key(
                    ForeignKey::create()
                        .from(Quotas::Table, Quotas::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Quotas::Table, Quotas::ApiKeyId)
                        .to(ApiKeys::Table, ApiKeys::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // One quota per subject.
        m.get_connection()
            .execute_unprepared("CREATE UNIQUE INDEX ux_quotas_subject ON quotas (target, workspace_id, COALESCE(api_key_id, 0))")
            .await?;
        m.create_table(
            Table::create()
                .table(QuotaSpent::Table)
                .col(ColumnDef::new(QuotaSpent::Target).string_len(16).not_null())
                .col(ColumnDef::new(QuotaSpent::SubjectId).big_integer().not_null())
                .col(ColumnDef::new(QuotaSpent::PeriodStart).big_integer().not_null())
                .col(ColumnDef::new(QuotaSpent::Tokens).big_integer().not_null().default(0))
                .col(ColumnDef::new(QuotaSpent::Requests).big_integer().not_null().default(0))
                .primary_key(Index::create().col(QuotaSpent::Target).col(QuotaSpent::SubjectId).col(QuotaSpent::PeriodStart))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(QuotaSpent::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Quotas::Table).to_owned()).await
    }
}
