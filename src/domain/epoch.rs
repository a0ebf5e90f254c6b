//! Epochs and epoch histories: how two nodes tell whether their logs hold the same entries
//! (log matching). The design and its invariants are in `docs/log-matching.md`; this module is
//! the pure logic, with no I/O.
//!
//! An **epoch** is a master's term of office: a number that only grows. With a fixed master,
//! the master takes the next epoch every time it starts; with failover, an election gives it.
//! Every key of the log was assigned by exactly one master in exactly one epoch, and no epoch
//! is ever taken twice, so *(key, epoch)* names one entry.
//!
//! A node's **history** says which epoch wrote each key it holds: a list of `(epoch, first
//! key)` pairs, both strictly increasing, where epoch `e` wrote the keys from its first key up
//! to the key before the next pair's. Keys before the first pair are epoch 0: they were written
//! before epochs existed (a log from an earlier build). The last pair's epoch covers every key
//! after its first: a history says nothing of where the log ends (the store does).
//!
//! The **label** of a key is the epoch the history gives it. Two nodes whose histories give
//! the same label to every key up to `k` hold the same entries at every key up to `k` that
//! both hold (the *log matching* property; it needs the invariants of the design doc: one
//! master per epoch, labels written before the entries they label). The first key at which two
//! histories disagree is their **divergence point**: what a node holds from there on is not
//! the other's, and is cut before that node takes entries from the other.

use std::fmt;

/// Which epoch wrote which keys; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct History {
    /// `(epoch, first key)`, both strictly increasing, every epoch and key ≥ 1.
    pairs: Vec<(u64, u64)>,
}

/// Why a history was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("an epoch history pair needs an epoch ≥ 1 and a first key ≥ 1, got {epoch}:{key}")]
    Zero { epoch: u64, key: u64 },
    #[error(
        "an epoch history must grow in both epoch and first key: {epoch}:{key} follows {prev_epoch}:{prev_key}"
    )]
    Order {
        prev_epoch: u64,
        prev_key: u64,
        epoch: u64,
        key: u64,
    },
    #[error("bad epoch history {text:?}: {why}")]
    Syntax { text: String, why: String },
}

impl History {
    /// The empty history: every key is epoch 0.
    pub fn new() -> Self {
        History::default()
    }

    /// A history from its pairs, checked.
    pub fn from_pairs(pairs: Vec<(u64, u64)>) -> Result<Self, HistoryError> {
        let mut h = History::new();
        for (epoch, key) in pairs {
            h.push(epoch, key)?;
        }
        Ok(h)
    }

    /// The `(epoch, first key)` pairs.
    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The epoch that wrote `key` (0 for keys before the first pair).
    pub fn label(&self, key: u64) -> u64 {
        let i = self.pairs.partition_point(|&(_, first)| first <= key);
        if i == 0 { 0 } else { self.pairs[i - 1].0 }
    }

    /// The newest epoch in the history (0 when empty).
    pub fn last_epoch(&self) -> u64 {
        self.pairs.last().map_or(0, |p| p.0)
    }

    /// The newest epoch whose record a node holding keys `1..=contiguous` holds: the last pair
    /// whose first key is at most `contiguous + 1` (0 when none). A node takes a master's
    /// history with the first batch that reaches it, and keeps it on disk at once, while the
    /// keys before that epoch's first may still be missing (a batch held up or overtaken, an
    /// unsynced tail lost in a power loss): such a node does not hold that epoch's record —
    /// the rule by which a master counts a secondary as holding it (`docs/failover.md`,
    /// rule 4) — and an election must not rank its log by that epoch (review 13).
    pub fn held_epoch(&self, contiguous: u64) -> u64 {
        let i = self
            .pairs
            .partition_point(|&(_, first)| first <= contiguous.saturating_add(1));
        if i == 0 { 0 } else { self.pairs[i - 1].0 }
    }

    /// Appends `epoch` starting at `first_key`: both must be above the last pair's.
    pub fn push(&mut self, epoch: u64, first_key: u64) -> Result<(), HistoryError> {
        if epoch == 0 || first_key == 0 {
            return Err(HistoryError::Zero {
                epoch,
                key: first_key,
            });
        }
        if let Some(&(prev_epoch, prev_key)) = self.pairs.last()
            && (epoch <= prev_epoch || first_key <= prev_key)
        {
            return Err(HistoryError::Order {
                prev_epoch,
                prev_key,
                epoch,
                key: first_key,
            });
        }
        self.pairs.push((epoch, first_key));
        Ok(())
    }

    /// The first key (≥ 1) whose label differs between the two histories, or `None` when they
    /// label every key alike.
    ///
    /// Labels only change at a pair's first key, so only those keys (and key 1) need looking
    /// at, in order.
    pub fn divergence(&self, other: &History) -> Option<u64> {
        let mut points: Vec<u64> = std::iter::once(1)
            .chain(self.pairs.iter().map(|p| p.1))
            .chain(other.pairs.iter().map(|p| p.1))
            .collect();
        points.sort_unstable();
        points.dedup();
        points
            .into_iter()
            .find(|&k| self.label(k) != other.label(k))
    }

    /// Forgets every pair whose first key is `key` or later, and returns them.
    pub fn truncate_from(&mut self, key: u64) -> Vec<(u64, u64)> {
        let keep = self.pairs.partition_point(|&(_, first)| first < key);
        self.pairs.split_off(keep)
    }

    /// Whether `self`'s pairs are the first pairs of `other` (equal histories included): the
    /// history of a master as it was before it grew.
    pub fn is_prefix_of(&self, other: &History) -> bool {
        other.pairs.starts_with(&self.pairs)
    }

    /// The history as one header value: `epoch:first,epoch:first,…` (empty when empty).
    pub fn to_header(&self) -> String {
        let mut s = String::with_capacity(self.pairs.len() * 12);
        for (i, (e, k)) in self.pairs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(itoa::Buffer::new().format(*e));
            s.push(':');
            s.push_str(itoa::Buffer::new().format(*k));
        }
        s
    }

    /// Parses what [`History::to_header`] wrote.
    pub fn parse_header(text: &str) -> Result<History, HistoryError> {
        let syntax = |why: &str| HistoryError::Syntax {
            text: text.chars().take(200).collect(),
            why: why.to_string(),
        };
        let mut h = History::new();
        if text.trim().is_empty() {
            return Ok(h);
        }
        for part in text.split(',') {
            let (e, k) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| syntax("each pair is epoch:first_key"))?;
            let e = e
                .parse::<u64>()
                .map_err(|_| syntax("an epoch is an unsigned integer"))?;
            let k = k
                .parse::<u64>()
                .map_err(|_| syntax("a first key is an unsigned integer"))?;
            h.push(e, k)?;
        }
        Ok(h)
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pairs.is_empty() {
            return f.write_str("(no epochs)");
        }
        for (i, (e, k)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "epoch {e} from key {k}")?;
        }
        Ok(())
    }
}

/// What a node keeps beside its log: its epoch and its history (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Epochs {
    /// The highest epoch this node has taken part in: a master's own; on a secondary, the
    /// highest epoch of a master whose entries it accepted. Never below `history`'s last.
    pub current: u64,
    pub history: History,
    /// Keys this node holds that no master wrote: a script stored them (`PUT /message`), so
    /// the history's label for them is not true. The node vouches for its log only below the
    /// first of them (see [`Epochs::vouched_below`]); a master's entry stored over one with the
    /// same content takes it out.
    pub unlabelled: std::collections::BTreeSet<u64>,
    /// Failover: the member this node voted for in epoch `current`, if any (on disk before the
    /// vote is answered: a node never votes twice in one epoch).
    pub voted_for: Option<String>,
}

impl Epochs {
    /// The first key whose label this node cannot vouch for (`None`: every key it holds).
    pub fn vouched_below(&self) -> Option<u64> {
        self.unlabelled.first().copied()
    }

    /// These epochs with `current` raised to `epoch` (if higher): a vote cast in an older epoch
    /// is forgotten with it.
    pub fn raised_to(&self, epoch: u64) -> Epochs {
        let mut next = self.clone();
        if epoch > next.current {
            next.current = epoch;
            next.voted_for = None;
        }
        next
    }
}

/// What a replication request says of the master that sent it: its epoch and its history
/// (see `crate::domain::epoch`). A secondary reconciles with it before storing; a master adopting a
/// tail gets the labels of the adopted keys from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromMaster {
    pub epoch: u64,
    pub history: History,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(u64, u64)]) -> History {
        History::from_pairs(pairs.to_vec()).unwrap()
    }

    #[test]
    fn labels_follow_the_pairs() {
        let x = h(&[(1, 1), (3, 21), (7, 40)]);
        let labels: Vec<u64> = [1, 20, 21, 39, 40, 1000]
            .iter()
            .map(|&k| x.label(k))
            .collect();
        assert_eq!(labels, vec![1, 1, 3, 3, 7, 7]);
        assert_eq!(h(&[(2, 5)]).label(4), 0, "before the first pair: epoch 0");
        assert_eq!(History::new().label(9), 0);
        assert_eq!(x.last_epoch(), 7);
    }

    /// Review 13: a node holds an epoch's record only with every key before its first.
    #[test]
    fn the_held_epoch_needs_the_keys_before_its_first() {
        let h = History::from_pairs(vec![(1, 1), (2, 11)]).expect("history");
        assert_eq!(h.held_epoch(0), 1);
        assert_eq!(h.held_epoch(5), 1, "keys 6..=10 missing: epoch 2 not held");
        assert_eq!(h.held_epoch(9), 1);
        assert_eq!(
            h.held_epoch(10),
            2,
            "every key before 11: epoch 2's record held"
        );
        assert_eq!(h.held_epoch(u64::MAX), 2);
        assert_eq!(History::new().held_epoch(7), 0);
    }

    #[test]
    fn pairs_must_grow() {
        let mut x = h(&[(2, 10)]);
        assert!(x.push(2, 11).is_err(), "same epoch twice");
        assert!(x.push(3, 10).is_err(), "same first key twice");
        assert!(x.push(1, 20).is_err(), "epoch going back");
        assert!(x.push(0, 20).is_err() && x.push(3, 0).is_err());
        assert_eq!(x, h(&[(2, 10)]), "a refused push changes nothing");
        x.push(3, 11).unwrap();
        assert!(History::from_pairs(vec![(1, 5), (2, 5)]).is_err());
    }

    #[test]
    fn divergence_is_the_first_key_labelled_differently() {
        // Table: (a, b, divergence point).
        type Pairs = &'static [(u64, u64)];
        let cases: &[(Pairs, Pairs, Option<u64>)] = &[
            (&[], &[], None),
            (&[(1, 1)], &[(1, 1)], None),
            // A master that opened epoch 2 at key 21, against a secondary still on epoch 1.
            (&[(1, 1), (2, 21)], &[(1, 1)], Some(21)),
            (&[(1, 1)], &[(1, 1), (2, 21)], Some(21)),
            // Both moved on from epoch 1, at different keys.
            (&[(1, 1), (2, 21)], &[(1, 1), (3, 30)], Some(21)),
            (&[(1, 1), (2, 30)], &[(1, 1), (3, 21)], Some(21)),
            // Same keys, different epochs.
            (&[(1, 1), (2, 21)], &[(1, 1), (3, 21)], Some(21)),
            // Legacy (epoch 0) keys before the first pair.
            (&[(1, 101)], &[], Some(101)),
            (&[(1, 101)], &[(1, 101)], None),
            (&[(1, 1)], &[], Some(1)),
            // A later epoch that wrote the same keys as an earlier one cannot be told apart
            // from it only if both histories carry it.
            (&[(1, 1), (2, 5), (4, 9)], &[(1, 1), (2, 5), (4, 9)], None),
            (
                &[(1, 1), (2, 5), (4, 9)],
                &[(1, 1), (2, 5), (3, 9)],
                Some(9),
            ),
        ];
        for (a, b, want) in cases {
            let (a, b) = (h(a), h(b));
            assert_eq!(a.divergence(&b), *want, "{a} vs {b}");
            assert_eq!(b.divergence(&a), *want, "symmetric: {b} vs {a}");
        }
    }

    #[test]
    fn prefixes() {
        let a = h(&[(1, 1)]);
        let b = h(&[(1, 1), (2, 21)]);
        assert!(a.is_prefix_of(&b) && a.is_prefix_of(&a) && History::new().is_prefix_of(&a));
        assert!(!b.is_prefix_of(&a));
        assert!(!h(&[(2, 1)]).is_prefix_of(&b));
    }

    #[test]
    fn header_round_trips_and_bad_text_is_refused() {
        for x in [
            History::new(),
            h(&[(1, 1)]),
            h(&[(1, 1), (3, 21), (12, 9000)]),
        ] {
            assert_eq!(History::parse_header(&x.to_header()).unwrap(), x);
        }
        assert_eq!(h(&[(1, 1), (3, 21)]).to_header(), "1:1,3:21");
        for bad in [
            "1", "1:", ":1", "a:1", "1:1,", "2:5,1:9", "0:1", "1:0", "-1:1",
        ] {
            assert!(History::parse_header(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The divergence point is exactly where the labels first differ.
        #[test]
        fn divergence_matches_a_label_scan(
            a in proptest::collection::vec((1u64..6, 1u64..30), 0..5),
            b in proptest::collection::vec((1u64..6, 1u64..30), 0..5),
        ) {
            let norm = |mut v: Vec<(u64, u64)>| {
                v.sort();
                let mut h = History::new();
                for (e, k) in v { let _ = h.push(e, k); }
                h
            };
            let (a, b) = (norm(a), norm(b));
            let scan = (1..=40).find(|&k| a.label(k) != b.label(k));
            proptest::prop_assert_eq!(a.divergence(&b), scan);
        }
    }
}
