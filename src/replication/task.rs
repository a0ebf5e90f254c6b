//! The replication task of one secondary: a loop that keeps a bounded window of batch
//! requests in flight and reacts to answers, new appends, health changes and its backoff.
//!
//! ```text
//!   last key (watch) ──┐      ┌── health (watch): pause while unhealthy; on recovery drop
//!                      ▼      ▼   the in-flight requests and resend everything missing now
//!              ┌──────────────────────┐  batches (≤ max_inflight at once)  ┌───────────┐
//!              │   ReplicationTask    │ ─────────────────────────────────▶ │ secondary │
//!              │ Progress · Backoff   │ ◀───────────────────────────────── │           │
//!              └──────────────────────┘  2xx ack: contiguous key, incarnation └─────────┘
//!                      │ acks                 failure: backoff, then go back to the first
//!                      ▼                      key not known to be held
//!                 AckTracker ──▶ wakes appends waiting on their write concern
//! ```
//!
//! A delayed request only occupies one slot of the window: later batches go out and are
//! acknowledged past it. A failure (timeout, no connection, non-2xx) is never an ack: the
//! task waits out the next backoff delay, then resends every key the secondary is not known
//! to hold (the secondary stores idempotently, so resending what it already has is harmless).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::progress::Progress;
use super::{ProgressView, Replica};
use crate::acks::AckTracker;
use crate::config::ReplicationSettings;
use crate::health::{HealthStatus, HealthView};
use crate::log::tail::TailCache;
use crate::log::{LogId, LogStore};
use crate::peer::{Peer, PeerError};
use crate::protocol::BatchAck;
use crate::telemetry::LineBudget;

/// Bounds of the pacing interval (see `fill_window`): the smoothed round trip, clamped so that
/// one slow answer (a `/delay`) cannot stall batching for long.
const MIN_PACE: Duration = Duration::from_micros(50);
const MAX_PACE: Duration = Duration::from_millis(2);

struct Outcome {
    lo: u64,
    hi: u64,
    sent_at: tokio::time::Instant,
    result: Result<BatchAck, PeerError>,
}

/// Replicates to one secondary until shutdown; see the module docs.
pub struct ReplicationTask {
    replica: Arc<Replica>,
    peer: Peer,
    store: Arc<dyn LogStore>,
    /// The newest entries, read before the store (see `crate::log::tail`).
    tail: Option<Arc<TailCache>>,
    tracker: Arc<AckTracker>,
    log_id: LogId,
    last_key: watch::Receiver<u64>,
    health: watch::Receiver<HealthView>,
    cfg: ReplicationSettings,
    progress: Progress,
    backoff: Backoff,
    /// Set while a failure's backoff runs: nothing is sent until then.
    retry_at: Option<tokio::time::Instant>,
    /// Set by a failure, cleared by the next success: meanwhile one request at a time.
    probing: bool,
    inflight: FuturesUnordered<BoxFuture<'static, Outcome>>,
    /// When the youngest in-flight request went out.
    last_sent: tokio::time::Instant,
    /// Smoothed round trip of successful requests: how long a batch takes to come back.
    rtt: Duration,
    /// Set while a partial batch waits for the youngest request to be one round trip old.
    pace_until: Option<tokio::time::Instant>,
    /// Set after a batch was read from the store (catch-up): the task lets the node's other
    /// tasks run before it reads the next one.
    yield_next: bool,
    /// Catch-up pace: no batch is read from the store before this (see `fill_window`).
    catchup_at: tokio::time::Instant,
    /// Lines for batches sent and acknowledged (see `LineBudget`).
    lines: LineBudget,
    /// The heartbeat view's recovery count and incarnation we last acted on.
    seen_recoveries: u64,
    seen_instance: Option<String>,
    last_error: Option<String>,
    shutdown: CancellationToken,
}

impl ReplicationTask {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        replica: Arc<Replica>,
        peer: Peer,
        store: Arc<dyn LogStore>,
        tail: Option<Arc<TailCache>>,
        tracker: Arc<AckTracker>,
        log_id: LogId,
        last_key: watch::Receiver<u64>,
        cfg: ReplicationSettings,
        lines: LineBudget,
        shutdown: CancellationToken,
    ) -> Self {
        let health = replica.health.clone();
        let backoff = Backoff::new(cfg.retry_delays());
        ReplicationTask {
            replica,
            peer,
            store,
            tail,
            tracker,
            log_id,
            last_key,
            health,
            cfg,
            progress: Progress::new(),
            backoff,
            retry_at: None,
            probing: false,
            inflight: FuturesUnordered::new(),
            last_sent: tokio::time::Instant::now(),
            rtt: Duration::from_millis(1),
            pace_until: None,
            yield_next: false,
            catchup_at: tokio::time::Instant::now(),
            lines,
            seen_recoveries: 0,
            seen_instance: None,
            last_error: None,
            shutdown,
        }
    }

    pub async fn run(mut self) {
        self.on_health();
        loop {
            if std::mem::take(&mut self.yield_next) {
                tokio::task::yield_now().await;
            }
            self.fill_window();
            self.publish();
            let retry_at = self.retry_at;
            let pace_until = self.pace_until;
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                Some(out) = self.inflight.next(), if !self.inflight.is_empty() => self.on_outcome(out),
                r = self.last_key.changed() => {
                    if r.is_err() { return }
                    // Mark it seen even when sending is paused, or `changed()` would fire
                    // again at once and spin.
                    self.last_key.borrow_and_update();
                }
                r = self.health.changed() => {
                    if r.is_err() { return }
                    self.on_health();
                }
                _ = sleep_until_opt(pace_until), if pace_until.is_some() => {}
                _ = sleep_until_opt(retry_at), if retry_at.is_some() => {
                    self.retry_at = None;
                    self.progress.go_back();
                    tracing::info!(
                        secondary = %self.peer.name,
                        from = self.progress.acked_key() + 1,
                        attempt = self.backoff.attempts() + 1,
                        "retrying replication to {}", self.peer.name
                    );
                }
            }
        }
    }

    fn may_send(&self) -> bool {
        self.retry_at.is_none()
            && self.progress.is_known()
            && self.health.borrow().status != HealthStatus::Unhealthy
    }

    /// Sends batches while the window has room.
    ///
    /// Pacing (adaptive batching without a linger): with nothing in flight a batch goes out at
    /// once, however small, so a lone client waits for nobody. With requests in flight, a
    /// partial batch goes out only once the youngest request is about one round trip old;
    /// until then new entries accumulate and the next batch carries them all. Under load this
    /// turns one request per append into one per round trip, and a delayed request (older
    /// than a round trip) never holds back the next batch.
    fn fill_window(&mut self) {
        self.pace_until = None;
        if !self.may_send() {
            return;
        }
        let last = *self.last_key.borrow();
        // After a failure the window shrinks to one request until one succeeds. The retry
        // then carries every missing key in one all-or-nothing batch: were later keys sent
        // beside it, a secondary that refused key K (a 409: it holds another message there)
        // could store K + 1.. behind the conflict, and a failing secondary gets one request
        // at a time, not a window of them.
        let window = if self.probing {
            1
        } else {
            self.cfg.max_inflight
        };
        while self.inflight.len() < window {
            let Some((from, count)) = self.progress.next_range(last, self.cfg.max_batch_entries)
            else {
                break;
            };
            if !self.inflight.is_empty() && count < self.cfg.max_batch_entries {
                let ready_at = self.last_sent + self.rtt.clamp(MIN_PACE, MAX_PACE);
                if tokio::time::Instant::now() < ready_at {
                    self.pace_until = Some(ready_at);
                    break;
                }
            }
            let cached = self
                .tail
                .as_ref()
                .and_then(|t| t.read(from, count, self.cfg.max_batch_bytes));
            let from_store = cached.is_none();
            if from_store && tokio::time::Instant::now() < self.catchup_at {
                self.pace_until = Some(self.catchup_at);
                break;
            }
            let read = match cached {
                Some(entries) => Ok(entries),
                None => self.store.read(from, count, self.cfg.max_batch_bytes),
            };
            let entries = match read {
                Ok(e) if !e.is_empty() => e,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(secondary = %self.peer.name, from, cause = %e, "reading the log for replication failed");
                    self.schedule_retry(format!("reading the log failed: {e}"));
                    break;
                }
            };
            let n = entries.len();
            let hi = from + n as u64 - 1;
            self.progress.sent(from, n);
            if self
                .lines
                .admit()
                .log("replication batches (sent/acknowledged)")
            {
                tracing::info!(
                secondary = %self.peer.name,
                from,
                to = hi,
                count = n,
                "replication sent keys {from}..={hi} to {}",
                self.peer.name
                );
            }
            let peer = self.peer.clone();
            let log_id = self.log_id;
            let timeout = self.cfg.request_timeout();
            let sent_at = tokio::time::Instant::now();
            self.last_sent = sent_at;
            self.inflight.push(Box::pin(async move {
                let result = peer.replicate(log_id, &entries, timeout).await;
                Outcome {
                    lo: from,
                    hi,
                    sent_at,
                    result,
                }
            }));
            // Catch-up reads older entries from disk, a millisecond or so per full batch, on
            // the thread that also serves live appends, and the secondary storing them at full
            // speed takes a core: one such batch per turn, and no more than
            // `max_catchup_messages_per_s`, so live appends keep most of the machine.
            if from_store {
                let rate = self.cfg.max_catchup_messages_per_s;
                if rate > 0 {
                    let pause = Duration::from_secs_f64(n as f64 / rate as f64);
                    self.catchup_at = self.catchup_at.max(sent_at) + pause;
                }
                self.yield_next = true;
                break;
            }
        }
    }

    fn on_outcome(&mut self, out: Outcome) {
        match out.result {
            Ok(mut ack) => {
                let sample = out.sent_at.elapsed();
                self.rtt = (self.rtt * 7 + sample) / 8;
                // Keys beyond the master's own log are not this log's (yet): a master back
                // with fewer keys than it had replicated must not take a secondary's prefix as
                // holding keys it will assign anew (`crate::recovery` adopts them first).
                ack.contiguous_key = ack.contiguous_key.min(*self.last_key.borrow());
                // The secondary stored the batch: it counts toward w whatever incarnation
                // answered; what to send next depends on the current one only. Its reported
                // prefix counts only when it introduces a new incarnation (like a heartbeat
                // does): within one, keys this master did not have acknowledged may hold
                // another message (see `Progress::on_ack`).
                self.tracker.record(self.replica.index, out.lo, out.hi);
                let new_incarnation = self.progress.instance() != Some(ack.instance.as_str());
                let current = self.progress.on_ack(&ack, out.lo, out.hi);
                if current && new_incarnation {
                    self.tracker
                        .record(self.replica.index, 1, ack.contiguous_key);
                }
                if self
                    .lines
                    .admit()
                    .log("replication batches (sent/acknowledged)")
                {
                    tracing::info!(
                        secondary = %self.peer.name,
                        from = out.lo,
                        to = out.hi,
                        contiguous_key = ack.contiguous_key,
                        "replication acknowledged keys {}..={} by {} (contiguous key {})",
                        out.lo, out.hi, self.peer.name, ack.contiguous_key
                    );
                }
                if current {
                    self.backoff.reset();
                    self.last_error = None;
                    self.probing = false;
                }
            }
            Err(e) => {
                tracing::warn!(
                    secondary = %self.peer.name,
                    from = out.lo,
                    to = out.hi,
                    cause = %e,
                    "replication of keys {}..={} to {} failed: {e}",
                    out.lo, out.hi, self.peer.name
                );
                self.schedule_retry(e.to_string());
            }
        }
    }

    /// Starts a backoff unless one is already running (failures of several in-flight
    /// requests to a node that went away are one failure, not many).
    fn schedule_retry(&mut self, error: String) {
        self.last_error = Some(error);
        self.probing = true;
        if self.retry_at.is_some() {
            return;
        }
        let delay = self.backoff.next_delay();
        self.replica
            .retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.retry_at = Some(tokio::time::Instant::now() + delay);
        tracing::warn!(
            secondary = %self.peer.name,
            delay_s = delay.as_secs_f64(),
            attempt = self.backoff.attempts(),
            "retry scheduled for {} in {:?} (attempt {})",
            self.peer.name, delay, self.backoff.attempts()
        );
    }

    fn on_health(&mut self) {
        let view = self.health.borrow_and_update().clone();
        if view.recoveries != self.seen_recoveries {
            self.seen_recoveries = view.recoveries;
            // Back from suspected/unhealthy: whatever was in flight went to a connection that
            // may be dead; drop it and send everything missing now, without waiting out the
            // backoff.
            self.inflight = FuturesUnordered::new();
            self.retry_at = None;
            self.backoff.reset();
            self.last_error = None;
            self.progress.go_back();
            tracing::info!(
                secondary = %self.peer.name,
                from = self.progress.acked_key() + 1,
                "{} is reachable again: resending everything it misses now",
                self.peer.name
            );
        }
        if view.instance.is_some() && view.instance != self.seen_instance {
            self.seen_instance = view.instance.clone();
            let instance = view.instance.as_deref().unwrap_or_default();
            // Its prefix is this log's only if it is bound to this log: a secondary of
            // another log (or an unbound one holding a script's PUTs) holds other messages
            // under the same keys. Then everything is sent from key 1, and it answers with
            // the conflict (409) that `/health` shows.
            let bound_here = view
                .log_id
                .as_deref()
                .and_then(|id| id.parse::<LogId>().ok())
                == Some(self.log_id);
            let reported = view.contiguous_key.unwrap_or(0);
            // Clamped to the master's log, as for acks (see `on_outcome`).
            let contiguous = if bound_here {
                reported.min(*self.last_key.borrow())
            } else {
                0
            };
            if !bound_here && reported > 0 {
                tracing::warn!(
                    secondary = %self.peer.name,
                    log_id = view.log_id.as_deref().unwrap_or("none"),
                    contiguous_key = reported,
                    "{} holds keys up to {reported} of log {}, not of this master's log {}: none of them counts",
                    self.peer.name,
                    view.log_id.as_deref().unwrap_or("(unbound)"),
                    self.log_id
                );
            }
            if self.progress.instance() != Some(instance)
                && self.progress.become_incarnation(instance, contiguous)
            {
                self.tracker.record(self.replica.index, 1, contiguous);
                tracing::info!(
                    secondary = %self.peer.name,
                    contiguous_key = contiguous,
                    "{} holds keys up to {contiguous}; replicating from key {}",
                    self.peer.name,
                    contiguous + 1
                );
            }
        }
        if view.status == HealthStatus::Unhealthy && self.last_error.is_none() {
            self.last_error = view.error.clone();
        }
    }

    fn publish(&self) {
        let mut p = self.replica.progress.lock();
        p.acked_key = self.progress.acked_key();
        p.inflight = self.inflight.len();
        p.retry_at = self.retry_at.map(|t| {
            let left = t.saturating_duration_since(tokio::time::Instant::now());
            Instant::now() + left
        });
        p.error = self.last_error.clone();
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => tokio::time::sleep(Duration::from_secs(3600)).await,
    }
}

/// The view `/health` gives of a replica's progress.
pub fn snapshot(r: &Replica) -> ProgressView {
    r.progress.lock().clone()
}
