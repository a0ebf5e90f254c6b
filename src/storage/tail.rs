//! [`TailCache`]: the newest entries of the master's log, kept in memory for replication.
//!
//! Under live load every secondary is a few keys behind the master, so every replication batch
//! asks for entries the writer has just written. Reading them back from the store costs a
//! `pread`, a record decode, a CRC check and a copy per entry, for bytes the writer still had
//! in hand. The writer hands them here instead (the values are `Bytes`: a reference, not a
//! copy), and replication reads here first, falling back to the store for anything older
//! (catch-up of a secondary far behind).
//!
//! Invariants:
//! * the cache holds a run of consecutive keys `first ..= first + len - 1`, and each entry is
//!   exactly what the store holds under its key: the writer adds entries only after the store
//!   wrote them, in key order, and clears the cache when a write fails (a failed write may have
//!   stored a prefix that the cache does not know about);
//! * it holds at most `max_entries` entries and about `max_bytes` bytes of values: the oldest
//!   are dropped first, so memory is bounded whatever the load.

use std::collections::VecDeque;

use parking_lot::Mutex;

use super::Entry;

/// The newest entries of the log; see the module docs.
pub struct TailCache {
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: VecDeque<Entry>,
    /// Bytes of values and ids held.
    bytes: usize,
}

impl TailCache {
    /// A cache of at most `max_entries` entries and about `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        TailCache {
            max_entries,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Adds entries the store has just written, in key order. Entries that do not continue
    /// the cached run start a new run (the old one is dropped), so the run stays consecutive.
    pub fn extend(&self, written: impl IntoIterator<Item = Entry>) {
        let mut inner = self.inner.lock();
        for e in written {
            if inner
                .entries
                .back()
                .is_some_and(|last| last.key + 1 != e.key)
            {
                inner.entries.clear();
                inner.bytes = 0;
            }
            inner.bytes += entry_bytes(&e);
            inner.entries.push_back(e);
        }
        while inner.entries.len() > self.max_entries
            || (inner.bytes > self.max_bytes && inner.entries.len() > 1)
        {
            if let Some(old) = inner.entries.pop_front() {
                inner.bytes -= entry_bytes(&old);
            }
        }
    }

    /// Forgets everything (after a failed write).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.entries.clear();
        inner.bytes = 0;
    }

    /// Entries from key `from` on, at most `max_entries` of them and at most `max_bytes` of
    /// values (but at least one), like [`super::LogStore::read`]; `None` when `from` is not
    /// cached, and the caller reads the store.
    pub fn read(&self, from: u64, max_entries: usize, max_bytes: usize) -> Option<Vec<Entry>> {
        let inner = self.inner.lock();
        let first = inner.entries.front()?.key;
        if from < first || from > first + inner.entries.len() as u64 - 1 {
            return None;
        }
        let mut out = Vec::with_capacity(max_entries.min(inner.entries.len()));
        let mut bytes = 0usize;
        for e in inner.entries.range((from - first) as usize..) {
            if out.len() >= max_entries
                || (!out.is_empty() && bytes.saturating_add(e.value.len()) > max_bytes)
            {
                break;
            }
            bytes += e.value.len();
            out.push(e.clone());
        }
        Some(out)
    }
}

fn entry_bytes(e: &Entry) -> usize {
    e.value.len() + e.id.as_ref().map_or(0, |id| id.len())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entry(key: u64) -> Entry {
        Entry {
            key,
            value: Bytes::from(format!("v{key:03}")),
            id: None,
        }
    }

    #[test]
    fn reads_consecutive_runs_and_misses_outside_them() {
        let c = TailCache::new(100, 1 << 20);
        assert!(c.read(1, 10, 1000).is_none(), "empty");
        c.extend((1..=5).map(entry));
        let got = c.read(2, 2, 1000).expect("cached");
        assert_eq!(got, vec![entry(2), entry(3)]);
        assert_eq!(
            c.read(4, 100, 1000).expect("cached"),
            vec![entry(4), entry(5)]
        );
        assert!(c.read(6, 1, 1000).is_none(), "beyond the end");
        // A run that does not continue replaces the old one.
        c.extend([entry(9)]);
        assert!(c.read(5, 1, 1000).is_none());
        assert_eq!(c.read(9, 1, 1000).expect("cached"), vec![entry(9)]);
        c.clear();
        assert!(c.read(9, 1, 1000).is_none());
    }

    #[test]
    fn bounded_by_entries_and_bytes_oldest_dropped_first() {
        let c = TailCache::new(3, 1 << 20);
        c.extend((1..=10).map(entry));
        assert!(c.read(7, 1, 1000).is_none());
        assert_eq!(c.read(8, 10, 1000).expect("cached").len(), 3);

        // Values are 4 bytes: 10 bytes hold two entries.
        let c = TailCache::new(100, 10);
        c.extend((1..=10).map(entry));
        assert!(c.read(8, 1, 1000).is_none());
        assert_eq!(c.read(9, 10, 1000).expect("cached").len(), 2);
        // max_bytes of a read: at least one entry, then only what fits.
        assert_eq!(c.read(9, 10, 1).expect("cached").len(), 1);
    }
}
