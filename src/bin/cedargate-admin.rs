//! `cedargate-admin`: the management API (`serve`) and management of the
//! store: `migrate` (create tables), `import` (load tenants and documents
//! from a JSON file, streamed), `generate` (synthetic data at scale),
//! `audit` (verify the hash chains, export records as
//! JSON or OCSF) and `search` (what a search index holds). Every command
//! that changes something leaves a management audit record, whether it
//! succeeded or not.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use cedargate::admin::{AdminRoutes, DEFAULT_LISTEN};
use cedargate::app::App;
use cedargate::audit::writer::{self, AuditConfig, AuditLog, AuditTasks};
use cedargate::audit::{self, management_event, Actor, PLATFORM_TENANT};
use cedargate::clock;
use cedargate::config::{default_spool_dir, retention_settings, ServeArgs, Settings};
use cedargate::ids::TenantId;
use cedargate::metrics::AuditMetrics;
use cedargate::migrations;
use cedargate::model::DataSet;
use cedargate::retention::{self, Retention};
use cedargate::sidecar::shutdown_signal;
use cedargate::store::{self, AuditQuery, Store, StoreUrl};

#[derive(Parser)]
#[command(name = "cedargate-admin", version, about = "cedargate management")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct AdminServeArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Do not serve the admin console under /console/.
    #[arg(long)]
    no_console: bool,
}

/// Where management records wait before they reach the store.
#[derive(clap::Args)]
struct SpoolArgs {
    /// Audit spool directory [default: next to a SQLite store, else
    /// ./cedargate-audit-spool].
    #[arg(long)]
    audit_spool: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the management REST API (default 127.0.0.1:8181) and the admin
    /// console under /console/; the flags are `cedargate serve`'s, and
    /// `--no-console`.
    Serve(Box<AdminServeArgs>),
    /// Apply the migration steps not yet applied (tables, backfills), in
    /// order; each is recorded in the store. Idempotent and resumable.
    Migrate {
        #[arg(long)]
        store: StoreUrl,
        /// Say what would be done; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Roll this applied step back instead.
        #[arg(long, value_name = "STEP")]
        rollback: Option<String>,
        #[command(flatten)]
        spool: SpoolArgs,
    },
    /// Load tenants and documents from a JSON file: all of it or nothing.
    Import {
        #[arg(long)]
        store: StoreUrl,
        file: PathBuf,
        #[command(flatten)]
        spool: SpoolArgs,
    },
    /// Write a synthetic data set for scale and load tests (an import
    /// file): tenants of Zipf-skewed sizes, their documents with ACLs; and
    /// optionally a matching mix of `/v1/authorize` requests (NDJSON).
    Generate {
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        #[arg(long, default_value_t = 10_000)]
        documents: usize,
        /// Zipf exponent of the tenants' sizes.
        #[arg(long, default_value_t = 1.0)]
        skew: f64,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Add a document to the biggest tenant shared with this many
        /// users (and `--wide-roles` roles).
        #[arg(long, default_value_t = 0)]
        wide_users: usize,
        #[arg(long, default_value_t = 0)]
        wide_roles: usize,
        /// The import file to write.
        #[arg(long)]
        out: PathBuf,
        /// Also write `--request-count` request bodies here, one per line.
        #[arg(long)]
        requests: Option<PathBuf>,
        #[arg(long, default_value_t = 100_000)]
        request_count: usize,
    },
    /// Audit records: verify their hash chains, export them.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Data retention: purge soft-deleted documents past their recovery
    /// window, archive and purge cancelled tenants past their retention
    /// period, expire audit records past theirs.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Archives of purged tenants.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// What a search index holds for the plans' filters (docs/search.md).
    #[command(subcommand)]
    Search(SearchCommand),
    /// Billing integration (docs/billing.md).
    #[command(subcommand)]
    Billing(BillingCommand),
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Billable usage per tenant in a UTC month, to stdout: CSV (every
    /// tenant) or NDJSON Stripe meter events (tenants billed through
    /// Stripe), each with an idempotency key stable per tenant, month and
    /// metric.
    Usage {
        #[arg(long)]
        store: StoreUrl,
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: UsageFormat,
    },
    /// Records every tenant's stored bytes as today's storage sample (the
    /// GB-days of `billing usage`); `serve` does it every
    /// `[billing] storage_sample_interval_secs` (an hour by default).
    Sample {
        #[arg(long)]
        store: StoreUrl,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum UsageFormat {
    Csv,
    Ndjson,
}

/// Where the index's fields come from: the schema, and `[search]`.
#[derive(clap::Args)]
struct IndexArgs {
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    #[arg(long, default_value = "schemas")]
    schema: PathBuf,
    /// A configuration file with a `[search]` section.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum SearchCommand {
    /// Each document of a tenant (or the named ones) as the index takes
    /// it, one JSON line each: Kendra's `Attributes` for `BatchPutDocument`
    /// and the OpenSearch fields.
    Attributes {
        #[arg(long)]
        store: StoreUrl,
        #[arg(long)]
        tenant: String,
        documents: Vec<String>,
        #[command(flatten)]
        index: IndexArgs,
    },
    /// Kendra's `DocumentMetadataConfigurationUpdates` for `UpdateIndex`,
    /// an OpenSearch mapping, and the SQL tables.
    IndexConfig {
        #[command(flatten)]
        index: IndexArgs,
    },
}

/// The indexed fields of documents under these settings.
fn index_fields(
    a: &IndexArgs,
) -> anyhow::Result<(
    cedargate::search::fields::Fields,
    cedargate::search::SearchConfig,
)> {
    let snapshot = cedargate::policy::load(&cedargate::policy::PolicySources {
        policy_dir: a.policies.clone(),
        schema_dir: a.schema.clone(),
    })?;
    let config = cedargate::config::search_settings(a.config.as_deref())?;
    let fields =
        cedargate::search::fields::Fields::new(&config, &snapshot.types, "CedarGate::Document");
    Ok((fields, config))
}

async fn search_command(cmd: SearchCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        SearchCommand::Attributes {
            store,
            tenant,
            documents,
            index,
        } => {
            let (fields, _) = index_fields(&index)?;
            let tenant = TenantId::parse(tenant.as_str())?;
            let ids = documents
                .iter()
                .map(|d| cedargate::ids::DocumentId::parse(d.as_str()))
                .collect::<Result<Vec<_>, _>>()?;
            let store = store::open(&store).await?;
            for doc in cedargate::search::index::documents(&store, &fields, &tenant, &ids).await? {
                writeln!(out, "{doc}")?;
            }
        }
        SearchCommand::IndexConfig { index } => {
            let (fields, config) = index_fields(&index)?;
            let tenant_field = config.field(&config.tenant_attribute);
            let all = serde_json::json!({
                "kendra": fields.kendra_index_config(),
                "opensearch": fields.opensearch_mapping(),
                "sql": fields.sql_ddl(&config.sql, &tenant_field),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Write an encrypted archive's export (NDJSON, manifest checked) to
    /// stdout, with the tenant keys `[retention.encryption]` of the
    /// configuration names (or --key-dir).
    Decrypt {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Local tenant keys (instead of a configuration).
        #[arg(long)]
        key_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// One run. Idempotent: a run that was interrupted is finished by the
    /// next. Exits 1 if a tenant could not be finished.
    Run {
        #[arg(long)]
        store: StoreUrl,
        /// A configuration file whose `[retention]` section applies.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where archives of purged tenants go [default: next to a SQLite
        /// store, else ./cedargate-archives].
        #[arg(long)]
        archive_dir: Option<PathBuf>,
        /// Recovery window of tenants that set none, in days [default: 30].
        #[arg(long)]
        recovery_days: Option<u32>,
        /// Only this tenant (audit expiry is left for a full run).
        #[arg(long, value_parser = |s: &str| TenantId::parse(s))]
        tenant: Option<TenantId>,
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spool: SpoolArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The records as stored, one JSON object per line.
    Json,
    /// OCSF 1.0.0 Entity Management events (class 3004), one per line.
    Ocsf,
}

#[derive(clap::Args)]
struct Range {
    #[arg(long)]
    store: StoreUrl,
    #[arg(long, value_parser = |s: &str| TenantId::parse(s))]
    tenant: TenantId,
    /// From this time (RFC 3339) [default: the beginning].
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Up to this time (RFC 3339) [default: now].
    #[arg(long)]
    to: Option<DateTime<Utc>>,
}

impl Range {
    fn query(&self) -> AuditQuery {
        AuditQuery::new(
            self.tenant.clone(),
            self.from.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            self.to.unwrap_or_else(Utc::now),
            1000,
        )
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check a tenant's records for gaps, altered, reordered and duplicated
    /// records. Exits 1 when anything is found.
    Verify {
        #[command(flatten)]
        range: Range,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a tenant's records to stdout, newest first, one per line.
    Export {
        #[command(flatten)]
        range: Range,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

/// The management audit log of one command.
struct Recorder {
    log: AuditLog,
    tasks: Option<AuditTasks>,
    actor: Actor,
}

impl Recorder {
    async fn open(store: Arc<dyn Store>, url: &StoreUrl, spool: SpoolArgs) -> anyhow::Result<Self> {
        let dir = spool.audit_spool.unwrap_or_else(|| default_spool_dir(url));
        let mut config = AuditConfig::new(dir);
        config.rotate_interval = std::time::Duration::from_millis(10);
        let (log, tasks) = writer::start(config, store, AuditMetrics::default(), "admin")
            .await
            .context("cannot open the audit spool")?;
        Ok(Recorder {
            log,
            tasks,
            actor: Actor::command_line(),
        })
    }

    async fn record(
        &self,
        tenant: &str,
        action: &str,
        resource: &str,
        details: serde_json::Value,
        outcome: Result<(), String>,
    ) -> anyhow::Result<()> {
        let e = management_event(tenant, action, resource, details, &self.actor, outcome);
        self.log
            .record(e)
            .await
            .context("cannot write the management audit record")
    }

    /// Sends the records to the store (they stay in the spool for a later
    /// run if the store cannot take them now).
    async fn finish(self) {
        if let Some(tasks) = self.tasks {
            tasks.shutdown().await;
        }
    }
}

/// The error's text, for a record of a failed operation.
fn failure<T>(r: &anyhow::Result<T>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e:#}")),
    }
}

async fn migrate(
    url: StoreUrl,
    dry_run: bool,
    rollback: Option<String>,
    spool: SpoolArgs,
) -> anyhow::Result<()> {
    let s = store::connect(&url).await?;
    if dry_run {
        // Changes nothing, so leaves no record.
        let report = match rollback {
            Some(step) => migrations::rollback(s.as_ref(), &step, true).await?,
            None => migrations::migrate(s.as_ref(), true).await?,
        };
        for line in report.lines {
            println!("{line}");
        }
        println!("{url}: dry run, nothing written");
        return Ok(());
    }
    // The audit table is one of the migration's tables: the record is
    // spooled first and reaches the store once the table is there.
    let rec = Recorder::open(s.clone(), &url, spool).await?;
    let result = match &rollback {
        Some(step) => migrations::rollback(s.as_ref(), step, false).await,
        None => migrations::migrate(s.as_ref(), false).await,
    }
    .map_err(anyhow::Error::from);
    let details = serde_json::json!({
        "rollback": rollback,
        "steps": result.as_ref().map(|r| r.lines.clone()).unwrap_or_default(),
    });
    let recorded = rec
        .record(
            PLATFORM_TENANT,
            "Migrate",
            &format!("Store::{url}"),
            details,
            failure(&result),
        )
        .await;
    rec.finish().await;
    for line in result?.lines {
        println!("{line}");
    }
    recorded?;
    println!("{url}: done");
    Ok(())
}

/// An import file: a `DataSet` JSON document, or an export (NDJSON with
/// a manifest) with its audit records.
fn read_import(file: &std::path::Path) -> anyhow::Result<(DataSet, Vec<audit::AuditEvent>)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if cedargate::export::is_export(&text) {
        let got = cedargate::export::read(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid export: {e}", file.display()))?;
        return Ok((got.data, got.audit));
    }
    let data = serde_json::from_str::<DataSet>(&text)
        .with_context(|| format!("{} is not a valid import file", file.display()))?;
    Ok((data, Vec::new()))
}

/// Whether `file` is an export (NDJSON opening with its manifest), from its
/// first line.
fn is_export_file(file: &std::path::Path) -> anyhow::Result<bool> {
    use std::io::{BufRead as _, Read as _};
    let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut first = Vec::new();
    std::io::BufReader::new(f)
        .take(1 << 20)
        .read_until(b'\n', &mut first)
        .with_context(|| format!("cannot read {}", file.display()))?;
    Ok(std::str::from_utf8(&first).is_ok_and(cedargate::export::is_export))
}

/// Streams a `DataSet` file into the store, a part at a time. `Err` with
/// the tally read so far when the file or the store refused.
async fn import_stream(
    s: &Arc<dyn Store>,
    file: &std::path::Path,
) -> (
    anyhow::Result<store::ImportSummary>,
    Option<cedargate::import::Tally>,
) {
    use cedargate::import::{read_parts, ReadError};
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<DataSet, String>>(2);
    let path = file.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let read = std::fs::File::open(&path)
            .map_err(|e| ReadError::Invalid(format!("cannot read it: {e}")))
            .and_then(|f| {
                read_parts(std::io::BufReader::with_capacity(1 << 20, f), |part| {
                    tx.blocking_send(Ok(part)).is_ok()
                })
            });
        if let Err(ReadError::Invalid(e)) = &read {
            // Nothing of a bad file is written.
            let _ = tx.blocking_send(Err(e.clone()));
        }
        read
    });
    let stored = s.import_parts(rx).await;
    let read = match reader.await {
        Ok(r) => r,
        Err(e) => {
            return (
                Err(anyhow::anyhow!("the import file reader failed: {e}")),
                None,
            )
        }
    };
    match (stored, read) {
        (_, Err(ReadError::Invalid(e))) => (
            Err(anyhow::anyhow!(
                "{} is not a valid import file: {e}",
                file.display()
            )),
            None,
        ),
        (Ok(summary), Ok(tally)) => (Ok(summary), Some(tally)),
        (Err(e), Ok(tally)) => (Err(e.into()), Some(tally)),
        (Err(e), Err(ReadError::Stopped)) => (Err(e.into()), None),
        (Ok(_), Err(ReadError::Stopped)) => (
            Err(anyhow::anyhow!(
                "the import stopped before the end of the file"
            )),
            None,
        ),
    }
}

async fn import(url: StoreUrl, file: PathBuf, spool: SpoolArgs) -> anyhow::Result<()> {
    let s = store::open(&url).await?;
    let rec = Recorder::open(s.clone(), &url, spool).await?;
    // What the import touched: (tenant, documents, audit records).
    let mut touched: Vec<(String, u64, usize)> = Vec::new();
    let result = match is_export_file(&file) {
        Ok(true) => {
            let data = read_import(&file);
            match &data {
                Ok((d, audit)) => {
                    let mut documents = std::collections::HashMap::<&str, u64>::new();
                    for x in &d.documents {
                        *documents.entry(x.tenant_id.as_str()).or_default() += 1;
                    }
                    let mut records = std::collections::HashMap::<&str, usize>::new();
                    for a in audit {
                        *records.entry(a.tenant_id.as_str()).or_default() += 1;
                    }
                    for t in &d.tenants {
                        let id = t.tenant_id.as_str();
                        touched.push((
                            id.to_string(),
                            documents.get(id).copied().unwrap_or(0),
                            records.get(id).copied().unwrap_or(0),
                        ));
                    }
                    async {
                        let summary = s.import(d).await?;
                        // Audit records keep their chains; writing them is
                        // idempotent.
                        for chunk in audit.chunks(500) {
                            s.put_audit(chunk).await?;
                        }
                        Ok::<_, anyhow::Error>(summary)
                    }
                    .await
                }
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            }
        }
        Ok(false) => {
            let (result, tally) = import_stream(&s, &file).await;
            if let Some(tally) = tally {
                for t in tally.tenants {
                    let documents = tally.documents.get(&t).copied().unwrap_or(0);
                    touched.push((t, documents, 0));
                }
            }
            result
        }
        Err(e) => Err(e),
    };
    let outcome = failure(&result);
    let source = file.display().to_string();
    let mut recorded = Ok(());
    if touched.is_empty() {
        let details = serde_json::json!({ "file": source });
        recorded = rec
            .record(
                PLATFORM_TENANT,
                "Import",
                &format!("Store::{url}"),
                details,
                outcome.clone(),
            )
            .await;
    }
    // One record per tenant the import touched (or tried to).
    for (tenant, documents, records) in &touched {
        let details = serde_json::json!({
            "file": source, "documents": documents, "auditRecords": records
        });
        let r = rec
            .record(
                tenant,
                "Import",
                &format!("CedarGate::Tenant::{tenant:?}"),
                details,
                outcome.clone(),
            )
            .await;
        recorded = recorded.and(r);
    }
    rec.finish().await;
    let summary = result?;
    recorded?;
    println!(
        "imported {} tenants and {} documents into {url}",
        summary.tenants, summary.documents
    );
    Ok(())
}

fn generate(
    spec: &cedargate::generate::Spec,
    out: &std::path::Path,
    requests: Option<PathBuf>,
    request_count: usize,
) -> anyhow::Result<()> {
    use std::io::BufWriter;
    let create = |p: &std::path::Path| {
        std::fs::File::create(p)
            .map(|f| BufWriter::with_capacity(1 << 20, f))
            .with_context(|| format!("cannot write {}", p.display()))
    };
    let written = cedargate::generate::write_dataset(spec, create(out)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} tenants and {} documents to {} (the biggest tenant: {} documents)",
        written.tenants,
        written.documents,
        out.display(),
        written.biggest_tenant_documents
    );
    if let Some(path) = requests {
        cedargate::generate::write_requests(spec, request_count, create(&path)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {request_count} requests to {}", path.display());
    }
    Ok(())
}

async fn audit_command(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { range, json } => {
            let s = store::connect(&range.store).await?;
            let records = s.all_audit_events(&range.query()).await?;
            let findings = audit::verify(&records);
            let writers: std::collections::BTreeSet<&str> =
                records.iter().map(|r| r.writer_id.as_str()).collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "tenant": range.tenant.as_str(),
                        "records": records.len(),
                        "writers": writers.len(),
                        "findings": findings,
                    })
                );
            } else {
                for f in &findings {
                    println!("{}", describe(f));
                }
                println!(
                    "{}: {} records from {} writers, {} findings",
                    range.tenant,
                    records.len(),
                    writers.len(),
                    findings.len()
                );
            }
            Ok(if findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Export { range, format } => {
            let s = store::connect(&range.store).await?;
            let mut query = range.query();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            loop {
                let page = s.audit_events(&query).await?;
                for e in &page.events {
                    let line = match format {
                        Format::Json => serde_json::to_string(e)?,
                        Format::Ocsf => audit::ocsf::to_ocsf(e).to_string(),
                    };
                    writeln!(out, "{line}")?;
                }
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe(f: &audit::Finding) -> String {
    use audit::Finding::*;
    match f {
        Gap { writer_id, from, to } => {
            format!("gap: writer {writer_id} records {from}..={to} are missing")
        }
        Altered { writer_id, seq, event_id } => {
            format!("altered: writer {writer_id} record {seq} ({event_id}) does not match its hash")
        }
        BrokenLink { writer_id, seq, event_id } => format!(
            "broken link: writer {writer_id} record {seq} ({event_id}) does not follow record {}",
            seq.saturating_sub(1)
        ),
        Reordered { writer_id, seq, event_id } => format!(
            "reordered: writer {writer_id} record {seq} ({event_id}) is older than the record before it"
        ),
        Duplicate { writer_id, seq } => {
            format!("duplicate: writer {writer_id} has two records {seq}")
        }
    }
}

async fn retention_command(cmd: RetentionCommand) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Run {
        store: url,
        config,
        archive_dir,
        recovery_days,
        tenant,
        dry_run,
        json,
        spool,
    } = cmd;
    let mut settings = retention_settings(config.as_deref(), &url)?;
    if let Some(dir) = archive_dir {
        settings.archive_dir = dir;
    }
    if let Some(days) = recovery_days {
        settings.recovery_days = days;
    }
    // The tables are `migrate`'s business: connecting needs no more rights
    // than the job's.
    let s = store::connect(&url).await?;
    let rec = Recorder::open(s.clone(), &url, spool).await?;
    let job = Retention {
        store: s,
        audit: rec.log.clone(),
        actor: rec.actor.clone(),
        keys: settings.encryption.provider().await,
        config: settings,
        clock: clock::system(),
    };
    let options = retention::Options { dry_run, tenant };
    let result = job.run(&options).await;
    drop(job);
    rec.finish().await;
    let report = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for step in &report.steps {
            println!("{}{step}", if dry_run { "would " } else { "" });
        }
        for f in &report.failures {
            println!("not finished: tenant {}: {}", f.tenant_id, f.message);
        }
        println!(
            "{}{} tenants checked; {} documents purged, {} tenants purged, {} audit records expired",
            if dry_run { "dry run, nothing changed: " } else { "" },
            report.tenants_checked,
            report.documents_purged,
            report.tenants_purged,
            report.audit_expired,
        );
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn decrypt_archive(
    file: PathBuf,
    config: Option<PathBuf>,
    key_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let encryption = match key_dir {
        Some(dir) => retention::Encryption::Local { key_dir: dir },
        None => {
            retention_settings(config.as_deref(), &StoreUrl::Sqlite("unused".into()))?.encryption
        }
    };
    let keys = encryption
        .provider()
        .await
        .context("no tenant keys: pass --key-dir or a --config with [retention.encryption]")?;
    let bytes = cedargate::keys::decrypt_file(keys.as_ref(), &file, None).await?;
    let text = String::from_utf8(bytes).context("the archive is not text")?;
    cedargate::export::read(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

async fn serve(args: AdminServeArgs) -> anyhow::Result<()> {
    let AdminServeArgs {
        serve: args,
        no_console,
    } = args;
    // The flags' or the file's address, else the management API's own.
    let mut settings = Settings::resolve_listening(args, DEFAULT_LISTEN.parse()?)?;
    settings.audit.role = "admin".into();
    if no_console {
        settings.console.enabled = false;
    }
    let console = settings.console.clone();
    let identity = settings.identity.clone();
    let listen = settings.listen;
    let retention = settings.retention.clone();
    let stripe = settings.stripe.clone();
    let sample_every = settings.storage_sample_interval;
    let app = App::build(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "cedargate-admin listening");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let keys = retention.encryption.provider().await;
    let scheduled = retention.interval.map(|every| {
        let job = Retention {
            store: app.state.engine.cache().store().clone(),
            audit: app.state.audit.clone(),
            actor: Actor::scheduled("retention"),
            keys,
            config: retention.clone(),
            clock: clock::system(),
        };
        tracing::info!(every_secs = every.as_secs(), "retention job scheduled");
        tokio::spawn(job.schedule(every, async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }))
    });
    if let Some(every) = sample_every {
        // Daily storage samples for the billing export's GB-days: the day's
        // last sample counts, so running hourly (and on several instances)
        // is harmless.
        let store = app.state.engine.cache().store().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match cedargate::billing::sample_storage(store.as_ref(), chrono::Utc::now()).await {
                    Ok(n) => tracing::debug!(tenants = n, "storage sampled"),
                    Err(e) => {
                        tracing::warn!(error = %e, "storage not sampled; next try at the next interval")
                    }
                }
            }
        });
    }
    let recovery_days = retention.recovery_days;
    let api: Arc<dyn cedargate::sidecar::Router> =
        Arc::new(AdminRoutes::new(retention, clock::system()).with_stripe(stripe));
    // The console is served on the API's own address (its redirect URI
    // defaults to it).
    let bound = listener.local_addr()?;
    let routes: Arc<dyn cedargate::sidecar::Router> =
        match cedargate::console::Console::build(&console, &identity, bound, api.clone())
            .map_err(anyhow::Error::msg)?
        {
            Some(c) => {
                tracing::info!(url = %format!("http://{bound}/console/"), "admin console served");
                Arc::new(cedargate::console::Routes::new(
                    c.with_recovery_days(recovery_days),
                ))
            }
            None => api,
        };
    app.serve_with(listener, routes, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    })
    .await;
    if let Some(job) = scheduled {
        let _ = job.await;
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(*args).await?,
        Command::Migrate {
            store,
            dry_run,
            rollback,
            spool,
        } => migrate(store, dry_run, rollback, spool).await?,
        Command::Import { store, file, spool } => import(store, file, spool).await?,
        Command::Generate {
            tenants,
            documents,
            skew,
            seed,
            wide_users,
            wide_roles,
            out,
            requests,
            request_count,
        } => {
            let spec = cedargate::generate::Spec {
                tenants,
                documents,
                skew,
                seed,
                wide: (wide_users + wide_roles > 0).then_some((wide_users, wide_roles)),
            };
            tokio::task::spawn_blocking(move || generate(&spec, &out, requests, request_count))
                .await??;
        }
        Command::Audit(cmd) => return audit_command(cmd).await,
        Command::Retention(cmd) => return retention_command(cmd).await,
        Command::Archive(ArchiveCommand::Decrypt {
            file,
            config,
            key_dir,
        }) => decrypt_archive(file, config, key_dir).await?,
        Command::Search(cmd) => search_command(cmd).await?,
        Command::Billing(BillingCommand::Usage {
            store,
            month,
            format,
        }) => {
            cedargate::billing::parse_month(&month).map_err(anyhow::Error::msg)?;
            // Reads only: the tables are `migrate`'s business.
            let s = store::connect(&store).await?;
            let rows = cedargate::billing::usage(s.as_ref(), &month, chrono::Utc::now()).await?;
            let mut out = std::io::stdout().lock();
            match format {
                UsageFormat::Csv => out.write_all(cedargate::billing::csv(&rows).as_bytes())?,
                UsageFormat::Ndjson => {
                    for e in cedargate::billing::meter_events(&rows, chrono::Utc::now()) {
                        writeln!(out, "{e}")?;
                    }
                }
            }
        }
        Command::Billing(BillingCommand::Sample { store }) => {
            let s = store::connect(&store).await?;
            let n = cedargate::billing::sample_storage(s.as_ref(), chrono::Utc::now()).await?;
            println!("storage sampled for {n} tenants");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
