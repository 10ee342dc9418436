//! The installation's currency (ISO 4217): every price and cost is in it, so it is set once.
use crate::ssr::entities::platform_setting;
use crate::ssr::SResult;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

/// The currency when the installation names none at its first start.
pub const DEFAULT_CURRENCY: &str = "USD";

/// The installation's currency (ISO 4217): written once, at the first start, from `wanted`
/// (`MAAS_CURRENCY`); afterwards `wanted` must name the same one or the start is refused:
/// every stored price and cost is in it.
pub async fn settle_currency(db: &impl ConnectionTrait, wanted: Option<&str>) -> Result<String, String> {
    let stored = platform_setting::Entity::find_by_id("currency".to_owned()).one(db).await.map_err(|e| e.to_string())?;
    match (stored, wanted) {
        (Some(s), Some(w)) if !s.value.eq_ignore_ascii_case(w) => {
            Err(format!("MAAS_CURRENCY={w}, but this installation's prices and costs are in {}: the currency is set once", s.value))
        }
        (Some(s), _) => Ok(s.value),
        (None, w) => {
            let code = w.unwrap_or(DEFAULT_CURRENCY).to_ascii_uppercase();
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("MAAS_CURRENCY={code}: a three-letter ISO 4217 code, e.g. USD or CNY"));
            }
            let row = platform_setting::ActiveModel { name: Set("currency".into()), value: Set(code.clone()) };
            if let Err(e) = platform_setting::Entity::insert(row).exec(db).await {
                // Another process starting at the same moment wrote it first: it must agree.
                let stored = platform_setting::Entity::find_by_id("currency".to_owned()).one(db).await.map_err(|e| e.to_string())?;
                return match stored {
                    Some(s) if s.value == code => Ok(code),
                    Some(s) => Err(format!("this installation's currency is {}, not {code}", s.value)),
                    None => Err(e.to_string()),
                };
            }
            Ok(code)
        }
    }
}

/// The installation's currency as stored ([`DEFAULT_CURRENCY`] before the first start wrote it).
pub async fn currency(db: &impl ConnectionTrait) -> SResult<String> {
    Ok(platform_setting::Entity::find_by_id("currency".to_owned()).one(db).await?.map_or_else(|| DEFAULT_CURRENCY.to_owned(), |s| s.value))
}
