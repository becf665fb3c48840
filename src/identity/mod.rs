//! Verified identity: Cognito / OIDC JWTs checked against a JWKS, turned into
//! the principal's claims. The tenant comes only from a verified token.
//!
//! Checks, in order: size, header (algorithm on the allow-list, a `kid`),
//! key (known, or found after a rate-limited JWKS refresh; algorithm matching
//! the key), signature, `iss`, `exp`/`nbf` with a small leeway, `token_use`,
//! `aud` (ID tokens, generic OIDC) or `client_id` (access tokens), and the
//! claims the principal is made of.

mod claims;
pub mod devkey;
mod jwks;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use lru::LruCache;
use parking_lot::Mutex;

pub use claims::ClaimNames;
pub(crate) use jwks::{acceptable as acceptable_idp_url, client as idp_client};
pub use jwks::{JwksError, JwksSource, KeySet};

use crate::authz::entities::Principal;

/// Which Cognito token type is accepted (`token_use` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// ID tokens: `token_use = "id"`, audience in `aud`.
    Id,
    /// Access tokens: `token_use = "access"`, audience in `client_id`.
    Access,
    /// Either Cognito token type.
    Any,
    /// Generic OIDC: no `token_use` claim required; audience in `aud`.
    Oidc,
}

/// What the verifier accepts.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks: JwksSource,
    /// Expected `iss`, e.g. `https://cognito-idp.eu-west-1.amazonaws.com/<pool>`.
    pub issuer: String,
    /// Accepted audiences: app client ids.
    pub audiences: Vec<String>,
    pub token_use: TokenUse,
    pub claims: ClaimNames,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Tokens larger than this are refused before parsing.
    pub max_token_bytes: usize,
    /// Minimum time between two JWKS refreshes caused by unknown `kid`s.
    pub min_refresh_interval: Duration,
    /// Accept keys minted by `cedargate token` (development only).
    pub allow_dev_keys: bool,
}

impl JwtConfig {
    pub fn new(jwks: JwksSource, issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        JwtConfig {
            jwks,
            issuer: issuer.into(),
            audiences,
            token_use: TokenUse::Any,
            claims: ClaimNames::default(),
            leeway: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            min_refresh_interval: Duration::from_secs(30),
            allow_dev_keys: false,
        }
    }
}

/// What the record of a token's first verified use says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    /// `jti`, else the first 32 hex digits of the token's SHA-256.
    pub token_id: String,
    pub issued_at: Option<i64>,
    pub expires_at: i64,
    /// `client_id` (access tokens), else `aud` (ID tokens).
    pub client_id: Option<String>,
}

impl SignIn {
    /// `digest`: the token's SHA-256.
    fn of(digest: &[u8; 32], claims: &serde_json::Value, exp: i64) -> Self {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(|s| s.chars().take(128).collect::<String>())
        };
        SignIn {
            token_id: text("jti").unwrap_or_else(|| hex::encode(&digest[..16])),
            issued_at: claims.get("iat").and_then(serde_json::Value::as_i64),
            expires_at: exp,
            client_id: text("client_id").or_else(|| text("aud")),
        }
    }
}

/// Why a token was refused. The text is safe to return to the caller: it
/// never echoes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("token is larger than {0} bytes")]
    Oversized(usize),
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("token has no key id")]
    NoKeyId,
    #[error("token key id is unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token audience is not accepted")]
    Audience,
    #[error("token_use is not accepted")]
    TokenUse,
    #[error("token claim {0}")]
    Claim(String),
    #[error("signing keys are unavailable")]
    KeysUnavailable,
}

/// Verifies tokens against a key set that refreshes itself. Tokens already
/// verified are remembered until they expire, so a client that sends the
/// same token on every request pays for the signature check once.
pub struct Verifier {
    config: JwtConfig,
    keys: KeySet,
    verified: Mutex<LruCache<String, Verified>>,
    /// Tokens refused lately, by their SHA-256, with the refusal and until
    /// when it stands: the same bad token sent again (a flood, a client
    /// retrying) is refused without checking its signature again.
    refused: Mutex<LruCache<[u8; 32], (TokenError, i64)>>,
    /// Tokens whose first verified use was seen (by SHA-256, until when
    /// they are accepted), on any surface: one sign-in record per token.
    signed_in: Mutex<LruCache<[u8; 32], i64>>,
}

/// A verified token's principal and when it stops being accepted.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    /// `exp` plus the leeway, in Unix seconds.
    until: i64,
}

/// How many verified tokens are remembered.
const VERIFIED_CAPACITY: usize = 10_000;
/// How many refused tokens are remembered, and for how long (seconds).
const REFUSED_CAPACITY: usize = 10_000;
const REFUSED_SECS: i64 = 60;

/// Whether a refusal stands for a while: not one that a key refresh, the
/// passing of time or the key service's recovery may lift.
fn lasting(e: &TokenError) -> bool {
    !matches!(
        e,
        TokenError::UnknownKey | TokenError::NotYetValid | TokenError::KeysUnavailable
    )
}

const ALLOWED: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

impl Verifier {
    /// Loads the key set once; start-up fails if it cannot.
    pub async fn new(config: JwtConfig) -> Result<Arc<Self>, JwksError> {
        let keys = KeySet::load(
            config.jwks.clone(),
            config.min_refresh_interval,
            config.allow_dev_keys,
        )
        .await?;
        Ok(Arc::new(Verifier {
            config,
            keys,
            verified: Mutex::new(LruCache::new(
                NonZeroUsize::new(VERIFIED_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
            refused: Mutex::new(LruCache::new(
                NonZeroUsize::new(REFUSED_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
            signed_in: Mutex::new(LruCache::new(
                NonZeroUsize::new(VERIFIED_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
        }))
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Verifies a compact JWS and returns the principal it names.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.verify_fresh(token).await.map(|(p, _)| p)
    }

    /// Like [`Verifier::verify`]; also, on the token's first verified use
    /// (not in the cache of verified tokens), what its sign-in record says.
    pub async fn verify_fresh(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<SignIn>), TokenError> {
        if token.len() > self.config.max_token_bytes {
            return Err(TokenError::Oversized(self.config.max_token_bytes));
        }
        let now = chrono::Utc::now().timestamp();
        {
            let mut verified = self.verified.lock();
            match verified.get(token) {
                Some(v) if now < v.until => return Ok((v.principal.clone(), None)),
                Some(_) => {
                    verified.pop(token);
                    return Err(TokenError::Expired);
                }
                None => {}
            }
        }
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        if let Some((e, until)) = self.refused.lock().get(&digest) {
            if now < *until {
                return Err(e.clone());
            }
        }
        let checked = match self.checked_claims(token).await {
            Ok((claims, exp)) => {
                claims::principal(&self.config.claims, &claims).map(|p| (p, claims, exp))
            }
            Err(e) => Err(e),
        };
        let (principal, claims, exp) = match checked {
            Ok(c) => c,
            Err(e) => {
                if lasting(&e) {
                    self.refused
                        .lock()
                        .put(digest, (e.clone(), now + REFUSED_SECS));
                }
                return Err(e);
            }
        };
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(0);
        self.verified.lock().put(
            token.to_string(),
            Verified {
                principal: principal.clone(),
                until: exp.saturating_add(leeway),
            },
        );
        let sign_in = self.first_use(&digest, &claims, exp);
        Ok((principal, sign_in))
    }

    /// What the sign-in record of a token says, on its first verified use
    /// only (a concurrent first use, or one on another surface, already
    /// signed in).
    fn first_use(&self, digest: &[u8; 32], claims: &serde_json::Value, exp: i64) -> Option<SignIn> {
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(0);
        let before = self
            .signed_in
            .lock()
            .put(*digest, exp.saturating_add(leeway));
        before.is_none().then(|| SignIn::of(digest, claims, exp))
    }

    /// Verifies a token as [`Verifier::verify`] does (signature, issuer,
    /// audience, `token_use`, times) and returns its claims as they are,
    /// for callers that map them themselves (the Verified Permissions API);
    /// also, on the token's first verified use on any surface, what its
    /// sign-in record says. A token refused lately is refused again without
    /// a signature check.
    pub async fn verify_claims_fresh(
        &self,
        token: &str,
    ) -> Result<(serde_json::Value, Option<SignIn>), TokenError> {
        if token.len() > self.config.max_token_bytes {
            return Err(TokenError::Oversized(self.config.max_token_bytes));
        }
        let now = chrono::Utc::now().timestamp();
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        if let Some((e, until)) = self.refused.lock().get(&digest) {
            if now < *until {
                return Err(e.clone());
            }
        }
        match self.checked_claims(token).await {
            Ok((claims, exp)) => {
                let sign_in = self.first_use(&digest, &claims, exp);
                Ok((claims, sign_in))
            }
            Err(e) => {
                if lasting(&e) {
                    self.refused
                        .lock()
                        .put(digest, (e.clone(), now + REFUSED_SECS));
                }
                Err(e)
            }
        }
    }

    /// The principal named by claims [`Verifier::verify_claims_fresh`] returned,
    /// with this verifier's claim names.
    pub fn principal_of(&self, claims: &serde_json::Value) -> Result<Principal, TokenError> {
        claims::principal(&self.config.claims, claims)
    }

    async fn checked_claims(&self, token: &str) -> Result<(serde_json::Value, i64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => {
                TokenError::Algorithm("(unsupported)".into())
            }
            _ => TokenError::Malformed,
        })?;
        if !ALLOWED.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.as_deref().ok_or(TokenError::NoKeyId)?;
        let key = self.keys.get(kid).await?;
        if key.algorithm != header.alg {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }

        let mut v = Validation::new(header.alg);
        v.algorithms = vec![key.algorithm];
        v.leeway = self.config.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.config.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Audience is checked below: Cognito access tokens carry it in
        // `client_id`, not `aud`.
        v.validate_aud = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &v).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => TokenError::Signature,
                    K::ExpiredSignature => TokenError::Expired,
                    K::ImmatureSignature => TokenError::NotYetValid,
                    K::InvalidIssuer => TokenError::Issuer,
                    K::MissingRequiredClaim(c) => TokenError::Claim(format!("{c} is missing")),
                    K::InvalidAlgorithm => TokenError::Algorithm(format!("{:?}", header.alg)),
                    _ => TokenError::Malformed,
                }
            })?;
        claims::check_audience(&self.config, &data.claims)?;
        let exp = data
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| TokenError::Claim("exp is not a number".into()))?;
        Ok((data.claims, exp))
    }
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
