//! Fleet routing: fallback models, a retry policy and active health checks per MaaS model, and
//! the health the probers share.
//!
//! `endpoint_health` is one row per probed endpoint: its state as the cluster's prober last
//! judged it, its run of like results, and which gateway probes it until when (a lease, so that
//! one replica probes each endpoint however many serve the cluster). `endpoint_health_events`
//! keeps its transitions (when, why) for the console.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MaasModels {
    Table,
    Fallbacks,
    RetryPolicy,
    HealthCheck,
}

#[derive(DeriveIden)]
enum Endpoints {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum EndpointHealth {
    Table,
    EndpointId,
    Healthy,
    Streak,
    Since,
    Reason,
    CheckedAt,
    Prober,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum EndpointHealthEvents {
    Table,
    Id,
    EndpointId,
    At,
    Healthy,
    Reason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let fallbacks = ColumnDef::new(MaasModels::Fallbacks).string_len(1024).not_null().default("").to_owned();
        m.alter_table(Table::alter().table(MaasModels::Table).add_column(fallbacks).to_owned()).await?;
        let retry = ColumnDef::new(MaasModels::RetryPolicy).string_len(512).null().to_owned();
        m.alter_table(Table::alter().table(MaasModels::Table).add_column(retry).to_owned()).await?;
        let check = ColumnDef::new(MaasModels::HealthCheck).string_len(512).null().to_owned();
        m.alter_table(Table::alter().table(MaasModels::Table).add_column(check).to_owned()).await?;
        m.create_table(
            Table::create()
                .table(EndpointHealth::Table)
                .col(ColumnDef::new(EndpointHealth::EndpointId).big_integer().not_null().primary_key())
                .col(ColumnDef::new(EndpointHealth::Healthy).boolean().not_null().default(true))
                .col(ColumnDef::new(EndpointHealth::Streak).integer().not_null().default(0))
                .col(ColumnDef::new(EndpointHealth::Since).big_integer().not_null())
                .col(ColumnDef::new(EndpointHealth::Reason).string_len(512).not_null().default(""))
                .col(ColumnDef::new(EndpointHealth::CheckedAt).big_integer().not_null().default(0))
                .col(ColumnDef::new(EndpointHealth::Prober).string_len(128).null())
                .col(ColumnDef::new(EndpointHealth::LeaseUntil).big_integer().not_null().default(0))
                .foreign_key(
                    ForeignKey::create()
                        .from(EndpointHealth::Table, EndpointHealth::EndpointId)
                        .to(Endpoints::Table, Endpoints::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(EndpointHealthEvents::Table)
                .col(ColumnDef::new(EndpointHealthEvents::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(EndpointHealthEvents::EndpointId).big_integer().not_null())
                .col(ColumnDef::new(EndpointHealthEvents::At).big_integer().not_null())
                .col(ColumnDef::new(EndpointHealthEvents::Healthy).boolean().not_null())
                .col(ColumnDef::new(EndpointHealthEvents::Reason).string_len(512).not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(EndpointHealthEvents::Table, EndpointHealthEvents::EndpointId)
                        .to(Endpoints::Table, Endpoints::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_endpoint_health_events_endpoint")
                .table(EndpointHealthEvents::Table)
                .col(EndpointHealthEvents::EndpointId)
                .col(EndpointHealthEvents::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(EndpointHealthEvents::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(EndpointHealth::Table).to_owned()).await?;
        for c in [MaasModels::HealthCheck, MaasModels::RetryPolicy, MaasModels::Fallbacks] {
            m.alter_table(Table::alter().table(MaasModels::Table).drop_column(c).to_owned()).await?;
        }
        Ok(())
    }
}
