//! Rules of three kinds: requests per window (every rule so far), tokens per window, and calls
//! in flight at once (no window: `duration_secs` is 0). The limit's column loses its unit
//! from its name, since it now counts whichever the kind says, and "no duplicate rules" becomes
//! one rule per kind, subject and window.
//!
//! The table is rebuilt (new table, copy, swap) rather than altered: SQLite cannot change a
//! CHECK constraint in place, and the window's (`duration_secs >= 1`) must now let a
//! concurrency rule's 0 through, and only its.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RateLimitRules {
    Id,
    MaasModelId,
    Position,
    Kind,
    Target,
    WorkspaceId,
    ApiKeyId,
    LimitValue,
    DurationSecs,
}

#[derive(DeriveIden)]
enum Next {
    #[sea_orm(iden = "rate_limit_rules_next")]
    Table,
}

#[derive(DeriveIden)]
enum MaasModels {
    Table,
    Id,
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

const COLUMNS: &str = "id, maas_model_id, position, target, workspace_id, api_key_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use RateLimitRules as R;
        let kind = Expr::col(R::Kind);
        let create = Table::create()
            .table(Next::Table)
            .col(ColumnDef::new(R::Id).big_integer().not_null().auto_increment().primary_key())
            .col(ColumnDef::new(R::MaasModelId).big_integer().not_null())
            .col(ColumnDef::new(R::Position).integer().not_null())
            .col(ColumnDef::new(R::Kind).string_len(16).not_null().default("requests").check(kind.clone().is_in([
                "requests",
                "tokens",
                "concurrent",
            ])))
            .col(ColumnDef::new(R::Target).string_len(16).not_null().check(Expr::col(R::Target).is_in(["api_key", "workspace"])))
            .col(ColumnDef::new(R::WorkspaceId).big_integer().not_null())
            .col(ColumnDef::new(R::ApiKeyId).big_integer().null())
            .col(ColumnDef::new(R::LimitValue).big_integer().not_null().check(Expr::col(R::LimitValue).gte(1)))
            .col(ColumnDef::new(R::DurationSecs).big_integer().not_null().check(Expr::col(R::DurationSecs).gte(0)))
            // A window for the windowed kinds, none for concurrency.
            .check(Expr::expr(kind.eq("concurrent")).eq(Expr::col(R::DurationSecs).eq(0)))
            .foreign_key(
                ForeignKey::create()
                    .from(Next::Table, R::MaasModelId)
                    .to(MaasModels::Table, MaasModels::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .foreign_key(
                ForeignKey::create()
                    .from(Next::Table, R::WorkspaceId)
                    .to(Workspaces::Table, Workspaces::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .foreign_key(
                ForeignKey::create().from(Next::Table, R::ApiKeyId).to(ApiKeys::Table, ApiKeys::Id).on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();
        let backend = m.get_database_backend();
        let sqlite = backend == sea_orm::DatabaseBackend::Sqlite;
        // One script on one connection, in one transaction: run statement by statement, the
        // pool may hand each to another SQLite connection, and a failure halfway would leave
        // the table swapped without its index.
        let mut script = vec![backend.build(&create).sql];
        script.push(format!("INSERT INTO rate_limit_rules_next ({COLUMNS}, kind, limit_value, duration_secs) SELECT {COLUMNS}, 'requests', limit_requests, duration_secs FROM rate_limit_rules"));
        script.push("DROP TABLE rate_limit_rules".into());
        script.push("ALTER TABLE rate_limit_rules_next RENAME TO rate_limit_rules".into());
        if !sqlite {
            // The copied ids keep counting where they were.
            script.push("SELECT setval(pg_get_serial_sequence('rate_limit_rules', 'id'), COALESCE((SELECT MAX(id) FROM rate_limit_rules), 0) + 1, false)".into());
        }
        // COALESCE because NULLs are distinct in unique indexes on both SQLite and PostgreSQL.
        script.push("CREATE UNIQUE INDEX ux_rules_subject ON rate_limit_rules (maas_model_id, kind, target, workspace_id, COALESCE(api_key_id, 0), duration_secs)".into());
        let body = script.join(";\n");
        // PostgreSQL migrations already run in a transaction; SQLite's do not.
        let sql = if sqlite { format!("BEGIN;\n{body};\nCOMMIT;") } else { format!("{body};") };
        m.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        // Token and concurrency rules have no form in the older schema; going back would drop
        // them silently. Restore from a backup instead.
        Err(DbErr::Migration("rule kinds cannot be undone: restore the database from a backup".into()))
    }
}
