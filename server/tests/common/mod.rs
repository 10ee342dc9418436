//! Test helpers: a fresh database per test, built by the real migrations: a SQLite file, or
//! with `MAAS_TEST_DB=postgres` a PostgreSQL server of its own (the scale-out control plane's
//! database: `make test` runs the console's service and HTTP tests on both).
#![allow(dead_code)]
pub mod daemons;
pub mod tls;
use app::ssr::{auth, AppState};
use app::types::*;
use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    url: String,
    // Last: dropped (stopped) after the pool that uses it.
    pg: Option<daemons::Postgres>,
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pg = match std::env::var("MAAS_TEST_DB").as_deref() {
        Ok("postgres") => Some(daemons::Postgres::start().await),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("MAAS_TEST_DB={other}: sqlite or postgres"),
    };
    let url = pg.as_ref().map_or_else(|| format!("sqlite://{}/maas.db?mode=rwc", dir.path().display()), |pg| pg.url.clone());
    let db = server::bootstrap::open_db(&url).await.unwrap();
    let state = server::bootstrap::state(db, "test-secret", false, 1, false);
    Env { dir, state, url, pg }
}

impl Env {
    pub fn db(&self) -> &sea_orm::DatabaseConnection {
        &self.state.db
    }
    pub fn db_url(&self) -> String {
        self.url.clone()
    }
    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }
    /// The service `maas serve` composes (`server::compose::console`), with a gateway of its own
    /// that serves nothing (these tests are about the console and the admin API).
    pub fn router(&self) -> server::gateway::Front {
        let gw = server::gateway::Gateway::new(Default::default());
        let metrics = metrics_without_token(&gw);
        server::compose::console(&gw, self.state.clone(), "127.0.0.1:0".parse().unwrap(), metrics)
    }
    pub async fn user(&self, name: &str, role: Role) -> CurrentUser {
        let id = auth::create_user(self.db(), &app::ssr::audit::Actor::system(), name, "password123", role).await.unwrap();
        CurrentUser { id, username: name.into(), role }
    }
}

/// A workspace named `name` with `member` in it: its id.
pub async fn workspace_of(env: &Env, name: &str, member: &str) -> i64 {
    use app::ssr::services::workspaces;
    let ws = workspaces::create(env.db(), &app::ssr::audit::Actor::system(), name).await.unwrap();
    workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), ws, member).await.unwrap();
    ws
}

/// Marketplace model (published), cluster, workspace with one key: ids.
pub struct Fixture {
    pub mm: i64,
    pub cluster: i64,
    pub ws: i64,
    pub key: i64,
    pub secret: String,
}

pub async fn fixture(env: &Env, op: &CurrentUser) -> Fixture {
    use app::ssr::services::{catalog, keys, workspaces};
    let db = env.db();
    let mm = catalog::create_marketplace(
        db,
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput {
            name: "deepseek-chat".into(),
            provider: "DeepSeek".into(),
            description: "".into(),
            tags: "chat, 64k".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    catalog::set_published(db, &app::ssr::audit::Actor::system(), mm, true).await.unwrap();
    let cluster = catalog::create_cluster(db, &app::ssr::audit::Actor::system(), "local", "http://127.0.0.1:3000/").await.unwrap();
    let ws = workspaces::create(db, &app::ssr::audit::Actor::system(), "team-a").await.unwrap();
    let (k, _) = keys::create(db, &app::ssr::audit::Actor::system(), op, ws, "ci").await.unwrap();
    Fixture { mm, cluster, ws, key: k.info.id, secret: k.secret }
}

pub fn endpoint(model_id: &str, url: &str, weight: &str) -> EndpointInput {
    EndpointInput {
        id: None,
        model_id: model_id.into(),
        url: url.into(),
        api_key: KeyChange::Keep,
        weight: weight.into(),
        skip_stream_usage: false,
        max_concurrent: String::new(),
        native_apis: app::types::default_apis(),
        draining: false,
    }
}

pub fn weighted_input(f: &Fixture) -> ModelInput {
    ModelInput {
        marketplace_model_id: Some(f.mm),
        cluster_id: Some(f.cluster),
        policy: Policy::Weighted,
        endpoints: vec![
            EndpointInput { api_key: KeyChange::Set("sk-upstream-a".into()), ..endpoint("ds-a", "https://a.example/v1", "50") },
            endpoint("ds-b", "https://b.example", "30"),
            endpoint("ds-c", "http://127.0.0.1:9000", "20"),
        ],
        rules: vec![
            RuleInput {
                kind: app::types::RuleKind::Requests,
                target: RuleTarget::ApiKey,
                workspace_id: Some(f.ws),
                api_key_id: Some(f.key),
                limit: "100".into(),
                duration: "60".into(),
            },
            RuleInput {
                kind: app::types::RuleKind::Requests,
                target: RuleTarget::Workspace,
                workspace_id: Some(f.ws),
                api_key_id: None,
                limit: "1000".into(),
                duration: "3600".into(),
            },
        ],
        reserve_output: String::new(),
        affinity_key: Default::default(),
        ..Default::default()
    }
}

/// What the tests send requests to: the composed front, or a router.
pub trait App:
    tower::Service<Request<Body>, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send> + Clone + Send
{
}
impl<S> App for S where
    S: tower::Service<Request<Body>, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send> + Clone + Send
{
}

pub async fn send(router: &impl App, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let (status, headers, body) = send_raw(router, req).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn send_raw(router: &impl App, req: Request<Body>) -> (StatusCode, http::HeaderMap, axum::body::Bytes) {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.into_body().collect().await.unwrap().to_bytes())
}

/// A server function's answer as the console reads it (postcard, `app::api`): the value on a
/// success, the `AppError` the server sent otherwise.
pub async fn call<T: serde::de::DeserializeOwned>(router: &impl App, req: Request<Body>) -> (StatusCode, Result<T, app::error::AppError>) {
    let (status, _, body) = send_raw(router, req).await;
    let answer = if status.is_success() {
        Ok(postcard::from_bytes(&body).unwrap_or_else(|e| panic!("{status}: not the answer's type ({e}): {body:?}")))
    } else {
        Err(postcard::from_bytes(&body).unwrap_or_else(|e| panic!("{status}: not an AppError ({e}): {body:?}")))
    };
    (status, answer)
}

/// The refusal of a form whose `fields` (name, message) are wrong.
pub fn invalid(fields: &[(&str, &str)]) -> app::error::AppError {
    let mut e = FieldErrors::default();
    for (f, m) in fields {
        e.add(*f, *m);
    }
    app::error::AppError::Invalid(e)
}

pub fn form(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/x-www-form-urlencoded").header("accept", "application/json");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

pub fn json(path: &str, cookie: Option<&str>, body: &serde_json::Value) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json").header("accept", "application/json");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Logs in through the real endpoint and returns the `Cookie` header value.
pub async fn login(router: &impl App, user: &str) -> String {
    let (status, headers, body) = send(router, form("/api/login", None, &format!("username={user}&password=password123"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let set = headers.get("set-cookie").unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// The real `maas serve` on a fresh SQLite file with the demo model on `demo_upstream`, once it
/// printed its URL: the process, its data folder, base URL and demo key.
pub struct DemoServe {
    pub child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub port: u16,
    pub key: String,
}

pub fn demo_serve(demo_upstream: &str, env: &[(&str, &str)]) -> DemoServe {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = daemons::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_maas"));
    cmd.args(["serve", "--demo-upstream", demo_upstream])
        .env("DATABASE_URL", format!("sqlite://{}/maas.db?mode=rwc", dir.path().display()))
        .env("MAAS_DATA_DIR", dir.path())
        .env("MAAS_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Up once it prints its URL. Its output is read to the end on a thread of its own: a pipe
    // closed early would make its later prints fail.
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("MaaS console:") {
                let _ = up_tx.send(());
            }
        }
    });
    up_rx.recv_timeout(std::time::Duration::from_secs(30)).expect("maas serve did not start within 30 s");
    let key = std::fs::read_to_string(dir.path().join("demo.key")).unwrap().trim().to_owned();
    DemoServe { child, dir, base: format!("http://127.0.0.1:{port}"), port, key }
}

/// Serves `front` on a port of its own as `maas serve` / `maas gateway` do (the same serving
/// layer, with the default client bounds); the base URL.
#[allow(dead_code)] // not every test binary serves a front
pub async fn serve_front(front: server::gateway::Front) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let clients = server::serving::Server::new(server::serving::ClientLimits::default(), 1 << 20);
    tokio::spawn(async move {
        // Serving until the test's runtime ends (a dropped sender would stop it).
        let _stop = stop;
        server::serving::serve(l, front, clients, rx).await.unwrap()
    });
    format!("http://{addr}")
}

/// The metrics router as `maas serve` mounts it on its main listener without a scrape token.
#[allow(dead_code)]
pub fn metrics_without_token(gw: &std::sync::Arc<server::gateway::Gateway>) -> Router {
    gw.metrics_router(Some(server::gateway::metrics::ScrapeAuth { token: None }))
}

/// Serves a plain router (the mock upstream) on a port of its own; the base URL.
#[allow(dead_code)]
pub async fn serve_router(router: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("http://{addr}")
}
