//! A caller's workspace API keys: create (secret shown once) and revoke.
use crate::api::keys::*;
use crate::api::usage::list_key_usage;
use crate::types::{compact_count, KeyUsage, UsageFigures};
use crate::api::workspaces::list_workspaces;
use crate::components::{field_errors, ErrorBox, FieldMsg, RequireRole};
use leptos::prelude::*;

#[component]
pub fn KeysPage() -> impl IntoView {
    view! { <RequireRole><Keys/></RequireRole> }
}

#[component]
fn Keys() -> impl IntoView {
    let create = ServerAction::<CreateKey>::new();
    let revoke = ServerAction::<RevokeKey>::new();
    let spaces = Resource::new(|| (), |_| list_workspaces());
    let keys = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_keys());
    let usage = Resource::new(|| (), |_| list_key_usage());
    let value = create.value();
    let errors = field_errors(move || value.get());
    view! {
        <h1>"API keys"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            // Both resources are awaited in this one Suspend: a Suspend nested in another without
            // its own Suspense boundary is not always awaited by SSR, which breaks hydration.
            {move || Suspend::new(async move {
                let (spaces, keys, usage) = (spaces.await, keys.await, usage.await);
                // Usage is a side panel: when it cannot load, the keys still show.
                let usage: Vec<KeyUsage> = usage.unwrap_or_default();
                let spaces = match spaces {
                    Ok(s) => s,
                    Err(e) => return view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                };
                if spaces.is_empty() {
                    return view! { <p class="empty">"You are not a member of any workspace yet: ask an operator to add you."</p> }.into_any();
                }
                let names: Vec<(i64, String)> = spaces.iter().map(|w| (w.id, w.name.clone())).collect();
                let names = StoredValue::new(names);
                view! {
                    <section class="card">
                        <h2>"New API key"</h2>
                        <ActionForm action=create attr:id="key-form" attr:class="row-form">
                            <select name="workspace_id" aria-label="Workspace">
                                {spaces.iter().map(|w| view! { <option value=w.id.to_string()>{w.name.clone()}</option> }).collect_view()}
                            </select>
                            <input name="name" placeholder="key name, e.g. ci-bot" aria-label="Key name"/>
                            <button type="submit" disabled=move || create.pending().get()>
                                {move || if create.pending().get() { "Creating…" } else { "Create key" }}
                            </button>
                        </ActionForm>
                        <FieldMsg errors field="name"/>
                        <FieldMsg errors field="workspace"/>
                        <ErrorBox value=value.into()/>
                        {move || value.get().and_then(Result::ok).map(|k| view! {
                            <div class="secret-once" id="new-secret">
                                <p>"Copy this secret now: it is shown only once and stored only as a hash."</p>
                                <code class="secret">{k.secret}</code>
                            </div>
                        })}
                    </section>
                    <ErrorBox value=revoke.value().into()/>
                    {
                        match keys {
                            Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                            Ok(list) if list.is_empty() => view! { <p class="empty">"No keys yet."</p> }.into_any(),
                            Ok(list) => view! {
                                <table class="list" id="key-table">
                                    <thead><tr><th>"Name"</th><th>"Key id"</th><th>"Workspace"</th><th>"Status"</th><th class="num">"Last 24 h"</th><th class="num">"Last 30 days"</th><th></th></tr></thead>
                                    <tbody>{list.into_iter().map(|k| {
                                        let ws = names.with_value(|n| n.iter().find(|(id, _)| *id == k.workspace_id).map(|(_, n)| n.clone()).unwrap_or_default());
                                        let id = k.id;
                                        let revoked = k.revoked;
                                        let u = usage.iter().find(|u| u.key_id == id).cloned().unwrap_or_default();
                                        view! {
                                            <tr data-name=k.name.clone()>
                                                <td>{k.name.clone()}</td><td><code>{k.public_id.clone()}</code></td><td>{ws}</td>
                                                <td>{if revoked { "revoked" } else { "active" }}</td>
                                                <td class="num" data-col="day">{spent(&u.day)}</td>
                                                <td class="num" data-col="month">{spent(&u.month)}</td>
                                                <td>{(!revoked).then(|| view! {
                                                    <button class="small danger" disabled=move || revoke.pending().get() on:click=move |_| {
                                                        if window().confirm_with_message("Revoke this key? Clients using it stop working at once.").unwrap_or(false) {
                                                            revoke.dispatch(RevokeKey { id });
                                                        }
                                                    }>"Revoke"</button>
                                                })}</td>
                                            </tr>
                                        }
                                    }).collect_view()}</tbody>
                                </table>
                            }.into_any(),
                        }
                    }
                }.into_any()
            })}
        </Transition>
    }
}

/// A key's requests and tokens in a period, saying when some calls' usage is unknown.
fn spent(u: &UsageFigures) -> String {
    let unknown = if u.usage_unknown > 0 { format!(" ({} unknown)", u.usage_unknown) } else { String::new() };
    format!("{} requests · {} tokens{unknown}", compact_count(u.requests), compact_count(u.total_tokens))
}
