//! `POST /v1/authorize` and `POST /v1/authorize/batch`.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::authz::entities::Principal;
use crate::authz::{Decision, DenyReason};
use crate::sidecar::http::{json_response, parse_json, read_body, ApiError, Body};
use crate::sidecar::wire::{AuthorizeWire, BatchWire};
use crate::sidecar::AppState;

use super::principal;

/// 200 for a decision, 503 when it was denied because the store is down.
fn status_of(d: &Decision) -> StatusCode {
    if d.reason == Some(DenyReason::StoreUnavailable) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn decide_one(
    state: &AppState,
    verified: Option<&Principal>,
    value: Value,
) -> Result<Decision, ApiError> {
    let wire: AuthorizeWire = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let request = wire.into_request(verified.cloned())?;
    Ok(state.engine.decide(&request).await?)
}

pub(super) async fn single(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (head, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let wire: AuthorizeWire = parse_json(&bytes)?;
    let verified = principal::resolve(state, &head.headers, wire.principal.as_ref()).await?;
    let request = wire.into_request(verified).inspect_err(|_| {
        state.engine.metrics().bad_requests.inc();
    })?;
    let decision = state.engine.decide(&request).await?;
    Ok(json_response(status_of(&decision), &decision))
}

pub(super) async fn batch(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (head, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let wire: BatchWire = parse_json(&bytes)?;
    // One principal for the whole batch in token mode; each item names its
    // own in trusted mode.
    let verified = principal::resolve(state, &head.headers, None).await?;
    let max = state.config.max_batch;
    if wire.requests.is_empty() || wire.requests.len() > max {
        return Err(ApiError::bad_request(
            "invalid_batch_size",
            format!(
                "a batch holds 1 to {max} requests, this one has {}",
                wire.requests.len()
            ),
        ));
    }
    let mut results = Vec::with_capacity(wire.requests.len());
    for item in wire.requests {
        results.push(match decide_one(state, verified.as_ref(), item).await {
            Ok(d) => serde_json::to_value(&d).unwrap_or(Value::Null),
            Err(e) => e.body(),
        });
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}
