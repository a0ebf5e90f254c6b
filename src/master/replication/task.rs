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
use crate::config::ReplicationSettings;
use crate::domain::Entry;
use crate::domain::LogId;
use crate::domain::epoch::Epochs;
use crate::master::acks::AckTracker;
use crate::master::health::{HealthStatus, HealthView};
use crate::master::peer::Peer;
use crate::master::transport::PeerError;
use crate::protocol::BatchAck;
use crate::storage::LogStore;
use crate::storage::tail::TailCache;
use crate::telemetry::LineBudget;

/// Bounds of the pacing interval (see `fill_window`): the smoothed round trip, clamped so that
/// one slow answer (a `/delay`) cannot stall batching for long.
const MIN_PACE: Duration = Duration::from_micros(50);
const MAX_PACE: Duration = Duration::from_millis(2);

struct Outcome {
    lo: u64,
    hi: u64,
    sent_at: tokio::time::Instant,
    /// The master's last key and epochs when the batch went out: what the secondary
    /// reconciled with before it answered.
    last_then: u64,
    epochs_then: Arc<Epochs>,
    /// `Progress::switches` when the batch went out: its answer may bring in a new
    /// incarnation only if no other was learnt since (`progress` module docs).
    switches_then: u64,
    result: Result<BatchAck, PeerError>,
}

/// Replicates to one secondary until shutdown; see the module docs.
pub struct ReplicationTask {
    replica: Arc<Replica>,
    peer: Peer,
    store: Arc<dyn LogStore>,
    /// The newest entries, read before the store (see `crate::storage::tail`).
    tail: Option<Arc<TailCache>>,
    tracker: Arc<AckTracker>,
    log_id: LogId,
    /// The master's epoch and history; every batch carries them (see `docs/log-matching.md`).
    epochs: watch::Receiver<Arc<Epochs>>,
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
    /// The epoch of the master's term (failover: the record it must deliver; see
    /// [`ReplicationTask::in_term`]).
    term_epoch: u64,
    /// Failover on: counting is by contiguous prefix, and the record of the term's epoch goes
    /// out even when nothing else does (`docs/failover.md`, rules 4 and 5).
    failover: bool,
    /// The heartbeat view's recovery count, and incarnation and `asked_in` we last acted on.
    seen_recoveries: u64,
    seen_instance: Option<(String, u64)>,
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
        epochs: watch::Receiver<Arc<Epochs>>,
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
            epochs,
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
            term_epoch: 0,
            failover: false,
            seen_recoveries: 0,
            seen_instance: None,
            last_error: None,
            shutdown,
        }
    }

    /// The task of a master's term in `epoch`, with failover on or off.
    pub fn in_term(mut self, epoch: u64, failover: bool) -> Self {
        self.term_epoch = epoch;
        self.failover = failover;
        self
    }

    pub async fn run(mut self) {
        // A fresh `Progress` counts switches from 0, whatever a task before it published.
        self.publish_switches();
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
                // Failover: a secondary with nothing to take still gets the record of the
                // term's epoch, in a batch of no entries.
                if self.failover
                    && self.inflight.is_empty()
                    && !self
                        .replica
                        .holds_record
                        .load(std::sync::atomic::Ordering::Acquire)
                {
                    self.send(self.progress.acked_key() + 1, Vec::new(), last);
                }
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
            let sent_at = self.send(from, entries, last);
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

    /// Sends `entries` (keys from `from`; none: the history alone) with the master's epoch and
    /// history as they are now; `last`: the master's last key when they were read.
    fn send(&mut self, from: u64, entries: Vec<Entry>, last: u64) -> tokio::time::Instant {
        let peer = self.peer.clone();
        let log_id = self.log_id;
        // Read after the entries were: it labels every one of them (`Writer::epochs`).
        let mut epochs = self.epochs.borrow().clone();
        // Failover: the request speaks for this term, in its epoch. The node may have taken a
        // later one meanwhile (a vote request it refused); its requests must not carry that
        // one in the moment before it steps down, or secondaries would take them for those of
        // that epoch's master, whoever it is.
        if self.failover && epochs.current != self.term_epoch {
            let mut term = (*epochs).clone();
            term.current = self.term_epoch;
            epochs = Arc::new(term);
        }
        let timeout = self.cfg.request_timeout();
        let sent_at = tokio::time::Instant::now();
        self.last_sent = sent_at;
        let hi = from + entries.len() as u64 - 1;
        let switches_then = self.progress.switches();
        self.inflight.push(Box::pin(async move {
            let result = peer.replicate(log_id, &epochs, &entries, timeout).await;
            Outcome {
                lo: from,
                hi,
                sent_at,
                last_then: last,
                epochs_then: epochs,
                switches_then,
                result,
            }
        }));
        sent_at
    }

    fn on_outcome(&mut self, out: Outcome) {
        match out.result {
            Ok(mut ack) => {
                let sample = out.sent_at.elapsed();
                self.rtt = (self.rtt * 7 + sample) / 8;
                // The secondary reconciled with the history the batch carried before it
                // stored it, so its log is that history's: of its contiguous prefix, the keys
                // up to the master's last key *then*, below any key that history and the
                // master's of now label differently, and below a script's key, are this
                // master's log. Keys beyond are not (yet): a master back with fewer keys than
                // it had replicated must not take them as holding keys it assigns anew
                // (`crate::master::recovery` adopts them first).
                let now = self.epochs.borrow().clone();
                let below = [
                    out.epochs_then.history.divergence(&now.history),
                    ack.unlabelled_from,
                ]
                .into_iter()
                .flatten()
                .min()
                .map_or(u64::MAX, |k| k - 1);
                ack.contiguous_key = ack.contiguous_key.min(out.last_then).min(below);
                // Its prefix counts when the answer introduces a new incarnation (which
                // replaces whatever the old one was counted for); the batch's keys count for
                // the incarnation that answered only if it is the current one
                // (`docs/log-matching.md`, rule AcksAreHeld).
                let new_incarnation = self.progress.instance() != Some(ack.instance.as_str());
                let current = self
                    .progress
                    .on_ack(&ack, out.lo, out.hi, out.switches_then);
                if current {
                    if new_incarnation {
                        self.publish_switches();
                        self.tracker
                            .reset_node(self.replica.index, ack.contiguous_key);
                    }
                    if self.failover {
                        // Only a prefix without a gap counts (`docs/failover.md`, rule 5), and
                        // the record of the term's epoch is held once the secondary took the
                        // opened history and holds every key before the epoch's first.
                        self.tracker
                            .record(self.replica.index, 1, ack.contiguous_key);
                        let history = &out.epochs_then.history;
                        if history.last_epoch() == self.term_epoch
                            && let Some(&(_, first)) = history.pairs().last()
                            && ack.contiguous_key + 1 >= first
                        {
                            self.replica
                                .holds_record
                                .store(true, std::sync::atomic::Ordering::Release);
                        }
                    } else {
                        self.tracker.record(self.replica.index, out.lo, out.hi);
                    }
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
        // Looked at again when `asked_in` changes too: an answer refused as asked before the
        // current incarnation was learnt is taken from the next heartbeat, asked after.
        let seen = view.instance.clone().map(|i| (i, view.asked_in));
        if seen.is_some() && seen != self.seen_instance {
            self.seen_instance = seen;
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
            let last = *self.last_key.borrow();
            // Of its prefix, only keys up to the master's last and below the point where its
            // history and the master's label keys differently are this master's log; the rest
            // it will cut when the next batch comes (rule `AcksAreHeld`).
            let diverges = match (&view.epochs, bound_here) {
                (Some(theirs), true) => self.epochs.borrow().history.divergence(&theirs.history),
                _ => Some(1),
            };
            // A script's key (`PUT /message`) is no master's: nothing from it on counts.
            let vouched = view.epochs.as_ref().and_then(|e| e.vouched_below());
            let contiguous = reported
                .min(last)
                .min(diverges.map_or(u64::MAX, |d| d - 1))
                .min(vouched.map_or(u64::MAX, |k| k - 1));
            if bound_here
                && let Some(d) = diverges
                && d <= reported
            {
                tracing::warn!(
                    secondary = %self.peer.name,
                    divergence = d,
                    contiguous_key = reported,
                    "{}'s log diverges from this master's at key {d} (it holds keys up to {reported}; its epochs: {}; the master's: {}): it is counted up to key {contiguous}, replicated from key {}, and cuts its keys from {d} when it takes the next batch",
                    self.peer.name,
                    view.epochs.as_ref().map_or_else(|| "unknown".to_string(), |e| e.history.to_string()),
                    self.epochs.borrow().history,
                    contiguous + 1
                );
            }
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
                && self
                    .progress
                    .become_incarnation(instance, contiguous, view.asked_in)
            {
                self.publish_switches();
                self.tracker.reset_node(self.replica.index, contiguous);
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

    /// Tells the heartbeat worker the incarnation changed (see `Replica::switches`).
    fn publish_switches(&self) {
        self.replica.switches.store(
            self.progress.switches(),
            std::sync::atomic::Ordering::Release,
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;
    use crate::storage::testing::{entries, epochs, until};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Review of issue 15 (`AcksAreHeld`): a batch answered by a *new* incarnation counts that
    /// incarnation's whole contiguous prefix, clamped to the master's last key *when the answer
    /// arrives*. The secondary reconciled with the history the batch carried, which is the
    /// master's history *when it was sent*: if the master opened its epoch in between (keys
    /// 21.. are now epoch 2's), the secondary's keys 21.. are whatever the older history let it
    /// keep (here epoch 1's keys the master lost), yet they are counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn review_15_a_new_incarnation_answering_a_batch_of_an_older_history_is_counted_only_for_it()
     {
        // A secondary that answers the first batch when the test says so, as incarnation "b"
        // holding keys 1..=30 (21..=30 are epoch 1's, which the master lost), and never answers
        // the ones after it.
        let seen = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let app = axum::Router::new().route(
            "/replicate",
            axum::routing::post({
                let (seen, release) = (seen.clone(), release.clone());
                move || async move {
                    if seen.fetch_add(1, Ordering::SeqCst) > 0 {
                        std::future::pending::<()>().await;
                    }
                    release.notified().await;
                    axum::Json(BatchAck {
                        contiguous_key: 30,
                        instance: "b".into(),
                        stored: 5,
                        unlabelled_from: None,
                    })
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(axum::serve(listener, app).into_future());

        // The master (epoch 2, not opened yet: history 1:1) holds keys 1..=20; the secondary,
        // incarnation "a", holds 1..=15.
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        store.put(&entries(1..=20, "m")).unwrap();
        let tracker = Arc::new(AckTracker::new(2));
        tracker.extend_to(20);
        tracker.record(0, 1, 20);
        let (epochs_tx, epochs_rx) = watch::channel(Arc::new(epochs(2, &[(1, 1)])));
        let (last_tx, last_rx) = watch::channel(20u64);
        let log_id = LogId(7);
        let (_health_tx, health_rx) = watch::channel(HealthView {
            instance: Some("a".into()),
            contiguous_key: Some(15),
            log_id: Some(log_id.to_string()),
            epochs: Some(Arc::new(epochs(1, &[(1, 1)]))),
            ..HealthView::default()
        });
        let replica = Arc::new(Replica {
            index: 1,
            name: "s1".into(),
            url: url.clone(),
            health: health_rx,
            progress: parking_lot::Mutex::new(ProgressView::default()),
            retries: Default::default(),
            last_ok_sent: Default::default(),
            holds_record: Default::default(),
            switches: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let task = ReplicationTask::new(
            replica,
            Peer::new("s1", &url, Peer::http_client(), None, None),
            store.clone(),
            None,
            tracker.clone(),
            log_id,
            epochs_rx,
            last_rx,
            ReplicationSettings::default(),
            LineBudget::new(0),
            shutdown.clone(),
        );
        tokio::spawn(task.run());

        // Act: keys 16..=20 go out with history 1:1; before the answer the master opens epoch 2
        // at key 21 and writes 21..=25; the answer comes from incarnation "b".
        until("the batch 16..=20 was sent", || {
            seen.load(Ordering::SeqCst) == 1
        })
        .await;
        store.put(&entries(21..=25, "new")).unwrap();
        tracker.extend_to(25);
        tracker.record(0, 21, 25);
        epochs_tx.send_replace(Arc::new(epochs(2, &[(1, 1), (2, 21)])));
        last_tx.send_replace(25);
        release.notify_one();
        until("the answer was taken", || tracker.acks(18) == 2).await;

        // Assert: "b" holds epoch 1's key 23, not the master's: only the master is counted.
        assert_eq!(
            tracker.acks(23),
            1,
            "incarnation b is counted for key 23, which it holds as epoch 1 wrote it"
        );
        shutdown.cancel();
        server.abort();
    }
}
