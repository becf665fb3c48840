//! `ANY /v1/forward-auth/{original path…}`: the proxy asks before passing a
//! request to the application. Where the original method and URI are comes
//! from `[forward_auth] convention` (see [`ProxyConvention`]), never from
//! whichever headers happen to be present: `X-Original-Method`/
//! `X-Original-URI` (nginx), `X-Forwarded-Method`/`X-Forwarded-Uri`
//! (Traefik, Caddy), or this request's own method and the path after the
//! prefix (Envoy `path_prefix`, the default). A missing or repeated header
//! of the configured proxy is a 400.
//!
//! Allow → 200 with `x-tenant-id`, `x-user-id`, `x-decision-id` for the proxy
//! to pass upstream; no or bad token → 401 with a Bearer challenge; deny →
//! 403 with a message safe to show the end user (`x-cedargate-reason` carries
//! it too, for proxies that do not forward the body).

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::audit::{AuditEvent, RequestMeta};
use crate::authz::entities::Principal;
use crate::authz::{AuthzRequest, DenyReason, Effect, ResourceRef};
use crate::ids::{DocumentId, TenantId};
use crate::sidecar::forward::{self, ProxyConvention, RouteResource, Unmapped};
use crate::sidecar::http::{empty, json_response, ApiError, Body};
use crate::sidecar::AppState;

use super::principal;

pub(super) const PREFIX: &str = "/v1/forward-auth";

use crate::authz::GENERIC_DENIAL as GENERIC;

struct Original {
    method: Method,
    path: String,
    query: Option<String>,
}

/// One header's value: absent, or sent once (a header sent twice is
/// refused: a proxy sets it once, so a second one came from the client).
fn single<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = h.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "duplicate_header",
            format!("the {name} header is sent more than once"),
        ));
    }
    Ok(first
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty()))
}

/// The original request, read the configured proxy's way only.
fn original(req: &Request<Incoming>, convention: ProxyConvention) -> Result<Original, ApiError> {
    let Some((method_header, uri_header)) = convention.headers() else {
        let path = req.uri().path().strip_prefix(PREFIX).unwrap_or("");
        return Ok(Original {
            method: req.method().clone(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            query: req.uri().query().map(str::to_string),
        });
    };
    let h = req.headers();
    let missing = |name: &str| {
        ApiError::bad_request(
            "missing_original_request",
            format!("the {name} header is missing: the proxy must set it (forward_auth.convention is {convention:?})"),
        )
    };
    let uri = single(h, uri_header)?.ok_or_else(|| missing(uri_header))?;
    let method = single(h, method_header)?.ok_or_else(|| missing(method_header))?;
    let uri: hyper::Uri = uri
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_uri", "the original URI is not valid"))?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ApiError::bad_request("invalid_method", "the original method is not valid"))?;
    Ok(Original {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
    })
}

fn with_headers(mut resp: Response<Body>, pairs: &[(&'static str, &str)]) -> Response<Body> {
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(*name, v);
        }
    }
    resp
}

/// 403 with a message for the end user.
fn forbidden(message: &str, decision_id: Option<&str>) -> Response<Body> {
    let mut body = json!({ "error": { "code": "forbidden", "message": message } });
    if let Some(id) = decision_id {
        body["decision_id"] = id.into();
    }
    let resp = json_response(StatusCode::FORBIDDEN, &body);
    let mut pairs = vec![("x-cedargate-reason", message)];
    if let Some(id) = decision_id {
        pairs.push(("x-decision-id", id));
    }
    with_headers(resp, &pairs)
}

/// For a `Search` route, when `[search] forward_auth_filter` asks for it:
/// the caller's plan for reading documents, as headers for the upstream
/// (`x-cedargate-search-plan`, and `x-cedargate-search-filter`: base64url
/// JSON of the filter). `Err` names why the search must be refused: a
/// filter that cannot be made, or one larger than `max_header_bytes`.
async fn search_filter(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
) -> Result<Vec<(&'static str, String)>, &'static str> {
    use base64::Engine as _;
    let config = state.planner.config();
    let Some(format) = config.forward_auth_filter else {
        return Ok(Vec::new());
    };
    let plan = match state
        .planner
        .plan(&state.engine, principal, "Read", &serde_json::Value::Null)
        .await
    {
        Ok(plan) => plan,
        Err(e) => {
            tracing::warn!(error = %e, "forward-auth: no search filter; search refused");
            return Err("search_filter_unavailable");
        }
    };
    let plan_id = uuid::Uuid::now_v7().to_string();
    let body = crate::search::plan_json(&plan, &plan_id, &[format]).map_err(|e| {
        tracing::warn!(error = %e, "forward-auth: no search filter; search refused");
        "search_filter_unavailable"
    })?;
    let kind = body["kind"].as_str().unwrap_or_default().to_string();
    let mut headers = vec![("x-cedargate-search-plan", kind)];
    if plan.kind == crate::search::PlanKind::Conditional {
        let filter = body["filters"]
            .as_object()
            .and_then(|f| f.values().next())
            .cloned()
            .unwrap_or_default();
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(filter.to_string());
        if encoded.len() > config.max_header_bytes {
            tracing::warn!(
                bytes = encoded.len(),
                max = config.max_header_bytes,
                "forward-auth: search filter larger than max_header_bytes; search refused"
            );
            return Err("search_filter_too_large");
        }
        headers.push(("x-cedargate-search-filter", encoded));
    }
    super::plan::record(state, principal, "Read", &plan, &plan_id, meta)
        .await
        .map_err(|_| "audit_unavailable")?;
    Ok(headers)
}

/// Records a decision the route table made before any policy was asked
/// (an unsafe path, an unmapped route, an id that cannot be one) and
/// returns its decision id.
async fn route_decision(
    state: &AppState,
    principal: &Principal,
    orig: &Original,
    meta: &RequestMeta,
    allow: bool,
    reason: &str,
) -> Result<String, ApiError> {
    let id = uuid::Uuid::now_v7().to_string();
    if state.audit.is_on() {
        let details = json!({
            "kind": "decision",
            "source": "forward-auth",
            "decision": if allow { "Allow" } else { "Deny" },
            "reason": reason,
            "determiningPolicies": [],
            "request": { "method": orig.method.as_str(), "path": orig.path },
        });
        let mut e = AuditEvent::new(
            id.clone(),
            chrono::Utc::now(),
            principal.tenant.as_str(),
            "ForwardAuth",
            format!("Route::{:?}", format!("{} {}", orig.method, orig.path)),
            details,
        );
        e.user_id = Some(principal.id.as_str().to_string());
        e.ip_address = meta.ip_address.clone();
        e.user_agent = meta.user_agent.clone();
        e.success = allow;
        e.error_message = (!allow).then(|| reason.to_string());
        state
            .audit
            .record(e)
            .await
            .map_err(|e| super::audit_unavailable(state, &e))?;
    }
    Ok(id)
}

pub(super) async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let principal = principal::from_token(state, req.headers(), peer, "forward-auth").await?;
    let orig = original(&req, state.routes.convention)?;
    let meta = super::request_meta(req.headers(), peer);
    let refuse = async |reason: &str| -> Result<Response<Body>, ApiError> {
        let id = route_decision(state, &principal, &orig, &meta, false, reason).await?;
        Ok(forbidden(GENERIC, Some(&id)))
    };
    let matched = match state.routes.resolve(&orig.method, &orig.path) {
        Ok(m) => m,
        Err(e) => {
            tracing::info!(path = %orig.path, error = %e, "forward-auth: unsafe path denied");
            return refuse("unsafe_path").await;
        }
    };
    let Some(matched) = matched else {
        return match state.routes.unmapped {
            Unmapped::Deny => {
                tracing::debug!(method = %orig.method, path = %orig.path, "forward-auth: no route; denied");
                refuse("unmapped_route").await
            }
            Unmapped::Allow => {
                let id =
                    route_decision(state, &principal, &orig, &meta, true, "unmapped_route").await?;
                Ok(with_headers(
                    Response::new(empty()),
                    &[
                        ("x-tenant-id", principal.tenant.as_str()),
                        ("x-user-id", principal.id.as_str()),
                        ("x-decision-id", &id),
                    ],
                ))
            }
        };
    };
    let route = matched.route;
    let param = |name: &Option<String>| name.as_ref().and_then(|n| matched.params.get(n)).cloned();
    let resource = match route.resource {
        RouteResource::Document => match param(&route.resource_id).map(DocumentId::parse) {
            Some(Ok(id)) => ResourceRef::Document(id),
            _ => return refuse("invalid_id").await,
        },
        RouteResource::Tenant => match param(&route.resource_id) {
            None => ResourceRef::Tenant(principal.tenant.clone()),
            Some(raw) => match TenantId::parse(raw) {
                Ok(id) => ResourceRef::Tenant(id),
                Err(_) => return refuse("invalid_id").await,
            },
        },
    };
    let context = forward::context(route, req.headers(), orig.query.as_deref())
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "bad_request", e))?;
    let request = AuthzRequest {
        principal,
        action: route.action.clone(),
        resource,
        context,
    };
    let extra = json!({ "method": orig.method.as_str(), "path": orig.path });
    let decision = super::decide(state, &request, &meta, "forward-auth", Some(extra))
        .await
        .map_err(|e| {
            if e.status == StatusCode::BAD_REQUEST {
                tracing::warn!(error = %e.message, action = %route.action, "forward-auth route produced an invalid request");
                ApiError::new(StatusCode::FORBIDDEN, "bad_request", e.message)
            } else {
                e
            }
        })?
        .written(state)
        .await?;
    Ok(match (decision.decision, decision.reason) {
        (Effect::Allow, _) => {
            let mut pairs = vec![
                ("x-tenant-id", request.principal.tenant.as_str().to_string()),
                ("x-user-id", request.principal.id.as_str().to_string()),
                ("x-decision-id", decision.decision_id.clone()),
            ];
            if route.action == "Search" {
                match search_filter(state, &request.principal, &meta).await {
                    Ok(headers) => pairs.extend(headers),
                    Err(reason) => {
                        let id =
                            route_decision(state, &request.principal, &orig, &meta, false, reason)
                                .await?;
                        return Ok(forbidden(GENERIC, Some(&id)));
                    }
                }
            }
            let pairs: Vec<(&'static str, &str)> =
                pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            with_headers(Response::new(empty()), &pairs)
        }
        (Effect::Deny, Some(DenyReason::StoreUnavailable)) => {
            let resp = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": { "code": "unavailable", "message": "Authorization is temporarily unavailable." } }),
            );
            with_headers(resp, &[("x-decision-id", &decision.decision_id)])
        }
        (Effect::Deny, _) => forbidden(
            decision.message.as_deref().unwrap_or(GENERIC),
            Some(&decision.decision_id),
        ),
    })
}
