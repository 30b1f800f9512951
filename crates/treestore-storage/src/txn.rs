//! Transactions: read snapshots and buffered write transactions.
//!
//! A [`ReadTxn`] pins one committed tree version for its whole life: every read
//! sees exactly that version. A [`WriteTxn`] reads the same way, keeps its own
//! changes in an ordered buffer (reads see them), and hands the buffer to the
//! commit path at [`WriteTxn::commit`] (or [`WriteTxn::commit_async`], whose
//! [`CommitFuture`] resolves once the commit is durable). Dropping a write transaction without
//! committing discards the buffer and leaves no trace.
//!
//! A serializable write transaction also records what it read: each key it got
//! and each range it scanned (the whole requested range, however far the scan
//! went). Commit fails with a conflict when a transaction that committed after
//! its snapshot wrote into that read set, which rules out write skew.

use std::collections::{btree_map, BTreeSet};
use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::btree::cursor::{prefix_bounds, RangeIter};
use crate::btree::{self, TreeRoot};
use crate::db::{sort_last_wins, CommitInfo, DbInner, Snapshot, WriteSet, MAX_VALUE_LEN};
use crate::error::{Error, Result};
use crate::group_commit::Slot;

/// True when no key can lie within the bounds.
fn bounds_empty(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A key range as (lower, upper) bounds.
type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// What a serializable transaction read.
#[derive(Debug, Default)]
pub(crate) struct ReadSet {
    keys: BTreeSet<Vec<u8>>,
    ranges: Vec<KeyRange>,
}

impl ReadSet {
    /// Whether any key written in `writes` was read (or lies in a scanned range).
    pub(crate) fn touched_by(&self, writes: &WriteSet) -> bool {
        writes.keys().any(|k| {
            self.keys.contains(k)
                || self.ranges.iter().any(|(lo, hi)| {
                    (
                        lo.as_ref().map(Vec::as_slice),
                        hi.as_ref().map(Vec::as_slice),
                    )
                        .contains(k.as_slice())
                })
        })
    }
}

/// A registered snapshot; unregistered when dropped.
struct SnapshotHandle {
    db: Arc<DbInner>,
    snap: Arc<Snapshot>,
    writer: bool,
}

impl Drop for SnapshotHandle {
    fn drop(&mut self) {
        self.db.unregister(self.snap.seq, self.writer);
    }
}

impl SnapshotHandle {
    fn tree(&self) -> TreeRoot {
        self.snap.tree
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        btree::get(self.db.pager(), self.tree(), key)
    }
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        btree::get_with(self.db.pager(), self.tree(), key, f)
    }
    fn get_pieces_with<R>(&self, key: &[u8], f: impl FnOnce(&[&[u8]]) -> R) -> Result<Option<R>> {
        btree::get_pieces_with(self.db.pager(), self.tree(), key, f)
    }
    fn range(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, reverse: bool) -> RangeIter<'_> {
        RangeIter::new(self.db.pager(), self.tree(), lower, upper, reverse)
    }
}

/// A read-only transaction on a consistent snapshot.
pub struct ReadTxn {
    handle: SnapshotHandle,
}

impl ReadTxn {
    pub(crate) fn new(db: Arc<DbInner>, snap: Arc<Snapshot>) -> Self {
        ReadTxn {
            handle: SnapshotHandle {
                db,
                snap,
                writer: false,
            },
        }
    }

    /// Commit sequence number of the snapshot.
    pub fn seq(&self) -> u64 {
        self.handle.snap.seq
    }

    /// Number of entries in the snapshot.
    pub fn len(&self) -> u64 {
        self.handle.snap.entries
    }

    /// Whether the snapshot holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.handle.get(key)
    }

    /// Looks up `key` and passes its value to `f` without copying it.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        self.handle.get_with(key, f)
    }

    /// Looks up `key` and passes its value to `f` as pieces whose
    /// concatenation is the value (see
    /// [`for_each_in_pieces`](Self::for_each_in_pieces)).
    pub fn get_pieces_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[&[u8]]) -> R,
    ) -> Result<Option<R>> {
        self.handle.get_pieces_with(key, f)
    }

    /// Entries with `lower <= key < upper` (per the bounds), in key order.
    pub fn range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Iter<'_> {
        Iter::Tree(self.handle.range(owned(lower), owned(upper), false))
    }

    /// The same entries as [`range`](Self::range), last key first.
    pub fn range_rev(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Iter<'_> {
        Iter::Tree(self.handle.range(owned(lower), owned(upper), true))
    }

    /// Calls `f` with the last entry of [`range`](Self::range) (the greatest
    /// key within the bounds), borrowed from its page; `None` when the range
    /// is empty. With an inclusive upper bound this is "the entry at or just
    /// before a key", as a block index needs.
    pub fn last_in_with<R>(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        f: impl FnOnce(&[u8], &[u8]) -> R,
    ) -> Result<Option<R>> {
        let mut it = self.handle.range(owned(lower), owned(upper), true);
        it.next_with(&mut Vec::new(), f)
    }

    /// Calls `f` with each entry of [`range`](Self::range) in key order,
    /// borrowing keys and values from the pages instead of copying each into
    /// new buffers (values in overflow chains are assembled in one buffer
    /// reused for every entry). `f` returns whether to go on; its error (or
    /// the engine's, converted) ends the scan and is returned.
    pub fn for_each_in<E: From<Error>>(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        self.for_each_between(owned(lower), owned(upper), f)
    }

    /// As [`for_each_in`](Self::for_each_in), but each value is handed over
    /// as pieces whose concatenation is the value: a value in an overflow
    /// chain comes as the payloads of its pages, borrowed from the buffer
    /// pool and not copied into one buffer first (an inline value is one
    /// piece). For a caller that copies the value's bytes on anyway, such
    /// as a decoder building strings.
    pub fn for_each_in_pieces<E: From<Error>>(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        f: impl FnMut(&[u8], &[&[u8]]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        self.for_each_between_pieces(owned(lower), owned(upper), f)
    }

    /// [`for_each_in_pieces`](Self::for_each_in_pieces) over the keys
    /// starting with `prefix`.
    pub fn for_each_prefix_pieces<E: From<Error>>(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &[&[u8]]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        let (lower, upper) = prefix_bounds(prefix);
        self.for_each_between_pieces(lower, upper, f)
    }

    fn for_each_between_pieces<E: From<Error>>(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        mut f: impl FnMut(&[u8], &[&[u8]]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        let mut it = self.handle.range(lower, upper, false);
        let mut scratch = Vec::new();
        while let Some(go_on) = it.next_with_pieces(&mut scratch, &mut f)? {
            if !go_on? {
                break;
            }
        }
        Ok(())
    }

    /// [`for_each_in`](Self::for_each_in) over the keys starting with `prefix`.
    pub fn for_each_prefix<E: From<Error>>(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        let (lower, upper) = prefix_bounds(prefix);
        self.for_each_between(lower, upper, f)
    }

    /// [`for_each_prefix`](Self::for_each_prefix) for several prefixes, in
    /// the order given, with `f` told which prefix (its index) each entry
    /// is under; `f` returning false ends the whole scan. One cursor serves
    /// them all: for sorted prefixes each seek re-reads only the levels of
    /// the tree below the deepest node covering both positions.
    pub fn for_each_in_prefixes<E: From<Error>>(
        &self,
        prefixes: &[Vec<u8>],
        mut f: impl FnMut(usize, &[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        let Some(first) = prefixes.first() else {
            return Ok(());
        };
        let (lower, upper) = prefix_bounds(first);
        let mut it = self.handle.range(lower, upper, false);
        let mut scratch = Vec::new();
        for (i, prefix) in prefixes.iter().enumerate() {
            if i > 0 {
                it.seek(prefix, prefix_bounds(prefix).1)?;
            }
            while let Some(go_on) = it.next_with(&mut scratch, |k, v| f(i, k, v))? {
                if !go_on? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn for_each_between<E: From<Error>>(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        let mut it = self.handle.range(lower, upper, false);
        let mut scratch = Vec::new();
        while let Some(go_on) = it.next_with(&mut scratch, &mut f)? {
            if !go_on? {
                break;
            }
        }
        Ok(())
    }

    /// Entries whose key starts with `prefix`, in key order (or reversed).
    pub fn prefix(&self, prefix: &[u8], reverse: bool) -> Iter<'_> {
        let (lower, upper) = prefix_bounds(prefix);
        Iter::Tree(self.handle.range(lower, upper, reverse))
    }

    /// Every entry in key order.
    pub fn iter(&self) -> Iter<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

/// A read-write transaction. Changes are buffered until [`commit`](Self::commit).
pub struct WriteTxn {
    handle: SnapshotHandle,
    writes: WriteSet,
    /// Present in serializable mode.
    reads: Option<Mutex<ReadSet>>,
}

/// A value may be stored if it is at most [`MAX_VALUE_LEN`] bytes.
fn check_value(value: &[u8]) -> Result<()> {
    if value.len() as u64 > MAX_VALUE_LEN {
        return Err(Error::ValueTooLarge {
            len: value.len() as u64,
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// [`WriteTxn::put_all`] merges its pairs by rebuilding the write set when
/// they are at least 1/`APPEND_RATIO` of it, and inserts them one by one
/// otherwise.
const APPEND_RATIO: usize = 8;

impl WriteTxn {
    pub(crate) fn new(db: Arc<DbInner>, snap: Arc<Snapshot>, serializable: bool) -> Self {
        WriteTxn {
            handle: SnapshotHandle {
                db,
                snap,
                writer: true,
            },
            writes: WriteSet::new(),
            reads: serializable.then(|| Mutex::new(ReadSet::default())),
        }
    }

    /// Whether this transaction validates its reads at commit.
    pub fn is_serializable(&self) -> bool {
        self.reads.is_some()
    }

    fn note_key(&self, key: &[u8]) {
        if let Some(r) = &self.reads {
            r.lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys
                .insert(key.to_vec());
        }
    }

    fn note_range(&self, lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) {
        if let Some(r) = &self.reads {
            r.lock()
                .unwrap_or_else(|p| p.into_inner())
                .ranges
                .push((lower.clone(), upper.clone()));
        }
    }

    /// Commit sequence number of the snapshot this transaction reads.
    pub fn snapshot_seq(&self) -> u64 {
        self.handle.snap.seq
    }

    /// Number of keys written (put or deleted) so far.
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.handle.db.max_key_len();
        if key.is_empty() || key.len() > max {
            return Err(Error::InvalidKey {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    /// Reads a key, seeing this transaction's own changes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => {
                self.note_key(key);
                self.handle.get(key)
            }
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        check_value(value)?;
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    /// Sets many keys at once, taking ownership of them: like calling
    /// [`put`](Self::put) for each pair in order (a later pair for the same
    /// key wins), but the pairs are sorted and merged into the transaction's
    /// writes in one pass instead of one tree insertion each, which matters for
    /// a document's tens of thousands of index entries. Nothing is written if
    /// any pair is invalid.
    pub fn put_all(&mut self, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<()> {
        let mut sorted: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for (key, value) in pairs {
            self.check_key(&key)?;
            check_value(&value)?;
            sorted.push((key, Some(value)));
        }
        sort_last_wins(&mut sorted);
        // A sorted run builds the map in one pass; `append` merges it in
        // time linear in both maps (its values replacing earlier writes of
        // the same keys), so it is used only when the new pairs are not few
        // against what the transaction already holds: a batch storing many
        // small documents would otherwise rebuild its writes once for each.
        if sorted.len().saturating_mul(APPEND_RATIO) >= self.writes.len() {
            let mut new: WriteSet = sorted.into_iter().collect();
            self.writes.append(&mut new);
        } else {
            self.writes.extend(sorted);
        }
        Ok(())
    }

    /// Removes `key` (no error if it is absent).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }

    /// Entries in bounds, merged with this transaction's changes, in key order.
    pub fn range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Iter<'_> {
        self.merged(owned(lower), owned(upper), false)
    }

    /// As [`range`](Self::range), last key first.
    pub fn range_rev(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Iter<'_> {
        self.merged(owned(lower), owned(upper), true)
    }

    /// Entries whose key starts with `prefix`, with this transaction's changes.
    pub fn prefix(&self, prefix: &[u8], reverse: bool) -> Iter<'_> {
        let (lower, upper) = prefix_bounds(prefix);
        self.merged(lower, upper, reverse)
    }

    /// Every entry, with this transaction's changes.
    pub fn iter(&self) -> Iter<'_> {
        self.merged(Bound::Unbounded, Bound::Unbounded, false)
    }

    fn merged(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>, reverse: bool) -> Iter<'_> {
        self.note_range(&lower, &upper);
        let overlay = if bounds_empty(&lower, &upper) {
            None
        } else {
            let b = (
                lower.as_ref().map(|k| k.as_slice()),
                upper.as_ref().map(|k| k.as_slice()),
            );
            Some(self.writes.range::<[u8], _>(b))
        };
        Iter::Merged(MergeIter {
            base: self.handle.range(lower, upper, reverse),
            base_head: None,
            overlay,
            overlay_head: None,
            reverse,
        })
    }

    /// Makes the changes durable and visible atomically. Fails with
    /// [`Error::Conflict`] when a transaction that committed after this one began
    /// wrote one of the same keys.
    pub fn commit(mut self) -> Result<CommitInfo> {
        let writes = std::mem::take(&mut self.writes);
        let reads = self
            .reads
            .take()
            .map(|r| r.into_inner().unwrap_or_else(|p| p.into_inner()));
        self.handle.db.commit(self.handle.snap.seq, writes, reads)
    }

    /// [`WriteTxn::commit`] for callers that must not block on the log sync
    /// (an async server's tasks): the transaction is validated and applied
    /// to the working tree now, and the returned future resolves once it is
    /// durable and visible, with the same outcome `commit` would return. A
    /// conflict resolves at once. Concurrent asynchronous commits share
    /// syncs as threads do ([`crate::group_commit`], [`crate::syncer`]).
    ///
    /// Dropping the future does not cancel the commit: it still becomes
    /// durable (or fails) as if awaited. A transaction whose log record
    /// would exceed [`crate::Options::large_txn_bytes`] is made durable by a
    /// checkpoint within this call.
    pub fn commit_async(mut self) -> CommitFuture {
        let writes = std::mem::take(&mut self.writes);
        let reads = self
            .reads
            .take()
            .map(|r| r.into_inner().unwrap_or_else(|p| p.into_inner()));
        self.handle
            .db
            .commit_async(self.handle.snap.seq, writes, reads)
    }

    /// Discards the changes (same as dropping the transaction).
    pub fn rollback(self) {}
}

/// The outcome of [`WriteTxn::commit_async`]: resolves once the commit is
/// durable and visible, or failed. Dropping it does not cancel the commit.
#[must_use = "the commit is durable only once this resolves"]
pub struct CommitFuture(Pending);

enum Pending {
    /// Decided within `commit_async` (taken once polled to completion).
    Ready(Option<Result<CommitInfo>>),
    /// Waiting in the commit queue or for the log sync.
    Queued(Arc<Slot>),
}

impl CommitFuture {
    pub(crate) fn ready(result: Result<CommitInfo>) -> CommitFuture {
        CommitFuture(Pending::Ready(Some(result)))
    }

    pub(crate) fn queued(slot: Arc<Slot>) -> CommitFuture {
        CommitFuture(Pending::Queued(slot))
    }

    /// Blocks the calling thread until the commit is durable (or failed).
    pub fn wait(mut self) -> Result<CommitInfo> {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            match Pin::new(&mut self).poll(&mut cx) {
                Poll::Ready(result) => return result,
                // Spurious wake-ups are fine: polled again.
                Poll::Pending => std::thread::park(),
            }
        }
    }
}

impl std::fmt::Debug for CommitFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.0 {
            Pending::Ready(_) => "ready",
            Pending::Queued(_) => "queued",
        };
        f.debug_tuple("CommitFuture").field(&state).finish()
    }
}

impl Future for CommitFuture {
    type Output = Result<CommitInfo>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Pending::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(Error::Poisoned(
                    "commit future polled after it resolved".into(),
                ))
            })),
            Pending::Queued(slot) => slot.poll_result(cx),
        }
    }
}

/// Wakes a thread blocked in [`CommitFuture::wait`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// An iterator over `(key, value)` pairs of a transaction.
pub enum Iter<'t> {
    Tree(RangeIter<'t>),
    Merged(MergeIter<'t>),
}

impl Iterator for Iter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Tree(it) => it.next(),
            Iter::Merged(it) => it.next(),
        }
    }
}

/// Merges a snapshot scan with a write transaction's buffered changes.
pub struct MergeIter<'t> {
    base: RangeIter<'t>,
    base_head: Option<(Vec<u8>, Vec<u8>)>,
    overlay: Option<btree_map::Range<'t, Vec<u8>, Option<Vec<u8>>>>,
    overlay_head: Option<(&'t Vec<u8>, &'t Option<Vec<u8>>)>,
    reverse: bool,
}

impl MergeIter<'_> {
    fn fill(&mut self) -> Result<()> {
        if self.base_head.is_none() {
            self.base_head = self.base.next().transpose()?;
        }
        if self.overlay_head.is_none() {
            if let Some(o) = self.overlay.as_mut() {
                self.overlay_head = if self.reverse {
                    o.next_back()
                } else {
                    o.next()
                };
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        loop {
            self.fill()?;
            let take_overlay = match (&self.base_head, &self.overlay_head) {
                (None, None) => return Ok(None),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((bk, _)), Some((ok, _))) => {
                    if bk == *ok {
                        // The buffered change shadows the snapshot's entry.
                        self.base_head = None;
                        true
                    } else {
                        (ok.as_slice() < bk.as_slice()) != self.reverse
                    }
                }
            };
            if take_overlay {
                // A deletion (`None` value) is skipped.
                if let Some((k, Some(v))) = self.overlay_head.take() {
                    return Ok(Some((k.clone(), v.clone())));
                }
            } else {
                return Ok(self.base_head.take());
            }
        }
    }
}

impl Iterator for MergeIter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}
