//! Simulated power loss and I/O faults: random transactional workloads run on the
//! fault-injecting disk; at a random write or sync the power is cut (the write in
//! flight may land torn, unsynced writes survive in any subset) or the call fails
//! with EIO / ENOSPC. After "reboot" the database must hold exactly the commits
//! that returned Ok, plus, for a commit that returned an error, either all of it
//! or none of it. The integrity check must pass every time.
//!
//! A third of the crash points prepare log segments ahead on a helper thread
//! (`wal_prepare_ahead`), so faults also hit the helper and rotations onto
//! prepared segments; the helper's calls interleave with the workload's, so
//! such a seed may hit its fault at a different call from run to run.
//!
//! Odd seeds commit through `commit_async` (acknowledged = the future resolved
//! Ok), so the log syncer thread makes their syncs and meets the faults.
//!
//! Default: 2,000 crash points. `TREESTORE_SCALE=N` runs N times as many.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use treestore_storage::fault::{FaultKind, FaultPlan, FaultTarget, FaultVfs};
use treestore_storage::{Db, Error};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Txn = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn random_txn(rng: &mut StdRng) -> Txn {
    let n = rng.random_range(1..40);
    (0..n)
        .map(|_| {
            let k = format!("k{:04}", rng.random_range(0..300u32)).into_bytes();
            if rng.random_bool(0.25) {
                (k, None)
            } else {
                let len = match rng.random_range(0..20) {
                    0 => rng.random_range(3000..12_000),
                    1..=4 => rng.random_range(200..1000),
                    _ => rng.random_range(0..80),
                };
                let seed: u8 = rng.random();
                (
                    k,
                    Some((0..len).map(|j| seed.wrapping_add(j as u8)).collect()),
                )
            }
        })
        .collect()
}

fn apply(model: &mut Model, txn: &Txn) {
    for (k, v) in txn {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}

/// Commits `txn`; `asynchronous` through `commit_async`, whose sync the log
/// syncer thread makes (and whose faults it meets).
fn commit(db: &Db, txn: &Txn, asynchronous: bool) -> Result<(), Error> {
    let mut w = db.begin_write();
    for (k, v) in txn {
        match v {
            Some(v) => w.put(k, v)?,
            None => w.delete(k)?,
        }
    }
    if asynchronous {
        w.commit_async().wait().map(|_| ())
    } else {
        w.commit().map(|_| ())
    }
}

fn contents(db: &Db) -> Model {
    db.begin_read()
        .iter()
        .collect::<Result<_, _>>()
        .expect("scan after recovery")
}

fn crash_point(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let vfs = FaultVfs::new();
    let dir = Path::new("/db");
    let page_size = if rng.random_bool(0.5) { 1024 } else { 4096 };
    let mut opts = common::mem_options(&vfs, page_size, 64 * 1024);
    opts.wal_prepare_ahead = rng.random_bool(1.0 / 3.0);
    let asynchronous = seed % 2 == 1;
    let db = Db::open(dir, opts.clone()).unwrap();
    let mut model = Model::new();
    for _ in 0..rng.random_range(0..8) {
        let t = random_txn(&mut rng);
        commit(&db, &t, asynchronous).unwrap();
        apply(&mut model, &t);
        if rng.random_bool(0.25) {
            db.checkpoint().unwrap();
        }
    }
    let kind = match rng.random_range(0..10) {
        0 | 1 => FaultKind::Eio,
        2 | 3 => FaultKind::NoSpace,
        _ => FaultKind::PowerCut,
    };
    let target = match rng.random_range(0..3) {
        0 => FaultTarget::Writes,
        1 => FaultTarget::Syncs,
        _ => FaultTarget::Any,
    };
    vfs.set_plan(Some(FaultPlan {
        at: rng.random_range(0..12),
        kind,
        target,
    }));
    // Commits (and sometimes checkpoints) until one fails, or a few succeed
    // without hitting the fault.
    let mut uncertain: Option<Txn> = None;
    let mut failed = false;
    for _ in 0..6 {
        let t = random_txn(&mut rng);
        if let Err(e) = commit(&db, &t, asynchronous) {
            assert!(
                matches!(e, Error::Io { .. } | Error::Poisoned(_)),
                "seed {seed}: unexpected error {e}"
            );
            uncertain = Some(t);
            failed = true;
            break;
        }
        apply(&mut model, &t);
        if rng.random_bool(0.3) {
            // A failed checkpoint must not lose or half-apply anything either.
            if let Err(e) = db.checkpoint() {
                assert!(
                    matches!(e, Error::Io { .. } | Error::Poisoned(_)),
                    "seed {seed}: unexpected error {e}"
                );
                failed = true;
                break;
            }
        }
    }
    if kind != FaultKind::PowerCut && failed {
        // A transient fault: the handle either rolled the commit back and keeps
        // working, or (when a log write or sync, or a meta page write, failed)
        // refuses further commits until reopened.
        let t = random_txn(&mut rng);
        match commit(&db, &t, asynchronous) {
            Ok(()) => {
                assert_eq!(
                    contents(&db),
                    {
                        let mut m = model.clone();
                        apply(&mut m, &t);
                        m
                    },
                    "seed {seed}: failed commit left traces"
                );
                apply(&mut model, &t);
                uncertain = None;
            }
            Err(Error::Poisoned(_)) => {}
            Err(e) => panic!("seed {seed}: commit after a transient fault failed: {e}"),
        }
    }
    drop(db);
    let db = common::power_cut_and_reopen(&vfs, &mut rng, dir, opts, seed);
    let got = contents(&db);
    let with = uncertain.as_ref().map(|t| {
        let mut m = model.clone();
        apply(&mut m, t);
        m
    });
    assert!(
        got == model || Some(&got) == with.as_ref(),
        "seed {seed}: recovered state is neither the acknowledged commits nor those plus the failed one"
    );
    common::assert_sound_and_writable(&db, seed);
}

#[test]
fn every_acknowledged_commit_survives_power_loss() {
    common::run_crash_points(2000, 0x7265_6573, crash_point);
}
