//! The copy-on-write B+tree: lookups and ordered cursors over an immutable
//! snapshot ([`cursor`]), and the batch writer that produces a new version of the
//! tree from sorted changes ([`write`]).
//!
//! A tree version is named by its root page and depth ([`TreeRoot`]). Pages
//! reachable from a published root are never modified, so any number of readers
//! can walk old and new versions while a commit builds the next one.

pub mod cursor;
pub mod node;
pub mod overflow;
pub mod write;

use crate::error::{Error, Result};
use crate::page::{self, PageId, PageRef, PageType};
use crate::pager::Pager;
use node::{BranchView, LeafView, ValRef};

/// One version of the tree: its root page (0 = empty) and depth (1 = leaf root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeRoot {
    pub root: PageId,
    pub depth: u32,
}

impl TreeRoot {
    pub const EMPTY: TreeRoot = TreeRoot { root: 0, depth: 0 };

    pub fn is_empty(&self) -> bool {
        self.root == 0
    }
}

/// Turns a leaf value reference into the value's bytes.
pub fn load_value(pager: &Pager, val: ValRef<'_>) -> Result<Vec<u8>> {
    match val {
        ValRef::Inline(v) => Ok(v.to_vec()),
        ValRef::Overflow { first, len } => overflow::read(pager, first, len),
    }
}

/// Point lookup returning a copy of the value.
pub fn get(pager: &Pager, tree: TreeRoot, key: &[u8]) -> Result<Option<Vec<u8>>> {
    get_with(pager, tree, key, <[u8]>::to_vec)
}

/// Point lookup that hands the value to `f` without copying it out of the page
/// (values in overflow chains are assembled first).
pub fn get_with<R>(
    pager: &Pager,
    tree: TreeRoot,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    let Some((page, i)) = find_leaf_slot(pager, tree, key)? else {
        return Ok(None);
    };
    match LeafView::new(&page).val(i) {
        ValRef::Inline(v) => Ok(Some(f(v))),
        ValRef::Overflow { first, len } => Ok(Some(f(&overflow::read(pager, first, len)?))),
    }
}

/// Point lookup that hands the value to `f` as pieces whose concatenation is
/// the value: a value in an overflow chain as the payloads of its pages, not
/// copied into one buffer first (see [`overflow::with_pieces`]).
pub fn get_pieces_with<R>(
    pager: &Pager,
    tree: TreeRoot,
    key: &[u8],
    f: impl FnOnce(&[&[u8]]) -> R,
) -> Result<Option<R>> {
    let Some((page, i)) = find_leaf_slot(pager, tree, key)? else {
        return Ok(None);
    };
    match LeafView::new(&page).val(i) {
        ValRef::Inline(v) => Ok(Some(f(&[v]))),
        ValRef::Overflow { first, len } => {
            overflow::with_pieces(pager, first, len, &mut Vec::new(), f).map(Some)
        }
    }
}

/// The leaf page holding `key` and the key's slot in it, `None` if absent.
fn find_leaf_slot(pager: &Pager, tree: TreeRoot, key: &[u8]) -> Result<Option<(PageRef, usize)>> {
    if tree.is_empty() {
        return Ok(None);
    }
    let mut id = tree.root;
    for level in 1..=tree.depth {
        let page = pager.read_node(id)?;
        match page::page_type(&page) {
            Some(PageType::Branch) if level < tree.depth => {
                let b = BranchView::new(&page);
                id = b.child(b.child_index(key));
            }
            Some(PageType::Leaf) if level == tree.depth => {
                let (i, found) = LeafView::new(&page).search(key);
                return Ok(found.then_some((page, i)));
            }
            other => {
                return Err(Error::corrupt(
                    id,
                    format!(
                        "found {other:?} page at level {level} of a tree of depth {}",
                        tree.depth
                    ),
                ))
            }
        }
    }
    Err(Error::corrupt(tree.root, "tree has no leaf level"))
}
