//! Tests of [`FileStore`]: the contract (as `MemoryStore`'s tests state it), persistence across
//! reopen, torn and corrupt tails (in the manner of vector's `known_errors.rs`), segment
//! rolling, epochs, cuts and void records, the clean-stop marker, the sticky fsync failure,
//! concurrency, and a property test (cuts and reopens included) against `MemoryStore` as the
//! model.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::domain::epoch::Epochs;
use crate::domain::{Entry, LogId, MAX_ID_BYTES};
use crate::storage::memory::MemoryStore;
use crate::storage::meta::{EPOCHS_FILE, LOG_ID_FILE};
use crate::storage::segment::Damage;
use crate::storage::{Cut, CutRecord, LogStore, StoreError, meta};

fn e(key: u64, v: &str) -> Entry {
    Entry {
        key,
        value: Bytes::copy_from_slice(v.as_bytes()),
        id: None,
    }
}

fn eid(key: u64, v: &str, id: &str) -> Entry {
    Entry {
        id: Some(Bytes::copy_from_slice(id.as_bytes())),
        ..e(key, v)
    }
}

/// The value the bulk tests store under `key`.
fn val(key: u64) -> String {
    format!("message {key} {}", "x".repeat((key % 13) as usize))
}

fn msgs(keys: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    keys.map(|k| e(k, &val(k))).collect()
}

fn open(dir: &Path) -> (FileStore, RecoveryReport) {
    FileStore::open(dir, FileStoreOptions::default()).unwrap()
}

fn open_small(dir: &Path, segment_bytes: u64) -> (FileStore, RecoveryReport) {
    FileStore::open(
        dir,
        FileStoreOptions {
            segment_bytes,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The error of opening `dir` with small segments, which must fail.
fn open_refused(dir: &Path, segment_bytes: u64) -> StoreError {
    let opts = FileStoreOptions {
        segment_bytes,
        ..Default::default()
    };
    match FileStore::open(dir, opts) {
        Ok((_, report)) => panic!("opened a directory it must refuse: {report}"),
        Err(e) => e,
    }
}

fn keys(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.key).collect()
}

fn read_all(s: &FileStore) -> Vec<Entry> {
    s.read(1, usize::MAX, usize::MAX).unwrap()
}

fn seg_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(segment::file_name(n))
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

#[test]
fn round_trip_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let mut batch = msgs(1..=50);
    batch[9].id = Some(Bytes::from_static(b"client-10"));
    batch[29].id = Some(Bytes::from_static(b""));
    {
        let (s, r) = open(d.path());
        assert!(r.created);
        assert_eq!(s.put(&batch).unwrap(), 50);
        assert_eq!(s.put(&msgs(51..=100)).unwrap(), 50);
        s.sync().unwrap();
        assert_eq!(s.contiguous_key(), 100);
        assert_eq!(
            keys(&s.read(10, 5, usize::MAX).unwrap()),
            vec![10, 11, 12, 13, 14]
        );
        assert_eq!(s.read(10, 1, usize::MAX).unwrap()[0], batch[9]);
    }
    let (s, r) = open(d.path());
    assert!(!r.created);
    assert_eq!((r.records, r.contiguous_key, r.held_aside), (100, 100, 0));
    assert!(r.tail_cut.is_none());
    let all = read_all(&s);
    assert_eq!(&all[..50], &batch[..]);
    assert_eq!(&all[50..], &msgs(51..=100)[..]);
    assert_eq!(
        keys(&s.read(95, 100, usize::MAX).unwrap()),
        vec![95, 96, 97, 98, 99, 100]
    );
    assert!(s.read(101, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(
        s.read(0, 1, usize::MAX).unwrap()[0].key,
        1,
        "from 0 reads from 1"
    );

    let mut ids = Vec::new();
    s.scan_ids(1, &mut |id, k| ids.push((id.to_vec(), k)))
        .unwrap();
    assert_eq!(ids, vec![(b"client-10".to_vec(), 10), (Vec::new(), 30)]);
    ids.clear();
    s.scan_ids(11, &mut |id, k| ids.push((id.to_vec(), k)))
        .unwrap();
    assert_eq!(ids, vec![(Vec::new(), 30)]);
}

#[test]
fn out_of_order_entries_stay_hidden_until_the_gap_fills_even_across_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open(d.path());
        assert_eq!(
            s.put(&[e(1, "a"), e(2, "b"), e(4, "d"), e(6, "f")])
                .unwrap(),
            4
        );
        assert_eq!((s.contiguous_key(), s.held_aside()), (2, 2));
        assert!(s.holds(4) && s.holds(6) && !s.holds(3) && !s.holds(0));
        assert_eq!(read_all(&s).len(), 2);
    }
    {
        let (s, r) = open(d.path());
        assert_eq!((r.records, r.contiguous_key, r.held_aside), (4, 2, 2));
        assert_eq!((s.contiguous_key(), s.held_aside()), (2, 2));
        assert!(s.holds(4) && !s.holds(5));
        assert_eq!(keys(&read_all(&s)), vec![1, 2]);
        assert_eq!(s.put(&[e(3, "c")]).unwrap(), 1);
        assert_eq!((s.contiguous_key(), s.held_aside()), (4, 1));
        assert_eq!(keys(&read_all(&s)), vec![1, 2, 3, 4]);
    }
    let (s, _) = open(d.path());
    assert_eq!((s.contiguous_key(), s.held_aside()), (4, 1));
    s.put(&[e(5, "e")]).unwrap();
    assert_eq!((s.contiguous_key(), s.held_aside()), (6, 0));
    let vals: Vec<_> = read_all(&s)
        .iter()
        .map(|e| e.value_str().into_owned())
        .collect();
    assert_eq!(vals, ["a", "b", "c", "d", "e", "f"]);
}

#[test]
fn same_value_is_a_noop_and_another_value_conflicts_without_storing_anything() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open(d.path());
        assert_eq!(s.put(&[e(1, "a")]).unwrap(), 1);
        assert_eq!(s.put(&[e(1, "a")]).unwrap(), 0);
        let err = s.put(&[e(2, "b"), e(1, "x")]).unwrap_err();
        assert!(matches!(err, StoreError::Conflict { key: 1 }));
        assert!(!s.holds(2), "a conflicting batch stores nothing");
        assert!(matches!(s.put(&[e(0, "z")]), Err(StoreError::ZeroKey)));
        s.put(&[eid(5, "e", "id-5")]).unwrap();
    }
    // Across a reopen, visible and held aside alike, value and id alike.
    let (s, _) = open(d.path());
    assert_eq!(s.put(&[e(1, "a"), eid(5, "e", "id-5")]).unwrap(), 0);
    for bad in [
        e(1, "x"),
        eid(1, "a", "id"),
        e(5, "e"),
        eid(5, "e", "other"),
        eid(5, "E", "id-5"),
    ] {
        let key = bad.key;
        let err = s.put(&[e(2, "b"), e(3, "c"), bad]).unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { key: k } if k == key),
            "{err}"
        );
        assert!(!s.holds(2) && !s.holds(3));
    }
    assert_eq!((s.contiguous_key(), s.held_aside()), (1, 1));
    // The same key twice in one call: same content counts once, different content conflicts.
    assert_eq!(s.put(&[e(3, "c"), e(2, "b"), e(3, "c")]).unwrap(), 2);
    let err = s.put(&[e(7, "g"), e(6, "f"), e(7, "G")]).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { key: 7 }));
    assert!(!s.holds(6));
}

#[test]
fn bad_entries_are_rejected_and_nothing_of_the_call_is_stored() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = open(d.path());
    let long = "i".repeat(MAX_ID_BYTES + 1);
    let err = s.put(&[e(1, "a"), eid(2, "b", &long)]).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io(e) if e.kind() == io::ErrorKind::InvalidInput),
        "{err}"
    );
    assert!(!s.holds(1));
    let max = "i".repeat(MAX_ID_BYTES);
    assert_eq!(s.put(&[e(1, "a"), eid(2, "b", &max)]).unwrap(), 2);
    assert_eq!(
        s.read(2, 1, 0).unwrap()[0].id.as_deref(),
        Some(max.as_bytes())
    );
}

#[test]
fn read_respects_limits_but_returns_at_least_one_entry() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = open(d.path());
    s.put(&[e(1, "aaaa"), e(2, "bbbb"), e(3, "cccc")]).unwrap();
    assert_eq!(s.read(1, 2, usize::MAX).unwrap().len(), 2);
    assert_eq!(s.read(1, 10, 5).unwrap().len(), 1);
    assert_eq!(s.read(1, 10, 8).unwrap().len(), 2);
    assert_eq!(s.read(1, 10, 0).unwrap().len(), 1);
    assert_eq!(s.read(3, 10, 100).unwrap().len(), 1);
    assert!(s.read(4, 10, 100).unwrap().is_empty());
    assert!(s.read(1, 0, 100).unwrap().is_empty());
}

#[test]
fn log_id_binds_once_durably() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, r) = open(d.path());
        assert_eq!((s.log_id(), r.log_id), (None, None));
        s.set_log_id(LogId(0xabc)).unwrap();
        s.set_log_id(LogId(0xabc)).unwrap();
        assert!(matches!(
            s.set_log_id(LogId(2)),
            Err(StoreError::LogIdMismatch {
                have: LogId(0xabc),
                want: LogId(2)
            })
        ));
    }
    let (s, r) = open(d.path());
    assert_eq!(
        (s.log_id(), r.log_id),
        (Some(LogId(0xabc)), Some(LogId(0xabc)))
    );
    assert!(matches!(
        s.set_log_id(LogId(3)),
        Err(StoreError::LogIdMismatch { .. })
    ));
    drop(s);

    // A damaged identity file is a hard error, not a silently different log.
    let p = d.path().join(LOG_ID_FILE);
    let mut text = fs::read(&p).unwrap();
    text[5] = if text[5] == b'0' { b'1' } else { b'0' };
    fs::write(&p, &text).unwrap();
    let err = FileStore::open(d.path(), FileStoreOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("log_id")),
        "{err}"
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_lives() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = open(d.path());
    let err = FileStore::open(d.path(), FileStoreOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Io(e) if e.kind() == io::ErrorKind::WouldBlock
            && e.to_string().contains("in use")),
        "{err}"
    );
    drop(s);
    open(d.path());
}

#[test]
fn options_out_of_range_are_refused() {
    let d = tempfile::tempdir().unwrap();
    for segment_bytes in [0, MIN_SEGMENT_BYTES - 1, MAX_SEGMENT_BYTES + 1] {
        assert!(
            FileStore::open(
                d.path(),
                FileStoreOptions {
                    segment_bytes,
                    ..Default::default()
                }
            )
            .is_err()
        );
    }
}

#[test]
fn leftover_temporary_files_are_removed_on_open() {
    let d = tempfile::tempdir().unwrap();
    drop(open(d.path()));
    let stray = d.path().join("0000000002.seg.tmp");
    fs::write(&stray, b"half a header").unwrap();
    fs::write(d.path().join("log_id.tmp"), b"0123").unwrap();
    fs::write(d.path().join("notes.tmp"), b"not ours").unwrap();
    let (s, r) = open(d.path());
    assert_eq!(r.removed_tmp_files.len(), 2);
    assert!(!stray.exists() && d.path().join("notes.tmp").exists());
    assert_eq!(s.segment_count(), 1);
}

// --- Segments -----------------------------------------------------------------------------

#[test]
fn segments_roll_and_reads_span_them() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_small(d.path(), 256);
        for k in 1..=60 {
            s.put(&msgs(k..=k)).unwrap();
        }
        // One call across several segments, and one record larger than a segment.
        s.put(&msgs(61..=90)).unwrap();
        let big = "B".repeat(1000);
        s.put(&[e(91, &big), e(92, "after the big one")]).unwrap();
        assert!(s.segment_count() > 10, "{}", s.segment_count());
        let all = read_all(&s);
        assert_eq!(keys(&all), (1..=92).collect::<Vec<_>>());
        assert_eq!(all[90].value.len(), 1000);
    }
    // Every segment respects the size unless it holds a single oversized record.
    for n in 1.. {
        let p = seg_path(d.path(), n);
        if !p.exists() {
            break;
        }
        let len = file_len(&p);
        assert!(
            len <= 256 || len == 16 + 20 + 1000,
            "segment {n} is {len} bytes"
        );
    }
    let (s, r) = open_small(d.path(), 256);
    assert_eq!((r.records, r.contiguous_key), (92, 92));
    let all = read_all(&s);
    assert_eq!(&all[..90], &msgs(1..=90)[..]);
    assert_eq!(all[90].value.len(), 1000);
    assert_eq!(
        keys(&s.read(20, 30, usize::MAX).unwrap()),
        (20..50).collect::<Vec<_>>()
    );
    // The segment size may change between runs.
    drop(s);
    let (s, _) = open(d.path());
    s.put(&msgs(93..=100)).unwrap();
    assert_eq!(read_all(&s).len(), 100);
}

#[test]
fn a_put_larger_than_one_write_is_split_and_stays_whole() {
    let d = tempfile::tempdir().unwrap();
    let big: Vec<Entry> = (1..=20)
        .map(|k| Entry {
            key: k,
            value: Bytes::from(vec![b'a' + k as u8; 1 << 20]),
            id: Some(Bytes::from(format!("id-{k}"))),
        })
        .collect();
    {
        let (s, _) = open(d.path());
        assert_eq!(s.put(&big).unwrap(), 20);
        assert_eq!(s.read(1, 100, 3 << 20).unwrap(), big[..3]);
    }
    let (s, _) = open(d.path());
    assert_eq!(read_all(&s), big);
}

// --- Damage (in the manner of vector's tests/known_errors.rs) ------------------------------

/// Writes keys 1..=10 into a fresh store in `dir` and returns the length of the segment and
/// the offset where record 10 starts.
fn ten_records(dir: &Path) -> (u64, u64) {
    let (s, _) = open(dir);
    s.put(&msgs(1..=9)).unwrap();
    let before_last = file_len(&seg_path(dir, 1));
    s.put(&msgs(10..=10)).unwrap();
    s.sync().unwrap();
    (file_len(&seg_path(dir, 1)), before_last)
}

/// Reopens after damage and checks the usual outcome: the tail from `cut_at` on is gone from
/// the file, keys 1..=`kept` are served, and a new put works and survives another reopen.
fn assert_tail_cut(dir: &Path, cut_at: u64, kept: u64, damage: impl Fn(&Damage) -> bool) {
    let (s, r) = open(dir);
    let cut = r.tail_cut.as_ref().expect("a tail cut");
    assert!(damage(&cut.damage), "unexpected damage: {cut}");
    assert_eq!(cut.offset, cut_at);
    assert_eq!(file_len(&seg_path(dir, 1)), cut_at, "the file is truncated");
    assert_eq!(s.contiguous_key(), kept);
    assert_eq!(read_all(&s), msgs(1..=kept));
    assert!(r.to_string().contains("cut a damaged tail"), "{r}");
    s.put(&msgs(kept + 1..=kept + 1)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (s, r) = open(dir);
    assert!(r.tail_cut.is_none(), "{r}");
    assert_eq!(read_all(&s), msgs(1..=kept + 1));
}

#[test]
fn a_record_truncated_in_the_middle_is_cut() {
    let d = tempfile::tempdir().unwrap();
    let (len, last) = ten_records(d.path());
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(d.path(), 1))
        .unwrap();
    f.set_len(len - 7).unwrap();
    assert_tail_cut(d.path(), last, 9, |d| matches!(d, Damage::Torn { .. }));
}

#[test]
fn a_record_truncated_inside_its_header_is_cut() {
    let d = tempfile::tempdir().unwrap();
    let (_, last) = ten_records(d.path());
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(d.path(), 1))
        .unwrap();
    f.set_len(last + 5).unwrap();
    assert_tail_cut(d.path(), last, 9, |d| {
        matches!(d, Damage::Torn { need: 20, have: 5 })
    });
}

#[test]
fn a_flipped_bit_in_the_last_record_is_cut() {
    let d = tempfile::tempdir().unwrap();
    let (len, last) = ten_records(d.path());
    let p = seg_path(d.path(), 1);
    let mut bytes = fs::read(&p).unwrap();
    bytes[(len - 2) as usize] ^= 0x04;
    fs::write(&p, &bytes).unwrap();
    assert_tail_cut(d.path(), last, 9, |d| matches!(d, Damage::Corrupted { .. }));
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let d = tempfile::tempdir().unwrap();
    let (len, _) = ten_records(d.path());
    let mut f = OpenOptions::new()
        .append(true)
        .open(seg_path(d.path(), 1))
        .unwrap();
    f.write_all(b"\x07garbage that is not a record at all, of some length")
        .unwrap();
    assert_tail_cut(d.path(), len, 10, |d| {
        matches!(
            d,
            Damage::Malformed(_) | Damage::Torn { .. } | Damage::Corrupted { .. }
        )
    });
}

#[test]
fn zeros_after_the_last_record_are_room_not_damage() {
    let d = tempfile::tempdir().unwrap();
    let (len, _) = ten_records(d.path());
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(d.path(), 1))
        .unwrap();
    f.set_len(len + 8192).unwrap();
    drop(f);
    {
        let (s, r) = open(d.path());
        assert!(r.tail_cut.is_none(), "{r}");
        assert_eq!(r.zeros_kept, 8192, "{r}");
        assert!(r.to_string().contains("8192 zero bytes"), "{r}");
        assert_eq!(file_len(&seg_path(d.path(), 1)), len + 8192, "zeros kept");
        assert_eq!(read_all(&s), msgs(1..=10));
        // The next record goes where the records end, over the zeros.
        s.put(&msgs(11..=11)).unwrap();
        s.sync().unwrap();
        assert_eq!(file_len(&seg_path(d.path(), 1)), len + 8192);
    }
    let (s, r) = open(d.path());
    assert!(r.tail_cut.is_none(), "{r}");
    assert_eq!(read_all(&s), msgs(1..=11));
    assert!(r.zeros_kept > 0 && r.zeros_kept < 8192, "{r}");
}

#[test]
fn zeros_in_a_sealed_segment_are_damage() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_small(d.path(), 256);
        s.put(&msgs(1..=30)).unwrap();
        s.sync().unwrap();
        assert!(s.segment_count() > 1);
    }
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(d.path(), 1))
        .unwrap();
    f.set_len(file_len(&seg_path(d.path(), 1)) + 100).unwrap();
    drop(f);
    let err = open_refused(d.path(), 256);
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("zero-filled"), "{err}");
}

fn open_zero_ahead(dir: &Path, segment_bytes: u64) -> (FileStore, RecoveryReport) {
    let opts = FileStoreOptions {
        segment_bytes,
        zero_ahead: true,
    };
    FileStore::open(dir, opts).unwrap()
}

/// The length of a segment's header and records, read back by the offline check.
fn records_end(dir: &Path, n: u32) -> u64 {
    let r = crate::storage::check::check(dir).unwrap();
    let seg = &r.segments[n as usize - 1];
    seg.bytes - seg.zeros_ahead
}

#[test]
fn zero_ahead_writes_zeros_beyond_the_records_and_reopens_clean() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_zero_ahead(d.path(), 64 << 20);
        s.put(&msgs(1..=100)).unwrap();
        s.sync().unwrap();
        let end = records_end(d.path(), 1);
        // A chunk of zeros beyond the records: the next writes overwrite them.
        assert!(
            file_len(&seg_path(d.path(), 1)) >= end + (1 << 20),
            "file {} records end {end}",
            file_len(&seg_path(d.path(), 1))
        );
        let before = file_len(&seg_path(d.path(), 1));
        s.put(&msgs(101..=200)).unwrap();
        assert_eq!(
            file_len(&seg_path(d.path(), 1)),
            before,
            "written over zeros"
        );
        s.sync().unwrap();
    }
    let report = crate::storage::check::check(d.path()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(
        report.to_string().contains("zero bytes of room"),
        "{report}"
    );
    let (s, r) = open_zero_ahead(d.path(), 64 << 20);
    assert!(r.tail_cut.is_none(), "{r}");
    assert!(r.zeros_kept > 0, "{r}");
    assert_eq!(read_all(&s), msgs(1..=200));
    s.put(&msgs(201..=300)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (s, r) = open(d.path());
    assert!(r.tail_cut.is_none(), "{r}");
    assert_eq!(read_all(&s), msgs(1..=300));
}

#[test]
fn zero_ahead_never_leaves_zeros_in_a_sealed_segment() {
    let d = tempfile::tempdir().unwrap();
    let segment_bytes = 4096;
    {
        let (s, _) = open_zero_ahead(d.path(), segment_bytes);
        for k in (1..=400).step_by(10) {
            s.put(&msgs(k..=k + 9)).unwrap();
        }
        s.sync().unwrap();
        let n = s.segment_count() as u32;
        assert!(n > 3, "{n} segments");
        for i in 1..n {
            let len = file_len(&seg_path(d.path(), i));
            assert_eq!(
                len,
                records_end(d.path(), i),
                "segment {i} was cut to its records"
            );
            assert!(len <= segment_bytes);
        }
        // The active one holds zeros up to segment_bytes at most.
        assert!(file_len(&seg_path(d.path(), n)) <= segment_bytes);
    }
    // Sealed segments with zeros would be refused as corrupt; these open clean.
    let (s, r) = open_zero_ahead(d.path(), segment_bytes);
    assert!(r.tail_cut.is_none(), "{r}");
    assert_eq!(read_all(&s), msgs(1..=400));
}

#[test]
fn a_zero_length_last_segment_gets_its_header_back() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_small(d.path(), 128);
        s.put(&msgs(1..=5)).unwrap();
    }
    let last = (1..)
        .take_while(|&n| seg_path(d.path(), n).exists())
        .last()
        .unwrap();
    assert!(last > 1);
    // Remove the last segment's records, then its header too.
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(d.path(), last))
        .unwrap();
    f.set_len(0).unwrap();
    let (s, r) = open_small(d.path(), 128);
    assert_eq!(r.tail_cut.as_ref().unwrap().damage, Damage::ShortHeader);
    assert_eq!(file_len(&seg_path(d.path(), last)), segment::HEADER_LEN);
    let kept = s.contiguous_key();
    assert!(kept < 5);
    s.put(&msgs(kept + 1..=5)).unwrap();
    drop(s);
    let (s, r) = open_small(d.path(), 128);
    assert!(r.tail_cut.is_none());
    assert_eq!(read_all(&s), msgs(1..=5));
}

#[test]
fn damage_in_the_middle_of_the_last_segment_is_cut_and_the_intact_records_after_it_counted() {
    let d = tempfile::tempdir().unwrap();
    ten_records(d.path());
    // Record 5 starts after the header and records 1..=4.
    let at: u64 = 16 + (1..=4).map(|k| 20 + val(k).len() as u64).sum::<u64>();
    let p = seg_path(d.path(), 1);
    let mut bytes = fs::read(&p).unwrap();
    bytes[at as usize + 25] ^= 1;
    fs::write(&p, &bytes).unwrap();
    let (s, r) = open(d.path());
    let cut = r.tail_cut.unwrap();
    assert_eq!((cut.offset, cut.intact_records_after), (at, 5));
    assert_eq!(s.contiguous_key(), 4);
}

#[test]
fn damage_in_a_sealed_segment_is_a_hard_error_naming_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_small(d.path(), 256);
        s.put(&msgs(1..=40)).unwrap();
        assert!(s.segment_count() >= 3);
    }
    let p = seg_path(d.path(), 2);
    let mut bytes = fs::read(&p).unwrap();
    bytes[16 + 21] ^= 0x80;
    fs::write(&p, &bytes).unwrap();
    let err = open_refused(d.path(), 256);
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)), "{msg}");
    assert!(
        msg.contains("0000000002.seg") && msg.contains("offset 16"),
        "{msg}"
    );
    // Nothing was cut.
    assert_eq!(fs::read(&p).unwrap(), bytes);
}

#[test]
fn a_missing_segment_is_a_hard_error() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_small(d.path(), 256);
        s.put(&msgs(1..=40)).unwrap();
    }
    fs::remove_file(seg_path(d.path(), 2)).unwrap();
    let err = FileStore::open(d.path(), FileStoreOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("0000000002.seg is missing")),
        "{err}"
    );
}

#[test]
fn a_foreign_last_segment_is_not_deleted() {
    let d = tempfile::tempdir().unwrap();
    drop(open(d.path()));
    fs::write(seg_path(d.path(), 2), b"this is somebody else's file").unwrap();
    let err = FileStore::open(d.path(), FileStoreOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("bad magic")),
        "{err}"
    );
    assert!(seg_path(d.path(), 2).exists());
}

#[test]
fn a_key_stored_twice_is_a_hard_error() {
    let d = tempfile::tempdir().unwrap();
    drop(open(d.path()));
    // Forge a segment holding key 1 twice.
    let mut buf = Vec::new();
    for v in ["a", "b"] {
        let rec = record::Record {
            key: 1,
            id: None,
            value: v.as_bytes(),
        };
        record::encode(&rec, &mut buf).unwrap();
    }
    let mut f = OpenOptions::new()
        .append(true)
        .open(seg_path(d.path(), 1))
        .unwrap();
    f.write_all(&buf).unwrap();
    let err = FileStore::open(d.path(), FileStoreOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("key 1 is stored twice")),
        "{err}"
    );
}

// --- Epochs, cuts, clean stops, fsync failures ----------------------------------------------

fn epochs(current: u64, pairs: &[(u64, u64)]) -> Epochs {
    Epochs {
        current,
        history: crate::domain::epoch::History::from_pairs(pairs.to_vec()).unwrap(),
        ..Default::default()
    }
}

/// `body` sealed with a correct checksum line, as `meta` writes its files: a file that passes
/// the checksum and must be refused for what it says.
fn sealed(body: &str) -> String {
    format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()))
}

#[test]
fn epochs_round_trip_across_reopen() {
    let d = tempfile::tempdir().unwrap();
    let e = epochs(7, &[(1, 1), (3, 21), (7, 40)]);
    {
        let (s, r) = open(d.path());
        assert_eq!(
            (s.epochs(), r.epochs),
            (Epochs::default(), Epochs::default())
        );
        assert!(
            !d.path().join(EPOCHS_FILE).exists(),
            "nothing set, nothing written"
        );
        s.set_epochs(&e).unwrap();
        assert_eq!(s.epochs(), e);
        // A current epoch below the history's last is refused and changes nothing.
        let err = s.set_epochs(&epochs(6, &[(7, 1)])).unwrap_err();
        assert!(err.to_string().contains("below"), "{err}");
        assert_eq!(s.epochs(), e);
    }
    assert_eq!(
        fs::read_to_string(d.path().join(EPOCHS_FILE)).unwrap(),
        sealed("current 7\nepoch 1 first_key 1\nepoch 3 first_key 21\nepoch 7 first_key 40\n")
    );
    {
        let (s, r) = open(d.path());
        assert_eq!((s.epochs(), r.epochs.clone()), (e.clone(), e));
        assert!(r.to_string().contains("epoch 7"), "{r}");
        // A new epoch without new history (a master that has not opened it yet).
        s.set_epochs(&epochs(8, &[(1, 1), (3, 21), (7, 40)]))
            .unwrap();
    }
    let (s, _) = open(d.path());
    assert_eq!(s.epochs().current, 8);
}

#[test]
fn a_damaged_epochs_file_is_refused_at_open_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open(d.path());
        s.put(&msgs(1..=3)).unwrap();
        s.set_epochs(&epochs(2, &[(1, 1), (2, 3)])).unwrap();
    }
    let p = d.path().join(EPOCHS_FILE);
    let good = fs::read(&p).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A flipped digit: the checksum catches it.
        (
            String::from_utf8(good.clone())
                .unwrap()
                .replacen("current 2", "current 3", 1)
                .into_bytes(),
            "checksum mismatch",
        ),
        // Cut short.
        (good[..good.len() - 4].to_vec(), "newline"),
        // Intact, but the history goes backwards.
        (
            sealed("current 5\nepoch 3 first_key 1\nepoch 2 first_key 9\n").into_bytes(),
            "must grow",
        ),
        (sealed("current 5\nepoch 3\n").into_bytes(), "expected"),
    ];
    for (bytes, why) in cases {
        fs::write(&p, &bytes).unwrap();
        let err = open_refused(d.path(), 64 << 20);
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("epochs") && m.contains(why)),
            "{why}: {err}"
        );
    }
    // Nothing was changed: put back, it opens.
    fs::write(&p, &good).unwrap();
    let (s, _) = open(d.path());
    assert_eq!(s.epochs(), epochs(2, &[(1, 1), (2, 3)]));
}

/// [`msgs`] with ids on the even keys.
fn msgs_with_ids(keys: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    let mut batch = msgs(keys);
    for e in batch.iter_mut().filter(|e| e.key % 2 == 0) {
        e.id = Some(Bytes::from(format!("id-{}", e.key)));
    }
    batch
}

/// Keys 1..=10 visible (ids on the even ones) and 13, 15 held aside.
fn visible_and_aside(s: &FileStore) {
    s.put(&msgs_with_ids(1..=10)).unwrap();
    s.put(&[eid(13, "thirteen", "id-13"), e(15, "fifteen")])
        .unwrap();
    assert_eq!((s.contiguous_key(), s.held_aside()), (10, 2));
}

#[test]
fn cut_from_removes_exactly_the_keys_from_k_on_and_returns_their_ids() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = open_small(d.path(), 256);
    visible_and_aside(&s);
    // Nothing held at or above 16: nothing happens, nothing is written.
    assert_eq!(
        s.cut_from(16).unwrap(),
        Cut {
            from_key: 16,
            removed: vec![]
        }
    );
    assert!(!d.path().join(CUTS_FILE).exists());
    assert!(s.cuts().is_empty());
    assert!(matches!(s.cut_from(0), Err(StoreError::ZeroKey)));

    let cut = s.cut_from(7).unwrap();
    let id = |k: u64| Some(Bytes::from(format!("id-{k}")));
    assert_eq!(
        cut,
        Cut {
            from_key: 7,
            removed: vec![
                (7, None),
                (8, id(8)),
                (9, None),
                (10, id(10)),
                (13, id(13)),
                (15, None)
            ],
        }
    );
    assert_eq!((s.contiguous_key(), s.held_aside()), (6, 0));
    for k in 1..=16 {
        assert_eq!(s.holds(k), k <= 6, "holds({k})");
    }
    assert_eq!(keys(&read_all(&s)), (1..=6).collect::<Vec<_>>());
    let mut ids = Vec::new();
    s.scan_ids(1, &mut |id, k| ids.push((id.to_vec(), k)))
        .unwrap();
    assert_eq!(
        ids,
        vec![
            (b"id-2".to_vec(), 2),
            (b"id-4".to_vec(), 4),
            (b"id-6".to_vec(), 6)
        ]
    );
    assert_eq!(
        s.cuts(),
        vec![CutRecord {
            from_key: 7,
            entries: 6
        }]
    );
    // The cut keys take other values now: no conflict with what was removed.
    assert_eq!(
        s.put(&[e(7, "seven again"), e(13, "thirteen again")])
            .unwrap(),
        2
    );
    assert_eq!((s.contiguous_key(), s.held_aside()), (7, 1));
    // A cut among the aside keys only leaves the visible log alone.
    let cut = s.cut_from(9).unwrap();
    assert_eq!(cut.removed, vec![(13, None)]);
    assert_eq!((s.contiguous_key(), s.held_aside()), (7, 0));
}

#[test]
fn a_cut_stays_cut_across_reopen_and_entries_stored_again_survive() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_small(d.path(), 256);
        visible_and_aside(&s);
        s.cut_from(5).unwrap();
        // Stored again at and above the cut, some with the old values, some not, one aside.
        s.put(&[e(5, &val(5)), e(6, "six, new"), e(15, "fifteen, new")])
            .unwrap();
        assert_eq!((s.contiguous_key(), s.held_aside()), (6, 1));
    }
    let want = |s: &FileStore| {
        let all = read_all(s);
        assert_eq!(
            &all[..4],
            &msgs_with_ids(1..=4)[..],
            "keys below the cut are intact"
        );
        assert_eq!(all[4..], [e(5, &val(5)), e(6, "six, new")]);
        assert_eq!((s.contiguous_key(), s.held_aside()), (6, 1));
        assert!(s.holds(15) && !s.holds(13) && !s.holds(7));
    };
    {
        let (s, r) = open_small(d.path(), 256);
        // 5..=10, 13 and 15 as first written are void.
        assert_eq!((r.records, r.void_records, r.cuts), (7, 8, 1), "{r}");
        assert!(r.tail_cut.is_none() && r.cuts_clamped == 0, "{r}");
        assert!(r.to_string().contains("8 void records"), "{r}");
        want(&s);
        assert_eq!(
            s.cuts(),
            vec![CutRecord {
                from_key: 5,
                entries: 8
            }]
        );
        // Filling the hole makes the re-stored aside key visible, from a later segment.
        s.put(&msgs(7..=14)).unwrap();
        assert_eq!(s.contiguous_key(), 15);
    }
    let (s, r) = open_small(d.path(), 256);
    assert_eq!((r.void_records, r.contiguous_key), (8, 15), "{r}");
    assert_eq!(s.read(15, 1, usize::MAX).unwrap(), [e(15, "fifteen, new")]);
    assert_eq!(s.read(6, 1, usize::MAX).unwrap(), [e(6, "six, new")]);
    let report = crate::storage::check::check(d.path()).unwrap();
    drop(s);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn two_cuts_each_void_what_was_before_them() {
    let d = tempfile::tempdir().unwrap();
    let v = |k: u64, round: u32| e(k, &format!("{k} round {round}"));
    {
        let (s, _) = open_small(d.path(), 200);
        s.put(&(1..=10).map(|k| v(k, 1)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(s.cut_from(8).unwrap().removed.len(), 3);
        s.put(&(8..=12).map(|k| v(k, 2)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(s.cut_from(5).unwrap().removed.len(), 8);
        s.put(&(5..=6).map(|k| v(k, 3)).collect::<Vec<_>>())
            .unwrap();
    }
    let (s, r) = open_small(d.path(), 200);
    assert_eq!(
        (r.void_records, r.cuts, r.contiguous_key),
        (11, 2, 6),
        "{r}"
    );
    let want: Vec<Entry> = (1..=4)
        .map(|k| v(k, 1))
        .chain((5..=6).map(|k| v(k, 3)))
        .collect();
    assert_eq!(read_all(&s), want);
    assert_eq!(
        s.cuts(),
        vec![
            CutRecord {
                from_key: 8,
                entries: 3
            },
            CutRecord {
                from_key: 5,
                entries: 8
            }
        ]
    );
    let text = fs::read_to_string(d.path().join(CUTS_FILE)).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "two cut lines and a checksum: {text}"
    );
}

#[test]
fn a_cut_position_past_the_end_of_the_log_is_clamped_and_rewritten() {
    for beyond in [
        // Past the end of the last segment's records, and in a segment that does not exist.
        |end: u64| (1, end + 1000),
        |_: u64| (9, 16),
    ] {
        let d = tempfile::tempdir().unwrap();
        {
            let (s, _) = open(d.path());
            s.put(&msgs(1..=5)).unwrap();
        }
        let end = file_len(&seg_path(d.path(), 1));
        let (segment, offset) = beyond(end);
        // What a disk that lost synced data could leave: the cut of 3..=5 recorded at a
        // position beyond the records that survived.
        let faked = [meta::CutMark {
            from_key: 3,
            segment,
            offset,
            entries: 3,
        }];
        meta::write_cuts(d.path(), &faked).unwrap();
        let report = crate::storage::check::check(d.path()).unwrap();
        assert!(!report.is_clean() && report.would_open(), "{report}");
        assert!(report.to_string().contains("beyond the end"), "{report}");
        {
            let (s, r) = open(d.path());
            assert_eq!(
                (r.cuts_clamped, r.void_records, r.contiguous_key),
                (1, 3, 2),
                "{r}"
            );
            assert!(r.to_string().contains("beyond the end"), "{r}");
            assert_eq!(
                meta::read_cuts(d.path()).unwrap(),
                [meta::CutMark {
                    from_key: 3,
                    segment: 1,
                    offset: end,
                    entries: 3
                }],
                "rewritten at the end of the records"
            );
            // Written after the (clamped) position: not void at the next open.
            s.put(&[e(3, "three, new"), e(4, "four, new")]).unwrap();
        }
        let (s, r) = open(d.path());
        assert_eq!((r.cuts_clamped, r.void_records), (0, 3), "{r}");
        assert_eq!(keys(&read_all(&s)), vec![1, 2, 3, 4]);
        assert_eq!(s.read(3, 1, usize::MAX).unwrap(), [e(3, "three, new")]);
    }
}

#[test]
fn a_damaged_cuts_file_is_refused_at_open() {
    let d = tempfile::tempdir().unwrap();
    {
        let (s, _) = open(d.path());
        s.put(&msgs(1..=5)).unwrap();
        s.cut_from(4).unwrap();
    }
    let p = d.path().join(CUTS_FILE);
    let mut bytes = fs::read(&p).unwrap();
    bytes[9] ^= 1;
    fs::write(&p, &bytes).unwrap();
    let err = open_refused(d.path(), 64 << 20);
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("cuts") && m.contains("checksum")),
        "{err}"
    );
}

#[test]
fn the_clean_marker_vouches_for_one_stop_only() {
    let d = tempfile::tempdir().unwrap();
    let clean = d.path().join(CLEAN_FILE);
    {
        let (s, r) = open(d.path());
        assert!(s.last_stop_clean() && r.last_stop_clean, "a new log: {r}");
        s.put(&msgs(1..=3)).unwrap();
        // No mark: as after a crash.
    }
    {
        let (s, r) = open(d.path());
        assert!(!s.last_stop_clean(), "{r}");
        assert!(r.to_string().contains("not clean"), "{r}");
        s.put(&msgs(4..=5)).unwrap();
        s.mark_clean_stop().unwrap();
        assert!(clean.exists());
    }
    {
        let (s, r) = open(d.path());
        assert!(s.last_stop_clean(), "{r}");
        assert!(!clean.exists(), "removed before open returned");
        assert_eq!(s.contiguous_key(), 5);
    }
    {
        let (s, _) = open(d.path());
        assert!(!s.last_stop_clean(), "the marker counted once");
        // A write after the mark withdraws it.
        s.mark_clean_stop().unwrap();
        s.put(&msgs(6..=6)).unwrap();
        assert!(!clean.exists());
    }
    {
        let (s, _) = open(d.path());
        assert!(!s.last_stop_clean());
        s.mark_clean_stop().unwrap();
        s.set_epochs(&epochs(1, &[])).unwrap();
        assert!(!clean.exists(), "so does setting epochs");
        s.mark_clean_stop().unwrap();
        s.cut_from(6).unwrap();
        assert!(!clean.exists(), "and a cut");
    }
    // A directory of an earlier build (segments, no marker) counts as unclean.
    let (s, _) = open(d.path());
    assert!(!s.last_stop_clean());
}

#[test]
fn after_a_failed_fsync_nothing_that_vouches_for_data_succeeds() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = open_small(d.path(), 128);
    s.put(&[e(1, &"a".repeat(60))]).unwrap();
    s.put(&[e(2, "b")]).unwrap();
    s.sync().unwrap();
    assert_eq!(s.sync_failure(), None);
    s.fail_next_fsync();

    let err = s.sync().unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    let why = s.sync_failure().expect("the failure is kept");
    assert!(why.contains("fsync failed"), "{why}");
    let err = s.sync().unwrap_err();
    assert!(err.to_string().contains("an earlier fsync failed"), "{err}");

    // A put that needs a roll: refused, and the roll changed nothing.
    let segments = s.segment_count();
    let err = s.put(&[e(3, &"c".repeat(60))]).unwrap_err();
    assert!(err.to_string().contains("an earlier fsync failed"), "{err}");
    assert_eq!(s.segment_count(), segments);
    assert!(!s.holds(3) && !seg_path(d.path(), 2).exists());

    let err = s.cut_from(2).unwrap_err();
    assert!(err.to_string().contains("an earlier fsync failed"), "{err}");
    assert!(s.holds(2) && s.cuts().is_empty() && !d.path().join(CUTS_FILE).exists());

    let err = s.set_epochs(&epochs(1, &[(1, 1)])).unwrap_err();
    assert!(err.to_string().contains("an earlier fsync failed"), "{err}");
    assert_eq!(s.epochs(), Epochs::default());
    assert!(!d.path().join(EPOCHS_FILE).exists());

    assert!(s.mark_clean_stop().is_err());
    assert!(!d.path().join(CLEAN_FILE).exists());
    assert_eq!(
        s.sync_failure().as_deref(),
        Some(why.as_str()),
        "the first failure stays"
    );
    // Reopening (restarting the node) is the way out.
    drop(s);
    let (s, _) = open_small(d.path(), 128);
    assert_eq!(s.sync_failure(), None);
    s.sync().unwrap();
    assert_eq!(s.contiguous_key(), 2);
}

#[test]
fn a_failed_fsync_during_a_cut_fails_it_and_keeps_the_entries() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = open(d.path());
    s.put(&msgs(1..=5)).unwrap();
    s.fail_next_fsync();
    assert!(s.cut_from(3).is_err());
    assert!(
        s.sync_failure().is_some(),
        "the cut's fsync failure is sticky"
    );
    assert_eq!(s.contiguous_key(), 5);
    assert!(!d.path().join(CUTS_FILE).exists());
}

// --- Concurrency ---------------------------------------------------------------------------

#[test]
fn concurrent_reads_during_puts_never_see_torn_or_foreign_data() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = open_small(d.path(), 64 << 10);
    let s = Arc::new(s);
    let done = Arc::new(AtomicBool::new(false));
    const N: u64 = 20_000;
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (s, done) = (Arc::clone(&s), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ r;
                while !done.load(Ordering::Acquire) || reads == 0 {
                    let c = s.contiguous_key();
                    if c == 0 {
                        continue;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let from = 1 + x % c;
                    let got = s.read(from, 200, usize::MAX).unwrap();
                    assert!(!got.is_empty(), "key {from} ≤ {c} was visible");
                    for (i, e) in got.iter().enumerate() {
                        assert_eq!(e.key, from + i as u64);
                        assert_eq!(e.value, val(e.key).as_bytes());
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let syncer = {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                s.sync().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    for start in (1..=N).step_by(50) {
        s.put(&msgs(start..=start + 49)).unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    syncer.join().unwrap();
    assert_eq!(s.contiguous_key(), N);
    assert!(s.segment_count() > 10);
}

/// The child half of [`a_killed_writer_keeps_everything_it_wrote`]: writes until killed (or,
/// should the parent die first, for ten seconds at most).
fn killed_writer_child(dir: &Path) -> ! {
    let (s, _) = open_small(dir, 64 << 10);
    let started = std::time::Instant::now();
    let mut k = 0;
    while started.elapsed() < std::time::Duration::from_secs(10) {
        s.put(&msgs(k + 1..=k + 10)).unwrap();
        k += 10;
        if k % 500 == 0 {
            // Only keys whose put returned are announced.
            println!("written {k}");
        }
    }
    std::process::exit(1)
}

#[test]
fn a_killed_writer_keeps_everything_it_wrote() {
    use std::io::BufRead;
    const CHILD: &str = "DISKSTORE_KILLED_WRITER_DIR";
    if let Some(dir) = std::env::var_os(CHILD) {
        killed_writer_child(Path::new(&dir));
    }
    let d = tempfile::tempdir().unwrap();
    let module = module_path!().split_once("::").unwrap().1;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("{module}::a_killed_writer_keeps_everything_it_wrote"),
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD, d.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut announced = 0u64;
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        if let Some(k) = line.unwrap().strip_prefix("written ") {
            announced = k.parse().unwrap();
            if announced >= 20_000 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, the lock dies with the process
    child.wait().unwrap();
    assert!(announced >= 20_000, "the child stopped early");
    let (s, r) = open_small(d.path(), 64 << 10);
    assert!(
        r.tail_cut.is_none(),
        "a killed process does not tear writes: {r}"
    );
    let c = s.contiguous_key();
    assert!(c >= announced, "lost keys: {c} < {announced}");
    assert_eq!(s.held_aside(), 0);
    assert_eq!(read_all(&s), msgs(1..=c));
}

// --- Model test ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// (key, which of two values, with an id?)
    Put(Vec<(u64, bool, bool)>),
    Read {
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    },
    ScanIds(u64),
    Sync,
    /// `cut_from(key)`; key 0 is refused by both.
    Cut(u64),
    Reopen,
}

fn model_entry(&(key, variant, with_id): &(u64, bool, bool)) -> Entry {
    // Values of different lengths so records straddle the tiny segments differently.
    let value =
        format!("{key}{}", if variant { "-bb" } else { "-a" }).repeat(1 + (key % 4) as usize);
    Entry {
        key,
        value: Bytes::from(value),
        id: with_id.then(|| Bytes::from(format!("id-{key}"))),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec((1u64..=40, any::<bool>(), any::<bool>()), 0..6).prop_map(|v| {
            // The contract gives each key at most once per call.
            let mut seen = std::collections::HashSet::new();
            Op::Put(v.into_iter().filter(|(k, _, _)| seen.insert(*k)).collect())
        }),
        3 => (0u64..=45, 0usize..8, prop_oneof![Just(0usize), 1usize..40, Just(usize::MAX)])
            .prop_map(|(from, max_entries, max_bytes)| Op::Read { from, max_entries, max_bytes }),
        1 => (0u64..=45).prop_map(Op::ScanIds),
        1 => Just(Op::Sync),
        1 => (0u64..=42).prop_map(Op::Cut),
        1 => Just(Op::Reopen),
    ]
}

fn same_outcome(got: &StoreResult<usize>, want: &StoreResult<usize>) -> bool {
    match (got, want) {
        (Ok(a), Ok(b)) => a == b,
        (Err(StoreError::Conflict { key: a }), Err(StoreError::Conflict { key: b })) => a == b,
        _ => false,
    }
}

proptest! {
    // 48 cases keep the suite fast; PROPTEST_CASES=2000 digs deeper.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn behaves_like_the_memory_store(ops in proptest::collection::vec(op(), 1..40),
                                     segment_bytes in 64u64..400) {
        let d = tempfile::tempdir().unwrap();
        let opts = FileStoreOptions { segment_bytes, ..Default::default() };
        let model = MemoryStore::new();
        let mut store = Some(FileStore::open(d.path(), opts.clone()).unwrap().0);
        for op in ops {
            let s = store.as_ref().unwrap();
            match op {
                Op::Put(v) => {
                    let batch: Vec<Entry> = v.iter().map(model_entry).collect();
                    let got = s.put(&batch);
                    let want = model.put(&batch);
                    prop_assert!(same_outcome(&got, &want), "put {:?}: {:?} vs model {:?}", v, got, want);
                }
                Op::Read { from, max_entries, max_bytes } => {
                    prop_assert_eq!(s.read(from, max_entries, max_bytes).unwrap(),
                                    model.read(from, max_entries, max_bytes).unwrap());
                }
                Op::ScanIds(from) => {
                    let (mut got, mut want) = (Vec::new(), Vec::new());
                    s.scan_ids(from, &mut |id, k| got.push((id.to_vec(), k))).unwrap();
                    model.scan_ids(from, &mut |id, k| want.push((id.to_vec(), k))).unwrap();
                    prop_assert_eq!(got, want);
                }
                Op::Sync => s.sync().unwrap(),
                Op::Cut(key) => match (s.cut_from(key), model.cut_from(key)) {
                    (Ok(got), Ok(want)) => prop_assert_eq!(got, want),
                    (Err(StoreError::ZeroKey), Err(StoreError::ZeroKey)) => {}
                    (got, want) => prop_assert!(false, "cut_from({}): {:?} vs model {:?}", key, got, want),
                },
                Op::Reopen => {
                    drop(store.take());
                    let (s, r) = FileStore::open(d.path(), opts.clone()).unwrap();
                    prop_assert!(r.tail_cut.is_none());
                    store = Some(s);
                }
            }
            let s = store.as_ref().unwrap();
            prop_assert_eq!(s.contiguous_key(), model.contiguous_key());
            prop_assert_eq!(s.held_aside(), model.held_aside());
            prop_assert_eq!(s.cuts(), model.cuts());
            for k in 0..=42 {
                prop_assert_eq!(s.holds(k), model.holds(k), "holds({})", k);
            }
        }
        // Whatever happened, the directory checks clean and reopens to the same log.
        drop(store.take());
        let report = crate::storage::check::check(d.path()).unwrap();
        prop_assert!(report.is_clean(), "{}", report);
        let (s, _) = FileStore::open(d.path(), opts).unwrap();
        prop_assert_eq!(read_all(&s), model.read(1, usize::MAX, usize::MAX).unwrap());
        for k in 0..=42 {
            prop_assert_eq!(s.holds(k), model.holds(k), "holds({}) after the last reopen", k);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    /// Any damage to any segment: open never panics; it either refuses (Corrupt) or serves a
    /// correct prefix of what was written, and in the last segment it cuts a truncation.
    #[test]
    fn damaged_files_never_panic_and_never_serve_wrong_data(
        n in 1u64..60,
        segment_bytes in 100u64..600,
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let d = tempfile::tempdir().unwrap();
        let opts = FileStoreOptions { segment_bytes, ..Default::default() };
        let segments = {
            let (s, _) = FileStore::open(d.path(), opts.clone()).unwrap();
            s.put(&msgs(1..=n)).unwrap();
            s.segment_count() as u32
        };
        for (seg, at, byte) in &damage {
            let p = seg_path(d.path(), 1 + seg.index(segments as usize) as u32);
            let mut bytes = fs::read(&p).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = *byte;
            fs::write(&p, &bytes).unwrap();
        }
        if let Some(cut) = cut {
            let p = seg_path(d.path(), segments);
            let len = file_len(&p);
            OpenOptions::new().write(true).open(&p).unwrap().set_len(cut.index(len as usize + 1) as u64).unwrap();
        }
        let report = crate::storage::check::check(d.path()).unwrap();
        match FileStore::open(d.path(), opts.clone()) {
            Ok((s, _)) => {
                prop_assert!(report.would_open(), "{}", report);
                let c = s.contiguous_key();
                prop_assert!(c <= n);
                prop_assert_eq!(read_all(&s), msgs(1..=c));
                // The store keeps working and the repair sticks.
                s.put(&msgs(c + 1..=n)).unwrap();
                drop(s);
                let (s, r) = FileStore::open(d.path(), opts).unwrap();
                prop_assert!(r.tail_cut.is_none());
                prop_assert_eq!(read_all(&s), msgs(1..=n));
            }
            Err(StoreError::Corrupt(_)) => prop_assert!(!report.would_open(), "{}", report),
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}
