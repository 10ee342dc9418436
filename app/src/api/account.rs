use crate::error::AppError;
use crate::types::CurrentUser;
use leptos::prelude::*;
use server_fn::codec::Postcard;

/// The caller, or `None` when not logged in (never an error: pages use it to choose a view).
#[server(endpoint = "me", output = Postcard)]
pub async fn me() -> Result<Option<CurrentUser>, AppError> {
    use crate::ssr::auth;
    let st = super::edge::state()?;
    let Some(token) = auth::token_from_headers(&super::edge::headers()) else { return Ok(None) };
    match auth::user_for_token(&st.db, &token).await {
        Ok(u) => Ok(u),
        Err(e) => super::edge::fail(e.into_app()),
    }
}

#[server(endpoint = "login", output = Postcard)]
pub async fn login(username: String, password: String, next: Option<String>) -> Result<CurrentUser, AppError> {
    use crate::ssr::auth;
    let st = super::edge::state()?;
    let headers = super::edge::headers();
    let previous = auth::token_from_headers(&headers);
    let attempt = auth::LoginAttempt {
        username: &username,
        password: &password,
        ip: super::edge::client_ip(&st),
        previous_token: previous.as_deref(),
    };
    match auth::login(&st.db, &st.logins, attempt).await {
        Ok((token, user)) => {
            let opts = expect_context::<leptos_axum::ResponseOptions>();
            opts.insert_header(
                http::header::SET_COOKIE,
                http::HeaderValue::from_str(&auth::session_cookie(&token, st.secure_cookies)).expect("cookie is ascii"),
            );
            // `next` comes from the URL: only a path on this origin (the page uses the same check).
            redirect_plain_form(crate::validate::local_path(next.as_deref().unwrap_or("/")));
            Ok(user)
        }
        Err(e) => super::edge::fail(e.into_app()),
    }
}

#[server(endpoint = "logout", output = Postcard)]
pub async fn logout() -> Result<(), AppError> {
    use crate::ssr::auth;
    let st = super::edge::state()?;
    if let Some(token) = auth::token_from_headers(&super::edge::headers()) {
        if let Err(e) = auth::logout(&st.db, &token).await {
            return super::edge::fail(e.into_app());
        }
    }
    let opts = expect_context::<leptos_axum::ResponseOptions>();
    opts.insert_header(
        http::header::SET_COOKIE,
        http::HeaderValue::from_str(&auth::clear_cookie(st.secure_cookies)).expect("cookie is ascii"),
    );
    redirect_plain_form("/login");
    Ok(())
}

/// A form posted without JavaScript gets a 302. With JavaScript the page itself reloads at the
/// target (see `pages::login`), so the whole app, the nav included, sees the new session.
#[cfg(feature = "ssr")]
fn redirect_plain_form(target: &str) {
    let html = super::edge::headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
    if html {
        leptos_axum::redirect(target, false);
    }
}
