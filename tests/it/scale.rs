//! Scale paths at a size the test suite can afford: `cedargate-admin
//! generate` writes a skewed data set and request mix, `import` streams it
//! into SQLite in one transaction (all of it or none of it, however late in
//! the file the problem is), and the sidecar answers the mix the same way
//! with caches far too small as with the defaults.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cedargate::generate::{tenant_id, WIDE_DOCUMENT};
use cedargate::ids::{DocumentId, TenantId};
use cedargate::store::{self, StoreUrl};
use serde_json::{json, Value};

use crate::helpers::spawn_in;

const TENANTS: usize = 300;
const DOCUMENTS: usize = 30_000;

fn admin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates the data set and `requests` request bodies into `dir`.
fn generate(dir: &Path, requests: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("data.json");
    let mix = dir.join("requests.ndjson");
    let stdout = ok(&admin(&[
        "generate",
        "--tenants",
        &TENANTS.to_string(),
        "--documents",
        &DOCUMENTS.to_string(),
        "--wide-users",
        "2000",
        "--wide-roles",
        "100",
        "--out",
        data.to_str().unwrap(),
        "--requests",
        mix.to_str().unwrap(),
        "--request-count",
        &requests.to_string(),
    ]));
    assert!(
        stdout.contains(&format!(
            "wrote {TENANTS} tenants and {} documents",
            DOCUMENTS + 1
        )),
        "{stdout}"
    );
    (data, mix)
}

fn import(url: &str, file: &Path) -> Output {
    admin(&["import", "--store", url, file.to_str().unwrap()])
}

async fn document_count(s: &dyn store::Store, tenant: &str) -> usize {
    let tenant = TenantId::parse(tenant).unwrap();
    let (mut n, mut after) = (0, None::<DocumentId>);
    loop {
        let (page, more) = s.documents_of(&tenant, after.as_ref(), 1000).await.unwrap();
        n += page.len();
        after = page.last().map(|d| d.document_id.clone());
        if !more {
            return n;
        }
    }
}

/// A file that goes wrong after thousands of records were already written
/// in the import's transaction leaves the store as it was; the whole file
/// then imports, with every document of every tenant.
#[tokio::test]
async fn a_streamed_import_is_all_or_nothing_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = generate(dir.path(), 10);
    let db = dir.path().join("s.db");
    let url = format!("sqlite:{}", db.display());
    let text = std::fs::read_to_string(&data).unwrap();
    let end = text.rfind("\n]}").unwrap();
    let with_last = |extra: &Value| format!("{},\n{}{}", &text[..end], extra, &text[end..]);
    let last_doc: Value = serde_json::from_str(
        text[..end]
            .lines()
            .last()
            .unwrap()
            .trim_end_matches(',')
            .trim(),
    )
    .unwrap();
    let mut unknown_tenant = last_doc.clone();
    unknown_tenant["tenantId"] = json!("t99999");
    let bad_files = [
        (with_last(&last_doc), "appears twice"),
        (with_last(&unknown_tenant), "unknown tenant t99999"),
        // Cut in the middle of a document, 80 % of the way through.
        (
            text[..text.len() * 4 / 5].to_string(),
            "not a valid import file",
        ),
        (
            text.replacen("\"documents\"", "\"docs\"", 1),
            "unknown field `docs`",
        ),
    ];
    for (i, (content, want)) in bad_files.iter().enumerate() {
        let bad = dir.path().join(format!("bad-{i}.json"));
        std::fs::write(&bad, content).unwrap();
        let out = import(&url, &bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "bad file {i} was imported");
        assert!(stderr.contains(want), "bad file {i}: {stderr}");
    }
    let s = store::open(&StoreUrl::Sqlite(db.clone())).await.unwrap();
    let (tenants, _) = s.list_tenants(None, 10).await.unwrap();
    assert!(tenants.is_empty(), "a refused import wrote {tenants:?}");

    let stdout = ok(&import(&url, &data));
    assert!(
        stdout.contains(&format!(
            "imported {TENANTS} tenants and {} documents",
            DOCUMENTS + 1
        )),
        "{stdout}"
    );
    let whole: cedargate::model::DataSet = serde_json::from_str(&text).unwrap();
    for t in [0, 1, 17, TENANTS - 1] {
        let id = tenant_id(t);
        let want = whole
            .documents
            .iter()
            .filter(|d| d.tenant_id.as_str() == id)
            .count();
        assert_eq!(document_count(s.as_ref(), &id).await, want, "{id}");
    }
    let wide = s
        .get_document(
            &TenantId::parse(tenant_id(0)).unwrap(),
            &DocumentId::parse(WIDE_DOCUMENT).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wide.shared_with.len(), 2_100);
    // Every tenant the import touched has its own `Import` record.
    let page = s
        .audit_events(&store::AuditQuery::new(
            TenantId::parse(tenant_id(TENANTS - 1)).unwrap(),
            chrono::Utc::now() - chrono::Duration::hours(1),
            chrono::Utc::now() + chrono::Duration::hours(1),
            100,
        ))
        .await
        .unwrap();
    assert!(
        page.events
            .iter()
            .any(|e| e.action == "Import" && e.success),
        "{:?}",
        page.events
    );
}

async fn decide_all(url: &StoreUrl, bodies: &[Value], tiny: bool) -> Vec<Value> {
    let app = spawn_in(
        url.clone(),
        |s| {
            s.audit.mode = cedargate::audit::writer::AuditMode::Off;
            if tiny {
                let c = &mut s.cache;
                c.tenant_capacity = std::num::NonZeroUsize::new(7).unwrap();
                c.document_capacity = std::num::NonZeroUsize::new(50).unwrap();
                c.decision_capacity = 0;
                c.residual_capacity = 0;
                c.entity_set_capacity = std::num::NonZeroUsize::new(3).unwrap();
            }
        },
        std::sync::Arc::new(cedargate::sidecar::SidecarRoutes),
    )
    .await;
    let mut out = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(100) {
        let r = app
            .post("/v1/authorize/batch", &json!({ "requests": chunk }))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(r.json()["results"].as_array().unwrap().iter().map(|v| {
            // All but the decision's id and its data's age.
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("decision_id");
                o.remove("data_age_ms");
            }
            v
        }));
    }
    app.shutdown().await;
    out
}

/// The generated mix, answered by a sidecar whose caches hold a sliver of
/// the data (every request a miss or an eviction) and by one with the
/// default caches: the same answers, request by request. Cross-tenant and
/// missing-document requests are all denied; the mix has both answers.
#[tokio::test]
async fn the_generated_mix_is_answered_the_same_with_any_cache_size() {
    let dir = tempfile::tempdir().unwrap();
    let (data, mix) = generate(dir.path(), 3_000);
    let url = StoreUrl::Sqlite(dir.path().join("s.db"));
    ok(&import(
        &format!("sqlite:{}", dir.path().join("s.db").display()),
        &data,
    ));
    let mut bodies: Vec<Value> = std::fs::read_to_string(&mix)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The wide document, read by users on and off its list.
    for u in [1, 1_999, 2_000, 4_000] {
        bodies.push(json!({
            "principal": {"id": format!("u{u}"), "tenant": tenant_id(0), "roles": ["viewer"], "clearance": 0},
            "action": "Read", "resource": {"type": "Document", "id": WIDE_DOCUMENT},
        }));
    }
    let small = decide_all(&url, &bodies, true).await;
    let large = decide_all(&url, &bodies, false).await;
    let (mut allowed, mut denied) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(small[i], large[i], "request {i}: {body}");
        assert!(small[i]["error"].is_null(), "request {i}: {}", small[i]);
        let cross = body["resource"]["type"] == "Tenant"
            && body["resource"]["id"] != body["principal"]["tenant"];
        let missing = body["resource"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("missing-"));
        match small[i]["decision"].as_str() {
            Some("Allow") => {
                assert!(!cross && !missing, "request {i} allowed: {body}");
                allowed += 1;
            }
            Some("Deny") => denied += 1,
            other => panic!("request {i}: {other:?}"),
        }
    }
    assert!(
        allowed > 500 && denied > 500,
        "{allowed} allowed, {denied} denied"
    );
    let n = bodies.len();
    let wide: Vec<&Value> = small[n - 4..].iter().map(|v| &v["decision"]).collect();
    assert_eq!(wide, ["Allow", "Allow", "Deny", "Deny"]);
}
