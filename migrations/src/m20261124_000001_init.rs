//! The whole domain of DESIGN.md. Constraints live in the schema: unique names, one MaaS model
//! per (marketplace model, cluster), foreign keys whose delete behaviour is chosen per edge:
//! - owned children (endpoints, rules, members, sessions) go with their parent (CASCADE);
//! - things other records are built on (a marketplace model or cluster used by a MaaS model)
//!   cannot be deleted from under them (RESTRICT).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Role,
    CreatedAt,
}
#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    ExpiresAt,
}
#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
    Name,
    CreatedAt,
}
#[derive(DeriveIden)]
enum WorkspaceMembers {
    Table,
    WorkspaceId,
    UserId,
}
#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    WorkspaceId,
    PublicId,
    Name,
    SecretHash,
    CreatedBy,
    CreatedAt,
    RevokedAt,
}
#[derive(DeriveIden)]
enum MarketplaceModels {
    Table,
    Id,
    Name,
    Provider,
    Description,
    Tags,
    Published,
    CreatedAt,
}
#[derive(DeriveIden)]
enum Clusters {
    Table,
    Id,
    Name,
    EntryAddress,
    CreatedAt,
}
#[derive(DeriveIden)]
enum MaasModels {
    Table,
    Id,
    MarketplaceModelId,
    ClusterId,
    Policy,
    Enabled,
    Revision,
    CreatedAt,
    UpdatedAt,
}
#[derive(DeriveIden)]
enum Endpoints {
    Table,
    Id,
    MaasModelId,
    Position,
    ModelId,
    Url,
    ApiKeyEnc,
    Weight,
}
#[derive(DeriveIden)]
enum RateLimitRules {
    Table,
    Id,
    MaasModelId,
    Position,
    Target,
    WorkspaceId,
    ApiKeyId,
    LimitRequests,
    DurationSecs,
}
#[derive(DeriveIden)]
enum ConfigRevision {
    Table,
    Id,
    Revision,
}
#[derive(DeriveIden)]
enum GatewayStatus {
    Table,
    GatewayId,
    Cluster,
    AppliedRevision,
    Error,
    HeartbeatAt,
    Detail,
}

fn pk(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().auto_increment().primary_key().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(pk(Users::Id))
                .col(ColumnDef::new(Users::Username).string_len(64).not_null().unique_key())
                .col(ColumnDef::new(Users::PasswordHash).string().not_null())
                .col(ColumnDef::new(Users::Role).string_len(16).not_null().check(Expr::col(Users::Role).is_in(["operator", "user"])))
                .col(ColumnDef::new(Users::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;

        // Session ids are stored as SHA-256 of the cookie value: a leaked database is no login.
        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(ColumnDef::new(Sessions::Id).string_len(64).not_null().primary_key())
                .col(ColumnDef::new(Sessions::UserId).big_integer().not_null())
                .col(ColumnDef::new(Sessions::ExpiresAt).big_integer().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(Sessions::Table, Sessions::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Workspaces::Table)
                .col(pk(Workspaces::Id))
                .col(ColumnDef::new(Workspaces::Name).string_len(64).not_null().unique_key())
                .col(ColumnDef::new(Workspaces::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WorkspaceMembers::Table)
                .col(ColumnDef::new(WorkspaceMembers::WorkspaceId).big_integer().not_null())
                .col(ColumnDef::new(WorkspaceMembers::UserId).big_integer().not_null())
                .primary_key(Index::create().col(WorkspaceMembers::WorkspaceId).col(WorkspaceMembers::UserId))
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkspaceMembers::Table, WorkspaceMembers::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkspaceMembers::Table, WorkspaceMembers::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        // A key's secret is high-entropy random, so SHA-256 is the right hash: the gateway
        // looks keys up by hash on every request, where a slow KDF would be a DoS lever.
        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(pk(ApiKeys::Id))
                .col(ColumnDef::new(ApiKeys::WorkspaceId).big_integer().not_null())
                .col(ColumnDef::new(ApiKeys::PublicId).string_len(32).not_null().unique_key())
                .col(ColumnDef::new(ApiKeys::Name).string_len(64).not_null())
                .col(ColumnDef::new(ApiKeys::SecretHash).string_len(64).not_null().unique_key())
                .col(ColumnDef::new(ApiKeys::CreatedBy).big_integer().null())
                .col(ColumnDef::new(ApiKeys::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(ApiKeys::RevokedAt).big_integer().null())
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiKeys::Table, ApiKeys::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiKeys::Table, ApiKeys::CreatedBy)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(MarketplaceModels::Table)
                .col(pk(MarketplaceModels::Id))
                .col(ColumnDef::new(MarketplaceModels::Name).string_len(128).not_null().unique_key())
                .col(ColumnDef::new(MarketplaceModels::Provider).string_len(128).not_null())
                .col(ColumnDef::new(MarketplaceModels::Description).text().not_null())
                // Tags as a JSON array of strings: few per model, always read with the model.
                .col(ColumnDef::new(MarketplaceModels::Tags).text().not_null())
                .col(ColumnDef::new(MarketplaceModels::Published).boolean().not_null().default(false))
                .col(ColumnDef::new(MarketplaceModels::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Clusters::Table)
                .col(pk(Clusters::Id))
                .col(ColumnDef::new(Clusters::Name).string_len(64).not_null().unique_key())
                .col(ColumnDef::new(Clusters::EntryAddress).string_len(512).not_null())
                .col(ColumnDef::new(Clusters::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(MaasModels::Table)
                .col(pk(MaasModels::Id))
                .col(ColumnDef::new(MaasModels::MarketplaceModelId).big_integer().not_null())
                .col(ColumnDef::new(MaasModels::ClusterId).big_integer().not_null())
                .col(
                    ColumnDef::new(MaasModels::Policy)
                        .string_len(16)
                        .not_null()
                        .default("round_robin")
                        .check(Expr::col(MaasModels::Policy).is_in(["round_robin", "random", "weighted"])),
                )
                .col(ColumnDef::new(MaasModels::Enabled).boolean().not_null().default(false))
                // The configuration revision at which this model last changed; the gateway status
                // compares it with what the gateways report having applied.
                .col(ColumnDef::new(MaasModels::Revision).big_integer().not_null())
                .col(ColumnDef::new(MaasModels::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(MaasModels::UpdatedAt).big_integer().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(MaasModels::Table, MaasModels::MarketplaceModelId)
                        .to(MarketplaceModels::Table, MarketplaceModels::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(MaasModels::Table, MaasModels::ClusterId)
                        .to(Clusters::Table, Clusters::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_maas_models_market_cluster")
                .table(MaasModels::Table)
                .col(MaasModels::MarketplaceModelId)
                .col(MaasModels::ClusterId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("ix_maas_models_cluster").table(MaasModels::Table).col(MaasModels::ClusterId).to_owned())
            .await?;

        m.create_table(
            Table::create()
                .table(Endpoints::Table)
                .col(pk(Endpoints::Id))
                .col(ColumnDef::new(Endpoints::MaasModelId).big_integer().not_null())
                .col(ColumnDef::new(Endpoints::Position).integer().not_null())
                .col(ColumnDef::new(Endpoints::ModelId).string_len(256).not_null())
                .col(ColumnDef::new(Endpoints::Url).string_len(2048).not_null())
                // AES-256-GCM ciphertext (nonce ‖ ct, base64); never sent to a browser.
                .col(ColumnDef::new(Endpoints::ApiKeyEnc).text().null())
                .col(ColumnDef::new(Endpoints::Weight).integer().not_null().check(Expr::col(Endpoints::Weight).between(0, 100)))
                .foreign_key(
                    ForeignKey::create()
                        .from(Endpoints::Table, Endpoints::MaasModelId)
                        .to(MaasModels::Table, MaasModels::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_endpoints_model")
                .table(Endpoints::Table)
                .col(Endpoints::MaasModelId)
                .col(Endpoints::Position)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RateLimitRules::Table)
                .col(pk(RateLimitRules::Id))
                .col(ColumnDef::new(RateLimitRules::MaasModelId).big_integer().not_null())
                .col(ColumnDef::new(RateLimitRules::Position).integer().not_null())
                .col(
                    ColumnDef::new(RateLimitRules::Target)
                        .string_len(16)
                        .not_null()
                        .check(Expr::col(RateLimitRules::Target).is_in(["api_key", "workspace"])),
                )
                .col(ColumnDef::new(RateLimitRules::WorkspaceId).big_integer().not_null())
                .col(ColumnDef::new(RateLimitRules::ApiKeyId).big_integer().null())
                .col(
                    ColumnDef::new(RateLimitRules::LimitRequests)
                        .big_integer()
                        .not_null()
                        .check(Expr::col(RateLimitRules::LimitRequests).gte(1)),
                )
                .col(
                    ColumnDef::new(RateLimitRules::DurationSecs)
                        .big_integer()
                        .not_null()
                        .check(Expr::col(RateLimitRules::DurationSecs).gte(1)),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(RateLimitRules::Table, RateLimitRules::MaasModelId)
                        .to(MaasModels::Table, MaasModels::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(RateLimitRules::Table, RateLimitRules::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(RateLimitRules::Table, RateLimitRules::ApiKeyId)
                        .to(ApiKeys::Table, ApiKeys::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // "No duplicate rules": one rule per subject and window length. COALESCE because NULLs
        // are distinct in unique indexes on both SQLite and PostgreSQL.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_rules_subject ON rate_limit_rules \
             (maas_model_id, target, workspace_id, COALESCE(api_key_id, 0), duration_secs)",
            )
            .await?;

        m.create_table(
            Table::create()
                .table(ConfigRevision::Table)
                .col(ColumnDef::new(ConfigRevision::Id).integer().not_null().primary_key())
                .col(ColumnDef::new(ConfigRevision::Revision).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.get_connection().execute_unprepared("INSERT INTO config_revision (id, revision) VALUES (1, 1)").await?;

        // What each serving gateway reports having applied (written by the gateways).
        m.create_table(
            Table::create()
                .table(GatewayStatus::Table)
                .col(ColumnDef::new(GatewayStatus::GatewayId).string_len(128).not_null().primary_key())
                .col(ColumnDef::new(GatewayStatus::Cluster).string_len(64).null())
                .col(ColumnDef::new(GatewayStatus::AppliedRevision).big_integer().not_null())
                .col(ColumnDef::new(GatewayStatus::Error).text().null())
                .col(ColumnDef::new(GatewayStatus::Detail).text().null())
                .col(ColumnDef::new(GatewayStatus::HeartbeatAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "gateway_status",
            "config_revision",
            "rate_limit_rules",
            "endpoints",
            "maas_models",
            "clusters",
            "marketplace_models",
            "api_keys",
            "workspace_members",
            "workspaces",
            "sessions",
            "users",
        ] {
            m.get_connection().execute_unprepared(&format!("DROP TABLE IF EXISTS {t}")).await?;
        }
        Ok(())
    }
}
