//! Checkpoints beside commits: a checkpoint syncs the data file with the
//! commit mutex released, so commits go on meanwhile; and a power cut at any
//! point of such an interleaving loses no acknowledged commit.
//!
//! Default: 150 crash points. `TREESTORE_SCALE=N` runs N times as many.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use treestore_storage::fault::{FaultKind, FaultPlan, FaultTarget, FaultVfs, LossMode};
use treestore_storage::vfs::SyncHookVfs;
use treestore_storage::{Db, Error, DATA_FILE};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Puts = Vec<(Vec<u8>, Vec<u8>)>;

/// Holds syncs of the data file while closed, telling the test when one
/// arrives.
#[derive(Debug, Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
    arrived: Mutex<Option<mpsc::Sender<()>>>,
    /// The next sync of the data file panics.
    panic_next: std::sync::atomic::AtomicBool,
}

impl Gate {
    fn close(&self, arrived: mpsc::Sender<()>) {
        *self.arrived.lock().unwrap() = Some(arrived);
        *self.closed.lock().unwrap() = true;
    }

    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }

    fn pass(&self) {
        if self
            .panic_next
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            panic!("injected: the data file's sync panics");
        }
        let mut closed = self.closed.lock().unwrap();
        if *closed {
            if let Some(tx) = self.arrived.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
    }
}

/// A database on the simulated disk whose data-file syncs pass `gate`
/// first; returns the disk (for power cuts), the gate, the options and the
/// database at `/db`.
fn gated_db() -> (FaultVfs, Arc<Gate>, treestore_storage::Options, Db) {
    let fault = FaultVfs::new();
    let gate = Arc::new(Gate::default());
    let passing = gate.clone();
    let vfs = SyncHookVfs::new(Arc::new(fault.clone()), move |path: &Path| {
        if path.file_name().is_some_and(|n| n == DATA_FILE) {
            passing.pass();
        }
    });
    let opts = treestore_storage::Options {
        vfs: Arc::new(vfs),
        ..common::mem_options(&fault, 1024, 1 << 20)
    };
    let db = Db::open(Path::new("/db"), opts.clone()).unwrap();
    (fault, gate, opts, db)
}

fn contents(db: &Db) -> Model {
    db.begin_read()
        .iter()
        .collect::<Result<_, _>>()
        .expect("scan")
}

fn put_all(db: &Db, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Error> {
    let mut w = db.begin_write();
    for (k, v) in entries {
        w.put(k, v)?;
    }
    w.commit().map(|_| ())
}

/// While a checkpoint waits for the data file's sync, durable commits
/// complete and readers see them; the checkpoint then finishes, and the
/// state survives a crash (from that checkpoint and the log after it).
#[test]
fn commits_go_on_while_a_checkpoint_syncs_the_data_file() {
    let (fault, gate, opts, db) = gated_db();
    let dir = Path::new("/db");
    let mut model = Model::new();
    let batch = |from: u32, n: u32| -> Puts {
        (from..from + n)
            .map(|i| {
                (
                    format!("k{i:05}").into_bytes(),
                    vec![i as u8; 300 + i as usize % 900],
                )
            })
            .collect()
    };
    for chunk in 0..10 {
        let b = batch(chunk * 50, 50);
        put_all(&db, &b).unwrap();
        model.extend(b);
    }

    let (arrived_tx, arrived) = mpsc::channel();
    gate.close(arrived_tx);
    let checkpointing = {
        let db = db.clone();
        std::thread::spawn(move || db.checkpoint())
    };
    arrived
        .recv_timeout(Duration::from_secs(20))
        .expect("the checkpoint reached the data file's sync");

    // Commits made now run beside the held checkpoint.
    let (done_tx, done) = mpsc::channel();
    {
        let db = db.clone();
        let work: Vec<_> = (0..5).map(|c| batch(1000 + c * 40, 40)).collect();
        std::thread::spawn(move || {
            for b in &work {
                put_all(&db, b).unwrap();
            }
            let _ = done_tx.send(work);
        });
    }
    let committed = match done.recv_timeout(Duration::from_secs(20)) {
        Ok(w) => w,
        Err(_) => {
            gate.open();
            panic!("commits waited for the checkpoint's sync");
        }
    };
    for b in committed {
        model.extend(b);
    }
    assert_eq!(contents(&db), model, "readers see them at once");
    assert_eq!(db.stats().unwrap().checkpoints, 0, "still in progress");
    gate.open();
    checkpointing.join().unwrap().unwrap();
    assert_eq!(db.stats().unwrap().checkpoints, 1);

    // More commits and a second checkpoint; then power is cut.
    let b = batch(5000, 30);
    put_all(&db, &b).unwrap();
    model.extend(b);
    db.checkpoint().unwrap();
    let b = batch(6000, 30);
    put_all(&db, &b).unwrap();
    model.extend(b);
    assert!(db.check().unwrap().is_ok());
    drop(db);
    fault.power_loss(LossMode::DropUnsynced);
    let db = Db::open(dir, opts).unwrap();
    assert_eq!(contents(&db), model);
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A checkpoint whose data-file sync panics ends anyway: later checkpoints
/// and commits fail at once (which checkpoint is durable is unknown) instead
/// of waiting for it forever, and a reopen has every acknowledged commit.
#[test]
fn a_checkpoint_whose_sync_panics_does_not_leave_others_waiting() {
    let (_disk, gate, opts, db) = gated_db();
    let dir = Path::new("/db");
    let puts: Puts = (0..200u32)
        .map(|i| (format!("k{i:04}").into_bytes(), vec![i as u8; 700]))
        .collect();
    put_all(&db, &puts).unwrap();
    gate.panic_next
        .store(true, std::sync::atomic::Ordering::Release);
    let panicked = {
        let db = db.clone();
        std::thread::spawn(move || db.checkpoint()).join()
    };
    assert!(panicked.is_err(), "the injected panic");
    let (tx, rx) = mpsc::channel();
    let after = {
        let db = db.clone();
        std::thread::spawn(move || {
            let _ = tx.send((
                db.checkpoint(),
                put_all(&db, &[(b"later".to_vec(), b"x".to_vec())]),
            ));
        })
    };
    let (checkpointed, committed) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a checkpoint and a commit after the panic returned");
    after.join().unwrap();
    assert!(
        matches!(checkpointed, Err(Error::Poisoned(_))),
        "{checkpointed:?}"
    );
    assert!(
        matches!(committed, Err(Error::Poisoned(_))),
        "{committed:?}"
    );
    drop(db);
    let db = Db::open(dir, opts).unwrap();
    assert_eq!(contents(&db), puts.into_iter().collect::<Model>());
}

/// Keys of writer `w`.
fn key(w: usize, i: u32) -> Vec<u8> {
    format!("w{w}/{i:03}").into_bytes()
}

/// One crash point: three writers commit random transactions on their own
/// keys while a fourth thread checkpoints in a loop; the power is cut (or a
/// call fails) at a random write or sync. After the restart each writer's
/// keys hold exactly its acknowledged commits, or those and the one that
/// failed, and the check passes.
fn crash_point(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let vfs = FaultVfs::new();
    let dir = Path::new("/db");
    let page_size = if rng.random_bool(0.5) { 1024 } else { 4096 };
    let opts = common::mem_options(&vfs, page_size, 64 * 1024);
    let db = Db::open(dir, opts.clone()).unwrap();
    let kind = match rng.random_range(0..4) {
        0 => FaultKind::Eio,
        _ => FaultKind::PowerCut,
    };
    vfs.set_plan(Some(FaultPlan {
        at: rng.random_range(20..400),
        kind,
        target: FaultTarget::Any,
    }));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let db = db.clone();
            let mut rng = StdRng::seed_from_u64(seed ^ (w as u64 + 1) << 32);
            std::thread::spawn(move || {
                let mut model = Model::new();
                for _ in 0..40 {
                    let txn: Puts = (0..rng.random_range(1..12))
                        .map(|_| {
                            let len = match rng.random_range(0..10) {
                                0 => rng.random_range(2000..6000),
                                _ => rng.random_range(1..200),
                            };
                            (
                                key(w, rng.random_range(0..150)),
                                vec![rng.random::<u8>(); len],
                            )
                        })
                        .collect();
                    if let Err(e) = put_all(&db, &txn) {
                        assert!(
                            matches!(e, Error::Io { .. } | Error::Poisoned(_)),
                            "seed {seed}: unexpected error {e}"
                        );
                        return (model, Some(txn));
                    }
                    model.extend(txn);
                }
                (model, None)
            })
        })
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if db.checkpoint().is_err() {
                    break;
                }
            }
        })
    };
    let outcomes: Vec<(Model, Option<Puts>)> =
        writers.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    checkpointer.join().unwrap();
    drop(db);
    let db = common::power_cut_and_reopen(&vfs, &mut rng, dir, opts, seed);
    let got = contents(&db);
    for (w, (model, failed)) in outcomes.iter().enumerate() {
        let prefix = format!("w{w}/").into_bytes();
        let mine: Model = got
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let with_failed = failed.as_ref().map(|t| {
            let mut m = model.clone();
            m.extend(t.iter().cloned());
            m
        });
        assert!(
            &mine == model || Some(&mine) == with_failed.as_ref(),
            "seed {seed}: writer {w} recovered neither its acknowledged commits nor those plus the failed one"
        );
    }
    common::assert_sound_and_writable(&db, seed);
}

#[test]
fn acknowledged_commits_survive_power_loss_with_checkpoints_beside_them() {
    common::run_crash_points(150, 0x6368_6b70, crash_point);
}
