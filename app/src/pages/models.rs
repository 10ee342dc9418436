//! The management list: server-side search and pagination, Enable toggles, edit and delete.
use crate::api::models::*;
use crate::call::Call;
use crate::components::{col, Col, ConfirmButton, DataTable, ErrorBox, Nothing, RequireRole};
use crate::load::load;
use crate::types::{compact_count, GatewayState, ModelRow};
use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn ModelsPage() -> impl IntoView {
    view! { <RequireRole operator=true><Models/></RequireRole> }
}

#[component]
fn Models() -> impl IntoView {
    let search = RwSignal::new(String::new());
    let page = RwSignal::new(0u64);
    let toggle = Call::<SetEnabled>::new();
    let delete = Call::<DeleteModel>::new();
    // Gateway status is live: refetch every 5 s (in the browser only; the Transition keeps the
    // current rows on screen while it reloads).
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        if let Ok(h) = set_interval(move || tick.update(|t| *t += 1), std::time::Duration::from_secs(5)) {
            on_cleanup(move || h.clear());
        }
    });
    let list = load(
        move || (search.get(), page.get(), toggle.saved().get(), delete.saved().get(), tick.get()),
        |(search, page, _, _, _)| ListModels { search, page },
    );
    view! {
        <div class="page-head">
            <h1>"MaaS models"</h1>
            <A href="/models/new" attr:class="button">"Create model"</A>
        </div>
        <input type="search" id="model-search" placeholder="Search name, Model ID, tag or cluster"
            prop:value=move || search.get()
            on:input:target=move |ev| { search.set(ev.target().value()); page.set(0); }/>
        <ErrorBox value=toggle.value()/>
        <ErrorBox value=delete.value()/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(p) => {
                        let pages = p.total.div_ceil(p.per_page).max(1);
                        let cur = p.page;
                        let query = search.get_untracked().trim().to_string();
                        // A fresh install says how to start; a search that finds nothing says so.
                        let nothing = Nothing::when_filtered(!query.is_empty(), format!("No models match \u{201c}{query}\u{201d}."), || view! {
                            "No MaaS models yet. " <A href="/models/new">"Create the first one"</A>
                            ": a published marketplace model on a cluster, with at least one upstream endpoint."
                        });
                        let empty = p.rows.is_empty();
                        view! {
                            <DataTable id="model-table" label="MaaS models" columns=COLUMNS rows=p.rows.len() nothing>
                                {p.rows.into_iter().map(|r| row(r, &p.currency, toggle, delete)).collect_view()}
                            </DataTable>
                            {(!empty).then(|| view! { <div class="pager">
                                <button class="small" disabled={cur == 0} on:click=move |_| page.update(|p| *p = p.saturating_sub(1))>"‹ Prev"</button>
                                <span>{format!("Page {} of {} · {} models", cur + 1, pages, p.total)}</span>
                                <button class="small" disabled={cur + 1 >= pages} on:click=move |_| page.update(|p| *p += 1)>"Next ›"</button>
                            </div> })}
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

const COLUMNS: &[Col] = &[
    col("Model name"),
    col("Model ID(s)"),
    col("Tags"),
    col("Status"),
    col("Cluster / access path"),
    col("Gateway"),
    col("Last 24 h"),
    col("Enabled"),
    col(""),
];

fn row(r: ModelRow, currency: &str, toggle: Call<SetEnabled>, delete: Call<DeleteModel>) -> impl IntoView {
    let currency = currency.to_owned();
    let id = r.id;
    let enabled = r.enabled;
    let name = r.name.clone();
    let u = r.usage_24h.clone();
    let (gw_class, gw_text) = match &r.gateway {
        GatewayState::Synced { replicas } => ("ok", format!("Synced {replicas}/{replicas}")),
        GatewayState::Pending { reason, .. } => ("pending", format!("Pending {reason}")),
        GatewayState::Error(e) => ("bad", format!("Error: {e}")),
    };
    let status = match (r.enabled, r.published) {
        (true, true) => "Serving",
        (true, false) => "Enabled (marketplace entry unpublished)",
        (false, _) => "Disabled",
    };
    view! {
        <tr data-name=r.name.clone() data-cluster=r.cluster.clone()>
            <td>{r.name.clone()}</td>
            <td>{r.model_ids.join(", ")}</td>
            <td>{r.tags.iter().map(|t| view! { <span class="tag">{t.clone()}</span> }).collect_view()}</td>
            <td class="status">{status}</td>
            <td>{r.cluster.clone()} <br/><code class="access-path">{r.access_path.clone()}</code></td>
            <td class=format!("gateway {gw_class}")>{gw_text}
                {(!r.cooling.is_empty()).then(|| view! {
                    <br/><span class="cooling">"Cooling down: " {r.cooling.join(", ")}</span>
                })}
                {r.gone.iter().map(|g| view! { <br/><span class="gone">{g.clone()}</span> }).collect_view()}
            </td>
            <td class="usage-24h">
                <A href=format!("/usage?model={id}")>{format!("{} calls", compact_count(u.requests))}</A>
                <br/><span class="hint">{format!("{} tokens", compact_count(u.total_tokens))}
                    {(u.usage_unknown > 0).then(|| format!(" (unknown for {})", u.usage_unknown))}
                    {(u.errors > 0).then(|| format!(" · {} errors", u.errors))}
                    {u.spend_text(&currency).map(|m| format!(" · {m}"))}</span>
            </td>
            <td>
                <label class="switch">
                    <input type="checkbox" role="switch" class="enable-toggle" aria-label=format!("Enable {name}")
                        prop:checked=enabled disabled=move || toggle.pending().get()
                        on:change:target=move |ev| { toggle.dispatch(SetEnabled { id, enabled: ev.target().checked() }); }/>
                    <span></span>
                </label>
            </td>
            <td class="actions">
                <A href=format!("/models/{id}/edit") attr:class="small button">"Edit"</A>
                <ConfirmButton what=format!("MaaS model {name}") consequences="The gateway stops serving it at once (callers get 404); its endpoints and rules go with it. Usage history stays. This cannot be undone."
                    on_confirm=Callback::new(move |_| { delete.dispatch(DeleteModel { id }); })/>
            </td>
        </tr>
    }
}
