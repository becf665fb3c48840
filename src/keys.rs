//! Per-tenant keys for data at rest (export archives): envelope encryption.
//! Each archive gets a fresh 256-bit data key; the data is sealed with
//! AES-256-GCM in the STREAM construction (64 KiB segments, the last one
//! marked, so truncation and reordering are detected); the data key is
//! stored beside it wrapped by the tenant's own key — a local key file per
//! tenant for the embedded setup, or a per-tenant AWS KMS key
//! (`GenerateDataKey` / `Decrypt` with the tenant id as encryption context)
//! in production. Destroying a tenant's key makes its archives unreadable
//! (crypto-shredding).
//!
//! File format: one JSON header line (`cedargate: "encrypted-export"`, the
//! tenant, the wrapped key, the nonce prefix), then segments, each a 4-byte
//! big-endian length and the sealed bytes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key};
use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Plaintext per segment.
const SEGMENT: usize = 64 * 1024;
/// The header's marker.
const MARKER: &str = "encrypted-export";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key provider: {0}")]
    Provider(String),
    #[error("the data cannot be decrypted: {0}")]
    Decrypt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A data key wrapped by a tenant key, as stored with the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrappedKey {
    /// `local` or `aws-kms`.
    pub provider: String,
    /// The tenant key that wraps it (a KMS key ARN, or `local:<tenant>`).
    pub key_id: String,
    /// Base64.
    pub ciphertext: String,
}

/// A fresh data key: the plaintext (use, then drop) and its wrapped form.
pub struct DataKey {
    pub plaintext: [u8; 32],
    pub wrapped: WrappedKey,
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.plaintext = [0; 32];
    }
}

/// Where tenant keys live.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// A new data key for `tenant`.
    async fn data_key(&self, tenant: &str) -> Result<DataKey, KeyError>;
    /// The plaintext of a data key of `tenant`.
    async fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<[u8; 32], KeyError>;
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// One key file per tenant under a directory (mode 0600, created on first
/// use): for the embedded setup. Keep the directory apart from the
/// archives, and back it up apart too.
pub struct LocalKeys {
    dir: PathBuf,
}

impl LocalKeys {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalKeys { dir: dir.into() }
    }

    fn key_path(&self, tenant: &str) -> PathBuf {
        self.dir.join(format!("{tenant}.key"))
    }

    /// The tenant's key; created if `create` and missing.
    fn tenant_key(&self, tenant: &str, create: bool) -> Result<Key<Aes256Gcm>, KeyError> {
        let path = self.key_path(tenant);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => Ok(*Key::<Aes256Gcm>::from_slice(&bytes)),
            Ok(_) => Err(KeyError::Provider(format!(
                "{} is not a 32-byte key",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::create_dir_all(&self.dir)?;
                let key = Aes256Gcm::generate_key(OsRng);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(&path) {
                    Ok(mut f) => {
                        f.write_all(&key)?;
                        f.sync_all()?;
                        Ok(key)
                    }
                    // Another process made it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        self.tenant_key(tenant, false)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(KeyError::Provider(format!(
                "no key for tenant {tenant} in {}",
                self.dir.display()
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl KeyProvider for LocalKeys {
    async fn data_key(&self, tenant: &str) -> Result<DataKey, KeyError> {
        let kek = Aes256Gcm::new(&self.tenant_key(tenant, true)?);
        let plaintext: [u8; 32] = Aes256Gcm::generate_key(OsRng).into();
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let sealed = kek
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: tenant.as_bytes(),
                },
            )
            .map_err(|e| KeyError::Provider(e.to_string()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(DataKey {
            plaintext,
            wrapped: WrappedKey {
                provider: "local".into(),
                key_id: format!("local:{tenant}"),
                ciphertext: b64().encode(blob),
            },
        })
    }

    async fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<[u8; 32], KeyError> {
        if wrapped.provider != "local" || wrapped.key_id != format!("local:{tenant}") {
            return Err(KeyError::Decrypt(format!(
                "the data key is wrapped by {} {}, not tenant {tenant}'s local key",
                wrapped.provider, wrapped.key_id
            )));
        }
        let kek = Aes256Gcm::new(&self.tenant_key(tenant, false)?);
        let blob = b64()
            .decode(&wrapped.ciphertext)
            .map_err(|e| KeyError::Decrypt(e.to_string()))?;
        if blob.len() < 12 {
            return Err(KeyError::Decrypt("wrapped key too short".into()));
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = kek
            .decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: tenant.as_bytes(),
                },
            )
            .map_err(|_| {
                KeyError::Decrypt("the data key does not unwrap with the tenant's key".into())
            })?;
        plain
            .try_into()
            .map_err(|_| KeyError::Decrypt("the data key is not 32 bytes".into()))
    }
}

/// A per-tenant AWS KMS key: `key_id` with `{tenant}` replaced (e.g.
/// `alias/cedargate-{tenant}`); the tenant id is the encryption context, so
/// a key of one tenant never opens another tenant's data key.
pub struct AwsKms {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl AwsKms {
    pub async fn new(key_id: &str, region: Option<&str>, endpoint: Option<&str>) -> Self {
        let config = crate::aws::sdk_config(region, endpoint).await;
        AwsKms {
            client: aws_sdk_kms::Client::new(&config),
            key_id: key_id.to_string(),
        }
    }

    fn key_for(&self, tenant: &str) -> String {
        self.key_id.replace("{tenant}", tenant)
    }
}

fn kms_error<E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug>(e: E) -> KeyError {
    KeyError::Provider(format!("KMS {}", crate::aws::error_text(&e)))
}

#[async_trait]
impl KeyProvider for AwsKms {
    async fn data_key(&self, tenant: &str) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(self.key_for(tenant))
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .encryption_context("tenantId", tenant)
            .send()
            .await
            .map_err(kms_error)?;
        let plaintext: [u8; 32] = out
            .plaintext()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default()
            .try_into()
            .map_err(|_| KeyError::Provider("KMS returned a data key of the wrong size".into()))?;
        let blob = out
            .ciphertext_blob()
            .ok_or_else(|| KeyError::Provider("KMS returned no ciphertext".into()))?;
        Ok(DataKey {
            plaintext,
            wrapped: WrappedKey {
                provider: "aws-kms".into(),
                key_id: out.key_id().unwrap_or_default().to_string(),
                ciphertext: b64().encode(blob.as_ref()),
            },
        })
    }

    async fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<[u8; 32], KeyError> {
        if wrapped.provider != "aws-kms" {
            return Err(KeyError::Decrypt(format!(
                "the data key is wrapped by {}",
                wrapped.provider
            )));
        }
        let blob = b64()
            .decode(&wrapped.ciphertext)
            .map_err(|e| KeyError::Decrypt(e.to_string()))?;
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
            .key_id(&wrapped.key_id)
            .encryption_context("tenantId", tenant)
            .send()
            .await
            .map_err(kms_error)?;
        out.plaintext()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default()
            .try_into()
            .map_err(|_| KeyError::Decrypt("KMS returned a data key of the wrong size".into()))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    cedargate: String,
    version: u32,
    tenant_id: String,
    algorithm: String,
    key: WrappedKey,
    /// Base64 of the 7-byte STREAM nonce prefix.
    nonce: String,
}

/// Whether `bytes` (a file's start) is an encrypted export.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice::<Header>(line).is_ok_and(|h| h.cedargate == MARKER)
}

/// Encrypts `plain` into `out` under a fresh data key of `tenant`.
pub async fn encrypt_file(
    keys: &dyn KeyProvider,
    tenant: &str,
    plain: &Path,
    out: &Path,
) -> Result<(), KeyError> {
    let key = keys.data_key(tenant).await?;
    let nonce: [u8; 7] = {
        let n = Aes256Gcm::generate_nonce(OsRng);
        let mut p = [0u8; 7];
        p.copy_from_slice(&n[..7]);
        p
    };
    let header = Header {
        cedargate: MARKER.into(),
        version: 1,
        tenant_id: tenant.into(),
        algorithm: "AES-256-GCM STREAM-BE32, 64 KiB segments".into(),
        key: key.wrapped.clone(),
        nonce: b64().encode(nonce),
    };
    let data_key = key.plaintext;
    let (plain, out, tenant) = (plain.to_path_buf(), out.to_path_buf(), tenant.to_string());
    tokio::task::spawn_blocking(move || -> Result<(), KeyError> {
        let mut input = std::io::BufReader::new(std::fs::File::open(&plain)?);
        let file = std::fs::File::create(&out)?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut w, &header).map_err(|e| KeyError::Provider(e.to_string()))?;
        w.write_all(b"\n")?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key));
        let mut enc = EncryptorBE32::from_aead(cipher, (&nonce).into());
        let mut buf = vec![0u8; SEGMENT];
        let mut filled = fill(&mut input, &mut buf)?;
        loop {
            let mut next = vec![0u8; SEGMENT];
            let next_filled = if filled == SEGMENT {
                fill(&mut input, &mut next)?
            } else {
                0
            };
            let payload = Payload {
                msg: &buf[..filled],
                aad: tenant.as_bytes(),
            };
            if next_filled == 0 {
                let sealed = enc
                    .encrypt_last(payload)
                    .map_err(|e| KeyError::Provider(e.to_string()))?;
                frame(&mut w, &sealed)?;
                break;
            }
            let sealed = enc
                .encrypt_next(payload)
                .map_err(|e| KeyError::Provider(e.to_string()))?;
            frame(&mut w, &sealed)?;
            buf = next;
            filled = next_filled;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    })
    .await
    .map_err(|e| KeyError::Provider(e.to_string()))?
}

fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn frame(w: &mut impl Write, sealed: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(sealed.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(sealed)
}

/// Decrypts an encrypted export; refuses a truncated, reordered or altered
/// file, and a file of another tenant than `expect_tenant` (if given).
pub async fn decrypt_file(
    keys: &dyn KeyProvider,
    path: &Path,
    expect_tenant: Option<&str>,
) -> Result<Vec<u8>, KeyError> {
    let bytes = tokio::fs::read(path).await?;
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| KeyError::Decrypt("no header".into()))?;
    let header: Header = serde_json::from_slice(&bytes[..end])
        .map_err(|e| KeyError::Decrypt(format!("header: {e}")))?;
    if header.cedargate != MARKER || header.version != 1 {
        return Err(KeyError::Decrypt(
            "not an encrypted export (version 1)".into(),
        ));
    }
    if let Some(t) = expect_tenant {
        if t != header.tenant_id {
            return Err(KeyError::Decrypt(format!(
                "the file is tenant {}'s",
                header.tenant_id
            )));
        }
    }
    let data_key = keys.unwrap(&header.tenant_id, &header.key).await?;
    let nonce: [u8; 7] = b64()
        .decode(&header.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| KeyError::Decrypt("bad nonce".into()))?;
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key));
    let mut dec = DecryptorBE32::from_aead(cipher, (&nonce).into());
    let tenant = header.tenant_id.as_bytes();
    let mut rest = &bytes[end + 1..];
    let mut out = Vec::with_capacity(rest.len());
    let bad = || KeyError::Decrypt("the file is truncated, reordered or altered".into());
    loop {
        if rest.len() < 4 {
            return Err(bad());
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let sealed = rest.get(4..4 + len).ok_or_else(bad)?;
        rest = &rest[4 + len..];
        let payload = Payload {
            msg: sealed,
            aad: tenant,
        };
        if rest.is_empty() {
            out.extend(dec.decrypt_last(payload).map_err(|_| bad())?);
            return Ok(out);
        }
        out.extend(dec.decrypt_next(payload).map_err(|_| bad())?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(size: usize) {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeys::new(dir.path().join("keys"));
        let plain = dir.path().join("p");
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(&plain, &data).unwrap();
        let enc = dir.path().join("e");
        encrypt_file(&keys, "t1", &plain, &enc).await.unwrap();
        let sealed = std::fs::read(&enc).unwrap();
        assert!(is_encrypted(&sealed));
        assert_eq!(decrypt_file(&keys, &enc, Some("t1")).await.unwrap(), data);
        assert!(decrypt_file(&keys, &enc, Some("t2")).await.is_err());
        // Cut short, at a segment boundary or inside one.
        let header = sealed.iter().position(|b| *b == b'\n').unwrap() + 1;
        for cut in [header + 4, sealed.len() - 1, header + 4 + SEGMENT + 16 + 4] {
            if cut < sealed.len() {
                std::fs::write(&enc, &sealed[..cut]).unwrap();
                assert!(
                    decrypt_file(&keys, &enc, None).await.is_err(),
                    "cut at {cut}"
                );
            }
        }
        // One bit changed.
        let mut altered = sealed.clone();
        let i = altered.len() - 3;
        altered[i] ^= 1;
        std::fs::write(&enc, &altered).unwrap();
        assert!(decrypt_file(&keys, &enc, None).await.is_err());
    }

    #[tokio::test]
    async fn archives_round_trip_and_refuse_tampering() {
        round_trip(0).await;
        round_trip(10).await;
        round_trip(SEGMENT).await;
        round_trip(3 * SEGMENT + 17).await;
    }

    #[tokio::test]
    async fn each_tenant_has_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeys::new(dir.path());
        let a = keys.data_key("t1").await.unwrap();
        let b = keys.data_key("t2").await.unwrap();
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(keys.unwrap("t1", &a.wrapped).await.unwrap(), a.plaintext);
        // t1's wrapped key does not open as t2's, even relabelled.
        let mut forged = a.wrapped.clone();
        forged.key_id = "local:t2".into();
        assert!(keys.unwrap("t2", &forged).await.is_err());
        assert!(keys.unwrap("t2", &a.wrapped).await.is_err());
        // Destroying the tenant key makes its data keys unrecoverable.
        std::fs::remove_file(dir.path().join("t1.key")).unwrap();
        assert!(keys.unwrap("t1", &a.wrapped).await.is_err());
    }
}
