//! A node's role as runtime state: [`Node::become_master`] and [`Node::become_secondary`]
//! switch it without a restart, and the role of `node.role` at start goes through the same
//! path ([`Node::start`]).
//!
//! Becoming a master: the writer takes the next epoch (on disk before anything is written in
//! it) and starts assigning keys and counting itself in a fresh ack tracker; then the term's
//! tasks start under a token of their own — one heartbeat worker and one replication task per
//! secondary, the tail recovery, the log-end sampler — and the [`MasterState`] is published
//! for the handlers. Stepping down is the reverse: the state is withdrawn (handlers answer as a
//! secondary from then on), the term's token cancelled and its tasks awaited, appends still
//! waiting on its ack tracker answered (their outcome is unknown), and the writer stops
//! assigning keys.
//!
//! Invariant: at most one [`MasterState`] exists per node at a time, and role changes are
//! serialised (`Node::role_change`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Node;
use crate::domain::LogId;
use crate::master::acks::AckTracker;
use crate::master::health::{HealthView, Quorum, TermSignals, heartbeat_worker};
use crate::master::peer::Peer;
use crate::master::recovery::{StartupWait, TailRecovery};
use crate::master::replication::task::ReplicationTask;
use crate::master::replication::{ProgressView, Replica};
use crate::storage::writer::MasterWrites;
use crate::telemetry::LineBudget;

/// What a node has while it is a master, for one term: dropped (its tasks stopped, its
/// waiting appends answered) when the node stops being one.
pub struct MasterState {
    /// The epoch this term holds office in.
    pub epoch: u64,
    pub tracker: Arc<AckTracker>,
    /// One permit per append in progress (`master.max_pending_appends`): backpressure.
    pub pending: Arc<tokio::sync::Semaphore>,
    /// Set while the master recovers the tail of its log from a secondary (appends wait with
    /// 503); see `crate::master::recovery`.
    pub recovering: Arc<AtomicBool>,
    pub replicas: Vec<Arc<Replica>>,
    pub quorum: Arc<Quorum>,
    pub log_id: LogId,
    /// Set when the startup recovery went on without every secondary it waits for.
    pub recovery_note: Arc<Mutex<Option<String>>>,
    /// What the term's tasks saw of other epochs (failover: a higher one deposes it).
    pub signals: Arc<TermSignals>,
    /// Failover: whether a majority answered within the lease (`crate::node::failover`);
    /// appends are refused without it. Always true with failover off.
    pub lease_ok: AtomicBool,
    /// Failover: whether a majority holds the record of this term's epoch; until then the
    /// master acknowledges nothing (`docs/failover.md`, rule 4). Always true with failover off.
    pub in_office: AtomicBool,
    /// Cancelled when the term ends (a child of the node's shutdown token): every task below
    /// watches it.
    cancel: CancellationToken,
    /// The term's tasks: heartbeats, replication, recovery, the log-end sampler.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Node {
    /// Makes this node a master in `epoch` (`None`: the next one after every epoch it has
    /// seen); see the module docs. Returns the epoch. A node that is a master already stays
    /// one, in its epoch.
    pub async fn become_master(self: &Arc<Self>, epoch: Option<u64>) -> anyhow::Result<u64> {
        let _serial = self.role_change.lock().await;
        if let Some(m) = self.master() {
            return Ok(m.epoch);
        }
        // What each secondary holds, the master learns from that secondary (its first
        // heartbeat or answer); the writer counts the master for its whole log at once.
        let tracker = Arc::new(AckTracker::new(self.settings.all_nodes()));
        let office = self
            .writer
            .become_master(MasterWrites {
                on_held: tracker.master_holds(),
                epoch,
                open_at_once: self.failover.is_some(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot become a master: {e}"))?;
        let cancel = self.shutdown.child_token();
        let state = Arc::new(start_master(self, office.epoch, tracker, cancel)?);
        state
            .tasks
            .lock()
            .push(tokio::spawn(sample_log_end(self.clone(), state.clone())));
        self.master.store(Some(state));
        Ok(office.epoch)
    }

    /// Makes this node a secondary; see the module docs. A node that is not a master is left
    /// as it is.
    pub async fn become_secondary(&self) -> anyhow::Result<()> {
        let _serial = self.role_change.lock().await;
        let Some(m) = self.master.swap(None) else {
            return Ok(());
        };
        m.cancel.cancel();
        m.tracker.close();
        let tasks = std::mem::take(&mut *m.tasks.lock());
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.writer
            .become_secondary()
            .await
            .map_err(|e| anyhow::anyhow!("cannot become a secondary: {e}"))?;
        tracing::info!(epoch = m.epoch, "stepped down: a secondary now");
        Ok(())
    }

    /// At shutdown: waits (briefly) for the tasks of the master's term, if any; the node's
    /// shutdown token has cancelled them.
    pub async fn join_role_tasks(&self) {
        if let Some(m) = self.master() {
            let tasks = std::mem::take(&mut *m.tasks.lock());
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
            }
        }
    }
}

/// Master: samples the end of the log into the metrics' timeline (`crate::metrics::Timeline`)
/// until the term ends.
async fn sample_log_end(node: Arc<Node>, m: Arc<MasterState>) {
    let mut end = node.contiguous.clone();
    loop {
        tokio::select! {
            _ = m.cancel.cancelled() => return,
            r = end.changed() => if r.is_err() { return },
        }
        let key = *end.borrow_and_update();
        node.metrics.timeline.record(key, std::time::Instant::now());
        let needed = m
            .replicas
            .iter()
            .map(|r| r.progress.lock().acked_key + 1)
            .min()
            .unwrap_or(key + 1);
        node.metrics.timeline.forget_below(needed);
        tokio::select! {
            _ = m.cancel.cancelled() => return,
            _ = tokio::time::sleep(crate::metrics::SAMPLE_EVERY) => {}
        }
    }
}

/// Starts a master's term over a writer that just became a master's (`epoch`, counted in
/// `tracker`): heartbeats, replication tasks and the tail recovery, under `cancel`.
fn start_master(
    node: &Node,
    epoch: u64,
    tracker: Arc<AckTracker>,
    cancel: CancellationToken,
) -> anyhow::Result<MasterState> {
    let settings = &node.settings;
    let store = node.store.clone();
    let writer = node.writer.clone();
    let last_key = node.contiguous.clone();
    let shutdown = cancel.clone();
    let mut tasks = Vec::new();
    let tasks = &mut tasks;
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
    let failover = node.failover.is_some();
    // With failover a secondary learns the master's name and URL from its requests.
    let advertise = settings.master.advertise_url.clone().or_else(|| {
        failover
            .then(|| settings.own_url().map(str::to_string))
            .flatten()
    });
    let signals = Arc::new(TermSignals::default());
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
        let mut peer = Peer::new(
            &s.name,
            &s.url,
            client.clone(),
            token.clone(),
            advertise.clone(),
        );
        if failover {
            peer = peer
                .with_master_name(&settings.node.name)
                .with_election_timeout(settings.election_timeout())
                .with_members(crate::protocol::members_fingerprint(
                    &settings.failover.members,
                ));
        }
        let last_ok_sent = Arc::new(Mutex::new(None));
        let switches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // The heartbeats share the replication connections' state: a heartbeat that gets no
        // answer drops the idle ones (see `Peer::heartbeat`).
        senders.push((
            tx,
            peer.with_client(heartbeat_client.clone()),
            last_ok_sent.clone(),
            switches.clone(),
        ));
        peers.push(peer);
        replicas.push(Arc::new(Replica {
            index: i + 1,
            name: s.name.clone(),
            url: s.url.clone(),
            health: rx,
            progress: Mutex::new(ProgressView::default()),
            retries: Default::default(),
            last_ok_sent,
            holds_record: AtomicBool::new(false),
            switches,
        }));
    }
    let quorum = Arc::new(Quorum::new(
        settings.quorum(),
        replicas.iter().map(|r| r.health.clone()).collect(),
    ));
    for (tx, peer, last_ok_sent, switches) in senders {
        tasks.push(tokio::spawn(heartbeat_worker(
            peer,
            tx,
            settings.heartbeat.clone(),
            quorum.clone(),
            epoch,
            signals.clone(),
            last_ok_sent,
            switches,
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
            writer.epochs(),
            last_key.clone(),
            settings.replication.clone(),
            LineBudget::new(settings.log.max_event_lines_per_s),
            shutdown.clone(),
        )
        .in_term(epoch, failover);
        tasks.push(tokio::spawn(task.run()));
    }
    // A master with an existing log checks its secondaries before assigning new keys; a new
    // log has nothing to recover. With failover the election chose a log complete enough
    // (docs/failover.md): nothing is adopted, what lies beyond it elsewhere is cut.
    let recovering = Arc::new(AtomicBool::new(
        existing && !replicas.is_empty() && !failover,
    ));
    // After an unclean stop the master may have lost a tail its secondaries hold: it waits to
    // hear from them (see `crate::master::recovery`). Under `always` nothing replicated can be lost.
    let startup = if store.last_stop_clean()
        || settings.storage.fsync == crate::config::FsyncPolicy::Always
    {
        StartupWait::FirstHeartbeats(settings.heartbeat.timeout() + settings.heartbeat.interval())
    } else {
        let heard = settings.master.recovery_wait_for.unwrap_or(replicas.len());
        // With failover no tail recovery runs (above): nothing waits, so nothing is said.
        if existing && !replicas.is_empty() && !failover {
            tracing::warn!(
                "the last stop was not clean: appends wait until {heard} secondaries have answered (at most {} ms) so that a tail this master lost is taken back first",
                settings.master.recovery_wait_ms
            );
        }
        StartupWait::Heard {
            heard,
            max: std::time::Duration::from_millis(settings.master.recovery_wait_ms),
        }
    };
    let recovery_note = Arc::new(Mutex::new(None));
    let recovery = TailRecovery {
        views: replicas.iter().map(|r| r.health.clone()).collect(),
        peers,
        epochs: writer.epochs(),
        writer,
        last_key: last_key.clone(),
        log_id,
        recovering: recovering.clone(),
        startup,
        note: recovery_note.clone(),
        max_value: settings.limits.max_message_bytes,
        request_timeout: settings.replication.request_timeout(),
        shutdown: shutdown.clone(),
    };
    if !failover {
        tasks.push(tokio::spawn(recovery.run()));
    }
    Ok(MasterState {
        pending: Arc::new(tokio::sync::Semaphore::new(
            settings.master.max_pending_appends,
        )),
        tracker,
        recovering,
        replicas,
        quorum,
        log_id,
        recovery_note,
        epoch,
        lease_ok: AtomicBool::new(true),
        in_office: AtomicBool::new(!failover),
        signals,
        cancel,
        tasks: Mutex::new(std::mem::take(tasks)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::config::Settings;
    use crate::node::startup::Application;

    async fn post(c: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
        let r = c
            .post(format!("{url}/message"))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(c: &reqwest::Client, url: &str, path: &str) -> (u16, Value) {
        let r = c.get(format!("{url}{path}")).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A node serving HTTP changes its role in-process and back: it answers appends as a
    /// master only while it is one, a new term takes a new epoch, and an append waiting on a
    /// master that steps down is answered (its outcome unknown) rather than left hanging.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_changes_role_at_run_time_and_back() {
        // Arrange: a secondary at first; as a master it would have one secondary, which is
        // never there (quorum 1 keeps it writable).
        let settings = Settings::from_toml(
            r#"
            [node]
            name = "n1"
            role = "secondary"
            listen = "127.0.0.1:0"
            [master]
            secondaries = [{ name = "gone", url = "http://127.0.0.1:9" }]
            quorum = 1
            [storage]
            engine = "memory"
            [fault]
            enabled = true
            [log]
            file = ""
            "#,
        )
        .expect("settings");
        let app = Application::build(settings).await.expect("build");
        let node = app.node();
        let url = format!("http://{}", app.local_addr());
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let serving = tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));
        let c = reqwest::Client::new();

        // Act + assert: a secondary refuses appends.
        assert_eq!(post(&c, &url, json!({"value": "a"})).await.0, 421);
        assert_eq!(get(&c, &url, "/health").await.1["role"], "secondary");

        // Master, epoch 1.
        assert_eq!(node.become_master(None).await.expect("master"), 1);
        let (status, body) = post(&c, &url, json!({"value": "a", "write_concern": 1})).await;
        assert_eq!((status, body["key"].clone()), (201, json!(1)), "{body}");
        let (_, h) = get(&c, &url, "/health").await;
        assert_eq!(
            (h["role"].clone(), h["epoch"].clone()),
            (json!("master"), json!(1)),
            "{h}"
        );
        assert_eq!(
            get(&c, &url, "/fault").await.0,
            404,
            "a master has no test endpoints"
        );

        // An append waiting for the secondary that never comes…
        let waiting = tokio::spawn({
            let (c, url) = (c.clone(), url.clone());
            async move { post(&c, &url, json!({"value": "b", "write_concern": 2})).await }
        });
        let mut deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while node.master().is_none_or(|m| m.tracker.waiting() == 0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the append never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // …is answered when the master steps down.
        node.become_secondary().await.expect("secondary");
        let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("answered")
            .expect("task");
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["key"], 2, "{body}");
        assert_eq!(post(&c, &url, json!({"value": "c"})).await.0, 421);
        let (_, h) = get(&c, &url, "/health").await;
        assert_eq!(h["role"], "secondary", "{h}");
        assert_eq!(
            get(&c, &url, "/fault").await.0,
            200,
            "a secondary has its test endpoints"
        );
        let (_, msgs) = get(&c, &url, "/messages").await;
        assert_eq!(
            msgs,
            json!([{"key": 1, "value": "a"}, {"key": 2, "value": "b"}])
        );

        // And back: a new term, a new epoch, the log goes on (once the new term has checked
        // its log's end against its secondary: 503 "recovering" until then, as after a start).
        assert_eq!(node.become_master(None).await.expect("master again"), 2);
        deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let (status, body) = loop {
            let (status, body) = post(&c, &url, json!({"value": "d", "write_concern": 1})).await;
            if status != 503 || tokio::time::Instant::now() > deadline {
                break (status, body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!((status, body["key"].clone()), (201, json!(3)), "{body}");
        let (_, h) = get(&c, &url, "/health").await;
        assert_eq!(h["epochs"], json!([[1, 1], [2, 3]]), "{h}");

        stop.cancel();
        serving.await.expect("task").expect("stopped");
    }
}
