//! The page file: reads pages through the buffer pool, verifying each one read from
//! disk (checksum, type tag, node layout), and stages or writes new pages.
//!
//! The pager never hands out an unverified image: a page that fails verification is
//! reported as [`Error::CorruptPage`] with its page number and is not cached.

use std::path::PathBuf;
use std::sync::Arc;

use crate::btree::node::{self, Limits};
use crate::btree::overflow;
use crate::buffer_pool::{BufferPool, PoolStats, RunWriter};
use crate::error::{Error, Result};
use crate::page::{self, PageId, PageRef, PageType};
use crate::vfs::StorageFile;

/// Reads and writes fixed-size pages of one database file.
pub struct Pager {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    page_size: usize,
    limits: Limits,
    pool: BufferPool,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager")
            .field("path", &self.path)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl Pager {
    pub fn new(
        file: Arc<dyn StorageFile>,
        path: PathBuf,
        page_size: usize,
        cache_bytes: usize,
    ) -> Self {
        Pager {
            pool: BufferPool::new(cache_bytes, page_size, file.clone()),
            file,
            path,
            page_size,
            limits: Limits::new(page_size),
        }
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    pub fn path(&self) -> &PathBuf {
        &self.path
    }
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Reads a page from disk and verifies checksum and (for nodes) layout.
    pub fn read_from_disk(&self, id: PageId) -> Result<(PageRef, PageType)> {
        let cache_only = CACHE_ONLY.with(|c| {
            let on = c.get() != CacheOnly::Off;
            if on {
                c.set(CacheOnly::Missed);
            }
            on
        });
        if cache_only {
            return Err(Error::NotCached { page: id });
        }
        let mut image = page::new_image(self.page_size);
        let buf = page::image_mut(&mut image);
        let offset = id
            .checked_mul(self.page_size as u64)
            .ok_or_else(|| Error::corrupt(id, "page id out of range"))?;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(id, "page lies beyond the end of the file")
            } else {
                Error::io(format!("reading page {id} of {}", self.path.display()), e)
            }
        })?;
        let ty = page::verify(buf, id)?;
        if matches!(ty, PageType::Leaf | PageType::Branch) {
            node::validate(buf, id, ty, &self.limits)?;
        }
        Ok((image, ty))
    }

    /// Reads a tree node (branch or leaf) through the buffer pool.
    pub fn read_node(&self, id: PageId) -> Result<PageRef> {
        if let Some(page) = self.pool.get(id) {
            return Ok(page);
        }
        let (page, ty) = self.read_from_disk(id)?;
        if !matches!(ty, PageType::Leaf | PageType::Branch) {
            return Err(Error::corrupt(
                id,
                format!("expected a tree node, found a {ty:?} page"),
            ));
        }
        self.pool.insert_clean(id, page.clone())?;
        Ok(page)
    }

    /// Starts loading the cached pages of the overflow chain of `len` bytes
    /// that begins at `first`, for a value about to be read. Chains are
    /// usually allocated as consecutive page ids, so the pages after the first
    /// are guessed as `first + 1, first + 2, ...`; a wrong guess only loads a
    /// page that is not read.
    pub fn prefetch_chain(&self, first: PageId, len: u64) {
        // Whole pages: the value's bytes are copied out of each of them.
        for id in self.cached_chain_guess(first, len) {
            self.pool.prefetch(id, self.page_size());
        }
    }

    /// Starts loading the page-table slots of the chain
    /// [`prefetch_chain`](Self::prefetch_chain) would prefetch, one step
    /// earlier: a later `prefetch_chain` or read of those pages then finds
    /// its slots in the CPU cache.
    pub fn prefetch_chain_slots(&self, first: PageId, len: u64) {
        for id in self.cached_chain_guess(first, len) {
            self.pool.prefetch_slot(id);
        }
    }

    /// The page ids guessed for a chain read through the pool (consecutive
    /// from `first`); none for a chain too long to be cached.
    fn cached_chain_guess(&self, first: PageId, len: u64) -> std::ops::Range<PageId> {
        let n = overflow::pages_for(len, self.page_size());
        if n > overflow::CACHED_CHAIN_PAGES {
            return first..first;
        }
        first..first.saturating_add(n)
    }

    /// Reads a page of a given type through the buffer pool (overflow pages of
    /// values small enough to be read often, such as document records).
    pub fn read_cached(&self, id: PageId, want: PageType) -> Result<PageRef> {
        let page = match self.pool.get(id) {
            Some(p) => p,
            None => {
                let (page, _) = self.read_from_disk(id)?;
                if page::page_type(&page) == Some(want) {
                    self.pool.insert_clean(id, page.clone())?;
                }
                page
            }
        };
        match page::page_type(&page) {
            Some(t) if t == want => Ok(page),
            other => Err(Error::corrupt(
                id,
                format!("expected a {want:?} page, found {other:?}"),
            )),
        }
    }

    /// Reads a page of a given type without caching it (overflow and free-list
    /// pages, which would only push hot nodes out of the pool).
    pub fn read_uncached(&self, id: PageId, want: PageType) -> Result<PageRef> {
        let page = match self.pool.peek(id) {
            Some(p) => p,
            None => self.read_from_disk(id)?.0,
        };
        match page::page_type(&page) {
            Some(t) if t == want => Ok(page),
            other => Err(Error::corrupt(
                id,
                format!("expected a {want:?} page, found {other:?}"),
            )),
        }
    }

    /// Stages a new node image in the pool; it reaches the file at the next flush.
    pub fn stage(&self, id: PageId, image: PageRef) -> Result<()> {
        self.pool.insert_dirty(id, image)
    }

    /// Writes pages directly to the file (bypassing the pool), coalescing runs.
    pub fn write_direct(&self, pages: &[(PageId, Vec<u8>)]) -> Result<()> {
        let mut run = RunWriter::new(&*self.file, self.page_size);
        for (id, image) in pages {
            self.pool.invalidate(*id);
            run.write(*id, image)?;
        }
        run.finish()
    }

    /// A writer of runs of consecutive pages straight to the file (bypassing
    /// the pool: whoever fills a page invalidates its cached image).
    pub(crate) fn run_writer(&self) -> RunWriter<'_> {
        RunWriter::new(&*self.file, self.page_size)
    }

    /// Forgets any cached image of `id`.
    pub fn invalidate(&self, id: PageId) {
        self.pool.invalidate(id);
    }

    /// Writes staged pages to the file.
    pub fn flush(&self) -> Result<usize> {
        self.pool.flush_dirty()
    }

    /// fdatasync of the data file.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))
    }

    /// Length of the file in bytes.
    pub fn file_len(&self) -> Result<u64> {
        self.file
            .len()
            .map_err(|e| Error::io(format!("reading the length of {}", self.path.display()), e))
    }

    /// Truncates the file to `pages` pages.
    pub fn truncate(&self, pages: u64) -> Result<()> {
        self.file
            .set_len(pages * self.page_size as u64)
            .map_err(|e| Error::io(format!("truncating {}", self.path.display()), e))
    }
}

/// Whether this thread's reads may go to the disk (see [`cache_only`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheOnly {
    Off,
    On,
    /// On, and a read needed a page that was not cached.
    Missed,
}

thread_local! {
    static CACHE_ONLY: std::cell::Cell<CacheOnly> = const { std::cell::Cell::new(CacheOnly::Off) };
}

/// Runs `f` with this thread's page reads limited to the buffer pool: a read
/// that would have to go to the disk fails with [`Error::NotCached`] instead
/// (and caches nothing). Returns `f`'s result and whether any read missed, in
/// which case the result is to be thrown away and the work redone where
/// blocking is fine. Meant for read-only work that an async runtime wants to
/// run inline when it is served from memory (like RocksDB's block-cache-only
/// read tier). Other threads (and the engine's own) are not affected.
pub fn cache_only<T>(f: impl FnOnce() -> T) -> (T, bool) {
    struct Restore(CacheOnly);
    impl Drop for Restore {
        fn drop(&mut self) {
            CACHE_ONLY.with(|c| c.set(self.0));
        }
    }
    let outer = CACHE_ONLY.with(|c| c.replace(CacheOnly::On));
    let restore = Restore(outer);
    let out = f();
    let missed = CACHE_ONLY.with(|c| c.get()) == CacheOnly::Missed;
    drop(restore);
    (out, missed)
}
