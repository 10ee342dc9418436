//! Server functions through the real axum router (`oneshot`, no socket): the role guard,
//! cookies, statuses and field errors as the browser receives them.
mod common;
use app::types::*;
use common::*;
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn login_sets_an_httponly_samesite_cookie_and_wrong_password_is_a_field_error() {
    let env = env().await;
    env.user("op", Role::Operator).await;
    let r = env.router();
    let (status, _, body) = send(&r, form("/api/login", None, "username=op&password=nope-nope")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, r#"{"Invalid":{"password":"wrong username or password"}}"#);
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
        ("/api/users/list", ""),
        ("/api/users/create", "username=eve&password=password123&role=operator"),
        ("/api/models/list", "search=&page=0"),
        ("/api/models/get", "id=1"),
        ("/api/models/form-options", ""),
        ("/api/models/enable", "id=1&enabled=true"),
        ("/api/models/delete", "id=1"),
    ];
    for (path, body) in operator_only {
        let (status, _, text) = send(&r, form(path, None, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a session: {text}");
        assert_eq!(text, r#""Unauthenticated""#);
        let (status, _, text) = send(&r, form(path, Some(&alice), body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} as a user: {text}");
        assert_eq!(text, r#""Forbidden""#);
    }
    let save = json!({"id": null, "input": {"marketplace_model_id": 1, "cluster_id": 1, "policy": "round_robin", "endpoints": [], "rules": []}});
    let (status, _, _) = send(&r, json("/api/models/save", Some(&alice), &save)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Login-level functions refuse anonymous callers too.
    for path in ["/api/keys/list", "/api/keys/create", "/api/keys/revoke", "/api/workspaces/list", "/api/offerings"] {
        let (status, _, _) = send(&r, form(path, None, "workspace_id=1&name=x&id=1")).await;
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

    let (status, _, body) = send(&r, form("/api/clusters/create", Some(&c), "name=&entry_address=ftp://x")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, r#"{"Invalid":{"entry_address":"must start with http:// or https://","name":"required"}}"#);

    let (status, _, body) = send(&r, form("/api/marketplace/create", Some(&c), "name=bad name&provider=&description=&tags=")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Invalid"]["name"], "use letters, digits and - _ . : / only");
    assert_eq!(v["Invalid"]["provider"], "required");

    let (status, _, body) = send(&r, form("/api/users/create", Some(&c), "username=eve&password=short&role=admin")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, r#"{"Invalid":{"role":"choose operator or user"}}"#);

    // The model form: weights 50/30/10, a non-http URL, a zero limit, a duration out of range.
    let mut input = serde_json::to_value(weighted_input(&f)).unwrap();
    input["endpoints"][2]["weight"] = json!("10");
    input["endpoints"][0]["url"] = json!("api.example.com");
    input["rules"][0]["limit"] = json!("0");
    input["rules"][1]["duration"] = json!("99999999");
    let (status, _, body) = send(&r, json("/api/models/save", Some(&c), &json!({"id": null, "input": input}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Invalid"]["weights"], "weights must total 100 (now 90)");
    assert_eq!(v["Invalid"]["endpoints.0.url"], "must start with http:// or https://");
    assert_eq!(v["Invalid"]["rules.0.limit"], "must be at least 1");
    assert_eq!(v["Invalid"]["rules.1.duration"], "must be at most 604800");

    // A valid one saves; saving it again is a field error on the cluster (409-free, no 500).
    let good = json!({"id": null, "input": weighted_input(&f)});
    let (status, _, body) = send(&r, json("/api/models/save", Some(&c), &good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(&r, json("/api/models/save", Some(&c), &good)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("already has a MaaS model on this cluster"), "{body}");
    // Malformed JSON is a clear 4xx, not a 500.
    let bad = http::Request::post("/api/models/save").header("content-type", "application/json").header("cookie", &c).body(axum::body::Body::from("{not json")).unwrap();
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
    let (status, _, body) = send(&r, json("/api/models/save", Some(&c), &json!({"id": null, "input": weighted_input(&f)}))).await;
    assert_eq!(status, StatusCode::OK);
    let id: i64 = body.parse().unwrap();
    for (path, body) in [("/api/models/get", format!("id={id}")), ("/api/models/list", "search=&page=0".into()), ("/api/models/form-options", String::new())] {
        let (_, _, text) = send(&r, form(path, Some(&c), &body)).await;
        assert!(!text.contains("sk-upstream-a"), "{path} leaked the key");
    }
    let (_, _, text) = send(&r, form("/api/models/get", Some(&c), &format!("id={id}"))).await;
    assert!(text.contains(r#""has_key":true"#));
    // Nor does the server-rendered edit page.
    let page = http::Request::get(format!("/models/{id}/edit")).header("cookie", &c).body(axum::body::Body::empty()).unwrap();
    let (status, _, html) = send(&r, page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("ds-a") && !html.contains("sk-upstream-a"));
}

#[tokio::test]
async fn users_see_only_their_workspaces_and_the_user_view() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    env.user("alice", Role::User).await;
    let f = fixture(&env, &op).await;
    let other = app::ssr::services::workspaces::create(env.db(), "alices").await.unwrap();
    app::ssr::services::workspaces::add_member(env.db(), other, "alice").await.unwrap();
    let r = env.router();
    let a = login(&r, "alice").await;
    let (_, _, body) = send(&r, form("/api/workspaces/list", Some(&a), "")).await;
    assert!(body.contains("alices") && !body.contains("team-a"), "{body}");
    let (status, _, body) = send(&r, form("/api/keys/create", Some(&a), &format!("workspace_id={}&name=x", f.ws))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, body) = send(&r, form("/api/keys/create", Some(&a), &format!("workspace_id={other}&name=mine"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("sk-maas-"));

    let (id, _) = app::ssr::services::models::create(env.db(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    let (_, _, body) = send(&r, form("/api/offerings", Some(&a), "")).await;
    assert_eq!(body, "[]");
    app::ssr::services::models::set_enabled(env.db(), id, true).await.unwrap();
    let (_, _, body) = send(&r, form("/api/offerings", Some(&a), "")).await;
    assert!(body.contains(r#""base_url":"http://127.0.0.1:3000/v1""#), "{body}");
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
