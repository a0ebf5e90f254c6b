//! Properties of replog's input decoders that must hold for *any* input.
//!
//! One file, compiled twice: by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, through
//! `fuzz/src/lib.rs`) and by the proptest suite `tests/fuzz_props.rs` (through `#[path]`), so
//! the long fuzz runs and every `cargo test` check exactly the same things. Every `check_*`
//! function panics when a property fails: that is what libFuzzer reports as a crash and what
//! proptest shrinks.
//!
//! The decoders under test:
//! * `log::record::decode`: one on-disk record (checksummed, length-prefixed);
//! * `FileStore::open` over a data dir of segment files and a `cuts` file (recovery: scan,
//!   skip records void under the cuts, cut a damaged tail of the last segment, refuse damage
//!   anywhere else, move back a cut beyond the end), and `log::check::check`, which must
//!   agree with it;
//! * `protocol::decode_batch`: the binary replication batch a master sends;
//! * `config::Settings`: a TOML document and `REPLOG_*` variables, parsed and validated.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use replog::config::{ConfigError, Role, Settings};
use replog::domain::{Entry, MAX_ID_BYTES};
use replog::protocol::{self, BatchError};
use replog::storage::file::{FileStore, FileStoreOptions, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use replog::storage::meta::{self, CutMark};
use replog::storage::record::{self, Record, RecordStatus};
use replog::storage::{LogStore, StoreError, check, segment};

// ---------------------------------------------------------------------------------------------
// Records

/// `record::decode` on arbitrary bytes: never panics, and whatever it says is true of the bytes.
pub fn check_record_bytes(buf: &[u8]) {
    match record::decode(buf) {
        RecordStatus::Valid(rec) => {
            let len = rec.encoded_len();
            assert!(
                len <= buf.len(),
                "a valid record of {len} bytes in {} bytes",
                buf.len()
            );
            assert!(rec.key >= 1);
            assert!(rec.id.map_or(0, <[u8]>::len) <= MAX_ID_BYTES);
            assert_within(buf, rec.value, "record value");
            if let Some(id) = rec.id {
                assert_within(buf, id, "record id");
            }
            // A valid record is the canonical encoding of what it decodes to.
            let mut again = Vec::new();
            assert_eq!(record::encode(&rec, &mut again), Ok(len));
            assert_eq!(
                again,
                &buf[..len],
                "re-encoding a decoded record changed its bytes"
            );
            // Every strict prefix is a torn write, never something else.
            for cut in [0, len / 2, len - 1] {
                assert!(
                    matches!(record::decode(&buf[..cut]), RecordStatus::Torn { .. }),
                    "a {cut}-byte prefix of a valid {len}-byte record is not torn"
                );
            }
        }
        RecordStatus::Torn { need } => {
            assert!(
                need > buf.len(),
                "torn, needing {need} of {} bytes",
                buf.len()
            );
            assert!(need <= record::MAX_RECORD_LEN, "torn, needing {need} bytes");
        }
        RecordStatus::Corrupted { calculated, actual } => assert_ne!(calculated, actual),
        RecordStatus::Malformed(why) => assert!(!why.is_empty()),
    }
}

/// Encoding then decoding gives the record back (bytes after it are ignored), and changing any
/// one byte outside the length field is never accepted as a valid record.
///
/// `flip` is (position, xor mask); a change inside the length field is only required not to
/// panic, since a different length makes the checksum cover a different extent.
pub fn check_record_round_trip(
    key: u64,
    id: Option<&[u8]>,
    value: &[u8],
    trailing: &[u8],
    flip: Option<(usize, u8)>,
) {
    let rec = Record { key, id, value };
    let mut buf = Vec::new();
    let len = match record::encode(&rec, &mut buf) {
        Ok(len) => len,
        Err(_) => {
            assert!(key == 0 || id.is_some_and(|i| i.len() > MAX_ID_BYTES));
            assert!(buf.is_empty(), "a refused record wrote bytes");
            return;
        }
    };
    assert_eq!(len, buf.len());
    assert_eq!(len, rec.encoded_len());
    buf.extend_from_slice(trailing);
    assert_eq!(record::decode(&buf), RecordStatus::Valid(rec));
    check_record_bytes(&buf);
    if let Some((pos, mask)) = flip
        && mask != 0
    {
        let pos = pos % len;
        let mut damaged = buf.clone();
        damaged[pos] ^= mask;
        if pos >= 4 {
            assert!(
                !matches!(record::decode(&damaged), RecordStatus::Valid(_)),
                "changing byte {pos} of a {len}-byte record went unnoticed"
            );
        }
        check_record_bytes(&damaged);
    }
}

// ---------------------------------------------------------------------------------------------
// Replication batches

/// `decode_batch` on arbitrary bytes: never panics; a batch it accepts obeys every rule of the
/// format, its entries lie inside the body in order, and re-encoding them gives the body back.
pub fn check_batch_bytes(body: &[u8], max_value: usize) {
    let body = Bytes::copy_from_slice(body);
    match protocol::decode_batch(body.clone(), max_value) {
        Ok(entries) => {
            let mut prev = 0u64;
            let mut end_of_prev = body.as_ptr() as usize;
            let mut total = 5;
            for e in &entries {
                assert!(e.key > prev, "keys {prev} then {}", e.key);
                prev = e.key;
                assert!(e.value.len() <= max_value);
                assert!(std::str::from_utf8(&e.value).is_ok());
                if let Some(id) = &e.id {
                    assert!(!id.is_empty(), "an empty id is no id on the wire");
                    assert!(id.len() <= MAX_ID_BYTES);
                    assert!(std::str::from_utf8(id).is_ok());
                }
                for part in e.id.iter().chain([&e.value]) {
                    if !part.is_empty() {
                        assert_within(&body, part, "batch entry");
                        assert!(part.as_ptr() as usize >= end_of_prev, "entries overlap");
                        end_of_prev = part.as_ptr() as usize + part.len();
                    }
                }
                total += 14 + e.id.as_ref().map_or(0, Bytes::len) + e.value.len();
            }
            assert_eq!(
                total,
                body.len(),
                "the entries do not account for the whole body"
            );
            assert_eq!(
                protocol::encode_batch(&entries),
                body,
                "re-encoding a decoded batch changed its bytes"
            );
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match e {
                BatchError::Empty => assert!(body.is_empty()),
                BatchError::Version(v) => assert!(v == body[0] && v != protocol::BATCH_VERSION),
                BatchError::Trailing(n) => assert!(n > 0 && n < body.len()),
                _ => {}
            }
        }
    }
}

/// One entry for [`check_batch_round_trip`]: key, id, value.
pub type BatchItem = (u64, Option<String>, String);

/// Encoding entries and decoding them gives them back when they form a valid batch, and
/// otherwise fails with exactly the error for the first bad entry.
pub fn check_batch_round_trip(items: &[BatchItem], max_value: usize) {
    let entries: Vec<Entry> = items
        .iter()
        .map(|(key, id, value)| Entry {
            key: *key,
            value: Bytes::copy_from_slice(value.as_bytes()),
            id: id.as_ref().map(|i| Bytes::copy_from_slice(i.as_bytes())),
        })
        .collect();
    let mut expected = Ok(());
    let mut prev = 0;
    for (index, (key, id, value)) in items.iter().enumerate() {
        let id_len = id.as_ref().map_or(0, String::len);
        let err = if *key == 0 {
            Some(BatchError::ZeroKey { index })
        } else if *key <= prev {
            Some(BatchError::Order { index })
        } else if id_len > MAX_ID_BYTES {
            Some(BatchError::IdTooLong { index, len: id_len })
        } else if value.len() > max_value {
            Some(BatchError::ValueTooLarge {
                index,
                len: value.len(),
                max: max_value,
            })
        } else {
            None
        };
        if let Some(err) = err {
            expected = Err(err);
            break;
        }
        prev = *key;
    }
    let body = protocol::encode_batch(&entries);
    let decoded = protocol::decode_batch(body.clone(), max_value);
    match expected {
        Ok(()) => {
            // On the wire an empty id and no id are the same thing.
            let want: Vec<Entry> = entries
                .into_iter()
                .map(|mut e| {
                    e.id = e.id.filter(|i| !i.is_empty());
                    e
                })
                .collect();
            assert_eq!(decoded, Ok(want));
        }
        Err(err) => assert_eq!(decoded, Err(err)),
    }
    check_batch_bytes(&body, max_value);
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// A TOML document: parsing and validating never panics; what is accepted is consistent, what
/// is refused is explained on one line naming the setting.
pub fn check_config_toml(text: &str) {
    match Settings::from_toml(text) {
        Ok(s) => check_settings(&s),
        Err(e) => check_config_error(&e, true),
    }
}

/// `REPLOG_*` variables on top of the defaults: the same, for the environment layer.
pub fn check_config_env(vars: &[(String, String)]) {
    match Settings::load(None, vars.iter().cloned()) {
        Ok(s) => check_settings(&s),
        Err(e) => {
            // A variable name is printed as given; it is one line only if the name is.
            let one_line = vars.iter().all(|(k, _)| !k.contains(['\n', '\r']));
            check_config_error(&e, one_line);
            if let ConfigError::Env { var, .. } = &e {
                assert!(vars.iter().any(|(k, _)| k == var), "names {var}, not given");
            }
        }
    }
}

/// What the rest of the program relies on from a loaded [`Settings`] without checking again.
fn check_settings(s: &Settings) {
    if let Err(e) = s.validate() {
        panic!("loaded settings fail validation: {e}");
    }
    assert_eq!(Ok(s.listen_addr()), s.node.listen.parse());
    assert!(!s.node.name.trim().is_empty());
    assert!(!s.node.data_dir.as_os_str().is_empty());
    if s.node.role == Role::Master {
        let all = s.all_nodes();
        let quorum = s.quorum();
        assert!((1..=all).contains(&quorum), "quorum {quorum} of {all}");
        let w = s.master.default_write_concern.resolve(all);
        assert!(w >= 1 && w <= all as u64, "write concern {w} of {all}");
        assert!(s.master.max_pending_appends >= 1);
    }
    // These convert without panicking (Duration::from_secs_f64 panics on bad floats).
    let delays = s.replication.retry_delays();
    assert!(!delays.is_empty());
    assert!(!s.replication.request_timeout().is_zero());
    assert!(s.replication.max_inflight >= 1 && s.replication.max_batch_entries >= 1);
    assert!(!s.heartbeat.interval().is_zero());
    assert!(!s.heartbeat.timeout().is_zero());
    assert!(s.heartbeat.suspected_after <= s.heartbeat.unhealthy_after);
    assert!((MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&s.storage.segment_bytes));
    assert!((0.0..=1.0).contains(&s.fault.error_rate));
    assert!(s.limits.max_message_bytes >= 1);
}

fn check_config_error(e: &ConfigError, one_line: bool) {
    let msg = e.to_string();
    assert!(!msg.trim().is_empty());
    match e {
        ConfigError::Type { setting, .. } | ConfigError::Invalid { setting, .. } => {
            assert!(
                msg.contains(setting.as_str()),
                "{msg:?} does not name {setting}"
            );
            if one_line {
                assert!(!msg.contains('\n'), "a multi-line error: {msg:?}");
            }
        }
        ConfigError::Env { var, .. } => {
            assert!(msg.contains(var.as_str()), "{msg:?} does not name {var}");
        }
        ConfigError::Syntax { .. } | ConfigError::Read { .. } => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Data directories (segment scan and recovery)

/// How a test builds one segment file: its header, well-formed records, then damage.
#[derive(Clone, Debug)]
pub struct SegmentPlan {
    /// Write the correct header (otherwise `garbage` is the whole file).
    pub header: bool,
    /// (key, id, value) of each record, in file order. Keys may repeat or be 0 (key 0 cannot
    /// be encoded and is skipped).
    pub records: Vec<(u64, Option<Vec<u8>>, Vec<u8>)>,
    /// What happens to the file after the records are written.
    pub damage: Damage,
}

/// Damage done to a segment file built from a [`SegmentPlan`].
#[derive(Clone, Debug)]
pub enum Damage {
    None,
    /// Cut the file to this length (modulo its length + 1).
    Truncate(usize),
    /// XOR one byte (position modulo the file length) with a mask.
    Flip(usize, u8),
    /// Append these bytes (garbage, a half record, …).
    Append(Vec<u8>),
    /// Append this many zero bytes (space a crash left allocated).
    Zeros(usize),
}

/// The bytes of each segment file described by `plans`.
pub fn build_segments(plans: &[SegmentPlan]) -> Vec<Vec<u8>> {
    plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let mut file = Vec::new();
            if plan.header {
                file.extend_from_slice(&segment::header(i as u32 + 1));
            }
            for (key, id, value) in &plan.records {
                let rec = Record {
                    key: *key,
                    id: id.as_deref(),
                    value,
                };
                let _ = record::encode(&rec, &mut file);
            }
            match &plan.damage {
                Damage::None => {}
                Damage::Truncate(n) => file.truncate(n % (file.len() + 1)),
                Damage::Flip(pos, mask) => {
                    if !file.is_empty() {
                        let pos = pos % file.len();
                        file[pos] ^= mask;
                    }
                }
                Damage::Append(bytes) => file.extend_from_slice(bytes),
                Damage::Zeros(n) => file.resize(file.len() + n, 0),
            }
            file
        })
        .collect()
}

/// What opening a data dir must do, worked out from the files with nothing but
/// `record::decode`, following the recovery rule in `log::file`'s docs.
#[derive(Debug)]
struct Expected {
    /// Whether `open` must accept the directory.
    opens: bool,
    /// Valid records before the first damage that are not void, by key: (id, value).
    entries: BTreeMap<u64, (Option<Vec<u8>>, Vec<u8>)>,
    /// Valid records before the first damage that a cut made void.
    void: u64,
    /// Where the last segment must be cut, if it is damaged.
    cut_at: Option<u64>,
    /// The last segment's length after `open`.
    last_len: u64,
    /// Where the records end after `open` (the last segment, and its records' end).
    end: (u32, u64),
}

impl Expected {
    fn contiguous(&self) -> u64 {
        let mut c = 0;
        while self.entries.contains_key(&(c + 1)) {
            c += 1;
        }
        c
    }
}

/// Whether the record with `key` at `position` is void under `cuts`: the rule as the docs
/// state it, one cut at a time (not the store's implementation).
fn void_under(cuts: &[CutMark], key: u64, position: (u32, u64)) -> bool {
    cuts.iter()
        .any(|c| key >= c.from_key && position < (c.segment, c.offset))
}

fn expected(segments: &[Vec<u8>], cuts: &[CutMark]) -> Expected {
    let mut want = Expected {
        opens: true,
        entries: BTreeMap::new(),
        void: 0,
        cut_at: None,
        last_len: segment::HEADER_LEN,
        end: (segments.len().max(1) as u32, segment::HEADER_LEN),
    };
    let refused = |mut w: Expected| {
        w.opens = false;
        w
    };
    for (i, bytes) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let Some(header) = bytes.first_chunk::<{ segment::HEADER_LEN as usize }>() else {
            if !last {
                return refused(want);
            }
            // A last segment shorter than its header gets the header back.
            want.cut_at = Some(0);
            want.last_len = segment::HEADER_LEN;
            want.end.1 = segment::HEADER_LEN;
            continue;
        };
        if segment::check_header(header, i as u32 + 1).is_err() {
            return refused(want);
        }
        let mut offset = header.len();
        let mut damaged = false;
        while offset < bytes.len() {
            match record::decode(&bytes[offset..]) {
                RecordStatus::Valid(r) => {
                    if void_under(cuts, r.key, (i as u32 + 1, offset as u64)) {
                        want.void += 1;
                        offset += r.encoded_len();
                        continue;
                    }
                    let content = (r.id.map(<[u8]>::to_vec), r.value.to_vec());
                    if want.entries.insert(r.key, content).is_some() {
                        // The same key twice is a hard error.
                        return refused(want);
                    }
                    offset += r.encoded_len();
                }
                _ => {
                    damaged = true;
                    break;
                }
            }
        }
        if damaged {
            if !last {
                return refused(want);
            }
            want.end.1 = offset as u64;
            if bytes[offset..].iter().all(|&b| b == 0) {
                // Zeros after the last record of the last segment: room, kept as it is.
                want.last_len = bytes.len() as u64;
                continue;
            }
            want.cut_at = Some(offset as u64);
        }
        want.last_len = offset as u64;
        want.end.1 = offset as u64;
    }
    want
}

/// Writes `segments` as segment files 1, 2, … into `dir` (emptied first), and `cuts` as its
/// `cuts` file unless there are none, and checks recovery:
///
/// * `open` never panics; it refuses exactly the directories the recovery rule refuses, with
///   `StoreError::Corrupt`, changing no segment file; `check` agrees about all of it;
/// * it cuts a damaged tail of the last segment at the first bad record, and nothing else;
/// * it skips exactly the records void under the cuts: they are neither served nor held nor
///   "stored twice";
/// * it serves exactly the other valid records with keys `1..=contiguous`, in order, with
///   their content, and holds the rest aside;
/// * it moves every cut lying beyond the end of the records back to that end, in the file;
/// * the store it opens takes new writes (which no cut voids), refuses to overwrite, and
///   reopens clean.
pub fn check_store(dir: &Path, segments: &[Vec<u8>], cuts: &[CutMark]) {
    if dir.exists() {
        fs::remove_dir_all(dir).expect("empty the test dir");
    }
    fs::create_dir_all(dir).expect("create the test dir");
    let paths: Vec<_> = (1..=segments.len())
        .map(|n| dir.join(segment::file_name(n as u32)))
        .collect();
    for (path, bytes) in paths.iter().zip(segments) {
        fs::write(path, bytes).expect("write a segment file");
    }
    if !cuts.is_empty() {
        meta::write_cuts(dir, cuts).expect("write the cuts file");
    }
    let want = expected(segments, cuts);
    let beyond_end = cuts
        .iter()
        .filter(|c| (c.segment, c.offset) > want.end)
        .count();
    let contiguous = want.contiguous();
    let records = want.entries.len() as u64;
    let held_aside = want.entries.len() - contiguous as usize;

    let report = check::check(dir).expect("check reads the directory");
    assert_eq!(
        report.would_open(),
        want.opens,
        "check: {report}\nwanted {want:?}"
    );
    if want.opens {
        assert_eq!(report.records, records, "check: {report}");
        assert_eq!(report.void_records, want.void, "check: {report}");
        assert_eq!(report.contiguous_key, contiguous, "check: {report}");
        assert_eq!(report.held_aside, held_aside, "check: {report}");
        assert_eq!(report.cuts_beyond_end, beyond_end, "check: {report}");
        assert_eq!(
            report.is_clean(),
            want.cut_at.is_none() && beyond_end == 0,
            "check: {report}"
        );
    }
    // check changes nothing.
    for (path, bytes) in paths.iter().zip(segments) {
        assert_eq!(
            &fs::read(path).expect("read back"),
            bytes,
            "check changed {path:?}"
        );
    }

    let opened = FileStore::open(dir, FileStoreOptions::default());
    let (store, rep) = match opened {
        Err(e) => {
            assert!(!want.opens, "open refused a directory it should open: {e}");
            assert!(matches!(e, StoreError::Corrupt(_)), "refused with {e:?}");
            for (path, bytes) in paths.iter().zip(segments) {
                assert_eq!(
                    &fs::read(path).expect("read back"),
                    bytes,
                    "refusing changed {path:?}"
                );
            }
            return;
        }
        Ok(opened) => opened,
    };
    assert!(
        want.opens,
        "open accepted a directory it must refuse: {rep}"
    );
    assert_eq!(rep.records, records, "{rep}");
    assert_eq!(rep.void_records, want.void, "{rep}");
    assert_eq!(rep.contiguous_key, contiguous, "{rep}");
    assert_eq!(rep.held_aside, held_aside, "{rep}");
    assert_eq!(rep.cuts_clamped, beyond_end, "{rep}");
    let clamped: Vec<CutMark> = cuts
        .iter()
        .map(|c| {
            let mut c = *c;
            if (c.segment, c.offset) > want.end {
                (c.segment, c.offset) = want.end;
            }
            c
        })
        .collect();
    assert_eq!(
        meta::read_cuts(dir).expect("read the cuts back"),
        clamped,
        "the cuts file after open"
    );
    assert_eq!(rep.created, segments.is_empty(), "{rep}");
    assert_eq!(
        rep.tail_cut.as_ref().map(|c| c.offset),
        want.cut_at,
        "{rep}"
    );
    assert_eq!(store.contiguous_key(), contiguous);
    assert_eq!(store.held_aside(), held_aside);

    // Only the damaged tail of the last segment was touched.
    if let Some((last, earlier)) = paths.split_last() {
        for (path, bytes) in earlier.iter().zip(segments) {
            assert_eq!(
                &fs::read(path).expect("read back"),
                bytes,
                "open changed {path:?}"
            );
        }
        let now = fs::read(last).expect("read back the last segment");
        assert_eq!(
            now.len() as u64,
            want.last_len,
            "the last segment's length after open"
        );
        let original = &segments[segments.len() - 1];
        if original.len() >= segment::HEADER_LEN as usize {
            assert_eq!(now, original[..now.len()], "open changed kept bytes");
        }
    }

    // Exactly the visible records are served, with their content.
    let served = store.read(1, usize::MAX, usize::MAX).expect("read the log");
    let keys: Vec<u64> = served.iter().map(|e| e.key).collect();
    assert_eq!(keys, (1..=contiguous).collect::<Vec<_>>(), "served keys");
    for e in &served {
        let (id, value) = &want.entries[&e.key];
        assert_eq!(&e.value[..], &value[..], "value of key {}", e.key);
        assert_eq!(e.id.as_deref(), id.as_deref(), "id of key {}", e.key);
    }
    assert!(
        store
            .read(contiguous + 1, 10, 1 << 20)
            .expect("read")
            .is_empty()
    );
    for key in want.entries.keys() {
        assert!(store.holds(*key), "key {key} is not held");
    }
    let mut ids = Vec::new();
    store
        .scan_ids(1, &mut |id, key| ids.push((key, id.to_vec())))
        .expect("scan ids");
    let want_ids: Vec<(u64, Vec<u8>)> = want
        .entries
        .range(..=contiguous)
        .filter_map(|(k, (id, _))| id.clone().map(|id| (*k, id)))
        .collect();
    assert_eq!(ids, want_ids, "scan_ids");

    // Writing on after recovery: a conflicting put stores nothing, a new key lands on a
    // record boundary and survives a reopen.
    if let Some((&key, (id, value))) = want.entries.iter().next() {
        let mut other = value.clone();
        other.push(b'!');
        let clash = Entry {
            key,
            value: other.into(),
            id: id.clone().map(Bytes::from),
        };
        assert!(matches!(
            store.put(&[clash]),
            Err(StoreError::Conflict { .. })
        ));
    }
    let next = Entry {
        key: contiguous + 1,
        value: Bytes::from_static(b"written after recovery"),
        id: Some(Bytes::from_static(b"fuzz-id")),
    };
    assert_eq!(
        store
            .put(std::slice::from_ref(&next))
            .expect("put after recovery"),
        1
    );
    let after_put = store.contiguous_key();
    assert!(after_put > contiguous);
    assert_eq!(
        store.read(next.key, 1, 1 << 20).expect("read"),
        vec![next.clone()]
    );
    drop(store);

    let (store, rep) = FileStore::open(dir, FileStoreOptions::default()).expect("reopen");
    assert!(rep.tail_cut.is_none(), "a second open cut again: {rep}");
    assert_eq!(
        rep.cuts_clamped, 0,
        "a second open moved a cut again: {rep}"
    );
    // The record written after recovery lies after every (clamped) cut: not void.
    assert_eq!(rep.records, records + 1, "{rep}");
    assert_eq!(rep.void_records, want.void, "{rep}");
    assert_eq!(store.contiguous_key(), after_put, "{rep}");
    assert_eq!(store.read(next.key, 1, 1 << 20).expect("read"), vec![next]);
    drop(store);
    let report = check::check(dir).expect("check after reopen");
    assert!(report.is_clean(), "check after a clean reopen: {report}");
}

// ---------------------------------------------------------------------------------------------

/// `part` lies inside `whole` (checks that a decoder handed out views of its input).
fn assert_within(whole: &[u8], part: &[u8], what: &str) {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    assert!(
        p >= w && p + part.len() <= w + whole.len(),
        "{what} lies outside the buffer it was decoded from"
    );
}
