//! Checkpoints: making the in-memory working tree durable in the page file so the
//! log before it can be deleted.
//!
//! A checkpoint has three steps. Under the commit mutex (`DbInner::begin_checkpoint`):
//! the log is synced (a checkpoint must never include a commit the log could
//! lose), every dirty page is written to its page id (a fresh id the previous
//! checkpoint does not use), the free list is written to free pages, and the
//! meta page naming the tree, the free list, the commit sequence and the log
//! position is built. Then, with the mutex released so commits go on
//! (`DbInner::write_checkpoint`): the file is synced, the meta page written
//! into the slot the previous checkpoint did not use, and synced. Finally,
//! under the mutex again (`DbInner::finish_checkpoint`), the new checkpoint
//! becomes the durable one: the previous checkpoint's superseded pages are
//! released (to wait for old snapshots) and log segments the checkpoint covers
//! retired. A crash at any point leaves the previous checkpoint and its log
//! intact: commits made meanwhile never reuse a page either checkpoint holds
//! (see [`crate::freelist`]), and they are in the log after the new
//! checkpoint's position.
//!
//! Commits wait only for the first step, which writes pages to the page cache
//! and is bounded by the dirty pages written since the last checkpoint (itself
//! bounded by `Options::checkpoint_log_bytes`); the file's sync, the slow part,
//! runs beside them. One checkpoint runs at a time; a large commit made durable
//! by a checkpoint (`Options::large_txn_bytes`) waits for one in progress and
//! takes all three steps under the mutex.

use std::time::Instant;

use crate::db::{lock, CommitState, DbInner};
use crate::error::{Error, Result};
use crate::freelist;
use crate::meta::Meta;
use crate::page::PageId;

/// Ends a checkpoint in flight whose second step panicked (see
/// [`DbInner::checkpoint`]); forgotten when the step returns.
struct InFlight<'a>(&'a DbInner);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.commit);
        st.checkpoint_in_flight = false;
        st.poisoned
            .get_or_insert_with(|| "a checkpoint's sync panicked".to_string());
        self.0.checkpointed.notify_all();
    }
}

/// A checkpoint whose pages are written, waiting for its sync and meta page.
pub(crate) struct Pending {
    meta: Meta,
    /// Pages of its free-list chain.
    chain: Vec<PageId>,
    started: Instant,
}

impl DbInner {
    /// Writes a checkpoint of everything committed so far, letting commits
    /// run while the file is synced.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let mut guard = lock(&self.commit);
        while guard.checkpoint_in_flight {
            guard = self
                .checkpointed
                .wait(guard)
                .unwrap_or_else(|p| p.into_inner());
        }
        let Some(pending) = self.begin_checkpoint(&mut guard)? else {
            return Ok(());
        };
        guard.checkpoint_in_flight = true;
        drop(guard);
        // Should the sync panic (a file layer's bug), the guard still ends
        // the checkpoint in flight, so nobody waits for it forever, and
        // refuses further writes: which checkpoint is durable is unknown.
        let in_flight = InFlight(self);
        let written = self.write_checkpoint(&pending);
        std::mem::forget(in_flight);
        let mut guard = lock(&self.commit);
        guard.checkpoint_in_flight = false;
        self.checkpointed.notify_all();
        if let Err(e) = written {
            guard.poisoned = Some(e.to_string());
            return Err(e);
        }
        let lsn = self.finish_checkpoint(&mut guard, pending);
        drop(guard);
        // Best effort: a segment left behind is retired next time.
        let _ = self.wal.remove_below(lsn);
        Ok(())
    }

    /// A whole checkpoint with the commit mutex held (no other checkpoint in
    /// progress). Returns the log position it covers (`None` when nothing
    /// changed).
    pub(crate) fn checkpoint_locked(&self, st: &mut CommitState) -> Result<Option<u64>> {
        let Some(pending) = self.begin_checkpoint(st)? else {
            return Ok(None);
        };
        if let Err(e) = self.write_checkpoint(&pending) {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        Ok(Some(self.finish_checkpoint(st, pending)))
    }

    /// The first step, with the commit mutex held: log synced, pages and free
    /// list written (not synced), meta page built. `None` when nothing
    /// changed since the last checkpoint.
    fn begin_checkpoint(&self, st: &mut CommitState) -> Result<Option<Pending>> {
        if let Some(why) = &st.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        if st.seq == st.meta.commit_seq && st.last_lsn == st.meta.checkpoint_lsn {
            st.last_checkpoint = Instant::now();
            // Pages a crash left past the end (see below) go even when there
            // is nothing new to write.
            self.cut_file_to(st.meta.page_count.max(st.freelist.page_count()));
            return Ok(None);
        }
        let started = Instant::now();
        if let Err(e) = self.wal.sync_all() {
            st.poisoned.get_or_insert_with(|| e.to_string());
            return Err(e);
        }
        self.publish_durable();
        self.release_pages(st);

        let page_count_before = st.freelist.page_count();
        let retired_from = st
            .freelist
            .retire_with_checkpoint(st.seq, &st.freelist_pages);
        let trimmed = st.freelist.trim_tail();
        let mut allocated = Vec::new();
        let written = self.write_pages(st, &mut allocated);
        let (chain, recorded) = match written {
            Ok(w) => w,
            Err(e) => {
                for &id in &allocated {
                    self.pager.invalidate(id);
                }
                st.freelist
                    .undo_checkpoint(retired_from, trimmed, &allocated, page_count_before);
                return Err(e);
            }
        };
        st.freelist.begin_checkpoint();
        let meta = Meta {
            page_size: self.pager.page_size() as u32,
            seq: st.meta.seq + 1,
            root: st.tree.root,
            depth: st.tree.depth,
            freelist_head: chain.first().copied().unwrap_or(0),
            page_count: st.freelist.page_count(),
            entry_count: st.entries,
            free_count: recorded,
            checkpoint_lsn: st.last_lsn,
            commit_seq: st.seq,
        };
        Ok(Some(Pending {
            meta,
            chain,
            started,
        }))
    }

    /// The second step, needing no lock: the file synced, then the meta page
    /// written and synced. An error leaves it unknown which checkpoint a
    /// restart finds (and, after a failed fdatasync, the kernel may have
    /// dropped pages it had accepted, among them write-backs of evicted pages
    /// that exist nowhere else now): the caller refuses further writes, and
    /// reopening recovers from whichever checkpoint is durable. Commits that
    /// ran beside the failed sync are in the log like every other (the page
    /// they may have read back is checksummed); they are not lost, and the
    /// handle refuses writes from the moment the failure is seen.
    fn write_checkpoint(&self, pending: &Pending) -> Result<()> {
        self.pager.sync()?;
        write_meta(self, &pending.meta)?;
        self.pager.sync()
    }

    /// The last step, with the commit mutex held: the checkpoint becomes the
    /// durable one. Returns the log position it covers.
    fn finish_checkpoint(&self, st: &mut CommitState, pending: Pending) -> u64 {
        st.meta = pending.meta;
        st.freelist_pages = pending.chain;
        st.freelist.checkpoint_done();
        st.checkpoints += 1;
        st.last_checkpoint = Instant::now();
        st.last_checkpoint_time = pending.started.elapsed();
        st.checkpoint_time += st.last_checkpoint_time;
        // Commits since its begin may have grown the file past its end.
        self.cut_file_to(st.meta.page_count.max(st.freelist.page_count()));
        st.meta.checkpoint_lsn
    }

    /// Cuts the data file to `pages` pages when it is longer: pages past the
    /// checkpoint's end (its tree shrank, or a crash left pages written after
    /// the last checkpoint, which opening leaves in place) belong to nobody.
    /// Best effort: they are free either way, and the next checkpoint tries
    /// again. Called with the commit mutex held, so no commit allocates
    /// into them meanwhile.
    fn cut_file_to(&self, pages: u64) {
        let want = pages * self.pager.page_size() as u64;
        if self.pager.file_len().is_ok_and(|len| len > want) {
            let _ = self.pager.truncate(pages);
        }
    }

    /// Writes dirty pages and the free-list chain (not synced). Returns the
    /// chain and the number of pages it records.
    fn write_pages(
        &self,
        st: &mut CommitState,
        allocated: &mut Vec<PageId>,
    ) -> Result<(Vec<PageId>, u64)> {
        self.pager.flush()?;
        let page_size = self.pager.page_size();
        let chain = freelist::build_chain(&mut st.freelist, page_size);
        allocated.extend_from_slice(&chain.pages);
        self.pager.write_direct(&chain.images)?;
        // Pages allocated and given back unwritten may sit at the end: the file
        // must still cover every page the checkpoint counts.
        let want = st.freelist.page_count() * page_size as u64;
        if self.pager.file_len()? < want {
            self.pager.truncate(st.freelist.page_count())?;
        }
        Ok((chain.pages, chain.recorded))
    }
}

fn write_meta(db: &DbInner, meta: &Meta) -> Result<()> {
    let mut buf = vec![0u8; db.pager.page_size()];
    meta.encode(&mut buf);
    db.pager.write_direct(&[(meta.slot(), buf)])
}
