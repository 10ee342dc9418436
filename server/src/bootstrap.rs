//! Start-up: database, secret key, first operator.
use app::ssr::{auth, crypto, entities::user, AppState};
use app::types::Role;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use std::path::Path;
use std::sync::Arc;

pub const DEFAULT_DB: &str = "sqlite://data/maas.db?mode=rwc";

/// Opens the database (creating the SQLite file's folder) and applies the migrations.
pub async fn open_db(url: &str) -> anyhow::Result<DatabaseConnection> {
    if let Some(path) = url.strip_prefix("sqlite://").map(|p| p.split('?').next().unwrap_or(p)) {
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
    }
    let db = app::ssr::connect(url).await?;
    use migration::MigratorTrait;
    migration::Migrator::up(&db, None).await?;
    Ok(db)
}

/// `MAAS_SECRET_KEY`, or a random key kept next to the SQLite file for the embedded mode.
pub fn secret_key(explicit: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(k) = explicit.filter(|k| !k.is_empty()) {
        return Ok(k);
    }
    let path = data_dir.join("secret.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Ok(k.trim().to_owned());
    }
    std::fs::create_dir_all(data_dir)?;
    let k = crypto::random_hex(32);
    std::fs::write(&path, &k)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(k)
}

pub fn state(db: DatabaseConnection, secret: &str, secure_cookies: bool, revision: i64) -> AppState {
    AppState {
        db,
        secrets: Arc::new(crypto::SecretBox::from_passphrase(secret)),
        config_rev: tokio::sync::watch::channel(revision).0,
        secure_cookies,
    }
}

/// Creates the first operator when there is no account at all. Returns the password when one
/// was generated, so the caller can print it once.
pub async fn first_operator(db: &DatabaseConnection, username: &str, password: Option<String>) -> anyhow::Result<Option<String>> {
    if user::Entity::find().count(db).await? > 0 {
        return Ok(None);
    }
    let pw = password.filter(|p| !p.is_empty()).unwrap_or_else(|| crypto::random_hex(8));
    auth::create_user(db, username, &pw, Role::Operator).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(pw))
}
