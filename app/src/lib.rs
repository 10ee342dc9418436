#![recursion_limit = "512"]
//! MaaS console: shared types, server functions, and the Leptos app (SSR + hydration).
pub mod api;
pub mod call;
pub mod components;
pub mod days;
pub mod error;
pub mod load;
pub mod pages;
pub mod types;
pub mod validate;

#[cfg(feature = "ssr")]
pub mod ssr;

use crate::load::load;
use leptos::prelude::*;
use leptos_router::{
    components::{FlatRoutes, Route, Router},
    path, SsrMode,
};

// Pages render once their data is loaded (`SsrMode::Async`): the console's pages are small,
// and it lets a page answer with a real 302 to the login page instead of a streamed 200.

/// The HTML document around the app (server side only renders it).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>"MaaS console"</title>
                <link rel="stylesheet" href="/pkg/maas.css"/>
                <link rel="icon" href="data:,"/>
                <HydrationScripts options/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    let me = load(|| (), |_| api::account::Me {});
    provide_context(components::Me(me));
    view! {
        <Router>
            <components::Nav/>
            <main>
                <FlatRoutes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                    <Route path=path!("/") view=pages::home::Home ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=pages::login::LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/models") view=pages::models::ModelsPage ssr=SsrMode::Async/>
                    <Route path=path!("/models/new") view=pages::model_form::NewModelPage ssr=SsrMode::Async/>
                    <Route path=path!("/models/:id/edit") view=pages::model_form::EditModelPage ssr=SsrMode::Async/>
                    <Route path=path!("/marketplace/manage") view=pages::catalog::MarketplaceAdminPage ssr=SsrMode::Async/>
                    <Route path=path!("/clusters") view=pages::catalog::ClustersPage ssr=SsrMode::Async/>
                    <Route path=path!("/workspaces") view=pages::workspaces::WorkspacesPage ssr=SsrMode::Async/>
                    <Route path=path!("/keys") view=pages::keys::KeysPage ssr=SsrMode::Async/>
                    <Route path=path!("/marketplace") view=pages::marketplace::MarketplacePage ssr=SsrMode::Async/>
                    <Route path=path!("/usage") view=pages::usage::UsagePage ssr=SsrMode::Async/>
                    <Route path=path!("/admin-tokens") view=pages::admin_tokens::AdminTokensPage ssr=SsrMode::Async/>
                    <Route path=path!("/audit") view=pages::audit::AuditPage ssr=SsrMode::Async/>
                </FlatRoutes>
            </main>
        </Router>
    }
}
