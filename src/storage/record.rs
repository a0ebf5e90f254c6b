//! The on-disk record: one log entry, length-prefixed and checksummed.
//!
//! This module is the single definition of a record's bytes; [`super::file`] and
//! [`super::check`] never look inside a record except through [`encode`] and [`decode`].
//!
//! # Layout (format version 1)
//!
//! All integers are little-endian. A record is a 20-byte header followed by the id and the value:
//!
//! ```text
//! offset  size      field      meaning
//! ------  --------  ---------  -------------------------------------------------------------
//!      0  4         len        u32: length of the whole record in bytes, header included
//!                              (20 ≤ len ≤ MAX_RECORD_LEN)
//!      4  4         crc        u32: CRC32C (Castagnoli) of bytes 0..4 (len) followed by
//!                              bytes 8..len (everything after this field)
//!      8  8         key        u64: the entry's key, ≥ 1
//!     16  2         id_len     u16: length of the client id, ≤ MAX_ID_BYTES (256); 0 if none
//!     18  1         flags      bit 0: the entry has an id (so an empty id and no id differ);
//!                              bits 1-7: zero
//!     19  1         reserved   zero
//!     20  id_len    id         the client's idempotency id
//! 20+id_len         value      the message; its length is len - 20 - id_len
//! ```
//!
//! # Warning: do not reorder fields
//!
//! - Do not add, remove, reorder or resize fields.
//! - Do not change what the checksum covers.
//! - Do not give the flag bits or the reserved byte a meaning without bumping the segment
//!   format version (see [`super::segment`]): a version-1 reader rejects non-zero values.
//!
//! Every byte of this layout is on disk in logs written by earlier builds; changing it silently
//! turns their data into "corruption". A new layout needs a new segment format version and a
//! reader for the old one.
//!
//! # Why this shape
//!
//! * `len` comes first so a reader knows how many bytes to fetch before it can check anything,
//!   and so a record cut short by a crash is recognised as [`RecordStatus::Torn`] (fewer bytes
//!   than `len` remain) rather than as garbage.
//! * The checksum covers `len` too: a bit flip in the length changes the checksum, so a damaged
//!   length can never make the reader accept a wrong extent.
//! * Header fields are sanity-checked *before* the checksum is computed: a garbage header is
//!   rejected as [`RecordStatus::Malformed`] without hashing up to `MAX_RECORD_LEN` bytes. This
//!   keeps scanning garbage (recovery's search for intact records past a damaged spot) cheap.
//! * [`decode`] never panics and never allocates: every length is compared with the bytes that
//!   are actually there, and lengths over the limits are rejected before they are used.

use super::MAX_ID_BYTES;

/// Bytes before the id.
pub const HEADER_LEN: usize = 20;

/// The largest value a record can hold (256 MiB). Far above any sensible
/// `max_message_bytes`; it exists so that a damaged length can never make a reader allocate
/// gigabytes.
pub const MAX_VALUE_LEN: usize = 256 << 20;

/// The largest record: header, longest id, largest value.
pub const MAX_RECORD_LEN: usize = HEADER_LEN + MAX_ID_BYTES + MAX_VALUE_LEN;

const FLAG_HAS_ID: u8 = 0b0000_0001;

/// A decoded record, borrowing from the buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The entry's key (≥ 1).
    pub key: u64,
    /// The client id, if the entry had one.
    pub id: Option<&'a [u8]>,
    /// The message.
    pub value: &'a [u8],
}

impl Record<'_> {
    /// How many bytes this record takes on disk.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.id.map_or(0, <[u8]>::len), self.value.len())
    }
}

/// What [`decode`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordStatus<'a> {
    /// A whole record whose checksum matches. Its length is [`Record::encoded_len`].
    Valid(Record<'a>),
    /// A whole record whose stored checksum (`actual`) differs from the one computed over its
    /// bytes (`calculated`).
    Corrupted { calculated: u32, actual: u32 },
    /// The buffer ends before the record does: `need` bytes (from the record's start) are
    /// needed to decode it. At the end of a file this is a write cut short.
    Torn { need: usize },
    /// A header no writer of this format produces (a length out of range, unknown flags, key
    /// 0, …): garbage, or damage inside the header.
    Malformed(&'static str),
}

/// Why an entry cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("key 0 is not a valid key")]
    ZeroKey,
    #[error("id of {0} bytes is longer than the {MAX_ID_BYTES}-byte limit")]
    IdTooLong(usize),
    #[error("value of {0} bytes is larger than the {MAX_VALUE_LEN}-byte record limit")]
    ValueTooLarge(usize),
}

/// The on-disk size of a record with an id of `id_len` bytes and a value of `value_len` bytes.
pub const fn encoded_len(id_len: usize, value_len: usize) -> usize {
    HEADER_LEN + id_len + value_len
}

/// Whether `rec` can be encoded; [`encode`] checks the same.
pub fn validate(rec: &Record<'_>) -> Result<(), EncodeError> {
    if rec.key == 0 {
        return Err(EncodeError::ZeroKey);
    }
    let id_len = rec.id.map_or(0, <[u8]>::len);
    if id_len > MAX_ID_BYTES {
        return Err(EncodeError::IdTooLong(id_len));
    }
    if rec.value.len() > MAX_VALUE_LEN {
        return Err(EncodeError::ValueTooLarge(rec.value.len()));
    }
    Ok(())
}

/// Appends the encoding of `rec` to `out` and returns its length.
pub fn encode(rec: &Record<'_>, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    validate(rec)?;
    let id = rec.id.unwrap_or(&[]);
    let len = rec.encoded_len();
    // Both fit: MAX_RECORD_LEN < u32::MAX and MAX_ID_BYTES < u16::MAX.
    let len32 = len as u32;
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // checksum, patched below
    out.extend_from_slice(&rec.key.to_le_bytes());
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.push(if rec.id.is_some() { FLAG_HAS_ID } else { 0 });
    out.push(0);
    out.extend_from_slice(id);
    out.extend_from_slice(rec.value);
    let crc = checksum(&out[start..start + len]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(len)
}

/// Decodes the record at the start of `buf` (bytes after it are ignored). Never panics.
pub fn decode(buf: &[u8]) -> RecordStatus<'_> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return RecordStatus::Torn { need: HEADER_LEN };
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let actual = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let key = u64::from_le_bytes([
        header[8], header[9], header[10], header[11], header[12], header[13], header[14],
        header[15],
    ]);
    let id_len = u16::from_le_bytes([header[16], header[17]]) as usize;
    let flags = header[18];
    let reserved = header[19];

    if len < HEADER_LEN {
        return RecordStatus::Malformed("record length is shorter than a record header");
    }
    if len > MAX_RECORD_LEN {
        return RecordStatus::Malformed("record length is over the record size limit");
    }
    if id_len > MAX_ID_BYTES {
        return RecordStatus::Malformed("id length is over the id limit");
    }
    if HEADER_LEN + id_len > len {
        return RecordStatus::Malformed("id extends past the end of the record");
    }
    if flags & !FLAG_HAS_ID != 0 {
        return RecordStatus::Malformed("unknown flag bits are set");
    }
    if reserved != 0 {
        return RecordStatus::Malformed("reserved byte is not zero");
    }
    if flags & FLAG_HAS_ID == 0 && id_len != 0 {
        return RecordStatus::Malformed("id length without the has-id flag");
    }
    if key == 0 {
        return RecordStatus::Malformed("key 0");
    }
    let Some(bytes) = buf.get(..len) else {
        return RecordStatus::Torn { need: len };
    };
    let calculated = checksum(bytes);
    if calculated != actual {
        return RecordStatus::Corrupted { calculated, actual };
    }
    let (id, value) = bytes[HEADER_LEN..].split_at(id_len);
    RecordStatus::Valid(Record {
        key,
        id: (flags & FLAG_HAS_ID != 0).then_some(id),
        value,
    })
}

/// The checksum of a whole encoded record (`bytes.len() ≥ 8`): the length field, then
/// everything after the checksum field.
fn checksum(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&bytes[..4]);
    crc32c::crc32c_append(crc, &bytes[8..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(key: u64, id: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&Record { key, id, value }, &mut out).unwrap();
        out
    }

    #[test]
    fn layout_is_as_documented() {
        let b = enc(0x0102_0304_0506_0708, Some(b"ab"), b"xyz");
        assert_eq!(b.len(), 25);
        assert_eq!(&b[0..4], &25u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[16..18], &2u16.to_le_bytes());
        assert_eq!(b[18], 1);
        assert_eq!(b[19], 0);
        assert_eq!(&b[20..22], b"ab");
        assert_eq!(&b[22..], b"xyz");
        let mut covered = b[0..4].to_vec();
        covered.extend_from_slice(&b[8..]);
        assert_eq!(&b[4..8], &crc32c::crc32c(&covered).to_le_bytes());
    }

    #[test]
    fn none_and_empty_ids_differ() {
        let none = enc(1, None, b"v");
        let empty = enc(1, Some(b""), b"v");
        assert_ne!(none, empty);
        match decode(&none) {
            RecordStatus::Valid(r) => assert_eq!(r.id, None),
            other => panic!("{other:?}"),
        }
        match decode(&empty) {
            RecordStatus::Valid(r) => assert_eq!(r.id, Some(&b""[..])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_prefix_is_torn_and_every_bit_flip_is_caught() {
        let b = enc(7, Some(b"id-1"), b"hello world");
        for cut in 0..b.len() {
            assert!(
                matches!(decode(&b[..cut]), RecordStatus::Torn { .. }),
                "prefix of {cut} bytes"
            );
        }
        for bit in 0..b.len() * 8 {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&c), RecordStatus::Valid(_)),
                "flipping bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn a_flipped_value_bit_is_reported_as_corrupted_with_both_checksums() {
        let mut b = enc(3, None, b"value");
        let stored = u32::from_le_bytes(b[4..8].try_into().unwrap());
        let last = b.len() - 1;
        b[last] ^= 0x10;
        match decode(&b) {
            RecordStatus::Corrupted { calculated, actual } => {
                assert_eq!(actual, stored);
                assert_ne!(calculated, actual);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_and_tiny_lengths_are_rejected_without_reading_them() {
        let mut b = enc(3, None, b"value");
        b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&b), RecordStatus::Malformed(_)));
        b[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(decode(&b), RecordStatus::Malformed(_)));
        assert!(matches!(decode(&[0u8; 64]), RecordStatus::Malformed(_)));
    }

    #[test]
    fn encode_rejects_what_decode_would() {
        let long = vec![b'i'; MAX_ID_BYTES + 1];
        let mut out = Vec::new();
        let r = Record {
            key: 1,
            id: Some(&long),
            value: b"",
        };
        assert_eq!(
            encode(&r, &mut out),
            Err(EncodeError::IdTooLong(MAX_ID_BYTES + 1))
        );
        let r = Record {
            key: 0,
            id: None,
            value: b"",
        };
        assert_eq!(encode(&r, &mut out), Err(EncodeError::ZeroKey));
        assert!(out.is_empty(), "a rejected record writes nothing");
    }

    proptest! {
        #[test]
        fn round_trip(key in 1u64.., id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=MAX_ID_BYTES)),
                      value in proptest::collection::vec(any::<u8>(), 0..600),
                      trailing in proptest::collection::vec(any::<u8>(), 0..8)) {
            let rec = Record { key, id: id.as_deref(), value: &value };
            let mut b = Vec::new();
            let len = encode(&rec, &mut b).unwrap();
            prop_assert_eq!(len, b.len());
            b.extend_from_slice(&trailing);
            prop_assert_eq!(decode(&b), RecordStatus::Valid(rec));
        }

        #[test]
        fn decode_never_panics_on_garbage(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let RecordStatus::Valid(r) = decode(&buf) {
                prop_assert!(r.encoded_len() <= buf.len());
            }
        }

        #[test]
        fn decode_never_panics_on_damaged_records(key in 1u64.., value in proptest::collection::vec(any::<u8>(), 0..100),
                                                  at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut b = enc(key, Some(b"x"), &value);
            let i = at.index(b.len());
            b[i] = byte;
            if let RecordStatus::Valid(r) = decode(&b) {
                prop_assert!(r.encoded_len() <= b.len());
            }
        }
    }
}
