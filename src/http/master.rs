//! `POST /message` on the master: validate, refuse while read-only, append, wait for w.
//!
//! Order of checks (each refusal changes nothing): body readable and within the size limit
//! (413), JSON with a string `value` and valid `write_concern` / `id` / `timeout_ms` (400),
//! value size (413), quorum (503 + Retry-After, decided before a key is assigned). Only then
//! does the writer assign a key. A bounded number of appends may be in progress at once
//! (`master.max_pending_appends`, 503 + Retry-After beyond it), so memory stays bounded however
//! many clients wait on a write concern that cannot be met. After that the answer is 201 (or 200 for a duplicate `id`)
//! once w nodes hold the message, or 504 when `timeout_ms` runs out first: the message is in
//! the log and keeps replicating — a timeout never removes it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::{ApiError, AppState, json_object, read_body};
use crate::config::WriteConcern;
use crate::domain::MAX_ID_BYTES;
use crate::master::acks::Wait;
use crate::storage::writer::{Appended, WriteError};

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
        Some(v) => match super::json_uint(v) {
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
        Value::Number(_) => super::json_uint(v).ok_or_else(bad),
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

/// The answer to an append (201, or 200 for a duplicate id).
#[derive(serde::Serialize)]
struct AppendAnswer<'a> {
    key: u64,
    value: &'a str,
    write_concern: u16,
    acks: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// The common shape of an append body, borrowed from it.
#[derive(serde::Deserialize)]
struct FastAppend<'a> {
    #[serde(borrow)]
    value: std::borrow::Cow<'a, str>,
    #[serde(default)]
    write_concern: Option<u64>,
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The fast path of [`parse_append`]: a body of the common shape (a string value, a numeric
/// write concern, ...) with valid values, parsed straight into types. `None` for anything
/// else, which [`parse_append`] then judges, so both paths accept and refuse exactly alike.
fn parse_append_fast(
    body: &[u8],
    all: usize,
    settings: &crate::config::Settings,
    max_value: usize,
) -> Option<AppendRequest> {
    let f: FastAppend = serde_json::from_slice(body).ok()?;
    let w = match f.write_concern {
        Some(w) => w,
        None => settings.master.default_write_concern.resolve(all),
    };
    let id_ok =
        f.id.as_ref()
            .is_none_or(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES);
    let timeout_ok = f.timeout_ms.is_none_or(|t| t <= MAX_TIMEOUT_MS);
    if w < 1 || w > all as u64 || f.value.len() > max_value || !id_ok || !timeout_ok {
        return None;
    }
    Some(AppendRequest {
        value: f.value.into_owned(),
        w,
        id: f.id.map(|id| id.into_owned()),
        timeout: f
            .timeout_ms
            .or(settings.master.default_timeout_ms)
            .map(Duration::from_millis),
    })
}

/// `POST /message`: the answer, and the write concern it was answered with (for metrics).
pub async fn post_message(
    State(node): State<AppState>,
    body: Body,
) -> Result<(Response, u16), ApiError> {
    let Some(m) = node.master() else {
        return Err(ApiError::internal("not a master"));
    };
    let max = node.settings.limits.max_message_bytes;
    // JSON may escape each byte of the value as up to 6 bytes.
    let body = read_body(
        body,
        max.saturating_mul(6).saturating_add(64 * 1024),
        node.settings.limits.body_read_timeout(),
    )
    .await?;
    let all = m.tracker.nodes();
    let req = match parse_append_fast(&body, all, &node.settings, max) {
        Some(req) => req,
        // Anything unusual takes the careful path, which names exactly what is wrong.
        None => parse_append(
            json_object(&body)?,
            all,
            node.settings.master.default_write_concern,
            node.settings.master.default_timeout_ms,
            max,
        )?,
    };

    // Held until the answer: the number of appends in memory at once is bounded.
    let Ok(_permit) = m.pending.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the master has {} appends in progress (master.max_pending_appends); nothing was appended, retry in a moment",
                node.settings.master.max_pending_appends
            ),
        )
        .with("mode", "overloaded")
        .retry_after(1));
    };
    if !m.in_office.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the master of epoch {} is taking office: a majority does not hold the record of its epoch yet; nothing was appended, retry in a moment",
                m.epoch
            ),
        )
        .with("mode", "taking office")
        .retry_after(1));
    }
    // The lease is judged now, not only at the term watch's last tick (see
    // `Failover::lease_holds`: a process resumed after a pause must not go by that).
    let lease_lost = || !node.lease_holds(&m);
    if lease_lost() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master is read-only: a majority of members has not answered it within its lease (it steps down if that lasts); nothing was appended",
        )
        .with("mode", "read-only")
        .retry_after(1));
    }
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
        let retry = crate::master::health::retry_after(&node.settings.heartbeat)
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

    // A copy for the log; `req.value` stays for the answer, which so needs no UTF-8 check.
    let value = Bytes::copy_from_slice(req.value.as_bytes());
    let appended = node
        .writer
        .append(value, req.id.clone().map(Bytes::from))
        .await
        .map_err(|e| match e {
            WriteError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            // Failover: the master stepped down between admitting the append and writing it.
            // Nothing was appended (no key), so this is a refusal to retry, not a failure.
            WriteError::NotMaster => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node stopped being the master before the append was written; nothing was appended, retry on the master",
            )
            .with("mode", "stepped down")
            .retry_after(1),
            other => ApiError::internal(format!("could not append: {other}")),
        })?;
    let (key, duplicate) = match appended {
        Appended::New(k) => (k, false),
        Appended::Duplicate(k) => (k, true),
    };

    let w = req.w as u16;
    let acks = match m.tracker.wait(key, w) {
        Wait::Ready(n) => n,
        Wait::Pending(pending) => {
            // Dropping `pending` (timed out, or this request dropped) withdraws the waiter.
            let waited = match req.timeout {
                Some(t) => tokio::time::timeout(t, pending).await.ok(),
                None => Some(pending.await),
            };
            match waited {
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    // The term ended under this append (the master stepped down or stops).
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "this master's term ended while the append waited for its write concern: the message was appended under key {key}, and whether it stays is unknown; a retry with the same id is safe (it returns the key the message got, if it is kept)"
                        ),
                    )
                    .with("key", key)
                    .with("outcome", "unknown")
                    .retry_after(1));
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

    // Failover: an answer that rests on this master alone (w below a majority) is given only
    // while its lease holds; a master that lost it meanwhile (paused after admitting the
    // append) may have been replaced, and the message may be cut when it rejoins.
    if node
        .failover
        .as_ref()
        .is_some_and(|f| (acks as usize) < f.majority() && !f.lease_holds(&m))
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this master lost its lease while the append was written: the message was appended under key {key}, and whether it stays is unknown (another master may have been elected); a retry with the same id is safe (it returns the key the message got, if it is kept)"
            ),
        )
        .with("key", key)
        .with("outcome", "unknown")
        .retry_after(1));
    }

    // The master was counted when its copy was written; under `interval`/`never` an fsync
    // that failed since may have dropped it, and after one nothing is vouched for (the
    // module docs of `crate::storage::writer`).
    if let Some(why) = node.store.sync_failure() {
        return Err(ApiError::internal(format!(
            "the master's log could not be made durable (fsync failed: {why}); the message was written under key {key} but may be lost, and this node acknowledges nothing until it is restarted"
        ))
        .with("key", key));
    }

    // A duplicate answers with what the log holds under the original key.
    let original = if duplicate {
        node.store
            .read(key, 1, usize::MAX)
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|e| String::from_utf8_lossy(&e.value).into_owned())
    } else {
        None
    };
    let out = AppendAnswer {
        key,
        value: original.as_deref().unwrap_or(&req.value),
        write_concern: w,
        acks,
        id: req.id.as_deref(),
        duplicate: duplicate.then_some(true),
    };
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((json_answer(status, &out), w))
}

/// `answer` as a JSON response, written into one buffer of the right size.
fn json_answer(status: StatusCode, answer: &AppendAnswer<'_>) -> Response {
    let mut resp = Response::new(Body::from(encode_answer(answer)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The JSON of an append's answer, byte for byte what `serde_json` writes for
/// [`AppendAnswer`] (a unit test holds the two together). Written by hand because it is the
/// one body every append returns: `serde_json` escapes a string byte by byte, while a value
/// with nothing to escape — the usual case — is copied here in one go after one scan.
fn encode_answer(a: &AppendAnswer<'_>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96 + a.value.len() + a.id.map_or(0, str::len));
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"key\":");
    buf.extend_from_slice(num.format(a.key).as_bytes());
    buf.extend_from_slice(b",\"value\":");
    json_string(&mut buf, a.value);
    buf.extend_from_slice(b",\"write_concern\":");
    buf.extend_from_slice(num.format(a.write_concern).as_bytes());
    buf.extend_from_slice(b",\"acks\":");
    buf.extend_from_slice(num.format(a.acks).as_bytes());
    if let Some(id) = a.id {
        buf.extend_from_slice(b",\"id\":");
        json_string(&mut buf, id);
    }
    if let Some(d) = a.duplicate {
        buf.extend_from_slice(if d {
            b",\"duplicate\":true"
        } else {
            b",\"duplicate\":false"
        });
    }
    buf.push(b'}');
    buf
}

/// `s` as a JSON string.
fn json_string(buf: &mut Vec<u8>, s: &str) {
    // A fold without an early exit, which the compiler turns into SIMD compares.
    let escapes = s
        .bytes()
        .fold(false, |e, b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if !escapes {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else if serde_json::to_writer(&mut *buf, s).is_err() {
        // Writing a string into a Vec cannot fail; an empty string is still valid JSON.
        buf.extend_from_slice(b"\"\"");
    }
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
    use serde_json::json;

    fn parse(body: Value) -> Result<AppendRequest, ApiError> {
        let Value::Object(m) = body else { panic!() };
        parse_append(m, 3, WriteConcern::All, None, 10)
    }

    #[test]
    fn the_fast_path_accepts_only_what_the_careful_path_accepts_alike() {
        let settings = crate::config::Settings::default();
        let bodies = [
            r#"{"value": "a"}"#,
            r#"{"value": "a", "write_concern": 2}"#,
            r#"{"value": "a", "write_concern": null, "id": "x", "timeout_ms": 5}"#,
            r#"{"value": "esc\n\u00e9", "extra": [1]}"#,
            r#"{"value": "a", "write_concern": 0}"#,
            r#"{"value": "a", "write_concern": 4}"#,
            r#"{"value": "a", "write_concern": "all"}"#,
            r#"{"value": "a", "write_concern": 2.0}"#,
            r#"{"value": "a", "id": ""}"#,
            r#"{"value": "a", "timeout_ms": -1}"#,
            r#"{"value": "12345678901"}"#,
            r#"{"value": 5}"#,
            r#"{"value": "a", "value": "b"}"#,
        ];
        for body in bodies {
            let Some(fast) = parse_append_fast(body.as_bytes(), 3, &settings, 10) else {
                continue;
            };
            let careful = parse_append(
                json_object(body.as_bytes()).expect("an object"),
                3,
                settings.master.default_write_concern,
                settings.master.default_timeout_ms,
                10,
            )
            .expect("the careful path accepts what the fast path accepts");
            assert_eq!(fast, careful, "{body}");
        }
    }

    #[test]
    fn the_answer_is_what_serde_json_writes() {
        let values = [
            "testValue".to_string(),
            String::new(),
            "x".repeat(100),
            "quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f}".to_string(),
            "é ✓ 😀 \u{2028}".to_string(),
        ];
        for value in &values {
            for id in [None, Some("client-1"), Some("a\"b")] {
                for duplicate in [None, Some(true)] {
                    let a = AppendAnswer {
                        key: u64::MAX,
                        value,
                        write_concern: 3,
                        acks: u16::MAX,
                        id,
                        duplicate,
                    };
                    assert_eq!(
                        String::from_utf8(encode_answer(&a)).unwrap(),
                        serde_json::to_string(&a).unwrap(),
                        "{value:?} {id:?} {duplicate:?}"
                    );
                }
            }
        }
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

    /// Review of issue 15 (invariant 7, "nothing acknowledged after a failed fsync"): under
    /// `fsync = "interval"` an append is written and counted for the master at once, then waits
    /// for its write concern. If the interval fsync that covers it fails meanwhile, the master's
    /// copy may be gone (its pages dropped), yet the append is still answered 201 — with the
    /// master among its `acks` — as soon as a secondary acknowledges it.
    // The gate is held across awaits on purpose: it stops the fsync's thread, not this task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn review_15_an_append_waiting_for_w_is_not_answered_as_stored_after_a_failed_fsync() {
        use crate::config::{FsyncPolicy, Settings};
        use crate::storage::LogStore;

        let mut settings = Settings::default();
        settings.storage.fsync = FsyncPolicy::Interval;
        settings.storage.fsync_interval_ms = 10;
        let store = crate::storage::testing::GatedStore::new();
        // A master and one secondary (node 1, never reachable: the test acknowledges for it).
        settings.master.secondaries = vec![crate::config::SecondaryRef {
            name: "secondary1".into(),
            url: "http://127.0.0.1:9".into(),
        }];
        settings.master.quorum = Some(1);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (node, _) = crate::node::Node::with_store(settings, store.clone(), shutdown.clone())
            .await
            .expect("a master");
        let tracker = node.master().expect("a master").tracker.clone();

        // Act: a w=2 append is written (key 1) and waits for the secondary; the fsync covering
        // it fails; then the secondary acknowledges key 1.
        // The interval fsync of key 1 waits at the gate until the store has failed.
        let gate = store.gate.lock();
        let append = tokio::spawn(post_message(
            axum::extract::State(node.clone()),
            Body::from(r#"{"value": "a", "write_concern": 2}"#),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tracker.waiting() != 1 {
            assert!(tokio::time::Instant::now() < deadline, "timed out: written");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(gate);
        while store.sync_failure().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out: fsync failed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tracker.record(1, 1, 1);

        // Assert: not answered as stored.
        let answer = tokio::time::timeout(Duration::from_secs(5), append)
            .await
            .expect("answered")
            .expect("task");
        let status = match &answer {
            Ok((resp, _)) => resp.status(),
            Err(e) => e.status,
        };
        assert_ne!(
            status,
            StatusCode::CREATED,
            "answered 201 after the fsync covering the append failed ({:?})",
            store.sync_failure()
        );
        shutdown.cancel();
    }
}
