//! The console's way to the management API: each call is an HTTP/1 request
//! to the API's own router over an in-memory pipe, with the session's
//! bearer token and the browser's address, user agent and request id. The
//! API authenticates, authorizes and audits it exactly as it does a call
//! from anywhere else; the console has no other way to the data.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::sidecar::{AppState, Router};

/// Largest JSON answer the console reads from the API.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// The browser request's facts the API should see as its own.
#[derive(Clone)]
pub struct Origin {
    pub peer: SocketAddr,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Origin {
    pub fn of(headers: &HeaderMap, peer: SocketAddr) -> Self {
        let keep = ["user-agent", "x-request-id", "x-forwarded-for", "x-real-ip"];
        Origin {
            peer,
            headers: keep
                .iter()
                .filter_map(|name| {
                    let value = headers.get(*name)?.clone();
                    Some((HeaderName::from_static(name), value))
                })
                .collect(),
        }
    }
}

/// An API answer read whole: status, headers, JSON body (`null` if none).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Answer {
    /// The API's error code and message, if this is an error.
    pub fn error(&self) -> Option<(String, String)> {
        if self.status.is_success() {
            return None;
        }
        let e = self.json.get("error");
        let text = |k: &str| {
            e.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some((text("code"), text("message")))
    }
}

/// A client of one API router for one browser request.
pub struct Api {
    pub router: Arc<dyn Router>,
    pub state: Arc<AppState>,
    pub origin: Origin,
    pub token: String,
}

impl Api {
    /// Sends a request; the answer's body is left to the caller (exports
    /// are streamed through).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        extra: &[(HeaderName, HeaderValue)],
        body: Option<Value>,
    ) -> Result<Response<Incoming>, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "cedargate-admin");
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", self.token)) {
            req = req.header(AUTHORIZATION, v);
        }
        for (k, v) in self.origin.headers.iter().chain(extra) {
            req = req.header(k, v);
        }
        let bytes = match body {
            Some(v) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).map_err(|e| e.to_string())?;

        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let router = self.router.clone();
        let state = self.state.clone();
        let peer = self.origin.peer;
        let service = service_fn(move |req| {
            let fut = router.route(state.clone(), req, peer);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server_io), service)
                .await;
        });
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender.send_request(req).await.map_err(|e| e.to_string())
    }

    /// Sends a request and reads its JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        extra: &[(HeaderName, HeaderValue)],
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let resp = self.send(method, path, extra, body).await?;
        let (parts, body) = resp.into_parts();
        let bytes = Limited::new(body, MAX_JSON_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            json,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.call(Method::GET, path, &[], None).await
    }
}

/// What [`enc`] escapes: everything but RFC 3986's unreserved characters.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment or query value, percent-encoded (a segment of only dots
/// entirely, so it can never read as `.` or `..`).
pub fn enc(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b == b'.') {
        return "%2E".repeat(s.len());
    }
    percent_encoding::utf8_percent_encode(s, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::enc;

    #[test]
    fn segments_are_escaped_and_never_dot_segments() {
        assert_eq!(enc("acme-co_1.x~"), "acme-co_1.x~");
        assert_eq!(enc("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(enc(".."), "%2E%2E");
        assert_eq!(enc("."), "%2E");
        assert_eq!(enc("Shared."), "Shared.");
    }
}
