//! The buffer pool's map from page id to frame: an open-addressing hash table
//! with linear probing, each slot holding the id and the frame inline, that
//! readers search without taking the shard's lock.
//!
//! Why lock-free reads. A large read (a subtree of a few hundred node records)
//! looks up hundreds of pages, and split across two threads every lookup used
//! to take its shard's lock, so the lock's cache line moved between the cores
//! on nearly every page: measured on a 300-node subtree, 312 against 240 us
//! with the two threads' lookups unlocked. So a lookup here takes no lock: it
//! reads the slot under a per-slot sequence number (a seqlock) and takes its
//! own reference to the page image; what it writes is that image's reference
//! count and its own thread's epoch record (and, one lookup in 128, its share
//! of advancing the global epoch and freeing retired images).
//!
//! Writers (insert, replace, remove, flags) still hold the shard's lock; every
//! writer method takes the [`Writes`] token, made only with its table, kept
//! inside that lock and checked on use, so it cannot be called without it. A
//! writer changing a slot makes its sequence number odd, changes the fields,
//! then makes it even again; a reader that saw an odd number or a different
//! number after reading gives up (`Probe::Unsure`) and the caller looks again
//! under the lock. A reader also gives up, rather than
//! answering "absent", when its probe ends at an empty slot: removal moves later
//! entries of a probe run back (no tombstones), and a reader could pass an
//! entry while it moves. So only the locked lookup ever says a page is absent.
//!
//! Page images are `Arc<[u8]>` of the table's page size; a slot holds the data
//! pointer of one (`Arc::into_raw`). A reader copies the pointer and then
//! increments the count, so an image taken out of the table (replaced or
//! evicted) must stay allocated until no reader can still hold its pointer: it
//! is handed to epoch-based reclamation (`crossbeam-epoch`) and dropped once
//! every thread that was looking a page up at the time has finished. A lookup
//! pins an epoch (a write to its own thread's record only); prefetches do not
//! need to: the slot arrays they read are never freed while the map lives,
//! and an image pointer is only handed to the CPU's prefetch instruction.
//!
//! A slot is 32 bytes aligned to 32, so a lookup usually touches one cache
//! line. The table doubles when it is half full; the grown slot array replaces
//! the old one, which is kept until the map is dropped (a reader may still be
//! searching it; all replaced arrays together are smaller than the current
//! one).

use std::mem::ManuallyDrop;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_epoch as epoch;

use crate::page::{PageId, PageRef};

/// One entry. `page` is null in an empty slot; otherwise the data pointer of
/// an `Arc<[u8]>` of the table's page size that the table owns (one strong
/// count).
#[repr(C, align(32))]
struct Slot {
    /// Odd while a writer changes the slot. 64 bits: a reader would have to
    /// stall across 2^63 changes of one slot to be fooled by a wrap.
    seq: AtomicU64,
    id: AtomicU64,
    page: AtomicPtr<u8>,
    /// Position of this page id in the shard's CLOCK ring.
    ring_idx: AtomicU32,
    referenced: AtomicBool,
    dirty: AtomicBool,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            seq: AtomicU64::new(0),
            id: AtomicU64::new(0),
            page: AtomicPtr::new(std::ptr::null_mut()),
            ring_idx: AtomicU32::new(0),
            referenced: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
        }
    }

    /// A consistent copy of (id, page), or `None` if a writer was changing
    /// the slot meanwhile.
    fn read(&self) -> Option<(PageId, *mut u8)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let id = self.id.load(Ordering::Relaxed);
        let page = self.page.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some((id, page))
    }

    /// Changes the slot's fields in `f` so that readers never see a mix of
    /// old and new ones. Only writers, one at a time (the shard's lock).
    fn write(&self, f: impl FnOnce(&Slot)) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        f(self);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

/// A slot's fields, for moving an entry between slots (a removal's shift,
/// a growth's copy): the image pointer moves with its ownership.
#[derive(Clone, Copy)]
struct Entry {
    id: PageId,
    page: *mut u8,
    ring_idx: u32,
    referenced: bool,
    dirty: bool,
}

impl Slot {
    /// The entry as the writer sees it (the writer's plain loads see the
    /// settled state: only writers change slots).
    fn entry(&self) -> Entry {
        Entry {
            id: self.id.load(Ordering::Relaxed),
            page: self.page.load(Ordering::Relaxed),
            ring_idx: self.ring_idx.load(Ordering::Relaxed),
            referenced: self.referenced.load(Ordering::Relaxed),
            dirty: self.dirty.load(Ordering::Relaxed),
        }
    }

    /// Empties the slot, under its sequence number.
    fn clear(&self) {
        self.write(|s| s.page.store(std::ptr::null_mut(), Ordering::Relaxed));
    }

    /// Makes the slot hold `e`, under its sequence number.
    fn set(&self, e: Entry) {
        self.write(|s| {
            s.id.store(e.id, Ordering::Relaxed);
            s.page.store(e.page, Ordering::Relaxed);
            s.ring_idx.store(e.ring_idx, Ordering::Relaxed);
            s.referenced.store(e.referenced, Ordering::Relaxed);
            s.dirty.store(e.dirty, Ordering::Relaxed);
        });
    }
}

/// A slot array of a power-of-two size.
struct Table {
    slots: Box<[Slot]>,
    page_size: usize,
    /// Whether dropping the table drops the images its slots hold: a table
    /// replaced by a grown one does not (the new one holds them now).
    owns_pages: AtomicBool,
}

impl Table {
    fn new(size: usize, page_size: usize) -> Table {
        Table {
            slots: (0..size).map(|_| Slot::empty()).collect(),
            page_size,
            owns_pages: AtomicBool::new(true),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, id: PageId) -> usize {
        home_of(id, self.mask())
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if !self.owns_pages.load(Ordering::Acquire) {
            return;
        }
        for slot in self.slots.iter() {
            let p = slot.page.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: a non-null slot pointer came from `Arc::into_raw` of
                // an image of `page_size` bytes, and the table owns that strong
                // count; the table is being dropped, so nothing reads the slot.
                drop(unsafe { image_from_raw(p, self.page_size) });
            }
        }
    }
}

/// The `Arc` whose data pointer `p` is.
///
/// # Safety
/// `p` must come from `Arc::into_raw` of an `Arc<[u8]>` of `len` bytes whose
/// allocation is still live, and the caller must own the strong count the
/// returned `Arc` stands for.
unsafe fn image_from_raw(p: *mut u8, len: usize) -> PageRef {
    // SAFETY: as the function's contract says.
    unsafe { Arc::from_raw(std::ptr::slice_from_raw_parts(p.cast_const(), len)) }
}

/// A new reference to the image whose data pointer `p` is.
///
/// # Safety
/// `p` must come from `Arc::into_raw` of an `Arc<[u8]>` of `len` bytes whose
/// allocation is live with a strong count above zero for the whole call.
unsafe fn image_ref(p: *mut u8, len: usize) -> PageRef {
    let raw = std::ptr::slice_from_raw_parts(p.cast_const(), len);
    // SAFETY: as the function's contract says; the increment is the count
    // the returned `Arc` owns.
    unsafe {
        Arc::increment_strong_count(raw);
        Arc::from_raw(raw)
    }
}

/// The slot where the probe for `id` starts in a table of `mask + 1` slots:
/// the high bits of a multiplicative hash (page ids are small consecutive
/// integers).
fn home_of(id: PageId, mask: usize) -> usize {
    let h = (id ^ (id >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h >> 32) as usize & mask
}

/// Slots of a table created empty.
const MIN_SLOTS: usize = 16;

/// What a lock-free lookup found.
pub(crate) enum Probe {
    /// The image of the page.
    Hit(PageRef),
    /// Absent, or a writer was busy nearby: look again under the lock.
    Unsure,
}

/// The writer side of a [`PageTable`]: made only by [`PageTable::new`],
/// together with its table, kept inside the shard's lock, and required by
/// every writer method (which checks it belongs to that table), so only one
/// writer at a time can call them.
#[derive(Debug)]
pub(crate) struct Writes {
    /// The table this token belongs to.
    owner: u64,
    len: usize,
}

/// Where an entry is, for the writer methods: valid until the next insert or
/// removal, and checked (its slot must still hold its id) when used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At {
    index: usize,
    id: PageId,
}

/// A map from page id to a frame: the page image, its CLOCK ring position,
/// its reference bit and whether it is dirty.
pub(crate) struct PageTable {
    /// The current slot array; never null. Replaced (by a grown one) only by
    /// a writer.
    table: AtomicPtr<Table>,
    /// Tells this table's [`Writes`] from any other's.
    owner: u64,
    /// Slot arrays replaced by grown ones, kept until the map is dropped so
    /// that a reader still searching one never reads freed memory (together
    /// at most the size of the current one: each is half the next). Boxed:
    /// a reader may hold a reference to the `Table` itself, which must not
    /// move.
    retired: Mutex<Retired>,
    page_size: usize,
}

/// Slot arrays replaced by grown ones, as the raw pointers of their boxes:
/// readers may still hold references into them, so they are turned back
/// into boxes (and freed) only when the map is dropped.
struct Retired(Vec<*mut Table>);

// SAFETY: the pointers are boxes owned by the map (moved out of `Box` with
// `Box::into_raw` and freed only in `PageTable::drop`), and `Table` itself is
// `Send` and `Sync` (atomics, a boxed slice and a `usize`); moving or sharing
// the list of pointers between threads is as safe as moving the boxes.
unsafe impl Send for Retired {}

impl PageTable {
    /// An empty table of images of `page_size` bytes.
    pub fn new(page_size: usize) -> (Self, Writes) {
        static TABLES: AtomicU64 = AtomicU64::new(0);
        let owner = TABLES.fetch_add(1, Ordering::Relaxed);
        let table = PageTable {
            table: AtomicPtr::new(Box::into_raw(Box::new(Table::new(MIN_SLOTS, page_size)))),
            owner,
            retired: Mutex::new(Retired(Vec::new())),
            page_size,
        };
        (table, Writes { owner, len: 0 })
    }

    /// Panics unless `w` is this table's token: a writer method called with
    /// another table's token could race this table's own writer.
    fn check(&self, w: &Writes) {
        assert_eq!(
            w.owner, self.owner,
            "page table used with another table's writer token"
        );
    }

    /// The current slot array.
    fn current(&self) -> &Table {
        let t = self.table.load(Ordering::Acquire);
        // SAFETY: the pointer is never null (set in `new` from a `Box`,
        // replaced only by another `Box`'s), and no slot array is freed
        // before the map is dropped (a replaced one goes to `retired`), so
        // the reference is valid for as long as `&self` is.
        unsafe { &*t }
    }

    // ---- readers: no lock ----

    /// Looks `id` up without the lock; on a hit sets its reference bit and
    /// asks the CPU for the first `prefetch` bytes of the image.
    pub fn get(&self, id: PageId, prefetch: usize) -> Probe {
        // Pinned for the image, not the table: see `retire`.
        let _guard = epoch::pin();
        let table = self.current();
        let mask = table.mask();
        let mut i = table.home(id);
        // At most one pass over the table (a writer keeps it at most half
        // full, so a probe meets an empty slot long before).
        for _ in 0..=mask {
            let slot = &table.slots[i];
            let Some((sid, p)) = slot.read() else {
                return Probe::Unsure;
            };
            if p.is_null() {
                return Probe::Unsure;
            }
            if sid == id {
                crate::buffer_pool::prefetch_bytes(p, prefetch.min(self.page_size));
                // SAFETY: `p` was read consistently with `id` from a slot, so
                // it is the data pointer of an image of `page_size` bytes the
                // map owned when the slot was written. An image leaves the map
                // only through `retire`, after its slot in the current array
                // was cleared or overwritten; its drop is deferred until every
                // thread pinned when the deferral was sealed has unpinned, and
                // this lookup has been pinned since before it loaded the array.
                // The array may be a replaced one, which still names images
                // moved to the current array, but such an image can only be
                // retired after the replacement, and the epoch seals a deferral
                // behind a SeqCst fence: a lookup pinned after that fence loads
                // the current array (the replacement precedes the fence), one
                // pinned before it holds the epoch back. So the allocation is
                // live and its count above zero here; incrementing gives this
                // lookup a count of its own, which the returned `Arc` owns.
                let page = unsafe { image_ref(p, self.page_size) };
                // The bit may land on an entry that moved or a replaced
                // array meanwhile: CLOCK then only sees one use fewer.
                if !slot.referenced.load(Ordering::Relaxed) {
                    slot.referenced.store(true, Ordering::Relaxed);
                }
                return Probe::Hit(page);
            }
            i = (i + 1) & mask;
        }
        Probe::Unsure
    }

    /// If `id` is found without the lock, asks the CPU for the first `bytes`
    /// bytes of its image. Changes nothing.
    pub fn prefetch(&self, id: PageId, bytes: usize) {
        // No guard: the image pointer is only handed to the CPU's prefetch,
        // which is sound even for freed memory.
        let table = self.current();
        let mask = table.mask();
        let mut i = table.home(id);
        // A short probe: a prefetch is only a hint.
        for _ in 0..8 {
            match table.slots[i].read() {
                Some((sid, p)) if !p.is_null() => {
                    if sid == id {
                        crate::buffer_pool::prefetch_bytes(p, bytes.min(self.page_size));
                        return;
                    }
                }
                _ => return,
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to start loading the slot where the probe for `id`
    /// starts, for a lookup of `id` coming soon (the slot is almost always a
    /// cache miss in a large pool, and the lookup cannot start without it).
    pub fn prefetch_home(&self, id: PageId) {
        let table = self.current();
        crate::buffer_pool::prefetch_address((&table.slots[table.home(id)] as *const Slot).cast());
    }

    // ---- writers: under the shard's lock ----

    pub fn len(&self, w: &Writes) -> usize {
        self.check(w);
        w.len
    }

    /// Where `id` is, if present.
    pub fn find(&self, w: &Writes, id: PageId) -> Option<At> {
        self.check(w);
        let table = self.current();
        let mask = table.mask();
        let mut i = table.home(id);
        loop {
            let slot = &table.slots[i];
            // Only writers change slots, and the caller is the writer: plain
            // loads see the settled state.
            if slot.page.load(Ordering::Relaxed).is_null() {
                return None;
            }
            if slot.id.load(Ordering::Relaxed) == id {
                return Some(At { index: i, id });
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot of `at`, which must still hold its entry: panics on a
    /// stale `At` (a bug in the pool) rather than reading another page's
    /// image or an empty slot, and on another table's token.
    fn slot(&self, w: &Writes, at: At) -> &Slot {
        self.check(w);
        let slot = &self.current().slots[at.index];
        assert!(
            !slot.page.load(Ordering::Relaxed).is_null()
                && slot.id.load(Ordering::Relaxed) == at.id,
            "stale page-table position for page {}",
            at.id
        );
        slot
    }

    /// A reference to the image at `at`.
    pub fn page(&self, w: &Writes, at: At) -> PageRef {
        let p = self.slot(w, at).page.load(Ordering::Relaxed);
        // SAFETY: `slot` checked that the slot still holds `at`'s entry, so
        // `p` is a non-null image pointer the table owns; the writer (the
        // caller, holding `Writes`) is the only one that takes images out of
        // the table, so it stays live here. The increment gives the caller
        // its own count.
        unsafe { image_ref(p, self.page_size) }
    }

    /// Whether the image at `at` is `page` (the same allocation).
    pub fn holds(&self, w: &Writes, at: At, page: &PageRef) -> bool {
        std::ptr::eq(
            self.slot(w, at).page.load(Ordering::Relaxed).cast_const(),
            page.as_ptr(),
        )
    }

    /// How many references to the image at `at` exist, the table's included.
    pub fn references(&self, w: &Writes, at: At) -> usize {
        let p = self.slot(w, at).page.load(Ordering::Relaxed);
        // SAFETY: as in `page`; the `ManuallyDrop` leaves the table's count
        // as it is.
        let image = ManuallyDrop::new(unsafe { image_from_raw(p, self.page_size) });
        Arc::strong_count(&image)
    }

    pub fn dirty(&self, w: &Writes, at: At) -> bool {
        self.slot(w, at).dirty.load(Ordering::Relaxed)
    }

    pub fn set_dirty(&self, w: &mut Writes, at: At, dirty: bool) {
        self.slot(w, at).dirty.store(dirty, Ordering::Relaxed);
    }

    pub fn referenced(&self, w: &Writes, at: At) -> bool {
        self.slot(w, at).referenced.load(Ordering::Relaxed)
    }

    pub fn set_referenced(&self, w: &mut Writes, at: At, referenced: bool) {
        self.slot(w, at)
            .referenced
            .store(referenced, Ordering::Relaxed);
    }

    pub fn set_ring_idx(&self, w: &mut Writes, at: At, ring_idx: u32) {
        self.slot(w, at).ring_idx.store(ring_idx, Ordering::Relaxed);
    }

    /// Replaces the image at `at` (the old one is dropped once no reader
    /// can hold it) and sets the flags.
    pub fn replace(&self, w: &mut Writes, at: At, page: PageRef, dirty: bool) {
        assert_eq!(page.len(), self.page_size, "page image of the wrong size");
        let slot = self.slot(w, at);
        let new = Arc::into_raw(page).cast::<u8>().cast_mut();
        let old = slot.page.load(Ordering::Relaxed);
        slot.write(|s| {
            s.page.store(new, Ordering::Relaxed);
            s.dirty.store(dirty, Ordering::Relaxed);
            s.referenced.store(true, Ordering::Relaxed);
        });
        self.retire(old);
    }

    /// Inserts `id`, which must be absent.
    pub fn insert(&self, w: &mut Writes, id: PageId, page: PageRef, ring_idx: u32, dirty: bool) {
        self.check(w);
        assert_eq!(page.len(), self.page_size, "page image of the wrong size");
        if (w.len + 1) * 2 > self.current().slots.len() {
            self.grow();
        }
        let table = self.current();
        debug_assert!(self.find(w, id).is_none(), "page {id} inserted twice");
        let page = Arc::into_raw(page).cast::<u8>().cast_mut();
        place(
            table,
            Entry {
                id,
                page,
                ring_idx,
                referenced: false,
                dirty,
            },
        );
        w.len += 1;
    }

    /// Removes `id`, returning its ring position. Later entries of its probe
    /// run move back into the hole, so every entry stays reachable from its
    /// home slot. The image is dropped once no reader can hold it.
    pub fn remove(&self, w: &mut Writes, id: PageId) -> Option<u32> {
        let mut hole = self.find(w, id)?.index;
        let table = self.current();
        let slots = &table.slots;
        let ring_idx = slots[hole].ring_idx.load(Ordering::Relaxed);
        let old = slots[hole].page.load(Ordering::Relaxed);
        slots[hole].clear();
        self.retire(old);
        w.len -= 1;
        let mask = table.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            if slots[j].page.load(Ordering::Relaxed).is_null() {
                return Some(ring_idx);
            }
            let moving = slots[j].entry();
            let home = table.home(moving.id);
            // The entry at j may fill the hole unless its home lies in the
            // cyclic range (hole, j], where it would no longer be found.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                // Copied to the hole first, then cleared where it was: a
                // reader may see it twice or miss it (and then look again
                // under the lock), never see a wrong image.
                slots[hole].set(moving);
                slots[j].clear();
                hole = j;
            }
        }
    }

    /// Every entry's id and place, in no particular order.
    pub fn entries(&self, w: &Writes) -> Vec<(PageId, At)> {
        self.check(w);
        self.current()
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.page.load(Ordering::Relaxed).is_null())
            .map(|(i, s)| {
                let id = s.id.load(Ordering::Relaxed);
                (id, At { index: i, id })
            })
            .collect()
    }

    /// Hands the image `p` (just taken out of a slot) to the epoch, to be
    /// dropped once no reader can still be about to take a reference to it:
    /// every reader that might have read `p` in [`get`](Self::get) is pinned
    /// until it has its own reference.
    fn retire(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        // SAFETY: `p` was just taken out of a slot (by the only writer), so
        // the map's strong count passes to this `Arc`.
        let image = unsafe { image_from_raw(p, self.page_size) };
        epoch::pin().defer(move || drop(image));
    }

    /// Doubles the slot array: the entries move to a new one, which replaces
    /// the old one; readers still searching the old one find the same images
    /// there (the old array is kept until the map is dropped).
    fn grow(&self) {
        let old_table = self.current();
        let bigger = Table::new(old_table.slots.len() * 2, self.page_size);
        for s in old_table.slots.iter() {
            let e = s.entry();
            if !e.page.is_null() {
                place(&bigger, e);
            }
        }
        // The old array must not drop the images: the new one owns them now.
        old_table.owns_pages.store(false, Ordering::Relaxed);
        let old = self
            .table
            .swap(Box::into_raw(Box::new(bigger)), Ordering::AcqRel);
        // `old` came from `Box::into_raw` (in `new` or an earlier grow) and
        // is no longer the current array; readers may still be searching it,
        // so it stays a raw pointer, freed when the map is dropped.
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(old);
    }
}

impl Drop for PageTable {
    fn drop(&mut self) {
        // SAFETY: every pointer came from `Box::into_raw`, each is freed once
        // (the current array here, each replaced one from `retired`), and with
        // `&mut self` no reader or writer uses them any more. The current
        // array drops the images it holds; replaced ones hold none of their
        // own (`owns_pages` is false).
        unsafe {
            drop(Box::from_raw(*self.table.get_mut()));
            let retired = self.retired.get_mut().unwrap_or_else(|p| p.into_inner());
            for t in retired.0.drain(..) {
                drop(Box::from_raw(t));
            }
        }
        // Images this thread retired wait in its epoch bag; hand them on so
        // that they are freed soon rather than when the bag next fills.
        epoch::pin().flush();
    }
}

/// Writes an entry into the first free slot of its probe run.
fn place(table: &Table, e: Entry) {
    let mask = table.mask();
    let mut i = table.home(e.id);
    while !table.slots[i].page.load(Ordering::Relaxed).is_null() {
        i = (i + 1) & mask;
    }
    table.slots[i].set(e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PS: usize = 64;

    fn image(tag: u8) -> PageRef {
        Arc::from(vec![tag; PS])
    }

    fn tag_of(t: &PageTable, w: &Writes, id: PageId) -> Option<u8> {
        t.find(w, id).map(|at| t.page(w, at)[0])
    }

    fn hit(t: &PageTable, id: PageId) -> Option<u8> {
        match t.get(id, 0) {
            Probe::Hit(p) => Some(p[0]),
            Probe::Unsure => None,
        }
    }

    /// Misuse inside the crate panics instead of corrupting the table: a
    /// writer token of another table, a position kept past a removal.
    #[test]
    fn foreign_tokens_and_stale_positions_are_refused() {
        let (a, mut wa) = PageTable::new(PS);
        let (b, _wb) = PageTable::new(PS);
        a.insert(&mut wa, 1, image(1), 0, false);
        a.insert(&mut wa, 2, image(2), 1, false);
        let foreign = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.find(&wa, 1)));
        assert!(foreign.is_err(), "another table's token was accepted");
        // Also by the flag setters: `b`'s token at a position of `a`.
        let (_other, mut wb) = PageTable::new(PS);
        let at2 = a.find(&wa, 2).unwrap();
        let flag = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            a.set_dirty(&mut wb, at2, true)
        }));
        assert!(flag.is_err(), "a flag was set with another table's token");
        assert!(!a.dirty(&wa, at2));
        let at = a.find(&wa, 1).unwrap();
        a.remove(&mut wa, 1);
        let stale = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.page(&wa, at)));
        assert!(stale.is_err(), "a stale position was used");
        assert_eq!(tag_of(&a, &wa, 2), Some(2));
    }

    #[test]
    fn slots_fit_in_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::align_of::<Slot>(), 32);
    }

    /// Random inserts, replacements and removals over a small id range (long
    /// probe runs, wrap-around, removal in the middle of runs, growth)
    /// against a `HashMap`, through both the writer's and the reader's
    /// lookups; then every image is dropped exactly once.
    #[test]
    fn matches_a_hash_map_under_churn() {
        let (table, mut w) = PageTable::new(PS);
        let mut model: HashMap<PageId, u8> = HashMap::new();
        let mut next = stamped::random(0x9E37_79B9_7F4A_7C15);
        let witness = image(0);
        for step in 0..100_000u32 {
            let x = next();
            let id = x % 3_000;
            let tag = (x >> 40) as u8;
            match (x >> 20) % 3 {
                0 => {
                    let old = tag_of(&table, &w, id);
                    assert_eq!(old, model.insert(id, tag), "insert {id} at {step}");
                    match table.find(&w, id) {
                        Some(at) => table.replace(&mut w, at, image(tag), false),
                        None => table.insert(&mut w, id, image(tag), step, false),
                    }
                }
                1 => {
                    let old = tag_of(&table, &w, id);
                    assert_eq!(old, model.remove(&id), "remove {id} at {step}");
                    assert_eq!(table.remove(&mut w, id).is_some(), old.is_some());
                }
                _ => {
                    let want = model.get(&id).copied();
                    assert_eq!(tag_of(&table, &w, id), want, "find {id} at {step}");
                    // With no writer running, a reader is never unsure of a
                    // present page.
                    if want.is_some() {
                        assert_eq!(hit(&table, id), want, "get {id} at {step}");
                    }
                }
            }
            assert_eq!(table.len(&w), model.len());
        }
        assert_eq!(table.entries(&w).len(), model.len());
        for (id, tag) in &model {
            assert_eq!(hit(&table, *id), Some(*tag));
        }
        // A page the table holds is referenced by the table and by `witness`.
        table.insert(&mut w, 5_000, witness.clone(), 0, false);
        let at = table.find(&w, 5_000).unwrap();
        assert!(table.holds(&w, at, &witness));
        assert_eq!(table.references(&w, at), 2);
        drop(table);
        // Retired images are dropped by the epoch; the table's own are
        // dropped with it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&witness) > 1 && std::time::Instant::now() < deadline {
            epoch::pin().flush();
        }
        assert_eq!(
            Arc::strong_count(&witness),
            1,
            "the table's reference was dropped"
        );
    }

    /// Readers never see a wrong image, while a writer inserts, replaces,
    /// removes (moving entries back) and grows the table beside them: every
    /// image carries its page id, and a hit must carry the id asked for.
    #[test]
    fn concurrent_readers_never_see_another_pages_image() {
        let (table, mut w) = PageTable::new(PS);
        let stop = AtomicBool::new(false);
        let img = |id: PageId, gen: u8| stamped::image(id, gen, PS);
        std::thread::scope(|s| {
            for r in 0..2u64 {
                let (table, stop) = (&table, &stop);
                s.spawn(move || {
                    let hits = stamped::read_until(stop, r, 512, |id| match table.get(id, 64) {
                        Probe::Hit(p) => Some(p),
                        Probe::Unsure => None,
                    });
                    assert!(hits > 0);
                });
            }
            let mut next = stamped::random(0x9E37_79B9_7F4A_7C15);
            for step in 0..1_000_000u32 {
                let x = next();
                let id = x % 512;
                match (table.find(&w, id), (x >> 20) % 3) {
                    (Some(at), 0) => table.replace(&mut w, at, img(id, step as u8), false),
                    (Some(_), _) => {
                        table.remove(&mut w, id);
                    }
                    (None, _) => table.insert(&mut w, id, img(id, step as u8), 0, false),
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
}

/// Page images stamped with their page id, and readers that check the stamp:
/// for tests of lookups running beside writers.
#[cfg(test)]
pub(crate) mod stamped {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use crate::page::{PageId, PageRef};

    /// An image of `len` bytes of `gen` whose first 8 bytes are `id`.
    pub fn image(id: PageId, gen: u8, len: usize) -> PageRef {
        let mut v = vec![gen; len];
        v[..8].copy_from_slice(&id.to_le_bytes());
        Arc::from(v)
    }

    /// A xorshift generator of test choices.
    pub fn random(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Looks up random ids below `ids` until `stop`, asserting that every
    /// image found carries the id asked for; returns the number found.
    pub fn read_until(
        stop: &AtomicBool,
        seed: u64,
        ids: u64,
        lookup: impl Fn(PageId) -> Option<PageRef>,
    ) -> u64 {
        let mut next = random(0x2545_F491_4F6C_DD1D ^ seed);
        let mut hits = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let id = next() % ids;
            if let Some(p) = lookup(id) {
                let got = PageId::from_le_bytes(p[..8].try_into().unwrap());
                assert_eq!(got, id, "image of page {got} returned for {id}");
                hits += 1;
            }
        }
        hits
    }
}
