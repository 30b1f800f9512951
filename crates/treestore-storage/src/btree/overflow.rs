//! Overflow chains: values too large to sit in a leaf.
//!
//! A large value is cut into pieces of `page_size - 16` bytes, one per overflow page
//! (type 4). Each page's link field names the next page (0 ends the chain); the
//! leaf keeps the first page id and the total length, so the number of pages is
//! known and a chain that is too short, too long or loops is reported as corruption.

use crate::buffer_pool::RunWriter;
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

/// Builds a non-empty `value` into the pages `ids` (exactly [`pages_for`]
/// of them) in `run`, and returns the first page id. The pages reach the
/// file when `run` is finished or moves on to pages that do not follow them
/// (a batch allocates a document's chains mostly one after another, so its
/// chains go out in a few large writes); until then they must not be read.
pub(crate) fn write(
    pager: &Pager,
    run: &mut RunWriter<'_>,
    value: &[u8],
    ids: &[PageId],
) -> Result<PageId> {
    let chunks = value.chunks(chunk_len(pager.page_size()));
    if value.is_empty() || chunks.len() != ids.len() {
        return Err(Error::InvalidOptions(format!(
            "overflow write of {} bytes given {} pages",
            value.len(),
            ids.len()
        )));
    }
    for (i, chunk) in chunks.enumerate() {
        pager.invalidate(ids[i]);
        let page = run.page(ids[i])?;
        page[PAGE_HEADER_LEN..PAGE_HEADER_LEN + chunk.len()].copy_from_slice(chunk);
        let next = ids.get(i + 1).copied().unwrap_or(0);
        // Checksummed when the run is written.
        page::set_header(page, PageType::Overflow, 0, next);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::MemFile;
    use crate::vfs::StorageFile;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A memory file counting its writes.
    #[derive(Debug, Default)]
    struct Counting {
        file: MemFile,
        writes: AtomicUsize,
    }

    impl StorageFile for Counting {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            self.file.read_exact_at(buf, offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.file.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }
    }

    /// Chains of consecutive pages are written in one call, a break in the
    /// ids starts a new one, every value reads back (through the pool too,
    /// where an older image of a reused page was cached), and a bad page
    /// count is refused.
    #[test]
    fn chain_writer_writes_runs_of_pages_once() {
        let file = Arc::new(Counting::default());
        let pager = Pager::new(file.clone(), "test".into(), 1024, 1 << 20);
        let chunk = chunk_len(1024);
        let value = |n: usize, b: u8| -> Vec<u8> { (0..n).map(|i| b ^ (i % 251) as u8).collect() };
        let (a, b, c) = (
            value(2 * chunk + 5, 1),
            value(2 * chunk, 2),
            value(chunk + 1, 3),
        );
        // An old image of page 11 in the pool must not survive the write.
        let mut old = vec![0u8; 1024];
        page::seal(&mut old, 11, PageType::Overflow, 0, 0);
        file.file.write_all_at(&old, 11 * 1024).unwrap();
        pager.read_cached(11, PageType::Overflow).unwrap();

        let mut w = pager.run_writer();
        assert_eq!(write(&pager, &mut w, &a, &[10, 11, 12]).unwrap(), 10);
        assert_eq!(write(&pager, &mut w, &b, &[13, 14]).unwrap(), 13);
        assert_eq!(file.writes.load(Ordering::Relaxed), 0, "still building");
        assert_eq!(write(&pager, &mut w, &c, &[20, 21]).unwrap(), 20);
        assert_eq!(
            file.writes.load(Ordering::Relaxed),
            1,
            "pages 10..=14 in one write"
        );
        w.finish().unwrap();
        w.finish().unwrap();
        assert_eq!(
            file.writes.load(Ordering::Relaxed),
            2,
            "then 20..=21; nothing left"
        );

        for (v, first, ids) in [
            (&a, 10, vec![10, 11, 12]),
            (&b, 13, vec![13, 14]),
            (&c, 20, vec![20, 21]),
        ] {
            assert_eq!(&read(&pager, first, v.len() as u64).unwrap(), v);
            assert_eq!(pages(&pager, first, v.len() as u64).unwrap(), ids);
            let got = with_pieces(&pager, first, v.len() as u64, &mut Vec::new(), |p| {
                p.concat()
            })
            .unwrap();
            assert_eq!(&got, v);
        }
        assert!(
            write(&pager, &mut w, &a, &[30, 31]).is_err(),
            "three pages' worth given two"
        );
        assert!(write(&pager, &mut w, &[], &[]).is_err());
    }
}
