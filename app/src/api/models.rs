// `add_model_price` takes a form's fields, flat as the form posts them (a nested struct would
// rename every field), and the server function macro's generated client repeats them.
#![allow(clippy::too_many_arguments)]
use crate::error::AppError;
use crate::types::{ModelDetail, ModelInput, ModelPage};
use leptos::prelude::*;
use server_fn::codec::{Json, Postcard};

#[server(endpoint = "models/list", output = Postcard)]
pub async fn list_models(search: String, page: u64) -> Result<ModelPage, AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(Need::Operator, |st, _| async move { models::list(&st.db, &search, page, 20).await }).await
}

#[server(endpoint = "models/get", output = Postcard)]
pub async fn get_model(id: i64) -> Result<ModelDetail, AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(Need::Operator, |st, _| async move { models::get(&st.db, id).await }).await
}

/// Each endpoint's health and its latest transitions, as HTML rendered here: the page only
/// places it (a view of its own would cost the bundle a few kilobytes for a read-only table).
#[server(endpoint = "models/health", output = Postcard)]
pub async fn model_health(id: i64) -> Result<String, AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(
        Need::Operator,
        |st, _| async move { Ok(crate::pages::model_health::render(models::endpoint_health(&st.db, id).await?)) },
    )
    .await
}

/// The model's price versions, as HTML rendered here (see [`model_health`]).
#[server(endpoint = "models/prices", output = Postcard)]
pub async fn model_prices(id: i64) -> Result<String, AppError> {
    use crate::ssr::{auth::Need, services::prices};
    super::edge::run(Need::Operator, |st, _| async move {
        Ok(crate::pages::model_prices::render(prices::list(&st.db, id).await?, crate::ssr::now()))
    })
    .await
}

/// Adds a price version to model `id`, from `effective_from` (`YYYY-MM-DD HH:MM` UTC; empty:
/// now). Prices are decimals of the platform currency.
#[server(endpoint = "models/prices/add", output = Postcard)]
pub async fn add_model_price(
    id: i64,
    input_per_million: String,
    cached_input_per_million: String,
    #[server(default)] cache_write_per_million: String,
    output_per_million: String,
    per_unit: String,
    per_call: String,
    effective_from: String,
) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::prices};
    super::edge::run(Need::Operator, |st, who| async move {
        let effective_from = match effective_from.trim() {
            "" | "now" => None,
            s => Some(
                crate::days::parse_utc(s)
                    .ok_or_else(|| AppError::field("effective_from", "a UTC time as 2027-01-01 00:00, or empty for now"))?,
            ),
        };
        let input = crate::types::PriceInput {
            effective_from,
            input_per_million,
            cached_input_per_million,
            cache_write_per_million,
            output_per_million,
            per_unit,
            per_call,
        };
        let (_, rev) = prices::add(&st.db, &crate::ssr::audit::Actor::console(&who), id, &input).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

#[server(endpoint = "models/form-options", output = Postcard)]
pub async fn form_options() -> Result<crate::types::FormOptions, AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(Need::Operator, |st, who| async move { models::form_options(&st.db, &who).await }).await
}

/// Creates (`id == None`) or updates a model; returns its id. `revision`: the one the edit
/// form loaded; the save is refused (412) when someone changed the model since.
#[server(endpoint = "models/save", input = Json, output = Postcard)]
pub async fn save_model(id: Option<i64>, #[server(default)] revision: Option<i64>, input: ModelInput) -> Result<i64, AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(Need::Operator, |st, who| async move {
        let actor = crate::ssr::audit::Actor::console(&who);
        let (id, rev) = match id {
            None => models::create(&st.db, &actor, &st.secrets, &input).await?,
            Some(id) => (id, models::update(&st.db, &actor, &st.secrets, id, revision, &input).await?),
        };
        st.config_changed(rev).await;
        Ok(id)
    })
    .await
}

#[server(endpoint = "models/enable", output = Postcard)]
pub async fn set_enabled(id: i64, enabled: bool) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(Need::Operator, |st, who| async move {
        let rev = models::set_enabled(&st.db, &crate::ssr::audit::Actor::console(&who), id, None, enabled).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}

#[server(endpoint = "models/delete", output = Postcard)]
pub async fn delete_model(id: i64) -> Result<(), AppError> {
    use crate::ssr::{auth::Need, services::models};
    super::edge::run(Need::Operator, |st, who| async move {
        let rev = models::delete(&st.db, &crate::ssr::audit::Actor::console(&who), id, None).await?;
        st.config_changed(rev).await;
        Ok(())
    })
    .await
}
