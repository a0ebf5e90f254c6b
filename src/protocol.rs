//! Wire types shared by the servers and the clients: the JSON of the public API, the JSON a
//! secondary answers to replication and heartbeats, and the binary body of a replication batch.
//!
//! # Replication batch body (`POST /replicate`, `Content-Type: application/octet-stream`)
//!
//! All integers little-endian. Do not reorder fields: master and secondary must agree byte for
//! byte, and the version byte is how a future layout would be told apart.
//!
//! ```text
//! u8   version            = 1
//! u32  count              number of entries that follow
//! count × {
//!   u64  key              ≥ 1
//!   u16  id_len           0 = no id; ≤ 256
//!   u32  value_len        ≤ limits.max_message_bytes of the receiver
//!   [id_len]    id        UTF-8
//!   [value_len] value     UTF-8
//! }
//! ```
//!
//! Keys in a batch are strictly increasing but need not be consecutive (the master skips keys
//! it knows the secondary holds). The decoder never panics and never allocates from a length
//! field before checking the bytes are there.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::domain::{Entry, MAX_ID_BYTES};

/// The only batch layout version so far.
pub const BATCH_VERSION: u8 = 1;
/// Bytes of one entry's header in a batch.
const ENTRY_HEADER: usize = 8 + 2 + 4;

/// Header carrying the master's log identity on replication requests.
pub const LOG_ID_HEADER: &str = "x-replog-log-id";
/// Header carrying the master's client-facing URL, so a secondary can name it.
pub const MASTER_HEADER: &str = "x-replog-master";
/// Header carrying the master's name beside [`MASTER_HEADER`] (failover: `/health` names the
/// master).
pub const MASTER_NAME_HEADER: &str = "x-replog-master-name";
/// Header carrying the sender's epoch on replication requests (and a secondary's on its
/// `GET /replicate` answers); see `docs/log-matching.md`.
pub const EPOCH_HEADER: &str = "x-replog-epoch";
/// Header carrying the sender's epoch history, `epoch:first_key,…` (see
/// `crate::domain::epoch::History::to_header`), beside [`EPOCH_HEADER`].
pub const EPOCHS_HEADER: &str = "x-replog-epochs";
/// Header carrying a failover master's `failover.election_timeout_ms` on its heartbeats: a
/// member waits at least that long without word from it before it stands or votes, whatever
/// its own setting (the master's lease is shorter than its own election timeout only).
pub const ELECTION_TIMEOUT_HEADER: &str = "x-replog-election-timeout-ms";
/// Header carrying a failover master's [`members_fingerprint`] on its heartbeats.
pub const MEMBERS_HEADER: &str = "x-replog-members";

/// Encodes entries as a batch body.
pub fn encode_batch(entries: &[Entry]) -> Bytes {
    let size: usize = 5 + entries
        .iter()
        .map(|e| ENTRY_HEADER + e.value.len() + e.id.as_ref().map_or(0, Bytes::len))
        .sum::<usize>();
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u8(BATCH_VERSION);
    buf.put_u32_le(entries.len() as u32);
    for e in entries {
        let id = e.id.as_deref().unwrap_or_default();
        buf.put_u64_le(e.key);
        buf.put_u16_le(id.len() as u16);
        buf.put_u32_le(e.value.len() as u32);
        buf.put_slice(id);
        buf.put_slice(&e.value);
    }
    buf.freeze()
}

/// Why a batch body was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("empty replication batch body")]
    Empty,
    #[error("unsupported replication batch version {0} (this node reads version 1)")]
    Version(u8),
    #[error("replication batch is truncated at entry {0}")]
    Truncated(usize),
    #[error("replication batch has {0} bytes after its last entry")]
    Trailing(usize),
    #[error("replication batch entry {index} has key 0; keys start at 1")]
    ZeroKey { index: usize },
    #[error("replication batch keys are not strictly increasing at entry {index}")]
    Order { index: usize },
    #[error(
        "replication batch entry {index}: id of {len} bytes is over the {MAX_ID_BYTES}-byte limit"
    )]
    IdTooLong { index: usize, len: usize },
    #[error("replication batch entry {index}: value of {len} bytes is over the {max}-byte limit")]
    ValueTooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("replication batch entry {index}: {what} is not valid UTF-8")]
    Utf8 { index: usize, what: &'static str },
}

/// Decodes a batch body; entries share `body`'s memory.
pub fn decode_batch(body: Bytes, max_value: usize) -> Result<Vec<Entry>, BatchError> {
    let mut buf = body.clone();
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let version = buf.get_u8();
    if version != BATCH_VERSION {
        return Err(BatchError::Version(version));
    }
    if buf.remaining() < 4 {
        return Err(BatchError::Truncated(0));
    }
    let count = buf.get_u32_le() as usize;
    // Each entry takes at least its header, so a count the body cannot hold is refused
    // before anything is allocated for it.
    if count > buf.remaining() / ENTRY_HEADER {
        return Err(BatchError::Truncated(buf.remaining() / ENTRY_HEADER));
    }
    let mut entries = Vec::with_capacity(count);
    let mut prev = 0u64;
    for index in 0..count {
        if buf.remaining() < ENTRY_HEADER {
            return Err(BatchError::Truncated(index));
        }
        let key = buf.get_u64_le();
        let id_len = buf.get_u16_le() as usize;
        let value_len = buf.get_u32_le() as usize;
        if key == 0 {
            return Err(BatchError::ZeroKey { index });
        }
        if key <= prev {
            return Err(BatchError::Order { index });
        }
        prev = key;
        if id_len > MAX_ID_BYTES {
            return Err(BatchError::IdTooLong { index, len: id_len });
        }
        if value_len > max_value {
            return Err(BatchError::ValueTooLarge {
                index,
                len: value_len,
                max: max_value,
            });
        }
        if buf.remaining() < id_len + value_len {
            return Err(BatchError::Truncated(index));
        }
        let id = buf.split_to(id_len);
        let value = buf.split_to(value_len);
        if std::str::from_utf8(&id).is_err() {
            return Err(BatchError::Utf8 { index, what: "id" });
        }
        if std::str::from_utf8(&value).is_err() {
            return Err(BatchError::Utf8 {
                index,
                what: "value",
            });
        }
        entries.push(Entry {
            key,
            value,
            id: (id_len > 0).then_some(id),
        });
    }
    if buf.has_remaining() {
        return Err(BatchError::Trailing(buf.remaining()));
    }
    Ok(entries)
}

/// A secondary's answer to a replication request (`POST /replicate` or `PUT /message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchAck {
    /// The end of the secondary's contiguous prefix after storing the batch.
    pub contiguous_key: u64,
    /// This secondary process's incarnation: it changes on every start, which is how the
    /// master notices a restart that may have lost entries held aside.
    pub instance: String,
    /// Entries of the request that were new to the secondary.
    pub stored: usize,
    /// As in [`Heartbeat::unlabelled_from`]: the secondary's log is this master's only below
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlabelled_from: Option<u64>,
}

/// The body of `GET /heartbeat`: short, and cheap to produce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heartbeat {
    pub status: String,
    pub role: String,
    pub name: String,
    pub instance: String,
    pub contiguous_key: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// The highest epoch this node has taken part in (see `docs/log-matching.md`).
    #[serde(default)]
    pub epoch: u64,
    /// Which epoch wrote which of its keys: `[epoch, first key]` pairs.
    #[serde(default)]
    // A tuple is `prefixItems` in OpenAPI 3.1; utoipa writes the 3.0 form (`items: [..]`),
    // which 3.1 validators reject: described as pairs of integers instead.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub epochs: Vec<(u64, u64)>,
    /// Entries this node has cut from its log because they diverged from its master's.
    #[serde(default)]
    pub cut_entries: u64,
    /// The first key a script stored here (`PUT /message`) that no master has written over:
    /// the node vouches for its log only below it (see `crate::domain::epoch::Epochs::unlabelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlabelled_from: Option<u64>,
}

/// `POST /vote` (failover, `docs/failover.md`): a candidate asks a member for its vote, or
/// (with `pre_vote`) whether it would give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// The epoch the candidate stands for.
    pub epoch: u64,
    /// The candidate's member name.
    pub candidate: String,
    /// The candidate's log: the last epoch of its history, and its contiguous key.
    pub last_epoch: u64,
    pub last_key: u64,
    #[serde(default)]
    pub pre_vote: bool,
    /// The fingerprint of the candidate's member list ([`members_fingerprint`]): a member
    /// whose list differs refuses (a majority of one list need not meet a majority of
    /// another). Absent from older candidates: not checked then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<String>,
}

/// The fingerprint of a failover member list, the same on every node that has the same list
/// (in any order): CRC-32C of its sorted `name url` lines, in hex. Sent with votes and a
/// master's heartbeats ([`MEMBERS_HEADER`]) so a node whose list differs finds out.
pub fn members_fingerprint(members: &[crate::config::SecondaryRef]) -> String {
    let mut lines: Vec<String> = members
        .iter()
        .map(|m| format!("{} {}\n", m.name, m.url.trim_end_matches('/')))
        .collect();
    lines.sort();
    format!("{:08x}", crc32c::crc32c(lines.concat().as_bytes()))
}

/// The answer to `POST /vote`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoteReply {
    /// The member's epoch after the request.
    pub epoch: u64,
    pub granted: bool,
    /// Why not, when not granted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The master as a secondary's `/health` names it: its URL, or with failover on its name and
/// URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum KnownMaster {
    Url(String),
    Node(MasterRef),
}

/// Which node is the master, as `/health` shows it with failover on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MasterRef {
    pub name: String,
    pub url: String,
}

/// One message as `GET /messages` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub key: u64,
    pub value: String,
}

/// A node as the master's `/health` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeHealth {
    pub name: String,
    pub url: String,
    /// `healthy`, `suspected` or `unhealthy`.
    pub status: String,
    /// The end of the prefix this secondary is known to hold.
    pub acked_key: u64,
    /// `last_key - acked_key`.
    pub lag: u64,
    pub consecutive_failures: u32,
    /// Replication requests in flight to it.
    pub inflight: usize,
    /// Milliseconds until the next retry, while a failed request waits out its backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// The last replication or heartbeat error, until the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Entries this secondary has cut from its log because they diverged from the master's
    /// (from its heartbeat; see `docs/log-matching.md`).
    #[serde(default)]
    pub cut_entries: u64,
}

/// The master's `/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MasterHealth {
    pub role: String,
    pub name: String,
    /// `read-write` or `read-only`.
    pub mode: String,
    pub quorum: usize,
    pub available: usize,
    pub last_key: u64,
    pub log_id: String,
    /// This master's epoch (it takes a new one at every start).
    #[serde(default)]
    pub epoch: u64,
    /// Which epoch wrote which of its keys: `[epoch, first key]` pairs.
    #[serde(default)]
    // A tuple is `prefixItems` in OpenAPI 3.1; utoipa writes the 3.0 form (`items: [..]`),
    // which 3.1 validators reject: described as pairs of integers instead.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub epochs: Vec<(u64, u64)>,
    /// Set when a restart's recovery went on without hearing from every secondary it waits
    /// for (`master.recovery_wait_ms`): what it did and what that may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// With failover on: this node, the master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<MasterRef>,
    pub nodes: Vec<NodeHealth>,
}

/// A secondary's `/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecondaryHealth {
    pub role: String,
    pub name: String,
    pub contiguous_key: u64,
    /// Entries held beyond the first hole, invisible until it fills.
    pub held_aside: usize,
    #[serde(default)]
    pub log_id: Option<String>,
    /// The master: its URL (configured or learned from its requests); with failover on, its
    /// name and URL (`null` while an election runs).
    #[serde(default)]
    pub master: Option<KnownMaster>,
    /// The highest epoch of a master whose entries this node accepted.
    #[serde(default)]
    pub epoch: u64,
    /// Which epoch wrote which of its keys: `[epoch, first key]` pairs.
    #[serde(default)]
    // A tuple is `prefixItems` in OpenAPI 3.1; utoipa writes the 3.0 form (`items: [..]`),
    // which 3.1 validators reject: described as pairs of integers instead.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub epochs: Vec<(u64, u64)>,
    /// Cuts of entries that diverged from the master's log, oldest first.
    #[serde(default)]
    pub cuts: Vec<CutInfo>,
}

/// One cut of a secondary's log, as `/health` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CutInfo {
    /// Every key from this one on that the node held was cut.
    pub from_key: u64,
    /// How many entries were cut.
    pub entries: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u64, v: &str, id: Option<&str>) -> Entry {
        Entry {
            key,
            value: Bytes::copy_from_slice(v.as_bytes()),
            id: id.map(|s| Bytes::copy_from_slice(s.as_bytes())),
        }
    }

    #[test]
    fn batch_round_trips() {
        let entries = vec![entry(1, "a", None), entry(3, "ünïcode", Some("id-1"))];
        let body = encode_batch(&entries);
        assert_eq!(decode_batch(body, 1024).unwrap(), entries);
        assert_eq!(decode_batch(encode_batch(&[]), 10).unwrap(), vec![]);
    }

    #[test]
    fn bad_batches_are_refused_not_panicked_on() {
        let good = encode_batch(&[entry(1, "hello", None), entry(2, "x", None)]);
        for cut in 0..good.len() {
            assert!(
                decode_batch(good.slice(..cut), 1024).is_err(),
                "cut at {cut}"
            );
        }
        let mut extra = good.to_vec();
        extra.push(0);
        assert_eq!(
            decode_batch(Bytes::from(extra), 1024),
            Err(BatchError::Trailing(1))
        );
        assert!(matches!(
            decode_batch(encode_batch(&[entry(2, "a", None), entry(2, "b", None)]), 9),
            Err(BatchError::Order { index: 1 })
        ));
        assert!(matches!(
            decode_batch(encode_batch(&[entry(0, "a", None)]), 9),
            Err(BatchError::ZeroKey { index: 0 })
        ));
        assert!(matches!(
            decode_batch(encode_batch(&[entry(1, "abc", None)]), 2),
            Err(BatchError::ValueTooLarge { .. })
        ));
        let mut bad_utf8 = encode_batch(&[entry(1, "a", None)]).to_vec();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert!(matches!(
            decode_batch(Bytes::from(bad_utf8), 9),
            Err(BatchError::Utf8 { .. })
        ));
        // A huge count in a tiny body is refused before allocating.
        let mut huge = vec![1u8];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_batch(Bytes::from(huge), 9).is_err());
        assert_eq!(
            decode_batch(Bytes::from_static(&[9]), 9),
            Err(BatchError::Version(9))
        );
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_batch(Bytes::from(data), 64);
        }
    }
}
