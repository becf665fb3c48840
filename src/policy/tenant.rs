//! Tenant policies: Cedar policies a tenant writes for itself, kept in the
//! store beside its record, next to the global policies from Git.
//!
//! A tenant policy is either a static policy (Cedar text) or a link of a
//! global template (`policies/templates/*.cedar`) with slot values, the two
//! kinds of Amazon Verified Permissions. It is checked when written:
//! exactly one policy, strictly valid against the schema, and a `permit`
//! names only actions of the `TenantPolicyAction` group (what a tenant may
//! grant: its documents, search, usage, audit logs, export — never its
//! record, subscription, limits, status or policies). Problems come back
//! with `line:column` in the statement.
//!
//! **Confined by construction.** The policy that is evaluated is not the
//! text as written: [`compile`] puts a first condition in front of the
//! author's (Cedar's conditions are a conjunction, read left to right, so
//! when it is false nothing of the author's is evaluated — no match, no
//! error):
//!
//! ```cedar
//! when { principal has tenant && principal.tenant == CedarGate::Tenant::"<t>" &&
//!        ((resource is CedarGate::Document && resource has tenant &&
//!          resource.tenant == CedarGate::Tenant::"<t>") ||
//!         (resource is CedarGate::Tenant && resource == CedarGate::Tenant::"<t>")) &&
//!        action in CedarGate::Action::"TenantPolicyAction" }   // permits only
//! ```
//!
//! (a policy whose scope fixes the resource's type gets only that type's
//! branch), so whatever the text says, it concerns only its tenant's principals
//! acting on its tenant's resources, and a permit only the delegable
//! actions. The global forbids (tenant isolation, status, clearance,
//! quotas, features) are evaluated beside it and still deny. The engine
//! evaluates a tenant's policies only for its own principals; that is an
//! optimisation, the condition is the guarantee (tested by evaluating every
//! tenant's policies together against the engine's answer).
//!
//! Ids: a tenant policy is named `tenant/<tenantId>/<policyId>` in
//! decisions, audit records and `explain`, so it can never be mistaken for
//! a global policy (global `@id`s may not start with `tenant/`).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Effect as CedarEffect, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, SlotId, ValidationMode,
};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::index::PrincipalIndex;
use super::load::{problem, Problem};
use super::PolicySnapshot;
use crate::ids::{PolicyName, TenantId};

/// The action group a tenant's permits may grant.
pub const DELEGABLE_GROUP: &str = "TenantPolicyAction";
/// The most Cedar text one tenant policy may have.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;
/// The most policies one tenant may have.
pub const MAX_PER_TENANT: usize = 100;
/// The prefix of every tenant policy's id in decisions.
pub const ID_PREFIX: &str = "tenant/";

/// A tenant's own policy, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantPolicy {
    pub tenant_id: TenantId,
    pub policy_id: PolicyName,
    pub definition: Definition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Who wrote this version (the caller's user id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// What a tenant policy says: Amazon Verified Permissions' two kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Definition {
    /// One policy in Cedar syntax.
    Static { statement: String },
    /// A global template with its slots filled.
    #[serde(rename_all = "camelCase")]
    TemplateLinked {
        policy_template_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<EntityRef>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<EntityRef>,
    },
}

/// An entity named in a template link (`{"entityType": "CedarGate::Role",
/// "entityId": "contractor"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRef {
    pub entity_type: String,
    pub entity_id: String,
}

impl TenantPolicy {
    /// The id this policy has in decisions: `tenant/<tenant>/<policy>`.
    pub fn cedar_id(&self) -> String {
        cedar_id(&self.tenant_id, &self.policy_id)
    }

    /// A content hash of the record, as its ETag.
    pub fn version(&self) -> String {
        use sha2::{Digest, Sha256};
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(&bytes)[..16])
    }
}

/// `tenant/<tenant>/<policy>`.
pub fn cedar_id(tenant: &TenantId, policy: &PolicyName) -> String {
    format!("{ID_PREFIX}{tenant}/{policy}")
}

/// The tenant a decision's policy id names, if it is a tenant policy's.
pub fn tenant_of(policy_id: &str) -> Option<&str> {
    policy_id.strip_prefix(ID_PREFIX)?.split('/').next()
}

fn located(p: &TenantPolicy, line: usize, column: usize, message: String) -> Problem {
    Problem {
        file: PathBuf::from(p.policy_id.as_str()),
        line,
        column,
        message,
    }
}

/// Checks `p` against `snapshot` and returns the policy as it is
/// evaluated: with the tenant's confinement in front of its conditions.
/// Problems name `line:column` in the statement (for a template link, in
/// the template).
pub fn compile(snapshot: &PolicySnapshot, p: &TenantPolicy) -> Result<Policy, Vec<Problem>> {
    let guards = Guards::new(&p.tenant_id).map_err(|e| vec![located(p, 0, 0, e)])?;
    compile_with(snapshot, p, &guards)
}

/// A tenant's confinement conditions, in Cedar's JSON form, for its
/// permits and its forbids.
///
/// A policy whose scope already says what its resource is (`resource is
/// Document`, `resource == Tenant::"…"`, …) gets the shorter guard for that
/// type: the scope holds before any condition is evaluated, so the other
/// branch could never be taken (and a guard is about half of a compiled
/// policy's memory).
struct Guards {
    /// By (resource type known from the scope, permit).
    by: HashMap<(Resource, bool), Json>,
}

/// What a policy's scope says its resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Resource {
    Document,
    Tenant,
    Any,
}

impl Resource {
    fn of(policy: &Policy) -> Resource {
        use cedar_policy::ResourceConstraint as R;
        let ty = match policy.resource_constraint() {
            R::Is(t) | R::IsIn(t, _) => t,
            R::Eq(uid) => uid.type_name().clone(),
            R::Any | R::In(_) => return Resource::Any,
        };
        match ty.basename() {
            "Document" => Resource::Document,
            "Tenant" => Resource::Tenant,
            _ => Resource::Any,
        }
    }
}

impl Guards {
    fn new(tenant: &TenantId) -> Result<Self, String> {
        let t = crate::authz::entities::tenant_uid(tenant).to_string();
        let ns = crate::authz::entities::NAMESPACE;
        let document = format!("resource has tenant && resource.tenant == {t}");
        let own = format!("resource == {t}");
        let json = |cond: String| -> Result<Json, String> {
            let text = format!("permit (principal, action, resource) when {{ {cond} }};");
            let p = Policy::parse(None, text).map_err(|e| e.to_string())?;
            Ok(p.to_json().map_err(|e| e.to_string())?["conditions"][0].clone())
        };
        let mut by = HashMap::new();
        for (resource, cond) in [
            (Resource::Document, document.clone()),
            (Resource::Tenant, own.clone()),
            (
                Resource::Any,
                format!("((resource is {ns}::Document && {document}) || (resource is {ns}::Tenant && {own}))"),
            ),
        ] {
            let scope = format!("principal has tenant && principal.tenant == {t} && {cond}");
            by.insert(
                (resource, true),
                json(format!("{scope} && action in {}", group_uid()))?,
            );
            by.insert((resource, false), json(scope)?);
        }
        Ok(Guards { by })
    }
}

fn compile_with(
    snapshot: &PolicySnapshot,
    p: &TenantPolicy,
    guards: &Guards,
) -> Result<Policy, Vec<Problem>> {
    let id = PolicyId::new(p.cedar_id());
    let nowhere = |message: String| vec![located(p, 0, 0, message)];
    let (linked, text) = match &p.definition {
        Definition::Static { statement } => {
            if statement.len() > MAX_STATEMENT_BYTES {
                return Err(nowhere(format!(
                    "the statement is {} bytes; at most {MAX_STATEMENT_BYTES}",
                    statement.len()
                )));
            }
            let parsed = PolicySet::from_str(statement).map_err(|errs| {
                let file = PathBuf::from(p.policy_id.as_str());
                errs.iter()
                    .map(|e| problem(&file, statement, e, e.to_string()))
                    .collect::<Vec<_>>()
            })?;
            if parsed.templates().next().is_some() {
                return Err(nowhere(
                    "a static policy has no slots (?principal, ?resource); link a template instead"
                        .into(),
                ));
            }
            let mut policies = parsed.policies();
            let (Some(one), None) = (policies.next(), policies.next()) else {
                return Err(nowhere("the statement must hold exactly one policy".into()));
            };
            let mut set = PolicySet::new();
            set.add(one.new_id(id.clone()))
                .map_err(|e| nowhere(e.to_string()))?;
            (set, statement.as_str())
        }
        Definition::TemplateLinked {
            policy_template_id,
            principal,
            resource,
        } => {
            let tid = PolicyId::new(policy_template_id);
            let Some(template) = snapshot.templates.template(&tid) else {
                let known: Vec<String> = snapshot
                    .templates
                    .templates()
                    .map(|t| t.id().to_string())
                    .collect();
                return Err(nowhere(format!(
                    "no template {policy_template_id:?}; known: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            let mut vals = HashMap::new();
            let slots: BTreeSet<SlotId> = template.slots().cloned().collect();
            for (slot, given, name) in [
                (SlotId::principal(), principal, "principal"),
                (SlotId::resource(), resource, "resource"),
            ] {
                match (slots.contains(&slot), given) {
                    (true, Some(e)) => {
                        let ty = EntityTypeName::from_str(&e.entity_type).map_err(|_| {
                            nowhere(format!("{name}: {:?} is not an entity type", e.entity_type))
                        })?;
                        vals.insert(
                            slot,
                            EntityUid::from_type_name_and_id(ty, EntityId::new(&e.entity_id)),
                        );
                    }
                    (true, None) => {
                        return Err(nowhere(format!(
                            "template {policy_template_id:?} needs a {name}"
                        )))
                    }
                    (false, Some(_)) => {
                        return Err(nowhere(format!(
                            "template {policy_template_id:?} has no ?{name} slot"
                        )))
                    }
                    (false, None) => {}
                }
            }
            let mut set = PolicySet::new();
            set.add_template(template.clone())
                .map_err(|e| nowhere(e.to_string()))?;
            set.link(tid, id.clone(), vals)
                .map_err(|e| nowhere(e.to_string()))?;
            (set, "")
        }
    };
    let result = snapshot.validator.validate(&linked, ValidationMode::Strict);
    let file = PathBuf::from(p.policy_id.as_str());
    let problems: Vec<Problem> = result
        .validation_errors()
        .map(|e| problem(&file, text, e, e.to_string()))
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let Some(policy) = linked.policy(&id) else {
        return Err(nowhere("the policy could not be linked".into()));
    };
    if policy.effect() == CedarEffect::Permit {
        let refused = undelegable(snapshot, policy);
        if !refused.is_empty() {
            return Err(nowhere(format!(
                "a tenant policy may permit only the actions of {DELEGABLE_GROUP} ({}); \
                 not {}",
                delegable(snapshot).join(", "),
                refused.join(", ")
            )));
        }
    }
    confine(policy, guards).map_err(|e| nowhere(format!("cannot confine the policy: {e}")))
}

/// The requestable actions a tenant's permits may grant, by name.
pub fn delegable(snapshot: &PolicySnapshot) -> Vec<String> {
    let group = group_uid();
    let mut out: Vec<String> = snapshot
        .actions
        .iter()
        .filter(|(_, a)| a.groups.contains(&group))
        .map(|(name, _)| name.clone())
        .collect();
    out.sort();
    out
}

fn group_uid() -> EntityUid {
    super::action_uid(DELEGABLE_GROUP)
}

/// The actions a permit's scope names that are not delegable.
fn undelegable(snapshot: &PolicySnapshot, policy: &Policy) -> Vec<String> {
    let group = group_uid();
    let named = match policy.action_constraint() {
        ActionConstraint::Any => return Vec::new(),
        ActionConstraint::Eq(uid) => vec![uid],
        ActionConstraint::In(list) => list,
    };
    named
        .into_iter()
        .filter(|uid| {
            let name = uid.id().unescaped();
            let is_group = *uid == group;
            let in_group = snapshot
                .actions
                .get(name)
                .is_some_and(|a| a.groups.contains(&group));
            let group_of_delegables = snapshot
                .action_groups
                .get(uid)
                .is_some_and(|ancestors| ancestors.contains(&group));
            !(is_group || in_group || group_of_delegables)
        })
        .map(|uid| uid.id().unescaped().to_string())
        .collect()
}

/// `policy` with its tenant's confinement as its first condition.
fn confine(policy: &Policy, guards: &Guards) -> Result<Policy, String> {
    let permit = policy.effect() == CedarEffect::Permit;
    let guard = guards
        .by
        .get(&(Resource::of(policy), permit))
        .cloned()
        .ok_or("no guard")?;
    let mut json = policy.to_json().map_err(|e| e.to_string())?;
    match json.get_mut("conditions").and_then(Json::as_array_mut) {
        Some(conditions) => conditions.insert(0, guard),
        None => json["conditions"] = Json::Array(vec![guard]),
    }
    let confined = Policy::from_json(Some(policy.id().clone()), json).map_err(|e| e.to_string())?;
    // Kept as Cedar text rather than as its JSON tree: a policy is cloned
    // into every set it is in (all, its slices, their index and joined
    // sets), and a clone copies that form; text is several times smaller.
    match confined.to_cedar() {
        Some(text) => Policy::parse(Some(policy.id().clone()), text).map_err(|e| e.to_string()),
        None => Ok(confined),
    }
}

/// One action's share of a tenant's policies.
#[derive(Debug, Default)]
pub struct Slice {
    /// The tenant's policies whose scope can match the action.
    pub policies: PolicySet,
    /// Forbids of the tenant that no longer compile under the current
    /// policies and could apply to the action: its decisions fail closed.
    pub broken: Vec<String>,
    /// These policies by principal, when many name one (a tenant's own
    /// roles): a principal gets those of its roles only.
    index: Option<PrincipalIndex>,
    /// These policies joined to the global ones a principal is evaluated
    /// with, most recent last (one Cedar call instead of two).
    merged: Mutex<Vec<Merged>>,
}

/// Index a tenant's slice when this many of its policies name a principal.
const INDEXED: usize = 4;
/// Policy sets a tenant slice's index remembers.
const INDEX_SETS: usize = 16;

/// A global policy set and the tenant's slice joined to it.
#[derive(Debug)]
struct Merged {
    /// The action's generation (its snapshot's).
    action: u64,
    /// The global set when it came from the principal index, and the
    /// tenant's when it came from its own: kept alive, so that their
    /// addresses cannot be reused while they key this entry.
    global: Option<Arc<PolicySet>>,
    own: Option<Arc<PolicySet>>,
    set: Arc<PolicySet>,
}

/// How many joined sets a slice keeps (one per combination of the
/// principal index's keys in use; one when the action is not indexed).
const MERGED: usize = 16;

impl Slice {
    /// Whether the slice is indexed by principal.
    pub fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// The tenant's policies with `global` — the action's slice, or the
    /// principal index's set for the principal — as one policy set. Ids
    /// cannot collide (`tenant/…` is refused for global ones).
    /// `principal` and its `ancestors` choose the tenant's policies that
    /// can apply to it, when the slice is indexed.
    pub fn merged_with<'a>(
        &self,
        action: &super::ActionInfo,
        global: Option<&Arc<PolicySet>>,
        principal: &EntityUid,
        ancestors: impl Iterator<Item = &'a EntityUid>,
    ) -> Arc<PolicySet> {
        let own = self
            .index
            .as_ref()
            .map(|i| i.policies_for(principal, ancestors));
        let alike = |a: Option<&Arc<PolicySet>>, b: &Option<Arc<PolicySet>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let mut held = self.merged.lock();
        let same = |m: &Merged| {
            m.action == action.generation && alike(global, &m.global) && alike(own.as_ref(), &m.own)
        };
        if let Some(i) = held.iter().position(same) {
            let m = held.remove(i);
            let set = m.set.clone();
            held.push(m);
            return set;
        }
        let mut set = global.map_or_else(|| action.policies.clone(), |g| (**g).clone());
        for p in own.as_deref().unwrap_or(&self.policies).policies() {
            if set.add(p.clone()).is_err() {
                tracing::error!(policy = %p.id(), "tenant policy could not be joined");
            }
        }
        let set = Arc::new(set);
        if held.len() >= MERGED {
            held.remove(0);
        }
        held.push(Merged {
            action: action.generation,
            global: global.cloned(),
            own,
            set: set.clone(),
        });
        set
    }
}

/// A tenant's policies compiled against one policy snapshot, sliced by
/// action as the global ones are.
#[derive(Debug)]
pub struct Compiled {
    /// The snapshot revision these were compiled against.
    pub revision: Arc<str>,
    /// By action name; an action with nothing of the tenant's is absent.
    slices: HashMap<String, Slice>,
    /// Every compiled policy (for messages and `explain`).
    pub all: PolicySet,
    /// Policies that no longer compile, with their problems.
    pub problems: Vec<(String, Vec<Problem>)>,
}

impl Compiled {
    /// The tenant's policies for `action`, if it has any.
    pub fn slice(&self, action: &str) -> Option<&Slice> {
        self.slices.get(action)
    }

    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }
}

/// Compiles a tenant's stored policies against `snapshot`. A policy that
/// no longer compiles (the schema or a template changed since it was
/// written) is left out if it is a permit (leaving one out only denies
/// more); if it is (or cannot be told from) a forbid, every action it may
/// concern fails closed for the tenant until it is fixed or deleted.
pub fn compile_all(snapshot: &PolicySnapshot, records: &[TenantPolicy]) -> Compiled {
    let mut all = PolicySet::new();
    let mut broken_forbids: Vec<(String, Option<Policy>)> = Vec::new();
    let mut problems = Vec::new();
    // One tenant's records (the cache's): its guards are built once.
    let mut guards: HashMap<&TenantId, Result<Guards, String>> = HashMap::new();
    for r in records {
        let compiled = match guards
            .entry(&r.tenant_id)
            .or_insert_with(|| Guards::new(&r.tenant_id))
        {
            Ok(g) => compile_with(snapshot, r, g),
            Err(e) => Err(vec![located(r, 0, 0, e.clone())]),
        };
        match compiled {
            Ok(p) => {
                if let Err(e) = all.add(p) {
                    problems.push((r.cedar_id(), vec![located(r, 0, 0, e.to_string())]));
                }
            }
            Err(list) => {
                // What the text says, unchecked, to know its effect and scope.
                let raw = match &r.definition {
                    Definition::Static { statement } => Policy::parse(None, statement).ok(),
                    Definition::TemplateLinked { .. } => None,
                };
                if raw
                    .as_ref()
                    .is_none_or(|p| p.effect() == CedarEffect::Forbid)
                {
                    broken_forbids.push((r.cedar_id(), raw));
                }
                problems.push((r.cedar_id(), list));
            }
        }
    }
    let mut slices = HashMap::new();
    for (name, action) in &snapshot.actions {
        let policies = super::load::slice(&all, &action.uid, &action.groups, &action.type_name);
        let broken: Vec<String> = broken_forbids
            .iter()
            .filter(|(_, raw)| match raw {
                Some(p) => {
                    super::load::scope_matches(p, &action.uid, &action.groups, &action.type_name)
                }
                None => true,
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !policies.is_empty() || !broken.is_empty() {
            slices.insert(
                name.clone(),
                Slice {
                    index: PrincipalIndex::build_with(&policies, INDEXED, INDEX_SETS),
                    policies,
                    broken,
                    merged: Mutex::new(Vec::new()),
                },
            );
        }
    }
    Compiled {
        revision: snapshot.revision.clone(),
        slices,
        all,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_tenant() {
        let t = TenantId::parse("acme").unwrap();
        let p = PolicyName::parse("contractors-read").unwrap();
        assert_eq!(cedar_id(&t, &p), "tenant/acme/contractors-read");
        assert_eq!(tenant_of("tenant/acme/contractors-read"), Some("acme"));
        assert_eq!(tenant_of("roles.admin-tenant"), None);
    }

    #[test]
    fn definitions_read_like_verified_permissions() {
        let d: Definition = serde_json::from_str(
            r#"{"static": {"statement": "permit(principal, action, resource);"}}"#,
        )
        .unwrap();
        assert!(matches!(d, Definition::Static { .. }));
        let d: Definition = serde_json::from_str(
            r#"{"templateLinked": {"policyTemplateId": "t",
                "principal": {"entityType": "CedarGate::Role", "entityId": "x"}}}"#,
        )
        .unwrap();
        let Definition::TemplateLinked { principal, .. } = &d else {
            panic!("{d:?}")
        };
        assert_eq!(principal.as_ref().unwrap().entity_id, "x");
        assert!(
            serde_json::from_str::<Definition>(r#"{"static": {"statement": "x", "y": 1}}"#)
                .is_err()
        );
    }
}
