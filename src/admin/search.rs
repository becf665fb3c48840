//! `GET /v1/search/changes?cursor=…`: the documents changed since a cursor
//! of the store's change log, each as the search index takes it now (see
//! [`crate::search::index::changes`]). A re-indexer follows it: without a
//! cursor it answers none and the log's end; then it passes back each
//! answer's `next`. For the platform's indexer: the `ReadChanges` action,
//! which only platform administrators have.

use std::collections::HashMap;

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use super::{authorize, ok, store_error, Caller};
use crate::authz::entities::NAMESPACE;
use crate::search::fields::Fields;
use crate::sidecar::http::{ApiError, Body};
use crate::sidecar::AppState;
use crate::store::ChangeCursor;

pub(super) async fn changes(
    state: &AppState,
    req: &Request<Incoming>,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    authorize(state, caller, "ReadChanges", &caller.principal.tenant).await?;
    let q: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let cursor = match q.get("cursor") {
        None => None,
        Some(c) => Some(ChangeCursor(
            hex::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "invalid cursor"))?,
        )),
    };
    let snapshot = state.engine.policies().load_full();
    let fields = Fields::new(
        state.planner.config(),
        &snapshot.types,
        &format!("{NAMESPACE}::Document"),
    );
    let store = state.engine.cache().store();
    let (changes, next) = crate::search::index::changes(store, &fields, cursor)
        .await
        .map_err(store_error)?;
    Ok(ok(
        &json!({ "changes": changes, "next": hex::encode(next.0) }),
    ))
}
