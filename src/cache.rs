//! The entity cache: tenant records and document ACLs, loaded from the store
//! on a miss and kept, already converted to Cedar entities, in bounded LRU
//! maps with a TTL. A record the store does not have is cached as missing
//! (a negative entry, with its own TTL). Documents are keyed by (tenant,
//! document), so a lookup never leaves the caller's tenant. Concurrent
//! misses for one key share one store read; while the store fails, entries
//! younger than `max_staleness` are still served.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cedar_policy::Entity;
use lru::LruCache;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::authz::entities::{document_entity, tenant_entity};
use crate::ids::{DocumentId, TenantId};
use crate::metrics::CacheMetrics;
use crate::model::{Document, Tenant};
use crate::policy::tenant::{compile_all, Compiled, TenantPolicy};
use crate::policy::PolicySnapshot;
use crate::search::condition::{view_of, AttrView};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub tenant_capacity: NonZeroUsize,
    pub document_capacity: NonZeroUsize,
    /// How long a loaded record is used before it is read again.
    pub ttl: Duration,
    /// How long "not found" is remembered.
    pub negative_ttl: Duration,
    /// While the store fails, an entry younger than this is still served;
    /// older ones and misses are denied as unavailable.
    pub max_staleness: Duration,
    /// Decisions remembered by everything they depend on (0: off).
    pub decision_capacity: usize,
    /// Residual policies remembered per (principal, action, context, tenant
    /// record), deciding that principal's documents without a full
    /// evaluation (0: off).
    pub residual_capacity: usize,
    /// Entity sets built for requests (tenant, resource and action
    /// entities, some kilobytes each), kept so that a warm request only adds
    /// its principal.
    pub entity_set_capacity: NonZeroUsize,
    /// A key's residuals are computed at its this-many-th document decision
    /// (partial evaluation costs about twenty full ones).
    pub residual_after: u32,
    /// Most bytes the cached tenants may hold ([`tenant_weight`]); least
    /// recently used entries are evicted past it, whatever their number.
    pub tenant_max_bytes: usize,
    /// Most bytes the cached documents may hold ([`document_weight`]): a
    /// document shared with thousands weighs what it holds.
    pub document_max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            tenant_capacity: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            document_capacity: NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            max_staleness: Duration::from_secs(300),
            decision_capacity: 16_384,
            residual_capacity: 4_096,
            entity_set_capacity: crate::authz::ENTITY_SET_CAPACITY,
            residual_after: 16,
            tenant_max_bytes: 16 << 20,
            document_max_bytes: 64 << 20,
        }
    }
}

/// A number no other loaded entry (of any kind) has, so derived data can
/// be keyed by the entries it was built from.
pub fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Heap bytes a cached entry holds besides its variable parts: the map
/// node, key, `Arc`, record, Cedar entity and attribute view (measured by
/// `examples/cache_memory.rs`; see BENCHMARKS.md).
const TENANT_BASE_BYTES: usize = 8_300;
const DOCUMENT_BASE_BYTES: usize = 4_550;
/// Per entry of a document's share list: the record's share, the entity's
/// set element, the attribute view's.
const SHARE_BYTES: usize = 340;
/// A "not found" entry: key and slot.
const MISSING_BYTES: usize = 160;

/// What a cached tenant is charged against `tenant_max_bytes`: an estimate
/// of the heap it holds (record and entity), from the record alone.
pub fn tenant_weight(t: &Tenant) -> usize {
    let strings = |set: &std::collections::BTreeSet<String>| -> usize {
        set.iter().map(|s| 3 * s.len() + 150).sum()
    };
    TENANT_BASE_BYTES
        + 3 * t.name.len()
        + strings(&t.settings.allowed_file_types)
        + strings(&t.subscription.features)
}

/// Charged per tenant policy besides its text (the record, the compiled
/// policy and its confinement, its place in the action slices and their
/// indexes): measured by `examples/cache_memory.rs`.
const POLICY_BASE_BYTES: usize = 10_500;

/// What a tenant's policies are charged: the stored and compiled forms.
pub fn policies_weight(policies: &[TenantPolicy]) -> usize {
    policies
        .iter()
        .map(|p| {
            let text = match &p.definition {
                crate::policy::tenant::Definition::Static { statement } => statement.len(),
                crate::policy::tenant::Definition::TemplateLinked { .. } => 200,
            };
            POLICY_BASE_BYTES + 10 * text
        })
        .sum()
}

/// What a cached document is charged against `document_max_bytes`: an
/// estimate of the heap it holds (record, entity, attribute view), from
/// the record alone.
pub fn document_weight(d: &Document) -> usize {
    let ids: usize = d
        .shared_with
        .iter()
        .map(|s| match &s.grantee {
            crate::model::Grantee::User(u) => u.as_str().len(),
            crate::model::Grantee::Role(r) => r.as_str().len(),
        })
        .sum();
    DOCUMENT_BASE_BYTES
        + 3 * (d.owner_id.as_str().len() + d.file_type.len())
        + d.shared_with.len() * SHARE_BYTES
        + ids
}

/// A tenant record with its Cedar entity and its own policies.
#[derive(Debug)]
pub struct TenantEntry {
    pub record: Tenant,
    pub entity: Entity,
    /// Of the record and the policies together: a change to either is a
    /// new entry.
    pub generation: u64,
    /// The tenant's own policies as stored ([`crate::policy::tenant`]).
    pub policies: Vec<TenantPolicy>,
    /// Those compiled against the policy snapshot last asked for.
    compiled: Mutex<Option<Arc<Compiled>>>,
}

impl TenantEntry {
    pub fn new(record: Tenant, policies: Vec<TenantPolicy>, generation: u64) -> Self {
        TenantEntry {
            entity: tenant_entity(&record),
            record,
            generation,
            policies,
            compiled: Mutex::new(None),
        }
    }

    /// The tenant's policies compiled against `snapshot` (once per
    /// snapshot); `None` when it has none.
    pub fn compiled(&self, snapshot: &PolicySnapshot) -> Option<Arc<Compiled>> {
        if self.policies.is_empty() {
            return None;
        }
        let mut held = self.compiled.lock();
        if let Some(c) = held.as_ref().filter(|c| c.revision == snapshot.revision) {
            return Some(c.clone());
        }
        let c = Arc::new(compile_all(snapshot, &self.policies));
        if !c.problems.is_empty() {
            tracing::warn!(
                tenant = %self.record.tenant_id,
                policies = ?c.problems.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                "tenant policies that no longer compile: permits left out, forbids fail closed"
            );
        }
        *held = Some(c.clone());
        Some(c)
    }
}

/// A document ACL with its Cedar entity.
#[derive(Debug)]
pub struct DocumentEntry {
    pub record: Document,
    pub entity: Entity,
    pub generation: u64,
    /// The entity's attributes as residual conditions read them, built on
    /// first use.
    view: OnceLock<AttrView>,
}

impl DocumentEntry {
    pub fn new(record: Document, generation: u64) -> Self {
        DocumentEntry {
            entity: document_entity(&record),
            record,
            generation,
            view: OnceLock::new(),
        }
    }

    /// The document's attributes, as [`crate::search::Cond::holds`] reads them.
    pub fn view(&self) -> &AttrView {
        self.view.get_or_init(|| view_of(&self.entity))
    }
}

/// What the cache knows of one key: the record (or that there is none) and
/// when it was read from the store.
#[derive(Debug)]
pub struct Slot<V> {
    pub value: Option<Arc<V>>,
    pub fetched_at: Instant,
}

impl<V> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Slot {
            value: self.value.clone(),
            fetched_at: self.fetched_at,
        }
    }
}

/// The result of one store read, shared with every request that waited for
/// it. (Errors travel as text: a store error is not `Clone`.)
type Shared<V> = Arc<tokio::sync::Mutex<Option<Result<Slot<V>, String>>>>;

struct Lru<K: Hash + Eq, V> {
    map: Mutex<Held<K, V>>,
    /// Reads in progress, one per key (single flight).
    inflight: Mutex<HashMap<K, Shared<V>>>,
    metrics: CacheMetrics,
    max_bytes: usize,
    weigh: fn(&V) -> usize,
}

/// The entries (each with its weight) and their total weight.
struct Held<K: Hash + Eq, V> {
    lru: LruCache<K, (Slot<V>, usize)>,
    bytes: usize,
}

enum Look<V> {
    Fresh(Slot<V>),
    Stale(Slot<V>),
    Missing,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    fn new(
        capacity: NonZeroUsize,
        max_bytes: usize,
        weigh: fn(&V) -> usize,
        metrics: CacheMetrics,
    ) -> Self {
        Lru {
            map: Mutex::new(Held {
                lru: LruCache::new(capacity),
                bytes: 0,
            }),
            inflight: Mutex::new(HashMap::new()),
            metrics,
            max_bytes,
            weigh,
        }
    }

    fn look(&self, key: &K, cfg: &CacheConfig) -> Look<V> {
        let mut map = self.map.lock();
        let Some((slot, _)) = map.lru.get(key) else {
            return Look::Missing;
        };
        let ttl = if slot.value.is_some() {
            cfg.ttl
        } else {
            cfg.negative_ttl
        };
        if slot.fetched_at.elapsed() >= ttl {
            return Look::Stale(slot.clone());
        }
        if slot.value.is_some() {
            self.metrics.hits.inc();
        } else {
            self.metrics.negative_hits.inc();
        }
        Look::Fresh(slot.clone())
    }

    /// The cached slot if fresh; else one store read per key however many
    /// ask at once. When the read fails, an entry younger than
    /// `max_staleness` is served (and counted); otherwise the error is
    /// returned.
    async fn get_or_load<F, Fut>(
        &self,
        key: &K,
        cfg: &CacheConfig,
        load: F,
    ) -> Result<Slot<V>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Arc<V>>, StoreError>>,
    {
        let stale = match self.look(key, cfg) {
            Look::Fresh(slot) => return Ok(slot),
            Look::Stale(slot) => Some(slot),
            Look::Missing => None,
        };
        let shared = self.inflight.lock().entry(key.clone()).or_default().clone();
        let mut result = shared.lock().await;
        if result.is_none() {
            // First in: unless a read finished just before, read the store.
            if let Look::Fresh(slot) = self.look(key, cfg) {
                *result = Some(Ok(slot));
            } else {
                self.metrics.misses.inc();
                *result = Some(match load().await {
                    Ok(value) => {
                        let slot = Slot {
                            value,
                            fetched_at: Instant::now(),
                        };
                        self.insert(key.clone(), slot.clone());
                        Ok(slot)
                    }
                    Err(e) => {
                        self.metrics.load_errors.inc();
                        Err(e.to_string())
                    }
                });
                let mut inflight = self.inflight.lock();
                if inflight.get(key).is_some_and(|s| Arc::ptr_eq(s, &shared)) {
                    inflight.remove(key);
                }
            }
        }
        match result.clone() {
            Some(Ok(slot)) => Ok(slot),
            Some(Err(error)) => match stale {
                Some(slot) if slot.fetched_at.elapsed() < cfg.max_staleness => {
                    self.metrics.stale_served.inc();
                    Ok(slot)
                }
                _ => Err(StoreError::Unavailable(error)),
            },
            None => Err(StoreError::Unavailable("no result".into())),
        }
    }

    /// Adds (or replaces) an entry, then evicts the least recently used
    /// until both the entry count and the byte budget hold. The newest
    /// entry stays even if it alone is over the budget.
    fn insert(&self, key: K, slot: Slot<V>) {
        let weight = slot.value.as_deref().map_or(MISSING_BYTES, self.weigh);
        let mut map = self.map.lock();
        if let Some((old, (_, w))) = map.lru.push(key.clone(), (slot, weight)) {
            map.bytes -= w;
            if old != key {
                self.metrics.evictions.inc();
            }
        }
        map.bytes += weight;
        while map.bytes > self.max_bytes && map.lru.len() > 1 {
            let Some((_, (_, w))) = map.lru.pop_lru() else {
                break;
            };
            map.bytes -= w;
            self.metrics.evictions.inc();
        }
        self.metrics.entries.set(map.lru.len() as i64);
        self.metrics.bytes.set(map.bytes as i64);
    }

    fn remove(&self, key: &K) {
        let mut map = self.map.lock();
        if let Some((_, w)) = map.lru.pop(key) {
            map.bytes -= w;
        }
        self.metrics.entries.set(map.lru.len() as i64);
        self.metrics.bytes.set(map.bytes as i64);
    }

    fn clear(&self) {
        let mut map = self.map.lock();
        map.lru.clear();
        map.bytes = 0;
        self.metrics.entries.set(0);
        self.metrics.bytes.set(0);
    }

    fn len(&self) -> usize {
        self.map.lock().lru.len()
    }

    fn bytes(&self) -> usize {
        self.map.lock().bytes
    }
}

/// The sidecar's cache of tenants and documents in front of a [`Store`].
pub struct EntityCache {
    store: Arc<dyn Store>,
    config: CacheConfig,
    tenants: Lru<TenantId, TenantEntry>,
    documents: Lru<(TenantId, DocumentId), DocumentEntry>,
}

impl EntityCache {
    pub fn new(
        store: Arc<dyn Store>,
        config: CacheConfig,
        tenant_metrics: CacheMetrics,
        document_metrics: CacheMetrics,
    ) -> Self {
        EntityCache {
            tenants: Lru::new(
                config.tenant_capacity,
                config.tenant_max_bytes,
                |e: &TenantEntry| tenant_weight(&e.record) + policies_weight(&e.policies),
                tenant_metrics,
            ),
            documents: Lru::new(
                config.document_capacity,
                config.document_max_bytes,
                |e: &DocumentEntry| document_weight(&e.record),
                document_metrics,
            ),
            store,
            config,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// A tenant (or that there is none), from the cache or the store.
    pub async fn tenant(&self, id: &TenantId) -> Result<Slot<TenantEntry>, StoreError> {
        self.tenants
            .get_or_load(id, &self.config, || async {
                let (record, policies) =
                    tokio::try_join!(self.store.get_tenant(id), self.store.tenant_policies(id))?;
                // Defence in depth: another tenant's policy is never used.
                let policies = policies
                    .into_iter()
                    .filter(|p| &p.tenant_id == id)
                    .collect();
                Ok(record
                    .map(|record| Arc::new(TenantEntry::new(record, policies, next_generation()))))
            })
            .await
    }

    /// A document of `tenant` (or that the tenant has none by that id).
    pub async fn document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
    ) -> Result<Slot<DocumentEntry>, StoreError> {
        let key = (tenant.clone(), id.clone());
        self.documents
            .get_or_load(&key, &self.config, || async {
                let record = self.store.get_document(tenant, id).await?;
                // Defence in depth: a record of another tenant is never used.
                let record = record.filter(|d| &d.tenant_id == tenant && &d.document_id == id);
                Ok(record.map(|record| Arc::new(DocumentEntry::new(record, next_generation()))))
            })
            .await
    }

    pub fn invalidate_tenant(&self, id: &TenantId) {
        self.tenants.remove(id);
    }

    pub fn invalidate_document(&self, tenant: &TenantId, id: &DocumentId) {
        self.documents.remove(&(tenant.clone(), id.clone()));
    }

    pub fn clear(&self) {
        self.tenants.clear();
        self.documents.clear();
    }

    /// (tenants, documents) currently held.
    pub fn len(&self) -> (usize, usize) {
        (self.tenants.len(), self.documents.len())
    }

    /// (tenants, documents) bytes currently charged.
    pub fn bytes(&self) -> (usize, usize) {
        (self.tenants.bytes(), self.documents.bytes())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;

    use super::*;
    use crate::model::DataSet;
    use crate::store::ImportSummary;

    /// An in-memory store that counts reads. With `ignore_tenant` it
    /// misbehaves like a store with a key bug: it finds a document by id in
    /// any tenant.
    #[derive(Default)]
    struct MemStore {
        tenants: Mutex<HashMap<TenantId, Tenant>>,
        documents: Mutex<Vec<Document>>,
        reads: AtomicUsize,
        ignore_tenant: bool,
        /// Reads fail while set.
        down: std::sync::atomic::AtomicBool,
        /// Reads take this long.
        delay: Option<Duration>,
    }

    impl MemStore {
        async fn read(&self) -> Result<(), StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Store for MemStore {
        async fn migrate(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
            self.read().await?;
            Ok(self.tenants.lock().get(id).cloned())
        }
        async fn tenant_policies(
            &self,
            _: &TenantId,
        ) -> Result<Vec<crate::policy::tenant::TenantPolicy>, StoreError> {
            // Not counted as a read: the tests count record reads.
            Ok(Vec::new())
        }
        async fn put_tenant_policy_if(
            &self,
            _: &crate::policy::tenant::TenantPolicy,
            _: Option<&str>,
        ) -> Result<(), StoreError> {
            Err(StoreError::Invalid(
                "the test store keeps no policies".into(),
            ))
        }
        async fn delete_tenant_policy_if(
            &self,
            _: &TenantId,
            _: &crate::ids::PolicyName,
            _: &str,
        ) -> Result<bool, StoreError> {
            Err(StoreError::Invalid(
                "the test store keeps no policies".into(),
            ))
        }
        async fn get_document(
            &self,
            tenant: &TenantId,
            id: &DocumentId,
        ) -> Result<Option<Document>, StoreError> {
            self.read().await?;
            Ok(self
                .documents
                .lock()
                .iter()
                .find(|d| (self.ignore_tenant || &d.tenant_id == tenant) && &d.document_id == id)
                .cloned())
        }
        async fn put_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
            self.tenants.lock().insert(t.tenant_id.clone(), t.clone());
            Ok(())
        }
        async fn put_document(&self, d: &Document) -> Result<(), StoreError> {
            self.documents.lock().push(d.clone());
            Ok(())
        }
        async fn put_document_if(&self, d: &Document, _: &Document) -> Result<(), StoreError> {
            self.documents.lock().push(d.clone());
            Ok(())
        }
        async fn delete_document(
            &self,
            _: &TenantId,
            _: &DocumentId,
            _: Option<chrono::DateTime<chrono::Utc>>,
        ) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn expire_audit(&self, _: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn import(&self, _: &DataSet) -> Result<ImportSummary, StoreError> {
            Ok(ImportSummary::default())
        }
        async fn change_cursor(&self) -> Result<crate::store::ChangeCursor, StoreError> {
            Ok(crate::store::ChangeCursor(String::new()))
        }
        async fn changes_since(
            &self,
            c: &crate::store::ChangeCursor,
        ) -> Result<
            (
                Vec<(String, crate::store::Change)>,
                crate::store::ChangeCursor,
            ),
            StoreError,
        > {
            Ok((Vec::new(), c.clone()))
        }
        async fn migrations(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
            Ok(Vec::new())
        }
        async fn record_migration(
            &self,
            _: &str,
            _: Option<&serde_json::Value>,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn raw_tenants(&self) -> Result<Vec<serde_json::Value>, StoreError> {
            Ok(Vec::new())
        }
        async fn put_raw_tenant(&self, _: &serde_json::Value) -> Result<(), StoreError> {
            Ok(())
        }
        async fn put_audit(&self, _: &[crate::audit::AuditEvent]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn put_tenant_if(&self, _: &Tenant, _: Option<&str>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn list_tenants(
            &self,
            _: Option<&TenantId>,
            _: usize,
        ) -> Result<(Vec<Tenant>, bool), StoreError> {
            Ok((Vec::new(), false))
        }
        async fn add_usage(
            &self,
            _: &TenantId,
            _: &crate::store::UsageDelta,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn add_decisions(
            &self,
            _: &TenantId,
            _: &str,
            _: &[(String, crate::authz::Effect, u64)],
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn decisions_in(
            &self,
            _: &TenantId,
            _: &str,
        ) -> Result<Vec<(String, crate::authz::Effect, u64)>, StoreError> {
            Ok(Vec::new())
        }
        async fn put_storage_sample(
            &self,
            _: &TenantId,
            _: chrono::NaiveDate,
            _: u64,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn storage_samples(
            &self,
            _: &TenantId,
            _: &str,
        ) -> Result<Vec<(u32, u64)>, StoreError> {
            Ok(Vec::new())
        }
        async fn documents_of(
            &self,
            _: &TenantId,
            _: Option<&DocumentId>,
            _: usize,
        ) -> Result<(Vec<Document>, bool), StoreError> {
            Ok((Vec::new(), false))
        }
        async fn deleted_documents(
            &self,
            _: &TenantId,
            _: Option<&DocumentId>,
            _: usize,
        ) -> Result<(Vec<Document>, Option<DocumentId>), StoreError> {
            Ok((Vec::new(), None))
        }
        async fn build_index(&self, _: crate::store::Index) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        async fn drop_index(&self, _: crate::store::Index) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        async fn audit_events(
            &self,
            _: &crate::store::AuditQuery,
        ) -> Result<crate::store::AuditPage, StoreError> {
            Ok(crate::store::AuditPage::default())
        }
    }

    fn sample() -> DataSet {
        serde_json::from_str(crate::demo::DATA).unwrap()
    }

    fn cache(store: Arc<MemStore>, capacity: usize) -> EntityCache {
        cache_with_bytes(store, capacity, usize::MAX)
    }

    fn cache_with_bytes(store: Arc<MemStore>, capacity: usize, max_bytes: usize) -> EntityCache {
        let cap = NonZeroUsize::new(capacity).unwrap();
        EntityCache::new(
            store,
            CacheConfig {
                tenant_capacity: cap,
                document_capacity: cap,
                ttl: Duration::from_secs(30),
                negative_ttl: Duration::from_secs(5),
                max_staleness: Duration::from_secs(60),
                decision_capacity: 0,
                residual_capacity: 0,
                entity_set_capacity: crate::authz::ENTITY_SET_CAPACITY,
                residual_after: 16,
                tenant_max_bytes: max_bytes,
                document_max_bytes: max_bytes,
            },
            CacheMetrics::default(),
            CacheMetrics::default(),
        )
    }

    async fn filled(ignore_tenant: bool) -> Arc<MemStore> {
        filled_with(MemStore {
            ignore_tenant,
            ..Default::default()
        })
        .await
    }

    async fn filled_with(store: MemStore) -> Arc<MemStore> {
        let store = Arc::new(store);
        let data = sample();
        for t in &data.tenants {
            store.put_tenant(t).await.unwrap();
        }
        for d in &data.documents {
            store.put_document(d).await.unwrap();
        }
        store
    }

    fn tid(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn did(s: &str) -> DocumentId {
        DocumentId::parse(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn entries_live_for_the_ttl() {
        let store = filled(false).await;
        let c = cache(store.clone(), 100);
        let acme = tid("acme");
        assert!(c.tenant(&acme).await.unwrap().value.is_some());
        assert!(c.tenant(&acme).await.unwrap().value.is_some());
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        assert_eq!(c.tenants.metrics.hits.get(), 1);
        assert_eq!(c.tenants.metrics.misses.get(), 1);

        tokio::time::advance(Duration::from_secs(29)).await;
        let slot = c.tenant(&acme).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        assert_eq!(slot.fetched_at.elapsed(), Duration::from_secs(29));

        tokio::time::advance(Duration::from_secs(1)).await;
        c.tenant(&acme).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_records_are_cached_as_missing() {
        let store = filled(false).await;
        let c = cache(store.clone(), 100);
        let (acme, doc) = (tid("acme"), did("new-doc"));
        assert!(c.document(&acme, &doc).await.unwrap().value.is_none());
        assert!(c.document(&acme, &doc).await.unwrap().value.is_none());
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        assert_eq!(c.documents.metrics.negative_hits.get(), 1);

        // The document appears; the negative entry hides it until it expires.
        let mut d = sample().documents[0].clone();
        d.document_id = doc.clone();
        store.put_document(&d).await.unwrap();
        assert!(c.document(&acme, &doc).await.unwrap().value.is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(c.document(&acme, &doc).await.unwrap().value.is_some());
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_with_evictions_counted_and_invalidation() {
        let store = filled(false).await;
        let c = cache(store.clone(), 2);
        for t in ["acme", "globex", "initech"] {
            c.tenant(&tid(t)).await.unwrap();
        }
        assert_eq!(c.len().0, 2);
        assert_eq!(c.tenants.metrics.evictions.get(), 1);
        // acme was the least recently used and is gone.
        c.tenant(&tid("acme")).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 4);

        c.invalidate_tenant(&tid("acme"));
        c.tenant(&tid("acme")).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 5);
        c.clear();
        assert!(c.is_empty());
    }

    /// Entries are evicted by weight as well as by number: a document
    /// shared with thousands pushes out many ordinary ones, the charged
    /// bytes never exceed the budget, and they follow every removal.
    #[tokio::test]
    async fn bounded_in_bytes() {
        let store = filled(false).await;
        let template = sample().documents[0].clone();
        let doc = |id: String, shares: usize| {
            let mut d = template.clone();
            d.document_id = DocumentId::parse(&id).unwrap();
            d.shared_with = (0..shares)
                .map(|u| crate::model::Share {
                    grantee: crate::model::Grantee::User(
                        crate::ids::UserId::parse(format!("u{u}")).unwrap(),
                    ),
                    permission: crate::model::Permission::Read,
                })
                .collect();
            d
        };
        for i in 0..40 {
            store
                .put_document(&doc(format!("small-{i}"), 0))
                .await
                .unwrap();
        }
        let wide = doc("wide".into(), 400);
        store.put_document(&wide).await.unwrap();
        let small = document_weight(&doc("small-0".into(), 0));
        assert!(document_weight(&wide) > 30 * small);
        let budget = 36 * small;
        let c = cache_with_bytes(store.clone(), 1_000, budget);
        let tenant = template.tenant_id.clone();
        for i in 0..40 {
            c.document(&tenant, &did(&format!("small-{i}")))
                .await
                .unwrap();
            assert!(c.bytes().1 <= budget);
        }
        assert_eq!(c.len().1, 36);
        assert_eq!(c.documents.metrics.evictions.get(), 4);
        assert_eq!(c.documents.metrics.bytes.get(), (36 * small) as i64);
        c.document(&tenant, &did("wide")).await.unwrap();
        let left = (budget - document_weight(&wide)) / small;
        assert_eq!(c.len().1, 1 + left);
        assert_eq!(c.bytes().1, document_weight(&wide) + left * small);
        // The most recently used survived; the oldest went.
        let reads = store.reads.load(Ordering::SeqCst);
        c.document(&tenant, &did("small-39")).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), reads);
        c.document(&tenant, &did("small-0")).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), reads + 1);

        c.invalidate_document(&tenant, &did("wide"));
        assert_eq!(c.bytes().1, c.len().1 * small);
        assert_eq!(c.documents.metrics.entries.get(), c.len().1 as i64);
        c.clear();
        assert_eq!(c.bytes(), (0, 0));
        // A single entry over the budget is still cached (alone).
        let c = cache_with_bytes(store.clone(), 1_000, small);
        c.document(&tenant, &did("small-1")).await.unwrap();
        c.document(&tenant, &did("wide")).await.unwrap();
        assert_eq!(c.len().1, 1);
        let reads = store.reads.load(Ordering::SeqCst);
        c.document(&tenant, &did("wide")).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), reads);
    }

    #[tokio::test]
    async fn documents_never_cross_tenants() {
        // Looked up in the wrong tenant: not there.
        let store = filled(false).await;
        let c = cache(store, 100);
        assert!(c
            .document(&tid("globex"), &did("q3-report"))
            .await
            .unwrap()
            .value
            .is_none());
        assert!(c
            .document(&tid("acme"), &did("q3-report"))
            .await
            .unwrap()
            .value
            .is_some());

        // Even a store that ignores the tenant cannot leak a document.
        let lying = filled(true).await;
        let c = cache(lying, 100);
        assert!(c
            .document(&tid("globex"), &did("q3-report"))
            .await
            .unwrap()
            .value
            .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_read_the_store_once() {
        let store = filled_with(MemStore {
            delay: Some(Duration::from_millis(50)),
            ..Default::default()
        })
        .await;
        let c = Arc::new(cache(store.clone(), 100));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.document(&tid("acme"), &did("q3-report"))
                    .await
                    .map(|s| s.value.is_some())
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().unwrap());
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        assert_eq!(c.documents.metrics.misses.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_is_shared_too() {
        let store = filled_with(MemStore {
            delay: Some(Duration::from_millis(50)),
            ..Default::default()
        })
        .await;
        store.down.store(true, Ordering::SeqCst);
        let c = Arc::new(cache(store.clone(), 100));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.tenant(&tid("acme")).await.is_err()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        // The next request tries again.
        store.down.store(false, Ordering::SeqCst);
        assert!(c.tenant(&tid("acme")).await.unwrap().value.is_some());
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_entries_are_served_within_max_staleness_only() {
        let store = filled(false).await;
        let c = cache(store.clone(), 100); // ttl 30 s, max staleness 60 s
        let (acme, doc) = (tid("acme"), did("q3-report"));
        c.document(&acme, &doc).await.unwrap();
        store.down.store(true, Ordering::SeqCst);

        // Past the TTL, inside max staleness: the old entry, counted.
        tokio::time::advance(Duration::from_secs(45)).await;
        let slot = c.document(&acme, &doc).await.unwrap();
        assert!(slot.value.is_some());
        assert_eq!(slot.fetched_at.elapsed(), Duration::from_secs(45));
        assert_eq!(c.documents.metrics.stale_served.get(), 1);
        // A key never loaded: unavailable.
        assert!(matches!(
            c.document(&acme, &did("handbook")).await,
            Err(StoreError::Unavailable(_))
        ));
        // Past max staleness: unavailable too.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(c.document(&acme, &doc).await.is_err());
        // The store is back: fresh again.
        store.down.store(false, Ordering::SeqCst);
        let slot = c.document(&acme, &doc).await.unwrap();
        assert_eq!(slot.fetched_at.elapsed(), Duration::ZERO);
    }
}
