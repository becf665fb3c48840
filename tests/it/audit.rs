//! The decision audit trail: every decision leaves exactly one record with
//! its facts and no token; records survive SIGKILL of the sidecar and a
//! store outage; `cedargate-admin audit verify` finds deleted, modified and
//! reordered records; management commands leave records too.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cedargate::audit::{self, AuditEvent};
use cedargate::ids::TenantId;
use cedargate::sidecar::client;
use cedargate::store::{self, AuditQuery, Store, StoreUrl};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::dynamodb_local::{self, DynamoLocal};
use crate::helpers::*;

/// The fixture tenants decisions are made in.
const TENANTS: [&str; 2] = ["t1", "t2"];

fn read(tenant: &str, user: &str, roles: &[&str], doc: &str) -> Value {
    json!({
        "principal": {"id": user, "tenant": tenant, "roles": roles, "clearance": 1},
        "action": "Read",
        "resource": {"type": "Document", "id": doc}
    })
}

/// A mix of allowed and denied requests in two tenants.
fn mix() -> Vec<Value> {
    vec![
        read("t1", "vic", &["viewer"], "d-public"),
        read("t1", "bob", &["viewer"], "d-priv"),
        read("t1", "alice", &["editor"], "d-priv"),
        read("t2", "mallory", &["viewer"], "d-other"),
        read("t1", "vic", &["viewer"], "d-other"),
    ]
}

/// Every audit record of the fixture tenants in the store.
async fn stored(store: &dyn Store) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    for t in TENANTS {
        let q = AuditQuery::new(
            TenantId::parse(t).unwrap(),
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::hours(1),
            500,
        );
        out.extend(store.all_audit_events(&q).await.unwrap());
    }
    out
}

/// Sends requests from `workers` connections until `stop`, each pausing
/// `pause` between requests, retrying on connection errors (the server may
/// be down); returns the decision ids received.
async fn load(
    addr: SocketAddr,
    workers: usize,
    pause: Duration,
    stop: watch::Receiver<bool>,
) -> Vec<String> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let bodies = mix();
            let mut got = Vec::new();
            let mut i = w;
            while !*stop.borrow() {
                let body = bodies[i % bodies.len()].to_string();
                i += 1;
                match client::send(addr, Method::POST, "/v1/authorize", body).await {
                    Ok(r) if r.status == StatusCode::OK => {
                        let id = r.json()["decision_id"].as_str().unwrap().to_string();
                        got.push(id);
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    Ok(r) => panic!("unexpected answer {}: {}", r.status, r.body),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Asserts that every received decision has exactly one record, and
/// returns the records that no client saw answered.
fn match_up(received: &[String], records: &[AuditEvent]) -> usize {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for r in records {
        *by_id.entry(r.event_id.as_str()).or_default() += 1;
    }
    let dupes: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "records stored twice: {dupes:?}");
    let received_set: HashSet<&str> = received.iter().map(String::as_str).collect();
    assert_eq!(
        received_set.len(),
        received.len(),
        "a decision id was given twice"
    );
    let missing: Vec<_> = received_set
        .iter()
        .filter(|id| !by_id.contains_key(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered decisions have no record: {:?}",
        missing.len(),
        received.len(),
        &missing[..missing.len().min(5)]
    );
    records.len() - received.len()
}

/// Chains may end early (a crash), but must not show gaps or tampering.
fn assert_chains_intact(records: &[AuditEvent]) {
    let findings = audit::verify(records);
    for f in &findings {
        if let audit::Finding::Altered { event_id, .. } = f {
            let r = records.iter().find(|r| &r.event_id == event_id).unwrap();
            eprintln!(
                "altered record {}\nrecomputed {}",
                serde_json::to_string(r).unwrap(),
                r.compute_hash()
            );
        }
    }
    assert!(findings.is_empty(), "{findings:?}");
}

fn spooled_files(dir: &Path) -> usize {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .count()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn every_decision_leaves_one_record_with_its_facts() {
    let app = spawn_app_with(|s| s.audit.context_keys = vec!["fileType".into()]).await;
    let allow = read("t1", "vic", &["viewer"], "d-public");
    let r = client::send_with(
        app.addr,
        Method::POST,
        "/v1/authorize",
        &[
            ("x-request-id", "req-42"),
            ("user-agent", "search-api/1.0"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
        ],
        allow.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["decision"], "Allow");
    let allowed_id = r.json()["decision_id"].as_str().unwrap().to_string();
    let denied = app
        .post("/v1/authorize", &read("t1", "bob", &["viewer"], "d-priv"))
        .await
        .json();
    assert_eq!(denied["decision"], "Deny");
    let create = json!({
        "principal": {"id": "alice", "tenant": "t1", "roles": ["editor"], "clearance": 1},
        "action": "CreateDocument",
        "resource": {"type": "Tenant", "id": "t1"},
        "context": {"fileType": "pdf", "sizeBytes": 1024}
    });
    let batch = app
        .post(
            "/v1/authorize/batch",
            &json!({ "requests": [create, read("t1", "vic", &["viewer"], "d-public"), {"action": 1}] }),
        )
        .await
        .json();
    let batch_ids: Vec<String> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["decision_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(batch_ids.len(), 2, "{batch}");
    // A malformed request is not a decision and leaves no record.
    let bad = app.post("/v1/authorize", &json!({"action": "Read"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let metrics = app.get("/metrics").await.body;
    let store = app.store.clone();
    let spool = app.spool_dir.clone();
    app.shutdown().await;

    let records = stored(store.as_ref()).await;
    let mut received = vec![
        allowed_id.clone(),
        denied["decision_id"].as_str().unwrap().to_string(),
    ];
    received.extend(batch_ids.iter().cloned());
    assert_eq!(match_up(&received, &records), 0);
    assert_chains_intact(&records);
    assert_eq!(spooled_files(&spool), 0, "the spool drained on shutdown");
    assert_eq!(metric(&metrics, "cedargate_audit_records_dropped_total"), 0);
    assert!(
        metric(&metrics, "cedargate_audit_records_spooled_total") >= 3,
        "{metrics}"
    );

    let allowed = records.iter().find(|r| r.event_id == allowed_id).unwrap();
    assert_eq!(allowed.tenant_id, "t1");
    assert_eq!(allowed.user_id.as_deref(), Some("vic"));
    assert_eq!(allowed.action, "Read");
    assert_eq!(allowed.resource, "CedarGate::Document::\"d-public\"");
    assert!(allowed.success);
    assert_eq!(allowed.ip_address.as_deref(), Some("203.0.113.9"));
    assert_eq!(allowed.user_agent.as_deref(), Some("search-api/1.0"));
    let d = &allowed.details;
    assert_eq!(d["decision"], "Allow");
    assert_eq!(d["requestId"], "req-42");
    assert_eq!(d["source"], "authorize");
    assert!(d["policyRevision"].as_str().unwrap().starts_with("sha256:"));
    assert!(!d["determiningPolicies"].as_array().unwrap().is_empty());
    assert!(d["latencyUs"].as_u64().is_some() && d["dataAgeMs"].as_u64().is_some());
    assert!(allowed.expires_at - allowed.timestamp.timestamp() >= 7 * 365 * 86_400);

    let denied_rec = records
        .iter()
        .find(|r| r.event_id == denied["decision_id"].as_str().unwrap())
        .unwrap();
    assert!(!denied_rec.success);
    assert_eq!(denied_rec.details["decision"], "Deny");
    assert!(denied_rec.error_message.is_some());

    // Only the configured context key is kept.
    let created = records
        .iter()
        .find(|r| r.action == "CreateDocument")
        .unwrap();
    assert_eq!(created.details["source"], "batch");
    assert_eq!(created.details["context"], json!({"fileType": "pdf"}));
    assert!(records
        .iter()
        .filter(|r| r.action == "Read")
        .all(|r| r.details.get("context").is_none()));
}

#[tokio::test]
async fn tokens_never_reach_a_record() {
    let (app, keys) = spawn_jwt_app().await;
    let token = keys.token("vic", "t1", &["viewer"], |_| {});
    let r = app
        .post_as(
            &token,
            "/v1/authorize",
            &json!({"action": "Read", "resource": {"type": "Document", "id": "d-public"}}),
        )
        .await;
    assert_eq!(r.json()["decision"], "Allow", "{}", r.body);
    let r = app
        .send_with(
            Method::GET,
            "/v1/forward-auth/documents/d-public",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Denied by the route table, before any policy: recorded too.
    let r = app
        .send_with(
            Method::GET,
            "/v1/forward-auth/admin/secrets",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let unrouted_id = r.headers["x-decision-id"].to_str().unwrap().to_string();
    let store = app.store.clone();
    app.shutdown().await;
    let records = stored(store.as_ref()).await;
    // Three decisions and the token's sign-in.
    assert_eq!(records.len(), 4);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.action == "Authenticate" && r.success)
            .count(),
        1
    );
    let unrouted = records.iter().find(|r| r.event_id == unrouted_id).unwrap();
    assert!(!unrouted.success);
    assert_eq!(unrouted.details["reason"], "unmapped_route");
    assert_eq!(unrouted.details["request"]["path"], "/admin/secrets");
    let fwd = records
        .iter()
        .find(|r| r.details["source"] == "forward-auth" && r.action == "Read")
        .expect("a forward-auth record");
    assert_eq!(fwd.details["request"]["path"], "/documents/d-public");
    let signature = token.rsplit('.').next().unwrap();
    for r in &records {
        let text = serde_json::to_string(r).unwrap();
        assert!(
            !text.contains(signature) && !text.contains("Bearer"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn records_wait_in_the_spool_while_the_store_is_down() {
    let (app, flaky) = spawn_flaky_app(|s| {
        s.cache.max_staleness = Duration::from_secs(600);
    })
    .await;
    let mut received = Vec::new();
    let mut ask = async |body: &Value| {
        let r = app.post("/v1/authorize", body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        received.push(r.json()["decision_id"].as_str().unwrap().to_string());
    };
    for body in mix() {
        ask(&body).await; // warms the cache
    }
    flaky.down.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..20 {
        for body in mix() {
            ask(&body).await;
        }
    }
    // Answered while the store is down: the records are in the spool.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(spooled_files(&app.spool_dir) > 0);
    let metrics = app.get("/metrics").await.body;
    assert!(
        metric(&metrics, "cedargate_audit_spool_bytes") > 0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "cedargate_audit_store_write_errors_total") > 0,
        "{metrics}"
    );

    flaky.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    while spooled_files(&app.spool_dir) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the spool did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app.get("/metrics").await.body;
    assert_eq!(
        metric(&metrics, "cedargate_audit_spool_bytes"),
        0,
        "{metrics}"
    );
    let store = app.store.clone();
    app.shutdown().await;
    let records = stored(store.as_ref()).await;
    assert_eq!(match_up(&received, &records), 0);
    assert_chains_intact(&records);
}

/// A sidecar process over a SQLite file, on a fixed port.
struct Sidecar {
    child: Child,
}

impl Sidecar {
    fn start(dir: &Path, db: &Path, spool: &Path, addr: SocketAddr) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .args([
                "serve",
                "--identity",
                "trusted",
                "--listen",
                &addr.to_string(),
            ])
            .arg("--store")
            .arg(format!("sqlite:{}", db.display()))
            .arg("--policies")
            .arg(repo_dir("policies"))
            .arg("--schema")
            .arg(repo_dir("schemas"))
            .arg("--audit-spool")
            .arg(spool)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cedargate starts");
        Sidecar { child }
    }

    async fn wait_ready(addr: SocketAddr) {
        for _ in 0..400 {
            if let Ok(r) = client::send(addr, Method::GET, "/healthz", "").await {
                if r.status == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the sidecar did not start on {addr}");
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "clean exit after SIGTERM: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_answered_decision_is_lost_when_the_sidecar_is_killed() {
    const KILLS: usize = 5;
    const WORKERS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    let StoreUrl::Sqlite(db) = &url else {
        unreachable!()
    };
    let spool = dir.path().join("spool");
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let mut sidecar = Sidecar::start(dir.path(), db, &spool, addr);
    Sidecar::wait_ready(addr).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let load = tokio::spawn(load(addr, WORKERS, Duration::ZERO, stop_rx));
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(800)).await;
        sidecar.kill();
        sidecar = Sidecar::start(dir.path(), db, &spool, addr);
        Sidecar::wait_ready(addr).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop_tx.send(true).unwrap();
    let received = load.await.unwrap();
    // The last sidecar drains its own spool and the ones the killed
    // processes left behind, then exits cleanly.
    let started = Instant::now();
    while spooled_files(&spool) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the spool did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sidecar.terminate();

    let store = store::open(&url).await.unwrap();
    let records = stored(store.as_ref()).await;
    assert!(received.len() > 100, "too little load: {}", received.len());
    let unanswered = match_up(&received, &records);
    // Records of decisions in flight when a process was killed (spooled,
    // never answered) may exist; at most one per connection per kill.
    assert!(
        unanswered <= KILLS * WORKERS,
        "{unanswered} records were never answered"
    );
    assert_chains_intact(&records);
    let writers: HashSet<&str> = records.iter().map(|r| r.writer_id.as_str()).collect();
    assert_eq!(writers.len(), KILLS + 1, "one writer per process");
    eprintln!(
        "crash test: {} decisions answered, {} records, {unanswered} spooled but unanswered, {KILLS} kills",
        received.len(),
        records.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thirty_second_dynamodb_outage_loses_and_duplicates_nothing() {
    let Some(jar) = dynamodb_local::available() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ddb = DynamoLocal::start_at(&jar, Some(data.path()), port).await;
    let url = ddb.fixture_url("outage-").await;
    let app = spawn_app_with(|s| {
        s.store = url.clone();
        s.cache.max_staleness = Duration::from_secs(600);
        s.audit.shutdown_timeout = Duration::from_secs(30);
    })
    .await;
    for body in mix() {
        assert_eq!(
            app.post("/v1/authorize", &body).await.status,
            StatusCode::OK
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let load = tokio::spawn(load(app.addr, 6, Duration::from_millis(5), stop_rx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    ddb.stop().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let metrics = app.get("/metrics").await.body;
    let spooled_during_outage = metric(&metrics, "cedargate_audit_spool_bytes");
    ddb.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    let mut received = load.await.unwrap();
    let started = Instant::now();
    while spooled_files(&app.spool_dir) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the spool did not drain: {} decisions",
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = started.elapsed();
    let metrics = app.get("/metrics").await.body;
    // The warm-up decisions count too.
    let store = store::open(&url).await.unwrap();
    let before_shutdown = stored(store.as_ref()).await.len();
    app.shutdown().await;
    let records = stored(store.as_ref()).await;
    assert!(spooled_during_outage > 0, "nothing waited in the spool");
    assert!(
        metric(&metrics, "cedargate_audit_store_write_errors_total") > 0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "cedargate_audit_records_dropped_total"), 0);
    assert_eq!(before_shutdown, records.len());
    let warmup: Vec<String> = records
        .iter()
        .map(|r| r.event_id.clone())
        .filter(|id| !received.contains(id))
        .collect();
    assert_eq!(
        warmup.len(),
        mix().len(),
        "only the warm-up decisions were not in the load"
    );
    received.extend(warmup);
    assert_eq!(match_up(&received, &records), 0);
    assert_chains_intact(&records);
    eprintln!(
        "outage test: {} decisions, spool held {spooled_during_outage} bytes after 30 s, drained {drained_in:?} after the load stopped",
        received.len()
    );
}

/// Runs `cedargate-admin` and returns (exit code, stdout, stderr).
fn admin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rewrites one stored record of `db` (SQLite) with `f`.
fn tamper(db: &Path, event_id: &str, f: impl FnOnce(&mut Value)) {
    let c = rusqlite::Connection::open(db).unwrap();
    let text: String = c
        .query_row(
            "SELECT record FROM audit WHERE event_id = ?1",
            [event_id],
            |r| r.get(0),
        )
        .unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    f(&mut v);
    let ts = v["timestamp"].as_str().unwrap().to_string();
    let ts = chrono::DateTime::parse_from_rfc3339(&ts)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    c.execute(
        "UPDATE audit SET record = ?2, ts = ?3 WHERE event_id = ?1",
        rusqlite::params![event_id, v.to_string(), ts],
    )
    .unwrap();
}

#[tokio::test]
async fn audit_verify_finds_deleted_modified_and_reordered_records() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    let app = spawn_app_with(|s| s.store = url.clone()).await;
    for _ in 0..4 {
        for body in mix() {
            app.post("/v1/authorize", &body).await;
        }
    }
    let store = app.store.clone();
    let StoreUrl::Sqlite(db) = url else {
        unreachable!()
    };
    app.shutdown().await;
    let mut t1: Vec<AuditEvent> = stored(store.as_ref())
        .await
        .into_iter()
        .filter(|r| r.tenant_id == "t1")
        .collect();
    t1.sort_by_key(|r| r.seq);
    assert!(t1.len() >= 10);
    let pristine = dir.path().join("pristine.db");
    {
        // A consistent copy of the store file.
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(&format!("VACUUM INTO '{}'", pristine.display()))
            .unwrap();
    }
    let verify = |db: &Path| {
        admin(&[
            "audit",
            "verify",
            "--store",
            &format!("sqlite:{}", db.display()),
            "--tenant",
            "t1",
        ])
    };
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy(&pristine, &p).unwrap();
        p
    };

    let (code, out, err) = verify(&pristine);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{} records", t1.len())), "{out}");

    let deleted = copy("deleted.db");
    rusqlite::Connection::open(&deleted)
        .unwrap()
        .execute("DELETE FROM audit WHERE event_id = ?1", [&t1[4].event_id])
        .unwrap();
    let (code, out, _) = verify(&deleted);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("gap:") && out.contains("records 4..=4"),
        "{out}"
    );

    // A denial turned into an allow.
    let denial = t1.iter().find(|r| r.details["decision"] == "Deny").unwrap();
    let modified = copy("modified.db");
    tamper(&modified, &denial.event_id, |v| {
        v["details"]["decision"] = "Allow".into();
        v["success"] = true.into();
    });
    let (code, out, _) = verify(&modified);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("altered:") && out.contains(&denial.event_id),
        "{out}"
    );

    // Moved before its predecessor in time.
    let reordered = copy("reordered.db");
    let earlier = t1[2].timestamp - chrono::Duration::milliseconds(1);
    tamper(&reordered, &t1[3].event_id, |v| {
        v["timestamp"] = earlier.to_rfc3339().into();
    });
    let (code, out, _) = verify(&reordered);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("reordered:") && out.contains(&t1[3].event_id),
        "{out}"
    );

    let (code, out, _) = admin(&[
        "audit",
        "verify",
        "--json",
        "--store",
        &format!("sqlite:{}", deleted.display()),
        "--tenant",
        "t1",
    ]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["findings"][0]["kind"], "gap");
    assert_eq!(report["records"], t1.len() - 1);
}

#[test]
fn management_commands_leave_records_and_export_as_ocsf() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let url = format!("sqlite:{}", db.display());
    let fixture_file = dir.path().join("fixture.json");
    std::fs::write(&fixture_file, FIXTURE).unwrap();
    let (code, _, err) = admin(&["migrate", "--store", &url]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = admin(&["import", "--store", &url, fixture_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let (code, _, _) = admin(&["import", "--store", &url, bad.to_str().unwrap()]);
    assert_ne!(code, 0);

    let export = |tenant: &str, format: &str| {
        let (code, out, err) = admin(&[
            "audit", "export", "--store", &url, "--tenant", tenant, "--format", format,
        ]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let t1 = export("t1", "json");
    assert_eq!(t1.len(), 1, "{t1:?}");
    assert_eq!(t1[0]["action"], "Import");
    assert_eq!(t1[0]["success"], true);
    assert_eq!(t1[0]["details"]["kind"], "management");
    assert_eq!(t1[0]["details"]["documents"], 5);

    let platform = export("_platform", "json");
    let actions: Vec<(&str, bool)> = platform
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["success"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(actions.contains(&("Migrate", true)), "{actions:?}");
    assert!(actions.contains(&("Import", false)), "{actions:?}");
    let failed = platform.iter().find(|r| r["success"] == false).unwrap();
    assert!(failed["errorMessage"]
        .as_str()
        .unwrap()
        .contains("not a valid import file"));

    let ocsf = export("t1", "ocsf");
    assert_eq!(ocsf[0]["class_uid"], 3004);
    assert_eq!(ocsf[0]["activity_id"], 1);
    let ms = ocsf[0]["time"].as_i64().unwrap();
    assert_eq!(
        ms,
        chrono::DateTime::parse_from_rfc3339(t1[0]["timestamp"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    );
    assert_eq!(ocsf[0]["metadata"]["uid"], t1[0]["eventId"]);
    // The admin's spool is empty once the records are in the store.
    assert_eq!(spooled_files(&dir.path().join("m.db.audit-spool")), 0);
}

/// A store reached over the network (here: any store that does not write
/// on the drainer's thread) gets at most 1,000 records a write, whatever
/// `drain_batch` says: each write copies its records and builds their
/// items in memory first, and such a store gains nothing from more.
#[tokio::test]
async fn a_network_store_gets_the_drain_in_parts_of_a_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let inner = store::open(&StoreUrl::Sqlite(dir.path().join("s.db")))
        .await
        .unwrap();
    let flaky = FlakyStore::wrap(inner.clone());
    let mut config = audit::writer::AuditConfig::new(dir.path().join("spool"));
    assert_eq!(config.drain_batch, 10_000, "the default");
    config.rotate_interval = Duration::from_millis(5);
    // Closed segments wait for a batch's worth; the shutdown drains
    // all of them in one round.
    config.drain_delay = Duration::from_secs(3600);
    let (log, tasks) = audit::writer::start(
        config,
        flaky.clone(),
        cedargate::metrics::AuditMetrics::default(),
        "network",
    )
    .await
    .unwrap();
    let mut receipts = Vec::new();
    for i in 0..2500 {
        let e = AuditEvent::new(
            format!("e-{i:05}"),
            chrono::Utc::now(),
            "t1",
            "Read",
            "CedarGate::Document::\"d\"",
            json!({ "decision": "Allow" }),
        );
        receipts.push(log.submit(e).await.unwrap());
    }
    for r in receipts {
        r.written().await.unwrap();
    }
    tasks.unwrap().shutdown().await;
    let writes = flaky.audit_writes.lock().unwrap().clone();
    assert_eq!(writes.iter().sum::<usize>(), 2500, "{writes:?}");
    assert!(writes.iter().all(|n| *n <= 1000), "{writes:?}");
    let stored = inner
        .all_audit_events(&AuditQuery::new(
            TenantId::parse("t1").unwrap(),
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::hours(1),
            100,
        ))
        .await
        .unwrap();
    assert_eq!(stored.len(), 2500);
    assert!(audit::verify(&stored).is_empty());
}
