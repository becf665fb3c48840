//! The export format: one tenant's data as NDJSON — the tenant record, its
//! own policies, its documents with their ACLs, its audit records — and a final manifest line
//! with the counts and the SHA-256 of every line before it. `cedargate-admin
//! import` reads it back and refuses a file whose manifest is missing or
//! does not match (truncated or altered).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use crate::audit::AuditEvent;
use crate::model::{DataSet, Document, Tenant};
use crate::policy::tenant::TenantPolicy;
use crate::store::{AuditQuery, Store};

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    Tenant {
        record: Box<Tenant>,
    },
    Document {
        record: Box<Document>,
    },
    Policy {
        record: Box<TenantPolicy>,
    },
    Audit {
        record: Box<AuditEvent>,
    },
    Manifest(Manifest),
    /// The export failed part-way; no manifest follows.
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub tenants: u64,
    pub documents: u64,
    pub audit: u64,
    /// Tenant policies (absent in exports made before there were any).
    #[serde(default)]
    pub policies: u64,
    /// SHA-256 (hex) of every byte before the manifest line.
    pub sha256: String,
}

/// Writes export lines, counting and hashing them.
#[derive(Default)]
pub struct Writer {
    hash: Sha256,
    tenants: u64,
    documents: u64,
    audit: u64,
    policies: u64,
}

impl Writer {
    /// The bytes of one line (newline included).
    pub fn line(&mut self, line: &Line) -> Bytes {
        let mut bytes = serde_json::to_vec(line).unwrap_or_default();
        bytes.push(b'\n');
        self.hash.update(&bytes);
        match line {
            Line::Tenant { .. } => self.tenants += 1,
            Line::Document { .. } => self.documents += 1,
            Line::Audit { .. } => self.audit += 1,
            Line::Policy { .. } => self.policies += 1,
            Line::Manifest(_) | Line::Error { .. } => {}
        }
        Bytes::from(bytes)
    }

    /// The manifest of the lines so far.
    pub fn manifest(self) -> Manifest {
        Manifest {
            tenants: self.tenants,
            documents: self.documents,
            audit: self.audit,
            policies: self.policies,
            sha256: hex::encode(self.hash.finalize()),
        }
    }

    /// The closing manifest line.
    pub fn finish(self) -> Bytes {
        manifest_line(&self.manifest())
    }
}

fn manifest_line(m: &Manifest) -> Bytes {
    let mut bytes = serde_json::to_vec(&Line::Manifest(m.clone())).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Sends `tenant`'s export on `tx`, line by line: the tenant record, its
/// documents, its audit records, then the manifest — or, if a read fails
/// part-way, an error line and no manifest. Returns the manifest, or why
/// there is none.
pub async fn produce(
    store: Arc<dyn Store>,
    tenant: Tenant,
    tx: Sender<Bytes>,
) -> Result<Manifest, String> {
    let mut w = Writer::default();
    let id = tenant.tenant_id.clone();
    let result: Result<(), String> = async {
        let send = |b| {
            let tx = tx.clone();
            async move {
                tx.send(b)
                    .await
                    .map_err(|_| "the reader went away".to_string())
            }
        };
        send(w.line(&Line::Tenant {
            record: Box::new(tenant),
        }))
        .await?;
        for p in store
            .tenant_policies(&id)
            .await
            .map_err(|e| e.to_string())?
        {
            send(w.line(&Line::Policy {
                record: Box::new(p),
            }))
            .await?;
        }
        let mut after = None;
        loop {
            let (docs, more) = store
                .documents_of(&id, after.as_ref(), 500)
                .await
                .map_err(|e| e.to_string())?;
            after = docs.last().map(|d| d.document_id.clone());
            for d in docs {
                send(w.line(&Line::Document {
                    record: Box::new(d),
                }))
                .await?;
            }
            if !more {
                break;
            }
        }
        let mut q = AuditQuery::new(
            id.clone(),
            DateTime::<Utc>::UNIX_EPOCH,
            Utc::now() + chrono::Duration::days(1),
            1000,
        );
        loop {
            let page = store.audit_events(&q).await.map_err(|e| e.to_string())?;
            for e in page.events {
                send(w.line(&Line::Audit {
                    record: Box::new(e),
                }))
                .await?;
            }
            match page.next {
                Some(n) => q.after = Some(n),
                None => break,
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let manifest = w.manifest();
            tx.send(manifest_line(&manifest))
                .await
                .map_err(|_| "the reader went away".to_string())?;
            Ok(manifest)
        }
        Err(message) => {
            tracing::warn!(tenant = %id, error = %message, "export failed part-way");
            let _ = tx
                .send(w.line(&Line::Error {
                    message: message.clone(),
                }))
                .await;
            Err(message)
        }
    }
}

/// What an export holds.
#[derive(Debug, Default)]
pub struct Imported {
    pub data: DataSet,
    pub audit: Vec<AuditEvent>,
}

/// Whether `text` looks like an export (rather than a `DataSet` file).
pub fn is_export(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|l| serde_json::from_str::<Line>(l).ok())
        .is_some()
}

/// Reads an export, checking its manifest.
pub fn read(text: &str) -> Result<Imported, String> {
    let mut out = Imported::default();
    let mut hash = Sha256::new();
    let mut at = 0usize;
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let line: Line =
            serde_json::from_str(raw.trim_end()).map_err(|e| format!("line {}: {e}", n + 1))?;
        match line {
            Line::Tenant { record } => out.data.tenants.push(*record),
            Line::Document { record } => out.data.documents.push(*record),
            Line::Policy { record } => out.data.policies.push(*record),
            Line::Audit { record } => out.audit.push(*record),
            Line::Error { message } => return Err(format!("the export failed: {message}")),
            Line::Manifest(m) => {
                let rest = &text[at + raw.len()..];
                if !rest.trim().is_empty() {
                    return Err(format!("line {}: data after the manifest", n + 1));
                }
                let digest = hex::encode(hash.finalize());
                let counts = (
                    out.data.tenants.len() as u64,
                    out.data.documents.len() as u64,
                    out.audit.len() as u64,
                    out.data.policies.len() as u64,
                );
                if digest != m.sha256 || counts != (m.tenants, m.documents, m.audit, m.policies) {
                    return Err(
                        "the manifest does not match the file (altered or truncated)".into(),
                    );
                }
                return Ok(out);
            }
        }
        hash.update(raw.as_bytes());
        at += raw.len();
    }
    Err("no manifest: the export is incomplete".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let data: DataSet = serde_json::from_str(crate::demo::DATA).unwrap();
        let mut w = Writer::default();
        let mut text = Vec::new();
        text.extend_from_slice(&w.line(&Line::Tenant {
            record: Box::new(data.tenants[0].clone()),
        }));
        for d in data
            .documents
            .iter()
            .filter(|d| d.tenant_id == data.tenants[0].tenant_id)
        {
            text.extend_from_slice(&w.line(&Line::Document {
                record: Box::new(d.clone()),
            }));
        }
        text.extend_from_slice(&w.finish());
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn an_export_reads_back_and_a_changed_one_does_not() {
        let text = sample();
        assert!(is_export(&text));
        let got = read(&text).unwrap();
        assert_eq!(got.data.tenants.len(), 1);
        assert!(!got.data.documents.is_empty());
        // Truncated: no manifest.
        let cut = text.rfind("{\"type\":\"manifest\"").unwrap();
        assert!(read(&text[..cut]).unwrap_err().contains("no manifest"));
        // A line dropped.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(1);
        assert!(read(&(lines.join("\n") + "\n")).is_err());
        // A value changed.
        let altered = text.replacen("\"private\"", "\"public\"", 1);
        assert_ne!(altered, text);
        assert!(read(&altered).unwrap_err().contains("does not match"));
    }
}
