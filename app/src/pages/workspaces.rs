//! Workspaces, users and membership (operators).
use crate::api::workspaces::*;
use crate::call::{Call, CallForm};
use crate::components::{
    col, create_form, field_errors, on_success, Col, ConfirmButton, DataTable, ErrorBox, Notice, QuotaFields, RequireRole, SelectField,
    SubmitButton, TextField,
};
use crate::load::load;
use leptos::prelude::*;

#[component]
pub fn WorkspacesPage() -> impl IntoView {
    view! { <RequireRole operator=true><Workspaces/></RequireRole> }
}

const WORKSPACE_COLUMNS: &[Col] = &[col("Workspace"), col("Members"), col("Quota"), col("")];
const USER_COLUMNS: &[Col] = &[col("User"), col("Role"), col("")];

#[component]
fn Workspaces() -> impl IntoView {
    let create_ws = Call::<CreateWorkspace>::new();
    let create_user = Call::<CreateUser>::new();
    let add = Call::<AddMember>::new();
    let quota = Call::<SetWorkspaceQuota>::new();
    // Reloaded after a saved quota only: after a refusal it would rebuild the open editor and
    // lose what was typed in it.
    let quota_saved = RwSignal::new(0u32);
    on_success(quota.value(), move || quota_saved.update(|n| *n += 1));
    let rename = Call::<RenameWorkspace>::new();
    let delete_ws = Call::<DeleteWorkspace>::new();
    let remove = Call::<RemoveMember>::new();
    let delete_user = Call::<DeleteUser>::new();
    let spaces = load(
        move || {
            (
                create_ws.saved().get(),
                add.saved().get(),
                quota_saved.get(),
                rename.saved().get(),
                delete_ws.saved().get(),
                remove.saved().get(),
                delete_user.saved().get(),
            )
        },
        |_| ListWorkspaces {},
    );
    // The workspace being renamed.
    let renaming = RwSignal::new(None::<i64>);
    on_success(rename.value(), move || renaming.set(None));
    let rename_val = rename.value();
    let rename_err = field_errors(move || rename_val.get());
    // The workspace whose quota is being edited.
    let editing = RwSignal::new(None::<i64>);
    let quota_val = quota.value();
    let quota_err = field_errors(move || quota_val.get());
    let users = load(move || (create_user.saved().get(), delete_user.saved().get()), |_| ListUsers {});
    let ws_val = create_ws.value();
    let user_val = create_user.value();
    let add_val = add.value();
    let ((ws_err, ws_form), (user_err, user_form), (add_err, add_form)) =
        (create_form(ws_val), create_form(user_val), create_form(add_val));
    let ws_done = Signal::derive(move || {
        ws_val
            .get()
            .and_then(Result::ok)
            .map(|id| ("Workspace created: add its members below.".to_string(), Some((format!("#workspace-{id}"), "Show it".to_string()))))
    });
    let user_done = Signal::derive(move || {
        user_val
            .get()
            .and_then(Result::ok)
            .map(|id| ("User created: they can log in now.".to_string(), Some((format!("#user-{id}"), "Show it".to_string()))))
    });
    let add_done = Signal::derive(move || add_val.get().and_then(Result::ok).map(|_| ("Member added.".to_string(), None)));
    view! {
        <h1>"Workspaces and users"</h1>
        <div class="columns">
            <section class="card">
                <h2>"New workspace"</h2>
                <CallForm call=create_ws node_ref=ws_form attr:id="workspace-form">
                    <TextField label="Name" name="name" errors=ws_err placeholder="team-a"/>
                    <ErrorBox value=ws_val/>
                    <SubmitButton pending=create_ws.pending() label="Create workspace" busy="Creating…"/>
                </CallForm>
                <Notice message=ws_done/>
            </section>
            <section class="card">
                <h2>"New user"</h2>
                <CallForm call=create_user node_ref=user_form attr:id="user-form">
                    <TextField label="Username" name="username" errors=user_err autocomplete="off"/>
                    <TextField label="Password" name="password" errors=user_err kind="password" autocomplete="new-password" hint="At least 8 characters; they can log in with it at once."/>
                    <SelectField label="Role" name="role" errors=user_err options=vec![("user".into(), "user".into()), ("operator".into(), "operator".into())] selected="user"/>
                    <ErrorBox value=user_val/>
                    <SubmitButton pending=create_user.pending() label="Create user" busy="Creating…"/>
                </CallForm>
                <Notice message=user_done/>
            </section>
        </div>
        <section class="card">
            <h2>"Add a user to a workspace"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let spaces = spaces.await.unwrap_or_default();
                    view! {
                        <CallForm call=add node_ref=add_form attr:id="member-form" attr:class="row-form">
                            <SelectField label="Workspace" name="workspace_id" field="workspace" errors=add_err options=spaces.iter().map(|w| (w.id.to_string(), w.name.clone())).collect()/>
                            <TextField label="Username" name="username" errors=add_err placeholder="username"/>
                            <SubmitButton pending=add.pending() label="Add member" busy="Adding…"/>
                        </CallForm>
                    }
                })}
            </Transition>
            <ErrorBox value=add_val/>
            <Notice message=add_done/>
        </section>
        <ErrorBox value=delete_ws.value()/>
        <ErrorBox value=remove.value()/>
        <ErrorBox value=delete_user.value()/>
        <div class="columns">
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match spaces.await {
                        Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                        Ok(list) => view! {
                            <DataTable id="workspace-table" label="Workspaces" columns=WORKSPACE_COLUMNS rows=list.len()
                                nothing=|| "No workspaces yet: create one above, then add users to it; API keys belong to a workspace.">
                                {list.into_iter().map(|w| {
                                    let id = w.id;
                                    let q = StoredValue::new(w.quota.clone());
                                    let name = StoredValue::new(w.name.clone());
                                    view! {
                                        <tr data-name=w.name.clone() id=format!("workspace-{id}")>
                                            <td>{w.name.clone()}</td>
                                            <td data-col="members">{w.members.iter().map(|m| {
                                                let username = m.clone();
                                                view! {
                                                    <span class="member">{m.clone()}
                                                        <button type="button" class="link small" aria-label=format!("Remove {m} from {}", w.name)
                                                            on:click=move |_| { remove.dispatch(RemoveMember { workspace_id: id, username: username.clone() }); }>"×"</button>
                                                    </span>" "
                                                }
                                            }).collect_view()}</td>
                                            <td data-col="quota" class:warn=w.quota.as_ref().is_some_and(|q| q.spent())>{w.quota.as_ref().map_or_else(|| "none".to_string(), |q| q.summary())}</td>
                                            <td class="row-actions">
                                                <button class="small" on:click=move |_| editing.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Quota…"</button>
                                                <button class="small" on:click=move |_| renaming.update(|e| *e = if *e == Some(id) { None } else { Some(id) })>"Rename"</button>
                                                <ConfirmButton what=format!("workspace {}", w.name) consequences="Its API keys stop working at once and are deleted, with its quota and the rate-limit rules that name it. Its usage history stays."
                                                    on_confirm=Callback::new(move |_| { delete_ws.dispatch(DeleteWorkspace { id }); })/>
                                            </td>
                                        </tr>
                                        <Show when=move || renaming.get() == Some(id)>
                                            <tr class="editor-row"><td colspan="4">
                                                <CallForm call=rename attr:class="row-form" attr:id="workspace-rename-form">
                                                    <input type="hidden" name="id" value=id.to_string()/>
                                                    <TextField label="New name" name="name" errors=rename_err value=name.get_value()/>
                                                    <SubmitButton pending=rename.pending() label="Rename" busy="Saving…"/>
                                                </CallForm>
                                                <ErrorBox value=rename_val/>
                                            </td></tr>
                                        </Show>
                                        <Show when=move || editing.get() == Some(id)>
                                            <tr class="editor-row"><td colspan="4">
                                                <CallForm call=quota attr:class="quota-form">
                                                    <input type="hidden" name="id" value=id.to_string()/>
                                                    <QuotaFields quota=q.get_value() errors=quota_err/>
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
                })}
            </Transition>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match users.await {
                        Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                        Ok(list) => view! {
                            <DataTable id="user-table" label="Users" columns=USER_COLUMNS rows=list.len() nothing=|| "No users yet.">
                                {list.into_iter().map(|u| {
                                    let id = u.id;
                                    view! {
                                        <tr data-name=u.username.clone() id=format!("user-{id}")><td>{u.username.clone()}</td><td>{u.role.as_str()}</td>
                                        <td><ConfirmButton what=format!("user {}", u.username) consequences="They can no longer log in; their sessions end, their memberships and admin tokens go. Keys they created stay with their workspaces."
                                            on_confirm=Callback::new(move |_| { delete_user.dispatch(DeleteUser { id }); })/></td></tr>
                                    }
                                }).collect_view()}
                            </DataTable>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}
