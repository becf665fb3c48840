//! API usage per tenant: every decision counted per tenant (the caller's),
//! action and outcome in its UTC month, written at the flush (one write per
//! tenant), shown by `GET /v1/tenants/{id}/usage?month=`, exported as
//! metrics with bounded labels; and the store contract for the counts.

use std::sync::Arc;

use cedargate::authz::Effect;
use cedargate::ids::TenantId;
use cedargate::store::{self, Store, StoreUrl};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::*;

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

async fn counts_contract(store: Arc<dyn Store>) {
    let t1 = tid("t1");
    assert!(store.decisions_in(&t1, "2026-11").await.unwrap().is_empty());
    let batch = |r: u64, d: u64| {
        vec![
            ("Read".to_string(), Effect::Allow, r),
            ("Read".to_string(), Effect::Deny, d),
            ("Search".to_string(), Effect::Allow, 1),
        ]
    };
    store
        .add_decisions(&t1, "2026-11", &batch(3, 1))
        .await
        .unwrap();
    store
        .add_decisions(&t1, "2026-11", &batch(4, 0))
        .await
        .unwrap();
    store
        .add_decisions(&t1, "2026-12", &batch(1, 1))
        .await
        .unwrap();
    store
        .add_decisions(&tid("t2"), "2026-11", &batch(9, 9))
        .await
        .unwrap();
    store.add_decisions(&t1, "2026-11", &[]).await.unwrap();
    assert_eq!(
        store.decisions_in(&t1, "2026-11").await.unwrap(),
        [
            ("Read".to_string(), Effect::Allow, 7),
            ("Read".to_string(), Effect::Deny, 1),
            ("Search".to_string(), Effect::Allow, 2),
        ]
    );
    assert_eq!(
        store.decisions_in(&t1, "2026-12").await.unwrap(),
        [
            ("Read".to_string(), Effect::Allow, 1),
            ("Read".to_string(), Effect::Deny, 1),
            ("Search".to_string(), Effect::Allow, 1),
        ]
    );
    assert!(store
        .decisions_in(&tid("t3"), "2026-11")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn sqlite_keeps_decision_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&StoreUrl::Sqlite(dir.path().join("u.db")))
        .await
        .unwrap();
    counts_contract(store).await;
}

#[tokio::test]
async fn dynamodb_keeps_decision_counts() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let store = store::open(&ddb.url("usage-")).await.unwrap();
    counts_contract(store).await;
}

fn ask(id: &str, tenant: &str, action: &str, doc: &str) -> Value {
    json!({
        "principal": {"id": id, "tenant": tenant, "roles": ["viewer"], "clearance": 1},
        "action": action,
        "resource": {"type": "Document", "id": doc}
    })
}

/// Known requests through a sidecar, counted exactly once the sidecar
/// stops (its last flush); then read through the management API.
#[tokio::test]
async fn every_decision_is_counted_by_tenant_action_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    let sidecar = spawn_in(
        url.clone(),
        |s| {
            s.metrics.per_tenant = true;
            s.metrics.max_tenants = 1;
        },
        Arc::new(cedargate::sidecar::SidecarRoutes),
    )
    .await;
    let mut expected = (0, 0, 0);
    for _ in 0..5 {
        let r = sidecar
            .post("/v1/authorize", &ask("vic", "t1", "Read", "d-public"))
            .await;
        assert_eq!(r.json()["decision"], "Allow", "{}", r.body);
        expected.0 += 1;
    }
    for _ in 0..3 {
        // Another tenant's document: denied, counted in the caller's tenant.
        let r = sidecar
            .post("/v1/authorize", &ask("vic", "t1", "Read", "t2-doc"))
            .await;
        assert_eq!(r.json()["decision"], "Deny", "{}", r.body);
        expected.1 += 1;
    }
    for _ in 0..2 {
        let r = sidecar
            .post("/v1/authorize", &ask("bob", "t2", "Read", "d-public"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        expected.2 += 1;
    }
    // A malformed request is not a decision.
    let r = sidecar
        .post("/v1/authorize", &json!({"action": "Read"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let metrics = sidecar.get("/metrics").await.body;
    assert!(
        metrics.contains(r#"cedargate_decisions_by_action_total{action="Read",decision="allow"} "#),
        "{metrics}"
    );
    // One tenant has its own label; the other is `other`.
    assert!(
        metrics.contains(
            r#"cedargate_tenant_decisions_total{tenant="t1",action="Read",decision="allow"} 5"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cedargate_tenant_decisions_total{tenant="other",action="Read","#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"tenant="t2""#), "{metrics}");
    sidecar.shutdown().await;

    let store = store::open(&url).await.unwrap();
    let month = cedargate::model::current_month();
    assert_eq!(
        store.decisions_in(&tid("t1"), &month).await.unwrap(),
        [
            ("Read".to_string(), Effect::Allow, expected.0),
            ("Read".to_string(), Effect::Deny, expected.1),
        ]
    );
    let t2: u64 = store
        .decisions_in(&tid("t2"), &month)
        .await
        .unwrap()
        .iter()
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(t2, expected.2);

    let (admin, keys) = spawn_admin_app(|s| s.store = url.clone()).await;
    let ada = format!("Bearer {}", keys.token("ada", "t1", &["admin"], |_| {}));
    let get = |path: String| {
        let admin = &admin;
        let ada = ada.clone();
        async move {
            admin
                .send_with(Method::GET, &path, &[("authorization", &ada)], "")
                .await
        }
    };
    let r = get("/v1/tenants/t1/usage".into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = &r.json()["decisions"];
    assert_eq!(d["month"], month);
    assert_eq!(
        (d["allow"].as_u64(), d["deny"].as_u64()),
        (Some(expected.0), Some(expected.1))
    );
    assert_eq!(
        d["byAction"]["Read"],
        json!({"allow": expected.0, "deny": expected.1})
    );
    let r = get("/v1/tenants/t1/usage?month=2020-01".into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["decisions"],
        json!({"month": "2020-01", "allow": 0, "deny": 0, "byAction": {}})
    );
    for bad in ["2026-13", "2026-1", "november", "2026-11-01"] {
        let r = get(format!("/v1/tenants/t1/usage?month={bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }
    admin.shutdown().await;
}
