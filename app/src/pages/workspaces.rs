//! Workspaces, users and membership (operators).
use crate::api::workspaces::*;
use crate::components::{field_errors, ErrorBox, FieldMsg, QuotaFields, RequireRole};
use leptos::prelude::*;

#[component]
pub fn WorkspacesPage() -> impl IntoView {
    view! { <RequireRole operator=true><Workspaces/></RequireRole> }
}

#[component]
fn Workspaces() -> impl IntoView {
    let create_ws = ServerAction::<CreateWorkspace>::new();
    let create_user = ServerAction::<CreateUser>::new();
    let add = ServerAction::<AddMember>::new();
    let quota = ServerAction::<SetWorkspaceQuota>::new();
    // Reloaded after a saved quota only: after a refusal it would rebuild the open editor and
    // lose what was typed in it.
    let quota_saved = RwSignal::new(0u32);
    Effect::new(move |_| {
        if matches!(quota.value().get(), Some(Ok(()))) {
            quota_saved.update(|n| *n += 1);
        }
    });
    let spaces = Resource::new(move || (create_ws.version().get(), add.version().get(), quota_saved.get()), |_| list_workspaces());
    // The workspace whose quota is being edited.
    let editing = RwSignal::new(None::<i64>);
    let quota_val = quota.value();
    let quota_err = field_errors(move || quota_val.get());
    let users = Resource::new(move || create_user.version().get(), |_| list_users());
    let ws_val = create_ws.value();
    let user_val = create_user.value();
    let add_val = add.value();
    let ws_err = field_errors(move || ws_val.get());
    let user_err = field_errors(move || user_val.get());
    let add_err = field_errors(move || add_val.get());
    view! {
        <h1>"Workspaces and users"</h1>
        <div class="columns">
            <section class="card">
                <h2>"New workspace"</h2>
                <ActionForm action=create_ws attr:id="workspace-form">
                    <label>"Name" <input name="name" placeholder="team-a"/></label>
                    <FieldMsg errors=ws_err field="name"/>
                    <ErrorBox value=ws_val.into()/>
                    <button type="submit" disabled=move || create_ws.pending().get()>"Create workspace"</button>
                </ActionForm>
            </section>
            <section class="card">
                <h2>"New user"</h2>
                <ActionForm action=create_user attr:id="user-form">
                    <label>"Username" <input name="username"/></label>
                    <FieldMsg errors=user_err field="username"/>
                    <label>"Password" <input name="password" type="password" autocomplete="new-password"/></label>
                    <FieldMsg errors=user_err field="password"/>
                    <label>"Role"
                        <select name="role">
                            <option value="user" selected>"user"</option>
                            <option value="operator">"operator"</option>
                        </select>
                    </label>
                    <FieldMsg errors=user_err field="role"/>
                    <ErrorBox value=user_val.into()/>
                    <button type="submit" disabled=move || create_user.pending().get()>"Create user"</button>
                </ActionForm>
            </section>
        </div>
        <section class="card">
            <h2>"Add a user to a workspace"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let spaces = spaces.await.unwrap_or_default();
                    view! {
                        <ActionForm action=add attr:id="member-form" attr:class="row-form">
                            <select name="workspace_id">
                                {spaces.iter().map(|w| view! { <option value=w.id.to_string()>{w.name.clone()}</option> }).collect_view()}
                            </select>
                            <input name="username" placeholder="username"/>
                            <button type="submit" disabled=move || add.pending().get()>"Add member"</button>
                        </ActionForm>
                    }
                })}
            </Transition>
            <FieldMsg errors=add_err field="username"/>
            <ErrorBox value=add_val.into()/>
        </section>
        <div class="columns">
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match spaces.await {
                        Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="list" id="workspace-table">
                                <thead><tr><th>"Workspace"</th><th>"Members"</th><th>"Quota"</th><th></th></tr></thead>
                                <tbody>{list.into_iter().map(|w| {
                                    let id = w.id;
                                    let q = StoredValue::new(w.quota.clone());
                                    view! {
                                        <tr data-name=w.name.clone()>
                                            <td>{w.name.clone()}</td><td>{w.members.join(", ")}</td>
                                            <td data-col="quota" class:warn=w.quota.as_ref().is_some_and(|q| q.spent())>{w.quota.as_ref().map_or_else(|| "none".to_string(), |q| q.summary())}</td>
                                            <td><button class="small" on:click=move |_| editing.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Quota…"</button></td>
                                        </tr>
                                        <Show when=move || editing.get() == Some(id)>
                                            <tr class="editor-row"><td colspan="4">
                                                <ActionForm action=quota attr:class="quota-form">
                                                    <input type="hidden" name="id" value=id.to_string()/>
                                                    <QuotaFields quota=q.get_value() errors=quota_err/>
                                                    <ErrorBox value=quota_val.into()/>
                                                    <button type="submit" disabled=move || quota.pending().get()>{move || if quota.pending().get() { "Saving…" } else { "Save quota" }}</button>
                                                </ActionForm>
                                            </td></tr>
                                        </Show>
                                    }
                                }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match users.await {
                        Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="list" id="user-table">
                                <thead><tr><th>"User"</th><th>"Role"</th></tr></thead>
                                <tbody>{list.into_iter().map(|u| view! {
                                    <tr><td>{u.username.clone()}</td><td>{u.role.as_str()}</td></tr>
                                }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}
