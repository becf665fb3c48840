//! The sidecar through HTTP: decisions, batches, health, metrics, and every
//! kind of bad input getting a clear 4xx (never a 500).

use std::sync::atomic::Ordering;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{metric, spawn_app, spawn_flaky_app};

fn read_req(user: &str, tenant: &str, roles: &[&str], doc: &str) -> Value {
    json!({
        "principal": {"id": user, "tenant": tenant, "roles": roles, "clearance": 1},
        "action": "Read",
        "resource": {"type": "Document", "id": doc}
    })
}

#[tokio::test]
async fn authorize_returns_the_full_decision() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/authorize",
            &read_req("bob", "t1", &["viewer"], "d-shared"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/json");
    let v = r.json();
    assert_eq!(v["decision"], "Allow");
    assert_eq!(v["determining_policies"], json!(["visibility.shared-read"]));
    assert_eq!(v["errors"], json!([]));
    assert!(v["policy_revision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(v["data_age_ms"].is_u64());
    let id = v["decision_id"].as_str().unwrap();
    assert_eq!(id.len(), 36);

    // Another decision gets another id.
    let r2 = app
        .post(
            "/v1/authorize",
            &read_req("bob", "t1", &["viewer"], "d-shared"),
        )
        .await;
    assert_ne!(r2.json()["decision_id"], v["decision_id"]);

    let deny = app
        .post(
            "/v1/authorize",
            &read_req("mallory", "t2", &["admin"], "d-public"),
        )
        .await;
    assert_eq!(deny.status, StatusCode::OK);
    assert_eq!(deny.json()["decision"], "Deny");
    assert_eq!(deny.json()["reason"], "resource_not_found");
    app.shutdown().await;
}

#[tokio::test]
async fn another_tenants_document_looks_exactly_like_a_missing_one() {
    let app = spawn_app().await;
    let other = app
        .post(
            "/v1/authorize",
            &read_req("mallory", "t2", &["admin"], "d-priv"),
        )
        .await
        .json();
    let missing = app
        .post(
            "/v1/authorize",
            &read_req("mallory", "t2", &["admin"], "never-existed"),
        )
        .await
        .json();
    for key in [
        "decision",
        "determining_policies",
        "errors",
        "reason",
        "policy_revision",
    ] {
        assert_eq!(other[key], missing[key], "field {key} differs");
    }
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&other), keys(&missing));
    app.shutdown().await;
}

#[tokio::test]
async fn batch_keeps_order_and_reports_bad_items_in_place() {
    let app = spawn_app().await;
    let body = json!({"requests": [
        read_req("alice", "t1", &["editor"], "d-priv"),
        read_req("vic", "t1", &["viewer"], "d-priv"),
        {"action": "Read"},
        {"principal": {"id": "vic", "tenant": "t1"}, "action": "Fly", "resource": {"type": "Document", "id": "d-public"}},
        read_req("vic", "t1", &["viewer"], "d-public"),
    ]});
    let r = app.post("/v1/authorize/batch", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["decision"], "Allow");
    assert_eq!(results[1]["decision"], "Deny");
    assert_eq!(results[2]["error"]["code"], "invalid_request");
    assert_eq!(results[3]["error"]["code"], "unknown_action");
    assert_eq!(results[4]["decision"], "Allow");

    let too_many = json!({"requests": vec![read_req("vic", "t1", &["viewer"], "d-public"); 101]});
    let r = app.post("/v1/authorize/batch", &too_many).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "invalid_batch_size");

    let hundred = json!({"requests": vec![read_req("vic", "t1", &["viewer"], "d-public"); 100]});
    let r = app.post("/v1/authorize/batch", &hundred).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 100);

    let r = app
        .post("/v1/authorize/batch", &json!({"requests": []}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    app.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let app = spawn_app().await;
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("malformed json", "{\"principal\":".into(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("not an object", "[1,2]".into(), StatusCode::BAD_REQUEST, "invalid_request"),
        ("empty body", "".into(), StatusCode::BAD_REQUEST, "malformed_json"),
        (
            "unknown action",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "Fly", "resource": {"type": "Document", "id": "d"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "unknown_action",
        ),
        (
            "action group is not requestable",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "DocumentAction", "resource": {"type": "Document", "id": "d"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "unknown_action",
        ),
        (
            "wrong type for clearance",
            json!({"principal": {"id": "a", "tenant": "t1", "clearance": "high"}, "action": "Read", "resource": {"type": "Document", "id": "d"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "clearance out of range",
            json!({"principal": {"id": "a", "tenant": "t1", "clearance": 9}, "action": "Read", "resource": {"type": "Document", "id": "d"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "bad tenant id",
            json!({"principal": {"id": "a", "tenant": "t1\"; drop", "roles": []}, "action": "Read", "resource": {"type": "Document", "id": "d"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "bad document id",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "Read", "resource": {"type": "Document", "id": ""}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            "unknown resource type",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "Read", "resource": {"type": "Folder", "id": "x"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "unknown_resource_type",
        ),
        (
            "action on the wrong resource type",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "Read", "resource": {"type": "Tenant", "id": "t1"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "wrong_resource_type",
        ),
        (
            "missing required context",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "CreateDocument", "resource": {"type": "Tenant", "id": "t1"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_context",
        ),
        (
            "context of the wrong type",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "CreateDocument", "resource": {"type": "Tenant", "id": "t1"}, "context": {"fileType": "pdf", "sizeBytes": "big"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_context",
        ),
        (
            "unexpected context key",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "Read", "resource": {"type": "Document", "id": "d"}, "context": {"admin": true}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_context",
        ),
        (
            "context not an object",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "Read", "resource": {"type": "Document", "id": "d"}, "context": [1]}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_context",
        ),
        (
            "unknown top-level field",
            json!({"principal": {"id": "a", "tenant": "t1"}, "action": "Read", "resource": {"type": "Document", "id": "d"}, "tenant": "t2"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "missing principal",
            json!({"action": "Read", "resource": {"type": "Document", "id": "d"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "missing_principal",
        ),
        (
            "body too large",
            format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (what, body, status, code) in cases {
        let r = app.send(Method::POST, "/v1/authorize", body).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], code, "{what}: {}", r.body);
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }

    let r = app.get("/v1/authorize").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "POST");
    let r = app.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "not_found");

    // The server is still healthy after all of that.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("cedargate_bad_requests_total"),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let h = app.get("/healthz").await;
    assert_eq!(h.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.json()["status"], "ready");

    app.post(
        "/v1/authorize",
        &read_req("vic", "t1", &["viewer"], "d-public"),
    )
    .await;
    app.post(
        "/v1/authorize",
        &read_req("vic", "t1", &["viewer"], "d-public"),
    )
    .await;
    app.post(
        "/v1/authorize",
        &read_req("vic", "t1", &["viewer"], "d-priv"),
    )
    .await;
    let m = app.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.body;
    assert!(
        text.contains("cedargate_decisions_total{decision=\"allow\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("cedargate_decisions_total{decision=\"deny\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cedargate_decision_latency_seconds_count 3"),
        "{text}"
    );
    assert!(
        text.contains("cache=\"document\",event=\"hit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cache=\"document\",event=\"miss\"} 2"),
        "{text}"
    );
    assert!(text.contains("cache=\"tenant\",event=\"hit\"} 2"), "{text}");
    assert!(
        text.contains("cedargate_policy_revision{revision=\"sha256:"),
        "{text}"
    );
    assert!(
        text.contains("cedargate_policy_reload_failures_total 0"),
        "{text}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn store_outage_fails_closed_with_503() {
    let (app, flaky) = spawn_flaky_app(|s| {
        s.cache.ttl = std::time::Duration::from_millis(1);
        s.cache.max_staleness = std::time::Duration::ZERO;
    })
    .await;
    let req = read_req("vic", "t1", &["viewer"], "d-public");
    assert_eq!(
        app.post("/v1/authorize", &req).await.json()["decision"],
        "Allow"
    );

    flaky.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await; // past the 1 ms TTL
    let r = app.post("/v1/authorize", &req).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["decision"], "Deny");
    assert_eq!(r.json()["reason"], "store_unavailable");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("reason=\"store_unavailable\"} 1"),
        "{metrics}"
    );

    flaky.down.store(false, Ordering::SeqCst);
    assert_eq!(
        app.post("/v1/authorize", &req).await.json()["decision"],
        "Allow"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn remembered_decisions_follow_data_changes() {
    // A long TTL: only the change log can make the sidecar see the change.
    let (app, flaky) =
        spawn_flaky_app(|s| s.cache.ttl = std::time::Duration::from_secs(3600)).await;
    let store = flaky.inner.clone();
    let req = read_req("vic", "t1", &["viewer"], "d-public");
    for _ in 0..3 {
        assert_eq!(
            app.post("/v1/authorize", &req).await.json()["decision"],
            "Allow"
        );
    }
    let metrics = app.get("/metrics").await.body;
    let hits = |m: &str| {
        metric(
            m,
            "cedargate_cache_events_total{cache=\"decision\",event=\"hit\"}",
        )
    };
    assert_eq!(hits(&metrics), 2, "{metrics}");
    // The owner makes the document private.
    let t1 = cedargate::ids::TenantId::parse("t1").unwrap();
    let id = cedargate::ids::DocumentId::parse("d-public").unwrap();
    let mut doc = store.get_document(&t1, &id).await.unwrap().unwrap();
    doc.visibility = cedargate::model::Visibility::Private;
    store.put_document(&doc).await.unwrap();
    // The remembered Allow is not given once the change is seen.
    let started = std::time::Instant::now();
    let r = loop {
        let r = app.post("/v1/authorize", &req).await.json();
        if r["decision"] == "Deny" {
            break r;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "still {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(r["reason"], "no_permit");
    // And the Deny is remembered in its turn.
    let again = app.post("/v1/authorize", &req).await.json();
    assert_eq!(again["decision"], "Deny");
    let before = hits(&app.get("/metrics").await.body);
    app.post("/v1/authorize", &req).await;
    assert_eq!(hits(&app.get("/metrics").await.body), before + 1);
    app.shutdown().await;
}

#[tokio::test]
async fn warm_keys_ride_out_a_store_outage_within_max_staleness() {
    let (app, flaky) = spawn_flaky_app(|s| {
        s.cache.ttl = std::time::Duration::from_millis(1);
        s.cache.max_staleness = std::time::Duration::from_secs(600);
    })
    .await;
    let warm = read_req("vic", "t1", &["viewer"], "d-public");
    assert_eq!(
        app.post("/v1/authorize", &warm).await.json()["decision"],
        "Allow"
    );

    flaky.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await; // past the TTL
    let r = app.post("/v1/authorize", &warm).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["decision"], "Allow");
    assert!(
        r.json()["data_age_ms"].as_u64().unwrap() >= 20,
        "{}",
        r.body
    );
    // A document never loaded cannot be decided.
    let cold = read_req("vic", "t1", &["viewer"], "d-shared");
    let r = app.post("/v1/authorize", &cold).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["reason"], "store_unavailable");
    let metrics = app.get("/metrics").await.body;
    let stale = metric(
        &metrics,
        "cedargate_cache_events_total{cache=\"document\",event=\"stale_served\"}",
    );
    assert!(stale >= 1, "{metrics}");
    app.shutdown().await;
}
