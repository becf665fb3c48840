//! Audit records: the seed's `AuditEvent` (field names kept) plus, for
//! decisions, what was decided and why; each record is stamped by its writer
//! with a writer id, a sequence number and the hash of the writer's previous
//! record, so deleted, altered and reordered records can be detected
//! ([`verify`]). Records are made durable in a local [`spool`] before they
//! are acknowledged, by the [`writer`], which drains the spool to the store.
//! [`ocsf`] renders records as OCSF events.

mod appender;
pub mod auth;
mod drainer;
pub mod ocsf;
pub mod spool;
pub mod writer;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::authz::entities::{document_uid, tenant_uid};
use crate::authz::{AuthzRequest, Decision, Effect, ResourceRef};

/// One audit record. `details` is a JSON value as records are read back;
/// a decision's record is written with typed details ([`DecisionDetails`]),
/// which serialize to the same canonical bytes without building a JSON tree
/// on the request path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent<D = serde_json::Value> {
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub action: String,
    pub resource: String,
    /// For decisions: decision, determining policies, errors, policy
    /// revision, data age, latency. For management operations: what
    /// changed. Never tokens; context values only when configured.
    pub details: D,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
    pub error_message: Option<String>,
    /// When the record may be deleted (seconds since the epoch): the
    /// store's TTL attribute. Never earlier than the compliance floor.
    #[serde(default)]
    pub expires_at: i64,
    /// The writer (one per sidecar or admin process) and its chain (one per
    /// writer and tenant).
    pub writer_id: String,
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
}

impl<D> AuditEvent<D> {
    /// A record of a successful operation, not yet stamped by a writer
    /// ([`Chain::stamp`]); optional fields are empty.
    pub fn new(
        event_id: impl Into<String>,
        timestamp: DateTime<Utc>,
        tenant_id: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
        details: D,
    ) -> Self {
        AuditEvent {
            event_id: event_id.into(),
            timestamp,
            tenant_id: tenant_id.into(),
            user_id: None,
            action: action.into(),
            resource: resource.into(),
            details,
            ip_address: None,
            user_agent: None,
            success: true,
            error_message: None,
            expires_at: timestamp.timestamp() + RETENTION_FLOOR_SECS,
            writer_id: String::new(),
            seq: 0,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

impl<D: Details> AuditEvent<D> {
    /// The hash of this record over every field but `hash`, chained to
    /// `prev_hash`: SHA-256 of `prev_hash`, a zero byte, and the record's
    /// canonical JSON (fields in declaration order, `details` with its
    /// object keys sorted at every level, so a store that returns map
    /// attributes in another order, as DynamoDB does, hashes the same).
    pub fn compute_hash(&self) -> String {
        let mut buf = Vec::with_capacity(1024);
        self.write_canonical(&mut buf);
        chain_hash(&self.prev_hash, &buf)
    }

    /// Appends the canonical JSON (every field but `hash`).
    fn write_canonical(&self, out: &mut Vec<u8>) {
        let view = Canonical {
            event_id: &self.event_id,
            timestamp: &self.timestamp,
            tenant_id: &self.tenant_id,
            user_id: &self.user_id,
            action: &self.action,
            resource: &self.resource,
            details: self.details.canonical(),
            ip_address: &self.ip_address,
            user_agent: &self.user_agent,
            success: self.success,
            error_message: &self.error_message,
            expires_at: self.expires_at,
            writer_id: &self.writer_id,
            seq: self.seq,
            prev_hash: &self.prev_hash,
        };
        // Serializing plain data into memory cannot fail.
        let _ = serde_json::to_writer(out, &view);
    }
}

/// SHA-256 of the previous hash, a zero byte and a canonical record.
fn chain_hash(prev_hash: &str, canonical: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update([0]);
    h.update(canonical);
    hex::encode(h.finalize())
}

/// What a record's hash covers: every field but `hash`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Canonical<'a, D> {
    event_id: &'a str,
    timestamp: &'a DateTime<Utc>,
    tenant_id: &'a str,
    user_id: &'a Option<String>,
    action: &'a str,
    resource: &'a str,
    details: D,
    ip_address: &'a Option<String>,
    user_agent: &'a Option<String>,
    success: bool,
    error_message: &'a Option<String>,
    expires_at: i64,
    writer_id: &'a str,
    seq: u64,
    prev_hash: &'a str,
}

/// A record's details, as its hash covers them: serialized with every
/// object's keys in sorted order, at every depth.
pub trait Details: Serialize {
    type Canonical<'a>: Serialize
    where
        Self: 'a;
    fn canonical(&self) -> Self::Canonical<'_>;
}

impl Details for serde_json::Value {
    type Canonical<'a> = Sorted<'a>;
    fn canonical(&self) -> Sorted<'_> {
        Sorted(self)
    }
}

/// A JSON value serialized with every object's keys in sorted order.
pub struct Sorted<'a>(&'a serde_json::Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        use serde_json::Value;
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, &Sorted(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Audit records are kept at least this long (the compliance floor: 7
/// years, counted generously).
pub const RETENTION_FLOOR_SECS: i64 = 7 * 365 * 24 * 3600 + 2 * 24 * 3600;

/// The end of a writer's chain for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    next_seq: u64,
    last_hash: String,
    last_time: DateTime<Utc>,
    /// The [`Undo`] that saved this head last (0: none), so a batch saves
    /// each tenant's head once, not once a record.
    saved_by: u64,
}

/// A writer's hash chains, one per tenant, so that one tenant's records
/// verify on their own.
#[derive(Debug, Clone)]
pub struct Chains {
    writer_id: String,
    heads: HashMap<String, Head>,
}

/// What [`Chains::stamp`] changed, to be undone if the records are not
/// written after all: each tenant's head as it was before the first stamp
/// made with this `Undo`.
#[derive(Debug)]
pub struct Undo {
    id: u64,
    saved: Vec<(String, Option<Head>)>,
}

impl Default for Undo {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Undo {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            saved: Vec::new(),
        }
    }
}

impl Chains {
    pub fn new(writer_id: impl Into<String>) -> Self {
        Chains {
            writer_id: writer_id.into(),
            heads: HashMap::new(),
        }
    }

    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// Stamps `event` as this writer's next record of its tenant. A
    /// timestamp earlier than the chain's last (requests decided in one
    /// order, queued in another) is raised to it, so time order and chain
    /// order agree.
    pub fn stamp<D: Details>(&mut self, event: &mut AuditEvent<D>, undo: &mut Undo) {
        let mut scratch = Vec::new();
        self.stamp_json(event, undo, &mut scratch);
    }

    /// [`Chains::stamp`], and the stamped record's JSON appended to `out`:
    /// its canonical JSON with `hash` added, so the record is serialized
    /// once for both its hash and its spool frame (and the store keeps
    /// those bytes).
    pub fn stamp_json<D: Details>(
        &mut self,
        event: &mut AuditEvent<D>,
        undo: &mut Undo,
        out: &mut Vec<u8>,
    ) {
        let head = match self.heads.get_mut(&event.tenant_id) {
            Some(h) => {
                if h.saved_by != undo.id {
                    undo.saved.push((event.tenant_id.clone(), Some(h.clone())));
                    h.saved_by = undo.id;
                }
                h
            }
            None => {
                undo.saved.push((event.tenant_id.clone(), None));
                self.heads.entry(event.tenant_id.clone()).or_insert(Head {
                    next_seq: 0,
                    last_hash: String::new(),
                    last_time: event.timestamp,
                    saved_by: undo.id,
                })
            }
        };
        event.timestamp = event.timestamp.max(head.last_time);
        // A raised timestamp must not end up before the retention floor:
        // the store would raise `expiresAt` and so alter the record.
        event.expires_at = event
            .expires_at
            .max(event.timestamp.timestamp() + RETENTION_FLOOR_SECS);
        event.writer_id = self.writer_id.clone();
        event.seq = head.next_seq;
        event.prev_hash = std::mem::take(&mut head.last_hash);
        let start = out.len();
        event.write_canonical(out);
        event.hash = chain_hash(&event.prev_hash, &out[start..]);
        // `{…}` becomes `{…,"hash":"…"}`.
        out.pop();
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(event.hash.as_bytes());
        out.extend_from_slice(b"\"}");
        head.next_seq += 1;
        head.last_hash = event.hash.clone();
        head.last_time = event.timestamp;
    }

    /// Puts the chains back as they were before the stamps `undo` recorded.
    pub fn undo(&mut self, undo: Undo) {
        for (tenant, head) in undo.saved.into_iter().rev() {
            match head {
                Some(h) => {
                    self.heads.insert(tenant, h);
                }
                None => {
                    self.heads.remove(&tenant);
                }
            }
        }
    }
}

/// Where a request came from, as far as the sidecar can tell.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// The caller's `x-request-id`, for joining with application logs.
    pub request_id: Option<String>,
}

/// Largest context value (as JSON text) a record keeps.
const MAX_CONTEXT_VALUE: usize = 1024;

/// Longest header value copied into a record.
const MAX_META: usize = 256;

impl RequestMeta {
    /// Keeps a header value if it is printable and not too long.
    pub fn clean(value: &str) -> Option<String> {
        let v = value.trim();
        (!v.is_empty() && v.len() <= MAX_META && v.chars().all(|c| !c.is_control()))
            .then(|| v.to_string())
    }
}

/// What a decision record says besides the request and the decision.
pub struct DecisionFacts<'a> {
    /// Which interface asked: `authorize`, `batch`, `forward-auth`, ….
    pub source: &'static str,
    pub latency: std::time::Duration,
    pub meta: &'a RequestMeta,
    /// Context keys whose values may be recorded (the rest are left out).
    pub context_keys: &'a [String],
    /// More to record, e.g. the original method and path of forward-auth.
    pub extra: Option<serde_json::Value>,
}

/// What a decision's record says in `details`, typed: built on the request
/// path without a JSON tree (one allocation per string, none per key), and
/// serialized by the appender straight into the canonical form. Fields are
/// declared in the sorted order of their JSON names, so serializing the
/// struct gives exactly the bytes [`Sorted`] gives for the same record read
/// back as JSON (a test holds the two together); nested values (`context`,
/// `request`) go through [`Sorted`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionDetails {
    clearance: u8,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "sorted")]
    context: Option<serde_json::Value>,
    data_age_ms: u64,
    decision: Effect,
    determining_policies: Vec<String>,
    errors: Vec<String>,
    kind: DecisionKind,
    latency_us: u64,
    policy_revision: std::sync::Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<crate::authz::DenyReason>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "sorted")]
    request: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    roles: Vec<crate::ids::RoleName>,
    source: &'static str,
}

/// `details.kind` of a decision record.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum DecisionKind {
    Decision,
}

fn sorted<S: serde::Serializer>(v: &Option<serde_json::Value>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => Sorted(v).serialize(s),
        None => s.serialize_none(),
    }
}

impl Details for DecisionDetails {
    type Canonical<'a> = &'a DecisionDetails;
    fn canonical(&self) -> &DecisionDetails {
        self
    }
}

/// The audit record of one decision. The event id is the decision id.
/// Tokens are never part of a request, so never part of a record.
pub fn decision_event(
    req: &AuthzRequest,
    d: &Decision,
    facts: DecisionFacts<'_>,
) -> AuditEvent<DecisionDetails> {
    let p = &req.principal;
    let resource = match &req.resource {
        ResourceRef::Document(id) => document_uid(id).to_string(),
        ResourceRef::Tenant(id) => tenant_uid(id).to_string(),
    };
    let context = match (req.context.as_object(), facts.context_keys.is_empty()) {
        (Some(ctx), false) => {
            let kept: serde_json::Map<String, serde_json::Value> = ctx
                .iter()
                .filter(|(k, _)| facts.context_keys.iter().any(|c| c == *k))
                .map(|(k, v)| {
                    // A record stays small (a DynamoDB item holds 400 KB).
                    let size = v.to_string().len();
                    let v = if size > MAX_CONTEXT_VALUE {
                        format!("<omitted: {size} bytes>").into()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect();
            (!kept.is_empty()).then_some(serde_json::Value::Object(kept))
        }
        _ => None,
    };
    let details = DecisionDetails {
        clearance: p.clearance.get(),
        context,
        data_age_ms: d.data_age_ms,
        decision: d.decision,
        determining_policies: d.determining_policies.clone(),
        errors: d.errors.clone(),
        kind: DecisionKind::Decision,
        latency_us: u64::try_from(facts.latency.as_micros()).unwrap_or(u64::MAX),
        policy_revision: d.policy_revision.clone(),
        reason: d.reason,
        request: facts.extra,
        request_id: facts.meta.request_id.clone(),
        roles: p.roles.clone(),
        source: facts.source,
    };
    let mut e = AuditEvent::new(
        d.decision_id.clone(),
        Utc::now(),
        p.tenant.as_str(),
        req.action.clone(),
        resource,
        details,
    );
    e.user_id = Some(p.id.as_str().to_string());
    e.ip_address = facts.meta.ip_address.clone();
    e.user_agent = facts.meta.user_agent.clone();
    e.success = d.decision == Effect::Allow;
    e.error_message = d.reason.map(|r| r.as_str().to_string());
    e
}

/// The tenant id of records about the platform rather than one tenant
/// (migrations, imports that name no tenant). Tenant ids starting with `_`
/// are reserved.
pub const PLATFORM_TENANT: &str = "_platform";

/// Who made a management change.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The caller's user id (a token's `sub`); none for the command line.
    pub user_id: Option<String>,
    pub meta: RequestMeta,
    /// `cli`, `api` or `schedule`.
    pub via: &'static str,
}

impl Actor {
    /// The service itself, running a scheduled job (`system:<job>`).
    pub fn scheduled(job: &str) -> Self {
        Actor {
            user_id: Some(format!("system:{job}")),
            meta: RequestMeta {
                user_agent: Some(format!("cedargate-admin/{}", env!("CARGO_PKG_VERSION"))),
                ..RequestMeta::default()
            },
            via: "schedule",
        }
    }

    /// The person running `cedargate-admin` on this machine (`os:<login>`).
    pub fn command_line() -> Self {
        Actor {
            user_id: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .ok()
                .and_then(|u| RequestMeta::clean(&u))
                .map(|u| format!("os:{u}")),
            meta: RequestMeta {
                user_agent: Some(format!("cedargate-admin/{}", env!("CARGO_PKG_VERSION"))),
                ..RequestMeta::default()
            },
            via: "cli",
        }
    }
}

/// The record of one management operation, successful or not.
pub fn management_event(
    tenant: &str,
    action: &str,
    resource: &str,
    mut details: serde_json::Value,
    actor: &Actor,
    outcome: Result<(), String>,
) -> AuditEvent {
    if let Some(map) = details.as_object_mut() {
        map.insert("kind".into(), "management".into());
        map.insert("via".into(), actor.via.into());
        if let Some(id) = &actor.meta.request_id {
            map.insert("requestId".into(), id.as_str().into());
        }
    }
    let mut e = AuditEvent::new(
        uuid::Uuid::now_v7().to_string(),
        Utc::now(),
        tenant,
        action,
        resource,
        details,
    );
    e.user_id = actor.user_id.clone();
    e.ip_address = actor.meta.ip_address.clone();
    e.user_agent = actor.meta.user_agent.clone();
    if let Err(message) = outcome {
        e.success = false;
        e.error_message = Some(message);
    }
    e
}

/// Something wrong with a set of audit records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// Records `from..to` of a writer are missing.
    Gap {
        writer_id: String,
        from: u64,
        to: u64,
    },
    /// A record's content does not match its hash.
    Altered {
        writer_id: String,
        seq: u64,
        event_id: String,
    },
    /// A record does not follow the one before it in its writer's chain.
    BrokenLink {
        writer_id: String,
        seq: u64,
        event_id: String,
    },
    /// A record's timestamp is earlier than its predecessor's.
    Reordered {
        writer_id: String,
        seq: u64,
        event_id: String,
    },
    /// Two records claim the same place in a chain.
    Duplicate { writer_id: String, seq: u64 },
}

/// Checks records (any order, any writers and tenants; typically one
/// tenant's records in a time range). A range may start or end in the
/// middle of a chain, so only what lies inside it is checked.
pub fn verify(records: &[AuditEvent]) -> Vec<Finding> {
    let mut by_chain: BTreeMap<(&str, &str), Vec<&AuditEvent>> = BTreeMap::new();
    for r in records {
        by_chain
            .entry((r.writer_id.as_str(), r.tenant_id.as_str()))
            .or_default()
            .push(r);
    }
    let mut findings = Vec::new();
    for ((writer, _tenant), mut chain) in by_chain {
        chain.sort_by_key(|r| r.seq);
        let w = || writer.to_string();
        for (i, r) in chain.iter().enumerate() {
            if r.compute_hash() != r.hash {
                findings.push(Finding::Altered {
                    writer_id: w(),
                    seq: r.seq,
                    event_id: r.event_id.clone(),
                });
            }
            let Some(prev) = i.checked_sub(1).map(|j| chain[j]) else {
                continue;
            };
            if prev.seq == r.seq {
                findings.push(Finding::Duplicate {
                    writer_id: w(),
                    seq: r.seq,
                });
                continue;
            }
            if r.seq > prev.seq + 1 {
                findings.push(Finding::Gap {
                    writer_id: w(),
                    from: prev.seq + 1,
                    to: r.seq - 1,
                });
            } else if r.prev_hash != prev.hash {
                findings.push(Finding::BrokenLink {
                    writer_id: w(),
                    seq: r.seq,
                    event_id: r.event_id.clone(),
                });
            }
            if r.timestamp < prev.timestamp {
                findings.push(Finding::Reordered {
                    writer_id: w(),
                    seq: r.seq,
                    event_id: r.event_id.clone(),
                });
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(n: usize) -> Vec<AuditEvent> {
        let mut chain = Chains::new("sidecar-a");
        let start = Utc::now();
        (0..n)
            .map(|i| {
                let mut e = AuditEvent::new(
                    format!("e{i}"),
                    start + chrono::Duration::milliseconds(i as i64),
                    "t1",
                    "Read",
                    "Document::\"d\"",
                    serde_json::json!({"decision": "Allow"}),
                );
                e.user_id = Some("alice".into());
                chain.stamp(&mut e, &mut Undo::default());
                e
            })
            .collect()
    }

    #[test]
    fn the_hash_ignores_map_key_order() {
        let mut a = chain_of(1).remove(0);
        a.details = serde_json::json!({"x": 1, "y": {"b": 2, "a": 1}});
        let mut b = a.clone();
        let mut inner = serde_json::Map::new();
        inner.insert("a".into(), 1.into());
        inner.insert("b".into(), 2.into());
        let mut outer = serde_json::Map::new();
        outer.insert("y".into(), serde_json::Value::Object(inner));
        outer.insert("x".into(), 1.into());
        b.details = serde_json::Value::Object(outer);
        assert_eq!(a.compute_hash(), b.compute_hash());
        b.details["x"] = 2.into();
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    /// The bytes a writer spools are the stamped record itself: they read
    /// back as the event, whose hash they carry and verify.
    #[test]
    fn a_record_is_serialized_once_for_its_hash_and_its_spool() {
        let mut chains = Chains::new("w");
        let mut spooled = Vec::new();
        let mut events = Vec::new();
        for i in 0..3 {
            let mut e = AuditEvent::new(
                format!("e{i}"),
                Utc::now(),
                "t1",
                "Read",
                "CedarGate::Document::\"d\"",
                serde_json::json!({"z": [1, {"b": "x\"y", "a": null}], "a": i}),
            );
            e.user_agent = Some("ua/1 \u{e9}".into());
            let mut buf = Vec::new();
            chains.stamp_json(&mut e, &mut Undo::default(), &mut buf);
            let back: AuditEvent = serde_json::from_slice(&buf).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.compute_hash(), e.hash);
            spooled.push(back);
            events.push(e);
        }
        assert!(verify(&spooled).is_empty());
        // The same chain as stamping without the bytes.
        let mut again = Chains::new("w");
        for (mut e, s) in events.clone().into_iter().zip(&spooled) {
            e.hash.clear();
            e.prev_hash.clear();
            again.stamp(&mut e, &mut Undo::default());
            assert_eq!(e.hash, s.hash);
        }
    }

    /// A decision's typed details serialize to the canonical form of the
    /// same record read back as JSON: its hash verifies from what a store
    /// returns (keys in any order), and its fields are the record format's.
    #[test]
    fn typed_decision_details_are_the_canonical_json() {
        use crate::authz::entities::Principal;
        use crate::authz::DenyReason;
        use crate::ids::{DocumentId, RoleName, TenantId, UserId};
        let request = |context: serde_json::Value| AuthzRequest {
            principal: Principal {
                id: UserId::parse("dave").unwrap(),
                tenant: TenantId::parse("acme").unwrap(),
                roles: vec![
                    RoleName::parse("viewer").unwrap(),
                    RoleName::parse("editor").unwrap(),
                ],
                clearance: crate::model::Level::new(2).unwrap(),
            },
            action: "Read".into(),
            resource: ResourceRef::Document(DocumentId::parse("q3-report").unwrap()),
            context,
        };
        let decision = |effect, reason, policies: &[&str], errors: &[&str]| Decision {
            decision: effect,
            decision_id: "dec-1".into(),
            determining_policies: policies.iter().map(|p| p.to_string()).collect(),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            policy_revision: "sha256:abc".into(),
            data_age_ms: 17,
            reason,
            message: Some("not shown in records".into()),
        };
        let keys = vec!["mfa".to_string(), "zone".to_string(), "big".to_string()];
        let meta = RequestMeta {
            ip_address: Some("203.0.113.9".into()),
            user_agent: Some("ua \u{e9}\"x".into()),
            request_id: Some("req-\u{2603}".into()),
        };
        let none = RequestMeta::default();
        let context = serde_json::json!({
            "zone": {"z": 1, "a": [{"y": true, "b": null}]},
            "mfa": true,
            "other": "left out",
            "big": "x".repeat(2000),
        });
        let extra =
            serde_json::json!({"path": "/d?q=\"1\"", "method": "GET", "h": {"b": 1, "a": 2}});
        let cases = [
            (
                request(context.clone()),
                decision(Effect::Allow, None, &["p1", "p0"], &[]),
                &meta,
                keys.as_slice(),
                Some(extra.clone()),
            ),
            (
                request(context),
                decision(
                    Effect::Deny,
                    Some(DenyReason::Forbidden),
                    &["tenant-isolation"],
                    &["e: \"x\""],
                ),
                &none,
                &[][..],
                None,
            ),
            (
                request(serde_json::Value::Null),
                decision(Effect::Deny, Some(DenyReason::NoPermit), &[], &[]),
                &meta,
                keys.as_slice(),
                None,
            ),
        ];
        let mut chains = Chains::new("w");
        let mut back = Vec::new();
        for (req, d, meta, context_keys, extra) in cases {
            let facts = DecisionFacts {
                source: "forward-auth",
                latency: std::time::Duration::from_micros(42),
                meta,
                context_keys,
                extra,
            };
            let mut e = decision_event(&req, &d, facts);
            let mut buf = Vec::new();
            chains.stamp_json(&mut e, &mut Undo::default(), &mut buf);
            let read: AuditEvent = serde_json::from_slice(&buf).unwrap();
            assert_eq!(
                read.compute_hash(),
                e.hash,
                "{}",
                String::from_utf8_lossy(&buf)
            );
            back.push(read);
        }
        assert!(verify(&back).is_empty());

        let mut expected = serde_json::json!({
            "kind": "decision",
            "source": "forward-auth",
            "decision": "Allow",
            "determiningPolicies": ["p1", "p0"],
            "errors": [],
            "policyRevision": "sha256:abc",
            "dataAgeMs": 17,
            "latencyUs": 42,
            "roles": ["viewer", "editor"],
            "clearance": 2,
            "requestId": "req-\u{2603}",
            "context": {"mfa": true, "zone": {"a": [{"b": null, "y": true}], "z": 1}, "big": "<omitted: 2002 bytes>"},
            "request": extra,
        });
        assert_eq!(back[0].details, expected);
        assert_eq!(
            (
                back[0].success,
                back[0].error_message.as_deref(),
                back[0].ip_address.as_deref()
            ),
            (true, None, Some("203.0.113.9"))
        );
        for key in ["requestId", "context", "request"] {
            expected.as_object_mut().unwrap().remove(key);
        }
        expected["decision"] = "Deny".into();
        expected["reason"] = "forbidden".into();
        expected["determiningPolicies"] = serde_json::json!(["tenant-isolation"]);
        expected["errors"] = serde_json::json!(["e: \"x\""]);
        assert_eq!(back[1].details, expected);
        assert_eq!(
            (
                back[1].success,
                back[1].error_message.as_deref(),
                back[1].user_agent.as_deref()
            ),
            (false, Some("forbidden"), None)
        );
        // Context that is not an object keeps nothing.
        assert!(back[2].details.get("context").is_none());
        assert_eq!(back[2].details["reason"], "no_permit");
    }

    #[test]
    fn chains_are_per_tenant_and_stamps_can_be_undone() {
        let mut chains = Chains::new("w");
        let t0 = Utc::now();
        let mk = |tenant: &str, ms: i64| {
            AuditEvent::new(
                "e",
                t0 + chrono::Duration::milliseconds(ms),
                tenant,
                "Read",
                "r",
                serde_json::json!({}),
            )
        };
        let mut undo = Undo::default();
        let (mut a, mut b, mut c) = (mk("t1", 5), mk("t2", 0), mk("t1", 1));
        chains.stamp(&mut a, &mut undo);
        chains.stamp(&mut b, &mut undo);
        chains.stamp(&mut c, &mut undo);
        assert_eq!((a.seq, b.seq, c.seq), (0, 0, 1));
        assert_eq!(c.prev_hash, a.hash);
        // Queued after a later decision: its time is raised to keep order.
        assert_eq!(c.timestamp, a.timestamp);
        // Raised across a second boundary, its expiry still meets the floor,
        // so the store keeps the record's own value.
        let mut late = AuditEvent::new(
            "late",
            t0 + chrono::Duration::seconds(5),
            "t3",
            "Read",
            "r",
            serde_json::json!({}),
        );
        chains.stamp(&mut late, &mut Undo::default());
        let mut early = AuditEvent::new("early", t0, "t3", "Read", "r", serde_json::json!({}));
        chains.stamp(&mut early, &mut Undo::default());
        assert_eq!(early.timestamp, late.timestamp);
        assert_eq!(crate::store::audit_expiry(&early), early.expires_at);
        assert_eq!(early.compute_hash(), early.hash);
        assert!(verify(&[a.clone(), b.clone(), c.clone()]).is_empty());
        // A batch that was not written is undone: the next stamp reuses
        // its places.
        let mut undo = Undo::default();
        let (mut d, mut d2, mut n) = (mk("t1", 9), mk("t1", 9), mk("t4", 9));
        chains.stamp(&mut d, &mut undo);
        chains.stamp(&mut n, &mut undo);
        chains.stamp(&mut d2, &mut undo);
        assert_eq!((d.seq, d2.seq, n.seq), (2, 3, 0));
        // Each tenant's head is saved once, as it was before the batch.
        assert_eq!(undo.saved.len(), 2);
        chains.undo(undo);
        let mut e = mk("t1", 10);
        chains.stamp(&mut e, &mut Undo::default());
        assert_eq!(e.seq, 2);
        assert_eq!(e.prev_hash, c.hash);
        let mut n = mk("t4", 10);
        chains.stamp(&mut n, &mut Undo::default());
        assert_eq!((n.seq, n.prev_hash.as_str()), (0, ""));
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert!(verify(&chain_of(10)).is_empty());
        // A window in the middle of a chain verifies too.
        assert!(verify(&chain_of(10)[3..7]).is_empty());
    }

    #[test]
    fn deleted_modified_and_reordered_records_are_found() {
        let mut deleted = chain_of(10);
        deleted.remove(4);
        assert_eq!(
            verify(&deleted),
            vec![Finding::Gap {
                writer_id: "sidecar-a".into(),
                from: 4,
                to: 4
            }]
        );

        let mut modified = chain_of(10);
        modified[6].details = serde_json::json!({"decision": "Deny"});
        assert_eq!(
            verify(&modified),
            vec![Finding::Altered {
                writer_id: "sidecar-a".into(),
                seq: 6,
                event_id: "e6".into()
            }]
        );

        // Swapping two records' places (seq and link rewritten to hide it)
        // still breaks the hashes and the time order.
        let mut swapped = chain_of(10);
        let (a, b) = (swapped[2].clone(), swapped[3].clone());
        swapped[2] = AuditEvent {
            seq: 2,
            prev_hash: a.prev_hash.clone(),
            ..b.clone()
        };
        swapped[3] = AuditEvent {
            seq: 3,
            prev_hash: b.prev_hash.clone(),
            ..a.clone()
        };
        let found = verify(&swapped);
        assert!(
            found
                .iter()
                .any(|f| matches!(f, Finding::Altered { seq: 2, .. })),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|f| matches!(f, Finding::Reordered { seq: 3, .. })),
            "{found:?}"
        );

        let mut duplicated = chain_of(5);
        duplicated.push(duplicated[2].clone());
        assert!(verify(&duplicated).contains(&Finding::Duplicate {
            writer_id: "sidecar-a".into(),
            seq: 2
        }));
    }
}
