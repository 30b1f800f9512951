//! Model-based property test: random puts, deletes, gets, range scans and batches
//! against `BTreeMap`, with checkpoints and closing and reopening the store (which
//! replays the log) at random points. Keys go up to the maximum length and values
//! span several pages.
//!
//! Default: 50 cases x 2,000 operations = 100,000 operations. More with
//! `TREESTORE_PROPTEST_CASES=N`.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use treestore_storage::fault::FaultVfs;
use treestore_storage::Db;

const PAGE_SIZE: usize = 4096;
const MAX_KEY: usize = PAGE_SIZE / 4;

/// The key for index `i`: mostly short, every 16th near the maximum length.
fn key(i: u16) -> Vec<u8> {
    let mut k = format!("key-{:05}", (i as u32 * 7919) % 100_000).into_bytes();
    if i.is_multiple_of(16) {
        k.resize(MAX_KEY - (i as usize % 24), b'k');
    } else if i.is_multiple_of(5) {
        k.push(0xff);
        k.extend_from_slice(&i.to_be_bytes());
    }
    k
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|j| seed.wrapping_add((j % 251) as u8))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Put(u16, usize, u8),
    Delete(u16),
    Get(u16),
    Range(u16, u16, bool),
    Prefix(u8, bool),
    Batch(Vec<(u16, Option<(usize, u8)>)>),
    Checkpoint,
    Reopen,
}

fn val_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..64,
        3 => 64usize..1200,
        1 => 1200usize..20_000,
    ]
}

fn op(keys: u16) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..keys, val_len(), any::<u8>()).prop_map(|(k, l, s)| Op::Put(k, l, s)),
        12 => (0..keys).prop_map(Op::Delete),
        10 => (0..keys).prop_map(Op::Get),
        4 => (0..keys, 0..keys, any::<bool>()).prop_map(|(a, b, r)| Op::Range(a, b, r)),
        2 => (0u8..10, any::<bool>()).prop_map(|(p, r)| Op::Prefix(p, r)),
        6 => prop::collection::vec((0..keys, prop::option::weighted(0.7, (val_len(), any::<u8>()))), 1..60)
            .prop_map(Op::Batch),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
    ]
}

fn run(ops: Vec<Op>) {
    let vfs = FaultVfs::new();
    let dir = std::path::Path::new("/db");
    // A small pool so the test also runs with evictions.
    let opts = common::mem_options(&vfs, PAGE_SIZE, 256 * 1024);
    let mut db = Db::open(dir, opts.clone()).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, l, s) => {
                db.put(&key(k), &value(l, s)).unwrap();
                model.insert(key(k), value(l, s));
            }
            Op::Delete(k) => {
                db.delete(&key(k)).unwrap();
                model.remove(&key(k));
            }
            Op::Get(k) => assert_eq!(db.get(&key(k)).unwrap(), model.get(&key(k)).cloned()),
            Op::Range(a, b, reverse) => {
                let (a, b) = (key(a).min(key(b)), key(a).max(key(b)));
                let txn = db.begin_read();
                let bounds = (Bound::Included(a.as_slice()), Bound::Excluded(b.as_slice()));
                let got: Vec<_> = if reverse {
                    txn.range_rev(bounds.0, bounds.1)
                        .collect::<Result<_, _>>()
                        .unwrap()
                } else {
                    txn.range(bounds.0, bounds.1)
                        .collect::<Result<_, _>>()
                        .unwrap()
                };
                let mut want: Vec<_> = model
                    .range::<Vec<u8>, _>((Bound::Included(&a), Bound::Excluded(&b)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !reverse {
                    // The borrowing scan sees the same entries (overflow
                    // values assembled in its reused buffer), and stops
                    // when told to.
                    let mut seen = Vec::new();
                    txn.for_each_in(bounds.0, bounds.1, |k, v| {
                        seen.push((k.to_vec(), v.to_vec()));
                        Ok::<_, treestore_storage::Error>(true)
                    })
                    .unwrap();
                    assert_eq!(seen, want);
                    let mut first = Vec::new();
                    txn.for_each_in(bounds.0, bounds.1, |k, _| {
                        first.push(k.to_vec());
                        Ok::<_, treestore_storage::Error>(first.len() < 3)
                    })
                    .unwrap();
                    let want_first: Vec<_> = want.iter().take(3).map(|(k, _)| k.clone()).collect();
                    assert_eq!(first, want_first);
                }
                if reverse {
                    want.reverse();
                }
                assert_eq!(got, want);
            }
            Op::Prefix(p, reverse) => {
                let prefix = format!("key-{p}").into_bytes();
                let got: Vec<_> = db
                    .begin_read()
                    .prefix(&prefix, reverse)
                    .collect::<Result<_, _>>()
                    .unwrap();
                let mut want: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut seen = Vec::new();
                db.begin_read()
                    .for_each_prefix(&prefix, |k, v| {
                        seen.push((k.to_vec(), v.to_vec()));
                        Ok::<_, treestore_storage::Error>(true)
                    })
                    .unwrap();
                assert_eq!(seen, want);
                if reverse {
                    want.reverse();
                }
                assert_eq!(got, want);
            }
            Op::Batch(items) => {
                let mut txn = db.begin_write();
                let mut staged = model.clone();
                for (k, v) in items {
                    match v {
                        Some((l, s)) => {
                            txn.put(&key(k), &value(l, s)).unwrap();
                            staged.insert(key(k), value(l, s));
                        }
                        None => {
                            txn.delete(&key(k)).unwrap();
                            staged.remove(&key(k));
                        }
                    }
                }
                // Read-your-writes through the merged iterator.
                let seen: Vec<_> = txn.iter().collect::<Result<_, _>>().unwrap();
                assert!(seen.iter().map(|(k, v)| (k, v)).eq(staged.iter()));
                txn.commit().unwrap();
                model = staged;
            }
            Op::Checkpoint => db.checkpoint().unwrap(),
            Op::Reopen => {
                drop(db);
                db = Db::open(dir, opts.clone()).unwrap();
                common::assert_matches(&db, &model);
            }
        }
    }
    drop(db);
    let db = Db::open(dir, opts).unwrap();
    common::assert_matches(&db, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(50), ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_btreemap_model(ops in prop::collection::vec(op(400), 2000)) {
        run(ops);
    }
}
