//! Stripe webhooks through the real management server on both stores: a
//! signed subscription changes its tenant's tier and limits; a replay, an
//! older event, an unknown price change nothing; a forged or stale
//! signature is a 400 that changes and records nothing; an unknown
//! customer is recorded in the platform's log, never in a tenant's; an
//! event whose metadata names another tenant changes only the customer's.
//! (Signatures made by Stripe's own library: scripts/stripe-webhook.sh.)

use std::sync::Arc;

use cedargate::audit::{AuditEvent, PLATFORM_TENANT};
use cedargate::billing::stripe::{PricePlan, StripeConfig};
use cedargate::ids::TenantId;
use cedargate::model::{Billing, BillingProvider, Limits, Tier};
use cedargate::store::StoreUrl;
use hmac::{Hmac, Mac};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::*;

const SECRET: &str = "whsec_it_secret";

fn config() -> StripeConfig {
    StripeConfig {
        webhook_secrets: vec!["whsec_old".into(), SECRET.into()],
        prices: vec![PricePlan {
            price: "price_ent".into(),
            tier: Tier::Enterprise,
            features: ["export".to_string(), "sso".to_string()].into(),
            limits: Limits {
                max_documents: 5000,
                max_users: 500,
                max_storage_gb: 50,
                max_queries_per_month: 50_000,
            },
        }],
        ..Default::default()
    }
}

fn sign(body: &str, secret: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn event(id: &str, created: i64, customer: &str, price: &str, hint: Option<&str>) -> String {
    let mut sub = json!({
        "id": "sub_1", "object": "subscription", "customer": customer, "status": "active",
        "items": { "data": [ { "price": { "id": price }, "current_period_end": created + 86_400 } ] },
    });
    if let Some(t) = hint {
        sub["metadata"] = json!({ "tenant_id": t });
    }
    json!({
        "id": id, "object": "event", "type": "customer.subscription.updated",
        "created": created, "data": { "object": sub },
    })
    .to_string()
}

async fn deliver(app: &TestApp, body: &str, signature: &str) -> (StatusCode, Value) {
    let r = app
        .send_with(
            Method::POST,
            "/v1/billing/stripe/webhook",
            &[("stripe-signature", signature)],
            body.to_string(),
        )
        .await;
    (r.status, r.json())
}

async fn records(app: &TestApp, tenant: &str) -> Vec<AuditEvent> {
    audit_records_of(app, tenant, "BillingEvent").await
}

async fn webhook_events(url: StoreUrl) {
    // t1 is billed as cus_t1; t2 as cus_t2.
    let store = cedargate::store::open(&url).await.unwrap();
    for id in ["t1", "t2"] {
        let mut t = store
            .get_tenant(&TenantId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        t.billing = Some(Billing::new(
            BillingProvider::Stripe,
            Some(format!("cus_{id}")),
        ));
        store.put_tenant(&t).await.unwrap();
    }
    let app = spawn_in(
        url,
        |s| s.audit.role = "admin".into(),
        Arc::new(
            cedargate::admin::AdminRoutes::new(
                cedargate::retention::RetentionConfig::new("unused-archives".into()),
                cedargate::clock::system(),
            )
            .with_stripe(config()),
        ),
    )
    .await;
    let tenant = |id: &'static str| {
        let store = app.store.clone();
        async move {
            store
                .get_tenant(&TenantId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let now = chrono::Utc::now().timestamp();
    let t2_before = tenant("t2").await;

    // Forged (another secret), stale, and unsigned: 400, nothing changes,
    // nothing is recorded anywhere.
    let e1 = event("evt_1", now - 100, "cus_t1", "price_ent", None);
    for signature in [
        sign(&e1, "whsec_forged", now),
        sign(&e1, SECRET, now - 301),
        String::new(),
    ] {
        let (status, body) = deliver(&app, &e1, &signature).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_signature");
    }
    let before = tenant("t1").await;
    assert_eq!(before.subscription.tier, Tier::Pro);

    // Signed (with the older of two secrets): applied.
    let (status, body) = deliver(&app, &e1, &sign(&e1, "whsec_old", now)).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    let after = tenant("t1").await;
    assert_eq!(after.subscription.tier, Tier::Enterprise);
    assert_eq!(after.limits.max_documents, 5000);
    let b = after.billing.clone().unwrap();
    assert_eq!(b.recent_event_ids, vec!["evt_1".to_string()]);
    assert_eq!(b.price_id.as_deref(), Some("price_ent"));

    // A replay, an older event, an unknown price: 200, nothing changes.
    let older = event("evt_0", now - 200, "cus_t1", "price_ent", None);
    let unknown_price = event("evt_2", now - 50, "cus_t1", "price_other", None);
    for (body, outcome) in [
        (&e1, "duplicate"),
        (&older, "out_of_order"),
        (&unknown_price, "unknown_price"),
    ] {
        let (status, answer) = deliver(&app, body, &sign(body, SECRET, now)).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (StatusCode::OK, Some(outcome))
        );
        assert_eq!(tenant("t1").await, after, "{outcome} changed the tenant");
    }

    // Metadata naming t2 with t1's customer: t1 changes, t2 does not.
    let redirected = event("evt_3", now - 10, "cus_t1", "price_ent", Some("t2"));
    let (_, answer) = deliver(&app, &redirected, &sign(&redirected, SECRET, now)).await;
    assert_eq!(answer["outcome"], "applied");
    assert_eq!(tenant("t2").await, t2_before);
    // An unknown customer, even naming t2: 200, no change, recorded in the
    // platform's log only.
    let stranger = event("evt_4", now - 5, "cus_stranger", "price_ent", Some("t2"));
    let (status, answer) = deliver(&app, &stranger, &sign(&stranger, SECRET, now)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("unknown_customer"))
    );
    assert_eq!(tenant("t2").await, t2_before);

    // The records: t1 has its five events, t2 none, the platform the
    // stranger's; the forged ones are nowhere.
    eventually("the billing records are in the store", || async {
        records(&app, "t1").await.len() == 5 && records(&app, PLATFORM_TENANT).await.len() == 1
    })
    .await;
    let t1: Vec<(String, String)> = records(&app, "t1")
        .await
        .iter()
        .map(|r| {
            (
                r.details["eventId"].as_str().unwrap().to_string(),
                r.details["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut t1 = t1;
    t1.sort();
    assert_eq!(
        t1,
        [
            ("evt_0", "out_of_order"),
            ("evt_1", "applied"),
            ("evt_1", "duplicate"),
            ("evt_2", "unknown_price"),
            ("evt_3", "applied"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(records(&app, "t2").await.is_empty());
    let platform = records(&app, PLATFORM_TENANT).await;
    assert_eq!(platform[0].details["customerId"], "cus_stranger");
    assert_eq!(platform[0].user_id.as_deref(), Some("system:stripe"));
    app.shutdown().await;
}

#[tokio::test]
async fn webhook_events_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    webhook_events(url).await;
}

#[tokio::test]
async fn webhook_events_on_dynamodb() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("stripe-").await;
    webhook_events(url).await;
}

#[tokio::test]
async fn webhooks_are_off_without_a_secret() {
    let (app, _) = spawn_admin_app(|_| {}).await;
    let body = event("evt_1", 0, "cus_t1", "price_ent", None);
    let (status, answer) = deliver(&app, &body, &sign(&body, SECRET, 0)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["code"], "not_configured");
    app.shutdown().await;
}
