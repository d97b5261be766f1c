//! The `EventStore` trait: the coordinator's durable replica of the event log plus its
//! projection rows, committed atomically. sled lives behind it (`sled_store`), and an in-memory
//! implementation (`mem`) serves tests; both pass the same conformance suite.

mod mem;
mod migrate;
mod segment;
mod sled_store;

#[cfg(test)]
mod conformance;

pub use mem::MemStore;
pub use sled_store::SledStore;

use std::path::PathBuf;

/// Log entries `(stream_seq, wire bytes)` in stream order.
pub type LogIter<'a> = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + Send + 'a>;

/// One atomic unit of ingest: new log entries, the projection rows they changed, and the
/// last stream sequence they cover (including messages that were dropped as duplicates or
/// parked, so a restart does not look at them again).
///
/// Rows are a snapshot, not written with every commit: a commit with `snapshot` set carries
/// every row changed since the previous snapshot, and the store records that the rows now
/// reflect the log up to `applied_stream_seq` (`EventStore::rows_at`). A commit without it
/// leaves rows and `rows_at` alone; whoever loads the rows folds the log entries after
/// `rows_at` on top (snapshot + tail replay).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Commit {
    /// `(stream_seq, wire bytes)`, ascending by stream_seq.
    pub log: Vec<(u64, bytes::Bytes)>,
    /// Projection rows to upsert, by key; an empty value deletes the row.
    pub rows: Vec<(String, Vec<u8>)>,
    /// Highest stream sequence this commit accounts for.
    pub applied_stream_seq: u64,
    /// The rows (with those stored before) reflect the log up to `applied_stream_seq`.
    pub snapshot: bool,
}

/// Errors of the store layer; each names the store path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("store {path} is in use by another process (is the coordinator still running?)")]
    Locked { path: PathBuf },
    #[error("store I/O failed during {op}")]
    Io {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("store holds a malformed {what} under key {key}")]
    Corrupt { what: &'static str, key: String },
    #[error(
        "store {path} has on-disk format {found}, but this coordinator reads format {supported} \
         and older: run a coordinator that knows format {found}, or move {path} away and start \
         again (the coordinator then re-reads the event stream into a new store)"
    )]
    Format {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("cannot convert store {path} to log segments")]
    Convert {
        path: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
    #[error("commit would move the applied stream sequence backwards ({from} -> {to})")]
    Backwards { from: u64, to: u64 },
}

/// A durable, append-only event log with projection rows beside it.
///
/// Contract (checked by the conformance suite): a commit is all-or-nothing; `flush` makes every
/// earlier commit durable; the log is ordered by stream sequence; `applied_stream_seq` never moves
/// backwards; a commit's log entries are at or below its `applied_stream_seq` and above the
/// previous one, except re-commits of already stored entries, which overwrite them with the same
/// bytes and are not counted again.
pub trait EventStore: Send + Sync + 'static {
    /// Highest stream sequence covered by a commit, 0 for an empty store.
    fn applied_stream_seq(&self) -> Result<u64, StoreError>;
    /// Number of log entries.
    fn log_len(&self) -> Result<u64, StoreError>;
    /// Applies one commit atomically (not yet durable: see `flush`). By reference, so that a
    /// retry after a failure commits the same batch without copying it first.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;
    /// Blocks until every earlier commit is on disk.
    fn flush(&self) -> Result<(), StoreError>;
    /// Log entries with stream_seq >= `from`, ascending.
    fn log_from(&self, from: u64) -> LogIter<'_>;
    /// Every projection row, ascending by key.
    fn rows(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Highest stream sequence the stored rows reflect: the `applied_stream_seq` of the last
    /// snapshot commit (or `replace_rows`). Log entries above it are not folded into the rows
    /// yet. A store that never recorded it (written before snapshots, when every commit
    /// carried its rows) answers `applied_stream_seq`.
    fn rows_at(&self) -> Result<u64, StoreError>;
    /// Replaces all projection rows (used by `rebuild`), atomically, and flushes; they reflect
    /// the whole log (`rows_at` becomes `applied_stream_seq`).
    fn replace_rows(&self, rows: Vec<(String, Vec<u8>)>) -> Result<(), StoreError>;
    /// Identity of the events this coordinator publishes about itself: its incarnation
    /// (created on first use, then kept) and the next `n` seqs, reserved durably so a seq is
    /// never handed out twice, even across a crash.
    fn reserve_own_seqs(&self, n: u64) -> Result<(String, u64), StoreError>;
    /// After a failed write (full or read-only disk): drop what is not durable and get ready
    /// to accept writes again, so the caller can retry its un-acknowledged commit. Everything
    /// flushed before is kept. The default does nothing (stores without such a failure mode).
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
