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
//! Memory stays within the budget unless every frame of a shard is pinned, in which
//! case the shard grows past its share until pins are released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::page::{PageId, PageRef};
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

struct Frame {
    id: PageId,
    page: PageRef,
    referenced: bool,
    dirty: bool,
}

struct Shard {
    map: HashMap<PageId, usize>,
    frames: Vec<Frame>,
    hand: usize,
    capacity: usize,
}

/// A bounded, sharded page cache.
pub struct BufferPool {
    shards: Box<[Mutex<Shard>]>,
    page_size: usize,
    file: Arc<dyn StorageFile>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    writebacks: AtomicU64,
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
                    map: HashMap::new(),
                    frames: Vec::new(),
                    hand: 0,
                    capacity: base + usize::from(i < extra),
                })
            })
            .collect();
        BufferPool {
            shards,
            page_size,
            file,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            writebacks: AtomicU64::new(0),
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
        if let Some(&slot) = shard.map.get(&id) {
            let frame = &mut shard.frames[slot];
            frame.referenced = true;
            self.hits.fetch_add(1, Ordering::Relaxed);
            Some(frame.page.clone())
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Returns the cached image without touching counters or the reference bit.
    pub fn peek(&self, id: PageId) -> Option<PageRef> {
        let shard = self.shard(id);
        shard
            .map
            .get(&id)
            .map(|&slot| shard.frames[slot].page.clone())
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
        if let Some(&slot) = shard.map.get(&id) {
            let frame = &mut shard.frames[slot];
            frame.page = page;
            frame.dirty = dirty;
            frame.referenced = true;
            return Ok(());
        }
        let frame = Frame {
            id,
            page,
            referenced: false,
            dirty,
        };
        if shard.frames.len() < shard.capacity {
            let slot = shard.frames.len();
            shard.frames.push(frame);
            shard.map.insert(id, slot);
            return Ok(());
        }
        match self.pick_victim(&mut shard)? {
            Some(slot) => {
                let old = std::mem::replace(&mut shard.frames[slot], frame);
                shard.map.remove(&old.id);
                shard.map.insert(id, slot);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                // Every frame is pinned: grow past the share until pins drop.
                let slot = shard.frames.len();
                shard.frames.push(frame);
                shard.map.insert(id, slot);
            }
        }
        // Give back frames taken beyond capacity while everything was pinned.
        while shard.frames.len() > shard.capacity {
            match self.pick_victim(&mut shard)? {
                Some(slot) => {
                    self.remove_slot(&mut shard, slot);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// CLOCK: finds an unpinned frame whose reference bit is clear, writing it back
    /// if dirty. `None` when every frame is pinned.
    fn pick_victim(&self, shard: &mut Shard) -> Result<Option<usize>> {
        let n = shard.frames.len();
        if n == 0 {
            return Ok(None);
        }
        for _ in 0..2 * n + 1 {
            let slot = shard.hand % n;
            shard.hand = (slot + 1) % n;
            let frame = &mut shard.frames[slot];
            if Arc::strong_count(&frame.page) > 1 {
                continue;
            }
            if frame.referenced {
                frame.referenced = false;
                continue;
            }
            if frame.dirty {
                let offset = frame.id * self.page_size as u64;
                self.file.write_all_at(&frame.page, offset).map_err(|e| {
                    Error::io(format!("writing back page {} on eviction", frame.id), e)
                })?;
                frame.dirty = false;
                self.writebacks.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Some(slot));
        }
        Ok(None)
    }

    fn remove_slot(&self, shard: &mut Shard, slot: usize) -> Frame {
        let frame = shard.frames.swap_remove(slot);
        shard.map.remove(&frame.id);
        if slot < shard.frames.len() {
            let moved = shard.frames[slot].id;
            shard.map.insert(moved, slot);
        }
        if shard.hand >= shard.frames.len() {
            shard.hand = 0;
        }
        frame
    }

    /// Drops the cached image of `id` (dirty or not); used when the page id gets
    /// new contents written around the pool or is given back unused.
    pub fn invalidate(&self, id: PageId) {
        let mut shard = self.shard(id);
        if let Some(&slot) = shard.map.get(&id) {
            self.remove_slot(&mut shard, slot);
        }
    }

    /// Writes every dirty frame to the file (in page order, contiguous runs in one
    /// call) and marks them clean. Does not sync. Returns the number written.
    pub fn flush_dirty(&self) -> Result<usize> {
        let mut dirty: Vec<(PageId, PageRef)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            dirty.extend(
                shard
                    .frames
                    .iter()
                    .filter(|f| f.dirty)
                    .map(|f| (f.id, f.page.clone())),
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
            if let Some(&slot) = shard.map.get(id) {
                let frame = &mut shard.frames[slot];
                if Arc::ptr_eq(&frame.page, page) {
                    frame.dirty = false;
                }
            }
        }
        Ok(dirty.len())
    }

    /// Forgets every dirty frame without writing it (after a failed commit).
    pub fn discard_dirty(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let mut slot = 0;
            while slot < shard.frames.len() {
                if shard.frames[slot].dirty {
                    self.remove_slot(&mut shard, slot);
                } else {
                    slot += 1;
                }
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        let mut pages = 0u64;
        let mut capacity = 0u64;
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            pages += shard.frames.len() as u64;
            capacity += shard.capacity as u64;
        }
        PoolStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            dirty_writebacks: self.writebacks.load(Ordering::Relaxed),
            resident_pages: pages,
            resident_bytes: pages * self.page_size as u64,
            capacity_bytes: capacity * self.page_size as u64,
        }
    }
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
        let next = self.start + (self.buf.len() / self.page_size) as u64;
        if !self.buf.is_empty() && (id != next || self.buf.len() >= MAX_RUN_BYTES) {
            self.finish()?;
        }
        if self.buf.is_empty() {
            self.start = id;
        }
        self.buf.extend_from_slice(page);
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
    fn discard_dirty_forgets_unwritten_pages() {
        let file: Arc<dyn StorageFile> = Arc::new(MemFile::default());
        let pool = BufferPool::new(64 * 1024, 1024, file);
        pool.insert_clean(1, page(1)).unwrap();
        pool.insert_dirty(2, page(2)).unwrap();
        pool.discard_dirty();
        assert!(pool.peek(1).is_some());
        assert!(pool.peek(2).is_none());
    }
}
