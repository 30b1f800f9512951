//! `WriteTxn::commit_async`: the future resolves only once the commit is
//! durable and visible, with the outcome `commit` would give; asynchronous
//! and blocking committers share groups and syncs; a failed sync fails the
//! future; a dropped future still commits.

mod common;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use treestore_storage::fault::{FaultKind, FaultPlan, FaultTarget, FaultVfs};
use treestore_storage::vfs::SyncHookVfs;
use treestore_storage::{CommitFuture, Db, Durability, Error, Options};

/// Holds every log sync while closed; counts the syncs that have started.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, u64)>,
    changed: Condvar,
}

impl Gate {
    /// The state, also after a failed test panicked holding it (the
    /// database's drop still syncs through the gate).
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, u64)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_closed(&self, closed: bool) {
        self.lock().0 = closed;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut st = self.lock();
        st.1 += 1;
        self.changed.notify_all();
        while st.0 {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn wait_for_syncs(&self, n: u64) {
        let st = self.lock();
        let (st, timeout) = self
            .changed
            .wait_timeout_while(st, Duration::from_secs(10), |st| st.1 < n)
            .unwrap_or_else(|p| p.into_inner());
        drop(st);
        assert!(!timeout.timed_out(), "no log sync started");
    }

    fn syncs(&self) -> u64 {
        self.lock().1
    }
}

/// Opens the gate when dropped: declared after the database, it lets a
/// failing test's database sync and stop instead of hanging.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.set_closed(false);
    }
}

/// A database on the fault-injecting disk whose log syncs pass `gate`.
fn gated(fault: &FaultVfs, gate: &Arc<Gate>) -> Db {
    let gate = gate.clone();
    let vfs = SyncHookVfs::new(Arc::new(fault.clone()), move |path: &Path| {
        if path.extension().is_some_and(|e| e == "wal") {
            gate.pass();
        }
    });
    let opts = Options {
        vfs: Arc::new(vfs),
        background: false,
        wal_prepare_ahead: false,
        ..common::mem_options(fault, 4096, 1 << 20)
    };
    Db::open("/db", opts).unwrap()
}

fn poll_once(fut: &mut CommitFuture) -> Poll<Result<treestore_storage::CommitInfo, Error>> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn an_async_commit_is_invisible_until_its_log_sync_and_resolves_after_it() {
    let fault = FaultVfs::new();
    let gate = Arc::new(Gate::default());
    let db = gated(&fault, &gate);
    let _open = OpenOnDrop(gate.clone());
    db.put(b"before", b"1").unwrap();
    gate.set_closed(true);
    let started = gate.syncs();
    let mut txn = db.begin_write();
    txn.put(b"k", b"v").unwrap();
    let mut fut = txn.commit_async();
    // The syncer is now held inside the log sync that would make `k` durable.
    gate.wait_for_syncs(started + 1);
    assert!(poll_once(&mut fut).is_pending(), "resolved before its sync");
    assert_eq!(db.get(b"k").unwrap(), None, "visible before durable");
    gate.set_closed(false);
    let info = fut.wait().unwrap();
    assert_eq!(info.seq, 2);
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn async_and_blocking_committers_share_syncs_and_every_commit_lands() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let fsyncs_before = db.stats().unwrap().wal.fsyncs;
    const ROUNDS: usize = 40;
    const IN_FLIGHT: usize = 16;
    std::thread::scope(|s| {
        for t in 0..3 {
            let db = &db;
            s.spawn(move || {
                for r in 0..ROUNDS {
                    let futures: Vec<CommitFuture> = (0..IN_FLIGHT)
                        .map(|i| {
                            let mut txn = db.begin_write();
                            txn.put(format!("a{t}/{r:03}/{i:02}").as_bytes(), b"x")
                                .unwrap();
                            txn.commit_async()
                        })
                        .collect();
                    for f in futures {
                        f.wait().unwrap();
                    }
                }
            });
        }
        for t in 0..2 {
            let db = &db;
            s.spawn(move || {
                for i in 0..ROUNDS * 4 {
                    db.put(format!("b{t}/{i:04}").as_bytes(), b"y").unwrap();
                }
            });
        }
    });
    let commits = (3 * ROUNDS * IN_FLIGHT + 2 * ROUNDS * 4) as u64;
    let stats = db.stats().unwrap();
    assert_eq!(stats.commit_seq, commits);
    assert_eq!(db.begin_read().len(), commits);
    let fsyncs = stats.wal.fsyncs - fsyncs_before;
    assert!(
        fsyncs < commits / 2,
        "{fsyncs} log syncs for {commits} commits: asynchronous commits did not share syncs"
    );
}

#[test]
fn a_conflict_is_the_outcome_of_the_later_async_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut first = db.begin_write();
    let mut second = db.begin_write();
    first.put(b"k", b"first").unwrap();
    second.put(b"k", b"second").unwrap();
    first.commit_async().wait().unwrap();
    assert!(matches!(second.commit_async().wait(), Err(Error::Conflict)));
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"first"[..]));
    // An empty transaction validates only, and resolves at once.
    let info = db.begin_write().commit_async().wait().unwrap();
    assert_eq!(info.seq, 1);
}

#[test]
fn a_failed_log_sync_fails_the_async_commit_and_later_commits() {
    let fault = FaultVfs::new();
    let db = Db::open("/db", common::mem_options(&fault, 4096, 1 << 20)).unwrap();
    db.put(b"before", b"1").unwrap();
    fault.set_plan(Some(FaultPlan {
        at: 0,
        kind: FaultKind::Eio,
        target: FaultTarget::Syncs,
    }));
    let mut txn = db.begin_write();
    txn.put(b"k", b"v").unwrap();
    let err = txn.commit_async().wait().unwrap_err();
    // As for a blocking commit: the log is unusable after a failed sync.
    assert!(
        matches!(err, Error::Io { .. } | Error::Poisoned(_))
            && err.to_string().contains("syncing log segment"),
        "{err}"
    );
    fault.set_plan(None);
    assert!(matches!(db.put(b"later", b"2"), Err(Error::Poisoned(_))));
    let mut txn = db.begin_write();
    txn.put(b"later", b"3").unwrap();
    assert!(matches!(txn.commit_async().wait(), Err(Error::Poisoned(_))));
}

#[test]
fn a_dropped_commit_future_still_commits() {
    let fault = FaultVfs::new();
    let gate = Arc::new(Gate::default());
    let db = gated(&fault, &gate);
    let _open = OpenOnDrop(gate.clone());
    gate.set_closed(true);
    let started = gate.syncs();
    let mut txn = db.begin_write();
    txn.put(b"dropped", b"v").unwrap();
    drop(txn.commit_async());
    gate.wait_for_syncs(started + 1);
    gate.set_closed(false);
    // A later commit's sync covers the earlier record, and its publication
    // the earlier tree.
    db.put(b"later", b"w").unwrap();
    assert_eq!(db.get(b"dropped").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_commit_after_the_last_handle_is_dropped_is_synced_by_its_caller() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut txn = db.begin_write();
    txn.put(b"k", b"v").unwrap();
    // The syncer stops with the last handle; the transaction keeps the
    // engine open.
    drop(db);
    txn.commit_async().wait().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn in_timer_mode_an_async_commit_resolves_without_a_sync() {
    let fault = FaultVfs::new();
    let gate = Arc::new(Gate::default());
    let vfs = {
        let gate = gate.clone();
        SyncHookVfs::new(Arc::new(fault.clone()), move |path: &Path| {
            if path.extension().is_some_and(|e| e == "wal") {
                gate.pass();
            }
        })
    };
    let db = Db::open(
        "/db",
        Options {
            vfs: Arc::new(vfs),
            durability: Durability::Timer {
                interval: Duration::from_secs(3600),
            },
            background: false,
            ..common::mem_options(&fault, 4096, 1 << 20)
        },
    )
    .unwrap();
    let _open = OpenOnDrop(gate.clone());
    gate.set_closed(true);
    let mut txn = db.begin_write();
    txn.put(b"k", b"v").unwrap();
    let mut fut = txn.commit_async();
    assert!(matches!(poll_once(&mut fut), Poll::Ready(Ok(_))));
    assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
