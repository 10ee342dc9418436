//! Server-only code: state, persistence, authentication and the domain services that server
//! functions (and the gateway) call.
pub mod audit;
pub mod auth;
pub mod charts;
pub mod crypto;
pub mod entities;
pub mod login_throttle;
pub mod pricing;
pub mod services;
pub mod snippets;
pub mod usage_rollups;

use crate::error::AppError;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use std::sync::Arc;

/// Everything a request handler needs, cloned cheaply into each request's context.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub secrets: Arc<crypto::SecretBox>,
    /// Latest committed configuration revision; the gateway subscribes to rebuild its snapshot.
    pub config_rev: tokio::sync::watch::Sender<i64>,
    /// Revision the embedded gateway has applied (its reloader publishes here).
    pub config_applied: tokio::sync::watch::Sender<i64>,
    /// Whether a gateway runs in this process, so writes wait for it to apply them.
    pub embedded_gateway: bool,
    /// `Secure` on the session cookie (set when served over https).
    pub secure_cookies: bool,
    /// Origins besides the request's own host allowed to make state-changing requests (the
    /// public origin when a proxy in front rewrites `Host`), e.g. `https://console.example.com`.
    pub allowed_origins: Arc<[String]>,
    /// Failed logins, per account and per client address (see `login_throttle`).
    pub logins: Arc<login_throttle::LoginThrottle>,
    /// Where the client address comes from when a proxy sits in front: the header it appends
    /// (`X-Forwarded-For`), its last entry being the address the proxy saw. None: the socket's peer.
    pub client_ip_header: Option<http::HeaderName>,
}

impl AppState {
    /// Called after a configuration-changing transaction commits. With an embedded gateway it
    /// returns once the gateway serves that revision (bounded wait), so a revoked key or a
    /// disabled model is refused on the very next request.
    pub async fn config_changed(&self, revision: i64) {
        self.config_rev.send_if_modified(|cur| {
            if revision > *cur {
                *cur = revision;
                true
            } else {
                false
            }
        });
        if self.embedded_gateway {
            let mut applied = self.config_applied.subscribe();
            let wait = applied.wait_for(|a| *a >= revision);
            if tokio::time::timeout(std::time::Duration::from_secs(5), wait).await.is_err() {
                tracing::warn!(revision, "gateway did not apply the change within 5 s");
            }
        }
    }
}

/// Errors of the service layer. Mapped to [`AppError`] once, at the server-function edge,
/// which is also where database errors are logged (the browser gets no internals).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Other(String),
}

impl From<crate::types::FieldErrors> for ServiceError {
    fn from(f: crate::types::FieldErrors) -> Self {
        ServiceError::App(AppError::Invalid(f))
    }
}

impl ServiceError {
    pub fn into_app(self) -> AppError {
        match self {
            ServiceError::App(e) => e,
            ServiceError::Db(e) => {
                tracing::error!(error = %e, "database error");
                AppError::Internal
            }
            ServiceError::Other(e) => {
                tracing::error!(error = %e, "internal error");
                AppError::Internal
            }
        }
    }
}

pub type SResult<T> = Result<T, ServiceError>;

/// Maps a unique-constraint violation to a field error; anything else stays a database error.
pub fn on_unique(e: DbErr, field: &str, msg: &str) -> ServiceError {
    match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => AppError::field(field, msg).into(),
        _ => ServiceError::Db(e),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Bumps the configuration revision inside the caller's transaction and returns the new one,
/// so a change and its revision commit (or roll back) together.
pub async fn bump_revision(db: &impl ConnectionTrait) -> SResult<i64> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_string(backend, "UPDATE config_revision SET revision = revision + 1 WHERE id = 1")).await?;
    current_revision(db).await
}

pub async fn current_revision(db: &impl ConnectionTrait) -> SResult<i64> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(backend, "SELECT revision FROM config_revision WHERE id = 1"))
        .await?
        .ok_or_else(|| ServiceError::Other("config_revision row missing".into()))?;
    Ok(row.try_get::<i64>("", "revision")?)
}

/// Copies what SQLite's write-ahead log holds into the database file, as far as readers allow
/// (PASSIVE: it waits for no one and blocks no writer). A no-op on PostgreSQL.
pub async fn checkpoint(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await?;
    }
    Ok(())
}

/// Opens the database and applies the migrations. SQLite gets WAL and a busy timeout so the
/// console and the gateway's readers never trip over each other.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opt = sea_orm::ConnectOptions::new(url.to_owned());
    opt.sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // One writer at a time anyway; a small pool keeps readers concurrent.
        opt.max_connections(8).min_connections(1);
        // Per-connection settings belong in the connect options: a PRAGMA run once through the
        // pool reaches only the one connection that ran it.
        opt.map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(5))
                .foreign_keys(true)
                // A checkpoint copies the WAL into the database file and syncs it: by default
                // the commit that takes the WAL past 1,000 pages runs one, so a usage flush of
                // 10,000 rows (~1,300 pages) paid for it inside its transaction's time (500 ms
                // instead of ~150). The gateway checkpoints after each flush instead
                // ([`checkpoint`]), without the write lock; 10,000 pages (40 MB) stays as the
                // backstop for writers that never call it.
                .pragma("wal_autocheckpoint", "10000")
        });
    }
    let db = sea_orm::Database::connect(opt).await?;
    Ok(db)
}
