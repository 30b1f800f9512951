//! The buffer pool: a bounded cache of page images with CLOCK eviction.
//!
//! Frames hold immutable page images (`Arc<[u8]>`). Because the B+tree is
//! copy-on-write, a page image never changes while anyone can see it, so readers
//! share frames without latches. A frame is *pinned* while a reader holds a clone of
//! its image (the `Arc` count is above one); CLOCK skips pinned frames. A *dirty*
//! frame holds a page not yet written to the file; evicting it writes it first. This
//! is always safe: dirty pages live at page ids that no durable checkpoint uses.
//! Every write to the file (eviction, [`RunWriter`]) computes the page's checksum
//! into the bytes written; staged images need not carry one.
//!
//! The pool is split into shards by page id. Each shard maps ids to frames
//! with a [`PageTable`] (one cache line per hit) that a lookup searches
//! without the shard's lock, so readers on different cores do not pass a
//! lock's cache line between them (hits are counted on per-thread stripes);
//! inserts, evictions and flag changes take the lock. A hit asks the CPU for
//! the first KiB of the page before taking its reference, so in a pool far
//! larger than the CPU caches the misses of a page visit overlap instead of
//! following one another.
//! Memory stays within the budget unless every frame of a shard is pinned, in which
//! case the shard grows past its share until pins are released; beyond it are
//! also images that readers still hold after their eviction, and evicted
//! images waiting for epoch-based reclamation (see [`PageTable`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::page::{self, PageId, PageRef};
use crate::page_table::{PageTable, Probe, Writes};
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

/// What a shard's lock guards: the writer side of its table, the ring of
/// resident ids the CLOCK hand walks, and counters only writers change.
struct ShardState {
    writes: Writes,
    ring: Vec<PageId>,
    hand: usize,
    capacity: usize,
    misses: u64,
    evictions: u64,
    writebacks: u64,
}

/// One shard: its table, which readers search without the lock, and the
/// state writers change under it. Aligned so neighbouring shards never
/// share a cache line.
#[repr(align(128))]
struct Shard {
    map: PageTable,
    state: Mutex<ShardState>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ShardState> {
        // A panic while holding a shard lock cannot leave the ring and the
        // table disagreeing (each update completes before the next starts),
        // so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, st: &mut ShardState, id: PageId) {
        let Some(ring_idx) = self.map.remove(&mut st.writes, id) else {
            return;
        };
        let idx = ring_idx as usize;
        st.ring.swap_remove(idx);
        if let Some(&moved) = st.ring.get(idx) {
            if let Some(at) = self.map.find(&st.writes, moved) {
                self.map.set_ring_idx(&mut st.writes, at, ring_idx);
            }
        }
        if st.hand >= st.ring.len() {
            st.hand = 0;
        }
    }

    fn push(&self, st: &mut ShardState, id: PageId, page: PageRef, dirty: bool) {
        // A shard holds far fewer than 2^32 frames (16 TiB of 4 KiB pages).
        let ring_idx = u32::try_from(st.ring.len()).unwrap_or(u32::MAX);
        st.ring.push(id);
        self.map.insert(&mut st.writes, id, page, ring_idx, dirty);
        debug_assert_eq!(self.map.len(&st.writes), st.ring.len());
    }
}

/// Hit counters spread over cache lines, one per thread in turn, so that
/// readers on different cores do not write to a shared line on every hit.
struct Hits([PaddedCount; HIT_STRIPES]);

#[repr(align(128))]
#[derive(Default)]
struct PaddedCount(AtomicU64);

const HIT_STRIPES: usize = 16;

impl Hits {
    fn add(&self) {
        thread_local! {
            static STRIPE: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) % HIT_STRIPES
            };
        }
        let i = STRIPE.with(|s| *s);
        self.0[i].0.fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// A bounded, sharded page cache.
pub struct BufferPool {
    shards: Box<[Shard]>,
    hits: Hits,
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
                let (map, writes) = PageTable::new(page_size);
                Shard {
                    map,
                    state: Mutex::new(ShardState {
                        writes,
                        ring: Vec::new(),
                        hand: 0,
                        capacity: base + usize::from(i < extra),
                        misses: 0,
                        evictions: 0,
                        writebacks: 0,
                    }),
                }
            })
            .collect();
        BufferPool {
            shards,
            hits: Hits(Default::default()),
            page_size,
            file,
        }
    }

    fn shard(&self, id: PageId) -> &Shard {
        let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.shards[(h as usize) % self.shards.len()]
    }

    /// Returns the cached image of `id`, counting a hit or a miss. A hit is
    /// found without the shard's lock (see [`PageTable`]); only when that
    /// search is unsure (absent, or a writer busy nearby) is the lock taken.
    pub fn get(&self, id: PageId) -> Option<PageRef> {
        let shard = self.shard(id);
        // Asking for the page's header and slot array before its reference
        // count is touched, so the misses overlap instead of following one
        // another.
        if let Probe::Hit(page) = shard.map.get(id, PREFETCH_BYTES) {
            self.hits.add();
            return Some(page);
        }
        let mut st = shard.lock();
        match shard.map.find(&st.writes, id) {
            Some(at) => {
                shard.map.set_referenced(&mut st.writes, at, true);
                let page = shard.map.page(&st.writes, at);
                prefetch_bytes(page.as_ptr(), page.len().min(PREFETCH_BYTES));
                drop(st);
                self.hits.add();
                Some(page)
            }
            None => {
                st.misses += 1;
                None
            }
        }
    }

    /// If `id` is cached, asks the CPU to start loading its first `bytes`
    /// bytes, for a page the caller is about to read. Touches no counters.
    pub fn prefetch(&self, id: PageId, bytes: usize) {
        self.shard(id).map.prefetch(id, bytes);
    }

    /// Asks the CPU to start loading the page-table slot of `id`, for a
    /// [`prefetch`](Self::prefetch) or [`get`](Self::get) of `id` a little
    /// later that then does not wait for it. Touches no counters.
    pub fn prefetch_slot(&self, id: PageId) {
        self.shard(id).map.prefetch_home(id);
    }

    /// Returns the cached image without touching counters or the reference bit.
    pub fn peek(&self, id: PageId) -> Option<PageRef> {
        let shard = self.shard(id);
        let st = shard.lock();
        shard
            .map
            .find(&st.writes, id)
            .map(|at| shard.map.page(&st.writes, at))
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
        if page.len() != self.page_size {
            return Err(Error::InvalidOptions(format!(
                "a page image of {} bytes for a pool of {}-byte pages",
                page.len(),
                self.page_size
            )));
        }
        let shard = self.shard(id);
        let mut st = shard.lock();
        if let Some(at) = shard.map.find(&st.writes, id) {
            shard.map.replace(&mut st.writes, at, page, dirty);
            return Ok(());
        }
        // Make room first (possibly failing on a write-back), then insert, so an
        // error leaves the shard as it was.
        while st.ring.len() >= st.capacity {
            match self.pick_victim(shard, &mut st)? {
                Some(victim) => {
                    shard.remove(&mut st, victim);
                    st.evictions += 1;
                }
                // Every frame is pinned: grow past the share until pins drop.
                None => break,
            }
        }
        shard.push(&mut st, id, page, dirty);
        Ok(())
    }

    /// CLOCK: finds an unpinned frame whose reference bit is clear, writing it back
    /// if dirty. `None` when every frame is pinned.
    fn pick_victim(&self, shard: &Shard, st: &mut ShardState) -> Result<Option<PageId>> {
        let n = st.ring.len();
        for _ in 0..2 * n + 1 {
            if n == 0 {
                break;
            }
            let slot = st.hand % n;
            st.hand = (slot + 1) % n;
            let id = st.ring[slot];
            let Some(at) = shard.map.find(&st.writes, id) else {
                continue;
            };
            if shard.map.references(&st.writes, at) > 1 {
                continue;
            }
            if shard.map.referenced(&st.writes, at) {
                shard.map.set_referenced(&mut st.writes, at, false);
                continue;
            }
            if shard.map.dirty(&st.writes, at) {
                let offset = id * self.page_size as u64;
                // The image may be shared with readers: its checksum is
                // written into a copy.
                let mut page = shard.map.page(&st.writes, at).to_vec();
                page::write_checksum(&mut page, id);
                self.file
                    .write_all_at(&page, offset)
                    .map_err(|e| Error::io(format!("writing back page {id} on eviction"), e))?;
                shard.map.set_dirty(&mut st.writes, at, false);
                st.writebacks += 1;
            }
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// Drops the cached image of `id` (dirty or not); used when the page id gets
    /// new contents written around the pool or is given back unused.
    pub fn invalidate(&self, id: PageId) {
        let shard = self.shard(id);
        let mut st = shard.lock();
        shard.remove(&mut st, id);
    }

    /// Writes every dirty frame to the file (in page order, contiguous runs in one
    /// call) and marks them clean. Does not sync. Returns the number written.
    pub fn flush_dirty(&self) -> Result<usize> {
        let mut dirty: Vec<(PageId, PageRef)> = Vec::new();
        for shard in self.shards.iter() {
            let st = shard.lock();
            for (id, at) in shard.map.entries(&st.writes) {
                if shard.map.dirty(&st.writes, at) {
                    dirty.push((id, shard.map.page(&st.writes, at)));
                }
            }
        }
        dirty.sort_unstable_by_key(|(id, _)| *id);
        let mut run = RunWriter::new(&*self.file, self.page_size);
        for (id, page) in &dirty {
            run.write(*id, page)?;
        }
        run.finish()?;
        for (id, page) in &dirty {
            let shard = self.shard(*id);
            let mut st = shard.lock();
            if let Some(at) = shard.map.find(&st.writes, *id) {
                if shard.map.holds(&st.writes, at, page) {
                    shard.map.set_dirty(&mut st.writes, at, false);
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
            let s = shard.lock();
            pages += s.ring.len() as u64;
            capacity += s.capacity as u64;
            st.misses += s.misses;
            st.evictions += s.evictions;
            st.dirty_writebacks += s.writebacks;
        }
        st.hits = self.hits.total();
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

/// Asks the CPU to load the cache lines of the `bytes` bytes from `at`
/// (a hint, like [`prefetch_address`]: nothing is read).
#[inline]
pub(crate) fn prefetch_bytes(at: *const u8, bytes: usize) {
    for off in (0..bytes).step_by(64) {
        prefetch_address(at.wrapping_add(off));
    }
}

/// Asks the CPU to start loading the cache line holding `at`. Any address
/// may be given, even one of freed or unmapped memory: nothing is read.
pub(crate) fn prefetch_address(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs the `sse` target feature, which every
    // x86_64 CPU has (it is part of the architecture's baseline). A prefetch
    // is only a hint: it never faults, changes no memory and makes no value
    // visible to the program, so it is sound for any address (the pointer is
    // never dereferenced).
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

    /// Writes the run, each page with its checksum (images staged in the
    /// pool carry none, see [`page::set_header`]).
    pub(crate) fn finish(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        for (i, image) in self.buf.chunks_exact_mut(self.page_size).enumerate() {
            page::write_checksum(image, self.start + i as u64);
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
    use crate::page_table::stamped;

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
            // Written with the checksum of page `id`, whether evicted or
            // flushed; the rest as staged.
            assert_eq!(
                page::read_u32(&buf, 0),
                page::checksum(&buf, id),
                "page {id}"
            );
            assert!(buf[4..].iter().all(|&b| b == id as u8 + 1), "page {id}");
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

    /// Lookups without the lock beside a writer that inserts, replaces,
    /// evicts and invalidates: a hit is always the image of the page asked
    /// for, and the hits counted are the hits returned.
    #[test]
    fn lookups_beside_evictions_return_the_right_images() {
        let file: Arc<dyn StorageFile> = Arc::new(MemFile::default());
        let pool = BufferPool::new(32 * 1024, 1024, file);
        let image = |id: PageId, gen: u8| stamped::image(id, gen, 1024);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let hits = std::thread::scope(|s| {
            let readers: Vec<_> = (0..2u64)
                .map(|r| {
                    let (pool, stop) = (&pool, &stop);
                    s.spawn(move || stamped::read_until(stop, r, 64, |id| pool.get(id)))
                })
                .collect();
            let mut next = stamped::random(0x9E37_79B9_7F4A_7C15);
            for step in 0..200_000u32 {
                let x = next();
                let id = x % 64;
                if x.is_multiple_of(7) {
                    pool.invalidate(id);
                } else {
                    pool.insert_clean(id, image(id, step as u8)).unwrap();
                }
            }
            stop.store(true, Ordering::Relaxed);
            readers.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        assert!(hits > 0);
        let st = pool.stats();
        assert_eq!(st.hits, hits);
        assert!(st.evictions > 0);
    }

    #[test]
    fn an_image_of_the_wrong_size_is_refused_and_changes_nothing() {
        let file: Arc<dyn StorageFile> = Arc::new(MemFile::default());
        let pool = BufferPool::new(64 * 1024, 1024, file);
        pool.insert_clean(1, page(1)).unwrap();
        let short: PageRef = Arc::from(vec![9u8; 512]);
        assert!(matches!(
            pool.insert_clean(1, short.clone()),
            Err(Error::InvalidOptions(_))
        ));
        assert!(matches!(
            pool.insert_dirty(2, short),
            Err(Error::InvalidOptions(_))
        ));
        assert_eq!(pool.peek(1).unwrap()[0], 1);
        assert!(pool.peek(2).is_none());
        assert_eq!(pool.stats().resident_pages, 1);
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
