//! Search planning: which documents may this principal read, as a filter a
//! search service applies, derived from the same policies that decide
//! single requests (Cerbos' PlanResources, OPA's compile API).
//!
//! Cedar's type-aware partial evaluation runs the action's policies with
//! the principal, the action, the context and the principal's tenant known
//! and the resource unknown. What is left — residual permits and forbids
//! over the resource's attributes — becomes a [`Cond`] (residual permits
//! OR-ed, residual forbids subtracted), scoped to the caller's tenant and
//! to live documents whatever the policies say, and then the filters of
//! [`filters`]. Anything that cannot be translated exactly is an error,
//! never a looser filter.
//!
//! - [`condition`]: the condition tree and the translation of residuals.
//! - [`fields`]: the attribute contract with the index, `[search]` settings.
//! - [`filters`]: Kendra, OpenSearch and SQL renderings.
//! - [`index`]: documents as the index takes them; the change stream.

pub mod condition;
pub mod fields;
pub mod filters;
pub mod index;

use std::num::NonZeroUsize;
use std::sync::Arc;

use cedar_policy::{Context, Entity};
use lru::LruCache;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::authz::entities::{Principal, NAMESPACE};
use crate::authz::residual::partial_evaluate;
use crate::authz::{parse_context, AuthzError, Engine};
use crate::cache::Slot;
use crate::policy::{PolicySnapshot, ResourceKind};
pub use condition::{Cond, Untranslatable};
pub use fields::{FilterFormat, SearchConfig};
use filters::{RenderError, SqlFilter};

/// The answer's shape. A plan over documents is never "always allowed":
/// even when every policy allows, it is scoped to the caller's tenant's
/// live documents, so a caller always applies its filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Nothing may be read: no search needed.
    AlwaysDenied,
    /// Read what the condition selects.
    Conditional,
}

/// A plan, with its filters rendered (or why a format cannot take it).
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: PlanKind,
    pub condition: Option<Cond>,
    /// The residual policies partial evaluation left, in Cedar syntax (for
    /// policy authors).
    pub residuals: Vec<String>,
    pub determining_policies: Vec<String>,
    pub policy_revision: Arc<str>,
    pub kendra: Result<Json, RenderError>,
    pub opensearch: Result<Json, RenderError>,
    pub sql: Result<SqlFilter, RenderError>,
}

/// Why no plan can be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The caller's mistake (400).
    #[error(transparent)]
    Request(#[from] AuthzError),
    /// A residual the translator cannot turn into a filter (422).
    #[error(transparent)]
    Untranslatable(#[from] Untranslatable),
    /// A requested format cannot express the filter (422).
    #[error("the {format:?} filter: {error}")]
    Format {
        format: FilterFormat,
        error: RenderError,
    },
    /// The store could not be read and nothing fresh was cached (503).
    #[error("the store cannot be read: {0}")]
    StoreUnavailable(String),
}

impl Plan {
    /// The formats' filters as the API returns them, failing if one that
    /// was asked for cannot be rendered.
    pub fn filters(&self, formats: &[FilterFormat]) -> Result<Json, PlanError> {
        if self.kind == PlanKind::AlwaysDenied {
            return Ok(Json::Null);
        }
        let mut out = serde_json::Map::new();
        for f in formats {
            let (name, value) = match f {
                FilterFormat::Kendra => ("kendra", self.kendra.clone()),
                FilterFormat::Opensearch => ("opensearch", self.opensearch.clone()),
                FilterFormat::Sql => (
                    "sql",
                    self.sql
                        .clone()
                        .map(|s| serde_json::to_value(s).unwrap_or(Json::Null)),
                ),
            };
            let value = value.map_err(|error| PlanError::Format { format: *f, error })?;
            out.insert(name.into(), value);
        }
        Ok(Json::Object(out))
    }
}

/// Every filter format, in the order the API lists them.
pub const ALL_FORMATS: [FilterFormat; 3] = [
    FilterFormat::Kendra,
    FilterFormat::Opensearch,
    FilterFormat::Sql,
];

/// What a plan depends on: the principal, the action and policies
/// (generation), the context, the principal's tenant record (generation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlanKey {
    principal: Principal,
    action: u64,
    context: String,
    tenant: u64,
}

/// Makes and remembers plans.
pub struct Planner {
    config: SearchConfig,
    cache: Mutex<LruCache<PlanKey, Arc<Plan>>>,
}

impl Planner {
    pub fn new(config: SearchConfig) -> Self {
        let capacity = NonZeroUsize::new(config.plan_capacity).unwrap_or(NonZeroUsize::MIN);
        Planner {
            config,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn config(&self) -> &SearchConfig {
        &self.config
    }

    /// The plan of `principal` doing `action` to documents.
    pub async fn plan(
        &self,
        engine: &Engine,
        principal: &Principal,
        action: &str,
        context: &Json,
    ) -> Result<Arc<Plan>, PlanError> {
        let snapshot = engine.policies().load_full();
        let info = snapshot
            .actions
            .get(action)
            .ok_or_else(|| AuthzError::UnknownAction(action.to_string()))?;
        if info.resource != ResourceKind::Document {
            return Err(AuthzError::WrongResourceType {
                action: action.to_string(),
                expected: info.resource,
                got: ResourceKind::Document,
            }
            .into());
        }
        let ctx = parse_context(&snapshot, info, action, context)?;
        let tenant = match engine.cache().tenant(&principal.tenant).await {
            Ok(Slot { value: Some(t), .. }) => t,
            Ok(Slot { value: None, .. }) => {
                return Ok(Arc::new(self.denied(&snapshot, Vec::new())));
            }
            Err(e) => return Err(PlanError::StoreUnavailable(e.to_string())),
        };
        let key = PlanKey {
            principal: principal.clone(),
            action: info.generation,
            context: context.to_string(),
            tenant: tenant.generation,
        };
        if let Some(plan) = self.cache.lock().get(&key).cloned() {
            return Ok(plan);
        }
        let own = tenant.compiled(&snapshot);
        let slice = own.as_deref().and_then(|c| c.slice(action));
        if let Some(s) = slice.filter(|s| !s.broken.is_empty()) {
            // A forbid of the tenant's no longer compiles: nothing is read.
            return Ok(Arc::new(self.denied(&snapshot, s.broken.clone())));
        }
        let own = slice.map(|s| &s.policies);
        let plan = Arc::new(self.make(&snapshot, info, principal, ctx, &tenant.entity, own)?);
        self.cache.lock().put(key, plan.clone());
        Ok(plan)
    }

    fn denied(&self, snapshot: &PolicySnapshot, by: Vec<String>) -> Plan {
        let none = || RenderError("nothing may be read".into());
        Plan {
            kind: PlanKind::AlwaysDenied,
            condition: None,
            residuals: Vec::new(),
            determining_policies: by,
            policy_revision: snapshot.revision.clone(),
            kendra: Err(none()),
            opensearch: Err(none()),
            sql: Err(none()),
        }
    }

    fn make(
        &self,
        snapshot: &PolicySnapshot,
        info: &crate::policy::ActionInfo,
        principal: &Principal,
        context: Context,
        tenant: &Entity,
        own: Option<&cedar_policy::PolicySet>,
    ) -> Result<Plan, PlanError> {
        let invalid = |e: String| PlanError::Request(AuthzError::InvalidRequest(e));
        let resource_type = format!("{NAMESPACE}::Document");
        let partial =
            partial_evaluate(snapshot, info, principal, context, tenant, own).map_err(invalid)?;
        // Any evaluation error denies, as on the native API.
        if !partial.errors.is_empty() {
            return Ok(self.denied(snapshot, partial.errors));
        }
        if partial.decision == Some(cedar_policy::Decision::Deny) {
            return Ok(self.denied(snapshot, partial.true_forbids));
        }
        let residual_text = partial.text;
        let mut permits: Vec<Cond> = partial.true_permits.iter().map(|_| Cond::True).collect();
        for (_, c) in partial.permits {
            permits.push(c?);
        }
        let mut forbids = Vec::new();
        for (_, c) in partial.forbids {
            forbids.push(c?);
        }
        // The scope fixes the tenant: what the policies say of it (tenant
        // policies' confinement, tenant isolation) is decided already.
        let tenant = condition::Value::String(principal.tenant.as_str().to_string());
        let known = |c: Cond| c.assuming(&self.config.tenant_attribute, &tenant);
        let cond = Cond::and(vec![
            known(Cond::or(permits)),
            Cond::not(known(Cond::or(forbids))),
            self.scope(principal),
        ]);
        if cond == Cond::False {
            return Ok(self.denied(snapshot, Vec::new()));
        }
        let kind = PlanKind::Conditional;
        let fields = fields::Fields::new(&self.config, &snapshot.types, &resource_type);
        let tenant_attr = &self.config.tenant_attribute;
        Ok(Plan {
            kind,
            kendra: filters::kendra(&cond, &fields),
            opensearch: filters::opensearch(&cond, &fields),
            sql: filters::sql(&cond, &fields, &self.config.sql, tenant_attr),
            condition: Some(cond),
            residuals: residual_text,
            determining_policies: Vec::new(),
            policy_revision: snapshot.revision.clone(),
        })
    }

    /// What every plan is held to, whatever the policies say: the caller's
    /// tenant, live documents.
    fn scope(&self, principal: &Principal) -> Cond {
        Cond::and(vec![
            Cond::Eq {
                attr: self.config.tenant_attribute.clone(),
                value: condition::Value::String(principal.tenant.as_str().to_string()),
            },
            Cond::Eq {
                attr: self.config.deleted_attribute.clone(),
                value: condition::Value::Bool(false),
            },
        ])
    }
}

/// A plan as the API answers it.
pub fn plan_json(plan: &Plan, plan_id: &str, formats: &[FilterFormat]) -> Result<Json, PlanError> {
    Ok(json!({
        "plan_id": plan_id,
        "kind": plan.kind,
        "condition": plan.condition,
        "filters": plan.filters(formats)?,
        "determining_policies": plan.determining_policies,
        "policy_revision": plan.policy_revision,
    }))
}
