//! [`FileStore`]: the durable [`LogStore`], an append-only log of checksummed records in
//! segment files, with a compact in-memory index of where each record is.
//!
//! # Files in the data directory
//!
//! ```text
//! LOCK              empty; flock(2)ed exclusively while a FileStore has the directory open
//! log_id            "<32 hex digits> <crc32c of those 32 bytes, 8 hex digits>\n"
//! epochs            the node's epoch and epoch history (see crate::domain::epoch), text:
//!                     current <epoch>\n
//!                     epoch <epoch> first_key <key>\n      one per history pair, oldest first
//!                     crc32c <8 hex digits>\n              of every byte before this line
//! cuts              every cut made on this log, oldest first, text:
//!                     from_key <K> segment <S> offset <P> entries <N>\n
//!                     crc32c <8 hex digits>\n              as in epochs
//! CLEAN             empty; present only between a clean stop and the next open
//! 0000000001.seg    segment 1: a 16-byte header, then records (see super::segment)
//! 0000000002.seg    segment 2, …
//! *.tmp             a file being written before its rename; deleted when the store opens
//! ```
//!
//! Segments are numbered 1, 2, 3, … in creation order (not by key: a secondary receives keys
//! out of order, so "the first key of a segment" means little). A record is the unit of
//! checksumming; its exact bytes are documented in [`super::record`].
//!
//! `log_id`, `epochs` and `cuts` are small and replaced whole: written to `<name>.tmp`,
//! fsynced, renamed over `<name>`, directory fsynced (see [`super::meta`]), so a crash leaves
//! the old file or the new one. A missing `epochs` means epoch 0 and an empty history (a log of
//! an earlier build, or a new one); a missing `cuts`, no cut. A damaged or unparsable one is a
//! hard error at `open` naming the file, like a bad `log_id`: guessing would mix logs.
//!
//! A **cut line** says: every key `≥ K` held when the cut was made was removed (`N` entries),
//! and the records then ended at position `(S, P)` (segment `S`, byte offset `P`). Positions
//! order records as they were written: by segment, then offset.
//!
//! # Writing
//!
//! `put` checks the whole call first (key 0, id and value limits, and every already-held key
//! against its record on disk), so a conflict stores nothing. It then encodes all new records
//! into one buffer and writes it with one positional write at the end of the active segment.
//! When a record does not fit in what is left of the segment (`segment_bytes`), the segment is
//! *sealed* and a new one started: a record never spans two segments, a record larger than a
//! segment gets one of its own, and a call that crosses a segment boundary takes one write per
//! segment (so does every 16 MiB of a huge call, to bound the buffer). The index is updated
//! only after a write succeeded, so readers never see a location whose bytes are not in the
//! file. If a write fails part-way, the file is cut back to where it was (and if even that
//! fails, the store refuses further writes until it is reopened, which cuts the tail); records
//! of the call written before the failure stay stored, so retrying the call is a no-op for
//! them. A crash can likewise keep any subset of an unsynced call: every record stands alone.
//!
//! # Durability rule
//!
//! * `sync` fsyncs (`fdatasync`) the active segment. It only takes a lock long enough to clone
//!   the segment's `Arc<File>`, so it runs concurrently with `put` and reads.
//! * Sealing a segment fsyncs it *before* the next segment is created, and a segment is created
//!   as `N.seg.tmp`, header written and fsynced, renamed to `N.seg`, then the directory fsynced.
//!   So every segment but the last is entirely durable, and a `.seg` file always has its
//!   header. (This is why a roll costs an fsync even with `fsync = "never"`: one per
//!   `segment_bytes` written.)
//! * Hence `sync` covers everything: earlier segments are already durable, and the active one
//!   holds every record whose `put` returned before `sync` was called (a `put` that rolled
//!   updated the sync target before returning).
//! * An fsync failure is sticky: after one, every later `sync` fails, and so do sealing a
//!   segment (a `put` that needs a roll), `cut_from`, `set_epochs` and `mark_clean_stop`,
//!   which would otherwise write as if all were well; `sync_failure` says what failed. After
//!   a failed fsync, Linux may have dropped the dirty pages, so a later successful fsync would
//!   prove nothing. Only reopening the store (restarting the node) clears it.
//! * The log identity and the epochs are durable before `set_log_id` / `set_epochs` return
//!   (replaced whole, see above).
//! * A **cut** (`cut_from(K)`) never rewrites a record. It first fsyncs the active segment, so
//!   every record before the current end of the records `P` is durable and no later torn-tail
//!   cut can reach below `P`; then it appends `(K, P, N)` to `cuts` (replaced whole, durably);
//!   only then does it drop the keys from the index. A crash before the `cuts` rename loses
//!   nothing and cuts nothing; after it, the cut holds (see the recovery rule).
//! * **Clean stop**: `mark_clean_stop` fsyncs the active segment, then creates `CLEAN` (file
//!   and directory fsynced). `open` removes it, durably, before it returns, so only the stop
//!   right before an open can be taken for clean; a write after `mark_clean_stop` (`put`,
//!   `cut_from`, `set_epochs`) removes it first. Directories of earlier builds have no marker
//!   and count as stopped uncleanly, which is the safe side.
//!
//! # Zeros ahead
//!
//! With `zero_ahead` (the node sets it under `fsync = "always"`), the writer keeps up to a
//! chunk (1 MiB) of zeros written beyond the records of the active segment, never past
//! `segment_bytes`. A record's write then overwrites blocks the file already has, within its
//! size, so its `fdatasync` commits data only: no size change and no allocation for the
//! file system's journal (on ext4 here ~135 µs per fdatasync instead of ~185-210 µs). Each new
//! chunk is written when the records come within a quarter chunk of the zeros' end; the fsync
//! after it pays for its blocks once. Sealing cuts the segment back to its last record first,
//! so a sealed segment never ends in zeros; a write that fails cuts the zeros with it.
//!
//! # Recovery rule (`open`)
//!
//! Every segment is scanned and every record's checksum verified; the index is rebuilt from
//! the records in file order, skipping void ones.
//!
//! * **Void records.** A record at position `p` with key `k` is *void* when some cut line
//!   `(K, P, N)` has `k ≥ K` and `p < P`: the cut removed it. Void records are not indexed,
//!   not "the same key in two records", and not damage; their bytes simply stay in their
//!   segment (counted in the report, `void_records`). Records at or after a cut's position are
//!   what they are: a key can be cut and later stored again.
//! * **A cut beyond the end.** A cut position past the end of the recovered records cannot
//!   happen (the fsync before the cut), but a disk that lost synced data could produce one.
//!   Left alone it would void records written later between the end and that position, so it
//!   is moved back to the end and `cuts` rewritten durably before `open` returns
//!   (`cuts_clamped`).
//! * **Zeros after the last record of the last segment**, to the end of the file, are room for
//!   new records (see *Zeros ahead*), or space a crash left allocated: kept, and counted in
//!   the report (`zeros_kept`), not cut. Records are written over them.
//! * **Other damage in the last segment** (a torn record, a checksum mismatch, a malformed
//!   header) is cut: the file is truncated at the start of the first bad record and
//!   fsynced, and the [`RecoveryReport`] says how many bytes, why, and how many intact-looking
//!   records were found after the damage. Nothing after the damage is ever served: records
//!   past a hole in the file cannot be trusted to be the ones that were written, and after a
//!   power loss unsynced pages can reach the disk in any order, so intact records after a torn
//!   spot are expected and were never acknowledged as durable. The price: rot inside already
//!   synced data of the last segment looks the same and is cut too; a non-zero
//!   `intact_records_after` in the report is the sign, and the node should log the report
//!   loudly. A last segment shorter than its header (impossible by construction, but cheap to
//!   handle) holds no records and gets its header rewritten.
//! * **Damage in any earlier segment** is a hard [`StoreError::Corrupt`] naming the file and
//!   offset: those segments were fsynced when sealed, so this is not a torn write but lost
//!   acknowledged data, and it takes a person to decide (see `check`).
//! * A missing segment number (1, 2, 4), a bad segment header, the same key in two (non-void)
//!   records, or an unreadable `log_id`, `epochs` or `cuts` file are hard errors too.
//! * `last_stop_clean` is true when the directory held no segment (a new log) or `CLEAN` was
//!   there; `CLEAN` is then removed and the directory fsynced.
//!
//! # Memory
//!
//! Values stay on disk; reads fetch them with positional reads (`pread`, served from the page
//! cache) into fresh buffers, so resident memory does not grow with the log's bytes. The index
//! (see the `index` module) costs 8 bytes per visible message plus about 40 per entry held aside:
//! 80 MB for 10 M messages. One file handle stays open per segment.
//!
//! Recovery reads every byte once (4 MiB reads, hardware CRC32C): about 0.8 s for 10 M
//! 100-byte messages (1.2 GB) from the page cache on the development machine; from a cold
//! disk it is bounded by the disk's sequential read speed.
//!
//! # Limits
//!
//! Values up to 256 MiB (`record::MAX_VALUE_LEN`), ids up to 256 bytes, segments up to 4 GiB
//! and 2³¹ − 1 of them. There is no retention: segments are never deleted, and segment 1 must
//! exist (a future retention scheme would record the first segment and key explicitly).
//!
//! # Concurrency
//!
//! `put` and `cut_from` are serialised by `writer` (the contract says one task calls them; the
//! mutex makes that safe rather than assumed); `mark_clean_stop` takes it too, so nothing is
//! written between its fsync and the marker. Readers and accessors take `shared` for reading
//! only long enough to copy locations and clone file handles, then read the files without any
//! lock; the writer takes it for writing only to publish a finished write, a new segment or a
//! cut. A read that copied its locations before a cut may still return keys the cut removed:
//! it read before the cut, and the records are never rewritten, so what it returns is what was
//! stored.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::index::{Index, Loc, MAX_SEGMENT};
use super::meta::{
    self, CLEAN_FILE, CUTS_FILE, CutMark, LOCK_FILE, REPLACED_FILES, VoidRule, read_log_id,
    write_log_id,
};
use super::record::{self, Record, RecordStatus};
use super::segment::{self, DamageAt};
use super::{
    Cut, CutRecord, Entry, Epochs, LogId, LogStore, StoreError, StoreResult, check_epochs,
};

/// The smallest accepted `segment_bytes` (tests use tiny segments; the config asks ≥ 4096).
pub const MIN_SEGMENT_BYTES: u64 = 64;
/// The largest accepted `segment_bytes`: record offsets are kept as `u32`.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 32;

/// Locations copied from the index per lock acquisition when reading.
const READ_BATCH: usize = 4096;
/// A `put` whose records encode to more than this is written in several writes.
const MAX_WRITE_BYTES: u64 = 16 << 20;

/// How a [`FileStore`] is laid out; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// A segment is sealed and a new one started when the next record would take it past this
    /// many bytes (header included). Default 64 MiB; between [`MIN_SEGMENT_BYTES`] and
    /// [`MAX_SEGMENT_BYTES`]. May change between runs.
    pub segment_bytes: u64,
    /// Write zeros ahead of the records in the active segment (see *Zeros ahead* in the module
    /// docs): each fsync then has no file size or block allocation to commit. Worth it when
    /// every write is fsynced (`fsync = "always"`); otherwise it only doubles the bytes written.
    pub zero_ahead: bool,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            segment_bytes: 64 << 20,
            zero_ahead: false,
        }
    }
}

/// What [`FileStore::open`] found and did.
#[derive(Clone, Debug)]
pub struct RecoveryReport {
    /// The data directory.
    pub dir: PathBuf,
    /// The directory held no segment: a new, empty log was created.
    pub created: bool,
    /// Segment files now in the directory.
    pub segments: usize,
    /// Valid records found (visible and held aside).
    pub records: u64,
    /// Bytes of segment files kept (headers and valid records).
    pub bytes: u64,
    /// The end of the visible log.
    pub contiguous_key: u64,
    /// Entries held aside beyond the first hole.
    pub held_aside: usize,
    /// The log identity, if bound.
    pub log_id: Option<LogId>,
    /// The damaged tail cut from the last segment, if there was one.
    pub tail_cut: Option<DamageAt>,
    /// Records skipped as void: removed by a cut made after they were written.
    pub void_records: u64,
    /// Cuts recorded in `cuts`.
    pub cuts: usize,
    /// Cuts whose position lay beyond the end of the recovered records and was moved back to
    /// it (`cuts` rewritten); non-zero only on a disk that lost synced data.
    pub cuts_clamped: usize,
    /// The epoch and history in `epochs`.
    pub epochs: Epochs,
    /// The previous run ended with a clean stop (or there was none: a new log).
    pub last_stop_clean: bool,
    /// Zero bytes after the last record of the last segment, kept as room for new records
    /// (written ahead under `zero_ahead`, or space a crash left allocated): not damage.
    pub zeros_kept: u64,
    /// Leftover `*.tmp` files deleted (interrupted segment creations or log id writes).
    pub removed_tmp_files: Vec<PathBuf>,
    /// Approximate bytes of memory used by the index.
    pub index_bytes: usize,
    /// How long opening took.
    pub elapsed: Duration,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created {
            write!(f, "created a new log in {}", self.dir.display())?;
        } else {
            write!(
                f,
                "recovered {} records ({:.1} MiB in {} segments) from {} in {} ms: visible log 1..={}, {} held aside, index {:.1} MiB",
                self.records,
                self.bytes as f64 / (1 << 20) as f64,
                self.segments,
                self.dir.display(),
                self.elapsed.as_millis(),
                self.contiguous_key,
                self.held_aside,
                self.index_bytes as f64 / (1 << 20) as f64,
            )?;
        }
        match self.log_id {
            Some(id) if self.created => write!(
                f,
                "; log id {id} is bound but there were no segments: this node's messages are gone"
            )?,
            Some(id) => write!(f, "; log id {id}")?,
            None => write!(f, "; no log id yet")?,
        }
        if self.epochs != Epochs::default() {
            write!(
                f,
                "; epoch {} ({})",
                self.epochs.current, self.epochs.history
            )?;
        }
        if !self.created {
            f.write_str(if self.last_stop_clean {
                "; the last stop was clean"
            } else {
                "; the last stop was not clean (crash, kill, power loss, or an earlier build)"
            })?;
        }
        if let Some(cut) = &self.tail_cut {
            write!(f, "; cut a damaged tail: {cut}")?;
        }
        if self.cuts > 0 {
            write!(
                f,
                "; {} cuts recorded, {} void records skipped",
                self.cuts, self.void_records
            )?;
        }
        if self.cuts_clamped > 0 {
            write!(
                f,
                "; moved {} cut positions that lay beyond the end of the log back to it \
                 (synced data was lost)",
                self.cuts_clamped
            )?;
        }
        if self.zeros_kept > 0 {
            write!(
                f,
                "; {} zero bytes after the last record kept as room for new ones",
                self.zeros_kept
            )?;
        }
        if !self.removed_tmp_files.is_empty() {
            write!(
                f,
                "; removed {} leftover temporary files",
                self.removed_tmp_files.len()
            )?;
        }
        Ok(())
    }
}

/// The durable log store; see the module docs for the format and the rules.
pub struct FileStore {
    dir: PathBuf,
    segment_bytes: u64,
    zero_ahead: bool,
    /// The index and the open segments. Shared briefly by readers, exclusive only to publish.
    shared: RwLock<Shared>,
    /// Mirrors `shared.index.contiguous()`, stored under the write lock after each change, so
    /// the hot accessors need no lock.
    contiguous: AtomicU64,
    /// Mirrors `shared.index.aside_len()`, like `contiguous`.
    aside: AtomicUsize,
    /// The writing side; held for the whole of a `put`.
    writer: Mutex<Writer>,
    /// The active segment, the one `sync` fsyncs. Replaced by a roll before the rolling `put`
    /// returns; `sync` holds this lock only to clone the handle.
    sync_target: Mutex<Arc<File>>,
    /// The first fsync failure, which makes every later `sync` fail (see the module docs).
    sync_failure: Mutex<Option<String>>,
    /// Test hook: the next fsync of a segment fails (see [`FileStore::fail_next_fsync`]).
    fail_next_fsync: AtomicBool,
    log_id: Mutex<Option<LogId>>,
    /// As in the `epochs` file; replaced only after the file was.
    epochs: RwLock<Epochs>,
    /// Serialises `set_epochs` (each replaces the whole file).
    epochs_write: Mutex<()>,
    /// As in the `cuts` file, oldest first; changed only by `cut_from` (under `writer`) and
    /// after the file was replaced.
    cuts: Mutex<Vec<CutMark>>,
    /// Whether the `CLEAN` marker was there at open.
    last_stop_clean: bool,
    /// `mark_clean_stop` wrote `CLEAN`: the next write must remove it first.
    clean_marked: AtomicBool,
    /// Holds the directory's flock for as long as the store lives.
    _lock: File,
}

struct Shared {
    index: Index,
    /// Segment `n` is `segments[n - 1]`; only ever grows.
    segments: Vec<Arc<File>>,
}

struct Writer {
    /// Number of the active segment.
    segment: u32,
    file: Arc<File>,
    /// Bytes in the active segment: where the next record goes.
    len: u64,
    /// Encoding buffer, kept between calls to avoid reallocating.
    buf: Vec<u8>,
    /// Set when a failed write could not be undone: writing on would leave garbage in the
    /// middle of the log.
    broken: Option<String>,
    /// The active segment holds zeros (written, not a hole) up to here: records written below
    /// it overwrite allocated blocks without changing the file's size (see `zero_ahead`).
    zeroed_to: u64,
}

impl FileStore {
    /// Opens (creating if needed) the log in `dir`, recovering it as described in the module
    /// docs. Fails if another process (or another `FileStore` in this one) has it open.
    pub fn open(dir: &Path, opts: FileStoreOptions) -> StoreResult<(FileStore, RecoveryReport)> {
        let started = Instant::now();
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&opts.segment_bytes) {
            return Err(invalid_input(format!(
                "segment_bytes = {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                opts.segment_bytes
            )));
        }
        fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;

        let mut removed_tmp_files = Vec::new();
        let mut numbers = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = name.strip_suffix(segment::TMP_SUFFIX)
                && (REPLACED_FILES.contains(&base) || segment::parse_file_name(base).is_some())
            {
                fs::remove_file(entry.path())?;
                removed_tmp_files.push(entry.path());
            } else if let Some(n) = segment::parse_file_name(name) {
                numbers.push(n);
            }
        }
        if !removed_tmp_files.is_empty() {
            segment::sync_dir(dir)?;
        }
        numbers.sort_unstable();
        check_numbering(dir, &numbers)?;
        let log_id = read_log_id(dir)?;
        let epochs = meta::read_epochs(dir)?;
        let mut cuts = meta::read_cuts(dir)?;
        let void = VoidRule::new(&cuts);
        let clean_path = dir.join(CLEAN_FILE);
        let clean_marker = match fs::symlink_metadata(&clean_path) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };

        let mut index = Index::default();
        let mut void_records = 0u64;
        let mut segments = Vec::with_capacity(numbers.len() + 1);
        let mut tail_cut = None;
        let mut records = 0u64;
        let mut bytes = 0u64;
        let mut active_len = segment::HEADER_LEN;
        let mut zeros_kept = 0;
        for (i, &n) in numbers.iter().enumerate() {
            let path = dir.join(segment::file_name(n));
            let last = i + 1 == numbers.len();
            let file = OpenOptions::new().read(true).write(last).open(&path)?;
            let scan = segment::scan(&file, &path, n, |s| {
                if void.is_void(s.record.key, (n, u64::from(s.offset))) {
                    void_records += 1;
                    return Ok(());
                }
                let loc = Loc::new(n, s.offset, s.record.id.is_some());
                index.insert(s.record.key, loc).map_err(|earlier| {
                    StoreError::Corrupt(format!(
                        "key {} is stored twice: in {} at offset {} and in {} at offset {}",
                        s.record.key,
                        dir.join(segment::file_name(earlier.segment())).display(),
                        earlier.offset(),
                        path.display(),
                        s.offset
                    ))
                })
            })?;
            records += scan.records;
            let mut kept = scan.valid_end;
            match scan.damage {
                None => {}
                // Room for new records, not damage: they overwrite it (see `zero_ahead`). Only
                // in the last segment: a sealed one was cut to its records before it was sealed.
                Some(room) if last && room.damage == segment::Damage::ZeroFilled => {
                    zeros_kept = room.bytes_to_end;
                }
                Some(damage) => {
                    if !last {
                        return Err(StoreError::Corrupt(format!(
                            "{damage}; this segment was sealed (fsynced) before a later one was \
                             created, so this is not a torn write: refusing to drop acknowledged \
                             data (inspect the directory with `replog check`)"
                        )));
                    }
                    match &damage.damage {
                        segment::Damage::BadHeader(_) => {
                            return Err(StoreError::Corrupt(format!(
                                "{damage}; not deleting a file that may not be ours"
                            )));
                        }
                        segment::Damage::ShortHeader => {
                            file.set_len(0)?;
                            file.write_all_at(&segment::header(n), 0)?;
                            kept = segment::HEADER_LEN;
                        }
                        _ => file.set_len(damage.offset)?,
                    }
                    file.sync_all()?;
                    tail_cut = Some(damage);
                }
            }
            bytes += kept;
            if last {
                active_len = kept;
            }
            segments.push(Arc::new(file));
        }
        // Void records were counted by the scans but are not held.
        records -= void_records;
        let created = segments.is_empty();
        if created {
            segments.push(Arc::new(segment::create(dir, 1)?));
            bytes = segment::HEADER_LEN;
        }
        let active_segment = segments.len() as u32;
        let active = Arc::clone(&segments[segments.len() - 1]);

        // A cut beyond the end of what was recovered would void records written there later
        // (see the recovery rule): move it back to the end, durably, before anything is.
        let cuts_clamped = meta::clamp(&mut cuts, (active_segment, active_len));
        if cuts_clamped > 0 {
            meta::write_cuts(dir, &cuts)?;
        }
        // The marker vouches for one stop only: gone before anything else can happen.
        if clean_marker {
            fs::remove_file(&clean_path)?;
            segment::sync_dir(dir)?;
        }
        let last_stop_clean = created || clean_marker;

        let report = RecoveryReport {
            dir: dir.to_path_buf(),
            created,
            segments: segments.len(),
            records,
            bytes,
            contiguous_key: index.contiguous(),
            held_aside: index.aside_len(),
            log_id,
            tail_cut,
            void_records,
            cuts: cuts.len(),
            cuts_clamped,
            epochs: epochs.clone(),
            last_stop_clean,
            zeros_kept,
            removed_tmp_files,
            index_bytes: index.memory_bytes(),
            elapsed: started.elapsed(),
        };
        let store = FileStore {
            dir: dir.to_path_buf(),
            segment_bytes: opts.segment_bytes,
            zero_ahead: opts.zero_ahead,
            contiguous: AtomicU64::new(index.contiguous()),
            aside: AtomicUsize::new(index.aside_len()),
            shared: RwLock::new(Shared { index, segments }),
            writer: Mutex::new(Writer {
                segment: active_segment,
                file: Arc::clone(&active),
                len: active_len,
                buf: Vec::new(),
                broken: None,
                zeroed_to: active_len + zeros_kept,
            }),
            sync_target: Mutex::new(active),
            sync_failure: Mutex::new(None),
            fail_next_fsync: AtomicBool::new(false),
            log_id: Mutex::new(log_id),
            epochs: RwLock::new(epochs),
            epochs_write: Mutex::new(()),
            cuts: Mutex::new(cuts),
            last_stop_clean,
            clean_marked: AtomicBool::new(false),
            _lock: lock,
        };
        Ok((store, report))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared.read().segments.len()
    }

    /// Approximate bytes of memory used by the index.
    pub fn index_bytes(&self) -> usize {
        self.shared.read().index.memory_bytes()
    }

    fn segment_file(&self, n: u32) -> StoreResult<Arc<File>> {
        let shared = self.shared.read();
        segment_handle(&shared, &self.dir, n)
    }

    /// Reads the record at `loc` and checks it holds `key`.
    fn read_one(
        &self,
        reader: &mut RecordReader,
        key: u64,
        loc: Loc,
    ) -> StoreResult<(Option<Bytes>, Bytes)> {
        let file = self.segment_file(loc.segment())?;
        let rec = reader.read(&file, loc, &self.dir)?;
        check_key(&self.dir, loc, key, &rec)?;
        Ok((
            rec.id.map(Bytes::copy_from_slice),
            Bytes::copy_from_slice(rec.value),
        ))
    }

    /// Seals the active segment and starts the next one. Refuses, changing nothing, after a
    /// failed fsync: sealing vouches for the segment's bytes, and after a failure nothing can.
    fn roll(&self, w: &mut Writer) -> StoreResult<()> {
        self.refuse_after_sync_failure()?;
        // Sealing makes the full segment durable before any later segment exists, which is
        // what lets recovery treat damage outside the last segment as real corruption. Zeros
        // written ahead are cut first: a sealed segment ends with its last record.
        let cut = w.zeroed_to > w.len;
        if cut {
            w.file.set_len(w.len)?;
            w.zeroed_to = w.len;
        }
        // The cut changed the file's size: only a full fsync is sure to commit it.
        if let Err(e) = self.fsync(&w.file, cut) {
            self.note_sync_failure(&e);
            return Err(e.into());
        }
        let next = w
            .segment
            .checked_add(1)
            .filter(|&n| n <= MAX_SEGMENT)
            .ok_or_else(|| invalid_input("the log has used every segment number".to_string()))?;
        let file = Arc::new(segment::create(&self.dir, next)?);
        self.shared.write().segments.push(Arc::clone(&file));
        *self.sync_target.lock() = Arc::clone(&file);
        w.segment = next;
        w.file = file;
        w.len = segment::HEADER_LEN;
        w.zeroed_to = segment::HEADER_LEN;
        Ok(())
    }

    /// Under `zero_ahead`, keeps zeros written ahead of the records of the active segment, up
    /// to a chunk beyond `end` (where the records about to be written end), never past
    /// `segment_bytes`. New chunks go only when the records come within a quarter chunk of
    /// the zeros' end. A failure to write zeros costs only the speed they bring.
    fn zero_ahead(&self, w: &mut Writer, end: u64) {
        const CHUNK: usize = 1 << 20;
        static ZEROS: [u8; CHUNK] = [0; CHUNK];
        if !self.zero_ahead || end + CHUNK as u64 / 4 <= w.zeroed_to {
            return;
        }
        // Zeros below `end` would be overwritten at once: start at `end`.
        let from = w.zeroed_to.max(end);
        let to = (end + CHUNK as u64).min(self.segment_bytes);
        if to <= from {
            return;
        }
        let n = (to - from) as usize;
        if w.file.write_all_at(&ZEROS[..n], from).is_ok() {
            w.zeroed_to = to;
        }
    }

    /// Fsyncs a segment: `fdatasync`, or `fsync` when `all` (metadata too). Fails without
    /// touching the file once after [`FileStore::fail_next_fsync`].
    fn fsync(&self, file: &File, all: bool) -> io::Result<()> {
        if self.fail_next_fsync.load(Ordering::Relaxed)
            && self.fail_next_fsync.swap(false, Ordering::Relaxed)
        {
            return Err(io::Error::other("fsync failed (injected by a test)"));
        }
        if all {
            file.sync_all()
        } else {
            file.sync_data()
        }
    }

    /// For tests (of this store and of what runs on it): the next fsync of a segment fails,
    /// once, and later ones go to the disk again. That is how Linux reports a writeback error:
    /// once, after which fsync succeeds though the pages may be gone; so what fails afterwards
    /// fails because the store remembers, as it must.
    #[doc(hidden)]
    pub fn fail_next_fsync(&self) {
        self.fail_next_fsync.store(true, Ordering::Relaxed);
    }

    /// The error for anything that would vouch for written data after an fsync failed.
    fn refuse_after_sync_failure(&self) -> StoreResult<()> {
        match self.sync_failure.lock().clone() {
            None => Ok(()),
            Some(why) => Err(StoreError::Io(io::Error::other(format!(
                "an earlier fsync failed ({why}); written data may not be on disk, so no later \
                 sync can vouch for it: restart the node"
            )))),
        }
    }

    /// The error for writing on after a write failure that could not be undone.
    fn refuse_if_broken(w: &Writer) -> StoreResult<()> {
        match &w.broken {
            None => Ok(()),
            Some(why) => Err(StoreError::Io(io::Error::other(why.clone()))),
        }
    }

    /// Withdraws the clean-stop marker before a write after `mark_clean_stop` (see the
    /// durability rule). A no-op (one atomic load) otherwise.
    fn withdraw_clean_stop(&self) -> StoreResult<()> {
        if !self.clean_marked.load(Ordering::Acquire) {
            return Ok(());
        }
        match fs::remove_file(self.dir.join(CLEAN_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        segment::sync_dir(&self.dir)?;
        self.clean_marked.store(false, Ordering::Release);
        Ok(())
    }

    /// Each removed key with its id, read from the record only where the location's has-id
    /// bit says there is one.
    fn removed_ids(&self, held: &[(u64, Loc)]) -> StoreResult<Vec<(u64, Option<Bytes>)>> {
        let mut reader = RecordReader::new(64 << 10);
        let mut out = Vec::with_capacity(held.len());
        for &(key, loc) in held {
            if !loc.has_id() {
                out.push((key, None));
                continue;
            }
            let file = self.segment_file(loc.segment())?;
            let rec = reader.read(&file, loc, &self.dir)?;
            check_key(&self.dir, loc, key, &rec)?;
            let Some(id) = rec.id else {
                return Err(StoreError::Corrupt(format!(
                    "the index says key {key} has an id but its record has none"
                )));
            };
            out.push((key, Some(Bytes::copy_from_slice(id))));
        }
        Ok(out)
    }

    fn note_sync_failure(&self, e: &io::Error) {
        let mut failure = self.sync_failure.lock();
        if failure.is_none() {
            *failure = Some(e.to_string());
        }
    }

    /// Writes `buf` (the encoded records `placed`: key, offset, has id) at the end of the
    /// active segment with one write, then publishes them to the index.
    fn flush(&self, w: &mut Writer, buf: &[u8], placed: &[(u64, u32, bool)]) -> StoreResult<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.zero_ahead(w, w.len + buf.len() as u64);
        if let Err(e) = w.file.write_all_at(buf, w.len) {
            // Part of the buffer may have reached the file; cut it so the next record starts
            // on a record boundary (the zeros ahead go with it).
            w.zeroed_to = w.len;
            if let Err(undo) = w.file.set_len(w.len) {
                w.broken = Some(format!(
                    "a write failed ({e}) and cutting it back failed too ({undo}); reopen the \
                     store to recover"
                ));
            }
            return Err(e.into());
        }
        w.len += buf.len() as u64;
        let mut shared = self.shared.write();
        for &(key, offset, has_id) in placed {
            if shared
                .index
                .insert(key, Loc::new(w.segment, offset, has_id))
                .is_err()
            {
                // put checked that no placed key is held, and nothing else inserts.
                return Err(StoreError::Corrupt(format!(
                    "key {key} was written twice (index out of step with the put checks)"
                )));
            }
        }
        self.contiguous
            .store(shared.index.contiguous(), Ordering::Release);
        self.aside
            .store(shared.index.aside_len(), Ordering::Release);
        Ok(())
    }

    /// Calls `f` with each visible entry's record from `from` on, in key order, until `f`
    /// returns `false` or `limit` entries were passed. Only records for which `want(loc)`
    /// holds are read.
    fn walk(
        &self,
        from: u64,
        chunk: usize,
        limit: usize,
        want: impl Fn(Loc) -> bool,
        mut f: impl FnMut(u64, &Record<'_>) -> bool,
    ) -> StoreResult<()> {
        let mut next = from.max(1);
        let mut left = limit as u64;
        let mut reader = RecordReader::new(chunk);
        let mut locs = Vec::with_capacity(READ_BATCH.min(limit));
        // Handles of the segments the current batch points into, cloned under the lock. A
        // batch spans one segment, rarely two: a short list beats hashing every location.
        let mut files: Vec<(u32, Arc<File>)> = Vec::new();
        while left > 0 {
            locs.clear();
            files.clear();
            {
                let shared = self.shared.read();
                let end = shared.index.contiguous();
                if next > end {
                    return Ok(());
                }
                let n = (end - next + 1).min(READ_BATCH as u64).min(left) as usize;
                let start = (next - 1) as usize;
                shared
                    .index
                    .visible()
                    .copy_range(start, start + n, &mut locs);
                for loc in locs.iter().filter(|l| want(**l)) {
                    if !files.iter().any(|(s, _)| *s == loc.segment()) {
                        files.push((
                            loc.segment(),
                            segment_handle(&shared, &self.dir, loc.segment())?,
                        ));
                    }
                }
            }
            for (i, &loc) in locs.iter().enumerate() {
                if !want(loc) {
                    continue;
                }
                let key = next + i as u64;
                let file = match files.iter().find(|(s, _)| *s == loc.segment()) {
                    Some((_, f)) => f,
                    None => return Err(missing_segment(&self.dir, loc.segment())),
                };
                let rec = reader.read(file, loc, &self.dir)?;
                check_key(&self.dir, loc, key, &rec)?;
                if !f(key, &rec) {
                    return Ok(());
                }
            }
            next += locs.len() as u64;
            left -= locs.len() as u64;
        }
        Ok(())
    }
}

impl LogStore for FileStore {
    fn contiguous_key(&self) -> u64 {
        self.contiguous.load(Ordering::Acquire)
    }

    fn held_aside(&self) -> usize {
        self.aside.load(Ordering::Acquire)
    }

    fn holds(&self, key: u64) -> bool {
        if key == 0 {
            return false;
        }
        key <= self.contiguous_key() || self.shared.read().index.get(key).is_some()
    }

    fn put(&self, entries: &[Entry]) -> StoreResult<usize> {
        let mut w = self.writer.lock();
        Self::refuse_if_broken(&w)?;
        // Where each entry's key is already held, looked up under one short lock. Only this
        // (serialised) writer changes the index, so the answers stay true for the whole call.
        let held: Vec<Option<Loc>> = {
            let shared = self.shared.read();
            entries.iter().map(|e| shared.index.get(e.key)).collect()
        };
        // Check everything before writing anything, in call order (like MemoryStore), so a
        // conflict or a bad entry stores nothing.
        let in_order = entries.windows(2).all(|p| p[0].key < p[1].key);
        let mut first_seen: HashMap<u64, usize> = HashMap::new();
        let mut fresh: Vec<&Entry> = Vec::with_capacity(entries.len());
        // A retried batch repeats many held entries, usually consecutive on disk: read ahead.
        let mut reader = RecordReader::new(64 << 10);
        for (i, e) in entries.iter().enumerate() {
            if e.key == 0 {
                return Err(StoreError::ZeroKey);
            }
            record::validate(&as_record(e)).map_err(|why| invalid_input(why.to_string()))?;
            if let Some(loc) = held[i] {
                let (id, value) = self.read_one(&mut reader, e.key, loc)?;
                if value != e.value || id != e.id {
                    return Err(StoreError::Conflict { key: e.key });
                }
                continue;
            }
            if !in_order {
                // The contract promises each key once per call; if not, treat a repeat like
                // a put of an already-held key.
                if let Some(&j) = first_seen.get(&e.key) {
                    if !entries[j].same_content(e) {
                        return Err(StoreError::Conflict { key: e.key });
                    }
                    continue;
                }
                first_seen.insert(e.key, i);
            }
            fresh.push(e);
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        self.withdraw_clean_stop()?;
        let mut stored = 0;

        // Encode into one buffer and write it with one write. The buffer is flushed early only
        // where the segment fills up (a record never spans segments) or past MAX_WRITE_BYTES
        // (so a huge call does not double its memory).
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        let mut placed: Vec<(u64, u32, bool)> = Vec::with_capacity(fresh.len());
        let mut result = Ok(());
        for e in &fresh {
            let rec = as_record(e);
            let len = rec.encoded_len() as u64;
            let end = w.len + buf.len() as u64;
            let roll = end > segment::HEADER_LEN && end + len > self.segment_bytes;
            if roll || (!buf.is_empty() && buf.len() as u64 + len > MAX_WRITE_BYTES) {
                result = self.flush(&mut w, &buf, &placed);
                stored += placed.len();
                buf.clear();
                placed.clear();
                if result.is_ok() && roll {
                    result = self.roll(&mut w);
                }
                if result.is_err() {
                    break;
                }
            }
            // A record starts below segment_bytes ≤ 2^32 (or right after the header).
            let offset = w.len + buf.len() as u64;
            let Ok(offset) = u32::try_from(offset) else {
                result = Err(invalid_input(format!("segment offset {offset} over 4 GiB")));
                break;
            };
            placed.push((e.key, offset, e.id.is_some()));
            if let Err(why) = record::encode(&rec, &mut buf) {
                result = Err(invalid_input(why.to_string()));
                break;
            }
        }
        if result.is_ok() {
            result = self.flush(&mut w, &buf, &placed);
            stored += placed.len();
        }
        // Keep the buffer for the next call unless one huge put inflated it.
        if buf.capacity() <= MAX_WRITE_BYTES as usize {
            w.buf = buf;
        }
        // On an I/O error the records flushed before it stay stored; the error is what the
        // caller needs (retrying the same call is safe: stored entries are no-ops).
        result.map(|()| stored)
    }

    fn sync(&self) -> StoreResult<()> {
        self.refuse_after_sync_failure()?;
        let file = Arc::clone(&self.sync_target.lock());
        self.fsync(&file, false).map_err(|e| {
            self.note_sync_failure(&e);
            StoreError::Io(e)
        })
    }

    fn read(&self, from: u64, max_entries: usize, max_bytes: usize) -> StoreResult<Vec<Entry>> {
        let mut out = Vec::new();
        if max_entries == 0 {
            return Ok(out);
        }
        // Reading ahead in chunks saves system calls for consecutive records; size the chunk
        // to what the call can return.
        let chunk = max_entries
            .saturating_mul(256)
            .min(max_bytes.saturating_add(4096))
            .clamp(4096, 1 << 20);
        let mut bytes = 0usize;
        self.walk(
            from,
            chunk,
            max_entries,
            |_| true,
            |key, rec| {
                if !out.is_empty() && bytes.saturating_add(rec.value.len()) > max_bytes {
                    return false;
                }
                bytes += rec.value.len();
                out.push(Entry {
                    key,
                    value: Bytes::copy_from_slice(rec.value),
                    id: rec.id.map(Bytes::copy_from_slice),
                });
                out.len() < max_entries
            },
        )?;
        Ok(out)
    }

    fn scan_ids(&self, from: u64, f: &mut dyn FnMut(&[u8], u64)) -> StoreResult<()> {
        let mut missing = None;
        self.walk(
            from,
            1 << 20,
            usize::MAX,
            Loc::has_id,
            |key, rec| match rec.id {
                Some(id) => {
                    f(id, key);
                    true
                }
                None => {
                    missing = Some(key);
                    false
                }
            },
        )?;
        match missing {
            Some(key) => Err(StoreError::Corrupt(format!(
                "the index says key {key} has an id but its record has none"
            ))),
            None => Ok(()),
        }
    }

    fn log_id(&self) -> Option<LogId> {
        *self.log_id.lock()
    }

    fn set_log_id(&self, id: LogId) -> StoreResult<()> {
        let mut have = self.log_id.lock();
        match *have {
            Some(h) if h == id => Ok(()),
            Some(h) => Err(StoreError::LogIdMismatch { have: h, want: id }),
            None => {
                write_log_id(&self.dir, id)?;
                *have = Some(id);
                Ok(())
            }
        }
    }

    fn epochs(&self) -> Epochs {
        self.epochs.read().clone()
    }

    fn set_epochs(&self, epochs: &Epochs) -> StoreResult<()> {
        self.refuse_after_sync_failure()?;
        check_epochs(epochs)?;
        let _one_at_a_time = self.epochs_write.lock();
        if *self.epochs.read() == *epochs {
            return Ok(());
        }
        self.withdraw_clean_stop()?;
        meta::write_epochs(&self.dir, epochs)?;
        *self.epochs.write() = epochs.clone();
        Ok(())
    }

    /// See the trait and the module docs (*Durability rule*): the steps are numbered as there.
    fn cut_from(&self, from_key: u64) -> StoreResult<Cut> {
        if from_key == 0 {
            return Err(StoreError::ZeroKey);
        }
        let mut w = self.writer.lock();
        // Only this (serialised) writer changes the index, so the list stays true until the
        // index is updated below.
        let held = self.shared.read().index.held_from(from_key);
        if held.is_empty() {
            return Ok(Cut {
                from_key,
                removed: Vec::new(),
            });
        }
        // 1. Nothing written after a failed fsync can be vouched for, a cut included.
        self.refuse_after_sync_failure()?;
        Self::refuse_if_broken(&w)?;
        // 2. What goes, with ids.
        let removed = self.removed_ids(&held)?;
        // 3. Everything before the end of the records becomes durable, so no torn-tail cut at
        //    a later open can reach below the position recorded next.
        if let Err(e) = self.fsync(&w.file, false) {
            self.note_sync_failure(&e);
            return Err(e.into());
        }
        // 4. Record the cut: the whole file replaced, durably.
        self.withdraw_clean_stop()?;
        let mut cuts = self.cuts.lock();
        let mut next = cuts.clone();
        next.push(CutMark {
            from_key,
            segment: w.segment,
            offset: w.len,
            entries: removed.len() as u64,
        });
        let tmp = meta::prepare_cuts(&self.dir, &next)?;
        if let Err(e) = meta::install(&self.dir, &tmp, CUTS_FILE) {
            // The rename may have happened: on disk the cut may hold while the index says it
            // does not. Writing on could store keys the next open voids; reopening settles it.
            w.broken = Some(format!(
                "recording the cut of keys ≥ {from_key} failed after writing it ({e}); whether \
                 it holds on disk is known only after the store is reopened"
            ));
            return Err(e.into());
        }
        *cuts = next;
        drop(cuts);
        // 5. Only now do the keys leave the index.
        let mut shared = self.shared.write();
        shared.index.remove_from(from_key);
        self.contiguous
            .store(shared.index.contiguous(), Ordering::Release);
        self.aside
            .store(shared.index.aside_len(), Ordering::Release);
        Ok(Cut { from_key, removed })
    }

    fn cuts(&self) -> Vec<CutRecord> {
        self.cuts
            .lock()
            .iter()
            .map(|c| CutRecord {
                from_key: c.from_key,
                entries: c.entries,
            })
            .collect()
    }

    fn last_stop_clean(&self) -> bool {
        self.last_stop_clean
    }

    fn mark_clean_stop(&self) -> StoreResult<()> {
        // Holding the writer (and the epochs writer) keeps every write out from the fsync to
        // the marker.
        let w = self.writer.lock();
        let _epochs = self.epochs_write.lock();
        Self::refuse_if_broken(&w)?;
        self.sync()?;
        File::create(self.dir.join(CLEAN_FILE))?.sync_all()?;
        segment::sync_dir(&self.dir)?;
        self.clean_marked.store(true, Ordering::Release);
        Ok(())
    }

    fn sync_failure(&self) -> Option<String> {
        self.sync_failure.lock().clone()
    }
}

fn as_record(e: &Entry) -> Record<'_> {
    Record {
        key: e.key,
        id: e.id.as_deref(),
        value: &e.value,
    }
}

fn invalid_input(msg: String) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

fn segment_handle(shared: &Shared, dir: &Path, n: u32) -> StoreResult<Arc<File>> {
    n.checked_sub(1)
        .and_then(|i| shared.segments.get(i as usize))
        .cloned()
        .ok_or_else(|| missing_segment(dir, n))
}

fn missing_segment(dir: &Path, n: u32) -> StoreError {
    StoreError::Corrupt(format!(
        "the index points into segment {n}, which {} does not have",
        dir.display()
    ))
}

fn check_key(dir: &Path, loc: Loc, key: u64, rec: &Record<'_>) -> StoreResult<()> {
    if rec.key == key {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "{} offset {}: expected key {key}, found key {}",
        dir.join(segment::file_name(loc.segment())).display(),
        loc.offset(),
        rec.key
    )))
}

/// Segments must be numbered 1..=n: a missing number is a lost segment.
fn check_numbering(dir: &Path, numbers: &[u32]) -> StoreResult<()> {
    for (i, &n) in numbers.iter().enumerate() {
        let expected = i as u64 + 1;
        if u64::from(n) != expected {
            return Err(StoreError::Corrupt(format!(
                "segment {} is missing from {} (found {} next): its records would be lost",
                segment::file_name(expected as u32),
                dir.display(),
                segment::file_name(n)
            )));
        }
        if n > MAX_SEGMENT {
            return Err(StoreError::Corrupt(format!(
                "segment number {n} is beyond the supported {MAX_SEGMENT}"
            )));
        }
    }
    Ok(())
}

/// How long opening waits for a held lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Takes the directory's exclusive lock, or explains who holds it.
///
/// A lock held briefly is waited for (up to [`LOCK_WAIT`]): a predecessor that is still
/// exiting, or a child process forked by another thread that has not reached `exec` yet (it
/// shares the lock's open file until then), lets go within moments. A second node on the same
/// directory holds it for good and is refused.
fn lock_dir(dir: &Path) -> StoreResult<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut held = file.try_lock();
    while matches!(held, Err(fs::TryLockError::WouldBlock)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        held = file.try_lock();
    }
    match held {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "data directory {} is in use by another process or store (lock file {} is held)",
                dir.display(),
                path.display()
            ),
        ))),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::Io(io::Error::new(
            e.kind(),
            format!("cannot lock {}: {e}", path.display()),
        ))),
    }
}

/// The log identity in `dir`, if one was bound. Never modifies anything.
/// Reads records at known locations, fetching a chunk at a time so that consecutive records
/// cost one system call.
struct RecordReader {
    buf: Vec<u8>,
    /// `buf` holds bytes `start..start + buf.len()` of segment `segment` (0 = nothing).
    segment: u32,
    start: u64,
    chunk: usize,
}

impl RecordReader {
    fn new(chunk: usize) -> Self {
        RecordReader {
            buf: Vec::new(),
            segment: 0,
            start: 0,
            chunk,
        }
    }

    /// Whether the buffer holds `len` bytes from `offset` of `segment`.
    fn covers(&self, segment: u32, offset: u64, len: usize) -> bool {
        self.segment == segment
            && offset >= self.start
            && offset + len as u64 <= self.start + self.buf.len() as u64
    }

    fn fill(&mut self, file: &File, segment: u32, offset: u64, len: usize) -> io::Result<()> {
        self.segment = 0;
        self.buf.resize(len, 0);
        let got = segment::read_at_most(file, &mut self.buf, offset)?;
        self.buf.truncate(got);
        self.segment = segment;
        self.start = offset;
        Ok(())
    }

    /// The record at `loc`, which the index says is whole. Anything else is corruption that
    /// happened after the store opened.
    fn read(&mut self, file: &File, loc: Loc, dir: &Path) -> StoreResult<Record<'_>> {
        let (seg, offset) = (loc.segment(), u64::from(loc.offset()));
        if !self.covers(seg, offset, record::HEADER_LEN) {
            self.fill(file, seg, offset, self.chunk.max(record::HEADER_LEN))?;
        }
        let at = (offset - self.start) as usize;
        if let RecordStatus::Torn { need } = record::decode(self.buf.get(at..).unwrap_or(&[]))
            && !self.covers(seg, offset, need)
        {
            // `decode` caps `need` at MAX_RECORD_LEN, so a damaged length cannot make this
            // allocate more than that.
            self.fill(file, seg, offset, need.max(self.chunk))?;
        }
        let at = (offset - self.start) as usize;
        match record::decode(self.buf.get(at..).unwrap_or(&[])) {
            RecordStatus::Valid(rec) => Ok(rec),
            other => Err(StoreError::Corrupt(format!(
                "{} offset {offset}: {other:?}, but the record was whole when the store opened",
                dir.join(segment::file_name(seg)).display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
