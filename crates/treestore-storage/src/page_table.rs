//! The buffer pool's map from page id to frame: an open-addressing hash table
//! with linear probing, each slot holding the id and the frame inline.
//!
//! A lookup in a large pool misses the CPU cache on every level below the top
//! of the tree, and memory latency dominates the cost of reading a page. A
//! general-purpose map touches two cold cache lines per hit (its control
//! bytes, then the bucket); here a hit usually touches one, since a slot is
//! 32 bytes aligned to 32, so it never straddles a line, and it holds the id
//! and the frame together. The table doubles when it is half full, and
//! removal shifts later entries of the probe run back (no tombstones), so
//! probe runs stay short under constant insert/evict churn.

use crate::page::{PageId, PageRef};

/// A cached page image and its CLOCK state.
pub(crate) struct Frame {
    pub page: PageRef,
    /// Position of this page id in the shard's CLOCK ring.
    pub ring_idx: u32,
    pub referenced: bool,
    pub dirty: bool,
}

#[repr(C, align(32))]
struct Slot {
    id: PageId,
    /// `None` marks an empty slot.
    frame: Option<Frame>,
}

const EMPTY: Slot = Slot { id: 0, frame: None };

/// Slots of a table created empty; it grows by doubling.
const MIN_SLOTS: usize = 16;

/// A map from page id to [`Frame`].
pub(crate) struct PageTable {
    slots: Vec<Slot>,
    len: usize,
}

impl Default for PageTable {
    fn default() -> Self {
        PageTable::new()
    }
}

impl PageTable {
    pub fn new() -> Self {
        PageTable {
            slots: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot where the probe for `id` starts: the high bits of a
    /// multiplicative hash (page ids are small consecutive integers).
    fn home(&self, id: PageId) -> usize {
        let h = (id ^ (id >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (h >> 32) as usize & self.mask()
    }

    /// Asks the CPU to start loading the slot where the probe for `id`
    /// starts, for a lookup of `id` coming soon (the slot is almost always a
    /// cache miss in a large pool, and the lookup cannot start without it).
    pub fn prefetch_home(&self, id: PageId) {
        // A table with no slots yet has no home to compute.
        if !self.slots.is_empty() {
            crate::buffer_pool::prefetch_object(&self.slots[self.home(id)]);
        }
    }

    /// The index of `id`'s slot, if present.
    fn find(&self, id: PageId) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            let slot = &self.slots[i];
            slot.frame.as_ref()?;
            if slot.id == id {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get(&self, id: PageId) -> Option<&Frame> {
        let i = self.find(id)?;
        self.slots[i].frame.as_ref()
    }

    pub fn get_mut(&mut self, id: PageId) -> Option<&mut Frame> {
        let i = self.find(id)?;
        self.slots[i].frame.as_mut()
    }

    /// Inserts or replaces the frame of `id`, returning the one replaced.
    pub fn insert(&mut self, id: PageId, frame: Frame) -> Option<Frame> {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            let slot = &mut self.slots[i];
            match slot.frame {
                None => {
                    *slot = Slot {
                        id,
                        frame: Some(frame),
                    };
                    self.len += 1;
                    return None;
                }
                Some(_) if slot.id == id => return slot.frame.replace(frame),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Removes `id`, moving later entries of its probe run back into the
    /// hole, so every entry stays reachable from its home slot.
    pub fn remove(&mut self, id: PageId) -> Option<Frame> {
        let mut hole = self.find(id)?;
        let removed = self.slots[hole].frame.take();
        self.len -= 1;
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            if self.slots[j].frame.is_none() {
                return removed;
            }
            let home = self.home(self.slots[j].id);
            // The entry at j may fill the hole unless its home lies in the
            // cyclic range (hole, j], where it would no longer be found.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots.swap(hole, j);
                hole = j;
            }
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, (0..size).map(|_| EMPTY).collect());
        self.len = 0;
        for slot in old {
            if let Some(frame) = slot.frame {
                self.insert(slot.id, frame);
            }
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (PageId, &Frame)> {
        self.slots
            .iter()
            .filter_map(|s| s.frame.as_ref().map(|f| (s.id, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn frame(tag: u8) -> Frame {
        Frame {
            page: Arc::from(vec![tag; 8]),
            ring_idx: u32::from(tag),
            referenced: false,
            dirty: false,
        }
    }

    #[test]
    fn slots_fit_in_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::align_of::<Slot>(), 32);
    }

    /// Random inserts, replacements and removals over a small id range (long
    /// probe runs, wrap-around, removal in the middle of runs) against a
    /// `HashMap`.
    #[test]
    fn matches_a_hash_map_under_churn() {
        let mut table = PageTable::new();
        let mut model: HashMap<PageId, u8> = HashMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = x % 3_000;
            let tag = (x >> 40) as u8;
            match (x >> 20) % 3 {
                0 => {
                    let old = table.insert(id, frame(tag)).map(|f| f.page[0]);
                    assert_eq!(old, model.insert(id, tag), "insert {id} at {step}");
                }
                1 => {
                    let old = table.remove(id).map(|f| f.page[0]);
                    assert_eq!(old, model.remove(&id), "remove {id} at {step}");
                }
                _ => {
                    let got = table.get(id).map(|f| f.page[0]);
                    assert_eq!(got, model.get(&id).copied(), "get {id} at {step}");
                }
            }
            assert_eq!(table.len(), model.len());
            if step % 20_000 == 0 {
                for (id, tag) in &model {
                    assert_eq!(table.get(*id).map(|f| f.page[0]), Some(*tag));
                }
                assert_eq!(table.iter().count(), model.len());
            }
        }
        for (id, tag) in &model {
            assert_eq!(table.get_mut(*id).map(|f| f.page[0]), Some(*tag));
        }
        let ids: Vec<PageId> = model.keys().copied().collect();
        for id in ids {
            assert!(table.remove(id).is_some());
            assert!(table.get(id).is_none());
        }
        assert_eq!(table.len(), 0);
    }
}
