use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "maas", about = "MaaS model management: console, gateway and tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Console + server functions (+ embedded gateway) on one listener. The default.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "DATABASE_URL", default_value = server::bootstrap::DEFAULT_DB)]
        database_url: String,
    },
}

#[derive(clap::Parser, Clone)]
struct ServeArgs {
    #[arg(long, env = "MAAS_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    #[arg(long, env = "DATABASE_URL", default_value = server::bootstrap::DEFAULT_DB)]
    database_url: String,
    /// Key for encrypting upstream API keys at rest; generated into data/secret.key if unset.
    #[arg(long, env = "MAAS_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[arg(long, env = "MAAS_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Password for the first operator account (generated and printed if unset).
    #[arg(long, env = "MAAS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    #[arg(long, env = "MAAS_ADMIN_USER", default_value = "admin")]
    admin_user: String,
    /// Mark session cookies `Secure` (serve over https).
    #[arg(long, env = "MAAS_SECURE_COOKIES")]
    secure_cookies: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()))
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Migrate { database_url }) => {
            server::bootstrap::open_db(&database_url).await?;
            println!("migrations applied");
            Ok(())
        }
        Some(Cmd::Serve(a)) => serve(a).await,
        None => serve(ServeArgs::parse_from(["maas"])).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    use server::bootstrap;
    let db = bootstrap::open_db(&a.database_url).await?;
    let secret = bootstrap::secret_key(a.secret_key.clone(), &a.data_dir)?;
    let generated = bootstrap::first_operator(&db, &a.admin_user, a.admin_password.clone()).await?;
    let rev = app::ssr::current_revision(&db).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = bootstrap::state(db, &secret, a.secure_cookies, rev);
    let router = server::web::router(server::web::leptos_options(a.listen), state);
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("MaaS console: {url}");
    if let Some(pw) = generated {
        println!("first operator created: username `{}`, password `{pw}` (shown once)", a.admin_user);
    }
    axum::serve(listener, router).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async { tokio::signal::ctrl_c().await.ok() };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
