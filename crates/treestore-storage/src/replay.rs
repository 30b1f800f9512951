//! Log replay at open: every commit in the log after the checkpoint, applied
//! to the checkpoint's tree in memory in batches of up to
//! [`Options::replay_batch_bytes`](crate::db::Options::replay_batch_bytes).
//!
//! A batch keeps the read buffers of the log segments its writes lie in and
//! indexes each key and value by offset; when it is full (and at the end of
//! the log) it is sorted (the last write of a key in log order wins) and
//! applied in one pass, so each touched leaf is rewritten once per batch and
//! no reader sees the states in between. Where the log ends, and what a bad
//! record means, is [`wal::read_from`]'s business.

use std::path::Path;
use std::sync::Arc;

use crate::btree::write::Op;
use crate::db::{apply_ops_with, release_superseded, sort_last_wins, CommitState};
use crate::error::{Error, Result};
use crate::log_record;
use crate::pager::Pager;
use crate::vfs::Vfs;
use crate::wal::{self, RECORD_HEADER_LEN};

/// What replay did.
pub(crate) struct Replayed {
    pub commits: u64,
    pub end: wal::ReadEnd,
}

/// Applies every commit in the log after the checkpoint to `st`.
pub(crate) fn replay(
    pager: &Pager,
    st: &mut CommitState,
    vfs: &dyn Vfs,
    wal_dir: &Path,
    batch_bytes: usize,
) -> Result<Replayed> {
    let mut commits = 0u64;
    let from = st.meta.checkpoint_lsn;
    let mut batch = ReplayBatch::default();
    let end = wal::read_from(vfs, wal_dir, from, true, |segment, records| {
        for rec in records {
            let bad = |why: String| Error::CorruptFile {
                path: wal_dir.to_path_buf(),
                reason: format!("log record at LSN {}: {why}", rec.lsn),
            };
            let (seq, ops) = log_record::decode_commit(rec.payload).map_err(bad)?;
            if seq <= st.seq {
                // Already in the checkpoint.
                continue;
            }
            if seq != st.seq + 1 {
                return Err(bad(format!(
                    "commit {seq} follows commit {}: commits are missing",
                    st.seq
                )));
            }
            batch.add(segment, &ops);
            st.seq = seq;
            st.last_lsn = rec.lsn + RECORD_HEADER_LEN + rec.payload.len() as u64;
            commits += 1;
            if batch.bytes >= batch_bytes {
                batch.apply(pager, st)?;
            }
        }
        Ok(())
    })?;
    batch.apply(pager, st)?;
    Ok(Replayed { commits, end })
}

/// Replayed writes not yet applied: where each key and value lies in the log
/// segments the batch keeps (see [`wal::read_from`]). Applying many commits
/// as one batch rewrites each touched leaf once instead of once per commit or
/// segment; no reader sees the states in between.
#[derive(Default)]
struct ReplayBatch {
    segments: Vec<Arc<Vec<u8>>>,
    writes: Vec<LoggedWrite>,
    /// Memory the batch holds, and will while it is applied: its segments
    /// plus [`WRITE_COST`] per write.
    bytes: usize,
}

/// Memory per write of a batch: its index entry, its operation while the
/// batch is applied, and the sort's scratch space.
const WRITE_COST: usize =
    std::mem::size_of::<LoggedWrite>() + std::mem::size_of::<Op<'_>>() * 3 / 2;

/// One write of a replayed commit: where its key and value lie in
/// `segments[segment]`.
struct LoggedWrite {
    key_at: u64,
    value_at: u64,
    segment: u32,
    key_len: u32,
    /// [`DELETE`] for a delete.
    value_len: u32,
}

/// `value_len` of a delete (log records are far shorter than this).
const DELETE: u32 = u32::MAX;

/// Where `part` (a slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> u64 {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    debug_assert!(start + part.len() <= whole.len());
    start as u64
}

impl LoggedWrite {
    fn op<'a>(&self, segments: &'a [Arc<Vec<u8>>]) -> Op<'a> {
        let bytes: &[u8] = &segments[self.segment as usize];
        let slice = |at: u64, len: u32| &bytes[at as usize..at as usize + len as usize];
        let value = (self.value_len != DELETE).then(|| slice(self.value_at, self.value_len));
        (slice(self.key_at, self.key_len), value)
    }
}

impl ReplayBatch {
    /// Adds the writes of one commit record decoded from `segment`.
    fn add(&mut self, segment: &Arc<Vec<u8>>, ops: &[Op<'_>]) {
        if !self
            .segments
            .last()
            .is_some_and(|s| Arc::ptr_eq(s, segment))
        {
            self.segments.push(segment.clone());
            self.bytes += segment.len();
        }
        // Segments, keys and record payloads are all far below 4 GiB
        // (`wal::MAX_SEGMENT_FILE`, `wal::MAX_RECORD_LEN`).
        let idx = (self.segments.len() - 1) as u32;
        let bytes: &[u8] = segment;
        self.writes
            .extend(ops.iter().map(|&(key, value)| LoggedWrite {
                key_at: offset_in(bytes, key),
                value_at: value.map_or(0, |v| offset_in(bytes, v)),
                segment: idx,
                key_len: key.len() as u32,
                value_len: value.map_or(DELETE, |v| v.len() as u32),
            }));
        self.bytes += ops.len() * WRITE_COST;
    }

    /// Applies the collected writes to the working tree (the last write of
    /// each key, in log order, wins) and empties the batch.
    fn apply(&mut self, pager: &Pager, st: &mut CommitState) -> Result<()> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut ops: Vec<Op<'_>> = self.writes.iter().map(|w| w.op(&self.segments)).collect();
        sort_last_wins(&mut ops);
        let seq = st.seq;
        // No snapshot exists during recovery, and a batch that fails fails the
        // open: each page the batch replaces is dead at once, so its image
        // leaves the pool right away (its memory serves the batch's next new
        // page instead of fresh memory, and a dead dirty page is never written
        // back on eviction). Afterwards the pages written since the checkpoint
        // are free for reuse.
        apply_ops_with(pager, st, seq, &ops, true)?;
        release_superseded(pager, &mut st.freelist, seq);
        drop(ops);
        self.segments.clear();
        self.writes.clear();
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch counts each segment it keeps once and every write's index
    /// cost, and hands back each write's key and value (or delete) from the
    /// segment it lies in.
    #[test]
    fn a_batch_counts_its_segments_and_writes_and_finds_their_bytes() {
        let a = Arc::new(b"..key-a..value-a..key-b..".to_vec());
        let b = Arc::new(b"key-c".to_vec());
        let mut batch = ReplayBatch::default();
        batch.add(&a, &[(&a[2..7], Some(&a[9..16]))]);
        batch.add(&a, &[(&a[18..23], None)]);
        assert_eq!(batch.bytes, a.len() + 2 * WRITE_COST);
        batch.add(&b, &[(&b[..], Some(&b[..0]))]);
        assert_eq!(batch.bytes, a.len() + b.len() + 3 * WRITE_COST);
        let ops: Vec<Op<'_>> = batch.writes.iter().map(|w| w.op(&batch.segments)).collect();
        assert_eq!(
            ops,
            [
                (&b"key-a"[..], Some(&b"value-a"[..])),
                (&b"key-b"[..], None),
                (&b"key-c"[..], Some(&b""[..])),
            ]
        );
    }
}
