//! Segment files: naming, the 16-byte header, creation, and the record-by-record scan that both
//! recovery ([`super::file`]) and the offline check ([`super::check`]) are built on.
//!
//! A segment is `NNNNNNNNNN.seg`, its number (1, 2, 3, … in creation order, zero-padded to ten
//! digits so names sort like numbers), holding a header then whole records back to back:
//!
//! ```text
//! offset  size  field    meaning
//!      0     8  magic    b"RPLOGSEG"
//!      8     4  version  u32 LE, the record format version: 1 (see super::record)
//!     12     4  number   u32 LE, the segment number, equal to the one in the file name
//!     16     …  records
//! ```
//!
//! Invariants this module provides:
//! * A `.seg` file always has a complete, durable header: [`create`] writes it to
//!   `NNNNNNNNNN.seg.tmp`, fsyncs, renames, and fsyncs the directory. A crash leaves at worst a
//!   `.tmp` file, which recovery deletes.
//! * [`scan`] only reads. It walks the records from the header on, calls back for each valid
//!   one, and stops at the first damaged spot, describing it ([`DamageAt`]); deciding what to do
//!   about the damage (cut or refuse) is the caller's business.
//! * Scanning never panics and never allocates more than the file can hold: a record's length
//!   is checked against the bytes left in the file before any buffer grows to it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, RecordStatus};

/// Bytes before the first record of a segment.
pub const HEADER_LEN: u64 = 16;

const MAGIC: [u8; 8] = *b"RPLOGSEG";
/// Version of the record format in this segment.
pub const FORMAT_VERSION: u32 = 1;

/// The suffix of segment files.
pub const SUFFIX: &str = ".seg";
/// The suffix of files written before being renamed into place.
pub const TMP_SUFFIX: &str = ".tmp";

/// How much recovery and `check` read per system call.
const SCAN_CHUNK: usize = 4 << 20;

/// The file name of segment `number`.
pub fn file_name(number: u32) -> String {
    format!("{number:010}{SUFFIX}")
}

/// The segment number in a file name like `0000000042.seg`; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of segment `number`.
pub fn header(number: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&number.to_le_bytes());
    h
}

/// Checks a segment header; the error says what is wrong with it.
pub fn check_header(h: &[u8; HEADER_LEN as usize], number: u32) -> Result<(), String> {
    if h[..8] != MAGIC {
        return Err("not a replog segment (bad magic)".into());
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "segment format version {version}, this build reads version {FORMAT_VERSION}"
        ));
    }
    let in_header = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if in_header != number {
        return Err(format!(
            "header says segment {in_header} but the file is named as segment {number}"
        ));
    }
    Ok(())
}

/// Creates segment `number` in `dir` with its header, durably (file and directory entry), and
/// returns it open for reading and writing. Fails if the segment exists.
pub fn create(dir: &Path, number: u32) -> io::Result<File> {
    let path = dir.join(file_name(number));
    if path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("segment {} already exists", path.display()),
        ));
    }
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", file_name(number)));
    let mut renamed = false;
    let result = (|| {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all_at(&header(number), 0)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        renamed = true;
        sync_dir(dir)?;
        Ok(file)
    })();
    if result.is_err() {
        // Leave nothing half-made behind, so that a retry can create the segment again. The
        // new file holds only a header and nothing points into it yet.
        let _ = fs::remove_file(if renamed { &path } else { &tmp });
    }
    result
}

/// Makes the directory's entries (creations, renames, deletions) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads up to `buf.len()` bytes at `offset`, fewer only at the end of the file. Returns how
/// many were read.
pub fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// What is wrong at the place where a scan stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file is shorter than a segment header.
    ShortHeader,
    /// The header is complete but wrong.
    BadHeader(String),
    /// The file ends inside a record: `need` bytes from its start, `have` left in the file.
    Torn { need: u64, have: u64 },
    /// A whole record whose checksum does not match.
    Corrupted { calculated: u32, actual: u32 },
    /// A record header no writer produces.
    Malformed(&'static str),
    /// Only zero bytes from here to the end of the file: space a crash left allocated but
    /// unwritten.
    ZeroFilled,
    /// A valid record sits at an offset the in-memory index cannot express (over 4 GiB).
    OffsetTooLarge,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::ShortHeader => write!(f, "file shorter than the {HEADER_LEN}-byte header"),
            Damage::BadHeader(why) => write!(f, "bad segment header: {why}"),
            Damage::Torn { need, have } => write!(
                f,
                "torn record: it needs {need} bytes but the file ends {have} bytes after its start"
            ),
            Damage::Corrupted { calculated, actual } => write!(
                f,
                "checksum mismatch: stored {actual:#010x}, computed {calculated:#010x}"
            ),
            Damage::Malformed(why) => write!(f, "malformed record header: {why}"),
            Damage::ZeroFilled => write!(f, "zero-filled tail"),
            Damage::OffsetTooLarge => write!(f, "record offset beyond 4 GiB"),
        }
    }
}

/// Where and how a segment is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamageAt {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the first damaged byte (the start of the bad record, or 0 for a header).
    pub offset: u64,
    /// What is wrong there.
    pub damage: Damage,
    /// Bytes from `offset` to the end of the file: what cutting the damage removes.
    pub bytes_to_end: u64,
    /// Valid-looking records found between the damage and the end of the file. A torn write
    /// leaves none (or, after a power loss, unsynced ones); a non-zero count on a synced log
    /// means cutting would drop intact data.
    pub intact_records_after: u64,
}

impl fmt::Display for DamageAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {} of {} ({} bytes to the end of the file",
            self.damage,
            self.offset,
            self.path.display(),
            self.bytes_to_end
        )?;
        if self.intact_records_after > 0 {
            write!(
                f,
                ", {} intact-looking records after it",
                self.intact_records_after
            )?;
        }
        write!(f, ")")
    }
}

/// One valid record met by [`scan`].
#[derive(Clone, Copy, Debug)]
pub struct Scanned<'a> {
    /// Its offset in the segment (always < 2³²).
    pub offset: u32,
    /// Its bytes on disk.
    pub len: u32,
    /// Its contents.
    pub record: record::Record<'a>,
}

/// The result of scanning one segment.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The file's length when the scan started.
    pub file_len: u64,
    /// Where the valid records end: the file length when the segment is whole, the damage
    /// offset otherwise.
    pub valid_end: u64,
    /// Valid records seen.
    pub records: u64,
    /// The first damaged spot, if any. Nothing after it was reported to the callback.
    pub damage: Option<DamageAt>,
}

/// Scans segment `number` (open as `file`, named `path` in messages), calling `on_record` for
/// every valid record in file order until the end or the first damage. Only reads.
///
/// Errors are I/O errors and whatever `on_record` returns; damage is not an error here.
pub fn scan<E: From<io::Error>>(
    file: &File,
    path: &Path,
    number: u32,
    mut on_record: impl FnMut(Scanned<'_>) -> Result<(), E>,
) -> Result<Scan, E> {
    let file_len = file.metadata()?.len();
    let damaged = |offset: u64, damage: Damage, intact: u64| DamageAt {
        path: path.to_path_buf(),
        offset,
        damage,
        bytes_to_end: file_len - offset,
        intact_records_after: intact,
    };
    let mut h = [0u8; HEADER_LEN as usize];
    if read_at_most(file, &mut h, 0)? < h.len() {
        return Ok(Scan {
            file_len,
            valid_end: 0,
            records: 0,
            damage: Some(damaged(0, Damage::ShortHeader, 0)),
        });
    }
    if let Err(why) = check_header(&h, number) {
        return Ok(Scan {
            file_len,
            valid_end: 0,
            records: 0,
            damage: Some(damaged(0, Damage::BadHeader(why), 0)),
        });
    }

    let mut buf: Vec<u8> = Vec::new();
    // `buf` holds the file's bytes from `buf_start` on.
    let mut buf_start = HEADER_LEN;
    let mut offset = HEADER_LEN;
    let mut records = 0u64;
    let damage = loop {
        if offset >= file_len {
            break None;
        }
        let at = (offset - buf_start) as usize;
        match record::decode(buf.get(at..).unwrap_or(&[])) {
            RecordStatus::Valid(rec) => {
                let Ok(off32) = u32::try_from(offset) else {
                    break Some(Damage::OffsetTooLarge);
                };
                let len = rec.encoded_len();
                on_record(Scanned {
                    offset: off32,
                    len: len as u32,
                    record: rec,
                })?;
                records += 1;
                offset += len as u64;
            }
            RecordStatus::Torn { need } => {
                let left = file_len - offset;
                if need as u64 > left {
                    break Some(Damage::Torn {
                        need: need as u64,
                        have: left,
                    });
                }
                // The record is in the file but not in the buffer: read on from its start.
                // `need ≤ left`, so the buffer never grows past what the file holds.
                let want = (SCAN_CHUNK as u64).max(need as u64).min(left) as usize;
                buf.resize(want, 0);
                let got = read_at_most(file, &mut buf, offset)?;
                buf.truncate(got);
                buf_start = offset;
                if got < need {
                    // The file shrank under us (only possible in `check` on a live dir).
                    break Some(Damage::Torn {
                        need: need as u64,
                        have: got as u64,
                    });
                }
            }
            RecordStatus::Corrupted { calculated, actual } => {
                break Some(Damage::Corrupted { calculated, actual });
            }
            RecordStatus::Malformed(why) => break Some(Damage::Malformed(why)),
        }
    };
    let damage = match damage {
        None => None,
        Some(d) => {
            let (d, intact) = examine_rest(file, offset, file_len, d)?;
            Some(damaged(offset, d, intact))
        }
    };
    Ok(Scan {
        file_len,
        valid_end: offset,
        records,
        damage,
    })
}

/// Looks at the bytes from a damaged spot to the end of the file: all zero (a crash artifact,
/// reported as [`Damage::ZeroFilled`]), or how many intact records can still be found there by
/// trying every byte offset. Costs one read of the rest of the segment; only runs on damage.
fn examine_rest(
    file: &File,
    from: u64,
    file_len: u64,
    damage: Damage,
) -> io::Result<(Damage, u64)> {
    let len = file_len - from;
    // A segment is at most a few GiB; reading the rest of a damaged one in chunks keeps memory
    // bounded while checking for zeros.
    let mut all_zero = true;
    let mut pos = from;
    let mut chunk = vec![0u8; SCAN_CHUNK.min(len as usize)];
    while pos < file_len && all_zero {
        let got = read_at_most(file, &mut chunk, pos)?;
        if got == 0 {
            break;
        }
        all_zero = chunk[..got].iter().all(|&b| b == 0);
        pos += got as u64;
    }
    if all_zero {
        return Ok((Damage::ZeroFilled, 0));
    }
    // Search for intact records after the damage. Candidates must pass the header checks
    // before any checksum is computed, so garbage is skipped cheaply.
    let mut intact = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = from + 1;
    let mut offset = from + 1;
    while offset < file_len {
        let at = (offset - buf_start) as usize;
        match record::decode(buf.get(at..).unwrap_or(&[])) {
            RecordStatus::Valid(rec) => {
                intact += 1;
                offset += rec.encoded_len() as u64;
            }
            RecordStatus::Torn { need } if (need as u64) <= file_len - offset => {
                let want = (SCAN_CHUNK as u64).max(need as u64).min(file_len - offset) as usize;
                buf.resize(want, 0);
                let got = read_at_most(file, &mut buf, offset)?;
                buf.truncate(got);
                buf_start = offset;
                if got < need {
                    break;
                }
            }
            _ => offset += 1,
        }
    }
    Ok((damage, intact))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::Record;

    fn write_segment(dir: &Path, n: u32, keys: std::ops::RangeInclusive<u64>) -> (PathBuf, File) {
        let f = create(dir, n).unwrap();
        let mut buf = Vec::new();
        for k in keys {
            record::encode(
                &Record {
                    key: k,
                    id: None,
                    value: format!("value {k}").as_bytes(),
                },
                &mut buf,
            )
            .unwrap();
        }
        f.write_all_at(&buf, HEADER_LEN).unwrap();
        (dir.join(file_name(n)), f)
    }

    fn keys_of(f: &File, path: &Path, n: u32) -> (Vec<u64>, Scan) {
        let mut keys = Vec::new();
        let scan = scan::<io::Error>(f, path, n, |s| {
            keys.push(s.record.key);
            Ok(())
        })
        .unwrap();
        (keys, scan)
    }

    #[test]
    fn names_sort_like_numbers_and_parse_back() {
        assert_eq!(file_name(42), "0000000042.seg");
        assert_eq!(parse_file_name("0000000042.seg"), Some(42));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000042.seg.tmp"), None);
        assert_eq!(parse_file_name("000000004x.seg"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn create_leaves_no_tmp_and_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        create(d.path(), 1).unwrap();
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["0000000001.seg"]);
        assert!(create(d.path(), 1).is_err());
    }

    #[test]
    fn a_whole_segment_scans_clean() {
        let d = tempfile::tempdir().unwrap();
        let (p, f) = write_segment(d.path(), 1, 1..=100);
        let (keys, s) = keys_of(&f, &p, 1);
        assert_eq!(keys, (1..=100).collect::<Vec<_>>());
        assert!(s.damage.is_none());
        assert_eq!(s.valid_end, s.file_len);
    }

    #[test]
    fn header_problems_are_damage_at_offset_zero() {
        let d = tempfile::tempdir().unwrap();
        let (p, f) = write_segment(d.path(), 1, 1..=3);
        let (_, s) = keys_of(&f, &p, 2);
        assert!(matches!(
            s.damage.unwrap().damage,
            Damage::BadHeader(ref w) if w.contains("segment 1")
        ));
        f.set_len(7).unwrap();
        let (_, s) = keys_of(&f, &p, 1);
        assert_eq!(s.damage.unwrap().damage, Damage::ShortHeader);
    }

    #[test]
    fn damage_in_the_middle_counts_the_intact_records_after_it() {
        let d = tempfile::tempdir().unwrap();
        let (p, f) = write_segment(d.path(), 1, 1..=10);
        // Flip a byte in the value of record 4 (every record here is 20 + 7 bytes).
        let rec_len = 27u64;
        let off = HEADER_LEN + 3 * rec_len + 22;
        let mut b = [0u8];
        f.read_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], off).unwrap();
        let (keys, s) = keys_of(&f, &p, 1);
        assert_eq!(keys, vec![1, 2, 3]);
        let dmg = s.damage.unwrap();
        assert_eq!(dmg.offset, HEADER_LEN + 3 * rec_len);
        assert!(matches!(dmg.damage, Damage::Corrupted { .. }));
        assert_eq!(dmg.intact_records_after, 6);
        assert_eq!(dmg.bytes_to_end, s.file_len - dmg.offset);
        assert_eq!(
            dmg.bytes_to_end,
            7 * rec_len + 1,
            "\"value 10\" is one byte longer"
        );
    }

    #[test]
    fn zeros_after_the_last_record_are_zero_filled() {
        let d = tempfile::tempdir().unwrap();
        let (p, f) = write_segment(d.path(), 1, 1..=3);
        let len = f.metadata().unwrap().len();
        f.set_len(len + 4096).unwrap();
        let (keys, s) = keys_of(&f, &p, 1);
        assert_eq!(keys, vec![1, 2, 3]);
        let dmg = s.damage.unwrap();
        assert_eq!(dmg.damage, Damage::ZeroFilled);
        assert_eq!((dmg.offset, dmg.bytes_to_end), (len, 4096));
    }
}
