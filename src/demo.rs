//! Demo data and example requests for `cedargate demo`: four tenants (an
//! active pro tenant, a basic trial tenant at its quota, a suspended tenant
//! and the platform operators) with a few documents, and the users who ask.

use serde_json::{json, Value};

use crate::model::DataSet;

/// The demo data, in the import format (`demo/data.json`).
pub const DATA: &str = include_str!("../demo/data.json");

pub fn data() -> Result<DataSet, serde_json::Error> {
    serde_json::from_str(DATA)
}

/// A demo user: the claims their token carries.
pub struct User {
    pub sub: &'static str,
    pub tenant: &'static str,
    pub groups: &'static [&'static str],
    pub clearance: u8,
}

pub const DAVE: User = User {
    sub: "dave",
    tenant: "acme",
    groups: &["editor"],
    clearance: 1,
};

pub const EVE: User = User {
    sub: "eve",
    tenant: "globex",
    groups: &["admin"],
    clearance: 3,
};

/// An example request and what it shows.
pub struct Example {
    pub title: &'static str,
    pub user: &'static User,
    pub body: Value,
}

/// Requests that show an Allow, cross-tenant Denies and a quota Deny.
pub fn examples() -> Vec<Example> {
    vec![
        Example {
            title: "Allow: an acme editor reads a document shared with the editor role",
            user: &DAVE,
            body: json!({"action": "Read", "resource": {"type": "Document", "id": "q3-report"}}),
        },
        Example {
            title: "Deny (tenant isolation): a globex admin asks for acme's usage",
            user: &EVE,
            body: json!({"action": "ViewUsage", "resource": {"type": "Tenant", "id": "acme"}}),
        },
        Example {
            title: "Deny (no existence oracle): a globex admin asks for acme's document id",
            user: &EVE,
            body: json!({"action": "Read", "resource": {"type": "Document", "id": "q3-report"}}),
        },
        Example {
            title: "Deny (quota): globex is at maxDocuments",
            user: &EVE,
            body: json!({
                "action": "CreateDocument",
                "resource": {"type": "Tenant", "id": "globex"},
                "context": {"fileType": "pdf", "sizeBytes": 1024}
            }),
        },
    ]
}
