//! Marketplace management and clusters (operators): create, edit in place, delete (asked in
//! the page, refused with the reason while MaaS models depend on them).
use crate::api::catalog::*;
use crate::call::{Call, CallForm};
use crate::components::{
    col, create_form, field_errors, on_success, Col, ConfirmButton, DataTable, ErrorBox, Notice, RequireRole, SubmitButton, TextField,
};
use crate::load::load;
use crate::types::{Cluster, MarketplaceModel, ModelKind};
use leptos::prelude::*;

const MARKETPLACE_COLUMNS: &[Col] = &[col("Name"), col("Kind"), col("Provider"), col("Tags"), col("Published"), col("")];

/// The kind of model, which decides the operations the gateway serves it.
#[component]
fn KindField(#[prop(optional)] value: ModelKind) -> impl IntoView {
    view! {
        <div class="field">
            <label>"Kind"
                <select name="kind" class="kind-select">
                    {ModelKind::ALL.into_iter().map(|k| view! { <option value=k.as_str() selected=k == value>{k.label()}</option> }).collect_view()}
                </select>
            </label>
            <small class="hint">"The APIs the gateway serves it on (a chat call to a rerank model is refused)."</small>
        </div>
    }
}
const CLUSTER_COLUMNS: &[Col] = &[col("Name"), col("Entry address"), col("Access path"), col("")];

#[component]
pub fn MarketplaceAdminPage() -> impl IntoView {
    view! { <RequireRole operator=true><MarketplaceAdmin/></RequireRole> }
}

#[component]
fn MarketplaceAdmin() -> impl IntoView {
    let create = Call::<CreateMarketplace>::new();
    let publish = Call::<SetPublished>::new();
    let update = Call::<UpdateMarketplace>::new();
    let delete = Call::<DeleteMarketplace>::new();
    let list =
        load(move || (create.saved().get(), publish.saved().get(), update.saved().get(), delete.saved().get()), |_| ListMarketplace {});
    let value = create.value();
    let (errors, form) = create_form(value);
    let created = Signal::derive(move || {
        value.get().and_then(Result::ok).map(|id| {
            (
                "Marketplace model created (unpublished): publish it when it is ready.".to_string(),
                Some((format!("#marketplace-{id}"), "Show it".to_string())),
            )
        })
    });
    let editing = RwSignal::new(None::<i64>);
    on_success(update.value(), move || editing.set(None));
    let upd_val = update.value();
    let upd_err = field_errors(move || upd_val.get());
    view! {
        <h1>"Marketplace management"</h1>
        <section class="card">
            <h2>"New marketplace model"</h2>
            <CallForm call=create node_ref=form attr:class="grid-form" attr:id="marketplace-form">
                <TextField label="Name" name="name" errors placeholder="deepseek-chat" hint="What clients put in \"model\"."/>
                <TextField label="Provider" name="provider" errors placeholder="DeepSeek"/>
                <TextField label="Description" name="description" errors multiline=true/>
                <TextField label="Tags (comma-separated)" name="tags" errors placeholder="chat, 64k"/>
                <KindField/>
                <ErrorBox value=value/>
                <SubmitButton pending=create.pending() label="Create" busy="Creating…"/>
            </CallForm>
            <Notice message=created/>
        </section>
        <ErrorBox value=publish.value()/>
        <ErrorBox value=delete.value()/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(items) => view! {
                        <DataTable id="marketplace-table" label="Marketplace models" columns=MARKETPLACE_COLUMNS rows=items.len()
                            nothing=|| "No marketplace models yet: create the first one above (the name is what clients put in \"model\").">
                                {items.into_iter().map(|m| {
                                    let (id, published) = (m.id, m.published);
                                    let row = StoredValue::new(m.clone());
                                    view! {
                                        <tr data-name=m.name.clone() id=format!("marketplace-{id}")>
                                            <td>{m.name.clone()}</td>
                                            <td class="kind">{m.kind.label()}</td>
                                            <td>{m.provider.clone()}</td>
                                            <td>{m.tags.join(", ")}</td>
                                            <td>{if published { "yes" } else { "no" }}</td>
                                            <td class="row-actions">
                                                <button class="small" disabled=move || publish.pending().get()
                                                    on:click=move |_| { publish.dispatch(SetPublished { id, published: !published }); }>
                                                    {if published { "Unpublish" } else { "Publish" }}
                                                </button>
                                                <button class="small" aria-expanded=move || (editing.get() == Some(id)).to_string()
                                                    on:click=move |_| editing.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Edit"</button>
                                                <ConfirmButton what=format!("marketplace model {}", m.name) consequences="It disappears from the marketplace. Refused while MaaS models are built on it: delete those first."
                                                    on_confirm=Callback::new(move |_| { delete.dispatch(DeleteMarketplace { id }); })/>
                                            </td>
                                        </tr>
                                        <Show when=move || editing.get() == Some(id)>
                                            <tr class="editor-row"><td colspan="6">
                                                <MarketplaceEditor m=row.get_value() update errors=upd_err/>
                                            </td></tr>
                                        </Show>
                                    }
                                }).collect_view()}
                        </DataTable>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn MarketplaceEditor(
    m: MarketplaceModel,
    update: Call<UpdateMarketplace>,
    errors: Signal<Option<crate::types::FieldErrors>>,
) -> impl IntoView {
    view! {
        <CallForm call=update attr:class="grid-form" attr:id="marketplace-edit-form">
            <input type="hidden" name="id" value=m.id.to_string()/>
            <TextField label="Name" name="name" errors value=m.name.clone()/>
            <TextField label="Provider" name="provider" errors value=m.provider.clone()/>
            <TextField label="Description" name="description" errors multiline=true value=m.description.clone()/>
            <TextField label="Tags (comma-separated)" name="tags" errors value=m.tags.join(", ")/>
            <KindField value=m.kind/>
            <ErrorBox value=update.value()/>
            <SubmitButton pending=update.pending() label="Save changes" busy="Saving…"/>
        </CallForm>
    }
}

#[component]
pub fn ClustersPage() -> impl IntoView {
    view! { <RequireRole operator=true><Clusters/></RequireRole> }
}

#[component]
fn Clusters() -> impl IntoView {
    let create = Call::<CreateCluster>::new();
    let update = Call::<UpdateCluster>::new();
    let delete = Call::<DeleteCluster>::new();
    let list = load(move || (create.saved().get(), update.saved().get(), delete.saved().get()), |_| ListClusters {});
    let value = create.value();
    let (errors, form) = create_form(value);
    let created = Signal::derive(move || {
        value.get().and_then(Result::ok).map(|id| {
            (
                "Cluster created: choose it for a model under Models → Create model.".to_string(),
                Some((format!("#cluster-{id}"), "Show it".to_string())),
            )
        })
    });
    let editing = RwSignal::new(None::<i64>);
    on_success(update.value(), move || editing.set(None));
    let upd_val = update.value();
    let upd_err = field_errors(move || upd_val.get());
    view! {
        <h1>"Clusters"</h1>
        <section class="card">
            <h2>"New entry cluster"</h2>
            <CallForm call=create node_ref=form attr:class="grid-form" attr:id="cluster-form">
                <TextField label="Name" name="name" errors placeholder="cn-east"/>
                <TextField label="Entry address" name="entry_address" errors placeholder="http://127.0.0.1:3000" hint="The gateway's base URL as clients reach it."/>
                <ErrorBox value=value/>
                <SubmitButton pending=create.pending() label="Create" busy="Creating…"/>
            </CallForm>
            <Notice message=created/>
        </section>
        <ErrorBox value=delete.value()/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(items) => view! {
                        <DataTable id="cluster-table" label="Clusters" columns=CLUSTER_COLUMNS rows=items.len()
                            nothing=|| "No clusters yet: create one above with the address clients reach the gateway at.">
                                {items.into_iter().map(|c| {
                                    let id = c.id;
                                    let row = StoredValue::new(c.clone());
                                    view! {
                                        <tr data-name=c.name.clone() id=format!("cluster-{id}")><td>{c.name.clone()}</td><td>{c.entry_address.clone()}</td>
                                        <td><code>{crate::types::access_path(&c.entry_address)}</code></td>
                                        <td class="row-actions">
                                            <button class="small" aria-expanded=move || (editing.get() == Some(id)).to_string()
                                                on:click=move |_| editing.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Edit"</button>
                                            <ConfirmButton what=format!("cluster {}", c.name) consequences="Refused while models run on it: delete or move them first."
                                                on_confirm=Callback::new(move |_| { delete.dispatch(DeleteCluster { id }); })/>
                                        </td></tr>
                                        <Show when=move || editing.get() == Some(id)>
                                            <tr class="editor-row"><td colspan="4"><ClusterEditor c=row.get_value() update errors=upd_err/></td></tr>
                                        </Show>
                                    }
                                }).collect_view()}
                        </DataTable>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ClusterEditor(c: Cluster, update: Call<UpdateCluster>, errors: Signal<Option<crate::types::FieldErrors>>) -> impl IntoView {
    view! {
        <CallForm call=update attr:class="grid-form" attr:id="cluster-edit-form">
            <input type="hidden" name="id" value=c.id.to_string()/>
            <TextField label="Name" name="name" errors value=c.name.clone()/>
            <TextField label="Entry address" name="entry_address" errors value=c.entry_address.clone()/>
            <ErrorBox value=update.value()/>
            <SubmitButton pending=update.pending() label="Save changes" busy="Saving…"/>
        </CallForm>
    }
}
