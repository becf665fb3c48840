//! The world the attack runs in: six tenants in every status and tier, each
//! with facts an outsider must never learn (a name, nine-digit limits and
//! usage, user and document ids), a platform tenant, and tenant ids that do
//! not exist, spelled like the real ones so that answers compare byte for
//! byte once the id is swapped.

use cedargate::model::DataSet;
use serde_json::{json, Value};

use crate::helpers::Keys;

/// The attackers' and victims' tenants: `ten-a` … `ten-f`.
pub const TENANTS: [&str; 6] = ["ten-a", "ten-b", "ten-c", "ten-d", "ten-e", "ten-f"];
/// The platform operators' tenant (its administrator is no attacker).
pub const PLATFORM: &str = "ten-p";
pub const ROOT: &str = "root-p";
/// Tenant ids that exist nowhere, the same length as the real ones.
pub const MISSING: [&str; 3] = ["ten-x", "ten-y", "ten-z"];

/// The attackers of a tenant: (user, groups, clearance).
pub const ROLES: [(&str, &str, u8); 3] = [
    ("adm", "admin", 3),
    ("edi", "editor", 2),
    ("vie", "viewer", 0),
];

/// Document ids of tenant `x` are `x-<kind>`; a missing one is `q-<kind>`.
/// Attackers aim at these kinds; `hid` documents are never named by any
/// request, so finding one's id in an answer is a leak.
pub const DOC_KINDS: [&str; 5] = ["pub", "sec", "shr", "prv", "del"];
pub const HIDDEN: &str = "hid";
pub const MISSING_DOC_LETTER: char = 'q';

/// The Stripe webhook signing secret of the management server (no
/// attacker knows it).
pub const WEBHOOK_SECRET: &str = "whsec_attack_run_3f9c2a7d51e84b06";

/// The one-letter suffix of a tenant id (`ten-b` → `b`).
pub fn letter(tenant: &str) -> char {
    tenant.chars().last().unwrap_or('?')
}

pub fn user(role: &str, tenant: &str) -> String {
    format!("{role}-{}", letter(tenant))
}

pub fn doc(tenant: &str, kind: &str) -> String {
    format!("{}-{kind}", letter(tenant))
}

/// The tenant a user id belongs to (`edi-b` → `ten-b`).
pub fn tenant_of_user(user: &str) -> Option<String> {
    let l = user.rsplit('-').next()?;
    Some(format!("ten-{l}"))
}

struct Spec {
    name: &'static str,
    status: &'static str,
    tier: &'static str,
    features: &'static [&'static str],
    /// maxDocuments, maxUsers, maxStorageGB, maxQueriesPerMonth
    limits: [u32; 4],
    /// documents, users, storageGB, queriesThisMonth
    usage: [u32; 4],
    file_types: &'static [&'static str],
}

/// Every limit and usage is a distinctive number of seven or more digits,
/// so that finding one in an answer is a leak, not a coincidence. `ten-b`
/// is at its document limit, `ten-c` has used its searches, `ten-f` is
/// nearly out of storage.
const SPECS: [Spec; 7] = [
    Spec {
        name: "Quokka Holdings",
        status: "active",
        tier: "enterprise",
        features: &["export", "audit-logs"],
        limits: [500_000_011, 900_000_001, 3_001_017, 600_000_013],
        usage: [412_000_017, 17_000_019, 2_999_023, 100_000_021],
        file_types: &["pdf", "docx"],
    },
    Spec {
        name: "Narwhal Analytics",
        status: "trial",
        tier: "basic",
        features: &[],
        limits: [421_000_023, 800_000_029, 4_001_031, 700_000_037],
        usage: [421_000_023, 18_000_041, 1_000_043, 200_000_047],
        file_types: &["pdf"],
    },
    Spec {
        name: "Axolotl Partners",
        status: "active",
        tier: "pro",
        features: &["export"],
        limits: [520_000_053, 810_000_059, 5_001_061, 310_000_067],
        usage: [12_000_071, 19_000_073, 1_001_079, 310_000_067],
        file_types: &["pdf", "txt"],
    },
    Spec {
        name: "Pangolin Labs",
        status: "suspended",
        tier: "enterprise",
        features: &["audit-logs"],
        limits: [530_000_083, 820_000_089, 6_001_097, 720_000_101],
        usage: [13_000_103, 20_000_107, 1_002_109, 210_000_113],
        file_types: &["docx"],
    },
    Spec {
        name: "Okapi Freight",
        status: "cancelled",
        tier: "pro",
        features: &["export", "audit-logs"],
        limits: [540_000_127, 830_000_131, 7_001_137, 730_000_139],
        usage: [14_000_149, 21_000_151, 1_003_157, 220_000_163],
        file_types: &["pdf", "csv"],
    },
    Spec {
        name: "Tapir Media",
        status: "active",
        tier: "basic",
        features: &[],
        limits: [550_000_167, 840_000_173, 2_003_179, 740_000_181],
        usage: [15_000_191, 22_000_193, 2_003_178, 230_000_197],
        file_types: &["pdf", "md"],
    },
    Spec {
        name: "Platform Operations",
        status: "active",
        tier: "enterprise",
        features: &["export", "audit-logs"],
        limits: [560_000_199, 850_000_211, 8_001_223, 750_000_227],
        usage: [16_000_229, 23_000_233, 1_004_239, 240_000_241],
        file_types: &["pdf"],
    },
];

fn all_tenants() -> impl Iterator<Item = (&'static str, &'static Spec)> {
    TENANTS.iter().copied().chain([PLATFORM]).zip(SPECS.iter())
}

/// The data set, in the import format.
pub fn data() -> DataSet {
    let month = cedargate::model::current_month();
    let mut tenants = Vec::new();
    let mut documents = Vec::new();
    for (id, s) in all_tenants() {
        tenants.push(json!({
            "tenantId": id, "createdAt": "2026-01-01T00:00:00Z", "name": s.name, "status": s.status,
            "subscription": {"tier": s.tier, "startDate": "2026-01-01", "features": s.features},
            "limits": {"maxDocuments": s.limits[0], "maxUsers": s.limits[1], "maxStorageGB": s.limits[2], "maxQueriesPerMonth": s.limits[3]},
            "usage": {"documents": s.usage[0], "users": s.usage[1], "storageGB": s.usage[2], "queriesThisMonth": s.usage[3], "month": month},
            "settings": {"dataRetentionDays": 365, "allowedFileTypes": s.file_types},
            "billing": {"provider": "stripe", "customerId": format!("cus_{id}")},
        }));
        let owner = user("own", id);
        let d = |kind: &str, visibility: &str, class: u8, extra: Value| {
            let mut v = json!({
                "tenantId": id, "documentId": doc(id, kind), "ownerId": owner,
                "visibility": visibility, "classification": class, "fileType": "pdf", "sizeBytes": 10,
            });
            if let (Some(map), Some(more)) = (v.as_object_mut(), extra.as_object()) {
                map.extend(more.clone());
            }
            v
        };
        documents.extend([
            d("pub", "public", 0, json!({})),
            d("sec", "public", 3, json!({})),
            // Shared with the viewers of the tenant, its editor, and a user
            // id that also exists in ten-a (user ids are not tenant-scoped).
            d(
                "shr",
                "shared",
                1,
                json!({"sharedWith": [
                    {"role": "viewer", "permission": "read"},
                    {"userId": user("edi", id), "permission": "edit"},
                    {"userId": "vie-a", "permission": "edit"},
                ]}),
            ),
            d("prv", "private", 0, json!({})),
            d(
                "del",
                "public",
                0,
                json!({"deletedAt": "2026-03-01T00:00:00Z"}),
            ),
            d(HIDDEN, "private", 2, json!({})),
            // The same id in every tenant.
            json!({"tenantId": id, "documentId": "common", "ownerId": owner, "visibility": "public",
                   "classification": 0, "fileType": "pdf", "sizeBytes": 10}),
        ]);
    }
    // Every tenant's own policies reach as far as their text can: all
    // actions, the next tenant by name, and a forbid of every other
    // tenant's documents whose message carries the tenant's secrets. Confined to
    // their tenant, none of it may change any answer about another tenant.
    let mut policies = Vec::new();
    for (i, t) in TENANTS.iter().enumerate() {
        let next = TENANTS[(i + 1) % TENANTS.len()];
        let s = all_tenants().find(|(id, _)| id == t).map(|(_, s)| s);
        let secret = s
            .map(|s| format!("{} {}", s.name, s.limits[0]))
            .unwrap_or_default();
        let stamp = "2026-01-01T00:00:00Z";
        for (id, text) in [
            ("everything", "permit (principal, action, resource);".to_string()),
            (
                "reach-next",
                format!(
                    "permit (principal, action, resource) when {{ resource has tenant && resource.tenant == CedarGate::Tenant::\"{next}\" }};"
                ),
            ),
            (
                "shout",
                format!(
                    "@message(\"{secret}\")\nforbid (principal, action, resource is CedarGate::Document) when {{ resource.tenant != CedarGate::Tenant::\"{t}\" }};"
                ),
            ),
        ] {
            policies.push(json!({
                "tenantId": t, "policyId": id, "definition": {"static": {"statement": text}},
                "createdAt": stamp, "updatedAt": stamp,
            }));
        }
    }
    serde_json::from_value(
        json!({"tenants": tenants, "documents": documents, "policies": policies}),
    )
    .expect("the attack world is a valid data set")
}

/// What tenant `t`'s outsiders must never read in an answer, unless they
/// wrote it in their own request: its name, its numbers, its users' and
/// documents' ids.
pub fn secrets(t: &str) -> Vec<String> {
    let Some((_, s)) = all_tenants().find(|(id, _)| *id == t) else {
        return Vec::new();
    };
    let mut out = vec![s.name.to_string()];
    out.extend(s.limits.iter().chain(&s.usage).map(u32::to_string));
    // `vie-a` is named in every tenant's shared document: not a secret.
    out.extend(
        ["adm", "edi", "vie", "own"]
            .map(|r| user(r, t))
            .into_iter()
            .filter(|u| u != "vie-a"),
    );
    out.extend(DOC_KINDS.iter().chain([&HIDDEN]).map(|k| doc(t, k)));
    if t == PLATFORM {
        out.push(ROOT.into());
    }
    out
}

/// Every tenant whose secrets an attacker from `own` must not see.
pub fn foreign_secrets(own: &str) -> Vec<(String, String)> {
    all_tenants()
        .map(|(t, _)| t)
        .filter(|t| *t != own)
        .flat_map(|t| secrets(t).into_iter().map(move |s| (t.to_string(), s)))
        .collect()
}

/// An attacker: a user of one of the six tenants, with a valid token.
#[derive(Debug, Clone)]
pub struct Attacker {
    pub tenant: &'static str,
    pub user: String,
    pub group: &'static str,
    pub token: String,
    /// Text this attacker writes into everything it controls.
    pub canary: String,
}

pub fn attackers(keys: &Keys) -> Vec<Attacker> {
    let mut out = Vec::new();
    for t in TENANTS {
        for (role, group, clearance) in ROLES {
            let user = user(role, t);
            let token = keys.token(&user, t, &[group], |c| {
                c["custom:clearance"] = json!(clearance.to_string());
            });
            out.push(Attacker {
                tenant: t,
                canary: format!("canary-{}-{role}", letter(t)),
                user,
                group,
                token,
            });
        }
    }
    out
}

/// The platform administrator's token.
pub fn root_token(keys: &Keys) -> String {
    keys.token(ROOT, PLATFORM, &["platform-admin"], |_| {})
}
