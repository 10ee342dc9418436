//! The edit page's prices: the model's price versions (rendered on the server, as the health
//! table is: the bundle carries no view of its own for a read-only table) and the form that
//! adds a version, from now or from a later moment.
use crate::api::models::{AddModelPrice, ModelPrices};
use crate::call::{Call, CallForm};
use crate::components::{field_errors, on_success, ErrorBox, SubmitButton, TextField};
use leptos::prelude::*;

/// `html`: the versions' table as the page loaded it (with the page's other data, in its one
/// `Suspense`: no nested one to hydrate); read again after each version added.
#[component]
pub fn Prices(id: i64, html: String) -> impl IntoView {
    let add = Call::<AddModelPrice>::new();
    let reload = Call::<ModelPrices>::new();
    on_success(add.value(), move || reload.dispatch(ModelPrices { id }));
    let reloaded = reload.value();
    let table = move || match reloaded.get() {
        Some(Ok(h)) => h,
        _ => html.clone(),
    };
    let value = add.value();
    let errors = field_errors(move || value.get());
    view! {
        <div id="prices" inner_html=table/>
        <CallForm call=add attr:class="price-form">
            <input type="hidden" name="id" value=id.to_string()/>
            <TextField label="Input per million tokens" name="input_per_million" errors/>
            <TextField label="Cached input per million" name="cached_input_per_million" errors hint="empty: 0"/>
            <TextField label="Cache writes per million" name="cache_write_per_million" errors hint="empty: as input"/>
            <TextField label="Output per million tokens" name="output_per_million" errors/>
            <TextField label="Per unit" name="per_unit" errors hint="document, character, image or second, by the model's kind"/>
            <TextField label="Per call" name="per_call" errors/>
            <TextField label="From (UTC)" name="effective_from" errors placeholder="now, or 2027-01-01 00:00"/>
            <ErrorBox value/>
            <SubmitButton pending=add.pending() label="Add price version" busy="Saving…"/>
        </CallForm>
    }
}

/// The versions as an HTML table, the one in force at `now` marked.
#[cfg(feature = "ssr")]
pub fn render(versions: Vec<crate::types::PriceVersion>, now: i64) -> String {
    let in_force = versions.iter().filter(|v| v.effective_from <= now).max_by_key(|v| v.effective_from).map(|v| v.id);
    let currency = versions.first().map(|v| v.currency.clone()).unwrap_or_default();
    if versions.is_empty() {
        return view! { <p class="hint">"No price: calls to this model have an unknown cost, and money budgets refuse them unless told to let them through."</p> }.to_html();
    }
    view! {
        <div class="table-scroll" tabindex="0" role="region" aria-label="Price versions"><table id="price-versions">
            <caption>{format!("Prices in {currency}")}</caption>
            <thead><tr><th>"From (UTC)"</th><th>"Input / M"</th><th>"Cached input / M"</th><th>"Cache writes / M"</th><th>"Output / M"</th><th>"Per unit"</th><th>"Per call"</th><th></th></tr></thead>
            <tbody>
                {versions.into_iter().map(|v| view! {
                    <tr data-from=v.effective_from>
                        <td>{crate::days::format_utc(v.effective_from)}</td>
                        <td class="num">{v.input_per_million}</td>
                        <td class="num">{v.cached_input_per_million}</td>
                        <td class="num">{v.cache_write_per_million.unwrap_or_else(|| "as input".into())}</td>
                        <td class="num">{v.output_per_million}</td>
                        <td class="num">{v.per_unit}</td>
                        <td class="num">{v.per_call}</td>
                        <td>{match (Some(v.id) == in_force, v.effective_from > now) {
                            (true, _) => "in force",
                            (_, true) => "scheduled",
                            _ => "",
                        }}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></div>
    }
    .to_html()
}
