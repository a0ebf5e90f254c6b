//! The small files a [`super::file::FileStore`] keeps beside its segments: `epochs` (the node's
//! epoch and history) and `cuts` (every cut, with its log position), their text formats, how
//! they are replaced on disk, and the rule that makes records void after a cut.
//!
//! Both files are documented (bytes and meaning) in [`super::file`]'s module docs, *Files in
//! the data directory*. What this module guarantees:
//!
//! * **Replaced whole, atomically** ([`replace`]): the new contents go to `<name>.tmp`, which
//!   is fsynced, renamed over `<name>`, and the directory fsynced. A crash leaves the old file
//!   or the new one, never a mix (at worst a `.tmp` file, which `open` deletes).
//! * **Checksummed** like `log_id`: the last line is `crc32c <8 hex digits>`, the CRC32C of
//!   every byte before that line. Reading refuses a file whose checksum, syntax or values are
//!   wrong, naming the file and what is wrong ([`StoreError::Corrupt`]); a missing file means
//!   "none yet" (no epochs, no cuts). Nothing read from disk is trusted before it is checked.
//! * **Void records** ([`VoidRule`]): a record at log position `p` with key `k` is void when
//!   some cut from key `K` at position `P` has `k ≥ K` and `p < P`. Positions are
//!   `(segment, offset)`, compared segment first.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::segment;
use super::{StoreError, StoreResult};
use crate::domain::LogId;
use crate::domain::epoch::{Epochs, History};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the log identity file in the data directory.
pub const LOG_ID_FILE: &str = "log_id";
/// Name of the file holding the epoch and the epoch history.
pub const EPOCHS_FILE: &str = "epochs";
/// Name of the file recording every cut.
pub const CUTS_FILE: &str = "cuts";
/// Name of the clean-stop marker.
pub const CLEAN_FILE: &str = "CLEAN";
/// The files replaced through a `<name>.tmp` (besides segments): a leftover temporary file of
/// one of these is an interrupted write, deleted at open.
pub const REPLACED_FILES: [&str; 3] = [LOG_ID_FILE, EPOCHS_FILE, CUTS_FILE];

/// A place in the log: `(segment number, byte offset)`; the order is the order records were
/// written in.
pub type Position = (u32, u64);

/// One cut as the `cuts` file records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutMark {
    /// Every key `≥ from_key` held when the cut was made was removed.
    pub from_key: u64,
    /// The end of the records when the cut was made (the active segment and its length):
    /// records before it with a key `≥ from_key` are void.
    pub segment: u32,
    pub offset: u64,
    /// How many entries the cut removed.
    pub entries: u64,
}

impl CutMark {
    pub fn position(&self) -> Position {
        (self.segment, self.offset)
    }
}

/// Tells which records are void under a list of cuts (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct VoidRule {
    /// The cuts' positions in increasing order, each with the smallest `from_key` among the
    /// cuts at or after that position: a record before position `i` is void iff its key is at
    /// least `min_key[i]` for the first position after it.
    marks: Vec<(Position, u64)>,
}

impl VoidRule {
    pub fn new(cuts: &[CutMark]) -> Self {
        let mut marks: Vec<(Position, u64)> =
            cuts.iter().map(|c| (c.position(), c.from_key)).collect();
        marks.sort_unstable();
        let mut min = u64::MAX;
        for m in marks.iter_mut().rev() {
            min = min.min(m.1);
            m.1 = min;
        }
        VoidRule { marks }
    }

    /// Whether the record with `key` at `position` is void: some cut at a later position
    /// removed `key`. O(log cuts); free when there are none.
    pub fn is_void(&self, key: u64, position: Position) -> bool {
        if self.marks.is_empty() {
            return false;
        }
        let i = self.marks.partition_point(|m| m.0 <= position);
        self.marks.get(i).is_some_and(|m| key >= m.1)
    }
}

/// Moves every cut whose position lies beyond `end` (the end of the recovered records) back
/// to `end`, and returns how many moved. Step 3 of a cut (an fsync before the cut is recorded)
/// means this cannot happen unless the disk lost synced data; left alone, records written
/// later between `end` and such a position would be void at the next open.
pub fn clamp(cuts: &mut [CutMark], end: Position) -> usize {
    let mut moved = 0;
    for c in cuts.iter_mut().filter(|c| c.position() > end) {
        (c.segment, c.offset) = end;
        moved += 1;
    }
    moved
}

// ---------------------------------------------------------------------------------------------
// Epochs

/// The text of an `epochs` file.
pub fn format_epochs(epochs: &Epochs) -> String {
    let mut body = format!("current {}\n", epochs.current);
    for (epoch, key) in epochs.history.pairs() {
        body.push_str(&format!("epoch {epoch} first_key {key}\n"));
    }
    for key in &epochs.unlabelled {
        body.push_str(&format!("unlabelled {key}\n"));
    }
    if let Some(name) = &epochs.voted_for {
        body.push_str(&format!("voted_for {name}\n"));
    }
    seal(body)
}

/// Parses what [`format_epochs`] wrote; the error says what is wrong.
pub fn parse_epochs(bytes: &[u8]) -> Result<Epochs, String> {
    let body = unseal(bytes)?;
    let mut lines = body.lines();
    let current = match lines.next() {
        Some(line) => fields(line, &["current"])?[0],
        None => return Err("no \"current\" line".into()),
    };
    let mut pairs = Vec::new();
    let mut unlabelled = std::collections::BTreeSet::new();
    let mut voted_for = None;
    for line in lines {
        if let Some(name) = line.strip_prefix("voted_for ") {
            if name.is_empty() || name.len() > 64 || voted_for.is_some() {
                return Err(format!("bad voted_for line {line:?}"));
            }
            voted_for = Some(name.to_string());
            continue;
        }
        if voted_for.is_some() {
            return Err(format!("a line after voted_for: {line:?}"));
        }
        if line.starts_with("unlabelled") {
            let key = fields(line, &["unlabelled"])?[0];
            if key == 0 || !unlabelled.insert(key) {
                return Err(format!("bad unlabelled key in line {line:?}"));
            }
            continue;
        }
        if !unlabelled.is_empty() {
            return Err(format!("an epoch line after the unlabelled keys: {line:?}"));
        }
        let v = fields(line, &["epoch", "first_key"])?;
        pairs.push((v[0], v[1]));
    }
    let history = History::from_pairs(pairs).map_err(|e| e.to_string())?;
    if current < history.last_epoch() {
        return Err(format!(
            "current epoch {current} is below the history's last epoch {}",
            history.last_epoch()
        ));
    }
    Ok(Epochs {
        current,
        history,
        unlabelled,
        voted_for,
    })
}

/// The epochs kept in `dir`: `Epochs::default()` when there is no `epochs` file. Never
/// modifies anything.
pub fn read_epochs(dir: &Path) -> StoreResult<Epochs> {
    read_checked(dir, EPOCHS_FILE, parse_epochs).map(Option::unwrap_or_default)
}

/// Replaces the `epochs` file in `dir` durably (see [`replace`]).
pub fn write_epochs(dir: &Path, epochs: &Epochs) -> io::Result<()> {
    replace(dir, EPOCHS_FILE, format_epochs(epochs).as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Cuts

/// The text of a `cuts` file.
pub fn format_cuts(cuts: &[CutMark]) -> String {
    let mut body = String::new();
    for c in cuts {
        body.push_str(&format!(
            "from_key {} segment {} offset {} entries {}\n",
            c.from_key, c.segment, c.offset, c.entries
        ));
    }
    seal(body)
}

/// Parses what [`format_cuts`] wrote; the error says what is wrong.
pub fn parse_cuts(bytes: &[u8]) -> Result<Vec<CutMark>, String> {
    let body = unseal(bytes)?;
    body.lines()
        .map(|line| {
            let v = fields(line, &["from_key", "segment", "offset", "entries"])?;
            let segment = u32::try_from(v[1])
                .ok()
                .filter(|&s| s >= 1)
                .ok_or_else(|| format!("bad segment number in {line:?}"))?;
            if v[0] == 0 {
                return Err(format!("a cut from key 0 in {line:?}"));
            }
            Ok(CutMark {
                from_key: v[0],
                segment,
                offset: v[2],
                entries: v[3],
            })
        })
        .collect()
}

/// The cuts recorded in `dir`, oldest first (none when there is no `cuts` file). Never
/// modifies anything.
pub fn read_cuts(dir: &Path) -> StoreResult<Vec<CutMark>> {
    read_checked(dir, CUTS_FILE, parse_cuts).map(Option::unwrap_or_default)
}

/// The path and prepared temporary file of a new `cuts` file: step one of [`replace`], for a
/// caller that must tell a failure before the rename (nothing changed) from one after it.
pub fn prepare_cuts(dir: &Path, cuts: &[CutMark]) -> io::Result<PathBuf> {
    prepare(dir, CUTS_FILE, format_cuts(cuts).as_bytes())
}

/// Replaces the `cuts` file in `dir` durably (see [`replace`]).
pub fn write_cuts(dir: &Path, cuts: &[CutMark]) -> io::Result<()> {
    replace(dir, CUTS_FILE, format_cuts(cuts).as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Checksummed text, atomic replacement

/// `body` followed by its checksum line.
fn seal(mut body: String) -> String {
    let crc = crc32c::crc32c(body.as_bytes());
    body.push_str(&format!("crc32c {crc:08x}\n"));
    body
}

/// The body of a sealed text, once its checksum line is found and matches.
fn unseal(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let text = text
        .strip_suffix('\n')
        .ok_or("no trailing newline (truncated?)")?;
    let (body, last) = match text.rfind('\n') {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text),
    };
    let crc = last
        .strip_prefix("crc32c ")
        .filter(|h| h.len() == 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("the last line is not \"crc32c <8 hex digits>\": {last:?}"))?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

/// The values of a line `name1 value1 name2 value2 …` with exactly the given names, in order,
/// single spaces between, values unsigned decimal integers.
fn fields(line: &str, names: &[&str]) -> Result<Vec<u64>, String> {
    let tokens: Vec<&str> = line.split(' ').collect();
    let expected = || {
        let shape: Vec<String> = names.iter().map(|n| format!("{n} <number>")).collect();
        format!("expected \"{}\", got {line:?}", shape.join(" "))
    };
    if tokens.len() != 2 * names.len() {
        return Err(expected());
    }
    tokens
        .chunks(2)
        .zip(names)
        .map(|(pair, name)| {
            let digits = pair[1];
            if pair[0] != *name || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(expected());
            }
            digits
                .parse::<u64>()
                .map_err(|_| format!("{name} {digits} is out of range"))
        })
        .collect()
}

/// Reads and parses `dir/name`: `None` if it does not exist, [`StoreError::Corrupt`] naming
/// the file if `parse` refuses it.
fn read_checked<T>(
    dir: &Path,
    name: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> StoreResult<Option<T>> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    parse(&bytes)
        .map(Some)
        .map_err(|why| StoreError::Corrupt(format!("{}: {why}", path.display())))
}

/// Writes `bytes` to `<name>.tmp` in `dir` and fsyncs it: the first half of [`replace`]. On
/// failure `name` is untouched and the temporary file removed (best effort).
pub fn prepare(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let tmp = dir.join(format!("{name}{}", segment::TMP_SUFFIX));
    let written = File::create(&tmp).and_then(|f| {
        f.write_all_at(bytes, 0)?;
        f.sync_all()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Renames the prepared `tmp` over `dir/name` and fsyncs the directory: the second half of
/// [`replace`]. After an error here, whether `name` holds the old or the new contents is only
/// known by reading it again.
pub fn install(dir: &Path, tmp: &Path, name: &str) -> io::Result<()> {
    fs::rename(tmp, dir.join(name))?;
    segment::sync_dir(dir)
}

/// Replaces `dir/name` with `bytes` atomically and durably: temporary file, fsync, rename,
/// directory fsync.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = prepare(dir, name, bytes)?;
    install(dir, &tmp, name)
}

/// The log identity kept in `dir`, if any.
pub fn read_log_id(dir: &Path) -> StoreResult<Option<LogId>> {
    let path = dir.join(LOG_ID_FILE);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    parse_log_id(&text)
        .map(Some)
        .map_err(|why| StoreError::Corrupt(format!("{}: {why}", path.display())))
}

fn parse_log_id(text: &[u8]) -> Result<LogId, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
    let line = text
        .strip_suffix('\n')
        .ok_or("no trailing newline (truncated?)")?;
    let (id, crc) = line.split_once(' ').ok_or("expected \"<id> <checksum>\"")?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("bad checksum {crc:?}"))?;
    if crc32c::crc32c(id.as_bytes()) != crc {
        return Err("checksum mismatch".into());
    }
    id.parse()
}

/// Writes the log identity to `dir` (replaced whole, fsynced).
pub fn write_log_id(dir: &Path, id: LogId) -> StoreResult<()> {
    let hex = id.to_string();
    let text = format!("{hex} {:08x}\n", crc32c::crc32c(hex.as_bytes()));
    replace(dir, LOG_ID_FILE, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(u64, u64)]) -> History {
        History::from_pairs(pairs.to_vec()).unwrap()
    }

    #[test]
    fn epochs_text_is_as_documented_and_round_trips() {
        let e = Epochs {
            current: 7,
            history: h(&[(1, 1), (3, 21)]),
            ..Default::default()
        };
        let text = format_epochs(&e);
        let body = "current 7\nepoch 1 first_key 1\nepoch 3 first_key 21\n";
        assert_eq!(
            text,
            format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()))
        );
        assert_eq!(parse_epochs(text.as_bytes()), Ok(e));
        let none = Epochs::default();
        assert_eq!(parse_epochs(format_epochs(&none).as_bytes()), Ok(none));
        let voted = Epochs {
            current: 4,
            history: h(&[(1, 1)]),
            unlabelled: [9, 12].into_iter().collect(),
            voted_for: Some("secondary 2".into()),
        };
        assert_eq!(parse_epochs(format_epochs(&voted).as_bytes()), Ok(voted));
    }

    #[test]
    fn bad_epochs_files_are_refused_with_the_reason() {
        let reseal = |body: &str| seal(body.to_string());
        let cases: &[(String, &str)] = &[
            (String::new(), "newline"),
            ("current 7\n".into(), "crc32c"),
            (
                format_epochs(&Epochs::default()).replace("current 0", "current 1"),
                "checksum",
            ),
            (reseal(""), "current"),
            (reseal("current seven\n"), "expected"),
            (reseal("current 7\nepoch 1\n"), "expected"),
            (reseal("current 7\nepoch 1  first_key 1\n"), "expected"),
            (reseal("current +7\n"), "expected"),
            (reseal("current 99999999999999999999\n"), "out of range"),
            (
                reseal("current 7\nepoch 3 first_key 5\nepoch 2 first_key 9\n"),
                "grow",
            ),
            (reseal("current 7\nepoch 0 first_key 5\n"), "epoch ≥ 1"),
            (reseal("current 2\nepoch 3 first_key 5\n"), "below"),
        ];
        for (text, why) in cases {
            let err = parse_epochs(text.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        assert!(parse_epochs(&[0xff, b'\n']).is_err());
    }

    #[test]
    fn cuts_text_round_trips_and_bad_lines_are_refused() {
        let cuts = vec![
            CutMark {
                from_key: 21,
                segment: 1,
                offset: 4096,
                entries: 80,
            },
            CutMark {
                from_key: 5,
                segment: 3,
                offset: 16,
                entries: 0,
            },
        ];
        let text = format_cuts(&cuts);
        assert!(
            text.starts_with("from_key 21 segment 1 offset 4096 entries 80\n"),
            "{text}"
        );
        assert_eq!(parse_cuts(text.as_bytes()), Ok(cuts));
        assert_eq!(parse_cuts(format_cuts(&[]).as_bytes()), Ok(vec![]));
        for (body, why) in [
            ("from_key 0 segment 1 offset 16 entries 1\n", "key 0"),
            ("from_key 3 segment 0 offset 16 entries 1\n", "segment"),
            (
                "from_key 3 segment 4294967296 offset 16 entries 1\n",
                "segment",
            ),
            ("from_key 3 segment 1 offset 16\n", "expected"),
        ] {
            let err = parse_cuts(seal(body.into()).as_bytes()).unwrap_err();
            assert!(err.contains(why), "{body:?}: {err}");
        }
    }

    #[test]
    fn files_are_replaced_whole_and_a_missing_one_means_none() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_epochs(d.path()).unwrap(), Epochs::default());
        assert!(read_cuts(d.path()).unwrap().is_empty());
        let e = Epochs {
            current: 2,
            history: h(&[(2, 1)]),
            ..Default::default()
        };
        write_epochs(d.path(), &e).unwrap();
        let c = [CutMark {
            from_key: 3,
            segment: 1,
            offset: 40,
            entries: 2,
        }];
        write_cuts(d.path(), &c).unwrap();
        assert_eq!(read_epochs(d.path()).unwrap(), e);
        assert_eq!(read_cuts(d.path()).unwrap(), c);
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        // A damaged file is an error naming it.
        fs::write(d.path().join(CUTS_FILE), b"from_key 3\n").unwrap();
        let err = read_cuts(d.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(CUTS_FILE)),
            "{err}"
        );
    }

    #[test]
    fn a_record_is_void_when_a_later_cut_removed_its_key() {
        let cut = |from_key, segment, offset| CutMark {
            from_key,
            segment,
            offset,
            entries: 1,
        };
        assert!(!VoidRule::default().is_void(1, (1, 16)));
        // Cut from 5 at (2, 100), later cut from 10 at (3, 50).
        let rule = VoidRule::new(&[cut(5, 2, 100), cut(10, 3, 50)]);
        // (position, key, void?)
        for ((seg, off), key, void) in [
            ((1, 16), 4, false),
            ((1, 16), 5, true),
            ((1, 16), 12, true),
            ((2, 99), 5, true),
            ((2, 100), 5, false), // written at the first cut's position: after it
            ((2, 100), 9, false),
            ((2, 100), 10, true), // … but before the second
            ((3, 49), 10, true),
            ((3, 50), 10, false),
            ((4, 16), 1000, false),
        ] {
            assert_eq!(
                rule.is_void(key, (seg, off)),
                void,
                "key {key} at {seg}:{off}"
            );
        }
        // The order of the list does not matter.
        let again = VoidRule::new(&[cut(10, 3, 50), cut(5, 2, 100)]);
        assert!(again.is_void(7, (2, 99)) && !again.is_void(7, (2, 100)));
    }

    #[test]
    fn only_cuts_beyond_the_end_are_clamped() {
        let mut cuts = vec![
            CutMark {
                from_key: 3,
                segment: 1,
                offset: 40,
                entries: 2,
            },
            CutMark {
                from_key: 2,
                segment: 2,
                offset: 80,
                entries: 1,
            },
        ];
        assert_eq!(clamp(&mut cuts, (2, 80)), 0);
        assert_eq!(clamp(&mut cuts, (1, 60)), 1);
        assert_eq!(cuts[0].position(), (1, 40));
        assert_eq!((cuts[1].position(), cuts[1].from_key), ((1, 60), 2));
    }
}
