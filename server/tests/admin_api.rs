//! The admin REST API (`/api/v1`) through the real router: admin tokens and sessions, each
//! resource's happy path and refusals (400, 401, 403, 404, 409, 412, 415, 422, 429), ETag /
//! If-Match, Idempotency-Key, and the audit and access logs it leaves.
mod common;
use app::ssr::audit::Actor;
use app::ssr::services::admin_tokens;
use app::types::*;
use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use serde_json::{json, Value};

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    token: Option<&'a str>,
    cookie: Option<&'a str>,
    body: Option<Value>,
    headers: Vec<(&'a str, String)>,
}

fn call<'a>(method: &'a str, path: &'a str, token: &'a str) -> Call<'a> {
    Call { method, path, token: Some(token), cookie: None, body: None, headers: vec![] }
}

impl<'a> Call<'a> {
    fn body(mut self, v: Value) -> Self {
        self.body = Some(v);
        self
    }
    fn header(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    async fn send(self, r: &impl common::App) -> (StatusCode, http::HeaderMap, Value) {
        let mut b = Request::builder().method(self.method).uri(format!("/api/v1{}", self.path));
        if let Some(t) = self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(c) = self.cookie {
            b = b.header("cookie", c);
        }
        for (k, v) in &self.headers {
            b = b.header(*k, v);
        }
        let req = match self.body {
            Some(v) => b.header("content-type", "application/json").body(Body::from(v.to_string())).unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let (s, h, text) = send(r, req).await;
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (s, h, v)
    }
}

/// An operator and two admin tokens of theirs: read-write and read-only.
async fn tokens(env: &Env) -> (CurrentUser, String, String) {
    let op = env.user("admin", Role::Operator).await;
    let sys = Actor::console(&op);
    let w = admin_tokens::create(env.db(), &sys, &op, "ci", TokenAccess::Write, "").await.unwrap();
    let r = admin_tokens::create(env.db(), &sys, &op, "dashboards", TokenAccess::Read, "").await.unwrap();
    (op, w.secret, r.secret)
}

async fn audit_rows(env: &Env) -> Vec<app::ssr::entities::audit_entry::Model> {
    use sea_orm::{EntityTrait, QueryOrder};
    app::ssr::entities::audit_entry::Entity::find().order_by_asc(app::ssr::entities::audit_entry::Column::Id).all(env.db()).await.unwrap()
}

#[tokio::test]
async fn tokens_and_sessions_are_checked_and_read_only_tokens_cannot_write() {
    let env = env().await;
    let r = env.router();
    let (op, rw, ro) = tokens(&env).await;
    env.user("alice", Role::User).await;
    let cluster = json!({"name": "east", "entry_address": "https://gw.example.com"});

    assert_eq!(call("GET", "/clusters", &ro).send(&r).await.0, StatusCode::OK);
    let (s, _, v) = call("POST", "/clusters", &ro).body(cluster.clone()).send(&r).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("read-only"), "{v}");
    let (s, h, v) = call("POST", "/clusters", &rw).body(cluster.clone()).send(&r).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(h["location"], format!("/api/v1/clusters/{}", v["id"]));
    assert_eq!(v["name"], "east");

    // No credentials, a wrong one, a gateway API key: 401 in the documented shape.
    let anon = Call { token: None, ..call("GET", "/clusters", "") };
    let (s, h, v) = anon.send(&r).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.contains_key("www-authenticate"));
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(call("GET", "/clusters", "maas-admin-000000").send(&r).await.0, StatusCode::UNAUTHORIZED);
    let (s, _, v) = call("GET", "/clusters", "sk-maas-0123").send(&r).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["message"].as_str().unwrap().contains("gateway API key"), "{v}");

    // A user's session is refused, reads included; an operator's session reads and writes.
    let user_cookie = login(&r, "alice").await;
    let as_user = Call { token: None, cookie: Some(&user_cookie), ..call("GET", "/clusters", "") };
    assert_eq!(as_user.send(&r).await.0, StatusCode::FORBIDDEN);
    let as_user = Call { token: None, cookie: Some(&user_cookie), ..call("POST", "/workspaces", "") }.body(json!({"name": "x"}));
    assert_eq!(as_user.send(&r).await.0, StatusCode::FORBIDDEN);
    let op_cookie = login(&r, "admin").await;
    let as_op = Call { token: None, cookie: Some(&op_cookie), ..call("POST", "/workspaces", "") }.body(json!({"name": "by-session"}));
    assert_eq!(as_op.send(&r).await.0, StatusCode::CREATED);
    // ... but not from another origin (the console's CSRF check covers the API too).
    let cross = Call { token: None, cookie: Some(&op_cookie), ..call("POST", "/workspaces", "") }
        .body(json!({"name": "csrf"}))
        .header("origin", "https://evil.example");
    assert_eq!(cross.send(&r).await.0, StatusCode::FORBIDDEN);

    // Revoked and expired tokens stop working at once.
    let list = admin_tokens::list(env.db()).await.unwrap();
    let ro_id = list.iter().find(|t| t.name == "dashboards").unwrap().id;
    admin_tokens::revoke(env.db(), &Actor::console(&op), ro_id).await.unwrap();
    assert_eq!(call("GET", "/clusters", &ro).send(&r).await.0, StatusCode::UNAUTHORIZED);
    {
        use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
        app::ssr::entities::admin_token::Entity::update_many()
            .col_expr(app::ssr::entities::admin_token::Column::ExpiresAt, Expr::value(app::ssr::now() - 1))
            .filter(app::ssr::entities::admin_token::Column::Name.eq("ci"))
            .exec(env.db())
            .await
            .unwrap();
    }
    assert_eq!(call("GET", "/clusters", &rw).send(&r).await.0, StatusCode::UNAUTHORIZED);

    // The access log has every write call, refused ones too, and no reads.
    let (items, _) = app::ssr::services::audit_log::access(env.db(), 0, 100).await.unwrap();
    let seen: Vec<(String, i32)> = items.iter().map(|a| (a.actor.clone(), a.status)).collect();
    assert!(seen.contains(&("token:dashboards".into(), 403)), "{seen:?}");
    assert!(seen.contains(&("token:ci".into(), 201)), "{seen:?}");
    assert!(seen.contains(&("alice".into(), 403)), "{seen:?}");
    assert!(items.iter().all(|a| a.method != "GET"), "{seen:?}");
}

#[tokio::test]
async fn marketplace_and_clusters_refuse_bad_input_and_deletes_that_would_orphan_models() {
    let env = env().await;
    let r = env.router();
    let (op, rw, _) = tokens(&env).await;
    let (s, _, mm) = call("POST", "/marketplace-models", &rw)
        .body(json!({"name": "qwen", "provider": "Alibaba", "tags": ["chat", "32k"]}))
        .send(&r)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{mm}");
    assert_eq!(mm["published"], false);
    assert_eq!(mm["tags"], json!(["chat", "32k"]));
    let id = mm["id"].as_i64().unwrap();

    // 422: field errors keyed by the body's fields.
    let (s, _, v) = call("POST", "/marketplace-models", &rw).body(json!({"name": "qwen", "provider": "x"})).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["fields"]["name"].as_str().unwrap().contains("exists"), "{v}");
    let (s, _, v) = call("POST", "/marketplace-models", &rw).body(json!({"name": "bad name!", "provider": ""})).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"]["fields"]["name"].is_string() && v["error"]["fields"]["provider"].is_string(), "{v}");
    // 400: malformed JSON, a wrong type, an unknown field, a bad id; 415: not JSON.
    for bad in [r#"{"name": "#, r#"{"name": 5, "provider": "x"}"#, r#"{"name": "n", "provider": "x", "colour": "red"}"#] {
        let req = Request::post("/api/v1/marketplace-models")
            .header("authorization", format!("Bearer {rw}"))
            .header("content-type", "application/json")
            .body(Body::from(bad))
            .unwrap();
        let (s, _, body) = send(&r, req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].is_string(), "{body}");
    }
    let req = Request::post("/api/v1/marketplace-models")
        .header("authorization", format!("Bearer {rw}"))
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(call("GET", "/marketplace-models/abc", &rw).send(&r).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call("GET", "/marketplace-models/999", &rw).send(&r).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call("GET", "/no-such-thing", &rw).send(&r).await.0, StatusCode::NOT_FOUND);

    // Replace, publish, list with filters and a total.
    let (s, _, v) = call("PUT", &format!("/marketplace-models/{id}"), &rw)
        .body(json!({"name": "qwen-max", "provider": "Alibaba", "description": "d", "tags": ["chat"]}))
        .send(&r)
        .await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("qwen-max")), "{v}");
    let (_, _, v) = call("POST", &format!("/marketplace-models/{id}/publish"), &rw).send(&r).await;
    assert_eq!(v["published"], true);
    call("POST", "/marketplace-models", &rw).body(json!({"name": "llama", "provider": "Meta"})).send(&r).await;
    let (_, _, v) = call("GET", "/marketplace-models?published=true", &rw).send(&r).await;
    assert_eq!((v["total"].as_u64(), v["items"][0]["name"].as_str()), (Some(1), Some("qwen-max")), "{v}");
    let (_, _, v) = call("GET", "/marketplace-models?per_page=1&page=2", &rw).send(&r).await;
    assert_eq!((v["total"].as_u64(), v["items"].as_array().unwrap().len(), v["page"].as_u64()), (Some(2), 1, Some(2)), "{v}");
    let (s, _, v) = call("GET", "/marketplace-models?per_page=0", &rw).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"]["fields"]["per_page"].is_string());

    // A cluster with a model, and the marketplace model under it, are not deleted (409).
    let (_, _, c) = call("POST", "/clusters", &rw).body(json!({"name": "east", "entry_address": "https://gw.example.com"})).send(&r).await;
    let cid = c["id"].as_i64().unwrap();
    let f = Fixture { mm: id, cluster: cid, ws: 0, key: 0, secret: String::new() };
    let mut input = weighted_input(&f);
    input.rules.clear();
    app::ssr::services::models::create(env.db(), &Actor::console(&op), &env.state.secrets, &input).await.unwrap();
    let (s, _, v) = call("DELETE", &format!("/clusters/{cid}"), &rw).send(&r).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("still has 1"), "{v}");
    assert_eq!(call("DELETE", &format!("/marketplace-models/{id}"), &rw).send(&r).await.0, StatusCode::CONFLICT);
    let (_, _, other) =
        call("POST", "/clusters", &rw).body(json!({"name": "west", "entry_address": "https://w.example.com"})).send(&r).await;
    assert_eq!(call("DELETE", &format!("/clusters/{}", other["id"]), &rw).send(&r).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call("GET", &format!("/clusters/{}", other["id"]), &rw).send(&r).await.0, StatusCode::NOT_FOUND);
}

fn model_body(mm: i64, cluster: i64, ws: i64, url0: &str) -> Value {
    json!({
        "marketplace_model_id": mm, "cluster_id": cluster, "policy": "weighted",
        "endpoints": [
            {"model_id": "up-a", "url": url0, "api_key": "sk-upstream-TOPSECRET-1", "weight": 70},
            {"model_id": "up-b", "url": "https://b.example/v1", "weight": 30, "native_apis": ["chat", "responses"]},
        ],
        "rules": [{"kind": "requests", "target": "workspace", "workspace_id": ws, "limit": 100, "duration_secs": 60}],
    })
}

#[tokio::test]
async fn models_carry_an_etag_and_a_stale_if_match_is_refused() {
    let env = env().await;
    let r = env.router();
    let (op, rw, _) = tokens(&env).await;
    let f = fixture(&env, &op).await;

    // Field errors name the body's fields.
    let mut bad = model_body(f.mm, 999, f.ws, "ftp://nope");
    bad["endpoints"][1]["weight"] = json!(10);
    bad["rules"][0]["duration_secs"] = Value::Null;
    bad["endpoints"][0]["native_apis"] = json!([]);
    let (s, _, v) = call("POST", "/models", &rw).body(bad).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let fields = &v["error"]["fields"];
    assert!(fields["endpoints.0.url"].is_string() && fields["weights"].is_string() && fields["rules.0.duration_secs"].is_string(), "{v}");
    assert!(fields["endpoints.0.native_apis"].is_string(), "{v}");

    let (s, h, m) = call("POST", "/models", &rw).body(model_body(f.mm, f.cluster, f.ws, "https://a.example/v1")).send(&r).await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_i64().unwrap();
    assert_eq!(m["enabled"], false);
    assert_eq!(m["endpoints"][0]["has_key"], true);
    // The APIs each endpoint speaks: chat completions unless the body says otherwise.
    assert_eq!(
        (m["endpoints"][0]["native_apis"].clone(), m["endpoints"][1]["native_apis"].clone()),
        (json!(["chat"]), json!(["chat", "responses"]))
    );
    assert!(!m.to_string().contains("TOPSECRET"), "an upstream key in an answer: {m}");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", m["revision"]));
    let (_, h, _) = call("GET", &format!("/models/{id}"), &rw).send(&r).await;
    assert_eq!(h["etag"].to_str().unwrap(), etag);

    // Enable with the ETag read: a new revision, a new ETag.
    let (s, h, v) =
        call("PATCH", &format!("/models/{id}"), &rw).body(json!({"enabled": true})).header("if-match", etag.clone()).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["enabled"], true);
    let etag2 = h["etag"].to_str().unwrap().to_owned();
    assert_ne!(etag2, etag);
    // Someone holding the old ETag is refused, on PUT, PATCH and DELETE, and nothing changes.
    let mut changed = model_body(f.mm, f.cluster, f.ws, "https://c.example/v1");
    changed["endpoints"][0].as_object_mut().unwrap().remove("api_key");
    let (s, _, v) = call("PUT", &format!("/models/{id}"), &rw).body(changed.clone()).header("if-match", etag.clone()).send(&r).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("changed by someone else"), "{v}");
    assert_eq!(
        call("PATCH", &format!("/models/{id}"), &rw).body(json!({"enabled": false})).header("if-match", etag.clone()).send(&r).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        call("DELETE", &format!("/models/{id}"), &rw).header("if-match", etag.clone()).send(&r).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    let (_, _, now) = call("GET", &format!("/models/{id}"), &rw).send(&r).await;
    assert_eq!((now["enabled"].as_bool(), now["endpoints"][0]["url"].as_str()), (Some(true), Some("https://a.example/v1")));
    assert_eq!(call("PATCH", &format!("/models/{id}"), &rw).body(json!({})).send(&r).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        call("PUT", &format!("/models/{id}"), &rw).body(changed.clone()).header("if-match", "\"x\"").send(&r).await.0,
        StatusCode::BAD_REQUEST
    );

    // PUT with the current ETag replaces it; a kept endpoint (by id) keeps its saved key.
    changed["endpoints"][0]["id"] = now["endpoints"][0]["id"].clone();
    let (s, _, v) = call("PUT", &format!("/models/{id}"), &rw).body(changed).header("if-match", etag2).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["endpoints"][0]["url"].as_str(), v["endpoints"][0]["has_key"].as_bool()),
        (Some("https://c.example/v1"), Some(true)),
        "{v}"
    );
    // PATCH of some fields keeps the rest.
    let (s, _, v) = call("PATCH", &format!("/models/{id}"), &rw).body(json!({"policy": "round_robin", "rules": []})).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["policy"].as_str(), v["rules"].as_array().unwrap().len(), v["endpoints"].as_array().unwrap().len()),
        (Some("round_robin"), 0, 2),
        "{v}"
    );

    // The console's edit form sends the revision it loaded: stale, it is refused the same way.
    let cookie = login(&r, "admin").await;
    let input = json!({"id": id, "revision": m["revision"], "input": serde_json::to_value(weighted_input(&f)).unwrap()});
    let (s, _, body) = send(&r, common::json("/api/models/save", Some(&cookie), &input)).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{body}");

    let (_, h, _) = call("GET", &format!("/models/{id}"), &rw).send(&r).await;
    assert_eq!(
        call("DELETE", &format!("/models/{id}"), &rw).header("if-match", h["etag"].to_str().unwrap()).send(&r).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(call("GET", &format!("/models/{id}"), &rw).send(&r).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_oversized_body_is_413_whichever_layer_reads_it() {
    let env = env().await;
    let r = env.router();
    let (_, rw, _) = tokens(&env).await;
    // Over the 1 MiB bound, but under axum's default (2 MB): read by the JSON extractor, or by the
    // idempotency layer when the call carries a key. One condition, one status.
    let big = json!({"name": "team-z", "description": "x".repeat(1_500_000)});
    let (plain, _, v1) = call("POST", "/workspaces", &rw).body(big.clone()).send(&r).await;
    let (keyed, _, v2) = call("POST", "/workspaces", &rw).body(big).header("idempotency-key", "big").send(&r).await;
    assert_eq!((plain, keyed), (StatusCode::PAYLOAD_TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE), "{v1} {v2}");
    assert_eq!(v1, v2);
}

#[tokio::test]
async fn a_retried_create_with_the_same_idempotency_key_returns_the_first_result() {
    let env = env().await;
    let r = env.router();
    let (_, rw, _) = tokens(&env).await;
    let body = json!({"name": "team-x"});
    let (s1, _, v1) = call("POST", "/workspaces", &rw).body(body.clone()).header("idempotency-key", "create-team-x").send(&r).await;
    let (s2, h2, v2) = call("POST", "/workspaces", &rw).body(body.clone()).header("idempotency-key", "create-team-x").send(&r).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED), "{v1} {v2}");
    assert_eq!(v1, v2);
    assert_eq!(h2["idempotent-replayed"], "true");
    // The same key on another request: refused, not replayed.
    let (s, _, v) =
        call("POST", "/workspaces", &rw).body(json!({"name": "team-y"})).header("idempotency-key", "create-team-x").send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Without a key, a second create is a duplicate name (the caller's to see).
    assert_eq!(call("POST", "/workspaces", &rw).body(body).send(&r).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, _, list) = call("GET", "/workspaces?search=team-x", &rw).send(&r).await;
    assert_eq!(list["total"], 1, "{list}");

    // A created API key's secret comes back on a replay, and is stored encrypted meanwhile.
    let ws = v1["id"].as_i64().unwrap();
    let (_, _, k1) =
        call("POST", "/api-keys", &rw).body(json!({"workspace_id": ws, "name": "bot"})).header("idempotency-key", "k1").send(&r).await;
    let (_, _, k2) =
        call("POST", "/api-keys", &rw).body(json!({"workspace_id": ws, "name": "bot"})).header("idempotency-key", "k1").send(&r).await;
    let secret = k1["secret"].as_str().unwrap();
    assert_eq!(k2["secret"].as_str(), Some(secret));
    use sea_orm::EntityTrait;
    let stored = app::ssr::entities::idempotency_key::Entity::find().all(env.db()).await.unwrap();
    assert!(stored.iter().all(|s| !s.body.clone().unwrap_or_default().contains(secret)), "a key secret in clear in the idempotency table");
    let (_, _, keys) = call("GET", &format!("/api-keys?workspace_id={ws}"), &rw).send(&r).await;
    assert_eq!(keys["total"], 1, "{keys}");
    assert!(!keys.to_string().contains(secret));
}

#[tokio::test]
async fn every_write_leaves_one_audit_row_naming_the_actor_and_never_a_secret() {
    let env = env().await;
    let r = env.router();
    let (op, rw, _) = tokens(&env).await;
    let f = fixture(&env, &op).await;
    let before = audit_rows(&env).await.len();
    let (_, _, m) = call("POST", "/models", &rw).body(model_body(f.mm, f.cluster, f.ws, "https://a.example/v1")).send(&r).await;
    let id = m["id"].as_i64().unwrap();
    // Replace the upstream key, then clear the other endpoint's (it had none: no change there).
    let mut body = model_body(f.mm, f.cluster, f.ws, "https://a.example/v1");
    body["endpoints"][0]["id"] = m["endpoints"][0]["id"].clone();
    body["endpoints"][0]["api_key"] = json!("sk-upstream-TOPSECRET-2");
    assert_eq!(call("PUT", &format!("/models/{id}"), &rw).body(body).send(&r).await.0, StatusCode::OK);
    call("PATCH", &format!("/models/{id}"), &rw).body(json!({"enabled": true})).send(&r).await;
    // A change in the console, by the operator's session.
    let cookie = login(&r, "admin").await;
    let (s, _, _) = send(&r, form("/api/workspaces/create", Some(&cookie), "name=from-console")).await;
    assert_eq!(s, StatusCode::OK);

    let rows = audit_rows(&env).await;
    let new: Vec<_> =
        rows[before..].iter().map(|a| (a.actor_name.as_str(), a.via.as_str(), a.entity.as_str(), a.action.as_str())).collect();
    assert_eq!(
        new,
        vec![
            ("token:ci", "api", "model", "create"),
            ("token:ci", "api", "model", "update"),
            ("token:ci", "api", "model", "enable"),
            ("admin", "console", "workspace", "create"),
        ]
    );
    let update: Value = serde_json::from_str(&rows[before + 1].diff).unwrap();
    assert_eq!(update["endpoints"]["new"][0]["api_key"], "replaced", "{update}");
    assert!(update.get("policy").is_none(), "unchanged fields are not in the diff: {update}");
    let created: Value = serde_json::from_str(&rows[before].diff).unwrap();
    assert_eq!(created["endpoints"]["new"][0]["api_key"], "set");

    // No secret anywhere: the table, the API's audit resource, the CSV.
    let all = format!("{rows:?}");
    let (_, _, api) = call("GET", "/audit?entity=model", &rw).send(&r).await;
    assert_eq!(api["total"], 3, "{api}");
    let (s, _, csv) = send(&r, Request::get("/audit/export.csv?entity=model").header("cookie", &cookie).body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{csv}");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    for text in [all, api.to_string(), csv] {
        assert!(!text.contains("TOPSECRET"), "an upstream key in the audit log: {text}");
        assert!(!text.contains(&f.secret) && !text.contains(&rw), "a key or token secret in the audit log");
    }
    // Filters: by actor, by day, and a bad one.
    let (_, _, by_console) = call("GET", "/audit?actor=admin&entity=workspace", &rw).send(&r).await;
    assert_eq!(by_console["total"], 1, "{by_console}");
    let (s, _, v) = call("GET", "/audit?entity=planet", &rw).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"]["fields"]["entity"].is_string());
    let (_, _, old) = call("GET", "/audit?to=2000-01-01", &rw).send(&r).await;
    assert_eq!(old["total"], 0);
}

#[tokio::test]
async fn keys_workspaces_and_users_through_the_api() {
    let env = env().await;
    let r = env.router();
    let (op, rw, _) = tokens(&env).await;
    let f = fixture(&env, &op).await;
    let (s, _, u) = call("POST", "/users", &rw).body(json!({"username": "bob", "password": "password123", "role": "user"})).send(&r).await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert!(u.get("password").is_none() && !u.to_string().contains("password123"));
    assert_eq!(
        call("POST", "/users", &rw).body(json!({"username": "bob2", "password": "short", "role": "user"})).send(&r).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        call("POST", "/users", &rw).body(json!({"username": "bob3", "password": "password123", "role": "root"})).send(&r).await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, _, w) = call("POST", &format!("/workspaces/{}/members", f.ws), &rw).body(json!({"username": "bob"})).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["members"], json!(["bob"]));
    assert_eq!(
        call("POST", &format!("/workspaces/{}/members", f.ws), &rw).body(json!({"username": "nobody"})).send(&r).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(call("DELETE", &format!("/workspaces/{}/members/bob", f.ws), &rw).send(&r).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call("DELETE", &format!("/workspaces/{}/members/bob", f.ws), &rw).send(&r).await.0, StatusCode::NOT_FOUND);

    // Keys: the secret once, then never; quota and scope; revoke.
    let (s, _, k) = call("POST", "/api-keys", &rw).body(json!({"workspace_id": f.ws, "name": "svc"})).send(&r).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let (kid, secret) = (k["info"]["id"].as_i64().unwrap(), k["secret"].as_str().unwrap().to_owned());
    assert!(secret.starts_with("sk-maas-"));
    let (_, _, got) = call("GET", &format!("/api-keys/{kid}"), &rw).send(&r).await;
    assert!(!got.to_string().contains(&secret));
    let (s, _, v) = call("POST", "/api-keys", &rw).body(json!({"workspace_id": 999, "name": "x"})).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"]["fields"]["workspace_id"].is_string(), "{v}");
    let (s, _, v) = call("PUT", &format!("/api-keys/{kid}/quota"), &rw).body(json!({"period": "day", "tokens": 5000})).send(&r).await;
    assert_eq!((s, v["quota"]["tokens"].as_i64()), (StatusCode::OK, Some(5000)), "{v}");
    assert_eq!(
        call("PUT", &format!("/api-keys/{kid}/quota"), &rw).body(json!({"period": "week"})).send(&r).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call("PUT", &format!("/api-keys/{kid}/quota"), &rw).body(json!({"period": "day", "tokens": 0})).send(&r).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (s, _, v) = call("PUT", &format!("/api-keys/{kid}/scope"), &rw).body(json!({"last_day": "2999-12-31"})).send(&r).await;
    assert_eq!((s, v["limit"]["last_day"].as_str()), (StatusCode::OK, Some("2999-12-31")), "{v}");
    let (_, _, v) = call("POST", &format!("/api-keys/{kid}/revoke"), &rw).send(&r).await;
    assert_eq!(v["revoked"], true);
    let (_, _, v) = call("GET", "/api-keys?revoked=false", &rw).send(&r).await;
    assert_eq!(v["total"], 1, "only the fixture's key is live: {v}");

    // Users: deleting yourself or the last operator is refused; a user goes.
    assert_eq!(call("DELETE", &format!("/users/{}", op.id), &rw).send(&r).await.0, StatusCode::CONFLICT);
    assert_eq!(call("DELETE", &format!("/users/{}", u["id"]), &rw).send(&r).await.0, StatusCode::NO_CONTENT);
    let (_, _, v) = call("GET", "/users?role=user", &rw).send(&r).await;
    assert_eq!(v["total"], 0, "{v}");
    // Workspace rename and delete (its keys go with it).
    let (s, _, v) = call("PATCH", &format!("/workspaces/{}", f.ws), &rw).body(json!({"name": "team-renamed"})).send(&r).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("team-renamed")));
    assert_eq!(call("DELETE", &format!("/workspaces/{}", f.ws), &rw).send(&r).await.0, StatusCode::NO_CONTENT);
    let (_, _, v) = call("GET", "/api-keys", &rw).send(&r).await;
    assert_eq!(v["total"], 0, "{v}");
    let (s, _, v) = call("GET", "/gateways", &rw).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, v) = call("GET", "/usage/daily?from=2026-01-02&to=2026-01-01", &rw).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test]
async fn each_token_has_its_own_rate_budget() {
    let env = env().await;
    let one = std::num::NonZeroU32::new(1).unwrap();
    let r = server::web::router_with(
        server::web::leptos_options("127.0.0.1:0".parse().unwrap()),
        env.state.clone(),
        server::admin_api::Limits { per_second: one, burst: one.saturating_add(1) },
    );
    let (_, rw, ro) = tokens(&env).await;
    let mut statuses = vec![];
    for _ in 0..3 {
        statuses.push(call("GET", "/clusters", &rw).send(&r).await.0);
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK]);
    let (s, h, v) = call("GET", "/clusters", &rw).send(&r).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(call("GET", "/clusters", &ro).send(&r).await.0, StatusCode::OK, "another token is not slowed");
}

#[tokio::test]
async fn the_openapi_document_is_served_and_describes_every_route() {
    let env = env().await;
    let r = env.router();
    let (s, _, body) = send(&r, Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for p in [
        "/models",
        "/models/{id}",
        "/marketplace-models/{id}/publish",
        "/clusters/{id}",
        "/workspaces/{id}/members/{username}",
        "/users",
        "/api-keys/{id}/revoke",
        "/audit",
        "/usage/daily",
        "/gateways",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from the document");
    }
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
    assert_eq!(doc["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
    let (s, h, page) = send(&r, Request::get("/api/docs").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("/pkg/api-docs/swagger-ui-bundle.js") && !page.contains("https://"), "the docs page loads its own assets only");
    assert!(h["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
}

#[tokio::test]
async fn each_kind_of_write_leaves_exactly_one_audit_row() {
    let env = env().await;
    let r = env.router();
    let (op, rw, _) = tokens(&env).await;
    env.user("carol", Role::User).await;
    let f = fixture(&env, &op).await;
    let mut seen = audit_rows(&env).await.len();
    // Each step: the call, and the one row it must add (entity, action).
    macro_rules! step {
        ($method:expr, $path:expr, $body:expr, $entity:expr, $action:expr) => {{
            let path: String = $path;
            let mut c = call($method, &path, &rw);
            if let Some(b) = $body {
                c = c.body(b);
            }
            let (s, _, v) = c.send(&r).await;
            assert!(s.is_success(), "{} {path}: {s} {v}", $method);
            let rows = audit_rows(&env).await;
            let new: Vec<(String, String, String)> =
                rows[seen..].iter().map(|a| (a.entity.clone(), a.action.clone(), a.actor_name.clone())).collect();
            assert_eq!(new, vec![($entity.to_string(), $action.to_string(), "token:ci".to_string())], "{} {path}", $method);
            seen = rows.len();
            v
        }};
    }
    let none: Option<Value> = None;
    let mm = step!("POST", "/marketplace-models".to_string(), Some(json!({"name": "m2", "provider": "p"})), "marketplace_model", "create");
    let mm = mm["id"].as_i64().unwrap();
    step!("PUT", format!("/marketplace-models/{mm}"), Some(json!({"name": "m2b", "provider": "p"})), "marketplace_model", "update");
    step!("POST", format!("/marketplace-models/{mm}/publish"), none.clone(), "marketplace_model", "publish");
    step!("POST", format!("/marketplace-models/{mm}/unpublish"), none.clone(), "marketplace_model", "unpublish");
    let c = step!("POST", "/clusters".to_string(), Some(json!({"name": "c2", "entry_address": "https://c2.example"})), "cluster", "create");
    let c = c["id"].as_i64().unwrap();
    step!("PUT", format!("/clusters/{c}"), Some(json!({"name": "c2b", "entry_address": "https://c2.example"})), "cluster", "update");
    let ws = step!("POST", "/workspaces".to_string(), Some(json!({"name": "w2"})), "workspace", "create");
    let ws = ws["id"].as_i64().unwrap();
    step!("PATCH", format!("/workspaces/{ws}"), Some(json!({"name": "w2b"})), "workspace", "update");
    step!("PUT", format!("/workspaces/{ws}/quota"), Some(json!({"period": "month", "requests": 100})), "workspace", "update");
    step!("POST", format!("/workspaces/{ws}/members"), Some(json!({"username": "carol"})), "workspace", "add_member");
    step!("DELETE", format!("/workspaces/{ws}/members/carol"), none.clone(), "workspace", "remove_member");
    let u =
        step!("POST", "/users".to_string(), Some(json!({"username": "dave", "password": "password123", "role": "user"})), "user", "create");
    step!("DELETE", format!("/users/{}", u["id"]), none.clone(), "user", "delete");
    let k = step!("POST", "/api-keys".to_string(), Some(json!({"workspace_id": ws, "name": "k2"})), "api_key", "create");
    let k = k["info"]["id"].as_i64().unwrap();
    step!("PUT", format!("/api-keys/{k}/scope"), Some(json!({"last_day": "2999-01-01"})), "api_key", "update");
    step!("PUT", format!("/api-keys/{k}/quota"), Some(json!({"period": "day", "tokens": 10})), "api_key", "update");
    step!("POST", format!("/api-keys/{k}/revoke"), none.clone(), "api_key", "revoke");
    let m = step!("POST", "/models".to_string(), Some(model_body(f.mm, f.cluster, f.ws, "https://a.example/v1")), "model", "create");
    let m = m["id"].as_i64().unwrap();
    step!("PATCH", format!("/models/{m}"), Some(json!({"reserve_output_tokens": 512})), "model", "update");
    step!("PATCH", format!("/models/{m}"), Some(json!({"enabled": true})), "model", "enable");
    step!("PATCH", format!("/models/{m}"), Some(json!({"enabled": false})), "model", "disable");
    step!("DELETE", format!("/models/{m}"), none.clone(), "model", "delete");
    step!("DELETE", format!("/clusters/{c}"), none.clone(), "cluster", "delete");
    step!("DELETE", format!("/marketplace-models/{mm}"), none.clone(), "marketplace_model", "delete");
    step!("DELETE", format!("/workspaces/{ws}"), none.clone(), "workspace", "delete");
    // A refused write leaves none.
    assert_eq!(call("POST", "/workspaces", &rw).body(json!({"name": "team-a"})).send(&r).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(audit_rows(&env).await.len(), seen);
}

#[tokio::test]
async fn the_consoles_admin_token_and_audit_functions_are_for_operators_only() {
    let env = env().await;
    let r = env.router();
    env.user("admin", Role::Operator).await;
    env.user("alice", Role::User).await;
    let user = login(&r, "alice").await;
    let op = login(&r, "admin").await;
    let create = "name=ci&access=write&last_day=";
    assert_eq!(send(&r, form("/api/admin-tokens/create", Some(&user), create)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&r, form("/api/admin-tokens/list", Some(&user), "")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&r, form("/api/audit/page", Some(&user), "actor=&entity=&from=&to=&page=0")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&r, form("/api/admin-tokens/create", None, create)).await.0, StatusCode::UNAUTHORIZED);
    // Bad input, next to its field.
    let (s, _, body) = send(&r, form("/api/admin-tokens/create", Some(&op), "name=ci&access=root&last_day=")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("access"), "{body}");
    let (s, _, body) = send(&r, form("/api/admin-tokens/create", Some(&op), "name=ci&access=read&last_day=2001-01-01")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("last_day"), "{body}");
    let (s, _, body) = send(&r, form("/api/audit/page", Some(&op), "actor=&entity=&from=yesterday&to=&page=0")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // From another origin: refused before it runs.
    let mut cross = form("/api/admin-tokens/create", Some(&op), create);
    cross.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(send(&r, cross).await.0, StatusCode::FORBIDDEN);
    assert!(admin_tokens::list(env.db()).await.unwrap().is_empty());
    // The operator's: the secret once, then only its prefix in the list.
    let (s, created) = common::call::<CreatedAdminToken>(&r, form("/api/admin-tokens/create", Some(&op), create)).await;
    assert_eq!(s, StatusCode::OK, "{created:?}");
    let created = created.unwrap();
    let secret = created.secret.as_str();
    let (_, list) = common::call::<Vec<AdminTokenInfo>>(&r, form("/api/admin-tokens/list", Some(&op), "")).await;
    let list = list.unwrap();
    assert_eq!(list.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["ci"]);
    assert!(!format!("{list:?}").contains(secret), "{list:?}");
    assert_eq!(call("GET", "/workspaces", secret).send(&r).await.0, StatusCode::OK);
    let id = created.info.id;
    assert_eq!(send(&r, form("/api/admin-tokens/revoke", Some(&user), &format!("id={id}"))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call("GET", "/workspaces", secret).send(&r).await.0, StatusCode::OK, "a user cannot revoke it");
    assert_eq!(send(&r, form("/api/admin-tokens/revoke", Some(&op), &format!("id={id}"))).await.0, StatusCode::OK);
    assert_eq!(call("GET", "/workspaces", secret).send(&r).await.0, StatusCode::UNAUTHORIZED);
    let (s, _, page) = send(&r, form("/api/audit/page", Some(&op), "actor=admin&entity=admin_token&from=&to=&page=0")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("revoke") && page.contains("create"), "{page}");
    assert!(!page.contains(secret));
}

#[tokio::test]
async fn fallbacks_retries_and_health_checks_are_set_validated_and_read_through_the_api() {
    let env = env().await;
    let r = env.router();
    let (op, rw, ro) = tokens(&env).await;
    let f = fixture(&env, &op).await;
    let (_, _, a) = call("POST", "/models", &rw).body(model_body(f.mm, f.cluster, f.ws, "https://a.example/v1")).send(&r).await;
    let a = a["id"].as_i64().unwrap();
    // Defaults: no fallback, every failure retried with a 20 % budget, no health check.
    let (_, _, m) = call("GET", &format!("/models/{a}"), &ro).send(&r).await;
    assert_eq!(
        (m["fallbacks"].clone(), m["retry"].clone(), m["health_check"].clone()),
        (json!([]), json!({"on": ["connect", "timeout", "5xx", "429"], "max_tries": 0, "budget_percent": 20}), Value::Null)
    );

    // Out of bounds: refused with the body's field names.
    let patch = json!({"fallbacks": [a], "retry": {"max_tries": 11, "budget_percent": 101},
        "health_check": {"probe": "health", "interval_secs": 0, "timeout_secs": 5, "healthy_threshold": 11, "unhealthy_threshold": 2}});
    let (s, _, v) = call("PATCH", &format!("/models/{a}"), &rw).body(patch).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let fields = &v["error"]["fields"];
    for f in [
        "retry.max_tries",
        "retry.budget_percent",
        "health_check.interval_secs",
        "health_check.timeout_secs",
        "health_check.healthy_threshold",
    ] {
        assert!(fields[f].is_string(), "{f}: {v}");
    }
    // A model falling back to itself, or to one that does not exist, is a field error too.
    let (s, _, v) = call("PATCH", &format!("/models/{a}"), &rw).body(json!({"fallbacks": [a]})).send(&r).await;
    assert_eq!(
        (s, v["error"]["fields"]["fallbacks"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("a model cannot fall back to itself"))
    );
    let (s, _, v) = call("PATCH", &format!("/models/{a}"), &rw).body(json!({"fallbacks": [987654]})).send(&r).await;
    assert_eq!((s, v["error"]["fields"]["fallbacks"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("no MaaS model 987654")));

    // A second model on the cluster (another marketplace entry) as a's fallback, with a retry
    // policy and a health check: saved and read back, audited.
    let (_, _, mm2) = call("POST", "/marketplace-models", &rw).body(json!({"name": "backup", "provider": "p"})).send(&r).await;
    let mm2 = mm2["id"].as_i64().unwrap();
    call("POST", &format!("/marketplace-models/{mm2}/publish"), &rw).send(&r).await;
    let mut body = model_body(mm2, f.cluster, f.ws, "https://c.example/v1");
    body["policy"] = json!("round_robin");
    let (s, _, b) = call("POST", "/models", &rw).body(body).send(&r).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let b = b["id"].as_i64().unwrap();
    let patch = json!({"fallbacks": [b], "retry": {"on": ["connect"], "max_tries": 2, "budget_percent": 50},
        "health_check": {"probe": "completion", "interval_secs": 30, "timeout_secs": 5, "healthy_threshold": 2, "unhealthy_threshold": 3}});
    let (s, _, m) = call("PATCH", &format!("/models/{a}"), &rw).body(patch.clone()).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    for k in ["fallbacks", "retry", "health_check"] {
        assert_eq!(m[k], patch[k], "{k}");
    }
    // b falling back to a closes a cycle: refused.
    let (s, _, v) = call("PATCH", &format!("/models/{b}"), &rw).body(json!({"fallbacks": [a]})).send(&r).await;
    assert_eq!(
        (s, v["error"]["fields"]["fallbacks"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("these fallbacks lead back to this model (a cycle)"))
    );
    // null turns the health checks off.
    let (_, _, m) = call("PATCH", &format!("/models/{a}"), &rw).body(json!({"health_check": null})).send(&r).await;
    assert_eq!(m["health_check"], Value::Null);
    assert_eq!(m["fallbacks"], json!([b]), "the other fields are kept");
    // Each endpoint's health: not probed yet.
    let (s, _, h) = call("GET", &format!("/models/{a}/health"), &ro).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!((h[0]["healthy"].clone(), h[0]["events"].clone()), (Value::Null, json!([])));
    assert_eq!(call("GET", "/models/987654/health", &ro).send(&r).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call("GET", "/models/abc/health", &ro).send(&r).await.0, StatusCode::BAD_REQUEST);
    // Nobody else reads it: no token, a user's session.
    let path = format!("/models/{a}/health");
    assert_eq!(Call { token: None, ..call("GET", &path, "") }.send(&r).await.0, StatusCode::UNAUTHORIZED);
    env.user("bob", Role::User).await;
    let bob = login(&r, "bob").await;
    assert_eq!(Call { token: None, cookie: Some(&bob), ..call("GET", &path, "") }.send(&r).await.0, StatusCode::FORBIDDEN);
    let audit = audit_rows(&env).await;
    let last = audit.iter().rev().find(|e| e.entity_id == a).unwrap();
    assert!(last.diff.starts_with("{\"health_check\":{\"new\":null"), "the audit row holds the change: {last:?}");
}

/// Money through the API: price versions (the read-only token reads, never writes; malformed
/// and out-of-bounds bodies refused with their fields; a user's session refused), a budget in
/// money on a workspace, and the alerts' webhook (its secret never read back).
#[tokio::test]
async fn prices_money_budgets_and_the_alert_webhook_through_the_api() {
    let env = env().await;
    let r = env.router();
    let (op, rw, ro) = tokens(&env).await;
    env.user("alice", Role::User).await;
    let f = fixture(&env, &op).await;
    let (_, _, a) = call("POST", "/models", &rw).body(model_body(f.mm, f.cluster, f.ws, "https://a.example/v1")).send(&r).await;
    let a = a["id"].as_i64().unwrap();
    let prices = format!("/models/{a}/prices");
    let price = json!({"input_per_million": "0.15", "output_per_million": "0.60"});

    let (s, _, v) = call("POST", &prices, &ro).body(price.clone()).send(&r).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a read-only token cannot price: {v}");
    let alice = login(&r, "alice").await;
    let as_user = Call { token: None, cookie: Some(&alice), ..call("GET", &prices, "") };
    assert_eq!(as_user.send(&r).await.0, StatusCode::FORBIDDEN, "nor read as a user");
    let (s, _, v) = call("POST", &prices, &rw).body(json!({"input_per_million": 0.15})).send(&r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a number, not a decimal string: {v}");
    let (s, _, v) = call("POST", &prices, &rw).body(json!({"input_per_million": "1", "colour": "red"})).send(&r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an unknown field: {v}");
    let bad = json!({"input_per_million": "-1", "per_call": "1000001", "effective_from": 1});
    let (s, _, v) = call("POST", &prices, &rw).body(bad).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    for field in ["input_per_million", "per_call", "effective_from"] {
        assert!(v["error"]["fields"][field].is_string(), "{field}: {v}");
    }
    let (s, _, v) = call("POST", "/models/987654/prices", &rw).body(price.clone()).send(&r).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _, v) = call("POST", &prices, &rw).body(price).send(&r).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _, v) = call("GET", &prices, &ro).send(&r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v[0]["input_per_million"].as_str(), v[0]["output_per_million"].as_str(), v[0]["currency"].as_str()),
        (Some("0.15"), Some("0.60"), Some("USD")),
        "{v}"
    );

    // A workspace's budget in money: exact decimals in, exact decimals out.
    let quota = format!("/workspaces/{}/quota", f.ws);
    let (s, _, v) = call("PUT", &quota, &rw).body(json!({"period": "month", "spend": "25.5", "alerts": [100, 50, 80]})).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let q = &v["quota"];
    assert_eq!(
        (q["spend"].as_str(), q["spent_money"].as_str(), q["unpriced"].as_str(), q["alerts"].clone()),
        (Some("25.50"), Some("0.00"), Some("refuse"), json!([50, 80, 100])),
        "{v}"
    );
    let (s, _, v) = call("PUT", &quota, &rw).body(json!({"period": "month", "spend": "1e3", "unpriced": "sometimes"})).send(&r).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["fields"]["spend"].is_string() && v["error"]["fields"]["unpriced"].is_string(), "{v}");

    // The alerts' webhook: set (its secret write-only), refused when malformed, read back.
    let hook = "/settings/alert-webhook";
    let (s, _, v) = call("PUT", hook, &ro).body(json!({"url": "https://hooks.example/maas", "secret": "0123456789abcdef"})).send(&r).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _, v) = call("PUT", hook, &rw).body(json!({"url": "https://hooks.example/maas"})).send(&r).await;
    assert_eq!(
        (s, v["error"]["fields"]["secret"].is_string()),
        (StatusCode::UNPROCESSABLE_ENTITY, true),
        "a first webhook needs its secret: {v}"
    );
    let (s, _, v) = call("PUT", hook, &rw).body(json!({"url": "https://hooks.example/maas", "secret": "0123456789abcdef"})).send(&r).await;
    assert_eq!((s, v["url"].as_str()), (StatusCode::OK, Some("https://hooks.example/maas")), "{v}");
    let (_, _, v) = call("GET", hook, &ro).send(&r).await;
    assert_eq!(v, json!({"url": "https://hooks.example/maas"}), "the secret is never read back");
    let audit = audit_rows(&env).await;
    let last = audit.iter().rev().find(|e| e.entity == "setting").unwrap();
    assert!(!last.diff.contains("0123456789abcdef"), "{}", last.diff);
}

/// A workspace of 40,000 keys, past SQLite's 32,766 bound variables: the key list, one key and
/// its revocation answer (each read alone, never with one variable per key), and a key's quota
/// shows in the list.
#[tokio::test]
async fn keys_are_listed_read_and_revoked_in_a_workspace_past_the_databases_variable_bound() {
    use sea_orm::ConnectionTrait;
    let env = env().await;
    let r = env.router();
    let (op, rw, ro) = tokens(&env).await;
    let f = fixture(&env, &op).await;
    let db = env.db();
    let sql = format!(
        "INSERT INTO api_keys (workspace_id, public_id, name, secret_hash, created_at) \
         SELECT {}, 'key_many' || i, 'many', 'hash' || i, 0 FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000) SELECT i FROM n) AS s",
        f.ws
    );
    db.execute_unprepared(&sql).await.unwrap();
    let (s, _, v) = call("GET", "/api-keys?per_page=1", &ro).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["total"].as_u64().unwrap() > 40_000, "{}", v["total"]);
    let id = v["items"][0]["id"].as_i64().unwrap();
    let (s, _, v) = call("PUT", &format!("/api-keys/{id}/quota"), &rw).body(json!({"period": "day", "requests": 10})).send(&r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, v) = call("GET", "/api-keys?per_page=1", &ro).send(&r).await;
    assert_eq!((s, v["items"][0]["quota"]["requests"].as_i64()), (StatusCode::OK, Some(10)), "{v}");
    let (s, _, v) = call("GET", &format!("/api-keys/{id}"), &ro).send(&r).await;
    assert_eq!((s, v["id"].as_i64()), (StatusCode::OK, Some(id)), "{v}");
    let (s, _, v) = call("POST", &format!("/api-keys/{id}/revoke"), &rw).send(&r).await;
    assert_eq!((s, v["revoked"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
}
