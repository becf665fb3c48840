//! The decision engine: request → entities → `cedar_policy::Authorizer`.
//!
//! Fail closed: when no decision can be made (the caller's tenant is unknown,
//! the store cannot be read, evaluation reports an error), the answer is
//! Deny, with a reason, and it is counted.

mod engine;
pub mod entities;
pub mod residual;

pub use engine::{Engine, ENTITY_SET_CAPACITY};

use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityUid, Request,
    RequestValidationError,
};
use serde::Serialize;

use crate::ids::{DocumentId, TenantId};
use crate::policy::{ActionInfo, PolicySnapshot, ResourceKind};
use entities::{user_entity, user_uid, Principal};

/// The resource a request is about. Documents are always looked up inside
/// the principal's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceRef {
    Document(DocumentId),
    Tenant(TenantId),
}

impl ResourceRef {
    pub(crate) fn kind(&self) -> ResourceKind {
        match self {
            ResourceRef::Document(_) => ResourceKind::Document,
            ResourceRef::Tenant(_) => ResourceKind::Tenant,
        }
    }
}

/// One authorization question.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    pub principal: Principal,
    pub action: String,
    pub resource: ResourceRef,
    /// A JSON object (or null for none), typed by the action's context in
    /// the schema.
    pub context: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    /// As recorded (`details.decision` of an audit record).
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// Why a request was denied, in words a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// A `forbid` policy matched (see `determining_policies`).
    Forbidden,
    /// No `permit` policy matched.
    NoPermit,
    /// The caller's tenant has no document by that id.
    ResourceNotFound,
    /// The caller's tenant is not known.
    TenantNotFound,
    /// The store could not be read and nothing fresh was cached.
    StoreUnavailable,
    /// A policy could not be evaluated; denied rather than guessed.
    EvaluationError,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Forbidden => "forbidden",
            DenyReason::NoPermit => "no_permit",
            DenyReason::ResourceNotFound => "resource_not_found",
            DenyReason::TenantNotFound => "tenant_not_found",
            DenyReason::StoreUnavailable => "store_unavailable",
            DenyReason::EvaluationError => "evaluation_error",
        }
    }
}

/// A decision as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub decision: Effect,
    pub decision_id: String,
    pub determining_policies: Vec<String>,
    pub errors: Vec<String>,
    pub policy_revision: Arc<str>,
    /// Age of the oldest cached record the decision used.
    pub data_age_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<DenyReason>,
    /// A denial's message for the end user ([`denial_message`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Said for every denial that must not tell "forbidden" from "not there".
pub const GENERIC_DENIAL: &str = "You do not have permission to do this.";

/// The end-user message of a denial: the `@message` of the forbid that
/// decided it, only when every forbid that decided it has one. Policies
/// without a message (tenant isolation's) are silent on purpose, and a
/// denial they took part in says only the generic message, whatever else
/// also held. Printable, and safe inside a header or a JSON string.
/// A tenant's forbid (in `tenant`, its own policies) may have a message too.
pub fn denial_message(
    policies: &cedar_policy::PolicySet,
    tenant: Option<&cedar_policy::PolicySet>,
    ev: &Evaluation,
) -> String {
    if ev.reason != Some(DenyReason::Forbidden) {
        return GENERIC_DENIAL.into();
    }
    let messages: Option<Vec<&str>> = ev
        .determining_policies
        .iter()
        .map(|id| {
            let id = cedar_policy::PolicyId::new(id);
            policies
                .annotation(&id, "message")
                .or_else(|| tenant?.annotation(&id, "message"))
        })
        .collect();
    match messages.as_deref() {
        Some([first, ..]) => first
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
            .collect(),
        _ => GENERIC_DENIAL.into(),
    }
}

/// The caller's mistake: nothing was decided. Maps to HTTP 400.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("action {action} applies to {expected:?} resources, not {got:?}")]
    WrongResourceType {
        action: String,
        expected: ResourceKind,
        got: ResourceKind,
    },
    #[error("invalid context for {action}: {message}")]
    InvalidContext { action: String, message: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// What Cedar said, before it becomes a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub effect: Effect,
    pub determining_policies: Vec<String>,
    pub errors: Vec<String>,
    pub reason: Option<DenyReason>,
}

/// Parses a request's context against the action's context type.
pub fn parse_context(
    snapshot: &PolicySnapshot,
    action: &ActionInfo,
    name: &str,
    json: &serde_json::Value,
) -> Result<Context, AuthzError> {
    // An empty context needs no parsing; `Request::new` still checks it
    // against the action's context type.
    match json {
        serde_json::Value::Null => return Ok(Context::empty()),
        serde_json::Value::Object(map) if map.is_empty() => return Ok(Context::empty()),
        _ => {}
    }
    Context::from_json_value(json.clone(), Some((&snapshot.schema, &action.uid))).map_err(|e| {
        AuthzError::InvalidContext {
            action: name.to_string(),
            message: e.to_string(),
        }
    })
}

/// The entities a request needs besides its principal: the given tenant and
/// resource entities, and the action with its groups.
pub fn base_entities(
    action: &ActionInfo,
    entities: impl IntoIterator<Item = Entity>,
) -> Result<Entities, String> {
    Entities::from_entities(entities.into_iter().chain([action.entity.clone()]), None)
        .map_err(|e| e.to_string())
}

pub(crate) fn evaluation_error(error: String) -> Evaluation {
    Evaluation {
        effect: Effect::Deny,
        determining_policies: vec![],
        errors: vec![error],
        reason: Some(DenyReason::EvaluationError),
    }
}

/// Evaluates one request over `base` (see [`base_entities`]) plus the
/// principal's `User` entity, with the action's global policies and
/// `tenant`, the principal's tenant's own slice for the action
/// ([`crate::policy::tenant`]). Pure but for the joined sets the slice
/// remembers: no store, no cache.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    authorizer: &Authorizer,
    snapshot: &PolicySnapshot,
    action: &ActionInfo,
    principal: &Principal,
    resource: EntityUid,
    context: Context,
    base: &Entities,
    tenant: Option<&crate::policy::tenant::Slice>,
) -> Result<Evaluation, AuthzError> {
    let request = Request::new(
        user_uid(&principal.id),
        action.uid.clone(),
        resource,
        context,
        Some(&snapshot.schema),
    )
    .map_err(|e| match e {
        RequestValidationError::InvalidContext(_) | RequestValidationError::TypeOfContext(_) => {
            AuthzError::InvalidContext {
                action: action.uid.id().unescaped().to_string(),
                message: e.to_string(),
            }
        }
        other => AuthzError::InvalidRequest(other.to_string()),
    })?;
    let entities = match base.clone().add_entities([user_entity(principal)], None) {
        Ok(e) => e,
        Err(e) => return Ok(evaluation_error(format!("entities: {e}"))),
    };
    // Only the policies whose principal scope can match (same answer);
    // the principal's uid is built only when an index or the tenant's own
    // policies need it.
    let own = tenant.filter(|s| !s.policies.is_empty());
    let uid = (action.index.is_some() || own.is_some()).then(|| user_uid(&principal.id));
    let indexed =
        action.index.as_ref().zip(uid.as_ref()).map(|(index, uid)| {
            index.policies_for(uid, entities.ancestors(uid).into_iter().flatten())
        });
    // With the tenant's own, as one set (remembered by the slice).
    let merged = own.zip(uid.as_ref()).map(|(own, uid)| {
        let ancestors = entities.ancestors(uid).into_iter().flatten();
        own.merged_with(action, indexed.as_ref(), uid, ancestors)
    });
    let policies = merged
        .as_deref()
        .or(indexed.as_deref())
        .unwrap_or(&action.policies);
    let response = authorizer.is_authorized(&request, policies, &entities);
    // Sorted: Cedar reports them as a set, in no fixed order.
    let mut determining_policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    determining_policies.sort_unstable();
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| e.to_string())
        .collect();
    Ok(concluded(response.decision(), determining_policies, errors))
}

/// Cedar's answer over the union of two disjoint policy sets, from its
/// answers over each (decision and determining policies): any forbid that
/// holds denies, with every forbid that holds; otherwise any permit that
/// holds allows, with every permit that holds; otherwise nothing applies.
/// (A Deny's determining policies are the forbids that held, an Allow's
/// the permits.) Errors are the union of both.
pub(crate) fn combined(
    a: (CedarDecision, Vec<String>),
    b: (CedarDecision, Vec<String>),
) -> (CedarDecision, Vec<String>) {
    let of = |want: CedarDecision| -> Vec<String> {
        [&a, &b]
            .into_iter()
            .filter(|(d, _)| *d == want)
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect()
    };
    let forbids = of(CedarDecision::Deny);
    if !forbids.is_empty() {
        return (CedarDecision::Deny, forbids);
    }
    let permits = of(CedarDecision::Allow);
    if permits.is_empty() {
        (CedarDecision::Deny, permits)
    } else {
        (CedarDecision::Allow, permits)
    }
}

/// The evaluation of a Cedar decision with its (sorted) determining
/// policies and errors; the residual path concludes the same way.
pub(crate) fn concluded(
    decision: CedarDecision,
    determining_policies: Vec<String>,
    errors: Vec<String>,
) -> Evaluation {
    let (effect, reason) = match decision {
        // An error in any policy may have hidden a forbid: fail closed.
        CedarDecision::Allow if !errors.is_empty() => {
            (Effect::Deny, Some(DenyReason::EvaluationError))
        }
        CedarDecision::Allow => (Effect::Allow, None),
        CedarDecision::Deny if determining_policies.is_empty() => {
            (Effect::Deny, Some(DenyReason::NoPermit))
        }
        CedarDecision::Deny => (Effect::Deny, Some(DenyReason::Forbidden)),
    };
    Evaluation {
        effect,
        determining_policies,
        errors,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn denial(by: &[&str]) -> Evaluation {
        Evaluation {
            effect: Effect::Deny,
            determining_policies: by.iter().map(|s| s.to_string()).collect(),
            errors: vec![],
            reason: Some(DenyReason::Forbidden),
        }
    }

    #[test]
    fn a_silent_forbid_silences_the_others() {
        let parsed = cedar_policy::PolicySet::from_str(
            r#"@id("quiet") forbid (principal, action, resource);
               @id("loud") @message("Over \"quota\".") forbid (principal, action, resource);
               @id("louder") @message("Too late.") forbid (principal, action, resource);"#,
        )
        .unwrap();
        // Named by their @id, as the loader names them.
        let mut set = cedar_policy::PolicySet::new();
        for p in parsed.policies() {
            let id = cedar_policy::PolicyId::new(p.annotation("id").unwrap());
            set.add(p.new_id(id)).unwrap();
        }
        assert_eq!(
            denial_message(&set, None, &denial(&["loud"])),
            "Over 'quota'."
        );
        assert_eq!(
            denial_message(&set, None, &denial(&["loud", "louder"])),
            "Over 'quota'."
        );
        assert_eq!(
            denial_message(&set, None, &denial(&["loud", "quiet"])),
            GENERIC_DENIAL
        );
        assert_eq!(
            denial_message(&set, None, &denial(&["quiet"])),
            GENERIC_DENIAL
        );
        let mut no_permit = denial(&[]);
        no_permit.reason = Some(DenyReason::NoPermit);
        assert_eq!(denial_message(&set, None, &no_permit), GENERIC_DENIAL);
    }
}
