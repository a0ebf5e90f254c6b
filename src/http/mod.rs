//! The HTTP API (SPEC §2–3): one router over a shared [`Node`], serving the routes of both
//! roles; each answers as the node's role is at that moment (`crate::node::role`).
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
//! | `GET /` | the live cluster page ([`page`]) | the same |
//! | `GET /events` | server-sent events: health, mode, appends, acks ([`events`]) | its own log end and master |
//!
//! Routes are added in one place, [`routes`], each with its OpenAPI description, so the
//! router and `/openapi.json` cannot disagree. Connections are served by [`Service`], which
//! hands the master's `POST /message` and a secondary's `POST /replicate` to their routes' own
//! handlers directly (no lookup) and everything else to the router.
//!
//! Browsers: every answer to a request with an `Origin` carries
//! `Access-Control-Allow-Origin: *`, and a CORS preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered 204 for `GET` and `POST` with `Content-Type`
//! and `Authorization`: the cluster page served by one node reads and drives the others
//! directly (README, "The cluster page": why not a proxy). replog has no cookies or other ambient credentials, so a
//! page from another origin gains nothing an HTTP client on the same network lacks; the
//! endpoints that need the cluster token still need it. Any other `OPTIONS` is 405, as the
//! document says.
//!
//! Handlers read bodies themselves (bounded) so that every refusal — bad JSON, too large,
//! wrong method, unknown path — answers with the same JSON error shape.

pub mod error;
pub mod events;
pub mod master;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod reads;
pub mod routes;
pub mod secondary;
pub mod server;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::{Extension, Router};
use bytes::Bytes;

use crate::node::Node;
pub use error::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<Node>;

/// The router of `node`: every route of [`routes::router`] (each with its OpenAPI
/// description), and one JSON error for unknown paths and methods. Installs the OpenAPI
/// document `GET /openapi.json` serves. The router's event hub ([`events::Hub`]) is every
/// request's extension.
pub fn router(node: AppState) -> Router {
    openapi::install(routes::document());
    let (routes, _doc) = routes::router().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(events::Hub::new()))
        .with_state(node)
}

/// What every connection is served with: the router, except for the one request each role
/// serves by far the most — `POST /message` on the master, `POST /replicate` on a secondary —
/// which goes straight to the handler its route calls (`routes::append`,
/// `routes::replicate`), without the route lookup and the matched-path and URL-parameter
/// extensions the router adds to every request (~7 % of the master's instructions per append
/// at w=1, callgrind).
#[derive(Clone)]
pub struct Service {
    router: Router,
    node: AppState,
    /// The connection served, given to routed requests as an extension.
    conn: Option<server::Connection>,
}

/// The [`Service`] of `node`.
pub fn service(node: AppState) -> Service {
    Service {
        router: router(node.clone()),
        node,
        conn: None,
    }
}

impl Service {
    /// This service for one connection.
    pub fn with_connection(&self, conn: server::Connection) -> Service {
        Service {
            conn: Some(conn),
            ..self.clone()
        }
    }
}

/// The answer to a CORS preflight (see the module docs).
fn preflight() -> axum::response::Response {
    let mut r = axum::response::Response::new(Body::empty());
    *r.status_mut() = axum::http::StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

/// Marks an answer readable by a page of any origin (see the module docs).
fn allow_any_origin(mut r: axum::response::Response) -> axum::response::Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
    r
}

impl tower_service::Service<axum::http::Request<hyper::body::Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        use futures::FutureExt;
        let cors = req.headers().contains_key(header::ORIGIN);
        if req.method() == Method::POST {
            let node = self.node.clone();
            match (node.is_master(), req.uri().path()) {
                (true, "/message") => {
                    let answer = routes::append(node, Body::new(req.into_body()));
                    return if cors {
                        answer.map(|r| Ok(allow_any_origin(r))).boxed()
                    } else {
                        answer.map(Ok).boxed()
                    };
                }
                (false, "/replicate") => {
                    let (parts, body) = req.into_parts();
                    return routes::replicate(node, parts.headers, Body::new(body))
                        .map(Ok)
                        .boxed();
                }
                _ => {}
            }
        }
        if cors
            && req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return futures::future::ready(Ok(preflight())).boxed();
        }
        if let Some(c) = &self.conn {
            req.extensions_mut().insert(c.clone());
        }
        let answer = tower_service::Service::call(&mut self.router, req);
        if cors {
            answer.map(|r| r.map(allow_any_origin)).boxed()
        } else {
            answer.boxed()
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// After refusing a body as too large, how much more of it is read and dropped, and for how
/// long, before answering (see [`read_body`]).
const DRAIN_BYTES: usize = 32 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a body of at most `limit` bytes: 413 above it; 408 when it has not all arrived
/// within `timeout` (`limits.body_read_timeout_ms`), so a client trickling its body cannot
/// hold a request open for ever.
///
/// A body over the limit is not answered at once: the rest of it (up to `DRAIN_BYTES`, for
/// up to `DRAIN_TIME`) is read and dropped first. Closing a socket with unread request
/// bytes makes the kernel reset the connection, and a client still sending its body would
/// then see a broken pipe instead of the 413 (a "lingering close", as nginx does).
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;

    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} ms (limits.body_read_timeout_ms)",
                        timeout.as_millis()
                    ),
                )
                .with_header(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                ));
            }
        };
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
///
/// The header is compared as bytes (a value that is not visible ASCII is simply wrong, never
/// an error of its own), the scheme name case-insensitively (RFC 9110 §11.1).
pub fn authorize(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &node.settings.node.cluster_token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..]))
        .unwrap_or(b"");
    if constant_time_eq(given, token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "this internal endpoint needs `Authorization: Bearer <cluster_token>`",
        )
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"replog\""),
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

/// Largest integer a request may carry (the OpenAPI document says `int64`).
pub const MAX_INT: u64 = i64::MAX as u64;

/// A JSON number that is a whole number from 0 to [`MAX_INT`]. As in JSON Schema, `3.0` is
/// the integer 3 (some clients write every number as a float).
pub fn json_uint(v: &serde_json::Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return (u <= MAX_INT).then_some(u);
    }
    let f = n.as_f64()?;
    // Beyond 2^53 a float no longer says which integer it is.
    (f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0).then_some(f as u64)
}

/// A query parameter that must be a whole number from 0 to [`MAX_INT`].
pub fn query_uint(name: &str, v: &str) -> Result<u64, ApiError> {
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= MAX_INT)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter `{name}` must be an integer from 0 to {MAX_INT}, got {v:?}"
            ))
        })
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
    use futures::StreamExt;

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_whole_and_larger_ones_are_413() {
        let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("ab"), Ok("cd")];
        let body = Body::from_stream(futures::stream::iter(chunks));
        assert_eq!(&read_body(body, 4, T).await.unwrap()[..], b"abcd");
        assert_eq!(&read_body(Body::from("x"), 1, T).await.unwrap()[..], b"x");
        assert!(read_body(Body::empty(), 0, T).await.unwrap().is_empty());
        let e = read_body(Body::from("abcde"), 4, T).await.unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    const T: std::time::Duration = std::time::Duration::from_secs(5);

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_408() {
        let first: Result<&'static str, std::io::Error> = Ok("ab");
        let stalled = futures::stream::iter([first]).chain(futures::stream::pending());
        let short = std::time::Duration::from_millis(50);
        let e = read_body(Body::from_stream(stalled), 100, short)
            .await
            .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::REQUEST_TIMEOUT);
    }

    #[test]
    fn integers_as_json_schema_sees_them() {
        use super::json_uint;
        use serde_json::json;
        assert_eq!(json_uint(&json!(3)), Some(3));
        assert_eq!(json_uint(&json!(3.0)), Some(3));
        assert_eq!(json_uint(&json!(3.5)), None);
        assert_eq!(json_uint(&json!(-1)), None);
        assert_eq!(json_uint(&json!(-1.0)), None);
        assert_eq!(json_uint(&json!(u64::MAX)), None);
        assert_eq!(json_uint(&json!(1e300)), None);
        assert_eq!(json_uint(&json!("3")), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
