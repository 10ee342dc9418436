//! Admin tokens: bearer credentials for the admin API (`/api/v1`). Created here (the secret is
//! shown once), listed with when each was last used, revoked.
use crate::api::admin::*;
use crate::call::{Call, CallForm};
use crate::components::{
    col, create_form, Col, ConfirmButton, CopyButton, DataTable, ErrorBox, RequireRole, SelectField, SubmitButton, TextField,
};
use crate::days::format_utc;
use crate::load::load;
use crate::types::TokenAccess;
use leptos::prelude::*;

#[component]
pub fn AdminTokensPage() -> impl IntoView {
    view! { <RequireRole operator=true><AdminTokens/></RequireRole> }
}

const COLUMNS: &[Col] =
    &[col("Name"), col("Token id"), col("Access"), col("Made by"), col("Works until"), col("Last used"), col("Status"), col("")];

#[component]
fn AdminTokens() -> impl IntoView {
    let create = Call::<CreateAdminToken>::new();
    let revoke = Call::<RevokeAdminToken>::new();
    let tokens = load(move || (create.saved().get(), revoke.saved().get()), |_| ListAdminTokens {});
    let value = create.value();
    let (errors, form) = create_form(value);
    view! {
        <h1>"Admin tokens"</h1>
        <p class="hint">
            "Tokens for the admin API (" <code>"/api/v1"</code> "), sent as " <code>"Authorization: Bearer maas-admin-…"</code>
            ": scripts, CI and Terraform do what an operator does here. See the "
            <a href="/api/docs" rel="external">"API reference"</a> " and its " <a href="/api/v1/openapi.json" rel="external">"OpenAPI document"</a> "."
        </p>
        <section class="card">
            <h2>"New admin token"</h2>
            <CallForm call=create node_ref=form attr:id="admin-token-form" attr:class="row-form">
                <TextField label="Token name" name="name" errors placeholder="e.g. terraform"/>
                <SelectField label="Access" name="access" errors options=vec![("read".into(), "Read only".into()), ("write".into(), "Read and write".into())]/>
                <TextField label="Last day (optional)" name="last_day" kind="date" errors/>
                <SubmitButton pending=create.pending() label="Create token" busy="Creating…"/>
            </CallForm>
            <ErrorBox value=value/>
            {move || value.get().and_then(Result::ok).map(|t| view! {
                <div class="secret-once" id="new-admin-token">
                    <p>"Copy this token now: it is shown only once and stored only as a hash."</p>
                    <code class="secret">{t.secret.clone()}</code>
                    " " <CopyButton text=t.secret/>
                </div>
            })}
        </section>
        <ErrorBox value=revoke.value()/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match tokens.await {
                    Err(e) => view! { <p class="error-box">{e.to_string()}</p> }.into_any(),
                    Ok(list) => view! {
                        <DataTable id="admin-token-table" label="Admin tokens" columns=COLUMNS rows=list.len()
                            nothing=|| "No admin tokens yet: create one above to use the admin API.">
                            {list.into_iter().map(|t| {
                                let id = t.id;
                                let name = t.name.clone();
                                let name2 = t.name.clone();
                                let status = if t.revoked { "revoked" } else if t.expired { "expired" } else { "active" };
                                view! {
                                    <tr data-name=name>
                                        <td>{t.name}</td><td><code>{t.public_id}</code></td>
                                        <td>{if t.access == TokenAccess::Write { "read and write" } else { "read only" }}</td>
                                        <td>{t.created_by}</td>
                                        <td>{t.last_day.unwrap_or_else(|| "no end".into())}</td>
                                        <td>{t.last_used_at.map(format_utc).unwrap_or_else(|| "never".into())}</td>
                                        <td data-col="status">{status}</td>
                                        <td>{(!t.revoked).then(|| view! {
                                            <ConfirmButton verb="Revoke" what=format!("admin token {name2}") consequences="Scripts using it get 401 from the next call on."
                                                on_confirm=Callback::new(move |_| { revoke.dispatch(RevokeAdminToken { id }); })/>
                                        })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </DataTable>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
