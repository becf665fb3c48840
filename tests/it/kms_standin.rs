//! A local stand-in for AWS KMS (`TrentService`, awsJson1_1), written from
//! the API model: `GenerateDataKey` and `Decrypt` with encryption context,
//! keys addressed by alias or ARN. Enough to run the AWS KMS key provider
//! through the real AWS SDK client; real KMS cannot be reached from tests.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::Aes256Gcm;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};

#[derive(Default)]
pub struct Keys {
    /// alias or ARN → (ARN, key)
    by_name: HashMap<String, (String, [u8; 32])>,
    pub calls: HashMap<String, u64>,
}

pub struct KmsStandin {
    pub addr: SocketAddr,
    pub keys: Arc<Mutex<Keys>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KmsStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl KmsStandin {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keys: Arc<Mutex<Keys>> = Arc::default();
        let shared = keys.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let keys = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let keys = keys.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&keys, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        KmsStandin { addr, keys, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A key reachable as `alias` and as its ARN.
    pub fn create_key(&self, alias: &str) -> String {
        let mut k = self.keys.lock();
        let arn = format!(
            "arn:aws:kms:us-east-1:000000000000:key/{}",
            uuid::Uuid::now_v7()
        );
        let key: [u8; 32] = Aes256Gcm::generate_key(OsRng).into();
        k.by_name.insert(alias.to_string(), (arn.clone(), key));
        k.by_name.insert(arn.clone(), (arn.clone(), key));
        arn
    }

    /// Schedules deletion, as far as the stand-in goes: gone at once.
    pub fn delete_key(&self, alias: &str) {
        let mut k = self.keys.lock();
        if let Some((arn, _)) = k.by_name.remove(alias) {
            k.by_name.remove(&arn);
        }
    }
}

fn reply(status: StatusCode, body: Value, error: Option<&'static str>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Some(kind) = error {
        r.headers_mut().insert(
            "x-amzn-errortype",
            hyper::header::HeaderValue::from_static(kind),
        );
    }
    r
}

fn error(kind: &'static str, message: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"__type": kind, "message": message}),
        Some(kind),
    )
}

/// The encryption context as authenticated data (sorted, so order does
/// not matter).
fn aad(input: &Value) -> Vec<u8> {
    let ctx: BTreeMap<String, Value> = input["EncryptionContext"]
        .as_object()
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    serde_json::to_vec(&ctx).unwrap()
}

async fn handle(keys: &Mutex<Keys>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start_matches("TrentService.")
        .to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return error("SerializationException", "not JSON");
    };
    let mut k = keys.lock();
    *k.calls.entry(target.clone()).or_default() += 1;
    match target.as_str() {
        "GenerateDataKey" => {
            let name = input["KeyId"].as_str().unwrap_or_default();
            let Some((arn, key)) = k.by_name.get(name).cloned() else {
                return error("NotFoundException", &format!("{name} not found"));
            };
            let plaintext: [u8; 32] = Aes256Gcm::generate_key(OsRng).into();
            let nonce = Aes256Gcm::generate_nonce(OsRng);
            let sealed = Aes256Gcm::new(&key.into())
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &plaintext,
                        aad: &aad(&input),
                    },
                )
                .unwrap();
            let mut blob = vec![arn.len() as u8];
            blob.extend_from_slice(arn.as_bytes());
            blob.extend_from_slice(&nonce);
            blob.extend_from_slice(&sealed);
            reply(
                StatusCode::OK,
                json!({"CiphertextBlob": b64().encode(blob), "Plaintext": b64().encode(plaintext), "KeyId": arn}),
                None,
            )
        }
        "Decrypt" => {
            let Some(blob) = input["CiphertextBlob"]
                .as_str()
                .and_then(|b| b64().decode(b).ok())
            else {
                return error("InvalidCiphertextException", "no ciphertext");
            };
            let n = blob.first().copied().unwrap_or(0) as usize;
            let (Some(arn), Some(rest)) = (blob.get(1..1 + n), blob.get(1 + n..)) else {
                return error("InvalidCiphertextException", "malformed");
            };
            let arn = String::from_utf8_lossy(arn).to_string();
            let Some((_, key)) = k.by_name.get(&arn).cloned() else {
                return error("NotFoundException", &format!("{arn} not found"));
            };
            if rest.len() < 12 {
                return error("InvalidCiphertextException", "malformed");
            }
            let (nonce, sealed) = rest.split_at(12);
            match Aes256Gcm::new(&key.into()).decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: &aad(&input),
                },
            ) {
                Ok(plain) => reply(
                    StatusCode::OK,
                    json!({"KeyId": arn, "Plaintext": b64().encode(plain), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
                    None,
                ),
                Err(_) => error(
                    "InvalidCiphertextException",
                    "the ciphertext or its encryption context is not valid",
                ),
            }
        }
        other => error(
            "UnknownOperationException",
            &format!("{other} is not part of the stand-in"),
        ),
    }
}
