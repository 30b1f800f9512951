//! Overflow chains: values too large to sit in a leaf.
//!
//! A large value is cut into pieces of `page_size - 16` bytes, one per overflow page
//! (type 4). Each page's link field names the next page (0 ends the chain); the
//! leaf keeps the first page id and the total length, so the number of pages is
//! known and a chain that is too short, too long or loops is reported as corruption.

use crate::error::{Error, Result};
use crate::page::{self, PageId, PageRef, PageType, PAGE_HEADER_LEN};
use crate::pager::Pager;

/// Payload bytes per overflow page.
pub fn chunk_len(page_size: usize) -> usize {
    page_size - PAGE_HEADER_LEN
}

/// Number of pages a value of `len` bytes needs.
pub fn pages_for(len: u64, page_size: usize) -> u64 {
    len.div_ceil(chunk_len(page_size) as u64)
}

/// How many pages are written per call while storing a value.
const WRITE_BATCH: usize = 256;

/// Writes a non-empty `value` into the pages `ids` (exactly
/// [`pages_for`] of them) and returns the first page id.
pub fn write(pager: &Pager, value: &[u8], ids: &[PageId]) -> Result<PageId> {
    let ps = pager.page_size();
    let chunks: Vec<&[u8]> = value.chunks(chunk_len(ps)).collect();
    if chunks.is_empty() || chunks.len() != ids.len() {
        return Err(Error::InvalidOptions(format!(
            "overflow write of {} bytes given {} pages",
            value.len(),
            ids.len()
        )));
    }
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    for (i, chunk) in chunks.iter().enumerate() {
        let mut buf = vec![0u8; ps];
        buf[PAGE_HEADER_LEN..PAGE_HEADER_LEN + chunk.len()].copy_from_slice(chunk);
        let next = ids.get(i + 1).copied().unwrap_or(0);
        page::seal(&mut buf, ids[i], PageType::Overflow, 0, next);
        batch.push((ids[i], buf));
        if batch.len() == WRITE_BATCH {
            pager.write_direct(&batch)?;
            batch.clear();
        }
    }
    pager.write_direct(&batch)?;
    Ok(ids[0])
}

/// Values of at most this many pages are read through the buffer pool (so
/// records of a few KiB stay cached like tree nodes); longer chains bypass it,
/// so one large value cannot push the hot nodes out.
pub const CACHED_CHAIN_PAGES: u64 = 8;

/// Visits each page of a chain in order, checking its length against `len`.
fn walk(
    pager: &Pager,
    first: PageId,
    len: u64,
    cached: bool,
    mut visit: impl FnMut(PageId, PageRef),
) -> Result<()> {
    let ps = pager.page_size();
    let n = pages_for(len, ps);
    let cached = cached && n <= CACHED_CHAIN_PAGES;
    if cached && n > 1 {
        // The slots of all pages are fetched together, then the pages after
        // the first load while the first is visited.
        pager.prefetch_chain_slots(first, len);
        pager.prefetch_chain(first + 1, len - chunk_len(ps) as u64);
    }
    let mut id = first;
    for i in 0..n {
        if id == 0 {
            return Err(Error::corrupt(
                first,
                format!("overflow chain ends after {i} of {n} pages"),
            ));
        }
        let page = if cached {
            pager.read_cached(id, PageType::Overflow)?
        } else {
            pager.read_uncached(id, PageType::Overflow)?
        };
        let next = page::link(&page);
        visit(id, page);
        id = next;
    }
    if id != 0 {
        return Err(Error::corrupt(
            first,
            format!("overflow chain is longer than {n} pages"),
        ));
    }
    Ok(())
}

/// Reads a whole value.
pub fn read(pager: &Pager, first: PageId, len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    read_into(pager, first, len, &mut out)?;
    Ok(out)
}

/// Reads a chain's value into `out` (replacing its contents), so a scan can
/// reuse one buffer for every value.
pub fn read_into(pager: &Pager, first: PageId, len: u64, out: &mut Vec<u8>) -> Result<()> {
    let chunk = chunk_len(pager.page_size());
    let total =
        usize::try_from(len).map_err(|_| Error::corrupt(first, "overflow length too large"))?;
    out.clear();
    out.reserve(total);
    walk(pager, first, len, true, |_, page| {
        let take = (total - out.len()).min(chunk);
        out.extend_from_slice(&page[PAGE_HEADER_LEN..PAGE_HEADER_LEN + take]);
    })
}

/// Hands a chain's value to `f` as the payload pieces of its pages, in
/// order (their concatenation is the value), without copying it out of the
/// buffer pool. A chain too long to be cached ([`CACHED_CHAIN_PAGES`]) is
/// assembled in `scratch` instead and handed over as one piece.
pub fn with_pieces<R>(
    pager: &Pager,
    first: PageId,
    len: u64,
    scratch: &mut Vec<u8>,
    f: impl FnOnce(&[&[u8]]) -> R,
) -> Result<R> {
    const N: usize = CACHED_CHAIN_PAGES as usize;
    let chunk = chunk_len(pager.page_size());
    if pages_for(len, pager.page_size()) > CACHED_CHAIN_PAGES {
        read_into(pager, first, len, scratch)?;
        return Ok(f(&[scratch.as_slice()]));
    }
    let mut pages: [Option<PageRef>; N] = Default::default();
    let mut n = 0;
    walk(pager, first, len, true, |_, page| {
        // `walk` visits exactly `pages_for(len)` pages, at most N here.
        if let Some(slot) = pages.get_mut(n) {
            *slot = Some(page);
            n += 1;
        }
    })?;
    let mut pieces: [&[u8]; N] = [&[]; N];
    let mut left = len as usize;
    for (piece, page) in pieces.iter_mut().zip(pages.iter().flatten()) {
        let take = left.min(chunk);
        *piece = &page[PAGE_HEADER_LEN..PAGE_HEADER_LEN + take];
        left -= take;
    }
    Ok(f(&pieces[..n]))
}

/// Lists the pages of a chain (for freeing and for the checker).
pub fn pages(pager: &Pager, first: PageId, len: u64) -> Result<Vec<PageId>> {
    let mut ids = Vec::new();
    walk(pager, first, len, false, |id, _| ids.push(id))?;
    Ok(ids)
}
