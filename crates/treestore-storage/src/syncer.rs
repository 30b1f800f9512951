//! The log syncer: makes the groups of asynchronous committers durable.
//!
//! A synchronous committer's group is synced by its leader, which then wakes
//! the members. Asynchronous committers ([`crate::WriteTxn::commit_async`])
//! must not block, so whoever applies their group hands it here with the LSN
//! just past its records. One thread per database takes every group handed
//! over, syncs the log up to the last of them (one fdatasync for all, shared
//! with synchronous leaders through [`crate::wal`]), publishes the new tree
//! and answers the members, waking their tasks. A failed sync poisons the
//! database and fails the members, as it does a leader's group.
//!
//! The thread starts with the database ([`crate::Db::open`], sync durability
//! only) and stops when the last [`crate::Db`] handle is dropped, after
//! answering every group handed to it. A group handed over once it has
//! stopped (a transaction committed after the last handle was dropped) is
//! synced by the caller instead.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::db::{lock, DbInner};
use crate::group_commit::{fail_all, Member};

/// Groups waiting for the syncer.
#[derive(Default)]
struct Queue {
    /// Each group with the LSN just past its last record.
    groups: Vec<(u64, Vec<Member>)>,
    /// The thread is running (set at start, cleared when it stops).
    running: bool,
    /// The thread is asleep waiting for a group.
    idle: bool,
    /// The thread should stop once the queue is empty.
    stop: bool,
}

/// The syncer's queue, owned by the database.
#[derive(Default)]
pub(crate) struct Syncer {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Syncer {
    /// Hands an applied group over to be synced and answered.
    pub(crate) fn hand_over(&self, db: &DbInner, lsn: u64, members: Vec<Member>) {
        {
            let mut q = lock(&self.queue);
            if q.running {
                q.groups.push((lsn, members));
                if q.idle {
                    self.wake.notify_one();
                }
                return;
            }
        }
        sync_and_answer(db, lsn, vec![members]);
    }
}

/// Syncs the log up to `lsn`, publishes the tree and answers the groups.
fn sync_and_answer(db: &DbInner, lsn: u64, groups: Vec<Vec<Member>>) {
    match db.wal.wait_durable_gathering(lsn) {
        Ok(()) => {
            db.publish_durable();
            groups.into_iter().flatten().for_each(Member::succeed);
        }
        Err(e) => {
            lock(&db.commit)
                .poisoned
                .get_or_insert_with(|| e.to_string());
            // As a leader answers its group: the first member gets the error,
            // the others `Poisoned` with its message.
            fail_all(groups.into_iter().flatten().collect(), e);
        }
    }
}

/// The running syncer thread; dropping it stops the thread after it has
/// answered every group handed to it.
pub(crate) struct SyncerThread {
    db: Arc<DbInner>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl SyncerThread {
    /// Starts the thread, or returns `None` when it could not be spawned
    /// (groups are then synced by whoever hands them over).
    pub(crate) fn start(db: &Arc<DbInner>) -> Option<SyncerThread> {
        lock(&db.syncer.queue).running = true;
        let runner = db.clone();
        let spawned = std::thread::Builder::new()
            .name("treestore-syncer".into())
            .spawn(move || run(&runner));
        match spawned {
            Ok(handle) => Some(SyncerThread {
                db: db.clone(),
                handle: Mutex::new(Some(handle)),
            }),
            Err(_) => {
                lock(&db.syncer.queue).running = false;
                None
            }
        }
    }
}

fn run(db: &DbInner) {
    let syncer = &db.syncer;
    let _stopping = Stopping(db);
    loop {
        let groups = {
            let mut q = lock(&syncer.queue);
            while q.groups.is_empty() {
                if q.stop {
                    q.running = false;
                    return;
                }
                q.idle = true;
                q = syncer.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle = false;
            }
            std::mem::take(&mut q.groups)
        };
        let lsn = groups.iter().map(|(lsn, _)| *lsn).max().unwrap_or(0);
        sync_and_answer(db, lsn, groups.into_iter().map(|(_, g)| g).collect());
    }
}

/// Should the thread panic (an engine bug), later groups are synced by
/// whoever hands them over, and those it holds are answered `Poisoned`.
struct Stopping<'a>(&'a DbInner);

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        let groups = {
            let mut q = lock(&self.0.syncer.queue);
            q.running = false;
            std::mem::take(&mut q.groups)
        };
        if !groups.is_empty() {
            let why = "the log syncer stopped; reopen the database".to_string();
            fail_all(
                groups.into_iter().flat_map(|(_, g)| g).collect(),
                crate::error::Error::Poisoned(why),
            );
        }
    }
}

impl Drop for SyncerThread {
    fn drop(&mut self) {
        {
            let mut q = lock(&self.db.syncer.queue);
            q.stop = true;
            self.db.syncer.wake.notify_one();
        }
        if let Some(handle) = lock(&self.handle).take() {
            let _ = handle.join();
        }
        // Should the thread have died, nobody may hand it groups any more.
        lock(&self.db.syncer.queue).running = false;
    }
}
