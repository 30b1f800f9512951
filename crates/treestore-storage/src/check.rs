//! Integrity check of a data directory: reads every reachable page of the newest
//! checkpoint from disk and verifies checksums, node layout, key order within and
//! across nodes, equal leaf depth, overflow chains, the free list, and that every
//! page is accounted for exactly once (in use or free, never both, none leaked);
//! then reads the log after the checkpoint and verifies its framing, checksums
//! and commit records. It only reads: nothing is repaired or truncated.

use std::fmt::Write as _;
use std::path::Path;

use crate::btree::node::{BranchView, CellRef, LeafView, ValRef, SLOTS_START};
use crate::btree::overflow;
use crate::db::DATA_FILE;
use crate::error::{Error, Result};
use crate::freelist;
use crate::log_record;
use crate::meta::Meta;
use crate::page::{PageId, PageType};
use crate::pager::Pager;
use crate::vfs::{PathKind, Vfs};
use crate::wal::{self, RECORD_HEADER_LEN, WAL_DIR};

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub page_size: u64,
    pub page_count: u64,
    pub tree_pages: u64,
    pub overflow_pages: u64,
    pub freelist_pages: u64,
    pub free_pages: u64,
    pub entries: u64,
    pub depth: u32,
    /// Leaf pages among the tree pages, and the bytes their slots and cells
    /// take (the rest of each leaf is unused).
    pub leaf_pages: u64,
    pub leaf_bytes: u64,
    /// Bytes of the values kept in overflow chains (the rest of their pages
    /// is unused).
    pub overflow_bytes: u64,
    /// Commit records in the log after the checkpoint (replayed at the next open).
    pub log_records: u64,
    /// Bytes of a torn record at the end of the log (cut off at the next open;
    /// expected after a crash, not a problem).
    pub torn_tail_bytes: u64,
    /// Every problem found, each naming the page or log position involved.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A one-line summary, with how full leaves and overflow pages are.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{} pages: {} tree, {} overflow, {} free-list, {} free; {} entries, depth {}",
            self.page_count,
            self.tree_pages,
            self.overflow_pages,
            self.freelist_pages,
            self.free_pages,
            self.entries,
            self.depth
        );
        if self.leaf_pages > 0 {
            let _ = write!(
                s,
                "; leaves {}% full",
                percent(self.leaf_bytes, self.leaf_pages, self.page_size)
            );
        }
        if self.overflow_pages > 0 {
            let _ = write!(
                s,
                ", overflow pages {}% full",
                percent(self.overflow_bytes, self.overflow_pages, self.page_size)
            );
        }
        if !self.is_ok() {
            let _ = write!(s, "; {} problem(s)", self.problems.len());
        }
        s
    }
}

/// `bytes` as a whole percentage of `pages` pages of `page_size` bytes.
fn percent(bytes: u64, pages: u64, page_size: u64) -> u64 {
    (bytes.saturating_mul(100) / pages.saturating_mul(page_size).max(1)).min(100)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Unseen,
    Meta,
    Tree,
    Overflow,
    FreeListPage,
    Free,
}

struct Checker<'a> {
    pager: &'a Pager,
    uses: Vec<Use>,
    report: CheckReport,
}

impl Checker<'_> {
    fn mark(&mut self, id: PageId, what: Use) -> bool {
        let Some(slot) = self.uses.get_mut(id as usize) else {
            self.report.problems.push(format!(
                "page {id}: referenced but beyond the end of the file"
            ));
            return false;
        };
        if *slot != Use::Unseen {
            self.report.problems.push(format!("page {id}: used twice"));
            return false;
        }
        *slot = what;
        true
    }

    fn node(
        &mut self,
        id: PageId,
        level: u32,
        depth: u32,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) {
        if !self.mark(id, Use::Tree) {
            return;
        }
        self.report.tree_pages += 1;
        let (page, ty) = match self.pager.read_from_disk(id) {
            Ok(p) => p,
            Err(e) => {
                self.report.problems.push(e.to_string());
                return;
            }
        };
        let in_bounds = |k: &[u8]| lower.is_none_or(|l| k >= l) && upper.is_none_or(|u| k < u);
        match ty {
            PageType::Leaf if level == depth => {
                let leaf = LeafView::new(&page);
                for i in 0..leaf.len() {
                    if !in_bounds(leaf.key(i)) {
                        self.report
                            .problems
                            .push(format!("page {id}: key {i} lies outside the range its parent gives"));
                    }
                    let cell = CellRef {
                        key: leaf.key(i),
                        val: leaf.val(i),
                    };
                    self.report.leaf_bytes += cell.size() as u64;
                    if let ValRef::Overflow { first, len } = cell.val {
                        self.overflow(id, first, len);
                    }
                }
                self.report.entries += leaf.len() as u64;
                self.report.leaf_pages += 1;
                self.report.leaf_bytes += SLOTS_START as u64;
            }
            PageType::Branch if level < depth => {
                let b = BranchView::new(&page);
                for i in 0..b.keys() {
                    if !in_bounds(b.key(i)) {
                        self.report
                            .problems
                            .push(format!("page {id}: separator {i} lies outside the range its parent gives"));
                    }
                }
                for i in 0..=b.keys() {
                    let lo = if i == 0 { lower } else { Some(b.key(i - 1)) };
                    let hi = if i == b.keys() { upper } else { Some(b.key(i)) };
                    self.node(b.child(i), level + 1, depth, lo, hi);
                }
            }
            _ => self.report.problems.push(format!(
                "page {id}: {ty:?} page at level {level} of a tree of depth {depth} (leaves must all be at the same depth)"
            )),
        }
    }

    fn overflow(&mut self, leaf: PageId, first: PageId, len: u64) {
        match overflow::pages(self.pager, first, len) {
            Ok(ids) => {
                for id in ids {
                    if self.mark(id, Use::Overflow) {
                        self.report.overflow_pages += 1;
                    }
                }
                self.report.overflow_bytes += len;
            }
            Err(e) => self.report.problems.push(format!(
                "page {leaf}: overflow value starting at page {first}: {e}"
            )),
        }
    }

    fn freelist(&mut self, meta: &Meta) {
        let mut next = meta.freelist_head;
        let mut recorded = 0u64;
        while next != 0 {
            if !self.mark(next, Use::FreeListPage) {
                return;
            }
            self.report.freelist_pages += 1;
            let page = match self.pager.read_from_disk(next) {
                Ok((p, PageType::FreeList)) => p,
                Ok((_, ty)) => {
                    self.report.problems.push(format!(
                        "page {next}: free-list chain reaches a {ty:?} page"
                    ));
                    return;
                }
                Err(e) => {
                    self.report.problems.push(e.to_string());
                    return;
                }
            };
            match freelist::decode(&page, next, meta.page_count) {
                Ok((ids, link)) => {
                    for id in ids {
                        recorded += 1;
                        if self.uses.get(id as usize) == Some(&Use::Unseen) {
                            self.uses[id as usize] = Use::Free;
                            self.report.free_pages += 1;
                        } else {
                            self.report
                                .problems
                                .push(format!("page {id}: listed as free but also in use"));
                        }
                    }
                    next = link;
                }
                Err(e) => {
                    self.report.problems.push(e.to_string());
                    return;
                }
            }
        }
        if recorded != meta.free_count {
            self.report.problems.push(format!(
                "free list records {recorded} pages, meta page says {}",
                meta.free_count
            ));
        }
    }
}

/// Checks the checkpoint named by `meta`.
pub fn check(pager: &Pager, meta: &Meta) -> Result<CheckReport> {
    let file_pages = pager.file_len()? / pager.page_size() as u64;
    // Only pages the file really has are tracked; references past its end are
    // reported (a damaged meta page may claim any page count).
    let tracked = meta.page_count.min(file_pages).max(2);
    let mut c = Checker {
        pager,
        uses: vec![Use::Unseen; tracked as usize],
        report: CheckReport {
            page_size: pager.page_size() as u64,
            page_count: meta.page_count,
            depth: meta.depth,
            ..CheckReport::default()
        },
    };
    if file_pages < meta.page_count {
        c.report.problems.push(format!(
            "file holds {file_pages} pages but the meta page records {}",
            meta.page_count
        ));
    }
    c.uses[0] = Use::Meta;
    c.uses[1] = Use::Meta;
    for slot in 0..2u64 {
        if let Err(e) = pager
            .read_from_disk(slot)
            .and_then(|(p, _)| Meta::decode(&p, slot))
        {
            // The slot not in use may hold a torn write from a crashed commit;
            // only the current one must be sound.
            if slot == meta.slot() {
                c.report.problems.push(e.to_string());
            }
        }
    }
    if meta.root != 0 {
        c.node(meta.root, 1, meta.depth, None, None);
    }
    c.freelist(meta);
    if c.report.entries != meta.entry_count {
        c.report.problems.push(format!(
            "tree holds {} entries, meta page records {}",
            c.report.entries, meta.entry_count
        ));
    }
    let leaked: Vec<PageId> = (0..tracked)
        .filter(|&id| c.uses[id as usize] == Use::Unseen)
        .collect();
    if !leaked.is_empty() {
        let shown: Vec<String> = leaked.iter().take(20).map(|id| id.to_string()).collect();
        c.report.problems.push(format!(
            "{} page(s) neither in use nor free (leaked): {}{}",
            leaked.len(),
            shown.join(", "),
            if leaked.len() > 20 { ", ..." } else { "" }
        ));
    }
    Ok(c.report)
}

/// Checks the data directory `dir` without modifying it: takes its lock (so a
/// running server's directory is refused), verifies the newest valid checkpoint
/// and the log after it. Errors are returned only when the check cannot run at
/// all (missing directory, lock held, unreadable file); everything wrong with
/// the contents is in the report.
pub fn check_dir(dir: &Path, vfs: &dyn Vfs) -> Result<CheckReport> {
    match vfs
        .path_kind(dir)
        .map_err(|e| Error::io(format!("inspecting data directory {}", dir.display()), e))?
    {
        PathKind::Directory => {}
        PathKind::Missing => {
            return Err(Error::MissingDirectory {
                path: dir.to_path_buf(),
            })
        }
        PathKind::Other => {
            return Err(Error::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
    }
    let _lock = vfs.lock_dir(dir)?;
    let path = dir.join(DATA_FILE);
    if vfs
        .path_kind(&path)
        .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?
        == PathKind::Missing
    {
        return Err(Error::NoDatabase {
            path: dir.to_path_buf(),
        });
    }
    let file = vfs
        .open(&path, false)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let (meta, page_size) = match crate::recovery::read_meta(&*file, &path) {
        Ok(m) => m,
        Err(e) if e.is_corruption() => {
            return Ok(CheckReport {
                problems: vec![e.to_string()],
                ..CheckReport::default()
            })
        }
        Err(e) => return Err(e),
    };
    // A small pool: the checker reads nodes from disk, not through the cache.
    let pager = Pager::new(file, path, page_size, 1 << 20);
    let mut report = check(&pager, &meta)?;
    check_log(vfs, &dir.join(WAL_DIR), &meta, &mut report);
    Ok(report)
}

/// Verifies the log after the checkpoint: framing, checksums, record contents
/// and commit sequence continuity.
fn check_log(vfs: &dyn Vfs, wal_dir: &Path, meta: &Meta, report: &mut CheckReport) {
    if vfs.path_kind(wal_dir).ok() != Some(PathKind::Directory) {
        if meta.checkpoint_lsn != 0 {
            report
                .problems
                .push(format!("log directory {} is missing", wal_dir.display()));
        }
        return;
    }
    let mut seq = meta.commit_seq;
    let mut records = 0u64;
    let mut bad_records = Vec::new();
    let result = wal::read_from(vfs, wal_dir, meta.checkpoint_lsn, false, |_, recs| {
        for rec in recs {
            match log_record::decode_commit(rec.payload) {
                Ok((s, _)) if s <= seq => {}
                Ok((s, _)) if s == seq + 1 => {
                    seq = s;
                    records += 1;
                }
                Ok((s, _)) => bad_records.push(format!(
                    "log record at LSN {}: commit {s} follows commit {seq}",
                    rec.lsn
                )),
                Err(why) => bad_records.push(format!(
                    "log record at LSN {} ({} bytes): {why}",
                    rec.lsn,
                    RECORD_HEADER_LEN + rec.payload.len() as u64
                )),
            }
        }
        Ok(())
    });
    report.log_records = records;
    report.problems.extend(bad_records);
    match result {
        Ok(end) => report.torn_tail_bytes = end.torn_bytes,
        Err(e) => report.problems.push(e.to_string()),
    }
}
