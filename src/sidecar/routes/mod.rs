//! Request routing: one function per route, in its own file.

mod authorize;
mod forward_auth;
mod health;
mod principal;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, Request, Response, StatusCode};

use super::http::{ApiError, Body};
use super::AppState;

pub(super) async fn route(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = match (&method, path.as_str()) {
        (&Method::POST, "/v1/authorize") => authorize::single(state, req).await,
        (&Method::POST, "/v1/authorize/batch") => authorize::batch(state, req).await,
        (&Method::GET, "/healthz") => Ok(health::healthz()),
        (&Method::GET, "/readyz") => Ok(health::readyz(state).await),
        (&Method::GET, "/metrics") => Ok(health::metrics(state)),
        (_, p) if p == forward_auth::PREFIX || p.starts_with("/v1/forward-auth/") => {
            forward_auth::handle(state, req).await
        }
        (_, "/v1/authorize" | "/v1/authorize/batch") => return not_allowed("POST"),
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
