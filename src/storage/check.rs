//! [`check`]: an offline, read-only inspection of a data directory (`replog check`).
//!
//! It runs the same scan as [`super::file::FileStore::open`] (every record read and its
//! checksum verified, the key index rebuilt) but changes nothing: no lock file is created, no
//! tail is cut, no temporary file is deleted. Instead it reports what `open` would do:
//!
//! * **fatal** problems make `open` refuse the directory (damage in a sealed segment, a missing
//!   segment, a bad segment header, a key stored twice, an unreadable `log_id`, `epochs` or
//!   `cuts`);
//! * **repairable** ones `open` fixes by itself (a damaged tail of the last segment, which it
//!   cuts; leftover `*.tmp` files, which it deletes; a cut recorded beyond the end of the
//!   records, which it moves back to the end);
//! * **gaps** are not problems: they are the holes before entries held aside, normal on a
//!   secondary whose replication requests arrived out of order;
//! * nor are zeros after the last record of the last segment: room written ahead for new
//!   records (`fsync = "always"`), which `open` keeps;
//! * nor are **void records**, the ones a later cut removed: the same rule as `open`'s (see
//!   `super::file`, *Recovery rule*) skips them, so they are neither served nor duplicates.
//!   They are counted, and the report lists the epochs, every cut and the clean-stop marker.
//!
//! If a running node holds the directory, the report says so: its last segment may be growing
//! while it is read, so a "torn" tail can be a write in progress.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::index::{Index, Loc};
use super::meta::{self, CutMark, VoidRule};
use super::meta::{CLEAN_FILE, LOCK_FILE, REPLACED_FILES, read_log_id};
use super::segment::{self, Damage, DamageAt};
use super::{Epochs, LogId, StoreResult};

/// How many gaps and duplicate keys a report lists (it counts all of them).
const MAX_LISTED: usize = 20;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// `FileStore::open` fixes it by itself (and says so in its report).
    Repairable,
    /// `FileStore::open` refuses the directory until a person decides.
    Fatal,
}

/// One thing wrong with the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub what: String,
}

/// One segment file as found.
#[derive(Clone, Debug)]
pub struct SegmentReport {
    pub path: PathBuf,
    /// The file's length.
    pub bytes: u64,
    /// Valid records before any damage (void ones included).
    pub records: u64,
    /// How many of them are void (removed by a later cut).
    pub void_records: u64,
    /// Smallest and largest key among those records.
    pub keys: Option<(u64, u64)>,
    /// The first damaged spot, if any.
    pub damage: Option<DamageAt>,
    /// Zero bytes after the last record of the last segment: room for new records.
    pub zeros_ahead: u64,
}

/// What [`check`] found; `Display` prints it for people.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub dir: PathBuf,
    /// Another process (a running node) holds the directory's lock.
    pub in_use: bool,
    /// The log identity, if bound and readable.
    pub log_id: Option<LogId>,
    /// The epoch and history, if readable (`Epochs::default()` when there is no file).
    pub epochs: Option<Epochs>,
    /// The cuts recorded, oldest first (none if the file is unreadable).
    pub cuts: Vec<CutMark>,
    /// How many cuts lie beyond the end of the records (`open` moves them back to it).
    pub cuts_beyond_end: usize,
    /// The clean-stop marker is there: the last stop was clean (unless a node is running).
    pub clean_marker: bool,
    pub segments: Vec<SegmentReport>,
    /// Valid records in all segments (before any damage) that are held: not void.
    pub records: u64,
    /// Valid records skipped as void (removed by a later cut).
    pub void_records: u64,
    /// The end of the visible log `open` would serve.
    pub contiguous_key: u64,
    /// Entries beyond the first hole.
    pub held_aside: usize,
    /// The holes before entries held aside, as inclusive key ranges (the first 20).
    pub gaps: Vec<(u64, u64)>,
    /// How many holes there are in all.
    pub gap_count: usize,
    /// How many keys the holes miss in all.
    pub missing_keys: u64,
    /// Everything wrong, fatal first.
    pub problems: Vec<Problem>,
    pub elapsed: Duration,
}

impl CheckReport {
    /// Nothing to repair and nothing fatal.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// `FileStore::open` would accept the directory (possibly after repairing it).
    pub fn would_open(&self) -> bool {
        self.problems.iter().all(|p| p.severity != Severity::Fatal)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data directory: {}", self.dir.display())?;
        if self.in_use {
            writeln!(
                f,
                "  note: a running node holds this directory; its last segment may be changing"
            )?;
        }
        match self.log_id {
            Some(id) => writeln!(f, "log id: {id}")?,
            None => writeln!(f, "log id: none")?,
        }
        match &self.epochs {
            Some(e) => writeln!(f, "epochs: current {}; {}", e.current, e.history)?,
            None => writeln!(f, "epochs: unreadable")?,
        }
        writeln!(
            f,
            "clean-stop marker: {}",
            if self.clean_marker {
                "present (the last stop was clean)"
            } else {
                "absent"
            }
        )?;
        writeln!(f, "cuts: {}", self.cuts.len())?;
        for c in &self.cuts {
            writeln!(
                f,
                "  from key {}: {} entries, records before {} offset {}",
                c.from_key,
                c.entries,
                segment::file_name(c.segment),
                c.offset
            )?;
        }
        writeln!(f, "segments: {}", self.segments.len())?;
        for s in &self.segments {
            let name = s.path.file_name().map_or_else(
                || s.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            write!(f, "  {name}: {} bytes, {} records", s.bytes, s.records)?;
            if s.void_records > 0 {
                write!(f, " ({} void)", s.void_records)?;
            }
            if let Some((lo, hi)) = s.keys {
                write!(f, ", keys {lo}..={hi}")?;
            }
            if s.zeros_ahead > 0 {
                write!(f, " then {} zero bytes of room", s.zeros_ahead)?;
            }
            match &s.damage {
                Some(d) => writeln!(f, ", DAMAGED: {} at offset {}", d.damage, d.offset)?,
                None => writeln!(f, ", ok")?,
            }
        }
        writeln!(f, "records: {}", self.records)?;
        if self.void_records > 0 {
            writeln!(f, "void records: {} (removed by cuts)", self.void_records)?;
        }
        writeln!(f, "visible log: keys 1..={}", self.contiguous_key)?;
        writeln!(f, "held aside: {}", self.held_aside)?;
        if self.gap_count > 0 {
            write!(
                f,
                "gaps: {} ({} missing keys):",
                self.gap_count, self.missing_keys
            )?;
            for (lo, hi) in &self.gaps {
                if lo == hi {
                    write!(f, " {lo}")?;
                } else {
                    write!(f, " {lo}..={hi}")?;
                }
            }
            if self.gap_count > self.gaps.len() {
                write!(f, " …")?;
            }
            writeln!(f)?;
        }
        if self.problems.is_empty() {
            writeln!(f, "result: OK")?;
        } else {
            for p in &self.problems {
                let tag = match p.severity {
                    Severity::Fatal => "FATAL",
                    Severity::Repairable => "repairable",
                };
                writeln!(f, "{tag}: {}", p.what)?;
            }
            if self.would_open() {
                writeln!(
                    f,
                    "result: damaged; opening the store will repair it as above"
                )?;
            } else {
                writeln!(f, "result: FATAL; the store will refuse to open")?;
            }
        }
        write!(f, "checked in {} ms", self.elapsed.as_millis())
    }
}

/// Verifies the data directory `dir` without modifying it; see the module docs.
///
/// Errors only when the directory cannot be read at all; everything found wrong in it is in
/// the report.
pub fn check(dir: &Path) -> StoreResult<CheckReport> {
    let started = Instant::now();
    let mut problems = Vec::new();
    let fatal = |what: String| Problem {
        severity: Severity::Fatal,
        what,
    };

    let in_use = match File::open(dir.join(LOCK_FILE)) {
        Ok(lock) => matches!(lock.try_lock_shared(), Err(fs::TryLockError::WouldBlock)),
        Err(_) => false,
    };

    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = name.strip_suffix(segment::TMP_SUFFIX)
            && (REPLACED_FILES.contains(&base) || segment::parse_file_name(base).is_some())
        {
            problems.push(Problem {
                severity: Severity::Repairable,
                what: format!(
                    "leftover temporary file {} (an interrupted write; open deletes it)",
                    entry.path().display()
                ),
            });
        } else if let Some(n) = segment::parse_file_name(name) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    // Segments are numbered 1..=n; a missing number is a lost segment.
    for (i, &n) in numbers.iter().enumerate() {
        let want = if i == 0 {
            1
        } else {
            u64::from(numbers[i - 1]) + 1
        };
        if u64::from(n) != want {
            problems.push(fatal(format!(
                "segments {}..={} are missing",
                segment::file_name(want as u32),
                segment::file_name(n - 1)
            )));
        }
    }

    let log_id = match read_log_id(dir) {
        Ok(id) => id,
        Err(e) => {
            problems.push(fatal(format!("log id: {e}")));
            None
        }
    };
    let epochs = match meta::read_epochs(dir) {
        Ok(e) => Some(e),
        Err(e) => {
            problems.push(fatal(format!("epochs: {e}")));
            None
        }
    };
    let cuts = match meta::read_cuts(dir) {
        Ok(c) => c,
        Err(e) => {
            problems.push(fatal(format!("cuts: {e}")));
            Vec::new()
        }
    };
    let void = VoidRule::new(&cuts);
    let clean_marker = fs::symlink_metadata(dir.join(CLEAN_FILE)).is_ok();

    let mut index = Index::default();
    let mut duplicates = 0u64;
    let mut records = 0u64;
    let mut void_records = 0u64;
    let mut end = (1, segment::HEADER_LEN);
    let mut segments = Vec::with_capacity(numbers.len());
    for (i, &n) in numbers.iter().enumerate() {
        let path = dir.join(segment::file_name(n));
        let last = i + 1 == numbers.len();
        let file = OpenOptions::new().read(true).open(&path)?;
        let mut keys: Option<(u64, u64)> = None;
        let mut void_here = 0u64;
        let scan = segment::scan::<io::Error>(&file, &path, n, |s| {
            let key = s.record.key;
            keys = Some(keys.map_or((key, key), |(lo, hi)| (lo.min(key), hi.max(key))));
            if void.is_void(key, (n, u64::from(s.offset))) {
                void_here += 1;
                return Ok(());
            }
            let loc = Loc::new(n, s.offset, s.record.id.is_some());
            if let Err(earlier) = index.insert(key, loc) {
                duplicates += 1;
                if duplicates <= MAX_LISTED as u64 {
                    problems.push(fatal(format!(
                        "key {key} is stored twice: in {} at offset {} and in {} at offset {}",
                        segment::file_name(earlier.segment()),
                        earlier.offset(),
                        segment::file_name(n),
                        s.offset
                    )));
                }
            }
            Ok(())
        })?;
        records += scan.records - void_here;
        void_records += void_here;
        if last {
            // Where `open` will have the records end: a damaged tail cut, a missing header
            // rewritten.
            end = (n, scan.valid_end.max(segment::HEADER_LEN));
        }
        // Zeros after the last record of the last segment are room for new records (see
        // `FileStore::open`), not damage.
        let mut scan = scan;
        let mut zeros_ahead = 0;
        if last
            && let Some(d) = &scan.damage
            && d.damage == Damage::ZeroFilled
        {
            zeros_ahead = d.bytes_to_end;
            scan.damage = None;
        }
        if let Some(d) = &scan.damage {
            let repairable = last && !matches!(d.damage, Damage::BadHeader(_));
            problems.push(Problem {
                severity: if repairable {
                    Severity::Repairable
                } else {
                    Severity::Fatal
                },
                what: if repairable {
                    format!("{d}: the damaged tail of the last segment; open cuts it")
                } else if last {
                    format!("{d}")
                } else {
                    format!("{d}: inside a sealed segment, so acknowledged data is damaged")
                },
            });
        }
        segments.push(SegmentReport {
            path,
            bytes: scan.file_len,
            records: scan.records,
            void_records: void_here,
            keys,
            damage: scan.damage,
            zeros_ahead,
        });
    }
    if duplicates > MAX_LISTED as u64 {
        problems.push(fatal(format!(
            "{} more keys are stored twice",
            duplicates - MAX_LISTED as u64
        )));
    }
    let cuts_beyond_end = cuts.iter().filter(|c| c.position() > end).count();
    if cuts_beyond_end > 0 {
        problems.push(Problem {
            severity: Severity::Repairable,
            what: format!(
                "{cuts_beyond_end} cuts lie beyond the end of the records ({} offset {}), which \
                 only a disk that lost synced data leaves; open moves them back to the end",
                segment::file_name(end.0),
                end.1
            ),
        });
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.severity));

    let mut gaps = Vec::new();
    let mut gap_count = 0;
    let mut missing_keys = 0u64;
    for (lo, hi) in index.gaps() {
        gap_count += 1;
        missing_keys += hi - lo + 1;
        if gaps.len() < MAX_LISTED {
            gaps.push((lo, hi));
        }
    }
    Ok(CheckReport {
        dir: dir.to_path_buf(),
        in_use,
        log_id,
        epochs,
        cuts,
        cuts_beyond_end,
        clean_marker,
        segments,
        records,
        void_records,
        contiguous_key: index.contiguous(),
        held_aside: index.aside_len(),
        gaps,
        gap_count,
        missing_keys,
        problems,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Entry;
    use crate::storage::LogStore;
    use crate::storage::file::{FileStore, FileStoreOptions};
    use bytes::Bytes;

    fn e(key: u64) -> Entry {
        Entry {
            key,
            value: Bytes::from(format!("message {key}")),
            id: None,
        }
    }

    fn lens(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_healthy_directory_checks_clean() {
        let d = tempfile::tempdir().unwrap();
        {
            let opts = FileStoreOptions {
                segment_bytes: 200,
                ..Default::default()
            };
            let (s, _) = FileStore::open(d.path(), opts).unwrap();
            s.put(&(1..=20).map(e).collect::<Vec<_>>()).unwrap();
            s.set_log_id(LogId(7)).unwrap();
            // Still open: check sees the lock.
            let r = check(d.path()).unwrap();
            assert!(r.in_use);
        }
        let r = check(d.path()).unwrap();
        assert!(r.is_clean(), "{r}");
        assert!(!r.in_use);
        assert_eq!((r.records, r.contiguous_key, r.held_aside), (20, 20, 0));
        assert!(r.segments.len() > 1);
        assert_eq!(r.log_id, Some(LogId(7)));
        assert!(r.to_string().contains("result: OK"), "{r}");
    }

    #[test]
    fn a_torn_tail_is_reported_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        {
            let (s, _) = FileStore::open(d.path(), FileStoreOptions::default()).unwrap();
            s.put(&(1..=5).map(e).collect::<Vec<_>>()).unwrap();
        }
        let seg = d.path().join(segment::file_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let before = lens(d.path());
        let r = check(d.path()).unwrap();
        assert_eq!(lens(d.path()), before, "check modified the directory");
        assert!(!r.is_clean() && r.would_open(), "{r}");
        assert_eq!((r.records, r.contiguous_key), (4, 4));
        let dmg = r.segments[0].damage.as_ref().unwrap();
        assert!(matches!(dmg.damage, Damage::Torn { .. }), "{r}");
        assert_eq!(dmg.bytes_to_end, len - 3 - dmg.offset);
        assert!(r.to_string().contains("repairable"), "{r}");
    }

    #[test]
    fn gaps_are_listed_and_not_problems() {
        let d = tempfile::tempdir().unwrap();
        {
            let (s, _) = FileStore::open(d.path(), FileStoreOptions::default()).unwrap();
            s.put(&[e(1), e(2), e(4), e(8)]).unwrap();
        }
        let r = check(d.path()).unwrap();
        assert!(r.is_clean(), "{r}");
        assert_eq!((r.contiguous_key, r.held_aside), (2, 2));
        assert_eq!(r.gaps, vec![(3, 3), (5, 7)]);
        assert_eq!((r.gap_count, r.missing_keys), (2, 4));
        assert!(
            r.to_string().contains("gaps: 2 (4 missing keys): 3 5..=7"),
            "{r}"
        );
    }

    #[test]
    fn void_records_are_skipped_and_epochs_cuts_and_the_marker_reported() {
        let d = tempfile::tempdir().unwrap();
        let h = crate::domain::epoch::History::from_pairs(vec![(1, 1), (2, 6)]).unwrap();
        {
            let opts = FileStoreOptions {
                segment_bytes: 200,
                ..Default::default()
            };
            let (s, _) = FileStore::open(d.path(), opts).unwrap();
            s.put(&(1..=8).map(e).collect::<Vec<_>>()).unwrap();
            s.put(&[e(11)]).unwrap();
            s.cut_from(6).unwrap();
            // Keys 6 and 7 again, after the cut: not the same key twice.
            s.put(&[e(6), e(7)]).unwrap();
            s.set_epochs(&Epochs {
                current: 3,
                history: h.clone(),
                ..Default::default()
            })
            .unwrap();
            s.mark_clean_stop().unwrap();
        }
        let before = lens(d.path());
        let r = check(d.path()).unwrap();
        assert_eq!(lens(d.path()), before, "check modified the directory");
        assert!(r.is_clean(), "{r}");
        assert_eq!((r.records, r.void_records), (7, 4), "{r}");
        assert_eq!((r.contiguous_key, r.held_aside), (7, 0), "{r}");
        assert_eq!(
            r.segments.iter().map(|s| s.void_records).sum::<u64>(),
            4,
            "{r}"
        );
        assert_eq!(
            r.epochs,
            Some(Epochs {
                current: 3,
                history: h,
                ..Default::default()
            })
        );
        assert_eq!(r.cuts.len(), 1);
        assert_eq!((r.cuts[0].from_key, r.cuts[0].entries), (6, 4));
        assert!(r.clean_marker && r.cuts_beyond_end == 0);
        let text = r.to_string();
        for want in [
            "epochs: current 3; epoch 1 from key 1, epoch 2 from key 6",
            "cuts: 1",
            "from key 6: 4 entries, records before 0000000",
            "void records: 4",
            "clean-stop marker: present",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn unreadable_epochs_or_cuts_are_fatal_and_their_leftover_tmp_files_repairable() {
        let d = tempfile::tempdir().unwrap();
        {
            let (s, _) = FileStore::open(d.path(), FileStoreOptions::default()).unwrap();
            s.put(&[e(1)]).unwrap();
        }
        fs::write(d.path().join("epochs.tmp"), b"half").unwrap();
        fs::write(d.path().join("cuts.tmp"), b"half").unwrap();
        let r = check(d.path()).unwrap();
        assert!(!r.is_clean() && r.would_open(), "{r}");
        assert_eq!(r.problems.len(), 2, "{r}");
        fs::write(d.path().join("epochs"), b"current 1\n").unwrap();
        fs::write(d.path().join("cuts"), b"from_key 1\n").unwrap();
        let r = check(d.path()).unwrap();
        assert!(!r.would_open(), "{r}");
        let text = r.to_string();
        assert!(
            text.contains("FATAL: epochs:") && text.contains("FATAL: cuts:"),
            "{text}"
        );
        assert!(text.contains("epochs: unreadable"), "{text}");
    }

    #[test]
    fn damage_in_a_sealed_segment_and_a_missing_segment_are_fatal() {
        let d = tempfile::tempdir().unwrap();
        {
            let opts = FileStoreOptions {
                segment_bytes: 200,
                ..Default::default()
            };
            let (s, _) = FileStore::open(d.path(), opts).unwrap();
            s.put(&(1..=30).map(e).collect::<Vec<_>>()).unwrap();
        }
        let seg1 = d.path().join(segment::file_name(1));
        let mut bytes = fs::read(&seg1).unwrap();
        bytes[40] ^= 1;
        fs::write(&seg1, &bytes).unwrap();
        let r = check(d.path()).unwrap();
        assert!(!r.would_open(), "{r}");
        assert!(r.problems[0].what.contains("sealed segment"), "{r}");

        fs::remove_file(d.path().join(segment::file_name(2))).unwrap();
        let r = check(d.path()).unwrap();
        assert!(r.problems.iter().any(|p| p.what.contains("missing")), "{r}");
    }
}
