//! [`AckTracker`]: how many nodes hold each recent key, and the appends waiting on that number.
//!
//! Node 0 is the master; nodes `1..=N` are the secondaries in config order. A node is counted
//! for a key once, when it first reports holding it (the master: once the key is written, and
//! fsynced under `fsync = "always"`; a secondary: once it answered 2xx to a request carrying
//! the key, or reported it in its contiguous prefix). An HTTP error is never an ack.
//!
//! Invariants:
//! * every key `≤ base` is held by all nodes and needs no slot;
//! * `counts[i]` is the number of nodes counted for key `base + 1 + i`, never above `nodes`;
//! * a node is counted at most once per key (`counted[node]` remembers which keys), so a
//!   secondary that lost its data and is refilled does not count twice.
//!
//! Waiters are woken by the ack that reaches their write concern, never by polling: the
//! recording side checks the waiters of exactly the keys whose count changed.

use std::collections::{BTreeMap, VecDeque};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::rangeset::RangeSet;

/// Counts acknowledgements per key; see the module docs.
pub struct AckTracker {
    nodes: usize,
    // Held only for short, non-async sections (no await under the lock).
    inner: Mutex<Inner>,
}

struct Inner {
    base: u64,
    counts: VecDeque<u16>,
    counted: Vec<RangeSet>,
    waiters: BTreeMap<u64, Vec<Waiter>>,
}

struct Waiter {
    need: u16,
    tx: oneshot::Sender<u16>,
}

/// The answer to [`AckTracker::wait`].
pub enum Wait {
    /// Already held by enough nodes; the number of nodes holding it.
    Ready(u16),
    /// Resolves with the number of nodes holding the key once it reaches the need.
    Pending(oneshot::Receiver<u16>),
}

impl AckTracker {
    /// A tracker for `nodes` nodes (master included) over a log whose keys `≤ base` are
    /// already held by every node.
    pub fn new(nodes: usize, base: u64) -> Self {
        AckTracker {
            nodes,
            inner: Mutex::new(Inner {
                base,
                counts: VecDeque::new(),
                counted: vec![RangeSet::new(); nodes],
                waiters: BTreeMap::new(),
            }),
        }
    }

    /// Number of nodes, master included (ALL).
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Makes room for keys up to `last`. The writer calls this before anyone can ack them.
    pub fn extend_to(&self, last: u64) {
        let mut inner = self.inner.lock();
        let have = inner.base + inner.counts.len() as u64;
        if last > have {
            let grow = (last - have) as usize;
            inner.counts.extend(std::iter::repeat_n(0, grow));
        }
    }

    /// Records that `node` holds keys `lo..=hi`. Keys not yet known to the tracker are ignored.
    pub fn record(&self, node: usize, lo: u64, hi: u64) {
        if node >= self.nodes {
            return;
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let lo = lo.max(inner.base + 1);
        let hi = hi.min(inner.base + inner.counts.len() as u64);
        if lo > hi {
            return;
        }
        let fresh = inner.counted[node].insert(lo, hi);
        for (a, b) in fresh {
            for key in a..=b {
                let i = (key - inner.base - 1) as usize;
                inner.counts[i] += 1;
            }
            // Wake the waiters whose need is now met.
            let keys: Vec<u64> = inner.waiters.range(a..=b).map(|(k, _)| *k).collect();
            for key in keys {
                let count = inner.counts[(key - inner.base - 1) as usize];
                if let Some(list) = inner.waiters.get_mut(&key) {
                    let mut i = 0;
                    while i < list.len() {
                        if list[i].need <= count {
                            let w = list.swap_remove(i);
                            let _ = w.tx.send(count);
                        } else {
                            i += 1;
                        }
                    }
                    if list.is_empty() {
                        inner.waiters.remove(&key);
                    }
                }
            }
        }
        // Keys every node holds need no slot any more.
        let mut popped = 0;
        while inner
            .counts
            .front()
            .is_some_and(|c| *c as usize >= self.nodes)
        {
            inner.counts.pop_front();
            popped += 1;
        }
        if popped > 0 {
            inner.base += popped;
            let base = inner.base;
            for set in &mut inner.counted {
                set.remove_through(base);
            }
        }
    }

    /// How many nodes hold `key` now.
    pub fn acks(&self, key: u64) -> u16 {
        let inner = self.inner.lock();
        if key <= inner.base {
            return self.nodes as u16;
        }
        inner
            .counts
            .get((key - inner.base - 1) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until at least `need` nodes hold `key` (`need` is at most ALL; callers validate).
    pub fn wait(&self, key: u64, need: u16) -> Wait {
        let mut inner = self.inner.lock();
        if key <= inner.base {
            return Wait::Ready(self.nodes as u16);
        }
        let count = inner
            .counts
            .get((key - inner.base - 1) as usize)
            .copied()
            .unwrap_or(0);
        if count >= need {
            return Wait::Ready(count);
        }
        let (tx, rx) = oneshot::channel();
        inner
            .waiters
            .entry(key)
            .or_default()
            .push(Waiter { need, tx });
        Wait::Pending(rx)
    }

    /// Keys `≤` this are held by every node.
    pub fn fully_replicated(&self) -> u64 {
        self.inner.lock().base
    }

    /// Number of registered waiters (appends blocked on their write concern).
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiters.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_their_need_is_met_and_not_before() {
        let t = AckTracker::new(3, 0);
        t.extend_to(3);
        t.record(0, 1, 3);
        let Wait::Pending(mut w3) = t.wait(2, 3) else {
            panic!("not yet held by 3")
        };
        let Wait::Pending(w2) = t.wait(2, 2) else {
            panic!("not yet held by 2")
        };
        t.record(2, 2, 2);
        assert_eq!(w2.await.unwrap(), 2);
        assert!(w3.try_recv().is_err(), "w=3 still waits");
        t.record(1, 1, 3);
        assert_eq!(w3.await.unwrap(), 3);
    }

    #[test]
    fn a_node_counts_once_per_key_and_full_keys_are_dropped() {
        let t = AckTracker::new(3, 0);
        t.extend_to(5);
        t.record(0, 1, 5);
        t.record(1, 1, 5);
        t.record(1, 1, 5);
        assert_eq!(t.acks(3), 2);
        assert_eq!(t.fully_replicated(), 0);
        t.record(2, 1, 2);
        assert_eq!(t.fully_replicated(), 2);
        assert_eq!(t.acks(1), 3);
        assert_eq!(t.acks(3), 2);
        assert!(matches!(t.wait(1, 3), Wait::Ready(3)));
    }

    #[test]
    fn acks_for_unknown_keys_are_ignored() {
        let t = AckTracker::new(2, 0);
        t.record(1, 1, 10);
        t.extend_to(2);
        assert_eq!(t.acks(1), 0);
        t.record(5, 1, 2);
        assert_eq!(t.acks(1), 0);
    }

    #[test]
    fn single_node_cluster_is_done_when_the_master_writes() {
        let t = AckTracker::new(1, 0);
        t.extend_to(1);
        t.record(0, 1, 1);
        assert_eq!(t.fully_replicated(), 1);
        assert!(matches!(t.wait(1, 1), Wait::Ready(1)));
    }
}
