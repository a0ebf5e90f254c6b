//! [`IdIndex`]: the master's idempotency index, client `id` → key, over the dedup window.
//!
//! Role: the writer (`crate::storage::writer`) owns one and alone reads and changes it, so it needs no
//! lock. A retry of an append whose `id` is in the index appends nothing and answers with the
//! original key. The ids are stored in the log records, so the index is rebuilt from the log at
//! startup ([`IdIndex::load`]) and survives restarts.
//!
//! The window (`master.dedup_window`, default: the whole log) is a number of messages: with a
//! window of W and the log's last key L, the ids of keys `L - W + 1 ..= L` are remembered, and
//! an older id is forgotten (a retry with it appends again). Messages without an id count
//! toward the window too.
//!
//! Invariants:
//! * every remembered `(id, key)` is in the log: the writer inserts only with a write that
//!   succeeded (or, after a failed write, what a re-scan of the log found);
//! * with a window, the index holds at most W ids, and [`IdIndex::get`] never answers with a
//!   key outside the window, even before the eviction of that id has happened;
//! * `order` is in key order (keys are assigned increasing) and may hold stale entries for ids
//!   that were removed or re-inserted: eviction removes an id only if its key still matches.
//!
//! # Memory cost
//!
//! Measured by `examples/dedup_memory.rs` (a counting allocator around this type, glibc chunk
//! sizes; ids of 36 bytes, a UUID's text form): **99–116 bytes per id** with the whole log
//! remembered (1.5 M and 1 M ids: the map's share moves with its load factor) and
//! **126–168 bytes per id** with a window (the eviction queue's 24-byte slots and their slack).
//! Per id that is the id in one shared allocation (16-byte header + the id, rounded up to
//! 16 by malloc), a map slot (24 bytes + 1 control byte, at a load factor of 44–88 %), and
//! with a window a queue slot. So 10 M messages with ids cost about 1.2 GB of memory without a
//! window, and `dedup_window = 1000000` caps the index near 170 MB whatever the log's size.
//! Each byte of id beyond 36 adds about one byte.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::storage::LogStore;

/// Figures about the index, readable from other threads (metrics). Updated once per change
/// by the writer with relaxed stores: approximate while a write is in progress.
#[derive(Debug, Default)]
pub struct DedupStats {
    /// Ids remembered now.
    pub ids: AtomicU64,
    /// Sum of the lengths of the ids remembered now, in bytes.
    pub id_bytes: AtomicU64,
}

/// The idempotency index; see the module docs.
#[derive(Debug)]
pub struct IdIndex {
    map: HashMap<Arc<[u8]>, u64>,
    /// Ids in key order, for eviction; only kept with a window.
    order: VecDeque<(u64, Arc<[u8]>)>,
    window: Option<u64>,
    id_bytes: u64,
    stats: Arc<DedupStats>,
}

impl IdIndex {
    /// An empty index remembering the ids of the last `window` messages (`None`: all).
    pub fn new(window: Option<u64>) -> Self {
        IdIndex {
            map: HashMap::new(),
            order: VecDeque::new(),
            window: window.map(|w| w.max(1)),
            id_bytes: 0,
            stats: Arc::new(DedupStats::default()),
        }
    }

    /// Fills the index from the ids stored in `store`'s log (only those in the window).
    pub fn load(&mut self, store: &dyn LogStore) {
        let last = store.contiguous_key();
        let from = match self.window {
            Some(w) => last.saturating_sub(w).saturating_add(1).max(1),
            None => 1,
        };
        let r = store.scan_ids(from, &mut |id, key| self.insert(id, key));
        if let Err(e) = r {
            tracing::error!(cause = %e, "reading the ids of the log failed; retries of earlier appends may append again");
        }
    }

    /// The shared figures (ids, bytes) for metrics.
    pub fn stats(&self) -> Arc<DedupStats> {
        self.stats.clone()
    }

    /// The key of `id`, if it is remembered and within the window of a log whose next key is
    /// `next_key`.
    pub fn get(&self, id: &[u8], next_key: u64) -> Option<u64> {
        let key = *self.map.get(id)?;
        match self.window {
            Some(w) if next_key.saturating_sub(key) > w => None,
            _ => Some(key),
        }
    }

    /// Remembers `id` under `key`, forgetting ids that fall out of the window.
    pub fn insert(&mut self, id: &[u8], key: u64) {
        if let Some(k) = self.map.get_mut(id) {
            *k = key;
            if self.window.is_some()
                && let Some((id, _)) = self.map.get_key_value(id)
            {
                self.order.push_back((key, id.clone()));
            }
        } else {
            let shared: Arc<[u8]> = Arc::from(id);
            if self.window.is_some() {
                self.order.push_back((key, shared.clone()));
            }
            self.map.insert(shared, key);
            self.id_bytes += id.len() as u64;
        }
        if let Some(w) = self.window {
            // Keys up to `key - w` are out of the window of a log that holds `key`.
            let cutoff = key.saturating_sub(w);
            while let Some((k, _)) = self.order.front()
                && *k <= cutoff
            {
                if let Some((k, old)) = self.order.pop_front()
                    && self.map.get(&old[..]) == Some(&k)
                {
                    self.map.remove(&old[..]);
                    self.id_bytes -= old.len() as u64;
                }
            }
        }
        self.publish();
    }

    /// Forgets every id (a node that stops being a master keeps none).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.id_bytes = 0;
        self.publish();
    }

    /// Forgets `id` (the writer's undo after a failed write).
    pub fn remove(&mut self, id: &[u8]) {
        if let Some((old, _)) = self.map.remove_entry(id) {
            self.id_bytes -= old.len() as u64;
            self.publish();
        }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn publish(&self) {
        self.stats
            .ids
            .store(self.map.len() as u64, Ordering::Relaxed);
        self.stats.id_bytes.store(self.id_bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_window_every_id_is_remembered() {
        let mut ix = IdIndex::new(None);
        for k in 1..=1000u64 {
            ix.insert(format!("id-{k}").as_bytes(), k);
        }
        assert_eq!(ix.len(), 1000);
        assert_eq!(ix.get(b"id-1", 1_000_000), Some(1));
        assert_eq!(ix.get(b"nope", 2), None);
        assert_eq!(ix.stats().ids.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn a_window_forgets_the_oldest_ids_first_and_bounds_memory() {
        let mut ix = IdIndex::new(Some(3));
        for k in 1..=5u64 {
            ix.insert(format!("id-{k}").as_bytes(), k);
        }
        // Log 1..=5, window 3: keys 3, 4, 5 are remembered.
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.get(b"id-2", 6), None);
        assert_eq!(ix.get(b"id-3", 6), Some(3));
        // Messages without ids move the window too: with the log at 6..=7 key 3 is out of
        // it, even though nothing evicted it yet.
        assert_eq!(ix.get(b"id-3", 7), None);
        assert_eq!(ix.get(b"id-5", 7), Some(5));
        assert_eq!(
            ix.stats().id_bytes.load(Ordering::Relaxed),
            3 * "id-3".len() as u64
        );
    }

    #[test]
    fn removing_and_reinserting_keeps_the_index_consistent() {
        let mut ix = IdIndex::new(Some(2));
        ix.insert(b"a", 1);
        ix.remove(b"a");
        assert_eq!(ix.get(b"a", 2), None);
        ix.insert(b"a", 2);
        ix.insert(b"b", 3);
        // The stale queue entry for (1, "a") must not evict "a" at key 2.
        assert_eq!(ix.get(b"a", 4), Some(2));
        ix.insert(b"c", 4);
        assert_eq!(ix.get(b"a", 5), None);
        assert_eq!(ix.len(), 2);
    }

    #[test]
    fn load_reads_only_the_window_of_the_log() {
        use crate::domain::Entry;
        use crate::storage::memory::MemoryStore;
        use bytes::Bytes;
        let store = MemoryStore::new();
        let entries: Vec<Entry> = (1..=10u64)
            .map(|k| Entry {
                key: k,
                value: Bytes::from("v"),
                id: (k % 2 == 0).then(|| Bytes::from(format!("id-{k}"))),
            })
            .collect();
        store.put(&entries).unwrap();
        let mut ix = IdIndex::new(Some(4));
        ix.load(&store);
        assert_eq!(ix.len(), 2, "keys 8 and 10 of 7..=10");
        assert_eq!(ix.get(b"id-8", 11), Some(8));
        assert_eq!(ix.get(b"id-6", 11), None);
        let mut all = IdIndex::new(None);
        all.load(&store);
        assert_eq!(all.len(), 5);
    }
}
