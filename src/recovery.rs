//! Tail recovery: a master never reuses a key that a secondary of its log already holds.
//!
//! Normally a secondary holds at most what the master holds: the master replicates only what
//! it has written (and fsynced, under `fsync = "always"`). But a master can come back from a
//! power loss (`fsync = "interval"` or `"never"`) or a damaged disk with *fewer* keys than it
//! had replicated. If it then assigned those keys to new messages, the logs would diverge, and
//! messages acknowledged with `w ≥ 2` would be lost.
//!
//! So the master watches what its secondaries report (heartbeats: log identity and contiguous
//! key). Whenever a secondary bound to this master's log holds keys beyond the master's log,
//! the master reads them back (`GET /replicate` on that secondary) and adopts them through its
//! writer, which takes only entries that continue its log exactly (see `Writer::put`).
//! While that runs, appends are refused with 503 (`recovering`), so no new key is assigned in
//! between. At startup of a master with an existing log, appends wait (at most about one
//! heartbeat interval plus timeout) until every secondary has answered or failed a first
//! heartbeat, so that a tail held by a reachable secondary is recovered before the first new
//! key. A secondary that is down then and returns later with more keys is still recovered from
//! as long as this master process has not assigned a key itself. Once it has, a secondary
//! ahead of it holds keys the master never had (a script's `PUT /message`, or a tail that
//! came back too late): nothing is adopted, that secondary refuses the master's own entries
//! under those keys (409), and `/health` shows it: logs are never mixed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::acks::AckTracker;
use crate::health::HealthView;
use crate::log::LogId;
use crate::peer::Peer;
use crate::writer::Writer;

/// Entries fetched per request.
const FETCH: usize = 4096;

/// Everything the recovery task needs; see the module docs.
pub struct TailRecovery {
    pub views: Vec<watch::Receiver<HealthView>>,
    pub peers: Vec<Peer>,
    pub writer: Writer,
    pub tracker: Arc<AckTracker>,
    pub last_key: watch::Receiver<u64>,
    pub log_id: LogId,
    /// Set while appends must wait; the append handler reads it.
    pub recovering: Arc<AtomicBool>,
    pub startup_wait: Duration,
    pub max_value: usize,
    pub request_timeout: Duration,
    pub shutdown: CancellationToken,
}

impl TailRecovery {
    pub async fn run(mut self) {
        if self.recovering.load(Ordering::Acquire) {
            self.wait_for_first_heartbeats().await;
            self.pass().await;
            self.recovering.store(false, Ordering::Release);
            tracing::info!("log tail checked against the secondaries; taking appends");
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

    /// Until every secondary answered or failed one heartbeat, or the startup wait ends.
    async fn wait_for_first_heartbeats(&self) {
        let deadline = tokio::time::Instant::now() + self.startup_wait;
        while tokio::time::Instant::now() < deadline {
            let heard = self.views.iter().all(|v| {
                let v = v.borrow();
                v.instance.is_some() || v.failures > 0
            });
            if heard || self.shutdown.is_cancelled() {
                return;
            }
            // Startup only, for at most `startup_wait`.
            tokio::time::sleep(Duration::from_millis(10)).await;
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
        self.views
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let v = v.borrow();
                let k = v.contiguous_key?;
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
            let entries = match peer
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
            match self.writer.put(entries).await {
                Ok(0) => return true,
                Ok(_) => {
                    // That secondary holds what it sent us.
                    self.tracker.record(i + 1, from, last);
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
