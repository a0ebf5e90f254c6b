//! [`RangeSet`]: a set of `u64` keys stored as sorted, disjoint, non-adjacent inclusive ranges.
//!
//! Replication knowledge is almost always "everything up to k, plus maybe a few batches beyond
//! a hole", so a handful of ranges describes what a secondary holds however long the log is.

/// Sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, hi)| hi < key);
        self.ranges.get(i).is_some_and(|&(lo, _)| lo <= key)
    }

    /// Adds `lo..=hi` and returns the sub-ranges that were not in the set before.
    pub fn insert(&mut self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let fresh: Vec<(u64, u64)> = self.gaps(lo, hi).collect();
        if !fresh.is_empty() {
            self.add(lo, hi);
        }
        fresh
    }

    /// The sub-ranges of `lo..=hi` that are not in the set, in order; allocates nothing.
    pub fn gaps(&self, lo: u64, hi: u64) -> Gaps<'_> {
        let first = self.ranges.partition_point(|&(_, b)| b < lo);
        Gaps {
            ranges: &self.ranges[first..],
            cursor: (lo <= hi).then_some(lo),
            hi,
        }
    }

    /// Adds `lo..=hi`, merging it with every range it overlaps or touches. Allocates only when
    /// the set gains a range beyond its capacity.
    pub fn add(&mut self, lo: u64, hi: u64) {
        if lo > hi {
            return;
        }
        let first = self
            .ranges
            .partition_point(|&(_, b)| b.saturating_add(1) < lo);
        let mut last = first;
        let (mut nlo, mut nhi) = (lo, hi);
        while last < self.ranges.len() && self.ranges[last].0 <= hi.saturating_add(1) {
            nlo = nlo.min(self.ranges[last].0);
            nhi = nhi.max(self.ranges[last].1);
            last += 1;
        }
        self.ranges.splice(first..last, [(nlo, nhi)]);
    }

    /// Forgets every key `≤ key`.
    pub fn remove_through(&mut self, key: u64) {
        let i = self.ranges.partition_point(|&(_, hi)| hi <= key);
        self.ranges.drain(..i);
        if let Some(first) = self.ranges.first_mut()
            && first.0 <= key
        {
            first.0 = key + 1;
        }
    }

    /// The end of the prefix that starts at `start`: the largest k with `start..=k` all in the
    /// set, or `start - 1` when `start` itself is missing.
    pub fn prefix_end(&self, start: u64) -> u64 {
        let i = self.ranges.partition_point(|&(_, hi)| hi < start);
        match self.ranges.get(i) {
            Some(&(lo, hi)) if lo <= start => hi,
            _ => start.saturating_sub(1),
        }
    }

    /// The first key `≥ from` that is not in the set.
    pub fn first_missing_from(&self, from: u64) -> u64 {
        self.prefix_end(from).saturating_add(1).max(from)
    }

    /// The first key `≥ from` that is in the set, if any.
    pub fn next_present_from(&self, from: u64) -> Option<u64> {
        let i = self.ranges.partition_point(|&(_, hi)| hi < from);
        self.ranges.get(i).map(|&(lo, _)| lo.max(from))
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

/// Iterator of [`RangeSet::gaps`].
pub struct Gaps<'a> {
    /// The ranges not yet passed; the first one ends at or after `cursor`.
    ranges: &'a [(u64, u64)],
    /// The next key of the asked range not yet accounted for; `None` once all of it is.
    cursor: Option<u64>,
    hi: u64,
}

impl Iterator for Gaps<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        loop {
            let c = self.cursor?;
            match self.ranges.split_first() {
                Some((&(a, b), rest)) if a <= self.hi => {
                    self.ranges = rest;
                    self.cursor = b.checked_add(1).filter(|n| *n <= self.hi);
                    if a > c {
                        return Some((c, a - 1));
                    }
                }
                _ => {
                    self.cursor = None;
                    return Some((c, self.hi));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn insert_reports_only_new_parts_and_merges() {
        let mut s = RangeSet::new();
        assert_eq!(s.insert(5, 9), vec![(5, 9)]);
        assert_eq!(s.insert(1, 3), vec![(1, 3)]);
        assert_eq!(s.ranges(), &[(1, 3), (5, 9)]);
        assert_eq!(s.insert(2, 12), vec![(4, 4), (10, 12)]);
        assert_eq!(s.ranges(), &[(1, 12)]);
        assert_eq!(s.insert(3, 7), vec![]);
        assert_eq!(s.insert(13, 13), vec![(13, 13)]);
        assert_eq!(s.ranges(), &[(1, 13)]);
    }

    #[test]
    fn gaps_of_a_range() {
        let mut s = RangeSet::new();
        assert_eq!(s.gaps(3, 2).count(), 0);
        assert_eq!(s.gaps(1, 4).collect::<Vec<_>>(), vec![(1, 4)]);
        s.add(3, 5);
        s.add(8, 9);
        assert_eq!(
            s.gaps(1, 12).collect::<Vec<_>>(),
            vec![(1, 2), (6, 7), (10, 12)]
        );
        assert_eq!(s.gaps(4, 8).collect::<Vec<_>>(), vec![(6, 7)]);
        assert_eq!(s.gaps(8, 9).count(), 0);
        s.add(u64::MAX - 1, u64::MAX);
        assert_eq!(
            s.gaps(u64::MAX - 2, u64::MAX).collect::<Vec<_>>(),
            vec![(u64::MAX - 2, u64::MAX - 2)]
        );
    }

    #[test]
    fn prefix_and_missing() {
        let mut s = RangeSet::new();
        assert_eq!(s.prefix_end(1), 0);
        assert_eq!(s.first_missing_from(1), 1);
        s.insert(1, 4);
        s.insert(7, 8);
        assert_eq!(s.prefix_end(1), 4);
        assert_eq!(s.first_missing_from(1), 5);
        assert_eq!(s.first_missing_from(7), 9);
        assert_eq!(s.next_present_from(5), Some(7));
        assert_eq!(s.next_present_from(9), None);
        s.remove_through(7);
        assert_eq!(s.ranges(), &[(8, 8)]);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((1u64..60, 0u64..8), 1..40)) {
            let mut s = RangeSet::new();
            let mut added = RangeSet::new();
            let mut model = BTreeSet::new();
            for (lo, len) in ops {
                let hi = lo + len;
                let gaps: Vec<u64> = s.gaps(lo, hi).flat_map(|(a, b)| a..=b).collect();
                let fresh = s.insert(lo, hi);
                added.add(lo, hi);
                prop_assert_eq!(&added, &s, "add merges like insert");
                let mut expect = Vec::new();
                for k in lo..=hi {
                    if model.insert(k) {
                        expect.push(k);
                    }
                }
                let got: Vec<u64> = fresh.iter().flat_map(|&(a, b)| a..=b).collect();
                prop_assert_eq!(&got, &expect);
                prop_assert_eq!(&gaps, &expect, "gaps are the keys insert adds");
                for w in s.ranges().windows(2) {
                    prop_assert!(w[0].1 + 1 < w[1].0, "ranges disjoint and not adjacent");
                }
                for k in 0..70 {
                    prop_assert_eq!(s.contains(k), model.contains(&k));
                }
            }
        }
    }
}
