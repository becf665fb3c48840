//! The plan endpoint, forward-auth's search headers, the change stream for
//! re-indexers, and policy edits, over HTTP and the real servers.

use std::sync::Arc;

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::{app_over, index_for, oracle, world};
use crate::helpers::*;
use cedargate::ids::TenantId;
use cedargate::search::PlanError;
use cedargate::store::AuditQuery;

async fn plan(app: &TestApp, token: &str, body: Value) -> cedargate::sidecar::client::Reply {
    app.post_as(token, "/v1/authorize/plan", &body).await
}

fn read() -> Value {
    json!({"action": "Read", "resource_type": "Document"})
}

#[tokio::test]
async fn the_plan_endpoint_answers_audits_and_refuses_what_it_should() {
    let (app, keys) = spawn_jwt_app().await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = plan(&app, &vic, read()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let p = r.json();
    assert_eq!(p["kind"], "conditional");
    assert_eq!(p["plan_id"].as_str().unwrap().len(), 36);
    let scope = json!({"op": "eq", "attr": "tenant", "value": "t1"});
    assert!(
        p["condition"]["args"].as_array().unwrap().contains(&scope),
        "{}",
        p["condition"]
    );
    for f in ["kendra", "opensearch", "sql"] {
        assert!(p["filters"][f].is_object(), "{f}: {}", r.body);
    }
    // Only the formats asked for.
    let r = plan(
        &app,
        &vic,
        json!({"action": "Read", "resource_type": "CedarGate::Document", "formats": ["sql"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["filters"].as_object().unwrap().len(), 1);

    // A cancelled tenant's user reads nothing: no filter, the forbid named.
    let cat = keys.token("cat", "canc", &["viewer"], |_| {});
    let r = plan(&app, &cat, read()).await;
    assert_eq!(r.json()["kind"], "always_denied", "{}", r.body);
    assert_eq!(r.json()["filters"], Value::Null);
    assert_eq!(
        r.json()["determining_policies"],
        json!(["tenant-status.cancelled-export-only"])
    );
    // A tenant that does not exist: nothing either.
    let ghost = keys.token("gus", "no-such", &["admin"], |_| {});
    assert_eq!(
        plan(&app, &ghost, read()).await.json()["kind"],
        "always_denied"
    );

    // Bad requests, a missing token, a body principal in token mode.
    for (body, code) in [
        (
            json!({"action": "Search", "resource_type": "Document"}),
            "wrong_resource_type",
        ),
        (
            json!({"action": "Read", "resource_type": "Tenant"}),
            "unknown_resource_type",
        ),
        (
            json!({"action": "Nope", "resource_type": "Document"}),
            "unknown_action",
        ),
        (
            json!({"action": "Read", "resource_type": "Document", "formats": ["csv"]}),
            "invalid_request",
        ),
        (
            json!({"action": "Read", "resource_type": "Document", "context": [1]}),
            "invalid_context",
        ),
    ] {
        let r = plan(&app, &vic, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], code, "{body}: {}", r.body);
    }
    let r = app.post("/v1/authorize/plan", &read()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let mut with_principal = read();
    with_principal["principal"] = json!({"id": "root", "tenant": "t2"});
    assert_eq!(
        plan(&app, &vic, with_principal).await.status,
        StatusCode::BAD_REQUEST
    );
    let r = app.get("/v1/authorize/plan").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    // Audited like a decision, in the caller's tenant's log.
    let store = app.store.clone();
    let plan_id = plan(&app, &vic, read()).await.json()["plan_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.shutdown().await;
    let q = AuditQuery::new(
        TenantId::parse("t1").unwrap(),
        chrono::DateTime::UNIX_EPOCH,
        chrono::Utc::now() + chrono::Duration::days(1),
        1000,
    );
    let events = store.audit_events(&q).await.unwrap().events;
    let e = events
        .iter()
        .find(|e| e.event_id == plan_id)
        .expect("the plan's record");
    assert_eq!(e.action, "Read");
    assert_eq!(e.user_id.as_deref(), Some("vic"));
    assert_eq!(e.details["plan"], "conditional");
    assert_eq!(e.details["source"], "plan");
    assert!(e.details["policyRevision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
}

/// A sample of the oracle's principals through the HTTP API: the plan
/// endpoint gives the in-process plan, `/v1/authorize/batch` the same
/// decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_plans_and_decisions_are_the_in_process_ones() {
    let w = world(25).await;
    let spool = tempfile::tempdir().unwrap();
    let app = app_over(&w.url, &repo_dir("policies"), spool.path()).await;
    let server = spawn_in(
        w.url.clone(),
        |_| {},
        Arc::new(cedargate::sidecar::SidecarRoutes),
    )
    .await;
    for p in &w.principals {
        let who = json!({"id": p.id, "tenant": p.tenant, "roles": p.roles, "clearance": p.clearance.get()});
        let mut body = read();
        body["principal"] = who.clone();
        let r = server.post("/v1/authorize/plan", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let here = app
            .state
            .planner
            .plan(&app.state.engine, p, "Read", &Value::Null)
            .await
            .unwrap();
        let local =
            cedargate::search::plan_json(&here, "x", &cedargate::search::ALL_FORMATS).unwrap();
        let mut got = r.json();
        got["plan_id"] = json!("x");
        assert_eq!(got, local, "{who}");
        // The decisions of the principal's tenant's documents, 100 at a time.
        let ids: Vec<&str> = w
            .data
            .documents
            .iter()
            .filter(|d| d.tenant_id == p.tenant)
            .map(|d| d.document_id.as_str())
            .collect();
        for chunk in ids.chunks(100) {
            let requests: Vec<Value> = chunk
                .iter()
                .map(|id| json!({"principal": who, "action": "Read", "resource": {"type": "Document", "id": id}}))
                .collect();
            let r = server
                .post("/v1/authorize/batch", &json!({"requests": requests}))
                .await;
            for (id, d) in chunk.iter().zip(r.json()["results"].as_array().unwrap()) {
                let local = app
                    .state
                    .engine
                    .decide(&request(p, "Read", doc(id), Value::Null))
                    .await
                    .unwrap();
                assert_eq!(d["decision"], json!(local.decision), "{who} {id}");
            }
        }
    }
    server.shutdown().await;
}

/// Public documents become readable by viewers and up only; after the
/// reload the oracle holds again (and the edit changed what is readable).
/// An edit the translator cannot take makes plans a 422 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_edits_keep_plans_and_decisions_equal() {
    let w = world(200).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for e in std::fs::read_dir(repo_dir("policies")).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    let app = app_over(&w.url, &policies, dir.path()).await;
    let idx = index_for(&app, &w.data);
    let before = oracle(&app, &w.data, &idx, &w.principals).await;
    assert!(before.failures.is_empty(), "{}", before.report());

    let sources = cedargate::policy::PolicySources {
        policy_dir: policies.clone(),
        schema_dir: repo_dir("schemas"),
    };
    let reload = || {
        let snapshot = cedargate::policy::load(&sources).unwrap();
        app.state.engine.policies().store(Arc::new(snapshot));
    };
    let file = policies.join("visibility.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replace(
        "when { resource.visibility == \"public\" };",
        "when\n{\n  resource.visibility == \"public\" &&\n  principal in [CedarGate::Role::\"viewer\", CedarGate::Role::\"editor\", CedarGate::Role::\"admin\"]\n};",
    );
    assert_ne!(edited, text, "the public-read permit was found");
    std::fs::write(&file, edited).unwrap();
    reload();
    let after = oracle(&app, &w.data, &idx, &w.principals).await;
    assert!(after.failures.is_empty(), "{}", after.report());
    assert!(
        after.allowed < before.allowed,
        "{} vs {}",
        after.allowed,
        before.allowed
    );

    std::fs::write(
        policies.join("search-like.cedar"),
        "@id(\"search.like\")\npermit (principal, action == CedarGate::Action::\"Read\", resource is CedarGate::Document)\nwhen { resource.fileType like \"*pdf\" };\n",
    )
    .unwrap();
    reload();
    let p = w
        .principals
        .iter()
        .find(|p| p.tenant.as_str() == "st00")
        .unwrap();
    match app
        .state
        .planner
        .plan(&app.state.engine, p, "Read", &Value::Null)
        .await
    {
        Err(PlanError::Untranslatable(u)) => {
            assert_eq!(u.policy, "search.like");
            assert!(u.construct.contains("like"), "{}", u.construct);
        }
        other => panic!("want untranslatable, got {:?}", other.map(|p| p.kind)),
    }
}

/// Over HTTP, an untranslatable policy is a 422 naming it.
#[tokio::test]
async fn an_untranslatable_policy_is_a_422() {
    let (app, keys) = spawn_jwt_app().await;
    std::fs::write(
        app.policy_dir.join("search-like.cedar"),
        "@id(\"search.like\")\npermit (principal, action == CedarGate::Action::\"Read\", resource is CedarGate::Document)\nwhen { resource.fileType like \"*pdf\" };\n",
    )
    .unwrap();
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    eventually("the edit is applied", || async {
        plan(&app, &vic, read()).await.status == StatusCode::UNPROCESSABLE_ENTITY
    })
    .await;
    let r = plan(&app, &vic, read()).await;
    assert_eq!(r.json()["error"]["code"], "untranslatable", "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("search.like") && message.contains("like"),
        "{message}"
    );
    app.shutdown().await;
}

/// Forward-auth answers to `Search` routes carry the plan's filter: the
/// same the plan endpoint gives; too large a filter refuses the search.
#[tokio::test]
async fn forward_auth_carries_the_search_filter() {
    let (app, keys) = spawn_jwt_app_full(
        |_| {},
        |s| s.search.forward_auth_filter = Some(cedargate::search::FilterFormat::Kendra),
    )
    .await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let auth = format!("Bearer {vic}");
    let r = app
        .send_with(
            Method::GET,
            "/v1/forward-auth/search",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["x-cedargate-search-plan"], "conditional");
    let filter = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(r.headers["x-cedargate-search-filter"].as_bytes())
        .unwrap();
    let filter: Value = serde_json::from_slice(&filter).unwrap();
    let planned = plan(
        &app,
        &vic,
        json!({"action": "Read", "resource_type": "Document", "formats": ["kendra"]}),
    )
    .await;
    assert_eq!(filter, planned.json()["filters"]["kendra"]);
    // Not on other routes.
    let r = app
        .send_with(
            Method::GET,
            "/v1/forward-auth/documents/d-public",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.headers.contains_key("x-cedargate-search-filter"));
    app.shutdown().await;

    let (app, keys) = spawn_jwt_app_full(
        |_| {},
        |s| {
            s.search.forward_auth_filter = Some(cedargate::search::FilterFormat::Opensearch);
            s.search.max_header_bytes = 100;
        },
    )
    .await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let auth = format!("Bearer {vic}");
    let r = app
        .send_with(
            Method::GET,
            "/v1/forward-auth/search",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(!r.headers.contains_key("x-cedargate-search-filter"));
    app.shutdown().await;
}

/// A re-indexer follows the documents that changed; only the platform may.
#[tokio::test]
async fn the_change_stream_gives_changed_documents_as_the_index_takes_them() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    let pam = keys.token("pam", "plat", &["platform-admin"], |_| {});
    let ada = keys.token("ada", "t1", &["admin"], |_| {});
    let get = |token: &str, path: &str| {
        let auth = format!("Bearer {token}");
        let (app, path) = (&app, path.to_string());
        async move {
            app.send_with(Method::GET, &path, &[("authorization", &auth)], "")
                .await
        }
    };
    let r = get(&ada, "/v1/search/changes").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = get(&pam, "/v1/search/changes").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["changes"], json!([]));
    let cursor = r.json()["next"].as_str().unwrap().to_string();
    // t1's administrator shares a document with the auditors.
    let auth = format!("Bearer {ada}");
    let r = app
        .send_with(
            Method::POST,
            "/v1/tenants/t1/documents/d-public/shares",
            &[("authorization", &auth)],
            json!({"role": "legal", "permission": "read"}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = get(&pam, &format!("/v1/search/changes?cursor={cursor}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let changes = r.json()["changes"].as_array().unwrap().clone();
    let c = changes
        .iter()
        .find(|c| c["documentId"] == "d-public")
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(c["tenantId"], "t1");
    assert!(c["changeId"].is_string());
    assert_eq!(c["opensearch"]["cg_reader_roles"], json!(["legal"]));
    assert!(c["kendra"]
        .as_array()
        .unwrap()
        .contains(&json!({"Key": "cg_reader_roles", "Value": {"StringListValue": ["legal"]}})));
    let r = get(&pam, "/v1/search/changes?cursor=zz").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    app.shutdown().await;
}

/// Tenants' own policies take part in search plans as in decisions: with
/// permits, forbids, a permit of everything and a template link written
/// for some tenants, every plan still selects exactly the documents the
/// decisions allow, for every principal, and the tenants' policies let
/// more be read than before.
#[tokio::test]
async fn tenant_policies_keep_plans_and_decisions_equal() {
    use cedargate::ids::PolicyName;
    use cedargate::policy::tenant::{Definition, EntityRef, TenantPolicy};
    let w = world(200).await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_over(&w.url, &repo_dir("policies"), dir.path()).await;
    let idx = index_for(&app, &w.data);
    let before = oracle(&app, &w.data, &idx, &w.principals).await;
    assert!(before.failures.is_empty(), "{}", before.report());
    drop(app);

    let store = cedargate::store::open(&w.url).await.unwrap();
    let policy = |tenant: &str, id: &str, definition: Definition| TenantPolicy {
        tenant_id: TenantId::parse(tenant).unwrap(),
        policy_id: PolicyName::parse(id).unwrap(),
        definition,
        description: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        updated_by: None,
    };
    let text = |s: &str| Definition::Static {
        statement: s.to_string(),
    };
    for p in [
        policy(
            "st00",
            "everything",
            text("permit (principal, action, resource);"),
        ),
        policy(
            "st01",
            "viewers-read-low",
            text(
                r#"permit (principal in CedarGate::Role::"viewer", action == CedarGate::Action::"Read", resource is CedarGate::Document) when { resource.classification <= 1 };"#,
            ),
        ),
        policy(
            "st01",
            "no-docx",
            text(
                r#"forbid (principal, action == CedarGate::Action::"Read", resource is CedarGate::Document) when { resource.fileType == "docx" };"#,
            ),
        ),
        policy(
            "st02",
            "editors-read",
            Definition::TemplateLinked {
                policy_template_id: "role-reads-tenant-documents".into(),
                principal: Some(EntityRef {
                    entity_type: "CedarGate::Role".into(),
                    entity_id: "editor".into(),
                }),
                resource: None,
            },
        ),
    ] {
        store.put_tenant_policy_if(&p, None).await.unwrap();
    }
    let app = app_over(&w.url, &repo_dir("policies"), dir.path()).await;
    let after = oracle(&app, &w.data, &idx, &w.principals).await;
    assert!(after.failures.is_empty(), "{}", after.report());
    assert_ne!(
        after.allowed, before.allowed,
        "the tenants' policies changed nothing"
    );
}
