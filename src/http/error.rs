//! [`ApiError`]: every error answer of the HTTP API, in one shape and one mapping.
//!
//! The body is always `{"error": "<human sentence>", ...}` with optional extra fields (a
//! 504 carries `key`, `acks`, `write_concern`; a 503 carries `available` and `quorum`).
//! 4xx answers are the client's business and are logged at debug level; 5xx answers are
//! logged with their cause.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// An error answer; see the module docs.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub extra: Map<String, Value>,
    pub retry_after_s: Option<u64>,
    pub allow: Option<&'static str>,
    /// More headers for the answer (`WWW-Authenticate` on a 401, `Connection: close`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: Map::new(),
            retry_after_s: None,
            allow: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Adds a field to the JSON body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_s = Some(secs);
        self
    }

    pub fn allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let expected = matches!(
            self.status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE | axum::http::StatusCode::GATEWAY_TIMEOUT
        );
        if self.status.is_server_error() && !expected {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else if expected {
            // Read-only, recovering, shutting down, a write concern not reached in time: the
            // system working as documented, not a fault.
            tracing::info!(status = self.status.as_u16(), error = %self.message, "request refused");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request refused");
        }
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.message));
        body.extend(self.extra);
        let mut resp = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(a) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(a));
        }
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}
