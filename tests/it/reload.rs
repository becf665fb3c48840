//! Policy hot reload through the running server: edits, additions and
//! removals take effect without a restart; a broken edit keeps the last good
//! set, is counted, and leaves the server ready.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, TestApp};

fn search() -> Value {
    json!({
        "principal": {"id": "vic", "tenant": "t1", "roles": ["viewer"]},
        "action": "Search",
        "resource": {"type": "Tenant", "id": "t1"}
    })
}

fn read_public() -> Value {
    json!({
        "principal": {"id": "vic", "tenant": "t1", "roles": ["viewer"], "clearance": 1},
        "action": "Read",
        "resource": {"type": "Document", "id": "d-public"}
    })
}

async fn decide(app: &TestApp, body: &Value) -> Value {
    let r = app.post("/v1/authorize", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

async fn reload_failures(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix("cedargate_policy_reload_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn edits_additions_and_removals_apply_without_restart() {
    let app = spawn_app().await;
    let first = decide(&app, &search()).await;
    assert_eq!(first["decision"], "Allow");
    let rev0 = first["policy_revision"].clone();

    // Edit: viewers may no longer search.
    let roles = app.policy_dir.join("roles.cedar");
    let text = std::fs::read_to_string(&roles).unwrap();
    let edited = text.replacen("CedarGate::Role::\"viewer\",", "", 1);
    assert_ne!(edited, text);
    std::fs::write(&roles, &edited).unwrap();
    eventually("the edit to apply", || async {
        decide(&app, &search()).await["decision"] == "Deny"
    })
    .await;
    let after = decide(&app, &search()).await;
    assert_ne!(after["policy_revision"], rev0);

    // Addition: a new file with a forbid.
    assert_eq!(decide(&app, &read_public()).await["decision"], "Allow");
    let extra = app.policy_dir.join("extra.cedar");
    std::fs::write(
        &extra,
        "@id(\"extra.no-public\")\nforbid (principal, action == CedarGate::Action::\"Read\", resource is CedarGate::Document)\nwhen { resource.visibility == \"public\" };\n",
    )
    .unwrap();
    eventually("the new file to apply", || async {
        decide(&app, &read_public()).await["determining_policies"] == json!(["extra.no-public"])
    })
    .await;

    // Removal.
    std::fs::remove_file(&extra).unwrap();
    eventually("the removal to apply", || async {
        decide(&app, &read_public()).await["decision"] == "Allow"
    })
    .await;
    assert_eq!(reload_failures(&app).await, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn broken_edits_keep_the_last_good_set() {
    let app = spawn_app().await;
    let good = decide(&app, &search()).await;
    let rev = good["policy_revision"].clone();
    let roles = app.policy_dir.join("roles.cedar");
    let original = std::fs::read_to_string(&roles).unwrap();

    let broken: [(&str, String); 3] = [
        ("syntax error", format!("{original}\npermit (principal, action, resource"))
        ,
        (
            "type error",
            format!("{original}\n@id(\"bad.type\")\npermit (principal, action, resource is CedarGate::Document) when {{ resource.colour == \"red\" }};\n"),
        ),
        (
            "duplicate id",
            format!("{original}\n@id(\"roles.search\")\npermit (principal, action, resource);\n"),
        ),
    ];
    for (i, (what, text)) in broken.iter().enumerate() {
        std::fs::write(&roles, text).unwrap();
        let want = i as u64 + 1;
        eventually(what, || async { reload_failures(&app).await >= want }).await;
        let d = decide(&app, &search()).await;
        assert_eq!(d["policy_revision"], rev, "{what}: the last good set stays");
        assert_eq!(d["decision"], "Allow", "{what}: {d}");
        assert_eq!(app.get("/readyz").await.status, StatusCode::OK, "{what}");
    }
    // A broken edit is reported once, not on every poll.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reload_failures(&app).await, 3);

    // Fixing the file applies it again.
    std::fs::write(&roles, format!("{original}\n// fixed\n")).unwrap();
    eventually("the fix to apply", || async {
        decide(&app, &search()).await["policy_revision"] != rev
    })
    .await;
    assert_eq!(decide(&app, &search()).await["decision"], "Allow");
    app.shutdown().await;
}
