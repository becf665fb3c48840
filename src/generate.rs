//! Synthetic data at scale, for load and scale tests: tenants of skewed
//! sizes (Zipf: a few huge tenants, a long tail of small ones), documents
//! with realistic ACLs, and a matching mix of authorization requests.
//!
//! Everything is written as it is generated, in the import format (a
//! `DataSet` JSON document) and as NDJSON request bodies, so memory stays
//! bounded whatever the size. The output is a pure function of the
//! [`Spec`]: the request mix names documents and users that the data set
//! has, without reading it back.
//!
//! - Tenant `t00000` is the biggest; tenant *i* holds a share of the
//!   documents proportional to 1 / (i + 1)^skew.
//! - A tenant with *n* documents has max(3, n / 20) users (`u0`, `u1`, …,
//!   at most 5,000); user `u0` is an admin, one in ten an editor, the rest
//!   viewers; every fifth also has `contractor`.
//! - Documents: 40 % private, 40 % shared, 20 % public; classification
//!   0–3; shared documents shared with 1–5 users or roles; 1 % soft-deleted
//!   (40 days ago); some over the tenant's allowed file types.
//! - Optionally one *wide* document in the biggest tenant, shared with
//!   many users and roles (how a huge ACL affects everybody else).

use std::collections::BTreeSet;
use std::io::{self, Write};

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::json;

use crate::ids::{DocumentId, IdError, RoleName, TenantId, UserId};
use crate::model::{
    Document, Grantee, Level, Limits, Permission, Settings, Share, Subscription, Tenant,
    TenantStatus, Tier, Usage, Visibility,
};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub tenants: usize,
    pub documents: usize,
    /// Zipf exponent of the tenants' sizes (1.0: the biggest tenant holds
    /// about 1 / ln(tenants) of all documents).
    pub skew: f64,
    pub seed: u64,
    /// Users and roles the wide document is shared with (none: no wide
    /// document).
    pub wide: Option<(usize, usize)>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            tenants: 100,
            documents: 10_000,
            skew: 1.0,
            seed: 2026,
            wide: None,
        }
    }
}

/// The id of the wide document (in the biggest tenant).
pub const WIDE_DOCUMENT: &str = "wide-0";

const ROLES: [&str; 4] = ["admin", "editor", "viewer", "contractor"];
const FILE_TYPES: [&str; 5] = ["pdf", "docx", "xlsx", "txt", "exe"];

/// The sizes the spec gives each tenant: documents and users.
#[derive(Debug, Clone)]
pub struct Layout {
    pub documents: Vec<u64>,
    pub users: Vec<u64>,
}

impl Layout {
    pub fn new(spec: &Spec) -> Layout {
        let n = spec.tenants.max(1);
        let weights: Vec<f64> = (0..n)
            .map(|i| 1.0 / ((i + 1) as f64).powf(spec.skew))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut documents: Vec<u64> = weights
            .iter()
            .map(|w| ((spec.documents as f64) * w / total).floor() as u64)
            .collect();
        // What flooring left goes to the tenants in order, one each.
        let assigned: u64 = documents.iter().sum();
        for i in 0..(spec.documents as u64).saturating_sub(assigned) {
            documents[(i as usize) % n] += 1;
        }
        let users = documents.iter().map(|d| (d / 20).clamp(3, 5_000)).collect();
        Layout { documents, users }
    }
}

pub fn tenant_id(i: usize) -> String {
    format!("t{i:05}")
}

pub fn document_id(n: u64) -> String {
    format!("d{n:07}")
}

/// A user's roles and clearance, by index.
pub fn user_claims(u: u64) -> (Vec<&'static str>, u8) {
    let mut roles = vec![if u == 0 {
        "admin"
    } else if u % 10 == 1 {
        "editor"
    } else {
        "viewer"
    }];
    if u % 5 == 4 {
        roles.push("contractor");
    }
    (roles, (u % 4) as u8)
}

fn rng_for(seed: u64, a: u64, b: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
    )
}

fn ids<T>(parse: impl Fn(String) -> Result<T, IdError>, s: &str) -> io::Result<T> {
    parse(s.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn tenant(spec: &Spec, layout: &Layout, i: usize) -> io::Result<Tenant> {
    let mut rng = rng_for(spec.seed, i as u64, 0);
    let docs = layout.documents[i];
    let status = match rng.random_range(0..100) {
        0..=89 => TenantStatus::Active,
        90..=95 => TenantStatus::Trial,
        96..=98 => TenantStatus::Suspended,
        _ => TenantStatus::Cancelled,
    };
    let tier = match i {
        0..=9 => Tier::Enterprise,
        _ if i.is_multiple_of(3) => Tier::Pro,
        _ => Tier::Basic,
    };
    let features: BTreeSet<String> = match tier {
        Tier::Enterprise => ["export", "audit-logs", "sso", "advanced-search"].as_slice(),
        Tier::Pro => ["export", "advanced-search"].as_slice(),
        Tier::Basic => [].as_slice(),
    }
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cap = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(Tenant {
        tenant_id: ids(TenantId::parse, &tenant_id(i))?,
        created_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + Duration::hours(i as i64),
        name: format!("Tenant {i}"),
        status,
        subscription: Subscription {
            tier,
            start_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
            features,
        },
        limits: Limits {
            max_documents: cap(docs * 2 + 100),
            max_users: cap(layout.users[i] * 2),
            max_storage_gb: cap(docs / 1_000 + 10),
            max_queries_per_month: cap(docs * 50 + 10_000),
        },
        usage: Usage {
            documents: cap(docs),
            users: cap(layout.users[i]),
            storage_gb: cap(docs / 2_000),
            queries_this_month: rng.random_range(0..1_000),
            month: None,
            storage_bytes: None,
        },
        settings: Settings {
            data_retention_days: 365,
            allowed_file_types: FILE_TYPES[..4].iter().map(|s| s.to_string()).collect(),
            recovery_window_days: None,
        },
        cancelled_at: (status == TenantStatus::Cancelled)
            .then(|| Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()),
        purged_at: None,
        billing: None,
    })
}

fn document(spec: &Spec, layout: &Layout, t: usize, n: u64) -> io::Result<Document> {
    let mut rng = rng_for(spec.seed, t as u64, n + 1);
    let users = layout.users[t];
    let visibility = match rng.random_range(0..10) {
        0..=3 => Visibility::Private,
        4..=7 => Visibility::Shared,
        _ => Visibility::Public,
    };
    let mut shared_with = Vec::new();
    if visibility == Visibility::Shared {
        for _ in 0..rng.random_range(1..=5) {
            let grantee = if rng.random_bool(0.7) {
                Grantee::User(ids(
                    UserId::parse,
                    &format!("u{}", rng.random_range(0..users)),
                )?)
            } else {
                Grantee::Role(ids(RoleName::parse, ROLES[rng.random_range(1..4)])?)
            };
            let permission = if rng.random_bool(0.3) {
                Permission::Edit
            } else {
                Permission::Read
            };
            shared_with.push(Share {
                grantee,
                permission,
            });
        }
        shared_with.sort_by_cached_key(|s| format!("{:?}", s.grantee));
        shared_with.dedup_by(|a, b| a.grantee == b.grantee);
    }
    Ok(Document {
        tenant_id: ids(TenantId::parse, &tenant_id(t))?,
        document_id: ids(DocumentId::parse, &document_id(n))?,
        owner_id: ids(UserId::parse, &format!("u{}", rng.random_range(0..users)))?,
        visibility,
        classification: Level::new(rng.random_range(0..4)).unwrap_or_default(),
        file_type: FILE_TYPES[rng.random_range(0..FILE_TYPES.len())].to_string(),
        size_bytes: rng.random_range(1_000..50_000_000),
        shared_with,
        deleted_at: rng
            .random_bool(0.01)
            .then(|| Utc::now() - Duration::days(40)),
    })
}

fn wide_document(users: usize, roles: usize) -> io::Result<Document> {
    let mut shared_with = Vec::with_capacity(users + roles);
    for u in 0..users {
        shared_with.push(Share {
            grantee: Grantee::User(ids(UserId::parse, &format!("u{u}"))?),
            permission: Permission::Read,
        });
    }
    for r in 0..roles {
        shared_with.push(Share {
            grantee: Grantee::Role(ids(RoleName::parse, &format!("group-{r}"))?),
            permission: Permission::Read,
        });
    }
    Ok(Document {
        tenant_id: ids(TenantId::parse, &tenant_id(0))?,
        document_id: ids(DocumentId::parse, WIDE_DOCUMENT)?,
        owner_id: ids(UserId::parse, "u0")?,
        visibility: Visibility::Shared,
        classification: Level::default(),
        file_type: "pdf".into(),
        size_bytes: 1_000,
        shared_with,
        deleted_at: None,
    })
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub tenants: usize,
    pub documents: u64,
    pub biggest_tenant_documents: u64,
}

/// Writes the data set as an import file.
pub fn write_dataset(spec: &Spec, mut out: impl Write) -> io::Result<Written> {
    let layout = Layout::new(spec);
    out.write_all(b"{\"tenants\":[\n")?;
    for i in 0..spec.tenants {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut out, &tenant(spec, &layout, i)?)?;
    }
    out.write_all(b"\n],\"documents\":[\n")?;
    let mut first = true;
    let mut written = 0u64;
    let mut put = |out: &mut dyn Write, d: &Document| -> io::Result<()> {
        if !first {
            out.write_all(b",\n")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, d)?;
        written += 1;
        Ok(())
    };
    for (t, &docs) in layout.documents.iter().enumerate() {
        for n in 0..docs {
            put(&mut out, &document(spec, &layout, t, n)?)?;
        }
    }
    if let (Some((users, roles)), false) = (spec.wide, layout.documents.is_empty()) {
        put(&mut out, &wide_document(users, roles)?)?;
    }
    out.write_all(b"\n]}\n")?;
    out.flush()?;
    Ok(Written {
        tenants: spec.tenants,
        documents: written,
        biggest_tenant_documents: layout.documents.first().copied().unwrap_or(0),
    })
}

/// The request mix's shares, in percent.
const MIX: [(&str, u32); 9] = [
    ("Read", 62),
    ("Update", 8),
    ("Share", 3),
    ("Delete", 2),
    ("Search", 10),
    ("CreateDocument", 5),
    ("ViewUsage", 2),
    ("cross-tenant", 3),
    ("missing-document", 5),
];

/// Writes `count` `/v1/authorize` request bodies (trusted identity), one
/// per line: tenants weighted by size, documents of the tenant Zipf-like
/// (a few hot ones, a long tail), every action, and shares of cross-tenant requests and
/// requests for documents that do not exist.
pub fn write_requests(spec: &Spec, count: usize, mut out: impl Write) -> io::Result<()> {
    let layout = Layout::new(spec);
    let mut rng = rng_for(spec.seed, u64::MAX, 1);
    let invalid = |e: rand::distr::weighted::Error| io::Error::new(io::ErrorKind::InvalidInput, e);
    let tenants = WeightedIndex::new(layout.documents.iter().map(|d| d + 1)).map_err(invalid)?;
    let mix = WeightedIndex::new(MIX.iter().map(|(_, w)| *w)).map_err(invalid)?;
    for _ in 0..count {
        let t = tenants.sample(&mut rng);
        let u = rng.random_range(0..layout.users[t]);
        let (roles, clearance) = user_claims(u);
        let docs = layout.documents[t].max(1);
        // Hot documents, Zipf-like (exponent 1): document k of n is picked
        // with probability ~ 1 / (k + 1), so the first k of a tenant's
        // documents get ln(k) / ln(n) of its requests (of 100,000: the
        // first 1,000 get 60 %, the first 10,000 80 %).
        let hot = (docs as f64).powf(rng.random::<f64>()) as u64 - 1;
        let document = document_id(hot.min(docs - 1));
        let principal = json!({
            "id": format!("u{u}"), "tenant": tenant_id(t), "roles": roles, "clearance": clearance,
        });
        let (kind, _) = MIX[mix.sample(&mut rng)];
        let body = match kind {
            "Search" | "ViewUsage" => json!({
                "principal": principal, "action": kind,
                "resource": {"type": "Tenant", "id": tenant_id(t)},
            }),
            "CreateDocument" => json!({
                "principal": principal, "action": kind,
                "resource": {"type": "Tenant", "id": tenant_id(t)},
                "context": {"fileType": FILE_TYPES[rng.random_range(0..FILE_TYPES.len())], "sizeBytes": rng.random_range(1_000..10_000_000)},
            }),
            "cross-tenant" => {
                let other =
                    (t + 1 + rng.random_range(0..spec.tenants.max(2) - 1)) % spec.tenants.max(1);
                json!({
                    "principal": principal, "action": "Search",
                    "resource": {"type": "Tenant", "id": tenant_id(other)},
                })
            }
            "missing-document" => json!({
                "principal": principal, "action": "Read",
                "resource": {"type": "Document", "id": format!("missing-{}", rng.random_range(0..1_000_000))},
            }),
            action => json!({
                "principal": principal, "action": action,
                "resource": {"type": "Document", "id": document},
            }),
        };
        serde_json::to_writer(&mut out, &body)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DataSet;

    #[test]
    fn sizes_are_skewed_and_add_up() {
        let spec = Spec {
            tenants: 1_000,
            documents: 100_000,
            ..Spec::default()
        };
        let layout = Layout::new(&spec);
        assert_eq!(layout.documents.iter().sum::<u64>(), 100_000);
        // Zipf(1) over 1,000: the biggest holds ~13 %, the median tenant
        // a few dozen documents.
        assert!(layout.documents[0] > 12_000 && layout.documents[0] < 14_500);
        assert!(layout.documents[500] < 40);
        assert!(layout
            .documents
            .windows(2)
            .all(|w| w[0] >= w[1] || w[1] - w[0] <= 1));
    }

    #[test]
    fn the_data_set_imports_and_is_deterministic() {
        let spec = Spec {
            tenants: 20,
            documents: 500,
            wide: Some((300, 20)),
            ..Spec::default()
        };
        let mut a = Vec::new();
        let w = write_dataset(&spec, &mut a).unwrap();
        assert_eq!((w.tenants, w.documents), (20, 501));
        let data: DataSet = serde_json::from_slice(&a).unwrap();
        data.check(|_| false).unwrap();
        assert_eq!(data.documents.len(), 501);
        let wide = data
            .documents
            .iter()
            .find(|d| d.document_id.as_str() == WIDE_DOCUMENT)
            .unwrap();
        assert_eq!(wide.shared_with.len(), 320);
        // Deleted documents aside (their time is relative to now), the
        // same spec gives the same bytes.
        let mut b = Vec::new();
        write_dataset(&spec, &mut b).unwrap();
        let strip = |v: &[u8]| {
            let d: DataSet = serde_json::from_slice(v).unwrap();
            d.documents
                .into_iter()
                .map(|mut d| {
                    d.deleted_at = d.deleted_at.map(|_| Utc.timestamp_opt(0, 0).unwrap());
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&b));
    }

    #[test]
    fn requests_name_what_the_data_set_has() {
        let spec = Spec {
            tenants: 30,
            documents: 2_000,
            ..Spec::default()
        };
        let mut data = Vec::new();
        write_dataset(&spec, &mut data).unwrap();
        let data: DataSet = serde_json::from_slice(&data).unwrap();
        let docs: BTreeSet<(String, String)> = data
            .documents
            .iter()
            .map(|d| (d.tenant_id.to_string(), d.document_id.to_string()))
            .collect();
        let mut out = Vec::new();
        write_requests(&spec, 5_000, &mut out).unwrap();
        let (mut found, mut missing, mut cross) = (0, 0, 0);
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let wire: crate::sidecar::wire::AuthorizeWire = serde_json::from_slice(line).unwrap();
            let r = wire.into_request(None).unwrap();
            match r.resource {
                crate::authz::ResourceRef::Document(id) => {
                    if docs.contains(&(r.principal.tenant.to_string(), id.to_string())) {
                        found += 1;
                    } else {
                        assert!(id.as_str().starts_with("missing-"), "{id}");
                        missing += 1;
                    }
                }
                crate::authz::ResourceRef::Tenant(t) => {
                    cross += usize::from(t != r.principal.tenant)
                }
            }
        }
        assert!(
            found > 3_000 && missing > 100 && cross > 50,
            "{found} {missing} {cross}"
        );
    }
}
