//! A secondary's endpoints: the internal ones the master replicates through (`POST
//! /replicate`, binary batches; `PUT /message`, one message, kept for scripts), the test
//! ones (`POST /delay`, `/fault`), and the refusal of appends (`POST /message` → 421 naming
//! the master).
//!
//! Storing is idempotent by key: the same key with the same content again is a no-op, another
//! content is 409 and changes nothing. A replication request is answered 2xx only after its
//! entries are written (see `crate::storage::writer`), so a 2xx is an honest ack. An armed `/delay` is
//! taken by exactly one replication request, before it is stored.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{ApiError, AppState, authorize, json_object, read_body};
use std::sync::Arc;

use crate::domain::epoch::FromMaster;
use crate::domain::epoch::History;
use crate::domain::{Entry, LogId, MAX_ID_BYTES};
use crate::protocol::{self, BatchAck};
use crate::storage::StoreError;
use crate::storage::writer::WriteError;

/// Longest `/delay` accepted, in seconds (a day).
const MAX_DELAY_S: f64 = 86_400.0;

/// `POST /message` on a secondary: appends go to the master.
pub async fn post_on_secondary(State(node): State<AppState>) -> ApiError {
    let master = node.known_master.lock().clone();
    let message = match &master {
        Some(url) => format!(
            "this node ({}) is a secondary and does not take appends; send POST /message to the master at {url}",
            node.name()
        ),
        // With failover no master is known while an election runs (or before this node
        // hears from the one elected): that passes; without it the address can be configured.
        None if node.failover.is_some() => format!(
            "this node ({}) is not the master and knows of none in office now (an election may be running): try again in a moment, or another member",
            node.name()
        ),
        None => format!(
            "this node ({}) is a secondary and does not take appends; send POST /message to the master (its address is not known here yet: set secondary.master_url)",
            node.name()
        ),
    };
    ApiError::new(StatusCode::MISDIRECTED_REQUEST, message)
        .with("role", "secondary")
        .with("master", master.map_or(Value::Null, Value::String))
        // Clients follow a 421 only within a failover cluster, where "the master" moves by
        // itself; without failover an append sent to a secondary stays an error, as it always
        // was, so a script that names the wrong node hears about it.
        .with("failover", Value::Bool(node.failover.is_some()))
}

/// Remembers the master's URL from its request headers (unless configured).
///
/// With a cluster token, only a request carrying it teaches the address: `GET /heartbeat`
/// is public, and anyone could otherwise make this node point clients at another "master".
pub(crate) fn learn_master(node: &AppState, headers: &HeaderMap) {
    if authorize(node, headers).is_err() {
        return;
    }
    if let Some(f) = &node.failover {
        heard_from_master(node, f, headers);
        return;
    }
    if node.settings.secondary.master_url.is_some() {
        return;
    }
    if let Some(url) = headers
        .get(protocol::MASTER_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let mut known = node.known_master.lock();
        if known.as_deref() != Some(url) && url.len() <= 2048 {
            *known = Some(url.to_string());
        }
    }
}

/// Failover: a request of a master (heartbeat or replication) naming its epoch — word from the
/// master of this node's epoch starts the election timer again and names the master; a
/// higher epoch is taken (a master that sees one steps down); a lower one is ignored (the
/// answer carries this node's epoch, which tells that master).
fn heard_from_master(node: &AppState, f: &crate::node::failover::Failover, headers: &HeaderMap) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(epoch), Some(name), Some(url)) = (
        get(protocol::EPOCH_HEADER).and_then(|e| e.parse::<u64>().ok()),
        get(protocol::MASTER_NAME_HEADER),
        get(protocol::MASTER_HEADER),
    ) else {
        return;
    };
    if name.len() > 64 || url.len() > 2048 {
        return;
    }
    let own = node.writer.current_epochs().current;
    if let Some(m) = node.master() {
        // Another master: the one of the higher epoch stays.
        m.signals.saw_epoch(epoch);
        return;
    }
    // The master's election timeout, if it sent one (its heartbeats do).
    let timeout = get(protocol::ELECTION_TIMEOUT_HEADER)
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_millis);
    if let Some(theirs) = get(protocol::MEMBERS_HEADER) {
        f.check_members(theirs, name);
    }
    if f.heard(own, epoch, name, url, timeout) {
        *node.known_master.lock() = Some(url.to_string());
        if epoch > own {
            let writer = node.writer.clone();
            tokio::spawn(async move {
                let _ = writer.raise_epoch(epoch).await;
            });
        }
    }
}

/// Takes the armed one-shot delay, if any, and waits it out.
async fn maybe_delay(node: &AppState, what: &str) {
    if let Some(d) = node.faults.take_delay() {
        tracing::info!(
            delay_s = d.as_secs_f64(),
            "delaying {what} by {d:?} (POST /delay)"
        );
        tokio::time::sleep(d).await;
    }
}

fn store_error(e: WriteError) -> ApiError {
    match e {
        WriteError::Store(StoreError::Conflict { key }) => ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "key {key} already holds a different message; stored messages are never overwritten"
            ),
        )
        .with("key", key),
        WriteError::Store(StoreError::ZeroKey) => {
            ApiError::bad_request("key 0 is not a valid key; keys start at 1")
        }
        WriteError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        WriteError::StaleEpoch { have, got } => ApiError::new(StatusCode::CONFLICT, e.to_string())
            .with("epoch", have)
            .with("master_epoch", got),
        WriteError::IsMaster { epoch, got } => ApiError::new(StatusCode::CONFLICT, e.to_string())
            .with("epoch", epoch)
            .with("master_epoch", got),
        WriteError::StaleHistory { epoch, from_key } => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
                .with("master_epoch", epoch)
                .with("key", from_key)
        }
        other => ApiError::internal(format!("could not store: {other}")),
    }
}

fn injected_error(node: &AppState) -> Option<ApiError> {
    node.faults.inject_error().then(|| {
        tracing::info!("fault injection: stored the request, answering 500");
        ApiError::internal("injected fault: the request was stored, but this answer says it failed (fault.error_rate)")
            .with("injected", true)
    })
}

/// `POST /replicate`: a binary batch from the master (layout in `crate::protocol`).
pub async fn replicate(
    State(node): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let max_value = node.settings.limits.max_message_bytes;
    let limit = node
        .settings
        .replication
        .max_batch_bytes
        .max(max_value)
        .saturating_mul(2)
        .saturating_add(16 << 20);
    let body = read_body(body, limit, node.settings.limits.body_read_timeout()).await?;
    let entries = protocol::decode_batch(body, max_value)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;

    let log_id: LogId = headers
        .get(protocol::LOG_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "replication requests carry the master's log identity in {}",
                protocol::LOG_ID_HEADER
            ))
        })?
        .parse()
        .map_err(ApiError::bad_request)?;
    match node.store.log_id() {
        Some(have) if have != log_id => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "log identity mismatch: this node holds log {have}, the master sent log {log_id}; logs are never mixed (wipe this node's data_dir to join the new log)"
                ),
            )
            .with("log_id", have.to_string())
            .with("master_log_id", log_id.to_string()));
        }
        Some(_) => {}
        None => {
            node.store
                .set_log_id(log_id)
                .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
            tracing::info!(log_id = %log_id, "bound to log {log_id}");
        }
    }
    let from = master_epochs(&node, &headers)?;
    learn_master(&node, &headers);

    maybe_delay(&node, "replication request").await;
    let (lo, hi, count) = (
        entries.first().map_or(0, |e| e.key),
        entries.last().map_or(0, |e| e.key),
        entries.len(),
    );
    let stored = node
        .writer
        .store_sent(entries, Some(from))
        .await
        .map_err(store_error)?;
    // What it vouches for first, the contiguous key second (as `reads::heartbeat` does).
    let unlabelled_from = node.writer.current_epochs().vouched_below();
    let contiguous_key = node.acknowledged_key();
    if node.event_lines.admit().log("replication requests stored") {
        tracing::info!(
            from = lo,
            to = hi,
            count,
            stored,
            contiguous_key,
            "replicated keys {lo}..={hi} stored ({stored} new), contiguous key {contiguous_key}"
        );
    }
    if let Some(e) = injected_error(&node) {
        return Err(e);
    }
    Ok(axum::Json(BatchAck {
        contiguous_key,
        instance: node.instance.clone(),
        stored,
        unlabelled_from,
    })
    .into_response())
}

/// The master's epoch and history from a replication request's headers (see
/// `docs/log-matching.md`). The last one parsed is kept: every request of one master carries
/// the same until its history grows.
fn master_epochs(node: &AppState, headers: &HeaderMap) -> Result<Arc<FromMaster>, ApiError> {
    let get = |name: &str| -> Result<&str, ApiError> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "replication requests carry the master's epoch in {} and its epoch history in {}",
                    protocol::EPOCH_HEADER,
                    protocol::EPOCHS_HEADER
                ))
            })
    };
    let (epoch, history) = (get(protocol::EPOCH_HEADER)?, get(protocol::EPOCHS_HEADER)?);
    let mut last = node.last_master_epochs.lock();
    if let Some((e, h, from)) = &*last
        && e == epoch
        && h == history
    {
        return Ok(from.clone());
    }
    let epoch_n: u64 = epoch.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{} must be an unsigned integer, got {epoch:?}",
            protocol::EPOCH_HEADER
        ))
    })?;
    let parsed =
        History::parse_header(history).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if parsed.last_epoch() > epoch_n {
        return Err(ApiError::bad_request(format!(
            "the master's epoch history ({parsed}) names an epoch above its own ({epoch_n})"
        )));
    }
    let from = Arc::new(FromMaster {
        epoch: epoch_n,
        history: parsed,
    });
    *last = Some((epoch.to_string(), history.to_string(), from.clone()));
    Ok(from)
}

/// Most entries `GET /replicate` returns at once.
const MAX_READ_BATCH: u64 = 4096;

/// `GET /replicate?from=K&limit=N`: visible entries as a binary batch (the `POST` layout,
/// ids included). A master that lost the tail of its log reads it back through this.
pub async fn read_batch(
    State(node): State<AppState>,
    headers: HeaderMap,
    query: Result<
        axum::extract::Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let num = |name: &str, default: u64| -> Result<u64, ApiError> {
        q.get(name)
            .map_or(Ok(default), |v| super::query_uint(name, v))
    };
    let from = num("from", 1)?;
    if from == 0 {
        return Err(ApiError::bad_request(
            "`from` must be ≥ 1 (keys start at 1)",
        ));
    }
    let limit = num("limit", MAX_READ_BATCH)?;
    if limit > MAX_READ_BATCH {
        return Err(ApiError::bad_request(format!(
            "`limit` must be at most {MAX_READ_BATCH}, got {limit}"
        )));
    }
    let limit = limit as usize;
    // The labels of what is read: taken before and checked after, so a cut or a new history
    // in between (a master's batch) is never paired with entries it does not label.
    let epochs = node.writer.current_epochs();
    let acknowledged = node.acknowledged_key();
    let mut entries = node
        .store
        .read(from, limit, node.settings.replication.max_batch_bytes)
        .map_err(|e| ApiError::internal(format!("reading the log failed: {e}")))?;
    // Only what it vouches for: not a script's key, nor anything after one.
    let vouched = epochs.vouched_below().unwrap_or(u64::MAX);
    entries.retain(|e| e.key <= acknowledged && e.key < vouched);
    if !Arc::ptr_eq(&epochs, &node.writer.current_epochs()) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node's epoch history changed while reading; retry",
        )
        .retry_after(1));
    }
    let mut resp = protocol::encode_batch(&entries).into_response();
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    let value = |s: String| {
        axum::http::HeaderValue::from_str(&s)
            .map_err(|e| ApiError::internal(format!("cannot send a header: {e}")))
    };
    h.insert(protocol::EPOCH_HEADER, value(epochs.current.to_string())?);
    h.insert(protocol::EPOCHS_HEADER, value(epochs.history.to_header())?);
    Ok(resp)
}

/// `PUT /message` `{"key": K, "value": V}`: stores one message under its key.
pub async fn put_message(
    State(node): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let max = node.settings.limits.max_message_bytes;
    let body = read_body(
        body,
        max.saturating_mul(6).saturating_add(64 * 1024),
        node.settings.limits.body_read_timeout(),
    )
    .await?;
    let obj = json_object(&body)?;
    let key = match obj.get("key") {
        Some(v) => match super::json_uint(v) {
            Some(k) if k >= 1 => k,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`key` must be an integer from 1 to {}, got {v}",
                    super::MAX_INT
                )));
            }
        },
        None => return Err(ApiError::bad_request("`key` is missing")),
    };
    let value = match obj.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("`value` must be a string")),
        None => return Err(ApiError::bad_request("`value` is missing")),
    };
    if value.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "value is {} bytes, over the {max}-byte limit (limits.max_message_bytes)",
                value.len()
            ),
        ));
    }
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => {
            Some(Bytes::from(s.clone()))
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "`id` must be a string of 1 to {MAX_ID_BYTES} bytes"
            )));
        }
    };
    learn_master(&node, &headers);

    maybe_delay(&node, &format!("PUT /message key {key}")).await;
    let stored = node
        .writer
        .store_sent(
            vec![Entry {
                key,
                value: Bytes::from(value.clone()),
                id,
            }],
            None,
        )
        .await
        .map_err(store_error)?;
    let contiguous_key = node.acknowledged_key();
    tracing::info!(
        key,
        stored = stored > 0,
        contiguous_key,
        "PUT /message key {key}"
    );
    if let Some(e) = injected_error(&node) {
        return Err(e);
    }
    let status = if stored > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "key": key,
        "value": value,
        "stored": stored > 0,
        "contiguous_key": contiguous_key,
        "instance": node.instance,
    });
    Ok((status, axum::Json(body)).into_response())
}

fn faults_enabled(node: &AppState) -> Result<(), ApiError> {
    if node.faults.enabled() {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "fault injection is disabled on this node (fault.enabled = false)",
        ))
    }
}

/// `POST /delay` `{"value": S}`: the next replication request waits S seconds.
pub async fn delay(
    State(node): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    faults_enabled(&node)?;
    authorize(&node, &headers)?;
    let body = read_body(body, 64 * 1024, node.settings.limits.body_read_timeout()).await?;
    let obj = json_object(&body)?;
    let secs = match obj.get("value") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let secs = match secs {
        Some(s) if s.is_finite() && (0.0..=MAX_DELAY_S).contains(&s) => s,
        _ => {
            return Err(ApiError::bad_request(format!(
                "`value` must be a number of seconds from 0 to {MAX_DELAY_S}, got {}",
                obj.get("value")
                    .map_or("nothing".to_string(), |v| v.to_string())
            )));
        }
    };
    node.faults.arm_delay(Duration::from_secs_f64(secs));
    tracing::info!(
        delay_s = secs,
        "delay armed: the next replication request waits {secs} s"
    );
    Ok(axum::Json(json!({
        "delay_s": secs,
        "applies_to": "the next replication request this node receives",
    }))
    .into_response())
}

/// `GET /fault`: the current fault settings.
pub async fn get_fault(
    State(node): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    faults_enabled(&node)?;
    authorize(&node, &headers)?;
    Ok(
        axum::Json(json!({"enabled": true, "error_rate": node.faults.error_rate()}))
            .into_response(),
    )
}

/// `POST /fault` `{"error_rate": p}`: changes the injected error probability at run time.
pub async fn set_fault(
    State(node): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    faults_enabled(&node)?;
    authorize(&node, &headers)?;
    let body = read_body(body, 64 * 1024, node.settings.limits.body_read_timeout()).await?;
    let obj = json_object(&body)?;
    let p = match obj.get("error_rate").and_then(Value::as_f64) {
        Some(p) if (0.0..=1.0).contains(&p) => p,
        _ => {
            return Err(ApiError::bad_request(
                "`error_rate` must be a probability from 0.0 to 1.0",
            ));
        }
    };
    node.faults.set_error_rate(p);
    tracing::info!(error_rate = p, "fault injection: error_rate set to {p}");
    Ok(axum::Json(json!({"enabled": true, "error_rate": p})).into_response())
}
