//! Tenant policies through the management API, enforced by a sidecar on
//! the same store, on SQLite and DynamoDB Local: who may write them (the
//! policies: `ManagePolicies`, the `custom-policies` feature), what is
//! refused when written (with positions), confinement to the tenant (a
//! `permit (principal, action, resource)` grants nothing outside it and
//! nothing a global forbid denies), template links, ETags, deletion,
//! propagation through the change log, audit records, and the export /
//! import round trip.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::*;
use cedargate::ids::TenantId;
use cedargate::sidecar::client::Reply;
use cedargate::store::{self, StoreUrl};

fn statement(text: &str) -> Value {
    json!({ "definition": { "static": { "statement": text } } })
}

/// A decision of the sidecar (trusted mode) for a principal of `tenant`.
async fn decide(
    sidecar: &TestApp,
    user: &str,
    tenant: &str,
    roles: &[&str],
    action: &str,
    resource: (&str, &str),
) -> Value {
    let body = json!({
        "principal": {"id": user, "tenant": tenant, "roles": roles, "clearance": 1},
        "action": action,
        "resource": {"type": resource.0, "id": resource.1},
    });
    let r = sidecar.post("/v1/authorize", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

/// Waits until the sidecar's answer to a request is `want`, and says how
/// long that took.
async fn until(
    sidecar: &TestApp,
    want: &str,
    user: &str,
    tenant: &str,
    roles: &[&str],
    action: &str,
    resource: (&str, &str),
) -> (Duration, Value) {
    let is = |d: &Value| d["decision"] == want;
    until_that(sidecar, want, is, (user, tenant, roles), action, resource).await
}

/// Waits until the sidecar's answer to a request meets `holds` (`what`
/// names it in the failure).
async fn until_that(
    sidecar: &TestApp,
    what: &str,
    holds: impl Fn(&Value) -> bool,
    (user, tenant, roles): (&str, &str, &[&str]),
    action: &str,
    resource: (&str, &str),
) -> (Duration, Value) {
    let started = Instant::now();
    loop {
        let d = decide(sidecar, user, tenant, roles, action, resource).await;
        if holds(&d) {
            return (started.elapsed(), d);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{user}@{tenant} {action} {resource:?} never became {what}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const CONTRACTORS_READ: &str = r#"permit (
  principal in CedarGate::Role::"contractor",
  action == CedarGate::Action::"Read",
  resource is CedarGate::Document
)
when { resource.visibility == "shared" };"#;

async fn scenario(url: StoreUrl) {
    let mut admin_url = None;
    let (admin, keys) = spawn_admin_app(|s| {
        s.store = url.clone();
        s.change_poll_interval = Duration::from_millis(50);
        admin_url = Some(s.store.clone());
    })
    .await;
    let sidecar = spawn_app_with(|s| {
        s.store = url.clone();
        s.cache.ttl = Duration::from_secs(3600);
        s.change_poll_interval = Duration::from_millis(50);
    })
    .await;
    let platform = keys.token("pam", "plat", &["platform-admin"], |_| {});
    let t1_admin = keys.token("ada", "t1", &["admin"], |_| {});
    let t1_viewer = keys.token("vic", "t1", &["viewer"], |_| {});
    let t2_admin = keys.token("gus", "t2", &["admin"], |_| {});
    let path = "/v1/tenants/t1/policies/contractors-read";

    // Before: a contractor of t1 reads nothing shared.
    let d = decide(
        &sidecar,
        "con",
        "t1",
        &["contractor"],
        "Read",
        ("Document", "d-shared"),
    )
    .await;
    assert_eq!(d["decision"], "Deny", "{d}");

    // t1 is on a tier without custom policies: its administrator may not
    // write one (the feature's message), a viewer never.
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        path,
        &[],
        Some(&statement(CONTRACTORS_READ)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = call(
        &admin,
        &t1_viewer,
        Method::GET,
        "/v1/tenants/t1/policies",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // The platform turns the feature on.
    let t = call(&admin, &platform, Method::GET, "/v1/tenants/t1", &[], None).await;
    let mut record = t.json();
    record["subscription"]["features"] = json!(["export", "audit-logs", "custom-policies"]);
    let r = call(
        &admin,
        &platform,
        Method::PUT,
        "/v1/tenants/t1",
        &[("if-match", &etag(&t))],
        Some(&record),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Refused when written, with where and why.
    for (text, says) in [
        (
            "permit (principal, action, resource) when { resource.nope == 1 };",
            "contractors-read:1:",
        ),
        ("permit (principal, action, resource", "contractors-read:1:"),
        (
            r#"permit (principal, action == CedarGate::Action::"UpdateTenantLimits", resource);"#,
            "TenantPolicyAction",
        ),
        (
            "permit (principal, action, resource); permit (principal, action, resource);",
            "exactly one",
        ),
        (
            "permit (principal in ?principal, action, resource);",
            "no slots",
        ),
    ] {
        let r = eventually_status(
            &admin,
            &t1_admin,
            Method::PUT,
            path,
            &statement(text),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(r.json()["error"]["code"], "invalid_policy", "{}", r.body);
        assert!(r.body.contains(says), "{text}: {}", r.body);
    }

    // Written by t1's administrator now that the tier has the feature.
    let r = eventually_status(
        &admin,
        &t1_admin,
        Method::PUT,
        path,
        &statement(CONTRACTORS_READ),
        StatusCode::CREATED,
    )
    .await;
    let first = etag(&r);
    assert_eq!(r.json()["cedarId"], "tenant/t1/contractors-read");
    assert_eq!(r.json()["status"], "valid");
    let (took, d) = until(
        &sidecar,
        "Allow",
        "con",
        "t1",
        &["contractor"],
        "Read",
        ("Document", "d-shared"),
    )
    .await;
    eprintln!("tenant policy propagation: {took:?}");
    assert_eq!(
        d["determining_policies"],
        json!(["tenant/t1/contractors-read"]),
        "{d}"
    );
    // Private documents stay private; another tenant's contractor gains
    // nothing.
    let d = decide(
        &sidecar,
        "con",
        "t1",
        &["contractor"],
        "Read",
        ("Document", "d-priv"),
    )
    .await;
    assert_eq!(d["decision"], "Deny", "{d}");
    let d = decide(
        &sidecar,
        "con",
        "t2",
        &["contractor"],
        "ViewUsage",
        ("Tenant", "t2"),
    )
    .await;
    assert_eq!(d["decision"], "Deny", "{d}");

    // ETags: a replacement needs the current one.
    let again = statement(CONTRACTORS_READ);
    let r = call(&admin, &t1_admin, Method::PUT, path, &[], Some(&again)).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED, "{}", r.body);
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        path,
        &[("if-none-match", "*")],
        Some(&again),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        path,
        &[("if-match", "\"stale\"")],
        Some(&again),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    let r = call(&admin, &t1_admin, Method::GET, path, &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(etag(&r), first);
    assert_eq!(r.json()["updatedBy"], "ada");

    // A policy that tries everything: only its tenant, only what a tenant
    // may grant, and the global forbids still deny.
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        "/v1/tenants/t1/policies/everything",
        &[],
        Some(&statement("permit (principal, action, resource);")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    until(
        &sidecar,
        "Allow",
        "nobody",
        "t1",
        &[],
        "ViewUsage",
        ("Tenant", "t1"),
    )
    .await;
    for (user, tenant, roles, action, resource) in [
        // Another tenant's record and its documents.
        ("nobody", "t1", &[][..], "ViewUsage", ("Tenant", "t2")),
        ("nobody", "t1", &[], "Export", ("Tenant", "t2")),
        ("nobody", "t1", &[], "ManageTenant", ("Tenant", "t2")),
        // Not delegable: the tenant's record, limits, policies.
        ("nobody", "t1", &[], "UpdateTenantLimits", ("Tenant", "t1")),
        (
            "nobody",
            "t1",
            &[],
            "UpdateTenantSubscription",
            ("Tenant", "t1"),
        ),
        ("nobody", "t1", &[], "ManagePolicies", ("Tenant", "t1")),
        ("nobody", "t1", &[], "ListTenants", ("Tenant", "t1")),
        // Clearance: d-secret is classified 3, the caller cleared for 1.
        ("nobody", "t1", &[], "Read", ("Document", "d-secret")),
        // Another tenant's principals are untouched by t1's policies.
        ("nobody", "t2", &[], "ViewUsage", ("Tenant", "t2")),
        ("nobody", "t2", &[], "Export", ("Tenant", "t2")),
    ] {
        let d = decide(&sidecar, user, tenant, roles, action, resource).await;
        assert_eq!(
            d["decision"], "Deny",
            "{user}@{tenant} {action} {resource:?}: {d}"
        );
        let named_t1 = d["determining_policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("tenant/t1/"));
        assert!(!named_t1, "{d}");
    }
    // Through the management API too: t1's viewer still cannot change t1's
    // limits or read t2.
    let r = call(
        &admin,
        &t1_viewer,
        Method::GET,
        "/v1/tenants/t2/usage",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // A template link: members of "intern" read what is not private.
    let link = json!({"definition": {"templateLinked": {
        "policyTemplateId": "role-reads-tenant-documents",
        "principal": {"entityType": "CedarGate::Role", "entityId": "intern"}}}});
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        "/v1/tenants/t1/policies/interns",
        &[],
        Some(&link),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let by_link = |d: &Value| {
        d["determining_policies"]
            .as_array()
            .unwrap()
            .contains(&json!("tenant/t1/interns"))
    };
    let (_, d) = until_that(
        &sidecar,
        "decided by the link",
        by_link,
        ("ivy", "t1", &["intern"]),
        "Read",
        ("Document", "d-shared"),
    )
    .await;
    assert_eq!(d["decision"], "Allow", "{d}");
    let bad_link =
        json!({"definition": {"templateLinked": {"policyTemplateId": "no-such-template"}}});
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        "/v1/tenants/t1/policies/x",
        &[],
        Some(&bad_link),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("role-reads-tenant-documents"), "{}", r.body);

    // A tenant's forbid, with its message.
    let forbid = statement(
        r#"@message("Interns may not share.")
forbid (principal in CedarGate::Role::"intern", action == CedarGate::Action::"Share", resource);"#,
    );
    let r = call(
        &admin,
        &t1_admin,
        Method::PUT,
        "/v1/tenants/t1/policies/no-sharing",
        &[],
        Some(&forbid),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (_, d) = until(
        &sidecar,
        "Deny",
        "ivy",
        "t1",
        &["intern", "admin"],
        "Share",
        ("Document", "d-public"),
    )
    .await;
    assert_eq!(
        d["determining_policies"],
        json!(["tenant/t1/no-sharing"]),
        "{d}"
    );
    assert_eq!(d["message"], "Interns may not share.", "{d}");

    // Listed, and another tenant's administrator cannot see or touch
    // them: the same answer as for a tenant that does not exist.
    let r = call(
        &admin,
        &t1_admin,
        Method::GET,
        "/v1/tenants/t1/policies",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids: Vec<String> = r.json()["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policyId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["contractors-read", "everything", "interns", "no-sharing"]
    );
    for (method, body) in [
        (Method::GET, None),
        (
            Method::PUT,
            Some(statement("permit (principal, action, resource);")),
        ),
        (Method::DELETE, None),
    ] {
        let theirs = call(
            &admin,
            &t2_admin,
            method.clone(),
            path,
            &[("if-match", &first)],
            body.as_ref(),
        )
        .await;
        let nobody = call(
            &admin,
            &t2_admin,
            method.clone(),
            "/v1/tenants/nope/policies/contractors-read",
            &[("if-match", &first)],
            body.as_ref(),
        )
        .await;
        assert_eq!(
            theirs.status,
            StatusCode::FORBIDDEN,
            "{method} {}",
            theirs.body
        );
        assert_eq!(
            (theirs.status, &theirs.body),
            (nobody.status, &nobody.body),
            "{method}"
        );
    }

    // Export carries them; an import into an empty store restores them.
    let r = call(
        &admin,
        &platform,
        Method::POST,
        "/v1/tenants/t1/export",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let imported = cedargate::export::read(&r.body).expect("the export reads back");
    assert_eq!(imported.data.policies.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let copy = store::open(&StoreUrl::Sqlite(dir.path().join("copy.db")))
        .await
        .unwrap();
    copy.import(&imported.data).await.unwrap();
    let t1 = TenantId::parse("t1").unwrap();
    let original = store::open(&admin_url.clone().unwrap()).await.unwrap();
    assert_eq!(
        copy.tenant_policies(&t1).await.unwrap(),
        original.tenant_policies(&t1).await.unwrap()
    );

    // Deleted with its ETag; the sidecar denies again.
    let r = call(&admin, &t1_admin, Method::DELETE, path, &[], None).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED, "{}", r.body);
    let r = call(
        &admin,
        &t1_admin,
        Method::DELETE,
        path,
        &[("if-match", &first)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(
        &admin,
        &t1_admin,
        Method::DELETE,
        path,
        &[("if-match", &first)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // The last one that let the contractor read goes too.
    let everything = "/v1/tenants/t1/policies/everything";
    let r = call(&admin, &t1_admin, Method::GET, everything, &[], None).await;
    let r = call(
        &admin,
        &t1_admin,
        Method::DELETE,
        everything,
        &[("if-match", &etag(&r))],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until(
        &sidecar,
        "Deny",
        "con",
        "t1",
        &["contractor"],
        "Read",
        ("Document", "d-shared"),
    )
    .await;

    // Every write is in t1's audit log, naming the policy; the refused
    // attempt of t2's administrator is in t2's, not t1's.
    eventually("the policy writes in t1's audit log", || async {
        deleted(&admin).await == 2
    })
    .await;
    let puts = audit_records_of(&admin, "t1", "PutPolicy").await;
    assert!(puts.len() >= 4, "{puts:?}");
    let written = serde_json::to_string(&puts).unwrap();
    assert!(written.contains("contractors-read"), "{written}");
    assert!(!written.contains("\"gus\""), "{written}");
    // The refused attempts (no If-Match, already gone) are there too.
    assert_eq!(
        audit_records_of(&admin, "t1", "DeletePolicy").await.len(),
        4
    );
    let refused = audit_records_of(&admin, "t2", "PutPolicy").await;
    assert!(!refused.is_empty());

    sidecar.shutdown().await;
    admin.shutdown().await;
}

/// Successful deletions in t1's audit log.
async fn deleted(admin: &TestApp) -> usize {
    audit_records_of(admin, "t1", "DeletePolicy")
        .await
        .iter()
        .filter(|e| e.success)
        .count()
}

/// Sends until the status is `want` (the admin's own cache may hold the
/// tenant's record from before a change for one poll interval).
async fn eventually_status(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: &Value,
    want: StatusCode,
) -> Reply {
    let started = Instant::now();
    loop {
        let r = call(app, token, method.clone(), path, &[], Some(body)).await;
        if r.status == want || started.elapsed() > Duration::from_secs(20) {
            assert_eq!(r.status, want, "{}", r.body);
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tenant_policies_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    scenario(url).await;
}

#[tokio::test]
async fn tenant_policies_on_dynamodb() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let ddb = DynamoLocal::start(&jar).await;
    let url = ddb.fixture_url("tp-").await;
    scenario(url).await;
}

/// The Verified Permissions API on the Git store decides a token's native
/// principal with its tenant's own policies, as the native API does: the
/// same decision and determining policies through both.
#[tokio::test]
async fn verified_permissions_tokens_see_their_tenants_policies() {
    use cedargate::ids::PolicyName;
    use cedargate::policy::tenant::{Definition, TenantPolicy};
    let (app, keys) = spawn_jwt_app().await;
    let own = TenantPolicy {
        tenant_id: TenantId::parse("t1").unwrap(),
        policy_id: PolicyName::parse("contractors-usage").unwrap(),
        definition: Definition::Static {
            statement: r#"permit (principal in CedarGate::Role::"contractor", action == CedarGate::Action::"ViewUsage", resource is CedarGate::Tenant);"#.into(),
        },
        description: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        updated_by: None,
    };
    app.store.put_tenant_policy_if(&own, None).await.unwrap();
    for (tenant, want) in [("t1", "ALLOW"), ("t2", "DENY")] {
        let token = keys.token("con", tenant, &["contractor"], |_| {});
        let body = json!({
            "policyStoreId": "cedargate",
            "identityToken": token,
            "action": {"actionType": "CedarGate::Action", "actionId": "ViewUsage"},
            "resource": {"entityType": "CedarGate::Tenant", "entityId": tenant},
        });
        let r = app
            .send_with(
                Method::POST,
                "/",
                &[
                    ("x-amz-target", "VerifiedPermissions.IsAuthorizedWithToken"),
                    ("content-type", "application/x-amz-json-1.0"),
                ],
                body.to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let avp = r.json();
        assert_eq!(avp["decision"], want, "{avp}");
        let native = app
            .post_as(
                &token,
                "/v1/authorize",
                &json!({"action": "ViewUsage", "resource": {"type": "Tenant", "id": tenant}}),
            )
            .await
            .json();
        assert_eq!(native["decision"].as_str().unwrap().to_uppercase(), want);
        let by: Vec<&str> = avp["determiningPolicies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["policyId"].as_str().unwrap())
            .collect();
        assert_eq!(
            by,
            native["determining_policies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>(),
            "{avp} {native}"
        );
    }
    app.shutdown().await;
}

/// The templates a tenant may link, with their slots, for whoever may read
/// their tenant's policies.
#[tokio::test]
async fn the_templates_are_listed_with_their_slots() {
    let (admin, keys) = spawn_admin_app(|_| {}).await;
    let ada = keys.token("ada", "t1", &["admin"], |_| {});
    let r = call(&admin, &ada, Method::GET, "/v1/policy-templates", &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let templates = r.json()["templates"].as_array().unwrap().clone();
    let ids: Vec<&str> = templates
        .iter()
        .map(|t| t["policyTemplateId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "role-cannot-export",
            "role-cannot-share",
            "role-edits-document",
            "role-reads-tenant-documents"
        ]
    );
    let edits = &templates[2];
    assert_eq!(
        edits["slots"],
        json!(["?principal", "?resource"]),
        "{edits}"
    );
    assert_eq!(edits["effect"], "permit");
    assert_eq!(templates[1]["effect"], "forbid");
    assert!(edits["statement"].as_str().unwrap().contains("?resource"));
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = call(&admin, &vic, Method::GET, "/v1/policy-templates", &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = call(
        &admin,
        &ada,
        Method::POST,
        "/v1/policy-templates",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
    admin.shutdown().await;
}
