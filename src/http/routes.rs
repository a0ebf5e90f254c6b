//! The route table of both roles: every endpoint as a thin wrapper around its handler that
//! carries the endpoint's OpenAPI description (`#[utoipa::path]`, see `super::openapi`) and,
//! for appends and replication requests, its metrics hook (see `crate::metrics`).
//!
//! Role: [`role_router`] is the only place routes are added, always through
//! `utoipa_axum::routes!`, so the router and the document are built from the same list;
//! [`router`] serves every route, since a node's role can change at run time. Every wrapper
//! dispatches on the node's role at the moment: `POST /message`, `PUT /message` and
//! `POST /replicate` inside one wrapper each (one description says what each role answers),
//! and the routes only a secondary serves answer a master as if they were not there.
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

/// Every route of both roles, with their OpenAPI description: what a node serves, whatever
/// its role at the moment (a route only a secondary serves answers a master as it would
/// without the route: 404 or 405). A secondary's routes are all of them.
pub fn router() -> OpenApiRouter<AppState> {
    role_router(false)
}

/// The routes a master (`master`) or a secondary serves, with their OpenAPI description:
/// what the document says of each role (`x-replog-roles`), checked against it in the tests.
pub fn role_router(master: bool) -> OpenApiRouter<AppState> {
    let common = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_messages))
        .routes(routes!(health))
        .routes(routes!(heartbeat))
        .routes(routes!(metrics))
        .routes(routes!(openapi_document))
        .routes(routes!(cluster_page))
        .routes(routes!(events))
        .routes(routes!(post_message, put_message))
        .routes(routes!(post_vote));
    if master {
        common.routes(routes!(post_replicate))
    } else {
        common
            .routes(routes!(post_replicate, get_replicate))
            .routes(routes!(post_delay))
            .routes(routes!(get_fault, post_fault))
    }
}

/// The OpenAPI document of both roles, from the same route definitions as their routers.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = role_router(false).into_openapi();
    doc.merge(role_router(true).into_openapi());
    doc
}

/// A test endpoint of secondaries, asked of a master: as if it had no such route.
fn secondary_only(method: &str, path: &str) -> Response {
    ApiError::not_found(format!("no such endpoint: {method} {path}")).into_response()
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
    super::metrics::get_metrics(state).await
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

/// The live cluster page (HTML; SPEC §12).
///
/// One self-contained page: every node's status, acked key and lag, the mode, message feeds,
/// an append form and, with fault injection on, the test endpoints; live from `GET /events`.
#[utoipa::path(
    get, path = "/", tag = "page",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn cluster_page() -> Response {
    super::page::page().await
}

/// The node's state as server-sent events (SPEC §12).
///
/// First the current state (`node`, `master`, `election` with failover, `mode` on a master,
/// `appended`, one `health` per secondary, `rates`), then one event per change: `health`,
/// `mode`, `appended` (coalesced), `acked` and `progress` (≤ 10/s per secondary), `master`,
/// `election`, `node`. Each event's `data` is one JSON object and its `id` increases. A
/// listener that does not keep up is disconnected; it reconnects and gets the state first.
#[utoipa::path(
    get, path = "/events", tag = "page",
    responses((status = 200, description = "An endless `text/event-stream`", body = String, content_type = "text/event-stream")),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn events(State(node): State<AppState>, req: axum::extract::Request) -> Response {
    super::events::events(node, req).await
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
/// Binary body (layout in `src/protocol.rs`); headers `x-replog-log-id` (the master's log
/// identity), `x-replog-epoch` and `x-replog-epochs` (the master's epoch and epoch history,
/// `epoch:first_key,…`; see `docs/log-matching.md`). Before storing, the secondary reconciles
/// with that history: it cuts the keys it holds that the history labels differently, and takes
/// the history. Answered 2xx only after the entries are written. On the master: 405.
#[utoipa::path(
    post, path = "/replicate", tag = "internal",
    request_body(content = BatchBytes, content_type = "application/octet-stream",
        description = "version u8 = 1, count u32, then count × (key u64, id_len u16, value_len u32, id, value); little-endian"),
    params(
        ("x-replog-log-id" = String, Header, pattern = "^[0-9a-f]{32}$", description = "The master's log identity (32 hex digits)"),
        ("x-replog-epoch" = u64, Header, description = "The master's epoch"),
        ("x-replog-epochs" = String, Header, pattern = "^([0-9]{1,19}:[0-9]{1,19}(,[0-9]{1,19}:[0-9]{1,19})*)?$",
            description = "The master's epoch history: `epoch:first_key` pairs, both strictly increasing, no epoch above x-replog-epoch"),
    ),
    responses(
        (status = 200, description = "Stored", body = BatchAck),
        (status = 400, description = "Malformed batch, or a missing or malformed log identity, epoch or epoch history", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 405, description = "On the master", body = ErrorBody),
        (status = 409, description = "Another log identity, an epoch older than one this node accepted, or a key holding another message; nothing stored", body = ErrorBody),
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
        (status = 200, description = "Entries in the POST /replicate layout, with headers `x-replog-epoch` and `x-replog-epochs` (this node's epoch history, which labels them)", body = BatchBytes,
            content_type = "application/octet-stream"),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 503, description = "The node's epoch history changed while reading; retry", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["secondary"]))),
)]
async fn get_replicate(state: State<AppState>, headers: HeaderMap, query: QueryMap) -> Response {
    if state.is_master() {
        return super::method_not_allowed(
            axum::http::Method::GET,
            "/replicate".parse().unwrap_or_default(),
        )
        .await
        .into_response();
    }
    secondary::read_batch(state, headers, query)
        .await
        .into_response()
}

/// Ask this member for its vote (failover, internal; `docs/failover.md`).
///
/// A pre-vote (`pre_vote`) records nothing; a vote is granted at most once per epoch, only for
/// a candidate whose log is at least as complete as this member's and only while this member
/// hears from no master — on disk before the answer. With failover off: 404.
#[utoipa::path(
    post, path = "/vote", tag = "internal",
    request_body = crate::protocol::VoteBody,
    responses(
        (status = 200, description = "The member's answer", body = crate::protocol::VoteReply),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 401, description = "`cluster_token` set and not given", body = ErrorBody),
        (status = 404, description = "Failover is off", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `limits.body_read_timeout_ms`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The node is shutting down or cannot record its vote", body = ErrorBody),
    ),
    security((), ("cluster_token" = [])),
    extensions(("x-replog-roles" = json!(["master", "secondary"]))),
)]
async fn post_vote(State(node): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    super::reads::vote(node, headers, body)
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
    if state.is_master() {
        return secondary_only("POST", "/delay");
    }
    secondary::delay(state, headers, body).await.into_response()
}

/// The injected-error probability (test). With failover on, every node answers: a secondary
/// that took office keeps its setting for when it stores replication requests again, and a
/// burst set before the election can still be seen and ended.
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
    if state.is_master() && state.failover.is_none() {
        return secondary_only("GET", "/fault");
    }
    secondary::get_fault(state, headers).await.into_response()
}

/// Change the injected-error probability at run time (test). With failover on, on every node
/// (see `GET /fault`).
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
    if state.is_master() && state.failover.is_none() {
        return secondary_only("POST", "/fault");
    }
    secondary::set_fault(state, headers, body)
        .await
        .into_response()
}
