//! The drainer: sends closed spool segments to the store and deletes them
//! once stored, and adopts the spools of writers that died. It runs on an
//! OS thread of its own, with its own single-threaded runtime for its
//! timers. While the backlog is small, a local store (SQLite) is read and
//! written by a second thread in the `SCHED_IDLE` class, in CPU time no
//! request wants; past `idle_drain_bytes` the drainer does it itself, at
//! the requests' priority, so that the backlog stays bounded under
//! sustained load (without the idle class, it always writes itself, at
//! nice +10). A store reached over the network is called on the
//! application's runtime, which owns its pooled connections (a connection
//! opened on the drainer's runtime would be driven by the drainer's thread,
//! and would die with it).
//! Records go to the store as the spool holds them — their JSON and the
//! fields a store keys them by — without being rebuilt.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::spool;
use super::writer::{segment_path, AuditConfig, Shared, LOCK, SEGMENT_EXT};
use crate::store::{SpooledAudit, Store, StoreError};

/// How much lower than the requests the drainer runs when it has no idle
/// thread (a nice value).
const NICE: i32 = 10;

/// Rounds of at least this many records give the memory they freed back
/// to the system (BENCHMARKS.md, "A starved idle-time round": with rounds
/// of 10,000 on both the idle thread and the drainer, the allocator kept
/// the sidecar at 65–79 MiB).
const TRIM_AFTER: usize = 1000;

/// Gives memory freed to the allocator back to the system (glibc keeps
/// it in each thread's arena otherwise).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long rounds stay off the idle thread after one it could not finish.
const IDLE_PAUSE: Duration = Duration::from_secs(30);

/// Most records one write to a store reached over the network carries,
/// whatever `drain_batch` says: such a store gains nothing from larger
/// writes (DynamoDB takes 25 items a call), and each write copies its
/// records and builds their items in memory first.
const NETWORK_PUT: usize = 1000;

/// One spool directory the drainer works on.
struct Source {
    dir: PathBuf,
    /// Segments numbered at or above this are not closed (own directory).
    own: bool,
    /// The lock of an adopted directory, held while draining it.
    _lock: Option<File>,
}

/// Segment numbers in `dir`, in order.
pub(super) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
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

/// Reads a closed segment: its records, the bytes of a torn tail, the
/// records that cannot be read, its size.
pub(super) fn read_segment(path: &Path) -> io::Result<(Vec<SpooledAudit>, u64, u64, u64)> {
    let bytes = fs::read(path)?;
    let found = spool::scan(&bytes);
    let mut records = Vec::with_capacity(found.records.len());
    let mut undecodable = 0u64;
    for r in found.records {
        match SpooledAudit::parse(r) {
            Ok(s) => records.push(s),
            Err(e) => {
                undecodable += 1;
                tracing::error!(path = %path.display(), error = %e, "audit record in the spool cannot be read; dropped");
            }
        }
    }
    Ok((records, found.torn_bytes, undecodable, bytes.len() as u64))
}

/// Lowers this thread's scheduling priority (Linux: nice is per thread,
/// and threads it starts inherit it).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority on the calling thread's id; no memory is
        // shared with the kernel.
        let r =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
        if r != 0 {
            tracing::debug!("audit drainer: priority not lowered");
        }
    }
}

/// Puts this thread in the `SCHED_IDLE` class: it runs only when nothing
/// else wants the CPU, and a request's thread waking up takes the CPU from
/// it at once. A thread cannot leave that class again without privileges,
/// so the work that must not wait runs on another thread.
fn idle_priority() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler on the calling thread (0) with a
        // valid sched_param; no memory is kept by the kernel.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// A store write handed to the idle thread.
type IdleJob = Box<dyn FnOnce() + Send>;

/// A thread in the idle class that writes a local store while the backlog
/// is small, so that draining takes only CPU time nothing else wants
/// (BENCHMARKS.md, "Idle-time drain").
struct IdleWriter {
    jobs: std::sync::mpsc::Sender<IdleJob>,
}

impl IdleWriter {
    fn spawn() -> Option<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<IdleJob>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("audit-idle".into())
            .spawn(move || {
                let _ = ready_tx.send(idle_priority());
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .ok()?;
        if ready.recv().unwrap_or(false) {
            Some(IdleWriter { jobs })
        } else {
            tracing::debug!(
                "audit drainer: no idle scheduling class; draining at its own priority"
            );
            None
        }
    }

    /// Runs `f` on the idle thread; `None` if the thread is gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: IdleJob = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }
}

/// The segments one round takes and their records.
struct Batch {
    /// Path, size, torn bytes, undecodable records.
    taken: Vec<(PathBuf, u64, u64, u64)>,
    records: Vec<SpooledAudit>,
    /// A segment that could not be read (the round stops before it).
    failed: Option<io::Error>,
}

/// Reads segments `numbers` of `dir`, in order, until there is a store
/// batch's worth.
fn read_batch(dir: &Path, numbers: &[u64], want: usize, adopted: bool) -> Batch {
    let mut batch = Batch {
        taken: Vec::new(),
        records: Vec::new(),
        failed: None,
    };
    for &n in numbers {
        if batch.records.len() >= want {
            break;
        }
        let path = segment_path(dir, n);
        match read_segment(&path) {
            Ok((found, torn, undecodable, size)) => {
                if torn > 0 {
                    tracing::warn!(path = %path.display(), bytes = torn, adopted, "audit segment had a torn tail (a write cut short by a crash, never acknowledged); skipped");
                }
                batch.records.extend(found);
                batch.taken.push((path, size, torn, undecodable));
            }
            Err(e) => {
                batch.failed = Some(e);
                break;
            }
        }
    }
    batch
}

/// Writes `records` to a local store in transactions of `want`, until one
/// fails: how many were written, and the failure. `None` for a store not
/// written on the caller's thread.
fn put_local(
    store: &dyn Store,
    records: &[SpooledAudit],
    want: usize,
    hold: Option<Duration>,
) -> Option<(usize, Option<StoreError>)> {
    let mut sent = 0;
    for chunk in records.chunks(want) {
        match store.put_audit_spooled_blocking(chunk, hold)? {
            Ok(()) => sent += chunk.len(),
            Err(e) => return Some((sent, Some(e))),
        }
    }
    Some((sent, None))
}

/// Starts the drainer thread. The returned receiver completes when it has
/// drained what the appender closed (or the shutdown timeout passed).
pub(super) fn spawn(
    store: Arc<dyn Store>,
    stop: watch::Receiver<bool>,
    config: AuditConfig,
    shared: Arc<Shared>,
) -> io::Result<oneshot::Receiver<()>> {
    let app = tokio::runtime::Handle::current();
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name("audit-drainer".into())
        .spawn(move || {
            let idle = if config.idle_drain_bytes > 0 {
                IdleWriter::spawn()
            } else {
                None
            };
            // With an idle thread this one writes only past the bound, and
            // then must keep up with the requests: it keeps their priority
            // (at nice +10 on one saturated CPU the backlog grew without
            // end; BENCHMARKS.md, "Idle-time drain").
            if idle.is_none() {
                lower_priority();
            }
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("audit-store")
                .build()
            {
                Ok(rt) => {
                    // Asked once, with no records: whether the store
                    // writes on this thread (SQLite) or is reached over
                    // the network.
                    let local = store.put_audit_spooled_blocking(&[], None).is_some();
                    let sink = Sink {
                        store,
                        app,
                        idle,
                        local,
                    };
                    rt.block_on(run(sink, stop, config, shared))
                }
                Err(e) => tracing::error!(error = %e, "audit drainer cannot start its runtime"),
            }
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// Where drained records go.
struct Sink {
    store: Arc<dyn Store>,
    /// The application's runtime.
    app: tokio::runtime::Handle,
    /// The idle-class thread, if the system has the class.
    idle: Option<IdleWriter>,
    /// Whether the store is written on the caller's thread.
    local: bool,
}

impl Sink {
    /// The most records one [`Sink::put`] should be given.
    fn most(&self, drain_batch: usize) -> usize {
        if self.local {
            drain_batch
        } else {
            drain_batch.min(NETWORK_PUT)
        }
    }

    /// Writes `records` on this thread or, for a network store, on the
    /// application's runtime.
    async fn put(&self, records: &[SpooledAudit]) -> Result<(), StoreError> {
        if self.local {
            if let Some(done) = self.store.put_audit_spooled_blocking(records, None) {
                return done;
            }
        }
        let store = self.store.clone();
        let records = records.to_vec();
        self.app
            .spawn(async move { store.put_audit_spooled(&records).await })
            .await
            .map_err(|e| StoreError::Unavailable(format!("audit store task: {e}")))?
    }
}

/// After the stop signal changed: a dropped sender (the writer's handle is
/// gone without a shutdown) stops the drainer as a shutdown would, rather
/// than waking it again and again.
fn stopped(
    changed: Result<(), watch::error::RecvError>,
    deadline: &mut Option<tokio::time::Instant>,
    config: &AuditConfig,
) {
    if changed.is_err() && deadline.is_none() {
        *deadline = Some(tokio::time::Instant::now() + config.shutdown_timeout);
    }
}

async fn run(
    store: Sink,
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
    // Since when closed segments of this writer wait for a batch's worth.
    let mut waiting_since: Option<Instant> = None;
    // Until when rounds stay off the idle thread, after one it could not
    // finish within `idle_hold`.
    let mut idle_paused_until: Option<Instant> = None;
    loop {
        if deadline.is_none() && *stop.borrow() {
            deadline = Some(tokio::time::Instant::now() + config.shutdown_timeout);
        }
        if last_scan.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            last_scan = Some(Instant::now());
            for s in orphans(&root, &shared.dir) {
                if !adopted.iter().any(|a| a.dir == s.dir) {
                    tracing::info!(dir = %s.dir.display(), "audit: adopting the spool of a writer that is gone");
                    adopted.push(s);
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
                r = stop.changed(), if deadline.is_none() => stopped(r, &mut deadline, &config),
            }
            continue;
        };
        let source = &sources[i];
        let want = config.drain_batch.max(1);
        // This writer's segments wait, up to `drain_delay`, until they hold
        // a store batch's worth: a transaction's cost is mostly the pages it
        // dirties, and a large one dirties each of them once for many
        // records. Adopted spools, a shutdown and a writer that is done do
        // not wait.
        if source.own && deadline.is_none() && !appender_done {
            let closed = shared.closed_records.load(Ordering::Acquire);
            let since = *waiting_since.get_or_insert_with(Instant::now);
            let waited = since.elapsed();
            if closed < want as u64 && waited < config.drain_delay {
                tokio::select! {
                    _ = shared.rotated.notified() => {}
                    _ = tokio::time::sleep(config.drain_delay - waited) => {}
                    r = stop.changed() => stopped(r, &mut deadline, &config),
                }
                continue;
            }
        }
        waiting_since = None;
        // While the backlog is small, a local store's round (reading the
        // segments and writing them) runs on the idle thread, in CPU time
        // nothing else wants; past `idle_drain_bytes`, at shutdown and for
        // an adopted spool (old already), here. What the idle thread could
        // not write goes from here.
        //
        // A round the idle thread still holds the store's write lock for
        // after `idle_hold` is starved: other processes keep the CPUs busy,
        // and a management write would wait for the lock until they let the
        // idle thread run. The store abandons it (releasing the lock), this
        // thread writes it at its own priority, and rounds stay here for
        // `IDLE_PAUSE` (BENCHMARKS.md, "A starved idle-time round").
        let idle = store.idle.as_ref().filter(|_| {
            store.local
                && source.own
                && deadline.is_none()
                && idle_paused_until.is_none_or(|t| Instant::now() >= t)
                && shared.spool_bytes.load(Ordering::Relaxed) < config.idle_drain_bytes
        });
        let mut sent = 0usize;
        let mut batch = None;
        if let Some(idle) = idle {
            let (dir, target, ns) = (source.dir.clone(), store.store.clone(), numbers.clone());
            let hold = config.idle_hold;
            let done = idle
                .run(move || {
                    let b = read_batch(&dir, &ns, want, false);
                    let put = put_local(target.as_ref(), &b.records, want, Some(hold));
                    (b, put)
                })
                .await;
            let mut idle_error = None;
            if let Some((b, put)) = done {
                if let Some((n, e)) = put {
                    sent = n;
                    m.records_written.inc_by(n as u64);
                    idle_error = e;
                }
                batch = Some(b);
            }
            if let Some(e) = idle_error {
                // Abandoned past its hold limit, or failed (this thread's
                // retry of a failing store counts and backs off as usual):
                // the rest of the round goes from here, at once.
                m.idle_rounds_abandoned.inc();
                tracing::warn!(
                    error = %e,
                    pause = ?IDLE_PAUSE,
                    "audit drainer: a round in idle time could not finish; draining at the requests' priority for a while"
                );
                idle_paused_until = Some(Instant::now() + IDLE_PAUSE);
            }
        }
        let Batch {
            taken,
            records,
            failed,
        } = batch.unwrap_or_else(|| read_batch(&source.dir, &numbers, want, !source.own));
        if let Some(e) = failed.filter(|_| taken.is_empty()) {
            tracing::error!(dir = %source.dir.display(), error = %e, "audit segment cannot be read");
            m.spool_errors.inc();
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut gave_up = false;
        while sent < records.len() {
            let chunk = &records[sent..(sent + store.most(want)).min(records.len())];
            match store.put(chunk).await {
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
        if source.own {
            let n = records.len() as u64 + taken.iter().map(|t| t.3).sum::<u64>();
            let _ = shared
                .closed_records
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    Some(c.saturating_sub(n))
                });
        }
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
        // A large round's records were allocated by one thread and freed
        // by another (or by this one while the idle thread had its own):
        // the allocator keeps the freed memory for each thread's arena
        // unless asked to give it back.
        let large = records.len() >= TRIM_AFTER;
        drop(records);
        if large {
            release_freed_memory();
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
            tracing::warn!("audit: shutdown timeout; records left in the spool for the next start");
            break;
        }
    }
}
