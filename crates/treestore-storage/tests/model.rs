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
use treestore_storage::{Db, Options};

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
    /// Several prefixes (digits after `key-`) scanned with one cursor, in the
    /// order given (sorted or not), stopping after so many entries.
    Prefixes(Vec<u16>, bool, usize),
    /// One transaction of puts and deletes; with `true` each run of puts
    /// goes through `put_all` in one call.
    Batch(Vec<(u16, Option<(usize, u8)>)>, bool),
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
        3 => (prop::collection::vec(0u16..1000, 0..12), any::<bool>(), 1usize..400)
            .prop_map(|(p, sorted, stop)| Op::Prefixes(p, sorted, stop)),
        6 => (prop::collection::vec((0..keys, prop::option::weighted(0.7, (val_len(), any::<u8>()))), 1..60), any::<bool>())
            .prop_map(|(items, bulk)| Op::Batch(items, bulk)),
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
                    // The same values handed over as the pieces in their
                    // pages (overflow chains up to 8 pages) or assembled
                    // (longer ones).
                    let mut pieced = Vec::new();
                    txn.for_each_in_pieces(bounds.0, bounds.1, |k, pieces| {
                        assert!(!pieces.is_empty());
                        pieced.push((k.to_vec(), pieces.concat()));
                        Ok::<_, treestore_storage::Error>(true)
                    })
                    .unwrap();
                    assert_eq!(pieced, want);
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
                let mut pieced = Vec::new();
                db.begin_read()
                    .for_each_prefix_pieces(&prefix, |k, pieces| {
                        pieced.push((k.to_vec(), pieces.concat()));
                        Ok::<_, treestore_storage::Error>(pieced.len() < 4)
                    })
                    .unwrap();
                assert_eq!(pieced, want.iter().take(4).cloned().collect::<Vec<_>>());
                if reverse {
                    want.reverse();
                }
                assert_eq!(got, want);
            }
            Op::Prefixes(digits, sorted, stop) => {
                // 1 to 3 digits: prefixes of very different widths.
                let mut prefixes: Vec<Vec<u8>> = digits
                    .iter()
                    .map(|d| {
                        format!("key-{}", d % [10, 100, 1000][usize::from(*d) % 3]).into_bytes()
                    })
                    .collect();
                if sorted {
                    prefixes.sort();
                }
                let mut want = Vec::new();
                'outer: for (i, p) in prefixes.iter().enumerate() {
                    for (k, v) in model.iter().filter(|(k, _)| k.starts_with(p)) {
                        want.push((i, k.clone(), v.clone()));
                        if want.len() == stop {
                            break 'outer;
                        }
                    }
                }
                let mut seen = Vec::new();
                db.begin_read()
                    .for_each_in_prefixes(&prefixes, |i, k, v| {
                        seen.push((i, k.to_vec(), v.to_vec()));
                        Ok::<_, treestore_storage::Error>(seen.len() < stop)
                    })
                    .unwrap();
                assert_eq!(seen, want);
            }
            Op::Batch(items, bulk) => {
                let mut txn = db.begin_write();
                let mut staged = model.clone();
                // Puts not yet handed to `put_all` (bulk mode).
                let mut run: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                for (k, v) in items {
                    match v {
                        Some((l, s)) if bulk => {
                            run.push((key(k), value(l, s)));
                            staged.insert(key(k), value(l, s));
                        }
                        Some((l, s)) => {
                            txn.put(&key(k), &value(l, s)).unwrap();
                            staged.insert(key(k), value(l, s));
                        }
                        None => {
                            txn.put_all(std::mem::take(&mut run)).unwrap();
                            txn.delete(&key(k)).unwrap();
                            staged.remove(&key(k));
                        }
                    }
                }
                txn.put_all(run).unwrap();
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

/// Several prefixes through one cursor on a tree three levels deep (the
/// proptest's trees are shallower): the same entries as one scan per prefix,
/// for sorted and unsorted prefix lists, and for sorted ones fewer page
/// visits, since each seek keeps the upper levels of the path.
#[test]
fn prefix_series_match_separate_scans_in_a_deep_tree() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut txn = db.begin_write();
    for bucket in 0..400u32 {
        for term in (0..300u32).filter(|t| (t + bucket) % 7 != 0) {
            txn.put(format!("{bucket:04}/{term:05}/doc").as_bytes(), &[1u8; 20])
                .unwrap();
        }
    }
    txn.commit().unwrap();
    assert!(db.stats().unwrap().depth >= 3);
    let read = db.begin_read();
    let separate = |prefixes: &[Vec<u8>]| {
        let mut out = Vec::new();
        for (i, p) in prefixes.iter().enumerate() {
            read.for_each_prefix(p, |k, _| {
                out.push((i, k.to_vec()));
                Ok::<_, treestore_storage::Error>(true)
            })
            .unwrap();
        }
        out
    };
    let together = |prefixes: &[Vec<u8>]| {
        let mut out = Vec::new();
        read.for_each_in_prefixes(prefixes, |i, k, _| {
            out.push((i, k.to_vec()));
            Ok::<_, treestore_storage::Error>(true)
        })
        .unwrap();
        out
    };
    for term in [0u32, 123, 299] {
        // Every bucket (a key that is sometimes absent), then every third
        // bucket backwards, then whole buckets and single terms mixed.
        let sorted: Vec<Vec<u8>> = (0..400u32)
            .map(|b| format!("{b:04}/{term:05}/").into_bytes())
            .collect();
        let backwards: Vec<Vec<u8>> = sorted.iter().rev().step_by(3).cloned().collect();
        let mixed: Vec<Vec<u8>> = (0..60u32)
            .map(|i| match i % 3 {
                0 => format!("{:04}/", (i * 37) % 400),
                1 => format!("{:04}/{term:05}/", (i * 11) % 400),
                _ => format!("{:03}", (i * 13) % 40),
            })
            .map(String::into_bytes)
            .collect();
        for prefixes in [&sorted, &backwards, &mixed] {
            assert_eq!(together(prefixes), separate(prefixes));
        }
        let hits = || db.stats().unwrap().pool.hits;
        let h0 = hits();
        separate(&sorted);
        let h1 = hits();
        together(&sorted);
        let h2 = hits();
        assert!(
            h2 - h1 < (h1 - h0) * 2 / 3,
            "one cursor visited {} pages, separate scans {}",
            h2 - h1,
            h1 - h0
        );
    }
}
