//! `cedargate-admin serve`: the management REST API (tenants, usage, audit
//! logs, document ACLs and sharing). Callers authenticate with the sidecar's JWTs; what each may do is
//! decided by the same Cedar engine and `policies/` (`ManageTenant`,
//! `ListTenants`, `ViewUsage`, `ViewAuditLogs`): platform administrators
//! manage every tenant, a tenant administrator their own. Every change —
//! and every refused attempt at one — leaves a management audit record.
//!
//! Tenants carry an `ETag` (a hash of the record); `PUT` needs `If-Match`
//! and loses with 412 if the record changed since it was read.

mod access;
mod billing;
mod documents;
mod policies;
mod search;
mod tenants;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use chrono::{DateTime, Utc};

use crate::audit::{management_event, Actor, RequestMeta};
use crate::authz::entities::Principal;
use crate::authz::{AuthzRequest, DenyReason, Effect, ResourceRef};
use crate::clock::SharedClock;
use crate::ids::TenantId;
use crate::retention::RetentionConfig;
use crate::sidecar::http::{json_response, ApiError, Body};
use crate::sidecar::routes::{audit_unavailable, health, principal, request_meta};
use crate::sidecar::{AppState, Router};
use crate::store::StoreError;

/// Where the management API listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8181";

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The management API's routes.
pub struct AdminRoutes {
    retention: Arc<RetentionConfig>,
    stripe: Arc<crate::billing::stripe::StripeConfig>,
    clock: SharedClock,
}

impl AdminRoutes {
    /// `retention` gives the recovery window restores are allowed in;
    /// `clock` dates deletions and cancellations.
    pub fn new(retention: RetentionConfig, clock: SharedClock) -> Self {
        AdminRoutes {
            retention: Arc::new(retention),
            stripe: Arc::default(),
            clock,
        }
    }

    /// Serves Stripe's webhooks with `config` (off without a secret).
    pub fn with_stripe(mut self, config: crate::billing::stripe::StripeConfig) -> Self {
        self.stripe = Arc::new(config);
        self
    }
}

impl Router for AdminRoutes {
    fn route(
        &self,
        state: Arc<AppState>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        let lifecycle = Lifecycle {
            now: self.clock.now(),
            retention: self.retention.clone(),
        };
        let stripe = self.stripe.clone();
        Box::pin(async move { route(&state, req, peer, lifecycle, &stripe).await })
    }
}

/// The time of a request and the retention rules it is judged by.
pub(crate) struct Lifecycle {
    pub now: DateTime<Utc>,
    pub retention: Arc<RetentionConfig>,
}

/// One request's caller, as far as the handlers need it.
pub(crate) struct Caller {
    pub principal: Principal,
    pub meta: RequestMeta,
    pub lifecycle: Lifecycle,
}

impl Caller {
    fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.principal.id.as_str().to_string()),
            meta: self.meta.clone(),
            via: "api",
        }
    }
}

async fn route(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    lifecycle: Lifecycle,
    stripe: &crate::billing::stripe::StripeConfig,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(health::healthz()),
        (&Method::GET, ["readyz"]) => Ok(health::readyz(state).await),
        (&Method::GET, ["metrics"]) => Ok(health::metrics(state)),
        (&Method::GET, ["openapi.json"]) => Ok(openapi()),
        (_, ["healthz" | "readyz" | "metrics" | "openapi.json"]) => return not_allowed("GET"),
        (_, ["v1", "tenants", rest @ ..]) => match caller(state, &req, peer, lifecycle).await {
            Ok(caller) => tenants::route(state, req, &caller, rest).await,
            Err(e) => Err(e),
        },
        (&Method::GET, ["v1", "search", "changes"]) => {
            match caller(state, &req, peer, lifecycle).await {
                Ok(caller) => search::changes(state, &req, &caller).await,
                Err(e) => Err(e),
            }
        }
        (_, ["v1", "search", "changes"]) => return not_allowed("GET"),
        (&Method::GET, ["v1", "policy-templates"]) => {
            match caller(state, &req, peer, lifecycle).await {
                Ok(caller) => policies::templates(state, &caller).await,
                Err(e) => Err(e),
            }
        }
        (_, ["v1", "policy-templates"]) => return not_allowed("GET"),
        (&Method::POST, ["v1", "billing", "stripe", "webhook"]) => {
            billing::webhook(state, stripe, req, peer, &lifecycle).await
        }
        (_, ["v1", "billing", "stripe", "webhook"]) => return not_allowed("POST"),
        _ => Err(not_found(&method, &path)),
    };
    result.unwrap_or_else(ApiError::into_response)
}

fn openapi() -> Response<Body> {
    let mut resp = Response::new(crate::sidecar::http::full(OPENAPI));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn not_found(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {path}"),
    )
}

pub(crate) fn not_allowed(allowed: &'static str) -> Response<Body> {
    let mut resp = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method not allowed; use {allowed}"),
    )
    .into_response();
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    resp
}

async fn caller(
    state: &AppState,
    req: &Request<Incoming>,
    peer: SocketAddr,
    lifecycle: Lifecycle,
) -> Result<Caller, ApiError> {
    let principal = principal::from_token(state, req.headers(), peer, "admin").await?;
    Ok(Caller {
        principal,
        meta: request_meta(req.headers(), peer),
        lifecycle,
    })
}

/// The same refusal whether the tenant exists or not, and whether a policy
/// forbade it or none permitted it.
pub(crate) fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "you may not do this to this tenant",
    )
}

/// Asks the policies whether `caller` may do `action` to `tenant`.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &Caller,
    action: &str,
    tenant: &TenantId,
) -> Result<(), ApiError> {
    authorize_with(state, caller, action, tenant, serde_json::Value::Null).await
}

/// [`authorize`] with a context.
pub(crate) async fn authorize_with(
    state: &AppState,
    caller: &Caller,
    action: &str,
    tenant: &TenantId,
    context: serde_json::Value,
) -> Result<(), ApiError> {
    let request = AuthzRequest {
        principal: caller.principal.clone(),
        action: action.to_string(),
        resource: ResourceRef::Tenant(tenant.clone()),
        context,
    };
    let d = state.engine.decide(&request).await?;
    match (d.decision, d.reason) {
        (Effect::Allow, _) => Ok(()),
        (Effect::Deny, Some(DenyReason::StoreUnavailable)) => Err(unavailable()),
        (Effect::Deny, _) => Err(forbidden()),
    }
}

pub(crate) fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the store cannot be reached; try again",
    )
}

/// A store error as the API reports it (never a 500 for what a caller can
/// cause).
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", m),
        StoreError::Invalid(m) => ApiError::bad_request("invalid", m),
        StoreError::Unavailable(_) | StoreError::Backend(_) => {
            tracing::warn!(error = %e, "store error");
            unavailable()
        }
        StoreError::Corrupt(m) => {
            tracing::error!(error = %m, "corrupt record in the store");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "corrupt_record",
                "a stored record cannot be read",
            )
        }
    }
}

/// Records a management operation the caller was authorized for, in the
/// target tenant's log, and returns its outcome. A success keeps what
/// `details` says of it; a failure keeps only structured facts (`target`,
/// status, code), never what the request carried. A change whose record
/// cannot be written is reported as 503 (the change itself is made).
pub(crate) async fn record<T>(
    state: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    action: &str,
    target: serde_json::Value,
    details: impl FnOnce(&T) -> serde_json::Value,
    outcome: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let (details, result) = match &outcome {
        Ok(v) => (merged(json!({ "target": target }), details(v)), Ok(())),
        Err(e) => (failure(target, e), Err(e.message.clone())),
    };
    write(state, caller, tenant, action, details, result).await?;
    outcome
}

/// Records an attempt the policies refused (or could not decide) in the
/// caller's own tenant's log, as structured facts: who (the record's
/// user), what action, which target, what status. The target's log gets
/// nothing: what an outsider sends must not reach it. Returns `e`.
pub(crate) async fn refused<T>(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: serde_json::Value,
    e: ApiError,
) -> Result<T, ApiError> {
    let details = failure(target, &e);
    let own = caller.principal.tenant.clone();
    write(state, caller, &own, action, details, Err(e.message.clone())).await?;
    Err(e)
}

/// The record of a failure: the target's ids, the status and the code.
fn failure(target: serde_json::Value, e: &ApiError) -> serde_json::Value {
    merged(
        json!({ "target": target }),
        json!({ "status": e.status.as_u16(), "code": e.code }),
    )
}

fn merged(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

async fn write(
    state: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    action: &str,
    details: serde_json::Value,
    result: Result<(), String>,
) -> Result<(), ApiError> {
    let resource = match details["target"]["documentId"].as_str() {
        Some(doc) => format!("CedarGate::Document::{doc:?}"),
        None => format!(
            "CedarGate::Tenant::{:?}",
            details["target"]["tenantId"]
                .as_str()
                .unwrap_or(tenant.as_str())
        ),
    };
    let event = management_event(
        tenant.as_str(),
        action,
        &resource,
        details,
        &caller.actor(),
        result,
    );
    state
        .audit
        .record(event)
        .await
        .map_err(|e| audit_unavailable(state, &e))
}

/// `status` with a JSON body and `ETag: "<version>"`.
pub(crate) fn with_etag(
    status: StatusCode,
    body: &impl serde::Serialize,
    version: &str,
) -> Response<Body> {
    let mut resp = json_response(status, body);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(hyper::header::ETAG, v);
    }
    resp
}

/// The `If-Match` version, without quotes or weakness, if sent.
pub(crate) fn if_match(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(hyper::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        })
}

/// `200` with a JSON body.
pub(crate) fn ok(value: &serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, value)
}
