//! Who is asking: the principal of a request, from a verified bearer token
//! (token mode) or from the body (trusted mode). Mixing the two is refused.

use std::net::SocketAddr;

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

use crate::authz::entities::Principal;
use crate::identity::{bearer, TokenError};
use crate::sidecar::http::ApiError;
use crate::sidecar::wire::PrincipalWire;
use crate::sidecar::{AppState, Identity};

/// The token of the `Authorization` header, if there is one.
pub(super) fn token(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    match headers.get(AUTHORIZATION) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(bearer)
            .map(Some)
            .ok_or(TokenError::Malformed),
    }
}

/// Verifies the request's token (token mode). Missing or bad → 401, and
/// counted for an authentication record; a token's first verified use
/// leaves a sign-in record (crate::audit::auth). `surface`: which API.
pub(crate) async fn from_token(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    surface: &'static str,
) -> Result<Principal, ApiError> {
    let Identity::Jwt(verifier) = &state.identity else {
        return Err(ApiError::bad_request(
            "identity_mode",
            "this endpoint needs token identity (--identity jwt)",
        ));
    };
    let verified = match token(headers) {
        Err(e) => Err((e, None)),
        Ok(None) => Err((TokenError::Missing, None)),
        Ok(Some(t)) => verifier.verify_fresh(t).await.map_err(|e| (e, Some(t))),
    };
    let now = chrono::Utc::now();
    match verified {
        Ok((principal, sign_in)) => {
            if let Some(s) = sign_in {
                let meta = super::request_meta(headers, peer);
                state.auth.signed_in(&principal, &s, &meta, surface, now);
            }
            Ok(principal)
        }
        Err((e, token)) => {
            tracing::debug!(error = %e, "token refused");
            let meta = super::request_meta(headers, peer);
            state.auth.refused(&e, token, &meta, surface, now);
            Err(ApiError::unauthorized(&e))
        }
    }
}

/// The principal of a native-API request: the token's in token mode (a body
/// principal is refused), the body's in trusted mode (a token is refused).
pub(super) async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: Option<&PrincipalWire>,
) -> Result<Option<Principal>, ApiError> {
    match &state.identity {
        Identity::Jwt(_) => {
            if body.is_some() {
                return Err(ApiError::bad_request(
                    "principal_not_allowed",
                    "the principal comes from the bearer token; remove `principal` from the body",
                ));
            }
            from_token(state, headers, peer, "sidecar").await.map(Some)
        }
        Identity::Trusted => {
            if headers.contains_key(AUTHORIZATION) {
                return Err(ApiError::bad_request(
                    "token_not_allowed",
                    "trusted mode takes the principal from the body; remove the Authorization header",
                ));
            }
            Ok(None)
        }
    }
}
