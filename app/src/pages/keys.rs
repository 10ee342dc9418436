//! A caller's workspace API keys: create (secret shown once), scope (last day, models) and
//! revoke.
use crate::api::keys::*;
use crate::api::usage::ListKeyUsage;
use crate::api::workspaces::ListWorkspaces;
use crate::call::{Call, CallForm};
use crate::components::{
    col, create_form, field_errors, num, on_success, Col, ConfirmButton, CopyButton, DataTable, ErrorBox, FieldMsg, Me, QuotaFields,
    RequireRole, SelectField, SubmitButton, TextField,
};
use crate::load::load;
use crate::types::{compact_count, ApiKeyInfo, Choice, KeyScope, KeyUsage, Role, UsageFigures};
use leptos::prelude::*;

#[component]
pub fn KeysPage() -> impl IntoView {
    view! { <RequireRole><Keys/></RequireRole> }
}

const COLUMNS: &[Col] = &[
    col("Name"),
    col("Key id"),
    col("Workspace"),
    col("Status"),
    col("Works until"),
    col("Models"),
    col("Quota"),
    num("Last 24 h"),
    num("Last 30 days"),
    col(""),
];

#[component]
fn Keys() -> impl IntoView {
    let create = Call::<CreateKey>::new();
    let revoke = Call::<RevokeKey>::new();
    let scope = Call::<SetKeyScope>::new();
    let quota = Call::<SetKeyQuota>::new();
    let quota_val = quota.value();
    let quota_err = field_errors(move || quota_val.get());
    // The key whose quota is being edited (operators).
    let quota_of = RwSignal::new(None::<i64>);
    // The list reloads after a saved quota or scope only: reloading after a refusal would
    // rebuild the open editor and lose what was typed in it.
    let saved = RwSignal::new(0u32);
    on_success(quota.value(), move || saved.update(|n| *n += 1));
    on_success(scope.value(), move || saved.update(|n| *n += 1));
    let Me(me) = expect_context::<Me>();
    let spaces = load(|| (), |_| ListWorkspaces {});
    let models = load(|| (), |_| ListKeyModels {});
    let rename = Call::<RenameKey>::new();
    let renaming = RwSignal::new(None::<i64>);
    on_success(rename.value(), move || {
        renaming.set(None);
        saved.update(|n| *n += 1);
    });
    let rename_val = rename.value();
    let rename_err = field_errors(move || rename_val.get());
    let keys = load(move || (create.saved().get(), revoke.saved().get(), saved.get()), |_| ListKeys {});
    // The key whose scope is being edited.
    let editing = RwSignal::new(None::<i64>);
    let usage = load(|| (), |_| ListKeyUsage {});
    let value = create.value();
    let (errors, form) = create_form(value);
    view! {
        <h1>"API keys"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            // Both resources are awaited in this one Suspend: a Suspend nested in another without
            // its own Suspense boundary is not always awaited by SSR, which breaks hydration.
            {move || Suspend::new(async move {
                let (spaces, keys, usage, models, me) = (spaces.await, keys.await, usage.await, models.await, me.await);
                let operator = matches!(me, Ok(Some(u)) if u.role == Role::Operator);
                let models = StoredValue::new(models.unwrap_or_default());
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
                        <CallForm call=create node_ref=form attr:id="key-form" attr:class="row-form">
                            <SelectField label="Workspace" name="workspace_id" field="workspace" errors options=spaces.iter().map(|w| (w.id.to_string(), w.name.clone())).collect()/>
                            <TextField label="Key name" name="name" errors placeholder="e.g. ci-bot"/>
                            <SubmitButton pending=create.pending() label="Create key" busy="Creating…"/>
                        </CallForm>
                        <ErrorBox value=value/>
                        {move || value.get().and_then(Result::ok).map(|k| view! {
                            <div class="secret-once" id="new-secret">
                                <p>"Copy this secret now: it is shown only once and stored only as a hash."</p>
                                <code class="secret">{k.secret.clone()}</code>
                                " " <CopyButton text=k.secret/>
                            </div>
                        })}
                    </section>
                    <ErrorBox value=revoke.value()/>
                    {
                        match keys {
                            Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                            Ok(list) => view! {
                                <DataTable id="key-table" label="API keys" columns=COLUMNS rows=list.len()
                                    nothing=|| "No keys yet: create one above; its secret is shown once.">
                                    {list.into_iter().map(|k| {
                                        let ws = names.with_value(|n| n.iter().find(|(id, _)| *id == k.workspace_id).map(|(_, n)| n.clone()).unwrap_or_default());
                                        let id = k.id;
                                        let revoked = k.revoked;
                                        let u = usage.iter().find(|u| u.key_id == id).cloned().unwrap_or_default();
                                        let (until, scoped) = models.with_value(|m| describe(&k, m));
                                        let status = if revoked { "revoked" } else if k.expired { "expired" } else { "active" };
                                        let key = StoredValue::new(k.clone());
                                        view! {
                                            <tr data-name=k.name.clone()>
                                                <td>{k.name.clone()}</td><td><code>{k.public_id.clone()}</code></td><td>{ws}</td>
                                                <td>{status}</td>
                                                <td data-col="until">{until}</td>
                                                <td data-col="models">{scoped}</td>
                                                <td data-col="quota" class:warn=k.quota.as_ref().is_some_and(|q| q.spent())>{k.quota.as_ref().map_or_else(|| "none".to_string(), |q| q.summary())}</td>
                                                <td class="num" data-col="day">{spent(&u.day, &u.currency)}</td>
                                                <td class="num" data-col="month">{spent(&u.month, &u.currency)}</td>
                                                <td>{(!revoked).then(|| view! {
                                                    <button class="small" on:click=move |_| editing.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Scope…"</button>
                                                    " "
                                                    {operator.then(|| view! {
                                                        <button class="small" on:click=move |_| quota_of.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Quota…"</button>
                                                        " "
                                                    })}
                                                    <button class="small" on:click=move |_| renaming.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Rename"</button>
                                                    " "
                                                    <ConfirmButton verb="Revoke" what=format!("key {}", key.with_value(|k| k.name.clone())) consequences="Clients using it get 401 from the next request on. This cannot be undone: they need a new key."
                                                        on_confirm=Callback::new(move |_| { revoke.dispatch(RevokeKey { id }); })/>
                                                })}</td>
                                            </tr>
                                            <Show when=move || renaming.get() == Some(id)>
                                                <tr class="editor-row"><td colspan="10">
                                                    <CallForm call=rename attr:class="row-form" attr:id="key-rename-form">
                                                        <input type="hidden" name="id" value=id.to_string()/>
                                                        <TextField label="New name" name="name" errors=rename_err value=key.with_value(|k| k.name.clone())/>
                                                        <SubmitButton pending=rename.pending() label="Rename" busy="Saving…"/>
                                                    </CallForm>
                                                    <ErrorBox value=rename_val/>
                                                </td></tr>
                                            </Show>
                                            <Show when=move || editing.get() == Some(id)>
                                                <tr class="editor-row"><td colspan="10">
                                                    <ScopeEditor key=key.get_value() models=models.get_value() operator action=scope/>
                                                </td></tr>
                                            </Show>
                                            <Show when=move || quota_of.get() == Some(id)>
                                                <tr class="editor-row"><td colspan="10">
                                                    <CallForm call=quota attr:class="quota-form">
                                                        <h3>"Quota of this key"</h3>
                                                        <input type="hidden" name="id" value=id.to_string()/>
                                                        <QuotaFields quota=key.with_value(|k| k.quota.clone()) errors=quota_err/>
                                                        <ErrorBox value=quota_val/>
                                                        <SubmitButton pending=quota.pending() label="Save quota" busy="Saving…"/>
                                                    </CallForm>
                                                </td></tr>
                                            </Show>
                                        }
                                    }).collect_view()}
                                </DataTable>
                            }.into_any(),
                        }
                    }
                }.into_any()
            })}
        </Transition>
    }
}

/// A key's requests, tokens and spend in a period, saying when some calls' usage is unknown.
fn spent(u: &UsageFigures, currency: &str) -> String {
    let unknown = if u.usage_unknown > 0 { format!(" ({} unknown)", u.usage_unknown) } else { String::new() };
    let money = u.spend_text(currency).map(|m| format!(" · {m}")).unwrap_or_default();
    format!("{} requests · {} tokens{unknown}{money}", compact_count(u.requests), compact_count(u.total_tokens))
}

/// "Works until" and "Models" of a key as the gateway applies them (both layers).
fn describe(k: &ApiKeyInfo, models: &[Choice]) -> (String, String) {
    let applied = k.own.within(&k.limit);
    let until = applied.last_day.unwrap_or_else(|| "no end".into());
    let scoped = match applied.models {
        None => "all models".into(),
        Some(ids) if ids.is_empty() => "none".into(),
        Some(ids) => ids
            .iter()
            .map(|id| models.iter().find(|c| c.id == *id).map_or_else(|| format!("#{id}"), |c| c.label.clone()))
            .collect::<Vec<_>>()
            .join(", "),
    };
    (until, scoped)
}

/// The editor of one layer of a key's scope: the operator's limit for operators, the holder's
/// own narrowing for members (who see the limit they work within).
#[component]
fn ScopeEditor(key: ApiKeyInfo, models: Vec<Choice>, operator: bool, action: Call<SetKeyScope>) -> impl IntoView {
    let layer: KeyScope = if operator { key.limit.clone() } else { key.own.clone() };
    let last_day = RwSignal::new(layer.last_day.clone().unwrap_or_default());
    let all = RwSignal::new(layer.models.is_none());
    let chosen = RwSignal::new(layer.models.clone().unwrap_or_default());
    let value = action.value();
    let errors = field_errors(move || value.get());
    let id = key.id;
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let models = chosen.get_untracked().iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        action.dispatch(SetKeyScope { id, last_day: last_day.get_untracked(), all_models: all.get_untracked(), models });
    };
    let limit_note = (!operator).then(|| {
        let day = key.limit.last_day.clone().unwrap_or_else(|| "no end".into());
        let names = match &key.limit.models {
            None => "all models".to_string(),
            Some(ids) => {
                ids.iter().filter_map(|id| models.iter().find(|c| c.id == *id).map(|c| c.label.clone())).collect::<Vec<_>>().join(", ")
            }
        };
        view! { <p class="hint">{format!("Operator's limit: until {day}, {names}. You can narrow it, not widen it.")}</p> }
    });
    view! {
        <form class="scope-form" on:submit=save data-key=key.public_id.clone()>
            <h3>{if operator { "Operator's limit" } else { "Your restriction" }}</h3>
            {limit_note}
            <label>"Last day it works (UTC) "
                <input type="date" name="last_day" prop:value=move || last_day.get() on:input=move |ev| last_day.set(event_target_value(&ev))/>
            </label>
            <span class="hint">" empty: no end"</span>
            <FieldMsg errors field="last_day"/>
            <fieldset>
                <legend>"Models"</legend>
                <label><input type="checkbox" name="all_models" prop:checked=move || all.get() on:change=move |ev| all.set(event_target_checked(&ev))/>" All models"</label>
                {models.into_iter().map(|c| {
                    let mid = c.id;
                    view! {
                        <label class="choice">
                            <input type="checkbox" name="model" value=mid.to_string() disabled=move || all.get()
                                prop:checked=move || chosen.with(|v| v.contains(&mid))
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    chosen.update(|v| { v.retain(|m| *m != mid); if on { v.push(mid); } });
                                }/>
                            {format!(" {}", c.label)}
                        </label>
                    }
                }).collect_view()}
            </fieldset>
            <FieldMsg errors field="models"/>
            <FieldMsg errors field="key"/>
            <ErrorBox value=value/>
            <button type="submit" disabled=move || action.pending().get()>{move || if action.pending().get() { "Saving…" } else { "Save scope" }}</button>
        </form>
    }
}
