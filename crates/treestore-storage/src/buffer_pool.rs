//! The buffer pool: a bounded cache of page images with CLOCK eviction.
//!
//! Frames hold immutable page images (`Arc<[u8]>`). Because the B+tree is
//! copy-on-write, a page image never changes while anyone can see it, so readers
//! share frames without latches. A frame is *pinned* while a reader holds a clone of
//! its image (the `Arc` count is above one); CLOCK skips pinned frames. A *dirty*
//! frame holds a page not yet written to the file; evicting it writes it first. This
//! is always safe: dirty pages live at page ids that no durable checkpoint uses.
//!
//! The pool is split into shards by page id so concurrent readers rarely contend.
//! Each shard maps ids to frames with a [`PageTable`] (one cache line per hit),
//! and a hit asks the CPU for the first KiB of the page while the frame is
//! pinned, so in a pool far larger than the CPU caches the misses of a page
//! visit overlap instead of following one another.
//! Memory stays within the budget unless every frame of a shard is pinned, in which
//! case the shard grows past its share until pins are released.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::page::{PageId, PageRef};
use crate::page_table::{Frame, PageTable};
use crate::vfs::StorageFile;

/// Counters of the pool, for stats and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub dirty_writebacks: u64,
    pub resident_pages: u64,
    pub resident_bytes: u64,
    pub capacity_bytes: u64,
}

/// One shard: frames keyed by page id (so a hit is one hash probe), and the
/// ring of resident ids the CLOCK hand walks. Counters live here, under the
/// shard lock, so concurrent readers do not contend on shared atomics.
#[derive(Default)]
struct Shard {
    map: PageTable,
    ring: Vec<PageId>,
    hand: usize,
    capacity: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
    writebacks: u64,
}

impl Shard {
    fn remove(&mut self, id: PageId) -> Option<Frame> {
        let frame = self.map.remove(id)?;
        let idx = frame.ring_idx as usize;
        self.ring.swap_remove(idx);
        if let Some(&moved) = self.ring.get(idx) {
            if let Some(f) = self.map.get_mut(moved) {
                f.ring_idx = frame.ring_idx;
            }
        }
        if self.hand >= self.ring.len() {
            self.hand = 0;
        }
        Some(frame)
    }

    fn push(&mut self, id: PageId, page: PageRef, dirty: bool) {
        // A shard holds far fewer than 2^32 frames (16 TiB of 4 KiB pages).
        let ring_idx = u32::try_from(self.ring.len()).unwrap_or(u32::MAX);
        self.ring.push(id);
        self.map.insert(
            id,
            Frame {
                page,
                ring_idx,
                referenced: false,
                dirty,
            },
        );
        debug_assert_eq!(self.map.len(), self.ring.len());
    }
}

/// A bounded, sharded page cache.
pub struct BufferPool {
    shards: Box<[Mutex<Shard>]>,
    page_size: usize,
    file: Arc<dyn StorageFile>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Smallest number of frames a shard is given.
const MIN_FRAMES_PER_SHARD: usize = 4;

impl BufferPool {
    /// A pool of at most `budget_bytes` of page images (at least a few pages).
    pub fn new(budget_bytes: usize, page_size: usize, file: Arc<dyn StorageFile>) -> Self {
        let total_frames = (budget_bytes / page_size).max(MIN_FRAMES_PER_SHARD);
        let mut nshards = 16usize;
        while nshards > 1 && total_frames / nshards < 64 {
            nshards /= 2;
        }
        let base = total_frames / nshards;
        let extra = total_frames % nshards;
        let shards = (0..nshards)
            .map(|i| {
                Mutex::new(Shard {
                    capacity: base + usize::from(i < extra),
                    ..Shard::default()
                })
            })
            .collect();
        BufferPool {
            shards,
            page_size,
            file,
        }
    }

    fn shard(&self, id: PageId) -> MutexGuard<'_, Shard> {
        let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let idx = (h as usize) % self.shards.len();
        // A panic while holding a shard lock cannot leave a frame half-updated
        // (all updates are single assignments), so a poisoned lock is still usable.
        self.shards[idx].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the cached image of `id`, counting a hit or a miss.
    pub fn get(&self, id: PageId) -> Option<PageRef> {
        let mut shard = self.shard(id);
        match shard.map.get_mut(id) {
            Some(frame) => {
                frame.referenced = true;
                // Start loading the page's header and slot array before the
                // reference count's cache line is fetched for the clone, so
                // the misses overlap instead of following one another.
                prefetch_lines(&frame.page, PREFETCH_BYTES);
                let page = frame.page.clone();
                shard.hits += 1;
                Some(page)
            }
            None => {
                shard.misses += 1;
                None
            }
        }
    }

    /// If `id` is cached, asks the CPU to start loading its first `bytes`
    /// bytes, for a page the caller is about to read. Touches no counters.
    pub fn prefetch(&self, id: PageId, bytes: usize) {
        if let Some(frame) = self.shard(id).map.get(id) {
            prefetch_lines(&frame.page, bytes);
        }
    }

    /// Asks the CPU to start loading the page-table slot of `id`, for a
    /// [`prefetch`](Self::prefetch) or [`get`](Self::get) of `id` a little
    /// later that then does not wait for it. Touches no counters.
    pub fn prefetch_slot(&self, id: PageId) {
        self.shard(id).map.prefetch_home(id);
    }

    /// Returns the cached image without touching counters or the reference bit.
    pub fn peek(&self, id: PageId) -> Option<PageRef> {
        self.shard(id).map.get(id).map(|f| f.page.clone())
    }

    /// Caches a clean image read from (or already written to) the file.
    pub fn insert_clean(&self, id: PageId, page: PageRef) -> Result<()> {
        self.insert(id, page, false)
    }

    /// Caches an image that is not yet in the file. It is written by
    /// [`flush_dirty`](Self::flush_dirty) or when evicted.
    pub fn insert_dirty(&self, id: PageId, page: PageRef) -> Result<()> {
        self.insert(id, page, true)
    }

    fn insert(&self, id: PageId, page: PageRef, dirty: bool) -> Result<()> {
        debug_assert_eq!(page.len(), self.page_size);
        let mut shard = self.shard(id);
        if let Some(frame) = shard.map.get_mut(id) {
            frame.page = page;
            frame.dirty = dirty;
            frame.referenced = true;
            return Ok(());
        }
        // Make room first (possibly failing on a write-back), then insert, so an
        // error leaves the shard as it was.
        while shard.ring.len() >= shard.capacity {
            match self.pick_victim(&mut shard)? {
                Some(victim) => {
                    shard.remove(victim);
                    shard.evictions += 1;
                }
                // Every frame is pinned: grow past the share until pins drop.
                None => break,
            }
        }
        shard.push(id, page, dirty);
        Ok(())
    }

    /// CLOCK: finds an unpinned frame whose reference bit is clear, writing it back
    /// if dirty. `None` when every frame is pinned.
    fn pick_victim(&self, shard: &mut Shard) -> Result<Option<PageId>> {
        let n = shard.ring.len();
        for _ in 0..2 * n + 1 {
            if n == 0 {
                break;
            }
            let slot = shard.hand % n;
            shard.hand = (slot + 1) % n;
            let id = shard.ring[slot];
            let Some(frame) = shard.map.get_mut(id) else {
                continue;
            };
            if Arc::strong_count(&frame.page) > 1 {
                continue;
            }
            if frame.referenced {
                frame.referenced = false;
                continue;
            }
            if frame.dirty {
                let offset = id * self.page_size as u64;
                self.file
                    .write_all_at(&frame.page, offset)
                    .map_err(|e| Error::io(format!("writing back page {id} on eviction"), e))?;
                frame.dirty = false;
                shard.writebacks += 1;
            }
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// Drops the cached image of `id` (dirty or not); used when the page id gets
    /// new contents written around the pool or is given back unused.
    pub fn invalidate(&self, id: PageId) {
        self.shard(id).remove(id);
    }

    /// Writes every dirty frame to the file (in page order, contiguous runs in one
    /// call) and marks them clean. Does not sync. Returns the number written.
    pub fn flush_dirty(&self) -> Result<usize> {
        let mut dirty: Vec<(PageId, PageRef)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            dirty.extend(
                shard
                    .map
                    .iter()
                    .filter(|(_, f)| f.dirty)
                    .map(|(id, f)| (id, f.page.clone())),
            );
        }
        dirty.sort_unstable_by_key(|(id, _)| *id);
        let mut run = RunWriter::new(&*self.file, self.page_size);
        for (id, page) in &dirty {
            run.write(*id, page)?;
        }
        run.finish()?;
        for (id, page) in &dirty {
            let mut shard = self.shard(*id);
            if let Some(frame) = shard.map.get_mut(*id) {
                if Arc::ptr_eq(&frame.page, page) {
                    frame.dirty = false;
                }
            }
        }
        Ok(dirty.len())
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        let mut st = PoolStats::default();
        let mut pages = 0u64;
        let mut capacity = 0u64;
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            pages += shard.ring.len() as u64;
            capacity += shard.capacity as u64;
            st.hits += shard.hits;
            st.misses += shard.misses;
            st.evictions += shard.evictions;
            st.dirty_writebacks += shard.writebacks;
        }
        st.resident_pages = pages;
        st.resident_bytes = pages * self.page_size as u64;
        st.capacity_bytes = capacity * self.page_size as u64;
        st
    }
}

/// Bytes at the start of a page whose cache lines [`BufferPool::get`] asks
/// the CPU to load at once: the header, the slot array of a typical node and
/// its first cells. A binary search over a cold page would otherwise take one
/// memory round trip per probe.
const PREFETCH_BYTES: usize = 1024;

/// Asks the CPU to load the cache lines of `page`'s first `bytes` bytes.
#[inline]
fn prefetch_lines(page: &[u8], bytes: usize) {
    for off in (0..page.len().min(bytes)).step_by(64) {
        prefetch_address(page[off..].as_ptr());
    }
}

/// Asks the CPU to start loading the cache line holding the start of `v`.
pub(crate) fn prefetch_object<T>(v: &T) {
    prefetch_address((v as *const T).cast());
}

fn prefetch_address(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs the `sse` target feature, which every
    // x86_64 CPU has (it is part of the architecture's baseline). A prefetch
    // is only a hint: it never faults and changes no memory, and every caller
    // passes the address of memory it borrows in any case.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Coalesces writes of consecutive pages into single calls.
pub(crate) struct RunWriter<'a> {
    file: &'a dyn StorageFile,
    page_size: usize,
    start: PageId,
    buf: Vec<u8>,
}

/// Largest single write issued by [`RunWriter`].
const MAX_RUN_BYTES: usize = 1 << 20;

impl<'a> RunWriter<'a> {
    pub(crate) fn new(file: &'a dyn StorageFile, page_size: usize) -> Self {
        RunWriter {
            file,
            page_size,
            start: 0,
            buf: Vec::new(),
        }
    }

    pub(crate) fn write(&mut self, id: PageId, page: &[u8]) -> Result<()> {
        self.continue_run(id)?;
        self.buf.extend_from_slice(page);
        Ok(())
    }

    /// A zeroed image of page `id` in the run, for the caller to fill in
    /// place (no copy of a finished page is made).
    pub(crate) fn page(&mut self, id: PageId) -> Result<&mut [u8]> {
        self.continue_run(id)?;
        let at = self.buf.len();
        self.buf.resize(at + self.page_size, 0);
        Ok(&mut self.buf[at..])
    }

    /// Writes the run first when page `id` does not continue it, or it is
    /// full.
    fn continue_run(&mut self, id: PageId) -> Result<()> {
        let next = self.start + (self.buf.len() / self.page_size) as u64;
        if !self.buf.is_empty() && (id != next || self.buf.len() >= MAX_RUN_BYTES) {
            self.finish()?;
        }
        if self.buf.is_empty() {
            self.start = id;
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let offset = self.start * self.page_size as u64;
        self.file.write_all_at(&self.buf, offset).map_err(|e| {
            Error::io(
                format!(
                    "writing {} pages at page {}",
                    self.buf.len() / self.page_size,
                    self.start
                ),
                e,
            )
        })?;
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::MemFile;

    fn page(byte: u8) -> PageRef {
        Arc::from(vec![byte; 1024])
    }

    #[test]
    fn evicts_unpinned_and_keeps_pinned_pages() {
        let file: Arc<dyn StorageFile> = Arc::new(MemFile::default());
        let pool = BufferPool::new(8 * 1024, 1024, file);
        let pinned = page(1);
        pool.insert_clean(1, pinned.clone()).unwrap();
        for id in 2..100 {
            pool.insert_clean(id, page(id as u8)).unwrap();
        }
        let stats = pool.stats();
        assert!(stats.evictions > 0);
        assert!(stats.resident_bytes <= stats.capacity_bytes + 1024);
        // The pinned page survived all of that.
        assert!(Arc::ptr_eq(&pool.peek(1).unwrap(), &pinned));
        drop(pinned);
    }

    #[test]
    fn dirty_pages_are_written_back_before_eviction() {
        let mem = Arc::new(MemFile::default());
        let file: Arc<dyn StorageFile> = mem.clone();
        let pool = BufferPool::new(4 * 1024, 1024, file.clone());
        for id in 0..32u64 {
            pool.insert_dirty(id, page(id as u8 + 1)).unwrap();
        }
        pool.flush_dirty().unwrap();
        for id in 0..32u64 {
            let mut buf = vec![0u8; 1024];
            file.read_exact_at(&mut buf, id * 1024).unwrap();
            assert!(buf.iter().all(|&b| b == id as u8 + 1), "page {id}");
        }
        assert!(pool.stats().dirty_writebacks > 0);
    }

    #[test]
    fn prefetch_leaves_the_pool_as_it_was() {
        let file: Arc<dyn StorageFile> = Arc::new(MemFile::default());
        let pool = BufferPool::new(4 * 1024, 1024, file);
        // An empty pool's table has no slots yet.
        pool.prefetch_slot(3);
        pool.prefetch(3, 1024);
        for id in 0..4 {
            pool.insert_clean(id, page(id as u8)).unwrap();
        }
        let before = pool.stats();
        pool.prefetch_slot(0);
        pool.prefetch_slot(77);
        pool.prefetch(0, 1024);
        pool.prefetch(77, 1024);
        assert_eq!(pool.stats(), before, "no hit, miss or insertion counted");
        assert!(pool.peek(77).is_none());
        // Prefetching did not set page 0's reference bit: the CLOCK hand,
        // which starts there, still evicts it first.
        pool.insert_clean(10, page(10)).unwrap();
        assert!(pool.peek(0).is_none(), "page 0 evicted");
        assert!((1..4).all(|id| pool.peek(id).is_some()));
    }

    #[test]
    fn invalidate_forgets_an_unwritten_page() {
        let file: Arc<dyn StorageFile> = Arc::new(MemFile::default());
        let pool = BufferPool::new(64 * 1024, 1024, file.clone());
        pool.insert_clean(1, page(1)).unwrap();
        pool.insert_dirty(2, page(2)).unwrap();
        pool.invalidate(2);
        assert!(pool.peek(1).is_some());
        assert!(pool.peek(2).is_none());
        assert_eq!(pool.flush_dirty().unwrap(), 0);
        assert_eq!(file.len().unwrap(), 0);
    }
}
