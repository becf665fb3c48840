//! Per-tenant envelope encryption of archives: with local tenant keys and
//! with AWS KMS (the real SDK client against a local stand-in of KMS).

use std::sync::Arc;

use cedargate::keys::{AwsKms, KeyProvider, LocalKeys};
use cedargate::retention::{Options, Retention, RetentionConfig, Step};
use cedargate::store;
use chrono::Utc;

use crate::kms_standin::KmsStandin;

async fn purge_with(keys: Arc<dyn KeyProvider>, dir: &std::path::Path) -> std::path::PathBuf {
    let url = crate::helpers::fixture_store(dir).await;
    let s = store::open(&url).await.unwrap();
    let mut canc = s
        .get_tenant(&cedargate::ids::TenantId::parse("canc").unwrap())
        .await
        .unwrap()
        .unwrap();
    canc.cancelled_at = Some(Utc::now() - chrono::Duration::days(400));
    s.put_tenant(&canc).await.unwrap();
    let mut audit = cedargate::audit::writer::AuditConfig::new(dir.join("spool"));
    audit.rotate_interval = std::time::Duration::from_millis(10);
    let (log, tasks) = cedargate::audit::writer::start(
        audit,
        s.clone(),
        cedargate::metrics::AuditMetrics::default(),
        "admin",
    )
    .await
    .unwrap();
    let job = Retention {
        store: s.clone(),
        audit: log,
        actor: cedargate::audit::Actor::scheduled("retention"),
        config: RetentionConfig::new(dir.join("archives")),
        clock: cedargate::clock::system(),
        keys: Some(keys),
    };
    let report = job
        .run(&Options {
            dry_run: false,
            tenant: Some(cedargate::ids::TenantId::parse("canc").unwrap()),
        })
        .await
        .unwrap();
    drop(job);
    if let Some(t) = tasks {
        t.shutdown().await;
    }
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    report
        .steps
        .iter()
        .find_map(|s| match s {
            Step::ArchiveTenant { path, .. } => Some(path.clone()),
            _ => None,
        })
        .expect("an archive")
}

fn check_sealed(path: &std::path::Path) {
    assert!(
        path.to_string_lossy().ends_with(".ndjson.enc"),
        "{}",
        path.display()
    );
    let bytes = std::fs::read(path).unwrap();
    assert!(cedargate::keys::is_encrypted(&bytes));
    // Nothing of the tenant's data in clear.
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("c-doc") && !text.contains("\"visibility\""),
        "clear text in the archive"
    );
    // No clear copy left beside it.
    let siblings: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings.len(), 1, "{siblings:?}");
}

#[tokio::test]
async fn archives_are_sealed_with_local_tenant_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Arc<dyn KeyProvider> = Arc::new(LocalKeys::new(dir.path().join("keys")));
    let path = purge_with(keys.clone(), dir.path()).await;
    check_sealed(&path);
    let plain = cedargate::keys::decrypt_file(keys.as_ref(), &path, Some("canc"))
        .await
        .unwrap();
    let export = cedargate::export::read(std::str::from_utf8(&plain).unwrap()).unwrap();
    assert_eq!(export.data.documents[0].document_id.as_str(), "c-doc");
    assert!(dir.path().join("keys/canc.key").exists());

    // The command line decrypts it with the same keys, and the export it
    // prints imports.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["archive", "decrypt"])
        .arg(&path)
        .arg("--key-dir")
        .arg(dir.path().join("keys"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plain);
    // Another tenant's key directory opens nothing.
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate-admin"))
        .args(["archive", "decrypt"])
        .arg(&path)
        .arg("--key-dir")
        .arg(other.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_sealed_with_per_tenant_kms_keys() {
    let kms = KmsStandin::start().await;
    let arn = kms.create_key("alias/cedargate-canc");
    kms.create_key("alias/cedargate-t1");
    let provider = AwsKms::new(
        "alias/cedargate-{tenant}",
        Some("us-east-1"),
        Some(&kms.endpoint()),
    )
    .await;
    let keys: Arc<dyn KeyProvider> = Arc::new(provider);
    let dir = tempfile::tempdir().unwrap();
    let path = purge_with(keys.clone(), dir.path()).await;
    check_sealed(&path);
    let header: serde_json::Value = serde_json::from_slice(
        std::fs::read(&path)
            .unwrap()
            .split(|b| *b == b'\n')
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["key"]["provider"], "aws-kms");
    assert_eq!(header["key"]["keyId"], arn.as_str(), "the tenant's own key");
    let plain = cedargate::keys::decrypt_file(keys.as_ref(), &path, Some("canc"))
        .await
        .unwrap();
    assert!(cedargate::export::read(std::str::from_utf8(&plain).unwrap()).is_ok());
    // The tenant id is the encryption context: the data key does not open
    // as another tenant's.
    let wrapped: cedargate::keys::WrappedKey =
        serde_json::from_value(header["key"].clone()).unwrap();
    assert!(keys.unwrap("t1", &wrapped).await.is_err());
    // Deleting the tenant's key makes the archive unreadable.
    kms.delete_key("alias/cedargate-canc");
    assert!(
        cedargate::keys::decrypt_file(keys.as_ref(), &path, Some("canc"))
            .await
            .is_err()
    );
    assert_eq!(
        kms.keys.lock().calls.get("GenerateDataKey").copied(),
        Some(1)
    );
}
