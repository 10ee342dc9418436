//! Start-up: database, secret key, first operator.
use app::ssr::{audit::Actor, auth, crypto, entities::user, AppState};
use app::types::Role;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use std::path::Path;
use std::sync::Arc;

pub const DEFAULT_DB: &str = "sqlite://data/maas.db?mode=rwc";

/// Opens the database (creating the SQLite file's folder) and applies the migrations.
pub async fn open_db(url: &str) -> anyhow::Result<DatabaseConnection> {
    if let Some(path) = url.strip_prefix("sqlite://").map(|p| p.split('?').next().unwrap_or(p)) {
        if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir)?;
        }
        private_file(Path::new(path))?;
    }
    let db = app::ssr::connect(url).await?;
    use migration::MigratorTrait;
    migration::Migrator::up(&db, None).await?;
    let wanted = std::env::var("MAAS_CURRENCY").ok().filter(|c| !c.is_empty());
    app::ssr::services::currency::settle_currency(&db, wanted.as_deref()).await.map_err(anyhow::Error::msg)?;
    Ok(db)
}

/// `MAAS_SECRET_KEY`, or the key kept in `data_dir/secret.key`; never creates one (a gateway
/// must use the control plane's key, not a new one).
pub fn existing_secret_key(explicit: Option<String>, data_dir: &Path) -> std::io::Result<String> {
    match explicit.filter(|k| !k.is_empty()) {
        Some(k) => Ok(k),
        None => std::fs::read_to_string(data_dir.join("secret.key")).map(|k| k.trim().to_owned()),
    }
}

/// `MAAS_SECRET_KEY`, or a random key kept next to the SQLite file for the embedded mode.
pub fn secret_key(explicit: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Ok(k) = existing_secret_key(explicit, data_dir) {
        return Ok(k);
    }
    let path = data_dir.join("secret.key");
    private_dir(data_dir)?;
    let k = crypto::random_hex(32);
    std::fs::write(&path, &k)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(k)
}

/// The data folder holds the database and the key that decrypts upstream keys: only its owner
/// may list it (created 0700; an existing one is tightened).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// The SQLite file, created 0600 before SQLite opens it (SQLite gives its -wal and -shm files
/// the database's own mode), or tightened to 0600 if it exists.
fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub fn state(db: DatabaseConnection, secret: &str, secure_cookies: bool, revision: i64, embedded_gateway: bool) -> AppState {
    AppState {
        db,
        secrets: Arc::new(crypto::SecretBox::from_passphrase(secret)),
        config_rev: tokio::sync::watch::channel(revision).0,
        config_applied: tokio::sync::watch::channel(0).0,
        embedded_gateway,
        secure_cookies,
        allowed_origins: Arc::from(Vec::new()),
        logins: Arc::new(app::ssr::login_throttle::LoginThrottle::default()),
        client_ip_header: None,
    }
}

/// Creates the first operator when there is no account at all. Returns the password only when
/// it was generated here, for the caller to print once: a password the operator chose
/// (`MAAS_ADMIN_PASSWORD`) is never printed, it would land in journald or container logs.
pub async fn first_operator(db: &DatabaseConnection, username: &str, password: Option<String>) -> anyhow::Result<Option<String>> {
    if user::Entity::find().count(db).await? > 0 {
        return Ok(None);
    }
    let (pw, generated) = match password.filter(|p| !p.is_empty()) {
        Some(chosen) => (chosen, false),
        None => (crypto::random_hex(8), true),
    };
    auth::create_user(db, &Actor::system(), username, &pw, Role::Operator).await.map_err(|e| anyhow::anyhow!("first operator: {e}"))?;
    Ok(generated.then_some(pw))
}

/// `maas admin-token`: a token made on behalf of `operator` (the first operator account when
/// `None`); returns its secret.
pub async fn admin_token(
    db: &DatabaseConnection,
    name: &str,
    write: bool,
    last_day: &str,
    operator: Option<&str>,
) -> anyhow::Result<String> {
    use app::types::{CurrentUser, TokenAccess};
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    let mut q = user::Entity::find().filter(user::Column::Role.eq(Role::Operator.as_str())).order_by_asc(user::Column::Id);
    if let Some(name) = operator {
        q = q.filter(user::Column::Username.eq(name));
    }
    let u =
        q.one(db).await?.ok_or_else(|| anyhow::anyhow!("no such operator account (start `maas serve` once to create the first one)"))?;
    let who = CurrentUser { id: u.id, username: u.username, role: Role::Operator };
    let access = if write { TokenAccess::Write } else { TokenAccess::Read };
    let t = app::ssr::services::admin_tokens::create(db, &Actor::system(), &who, name, access, last_day).await.map_err(|e| {
        anyhow::anyhow!(
            "admin token: {}",
            match e.into_app() {
                app::error::AppError::Invalid(f) => f.0.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; "),
                e => e.to_string(),
            }
        )
    })?;
    Ok(t.secret)
}

/// Demo data for `make run`: a published, enabled model served by `upstream`, a demo user in a
/// demo workspace, and an API key. Only on a database with no marketplace model. Returns what to
/// print. The key is also kept in `data/demo.key` (it cannot be shown again otherwise).
pub async fn seed_demo(state: &AppState, console_url: &str, upstream: &str, data_dir: &Path) -> anyhow::Result<Option<String>> {
    use app::ssr::entities::marketplace_model;
    use app::ssr::services::{catalog, keys, models, workspaces};
    use app::types::*;
    let db = &state.db;
    if marketplace_model::Entity::find().count(db).await? > 0 {
        return Ok(std::fs::read_to_string(data_dir.join("demo.key"))
            .ok()
            .map(|k| format!("demo API key (from data/demo.key): {}", k.trim())));
    }
    let e = |e: app::ssr::ServiceError| anyhow::anyhow!("demo data: {e}");
    let sys = Actor::system();
    let mm = catalog::create_marketplace(
        db,
        &sys,
        &MarketplaceInput {
            name: "demo-chat".into(),
            provider: "MaaS demo".into(),
            description: "A demo model answered by `maas mock-upstream`.".into(),
            tags: "demo, chat".into(),
            kind: ModelKind::Chat,
        },
    )
    .await
    .map_err(e)?;
    catalog::set_published(db, &sys, mm, true).await.map_err(e)?;
    let cluster = catalog::create_cluster(db, &sys, "local", console_url).await.map_err(e)?;
    let ws = workspaces::create(db, &sys, "demo").await.map_err(e)?;
    let pw = crypto::random_hex(6);
    let user_id = auth::create_user(db, &sys, "demo", &pw, Role::User).await.map_err(e)?;
    workspaces::add_member(db, &sys, ws, "demo").await.map_err(e)?;
    let demo_user = app::types::CurrentUser { id: user_id, username: "demo".into(), role: Role::User };
    let (key, _) = keys::create(db, &sys, &demo_user, ws, "demo-key").await.map_err(e)?;
    let input = ModelInput {
        marketplace_model_id: Some(mm),
        cluster_id: Some(cluster),
        policy: Policy::RoundRobin,
        endpoints: vec![EndpointInput {
            id: None,
            model_id: "mock-model".into(),
            url: upstream.into(),
            api_key: KeyChange::Set("sk-mock-upstream".into()),
            weight: "100".into(),
            skip_stream_usage: false,
            max_concurrent: String::new(),
            native_apis: app::types::default_apis(),
            draining: false,
        }],
        rules: vec![RuleInput {
            kind: app::types::RuleKind::Requests,
            target: RuleTarget::ApiKey,
            workspace_id: Some(ws),
            api_key_id: Some(key.info.id),
            limit: "600".into(),
            duration: "60".into(),
        }],
        reserve_output: String::new(),
        affinity_key: Default::default(),
        fallbacks: vec![],
        retry: Default::default(),
        health_check: None,
    };
    let (id, _) = models::create(db, &sys, &state.secrets, &input).await.map_err(e)?;
    models::set_enabled(db, &sys, id, None, true).await.map_err(e)?;
    // Priced as a small hosted model is ($0.15 / M input, $0.60 / M output), so the demo's
    // usage shows spend.
    let price = PriceInput { input_per_million: "0.15".into(), output_per_million: "0.60".into(), ..Default::default() };
    let (_, mut rev) = app::ssr::services::prices::add(db, &sys, id, &price).await.map_err(e)?;
    // The same mock as an upstream speaking Messages and Responses natively (passed through),
    // where demo-chat's calls on those APIs are translated to chat completions.
    let agent = catalog::create_marketplace(
        db,
        &sys,
        &MarketplaceInput {
            name: "demo-agent".into(),
            provider: "MaaS demo".into(),
            description: "A demo model whose endpoint speaks chat completions, Anthropic's Messages and OpenAI's Responses natively (`maas mock-upstream`).".into(),
            tags: "demo, agents".into(),
            kind: ModelKind::Chat,
        },
    )
    .await
    .map_err(e)?;
    catalog::set_published(db, &sys, agent, true).await.map_err(e)?;
    let mut agent_input = input.clone();
    agent_input.marketplace_model_id = Some(agent);
    agent_input.rules.clear();
    agent_input.endpoints[0].native_apis = vec![Api::Chat, Api::Messages, Api::Responses];
    let (agent_id, _) = models::create(db, &sys, &state.secrets, &agent_input).await.map_err(e)?;
    rev = rev.max(models::set_enabled(db, &sys, agent_id, None, true).await.map_err(e)?);
    // One model of every other kind, on the same mock (which answers each of their APIs).
    for (name, kind, what) in [
        ("demo-embed", ModelKind::Embedding, "embeddings"),
        ("demo-rerank", ModelKind::Rerank, "reranking"),
        ("demo-whisper", ModelKind::SpeechToText, "transcription and translation of audio"),
        ("demo-tts", ModelKind::TextToSpeech, "speech synthesis"),
        ("demo-image", ModelKind::Image, "image generation and edits"),
    ] {
        let input = MarketplaceInput {
            name: name.into(),
            provider: "MaaS demo".into(),
            description: format!("A demo {} model: {what}, answered by `maas mock-upstream`.", kind.label().to_lowercase()),
            tags: format!("demo, {}", kind.label().to_lowercase()),
            kind,
        };
        let mm = catalog::create_marketplace(db, &sys, &input).await.map_err(e)?;
        catalog::set_published(db, &sys, mm, true).await.map_err(e)?;
        let mut model = agent_input.clone();
        model.marketplace_model_id = Some(mm);
        model.endpoints[0].native_apis = app::types::default_apis();
        let (id, _) = models::create(db, &sys, &state.secrets, &model).await.map_err(e)?;
        rev = rev.max(models::set_enabled(db, &sys, id, None, true).await.map_err(e)?);
    }
    state.config_rev.send_replace(rev);
    std::fs::write(data_dir.join("demo.key"), &key.secret)?;
    Ok(Some(format!(
        "demo user `demo`, password `{pw}` (shown once)\ndemo API key: {secret} (limited to 600 requests per minute by a rule of demo-chat: remove or raise it under Models before a load test)\ntry it:\n  curl {console_url}/v1/chat/completions -H \"Authorization: Bearer {secret}\" -H \"Content-Type: application/json\" -d '{{\"model\": \"demo-chat\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
        secret = key.secret
    )))
}
