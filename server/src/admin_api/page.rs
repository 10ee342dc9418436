//! Page-numbered lists: `?page=1&per_page=50`, every answer with its total.
use super::error::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_PER_PAGE: u64 = 50;
pub const MAX_PER_PAGE: u64 = 200;

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From 1 (the default).
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<u64>,
    /// 1 to 200 (default 50; the models list takes at most 100).
    #[param(minimum = 1, maximum = 200)]
    pub per_page: Option<u64>,
}

impl PageQuery {
    /// The page as (0-based index, size), or the field that is out of range.
    pub fn bounds(&self, max: u64) -> ApiResult<(u64, u64)> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE.min(max));
        if page == 0 || page > app::validate::MAX_PAGE {
            return Err(ApiError::field("page", &format!("from 1 to {}", app::validate::MAX_PAGE)));
        }
        if per_page == 0 || per_page > max {
            return Err(ApiError::field("per_page", &format!("from 1 to {max}")));
        }
        Ok((page - 1, per_page))
    }
}

#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// All matching items, on every page.
    pub total: u64,
    pub page: u64,
    pub per_page: u64,
}

impl<T> Page<T> {
    /// One page of a list the service returned whole (the small lists: marketplace, clusters,
    /// workspaces, users, keys).
    pub fn of(all: Vec<T>, q: &PageQuery) -> ApiResult<Self> {
        let (page, per_page) = q.bounds(MAX_PER_PAGE)?;
        let total = all.len() as u64;
        let items = all.into_iter().skip((page * per_page) as usize).take(per_page as usize).collect();
        Ok(Page { items, total, page: page + 1, per_page })
    }
}

/// Case-insensitive "contains" for the lists' `search` filter.
pub fn matches(search: &Option<String>, fields: &[&str]) -> bool {
    match search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => true,
        Some(s) => {
            let s = s.to_lowercase();
            fields.iter().any(|f| f.to_lowercase().contains(&s))
        }
    }
}
