//! `POST /v1/tenants/{id}/access-check`: "why can't Dave open this file?"
//! The decision the policies give a principal of the tenant (as the caller
//! describes it: user, roles, clearance) for an action on one of the
//! tenant's documents or on the tenant, with the determining policies'
//! text and the reason; for `Search`, also what that principal's searches
//! are filtered to (the search plan of `Read`). Asking is
//! `ViewAuditLogs` on the tenant: it tells what the audit log would (the
//! policies' text only to those who may also `ViewPolicies`). Nothing is
//! recorded or counted as a decision, and no usage is counted.

use hyper::body::Incoming;
use hyper::Request;
use hyper::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authorize, ok, Caller};
use crate::authz::entities::Principal;
use crate::authz::{AuthzRequest, DenyReason, ResourceRef};
use crate::ids::{DocumentId, RoleName, TenantId, UserId};
use crate::model::Level;
use crate::search::FilterFormat;
use crate::sidecar::http::{parse_json, read_body, ApiError, Body};
use crate::sidecar::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Check {
    principal: Who,
    action: String,
    #[serde(default)]
    document_id: Option<DocumentId>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Who {
    user_id: UserId,
    #[serde(default)]
    roles: Vec<RoleName>,
    #[serde(default)]
    clearance: Level,
}

pub(super) async fn check(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<Response<Body>, ApiError> {
    let (_, bytes) = read_body(req, state.config.max_body_bytes).await?;
    // Who may ask comes first: a refusal says nothing about the body.
    authorize(state, caller, "ViewAuditLogs", tenant).await?;
    let body: Check = parse_json(&bytes)?;
    if body.principal.roles.len() > 100 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "at most 100 roles",
        ));
    }
    let principal = Principal {
        id: body.principal.user_id,
        tenant: tenant.clone(),
        roles: body.principal.roles,
        clearance: body.principal.clearance,
    };
    let request = AuthzRequest {
        principal: principal.clone(),
        action: body.action.clone(),
        resource: match &body.document_id {
            Some(d) => ResourceRef::Document(d.clone()),
            None => ResourceRef::Tenant(tenant.clone()),
        },
        context: Value::Null,
    };
    let (d, snapshot) = state.engine.decide_quietly(&request).await?;
    if d.reason == Some(DenyReason::StoreUnavailable) {
        return Err(super::unavailable());
    }
    // The policies' text only for those who may read the policies.
    let texts = authorize(state, caller, "ViewPolicies", tenant)
        .await
        .is_ok();
    let mut policies = Vec::with_capacity(d.determining_policies.len());
    for id in &d.determining_policies {
        let text = match texts {
            true => state.engine.policy_text(&snapshot, id).await,
            false => None,
        };
        policies.push(json!({ "policyId": id, "text": text }));
    }
    // A search's results are the documents the principal may read.
    let search = if body.action == "Search" {
        match state
            .planner
            .plan(&state.engine, &principal, "Read", &Value::Null)
            .await
        {
            Ok(plan) => json!({
                "kind": plan.kind,
                "filters": plan.filters(&[FilterFormat::Kendra]).ok(),
            }),
            Err(e) => json!({ "error": e.to_string() }),
        }
    } else {
        Value::Null
    };
    Ok(ok(&json!({
        "decision": d.decision,
        "determiningPolicies": policies,
        "reason": d.reason,
        "message": d.message,
        "errors": d.errors,
        "policyRevision": d.policy_revision,
        "search": search,
    })))
}
