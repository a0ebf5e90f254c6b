//! `POST /message` on the master: validate, refuse while read-only, append, wait for w.
//!
//! Order of checks (each refusal changes nothing): body readable and within the size limit
//! (413), JSON with a string `value` and valid `write_concern` / `id` / `timeout_ms` (400),
//! value size (413), quorum (503 + Retry-After, decided before a key is assigned). Only then
//! does the writer assign a key. After that the answer is 201 (or 200 for a duplicate `id`)
//! once w nodes hold the message, or 504 when `timeout_ms` runs out first: the message is in
//! the log and keeps replicating — a timeout never removes it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{ApiError, AppState, json_object, read_body};
use crate::acks::Wait;
use crate::config::WriteConcern;
use crate::log::MAX_ID_BYTES;
use crate::writer::{Appended, WriteError};

/// Longest `timeout_ms` a client may ask for (one day).
const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// A validated append request.
#[derive(Debug, PartialEq)]
pub struct AppendRequest {
    pub value: String,
    pub w: u64,
    pub id: Option<String>,
    pub timeout: Option<Duration>,
}

/// Validates a `POST /message` body against a cluster of `all` nodes.
pub fn parse_append(
    obj: Map<String, Value>,
    all: usize,
    default_w: WriteConcern,
    default_timeout_ms: Option<u64>,
    max_value: usize,
) -> Result<AppendRequest, ApiError> {
    let mut obj = obj;
    let value = match obj.remove("value") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`value` must be a string, got {}",
                type_name(&other)
            )));
        }
        None => return Err(ApiError::bad_request("`value` is missing")),
    };
    let w = match obj.get("write_concern") {
        None | Some(Value::Null) => default_w.resolve(all),
        Some(v) => parse_write_concern(v, all)?,
    };
    if w < 1 || w > all as u64 {
        return Err(ApiError::bad_request(format!(
            "write_concern {w} is outside 1..={all} (this cluster has {all} nodes: the master and {} secondaries)",
            all - 1
        ))
        .with("write_concern", w)
        .with("nodes", all));
    }
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => Some(s.clone()),
        Some(Value::String(s)) => {
            return Err(ApiError::bad_request(format!(
                "`id` must be 1 to {MAX_ID_BYTES} bytes, got {}",
                s.len()
            )));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`id` must be a string, got {}",
                type_name(other)
            )));
        }
    };
    let timeout_ms = match obj.get("timeout_ms") {
        None | Some(Value::Null) => default_timeout_ms,
        Some(v) => match v.as_u64() {
            Some(t) if t <= MAX_TIMEOUT_MS => Some(t),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`timeout_ms` must be an integer from 0 to {MAX_TIMEOUT_MS}, got {v}"
                )));
            }
        },
    };
    if value.len() > max_value {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "value is {} bytes, over the {max_value}-byte limit (limits.max_message_bytes)",
                value.len()
            ),
        )
        .with("max_message_bytes", max_value));
    }
    Ok(AppendRequest {
        value,
        w,
        id,
        timeout: timeout_ms.map(Duration::from_millis),
    })
}

fn parse_write_concern(v: &Value, all: usize) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "write_concern must be an integer from 1 to {all}, \"all\" or \"majority\"; got {v}"
        ))
    };
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(w) => Ok(w),
            None => Err(bad()),
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "all" => Ok(WriteConcern::All.resolve(all)),
            "majority" => Ok(WriteConcern::Majority.resolve(all)),
            other => other.parse::<u64>().map_err(|_| bad()),
        },
        _ => Err(bad()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `POST /message`.
pub async fn post_message(State(node): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let Some(m) = &node.master else {
        return Err(ApiError::internal("not a master"));
    };
    let max = node.settings.limits.max_message_bytes;
    // JSON may escape each byte of the value as up to 6 bytes.
    let body = read_body(body, max.saturating_mul(6).saturating_add(64 * 1024)).await?;
    let req = parse_append(
        json_object(&body)?,
        m.tracker.nodes(),
        node.settings.master.default_write_concern,
        node.settings.master.default_timeout_ms,
        max,
    )?;

    if m.recovering.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master is checking the end of its log against its secondaries (recovery after a restart); nothing was appended, retry in a moment",
        )
        .with("mode", "recovering")
        .retry_after(1));
    }
    if m.quorum.is_read_only() {
        let available = m.quorum.available();
        let quorum = m.quorum.quorum();
        let retry = crate::health::retry_after(&node.settings.heartbeat)
            .as_secs()
            .max(1);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the master is read-only: {available} of {} nodes are available and the quorum is {quorum}; nothing was appended",
                m.tracker.nodes()
            ),
        )
        .with("mode", "read-only")
        .with("available", available)
        .with("quorum", quorum)
        .retry_after(retry));
    }

    let value = Bytes::from(req.value);
    let appended = node
        .writer
        .append(value.clone(), req.id.clone().map(Bytes::from))
        .await
        .map_err(|e| match e {
            WriteError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            other => ApiError::internal(format!("could not append: {other}")),
        })?;
    let (key, duplicate) = match appended {
        Appended::New(k) => (k, false),
        Appended::Duplicate(k) => (k, true),
    };

    let w = req.w as u16;
    let acks = match m.tracker.wait(key, w) {
        Wait::Ready(n) => n,
        Wait::Pending(rx) => {
            let waited = match req.timeout {
                Some(t) => tokio::time::timeout(t, rx).await.ok(),
                None => Some(rx.await),
            };
            match waited {
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the master is shutting down; the message was appended and may not be replicated",
                    )
                    .with("key", key));
                }
                None => {
                    let acks = m.tracker.acks(key);
                    tracing::info!(key, acks, w, "write concern not reached in time: 504");
                    return Err(ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "write concern {w} not reached within {} ms: the message is appended under key {key}, held by {acks} node(s), and keeps replicating",
                            req.timeout.map_or(0, |t| t.as_millis())
                        ),
                    )
                    .with("key", key)
                    .with("acks", acks)
                    .with("write_concern", w));
                }
            }
        }
    };

    // A duplicate answers with what the log holds under the original key.
    let value = if duplicate {
        node.store
            .read(key, 1, usize::MAX)
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|e| e.value)
            .unwrap_or(value)
    } else {
        value
    };
    let mut out = json!({
        "key": key,
        "value": String::from_utf8_lossy(&value),
        "write_concern": w,
        "acks": acks,
    });
    if let Some(id) = req.id {
        out["id"] = Value::String(id);
    }
    let status = if duplicate {
        out["duplicate"] = Value::Bool(true);
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let answered = axum::Extension(crate::metrics::AnsweredWith { w });
    Ok((status, answered, axum::Json(out)).into_response())
}

/// `PUT /message` on the master: keys are assigned here, not given.
pub async fn put_on_master() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "PUT /message stores a message under a given key on a secondary; on the master, append with POST /message",
    )
    .allow("POST")
}

/// `POST /replicate` on the master.
pub async fn replicate_on_master() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this node is the master; /replicate is a secondary's internal endpoint",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<AppendRequest, ApiError> {
        let Value::Object(m) = body else { panic!() };
        parse_append(m, 3, WriteConcern::All, None, 10)
    }

    #[test]
    fn write_concern_forms() {
        assert_eq!(parse(json!({"value": "a"})).unwrap().w, 3);
        assert_eq!(
            parse(json!({"value": "a", "write_concern": 2})).unwrap().w,
            2
        );
        assert_eq!(
            parse(json!({"value": "a", "write_concern": "majority"}))
                .unwrap()
                .w,
            2
        );
        assert_eq!(
            parse(json!({"value": "a", "write_concern": "ALL"}))
                .unwrap()
                .w,
            3
        );
        assert_eq!(
            parse(json!({"value": "a", "write_concern": "1"}))
                .unwrap()
                .w,
            1
        );
        for bad in [
            json!(0),
            json!(4),
            json!(-1),
            json!(2.5),
            json!("most"),
            json!([1]),
        ] {
            let e = parse(json!({"value": "a", "write_concern": bad})).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn value_id_and_timeout_rules() {
        assert_eq!(
            parse(json!({})).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(json!({"value": 5})).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(json!({"value": "12345678901"})).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            parse(json!({"value": "a", "id": ""})).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(json!({"value": "a", "id": "x".repeat(257)}))
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(json!({"value": "a", "id": 7})).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(json!({"value": "a", "timeout_ms": -1}))
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        let ok = parse(json!({"value": "a", "id": "k", "timeout_ms": 50})).unwrap();
        assert_eq!(ok.id.as_deref(), Some("k"));
        assert_eq!(ok.timeout, Some(Duration::from_millis(50)));
    }
}
