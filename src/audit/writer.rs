//! The audit writer: records go through a bounded queue into a durable
//! local spool, and from the spool to the store.
//!
//! ```text
//!   request ──record()──▶ queue (bounded) ──▶ appender ──▶ spool segment ──▶ drainer ──▶ store
//!            ◀── ack ─────────────────────── (after write + fsync)          (delete after the store acked)
//! ```
//!
//! * **Appender** (one task): takes whatever is queued (up to `max_batch`),
//!   stamps each record into its writer's per-tenant hash chain, appends the
//!   batch to the active segment with one `fdatasync` (group commit) and only
//!   then acknowledges the records. A failed write acknowledges nothing and
//!   rolls the chains back.
//! * **Segments**: the active segment is closed when it grows past
//!   `segment_bytes` or is older than `rotate_interval`; closed segments are
//!   what the drainer reads. Nothing but the queue is held in memory: during
//!   a store outage the records wait on disk, up to `max_spool_bytes`; past
//!   that new records are refused (and the decisions with them: fail closed).
//! * **Drainer** (one task): sends each closed segment to the store in
//!   batches (`put_audit` is idempotent: a record sent twice is stored once),
//!   retries with backoff while the store fails, and deletes the segment
//!   only after the store has acknowledged all of it.
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::spool;
use super::{AuditEvent, Chains, Undo, RETENTION_FLOOR_SECS};
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
    /// Records per store write.
    pub drain_batch: usize,
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
            drain_batch: 1000,
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
struct Pending {
    event: AuditEvent,
    ack: Option<oneshot::Sender<Result<(), AuditError>>>,
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
    tx: mpsc::Sender<Pending>,
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
    pub async fn submit(&self, mut event: AuditEvent) -> Result<Receipt, AuditError> {
        let Some(inner) = &self.0 else {
            return Ok(Receipt(None));
        };
        let spooled = inner.spool_bytes.load(Ordering::Relaxed);
        if spooled > inner.max_spool_bytes {
            return Err(AuditError::SpoolFull(spooled));
        }
        event.expires_at = event.timestamp.timestamp() + inner.retention_secs;
        let (ack, rx) = oneshot::channel();
        inner
            .tx
            .send(Pending {
                event,
                ack: Some(ack),
            })
            .await
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
    appender: JoinHandle<()>,
    drainer: JoinHandle<()>,
}

impl AuditTasks {
    /// Stops taking records, writes what is queued, and drains the spool to
    /// the store for at most the configured shutdown timeout. What is left
    /// stays on disk for the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.appender.await;
        let _ = self.drainer.await;
    }
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
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let (stop, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        dir,
        active_number: AtomicU64::new(active.number),
        spool_bytes: Arc::new(AtomicU64::new(0)),
        rotated: Notify::new(),
        appender_done: AtomicBool::new(false),
        metrics,
    });
    let log = AuditLog(Some(Arc::new(Inner {
        tx,
        spool_bytes: shared.spool_bytes.clone(),
        max_spool_bytes: config.max_spool_bytes,
        retention_secs: config.retention_secs(),
        context_keys: config.context_keys.clone(),
        writer_id: writer_id.clone(),
    })));
    let appender = Appender {
        chains: Chains::new(writer_id),
        metrics: shared.metrics.clone(),
        active,
        durable: config.mode == AuditMode::Durable,
        dirty: false,
        segment_bytes: config.segment_bytes,
        rotate_interval: config.rotate_interval,
    };
    let appender = tokio::spawn(append_loop(
        appender,
        rx,
        stop_rx.clone(),
        config.clone(),
        shared.clone(),
    ));
    let drainer = tokio::spawn(drain_loop(store, stop_rx, config, shared));
    Ok((
        log,
        Some(AuditTasks {
            stop,
            appender,
            drainer,
        }),
    ))
}

/// What the appender and the drainer share.
struct Shared {
    dir: PathBuf,
    /// Segments numbered below this are closed.
    active_number: AtomicU64,
    spool_bytes: Arc<AtomicU64>,
    rotated: Notify,
    appender_done: AtomicBool,
    metrics: AuditMetrics,
}

const LOCK: &str = "lock";
const SEGMENT_EXT: &str = "seg";

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.{SEGMENT_EXT}"))
}

/// Syncs a directory, so the files created in it survive a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being appended to, and the lock on its directory.
struct Active {
    dir: PathBuf,
    number: u64,
    file: File,
    len: u64,
    opened: Instant,
    _lock: File,
}

impl Active {
    /// Creates the writer's directory, locks it and opens the first segment.
    /// The directory is made under a hidden name and renamed once locked, so
    /// no other process can mistake it for a dead writer's.
    fn create(dir: &Path, number: u64) -> io::Result<Self> {
        let root = dir.parent().unwrap_or(Path::new("."));
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let staging = root.join(format!(".{name}"));
        fs::create_dir_all(&staging)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(staging.join(LOCK))?;
        lock.try_lock().map_err(|e| {
            io::Error::new(io::ErrorKind::WouldBlock, format!("spool is in use: {e}"))
        })?;
        fs::rename(&staging, dir)?;
        sync_dir(root)?;
        let file = Self::open_segment(dir, number)?;
        Ok(Active {
            dir: dir.to_path_buf(),
            number,
            file,
            len: 0,
            opened: Instant::now(),
            _lock: lock,
        })
    }

    fn open_segment(dir: &Path, number: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(dir, number))?;
        sync_dir(dir)?;
        Ok(file)
    }

    /// Closes this segment and starts the next one. The closed segment must
    /// have been synced.
    fn rotate(&mut self) -> io::Result<()> {
        let next = self.number + 1;
        self.file = Self::open_segment(&self.dir, next)?;
        self.number = next;
        self.len = 0;
        self.opened = Instant::now();
        Ok(())
    }
}

struct Appender {
    chains: Chains,
    metrics: AuditMetrics,
    active: Active,
    durable: bool,
    /// Written but not yet synced (buffered mode).
    dirty: bool,
    /// When the active segment is closed (from the configuration).
    segment_bytes: u64,
    rotate_interval: Duration,
}

impl Appender {
    /// Stamps and appends a batch. Returns the bytes appended; on an error
    /// nothing counts as written and the chains are as before.
    fn append(&mut self, batch: &mut [Pending]) -> io::Result<u64> {
        let mut undo = Undo::default();
        let mut buf = Vec::with_capacity(batch.len() * 768);
        let mut result = Ok(());
        for p in batch.iter_mut() {
            self.chains.stamp(&mut p.event, &mut undo);
            let event = &p.event;
            if let Err(e) = spool::push_frame(&mut buf, |w| {
                serde_json::to_writer(w, event).map_err(io::Error::other)
            }) {
                result = Err(e);
                break;
            }
        }
        let result = result.and_then(|()| {
            self.active.file.write_all(&buf)?;
            if self.durable {
                self.active.file.sync_data()?;
            } else {
                self.dirty = true;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.active.len += buf.len() as u64;
                Ok(buf.len() as u64)
            }
            Err(e) => {
                self.chains.undo(undo);
                // Leave no partial batch behind.
                let _ = self.active.file.set_len(self.active.len);
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.active.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Closes the active segment if it is full or old enough (or `force`)
    /// and not empty.
    fn maybe_rotate(&mut self, force: bool) -> io::Result<bool> {
        let due = self.active.len >= self.segment_bytes
            || self.active.opened.elapsed() >= self.rotate_interval
            || force;
        if self.active.len == 0 || !due {
            return Ok(false);
        }
        self.sync()?;
        self.active.rotate()?;
        Ok(true)
    }
}

/// Runs `f` on the appender in the blocking pool.
async fn blocking<T: Send + 'static>(
    appender: Appender,
    f: impl FnOnce(&mut Appender) -> T + Send + 'static,
) -> (Appender, T) {
    let handle = tokio::task::spawn_blocking(move || {
        let mut a = appender;
        let out = f(&mut a);
        (a, out)
    });
    match handle.await {
        Ok(pair) => pair,
        // The closure does not panic; if it did, the appender is lost and
        // nothing more can be written: stop the process rather than run
        // without an audit trail.
        Err(e) => {
            tracing::error!(error = %e, "audit appender failed; exiting");
            std::process::abort();
        }
    }
}

async fn append_loop(
    mut appender: Appender,
    mut rx: mpsc::Receiver<Pending>,
    mut stop: watch::Receiver<bool>,
    config: AuditConfig,
    shared: Arc<Shared>,
) {
    let m = shared.metrics.clone();
    let period = config
        .rotate_interval
        .min(config.flush_interval)
        .max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    let mut buf: Vec<Pending> = Vec::with_capacity(config.max_batch);
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut buf, config.max_batch.max(1)) => {
                if n == 0 {
                    break;
                }
                m.queue_depth.set(rx.len() as i64);
                let batch = std::mem::take(&mut buf);
                let (a, (mut batch, result, rotated)) = blocking(appender, move |a| {
                    let mut batch = batch;
                    let started = Instant::now();
                    let result = a.append(&mut batch);
                    a.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                    a.metrics.commit_records.observe(batch.len() as f64);
                    let rotated = match &result {
                        Ok(_) => a.maybe_rotate(false).unwrap_or_else(|e| {
                            tracing::error!(error = %e, "cannot start a new audit segment");
                            false
                        }),
                        Err(_) => false,
                    };
                    (batch, result, rotated)
                })
                .await;
                appender = a;
                let outcome = match result {
                    Ok(bytes) => {
                        let now = shared.spool_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
                        m.spool_bytes.set(now as i64);
                        m.records_spooled.inc_by(batch.len() as u64);
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(error = %e, records = batch.len(), "audit spool write failed; the requests are refused");
                        m.spool_errors.inc();
                        Err(AuditError::Io(e.to_string()))
                    }
                };
                for p in batch.iter_mut() {
                    if let Some(ack) = p.ack.take() {
                        let _ = ack.send(outcome.clone());
                    }
                }
                batch.clear();
                buf = batch;
                if rotated {
                    shared.active_number.store(appender.active.number, Ordering::Release);
                    shared.rotated.notify_one();
                }
            }
            _ = tick.tick() => {
                let (a, rotated) = blocking(appender, move |a| {
                    if let Err(e) = a.sync() {
                        tracing::error!(error = %e, "audit spool sync failed");
                    }
                    a.maybe_rotate(false).unwrap_or(false)
                })
                .await;
                appender = a;
                if rotated {
                    shared.active_number.store(appender.active.number, Ordering::Release);
                    shared.rotated.notify_one();
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                // Take no more; what is queued is still written.
                rx.close();
            }
        }
    }
    let (a, ()) = blocking(appender, move |a| {
        if let Err(e) = a.sync().and_then(|()| a.maybe_rotate(true).map(drop)) {
            tracing::error!(error = %e, "audit spool: final sync failed");
        }
    })
    .await;
    shared
        .active_number
        .store(a.active.number, Ordering::Release);
    shared.appender_done.store(true, Ordering::Release);
    shared.rotated.notify_one();
    // The active segment (empty now) and the lock go with `a`; the drainer
    // removes the directory once it is drained.
    drop(a);
}

/// One spool directory the drainer works on.
struct Source {
    dir: PathBuf,
    /// Segments numbered at or above this are not closed (own directory).
    own: bool,
    /// The lock of an adopted directory, held while draining it.
    _lock: Option<File>,
}

/// Segment numbers in `dir`, in order.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_suffix(&format!(".{SEGMENT_EXT}"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Spool directories of writers that are gone: their lock is free.
fn orphans(root: &Path, own: &Path) -> Vec<Source> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if dir == own || hidden || !dir.is_dir() {
            continue;
        }
        let Ok(lock) = OpenOptions::new().write(true).open(dir.join(LOCK)) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            out.push(Source {
                dir,
                own: false,
                _lock: Some(lock),
            });
        }
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// Reads a closed segment: its records, and the bytes of a torn tail.
fn read_segment(path: &Path) -> io::Result<(Vec<AuditEvent>, u64, u64, u64)> {
    let bytes = fs::read(path)?;
    let found = spool::scan(&bytes);
    let mut events = Vec::with_capacity(found.records.len());
    let mut undecodable = 0u64;
    for r in &found.records {
        match serde_json::from_slice::<AuditEvent>(r) {
            Ok(e) => events.push(e),
            Err(e) => {
                undecodable += 1;
                tracing::error!(path = %path.display(), error = %e, "audit record in the spool cannot be read; dropped");
            }
        }
    }
    Ok((events, found.torn_bytes, undecodable, bytes.len() as u64))
}

async fn drain_loop(
    store: Arc<dyn Store>,
    mut stop: watch::Receiver<bool>,
    config: AuditConfig,
    shared: Arc<Shared>,
) {
    let m = shared.metrics.clone();
    let root = config.spool_dir.clone();
    let mut adopted: Vec<Source> = Vec::new();
    let mut last_scan: Option<Instant> = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        if deadline.is_none() && *stop.borrow() {
            deadline = Some(tokio::time::Instant::now() + config.shutdown_timeout);
        }
        if last_scan.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            last_scan = Some(Instant::now());
            let (root, own) = (root.clone(), shared.dir.clone());
            if let Ok(found) = tokio::task::spawn_blocking(move || orphans(&root, &own)).await {
                for s in found {
                    if !adopted.iter().any(|a| a.dir == s.dir) {
                        tracing::info!(dir = %s.dir.display(), "audit: adopting the spool of a writer that is gone");
                        adopted.push(s);
                    }
                }
            }
        }
        // The next closed segments: adopted directories first (older).
        let mut next: Option<(usize, Vec<u64>)> = None;
        let mut sources: Vec<&Source> = adopted.iter().collect();
        let own = Source {
            dir: shared.dir.clone(),
            own: true,
            _lock: None,
        };
        sources.push(&own);
        let active = shared.active_number.load(Ordering::Acquire);
        let appender_done = shared.appender_done.load(Ordering::Acquire);
        for (i, s) in sources.iter().enumerate() {
            let closed: Vec<u64> = segments(&s.dir)
                .unwrap_or_default()
                .into_iter()
                .filter(|n| !s.own || *n < active || (appender_done && *n == active))
                .collect();
            if !closed.is_empty() {
                next = Some((i, closed));
                break;
            }
        }
        let Some((i, numbers)) = next else {
            // Nothing closed to drain. Adopted directories are done.
            for s in adopted.drain(..) {
                let _ = fs::remove_file(s.dir.join(LOCK));
                let _ = fs::remove_dir(&s.dir);
            }
            if appender_done {
                let _ = fs::remove_file(shared.dir.join(LOCK));
                let _ = fs::remove_dir(&shared.dir);
                break;
            }
            tokio::select! {
                _ = shared.rotated.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed(), if deadline.is_none() => {}
            }
            continue;
        };
        // Read segments, in order, until there is a store batch's worth.
        let source = &sources[i];
        let want = config.drain_batch.max(1);
        let read = {
            let (dir, adopted) = (source.dir.clone(), !source.own);
            tokio::task::spawn_blocking(move || {
                let mut taken = Vec::new();
                let mut events = Vec::new();
                for n in numbers {
                    if events.len() >= want {
                        break;
                    }
                    let path = segment_path(&dir, n);
                    let (found, torn, undecodable, size) = read_segment(&path)?;
                    if torn > 0 {
                        tracing::warn!(path = %path.display(), bytes = torn, adopted, "audit segment had a torn tail (a write cut short by a crash, never acknowledged); skipped");
                    }
                    events.extend(found);
                    taken.push((path, size, torn, undecodable));
                }
                Ok::<_, io::Error>((taken, events))
            })
            .await
        };
        let (taken, events) = match read {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::error!(dir = %source.dir.display(), error = %e, "audit segment cannot be read");
                m.spool_errors.inc();
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => continue,
        };
        let mut sent = 0usize;
        let mut gave_up = false;
        while sent < events.len() {
            let chunk = &events[sent..(sent + want).min(events.len())];
            match store.put_audit(chunk).await {
                Ok(()) => {
                    sent += chunk.len();
                    m.records_written.inc_by(chunk.len() as u64);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    m.store_write_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "audit records cannot be written to the store; retrying");
                    if deadline.is_some_and(|d| tokio::time::Instant::now() + backoff > d) {
                        gave_up = true;
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed(), if deadline.is_none() => {
                            deadline = Some(tokio::time::Instant::now() + config.shutdown_timeout);
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if gave_up {
            tracing::warn!(dir = %config.spool_dir.display(), "audit: store unreachable at shutdown; records stay in the spool for the next start");
            break;
        }
        // All of them are in the store: the segments go.
        for (path, size, torn, undecodable) in taken {
            m.torn_bytes.inc_by(torn);
            m.records_dropped.inc_by(undecodable);
            if let Err(e) = fs::remove_file(&path) {
                tracing::error!(path = %path.display(), error = %e, "drained audit segment cannot be removed");
                m.spool_errors.inc();
                continue;
            }
            if source.own {
                let before = shared
                    .spool_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_sub(size))
                    })
                    .unwrap_or(0);
                m.spool_bytes.set(before.saturating_sub(size) as i64);
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
            tracing::warn!("audit: shutdown timeout; records left in the spool for the next start");
            break;
        }
    }
}

/// Every record left in the spool directories under `root`: records not
/// yet in the store.
#[cfg(test)]
fn spooled_records(root: &Path) -> io::Result<Vec<AuditEvent>> {
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
            out.extend(read_segment(&segment_path(&dir, n))?.0);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{verify, AuditEvent};
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

    fn config(dir: &Path) -> AuditConfig {
        let mut c = AuditConfig::new(dir.join("spool"));
        c.rotate_interval = Duration::from_millis(5);
        c.drain_batch = 7;
        c
    }

    #[tokio::test]
    async fn records_reach_the_store_once_and_the_spool_empties() {
        let dir = tempfile::tempdir().unwrap();
        let s = store::open(&StoreUrl::Sqlite(dir.path().join("s.db")))
            .await
            .unwrap();
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

        let s = store::open(&StoreUrl::Sqlite(dir.path().join("s.db")))
            .await
            .unwrap();
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
    async fn a_live_writers_spool_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = store::open(&StoreUrl::Sqlite(dir.path().join("s.db")))
            .await
            .unwrap();
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
        let s = store::open(&StoreUrl::Sqlite(dir.path().join("s.db")))
            .await
            .unwrap();
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
