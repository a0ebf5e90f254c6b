//! The writer: the one task that writes a node's log.
//!
//! Every append (master) and every replicated entry (secondary) goes through one
//! [`Writer`] handle into one task, which drains whatever has queued up and writes it with one
//! [`LogStore::put`] per request kind. The write is then *settled* — published and answered —
//! at once, or under `fsync = "always"` by the sync stage (`sync_stage`, a thread of its
//! own) once an fsync covers it. The sync stage takes every write that queued up since its
//! last fsync and covers them with one, while the writer goes on writing: pipelined group
//! commit. Draining the queue is the batching: under load many appends share one write and
//! one fsync; with one client nothing waits for a batch to fill.
//!
//! Invariants:
//! * keys are assigned here and only here, as `contiguous_key() + 1, + 2, …`, so the master's
//!   log has no holes and no two appends get the same key;
//! * an entry is acknowledged (its reply sent, its master ack recorded, the published
//!   `contiguous` key moved past it) only after it is written, and under
//!   `fsync = "always"` only after an fsync that covers it;
//! * the idempotency index (`id` → key) changes only together with a successful write;
//! * writes are settled in the order they were written, so the published `contiguous` key
//!   only moves forward and never past an entry whose fsync has not returned — except through
//!   a cut (below), which moves it back and makes every write settled after it that was
//!   written before it publish nothing;
//! * after an fsync failed (the store's sticky failure), nothing is written, answered as
//!   stored or published until the node restarts.
//!
//! Log matching (`docs/log-matching.md`) happens here too, serialised with the writes it
//! guards: the master *opens* its epoch (appends `(epoch, first key)` to its history, fsynced)
//! before the first key it assigns, and takes the labels of a tail it adopts before writing
//! it; a secondary *reconciles* with the master that sent a batch (refuses an older epoch, cuts
//! what the master's history labels differently, takes that history, fsynced) before storing
//! the batch. Labels are always durable before the entries they label.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::FsyncPolicy;
use crate::domain::Entry;
use crate::domain::epoch::{Epochs, FromMaster, History};
use crate::storage::dedup::{DedupStats, IdIndex};
use crate::storage::tail::TailCache;
use crate::storage::{Cut, LogStore, StoreError};
use crate::telemetry::LineBudget;

/// The writer's figures, made before the writer starts and registered with the node's other
/// metrics (`crate::metrics`). Cloning shares the series.
#[derive(Clone)]
pub struct WriteStats {
    /// How long each fsync of the log took (both policies that fsync).
    pub fsync: Histogram,
    /// Messages per write of the log: how many appends or replicated entries one write (and,
    /// under `fsync = "always"`, one fsync) carried. Group commit at work shows here.
    pub batch: Histogram,
}

impl Default for WriteStats {
    fn default() -> Self {
        WriteStats {
            // 20 µs to about 10 s.
            fsync: Histogram::new(exponential_buckets(0.00002, 2.0, 20)),
            // 1 to 4096 messages (the writer's largest batch), then +Inf.
            batch: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

/// Most requests folded into one write.
const MAX_BATCH: usize = 4096;
/// Requests that may queue for the writer before senders wait.
const QUEUE: usize = 16 * 1024;
/// Bounds of the master's [`TailCache`]: a few round trips of replication at full speed.
const TAIL_ENTRIES: usize = 64 * 1024;
const TAIL_BYTES: usize = 16 << 20;

/// What an append became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// A new message with this key.
    New(u64),
    /// The id was already in the log under this key; nothing was appended.
    Duplicate(u64),
}

/// Why the writer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the log writer has stopped (the node is shutting down)")]
    Stopped,
    #[error("written but not made durable: fsync failed: {0}")]
    Sync(String),
    /// A replication request from a master of an epoch this node has seen replaced.
    #[error(
        "this node has accepted epoch {have}; a master of epoch {got} was replaced and its entries are refused"
    )]
    StaleEpoch { have: u64, got: u64 },
    /// An append reached a node that is not (or no longer) a master.
    #[error("this node is not the master (any more): nothing was appended")]
    NotMaster,
    /// A request its master sent before it opened its epoch, carrying keys that its history
    /// of now labels otherwise: the master sends them again.
    #[error(
        "a request of the epoch-{epoch} master sent before it opened its epoch carries keys from {from_key}, which its history of now labels otherwise; it is refused (the master resends them)"
    )]
    StaleHistory { epoch: u64, from_key: u64 },
    /// Entries sent to a secondary's endpoint reached a node that is a master now (it was
    /// elected while the request was on its way): a master stores no other master's entries.
    #[error(
        "this node is the master of epoch {epoch} now; it takes no replicated entries (a request of the epoch-{got} master is refused)"
    )]
    IsMaster { epoch: u64, got: u64 },
    /// An earlier fsync failed: nothing is taken until the node restarts.
    #[error(
        "an earlier fsync of the log failed ({0}); this node takes no writes until it is restarted"
    )]
    Failed(String),
}

/// How the writer of a node is set up.
pub struct WriterOptions {
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// Lines per second for "append received, key assigned" (see `LineBudget`).
    pub event_lines_per_s: u32,
    /// How many recent messages have their ids remembered (`None`: all; see `crate::storage::dedup`).
    pub dedup_window: Option<u64>,
    /// Start as a master (see [`Writer::become_master`]); `None`: as a secondary.
    pub master: Option<MasterWrites>,
    /// While this flag is set a stop is not recorded as clean, however clean: the node still
    /// holds back after an unclean stop (failover, `docs/failover.md` rule 9: it has not
    /// caught up with a master), and a clean stop would end that hold at the next start.
    pub keep_unclean: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Told by the writer, once a write is settled (written, and fsynced under
/// `fsync = "always"`), that the master holds keys `first..=last`: the node wires it to its
/// ack tracker, so the store knows nothing of acks.
pub type OnHeld = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What makes a writer a master's.
#[derive(Clone)]
pub struct MasterWrites {
    pub on_held: OnHeld,
    /// The epoch to hold office in: `None` takes the next one after every epoch this node has
    /// seen (a fixed master at every start); an election gives one (failover).
    pub epoch: Option<u64>,
    /// Open the epoch at once (failover: its record goes to the secondaries before any
    /// append), rather than at the first key assigned (which leaves adoption open until then).
    pub open_at_once: bool,
}

/// What the writer does when it becomes a master: see [`Writer::become_master`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Office {
    /// The epoch it holds office in (on disk).
    pub epoch: u64,
    /// Its last key then: it holds keys `1..=last_key`.
    pub last_key: u64,
}

enum Command {
    Append {
        value: Bytes,
        id: Option<Bytes>,
        reply: oneshot::Sender<Result<Appended, WriteError>>,
    },
    Put {
        entries: Vec<Entry>,
        from: Option<Arc<FromMaster>>,
        /// Sent to a secondary's endpoint (a master's batch, a script's `PUT /message`), as
        /// opposed to a tail a master recovers: refused if this node is a master by now.
        to_secondary: bool,
        reply: oneshot::Sender<Result<usize, WriteError>>,
    },
    /// Become a master (`Some`) or a secondary (`None`).
    Role {
        master: Option<MasterWrites>,
        reply: oneshot::Sender<Result<Option<Office>, WriteError>>,
    },
    /// Failover: a vote (or pre-vote) asked of this node (`docs/failover.md`).
    Vote {
        request: VoteRequest,
        reply: oneshot::Sender<Result<VoteAnswer, WriteError>>,
    },
    /// Failover: this node stands for the next epoch, voting for itself.
    Candidacy {
        name: String,
        reply: oneshot::Sender<Result<u64, WriteError>>,
    },
    /// Failover: a higher epoch was seen (in a heartbeat or an answer).
    RaiseEpoch {
        epoch: u64,
        reply: oneshot::Sender<Result<u64, WriteError>>,
    },
}

impl Command {
    /// Commands that change the node's role or epoch: taken between writes, in order.
    fn is_control(&self) -> bool {
        !matches!(self, Command::Append { .. } | Command::Put { .. })
    }
}

/// A vote asked of this node (see `docs/failover.md`, rule 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    /// The epoch the candidate stands for.
    pub epoch: u64,
    pub candidate: String,
    /// The candidate's log: the last epoch of its history and its contiguous key.
    pub last_epoch: u64,
    pub last_key: u64,
    /// A pre-vote: would this node vote? Nothing is recorded.
    pub pre_vote: bool,
    /// Whether this node heard from a live master within the election timeout (then it
    /// votes for nobody: the master is alive for all it knows).
    pub heard_master: bool,
}

/// The answer to a [`VoteRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteAnswer {
    /// This node's epoch after the request.
    pub epoch: u64,
    pub granted: bool,
    /// Why not, when not granted.
    pub reason: String,
}

/// A cheap, cloneable handle to the node's writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
    dedup: Arc<DedupStats>,
    /// Set once the writer assigned its first key (see `WriterTask::assigned_keys`).
    assigned: Arc<AtomicBool>,
    /// The newest entries written (master only; see [`Writer::tail`]).
    tail: Arc<parking_lot::RwLock<Option<Arc<TailCache>>>>,
    /// See [`Writer::held_aside`].
    aside: Arc<AtomicUsize>,
    /// See [`Writer::epochs`].
    epochs: watch::Receiver<Arc<Epochs>>,
}

impl Writer {
    /// Starts the writer over `store` (see [`WriterOptions`]). Returns the handle and a watch
    /// of the visible log's end, which moves only past acknowledged entries.
    pub fn spawn(
        store: Arc<dyn LogStore>,
        stats: WriteStats,
        opts: WriterOptions,
        shutdown: CancellationToken,
    ) -> (Writer, watch::Receiver<u64>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let start = store.contiguous_key();
        let (contiguous_tx, contiguous_rx) = watch::channel(start);
        let ids = IdIndex::new(opts.dedup_window);
        let dedup = ids.stats();
        if opts.fsync == FsyncPolicy::Interval {
            tokio::spawn(sync_every(
                store.clone(),
                opts.fsync_interval,
                stats.fsync.clone(),
                shutdown.clone(),
            ));
        }
        let assigned = Arc::new(AtomicBool::new(false));
        let tail = Arc::new(parking_lot::RwLock::new(None));
        let aside = Arc::new(AtomicUsize::new(store.held_aside()));
        let own = store.epochs();
        let (epochs_tx, epochs_rx) = watch::channel(Arc::new(own.clone()));
        let publish = Arc::new(Publish {
            on_held: parking_lot::RwLock::new(None),
            contiguous: contiguous_tx,
            aside: aside.clone(),
            cuts: AtomicU64::new(0),
        });
        let (syncer, sync_stage) = if opts.fsync == FsyncPolicy::Always {
            let (tx, rx) = std::sync::mpsc::channel();
            let (store, publish, took) = (store.clone(), publish.clone(), stats.fsync.clone());
            // A thread of the blocking pool for as long as the writer runs.
            let stage = tokio::task::spawn_blocking(move || sync_stage(store, rx, publish, took));
            (Some(tx), Some(stage))
        } else {
            (None, None)
        };
        let mut task = WriterTask {
            tail: tail.clone(),
            store,
            ids,
            lines: LineBudget::new(opts.event_lines_per_s),
            assigned_keys: assigned.clone(),
            publish,
            syncer,
            sync_stage,
            stats,
            epoch: None,
            own,
            epochs: epochs_tx,
            keep_unclean: opts.keep_unclean,
        };
        if let Some(m) = opts.master
            && let Err(e) = task.become_master(m)
        {
            tracing::error!(cause = %e, "the writer could not start as a master's: {e}");
        }
        let join = tokio::spawn(task.run(rx, shutdown));
        (
            Writer {
                tx,
                dedup,
                assigned,
                tail,
                aside,
                epochs: epochs_rx,
            },
            contiguous_rx,
            join,
        )
    }

    /// The node's epoch and history as last written (see `crate::domain::epoch`). A master's history
    /// moves here before the entries it labels are written, so a history read after the
    /// `contiguous` watch labels every entry up to the key read from it.
    pub fn epochs(&self) -> watch::Receiver<Arc<Epochs>> {
        self.epochs.clone()
    }

    /// The node's epoch and history now (see [`Writer::epochs`]).
    pub fn current_epochs(&self) -> Arc<Epochs> {
        self.epochs.borrow().clone()
    }

    /// How many ids the idempotency index holds, and their bytes (master; zero otherwise).
    pub fn dedup_stats(&self) -> &DedupStats {
        &self.dedup
    }

    /// The newest entries this writer wrote, for replication to read before the store
    /// (master only: `None` on a secondary).
    pub fn tail(&self) -> Option<Arc<TailCache>> {
        self.tail.read().clone()
    }

    /// Makes this node's writer a master's: its epoch (the next one, or the one `master`
    /// names) is on disk before this returns, the idempotency index is loaded, keys are
    /// assigned and `on_held` told of every key written from now on — and at once of every
    /// key the log holds. Returns the epoch and the last key then.
    pub async fn become_master(&self, master: MasterWrites) -> Result<Office, WriteError> {
        match self.role(Some(master)).await? {
            Some(office) => Ok(office),
            None => Err(WriteError::NotMaster),
        }
    }

    /// Makes this node's writer a secondary's: it assigns no key any more, and reconciles
    /// replicated entries with the master that sent them.
    pub async fn become_secondary(&self) -> Result<(), WriteError> {
        self.role(None).await.map(|_| ())
    }

    /// Failover: asks this node for a vote (see [`VoteRequest`]).
    pub async fn vote(&self, request: VoteRequest) -> Result<VoteAnswer, WriteError> {
        self.ask(|reply| Command::Vote { request, reply }).await
    }

    /// Failover: this node stands for the next epoch and votes for itself (`name`), on disk;
    /// returns that epoch.
    pub async fn stand(&self, name: String) -> Result<u64, WriteError> {
        self.ask(|reply| Command::Candidacy { name, reply }).await
    }

    /// Failover: takes `epoch` if it is higher than this node's (on disk); returns the node's
    /// epoch after.
    pub async fn raise_epoch(&self, epoch: u64) -> Result<u64, WriteError> {
        self.ask(|reply| Command::RaiseEpoch { epoch, reply }).await
    }

    /// Sends the writer task the command `make` builds around a reply channel, and waits
    /// for its answer (`Stopped` if the task is gone).
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, WriteError>>) -> Command,
    ) -> Result<T, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    async fn role(&self, master: Option<MasterWrites>) -> Result<Option<Office>, WriteError> {
        self.ask(|reply| Command::Role { master, reply }).await
    }

    /// Entries held aside (stored beyond a gap), as published together with the `contiguous`
    /// watch. Read this first and the watch second: an entry acknowledged before is then
    /// counted in one of the two (it moves out of this count only after the watch moved past
    /// it), which a store's own count, updated as the entry is written, does not promise.
    pub fn held_aside(&self) -> usize {
        self.aside.load(Ordering::Acquire)
    }

    /// Whether this writer has assigned a key since it became a master (its epoch is open).
    pub fn has_assigned_keys(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
    }

    /// Appends `value` under the next key (master only).
    pub async fn append(&self, value: Bytes, id: Option<Bytes>) -> Result<Appended, WriteError> {
        self.ask(|reply| Command::Append { value, id, reply }).await
    }

    /// Stores entries under their keys (secondary), or — on the master — adopts those that
    /// continue its log exactly (tail recovery); returns how many were new. `from`: the master
    /// the entries come from (a replication request's, reconciled with first; the source's
    /// history when a master adopts); `None` for a script's `PUT /message`.
    pub async fn put(
        &self,
        entries: Vec<Entry>,
        from: Option<Arc<FromMaster>>,
    ) -> Result<usize, WriteError> {
        self.put_command(entries, from, false).await
    }

    /// Stores entries a secondary's endpoint received (`POST /replicate` from a master,
    /// `PUT /message` from a script), as [`Writer::put`] does on a secondary. If this node is
    /// a master by the time they reach the writer — elected while the request waited (a
    /// `/delay`, a slow disk) — they are refused ([`WriteError::IsMaster`], or
    /// [`WriteError::StaleEpoch`] for an older epoch's master), never adopted: the answer of a
    /// master to another master's batch must not read as an ack of it, or the sender would
    /// count this node for keys it holds other messages under.
    pub async fn store_sent(
        &self,
        entries: Vec<Entry>,
        from: Option<Arc<FromMaster>>,
    ) -> Result<usize, WriteError> {
        self.put_command(entries, from, true).await
    }

    async fn put_command(
        &self,
        entries: Vec<Entry>,
        from: Option<Arc<FromMaster>>,
        to_secondary: bool,
    ) -> Result<usize, WriteError> {
        self.ask(|reply| Command::Put {
            entries,
            from,
            to_secondary,
            reply,
        })
        .await
    }
}

struct WriterTask {
    store: Arc<dyn LogStore>,
    /// See [`WriterOptions::keep_unclean`].
    keep_unclean: Option<Arc<std::sync::atomic::AtomicBool>>,
    ids: IdIndex,
    /// Lines for "append received, key assigned" (see `LineBudget`).
    lines: LineBudget,
    /// Whether this process has assigned a key yet. Tail recovery only adopts keys into a log
    /// this master has not extended itself: before that, a secondary holding more than the
    /// master holds keys the master lost; after it, keys the master never had (a script's
    /// `PUT /message`), which must meet the master's own message and a 409 instead.
    assigned_keys: Arc<AtomicBool>,
    /// The newest entries written, each added only after the store wrote it (master only;
    /// shared with the handle).
    tail: Arc<parking_lot::RwLock<Option<Arc<TailCache>>>>,
    /// What a settled write moves (shared with the sync stage).
    publish: Arc<Publish>,
    /// `fsync = "always"`: writes go here to wait for their fsync (see [`sync_stage`]);
    /// otherwise they are settled as soon as they are written.
    syncer: Option<std::sync::mpsc::Sender<Written>>,
    sync_stage: Option<tokio::task::JoinHandle<()>>,
    stats: WriteStats,
    /// Master: its epoch, opened (put into `own.history`) at the first key it assigns;
    /// `None` on a secondary.
    epoch: Option<u64>,
    /// The node's epoch and history, as written to the store.
    own: Epochs,
    /// Publishes `own` after every change (see [`Writer::epochs`]).
    epochs: watch::Sender<Arc<Epochs>>,
}

type AppendReply = oneshot::Sender<Result<Appended, WriteError>>;
type PutReply = oneshot::Sender<Result<usize, WriteError>>;

impl WriterTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut cmds = Vec::with_capacity(MAX_BATCH);
        loop {
            // At shutdown, stop taking work: what is queued is answered with `Stopped` when
            // the receiver drops, and what was written gets its final fsync below.
            let n = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                n = rx.recv_many(&mut cmds, MAX_BATCH) => n,
            };
            if n == 0 {
                break;
            }
            // A role change sits between the writes before it and those after it.
            while let Some(i) = cmds.iter().position(Command::is_control) {
                let mut rest = cmds.split_off(i);
                self.process(&mut cmds);
                self.control(rest.remove(0));
                cmds = rest;
            }
            self.process(&mut cmds);
        }
        // Writes still waiting for their fsync are settled before the final one.
        self.syncer = None;
        if let Some(stage) = self.sync_stage.take() {
            let _ = stage.await;
        }
        match self.store.sync() {
            Ok(())
                if self
                    .keep_unclean
                    .as_ref()
                    .is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire)) =>
            {
                tracing::warn!(
                    "stopping while still holding back after an unclean stop: this stop is recorded as unclean too, so the next start holds back again"
                );
            }
            // Everything written is on disk: the next start need not suspect a lost tail.
            Ok(()) => {
                if let Err(e) = self.store.mark_clean_stop() {
                    tracing::error!(cause = %e, "recording a clean stop failed");
                }
            }
            Err(e) => tracing::error!(cause = %e, "final fsync at shutdown failed"),
        }
    }

    fn process(&mut self, cmds: &mut Vec<Command>) {
        // After a failed fsync nothing is taken: the store's pages may have been dropped, and
        // no later fsync can vouch for what it holds (see the module docs).
        if let Some(why) = self.store.sync_failure() {
            for cmd in cmds.drain(..) {
                let e = || WriteError::Failed(why.clone());
                match cmd {
                    Command::Put { reply, .. } => drop(reply.send(Err(e()))),
                    Command::Append { reply, .. } => drop(reply.send(Err(e()))),
                    Command::Role { reply, .. } => drop(reply.send(Err(e()))),
                    Command::Vote { reply, .. } => drop(reply.send(Err(e()))),
                    Command::Candidacy { reply, .. } => drop(reply.send(Err(e()))),
                    Command::RaiseEpoch { reply, .. } => drop(reply.send(Err(e()))),
                }
            }
            return;
        }
        let mut puts: Vec<(PutReply, Result<usize, WriteError>)> = Vec::new();
        let mut appends: Vec<Entry> = Vec::new();
        let mut append_replies: Vec<(AppendReply, Appended)> = Vec::new();

        // The master counts itself for every key this batch adds to its log, adopted or new.
        let start_key = self.store.contiguous_key() + 1;
        // Replicated entries first: they carry their own keys.
        let mut pending_appends = Vec::new();
        for cmd in cmds.drain(..) {
            match cmd {
                Command::Put {
                    entries,
                    from,
                    to_secondary,
                    reply,
                } => {
                    self.stats.batch.observe(entries.len() as f64);
                    let r = if let Some(epoch) = self.epoch
                        && to_secondary
                    {
                        // Elected while the request waited: see `Writer::store_sent`.
                        let got = from.as_ref().map_or(0, |f| f.epoch);
                        Err(if got < self.own.current {
                            WriteError::StaleEpoch {
                                have: self.own.current,
                                got,
                            }
                        } else {
                            WriteError::IsMaster { epoch, got }
                        })
                    } else if self.epoch.is_some() {
                        self.adopt(entries, from.as_deref())
                    } else {
                        self.store_replicated(&entries, from.as_deref())
                    };
                    puts.push((reply, r));
                }
                Command::Append { value, id, reply } if self.epoch.is_some() => {
                    pending_appends.push((value, id, reply))
                }
                Command::Append { reply, .. } => drop(reply.send(Err(WriteError::NotMaster))),
                // `run` takes control commands out of a batch before it reaches here.
                other => self.control(other),
            }
        }

        let first_key = self.store.contiguous_key() + 1;
        if !pending_appends.is_empty()
            && let Err(e) = self.open_epoch(first_key)
        {
            let why = e.to_string();
            for (_, _, reply) in pending_appends.drain(..) {
                let _ = reply.send(Err(WriteError::Store(StoreError::Io(
                    std::io::Error::other(why.clone()),
                ))));
            }
        }
        let mut next = first_key;
        let mut new_ids = Vec::new();
        for (value, id, reply) in pending_appends {
            if let Some(id) = &id
                && let Some(key) = self.ids.get(id, next)
            {
                append_replies.push((reply, Appended::Duplicate(key)));
                continue;
            }
            let key = next;
            next += 1;
            if let Some(id) = &id {
                self.ids.insert(id, key);
                new_ids.push(id.clone());
            }
            appends.push(Entry { key, value, id });
            append_replies.push((reply, Appended::New(key)));
        }

        if let (Some(first), Some(last)) = (appends.first(), appends.last())
            && self.lines.admit().log("appends (keys assigned)")
        {
            // One line per write, not per message: under load one write carries many.
            if first.key == last.key {
                tracing::info!(
                    key = first.key,
                    "append received, key assigned: {}",
                    first.key
                );
            } else {
                tracing::info!(
                    first_key = first.key,
                    last_key = last.key,
                    "appends received, keys assigned: {}..={} ({} messages)",
                    first.key,
                    last.key,
                    appends.len()
                );
            }
        }
        let mut append_error = None;
        let put = if appends.is_empty() {
            Ok(0)
        } else {
            self.stats.batch.observe(appends.len() as f64);
            self.store.put(&appends)
        };
        if let Some(tail) = self.tail.read().as_ref() {
            match &put {
                Ok(_) => tail.extend(appends.iter().cloned()),
                // What a failed put stored is unknown here: the store is read instead.
                Err(_) => tail.clear(),
            }
        }
        if let Err(e) = put {
            tracing::error!(cause = %e, first_key, count = appends.len(), "writing appends failed");
            // A failed put may still have stored a prefix of the call: those keys are in the
            // log (and will replicate), so their ids must stay known, and only theirs.
            for id in &new_ids {
                self.ids.remove(id);
            }
            let ids = &mut self.ids;
            let _ = self
                .store
                .scan_ids(first_key, &mut |id, key| ids.insert(id, key));
            append_error = Some(e.to_string());
        }

        // Anything that may have reached the log (even a failed put can store a prefix) is
        // covered by the fsync; only puts that found everything already held skip it.
        let wrote = !appends.is_empty() || puts.iter().any(|(_, r)| !matches!(r, Ok(0)));
        let written = Written {
            start_key,
            first_key,
            last: self.store.contiguous_key(),
            aside: self.store.held_aside(),
            cuts: self.publish.cuts.load(Ordering::Acquire),
            wrote,
            append_error,
            puts,
            appends: append_replies,
        };
        match &self.syncer {
            // fsync = "always": answered once the sync stage has made it durable.
            Some(tx) => {
                if let Err(std::sync::mpsc::SendError(w)) = tx.send(written) {
                    // The sync stage is gone (it only stops when this task does): nothing
                    // can be vouched for.
                    w.settle(&self.publish, Some("the fsync stage has stopped".into()));
                }
            }
            // A write whose fsync failed in the background (`interval`) must not be answered
            // as stored either.
            None => {
                let failed = self.store.sync_failure();
                written.settle(&self.publish, failed)
            }
        }
    }

    /// A control command (role, vote, epoch), between writes.
    fn control(&mut self, cmd: Command) {
        match cmd {
            Command::Role { master, reply } => {
                let r = match master {
                    Some(m) => self.become_master(m).map(Some),
                    None => {
                        self.become_secondary();
                        Ok(None)
                    }
                };
                let _ = reply.send(r);
            }
            Command::Vote { request, reply } => {
                let _ = reply.send(self.vote(&request));
            }
            Command::Candidacy { name, reply } => {
                let mut next = self.own.raised_to(self.own.current + 1);
                next.voted_for = Some(name);
                let epoch = next.current;
                let _ = reply.send(self.write_epochs(next).map(|()| epoch));
            }
            Command::RaiseEpoch { epoch, reply } => {
                let r = if epoch > self.own.current {
                    let next = self.own.raised_to(epoch);
                    self.write_epochs(next).map(|()| epoch)
                } else {
                    Ok(self.own.current)
                };
                let _ = reply.send(r);
            }
            Command::Append { reply, .. } => drop(reply.send(Err(WriteError::Stopped))),
            Command::Put { reply, .. } => drop(reply.send(Err(WriteError::Stopped))),
        }
    }

    /// This node's log as a candidate or a voter compares it: the last epoch of its history
    /// and its contiguous key, below any key a script stored (`docs/failover.md`, rule 3).
    fn completeness(&self) -> (u64, u64) {
        let contiguous = self.store.contiguous_key();
        let vouched = self.own.vouched_below().map_or(u64::MAX, |k| k - 1);
        let held = contiguous.min(vouched);
        // Not the history's last epoch: the one whose record this log holds (`held_epoch`).
        (self.own.history.held_epoch(held), held)
    }

    /// A vote asked of this node (`docs/failover.md`, rule 2): a pre-vote records nothing; a
    /// vote raises this node's epoch to the candidate's, and is granted at most once per epoch,
    /// on disk before the answer.
    fn vote(&mut self, r: &VoteRequest) -> Result<VoteAnswer, WriteError> {
        let answer = |epoch, granted, reason: &str| VoteAnswer {
            epoch,
            granted,
            reason: reason.to_string(),
        };
        let own = &self.own;
        // A pre-vote is for the epoch after the candidate's: this node must not be there yet.
        // A master holds its own epoch and votes in it for nobody else.
        if r.epoch < own.current || (r.epoch == own.current && (r.pre_vote || self.epoch.is_some()))
        {
            return Ok(answer(
                own.current,
                false,
                "this node has a later or the same epoch",
            ));
        }
        let complete = (r.last_epoch, r.last_key) >= self.completeness();
        let why_not = if r.heard_master {
            Some("this node hears from a master")
        } else if !complete {
            Some("this node's log is more complete")
        } else {
            None
        };
        if r.pre_vote {
            return Ok(match why_not {
                Some(why) => answer(own.current, false, why),
                None => answer(own.current, true, ""),
            });
        }
        let mut next = own.raised_to(r.epoch);
        let free = next.voted_for.as_ref().is_none_or(|v| *v == r.candidate);
        let granted = why_not.is_none() && free;
        if granted {
            next.voted_for = Some(r.candidate.clone());
        }
        if next != self.own {
            self.write_epochs(next)?;
        }
        // A vote already cast in that epoch is named first: it is the one refusal no later
        // request of that epoch can change.
        let reason = match (why_not, free) {
            (_, false) => "this node voted for another candidate in that epoch",
            (Some(why), true) => why,
            (None, true) => "",
        };
        Ok(answer(self.own.current, granted, reason))
    }

    /// See [`Writer::become_master`].
    fn become_master(&mut self, m: MasterWrites) -> Result<Office, WriteError> {
        let seen = self.own.current.max(self.own.history.last_epoch());
        let epoch = match m.epoch {
            None => seen + 1,
            Some(e) if e > self.own.history.last_epoch() && e >= self.own.current => e,
            Some(e) => {
                return Err(WriteError::Store(StoreError::Corrupt(format!(
                    "cannot hold office in epoch {e}: this node has seen epoch {seen}"
                ))));
            }
        };
        // On disk before anything is written in it: no two processes ever assign keys in
        // the same epoch (`docs/log-matching.md`).
        let next = self.own.raised_to(epoch);
        self.write_epochs(next)?;
        self.epoch = Some(epoch);
        self.assigned_keys.store(false, Ordering::Release);
        if m.open_at_once && self.store.held_aside() > 0 {
            // An elected node (failover) opens its epoch after its contiguous key; what it
            // holds beyond a gap an earlier master wrote, and the new epoch's history would
            // label it as its own once the gap fills (and its ids are not in the index loaded
            // below). No majority holds such an entry up to it (the election chose this log),
            // so it was acknowledged by a minority at most: it is cut, as a secondary cuts what
            // its master's history does not vouch for.
            let from = self.store.contiguous_key() + 1;
            let cut = self.store.cut_from(from)?;
            if !cut.removed.is_empty() {
                self.published_cut();
                tracing::warn!(
                    epoch,
                    from_key = from,
                    entries = cut.removed.len(),
                    "cut {} entries held aside from key {from}: an earlier master wrote them beyond this node's gap, and the master of epoch {epoch} opens its epoch at key {from}",
                    cut.removed.len(),
                );
                for chunk in cut.removed.chunks(100) {
                    let listed: Vec<String> = chunk
                        .iter()
                        .map(|(k, id)| match id {
                            Some(id) => format!("{k}:{}", String::from_utf8_lossy(id)),
                            None => k.to_string(),
                        })
                        .collect();
                    tracing::warn!("cut entries (key or key:id): {}", listed.join(" "));
                }
            }
        }
        self.ids.clear();
        self.ids.load(&*self.store);
        *self.tail.write() = Some(Arc::new(TailCache::new(TAIL_ENTRIES, TAIL_BYTES)));
        let last = self.store.contiguous_key();
        // The master holds its whole log: counted before any later write is.
        if last > 0 {
            (m.on_held)(1, last);
        }
        *self.publish.on_held.write() = Some(m.on_held);
        if m.open_at_once {
            self.open_epoch(last + 1)?;
        }
        tracing::info!(epoch, last_key = last, "master in epoch {epoch}");
        Ok(Office {
            epoch,
            last_key: last,
        })
    }

    /// See [`Writer::become_secondary`].
    fn become_secondary(&mut self) {
        if self.epoch.take().is_some() {
            tracing::info!("no longer a master: this node stores what a master sends");
        }
        *self.publish.on_held.write() = None;
        *self.tail.write() = None;
        self.ids.clear();
        self.assigned_keys.store(false, Ordering::Release);
    }

    /// Master: opens its epoch at `first_key` (see `docs/log-matching.md`) unless it is open:
    /// the history gains `(epoch, first_key)`, fsynced, before the first key of the epoch is
    /// written. Opening also closes adoption (`assigned_keys`): a tail adopted after it would
    /// be labelled with this epoch.
    fn open_epoch(&mut self, first_key: u64) -> Result<(), WriteError> {
        let Some(epoch) = self.epoch else {
            return Ok(());
        };
        if self.assigned_keys.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut next = self.own.clone();
        next.current = next.current.max(epoch);
        // Epochs that wrote keys from `first_key` on (this master lost every one of them: a
        // power loss, or a crash before its first key was written) give way to this one: the
        // keys are assigned anew, and a secondary holding the old ones cuts them.
        let dropped = next.history.truncate_from(first_key);
        if !dropped.is_empty() {
            tracing::warn!(
                epoch,
                first_key,
                "this master lost every key of epochs it had opened from key {first_key} on ({}): they give way to epoch {epoch}",
                dropped
                    .iter()
                    .map(|(e, k)| format!("epoch {e} from key {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        next.history.push(epoch, first_key).map_err(|e| {
            WriteError::Store(StoreError::Corrupt(format!(
                "cannot open epoch {epoch}: {e}"
            )))
        })?;
        self.write_epochs(next)?;
        self.assigned_keys.store(true, Ordering::Release);
        tracing::info!(
            epoch,
            first_key,
            "epoch {epoch} opened: this master's keys start at {first_key}"
        );
        Ok(())
    }

    /// Writes the node's epoch and history (fsynced) and publishes them.
    fn write_epochs(&mut self, next: Epochs) -> Result<(), WriteError> {
        self.store.set_epochs(&next)?;
        self.own = next;
        self.epochs.send_replace(Arc::new(self.own.clone()));
        Ok(())
    }

    /// Secondary: stores replicated entries, reconciling with the master that sent them first
    /// (`from`), or — a script's `PUT /message` (`from` is `None`) — marking their keys as
    /// unlabelled first: no master wrote them, so this node's history does not vouch for them
    /// (see `Epochs::unlabelled`).
    fn store_replicated(
        &mut self,
        entries: &[Entry],
        from: Option<&FromMaster>,
    ) -> Result<usize, WriteError> {
        let Some(from) = from else {
            let mut next = self.own.clone();
            next.unlabelled.extend(
                entries
                    .iter()
                    .map(|e| e.key)
                    .filter(|k| !self.store.holds(*k)),
            );
            if next != self.own {
                self.write_epochs(next)?;
            }
            return Ok(self.store.put(entries)?);
        };
        self.reconcile(from, entries)?;
        let stored = self.store.put(entries)?;
        // A master's entry stored over a script's with the same content: that key is the
        // master's now.
        if entries.iter().any(|e| self.own.unlabelled.contains(&e.key)) {
            let mut next = self.own.clone();
            for e in entries {
                next.unlabelled.remove(&e.key);
            }
            self.write_epochs(next)?;
        }
        Ok(stored)
    }

    /// Secondary: makes this node's log one the master `from` can extend (rule
    /// `ReconcileFirst` of `docs/log-matching.md`) before `entries` of its batch are stored:
    /// * an older epoch than this node's is refused;
    /// * the history this node holds changes nothing (but a newer epoch is taken);
    /// * a request the same master sent before it opened its epoch, arriving after one it
    ///   sent after (this node's history already ends with that epoch): its entries are stored
    ///   as long as both histories label them alike, and refused otherwise (the master sends
    ///   them again with its history of now);
    /// * otherwise every key the two histories label differently is cut, and the master's
    ///   history is taken.
    fn reconcile(&mut self, from: &FromMaster, entries: &[Entry]) -> Result<(), WriteError> {
        let own = &self.own;
        if from.epoch < own.current {
            return Err(WriteError::StaleEpoch {
                have: own.current,
                got: from.epoch,
            });
        }
        if from.history == own.history {
            if from.epoch > own.current {
                let next = own.raised_to(from.epoch);
                self.write_epochs(next)?;
            }
            return Ok(());
        }
        let d = own.history.divergence(&from.history);
        if from.epoch == own.current
            && own.history.last_epoch() == own.current
            && from.history.last_epoch() < from.epoch
        {
            return match d {
                Some(d) if entries.iter().any(|e| e.key >= d) => Err(WriteError::StaleHistory {
                    epoch: from.epoch,
                    from_key: d,
                }),
                _ => Ok(()),
            };
        }
        if let Some(d) = d {
            let (ours, theirs) = (own.history.clone(), from.history.clone());
            let cut = self.store.cut_from(d)?;
            if !cut.removed.is_empty() {
                self.published_cut();
                log_cut(&cut, &ours, &theirs, from.epoch);
            }
        }
        let mut unlabelled = self.own.unlabelled.clone();
        if let Some(d) = d {
            unlabelled.retain(|k| *k < d);
        }
        let next = Epochs {
            history: from.history.clone(),
            unlabelled,
            ..self.own.raised_to(from.epoch)
        };
        self.write_epochs(next)
    }

    /// Publishes the end of the log after a cut moved it back; writes settled from now on
    /// that were written before the cut publish nothing (see `Written::cuts`).
    fn published_cut(&self) {
        let (last, aside) = (self.store.contiguous_key(), self.store.held_aside());
        self.publish.contiguous.send_modify(|v| {
            // Under the watch's lock, so a settle racing with this one either publishes
            // before it (and is overwritten here) or sees the new count and publishes nothing.
            self.publish.cuts.fetch_add(1, Ordering::AcqRel);
            *v = last;
            self.publish.aside.store(aside, Ordering::Release);
        });
    }
}

/// Logs a cut with every key and id it removed (in lines of bounded length): a cut is never
/// silent (`docs/log-matching.md`).
fn log_cut(cut: &Cut, ours: &History, theirs: &History, epoch: u64) {
    let (first, last) = match (cut.removed.first(), cut.removed.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => return,
    };
    tracing::warn!(
        from_key = cut.from_key,
        first_key = first,
        last_key = last,
        entries = cut.removed.len(),
        epoch,
        "cut keys {first}..={last} ({} entries held from key {}): this node's log diverges there from the master of epoch {epoch} (this node: {ours}; the master: {theirs})",
        cut.removed.len(),
        cut.from_key
    );
    for chunk in cut.removed.chunks(100) {
        let listed: Vec<String> = chunk
            .iter()
            .map(|(k, id)| match id {
                Some(id) => format!("{k}:{}", String::from_utf8_lossy(id)),
                None => k.to_string(),
            })
            .collect();
        tracing::warn!("cut entries (key or key:id): {}", listed.join(" "));
    }
}

/// What the writer publishes once a write is settled (written, and under `fsync = "always"`
/// made durable): the master's own acks and the visible end of the log.
struct Publish {
    /// Master: told of every key the master holds once written (see [`OnHeld`]).
    on_held: parking_lot::RwLock<Option<OnHeld>>,
    /// Published end of the visible, acknowledged log.
    contiguous: watch::Sender<u64>,
    /// Published count of entries held aside; stored after `contiguous` (see
    /// `Writer::held_aside`).
    aside: Arc<AtomicUsize>,
    /// Cuts made so far; changed only under `contiguous`'s lock (see
    /// `WriterTask::published_cut`).
    cuts: AtomicU64,
}

/// One write of the log, waiting to be settled: its requests' answers and what it moved.
struct Written {
    /// The first key the write added to the log (adopted or new).
    start_key: u64,
    /// The first key given to an append of this write.
    first_key: u64,
    /// The store's contiguous key and entries held aside right after the write.
    last: u64,
    aside: usize,
    /// `Publish::cuts` when it was written: a cut since then made `last` and `aside` stale.
    cuts: u64,
    /// Whether anything may have reached the file (then it needs the fsync).
    wrote: bool,
    append_error: Option<String>,
    puts: Vec<(PutReply, Result<usize, WriteError>)>,
    appends: Vec<(AppendReply, Appended)>,
}

impl Written {
    /// Publishes the write and answers its requests; `sync_error` is the failed fsync that
    /// should have covered it, or the store's sticky failure, if any (then nothing is
    /// published and every request gets the error, except appends whose own write failed,
    /// which get that).
    fn settle(self, publish: &Publish, sync_error: Option<String>) {
        let last = self.last;
        if sync_error.is_none() {
            if let Some(held) = publish.on_held.read().as_ref()
                && last >= self.start_key
            {
                held(self.start_key, last);
            }
            let aside = self.aside;
            publish.contiguous.send_if_modified(|v| {
                // A cut since this write moved the end back: what it measured is stale.
                if publish.cuts.load(Ordering::Acquire) != self.cuts {
                    return false;
                }
                // Settled writes arrive in order; never move the end back.
                let moved = *v < last;
                *v = (*v).max(last);
                publish.aside.store(aside, Ordering::Release);
                moved
            });
        }
        for (reply, r) in self.puts {
            let r = match (r, &sync_error) {
                (Ok(_), Some(e)) => Err(WriteError::Sync(e.clone())),
                (r, _) => r,
            };
            let _ = reply.send(r);
        }
        for (reply, outcome) in self.appends {
            // A duplicate of an id first appended in this same write shares that append's fate.
            let written_now = match outcome {
                Appended::New(_) => true,
                Appended::Duplicate(k) => k >= self.first_key,
            };
            let r = match (&self.append_error, &sync_error, written_now) {
                (Some(e), _, true) => Err(WriteError::Store(StoreError::Io(
                    std::io::Error::other(e.clone()),
                ))),
                // After a failed fsync no answer vouches for anything, a duplicate's included.
                (_, Some(e), _) => Err(WriteError::Sync(e.clone())),
                _ => Ok(outcome),
            };
            let _ = reply.send(r);
        }
    }
}

/// The sync stage of `fsync = "always"`, on a thread of its own: takes every write that
/// queued up since its last fsync, fsyncs once for all of them, then settles them in order.
/// The writer meanwhile goes on writing, so one fsync follows the other with no gap and
/// each covers whatever was written while the one before ran (pipelined group commit). An
/// fsync failure is sticky in the store, so once one failed every later write fails too.
fn sync_stage(
    store: Arc<dyn LogStore>,
    rx: std::sync::mpsc::Receiver<Written>,
    publish: Arc<Publish>,
    took: Histogram,
) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        // A failed fsync is sticky (in the store): a write that stored nothing new is not
        // vouched for either, or it would publish an end of log covering the failed ones.
        let mut sync_error = store.sync_failure();
        if sync_error.is_none() && batch.iter().any(|w| w.wrote) {
            let started = std::time::Instant::now();
            let r = store.sync();
            took.observe(started.elapsed().as_secs_f64());
            if let Err(e) = r {
                tracing::error!(cause = %e, "fsync failed; the written entries are not durable");
                sync_error = Some(e.to_string());
            }
        }
        for w in batch.drain(..) {
            w.settle(&publish, sync_error.clone());
        }
    }
}

impl WriterTask {
    /// Master only: takes into the log the entries that continue it exactly (keys
    /// `contiguous_key() + 1, + 2, …`), which is how a master that lost the tail of its log
    /// gets it back from a secondary (see `crate::master::recovery`). Anything else is left out: a key
    /// the master already holds stays as it is, and nothing may leave a hole. Once this
    /// process has assigned a key itself, nothing is adopted any more (see `assigned_keys`).
    fn adopt(
        &mut self,
        entries: Vec<Entry>,
        from: Option<&FromMaster>,
    ) -> Result<usize, WriteError> {
        if self.assigned_keys.load(Ordering::Acquire) {
            return Ok(0);
        }
        let Some(source) = from else {
            // Entries without their labels cannot be told apart from another log's.
            return Ok(0);
        };
        let start = self.store.contiguous_key() + 1;
        // Only keys this master's history labels as the source's does are its own lost tail
        // (rule `AdoptMatching`): where the two disagree, a later epoch of this master wrote
        // the key anew (and may have had it acknowledged elsewhere), or the source holds an
        // epoch this master never had. So the master's history needs no change.
        let below = self.own.history.divergence(&source.history);
        if below.is_some_and(|d| d <= start) {
            tracing::warn!(
                "not adopting keys from {start}: the source's history labels key {} otherwise (source: {}; master: {})",
                below.unwrap_or_default(),
                source.history,
                self.own.history
            );
            return Ok(0);
        }
        let adoptable: Vec<Entry> = (start..)
            .zip(entries.into_iter().skip_while(|e| e.key < start))
            .take_while(|(next, e)| e.key == *next && below.is_none_or(|d| e.key < d))
            .map(|(_, e)| e)
            .collect();
        let (Some(first), Some(last)) = (adoptable.first(), adoptable.last()) else {
            return Ok(0);
        };
        let (first, last) = (first.key, last.key);
        let n = match self.store.put(&adoptable) {
            Ok(n) => n,
            Err(e) => {
                if let Some(tail) = self.tail.read().as_ref() {
                    tail.clear();
                }
                return Err(e.into());
            }
        };
        if let Some(tail) = self.tail.read().as_ref() {
            tail.extend(adoptable.iter().cloned());
        }
        for e in &adoptable {
            if let Some(id) = &e.id {
                self.ids.insert(id, e.key);
            }
        }
        tracing::warn!(
            first_key = first,
            last_key = last,
            "recovered keys {first}..={last} into the master's log from a secondary"
        );
        Ok(n)
    }
}

/// `fsync = "interval"`: sync in the background every `every`, when something was written.
async fn sync_every(
    store: Arc<dyn LogStore>,
    every: Duration,
    took: Histogram,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced = store.contiguous_key();
    let mut aside = store.held_aside();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (now, now_aside) = (store.contiguous_key(), store.held_aside());
        if now == synced && now_aside == aside {
            continue;
        }
        let s = store.clone();
        let took = took.clone();
        let sync = move || {
            let started = std::time::Instant::now();
            let r = s.sync();
            took.observe(started.elapsed().as_secs_f64());
            r
        };
        match tokio::task::spawn_blocking(sync).await {
            Ok(Ok(())) => (synced, aside) = (now, now_aside),
            Ok(Err(e)) => tracing::error!(cause = %e, "interval fsync failed"),
            Err(e) => tracing::error!(cause = %e, "interval fsync task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::acks::AckTracker;
    use crate::storage::memory::MemoryStore;
    use crate::storage::testing::{GatedStore, entries, until};

    /// A master's writer in epoch 1.
    fn options(fsync: FsyncPolicy, tracker: Arc<AckTracker>) -> WriterOptions {
        WriterOptions {
            fsync,
            fsync_interval: Duration::from_millis(100),
            event_lines_per_s: 0,
            dedup_window: None,
            keep_unclean: None,
            master: Some(crate::storage::writer::MasterWrites {
                on_held: tracker.master_holds(),
                epoch: Some(1),
                open_at_once: false,
            }),
        }
    }

    /// A master's writer taking office in epoch 3 (not opened at once) over a store in epoch
    /// `current` with `history`, holding keys `1..=last` valued `{prefix}{key}`.
    fn master_of_epoch_3(
        current: u64,
        history: Vec<(u64, u64)>,
        last: u64,
        prefix: &str,
    ) -> (Arc<dyn LogStore>, Writer) {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        store
            .set_epochs(&Epochs {
                current,
                history: History::from_pairs(history).unwrap(),
                ..Default::default()
            })
            .unwrap();
        store.put(&entries(1..=last, prefix)).unwrap();
        let tracker = Arc::new(AckTracker::new(1));
        let (w, _, _) = Writer::spawn(
            store.clone(),
            WriteStats::default(),
            WriterOptions {
                master: Some(crate::storage::writer::MasterWrites {
                    on_held: tracker.master_holds(),
                    epoch: Some(3),
                    open_at_once: false,
                }),
                ..options(FsyncPolicy::Never, Arc::new(AckTracker::new(1)))
            },
            CancellationToken::new(),
        );
        (store, w)
    }

    #[tokio::test]
    async fn keys_are_sequential_and_ids_deduplicate() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let tracker = Arc::new(AckTracker::new(1));
        let (w, mut contiguous, _) = Writer::spawn(
            store.clone(),
            WriteStats::default(),
            options(FsyncPolicy::Never, tracker.clone()),
            CancellationToken::new(),
        );
        let mut handles = Vec::new();
        for i in 0..50 {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                w.append(Bytes::from(format!("m{i}")), None).await.unwrap()
            }));
        }
        let mut keys = Vec::new();
        for h in handles {
            match h.await.unwrap() {
                Appended::New(k) => keys.push(k),
                Appended::Duplicate(_) => panic!("no ids given"),
            }
        }
        keys.sort();
        assert_eq!(keys, (1..=50).collect::<Vec<_>>());
        let a = w
            .append(Bytes::from("x"), Some(Bytes::from("id")))
            .await
            .unwrap();
        let b = w
            .append(Bytes::from("y"), Some(Bytes::from("id")))
            .await
            .unwrap();
        assert_eq!(a, Appended::New(51));
        assert_eq!(b, Appended::Duplicate(51));
        assert_eq!(store.contiguous_key(), 51);
        contiguous.wait_for(|k| *k == 51).await.unwrap();
        assert_eq!(tracker.fully_replicated(), 51);
    }

    fn spawn_always(
        store: Arc<GatedStore>,
        tracker: Arc<AckTracker>,
    ) -> (Writer, watch::Receiver<u64>) {
        let (w, contiguous, _) = Writer::spawn(
            store,
            WriteStats::default(),
            options(FsyncPolicy::Always, tracker),
            CancellationToken::new(),
        );
        (w, contiguous)
    }

    // The gate is held across awaits on purpose: it stops the sync stage's thread, not this task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn always_answers_after_the_fsync_and_writes_on_while_it_runs() {
        let store = GatedStore::new();
        let tracker = Arc::new(AckTracker::new(1));
        let (w, contiguous) = spawn_always(store.clone(), tracker.clone());
        let gate = store.gate.lock();
        let first = tokio::spawn({
            let w = w.clone();
            async move { w.append(Bytes::from("a"), None).await }
        });
        until("key 1 written", || store.contiguous_key() == 1).await;
        // The first fsync is held: nothing is answered or published, but the writer writes on.
        let second = tokio::spawn({
            let w = w.clone();
            async move { w.append(Bytes::from("b"), None).await }
        });
        until("key 2 written while key 1's fsync runs", || {
            store.contiguous_key() == 2
        })
        .await;
        assert!(!first.is_finished() && !second.is_finished());
        assert_eq!(*contiguous.borrow(), 0, "published before its fsync");
        assert_eq!(tracker.fully_replicated(), 0);
        drop(gate);
        assert_eq!(first.await.unwrap().unwrap(), Appended::New(1));
        assert_eq!(second.await.unwrap().unwrap(), Appended::New(2));
        assert_eq!(*contiguous.borrow(), 2);
        assert_eq!(tracker.fully_replicated(), 2);
        // Key 2 was written while key 1's fsync ran: one more fsync covers it.
        assert!(store.syncs.load(Ordering::SeqCst) <= 2);
    }

    #[tokio::test]
    async fn always_fails_appends_whose_fsync_failed_and_publishes_nothing() {
        let store = GatedStore::new();
        store.fail.store(true, Ordering::SeqCst);
        let tracker = Arc::new(AckTracker::new(1));
        let (w, contiguous) = spawn_always(store.clone(), tracker.clone());
        let r = w.append(Bytes::from("a"), Some(Bytes::from("id-a"))).await;
        assert!(matches!(r, Err(WriteError::Sync(_))), "{r:?}");
        assert_eq!(store.contiguous_key(), 1, "written, not durable");
        assert_eq!(*contiguous.borrow(), 0);
        assert_eq!(tracker.fully_replicated(), 0);
    }

    /// Issue 15 (4): a write that stores nothing new skipped the sync stage, so after a failed
    /// fsync it was answered as stored and published the end of the log, the failed entries
    /// included. After a failed fsync nothing is acknowledged until the node restarts, even
    /// once the disk answers again.
    #[tokio::test]
    async fn always_acknowledges_nothing_after_a_failed_fsync_not_even_a_write_of_nothing_new() {
        let store = GatedStore::new();
        store.fail.store(true, Ordering::SeqCst);
        let tracker = Arc::new(AckTracker::new(1));
        let (w, contiguous) = spawn_always(store.clone(), tracker.clone());
        let r = w.append(Bytes::from("a"), Some(Bytes::from("id-a"))).await;
        assert!(matches!(r, Err(WriteError::Sync(_))), "{r:?}");
        store.fail.store(false, Ordering::SeqCst);

        // A retry of the same id (a duplicate: nothing new to write)…
        let r = w.append(Bytes::from("a"), Some(Bytes::from("id-a"))).await;
        assert!(
            r.is_err(),
            "a duplicate of an entry whose fsync failed: {r:?}"
        );
        // …a put of what is already held…
        let held = vec![Entry {
            key: 1,
            value: Bytes::from("a"),
            id: Some(Bytes::from("id-a")),
        }];
        let r = w.put(held, None).await;
        assert!(r.is_err(), "a put of nothing new: {r:?}");
        // …and a new append are all refused, and the end of the log never moves.
        let r = w.append(Bytes::from("b"), None).await;
        assert!(r.is_err(), "a new append: {r:?}");
        assert_eq!(*contiguous.borrow(), 0, "published after a failed fsync");
        assert_eq!(tracker.fully_replicated(), 0);
    }

    /// A secondary's writer over a memory store.
    fn secondary(store: Arc<dyn LogStore>) -> (Writer, watch::Receiver<u64>) {
        let (w, contiguous, _) = Writer::spawn(
            store,
            WriteStats::default(),
            WriterOptions {
                fsync: FsyncPolicy::Never,
                fsync_interval: Duration::from_millis(100),
                event_lines_per_s: 0,
                dedup_window: None,
                keep_unclean: None,
                master: None,
            },
            CancellationToken::new(),
        );
        (w, contiguous)
    }

    fn from(epoch: u64, pairs: &[(u64, u64)]) -> Option<Arc<FromMaster>> {
        Some(Arc::new(FromMaster {
            epoch,
            history: History::from_pairs(pairs.to_vec()).unwrap(),
        }))
    }

    /// The rule `ReconcileFirst` of `docs/log-matching.md`, case by case.
    #[tokio::test]
    async fn a_secondary_reconciles_with_the_master_before_it_stores() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let (w, contiguous) = secondary(store.clone());
        // Epoch 1 writes keys 1..=10 (and key 15, held aside).
        w.put(entries(1..=10, "old"), from(1, &[(1, 1)]))
            .await
            .unwrap();
        w.put(entries(15..=15, "old"), from(1, &[(1, 1)]))
            .await
            .unwrap();
        assert_eq!(*contiguous.borrow(), 10);

        // The same master, its history grown (it opened epoch 1 — nothing new here), and a
        // late request sent before it grew: nothing is cut.
        w.put(entries(11..=11, "old"), from(1, &[(1, 1)]))
            .await
            .unwrap();
        assert_eq!(store.contiguous_key(), 11);

        // A master of epoch 2 that went on from key 9: keys 9.. are cut before its batch is
        // stored, the end of the log moves back, and the history is the master's.
        let stored = w
            .put(entries(9..=9, "new"), from(2, &[(1, 1), (2, 9)]))
            .await
            .unwrap();
        assert_eq!(stored, 1);
        assert_eq!(store.contiguous_key(), 9);
        assert_eq!(store.held_aside(), 0, "key 15 of epoch 1 is cut too");
        let read = store.read(9, 10, usize::MAX).unwrap();
        assert_eq!(read[0].value, Bytes::from("new9"));
        assert_eq!(*contiguous.borrow(), 9);
        assert_eq!(
            store.cuts(),
            vec![crate::storage::CutRecord {
                from_key: 9,
                entries: 4
            }]
        );
        let e = w.current_epochs();
        assert_eq!(
            (e.current, e.history.to_header()),
            (2, "1:1,2:9".to_string())
        );

        // A request of the replaced master (epoch 1) is refused and changes nothing.
        let r = w.put(entries(10..=10, "old"), from(1, &[(1, 1)])).await;
        assert!(
            matches!(r, Err(WriteError::StaleEpoch { have: 2, got: 1 })),
            "{r:?}"
        );
        assert_eq!(store.contiguous_key(), 9);
        // A late request of the epoch-2 master with its history before it grew: stored.
        w.put(entries(10..=10, "new"), from(2, &[(1, 1), (2, 9)]))
            .await
            .unwrap();
        assert_eq!(store.contiguous_key(), 10);
        // A new master (epoch 3) whose history agrees: its epoch is taken, nothing is cut.
        w.put(entries(11..=11, "new"), from(3, &[(1, 1), (2, 9)]))
            .await
            .unwrap();
        assert_eq!(store.cuts().len(), 1);
        assert_eq!(w.current_epochs().current, 3);
    }

    /// A master opens its epoch, durably, before the first key it assigns; tail adoption
    /// takes the labels of what it adopts, and stops once the epoch is open.
    #[tokio::test]
    async fn a_master_opens_its_epoch_at_its_first_key_and_adopts_only_before() {
        let (store, w) = master_of_epoch_3(3, vec![(1, 1)], 5, "m");
        // A tail of a log that diverged at key 3 is not adopted.
        let n = w
            .put(entries(6..=7, "x"), from(2, &[(1, 1), (2, 3)]))
            .await
            .unwrap();
        assert_eq!(n, 0);
        // Of a tail whose history labels keys from 7 otherwise, only key 6 is this master's.
        let n = w
            .put(entries(6..=8, "t"), from(2, &[(1, 1), (2, 7)]))
            .await
            .unwrap();
        assert_eq!(n, 1);
        // A tail its history labels alike is taken; the history stays as it is.
        let n = w
            .put(entries(7..=8, "t"), from(2, &[(1, 1)]))
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(store.epochs().history.to_header(), "1:1");
        // The first append opens epoch 3 at key 9, in the store, before it is answered.
        assert_eq!(
            w.append(Bytes::from("a"), None).await.unwrap(),
            Appended::New(9)
        );
        assert_eq!(store.epochs().history.to_header(), "1:1,3:9");
        assert_eq!(w.current_epochs().history.to_header(), "1:1,3:9");
        // No adoption after that.
        let n = w
            .put(entries(10..=10, "t"), from(2, &[(1, 1), (2, 7)]))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    /// Review of issue 15 (`AdoptMatching`): a master whose own history says its previous epoch
    /// wrote keys from 11 anew (`1:1,2:11`), and which lost them, must not take back an older
    /// epoch's keys 11.. from a secondary that missed epoch 2 (`1:1`): they are the ones epoch 2
    /// went on without, and another secondary may hold epoch 2's acknowledged messages there.
    /// The divergence point (11) lies beyond the master's last key (10), which is all the rule
    /// checks; adopting also drops the pair `2:11` from the master's history.
    #[tokio::test]
    async fn review_15_a_master_does_not_adopt_keys_its_own_history_says_a_later_epoch_wrote() {
        let (store, w) = master_of_epoch_3(2, vec![(1, 1), (2, 11)], 10, "a");
        let n = w
            .put(entries(11..=15, "b"), from(1, &[(1, 1)]))
            .await
            .unwrap();
        assert_eq!(
            (n, store.epochs().history.to_header()),
            (0, "1:1,2:11".to_string()),
            "adopted epoch 1's keys 11..=15 over epoch 2's"
        );
    }

    /// Review of issue 15 (`ReconcileFirst`, the prefix case): the rule "same epoch, and the
    /// master's history a prefix of ours: a late request, store it" assumes a master's history
    /// only grows at its end. A master that adopted a stale tail (see the test above) *lost* a
    /// pair instead: its later requests carry a prefix of what it sent before, and the secondary
    /// stores their keys under labels that are not the master's; the master's next history
    /// then cuts keys the secondary answered 2xx for in this very epoch.
    #[tokio::test]
    async fn review_15_a_secondary_never_stores_keys_under_labels_the_master_does_not_give_them() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let (w, _) = secondary(store.clone());
        // Epoch 2 wrote c11, c12 after a1..a10.
        w.put(entries(1..=10, "a"), from(2, &[(1, 1), (2, 11)]))
            .await
            .unwrap();
        w.put(entries(11..=12, "c"), from(2, &[(1, 1), (2, 11)]))
            .await
            .unwrap();
        // Epoch 3, before adopting, sends with the history on its disk: the same, so only the
        // epoch is taken.
        w.put(entries(1..=1, "a"), from(3, &[(1, 1), (2, 11)]))
            .await
            .unwrap();
        // Epoch 3 adopted b11..b30 of epoch 1 (history `1:1`) and sends b13, b14.
        let answered = w
            .put(entries(13..=14, "b"), from(3, &[(1, 1)]))
            .await
            .is_ok();
        let label = w.current_epochs().history.label(13);
        let held_then = store.holds(13);
        // Epoch 3 opens at key 31 and sends its first key.
        w.put(entries(31..=31, "d"), from(3, &[(1, 1), (3, 31)]))
            .await
            .unwrap();
        assert!(
            !(answered && held_then) || (label == 1 && store.holds(13)),
            "key 13 (b13, written by epoch 1) was answered 2xx and stored under label {label}; \
             after the master's next request it is held: {} (cuts: {:?})",
            store.holds(13),
            store.cuts()
        );
    }
}
