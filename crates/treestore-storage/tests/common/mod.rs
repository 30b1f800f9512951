//! Helpers shared by the storage engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use treestore_storage::fault::{FaultVfs, LossMode};
use treestore_storage::{Db, Options};

/// Number of cases for a property test: the default, or `TREESTORE_PROPTEST_CASES`.
pub fn cases(default: u32) -> u32 {
    std::env::var("TREESTORE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Scale factor for long campaigns: `TREESTORE_SCALE` (default 1).
pub fn scale() -> u64 {
    std::env::var("TREESTORE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Runs `crash_point` on `per_scale` x [`scale`] consecutive seeds from
/// `TREESTORE_SEED` (default `base`).
pub fn run_crash_points(per_scale: u64, base: u64, crash_point: impl Fn(u64)) {
    let base: u64 = std::env::var("TREESTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(base);
    for i in 0..per_scale * scale() {
        crash_point(base + i);
    }
}

/// Cuts the power of `vfs` (unsynced writes all lost, or a random subset
/// kept, one maybe torn, as `rng` picks) and reopens the database in `dir`.
pub fn power_cut_and_reopen(
    vfs: &FaultVfs,
    rng: &mut impl rand::Rng,
    dir: &std::path::Path,
    opts: Options,
    seed: u64,
) -> Db {
    let mode = if rng.random_bool(0.3) {
        LossMode::DropUnsynced
    } else {
        LossMode::RandomSubset { seed: rng.random() }
    };
    vfs.power_loss(mode);
    Db::open(dir, opts).unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"))
}

/// After a restart: the integrity check passes and the database accepts a
/// new commit.
pub fn assert_sound_and_writable(db: &Db, seed: u64) {
    let report = db.check().unwrap();
    assert!(report.is_ok(), "seed {seed}: {:?}", report.problems);
    db.put(b"after-recovery", b"ok").unwrap();
}

/// Options on a simulated disk: no background thread (tests checkpoint
/// explicitly, at random points) and small log segments so rotation and segment
/// removal happen often.
pub fn mem_options(vfs: &FaultVfs, page_size: usize, cache_bytes: usize) -> Options {
    Options {
        create_if_missing: true,
        page_size,
        cache_bytes,
        vfs: Arc::new(vfs.clone()),
        background: false,
        // The helper's writes would make the order of faulted calls vary
        // between runs of a seed; tests that want it turn it on.
        wal_prepare_ahead: false,
        wal_segment_bytes: 16 * 1024,
        ..Options::default()
    }
}

/// Asserts the database's full contents equal the model, forwards and backwards,
/// and that the integrity check passes.
pub fn assert_matches(db: &Db, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let txn = db.begin_read();
    let got: Vec<(Vec<u8>, Vec<u8>)> = txn.iter().collect::<Result<_, _>>().expect("scan");
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got.len(), want.len(), "entry count");
    assert!(got == want, "contents differ from the model");
    let rev: Vec<(Vec<u8>, Vec<u8>)> = txn
        .range_rev(Bound::Unbounded, Bound::Unbounded)
        .collect::<Result<_, _>>()
        .expect("reverse scan");
    assert!(rev.iter().rev().eq(want.iter()), "reverse scan differs");
    assert_eq!(txn.len(), model.len() as u64);
    let report = db.check().expect("check runs");
    assert!(report.is_ok(), "check failed: {:?}", report.problems);
}
