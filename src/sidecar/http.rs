//! HTTP plumbing shared by the servers: JSON responses, the error body
//! `{"error":{"code","message"}}`, and reading a size-limited JSON body.
//! Every client mistake maps to a status here, in one place.

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use crate::authz::AuthzError;
use crate::identity::TokenError;

/// A response body: whole (almost every response), or streamed from a
/// channel (exports).
pub type Body = Either<Full<Bytes>, ChannelBody>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

/// An empty body.
pub fn empty() -> Body {
    Either::Left(Full::default())
}

/// A body streamed from what is sent on the returned channel; it ends when
/// the sender is dropped.
pub fn channel_body(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (tx, Either::Right(ChannelBody(rx)))
}

/// The streamed half of [`Body`].
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// An error the API reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<String>,
    /// The request's fields at fault (`error.fields`), when there are some.
    pub fields: Vec<String>,
    /// What is wrong with a policy (`error.problems`), each located
    /// (`policyId:line:column: message`).
    pub problems: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            challenge: None,
            fields: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The same error, with a policy's problems.
    pub fn with_problems(mut self, problems: Vec<String>) -> Self {
        self.problems = problems;
        self
    }

    /// The same error, naming the request's fields at fault.
    pub fn with_fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge (RFC 6750).
    pub fn unauthorized(e: &TokenError) -> Self {
        let challenge = match e {
            TokenError::Missing => "Bearer realm=\"cedargate\"".to_string(),
            other => format!(
                "Bearer realm=\"cedargate\", error=\"invalid_token\", error_description=\"{}\"",
                other.to_string().replace(['"', '\\'], "'")
            ),
        };
        let code = if *e == TokenError::Missing {
            "missing_token"
        } else {
            "invalid_token"
        };
        ApiError {
            challenge: Some(challenge),
            ..ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body =
            serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        if !self.fields.is_empty() {
            body["error"]["fields"] = serde_json::json!(self.fields);
        }
        if !self.problems.is_empty() {
            body["error"]["problems"] = serde_json::json!(self.problems);
        }
        body
    }

    pub fn into_response(self) -> Response<Body> {
        let mut resp = json_response(self.status, &self.body());
        if let Some(v) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        resp
    }
}

impl From<AuthzError> for ApiError {
    fn from(e: AuthzError) -> Self {
        let code = match e {
            AuthzError::UnknownAction(_) => "unknown_action",
            AuthzError::WrongResourceType { .. } => "wrong_resource_type",
            AuthzError::InvalidContext { .. } => "invalid_context",
            AuthzError::InvalidRequest(_) => "invalid_request",
        };
        ApiError::bad_request(code, e.to_string())
    }
}

pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = Response::new(full(bytes));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            let mut resp = Response::new(full(Bytes::from_static(
                br#"{"error":{"code":"internal","message":"response serialization failed"}}"#,
            )));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp
        }
    }
}

pub fn text_response(
    status: StatusCode,
    content_type: &'static str,
    text: String,
) -> Response<Body> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Reads the whole body, refusing more than `limit` bytes (413). Returns
/// the request head too.
pub async fn read_body(
    req: Request<Incoming>,
    limit: usize,
) -> Result<(hyper::http::request::Parts, Bytes), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    };
    if let Some(len) = req.headers().get(CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("bad_content_length", "invalid Content-Length"))?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(
            "bad_body",
            format!("could not read request body: {e}"),
        )),
    }
}

/// Parses a JSON body into `T`, naming the problem on failure.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "invalid_request"
        };
        ApiError::bad_request(code, e.to_string())
    })
}
