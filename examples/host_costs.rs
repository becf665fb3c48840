//! What the operations the durable audit is made of cost on this host, in
//! CPU time of the calling thread and in wall time, apart from the server:
//!
//! - a spool commit: `pwrite` of SIZE bytes into blocks the file already
//!   has (as the appender writes a preallocated segment) and `fdatasync`,
//!   for several sizes: does a commit cost by the byte or by the call?
//! - a wake-up: two threads handing a turn back and forth (`park` and
//!   `unpark`, a futex), both on one CPU and on two: what a thread pays to
//!   wake another and to be woken;
//! - a timed sleep of 50 µs (`thread::sleep`): what a wait with a timeout
//!   costs when it runs out.
//!
//!   cargo run --release --example host_costs -- DIR [COMMITS]
//!
//! DIR must be on the disk under test (the spool's); a scratch file is
//! made in it and removed. Linux only (CPU affinity and thread CPU time).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;

/// Puts the calling thread on `cpus` only; false if the system refused.
fn pin(cpus: impl IntoIterator<Item = usize>) -> bool {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity only read and write the set given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPU and wall µs per call of `f`, run `n` times.
fn per_call(n: u32, mut f: impl FnMut()) -> (f64, f64) {
    let (cpu, wall) = (ThreadTime::now(), Instant::now());
    for _ in 0..n {
        f();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    (per(cpu.elapsed()), per(wall.elapsed()))
}

fn commits(dir: &Path, n: u32) -> std::io::Result<()> {
    let path = dir.join(format!(".host-costs-{}", std::process::id()));
    for size in [700usize, 7_000, 70_000] {
        let file: File = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        // Blocks written and synced beforehand, as a preallocated segment.
        let total = size as u64 * u64::from(n) + 1024 * 1024;
        let zeros = vec![0u8; 1024 * 1024];
        let mut at = 0;
        while at < total {
            file.write_all_at(&zeros, at)?;
            at += zeros.len() as u64;
        }
        file.sync_all()?;
        let record = vec![b'x'; size];
        let mut offset = 0u64;
        let mut failed = None;
        let (cpu, wall) = per_call(n, || {
            let done = file
                .write_all_at(&record, offset)
                .and_then(|()| file.sync_data());
            if let Err(e) = done {
                failed.get_or_insert(e);
            }
            offset += size as u64;
        });
        if let Some(e) = failed {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        println!(
            "commit of {size:>6} bytes (pwrite + fdatasync): CPU {cpu:6.1} µs, wall {wall:6.1} µs"
        );
    }
    std::fs::remove_file(&path)
}

/// Two threads hand a turn back and forth `n` times, on CPUs `a` and `b`:
/// CPU µs per round of each, wall µs per round.
fn ping_pong(a: usize, b: usize, n: u32) -> Option<(f64, f64, f64)> {
    let turn = Arc::new(AtomicBool::new(false));
    let main = std::thread::current();
    let t = turn.clone();
    // Each side plays its rounds even when it could not be placed, so that
    // the other never waits for a partner that is gone.
    let other = std::thread::spawn(move || {
        let pinned = pin([b]);
        let (cpu, _) = per_call(n, || {
            while !t.load(Ordering::Acquire) {
                std::thread::park();
            }
            t.store(false, Ordering::Release);
            main.unpark();
        });
        pinned.then_some(cpu)
    });
    let pinned = pin([a]);
    let peer = other.thread().clone();
    let (cpu, wall) = per_call(n, || {
        turn.store(true, Ordering::Release);
        peer.unpark();
        while turn.load(Ordering::Acquire) {
            std::thread::park();
        }
    });
    let other_cpu = other.join().ok()??;
    pinned.then_some((cpu, other_cpu, wall))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: host_costs DIR [COMMITS]");
        std::process::exit(2);
    };
    let n: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2_000);
    if let Err(e) = commits(Path::new(dir), n) {
        eprintln!("commits in {dir}: {e}");
        std::process::exit(1);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut pairs = vec![("one CPU", 0, 0)];
    if cpus > 1 {
        pairs.push(("two CPUs", 0, 1));
    }
    for (name, a, b) in pairs {
        match ping_pong(a, b, 20 * n) {
            Some((ca, cb, wall)) => println!(
                "wake-up round trip, {name:<8}: CPU {ca:6.1} and {cb:6.1} µs (each thread), wall {wall:6.1} µs"
            ),
            None => println!("wake-up round trip, {name}: CPU affinity refused"),
        }
    }
    // Back on every CPU for the last one.
    pin(0..cpus);
    let (cpu, wall) = per_call(n, || std::thread::sleep(Duration::from_micros(50)));
    println!("timed sleep of 50 µs: CPU {cpu:6.1} µs, wall {wall:6.1} µs");
}
