//! Who may change which part of a tenant: one Cedar action per kind of
//! change, every field tried by a tenant's administrator and by the
//! platform's; and where refused attempts are recorded (the caller's own
//! log, as facts, nothing of what the request carried).

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use cedargate::ids::TenantId;
use cedargate::sidecar::client::Reply;
use cedargate::store::AuditQuery;

/// The tenant as stored, and its ETag.
async fn read(app: &TestApp, token: &str, id: &str) -> (Value, String) {
    let r = call(
        app,
        token,
        Method::GET,
        &format!("/v1/tenants/{id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (r.json(), etag(&r))
}

/// Reads tenant `id`, applies `edit`, PUTs it back with its ETag.
async fn change(
    app: &TestApp,
    token: &str,
    reader: &str,
    id: &str,
    edit: impl Fn(&mut Value),
) -> Reply {
    let (mut t, etag) = read(app, reader, id).await;
    edit(&mut t);
    call(
        app,
        token,
        Method::PUT,
        &format!("/v1/tenants/{id}"),
        &[("if-match", &etag)],
        Some(&t),
    )
    .await
}

type Edit = fn(&mut Value);

/// Every field of a tenant, a change of it, and whether t1's (pro tier)
/// administrator may make it.
const FIELDS: [(&str, Edit, bool); 14] = [
    ("name", |t| t["name"] = json!("Acme Two"), true),
    (
        "billing",
        |t| {
            t["billing"] = json!({
                "provider": "stripe", "customerId": "cus_T1", "subscriptionId": "sub_9",
                "priceId": "price_pro", "currentPeriodEnd": "2026-12-31T00:00:00Z",
                "paymentStatus": "active"
            })
        },
        false,
    ),
    ("status", |t| t["status"] = json!("suspended"), false),
    (
        "subscription.tier",
        |t| t["subscription"]["tier"] = json!("enterprise"),
        false,
    ),
    (
        "subscription.startDate",
        |t| t["subscription"]["startDate"] = json!("2020-01-01"),
        false,
    ),
    (
        "subscription.features",
        |t| t["subscription"]["features"] = json!(["export", "audit-logs", "sso"]),
        false,
    ),
    (
        "limits.maxDocuments",
        |t| t["limits"]["maxDocuments"] = json!(1_000_000),
        false,
    ),
    (
        "limits.maxUsers",
        |t| t["limits"]["maxUsers"] = json!(1_000_000),
        false,
    ),
    (
        "limits.maxStorageGB",
        |t| t["limits"]["maxStorageGB"] = json!(1_000_000),
        false,
    ),
    (
        "limits.maxQueriesPerMonth",
        |t| t["limits"]["maxQueriesPerMonth"] = json!(1_000_000),
        false,
    ),
    (
        "settings.dataRetentionDays",
        |t| t["settings"]["dataRetentionDays"] = json!(2000),
        true,
    ),
    (
        "settings.allowedFileTypes",
        |t| t["settings"]["allowedFileTypes"] = json!(["pdf", "txt"]),
        true,
    ),
    (
        "settings.recoveryWindowDays",
        |t| t["settings"]["recoveryWindowDays"] = json!(60),
        true,
    ),
    // Past what the pro tier allows.
    (
        "settings.dataRetentionDays",
        |t| t["settings"]["dataRetentionDays"] = json!(3000),
        false,
    ),
];

#[tokio::test]
async fn each_field_is_changed_only_by_whom_the_policies_allow() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    let platform = keys.token("pam", "plat", &["platform-admin"], |_| {});
    let admin = keys.token("ada", "t1", &["admin"], |_| {});
    let editor = keys.token("ed", "t1", &["editor"], |_| {});

    for (field, edit, may) in FIELDS {
        let (before, _) = read(&app, &platform, "t1").await;
        let r = change(&app, &admin, &platform, "t1", edit).await;
        let (after, _) = read(&app, &platform, "t1").await;
        if may {
            assert_eq!(r.status, StatusCode::OK, "{field}: {}", r.body);
            assert_ne!(before, after, "{field}");
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{field}: {}", r.body);
            assert_eq!(r.json()["error"]["code"], "fields_forbidden");
            assert_eq!(r.json()["error"]["fields"], json!([field]), "{}", r.body);
            assert!(r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field));
            assert_eq!(before, after, "{field}: nothing is written");
        }
        // Nobody but an administrator changes anything, not even the name.
        let r = change(&app, &editor, &platform, "t1", edit).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{field}: {}", r.body);
        // The platform changes any of it, on any tenant.
        let r = change(&app, &platform, &platform, "trial", edit).await;
        assert_eq!(r.status, StatusCode::OK, "{field}: {}", r.body);
    }

    // A billing account that is not one: 400, nothing written.
    for bad in [
        json!({"provider": "stripe"}),
        json!({"provider": "stripe", "customerId": "acct_1"}),
        json!({"provider": "stripe", "customerId": "cus_1", "priceId": "price 1"}),
        json!({"provider": "paypal", "customerId": "cus_1"}),
        json!({"provider": "stripe", "customerId": "cus_1", "extra": 1}),
        json!({"provider": "stripe", "customerId": "cus_1", "paymentStatus": "late"}),
    ] {
        let (before, _) = read(&app, &platform, "trial").await;
        let r = change(&app, &platform, &platform, "trial", |t| {
            t["billing"] = bad.clone()
        })
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert_eq!(read(&app, &platform, "trial").await.0, before);
    }
    let (t, _) = read(&app, &platform, "trial").await;
    assert_eq!(t["billing"]["customerId"], "cus_T1", "{t}");

    // Several at once: every refused field is named, and nothing is written
    // (not even the name, which alone would have been allowed).
    let (before, _) = read(&app, &platform, "t1").await;
    let r = change(&app, &admin, &platform, "t1", |t| {
        t["name"] = json!("Acme Three");
        t["subscription"]["tier"] = json!("enterprise");
        t["limits"]["maxDocuments"] = json!(4_000_000_000u32);
    })
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        r.json()["error"]["fields"],
        json!(["subscription.tier", "limits.maxDocuments"])
    );
    assert_eq!(read(&app, &platform, "t1").await.0, before);

    // A basic tier's administrator: retention up to 365 days, a recovery
    // window up to 30.
    let gus = keys.token("gus", "t2", &["admin"], |_| {});
    for (days, window, ok) in [
        (366, None, false),
        (365, None, true),
        (365, Some(31), false),
        (365, Some(30), true),
    ] {
        let r = change(&app, &gus, &platform, "t2", |t| {
            t["settings"]["dataRetentionDays"] = json!(days);
            if let Some(w) = window {
                t["settings"]["recoveryWindowDays"] = json!(w);
            }
        })
        .await;
        let want = if ok {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(r.status, want, "{days} {window:?}: {}", r.body);
    }

    // Usage is the service's: a PUT may carry any, the stored one stays and
    // is what the answer says.
    let (before, _) = read(&app, &platform, "t1").await;
    let r = change(&app, &admin, &platform, "t1", |t| {
        t["usage"]["documents"] = json!(0);
        t["usage"]["queriesThisMonth"] = json!(0);
    })
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["usage"], before["usage"]);
    assert_eq!(
        read(&app, &platform, "t1").await.0["usage"],
        before["usage"]
    );

    // Cancelling is a change of status.
    let r = call(&app, &admin, Method::DELETE, "/v1/tenants/t1", &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"]["fields"], json!(["status"]));
    let r = call(
        &app,
        &platform,
        Method::DELETE,
        "/v1/tenants/trial",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.shutdown().await;
}

/// A billing integration (group `billing-integration`) changes billing's
/// fields of any tenant — billing account, status, subscription, limits —
/// and nothing else; its other attempts read like a missing tenant's.
#[tokio::test]
async fn a_billing_integration_changes_billing_fields_only() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    let platform = keys.token("pam", "plat", &["platform-admin"], |_| {});
    let bill = keys.token("billing", "plat", &["billing-integration"], |_| {});
    for (field, edit, _) in FIELDS {
        let billing_field = ["billing", "status"].contains(&field)
            || field.starts_with("subscription.")
            || field.starts_with("limits.");
        let (before, _) = read(&app, &platform, "t2").await;
        let r = change(&app, &bill, &platform, "t2", edit).await;
        let (after, _) = read(&app, &platform, "t2").await;
        if billing_field {
            assert_eq!(r.status, StatusCode::OK, "{field}: {}", r.body);
            assert_ne!(before, after, "{field}");
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{field}: {}", r.body);
            assert_eq!(r.json()["error"]["fields"], json!([field]), "{}", r.body);
            assert_eq!(before, after, "{field}: nothing is written");
        }
    }
    // It lists tenants and reads them; everything else is refused exactly
    // as for a tenant that does not exist.
    let r = call(&app, &bill, Method::GET, "/v1/tenants", &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (method, suffix) in [
        (Method::GET, "/usage"),
        (Method::GET, "/audit-logs"),
        (Method::GET, "/documents"),
        (Method::POST, "/export"),
    ] {
        let real = call(
            &app,
            &bill,
            method.clone(),
            &format!("/v1/tenants/t1{suffix}"),
            &[],
            None,
        )
        .await;
        let missing = call(
            &app,
            &bill,
            method.clone(),
            &format!("/v1/tenants/nobody{suffix}"),
            &[],
            None,
        )
        .await;
        assert_eq!(
            real.status,
            StatusCode::FORBIDDEN,
            "{method} {suffix}: {}",
            real.body
        );
        assert_eq!(
            (real.status, &real.body),
            (missing.status, &missing.body),
            "{method} {suffix}"
        );
    }
    let (mut newco, _) = read(&app, &platform, "t2").await;
    newco["tenantId"] = json!("newco");
    let r = call(&app, &bill, Method::POST, "/v1/tenants", &[], Some(&newco)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    app.shutdown().await;
}

/// Another tenant's administrator tries to create, rename, cancel and
/// export t1, with text of their choosing in the body and headers: t1's log
/// receives nothing; their own log says who tried what on which tenant.
#[tokio::test]
async fn refused_attempts_are_recorded_in_the_callers_own_log() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    let gus = keys.token("gus", "t2", &["admin"], |_| {});
    let canary = "CANARY text the attacker chose";
    let body = json!({
        "tenantId": "t1", "name": canary, "status": "active",
        "subscription": {"tier": "enterprise", "startDate": "2026-01-01", "features": []},
        "limits": {"maxDocuments": 1, "maxUsers": 1, "maxStorageGB": 1, "maxQueriesPerMonth": 1},
        "settings": {"dataRetentionDays": 1, "allowedFileTypes": ["pdf"]}
    });
    let h: &[(&str, &str)] = &[
        ("user-agent", canary),
        ("x-request-id", "canary-request"),
        ("if-match", "\"0\""),
    ];
    for (method, path, body) in [
        (Method::POST, "/v1/tenants", Some(&body)),
        (Method::PUT, "/v1/tenants/t1", Some(&body)),
        (Method::DELETE, "/v1/tenants/t1", None),
        (Method::POST, "/v1/tenants/t1/export", None),
    ] {
        let r = call(&app, &gus, method.clone(), path, h, body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            r.body
        );
    }
    let store = app.store.clone();
    app.shutdown().await;
    let log = |tenant: &str| {
        let store = store.clone();
        let q = AuditQuery::new(
            TenantId::parse(tenant).unwrap(),
            chrono::DateTime::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::days(1),
            1000,
        );
        async move { store.audit_events(&q).await.unwrap().events }
    };
    let t1 = log("t1").await;
    assert!(
        t1.iter().all(|e| e.user_id.as_deref() != Some("gus")),
        "{t1:?}"
    );
    let (signed_in, t2): (Vec<_>, Vec<_>) = log("t2")
        .await
        .into_iter()
        .filter(|e| e.user_id.as_deref() == Some("gus"))
        .partition(|e| e.action == "Authenticate");
    // Gus's token signed in once, in his own tenant.
    assert_eq!(signed_in.len(), 1, "{signed_in:?}");
    assert!(signed_in[0].success);
    let mut actions: Vec<&str> = t2.iter().map(|e| e.action.as_str()).collect();
    actions.sort();
    assert_eq!(
        actions,
        ["CreateTenant", "DeactivateTenant", "Export", "UpdateTenant"]
    );
    for e in &t2 {
        assert!(!e.success);
        assert_eq!(e.resource, "CedarGate::Tenant::\"t1\"");
        assert_eq!(e.details["target"], json!({"tenantId": "t1"}));
        assert_eq!(e.details["status"], 403);
        assert_eq!(e.details["code"], "forbidden");
        assert!(e.details.get("tenant").is_none(), "{}", e.details);
        let text = serde_json::to_string(&e.details).unwrap();
        assert!(
            !text.contains("CANARY") && !text.contains("enterprise"),
            "{text}"
        );
    }
}
