//! OpenID Connect sign-in: the authorization code flow with PKCE (RFC 7636,
//! `S256`) against the configured issuer (Cognito's Hosted UI in
//! production). The issuer's discovery document names the `authorize` and
//! `token` endpoints; the ID token that comes back is checked by the same
//! verifier as the API's bearer tokens, and its `nonce` must be the one
//! this sign-in sent.
//!
//! A sign-in in progress keeps nothing on the server (so a flood of
//! started sign-ins cannot crowd out real ones): its `state` carries when
//! it started and a MAC under a key of this process, and the PKCE verifier
//! and the `nonce` are derived from the `state` with that key. A `state` is
//! good for ten minutes; the browser that started the sign-in carries it in
//! a cookie, so a code obtained by someone else cannot be completed in this
//! browser (login CSRF); the identity provider takes each code once.

use std::time::Duration;

use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::OsRng;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt as _, Full, Limited};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long a started sign-in may take.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// How long one call to the identity provider may take, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The identity provider as the console uses it.
pub struct Oidc {
    config: OidcConfig,
    issuer: String,
    redirect_uri: String,
    discovery: tokio::sync::OnceCell<Discovery>,
    /// Signs `state`s and derives their verifier and nonce.
    key: [u8; 32],
}

/// What a completed code exchange gives.
pub struct Tokens {
    pub id_token: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
}

impl Oidc {
    pub fn new(config: OidcConfig, issuer: String, redirect_uri: String) -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Oidc {
            config,
            issuer,
            redirect_uri,
            discovery: tokio::sync::OnceCell::new(),
            key,
        }
    }

    fn mac(&self, purpose: &[u8], data: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        m.update(purpose);
        m.update(data);
        m
    }

    /// A new `state`: when it was made, 16 random bytes, and 16 bytes of
    /// MAC over both.
    fn new_state(&self, now: i64) -> String {
        let mut body = [0u8; 24];
        body[..8].copy_from_slice(&now.to_be_bytes());
        OsRng.fill_bytes(&mut body[8..]);
        let tag = self.mac(b"state", &body).finalize().into_bytes();
        let mut all = body.to_vec();
        all.extend_from_slice(&tag[..16]);
        B64.encode(all)
    }

    /// Whether `state` is one of this process's, made at most
    /// [`PENDING_TTL`] before `now`.
    fn state_ok(&self, state: &str, now: i64) -> bool {
        let Ok(bytes) = B64.decode(state) else {
            return false;
        };
        if bytes.len() != 40 {
            return false;
        }
        let (body, tag) = bytes.split_at(24);
        if self.mac(b"state", body).verify_truncated_left(tag).is_err() {
            return false;
        }
        let made = i64::from_be_bytes(body[..8].try_into().unwrap_or_default());
        let ttl = i64::try_from(PENDING_TTL.as_secs()).unwrap_or(i64::MAX);
        made <= now && now - made <= ttl
    }

    /// The PKCE verifier (43 characters) and the nonce of a `state`.
    fn derived(&self, state: &str) -> (String, String) {
        let verifier = B64.encode(self.mac(b"pkce", state.as_bytes()).finalize().into_bytes());
        let nonce = B64.encode(self.mac(b"nonce", state.as_bytes()).finalize().into_bytes());
        (verifier, nonce)
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
        let state = self.new_state(chrono::Utc::now().timestamp());
        let (verifier, nonce) = self.derived(&state);
        let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
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
        Ok((state, url))
    }

    /// Completes a sign-in: the `state` must be one this console made, not
    /// too old; the code is exchanged for tokens with its verifier.
    pub async fn finish(&self, state: &str, code: &str) -> Result<Tokens, String> {
        if !self.state_ok(state, chrono::Utc::now().timestamp()) {
            return Err("this sign-in is unknown or too old; sign in again".into());
        }
        let (verifier, nonce) = self.derived(state);
        let d = self.discovery().await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("client_id", &self.config.client_id)
            .append_pair("code_verifier", &verifier)
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
            nonce,
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
    let call = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| format!("{url} did not answer in {CALL_TIMEOUT:?}"))??;
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {status}"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc() -> Oidc {
        let config = OidcConfig {
            issuer: None,
            client_id: "c".into(),
            client_secret: None,
            scopes: default_scopes(),
        };
        Oidc::new(
            config,
            "https://idp.test".into(),
            "https://a.test/console/callback".into(),
        )
    }

    #[test]
    fn a_state_is_good_for_ten_minutes_in_this_process_only() {
        let o = oidc();
        let now = 1_800_000_000;
        let s = o.new_state(now);
        assert!(o.state_ok(&s, now));
        assert!(o.state_ok(&s, now + 600));
        assert!(!o.state_ok(&s, now + 601), "too old");
        assert!(!o.state_ok(&s, now - 1), "from the future");
        assert!(!oidc().state_ok(&s, now), "another process's key");
        let mut forged = B64.decode(&s).unwrap();
        forged[0] ^= 1; // another start time, same MAC
        assert!(!o.state_ok(&B64.encode(&forged), now));
        assert!(!o.state_ok("not-a-state", now));
        assert!(!o.state_ok("", now));
    }

    #[test]
    fn verifier_and_nonce_follow_from_the_state() {
        let o = oidc();
        let s = o.new_state(1_800_000_000);
        let (v, n) = o.derived(&s);
        assert_eq!(v.len(), 43, "RFC 7636: 43 to 128 characters");
        assert_eq!(o.derived(&s), (v.clone(), n.clone()));
        let other = o.new_state(1_800_000_000);
        assert_ne!(o.derived(&other).0, v);
        assert_ne!(n, v);
    }
}
