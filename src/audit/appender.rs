//! The appender: one OS thread that takes queued records in batches, stamps
//! each into its writer's hash chain (serializing it once: the same bytes
//! are hashed and framed), appends the batch to the active spool segment
//! with one `fdatasync`, and acknowledges. File work never runs on the
//! async runtime's threads, and a batch costs no thread hand-over.
//!
//! A segment is extended with zeros ahead of the records ([`PREALLOCATE`]
//! at a time) and trimmed to its records when it is closed: a commit then
//! overwrites blocks the file already has, and its `fdatasync` writes the
//! data without the inode and block allocation an append needs
//! (BENCHMARKS.md, "Preallocated spool segments"). A segment left by a
//! killed process may end
//! in zeros; [`spool::scan`] reads them as unused, not torn.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};

use super::writer::{segment_path, AuditConfig, AuditError, Entry, Msg, Pending, Shared, LOCK};
use super::{spool, Chains, Undo};
use crate::metrics::AuditMetrics;

/// Syncs a directory, so the files created in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How far ahead of its records a segment is extended with zeros.
const PREALLOCATE: u64 = 1024 * 1024;

/// Zeros written to extend a segment.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The segment being appended to, and the lock on its directory.
pub(super) struct Active {
    dir: PathBuf,
    pub number: u64,
    file: File,
    /// Bytes of records (where the next frame goes).
    len: u64,
    /// Records in it.
    records: u64,
    /// The file's length: `len` and the zeros after it.
    allocated: u64,
    opened: Instant,
    _lock: File,
}

impl Active {
    /// Creates the writer's directory, locks it and opens the first segment.
    /// The directory is made under a hidden name and renamed once locked, so
    /// no other process can mistake it for a dead writer's.
    pub fn create(dir: &Path, number: u64) -> io::Result<Self> {
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
            records: 0,
            allocated: 0,
            opened: Instant::now(),
            _lock: lock,
        })
    }

    fn open_segment(dir: &Path, number: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(segment_path(dir, number))?;
        sync_dir(dir)?;
        Ok(file)
    }

    /// Writes `frames` after the records, extending the file with zeros
    /// first when they would not fit. Not synced.
    fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        let end = self.len + frames.len() as u64;
        if end > self.allocated {
            let target = end.div_ceil(PREALLOCATE) * PREALLOCATE;
            let mut at = self.allocated.max(end);
            // The frames cover [len, end); zeros go after them.
            while at < target {
                let n = (target - at).min(ZEROS.len() as u64) as usize;
                self.file.write_all_at(&ZEROS[..n], at)?;
                at += n as u64;
            }
            self.allocated = target;
        }
        self.file.write_all_at(frames, self.len)
    }

    /// Forgets whatever was written after the records (a failed batch),
    /// and the zeros ahead of them.
    fn trim(&mut self) -> io::Result<()> {
        if self.allocated != self.len {
            self.file.set_len(self.len)?;
            self.allocated = self.len;
        }
        Ok(())
    }

    /// Closes this segment and starts the next one; says how many records
    /// the closed one holds. The closed segment must have been trimmed and
    /// synced.
    fn rotate(&mut self) -> io::Result<u64> {
        let next = self.number + 1;
        self.file = Self::open_segment(&self.dir, next)?;
        self.number = next;
        self.len = 0;
        self.allocated = 0;
        self.opened = Instant::now();
        Ok(std::mem::take(&mut self.records))
    }
}

/// How a file is made durable: `File::sync_data`, or a fault in tests.
pub(super) type SyncFn = fn(&File) -> io::Result<()>;

struct Appender {
    chains: Chains,
    metrics: AuditMetrics,
    active: Active,
    durable: bool,
    sync_file: SyncFn,
    /// Written but not yet synced (buffered mode).
    dirty: bool,
    /// When the active segment is closed (from the configuration).
    segment_bytes: u64,
    rotate_interval: Duration,
    /// The batch's frames, reused.
    buf: Vec<u8>,
}

impl Appender {
    /// Stamps and appends a batch. Returns the bytes appended; on an error
    /// nothing counts as written and the chains are as before.
    fn append(&mut self, batch: &mut [Pending]) -> io::Result<u64> {
        let mut undo = Undo::default();
        self.buf.clear();
        let mut result = Ok(());
        for p in batch.iter_mut() {
            let chains = &mut self.chains;
            let event = &mut p.event;
            if let Err(e) = spool::push_frame(&mut self.buf, |w| {
                match event {
                    Entry::Event(e) => chains.stamp_json(e, &mut undo, w),
                    Entry::Decision(e) => chains.stamp_json(e, &mut undo, w),
                }
                Ok(())
            }) {
                result = Err(e);
                break;
            }
        }
        let result = result.and_then(|()| {
            self.active.write(&self.buf)?;
            if self.durable {
                (self.sync_file)(&self.active.file)?;
            } else {
                self.dirty = true;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.active.len += self.buf.len() as u64;
                self.active.records += batch.len() as u64;
                Ok(self.buf.len() as u64)
            }
            Err(e) => {
                self.chains.undo(undo);
                // Leave no partial batch behind.
                let _ = self.active.trim();
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            (self.sync_file)(&self.active.file)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Closes the active segment if it is full or old enough (or `force`)
    /// and not empty; says how many records the closed segment holds.
    fn maybe_rotate(&mut self, force: bool) -> io::Result<Option<u64>> {
        let due = self.active.len >= self.segment_bytes
            || self.active.opened.elapsed() >= self.rotate_interval
            || force;
        if self.active.len == 0 || !due {
            return Ok(None);
        }
        self.active.trim()?;
        self.dirty = true;
        self.sync()?;
        self.active.rotate().map(Some)
    }

    /// Tells the drainer a segment of `closed` records was closed.
    fn announce(&self, closed: Option<u64>, shared: &Shared) {
        if let Some(records) = closed {
            shared.closed_records.fetch_add(records, Ordering::AcqRel);
            shared
                .active_number
                .store(self.active.number, Ordering::Release);
            shared.rotated.notify_one();
        }
    }

    /// Writes one batch and acknowledges its records.
    fn commit(&mut self, batch: &mut Vec<Pending>, shared: &Shared) {
        let started = Instant::now();
        let result = self.append(batch);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.commit_records.observe(batch.len() as f64);
        let outcome = match result {
            Ok(bytes) => {
                let now = shared.spool_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
                self.metrics.spool_bytes.set(now as i64);
                self.metrics.records_spooled.inc_by(batch.len() as u64);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "audit spool write failed; the requests are refused");
                self.metrics.spool_errors.inc();
                Err(AuditError::Io(e.to_string()))
            }
        };
        for p in batch.iter_mut() {
            if let Some(ack) = p.ack.take() {
                let _ = ack.send(outcome.clone());
            }
        }
        batch.clear();
        if outcome.is_ok() {
            let rotated = self.maybe_rotate(false).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot start a new audit segment");
                None
            });
            self.announce(rotated, shared);
        }
    }
}

/// Starts the appender thread, which makes its segments durable with
/// `sync_file` (`File::sync_data`; a test's fault). The returned receiver
/// completes when it has written what was queued at `Msg::Stop` and closed
/// its last segment.
pub(super) fn spawn(
    active: Active,
    writer_id: String,
    rx: Receiver<Msg>,
    slots: Arc<Semaphore>,
    config: AuditConfig,
    shared: Arc<Shared>,
    sync_file: SyncFn,
) -> io::Result<oneshot::Receiver<()>> {
    let (done, finished) = oneshot::channel();
    let appender = Appender {
        chains: Chains::new(writer_id),
        metrics: shared.metrics.clone(),
        active,
        durable: config.mode == super::writer::AuditMode::Durable,
        sync_file,
        dirty: false,
        segment_bytes: config.segment_bytes,
        rotate_interval: config.rotate_interval,
        buf: Vec::with_capacity(64 * 1024),
    };
    std::thread::Builder::new()
        .name("audit-appender".into())
        .spawn(move || {
            run(appender, rx, slots, &config, &shared);
            let _ = done.send(());
        })?;
    Ok(finished)
}

fn run(
    mut a: Appender,
    rx: Receiver<Msg>,
    slots: Arc<Semaphore>,
    config: &AuditConfig,
    shared: &Shared,
) {
    let period = config
        .rotate_interval
        .min(config.flush_interval)
        .max(Duration::from_millis(1));
    let max_batch = config.max_batch.max(1);
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut stopping = false;
    let mut next_tick = Instant::now() + period;
    loop {
        // Wait for a record (or the next tick), then take whatever else is
        // queued, up to a batch.
        let first = if stopping {
            rx.try_recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(next_tick.saturating_duration_since(Instant::now()))
        };
        let take = |msg: Msg, batch: &mut Vec<Pending>, stopping: &mut bool| match msg {
            Msg::Record(p) => batch.push(p),
            Msg::Stop => *stopping = true,
        };
        match first {
            Ok(msg) => {
                take(msg, &mut batch, &mut stopping);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(msg) => take(msg, &mut batch, &mut stopping),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if !batch.is_empty() {
            slots.add_permits(batch.len());
            a.metrics
                .queue_depth
                .set((config.queue_capacity.max(1) - slots.available_permits()) as i64);
            a.commit(&mut batch, shared);
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + period;
            if let Err(e) = a.sync() {
                tracing::error!(error = %e, "audit spool sync failed");
            }
            let rotated = a.maybe_rotate(false).unwrap_or(None);
            a.announce(rotated, shared);
        }
    }
    // Stopped: nothing more is taken (the log refuses new records).
    match a.sync().and_then(|()| a.maybe_rotate(true)) {
        Ok(Some(records)) => {
            shared.closed_records.fetch_add(records, Ordering::AcqRel);
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "audit spool: final sync failed"),
    }
    shared
        .active_number
        .store(a.active.number, Ordering::Release);
    shared.appender_done.store(true, Ordering::Release);
    shared.rotated.notify_one();
    // The active segment (empty now) and the lock go with `a`; the drainer
    // removes the directory once it is drained.
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Condvar, Mutex};

    use tokio::sync::Notify;

    use super::*;
    use crate::audit::writer::{segment_path, AuditMode};
    use crate::audit::{verify, AuditEvent};

    /// The disk the test's syncs go to: a sync waits while `held`, then
    /// fails if `failures` is not 0 (counting it down); `entered` counts
    /// the syncs that started.
    struct Disk {
        held: bool,
        failures: u32,
        entered: u32,
    }

    static DISK: Mutex<Disk> = Mutex::new(Disk {
        held: false,
        failures: 0,
        entered: 0,
    });
    static DISK_CHANGED: Condvar = Condvar::new();

    fn faulty_sync(file: &File) -> io::Result<()> {
        let mut d = DISK.lock().unwrap();
        d.entered += 1;
        while d.held {
            d = DISK_CHANGED.wait(d).unwrap();
        }
        if d.failures > 0 {
            d.failures -= 1;
            return Err(io::Error::other("injected sync failure"));
        }
        drop(d);
        file.sync_data()
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn event(id: &str, tenant: &str) -> AuditEvent {
        AuditEvent::new(
            id,
            chrono::Utc::now(),
            tenant,
            "Read",
            "CedarGate::Document::\"d\"",
            serde_json::json!({ "decision": "Allow" }),
        )
    }

    async fn within(rx: oneshot::Receiver<Result<(), AuditError>>) -> Result<(), AuditError> {
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("acknowledged in time")
            .expect("acknowledged")
    }

    /// A commit whose `fdatasync` fails refuses its records, undoes their
    /// stamps and cuts their bytes off the segment; a record queued while
    /// it ran goes in the next commit and continues its chain from the
    /// last acknowledged record (here: none).
    #[tokio::test]
    async fn a_failed_sync_refuses_its_records_and_leaves_no_trace() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("writer");
        let active = Active::create(&dir, 1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut config = AuditConfig::new(root.path());
        assert_eq!(config.mode, AuditMode::Durable);
        config.rotate_interval = Duration::from_secs(3600);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            active_number: AtomicU64::new(1),
            closed_records: AtomicU64::new(0),
            spool_bytes: Arc::new(AtomicU64::new(0)),
            rotated: Notify::new(),
            appender_done: AtomicBool::new(false),
            metrics: AuditMetrics::default(),
        });
        let done = spawn(
            active,
            "writer".into(),
            rx,
            Arc::new(Semaphore::new(16)),
            config,
            shared.clone(),
            faulty_sync,
        )
        .unwrap();
        let send = |e: AuditEvent| {
            let (ack, rx) = oneshot::channel();
            tx.send(Msg::Record(Pending {
                event: e.into(),
                ack: Some(ack),
            }))
            .unwrap();
            rx
        };

        // A's sync is held, and will fail.
        {
            let mut d = DISK.lock().unwrap();
            d.held = true;
            d.failures = 1;
        }
        // (A longer than B: a byte of A left after B would show.)
        let a = send(event("a-with-a-longer-id", "t1"));
        wait_until("A's sync started", || DISK.lock().unwrap().entered == 1);
        let segment = segment_path(&dir, 1);
        let written = spool::scan(&fs::read(&segment).unwrap()).records.len();
        // B is queued while it runs.
        let b = send(event("b", "t1"));
        {
            let mut d = DISK.lock().unwrap();
            d.held = false;
            DISK_CHANGED.notify_all();
        }
        let outcome = within(a).await;
        assert!(matches!(outcome, Err(AuditError::Io(_))), "{outcome:?}");
        within(b).await.unwrap();
        let now = spool::scan(&fs::read(&segment).unwrap());
        assert_eq!((now.records.len(), now.torn_bytes), (1, 0));
        within(send(event("c", "t2"))).await.unwrap();
        tx.send(Msg::Stop).unwrap();
        done.await.unwrap();

        // A had been written before the failed sync; nothing of it is left.
        assert_eq!(written, 1);
        let records: Vec<AuditEvent> = [1, 2]
            .iter()
            .map(|n| segment_path(&dir, *n))
            .filter(|p| p.exists())
            .flat_map(|p| spool::scan(&fs::read(p).unwrap()).records)
            .map(|r| serde_json::from_slice(&r).unwrap())
            .collect();
        let got: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.event_id.as_str(),
                    r.tenant_id.as_str(),
                    r.seq,
                    r.prev_hash.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("b", "t1", 0, ""), ("c", "t2", 0, "")]);
        assert!(verify(&records).is_empty());
        let m = &shared.metrics;
        assert_eq!(m.records_spooled.get(), 2);
        assert_eq!(m.spool_errors.get(), 1);
        assert_eq!(
            shared.spool_bytes.load(Ordering::Relaxed),
            fs::metadata(&segment).unwrap().len()
        );
    }
}
