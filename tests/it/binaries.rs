//! The real binaries: start-up refuses invalid policies (naming file and
//! line), and `cedargate-admin import` writes all of a file or none of it.

use std::path::Path;
use std::process::Command;

use cedargate::ids::TenantId;
use cedargate::store::{self, StoreUrl};

use crate::helpers::{repo_dir, FIXTURE};

fn copy_policies(to: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let p = to.join("policies");
    let s = to.join("schemas");
    for (from, dest) in [(repo_dir("policies"), &p), (repo_dir("schemas"), &s)] {
        std::fs::create_dir_all(dest).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let path = e.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dest.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    (p, s)
}

/// `cedargate policy validate` on the given directories.
fn validate(policies: &Path, schemas: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["policy", "validate", "--policies"])
        .arg(policies)
        .arg("--schema")
        .arg(schemas)
        .output()
        .unwrap()
}

/// The shipped forbids fail closed; one written the way they once were
/// (an entity's attribute read without `has`) is refused by `validate`, or
/// reported as a warning when asked.
#[test]
fn validate_refuses_forbids_an_error_could_switch_off() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = copy_policies(dir.path());
    let out = validate(&p, &s);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no forbid an error could switch off"));

    std::fs::write(
        p.join("extra.cedar"),
        "@id(\"extra.clearance\")\nforbid (principal, action, resource is CedarGate::Document)\n\
         when { resource.classification > principal.clearance };\n",
    )
    .unwrap();
    let out = validate(&p, &s);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: forbid \"extra.clearance\" can be switched off by an evaluation error at `resource.classification`"),
        "{stderr}"
    );
    assert!(stderr.contains("`principal.clearance`"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args([
            "policy",
            "validate",
            "--allow-fallible-forbids",
            "--policies",
        ])
        .arg(&p)
        .arg("--schema")
        .arg(&s)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: forbid \"extra.clearance\""));
}

#[test]
fn invalid_policies_stop_start_up_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = copy_policies(dir.path());
    // Line 2 of quotas.cedar gets an attribute the schema does not have.
    let file = p.join("quotas.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let bad = "@id(\"quota.typo\") forbid (principal, action, resource is CedarGate::Tenant) when { resource.limits.maxDocs > 1 };";
    lines.insert(1, bad);
    std::fs::write(&file, lines.join("\n")).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--identity", "trusted"])
        .arg("--store")
        .arg(format!("sqlite:{}", dir.path().join("s.db").display()))
        .arg("--policies")
        .arg(&p)
        .arg("--schema")
        .arg(&s)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("quotas.cedar:2:"), "{stderr}");
    assert!(stderr.contains("maxDocs"), "{stderr}");

    let out = validate(&p, &s);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("quotas.cedar:2:"));

    // A syntax error is located too.
    std::fs::write(
        p.join("quotas.cedar"),
        "@id(\"x\")\npermit (principal, action, resource)\nwhen { 1 + };\n",
    )
    .unwrap();
    let out = validate(&p, &s);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("quotas.cedar:3:"), "{stderr}");
}

#[test]
fn serve_needs_the_token_issuer_or_explicit_trusted_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--store")
        .arg(format!("sqlite:{}", dir.path().join("s.db").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity"));
}

#[tokio::test]
async fn import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let url = format!("sqlite:{}", db.display());

    // A file whose last document names an unknown tenant.
    let mut data: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    data["documents"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "tenantId": "nobody", "documentId": "x", "ownerId": "a", "visibility": "public",
            "classification": 0, "fileType": "pdf", "sizeBytes": 1
        }));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, data.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["import", "--store", &url])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown tenant nobody"));
    let s = store::open(&StoreUrl::Sqlite(db.clone())).await.unwrap();
    assert!(s
        .get_tenant(&TenantId::parse("t1").unwrap())
        .await
        .unwrap()
        .is_none());

    // Not JSON at all.
    std::fs::write(&bad, "{not json").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["import", "--store", &url])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid import file"));

    let good = dir.path().join("good.json");
    std::fs::write(&good, FIXTURE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["import", "--store", &url])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 7 tenants and 8 documents"));
    let t1 = s
        .get_tenant(&TenantId::parse("t1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t1.limits.max_documents, 10);

    // Importing again is idempotent (upsert), and migrate is too.
    for args in [
        vec!["import", "--store", &url, good.to_str().unwrap()],
        vec!["migrate", "--store", &url],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
    }
}

#[test]
fn the_readme_demo_shows_decisions() {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .current_dir(repo_dir("."))
        .args(["demo", "--once", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"decision\":\"Allow\""), "{stdout}");
    assert!(stdout.contains("[\"tenant-isolation.tenant\"]"), "{stdout}");
    assert!(stdout.contains("[\"quota.max-documents\"]"), "{stdout}");
    assert!(stdout.contains("curl -s http://127.0.0.1:"), "{stdout}");
    assert!(
        stdout.contains("-H \"Authorization: Bearer $TOKEN_DAVE\""),
        "{stdout}"
    );
    assert!(stdout.contains("TOKEN_EVE=ey"), "{stdout}");
}

#[test]
fn the_example_config_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    // The example points at system paths; check it parses and names a store.
    let text = std::fs::read_to_string(repo_dir("deploy/cedargate.toml")).unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let settings = cedargate::config::Settings::resolve(cedargate::config::ServeArgs {
        config: Some(path),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(settings.listen.port(), 8180);
    assert_eq!(settings.sidecar.max_batch, 100);
    assert_eq!(settings.cache.entity_set_capacity.get(), 1024);
    assert!(matches!(
        settings.identity,
        cedargate::config::IdentityConfig::Jwt(_)
    ));
    assert_eq!(settings.forward_auth.routes.len(), 3);
    cedargate::sidecar::forward::RouteTable::new(&settings.forward_auth).unwrap();
    assert_eq!(settings.retention.recovery_days, 30);
    assert_eq!(settings.retention.interval, None);
    assert_eq!(
        settings.retention.archive_dir,
        std::path::Path::new("/var/lib/cedargate/archives")
    );
    assert_eq!(
        settings.retention.encryption,
        cedargate::retention::Encryption::AwsKms {
            key_id: "alias/cedargate-{tenant}".into(),
            region: None,
            endpoint_url: None,
        }
    );
}

/// `cedargate-admin retention run`: a dry run that changes nothing, a run
/// that purges the fixture's long-deleted document and records it, and a
/// second run with nothing left to do.
#[tokio::test]
async fn admin_retention_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let url = format!("sqlite:{}", db.display());
    let store_url = StoreUrl::Sqlite(db.clone());
    let s = store::open(&store_url).await.unwrap();
    s.import(&serde_json::from_str(FIXTURE).unwrap())
        .await
        .unwrap();
    let t1 = TenantId::parse("t1").unwrap();
    let doc = cedargate::ids::DocumentId::parse("d-deleted").unwrap();
    let retention = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
            .args(["retention", "run", "--store", &url])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = retention(&["--dry-run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("would purge document t1/d-deleted"), "{out}");
    assert!(out.contains("dry run, nothing changed"), "{out}");
    assert!(s.get_document(&t1, &doc).await.unwrap().is_some());

    let (code, out, err) = retention(&["--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["documentsPurged"], 1, "{out}");
    assert_eq!(report["failures"], serde_json::json!([]));
    assert!(s.get_document(&t1, &doc).await.unwrap().is_none());
    let records = s
        .all_audit_events(&cedargate::store::AuditQuery::new(
            t1.clone(),
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::days(1),
            100,
        ))
        .await
        .unwrap();
    let purge = records
        .iter()
        .find(|e| e.action == "PurgeDocument")
        .expect("the purge is recorded");
    assert_eq!(purge.details["via"], "cli");

    let (code, out, _) = retention(&[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("0 documents purged"), "{out}");
    let (code, _, err) = retention(&["--tenant", "nobody"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown tenant nobody"), "{err}");
}

#[tokio::test]
async fn admin_migrates_and_imports_into_dynamodb() {
    let Some(jar) = crate::dynamodb_local::available() else {
        return;
    };
    let ddb = crate::dynamodb_local::DynamoLocal::start(&jar).await;
    let url = ddb.url("admin-").to_string();
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
            .args(["migrate", "--store", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), FIXTURE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["import", "--store", &url])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = store::open(&ddb.url("admin-")).await.unwrap();
    let t1 = s.get_tenant(&TenantId::parse("t1").unwrap()).await.unwrap();
    assert_eq!(t1.unwrap().name, "Acme");
}

/// `cedargate-admin serve` with `[retention] interval_secs` runs the job
/// by itself, and stops it on SIGTERM. (`--no-console`: the console's
/// paths are the API's 404; scripts/test-browser.sh uses the console.)
#[tokio::test]
async fn admin_serve_runs_retention_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let s = store::open(&StoreUrl::Sqlite(db.clone())).await.unwrap();
    s.import(&serde_json::from_str(FIXTURE).unwrap())
        .await
        .unwrap();
    let config = dir.path().join("c.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite:{}\"\nlisten = \"127.0.0.1:{port}\"\nidentity = \"trusted\"\npolicies = {:?}\nschema = {:?}\n\n[retention]\ninterval_secs = 1\n",
            db.display(),
            repo_dir("policies"),
            repo_dir("schemas"),
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["serve", "--no-console", "--config"])
        .arg(&config)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t1 = TenantId::parse("t1").unwrap();
    let doc = cedargate::ids::DocumentId::parse("d-deleted").unwrap();
    crate::helpers::eventually("the scheduled run to purge d-deleted", || async {
        s.get_document(&t1, &doc).await.unwrap().is_none()
    })
    .await;
    let canc = s
        .get_tenant(&TenantId::parse("canc").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(canc.cancelled_at.is_some(), "its retention period started");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let get = || {
        cedargate::sidecar::client::send_with(addr, hyper::Method::GET, "/console/login", &[], "")
    };
    crate::helpers::eventually("the server to listen", || async { get().await.is_ok() }).await;
    let r = get().await.unwrap();
    assert_eq!(r.status, hyper::StatusCode::NOT_FOUND, "{}", r.body);
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("it stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let records = s
        .all_audit_events(&cedargate::store::AuditQuery::new(
            t1,
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::days(1),
            100,
        ))
        .await
        .unwrap();
    let purge = records
        .iter()
        .find(|e| e.action == "PurgeDocument")
        .expect("recorded");
    assert_eq!(purge.user_id.as_deref(), Some("system:retention"));
    assert_eq!(purge.details["via"], "schedule");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn policy_cmd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .arg("policy")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The shipped suites pass and the policy files are formatted; a policy
/// changed to break a case makes `policy test` fail, naming the case, the
/// decision and the determining policies.
#[test]
fn policy_test_catches_a_broken_policy() {
    let schemas = repo_dir("schemas");
    let schemas = schemas.to_str().unwrap();
    let (code, out, err) = policy_cmd(&[
        "test",
        "--policies",
        repo_dir("policies").to_str().unwrap(),
        "--schema",
        schemas,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 failed"), "{out}");
    let (code, out, _) = policy_cmd(&[
        "fmt",
        "--check",
        "--policies",
        repo_dir("policies").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "run `cedargate policy fmt`: {out}");

    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_tree(&repo_dir("policies"), &policies);
    let file = policies.join("visibility.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let broken = text.replacen(
        "resource.visibility == \"public\"",
        "resource.visibility == \"everyone\"",
        1,
    );
    assert_ne!(broken, text);
    std::fs::write(&file, broken).unwrap();
    let (code, out, err) = policy_cmd(&[
        "test",
        "--policies",
        policies.to_str().unwrap(),
        "--schema",
        schemas,
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("FAIL visibility / anyone in the tenant reads a public document: expected Allow, got Deny"),
        "{out}"
    );
    assert!(out.contains("1 failed") || out.contains("failed"), "{out}");
    // And `fmt --check` notices an unformatted file; `fmt` formats it.
    std::fs::write(&file, text.replace("\n  ", "\n        ")).unwrap();
    let p = policies.to_str().unwrap();
    let (code, out, _) = policy_cmd(&["fmt", "--check", "--policies", p]);
    assert_eq!(code, Some(1));
    assert!(out.contains("visibility.cedar: not formatted"), "{out}");
    assert_eq!(policy_cmd(&["fmt", "--policies", p]).0, Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

/// `policy explain` of a `Read` by `principal` over the repository's
/// policies and `data`.
fn explain(
    data: &std::path::Path,
    principal: &str,
    resource: &str,
) -> (Option<i32>, String, String) {
    policy_cmd(&[
        "explain",
        "--policies",
        repo_dir("policies").to_str().unwrap(),
        "--schema",
        repo_dir("schemas").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--principal",
        principal,
        "--action",
        "Read",
        "--resource",
        resource,
    ])
}

/// `policy explain` shows the decision and the text of the policies that
/// made it.
#[test]
fn policy_explain_shows_the_determining_policies() {
    let (code, out, err) = explain(
        &repo_dir("tests/it/fixture.json"),
        r#"{"id":"vic","tenant":"t1","roles":["viewer"],"clearance":0}"#,
        "Document::d-secret",
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("Deny"), "{out}");
    assert!(out.contains("classification.clearance:"), "{out}");
    assert!(
        out.contains("resource.classification <= principal.clearance"),
        "{out}"
    );
}

/// `policy explain` over data that holds a tenant's own policy names it by
/// its tenant and shows it as it is evaluated: with its confinement.
#[test]
fn policy_explain_shows_a_tenant_policy_with_its_guard() {
    let dir = tempfile::tempdir().unwrap();
    let mut data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_dir("tests/it/fixture.json")).unwrap())
            .unwrap();
    data["policies"] = serde_json::json!([{
        "tenantId": "t1", "policyId": "contractors-read",
        "definition": {"static": {"statement": "permit (principal in CedarGate::Role::\"contractor\", action == CedarGate::Action::\"Read\", resource is CedarGate::Document) when { resource.visibility == \"shared\" };"}},
        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"
    }]);
    let file = dir.path().join("data.json");
    std::fs::write(&file, data.to_string()).unwrap();
    let (code, out, err) = explain(
        &file,
        r#"{"id":"con","tenant":"t1","roles":["contractor"],"clearance":1}"#,
        "Document::d-shared",
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("Allow"), "{out}");
    assert!(out.contains("tenant/t1/contractors-read:"), "{out}");
    assert!(
        out.contains(r#"principal.tenant == CedarGate::Tenant::"t1""#)
            && out.contains(r#"resource.tenant == CedarGate::Tenant::"t1""#)
            && out.contains(r#"action in CedarGate::Action::"TenantPolicyAction""#),
        "{out}"
    );
}

/// `cedargate probe` for images without curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_says_whether_the_sidecar_is_ready() {
    let app = crate::helpers::spawn_app().await;
    let probe = |target: String| {
        Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .args(["probe", &target])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(probe(app.addr.to_string()), Some(0));
    assert_eq!(probe(format!("http://{}/healthz", app.addr)), Some(0));
    assert_eq!(probe(format!("http://{}/nope", app.addr)), Some(1));
    let addr = app.addr;
    app.shutdown().await;
    assert_eq!(probe(addr.to_string()), Some(1));
}

/// `policy plan` shows a principal's search plan; `cedargate-admin search`
/// prints what the index holds and how to configure it.
#[test]
fn plan_and_index_tools() {
    let data = repo_dir("tests/it/fixture.json");
    let (policies, schemas) = (repo_dir("policies"), repo_dir("schemas"));
    let plan = |who: &str, format: &str| {
        policy_cmd(&[
            "plan",
            "--policies",
            policies.to_str().unwrap(),
            "--schema",
            schemas.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--principal",
            who,
            "--format",
            format,
        ])
    };
    let (code, out, err) = plan(
        r#"{"id":"bob","tenant":"t1","roles":["viewer"],"clearance":1}"#,
        "kendra",
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (kind, filter) = out.split_once('\n').unwrap();
    assert_eq!(kind, "conditional");
    let filter: serde_json::Value = serde_json::from_str(filter).unwrap();
    assert!(filter["AndAllFilters"].as_array().unwrap().contains(
        &serde_json::json!({"EqualsTo": {"Key": "cg_tenant", "Value": {"StringValue": "t1"}}})
    ));
    let (_, out, _) = plan(
        r#"{"id":"bob","tenant":"t1","roles":["viewer"],"clearance":1}"#,
        "cedar",
    );
    assert!(out.contains("@id(\"visibility.shared-read\")"), "{out}");
    let (code, out, _) = plan(r#"{"id":"cat","tenant":"canc","roles":["viewer"]}"#, "sql");
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "always_denied\ndenied by tenant-status.cancelled-export-only\n"
    );

    let admin = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
            .args(args)
            .args([
                "--policies",
                policies.to_str().unwrap(),
                "--schema",
                schemas.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let config: serde_json::Value =
        serde_json::from_str(&admin(&["search", "index-config"])).unwrap();
    assert!(config["kendra"]["DocumentMetadataConfigurationUpdates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["Name"] == "cg_reader_roles" && f["Type"] == "STRING_LIST_VALUE"));
    assert_eq!(
        config["opensearch"]["mappings"]["properties"]["cg_classification"]["type"],
        "long"
    );
    assert!(config["sql"]
        .as_str()
        .unwrap()
        .contains("CREATE TABLE \"document_values\""));

    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    let spool = dir.path().join("spool");
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args([
            "import",
            "--store",
            &store,
            "--audit-spool",
            spool.to_str().unwrap(),
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = admin(&[
        "search",
        "attributes",
        "--store",
        &store,
        "--tenant",
        "t1",
        "d-shared",
        "nope",
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["opensearch"]["cg_readers"],
        serde_json::json!(["bob", "carol", "eddy"])
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"tenantId": "t1", "documentId": "nope", "missing": true})
    );
    let all = admin(&["search", "attributes", "--store", &store, "--tenant", "t1"]);
    assert_eq!(all.lines().count(), 5, "{all}");
}

/// `cedargate-admin billing usage`: the month's counts per tenant, as CSV
/// and as Stripe meter events; a bad month is refused.
#[tokio::test]
async fn billing_usage_exports_the_months_counts() {
    use cedargate::authz::Effect;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let url = format!("sqlite:{}", db.display());
    let s = store::open(&StoreUrl::Sqlite(db.clone())).await.unwrap();
    let mut data = crate::helpers::fixture();
    data.tenants[0].billing = Some(cedargate::model::Billing::new(
        cedargate::model::BillingProvider::Stripe,
        Some("cus_T1".into()),
    ));
    let billed = data.tenants[0].tenant_id.clone();
    s.import(&data).await.unwrap();
    // Storage: 2 GB from the 1st, 4 GB from the 16th of November (30 days).
    let gb = cedargate::model::GB;
    let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    s.put_storage_sample(&billed, day(1), 2 * gb).await.unwrap();
    s.put_storage_sample(&billed, day(16), 4 * gb - 5)
        .await
        .unwrap();
    s.add_decisions(
        &billed,
        "2026-11",
        &[
            ("Search".to_string(), Effect::Allow, 5),
            ("Read".to_string(), Effect::Deny, 2),
        ],
    )
    .await
    .unwrap();
    let run = |format: &str, month: &str| {
        Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
            .args([
                "billing", "usage", "--store", &url, "--month", month, "--format", format,
            ])
            .output()
            .unwrap()
    };
    let out = run("csv", "2026-11");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), data.tenants.len() + 1, "{csv}");
    let row = csv
        .lines()
        .find(|l| l.starts_with(&format!("{billed},")))
        .unwrap();
    assert!(row.contains(",stripe,cus_T1,"), "{row}");
    assert!(row.contains(",5,7,"), "queries 5, decisions 7: {row}");
    assert!(
        row.contains(",90,3.000,"),
        "15 days × 2 GB + 15 days × 4 GB = 90 GB-days, 3 GB-months: {row}"
    );
    // `billing sample` records today's storage of every tenant.
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["billing", "sample", "--store", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let today = chrono::Utc::now();
    let samples = s
        .storage_samples(&billed, &today.format("%Y-%m").to_string())
        .await
        .unwrap();
    assert!(
        samples.contains(&(chrono::Datelike::day(&today.date_naive()), {
            let t = s.get_tenant(&billed).await.unwrap().unwrap();
            t.usage.stored_bytes()
        }))
    );
    let out = run("ndjson", "2026-11");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5);
    assert!(events
        .iter()
        .all(|e| e["payload"]["stripe_customer_id"] == "cus_T1"));
    let gb_days = events
        .iter()
        .find(|e| e["event_name"] == "cedargate_storage_gb_days")
        .unwrap();
    assert_eq!(gb_days["payload"]["value"], "90");
    let out = run("csv", "2026-13");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a month"));
}
