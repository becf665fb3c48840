//! `POST /v1/authorize/plan`: which documents may the caller read, as a
//! filter for the search service (see [`crate::search`]). The principal
//! comes as on `/v1/authorize`; the answer is audited like a decision.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{AuditEvent, RequestMeta};
use crate::authz::entities::{Principal, NAMESPACE};
use crate::search::{plan_json, FilterFormat, Plan, PlanError, PlanKind, ALL_FORMATS};
use crate::sidecar::http::{json_response, parse_json, read_body, ApiError, Body};
use crate::sidecar::wire::PrincipalWire;
use crate::sidecar::AppState;

use super::principal;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanWire {
    principal: Option<PrincipalWire>,
    action: String,
    resource_type: String,
    #[serde(default)]
    context: Value,
    /// The filters wanted [default: all three].
    formats: Option<Vec<FilterFormat>>,
}

/// A planning failure as the API reports it.
pub(crate) fn plan_error(e: PlanError) -> ApiError {
    match e {
        PlanError::Request(e) => e.into(),
        PlanError::Untranslatable(_) | PlanError::Format { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "untranslatable",
            e.to_string(),
        ),
        PlanError::StoreUnavailable(m) => {
            tracing::warn!(error = %m, "plan: tenant lookup failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store cannot be read; try again",
            )
        }
    }
}

pub(super) async fn plan(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let (head, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let wire: PlanWire = parse_json(&bytes)?;
    let verified = principal::resolve(state, &head.headers, peer, wire.principal.as_ref()).await?;
    let principal = match (verified, wire.principal) {
        (Some(p), _) => p,
        (None, Some(p)) => Principal {
            id: p.id,
            tenant: p.tenant,
            roles: p.roles,
            clearance: p.clearance,
        },
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_principal",
                "trusted mode needs a `principal`",
            ))
        }
    };
    let ty = wire.resource_type.as_str();
    if ty != "Document" && ty != format!("{NAMESPACE}::Document") {
        return Err(ApiError::bad_request(
            "unknown_resource_type",
            format!("plans are made for Document, not {ty:?}"),
        ));
    }
    if !(wire.context.is_null() || wire.context.is_object()) {
        return Err(ApiError::bad_request(
            "invalid_context",
            "`context` must be a JSON object",
        ));
    }
    let formats = wire.formats.unwrap_or_else(|| ALL_FORMATS.to_vec());
    let plan = state
        .planner
        .plan(&state.engine, &principal, &wire.action, &wire.context)
        .await
        .map_err(plan_error)?;
    let plan_id = uuid::Uuid::now_v7().to_string();
    let body = plan_json(&plan, &plan_id, &formats).map_err(plan_error)?;
    let meta = super::request_meta(&head.headers, peer);
    record(state, &principal, &wire.action, &plan, &plan_id, &meta).await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// The plan's audit record, in the caller's tenant's log like a decision.
pub(crate) async fn record(
    state: &AppState,
    principal: &Principal,
    action: &str,
    plan: &Plan,
    plan_id: &str,
    meta: &RequestMeta,
) -> Result<(), ApiError> {
    if !state.audit.is_on() {
        return Ok(());
    }
    let mut details = json!({
        "kind": "plan",
        "source": "plan",
        "plan": plan.kind,
        "decision": if plan.kind == PlanKind::AlwaysDenied { "Deny" } else { "Conditional" },
        "determiningPolicies": plan.determining_policies,
        "policyRevision": plan.policy_revision,
        "roles": principal.roles,
        "clearance": principal.clearance.get(),
    });
    if let Some(id) = &meta.request_id {
        details["requestId"] = id.as_str().into();
    }
    let mut e = AuditEvent::new(
        plan_id.to_string(),
        chrono::Utc::now(),
        principal.tenant.as_str(),
        action,
        format!("{NAMESPACE}::Document"),
        details,
    );
    e.user_id = Some(principal.id.as_str().to_string());
    e.ip_address = meta.ip_address.clone();
    e.user_agent = meta.user_agent.clone();
    e.success = plan.kind != PlanKind::AlwaysDenied;
    state
        .audit
        .record(e)
        .await
        .map_err(|e| super::audit_unavailable(state, &e))
}
