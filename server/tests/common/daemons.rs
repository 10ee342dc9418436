//! Real Redis and PostgreSQL servers for the scale-out tests, started on 127.0.0.1 (a free
//! port, a temporary directory) and stopped when dropped. They come from Debian's packages
//! (`scripts/setup.sh` installs them); a missing binary fails the test with the package to
//! install, never skips it.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    // The tests of one binary run at once: a port the OS hands out again after it was released
    // here (before the daemon it was for bound it) would put two tests' servers on one port, or
    // one test's Redis on a cluster node's bus port (its port + 10000), and mix their keys. So
    // never the same port twice in this process, nor one within 10000 of a port handed out.
    static TAKEN: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut taken = TAKEN.lock().unwrap();
        let clashes = [Some(p), p.checked_add(10_000), p.checked_sub(10_000)].into_iter().flatten().any(|q| taken.contains(&q));
        if p <= 55_535 && !clashes {
            taken.insert(p);
            return p;
        }
    }
}

/// Polls `ready` every 50 ms for up to 20 s.
async fn wait_until(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not become ready within 20 s");
}

pub(crate) fn require(bin: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(bin);
    assert!(p.exists(), "{bin} is missing: install Debian's `{package}` (scripts/setup.sh does)");
    p
}

pub struct Redis {
    child: Child,
    port: u16,
    pub url: String,
    _tls_dir: Option<tempfile::TempDir>,
    /// Where a persistent server keeps its append-only file across restarts.
    data: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Redis {
    pub async fn start() -> Redis {
        Redis::start_on(free_port(), None).await
    }

    /// A server that writes every change to its append-only file before answering, so a
    /// restart (even after a kill) finds its data: Redis run with persistence.
    pub async fn start_persistent() -> Redis {
        Redis::start_on(free_port(), Some(std::sync::Arc::new(tempfile::tempdir().unwrap()))).await
    }

    /// The server back on the port of a stopped one (Redis back after an outage): empty, or
    /// with its data when persistent.
    pub async fn restart(&mut self) {
        self.stop();
        *self = Redis::start_on(self.port, self.data.clone()).await;
    }

    async fn start_on(port: u16, data: Option<std::sync::Arc<tempfile::TempDir>>) -> Redis {
        let mut cmd = Command::new(require("/usr/bin/redis-server", "redis-server"));
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]);
        match &data {
            Some(dir) => cmd.args(["--appendonly", "yes", "--appendfsync", "always", "--dir", &dir.path().display().to_string()]),
            None => cmd.args(["--appendonly", "no"]),
        };
        let mut child = cmd.stdout(Stdio::null()).spawn().unwrap();
        wait_until("redis-server", &mut child, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
        Redis { child, port, url: format!("redis://127.0.0.1:{port}"), _tls_dir: None, data }
    }

    /// A server speaking only TLS (`rediss://`), with a certificate for 127.0.0.1 signed by a
    /// private CA made for it; returns the CA's PEM, which a client must be given to trust it.
    pub async fn start_tls() -> (Redis, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let ca = super::tls::private_ca(dir.path());
        let port = free_port();
        let path = |f: &str| dir.path().join(f).display().to_string();
        let mut child = Command::new(require("/usr/bin/redis-server", "redis-server"))
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .args([
                "--tls-cert-file",
                &path("server.pem"),
                "--tls-key-file",
                &path("server.key"),
                "--tls-ca-cert-file",
                &path("ca.pem"),
                "--tls-auth-clients",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("redis-server (TLS)", &mut child, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
        (Redis { child, port, url: format!("rediss://127.0.0.1:{port}"), _tls_dir: Some(dir), data: None }, ca)
    }

    /// Stops the server (an outage, for the fallback tests).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of `n` primaries (no replicas) on free ports, its 16,384 slots spread
/// over them by `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
    /// The seed nodes, comma-separated, as REDIS_URL takes them with REDIS_CLUSTER.
    pub url: String,
}

impl RedisCluster {
    pub async fn start(n: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for &port in &ports {
            let mut child = Command::new(require("/usr/bin/redis-server", "redis-server"))
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file", &format!("nodes-{port}.conf")])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            wait_until("redis-server (cluster node)", &mut child, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
            nodes.push(child);
        }
        let cli = require("/usr/bin/redis-cli", "redis-tools");
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        // Every node must agree the cluster is up before clients can rely on its slot map.
        let mut first = nodes.remove(0);
        wait_until("redis cluster", &mut first, || {
            ports.iter().all(|p| {
                Command::new(&cli)
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            })
        })
        .await;
        nodes.insert(0, first);
        let url = addrs.iter().map(|a| format!("redis://{a}")).collect::<Vec<_>>().join(",");
        RedisCluster { nodes, ports, _dir: dir, url }
    }

    /// Keys held by each node.
    pub fn keys_per_node(&self) -> Vec<u64> {
        let cli = require("/usr/bin/redis-cli", "redis-tools");
        self.ports
            .iter()
            .map(|p| {
                String::from_utf8_lossy(&Command::new(&cli).args(["-p", &p.to_string(), "dbsize"]).output().unwrap().stdout)
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Postgres {
    child: Child,
    data: PathBuf,
    _dir: tempfile::TempDir,
    pub url: String,
}

/// Debian installs PostgreSQL's server binaries under a versioned directory.
fn pg_bin(name: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default();
    let found = versions.iter().map(|v| v.join("bin").join(name)).find(|p| p.exists());
    found.unwrap_or_else(|| require(&format!("/usr/lib/postgresql/<version>/bin/{name}"), "postgresql"))
}

/// PostgreSQL refuses to run as root: as root, run its programs as the `postgres` user.
fn pg_command(bin: PathBuf) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

impl Postgres {
    pub async fn start() -> Postgres {
        // As root the server runs as `postgres`, which must reach its directory: /tmp may be
        // private to root (mode 700 on some machines), Debian's /var/tmp is open to all.
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let dir =
            if root { tempfile::Builder::new().prefix("maas-pg-").tempdir_in("/var/tmp").unwrap() } else { tempfile::tempdir().unwrap() };
        let data = dir.path().join("data");
        if root {
            let st = Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(st.success(), "chown of the PostgreSQL directory");
        }
        let out =
            pg_command(pg_bin("initdb")).args(["-A", "trust", "-U", "maas", "-E", "UTF8", "--no-sync", "-D"]).arg(&data).output().unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let mut child = pg_command(pg_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ready = pg_bin("pg_isready");
        wait_until("postgres", &mut child, || {
            Command::new(&ready).args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"]).status().is_ok_and(|s| s.success())
        })
        .await;
        Postgres { child, data, _dir: dir, url: format!("postgres://maas@127.0.0.1:{port}/postgres") }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The postmaster runs under runuser when we are root: pg_ctl reaches it either way.
        let _ = pg_command(pg_bin("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// A real Prometheus scraping one target every second (with a bearer token), on its own port
/// and storage directory.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub async fn start(target: &str, token: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: maas\n    metrics_path: /metrics\n    authorization:\n      credentials: {token}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let mut child = Command::new(require("/usr/bin/prometheus", "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("prometheus", &mut child, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The value of an instant query's first sample, if any.
    pub async fn query(&self, q: &str) -> Option<f64> {
        let v: serde_json::Value =
            reqwest::Client::new().get(format!("{}/api/v1/query", self.url)).query(&[("query", q)]).send().await.ok()?.json().await.ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
