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
//!   only moves forward and never past an entry whose fsync has not returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::acks::AckTracker;
use crate::config::FsyncPolicy;
use crate::dedup::{DedupStats, IdIndex};
use crate::log::tail::TailCache;
use crate::log::{Entry, LogStore, StoreError};
use crate::metrics::WriteStats;
use crate::telemetry::LineBudget;

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
}

enum Command {
    Append {
        value: Bytes,
        id: Option<Bytes>,
        reply: oneshot::Sender<Result<Appended, WriteError>>,
    },
    Put {
        entries: Vec<Entry>,
        reply: oneshot::Sender<Result<usize, WriteError>>,
    },
}

/// A cheap, cloneable handle to the node's writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
    dedup: Arc<DedupStats>,
    /// Set once the writer assigned its first key (see `WriterTask::assigned_keys`).
    assigned: Arc<AtomicBool>,
    /// The newest entries written (master only; see [`Writer::tail`]).
    tail: Option<Arc<TailCache>>,
    /// See [`Writer::held_aside`].
    aside: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writer over `store`. `tracker` is the master's ack tracker (node 0 is
    /// recorded for every written key); secondaries pass `None`. `dedup_window`: how many
    /// recent messages have their ids remembered (`None`: all; see `crate::dedup`). Returns
    /// the handle and a watch of the visible log's end, which moves only past acknowledged
    /// entries.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        store: Arc<dyn LogStore>,
        stats: WriteStats,
        fsync: FsyncPolicy,
        fsync_interval: Duration,
        tracker: Option<Arc<AckTracker>>,
        event_lines_per_s: u32,
        dedup_window: Option<u64>,
        shutdown: CancellationToken,
    ) -> (Writer, watch::Receiver<u64>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let start = store.contiguous_key();
        let (contiguous_tx, contiguous_rx) = watch::channel(start);
        let mut ids = IdIndex::new(dedup_window);
        if tracker.is_some() {
            ids.load(&*store);
        }
        let dedup = ids.stats();
        if fsync == FsyncPolicy::Interval {
            tokio::spawn(sync_every(
                store.clone(),
                fsync_interval,
                stats.fsync.clone(),
                shutdown.clone(),
            ));
        }
        let assigned = Arc::new(AtomicBool::new(false));
        let tail = tracker
            .is_some()
            .then(|| Arc::new(TailCache::new(TAIL_ENTRIES, TAIL_BYTES)));
        let aside = Arc::new(AtomicUsize::new(store.held_aside()));
        let publish = Arc::new(Publish {
            tracker,
            contiguous: contiguous_tx,
            aside: aside.clone(),
        });
        let (syncer, sync_stage) = if fsync == FsyncPolicy::Always {
            let (tx, rx) = std::sync::mpsc::channel();
            let (store, publish, took) = (store.clone(), publish.clone(), stats.fsync.clone());
            // A thread of the blocking pool for as long as the writer runs.
            let stage = tokio::task::spawn_blocking(move || sync_stage(store, rx, publish, took));
            (Some(tx), Some(stage))
        } else {
            (None, None)
        };
        let task = WriterTask {
            tail: tail.clone(),
            store,
            ids,
            lines: LineBudget::new(event_lines_per_s),
            assigned_keys: assigned.clone(),
            publish,
            syncer,
            sync_stage,
            stats,
        };
        let join = tokio::spawn(task.run(rx, shutdown));
        (
            Writer {
                tx,
                dedup,
                assigned,
                tail,
                aside,
            },
            contiguous_rx,
            join,
        )
    }

    /// How many ids the idempotency index holds, and their bytes (master; zero otherwise).
    pub fn dedup_stats(&self) -> &DedupStats {
        &self.dedup
    }

    /// The newest entries this writer wrote, for replication to read before the store
    /// (master only: `None` on a secondary).
    pub fn tail(&self) -> Option<Arc<TailCache>> {
        self.tail.clone()
    }

    /// Entries held aside (stored beyond a gap), as published together with the `contiguous`
    /// watch. Read this first and the watch second: an entry acknowledged before is then
    /// counted in one of the two (it moves out of this count only after the watch moved past
    /// it), which a store's own count, updated as the entry is written, does not promise.
    pub fn held_aside(&self) -> usize {
        self.aside.load(Ordering::Acquire)
    }

    /// Whether this writer has assigned a key since the process started (master).
    pub fn has_assigned_keys(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
    }

    /// Appends `value` under the next key (master only).
    pub async fn append(&self, value: Bytes, id: Option<Bytes>) -> Result<Appended, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append { value, id, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// Stores entries under their keys (secondary), or — on the master — adopts those that
    /// continue its log exactly (tail recovery); returns how many were new.
    pub async fn put(&self, entries: Vec<Entry>) -> Result<usize, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Put { entries, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

struct WriterTask {
    store: Arc<dyn LogStore>,
    ids: IdIndex,
    /// Lines for "append received, key assigned" (see `LineBudget`).
    lines: LineBudget,
    /// Whether this process has assigned a key yet. Tail recovery only adopts keys into a log
    /// this master has not extended itself: before that, a secondary holding more than the
    /// master holds keys the master lost; after it, keys the master never had (a script's
    /// `PUT /message`), which must meet the master's own message and a 409 instead.
    assigned_keys: Arc<AtomicBool>,
    /// The newest entries written, each added only after the store wrote it (master only).
    tail: Option<Arc<TailCache>>,
    /// What a settled write moves (shared with the sync stage).
    publish: Arc<Publish>,
    /// `fsync = "always"`: writes go here to wait for their fsync (see [`sync_stage`]);
    /// otherwise they are settled as soon as they are written.
    syncer: Option<std::sync::mpsc::Sender<Written>>,
    sync_stage: Option<tokio::task::JoinHandle<()>>,
    stats: WriteStats,
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
            self.process(&mut cmds);
        }
        // Writes still waiting for their fsync are settled before the final one.
        self.syncer = None;
        if let Some(stage) = self.sync_stage.take() {
            let _ = stage.await;
        }
        if let Err(e) = self.store.sync() {
            tracing::error!(cause = %e, "final fsync at shutdown failed");
        }
    }

    fn process(&mut self, cmds: &mut Vec<Command>) {
        let mut puts: Vec<(PutReply, Result<usize, WriteError>)> = Vec::new();
        let mut appends: Vec<Entry> = Vec::new();
        let mut append_replies: Vec<(AppendReply, Appended)> = Vec::new();

        // The master counts itself for every key this batch adds to its log, adopted or new.
        let start_key = self.store.contiguous_key() + 1;
        // Replicated entries first: they carry their own keys.
        let mut pending_appends = Vec::new();
        for cmd in cmds.drain(..) {
            match cmd {
                Command::Put { entries, reply } => {
                    self.stats.batch.observe(entries.len() as f64);
                    let r = if self.publish.tracker.is_some() {
                        self.adopt(entries)
                    } else {
                        self.store.put(&entries).map_err(WriteError::from)
                    };
                    puts.push((reply, r));
                }
                Command::Append { value, id, reply } => pending_appends.push((value, id, reply)),
            }
        }

        let first_key = self.store.contiguous_key() + 1;
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
            self.assigned_keys.store(true, Ordering::Release);
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
        if let Some(tail) = &self.tail {
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
            None => written.settle(&self.publish, None),
        }
    }
}

/// What the writer publishes once a write is settled (written, and under `fsync = "always"`
/// made durable): the master's own acks and the visible end of the log.
struct Publish {
    tracker: Option<Arc<AckTracker>>,
    /// Published end of the visible, acknowledged log.
    contiguous: watch::Sender<u64>,
    /// Published count of entries held aside; stored after `contiguous` (see
    /// `Writer::held_aside`).
    aside: Arc<AtomicUsize>,
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
    /// Whether anything may have reached the file (then it needs the fsync).
    wrote: bool,
    append_error: Option<String>,
    puts: Vec<(PutReply, Result<usize, WriteError>)>,
    appends: Vec<(AppendReply, Appended)>,
}

impl Written {
    /// Publishes the write and answers its requests; `sync_error` is the failed fsync that
    /// should have covered it, if any (then nothing is published and every request that
    /// wrote gets the error).
    fn settle(self, publish: &Publish, sync_error: Option<String>) {
        let last = self.last;
        if sync_error.is_none() {
            if let Some(t) = &publish.tracker
                && last >= self.start_key
            {
                t.extend_to(last);
                t.record(0, self.start_key, last);
            }
            publish.contiguous.send_if_modified(|v| {
                // Settled writes arrive in order; never move the end back.
                let moved = *v < last;
                *v = (*v).max(last);
                moved
            });
            publish.aside.store(self.aside, Ordering::Release);
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
                (_, Some(e), true) => Err(WriteError::Sync(e.clone())),
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
    took: prometheus_client::metrics::histogram::Histogram,
) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        let mut sync_error = None;
        if batch.iter().any(|w| w.wrote) {
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
    /// gets it back from a secondary (see `crate::recovery`). Anything else is left out: a key
    /// the master already holds stays as it is, and nothing may leave a hole. Once this
    /// process has assigned a key itself, nothing is adopted any more (see `assigned_keys`).
    fn adopt(&mut self, entries: Vec<Entry>) -> Result<usize, WriteError> {
        if self.assigned_keys.load(Ordering::Acquire) {
            return Ok(0);
        }
        let start = self.store.contiguous_key() + 1;
        let adoptable: Vec<Entry> = (start..)
            .zip(entries.into_iter().skip_while(|e| e.key < start))
            .take_while(|(next, e)| e.key == *next)
            .map(|(_, e)| e)
            .collect();
        let (Some(first), Some(last)) = (adoptable.first(), adoptable.last()) else {
            return Ok(0);
        };
        let (first, last) = (first.key, last.key);
        let n = match self.store.put(&adoptable) {
            Ok(n) => n,
            Err(e) => {
                if let Some(tail) = &self.tail {
                    tail.clear();
                }
                return Err(e.into());
            }
        };
        if let Some(tail) = &self.tail {
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
    took: prometheus_client::metrics::histogram::Histogram,
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
    use crate::log::memory::MemoryStore;

    #[tokio::test]
    async fn keys_are_sequential_and_ids_deduplicate() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryStore::new());
        let tracker = Arc::new(AckTracker::new(1, 0));
        let (w, mut contiguous, _) = Writer::spawn(
            store.clone(),
            WriteStats::default(),
            FsyncPolicy::Never,
            Duration::from_millis(100),
            Some(tracker.clone()),
            0,
            None,
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

    /// A memory store whose `sync` waits at a gate the test holds, and may fail.
    struct GatedStore {
        inner: MemoryStore,
        gate: parking_lot::Mutex<()>,
        syncs: AtomicUsize,
        fail: AtomicBool,
    }

    impl LogStore for GatedStore {
        fn contiguous_key(&self) -> u64 {
            self.inner.contiguous_key()
        }
        fn held_aside(&self) -> usize {
            self.inner.held_aside()
        }
        fn holds(&self, key: u64) -> bool {
            self.inner.holds(key)
        }
        fn put(&self, entries: &[Entry]) -> crate::log::StoreResult<usize> {
            self.inner.put(entries)
        }
        fn sync(&self) -> crate::log::StoreResult<()> {
            let _pass = self.gate.lock();
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Io(std::io::Error::other("disk on fire")));
            }
            Ok(())
        }
        fn read(&self, from: u64, n: usize, bytes: usize) -> crate::log::StoreResult<Vec<Entry>> {
            self.inner.read(from, n, bytes)
        }
        fn scan_ids(
            &self,
            from: u64,
            f: &mut dyn FnMut(&[u8], u64),
        ) -> crate::log::StoreResult<()> {
            self.inner.scan_ids(from, f)
        }
        fn log_id(&self) -> Option<crate::log::LogId> {
            self.inner.log_id()
        }
        fn set_log_id(&self, id: crate::log::LogId) -> crate::log::StoreResult<()> {
            self.inner.set_log_id(id)
        }
    }

    fn gated() -> Arc<GatedStore> {
        Arc::new(GatedStore {
            inner: MemoryStore::new(),
            gate: parking_lot::Mutex::new(()),
            syncs: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
        })
    }

    fn spawn_always(
        store: Arc<GatedStore>,
        tracker: Arc<AckTracker>,
    ) -> (Writer, watch::Receiver<u64>) {
        let (w, contiguous, _) = Writer::spawn(
            store,
            WriteStats::default(),
            FsyncPolicy::Always,
            Duration::from_millis(100),
            Some(tracker),
            0,
            None,
            CancellationToken::new(),
        );
        (w, contiguous)
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // The gate is held across awaits on purpose: it stops the sync stage's thread, not this task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn always_answers_after_the_fsync_and_writes_on_while_it_runs() {
        let store = gated();
        let tracker = Arc::new(AckTracker::new(1, 0));
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
        let store = gated();
        store.fail.store(true, Ordering::SeqCst);
        let tracker = Arc::new(AckTracker::new(1, 0));
        let (w, contiguous) = spawn_always(store.clone(), tracker.clone());
        let r = w.append(Bytes::from("a"), Some(Bytes::from("id-a"))).await;
        assert!(matches!(r, Err(WriteError::Sync(_))), "{r:?}");
        assert_eq!(store.contiguous_key(), 1, "written, not durable");
        assert_eq!(*contiguous.borrow(), 0);
        assert_eq!(tracker.fully_replicated(), 0);
    }
}
