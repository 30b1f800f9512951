//! The database: opening a data directory, snapshots, and the commit path.
//!
//! Commit (shadow paging): the batch is applied copy-on-write to the current tree,
//! new pages are written to free locations, the free list is written, the file is
//! synced, then the meta page for the new sequence number is written into the
//! slot the previous commit did not use and synced again. Only then is the new
//! tree published to readers. A crash at any instant leaves either the old or the
//! new meta page valid, each naming a complete tree.
//!
//! Concurrency: readers take a snapshot (an `Arc` of the published root) and never
//! block; write transactions buffer changes and serialize only at commit, where
//! first-committer-wins validation rejects a transaction whose writes overlap a
//! commit made after it began.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::btree::write::{Op, Writer};
use crate::btree::TreeRoot;
use crate::buffer_pool::PoolStats;
use crate::error::{Error, Result};
use crate::freelist::{self, FreeList};
use crate::meta::{self, Meta};
use crate::page::{self, PageId, PageType, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::pager::Pager;
use crate::txn::{ReadTxn, WriteTxn};
use crate::vfs::{DirLock, OsVfs, PathKind, Vfs};

/// Name of the page file inside a data directory.
pub const DATA_FILE: &str = "data.tsdb";

/// Largest value accepted by `put`.
pub const MAX_VALUE_LEN: u64 = 256 << 20;

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            page_size: DEFAULT_PAGE_SIZE,
            cache_bytes: 64 << 20,
            vfs: Arc::new(OsVfs),
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
struct SnapshotTable {
    current: Arc<Snapshot>,
    /// Open snapshots (readers and writers) by sequence number.
    open: BTreeMap<u64, usize>,
    /// Open write transactions by snapshot sequence number.
    writers: BTreeMap<u64, usize>,
}

/// The committed change set of one transaction.
pub(crate) type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Everything only the committer touches.
struct CommitState {
    meta: Meta,
    freelist: FreeList,
    /// Pages holding the free list of the durable checkpoint.
    freelist_pages: Vec<PageId>,
    /// Write sets of recent commits, for conflict detection.
    recent: VecDeque<(u64, Arc<WriteSet>)>,
    poisoned: Option<String>,
}

pub(crate) struct DbInner {
    dir: PathBuf,
    pager: Pager,
    snapshots: Mutex<SnapshotTable>,
    commit: Mutex<CommitState>,
    _lock: Box<dyn DirLock>,
}

/// A handle to an open database. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

/// Sizes and counters of an open database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub page_size: u64,
    /// Pages in the file.
    pub page_count: u64,
    /// Pages reusable now.
    pub free_pages: u64,
    /// Pages superseded but still needed by an open snapshot.
    pub pending_pages: u64,
    /// Pages holding live data (meta, tree, overflow, free list).
    pub pages_in_use: u64,
    pub file_bytes: u64,
    pub entries: u64,
    pub depth: u32,
    /// Sequence number of the last commit.
    pub commit_seq: u64,
    pub pool: PoolStats,
}

/// What a successful commit produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// Sequence number of the commit (unchanged for an empty transaction).
    pub seq: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state behind these mutexes is updated only after every fallible step
    // of a commit has succeeded, so a panic never leaves it half-changed.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Opens (or creates, per `options`) the database in directory `dir`.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let dir = dir.as_ref().to_path_buf();
        let vfs = options.vfs.clone();
        let kind = vfs
            .path_kind(&dir)
            .map_err(|e| Error::io(format!("inspecting data directory {}", dir.display()), e))?;
        match kind {
            PathKind::Directory => {}
            PathKind::Other => return Err(Error::NotADirectory { path: dir }),
            PathKind::Missing if options.create_if_missing => vfs
                .create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating data directory {}", dir.display()), e))?,
            PathKind::Missing => return Err(Error::MissingDirectory { path: dir }),
        }
        let dir_lock = vfs.lock_dir(&dir)?;
        let path = dir.join(DATA_FILE);
        let exists = vfs
            .path_kind(&path)
            .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?
            != PathKind::Missing;
        if !exists && !options.create_if_missing {
            return Err(Error::NoDatabase { path: dir });
        }
        let file = vfs
            .open(&path, options.create_if_missing)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file
            .len()
            .map_err(|e| Error::io(format!("reading the length of {}", path.display()), e))?;
        if len == 0 {
            if !options.create_if_missing {
                return Err(Error::NoDatabase { path: dir });
            }
            if !page::valid_page_size(options.page_size) {
                return Err(Error::InvalidOptions(format!(
                    "page size {} is not a power of two between 1024 and {MAX_PAGE_SIZE}",
                    options.page_size
                )));
            }
            initialize(&*file, &path, options.page_size)?;
            vfs.sync_dir(&dir)
                .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))?;
        }
        let (meta, page_size) = read_meta(&*file, &path)?;
        let pager = Pager::new(file, path.clone(), page_size, options.cache_bytes);
        let (free, freelist_pages) = load_freelist(&pager, &meta)?;
        let file_len = pager.file_len()?;
        let want = meta.page_count * page_size as u64;
        if file_len < want {
            return Err(Error::CorruptFile {
                path,
                reason: format!("file is {file_len} bytes but the checkpoint needs {want}"),
            });
        }
        if file_len > want {
            // Pages past the checkpoint's end belong to a commit that never finished.
            pager.truncate(meta.page_count)?;
        }
        let snapshot = Arc::new(Snapshot {
            seq: meta.seq,
            tree: TreeRoot {
                root: meta.root,
                depth: meta.depth,
            },
            entries: meta.entry_count,
        });
        Ok(Db {
            inner: Arc::new(DbInner {
                dir,
                pager,
                snapshots: Mutex::new(SnapshotTable {
                    current: snapshot,
                    open: BTreeMap::new(),
                    writers: BTreeMap::new(),
                }),
                commit: Mutex::new(CommitState {
                    freelist: FreeList::new(meta.page_count, free),
                    meta,
                    freelist_pages,
                    recent: VecDeque::new(),
                    poisoned: None,
                }),
                _lock: dir_lock,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Longest key accepted (depends on the page size).
    pub fn max_key_len(&self) -> usize {
        self.inner.pager.limits().max_key
    }

    /// Starts a read-only transaction on the latest committed state. Never blocks
    /// on writers and is never blocked by them.
    pub fn begin_read(&self) -> ReadTxn {
        let snap = self.inner.register(false);
        ReadTxn::new(self.inner.clone(), snap)
    }

    /// Starts a write transaction. Its changes are buffered until `commit`.
    pub fn begin_write(&self) -> WriteTxn {
        let snap = self.inner.register(true);
        WriteTxn::new(self.inner.clone(), snap)
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

    /// Current sizes and counters.
    pub fn stats(&self) -> Result<Stats> {
        let st = lock(&self.inner.commit);
        let page_count = st.meta.page_count;
        let free = st.freelist.free_count() as u64;
        let pending = st.freelist.pending_count() as u64;
        Ok(Stats {
            page_size: self.inner.pager.page_size() as u64,
            page_count,
            free_pages: free,
            pending_pages: pending,
            pages_in_use: page_count.saturating_sub(free + pending),
            file_bytes: self.inner.pager.file_len()?,
            entries: st.meta.entry_count,
            depth: st.meta.depth,
            commit_seq: st.meta.seq,
            pool: self.inner.pager.pool_stats(),
        })
    }

    /// Verifies the whole file: see [`crate::check`].
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

    /// Commits a write set made on snapshot `base`.
    pub(crate) fn commit(&self, base: u64, writes: WriteSet) -> Result<CommitInfo> {
        let mut guard = lock(&self.commit);
        let st = &mut *guard;
        if let Some(why) = &st.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        for (seq, set) in &st.recent {
            if *seq > base && overlaps(set, &writes) {
                return Err(Error::Conflict);
            }
        }
        if writes.is_empty() {
            return Ok(CommitInfo { seq: st.meta.seq });
        }
        let seq = st.meta.seq + 1;
        let (oldest_open, oldest_writer) = {
            let t = lock(&self.snapshots);
            let oldest = t.open.keys().next().copied().unwrap_or(t.current.seq);
            (oldest, t.writers.keys().next().copied())
        };
        st.freelist.release(oldest_open);

        let ops: Vec<Op<'_>> = writes
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        let base_tree = TreeRoot {
            root: st.meta.root,
            depth: st.meta.depth,
        };
        let page_count_before = st.freelist.page_count();
        let mut writer = Writer::new(&self.pager, &mut st.freelist);
        let tree = match writer.apply(base_tree, &ops) {
            Ok(t) => t,
            Err(e) => {
                writer.rollback();
                return Err(e);
            }
        };
        let entries = (st.meta.entry_count as i64 + writer.entry_delta()).max(0) as u64;
        let (mut superseded, mut allocated) = writer.finish();
        superseded.extend_from_slice(&st.freelist_pages);
        st.freelist.free_after(seq, superseded);
        let trimmed = st.freelist.trim_tail();

        // Write the new pages and the free list, then sync: nothing durable
        // refers to them yet, so a failure here is undone in memory.
        let chain = match self.write_checkpoint_pages(&mut st.freelist, &mut allocated) {
            Ok(p) => p,
            Err(e) => {
                self.pager.discard_staged();
                for &id in &allocated {
                    self.pager.invalidate(id);
                }
                st.freelist
                    .undo_commit(seq, trimmed, &allocated, page_count_before);
                return Err(e);
            }
        };
        let (chain, recorded) = chain;
        let meta = Meta {
            page_size: self.pager.page_size() as u32,
            seq,
            root: tree.root,
            depth: tree.depth,
            freelist_head: chain.first().copied().unwrap_or(0),
            page_count: st.freelist.page_count(),
            entry_count: entries,
            free_count: recorded,
            checkpoint_lsn: 0,
        };
        // The switch: once the meta page is durable the commit has happened. If
        // writing or syncing it fails we cannot know which meta a restart will
        // pick, so the handle refuses further commits until reopened.
        if let Err(e) = write_meta(&self.pager, &meta).and_then(|()| self.pager.sync()) {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        let old_count = st.meta.page_count;
        st.meta = meta;
        st.freelist_pages = chain;
        let writes = Arc::new(writes);
        st.recent.push_back((seq, writes));
        match oldest_writer {
            // Only transactions that started before a commit can conflict with it.
            Some(w) => st.recent.retain(|(s, _)| *s > w),
            None => st.recent.clear(),
        }
        {
            let mut t = lock(&self.snapshots);
            t.current = Arc::new(Snapshot { seq, tree, entries });
        }
        if meta.page_count < old_count {
            // Best effort: the trimmed tail is free either way and a restart
            // truncates it too.
            let _ = self.pager.truncate(meta.page_count);
        }
        Ok(CommitInfo { seq })
    }

    /// Flushes staged tree pages, writes the free-list chain (taking its pages
    /// from the free list) and syncs. Returns the chain and the number of
    /// recorded free pages.
    fn write_checkpoint_pages(
        &self,
        freelist: &mut FreeList,
        allocated: &mut Vec<PageId>,
    ) -> Result<(Vec<PageId>, u64)> {
        self.pager.flush()?;
        let page_size = self.pager.page_size();
        // Taking the lowest free pages for the chain never splits a run, so the
        // number of pages needed can only shrink: size the chain once.
        let needed = freelist::pages_needed(&freelist.all_recorded(), page_size);
        let chain: Vec<PageId> = (0..needed).map(|_| freelist.allocate()).collect();
        allocated.extend_from_slice(&chain);
        let ids = freelist.all_recorded();
        let pages = freelist::encode(&ids, &chain, page_size);
        self.pager.write_direct(&pages)?;
        self.pager.sync()?;
        Ok((chain, ids.len() as u64))
    }
}

fn overlaps(a: &WriteSet, b: &WriteSet) -> bool {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.keys().any(|k| large.contains_key(k))
}

fn write_meta(pager: &Pager, meta: &Meta) -> Result<()> {
    let mut buf = vec![0u8; pager.page_size()];
    meta.encode(&mut buf);
    pager.write_direct(&[(meta.slot(), buf)])
}

/// Writes the two meta pages of an empty database and syncs.
fn initialize(file: &dyn crate::vfs::StorageFile, path: &Path, page_size: usize) -> Result<()> {
    let mut buf = vec![0u8; page_size];
    for seq in [0u64, 1] {
        let meta = Meta {
            page_size: page_size as u32,
            seq,
            page_count: 2,
            ..Meta::default()
        };
        meta.encode(&mut buf);
        file.write_all_at(&buf, seq * page_size as u64)
            .map_err(|e| Error::io(format!("initializing {}", path.display()), e))?;
    }
    file.sync_data()
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// Finds the newest valid meta page. Page 0 tells the page size; when page 0 is
/// damaged, page 1 is looked for at every possible page size.
fn read_meta(file: &dyn crate::vfs::StorageFile, path: &Path) -> Result<(Meta, usize)> {
    let len = file
        .len()
        .map_err(|e| Error::io(format!("reading the length of {}", path.display()), e))?;
    let read = |offset: u64, size: usize| -> Result<Option<Vec<u8>>> {
        if offset + size as u64 > len {
            return Ok(None);
        }
        let mut buf = vec![0u8; size];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(Some(buf))
    };
    let head = read(0, meta::PROBE_LEN)?.unwrap_or_default();
    let probed = meta::probe(&head, path);
    let sizes: Vec<usize> = match &probed {
        Ok(size) => vec![*size],
        Err(Error::UnsupportedFormatVersion { .. }) => return Err(probed.unwrap_err()),
        Err(_) => (10..=16).map(|s| 1usize << s).collect(),
    };
    let mut problems = Vec::new();
    for size in sizes {
        let mut best: Option<Meta> = None;
        for slot in 0..2u64 {
            match read(slot * size as u64, size)? {
                None => problems.push(format!("meta page {slot} is missing (file too short)")),
                Some(buf) => match Meta::decode(&buf, slot) {
                    Ok(m) => {
                        if best.is_none_or(|b| m.seq > b.seq) {
                            best = Some(m);
                        }
                    }
                    Err(e) => problems.push(e.to_string()),
                },
            }
        }
        if let Some(m) = best {
            return Ok((m, size));
        }
    }
    match probed {
        Err(e) => Err(e),
        Ok(_) => Err(Error::CorruptFile {
            path: path.to_path_buf(),
            reason: format!("no valid meta page: {}", problems.join("; ")),
        }),
    }
}

/// Reads the free-list chain named by `meta`.
fn load_freelist(pager: &Pager, meta: &Meta) -> Result<(Vec<PageId>, Vec<PageId>)> {
    let mut ids = Vec::new();
    let mut chain = Vec::new();
    let mut next = meta.freelist_head;
    while next != 0 {
        if chain.len() as u64 >= meta.page_count {
            return Err(Error::corrupt(meta.freelist_head, "free-list chain loops"));
        }
        let page = pager.read_uncached(next, PageType::FreeList)?;
        let (mut got, link) = freelist::decode(&page, next, meta.page_count)?;
        ids.append(&mut got);
        chain.push(next);
        next = link;
    }
    if ids.len() as u64 != meta.free_count {
        return Err(Error::CorruptFile {
            path: pager.path().clone(),
            reason: format!(
                "free list holds {} pages, meta records {}",
                ids.len(),
                meta.free_count
            ),
        });
    }
    Ok((ids, chain))
}
