//! Store records and principal claims as Cedar entities of the
//! `CedarGate` namespace (see `schemas/`). Tenant and document entities are
//! built once, when the cache loads them; only the principal is built per
//! request.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression as Rx};

use crate::ids::{DocumentId, RoleName, TenantId, UserId};
use crate::model::{Document, Grantee, Level, Permission, Tenant};

pub const NAMESPACE: &str = "CedarGate";

struct Types {
    action: EntityTypeName,
    tenant: EntityTypeName,
    user: EntityTypeName,
    role: EntityTypeName,
    document: EntityTypeName,
}

static TYPES: LazyLock<Types> = LazyLock::new(|| {
    let t = |name: &str| {
        #[allow(clippy::expect_used)]
        EntityTypeName::from_str(&format!("{NAMESPACE}::{name}")).expect("static type name")
    };
    Types {
        action: t("Action"),
        tenant: t("Tenant"),
        user: t("User"),
        role: t("Role"),
        document: t("Document"),
    }
});

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// `CedarGate::Action::"<name>"`.
pub fn action_uid(name: &str) -> EntityUid {
    uid(&TYPES.action, name)
}

pub fn tenant_uid(id: &TenantId) -> EntityUid {
    uid(&TYPES.tenant, id.as_str())
}

pub fn user_uid(id: &UserId) -> EntityUid {
    uid(&TYPES.user, id.as_str())
}

pub fn role_uid(name: &RoleName) -> EntityUid {
    uid(&TYPES.role, name.as_str())
}

pub fn document_uid(id: &DocumentId) -> EntityUid {
    uid(&TYPES.document, id.as_str())
}

fn long(v: impl Into<i64>) -> Rx {
    Rx::new_long(v.into())
}

fn string(s: &str) -> Rx {
    Rx::new_string(s.to_string())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Rx {
    Rx::new_set(items.into_iter().map(|s| string(s)))
}

fn record(fields: impl IntoIterator<Item = (&'static str, Rx)>) -> Rx {
    #[allow(clippy::expect_used)]
    Rx::new_record(fields.into_iter().map(|(k, v)| (k.to_string(), v)))
        .expect("field names are distinct literals")
}

fn entity(
    uid: EntityUid,
    attrs: impl IntoIterator<Item = (&'static str, Rx)>,
    parents: HashSet<EntityUid>,
) -> Entity {
    let attrs: HashMap<String, Rx> = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // Only extension-function calls can fail to evaluate; these are literals.
    #[allow(clippy::expect_used)]
    Entity::new(uid, attrs, parents).expect("literal attributes evaluate")
}

/// The `Tenant` entity of a tenant record.
pub fn tenant_entity(t: &Tenant) -> Entity {
    entity(
        tenant_uid(&t.tenant_id),
        [
            ("name", string(&t.name)),
            ("status", string(t.status.as_str())),
            (
                "subscription",
                record([
                    ("tier", string(t.subscription.tier.as_str())),
                    (
                        "startDate",
                        string(&t.subscription.start_date.format("%Y-%m-%d").to_string()),
                    ),
                    ("features", strings(&t.subscription.features)),
                ]),
            ),
            (
                "limits",
                record([
                    ("maxDocuments", long(t.limits.max_documents)),
                    ("maxUsers", long(t.limits.max_users)),
                    ("maxStorageGB", long(t.limits.max_storage_gb)),
                    ("maxQueriesPerMonth", long(t.limits.max_queries_per_month)),
                ]),
            ),
            (
                "usage",
                record([
                    ("documents", long(t.usage.documents)),
                    ("users", long(t.usage.users)),
                    ("storageGB", long(t.usage.storage_gb)),
                    // Rolls over with the month even before a new count.
                    (
                        "queriesThisMonth",
                        long(t.usage.queries_in(&crate::model::current_month())),
                    ),
                ]),
            ),
            (
                "settings",
                record([
                    ("dataRetentionDays", long(t.settings.data_retention_days)),
                    ("allowedFileTypes", strings(&t.settings.allowed_file_types)),
                ]),
            ),
            ("remaining", remaining(t)),
        ],
        HashSet::new(),
    )
}

/// Another tenant as a principal may know it: its id, and no facts. A
/// question about a tenant other than the caller's own is first decided
/// against this entity, so the answer can depend neither on what that
/// tenant's record says nor on whether it exists (see [`crate::authz`]).
pub fn sealed_tenant_entity(id: &TenantId) -> Entity {
    entity(tenant_uid(id), [], HashSet::new())
}

/// Bytes in the GiB of `maxStorageGB` as the policies count it.
const GIB: i64 = 1 << 30;

/// What is left of a tenant's limits, computed here so that policies
/// compare instead of doing arithmetic (which can overflow, and an error
/// switches a `forbid` off). Negative when usage is over the limit.
fn remaining(t: &Tenant) -> Rx {
    let left = |max: u32, used: u32| i64::from(max) - i64::from(used);
    record([
        (
            "documents",
            long(left(t.limits.max_documents, t.usage.documents)),
        ),
        (
            "storageBytes",
            long(left(t.limits.max_storage_gb, t.usage.storage_gb) * GIB),
        ),
        (
            "queriesThisMonth",
            long(left(
                t.limits.max_queries_per_month,
                t.usage.queries_in(&crate::model::current_month()),
            )),
        ),
    ])
}

/// The `Document` entity of a document record, with `sharedWith` split into
/// reader/editor sets (an edit grant is also a read grant).
pub fn document_entity(d: &Document) -> Entity {
    let mut readers = Vec::new();
    let mut editors = Vec::new();
    let mut reader_roles = Vec::new();
    let mut editor_roles = Vec::new();
    for share in &d.shared_with {
        let (target, edit) = match &share.grantee {
            Grantee::User(u) => (Rx::new_entity_uid(user_uid(u)), &mut editors),
            Grantee::Role(r) => (Rx::new_entity_uid(role_uid(r)), &mut editor_roles),
        };
        if share.permission == Permission::Edit {
            edit.push(target.clone());
        }
        match &share.grantee {
            Grantee::User(_) => readers.push(target),
            Grantee::Role(_) => reader_roles.push(target),
        }
    }
    entity(
        document_uid(&d.document_id),
        [
            ("tenant", Rx::new_entity_uid(tenant_uid(&d.tenant_id))),
            ("owner", Rx::new_entity_uid(user_uid(&d.owner_id))),
            ("visibility", string(d.visibility.as_str())),
            ("classification", long(d.classification.get())),
            ("fileType", string(&d.file_type)),
            (
                "sizeBytes",
                long(i64::try_from(d.size_bytes).unwrap_or(i64::MAX)),
            ),
            ("readers", Rx::new_set(readers)),
            ("editors", Rx::new_set(editors)),
            ("readerRoles", Rx::new_set(reader_roles)),
            ("editorRoles", Rx::new_set(editor_roles)),
            ("deleted", Rx::new_bool(d.deleted_at.is_some())),
        ],
        HashSet::new(),
    )
}

/// The principal's facts: its claims, as a verified token (or, in trusted
/// mode, the trusted caller) states them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub id: UserId,
    pub tenant: TenantId,
    pub roles: Vec<RoleName>,
    pub clearance: Level,
}

/// The `User` entity of a principal, member of its roles.
pub fn user_entity(p: &Principal) -> Entity {
    entity(
        user_uid(&p.id),
        [
            ("tenant", Rx::new_entity_uid(tenant_uid(&p.tenant))),
            ("clearance", long(p.clearance.get())),
        ],
        p.roles.iter().map(role_uid).collect(),
    )
}
