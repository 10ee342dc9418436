//! Domain services: plain async functions over a connection, one module per domain.
//! Multi-step writes run in one transaction that also bumps the configuration revision.
pub mod admin_tokens;
pub mod alerts;
pub mod audit_log;
pub mod catalog;
pub mod currency;
pub mod keys;
pub mod model_names;
pub mod models;
pub mod playground;
pub mod prices;
pub mod quotas;
pub mod usage;
pub mod visibility;
pub mod workspaces;
