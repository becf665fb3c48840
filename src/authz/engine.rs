//! The engine the servers share: the current policy snapshot, the entity
//! cache, the built-entity-set and decision caches, and the metrics. It turns
//! an [`AuthzRequest`] into a [`Decision`], failing closed.

use std::num::NonZeroUsize;
use std::sync::Arc;

use cedar_policy::{Authorizer, Context, Entities, Entity};
use lru::LruCache;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::entities::{sealed_tenant_entity, tenant_uid, Principal};
use super::residual::{partial_evaluate, Residuals};
use super::{
    base_entities, denial_message, evaluate, evaluation_error, parse_context, AuthzError,
    AuthzRequest, Decision, DenyReason, Effect, Evaluation, ResourceRef,
};
use crate::cache::{DocumentEntry, EntityCache, Slot, TenantEntry};
use crate::metrics::{FailClosed, Metrics};
use crate::policy::tenant::Compiled;
use crate::policy::{ActionInfo, PolicyHandle, PolicySnapshot};
use crate::store::StoreError;
use crate::usage::UsageCounter;

/// The engine the servers share: current policies, the entity cache and
/// the metrics.
pub struct Engine {
    policies: PolicyHandle,
    cache: Arc<EntityCache>,
    authorizer: Authorizer,
    metrics: Arc<Metrics>,
    /// Built entity sets by (tenant, resource, action) generations: a warm
    /// request only adds its principal. Generations are never reused, so a
    /// reloaded record or policy set can never meet a stale set.
    bases: Mutex<LruCache<(u64, u64, u64), Arc<Entities>>>,
    /// Decisions already made, when enabled.
    decisions: Option<Mutex<LruCache<DecisionKey, Evaluation>>>,
    /// Residual policies per (principal, action, context, tenant record),
    /// when enabled, and at which document decision of a key to compute them.
    residuals: Option<Mutex<LruCache<ResidualKey, ResidualSlot>>>,
    residual_after: u32,
    /// Allowed searches, counted into the tenants' monthly usage.
    queries: Arc<UsageCounter>,
}

/// How many built entity sets the engine keeps, unless configured
/// (`[cache] entity_set_capacity`).
pub const ENTITY_SET_CAPACITY: NonZeroUsize = NonZeroUsize::new(4096).unwrap();

/// The resource-side entity of a request, as the cache holds it.
enum Extra {
    Document(Arc<DocumentEntry>),
    Tenant(Arc<TenantEntry>),
}

impl Extra {
    fn into_entity(self) -> Entity {
        match self {
            Extra::Document(d) => d.entity.clone(),
            Extra::Tenant(t) => t.entity.clone(),
        }
    }
}

/// Whether a decision made on another tenant's id alone is final: a
/// `forbid` held (more facts cannot undo it), or no `permit` did and
/// nothing failed to evaluate. Otherwise the policies need the facts.
fn decided_without_facts(ev: &Evaluation) -> bool {
    match ev.reason {
        Some(DenyReason::Forbidden) => true,
        Some(DenyReason::NoPermit) => ev.errors.is_empty(),
        _ => false,
    }
}

/// Everything a decision depends on. Cedar evaluation is a pure function of
/// the policies, the entities and the request; the generations pin the
/// first two (a reloaded policy set or record gets a new generation), the
/// principal's claims and the context text pin the rest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecisionKey {
    tenant: u64,
    resource: u64,
    action: u64,
    principal: Principal,
    context: String,
}

/// What a document decision's residuals depend on: the principal's claims,
/// the action's policies (generation), the context text and the
/// principal's tenant record (generation). The document is what varies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ResidualKey {
    principal: Principal,
    action: u64,
    context: String,
    tenant: u64,
}

/// A residual cache entry.
enum ResidualSlot {
    /// Document decisions of the key so far, made by full evaluation.
    Seen(u32),
    Ready(Arc<Residuals>),
    /// The residuals cannot decide exactly: Cedar decides this key.
    Unusable,
}

impl Engine {
    /// `decision_capacity` bounds the decision cache; 0 turns it off.
    pub fn new(
        policies: PolicyHandle,
        cache: Arc<EntityCache>,
        metrics: Arc<Metrics>,
        decision_capacity: usize,
    ) -> Self {
        Engine {
            policies,
            cache,
            authorizer: Authorizer::new(),
            metrics,
            bases: Mutex::new(LruCache::new(ENTITY_SET_CAPACITY)),
            decisions: NonZeroUsize::new(decision_capacity).map(|n| Mutex::new(LruCache::new(n))),
            residuals: None,
            residual_after: 1,
            queries: Arc::default(),
        }
    }

    /// Keeps up to `capacity` built entity sets (a set holds the tenant,
    /// resource and action entities of a request, some kilobytes each).
    pub fn with_entity_sets(self, capacity: NonZeroUsize) -> Self {
        Engine {
            bases: Mutex::new(LruCache::new(capacity)),
            ..self
        }
    }

    /// Decides documents from residual policies (see [`super::residual`]):
    /// up to `capacity` keys (0: off), each computed at its `after`-th
    /// document decision (1: the first).
    pub fn with_residuals(mut self, capacity: usize, after: u32) -> Self {
        self.residuals = NonZeroUsize::new(capacity).map(|n| Mutex::new(LruCache::new(n)));
        self.residual_after = after.max(1);
        self
    }

    /// The decision of a document request from the key's residuals, when
    /// they are (or now become) ready and can read the document.
    #[allow(clippy::too_many_arguments)]
    fn by_residuals(
        &self,
        snapshot: &PolicySnapshot,
        action: &ActionInfo,
        principal: &Principal,
        context_text: &str,
        context: &Context,
        tenant: &TenantEntry,
        document: &DocumentEntry,
    ) -> Option<Evaluation> {
        let cache = self.residuals.as_ref()?;
        let key = ResidualKey {
            principal: principal.clone(),
            action: action.generation,
            context: context_text.to_string(),
            tenant: tenant.generation,
        };
        // Ready residuals, or `None` when this decision computes them.
        let ready = {
            let mut slots = cache.lock();
            match slots.get_mut(&key) {
                Some(ResidualSlot::Ready(r)) => Some(r.clone()),
                Some(ResidualSlot::Unusable) => return None,
                Some(ResidualSlot::Seen(n)) => {
                    *n += 1;
                    if *n < self.residual_after {
                        return None;
                    }
                    None
                }
                None if self.residual_after > 1 => {
                    slots.put(key, ResidualSlot::Seen(1));
                    return None;
                }
                None => None,
            }
        };
        let residuals = match ready {
            Some(r) => r,
            None => {
                let own = tenant.compiled(snapshot);
                let own = own
                    .as_deref()
                    .and_then(|c| c.slice(action.uid.id().unescaped()))
                    .map(|s| &s.policies);
                let computed = partial_evaluate(
                    snapshot,
                    action,
                    principal,
                    context.clone(),
                    &tenant.entity,
                    own,
                )
                .ok()
                .and_then(Residuals::new)
                .map(Arc::new);
                let (counter, slot) = match &computed {
                    Some(r) => (
                        &self.metrics.residuals.computed,
                        ResidualSlot::Ready(r.clone()),
                    ),
                    None => (&self.metrics.residuals.unusable, ResidualSlot::Unusable),
                };
                counter.inc();
                cache.lock().put(key, slot);
                computed?
            }
        };
        let ev = residuals.decide(document.view());
        if ev.is_some() {
            self.metrics.residuals.decided.inc();
        }
        ev
    }

    pub fn policies(&self) -> &PolicyHandle {
        &self.policies
    }

    /// The text of a policy a decision named, as it is evaluated: a global
    /// one, or a tenant's own (with its confinement guard).
    pub async fn policy_text(&self, snapshot: &PolicySnapshot, id: &str) -> Option<String> {
        let pid = cedar_policy::PolicyId::new(id);
        if let Some(p) = snapshot.policies.policy(&pid) {
            return Some(p.to_string());
        }
        let tenant = crate::ids::TenantId::parse(crate::policy::tenant::tenant_of(id)?).ok()?;
        let entry = self.cache.tenant(&tenant).await.ok()?.value?;
        let compiled = entry.compiled(snapshot)?;
        compiled.all.policy(&pid).map(ToString::to_string)
    }

    pub fn cache(&self) -> &Arc<EntityCache> {
        &self.cache
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Allowed searches not yet added to the store's usage.
    pub fn queries(&self) -> &Arc<UsageCounter> {
        &self.queries
    }

    /// Decides one request. `Err` only for a malformed request; every other
    /// outcome, failures included, is a [`Decision`].
    #[tracing::instrument(
        level = "debug",
        name = "decide",
        skip_all,
        fields(tenant = %req.principal.tenant, action = %req.action, decision_id)
    )]
    pub async fn decide(&self, req: &AuthzRequest) -> Result<Decision, AuthzError> {
        let started = std::time::Instant::now();
        let snapshot = self.policies.load_full();
        let result = self.decide_with(&snapshot, req).await;
        match &result {
            Ok(d) => {
                self.metrics
                    .latency
                    .observe(started.elapsed().as_secs_f64());
                match d.decision {
                    Effect::Allow => self.metrics.allow.inc(),
                    Effect::Deny => self.metrics.deny.inc(),
                };
                self.queries
                    .count_decision(&req.principal.tenant, &req.action, d.decision);
                self.metrics
                    .count_action(&req.principal.tenant, &req.action, d.decision);
                if let (Effect::Allow, "Search", ResourceRef::Tenant(t)) =
                    (d.decision, req.action.as_str(), &req.resource)
                {
                    self.queries.count(t);
                }
                tracing::Span::current().record("decision_id", d.decision_id.as_str());
            }
            Err(_) => {
                self.metrics.bad_requests.inc();
            }
        }
        result
    }

    /// Decides like [`Engine::decide`] without counting the decision
    /// anywhere (metrics, the tenant's decisions and queries): for
    /// questions asked about a decision rather than for one — the
    /// console's navigation, the access checker. Also returns the policy
    /// snapshot it used.
    pub async fn decide_quietly(
        &self,
        req: &AuthzRequest,
    ) -> Result<(Decision, Arc<PolicySnapshot>), AuthzError> {
        let snapshot = self.policies.load_full();
        let d = self.decide_with(&snapshot, req).await?;
        Ok((d, snapshot))
    }

    async fn decide_with(
        &self,
        snapshot: &PolicySnapshot,
        req: &AuthzRequest,
    ) -> Result<Decision, AuthzError> {
        let action = snapshot
            .actions
            .get(&req.action)
            .ok_or_else(|| AuthzError::UnknownAction(req.action.clone()))?;
        if action.resource != req.resource.kind() {
            return Err(AuthzError::WrongResourceType {
                action: req.action.clone(),
                expected: action.resource,
                got: req.resource.kind(),
            });
        }
        let context = parse_context(snapshot, action, &req.action, &req.context)?;
        let principal = &req.principal;
        let now = Instant::now();
        // The principal's tenant's own policies, once its record is read.
        let own: std::sync::OnceLock<Option<Arc<Compiled>>> = std::sync::OnceLock::new();
        let decided = |ev: Evaluation, oldest: Instant| Decision {
            message: (ev.effect == Effect::Deny).then(|| {
                let own = own.get().and_then(Option::as_deref).map(|c| &c.all);
                denial_message(&snapshot.policies, own, &ev)
            }),
            decision: ev.effect,
            decision_id: uuid::Uuid::now_v7().to_string(),
            determining_policies: ev.determining_policies,
            errors: ev.errors,
            policy_revision: snapshot.revision.clone(),
            data_age_ms: u64::try_from(now.saturating_duration_since(oldest).as_millis())
                .unwrap_or(u64::MAX),
            reason: ev.reason,
        };
        let deny = |reason: DenyReason, error: Option<String>| {
            let fail = match reason {
                DenyReason::TenantNotFound => Some(FailClosed::TenantNotFound),
                DenyReason::StoreUnavailable => Some(FailClosed::StoreUnavailable),
                _ => None,
            };
            if let Some(f) = fail {
                self.metrics.fail_closed(f);
            }
            Evaluation {
                effect: Effect::Deny,
                determining_policies: vec![],
                errors: error.into_iter().collect(),
                reason: Some(reason),
            }
        };

        // The caller's tenant and the document (if any) are read together:
        // on a cache miss that is one store round trip, not two.
        let document = async {
            match &req.resource {
                ResourceRef::Document(id) => Some(self.cache.document(&principal.tenant, id).await),
                ResourceRef::Tenant(_) => None,
            }
        };
        let (tenant, mut document) = tokio::join!(self.cache.tenant(&principal.tenant), document);
        let tenant = match tenant {
            Ok(Slot {
                value: Some(t),
                fetched_at,
            }) => (t, fetched_at),
            Ok(Slot { value: None, .. }) => {
                return Ok(decided(deny(DenyReason::TenantNotFound, None), now))
            }
            Err(e) => {
                tracing::warn!(error = %e, "tenant lookup failed; denying");
                return Ok(decided(
                    deny(DenyReason::StoreUnavailable, Some(e.to_string())),
                    now,
                ));
            }
        };
        let mut oldest = tenant.1;
        let own = own.get_or_init(|| tenant.0.compiled(snapshot));
        let slice = own.as_deref().and_then(|c| c.slice(&req.action));
        if let Some(broken) = slice.filter(|s| !s.broken.is_empty()).map(|s| &s.broken) {
            // A forbid of the tenant's no longer compiles: fail closed.
            self.metrics.fail_closed(FailClosed::EvaluationError);
            return Ok(decided(
                evaluation_error(format!(
                    "tenant policies that no longer compile under the current policies: {}",
                    broken.join(", ")
                )),
                oldest,
            ));
        }
        let own_policies = slice;
        // The resource's entity, when it is not the principal's tenant. Cloned
        // into an entity set only when no built set is cached.
        let mut extra: Option<Extra> = None;

        // `resource_generation` is None when the set must not be cached.
        let (resource_uid, resource_generation) = match &req.resource {
            ResourceRef::Document(id) => match document.take().unwrap_or_else(|| {
                Err(StoreError::Unavailable(format!(
                    "document {id} was not looked up"
                )))
            }) {
                Ok(Slot {
                    value: Some(doc),
                    fetched_at,
                }) => {
                    oldest = oldest.min(fetched_at);
                    let uid = doc.entity.uid();
                    let generation = doc.generation;
                    extra = Some(Extra::Document(doc));
                    (uid, Some(generation))
                }
                Ok(Slot { fetched_at, .. }) => {
                    return Ok(decided(
                        deny(DenyReason::ResourceNotFound, None),
                        oldest.min(fetched_at),
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "document lookup failed; denying");
                    return Ok(decided(
                        deny(DenyReason::StoreUnavailable, Some(e.to_string())),
                        oldest,
                    ));
                }
            },
            ResourceRef::Tenant(id) if *id == principal.tenant => (tenant_uid(id), Some(0)),
            ResourceRef::Tenant(id) => {
                // Another tenant. What the caller may know of it is its id:
                // decide on that first, so that the answer cannot depend on
                // the tenant's record, nor on whether it exists.
                let sealed = match base_entities(
                    action,
                    [tenant.0.entity.clone(), sealed_tenant_entity(id)],
                ) {
                    Ok(b) => b,
                    Err(e) => {
                        self.metrics.fail_closed(FailClosed::EvaluationError);
                        return Ok(decided(evaluation_error(format!("entities: {e}")), oldest));
                    }
                };
                let first = evaluate(
                    &self.authorizer,
                    snapshot,
                    action,
                    principal,
                    tenant_uid(id),
                    context.clone(),
                    &sealed,
                    own_policies,
                )?;
                if decided_without_facts(&first) {
                    return Ok(decided(first, oldest));
                }
                // The policies let this principal past isolation without the
                // tenant's facts (a platform administrator's management
                // action): now decide on them. A tenant that does not exist
                // has none; the first answer stands.
                match self.cache.tenant(id).await {
                    Ok(Slot {
                        value: Some(t),
                        fetched_at,
                    }) => {
                        oldest = oldest.min(fetched_at);
                        let generation = t.generation;
                        extra = Some(Extra::Tenant(t));
                        (tenant_uid(id), Some(generation))
                    }
                    Ok(Slot {
                        value: None,
                        fetched_at,
                    }) => {
                        if first.reason == Some(DenyReason::EvaluationError) {
                            self.metrics.fail_closed(FailClosed::EvaluationError);
                        }
                        return Ok(decided(first, oldest.min(fetched_at)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "tenant lookup failed; denying");
                        return Ok(decided(
                            deny(DenyReason::StoreUnavailable, Some(e.to_string())),
                            oldest,
                        ));
                    }
                }
            }
        };
        let key = resource_generation.map(|r| (tenant.0.generation, r, action.generation));
        // The context as text keys both remembered decisions and residuals;
        // serialized once, and only when either is on.
        let context_text = if self.decisions.is_some() || self.residuals.is_some() {
            req.context.to_string()
        } else {
            String::new()
        };
        // A remembered decision needs neither an entity set nor evaluation.
        // Its key is built only when decisions are remembered at all.
        let decision_key = match (&self.decisions, key) {
            (Some(_), Some((tenant, resource, action))) => Some(DecisionKey {
                tenant,
                resource,
                action,
                principal: principal.clone(),
                context: context_text.clone(),
            }),
            _ => None,
        };
        if let (Some(k), Some(cache)) = (&decision_key, &self.decisions) {
            if let Some(ev) = cache.lock().get(k).cloned() {
                self.metrics.decision_cache.hits.inc();
                return Ok(decided(ev, oldest));
            }
            self.metrics.decision_cache.misses.inc();
        }
        if let Some(Extra::Document(doc)) = &extra {
            if let Some(ev) = self.by_residuals(
                snapshot,
                action,
                principal,
                &context_text,
                &context,
                &tenant.0,
                doc,
            ) {
                return Ok(decided(ev, oldest));
            }
        }
        let base = match key.and_then(|k| self.bases.lock().get(&k).cloned()) {
            Some(base) => base,
            None => match base_entities(
                action,
                std::iter::once(tenant.0.entity.clone()).chain(extra.map(Extra::into_entity)),
            ) {
                Ok(base) => {
                    let base = Arc::new(base);
                    if let Some(k) = key {
                        self.bases.lock().put(k, base.clone());
                    }
                    base
                }
                Err(e) => {
                    self.metrics.fail_closed(FailClosed::EvaluationError);
                    return Ok(decided(evaluation_error(format!("entities: {e}")), oldest));
                }
            },
        };
        let ev = evaluate(
            &self.authorizer,
            snapshot,
            action,
            principal,
            resource_uid,
            context,
            &base,
            own_policies,
        )?;
        if let (Some(k), Some(cache), None | Some(DenyReason::Forbidden | DenyReason::NoPermit)) =
            (decision_key, self.decisions.as_ref(), ev.reason)
        {
            // Failures (evaluation errors) are never remembered.
            let mut cache = cache.lock();
            cache.put(k, ev.clone());
            self.metrics.decision_cache.entries.set(cache.len() as i64);
        }
        if ev.reason == Some(DenyReason::EvaluationError) {
            self.metrics.fail_closed(FailClosed::EvaluationError);
            tracing::warn!(errors = ?ev.errors, "policy evaluation error; denying");
        }
        Ok(decided(ev, oldest))
    }
}
