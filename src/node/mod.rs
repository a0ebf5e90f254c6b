//! [`Node`]: everything one running node shares between its HTTP handlers and background
//! tasks, and [`Node::start`], which wires it together.
//!
//! A node is a log store, the writer task that alone writes it, and — while it is a master —
//! a [`role::MasterState`]: the ack tracker, one heartbeat worker and one replication task per
//! secondary, the quorum and the tail recovery. The role is runtime state: [`role`] makes a
//! node a master or a secondary without a restart, and the fixed role of `node.role` at start
//! goes through the same path. All background tasks stop when the node's
//! [`CancellationToken`] is cancelled.

pub mod failover;
pub mod role;
pub mod startup;

pub use role::MasterState;

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Engine, Role, Settings};
use crate::secondary::faults::Faults;
use crate::storage::LogStore;
use crate::storage::file::{FileStore, FileStoreOptions};
use crate::storage::memory::MemoryStore;
use crate::storage::writer::{Writer, WriterOptions};
use crate::telemetry::LineBudget;

/// One running node; shared by handlers as `Arc<Node>`.
pub struct Node {
    pub settings: Settings,
    pub store: Arc<dyn LogStore>,
    pub writer: Writer,
    /// The end of the visible, acknowledged log; long polls and replication wait on it.
    pub contiguous: watch::Receiver<u64>,
    /// This process's incarnation (random per start); tells the master about restarts.
    pub instance: String,
    pub faults: Faults,
    /// What this node is now: `Some` while it is a master (see [`role`]). Swapped, never
    /// locked: handlers load it once per request.
    master: ArcSwapOption<MasterState>,
    /// Serialises role changes ([`Node::become_master`], [`Node::become_secondary`]).
    role_change: tokio::sync::Mutex<()>,
    /// With failover on: elections, terms, the known master (`failover`).
    pub failover: Option<Arc<failover::Failover>>,
    /// Secondary: the master's client-facing URL, configured or learned from its requests.
    pub known_master: Mutex<Option<String>>,
    /// Secondary: the last master epoch and history parsed from replication headers, kept so
    /// the next request of the same master need not parse them again.
    pub last_master_epochs: Mutex<Option<(String, String, Arc<crate::domain::epoch::FromMaster>)>>,
    /// Lines for replication requests a secondary stores (see `LineBudget`).
    pub event_lines: LineBudget,
    /// What `GET /metrics` shows (see `crate::metrics`).
    pub metrics: crate::metrics::Metrics,
    pub shutdown: CancellationToken,
}

impl Node {
    /// Opens the store, starts the writer, and — with `node.role = "master"` — makes the node
    /// a master ([`Node::become_master`], the same path a role change at run time takes).
    /// Returns the node and its background tasks (a master's own tasks are its
    /// [`role::MasterState`]'s).
    pub async fn start(
        settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Arc<Node>, Vec<JoinHandle<()>>)> {
        let store: Arc<dyn LogStore> = match settings.storage.engine {
            Engine::Memory => {
                tracing::info!(
                    "storage: in memory (storage.engine = \"memory\"): nothing survives a restart"
                );
                Arc::new(MemoryStore::new())
            }
            Engine::Disk => Arc::new(open_disk(&settings).await?),
        };
        Node::with_store(settings, store, shutdown).await
    }

    /// [`Node::start`] over a store already open.
    pub async fn with_store(
        settings: Settings,
        store: Arc<dyn LogStore>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Arc<Node>, Vec<JoinHandle<()>>)> {
        let instance = format!("{:016x}", rand::random::<u64>());
        let write_stats = crate::storage::writer::WriteStats::default();
        // Failover, rule 9: back from an unclean stop with a log not fsynced on every write,
        // the node holds back from elections until it has caught up with a master (see
        // `failover::Failover::new`); a clean stop meanwhile is recorded as unclean, so a
        // restart does not end the hold.
        let hold_until = (settings.failover.enabled
            && !store.last_stop_clean()
            && settings.storage.fsync != crate::config::FsyncPolicy::Always)
            .then(|| {
                tokio::time::Instant::now()
                    + std::time::Duration::from_millis(settings.master.recovery_wait_ms)
            });
        let holding = Arc::new(std::sync::atomic::AtomicBool::new(hold_until.is_some()));
        let (writer, contiguous, join) = Writer::spawn(
            store.clone(),
            write_stats.clone(),
            WriterOptions {
                fsync: settings.storage.fsync,
                fsync_interval: std::time::Duration::from_millis(
                    settings.storage.fsync_interval_ms,
                ),
                event_lines_per_s: settings.log.max_event_lines_per_s,
                dedup_window: settings.master.dedup_window,
                master: None,
                keep_unclean: Some(holding.clone()),
            },
            shutdown.clone(),
        );
        let metrics = crate::metrics::Metrics::new(
            settings.all_nodes(),
            store.contiguous_key(),
            &write_stats,
        );
        let start_as_master = settings.node.role == Role::Master;
        let failover = settings.failover.enabled.then(|| {
            let token = settings
                .node
                .cluster_token
                .as_ref()
                .map(|t| t.expose().to_string());
            let client = crate::master::peer::Peer::http_client();
            let peers = settings
                .failover
                .members
                .iter()
                .filter(|m| m.name != settings.node.name)
                .map(|m| {
                    crate::master::peer::Peer::new(
                        &m.name,
                        &m.url,
                        client.clone(),
                        token.clone(),
                        None,
                    )
                })
                .collect();
            failover::Failover::new(
                &settings.node.name,
                &settings,
                peers,
                hold_until.map(|until| failover::Hold {
                    until,
                    holding,
                    came_back_in: writer.current_epochs().current,
                }),
                // An empty log with no epoch: a new member, or a wiped one (see
                // `Failover::new`).
                *contiguous.borrow() == 0 && writer.current_epochs().current == 0,
            )
        });
        let node = Arc::new(Node {
            metrics,
            faults: Faults::new(settings.fault.enabled, settings.fault.error_rate),
            known_master: Mutex::new(settings.secondary.master_url.clone()),
            last_master_epochs: Mutex::new(None),
            event_lines: LineBudget::new(settings.log.max_event_lines_per_s),
            settings,
            store,
            writer,
            contiguous,
            instance,
            master: ArcSwapOption::empty(),
            role_change: tokio::sync::Mutex::new(()),
            failover: failover.map(Arc::new),
            shutdown,
        });
        let mut tasks = vec![join];
        match &node.failover {
            // `node.role` counts at the very first start only (docs/failover.md, rule 9), and
            // even then through an election: an empty data dir is also what a wiped node
            // starts with, and a wiped master that made itself master of epoch 1 with a new
            // log identity would never rejoin the cluster's log (its members refuse another
            // log) and, in epoch 1 still, would keep them from electing anyone. Standing at
            // once wins in a new cluster; in a running one, members that hear their master
            // refuse the pre-vote, and this node joins as a secondary.
            Some(f) => {
                let first_start = start_as_master && node.writer.current_epochs().current == 0;
                tasks.push(tokio::spawn(failover::run(
                    node.clone(),
                    f.clone(),
                    first_start,
                )));
            }
            None => {
                if start_as_master {
                    node.become_master(None).await?;
                }
            }
        }
        Ok((node, tasks))
    }

    /// The end of the visible log as acknowledged: written, and fsynced under
    /// `fsync = "always"`. Reads and acks use this, never the store's own (possibly
    /// not yet durable) end.
    pub fn acknowledged_key(&self) -> u64 {
        *self.contiguous.borrow()
    }

    /// The master's state while this node is one.
    pub fn master(&self) -> Option<Arc<MasterState>> {
        self.master.load_full()
    }

    pub fn is_master(&self) -> bool {
        self.master.load().is_some()
    }

    /// Whether master `m`'s lease holds now. With failover it is judged from when the
    /// answered heartbeats were sent ([`failover::Failover::lease_holds`]), never from the
    /// term watch's last verdict alone: after a pause of the process that verdict is as old
    /// as the pause, and a deposed master would take appends, or tell `/health` readers it
    /// is read-write, before the watch runs again (docs/failover.md, rule 6).
    pub fn lease_holds(&self, m: &MasterState) -> bool {
        m.lease_ok.load(std::sync::atomic::Ordering::Acquire)
            && self.failover.as_ref().is_none_or(|f| f.lease_holds(m))
    }

    pub fn name(&self) -> &str {
        &self.settings.node.name
    }
}

/// Opens (and recovers) the node's log in `node.data_dir`, logging what recovery found.
async fn open_disk(settings: &Settings) -> anyhow::Result<FileStore> {
    let dir = settings.node.data_dir.clone();
    let opts = FileStoreOptions {
        segment_bytes: settings.storage.segment_bytes,
        // Only where every write waits for an fsync does writing zeros ahead pay for itself.
        zero_ahead: settings.storage.fsync == crate::config::FsyncPolicy::Always,
    };
    let open_dir = dir.clone();
    let (store, report) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&open_dir)?;
        FileStore::open(&open_dir, opts).map_err(anyhow::Error::from)
    })
    .await?
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the log in {} (node.data_dir): {e}",
            dir.display()
        )
    })?;
    // A cut moved back to the end of the log means synced data was lost: as loud as a torn
    // tail.
    if report.tail_cut.is_some() || report.cuts_clamped > 0 {
        tracing::warn!("startup recovery: {report}");
    } else {
        tracing::info!("startup recovery: {report}");
    }
    Ok(store)
}
