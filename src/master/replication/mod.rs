//! Replication from the master to its secondaries (SPEC §4).
//!
//! One long-lived [`task::ReplicationTask`] per secondary owns that secondary's progress
//! ([`progress::Progress`]: what it holds, what to send next), its in-flight window and its
//! backoff ([`backoff::Backoff`]). Tasks never wait on each other or on appends: each follows
//! the master's published last key, the secondary's health, and its own answers, so a slow
//! or dead secondary slows nobody else. Acks go to the shared [`crate::master::acks::AckTracker`],
//! which wakes the appends waiting on their write concern.
//!
//! [`Replica`] is the part of a secondary's state others may look at (`/health`, tests): its
//! health watch, written by its heartbeat worker, and a snapshot of its replication progress,
//! written by its task.

pub mod backoff;
pub mod progress;
pub mod task;

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::master::health::HealthView;

/// Replication progress as shown in `/health` (a snapshot the task refreshes).
#[derive(Clone, Debug, Default)]
pub struct ProgressView {
    /// The end of the prefix the secondary is known to hold.
    pub acked_key: u64,
    /// Requests in flight.
    pub inflight: usize,
    /// When the next retry goes out, while a failure's backoff runs.
    pub retry_at: Option<Instant>,
    /// The last replication error, until the next success.
    pub error: Option<String>,
}

/// One secondary, as the master's other parts see it.
pub struct Replica {
    /// Node index in the ack tracker (1-based; 0 is the master).
    pub index: usize,
    pub name: String,
    pub url: String,
    pub health: watch::Receiver<HealthView>,
    // A short-lived std-style lock: written by the task, read by /health; no await under it.
    pub progress: Mutex<ProgressView>,
    /// Retries scheduled after failed replication requests, since start (for `/metrics`).
    pub retries: std::sync::atomic::AtomicU64,
    /// When the last heartbeat it answered was sent (failover: the master's lease).
    pub last_ok_sent: Arc<parking_lot::Mutex<Option<tokio::time::Instant>>>,
    /// Failover: whether this secondary holds the record of the master's epoch (it took the
    /// master's history and holds every key before the epoch's first; `docs/failover.md`).
    pub holds_record: std::sync::atomic::AtomicBool,
    /// The replication task's incarnation-switch count (`Progress::switches`), as it last
    /// published it: the heartbeat worker records it with every heartbeat it sends
    /// (`HealthView::asked_in`), so that a late answer cannot bring back an older incarnation.
    pub switches: Arc<std::sync::atomic::AtomicU64>,
}
