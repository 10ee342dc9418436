//! What kind of model each marketplace model is (`chat`, `embedding`, `rerank`,
//! `speech_to_text`, `text_to_speech`, `image`): the gateway serves a model only the operations
//! of its kind. Existing models are chat, except those whose recorded calls were all
//! embeddings, which become embedding models (so an upgrade keeps serving them).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MarketplaceModels {
    Table,
    Kind,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let col = ColumnDef::new(MarketplaceModels::Kind).string_len(32).not_null().default("chat").to_owned();
        m.alter_table(Table::alter().table(MarketplaceModels::Table).add_column(col).to_owned()).await?;
        let served = |ops: &str| {
            format!(
                "SELECT mm.marketplace_model_id FROM maas_models mm JOIN usage_hours u ON u.maas_model_id = mm.id WHERE u.operation {ops}"
            )
        };
        let sql = format!(
            "UPDATE marketplace_models SET kind = 'embedding' WHERE id IN ({}) AND id NOT IN ({})",
            served("= 'embeddings'"),
            served("<> 'embeddings'")
        );
        m.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(MarketplaceModels::Table).drop_column(MarketplaceModels::Kind).to_owned()).await
    }
}
