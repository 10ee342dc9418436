//! The audit log: every change made in the console or through the admin API, who made it,
//! when, and the fields that moved (secrets only as "set" / "cleared"). Filtered by actor,
//! kind of entity and days (query string, so a view can be linked), exported as CSV.
//!
//! Read-only, so rendered on the server like the Usage page ([`render`]): the browser's WASM
//! only places the markup.
use crate::api::admin::GetAuditPage;
#[cfg(feature = "ssr")]
use crate::components::{DataTable, Nothing};
use crate::error::AppError;
use crate::load::load;
#[cfg(feature = "ssr")]
use crate::types::*;
use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::{use_location, use_query_map};

pub const PER_PAGE: u64 = 50;

#[cfg(feature = "ssr")]
const COLUMNS: &[crate::components::Col] = {
    use crate::components::col;
    &[col("When"), col("Who"), col("Via"), col("What"), col("Action"), col("Changes")]
};

/// The server function is the guard (operators only).
#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let loc = use_location();
    let param = move |k: &str| query.with(|q| q.get(k).unwrap_or_default());
    let page = load(
        move || (param("actor"), param("entity"), param("from"), param("to"), param("page").parse::<u64>().unwrap_or(1).max(1) - 1),
        |(actor, entity, from, to, page)| GetAuditPage { actor, entity, from, to, page },
    );
    view! {
        <h1>"Audit log"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(html) => view! { <div class="audit" inner_html=html></div> }.into_any(),
                    Err(AppError::Unauthenticated) => {
                        let next = loc.pathname.get_untracked();
                        view! { <Redirect path=format!("/login?next={next}")/> }.into_any()
                    }
                    Err(AppError::Forbidden) => view! { <p class="error-box">"This page is for operators."</p> }.into_any(),
                    Err(AppError::Invalid(f)) => view! { <p class="error-box" role="alert">{f.0.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ")}</p> }.into_any(),
                    Err(e) => view! { <p class="error-box" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The page's content as HTML.
#[cfg(feature = "ssr")]
pub fn render(f: &AuditFilter, page: u64, list: AuditPage, actors: Vec<String>) -> String {
    let entities = crate::ssr::audit::Entity::ALL.map(|e| e.as_str());
    let qs = |p: u64| {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-_.:".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        };
        format!("actor={}&entity={}&from={}&to={}&page={}", enc(&f.actor), enc(&f.entity), enc(&f.from), enc(&f.to), p)
    };
    let pages = list.total.div_ceil(PER_PAGE).max(1);
    let export = format!("/audit/export.csv?{}", qs(1));
    let (prev, next) = ((page > 0).then(|| format!("/audit?{}", qs(page))), (page + 1 < pages).then(|| format!("/audit?{}", qs(page + 2))));
    let f = f.clone();
    view! {
        <section class="card">
            <form method="get" action="/audit" id="audit-filter" class="row-form">
                <label>"Actor"
                    <select name="actor" aria-label="Actor">
                        <option value="" selected=f.actor.is_empty()>"Anyone"</option>
                        {actors.into_iter().map(|a| view! { <option value=a.clone() selected=a == f.actor>{a.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Entity"
                    <select name="entity" aria-label="Entity">
                        <option value="" selected=f.entity.is_empty()>"Everything"</option>
                        {entities.into_iter().map(|e| view! { <option value=e selected=e == f.entity>{e.replace('_', " ")}</option> }).collect_view()}
                    </select>
                </label>
                <label>"From" <input type="date" name="from" value=f.from.clone() aria-label="From"/></label>
                <label>"To" <input type="date" name="to" value=f.to.clone() aria-label="To"/></label>
                <button type="submit">"Show"</button>
                <a class="button" href=export id="audit-export">"Download CSV"</a>
            </form>
            <p class="hint">"Times are UTC. Every change is here, made in the console or through the admin API; secrets appear only as \"set\", \"replaced\" or \"cleared\"."</p>
        </section>
        {
            let filtered = !(f.actor.is_empty() && f.entity.is_empty() && f.from.is_empty() && f.to.is_empty());
            let nothing = Nothing::when_filtered(filtered, "No change matches this filter.".into(), || "No changes yet: every change made here or through the admin API will be listed.");
            let rows = list.items.len();
            view! {
                {(rows > 0).then(|| view! { <p class="hint" id="audit-count">{format!("{} change(s); page {} of {}", list.total, page + 1, pages)}</p> })}
                <DataTable id="audit-table" label="Audit log" columns=COLUMNS rows nothing>
                    {list.items.into_iter().map(|e| { let (entity, actor) = (e.entity.clone(), e.actor.clone()); view! {
                        <tr data-entity=entity data-actor=actor>
                            <td>{crate::days::format_utc(e.at)}</td>
                            <td>{e.actor}</td>
                            <td>{e.via}</td>
                            <td>{format!("{} #{}", e.entity.replace('_', " "), e.entity_id)}</td>
                            <td>{e.action}</td>
                            <td><code class="diff">{e.diff}</code></td>
                        </tr>
                    }}).collect_view()}
                </DataTable>
                <p class="pager">
                    {prev.map(|h| view! { <a href=h>"← Newer"</a> " " })}
                    {next.map(|h| view! { <a href=h>"Older →"</a> })}
                </p>
            }
        }
    }
    .to_html()
}
