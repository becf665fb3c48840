//! Data retention, run by `cedargate-admin retention run` or on a schedule
//! by `cedargate-admin serve`:
//!
//! - a soft-deleted document is deleted for good once its tenant's recovery
//!   window (`settings.recoveryWindowDays`, else the configured default) has
//!   passed since `deletedAt`;
//! - a cancelled tenant's data is kept for `settings.dataRetentionDays` from
//!   `cancelledAt`; then an export archive (the NDJSON export with its
//!   manifest) is written to the archive directory, the documents and the
//!   tenant's own policies are deleted, usage is zeroed and the tenant record is marked `purgedAt` (it
//!   stays, so the id is never reused and its audit records keep one owner);
//! - audit records are never purged with their tenant: they stay until their
//!   own expiry (7 years at least), which the job applies on SQLite
//!   (DynamoDB's TTL does it there).
//!
//! Every step is idempotent, so a run killed part-way and run again finishes
//! the job: deletions are conditional and count only what they delete, an
//! archive already written (and whose manifest checks out) is kept rather
//! than written again from what is left, and the tenant is marked purged
//! last. Each deletion's management audit record is written *before* the
//! deletion (as decisions are answered only once recorded), so a deletion is
//! never unrecorded; a run killed between the two writes the record again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::audit::writer::AuditLog;
use crate::audit::{management_event, Actor, PLATFORM_TENANT};
use crate::clock::SharedClock;
use crate::ids::TenantId;
use crate::keys::{AwsKms, KeyProvider, LocalKeys};
use crate::model::{Document, Tenant, TenantStatus};
use crate::store::{Store, StoreError, StoreUrl, UsageDelta};

/// The recovery window of a tenant that sets none.
pub const DEFAULT_RECOVERY_DAYS: u32 = 30;

/// Documents read per page.
const PAGE: usize = 500;

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// The recovery window of tenants that set none, in days.
    pub recovery_days: u32,
    /// Where the archives of purged tenants are written.
    pub archive_dir: PathBuf,
    /// How often `cedargate-admin serve` runs the job; none: it does not
    /// (an external scheduler runs `cedargate-admin retention run`).
    pub interval: Option<Duration>,
    /// How archives are encrypted (with a data key per archive, wrapped by
    /// the tenant's key; docs/keys.md).
    pub encryption: Encryption,
}

/// Where the tenant keys that protect archives are.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "provider", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Encryption {
    /// Archives are written in clear (protect the directory otherwise).
    #[default]
    None,
    /// A key file per tenant in `key_dir`.
    Local { key_dir: PathBuf },
    /// A KMS key per tenant: `key_id` with `{tenant}` replaced, e.g.
    /// `alias/cedargate-{tenant}`.
    AwsKms {
        key_id: String,
        region: Option<String>,
        endpoint_url: Option<String>,
    },
}

impl Encryption {
    /// The key provider, if archives are encrypted.
    pub async fn provider(&self) -> Option<Arc<dyn KeyProvider>> {
        match self {
            Encryption::None => None,
            Encryption::Local { key_dir } => Some(Arc::new(LocalKeys::new(key_dir.clone()))),
            Encryption::AwsKms {
                key_id,
                region,
                endpoint_url,
            } => Some(Arc::new(
                AwsKms::new(key_id, region.as_deref(), endpoint_url.as_deref()).await,
            )),
        }
    }
}

impl RetentionConfig {
    pub fn new(archive_dir: PathBuf) -> Self {
        RetentionConfig {
            recovery_days: DEFAULT_RECOVERY_DAYS,
            archive_dir,
            interval: None,
            encryption: Encryption::None,
        }
    }

    /// A tenant's recovery window.
    pub fn recovery_window(&self, t: &Tenant) -> chrono::Duration {
        days(
            t.settings
                .recovery_window_days
                .unwrap_or(self.recovery_days),
        )
    }
}

fn days(n: u32) -> chrono::Duration {
    chrono::Duration::days(i64::from(n))
}

/// When a tenant cancelled at `at` with `retention_days` is purged; none
/// if that is past the end of time (a record from before the retention
/// period was bounded): never.
pub fn purge_due(at: DateTime<Utc>, retention_days: u32) -> Option<DateTime<Utc>> {
    at.checked_add_signed(days(retention_days))
}

/// The default archive directory: next to a SQLite store's file, else in
/// the working directory.
pub fn default_archive_dir(store: &StoreUrl) -> PathBuf {
    match store {
        StoreUrl::Sqlite(path) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".archives");
            path.with_file_name(name)
        }
        _ => PathBuf::from("cedargate-archives"),
    }
}

/// When a soft-deleted document may be deleted for good.
pub fn purge_after(
    config: &RetentionConfig,
    tenant: &Tenant,
    doc: &Document,
) -> Option<DateTime<Utc>> {
    doc.deleted_at.map(|at| at + config.recovery_window(tenant))
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Report what would be done; change nothing.
    pub dry_run: bool,
    /// Only this tenant (and no audit expiry).
    pub tenant: Option<TenantId>,
}

/// One thing a run did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum Step {
    /// A soft-deleted document past its recovery window, deleted.
    #[serde(rename_all = "camelCase")]
    PurgeDocument {
        tenant_id: TenantId,
        document_id: String,
        deleted_at: DateTime<Utc>,
    },
    /// A cancelled tenant with no `cancelledAt` (a record from before it was
    /// kept): its retention period starts now.
    #[serde(rename_all = "camelCase")]
    StartRetention { tenant_id: TenantId },
    /// A cancelled tenant's archive, written or (from an interrupted run)
    /// found complete and kept.
    #[serde(rename_all = "camelCase")]
    ArchiveTenant {
        tenant_id: TenantId,
        path: PathBuf,
        reused: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    /// A cancelled tenant past its retention period: documents deleted,
    /// usage zeroed, record marked purged.
    #[serde(rename_all = "camelCase")]
    PurgeTenant { tenant_id: TenantId, documents: u64 },
    /// Audit records past their expiry, deleted (SQLite).
    #[serde(rename_all = "camelCase")]
    ExpireAudit { records: u64 },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::PurgeDocument {
                tenant_id,
                document_id,
                deleted_at,
            } => write!(
                f,
                "purge document {tenant_id}/{document_id} (deleted {})",
                deleted_at.to_rfc3339()
            ),
            Step::StartRetention { tenant_id } => {
                write!(
                    f,
                    "start the retention period of cancelled tenant {tenant_id}"
                )
            }
            Step::ArchiveTenant {
                tenant_id,
                path,
                reused,
                ..
            } => write!(
                f,
                "archive tenant {tenant_id} to {}{}",
                path.display(),
                if *reused { " (already written)" } else { "" }
            ),
            Step::PurgeTenant {
                tenant_id,
                documents,
            } => write!(f, "purge tenant {tenant_id} ({documents} documents)"),
            Step::ExpireAudit { records } => write!(f, "expire {records} audit records"),
        }
    }
}

/// A tenant the run could not finish (the next run tries again).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub tenant_id: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub now: DateTime<Utc>,
    pub tenants_checked: u64,
    pub documents_purged: u64,
    pub tenants_purged: u64,
    /// Documents deleted with their tenant (also by a purge that did not
    /// finish: the next run deletes only the rest).
    pub tenant_documents_deleted: u64,
    pub audit_expired: u64,
    pub steps: Vec<Step>,
    pub failures: Vec<Failure>,
}

impl Report {
    fn add(&mut self, step: Step) {
        match &step {
            Step::PurgeDocument { .. } => self.documents_purged += 1,
            Step::PurgeTenant { .. } => self.tenants_purged += 1,
            Step::ExpireAudit { records } => self.audit_expired += records,
            Step::StartRetention { .. } | Step::ArchiveTenant { .. } => {}
        }
        self.steps.push(step);
    }
}

/// Why a run stopped before it looked at every tenant.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown tenant {0}")]
    UnknownTenant(TenantId),
}

/// The job and what it needs.
pub struct Retention {
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub actor: Actor,
    pub config: RetentionConfig,
    pub clock: SharedClock,
    /// Encrypts archives under the tenant's key (from
    /// [`Encryption::provider`]); none: archives are written in clear.
    pub keys: Option<Arc<dyn KeyProvider>>,
}

impl Retention {
    /// One run over every tenant (or `options.tenant`). A tenant that fails
    /// is reported and the run goes on; only failing to list tenants stops
    /// it.
    pub async fn run(&self, options: &Options) -> Result<Report, RetentionError> {
        let now = self.clock.now();
        let mut report = Report {
            dry_run: options.dry_run,
            now,
            tenants_checked: 0,
            documents_purged: 0,
            tenants_purged: 0,
            tenant_documents_deleted: 0,
            audit_expired: 0,
            steps: Vec::new(),
            failures: Vec::new(),
        };
        let run = Run {
            job: self,
            now,
            dry_run: options.dry_run,
        };
        match &options.tenant {
            Some(id) => {
                let t = self
                    .store
                    .get_tenant(id)
                    .await?
                    .ok_or_else(|| RetentionError::UnknownTenant(id.clone()))?;
                run.tenant(t, &mut report).await;
            }
            None => {
                let mut pages = crate::store::TenantPages::new(self.store.as_ref(), 100);
                while let Some(tenants) = pages.next().await? {
                    for t in tenants {
                        run.tenant(t, &mut report).await;
                    }
                }
                if let Err(e) = run.expire_audit(&mut report).await {
                    report.failures.push(Failure {
                        tenant_id: PLATFORM_TENANT.into(),
                        message: e,
                    });
                }
            }
        }
        Ok(report)
    }

    /// Runs every `interval` until `stop`, logging what each run did.
    pub async fn schedule(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let options = Options {
            dry_run: false,
            tenant: None,
        };
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticker.tick() => {}
            }
            match self.run(&options).await {
                Ok(r) => {
                    for f in &r.failures {
                        tracing::warn!(tenant = %f.tenant_id, error = %f.message, "retention: tenant not finished");
                    }
                    tracing::info!(
                        documents = r.documents_purged,
                        tenants = r.tenants_purged,
                        audit = r.audit_expired,
                        "retention run done"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "retention run failed"),
            }
        }
    }
}

/// One run's state.
struct Run<'a> {
    job: &'a Retention,
    now: DateTime<Utc>,
    dry_run: bool,
}

impl Run<'_> {
    async fn tenant(&self, t: Tenant, report: &mut Report) {
        report.tenants_checked += 1;
        let id = t.tenant_id.clone();
        if let Err(message) = self.tenant_steps(t, report).await {
            report.failures.push(Failure {
                tenant_id: id.to_string(),
                message,
            });
        }
    }

    async fn tenant_steps(&self, t: Tenant, report: &mut Report) -> Result<(), String> {
        if t.purged_at.is_some() {
            return Ok(());
        }
        if t.status == TenantStatus::Cancelled {
            match t.cancelled_at {
                // Its period starts now; expired documents still go.
                None => self.start_retention(t.clone(), report).await?,
                Some(at)
                    if purge_due(at, t.settings.data_retention_days)
                        .is_some_and(|due| due <= self.now) =>
                {
                    return self.purge_tenant(t, report).await;
                }
                Some(_) => {}
            }
        }
        self.expired_documents(&t, report).await
    }

    /// Deletes the soft-deleted documents whose recovery window has passed.
    async fn expired_documents(&self, t: &Tenant, report: &mut Report) -> Result<(), String> {
        let store = &self.job.store;
        let mut after = None;
        loop {
            // The deleted documents only (a sparse index once built).
            let (docs, next) = store
                .deleted_documents(&t.tenant_id, after.as_ref(), PAGE)
                .await
                .map_err(|e| e.to_string())?;
            for d in docs {
                let (Some(deleted_at), Some(due)) =
                    (d.deleted_at, purge_after(&self.job.config, t, &d))
                else {
                    continue;
                };
                if due > self.now {
                    continue;
                }
                let step = Step::PurgeDocument {
                    tenant_id: t.tenant_id.clone(),
                    document_id: d.document_id.to_string(),
                    deleted_at,
                };
                if self.dry_run {
                    report.add(step);
                    continue;
                }
                let resource = format!("CedarGate::Document::{:?}", d.document_id.as_str());
                let details = json!({
                    "documentId": d.document_id,
                    "deletedAt": deleted_at,
                    "recoveryWindowDays": self.job.config.recovery_window(t).num_days(),
                    "sizeBytes": d.size_bytes,
                });
                self.record(
                    &t.tenant_id,
                    "PurgeDocument",
                    &resource,
                    details.clone(),
                    Ok(()),
                )
                .await?;
                match store
                    .delete_document(&t.tenant_id, &d.document_id, Some(deleted_at))
                    .await
                {
                    Ok(true) => report.add(step),
                    // Restored (or deleted again) since it was read: kept.
                    Ok(false) => {
                        self.record(
                            &t.tenant_id,
                            "PurgeDocument",
                            &resource,
                            details,
                            Err("not purged: the document changed since it was read".into()),
                        )
                        .await?;
                    }
                    Err(e) => {
                        let message = e.to_string();
                        self.record(
                            &t.tenant_id,
                            "PurgeDocument",
                            &resource,
                            details,
                            Err(message.clone()),
                        )
                        .await?;
                        return Err(message);
                    }
                }
            }
            match next {
                Some(id) => after = Some(id),
                None => return Ok(()),
            }
        }
    }

    async fn start_retention(&self, mut t: Tenant, report: &mut Report) -> Result<(), String> {
        let step = Step::StartRetention {
            tenant_id: t.tenant_id.clone(),
        };
        if !self.dry_run {
            let version = crate::store::tenant_version(&t);
            t.cancelled_at = Some(self.now);
            let result = self
                .job
                .store
                .put_tenant_if(&t, Some(&version))
                .await
                .map_err(|e| e.to_string());
            let details = json!({ "cancelledAt": self.now });
            self.record(
                &t.tenant_id,
                "StartRetention",
                &tenant_resource(&t.tenant_id),
                details,
                result.clone(),
            )
            .await?;
            result?;
        }
        report.add(step);
        Ok(())
    }

    /// Archive, then delete every document, zero usage, mark purged.
    async fn purge_tenant(&self, t: Tenant, report: &mut Report) -> Result<(), String> {
        let id = t.tenant_id.clone();
        let store = &self.job.store;
        let keys = self.job.keys.as_deref();
        let path = archive_path(&self.job.config.archive_dir, &t, keys.is_some());
        if self.dry_run {
            report.add(Step::ArchiveTenant {
                tenant_id: id.clone(),
                reused: existing_archive(&path, &id, keys).await.is_some(),
                path,
                sha256: None,
            });
            let documents = self.count_documents(&id).await?;
            report.add(Step::PurgeTenant {
                tenant_id: id,
                documents,
            });
            return Ok(());
        }
        let resource = tenant_resource(&id);
        let archived = match existing_archive(&path, &id, keys).await {
            Some(manifest) => Ok((manifest, true)),
            None => write_archive(store.clone(), t.clone(), &path, keys)
                .await
                .map(|m| (m, false)),
        };
        let (manifest, reused) = match archived {
            Ok(a) => a,
            Err(message) => {
                let details = json!({ "archive": path });
                self.record(
                    &id,
                    "PurgeTenant",
                    &resource,
                    details,
                    Err(format!("archive: {message}")),
                )
                .await?;
                return Err(format!(
                    "cannot write the archive {}: {message}",
                    path.display()
                ));
            }
        };
        report.add(Step::ArchiveTenant {
            tenant_id: id.clone(),
            path: path.clone(),
            reused,
            sha256: Some(manifest.sha256.clone()),
        });
        let details = json!({
            "archive": path,
            "archiveSha256": manifest.sha256,
            "archivedDocuments": manifest.documents,
            "archivedAuditRecords": manifest.audit,
            "cancelledAt": t.cancelled_at,
            "dataRetentionDays": t.settings.data_retention_days,
        });
        self.record(&id, "PurgeTenant", &resource, details.clone(), Ok(()))
            .await?;
        let result = self.delete_all_documents(&t, report).await;
        let documents = match result {
            Ok(n) => n,
            Err(message) => {
                self.record(&id, "PurgeTenant", &resource, details, Err(message.clone()))
                    .await?;
                return Err(message);
            }
        };
        report.add(Step::PurgeTenant {
            tenant_id: id,
            documents,
        });
        Ok(())
    }

    /// Deletes the tenant's documents and its own policies, zeroes its
    /// document and storage usage and marks it purged (last, so an interrupted purge is picked up
    /// again). Returns how many documents this call deleted.
    async fn delete_all_documents(&self, t: &Tenant, report: &mut Report) -> Result<u64, String> {
        let store = &self.job.store;
        let id = &t.tenant_id;
        let mut deleted = 0;
        loop {
            // Always the first page: what was deleted is gone from it.
            let (docs, more) = store
                .documents_of(id, None, PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let mut this_page = 0;
            for d in &docs {
                if store
                    .delete_document(id, &d.document_id, None)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    this_page += 1;
                    report.tenant_documents_deleted += 1;
                }
            }
            deleted += this_page;
            if !more || docs.is_empty() {
                break;
            }
            if this_page == 0 {
                return Err("documents are listed but cannot be deleted".into());
            }
        }
        // Its own policies go too (the archive holds them).
        for p in store.tenant_policies(id).await.map_err(|e| e.to_string())? {
            store
                .delete_tenant_policy_if(id, &p.policy_id, &p.version())
                .await
                .map_err(|e| e.to_string())?;
        }
        let current = store
            .get_tenant(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("tenant {id} disappeared"))?;
        let u = &current.usage;
        let bytes = u
            .storage_bytes
            .unwrap_or(u64::from(u.storage_gb) * crate::model::GB);
        let delta = UsageDelta {
            documents: -i64::from(u.documents),
            storage_bytes: -i64::try_from(bytes).unwrap_or(i64::MAX),
            queries: 0,
            month: String::new(),
        };
        store
            .add_usage(id, &delta)
            .await
            .map_err(|e| e.to_string())?;
        let mut marked = store
            .get_tenant(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("tenant {id} disappeared"))?;
        let version = crate::store::tenant_version(&marked);
        marked.purged_at = Some(self.now);
        store
            .put_tenant_if(&marked, Some(&version))
            .await
            .map_err(|e| e.to_string())?;
        Ok(deleted)
    }

    async fn count_documents(&self, id: &TenantId) -> Result<u64, String> {
        let mut after = None;
        let mut n = 0;
        loop {
            let (docs, more) = self
                .job
                .store
                .documents_of(id, after.as_ref(), PAGE)
                .await
                .map_err(|e| e.to_string())?;
            n += docs.len() as u64;
            after = docs.last().map(|d| d.document_id.clone());
            if !more {
                return Ok(n);
            }
        }
    }

    async fn expire_audit(&self, report: &mut Report) -> Result<(), String> {
        if self.dry_run {
            return Ok(());
        }
        let n = self
            .job
            .store
            .expire_audit(self.now)
            .await
            .map_err(|e| e.to_string())?;
        if n > 0 {
            let details = json!({ "records": n, "before": self.now });
            self.record(&platform(), "ExpireAudit", "Store::audit", details, Ok(()))
                .await?;
            report.add(Step::ExpireAudit { records: n });
        }
        Ok(())
    }

    async fn record(
        &self,
        tenant: &TenantId,
        action: &str,
        resource: &str,
        details: serde_json::Value,
        outcome: Result<(), String>,
    ) -> Result<(), String> {
        let e = management_event(
            tenant.as_str(),
            action,
            resource,
            details,
            &self.job.actor,
            outcome,
        );
        self.job
            .audit
            .record(e)
            .await
            .map_err(|e| format!("cannot write the audit record: {e}"))
    }
}

fn platform() -> TenantId {
    TenantId::parse(PLATFORM_TENANT).unwrap_or_else(|_| unreachable!("a valid id"))
}

fn tenant_resource(id: &TenantId) -> String {
    format!("CedarGate::Tenant::{:?}", id.as_str())
}

/// `<dir>/<tenant>/<tenant>-<cancelledAt>.ndjson` (`.ndjson.enc` when
/// encrypted): one archive per cancellation.
pub fn archive_path(dir: &Path, t: &Tenant, encrypted: bool) -> PathBuf {
    let at = t
        .cancelled_at
        .map(|at| at.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| "unknown".into());
    let ext = if encrypted { "ndjson.enc" } else { "ndjson" };
    dir.join(t.tenant_id.as_str())
        .join(format!("{}-{at}.{ext}", t.tenant_id))
}

/// The manifest of a complete archive at `path`, if there is one (an
/// encrypted one must also decrypt with the tenant's key).
async fn existing_archive(
    path: &Path,
    tenant: &TenantId,
    keys: Option<&dyn KeyProvider>,
) -> Option<crate::export::Manifest> {
    let text = match keys {
        Some(keys) => {
            let bytes = crate::keys::decrypt_file(keys, path, Some(tenant.as_str()))
                .await
                .ok()?;
            String::from_utf8(bytes).ok()?
        }
        None => tokio::fs::read_to_string(path).await.ok()?,
    };
    crate::export::read(&text).ok()?;
    let last = text.lines().last()?;
    match serde_json::from_str::<crate::export::Line>(last).ok()? {
        crate::export::Line::Manifest(m) => Some(m),
        _ => None,
    }
}

/// Writes the tenant's export to `path`: to a temporary file first (then
/// encrypted into another, if `keys`), synced, then renamed, so `path` only
/// ever holds a complete archive. The clear temporary file is removed once
/// sealed.
async fn write_archive(
    store: Arc<dyn Store>,
    t: Tenant,
    path: &Path,
    keys: Option<&dyn KeyProvider>,
) -> Result<crate::export::Manifest, String> {
    let dir = path.parent().ok_or("the archive path has no directory")?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| e.to_string())?;
    let tenant = t.tenant_id.clone();
    let partial = path.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let producer = tokio::spawn(crate::export::produce(store, t, tx));
    let mut written: Result<(), String> = Ok(());
    while let Some(chunk) = rx.recv().await {
        if written.is_ok() {
            written = file.write_all(&chunk).await.map_err(|e| e.to_string());
        }
    }
    let manifest = producer.await.map_err(|e| e.to_string())??;
    written?;
    file.sync_all().await.map_err(|e| e.to_string())?;
    drop(file);
    let ready = match keys {
        Some(keys) => {
            let sealed = path.with_extension("sealed");
            let result = crate::keys::encrypt_file(keys, tenant.as_str(), &partial, &sealed).await;
            let _ = tokio::fs::remove_file(&partial).await;
            result.map_err(|e| e.to_string())?;
            sealed
        }
        None => partial,
    };
    tokio::fs::rename(&ready, path)
        .await
        .map_err(|e| e.to_string())?;
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_date_past_the_end_of_time_is_never() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(purge_due(at, 30), Some(at + chrono::Duration::days(30)));
        assert_eq!(purge_due(at, u32::MAX), None, "no panic, no purge");
    }
}
