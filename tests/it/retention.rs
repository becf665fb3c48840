//! Retention and the tenant lifecycle, on SQLite and DynamoDB Local, with a
//! clock the tests set: soft delete → restore inside the recovery window;
//! soft delete → purge after it; cancelled tenant → archive → purge with its
//! audit records kept; dry runs change nothing; an interrupted run, run
//! again, ends where an uninterrupted one would.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::*;
use cedargate::audit::writer::{self, AuditConfig, AuditTasks};
use cedargate::audit::{Actor, AuditEvent};
use cedargate::clock::ManualClock;
use cedargate::ids::{DocumentId, TenantId};
use cedargate::metrics::AuditMetrics;
use cedargate::model::{Document, Tenant, TenantStatus};
use cedargate::retention::{Options, Report, Retention, RetentionConfig, Step};
use cedargate::store::{self, AuditQuery, Store, StoreUrl};

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn did(s: &str) -> DocumentId {
    DocumentId::parse(s).unwrap()
}

/// The job over `store`, recording into its own spool; the tasks drain the
/// records into the store when shut down.
async fn job(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    config: &RetentionConfig,
    spool: &std::path::Path,
) -> (Retention, Option<AuditTasks>) {
    let mut audit = AuditConfig::new(spool);
    audit.rotate_interval = std::time::Duration::from_millis(10);
    audit.shutdown_timeout = std::time::Duration::from_secs(5);
    let (log, tasks) = writer::start(audit, store.clone(), AuditMetrics::default(), "admin")
        .await
        .unwrap();
    let job = Retention {
        store,
        audit: log,
        actor: Actor::scheduled("retention"),
        config: config.clone(),
        clock,
        keys: config.encryption.provider().await,
    };
    (job, tasks)
}

/// One run, its records drained into the store before it returns.
async fn run(
    store: Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    config: &RetentionConfig,
    dry_run: bool,
) -> Report {
    let spool = tempfile::tempdir().unwrap();
    let (job, tasks) = job(store, clock.clone(), config, spool.path()).await;
    let report = job
        .run(&Options {
            dry_run,
            tenant: None,
        })
        .await
        .unwrap();
    drop(job);
    if let Some(t) = tasks {
        t.shutdown().await;
    }
    report
}

async fn audit_of(store: &dyn Store, tenant: &str) -> Vec<AuditEvent> {
    store
        .all_audit_events(&AuditQuery::new(
            tid(tenant),
            DateTime::<Utc>::UNIX_EPOCH,
            Utc::now() + Duration::days(1),
            1000,
        ))
        .await
        .unwrap()
}

/// Everything a run may change, to compare before and after.
async fn snapshot(store: &dyn Store) -> Value {
    let (tenants, _) = store.list_tenants(None, 1000).await.unwrap();
    let mut out = Vec::new();
    for t in tenants {
        let (docs, _) = store.documents_of(&t.tenant_id, None, 1000).await.unwrap();
        // The job's records only: the API's own records of the calls
        // before may still be on their way from its spool.
        let audit = audit_of(store, t.tenant_id.as_str())
            .await
            .iter()
            .filter(|e| e.user_id.as_deref() == Some("system:retention"))
            .count();
        out.push(json!({ "tenant": t, "documents": docs, "audit": audit }));
    }
    json!(out)
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
) -> cedargate::sidecar::client::Reply {
    let auth = format!("Bearer {token}");
    app.send_with(
        method,
        path,
        &[("authorization", auth.as_str())],
        String::new(),
    )
    .await
}

fn read(doc: &str) -> Value {
    json!({
        "principal": {"id": "vic", "tenant": "t1", "roles": ["viewer"]},
        "action": "Read",
        "resource": {"type": "Document", "id": doc}
    })
}

/// The lifecycle through the API, the sidecar and the job.
async fn lifecycle(url: &StoreUrl) {
    let archives = tempfile::tempdir().unwrap();
    let config = RetentionConfig::new(archives.path().to_path_buf());
    let start = Utc::now();
    let clock = ManualClock::new(start);
    let (admin, keys) =
        spawn_admin_app_at(clock.clone(), config.clone(), |s| s.store = url.clone()).await;
    let sidecar = spawn_app_with(|s| s.store = url.clone()).await;
    let store = admin.store.clone();
    let ada = keys.token("ada", "t1", &["admin"], |_| {});
    let decide = |doc: &'static str| {
        let sidecar = &sidecar;
        async move {
            sidecar.post("/v1/authorize", &read(doc)).await.json()["decision"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(decide("d-public").await, "Allow");
    let usage0 = store.get_tenant(&tid("t1")).await.unwrap().unwrap().usage;

    // Soft delete: denied by the sidecar from then on (propagation bound).
    for doc in ["d-public", "d-shared"] {
        let r = call(
            &admin,
            &ada,
            Method::DELETE,
            &format!("/v1/tenants/t1/documents/{doc}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json()["deletedAt"], json!(start));
    }
    eventually("the sidecar to deny the deleted document", || async {
        decide("d-public").await == "Deny"
    })
    .await;

    // Ten days on: restored inside the window.
    clock.advance(Duration::days(10));
    let r = call(
        &admin,
        &ada,
        Method::POST,
        "/v1/tenants/t1/documents/d-shared/restore",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["deletedAt"], Value::Null);

    // Thirty-one days after the deletion: the window has passed.
    clock.set(start + Duration::days(31));
    let r = call(
        &admin,
        &ada,
        Method::POST,
        "/v1/tenants/t1/documents/d-public/restore",
    )
    .await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert_eq!(
        r.json()["error"]["code"],
        "recovery_window_passed",
        "{}",
        r.body
    );

    // A dry run says what it would do and changes nothing.
    let before = snapshot(store.as_ref()).await;
    let dry = run(store.clone(), &clock, &config, true).await;
    assert!(dry.failures.is_empty(), "{:?}", dry.failures);
    assert!(dry.steps.contains(&Step::PurgeDocument {
        tenant_id: tid("t1"),
        document_id: "d-public".into(),
        deleted_at: start,
    }));
    // The fixture's cancelled tenant has no `cancelledAt`: its period
    // would start now.
    assert!(dry.steps.contains(&Step::StartRetention {
        tenant_id: tid("canc")
    }));
    assert_eq!(
        snapshot(store.as_ref()).await,
        before,
        "a dry run changed the store"
    );

    // The real run purges it; the restored one stays; usage is unchanged
    // (the soft delete already took the document off).
    let report = run(store.clone(), &clock, &config, false).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let purged_docs: Vec<_> = report
        .steps
        .iter()
        .filter(|s| matches!(s, Step::PurgeDocument { .. }))
        .collect();
    // d-public, and the fixture's d-deleted (deleted in March).
    assert_eq!(purged_docs.len(), 2, "{:?}", report.steps);
    assert_eq!(report.documents_purged, 2);
    assert!(store
        .get_document(&tid("t1"), &did("d-public"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_document(&tid("t1"), &did("d-shared"))
        .await
        .unwrap()
        .is_some());
    let usage1 = store.get_tenant(&tid("t1")).await.unwrap().unwrap().usage;
    assert_eq!(
        usage1.documents,
        usage0.documents - 1,
        "one soft delete, one restore, one purge"
    );
    let purge_records: Vec<_> = audit_of(store.as_ref(), "t1")
        .await
        .into_iter()
        .filter(|e| e.action == "PurgeDocument")
        .collect();
    assert_eq!(purge_records.len(), 2);
    let record = purge_records
        .iter()
        .find(|e| e.details["documentId"] == "d-public")
        .expect("a record of the purge");
    assert!(record.success);
    assert_eq!(record.user_id.as_deref(), Some("system:retention"));
    assert_eq!(record.details["recoveryWindowDays"], 30);
    // Gone for good: the sidecar denies it, and a restore finds nothing.
    assert_eq!(decide("d-public").await, "Deny");
    let r = call(
        &admin,
        &ada,
        Method::POST,
        "/v1/tenants/t1/documents/d-public/restore",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // Again: nothing left to do for t1.
    let again = run(store.clone(), &clock, &config, false).await;
    assert_eq!(again.documents_purged, 0, "{:?}", again.steps);

    // The cancelled tenant: its period started at the first run (day 31);
    // the fixture gives it 365 days. Day 395: not yet. Day 397: archived
    // and purged, audit records kept.
    let canc = store.get_tenant(&tid("canc")).await.unwrap().unwrap();
    assert_eq!(canc.cancelled_at, Some(start + Duration::days(31)));
    assert_eq!(canc.settings.data_retention_days, 365, "the fixture's");
    let canc_audit = audit_of(store.as_ref(), "canc").await.len();
    assert!(canc_audit >= 1, "StartRetention is recorded");
    // A policy of its own: archived, then deleted with the documents.
    let own = cedargate::policy::tenant::TenantPolicy {
        tenant_id: tid("canc"),
        policy_id: cedargate::ids::PolicyName::parse("own").unwrap(),
        definition: cedargate::policy::tenant::Definition::Static {
            statement: "permit (principal, action, resource);".into(),
        },
        description: None,
        created_at: start,
        updated_at: start,
        updated_by: None,
    };
    store.put_tenant_policy_if(&own, None).await.unwrap();
    clock.set(start + Duration::days(395));
    let early = run(store.clone(), &clock, &config, false).await;
    assert_eq!(early.tenants_purged, 0, "{:?}", early.steps);
    clock.set(start + Duration::days(397));
    let report = run(store.clone(), &clock, &config, false).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.tenants_purged, 1, "{:?}", report.steps);
    let canc = store.get_tenant(&tid("canc")).await.unwrap().unwrap();
    assert_eq!(canc.purged_at, Some(start + Duration::days(397)));
    assert_eq!(canc.usage.documents, 0);
    assert_eq!(canc.usage.storage_gb, 0);
    let (docs, _) = store.documents_of(&tid("canc"), None, 10).await.unwrap();
    assert!(docs.is_empty(), "{docs:?}");
    assert!(store
        .tenant_policies(&tid("canc"))
        .await
        .unwrap()
        .is_empty());
    let records = audit_of(store.as_ref(), "canc").await;
    assert!(
        records.len() > canc_audit,
        "audit records stay, and the purge is recorded"
    );
    assert!(records
        .iter()
        .any(|e| e.action == "PurgeTenant" && e.success));
    // The archive is a complete export with the tenant's document.
    let path = report
        .steps
        .iter()
        .find_map(|s| match s {
            Step::ArchiveTenant { path, reused, .. } => {
                assert!(!reused);
                Some(path.clone())
            }
            _ => None,
        })
        .expect("an archive step");
    assert!(path.starts_with(archives.path()));
    let archived = cedargate::export::read(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(archived.data.tenants.len(), 1);
    assert_eq!(archived.data.documents.len(), 1);
    assert_eq!(archived.data.documents[0].document_id.as_str(), "c-doc");
    assert_eq!(archived.data.policies, vec![own]);
    assert!(!archived.audit.is_empty());
    // A purged tenant cannot be reopened; the sidecar denies its users.
    let pam = keys.token("pam", "plat", &["platform-admin"], |_| {});
    let got = call(&admin, &pam, Method::GET, "/v1/tenants/canc").await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.json()["purgedAt"].is_string(), "{}", got.body);
    let etag = etag(&got);
    let mut reopened: Value = got.json();
    reopened["status"] = "active".into();
    let r = admin
        .send_with(
            Method::PUT,
            "/v1/tenants/canc",
            &[
                ("authorization", &format!("Bearer {pam}")),
                ("if-match", &etag),
            ],
            reopened.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    // Nor given policies of its own again.
    let r = admin
        .send_with(
            Method::PUT,
            "/v1/tenants/canc/policies/own",
            &[("authorization", &format!("Bearer {pam}"))],
            serde_json::json!({"definition": {"static": {"statement": "permit (principal, action, resource);"}}}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "tenant_purged", "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "tenant_purged", "{}", r.body);

    // Nothing more to do.
    let last = run(store.clone(), &clock, &config, false).await;
    assert_eq!(
        (last.documents_purged, last.tenants_purged),
        (0, 0),
        "{:?}",
        last.steps
    );
    sidecar.shutdown().await;
    admin.shutdown().await;
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    lifecycle(&url).await;
}

#[tokio::test]
async fn lifecycle_on_dynamodb() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("ret-").await;
    lifecycle(&url).await;
}

/// A tenant cancelled 100 days ago (retention 30) with 30 documents, and
/// one active tenant with 12 documents deleted 40 days ago.
async fn seed(store: &dyn Store, now: DateTime<Utc>) {
    let mut base: Tenant = fixture()
        .tenants
        .into_iter()
        .find(|t| t.tenant_id.as_str() == "t1")
        .unwrap();
    base.usage = Default::default();
    let mut gone = base.clone();
    gone.tenant_id = tid("gone");
    gone.status = TenantStatus::Cancelled;
    gone.cancelled_at = Some(now - Duration::days(100));
    gone.settings.data_retention_days = 30;
    let mut busy = base.clone();
    busy.tenant_id = tid("busy");
    store.put_tenant(&gone).await.unwrap();
    store.put_tenant(&busy).await.unwrap();
    let doc = |tenant: &str, i: usize, deleted: Option<DateTime<Utc>>| Document {
        tenant_id: tid(tenant),
        document_id: did(&format!("doc-{i:02}")),
        owner_id: cedargate::ids::UserId::parse("alice").unwrap(),
        visibility: cedargate::model::Visibility::Public,
        classification: Default::default(),
        file_type: "pdf".into(),
        size_bytes: 1000,
        shared_with: Vec::new(),
        deleted_at: deleted,
    };
    for i in 0..30 {
        store.put_document(&doc("gone", i, None)).await.unwrap();
    }
    for i in 0..12 {
        store
            .put_document(&doc("busy", i, Some(now - Duration::days(40))))
            .await
            .unwrap();
    }
    for i in 12..15 {
        store.put_document(&doc("busy", i, None)).await.unwrap();
    }
    // Usage as the API would have counted it: live documents only.
    for (tenant, n) in [("gone", 30), ("busy", 3)] {
        store
            .add_usage(
                &tid(tenant),
                &store::UsageDelta {
                    documents: n,
                    storage_bytes: n * 1000,
                    queries: 0,
                    month: String::new(),
                },
            )
            .await
            .unwrap();
    }
}

/// The tenants' records without the times a run stamps.
async fn end_state(store: &dyn Store) -> Value {
    let mut out = Vec::new();
    for t in ["gone", "busy"] {
        let mut tenant = store.get_tenant(&tid(t)).await.unwrap().unwrap();
        let purged = tenant.purged_at.take().is_some();
        let (docs, _) = store.documents_of(&tid(t), None, 1000).await.unwrap();
        let ids: Vec<_> = docs.iter().map(|d| d.document_id.to_string()).collect();
        out.push(json!({ "tenant": tenant, "purged": purged, "documents": ids }));
    }
    json!(out)
}

/// Runs interrupted after `cut` deletions, then again to the end; returns
/// the end state and the reports.
async fn interrupted(url: &StoreUrl, now: DateTime<Utc>, cut: i64) -> (Value, Vec<Report>) {
    let clock = ManualClock::new(now);
    let archives = tempfile::tempdir().unwrap();
    // Archives sealed with local tenant keys: an interrupted purge must
    // find and keep its sealed archive too.
    let mut config = RetentionConfig::new(archives.path().join("a"));
    config.encryption = cedargate::retention::Encryption::Local {
        key_dir: archives.path().join("keys"),
    };
    let inner = store::open(url).await.unwrap();
    seed(inner.as_ref(), now).await;
    let flaky = FlakyStore::wrap(inner.clone());
    flaky.deletes_left.store(cut, Ordering::SeqCst);
    let spool = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    {
        // The first run loses its store part-way; its records wait in the
        // spool and reach the store with the next run's.
        let (job, _tasks) = job(flaky.clone(), clock.clone(), &config, spool.path()).await;
        let r = job
            .run(&Options {
                dry_run: false,
                tenant: None,
            })
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("listing should not fail: {e}"),
        };
        assert!(
            !r.failures.is_empty(),
            "the cut should interrupt it: {:?}",
            r.steps
        );
        reports.push(r);
        drop(job);
    }
    flaky.down.store(false, Ordering::SeqCst);
    flaky.deletes_left.store(-1, Ordering::SeqCst);
    let r = run(inner.clone(), &clock, &config, false).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    reports.push(r);
    let r = run(inner.clone(), &clock, &config, false).await;
    assert_eq!(
        (r.documents_purged, r.tenants_purged),
        (0, 0),
        "{:?}",
        r.steps
    );
    let state = end_state(inner.as_ref()).await;
    // The archive holds all 30 documents, whichever run wrote it.
    let archive = reports
        .iter()
        .flat_map(|r| r.steps.iter())
        .find_map(|s| match s {
            Step::ArchiveTenant { path, .. } => Some(path.clone()),
            _ => None,
        })
        .expect("an archive");
    let keys = cedargate::keys::LocalKeys::new(archives.path().join("keys"));
    let plain = cedargate::keys::decrypt_file(&keys, &archive, Some("gone"))
        .await
        .unwrap();
    let got = cedargate::export::read(std::str::from_utf8(&plain).unwrap()).unwrap();
    assert_eq!(got.data.documents.len(), 30);
    (state, reports)
}

async fn interruption(url_of: impl Fn(&str) -> StoreUrl) {
    // Uninterrupted, for reference; then cut at several points.
    let now = Utc::now();
    let (reference, reports) = uninterrupted(&url_of("ref"), now).await;
    assert_eq!(reports[0].documents_purged, 12);
    assert_eq!(reports[0].tenants_purged, 1);
    for (i, cut) in [0, 5, 20].into_iter().enumerate() {
        let (state, reports) = interrupted(&url_of(&format!("cut{i}")), now, cut).await;
        assert_eq!(state, reference, "cut after {cut} deletions");
        // Each document purge is counted once across the runs.
        let purged: u64 = reports.iter().map(|r| r.documents_purged).sum();
        assert_eq!(purged, 12, "cut after {cut}");
        let tenants: u64 = reports.iter().map(|r| r.tenants_purged).sum();
        assert_eq!(tenants, 1, "cut after {cut}");
        let documents: u64 = reports.iter().map(|r| r.tenant_documents_deleted).sum();
        assert_eq!(documents, 30, "cut after {cut}");
        // Cut inside the tenant purge (the 12 expired documents come
        // first): the archive of the first run is kept, not rewritten from
        // what was left.
        let reused = reports[1]
            .steps
            .iter()
            .any(|s| matches!(s, Step::ArchiveTenant { reused: true, .. }));
        assert_eq!(reused, cut > 12, "cut after {cut}: {:?}", reports[1].steps);
    }
    let busy = reference[1]["tenant"]["usage"].clone();
    assert_eq!(busy["documents"], 3, "{busy}");
    assert_eq!(reference[0]["tenant"]["usage"]["documents"], 0);
    assert_eq!(reference[0]["purged"], true);
    assert_eq!(reference[0]["documents"], json!([]));
    assert_eq!(reference[1]["documents"].as_array().unwrap().len(), 3);
}

async fn uninterrupted(url: &StoreUrl, now: DateTime<Utc>) -> (Value, Vec<Report>) {
    let clock = ManualClock::new(now);
    let archives = tempfile::tempdir().unwrap();
    let config = RetentionConfig::new(archives.path().to_path_buf());
    let s = store::open(url).await.unwrap();
    seed(s.as_ref(), now).await;
    let r = run(s.clone(), &clock, &config, false).await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    (end_state(s.as_ref()).await, vec![r])
}

#[tokio::test]
async fn an_interrupted_run_converges_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    interruption(|name| StoreUrl::Sqlite(root.join(format!("{name}.db")))).await;
}

#[tokio::test]
async fn an_interrupted_run_converges_on_dynamodb() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    interruption(|name| ddb.url(&format!("{name}-"))).await;
}

/// Audit records outlive their tenant's data but not their own expiry:
/// the job deletes expired ones on SQLite (DynamoDB's TTL does it there).
#[tokio::test]
async fn expired_audit_records_go_on_sqlite_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    let s = store::open(&url).await.unwrap();
    let old = AuditEvent::new(
        "old",
        Utc::now() - Duration::days(8 * 366),
        "t1",
        "Read",
        "CedarGate::Document::\"d\"",
        json!({}),
    );
    let fresh = AuditEvent::new(
        "fresh",
        Utc::now() - Duration::days(6 * 366),
        "t1",
        "Read",
        "CedarGate::Document::\"d\"",
        json!({}),
    );
    s.put_audit(&[old, fresh]).await.unwrap();
    let clock = ManualClock::new(Utc::now());
    let config = RetentionConfig::new(dir.path().join("archives"));
    let report = run(s.clone(), &clock, &config, true).await;
    assert_eq!(report.audit_expired, 0, "a dry run");
    assert_eq!(audit_of(s.as_ref(), "t1").await.len(), 2);
    let report = run(s.clone(), &clock, &config, false).await;
    assert_eq!(report.audit_expired, 1, "{:?}", report.steps);
    let left: Vec<_> = audit_of(s.as_ref(), "t1")
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert!(left.contains(&"fresh".to_string()), "{left:?}");
    assert!(!left.contains(&"old".to_string()), "{left:?}");
    let platform = audit_of(s.as_ref(), "_platform").await;
    assert!(platform.iter().any(|e| e.action == "ExpireAudit"));
}
