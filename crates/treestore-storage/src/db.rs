//! The database: opening a data directory, snapshots, and the commit path.
//!
//! Commit (log first): under the commit mutex the transaction is validated
//! (first committer wins; in serializable mode also its reads), its sorted write
//! set is applied copy-on-write to the in-memory working tree (new pages are dirty
//! in the buffer pool), and the write set is appended to the write-ahead log
//! buffer. Outside the mutex the committer waits until the log is durable up to
//! its record (one fdatasync covers everyone waiting), then publishes the new
//! tree to readers. `commit()` returns only after that, so an acknowledged
//! commit survives any crash; a reader never sees a commit that could still be
//! lost. Concurrent committers go through [`crate::group_commit`], whose leader
//! does these steps once for a whole group.
//!
//! Checkpoints ([`crate::checkpoint`]) write the dirty pages to free locations and
//! a new meta page naming the tree and the log position it covers; recovery
//! ([`crate::recovery`]) loads the newest valid checkpoint and replays the log
//! after it.
//!
//! Concurrency: readers take a snapshot (an `Arc` of a published root) and never
//! block; write transactions buffer changes and serialize only at commit.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::background::Background;
use crate::btree::write::{Op, Writer};
use crate::btree::TreeRoot;
use crate::buffer_pool::PoolStats;
use crate::error::{Error, Result};
use crate::freelist::FreeList;
use crate::group_commit::CommitQueue;
use crate::log_record;
use crate::meta::Meta;
use crate::page::{PageId, DEFAULT_PAGE_SIZE};
use crate::pager::Pager;
use crate::syncer::{Syncer, SyncerThread};
use crate::txn::{CommitFuture, ReadSet, ReadTxn, WriteTxn};
use crate::vfs::{DirLock, OsVfs, Vfs};
use crate::wal::{Durability, Wal, WalStats};
use crate::watch::{Watch, Watches};

/// Name of the page file inside a data directory.
pub const DATA_FILE: &str = "data.tsdb";

/// Largest value accepted by `put`.
pub const MAX_VALUE_LEN: u64 = crate::btree::node::MAX_VALUE_LEN;

/// How to open a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Create the directory and database when missing (default true).
    pub create_if_missing: bool,
    /// Page size for a new database (power of two, 1 KiB to 64 KiB). An existing
    /// database keeps the page size it was created with.
    pub page_size: usize,
    /// Memory budget of the buffer pool in bytes.
    pub cache_bytes: usize,
    /// The file system to use (the real one, or a fault injector in tests).
    pub vfs: Arc<dyn Vfs>,
    /// When `commit()` returns: after fdatasync (default) or after a timer.
    pub durability: Durability,
    /// Size at which the log moves to a new segment file.
    pub wal_segment_bytes: u64,
    /// Checkpoint once this much log has been written since the last one.
    pub checkpoint_log_bytes: u64,
    /// Checkpoint at least this often while there are changes.
    pub checkpoint_interval: Duration,
    /// Run the background thread that checkpoints (and syncs in timer mode).
    /// Without it, checkpoints happen only through [`Db::checkpoint`] and close.
    pub background: bool,
    /// Zero-fill and sync the next log segment on a helper thread while the
    /// current one fills, so the commit that fills a segment does not write
    /// a whole segment of zeros first (see [`crate::wal`]).
    pub wal_prepare_ahead: bool,
    /// A transaction whose log record would exceed this many bytes is made
    /// durable by a checkpoint instead of the log (its pages are written once,
    /// not twice), as bulk loads are.
    pub large_txn_bytes: u64,
    /// Recovery applies the log to the tree in batches that hold at most
    /// about this much memory: the log segments a batch's writes lie in, plus
    /// an index of about 90 bytes per write. Larger batches rewrite each
    /// touched leaf fewer times (replay is faster and packs leaves better);
    /// a log whose batch would need more is applied in several.
    pub replay_batch_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            page_size: DEFAULT_PAGE_SIZE,
            cache_bytes: 64 << 20,
            vfs: Arc::new(OsVfs),
            durability: Durability::Sync,
            wal_segment_bytes: 16 << 20,
            checkpoint_log_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(60),
            background: true,
            wal_prepare_ahead: true,
            large_txn_bytes: 16 << 20,
            replay_batch_bytes: 512 << 20,
        }
    }
}

/// A consistent, immutable version of the database.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub seq: u64,
    pub tree: TreeRoot,
    pub entries: u64,
}

/// The published snapshot and who still uses older ones.
pub(crate) struct SnapshotTable {
    pub current: Arc<Snapshot>,
    /// Open snapshots (readers and writers) by sequence number.
    pub open: BTreeMap<u64, usize>,
    /// Open write transactions by snapshot sequence number.
    pub writers: BTreeMap<u64, usize>,
}

/// The committed change set of one transaction.
pub(crate) type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Sorts writes given in order by key, keeping one per key: the last (the
/// sort is stable, so equal keys stay in the order given).
pub(crate) fn sort_last_wins<K: Ord, V>(writes: &mut Vec<(K, V)>) {
    writes.sort_by(|a, b| a.0.cmp(&b.0));
    // `dedup_by` keeps the first of a run of equal keys: hand it the value of
    // each later one as that is dropped.
    writes.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        same
    });
}

/// Everything only the committer (and checkpointer) touches.
pub(crate) struct CommitState {
    /// The durable checkpoint.
    pub meta: Meta,
    /// The working tree: every applied commit, durable in the log or about to be.
    pub tree: TreeRoot,
    pub seq: u64,
    pub entries: u64,
    /// LSN just past the last applied commit's log record.
    pub last_lsn: u64,
    pub freelist: FreeList,
    /// Pages holding the free list of the durable checkpoint.
    pub freelist_pages: Vec<PageId>,
    /// Write sets of recent commits, for conflict detection.
    pub recent: VecDeque<(u64, Arc<WriteSet>)>,
    pub poisoned: Option<String>,
    pub last_checkpoint: Instant,
    pub checkpoints: u64,
    /// Time spent in checkpoints that wrote something, and in the last one.
    pub checkpoint_time: std::time::Duration,
    pub last_checkpoint_time: std::time::Duration,
    /// A checkpoint is syncing its pages with the mutex released (see
    /// [`crate::checkpoint`]); another waits on `DbInner::checkpointed`.
    pub checkpoint_in_flight: bool,
}

pub(crate) struct DbInner {
    pub dir: PathBuf,
    pub pager: Pager,
    pub wal: Wal,
    pub durability: Durability,
    pub checkpoint_log_bytes: u64,
    pub checkpoint_interval: Duration,
    pub large_txn_bytes: u64,
    pub recovery: RecoveryStats,
    pub background_error: Mutex<Option<String>>,
    pub snapshots: Mutex<SnapshotTable>,
    pub commit: Mutex<CommitState>,
    /// Signalled (with `commit`) when a checkpoint in flight is done.
    pub checkpointed: Condvar,
    /// Applied commits waiting for their log record to be durable.
    pub unpublished: Mutex<VecDeque<(u64, Arc<Snapshot>)>>,
    /// Committers waiting to be combined into a group.
    pub queue: Mutex<CommitQueue>,
    /// Groups of asynchronous committers waiting for the log to be synced.
    pub syncer: Syncer,
    /// Key ranges whose last writer callers follow ([`Db::watch`]).
    pub watches: Watches,
    pub _lock: Box<dyn DirLock>,
}

/// A handle to an open database. Cheap to clone; all clones share one engine.
/// When the last handle is dropped the log is synced and a final checkpoint is
/// taken (best effort; [`Db::close`] reports errors).
#[derive(Clone)]
pub struct Db {
    // Declared first so it drops first: it answers the asynchronous commits
    // handed to it before the final checkpoint.
    pub(crate) _syncer: Option<Arc<SyncerThread>>,
    // Its final checkpoint needs `inner` alive.
    pub(crate) _background: Arc<Background>,
    pub(crate) inner: Arc<DbInner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

/// Sizes and counters of an open database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub page_size: u64,
    /// Pages in the file.
    pub page_count: u64,
    /// Pages reusable now.
    pub free_pages: u64,
    /// Pages superseded but still needed by an open snapshot or by recovery.
    pub pending_pages: u64,
    /// Pages holding live data (meta, tree, overflow, free list).
    pub pages_in_use: u64,
    pub file_bytes: u64,
    pub entries: u64,
    pub depth: u32,
    /// Sequence number of the last commit.
    pub commit_seq: u64,
    /// Sequence number of the commit the durable checkpoint includes.
    pub checkpoint_commit_seq: u64,
    /// Log bytes written since the durable checkpoint.
    pub log_bytes_since_checkpoint: u64,
    pub checkpoints: u64,
    /// Nanoseconds spent in all checkpoints since open, and in the last one.
    pub checkpoint_nanos_total: u64,
    pub last_checkpoint_nanos: u64,
    pub pool: PoolStats,
    pub wal: WalStats,
    /// What the last open replayed from the log.
    pub recovery: RecoveryStats,
    /// The error of the last background checkpoint or timer sync, if it failed
    /// (the thread retries, and a successful checkpoint clears it; an error that
    /// poisons the database also fails commits).
    pub background_error: Option<String>,
}

/// What opening the database replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    pub replayed_commits: u64,
    /// Log bytes read after the checkpoint (records and any torn tail).
    pub replayed_bytes: u64,
    /// Bytes of a torn record cut off the end of the log.
    pub torn_tail_bytes: u64,
    /// Time spent reading and applying the log.
    pub replay_time: Duration,
}

/// What a successful commit produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// Sequence number of the commit (unchanged for an empty transaction).
    pub seq: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state behind these mutexes is updated only after every fallible step
    // has succeeded (or the database is marked poisoned), so a panic elsewhere
    // never leaves it half-changed.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Opens (or creates, per `options`) the database in directory `dir`,
    /// recovering committed transactions from the log.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let inner = Arc::new(crate::recovery::open(dir.as_ref(), &options)?);
        let background = Background::start(&inner, &options);
        let syncer = match options.durability {
            Durability::Sync => SyncerThread::start(&inner).map(Arc::new),
            Durability::Timer { .. } => None,
        };
        Ok(Db {
            _syncer: syncer,
            inner,
            _background: background,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Longest key accepted (depends on the page size).
    pub fn max_key_len(&self) -> usize {
        self.inner.max_key_len()
    }

    /// A watch on the keys in `[lower, upper)`: the sequence number of the
    /// last commit that wrote one of them (see [`crate::watch`] for how a
    /// cache of data read from the range uses it). A range with `lower >=
    /// upper` holds no key, so no commit ever changes its watch.
    pub fn watch(&self, lower: &[u8], upper: &[u8]) -> Arc<Watch> {
        // Under the commit mutex, so no commit falls between the starting
        // point and the watch being in the list.
        let st = lock(&self.inner.commit);
        self.inner.watches.add(lower, upper, st.seq)
    }

    /// Starts a read-only transaction on the latest committed state. Never blocks
    /// on writers and is never blocked by them.
    pub fn begin_read(&self) -> ReadTxn {
        let snap = self.inner.register(false);
        ReadTxn::new(self.inner.clone(), snap)
    }

    /// Starts a write transaction with snapshot isolation. Its changes are
    /// buffered until `commit`.
    pub fn begin_write(&self) -> WriteTxn {
        let snap = self.inner.register(true);
        WriteTxn::new(self.inner.clone(), snap, false)
    }

    /// Starts a serializable write transaction: besides write-write conflicts,
    /// commit fails when a transaction committed since its snapshot wrote a key
    /// this one read (or a key inside a range it scanned), which rules out
    /// write skew.
    pub fn begin_write_serializable(&self) -> WriteTxn {
        let snap = self.inner.register(true);
        WriteTxn::new(self.inner.clone(), snap, true)
    }

    /// Reads one key in its own snapshot.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.begin_read().get(key)
    }

    /// Writes one key in its own transaction.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<CommitInfo> {
        let mut txn = self.begin_write();
        txn.put(key, value)?;
        txn.commit()
    }

    /// Deletes one key in its own transaction.
    pub fn delete(&self, key: &[u8]) -> Result<CommitInfo> {
        let mut txn = self.begin_write();
        txn.delete(key)?;
        txn.commit()
    }

    /// Applies a batch atomically.
    pub fn write(&self, batch: WriteBatch) -> Result<CommitInfo> {
        let mut txn = self.begin_write();
        for (k, v) in batch.ops {
            match v {
                Some(v) => txn.put(&k, &v)?,
                None => txn.delete(&k)?,
            }
        }
        txn.commit()
    }

    /// Makes every commit so far durable (in timer mode, without waiting for
    /// the timer; in sync mode commits are durable already).
    pub fn sync(&self) -> Result<()> {
        self.inner.wal.sync_all()?;
        self.inner.publish_durable();
        Ok(())
    }

    /// Writes a checkpoint now (no-op when nothing changed since the last one).
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Syncs the log, takes a final checkpoint and reports any error. The
    /// database stays usable through other handles.
    pub fn close(self) -> Result<()> {
        self.inner.wal.sync_all()?;
        self.inner.checkpoint()
    }

    /// Current sizes and counters.
    pub fn stats(&self) -> Result<Stats> {
        let st = lock(&self.inner.commit);
        let page_count = st.freelist.page_count();
        let free = st.freelist.free_count() as u64;
        let pending = st.freelist.pending_count() as u64;
        let wal = self.inner.wal.stats();
        Ok(Stats {
            page_size: self.inner.pager.page_size() as u64,
            page_count,
            free_pages: free,
            pending_pages: pending,
            pages_in_use: page_count.saturating_sub(free + pending),
            file_bytes: self.inner.pager.file_len()?,
            entries: st.entries,
            depth: st.tree.depth,
            commit_seq: st.seq,
            checkpoint_commit_seq: st.meta.commit_seq,
            log_bytes_since_checkpoint: st.last_lsn.saturating_sub(st.meta.checkpoint_lsn),
            checkpoints: st.checkpoints,
            checkpoint_nanos_total: st.checkpoint_time.as_nanos() as u64,
            last_checkpoint_nanos: st.last_checkpoint_time.as_nanos() as u64,
            pool: self.inner.pager.pool_stats(),
            wal,
            recovery: self.inner.recovery,
            background_error: lock(&self.inner.background_error).clone(),
        })
    }

    /// Verifies the durable checkpoint on disk: see [`crate::check`].
    pub fn check(&self) -> Result<crate::check::CheckReport> {
        let st = lock(&self.inner.commit);
        crate::check::check(&self.inner.pager, &st.meta)
    }
}

/// A set of puts and deletes applied atomically by [`Db::write`].
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Applies a sorted write set to the working tree as commit `seq`. On error
/// nothing changed.
pub(crate) fn apply_batch(
    pager: &Pager,
    st: &mut CommitState,
    seq: u64,
    writes: &WriteSet,
) -> Result<()> {
    let ops: Vec<Op<'_>> = writes
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect();
    apply_ops(pager, st, seq, &ops)
}

/// Applies operations (sorted by key, each key once) as commit `seq`.
pub(crate) fn apply_ops(
    pager: &Pager,
    st: &mut CommitState,
    seq: u64,
    ops: &[Op<'_>],
) -> Result<()> {
    apply_ops_with(pager, st, seq, ops, false)
}

/// [`apply_ops`], dropping superseded images at once when `drop_old` (see
/// [`Writer::drop_superseded_images`]: recovery only).
pub(crate) fn apply_ops_with(
    pager: &Pager,
    st: &mut CommitState,
    seq: u64,
    ops: &[Op<'_>],
    drop_old: bool,
) -> Result<()> {
    let mut writer = Writer::new(pager, &mut st.freelist);
    if drop_old {
        writer.drop_superseded_images();
    }
    let tree = match writer.apply(st.tree, ops) {
        Ok(t) => t,
        Err(e) => {
            writer.rollback();
            return Err(e);
        }
    };
    let delta = writer.entry_delta();
    let (superseded, _) = writer.finish();
    st.freelist.supersede(seq, superseded);
    st.tree = tree;
    st.entries = (st.entries as i64 + delta).max(0) as u64;
    Ok(())
}

impl DbInner {
    pub(crate) fn pager(&self) -> &Pager {
        &self.pager
    }

    pub(crate) fn max_key_len(&self) -> usize {
        self.pager.limits().max_key
    }

    /// Takes the current snapshot and records it as open (atomically, so a commit
    /// cannot reuse its pages in between).
    fn register(&self, writer: bool) -> Arc<Snapshot> {
        let mut t = lock(&self.snapshots);
        let snap = t.current.clone();
        *t.open.entry(snap.seq).or_default() += 1;
        if writer {
            *t.writers.entry(snap.seq).or_default() += 1;
        }
        snap
    }

    /// Forgets an open snapshot.
    pub(crate) fn unregister(&self, seq: u64, writer: bool) {
        let mut t = lock(&self.snapshots);
        let drop_one = |m: &mut BTreeMap<u64, usize>| {
            if let Some(n) = m.get_mut(&seq) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&seq);
                }
            }
        };
        drop_one(&mut t.open);
        if writer {
            drop_one(&mut t.writers);
        }
    }

    /// Oldest snapshot anyone may still read, and the oldest write transaction's.
    pub(crate) fn oldest_snapshots(&self) -> (u64, Option<u64>) {
        let t = lock(&self.snapshots);
        let oldest = t
            .open
            .keys()
            .next()
            .copied()
            .unwrap_or(t.current.seq)
            .min(t.current.seq);
        (oldest, t.writers.keys().next().copied())
    }

    /// Makes superseded pages that no snapshot needs reusable (see
    /// [`release_superseded`]).
    pub(crate) fn release_pages(&self, st: &mut CommitState) {
        let (oldest, _) = self.oldest_snapshots();
        release_superseded(&self.pager, &mut st.freelist, oldest);
    }

    /// Commits a write set made on snapshot `base`: through the group-commit
    /// queue ([`crate::group_commit`]), or alone when it writes nothing (a
    /// validation only) or is large enough to be made durable by a checkpoint.
    pub(crate) fn commit(
        &self,
        base: u64,
        writes: WriteSet,
        reads: Option<ReadSet>,
    ) -> Result<CommitInfo> {
        if !writes.is_empty() && log_record::encoded_len(&writes) <= self.large_txn_bytes {
            return self.commit_queued(base, writes, reads);
        }
        self.commit_alone(base, writes, reads)
    }

    /// [`DbInner::commit`] for an asynchronous committer: the write set is
    /// validated and applied now (or queued behind the group being applied),
    /// and the future resolves once it is durable. A write set too large for
    /// the log is committed by a checkpoint within this call.
    pub(crate) fn commit_async(
        &self,
        base: u64,
        writes: WriteSet,
        reads: Option<ReadSet>,
    ) -> CommitFuture {
        if !writes.is_empty() && log_record::encoded_len(&writes) <= self.large_txn_bytes {
            return CommitFuture::queued(self.commit_queued_async(base, writes, reads));
        }
        CommitFuture::ready(self.commit_alone(base, writes, reads))
    }

    /// Commits one write set under the commit mutex by itself.
    fn commit_alone(
        &self,
        base: u64,
        writes: WriteSet,
        reads: Option<ReadSet>,
    ) -> Result<CommitInfo> {
        let by_checkpoint = log_record::encoded_len(&writes) > self.large_txn_bytes;
        let (seq, lsn) = {
            let mut guard = lock(&self.commit);
            // Only one checkpoint at a time.
            while by_checkpoint && guard.checkpoint_in_flight {
                guard = self
                    .checkpointed
                    .wait(guard)
                    .unwrap_or_else(|p| p.into_inner());
            }
            let st = &mut *guard;
            if let Some(why) = &st.poisoned {
                return Err(Error::Poisoned(why.clone()));
            }
            if st.conflicts(base, &writes, reads.as_ref()) {
                return Err(Error::Conflict);
            }
            if writes.is_empty() {
                return Ok(CommitInfo { seq: base });
            }
            let seq = st.seq + 1;
            self.release_pages(st);
            apply_batch(&self.pager, st, seq, &writes)?;
            self.watches.note(seq, &writes);
            // From here on the working tree holds this commit: if it cannot be
            // made durable, the in-memory state is ahead of the disk for good.
            if by_checkpoint {
                return self.commit_by_checkpoint(st, seq, writes);
            }
            let lsn = match self
                .wal
                .append_with(1, |_, out| log_record::encode_commit(seq, &writes, out))
            {
                Ok(lsn) => lsn,
                Err(e) => {
                    st.poisoned = Some(e.to_string());
                    return Err(e);
                }
            };
            st.seq = seq;
            st.last_lsn = lsn;
            self.remember_writes(st, seq, writes);
            self.stage_snapshot(st, lsn);
            (seq, lsn)
        };
        if self.durability == Durability::Sync {
            if let Err(e) = self.wal.wait_durable(lsn) {
                lock(&self.commit)
                    .poisoned
                    .get_or_insert_with(|| e.to_string());
                return Err(e);
            }
            self.publish_durable();
        }
        Ok(CommitInfo { seq })
    }

    /// The working tree as the snapshot of commit `st.seq`, whose log record
    /// ends at `lsn`: published once that is durable (sync mode), or at once
    /// (timer mode: durable within one interval).
    pub(crate) fn stage_snapshot(&self, st: &CommitState, lsn: u64) {
        let snap = Arc::new(Snapshot {
            seq: st.seq,
            tree: st.tree,
            entries: st.entries,
        });
        match self.durability {
            Durability::Sync => lock(&self.unpublished).push_back((lsn, snap)),
            Durability::Timer { .. } => lock(&self.snapshots).current = snap,
        }
    }

    /// Makes a large commit durable by checkpointing instead of logging it: the
    /// checkpoint syncs the log (so every earlier commit is durable), writes the
    /// pages once and names commit `seq` in its meta page. The log stays
    /// continuous because the checkpoint covers every record before its position.
    fn commit_by_checkpoint(
        &self,
        st: &mut CommitState,
        seq: u64,
        writes: WriteSet,
    ) -> Result<CommitInfo> {
        st.seq = seq;
        let covered = match self.checkpoint_locked(st) {
            Ok(lsn) => lsn,
            Err(e) => {
                st.poisoned.get_or_insert_with(|| e.to_string());
                return Err(e);
            }
        };
        if let Some(lsn) = covered {
            // Best effort, as after any checkpoint.
            let _ = self.wal.remove_below(lsn);
        }
        self.remember_writes(st, seq, writes);
        self.publish_durable();
        lock(&self.snapshots).current = Arc::new(Snapshot {
            seq,
            tree: st.tree,
            entries: st.entries,
        });
        Ok(CommitInfo { seq })
    }

    /// Keeps the write set of commit `seq` for conflict checks, and drops those
    /// no open write transaction can conflict with any more (only transactions
    /// that started before a commit can).
    fn remember_writes(&self, st: &mut CommitState, seq: u64, writes: WriteSet) {
        st.recent.push_back((seq, Arc::new(writes)));
        self.forget_old_writes(st);
    }

    /// Drops the write sets no open write transaction can conflict with.
    pub(crate) fn forget_old_writes(&self, st: &mut CommitState) {
        match self.oldest_snapshots().1 {
            Some(w) => st.recent.retain(|(s, _)| *s > w),
            None => st.recent.clear(),
        }
    }

    /// Publishes every applied commit whose log record is durable.
    pub(crate) fn publish_durable(&self) {
        let durable = self.wal.durable_lsn();
        let mut queue = lock(&self.unpublished);
        let mut newest = None;
        while queue.front().is_some_and(|(lsn, _)| *lsn <= durable) {
            newest = queue.pop_front().map(|(_, s)| s);
        }
        if let Some(snap) = newest {
            let mut t = lock(&self.snapshots);
            if snap.seq > t.current.seq {
                t.current = snap;
            }
        }
    }

    /// Whether the log or the clock says a checkpoint is due.
    pub(crate) fn checkpoint_due(&self) -> bool {
        let st = lock(&self.commit);
        let log_bytes = st.last_lsn.saturating_sub(st.meta.checkpoint_lsn);
        st.poisoned.is_none()
            && !st.checkpoint_in_flight
            && st.seq != st.meta.commit_seq
            && (log_bytes >= self.checkpoint_log_bytes
                || st.last_checkpoint.elapsed() >= self.checkpoint_interval)
    }
}

/// Makes the pages superseded by commits up to `oldest` (the oldest snapshot
/// anyone may read) reusable and drops their cached images: a dirty image of
/// a dead page must never be written.
pub(crate) fn release_superseded(pager: &Pager, freelist: &mut FreeList, oldest: u64) {
    freelist.release_each(oldest, |id| pager.invalidate(id));
}

impl CommitState {
    /// Whether a transaction on snapshot `base` conflicts with a commit made
    /// since (see [`touches`]).
    pub(crate) fn conflicts(&self, base: u64, writes: &WriteSet, reads: Option<&ReadSet>) -> bool {
        self.recent
            .iter()
            .any(|(seq, set)| *seq > base && touches(set, writes, reads))
    }
}

/// Whether a committed write set `set` conflicts with a transaction that did
/// not see it: it wrote one of the same keys, or (serializable) a key the
/// transaction read or a key inside a range it scanned.
pub(crate) fn touches(set: &WriteSet, writes: &WriteSet, reads: Option<&ReadSet>) -> bool {
    overlaps(set, writes) || reads.is_some_and(|r| r.touched_by(set))
}

fn overlaps(a: &WriteSet, b: &WriteSet) -> bool {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.keys().any(|k| large.contains_key(k))
}
