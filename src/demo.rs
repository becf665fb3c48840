//! Demo data and example requests for `cedargate demo`: four tenants (an
//! active pro tenant, a basic trial tenant at its quota, a suspended tenant
//! and the platform operators) with a few documents.

use serde_json::{json, Value};

use crate::model::DataSet;

/// The demo data, in the import format (`demo/data.json`).
pub const DATA: &str = include_str!("../demo/data.json");

pub fn data() -> Result<DataSet, serde_json::Error> {
    serde_json::from_str(DATA)
}

/// An example request and what it shows.
pub struct Example {
    pub title: &'static str,
    pub body: Value,
}

/// Requests that show an Allow, a cross-tenant Deny and a quota Deny.
pub fn examples() -> Vec<Example> {
    vec![
        Example {
            title: "Allow: an acme editor reads a document shared with the editor role",
            body: json!({
                "principal": {"id": "dave", "tenant": "acme", "roles": ["editor"], "clearance": 1},
                "action": "Read",
                "resource": {"type": "Document", "id": "q3-report"}
            }),
        },
        Example {
            title: "Deny (tenant isolation): a globex admin asks for acme's usage",
            body: json!({
                "principal": {"id": "eve", "tenant": "globex", "roles": ["admin"], "clearance": 3},
                "action": "ViewUsage",
                "resource": {"type": "Tenant", "id": "acme"}
            }),
        },
        Example {
            title: "Deny (no existence oracle): a globex admin asks for acme's document id",
            body: json!({
                "principal": {"id": "eve", "tenant": "globex", "roles": ["admin"], "clearance": 3},
                "action": "Read",
                "resource": {"type": "Document", "id": "q3-report"}
            }),
        },
        Example {
            title: "Deny (quota): globex is at maxDocuments",
            body: json!({
                "principal": {"id": "eve", "tenant": "globex", "roles": ["admin"], "clearance": 3},
                "action": "CreateDocument",
                "resource": {"type": "Tenant", "id": "globex"},
                "context": {"fileType": "pdf", "sizeBytes": 1024}
            }),
        },
    ]
}
