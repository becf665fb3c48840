//! What a cached tenant and a cached document cost in memory, measured by
//! counting the heap bytes the cache's entries hold (record, Cedar entity,
//! the attribute view residual decisions read, and the LRU map's own
//! share), next to the estimate the cache charges against its byte budget.
//!
//! ```text
//! cargo run --release --example cache_memory
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use cedargate::authz::entities::document_entity;
use cedargate::cache::{
    document_weight, policies_weight, tenant_weight, DocumentEntry, TenantEntry,
};
use cedargate::generate::{write_dataset, Spec};
use cedargate::ids::{DocumentId, PolicyName, TenantId};
use cedargate::model::{DataSet, Document, Tenant};
use cedargate::policy::tenant::{Definition, TenantPolicy};
use cedargate::search::condition::view_of;

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// Heap bytes held by `entries` entries built from `texts` (JSON records)
/// and kept in an LRU map, and the cache's estimate for them.
fn measure<T, K, V>(
    texts: &[String],
    build: impl Fn(T) -> (K, V),
    weigh: impl Fn(&V) -> usize,
) -> (isize, usize)
where
    T: serde::de::DeserializeOwned,
    K: std::hash::Hash + Eq,
{
    let before = held();
    let mut map = lru::LruCache::new(NonZeroUsize::new(texts.len().max(1)).unwrap());
    let mut estimate = 0;
    for text in texts {
        let record: T = serde_json::from_str(text).unwrap();
        let (k, v) = build(record);
        estimate += weigh(&v);
        map.push(k, v);
    }
    let bytes = held() - before;
    drop(map);
    (bytes, estimate)
}

fn row(what: &str, n: usize, (bytes, estimate): (isize, usize)) {
    let each = n.max(1) as f64;
    let estimate = if estimate == 0 {
        "–".to_string()
    } else {
        format!("{:.0}", estimate as f64 / each)
    };
    println!("| {what} | {n} | {:.0} | {estimate} |", bytes as f64 / each);
}

fn main() {
    let spec = Spec {
        tenants: 1_000,
        documents: 100_000,
        wide: Some((10_000, 500)),
        ..Spec::default()
    };
    let mut file = Vec::new();
    write_dataset(&spec, &mut file).unwrap();
    let data: DataSet = serde_json::from_slice(&file).unwrap();
    drop(file);
    let tenants: Vec<String> = data
        .tenants
        .iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    let (wide, ordinary): (Vec<&Document>, Vec<&Document>) = data
        .documents
        .iter()
        .partition(|d| d.shared_with.len() > 1_000);
    let ordinary: Vec<String> = ordinary
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    let wide: Vec<String> = wide
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    drop(data);

    let tenant = |record: Tenant| {
        let entry = Arc::new(TenantEntry::new(record, Vec::new(), 0));
        (entry.record.tenant_id.clone(), entry)
    };
    let document = |record: Document| {
        let entry = Arc::new(DocumentEntry::new(record, 0));
        // Residual decisions build the attribute view on first use.
        let _ = entry.view();
        let key: (TenantId, DocumentId) = (
            entry.record.tenant_id.clone(),
            entry.record.document_id.clone(),
        );
        (key, entry)
    };
    println!("| entry | count | heap bytes each (measured) | estimate charged |");
    println!("|---|---|---|---|");
    row(
        "tenant",
        tenants.len(),
        measure(&tenants, tenant, |e| tenant_weight(&e.record)),
    );
    row(
        "document (ordinary mix)",
        ordinary.len(),
        measure(&ordinary, document, |e| document_weight(&e.record)),
    );
    // The parts of an ordinary document entry.
    row(
        "record alone (in a map, by key)",
        ordinary.len(),
        measure(
            &ordinary,
            |d: Document| ((d.tenant_id.clone(), d.document_id.clone()), d),
            |_| 0,
        ),
    );
    row(
        "Cedar entity alone (in a map, by key)",
        ordinary.len(),
        measure(
            &ordinary,
            |d: Document| {
                (
                    (d.tenant_id.clone(), d.document_id.clone()),
                    document_entity(&d),
                )
            },
            |_| 0,
        ),
    );
    row(
        "attribute view alone (in a map, by key)",
        ordinary.len(),
        measure(
            &ordinary,
            |d: Document| {
                (
                    (d.tenant_id.clone(), d.document_id.clone()),
                    view_of(&document_entity(&d)),
                )
            },
            |_| 0,
        ),
    );
    row(
        "document entry before residuals build its view",
        ordinary.len(),
        measure(
            &ordinary,
            |d: Document| {
                let e = Arc::new(DocumentEntry::new(d, 0));
                (
                    (e.record.tenant_id.clone(), e.record.document_id.clone()),
                    e,
                )
            },
            |_| 0,
        ),
    );
    row(
        "document shared with 10,000 users and 500 roles",
        wide.len(),
        measure(&wide, document, |e| document_weight(&e.record)),
    );
    // A tenant's own policies ride in its entry, compiled once per policy
    // revision: a tenant with 20 of them (a customer's own roles).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let snapshot = cedargate::policy::load(&cedargate::policy::PolicySources {
        policy_dir: root.join("policies"),
        schema_dir: root.join("schemas"),
    })
    .unwrap();
    let own = |t: &TenantId| -> Vec<TenantPolicy> {
        let actions = ["Read", "Update", "Share", "Delete"];
        (0..20)
            .map(|j| TenantPolicy {
                tenant_id: t.clone(),
                policy_id: PolicyName::parse(format!("custom-{j}")).unwrap(),
                definition: Definition::Static {
                    statement: format!(
                        "permit (principal in CedarGate::Role::\"custom-{j}\", action == CedarGate::Action::\"{}\", resource is CedarGate::Document) when {{ resource.classification <= {} && resource.visibility != \"private\" }};",
                        actions[j % actions.len()],
                        j % 4
                    ),
                },
                description: None,
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
                updated_by: None,
            })
            .collect()
    };
    let with_policies = |record: Tenant| {
        let policies = own(&record.tenant_id);
        let entry = Arc::new(TenantEntry::new(record, policies, 0));
        let _ = entry.compiled(&snapshot);
        (entry.record.tenant_id.clone(), entry)
    };
    let (bytes, estimate) = measure(&tenants, with_policies, |e| {
        tenant_weight(&e.record) + policies_weight(&e.policies)
    });
    row(
        "tenant with 20 own policies, compiled",
        tenants.len(),
        (bytes, estimate),
    );
    let (plain, _) = measure(&tenants, tenant, |e| tenant_weight(&e.record));

    println!(
        "\none tenant policy (stored, compiled, guarded, sliced): {:.0} heap bytes",
        (bytes - plain) as f64 / (20 * tenants.len()) as f64
    );

    // Why the cache holds entities and not just records: building one
    // again on every use would cost this much.
    let docs: Vec<Document> = ordinary
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let attrs: usize = docs
        .iter()
        .map(|d| document_entity(d).attrs().count())
        .sum();
    println!(
        "\nbuilding a document's Cedar entity: {:.1} µs ({} attributes built)",
        started.elapsed().as_secs_f64() * 1e6 / docs.len() as f64,
        attrs
    );
}
