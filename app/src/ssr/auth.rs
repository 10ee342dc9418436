//! Accounts and sessions, and the one guard every server function goes through.
use super::entities::{session, user};
use super::{crypto, now, AppState, SResult, ServiceError};
use crate::error::AppError;
use crate::types::{CurrentUser, Role};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

pub const SESSION_COOKIE: &str = "maas_session";
const SESSION_TTL_SECS: i64 = 7 * 24 * 3600;

/// Argon2id with the crate's defaults (19 MiB, t=2), off the async threads: it takes tens of
/// milliseconds of CPU on purpose.
pub async fn hash_password(password: String) -> SResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Other(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Other(e.to_string()))?
}

pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

pub fn validate_password(pw: &str) -> Result<(), &'static str> {
    if pw.chars().count() < 8 {
        Err("at least 8 characters")
    } else if pw.len() > 256 {
        Err("at most 256 characters")
    } else {
        Ok(())
    }
}

pub async fn create_user(db: &impl ConnectionTrait, username: &str, password: &str, role: Role) -> SResult<i64> {
    let mut e = crate::types::FieldErrors::default();
    crate::validate::name_like(&mut e, "username", username, 64);
    if let Err(m) = validate_password(password) {
        e.add("password", m);
    }
    e.into_result()?;
    let hash = hash_password(password.to_owned()).await?;
    let am = user::ActiveModel {
        username: Set(username.trim().to_owned()),
        password_hash: Set(hash),
        role: Set(role.as_str().to_owned()),
        created_at: Set(now()),
        ..Default::default()
    };
    let m = am.insert(db).await.map_err(|e| super::on_unique(e, "username", "this username is taken"))?;
    Ok(m.id)
}

/// Checks the credentials and opens a session; returns the cookie value (the raw token).
/// Unknown user and wrong password get the same answer and take the same time.
pub async fn login(db: &impl ConnectionTrait, username: &str, password: &str) -> SResult<(String, CurrentUser)> {
    let found = user::Entity::find().filter(user::Column::Username.eq(username.trim())).one(db).await?;
    // An unknown user still costs one Argon2 run, so timing does not tell which names exist.
    let ok = match &found {
        Some(u) => verify_password(password.to_owned(), u.password_hash.clone()).await,
        None => {
            let _ = hash_password(password.to_owned()).await;
            false
        }
    };
    let Some(u) = found.filter(|_| ok) else {
        return Err(AppError::field("password", "wrong username or password").into());
    };
    let token = crypto::random_hex(32);
    session::ActiveModel {
        id: Set(crypto::sha256_hex(&token)),
        user_id: Set(u.id),
        expires_at: Set(now() + SESSION_TTL_SECS),
    }
    .insert(db)
    .await?;
    let role = Role::parse(&u.role).ok_or_else(|| ServiceError::Other("bad role in db".into()))?;
    Ok((token, CurrentUser { id: u.id, username: u.username, role }))
}

pub async fn logout(db: &impl ConnectionTrait, token: &str) -> SResult<()> {
    session::Entity::delete_by_id(crypto::sha256_hex(token)).exec(db).await?;
    Ok(())
}

pub async fn user_for_token(db: &impl ConnectionTrait, token: &str) -> SResult<Option<CurrentUser>> {
    let Some(s) = session::Entity::find_by_id(crypto::sha256_hex(token)).one(db).await? else {
        return Ok(None);
    };
    if s.expires_at < now() {
        session::Entity::delete_by_id(s.id).exec(db).await?;
        return Ok(None);
    }
    let Some(u) = user::Entity::find_by_id(s.user_id).one(db).await? else {
        return Ok(None);
    };
    Ok(Role::parse(&u.role).map(|role| CurrentUser { id: u.id, username: u.username, role }))
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_SECS}{}",
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(secure: bool) -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", if secure { "; Secure" } else { "" })
}

pub fn token_from_headers(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// What a server function may require of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any logged-in account.
    Login,
    Operator,
}

/// The one guard: finds the caller from the request's session cookie and checks the role.
pub async fn guard(state: &AppState, headers: &http::HeaderMap, need: Need) -> SResult<CurrentUser> {
    let token = token_from_headers(headers).ok_or(AppError::Unauthenticated)?;
    let user = user_for_token(&state.db, &token).await?.ok_or(AppError::Unauthenticated)?;
    if need == Need::Operator && user.role != Role::Operator {
        return Err(AppError::Forbidden.into());
    }
    Ok(user)
}
