//! `/metrics` of the real `maas serve`: refused without the scrape token, valid for `promtool
//! check metrics`, and scraped by a real Prometheus (Debian's, started here on 127.0.0.1) whose
//! query API returns the calls the test made.
mod common;
use common::daemons::{free_port, Prometheus};
use common::{demo_serve, DemoServe};
use serde_json::json;
use std::time::Duration;

async fn mock() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, server::mock_upstream::router(Default::default(), false)).await });
    url
}

async fn traffic(base: &str, key: &str) -> reqwest::Client {
    let http = reqwest::Client::new();
    for i in 0..8 {
        let body = json!({"model": "demo-chat", "stream": i == 7, "messages": [{"role": "user", "content": "hi"}]});
        let r = http.post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "nope", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&json!({"model": "demo-chat", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    http
}

#[tokio::test]
async fn prometheus_scrapes_the_calls_made_and_the_exposition_passes_promtool() {
    let up = mock().await;
    let DemoServe { mut child, base, port, key, dir: _dir } = demo_serve(&up, &[("MAAS_METRICS_TOKEN", "scrape-secret")]);
    let http = traffic(&base, &key).await;

    for auth in [None, Some("wrong")] {
        let mut req = http.get(format!("{base}/metrics"));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "token {auth:?}");
        assert!(!r.text().await.unwrap().contains("maas_gateway"), "nothing of the metrics without the token");
    }
    // What Prometheus asks for, and what a person or promtool gets.
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth("scrape-secret")
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
    let r = http.get(format!("{base}/metrics")).bearer_auth("scrape-secret").send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    for name in [
        "gen_ai_server_request_duration_seconds_bucket",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_client_token_usage_bucket",
        "maas_gateway_requests_total",
        "maas_gateway_config_revision",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(text.contains(r#"gen_ai_token_type="input""#) && text.contains(r#"gen_ai_request_model="demo-chat""#), "{text}");
    // Bounded labels: no key, no workspace, and what a caller sent as model is not a label.
    assert!(!text.contains("nope") && !text.contains("workspace") && !text.contains(&key), "{text}");

    let mut check = std::process::Command::new(common::daemons::require("/usr/bin/promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(text.as_bytes());
    let out = check.take().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let prom = Prometheus::start(&format!("127.0.0.1:{port}"), "scrape-secret").await;
    let mut seen = (None, None, None);
    for _ in 0..150 {
        seen = (
            prom.query(r#"sum(maas_gateway_requests_total{outcome="ok"})"#).await,
            prom.query(r#"sum(maas_gateway_requests_total)"#).await,
            prom.query(r#"sum(gen_ai_client_token_usage_sum{gen_ai_token_type="input"})"#).await,
        );
        if seen.0 == Some(8.0) && seen.1 == Some(10.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // 8 answered calls (7 + 1 stream) + a 404 + a 401; the mock reports 5 input tokens a call.
    assert_eq!(seen, (Some(8.0), Some(10.0), Some(40.0)), "what Prometheus scraped");
    let _ = child.kill();
}

#[tokio::test]
async fn without_a_token_metrics_are_only_on_the_metrics_listener() {
    let up = mock().await;
    let metrics_port = free_port();
    let DemoServe { mut child, base, key, dir: _dir, .. } =
        demo_serve(&up, &[("MAAS_METRICS_LISTEN", &format!("127.0.0.1:{metrics_port}"))]);
    let http = traffic(&base, &key).await;
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("MAAS_METRICS_TOKEN"));
    let text = http.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap().text().await.unwrap();
    let ok: f64 = text
        .lines()
        .filter(|l| l.starts_with("maas_gateway_requests_total{") && l.contains(r#"outcome="ok""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(ok, 8.0, "{text}");
    let _ = child.kill();
}

trait WithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> Option<std::process::Output>;
}

impl WithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> Option<std::process::Output> {
        use std::io::Write;
        let mut child = self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().ok()?;
        child.stdin.take()?.write_all(input).ok()?;
        child.wait_with_output().ok()
    }
}
