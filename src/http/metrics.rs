//! `GET /metrics`: the node's event registry (`crate::metrics`), then its state read at
//! scrape time — the master's mode, quorum, ack tracker, idempotency index and each
//! secondary's progress and health; on every node its log's end, epoch and cuts — into a
//! registry built for that one scrape. Nothing here is on the append path.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ApiError;
use crate::config::Engine;
use crate::node::Node;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SecondaryLabel {
    secondary: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    secondary: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    role: &'static str,
    name: String,
    version: &'static str,
}

/// `GET /metrics`.
pub async fn get_metrics(State(node): State<Arc<Node>>) -> Response {
    // Reading the data dir's sizes is file-system work: off the async threads.
    let text = tokio::task::spawn_blocking(move || render(&node)).await;
    match text {
        Ok(Ok(text)) => {
            let mut resp = text.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
            );
            resp
        }
        Ok(Err(e)) => {
            ApiError::internal(format!("encoding the metrics failed: {e}")).into_response()
        }
        Err(e) => ApiError::internal(format!("collecting the metrics failed: {e}")).into_response(),
    }
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The whole exposition of `node`: its event metrics, then its state read now.
pub fn render(node: &Node) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(8 * 1024);
    prometheus_text::encode(&mut out, &node.metrics.events)?;
    let role_events = if node.is_master() {
        &node.metrics.master_events
    } else {
        &node.metrics.secondary_events
    };
    prometheus_text::encode(&mut out, role_events)?;
    let mut r = Registry::with_prefix("replog");
    let is_master = node.is_master();
    let info = Family::<InfoLabels, Gauge>::default();
    info.get_or_create(&InfoLabels {
        role: if is_master { "master" } else { "secondary" },
        name: node.name().to_string(),
        version: env!("CARGO_PKG_VERSION"),
    })
    .set(1);
    r.register("node_info", "This node: its role, name and version", info);
    let contiguous = node.acknowledged_key();
    gauge(
        &mut r,
        "contiguous_key",
        "The end of this node's visible log: its last key (master) or contiguous prefix (secondary)",
        clamp(contiguous),
    );
    gauge(
        &mut r,
        "held_aside",
        "Entries stored beyond the first hole, invisible until it fills",
        clamp(node.store.held_aside() as u64),
    );
    gauge(
        &mut r,
        "epoch",
        "This node's epoch: the master's own (it takes a new one at every start), or the highest a secondary accepted",
        clamp(node.writer.current_epochs().current),
    );
    let cut = Counter::<u64>::default();
    cut.inc_by(node.store.cuts().iter().map(|c| c.entries).sum());
    r.register(
        "cut_entries",
        "Entries this node cut from its log because they diverged from its master's (docs/log-matching.md); the keys and ids are in the log file",
        cut,
    );
    if node.settings.storage.engine == Engine::Disk {
        gauge(
            &mut r,
            "log_segment_bytes",
            "Bytes of the log's segment files in node.data_dir",
            clamp(segment_bytes(&node.settings.node.data_dir)),
        );
    }
    if let Some(m) = &node.master() {
        master_state(node, m, contiguous, &mut r);
    }
    prometheus_text::encode(&mut out, &r)?;
    Ok(out)
}

fn master_state(node: &Node, m: &crate::node::MasterState, last: u64, r: &mut Registry) {
    gauge(
        r,
        "read_only",
        "1 while the master refuses appends for lack of a quorum",
        i64::from(m.quorum.is_read_only()),
    );
    gauge(
        r,
        "recovering",
        "1 while a restarted master checks its log's end against its secondaries",
        i64::from(m.recovering.load(Ordering::Acquire)),
    );
    gauge(
        r,
        "quorum",
        "Nodes (master included) that must be available for appends",
        m.quorum.quorum() as i64,
    );
    gauge(
        r,
        "available_nodes",
        "The master plus its healthy or suspected secondaries",
        m.quorum.available() as i64,
    );
    gauge(
        r,
        "appends_waiting",
        "Appends waiting for their write concern",
        m.tracker.waiting() as i64,
    );
    gauge(
        r,
        "fully_replicated_key",
        "Keys up to this one are held by every node",
        clamp(m.tracker.fully_replicated()),
    );
    gauge(
        r,
        "ack_tracker_ranges",
        "Key ranges the ack tracker holds over all nodes (its memory besides the waiters)",
        m.tracker.ranges() as i64,
    );
    let dedup = node.writer.dedup_stats();
    gauge(
        r,
        "dedup_ids",
        "Idempotency ids remembered (master.dedup_window)",
        clamp(dedup.ids.load(Ordering::Relaxed)),
    );
    gauge(
        r,
        "dedup_id_bytes",
        "Bytes of the idempotency ids remembered (the index adds about 65-130 bytes per id; see the README)",
        clamp(dedup.id_bytes.load(Ordering::Relaxed)),
    );

    let acked = Family::<SecondaryLabel, Gauge>::default();
    let lag = Family::<SecondaryLabel, Gauge>::default();
    let lag_s = Family::<SecondaryLabel, Gauge<f64, AtomicU64>>::default();
    let inflight = Family::<SecondaryLabel, Gauge>::default();
    let backoff = Family::<SecondaryLabel, Gauge>::default();
    let retries = Family::<SecondaryLabel, Counter>::default();
    let health = Family::<HealthLabels, Gauge>::default();
    let failures = Family::<SecondaryLabel, Gauge>::default();
    let cut = Family::<SecondaryLabel, Gauge>::default();
    let now = Instant::now();
    for rep in &m.replicas {
        let p = rep.progress.lock().clone();
        let h = rep.health.borrow().clone();
        let l = SecondaryLabel {
            secondary: rep.name.clone(),
        };
        acked.get_or_create(&l).set(clamp(p.acked_key));
        lag.get_or_create(&l)
            .set(clamp(last.saturating_sub(p.acked_key)));
        let age = if p.acked_key < last {
            node.metrics.timeline.age(p.acked_key + 1, now)
        } else {
            Duration::ZERO
        };
        lag_s.get_or_create(&l).set(age.as_secs_f64());
        inflight.get_or_create(&l).set(p.inflight as i64);
        backoff
            .get_or_create(&l)
            .set(i64::from(p.retry_at.is_some()));
        retries
            .get_or_create(&l)
            .inc_by(rep.retries.load(Ordering::Relaxed));
        for s in ["healthy", "suspected", "unhealthy"] {
            health
                .get_or_create(&HealthLabels {
                    secondary: rep.name.clone(),
                    status: s,
                })
                .set(i64::from(h.status.as_str() == s));
        }
        failures.get_or_create(&l).set(i64::from(h.failures));
        cut.get_or_create(&l).set(clamp(h.cut_entries));
    }
    r.register(
        "replication_acked_key",
        "The end of the prefix each secondary is known to hold",
        acked,
    );
    r.register(
        "replication_lag_messages",
        "Messages each secondary lacks: last key - acked key",
        lag,
    );
    r.register(
        "replication_lag_seconds",
        "Age of the oldest message each secondary lacks (0 when it lacks none)",
        lag_s,
    );
    r.register(
        "replication_inflight_batches",
        "Replication requests in flight to each secondary",
        inflight,
    );
    r.register(
        "replication_backoff",
        "1 while a failed replication to the secondary waits out its retry delay",
        backoff,
    );
    r.register(
        "replication_retries",
        "Retries scheduled after failed replication requests, per secondary",
        retries,
    );
    r.register(
        "secondary_health",
        "1 for each secondary's current heartbeat status (healthy, suspected, unhealthy), 0 for the others",
        health,
    );
    r.register(
        "heartbeat_failures_in_a_row",
        "Heartbeats to each secondary that failed in a row",
        failures,
    );
    r.register(
        "secondary_cut_entries",
        "Entries each secondary has cut from its log because they diverged from a master's (from its last heartbeat)",
        cut,
    );
}

/// Bytes of `*.seg` files in `dir` (0 if it cannot be read).
fn segment_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
