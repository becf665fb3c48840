//! Audit records as OCSF events: class 3004 "Entity Management" in the
//! "Identity & Access Management" category, the class cedar-local-agent
//! uses for authorization logs, schema 1.0.0. Times are milliseconds since
//! the epoch, as OCSF's `timestamp_t` is.
//!
//! What OCSF has no field for (the chain stamp, the policy revision, …)
//! goes under `unmapped`, so an OCSF record loses nothing of ours.

use serde_json::{json, Value};

use super::AuditEvent;

pub const CLASS_UID: u32 = 3004;
pub const CATEGORY_UID: u32 = 3;
const SCHEMA_VERSION: &str = "1.0.0";

/// OCSF entity-management activities.
fn activity(action: &str) -> (u32, &'static str) {
    let a = action.to_ascii_lowercase();
    if a.starts_with("create") || a.starts_with("register") || a.starts_with("import") {
        (1, "Create")
    } else if a.starts_with("read")
        || a.starts_with("get")
        || a.starts_with("search")
        || a.starts_with("list")
        || a.starts_with("view")
        || a.starts_with("export")
    {
        (2, "Read")
    } else if a.starts_with("update")
        || a.starts_with("share")
        || a.starts_with("unshare")
        || a.starts_with("migrate")
        || a.starts_with("restore")
        || a.starts_with("put")
    {
        (3, "Update")
    } else if a.starts_with("delete") || a.starts_with("purge") || a.starts_with("deactivate") {
        (4, "Delete")
    } else {
        (99, "Other")
    }
}

/// `entity` / `entity_result` of an Entity Management event from a Cedar
/// entity reference such as `CedarGate::Document::"d1"`.
fn managed_entity(reference: &str) -> Value {
    match reference.rsplit_once("::") {
        Some((kind, id)) => json!({ "type": kind, "name": id.trim_matches('"') }),
        None => json!({ "name": reference }),
    }
}

/// One record as an OCSF event.
pub fn to_ocsf(e: &AuditEvent) -> Value {
    let (activity_id, activity_name) = activity(&e.action);
    let errors = e
        .details
        .get("errors")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let (severity_id, severity) = match errors {
        0 => (1, "Informational"),
        1 => (2, "Low"),
        _ => (3, "Medium"),
    };
    let (status_id, status) = if e.success {
        (1, "Success")
    } else {
        (2, "Failure")
    };
    let decision = e.details.get("decision").and_then(Value::as_str);
    let principal = match &e.user_id {
        Some(u) => json!({ "type": "CedarGate::User", "name": u, "uid": u }),
        None => json!({ "name": "cedargate-admin" }),
    };
    let message = match decision {
        Some(d) => format!(
            "{} performed {} on {}: {d}",
            e.user_id.as_deref().unwrap_or("unknown"),
            e.action,
            e.resource
        ),
        None => format!("{} on {}", e.action, e.resource),
    };
    let mut event = json!({
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "Identity & Access Management",
        "class_uid": CLASS_UID,
        "class_name": "Entity Management",
        "type_uid": CLASS_UID * 100 + activity_id,
        "time": e.timestamp.timestamp_millis(),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "message": message,
        "actor": { "user": principal },
        "entity": managed_entity(&e.resource),
        "metadata": {
            "version": SCHEMA_VERSION,
            "uid": e.event_id,
            "product": { "name": "cedargate", "vendor_name": "cedargate", "version": env!("CARGO_PKG_VERSION") },
            "tenant_uid": e.tenant_id,
        },
        "unmapped": {
            "details": e.details,
            "writer_id": e.writer_id,
            "seq": e.seq,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
            "expires_at": e.expires_at,
        },
    });
    if let Some(d) = decision {
        event["status_code"] = d.into();
    }
    if let Some(m) = &e.error_message {
        event["status_detail"] = m.as_str().into();
    }
    if let Some(ip) = &e.ip_address {
        event["src_endpoint"] = json!({ "ip": ip });
    }
    if let Some(ua) = &e.user_agent {
        event["http_request"] = json!({ "user_agent": ua });
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_decision_becomes_an_entity_management_event_with_milliseconds() {
        let t = chrono::Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        let mut e = AuditEvent::new(
            "d-1",
            t,
            "acme",
            "Read",
            "CedarGate::Document::\"doc-1\"",
            json!({"decision": "Deny", "errors": ["x"]}),
        );
        e.user_id = Some("alice".into());
        e.success = false;
        e.error_message = Some("forbidden".into());
        let o = to_ocsf(&e);
        assert_eq!(o["class_uid"], 3004);
        assert_eq!(o["category_uid"], 3);
        assert_eq!(o["activity_id"], 2);
        assert_eq!(o["type_uid"], 300402);
        assert_eq!(o["time"], 1_700_000_000_123i64);
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["status_code"], "Deny");
        assert_eq!(o["severity_id"], 2);
        assert_eq!(o["entity"]["type"], "CedarGate::Document");
        assert_eq!(o["entity"]["name"], "doc-1");
        assert_eq!(o["metadata"]["uid"], "d-1");
        assert_eq!(o["unmapped"]["details"]["decision"], "Deny");
    }

    #[test]
    fn actions_map_to_activities() {
        assert_eq!(activity("CreateDocument").0, 1);
        assert_eq!(activity("Search").0, 2);
        assert_eq!(activity("ShareDocument").0, 3);
        assert_eq!(activity("DeleteDocument").0, 4);
        assert_eq!(activity("Frobnicate").0, 99);
    }
}
