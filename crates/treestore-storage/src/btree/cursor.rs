//! Ordered iteration over one tree version: seek, forward and reverse range scans.
//!
//! A cursor keeps the path from the root to the current leaf (each level's page
//! image and position). Leaves have no sibling links (they would have to be rewritten
//! on every copy-on-write change), so moving to the next leaf climbs the path to the
//! nearest branch with another child and descends again.

use std::ops::Bound;

use super::node::{BranchView, LeafView, ValRef};
use super::{load_value, overflow, TreeRoot};
use crate::error::{Error, Result};
use crate::page::{self, PageId, PageRef, PageType};
use crate::pager::Pager;

/// Where to land when descending.
#[derive(Clone, Copy)]
enum Seek<'k> {
    First,
    Last,
    /// Leaf position = first key >= k.
    AtOrAfter(&'k [u8]),
    /// Leaf position = just after the last key <= k (reverse scans).
    AtOrBefore(&'k [u8]),
}

struct Level {
    page: PageRef,
    /// Branch: index of the child on the path. Leaf: forward = next entry to
    /// yield; reverse = number of entries still to yield (next is idx - 1).
    idx: usize,
}

/// An iterator over `(key, value)` pairs of a range, in either direction.
pub struct RangeIter<'p> {
    pager: &'p Pager,
    tree: TreeRoot,
    stack: Vec<Level>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    reverse: bool,
    started: bool,
    done: bool,
}

impl<'p> RangeIter<'p> {
    /// Iterates keys in `(lower, upper)` bounds; `reverse` walks from the top.
    pub fn new(
        pager: &'p Pager,
        tree: TreeRoot,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Self {
        let empty = match (&lower, &upper) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b))
            | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
            _ => false,
        };
        RangeIter {
            pager,
            tree,
            stack: Vec::new(),
            lower,
            upper,
            reverse,
            started: false,
            done: tree.is_empty() || empty,
        }
    }

    fn descend(&mut self, mut id: PageId, seek: Seek<'_>) -> Result<()> {
        loop {
            let level = self.stack.len() as u32 + 1;
            if level > self.tree.depth {
                return Err(Error::corrupt(id, "tree is deeper than its recorded depth"));
            }
            let page = self.pager.read_node(id)?;
            match page::page_type(&page) {
                Some(PageType::Branch) if level < self.tree.depth => {
                    let b = BranchView::new(&page);
                    let i = match seek {
                        Seek::First => 0,
                        Seek::Last => b.keys(),
                        Seek::AtOrAfter(k) | Seek::AtOrBefore(k) => b.child_index(k),
                    };
                    id = b.child(i);
                    self.stack.push(Level { page, idx: i });
                }
                Some(PageType::Leaf) if level == self.tree.depth => {
                    let l = LeafView::new(&page);
                    let i = match seek {
                        Seek::First => 0,
                        Seek::Last => l.len(),
                        Seek::AtOrAfter(k) => l.search(k).0,
                        Seek::AtOrBefore(k) => {
                            let (i, found) = l.search(k);
                            i + usize::from(found)
                        }
                    };
                    self.stack.push(Level { page, idx: i });
                    return Ok(());
                }
                other => {
                    return Err(Error::corrupt(
                        id,
                        format!(
                            "found {other:?} page at level {level} of a tree of depth {}",
                            self.tree.depth
                        ),
                    ))
                }
            }
        }
    }

    /// Repositions a forward iterator at the first key `>= key`, now bounded
    /// above by `upper`. The path is kept down to the deepest node that
    /// covers both the current position and `key`, so a seek near the
    /// current position (the next of a series of sorted prefixes) reads only
    /// the levels below it instead of descending from the root. Any key
    /// works, earlier ones too.
    pub(crate) fn seek(&mut self, key: &[u8], upper: Bound<Vec<u8>>) -> Result<()> {
        if self.reverse {
            return Err(Error::InvalidOptions(
                "seek is for forward iterators".into(),
            ));
        }
        self.lower = Bound::Included(key.to_vec());
        self.upper = upper;
        self.done = self.tree.is_empty();
        let depth = self.tree.depth as usize;
        if self.done || !self.started || self.stack.len() != depth {
            self.stack.clear();
            self.started = false;
            return Ok(());
        }
        // From the root down, keep each level whose current child covers
        // `key` (a node covers only what its parent routes to it, so this
        // must go top-down); re-descend from the first that does not.
        for level in 0..depth - 1 {
            let b = BranchView::new(&self.stack[level].page);
            let i = b.child_index(key);
            if i != self.stack[level].idx {
                let child = b.child(i);
                self.stack.truncate(level + 1);
                self.stack[level].idx = i;
                return self.descend(child, Seek::AtOrAfter(key));
            }
        }
        // Every level covers `key`: it belongs in the current leaf.
        if let Some(top) = self.stack.last_mut() {
            top.idx = LeafView::new(&top.page).search(key).0;
        }
        Ok(())
    }

    /// Moves to the next (or previous) leaf; false at the end of the tree.
    fn step_leaf(&mut self) -> Result<bool> {
        self.stack.pop();
        while let Some(top) = self.stack.last_mut() {
            let b = BranchView::new(&top.page);
            if !self.reverse && top.idx < b.keys() {
                top.idx += 1;
                let child = b.child(top.idx);
                self.descend(child, Seek::First)?;
                return Ok(true);
            }
            if self.reverse && top.idx > 0 {
                top.idx -= 1;
                let child = b.child(top.idx);
                self.descend(child, Seek::Last)?;
                return Ok(true);
            }
            self.stack.pop();
        }
        Ok(false)
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
        let root = self.tree.root;
        if !self.reverse {
            let lower = self.lower.clone();
            match &lower {
                Bound::Unbounded => self.descend(root, Seek::First)?,
                Bound::Included(k) => self.descend(root, Seek::AtOrAfter(k))?,
                Bound::Excluded(k) => {
                    self.descend(root, Seek::AtOrAfter(k))?;
                    if let Some(top) = self.stack.last_mut() {
                        let l = LeafView::new(&top.page);
                        if top.idx < l.len() && l.key(top.idx) == k.as_slice() {
                            top.idx += 1;
                        }
                    }
                }
            }
        } else {
            let upper = self.upper.clone();
            match &upper {
                Bound::Unbounded => self.descend(root, Seek::Last)?,
                Bound::Included(k) => self.descend(root, Seek::AtOrBefore(k))?,
                Bound::Excluded(k) => self.descend(root, Seek::AtOrAfter(k))?,
            }
        }
        Ok(())
    }

    fn in_range(&self, key: &[u8]) -> bool {
        if self.reverse {
            match &self.lower {
                Bound::Unbounded => true,
                Bound::Included(l) => key >= l.as_slice(),
                Bound::Excluded(l) => key > l.as_slice(),
            }
        } else {
            match &self.upper {
                Bound::Unbounded => true,
                Bound::Included(u) => key <= u.as_slice(),
                Bound::Excluded(u) => key < u.as_slice(),
            }
        }
    }

    fn advance(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some((page, i)) = self.position_next()? else {
            return Ok(None);
        };
        let leaf = LeafView::new(&page);
        let value = load_value(self.pager, leaf.val(i))?;
        Ok(Some((leaf.key(i).to_vec(), value)))
    }

    /// Hands the next entry to `f` without copying it out of its page (a
    /// value in an overflow chain is assembled in `scratch`, which the caller
    /// reuses across entries); `None` at the end of the range.
    pub fn next_with<R>(
        &mut self,
        scratch: &mut Vec<u8>,
        f: impl FnOnce(&[u8], &[u8]) -> R,
    ) -> Result<Option<R>> {
        let Some((page, i)) = self.step_to_next()? else {
            return Ok(None);
        };
        let leaf = LeafView::new(&page);
        match leaf.val(i) {
            ValRef::Inline(v) => Ok(Some(f(leaf.key(i), v))),
            ValRef::Overflow { first, len } => {
                overflow::read_into(self.pager, first, len, scratch)?;
                Ok(Some(f(leaf.key(i), scratch)))
            }
        }
    }

    /// As [`next_with`](Self::next_with), but a value in an overflow chain
    /// is handed over as the pieces in its pages (their concatenation is the
    /// value), not copied into one buffer first: for a caller that copies
    /// the value on anyway. An inline value is one piece.
    pub fn next_with_pieces<R>(
        &mut self,
        scratch: &mut Vec<u8>,
        f: impl FnOnce(&[u8], &[&[u8]]) -> R,
    ) -> Result<Option<R>> {
        let Some((page, i)) = self.step_to_next()? else {
            return Ok(None);
        };
        let leaf = LeafView::new(&page);
        match leaf.val(i) {
            ValRef::Inline(v) => Ok(Some(f(leaf.key(i), &[v]))),
            ValRef::Overflow { first, len } => {
                overflow::with_pieces(self.pager, first, len, scratch, |pieces| {
                    f(leaf.key(i), pieces)
                })
                .map(Some)
            }
        }
    }

    /// Moves to the next entry (`None` at the end of the range, after which
    /// the iterator is done). Before an overflow value is read, the memory
    /// system is asked to fetch the next one's pages and the page-table
    /// slots of the one after (scans of node records are mostly chains).
    fn step_to_next(&mut self) -> Result<Option<(PageRef, usize)>> {
        if self.done {
            return Ok(None);
        }
        let (page, i) = match self.position_next() {
            Ok(Some(at)) => at,
            // The path stays: a later `seek` starts from it.
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                self.stack.clear();
                return Err(e);
            }
        };
        let leaf = LeafView::new(&page);
        if let ValRef::Overflow { .. } = leaf.val(i) {
            let ahead = |d: usize| {
                if self.reverse {
                    i.checked_sub(d)
                } else {
                    Some(i + d)
                }
                .filter(|&j| j < leaf.len())
            };
            if let Some(j) = ahead(2) {
                if let ValRef::Overflow { first, len } = leaf.val(j) {
                    self.pager.prefetch_chain_slots(first, len);
                }
            }
            if let Some(j) = ahead(1) {
                if let ValRef::Overflow { first, len } = leaf.val(j) {
                    self.pager.prefetch_chain(first, len);
                }
            }
        }
        Ok(Some((page, i)))
    }

    /// Moves to the next entry in range: its leaf and slot.
    fn position_next(&mut self) -> Result<Option<(PageRef, usize)>> {
        if !self.started {
            self.start()?;
        }
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            let leaf = LeafView::new(&top.page);
            let pos = if self.reverse {
                if top.idx == 0 {
                    None
                } else {
                    top.idx -= 1;
                    Some(top.idx)
                }
            } else if top.idx < leaf.len() {
                top.idx += 1;
                Some(top.idx - 1)
            } else {
                None
            };
            match pos {
                Some(i) => {
                    let page = top.page.clone();
                    if !self.in_range(LeafView::new(&page).key(i)) {
                        return Ok(None);
                    }
                    return Ok(Some((page, i)));
                }
                None => {
                    if !self.step_leaf()? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

impl Iterator for RangeIter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                self.stack.clear();
                None
            }
            Err(e) => {
                self.done = true;
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Bounds covering exactly the keys that start with `prefix`.
pub fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let upper = match prefix_end(prefix) {
        Some(e) => Bound::Excluded(e),
        None => Bound::Unbounded,
    };
    let lower = if prefix.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(prefix.to_vec())
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_non_ff_byte() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
