//! The free list: which pages can be reused, which are waiting for readers, and
//! how the list is persisted with each checkpoint.
//!
//! A page superseded by commit `c` is *pending* until no snapshot older than `c`
//! is open; then it is *free* and the allocator hands it out again (lowest id
//! first, so the file's tail empties and can be truncated). A superseded page that
//! belongs to the last durable checkpoint is first *awaiting the next checkpoint*:
//! recovery starts from that checkpoint's tree, so its pages must stay intact until
//! a newer checkpoint is durable. Pages allocated since the last checkpoint are not
//! in it and skip that wait. Free, pending and awaiting pages are all written to a
//! new checkpoint's free-list chain: after a restart from it no snapshot exists,
//! so every recorded page is free.
//!
//! Free-list page (type 5), after the common header (count = runs in this page,
//! link = next free-list page or 0): a sequence of runs, each two LEB128 varints:
//! the gap from the end of the previous run in this page (the first is absolute)
//! and the run length.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::{Error, Result};
use crate::page::{self, PageId, PageType, PAGE_HEADER_LEN};
use crate::varint;

/// In-memory state of free space, owned by the committer.
#[derive(Debug, Clone, Default)]
pub struct FreeList {
    free: BTreeSet<PageId>,
    /// Superseded pages by the commit that superseded them.
    pending: BTreeMap<u64, Vec<PageId>>,
    /// Superseded pages of the durable checkpoint, with their commit.
    awaiting_checkpoint: Vec<(u64, PageId)>,
    /// Superseded pages of the checkpoint being written, with their commit:
    /// they wait for the checkpoint after it.
    awaiting_next: Vec<(u64, PageId)>,
    /// A checkpoint is between its begin and its end.
    in_flight: bool,
    /// Pages handed out since the last checkpoint (not part of it).
    since_checkpoint: HashSet<PageId>,
    page_count: u64,
    /// Emptied lists of `pending`, kept for the next commits' superseded
    /// pages (a small commit would otherwise allocate one per commit).
    spare_lists: Vec<Vec<PageId>>,
}

/// Most emptied lists [`FreeList`] keeps for reuse, and the longest (a large
/// commit's list is given back to the allocator).
const MAX_SPARE_LISTS: usize = 64;
const MAX_SPARE_LIST_LEN: usize = 256;

impl FreeList {
    /// A free list for a file of `page_count` pages with the given free pages.
    pub fn new(page_count: u64, free: impl IntoIterator<Item = PageId>) -> Self {
        FreeList {
            free: free.into_iter().collect(),
            pending: BTreeMap::new(),
            awaiting_checkpoint: Vec::new(),
            awaiting_next: Vec::new(),
            in_flight: false,
            since_checkpoint: HashSet::new(),
            page_count,
            spare_lists: Vec::new(),
        }
    }

    /// Pages in the file (the next id handed out when the file grows).
    pub fn page_count(&self) -> u64 {
        self.page_count
    }
    /// Pages reusable now.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
    /// Pages waiting for old snapshots to close or for the next checkpoint.
    pub fn pending_count(&self) -> usize {
        self.pending.values().map(Vec::len).sum::<usize>()
            + self.awaiting_checkpoint.len()
            + self.awaiting_next.len()
    }

    /// Takes the lowest free page, or grows the file by one page.
    pub fn allocate(&mut self) -> PageId {
        let id = match self.free.pop_first() {
            Some(id) => id,
            None => {
                self.page_count += 1;
                self.page_count - 1
            }
        };
        self.since_checkpoint.insert(id);
        id
    }

    /// Returns a page that was never visible to any snapshot (reusable at once).
    pub fn free_now(&mut self, id: PageId) {
        self.since_checkpoint.remove(&id);
        self.free.insert(id);
    }

    /// Records pages superseded by commit `seq`.
    pub fn supersede(&mut self, seq: u64, ids: Vec<PageId>) {
        for id in ids {
            if self.since_checkpoint.remove(&id) {
                let spare = &mut self.spare_lists;
                self.pending
                    .entry(seq)
                    .or_insert_with(|| spare.pop().unwrap_or_default())
                    .push(id);
            } else if self.in_flight {
                self.awaiting_next.push((seq, id));
            } else {
                self.awaiting_checkpoint.push((seq, id));
            }
        }
    }

    /// Makes pages superseded by commits `<= oldest_snapshot` reusable (no open
    /// snapshot is older than the commit that superseded them); returns them.
    pub fn release(&mut self, oldest_snapshot: u64) -> Vec<PageId> {
        let mut released = Vec::new();
        self.release_each(oldest_snapshot, |id| released.push(id));
        released
    }

    /// [`FreeList::release`], handing each page to `f` instead of
    /// collecting them (what every commit calls: no allocation).
    pub fn release_each(&mut self, oldest_snapshot: u64, mut f: impl FnMut(PageId)) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > oldest_snapshot {
                break;
            }
            let mut ids = entry.remove();
            for &id in &ids {
                self.free.insert(id);
                f(id);
            }
            if self.spare_lists.len() < MAX_SPARE_LISTS && ids.capacity() <= MAX_SPARE_LIST_LEN {
                ids.clear();
                self.spare_lists.push(ids);
            }
        }
    }

    /// A checkpoint of the tree as it is now is being written (its free-list
    /// chain already taken): everything allocated so far belongs to it.
    pub fn begin_checkpoint(&mut self) {
        self.since_checkpoint.clear();
        self.in_flight = true;
    }

    /// The checkpoint begun last is durable: pages of the previous one wait
    /// only for snapshots now, and pages of the new one superseded since its
    /// begin wait for the next checkpoint.
    pub fn checkpoint_done(&mut self) {
        for (seq, id) in std::mem::take(&mut self.awaiting_checkpoint) {
            self.pending.entry(seq).or_default().push(id);
        }
        self.awaiting_checkpoint = std::mem::take(&mut self.awaiting_next);
        self.in_flight = false;
    }

    /// Marks pages of the durable checkpoint (the free-list chain) as superseded
    /// by the checkpoint being written; returns how many entries to drop if that
    /// checkpoint fails (see [`FreeList::undo_checkpoint`]).
    pub fn retire_with_checkpoint(&mut self, seq: u64, ids: &[PageId]) -> usize {
        let before = self.awaiting_checkpoint.len();
        self.awaiting_checkpoint
            .extend(ids.iter().map(|&id| (seq, id)));
        before
    }

    /// Gives back the free pages at the end of the file (shrinking the page
    /// count); returns the pages given back.
    pub fn trim_tail(&mut self) -> Vec<PageId> {
        let mut trimmed = Vec::new();
        while self.page_count > 2 && self.free.remove(&(self.page_count - 1)) {
            self.page_count -= 1;
            trimmed.push(self.page_count);
        }
        trimmed
    }

    /// Every page that a restart from a checkpoint written now may treat as
    /// free, sorted.
    pub fn all_recorded(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self.free.iter().copied().collect();
        for v in self.pending.values() {
            ids.extend_from_slice(v);
        }
        ids.extend(self.awaiting_checkpoint.iter().map(|(_, id)| *id));
        ids.extend(self.awaiting_next.iter().map(|(_, id)| *id));
        ids.sort_unstable();
        ids
    }

    /// Undoes the free-list side of a checkpoint that failed before its meta page
    /// was written: forgets what it retired, restores the trimmed tail and
    /// returns its allocations.
    pub fn undo_checkpoint(
        &mut self,
        retired_from: usize,
        trimmed: Vec<PageId>,
        allocated: &[PageId],
        page_count: u64,
    ) {
        self.awaiting_checkpoint.truncate(retired_from);
        self.free.extend(trimmed);
        self.rollback(allocated, page_count);
    }

    /// Undoes allocations of a failed commit: `allocated` go back to the free set
    /// (ids beyond `page_count` are dropped and the file length restored).
    pub fn rollback(&mut self, allocated: &[PageId], page_count: u64) {
        self.page_count = page_count;
        self.free.retain(|&id| id < page_count);
        for &id in allocated {
            self.since_checkpoint.remove(&id);
            if id < page_count {
                self.free.insert(id);
            }
        }
    }
}

/// Groups sorted page ids into (start, length) runs.
pub fn runs(ids: &[PageId]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some((start, len)) if *start + *len == id => *len += 1,
            _ => out.push((id, 1)),
        }
    }
    out
}

/// Splits runs into page bodies; returns the encoded body and run count per page.
fn bodies(runs: &[(u64, u64)], page_size: usize) -> Vec<(Vec<u8>, u16)> {
    let room = page_size - PAGE_HEADER_LEN;
    let mut pages = Vec::new();
    let mut body = Vec::new();
    let mut count = 0u16;
    let mut prev_end = 0u64;
    for &(start, len) in runs {
        let mut enc = Vec::with_capacity(20);
        varint::put(&mut enc, start - if count == 0 { 0 } else { prev_end });
        varint::put(&mut enc, len);
        if body.len() + enc.len() > room || count == u16::MAX {
            pages.push((std::mem::take(&mut body), count));
            count = 0;
            enc.clear();
            varint::put(&mut enc, start);
            varint::put(&mut enc, len);
        }
        body.extend_from_slice(&enc);
        count += 1;
        prev_end = start + len;
    }
    if count > 0 {
        pages.push((body, count));
    }
    pages
}

/// Encodes `ids` into sealed pages at `at`, chained in order; pages beyond what
/// the list needs are written empty. `None` when `at` is too short.
pub fn encode(ids: &[PageId], at: &[PageId], page_size: usize) -> Option<Vec<(PageId, Vec<u8>)>> {
    let bodies = bodies(&runs(ids), page_size);
    if bodies.len() > at.len() {
        return None;
    }
    let mut bodies = bodies.into_iter();
    let pages = at
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let (body, count) = bodies.next().unwrap_or_default();
            let mut buf = vec![0u8; page_size];
            buf[PAGE_HEADER_LEN..PAGE_HEADER_LEN + body.len()].copy_from_slice(&body);
            let next = at.get(i + 1).copied().unwrap_or(0);
            page::seal(&mut buf, id, PageType::FreeList, count, next);
            (id, buf)
        })
        .collect();
    Some(pages)
}

/// A free-list chain ready to be written.
#[derive(Debug)]
pub struct Chain {
    /// The chain's pages, in order.
    pub pages: Vec<PageId>,
    /// Their sealed images.
    pub images: Vec<(PageId, Vec<u8>)>,
    /// How many free pages the chain records.
    pub recorded: u64,
}

/// The free-list chain of a checkpoint about to be written: takes pages for
/// the chain from `fl` until the list of every recorded page (which those pages
/// leave) fits in them. Taking a page can split a run of recorded pages, or move
/// a varint across a length boundary, so the need is recomputed each time.
pub fn build_chain(fl: &mut FreeList, page_size: usize) -> Chain {
    let mut pages: Vec<PageId> = Vec::new();
    loop {
        let ids = fl.all_recorded();
        if let Some(images) = encode(&ids, &pages, page_size) {
            return Chain {
                pages,
                images,
                recorded: ids.len() as u64,
            };
        }
        pages.push(fl.allocate());
    }
}

/// Decodes one verified free-list page: its page ids and the next page.
pub fn decode(buf: &[u8], id: PageId, page_count: u64) -> Result<(Vec<PageId>, PageId)> {
    let n = page::count(buf);
    let mut at = PAGE_HEADER_LEN;
    let mut prev_end = 0u64;
    let mut ids = Vec::new();
    for i in 0..n {
        let bad = || Error::corrupt(id, format!("free-list run {i} is malformed"));
        let gap = varint::get(buf, &mut at).ok_or_else(bad)?;
        let len = varint::get(buf, &mut at).ok_or_else(bad)?;
        let start = prev_end.checked_add(gap).ok_or_else(bad)?;
        let end = start.checked_add(len).ok_or_else(bad)?;
        if len == 0 || start < 2 || end > page_count {
            return Err(bad());
        }
        ids.extend(start..end);
        prev_end = end;
    }
    // The next page of the chain lies inside the checkpoint too (the file may
    // hold stale pages past its end, left by a crash).
    let link = page::link(buf);
    if link != 0 && (link < 2 || link >= page_count) {
        return Err(Error::corrupt(
            id,
            format!("free-list link to page {link}, outside the checkpoint's {page_count} pages"),
        ));
    }
    Ok((ids, link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_roundtrip_across_pages() {
        // Scattered ids so several pages are needed at a 1 KiB page size.
        let ids: Vec<PageId> = (0..3000u64)
            .map(|i| 2 + i * 3)
            .chain(20_000..20_500)
            .collect();
        let n = bodies(&runs(&ids), 1024).len();
        assert!(n > 1);
        let at: Vec<PageId> = (100_000..100_000 + n as u64).collect();
        let pages = encode(&ids, &at, 1024).unwrap();
        assert!(
            encode(&ids, &at[..n - 1], 1024).is_none(),
            "a short chain is refused"
        );
        let mut back = Vec::new();
        let mut next = at[0];
        for (pid, buf) in &pages {
            assert_eq!(*pid, next);
            page::verify_type(buf, *pid, PageType::FreeList).unwrap();
            let (got, link) = decode(buf, *pid, 200_000).unwrap();
            back.extend(got);
            next = link;
        }
        assert_eq!(next, 0);
        assert_eq!(back, ids);
    }

    #[test]
    fn decode_rejects_ids_beyond_the_file() {
        let pages = encode(&[5, 6, 7], &[3], 1024).unwrap();
        assert!(decode(&pages[0].1, 3, 7).is_err());
        assert!(decode(&pages[0].1, 3, 8).is_ok());
    }

    #[test]
    fn decode_rejects_a_link_past_the_checkpoint() {
        let ids: Vec<PageId> = (0..3000u64).map(|i| 2 + i * 3).collect();
        let n = bodies(&runs(&ids), 1024).len() as u64;
        assert!(n > 1, "chained pages");
        let at: Vec<PageId> = (10_000..10_000 + n).collect();
        let pages = encode(&ids, &at, 1024).unwrap();
        assert_eq!(decode(&pages[0].1, at[0], 10_000 + n).unwrap().1, at[1]);
        // The runs fit below 10,000; the link to page 10,001 does not.
        let err = decode(&pages[0].1, at[0], at[1]).unwrap_err();
        assert!(err.to_string().contains("free-list link"), "{err}");
    }

    #[test]
    fn pending_pages_wait_for_old_snapshots() {
        let mut fl = FreeList::new(10, [4]);
        let a = fl.allocate();
        let b = fl.allocate();
        assert_eq!((a, b), (4, 10));
        fl.supersede(5, vec![a, b]);
        assert!(
            fl.release(4).is_empty(),
            "pages superseded by commit 5 are held for snapshot 4"
        );
        assert_eq!(fl.allocate(), 11);
        assert_eq!(fl.release(5), vec![4, 10]);
        assert_eq!(fl.allocate(), 4);
        assert_eq!(fl.pending_count(), 0);
        // The emptied list serves a later commit's pages, holding only them.
        fl.supersede(7, vec![11]);
        fl.supersede(6, vec![4]);
        assert_eq!(fl.pending_count(), 2);
        assert_eq!(fl.release(6), vec![4]);
        assert_eq!(fl.release(7), vec![11]);
    }

    /// While a checkpoint is being written, a page it holds (allocated
    /// before its begin, or of the checkpoint before) that is superseded
    /// waits for the checkpoint after it; a page allocated since the begin
    /// waits only for snapshots; the earlier checkpoint's pages are freed
    /// when it is done.
    #[test]
    fn pages_of_a_checkpoint_being_written_wait_for_the_one_after() {
        let mut fl = FreeList::new(10, []);
        // Pages 2..10 belong to the durable checkpoint; 10 and 11 come after.
        let (a, b) = (fl.allocate(), fl.allocate());
        fl.supersede(2, vec![5]);
        fl.begin_checkpoint();
        let c = fl.allocate();
        assert_eq!((a, b, c), (10, 11, 12));
        fl.supersede(3, vec![a, 6, c]);
        assert_eq!(fl.release(100), vec![c], "only the page after the begin");
        assert_eq!(fl.pending_count(), 3);
        fl.checkpoint_done();
        assert_eq!(fl.release(100), vec![5], "the durable checkpoint's page");
        assert_eq!(fl.pending_count(), 2, "{a} and 6 wait for the next one");
        assert_eq!(fl.all_recorded(), vec![5, 6, a, c]);
        fl.begin_checkpoint();
        fl.checkpoint_done();
        let mut freed = fl.release(100);
        freed.sort_unstable();
        assert_eq!(freed, vec![6, a]);
        assert_eq!(fl.pending_count(), 0);
        assert_eq!(fl.allocate(), 5, "lowest free first");
    }

    #[test]
    fn checkpoint_pages_wait_for_the_next_checkpoint() {
        let mut fl = FreeList::new(10, []);
        // Pages 2..10 belong to the durable checkpoint.
        fl.supersede(3, vec![5, 6]);
        assert!(fl.release(100).is_empty(), "still needed by recovery");
        assert_eq!(
            fl.all_recorded(),
            vec![5, 6],
            "but free for a checkpoint written now"
        );
        fl.begin_checkpoint();
        fl.checkpoint_done();
        assert!(
            fl.release(2).is_empty(),
            "a snapshot older than commit 3 is open"
        );
        assert_eq!(fl.release(3), vec![5, 6]);
    }

    #[test]
    fn the_chain_grows_when_taking_its_pages_splits_a_run() {
        // Free pages interleave with pages awaiting the checkpoint, so the
        // recorded list is one long run per stretch; taking the lowest free
        // page for the chain splits a run and can make the list need another page.
        for page_size in [1024usize, 4096] {
            let mut fl = FreeList::new(1_000_000, []);
            let mut superseded = Vec::new();
            let mut free = Vec::new();
            for i in 0..40_000u64 {
                let id = 10 + i * 2;
                superseded.push(id);
                if i % 3 == 0 {
                    free.push(id + 1);
                } else {
                    superseded.push(id + 1);
                }
            }
            fl.supersede(1, superseded);
            for id in free {
                fl.free_now(id);
            }
            let before = fl.all_recorded().len();
            let chain = build_chain(&mut fl, page_size);
            assert_eq!(chain.pages.len(), chain.images.len());
            assert_eq!(chain.recorded as usize, before - chain.pages.len());
            // Every recorded page is in the chain's pages.
            let mut back = Vec::new();
            for (id, buf) in &chain.images {
                back.extend(decode(buf, *id, 1_000_000).unwrap().0);
            }
            assert_eq!(back, fl.all_recorded());
        }
    }

    #[test]
    fn trim_tail_gives_back_trailing_free_pages() {
        let mut fl = FreeList::new(10, [3, 8, 9]);
        assert_eq!(fl.trim_tail(), vec![9, 8]);
        assert_eq!(fl.page_count(), 8);
        assert!(fl.all_recorded().contains(&3));
        assert_eq!(fl.allocate(), 3);
        assert_eq!(fl.allocate(), 8);
    }
}
