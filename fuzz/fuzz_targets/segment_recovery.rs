//! Segment scan and recovery (`log::segment`, `FileStore::open`, `log::check`): the input
//! becomes the segment files of a data dir in a scratch directory, which is checked, opened,
//! read, written and reopened. See `checks::check_store`.
//!
//! The first byte picks how the rest is read:
//! * bit 7 clear, raw: `1 + byte % 3` segment files; every one but the last is a `u16` LE
//!   length and that many bytes, the last takes the rest; bit 2 set: the bytes are the whole
//!   file, clear: the correct segment header is put before them.
//! * bit 7 set, planned: the rest describes segments of well-formed records (checksums the
//!   fuzzer could not forge), damage done to them, and the cuts recorded in the `cuts` file
//!   (which make some records void, and may lie beyond the end of the records).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use replog::storage::meta::CutMark;
use replog::storage::segment;
use replog_fuzz::checks::{self, Damage, SegmentPlan};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (segments, cuts) = if mode & 0x80 == 0 {
        (raw(mode, rest), Vec::new())
    } else {
        let mut u = Unstructured::new(rest);
        match (planned(&mut u), planned_cuts(&mut u)) {
            (Ok(plans), Ok(cuts)) => (checks::build_segments(&plans), cuts),
            _ => return,
        }
    };
    checks::check_store(scratch_dir(), &segments, &cuts);
});

/// One directory per fuzzing process, emptied for each input (put TMPDIR on a tmpfs).
fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("replog-fuzz-recovery-{}", std::process::id()))
    })
}

fn raw(mode: u8, mut rest: &[u8]) -> Vec<Vec<u8>> {
    let count = 1 + usize::from(mode) % 3;
    let with_header = mode & 4 == 0;
    let mut segments = Vec::with_capacity(count);
    for n in 1..=count {
        let body = if n == count {
            rest
        } else {
            let len = match rest {
                [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
                _ => 0,
            };
            rest = rest.get(2..).unwrap_or(&[]);
            let (body, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            body
        };
        let mut file = Vec::new();
        if with_header {
            file.extend_from_slice(&segment::header(n as u32));
        }
        file.extend_from_slice(body);
        segments.push(file);
    }
    segments
}

fn planned(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<SegmentPlan>> {
    let count = u.int_in_range(0..=3)?;
    let mut plans = Vec::with_capacity(count);
    for _ in 0..count {
        let header = !u.ratio(1u8, 32)?;
        let n = u.int_in_range(0..=12)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            // Small keys make holes, repeats and contiguous runs likely.
            let key = if u.ratio(7u8, 8)? {
                u.int_in_range(0..=12)?
            } else {
                u.arbitrary()?
            };
            let id = if u.arbitrary()? {
                let len = if u.ratio(1u8, 32)? {
                    u.int_in_range(0..=300)?
                } else {
                    u.int_in_range(0..=6)?
                };
                Some(u.bytes(len)?.to_vec())
            } else {
                None
            };
            let len = u.int_in_range(0..=40)?;
            records.push((key, id, u.bytes(len)?.to_vec()));
        }
        let damage = match u.int_in_range(0..=5)? {
            0 | 1 => Damage::None,
            2 => Damage::Truncate(u.arbitrary()?),
            3 => Damage::Flip(u.arbitrary()?, u.arbitrary()?),
            4 => {
                let len = u.int_in_range(0..=64)?;
                Damage::Append(u.bytes(len)?.to_vec())
            }
            _ => Damage::Zeros(u.int_in_range(1..=4096)?),
        };
        plans.push(SegmentPlan {
            header,
            records,
            damage,
        });
    }
    Ok(plans)
}

/// Up to three cuts with small keys and offsets, so that they void some planned records and
/// sometimes lie beyond the end of the records.
fn planned_cuts(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<CutMark>> {
    let count = u.int_in_range(0..=3)?;
    let mut cuts = Vec::with_capacity(count);
    for _ in 0..count {
        cuts.push(CutMark {
            from_key: u.int_in_range(1..=12)?,
            segment: u.int_in_range(1..=4)?,
            offset: u.int_in_range(0..=700)?,
            entries: u.int_in_range(0..=12)?,
        });
    }
    Ok(cuts)
}
