//! [`AckTracker`]: which keys each node is counted for, and the appends waiting on those counts.
//!
//! Node 0 is the master; nodes `1..=N` are the secondaries in config order. A node is counted
//! for a key when it reports holding it (the master: once the key is written, and fsynced
//! under `fsync = "always"`; a secondary: once it answered 2xx to a request carrying the key,
//! or reported it in its contiguous prefix). An HTTP error is never an ack.
//!
//! State: `last`, the master's last key ([`AckTracker::extend_to`]; it only grows); per node
//! `n`, `held[n]`, the set of keys its *current incarnation* is counted for, as a
//! [`RangeSet`]; the registered waiters, each a `(key, need)`.
//!
//! Invariants (whenever the lock is free):
//! 1. `held[n] ⊆ 1..=last`: a key the master has not written is nobody's
//!    ([`AckTracker::record`] and [`AckTracker::reset_node`] drop what lies beyond `last`).
//! 2. `acks(k) = |{n : k ∈ held[n]}|`. So `acks(k) ≤ nodes`, and a node counts once per key
//!    however often it reports it. Nothing is kept per key: memory is the ranges of the sets
//!    (a live secondary's set is the one range `1..=k`) plus the registered waiters.
//! 3. `held[n]` only grows, except by `reset_node(n, h)`, which makes it exactly
//!    `1..=min(h, last)`: a new incarnation is counted for what it holds and for nothing its
//!    predecessor held (`docs/log-matching.md`, invariant 4). A reset lowers counts.
//! 4. Every registered waiter `(k, need)` has `acks(k) < need`. [`AckTracker::wait`] does not
//!    register a waiter whose need is met, and the record or reset that brings `acks(k)` to
//!    `need` answers the waiter (with `acks(k)` then) and removes it. Only the keys that
//!    enter a node's set are looked at, never by polling. An answer stands: a later reset that
//!    lowers the count does not take it back.
//! 5. The registered waiters are exactly the unanswered [`PendingAck`]s still alive: dropping
//!    one (its timeout fired, its client went away) removes its waiter, so waiters are
//!    bounded by the appends in progress, not by history.
//! 6. [`AckTracker::fully_replicated`] `= min over n of the end of held[n]'s prefix from 1`.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::domain::rangeset::RangeSet;

/// Counts acknowledgements per node incarnation; see the module docs.
pub struct AckTracker {
    nodes: usize,
    // Held only for short, non-async sections (no await under the lock).
    inner: Mutex<Inner>,
}

struct Inner {
    last: u64,
    held: Vec<RangeSet>,
    /// By `(key, registration number)`: a key's waiters are adjacent, and each has its slot.
    waiters: BTreeMap<Slot, Waiter>,
    next_id: u64,
    /// Set by [`AckTracker::close`]: the master's term ended, nobody waits any more.
    closed: bool,
}

type Slot = (u64, u64);

struct Waiter {
    need: u16,
    tx: oneshot::Sender<u16>,
}

/// The answer to [`AckTracker::wait`].
pub enum Wait {
    /// Already held by enough nodes; the number of nodes holding it.
    Ready(u16),
    /// Not yet: resolves once enough nodes hold the key.
    Pending(PendingAck),
}

/// An append waiting for its write concern. Resolves with the number of nodes holding the key
/// once it reaches the need, or with an error if the tracker is gone. Dropping it before
/// then withdraws the waiter.
pub struct PendingAck {
    rx: oneshot::Receiver<u16>,
    tracker: Weak<AckTracker>,
    slot: Slot,
    /// Resolved: the tracker holds no waiter for it any more.
    done: bool,
}

impl Future for PendingAck {
    type Output = Result<u16, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = std::task::ready!(Pin::new(&mut self.rx).poll(cx));
        self.done = true;
        Poll::Ready(out)
    }
}

impl Drop for PendingAck {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(tracker) = self.tracker.upgrade() {
            // Dropped after the lock is released (it may hold a sender).
            let _gone = tracker.inner.lock().waiters.remove(&self.slot);
        }
    }
}

impl AckTracker {
    /// A tracker for `nodes` nodes (master included, at most `u16::MAX`), none counted for
    /// any key, over a log whose last key is 0.
    pub fn new(nodes: usize) -> Self {
        assert!(nodes <= usize::from(u16::MAX), "{nodes} nodes");
        AckTracker {
            nodes,
            inner: Mutex::new(Inner {
                last: 0,
                held: vec![RangeSet::new(); nodes],
                waiters: BTreeMap::new(),
                next_id: 0,
                closed: false,
            }),
        }
    }

    /// Number of nodes, master included (ALL).
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The master's last key is `last` (a smaller value than before changes nothing). The
    /// writer calls this before anyone can ack the keys.
    pub fn extend_to(&self, last: u64) {
        let mut inner = self.inner.lock();
        inner.last = inner.last.max(last);
    }

    /// Counts `node` for keys `lo..=hi`. Keys beyond the master's last key, and unknown
    /// nodes, are ignored.
    pub fn record(&self, node: usize, lo: u64, hi: u64) {
        if node >= self.nodes {
            return;
        }
        let mut inner = self.inner.lock();
        let (lo, hi) = (lo.max(1), hi.min(inner.last));
        if lo <= hi {
            inner.count(node, lo, hi, false);
        }
    }

    /// `node` is a new incarnation that holds exactly keys `1..=holds_up_to`: whatever was
    /// counted for it before is forgotten, and it is counted for `1..=min(holds_up_to, last)`.
    pub fn reset_node(&self, node: usize, holds_up_to: u64) {
        if node >= self.nodes {
            return;
        }
        let mut inner = self.inner.lock();
        let hi = holds_up_to.min(inner.last);
        inner.count(node, 1, hi, true);
    }

    /// How many nodes hold `key` now.
    pub fn acks(&self, key: u64) -> u16 {
        self.inner.lock().acks(key)
    }

    /// Waits until at least `need` nodes hold `key` (`need` is at most ALL; callers
    /// validate).
    pub fn wait(self: &Arc<Self>, key: u64, need: u16) -> Wait {
        let mut inner = self.inner.lock();
        let count = inner.acks(key);
        if count >= need {
            return Wait::Ready(count);
        }
        let (tx, rx) = oneshot::channel();
        let slot = (key, inner.next_id);
        inner.next_id += 1;
        // After `close` the sender is dropped at once: the wait ends unanswered.
        if !inner.closed {
            inner.waiters.insert(slot, Waiter { need, tx });
        }
        drop(inner);
        Wait::Pending(PendingAck {
            rx,
            tracker: Arc::downgrade(self),
            slot,
            done: false,
        })
    }

    /// Ends the master's term: every append waiting, and any that starts waiting from now on,
    /// is answered with `RecvError` (its outcome is unknown: it may or may not reach its write
    /// concern under the next master).
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.waiters.clear();
    }

    /// What the writer tells when the master holds keys `first..=last` (see
    /// `crate::storage::writer::OnHeld`): they are the master's (node 0).
    pub fn master_holds(self: &Arc<Self>) -> crate::storage::writer::OnHeld {
        let t = self.clone();
        Arc::new(move |first, last| {
            t.extend_to(last);
            t.record(0, first, last);
        })
    }

    /// Keys `≤` this are held by every node.
    pub fn fully_replicated(&self) -> u64 {
        let inner = self.inner.lock();
        let prefixes = inner.held.iter().map(|s| s.prefix_end(1));
        prefixes.min().unwrap_or(inner.last)
    }

    /// Number of registered waiters (appends blocked on their write concern).
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiters.len()
    }

    /// Ranges held over all nodes: the tracker's memory besides its waiters.
    pub fn ranges(&self) -> usize {
        self.inner
            .lock()
            .held
            .iter()
            .map(|s| s.ranges().len())
            .sum()
    }
}

impl Inner {
    fn acks(&self, key: u64) -> u16 {
        self.held.iter().filter(|s| s.contains(key)).count() as u16
    }

    /// Counts `node` for `lo..=hi` (within `1..=last`; empty when `lo > hi`), first
    /// forgetting what it held if `reset`, and answers the waiters whose need that meets.
    fn count(&mut self, node: usize, lo: u64, hi: u64, reset: bool) {
        let Inner { held, waiters, .. } = self;
        if !waiters.is_empty() {
            // The keys entering the set are the gaps of the old one; only their counts rise.
            for (a, b) in held[node].gaps(lo, hi) {
                answer(held, waiters, node, a, b);
            }
        }
        let set = &mut held[node];
        if reset {
            set.clear();
        }
        set.add(lo, hi);
    }
}

/// Answers the waiters of keys `a..=b`, which `node` is about to be counted for (and is not
/// yet), whose need that meets.
fn answer(held: &[RangeSet], waiters: &mut BTreeMap<Slot, Waiter>, node: usize, a: u64, b: u64) {
    let mut from = Bound::Included((a, 0));
    // The count of the key last looked at: a key's waiters are adjacent.
    let mut known: Option<(u64, u16)> = None;
    while let Some((slot, need)) = waiters
        .range((from, Bound::Included((b, u64::MAX))))
        .next()
        .map(|(slot, w)| (*slot, w.need))
    {
        let key = slot.0;
        let count = match known {
            Some((k, c)) if k == key => c,
            _ => {
                let others = held
                    .iter()
                    .enumerate()
                    .filter(|&(n, s)| n != node && s.contains(key))
                    .count();
                let c = others as u16 + 1;
                known = Some((key, c));
                c
            }
        };
        if need <= count
            && let Some(w) = waiters.remove(&slot)
        {
            let _ = w.tx.send(count);
        }
        from = Bound::Excluded(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Extend(u64),
        Record(usize, u64, u64),
        Reset(usize, u64),
    }
    use Step::*;

    fn apply(t: &AckTracker, steps: &[Step]) {
        for step in steps {
            match *step {
                Extend(last) => t.extend_to(last),
                Record(node, lo, hi) => t.record(node, lo, hi),
                Reset(node, upto) => t.reset_node(node, upto),
            }
        }
    }

    /// Polls once: `Some(answer)` if resolved.
    fn poll(p: &mut PendingAck) -> Option<u16> {
        (&mut *p).now_or_never().map(|r| r.expect("tracker alive"))
    }

    fn pending(w: Wait) -> PendingAck {
        match w {
            Wait::Pending(p) => p,
            Wait::Ready(n) => panic!("ready with {n}, expected to wait"),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        /// `wait` answers at once with this count.
        Ready(u16),
        /// `wait` waits, and is still waiting after the steps that follow.
        Pending,
        /// `wait` waits, and the steps that follow answer it with this count.
        Answered(u16),
    }

    /// Name, steps before the wait, key, need, steps after it, outcome.
    type WaitCase = (
        &'static str,
        &'static [Step],
        u64,
        u16,
        &'static [Step],
        Want,
    );

    #[test]
    fn waiters_wake_when_their_need_is_met_and_not_before() {
        // Three nodes; keys 1..=3 written by the master before each wait.
        const W: [Step; 2] = [Extend(3), Record(0, 1, 3)];
        let cases: &[WaitCase] = &[
            ("w=1: the master's write", &W, 2, 1, &[], Want::Ready(1)),
            ("w=0", &[], 2, 0, &[], Want::Ready(0)),
            (
                "already held by 3",
                &[Extend(3), Record(0, 1, 3), Record(1, 1, 3), Record(2, 2, 2)],
                2,
                3,
                &[],
                Want::Ready(3),
            ),
            (
                "w=2: one secondary",
                &W,
                2,
                2,
                &[Record(2, 2, 2)],
                Want::Answered(2),
            ),
            (
                "w=3: one secondary is not enough",
                &W,
                2,
                3,
                &[Record(2, 1, 3)],
                Want::Pending,
            ),
            (
                "w=3: the second secondary",
                &W,
                2,
                3,
                &[Record(2, 2, 2), Record(1, 1, 3)],
                Want::Answered(3),
            ),
            (
                "acks of the neighbouring keys",
                &W,
                2,
                2,
                &[Record(1, 1, 1), Record(2, 3, 3)],
                Want::Pending,
            ),
            (
                "one node reporting a key again",
                &W,
                2,
                3,
                &[Record(1, 2, 2), Record(1, 1, 3), Record(1, 2, 2)],
                Want::Pending,
            ),
            (
                "a key not written yet: its acks wait for the write",
                &[],
                5,
                2,
                &[Record(1, 1, 5), Extend(5), Record(0, 5, 5)],
                Want::Pending,
            ),
            (
                "a key not written yet, then written and acked",
                &[],
                5,
                2,
                &[Extend(5), Record(0, 1, 5), Record(1, 4, 6)],
                Want::Answered(2),
            ),
            (
                "a new incarnation holding the key",
                &W,
                3,
                2,
                &[Reset(2, 9)],
                Want::Answered(2),
            ),
            (
                "a new incarnation holding less",
                &W,
                3,
                2,
                &[Reset(2, 2)],
                Want::Pending,
            ),
        ];
        for (name, before, key, need, after, want) in cases {
            let t = Arc::new(AckTracker::new(3));
            apply(&t, before);
            let got = match t.wait(*key, *need) {
                Wait::Ready(n) => Want::Ready(n),
                Wait::Pending(mut p) => {
                    assert_eq!(poll(&mut p), None, "{name}: answered before any step");
                    apply(&t, after);
                    match poll(&mut p) {
                        Some(n) => Want::Answered(n),
                        None => Want::Pending,
                    }
                }
            };
            assert_eq!(&got, want, "{name}");
            assert_eq!(t.waiting(), 0, "{name}: no waiter left behind");
        }
    }

    #[test]
    fn a_node_counts_once_per_key() {
        let t = AckTracker::new(3);
        t.extend_to(5);
        t.record(0, 1, 5);
        t.record(1, 1, 5);
        t.record(1, 1, 5);
        t.record(1, 3, 4);
        assert_eq!(t.acks(3), 2);
        assert_eq!(t.fully_replicated(), 0);
        t.record(2, 1, 2);
        t.record(2, 2, 2);
        assert_eq!(t.fully_replicated(), 2);
        assert_eq!([1, 2, 3, 5].map(|k| t.acks(k)), [3, 3, 2, 2]);
        assert_eq!(t.ranges(), 3, "one range per node");
    }

    #[test]
    fn acks_beyond_the_last_key_and_of_unknown_nodes_are_ignored() {
        let t = AckTracker::new(2);
        t.record(1, 1, 10);
        t.reset_node(1, 10);
        t.extend_to(2);
        assert_eq!(t.acks(1), 0, "acked before the master wrote it");
        t.record(5, 1, 2);
        t.reset_node(5, 2);
        assert_eq!(t.acks(1), 0, "no node 5");
        t.record(1, 0, 10);
        assert_eq!([0, 1, 2, 3].map(|k| t.acks(k)), [0, 1, 1, 0]);
        t.extend_to(1);
        assert_eq!(t.acks(2), 1, "the last key never moves back");
        t.extend_to(4);
        t.reset_node(0, 100);
        assert_eq!([1, 4, 5].map(|k| t.acks(k)), [2, 1, 0]);
        assert_eq!(t.fully_replicated(), 2);
    }

    #[test]
    fn single_node_cluster_is_done_when_the_master_writes() {
        let t = Arc::new(AckTracker::new(1));
        assert_eq!(t.fully_replicated(), 0);
        t.extend_to(1);
        t.record(0, 1, 1);
        assert_eq!(t.fully_replicated(), 1);
        assert!(matches!(t.wait(1, 1), Wait::Ready(1)));
    }

    #[test]
    fn reset_node_uncounts_what_the_old_incarnation_held() {
        let t = Arc::new(AckTracker::new(3));
        t.extend_to(10);
        t.record(0, 1, 10);
        t.record(1, 1, 10);
        t.record(2, 1, 5);
        assert!(matches!(t.wait(3, 3), Wait::Ready(3)));
        assert_eq!(t.fully_replicated(), 5);
        // Key 8 is held by the master and secondary1: a w=3 append waits for secondary2.
        let mut p = pending(t.wait(8, 3));
        // secondary1 comes back wiped.
        t.reset_node(1, 0);
        assert_eq!([3, 8].map(|k| t.acks(k)), [2, 1]);
        assert_eq!(t.fully_replicated(), 0);
        assert!(
            matches!(t.wait(3, 3), Wait::Pending(_)),
            "a retried id of key 3 does not answer from the old incarnation's acks"
        );
        t.record(2, 6, 10);
        assert_eq!(poll(&mut p), None, "held by 2 nodes, not 3");
        // secondary1 is refilled.
        t.record(1, 1, 7);
        assert_eq!(poll(&mut p), None);
        t.record(1, 8, 8);
        assert_eq!(poll(&mut p), Some(3));
        // A new incarnation holding part of what the old one held.
        t.reset_node(2, 4);
        assert_eq!([4, 5, 9].map(|k| t.acks(k)), [3, 2, 1]);
        assert_eq!(t.fully_replicated(), 4);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn dropping_a_pending_ack_withdraws_its_waiter() {
        let t = Arc::new(AckTracker::new(3));
        t.extend_to(1);
        t.record(0, 1, 1);
        let a = pending(t.wait(1, 3));
        let mut b = pending(t.wait(1, 2));
        let c = pending(t.wait(1, 2));
        assert_eq!(t.waiting(), 3);
        drop(a);
        assert_eq!(t.waiting(), 2);
        t.record(1, 1, 1);
        assert_eq!(t.waiting(), 0, "b and c answered");
        drop(c); // answered, never polled
        assert_eq!(poll(&mut b), Some(2));
        drop(b);
        // A waiter outliving the tracker learns it is gone.
        let p = pending(t.wait(1, 3));
        drop(t);
        assert!(matches!(p.now_or_never(), Some(Err(_))));
    }

    #[tokio::test]
    async fn timed_out_and_abandoned_waits_leave_nothing_behind() {
        // secondary2 is dead: every w=3 append times out. A timeout polls the wait, then
        // drops it; one in a thousand goes through `tokio::time::timeout` as in
        // `post_message`, the others do the same by hand (a real timer each would take
        // 100 s).
        let t = Arc::new(AckTracker::new(3));
        for key in 1..=100_000 {
            t.extend_to(key);
            t.record(0, key, key);
            t.record(1, key, key);
            let mut p = pending(t.wait(key, 3));
            if key % 1000 == 0 {
                let waited = tokio::time::timeout(Duration::from_millis(1), p).await;
                assert!(waited.is_err(), "key {key} timed out");
            } else {
                assert_eq!(poll(&mut p), None);
                drop(p);
            }
        }
        assert_eq!(t.waiting(), 0);
        assert_eq!(t.ranges(), 2, "the master's and secondary1's 1..=100000");
        assert_eq!(t.acks(100_000), 2);
        // A client that goes away: its request's task is dropped.
        let p = pending(t.wait(7, 3));
        let task = tokio::spawn(p);
        tokio::task::yield_now().await;
        assert_eq!(t.waiting(), 1);
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(t.waiting(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Step(Step),
        Wait(u64, u16),
        Drop(prop::sample::Index),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Node 3 does not exist (3 nodes): its reports must be ignored.
        prop_oneof![
            1 => (0u64..40).prop_map(|l| Op::Step(Extend(l))),
            4 => (0usize..4, 0u64..42, 0u64..8)
                .prop_map(|(n, lo, len)| Op::Step(Record(n, lo, lo + len))),
            1 => (0usize..4, 0u64..45).prop_map(|(n, h)| Op::Step(Reset(n, h))),
            3 => (0u64..42, 0u16..5).prop_map(|(k, need)| Op::Wait(k, need)),
            1 => any::<prop::sample::Index>().prop_map(Op::Drop),
        ]
    }

    /// The obvious tracker: the set of keys each node holds, one by one.
    struct Model {
        last: u64,
        held: Vec<BTreeSet<u64>>,
    }

    impl Model {
        fn apply(&mut self, step: Step) {
            match step {
                Extend(l) => self.last = self.last.max(l),
                Record(n, lo, hi) if n < self.held.len() => {
                    self.held[n].extend(lo.max(1)..=hi.min(self.last));
                }
                Reset(n, h) if n < self.held.len() => {
                    self.held[n] = (1..=h.min(self.last)).collect();
                }
                _ => {}
            }
        }

        fn acks(&self, key: u64) -> u16 {
            self.held.iter().filter(|s| s.contains(&key)).count() as u16
        }

        fn fully_replicated(&self) -> u64 {
            let prefix = |s: &BTreeSet<u64>| (1..).find(|k| !s.contains(k)).unwrap() - 1;
            self.held.iter().map(prefix).min().unwrap()
        }

        /// Maximal runs of consecutive keys, over all nodes.
        fn runs(&self) -> usize {
            let runs = |s: &BTreeSet<u64>| s.iter().filter(|&&k| !s.contains(&(k - 1))).count();
            self.held.iter().map(runs).sum()
        }
    }

    proptest! {
        #[test]
        fn behaves_like_sets_of_keys(ops in proptest::collection::vec(op(), 1..80)) {
            let t = Arc::new(AckTracker::new(3));
            let mut model = Model { last: 0, held: vec![BTreeSet::new(); 3] };
            let mut waiting: Vec<(u64, u16, PendingAck)> = Vec::new();
            for op in ops {
                match op {
                    Op::Step(step) => {
                        apply(&t, &[step]);
                        model.apply(step);
                    }
                    Op::Wait(key, need) => match t.wait(key, need) {
                        Wait::Ready(n) => {
                            prop_assert!(need <= model.acks(key));
                            prop_assert_eq!(n, model.acks(key));
                        }
                        Wait::Pending(p) => {
                            prop_assert!(need > model.acks(key), "waits on {} with need {}", key, need);
                            waiting.push((key, need, p));
                        }
                    },
                    Op::Drop(i) => {
                        if !waiting.is_empty() {
                            waiting.swap_remove(i.index(waiting.len()));
                        }
                    }
                }
                // Answered exactly when the need is met, with the count then.
                let mut i = 0;
                while i < waiting.len() {
                    let (key, need, p) = &mut waiting[i];
                    let count = model.acks(*key);
                    match poll(p) {
                        Some(n) => {
                            prop_assert!(*need <= count, "answered {} with need {}", key, need);
                            prop_assert_eq!(n, count);
                            waiting.swap_remove(i);
                        }
                        None => {
                            prop_assert!(*need > count, "{} held by {}, need {}", key, count, need);
                            i += 1;
                        }
                    }
                }
                prop_assert_eq!(t.waiting(), waiting.len());
                for key in 0..50 {
                    prop_assert_eq!(t.acks(key), model.acks(key), "acks of {}", key);
                }
                prop_assert_eq!(t.fully_replicated(), model.fully_replicated());
                prop_assert_eq!(t.ranges(), model.runs());
            }
        }
    }
}
