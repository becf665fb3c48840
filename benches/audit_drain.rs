//! What one audit record costs the drain into SQLite (BENCHMARKS.md, "Audit
//! drain into SQLite"): spooled decision records written with
//! `put_audit_spooled_blocking`, as the drainer writes them, into a fresh
//! store file, in store transactions of a given size, from one tenant or
//! spread over many (each tenant's index entries land on pages of their
//! own, so the pages a transaction dirties grow with the tenants in it),
//! on a store with and without the audit filter indexes that
//! `cedargate-admin migrate` builds, and with those indexes as stores made
//! before `0005-audit-filter-columns` have them (expressions over the
//! record's JSON; the filter columns are filled all the same, a few bytes a
//! row the earlier layout did not have). CPU time is the calling thread's (the
//! drainer runs on a thread of its own); wall time includes the commits'
//! `fsync`s.
//!
//! `EARLIER_TABLE=1` makes each store's audit table as earlier versions
//! did (primary key `(tenant_id, event_id)` and an index `(tenant_id, ts)`
//! where a new store has the one unique index `(tenant_id, ts, event_id)`).
//!
//! `cargo bench --bench audit_drain [CASE…]` (100,000 records a case; a
//! CASE `LAYOUT[/TENANTS[/BATCH]]` runs only those, e.g. `migrated/100` or
//! `'not migrated/1/1000'`). Without
//! `--bench` (as `cargo test --all-targets` runs it) a small smoke run.

use std::time::{Duration, Instant};

use cedargate::audit::{AuditEvent, Chains, Undo};
use cedargate::store::{Index, SpooledAudit, SqliteStore, Store};
use cpu_time::ThreadTime;

/// A decision record as the spool holds it (about 760 bytes): stamped into
/// its writer's chain and serialized as the appender does.
fn record(chains: &mut Chains, i: u64, tenant: &str, user: &str, deny: bool) -> SpooledAudit {
    let at = chrono::DateTime::from_timestamp_millis(1_780_000_000_000 + (i / 40) as i64).unwrap();
    let mut e = AuditEvent::new(
        uuid::Uuid::now_v7().to_string(),
        at,
        tenant,
        "Read",
        "CedarGate::Document::\"q3-report\"",
        serde_json::json!({
            "kind": "decision", "source": "authorize",
            "decision": if deny { "Deny" } else { "Allow" },
            "determiningPolicies": ["visibility.shared-read"], "errors": [],
            "policyRevision": "sha256:bce048c351c54e29", "dataAgeMs": 0, "latencyUs": 41,
            "roles": ["editor"], "clearance": 1,
        }),
    );
    e.user_id = Some(user.into());
    e.ip_address = Some("127.0.0.1".into());
    e.user_agent = Some("app/1.0".into());
    e.expires_at = 2_017_131_046;
    chains.stamp(&mut e, &mut Undo::default());
    SpooledAudit::parse(serde_json::to_vec(&e).unwrap()).unwrap()
}

fn records(n: u64, tenants: u64) -> Vec<SpooledAudit> {
    let mut chains = Chains::new("sidecar-bench");
    (0..n)
        .map(|i| {
            // A fixed scatter over the tenants and 50 users.
            let t = i.wrapping_mul(2_654_435_761) % tenants;
            let u = i.wrapping_mul(40_503) % 50;
            record(
                &mut chains,
                i,
                &format!("tenant-{t}"),
                &format!("user-{u}"),
                i % 10 == 0,
            )
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    NotMigrated,
    /// The filter indexes on the filter columns.
    Migrated,
    /// The filter indexes on `json_extract` expressions, as before `0005`.
    OnJson,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::NotMigrated => "not migrated",
            Layout::Migrated => "migrated",
            Layout::OnJson => "migrated, indexes on JSON",
        }
    }
}

fn case(n: u64, tenants: u64, batch: usize, layout: Layout, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    if std::env::var_os("EARLIER_TABLE").is_some() {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE audit (tenant_id TEXT NOT NULL, event_id TEXT NOT NULL,
                     ts TEXT NOT NULL, expires_at INTEGER NOT NULL, record TEXT NOT NULL,
                     PRIMARY KEY (tenant_id, event_id));
                 CREATE INDEX audit_by_time ON audit (tenant_id, ts);
                 CREATE INDEX audit_by_expiry ON audit (expires_at);",
            )
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    rt.block_on(store.migrate()).unwrap();
    match layout {
        Layout::NotMigrated => {}
        Layout::Migrated => {
            rt.block_on(store.build_index(Index::AuditFilters)).unwrap();
        }
        // As a store migrated before `0005` has them: the rollback of
        // that step puts them back in place of the column ones.
        Layout::OnJson => {
            rt.block_on(store.build_index(Index::AuditFilters)).unwrap();
            rt.block_on(store.drop_index(Index::AuditFilterColumns))
                .unwrap();
        }
    }
    let all = records(n, tenants);
    let (cpu, wall) = (ThreadTime::now(), Instant::now());
    for chunk in all.chunks(batch) {
        store
            .put_audit_spooled_blocking(chunk, None)
            .expect("SQLite writes on the calling thread")
            .unwrap();
    }
    let (cpu, wall) = (cpu.elapsed(), wall.elapsed());
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{:<26} tenants {tenants:>5}  transaction {batch:>6}  CPU {:>6.1} µs/record  wall {:>6.1} µs/record",
        layout.name(),
        per(cpu),
        per(wall),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // Other arguments select cases by their leading fields of
    // `LAYOUT/TENANTS/BATCH` (`migrated/1`: the migrated store, one tenant,
    // both transaction sizes).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n = if full { 100_000 } else { 2_000 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for layout in [Layout::NotMigrated, Layout::OnJson, Layout::Migrated] {
        for tenants in [1, 100, 1000] {
            for batch in [1000, 10_000] {
                let name = format!("{}/{tenants}/{batch}", layout.name());
                let selected = |o: &String| o.split('/').zip(name.split('/')).all(|(a, b)| a == b);
                if !only.is_empty() && !only.iter().any(selected) {
                    continue;
                }
                case(n, tenants, batch, layout, &rt);
            }
        }
    }
}
