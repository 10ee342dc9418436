//! Service-layer tests: each on a fresh SQLite file built by the real migrations.
mod common;
use app::error::AppError;
use app::ssr::services::{catalog, keys, models, workspaces};
use app::ssr::{current_revision, entities, ServiceError};
use app::types::*;
use common::*;
use sea_orm::{ConnectionTrait, EntityTrait};

fn field_err<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> FieldErrors {
    match r {
        Err(ServiceError::App(AppError::Invalid(f))) => f,
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[tokio::test]
async fn create_model_persists_everything_and_bumps_revision() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let before = current_revision(env.db()).await.unwrap();
    let (id, rev) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    assert_eq!(rev, before + 1, "one change, one revision");
    assert_eq!(current_revision(env.db()).await.unwrap(), rev);

    let d = models::get(env.db(), id).await.unwrap();
    assert_eq!(d.policy, Policy::Weighted);
    assert!(!d.enabled, "new models start disabled");
    let ids: Vec<_> = d.endpoints.iter().map(|e| (e.model_id.as_str(), e.weight, e.has_key)).collect();
    assert_eq!(ids, [("ds-a", 50, true), ("ds-b", 30, false), ("ds-c", 20, false)]);
    assert_eq!(d.endpoints[1].url, "https://b.example");
    assert_eq!(d.rules.len(), 2);
    assert_eq!(
        (d.rules[0].target, d.rules[0].api_key_id, d.rules[0].limit, d.rules[0].duration),
        (RuleTarget::ApiKey, Some(f.key), 100, 60)
    );
    assert_eq!((d.rules[1].target, d.rules[1].api_key_id), (RuleTarget::Workspace, None));

    // The upstream key is encrypted at rest and decrypts with the server's key.
    let row = entities::endpoint::Entity::find_by_id(d.endpoints[0].id).one(env.db()).await.unwrap().unwrap();
    let stored = row.api_key_enc.unwrap();
    assert!(!stored.contains("sk-upstream-a"));
    assert_eq!(env.state.secrets.decrypt(&stored).as_deref(), Some("sk-upstream-a"));
}

#[tokio::test]
async fn duplicate_model_and_cluster_is_a_field_error_not_a_500() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    let e = field_err(models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await);
    assert_eq!(e.get("cluster"), Some("this marketplace model already has a MaaS model on this cluster"));
}

#[tokio::test]
async fn references_are_checked_against_the_database() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let other_ws = workspaces::create(env.db(), &app::ssr::audit::Actor::system(), "team-b").await.unwrap();
    let unpublished = catalog::create_marketplace(
        env.db(),
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "draft".into(), provider: "x".into(), ..Default::default() },
    )
    .await
    .unwrap();

    let mut input = weighted_input(&f);
    input.marketplace_model_id = Some(unpublished);
    input.rules[0].workspace_id = Some(other_ws); // key belongs to team-a
    input.rules[1].workspace_id = Some(999);
    let e = field_err(models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &input).await);
    assert_eq!(e.get("marketplace_model"), Some("this marketplace model is not published"));
    assert_eq!(e.get("rules.0.api_key"), Some("this API key belongs to another workspace"));
    assert_eq!(e.get("rules.1.workspace"), Some("no such workspace"));

    // A revoked key cannot be the subject of a new rule.
    keys::revoke(env.db(), &app::ssr::audit::Actor::system(), &op, f.key).await.unwrap();
    let e = field_err(models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await);
    assert_eq!(e.get("rules.0.api_key"), Some("this API key is revoked"));
}

#[tokio::test]
async fn server_revalidates_what_the_browser_checks() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let mut input = weighted_input(&f);
    input.endpoints[2].weight = "10".into();
    input.endpoints[1].url = "ftp://b.example".into();
    input.rules[0].limit = "0".into();
    let e = field_err(models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &input).await);
    assert_eq!(e.get("weights"), Some("weights must total 100 (now 90)"));
    assert_eq!(e.get("endpoints.1.url"), Some("must start with http:// or https://"));
    assert_eq!(e.get("rules.0.limit"), Some("must be at least 1"));
    // Nothing was written.
    assert_eq!(models::list(env.db(), "", 0, 20).await.unwrap().total, 0);
}

#[tokio::test]
async fn edit_keeps_replaces_or_clears_upstream_keys() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let (id, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    let d = models::get(env.db(), id).await.unwrap();
    let row = |i: usize, key: KeyChange| EndpointInput {
        id: Some(d.endpoints[i].id),
        model_id: d.endpoints[i].model_id.clone(),
        url: d.endpoints[i].url.clone(),
        api_key: key,
        weight: d.endpoints[i].weight.to_string(),
        skip_stream_usage: i == 1,
        max_concurrent: if i == 0 { "4".into() } else { String::new() },
        native_apis: if i == 1 { vec![Api::Chat, Api::Messages, Api::Responses] } else { vec![Api::Messages] },
        draining: false,
    };
    let mut input = weighted_input(&f);
    input.policy = Policy::RoundRobin;
    input.endpoints = vec![row(0, KeyChange::Keep), row(1, KeyChange::Set("sk-new".into()))];
    input.rules.truncate(1);
    models::update(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, id, None, &input).await.unwrap();
    let d2 = models::get(env.db(), id).await.unwrap();
    assert_eq!(d2.policy, Policy::RoundRobin);
    assert_eq!(d2.endpoints.iter().map(|e| e.has_key).collect::<Vec<_>>(), [true, true]);
    assert_eq!(d2.endpoints.iter().map(|e| e.skip_stream_usage).collect::<Vec<_>>(), [false, true], "the stream-usage switch is saved");
    assert_eq!(
        d2.endpoints.iter().map(|e| e.native_apis.clone()).collect::<Vec<_>>(),
        [vec![Api::Messages], vec![Api::Chat, Api::Messages, Api::Responses]],
        "the APIs each endpoint speaks are saved"
    );
    // None at all is refused next to the field.
    let mut none = input.clone();
    none.endpoints[1].native_apis.clear();
    match models::update(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, id, None, &none).await {
        Err(app::ssr::ServiceError::App(app::error::AppError::Invalid(e))) => {
            assert_eq!(e.get("endpoints.1.native_apis"), Some("choose at least one API it speaks"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d2.rules.len(), 1);
    let stored = entities::endpoint::Entity::find_by_id(d2.endpoints[0].id).one(env.db()).await.unwrap().unwrap();
    assert_eq!(env.state.secrets.decrypt(&stored.api_key_enc.unwrap()).as_deref(), Some("sk-upstream-a"), "kept");

    input.endpoints = vec![EndpointInput { id: Some(d2.endpoints[0].id), api_key: KeyChange::Clear, ..input.endpoints[0].clone() }];
    models::update(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, id, None, &input).await.unwrap();
    assert!(!models::get(env.db(), id).await.unwrap().endpoints[0].has_key, "cleared");

    // Another model's endpoint id cannot be used to copy its key.
    let mm2 = catalog::create_marketplace(
        env.db(),
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "other".into(), provider: "x".into(), ..Default::default() },
    )
    .await
    .unwrap();
    catalog::set_published(env.db(), &app::ssr::audit::Actor::system(), mm2, true).await.unwrap();
    let (id2, _) = models::create(
        env.db(),
        &app::ssr::audit::Actor::system(),
        &env.state.secrets,
        &ModelInput { marketplace_model_id: Some(mm2), rules: vec![], ..weighted_input(&f) },
    )
    .await
    .unwrap();
    let foreign = models::get(env.db(), id2).await.unwrap().endpoints[0].id;
    input.endpoints = vec![EndpointInput { id: Some(foreign), api_key: KeyChange::Keep, ..input.endpoints[0].clone() }];
    let e = field_err(models::update(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, id, None, &input).await);
    assert_eq!(e.get("endpoints.0.api_key"), Some("this endpoint is not part of the model"));
}

#[tokio::test]
async fn delete_cascades_to_endpoints_and_rules_and_restricts_parents() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let (id, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    // A cluster in use cannot be deleted from under its model (FK RESTRICT in the schema).
    let err = env.db().execute_unprepared(&format!("DELETE FROM clusters WHERE id = {}", f.cluster)).await;
    assert!(err.is_err(), "cluster delete must be refused while a model uses it");
    models::delete(env.db(), &app::ssr::audit::Actor::system(), id, None).await.unwrap();
    assert_eq!(entities::endpoint::Entity::find().all(env.db()).await.unwrap().len(), 0);
    assert_eq!(entities::rule::Entity::find().all(env.db()).await.unwrap().len(), 0);
    assert!(matches!(
        models::delete(env.db(), &app::ssr::audit::Actor::system(), id, None).await,
        Err(ServiceError::App(AppError::NotFound(_)))
    ));
}

#[tokio::test]
async fn list_is_paginated_and_searched_on_the_server() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    for i in 0..45 {
        let mm = catalog::create_marketplace(
            env.db(),
            &app::ssr::audit::Actor::system(),
            &MarketplaceInput {
                name: format!("model-{i:02}"),
                provider: "p".into(),
                tags: if i % 10 == 0 { "special".into() } else { "".into() },
                ..Default::default()
            },
        )
        .await
        .unwrap();
        catalog::set_published(env.db(), &app::ssr::audit::Actor::system(), mm, true).await.unwrap();
        let input = ModelInput {
            marketplace_model_id: Some(mm),
            cluster_id: Some(f.cluster),
            policy: Policy::RoundRobin,
            endpoints: vec![endpoint(&format!("upstream-{i}"), "https://u.example", "")],
            rules: vec![],
            reserve_output: String::new(),
            affinity_key: Default::default(),
            ..Default::default()
        };
        models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &input).await.unwrap();
    }
    let p0 = models::list(env.db(), "", 0, 20).await.unwrap();
    assert_eq!((p0.total, p0.rows.len()), (45, 20));
    assert_eq!(p0.rows[0].name, "model-44", "newest first");
    let p2 = models::list(env.db(), "", 2, 20).await.unwrap();
    assert_eq!(p2.rows.len(), 5);
    assert_eq!(models::list(env.db(), "model-1", 0, 20).await.unwrap().total, 10);
    assert_eq!(models::list(env.db(), "special", 0, 20).await.unwrap().total, 5, "by tag");
    let by_upstream = models::list(env.db(), "upstream-7", 0, 20).await.unwrap();
    assert_eq!(by_upstream.rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["model-07"], "by Model ID");
    assert_eq!(models::list(env.db(), "%", 0, 20).await.unwrap().total, 0, "LIKE wildcards are literal");
    assert_eq!(p0.rows[0].access_path, "http://127.0.0.1:3000/v1");
}

#[tokio::test]
async fn gateway_status_counts_the_live_replicas_of_the_cluster_and_shows_gone_ones() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let (_, rev) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    let row = &models::list(env.db(), "", 0, 20).await.unwrap().rows[0];
    assert_eq!(row.gateway, GatewayState::Pending { revision: rev, reason: "no live gateway serves cluster local".into() });

    let now = app::ssr::now();
    let gw = |id: &str, applied: i64, heartbeat: i64, error: Option<&str>| entities::gateway_status::Model {
        gateway_id: id.into(),
        cluster: Some("local".into()),
        applied_revision: applied,
        error: error.map(Into::into),
        detail: None,
        heartbeat_at: heartbeat,
        serves: None,
    };
    let state = |gws: &[entities::gateway_status::Model], cluster: &str| models::gateway_state(gws, cluster, rev, now);
    assert_eq!(state(&[gw("gw-a", rev, now, None), gw("gw-b", rev, now, None)], "local"), GatewayState::Synced { replicas: 2 });
    assert_eq!(
        state(&[gw("gw-a", rev, now, None), gw("gw-b", rev - 1, now, None)], "local"),
        GatewayState::Pending { revision: rev, reason: format!("1/2: gw-b at revision {}, model at {rev}", rev - 1) }
    );
    assert!(matches!(state(&[gw("gw-a", rev, now, None)], "other"), GatewayState::Pending { .. }), "another cluster's replica");
    assert_eq!(state(&[gw("gw-a", rev, now, Some("bad url"))], "local"), GatewayState::Error("bad url".into()));
    // A replica that stopped reporting no longer counts, and is shown as gone.
    let gws = [gw("gw-a", rev, now, None), gw("gw-b", rev, now - 190, None)];
    assert_eq!(state(&gws, "local"), GatewayState::Synced { replicas: 1 });
    assert_eq!(models::gone_gateways(&gws, "local", now), ["gw-b gone, last seen 3 min ago"]);
    // All replicas stopped: Pending, never Synced, whatever the embedded gateway of `maas
    // serve` reports, as long as the cluster's entry address is not its own.
    let embedded = |serves: &[&str]| entities::gateway_status::Model {
        gateway_id: "serve@host:3000".into(),
        cluster: None,
        serves: Some(serde_json::to_string(serves).unwrap()),
        ..gw("", rev, now, None)
    };
    let gws = [gw("gw-a", rev, now - 60, None), embedded(&["demo"])];
    assert!(matches!(state(&gws, "local"), GatewayState::Pending { .. }));
    assert_eq!(models::gone_gateways(&gws, "local", now), ["gw-a gone, last seen 60 s ago"]);
    assert_eq!(state(&[embedded(&["local"])], "local"), GatewayState::Synced { replicas: 1 });

    // Which clusters `maas serve` serves: those whose entry address is its own origin.
    let own = ["http://127.0.0.1:3000".to_owned(), "https://console.example.com".to_owned()];
    for (entry, yes) in [
        ("http://127.0.0.1:3000/", true),
        ("http://localhost:3000/v1", true),
        ("https://console.example.com", true),
        ("https://console.example.com:443/", true),
        ("http://127.0.0.1:8080", false),
        ("https://gw.example.com", false),
        ("http://console.example.com", false),
    ] {
        assert_eq!(models::entry_is_own(entry, &own), yes, "{entry}");
    }
    assert!(models::entry_is_own("http://10.1.2.3:3000", &["http://*:3000".into()]));
}

#[tokio::test]
async fn offerings_list_only_published_and_enabled_models() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let (id, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    assert!(models::offerings(env.db()).await.unwrap().is_empty(), "disabled");
    models::set_enabled(env.db(), &app::ssr::audit::Actor::system(), id, None, true).await.unwrap();
    let o = models::offerings(env.db()).await.unwrap();
    assert_eq!((o[0].name.as_str(), o[0].base_url.as_str()), ("deepseek-chat", "http://127.0.0.1:3000/v1"));
    catalog::set_published(env.db(), &app::ssr::audit::Actor::system(), f.mm, false).await.unwrap();
    assert!(models::offerings(env.db()).await.unwrap().is_empty(), "unpublished");
    catalog::set_published(env.db(), &app::ssr::audit::Actor::system(), f.mm, true).await.unwrap();
    models::set_enabled(env.db(), &app::ssr::audit::Actor::system(), id, None, false).await.unwrap();
    assert!(models::offerings(env.db()).await.unwrap().is_empty(), "disabled again");
}

#[tokio::test]
async fn api_keys_are_hashed_scoped_to_members_and_revocable() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let alice = env.user("alice", Role::User).await;
    let bob = env.user("bob", Role::User).await;
    let a = workspaces::create(env.db(), &app::ssr::audit::Actor::system(), "a").await.unwrap();
    let b = workspaces::create(env.db(), &app::ssr::audit::Actor::system(), "b").await.unwrap();
    workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), a, "alice").await.unwrap();
    workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), b, "bob").await.unwrap();
    assert!(field_err(workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), a, "alice").await).get("username").is_some());

    let (k, _) = keys::create(env.db(), &app::ssr::audit::Actor::system(), &alice, a, "laptop").await.unwrap();
    assert!(k.secret.starts_with("sk-maas-") && k.secret.len() > 40);
    let row = entities::api_key::Entity::find_by_id(k.info.id).one(env.db()).await.unwrap().unwrap();
    assert_ne!(row.secret_hash, k.secret);
    assert_eq!(row.secret_hash, app::ssr::crypto::sha256_hex(&k.secret));

    // Alice cannot create keys in Bob's workspace, nor see or revoke his keys.
    assert_eq!(
        field_err(keys::create(env.db(), &app::ssr::audit::Actor::system(), &alice, b, "x").await).get("workspace"),
        Some("choose one of your workspaces")
    );
    let (bk, _) = keys::create(env.db(), &app::ssr::audit::Actor::system(), &bob, b, "bobs").await.unwrap();
    assert_eq!(keys::list(env.db(), &alice).await.unwrap().iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["laptop"]);
    assert!(keys::revoke(env.db(), &app::ssr::audit::Actor::system(), &alice, bk.info.id).await.is_err());
    assert_eq!(workspaces::list(env.db(), &alice).await.unwrap().iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["a"]);
    assert_eq!(keys::list(env.db(), &op).await.unwrap().len(), 2, "operators see all");

    let before = current_revision(env.db()).await.unwrap();
    let rev = keys::revoke(env.db(), &app::ssr::audit::Actor::system(), &alice, k.info.id).await.unwrap();
    assert_eq!(rev, before + 1, "revocation is a configuration change");
    assert!(keys::list(env.db(), &alice).await.unwrap()[0].revoked);
}

/// A key's scope: the operator sets a limit, the key's holder narrows it and never widens it;
/// bad days and unknown models are field errors; other workspaces' keys are not found.
#[tokio::test]
async fn key_scopes_narrow_within_the_operators_limit_and_never_widen_it() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let alice = env.user("alice", Role::User).await;
    let _bob = env.user("bob", Role::User).await;
    let f = fixture(&env, &op).await;
    workspaces::add_member(env.db(), &app::ssr::audit::Actor::system(), f.ws, "alice").await.unwrap();
    let (m1, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    let mm2 = catalog::create_marketplace(
        env.db(),
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "qwen".into(), provider: "Q".into(), ..Default::default() },
    )
    .await
    .unwrap();
    catalog::set_published(env.db(), &app::ssr::audit::Actor::system(), mm2, true).await.unwrap();
    let (m2, _) = models::create(
        env.db(),
        &app::ssr::audit::Actor::system(),
        &env.state.secrets,
        &ModelInput { marketplace_model_id: Some(mm2), rules: vec![], ..weighted_input(&f) },
    )
    .await
    .unwrap();
    let today = app::ssr::now().div_euclid(86_400);
    let day = |d: i64| Some(app::days::format_day(today + d));
    let scope = |last_day: Option<String>, models: Option<Vec<i64>>| KeyScope { last_day, models };

    // The operator's limit: through day +30, both models.
    let before = current_revision(env.db()).await.unwrap();
    let rev =
        keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &op, f.key, &scope(day(30), Some(vec![m2, m1, m1]))).await.unwrap();
    assert_eq!(rev, before + 1, "a scope is a configuration change");
    let k = keys::list(env.db(), &alice).await.unwrap().remove(0);
    let mut both = vec![m1, m2];
    both.sort();
    assert_eq!(k.limit, scope(day(30), Some(both.clone())), "sorted, without repeats");
    assert_eq!(k.own, KeyScope::default());
    assert!(!k.expired);

    // Alice narrows: an earlier day, one model. Widening either is refused, saying why.
    keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &alice, f.key, &scope(day(7), Some(vec![m1]))).await.unwrap();
    let e = field_err(keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &alice, f.key, &scope(day(31), None)).await);
    assert_eq!(e.get("last_day"), Some(format!("the operator's limit ends on {}: choose that day or earlier", day(30).unwrap()).as_str()));
    let e = field_err(keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &alice, f.key, &scope(None, None)).await);
    assert!(e.get("last_day").is_some(), "no end is later than the limit's: {e:?}");
    // Her stored layer is unchanged by the refusals.
    assert_eq!(keys::list(env.db(), &alice).await.unwrap()[0].own, scope(day(7), Some(vec![m1])));
    // Narrower models of a narrower limit: what she asks outside it is named.
    keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &op, f.key, &scope(day(30), Some(vec![m1]))).await.unwrap();
    let e =
        field_err(keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &alice, f.key, &scope(day(7), Some(vec![m1, m2]))).await);
    assert_eq!(e.get("models"), Some("outside what the operator allowed: qwen"));

    // Bad input, next to its field; nothing stored.
    for (s, field, msg) in [
        (scope(Some("2026-02-31".into()), None), "last_day", "a day as YYYY-MM-DD"),
        (scope(Some("tomorrow".into()), None), "last_day", "a day as YYYY-MM-DD"),
        (scope(day(-1), None), "last_day", "choose today or a later day"),
        (scope(None, Some(vec![])), "models", "choose at least one model, or all models"),
        (scope(None, Some(vec![m1, 999_999])), "models", "no MaaS model #999999"),
    ] {
        assert_eq!(
            field_err(keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &op, f.key, &s).await).get(field),
            Some(msg),
            "{s:?}"
        );
    }
    assert_eq!(keys::list(env.db(), &op).await.unwrap()[0].limit, scope(day(30), Some(vec![m1])));

    // Not Bob's key: the same answer as no key at all.
    let bob = env.user("bob2", Role::User).await;
    assert!(matches!(
        keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &bob, f.key, &KeyScope::default()).await,
        Err(ServiceError::App(AppError::NotFound(_)))
    ));
    assert!(matches!(
        keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &op, 424_242, &KeyScope::default()).await,
        Err(ServiceError::App(AppError::NotFound(_)))
    ));
    // A revoked key keeps its scope.
    keys::revoke(env.db(), &app::ssr::audit::Actor::system(), &op, f.key).await.unwrap();
    assert!(field_err(keys::set_scope(env.db(), &app::ssr::audit::Actor::system(), &op, f.key, &KeyScope::default()).await)
        .get("key")
        .is_some());
}

#[tokio::test]
async fn data_survives_reopening_the_database_file() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let (id, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &weighted_input(&f)).await.unwrap();
    models::set_enabled(env.db(), &app::ssr::audit::Actor::system(), id, None, true).await.unwrap();
    let url = env.db_url();
    env.state.db.clone().close().await.unwrap();
    let db = server::bootstrap::open_db(&url).await.unwrap();
    let d = models::get(&db, id).await.unwrap();
    assert!(d.enabled);
    assert_eq!(d.endpoints.len(), 3);
    let attempt = app::ssr::auth::LoginAttempt { username: "op", password: "password123", ip: None, previous_token: None };
    assert_eq!(app::ssr::auth::login(&db, &Default::default(), attempt).await.unwrap().1.username, "op");
}

#[tokio::test]
async fn names_are_unique_in_the_schema() {
    let env = env().await;
    catalog::create_cluster(env.db(), &app::ssr::audit::Actor::system(), "c", "http://x").await.unwrap();
    assert_eq!(
        field_err(catalog::create_cluster(env.db(), &app::ssr::audit::Actor::system(), "c", "http://y").await).get("name"),
        Some("a cluster with this name exists")
    );
    let m = MarketplaceInput { name: "m".into(), provider: "p".into(), ..Default::default() };
    catalog::create_marketplace(env.db(), &app::ssr::audit::Actor::system(), &m).await.unwrap();
    assert_eq!(
        field_err(catalog::create_marketplace(env.db(), &app::ssr::audit::Actor::system(), &m).await).get("name"),
        Some("a marketplace model with this name exists")
    );
    workspaces::create(env.db(), &app::ssr::audit::Actor::system(), "w").await.unwrap();
    assert!(field_err(workspaces::create(env.db(), &app::ssr::audit::Actor::system(), "w").await).get("name").is_some());
}

#[tokio::test]
async fn every_pooled_sqlite_connection_enforces_foreign_keys() {
    use sea_orm::{Statement, TransactionTrait};
    let env = env().await;
    // Hold one connection in a transaction so the next query runs on another one.
    let tx = env.db().begin().await.unwrap();
    let db = env.db();
    // PostgreSQL always enforces them; SQLite only where each connection was told to.
    let pragmas: &[(&str, i64)] = if env.is_postgres() {
        &[]
    } else {
        &[("foreign_keys", 1), ("synchronous", 1 /* NORMAL, with WAL */), ("busy_timeout", 5000)]
    };
    for &(pragma, want) in pragmas {
        let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), format!("PRAGMA {pragma}"))).await.unwrap().unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), want, "{pragma} on a second connection");
    }
    // And a dangling reference is refused on it.
    let bad = env
        .db()
        .execute_unprepared("INSERT INTO endpoints (maas_model_id, position, model_id, url, weight) VALUES (999999, 0, 'x', 'http://x', 0)")
        .await;
    assert!(bad.is_err(), "foreign key enforced");
    tx.rollback().await.unwrap();
}

/// The load-aware policies live beside the first schema's checked `policy` column (which keeps
/// `round_robin` for a binary from before them); the affinity key and a drained endpoint are
/// saved and read back; a text-to-speech model refuses a token rule next to its field.
#[tokio::test]
async fn routing_policies_affinity_keys_and_drained_endpoints_are_saved() {
    let env = env().await;
    let op = env.user("op", Role::Operator).await;
    let f = fixture(&env, &op).await;
    let mut input = weighted_input(&f);
    input.policy = Policy::Affinity;
    input.affinity_key = AffinityKey::MetadataUserId;
    input.endpoints[1].draining = true;
    let (id, _) = models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &input).await.unwrap();
    let d = models::get(env.db(), id).await.unwrap();
    assert_eq!((d.policy, d.affinity_key), (Policy::Affinity, AffinityKey::MetadataUserId));
    assert_eq!(d.endpoints.iter().map(|e| e.draining).collect::<Vec<_>>(), [false, true, false]);
    let row = entities::maas_model::Entity::find_by_id(id).one(env.db()).await.unwrap().unwrap();
    assert_eq!((row.policy.as_str(), row.routing_policy.as_deref()), ("round_robin", Some("affinity")));
    for p in Policy::ALL {
        input.policy = p;
        models::update(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, id, None, &input).await.unwrap();
        assert_eq!(models::get(env.db(), id).await.unwrap().policy, p);
    }

    let tts = catalog::create_marketplace(
        env.db(),
        &app::ssr::audit::Actor::system(),
        &MarketplaceInput { name: "voice".into(), provider: "x".into(), kind: ModelKind::TextToSpeech, ..Default::default() },
    )
    .await
    .unwrap();
    catalog::set_published(env.db(), &app::ssr::audit::Actor::system(), tts, true).await.unwrap();
    let mut voice = ModelInput { marketplace_model_id: Some(tts), ..weighted_input(&f) };
    voice.rules[0].kind = RuleKind::Tokens;
    let e = field_err(models::create(env.db(), &app::ssr::audit::Actor::system(), &env.state.secrets, &voice).await);
    assert_eq!(e.get("rules.0.kind"), Some("a text to speech model reports no tokens: limit requests or concurrent calls"));
}
