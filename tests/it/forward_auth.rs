//! Forward-auth as Envoy (path prefix), nginx (`X-Original-*`), Traefik and
//! Caddy (`X-Forwarded-*`) ask it: allow with identity headers, deny with a
//! message safe for the end user, unmapped and unsafe paths denied. Each
//! sidecar reads only the configured proxy's way: other proxies' headers
//! are ignored, a missing or repeated one is refused.

use hyper::{Method, StatusCode};

use crate::helpers::*;
use cedargate::sidecar::forward::ProxyConvention;

async fn ask(
    app: &TestApp,
    token: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> cedargate::sidecar::client::Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    app.send_with(Method::GET, path, &headers, "").await
}

/// A token-mode sidecar behind `convention`'s proxy.
async fn behind(convention: ProxyConvention) -> (TestApp, Keys) {
    spawn_jwt_app_full(|_| {}, |s| s.forward_auth.convention = convention).await
}

#[tokio::test]
async fn allow_sets_identity_headers_whatever_the_client_sent() {
    // Envoy ext_authz with path_prefix (the default): the original path
    // follows the prefix.
    let (app, keys) = spawn_jwt_app().await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = ask(
        &app,
        &vic,
        "/v1/forward-auth/documents/d-public",
        &[("x-tenant-id", "t2"), ("x-user-id", "root")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["x-tenant-id"], "t1");
    assert_eq!(r.headers["x-user-id"], "vic");
    assert_eq!(r.headers["x-decision-id"].len(), 36);
    app.shutdown().await;

    // nginx auth_request.
    let (app, keys) = behind(ProxyConvention::Nginx).await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = ask(
        &app,
        &vic,
        "/v1/forward-auth",
        &[
            ("x-original-uri", "/search?q=report"),
            ("x-original-method", "GET"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.shutdown().await;

    // Traefik ForwardAuth and Caddy forward_auth.
    for convention in [ProxyConvention::Traefik, ProxyConvention::Caddy] {
        let (app, keys) = behind(convention).await;
        let vic = keys.token("vic", "t1", &["viewer"], |_| {});
        let headers = |method| {
            [
                ("x-forwarded-uri", "/documents/d-public"),
                ("x-forwarded-method", method),
            ]
        };
        let r = ask(&app, &vic, "/v1/forward-auth", &headers("GET")).await;
        assert_eq!(r.status, StatusCode::OK, "{convention:?}: {}", r.body);
        let r = ask(&app, &vic, "/v1/forward-auth", &headers("DELETE")).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{convention:?}: {}",
            r.body
        );
        app.shutdown().await;
    }
}

/// What a client adds through a proxy that passes its headers on: another
/// proxy's headers, or another path, change nothing; a missing or repeated
/// header of the configured proxy is refused, never defaulted.
#[tokio::test]
async fn only_the_configured_proxy_is_believed() {
    // The viewer may read a public document, not delete it.
    let delete = [
        ("x-original-uri", "/documents/d-public"),
        ("x-original-method", "DELETE"),
    ];
    let delete_fwd = [
        ("x-forwarded-uri", "/documents/d-public"),
        ("x-forwarded-method", "DELETE"),
    ];
    let read_nginx = [
        ("x-original-uri", "/documents/d-public"),
        ("x-original-method", "GET"),
    ];
    let read_fwd = [
        ("x-forwarded-uri", "/documents/d-public"),
        ("x-forwarded-method", "GET"),
    ];

    let (app, keys) = behind(ProxyConvention::Traefik).await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    // nginx's headers and Envoy's path do not override Traefik's.
    let mut h = delete_fwd.to_vec();
    h.extend(read_nginx);
    let r = ask(&app, &vic, "/v1/forward-auth/documents/d-public", &h).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Left out: the method is not taken to be GET, the URI not the path.
    for (missing, h) in [
        (
            "x-forwarded-method",
            [("x-forwarded-uri", "/documents/d-public")],
        ),
        ("x-forwarded-uri", [("x-forwarded-method", "GET")]),
    ] {
        let r = ask(&app, &vic, "/v1/forward-auth/documents/d-public", &h).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], "missing_original_request");
        assert!(r.body.contains(missing), "{}", r.body);
    }
    // Twice: one of them came from the client.
    let mut h = read_fwd.to_vec();
    h.push(("x-forwarded-uri", "/search"));
    let r = ask(&app, &vic, "/v1/forward-auth", &h).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "duplicate_header");
    app.shutdown().await;

    let (app, keys) = behind(ProxyConvention::Nginx).await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let mut h = delete.to_vec();
    h.extend(read_fwd);
    let r = ask(&app, &vic, "/v1/forward-auth", &h).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = ask(&app, &vic, "/v1/forward-auth", &delete[..1]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    app.shutdown().await;

    // Envoy: no header is read at all.
    let (app, keys) = spawn_jwt_app().await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let mut h = read_nginx.to_vec();
    h.extend(read_fwd);
    let r = app
        .send_with(
            Method::DELETE,
            "/v1/forward-auth/documents/d-public",
            &[h.as_slice(), &[("authorization", &format!("Bearer {vic}"))]].concat(),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    app.shutdown().await;
}

#[tokio::test]
async fn denials_say_why_without_revealing_other_tenants() {
    let (app, keys) = spawn_jwt_app().await;
    let mallory = keys.token("mallory", "t2", &["admin"], |_| {});
    let other = ask(&app, &mallory, "/v1/forward-auth/documents/d-priv", &[]).await;
    let missing = ask(&app, &mallory, "/v1/forward-auth/documents/never-was", &[]).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert_eq!(other.json()["error"], missing.json()["error"]);
    assert_eq!(
        other.headers["x-cedargate-reason"],
        missing.headers["x-cedargate-reason"]
    );
    assert!(
        !other.body.contains("t1") && !other.body.contains("tenant-isolation"),
        "{}",
        other.body
    );

    // Another tenant's usage: the same words.
    let usage = ask(&app, &mallory, "/v1/forward-auth/tenants/t1/usage", &[]).await;
    assert_eq!(usage.status, StatusCode::FORBIDDEN);
    assert_eq!(usage.json()["error"], other.json()["error"]);

    // Inside one's own tenant, a forbid with a message explains itself.
    let fred = keys.token("fred", "full", &["editor"], |_| {});
    let auth = format!("Bearer {fred}");
    let r = app
        .send_with(
            Method::POST,
            "/v1/forward-auth/documents",
            &[
                ("authorization", &auth),
                ("x-file-type", "pdf"),
                ("x-original-content-length", "100"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        r.json()["error"]["message"],
        "Your organization has reached its document limit."
    );
    assert!(r.json()["decision_id"].is_string());

    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = ask(&app, &vic, "/v1/forward-auth/documents/d-secret", &[]).await;
    assert_eq!(
        r.json()["error"]["message"],
        "This document is classified above your clearance level."
    );
    app.shutdown().await;
}

#[tokio::test]
async fn unmapped_unsafe_and_malformed_requests_are_denied() {
    let (app, keys) = spawn_jwt_app().await;
    let adm = keys.token("adm", "t1", &["admin"], |_| {});
    for path in [
        "/v1/forward-auth/admin/users",
        "/v1/forward-auth/documents/../search",
        "/v1/forward-auth/documents/a%2Fb",
    ] {
        let r = ask(&app, &adm, path, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    // CreateDocument without the file type it needs.
    let auth = format!("Bearer {adm}");
    let r = app
        .send_with(
            Method::POST,
            "/v1/forward-auth/documents",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fileType"));
    app.shutdown().await;
    // A bad original URI or method.
    let (app, keys) = behind(ProxyConvention::Nginx).await;
    let adm = keys.token("adm", "t1", &["admin"], |_| {});
    for (uri, method) in [("/documents/x", "G E T"), ("http://[::1", "GET")] {
        let r = ask(
            &app,
            &adm,
            "/v1/forward-auth",
            &[("x-original-uri", uri), ("x-original-method", method)],
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn unmapped_routes_can_be_allowed_by_configuration() {
    let (app, keys) = spawn_jwt_app_full(
        |_| {},
        |s| {
            s.forward_auth.unmapped = cedargate::sidecar::forward::Unmapped::Allow;
        },
    )
    .await;
    let vic = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = ask(&app, &vic, "/v1/forward-auth/health/page", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-tenant-id"], "t1");
    // Still no entry without a valid token.
    let r = app.get("/v1/forward-auth/health/page").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}
