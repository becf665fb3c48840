//! The management API over HTTP, on SQLite and DynamoDB Local: the tenant
//! lifecycle, who may manage what (decided by the policies), optimistic
//! concurrency, audit logs, and the OpenAPI document.

use std::collections::HashSet;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::*;
use cedargate::store::{self, StoreUrl};

/// Tokens of a platform administrator, t1's administrator and a t1 viewer.
struct People {
    platform: String,
    t1_admin: String,
    t1_viewer: String,
}

fn people(keys: &Keys) -> People {
    People {
        platform: keys.token("pam", "plat", &["platform-admin"], |_| {}),
        t1_admin: keys.token("ada", "t1", &["admin"], |_| {}),
        t1_viewer: keys.token("vic", "t1", &["viewer"], |_| {}),
    }
}

fn new_tenant(id: &str) -> Value {
    json!({
        "tenantId": id,
        "name": "Globex",
        "status": "trial",
        "subscription": {"tier": "pro", "startDate": "2026-11-01", "features": ["audit-logs"]},
        "limits": {"maxDocuments": 100, "maxUsers": 10, "maxStorageGB": 5, "maxQueriesPerMonth": 1000},
        "settings": {"dataRetentionDays": 90, "allowedFileTypes": ["pdf"]}
    })
}

/// Create, read, update with If-Match, deactivate, list, usage and audit
/// logs, as a platform administrator.
async fn lifecycle(app: &TestApp, p: &People) {
    let created = call(
        app,
        &p.platform,
        Method::POST,
        "/v1/tenants",
        &[],
        Some(&new_tenant("globex")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers["location"], "/v1/tenants/globex");
    assert_eq!(created.json()["usage"]["documents"], 0);
    let again = call(
        app,
        &p.platform,
        Method::POST,
        "/v1/tenants",
        &[],
        Some(&new_tenant("globex")),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    let read = call(
        app,
        &p.platform,
        Method::GET,
        "/v1/tenants/globex",
        &[],
        None,
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(etag(&read), etag(&created));
    let v1 = etag(&read);

    let mut changed = new_tenant("globex");
    changed["name"] = "Globex Corporation".into();
    changed["status"] = "active".into();
    let no_match = call(
        app,
        &p.platform,
        Method::PUT,
        "/v1/tenants/globex",
        &[],
        Some(&changed),
    )
    .await;
    assert_eq!(
        no_match.status,
        StatusCode::PRECONDITION_REQUIRED,
        "{}",
        no_match.body
    );
    let updated = call(
        app,
        &p.platform,
        Method::PUT,
        "/v1/tenants/globex",
        &[("if-match", &v1)],
        Some(&changed),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.json()["name"], "Globex Corporation");
    assert_eq!(updated.json()["createdAt"], created.json()["createdAt"]);
    assert_ne!(etag(&updated), v1);
    // A write based on the old version loses.
    changed["name"] = "Stale".into();
    let stale = call(
        app,
        &p.platform,
        Method::PUT,
        "/v1/tenants/globex",
        &[("if-match", &v1)],
        Some(&changed),
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );

    let usage = call(
        app,
        &p.platform,
        Method::GET,
        "/v1/tenants/globex/usage",
        &[],
        None,
    )
    .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    assert_eq!(usage.json()["remaining"]["documents"], 100);

    let gone = call(
        app,
        &p.platform,
        Method::DELETE,
        "/v1/tenants/globex",
        &[],
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    assert_eq!(gone.json()["status"], "cancelled");
    // Kept, and deactivating again changes nothing.
    let again = call(
        app,
        &p.platform,
        Method::DELETE,
        "/v1/tenants/globex",
        &[],
        None,
    )
    .await;
    assert_eq!(etag(&again), etag(&gone));
    let missing = call(
        app,
        &p.platform,
        Method::GET,
        "/v1/tenants/never-was",
        &[],
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);

    // Listing pages through every tenant once.
    let mut seen = Vec::new();
    let mut path = "/v1/tenants?limit=3".to_string();
    loop {
        let page = call(app, &p.platform, Method::GET, &path, &[], None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let body = page.json();
        let tenants = body["tenants"].as_array().unwrap();
        assert!(tenants.len() <= 3);
        seen.extend(
            tenants
                .iter()
                .map(|t| t["tenantId"].as_str().unwrap().to_string()),
        );
        match body["next"].as_str() {
            Some(c) => path = format!("/v1/tenants?limit=3&cursor={c}"),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{seen:?}");
    assert!(seen.contains(&"globex".to_string()) && seen.contains(&"t1".to_string()));
    assert_eq!(seen.len(), fixture().tenants.len() + 1);
}

/// The management records of the lifecycle, through the audit-log API.
async fn audit_logs_of_the_lifecycle(app: &TestApp, p: &People) {
    // The records reach the store through the spool.
    let mut actions = Vec::new();
    for _ in 0..100 {
        let r = call(
            app,
            &p.platform,
            Method::GET,
            "/v1/tenants/globex/audit-logs?limit=2",
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let body = r.json();
        // A full first page without a cursor: only two records have been
        // drained so far; read again.
        if let (2, Some(next)) = (
            body["events"].as_array().unwrap().len(),
            body["next"].as_str(),
        ) {
            let mut path = format!("/v1/tenants/globex/audit-logs?limit=2&cursor={next}");
            actions = body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["action"].as_str().unwrap().to_string())
                .collect();
            loop {
                let r = call(app, &p.platform, Method::GET, &path, &[], None).await;
                let b = r.json();
                actions.extend(
                    b["events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["action"].as_str().unwrap().to_string()),
                );
                match b["next"].as_str() {
                    Some(c) => path = format!("/v1/tenants/globex/audit-logs?limit=2&cursor={c}"),
                    None => break,
                }
            }
            if actions.len() >= 7 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Newest first: two deactivations, a failed and a good update, the
    // update without If-Match, a refused second create, the create.
    assert_eq!(
        actions,
        [
            "DeactivateTenant",
            "DeactivateTenant",
            "UpdateTenant",
            "UpdateTenant",
            "UpdateTenant",
            "CreateTenant",
            "CreateTenant"
        ],
    );
    let failed = call(
        app,
        &p.platform,
        Method::GET,
        "/v1/tenants/globex/audit-logs?action=UpdateTenant&format=ocsf",
        &[],
        None,
    )
    .await;
    let events = failed.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["class_uid"] == 3004));
    assert_eq!(
        events.iter().filter(|e| e["status_id"] == 2).count(),
        2,
        "{events:?}"
    );
    let bad = call(
        app,
        &p.platform,
        Method::GET,
        "/v1/tenants/globex/audit-logs?decision=maybe",
        &[],
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// A tenant administrator manages their own tenant only; the answer for
/// another tenant is the same whether it exists or not.
async fn who_may_manage_what(app: &TestApp, p: &People) {
    let own = call(app, &p.t1_admin, Method::GET, "/v1/tenants/t1", &[], None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    let other = call(app, &p.t1_admin, Method::GET, "/v1/tenants/t2", &[], None).await;
    let nowhere = call(
        app,
        &p.t1_admin,
        Method::GET,
        "/v1/tenants/no-such-tenant",
        &[],
        None,
    )
    .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(
        (other.status, other.body.clone()),
        (nowhere.status, nowhere.body.clone())
    );
    let put_other = call(
        app,
        &p.t1_admin,
        Method::PUT,
        "/v1/tenants/t2",
        &[("if-match", "\"x\"")],
        Some(&new_tenant("t2")),
    )
    .await;
    assert_eq!(
        put_other.status,
        StatusCode::FORBIDDEN,
        "{}",
        put_other.body
    );
    let create = call(
        app,
        &p.t1_admin,
        Method::POST,
        "/v1/tenants",
        &[],
        Some(&new_tenant("mine")),
    )
    .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN, "{}", create.body);
    let list = call(app, &p.t1_admin, Method::GET, "/v1/tenants", &[], None).await;
    assert_eq!(list.status, StatusCode::FORBIDDEN);
    let viewer = call(app, &p.t1_viewer, Method::GET, "/v1/tenants/t1", &[], None).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    // t1 has the audit-logs feature; its admin may read its logs.
    let logs = call(
        app,
        &p.t1_admin,
        Method::GET,
        "/v1/tenants/t1/audit-logs",
        &[],
        None,
    )
    .await;
    assert_eq!(logs.status, StatusCode::OK, "{}", logs.body);
    let no_token = app.get("/v1/tenants/t1").await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    assert!(no_token.headers.contains_key("www-authenticate"));
}

/// Ten writers read the same version; exactly one wins.
async fn concurrent_updates(app: &TestApp, p: &People) {
    let read = call(app, &p.t1_admin, Method::GET, "/v1/tenants/t1", &[], None).await;
    let v = etag(&read);
    let base = read.json();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut body = base.clone();
        body["name"] = format!("Writer {i}").into();
        let (addr, token, v) = (app.addr, p.t1_admin.clone(), v.clone());
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            cedargate::sidecar::client::send_with(
                addr,
                Method::PUT,
                "/v1/tenants/t1",
                &[("authorization", &auth), ("if-match", &v)],
                body.to_string(),
            )
            .await
            .unwrap()
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
            .count(),
        9,
        "{statuses:?}"
    );
}

/// Bad input: a clear 4xx, never a 5xx.
async fn bad_input(app: &TestApp, p: &People) {
    let cases: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::POST, "/v1/tenants", Some(json!({"tenantId": "x"}))),
        (Method::POST, "/v1/tenants", Some(json!([1, 2]))),
        (
            Method::POST,
            "/v1/tenants",
            Some({
                let mut t = new_tenant("_sys");
                t["name"] = "x".into();
                t
            }),
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some({
                let mut t = new_tenant("ok-id");
                t["settings"]["allowedFileTypes"] = json!(["exe"]);
                t
            }),
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some({
                let mut t = new_tenant("ok-id");
                t["limits"]["maxUsers"] = json!(-1);
                t
            }),
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some({
                let mut t = new_tenant("ok-id");
                t["status"] = json!("paused");
                t
            }),
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some({
                let mut t = new_tenant("ok-id");
                t["extra"] = json!(1);
                t
            }),
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some({
                let mut t = new_tenant("ok-id");
                t["name"] = json!("");
                t
            }),
        ),
        (Method::GET, "/v1/tenants/bad%20id", None),
        (Method::GET, "/v1/tenants?limit=0", None),
        (Method::GET, "/v1/tenants?cursor=zz", None),
        (
            Method::GET,
            "/v1/tenants/t1/audit-logs?from=yesterday",
            None,
        ),
        (Method::GET, "/v1/tenants/t1/audit-logs?cursor=abc", None),
        (Method::PATCH, "/v1/tenants/t1", None),
        (Method::GET, "/v1/tenants/t1/nothing", None),
    ];
    for (method, path, body) in cases {
        let r = call(app, &p.platform, method.clone(), path, &[], body.as_ref()).await;
        assert!(
            r.status.is_client_error(),
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
        if r.status != StatusCode::METHOD_NOT_ALLOWED {
            assert!(
                r.json()["error"]["code"].is_string(),
                "{method} {path}: {}",
                r.body
            );
        }
    }
    let not_json = app
        .send_with(
            Method::POST,
            "/v1/tenants",
            &[("authorization", &format!("Bearer {}", p.platform))],
            "{nope",
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let updated_id = call(
        app,
        &p.platform,
        Method::PUT,
        "/v1/tenants/t2",
        &[("if-match", "\"x\"")],
        Some(&new_tenant("t3")),
    )
    .await;
    assert_eq!(
        updated_id.status,
        StatusCode::BAD_REQUEST,
        "{}",
        updated_id.body
    );
}

async fn the_whole_api(app: &TestApp, keys: &Keys) {
    let p = people(keys);
    lifecycle(app, &p).await;
    who_may_manage_what(app, &p).await;
    concurrent_updates(app, &p).await;
    bad_input(app, &p).await;
    audit_logs_of_the_lifecycle(app, &p).await;
}

#[tokio::test]
async fn the_management_api_on_sqlite() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    the_whole_api(&app, &keys).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_management_api_on_dynamodb() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("admin-").await;
    let (app, keys) = spawn_admin_app(|s| s.store = url.clone()).await;
    the_whole_api(&app, &keys).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let (app, _) = spawn_admin_app(|_| {}).await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/tenants", &["get", "post"][..]),
        ("/v1/tenants/{id}", &["get", "put", "delete"]),
        ("/v1/tenants/{id}/usage", &["get"]),
        ("/v1/tenants/{id}/audit-logs", &["get"]),
        ("/v1/tenants/{id}/export", &["post"]),
        ("/v1/tenants/{id}/access-check", &["post"]),
        ("/v1/tenants/{id}/policies", &["get"]),
        ("/v1/policy-templates", &["get"]),
        (
            "/v1/tenants/{id}/policies/{policyId}",
            &["get", "put", "delete"],
        ),
        (
            "/v1/tenants/{id}/documents/{docId}",
            &["get", "put", "delete"],
        ),
        ("/v1/tenants/{id}/documents/{docId}/restore", &["post"]),
        ("/v1/tenants/{id}/documents/{docId}/shares", &["post"]),
        (
            "/v1/tenants/{id}/documents/{docId}/shares/{grantee}",
            &["delete"],
        ),
        ("/v1/search/changes", &["get"]),
        ("/v1/billing/stripe/webhook", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/openapi.json", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} is not documented");
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn document_acls_are_managed_here_and_enforced_by_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    document_acls(&url).await;
}

#[tokio::test]
async fn document_acls_on_dynamodb() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("docs-").await;
    document_acls(&url).await;
}

/// Document ACLs through the API, enforced by a sidecar on the same store.
async fn document_acls(url: &StoreUrl) {
    let url = url.clone();
    let (admin, keys) = spawn_admin_app(|s| s.store = url.clone()).await;
    let sidecar = spawn_app_with(|s| s.store = url.clone()).await;
    let editor = keys.token("ed", "t1", &["editor"], |_| {});
    let viewer = keys.token("vic", "t1", &["viewer"], |_| {});
    let t2_admin = keys.token("tia", "t2", &["admin"], |_| {});
    let doc =
        json!({"visibility": "shared", "classification": 1, "fileType": "pdf", "sizeBytes": 1000});
    let vic_reads = || async {
        let body = json!({
            "principal": {"id": "vic", "tenant": "t1", "roles": ["viewer"], "clearance": 1},
            "action": "Read",
            "resource": {"type": "Document", "id": "new-doc"}
        });
        sidecar.post("/v1/authorize", &body).await.json()["decision"].clone()
    };
    // Waits (at most 5 s) until the sidecar gives `want`.
    let sidecar_says = |want: &'static str| async move {
        for _ in 0..100 {
            if vic_reads().await == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the sidecar never said {want}");
    };

    let created = call(
        &admin,
        &editor,
        Method::PUT,
        "/v1/tenants/t1/documents/new-doc",
        &[],
        Some(&doc),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json()["ownerId"], "ed");
    let usage = call(
        &admin,
        &keys.token("ada", "t1", &["admin"], |_| {}),
        Method::GET,
        "/v1/tenants/t1/usage",
        &[],
        None,
    )
    .await;
    assert_eq!(usage.json()["usage"]["documents"], 10, "{}", usage.body);
    // 1,000 bytes: storage rounds up to 1 GB.
    assert_eq!(usage.json()["usage"]["storageGB"], 1, "{}", usage.body);
    // The quota (10 documents) now refuses another registration.
    let over = call(
        &admin,
        &editor,
        Method::PUT,
        "/v1/tenants/t1/documents/one-more",
        &[],
        Some(&doc),
    )
    .await;
    assert_eq!(over.status, StatusCode::FORBIDDEN, "{}", over.body);
    assert!(over.body.contains("quota"), "{}", over.body);

    assert_eq!(
        call(
            &admin,
            &viewer,
            Method::GET,
            "/v1/tenants/t1/documents/new-doc",
            &[],
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    sidecar_says("Deny").await;
    let shared = call(
        &admin,
        &editor,
        Method::POST,
        "/v1/tenants/t1/documents/new-doc/shares",
        &[],
        Some(&json!({"role": "viewer", "permission": "read"})),
    )
    .await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.body);
    assert_eq!(
        call(
            &admin,
            &viewer,
            Method::GET,
            "/v1/tenants/t1/documents/new-doc",
            &[],
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    sidecar_says("Allow").await;
    let unshared = call(
        &admin,
        &editor,
        Method::DELETE,
        "/v1/tenants/t1/documents/new-doc/shares/role:viewer",
        &[],
        None,
    )
    .await;
    assert_eq!(unshared.status, StatusCode::OK, "{}", unshared.body);
    assert_eq!(unshared.json()["sharedWith"], json!([]));
    sidecar_says("Deny").await;

    // Soft delete: gone for every decision, counted out, restorable.
    let shared = call(
        &admin,
        &editor,
        Method::POST,
        "/v1/tenants/t1/documents/new-doc/shares",
        &[],
        Some(&json!({"userId": "vic", "permission": "read"})),
    )
    .await;
    assert_eq!(shared.status, StatusCode::OK);
    sidecar_says("Allow").await;
    let owner_admin = keys.token("ada", "t1", &["admin"], |_| {});
    let deleted = call(
        &admin,
        &owner_admin,
        Method::DELETE,
        "/v1/tenants/t1/documents/new-doc",
        &[],
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(deleted.json()["deletedAt"].is_string());
    sidecar_says("Deny").await;
    let usage = call(
        &admin,
        &owner_admin,
        Method::GET,
        "/v1/tenants/t1/usage",
        &[],
        None,
    )
    .await;
    assert_eq!(usage.json()["usage"]["documents"], 9);
    assert_eq!(usage.json()["usage"]["storageGB"], 0);
    let restored = call(
        &admin,
        &owner_admin,
        Method::POST,
        "/v1/tenants/t1/documents/new-doc/restore",
        &[],
        None,
    )
    .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.body);
    sidecar_says("Allow").await;
    let usage = call(
        &admin,
        &owner_admin,
        Method::GET,
        "/v1/tenants/t1/usage",
        &[],
        None,
    )
    .await;
    assert_eq!(usage.json()["usage"]["documents"], 10);

    // An editor who may update a public document may not take it over or
    // share it through an update.
    let public = json!({"visibility": "public", "fileType": "pdf", "sizeBytes": 10});
    let r = call(
        &admin,
        &owner_admin,
        Method::PUT,
        "/v1/tenants/t1/documents/new-doc",
        &[],
        Some(&public),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let other_editor = keys.token("eve", "t1", &["editor"], |_| {});
    let mut take = public.clone();
    take["ownerId"] = "eve".into();
    let r = call(
        &admin,
        &other_editor,
        Method::PUT,
        "/v1/tenants/t1/documents/new-doc",
        &[],
        Some(&take),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let mut grant = public.clone();
    grant["sharedWith"] = json!([{"userId": "eve", "permission": "edit"}]);
    let r = call(
        &admin,
        &other_editor,
        Method::PUT,
        "/v1/tenants/t1/documents/new-doc",
        &[],
        Some(&grant),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let mut retitle = public.clone();
    retitle["classification"] = 1.into();
    let r = call(
        &admin,
        &other_editor,
        Method::PUT,
        "/v1/tenants/t1/documents/new-doc",
        &[],
        Some(&retitle),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a plain update is allowed: {}",
        r.body
    );

    // Another tenant's document path reads like a missing document.
    let cross = call(
        &admin,
        &t2_admin,
        Method::GET,
        "/v1/tenants/t1/documents/new-doc",
        &[],
        None,
    )
    .await;
    let missing = call(
        &admin,
        &t2_admin,
        Method::GET,
        "/v1/tenants/t2/documents/never-was",
        &[],
        None,
    )
    .await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
    assert_eq!((cross.status, cross.body), (missing.status, missing.body));
    // A file type the tenant does not allow.
    let exe = json!({"visibility": "public", "fileType": "exe", "sizeBytes": 1});
    let r = call(
        &admin,
        &t2_admin,
        Method::PUT,
        "/v1/tenants/t2/documents/tool",
        &[],
        Some(&exe),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let bad = call(
        &admin,
        &editor,
        Method::DELETE,
        "/v1/tenants/t1/documents/new-doc/shares/nobody",
        &[],
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    admin.shutdown().await;
    sidecar.shutdown().await;
}

/// An export of a tenant, imported into an empty store, gives the same
/// decisions; an altered export is refused whole.
#[tokio::test]
async fn an_export_imported_elsewhere_decides_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    let (admin, keys) = spawn_admin_app(|s| s.store = url.clone()).await;
    let t1_admin = keys.token("ada", "t1", &["admin"], |_| {});
    let doc = json!({"visibility": "shared", "fileType": "pdf", "sharedWith": [{"role": "viewer", "permission": "read"}]});
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        "/v1/tenants/t1/documents/exported",
        &[],
        Some(&doc),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Wait for the management record to reach the store.
    for _ in 0..100 {
        let logs = call(
            &admin,
            &t1_admin,
            Method::GET,
            "/v1/tenants/t1/audit-logs",
            &[],
            None,
        )
        .await;
        if !logs.json()["events"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let t2_admin = keys.token("tia", "t2", &["admin"], |_| {});
    let refused = call(
        &admin,
        &t2_admin,
        Method::POST,
        "/v1/tenants/t2/export",
        &[],
        None,
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "t2 has no export feature: {}",
        refused.body
    );
    let export = call(
        &admin,
        &t1_admin,
        Method::POST,
        "/v1/tenants/t1/export",
        &[],
        None,
    )
    .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.body);
    assert_eq!(export.headers["content-type"], "application/x-ndjson");
    let got = cedargate::export::read(&export.body).expect("a complete export");
    assert_eq!(got.data.tenants.len(), 1);
    assert_eq!(
        got.data.documents.len(),
        6,
        "five fixture documents and the new one"
    );
    assert!(!got.audit.is_empty());
    admin.shutdown().await;

    let file = dir.path().join("t1.ndjson");
    std::fs::write(&file, &export.body).unwrap();
    let fresh = StoreUrl::Sqlite(dir.path().join("fresh.db"));
    let fresh_arg = format!("sqlite:{}", dir.path().join("fresh.db").display());
    // Altered: refused, nothing written.
    let altered = dir.path().join("altered.ndjson");
    std::fs::write(
        &altered,
        export.body.replacen("\"shared\"", "\"public\"", 1),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["import", "--store", &fresh_arg])
        .arg(&altered)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["import", "--store", &fresh_arg])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let fresh_store = store::open(&fresh).await.unwrap();
    let q = store::AuditQuery::new(
        cedargate::ids::TenantId::parse("t1").unwrap(),
        chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        chrono::Utc::now() + chrono::Duration::hours(1),
        100,
    );
    let records = fresh_store.all_audit_events(&q).await.unwrap();
    assert!(records.len() >= got.audit.len());
    assert!(cedargate::audit::verify(&records).is_empty());

    let before = spawn_app_with(|s| s.store = url.clone()).await;
    let after = spawn_app_with(|s| s.store = fresh.clone()).await;
    let users: [(&str, &[&str], u8); 5] = [
        ("alice", &["editor"], 1),
        ("bob", &["viewer"], 0),
        ("vic", &["viewer"], 1),
        ("ada", &["admin"], 3),
        ("zed", &[], 0),
    ];
    let docs = [
        "d-priv",
        "d-shared",
        "d-public",
        "d-secret",
        "d-deleted",
        "exported",
        "nope",
    ];
    let mut compared = 0;
    for (user, roles, clearance) in users {
        let principal = json!({"id": user, "tenant": "t1", "roles": roles, "clearance": clearance});
        let mut bodies = Vec::new();
        for action in ["Read", "Update", "Delete", "Share", "Restore"] {
            for d in docs {
                bodies.push(json!({"principal": principal, "action": action, "resource": {"type": "Document", "id": d}}));
            }
        }
        for action in ["Search", "ViewUsage", "Export", "ManageTenant"] {
            bodies.push(json!({"principal": principal, "action": action, "resource": {"type": "Tenant", "id": "t1"}}));
        }
        bodies.push(json!({"principal": principal, "action": "CreateDocument", "resource": {"type": "Tenant", "id": "t1"}, "context": {"fileType": "pdf", "sizeBytes": 10}}));
        for b in bodies {
            let x = before.post("/v1/authorize", &b).await.json();
            let y = after.post("/v1/authorize", &b).await.json();
            assert_eq!(
                (&x["decision"], &x["determining_policies"]),
                (&y["decision"], &y["determining_policies"]),
                "{b}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 5 * (5 * 7 + 5));
    before.shutdown().await;
    after.shutdown().await;
}

/// Concurrent edits of one document (each a read, an edit and a
/// conditional write) all take effect: none is lost to another.
async fn concurrent_shares(url: &StoreUrl) {
    let url = url.clone();
    let (app, keys) = spawn_admin_app(|s| s.store = url.clone()).await;
    let ada = keys.token("ada", "t1", &["admin"], |_| {});
    let app = std::sync::Arc::new(app);
    let before = call(
        &app,
        &ada,
        Method::GET,
        "/v1/tenants/t1/documents/d-shared",
        &[],
        None,
    )
    .await;
    let existing = before.json()["sharedWith"].as_array().unwrap().len();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let app = app.clone();
            let ada = ada.clone();
            tokio::spawn(async move {
                let grant = json!({"userId": format!("u{i}"), "permission": "read"});
                call(
                    &app,
                    &ada,
                    Method::POST,
                    "/v1/tenants/t1/documents/d-shared/shares",
                    &[],
                    Some(&grant),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let after = call(
        &app,
        &ada,
        Method::GET,
        "/v1/tenants/t1/documents/d-shared",
        &[],
        None,
    )
    .await;
    let users: HashSet<String> = after.json()["sharedWith"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["userId"].as_str().map(str::to_string))
        .collect();
    for i in 0..12 {
        assert!(
            users.contains(&format!("u{i}")),
            "share u{i} was lost: {}",
            after.body
        );
    }
    assert_eq!(
        after.json()["sharedWith"].as_array().unwrap().len(),
        existing + 12
    );
    match std::sync::Arc::try_unwrap(app) {
        Ok(app) => app.shutdown().await,
        Err(_) => panic!("the app is still shared"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shares_are_all_kept_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    concurrent_shares(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shares_are_all_kept_on_dynamodb() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("conc-").await;
    concurrent_shares(&url).await;
}

/// A filter that matches little on a slow store: the request stops reading
/// once its time budget is spent and answers with what it found and a
/// cursor; following the cursors meets every match.
#[tokio::test]
async fn filtered_audit_reads_stop_at_their_budget_and_continue_by_cursor() {
    use cedargate::audit::{AuditEvent, Chains, Undo};
    let (app, keys, flaky) = spawn_flaky_admin_app().await;
    let p = people(&keys);
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    let mut chain = Chains::new("bulk");
    // Five of 5,000 are zed's. Without the filter indexes a store page
    // reads a bounded number of records, fewer than all of them.
    let events: Vec<AuditEvent> = (0..5000)
        .map(|i| {
            let mut e = AuditEvent::new(
                format!("bulk-{i:04}"),
                start + chrono::Duration::seconds(i),
                "globex",
                "Read",
                "CedarGate::Document::\"d\"",
                json!({"decision": "Allow"}),
            );
            e.user_id = Some(if i % 1000 == 500 { "zed" } else { "amy" }.into());
            chain.stamp(&mut e, &mut Undo::default());
            e
        })
        .collect();
    app.store.put_audit(&events).await.unwrap();
    let expected = [
        "bulk-4500",
        "bulk-3500",
        "bulk-2500",
        "bulk-1500",
        "bulk-0500",
    ];
    let from =
        (start - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to =
        (start + chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!("/v1/tenants/globex/audit-logs?user=zed&limit=10&from={from}&to={to}");

    // Each store page takes longer than the budget: one page read, what
    // it found (newest first) and a cursor.
    flaky
        .audit_delay_ms
        .store(400, std::sync::atomic::Ordering::SeqCst);
    let before = flaky.audit_reads.load(std::sync::atomic::Ordering::SeqCst);
    let r = call(&app, &p.platform, Method::GET, &path, &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let reads = flaky.audit_reads.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(reads, 1, "store pages read within the budget");
    let mut found: Vec<String> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect();
    assert!(found.len() < expected.len(), "{found:?}");
    assert_eq!(found, expected[..found.len()]);
    let mut next = r.json()["next"].as_str().expect("a cursor").to_string();

    // A fast store again: the cursors lead to the rest, newest first.
    flaky
        .audit_delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    loop {
        let r = call(
            &app,
            &p.platform,
            Method::GET,
            &format!("{path}&cursor={next}"),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        for e in r.json()["events"].as_array().unwrap() {
            found.push(e["eventId"].as_str().unwrap().to_string());
        }
        match r.json()["next"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    assert_eq!(found, expected);
    app.shutdown().await;
}

/// `GET /v1/tenants/{id}/documents`: every page once, live by default,
/// deleted ones with when they are purged; another tenant's listing reads
/// like a missing tenant's.
#[tokio::test]
async fn the_document_listing() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    let p = people(&keys);
    let ids = |deleted: Option<bool>| -> Vec<String> {
        let mut ids: Vec<String> = fixture()
            .documents
            .iter()
            .filter(|d| d.tenant_id.as_str() == "t1")
            .filter(|d| deleted.is_none_or(|x| d.deleted_at.is_some() == x))
            .map(|d| d.document_id.to_string())
            .collect();
        ids.sort();
        ids
    };
    let pages = |query: &'static str, token: String| {
        let app = &app;
        async move {
            let mut seen = Vec::new();
            let mut path = format!("/v1/tenants/t1/documents?limit=2{query}");
            for _ in 0..100 {
                let r = call(app, &token, Method::GET, &path, &[], None).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                let body = r.json();
                seen.extend(body["documents"].as_array().unwrap().iter().cloned());
                match body["next"].as_str() {
                    Some(c) => path = format!("/v1/tenants/t1/documents?limit=2{query}&cursor={c}"),
                    None => return seen,
                }
            }
            panic!("the cursors never end");
        }
    };
    let id_list = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .map(|d| d["documentId"].as_str().unwrap().to_string())
            .collect()
    };
    let live = pages("", p.t1_admin.clone()).await;
    assert_eq!(id_list(&live), ids(Some(false)));
    assert!(live.iter().all(|d| d.get("purgeAfter").is_none()));
    let deleted = pages("&deleted=only", p.t1_admin.clone()).await;
    assert_eq!(id_list(&deleted), ids(Some(true)));
    assert!(!deleted.is_empty());
    assert!(
        deleted.iter().all(|d| d["purgeAfter"].is_string()),
        "{deleted:?}"
    );
    let all = pages("&deleted=include", p.platform.clone()).await;
    assert_eq!(id_list(&all), ids(None));

    // Refusals: a viewer, another tenant's administrator (like a tenant
    // that does not exist), bad parameters.
    let r = call(
        &app,
        &p.t1_viewer,
        Method::GET,
        "/v1/tenants/t1/documents",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let t2_admin = keys.token("bea", "t2", &["admin"], |_| {});
    let other = call(
        &app,
        &t2_admin,
        Method::GET,
        "/v1/tenants/t1/documents",
        &[],
        None,
    )
    .await;
    let missing = call(
        &app,
        &t2_admin,
        Method::GET,
        "/v1/tenants/zz-none/documents",
        &[],
        None,
    )
    .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!((other.status, &other.body), (missing.status, &missing.body));
    for bad in ["deleted=maybe", "cursor=zz", "limit=0", "limit=1001"] {
        let r = call(
            &app,
            &p.t1_admin,
            Method::GET,
            &format!("/v1/tenants/t1/documents?{bad}"),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }
    let r = call(
        &app,
        &p.t1_admin,
        Method::POST,
        "/v1/tenants/t1/documents",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    app.shutdown().await;
}
