//! The route table of both roles: every endpoint as a thin wrapper around its handler that
//! carries the endpoint's OpenAPI description (`#[utoipa::path]`, see `super::openapi`) and,
//! for appends and replication requests, its metrics hook (see `crate::metrics`).
//!
//! Role: [`role_router`] is the only place routes are added, always through
//! `utoipa_axum::routes!`, so the router and the document are built from the same list.
//! Endpoints both roles route but only one serves (`POST /message`, `PUT /message`,
//! `POST /replicate`) dispatch on the node's role inside one wrapper, so each (method, path)
//! has one description that says what each role answers.
//!
//! Invariant: a wrapper adds nothing to its handler's behaviour but its metric record: the
//! handlers in `master`, `secondary` and `reads` stay the single source of what is answered.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::*;
use super::{ApiError, AppState, master, reads, secondary};
use crate::protocol::{BatchAck, Heartbeat, Message};

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The routes of a master (`master`) or of a secondary, with their OpenAPI description.
pub fn role_router(master: bool) -> OpenApiRouter<AppState> {
    let common = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_messages))
        .routes(routes!(health))
        .routes(routes!(heartbeat))
        .routes(routes!(metrics))
        .routes(routes!(openapi_document))
        .routes(routes!(post_message, put_message));
    if master {
        common.routes(routes!(post_replicate))
    } else {
        common
            .routes(routes!(post_replicate, get_replicate))
            .routes(routes!(post_delay))
            .routes(routes!(get_fault, post_fault))
    }
}

fn status_of(r: &Result<Response, ApiError>) -> axum::http::StatusCode {
    match r {
        Ok(resp) => resp.status(),
        Err(e) => e.status,
    }
}

/// Read messages in key order.
///
/// A secondary shows only its contiguous prefix (holding keys 1, 2 and 4 it shows 1 and 2
/// until 3 arrives). Large answers are streamed. With `wait_ms`, when nothing at or after
/// `from` is there yet, the request waits for it (a tail; read-your-write on a secondary with
/// `from=<your key>`), then answers with what is there (possibly `[]`).
#[utoipa::path(
    get, path = "/messages", tag = "public",
    params(MessagesQuery),
    responses(
        (status = 200, description = "The messages, in key order", body = [Message]),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
    ),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn get_messages(state: State<AppState>, query: QueryMap) -> Result<Response, ApiError> {
    reads::get_messages(state, query).await
}

/// The node's health: the master's mode, quorum and each secondary's status and lag; a
/// secondary's contiguous key.
#[utoipa::path(
    get, path = "/health", tag = "public",
    responses(
        (status = 200, description = "Master: MasterHealth; secondary: SecondaryHealth", body = HealthAnswer),
    ),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn health(state: State<AppState>) -> Response {
    reads::health(state).await
}

/// A cheap liveness answer; the master heartbeats every secondary with it.
#[utoipa::path(
    get, path = "/heartbeat", tag = "public",
    responses((status = 200, description = "Alive", body = Heartbeat)),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn heartbeat(state: State<AppState>, headers: HeaderMap) -> Response {
    reads::heartbeat(state, headers).await
}

/// The node's metrics in the Prometheus text format (version 0.0.4).
///
/// Master: appends and their latency by write concern, refused appends, replication lag per
/// secondary (messages and seconds), in-flight batches, retries, heartbeat status, read-only
/// flag, quorum, log size, idempotency index. Secondary: contiguous key, held-aside entries,
/// replication requests received, log size.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String,
        content_type = "text/plain; version=0.0.4")),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn metrics(state: State<AppState>) -> Response {
    crate::metrics::get_metrics(state).await
}

/// This document: the OpenAPI 3.1 description of every endpoint of both roles.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn openapi_document() -> Response {
    openapi_json().await
}

/// Append a message (master).
///
/// Blocks until `write_concern` nodes hold the message (other requests are never blocked by
/// it). A retry with an `id` already in the log appends nothing and answers 200 with the
/// original key, after waiting for its own write concern. A `timeout_ms` that runs out answers
/// 504: the message is appended and keeps replicating. On a secondary: 421 naming the master.
#[utoipa::path(
    post, path = "/message", tag = "public",
    request_body = AppendBody,
    responses(
        (status = 201, description = "Appended; `write_concern` nodes hold it", body = AppendAnswer),
        (status = 200, description = "Duplicate `id`: nothing appended; the original key (`duplicate: true`)", body = AppendAnswer),
        (status = 400, description = "Not a JSON object, `value` missing or not a string, `write_concern` outside 1..=ALL, bad `id` or `timeout_ms`", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `limits.body_read_timeout_ms`", body = ErrorBody),
        (status = 413, description = "`value` over `limits.max_message_bytes`", body = ErrorBody),
        (status = 421, description = "Sent to a secondary: the body names the master (`master`)", body = ErrorBody),
        (status = 503, description = "Read-only (no quorum; `available`, `quorum`) or recovering after a restart; nothing appended", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, description = "`timeout_ms` ran out: appended under `key`, held by `acks` nodes, still replicating", body = TimeoutAnswer),
    ),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn post_message(State(node): State<AppState>, body: Body) -> Response {
    if !node.is_master() {
        return secondary::post_on_secondary(State(node))
            .await
            .into_response();
    }
    append(node, body).await
}

/// An append on the master with its metrics: the route above, and the direct path of
/// `super::Service` for the hottest request.
pub async fn append(node: AppState, body: Body) -> Response {
    let started = Instant::now();
    let r = master::post_message(State(node.clone()), body).await;
    let (status, w) = match &r {
        Ok((resp, w)) => (resp.status(), Some(*w)),
        Err(e) => (
            e.status,
            e.extra
                .get("write_concern")
                .and_then(|w| w.as_u64())
                .and_then(|w| u16::try_from(w).ok()),
        ),
    };
    node.metrics.observe_append(status, w, started);
    match r {
        Ok((resp, _)) => resp,
        Err(e) => e.into_response(),
    }
}

/// Store one message under its key (secondary, internal).
///
/// Idempotent: the same key with the same content again is a no-op (200); another content is
/// 409 and changes nothing. On the master: 405 (keys are assigned there, append with POST).
#[utoipa::path(
    put, path = "/message", tag = "internal",
    request_body = PutBody,
    responses(
        (status = 201, description = "Stored", body = PutAnswer),
        (status = 200, description = "Already held with the same content", body = PutAnswer),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 405, description = "On the master", body = ErrorBody),
        (status = 409, description = "The key holds another message; nothing changed", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `limits.body_read_timeout_ms`", body = ErrorBody),
        (status = 413, description = "Value too large", body = ErrorBody),
        (status = 500, description = "Injected fault (`fault.error_rate`): stored, then answered 500", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn put_message(State(node): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if node.is_master() {
        return master::put_on_master().await.into_response();
    }
    let r = secondary::put_message(State(node.clone()), headers, body).await;
    node.metrics
        .observe_replication_request("put_message", status_of(&r));
    r.into_response()
}

/// Store a batch of replicated entries (secondary, internal; the master's replication path).
///
/// Binary body (layout in `src/protocol.rs`), header `x-replog-log-id` with the master's log
/// identity. Answered 2xx only after the entries are written. On the master: 405.
#[utoipa::path(
    post, path = "/replicate", tag = "internal",
    request_body(content = BatchBytes, content_type = "application/octet-stream",
        description = "version u8 = 1, count u32, then count × (key u64, id_len u16, value_len u32, id, value); little-endian"),
    params(("x-replog-log-id" = String, Header, pattern = "^[0-9a-f]{32}$", description = "The master's log identity (32 hex digits)")),
    responses(
        (status = 200, description = "Stored", body = BatchAck),
        (status = 400, description = "Malformed batch or missing log identity", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 405, description = "On the master", body = ErrorBody),
        (status = 409, description = "Another log identity, or a key holding another message; nothing changed", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `limits.body_read_timeout_ms`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 500, description = "Injected fault: stored, then answered 500", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn post_replicate(State(node): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if node.is_master() {
        return master::replicate_on_master().await.into_response();
    }
    replicate(node, headers, body).await
}

/// A replication batch on a secondary with its metrics: the route above, and the direct path
/// of `super::Service`.
pub async fn replicate(node: AppState, headers: HeaderMap, body: Body) -> Response {
    let r = secondary::replicate(State(node.clone()), headers, body).await;
    node.metrics
        .observe_replication_request("replicate", status_of(&r));
    r.into_response()
}

/// Read visible entries as a binary batch (secondary, internal): how a master that lost the
/// tail of its log reads it back.
#[utoipa::path(
    get, path = "/replicate", tag = "internal",
    params(BatchQuery),
    responses(
        (status = 200, description = "Entries in the POST /replicate layout", body = BatchBytes,
            content_type = "application/octet-stream"),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["secondary"]))),
)]
async fn get_replicate(state: State<AppState>, headers: HeaderMap, query: QueryMap) -> Response {
    secondary::read_batch(state, headers, query)
        .await
        .into_response()
}

/// Delay the next replication request this secondary receives (test; one-shot).
#[utoipa::path(
    post, path = "/delay", tag = "test",
    request_body = DelayBody,
    responses(
        (status = 200, description = "Armed", body = DelayAnswer),
        (status = 400, description = "Negative or non-numeric seconds", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `limits.body_read_timeout_ms`", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 404, description = "`fault.enabled` is false", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["secondary"]))),
)]
async fn post_delay(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
    secondary::delay(state, headers, body).await.into_response()
}

/// The injected-error probability (test).
#[utoipa::path(
    get, path = "/fault", tag = "test",
    responses(
        (status = 200, description = "Current settings", body = FaultAnswer),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 404, description = "`fault.enabled` is false", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["secondary"]))),
)]
async fn get_fault(state: State<AppState>, headers: HeaderMap) -> Response {
    secondary::get_fault(state, headers).await.into_response()
}

/// Change the injected-error probability at run time (test).
#[utoipa::path(
    post, path = "/fault", tag = "test",
    request_body = FaultBody,
    responses(
        (status = 200, description = "Changed", body = FaultAnswer),
        (status = 400, description = "Not a probability", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `limits.body_read_timeout_ms`", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 404, description = "`fault.enabled` is false", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["secondary"]))),
)]
async fn post_fault(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
    secondary::set_fault(state, headers, body)
        .await
        .into_response()
}
