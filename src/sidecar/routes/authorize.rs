//! `POST /v1/authorize` and `POST /v1/authorize/batch`.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::audit::RequestMeta;
use crate::authz::entities::Principal;
use crate::authz::{Decision, DenyReason};
use crate::sidecar::http::{json_response, parse_json, read_body, ApiError, Body};
use crate::sidecar::wire::{AuthorizeWire, BatchWire};
use crate::sidecar::AppState;

use super::{decide, principal, Audited};

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
    meta: &RequestMeta,
) -> Result<Audited, ApiError> {
    let wire: AuthorizeWire = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let request = wire.into_request(verified.cloned())?;
    decide(state, &request, meta, "batch", None).await
}

pub(super) async fn single(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let (head, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let wire: AuthorizeWire = parse_json(&bytes)?;
    let verified = principal::resolve(state, &head.headers, peer, wire.principal.as_ref()).await?;
    let request = wire.into_request(verified).inspect_err(|_| {
        state.engine.metrics().bad_requests.inc();
    })?;
    let meta = super::request_meta(&head.headers, peer);
    let decision = decide(state, &request, &meta, "authorize", None)
        .await?
        .written(state)
        .await?;
    Ok(json_response(status_of(&decision), &decision))
}

pub(super) async fn batch(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let (head, bytes) = read_body(req, state.config.max_body_bytes).await?;
    let meta = super::request_meta(&head.headers, peer);
    let wire: BatchWire = parse_json(&bytes)?;
    // One principal for the whole batch in token mode; each item names its
    // own in trusted mode.
    let verified = principal::resolve(state, &head.headers, peer, None).await?;
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
    // Every record is queued before any is waited for: one spool commit
    // for the whole batch.
    let mut pending = Vec::with_capacity(wire.requests.len());
    for item in wire.requests {
        pending.push(decide_one(state, verified.as_ref(), item, &meta).await);
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        results.push(match p {
            Ok(audited) => {
                let d = audited.written(state).await?;
                serde_json::to_value(&d).unwrap_or(Value::Null)
            }
            Err(e) if e.status == hyper::StatusCode::SERVICE_UNAVAILABLE => return Err(e),
            Err(e) => e.body(),
        });
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}
