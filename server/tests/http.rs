//! Server functions through the real axum router (`oneshot`, no socket): the role guard,
//! cookies, statuses and field errors as the browser receives them.
mod common;
use app::error::AppError;
use app::types::*;
use common::*;
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn login_sets_an_httponly_samesite_cookie_and_wrong_password_is_a_field_error() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    let r = env.router();
    let (status, answer) = call::<CurrentUser>(&r, form("/api/login", None, "username=op&password=nope-nope")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer, Err(invalid(&[("password", "wrong username or password")])));
    let (status, headers, _) = send(&r, form("/api/login", None, "username=op&password=password123")).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("maas_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
}

#[tokio::test]
async fn every_server_function_checks_the_caller() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    env.user("alice", Role::User).await;
    let r = env.router();
    let alice = login(&r, "alice").await;

    // (path, body) of every operator-only function.
    let operator_only = [
        ("/api/marketplace/list", ""),
        ("/api/marketplace/create", "name=x&provider=p&description=&tags="),
        ("/api/marketplace/publish", "id=1&published=true"),
        ("/api/clusters/list", ""),
        ("/api/clusters/create", "name=c&entry_address=http://x"),
        ("/api/workspaces/create", "name=w"),
        ("/api/workspaces/add-member", "workspace_id=1&username=alice"),
        ("/api/workspaces/quota", "id=1&period=day&tokens=10&requests="),
        ("/api/keys/quota", "id=1&period=day&tokens=10&requests="),
        ("/api/users/list", ""),
        ("/api/users/create", "username=eve&password=password123&role=operator"),
        ("/api/models/list", "search=&page=0"),
        ("/api/models/get", "id=1"),
        ("/api/models/form-options", ""),
        ("/api/models/health", "id=1"),
        ("/api/models/prices", "id=1"),
        (
            "/api/models/prices/add",
            "id=1&input_per_million=1&cached_input_per_million=&output_per_million=&per_unit=&per_call=&effective_from=",
        ),
        ("/api/models/enable", "id=1&enabled=true"),
        ("/api/models/delete", "id=1"),
        ("/api/usage/page", "range=24h&model=&workspace=&key="),
    ];
    for (path, body) in operator_only {
        let (status, answer) = call::<()>(&r, form(path, None, body)).await;
        assert_eq!((status, answer), (StatusCode::UNAUTHORIZED, Err(AppError::Unauthenticated)), "{path} without a session");
        let (status, answer) = call::<()>(&r, form(path, Some(&alice), body)).await;
        assert_eq!((status, answer), (StatusCode::FORBIDDEN, Err(AppError::Forbidden)), "{path} as a user");
    }
    let save =
        json!({"id": null, "input": {"marketplace_model_id": 1, "cluster_id": 1, "policy": "round_robin", "endpoints": [], "rules": []}});
    let (status, _, _) = send(&r, json("/api/models/save", Some(&alice), &save)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Login-level functions refuse anonymous callers too.
    for path in [
        "/api/keys/list",
        "/api/keys/create",
        "/api/keys/revoke",
        "/api/keys/models",
        "/api/keys/scope",
        "/api/workspaces/list",
        "/api/offerings",
        "/api/usage/keys",
    ] {
        let (status, _, _) = send(&r, form(path, None, "workspace_id=1&name=x&id=1&last_day=&all_models=true&models=")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // A forged or stale cookie is no session.
    let (status, _, _) = send(&r, form("/api/keys/list", Some("maas_session=deadbeef"), "")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn validation_errors_come_back_per_field() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let r = env.router();
    let c = login(&r, "op").await;

    let (status, answer) = call::<i64>(&r, form("/api/clusters/create", Some(&c), "name=&entry_address=ftp://x")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer, Err(invalid(&[("entry_address", "must start with http:// or https://"), ("name", "required")])));

    let (status, answer) = call::<i64>(&r, form("/api/marketplace/create", Some(&c), "name=bad name&provider=&description=&tags=")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let e = answer.unwrap_err();
    assert_eq!(e.fields().and_then(|f| f.get("name")), Some("use letters, digits and - _ . : / only"));
    assert_eq!(e.fields().and_then(|f| f.get("provider")), Some("required"));

    let (status, answer) = call::<i64>(&r, form("/api/users/create", Some(&c), "username=eve&password=short&role=admin")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer, Err(invalid(&[("role", "choose operator or user")])));

    // The model form: weights 50/30/10, a non-http URL, a zero limit, a duration out of range.
    let mut input = serde_json::to_value(weighted_input(&f)).unwrap();
    input["endpoints"][2]["weight"] = json!("10");
    input["endpoints"][0]["url"] = json!("api.example.com");
    input["rules"][0]["limit"] = json!("0");
    input["rules"][1]["duration"] = json!("99999999");
    let (status, answer) = call::<i64>(&r, json("/api/models/save", Some(&c), &json!({"id": null, "input": input}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let e = answer.unwrap_err();
    let field = |name| e.fields().and_then(|f| f.get(name));
    assert_eq!(field("weights"), Some("weights must total 100 (now 90)"));
    assert_eq!(field("endpoints.0.url"), Some("must start with http:// or https://"));
    assert_eq!(field("rules.0.limit"), Some("must be at least 1"));
    assert_eq!(field("rules.1.duration"), Some("must be at most 604800"));

    // A valid one saves; saving it again is a field error on the cluster (409-free, no 500).
    let good = json!({"id": null, "input": weighted_input(&f)});
    let (status, _, body) = send(&r, json("/api/models/save", Some(&c), &good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(&r, json("/api/models/save", Some(&c), &good)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("already has a MaaS model on this cluster"), "{body}");
    // Malformed JSON is a clear 4xx, not a 500.
    let bad = http::Request::post("/api/models/save")
        .header("content-type", "application/json")
        .header("cookie", &c)
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    let (status, _, _) = send(&r, bad).await;
    assert!(status.is_client_error(), "{status}");
}

#[tokio::test]
async fn upstream_keys_never_reach_the_browser() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let r = env.router();
    let c = login(&r, "op").await;
    let (status, id) = call::<i64>(&r, json("/api/models/save", Some(&c), &json!({"id": null, "input": weighted_input(&f)}))).await;
    assert_eq!(status, StatusCode::OK);
    let id = id.unwrap();
    for (path, body) in [
        ("/api/models/get", format!("id={id}")),
        ("/api/models/list", "search=&page=0".into()),
        ("/api/models/form-options", String::new()),
        ("/api/models/health", format!("id={id}")),
    ] {
        let (_, _, text) = send(&r, form(path, Some(&c), &body)).await;
        assert!(!text.contains("sk-upstream-a"), "{path} leaked the key");
    }
    let (_, detail) = call::<ModelDetail>(&r, form("/api/models/get", Some(&c), &format!("id={id}"))).await;
    assert!(detail.unwrap().endpoints.iter().any(|e| e.has_key), "the form learns only that a key is set");
    // Nor does the server-rendered edit page.
    let page = http::Request::get(format!("/models/{id}/edit")).header("cookie", &c).body(axum::body::Body::empty()).unwrap();
    let (status, _, html) = send(&r, page).await;
    assert_eq!(status, StatusCode::OK);
    // The page carries the model's data for hydration in base64 (postcard): read it decoded.
    let carried = format!("{html}{}", decoded_base64_strings(&html));
    assert!(carried.contains("ds-a") && !carried.contains("sk-upstream-a"), "{carried}");
}

/// Every quoted string of `html` that is base64 (as Leptos writes a resource's binary data
/// into the page), decoded, lossily, one per line.
fn decoded_base64_strings(html: &str) -> String {
    use base64::Engine;
    html.split('"')
        .filter(|s| s.len() >= 8 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'))
        .filter_map(|s| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned() + "\n")
        .collect()
}

#[tokio::test]
async fn users_see_only_their_workspaces_and_the_user_view() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    env.user("alice", Role::User).await;
    let f = fixture(&env, &op).await;
    let other = workspace_of(&env, "alices", "alice").await;
    let r = env.router();
    let a = login(&r, "alice").await;
    let (_, _, body) = send(&r, form("/api/workspaces/list", Some(&a), "")).await;
    assert!(body.contains("alices") && !body.contains("team-a"), "{body}");
    let (status, _, body) = send(&r, form("/api/keys/create", Some(&a), &format!("workspace_id={}&name=x", f.ws))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, body) = send(&r, form("/api/keys/create", Some(&a), &format!("workspace_id={other}&name=mine"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("sk-maas-"));

    let (id, _) = app::ssr::services::models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f))
        .await
        .unwrap();
    let (_, offerings) = call::<Vec<Offering>>(&r, form("/api/offerings", Some(&a), "")).await;
    assert_eq!(offerings, Ok(vec![]));
    app::ssr::services::models::set_enabled(env.db(), &app::ssr::audit::Actor::system(), id, None, true).await.unwrap();
    let (_, offerings) = call::<Vec<Offering>>(&r, form("/api/offerings", Some(&a), "")).await;
    assert_eq!(offerings.unwrap().iter().map(|o| o.base_url.as_str()).collect::<Vec<_>>(), ["http://127.0.0.1:3000/v1"]);
    let page = http::Request::get("/marketplace").header("cookie", &a).body(axum::body::Body::empty()).unwrap();
    let (_, _, html) = send(&r, page).await;
    assert!(html.contains("deepseek-chat") && html.contains("from openai import OpenAI"), "user view renders snippets");
}

#[tokio::test]
async fn pages_redirect_anonymous_callers_to_login() {
    let env = env().await;
    let r = env.router();
    let page = http::Request::get("/models").header("accept", "text/html").body(axum::body::Body::empty()).unwrap();
    let (status, headers, _) = send(&r, page).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers.get("location").unwrap(), "/login?next=/models");
}

fn with_headers(mut req: http::Request<axum::body::Body>, headers: &[(&'static str, &str)]) -> http::Request<axum::body::Body> {
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    req
}

const HOST: (&str, &str) = ("host", "127.0.0.1:3000");
const SAME: (&str, &str) = ("origin", "http://127.0.0.1:3000");
/// Another port of the console's host: the same site, another origin.
const OTHER: (&str, &str) = ("origin", "http://127.0.0.1:8080");

#[tokio::test]
async fn cross_origin_and_text_plain_requests_are_refused_and_change_nothing() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    env.user("alice", Role::User).await;
    let f = fixture(&env, &op).await;
    let ws = workspace_of(&env, "alices", "alice").await;
    let r = env.router();
    let alice = login(&r, "alice").await;
    let opc = login(&r, "op").await;
    let keys = || async {
        call::<Vec<ApiKeyInfo>>(&r, form("/api/keys/list", Some(&alice), ""))
            .await
            .1
            .unwrap()
            .into_iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
    };

    // A form posted by a page on another port, with the victim's cookie: refused, no key made.
    let create = format!("workspace_id={ws}&name=planted");
    // The refusal is an AppError in the server functions' encoding: the console shows it.
    let (status, answer) = call::<CreatedApiKey>(&r, with_headers(form("/api/keys/create", Some(&alice), &create), &[HOST, OTHER])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(matches!(&answer, Err(AppError::Transport(m)) if m.starts_with("cross-origin request refused")), "{answer:?}");
    let (status, _, _) =
        send(&r, with_headers(form("/api/keys/create", Some(&alice), &create), &[HOST, ("sec-fetch-site", "same-site")])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(keys().await, Vec::<String>::new());
    // The console's own page: served.
    let (status, _, body) =
        send(&r, with_headers(form("/api/keys/create", Some(&alice), &create), &[HOST, SAME, ("sec-fetch-site", "same-origin")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(keys().await.contains(&"planted".to_string()));

    // A JSON body sent as text/plain (no preflight cross-origin): refused even with no Origin.
    let mut input = serde_json::to_value(weighted_input(&f)).unwrap();
    input["endpoints"][0]["url"] = json!("http://attacker.example");
    let save = json!({"id": null, "input": input}).to_string();
    let plain = http::Request::post("/api/models/save")
        .header("content-type", "text/plain")
        .header("cookie", &opc)
        .body(axum::body::Body::from(save.clone()))
        .unwrap();
    let (status, _, body) = send(&r, plain).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, _, body) =
        send(&r, with_headers(json("/api/models/save", Some(&opc), &serde_json::from_str(&save).unwrap()), &[HOST, OTHER])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, list) = call::<ModelPage>(&r, form("/api/models/list", Some(&opc), "search=&page=0")).await;
    assert_eq!(list.unwrap().total, 0);

    // Login and logout answer to the same check: no login CSRF, no forced logout.
    let (status, headers, _) =
        send(&r, with_headers(form("/api/login", None, "username=alice&password=password123"), &[HOST, OTHER])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("set-cookie").is_none());
    let (status, _, _) = send(&r, with_headers(form("/api/logout", Some(&alice), ""), &[HOST, OTHER])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(keys().await.contains(&"planted".to_string()), "still logged in");
    // Pages (GET) are not state-changing: any origin may link to them.
    let page = with_headers(http::Request::get("/login").body(axum::body::Body::empty()).unwrap(), &[HOST, OTHER]);
    assert_eq!(send(&r, page).await.0, StatusCode::OK);
}

#[tokio::test]
async fn after_login_the_browser_only_goes_to_a_path_of_this_origin() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    let r = env.router();
    for (next, expected) in [
        ("/models", "/models"),
        ("/keys?x=1", "/keys?x=1"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("https://evil.example", "/"),
        ("/%5Cevil.example", "/%5Cevil.example"),
    ] {
        let body = format!("username=op&password=password123&next={}", urlencode(next));
        let req = with_headers(form("/api/login", None, &body), &[("accept", "text/html")]);
        let (status, headers, _) = send(&r, req).await;
        assert_eq!(status, StatusCode::FOUND, "{next:?}");
        assert_eq!(headers.get("location").unwrap(), expected, "{next:?}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_and_the_real_password_works_after_the_backoff() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    let r = env.router();
    for i in 0..app::ssr::login_throttle::ACCOUNT_FREE {
        let (status, _, body) = send(&r, form("/api/login", None, "username=op&password=wrong-wrong")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "attempt {i}: {body}");
    }
    // The next attempt waits, even with the right password, and says for how long.
    let (status, headers, body) = send(&r, form("/api/login", None, "username=op&password=password123")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    let err: app::error::AppError = postcard::from_bytes(body.as_bytes()).unwrap();
    assert_eq!(err.to_string(), "too many failed logins; try again in 1 s");
    assert!(headers.get("set-cookie").is_none());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, headers, body) = send(&r, form("/api/login", None, "username=op&password=password123")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.get("set-cookie").is_some());
}

#[tokio::test]
async fn a_parallel_burst_of_wrong_passwords_gets_the_same_free_tries_as_a_sequence() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    let r = env.router();
    // 40 at once: each is counted when admitted, before its hash, so the ones that arrive while
    // the first are hashing are refused as they would be one after another.
    let answers = futures_util::future::join_all((0..40).map(|_| {
        let r = r.clone();
        async move { send(&r, form("/api/login", None, "username=op&password=wrong-wrong")).await.0 }
    }))
    .await;
    let checked = answers.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count();
    let refused = answers.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (app::ssr::login_throttle::ACCOUNT_FREE as usize, 40 - app::ssr::login_throttle::ACCOUNT_FREE as usize));
}

#[tokio::test]
async fn concurrent_logins_hash_at_most_one_per_core_and_never_fail_with_500() {
    let env = env().await;
    let r = env.router();
    let answers = futures_util::future::join_all((0..32).map(|i| {
        let r = r.clone();
        async move { send(&r, form("/api/login", None, &format!("username=nobody{i}&password=guess-guess"))).await.0 }
    }))
    .await;
    for s in &answers {
        assert!(*s == StatusCode::UNPROCESSABLE_ENTITY || *s == StatusCode::TOO_MANY_REQUESTS, "{s}");
    }
    let (peak, bound) = app::ssr::auth::hashing_peak();
    assert!(peak >= 1 && peak <= bound, "{peak} Argon2 runs at once, bound {bound}");
}

#[tokio::test]
async fn pages_and_answers_carry_the_security_headers_and_scripts_only_run_by_nonce() {
    let env = env().await;
    env.user("alice", Role::User).await;
    let ws = workspace_of(&env, "alices", "alice").await;
    let r = env.router();
    let (status, headers, html) = send(&r, http::Request::get("/login").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers.get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    let nonce = csp.split("'nonce-").nth(1).and_then(|s| s.split('\'').next()).expect("a nonce in the CSP");
    assert!(nonce.len() >= 16);
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("object-src 'none'")
            && csp.contains("'wasm-unsafe-eval'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    // Every inline script of the page carries this response's nonce.
    let scripts = html.matches("<script").count();
    assert!(scripts >= 1);
    assert_eq!(
        html.matches(&format!("<script type=\"module\" nonce=\"{nonce}\"")).count()
            + html.matches(&format!("<script nonce=\"{nonce}\"")).count(),
        scripts,
        "{html}"
    );
    // Another response, another nonce.
    let (_, again, _) = send(&r, http::Request::get("/login").body(axum::body::Body::empty()).unwrap()).await;
    assert_ne!(again.get("content-security-policy").unwrap().to_str().unwrap(), csp);
    for (k, v) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(headers.get(k).map(|h| h.to_str().unwrap()), Some(v), "{k}");
    }
    assert!(headers.get("strict-transport-security").is_none(), "no HSTS over plain http");
    // The built assets: not sniffed, cacheable.
    let (_, pkg, _) = send(&r, http::Request::get("/pkg/maas.css").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(pkg.get("x-content-type-options").unwrap(), "nosniff");
    assert!(pkg.get("cache-control").is_none());
    // The answer that shows a new key's secret is never cached.
    let alice = login(&r, "alice").await;
    let (status, headers, body) = send(&r, form("/api/keys/create", Some(&alice), &format!("workspace_id={ws}&name=k"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("sk-maas-"));
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");

    // Served over https (Secure cookies): HSTS too.
    let mut state = env.state.clone();
    state.secure_cookies = true;
    let secure = server::web::router(server::web::leptos_options("127.0.0.1:0".parse().unwrap()), state);
    let (_, headers, _) = send(&secure, http::Request::get("/login").body(axum::body::Body::empty()).unwrap()).await;
    assert!(headers.get("strict-transport-security").unwrap().to_str().unwrap().starts_with("max-age="));
}

#[tokio::test]
async fn a_huge_page_number_is_a_field_error() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    let r = env.router();
    let c = login(&r, "op").await;
    let (status, answer) = call::<ModelPage>(&r, form("/api/models/list", Some(&c), &format!("search=&page={}", u64::MAX / 2))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer, Err(invalid(&[("page", "must be at most 1000000")])));
    let (status, _, body) = send(&r, form("/api/models/list", Some(&c), &format!("search={}&page=0", "x".repeat(300)))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, _) = send(&r, form("/api/models/list", Some(&c), "search=&page=1000000")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_login_replaces_the_session_the_browser_had_and_idle_sessions_end() {
    use sea_orm::{ConnectionTrait, Statement};
    let env = env().await;
    env.user("op", Role::Operator).await;
    let r = env.router();
    let first = login(&r, "op").await;
    // Logging in again from a browser that holds a session: that session ends (a token planted
    // before login never becomes the victim's session).
    let (status, headers, _) = send(&r, form("/api/login", Some(&first), "username=op&password=password123")).await;
    assert_eq!(status, StatusCode::OK);
    let second = headers.get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(send(&r, form("/api/users/list", Some(&first), "")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&r, form("/api/users/list", Some(&second), "")).await.0, StatusCode::OK);
    // Eight hours without a request: the session is gone, though its 7 days are not over.
    let idle = app::ssr::now() - app::ssr::auth::SESSION_IDLE_SECS - 1;
    env.db()
        .execute_raw(Statement::from_string(env.db().get_database_backend(), format!("UPDATE sessions SET last_seen_at = {idle}")))
        .await
        .unwrap();
    assert_eq!(send(&r, form("/api/users/list", Some(&second), "")).await.0, StatusCode::UNAUTHORIZED);
}

/// The Usage page's server function and the CSV export: operators only, and bad query values
/// are field errors, never "everything" nor a 500.
#[tokio::test]
async fn usage_page_and_export_refuse_other_roles_and_bad_input() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    env.user("alice", Role::User).await;
    let r = env.router();
    let (op, alice) = (login(&r, "op").await, login(&r, "alice").await);
    let get = |cookie: Option<&str>, q: &str| {
        let mut b = http::Request::get(format!("/usage/export.csv?{q}"));
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        b.body(axum::body::Body::empty()).unwrap()
    };
    let ok = "from=2026-11-01&to=2026-11-30";
    assert_eq!(send(&r, get(None, ok)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&r, get(Some(&alice), ok)).await.0, StatusCode::FORBIDDEN);
    let (status, headers, body) = send(&r, get(Some(&op), ok)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(headers["content-disposition"], "attachment; filename=\"maas-usage-2026-11-01-2026-11-30.csv\"");
    assert!(body.starts_with("day,workspace_id,"), "{body}");
    for (q, field) in [
        ("from=2026-11-31&to=2026-12-01", "from"),
        ("from=2026-12-01&to=2026-11-01", "to"),
        (&*format!("from={}&to=2026-12-01", "9".repeat(5000)), "from"),
        ("", "from"),
    ] {
        let (status, _, body) = send(&r, get(Some(&op), q)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(body.starts_with(&format!("{field}: ")) || body.contains(&format!("\n{field}: ")), "{q}: {body}");
    }
    let (status, answer) = call::<String>(&r, form("/api/usage/page", Some(&op), "range=1y&model=x&workspace=&key=-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer, Err(invalid(&[("key", "an id"), ("model", "an id"), ("range", "one of 1h, 24h, 7d, 30d")])));
    let (status, html) = call::<String>(&r, form("/api/usage/page", Some(&op), "range=24h&model=&workspace=&key=")).await;
    assert_eq!(status, StatusCode::OK);
    let html = html.unwrap();
    assert!(html.contains("usage-totals") && html.contains("<svg"), "the page's HTML: {}", html.chars().take(200).collect::<String>());
}

/// Setting a key's scope over HTTP: field errors as 422 per field, a malformed form as 400, a
/// cross-origin post refused, a user's widening refused, an operator's limit stored.
#[tokio::test]
async fn key_scope_server_function_checks_origin_fields_and_who_sets_what() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    env.user("alice", Role::User).await;
    let f = fixture(&env, &op).await;
    app::ssr::services::workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), f.ws, "alice").await.unwrap();
    let (m, _) = app::ssr::services::models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f))
        .await
        .unwrap();
    let r = env.router();
    let alice = login(&r, "alice").await;
    let opc = login(&r, "op").await;
    let (status, choices) = call::<Vec<Choice>>(&r, form("/api/keys/models", Some(&alice), "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(choices.unwrap().contains(&Choice { id: m, label: "deepseek-chat".into() }));

    let body = |last_day: &str, all: bool, models: &str| format!("id={}&last_day={last_day}&all_models={all}&models={models}", f.key);
    let (status, _, text) = send(&r, form("/api/keys/scope", Some(&opc), &body("", false, &format!("{m},x")))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("model ids, separated by commas"), "{text}");
    let (status, _, text) = send(&r, form("/api/keys/scope", Some(&opc), &format!("id={}&last_day=", f.key))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "missing fields: {text}");
    let (status, _, text) =
        send(&r, with_headers(form("/api/keys/scope", Some(&opc), &body("", false, &m.to_string())), &[HOST, OTHER])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    let limit = || async { app::ssr::services::keys::list(env.db(), &op).await.unwrap()[0].limit.clone() };
    assert_eq!(limit().await, KeyScope::default(), "nothing stored by refused calls");

    let (status, _, text) = send(&r, form("/api/keys/scope", Some(&opc), &body("", false, &m.to_string()))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(limit().await.models, Some(vec![m]));
    // Alice's "all models" stays within the operator's one model; a model outside it cannot be asked.
    let (status, _, text) = send(&r, form("/api/keys/scope", Some(&alice), &body("", true, ""))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, text) = send(&r, form("/api/keys/scope", Some(&alice), &body("", false, "987654"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert_eq!(limit().await.models, Some(vec![m]), "the user's calls never touch the operator's limit");
}

/// Setting quotas over HTTP: a malformed form is a 400, a bad period or budget a 422 next to
/// its field, a cross-origin post refused, and no refused call stores anything.
#[tokio::test]
async fn quota_server_functions_check_origin_and_fields_and_store_nothing_when_refused() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let r = env.router();
    let opc = login(&r, "op").await;
    let quota = || async { app::ssr::services::keys::list(env.db(), &op).await.unwrap()[0].quota.clone() };
    let body = |period: &str, tokens: &str, requests: &str| format!("id={}&period={period}&tokens={tokens}&requests={requests}", f.key);
    let (status, _, text) = send(&r, form("/api/keys/quota", Some(&opc), &format!("id={}&period=day", f.key))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "missing fields: {text}");
    let (status, answer) = call::<()>(&r, form("/api/keys/quota", Some(&opc), &body("week", "10", ""))).await;
    assert_eq!((status, answer), (StatusCode::UNPROCESSABLE_ENTITY, Err(invalid(&[("period", "choose day or month")]))));
    let (status, answer) = call::<()>(&r, form("/api/keys/quota", Some(&opc), &body("day", &"9".repeat(40), "-1"))).await;
    assert_eq!(
        (status, answer),
        (StatusCode::UNPROCESSABLE_ENTITY, Err(invalid(&[("requests", "must be at least 1"), ("tokens", "must be a whole number")])))
    );
    let money = format!("{}&spend=1.5.0&unpriced=maybe", body("day", "", ""));
    let (status, answer) = call::<()>(&r, form("/api/keys/quota", Some(&opc), &money)).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Err(invalid(&[("spend", "a decimal number, e.g. 0.15"), ("unpriced", "choose refuse or pass")]))
        )
    );
    let (status, _, text) = send(&r, with_headers(form("/api/keys/quota", Some(&opc), &body("day", "10", "")), &[HOST, OTHER])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    let (status, _, text) = send(
        &r,
        with_headers(form("/api/workspaces/quota", Some(&opc), &format!("id={}&period=day&tokens=10&requests=", f.ws)), &[HOST, OTHER]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert_eq!(quota().await, None, "nothing stored by refused calls");
    let (status, _, text) = send(&r, form("/api/keys/quota", Some(&opc), &body("day", "10", ""))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(quota().await.map(|q| (q.period, q.tokens, q.requests)), Some((Period::Day, Some(10), None)));
}

/// Editing and deleting from the console: operators only (a user gets 403, nothing changes),
/// refusals with the reason (409 for a cluster that has models), field errors, and a key
/// renamed only by its own workspace's members.
#[tokio::test]
async fn edits_and_deletes_are_guarded_and_refuse_what_the_schema_forbids() {
    use app::ssr::services::{catalog, models};
    let env = env().await;
    let r = env.router();
    let op = env.user("admin", Role::Operator).await;
    env.user("alice", Role::User).await;
    env.user("mallory", Role::User).await;
    let f = fixture(&env, &op).await;
    app::ssr::services::workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), f.ws, "alice").await.unwrap();
    let op_c = login(&r, "admin").await;
    let alice = login(&r, "alice").await;
    let mallory = login(&r, "mallory").await;
    let mut input = weighted_input(&f);
    input.rules.clear();
    models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &input).await.unwrap();

    for (path, body) in [
        ("/api/marketplace/update", format!("id={}&name=x&provider=y&description=&tags=", f.mm)),
        ("/api/marketplace/delete", format!("id={}", f.mm)),
        ("/api/clusters/update", format!("id={}&name=x&entry_address=http%3A%2F%2Fx", f.cluster)),
        ("/api/clusters/delete", format!("id={}", f.cluster)),
        ("/api/workspaces/rename", format!("id={}&name=x", f.ws)),
        ("/api/workspaces/delete", format!("id={}", f.ws)),
        ("/api/workspaces/remove-member", format!("workspace_id={}&username=alice", f.ws)),
        ("/api/users/delete", format!("id={}", op.id)),
    ] {
        let (s, _, b) = send(&r, form(path, Some(&alice), &body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {b}");
        assert_eq!(send(&r, form(path, None, &body)).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(catalog::list_clusters(env.db()).await.unwrap()[0].name, "local", "nothing changed");

    // The schema's refusals, with the reason.
    let (s, _, b) = send(&r, form("/api/clusters/delete", Some(&op_c), &format!("id={}", f.cluster))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(b.contains("still has 1"), "{b}");
    let (s, _, b) = send(&r, form("/api/marketplace/delete", Some(&op_c), &format!("id={}", f.mm))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, _, b) = send(&r, form("/api/users/delete", Some(&op_c), &format!("id={}", op.id))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, _, b) =
        send(&r, form("/api/clusters/update", Some(&op_c), &format!("id={}&name=bad%20name&entry_address=ftp%3A%2F%2Fx", f.cluster))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.contains("entry_address") && b.contains("name"), "{b}");
    assert_eq!(
        send(&r, form("/api/workspaces/remove-member", Some(&op_c), &format!("workspace_id={}&username=nobody", f.ws))).await.0,
        StatusCode::NOT_FOUND
    );

    // An operator edits.
    let (s, _, b) = send(
        &r,
        form("/api/marketplace/update", Some(&op_c), &format!("id={}&name=deepseek-v3&provider=DeepSeek&description=new&tags=chat", f.mm)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(catalog::get_marketplace(env.db(), f.mm).await.unwrap().name, "deepseek-v3");
    assert_eq!(
        send(&r, form("/api/workspaces/remove-member", Some(&op_c), &format!("workspace_id={}&username=alice", f.ws))).await.0,
        StatusCode::OK
    );

    // A key: renamed by its workspace's members (alice again a member) and operators, not by others.
    app::ssr::services::workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), f.ws, "alice").await.unwrap();
    let (s, _, _) = send(&r, form("/api/keys/rename", Some(&mallory), &format!("id={}&name=stolen", f.key))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another workspace's key is not even found");
    let (s, _, b) = send(&r, form("/api/keys/rename", Some(&alice), &format!("id={}&name=bad%20name", f.key))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(send(&r, form("/api/keys/rename", Some(&alice), &format!("id={}&name=ci-renamed", f.key))).await.0, StatusCode::OK);
    let keys = app::ssr::services::keys::list(env.db(), &op).await.unwrap();
    assert_eq!(keys.iter().find(|k| k.id == f.key).unwrap().name, "ci-renamed");

    // Deleting the workspace takes its key with it: the gateway stops accepting it.
    assert_eq!(send(&r, form("/api/workspaces/delete", Some(&op_c), &format!("id={}", f.ws))).await.0, StatusCode::OK);
    assert!(app::ssr::services::keys::list(env.db(), &op).await.unwrap().is_empty());
}

/// The playground's key: for the caller's own workspaces only, for an available model only,
/// scoped to that model, expiring within minutes, and revoked (only playground keys) by its end.
#[tokio::test]
async fn the_playground_issues_a_short_lived_key_for_one_model_in_your_own_workspace() {
    use app::ssr::services::models;
    let env = env().await;
    let r = env.router();
    let op = env.user("admin", Role::Operator).await;
    env.user("alice", Role::User).await;
    env.user("mallory", Role::User).await;
    let f = fixture(&env, &op).await;
    app::ssr::services::workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), f.ws, "alice").await.unwrap();
    let mut input = weighted_input(&f);
    input.rules.clear();
    let (mid, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &input).await.unwrap();
    let alice = login(&r, "alice").await;
    let mallory = login(&r, "mallory").await;
    let start = |ws: i64, model: &str| format!("workspace_id={ws}&model={model}");
    assert_eq!(send(&r, form("/api/playground/start", None, &start(f.ws, "deepseek-chat"))).await.0, StatusCode::UNAUTHORIZED);
    // Someone else's workspace, and a disabled model: refused next to the field.
    let (s, _, b) = send(&r, form("/api/playground/start", Some(&mallory), &start(f.ws, "deepseek-chat"))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.contains("workspace"), "{b}");
    let (s, _, b) = send(&r, form("/api/playground/start", Some(&alice), &start(f.ws, "deepseek-chat"))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.contains("not available"), "{b}");
    models::set_enabled(env.db(), &app::ssr::audit::Actor::system(), mid, None, true).await.unwrap();
    let (s, k) = call::<PlaygroundKey>(&r, form("/api/playground/start", Some(&alice), &start(f.ws, "deepseek-chat"))).await;
    assert_eq!(s, StatusCode::OK, "{k:?}");
    let k = k.unwrap();
    let ttl = k.expires_at - app::ssr::now();
    assert!((60..=15 * 60).contains(&ttl), "expires within minutes: {ttl} s");
    let keys = app::ssr::services::keys::list(env.db(), &op).await.unwrap();
    let pk = keys.iter().find(|x| x.id == k.key_id).unwrap();
    assert_eq!((pk.name.as_str(), pk.own.models.clone()), ("playground", Some(vec![mid])), "scoped to the one model");
    // Its end: not by another user, not for a key that is not a playground's.
    assert_eq!(send(&r, form("/api/playground/end", Some(&mallory), &format!("key_id={}", k.key_id))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&r, form("/api/playground/end", Some(&alice), &format!("key_id={}", f.key))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&r, form("/api/playground/end", Some(&alice), &format!("key_id={}", k.key_id))).await.0, StatusCode::OK);
    let keys = app::ssr::services::keys::list(env.db(), &op).await.unwrap();
    assert!(keys.iter().find(|x| x.id == k.key_id).unwrap().revoked);
    assert!(!keys.iter().find(|x| x.id == f.key).unwrap().revoked);
    // No secret in the audit log.
    use sea_orm::EntityTrait;
    let audit = format!("{:?}", app::ssr::entities::audit_entry::Entity::find().all(env.db()).await.unwrap());
    assert!(!audit.contains(&k.secret));
}
