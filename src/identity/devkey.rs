//! Development signing keys for `cedargate token`: an ES256 (P-256) key pair
//! written as a PKCS#8 PEM and a matching JWKS. Their key ids start with
//! [`DEV_KID_PREFIX`], and a verifier ignores such keys unless configured
//! with `allow_dev_keys`, so a development key never unlocks production.

use std::path::{Path, PathBuf};

use jsonwebtoken::{EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sha2::{Digest, Sha256};

pub const DEV_KID_PREFIX: &str = "cedargate-dev-";
/// Issuer of development tokens.
pub const DEV_ISSUER: &str = "https://cedargate.invalid/dev";
/// Audience (app client id) of development tokens.
pub const DEV_AUDIENCE: &str = "cedargate-dev";

#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("invalid development key: {0}")]
    Key(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A development key pair.
pub struct DevKey {
    signing: SigningKey,
}

impl DevKey {
    pub fn generate() -> Self {
        DevKey {
            signing: SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng),
        }
    }

    pub fn from_pem(pem: &str) -> Result<Self, DevKeyError> {
        let signing =
            SigningKey::from_pkcs8_pem(pem).map_err(|e| DevKeyError::Key(e.to_string()))?;
        Ok(DevKey { signing })
    }

    pub fn read(path: &Path) -> Result<Self, DevKeyError> {
        let pem = std::fs::read_to_string(path).map_err(|e| DevKeyError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_pem(&pem)
    }

    pub fn to_pem(&self) -> Result<String, DevKeyError> {
        Ok(self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| DevKeyError::Key(e.to_string()))?
            .to_string())
    }

    /// `cedargate-dev-` and a hash of the public key.
    pub fn kid(&self) -> String {
        let point = self.signing.verifying_key().to_encoded_point(false);
        let digest = Sha256::digest(point.as_bytes());
        format!("{DEV_KID_PREFIX}{}", &hex::encode(digest)[..16])
    }

    /// The public half as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let public = p256::PublicKey::from(self.signing.verifying_key());
        let mut jwk: serde_json::Value =
            serde_json::from_str(&public.to_jwk_string()).unwrap_or_default();
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), self.kid().into());
            obj.insert("alg".into(), "ES256".into());
            obj.insert("use".into(), "sig".into());
        }
        serde_json::json!({ "keys": [jwk] })
    }

    /// Writes `dev-key.pem` and `jwks.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), DevKeyError> {
        let io = |path: &Path, e: std::io::Error| DevKeyError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let key = dir.join("dev-key.pem");
        let jwks = dir.join("jwks.json");
        std::fs::write(&key, self.to_pem()?).map_err(|e| io(&key, e))?;
        std::fs::write(&jwks, self.jwks().to_string()).map_err(|e| io(&jwks, e))?;
        Ok((key, jwks))
    }

    /// Signs `claims` as an ES256 JWT with this key's kid.
    pub fn mint(&self, claims: &serde_json::Value) -> Result<String, DevKeyError> {
        let pem = self.to_pem()?;
        let key = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| DevKeyError::Key(e.to_string()))?;
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid());
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| DevKeyError::Sign(e.to_string()))
    }
}

/// Claims of a Cognito-style ID token for development.
pub struct DevClaims<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub sub: &'a str,
    pub tenant: &'a str,
    pub groups: &'a [String],
    pub clearance: Option<u8>,
    pub ttl_secs: i64,
}

impl DevClaims<'_> {
    pub fn to_json(&self) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": self.sub,
            "token_use": "id",
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_secs,
            "custom:tenant_id": self.tenant,
            "cognito:groups": self.groups,
        });
        if let (Some(c), Some(obj)) = (self.clearance, claims.as_object_mut()) {
            obj.insert("custom:clearance".into(), c.to_string().into());
        }
        claims
    }
}
