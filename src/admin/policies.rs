//! `/v1/tenants/{id}/policies…`: a tenant's own Cedar policies
//! ([`crate::policy::tenant`]). Reading asks `ViewPolicies`, writing
//! `ManagePolicies` (a tenant administrator on a tier with the
//! `custom-policies` feature, or a platform administrator). A policy is
//! checked against the current schema and templates when written, and
//! refused with its problems (`error.problems`, `policyId:line:column:
//! message`); every write carries the policy's ETag (`If-Match`), and is
//! recorded in the tenant's audit log with the policy as written.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, IF_NONE_MATCH, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    authorize, if_match, not_allowed, not_found, ok, record, refused, store_error, with_etag,
    Caller,
};
use crate::ids::{PolicyName, TenantId};
use crate::policy::tenant::{self, Definition, TenantPolicy};
use crate::sidecar::http::{parse_json, read_body, ApiError, Body};
use crate::sidecar::AppState;
use crate::store::StoreError;

pub(super) async fn route(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    id: &TenantId,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match rest {
        [] | [""] => match method {
            Method::GET => list(state, caller, id).await,
            _ => Ok(not_allowed("GET")),
        },
        [policy] => {
            let policy = policy_name(policy)?;
            match method {
                Method::GET => get(state, caller, id, &policy).await,
                Method::PUT => put(state, req, caller, id, &policy).await,
                Method::DELETE => delete(state, req, caller, id, &policy).await,
                _ => Ok(not_allowed("GET, PUT, DELETE")),
            }
        }
        _ => Err(not_found(&method, &path)),
    }
}

fn policy_name(raw: &str) -> Result<PolicyName, ApiError> {
    super::tenants::path_id(raw, "policy", PolicyName::parse)
}

/// The ids a policy operation's audit record names.
fn target(tenant: &TenantId, policy: &PolicyName) -> Value {
    json!({ "tenantId": tenant, "policyId": policy })
}

/// A policy as the API shows it: the record, its ETag, the id decisions
/// name it by, and whether it compiles under the current policies.
fn view(state: &AppState, p: &TenantPolicy) -> Value {
    let snapshot = state.engine.policies().load();
    let mut v = json!(p);
    v["etag"] = json!(p.version());
    v["cedarId"] = json!(p.cedar_id());
    match tenant::compile(&snapshot, p) {
        Ok(_) => v["status"] = json!("valid"),
        Err(problems) => {
            v["status"] = json!("invalid");
            v["problems"] = json!(problems.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
    }
    v
}

/// `GET /v1/policy-templates`: the global templates a tenant may link,
/// with their slots and text, in id order. Asks `ViewPolicies` on the
/// caller's own tenant.
pub(super) async fn templates(
    state: &AppState,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ViewPolicies", &caller.principal.tenant).await?;
    let snapshot = state.engine.policies().load();
    let mut out: Vec<Value> = snapshot
        .templates
        .templates()
        .map(|t| {
            let mut slots: Vec<String> = t.slots().map(ToString::to_string).collect();
            slots.sort();
            json!({
                "policyTemplateId": t.id().to_string(),
                "effect": format!("{:?}", t.effect()).to_lowercase(),
                "slots": slots,
                "statement": t.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a["policyTemplateId"]
            .as_str()
            .cmp(&b["policyTemplateId"].as_str())
    });
    Ok(ok(&json!({ "templates": out })))
}

fn policy_not_found(policy: &PolicyName) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "policy_not_found",
        format!("no policy {policy}"),
    )
}

/// 404 for a tenant that does not exist (asked only once the policies
/// allowed the caller to manage it: a platform administrator).
async fn tenant_exists(state: &AppState, id: &TenantId) -> Result<(), ApiError> {
    tenant_record(state, id).await.map(|_| ())
}

/// 409 `tenant_purged` for a tenant purged after its retention period:
/// its record is kept read-only, and it has no policies.
async fn tenant_writable(state: &AppState, id: &TenantId) -> Result<(), ApiError> {
    match tenant_record(state, id).await?.purged_at {
        Some(_) => Err(super::tenants::purged(id)),
        None => Ok(()),
    }
}

async fn tenant_record(state: &AppState, id: &TenantId) -> Result<crate::model::Tenant, ApiError> {
    match state.engine.cache().store().get_tenant(id).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "tenant_not_found",
            format!("no tenant {id}"),
        )),
        Err(e) => Err(store_error(e)),
    }
}

async fn stored(state: &AppState, id: &TenantId) -> Result<Vec<TenantPolicy>, ApiError> {
    state
        .engine
        .cache()
        .store()
        .tenant_policies(id)
        .await
        .map_err(store_error)
}

async fn list(
    state: &AppState,
    caller: &Caller,
    id: &TenantId,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ViewPolicies", id).await?;
    tenant_exists(state, id).await?;
    let policies: Vec<Value> = stored(state, id)
        .await?
        .iter()
        .map(|p| view(state, p))
        .collect();
    Ok(ok(&json!({ "policies": policies })))
}

async fn get(
    state: &AppState,
    caller: &Caller,
    id: &TenantId,
    policy: &PolicyName,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ViewPolicies", id).await?;
    tenant_exists(state, id).await?;
    let p = stored(state, id)
        .await?
        .into_iter()
        .find(|p| &p.policy_id == policy)
        .ok_or_else(|| policy_not_found(policy))?;
    Ok(with_etag(StatusCode::OK, &view(state, &p), &p.version()))
}

/// A `PUT` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutBody {
    definition: Definition,
    #[serde(default)]
    description: Option<String>,
}

async fn put(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    id: &TenantId,
    policy: &PolicyName,
) -> Result<Response<Body>, ApiError> {
    let expected = if_match(&req);
    let create_only = req
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let (_, bytes) = read_body(req, state.config.max_body_bytes).await?;
    if let Err(e) = authorize(state, caller, "ManagePolicies", id).await {
        return refused(state, caller, "PutPolicy", target(id, policy), e).await;
    }
    let outcome = async {
        tenant_writable(state, id).await?;
        let body: PutBody = parse_json::<Value>(&bytes).and_then(|v| {
            serde_json::from_value(v)
                .map_err(|e| ApiError::bad_request("invalid_policy", e.to_string()))
        })?;
        if body
            .description
            .as_ref()
            .is_some_and(|d| d.len() > 1000 || d.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(
                "invalid_policy",
                "`description` must be printable and at most 1000 bytes",
            )
            .with_fields(vec!["description".into()]));
        }
        let existing = stored(state, id).await?;
        let current = existing.iter().find(|p| &p.policy_id == policy);
        let expected = match (current, expected, create_only) {
            (Some(_), _, true) => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "policy_exists",
                    format!("policy {policy} exists"),
                ))
            }
            (Some(_), None, false) => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_REQUIRED,
                    "if_match_required",
                    "send the policy's ETag in If-Match to replace it",
                ))
            }
            (None, Some(_), _) => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "conflict",
                    format!("policy {policy} does not exist"),
                ))
            }
            (_, e, _) => e,
        };
        if current.is_none() && existing.len() >= tenant::MAX_PER_TENANT {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_policies",
                format!(
                    "a tenant may have at most {} policies",
                    tenant::MAX_PER_TENANT
                ),
            ));
        }
        let now = caller.lifecycle.now;
        let p = TenantPolicy {
            tenant_id: id.clone(),
            policy_id: policy.clone(),
            definition: body.definition,
            description: body.description,
            created_at: current.map_or(now, |c| c.created_at),
            updated_at: now,
            updated_by: Some(caller.principal.id.as_str().to_string()),
        };
        let snapshot = state.engine.policies().load();
        if let Err(problems) = tenant::compile(&snapshot, &p) {
            return Err(ApiError::bad_request(
                "invalid_policy",
                format!(
                    "the policy is not valid: {}",
                    problems
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
            )
            .with_problems(problems.iter().map(ToString::to_string).collect()));
        }
        state
            .engine
            .cache()
            .store()
            .put_tenant_policy_if(&p, expected.as_deref())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) if expected.is_none() => ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "policy_exists",
                    format!("policy {policy} exists"),
                ),
                other => store_error(other),
            })?;
        Ok((p, current.is_none()))
    }
    .await;
    let (p, created) = record(
        state,
        caller,
        id,
        "PutPolicy",
        target(id, policy),
        |(p, created): &(TenantPolicy, bool)| {
            json!({ "policy": p, "etag": p.version(), "created": created })
        },
        outcome,
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = with_etag(status, &view(state, &p), &p.version());
    if created {
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/tenants/{id}/policies/{policy}")) {
            resp.headers_mut().insert(LOCATION, v);
        }
    }
    Ok(resp)
}

async fn delete(
    state: &AppState,
    req: Request<Incoming>,
    caller: &Caller,
    id: &TenantId,
    policy: &PolicyName,
) -> Result<Response<Body>, ApiError> {
    let expected = if_match(&req);
    if let Err(e) = authorize(state, caller, "ManagePolicies", id).await {
        return refused(state, caller, "DeletePolicy", target(id, policy), e).await;
    }
    let outcome = async {
        tenant_exists(state, id).await?;
        let current = stored(state, id)
            .await?
            .into_iter()
            .find(|p| &p.policy_id == policy)
            .ok_or_else(|| policy_not_found(policy))?;
        let Some(expected) = expected else {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "send the policy's ETag in If-Match to delete it",
            ));
        };
        match state
            .engine
            .cache()
            .store()
            .delete_tenant_policy_if(id, policy, &expected)
            .await
        {
            Ok(true) => Ok(current),
            Ok(false) => Err(policy_not_found(policy)),
            Err(e) => Err(store_error(e)),
        }
    }
    .await;
    let p = record(
        state,
        caller,
        id,
        "DeletePolicy",
        target(id, policy),
        |p: &TenantPolicy| json!({ "policy": p }),
        outcome,
    )
    .await?;
    Ok(ok(&json!({ "deleted": p.cedar_id() })))
}
