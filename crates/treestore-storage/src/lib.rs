//! TreeStore's storage engine.
//!
//! Layers, bottom up (each in its own module):
//!
//! - [`vfs`]: the file-system boundary; [`fault`] is a simulated disk for tests.
//! - [`page`]: fixed-size pages with a type tag and a crc32c checksum.
//! - [`meta`]: the two alternating meta pages naming the durable checkpoint.
//! - [`buffer_pool`]: bounded CLOCK cache of page images, pinning, dirty pages.
//! - [`pager`]: verified page reads through the pool, page writes.
//! - [`freelist`]: reusable and pending pages, persisted with each checkpoint.
//! - [`btree`]: the copy-on-write B+tree (nodes, overflow values, cursors, writer).
//! - [`wal`] and [`log_record`]: the write-ahead log (segments, framing, group
//!   commit) and the commit records in it.
//! - [`db`] and [`txn`]: snapshots, transactions and the commit path;
//!   [`group_commit`] combines concurrent committers into groups; [`syncer`]
//!   syncs the log for asynchronous committers;
//!   [`recovery`] opens a directory and replays the log; [`checkpoint`] makes the
//!   working tree durable in the page file; [`background`] runs checkpoints.
//! - [`check`]: the read-only integrity checker.
//! - [`watch`]: which commit last wrote a key range, for caches above the engine.
//!
//! ```no_run
//! use treestore_storage::{Db, Options};
//! let db = Db::open("data", Options::default())?;
//! let mut txn = db.begin_write();
//! txn.put(b"key", b"value")?;
//! txn.commit()?;
//! assert_eq!(db.begin_read().get(b"key")?, Some(b"value".to_vec()));
//! # Ok::<(), treestore_storage::Error>(())
//! ```

pub mod background;
pub mod btree;
pub mod buffer_pool;
pub mod check;
pub mod checkpoint;
pub mod db;
pub mod error;
pub mod fault;
pub mod freelist;
pub mod gather;
pub mod group_commit;
pub mod log_record;
pub mod meta;
pub mod page;
pub(crate) mod page_table;
pub mod pager;
pub mod recovery;
pub(crate) mod replay;
pub mod syncer;
pub mod txn;
pub mod varint;
pub mod vfs;
pub mod wal;
pub mod watch;

pub use check::CheckReport;
pub use db::{CommitInfo, Db, Options, RecoveryStats, Stats, WriteBatch, DATA_FILE, MAX_VALUE_LEN};
pub use error::{Error, Result};
pub use pager::cache_only;
pub use txn::{CommitFuture, Iter, ReadTxn, WriteTxn};
pub use wal::{Durability, WalStats};
pub use watch::Watch;
