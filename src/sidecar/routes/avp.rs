//! `POST /` with `X-Amz-Target: VerifiedPermissions.<Operation>`: the
//! Amazon Verified Permissions data plane (awsJson1_0), so AWS SDKs pointed
//! at the sidecar (`endpoint_url`) get their decisions locally. Signatures
//! (SigV4) are not checked: the sidecar is a loopback endpoint and answers
//! only what the caller could evaluate itself.
//!
//! Errors are what AWS clients read: `__type` in the body and the
//! `x-amzn-ErrorType` header, `message`, `fieldList` for validation; every
//! answer carries `x-amzn-RequestId`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use cedar_policy::{Entities, Entity};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{AuditEvent, RequestMeta};
use crate::avp::wire::{
    self, BatchIsAuthorizedInput, BatchIsAuthorizedWithTokenInput, BatchItemOutput,
    EntitiesDefinition, EntityIdentifier, FieldError, IsAuthorizedInput,
    IsAuthorizedWithTokenInput, Outcome,
};
use crate::avp::{
    self, AvpError, Current, HostedStore, Query, Semantics, TokenKind, TokenPrincipal,
};
use crate::ids::TenantId;
use crate::metrics::FailClosed;
use crate::policy::tenant::Compiled;
use crate::sidecar::http::{full, read_body, Body};
use crate::sidecar::AppState;
use crate::sidecar::Identity;

/// The target prefix of the service.
pub(super) const TARGET_PREFIX: &str = "VerifiedPermissions.";

/// Most requests in a batch (AVP's limit).
pub const MAX_BATCH: usize = 30;

const CONTENT: &str = "application/x-amz-json-1.0";

/// An AWS error: its type (the shape's name), status and message.
struct AwsError {
    kind: &'static str,
    status: StatusCode,
    message: String,
    extra: Value,
}

impl AwsError {
    fn new(kind: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        AwsError {
            kind,
            status,
            message: message.into(),
            extra: json!({}),
        }
    }

    fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", StatusCode::BAD_REQUEST, message)
    }
}

impl From<AvpError> for AwsError {
    fn from(e: AvpError) -> Self {
        match e {
            AvpError::Validation(message, fields) => AwsError {
                kind: "ValidationException",
                status: StatusCode::BAD_REQUEST,
                message,
                extra: json!({ "fieldList": fields }),
            },
            AvpError::StoreNotFound(id) => AwsError {
                kind: "ResourceNotFoundException",
                status: StatusCode::NOT_FOUND,
                message: format!("policy store {id} does not exist"),
                extra: json!({ "resourceId": id, "resourceType": "POLICY_STORE" }),
            },
            AvpError::AccessDenied(m) => {
                Self::new("AccessDeniedException", StatusCode::FORBIDDEN, m)
            }
            AvpError::NotReady(m) => Self::new(
                "InternalServerException",
                StatusCode::INTERNAL_SERVER_ERROR,
                m,
            ),
        }
    }
}

impl From<FieldError> for AwsError {
    fn from(e: FieldError) -> Self {
        AvpError::from(e).into()
    }
}

fn respond(status: StatusCode, body: &impl Serialize, request_id: &str) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn error_response(e: AwsError, request_id: &str) -> Response<Body> {
    let mut body = e.extra;
    if let Some(map) = body.as_object_mut() {
        map.insert(
            "__type".into(),
            format!("com.amazonaws.verifiedpermissions#{}", e.kind).into(),
        );
        map.insert("message".into(), e.message.into());
    }
    let mut resp = respond(e.status, &body, request_id);
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(e.kind));
    resp
}

/// Whether a request is for this API.
pub(super) fn is_avp(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

pub(super) async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let request_id = uuid::Uuid::now_v7().to_string();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start_matches(TARGET_PREFIX)
        .to_string();
    let result = async {
        let (head, bytes) = read_body(req, state.config.max_body_bytes)
            .await
            .map_err(|e| AwsError::new("ValidationException", StatusCode::BAD_REQUEST, e.message))?;
        let meta = super::request_meta(&head.headers, peer);
        let call = Call {
            state,
            meta,
            request_id: &request_id,
        };
        match target.as_str() {
            "IsAuthorized" => call.is_authorized(parse(&bytes)?).await,
            "BatchIsAuthorized" => call.batch(parse(&bytes)?).await,
            "IsAuthorizedWithToken" => call.with_token(parse(&bytes)?).await,
            "BatchIsAuthorizedWithToken" => call.batch_with_token(parse(&bytes)?).await,
            other => Err(AwsError::new(
                "UnknownOperationException",
                StatusCode::BAD_REQUEST,
                format!("operation {other:?} is not served here; this endpoint serves IsAuthorized, BatchIsAuthorized, IsAuthorizedWithToken and BatchIsAuthorizedWithToken"),
            )),
        }
    }
    .await;
    match result {
        Ok(body) => respond(StatusCode::OK, &body, &request_id),
        Err(e) => {
            state.engine.metrics().avp_error(e.kind);
            error_response(e, &request_id)
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AwsError> {
    serde_json::from_slice(bytes).map_err(|e| AwsError::serialization(e.to_string()))
}

/// One call's shared facts.
struct Call<'a> {
    state: &'a AppState,
    meta: RequestMeta,
    request_id: &'a str,
}

impl Call<'_> {
    fn store(&self, id: &str) -> Result<(std::sync::Arc<HostedStore>, Current), AwsError> {
        wire::check_store_id(id)?;
        let store = self
            .state
            .avp
            .get(id)
            .cloned()
            .ok_or_else(|| AvpError::StoreNotFound(id.to_string()))?;
        let current = avp::current(&store)?;
        Ok((store, current))
    }

    fn entities(
        &self,
        store: &HostedStore,
        set: &Current,
        def: Option<&EntitiesDefinition>,
        supplied: &[Entity],
    ) -> Result<std::sync::Arc<Entities>, AwsError> {
        Ok(store.entities(set, def, supplied)?)
    }

    /// A plain call names its own principal. Under cedargate's semantics
    /// that is only for a trusted caller, as on the native API: with token
    /// identity the principal comes from a verified token only.
    fn plain_allowed(&self, store: &HostedStore) -> Result<(), AwsError> {
        match (store.semantics, &self.state.identity) {
            (Semantics::Cedargate, Identity::Jwt(_)) => Err(AvpError::AccessDenied(
                "this sidecar takes principals from verified tokens only (identity = jwt): call IsAuthorizedWithToken".into(),
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// The entities a token contributes: its principal and, for the native
    /// mapping, the principal's tenant as the store holds it (as the native
    /// API reads it). A tenant that does not exist is left out, and the
    /// policies deny; a store that cannot be read fails the call.
    /// With them, the tenant's own policies, compiled against the current
    /// policies (as the native API evaluates them).
    async fn supplied(
        &self,
        token: &TokenPrincipal,
    ) -> Result<(Vec<Entity>, Option<Arc<Compiled>>), AwsError> {
        let mut out = vec![token.entity.clone()];
        let mut own = None;
        if let Some(p) = &token.native {
            match self.state.engine.cache().tenant(&p.tenant).await {
                Ok(slot) => {
                    if let Some(t) = slot.value {
                        own = t.compiled(&self.state.engine.policies().load());
                        out.push(t.entity.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tenant lookup failed; no decision");
                    self.state
                        .engine
                        .metrics()
                        .fail_closed(FailClosed::StoreUnavailable);
                    return Err(AwsError::new(
                        "InternalServerException",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the principal's tenant cannot be read; try again",
                    ));
                }
            }
        }
        Ok((out, own))
    }

    /// Evaluates every query first (a request that is not valid fails the
    /// whole call, as in AVP, before anything is recorded), then queues one
    /// record per decision and waits for them all (one spool commit).
    async fn decide_all(
        &self,
        store: &HostedStore,
        set: &Current,
        entities: &Entities,
        queries: &[Query<'_>],
        log: Log<'_>,
        own: Option<&Compiled>,
    ) -> Result<Vec<Outcome>, AwsError> {
        let mut outcomes = Vec::with_capacity(queries.len());
        for q in queries {
            let started = Instant::now();
            outcomes.push((
                avp::evaluate(set, entities, q, store.semantics, own)?,
                started.elapsed(),
            ));
        }
        let metrics = self.state.engine.metrics();
        for (o, _) in &outcomes {
            metrics.avp_decision(o.decision == wire::Decision::Allow);
        }
        let mut receipts = Vec::with_capacity(queries.len());
        if self.state.audit.is_on() {
            for (q, (outcome, latency)) in queries.iter().zip(&outcomes) {
                let event = self.event(store, set, q, outcome, log, *latency);
                receipts.push(
                    self.state
                        .audit
                        .submit(event)
                        .await
                        .map_err(|e| unrecorded(self.state, &e))?,
                );
            }
        }
        for r in receipts {
            r.written().await.map_err(|e| unrecorded(self.state, &e))?;
        }
        Ok(outcomes.into_iter().map(|(o, _)| o).collect())
    }

    /// [`Call::decide_all`] for one query.
    async fn one(
        &self,
        store: &HostedStore,
        set: &Current,
        entities: &Entities,
        q: Query<'_>,
        log: Log<'_>,
        own: Option<&Compiled>,
    ) -> Result<Outcome, AwsError> {
        let mut out = self
            .decide_all(store, set, entities, &[q], log, own)
            .await?;
        out.pop().ok_or_else(|| {
            AwsError::new(
                "InternalServerException",
                StatusCode::INTERNAL_SERVER_ERROR,
                "no outcome",
            )
        })
    }

    fn event(
        &self,
        store: &HostedStore,
        set: &Current,
        q: &Query<'_>,
        outcome: &Outcome,
        log: Log<'_>,
        latency: std::time::Duration,
    ) -> AuditEvent {
        let Log { source, tenant } = log;
        let uid = |e: Option<&EntityIdentifier>| {
            e.map(|e| format!("{}::{:?}", e.entity_type, e.entity_id))
                .unwrap_or_default()
        };
        let action = q
            .action
            .map(|a| format!("{}::{:?}", a.action_type, a.action_id))
            .unwrap_or_default();
        let mut details = json!({
            "kind": "decision",
            "source": source,
            "policyStoreId": store.id,
            "decision": outcome.decision,
            "determiningPolicies": outcome.determining_policies.iter().map(|p| &p.policy_id).collect::<Vec<_>>(),
            "errors": outcome.errors.iter().map(|e| &e.error_description).collect::<Vec<_>>(),
            "policyRevision": set.revision(),
            "latencyUs": u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            "requestId": self.request_id,
        });
        if let Some(id) = &self.meta.request_id {
            details["clientRequestId"] = id.as_str().into();
        }
        let mut e = AuditEvent::new(
            uuid::Uuid::now_v7().to_string(),
            chrono::Utc::now(),
            // A token's native principal: its tenant's log, as on the
            // native API; else the store's partition.
            tenant.map_or_else(|| audit_partition(&store.id), |t| t.as_str().to_string()),
            action,
            uid(q.resource),
            details,
        );
        e.user_id = q.principal.map(|p| match tenant {
            // The native API's user id.
            Some(_) => p.entity_id.clone(),
            None => uid(Some(p)),
        });
        e.ip_address = self.meta.ip_address.clone();
        e.user_agent = self.meta.user_agent.clone();
        e.success = outcome.decision == wire::Decision::Allow;
        e
    }

    async fn is_authorized(&self, input: IsAuthorizedInput) -> Result<Value, AwsError> {
        let (store, set) = self.store(&input.policy_store_id)?;
        self.plain_allowed(&store)?;
        let entities = self.entities(&store, &set, input.entities.as_ref(), &[])?;
        let q = Query {
            path: String::new(),
            principal: input.principal.as_ref(),
            action: input.action.as_ref(),
            resource: input.resource.as_ref(),
            context: context(input.context.as_ref(), "context", None)?,
            typed_context: true,
        };
        let outcome = self
            .one(&store, &set, &entities, q, Log::store("avp"), None)
            .await?;
        Ok(json!(outcome))
    }

    async fn batch(&self, input: BatchIsAuthorizedInput) -> Result<Value, AwsError> {
        let (store, set) = self.store(&input.policy_store_id)?;
        self.plain_allowed(&store)?;
        batch_size(input.requests.len())?;
        // AVP's rule: one principal or one resource across the batch.
        let first = &input.requests[0];
        let same_principal = input
            .requests
            .iter()
            .all(|r| r.principal == first.principal);
        let same_resource = input.requests.iter().all(|r| r.resource == first.resource);
        if !same_principal && !same_resource {
            return Err(AvpError::from(FieldError::new(
                "requests",
                "the principal or the resource must be the same in every request of a batch",
            ))
            .into());
        }
        let entities = self.entities(&store, &set, input.entities.as_ref(), &[])?;
        let mut queries = Vec::with_capacity(input.requests.len());
        for (i, item) in input.requests.iter().enumerate() {
            let path = format!("requests[{i}]");
            let q = Query {
                context: context(item.context.as_ref(), &format!("{path}.context"), None)?,
                typed_context: true,
                path,
                principal: item.principal.as_ref(),
                action: item.action.as_ref(),
                resource: item.resource.as_ref(),
            };
            queries.push(q);
        }
        let outcomes = self
            .decide_all(
                &store,
                &set,
                &entities,
                &queries,
                Log::store("avp-batch"),
                None,
            )
            .await?;
        drop(queries);
        let results: Vec<_> = input
            .requests
            .into_iter()
            .zip(outcomes)
            .map(|(request, outcome)| BatchItemOutput { request, outcome })
            .collect();
        Ok(json!({ "results": results }))
    }

    /// The store, its policies and the token's principal.
    async fn token_principal(
        &self,
        store_id: &str,
        identity: Option<&str>,
        access: Option<&str>,
    ) -> Result<(std::sync::Arc<HostedStore>, Current, TokenPrincipal), AwsError> {
        let (store, set) = self.store(store_id)?;
        let (token, kind) = match (identity, access) {
            (Some(t), None) => (t, TokenKind::Identity),
            (None, Some(t)) => (t, TokenKind::Access),
            _ => {
                return Err(FieldError::new(
                    "identityToken",
                    "give exactly one of identityToken and accessToken",
                )
                .into())
            }
        };
        let source = store.identity.as_ref().ok_or_else(|| {
            AvpError::from(FieldError::new(
                "policyStoreId",
                "the policy store has no identity source",
            ))
        })?;
        // Refusals and first uses leave authentication records, as on the
        // native API (crate::audit::auth).
        let now = chrono::Utc::now();
        let (claims, sign_in) = match source.verifier.verify_claims_fresh(token).await {
            Ok(verified) => verified,
            Err(e) => {
                self.state
                    .auth
                    .refused(&e, Some(token), &self.meta, "avp", now);
                return Err(AvpError::from(e).into());
            }
        };
        let principal = source.map(&claims, kind)?;
        if let Some(s) = sign_in {
            match &principal.native {
                Some(p) => self.state.auth.signed_in(p, &s, &self.meta, "avp", now),
                None => self.state.auth.signed_in_claims(
                    &claims,
                    &principal.principal.entity_id,
                    &s,
                    &self.meta,
                    "avp",
                    now,
                ),
            }
        }
        Ok((store, set, principal))
    }

    async fn with_token(&self, input: IsAuthorizedWithTokenInput) -> Result<Value, AwsError> {
        let (store, set, token) = self
            .token_principal(
                &input.policy_store_id,
                input.identity_token.as_deref(),
                input.access_token.as_deref(),
            )
            .await?;
        let (supplied, own) = self.supplied(&token).await?;
        let entities = self.entities(&store, &set, input.entities.as_ref(), &supplied)?;
        let q = Query {
            path: String::new(),
            principal: Some(&token.principal),
            action: input.action.as_ref(),
            resource: input.resource.as_ref(),
            context: context(
                input.context.as_ref(),
                "context",
                token.context_token.as_ref(),
            )?,
            typed_context: token.context_token.is_none(),
        };
        let outcome = self
            .one(
                &store,
                &set,
                &entities,
                q,
                Log::token("avp-token", &token),
                own.as_deref(),
            )
            .await?;
        let mut out = json!(outcome);
        out["principal"] = json!(token.principal);
        Ok(out)
    }

    async fn batch_with_token(
        &self,
        input: BatchIsAuthorizedWithTokenInput,
    ) -> Result<Value, AwsError> {
        let (store, set, token) = self
            .token_principal(
                &input.policy_store_id,
                input.identity_token.as_deref(),
                input.access_token.as_deref(),
            )
            .await?;
        batch_size(input.requests.len())?;
        let (supplied, own) = self.supplied(&token).await?;
        let entities = self.entities(&store, &set, input.entities.as_ref(), &supplied)?;
        let mut queries = Vec::with_capacity(input.requests.len());
        for (i, item) in input.requests.iter().enumerate() {
            let path = format!("requests[{i}]");
            let q = Query {
                context: context(
                    item.context.as_ref(),
                    &format!("{path}.context"),
                    token.context_token.as_ref(),
                )?,
                typed_context: token.context_token.is_none(),
                path,
                principal: Some(&token.principal),
                action: item.action.as_ref(),
                resource: item.resource.as_ref(),
            };
            queries.push(q);
        }
        let outcomes = self
            .decide_all(
                &store,
                &set,
                &entities,
                &queries,
                Log::token("avp-token-batch", &token),
                own.as_deref(),
            )
            .await?;
        drop(queries);
        let results: Vec<_> = input
            .requests
            .into_iter()
            .zip(outcomes)
            .map(|(request, outcome)| BatchItemOutput { request, outcome })
            .collect();
        Ok(json!({ "principal": token.principal, "results": results }))
    }
}

/// How a call's decisions are recorded: their source, and the tenant whose
/// log they go to (a token's native principal's; else the store's
/// partition).
#[derive(Clone, Copy)]
struct Log<'a> {
    source: &'static str,
    tenant: Option<&'a TenantId>,
}

impl<'a> Log<'a> {
    fn store(source: &'static str) -> Self {
        Log {
            source,
            tenant: None,
        }
    }

    fn token(source: &'static str, token: &'a TokenPrincipal) -> Self {
        Log {
            source,
            tenant: token.native.as_ref().map(|p| &p.tenant),
        }
    }
}

fn batch_size(n: usize) -> Result<(), AwsError> {
    if n == 0 || n > MAX_BATCH {
        return Err(FieldError::new(
            "requests",
            format!("a batch holds 1 to {MAX_BATCH} requests, this one has {n}"),
        )
        .into());
    }
    Ok(())
}

/// The request's context as Cedar JSON, with an access token's claims as
/// `token`.
fn context(
    def: Option<&wire::ContextDefinition>,
    path: &str,
    token: Option<&Value>,
) -> Result<Value, AwsError> {
    let mut ctx = match def {
        Some(d) => d.cedar(path)?,
        None => json!({}),
    };
    if let (Some(claims), Some(map)) = (token, ctx.as_object_mut()) {
        map.insert("token".into(), claims.clone());
    }
    Ok(ctx)
}

/// The audit partition of a policy store's decisions (audit records are
/// kept per tenant; AVP requests name no tenant).
pub fn audit_partition(store_id: &str) -> String {
    let clean: String = store_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(59)
        .collect();
    format!("_avp.{clean}")
}

/// The decision was made but cannot be recorded: not given (fail closed).
fn unrecorded(state: &AppState, e: &crate::audit::writer::AuditError) -> AwsError {
    let api = super::audit_unavailable(state, e);
    AwsError::new(
        "InternalServerException",
        StatusCode::INTERNAL_SERVER_ERROR,
        api.message,
    )
}
