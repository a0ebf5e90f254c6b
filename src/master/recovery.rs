//! Tail recovery: a master never reuses a key that a secondary of its log already holds.
//!
//! Normally a secondary holds at most what the master holds: the master replicates only what
//! it has written (and fsynced, under `fsync = "always"`). But a master can come back from a
//! power loss (`fsync = "interval"` or `"never"`) or a damaged disk with *fewer* keys than it
//! had replicated. If it then assigned those keys to new messages, the logs would diverge, and
//! messages acknowledged with `w ≥ 2` would be lost.
//!
//! So the master watches what its secondaries report (heartbeats: log identity, epoch history
//! and contiguous key). Whenever a secondary whose log matches the master's (bound to this log,
//! and its history labelling every key the master holds as the master's does: rule
//! `AdoptMatching` of `docs/log-matching.md`) holds keys beyond the master's log, the master
//! reads them back (`GET /replicate` on that secondary, which answers with the labels of what
//! it sends) and adopts them through its writer, which takes only entries that continue its
//! log exactly, their labels first (see `Writer::put`). While that runs, appends are refused
//! with 503 (`recovering`), so no new key is assigned in between.
//!
//! At startup of a master with an existing log, appends wait:
//! * after an **unclean** stop (no clean-stop marker: kill -9, a crash, a power loss) under
//!   `fsync = "interval"` / `"never"`, until `master.recovery_wait_for` secondaries (default
//!   all) have *answered* a heartbeat and whatever they hold beyond the master was adopted —
//!   or until `master.recovery_wait_ms` has passed, after which the master goes on without
//!   the others and says so (a warning, and `/health`'s `recovery`): keys only they hold are
//!   cut when they return;
//! * otherwise (a clean stop, or `always`, where no acknowledged key can have been lost), at
//!   most about one heartbeat interval plus timeout, until every secondary has answered or
//!   failed a first heartbeat.
//!
//! A secondary that returns later with more keys is still recovered from as long as this
//! master process has not assigned a key itself (its epoch is not open). Once it has, a
//! secondary ahead of it holds keys of an older epoch that the master went on without, and
//! cuts them when it takes the master's next batch (`docs/log-matching.md`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::LogId;
use crate::domain::epoch::Epochs;
use crate::master::health::HealthView;
use crate::master::peer::Peer;
use crate::storage::writer::Writer;

/// Entries fetched per request.
const FETCH: usize = 4096;

/// How a master with an existing log waits at startup before it assigns a key (see the
/// module docs).
#[derive(Clone, Debug)]
pub enum StartupWait {
    /// After a clean stop or under `always`: until every secondary answered or failed one
    /// heartbeat, at most this long.
    FirstHeartbeats(Duration),
    /// After an unclean stop under `interval` / `never`: until `heard` secondaries answered a
    /// heartbeat and their tails were adopted, at most `max`.
    Heard { heard: usize, max: Duration },
}

/// Everything the recovery task needs; see the module docs.
pub struct TailRecovery {
    pub views: Vec<watch::Receiver<HealthView>>,
    pub peers: Vec<Peer>,
    pub writer: Writer,
    pub last_key: watch::Receiver<u64>,
    pub log_id: LogId,
    /// The master's own epoch and history.
    pub epochs: watch::Receiver<Arc<Epochs>>,
    /// Set while appends must wait; the append handler reads it.
    pub recovering: Arc<AtomicBool>,
    /// The wait at startup; see the module docs.
    pub startup: StartupWait,
    /// What `/health` shows when the startup wait ended without every secondary heard.
    pub note: Arc<parking_lot::Mutex<Option<String>>>,
    pub max_value: usize,
    pub request_timeout: Duration,
    pub shutdown: CancellationToken,
}

impl TailRecovery {
    pub async fn run(mut self) {
        if self.recovering.load(Ordering::Acquire) {
            self.startup_wait().await;
            self.recovering.store(false, Ordering::Release);
        }
        loop {
            let changed = futures::future::select_all(
                self.views
                    .iter_mut()
                    .map(|v| Box::pin(v.changed()))
                    .collect::<Vec<_>>(),
            );
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                (r, _, _) = changed => if r.is_err() { return },
            }
            if !self.pass().await {
                // The source failed us; try again in a moment even if nothing changes.
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// Until the startup condition holds and a recovery pass succeeded, or the wait's
    /// deadline; then says what it did.
    async fn startup_wait(&mut self) {
        let max = match self.startup {
            StartupWait::FirstHeartbeats(d) => d,
            StartupWait::Heard { max, .. } => max,
        };
        let deadline = tokio::time::Instant::now() + max;
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let ready = self.startup_condition();
            // Adopt whatever is there already, and again once everyone needed was heard.
            let passed = self.pass().await;
            if ready && passed {
                tracing::info!("log tail checked against the secondaries; taking appends");
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            // Startup only, for at most the wait; a source that failed gets a moment.
            let pause = if passed { 10 } else { 200 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let unheard: Vec<String> = self
            .views
            .iter()
            .zip(&self.peers)
            .filter(|(v, _)| v.borrow().epochs.is_none())
            .map(|(_, p)| p.name.clone())
            .collect();
        match self.startup {
            StartupWait::Heard { heard, max } => {
                let last = *self.last_key.borrow();
                let note = format!(
                    "after an unclean stop the master waited {} ms for {heard} secondaries to answer and went on without {}: keys after {last} that only they hold are cut when they return",
                    max.as_millis(),
                    if unheard.is_empty() {
                        "a tail it could not read back".to_string()
                    } else {
                        unheard.join(", ")
                    }
                );
                tracing::warn!("{note}");
                *self.note.lock() = Some(note);
            }
            StartupWait::FirstHeartbeats(_) => {
                tracing::warn!(
                    "log tail check timed out (secondaries not heard from: {}); taking appends",
                    if unheard.is_empty() {
                        "none".to_string()
                    } else {
                        unheard.join(", ")
                    }
                );
            }
        }
    }

    fn startup_condition(&self) -> bool {
        match self.startup {
            StartupWait::FirstHeartbeats(_) => self.views.iter().all(|v| {
                let v = v.borrow();
                v.instance.is_some() || v.failures > 0
            }),
            StartupWait::Heard { heard, .. } => {
                self.views
                    .iter()
                    .filter(|v| v.borrow().epochs.is_some())
                    .count()
                    >= heard
            }
        }
    }

    /// The secondary of this log holding the most keys beyond the master's, if any.
    fn source(&self) -> Option<(usize, u64)> {
        if self.writer.has_assigned_keys() {
            // Adoption is closed (see `Writer::has_assigned_keys`).
            return None;
        }
        let last = *self.last_key.borrow();
        let ours = self.log_id.to_string();
        let own = self.epochs.borrow().clone();
        self.views
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let v = v.borrow();
                let epochs = v.epochs.as_ref()?;
                // What it holds that is this master's lost tail: its contiguous keys that
                // both histories label alike (rule `AdoptMatching`), below a script's key.
                let k = [
                    v.contiguous_key,
                    own.history.divergence(&epochs.history).map(|d| d - 1),
                    epochs.vouched_below().map(|u| u - 1),
                ]
                .into_iter()
                .flatten()
                .min()?;
                (v.log_id.as_deref() == Some(ours.as_str()) && k > last).then_some((i, k))
            })
            .max_by_key(|&(_, k)| k)
    }

    /// Recovers from the best source until no secondary is ahead. False if a source failed.
    async fn pass(&mut self) -> bool {
        while let Some((i, upto)) = self.source() {
            let last = *self.last_key.borrow();
            let name = self.peers[i].name.clone();
            let was = self.recovering.swap(true, Ordering::AcqRel);
            tracing::warn!(
                secondary = %name,
                "{name} holds keys up to {upto} of this log, the master only up to {last}: recovering keys {}..={upto} from it before assigning new keys",
                last + 1
            );
            let ok = self.copy_from(i, last + 1, upto).await;
            if !was {
                self.recovering.store(false, Ordering::Release);
            }
            // No progress (the source answered with nothing usable) would loop for ever: give
            // up for now and let the caller retry later.
            if !ok || *self.last_key.borrow() == last {
                return false;
            }
        }
        true
    }

    async fn copy_from(&mut self, i: usize, mut from: u64, upto: u64) -> bool {
        let peer = &self.peers[i];
        while from <= upto {
            let (entries, labels) = match peer
                .fetch(from, FETCH, self.max_value, self.request_timeout)
                .await
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(secondary = %peer.name, cause = %e, "reading keys from {from} back from {} failed: {e}", peer.name);
                    return false;
                }
            };
            let Some(last) = entries.last().map(|e| e.key) else {
                return true;
            };
            match self.writer.put(entries, Some(Arc::new(labels))).await {
                Ok(0) => return true,
                Ok(_) => {
                    // That secondary holds what it sent, but it is counted for it by its
                    // replication task, which knows which incarnation it is talking to: this
                    // one may have been replaced meanwhile (rule `AcksAreHeld`).
                    from = last + 1;
                }
                Err(e) => {
                    tracing::error!(cause = %e, "adopting recovered keys failed: {e}");
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FsyncPolicy;
    use crate::domain::epoch::History;
    use crate::master::acks::AckTracker;
    use crate::storage::LogStore;
    use crate::storage::testing::{GatedStore, entries, until};
    use crate::storage::writer::WriteStats;
    use crate::storage::writer::WriterOptions;

    /// Review of issue 15 (`AcksAreHeld`): the recovery counts its source for the keys it read
    /// from it (`tracker.record(i + 1, ..)`) once the writer adopted them, whatever incarnation
    /// that source is by then. A source that restarted (and lost those keys) between the read
    /// and the adoption's answer has already been reset to what its new incarnation holds by
    /// the replication task; the record then counts the new incarnation for keys it does not
    /// hold.
    // The gate is held across awaits on purpose: it stops the sync stage's thread, not this task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn review_15_a_source_that_restarted_during_adoption_is_not_counted_for_what_it_lost() {
        // A secondary (incarnation "a") that serves keys 11..=20 of epoch 1.
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/replicate",
            axum::routing::get({
                let fetches = fetches.clone();
                move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    (
                        [
                            (crate::protocol::EPOCH_HEADER, "1"),
                            (crate::protocol::EPOCHS_HEADER, "1:1"),
                        ],
                        crate::protocol::encode_batch(&entries(11..=20, "m")),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(axum::serve(listener, app).into_future());

        // The master (epoch 2) holds keys 1..=10 of epoch 1; the secondary reported 20.
        let log_id = LogId(7);
        let store = GatedStore::unclean();
        store
            .set_epochs(&Epochs {
                current: 1,
                history: History::from_pairs(vec![(1, 1)]).unwrap(),
                ..Default::default()
            })
            .unwrap();
        store.put(&entries(1..=10, "m")).unwrap();
        let tracker = Arc::new(AckTracker::new(2));
        tracker.extend_to(10);
        tracker.record(0, 1, 10);
        tracker.reset_node(1, 10);
        let shutdown = CancellationToken::new();
        let (writer, last_key, _) = Writer::spawn(
            store.clone(),
            WriteStats::default(),
            WriterOptions {
                fsync: FsyncPolicy::Always,
                fsync_interval: Duration::from_millis(100),
                event_lines_per_s: 0,
                dedup_window: None,
                keep_unclean: None,
                master: Some(crate::storage::writer::MasterWrites {
                    on_held: tracker.master_holds(),
                    epoch: Some(2),
                    open_at_once: false,
                }),
            },
            shutdown.clone(),
        );
        let (view_tx, view) = watch::channel(HealthView {
            instance: Some("a".into()),
            contiguous_key: Some(20),
            log_id: Some(log_id.to_string()),
            epochs: Some(Arc::new(Epochs {
                current: 1,
                history: History::from_pairs(vec![(1, 1)]).unwrap(),
                ..Default::default()
            })),
            ..HealthView::default()
        });
        let recovering = Arc::new(AtomicBool::new(true));
        let recovery = TailRecovery {
            views: vec![view],
            peers: vec![Peer::new("s1", &url, Peer::http_client(), None, None)],
            epochs: writer.epochs(),
            writer,
            last_key: last_key.clone(),
            log_id,
            recovering: recovering.clone(),
            startup: StartupWait::FirstHeartbeats(Duration::from_secs(5)),
            note: Arc::new(parking_lot::Mutex::new(None)),
            max_value: 1 << 20,
            request_timeout: Duration::from_secs(5),
            shutdown: shutdown.clone(),
        };

        // Act: the adoption's write waits for its fsync; meanwhile the secondary restarts as
        // incarnation "b" holding keys 1..=10 only, and the replication task, seeing it, resets
        // its count to that (what `ReplicationTask::on_health` does).
        let gate = store.gate.lock();
        tokio::spawn(recovery.run());
        until("keys 11..=20 fetched and written", || {
            fetches.load(Ordering::SeqCst) == 1 && store.contiguous_key() == 20
        })
        .await;
        view_tx.send_modify(|v| {
            v.instance = Some("b".into());
            v.contiguous_key = Some(10);
        });
        tracker.reset_node(1, 10);
        drop(gate);
        until("the adoption answered", || {
            *last_key.borrow() == 20 && !recovering.load(Ordering::Acquire)
        })
        .await;

        // Assert: only the master holds key 15.
        assert_eq!(
            tracker.acks(15),
            1,
            "the restarted source (incarnation b, holding 1..=10) is counted for key 15"
        );
        shutdown.cancel();
        server.abort();
    }
}
