//! What one hostile client can hold of the server, over real loopback sockets against the real
//! serving layer (`server::serving`, as `maas serve` and `maas gateway` run it): idle, slow
//! header and slow body connections are closed, a long answer is not, and past the connection
//! bound an honest client is still served or refused at once. And the real binary: a chosen
//! admin password is never printed, the data folder and database are private.
mod common;
use server::mock_upstream::{self, MockConfig};
use server::serving::{self, ClientLimits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Served {
    addr: SocketAddr,
    server: Arc<serving::Server>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn serve(limits: ClientLimits, mock: MockConfig) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serving::Server::new(limits, 1 << 20);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serving::serve(listener, mock_upstream::router(mock, false), server.clone(), rx));
    Served { addr, server, _stop: stop }
}

fn short() -> ClientLimits {
    ClientLimits {
        header_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(600),
        body_timeout: Duration::from_millis(600),
        body_min_rate: 1000,
        max_connections: 1000,
    }
}

/// Reads until the server closes the connection (EOF or reset); how long that took, and what
/// came before.
async fn until_closed(tcp: &mut TcpStream, within: Duration) -> (Duration, String) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), tcp.read(&mut buf)).await {
            Err(_) => panic!("still open after {within:?}; received {:?}", String::from_utf8_lossy(&seen)),
            Ok(Ok(0)) | Ok(Err(_)) => return (start.elapsed(), String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `bytes` one at a time, `gap` apart, until the server closes the connection; how long
/// it stayed open.
async fn trickle(tcp: &mut TcpStream, bytes: &[u8], gap: Duration) -> Duration {
    let start = Instant::now();
    for b in bytes.iter().cycle().take(10_000) {
        if tcp.write_all(&[*b]).await.is_err() {
            return start.elapsed();
        }
        let mut probe = [0u8; 1024];
        match tokio::time::timeout(gap, tcp.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(10), "a trickling client kept its connection for 10 s");
    }
    unreachable!()
}

fn chat(stream: bool) -> serde_json::Value {
    serde_json::json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn idle_slow_header_and_slow_body_connections_are_closed_while_a_long_stream_is_not() {
    // Stream chunks 900 ms apart: every gap is longer than any of the timeouts.
    let s = serve(short(), MockConfig { chunks: 4, chunk_delay_ms: 900, ..Default::default() }).await;
    let url = format!("http://{}/v1/chat/completions", s.addr);
    let stream = tokio::spawn(async move {
        let started = Instant::now();
        let body = reqwest::Client::new().post(url).json(&chat(true)).send().await.unwrap().text().await.unwrap();
        (started.elapsed(), body)
    });

    let addr = s.addr;
    let (idle_closed, head_open, body_open, (kept_closed, answered)) = tokio::join!(
        // A connection that sends nothing.
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let (t, nothing) = until_closed(&mut tcp, Duration::from_secs(3)).await;
            assert!(nothing.is_empty());
            t
        },
        // One that sends its request line and headers a byte every 100 ms: never done in time.
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            trickle(
                &mut tcp,
                b"GET /_mock/stats HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
                Duration::from_millis(100),
            )
            .await
        },
        // One whose body (100 kB announced) comes at 4 bytes a second.
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            tcp.write_all(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
            )
            .await
            .unwrap();
            trickle(&mut tcp, b"a", Duration::from_millis(250)).await;
            started.elapsed()
        },
        // One that made a request and then stayed, idle, on keep-alive.
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET /_mock/stats HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            until_closed(&mut tcp, Duration::from_secs(3)).await
        },
    );

    // Each after its timeout (600 ms; the watchdog looks every 150 ms), not before.
    for (what, t) in [("idle", idle_closed), ("slow header", head_open), ("slow body", body_open), ("idle keep-alive", kept_closed)] {
        assert!(t >= Duration::from_millis(550) && t < Duration::from_millis(2500), "{what} connection closed after {t:?}");
    }
    assert!(answered.starts_with("HTTP/1.1 200"), "the keep-alive request was answered first: {answered}");

    // The stream under way ran to its end, ~3.6 s, through gaps longer than every timeout.
    let (took, body) = stream.await.unwrap();
    assert!(took >= Duration::from_millis(2700), "{took:?}");
    assert!(body.contains("chunk 3") && body.trim_end().ends_with("data: [DONE]"), "the stream was cut: {body}");
    // A slow but honest non-streamed answer (2 s before the upstream answers) is not cut either.
    let slow =
        reqwest::Client::new().post(format!("http://{}/delay/2000/v1/chat/completions", s.addr)).json(&chat(false)).send().await.unwrap();
    assert_eq!(slow.status(), 200);
    assert!(slow.text().await.unwrap().contains("chat.completion"));
}

#[tokio::test]
async fn past_the_connection_bound_the_longest_idle_connection_makes_room() {
    let limits =
        ClientLimits { max_connections: 4, idle_timeout: Duration::from_secs(60), header_timeout: Duration::from_secs(60), ..short() };
    let s = serve(limits, MockConfig::default()).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..50 {
        if s.server.open_connections() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.server.open_connections(), 4);
    // Honest clients over the bound, each keeping its connection: served at once.
    let mut honest = Vec::new();
    for _ in 0..3 {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let r = client.get(format!("http://{}/_mock/stats", s.addr)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        honest.push(client);
    }
    // The three oldest idle connections made room for them, oldest first; the newest stays.
    for (i, tcp) in idle.iter_mut().enumerate().take(3) {
        let (_, got) = until_closed(tcp, Duration::from_secs(1)).await;
        assert!(got.is_empty(), "idle connection {i}: {got}");
    }
    let mut probe = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), idle[3].read(&mut probe)).await.is_err(),
        "the newest idle connection was kept"
    );
}

#[tokio::test]
async fn with_every_connection_busy_a_newcomer_is_refused_at_once_and_the_streams_finish() {
    let limits = ClientLimits { max_connections: 2, ..short() };
    let s = serve(limits, MockConfig { chunks: 4, chunk_delay_ms: 300, ..Default::default() }).await;
    let streams: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("http://{}/v1/chat/completions", s.addr);
            tokio::spawn(async move { reqwest::Client::new().post(url).json(&chat(true)).send().await.unwrap().text().await.unwrap() })
        })
        .collect();
    for _ in 0..100 {
        if s.server.open_connections() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /_mock/stats HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (_, answer) = until_closed(&mut tcp, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_millis(500), "refused after {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"too_many_connections""#) && answer.contains("Retry-After: 1"), "{answer}");
    for s in streams {
        assert!(s.await.unwrap().trim_end().ends_with("data: [DONE]"));
    }
}

/// The real `maas serve`, started with a chosen operator password: it never prints it (stdout
/// lands in journald and container logs), and the data folder and database are its own.
#[tokio::test]
async fn a_chosen_admin_password_is_never_printed_and_the_data_files_are_private() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::daemons::free_port();
    let password = "chosen-Secret-4711";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .arg("serve")
        .env("DATABASE_URL", format!("sqlite://{}/maas.db?mode=rwc", data.display()))
        .env("MAAS_DATA_DIR", &data)
        .env("MAAS_LISTEN", format!("127.0.0.1:{port}"))
        .env("MAAS_ADMIN_PASSWORD", password)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !printed.iter().any(|l: &String| l.starts_with("MaaS console:")) {
        printed.push(rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("maas serve did not start within 30 s"));
    }
    // The operator can log in with it.
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/login"))
        .form(&[("username", "admin"), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    printed.extend(rx.try_iter());
    assert!(!printed.iter().any(|l| l.contains(password)), "the chosen password was printed:\n{}", printed.join("\n"));
    assert!(!printed.iter().any(|l| l.contains("first operator created")), "{}", printed.join("\n"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("maas.db")), 0o600);
    assert_eq!(mode(&data.join("secret.key")), 0o600);
    for side in ["maas.db-wal", "maas.db-shm"] {
        if data.join(side).exists() {
            assert_eq!(mode(&data.join(side)), 0o600, "{side}");
        }
    }
}

#[tokio::test]
async fn a_request_refused_before_its_body_was_read_says_the_connection_closes_and_a_pool_goes_on() {
    // A route that answers without reading the body (as the gateway refuses an unknown key).
    let refuse = axum::Router::new().route("/refuse", axum::routing::post(|| async { (http::StatusCode::UNAUTHORIZED, "no") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serving::serve(listener, refuse, serving::Server::new(short(), 1 << 20), rx));
    // One pooled connection, as every HTTP client keeps them.
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let body = vec![b'x'; 1 << 20];
    for i in 0..3 {
        let r = client.post(format!("http://{addr}/refuse")).body(body.clone()).send().await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(r.status(), 401, "call {i}");
        assert_eq!(r.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"), "call {i}");
        assert_eq!(r.text().await.unwrap(), "no");
    }
    // A body that was read keeps the connection.
    let keep = axum::Router::new().route("/echo", axum::routing::post(|b: axum::body::Bytes| async move { b.len().to_string() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop2, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serving::serve(listener, keep, serving::Server::new(short(), 1 << 20), rx));
    let r = client.post(format!("http://{addr}/echo")).body(body).send().await.unwrap();
    assert!(r.headers().get("connection").is_none());
    assert_eq!(r.text().await.unwrap(), (1 << 20).to_string());
}
