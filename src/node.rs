//! [`Node`]: everything one running node shares between its HTTP handlers and background
//! tasks, and [`Node::start`], which wires it together.
//!
//! A node is a log store, the writer task that alone writes it, and — on the master — the ack
//! tracker, one heartbeat worker and one replication task per secondary, and the quorum. All
//! background tasks stop when the node's [`CancellationToken`] is cancelled.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::acks::AckTracker;
use crate::config::{Engine, Role, Settings};
use crate::faults::Faults;
use crate::health::{HealthView, Quorum, heartbeat_worker};
use crate::log::file::{FileStore, FileStoreOptions};
use crate::log::memory::MemoryStore;
use crate::log::{LogId, LogStore};
use crate::peer::Peer;
use crate::recovery::TailRecovery;
use crate::replication::task::ReplicationTask;
use crate::replication::{ProgressView, Replica};
use crate::telemetry::LineBudget;
use crate::writer::Writer;

/// The master-only part of a node.
pub struct MasterState {
    pub tracker: Arc<AckTracker>,
    /// One permit per append in progress (`master.max_pending_appends`): backpressure.
    pub pending: Arc<tokio::sync::Semaphore>,
    /// Set while the master recovers the tail of its log from a secondary (appends wait with
    /// 503); see `crate::recovery`.
    pub recovering: Arc<AtomicBool>,
    pub replicas: Vec<Arc<Replica>>,
    pub quorum: Arc<Quorum>,
    pub log_id: LogId,
}

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
    pub master: Option<MasterState>,
    /// Secondary: the master's client-facing URL, configured or learned from its requests.
    pub known_master: Mutex<Option<String>>,
    /// Lines for replication requests a secondary stores (see `LineBudget`).
    pub event_lines: LineBudget,
    /// What `GET /metrics` shows (see `crate::metrics`).
    pub metrics: crate::metrics::Metrics,
    pub shutdown: CancellationToken,
}

impl Node {
    /// Opens the store, starts the writer and (on the master) heartbeats and replication.
    /// Returns the node and its background tasks.
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
        let mut tasks = Vec::new();
        let instance = format!("{:016x}", rand::random::<u64>());
        let is_master = settings.node.role == Role::Master;

        let tracker = is_master.then(|| {
            // At startup the master knows only what it holds itself; what each secondary
            // holds it learns from that secondary (its first heartbeat or ack). Counting every
            // node for the keys already in the log would answer a retried id of a message
            // only the master held at once with acks = ALL, whatever its write concern.
            let t = AckTracker::new(settings.all_nodes(), 0);
            let last = store.contiguous_key();
            t.extend_to(last);
            t.record(0, 1, last);
            Arc::new(t)
        });
        let write_stats = crate::metrics::WriteStats::default();
        let (writer, contiguous, join) = Writer::spawn(
            store.clone(),
            write_stats.clone(),
            settings.storage.fsync,
            std::time::Duration::from_millis(settings.storage.fsync_interval_ms),
            tracker.clone(),
            settings.log.max_event_lines_per_s,
            settings.master.dedup_window,
            shutdown.clone(),
        );
        tasks.push(join);

        let master = match tracker {
            Some(tracker) => Some(start_master(
                &settings,
                store.clone(),
                writer.clone(),
                tracker,
                contiguous.clone(),
                shutdown.clone(),
                &mut tasks,
            )?),
            None => None,
        };

        let metrics = crate::metrics::Metrics::new(
            settings.all_nodes(),
            is_master,
            store.contiguous_key(),
            &write_stats,
        );
        let node = Node {
            metrics,
            faults: Faults::new(settings.fault.enabled, settings.fault.error_rate),
            known_master: Mutex::new(settings.secondary.master_url.clone()),
            event_lines: LineBudget::new(settings.log.max_event_lines_per_s),
            settings,
            store,
            writer,
            contiguous,
            instance,
            master,
            shutdown,
        };
        let node = Arc::new(node);
        if node.is_master() {
            tasks.push(tokio::spawn(crate::metrics::sample_log_end(node.clone())));
        }
        Ok((node, tasks))
    }

    /// The end of the visible log as acknowledged: written, and fsynced under
    /// `fsync = "always"`. Reads and acks use this, never the store's own (possibly
    /// not yet durable) end.
    pub fn acknowledged_key(&self) -> u64 {
        *self.contiguous.borrow()
    }

    pub fn is_master(&self) -> bool {
        self.master.is_some()
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
    if report.tail_cut.is_some() {
        tracing::warn!("startup recovery: {report}");
    } else {
        tracing::info!("startup recovery: {report}");
    }
    Ok(store)
}

fn start_master(
    settings: &Settings,
    store: Arc<dyn LogStore>,
    writer: Writer,
    tracker: Arc<AckTracker>,
    last_key: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<MasterState> {
    let existing = store.log_id().is_some();
    let log_id = match store.log_id() {
        Some(id) => id,
        None => {
            let id = LogId::random();
            store.set_log_id(id)?;
            tracing::info!(log_id = %id, "new log: identity {id}");
            id
        }
    };
    let client = Peer::http_client();
    let heartbeat_client = Peer::http_client();
    let advertise = settings.master.advertise_url.clone();
    let token = settings
        .node
        .cluster_token
        .as_ref()
        .map(|t| t.expose().to_string());

    let mut senders = Vec::new();
    let mut replicas = Vec::new();
    let mut peers = Vec::new();
    for (i, s) in settings.master.secondaries.iter().enumerate() {
        let (tx, rx) = watch::channel(HealthView::default());
        let peer = Peer::new(
            &s.name,
            &s.url,
            client.clone(),
            token.clone(),
            advertise.clone(),
        );
        // The heartbeats share the replication connections' state: a heartbeat that gets no
        // answer drops the idle ones (see `Peer::heartbeat`).
        senders.push((tx, peer.with_client(heartbeat_client.clone())));
        peers.push(peer);
        replicas.push(Arc::new(Replica {
            index: i + 1,
            name: s.name.clone(),
            url: s.url.clone(),
            health: rx,
            progress: Mutex::new(ProgressView::default()),
            retries: Default::default(),
        }));
    }
    let quorum = Arc::new(Quorum::new(
        settings.quorum(),
        replicas.iter().map(|r| r.health.clone()).collect(),
    ));
    for (tx, peer) in senders {
        tasks.push(tokio::spawn(heartbeat_worker(
            peer,
            tx,
            settings.heartbeat.clone(),
            quorum.clone(),
            shutdown.clone(),
        )));
    }
    for (r, peer) in replicas.iter().zip(&peers) {
        let task = ReplicationTask::new(
            r.clone(),
            peer.clone(),
            store.clone(),
            writer.tail(),
            tracker.clone(),
            log_id,
            last_key.clone(),
            settings.replication.clone(),
            LineBudget::new(settings.log.max_event_lines_per_s),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(task.run()));
    }
    // A master with an existing log checks its secondaries before assigning new keys; a new
    // log has nothing to recover.
    let recovering = Arc::new(AtomicBool::new(existing && !replicas.is_empty()));
    let recovery = TailRecovery {
        views: replicas.iter().map(|r| r.health.clone()).collect(),
        peers,
        writer,
        tracker: tracker.clone(),
        last_key: last_key.clone(),
        log_id,
        recovering: recovering.clone(),
        startup_wait: settings.heartbeat.timeout() + settings.heartbeat.interval(),
        max_value: settings.limits.max_message_bytes,
        request_timeout: settings.replication.request_timeout(),
        shutdown: shutdown.clone(),
    };
    tasks.push(tokio::spawn(recovery.run()));
    Ok(MasterState {
        pending: Arc::new(tokio::sync::Semaphore::new(
            settings.master.max_pending_appends,
        )),
        tracker,
        recovering,
        replicas,
        quorum,
        log_id,
    })
}
