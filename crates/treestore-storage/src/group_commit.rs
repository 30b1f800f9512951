//! The commit queue: concurrent committers are combined into groups, and one
//! leader commits a whole group at once.
//!
//! A committer enqueues its write set and either becomes the leader (nobody
//! leads) or sleeps until its outcome is ready. The leader takes every queued
//! request and, under the commit mutex, validates them in order (first
//! committer wins; two members of one group conflict when their writes overlap,
//! because neither saw the other's), applies the accepted write sets to the
//! working tree in ONE copy-on-write pass (their keys are disjoint), and
//! appends one log record per transaction. It then hands leadership to the
//! oldest request that arrived meanwhile, so the next group is applied while
//! this one syncs, waits until its records are durable (one fdatasync shared
//! with everyone, see [`crate::wal`]), publishes the new tree, and wakes its
//! members with their results.
//!
//! Asynchronous committers ([`crate::WriteTxn::commit_async`]) use the same
//! queue but never wait in it for durability: one that finds nobody leading
//! applies what is queued itself and hands the group to the log syncer
//! ([`crate::syncer`]), which syncs and answers it; a leader handing
//! leadership on applies a queued asynchronous request itself the same way
//! (a future is never asked to lead: nothing says it will be polled again).
//! A thread waiting in the queue is still handed leadership as before.
//!
//! Compared with each committer taking the commit mutex in turn, a group of n
//! costs one root-to-leaf copy per touched leaf instead of one per commit, one
//! log lock and one mutex hand-off instead of n, and each member sleeps and
//! wakes once. A group's intermediate trees are never published: readers move
//! from the tree before the group to the tree after it.
//!
//! If applying the group fails (an I/O or corruption error reading a page), the
//! group is undone and its members are applied one by one, so only a
//! transaction that itself cannot be applied fails.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;

use crate::btree::write::Op;
use crate::db::{apply_batch, apply_ops, lock, touches, CommitInfo, DbInner, WriteSet};
use crate::error::{Error, Result};
use crate::log_record;
use crate::txn::ReadSet;
use crate::wal::Durability;

/// Where a queued request stands.
const WAITING: u8 = 0;
/// The request's thread is asked to lead the next group.
const LEAD: u8 = 1;
/// The outcome is in `result`.
const DONE: u8 = 2;

/// Who waits for a request's outcome.
enum Waiter {
    /// A thread parked in [`DbInner::commit_queued`].
    Thread(Thread),
    /// A task polling a [`crate::txn::CommitFuture`]: the waker of its last
    /// poll, if it has been polled.
    Task(Mutex<Option<Waker>>),
}

/// One committer's place in the queue.
pub(crate) struct Slot {
    state: AtomicU8,
    result: Mutex<Option<Result<CommitInfo>>>,
    waiter: Waiter,
}

impl Slot {
    fn new(waiter: Waiter) -> Arc<Slot> {
        Arc::new(Slot {
            state: AtomicU8::new(WAITING),
            result: Mutex::new(None),
            waiter,
        })
    }

    pub(crate) fn finish(&self, result: Result<CommitInfo>) {
        *lock(&self.result) = Some(result);
        self.state.store(DONE, Ordering::Release);
        match &self.waiter {
            // A leader finishing its own request is awake already (and an
            // unpark token left behind would cut a later, unrelated park
            // short).
            Waiter::Thread(thread) => {
                if thread.id() != std::thread::current().id() {
                    thread.unpark();
                }
            }
            // Taken after DONE is stored: a poll that stored its waker
            // before this sees it woken, one after sees DONE.
            Waiter::Task(waker) => {
                if let Some(waker) = lock(waker).take() {
                    waker.wake();
                }
            }
        }
    }

    /// Asks the request's thread to lead; `false` (and nothing done) for a
    /// task's request.
    fn lead(&self) -> bool {
        match &self.waiter {
            Waiter::Thread(thread) => {
                self.state.store(LEAD, Ordering::Release);
                thread.unpark();
                true
            }
            Waiter::Task(_) => false,
        }
    }

    fn take_result(&self) -> Result<CommitInfo> {
        lock(&self.result)
            .take()
            .unwrap_or_else(|| Err(Error::Poisoned("commit finished without a result".into())))
    }

    /// The outcome of a task's request once it is ready; otherwise the task's
    /// waker is kept for [`Slot::finish`] to wake.
    pub(crate) fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<CommitInfo>> {
        if self.state.load(Ordering::Acquire) == DONE {
            return Poll::Ready(self.take_result());
        }
        if let Waiter::Task(waker) = &self.waiter {
            let mut kept = lock(waker);
            match &mut *kept {
                Some(w) if w.will_wake(cx.waker()) => {}
                other => *other = Some(cx.waker().clone()),
            }
        }
        // Checked again after the waker is stored (see `finish`).
        if self.state.load(Ordering::Acquire) == DONE {
            return Poll::Ready(self.take_result());
        }
        Poll::Pending
    }
}

/// A transaction waiting to be committed.
struct Request {
    base: u64,
    writes: WriteSet,
    reads: Option<ReadSet>,
    slot: Arc<Slot>,
}

/// The queue of requests and whether someone leads.
#[derive(Default)]
pub(crate) struct CommitQueue {
    pending: Vec<Request>,
    leading: bool,
}

/// An accepted member of a group.
pub(crate) struct Member {
    pub(crate) seq: u64,
    writes: Arc<WriteSet>,
    slot: Arc<Slot>,
}

impl Member {
    /// Answers the member with its sequence number.
    pub(crate) fn succeed(self) {
        self.slot.finish(Ok(CommitInfo { seq: self.seq }));
    }
}

impl DbInner {
    /// Commits a non-empty write set through the queue; returns once it is
    /// durable (in sync mode) and visible, or failed.
    pub(crate) fn commit_queued(
        &self,
        base: u64,
        writes: WriteSet,
        reads: Option<ReadSet>,
    ) -> Result<CommitInfo> {
        let slot = Slot::new(Waiter::Thread(std::thread::current()));
        let lead_now = {
            let mut q = lock(&self.queue);
            q.pending.push(Request {
                base,
                writes,
                reads,
                slot: slot.clone(),
            });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead_now {
            self.lead_group();
        }
        loop {
            match slot.state.load(Ordering::Acquire) {
                DONE => return slot.take_result(),
                LEAD => {
                    slot.state.store(WAITING, Ordering::Release);
                    self.lead_group();
                }
                // Spurious wake-ups are fine: the state is checked again.
                _ => std::thread::park(),
            }
        }
    }

    /// Queues a non-empty write set for an asynchronous committer and returns
    /// its slot at once: applied by now if nobody was leading (this call led),
    /// otherwise by the current leader; answered once durable.
    pub(crate) fn commit_queued_async(
        &self,
        base: u64,
        writes: WriteSet,
        reads: Option<ReadSet>,
    ) -> Arc<Slot> {
        let slot = Slot::new(Waiter::Task(Mutex::new(None)));
        let lead_now = {
            let mut q = lock(&self.queue);
            q.pending.push(Request {
                base,
                writes,
                reads,
                slot: slot.clone(),
            });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead_now {
            self.pass_leadership();
        }
        slot
    }

    /// Commits every queued request as one group, passes leadership on, then
    /// waits for durability and reports each member's outcome.
    fn lead_group(&self) {
        let requests = std::mem::take(&mut lock(&self.queue).pending);
        let mut guard = Leading {
            db: self,
            slots: requests.iter().map(|r| r.slot.clone()).collect(),
            handed_off: false,
        };
        let (members, last_lsn) = self.apply_group(requests);
        // Whoever queued meanwhile leads the next group while this one syncs.
        self.pass_leadership();
        guard.handed_off = true;
        if members.is_empty() {
            return;
        }
        let durable = match (self.durability, last_lsn) {
            (Durability::Sync, Some(lsn)) => self.wal.wait_durable_gathering(lsn).map(|()| {
                self.publish_durable();
            }),
            _ => Ok(()),
        };
        match durable {
            Ok(()) => members.into_iter().for_each(Member::succeed),
            Err(e) => {
                lock(&self.commit)
                    .poisoned
                    .get_or_insert_with(|| e.to_string());
                fail_all(members, e);
            }
        }
    }

    /// Makes the oldest queued request the next leader if a thread waits on
    /// it. Requests queued before it by asynchronous committers are applied
    /// here, group after group, and handed to the syncer; once the queue is
    /// empty, nobody leads.
    fn pass_leadership(&self) {
        loop {
            let requests = {
                let mut q = lock(&self.queue);
                match q.pending.first() {
                    None => {
                        q.leading = false;
                        return;
                    }
                    Some(next) if next.slot.lead() => return,
                    Some(_) => std::mem::take(&mut q.pending),
                }
            };
            let mut guard = Leading {
                db: self,
                slots: requests.iter().map(|r| r.slot.clone()).collect(),
                handed_off: false,
            };
            let (members, last_lsn) = self.apply_group(requests);
            match (self.durability, last_lsn) {
                (Durability::Sync, Some(lsn)) => self.syncer.hand_over(self, lsn, members),
                _ => members.into_iter().for_each(Member::succeed),
            }
            guard.handed_off = true;
        }
    }

    /// Validates, applies and logs a group under the commit mutex. Rejected
    /// requests are answered at once; returns the accepted members and the LSN
    /// just past their last record (`None` when nothing was logged).
    fn apply_group(&self, requests: Vec<Request>) -> (Vec<Member>, Option<u64>) {
        let mut guard = lock(&self.commit);
        let st = &mut *guard;
        let mut accepted: Vec<Request> = Vec::with_capacity(requests.len());
        for r in requests {
            #[cfg(test)]
            if r.writes.contains_key(tests::PANIC_KEY) {
                panic!("injected panic in a commit leader");
            }
            if let Some(why) = &st.poisoned {
                r.slot.finish(Err(Error::Poisoned(why.clone())));
                continue;
            }
            // Earlier members of the group are commits this one did not see.
            let reads = r.reads.as_ref();
            let conflict = st.conflicts(r.base, &r.writes, reads)
                || accepted
                    .iter()
                    .any(|a| touches(&a.writes, &r.writes, reads));
            if conflict {
                r.slot.finish(Err(Error::Conflict));
            } else {
                accepted.push(r);
            }
        }
        if accepted.is_empty() {
            return (Vec::new(), None);
        }
        self.release_pages(st);
        let first_seq = st.seq + 1;
        let last_seq = st.seq + accepted.len() as u64;
        let applied = if accepted.len() == 1 {
            apply_batch(&self.pager, st, last_seq, &accepted[0].writes)
        } else {
            // Disjoint sorted runs: the stable sort merges them in linear time
            // per run.
            let mut ops: Vec<Op<'_>> = accepted
                .iter()
                .flat_map(|r| r.writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
                .collect();
            ops.sort_by(|a, b| a.0.cmp(b.0));
            apply_ops(&self.pager, st, last_seq, &ops)
        };
        if applied.is_err() {
            // Undone already; apply the members one at a time so only those
            // that cannot be applied fail.
            let mut ok = Vec::with_capacity(accepted.len());
            for r in accepted {
                match apply_batch(&self.pager, st, first_seq + ok.len() as u64, &r.writes) {
                    Ok(()) => ok.push(r),
                    Err(e) => r.slot.finish(Err(e)),
                }
            }
            accepted = ok;
            if accepted.is_empty() {
                return (Vec::new(), None);
            }
        }
        // From here on the working tree holds the group: if it cannot be
        // logged, the in-memory state is ahead of the disk for good.
        let members: Vec<Member> = accepted
            .into_iter()
            .enumerate()
            .map(|(i, r)| Member {
                seq: first_seq + i as u64,
                writes: Arc::new(r.writes),
                slot: r.slot,
            })
            .collect();
        let lsn = match self.wal.append_with(members.len(), |i, out| {
            log_record::encode_commit(members[i].seq, &members[i].writes, out)
        }) {
            Ok(lsn) => lsn,
            Err(e) => {
                st.poisoned = Some(e.to_string());
                fail_all(members, e);
                return (Vec::new(), None);
            }
        };
        for m in &members {
            self.watches.note(m.seq, &m.writes);
        }
        let seq = first_seq + members.len() as u64 - 1;
        st.seq = seq;
        st.last_lsn = lsn;
        for m in &members {
            st.recent.push_back((m.seq, m.writes.clone()));
        }
        self.forget_old_writes(st);
        self.stage_snapshot(st, lsn);
        (members, Some(lsn))
    }
}

/// Answers every member with the failure `e` that made the handle unusable:
/// the first gets `e` itself, the others `Poisoned` with its message.
pub(crate) fn fail_all(members: Vec<Member>, e: Error) {
    let why = e.to_string();
    let mut first = Some(e);
    for m in members {
        let err = first.take().unwrap_or_else(|| Error::Poisoned(why.clone()));
        m.slot.finish(Err(err));
    }
}

/// The leader's duty while it leads: if it panics (an engine bug), every
/// request it took is answered (`Poisoned`), leadership passes on so later
/// committers are not left waiting for a leader that is gone, and the handle
/// is poisoned, since the working tree may be half-changed.
struct Leading<'a> {
    db: &'a DbInner,
    slots: Vec<Arc<Slot>>,
    handed_off: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let why = "a commit panicked; reopen the database";
        lock(&self.db.commit)
            .poisoned
            .get_or_insert_with(|| why.to_string());
        for slot in &self.slots {
            if slot.state.load(Ordering::Acquire) != DONE {
                slot.finish(Err(Error::Poisoned(why.to_string())));
            }
        }
        if !self.handed_off {
            self.db.pass_leadership();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, Options};
    use crate::fault::FaultVfs;
    use crate::vfs::Vfs;
    use std::path::Path;

    const DIR: &str = "/db";
    /// A write of this key makes the leader panic (tests only).
    pub(super) const PANIC_KEY: &[u8] = b"panic in the leader";

    fn options(vfs: &FaultVfs) -> Options {
        Options {
            vfs: Arc::new(vfs.clone()),
            // Small enough that reopening leaves every leaf on disk only.
            cache_bytes: 64 << 10,
            background: false,
            ..Options::default()
        }
    }

    fn request(db: &Db, key: &str, value: &str) -> (Request, Arc<Slot>) {
        let slot = Slot::new(Waiter::Thread(std::thread::current()));
        let mut writes = WriteSet::new();
        writes.insert(key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()));
        let base = db.inner.snapshots.lock().unwrap().current.seq;
        let r = Request {
            base,
            writes,
            reads: None,
            slot: slot.clone(),
        };
        (r, slot)
    }

    fn outcome(slot: &Slot) -> Option<Result<CommitInfo>> {
        lock(&slot.result).take()
    }

    /// Flips a byte inside the page of the data file that holds `needle`.
    fn corrupt_page_holding(vfs: &FaultVfs, needle: &[u8]) {
        let path = Path::new(DIR).join(crate::db::DATA_FILE);
        let file = vfs.open(&path, false).unwrap();
        let mut data = vec![0u8; file.len().unwrap() as usize];
        file.read_exact_at(&mut data, 0).unwrap();
        let at = data
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("key on disk");
        vfs.corrupt_byte(&path, (at + needle.len()) as u64, 0x40);
    }

    #[test]
    fn a_group_commits_its_members_in_order_and_rejects_overlapping_writes() {
        let vfs = FaultVfs::new();
        let db = Db::open(DIR, options(&vfs)).unwrap();
        let (a, sa) = request(&db, "k1", "first");
        let (b, sb) = request(&db, "k2", "second");
        let (c, sc) = request(&db, "k1", "loser");
        let (members, lsn) = db.inner.apply_group(vec![a, b, c]);
        assert_eq!(members.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(matches!(outcome(&sc), Some(Err(Error::Conflict))));
        assert!(outcome(&sa).is_none() && outcome(&sb).is_none());
        db.inner.wal.wait_durable(lsn.unwrap()).unwrap();
        db.inner.publish_durable();
        let txn = db.begin_read();
        assert_eq!(txn.get(b"k1").unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(txn.get(b"k2").unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(db.stats().unwrap().commit_seq, 2);
    }

    #[test]
    fn a_queue_headed_by_an_async_request_is_applied_by_the_leader_handing_over() {
        let vfs = FaultVfs::new();
        let db = Db::open(DIR, options(&vfs)).unwrap();
        let (sync_req, sync_slot) = request(&db, "k2", "thread");
        let (mut async_req, _) = request(&db, "k1", "task");
        let task_slot = Slot::new(Waiter::Task(Mutex::new(None)));
        async_req.slot = task_slot.clone();
        {
            // As if a leader were busy while a task and then a thread queued.
            // (A task is never asked to lead: it may never be polled again.)
            let mut q = lock(&db.inner.queue);
            q.pending.push(async_req);
            q.pending.push(sync_req);
            q.leading = true;
        }
        db.inner.pass_leadership();
        // Nobody was asked to lead: the whole queue was applied here as one
        // group and handed to the syncer, which answers both.
        assert_ne!(sync_slot.state.load(Ordering::Acquire), LEAD);
        assert!(lock(&db.inner.queue).pending.is_empty());
        assert!(!lock(&db.inner.queue).leading);
        assert_eq!(db.stats().unwrap().commit_seq, 2);
        let info = crate::txn::CommitFuture::queued(task_slot).wait().unwrap();
        assert_eq!(info.seq, 1);
        let info = crate::txn::CommitFuture::queued(sync_slot).wait().unwrap();
        assert_eq!(info.seq, 2);
        assert_eq!(db.get(b"k1").unwrap().as_deref(), Some(&b"task"[..]));
        assert_eq!(db.get(b"k2").unwrap().as_deref(), Some(&b"thread"[..]));
    }

    #[test]
    fn a_member_that_cannot_be_applied_fails_alone() {
        let vfs = FaultVfs::new();
        let db = Db::open(DIR, options(&vfs)).unwrap();
        let mut txn = db.begin_write();
        for i in 0..3000u32 {
            txn.put(format!("key{i:05}").as_bytes(), &[b'v'; 100])
                .unwrap();
        }
        txn.commit().unwrap();
        db.close().unwrap();
        corrupt_page_holding(&vfs, b"key02500");
        let db = Db::open(DIR, options(&vfs)).unwrap();
        let (a, sa) = request(&db, "key00010", "new a");
        let (b, sb) = request(&db, "key02500", "new b");
        let (c, sc) = request(&db, "key01000", "new c");
        let (members, lsn) = db.inner.apply_group(vec![a, b, c]);
        // The corrupt leaf fails only the member that needs it.
        assert!(
            matches!(outcome(&sb), Some(Err(Error::CorruptPage { .. }))),
            "the member writing into the corrupt leaf fails"
        );
        assert_eq!(members.len(), 2);
        assert!(outcome(&sa).is_none() && outcome(&sc).is_none());
        db.inner.wal.wait_durable(lsn.unwrap()).unwrap();
        db.inner.publish_durable();
        let txn = db.begin_read();
        assert_eq!(
            txn.get(b"key00010").unwrap().as_deref(),
            Some(&b"new a"[..])
        );
        assert_eq!(
            txn.get(b"key01000").unwrap().as_deref(),
            Some(&b"new c"[..])
        );
    }

    #[test]
    fn a_panicking_leader_answers_its_group_and_leaves_the_queue_usable() {
        let vfs = FaultVfs::new();
        let db = Db::open(DIR, options(&vfs)).unwrap();
        let key = std::str::from_utf8(PANIC_KEY).unwrap();
        let (a, sa) = request(&db, key, "boom");
        let (b, sb) = request(&db, "k2", "fine");
        {
            let mut q = lock(&db.inner.queue);
            q.pending.push(a);
            q.pending.push(b);
            q.leading = true;
        }
        let led = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.inner.lead_group()));
        assert!(
            led.is_err(),
            "the injected panic reaches the leader's caller"
        );
        assert!(matches!(outcome(&sa), Some(Err(Error::Poisoned(_)))));
        assert!(matches!(outcome(&sb), Some(Err(Error::Poisoned(_)))));
        assert!(!lock(&db.inner.queue).leading, "nobody is left leading");
        // A later commit leads itself and is refused, instead of waiting for
        // a leader that is gone.
        assert!(matches!(db.put(b"k3", b"later"), Err(Error::Poisoned(_))));
    }
}
