//! B+tree node pages: byte layout, validation, zero-copy reads and owned decoding.
//!
//! Nodes are never modified in place (the tree is copy-on-write), so a node page is
//! written once, fully packed: header, slot array, then cells in key order.
//!
//! Both node types start, after the common header, with a u16 at byte 16: the
//! length `p` of the prefix all keys of the node share. Each slot is 6 bytes: the
//! u16 byte offset of its cell and a u32 (big endian) *hint*, the 4 key bytes
//! after the shared prefix (zero padded). Searches binary-search the compact slot
//! array by hint and compare full keys only among equal hints, so a lookup touches
//! a few cache lines instead of one per probe.
//!
//! Leaf page (type 3), after the common header (count = n cells, link = 0):
//!
//! ```text
//! 16        u16       shared prefix length p
//! 18        n x 6     slot i = u16 offset of cell i, u32 hint of key i
//! cell:     u8 flags (bit 0 = value in overflow chain)
//!           u16 key_len, u32 val_len, key bytes, value bytes
//!           (overflow: val_len = 16, value = u64 first page, u64 total length)
//! ```
//!
//! Branch page (type 2), count = n separator keys, link = leftmost child:
//!
//! ```text
//! 16        u16       shared prefix length p
//! 18        n x 6     slot i = u16 offset of cell i, u32 hint of key i
//! cell:     u16 key_len, u64 child, key bytes
//! ```
//!
//! A branch with keys k1..kn and children c0..cn sends key k to c0 when k < k1 and
//! to ci when ki <= k < k(i+1).

use crate::error::{Error, Result};
use crate::page::{self, PageId, PageRef, PageType, PAGE_HEADER_LEN};

/// Bytes of a leaf cell before its key.
pub const LEAF_CELL_HEADER: usize = 7;
/// Bytes of a branch cell before its key.
pub const BRANCH_CELL_HEADER: usize = 10;
/// Bytes of a slot: u16 cell offset and u32 key hint.
pub const SLOT: usize = 6;
/// Where the slot array starts: after the common header and the prefix length.
pub const SLOTS_START: usize = PAGE_HEADER_LEN + 2;
/// Leaf cell flag: the value lives in an overflow chain.
pub const FLAG_OVERFLOW: u8 = 1;
/// Size of an overflow reference stored in a leaf cell.
pub const OVERFLOW_REF_LEN: usize = 16;
/// Largest value the engine stores.
pub const MAX_VALUE_LEN: u64 = 256 << 20;

/// Size limits derived from the page size.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub page_size: usize,
    /// Bytes available for slots and cells.
    pub usable: usize,
    /// Longest key accepted.
    pub max_key: usize,
    /// Largest leaf entry (slot + cell) stored inline; larger values overflow.
    pub max_inline_entry: usize,
    /// A node whose contents fall below this many bytes is merged or refilled.
    pub underfull: usize,
}

impl Limits {
    pub fn new(page_size: usize) -> Limits {
        let usable = page_size - SLOTS_START;
        Limits {
            page_size,
            usable,
            max_key: page_size / 4,
            // Any entry up to half a node keeps every split possible (two
            // halves each fit); larger values go to overflow chains.
            max_inline_entry: usable / 2,
            underfull: usable / 4,
        }
    }

    /// Whether a value of this length is stored inline next to a key of `key_len`.
    /// A value no longer than an overflow reference always stays inline.
    pub fn is_inline(&self, key_len: usize, val_len: usize) -> bool {
        val_len <= OVERFLOW_REF_LEN
            || SLOT + LEAF_CELL_HEADER + key_len + val_len <= self.max_inline_entry
    }
}

/// A leaf entry borrowed from a page image or from a batch of writes: what
/// the writer merges and encodes, without copying keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellRef<'a> {
    pub key: &'a [u8],
    pub val: ValRef<'a>,
}

impl CellRef<'_> {
    /// Bytes this entry takes in a page, slot included.
    pub fn size(&self) -> usize {
        SLOT + LEAF_CELL_HEADER + self.key.len() + self.val.stored_len()
    }
}

/// An owned branch entry: `key` is the lower bound of `child`'s keys. The first
/// entry of a node has an empty key that is not stored (it is the leftmost child).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchEntry {
    pub key: Vec<u8>,
    pub child: PageId,
}

impl BranchEntry {
    /// Bytes this entry takes when it is not the leftmost one.
    pub fn size(&self) -> usize {
        SLOT + BRANCH_CELL_HEADER + self.key.len()
    }
}

/// The hint of `key` for a node whose keys share `prefix_len` bytes.
#[inline]
pub fn hint(key: &[u8], prefix_len: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(rest) = key.get(prefix_len..) {
        let n = rest.len().min(4);
        b[..n].copy_from_slice(&rest[..n]);
    }
    u32::from_be_bytes(b)
}

/// Length of the prefix shared by `a` and `b`.
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[inline]
fn slot_off(buf: &[u8], i: usize) -> usize {
    page::read_u16(buf, SLOTS_START + i * SLOT) as usize
}

#[inline]
fn slot_hint(buf: &[u8], i: usize) -> u32 {
    let at = SLOTS_START + i * SLOT + 2;
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
fn prefix_len(buf: &[u8]) -> usize {
    page::read_u16(buf, PAGE_HEADER_LEN) as usize
}

/// Where `key` falls among `n` sorted keys (read by `key_at`) that share the
/// `p`-byte prefix whose slots hold hints: `Ok(i)` when key i equals it, else
/// `Err(i)` with i the number of keys below it.
#[inline]
fn hinted_search<'a>(
    buf: &'a [u8],
    n: usize,
    key: &[u8],
    key_at: impl Fn(usize) -> &'a [u8],
) -> Result<usize, usize> {
    if n == 0 {
        return Err(0);
    }
    let p = prefix_len(buf);
    if p > 0 {
        let shared = &key_at(0)[..p];
        let head = &key[..p.min(key.len())];
        if head != shared {
            // Outside the node's prefix: below all keys or above all keys.
            return Err(if head < shared { 0 } else { n });
        }
    }
    let h = hint(key, p);
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if slot_hint(buf, mid) < h {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut end = lo;
    while end < n && slot_hint(buf, end) == h {
        end += 1;
    }
    // Equal hints: settle by full keys (usually zero or one entry).
    let (mut a, mut b) = (lo, end);
    while a < b {
        let mid = (a + b) / 2;
        match key_at(mid).cmp(key) {
            std::cmp::Ordering::Less => a = mid + 1,
            std::cmp::Ordering::Greater => b = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(a)
}

/// Checks a verified-checksum node page so later reads cannot index out of bounds.
/// Also checks that keys are strictly ascending.
pub fn validate(buf: &[u8], id: PageId, ty: PageType, limits: &Limits) -> Result<()> {
    let n = page::count(buf);
    let slots_end = SLOTS_START + n * SLOT;
    if slots_end > buf.len() {
        return Err(Error::corrupt(id, format!("{n} slots do not fit the page")));
    }
    let p = prefix_len(buf);
    let mut first: Option<&[u8]> = None;
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let off = slot_off(buf, i);
        let (hdr, klen, vlen) = match ty {
            PageType::Leaf => {
                if off + LEAF_CELL_HEADER > buf.len() || off < slots_end {
                    return Err(Error::corrupt(
                        id,
                        format!("cell {i} offset {off} out of bounds"),
                    ));
                }
                let flags = buf[off];
                let klen = page::read_u16(buf, off + 1) as usize;
                let vlen = page::read_u32(buf, off + 3) as usize;
                if flags & !FLAG_OVERFLOW != 0
                    || (flags & FLAG_OVERFLOW != 0 && vlen != OVERFLOW_REF_LEN)
                {
                    return Err(Error::corrupt(
                        id,
                        format!("cell {i} has bad flags {flags:#x}"),
                    ));
                }
                (LEAF_CELL_HEADER, klen, vlen)
            }
            PageType::Branch => {
                if off + BRANCH_CELL_HEADER > buf.len() || off < slots_end {
                    return Err(Error::corrupt(
                        id,
                        format!("cell {i} offset {off} out of bounds"),
                    ));
                }
                (BRANCH_CELL_HEADER, page::read_u16(buf, off) as usize, 0)
            }
            _ => return Err(Error::corrupt(id, "not a node page")),
        };
        if klen == 0 || klen > limits.max_key || off + hdr + klen + vlen > buf.len() {
            return Err(Error::corrupt(
                id,
                format!("cell {i} key or value length out of bounds"),
            ));
        }
        if ty == PageType::Leaf && buf[off] & FLAG_OVERFLOW != 0 {
            let total = page::read_u64(buf, off + hdr + klen + 8);
            if total == 0 || total > MAX_VALUE_LEN {
                return Err(Error::corrupt(
                    id,
                    format!("cell {i} claims an overflow value of {total} bytes"),
                ));
            }
        }
        let key = &buf[off + hdr..off + hdr + klen];
        if let Some(prev) = prev {
            if prev >= key {
                return Err(Error::corrupt(id, format!("keys out of order at cell {i}")));
            }
        }
        let shares = match first {
            None => key.len() >= p,
            Some(f) => key.len() >= p && key[..p] == f[..p],
        };
        if !shares || slot_hint(buf, i) != hint(key, p) {
            return Err(Error::corrupt(
                id,
                format!("key prefix or hint of cell {i} is inconsistent"),
            ));
        }
        first = first.or(Some(key));
        prev = Some(key);
    }
    if n == 0 && p != 0 {
        return Err(Error::corrupt(id, "empty node with a shared prefix"));
    }
    if ty == PageType::Leaf && n == 0 {
        return Err(Error::corrupt(id, "empty leaf"));
    }
    Ok(())
}

/// Zero-copy view of a validated leaf page.
#[derive(Clone, Copy)]
pub struct LeafView<'a> {
    buf: &'a [u8],
}

/// What a leaf holds for a key, borrowed from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValRef<'a> {
    Inline(&'a [u8]),
    Overflow { first: PageId, len: u64 },
}

impl ValRef<'_> {
    /// Bytes of the value part in the cell.
    pub fn stored_len(&self) -> usize {
        match self {
            ValRef::Inline(v) => v.len(),
            ValRef::Overflow { .. } => OVERFLOW_REF_LEN,
        }
    }
}

impl<'a> LeafView<'a> {
    /// The page must have passed [`validate`].
    pub fn new(buf: &'a [u8]) -> Self {
        LeafView { buf }
    }
    pub fn len(&self) -> usize {
        page::count(self.buf)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn off(&self, i: usize) -> usize {
        slot_off(self.buf, i)
    }
    pub fn key(&self, i: usize) -> &'a [u8] {
        let off = self.off(i);
        let klen = page::read_u16(self.buf, off + 1) as usize;
        &self.buf[off + LEAF_CELL_HEADER..off + LEAF_CELL_HEADER + klen]
    }
    pub fn val(&self, i: usize) -> ValRef<'a> {
        let off = self.off(i);
        let flags = self.buf[off];
        let klen = page::read_u16(self.buf, off + 1) as usize;
        let vlen = page::read_u32(self.buf, off + 3) as usize;
        let at = off + LEAF_CELL_HEADER + klen;
        if flags & FLAG_OVERFLOW != 0 {
            ValRef::Overflow {
                first: page::read_u64(self.buf, at),
                len: page::read_u64(self.buf, at + 8),
            }
        } else {
            ValRef::Inline(&self.buf[at..at + vlen])
        }
    }
    /// Index of the first key >= `key` (may equal `len()`), and whether it is equal.
    pub fn search(&self, key: &[u8]) -> (usize, bool) {
        let this = *self;
        match hinted_search(self.buf, self.len(), key, move |i| this.key(i)) {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        }
    }
    /// Every entry, borrowed from the page.
    pub fn cells(&self) -> Vec<CellRef<'a>> {
        (0..self.len())
            .map(|i| CellRef {
                key: self.key(i),
                val: self.val(i),
            })
            .collect()
    }
}

/// Zero-copy view of a validated branch page.
#[derive(Clone, Copy)]
pub struct BranchView<'a> {
    buf: &'a [u8],
}

impl<'a> BranchView<'a> {
    /// The page must have passed [`validate`].
    pub fn new(buf: &'a [u8]) -> Self {
        BranchView { buf }
    }
    /// Number of separator keys (children = keys + 1).
    pub fn keys(&self) -> usize {
        page::count(self.buf)
    }
    fn off(&self, i: usize) -> usize {
        slot_off(self.buf, i)
    }
    /// Separator key i (0-based; it bounds child i + 1 from below).
    pub fn key(&self, i: usize) -> &'a [u8] {
        let off = self.off(i);
        let klen = page::read_u16(self.buf, off) as usize;
        &self.buf[off + BRANCH_CELL_HEADER..off + BRANCH_CELL_HEADER + klen]
    }
    /// Child i, for i in 0..=keys().
    pub fn child(&self, i: usize) -> PageId {
        if i == 0 {
            page::link(self.buf)
        } else {
            page::read_u64(self.buf, self.off(i - 1) + 2)
        }
    }
    /// Index of the child whose key range holds `key`.
    pub fn child_index(&self, key: &[u8]) -> usize {
        // Number of separators <= key.
        let this = *self;
        match hinted_search(self.buf, self.keys(), key, move |i| this.key(i)) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
    /// Decodes every entry (the first has an empty key).
    pub fn to_entries(&self) -> Vec<BranchEntry> {
        (0..=self.keys())
            .map(|i| BranchEntry {
                key: if i == 0 {
                    Vec::new()
                } else {
                    self.key(i - 1).to_vec()
                },
                child: self.child(i),
            })
            .collect()
    }
}

fn write_slot(buf: &mut [u8], i: usize, offset: usize, hint: u32) {
    let at = SLOTS_START + i * SLOT;
    page::write_u16(buf, at, offset as u16);
    buf[at + 2..at + 6].copy_from_slice(&hint.to_be_bytes());
}

/// Encodes leaf cells into a page image (its checksum is written when the
/// page goes to the file, see [`page::set_header`]).
pub fn encode_leaf(cells: &[CellRef<'_>], page_size: usize) -> PageRef {
    let mut image = page::new_image(page_size);
    let buf = page::image_mut(&mut image);
    let p = match (cells.first(), cells.last()) {
        (Some(a), Some(b)) => common_prefix(a.key, b.key),
        _ => 0,
    };
    page::write_u16(buf, PAGE_HEADER_LEN, p as u16);
    let mut at = SLOTS_START + cells.len() * SLOT;
    for (i, c) in cells.iter().enumerate() {
        write_slot(buf, i, at, hint(c.key, p));
        let overflow = matches!(c.val, ValRef::Overflow { .. });
        buf[at] = if overflow { FLAG_OVERFLOW } else { 0 };
        page::write_u16(buf, at + 1, c.key.len() as u16);
        page::write_u32(buf, at + 3, c.val.stored_len() as u32);
        at += LEAF_CELL_HEADER;
        buf[at..at + c.key.len()].copy_from_slice(c.key);
        at += c.key.len();
        match c.val {
            ValRef::Inline(v) => {
                buf[at..at + v.len()].copy_from_slice(v);
                at += v.len();
            }
            ValRef::Overflow { first, len } => {
                page::write_u64(buf, at, first);
                page::write_u64(buf, at + 8, len);
                at += OVERFLOW_REF_LEN;
            }
        }
    }
    page::set_header(buf, PageType::Leaf, cells.len() as u16, 0);
    image
}

/// One change to a leaf for [`patch_leaf`]; `at` is a position in the old
/// leaf (for an insert, the number of its keys below the new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafEdit<'a> {
    Insert {
        at: usize,
        key: &'a [u8],
        val: &'a [u8],
    },
    /// A new inline value for the key at `at`.
    Replace {
        at: usize,
        val: &'a [u8],
    },
    Remove {
        at: usize,
    },
}

/// The image [`encode_leaf`] would build for leaf `buf` after one edit, and
/// the bytes of slots and cells it holds, made by moving the old image's
/// bytes in three blocks and rewriting the slot offsets: no cell is decoded
/// or encoded one by one. `None` when the edit changes the keys' shared
/// prefix (and so every hint), empties the leaf, or leaves more than one
/// page; also for a leaf whose cells are not packed in key order as
/// [`encode_leaf`] packs them. The caller then merges and encodes.
pub fn patch_leaf(buf: &[u8], edit: LeafEdit<'_>, limits: &Limits) -> Option<(PageRef, usize)> {
    let view = LeafView::new(buf);
    let n = view.len();
    let p = prefix_len(buf);
    let cells_start = SLOTS_START + n * SLOT;
    // Every cell must start where the one before it ends.
    let mut end = cells_start;
    for i in 0..n {
        let off = slot_off(buf, i);
        if off != end {
            return None;
        }
        let klen = page::read_u16(buf, off + 1) as usize;
        let vlen = page::read_u32(buf, off + 3) as usize;
        end = off + LEAF_CELL_HEADER + klen + vlen;
    }
    let cells_end = end;
    let cell_start = |i: usize| if i < n { slot_off(buf, i) } else { cells_end };
    let old_cell = |i: usize| cell_start(i + 1) - cell_start(i);
    // The new count, the first old cell after the edit, the cell written
    // (key and value), and the bounds of the new key range for the prefix
    // check.
    type Cell<'c> = Option<(&'c [u8], &'c [u8])>;
    let (n2, tail_from, cell, first, last): (usize, usize, Cell<'_>, &[u8], &[u8]) = match edit {
        LeafEdit::Insert { at, key, val } if at <= n => {
            let first = if at == 0 { key } else { view.key(0) };
            let last = if at == n { key } else { view.key(n - 1) };
            (n + 1, at, Some((key, val)), first, last)
        }
        LeafEdit::Replace { at, val } if at < n => (
            n,
            at + 1,
            Some((view.key(at), val)),
            view.key(0),
            view.key(n - 1),
        ),
        LeafEdit::Remove { at } if at < n && n > 1 => {
            let first = view.key(if at == 0 { 1 } else { 0 });
            let last = view.key(if at == n - 1 { n - 2 } else { n - 1 });
            (n - 1, at + 1, None, first, last)
        }
        _ => return None,
    };
    if common_prefix(first, last) != p {
        return None;
    }
    let at = match edit {
        LeafEdit::Insert { at, .. } | LeafEdit::Replace { at, .. } | LeafEdit::Remove { at } => at,
    };
    let new_cell = cell.map_or(0, |(k, v)| LEAF_CELL_HEADER + k.len() + v.len());
    let removed = if tail_from > at { old_cell(at) } else { 0 };
    let used = n2 * SLOT + (cells_end - cells_start) + new_cell - removed;
    if used > limits.usable {
        return None;
    }
    let mut image = page::new_image(limits.page_size);
    let out = page::image_mut(&mut image);
    page::write_u16(out, PAGE_HEADER_LEN, p as u16);
    // Cells before the edit, moved by the change in the slot array's size.
    let mut w = SLOTS_START + n2 * SLOT;
    let head_end = cell_start(at);
    out[w..w + head_end - cells_start].copy_from_slice(&buf[cells_start..head_end]);
    for i in 0..at {
        write_slot(
            out,
            i,
            slot_off(buf, i) - cells_start + w,
            slot_hint(buf, i),
        );
    }
    w += head_end - cells_start;
    if let Some((key, val)) = cell {
        write_slot(out, at, w, hint(key, p));
        out[w] = 0;
        page::write_u16(out, w + 1, key.len() as u16);
        page::write_u32(out, w + 3, val.len() as u32);
        let k = w + LEAF_CELL_HEADER;
        out[k..k + key.len()].copy_from_slice(key);
        out[k + key.len()..k + key.len() + val.len()].copy_from_slice(val);
        w += new_cell;
    }
    // Cells after it, moved by the edit's size as well.
    let tail_start = cell_start(tail_from);
    out[w..w + cells_end - tail_start].copy_from_slice(&buf[tail_start..cells_end]);
    let first_new = at + usize::from(cell.is_some());
    for i in tail_from..n {
        let j = first_new + (i - tail_from);
        write_slot(out, j, slot_off(buf, i) - tail_start + w, slot_hint(buf, i));
    }
    page::set_header(out, PageType::Leaf, n2 as u16, 0);
    Some((image, used))
}

/// Encodes branch entries (first = leftmost child, key ignored) into a page
/// image (checksummed when written, as leaves are).
pub fn encode_branch(entries: &[BranchEntry], page_size: usize) -> PageRef {
    let mut image = page::new_image(page_size);
    let buf = page::image_mut(&mut image);
    let n = entries.len() - 1;
    let p = match (entries.get(1), entries.last()) {
        (Some(a), Some(b)) if n > 0 => common_prefix(&a.key, &b.key),
        _ => 0,
    };
    page::write_u16(buf, PAGE_HEADER_LEN, p as u16);
    let mut at = SLOTS_START + n * SLOT;
    for (i, e) in entries[1..].iter().enumerate() {
        write_slot(buf, i, at, hint(&e.key, p));
        page::write_u16(buf, at, e.key.len() as u16);
        page::write_u64(buf, at + 2, e.child);
        at += BRANCH_CELL_HEADER;
        buf[at..at + e.key.len()].copy_from_slice(&e.key);
        at += e.key.len();
    }
    page::set_header(buf, PageType::Branch, n as u16, entries[0].child);
    image
}

/// Points child `i` of a branch image at `child`, in place (child 0 lives in
/// the header's link field).
pub fn set_branch_child(buf: &mut [u8], i: usize, child: PageId) {
    if i == 0 {
        page::write_u64(buf, 8, child);
    } else {
        let off = slot_off(buf, i - 1);
        page::write_u64(buf, off + 2, child);
    }
}

/// Bytes of slots and cells in a (packed) branch page: what
/// [`branch_size`] gives for its entries.
pub fn branch_used(buf: &[u8]) -> usize {
    match page::count(buf) {
        0 => 0,
        n => {
            let off = slot_off(buf, n - 1);
            off + BRANCH_CELL_HEADER + page::read_u16(buf, off) as usize - SLOTS_START
        }
    }
}

/// Bytes a set of branch entries takes (the first entry costs nothing beyond the header).
pub fn branch_size(entries: &[BranchEntry]) -> usize {
    entries.iter().skip(1).map(BranchEntry::size).sum()
}

/// The shortest key `s` with `left < s <= right` (suffix truncation of separators).
pub fn separator(left: &[u8], right: &[u8]) -> Vec<u8> {
    debug_assert!(left < right);
    let common = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    right[..(common + 1).min(right.len())].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned leaf value, to write test pages with.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Val {
        Inline(Vec<u8>),
        Overflow { first: PageId, len: u64 },
    }

    /// An owned leaf entry, to write test pages with.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct LeafCell {
        key: Vec<u8>,
        val: Val,
    }

    impl LeafCell {
        /// The same entry, borrowed.
        fn as_ref(&self) -> CellRef<'_> {
            CellRef {
                key: &self.key,
                val: match &self.val {
                    Val::Inline(v) => ValRef::Inline(v),
                    Val::Overflow { first, len } => ValRef::Overflow {
                        first: *first,
                        len: *len,
                    },
                },
            }
        }
    }

    /// A leaf image as written to page `id` (checksum included).
    fn encode_owned(cells: &[LeafCell], id: PageId, page_size: usize) -> PageRef {
        let refs: Vec<CellRef<'_>> = cells.iter().map(LeafCell::as_ref).collect();
        let mut image = encode_leaf(&refs, page_size);
        page::write_checksum(page::image_mut(&mut image), id);
        image
    }

    fn cell(k: &str, v: &str) -> LeafCell {
        LeafCell {
            key: k.as_bytes().to_vec(),
            val: Val::Inline(v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn leaf_roundtrip_and_search() {
        let mut cells = vec![cell("apple", "1"), cell("banana", "22"), cell("cherry", "")];
        cells.push(LeafCell {
            key: b"date".to_vec(),
            val: Val::Overflow {
                first: 9,
                len: 123_456,
            },
        });
        let buf = encode_owned(&cells, 5, 4096);
        let limits = Limits::new(4096);
        page::verify_type(&buf, 5, PageType::Leaf).unwrap();
        validate(&buf, 5, PageType::Leaf, &limits).unwrap();
        let v = LeafView::new(&buf);
        let want: Vec<CellRef<'_>> = cells.iter().map(LeafCell::as_ref).collect();
        assert_eq!(v.cells(), want);
        assert_eq!(v.search(b"banana"), (1, true));
        assert_eq!(v.search(b"b"), (1, false));
        assert_eq!(v.search(b"zzz"), (4, false));
        assert_eq!(
            v.val(3),
            ValRef::Overflow {
                first: 9,
                len: 123_456
            }
        );
    }

    #[test]
    fn branch_roundtrip_and_routing() {
        let entries = vec![
            BranchEntry {
                key: vec![],
                child: 10,
            },
            BranchEntry {
                key: b"m".to_vec(),
                child: 11,
            },
            BranchEntry {
                key: b"t".to_vec(),
                child: 12,
            },
        ];
        let buf = encode_branch(&entries, 4096);
        validate(&buf, 3, PageType::Branch, &Limits::new(4096)).unwrap();
        let b = BranchView::new(&buf);
        assert_eq!(b.to_entries(), entries);
        assert_eq!(b.child(b.child_index(b"a")), 10);
        assert_eq!(b.child(b.child_index(b"m")), 11);
        assert_eq!(b.child(b.child_index(b"s")), 11);
        assert_eq!(b.child(b.child_index(b"t")), 12);
        assert_eq!(b.child(b.child_index(b"zz")), 12);
    }

    #[test]
    fn hinted_search_agrees_with_plain_search() {
        // Keys with a long shared prefix, equal hints, and keys shorter than the hint.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for a in 0..6u8 {
            for b in 0..6u8 {
                keys.push(vec![7, 7, 7, a]);
                keys.push(vec![7, 7, 7, a, 0, 0, 0, 0, b]);
                keys.push(vec![7, 7, 7, a, 1, b]);
            }
        }
        keys.sort();
        keys.dedup();
        let cells: Vec<LeafCell> = keys
            .iter()
            .map(|k| LeafCell {
                key: k.clone(),
                val: Val::Inline(vec![1]),
            })
            .collect();
        let buf = encode_owned(&cells, 9, 4096);
        validate(&buf, 9, PageType::Leaf, &Limits::new(4096)).unwrap();
        let leaf = LeafView::new(&buf);
        let entries: Vec<BranchEntry> = std::iter::once(BranchEntry {
            key: vec![],
            child: 100,
        })
        .chain(keys.iter().enumerate().map(|(i, k)| BranchEntry {
            key: k.clone(),
            child: 101 + i as u64,
        }))
        .collect();
        let bbuf = encode_branch(&entries, 4096);
        validate(&bbuf, 10, PageType::Branch, &Limits::new(4096)).unwrap();
        let branch = BranchView::new(&bbuf);
        let mut probes = keys.clone();
        probes.extend([
            vec![],
            vec![7],
            vec![7, 7, 7],
            vec![7, 7, 8],
            vec![6, 255],
            vec![7, 7, 7, 3, 0],
            vec![255],
        ]);
        for k in &probes {
            let want = keys.partition_point(|x| x < k);
            let found = keys.get(want) == Some(k);
            assert_eq!(leaf.search(k), (want, found), "leaf {k:?}");
            assert_eq!(
                branch.child_index(k),
                keys.partition_point(|x| x <= k),
                "branch {k:?}"
            );
        }
    }

    #[test]
    fn separator_is_shortest_between() {
        assert_eq!(separator(b"abc", b"abd"), b"abd");
        assert_eq!(separator(b"abc", b"b"), b"b");
        assert_eq!(separator(b"ab", b"abc"), b"abc");
        assert_eq!(separator(b"a", b"azzz"), b"az");
    }

    #[test]
    fn validate_rejects_absurd_overflow_lengths() {
        let limits = Limits::new(4096);
        for (len, ok) in [
            (1u64, true),
            (MAX_VALUE_LEN, true),
            (0, false),
            (MAX_VALUE_LEN + 1, false),
            (1 << 60, false),
        ] {
            let cells = vec![LeafCell {
                key: b"k".to_vec(),
                val: Val::Overflow { first: 9, len },
            }];
            let buf = encode_owned(&cells, 4, 4096);
            assert_eq!(
                validate(&buf, 4, PageType::Leaf, &limits).is_ok(),
                ok,
                "length {len}"
            );
        }
    }

    #[test]
    fn validate_rejects_bad_layouts_without_panicking() {
        let limits = Limits::new(1024);
        let cells = vec![cell("a", "x"), cell("b", "y")];
        let good = encode_owned(&cells, 2, 1024);
        // Out-of-bounds slot.
        let mut bad = good.to_vec();
        page::write_u16(&mut bad, SLOTS_START, 1020);
        assert!(validate(&bad, 2, PageType::Leaf, &limits).is_err());
        // Huge key length.
        let mut bad = good.to_vec();
        let off = page::read_u16(&bad, SLOTS_START) as usize;
        page::write_u16(&mut bad, off + 1, 60000);
        assert!(validate(&bad, 2, PageType::Leaf, &limits).is_err());
        // Keys out of order.
        let swapped = encode_owned(&[cell("b", "y"), cell("a", "x")], 2, 1024);
        assert!(validate(&swapped, 2, PageType::Leaf, &limits).is_err());
        // A hint that disagrees with its key.
        let mut bad = good.to_vec();
        bad[SLOTS_START + 2] ^= 1;
        assert!(validate(&bad, 2, PageType::Leaf, &limits).is_err());
        // Too many slots.
        let mut bad = good.to_vec();
        page::write_u16(&mut bad, 6, 4000);
        assert!(validate(&bad, 2, PageType::Leaf, &limits).is_err());
    }

    /// A leaf's cells for the patch property test: sorted distinct keys
    /// drawn from a few shared stems (so prefixes vary), inline values of
    /// varied length and some overflow references.
    fn leaf_cells() -> impl proptest::strategy::Strategy<Value = Vec<LeafCell>> {
        use proptest::prelude::*;
        let key = (0..4usize, proptest::collection::vec(0u8..4, 0..6)).prop_map(|(stem, tail)| {
            let stems: [&[u8]; 4] = [b"", b"a", b"ab", b"abcd"];
            let mut k = stems[stem].to_vec();
            k.extend(tail.iter().map(|b| b'a' + b));
            if k.is_empty() {
                k.push(b'm');
            }
            k
        });
        let val = prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Val::Inline),
            1 => (1u64..1000, 17u64..100_000).prop_map(|(first, len)| Val::Overflow { first, len }),
        ];
        proptest::collection::btree_map(key, val, 1..40).prop_map(|m| {
            m.into_iter()
                .map(|(key, val)| LeafCell { key, val })
                .collect()
        })
    }

    proptest::proptest! {
        /// A patched leaf is byte for byte the page a merge would encode,
        /// and holds as many bytes as its cells take; a patch is refused
        /// only for the reasons `patch_leaf` gives.
        #[test]
        fn a_patched_leaf_is_the_page_encoding_would_build(
            cells in leaf_cells(),
            pick in 0usize..1000,
            new_key in proptest::collection::vec(b'a'..b'f', 1..7),
            new_val in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            kind in 0u8..3,
        ) {
            let limits = Limits::new(1024);
            let refs: Vec<CellRef<'_>> = cells.iter().map(LeafCell::as_ref).collect();
            proptest::prop_assume!(refs.iter().map(CellRef::size).sum::<usize>() <= limits.usable);
            let old = encode_leaf(&refs, 1024);
            let n = refs.len();
            let at = pick % n;
            let mut edited = refs.clone();
            let edit = match kind {
                0 => {
                    let (pos, found) = LeafView::new(&old).search(&new_key);
                    proptest::prop_assume!(!found);
                    edited.insert(pos, CellRef { key: &new_key, val: ValRef::Inline(&new_val) });
                    LeafEdit::Insert { at: pos, key: &new_key, val: &new_val }
                }
                1 => {
                    edited[at].val = ValRef::Inline(&new_val);
                    LeafEdit::Replace { at, val: &new_val }
                }
                _ => {
                    edited.remove(at);
                    LeafEdit::Remove { at }
                }
            };
            let used: usize = edited.iter().map(CellRef::size).sum();
            let same_prefix = match (edited.first(), edited.last()) {
                (Some(a), Some(b)) => {
                    common_prefix(a.key, b.key) == prefix_len(&old)
                }
                _ => false,
            };
            match patch_leaf(&old, edit, &limits) {
                Some((image, got_used)) => {
                    proptest::prop_assert_eq!(got_used, used);
                    proptest::prop_assert_eq!(&image[..], &encode_leaf(&edited, 1024)[..]);
                    validate(&image, 1, PageType::Leaf, &limits).unwrap();
                }
                None => proptest::prop_assert!(
                    !same_prefix || used > limits.usable,
                    "patch refused an edit it can make"
                ),
            }
        }
    }

    #[test]
    fn a_leaf_not_packed_in_key_order_is_not_patched() {
        let limits = Limits::new(1024);
        let cells = vec![cell("a", "x"), cell("b", "yy"), cell("c", "z")];
        let packed = encode_owned(&cells, 2, 1024);
        let edit = LeafEdit::Replace { at: 1, val: b"w" };
        assert!(patch_leaf(&packed, edit, &limits).is_some());
        // The same cells with a gap before the second: still a valid page.
        let mut gap = packed.to_vec();
        let off = slot_off(&gap, 1);
        let end = slot_off(&gap, 2) + LEAF_CELL_HEADER + 2;
        gap.copy_within(off..end, off + 1);
        page::write_u16(&mut gap, SLOTS_START + SLOT, (off + 1) as u16);
        page::write_u16(
            &mut gap,
            SLOTS_START + 2 * SLOT,
            (slot_off(&packed, 2) + 1) as u16,
        );
        validate(&gap, 2, PageType::Leaf, &limits).unwrap();
        assert!(patch_leaf(&gap, edit, &limits).is_none());
    }
}
