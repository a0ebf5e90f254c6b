//! The in-memory index of a [`super::file::FileStore`]: where on disk each held key's record is.
//!
//! Values never live here, only locations, so memory grows with the number of entries and not
//! with their size:
//!
//! * the **visible log** (keys `1..=len`) is a [`LocIndex`]: one packed `u64` [`Loc`] per key
//!   in fixed chunks of 64 Ki entries (512 KiB). That is 8 bytes per message with at most one
//!   partly filled chunk of slack, and growing it never copies (a plain `Vec` would briefly
//!   need three times its size while reallocating). 10 M messages cost 80 MB.
//! * entries **held aside** (beyond the first hole) sit in a `BTreeMap<key, Loc>`, about 40
//!   bytes per entry; there are few of them, and only on a secondary.
//!
//! Invariant (the contract's "no holes"): every key in `aside` is greater than `len + 1`;
//! [`Index::insert`] moves entries from `aside` to the visible log as soon as the hole before
//! them fills. [`Index::remove_from`] (a cut) keeps it: when it shortens the visible log, every
//! key held aside was beyond the old end, so it goes too.
//!
//! A cut costs time in what it removes, not in what it keeps: the visible log drops whole
//! chunks from its end (and their memory), the aside map splits off its tail.

use std::collections::BTreeMap;

/// Where a record is: segment number, byte offset, and whether it carries a client id.
///
/// Packed into a `u64`: bit 63 = has id, bits 32..63 = segment number (31 bits), bits 0..32 =
/// offset. The has-id bit lets `scan_ids` skip records without an id without reading them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc(u64);

/// The largest segment number a [`Loc`] can hold.
pub const MAX_SEGMENT: u32 = (1 << 31) - 1;

impl Loc {
    /// `segment` must be ≤ [`MAX_SEGMENT`] (checked by the caller when segments are created).
    pub fn new(segment: u32, offset: u32, has_id: bool) -> Self {
        debug_assert!(segment <= MAX_SEGMENT);
        Loc((u64::from(has_id) << 63)
            | (u64::from(segment & MAX_SEGMENT) << 32)
            | u64::from(offset))
    }

    pub fn segment(self) -> u32 {
        ((self.0 >> 32) as u32) & MAX_SEGMENT
    }

    pub fn offset(self) -> u32 {
        self.0 as u32
    }

    pub fn has_id(self) -> bool {
        self.0 >> 63 == 1
    }
}

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;

/// An append-only array of [`Loc`]s stored in fixed-size chunks.
#[derive(Default)]
pub struct LocIndex {
    chunks: Vec<Box<[u64]>>,
    len: usize,
}

impl LocIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, i: usize) -> Option<Loc> {
        if i >= self.len {
            return None;
        }
        Some(Loc(self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]))
    }

    pub fn push(&mut self, loc: Loc) {
        let slot = self.len & (CHUNK - 1);
        if slot == 0 {
            // A zeroed allocation of this size comes straight from the OS, so the pages are
            // only paid for as they are filled.
            self.chunks.push(vec![0u64; CHUNK].into_boxed_slice());
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk[slot] = loc.0;
        }
        self.len += 1;
    }

    /// Keeps the first `len` entries and forgets the rest (nothing if `len` is not shorter).
    /// Chunks wholly beyond the new end are freed; slots past it in the last kept chunk are
    /// stale until `push` writes them again, and nothing reads them (`get` and `copy_range`
    /// stop at `len`).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.len = len;
        // `push` starts a new chunk exactly when `len` is a multiple of CHUNK, so keep just
        // the chunks that hold entries.
        self.chunks.truncate(len.div_ceil(CHUNK));
    }

    /// Appends the locations of entries `start..end` (clamped to the length) to `out`.
    pub fn copy_range(&self, start: usize, end: usize, out: &mut Vec<Loc>) {
        let end = end.min(self.len);
        let mut i = start;
        while i < end {
            let chunk = &self.chunks[i >> CHUNK_BITS];
            let from = i & (CHUNK - 1);
            let to = (from + (end - i)).min(CHUNK);
            out.extend(chunk[from..to].iter().map(|&v| Loc(v)));
            i += to - from;
        }
    }

    /// Bytes of memory the index occupies (for reports).
    pub fn memory_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * 8 + self.chunks.capacity() * std::mem::size_of::<Box<[u64]>>()
    }
}

/// Every held key's location: the visible log plus the entries held aside.
#[derive(Default)]
pub struct Index {
    /// Key `k` is at position `k - 1`.
    visible: LocIndex,
    /// Keys greater than `visible.len() + 1`.
    aside: BTreeMap<u64, Loc>,
}

impl Index {
    /// The end of the visible log.
    pub fn contiguous(&self) -> u64 {
        self.visible.len() as u64
    }

    pub fn aside_len(&self) -> usize {
        self.aside.len()
    }

    pub fn visible(&self) -> &LocIndex {
        &self.visible
    }

    /// Where `key` is, if held (visible or aside).
    pub fn get(&self, key: u64) -> Option<Loc> {
        if key == 0 {
            return None;
        }
        match usize::try_from(key - 1) {
            Ok(i) if i < self.visible.len() => self.visible.get(i),
            _ => self.aside.get(&key).copied(),
        }
    }

    /// Records that `key` (≥ 1) is at `loc`, then makes visible whatever became contiguous.
    /// A key that is already held is left alone and its location returned as the error.
    pub fn insert(&mut self, key: u64, loc: Loc) -> Result<(), Loc> {
        let next = self.contiguous() + 1;
        if key < next {
            return Err(self.get(key).unwrap_or(loc));
        }
        if key == next {
            self.visible.push(loc);
            self.drain_aside();
            return Ok(());
        }
        match self.aside.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => Err(*e.get()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(loc);
                Ok(())
            }
        }
    }

    /// Every held key `≥ from` with its location, in key order (visible keys, then aside).
    pub fn held_from(&self, from: u64) -> Vec<(u64, Loc)> {
        let from = from.max(1);
        let mut out = Vec::new();
        let end = self.contiguous();
        if from <= end {
            let mut locs = Vec::with_capacity((end - from + 1) as usize);
            // Keys ≤ contiguous fit in usize: the visible log is a usize-indexed array.
            self.visible
                .copy_range((from - 1) as usize, end as usize, &mut locs);
            out.extend((from..).zip(locs));
        }
        out.extend(self.aside.range(from..).map(|(&k, &l)| (k, l)));
        out
    }

    /// Forgets every key `≥ from` (visible and aside) and returns how many there were. Keys
    /// below `from` stay as they were, visible or aside (see the module docs).
    pub fn remove_from(&mut self, from: u64) -> u64 {
        let from = from.max(1);
        let mut removed = 0;
        let end = self.contiguous();
        if from <= end {
            removed += end - from + 1;
            self.visible.truncate((from - 1) as usize);
        }
        let gone = self.aside.split_off(&from);
        removed + gone.len() as u64
    }

    fn drain_aside(&mut self) {
        while let Some(entry) = self.aside.first_entry() {
            if *entry.key() != self.visible.len() as u64 + 1 {
                break;
            }
            self.visible.push(entry.remove());
        }
    }

    /// The holes before the entries held aside, as inclusive key ranges, in order.
    pub fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut prev = self.contiguous();
        self.aside.keys().filter_map(move |&k| {
            let gap = (k > prev + 1).then(|| (prev + 1, k - 1));
            prev = k;
            gap
        })
    }

    /// Approximate memory used, in bytes (for reports).
    pub fn memory_bytes(&self) -> usize {
        // A BTreeMap entry of two u64s costs about 40 bytes with node overhead.
        self.visible.memory_bytes() + self.aside.len() * 40
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_packs_and_unpacks() {
        for (s, o, i) in [(0, 0, false), (1, 16, true), (MAX_SEGMENT, u32::MAX, true)] {
            let l = Loc::new(s, o, i);
            assert_eq!((l.segment(), l.offset(), l.has_id()), (s, o, i));
        }
    }

    #[test]
    fn chunks_grow_without_copying_and_ranges_cross_them() {
        let mut ix = LocIndex::default();
        let n = 3 * CHUNK + 5;
        for i in 0..n {
            ix.push(Loc::new(1, i as u32, false));
        }
        assert_eq!(ix.len(), n);
        assert_eq!(ix.get(n), None);
        assert_eq!(ix.get(CHUNK).unwrap().offset(), CHUNK as u32);
        let mut out = Vec::new();
        ix.copy_range(CHUNK - 2, 2 * CHUNK + 3, &mut out);
        let offs: Vec<u32> = out.iter().map(|l| l.offset()).collect();
        assert_eq!(
            offs,
            ((CHUNK - 2) as u32..(2 * CHUNK + 3) as u32).collect::<Vec<_>>()
        );
        out.clear();
        ix.copy_range(n - 1, n + 100, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn truncating_frees_whole_chunks_and_pushes_go_on_from_the_new_end() {
        let mut ix = LocIndex::default();
        for i in 0..2 * CHUNK + 3 {
            ix.push(Loc::new(1, i as u32, false));
        }
        ix.truncate(usize::MAX);
        assert_eq!(ix.len(), 2 * CHUNK + 3, "a longer length changes nothing");
        ix.truncate(CHUNK + 1);
        assert_eq!((ix.len(), ix.chunks.len()), (CHUNK + 1, 2));
        assert_eq!(ix.get(CHUNK + 1), None);
        // Exactly at a chunk boundary: the next push starts a new chunk, as on the way up.
        ix.truncate(CHUNK);
        assert_eq!((ix.len(), ix.chunks.len()), (CHUNK, 1));
        ix.push(Loc::new(2, 7, true));
        assert_eq!(ix.chunks.len(), 2);
        assert_eq!(ix.get(CHUNK), Some(Loc::new(2, 7, true)));
        ix.truncate(0);
        assert_eq!((ix.len(), ix.chunks.len()), (0, 0));
        ix.push(Loc::new(3, 1, false));
        assert_eq!(ix.get(0), Some(Loc::new(3, 1, false)));
        let mut out = Vec::new();
        ix.copy_range(0, 10, &mut out);
        assert_eq!(out, vec![Loc::new(3, 1, false)]);
    }

    #[test]
    fn removing_from_a_key_takes_visible_and_aside_keys_at_and_after_it() {
        let l = |o| Loc::new(1, o, false);
        let build = || {
            let mut ix = Index::default();
            for k in [1, 2, 3, 4, 6, 9] {
                ix.insert(k, l(k as u32)).unwrap();
            }
            ix
        };
        // Inside the visible log: it shrinks and every aside key goes with it.
        let mut ix = build();
        assert_eq!(
            ix.held_from(3),
            vec![(3, l(3)), (4, l(4)), (6, l(6)), (9, l(9))]
        );
        assert_eq!(ix.remove_from(3), 4);
        assert_eq!((ix.contiguous(), ix.aside_len()), (2, 0));
        assert_eq!(ix.get(3), None);
        ix.insert(3, l(33)).unwrap();
        assert_eq!(ix.get(3), Some(l(33)), "a cut key can be stored again");
        // Between aside keys: the visible log stays, aside keys below stay aside.
        let mut ix = build();
        assert_eq!(ix.held_from(7), vec![(9, l(9))]);
        assert_eq!(ix.remove_from(7), 1);
        assert_eq!((ix.contiguous(), ix.aside_len()), (4, 1));
        assert_eq!(ix.get(6), Some(l(6)));
        // Beyond everything, and from 0 (= from 1).
        let mut ix = build();
        assert!(ix.held_from(10).is_empty());
        assert_eq!(ix.remove_from(10), 0);
        assert_eq!((ix.contiguous(), ix.aside_len()), (4, 2));
        assert_eq!(ix.held_from(0).len(), 6);
        assert_eq!(ix.remove_from(0), 6);
        assert_eq!((ix.contiguous(), ix.aside_len()), (0, 0));
    }

    #[test]
    fn entries_beyond_a_hole_wait_aside_and_gaps_are_reported() {
        let mut ix = Index::default();
        let l = |o| Loc::new(1, o, false);
        ix.insert(1, l(1)).unwrap();
        ix.insert(2, l(2)).unwrap();
        ix.insert(4, l(4)).unwrap();
        ix.insert(7, l(7)).unwrap();
        assert_eq!((ix.contiguous(), ix.aside_len()), (2, 2));
        assert_eq!(ix.gaps().collect::<Vec<_>>(), vec![(3, 3), (5, 6)]);
        assert_eq!(ix.insert(4, l(99)), Err(l(4)));
        assert_eq!(ix.insert(2, l(99)), Err(l(2)));
        ix.insert(3, l(3)).unwrap();
        assert_eq!((ix.contiguous(), ix.aside_len()), (4, 1));
        assert_eq!(ix.get(4), Some(l(4)));
        assert_eq!(ix.get(7), Some(l(7)));
        assert_eq!(ix.get(0), None);
        assert_eq!(ix.get(5), None);
    }
}
