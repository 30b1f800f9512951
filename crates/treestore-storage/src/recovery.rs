//! Opening a data directory: checks, locking, the newest valid checkpoint, and
//! replay of the log after it.
//!
//! Replay ([`crate::replay`]) reads every valid record from the checkpoint's
//! log position on and applies the commits to the checkpoint's tree in
//! memory. A torn record at the very end of the log (a write cut short by the
//! crash) is cut off; a bad record anywhere before that is reported with its
//! segment and offset and the database is not opened, rather than silently
//! dropping committed data. The
//! replayed commits stay in memory and in the log until the next checkpoint
//! (the background thread takes it once the log is past its threshold), so
//! opening does not wait for the whole tree to be written.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::btree::TreeRoot;
use crate::db::{CommitState, DbInner, Options, RecoveryStats, Snapshot, SnapshotTable, DATA_FILE};
use crate::error::{Error, Result};
use crate::freelist::{self, FreeList};
use crate::group_commit::CommitQueue;
use crate::meta::{self, Meta};
use crate::page::{self, PageId, PageType, MAX_PAGE_SIZE};
use crate::pager::Pager;
use crate::replay::replay;
use crate::vfs::{PathKind, StorageFile, Vfs};
use crate::wal::{self, Wal, WAL_DIR};

/// Opens and recovers the database in `dir`.
pub(crate) fn open(dir: &Path, options: &Options) -> Result<DbInner> {
    let dir = dir.to_path_buf();
    let vfs = options.vfs.clone();
    if options.large_txn_bytes > wal::MAX_RECORD_LEN {
        // Anything larger goes through a checkpoint; a logged record must stay
        // within what the log reader accepts.
        return Err(Error::InvalidOptions(format!(
            "large_txn_bytes {} exceeds the largest log record ({} bytes)",
            options.large_txn_bytes,
            wal::MAX_RECORD_LEN
        )));
    }
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
    let wal_dir = dir.join(WAL_DIR);
    let interrupted_init = len > 0
        && options.create_if_missing
        && interrupted_initialization(&*file, len, &path, &*vfs, &wal_dir, options.page_size)?;
    if len == 0 || interrupted_init {
        if !options.create_if_missing {
            return Err(Error::NoDatabase { path: dir });
        }
        if !page::valid_page_size(options.page_size) {
            return Err(Error::InvalidOptions(format!(
                "page size {} is not a power of two between 1024 and {MAX_PAGE_SIZE}",
                options.page_size
            )));
        }
        file.set_len(0)
            .map_err(|e| Error::io(format!("resetting {}", path.display()), e))?;
        initialize(&*file, &path, options.page_size)?;
        vfs.sync_dir(&dir)
            .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))?;
    }
    let (meta, page_size) = read_meta(&*file, &path)?;
    let pager = Pager::new(file, path.clone(), page_size, options.cache_bytes);
    let file_len = pager.file_len()?;
    let want = meta.page_count.saturating_mul(page_size as u64);
    if file_len < want {
        return Err(Error::CorruptFile {
            path,
            reason: format!("file is {file_len} bytes but the checkpoint needs {want}"),
        });
    }
    // Pages past the checkpoint's end (written after it) are left in place:
    // nothing refers to them, recovery rebuilds their contents from the log
    // into pages it allocates from the checkpoint's end on (overwriting them),
    // and the next checkpoint cuts the file to its length. Cutting them here
    // would make opening wait for the file system to drop them (seconds, when
    // the crashed process left them dirty in the page cache).
    let (free, freelist_pages) = load_freelist(&pager, &meta)?;

    match vfs
        .path_kind(&wal_dir)
        .map_err(|e| Error::io(format!("inspecting {}", wal_dir.display()), e))?
    {
        PathKind::Directory => {}
        PathKind::Other => return Err(Error::NotADirectory { path: wal_dir }),
        PathKind::Missing => {
            vfs.create_dir_all(&wal_dir)
                .and_then(|()| vfs.sync_dir(&dir))
                .map_err(|e| {
                    Error::io(format!("creating log directory {}", wal_dir.display()), e)
                })?;
        }
    }

    let mut st = CommitState {
        meta,
        tree: TreeRoot {
            root: meta.root,
            depth: meta.depth,
        },
        seq: meta.commit_seq,
        entries: meta.entry_count,
        last_lsn: meta.checkpoint_lsn,
        freelist: FreeList::new(meta.page_count, free),
        freelist_pages,
        recent: VecDeque::new(),
        poisoned: None,
        last_checkpoint: Instant::now(),
        checkpoints: 0,
        checkpoint_time: std::time::Duration::ZERO,
        last_checkpoint_time: std::time::Duration::ZERO,
        checkpoint_in_flight: false,
    };
    let replay_started = Instant::now();
    let replayed = replay(&pager, &mut st, &*vfs, &wal_dir, options.replay_batch_bytes)?;
    let recovery = RecoveryStats {
        replayed_commits: replayed.commits,
        replayed_bytes: replayed.end.end_lsn - meta.checkpoint_lsn + replayed.end.torn_bytes,
        torn_tail_bytes: replayed.end.torn_bytes,
        replay_time: replay_started.elapsed(),
    };
    let end = replayed.end;
    let wal = Wal::open(
        vfs.clone(),
        &wal_dir,
        wal_policy(options),
        end.end_lsn,
        end.tail,
        end.older,
    )?;
    st.last_lsn = end.end_lsn;

    let snapshot = Arc::new(Snapshot {
        seq: st.seq,
        tree: st.tree,
        entries: st.entries,
    });
    let inner = DbInner {
        dir,
        pager,
        wal,
        durability: options.durability,
        checkpoint_log_bytes: options.checkpoint_log_bytes,
        checkpoint_interval: options.checkpoint_interval,
        large_txn_bytes: options.large_txn_bytes,
        recovery,
        background_error: Mutex::new(None),
        snapshots: Mutex::new(SnapshotTable {
            current: snapshot,
            open: BTreeMap::new(),
            writers: BTreeMap::new(),
        }),
        commit: Mutex::new(st),
        checkpointed: std::sync::Condvar::new(),
        unpublished: Mutex::new(VecDeque::new()),
        queue: Mutex::new(CommitQueue::default()),
        syncer: Default::default(),
        watches: Default::default(),
        _lock: dir_lock,
    };
    // The replayed commits stay in memory and in the log; the background
    // thread checkpoints them (the log is past its threshold when replay was
    // long), so opening does not wait for writing the whole tree.
    Ok(inner)
}

/// Most covered log segments kept for reuse, whatever the options.
const MAX_SPARE_SEGMENTS: u64 = 16;

/// How the log lays out segments: as many spares as one checkpoint's worth
/// of log needs (so in a steady state every new segment is a recycled one),
/// plus one, at most [`MAX_SPARE_SEGMENTS`].
fn wal_policy(options: &Options) -> wal::SegmentPolicy {
    let per_checkpoint = options.checkpoint_log_bytes / options.wal_segment_bytes.max(1);
    wal::SegmentPolicy {
        bytes: options.wal_segment_bytes,
        prepare_ahead: options.wal_prepare_ahead,
        spares: (per_checkpoint + 1).min(MAX_SPARE_SEGMENTS) as usize,
    }
}

/// Whether the data file is what a crash during [`initialize`] leaves: no log
/// directory yet (it is created right after the first successful
/// initialization, before any commit) and every byte either zero or equal to
/// the byte [`initialize`] writes there for this page size (writes that never
/// landed, or landed torn, in any order). Anyone else's file fails this test
/// and is left alone.
fn interrupted_initialization(
    file: &dyn StorageFile,
    len: u64,
    path: &Path,
    vfs: &dyn Vfs,
    wal_dir: &Path,
    page_size: usize,
) -> Result<bool> {
    if !page::valid_page_size(page_size) || len > 2 * page_size as u64 {
        return Ok(false);
    }
    let wal_exists = vfs
        .path_kind(wal_dir)
        .map_err(|e| Error::io(format!("inspecting {}", wal_dir.display()), e))?
        != PathKind::Missing;
    if wal_exists {
        return Ok(false);
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let expected = initial_image(page_size);
    Ok(bytes.iter().zip(&expected).all(|(&b, &e)| b == 0 || b == e))
}

/// The two meta pages of an empty database.
fn initial_image(page_size: usize) -> Vec<u8> {
    let mut image = vec![0u8; 2 * page_size];
    for seq in [0u64, 1] {
        let meta = Meta {
            page_size: page_size as u32,
            seq,
            page_count: 2,
            ..Meta::default()
        };
        let at = seq as usize * page_size;
        meta.encode(&mut image[at..at + page_size]);
    }
    image
}

/// Writes the two meta pages of an empty database and syncs.
fn initialize(file: &dyn StorageFile, path: &Path, page_size: usize) -> Result<()> {
    file.write_all_at(&initial_image(page_size), 0)
        .map_err(|e| Error::io(format!("initializing {}", path.display()), e))?;
    file.sync_data()
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// Finds the newest valid meta page. Page 0 tells the page size; when page 0 is
/// damaged, page 1 is looked for at every possible page size.
pub(crate) fn read_meta(file: &dyn StorageFile, path: &Path) -> Result<(Meta, usize)> {
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
    let (sizes, probe_error): (Vec<usize>, Option<Error>) = match meta::probe(&head, path) {
        Ok(size) => (vec![size], None),
        Err(e @ Error::UnsupportedFormatVersion { .. }) => return Err(e),
        // Page 0 is damaged or foreign: look for page 1 at every page size.
        Err(e) => ((10..=16).map(|s| 1usize << s).collect(), Some(e)),
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
    Err(probe_error.unwrap_or_else(|| Error::CorruptFile {
        path: path.to_path_buf(),
        reason: format!("no valid meta page: {}", problems.join("; ")),
    }))
}

/// Reads the free-list chain named by `meta`.
pub(crate) fn load_freelist(pager: &Pager, meta: &Meta) -> Result<(Vec<PageId>, Vec<PageId>)> {
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
