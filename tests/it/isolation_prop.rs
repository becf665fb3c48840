//! Generated requests across tenants: for every request whose principal's
//! tenant differs from the resource's tenant, the decision is Deny. The one
//! exception is deliberate and narrow: a platform administrator using a
//! management action on a tenant. Documents are given to the policies
//! directly (not through the store), so the `forbid` itself is what is tested.

use std::collections::BTreeSet;

use cedar_policy::Authorizer;
use cedargate::authz::entities::{
    document_entity, document_uid, tenant_entity, tenant_uid, Principal,
};
use cedargate::authz::{base_entities, evaluate, parse_context, Effect};
use cedargate::ids::{DocumentId, RoleName, TenantId, UserId};
use cedargate::model::*;
use cedargate::policy::{self, PolicySnapshot, PolicySources, ResourceKind};
use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

use crate::helpers::repo_dir;

const TENANTS: &[&str] = &["t1", "t2", "t3", "acme", "globex"];
const USERS: &[&str] = &["alice", "bob", "carol", "root"];
const ROLES: &[&str] = &["admin", "editor", "viewer", "auditor", "platform-admin"];
const FILE_TYPES: &[&str] = &["pdf", "docx", "exe"];
const FEATURES: &[&str] = &["export", "audit-logs", "sso"];
const MANAGEMENT: &[&str] = &[
    "ViewUsage",
    "ListDocuments",
    "ViewAuditLogs",
    "Export",
    "ManageTenant",
    "ListTenants",
    "CreateTenant",
    "UpdateTenantName",
    "UpdateTenantSettings",
    "UpdateTenantSubscription",
    "UpdateTenantLimits",
    "UpdateTenantStatus",
    "UpdateTenantBilling",
    "ReadChanges",
    "ViewPolicies",
    "ManagePolicies",
];

fn subset(items: &'static [&'static str]) -> impl Strategy<Value = BTreeSet<String>> {
    proptest::sample::subsequence(items, 0..=items.len())
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn tenant_record(id: &'static str) -> impl Strategy<Value = Tenant> {
    (
        select(
            &[
                TenantStatus::Active,
                TenantStatus::Suspended,
                TenantStatus::Trial,
                TenantStatus::Cancelled,
            ][..],
        ),
        select(&[Tier::Basic, Tier::Pro, Tier::Enterprise][..]),
        subset(FEATURES),
        (0u32..5, 0u32..5, 0u32..5, 0u32..5),
        subset(FILE_TYPES),
    )
        .prop_map(
            move |(status, tier, features, (max_docs, docs, max_q, q), types)| Tenant {
                tenant_id: TenantId::parse(id).unwrap(),
                created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
                name: id.to_string(),
                status,
                subscription: Subscription {
                    tier,
                    start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    features,
                },
                limits: Limits {
                    max_documents: max_docs,
                    max_users: 10,
                    max_storage_gb: 5,
                    max_queries_per_month: max_q,
                },
                usage: Usage {
                    documents: docs,
                    users: 1,
                    storage_gb: 0,
                    queries_this_month: q,
                    month: None,
                    storage_bytes: None,
                },
                settings: Settings {
                    data_retention_days: 30,
                    allowed_file_types: types,
                    recovery_window_days: None,
                },
                cancelled_at: None,
                purged_at: None,
                billing: None,
            },
        )
}

fn share() -> impl Strategy<Value = Share> {
    (
        prop_oneof![
            select(USERS).prop_map(|u| Grantee::User(UserId::parse(u).unwrap())),
            select(ROLES).prop_map(|r| Grantee::Role(RoleName::parse(r).unwrap())),
        ],
        select(&[Permission::Read, Permission::Edit][..]),
    )
        .prop_map(|(grantee, permission)| Share {
            grantee,
            permission,
        })
}

fn document(tenant: &'static str) -> impl Strategy<Value = Document> {
    (
        select(USERS),
        select(&[Visibility::Private, Visibility::Shared, Visibility::Public][..]),
        0u8..=3,
        proptest::collection::vec(share(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            move |(owner, visibility, class, shared_with, deleted)| Document {
                tenant_id: TenantId::parse(tenant).unwrap(),
                document_id: DocumentId::parse("doc-1").unwrap(),
                owner_id: UserId::parse(owner).unwrap(),
                visibility,
                classification: Level::new(class).unwrap(),
                file_type: "pdf".into(),
                size_bytes: 10,
                shared_with,
                deleted_at: deleted.then(|| Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()),
            },
        )
}

#[derive(Debug, Clone)]
struct Case {
    principal: Principal,
    own: Tenant,
    other: Tenant,
    action: String,
    document: Option<Document>,
    file_type: &'static str,
    size: i64,
}

fn case(actions: Vec<String>) -> impl Strategy<Value = Case> {
    (select(TENANTS), select(TENANTS))
        .prop_filter("different tenants", |(a, b)| a != b)
        .prop_flat_map(move |(a, b)| {
            (
                select(USERS),
                subset(ROLES),
                0u8..=3,
                tenant_record(a),
                tenant_record(b),
                select(actions.clone()),
                document(b),
                select(FILE_TYPES),
                0i64..(6 << 30),
            )
        })
        .prop_map(
            |(user, roles, clearance, own, other, action, doc, file_type, size)| {
                let principal = Principal {
                    id: UserId::parse(user).unwrap(),
                    tenant: own.tenant_id.clone(),
                    roles: roles
                        .iter()
                        .map(|r| RoleName::parse(r.as_str()).unwrap())
                        .collect(),
                    clearance: Level::new(clearance).unwrap(),
                };
                Case {
                    principal,
                    own,
                    other,
                    action,
                    document: Some(doc),
                    file_type,
                    size,
                }
            },
        )
}

fn snapshot() -> PolicySnapshot {
    policy::load(&PolicySources {
        policy_dir: repo_dir("policies"),
        schema_dir: repo_dir("schemas"),
    })
    .expect("repository policies load")
}

/// The context, the tenant and resource entities, and the resource of a
/// case.
fn parts(
    snap: &PolicySnapshot,
    c: &Case,
) -> (
    cedar_policy::Context,
    Vec<cedar_policy::Entity>,
    cedar_policy::EntityUid,
) {
    let action = &snap.actions[&c.action];
    let context = match c.action.as_str() {
        "CreateDocument" => json!({"fileType": c.file_type, "sizeBytes": c.size}),
        "UpdateTenantSettings" => {
            json!({"dataRetentionDays": c.size % 5000, "allowedFileTypes": [c.file_type]})
        }
        _ => json!({}),
    };
    let context = parse_context(snap, action, &c.action, &context).unwrap();
    let mut entities = vec![tenant_entity(&c.own)];
    if c.other.tenant_id != c.own.tenant_id {
        entities.push(tenant_entity(&c.other));
    }
    let resource = match action.resource {
        ResourceKind::Document => {
            let d = c.document.as_ref().unwrap();
            entities.push(document_entity(d));
            document_uid(&d.document_id)
        }
        ResourceKind::Tenant => tenant_uid(&c.other.tenant_id),
    };
    (context, entities, resource)
}

fn decide(snap: &PolicySnapshot, authorizer: &Authorizer, c: &Case) -> (Effect, Vec<String>) {
    let (effect, by, _) = decide_with(snap, authorizer, c, None);
    (effect, by)
}

/// [`decide`] with the principal's tenant's own policies for the action.
fn decide_with(
    snap: &PolicySnapshot,
    authorizer: &Authorizer,
    c: &Case,
    own: Option<&cedargate::policy::tenant::Slice>,
) -> (Effect, Vec<String>, Vec<String>) {
    let action = &snap.actions[&c.action];
    let (context, entities, resource) = parts(snap, c);
    let base = base_entities(action, entities).unwrap();
    let ev = evaluate(
        authorizer,
        snap,
        action,
        &c.principal,
        resource,
        context,
        &base,
        own,
    )
    .unwrap();
    (ev.effect, ev.determining_policies, ev.errors)
}

#[test]
fn cross_tenant_requests_are_denied() {
    let snap = snapshot();
    let authorizer = Authorizer::new();
    let mut actions: Vec<String> = snap.actions.keys().cloned().collect();
    actions.sort();
    assert!(actions.len() >= 11, "actions: {actions:?}");
    let config = ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let allowed_platform = std::cell::Cell::new(0u32);
    proptest!(config, |(c in case(actions))| {
        let (effect, by) = decide(&snap, &authorizer, &c);
        let platform = c.principal.roles.iter().any(|r| r.as_str() == "platform-admin");
        let carve_out = platform
            && snap.actions[&c.action].resource == ResourceKind::Tenant
            && MANAGEMENT.contains(&c.action.as_str());
        if carve_out {
            if effect == Effect::Allow {
                allowed_platform.set(allowed_platform.get() + 1);
            }
        } else {
            prop_assert_eq!(effect, Effect::Deny, "allowed by {:?}: {:?}", by, c);
            prop_assert!(
                by.iter().any(|p| p.starts_with("tenant-isolation.")),
                "denied, but not by tenant isolation ({:?}): {:?}", by, c
            );
        }
    });
    // The carve-out is exercised, not vacuous.
    assert!(allowed_platform.get() > 0);
}

/// A case decided by Cedar over the whole policy set: the effect, the
/// sorted determining policies, the number of errors.
fn whole_set(
    snap: &PolicySnapshot,
    authorizer: &Authorizer,
    c: &Case,
) -> (Effect, Vec<String>, usize) {
    whole_of(snap, &snap.policies, authorizer, c)
}

/// The decision of `policies` as one set, as Cedar makes it.
fn whole_of(
    snap: &PolicySnapshot,
    policies: &cedar_policy::PolicySet,
    authorizer: &Authorizer,
    c: &Case,
) -> (Effect, Vec<String>, usize) {
    use cedar_policy::{Entities, Request};
    use cedargate::authz::entities::{user_entity, user_uid};

    let action = &snap.actions[&c.action];
    let (context, mut entities, resource) = parts(snap, c);
    entities.extend([user_entity(&c.principal), action.entity.clone()]);
    let request = Request::new(
        user_uid(&c.principal.id),
        action.uid.clone(),
        resource,
        context,
        Some(&snap.schema),
    )
    .unwrap();
    let entities = Entities::from_entities(entities, None).unwrap();
    let full = authorizer.is_authorized(&request, policies, &entities);
    let mut by: Vec<String> = full.diagnostics().reason().map(|p| p.to_string()).collect();
    by.sort();
    let effect = match full.decision() {
        cedar_policy::Decision::Allow => Effect::Allow,
        cedar_policy::Decision::Deny => Effect::Deny,
    };
    (effect, by, full.diagnostics().errors().count())
}

/// Every action evaluates only the policies whose scope can match it. Over
/// random requests, inside one tenant and across tenants, the slice gives
/// exactly what the whole policy set gives.
#[test]
fn action_slices_decide_like_the_whole_policy_set() {
    let snap = snapshot();
    let authorizer = Authorizer::new();
    let mut actions: Vec<String> = snap.actions.keys().cloned().collect();
    actions.sort();
    for a in snap.actions.values() {
        assert!(a.policies.policies().count() < snap.policies.policies().count());
    }
    let config = ProptestConfig {
        cases: 3_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(mut c in case(actions), same_tenant in any::<bool>())| {
        if same_tenant {
            // The document and the tenant resource are the principal's own.
            c.other.tenant_id = c.own.tenant_id.clone();
            if let Some(d) = c.document.as_mut() {
                d.tenant_id = c.own.tenant_id.clone();
            }
        }
        let (effect, mut by) = decide(&snap, &authorizer, &c);
        by.sort();
        let (full_effect, full_by, errors) = whole_set(&snap, &authorizer, &c);
        prop_assert_eq!(errors, 0);
        prop_assert_eq!(effect, full_effect, "{:?}", c);
        prop_assert_eq!(by, full_by, "{:?}", c);
    });
}

/// Document decisions from residual policies (the principal's tenant
/// known, the document not) are Cedar's full evaluations: same effect, same
/// determining policies, same reason, over generated tenant records,
/// principals and documents, inside one tenant and across tenants.
#[test]
fn residual_decisions_are_full_evaluations() {
    use cedargate::authz::residual::{partial_evaluate, Residuals};
    use cedargate::search::condition::view_of;

    let snap = snapshot();
    let authorizer = Authorizer::new();
    let mut actions: Vec<String> = snap
        .actions
        .iter()
        .filter(|(_, a)| a.resource == ResourceKind::Document)
        .map(|(name, _)| name.clone())
        .collect();
    actions.sort();
    assert_eq!(actions.len(), 5, "{actions:?}");
    let config = ProptestConfig {
        cases: 3_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let (decided, allowed) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    proptest!(config, |(mut c in case(actions), same_tenant in any::<bool>())| {
        if same_tenant {
            if let Some(d) = c.document.as_mut() {
                d.tenant_id = c.own.tenant_id.clone();
            }
        }
        let action = &snap.actions[&c.action];
        let (context, entities, resource) = parts(&snap, &c);
        let partial = partial_evaluate(&snap, action, &c.principal, context.clone(), &tenant_entity(&c.own), None).unwrap();
        let Some(residuals) = Residuals::new(partial) else {
            return Ok(());
        };
        let document = document_entity(c.document.as_ref().unwrap());
        let fast = residuals.decide(&view_of(&document)).expect("the residuals read every document attribute");
        let base = base_entities(action, entities).unwrap();
        let full = evaluate(&authorizer, &snap, action, &c.principal, resource, context, &base, None).unwrap();
        prop_assert_eq!(&fast, &full, "{:?}", c);
        decided.set(decided.get() + 1);
        allowed.set(allowed.get() + u32::from(full.effect == Effect::Allow));
    });
    // Not vacuous: residuals decided nearly every case, both ways.
    assert!(decided.get() > 2_700, "{}", decided.get());
    assert!(
        allowed.get() > 100 && allowed.get() < decided.get() - 100,
        "{}",
        allowed.get()
    );
}

/// The shipped policies plus thousands of generated ones scoped to roles
/// and users (permits and forbids, on documents and tenants), loaded from a
/// policy directory like any other. With the principal index, over 10,000
/// generated requests, every decision, determining policy set and error
/// list is exactly the whole set's — evaluated, and from residual policies
/// (partial evaluation over the indexed set) for documents.
#[test]
fn the_principal_index_decides_like_the_whole_policy_set() {
    use cedargate::authz::residual::{partial_evaluate, Residuals};
    use cedargate::search::condition::view_of;

    const GENERATED_ROLES: usize = 1_500;
    const GENERATED_USERS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(repo_dir("policies")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
        }
    }
    let doc_actions = ["Read", "Update", "Delete", "Share"];
    let mut text = String::new();
    for i in 0..GENERATED_ROLES {
        let action = doc_actions[i % doc_actions.len()];
        text.push_str(&format!(
            "@id(\"gen.role-{i}\")\npermit (principal in CedarGate::Role::\"r{i}\", action == CedarGate::Action::\"{action}\", resource is CedarGate::Document)\nwhen {{ resource.classification <= {} && principal.clearance >= {} }};\n",
            i % 4,
            i % 3
        ));
        if i % 15 == 0 {
            text.push_str(&format!(
                "@id(\"gen.role-forbid-{i}\")\nforbid (principal in CedarGate::Role::\"r{i}\", action == CedarGate::Action::\"Read\", resource is CedarGate::Document);\n"
            ));
        }
        if i % 10 == 0 {
            text.push_str(&format!(
                "@id(\"gen.role-tenant-{i}\")\npermit (principal in CedarGate::Role::\"r{i}\", action == CedarGate::Action::\"ViewUsage\", resource is CedarGate::Tenant);\n"
            ));
        }
    }
    for j in 0..GENERATED_USERS {
        let action = doc_actions[j % doc_actions.len()];
        text.push_str(&format!(
            "@id(\"gen.user-{j}\")\npermit (principal == CedarGate::User::\"u{j}\", action == CedarGate::Action::\"{action}\", resource is CedarGate::Document)\nwhen {{ resource.visibility == \"public\" }};\n"
        ));
    }
    std::fs::write(policies.join("generated.cedar"), text).unwrap();
    let snap = policy::load(&PolicySources {
        policy_dir: policies,
        schema_dir: repo_dir("schemas"),
    })
    .expect("generated policies load");
    assert!(snap.policies.policies().count() > 2_000);
    for action in ["Read", "Update", "ViewUsage"] {
        assert!(snap.actions[action].index.is_some(), "{action} is indexed");
    }
    let authorizer = Authorizer::new();
    let mut actions: Vec<String> = snap.actions.keys().cloned().collect();
    actions.sort();
    let config = ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let role = prop_oneof![
        select(ROLES).prop_map(String::from),
        (0..GENERATED_ROLES + 20).prop_map(|i| format!("r{i}")),
    ];
    let user = prop_oneof![
        select(USERS).prop_map(String::from),
        (0..GENERATED_USERS + 20).prop_map(|j| format!("u{j}")),
    ];
    let (allowed, residual) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    proptest!(config, |(
        mut c in case(actions),
        same_tenant in any::<bool>(),
        roles in proptest::collection::vec(role, 0..4),
        id in user,
    )| {
        if same_tenant {
            c.other.tenant_id = c.own.tenant_id.clone();
            if let Some(d) = c.document.as_mut() {
                d.tenant_id = c.own.tenant_id.clone();
            }
        }
        c.principal.id = UserId::parse(&id).unwrap();
        c.principal.roles = roles.iter().map(|r| RoleName::parse(r).unwrap()).collect();
        let (effect, mut by) = decide(&snap, &authorizer, &c);
        by.sort();
        let (full_effect, full_by, errors) = whole_set(&snap, &authorizer, &c);
        prop_assert_eq!(errors, 0);
        prop_assert_eq!(effect, full_effect, "{:?}", c);
        prop_assert_eq!(&by, &full_by, "{:?}", c);
        if effect == Effect::Allow {
            allowed.set(allowed.get() + 1);
        }
        // Residual decisions (partial evaluation with the principal known,
        // over the indexed policies) give the same.
        let action = &snap.actions[&c.action];
        if action.resource == ResourceKind::Document {
            let (context, _, _) = parts(&snap, &c);
            let partial = partial_evaluate(&snap, action, &c.principal, context, &tenant_entity(&c.own), None).unwrap();
            if let Some(residuals) = Residuals::new(partial) {
                let document = document_entity(c.document.as_ref().unwrap());
                let fast = residuals.decide(&view_of(&document)).expect("the residuals read every document attribute");
                let mut fast_by = fast.determining_policies.clone();
                fast_by.sort();
                prop_assert_eq!(fast.effect, full_effect, "residual {:?}", c);
                prop_assert_eq!(fast_by, full_by, "residual {:?}", c);
                residual.set(residual.get() + 1);
            }
        }
    });
    // The cases reach both answers, and residuals decided many.
    assert!(allowed.get() > 500, "allowed {}", allowed.get());
    assert!(residual.get() > 1_500, "residual {}", residual.get());
}

/// Tenants' own policies, written to reach as far as they can — everything,
/// other tenants named in conditions, forbids of everything, template
/// links — are confined to their tenant: evaluating only the principal's
/// tenant's policies beside the global ones (as the engine does) gives
/// exactly what every tenant's policies and the global ones give as one
/// Cedar policy set; no request about another tenant is answered
/// differently for them; and what they add is only ever an Allow of a
/// delegable action inside the tenant.
#[test]
fn tenant_policies_are_confined_to_their_tenant() {
    use cedargate::ids::PolicyName;
    use cedargate::policy::tenant::{compile_all, Definition, EntityRef, TenantPolicy};

    let snap = snapshot();
    let authorizer = Authorizer::new();
    let stat = |tenant: &str, id: &str, text: &str| TenantPolicy {
        tenant_id: TenantId::parse(tenant).unwrap(),
        policy_id: PolicyName::parse(id).unwrap(),
        definition: Definition::Static {
            statement: text.into(),
        },
        description: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        updated_by: None,
    };
    let link = |tenant: &str, id: &str, template: &str, role: &str| TenantPolicy {
        definition: Definition::TemplateLinked {
            policy_template_id: template.into(),
            principal: Some(EntityRef {
                entity_type: "CedarGate::Role".into(),
                entity_id: role.into(),
            }),
            resource: None,
        },
        ..stat(tenant, id, "")
    };
    let everything = "permit (principal, action, resource);";
    let records = vec![
        stat("t1", "everything", everything),
        stat(
            "t1",
            "names-t2",
            r#"permit (principal, action, resource) when { resource has tenant && resource.tenant == CedarGate::Tenant::"t2" };"#,
        ),
        stat("t2", "nothing", "forbid (principal, action, resource);"),
        stat(
            "acme",
            "viewers-read",
            r#"permit (principal in CedarGate::Role::"viewer", action == CedarGate::Action::"Read", resource is CedarGate::Document) when { resource.classification <= 2 };"#,
        ),
        link("acme", "admins-cannot-share", "role-cannot-share", "admin"),
        link(
            "acme",
            "auditors-read",
            "role-reads-tenant-documents",
            "auditor",
        ),
        stat(
            "globex",
            "exports",
            r#"permit (principal, action in [CedarGate::Action::"Export", CedarGate::Action::"ViewAuditLogs"], resource is CedarGate::Tenant);"#,
        ),
        stat(
            "t3",
            "editors-not-own",
            r#"forbid (principal in CedarGate::Role::"editor", action, resource is CedarGate::Document) when { resource.owner == principal };"#,
        ),
        stat(
            "t3",
            "platform-everything",
            r#"permit (principal in CedarGate::Role::"platform-admin", action, resource);"#,
        ),
    ];
    // globex: enough role-scoped policies that its slices are indexed by
    // principal (src/policy/tenant.rs), permits and forbids.
    let mut records = records;
    for (i, role) in ROLES.iter().enumerate() {
        for (j, action) in ["Read", "Update", "Share"].iter().enumerate() {
            let effect = if (i + j) % 4 == 3 { "forbid" } else { "permit" };
            records.push(stat(
                "globex",
                &format!("{role}-{action}").to_lowercase(),
                &format!(
                    r#"{effect} (principal in CedarGate::Role::"{role}", action == CedarGate::Action::"{action}", resource is CedarGate::Document) when {{ resource.classification <= {} }};"#,
                    (i + j) % 4
                ),
            ));
        }
    }
    let mut compiled = std::collections::HashMap::new();
    let mut whole = snap.policies.clone();
    for tenant in TENANTS {
        let mine: Vec<TenantPolicy> = records
            .iter()
            .filter(|r| r.tenant_id.as_str() == *tenant)
            .cloned()
            .collect();
        let c = compile_all(&snap, &mine);
        assert!(c.problems.is_empty(), "{tenant}: {:?}", c.problems);
        for p in c.all.policies() {
            whole.add(p.clone()).unwrap();
        }
        compiled.insert(tenant.to_string(), c);
    }
    assert!(compiled["globex"].slice("Read").unwrap().is_indexed());
    assert!(!compiled["acme"].slice("Read").unwrap().is_indexed());
    let delegable = cedargate::policy::tenant::delegable(&snap);
    assert!(delegable.contains(&"Read".to_string()));
    assert!(!delegable.contains(&"UpdateTenantLimits".to_string()));
    let mut actions: Vec<String> = snap.actions.keys().cloned().collect();
    actions.sort();
    let config = ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let (gained, by_tenant) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    proptest!(config, |(mut c in case(actions), same_tenant in any::<bool>())| {
        if same_tenant {
            c.other.tenant_id = c.own.tenant_id.clone();
            if let Some(d) = c.document.as_mut() {
                d.tenant_id = c.own.tenant_id.clone();
            }
        }
        let own = compiled[c.principal.tenant.as_str()]
            .slice(&c.action)
            ;
        let (effect, mut by, errors) = decide_with(&snap, &authorizer, &c, own);
        by.sort();
        let (full_effect, full_by, full_errors) = whole_of(&snap, &whole, &authorizer, &c);
        prop_assert_eq!(errors.len(), full_errors, "{:?}", c);
        prop_assert_eq!(effect, full_effect, "{:?}", c);
        prop_assert_eq!(&by, &full_by, "{:?}", c);
        let (without, without_by) = decide(&snap, &authorizer, &c);
        if !same_tenant {
            // Nothing of any tenant's own changes a question about another
            // tenant.
            prop_assert_eq!(effect, without, "{:?}", c);
            prop_assert_eq!(&by, &without_by, "{:?}", c);
        }
        if effect == Effect::Allow && without == Effect::Deny {
            prop_assert!(same_tenant, "{:?}", c);
            prop_assert!(delegable.contains(&c.action), "{:?}", c);
            gained.set(gained.get() + 1);
        }
        if by.iter().any(|p| p.starts_with("tenant/")) {
            let prefix = format!("tenant/{}/", c.principal.tenant);
            prop_assert!(by.iter().filter(|p| p.starts_with("tenant/")).all(|p| p.starts_with(&prefix)), "{:?}", c);
            by_tenant.set(by_tenant.get() + 1);
        }
    });
    assert!(gained.get() > 30, "gained {}", gained.get());
    assert!(
        by_tenant.get() > 1_000,
        "decided by tenant policies {}",
        by_tenant.get()
    );
}
