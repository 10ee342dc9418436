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
    /// Data plane only, for one entry cluster: serves `/v1` from the shared database's
    /// configuration (following changes within a second), with rate-limit counters in Redis so
    /// that every replica enforces one limit. Run as many replicas as the cluster needs.
    Gateway(GatewayArgs),
    /// A small OpenAI-compatible upstream for tests, benchmarks and the demo.
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:9099")]
        listen: SocketAddr,
        /// Latency before each answer, ms.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Stream chunks per streamed completion, and their spacing in ms.
        #[arg(long, default_value_t = 3)]
        chunks: u32,
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
        /// Do not record requests (for benchmarks).
        #[arg(long)]
        no_record: bool,
    },
    /// Create an admin token for the admin API (`/api/v1`) and print it once: what the
    /// console's Admin tokens page does, for a first automation that has no browser. Made on
    /// behalf of an operator account (the first one by default) and audited as the system.
    AdminToken {
        #[arg(long, env = "DATABASE_URL", default_value = server::bootstrap::DEFAULT_DB)]
        database_url: String,
        /// A name to tell it apart (`terraform`, `ci`).
        #[arg(long)]
        name: String,
        /// Read and write (default: read only).
        #[arg(long)]
        write: bool,
        /// Last day it works, `YYYY-MM-DD` (UTC); default: no end.
        #[arg(long, default_value = "")]
        last_day: String,
        /// The operator it acts for (default: the first operator account).
        #[arg(long)]
        operator: Option<String>,
    },
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
    /// Mark session cookies `Secure` (serve over https); also sends HSTS.
    #[arg(long, env = "MAAS_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Origins, besides the one each request was sent to, allowed to make state-changing
    /// requests: the console's public origin when a proxy in front rewrites `Host`
    /// (comma-separated, e.g. `https://console.example.com`).
    #[arg(long, env = "MAAS_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Behind a proxy: the header it appends the client's address to (`X-Forwarded-For`); its
    /// last entry is the address the login throttle counts. Default: the socket's peer.
    #[arg(long, env = "MAAS_CLIENT_IP_HEADER")]
    client_ip_header: Option<http::HeaderName>,
    /// Serve only this entry cluster's models on /v1 (default: every cluster).
    #[arg(long, env = "MAAS_CLUSTER")]
    cluster: Option<String>,
    /// Seed demo data (a published, enabled model on this OpenAI-compatible upstream, a demo
    /// user and API key) when the database has no marketplace model yet.
    #[arg(long, env = "MAAS_DEMO_UPSTREAM")]
    demo_upstream: Option<String>,
    /// Serving threads (one single-threaded runtime each); default: one per CPU core.
    #[arg(long, env = "MAAS_WORKERS")]
    workers: Option<usize>,
    #[command(flatten)]
    reach: ReachArgs,
    #[command(flatten)]
    clients: ClientArgs,
    #[command(flatten)]
    usage: UsageArgs,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    /// How long per-minute usage rows are kept (the hour and day charts); at least 2d.
    #[arg(long, env = "MAAS_USAGE_KEEP_MINUTE_ROWS", default_value = "8d", value_parser = server::serving::parse_duration)]
    usage_keep_minute_rows: std::time::Duration,
    /// How long hourly usage rows are kept (longer charts, the CSV export).
    #[arg(long, env = "MAAS_USAGE_KEEP_HOURLY_ROWS", default_value = "400d", value_parser = server::serving::parse_duration)]
    usage_keep_hourly_rows: std::time::Duration,
}

/// `/metrics` (gateway/metrics.rs); the same for `serve` and `gateway`.
#[derive(clap::Args, Clone)]
struct MetricsArgs {
    /// Token a Prometheus scrape must send (`Authorization: Bearer …`, `bearer_token` in its
    /// scrape config) for `/metrics` on the main listener. Without it, `/metrics` is not served
    /// there.
    #[arg(long, env = "MAAS_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Also serve `/metrics` on this address (an internal interface), without the token unless
    /// one is set.
    #[arg(long, env = "MAAS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

impl MetricsArgs {
    fn auth(&self) -> server::gateway::metrics::ScrapeAuth {
        server::gateway::metrics::ScrapeAuth { token: self.metrics_token.as_deref().filter(|t| !t.is_empty()).map(std::sync::Arc::from) }
    }

    /// The metrics router for the main listener, after starting the dedicated one if asked.
    async fn serve(&self, gw: &std::sync::Arc<server::gateway::Gateway>) -> anyhow::Result<axum::Router> {
        if let Some(addr) = self.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--metrics-listen {addr}: {e}"))?;
            let auth = self.auth();
            let router = gw.metrics_router(auth.token.is_some().then_some(auth));
            tracing::info!(%addr, "serving /metrics");
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
        }
        Ok(gw.metrics_router(Some(self.auth())))
    }
}

/// The usage meter (gateway/meter.rs); the same for `serve` and `gateway`.
#[derive(clap::Args, Clone)]
struct UsageArgs {
    /// Record every call's usage (requests, tokens, latency) into the database. `false` only to
    /// measure what metering costs.
    #[arg(long, env = "MAAS_USAGE_METERING", default_value_t = true, action = clap::ArgAction::Set)]
    usage_metering: bool,
    /// How often the recorded usage is written to the database.
    #[arg(long, env = "MAAS_USAGE_FLUSH", default_value = "5s", value_parser = server::serving::parse_duration)]
    usage_flush: std::time::Duration,
}

/// Calls waiting for an endpoint slot when every endpoint of a model is at its cap on
/// concurrent calls (gateway/slots.rs); the same for `serve` and `gateway`.
#[derive(clap::Args, Clone)]
struct QueueArgs {
    /// How long a call waits for a free slot before its 429.
    #[arg(long, env = "MAAS_ENDPOINT_QUEUE_WAIT", default_value = "10s", value_parser = server::serving::parse_duration)]
    endpoint_queue_wait: std::time::Duration,
    /// How many calls of one model may wait at once; more are refused at once.
    #[arg(long, env = "MAAS_ENDPOINT_QUEUE_MAX", default_value_t = 1000)]
    endpoint_queue_max: usize,
}

/// What one client may hold of the server (serving.rs); the same for `serve` and `gateway`.
#[derive(clap::Args, Clone)]
struct ClientArgs {
    /// From a request's first byte until its complete head (`10s`, `500ms`, `2m`).
    #[arg(long, env = "MAAS_HEADER_TIMEOUT", default_value = "10s", value_parser = server::serving::parse_duration)]
    header_timeout: std::time::Duration,
    /// A connection with no request under way that sends nothing for this long is closed.
    #[arg(long, env = "MAAS_IDLE_TIMEOUT", default_value = "60s", value_parser = server::serving::parse_duration)]
    idle_timeout: std::time::Duration,
    /// Grace for a request body, after which it must average MAAS_BODY_MIN_RATE.
    #[arg(long, env = "MAAS_BODY_TIMEOUT", default_value = "10s", value_parser = server::serving::parse_duration)]
    body_timeout: std::time::Duration,
    /// Bytes per second a request body must average once its grace is over.
    #[arg(long, env = "MAAS_BODY_MIN_RATE", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    body_min_rate: u64,
    /// Open client connections at most (all serving threads), clipped to what the open-file
    /// limit allows; past it the connection idle the longest is closed, or a newcomer gets 503.
    #[arg(long, env = "MAAS_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

impl ClientArgs {
    fn limits(&self) -> server::serving::ClientLimits {
        server::serving::ClientLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            body_min_rate: self.body_min_rate,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// What the gateway needs to reach beyond itself, the same for `serve` and `gateway`.
#[derive(clap::Args, Clone)]
struct ReachArgs {
    /// PEM file of CAs trusted for https endpoints besides Mozilla's roots (model servers behind
    /// a private CA).
    #[arg(long, env = "MAAS_UPSTREAM_CA_CERT")]
    upstream_ca_cert: Option<PathBuf>,
    /// Keep rate-limit counters in this Redis, shared with other replicas (default: in-process;
    /// `rediss://` for TLS).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// PEM file of the CA that signed a `rediss://` server's certificate, when it is not a
    /// public one (default: the system's and Mozilla's roots).
    #[arg(long, env = "REDIS_CA_CERT")]
    redis_ca_cert: Option<PathBuf>,
    /// REDIS_URL is a Redis Cluster (one or more seed nodes, comma-separated): each check goes
    /// to the node holding its workspace's slot.
    #[arg(long, env = "REDIS_CLUSTER")]
    redis_cluster: bool,
    /// With Redis: how long a call's token reservations and places in concurrency rules
    /// outlive a replica that died holding them (renewed every third of it while the call runs).
    #[arg(long, env = "MAAS_REDIS_LEASE", default_value = "60s", value_parser = server::serving::parse_duration)]
    redis_lease: std::time::Duration,
}

#[derive(clap::Parser, Clone)]
struct GatewayArgs {
    /// The entry cluster whose models this gateway serves.
    #[arg(long, env = "MAAS_CLUSTER")]
    cluster: String,
    #[arg(long, env = "MAAS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The control plane's database (PostgreSQL when replicas run on several hosts).
    #[arg(long, env = "DATABASE_URL", default_value = server::bootstrap::DEFAULT_DB, hide_env_values = true)]
    database_url: String,
    /// Shared rate-limit counters. Without them each replica counts on its own.
    #[command(flatten)]
    reach: ReachArgs,
    /// The control plane's key, to decrypt upstream API keys (or `secret.key` in --data-dir).
    #[arg(long, env = "MAAS_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    #[arg(long, env = "MAAS_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// How this replica appears in the gateway status (default: cluster@host:port).
    #[arg(long, env = "MAAS_GATEWAY_ID")]
    gateway_id: Option<String>,
    #[arg(long, env = "MAAS_WORKERS")]
    workers: Option<usize>,
    #[command(flatten)]
    clients: ClientArgs,
    #[command(flatten)]
    usage: UsageArgs,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
}

fn main() -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries only what a person needs (URL, first login, demo key).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()))
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Migrate { database_url }) => single_threaded()?.block_on(async {
            server::bootstrap::open_db(&database_url).await?;
            println!("migrations applied");
            Ok(())
        }),
        Some(Cmd::AdminToken { database_url, name, write, last_day, operator }) => single_threaded()?.block_on(async {
            let db = server::bootstrap::open_db(&database_url).await?;
            let secret = server::bootstrap::admin_token(&db, &name, write, &last_day, operator.as_deref()).await?;
            println!("{secret}");
            Ok(())
        }),
        Some(Cmd::Serve(a)) => {
            let (workers, limits) = (a.workers, a.clients.limits());
            run_workers(workers, limits, move || async move { start(&a).await })
        }
        Some(Cmd::Gateway(a)) => {
            let (workers, limits) = (a.workers, a.clients.limits());
            run_workers(workers, limits, move || async move { start_gateway(&a).await })
        }
        Some(Cmd::MockUpstream { listen, latency_ms, chunks, chunk_delay_ms, no_record }) => {
            // The benchmarks' "direct" baseline: a stock multi-threaded axum server.
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
                let cfg = server::mock_upstream::MockConfig { latency_ms, chunks, chunk_delay_ms };
                let listener = tokio::net::TcpListener::bind(listen).await?;
                println!("mock upstream: http://{}/v1", listener.local_addr()?);
                axum::serve(listener, server::mock_upstream::router(cfg, !no_record)).with_graceful_shutdown(shutdown()).await?;
                Ok(())
            })
        }
        None => {
            let a = ServeArgs::parse_from(["maas"]);
            let (workers, limits) = (a.workers, a.clients.limits());
            run_workers(workers, limits, move || async move { start(&a).await })
        }
    }
}

fn single_threaded() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Thread per core: `workers` single-threaded runtimes accept from the one listener, each
/// serving every route. A request (and the upstream connection it uses, see
/// gateway::upstream) stays on one thread from accept to last byte: no work-stealing, no
/// cross-core wake-ups. Measured against tokio's multi-threaded runtime on the gateway path:
/// about a quarter less CPU per request. The first runtime also runs the start-up work and the
/// config reloader; blocking work (argon2, SQLite) goes to each runtime's blocking pool.
fn run_workers<F, Fut>(workers: Option<usize>, limits: server::serving::ClientLimits, start: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(server::gateway::Front, std::net::TcpListener)>>,
{
    let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    tune_malloc(workers);
    let open_files = server::serving::raise_open_file_limit();
    let clients = server::serving::Server::new(limits, open_files);
    tracing::info!(open_files, max_connections = clients.max_connections(), "client connection bound");
    // The serving threads start before anything else spawns a thread, and allocate (their
    // runtime) at once: glibc gives a thread's first allocation a new arena while there are
    // fewer than the cap, so each serving thread gets its own. Started after the database,
    // SQLite's threads took the spare arena and two serving threads shared main_arena's lock
    // (a futex on every other request, seen with strace and gdb).
    type Handoff =
        (std::net::TcpListener, server::gateway::Front, std::sync::Arc<server::serving::Server>, tokio::sync::watch::Receiver<bool>);
    let mut handoffs = Vec::new();
    let mut threads = Vec::new();
    for i in 1..workers {
        let (tx, rx) = std::sync::mpsc::channel::<Handoff>();
        handoffs.push(tx);
        threads.push(std::thread::Builder::new().name(format!("maas-worker-{i}")).spawn(move || -> anyhow::Result<()> {
            let rt = single_threaded()?;
            match rx.recv() {
                Ok((listener, front, clients, stop)) => rt.block_on(serve_on(listener, front, clients, stop)),
                Err(_) => Ok(()), // start-up failed; the main thread reports why
            }
        })?);
    }
    single_threaded()?.block_on(async move {
        let (front, listener) = start().await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        for tx in handoffs {
            tx.send((listener.try_clone()?, front.clone(), clients.clone(), stop_rx.clone()))
                .map_err(|_| anyhow::anyhow!("a worker thread exited early"))?;
        }
        tokio::spawn(async move {
            shutdown().await;
            stop_tx.send_replace(true);
        });
        serve_on(listener, front.clone(), clients, stop_rx).await?;
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        // Every answer has ended (and been recorded): the usage since the last flush goes now.
        front.gateway().final_usage_flush().await;
        Ok(())
    })
}

/// glibc gives threads up to 8 malloc arenas per core, each keeping its own freed memory: with
/// the serving threads plus SQLite's and the blocking pool's, that was ~20 MiB of RSS under load.
/// One arena per serving thread keeps them uncontended. (mimalloc was tried: no CPU gain on the
/// gateway path once its allocations were cut, and +25 MiB RSS.)
///
/// And allocations of 4 MiB and more always come from mmap, so they go back to the system when
/// freed: with glibc's default (a threshold that rises to the largest block freed), every
/// login's 19 MiB Argon2 block stayed in the heap, 19 MiB of RSS more per login, even one at a
/// time (scripts/bench-login.py: 211 MiB after 12 sequential logins, 17 MiB with this).
fn tune_malloc(workers: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            unsafe { libc::mallopt(libc::M_ARENA_MAX, workers.max(2) as libc::c_int) };
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
                // Fixing the threshold also fixes the trim threshold (128 KiB by default): keep
                // the serving threads' small-allocation churn from trimming the heap constantly.
                libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = workers;
}

async fn serve_on(
    listener: std::net::TcpListener,
    front: server::gateway::Front,
    clients: std::sync::Arc<server::serving::Server>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    server::serving::serve(listener, front, clients, stop).await?;
    Ok(())
}

/// Opens the database, prepares state and the gateway, binds: everything before serving.
async fn start(a: &ServeArgs) -> anyhow::Result<(server::gateway::Front, std::net::TcpListener)> {
    use server::bootstrap;
    let db = bootstrap::open_db(&a.database_url).await?;
    let secret = bootstrap::secret_key(a.secret_key.clone(), &a.data_dir)?;
    let generated = bootstrap::first_operator(&db, &a.admin_user, a.admin_password.clone()).await?;
    let rev = app::ssr::current_revision(&db).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut state = bootstrap::state(db, &secret, a.secure_cookies, rev, true);
    state.allowed_origins = a.allowed_origins.iter().map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect();
    state.client_ip_header = a.client_ip_header.clone();
    let listener = std::net::TcpListener::bind(a.listen)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let url = format!("http://{local}");
    let demo = match &a.demo_upstream {
        Some(up) => bootstrap::seed_demo(&state, &url, up, &a.data_dir).await?,
        None => None,
    };
    let config = server::gateway::GatewayConfig {
        usage_metering: a.usage.usage_metering,
        slot_wait: a.queue.endpoint_queue_wait,
        slot_queue: a.queue.endpoint_queue_max,
        ..Default::default()
    };
    let gateway = build_gateway(config, &a.reach).await?;
    // Named by host and port: stable across restarts (one status row per process, not one per
    // start), distinct for several `maas serve` processes on one database.
    let id = format!("serve@{}:{}", hostname(), local.port());
    let serves = match &a.cluster {
        Some(c) => server::gateway::Serves::Cluster(c.clone()),
        None => server::gateway::Serves::EntryAddresses(own_origins(local, &state.allowed_origins)),
    };
    server::gateway::spawn_reloader(gateway.clone(), state.clone(), serves, id.clone());
    server::gateway::probe::spawn_prober(gateway.clone(), state.db.clone(), id.clone());
    server::gateway::shared_load::spawn(gateway.clone(), id.clone());
    server::gateway::spawn_usage_flusher(gateway.clone(), state.db.clone(), id, a.usage.usage_flush);
    let retention = server::usage_upkeep::Retention { minutes: a.usage_keep_minute_rows, hours: a.usage_keep_hourly_rows };
    server::usage_upkeep::spawn(state.db.clone(), retention, std::time::Duration::from_secs(300));
    // Serve /v1 only once the configuration is loaded: before that every model would be a 404.
    if !initial_config(&state, rev).await {
        tracing::warn!("the gateway has not loaded the configuration yet; /v1 answers 404 until it does");
    }
    let metrics = a.metrics.serve(&gateway).await?;
    let front = server::compose::console(&gateway, state, local, metrics);
    println!("MaaS console: {url}");
    if let Some(pw) = generated {
        println!("first operator created: username `{}`, password `{pw}` (shown once)", a.admin_user);
    }
    if let Some(d) = demo {
        println!("{d}");
    }
    Ok((front, listener))
}

/// The gateway alone, for one cluster, on the control plane's database (which it only reads,
/// besides its own status row).
async fn start_gateway(a: &GatewayArgs) -> anyhow::Result<(server::gateway::Front, std::net::TcpListener)> {
    use server::bootstrap;
    let db = app::ssr::connect(&a.database_url).await?;
    // The control plane owns the schema: a gateway never migrates, it refuses to start on a
    // database that has none rather than serve nothing.
    let rev = app::ssr::current_revision(&db)
        .await
        .map_err(|e| anyhow::anyhow!("{e} (has `maas migrate` or `maas serve` run on this database?)"))?;
    let secret = bootstrap::existing_secret_key(a.secret_key.clone(), &a.data_dir).map_err(|e| {
        anyhow::anyhow!("MAAS_SECRET_KEY is not set and {} cannot be read ({e}): the gateway needs the control plane's key to decrypt upstream API keys", a.data_dir.join("secret.key").display())
    })?;
    {
        use app::ssr::entities::cluster;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        if cluster::Entity::find().filter(cluster::Column::Name.eq(&a.cluster)).one(&db).await?.is_none() {
            tracing::warn!(cluster = %a.cluster, "no such cluster (yet): this gateway serves no model until an operator creates it");
        }
    }
    let state = bootstrap::state(db, &secret, false, rev, true);
    // The heartbeat also polls the database's revision: the only change signal a separate
    // process gets. Twice a second keeps "follows changes within 1 s" with room to build.
    let config = server::gateway::GatewayConfig {
        heartbeat: std::time::Duration::from_millis(500),
        usage_metering: a.usage.usage_metering,
        slot_wait: a.queue.endpoint_queue_wait,
        slot_queue: a.queue.endpoint_queue_max,
        ..Default::default()
    };
    let gateway = build_gateway(config, &a.reach).await?;
    let listener = std::net::TcpListener::bind(a.listen)?;
    listener.set_nonblocking(true)?;
    let id =
        a.gateway_id.clone().unwrap_or_else(|| format!("{}@{}:{}", a.cluster, hostname(), listener.local_addr().map_or(0, |l| l.port())));
    server::gateway::spawn_reloader(gateway.clone(), state.clone(), server::gateway::Serves::Cluster(a.cluster.clone()), id.clone());
    server::gateway::probe::spawn_prober(gateway.clone(), state.db.clone(), id.clone());
    server::gateway::shared_load::spawn(gateway.clone(), id.clone());
    server::gateway::spawn_usage_flusher(gateway.clone(), state.db.clone(), id.clone(), a.usage.usage_flush);
    // A replica joins its load balancer only with its configuration loaded: accepting before
    // would answer 404 for every model. Not loadable at all is a failed start, not a silent one.
    if !initial_config(&state, rev).await {
        anyhow::bail!("could not load the configuration from the database within 30 s (see the errors above)");
    }
    let metrics = a.metrics.serve(&gateway).await?;
    let front = server::compose::replica(&gateway, metrics);
    println!("MaaS gateway {id} for cluster `{}`: http://{}/v1", a.cluster, listener.local_addr()?);
    Ok((front, listener))
}

/// Waits (at most 30 s) until the gateway has applied revision `rev`, the one read at start.
async fn initial_config(state: &app::ssr::AppState, rev: i64) -> bool {
    let mut applied = state.config_applied.subscribe();
    tokio::time::timeout(std::time::Duration::from_secs(30), applied.wait_for(|a| *a >= rev)).await.is_ok_and(|r| r.is_ok())
}

/// The gateway: trusting the extra upstream CAs if any, and with a Redis URL, rate limits shared
/// with the other replicas (otherwise counted here).
async fn build_gateway(
    mut config: server::gateway::GatewayConfig,
    reach: &ReachArgs,
) -> anyhow::Result<std::sync::Arc<server::gateway::Gateway>> {
    use anyhow::Context;
    use server::gateway::{
        admission::redis_limiter::{RedisConfig, RedisLimiter},
        upstream, Gateway,
    };
    // The conventional variables (HTTPS_PROXY, ALL_PROXY, NO_PROXY, and lowercase), as curl
    // and most HTTP clients read them.
    config.proxies = std::sync::Arc::new(upstream::Proxies::from_env());
    // Said once at start rather than only in each failing request's reason (the URL is not
    // logged: it may carry the proxy's credentials).
    if let Some(scheme) = upstream::unsupported_proxy_scheme(&config.proxies) {
        tracing::warn!(scheme, "HTTPS_PROXY/ALL_PROXY names a proxy that is not http://: https endpoints it covers will fail (only http:// proxies, with CONNECT, are supported)");
    }
    if let Some(path) = &reach.upstream_ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading MAAS_UPSTREAM_CA_CERT {}", path.display()))?;
        config.upstream_roots =
            upstream::parse_ca_pem(&pem).map_err(|e| anyhow::anyhow!("MAAS_UPSTREAM_CA_CERT {}: {e}", path.display()))?;
    }
    let Some(url) = reach.redis_url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(Gateway::new(config));
    };
    let ca_pem = match &reach.redis_ca_cert {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("reading REDIS_CA_CERT {}", path.display()))?),
        None => None,
    };
    let redis_config = RedisConfig { url: url.to_owned(), cluster: reach.redis_cluster, ca_pem };
    if reach.redis_lease < std::time::Duration::from_secs(3) {
        anyhow::bail!("MAAS_REDIS_LEASE must be at least 3s (got {:?}): a lease is renewed every third of it", reach.redis_lease);
    }
    config.lease = reach.redis_lease;
    let redis = RedisLimiter::new(&redis_config, std::time::Duration::from_millis(500))?;
    // Unreachable at start is not fatal (each request falls back to local counters until it
    // answers), but an operator should know at once.
    match redis.ping().await {
        Ok(()) => tracing::info!("rate limits shared through redis"),
        Err(e) => tracing::error!(error = %e, "redis does not answer; rate limits count per replica until it does"),
    }
    Ok(Gateway::shared(config, redis))
}

/// The origins a cluster's entry address names when it points at this `maas serve`: its listen
/// address (any host on its port when it listens on all interfaces; `localhost` too on
/// loopback), and the public origins it was told of (MAAS_ALLOWED_ORIGINS).
fn own_origins(local: SocketAddr, allowed: &[String]) -> Vec<String> {
    let port = local.port();
    let mut own = vec![format!("http://{local}")];
    if local.ip().is_unspecified() {
        own.push(format!("http://*:{port}"));
    }
    own.extend(allowed.iter().cloned());
    own
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into())
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
