//! The HTTP API (SPEC §2–3): one router per role over a shared [`Node`].
//!
//! | route | master | secondary |
//! |---|---|---|
//! | `POST /message` | append (write concern) | 421 naming the master |
//! | `PUT /message` | 405 | store one message under its key (internal) |
//! | `POST /replicate` | 405 | store a binary batch (internal; the master's path) |
//! | `GET /replicate?from=&limit=` | 405 | read a binary batch (internal; master tail recovery) |
//! | `GET /messages` | the log | the contiguous prefix |
//! | `GET /health`, `GET /heartbeat` | yes | yes |
//! | `POST /delay`, `GET`/`POST /fault` | 404 | fault injection (only with `fault.enabled`) |
//! | `GET /metrics` | Prometheus text (`crate::metrics`) | the same |
//! | `GET /openapi.json` | the OpenAPI document of both roles ([`openapi`]) | the same |
//!
//! Routes are added in one place, [`routes`], each with its OpenAPI description, so the
//! router and `/openapi.json` cannot disagree.
//!
//! Handlers read bodies themselves (bounded) so that every refusal — bad JSON, too large,
//! wrong method, unknown path — answers with the same JSON error shape.

pub mod error;
pub mod master;
pub mod openapi;
pub mod reads;
pub mod routes;
pub mod secondary;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use bytes::Bytes;

use crate::node::Node;
pub use error::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<Node>;

/// The router for `node`'s role: the routes of [`routes::role_router`] (each with its
/// OpenAPI description), and one JSON error for unknown paths and methods.
pub fn router(node: AppState) -> Router {
    let (routes, _doc) = routes::role_router(node.is_master()).split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// After refusing a body as too large, how much more of it is read and dropped, and for how
/// long, before answering (see [`read_body`]).
const DRAIN_BYTES: usize = 32 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a body of at most `limit` bytes: 413 above it.
///
/// A body over the limit is not answered at once: the rest of it (up to [`DRAIN_BYTES`], for
/// up to [`DRAIN_TIME`]) is read and dropped first. Closing a socket with unread request
/// bytes makes the kernel reset the connection, and a client still sending its body would
/// then see a broken pipe instead of the 413 (a "lingering close", as nginx does).
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;

    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len = len.saturating_add(data.len());
        if len > limit {
            drain(body).await;
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the {limit}-byte limit"),
            ));
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Reads and drops what is left of a refused body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(mut body: Body) {
    use http_body_util::BodyExt;

    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut left = DRAIN_BYTES;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Some(d) = frame.data_ref() {
            if d.len() >= left {
                return;
            }
            left -= d.len();
        }
    }
}

/// Checks `Authorization: Bearer <cluster_token>` when a token is configured (401 otherwise).
pub fn authorize(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &node.settings.node.cluster_token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "this internal endpoint needs `Authorization: Bearer <cluster_token>`",
        ))
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was
/// right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Parses a JSON object body; 400 with a clear sentence otherwise.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, read_body};
    use axum::body::Body;

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_whole_and_larger_ones_are_413() {
        let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("ab"), Ok("cd")];
        let body = Body::from_stream(futures::stream::iter(chunks));
        assert_eq!(&read_body(body, 4).await.unwrap()[..], b"abcd");
        assert_eq!(&read_body(Body::from("x"), 1).await.unwrap()[..], b"x");
        assert!(read_body(Body::empty(), 0).await.unwrap().is_empty());
        let e = read_body(Body::from("abcde"), 4).await.unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
