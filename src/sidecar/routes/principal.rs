//! Who is asking: the principal of a request, from a verified bearer token
//! (token mode) or from the body (trusted mode). Mixing the two is refused.

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

/// Verifies the request's token (token mode). Missing or bad → 401.
pub(crate) async fn from_token(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let Identity::Jwt(verifier) = &state.identity else {
        return Err(ApiError::bad_request(
            "identity_mode",
            "this endpoint needs token identity (--identity jwt)",
        ));
    };
    let token = token(headers)
        .map_err(|e| ApiError::unauthorized(&e))?
        .ok_or_else(|| ApiError::unauthorized(&TokenError::Missing))?;
    verifier.verify(token).await.map_err(|e| {
        tracing::debug!(error = %e, "token refused");
        ApiError::unauthorized(&e)
    })
}

/// The principal of a native-API request: the token's in token mode (a body
/// principal is refused), the body's in trusted mode (a token is refused).
pub(super) async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
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
            from_token(state, headers).await.map(Some)
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
