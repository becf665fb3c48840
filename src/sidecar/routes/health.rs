//! `GET /healthz` (the process is alive), `GET /readyz` (policies loaded and
//! the store answers) and `GET /metrics` (Prometheus text).

use std::time::Duration;

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::sidecar::http::{json_response, text_response, Body};
use crate::sidecar::AppState;

const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

pub(crate) async fn readyz(state: &AppState) -> Response<Body> {
    let revision = state.engine.policies().load().revision.clone();
    let probe =
        tokio::time::timeout(STORE_PROBE_TIMEOUT, state.engine.cache().store().ping()).await;
    let store_error = match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "store did not answer within {STORE_PROBE_TIMEOUT:?}"
        )),
    };
    match store_error {
        None => json_response(
            StatusCode::OK,
            &json!({ "status": "ready", "policy_revision": &*revision }),
        ),
        Some(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not_ready", "policy_revision": &*revision, "reason": reason }),
        ),
    }
}

pub(crate) fn metrics(state: &AppState) -> Response<Body> {
    text_response(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        state.engine.metrics().render(),
    )
}
