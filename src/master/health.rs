//! Heartbeats, per-secondary health, and the quorum that decides read-only mode (SPEC §5).
//!
//! One heartbeat worker per secondary sends `GET /heartbeat` every `heartbeat.interval_ms`,
//! each with a bounded timeout (default: the interval), so a paused node is suspected after
//! about two intervals and unhealthy after about five. The worker owns that secondary's
//! [`HealthStatus`]: `suspected_after` failures in a row → suspected, `unhealthy_after` →
//! unhealthy, one success → healthy. It publishes what it learns on the secondary's
//! [`HealthView`] watch, which the replication task follows (pause while unhealthy, resend at
//! once on recovery, rewind when the secondary restarted).
//!
//! [`Quorum`] recomputes the mode after every status change: available = 1 + secondaries that
//! are healthy or suspected; below the quorum the master is read-only. The mode is an atomic
//! read by the append handler before a key is assigned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::HeartbeatSettings;
use crate::domain::epoch::{Epochs, History};
use crate::master::peer::Peer;

/// A secondary's health as the master sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Suspected,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Suspected => "suspected",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// Healthy and suspected nodes count toward the quorum.
    pub fn is_available(self) -> bool {
        self != HealthStatus::Unhealthy
    }

    /// The status after one more heartbeat result.
    pub fn next(self, failures_in_a_row: u32, cfg: &HeartbeatSettings) -> HealthStatus {
        if failures_in_a_row == 0 {
            HealthStatus::Healthy
        } else if failures_in_a_row >= cfg.unhealthy_after {
            HealthStatus::Unhealthy
        } else if failures_in_a_row >= cfg.suspected_after {
            HealthStatus::Suspected
        } else {
            self
        }
    }
}

/// What the heartbeat worker knows about one secondary (published on a watch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthView {
    pub status: HealthStatus,
    pub failures: u32,
    /// The secondary's incarnation from its last answer (changes when it restarts).
    pub instance: Option<String>,
    /// Its contiguous key from its last answer.
    pub contiguous_key: Option<u64>,
    /// The log identity it is bound to, from its last answer (`None`: not bound yet). Its
    /// contiguous key says something about this master's log only when this is the master's.
    pub log_id: Option<String>,
    /// The last heartbeat error, until a heartbeat succeeds.
    pub error: Option<String>,
    /// Bumped every time the secondary comes back from suspected or unhealthy.
    pub recoveries: u64,
    /// Its epoch and history from its last answer (see `docs/log-matching.md`): with them the
    /// master tells how much of its contiguous prefix is this master's log.
    pub epochs: Option<Arc<Epochs>>,
    /// Entries it has cut from its log (diverged from a master's), from its last answer.
    pub cut_entries: u64,
    /// The replication task's incarnation-switch count when the heartbeat of the last answer
    /// was sent: the answer may bring in a new incarnation only if no other was learnt since
    /// (`crate::master::replication::progress`). Changes only when the task switches.
    pub asked_in: u64,
}

impl Default for HealthView {
    fn default() -> Self {
        // Optimistic until heard from: a fresh master accepts appends at once, and the first
        // heartbeat goes out immediately.
        HealthView {
            status: HealthStatus::Healthy,
            failures: 0,
            instance: None,
            contiguous_key: None,
            log_id: None,
            error: None,
            recoveries: 0,
            epochs: None,
            cut_entries: 0,
            asked_in: 0,
        }
    }
}

/// The master's mode, derived from the secondaries' health.
pub struct Quorum {
    quorum: usize,
    read_only: AtomicBool,
    views: Vec<watch::Receiver<HealthView>>,
    // Serialises re-evaluation so transitions are logged once and in order; never held
    // across an await.
    lock: parking_lot::Mutex<()>,
}

impl Quorum {
    /// `views`: one per secondary.
    pub fn new(quorum: usize, views: Vec<watch::Receiver<HealthView>>) -> Self {
        let q = Quorum {
            quorum,
            read_only: AtomicBool::new(false),
            views,
            lock: parking_lot::Mutex::new(()),
        };
        q.reevaluate();
        q
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// 1 (the master) + secondaries that are healthy or suspected.
    pub fn available(&self) -> usize {
        1 + self
            .views
            .iter()
            .filter(|v| v.borrow().status.is_available())
            .count()
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Recomputes the mode; logs a transition.
    pub fn reevaluate(&self) {
        let _guard = self.lock.lock();
        let available = self.available();
        let ro = available < self.quorum;
        let was = self.read_only.swap(ro, Ordering::AcqRel);
        if was != ro {
            if ro {
                tracing::warn!(
                    available,
                    quorum = self.quorum,
                    "mode change: read-write -> read-only ({available} nodes available, quorum is {}); appends are refused",
                    self.quorum
                );
            } else {
                tracing::info!(
                    available,
                    quorum = self.quorum,
                    "mode change: read-only -> read-write ({available} nodes available, quorum is {})",
                    self.quorum
                );
            }
        }
    }
}

/// What a master's tasks tell the node about its term (failover): a higher epoch seen in an
/// answer (a heartbeat, a refusal), upon which the master steps down.
#[derive(Debug, Default)]
pub struct TermSignals {
    pub higher_epoch: std::sync::atomic::AtomicU64,
    pub changed: tokio::sync::Notify,
}

impl TermSignals {
    /// A member answered in `epoch`.
    pub fn saw_epoch(&self, epoch: u64) {
        let before = self
            .higher_epoch
            .fetch_max(epoch, std::sync::atomic::Ordering::AcqRel);
        if epoch > before {
            self.changed.notify_waiters();
        }
    }
}

/// Heartbeats one secondary until shutdown; see the module docs. `epoch`: the master's, sent
/// with every heartbeat; `signals`: where a higher one in an answer is told.
#[allow(clippy::too_many_arguments)]
pub async fn heartbeat_worker(
    peer: Peer,
    view: watch::Sender<HealthView>,
    cfg: HeartbeatSettings,
    quorum: Arc<Quorum>,
    epoch: u64,
    signals: Arc<TermSignals>,
    last_ok_sent: Arc<parking_lot::Mutex<Option<tokio::time::Instant>>>,
    switches: Arc<std::sync::atomic::AtomicU64>,
    shutdown: CancellationToken,
) {
    let interval = cfg.interval();
    let timeout = cfg.timeout();
    loop {
        let started = tokio::time::Instant::now();
        // Read before the heartbeat goes out: its answer may be older than any switch after.
        let asked_in = switches.load(std::sync::atomic::Ordering::Acquire);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = peer.heartbeat(timeout, epoch) => r,
        };
        let before = view.borrow().clone();
        let mut after = before.clone();
        match result {
            Ok(hb) => {
                after.failures = 0;
                after.error = None;
                // The lease counts from when the answered heartbeat was sent (docs/failover.md),
                // and only answers within this term's epoch: a member in a later one may have
                // voted for another master already (this one steps down on seeing it).
                if hb.epoch <= epoch {
                    *last_ok_sent.lock() = Some(started);
                }
                signals.saw_epoch(hb.epoch);
                if after.instance.as_ref() != Some(&hb.instance) {
                    tracing::info!(
                        secondary = %peer.name,
                        instance = %hb.instance,
                        contiguous_key = hb.contiguous_key,
                        "heartbeat: {} is a new incarnation (contiguous key {})",
                        peer.name,
                        hb.contiguous_key
                    );
                }
                let epochs = match History::from_pairs(hb.epochs) {
                    Ok(history) => Some(Epochs {
                        current: hb.epoch,
                        history,
                        unlabelled: hb.unlabelled_from.into_iter().collect(),
                        voted_for: None,
                    }),
                    Err(e) => {
                        tracing::warn!(secondary = %peer.name, cause = %e, "heartbeat: {} sent an epoch history that is not one: {e}", peer.name);
                        None
                    }
                };
                // An unreadable history is as good as none: nothing of that log is trusted, and
                // the secondary does not count as heard from (`crate::master::recovery`).
                if after.epochs.as_deref() != epochs.as_ref() {
                    after.epochs = epochs.map(Arc::new);
                }
                after.instance = Some(hb.instance);
                after.contiguous_key = Some(hb.contiguous_key);
                after.log_id = hb.log_id;
                after.cut_entries = hb.cut_entries;
                after.asked_in = asked_in;
            }
            Err(e) => {
                after.failures = after.failures.saturating_add(1);
                tracing::debug!(secondary = %peer.name, failures = after.failures, cause = %e, "heartbeat failed");
                after.error = Some(format!("heartbeat: {e}"));
            }
        }
        after.status = before.status.next(after.failures, &cfg);
        if after.status != before.status {
            if after.status == HealthStatus::Healthy {
                after.recoveries += 1;
                tracing::info!(
                    secondary = %peer.name,
                    "heartbeat status change: {} {} -> healthy",
                    peer.name,
                    before.status.as_str()
                );
            } else {
                tracing::warn!(
                    secondary = %peer.name,
                    failures = after.failures,
                    "heartbeat status change: {} {} -> {} ({} heartbeats failed in a row; last: {})",
                    peer.name,
                    before.status.as_str(),
                    after.status.as_str(),
                    after.failures,
                    after.error.as_deref().unwrap_or("?")
                );
            }
        }
        let status_changed = after.status != before.status;
        view.send_if_modified(|v| {
            let changed = *v != after;
            *v = after;
            changed
        });
        if status_changed {
            quorum.reevaluate();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(started + interval) => {}
        }
    }
}

/// How long appends should wait before retrying while read-only: about one heartbeat.
pub fn retry_after(cfg: &HeartbeatSettings) -> Duration {
    cfg.interval().max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_failures_in_a_row() {
        let cfg = HeartbeatSettings::default();
        let mut s = HealthStatus::Healthy;
        let mut seen = Vec::new();
        for failures in 1..=6 {
            s = s.next(failures, &cfg);
            seen.push(s);
        }
        use HealthStatus::*;
        assert_eq!(
            seen,
            vec![
                Healthy, Suspected, Suspected, Suspected, Unhealthy, Unhealthy
            ]
        );
        assert_eq!(s.next(0, &cfg), Healthy);
    }
}
