//! Amazon Verified Permissions compatibility.
//!
//! - [`wire`]: the data-plane shapes (`IsAuthorized`, `BatchIsAuthorized`,
//!   and their `WithToken` variants) as the AWS API model defines them.
//! - This module: the policy stores a sidecar hosts — the Git-authored set
//!   under an id of the operator's choosing, and sets pulled from AVP policy
//!   stores — and the evaluation of a request against one of them with the
//!   entities the request carries, as AVP evaluates it.
//! - [`source`]: the puller that keeps a copy of an AVP policy store.
//! - [`push`]: `cedargate policy push`, Git → AVP.

pub mod push;
pub mod source;
pub mod wire;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use arc_swap::ArcSwapOption;
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    Schema,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::authz::entities::{user_entity, Principal, NAMESPACE};
use crate::identity::{TokenError, Verifier};
use crate::policy::PolicyHandle;
use wire::{
    ActionIdentifier, Decision, DeterminingPolicy, EntityIdentifier, EvaluationError, FieldError,
    Outcome,
};

/// The policy store id the Git-authored set answers to unless configured.
pub const DEFAULT_GIT_STORE: &str = "cedargate";

/// A policy set and the schema that types it, as one AVP policy store holds
/// them.
pub struct PolicyStoreSet {
    pub policies: PolicySet,
    pub schema: Option<Schema>,
    /// Identifies the content (a hash for Git, the newest update for AVP).
    pub revision: String,
}

/// Where a hosted store's policies come from.
pub enum Policies {
    /// `policies/` and `schemas/` (hot-reloaded with the native API's).
    Git(PolicyHandle),
    /// An AVP policy store, pulled by [`source`]; empty until the first
    /// pull succeeds.
    Pulled(Arc<ArcSwapOption<PolicyStoreSet>>),
}

/// How a hosted store decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Semantics {
    /// As the native API decides, for policies written for cedargate's
    /// model (the Git store): a token's principal is the native API's
    /// (`CedarGate::User::"<sub>"` in the token's tenant, groups as roles,
    /// the clearance claim) with its tenant read from the store; any
    /// evaluation error is a Deny; plain calls, which name their own
    /// principal, are served only in trusted identity mode.
    #[default]
    Cedargate,
    /// As Amazon Verified Permissions decides (pulled stores): AVP's
    /// Cognito token mapping; an erroring policy is skipped.
    Avp,
}

/// How a verified token becomes a principal.
pub enum TokenMapping {
    /// As AVP maps an Amazon Cognito identity source.
    Cognito {
        /// The entity id prefix: `<userPoolId>|<sub>`.
        user_pool_id: String,
        principal_entity_type: String,
        /// Type of the `cognito:groups` parents; none: groups are ignored.
        group_entity_type: Option<String>,
    },
    /// cedargate's own principal, as the native API builds it.
    Native,
}

/// A store's identity source: the verifier of its tokens and their mapping.
pub struct TokenSource {
    pub verifier: Arc<Verifier>,
    pub mapping: TokenMapping,
}

/// One hosted policy store.
pub struct HostedStore {
    pub id: String,
    pub policies: Policies,
    pub identity: Option<TokenSource>,
    pub semantics: Semantics,
    pub parsed: ParsedEntities,
}

/// The policy stores of a sidecar, by id.
#[derive(Default)]
pub struct PolicyStores {
    stores: HashMap<String, Arc<HostedStore>>,
}

impl PolicyStores {
    pub fn new(stores: Vec<HostedStore>) -> Self {
        PolicyStores {
            stores: stores
                .into_iter()
                .map(|s| (s.id.clone(), Arc::new(s)))
                .collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<HostedStore>> {
        self.stores.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }
}

/// Why a request cannot be evaluated, as AVP reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvpError {
    /// `ValidationException`, with the fields at fault.
    Validation(String, Vec<FieldError>),
    /// `ResourceNotFoundException` for a policy store.
    StoreNotFound(String),
    /// `AccessDeniedException`: a token that is not accepted.
    AccessDenied(String),
    /// `InternalServerException`: the store's policies are not loaded yet.
    NotReady(String),
}

impl From<FieldError> for AvpError {
    fn from(e: FieldError) -> Self {
        AvpError::Validation(format!("{}: {}", e.path, e.message), vec![e])
    }
}

impl From<TokenError> for AvpError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::KeysUnavailable => AvpError::NotReady(e.to_string()),
            _ => AvpError::AccessDenied(format!("the token is not accepted: {e}")),
        }
    }
}

/// A hosted store's policies at one moment.
pub enum Current {
    Git(Arc<crate::policy::PolicySnapshot>),
    Pulled(Arc<PolicyStoreSet>),
}

impl Current {
    pub fn policies(&self) -> &PolicySet {
        match self {
            Current::Git(s) => &s.policies,
            Current::Pulled(s) => &s.policies,
        }
    }

    pub fn schema(&self) -> Option<&Schema> {
        match self {
            Current::Git(s) => Some(&s.schema),
            Current::Pulled(s) => s.schema.as_ref(),
        }
    }

    pub fn revision(&self) -> &str {
        match self {
            Current::Git(s) => &s.revision,
            Current::Pulled(s) => &s.revision,
        }
    }
}

/// A hosted store's current policies, or why there are none.
pub fn current(store: &HostedStore) -> Result<Current, AvpError> {
    match &store.policies {
        Policies::Git(handle) => Ok(Current::Git(handle.load_full())),
        Policies::Pulled(set) => set.load_full().map(Current::Pulled).ok_or_else(|| {
            AvpError::NotReady(format!(
                "policy store {} has not been loaded from Verified Permissions yet",
                store.id
            ))
        }),
    }
}

fn uid(path: &str, e: &EntityIdentifier) -> Result<EntityUid, FieldError> {
    let ty = EntityTypeName::from_str(&e.entity_type).map_err(|err| {
        FieldError::new(
            format!("{path}.entityType"),
            format!("not a Cedar entity type: {err}"),
        )
    })?;
    Ok(EntityUid::from_type_name_and_id(
        ty,
        EntityId::new(&e.entity_id),
    ))
}

fn action_uid(path: &str, a: &ActionIdentifier) -> Result<EntityUid, FieldError> {
    uid(
        path,
        &EntityIdentifier {
            entity_type: a.action_type.clone(),
            entity_id: a.action_id.clone(),
        },
    )
}

/// How many parsed entity sets each store remembers.
const PARSED_CAPACITY: usize = 1024;

/// Entity sets already parsed, by the store revision and the entities'
/// JSON text: clients send the same entities again and again (a user and
/// the resources of a page), and parsing costs more than deciding.
pub struct ParsedEntities(Mutex<LruCache<(String, String), Arc<Entities>>>);

impl Default for ParsedEntities {
    fn default() -> Self {
        ParsedEntities(Mutex::new(LruCache::new(
            NonZeroUsize::new(PARSED_CAPACITY).unwrap_or(NonZeroUsize::MIN),
        )))
    }
}

impl HostedStore {
    /// The request's entities, parsed with the schema when the store has
    /// one (as AVP does; the schema's action entities come with it), plus
    /// those the sidecar supplies itself (a token's principal, its tenant).
    /// A request entity that claims to be one of those is refused: what a
    /// token says is not the caller's to restate.
    pub fn entities(
        &self,
        set: &Current,
        def: Option<&wire::EntitiesDefinition>,
        supplied: &[Entity],
    ) -> Result<Arc<Entities>, FieldError> {
        let text = match def {
            None => String::from("[]"),
            Some(d) => match (&d.entity_list, &d.cedar_json) {
                (None, Some(text)) => text.clone(),
                _ => d.cedar("entities")?.to_string(),
            },
        };
        let key = (set.revision().to_string(), text);
        let cached = self.parsed.0.lock().get(&key).cloned();
        let base = match cached {
            Some(e) => e,
            None => {
                let json = match def {
                    Some(d) => d.cedar("entities")?,
                    None => json!([]),
                };
                let parsed = Arc::new(
                    Entities::from_json_value(json, set.schema())
                        .map_err(|e| FieldError::new("entities", e.to_string()))?,
                );
                self.parsed.0.lock().put(key, parsed.clone());
                parsed
            }
        };
        if supplied.is_empty() {
            return Ok(base);
        }
        if let Some(e) = supplied.iter().find(|e| base.get(&e.uid()).is_some()) {
            return Err(FieldError::new(
                "entities",
                format!(
                    "{} comes from the token; leave it out of the request's entities",
                    e.uid()
                ),
            ));
        }
        Entities::clone(&base)
            .add_entities(supplied.iter().cloned(), None)
            .map(Arc::new)
            .map_err(|e| FieldError::new("entities", e.to_string()))
    }
}

/// One request of a call, ready to evaluate.
pub struct Query<'a> {
    /// Where its fields are, for error paths (`""` or `requests[3]`).
    pub path: String,
    pub principal: Option<&'a EntityIdentifier>,
    pub action: Option<&'a ActionIdentifier>,
    pub resource: Option<&'a EntityIdentifier>,
    pub context: Value,
    /// Whether the context is checked against the schema. Not when it
    /// carries an access token's claims (`context.token`), which vary by
    /// token and issuer and which no schema lists in full.
    pub typed_context: bool,
}

/// Checks and evaluates one request. Under [`Semantics::Cedargate`] an
/// evaluation error denies: an erroring policy may be a forbid that did not
/// get to hold.
/// `own`: a token principal's tenant's own policies (the Git store's
/// native mapping), evaluated beside the store's as the native API does.
pub fn evaluate(
    set: &Current,
    entities: &Entities,
    q: &Query<'_>,
    semantics: Semantics,
    own: Option<&crate::policy::tenant::Compiled>,
) -> Result<Outcome, AvpError> {
    wire::check_request(&q.path, q.principal, q.action, q.resource)?;
    let at = |f: &str| wire::field(&q.path, f);
    let principal = q
        .principal
        .ok_or_else(|| FieldError::new(at("principal"), "is required"))?;
    let p = uid(&at("principal"), principal)?;
    let a = action_uid(
        &at("action"),
        q.action
            .ok_or_else(|| FieldError::new(at("action"), "is required"))?,
    )?;
    let r = uid(
        &at("resource"),
        q.resource
            .ok_or_else(|| FieldError::new(at("resource"), "is required"))?,
    )?;
    let schema = set.schema().filter(|_| q.typed_context);
    let context = Context::from_json_value(q.context.clone(), schema.map(|s| (s, &a)))
        .map_err(|e| FieldError::new(at("context"), e.to_string()))?;
    let request = Request::new(p, a.clone(), r, context, schema)
        .map_err(|e| FieldError::new(q.path.clone(), e.to_string()))?;
    let own = own.and_then(|c| c.slice(a.id().unescaped()));
    if let Some(broken) = own.filter(|s| !s.broken.is_empty()).map(|s| &s.broken) {
        // A forbid of the tenant's no longer compiles: fail closed.
        return Ok(Outcome {
            decision: Decision::Deny,
            determining_policies: Vec::new(),
            errors: vec![EvaluationError {
                error_description: format!(
                    "tenant policies that no longer compile under the current policies: {}",
                    broken.join(", ")
                ),
            }],
        });
    }
    let authorizer = Authorizer::new();
    let response = authorizer.is_authorized(&request, set.policies(), entities);
    let diagnostics = response.diagnostics();
    let mut cedar_decision = response.decision();
    let mut reasons: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
    let mut error_texts: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
    if let Some(own) = own.map(|s| &s.policies).filter(|s| !s.is_empty()) {
        let more = authorizer.is_authorized(&request, own, entities);
        (cedar_decision, reasons) = crate::authz::combined(
            (cedar_decision, reasons),
            (
                more.decision(),
                more.diagnostics()
                    .reason()
                    .map(ToString::to_string)
                    .collect(),
            ),
        );
        error_texts.extend(more.diagnostics().errors().map(|e| e.to_string()));
    }
    let mut determining: Vec<DeterminingPolicy> = reasons
        .into_iter()
        .map(|policy_id| DeterminingPolicy { policy_id })
        .collect();
    determining.sort_by(|x, y| x.policy_id.cmp(&y.policy_id));
    let errors: Vec<EvaluationError> = error_texts
        .into_iter()
        .map(|error_description| EvaluationError { error_description })
        .collect();
    let decision = match cedar_decision {
        cedar_policy::Decision::Allow
            if semantics == Semantics::Cedargate && !errors.is_empty() =>
        {
            Decision::Deny
        }
        cedar_policy::Decision::Allow => Decision::Allow,
        cedar_policy::Decision::Deny => Decision::Deny,
    };
    Ok(Outcome {
        decision,
        determining_policies: if decision == Decision::Deny
            && cedar_decision == cedar_policy::Decision::Allow
        {
            // The permits that held did not decide: the errors did.
            Vec::new()
        } else {
            determining
        },
        errors,
    })
}

/// Which token a `WithToken` call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Identity,
    Access,
}

/// What a verified token contributes to a request: the principal (also
/// returned to the caller), its entity, and for an access token under the
/// Cognito mapping the `context.token` record.
pub struct TokenPrincipal {
    pub principal: EntityIdentifier,
    pub entity: Entity,
    pub context_token: Option<Value>,
    /// The native API's principal, under [`TokenMapping::Native`].
    pub native: Option<Principal>,
}

/// The claim that lists a Cognito user's groups.
pub(crate) const GROUPS_CLAIM: &str = "cognito:groups";

impl TokenSource {
    /// The principal of a token's verified claims
    /// ([`Verifier::verify_claims_fresh`]), mapped the way AVP maps an
    /// Amazon Cognito identity source: principal
    /// `<principalEntityType>::"<userPoolId>|<sub>"`, `cognito:groups` as
    /// parents `<groupEntityType>::"<userPoolId>|<group>"`, an ID token's
    /// other claims as the principal's attributes, an access token's claims
    /// as `context.token`; or, mapped natively, the native principal.
    pub fn map(&self, claims: &Value, kind: TokenKind) -> Result<TokenPrincipal, AvpError> {
        let (user_pool_id, principal_entity_type, group_entity_type) = match &self.mapping {
            TokenMapping::Cognito {
                user_pool_id,
                principal_entity_type,
                group_entity_type,
            } => (user_pool_id, principal_entity_type, group_entity_type),
            TokenMapping::Native => {
                check_token_use(claims, kind)?;
                let p = self.verifier.principal_of(claims)?;
                let entity = user_entity(&p);
                return Ok(TokenPrincipal {
                    principal: EntityIdentifier {
                        entity_type: format!("{NAMESPACE}::User"),
                        entity_id: p.id.as_str().to_string(),
                    },
                    entity,
                    context_token: None,
                    native: Some(p),
                });
            }
        };
        check_token_use(claims, kind)?;
        let Some(sub) = claims.get("sub").and_then(Value::as_str) else {
            return Err(AvpError::AccessDenied("the token has no sub".into()));
        };
        let principal = EntityIdentifier {
            entity_type: principal_entity_type.clone(),
            entity_id: format!("{user_pool_id}|{sub}"),
        };
        let parents: Vec<Value> = match group_entity_type {
            Some(group_type) => claims
                .get(GROUPS_CLAIM)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|g| json!({"type": group_type, "id": format!("{user_pool_id}|{g}")}))
                .collect(),
            None => Vec::new(),
        };
        let record = |claims: &Value| -> Value {
            let fields: serde_json::Map<String, Value> = claims
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != GROUPS_CLAIM)
                .filter_map(|(k, v)| cedar_claim(v).map(|v| (k.clone(), v)))
                .collect();
            Value::Object(fields)
        };
        let (attrs, context_token) = match kind {
            TokenKind::Identity => (record(claims), None),
            TokenKind::Access => (json!({}), Some(record(claims))),
        };
        let entity = Entity::from_json_value(
            json!({
                "uid": principal.cedar(),
                "attrs": attrs,
                "parents": parents,
            }),
            None,
        )
        .map_err(|e| {
            AvpError::AccessDenied(format!("the token's claims are not an entity: {e}"))
        })?;
        Ok(TokenPrincipal {
            entity,
            principal,
            context_token,
            native: None,
        })
    }
}

/// A token given as `identityToken` must be an ID token, as `accessToken`
/// an access token (when it says which it is).
fn check_token_use(claims: &Value, kind: TokenKind) -> Result<(), AvpError> {
    let want = match kind {
        TokenKind::Identity => "id",
        TokenKind::Access => "access",
    };
    match claims.get("token_use").and_then(Value::as_str) {
        Some(actual) if actual != want => Err(AvpError::AccessDenied(format!(
            "the token is an {actual} token, given as {}",
            match kind {
                TokenKind::Identity => "identityToken",
                TokenKind::Access => "accessToken",
            }
        ))),
        _ => Ok(()),
    }
}

/// A claim as a Cedar value: strings, booleans, whole numbers, and sets and
/// records of them; other numbers become strings; nulls are left out.
fn cedar_claim(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(_) | Value::String(_) => Some(v.clone()),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => json!(i),
            None => json!(n.to_string()),
        }),
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(cedar_claim).collect())),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| cedar_claim(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
    }
}

/// One hosted store as configured (`[[avp.stores]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The `policyStoreId` callers name.
    pub id: String,
    #[serde(default)]
    pub source: SourceKind,
    /// AVP stores: the region, and an endpoint other than AWS's.
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// AVP stores: how often changes are looked for [default: 30].
    pub refresh_secs: Option<u64>,
    /// The identity source of the `WithToken` calls [default for the Git
    /// store: the sidecar's own token settings].
    pub identity: Option<IdentitySourceConfig>,
    /// How the store decides [default: `cedargate` for the Git store,
    /// `avp` for pulled ones].
    pub semantics: Option<Semantics>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The Git-authored `policies/` and `schemas/`.
    #[default]
    Git,
    /// An Amazon Verified Permissions policy store with this id.
    Avp,
}

/// An Amazon Cognito user pool as AVP's identity source configuration
/// names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySourceConfig {
    pub user_pool_id: String,
    /// The principal's type under AVP's mapping (required there; the
    /// native mapping's is `CedarGate::User`).
    pub principal_entity_type: Option<String>,
    pub group_entity_type: Option<String>,
    /// Accepted app client ids (`aud` of ID tokens, `client_id` of access
    /// tokens).
    pub client_ids: Vec<String>,
    /// Token issuer [default: the user pool's Cognito URL].
    pub issuer: Option<String>,
    /// Where the pool's keys are [default: the issuer's JWKS URL].
    pub jwks_file: Option<std::path::PathBuf>,
    pub jwks_url: Option<String>,
    /// Accept keys minted by `cedargate token` (development only).
    #[serde(default)]
    pub allow_dev_keys: bool,
    /// The native mapping's claims [defaults: `custom:tenant_id`,
    /// `cognito:groups`, `custom:clearance`].
    pub tenant_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub clearance_claim: Option<String>,
}

impl IdentitySourceConfig {
    /// The verifier settings: the pool's issuer, its client ids as
    /// audiences, either Cognito token type.
    pub fn jwt_config(&self) -> crate::identity::JwtConfig {
        let region = self.user_pool_id.split('_').next().unwrap_or_default();
        let issuer = self.issuer.clone().unwrap_or_else(|| {
            format!(
                "https://cognito-idp.{region}.amazonaws.com/{}",
                self.user_pool_id
            )
        });
        let jwks = match (&self.jwks_file, &self.jwks_url) {
            (Some(f), _) => crate::identity::JwksSource::File(f.clone()),
            (None, Some(u)) => crate::identity::JwksSource::Url(u.clone()),
            (None, None) => {
                crate::identity::JwksSource::Url(format!("{issuer}/.well-known/jwks.json"))
            }
        };
        let mut c = crate::identity::JwtConfig::new(jwks, issuer, self.client_ids.clone());
        c.token_use = crate::identity::TokenUse::Any;
        c.allow_dev_keys = self.allow_dev_keys;
        if let Some(t) = &self.tenant_claim {
            c.claims.tenant = t.clone();
        }
        if let Some(r) = &self.roles_claim {
            c.claims.roles = r.clone();
        }
        if let Some(cl) = &self.clearance_claim {
            c.claims.clearance = (!cl.is_empty()).then(|| cl.clone());
        }
        c
    }

    /// The mapping of this source's tokens under `semantics`.
    pub fn mapping(&self, semantics: Semantics) -> Result<TokenMapping, String> {
        match semantics {
            Semantics::Cedargate => Ok(TokenMapping::Native),
            Semantics::Avp => Ok(TokenMapping::Cognito {
                user_pool_id: self.user_pool_id.clone(),
                principal_entity_type: self.principal_entity_type.clone().ok_or(
                    "an identity source under semantics = \"avp\" needs principal_entity_type",
                )?,
                group_entity_type: self.group_entity_type.clone(),
            }),
        }
    }
}

impl StoreConfig {
    /// The Git store under `id`.
    pub fn git(id: &str) -> Self {
        StoreConfig {
            id: id.to_string(),
            source: SourceKind::Git,
            region: None,
            endpoint_url: None,
            refresh_secs: None,
            identity: None,
            semantics: None,
        }
    }

    /// How the store decides, as configured or by its source.
    pub fn semantics(&self) -> Semantics {
        self.semantics.unwrap_or(match self.source {
            SourceKind::Git => Semantics::Cedargate,
            SourceKind::Avp => Semantics::Avp,
        })
    }
}

/// Checks the configured stores: valid, distinct ids; one Git store at most.
pub fn check_config(stores: &[StoreConfig]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for s in stores {
        wire::check_store_id(&s.id).map_err(|e| format!("avp store {:?}: {}", s.id, e.message))?;
        if !seen.insert(s.id.as_str()) {
            return Err(format!("avp store {:?} is configured twice", s.id));
        }
        if let Some(i) = &s.identity {
            i.mapping(s.semantics())
                .map_err(|e| format!("avp store {:?}: {e}", s.id))?;
        }
        if s.source == SourceKind::Git && s.semantics() == Semantics::Avp {
            return Err(format!(
                "avp store {:?}: the Git policies are written for cedargate's principal; under semantics = \"avp\" a token's principal would skip their forbids",
                s.id
            ));
        }
    }
    if stores
        .iter()
        .filter(|s| s.source == SourceKind::Git)
        .count()
        > 1
    {
        return Err("only one avp store may serve the Git policies".into());
    }
    Ok(())
}
