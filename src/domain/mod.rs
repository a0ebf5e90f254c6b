//! The vocabulary every part of replog shares: what a log entry is ([`Entry`]), which log it
//! belongs to ([`LogId`]), which master wrote which keys ([`epoch`]) and sets of keys
//! ([`rangeset`]). Plain data and pure functions: nothing here does I/O or knows a peer, a
//! store or HTTP, so the store, the wire format and the roles all build on it.

pub mod epoch;
pub mod rangeset;

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// The longest client idempotency id, in bytes (SPEC §2).
pub const MAX_ID_BYTES: usize = 256;

/// One message as a node stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The message's place in the log: 1, 2, 3, … with no gaps.
    pub key: u64,
    /// The message text. Always valid UTF-8 (checked where it enters the system); kept as
    /// `Bytes` so that replication and reads share one allocation instead of copying.
    pub value: Bytes,
    /// The client's idempotency id (≤ [`MAX_ID_BYTES`], UTF-8), when the append had one.
    pub id: Option<Bytes>,
}

impl Entry {
    /// The value as text. Values are validated as UTF-8 before they are stored; a lossy
    /// conversion here only guards against a store handing back bytes it was never given.
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }

    /// Same key, value and id: putting `other` over `self` is a no-op, not a conflict.
    pub fn same_content(&self, other: &Entry) -> bool {
        self.value == other.value && self.id == other.id
    }
}

/// A log's identity: 128 random bits chosen by the master at its first start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogId(pub u128);

impl LogId {
    /// A fresh random identity.
    pub fn random() -> Self {
        LogId(rand::random::<u128>())
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for LogId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("a log id is 32 hex digits, got {s:?}"));
        }
        u128::from_str_radix(s, 16)
            .map(LogId)
            .map_err(|e| format!("bad log id {s:?}: {e}"))
    }
}
