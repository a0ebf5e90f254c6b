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
//! * **Writes are serialised by the caller.** [`LogStore::put`] and [`LogStore::cut_from`] are
//!   only ever called by one task at a time (the node's writer, see `crate::storage::writer`); reads,
//!   [`LogStore::sync`] and the accessors may run concurrently with them from any thread.
//! * **Durability is explicit.** When `put` returns, the entries are written (for a file store:
//!   handed to the OS) and readable. They are durable only after a later [`LogStore::sync`]
//!   returns: `sync` makes durable at least everything whose `put` returned before `sync` was
//!   called. The fsync *policy* (always / interval / never) lives in the writer, not here.
//! * **The log identity** ([`LogId`]) is set once per store and survives restarts (for a durable
//!   store); it tells which log this data belongs to, so logs are never mixed.
//! * **Epochs are kept beside the log** ([`LogStore::epochs`], see `crate::domain::epoch` and
//!   `docs/log-matching.md`): a store that never had any reports epoch 0 and an empty history.
//!   [`LogStore::set_epochs`] is durable before it returns, so a history change is on disk
//!   before any entry it labels is written ("labels before data").
//! * **A cut is the one way entries leave the log.** [`LogStore::cut_from`]`(K)` removes every
//!   held key `≥ K`, visible and aside, and returns them with their ids; it is called only by
//!   the writer task, like `put`. After it returns, the store behaves as if those keys had
//!   never been put: none is held, the visible log ends at `min(contiguous, K − 1)`, and any of
//!   them may be put again, with any value. For a durable store the cut is durable when
//!   `cut_from` returns, and survives restarts exactly: the removed entries never come back,
//!   the keys below `K` are untouched, and entries put after the cut stay. [`LogStore::cuts`]
//!   lists every cut ever made.
//! * **After a failed fsync nothing more is vouched for** (`docs/log-matching.md`, invariant
//!   7): once [`LogStore::sync`] (or any fsync of the store) failed, `sync`, `cut_from` (unless
//!   it has nothing to remove), `set_epochs` and `mark_clean_stop` fail until the store is
//!   reopened, and [`LogStore::sync_failure`] says why.
//! * **A clean stop is recorded.** [`LogStore::mark_clean_stop`], called last at shutdown, lets
//!   the next start know nothing written was lost ([`LogStore::last_stop_clean`]).
//!
//! Implementations: [`memory::MemoryStore`] (nothing survives a restart) and
//! [`file::FileStore`] (segment files on disk; its module docs are the file format's design
//! document; [`meta`] has its small `epochs` and `cuts` files and the rule that voids records
//! after a cut). [`check::check`] inspects a `FileStore` directory without modifying it.
//! [`tail::TailCache`] is not a store: the master's writer keeps its newest entries there so
//! replication need not read them back from disk.

pub mod check;
pub mod dedup;
pub mod file;
mod index;
pub mod memory;
pub mod meta;
pub mod record;
pub mod segment;
pub mod tail;
#[cfg(test)]
pub mod testing;
pub mod writer;

use bytes::Bytes;

// The vocabulary the store works in (private: users import it from `crate::domain`; the
// store's modules see it as `super::…`).
#[allow(unused_imports)]
use crate::domain::MAX_ID_BYTES;
use crate::domain::epoch::Epochs;
use crate::domain::{Entry, LogId};

/// One cut as the store remembers it (oldest first in [`LogStore::cuts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutRecord {
    /// Every key `≥ from_key` held at the time was removed.
    pub from_key: u64,
    /// How many entries it removed.
    pub entries: u64,
}

/// What [`LogStore::cut_from`] removed: every key `≥ from_key` that was held (visible or
/// aside), in key order, with its id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    pub from_key: u64,
    pub removed: Vec<(u64, Option<Bytes>)>,
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

/// Refuses epochs no store may keep: a current epoch below the history's last (see
/// [`Epochs::current`]).
pub(crate) fn check_epochs(epochs: &Epochs) -> StoreResult<()> {
    let last = epochs.history.last_epoch();
    if epochs.current < last {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "current epoch {} is below the history's last epoch {last}",
                epochs.current
            ),
        )));
    }
    Ok(())
}

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

    /// The node's epoch and history as last set ([`Epochs::default`], epoch 0 with an empty
    /// history, for a store that never had any).
    fn epochs(&self) -> Epochs;

    /// Replaces the epoch and history. Durable before it returns (for a file store: the
    /// `epochs` file replaced atomically and fsynced), so it may be followed at once by writes
    /// the new history labels. Setting what is already set writes nothing. Fails, writing
    /// nothing, when an fsync of the store has failed before (see [`LogStore::sync_failure`])
    /// or when `epochs.current` is below the history's last epoch; on an I/O error the store
    /// keeps the old epochs.
    fn set_epochs(&self, epochs: &Epochs) -> StoreResult<()>;

    /// Removes every held key `≥ from_key`, visible and held aside, and returns them in key
    /// order with their ids (see the module docs for what holds afterwards). Called by one task
    /// at a time, the same that calls `put`.
    ///
    /// When nothing is held at or above `from_key` it returns an empty [`Cut`] and writes
    /// nothing. Otherwise, for a durable store, the cut is durable before it returns; it fails,
    /// changing nothing, when an fsync has failed before, and on any error the entries stay
    /// held. Key 0 fails with [`StoreError::ZeroKey`].
    fn cut_from(&self, from_key: u64) -> StoreResult<Cut>;

    /// Every cut ever made on this store, oldest first (for a file store: as recorded on disk,
    /// across restarts).
    fn cuts(&self) -> Vec<CutRecord>;

    /// Whether the previous run of this store ended with [`LogStore::mark_clean_stop`] (or
    /// there was no previous run: a new log), so nothing it wrote was lost. Fixed when the
    /// store opens. Always true in memory.
    fn last_stop_clean(&self) -> bool;

    /// Records a clean stop, for [`LogStore::last_stop_clean`] at the next open: makes every
    /// entry whose `put` returned durable (as `sync`), then writes the marker durably. The last
    /// call at shutdown: a write after it (`put`, `cut_from`, `set_epochs`) withdraws the
    /// marker first. Fails, writing no marker, when an fsync has failed before.
    fn mark_clean_stop(&self) -> StoreResult<()>;

    /// The first fsync failure of this store, if one happened: after it nothing the store
    /// writes is vouched for (see the module docs). `None` for a store that never fsyncs.
    fn sync_failure(&self) -> Option<String>;
}
