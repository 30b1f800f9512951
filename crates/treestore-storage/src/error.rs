//! Typed errors of the storage engine.
//!
//! Every fallible operation returns [`Error`]. Corruption is always reported with
//! the page number (or file and offset) where it was found; the engine never hands
//! back bytes whose checksum did not match.

use std::path::PathBuf;

/// Result type of the storage engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed; `context` says what the engine was doing.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A page failed verification: bad checksum, wrong type tag or impossible layout.
    #[error("corrupt page {page}: {reason}")]
    CorruptPage { page: u64, reason: String },

    /// The database file as a whole is inconsistent (for example no valid meta page).
    #[error("corrupt database file {path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },

    /// The file exists but is not a TreeStore database (wrong magic number).
    #[error("{path} is not a TreeStore database file (bad magic number)")]
    NotATreeStoreFile { path: PathBuf },

    /// The file was written by a newer (or unknown) format version.
    #[error("{path} has format version {found}; this build reads version {supported}")]
    UnsupportedFormatVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// A read inside [`crate::cache_only`] needed a page that is not in the
    /// buffer pool; nothing was read from the disk.
    #[error("page {page} is not in the buffer pool (cache-only read)")]
    NotCached { page: u64 },

    /// The data directory does not exist (and creation was not requested).
    #[error("data directory {path} does not exist")]
    MissingDirectory { path: PathBuf },

    /// The data directory exists but holds no database (and creation was not requested).
    #[error("data directory {path} holds no TreeStore database")]
    NoDatabase { path: PathBuf },

    /// The path given as data directory is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },

    /// Another process holds the data directory's lock.
    #[error("data directory {path} is in use by another process ({holder})")]
    Locked { path: PathBuf, holder: String },

    /// A key is empty or longer than the maximum for this page size.
    #[error("key of {len} bytes is invalid: keys must be 1 to {max} bytes")]
    InvalidKey { len: usize, max: usize },

    /// A value is longer than the maximum value size.
    #[error("value of {len} bytes exceeds the maximum of {max} bytes")]
    ValueTooLarge { len: u64, max: u64 },

    /// Options given to `open` are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A write transaction lost a write-write conflict to a transaction that
    /// committed after it started (first committer wins). Retry the transaction.
    #[error("transaction conflict: a concurrent transaction committed a write to the same key first; retry")]
    Conflict,

    /// An earlier commit failed in a way that leaves the in-memory state unknown;
    /// the database must be reopened.
    #[error("database is poisoned by an earlier failed commit ({0}); reopen it")]
    Poisoned(String),
}

impl Error {
    /// Builds an [`Error::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A corrupt-page error.
    pub fn corrupt(page: u64, reason: impl Into<String>) -> Self {
        Error::CorruptPage {
            page,
            reason: reason.into(),
        }
    }

    /// True when retrying the same transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict)
    }

    /// True for every kind of detected on-disk corruption.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::CorruptPage { .. } | Error::CorruptFile { .. })
    }
}
