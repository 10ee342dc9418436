pub mod catalog;
pub mod home;
pub mod keys;
pub mod login;
pub mod marketplace;
pub mod model_form;
pub mod models;
pub mod workspaces;
