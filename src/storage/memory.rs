//! [`MemoryStore`]: a [`LogStore`] that keeps everything in memory and nothing across restarts.
//!
//! Used by unit tests and by nodes configured with `storage.engine = "memory"`. The visible log
//! is a `Vec` indexed by `key - 1`; entries beyond the first hole wait in a `BTreeMap` and move
//! into the `Vec` as soon as the hole is filled, so the contract's "no holes in the visible log"
//! holds by construction. A cut truncates the `Vec` and splits the map; epochs and the list of
//! cuts live beside them. Nothing is ever lost to a crash here, so every stop counts as clean and
//! no fsync ever fails.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use super::{
    Cut, CutRecord, Entry, Epochs, LogId, LogStore, StoreError, StoreResult, check_epochs,
};

/// An in-memory log store. Cheap to create; see the module docs.
#[derive(Default)]
pub struct MemoryStore {
    // A std-style lock, never held across an await: every method is a short critical section.
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Keys `1..=visible.len()`.
    visible: Vec<Entry>,
    /// Keys beyond the first hole, waiting for it to fill.
    aside: BTreeMap<u64, Entry>,
    log_id: Option<LogId>,
    epochs: Epochs,
    cuts: Vec<CutRecord>,
}

impl MemoryStore {
    /// An empty store with no log identity.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inner {
    fn held(&self, key: u64) -> Option<&Entry> {
        if key == 0 {
            return None;
        }
        match self.visible.get((key - 1) as usize) {
            Some(e) => Some(e),
            None => self.aside.get(&key),
        }
    }
}

impl LogStore for MemoryStore {
    fn contiguous_key(&self) -> u64 {
        self.inner.read().visible.len() as u64
    }

    fn held_aside(&self) -> usize {
        self.inner.read().aside.len()
    }

    fn holds(&self, key: u64) -> bool {
        self.inner.read().held(key).is_some()
    }

    fn put(&self, entries: &[Entry]) -> StoreResult<usize> {
        let mut inner = self.inner.write();
        // Check everything first: a conflict anywhere stores nothing.
        for e in entries {
            if e.key == 0 {
                return Err(StoreError::ZeroKey);
            }
            if let Some(held) = inner.held(e.key)
                && !held.same_content(e)
            {
                return Err(StoreError::Conflict { key: e.key });
            }
        }
        let mut stored = 0;
        for e in entries {
            if inner.held(e.key).is_some() {
                continue;
            }
            stored += 1;
            inner.aside.insert(e.key, e.clone());
        }
        // Move whatever became contiguous into the visible log.
        loop {
            let next = inner.visible.len() as u64 + 1;
            match inner.aside.remove(&next) {
                Some(e) => inner.visible.push(e),
                None => break,
            }
        }
        Ok(stored)
    }

    fn sync(&self) -> StoreResult<()> {
        Ok(())
    }

    fn read(&self, from: u64, max_entries: usize, max_bytes: usize) -> StoreResult<Vec<Entry>> {
        let inner = self.inner.read();
        let from = from.max(1);
        let start = (from - 1) as usize;
        if start >= inner.visible.len() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in inner.visible[start..].iter().take(max_entries) {
            if !out.is_empty() && bytes + e.value.len() > max_bytes {
                break;
            }
            bytes += e.value.len();
            out.push(e.clone());
        }
        Ok(out)
    }

    fn scan_ids(&self, from: u64, f: &mut dyn FnMut(&[u8], u64)) -> StoreResult<()> {
        let inner = self.inner.read();
        let start = from.max(1) as usize - 1;
        for e in inner.visible.iter().skip(start) {
            if let Some(id) = &e.id {
                f(id, e.key);
            }
        }
        Ok(())
    }

    fn log_id(&self) -> Option<LogId> {
        self.inner.read().log_id
    }

    fn set_log_id(&self, id: LogId) -> StoreResult<()> {
        let mut inner = self.inner.write();
        match inner.log_id {
            Some(have) if have != id => Err(StoreError::LogIdMismatch { have, want: id }),
            _ => {
                inner.log_id = Some(id);
                Ok(())
            }
        }
    }

    fn epochs(&self) -> Epochs {
        self.inner.read().epochs.clone()
    }

    fn set_epochs(&self, epochs: &Epochs) -> StoreResult<()> {
        check_epochs(epochs)?;
        self.inner.write().epochs = epochs.clone();
        Ok(())
    }

    fn cut_from(&self, from_key: u64) -> StoreResult<Cut> {
        if from_key == 0 {
            return Err(StoreError::ZeroKey);
        }
        let mut inner = self.inner.write();
        // Keys below `from_key` stay where they are: a truncated visible log only had aside
        // keys beyond its old end, which are all ≥ from_key.
        let start = (from_key - 1) as usize;
        let mut gone: Vec<Entry> = if start < inner.visible.len() {
            inner.visible.split_off(start)
        } else {
            Vec::new()
        };
        let aside = inner.aside.split_off(&from_key);
        gone.extend(aside.into_values());
        if !gone.is_empty() {
            inner.cuts.push(CutRecord {
                from_key,
                entries: gone.len() as u64,
            });
        }
        Ok(Cut {
            from_key,
            removed: gone.into_iter().map(|e| (e.key, e.id)).collect(),
        })
    }

    fn cuts(&self) -> Vec<CutRecord> {
        self.inner.read().cuts.clone()
    }

    fn last_stop_clean(&self) -> bool {
        true
    }

    fn mark_clean_stop(&self) -> StoreResult<()> {
        Ok(())
    }

    fn sync_failure(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e(key: u64, v: &str) -> Entry {
        Entry {
            key,
            value: Bytes::copy_from_slice(v.as_bytes()),
            id: None,
        }
    }

    #[test]
    fn out_of_order_entries_stay_hidden_until_the_gap_fills() {
        let s = MemoryStore::new();
        s.put(&[e(1, "a"), e(2, "b"), e(4, "d")]).unwrap();
        assert_eq!(s.contiguous_key(), 2);
        assert_eq!(s.held_aside(), 1);
        assert!(s.holds(4));
        assert_eq!(s.read(1, 10, usize::MAX).unwrap().len(), 2);
        s.put(&[e(3, "c")]).unwrap();
        assert_eq!(s.contiguous_key(), 4);
        assert_eq!(s.held_aside(), 0);
        let keys: Vec<u64> = s
            .read(1, 10, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, vec![1, 2, 3, 4]);
    }

    #[test]
    fn same_value_is_a_noop_and_another_value_conflicts_without_storing_anything() {
        let s = MemoryStore::new();
        assert_eq!(s.put(&[e(1, "a")]).unwrap(), 1);
        assert_eq!(s.put(&[e(1, "a")]).unwrap(), 0);
        let err = s.put(&[e(2, "b"), e(1, "x")]).unwrap_err();
        assert!(matches!(err, StoreError::Conflict { key: 1 }));
        assert!(!s.holds(2), "a conflicting batch stores nothing");
        assert!(matches!(s.put(&[e(0, "z")]), Err(StoreError::ZeroKey)));
    }

    #[test]
    fn read_respects_limits_but_returns_at_least_one_entry() {
        let s = MemoryStore::new();
        s.put(&[e(1, "aaaa"), e(2, "bbbb"), e(3, "cccc")]).unwrap();
        assert_eq!(s.read(1, 2, usize::MAX).unwrap().len(), 2);
        assert_eq!(s.read(1, 10, 5).unwrap().len(), 1);
        assert_eq!(s.read(1, 10, 0).unwrap().len(), 1);
        assert_eq!(s.read(3, 10, 100).unwrap().len(), 1);
        assert!(s.read(4, 10, 100).unwrap().is_empty());
    }

    #[test]
    fn a_cut_removes_exactly_the_keys_from_it_on_and_they_can_be_stored_again() {
        let s = MemoryStore::new();
        let mut with_id = e(3, "c");
        with_id.id = Some(Bytes::from_static(b"id-3"));
        s.put(&[
            e(1, "a"),
            e(2, "b"),
            with_id,
            e(4, "d"),
            e(6, "f"),
            e(9, "i"),
        ])
        .unwrap();
        assert_eq!((s.contiguous_key(), s.held_aside()), (4, 2));
        // Nothing at or above 10: nothing happens, nothing is recorded.
        assert_eq!(
            s.cut_from(10).unwrap(),
            Cut {
                from_key: 10,
                removed: vec![]
            }
        );
        assert!(s.cuts().is_empty());
        // Between aside keys.
        let cut = s.cut_from(7).unwrap();
        assert_eq!(cut.removed, vec![(9, None)]);
        assert_eq!((s.contiguous_key(), s.held_aside()), (4, 1));
        // Inside the visible log: the visible tail and every aside key go.
        let cut = s.cut_from(3).unwrap();
        assert_eq!(
            cut.removed,
            vec![(3, Some(Bytes::from_static(b"id-3"))), (4, None), (6, None)]
        );
        assert_eq!((s.contiguous_key(), s.held_aside()), (2, 0));
        assert!(!s.holds(3) && !s.holds(6) && s.holds(2));
        assert_eq!(
            s.cuts(),
            vec![
                CutRecord {
                    from_key: 7,
                    entries: 1
                },
                CutRecord {
                    from_key: 3,
                    entries: 3
                }
            ]
        );
        // Cut keys take new values.
        assert_eq!(s.put(&[e(3, "new c")]).unwrap(), 1);
        assert_eq!(s.read(3, 1, usize::MAX).unwrap()[0].value, "new c");
        assert!(matches!(s.cut_from(0), Err(StoreError::ZeroKey)));
    }

    #[test]
    fn epochs_are_kept_and_a_current_epoch_below_the_history_is_refused() {
        let s = MemoryStore::new();
        assert_eq!(s.epochs(), Epochs::default());
        let h = crate::domain::epoch::History::from_pairs(vec![(1, 1), (4, 9)]).unwrap();
        let good = Epochs {
            current: 5,
            history: h.clone(),
            ..Default::default()
        };
        s.set_epochs(&good).unwrap();
        assert_eq!(s.epochs(), good);
        assert!(
            s.set_epochs(&Epochs {
                current: 3,
                history: h,
                ..Default::default()
            })
            .is_err()
        );
        assert_eq!(s.epochs(), good);
        assert!(s.last_stop_clean() && s.mark_clean_stop().is_ok());
        assert_eq!(s.sync_failure(), None);
    }

    #[test]
    fn log_id_binds_once() {
        let s = MemoryStore::new();
        let a = LogId(1);
        s.set_log_id(a).unwrap();
        s.set_log_id(a).unwrap();
        assert!(matches!(
            s.set_log_id(LogId(2)),
            Err(StoreError::LogIdMismatch { .. })
        ));
        assert_eq!(
            "00000000000000000000000000000001".parse::<LogId>().unwrap(),
            a
        );
    }
}
