//! Checkpoints: making the in-memory working tree durable in the page file so the
//! log before it can be deleted.
//!
//! Under the commit mutex: the log is synced (a checkpoint must never include a
//! commit the log could lose), every dirty page is written to its page id (a
//! fresh id the previous checkpoint does not use), the free list is written to
//! free pages, the file is synced, and a meta page naming the tree, the free
//! list, the commit sequence and the log position is written into the slot the
//! previous checkpoint did not use, then synced. Only then are the previous
//! checkpoint's superseded pages released (to wait for old snapshots) and log
//! segments the checkpoint covers deleted. A crash at any point leaves the
//! previous checkpoint and its log intact.
//!
//! Commits wait while a checkpoint holds the mutex; the pause is bounded by the
//! dirty pages written since the last checkpoint, itself bounded by
//! `Options::checkpoint_log_bytes`.

use std::time::Instant;

use crate::db::{lock, CommitState, DbInner};
use crate::error::{Error, Result};
use crate::freelist;
use crate::meta::Meta;
use crate::page::PageId;

impl DbInner {
    /// Writes a checkpoint of everything committed so far.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let mut guard = lock(&self.commit);
        let checkpoint_lsn = self.checkpoint_locked(&mut guard)?;
        drop(guard);
        // Best effort: a segment left behind is removed next time.
        if let Some(lsn) = checkpoint_lsn {
            let _ = self.wal.remove_below(lsn);
        }
        Ok(())
    }

    /// The checkpoint itself, with the commit mutex held. Returns the log
    /// position the new checkpoint covers (`None` when nothing changed).
    pub(crate) fn checkpoint_locked(&self, st: &mut CommitState) -> Result<Option<u64>> {
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
        // After a failed fdatasync the kernel may have dropped pages it had
        // accepted, among them write-backs of evicted pages that exist nowhere
        // else now: nothing since the last good sync can be trusted. Refuse
        // further writes; reopening recovers from the previous checkpoint.
        if let Err(e) = self.pager.sync() {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
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
        // The switch. If the meta page cannot be written and synced we cannot
        // know which checkpoint a restart will find: refuse further writes.
        let switched = write_meta(self, &meta).and_then(|()| self.pager.sync());
        if let Err(e) = switched {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        st.meta = meta;
        st.freelist_pages = chain;
        st.freelist.checkpoint_done();
        st.checkpoints += 1;
        st.last_checkpoint = Instant::now();
        st.last_checkpoint_time = started.elapsed();
        st.checkpoint_time += st.last_checkpoint_time;
        self.cut_file_to(meta.page_count);
        Ok(Some(meta.checkpoint_lsn))
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
