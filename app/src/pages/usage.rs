//! The operator's Usage page: a period and filters (query string, so a view can be linked),
//! totals, charts drawn on the server, per-model and per-endpoint figures, the top workspaces
//! and keys by tokens, and the billing export.
//!
//! Read-only, so rendered whole on the server ([`render`], called by the server function): the
//! filter and the export are plain GET forms, and the browser's WASM holds only the component
//! that places the markup (building the tables in the browser cost ~50 KB of gzipped WASM).
use crate::api::usage::GetUsagePage;
#[cfg(feature = "ssr")]
use crate::components::DataTable;
use crate::error::AppError;
use crate::load::load;
#[cfg(feature = "ssr")]
use crate::types::*;
use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_location;
use leptos_router::hooks::use_query_map;

/// The server function is this page's guard (operators only), so the page does not wait for
/// the caller inside `RequireRole` first: nested in that Suspense, the report's resource was
/// created again when the caller resolved, and the server computed the report twice per render.
#[component]
pub fn UsagePage() -> impl IntoView {
    let query = use_query_map();
    let loc = use_location();
    let param = move |k: &str| query.with(|q| q.get(k).unwrap_or_default());
    let report = load(
        move || (param("range"), param("model"), param("workspace"), param("key")),
        |(range, model, workspace, key)| GetUsagePage { range, model, workspace, key },
    );
    view! {
        <h1>"Usage"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match report.await {
                    Ok(html) => view! { <div class="usage" inner_html=html></div> }.into_any(),
                    Err(AppError::Unauthenticated) => {
                        let next = loc.pathname.get_untracked();
                        view! { <Redirect path=format!("/login?next={next}")/> }.into_any()
                    }
                    Err(AppError::Forbidden) => view! { <p class="error-box">"This page is for operators."</p> }.into_any(),
                    Err(e) => view! { <p class="error-box" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The page's content as HTML.
#[cfg(feature = "ssr")]
pub fn render(r: UsageReport) -> String {
    page(r).to_html()
}

#[cfg(feature = "ssr")]
fn page(r: UsageReport) -> impl IntoView {
    let f = r.filter.clone();
    let choices = |name: &'static str, label: &'static str, all: &'static str, list: Vec<Choice>, cur: Option<i64>| {
        view! {
            <label>{label}
                <select name=name aria-label=label>
                    <option value="" selected=cur.is_none()>{all}</option>
                    {list.into_iter().map(|c| view! { <option value=c.id.to_string() selected=cur == Some(c.id)>{c.label}</option> }).collect_view()}
                </select>
            </label>
        }
    };
    let t = r.totals.clone();
    view! {
        <section class="card">
            <form method="get" action="/usage" id="usage-filter" class="row-form">
                <label>"Period"
                    <select name="range" aria-label="Period">
                        {UsageRange::ALL.into_iter().map(|x| view! { <option value=x.param() selected=x == f.range>{x.label()}</option> }).collect_view()}
                    </select>
                </label>
                {choices("model", "Model", "All models", r.model_choices, f.model)}
                {choices("workspace", "Workspace", "All workspaces", r.workspace_choices, f.workspace)}
                {choices("key", "API key", if f.workspace.is_some() { "All keys" } else { "All keys (choose a workspace to pick one)" }, r.key_choices, f.key)}
                <button type="submit">"Show"</button>
            </form>
            <p class="hint">"Times are UTC. Figures include every call the gateways recorded, refused ones too; usage reaches this page within seconds of a call's end."</p>
        </section>
        <section class="figures" id="usage-totals">
            {figure("Requests", compact_count(t.requests), format!("{} errors · {} rate limited · {} cancelled", t.errors, t.rate_limited, t.cancelled))}
            {figure("Tokens", compact_count(t.total_tokens), format!("{} in ({} cached, {} cache writes) · {} out", compact_count(t.input_tokens), compact_count(t.cached_tokens), compact_count(t.cache_write_tokens), compact_count(t.output_tokens)))}
            {figure("Spend", format!("{} {}", t.cost, r.currency), format!("{} calls without a price", t.cost_unknown))}
            {figure("Latency", format!("{} p50", latency_label(t.p50_ms)), format!("{} p95", latency_label(t.p95_ms)))}
            {figure("First token", format!("{} p50", latency_label(t.ttft_p50_ms)), format!("{} p95", latency_label(t.ttft_p95_ms)))}
        </section>
        {unknown_note(&t)}
        <section class="charts">
            {r.charts.into_iter().map(|c| view! { <figure class="chart" data-chart=c.title.clone() inner_html=c.svg></figure> }).collect_view()}
        </section>
        <section class="card">
            <h2>"Models"</h2>
            {table("usage-models", "Model", r.models, "No calls in this period.", true)}
            {more(r.models_hidden, "models", "choose one in the filter to see it")}
        </section>
        <section class="card">
            <h2>"Endpoints"</h2>
            <p class="hint">"Each upstream's own calls: a slow or failing one shows here first."</p>
            {table("usage-endpoints", "Endpoint", r.endpoints, "No upstream was called in this period.", true)}
            {more(r.endpoints_hidden, "endpoints", "choose a model in the filter to see its own")}
        </section>
        {(!r.fallbacks.is_empty()).then(|| view! {
            <section class="card">
                <h2>"Fallbacks"</h2>
                <p class="hint">"Calls a model's endpoints could not answer, answered by its fallback model (counted under that model above)."</p>
                {table("usage-fallbacks", "Asked for → answered by", r.fallbacks, "", false)}
            </section>
        })}
        <section class="card">
                <h2>"Top workspaces by tokens"</h2>
                {table("usage-workspaces", "Workspace", r.top_workspaces, "No calls in this period.", false)}
        </section>
        <section class="card">
                <h2>"Top API keys by tokens"</h2>
                {table("usage-keys", "API key", r.top_keys, "No calls in this period.", false)}
        </section>
        <section class="card">
            <h2>"Export for billing"</h2>
            <p class="hint">"One line per UTC day, workspace, API key and model: requests and input, output and total tokens (CSV)."</p>
            // A plain form, not the router's: the browser downloads the file.
            <form method="get" action="/usage/export.csv" id="usage-export" class="row-form">
                <label>"From" <input type="date" name="from" value=r.export_from required/></label>
                <label>"To" <input type="date" name="to" value=r.export_to required/></label>
                <button type="submit">"Download CSV"</button>
            </form>
        </section>
    }
}

#[cfg(feature = "ssr")]
fn more(hidden: usize, what: &'static str, how: &'static str) -> Option<impl IntoView> {
    (hidden > 0).then(|| view! { <p class="hint" data-more=what>{format!("{hidden} more {what} with fewer calls: {how}.")}</p> })
}

#[cfg(feature = "ssr")]
fn figure(title: &'static str, main: String, detail: String) -> impl IntoView {
    view! {
        <div class="figure" data-figure=title>
            <span class="figure-title">{title}</span>
            <span class="figure-main">{main}</span>
            <span class="figure-detail">{detail}</span>
        </div>
    }
}

#[cfg(feature = "ssr")]
fn unknown_note(t: &UsageFigures) -> Option<impl IntoView> {
    (t.usage_unknown > 0).then(|| {
        view! {
            <p class="hint" id="usage-unknown">
                {format!("Token usage is unknown for {} of {} calls (upstreams that report none, streams cut short): token figures count only the calls whose usage is known.", t.usage_unknown, t.requests)}
            </p>
        }
    })
}

#[cfg(feature = "ssr")]
const LATENCY_COLUMNS: &[crate::components::Col] = {
    use crate::components::{col, num};
    &[
        col(""),
        num("Requests"),
        num("Errors"),
        num("429"),
        num("Input tokens"),
        num("Output tokens"),
        num("Total tokens"),
        num("Spend"),
        num("p50"),
        num("p95"),
    ]
};

#[cfg(feature = "ssr")]
/// `latency`: with p50 / p95 columns (the per-key tables sum counts only, see `usage_rollups`).
fn table(id: &'static str, what: &'static str, rows: Vec<UsageLine>, empty: &'static str, latency: bool) -> impl IntoView {
    let mut columns = LATENCY_COLUMNS[..if latency { 10 } else { 8 }].to_vec();
    columns[0] = crate::components::col(what);
    view! {
        <DataTable id label=what columns rows=rows.len() nothing=move || empty>
                {rows.into_iter().map(|l| {
                    let u = l.figures;
                    let unknown = (u.usage_unknown > 0).then(|| format!("usage unknown for {}", u.usage_unknown));
                    let label = l.label.clone();
                    view! {
                        <tr data-label=label>
                            <td>{l.label}{(!l.detail.is_empty()).then(|| view! { <br/><span class="hint">{l.detail}</span> })}</td>
                            <td class="num" data-col="requests">{u.requests}{(u.units > 0).then(|| view! { <br/><span class="hint units">{format!("{} {}", u.units, u.unit.as_deref().unwrap_or("units"))}</span> })}</td>
                            <td class="num" data-col="errors">{u.errors}</td>
                            <td class="num" data-col="rate_limited">{u.rate_limited}</td>
                            <td class="num" data-col="input">{u.input_tokens}{(u.cached_tokens > 0).then(|| view! { <br/><span class="hint cached">{format!("{} cached", u.cached_tokens)}</span> })}</td>
                            <td class="num" data-col="output">{u.output_tokens}</td>
                            <td class="num" data-col="total">{u.total_tokens}{unknown.map(|n| view! { <br/><span class="hint">{n}</span> })}</td>
                            <td class="num" data-col="spend">{u.cost.clone()}{(u.cost_unknown > 0).then(|| view! { <br/><span class="hint">{format!("{} unpriced", u.cost_unknown)}</span> })}</td>
                            {latency.then(|| view! { <td class="num">{latency_label(u.p50_ms)}</td><td class="num">{latency_label(u.p95_ms)}</td> })}
                        </tr>
                    }
                }).collect_view()}
        </DataTable>
    }
}
