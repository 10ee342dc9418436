//! Budgets in money (issue 29): a quota may cap what its subject spends per period, in the
//! installation's currency, beside its tokens and requests.
//!
//! - `quotas.spend_nanos`: the budget, nano-units (10⁻⁹) of the currency; `unpriced`: what the
//!   budget does with calls to a model that has no price in force (`refuse`, or `pass`: let
//!   them through uncounted); `alert_percents`: thresholds (e.g. `50,80,100`) that raise an alert
//!   once per period.
//! - `quota_spent.cost_nanos`: the period's spend, added to by every gateway's flush like its
//!   tokens and requests.
//! - `quota_alerts`: one row per threshold crossed per subject and period: the unique key is what
//!   makes an alert fire once, whichever replica sees the crossing first; `attempts` and
//!   `next_attempt_at` schedule its webhook delivery (claimed by a conditional update, so one
//!   gateway sends each attempt).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, TransactionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Quotas {
    Id,
    Target,
    WorkspaceId,
    ApiKeyId,
    Period,
    Tokens,
    Requests,
    SpendNanos,
    Unpriced,
    AlertPercents,
}

#[derive(DeriveIden, Clone, Copy)]
enum QuotasNew {
    Table,
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

/// The quotas table as this migration leaves it, under `name`: a quota budgets tokens,
/// requests or money (a table CHECK SQLite cannot alter, hence the table is rebuilt).
fn quotas_table(name: impl IntoIden + Clone + 'static, spend: bool) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(name.clone())
        .col(ColumnDef::new(Quotas::Id).big_integer().not_null().auto_increment().primary_key())
        .col(ColumnDef::new(Quotas::Target).string_len(16).not_null().check(Expr::col(Quotas::Target).is_in(["api_key", "workspace"])))
        .col(ColumnDef::new(Quotas::WorkspaceId).big_integer().not_null())
        .col(ColumnDef::new(Quotas::ApiKeyId).big_integer().null())
        .col(ColumnDef::new(Quotas::Period).string_len(8).not_null().check(Expr::col(Quotas::Period).is_in(["day", "month"])))
        .col(ColumnDef::new(Quotas::Tokens).big_integer().null().check(Expr::col(Quotas::Tokens).gte(1)))
        .col(ColumnDef::new(Quotas::Requests).big_integer().null().check(Expr::col(Quotas::Requests).gte(1)));
    if spend {
        t.col(ColumnDef::new(Quotas::SpendNanos).big_integer().null().check(Expr::col(Quotas::SpendNanos).gte(1)))
            .col(
                ColumnDef::new(Quotas::Unpriced)
                    .string_len(16)
                    .not_null()
                    .default("refuse")
                    .check(Expr::col(Quotas::Unpriced).is_in(["refuse", "pass"])),
            )
            .col(ColumnDef::new(Quotas::AlertPercents).string_len(64).not_null().default(""))
            // A quota budgets something; none at all is no quota (deleted instead).
            .check(
                Expr::col(Quotas::Tokens)
                    .is_not_null()
                    .or(Expr::col(Quotas::Requests).is_not_null())
                    .or(Expr::col(Quotas::SpendNanos).is_not_null()),
            );
    } else {
        t.check(Expr::col(Quotas::Tokens).is_not_null().or(Expr::col(Quotas::Requests).is_not_null()));
    }
    t.foreign_key(
        ForeignKey::create()
            .from(name.clone(), Quotas::WorkspaceId)
            .to(Workspaces::Table, Workspaces::Id)
            .on_delete(ForeignKeyAction::Cascade),
    )
    .foreign_key(ForeignKey::create().from(name, Quotas::ApiKeyId).to(ApiKeys::Table, ApiKeys::Id).on_delete(ForeignKeyAction::Cascade))
    .to_owned()
}

/// Replaces the quotas table by one made as `spend` says, keeping its rows and its
/// one-quota-per-subject index. In one transaction: on SQLite, one connection of the pool
/// (another's cached schema could still hold the old table when the new one is renamed).
async fn rebuild_quotas(m: &SchemaManager<'_>, spend: bool) -> Result<(), DbErr> {
    let backend = m.get_database_backend();
    let txn = m.get_connection().begin().await?;
    txn.execute(&quotas_table(QuotasNew::Table, spend)).await?;
    let columns = "id, target, workspace_id, api_key_id, period, tokens, requests";
    let keep = if spend { "" } else { " WHERE tokens IS NOT NULL OR requests IS NOT NULL" };
    txn.execute_unprepared(&format!("INSERT INTO quotas_new ({columns}) SELECT {columns} FROM quotas{keep}")).await?;
    txn.execute_unprepared("DROP TABLE quotas").await?;
    txn.execute_unprepared("ALTER TABLE quotas_new RENAME TO quotas").await?;
    if backend == sea_orm::DatabaseBackend::Postgres {
        // The serial's sequence follows the rows copied with their ids.
        txn.execute_unprepared(
            "SELECT setval(pg_get_serial_sequence('quotas', 'id'), COALESCE((SELECT MAX(id) FROM quotas), 0) + 1, false)",
        )
        .await?;
    }
    txn.execute_unprepared("CREATE UNIQUE INDEX ux_quotas_subject ON quotas (target, workspace_id, COALESCE(api_key_id, 0))").await?;
    txn.commit().await
}

#[derive(DeriveIden)]
enum QuotaSpent {
    Table,
    CostNanos,
}

#[derive(DeriveIden)]
enum QuotaAlerts {
    Table,
    Id,
    Target,
    SubjectId,
    PeriodStart,
    Percent,
    SpentNanos,
    BudgetNanos,
    CreatedAt,
    Delivered,
    Attempts,
    NextAttemptAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        rebuild_quotas(m, true).await?;
        m.alter_table(
            Table::alter()
                .table(QuotaSpent::Table)
                .add_column(ColumnDef::new(QuotaSpent::CostNanos).big_integer().not_null().default(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(QuotaAlerts::Table)
                .col(ColumnDef::new(QuotaAlerts::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(QuotaAlerts::Target).string_len(16).not_null())
                .col(ColumnDef::new(QuotaAlerts::SubjectId).big_integer().not_null())
                .col(ColumnDef::new(QuotaAlerts::PeriodStart).big_integer().not_null())
                .col(ColumnDef::new(QuotaAlerts::Percent).integer().not_null())
                .col(ColumnDef::new(QuotaAlerts::SpentNanos).big_integer().not_null())
                .col(ColumnDef::new(QuotaAlerts::BudgetNanos).big_integer().not_null())
                .col(ColumnDef::new(QuotaAlerts::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(QuotaAlerts::Delivered).boolean().not_null().default(false))
                .col(ColumnDef::new(QuotaAlerts::Attempts).integer().not_null().default(0))
                .col(ColumnDef::new(QuotaAlerts::NextAttemptAt).big_integer().not_null().default(0))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_quota_alerts_once")
                .table(QuotaAlerts::Table)
                .col(QuotaAlerts::Target)
                .col(QuotaAlerts::SubjectId)
                .col(QuotaAlerts::PeriodStart)
                .col(QuotaAlerts::Percent)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(QuotaAlerts::Table).to_owned()).await?;
        m.alter_table(Table::alter().table(QuotaSpent::Table).drop_column(QuotaSpent::CostNanos).to_owned()).await?;
        rebuild_quotas(m, false).await
    }
}
