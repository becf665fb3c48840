//! The admin console (`/console/`) over HTTP, as a browser uses it: the
//! development sign-in, sessions and sign-out, CSRF, pages about other
//! tenants, and that every console action is refused exactly as the API
//! refuses the same call. (A real browser drives it through OpenID Connect
//! in scripts/test-browser.sh.)

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    audit_records_of, call, etag, eventually, spawn_admin_app, spawn_console_app, Keys, TestApp,
};
use cedargate::sidecar::client::Reply;

/// A browser's cookie jar for one console session.
struct Browser<'a> {
    app: &'a TestApp,
    cookie: String,
    csrf: String,
}

/// The value of `name` in a `Set-Cookie` of `r`.
fn set_cookie<'r>(r: &'r Reply, name: &str) -> Option<&'r str> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn cookie_value(set_cookie: &str) -> String {
    let first = set_cookie.split(';').next().unwrap_or_default();
    first
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// The value of the first hidden field `name` in a page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {body}"))
        + marker.len();
    body[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

fn location(r: &Reply) -> &str {
    r.headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

async fn sign_in<'a>(app: &'a TestApp, tenant: &str, user: &str, role: &str) -> Browser<'a> {
    let login = app.send_with(Method::GET, "/console/login", &[], "").await;
    assert_eq!(login.status, StatusCode::OK);
    let login_cookie = cookie_value(set_cookie(&login, "cedargate_login").expect("login cookie"));
    let fields = form(&[
        ("login", &hidden(&login.body, "login")),
        ("tenant", tenant),
        ("user", user),
        ("role", role),
        ("clearance", "1"),
    ]);
    let r = app
        .send_with(
            Method::POST,
            "/console/login/dev",
            &[("cookie", &format!("cedargate_login={login_cookie}"))],
            fields,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let session = set_cookie(&r, "cedargate_console").expect("session cookie");
    let mut b = Browser {
        app,
        cookie: cookie_value(session),
        csrf: String::new(),
    };
    // Every page with a header carries the session's CSRF token (sign-out).
    let page = b.get(&format!("/console/t/{tenant}")).await;
    b.csrf = hidden(&page.body, "csrf");
    b
}

impl Browser<'_> {
    fn jar(&self) -> String {
        format!("cedargate_console={}", self.cookie)
    }

    async fn get(&self, path: &str) -> Reply {
        self.app
            .send_with(Method::GET, path, &[("cookie", &self.jar())], "")
            .await
    }

    /// A form post with the session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &form(&all), &[]).await
    }

    async fn post_raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let jar = self.jar();
        let mut h = vec![("cookie", jar.as_str())];
        h.extend_from_slice(headers);
        self.app
            .send_with(Method::POST, path, &h, body.to_string())
            .await
    }
}

async fn document(app: &TestApp, keys: &Keys, id: &str) -> Value {
    let admin = keys.token("root", "t1", &["admin"], |_| {});
    let r = call(
        app,
        &admin,
        Method::GET,
        &format!("/v1/tenants/t1/documents/{id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn sign_in_keeps_a_server_side_session_until_sign_out() {
    let (app, _keys) = spawn_console_app(|_| {}).await;
    let r = app.send_with(Method::GET, "/console/t/t1", &[], "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/console/login");
    assert_eq!(
        r.headers.get("cache-control").unwrap(),
        "no-store",
        "console pages are never cached"
    );

    // The sign-in form needs the cookie set with it (login CSRF).
    let login = app.send_with(Method::GET, "/console/login", &[], "").await;
    let fields = form(&[
        ("login", &hidden(&login.body, "login")),
        ("tenant", "t1"),
        ("user", "alice"),
        ("role", "admin"),
    ]);
    let r = app
        .send_with(Method::POST, "/console/login/dev", &[], fields)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "cedargate_console").is_none());

    let b = sign_in(&app, "t1", "alice", "admin").await;
    let login = app.send_with(Method::GET, "/console/login", &[], "").await;
    let fields = form(&[
        ("login", &hidden(&login.body, "login")),
        ("tenant", "t1"),
        ("user", "alice"),
        ("role", "admin"),
    ]);
    let jar = format!(
        "cedargate_login={}",
        cookie_value(set_cookie(&login, "cedargate_login").unwrap())
    );
    let r = app
        .send_with(
            Method::POST,
            "/console/login/dev",
            &[("cookie", &jar)],
            fields,
        )
        .await;
    let attrs = set_cookie(&r, "cedargate_console").unwrap();
    assert!(attrs.contains("HttpOnly"), "{attrs}");
    assert!(attrs.contains("SameSite=Lax"), "{attrs}");
    assert!(attrs.contains("Path=/console/"), "{attrs}");
    assert!(!attrs.contains("Secure"), "plain HTTP on loopback: {attrs}");
    assert_eq!(b.cookie.len(), 43, "256 random bits");

    // A tenant administrator lands on their tenant.
    let r = b.get("/console/").await;
    assert_eq!(location(&r), "/console/t/t1");
    let r = b.get("/console/t/t1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Usage and limits"), "{}", r.body);
    assert!(
        r.body
            .contains("30 days for deleted documents (the service's default)"),
        "the service's recovery window is stated: {}",
        r.body
    );
    assert!(r.headers.get("content-security-policy").is_some());
    assert_eq!(r.headers.get("x-frame-options").unwrap(), "DENY");
    assert!(
        !r.body.contains(&b.cookie),
        "the page never shows the session id"
    );

    // Sign-out needs the CSRF token, ends the session and clears the cookie.
    let r = b.post_raw("/console/logout", "", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/console/t/t1").await.status, StatusCode::OK);
    let r = b.post("/console/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(set_cookie(&r, "cedargate_console")
        .unwrap()
        .contains("Max-Age=0"));
    let r = b.get("/console/t/t1").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works"
    );
    assert_eq!(location(&r), "/console/login");
}

#[tokio::test]
async fn an_idle_session_ends() {
    let (app, _keys) = spawn_console_app(|c| c.session_idle_secs = 1).await;
    let b = sign_in(&app, "t1", "alice", "admin").await;
    assert_eq!(b.get("/console/t/t1").await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = b.get("/console/t/t1").await;
    assert_eq!(location(&r), "/console/login");
}

#[tokio::test]
async fn forms_without_the_session_csrf_token_are_refused() {
    let (app, keys) = spawn_console_app(|_| {}).await;
    let alice = sign_in(&app, "t1", "alice", "admin").await;
    let other = sign_in(&app, "t1", "carol", "admin").await;
    let before = document(&app, &keys, "d-priv").await;
    let share = [
        ("kind", "role"),
        ("grantee", "auditor"),
        ("permission", "read"),
    ];
    let path = "/console/t/t1/documents/d-priv/share";

    let refusals = [
        ("no token", form(&share), vec![]),
        (
            "a wrong token",
            form(&[&[("csrf", "x".repeat(43).as_str())][..], &share].concat()),
            vec![],
        ),
        (
            "another session's token",
            form(&[&[("csrf", other.csrf.as_str())][..], &share].concat()),
            vec![],
        ),
        (
            "a cross-site origin",
            form(&[&[("csrf", alice.csrf.as_str())][..], &share].concat()),
            vec![("origin", "https://evil.example")],
        ),
    ];
    for (what, body, headers) in &refusals {
        let r = alice.post_raw(path, body, headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
        assert!(r.body.contains("class=\"problem\""), "{what}");
    }
    assert_eq!(
        document(&app, &keys, "d-priv").await,
        before,
        "nothing changed"
    );
    assert!(audit_records_of(&app, "t1", "ShareDocument")
        .await
        .is_empty());

    let r = alice.post(path, &share).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let after = document(&app, &keys, "d-priv").await;
    assert_eq!(
        after["sharedWith"],
        json!([{"role": "auditor", "permission": "read"}])
    );
}

/// What a viewer (who may do none of it) gets from the console and from the
/// API for the same operation.
#[tokio::test]
async fn every_console_action_is_refused_exactly_as_the_api_refuses_it() {
    let (app, keys) = spawn_console_app(|_| {}).await;
    let viewer = sign_in(&app, "t1", "victor", "viewer").await;
    let home = viewer.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("id=\"no-sections\""), "{}", home.body);
    let token = keys.token("victor", "t1", &["viewer"], |_| {});
    let admin = keys.token("root", "t1", &["admin"], |_| {});
    let etag = etag(&call(&app, &admin, Method::GET, "/v1/tenants/t1", &[], None).await);
    let before: Vec<Value> = documents_of(&app, &admin).await;
    let tenant = json!({"tenantId": "newco", "name": "New", "status": "active", "createdAt": "2026-01-01T00:00:00Z",
        "subscription": {"tier": "basic", "startDate": "2026-01-01", "features": []},
        "limits": {"maxDocuments": 1, "maxUsers": 1, "maxStorageGB": 1, "maxQueriesPerMonth": 1},
        "settings": {"dataRetentionDays": 30, "allowedFileTypes": []}});
    let doc = json!({"visibility": "private", "fileType": "pdf"});

    // (console page, its form if posted, the API call it stands for)
    type Fields<'a> = Option<Vec<(&'a str, &'a str)>>;
    type Api<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>, Option<Value>);
    let cases: Vec<(&str, Fields, Api)> = vec![
        (
            "/console/tenants",
            None,
            (Method::GET, "/v1/tenants", vec![], None),
        ),
        (
            "/console/tenants",
            Some(vec![
                ("tenantId", "newco"),
                ("name", "New"),
                ("tier", "basic"),
                ("status", "active"),
                ("maxDocuments", "1"),
                ("maxUsers", "1"),
                ("maxStorageGB", "1"),
                ("maxQueriesPerMonth", "1"),
                ("dataRetentionDays", "30"),
            ]),
            (Method::POST, "/v1/tenants", vec![], Some(tenant)),
        ),
        (
            "/console/t/t1",
            None,
            (Method::GET, "/v1/tenants/t1", vec![], None),
        ),
        (
            "/console/t/t1/status",
            Some(vec![("status", "suspended"), ("etag", &etag)]),
            (Method::GET, "/v1/tenants/t1", vec![], None),
        ),
        (
            "/console/t/t1/documents",
            None,
            (Method::GET, "/v1/tenants/t1/documents", vec![], None),
        ),
        (
            "/console/t/t1/documents?view=deleted",
            None,
            (
                Method::GET,
                "/v1/tenants/t1/documents?deleted=only",
                vec![],
                None,
            ),
        ),
        (
            "/console/t/t1/documents/d-public/visibility",
            Some(vec![("visibility", "private")]),
            (
                Method::PUT,
                "/v1/tenants/t1/documents/d-public",
                vec![],
                Some(doc),
            ),
        ),
        (
            "/console/t/t1/documents/d-public/share",
            Some(vec![
                ("kind", "user"),
                ("grantee", "victor"),
                ("permission", "edit"),
            ]),
            (
                Method::POST,
                "/v1/tenants/t1/documents/d-public/shares",
                vec![],
                Some(json!({"userId": "victor", "permission": "edit"})),
            ),
        ),
        (
            "/console/t/t1/documents/d-shared/unshare",
            Some(vec![("grantee", "role:auditor")]),
            (
                Method::DELETE,
                "/v1/tenants/t1/documents/d-shared/shares/role:auditor",
                vec![],
                None,
            ),
        ),
        (
            "/console/t/t1/documents/d-public/delete",
            Some(vec![]),
            (
                Method::DELETE,
                "/v1/tenants/t1/documents/d-public",
                vec![],
                None,
            ),
        ),
        (
            "/console/t/t1/documents/d-deleted/restore",
            Some(vec![]),
            (
                Method::POST,
                "/v1/tenants/t1/documents/d-deleted/restore",
                vec![],
                None,
            ),
        ),
        (
            "/console/t/t1/audit",
            None,
            (Method::GET, "/v1/tenants/t1/audit-logs", vec![], None),
        ),
        (
            "/console/t/t1/audit/download?format=ocsf",
            None,
            (
                Method::GET,
                "/v1/tenants/t1/audit-logs?format=ocsf",
                vec![],
                None,
            ),
        ),
        (
            "/console/t/t1/access?user=bob&action=Read&document=d-public",
            None,
            (
                Method::POST,
                "/v1/tenants/t1/access-check",
                vec![],
                Some(
                    json!({"principal": {"userId": "bob"}, "action": "Read", "documentId": "d-public"}),
                ),
            ),
        ),
        (
            "/console/t/t1/access",
            None,
            (
                Method::POST,
                "/v1/tenants/t1/access-check",
                vec![],
                Some(json!({"principal": {"userId": "bob"}, "action": "Search"})),
            ),
        ),
        (
            "/console/t/t1/export",
            None,
            (Method::POST, "/v1/tenants/t1/export", vec![], None),
        ),
        (
            "/console/t/t1/export",
            Some(vec![]),
            (Method::POST, "/v1/tenants/t1/export", vec![], None),
        ),
    ];
    for (page, fields, (method, path, headers, body)) in cases {
        let api = call(&app, &token, method.clone(), path, &headers, body.as_ref()).await;
        assert!(
            api.status == StatusCode::FORBIDDEN || api.status == StatusCode::NOT_FOUND,
            "the API refuses a viewer {method} {path}: {} {}",
            api.status,
            api.body
        );
        let console = match &fields {
            None => viewer.get(page).await,
            Some(f) => viewer.post(page, f).await,
        };
        assert_eq!(
            console.status, api.status,
            "console {page} vs API {method} {path}: {}",
            console.body
        );
        assert!(
            console.body.contains("class=\"problem\""),
            "{page}: {}",
            console.body
        );
        assert!(
            !console.body.contains("\"error\""),
            "words, not JSON: {page}"
        );
    }
    assert_eq!(
        documents_of(&app, &admin).await,
        before,
        "no document changed"
    );
    let r = call(&app, &admin, Method::GET, "/v1/tenants/t1", &[], None).await;
    assert_eq!(r.json()["status"], "active");
}

/// Every document of t1, deleted ones included, as the API shows them.
async fn documents_of(app: &TestApp, admin: &str) -> Vec<Value> {
    let r = call(
        app,
        admin,
        Method::GET,
        "/v1/tenants/t1/documents?deleted=include&limit=100",
        &[],
        None,
    )
    .await;
    r.json()["documents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn pages_about_another_tenant_read_like_pages_about_a_missing_tenant() {
    let (app, _keys) = spawn_console_app(|_| {}).await;
    let b = sign_in(&app, "t1", "alice", "admin").await;
    let suffixes = [
        "",
        "/documents",
        "/documents?view=deleted",
        "/audit",
        "/audit?user=mallory",
        "/audit/download?format=ndjson",
        "/access",
        "/access?user=mallory&action=Read&document=d-other",
        "/access?user=mallory&action=Search",
        "/export",
    ];
    for suffix in suffixes {
        let other = b.get(&format!("/console/t/t2{suffix}")).await;
        let missing = b.get(&format!("/console/t/no-such-tenant{suffix}")).await;
        assert_eq!(other.status, missing.status, "{suffix}");
        assert_eq!(other.body, missing.body, "{suffix}");
        assert!(other.status.is_client_error(), "{suffix}: {}", other.status);
        assert!(
            !other.body.contains("t2") && !other.body.contains("mallory"),
            "{suffix}: {}",
            other.body
        );
    }
    let posts: [(&str, &[(&str, &str)]); 5] = [
        ("/status", &[("status", "suspended"), ("etag", "\"x\"")]),
        (
            "/documents/d-other/share",
            &[
                ("kind", "role"),
                ("grantee", "admin"),
                ("permission", "edit"),
            ],
        ),
        ("/documents/d-other/delete", &[]),
        (
            "/documents/d-other/visibility",
            &[("visibility", "private")],
        ),
        ("/export", &[]),
    ];
    for (suffix, fields) in posts {
        let other = b.post(&format!("/console/t/t2{suffix}"), fields).await;
        let missing = b
            .post(&format!("/console/t/no-such-tenant{suffix}"), fields)
            .await;
        assert_eq!(
            (other.status, &other.body),
            (missing.status, &missing.body),
            "{suffix}"
        );
        assert!(other.status.is_client_error(), "{suffix}");
    }
}

#[tokio::test]
async fn a_tenant_admin_shares_deletes_restores_and_sees_it_in_the_audit_log() {
    let (app, keys) = spawn_console_app(|_| {}).await;
    let b = sign_in(&app, "t1", "alice", "admin").await;
    let admin = keys.token("root", "t1", &["admin"], |_| {});
    let check = |doc: &'static str| json!({"principal": {"userId": "zoe", "roles": ["auditor"]}, "action": "Read", "documentId": doc});
    let ask = |doc: &'static str| {
        let body = check(doc);
        let admin = admin.clone();
        let app = &app;
        async move {
            let r = call(
                app,
                &admin,
                Method::POST,
                "/v1/tenants/t1/access-check",
                &[],
                Some(&body),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.json()["decision"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    assert_eq!(ask("d-priv").await, "Deny");

    // Shared with a role, and made visible to shares.
    let base = "/console/t/t1/documents/d-priv";
    let r = b
        .post(
            &format!("{base}/share"),
            &[
                ("kind", "role"),
                ("grantee", "auditor"),
                ("permission", "read"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(location(&r).ends_with("?notice=shared"), "{}", location(&r));
    let page = b.get(location(&r)).await.body;
    assert!(
        page.contains("role=\"status\">Shared.<"),
        "the notice in words"
    );
    let made_up = b
        .get("/console/t/t1/documents?notice=Call+us+now")
        .await
        .body;
    assert!(!made_up.contains("Call us") && !made_up.contains("role=\"status\""));
    let r = b
        .post(&format!("{base}/visibility"), &[("visibility", "shared")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    eventually("zoe may read d-priv", || async {
        ask("d-priv").await == "Allow"
    })
    .await;
    let page = b
        .get("/console/t/t1/access?user=zoe&roles=auditor&action=Read&document=d-priv")
        .await;
    assert!(
        page.body.contains("id=\"access-decision\">Allow"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("visibility.shared-read"),
        "the determining policy is named"
    );
    assert!(page.body.contains("permit"), "and its text shown");
    // Users the audit log has seen (here: a sidecar's decision record about
    // zoe) are offered with their roles and clearance.
    let mut seen = cedargate::audit::AuditEvent::new(
        "decision-of-zoe",
        chrono::Utc::now(),
        "t1",
        "Read",
        "CedarGate::Document::\"d-priv\"",
        json!({"kind": "decision", "decision": "Allow", "roles": ["auditor"], "clearance": 0}),
    );
    seen.user_id = Some("zoe".into());
    cedargate::audit::Chains::new("sidecar-elsewhere").stamp(&mut seen, &mut Default::default());
    app.store.put_audit(&[seen]).await.unwrap();
    let page = b.get("/console/t/t1/access").await.body;
    assert!(
        page.contains("/console/t/t1/access?user=zoe&amp;roles=auditor&amp;clearance=0"),
        "{page}"
    );
    let page = b
        .get("/console/t/t1/access?user=zoe&roles=auditor&action=Search")
        .await;
    assert!(page.body.contains("id=\"search-filter\""), "{}", page.body);

    // Unshared: denied again.
    let r = b
        .post(&format!("{base}/unshare"), &[("grantee", "role:auditor")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    eventually("zoe may no longer read d-priv", || async {
        ask("d-priv").await == "Deny"
    })
    .await;

    // Soft delete, then restore from "recently deleted".
    let r = b.post("/console/t/t1/documents/d-public/delete", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let live = b.get("/console/t/t1/documents").await.body;
    assert!(!live.contains("data-document=\"d-public\""));
    let deleted = b.get("/console/t/t1/documents?view=deleted").await.body;
    assert!(deleted.contains("data-document=\"d-public\""), "{deleted}");
    assert!(deleted.contains("days left"), "{deleted}");
    let r = b
        .post("/console/t/t1/documents/d-public/restore", &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(b
        .get("/console/t/t1/documents")
        .await
        .body
        .contains("data-document=\"d-public\""));

    // The audit page shows those records, and their chains verify.
    // (Management records reach the store from the audit spool shortly.)
    eventually("the records reach the store", || async {
        b.get("/console/t/t1/audit")
            .await
            .body
            .contains(">RestoreDocument<")
    })
    .await;
    let audit = b.get("/console/t/t1/audit").await.body;
    for action in [
        "ShareDocument",
        "UnshareDocument",
        "DeleteDocument",
        "RestoreDocument",
        "UpdateDocument",
    ] {
        assert!(
            audit.contains(&format!(">{action}<")),
            "{action} in {audit}"
        );
    }
    assert!(audit.contains("intact"), "{audit}");
    let filtered = b
        .get("/console/t/t1/audit?action=RestoreDocument")
        .await
        .body;
    assert!(filtered.contains(">RestoreDocument<") && !filtered.contains(">ShareDocument<"));
    let records = audit_records_of(&app, "t1", "ShareDocument").await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].user_id.as_deref(),
        Some("alice"),
        "recorded as the signed-in user"
    );

    // Downloads: NDJSON records and OCSF events, one per line.
    let r = b
        .get("/console/t/t1/audit/download?format=ndjson&action=ShareDocument")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .headers
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("attachment"));
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["action"], "ShareDocument");
    let r = b.get("/console/t/t1/audit/download?format=ocsf").await;
    assert!(r
        .body
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).unwrap()["class_uid"].is_number()));

    // Export: the tenant's NDJSON, downloaded.
    let r = b.post("/console/t/t1/export", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let first: Value = serde_json::from_str(r.body.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["record"]["tenantId"].as_str()),
        (Some("tenant"), Some("t1")),
        "{first}"
    );
}

#[tokio::test]
async fn a_platform_admin_creates_a_tenant_and_a_stale_status_form_says_so() {
    let (app, keys) = spawn_console_app(|_| {}).await;
    let b = sign_in(&app, "plat", "pat", "platform-admin").await;
    assert_eq!(location(&b.get("/console/").await), "/console/tenants");
    let page = b.get("/console/tenants?q=T1").await.body;
    assert!(page.contains(">t1<"), "search by id, any case: {page}");
    assert!(!page.contains(">t2<"));

    let r = b
        .post(
            "/console/tenants",
            &[
                ("tenantId", "newco"),
                ("name", "New Co <b>"),
                ("tier", "pro"),
                ("status", "trial"),
                ("features", "export"),
                ("maxDocuments", "10"),
                ("maxUsers", "5"),
                ("maxStorageGB", "1"),
                ("maxQueriesPerMonth", "1000"),
                ("dataRetentionDays", "30"),
                ("allowedFileTypes", "pdf"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = b
        .post(
            "/console/tenants",
            &[
                ("tenantId", "forever"),
                ("name", "F"),
                ("tier", "enterprise"),
                ("status", "active"),
                ("maxDocuments", "1"),
                ("maxUsers", "1"),
                ("maxStorageGB", "1"),
                ("maxQueriesPerMonth", "1"),
                ("dataRetentionDays", "4000000000"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("must be 1 to 36500"),
        "in words: {}",
        r.body
    );
    let page = b.get("/console/t/newco").await;
    assert!(
        page.body.contains("New Co &lt;b&gt;"),
        "escaped: {}",
        page.body
    );
    assert!(page.body.contains("id=\"status-form\""));
    let etag = hidden(&page.body, "etag");

    // Someone else changes the tenant; the form's ETag is stale.
    let root = keys.token("pat", "plat", &["platform-admin"], |_| {});
    let mut t = call(&app, &root, Method::GET, "/v1/tenants/newco", &[], None)
        .await
        .json();
    t["name"] = json!("Renamed");
    let r = call(
        &app,
        &root,
        Method::PUT,
        "/v1/tenants/newco",
        &[("if-match", &etag)],
        Some(&t),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = b
        .post(
            "/console/t/newco/status",
            &[("status", "active"), ("etag", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(r.body.contains("Someone else changed this"), "{}", r.body);

    let fresh = hidden(&b.get("/console/t/newco").await.body, "etag");
    let r = b
        .post(
            "/console/t/newco/status",
            &[("status", "active"), ("etag", &fresh)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = call(&app, &root, Method::GET, "/v1/tenants/newco", &[], None)
        .await
        .json();
    assert_eq!(
        (t["status"].as_str(), t["name"].as_str()),
        (Some("active"), Some("Renamed"))
    );
}

#[tokio::test]
async fn the_access_check_api_explains_and_keeps_tenants_apart() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    let admin = keys.token("alice", "t1", &["admin"], |_| {});
    let ask = |tenant: &str, body: Value| {
        let path = format!("/v1/tenants/{tenant}/access-check");
        let admin = admin.clone();
        let app = &app;
        async move { call(app, &admin, Method::POST, &path, &[], Some(&body)).await }
    };
    let r = ask(
        "t1",
        json!({"principal": {"userId": "bob", "clearance": 1}, "action": "Read", "documentId": "d-shared"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["decision"], "Allow");
    let p = &v["determiningPolicies"][0];
    assert_eq!(p["policyId"], "visibility.shared-read");
    assert!(
        p["text"].as_str().unwrap().contains("resource.readers"),
        "{p}"
    );

    let r = ask("t1", json!({"principal": {"userId": "nobody", "clearance": 0}, "action": "Read", "documentId": "d-priv"})).await;
    assert_eq!(r.json()["decision"], "Deny");
    assert!(r.json()["determiningPolicies"]
        .as_array()
        .unwrap()
        .is_empty());

    let r = ask(
        "t1",
        json!({"principal": {"userId": "bob", "roles": ["viewer"]}, "action": "Search"}),
    )
    .await;
    assert_eq!(r.json()["decision"], "Allow");
    assert!(
        r.json()["search"]["filters"]["kendra"].is_object(),
        "{}",
        r.body
    );

    for bad in [
        json!({"action": "Read"}),
        json!({"principal": {"userId": "b"}, "action": "Read", "extra": 1}),
        json!({"principal": {"userId": "b", "clearance": 9}, "action": "Read"}),
    ] {
        let r = ask("t1", bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }
    let r = ask(
        "t1",
        json!({"principal": {"userId": "b"}, "action": "Read"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "Read needs a document");

    // Another tenant's and a missing tenant's answers are the same refusal.
    let body =
        json!({"principal": {"userId": "mallory"}, "action": "Read", "documentId": "d-other"});
    let other = ask("t2", body.clone()).await;
    let missing = ask("no-such-tenant", body).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!((other.status, other.body), (missing.status, missing.body));

    // A role given ViewAuditLogs by a tenant policy, without ViewPolicies:
    // the decision and the policies' ids, not their text.
    let root = keys.token("pat", "plat", &["platform-admin"], |_| {});
    let policy = json!({"definition": {"static": {"statement":
        "permit (principal in CedarGate::Role::\"auditor\", action == CedarGate::Action::\"ViewAuditLogs\", resource);"}}});
    let r = call(
        &app,
        &root,
        Method::PUT,
        "/v1/tenants/t1/policies/auditors",
        &[],
        Some(&policy),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let auditor = keys.token("aud", "t1", &["auditor"], |_| {});
    let body = json!({"principal": {"userId": "bob", "clearance": 1}, "action": "Read", "documentId": "d-shared"});
    let ask_as_auditor = || async {
        call(
            &app,
            &auditor,
            Method::POST,
            "/v1/tenants/t1/access-check",
            &[],
            Some(&body),
        )
        .await
    };
    eventually("the auditor may ask", || async {
        ask_as_auditor().await.status == StatusCode::OK
    })
    .await;
    let seen = ask_as_auditor().await.json();
    assert_eq!(seen["decision"], "Allow");
    assert_eq!(
        seen["determiningPolicies"][0]["policyId"],
        "visibility.shared-read"
    );
    assert!(seen["determiningPolicies"][0]["text"].is_null(), "{seen}");

    // Without ViewAuditLogs: refused before the body is looked at.
    let viewer = keys.token("victor", "t1", &["viewer"], |_| {});
    let r = call(
        &app,
        &viewer,
        Method::POST,
        "/v1/tenants/t1/access-check",
        &[],
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn without_the_console_its_paths_are_the_apis_not_found() {
    let (app, _keys) = spawn_admin_app(|_| {}).await;
    let r = app.send_with(Method::GET, "/console/", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "not_found");
}

/// A document as `GET` shows it, made private, as a `PUT` body.
fn made_private(mut doc: Value) -> Value {
    for k in ["tenantId", "documentId", "deletedAt"] {
        doc.as_object_mut().unwrap().remove(k);
    }
    doc["visibility"] = json!("private");
    doc
}

/// Documents carry an `ETag`; a `PUT` with `If-Match` replaces only that
/// version, so the console's visibility form cannot bring back a share
/// removed since the page was read.
#[tokio::test]
async fn a_document_update_with_if_match_replaces_only_the_version_read() {
    let (app, keys) = spawn_admin_app(|_| {}).await;
    let admin = keys.token("alice", "t1", &["admin"], |_| {});
    let path = "/v1/tenants/t1/documents/d-shared";
    let read = call(&app, &admin, Method::GET, path, &[], None).await;
    let read_tag = etag(&read);
    assert_eq!(
        read_tag.len(),
        34,
        "a quoted 32-digit hex version: {read_tag}"
    );
    let doc = made_private(read.json());

    // Someone removes a share meanwhile: the stale write is refused.
    let r = call(
        &app,
        &admin,
        Method::DELETE,
        &format!("{path}/shares/role:auditor"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(
        &app,
        &admin,
        Method::PUT,
        path,
        &[("if-match", &read_tag)],
        Some(&doc),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    let now = call(&app, &admin, Method::GET, path, &[], None).await;
    assert_eq!(now.json()["visibility"], "shared", "nothing written");
    assert!(!now.body.contains("auditor"), "the share stays removed");

    // With the current version it goes through, and answers the next one.
    let current = etag(&now);
    assert_ne!(current, read_tag);
    let doc = made_private(now.json());
    let r = call(
        &app,
        &admin,
        Method::PUT,
        path,
        &[("if-match", &current)],
        Some(&doc),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let next = etag(&r);
    assert_ne!(next, current);
    let again = call(&app, &admin, Method::GET, path, &[], None).await;
    assert_eq!(etag(&again), next);

    // A missing document has no version to match.
    let r = call(
        &app,
        &admin,
        Method::PUT,
        "/v1/tenants/t1/documents/d-new",
        &[("if-match", &current)],
        Some(&json!({"visibility": "private", "fileType": "pdf"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
}
