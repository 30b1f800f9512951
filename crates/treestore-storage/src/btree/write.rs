//! The batch writer: applies a sorted set of puts and deletes to a tree version
//! and produces the next version, copy-on-write.
//!
//! The batch is pushed down the tree once. Each leaf that receives changes is
//! merged with them and repacked into as many pages as it needs (a split is a
//! repack into two or more pages, evenly filled; an append past the leaf's last key
//! fills pages completely, which keeps sequential loads dense). A node that shrinks
//! below a quarter page is merged with a neighbour, or the two are redistributed
//! evenly when they do not fit one page. Branches are rebuilt bottom-up from
//! their children's replacements; the root grows a level when it splits and
//! collapses when it is left with a single child.
//!
//! Every touched page is written to a new page id. Old pages are reported to the
//! caller as superseded (they stay intact for older snapshots and the last
//! checkpoint); pages created and discarded within the same batch are reused at once.

use std::collections::HashSet;
use std::sync::Arc;

use super::node::{self, BranchEntry, BranchView, CellRef, LeafEdit, LeafView, Limits, ValRef};
use super::{overflow, TreeRoot};
use crate::buffer_pool::RunWriter;
use crate::error::{Error, Result};
use crate::freelist::FreeList;
use crate::page::{self, PageId, PageRef, PageType};
use crate::pager::Pager;

/// One change of a batch: `None` deletes the key.
pub type Op<'a> = (&'a [u8], Option<&'a [u8]>);

/// A replacement child produced for a parent branch.
#[derive(Debug, Clone)]
struct Child {
    /// Lower bound of the child's keys (ignored for the first child of a node).
    key: Vec<u8>,
    page: PageId,
    /// Packed size in bytes; `None` for children this batch did not touch.
    size: Option<usize>,
    /// Whether the child may still be merged with a neighbour.
    mergeable: bool,
}

/// State of one batch application. Owns nothing durable: the caller decides
/// whether to keep the result (commit) or undo it ([`Writer::rollback`]).
pub struct Writer<'a> {
    pager: &'a Pager,
    alloc: &'a mut FreeList,
    limits: Limits,
    start_page_count: u64,
    fresh: HashSet<PageId>,
    allocated: Vec<PageId>,
    superseded: Vec<PageId>,
    /// Drop a superseded page's image from the pool at once (see
    /// [`Writer::drop_superseded_images`]).
    drop_superseded: bool,
    entry_delta: i64,
    /// Overflow pages of the values this batch stores, written in runs of
    /// consecutive pages, the last at the end of [`Writer::apply`].
    chains: RunWriter<'a>,
}

impl<'a> Writer<'a> {
    pub fn new(pager: &'a Pager, alloc: &'a mut FreeList) -> Self {
        let start_page_count = alloc.page_count();
        Writer {
            limits: *pager.limits(),
            pager,
            alloc,
            start_page_count,
            fresh: HashSet::new(),
            allocated: Vec::new(),
            superseded: Vec::new(),
            drop_superseded: false,
            entry_delta: 0,
            chains: pager.run_writer(),
        }
    }

    /// Drops each superseded page's image from the buffer pool as soon as
    /// the page is replaced, so its memory serves the next new page. Only
    /// for a writer whose superseded pages nobody can read any more, and
    /// whose failure discards the whole working tree (recovery, where no
    /// snapshot exists and a failed batch fails the open): the images of
    /// pages written since the checkpoint are not on disk, so a rollback
    /// could not bring them back.
    pub fn drop_superseded_images(&mut self) {
        self.drop_superseded = true;
    }

    /// Net change in the number of entries.
    pub fn entry_delta(&self) -> i64 {
        self.entry_delta
    }

    /// Consumes the writer, returning the superseded pages and every page it
    /// allocated (needed to undo the batch if the commit fails later).
    pub fn finish(self) -> (Vec<PageId>, Vec<PageId>) {
        (self.superseded, self.allocated)
    }

    /// Undoes every allocation of this batch and forgets the pages it staged
    /// (only its own: dirty pages of earlier commits stay).
    pub fn rollback(self) {
        for &id in &self.allocated {
            self.pager.invalidate(id);
        }
        self.alloc.rollback(&self.allocated, self.start_page_count);
    }

    fn allocate(&mut self) -> PageId {
        let id = self.alloc.allocate();
        self.fresh.insert(id);
        self.allocated.push(id);
        id
    }

    fn release(&mut self, id: PageId) {
        if self.fresh.remove(&id) {
            self.pager.invalidate(id);
            self.alloc.free_now(id);
        } else {
            if self.drop_superseded {
                self.pager.invalidate(id);
            }
            self.superseded.push(id);
        }
    }

    fn release_value(&mut self, val: &ValRef<'_>) -> Result<()> {
        if let ValRef::Overflow { first, len } = *val {
            for id in overflow::pages(self.pager, first, len)? {
                self.release(id);
            }
        }
        Ok(())
    }

    fn make_val<'v>(&mut self, key: &[u8], value: &'v [u8]) -> Result<ValRef<'v>> {
        if self.limits.is_inline(key.len(), value.len()) {
            return Ok(ValRef::Inline(value));
        }
        let n = overflow::pages_for(value.len() as u64, self.limits.page_size);
        // Allocate (and record for rollback) before writing, so a failed write
        // cannot lose track of pages.
        let ids: Vec<PageId> = (0..n).map(|_| self.allocate()).collect();
        let first = overflow::write(self.pager, &mut self.chains, value, &ids)?;
        Ok(ValRef::Overflow {
            first,
            len: value.len() as u64,
        })
    }

    /// Applies `ops` (sorted by key, each key once) to `tree`; every page
    /// of the result is in the pool or the file when it returns.
    pub fn apply(&mut self, tree: TreeRoot, ops: &[Op<'_>]) -> Result<TreeRoot> {
        let root = self.apply_ops(tree, ops)?;
        self.chains.finish()?;
        Ok(root)
    }

    fn apply_ops(&mut self, tree: TreeRoot, ops: &[Op<'_>]) -> Result<TreeRoot> {
        if ops.is_empty() {
            return Ok(tree);
        }
        let (result, mut depth) = if tree.is_empty() {
            (self.merge_leaf(None, ops)?, 1)
        } else {
            (self.apply_node(tree.root, tree.depth, ops)?, tree.depth)
        };
        let mut level = match result {
            None => return Ok(tree),
            Some(children) => children,
        };
        if level.is_empty() {
            return Ok(TreeRoot::EMPTY);
        }
        while level.len() > 1 {
            let entries: Vec<BranchEntry> = level
                .into_iter()
                .map(|c| BranchEntry {
                    key: c.key,
                    child: c.page,
                })
                .collect();
            level = self.pack_branch(entries)?;
            depth += 1;
        }
        let mut root = level[0].page;
        while depth > 1 {
            let page = self.pager.read_node(root)?;
            let b = BranchView::new(&page);
            if b.keys() > 0 {
                break;
            }
            let only = b.child(0);
            self.release(root);
            root = only;
            depth -= 1;
        }
        Ok(TreeRoot { root, depth })
    }

    /// Applies ops to the subtree at `id` of the given height (1 = leaf).
    /// `None` = unchanged; otherwise the pages that replace it (maybe none).
    fn apply_node(
        &mut self,
        id: PageId,
        height: u32,
        ops: &[Op<'_>],
    ) -> Result<Option<Vec<Child>>> {
        let page = self.pager.read_node(id)?;
        let ty = page::page_type(&page);
        if height == 1 {
            if ty != Some(PageType::Leaf) {
                return Err(Error::corrupt(id, format!("expected a leaf, found {ty:?}")));
            }
            if let [op] = ops {
                if let Some(done) = self.patch_single(id, &page, *op)? {
                    return Ok(done);
                }
            }
            return self.merge_leaf(Some((id, LeafView::new(&page))), ops);
        }
        if ty != Some(PageType::Branch) {
            return Err(Error::corrupt(
                id,
                format!("expected a branch, found {ty:?}"),
            ));
        }
        let view = BranchView::new(&page);
        let nkeys = view.keys();
        // Push the ops down to the children they fall in (only those).
        let mut results: Vec<(usize, Vec<Child>)> = Vec::new();
        let mut rest = ops;
        while let Some(&(first, _)) = rest.first() {
            let i = view.child_index(first);
            let n = if i < nkeys {
                rest.partition_point(|(k, _)| *k < view.key(i))
            } else {
                rest.len()
            };
            let (mine, tail) = rest.split_at(n.max(1));
            rest = tail;
            if let Some(list) = self.apply_node(view.child(i), height - 1, mine)? {
                results.push((i, list));
            }
        }
        if results.is_empty() {
            return Ok(None);
        }
        // Fast path: every changed child became exactly one node that needs no
        // merging. Copy the branch and repoint those children; no decoding.
        let one_to_one = results.iter().all(|(_, list)| {
            list.len() == 1
                && !(list[0].mergeable && list[0].size.is_some_and(|s| s < self.limits.underfull))
        });
        if one_to_one {
            let mut image: PageRef = Arc::from(&page[..]);
            let buf = page::image_mut(&mut image);
            for (i, list) in &results {
                node::set_branch_child(buf, *i, list[0].page);
            }
            let new_id = self.allocate();
            let size = node::branch_used(&image);
            self.pager.stage(new_id, image)?;
            self.release(id);
            return Ok(Some(vec![Child {
                key: Vec::new(),
                page: new_id,
                size: Some(size),
                mergeable: false,
            }]));
        }
        // General path: rebuild the child list, merge underfull children, repack.
        let entries = view.to_entries();
        let mut out: Vec<Child> = Vec::with_capacity(entries.len() + 4);
        let mut results = results.into_iter().peekable();
        for (i, e) in entries.into_iter().enumerate() {
            match results.next_if(|(r, _)| *r == i) {
                None => out.push(Child {
                    key: e.key,
                    page: e.child,
                    size: None,
                    mergeable: false,
                }),
                Some((_, list)) => {
                    for (j, mut c) in list.into_iter().enumerate() {
                        if j == 0 {
                            c.key = e.key.clone();
                        }
                        out.push(c);
                    }
                }
            }
        }
        self.fix_underfull(&mut out, height - 1)?;
        self.release(id);
        if out.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let entries = out
            .into_iter()
            .map(|c| BranchEntry {
                key: c.key,
                child: c.page,
            })
            .collect();
        self.pack_branch(entries).map(Some)
    }

    /// One put or delete on leaf `id`, made by patching its image
    /// ([`node::patch_leaf`]): the same page a merge would encode, for the
    /// common small commit, without decoding and re-encoding every cell.
    /// The outer `None` when that does not apply (a value stored in an
    /// overflow chain, a split, a changed prefix): the caller merges.
    fn patch_single(
        &mut self,
        id: PageId,
        page: &[u8],
        (key, op): Op<'_>,
    ) -> Result<Option<Option<Vec<Child>>>> {
        let view = LeafView::new(page);
        let (at, found) = view.search(key);
        let edit = match (found, op) {
            // Deleting a missing key, or writing the value already there.
            (false, None) => return Ok(Some(None)),
            (true, Some(v)) if view.val(at) == ValRef::Inline(v) => return Ok(Some(None)),
            (_, Some(v)) if !self.limits.is_inline(key.len(), v.len()) => return Ok(None),
            (true, Some(val)) => LeafEdit::Replace { at, val },
            (false, Some(val)) => LeafEdit::Insert { at, key, val },
            (true, None) => LeafEdit::Remove { at },
        };
        let Some((image, used)) = node::patch_leaf(page, edit, &self.limits) else {
            return Ok(None);
        };
        if found {
            self.release_value(&view.val(at))?;
        }
        self.entry_delta += match edit {
            LeafEdit::Insert { .. } => 1,
            LeafEdit::Replace { .. } => 0,
            LeafEdit::Remove { .. } => -1,
        };
        let new_id = self.allocate();
        self.pager.stage(new_id, image)?;
        self.release(id);
        Ok(Some(Some(vec![Child {
            key: Vec::new(),
            page: new_id,
            size: Some(used),
            mergeable: true,
        }])))
    }

    /// Merges a leaf's cells with ops; `None` when nothing changed.
    fn merge_leaf(
        &mut self,
        leaf: Option<(PageId, LeafView<'_>)>,
        ops: &[Op<'_>],
    ) -> Result<Option<Vec<Child>>> {
        let n = leaf.as_ref().map_or(0, |(_, v)| v.len());
        let append = match &leaf {
            Some((_, v)) if n > 0 => ops[0].0 > v.key(n - 1),
            _ => true,
        };
        let mut cells: Vec<CellRef<'_>> = Vec::with_capacity(n + ops.len());
        let mut changed = false;
        let (mut i, mut j) = (0usize, 0usize);
        while i < n || j < ops.len() {
            let existing = leaf
                .as_ref()
                .filter(|_| i < n)
                .map(|(_, v)| (v.key(i), v.val(i)));
            let order = match (&existing, ops.get(j)) {
                (Some((k, _)), Some((ok, _))) => k.cmp(ok),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some((key, val)) = existing {
                        cells.push(CellRef { key, val });
                    }
                    i += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (k, v) =
                        existing.ok_or_else(|| Error::corrupt(0, "leaf merge out of step"))?;
                    let (_, op) = ops[j];
                    // Unchanged inline value: keep the cell, write nothing new for it.
                    if let (ValRef::Inline(old), Some(new)) = (&v, op) {
                        if *old == new {
                            cells.push(CellRef { key: k, val: v });
                            i += 1;
                            j += 1;
                            continue;
                        }
                    }
                    changed = true;
                    self.release_value(&v)?;
                    match op {
                        Some(value) => {
                            let val = self.make_val(k, value)?;
                            cells.push(CellRef { key: k, val });
                        }
                        None => self.entry_delta -= 1,
                    }
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Greater => {
                    let (k, op) = ops[j];
                    if let Some(value) = op {
                        changed = true;
                        let val = self.make_val(k, value)?;
                        cells.push(CellRef { key: k, val });
                        self.entry_delta += 1;
                    }
                    j += 1;
                }
            }
        }
        if !changed {
            return Ok(None);
        }
        if let Some((id, _)) = leaf {
            self.release(id);
        }
        if cells.is_empty() {
            return Ok(Some(Vec::new()));
        }
        self.pack_leaves(&cells, append).map(Some)
    }

    /// Splits `sizes` into consecutive chunks that each fit a page: as few chunks
    /// as possible, evenly filled (or filled to the brim when `dense`).
    fn chunk(&self, sizes: &[usize], dense: bool) -> Vec<std::ops::Range<usize>> {
        let usable = self.limits.usable;
        let total: usize = sizes.iter().sum();
        let k = total.div_ceil(usable).max(1);
        let target = if dense { usable } else { total.div_ceil(k) };
        let mut out = Vec::with_capacity(k + 1);
        let (mut start, mut cur) = (0usize, 0usize);
        for (i, &s) in sizes.iter().enumerate() {
            if i > start && (cur + s > usable || cur + s / 2 > target) {
                out.push(start..i);
                start = i;
                cur = 0;
            }
            cur += s;
        }
        out.push(start..sizes.len());
        out
    }

    fn pack_leaves(&mut self, cells: &[CellRef<'_>], dense: bool) -> Result<Vec<Child>> {
        let sizes: Vec<usize> = cells.iter().map(CellRef::size).collect();
        let ranges = self.chunk(&sizes, dense);
        let mut out = Vec::with_capacity(ranges.len());
        for (n, r) in ranges.iter().enumerate() {
            let key = if n == 0 {
                Vec::new()
            } else {
                node::separator(cells[r.start - 1].key, cells[r.start].key)
            };
            let id = self.allocate();
            let image = node::encode_leaf(&cells[r.clone()], self.limits.page_size);
            self.pager.stage(id, image)?;
            out.push(Child {
                key,
                page: id,
                size: Some(sizes[r.clone()].iter().sum()),
                mergeable: true,
            });
        }
        Ok(out)
    }

    fn pack_branch(&mut self, entries: Vec<BranchEntry>) -> Result<Vec<Child>> {
        let sizes: Vec<usize> = entries.iter().map(BranchEntry::size).collect();
        let ranges = self.chunk(&sizes, false);
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let chunk = &entries[r.clone()];
            let id = self.allocate();
            let image = node::encode_branch(chunk, self.limits.page_size);
            self.pager.stage(id, image)?;
            out.push(Child {
                key: chunk[0].key.clone(),
                page: id,
                size: Some(node::branch_size(chunk)),
                mergeable: true,
            });
        }
        Ok(out)
    }

    /// Merges children that this batch left under a quarter full with a
    /// neighbour (or evens the pair out when both do not fit one page).
    fn fix_underfull(&mut self, children: &mut Vec<Child>, height: u32) -> Result<()> {
        loop {
            if children.len() < 2 {
                return Ok(());
            }
            let Some(i) = children
                .iter()
                .position(|c| c.mergeable && c.size.is_some_and(|s| s < self.limits.underfull))
            else {
                return Ok(());
            };
            let a = if i + 1 < children.len() { i } else { i - 1 };
            let left = children[a].clone();
            let right = children[a + 1].clone();
            let mut merged = if height == 1 {
                // The images stay alive (and unchanged) while the cells
                // borrow them, even once their page ids are released.
                let (left_page, right_page) = (self.leaf(left.page)?, self.leaf(right.page)?);
                let mut cells = LeafView::new(&left_page).cells();
                cells.extend(LeafView::new(&right_page).cells());
                self.release(left.page);
                self.release(right.page);
                self.pack_leaves(&cells, false)?
            } else {
                let mut entries = self.branch_entries(left.page)?;
                let mut more = self.branch_entries(right.page)?;
                more[0].key = right.key.clone();
                entries.extend(more);
                self.release(left.page);
                self.release(right.page);
                self.pack_branch(entries)?
            };
            merged[0].key = left.key;
            if merged.len() > 1 {
                // An even pair: both halves are as full as they can be.
                for c in merged.iter_mut() {
                    c.mergeable = false;
                }
            }
            children.splice(a..a + 2, merged);
        }
    }

    fn leaf(&self, id: PageId) -> Result<PageRef> {
        let page = self.pager.read_node(id)?;
        if page::page_type(&page) != Some(PageType::Leaf) {
            return Err(Error::corrupt(id, "expected a leaf while merging"));
        }
        Ok(page)
    }

    fn branch_entries(&self, id: PageId) -> Result<Vec<BranchEntry>> {
        let page = self.pager.read_node(id)?;
        if page::page_type(&page) != Some(PageType::Branch) {
            return Err(Error::corrupt(id, "expected a branch while merging"));
        }
        Ok(BranchView::new(&page).to_entries())
    }
}
