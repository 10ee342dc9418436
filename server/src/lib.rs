//! The `maas` server: console (SSR + server functions), persistence bootstrap, and (next) the
//! gateway, all behind one axum router.
pub mod bootstrap;
pub mod gateway;
pub mod mock_upstream;
pub mod web;
