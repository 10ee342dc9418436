//! Marketplace management and clusters (operators).
use crate::api::catalog::*;
use crate::components::{field_errors, ErrorBox, FieldMsg, RequireRole};
use leptos::prelude::*;

#[component]
pub fn MarketplaceAdminPage() -> impl IntoView {
    view! { <RequireRole operator=true><MarketplaceAdmin/></RequireRole> }
}

#[component]
fn MarketplaceAdmin() -> impl IntoView {
    let create = ServerAction::<CreateMarketplace>::new();
    let publish = ServerAction::<SetPublished>::new();
    let list = Resource::new(move || (create.version().get(), publish.version().get()), |_| list_marketplace());
    let value = create.value();
    let errors = field_errors(move || value.get());
    view! {
        <h1>"Marketplace management"</h1>
        <section class="card">
            <h2>"New marketplace model"</h2>
            <ActionForm action=create attr:class="grid-form" attr:id="marketplace-form">
                <label>"Name" <input name="name" placeholder="deepseek-chat"/></label>
                <FieldMsg errors field="name"/>
                <label>"Provider" <input name="provider" placeholder="DeepSeek"/></label>
                <FieldMsg errors field="provider"/>
                <label>"Description" <textarea name="description"></textarea></label>
                <FieldMsg errors field="description"/>
                <label>"Tags (comma-separated)" <input name="tags" placeholder="chat, 64k"/></label>
                <FieldMsg errors field="tags"/>
                <ErrorBox value=value.into()/>
                <button type="submit" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Creating…" } else { "Create" }}
                </button>
            </ActionForm>
        </section>
        <ErrorBox value=publish.value().into()/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(items) if items.is_empty() => view! { <p class="empty">"No marketplace models yet."</p> }.into_any(),
                    Ok(items) => view! {
                        <table class="list" id="marketplace-table">
                            <thead><tr><th>"Name"</th><th>"Provider"</th><th>"Tags"</th><th>"Published"</th><th></th></tr></thead>
                            <tbody>
                                {items.into_iter().map(|m| {
                                    let id = m.id;
                                    let published = m.published;
                                    view! {
                                        <tr data-name=m.name.clone()>
                                            <td>{m.name.clone()}</td>
                                            <td>{m.provider.clone()}</td>
                                            <td>{m.tags.join(", ")}</td>
                                            <td>{if published { "yes" } else { "no" }}</td>
                                            <td>
                                                <button class="small" disabled=move || publish.pending().get()
                                                    on:click=move |_| { publish.dispatch(SetPublished { id, published: !published }); }>
                                                    {if published { "Unpublish" } else { "Publish" }}
                                                </button>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
pub fn ClustersPage() -> impl IntoView {
    view! { <RequireRole operator=true><Clusters/></RequireRole> }
}

#[component]
fn Clusters() -> impl IntoView {
    let create = ServerAction::<CreateCluster>::new();
    let list = Resource::new(move || create.version().get(), |_| list_clusters());
    let value = create.value();
    let errors = field_errors(move || value.get());
    view! {
        <h1>"Clusters"</h1>
        <section class="card">
            <h2>"New entry cluster"</h2>
            <ActionForm action=create attr:class="grid-form" attr:id="cluster-form">
                <label>"Name" <input name="name" placeholder="cn-east"/></label>
                <FieldMsg errors field="name"/>
                <label>"Entry address" <input name="entry_address" placeholder="http://127.0.0.1:3000"/></label>
                <FieldMsg errors field="entry_address"/>
                <ErrorBox value=value.into()/>
                <button type="submit" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Creating…" } else { "Create" }}
                </button>
            </ActionForm>
        </section>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(items) if items.is_empty() => view! { <p class="empty">"No clusters yet."</p> }.into_any(),
                    Ok(items) => view! {
                        <table class="list" id="cluster-table">
                            <thead><tr><th>"Name"</th><th>"Entry address"</th><th>"Access path"</th></tr></thead>
                            <tbody>
                                {items.into_iter().map(|c| view! {
                                    <tr><td>{c.name.clone()}</td><td>{c.entry_address.clone()}</td>
                                    <td><code>{crate::types::access_path(&c.entry_address)}</code></td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
