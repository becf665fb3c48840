//! Authentication records through the real servers: each kind of refused
//! token leaves counted `Authenticate` records in the right partition (a
//! tenant only when the signature verified), a verified token signs in once
//! however often it is used, and a flood of bad tokens becomes a bounded
//! number of records.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use cedargate::audit::auth::PLATFORM_PARTITION;
use cedargate::audit::AuditEvent;
use cedargate::ids::TenantId;
use cedargate::store::AuditQuery;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn read_public() -> Value {
    json!({"action": "Read", "resource": {"type": "Document", "id": "d-public"}})
}

/// The `Authenticate` records of a partition.
async fn auth_records(app: &TestApp, partition: &str) -> Vec<AuditEvent> {
    audit_records_of(app, partition, "Authenticate").await
}

/// Refusals counted per reason in a partition's records.
fn counts(records: &[AuditEvent]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for e in records.iter().filter(|e| !e.success) {
        *out.entry(e.details["reason"].as_str().unwrap().to_string())
            .or_default() += e.details["count"].as_u64().unwrap();
    }
    out
}

/// Waits until `check` holds of the partition's records (they reach the
/// store through the flush, the spool and the drain).
async fn until(
    app: &TestApp,
    partition: &str,
    check: impl Fn(&[AuditEvent]) -> bool,
) -> Vec<AuditEvent> {
    for _ in 0..200 {
        let records = auth_records(app, partition).await;
        if check(&records) {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = auth_records(app, partition).await;
    panic!("{partition}: {records:#?}");
}

fn fast_flush(s: &mut cedargate::config::Settings) {
    s.auth_flush_interval = Duration::from_millis(100);
}

#[tokio::test]
async fn refused_tokens_are_counted_in_the_right_partition() {
    let (app, keys) = spawn_jwt_app_full(|_| {}, fast_flush).await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let send = |auth: Option<String>| {
        let app = &app;
        async move {
            let mut headers = vec![("user-agent", "probe/1".to_string())];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = app
                .send_with(Method::POST, "/v1/authorize", &h, read_public().to_string())
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        }
    };
    // Claims of t2 under t1's signature: the claims are invented.
    let good = keys.token("vic", "t1", &["viewer"], |_| {});
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = claims("mallory", "t2", &["admin"]);
    evil["sub"] = json!("mallory");
    let forged = format!("{}.{}.{}", parts[0], b64.encode(evil.to_string()), parts[2]);
    let expired = keys.token("vic", "t1", &["viewer"], |c| {
        c["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    });
    let wrong_audience = keys.token("vic", "t1", &["viewer"], |c| {
        c["aud"] = json!("another-app")
    });
    for _ in 0..3 {
        send(None).await;
    }
    for _ in 0..2 {
        send(Some("Bearer not-a-token".into())).await;
    }
    for _ in 0..4 {
        send(Some(format!("Bearer {forged}"))).await;
    }
    for _ in 0..2 {
        send(Some(format!("Bearer {expired}"))).await;
    }
    send(Some(format!("Bearer {wrong_audience}"))).await;

    let platform = until(&app, PLATFORM_PARTITION, |r| {
        counts(r).values().sum::<u64>() == 9
    })
    .await;
    let c = counts(&platform);
    assert_eq!(
        (c["missing"], c["malformed"], c["bad_signature"]),
        (3, 2, 4),
        "{c:?}"
    );
    let forged_records: Vec<&AuditEvent> = platform
        .iter()
        .filter(|e| e.details["reason"] == "bad_signature")
        .collect();
    for e in &forged_records {
        // Kept, marked unverified, never acted on.
        assert_eq!(e.details["claimedTenant"], "t2");
        assert_eq!(e.details["claimedSub"], "mallory");
        assert_eq!(e.details["verified"], false);
        assert_eq!(e.user_id, None);
        assert_eq!(e.ip_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(e.user_agent.as_deref(), Some("probe/1"));
        assert_eq!(e.resource, "CedarGate::Token");
        assert!(e.error_message.as_deref().unwrap().contains("signature"));
    }
    // Signed by the identity provider: filed under the token's tenant.
    let t1 = until(&app, "t1", |r| counts(r).values().sum::<u64>() == 3).await;
    let c = counts(&t1);
    assert_eq!((c["expired"], c["audience"]), (2, 1), "{c:?}");
    assert!(t1
        .iter()
        .all(|e| e.user_id.as_deref() == Some("vic") && e.details["verified"] == true));
    // The invented tenant received nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(auth_records(&app, "t2").await.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn a_token_signs_in_once_however_often_it_is_used() {
    let (app, keys) = spawn_jwt_app_full(|_| {}, fast_flush).await;
    let first = keys.token("vic", "t1", &["viewer"], |c| c["jti"] = json!("jti-1"));
    let second = keys.token("vic", "t1", &["viewer"], |c| c["jti"] = json!("jti-2"));
    for _ in 0..5 {
        let r = app.post_as(&first, "/v1/authorize", &read_public()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = app.post_as(&second, "/v1/authorize", &read_public()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let records = until(&app, "t1", |r| r.len() >= 2).await;
    // Later uses added nothing meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = {
        let again = auth_records(&app, "t1").await;
        assert_eq!(again.len(), records.len());
        again
    };
    let mut ids: Vec<&str> = records
        .iter()
        .map(|e| e.details["tokenId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["jti-1", "jti-2"]);
    for e in &records {
        assert!(e.success);
        assert_eq!(e.details["event"], "sign-in");
        assert_eq!(e.user_id.as_deref(), Some("vic"));
        assert_eq!(e.details["clientId"], AUDIENCE);
        assert!(e.details["expiresAt"].as_i64().unwrap() > chrono::Utc::now().timestamp());
        assert!(e.details["issuedAt"].is_i64());
        assert_eq!(e.details["surface"], "sidecar");
    }
    app.shutdown().await;
}

/// Many sources, many bad tokens: one record per source and reason per
/// interval, every refusal counted, and valid requests still answered.
#[tokio::test]
async fn a_flood_of_bad_tokens_becomes_counted_records() {
    let (app, keys) = spawn_jwt_app_full(
        |_| {},
        |s| {
            s.auth_flush_interval = Duration::from_secs(3600);
        },
    )
    .await;
    let good = keys.token("vic", "t1", &["viewer"], |_| {});
    let sources = 50;
    let per_source = 20;
    let mut sent = 0u64;
    for i in 0..per_source {
        let mut batch = tokio::task::JoinSet::new();
        for s in 0..sources {
            let addr = app.addr;
            batch.spawn(async move {
                let ip = format!("198.51.100.{s}");
                let r = cedargate::sidecar::client::send_with(
                    addr,
                    Method::POST,
                    "/v1/authorize",
                    &[("authorization", "Bearer x.y.z"), ("x-forwarded-for", &ip)],
                    read_public().to_string(),
                )
                .await
                .unwrap();
                assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            });
        }
        while let Some(done) = batch.join_next().await {
            done.unwrap();
        }
        sent += sources;
        let r = app.post_as(&good, "/v1/authorize", &read_public()).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "request {i} among the flood: {}",
            r.body
        );
    }
    // The interval ends with the server: one record per source.
    let store = app.store.clone();
    app.shutdown().await;
    let q = AuditQuery::new(
        TenantId::parse(PLATFORM_PARTITION).unwrap(),
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now() + chrono::Duration::hours(1),
        1000,
    );
    let records: Vec<AuditEvent> = store
        .all_audit_events(&q)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "Authenticate")
        .collect();
    assert_eq!(records.len(), usize::try_from(sources).unwrap());
    assert_eq!(counts(&records)["malformed"], sent);
    assert!(records.iter().all(|e| e.details["count"] == per_source));
}

#[tokio::test]
async fn the_management_api_records_its_refusals() {
    let (app, _keys) = spawn_admin_app(fast_flush).await;
    let r = app
        .send_with(
            Method::GET,
            "/v1/tenants/t1",
            &[("authorization", "Bearer nope")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let records = until(&app, PLATFORM_PARTITION, |r| !r.is_empty()).await;
    assert_eq!(records[0].details["surface"], "admin");
    assert_eq!(records[0].details["reason"], "malformed");
    app.shutdown().await;
}

/// The Verified Permissions token calls leave the same records as the
/// native API: refusals counted in the right partition, one sign-in per
/// token whichever surface saw it first.
#[tokio::test]
async fn verified_permissions_token_calls_leave_the_same_records() {
    let (app, keys) = spawn_jwt_app_full(|_| {}, fast_flush).await;
    let avp = |token: String| {
        let app = &app;
        async move {
            let body = json!({
                "policyStoreId": "cedargate",
                "identityToken": token,
                "action": {"actionType": "CedarGate::Action", "actionId": "Read"},
                "resource": {"entityType": "CedarGate::Document", "entityId": "d-public"},
            });
            app.send_with(
                Method::POST,
                "/",
                &[
                    ("x-amz-target", "VerifiedPermissions.IsAuthorizedWithToken"),
                    ("content-type", "application/x-amz-json-1.0"),
                ],
                body.to_string(),
            )
            .await
        }
    };
    // Used on the native API first, then here: one sign-in, the native one.
    let both = keys.token("vic", "t1", &["viewer"], |c| c["jti"] = json!("jti-both"));
    for _ in 0..2 {
        let r = app.post_as(&both, "/v1/authorize", &read_public()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // Used here only: one sign-in, from this surface.
    let here = keys.token("vic", "t1", &["viewer"], |c| c["jti"] = json!("jti-avp"));
    for token in [&both, &both, &here, &here, &here] {
        let r = avp(token.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // Refused: a forged tenant under a real signature, and an expired one.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = here.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims("mallory", "t2", &["admin"]).to_string()),
        parts[2]
    );
    let expired = keys.token("vic", "t1", &["viewer"], |c| {
        c["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    });
    for token in [&forged, &forged, &expired] {
        let r = avp(token.clone()).await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
    }

    let t1 = until(&app, "t1", |r| {
        r.iter().filter(|e| e.success).count() == 2 && counts(r).values().sum::<u64>() == 1
    })
    .await;
    let mut sign_ins: Vec<(String, String)> = t1
        .iter()
        .filter(|e| e.success)
        .map(|e| {
            (
                e.details["tokenId"].as_str().unwrap().to_string(),
                e.details["surface"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    sign_ins.sort();
    assert_eq!(
        sign_ins,
        [
            ("jti-avp".to_string(), "avp".to_string()),
            ("jti-both".to_string(), "sidecar".to_string())
        ]
    );
    assert_eq!(counts(&t1)["expired"], 1);
    let platform = until(&app, PLATFORM_PARTITION, |r| {
        counts(r).get("bad_signature") == Some(&2)
    })
    .await;
    for e in platform.iter().filter(|e| !e.success) {
        assert_eq!(e.details["surface"], "avp");
        assert_eq!(e.details["claimedTenant"], "t2");
        assert_eq!(e.details["verified"], false);
    }
    // Later uses added nothing; the invented tenant received nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(auth_records(&app, "t1").await.len(), t1.len());
    assert!(auth_records(&app, "t2").await.is_empty());
    app.shutdown().await;
}
