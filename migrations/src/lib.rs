//! The schema of MaaS, owned here and nowhere else: the server runs these migrations at start
//! (and `maas migrate` runs them alone), and every test builds its database with them.
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_init;
mod m20261201_000001_session_idle;
mod m20261201_000002_usage;
mod m20261202_000001_usage_rollups;
mod m20261202_000002_usage_blocks;
mod m20261202_000003_key_scope;
mod m20261203_000001_rule_kinds;
mod m20261203_000002_quotas;
mod m20261203_000003_endpoint_caps;
mod m20261204_000001_reserve_output;
mod m20261205_000001_admin_api;
// Public: the flush benchmark measures against the indexes it replaced.
pub mod m20261206_000001_usage_append_indexes;
mod m20261207_000001_endpoint_apis;
mod m20261207_000002_usage_figures;
mod m20261207_000003_model_kinds;
mod m20261207_000004_routing;
mod m20261207_000005_fleet;
mod m20261207_000006_asked_model;
mod m20261207_000007_prices;
mod m20261207_000008_budgets;
mod m20261207_000009_cache_writes;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_init::Migration),
            Box::new(m20261201_000001_session_idle::Migration),
            Box::new(m20261201_000002_usage::Migration),
            Box::new(m20261202_000001_usage_rollups::Migration),
            Box::new(m20261202_000002_usage_blocks::Migration),
            Box::new(m20261202_000003_key_scope::Migration),
            Box::new(m20261203_000001_rule_kinds::Migration),
            Box::new(m20261203_000002_quotas::Migration),
            Box::new(m20261203_000003_endpoint_caps::Migration),
            Box::new(m20261204_000001_reserve_output::Migration),
            Box::new(m20261205_000001_admin_api::Migration),
            Box::new(m20261206_000001_usage_append_indexes::Migration),
            Box::new(m20261207_000001_endpoint_apis::Migration),
            Box::new(m20261207_000002_usage_figures::Migration),
            Box::new(m20261207_000003_model_kinds::Migration),
            Box::new(m20261207_000004_routing::Migration),
            Box::new(m20261207_000005_fleet::Migration),
            Box::new(m20261207_000006_asked_model::Migration),
            Box::new(m20261207_000007_prices::Migration),
            Box::new(m20261207_000008_budgets::Migration),
            Box::new(m20261207_000009_cache_writes::Migration),
        ]
    }
}
