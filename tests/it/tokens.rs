//! Token identity through the real server: a corpus of bad tokens, each a
//! 401 with a Bearer challenge (never a 500); the principal taken only from
//! a verified token; development keys refused unless allowed; JWKS
//! refreshes on unknown key ids, rate-limited.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with a hand-made header and claims and the given signature.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

fn read_public() -> Value {
    json!({"action": "Read", "resource": {"type": "Document", "id": "d-public"}})
}

#[tokio::test]
async fn bad_tokens_are_401_never_500() {
    let (app, keys) = spawn_jwt_app().await;
    let now = chrono::Utc::now().timestamp();
    let good = keys.token("vic", "t1", &["viewer"], |_| {});

    // The control: a good token is accepted, by either key.
    let r = app.post_as(&good, "/v1/authorize", &read_public()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["decision"], "Allow");
    let rsa = keys.rsa_token(&claims("vic", "t1", &["viewer"]));
    let r = app.post_as(&rsa, "/v1/authorize", &read_public()).await;
    assert_eq!(r.json()["decision"], "Allow", "{}", r.body);

    let c = claims("vic", "t1", &["viewer"]);
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let mut evil = c.clone();
        evil["custom:tenant_id"] = json!("t2");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(evil.to_string().as_bytes()),
            parts[2]
        )
    };
    let corpus: Vec<(&str, String)> = vec![
        (
            "alg none",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &c, b""),
        ),
        (
            "alg none with a kid",
            raw_token(&json!({"alg": "none", "kid": keys.dev.kid()}), &c, b""),
        ),
        (
            "HS256 signed with the RSA public key",
            hs256(
                &json!({"alg": "HS256", "kid": RSA_KID}),
                &c,
                RSA_PUB_PEM.as_bytes(),
            ),
        ),
        ("RS256 header on the ES256 key", {
            let parts: Vec<String> = keys
                .token("vic", "t1", &["viewer"], |_| {})
                .split('.')
                .map(String::from)
                .collect();
            format!(
                "{}.{}.{}",
                b64(json!({"alg": "RS256", "kid": keys.dev.kid()})
                    .to_string()
                    .as_bytes()),
                parts[1],
                parts[2]
            )
        }),
        (
            "unknown kid",
            raw_token(&json!({"alg": "ES256", "kid": "nobody"}), &c, &[0u8; 64]),
        ),
        (
            "no kid",
            raw_token(&json!({"alg": "ES256"}), &c, &[0u8; 64]),
        ),
        (
            "expired",
            keys.token("vic", "t1", &[], |c| c["exp"] = json!(now - 3600)),
        ),
        (
            "not yet valid",
            keys.token("vic", "t1", &[], |c| c["nbf"] = json!(now + 3600)),
        ),
        (
            "no exp",
            keys.token("vic", "t1", &[], |c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "wrong iss",
            keys.token("vic", "t1", &[], |c| c["iss"] = json!("https://evil.test")),
        ),
        (
            "wrong aud",
            keys.token("vic", "t1", &[], |c| c["aud"] = json!("client-b")),
        ),
        (
            "access token with a wrong client_id",
            keys.token("vic", "t1", &[], |c| {
                c["token_use"] = json!("access");
                c["client_id"] = json!("client-b");
                c["aud"] = json!(AUDIENCE);
            }),
        ),
        (
            "token_use refresh",
            keys.token("vic", "t1", &[], |c| c["token_use"] = json!("refresh")),
        ),
        (
            "no token_use",
            keys.token("vic", "t1", &[], |c| {
                c.as_object_mut().unwrap().remove("token_use");
            }),
        ),
        ("tampered payload", tampered),
        ("truncated", good[..good.len() - 12].to_string()),
        (
            "only two parts",
            good.rsplit_once('.').unwrap().0.to_string(),
        ),
        ("garbage", "not-a-token".into()),
        (
            "missing tenant claim",
            keys.token("vic", "t1", &[], |c| {
                c.as_object_mut().unwrap().remove("custom:tenant_id");
            }),
        ),
        (
            "tenant claim of the wrong type",
            keys.token("vic", "t1", &[], |c| c["custom:tenant_id"] = json!(["t1"])),
        ),
        (
            "tenant claim that is not an id",
            keys.token("vic", "t1", &[], |c| {
                c["custom:tenant_id"] = json!("t1 OR 1=1")
            }),
        ),
        (
            "groups not a list",
            keys.token("vic", "t1", &[], |c| c["cognito:groups"] = json!("admin")),
        ),
        (
            "clearance out of range",
            keys.token("vic", "t1", &[], |c| c["custom:clearance"] = json!("7")),
        ),
        (
            "oversized",
            keys.token("vic", "t1", &[], |c| c["pad"] = json!("x".repeat(10_000))),
        ),
    ];
    for (what, token) in &corpus {
        let r = app.post_as(token, "/v1/authorize", &read_public()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        let challenge = r
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer ") && c.contains("invalid_token")),
            "{what}: {challenge:?}"
        );
        assert_eq!(r.json()["error"]["code"], "invalid_token", "{what}");
        assert!(
            !r.body.contains(token.as_str()),
            "{what}: the token is echoed"
        );

        // The same through forward-auth.
        let auth = format!("Bearer {token}");
        let r = app
            .send_with(
                Method::GET,
                "/v1/forward-auth/documents/d-public",
                &[("authorization", &auth)],
                "",
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "forward-auth {what}: {}",
            r.body
        );
        assert!(
            r.headers.contains_key("www-authenticate"),
            "forward-auth {what}"
        );
    }

    // No token at all, and other schemes.
    for headers in [
        vec![],
        vec![("authorization", "Basic dXNlcjpwYXNz")],
        vec![("authorization", "Bearer ")],
    ] {
        let r = app
            .send_with(
                Method::POST,
                "/v1/authorize",
                &headers,
                read_public().to_string(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{headers:?}: {}",
            r.body
        );
        assert!(r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm="));
    }
    let metrics = app.get("/metrics").await.body;
    assert!(!metrics.contains("decision=\"allow\"} 0"), "{metrics}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_principal_comes_only_from_the_token() {
    let (app, keys) = spawn_jwt_app().await;
    let token = keys.token("mallory", "t2", &["admin"], |_| {});
    // A body principal next to a token is refused.
    let mut body = read_public();
    body["principal"] = json!({"id": "alice", "tenant": "t1", "roles": ["admin"]});
    let r = app.post_as(&token, "/v1/authorize", &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "principal_not_allowed");

    // The token's tenant decides: t2's admin cannot read t1's document.
    let r = app.post_as(&token, "/v1/authorize", &read_public()).await;
    assert_eq!(r.json()["decision"], "Deny");

    // Batches: one principal, the token's; an item naming one is refused.
    let batch = json!({"requests": [read_public(), body]});
    let r = app
        .post_as(
            &keys.token("vic", "t1", &["viewer"], |_| {}),
            "/v1/authorize/batch",
            &batch,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["results"][0]["decision"], "Allow");
    assert_eq!(
        r.json()["results"][1]["error"]["code"],
        "principal_not_allowed"
    );
    let r = app.post("/v1/authorize/batch", &batch).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}

#[tokio::test]
async fn trusted_mode_refuses_tokens() {
    let app = spawn_app().await;
    let body = json!({"principal": {"id": "vic", "tenant": "t1"}, "action": "Read", "resource": {"type": "Document", "id": "d-public"}});
    let r = app.post_as("abc.def.ghi", "/v1/authorize", &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "token_not_allowed");
    app.shutdown().await;
}

#[tokio::test]
async fn development_keys_need_explicit_permission() {
    let (app, keys) = spawn_jwt_app_with(|c| c.allow_dev_keys = false).await;
    let r = app
        .post_as(
            &keys.token("vic", "t1", &["viewer"], |_| {}),
            "/v1/authorize",
            &read_public(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The RSA key (not a development key) still works.
    let r = app
        .post_as(
            &keys.rsa_token(&claims("vic", "t1", &["viewer"])),
            "/v1/authorize",
            &read_public(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.shutdown().await;
}

/// A JWKS endpoint on loopback that counts its fetches and serves whatever
/// `jwks` holds.
async fn jwks_server(
    jwks: Arc<parking_lot::Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
) -> std::net::SocketAddr {
    serve_fn(move |_req| {
        fetches.fetch_add(1, Ordering::SeqCst);
        jwks.lock().to_string()
    })
    .await
}

#[tokio::test]
async fn jwks_refreshes_on_a_new_kid_at_a_bounded_rate() {
    let old = cedargate::identity::devkey::DevKey::generate();
    let new = cedargate::identity::devkey::DevKey::generate();
    let jwks = Arc::new(parking_lot::Mutex::new(old.jwks()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let addr = jwks_server(jwks.clone(), fetches.clone()).await;
    let (app, _) = spawn_jwt_app_with(|c| {
        c.jwks =
            cedargate::identity::JwksSource::Url(format!("http://{addr}/.well-known/jwks.json"));
        c.min_refresh_interval = std::time::Duration::from_millis(300);
    })
    .await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "loaded once at start-up");
    let mint = |k: &cedargate::identity::devkey::DevKey| {
        k.mint(&claims("vic", "t1", &["viewer"])).unwrap()
    };
    let r = app
        .post_as(&mint(&old), "/v1/authorize", &read_public())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // The issuer rotates to a new key; a token signed with it names a kid
    // the sidecar has not seen. Wait out the start-up refresh window first.
    *jwks.lock() = new.jwks();
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let r = app
        .post_as(&mint(&new), "/v1/authorize", &read_public())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // A flood of made-up kids causes no more than one fetch per window.
    let bogus = |i: usize| {
        raw_token(
            &json!({"alg": "ES256", "kid": format!("bogus-{i}")}),
            &claims("vic", "t1", &[]),
            &[0u8; 64],
        )
    };
    let mut tasks = Vec::new();
    for i in 0..50 {
        let token = bogus(i);
        let addr = app.addr;
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            cedargate::sidecar::client::send_with(
                addr,
                Method::POST,
                "/v1/authorize",
                &[("authorization", &auth)],
                read_public().to_string(),
            )
            .await
            .unwrap()
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let after_flood = fetches.load(Ordering::SeqCst);
    assert!(after_flood <= 3, "{after_flood} fetches");
    app.shutdown().await;
}

#[tokio::test]
async fn remembered_tokens_still_expire() {
    let (app, keys) = spawn_jwt_app_with(|c| c.leeway = std::time::Duration::ZERO).await;
    let now = chrono::Utc::now().timestamp();
    let token = keys.token("vic", "t1", &["viewer"], |c| c["exp"] = json!(now + 2));
    for _ in 0..3 {
        let r = app.post_as(&token, "/v1/authorize", &read_public()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // Wait until the token is past its `exp` (seconds resolution).
    while chrono::Utc::now().timestamp() < now + 3 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = app.post_as(&token, "/v1/authorize", &read_public()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    app.shutdown().await;
}
