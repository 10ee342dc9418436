//! The marketplace user view: what an API user can call, and how.
use crate::api::catalog::Offerings;
use crate::components::RequireRole;
use crate::load::load;
use leptos::prelude::*;

#[component]
pub fn MarketplacePage() -> impl IntoView {
    view! { <RequireRole><Marketplace/></RequireRole> }
}

#[component]
fn Marketplace() -> impl IntoView {
    let list = load(|| (), |_| Offerings {});
    // The playground's workspaces: the caller's own (an operator's: all).
    let spaces = load(|| (), |_| crate::api::workspaces::ListWorkspaces {});
    // The model whose playground is open (one at a time).
    let trying = RwSignal::new(None::<String>);
    view! {
        <h1>"Marketplace"</h1>
        <p class="hint">"Models you can call with any OpenAI-compatible client. Create a key on the API keys page."</p>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let spaces: Vec<(i64, String)> = spaces.await.unwrap_or_default().into_iter().map(|w| (w.id, w.name)).collect();
                let spaces = StoredValue::new(spaces);
                match list.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(items) if items.is_empty() => view! { <p class="empty">"No models are available yet."</p> }.into_any(),
                    Ok(items) => items.into_iter().map(|o| {
                        let snips = o.snippets.clone();
                        let name = StoredValue::new(o.name.clone());
                        let base_url = StoredValue::new(o.base_url.clone());
                        // The playground chats: other kinds have their snippets.
                        let chat = o.kind == crate::types::ModelKind::Chat;
                        view! {
                            <article class="card offering" data-name=o.name.clone()>
                                <h2>{o.name.clone()} <small>{o.provider.clone()}</small></h2>
                                <p class="kind">{o.kind.label()} " model"</p>
                                <p>{o.description.clone()}</p>
                                <p class="tags">{o.tags.iter().map(|t| view! { <span class="tag">{t.clone()}</span> }).collect_view()}</p>
                                <p>"Base URL: " <code class="access-path">{o.base_url.clone()}</code> " · model: " <code>{o.name.clone()}</code></p>
                                {snips.into_iter().map(|(lang, code)| {
                                    let copy = code.clone();
                                    view! {
                                        <details class="snippet">
                                            <summary>{lang.clone()}</summary>
                                            // Not inside the summary: a button there is a control inside a control.
                                            <button class="small" aria-label=format!("Copy the {lang} snippet") on:click=move |_| {
                                                let _ = window().navigator().clipboard().write_text(&copy);
                                            }>"Copy"</button>
                                            <pre><code>{code}</code></pre>
                                        </details>
                                    }
                                }).collect_view()}
                                <Show when=move || chat>
                                <button type="button" class="small pg-open" aria-expanded=move || (trying.get().as_deref() == Some(name.get_value().as_str())).to_string()
                                    on:click=move |_| trying.update(|t| *t = if t.as_deref() == Some(name.get_value().as_str()) { None } else { Some(name.get_value()) })>
                                    "Try it in the playground"
                                </button>
                                <Show when=move || trying.get().as_deref() == Some(name.get_value().as_str())>
                                    {move || if spaces.with_value(Vec::is_empty) {
                                        view! { <p class="hint">"Join a workspace to try models: the calls count against one."</p> }.into_any()
                                    } else {
                                        view! { <crate::pages::playground::Playground model=name.get_value() base_url=base_url.get_value() workspaces=spaces.get_value()/> }.into_any()
                                    }}
                                </Show>
                                </Show>
                            </article>
                        }
                    }).collect_view().into_any(),
                }
            })}
        </Suspense>
    }
}
