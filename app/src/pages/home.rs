use crate::components::Me;
use crate::types::Role;
use leptos::prelude::*;
use leptos_router::components::Redirect;

/// `/` sends each caller where they work: operators to the model list, users to the marketplace.
#[component]
pub fn Home() -> impl IntoView {
    let Me(me) = expect_context::<Me>();
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let to = match me.await {
                    Ok(Some(u)) if u.role == Role::Operator => "/models",
                    Ok(Some(_)) => "/marketplace",
                    _ => "/login",
                };
                view! { <Redirect path=to/> }
            })}
        </Suspense>
    }
}
