//! Endpoints every node serves: `GET /messages`, `GET /health`, `GET /heartbeat`.
//!
//! `GET /messages` serves only the visible log (a secondary's contiguous prefix), from a
//! snapshot of its end taken when the request starts, so an answer is a consistent prefix even
//! while appends continue. A long answer is streamed in chunks read from the store one at a
//! time: memory does not grow with the size of the answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::master::replication::task::snapshot;
use crate::protocol::{Heartbeat, MasterHealth, NodeHealth, SecondaryHealth};

/// Entries read from the store per chunk of a `GET /messages` answer.
const CHUNK_ENTRIES: usize = 1024;
/// Value bytes read per chunk.
const CHUNK_BYTES: usize = 1 << 20;
/// Longest long poll.
const MAX_WAIT_MS: u64 = 600_000;

#[derive(Serialize)]
struct MessageRef<'a> {
    key: u64,
    value: &'a str,
}

struct ReadQuery {
    from: u64,
    limit: Option<u64>,
    wait: Option<Duration>,
}

fn parse_query(q: &HashMap<String, String>) -> Result<ReadQuery, ApiError> {
    let num = |name: &str| -> Result<Option<u64>, ApiError> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => super::query_uint(name, v).map(Some),
        }
    };
    let from = num("from")?.unwrap_or(1);
    if from == 0 {
        return Err(ApiError::bad_request(
            "query parameter `from` must be ≥ 1 (keys start at 1)",
        ));
    }
    let limit = num("limit")?;
    let wait_ms = num("wait_ms")?;
    if let Some(w) = wait_ms
        && w > MAX_WAIT_MS
    {
        return Err(ApiError::bad_request(format!(
            "query parameter `wait_ms` must be at most {MAX_WAIT_MS}, got {w}"
        )));
    }
    Ok(ReadQuery {
        from,
        limit,
        wait: wait_ms.map(Duration::from_millis),
    })
}

/// `GET /messages?from=&limit=&wait_ms=`.
pub async fn get_messages(
    State(node): State<AppState>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let q = parse_query(&q)?;

    let mut contiguous = node.contiguous.clone();
    if let Some(wait) = q.wait
        && *contiguous.borrow() < q.from
        && q.limit != Some(0)
    {
        let from = q.from;
        // Either the key arrives or the wait ends; both answer with what is there.
        let _ = tokio::time::timeout(wait, contiguous.wait_for(|k| *k >= from)).await;
    }
    let end = node.acknowledged_key();
    let last = match q.limit {
        Some(0) => q.from - 1,
        Some(l) => end.min(q.from.saturating_add(l - 1)),
        None => end,
    };

    let first = if q.from <= last {
        read_chunk(&node, q.from, last)?
    } else {
        Vec::new()
    };
    let mut buf = Vec::with_capacity(64 + first.len() * 32);
    buf.push(b'[');
    let next = write_entries(&mut buf, &first, true);
    let done = next.is_none_or(|k| k > last);
    if done {
        buf.push(b']');
        return Ok(json_response(Body::from(buf)));
    }

    // A long answer: stream it, one chunk read from the store at a time.
    let start = next.unwrap_or(last + 1);
    let stream = futures::stream::unfold(
        (Some(Bytes::from(buf)), start, false),
        move |(head, next, finished)| {
            let node = node.clone();
            async move {
                if let Some(h) = head {
                    return Some((Ok::<Bytes, std::io::Error>(h), (None, next, finished)));
                }
                if finished {
                    return None;
                }
                if next > last {
                    return Some((Ok(Bytes::from_static(b"]")), (None, next, true)));
                }
                let entries = match read_chunk(&node, next, last) {
                    Ok(e) if !e.is_empty() => e,
                    Ok(_) => return Some((Ok(Bytes::from_static(b"]")), (None, next, true))),
                    Err(e) => {
                        return Some((Err(std::io::Error::other(e.message)), (None, next, true)));
                    }
                };
                let mut out = Vec::with_capacity(entries.len() * 32);
                let after = write_entries(&mut out, &entries, false).unwrap_or(last + 1);
                Some((Ok(Bytes::from(out)), (None, after, false)))
            }
        },
    );
    Ok(json_response(Body::from_stream(stream)))
}

fn read_chunk(
    node: &AppState,
    from: u64,
    last: u64,
) -> Result<Vec<crate::domain::Entry>, ApiError> {
    let want = ((last - from + 1) as usize).min(CHUNK_ENTRIES);
    node.store
        .read(from, want, CHUNK_BYTES)
        .map_err(|e| ApiError::internal(format!("reading the log failed: {e}")))
}

/// Appends entries as JSON objects (comma-separated, a leading comma unless `first`); returns
/// the key after the last one written.
fn write_entries(buf: &mut Vec<u8>, entries: &[crate::domain::Entry], first: bool) -> Option<u64> {
    let mut next = None;
    for (i, e) in entries.iter().enumerate() {
        if !(first && i == 0) {
            buf.push(b',');
        }
        let value = e.value_str();
        // Serialising a struct of a u64 and a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(
            &mut *buf,
            &MessageRef {
                key: e.key,
                value: &value,
            },
        );
        next = Some(e.key + 1);
    }
    next
}

fn json_response(body: Body) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `GET /health`.
pub async fn health(State(node): State<AppState>) -> Response {
    let log_id = node.store.log_id().map(|i| i.to_string());
    match &node.master() {
        Some(m) => {
            let last_key = node.acknowledged_key();
            let now = Instant::now();
            let nodes = m
                .replicas
                .iter()
                .map(|r| {
                    let h = r.health.borrow().clone();
                    let p = snapshot(r);
                    NodeHealth {
                        name: r.name.clone(),
                        url: r.url.clone(),
                        status: h.status.as_str().to_string(),
                        acked_key: p.acked_key,
                        lag: last_key.saturating_sub(p.acked_key),
                        consecutive_failures: h.failures,
                        inflight: p.inflight,
                        retry_in_ms: p
                            .retry_at
                            .map(|t| t.saturating_duration_since(now).as_millis() as u64),
                        error: p.error.or(h.error),
                        cut_entries: h.cut_entries,
                    }
                })
                .collect();
            axum::Json(MasterHealth {
                role: "master".into(),
                name: node.name().to_string(),
                mode: if m.quorum.is_read_only()
                    || m.recovering.load(std::sync::atomic::Ordering::Acquire)
                    || !m.in_office.load(std::sync::atomic::Ordering::Acquire)
                    || !node.lease_holds(m)
                {
                    "read-only".into()
                } else {
                    "read-write".into()
                },
                quorum: m.quorum.quorum(),
                available: m.quorum.available(),
                last_key,
                log_id: m.log_id.to_string(),
                epoch: node.writer.current_epochs().current,
                epochs: node.writer.current_epochs().history.pairs().to_vec(),
                recovery: m.recovery_note.lock().clone(),
                master: node.failover.as_ref().and_then(|f| f.master_ref()),
                nodes,
            })
            .into_response()
        }
        None => {
            // One snapshot: the published held-aside count first, the contiguous key second
            // (see `Writer::held_aside`), so a message this node acknowledged shows in one of
            // them.
            let epochs = node.writer.current_epochs();
            let held_aside = node.writer.held_aside();
            let contiguous_key = node.acknowledged_key();
            axum::Json(SecondaryHealth {
                role: "secondary".into(),
                name: node.name().to_string(),
                contiguous_key,
                held_aside,
                log_id,
                master: match &node.failover {
                    Some(f) => f.master_ref().map(crate::protocol::KnownMaster::Node),
                    None => node
                        .known_master
                        .lock()
                        .clone()
                        .map(crate::protocol::KnownMaster::Url),
                },
                epoch: epochs.current,
                epochs: epochs.history.pairs().to_vec(),
                cuts: node
                    .store
                    .cuts()
                    .into_iter()
                    .map(|c| crate::protocol::CutInfo {
                        from_key: c.from_key,
                        entries: c.entries,
                    })
                    .collect(),
            })
            .into_response()
        }
    }
}

/// `GET /heartbeat`: cheap, no lock held across I/O.
pub async fn heartbeat(State(node): State<AppState>, headers: HeaderMap) -> Response {
    // A master learns only from another master's heartbeat, and only with failover (a higher
    // epoch deposes it).
    if !node.is_master() || node.failover.is_some() {
        super::secondary::learn_master(&node, &headers);
    }
    // The history first, the contiguous key second: a cut moves the key back before the
    // history changes, so the master never pairs a new history with keys already cut.
    let epochs = node.writer.current_epochs();
    axum::Json(Heartbeat {
        epoch: epochs.current,
        epochs: epochs.history.pairs().to_vec(),
        cut_entries: node.store.cuts().iter().map(|c| c.entries).sum(),
        unlabelled_from: epochs.vouched_below(),
        status: "ok".into(),
        role: if node.is_master() {
            "master".into()
        } else {
            "secondary".into()
        },
        name: node.name().to_string(),
        instance: node.instance.clone(),
        contiguous_key: node.acknowledged_key(),
        log_id: node.store.log_id().map(|i| i.to_string()),
    })
    .into_response()
}

/// `POST /vote` (failover): see `crate::node::failover`.
pub async fn vote(
    node: AppState,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, super::ApiError> {
    if node.failover.is_none() {
        return Err(super::ApiError::not_found(
            "failover is off on this node (failover.enabled = false): it takes part in no election",
        ));
    }
    super::authorize(&node, &headers)?;
    let body = super::read_body(body, 64 * 1024, node.settings.limits.body_read_timeout()).await?;
    let request: crate::protocol::VoteBody = serde_json::from_slice(&body)
        .map_err(|e| super::ApiError::bad_request(format!("a vote request is {{\"epoch\", \"candidate\", \"last_epoch\", \"last_key\", \"pre_vote\"}}: {e}")))?;
    if request.candidate.is_empty() || request.candidate.len() > 64 {
        return Err(super::ApiError::bad_request(
            "`candidate` must be a member name of 1 to 64 bytes",
        ));
    }
    match node.answer_vote(request).await {
        Ok(reply) => Ok(axum::Json(reply).into_response()),
        Err(e) => Err(super::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("this member cannot answer a vote now: {e}"),
        )),
    }
}
