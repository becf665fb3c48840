//! Decisions over documents from residual policies.
//!
//! Cedar's type-aware partial evaluation runs an action's policies with the
//! principal, the action, the context and the principal's tenant known and
//! the document unknown. What is left of each policy is true, false, or a
//! condition over the document's attributes, which [`condition`] translates
//! exactly (or refuses). For one (principal, action, context, tenant
//! record), those conditions decide every document of the tenant: checking
//! a few attributes instead of evaluating the whole policy slice again.
//!
//! The answer is the one Cedar gives, determining policies included: the
//! forbids whose condition holds deny; otherwise the permits whose
//! condition holds allow; otherwise no permit applies. Residuals are only
//! used when nothing in them can fail: a policy that errors whatever the
//! document, or one that cannot be translated, leaves the decisions of that
//! key to Cedar. Search plans are made from the same [`partial_evaluate`].
//!
//! [`condition`]: crate::search::condition

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Decision as CedarDecision, Entities, Entity, EntityTypeName, EntityUid,
    PartialEntities, PartialEntityUid, PartialRequest, PolicySet,
};
use serde_json::Value as Json;

use super::entities::{role_uid, user_entity, user_uid, Principal, NAMESPACE};
use super::{concluded, Evaluation};
use crate::policy::{ActionInfo, PolicySnapshot};
use crate::search::condition::{AttrView, Cond, Translator, Untranslatable};

/// What partial evaluation left of an action's policies over documents,
/// each residual translated.
pub struct Partial {
    /// Policies that fail to evaluate whatever the document, sorted.
    pub errors: Vec<String>,
    /// Cedar's decision when the document cannot change it.
    pub decision: Option<CedarDecision>,
    /// Policies that hold whatever the document, sorted.
    pub true_permits: Vec<String>,
    pub true_forbids: Vec<String>,
    /// The residual policies and their conditions, in Cedar's order.
    pub permits: Vec<(String, Result<Cond, Untranslatable>)>,
    pub forbids: Vec<(String, Result<Cond, Untranslatable>)>,
    /// The residual policies in Cedar syntax (for policy authors).
    pub text: Vec<String>,
}

/// Partially evaluates `action`'s policies — the global ones and `own`,
/// the tenant's own for the action — for `principal` with `tenant` (the
/// principal's tenant entity) known and the document unknown. `Err` is a
/// request Cedar refuses (its message).
pub fn partial_evaluate(
    snapshot: &PolicySnapshot,
    action: &ActionInfo,
    principal: &Principal,
    context: Context,
    tenant: &Entity,
    own: Option<&PolicySet>,
) -> Result<Partial, String> {
    let resource_type = format!("{NAMESPACE}::Document");
    let mut known = vec![user_entity(principal), tenant.clone()];
    known.extend(
        principal
            .roles
            .iter()
            .map(|r| Entity::new_no_attrs(role_uid(r), HashSet::new())),
    );
    let concrete = Entities::from_entities(known, None).map_err(|e| e.to_string())?;
    let entities = PartialEntities::from_concrete(concrete.clone(), &snapshot.schema)
        .map_err(|e| e.to_string())?;
    let ty = EntityTypeName::from_str(&resource_type).map_err(|e| e.to_string())?;
    let request = PartialRequest::new(
        PartialEntityUid::from_concrete(user_uid(&principal.id)),
        action.uid.clone(),
        PartialEntityUid::new(ty, None),
        Some(context),
        &snapshot.schema,
    )
    .map_err(|e| e.to_string())?;
    // The principal is known: only the policies whose principal scope can
    // match it (crate::policy::index), as a full evaluation reads them.
    let indexed = action.index.as_ref().map(|index| {
        let uid = user_uid(&principal.id);
        index.policies_for(&uid, concrete.ancestors(&uid).into_iter().flatten())
    });
    let global = indexed.as_deref().unwrap_or(&action.policies);
    let merged = match own.filter(|s| !s.is_empty()) {
        Some(own) => {
            let mut all = global.clone();
            for p in own.policies() {
                // Tenant policies' ids cannot be global ones (`tenant/…`).
                all.add(p.clone()).map_err(|e| e.to_string())?;
            }
            Some(all)
        }
        None => None,
    };
    let response = merged
        .as_ref()
        .unwrap_or(global)
        .tpe(&request, &entities, &snapshot.schema)
        .map_err(|e| e.to_string())?;

    let sorted = |ids: &mut dyn Iterator<Item = &cedar_policy::PolicyId>| {
        let mut v: Vec<String> = ids.map(ToString::to_string).collect();
        v.sort();
        v
    };
    let ancestors = |ty: &str, id: &str| -> Vec<(String, String)> {
        let Ok(uid) = EntityUid::from_str(&format!("{ty}::{id:?}")) else {
            return Vec::new();
        };
        concrete
            .ancestors(&uid)
            .map(|it| {
                it.map(|a| (a.type_name().to_string(), a.id().unescaped().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let bodies: HashMap<String, Json> = response
        .residual_policies()
        .filter_map(|p| {
            let body = p.to_json().ok()?["conditions"][0]["body"].clone();
            Some((p.id().to_string(), body))
        })
        .collect();
    let translate = |id: &cedar_policy::PolicyId| -> (String, Result<Cond, Untranslatable>) {
        let id: &str = id.as_ref();
        let t = Translator {
            types: &snapshot.types,
            resource: &resource_type,
            ancestors: &ancestors,
            policy: id,
        };
        let cond = match bodies.get(id) {
            Some(body) => t.translate(body),
            None => Err(Untranslatable {
                policy: id.to_string(),
                construct: "a residual that has no JSON form".into(),
            }),
        };
        (id.to_string(), cond)
    };
    let errors = sorted(&mut response.error_permits().chain(response.error_forbids()));
    let partial = Partial {
        errors,
        decision: response.decision(),
        true_permits: sorted(&mut response.true_permits()),
        true_forbids: sorted(&mut response.true_forbids()),
        permits: response.residual_permits().map(translate).collect(),
        forbids: response.residual_forbids().map(translate).collect(),
        text: response
            .residual_policies()
            .map(|p| p.to_string())
            .collect(),
    };
    Ok(partial)
}

/// The residual conditions of one (principal, action, context, tenant
/// record), ready to decide documents.
#[derive(Debug)]
pub struct Residuals {
    true_permits: Vec<String>,
    true_forbids: Vec<String>,
    permits: Vec<(String, Cond)>,
    forbids: Vec<(String, Cond)>,
}

impl Residuals {
    /// `None` when the residuals cannot decide exactly: a policy fails
    /// whatever the document, or one cannot be translated.
    pub fn new(partial: Partial) -> Option<Residuals> {
        if !partial.errors.is_empty() {
            return None;
        }
        let conds = |list: Vec<(String, Result<Cond, Untranslatable>)>| {
            list.into_iter()
                .map(|(id, c)| c.ok().map(|c| (id, c)))
                .collect::<Option<Vec<_>>>()
        };
        Some(Residuals {
            true_permits: partial.true_permits,
            true_forbids: partial.true_forbids,
            permits: conds(partial.permits)?,
            forbids: conds(partial.forbids)?,
        })
    }

    /// The decision over a document with these attributes, as Cedar makes
    /// it; `None` when a condition cannot read the document (Cedar decides).
    pub fn decide(&self, document: &AttrView) -> Option<Evaluation> {
        let holding = |fixed: &[String], conds: &[(String, Cond)]| -> Option<Vec<String>> {
            let mut out = fixed.to_vec();
            for (id, c) in conds {
                if c.holds(document)? {
                    out.push(id.clone());
                }
            }
            out.sort_unstable();
            Some(out)
        };
        let forbids = holding(&self.true_forbids, &self.forbids)?;
        if !forbids.is_empty() {
            return Some(concluded(CedarDecision::Deny, forbids, vec![]));
        }
        let permits = holding(&self.true_permits, &self.permits)?;
        let decision = if permits.is_empty() {
            CedarDecision::Deny
        } else {
            CedarDecision::Allow
        };
        Some(concluded(decision, permits, vec![]))
    }
}
