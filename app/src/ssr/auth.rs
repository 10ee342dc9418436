//! Accounts and sessions, and the one guard every server function goes through.
use super::entities::{session, user};
use super::login_throttle::LoginThrottle;
use super::{crypto, now, AppState, SResult, ServiceError};
use crate::error::AppError;
use crate::types::{CurrentUser, Role};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionSession};

pub const SESSION_COOKIE: &str = "maas_session";
/// A session ends 7 days after login, or after 8 hours without a request, whichever is first.
pub const SESSION_TTL_SECS: i64 = 7 * 24 * 3600;
pub const SESSION_IDLE_SECS: i64 = 8 * 3600;
const SESSION_TOUCH_SECS: i64 = 60;

/// Argon2 runs at most this many at once (one per core): each holds 19 MiB for tens of
/// milliseconds of CPU, so unbounded, 64 concurrent logins took the server from 532 MiB to
/// 1.7 GiB (issue 10). Excess waits up to [`HASH_QUEUE_WAIT`], then gets a 429.
static HASH_SLOTS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(*HASH_SLOTS));
pub const HASH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

static HASHING_NOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HASHING_PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The most Argon2 computations that ever ran at once in this process, and the bound.
pub fn hashing_peak() -> (usize, usize) {
    (HASHING_PEAK.load(std::sync::atomic::Ordering::Relaxed), *HASH_SLOTS)
}

/// Runs one Argon2 computation off the async threads, within the [`HASHING`] bound.
async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> SResult<T> {
    use std::sync::atomic::Ordering::Relaxed;
    let permit = tokio::time::timeout(HASH_QUEUE_WAIT, HASHING.acquire())
        .await
        .map_err(|_| AppError::RateLimited { retry_after_secs: 1, message: "the server is busy checking other logins".into() })?
        .map_err(|e| ServiceError::Other(e.to_string()))?;
    let r = tokio::task::spawn_blocking(move || {
        HASHING_PEAK.fetch_max(HASHING_NOW.fetch_add(1, Relaxed) + 1, Relaxed);
        let r = work();
        HASHING_NOW.fetch_sub(1, Relaxed);
        r
    })
    .await
    .map_err(|e| ServiceError::Other(e.to_string()));
    drop(permit);
    r
}

/// Argon2id with the crate's defaults (19 MiB, t=2): it takes tens of milliseconds of CPU on
/// purpose.
pub async fn hash_password(password: String) -> SResult<String> {
    argon2(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Other(format!("argon2: {e}")))
    })
    .await?
}

pub async fn verify_password(password: String, hash: String) -> SResult<bool> {
    argon2(move || PasswordHash::new(&hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false))
        .await
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

pub async fn create_user<C: sea_orm::TransactionTrait + ConnectionTrait>(
    db: &C,
    actor: &super::audit::Actor,
    username: &str,
    password: &str,
    role: Role,
) -> SResult<i64> {
    use super::audit::{self, Action, Entity};
    let mut e = crate::types::FieldErrors::default();
    crate::validate::name_like(&mut e, "username", username, 64);
    if let Err(m) = validate_password(password) {
        e.add("password", m);
    }
    e.into_result()?;
    let hash = hash_password(password.to_owned()).await?;
    let txn = db.begin().await?;
    let am = user::ActiveModel {
        username: Set(username.trim().to_owned()),
        password_hash: Set(hash),
        role: Set(role.as_str().to_owned()),
        created_at: Set(now()),
        ..Default::default()
    };
    let m = am.insert(&txn).await.map_err(|e| super::on_unique(e, "username", "this username is taken"))?;
    // The password is a secret: the log says one was set.
    let after = serde_json::json!({"username": m.username, "role": m.role, "password": audit::secret_marker(true)});
    audit::record(&txn, actor, Entity::User, m.id, Action::Create, None, Some(&after)).await?;
    txn.commit().await?;
    Ok(m.id)
}

/// Who is logging in, as far as the throttle is concerned.
pub struct LoginAttempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The client's address, for the per-address throttle and known devices.
    pub ip: Option<std::net::IpAddr>,
    /// The session cookie the browser already holds, if any: replaced, never reused (a token
    /// planted before login must not become the victim's session).
    pub previous_token: Option<&'a str>,
}

/// Checks the credentials and opens a session; returns the cookie value (the raw token).
/// Unknown user and wrong password get the same answer and take the same time. Repeated
/// failures are throttled (see `login_throttle`): a throttled attempt costs no hash.
pub async fn login(db: &impl ConnectionTrait, throttle: &LoginThrottle, a: LoginAttempt<'_>) -> SResult<(String, CurrentUser)> {
    let now_ms = super::now_ms();
    // Counted as a failure here, before the hash, and given back on success (see the throttle).
    if let Err(wait_ms) = throttle.admit(a.username, a.ip, now_ms) {
        let secs = wait_ms.div_ceil(1000);
        return Err(AppError::RateLimited { retry_after_secs: secs, message: "too many failed logins".into() }.into());
    }
    let found = user::Entity::find().filter(user::Column::Username.eq(a.username.trim())).one(db).await?;
    // An unknown user still costs one Argon2 run, so timing does not tell which names exist.
    let ok = match &found {
        Some(u) => verify_password(a.password.to_owned(), u.password_hash.clone()).await?,
        None => {
            hash_password(a.password.to_owned()).await?;
            false
        }
    };
    let Some(u) = found.filter(|_| ok) else {
        return Err(AppError::field("password", "wrong username or password").into());
    };
    throttle.succeeded(a.username, a.ip, now_ms);
    if let Some(old) = a.previous_token {
        logout(db, old).await?;
    }
    let token = crypto::random_hex(32);
    let now = now();
    session::ActiveModel {
        id: Set(crypto::sha256_hex(&token)),
        user_id: Set(u.id),
        expires_at: Set(now + SESSION_TTL_SECS),
        last_seen_at: Set(now),
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
    let now = now();
    if s.expires_at < now || now - s.last_seen_at > SESSION_IDLE_SECS {
        session::Entity::delete_by_id(s.id).exec(db).await?;
        return Ok(None);
    }
    // At most one write a minute per session, not one per request.
    if now - s.last_seen_at >= SESSION_TOUCH_SECS {
        session::Entity::update_many()
            .col_expr(session::Column::LastSeenAt, sea_orm::sea_query::Expr::value(now))
            .filter(session::Column::Id.eq(s.id.clone()))
            .exec(db)
            .await?;
    }
    let Some(u) = user::Entity::find_by_id(s.user_id).one(db).await? else {
        return Ok(None);
    };
    Ok(Role::parse(&u.role).map(|role| CurrentUser { id: u.id, username: u.username, role }))
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_TTL_SECS}{}",
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(secure: bool) -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}", if secure { "; Secure" } else { "" })
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
