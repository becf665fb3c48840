//! OpenID Connect sign-in: the authorization code flow with PKCE (RFC 7636,
//! `S256`) against the configured issuer (Cognito's Hosted UI in
//! production). The issuer's discovery document names the `authorize` and
//! `token` endpoints; the ID token that comes back is checked by the same
//! verifier as the API's bearer tokens, and its `nonce` must be the one
//! this sign-in sent.
//!
//! A sign-in in progress is kept on the server under its `state` for ten
//! minutes and used once; the browser that started it carries the same
//! `state` in a cookie, so a code obtained by someone else cannot be
//! completed in this browser (login CSRF).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use lru::LruCache;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::session::random_token;

/// How long a started sign-in may take.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
const PENDING_CAPACITY: usize = 10_000;
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// `[console.oidc]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer (its `/.well-known/openid-configuration` is read);
    /// default: `[jwt] issuer`.
    pub issuer: Option<String>,
    /// The app client the console signs in with; the verifier must accept
    /// it as an audience.
    pub client_id: String,
    /// For confidential app clients (sent with HTTP Basic).
    pub client_secret: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
}

struct Pending {
    verifier: String,
    nonce: String,
    started: Instant,
}

/// The identity provider as the console uses it.
pub struct Oidc {
    config: OidcConfig,
    issuer: String,
    redirect_uri: String,
    discovery: tokio::sync::OnceCell<Discovery>,
    pending: Mutex<LruCache<String, Pending>>,
}

/// What a completed code exchange gives.
pub struct Tokens {
    pub id_token: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
}

impl Oidc {
    pub fn new(config: OidcConfig, issuer: String, redirect_uri: String) -> Self {
        Oidc {
            config,
            issuer,
            redirect_uri,
            discovery: tokio::sync::OnceCell::new(),
            pending: Mutex::new(LruCache::new(
                NonZeroUsize::new(PENDING_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn discovery(&self) -> Result<&Discovery, String> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let bytes = request(&url, None, None).await?;
                serde_json::from_slice::<Discovery>(&bytes)
                    .map_err(|e| format!("the discovery document at {url} is invalid: {e}"))
            })
            .await
    }

    /// Starts a sign-in: returns the `state` (also the browser's cookie)
    /// and the URL to send the browser to.
    pub async fn start(&self) -> Result<(String, String), String> {
        let d = self.discovery().await?;
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}{query}", d.authorization_endpoint);
        self.pending.lock().put(
            state.clone(),
            Pending {
                verifier,
                nonce,
                started: Instant::now(),
            },
        );
        Ok((state, url))
    }

    /// Completes a sign-in: the `state` must be one this console started,
    /// not yet used nor too old; the code is exchanged for tokens.
    pub async fn finish(&self, state: &str, code: &str) -> Result<Tokens, String> {
        let pending = self
            .pending
            .lock()
            .pop(state)
            .filter(|p| p.started.elapsed() < PENDING_TTL)
            .ok_or("this sign-in is unknown, already used or too old; sign in again")?;
        let d = self.discovery().await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("client_id", &self.config.client_id)
            .append_pair("code_verifier", &pending.verifier)
            .finish();
        let basic = self.config.client_secret.as_ref().map(|secret| {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&self.config.client_id),
                enc(secret)
            ))
        });
        let bytes = request(&d.token_endpoint, Some(form), basic.as_deref()).await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
        }
        let t: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the token endpoint's answer is invalid: {e}"))?;
        Ok(Tokens {
            id_token: t
                .id_token
                .ok_or("the token endpoint returned no ID token (is `openid` in the scopes?)")?,
            nonce: pending.nonce,
        })
    }
}

/// GET (no form) or POST a form; `https`, or `http` to a loopback host.
async fn request(url: &str, form: Option<String>, basic: Option<&str>) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if !crate::identity::acceptable_idp_url(&uri) {
        return Err(format!(
            "{url} must use https (http only for a loopback host)"
        ));
    }
    let client = crate::identity::idp_client::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .uri(uri)
        .header(hyper::header::ACCEPT, "application/json");
    if let Some(b) = basic {
        req = req.header(hyper::header::AUTHORIZATION, format!("Basic {b}"));
    }
    let req = match form {
        Some(f) => req
            .method(hyper::Method::POST)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(f))),
        None => req.method(hyper::Method::GET).body(Full::new(Bytes::new())),
    }
    .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| format!("{url} did not answer in 10 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {status}"));
    }
    Ok(body)
}
