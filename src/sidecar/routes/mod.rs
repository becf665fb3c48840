//! Request routing: one function per route, in its own file.

mod authorize;
pub(crate) mod avp;
mod forward_auth;
pub(crate) mod health;
pub(crate) mod plan;
pub(crate) mod principal;

use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, USER_AGENT};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};

use super::http::{ApiError, Body};
use super::AppState;
use crate::audit::writer::{AuditError, Receipt};
use crate::audit::{decision_event, DecisionFacts, RequestMeta};
use crate::authz::{AuthzRequest, Decision};

pub(crate) async fn route(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = match (&method, path.as_str()) {
        (&Method::POST, "/v1/authorize") => authorize::single(state, req, peer).await,
        (&Method::POST, "/") if avp::is_avp(req.headers()) => {
            return avp::handle(state, req, peer).await
        }
        (&Method::POST, "/v1/authorize/batch") => authorize::batch(state, req, peer).await,
        (&Method::POST, "/v1/authorize/plan") => plan::plan(state, req, peer).await,
        (&Method::GET, "/healthz") => Ok(health::healthz()),
        (&Method::GET, "/readyz") => Ok(health::readyz(state).await),
        (&Method::GET, "/metrics") => Ok(health::metrics(state)),
        (_, p) if p == forward_auth::PREFIX || p.starts_with("/v1/forward-auth/") => {
            forward_auth::handle(state, req, peer).await
        }
        (_, "/v1/authorize" | "/v1/authorize/batch" | "/v1/authorize/plan") => {
            return not_allowed("POST")
        }
        (_, "/healthz" | "/readyz" | "/metrics") => return not_allowed("GET"),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        )),
    };
    result.unwrap_or_else(ApiError::into_response)
}

fn not_allowed(allowed: &'static str) -> Response<Body> {
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

/// Who sent a request, for its audit record: the client address a proxy
/// names (`X-Forwarded-For`'s first entry, `X-Real-IP`), else the peer.
pub(crate) fn request_meta(headers: &HeaderMap, peer: SocketAddr) -> RequestMeta {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = header("x-forwarded-for")
        .and_then(|v| v.split(',').next())
        .or_else(|| header("x-real-ip"))
        .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok());
    RequestMeta {
        ip_address: Some(forwarded.unwrap_or(peer.ip()).to_string()),
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(RequestMeta::clean),
        request_id: header("x-request-id").and_then(RequestMeta::clean),
    }
}

/// 503: the decision was made but could not be recorded, so it is not
/// given (fail closed).
pub(crate) fn audit_unavailable(state: &AppState, e: &AuditError) -> ApiError {
    state.engine.metrics().audit.refused.inc();
    tracing::error!(error = %e, "decision refused: its audit record cannot be written");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the decision could not be recorded, so it is not given; try again",
    )
}

/// A decision and its queued audit record.
pub(super) struct Audited {
    pub decision: Decision,
    receipt: Receipt,
}

/// Decides `req` and queues its audit record; [`Audited::written`] waits
/// for the record (so many records of a batch share one spool commit).
pub(super) async fn decide(
    state: &AppState,
    req: &AuthzRequest,
    meta: &RequestMeta,
    source: &'static str,
    extra: Option<serde_json::Value>,
) -> Result<Audited, ApiError> {
    let started = Instant::now();
    let decision = state.engine.decide(req).await?;
    let receipt = if state.audit.is_on() {
        let facts = DecisionFacts {
            source,
            latency: started.elapsed(),
            meta,
            context_keys: state.audit.context_keys(),
            extra,
        };
        state
            .audit
            .submit(decision_event(req, &decision, facts))
            .await
            .map_err(|e| audit_unavailable(state, &e))?
    } else {
        Receipt::none()
    };
    Ok(Audited { decision, receipt })
}

impl Audited {
    /// The decision, once its record is written.
    pub(super) async fn written(self, state: &AppState) -> Result<Decision, ApiError> {
        self.receipt
            .written()
            .await
            .map_err(|e| audit_unavailable(state, &e))?;
        Ok(self.decision)
    }
}
