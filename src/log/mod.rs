//! The log store: where a node keeps its messages.
//!
//! Every node (master and secondary) owns exactly one [`LogStore`]. The master fills it with
//! keys it assigns itself (always `contiguous_key() + 1`, in order); a secondary fills it with
//! entries the master sends, which may arrive out of order when replication requests overtake
//! each other (a delayed request, a retry after a failure).
//!
//! # The contract (every implementation must keep it)
//!
//! * **Keys start at 1 and the visible log has no holes.** The *visible* log is keys
//!   `1..=contiguous_key()`; [`LogStore::read`] serves nothing else. An entry whose key is
//!   beyond `contiguous_key() + 1` is *held aside*: it is stored (and, for a durable store,
//!   written to disk exactly like any other entry) but stays invisible until every key before
//!   it has arrived. Holding keys 1, 2 and 4, a node shows 1 and 2 until 3 arrives.
//! * **Keys are strictly increasing in the visible log** and each key appears once.
//! * **A stored entry is never overwritten.** Putting a key that is already held (visible or
//!   aside) with the same value and id is a no-op; with a different value or id it fails with
//!   [`StoreError::Conflict`] and *nothing* of that call is stored.
//! * **Writes are serialised by the caller.** [`LogStore::put`] is only ever called by one task
//!   at a time (the node's writer, see `crate::writer`); reads, [`LogStore::sync`] and the
//!   accessors may run concurrently with it from any thread.
//! * **Durability is explicit.** When `put` returns, the entries are written (for a file store:
//!   handed to the OS) and readable. They are durable only after a later [`LogStore::sync`]
//!   returns: `sync` makes durable at least everything whose `put` returned before `sync` was
//!   called. The fsync *policy* (always / interval / never) lives in the writer, not here.
//! * **The log identity** ([`LogId`]) is set once per store and survives restarts (for a durable
//!   store); it tells which log this data belongs to, so logs are never mixed.
//!
//! Implementations: [`memory::MemoryStore`] (nothing survives a restart) and
//! [`file::FileStore`] (segment files on disk; its module docs are the file format's design
//! document). [`check::check`] inspects a `FileStore` directory without modifying it.
//! [`tail::TailCache`] is not a store: the master's writer keeps its newest entries there so
//! replication need not read them back from disk.

pub mod check;
pub mod file;
mod index;
pub mod memory;
pub mod record;
pub mod segment;
pub mod tail;

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

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is already held with another value (or id); nothing was stored.
    #[error("key {key} already holds a different message; stored messages are never overwritten")]
    Conflict { key: u64 },
    /// Key 0 does not exist: keys start at 1.
    #[error("key 0 is not a valid key; keys start at 1")]
    ZeroKey,
    /// The store already belongs to another log.
    #[error("this node holds log {have}, not log {want}")]
    LogIdMismatch { have: LogId, want: LogId },
    /// The data on disk is damaged in a way recovery cannot cut away (not a torn tail).
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// Reading or writing the underlying files failed.
    #[error("log i/o failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What a node's log looks like from outside; see the module docs for the contract.
pub trait LogStore: Send + Sync + 'static {
    /// The highest key `k` such that every key `1..=k` is held (0 when empty). This is the end
    /// of the visible log.
    fn contiguous_key(&self) -> u64;

    /// How many entries are held aside, beyond the first hole.
    fn held_aside(&self) -> usize;

    /// Whether `key` is held, visible or aside.
    fn holds(&self, key: u64) -> bool;

    /// Stores `entries` (any keys ≥ 1, any order, the same key at most once per call).
    ///
    /// Entries already held with the same content are skipped; if any entry conflicts with a
    /// held one, returns [`StoreError::Conflict`] and stores none of them. Returns how many
    /// entries were newly stored. Called by one task at a time (see the module docs).
    fn put(&self, entries: &[Entry]) -> StoreResult<usize>;

    /// Makes every entry whose `put` returned before this call durable (fsync for a file
    /// store; a no-op in memory). May run concurrently with `put` and reads.
    fn sync(&self) -> StoreResult<()>;

    /// Up to `max_entries` visible entries starting at key `from` (keys `from..`, stopping at
    /// `contiguous_key()`), and no more than about `max_bytes` of values (at least one entry is
    /// returned when one exists, however large). Empty when `from > contiguous_key()`.
    fn read(&self, from: u64, max_entries: usize, max_bytes: usize) -> StoreResult<Vec<Entry>>;

    /// Calls `f(id, key)` for every visible entry with an id, in key order, starting at `from`.
    /// Used once at startup to rebuild the idempotency index.
    fn scan_ids(&self, from: u64, f: &mut dyn FnMut(&[u8], u64)) -> StoreResult<()>;

    /// The identity of the log this store holds, if it has been bound to one.
    fn log_id(&self) -> Option<LogId>;

    /// Binds the store to `id` (durably, for a file store). Binding again to the same id is a
    /// no-op; to another id it fails with [`StoreError::LogIdMismatch`].
    fn set_log_id(&self, id: LogId) -> StoreResult<()>;
}
