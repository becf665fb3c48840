//! The store: where tenant records and document ACLs live. One trait, chosen
//! at start-up from a store URL: the embedded SQLite backend (no set-up; one
//! file shared by the sidecar and `cedargate-admin`) or DynamoDB. Every
//! write also appends to a change log that sidecars follow.

mod dynamo;
mod sqlite;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use dynamo::DynamoStore;
pub use sqlite::SqliteStore;

use chrono::{DateTime, Utc};

use crate::audit::AuditEvent;
use crate::authz::Effect;
use crate::ids::{DocumentId, PolicyName, TenantId};
use crate::model::{DataSet, Document, Tenant};
use crate::policy::tenant::TenantPolicy;

/// What can go wrong talking to a store. `Invalid` is the caller's mistake;
/// the other variants are the store's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid data: {0}")]
    Invalid(String),
    /// A conditional write found another version than expected.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The store operations the sidecar and the admin tool need. Every
/// tenant-scoped read names the tenant, so no read can cross tenants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates tables if needed. Idempotent.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn get_document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
    ) -> Result<Option<Document>, StoreError>;
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    /// Writes a tenant only if the stored one has version `expected`
    /// ([`tenant_version`]), or, with `None`, only if there is none.
    /// Otherwise [`StoreError::Conflict`]. An update keeps the stored
    /// `usage` (counted by the service, see [`Store::add_usage`]).
    async fn put_tenant_if(
        &self,
        tenant: &Tenant,
        expected: Option<&str>,
    ) -> Result<(), StoreError>;
    /// A tenant's documents in id order after `after`, at most `limit`, and
    /// whether more follow (export).
    async fn documents_of(
        &self,
        tenant: &TenantId,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<(Vec<Document>, bool), StoreError>;
    /// A tenant's soft-deleted documents in id order after `after`, at
    /// most `limit`, and the id to continue after (`None`: no more). A page
    /// may be short, even empty, and still continue. Read through a sparse
    /// index of deleted documents once [`Index::DeletedDocuments`] is built:
    /// proportional to the deleted documents, not to all of them.
    async fn deleted_documents(
        &self,
        tenant: &TenantId,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<(Vec<Document>, Option<DocumentId>), StoreError>;
    /// Applies `delta` to the tenant's usage, atomically, with a
    /// change-log entry. An unknown tenant is a no-op.
    async fn add_usage(&self, tenant: &TenantId, delta: &UsageDelta) -> Result<(), StoreError>;
    /// Adds decision counts to a tenant's month (`YYYY-MM`): each
    /// (action, decision) with its count, in one atomic write.
    async fn add_decisions(
        &self,
        tenant: &TenantId,
        month: &str,
        counts: &[(String, Effect, u64)],
    ) -> Result<(), StoreError>;
    /// A tenant's decision counts in a month, by action and decision, in
    /// action order.
    async fn decisions_in(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<Vec<(String, Effect, u64)>, StoreError>;
    /// Records `bytes` as a tenant's stored bytes on `day` (UTC); a later
    /// sample of the same day replaces it (samplers may run anywhere, and
    /// more than once).
    async fn put_storage_sample(
        &self,
        tenant: &TenantId,
        day: chrono::NaiveDate,
        bytes: u64,
    ) -> Result<(), StoreError>;
    /// A tenant's storage samples in `month` (`YYYY-MM`), as (day of the
    /// month, bytes), in day order.
    async fn storage_samples(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<Vec<(u32, u64)>, StoreError>;
    /// Tenants in id order after `after`, at most `limit`, and whether more
    /// follow (platform administration only).
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<(Vec<Tenant>, bool), StoreError>;
    /// A tenant's own policies, in id order.
    async fn tenant_policies(&self, tenant: &TenantId) -> Result<Vec<TenantPolicy>, StoreError>;
    /// Writes a tenant policy only if the stored one has version
    /// `expected` ([`TenantPolicy::version`]), or, with `None`, only if
    /// there is none; otherwise [`StoreError::Conflict`]. With a change-log
    /// entry for the tenant, so sidecars drop their cached copy.
    async fn put_tenant_policy_if(
        &self,
        policy: &TenantPolicy,
        expected: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Deletes a tenant policy if its version is `expected`, with a
    /// change-log entry. `Ok(false)` when there is none;
    /// [`StoreError::Conflict`] when it has another version.
    async fn delete_tenant_policy_if(
        &self,
        tenant: &TenantId,
        policy: &PolicyName,
        expected: &str,
    ) -> Result<bool, StoreError>;
    async fn put_document(&self, document: &Document) -> Result<(), StoreError>;
    /// Writes a document only if the stored one is still `expected` (as it
    /// was read before the edit); otherwise [`StoreError::Conflict`] and
    /// nothing is written. Concurrent edits of one document cannot lose
    /// each other.
    async fn put_document_if(
        &self,
        document: &Document,
        expected: &Document,
    ) -> Result<(), StoreError>;
    /// Deletes a document for good, with a change-log entry. With
    /// `if_deleted_at`, only if it is soft-deleted at exactly that time (a
    /// restore or a new deletion since it was read wins). `Ok(false)` when
    /// nothing was deleted: no such document, or the condition failed.
    async fn delete_document(
        &self,
        tenant: &TenantId,
        id: &DocumentId,
        if_deleted_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;
    /// Deletes the audit records whose expiry (`expiresAt`, never under the
    /// compliance floor) is before `now`, and says how many. DynamoDB's TTL
    /// does this by itself there: `Ok(0)`.
    async fn expire_audit(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Writes a whole data set. SQLite: all of it or (on any error) none of
    /// it. DynamoDB: checked first, then written in transactions; rerunning
    /// converges.
    async fn import(&self, data: &DataSet) -> Result<ImportSummary, StoreError>;
    /// Writes a data set that arrives in parts ([`crate::import`]), with
    /// [`Store::import`]'s guarantees; an `Err` part (the file turned out
    /// bad) writes nothing. By default the parts are gathered and written
    /// as one; SQLite writes them as they come, in one transaction, so
    /// memory stays bounded.
    async fn import_parts(
        &self,
        mut parts: tokio::sync::mpsc::Receiver<Result<DataSet, String>>,
    ) -> Result<ImportSummary, StoreError> {
        let mut all = DataSet::default();
        while let Some(part) = parts.recv().await {
            let part = part.map_err(StoreError::Invalid)?;
            all.tenants.extend(part.tenants);
            all.documents.extend(part.documents);
        }
        self.import(&all).await
    }
    /// The current end of the change log: a follower starting here sees
    /// every change made from now on.
    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError>;
    /// Changes after `cursor`, each with an id unique to that change (the
    /// same change may be returned again by a later call; ids let a
    /// follower skip it), and the cursor to continue from.
    async fn changes_since(
        &self,
        cursor: &ChangeCursor,
    ) -> Result<(Vec<(String, Change)>, ChangeCursor), StoreError>;

    /// Migration steps recorded as applied, with the state each kept.
    async fn migrations(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError>;
    /// Records a step as applied with its state (`Some`), or removes the
    /// record (`None`, after a rollback).
    async fn record_migration(
        &self,
        id: &str,
        state: Option<&serde_json::Value>,
    ) -> Result<(), StoreError>;
    /// Builds an index (a migration step): creates it and fills it from
    /// the records already stored. Idempotent and resumable; says what it
    /// did, line by line.
    async fn build_index(&self, index: Index) -> Result<Vec<String>, StoreError>;
    /// Removes an index (the step's rollback). Reads that used it go back
    /// to reading without it; no record changes.
    async fn drop_index(&self, index: Index) -> Result<Vec<String>, StoreError>;
    /// Every tenant record as stored, whether or not it is a valid
    /// `Tenant` (maintenance only: a Scan on DynamoDB).
    async fn raw_tenants(&self) -> Result<Vec<serde_json::Value>, StoreError>;
    /// Writes a tenant record as given (maintenance only), with its
    /// change-log entry.
    async fn put_raw_tenant(&self, record: &serde_json::Value) -> Result<(), StoreError>;

    /// Stores audit records. Idempotent: a record written twice (say, drained
    /// again after a crash) is stored once.
    async fn put_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Stores audit records as the writer spooled them (its JSON, serialized
    /// once). By default each is parsed and stored with [`Store::put_audit`];
    /// a backend that keeps the JSON as it is stores the bytes.
    async fn put_audit_spooled(&self, records: &[SpooledAudit]) -> Result<(), StoreError> {
        let mut events = Vec::with_capacity(records.len());
        for r in records {
            match serde_json::from_slice::<AuditEvent>(&r.json) {
                Ok(e) => events.push(e),
                Err(e) => {
                    tracing::error!(event_id = %r.event_id, error = %e, "spooled audit record cannot be read; dropped")
                }
            }
        }
        self.put_audit(&events).await
    }
    /// Stores spooled audit records on the calling thread, when this
    /// backend's writes are local blocking work (SQLite): the audit drainer
    /// then does them on its own lower-priority thread. `None` for a backend
    /// reached over the network; the drainer calls [`Store::put_audit_spooled`]
    /// on the runtime that owns the backend's connections instead.
    ///
    /// With `hold`, a write still running that long after it took the
    /// store's write lock (its thread starved of CPU) gives up: nothing of
    /// it is stored, the lock is released, and it fails.
    fn put_audit_spooled_blocking(
        &self,
        _records: &[SpooledAudit],
        _hold: Option<Duration>,
    ) -> Option<Result<(), StoreError>> {
        None
    }
    /// One page of a tenant's audit records with `from <= timestamp <= to`
    /// that match the query's filter, newest first. A filtered page may
    /// hold fewer than `limit` records and still have a `next` cursor: the
    /// store read what one call reads and the caller continues from there.
    async fn audit_events(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;
    /// Every record `query` matches (its limit and cursor aside), newest
    /// first: maintenance reads (verify, export).
    async fn all_audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut query = query.clone();
        query.after = None;
        let mut out = Vec::new();
        loop {
            let page = self.audit_events(&query).await?;
            out.extend(page.events);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

/// A tenant record's version (the HTTP `ETag`): a hash of its content
/// without `usage`, which the service keeps counting and no client writes.
pub fn tenant_version(t: &Tenant) -> String {
    use sha2::{Digest, Sha256};
    let mut owned = t.clone();
    owned.usage = Default::default();
    let bytes = serde_json::to_vec(&owned).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// A document's version, its `ETag`: a hash of the whole record.
pub fn document_version(d: &Document) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(d).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// A change to a tenant's usage counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub documents: i64,
    pub storage_bytes: i64,
    /// Queries to add to `month`'s count.
    pub queries: u64,
    /// `YYYY-MM`; used when `queries` is not zero.
    pub month: String,
}

impl UsageDelta {
    pub fn apply(&self, usage: &mut crate::model::Usage) {
        if self.documents != 0 {
            let n = i64::from(usage.documents).saturating_add(self.documents);
            usage.documents = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        }
        if self.storage_bytes != 0 {
            usage.add_storage(self.storage_bytes);
        }
        if self.queries != 0 {
            let base = u64::from(usage.queries_in(&self.month));
            usage.queries_this_month =
                u32::try_from(base.saturating_add(self.queries)).unwrap_or(u32::MAX);
            usage.month = Some(self.month.clone());
        }
    }
}

/// Which audit records to read.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub tenant: TenantId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Most records in the page.
    pub limit: usize,
    /// Continue after this record (a previous page's `next`).
    pub after: Option<AuditCursor>,
    /// Only the records that match.
    pub filter: AuditFilter,
}

/// Which audit records a query returns: those that match every condition
/// given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The acting user (`userId`).
    pub user: Option<String>,
    /// The action, exactly as recorded.
    pub action: Option<String>,
    /// Decisions with this outcome (`details.decision`); records that are
    /// not decisions never match.
    pub decision: Option<Effect>,
}

impl AuditFilter {
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.action.is_none() && self.decision.is_none()
    }

    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.user
            .as_ref()
            .is_none_or(|u| e.user_id.as_deref() == Some(u))
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self
                .decision
                .is_none_or(|d| e.details["decision"].as_str() == Some(d.as_str()))
    }
}

/// The indexes migration steps build, beyond the tables' own keys
/// (docs/dynamodb.md lists the access patterns each serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// A tenant's audit records by user, by action and (sparse) its
    /// denials, each newest first: the audit-log filters read what they
    /// return.
    AuditFilters,
    /// The same on columns the drain fills from each record, in place of
    /// expressions over its JSON, which the drain parsed every record for
    /// (SQLite; DynamoDB's indexes are on attributes already).
    AuditFilterColumns,
    /// A tenant's soft-deleted documents (sparse): retention reads the
    /// deleted documents, not all of them.
    DeletedDocuments,
}

impl AuditQuery {
    pub fn new(tenant: TenantId, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Self {
        AuditQuery {
            tenant,
            from,
            to,
            limit: limit.max(1),
            after: None,
            filter: AuditFilter::default(),
        }
    }
}

/// One page of audit records, and where the next page starts.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<AuditCursor>,
}

/// A position in a tenant's audit records (time, then event id), opaque to
/// clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor(String);

impl AuditCursor {
    pub(crate) fn of(e: &AuditEvent) -> Self {
        AuditCursor(audit_sort_key(e))
    }

    /// The cursor after a stored sort key (`time#eventId`).
    pub(crate) fn from_key(key: String) -> Self {
        AuditCursor(key)
    }

    /// The sort key the cursor stands after.
    pub(crate) fn key(&self) -> &str {
        &self.0
    }

    /// Text for a client to send back.
    pub fn encode(&self) -> String {
        hex::encode(&self.0)
    }

    pub fn decode(text: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Invalid("invalid page cursor".into());
        let bytes = hex::decode(text).map_err(|_| bad())?;
        let key = String::from_utf8(bytes).map_err(|_| bad())?;
        // `time#eventId`, time in the fixed-width form.
        match key.split_once('#') {
            Some((t, id))
                if !id.is_empty()
                    && DateTime::parse_from_rfc3339(t).is_ok()
                    && t.len() == "2000-01-01T00:00:00.000000Z".len() =>
            {
                Ok(AuditCursor(key))
            }
            _ => Err(bad()),
        }
    }
}

/// The first `limit` of `events` (sorted newest first, at most one more
/// than `limit`) and whether more follow.
pub(crate) fn page_of(mut events: Vec<AuditEvent>, limit: usize) -> AuditPage {
    let more = events.len() > limit;
    events.truncate(limit);
    let next = if more {
        events.last().map(AuditCursor::of)
    } else {
        None
    };
    AuditPage { events, next }
}

/// `time#eventId`: time order, then event id, as text.
pub(crate) fn audit_sort_key(e: &AuditEvent) -> String {
    format!("{}#{}", sortable_time(e.timestamp), e.event_id)
}

/// When a store may delete an audit record: the record's own expiry,
/// never before the compliance floor.
pub(crate) fn audit_expiry(e: &AuditEvent) -> i64 {
    expiry(e.expires_at, e.timestamp)
}

/// A record's `expiresAt`, never before the compliance floor.
fn expiry(expires_at: i64, timestamp: DateTime<Utc>) -> i64 {
    expires_at.max(timestamp.timestamp() + crate::audit::RETENTION_FLOOR_SECS)
}

/// RFC 3339 with fixed width (microseconds, `Z`), so text order is time
/// order.
pub(crate) fn sortable_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A record that changed, so that caches drop their copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Change {
    #[serde(rename_all = "camelCase")]
    Tenant { tenant_id: TenantId },
    #[serde(rename_all = "camelCase")]
    Document {
        tenant_id: TenantId,
        document_id: DocumentId,
    },
}

/// The tenant id of a raw tenant record.
pub(crate) fn raw_tenant_id(record: &serde_json::Value) -> Result<TenantId, StoreError> {
    record
        .get("tenantId")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| StoreError::Invalid("tenant record without tenantId".into()))
        .and_then(|s| TenantId::parse(s).map_err(|e| StoreError::Invalid(e.to_string())))
}

/// An audit record as the writer spooled it: the fields a store keys it
/// by, and its JSON (every field, `hash` included).
#[derive(Debug, Clone)]
pub struct SpooledAudit {
    pub tenant_id: String,
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub expires_at: i64,
    /// The fields the audit-log filters select on: the user, the action and
    /// a decision's effect (`details.decision`, when it is a string).
    pub user_id: Option<String>,
    pub action: String,
    pub decision: Option<String>,
    pub json: Vec<u8>,
}

impl SpooledAudit {
    /// Reads the key and filter fields of a spooled record's JSON (the rest
    /// is skipped, not built).
    pub fn parse(json: Vec<u8>) -> Result<Self, serde_json::Error> {
        use std::borrow::Cow;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Keys<'a> {
            #[serde(borrow)]
            tenant_id: Cow<'a, str>,
            #[serde(borrow)]
            event_id: Cow<'a, str>,
            timestamp: DateTime<Utc>,
            #[serde(default)]
            expires_at: i64,
            #[serde(borrow, default)]
            user_id: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            action: Cow<'a, str>,
            #[serde(default)]
            details: DecisionOf,
        }
        let k: Keys<'_> = serde_json::from_slice(&json)?;
        Ok(SpooledAudit {
            tenant_id: k.tenant_id.into_owned(),
            event_id: k.event_id.into_owned(),
            timestamp: k.timestamp,
            expires_at: k.expires_at,
            user_id: k.user_id.map(Cow::into_owned),
            action: k.action.into_owned(),
            decision: k.details.0,
            json,
        })
    }

    /// A record as the writer would have spooled it.
    pub fn of(e: &AuditEvent) -> Result<Self, StoreError> {
        Ok(SpooledAudit {
            tenant_id: e.tenant_id.clone(),
            event_id: e.event_id.clone(),
            timestamp: e.timestamp,
            expires_at: e.expires_at,
            user_id: e.user_id.clone(),
            action: e.action.clone(),
            decision: e.details["decision"].as_str().map(str::to_string),
            json: serde_json::to_vec(e).map_err(|e| StoreError::Invalid(e.to_string()))?,
        })
    }

    /// When the store may delete it: never before the compliance floor.
    pub fn expiry(&self) -> i64 {
        expiry(self.expires_at, self.timestamp)
    }
}

/// The `decision` of a record's `details`, when `details` is an object and
/// its `decision` a string (as SQLite's `json_extract` would find it);
/// anything else in `details` is skipped, and a `details` of another shape
/// reads as no decision rather than as an unreadable record.
#[derive(Default)]
struct DecisionOf(Option<String>);

/// Whether a map key is `decision`, read without allocating.
struct IsDecision(bool);

impl<'de> serde::Deserialize<'de> for IsDecision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = IsDecision;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<IsDecision, E> {
                Ok(IsDecision(key == "decision"))
            }
        }
        d.deserialize_str(Visit)
    }
}

impl<'de> serde::Deserialize<'de> for DecisionOf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = DecisionOf;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DecisionOf, A::Error> {
                let mut out = None;
                while let Some(IsDecision(is)) = map.next_key()? {
                    if is {
                        out = match map.next_value::<serde_json::Value>()? {
                            serde_json::Value::String(s) => Some(s),
                            _ => None,
                        };
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(DecisionOf(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<DecisionOf, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(DecisionOf(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<DecisionOf, E> {
                Ok(DecisionOf(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<DecisionOf, E> {
                Ok(DecisionOf(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<DecisionOf, E> {
                Ok(DecisionOf(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<DecisionOf, E> {
                Ok(DecisionOf(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<DecisionOf, E> {
                Ok(DecisionOf(None))
            }
            fn visit_unit<E>(self) -> Result<DecisionOf, E> {
                Ok(DecisionOf(None))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A position in the change log; opaque outside its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeCursor(pub String);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub tenants: usize,
    pub documents: usize,
}

/// A DynamoDB store: `dynamodb://PREFIX?region=R&endpoint=URL`. Tables are
/// `PREFIXtenants`, `PREFIXdocuments`, `PREFIXchanges`, `PREFIXaudit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoUrl {
    pub prefix: String,
    pub region: Option<String>,
    /// For DynamoDB Local and other non-AWS endpoints.
    pub endpoint: Option<String>,
}

impl DynamoUrl {
    /// Whether the endpoint is on this machine (DynamoDB Local).
    pub fn is_local(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(crate::aws::is_loopback)
    }
}

/// Where the data lives, as given on the command line: `sqlite:PATH` or
/// `dynamodb://PREFIX?region=R&endpoint=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Dynamo(DynamoUrl),
}

impl FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("dynamodb://") {
            let (prefix, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!("invalid DynamoDB table prefix {prefix:?}"));
            }
            let mut url = DynamoUrl {
                prefix: if prefix.is_empty() {
                    "cedargate-".into()
                } else {
                    prefix.into()
                },
                region: None,
                endpoint: None,
            };
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                match &*k {
                    "region" => url.region = Some(v.into_owned()),
                    "endpoint" => url.endpoint = Some(v.into_owned()),
                    other => return Err(format!("unknown DynamoDB store option {other:?}")),
                }
            }
            return Ok(StoreUrl::Dynamo(url));
        }
        match s.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(StoreUrl::Sqlite(PathBuf::from(path))),
            _ => Err(format!(
                "unsupported store {s:?}: expected sqlite:PATH (e.g. sqlite:cedargate.db) or \
                 dynamodb://PREFIX?region=REGION[&endpoint=URL]"
            )),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Dynamo(d) => {
                write!(f, "dynamodb://{}", d.prefix)?;
                let mut sep = '?';
                for (k, v) in [("region", &d.region), ("endpoint", &d.endpoint)] {
                    if let Some(v) = v {
                        write!(f, "{sep}{k}={v}")?;
                        sep = '&';
                    }
                }
                Ok(())
            }
        }
    }
}

/// Connects to the store a URL names, creating nothing.
pub async fn connect(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreUrl::Dynamo(url) => Arc::new(DynamoStore::connect(url).await?),
    })
}

/// Every tenant, a page at a time, in id order (platform-wide jobs: billing
/// exports, storage samples, retention, finding a billing customer).
pub struct TenantPages<'a> {
    store: &'a dyn Store,
    page: usize,
    after: Option<TenantId>,
    done: bool,
}

impl<'a> TenantPages<'a> {
    pub fn new(store: &'a dyn Store, page: usize) -> Self {
        TenantPages {
            store,
            page,
            after: None,
            done: false,
        }
    }

    /// The next page; none once every tenant was given.
    pub async fn next(&mut self) -> Result<Option<Vec<Tenant>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let (tenants, more) = self
            .store
            .list_tenants(self.after.as_ref(), self.page)
            .await?;
        // An empty page gives no key to continue from: the end.
        self.done = !more || tenants.is_empty();
        self.after = tenants.last().map(|t| t.tenant_id.clone());
        Ok((!tenants.is_empty()).then_some(tenants))
    }
}

/// Connects and makes sure the tables exist.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    let store = connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the drain reads from a spooled record's JSON for the filter
    /// columns is what the record says, as `SpooledAudit::of` takes it from
    /// the event, whatever shape `details` has; an odd `details` never
    /// makes a record unreadable.
    #[test]
    fn spooled_records_give_their_filter_fields() {
        use serde_json::json;
        let cases = [
            (
                json!({"kind": "decision", "decision": "Deny", "errors": [{"decision": "x"}]}),
                Some("Deny"),
                Some("u1"),
            ),
            (json!({"decision": "Allow"}), Some("Allow"), None),
            (
                json!({"kind": "management", "changed": {"decision": "Deny"}}),
                None,
                Some("u2"),
            ),
            (json!({"decision": {"nested": "Deny"}}), None, Some("u3")),
            (json!({"decision": 3}), None, Some("u4")),
            (json!({"decision": null}), None, Some("u5")),
            (json!(null), None, None),
            (json!("Deny"), None, Some("u6")),
            (json!(["decision", "Deny"]), None, Some("u7")),
            (json!(true), None, Some("u8")),
            (json!(1.5), None, Some("u9")),
        ];
        for (details, decision, user) in cases {
            let mut e = AuditEvent::new(
                "e1",
                Utc::now(),
                "t1",
                "Read \"quoted\" ✓",
                "r",
                details.clone(),
            );
            e.user_id = user.map(str::to_string);
            let parsed = SpooledAudit::parse(serde_json::to_vec(&e).unwrap()).unwrap();
            let of = SpooledAudit::of(&e).unwrap();
            for s in [&parsed, &of] {
                assert_eq!(s.decision.as_deref(), decision, "{details}");
                assert_eq!(s.user_id.as_deref(), user, "{details}");
                assert_eq!(s.action, "Read \"quoted\" ✓");
                assert_eq!((s.tenant_id.as_str(), s.event_id.as_str()), ("t1", "e1"));
            }
        }
        // Escaped keys read as what they say, as SQLite's JSON functions
        // read them.
        let escaped = br#"{"tenantId":"t1","eventId":"e1","timestamp":"2026-12-02T10:00:00Z",
            "action":"Re\u0061d","userId":"u\"1","details":{"k\"x":1,"deci\u0073ion":"Deny"}}"#;
        let s = SpooledAudit::parse(escaped.to_vec()).unwrap();
        assert_eq!(
            (
                s.action.as_str(),
                s.user_id.as_deref(),
                s.decision.as_deref()
            ),
            ("Read", Some("u\"1"), Some("Deny"))
        );
    }

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!("sqlite:".parse::<StoreUrl>().is_err());
        let d: StoreUrl = "dynamodb://t1-?region=eu-west-1&endpoint=http://127.0.0.1:8000"
            .parse()
            .unwrap();
        let StoreUrl::Dynamo(ref u) = d else { panic!() };
        assert_eq!(u.prefix, "t1-");
        assert!(u.is_local());
        assert_eq!(
            d.to_string(),
            "dynamodb://t1-?region=eu-west-1&endpoint=http://127.0.0.1:8000"
        );
        assert!("dynamodb://a?colour=red".parse::<StoreUrl>().is_err());
        assert!("dynamodb://a b".parse::<StoreUrl>().is_err());
        assert!("postgres://x".parse::<StoreUrl>().is_err());
    }
}
