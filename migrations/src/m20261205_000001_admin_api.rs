//! The admin API's tables: admin tokens (bearer credentials for `/api/v1`, stored hashed),
//! the audit log (one row per change, written in the change's own transaction), the access
//! log (every write call to the admin API, with its answer), and the idempotency keys that make
//! a retried create return its first result.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    Id,
    Name,
    PublicId,
    SecretHash,
    Access,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorKind,
    ActorId,
    ActorName,
    Via,
    Entity,
    EntityId,
    Action,
    Diff,
}

#[derive(DeriveIden)]
enum ApiAccessLog {
    Table,
    Id,
    At,
    ActorKind,
    ActorId,
    ActorName,
    Method,
    Path,
    Status,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ActorKey,
    Key,
    Fingerprint,
    Status,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AdminTokens::Table)
                .col(ColumnDef::new(AdminTokens::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(AdminTokens::Name).string_len(64).not_null())
                .col(ColumnDef::new(AdminTokens::PublicId).string_len(32).not_null().unique_key())
                .col(ColumnDef::new(AdminTokens::SecretHash).string_len(64).not_null().unique_key())
                .col(
                    ColumnDef::new(AdminTokens::Access)
                        .string_len(8)
                        .not_null()
                        .check(Expr::col(AdminTokens::Access).is_in(["read", "write"])),
                )
                // The operator who made it; a token dies with its account.
                .col(ColumnDef::new(AdminTokens::CreatedBy).big_integer().not_null())
                .col(ColumnDef::new(AdminTokens::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(AdminTokens::ExpiresAt).big_integer().null())
                .col(ColumnDef::new(AdminTokens::RevokedAt).big_integer().null())
                .col(ColumnDef::new(AdminTokens::LastUsedAt).big_integer().null())
                .foreign_key(
                    ForeignKey::create()
                        .from(AdminTokens::Table, AdminTokens::CreatedBy)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Who did what stays readable after the actor is gone: names are copied, not joined.
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(ColumnDef::new(AuditLog::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(AuditLog::At).big_integer().not_null())
                .col(
                    ColumnDef::new(AuditLog::ActorKind)
                        .string_len(8)
                        .not_null()
                        .check(Expr::col(AuditLog::ActorKind).is_in(["user", "token", "system"])),
                )
                .col(ColumnDef::new(AuditLog::ActorId).big_integer().null())
                .col(ColumnDef::new(AuditLog::ActorName).string_len(128).not_null())
                .col(
                    ColumnDef::new(AuditLog::Via)
                        .string_len(8)
                        .not_null()
                        .check(Expr::col(AuditLog::Via).is_in(["console", "api", "system"])),
                )
                .col(ColumnDef::new(AuditLog::Entity).string_len(32).not_null())
                .col(ColumnDef::new(AuditLog::EntityId).big_integer().not_null())
                .col(ColumnDef::new(AuditLog::Action).string_len(16).not_null())
                .col(ColumnDef::new(AuditLog::Diff).text().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_audit_at").table(AuditLog::Table).col(AuditLog::At).to_owned()).await?;
        m.create_index(
            Index::create().name("ix_audit_entity").table(AuditLog::Table).col(AuditLog::Entity).col(AuditLog::EntityId).to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_audit_actor").table(AuditLog::Table).col(AuditLog::ActorName).col(AuditLog::At).to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table(ApiAccessLog::Table)
                .col(ColumnDef::new(ApiAccessLog::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(ApiAccessLog::At).big_integer().not_null())
                .col(ColumnDef::new(ApiAccessLog::ActorKind).string_len(8).not_null())
                .col(ColumnDef::new(ApiAccessLog::ActorId).big_integer().null())
                .col(ColumnDef::new(ApiAccessLog::ActorName).string_len(128).not_null())
                .col(ColumnDef::new(ApiAccessLog::Method).string_len(8).not_null())
                .col(ColumnDef::new(ApiAccessLog::Path).string_len(256).not_null())
                .col(ColumnDef::new(ApiAccessLog::Status).integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_access_at").table(ApiAccessLog::Table).col(ApiAccessLog::At).to_owned()).await?;
        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                // "token:<id>" or "user:<id>": a key is the caller's own.
                .col(ColumnDef::new(IdempotencyKeys::ActorKey).string_len(40).not_null())
                .col(ColumnDef::new(IdempotencyKeys::Key).string_len(255).not_null())
                // Method, path and a hash of the body: the same key on another request is refused.
                .col(ColumnDef::new(IdempotencyKeys::Fingerprint).string_len(64).not_null())
                // NULL while the first request is being served.
                .col(ColumnDef::new(IdempotencyKeys::Status).integer().null())
                .col(ColumnDef::new(IdempotencyKeys::Body).text().null())
                .col(ColumnDef::new(IdempotencyKeys::CreatedAt).big_integer().not_null())
                .primary_key(Index::create().col(IdempotencyKeys::ActorKey).col(IdempotencyKeys::Key))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(ApiAccessLog::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(AdminTokens::Table).to_owned()).await
    }
}
