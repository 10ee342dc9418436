//! The `maas` server: console (SSR + server functions), persistence bootstrap and the gateway,
//! behind one axum router, served by `serving` (the HTTP layer that bounds what clients hold).
pub mod admin_api;
pub mod bootstrap;
pub mod compose;
pub mod csrf;
pub mod gateway;
pub mod mock_kinds;
pub mod mock_native;
pub mod mock_upstream;
pub mod serving;
pub mod usage_upkeep;
pub mod web;
