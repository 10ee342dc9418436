//! A MaaS model's prices (issue 29): versions, each in force from a moment the operator picks
//! until the next. A version is added, never changed: a call is priced at the version in force
//! when it ended, so history is never rewritten. Figures are read exactly (`ssr::pricing`).
use super::currency::currency;
use super::models::claim;
use crate::error::AppError;
use crate::ssr::audit::{self, Action, Actor, Entity};
use crate::ssr::entities::{maas_model, model_price};
use crate::ssr::pricing::{format_price, parse_price, Rates};
use crate::ssr::{bump_revision, now, SResult};
use crate::types::{FieldErrors, PriceInput, PriceVersion};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionSession,
    TransactionTrait,
};

/// Tokens a "per million" price is per.
const MILLION: u64 = 1_000_000;
/// Versions a model keeps at most (a bounded list to load and show).
pub const MAX_VERSIONS: u64 = 100;
fn version(p: &model_price::Model, currency: &str) -> PriceVersion {
    PriceVersion {
        id: p.id,
        effective_from: p.effective_from,
        currency: currency.to_owned(),
        input_per_million: format_price(p.input_pico, MILLION),
        cached_input_per_million: format_price(p.cached_input_pico, MILLION),
        cache_write_per_million: p.cache_write_pico.map(|v| format_price(v, MILLION)),
        output_per_million: format_price(p.output_pico, MILLION),
        per_unit: format_price(p.unit_pico, 1),
        per_call: format_price(p.call_pico, 1),
    }
}

/// A model's price versions, oldest first.
pub async fn list(db: &impl ConnectionTrait, model_id: i64) -> SResult<Vec<PriceVersion>> {
    if maas_model::Entity::find_by_id(model_id).one(db).await?.is_none() {
        return Err(AppError::NotFound("MaaS model".into()).into());
    }
    let currency = currency(db).await?;
    let rows = model_price::Entity::find()
        .filter(model_price::Column::MaasModelId.eq(model_id))
        .order_by_asc(model_price::Column::EffectiveFrom)
        .all(db)
        .await?;
    Ok(rows.iter().map(|p| version(p, &currency)).collect())
}

/// The input's prices as rates, or each bad field's message.
pub fn rates(input: &PriceInput) -> Result<Rates, FieldErrors> {
    let mut e = FieldErrors::default();
    let mut read = |field: &str, text: &str, per: u64| {
        if text.trim().is_empty() {
            return 0;
        }
        parse_price(text, per).unwrap_or_else(|bad| {
            e.add(field, bad.0);
            0
        })
    };
    let r = Rates {
        input: read("input_per_million", &input.input_per_million, MILLION),
        cached_input: read("cached_input_per_million", &input.cached_input_per_million, MILLION),
        cache_write: (!input.cache_write_per_million.trim().is_empty())
            .then(|| read("cache_write_per_million", &input.cache_write_per_million, MILLION)),
        output: read("output_per_million", &input.output_per_million, MILLION),
        unit: read("per_unit", &input.per_unit, 1),
        call: read("per_call", &input.per_call, 1),
    };
    e.into_result().map(|()| r)
}

/// Adds a price version to a model, in force from `input.effective_from` (now when absent; never
/// in the past). Returns the version and the configuration revision that carries it to the
/// gateways. Audited.
pub async fn add<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &Actor,
    model_id: i64,
    input: &PriceInput,
) -> SResult<(PriceVersion, i64)> {
    let now = now();
    let read = rates(input);
    let mut errors = read.clone().err().unwrap_or_default();
    let from = input.effective_from.unwrap_or(now);
    if from < now {
        errors.add("effective_from", "must not be in the past: calls already made keep the price they were made at");
    } else if from > now + 10 * 366 * 86_400 {
        errors.add("effective_from", "at most ten years ahead");
    }
    errors.into_result()?;
    let r = read.map_err(AppError::Invalid)?;
    let txn = db.begin().await?;
    let rev = bump_revision(&txn).await?;
    claim(&txn, model_id, None, rev).await?;
    let taken = model_price::Entity::find()
        .filter(model_price::Column::MaasModelId.eq(model_id))
        .filter(model_price::Column::EffectiveFrom.eq(from))
        .one(&txn)
        .await?;
    if taken.is_some() {
        return Err(AppError::Invalid(FieldErrors::single("effective_from", "a version already takes effect at that moment")).into());
    }
    let count = model_price::Entity::find().filter(model_price::Column::MaasModelId.eq(model_id)).count(&txn).await?;
    if count >= MAX_VERSIONS {
        return Err(
            AppError::Invalid(FieldErrors::single("effective_from", &format!("at most {MAX_VERSIONS} price versions per model"))).into()
        );
    }
    let row = model_price::ActiveModel {
        maas_model_id: Set(model_id),
        effective_from: Set(from),
        input_pico: Set(r.input),
        cached_input_pico: Set(r.cached_input),
        cache_write_pico: Set(r.cache_write),
        output_pico: Set(r.output),
        unit_pico: Set(r.unit),
        call_pico: Set(r.call),
        created_at: Set(now),
        ..Default::default()
    };
    let id = model_price::Entity::insert(row).exec(&txn).await?.last_insert_id;
    let saved = model_price::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| AppError::NotFound("price version".into()))?;
    let v = version(&saved, &currency(&txn).await?);
    let after = serde_json::json!({"price_version": v});
    audit::record(&txn, actor, Entity::Model, model_id, Action::Update, None, Some(&after)).await?;
    txn.commit().await?;
    Ok((v, rev))
}
