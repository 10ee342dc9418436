use crate::api::account::Login;
use crate::call::{Call, CallForm};
use crate::components::{field_errors, ErrorBox, FieldMsg};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = Call::<Login>::new();
    let value = login.value();
    let errors = field_errors(move || value.get());
    let query = use_query_map();
    let next = move || crate::validate::local_path(&query.read().get("next").unwrap_or_default()).to_owned();
    Effect::new(move |_| {
        if let Some(Ok(_)) = value.get() {
            let _ = window().location().set_href(&next());
        }
    });
    view! {
        <section class="card narrow">
            <h1>"Log in"</h1>
            <CallForm call=login>
                <input type="hidden" name="next" value=next/>
                <label>"Username" <input name="username" autocomplete="username" required/></label>
                <FieldMsg errors field="username"/>
                <label>"Password" <input name="password" type="password" autocomplete="current-password" required/></label>
                <FieldMsg errors field="password"/>
                <ErrorBox value=value/>
                <button type="submit" disabled=move || login.pending().get()>
                    {move || if login.pending().get() { "Logging in…" } else { "Log in" }}
                </button>
            </CallForm>
        </section>
    }
}
