//! Changes reach running sidecars through the store's change log, without
//! waiting for the cache TTL; the cache rides out a DynamoDB outage within
//! max-staleness and recovers without a restart; concurrent misses read the
//! store once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cedargate::ids::{DocumentId, TenantId};
use cedargate::model::Visibility;
use cedargate::store::{self, StoreUrl};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::*;

fn read(user: &str, roles: &[&str], doc: &str) -> Value {
    json!({
        "principal": {"id": user, "tenant": "t1", "roles": roles, "clearance": 1},
        "action": "Read",
        "resource": {"type": "Document", "id": doc}
    })
}

/// Makes d-public private through a second store handle (as
/// `cedargate-admin` would) and returns how long the sidecar took to deny.
async fn change_and_wait(app: &TestApp, url: &StoreUrl) -> Duration {
    let req = read("vic", &["viewer"], "d-public");
    assert_eq!(
        app.post("/v1/authorize", &req).await.json()["decision"],
        "Allow"
    );
    let admin = store::open(url).await.unwrap();
    let (t1, id) = (
        TenantId::parse("t1").unwrap(),
        DocumentId::parse("d-public").unwrap(),
    );
    let mut doc = admin.get_document(&t1, &id).await.unwrap().unwrap();
    doc.visibility = Visibility::Private;
    let started = Instant::now();
    admin.put_document(&doc).await.unwrap();
    loop {
        let d = app.post("/v1/authorize", &req).await.json();
        if d["decision"] == "Deny" {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the change never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sqlite_changes_reach_the_sidecar_before_the_ttl() {
    let mut url = None;
    let app = spawn_app_with(|s| {
        s.cache.ttl = Duration::from_secs(3600);
        url = Some(s.store.clone());
    })
    .await;
    let took = change_and_wait(&app, &url.unwrap()).await;
    eprintln!("sqlite change propagation: {took:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn dynamodb_changes_reach_the_sidecar_before_the_ttl() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("prop-").await;
    let app = spawn_app_with(|s| {
        s.cache.ttl = Duration::from_secs(3600);
        s.store = url.clone();
    })
    .await;
    let took = change_and_wait(&app, &url).await;
    eprintln!("dynamodb change propagation: {took:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn fifty_concurrent_misses_read_the_store_once() {
    let (app, flaky) = spawn_flaky_app(|_| {}).await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.post("/v1/authorize", &read("bob", &["viewer"], "d-shared"))
                .await
                .json()["decision"]
                .clone()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "Allow");
    }
    assert_eq!(flaky.document_reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dynamodb_outage_is_ridden_out_and_recovered_from() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ddb = DynamoLocal::start_at(&jar, Some(data.path()), port).await;
    let url = ddb.fixture_url("fault-").await;
    let app = spawn_app_with(|s| {
        s.cache.ttl = Duration::from_millis(200);
        s.cache.max_staleness = Duration::from_secs(600);
        s.store = url.clone();
    })
    .await;
    let warm = read("vic", &["viewer"], "d-public");
    let cold = read("bob", &["viewer"], "d-shared");
    // The change follower re-reads the last seconds of the change log when it
    // starts, which includes the import; wait for that pass, or it would drop
    // the entry warmed below and leave nothing to serve stale.
    eventually("the change follower's first pass", || async {
        metric(
            &app.get("/metrics").await.body,
            "cedargate_changes_applied_total",
        ) > 0
    })
    .await;
    assert_eq!(
        app.post("/v1/authorize", &warm).await.json()["decision"],
        "Allow"
    );

    ddb.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // past the TTL
    let r = app.post("/v1/authorize", &warm).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["decision"], "Allow");
    assert!(r.json()["data_age_ms"].as_u64().unwrap() >= 200);
    let r = app.post("/v1/authorize", &cold).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["decision"], "Deny");
    assert_eq!(
        app.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);

    ddb.restart().await;
    let started = Instant::now();
    loop {
        let r = app.post("/v1/authorize", &cold).await;
        if r.status == StatusCode::OK && r.json()["decision"] == "Allow" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no recovery: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let metrics = app.get("/metrics").await.body;
    assert!(
        metric(
            &metrics,
            "cedargate_fail_closed_denials_total{reason=\"store_unavailable\"}"
        ) >= 1,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "cedargate_cache_events_total{cache=\"document\",event=\"stale_served\"}"
        ) >= 1,
        "{metrics}"
    );
    app.shutdown().await;
}

/// Allowed searches are counted into the tenant's `queriesThisMonth`; the
/// quota follows; a count from an earlier month starts again at zero.
async fn searches_are_counted(url: &StoreUrl) {
    let app = spawn_app_with(|s| {
        s.store = url.clone();
        s.cache.ttl = Duration::from_secs(3600);
        s.usage_flush_interval = Duration::from_millis(100);
    })
    .await;
    let store = store::open(url).await.unwrap();
    let search = |tenant: &str| {
        json!({
            "principal": {"id": "vic", "tenant": tenant, "roles": ["viewer"], "clearance": 1},
            "action": "Search",
            "resource": {"type": "Tenant", "id": tenant}
        })
    };
    // t1 has used 99 of its 100 queries.
    let r = app.post("/v1/authorize", &search("t1")).await.json();
    assert_eq!(r["decision"], "Allow", "{r}");
    let started = Instant::now();
    let denied = loop {
        let r = app.post("/v1/authorize", &search("t1")).await.json();
        if r["decision"] == "Deny" {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never denied: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        denied["determining_policies"]
            .as_array()
            .unwrap()
            .contains(&json!("quota.max-queries")),
        "{denied}"
    );
    let t1 = store
        .get_tenant(&TenantId::parse("t1").unwrap())
        .await
        .unwrap()
        .unwrap();
    let month = cedargate::model::current_month();
    assert_eq!(t1.usage.month.as_deref(), Some(month.as_str()));
    // Every search allowed before the quota caught up is counted.
    assert!(t1.usage.queries_this_month >= 100, "{:?}", t1.usage);

    // t2's count is from an earlier month: it starts again.
    let t2_id = TenantId::parse("t2").unwrap();
    let mut t2 = store.get_tenant(&t2_id).await.unwrap().unwrap();
    t2.usage.queries_this_month = t2.limits.max_queries_per_month;
    t2.usage.month = Some("2000-01".into());
    store.put_tenant(&t2).await.unwrap();
    let started = Instant::now();
    loop {
        let r = app.post("/v1/authorize", &search("t2")).await.json();
        assert_eq!(
            r["decision"], "Allow",
            "a new month has no searches yet: {r}"
        );
        let now = store.get_tenant(&t2_id).await.unwrap().unwrap();
        if now.usage.month.as_deref() == Some(month.as_str()) {
            assert!(now.usage.queries_this_month >= 1 && now.usage.queries_this_month < 100);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not counted: {:?}",
            now.usage
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_counts_searches_into_usage() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    searches_are_counted(&url).await;
}

#[tokio::test]
async fn dynamodb_counts_searches_into_usage() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("usage-").await;
    searches_are_counted(&url).await;
}
