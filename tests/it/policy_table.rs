//! The policies as a table: (principal, action, resource, context) → expected
//! decision (and, for a Deny, the forbid or reason that made it), run through
//! the engine over the real `policies/` and `schemas/` and a fixture store.

use cedargate::app::App;
use cedargate::authz::{DenyReason, Effect};
use cedargate::config::Settings;
use serde_json::{json, Value};

use crate::helpers::{doc, fixture_store, principal, repo_dir, request, tenant};

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Allow, by this permit.
    Allow(&'static str),
    /// Deny because this forbid matched.
    Forbid(&'static str),
    /// Deny because nothing permits it.
    NoPermit,
    /// Deny for this reason, without evaluating policies.
    Reason(DenyReason),
}
use Want::*;

struct Row {
    who: (&'static str, &'static str, &'static [&'static str], u8),
    action: &'static str,
    resource: (&'static str, &'static str),
    context: Value,
    want: Want,
}

fn row(
    who: (&'static str, &'static str, &'static [&'static str], u8),
    action: &'static str,
    resource: (&'static str, &'static str),
    want: Want,
) -> Row {
    Row {
        who,
        action,
        resource,
        context: Value::Null,
        want,
    }
}

fn create(
    who: (&'static str, &'static str, &'static [&'static str], u8),
    t: &'static str,
    file: &str,
    size: i64,
    want: Want,
) -> Row {
    Row {
        who,
        action: "CreateDocument",
        resource: ("Tenant", t),
        context: json!({"fileType": file, "sizeBytes": size}),
        want,
    }
}

// Principals: (id, tenant, roles, clearance).
type Who = (&'static str, &'static str, &'static [&'static str], u8);
const ALICE: Who = ("alice", "t1", &["editor"], 1); // owner of every t1 document
const BOB: Who = ("bob", "t1", &["viewer"], 1); // d-shared: read
const CAROL: Who = ("carol", "t1", &["viewer"], 1); // d-shared: edit
const EDDY: Who = ("eddy", "t1", &["editor"], 1); // d-shared: read, and an editor
const ANN: Who = ("ann", "t1", &["auditor"], 1); // d-shared via the auditor role
const LOWANN: Who = ("lowann", "t1", &["auditor"], 0);
const DAVE: Who = ("dave", "t1", &["editor"], 1); // not listed anywhere
const VIC: Who = ("vic", "t1", &["viewer"], 1); // not listed anywhere
const NOB: Who = ("nob", "t1", &[], 1); // no role at all
const ADM: Who = ("adm", "t1", &["admin"], 3);
const ADM2: Who = ("adm2", "t1", &["admin"], 2);
const MALLORY: Who = ("mallory", "t2", &["admin"], 3);
const ROOT: Who = ("root", "plat", &["platform-admin"], 3);
const FRED: Who = ("fred", "full", &["editor", "viewer"], 1);
const SAM: Who = ("sam", "susp", &["admin"], 3);
const SUE: Who = ("sue", "susp", &["editor"], 1);
const CAT: Who = ("cat", "canc", &["admin"], 3);
const CID: Who = ("cid", "canc", &["editor"], 1);
const TIM: Who = ("tim", "trial", &["editor"], 1);
const GHOST: Who = ("gus", "ghost", &["admin"], 3);

const GIB: i64 = 1 << 30;

#[rustfmt::skip]
fn table() -> Vec<Row> {
    let d = |id| ("Document", id);
    let t = |id| ("Tenant", id);
    vec![
        // --- private: the owner only (and tenant admins) ---
        row(ALICE, "Read", d("d-priv"), Allow("visibility.owner")),
        row(ALICE, "Update", d("d-priv"), Allow("visibility.owner")),
        row(ALICE, "Delete", d("d-priv"), Allow("visibility.owner")),
        row(ALICE, "Share", d("d-priv"), Allow("visibility.owner")),
        row(BOB, "Read", d("d-priv"), NoPermit),
        row(DAVE, "Read", d("d-priv"), NoPermit),
        row(DAVE, "Update", d("d-priv"), NoPermit),
        row(VIC, "Read", d("d-priv"), NoPermit),
        row(NOB, "Read", d("d-priv"), NoPermit),
        row(ADM, "Read", d("d-priv"), Allow("roles.admin-documents")),
        row(ADM, "Delete", d("d-priv"), Allow("roles.admin-documents")),
        // --- shared: owner + listed users/roles, read or edit ---
        row(ALICE, "Read", d("d-shared"), Allow("visibility.owner")),
        row(BOB, "Read", d("d-shared"), Allow("visibility.shared-read")),
        row(BOB, "Update", d("d-shared"), NoPermit),
        row(CAROL, "Read", d("d-shared"), Allow("visibility.shared-read")),
        row(CAROL, "Update", d("d-shared"), Allow("visibility.shared-edit")),
        row(CAROL, "Delete", d("d-shared"), NoPermit),
        row(CAROL, "Share", d("d-shared"), NoPermit),
        row(EDDY, "Read", d("d-shared"), Allow("visibility.shared-read")),
        row(EDDY, "Update", d("d-shared"), Allow("roles.editor-update-readable")),
        row(EDDY, "Delete", d("d-shared"), NoPermit),
        row(ANN, "Read", d("d-shared"), Allow("visibility.shared-read")),
        row(ANN, "Update", d("d-shared"), NoPermit),
        row(DAVE, "Read", d("d-shared"), NoPermit),
        row(DAVE, "Update", d("d-shared"), NoPermit),
        row(VIC, "Read", d("d-shared"), NoPermit),
        row(NOB, "Read", d("d-shared"), NoPermit),
        row(ADM, "Read", d("d-shared"), Allow("roles.admin-documents")),
        row(ADM, "Share", d("d-shared"), Allow("roles.admin-documents")),
        // --- public: everyone in the tenant reads ---
        row(VIC, "Read", d("d-public"), Allow("visibility.public-read")),
        row(NOB, "Read", d("d-public"), Allow("visibility.public-read")),
        row(VIC, "Update", d("d-public"), NoPermit),
        row(NOB, "Update", d("d-public"), NoPermit),
        row(DAVE, "Update", d("d-public"), Allow("roles.editor-update-readable")),
        row(DAVE, "Delete", d("d-public"), NoPermit),
        row(BOB, "Share", d("d-public"), NoPermit),
        row(ALICE, "Delete", d("d-public"), Allow("visibility.owner")),
        // --- classification vs clearance ---
        row(VIC, "Read", d("d-secret"), Forbid("classification.clearance")),
        row(ALICE, "Read", d("d-secret"), Forbid("classification.clearance")),
        row(ADM2, "Read", d("d-secret"), Forbid("classification.clearance")),
        row(ADM, "Read", d("d-secret"), Allow("roles.admin-documents")),
        row(LOWANN, "Read", d("d-shared"), Forbid("classification.clearance")),
        // --- soft delete ---
        row(ALICE, "Read", d("d-deleted"), Forbid("lifecycle.soft-deleted")),
        row(ADM, "Read", d("d-deleted"), Forbid("lifecycle.soft-deleted")),
        row(VIC, "Read", d("d-deleted"), Forbid("lifecycle.soft-deleted")),
        row(ALICE, "Restore", d("d-deleted"), Allow("visibility.owner")),
        row(ADM, "Restore", d("d-deleted"), Allow("roles.admin-documents")),
        row(VIC, "Restore", d("d-deleted"), NoPermit),
        // --- across tenants ---
        row(MALLORY, "Read", d("d-priv"), Reason(DenyReason::ResourceNotFound)),
        row(MALLORY, "Read", d("d-public"), Reason(DenyReason::ResourceNotFound)),
        row(MALLORY, "Read", d("no-such-doc"), Reason(DenyReason::ResourceNotFound)),
        row(MALLORY, "ViewUsage", t("t1"), Forbid("tenant-isolation.tenant")),
        row(MALLORY, "ManageTenant", t("t1"), Forbid("tenant-isolation.tenant")),
        row(MALLORY, "Export", t("t1"), Forbid("tenant-isolation.tenant")),
        row(ADM, "ViewUsage", t("t2"), Forbid("tenant-isolation.tenant")),
        row(ADM, "Search", t("t2"), Forbid("tenant-isolation.tenant")),
        create(ADM, "t2", "pdf", 1, Forbid("tenant-isolation.tenant")),
        // An unknown tenant id answers exactly like an existing one.
        row(ADM, "ViewUsage", t("nope"), Forbid("tenant-isolation.tenant")),
        row(ROOT, "ViewUsage", t("t1"), Allow("management.platform-admin")),
        row(ROOT, "ManageTenant", t("t2"), Allow("management.platform-admin")),
        row(ROOT, "Export", t("t2"), Allow("management.platform-admin")),
        row(ROOT, "ViewAuditLogs", t("t2"), Allow("management.platform-admin")),
        row(ROOT, "Search", t("t1"), Forbid("tenant-isolation.tenant")),
        create(ROOT, "t1", "pdf", 1, Forbid("tenant-isolation.tenant")),
        row(ROOT, "Read", d("d-public"), Reason(DenyReason::ResourceNotFound)),
        // --- quotas and file types ---
        create(ALICE, "t1", "pdf", 1024, Allow("roles.editor-create")), // 9 of 10
        create(FRED, "full", "pdf", 1024, Forbid("quota.max-documents")), // 10 of 10
        create(ALICE, "t1", "exe", 1024, Forbid("quota.file-type")),
        create(ALICE, "t1", "PDF", 1024, Forbid("quota.file-type")),
        create(ALICE, "t1", "docx", 5 * GIB, Allow("roles.editor-create")), // exactly the limit
        create(ALICE, "t1", "pdf", 5 * GIB + 1, Forbid("quota.max-storage")),
        create(VIC, "t1", "pdf", 1024, NoPermit),
        create(NOB, "t1", "pdf", 1024, NoPermit),
        row(VIC, "Search", t("t1"), Allow("roles.search")), // 99 of 100
        row(DAVE, "Search", t("t1"), Allow("roles.search")),
        row(FRED, "Search", t("full"), Forbid("quota.max-queries")), // 100 of 100
        row(NOB, "Search", t("t1"), NoPermit),
        // --- tenant status ---
        row(SAM, "Read", d("s-doc"), Allow("roles.admin-documents")),
        row(SAM, "Update", d("s-doc"), Forbid("tenant-status.suspended-read-only")),
        row(SAM, "Search", t("susp"), Allow("roles.admin-tenant")),
        row(SAM, "ManageTenant", t("susp"), Forbid("tenant-status.suspended-read-only")),
        row(SAM, "Export", t("susp"), Allow("roles.admin-tenant")),
        create(SUE, "susp", "pdf", 1, Forbid("tenant-status.suspended-read-only")),
        row(CAT, "Export", t("canc"), Allow("roles.admin-tenant")),
        row(CAT, "Read", d("c-doc"), Forbid("tenant-status.cancelled-export-only")),
        row(CAT, "Search", t("canc"), Forbid("tenant-status.cancelled-export-only")),
        row(CAT, "ViewUsage", t("canc"), Forbid("tenant-status.cancelled-export-only")),
        row(CID, "Export", t("canc"), Forbid("tenant-status.cancelled-export-only")),
        create(TIM, "trial", "pdf", 1, Allow("roles.editor-create")),
        row(TIM, "Search", t("trial"), Allow("roles.search")),
        // --- tier features and tenant management ---
        row(ADM, "Export", t("t1"), Allow("roles.admin-tenant")),
        row(MALLORY, "Export", t("t2"), Forbid("features.export")),
        row(MALLORY, "ViewAuditLogs", t("t2"), Forbid("features.audit-logs")),
        row(ADM, "ViewAuditLogs", t("t1"), Allow("roles.admin-tenant")),
        row(ADM, "ViewUsage", t("t1"), Allow("roles.admin-tenant")),
        row(ADM, "ManageTenant", t("t1"), Allow("roles.admin-tenant")),
        row(DAVE, "ViewUsage", t("t1"), NoPermit),
        row(DAVE, "ManageTenant", t("t1"), NoPermit),
        row(DAVE, "Export", t("t1"), NoPermit),
        // --- unknown caller tenant ---
        row(GHOST, "Read", d("d-public"), Reason(DenyReason::TenantNotFound)),
        row(GHOST, "Search", t("ghost"), Reason(DenyReason::TenantNotFound)),
        row(ALICE, "Read", d("missing"), Reason(DenyReason::ResourceNotFound)),
    ]
}

#[tokio::test]
async fn policy_table() {
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_store(dir.path()).await;
    let settings = Settings::trusted(url, &repo_dir("policies"), &repo_dir("schemas"));
    let app = App::build(settings).await.unwrap();
    let engine = &app.state.engine;

    let rows = table();
    assert!(rows.len() >= 60, "the table has {} rows", rows.len());
    let mut failures = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let (id, t, roles, clearance) = r.who;
        let p = principal(id, t, roles, clearance);
        let resource = match r.resource.0 {
            "Document" => doc(r.resource.1),
            _ => tenant(r.resource.1),
        };
        let req = request(&p, r.action, resource, r.context.clone());
        let d = engine.decide(&req).await.expect("well-formed request");
        let ok = match r.want {
            Allow(by) => {
                d.decision == Effect::Allow && d.determining_policies.iter().any(|x| x == by)
            }
            Forbid(by) => {
                d.decision == Effect::Deny
                    && d.reason == Some(DenyReason::Forbidden)
                    && d.determining_policies.iter().any(|x| x == by)
            }
            NoPermit => d.decision == Effect::Deny && d.reason == Some(DenyReason::NoPermit),
            Reason(reason) => d.decision == Effect::Deny && d.reason == Some(reason),
        };
        if !ok || !d.errors.is_empty() {
            failures.push(format!(
                "row {i}: {id}@{t} {} {}::{}: want {:?}, got {:?} by {:?} ({:?}) errors {:?}",
                r.action,
                r.resource.0,
                r.resource.1,
                r.want,
                d.decision,
                d.determining_policies,
                d.reason,
                d.errors
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
