//! The signing keys: a JWKS read from a file or fetched over HTTPS, kept as
//! ready decoding keys, refreshed when a token names an unknown `kid` — at
//! most once per `min_refresh_interval`, and one refresh at a time, so a
//! flood of made-up kids cannot hammer the issuer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::devkey::DEV_KID_PREFIX;
use super::TokenError;

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// `https://…`; plain `http://` only for a loopback host.
    Url(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => f.write_str(u),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read JWKS {source_name}: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error("JWKS {source_name} is invalid: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("JWKS URL {0} must use https (http is allowed for loopback hosts only)")]
    Insecure(String),
}

/// A verification key and the one algorithm it is used with.
pub struct Key {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

type Keys = HashMap<String, Arc<Key>>;

pub struct KeySet {
    source: JwksSource,
    keys: ArcSwap<Keys>,
    last_refresh: Mutex<Instant>,
    min_refresh_interval: Duration,
    allow_dev_keys: bool,
}

const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

impl KeySet {
    pub async fn load(
        source: JwksSource,
        min_refresh_interval: Duration,
        allow_dev_keys: bool,
    ) -> Result<Self, JwksError> {
        let keys = fetch(&source, allow_dev_keys).await?;
        Ok(KeySet {
            source,
            keys: ArcSwap::from_pointee(keys),
            last_refresh: Mutex::new(Instant::now()),
            min_refresh_interval,
            allow_dev_keys,
        })
    }

    /// The key for `kid`, refreshing the set (rate-limited) if it is unknown.
    pub async fn get(&self, kid: &str) -> Result<Arc<Key>, TokenError> {
        if let Some(k) = self.keys.load().get(kid) {
            return Ok(k.clone());
        }
        let mut last = self.last_refresh.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(k) = self.keys.load().get(kid) {
            return Ok(k.clone());
        }
        if last.elapsed() < self.min_refresh_interval {
            return Err(TokenError::UnknownKey);
        }
        *last = Instant::now();
        match fetch(&self.source, self.allow_dev_keys).await {
            Ok(keys) => {
                tracing::info!(source = %self.source, keys = keys.len(), "JWKS refreshed");
                self.keys.store(Arc::new(keys));
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the current keys"),
        }
        self.keys
            .load()
            .get(kid)
            .cloned()
            .ok_or(TokenError::UnknownKey)
    }
}

async fn fetch(source: &JwksSource, allow_dev_keys: bool) -> Result<Keys, JwksError> {
    let name = source.to_string();
    let read_err = |message: String| JwksError::Read {
        source_name: name.clone(),
        message,
    };
    let bytes = match source {
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| read_err(e.to_string()))?,
        JwksSource::Url(url) => tokio::time::timeout(FETCH_TIMEOUT, fetch_url(url))
            .await
            .map_err(|_| read_err(format!("no answer within {FETCH_TIMEOUT:?}")))??
            .to_vec(),
    };
    parse(&name, &bytes, allow_dev_keys)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the identity provider may be reached at `uri`: `https`, or
/// plain `http` to a loopback host only.
pub(crate) fn acceptable(uri: &hyper::Uri) -> bool {
    uri.scheme_str() == Some("https")
        || (uri.scheme_str() == Some("http") && uri.host().is_some_and(is_loopback))
}

/// The HTTP client for the identity provider: rustls with the webpki
/// roots, HTTP/1.
pub(crate) fn client<B>() -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    B,
>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

async fn fetch_url(url: &str) -> Result<Bytes, JwksError> {
    let err = |message: String| JwksError::Read {
        source_name: url.to_string(),
        message,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| err(format!("{e}")))?;
    if !acceptable(&uri) {
        return Err(JwksError::Insecure(url.to_string()));
    }
    let resp = client::<Empty<Bytes>>()
        .get(uri)
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(body.to_bytes())
}

/// Parses a JWKS, keeping the signing keys usable with an allowed algorithm.
pub fn parse(name: &str, bytes: &[u8], allow_dev_keys: bool) -> Result<Keys, JwksError> {
    let invalid = |message: String| JwksError::Invalid {
        source_name: name.to_string(),
        message,
    };
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if kid.starts_with(DEV_KID_PREFIX) && !allow_dev_keys {
            tracing::warn!(%kid, "ignoring a development key (allow_dev_keys is off)");
            continue;
        }
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
        {
            continue;
        }
        let by_type = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Some(Algorithm::ES256)
            }
            _ => None,
        };
        let declared = match jwk.common.key_algorithm {
            None => by_type,
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
            Some(_) => None,
        };
        let (Some(algorithm), true) = (declared, declared == by_type) else {
            continue;
        };
        let decoding =
            DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("key {kid}: {e}")))?;
        keys.insert(
            kid,
            Arc::new(Key {
                algorithm,
                decoding,
            }),
        );
    }
    if keys.is_empty() {
        return Err(invalid("no RS256 or ES256 signing key with a kid".into()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("example.com"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[tokio::test]
    async fn plain_http_is_refused_for_remote_hosts() {
        let err = fetch_url("http://example.com/jwks.json").await.unwrap_err();
        assert!(matches!(err, JwksError::Insecure(_)));
    }

    #[test]
    fn keeps_only_usable_signing_keys() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "no-alg", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
                {"kty": "RSA", "kid": "rsa-enc", "use": "enc", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"}
        ]});
        let keys = parse("test", jwks.to_string().as_bytes(), false).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys["no-alg"].algorithm, Algorithm::RS256);
        assert!(parse("test", b"{\"keys\": []}", false).is_err());
        assert!(parse("test", b"not json", false).is_err());
    }
}
