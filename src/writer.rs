//! The writer: the one task that writes a node's log.
//!
//! Every append (master) and every replicated entry (secondary) goes through one
//! [`Writer`] handle into one task, which drains whatever has queued up, writes it with one
//! [`LogStore::put`] per request kind, applies the fsync policy once for the whole lot, and
//! only then answers. Draining the queue is the batching: under load many appends share one
//! write and one fsync (group commit); with one client nothing waits for a batch to fill.
//!
//! Invariants:
//! * keys are assigned here and only here, as `contiguous_key() + 1, + 2, …`, so the master's
//!   log has no holes and no two appends get the same key;
//! * an entry is acknowledged (its reply sent, its master ack recorded, the published
//!   `contiguous` key moved past it) only after it is written, and under
//!   `fsync = "always"` only after an fsync that covers it;
//! * the idempotency index (`id` → key) changes only together with a successful write.

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
    pub fn spawn(
        store: Arc<dyn LogStore>,
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
            tokio::spawn(sync_every(store.clone(), fsync_interval, shutdown.clone()));
        }
        let assigned = Arc::new(AtomicBool::new(false));
        let tail = tracker
            .is_some()
            .then(|| Arc::new(TailCache::new(TAIL_ENTRIES, TAIL_BYTES)));
        let aside = Arc::new(AtomicUsize::new(store.held_aside()));
        let task = WriterTask {
            tail: tail.clone(),
            store,
            fsync,
            tracker,
            ids,
            lines: LineBudget::new(event_lines_per_s),
            assigned_keys: assigned.clone(),
            contiguous: contiguous_tx,
            aside: aside.clone(),
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
    fsync: FsyncPolicy,
    tracker: Option<Arc<AckTracker>>,
    ids: IdIndex,
    /// Lines for "append received, key assigned" (see `LineBudget`).
    lines: LineBudget,
    /// Whether this process has assigned a key yet. Tail recovery only adopts keys into a log
    /// this master has not extended itself: before that, a secondary holding more than the
    /// master holds keys the master lost; after it, keys the master never had (a script's
    /// `PUT /message`), which must meet the master's own message and a 409 instead.
    assigned_keys: Arc<AtomicBool>,
    /// Published end of the visible, acknowledged log.
    contiguous: watch::Sender<u64>,
    /// The newest entries written, each added only after the store wrote it (master only).
    tail: Option<Arc<TailCache>>,
    /// Published count of entries held aside; stored after `contiguous` (see
    /// `Writer::held_aside`).
    aside: Arc<AtomicUsize>,
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
            self.process(&mut cmds).await;
        }
        if let Err(e) = self.store.sync() {
            tracing::error!(cause = %e, "final fsync at shutdown failed");
        }
    }

    async fn process(&mut self, cmds: &mut Vec<Command>) {
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
                    let r = if self.tracker.is_some() {
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
        let mut sync_error = None;
        if wrote && self.fsync == FsyncPolicy::Always {
            let store = self.store.clone();
            let r = tokio::task::spawn_blocking(move || store.sync()).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => sync_error = Some(e.to_string()),
                Err(e) => sync_error = Some(e.to_string()),
            }
            if let Some(e) = &sync_error {
                tracing::error!(cause = %e, "fsync failed; the written entries are not durable");
            }
        }

        let last = self.store.contiguous_key();
        if let Some(t) = &self.tracker
            && sync_error.is_none()
            && last >= start_key
        {
            t.extend_to(last);
            t.record(0, start_key, last);
        }
        if sync_error.is_none() {
            self.contiguous.send_if_modified(|v| {
                let moved = *v != last;
                *v = last;
                moved
            });
            self.aside.store(self.store.held_aside(), Ordering::Release);
        }

        for (reply, r) in puts {
            let r = match (r, &sync_error) {
                (Ok(_), Some(e)) => Err(WriteError::Sync(e.clone())),
                (r, _) => r,
            };
            let _ = reply.send(r);
        }
        for (reply, outcome) in append_replies {
            // A duplicate of an id first appended in this same batch shares that append's fate.
            let written_now = match outcome {
                Appended::New(_) => true,
                Appended::Duplicate(k) => k >= first_key,
            };
            let r = match (&append_error, &sync_error, written_now) {
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
async fn sync_every(store: Arc<dyn LogStore>, every: Duration, shutdown: CancellationToken) {
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
        match tokio::task::spawn_blocking(move || s.sync()).await {
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
}
