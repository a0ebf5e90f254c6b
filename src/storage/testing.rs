//! Test doubles and helpers for the unit tests of the whole crate (compiled for tests only):
//! a store whose fsync a test can hold and fail, and small builders.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::memory::MemoryStore;
use super::{Cut, CutRecord, LogStore, StoreError, StoreResult};
use crate::domain::epoch::{Epochs, History};
use crate::domain::{Entry, LogId};

/// A memory store whose `sync` waits at `gate` while a test holds it, and fails while `fail`
/// is set; like a file store, a failure is then remembered (`sync_failure`) and refuses
/// `set_epochs`. `clean` is what `last_stop_clean` answers.
pub struct GatedStore {
    pub inner: MemoryStore,
    pub gate: Mutex<()>,
    pub syncs: AtomicUsize,
    pub fail: AtomicBool,
    pub clean: bool,
    failure: Mutex<Option<String>>,
}

impl GatedStore {
    /// A store after a clean stop (or a new one).
    pub fn new() -> Arc<GatedStore> {
        Arc::new(GatedStore::with_clean(true))
    }

    /// A store whose last stop was not clean (a master then waits for its secondaries).
    pub fn unclean() -> Arc<GatedStore> {
        Arc::new(GatedStore::with_clean(false))
    }

    fn with_clean(clean: bool) -> GatedStore {
        GatedStore {
            inner: MemoryStore::new(),
            gate: Mutex::new(()),
            syncs: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            clean,
            failure: Mutex::new(None),
        }
    }
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
    fn put(&self, entries: &[Entry]) -> StoreResult<usize> {
        self.inner.put(entries)
    }
    fn sync(&self) -> StoreResult<()> {
        let _pass = self.gate.lock();
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            *self.failure.lock() = Some("disk on fire".into());
            return Err(StoreError::Io(std::io::Error::other("disk on fire")));
        }
        Ok(())
    }
    fn read(&self, from: u64, n: usize, bytes: usize) -> StoreResult<Vec<Entry>> {
        self.inner.read(from, n, bytes)
    }
    fn scan_ids(&self, from: u64, f: &mut dyn FnMut(&[u8], u64)) -> StoreResult<()> {
        self.inner.scan_ids(from, f)
    }
    fn log_id(&self) -> Option<LogId> {
        self.inner.log_id()
    }
    fn set_log_id(&self, id: LogId) -> StoreResult<()> {
        self.inner.set_log_id(id)
    }
    fn epochs(&self) -> Epochs {
        self.inner.epochs()
    }
    fn set_epochs(&self, epochs: &Epochs) -> StoreResult<()> {
        if let Some(why) = self.failure.lock().clone() {
            return Err(StoreError::Io(std::io::Error::other(why)));
        }
        self.inner.set_epochs(epochs)
    }
    fn cut_from(&self, from_key: u64) -> StoreResult<Cut> {
        self.inner.cut_from(from_key)
    }
    fn cuts(&self) -> Vec<CutRecord> {
        self.inner.cuts()
    }
    fn last_stop_clean(&self) -> bool {
        self.clean
    }
    fn mark_clean_stop(&self) -> StoreResult<()> {
        self.inner.mark_clean_stop()
    }
    fn sync_failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }
}

/// Entries `keys`, each valued `"<tag><key>"`, without ids.
pub fn entries(keys: RangeInclusive<u64>, tag: &str) -> Vec<Entry> {
    keys.map(|k| Entry {
        key: k,
        value: Bytes::from(format!("{tag}{k}")),
        id: None,
    })
    .collect()
}

/// Epoch `current` with the history of `pairs` (which must be one).
pub fn epochs(current: u64, pairs: &[(u64, u64)]) -> Epochs {
    Epochs {
        current,
        history: History::from_pairs(pairs.to_vec()).expect("a history"),
        ..Default::default()
    }
}

/// Waits until `cond` holds, for at most 5 s (then fails the test, saying `what`).
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
