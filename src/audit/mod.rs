//! Audit records: the seed's `AuditEvent` (field names kept) plus, for
//! decisions, what was decided and why; each record is stamped by its writer
//! with a writer id, a sequence number and the hash of the writer's previous
//! record, so deleted, altered and reordered records can be detected
//! ([`verify`]). Records are made durable in a local [`spool`] before they
//! are acknowledged.

pub mod spool;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub action: String,
    pub resource: String,
    /// For decisions: decision, determining policies, errors, policy
    /// revision, data age, latency. For management operations: what
    /// changed. Never tokens; context values only when configured.
    pub details: serde_json::Value,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
    pub error_message: Option<String>,
    /// The writer (one per sidecar or admin process) and its chain.
    pub writer_id: String,
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// A record of a successful operation, not yet stamped by a writer
    /// ([`Chain::stamp`]); optional fields are empty.
    pub fn new(
        event_id: impl Into<String>,
        timestamp: DateTime<Utc>,
        tenant_id: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
        details: serde_json::Value,
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
            writer_id: String::new(),
            seq: 0,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The hash of this record over every field but `hash`, chained to
    /// `prev_hash`.
    pub fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = String::new();
        // Canonical form: object keys sorted at every level, so a store that
        // returns map attributes in another order (DynamoDB) hashes the same.
        let value = serde_json::to_value(&unhashed).unwrap_or_default();
        let body = serde_json::to_vec(&canonical(value)).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update([0]);
        h.update(&body);
        hex::encode(h.finalize())
    }
}

/// `value` with every object's keys in sorted order.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// A writer's position in its hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub writer_id: String,
    pub next_seq: u64,
    pub last_hash: String,
}

impl Chain {
    pub fn new(writer_id: impl Into<String>) -> Self {
        Chain {
            writer_id: writer_id.into(),
            next_seq: 0,
            last_hash: String::new(),
        }
    }

    /// Stamps `event` as this writer's next record.
    pub fn stamp(&mut self, event: &mut AuditEvent) {
        event.writer_id = self.writer_id.clone();
        event.seq = self.next_seq;
        event.prev_hash = self.last_hash.clone();
        event.hash = event.compute_hash();
        self.next_seq += 1;
        self.last_hash = event.hash.clone();
    }
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

/// Checks records (any order, any writers; typically one tenant's records
/// in a time range). A range may start or end in the middle of a chain, so
/// only what lies inside it is checked.
pub fn verify(records: &[AuditEvent]) -> Vec<Finding> {
    let mut by_writer: BTreeMap<&str, Vec<&AuditEvent>> = BTreeMap::new();
    for r in records {
        by_writer.entry(r.writer_id.as_str()).or_default().push(r);
    }
    let mut findings = Vec::new();
    for (writer, mut chain) in by_writer {
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
        let mut chain = Chain::new("sidecar-a");
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
                chain.stamp(&mut e);
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
