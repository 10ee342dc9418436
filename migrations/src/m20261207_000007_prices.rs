//! Money (issue 29): the installation's currency, versioned prices per MaaS model, and each
//! usage row's cost.
//!
//! - `platform_settings`: name → value; `currency` is written once, at the first start.
//! - `model_prices`: one row per price version of a model, effective from a Unix second; a
//!   version is never changed once it applies (a new price is a new row), so a call is priced at
//!   the version in force when it ended. Prices are integers in pico-units (10⁻¹²) of the
//!   currency per token, unit or call (see `app::ssr::pricing`).
//! - Every usage table: `cost_nanos` (the calls' cost, nano-units, each call rounded once) and
//!   `cost_unknown` (calls with usage that no price covered: never counted as free).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PlatformSettings {
    Table,
    Name,
    Value,
}

#[derive(DeriveIden)]
enum ModelPrices {
    Table,
    Id,
    MaasModelId,
    EffectiveFrom,
    InputPico,
    CachedInputPico,
    OutputPico,
    UnitPico,
    CallPico,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MaasModels {
    Table,
    Id,
}

const USAGE_TABLES: [&str; 5] = ["usage_minutes", "usage_hours", "usage_quarters", "usage_model_blocks", "usage_key_blocks"];
const USAGE_COLUMNS: [&str; 2] = ["cost_nanos", "cost_unknown"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(PlatformSettings::Table)
                .col(ColumnDef::new(PlatformSettings::Name).string_len(64).not_null().primary_key())
                .col(ColumnDef::new(PlatformSettings::Value).string_len(1024).not_null())
                .to_owned(),
        )
        .await?;
        let price = |c: ModelPrices| ColumnDef::new(c).big_integer().not_null().default(0).to_owned();
        m.create_table(
            Table::create()
                .table(ModelPrices::Table)
                .col(ColumnDef::new(ModelPrices::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(ModelPrices::MaasModelId).big_integer().not_null())
                .col(ColumnDef::new(ModelPrices::EffectiveFrom).big_integer().not_null())
                .col(price(ModelPrices::InputPico))
                .col(price(ModelPrices::CachedInputPico))
                .col(price(ModelPrices::OutputPico))
                .col(price(ModelPrices::UnitPico))
                .col(price(ModelPrices::CallPico))
                .col(ColumnDef::new(ModelPrices::CreatedAt).big_integer().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(ModelPrices::Table, ModelPrices::MaasModelId)
                        .to(MaasModels::Table, MaasModels::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_model_prices_model_from")
                .table(ModelPrices::Table)
                .col(ModelPrices::MaasModelId)
                .col(ModelPrices::EffectiveFrom)
                .unique()
                .to_owned(),
        )
        .await?;
        for t in USAGE_TABLES {
            for c in USAGE_COLUMNS {
                let col = ColumnDef::new(Alias::new(c)).big_integer().not_null().default(0).to_owned();
                m.alter_table(Table::alter().table(Alias::new(t)).add_column(col).to_owned()).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in USAGE_TABLES {
            for c in USAGE_COLUMNS {
                m.alter_table(Table::alter().table(Alias::new(t)).drop_column(Alias::new(c)).to_owned()).await?;
            }
        }
        m.drop_table(Table::drop().table(ModelPrices::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(PlatformSettings::Table).to_owned()).await
    }
}
