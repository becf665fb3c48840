//! The audit writer: records go through a bounded queue into a durable
//! local spool, and from the spool to the store.
//!
//! ```text
//!   request ──submit()──▶ queue (bounded) ──▶ appender thread ──▶ spool segment ──▶ drainer thread ──▶ store
//!            ◀── ack ──────────────────────── (after write + fdatasync)            (delete after the store acked)
//! ```
//!
//! * **Queue**: a request waits for a slot (a semaphore of
//!   `queue_capacity` permits) and hands its record over; it never does
//!   file or store work itself.
//! * **Appender** ([`super::appender`], its own OS thread): takes whatever is
//!   queued (up to `max_batch`), stamps each record into its writer's
//!   per-tenant hash chain — serializing it once, for its hash and its
//!   frame — appends the batch to the active segment with one `fdatasync`
//!   (group commit) and only then acknowledges the records. A failed write
//!   acknowledges nothing and rolls the chains back.
//! * **Segments**: the active segment is closed when it grows past
//!   `segment_bytes` or is older than `rotate_interval`; closed segments are
//!   what the drainer reads. Nothing but the queue is held in memory: during
//!   a store outage the records wait on disk, up to `max_spool_bytes`; past
//!   that new records are refused (and the decisions with them: fail closed).
//! * **Drainer** ([`super::drainer`], its own OS thread with its own
//!   runtime, and a `SCHED_IDLE` thread that writes a local store while the
//!   backlog is under `idle_drain_bytes`): sends each closed segment
//!   to the store in large batches of the spooled JSON as it is
//!   (`put_audit_spooled` is idempotent: a record sent twice is stored
//!   once), retries with backoff while the store fails, and deletes the
//!   segment only after the store has acknowledged all of it. When the
//!   store cannot keep up, the spool grows, within `max_spool_bytes`.
//! * **Crash recovery**: each process writes under its own directory
//!   `<spool_dir>/<writer id>/`, locked while it runs. At start (and every
//!   few seconds) the drainer adopts directories whose lock is free — left by
//!   a process that died — and drains them; a torn tail (a write cut short
//!   by the crash, never acknowledged) is cut off and counted.
//!
//! Modes: `durable` acknowledges after the fsync; `buffered` acknowledges
//! after the write to the OS (a crash of the process loses nothing; a crash
//! of the machine loses at most `flush_interval` of records), `off` records
//! nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{oneshot, watch, Notify, Semaphore};

use super::appender::{self, Active};
use super::drainer;
use super::{AuditEvent, DecisionDetails, RETENTION_FLOOR_SECS};
use crate::metrics::AuditMetrics;
use crate::store::Store;

/// When a record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Acknowledged once on disk (fsync, group commit). The default.
    Durable,
    /// Acknowledged once handed to the OS; synced every `flush_interval`.
    Buffered,
    /// Nothing is recorded (benchmarks only).
    Off,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub mode: AuditMode,
    /// Names the writer: `sidecar`, `admin`.
    pub role: String,
    /// Directory of spool directories (one per writer process).
    pub spool_dir: PathBuf,
    /// Records waiting for the appender; a full queue makes callers wait.
    pub queue_capacity: usize,
    /// Most records per group commit.
    pub max_batch: usize,
    /// A segment is closed past this size…
    pub segment_bytes: u64,
    /// …or this age.
    pub rotate_interval: Duration,
    /// Buffered mode: how often the spool is synced.
    pub flush_interval: Duration,
    /// Records on disk not yet in the store, at most; past it new records
    /// are refused.
    pub max_spool_bytes: u64,
    /// Most records per store write (one SQLite transaction). A round
    /// takes at most what is closed, so a batch this large forms only
    /// while the drain is behind; then a record costs a SQLite store a half
    /// to a third of what it costs in transactions of 1,000 once a hundred
    /// tenants are active (BENCHMARKS.md, "The drain with many tenants").
    pub drain_batch: usize,
    /// How long closed segments may wait for more, so that the store is
    /// written in transactions of `drain_batch` records rather than one a
    /// segment when traffic is light (BENCHMARKS.md, "Audit drain into
    /// SQLite"). Records reach the store about `rotate_interval` + this
    /// after they were answered. 0 (the default): they do not wait.
    pub drain_delay: Duration,
    /// While less than this waits in the spool, the store is written only
    /// with CPU time nothing else wants (`SCHED_IDLE`); past it, at the
    /// requests' priority, so the backlog stays near this under sustained
    /// load. 0: the drainer always writes, at nice +10.
    pub idle_drain_bytes: u64,
    /// How long a round in idle time may hold the store's write lock
    /// before the store abandons it and the drainer writes it itself (a
    /// management write waits for that lock; SQLite's busy timeout is 5 s).
    pub idle_hold: Duration,
    /// How long records are kept in the store; never below the floor.
    pub retention: Duration,
    /// Context keys whose values decision records keep.
    pub context_keys: Vec<String>,
    /// On shutdown, how long the drainer may keep sending to the store.
    pub shutdown_timeout: Duration,
}

impl AuditConfig {
    pub fn new(spool_dir: impl Into<PathBuf>) -> Self {
        AuditConfig {
            mode: AuditMode::Durable,
            role: "sidecar".into(),
            spool_dir: spool_dir.into(),
            queue_capacity: 16 * 1024,
            max_batch: 2048,
            segment_bytes: 4 * 1024 * 1024,
            rotate_interval: Duration::from_millis(100),
            flush_interval: Duration::from_millis(50),
            max_spool_bytes: 1024 * 1024 * 1024,
            drain_batch: 10_000,
            drain_delay: Duration::ZERO,
            idle_drain_bytes: 64 * 1024 * 1024,
            idle_hold: Duration::from_secs(1),
            retention: Duration::from_secs(RETENTION_FLOOR_SECS as u64),
            context_keys: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    fn retention_secs(&self) -> i64 {
        i64::try_from(self.retention.as_secs())
            .unwrap_or(i64::MAX)
            .max(RETENTION_FLOOR_SECS)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit spool is full ({0} bytes wait for the store)")]
    SpoolFull(u64),
    #[error("the audit log is closed")]
    Closed,
    #[error("the audit spool cannot be written: {0}")]
    Io(String),
}

/// A record in the queue and whom to tell when it is written.
pub(super) struct Pending {
    pub event: Entry,
    pub ack: Option<oneshot::Sender<Result<(), AuditError>>>,
}

/// A record as queued: a decision's with typed details, any other with
/// JSON details. (Records move through the queue by value; boxing the
/// larger variant would cost an allocation per decision.)
#[allow(clippy::large_enum_variant)]
pub enum Entry {
    Event(AuditEvent),
    Decision(AuditEvent<DecisionDetails>),
}

impl From<AuditEvent> for Entry {
    fn from(e: AuditEvent) -> Self {
        Entry::Event(e)
    }
}

impl From<AuditEvent<DecisionDetails>> for Entry {
    fn from(e: AuditEvent<DecisionDetails>) -> Self {
        Entry::Decision(e)
    }
}

/// What the appender thread receives. (`Stop` comes once; boxing records
/// to make it smaller would cost an allocation per record.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Msg {
    Record(Pending),
    /// Write what is queued, close the segment and stop.
    Stop,
}

/// Where a queued record's acknowledgement will arrive.
pub struct Receipt(Option<oneshot::Receiver<Result<(), AuditError>>>);

impl Receipt {
    /// The receipt of a record that is not kept (audit off).
    pub fn none() -> Self {
        Receipt(None)
    }

    /// Waits until the record is written (per the mode).
    pub async fn written(self) -> Result<(), AuditError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(AuditError::Closed)),
        }
    }
}

struct Inner {
    /// One permit per free queue slot; the appender gives them back.
    slots: Arc<Semaphore>,
    tx: std::sync::mpsc::Sender<Msg>,
    closed: Arc<AtomicBool>,
    spool_bytes: Arc<AtomicU64>,
    max_spool_bytes: u64,
    retention_secs: i64,
    context_keys: Vec<String>,
    writer_id: String,
}

/// The handle request handlers record through. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog(Option<Arc<Inner>>);

impl AuditLog {
    /// A log that records nothing.
    pub fn off() -> Self {
        AuditLog(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The writer id its records carry.
    pub fn writer_id(&self) -> Option<&str> {
        self.0.as_ref().map(|i| i.writer_id.as_str())
    }

    /// Context keys whose values decision records keep.
    pub fn context_keys(&self) -> &[String] {
        self.0.as_ref().map_or(&[], |i| &i.context_keys)
    }

    /// Queues a record (waiting while the queue is full).
    pub async fn submit<D>(&self, mut event: AuditEvent<D>) -> Result<Receipt, AuditError>
    where
        Entry: From<AuditEvent<D>>,
    {
        let Some(inner) = &self.0 else {
            return Ok(Receipt(None));
        };
        if inner.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        let spooled = inner.spool_bytes.load(Ordering::Relaxed);
        if spooled > inner.max_spool_bytes {
            return Err(AuditError::SpoolFull(spooled));
        }
        event.expires_at = event.timestamp.timestamp() + inner.retention_secs;
        let slot = inner
            .slots
            .acquire()
            .await
            .map_err(|_| AuditError::Closed)?;
        // The appender gives the slot back once it has taken the record.
        slot.forget();
        let (ack, rx) = oneshot::channel();
        inner
            .tx
            .send(Msg::Record(Pending {
                event: event.into(),
                ack: Some(ack),
            }))
            .map_err(|_| AuditError::Closed)?;
        Ok(Receipt(Some(rx)))
    }

    /// Queues a record and waits until it is written.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.submit(event).await?.written().await
    }
}

/// The running appender and drainer.
pub struct AuditTasks {
    stop: watch::Sender<bool>,
    closed: Arc<AtomicBool>,
    tx: std::sync::mpsc::Sender<Msg>,
    appender: oneshot::Receiver<()>,
    drainer: oneshot::Receiver<()>,
}

impl AuditTasks {
    /// Stops taking records, writes what is queued, and drains the spool to
    /// the store for at most the configured shutdown timeout. What is left
    /// stays on disk for the next start.
    pub async fn shutdown(self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.tx.send(Msg::Stop);
        let _ = self.stop.send(true);
        let _ = self.appender.await;
        let _ = self.drainer.await;
    }
}

/// What the appender and the drainer share.
pub(super) struct Shared {
    pub dir: PathBuf,
    /// Segments numbered below this are closed.
    pub active_number: AtomicU64,
    /// Records in this writer's closed segments not yet drained.
    pub closed_records: AtomicU64,
    pub spool_bytes: Arc<AtomicU64>,
    pub rotated: Notify,
    pub appender_done: AtomicBool,
    pub metrics: AuditMetrics,
}

pub(super) const LOCK: &str = "lock";
pub(super) const SEGMENT_EXT: &str = "seg";

pub(super) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.{SEGMENT_EXT}"))
}

/// Opens this process's spool directory and starts the appender and the
/// drainer. `role` names the writer (`sidecar`, `admin`).
pub async fn start(
    config: AuditConfig,
    store: Arc<dyn Store>,
    metrics: AuditMetrics,
    role: &str,
) -> Result<(AuditLog, Option<AuditTasks>), AuditError> {
    if config.mode == AuditMode::Off {
        tracing::warn!("audit is OFF: decisions are not recorded");
        return Ok((AuditLog::off(), None));
    }
    let writer_id = format!("{role}-{}", uuid::Uuid::now_v7().simple());
    let dir = config.spool_dir.join(&writer_id);
    let active = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || Active::create(&dir, 1)
    })
    .await
    .map_err(|e| AuditError::Io(e.to_string()))?
    .map_err(|e| AuditError::Io(format!("{}: {e}", dir.display())))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let slots = Arc::new(Semaphore::new(config.queue_capacity.max(1)));
    let closed = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        dir,
        active_number: AtomicU64::new(active.number),
        closed_records: AtomicU64::new(0),
        spool_bytes: Arc::new(AtomicU64::new(0)),
        rotated: Notify::new(),
        appender_done: AtomicBool::new(false),
        metrics,
    });
    let log = AuditLog(Some(Arc::new(Inner {
        slots: slots.clone(),
        tx: tx.clone(),
        closed: closed.clone(),
        spool_bytes: shared.spool_bytes.clone(),
        max_spool_bytes: config.max_spool_bytes,
        retention_secs: config.retention_secs(),
        context_keys: config.context_keys.clone(),
        writer_id: writer_id.clone(),
    })));
    let appender = appender::spawn(
        active,
        writer_id,
        rx,
        slots,
        config.clone(),
        shared.clone(),
        std::fs::File::sync_data,
    )
    .map_err(|e| AuditError::Io(format!("cannot start the audit appender: {e}")))?;
    let drainer = drainer::spawn(store, stop_rx, config, shared)
        .map_err(|e| AuditError::Io(format!("cannot start the audit drainer: {e}")))?;
    Ok((
        log,
        Some(AuditTasks {
            stop,
            closed,
            tx,
            appender,
            drainer,
        }),
    ))
}

/// Every record left in the spool directories under `root`: records not
/// yet in the store.
#[cfg(test)]
fn spooled_records(root: &Path) -> std::io::Result<Vec<AuditEvent>> {
    use super::drainer::{read_segment, segments};
    use std::fs;
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        for n in segments(&dir)? {
            for r in read_segment(&segment_path(&dir, n))?.0 {
                if let Ok(e) = serde_json::from_slice(&r.json) {
                    out.push(e);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::audit::{spool, verify, AuditEvent, Chains, Undo};
    use crate::ids::TenantId;
    use crate::store::{self, AuditQuery, StoreUrl};

    fn event(i: usize) -> AuditEvent {
        AuditEvent::new(
            format!("e-{i:04}"),
            chrono::Utc::now(),
            "t1",
            "Read",
            "CedarGate::Document::\"d\"",
            serde_json::json!({ "decision": "Allow", "i": i }),
        )
    }

    async fn stored(s: &dyn Store) -> Vec<AuditEvent> {
        s.all_audit_events(&AuditQuery::new(
            TenantId::parse("t1").unwrap(),
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            chrono::Utc::now() + chrono::Duration::hours(1),
            100,
        ))
        .await
        .unwrap()
    }

    /// A SQLite store in `dir`.
    async fn sqlite(dir: &Path) -> Arc<dyn Store> {
        store::open(&StoreUrl::Sqlite(dir.join("s.db")))
            .await
            .unwrap()
    }

    fn config(dir: &Path) -> AuditConfig {
        let mut c = AuditConfig::new(dir.join("spool"));
        c.rotate_interval = Duration::from_millis(5);
        c.drain_batch = 7;
        c
    }

    #[tokio::test]
    async fn records_reach_the_store_once_and_the_spool_empties() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let metrics = AuditMetrics::default();
        let (log, tasks) = start(config(dir.path()), s.clone(), metrics.clone(), "test")
            .await
            .unwrap();
        let mut receipts = Vec::new();
        for i in 0..50 {
            receipts.push(log.submit(event(i)).await.unwrap());
        }
        for r in receipts {
            r.written().await.unwrap();
        }
        tasks.unwrap().shutdown().await;
        let got = stored(s.as_ref()).await;
        assert_eq!(got.len(), 50);
        assert!(verify(&got).is_empty());
        assert_eq!(metrics.records_written.get(), 50);
        assert_eq!(metrics.spool_bytes.get(), 0);
        assert!(spooled_records(&dir.path().join("spool"))
            .unwrap()
            .is_empty());
        // The writer's directory is gone.
        assert_eq!(fs::read_dir(dir.path().join("spool")).unwrap().count(), 0);
        // A closed log refuses records.
        assert!(matches!(
            log.record(event(99)).await,
            Err(AuditError::Closed)
        ));
    }

    /// Waits (up to 10 s) until the store holds `n` records of t1.
    async fn until_stored(s: &dyn Store, n: usize) -> Vec<AuditEvent> {
        for _ in 0..500 {
            let got = stored(s).await;
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the store never held {n} records");
    }

    async fn written(log: &AuditLog, ids: std::ops::Range<usize>) {
        let mut receipts = Vec::new();
        for i in ids {
            receipts.push(log.submit(event(i)).await.unwrap());
        }
        for r in receipts {
            r.written().await.unwrap();
        }
    }

    #[tokio::test]
    async fn closed_segments_wait_for_a_batchs_worth_then_go_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let mut c = config(dir.path());
        c.drain_batch = 20;
        c.drain_delay = Duration::from_secs(3600);
        let metrics = AuditMetrics::default();
        let (log, tasks) = start(c, s.clone(), metrics.clone(), "test").await.unwrap();
        written(&log, 0..10).await;
        // Closed (segments rotate every 5 ms), but fewer than a batch: they
        // wait on disk.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(stored(s.as_ref()).await.is_empty());
        assert_eq!(
            spooled_records(&dir.path().join("spool")).unwrap().len(),
            10
        );
        // Ten more make a batch: all twenty go, long before the delay.
        written(&log, 10..20).await;
        let got = until_stored(s.as_ref(), 20).await;
        assert_eq!(got.len(), 20);
        assert!(verify(&got).is_empty());
        assert_eq!(metrics.records_written.get(), 20);
        // Fewer than a batch again, then a shutdown: nothing waits.
        written(&log, 20..23).await;
        tasks.unwrap().shutdown().await;
        assert_eq!(stored(s.as_ref()).await.len(), 23);
        assert!(spooled_records(&dir.path().join("spool"))
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn fewer_records_than_a_batch_go_after_the_drain_delay() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let mut c = config(dir.path());
        c.drain_batch = 1000;
        c.drain_delay = Duration::from_millis(200);
        let (log, tasks) = start(c, s.clone(), AuditMetrics::default(), "test")
            .await
            .unwrap();
        written(&log, 0..5).await;
        assert_eq!(until_stored(s.as_ref(), 5).await.len(), 5);
        // Drained while running: the drained segments are removed.
        for _ in 0..500 {
            if spooled_records(&dir.path().join("spool"))
                .unwrap()
                .is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(spooled_records(&dir.path().join("spool"))
            .unwrap()
            .is_empty());
        tasks.unwrap().shutdown().await;
    }

    /// The scheduling policies of this process's threads named `name`.
    #[cfg(target_os = "linux")]
    fn policies_of(name: &str) -> Vec<i32> {
        let mut out = Vec::new();
        for task in fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                let tid: libc::pid_t = task.file_name().to_string_lossy().parse().unwrap();
                // SAFETY: a read-only query about a thread id.
                out.push(unsafe { libc::sched_getscheduler(tid) });
            }
        }
        out
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_small_backlog_is_drained_by_an_idle_class_thread() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let mut c = config(dir.path());
        c.drain_delay = Duration::ZERO;
        let (log, tasks) = start(c, s.clone(), AuditMetrics::default(), "test")
            .await
            .unwrap();
        // The drainer starts the idle thread when it starts.
        let mut idle = Vec::new();
        for _ in 0..250 {
            idle = policies_of("audit-idle");
            if !idle.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !idle.is_empty() && idle.iter().all(|p| *p == libc::SCHED_IDLE),
            "{idle:?}"
        );
        // The drainer itself stays in the normal class: it writes when the
        // backlog is large.
        assert!(policies_of("audit-drainer")
            .iter()
            .all(|p| *p == libc::SCHED_OTHER));
        written(&log, 0..30).await;
        let got = until_stored(s.as_ref(), 30).await;
        assert!(verify(&got).is_empty());
        tasks.unwrap().shutdown().await;
    }

    #[tokio::test]
    async fn a_store_write_past_its_hold_limit_stores_nothing_and_frees_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let records: Vec<_> = (0..500)
            .map(|i| crate::store::SpooledAudit::of(&event(i)).unwrap())
            .collect();
        let s2 = s.clone();
        let (r, recs) = tokio::task::spawn_blocking(move || {
            let r = s2.put_audit_spooled_blocking(&records, Some(Duration::ZERO));
            (r, records)
        })
        .await
        .unwrap();
        assert!(matches!(r, Some(Err(_))), "{r:?}");
        assert!(stored(s.as_ref()).await.is_empty());
        // The lock is free at once: another writer does not wait for it.
        let other = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; COMMIT").unwrap();
        // The limit was the one write's: the next, without one, stores all.
        let s2 = s.clone();
        let r = tokio::task::spawn_blocking(move || s2.put_audit_spooled_blocking(&recs, None))
            .await
            .unwrap();
        assert!(matches!(r, Some(Ok(()))), "{r:?}");
        assert_eq!(stored(s.as_ref()).await.len(), 500);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_idle_round_past_its_hold_limit_is_written_by_the_drainer() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let mut c = config(dir.path());
        // One round of at least 150 records, which cannot finish in no time.
        c.drain_batch = 150;
        c.drain_delay = Duration::from_secs(3600);
        c.idle_hold = Duration::ZERO;
        let metrics = AuditMetrics::default();
        let (log, tasks) = start(c, s.clone(), metrics.clone(), "test").await.unwrap();
        written(&log, 0..200).await;
        let got = until_stored(s.as_ref(), 150).await;
        assert!(verify(&got).is_empty());
        assert_eq!(metrics.idle_rounds_abandoned.get(), 1);
        assert_eq!(metrics.store_write_errors.get(), 0);
        tasks.unwrap().shutdown().await;
        let got = stored(s.as_ref()).await;
        assert_eq!(got.len(), 200);
        assert!(verify(&got).is_empty());
        assert_eq!(metrics.records_written.get(), 200);
    }

    #[tokio::test]
    async fn with_idle_draining_off_records_still_reach_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let mut c = config(dir.path());
        c.drain_delay = Duration::ZERO;
        c.idle_drain_bytes = 0;
        let (log, tasks) = start(c, s.clone(), AuditMetrics::default(), "test")
            .await
            .unwrap();
        written(&log, 0..30).await;
        assert_eq!(until_stored(s.as_ref(), 30).await.len(), 30);
        tasks.unwrap().shutdown().await;
    }

    #[tokio::test]
    async fn a_dead_writers_spool_is_adopted_and_its_torn_tail_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        // What a killed writer leaves: two segments, the last one torn.
        let dead = root.join("sidecar-dead");
        fs::create_dir_all(&dead).unwrap();
        fs::write(dead.join(LOCK), b"").unwrap();
        let mut chains = Chains::new("sidecar-dead");
        let mut segment = |n: u64, range: std::ops::Range<usize>, torn: &[u8]| {
            let mut bytes = Vec::new();
            for i in range {
                let mut e = event(i);
                chains.stamp(&mut e, &mut Undo::default());
                bytes.extend(spool::frame(&serde_json::to_vec(&e).unwrap()).unwrap());
            }
            bytes.extend_from_slice(torn);
            fs::write(segment_path(&dead, n), bytes).unwrap();
        };
        segment(1, 0..10, b"");
        segment(2, 10..15, &[42, 0, 0, 0, 1, 2]);

        let s = sqlite(dir.path()).await;
        let metrics = AuditMetrics::default();
        let (log, tasks) = start(config(dir.path()), s.clone(), metrics.clone(), "test")
            .await
            .unwrap();
        log.record(event(100)).await.unwrap();
        tasks.unwrap().shutdown().await;
        let got = stored(s.as_ref()).await;
        assert_eq!(got.len(), 16);
        assert!(verify(&got).is_empty(), "{:?}", verify(&got));
        assert_eq!(metrics.torn_bytes.get(), 6);
        assert_eq!(metrics.records_dropped.get(), 0);
        assert!(!dead.exists(), "the adopted directory is removed");
    }

    #[tokio::test]
    async fn segments_are_extended_ahead_of_the_records_and_trimmed_when_closed() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let mut c = config(dir.path());
        c.rotate_interval = Duration::from_secs(3600);
        let metrics = AuditMetrics::default();
        let (log, tasks) = start(c, s.clone(), metrics.clone(), "test").await.unwrap();
        log.record(event(0)).await.unwrap();
        let writer = log.writer_id().unwrap().to_string();
        // The active segment holds one record and zeros after it.
        let active = segment_path(&dir.path().join("spool").join(&writer), 1);
        let bytes = fs::read(&active).unwrap();
        let found = spool::scan(&bytes);
        assert_eq!(found.records.len(), 1);
        assert!(bytes.len() as u64 > found.valid_len, "extended ahead");
        assert_eq!(found.torn_bytes, 0);
        // Closed on shutdown: trimmed to its records, drained, removed.
        tasks.unwrap().shutdown().await;
        assert_eq!(stored(s.as_ref()).await.len(), 1);
        assert_eq!(metrics.torn_bytes.get(), 0);
        assert_eq!(metrics.spool_bytes.get(), 0);
    }

    #[tokio::test]
    async fn a_killed_writers_segment_ending_in_zeros_is_drained_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("spool").join("sidecar-killed");
        fs::create_dir_all(&dead).unwrap();
        fs::write(dead.join(LOCK), b"").unwrap();
        let mut chains = Chains::new("sidecar-killed");
        let mut bytes = Vec::new();
        for i in 0..5 {
            let mut e = event(i);
            chains.stamp(&mut e, &mut Undo::default());
            bytes.extend(spool::frame(&serde_json::to_vec(&e).unwrap()).unwrap());
        }
        // What the appender had extended the segment by, unused.
        bytes.resize(bytes.len() + 64 * 1024, 0);
        fs::write(segment_path(&dead, 1), bytes).unwrap();

        let s = sqlite(dir.path()).await;
        let metrics = AuditMetrics::default();
        let (_log, tasks) = start(config(dir.path()), s.clone(), metrics.clone(), "test")
            .await
            .unwrap();
        tasks.unwrap().shutdown().await;
        let got = stored(s.as_ref()).await;
        assert_eq!(got.len(), 5);
        assert!(verify(&got).is_empty());
        assert_eq!(metrics.torn_bytes.get(), 0, "zeros are not a torn tail");
        assert!(!dead.exists());
    }

    #[tokio::test]
    async fn a_live_writers_spool_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let (a, a_tasks) = start(config(dir.path()), s.clone(), AuditMetrics::default(), "a")
            .await
            .unwrap();
        let (b, b_tasks) = start(config(dir.path()), s.clone(), AuditMetrics::default(), "b")
            .await
            .unwrap();
        a.record(event(1)).await.unwrap();
        b.record(event(2)).await.unwrap();
        b_tasks.unwrap().shutdown().await;
        // `a` still runs: its directory is still there.
        let a_dir = dir.path().join("spool").join(a.writer_id().unwrap());
        assert!(a_dir.exists());
        a_tasks.unwrap().shutdown().await;
        assert!(!a_dir.exists());
        assert_eq!(stored(s.as_ref()).await.len(), 2);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = sqlite(dir.path()).await;
        let mut c = config(dir.path());
        c.max_spool_bytes = 0;
        c.rotate_interval = Duration::from_secs(3600);
        let (log, tasks) = start(c, s, AuditMetrics::default(), "t").await.unwrap();
        log.record(event(1)).await.unwrap();
        assert!(matches!(
            log.record(event(2)).await,
            Err(AuditError::SpoolFull(_))
        ));
        tasks.unwrap().shutdown().await;
    }

    #[test]
    fn retention_is_never_below_the_floor() {
        let mut c = AuditConfig::new("x");
        c.retention = Duration::from_secs(86_400);
        assert_eq!(c.retention_secs(), RETENTION_FLOOR_SECS);
        c.retention = Duration::from_secs(10 * 365 * 86_400);
        assert_eq!(c.retention_secs(), 10 * 365 * 86_400);
    }
}
