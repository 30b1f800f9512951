//! Integration tests of the storage engine on real files: corruption detection,
//! eviction under a small buffer pool, space reuse, bad input, locking, large
//! values, snapshots and write conflicts, meta-page fallback.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use treestore_storage::page::{PageType, DEFAULT_PAGE_SIZE};
use treestore_storage::{Db, Error, Options, WriteBatch, DATA_FILE};

fn opts() -> Options {
    Options::default()
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn fill(db: &Db, n: u32, value_len: usize, per_txn: u32) {
    let mut i = 0;
    while i < n {
        let mut txn = db.begin_write();
        for j in i..(i + per_txn).min(n) {
            txn.put(&key(j), &vec![(j % 251) as u8; value_len]).unwrap();
        }
        txn.commit().unwrap();
        i += per_txn;
    }
}

/// Deletes keys `0..n` in transactions of `per_txn`, checkpointing after each.
fn delete_all(db: &Db, n: u32, per_txn: u32) {
    let mut i = 0;
    while i < n {
        let mut txn = db.begin_write();
        for j in i..(i + per_txn).min(n) {
            txn.delete(&key(j)).unwrap();
        }
        txn.commit().unwrap();
        db.checkpoint().unwrap();
        i += per_txn;
    }
}

/// Page ids in the data file whose type tag is `ty`.
fn pages_of_type(dir: &Path, ty: PageType) -> Vec<u64> {
    let bytes = std::fs::read(dir.join(DATA_FILE)).unwrap();
    bytes
        .chunks(DEFAULT_PAGE_SIZE)
        .enumerate()
        .filter(|(_, p)| p[4] == ty as u8)
        .map(|(i, _)| i as u64)
        .collect()
}

fn flip_byte(dir: &Path, page: u64, offset_in_page: usize) {
    let path = dir.join(DATA_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[page as usize * DEFAULT_PAGE_SIZE + offset_in_page] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn flipped_byte_in_a_page_is_reported_with_its_page_number() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        fill(&db, 3000, 40, 3000);
    }
    // Only reachable pages: take a leaf from the live tree by scanning the file for
    // leaves and picking one the checker counts (all leaves here are live: one commit).
    let leaves = pages_of_type(dir.path(), PageType::Leaf);
    assert!(leaves.len() > 10);
    let victim = leaves[leaves.len() / 2];
    flip_byte(dir.path(), victim, 1000);

    let db = Db::open(dir.path(), opts()).unwrap();
    let err = db
        .begin_read()
        .iter()
        .find_map(|r| r.err())
        .expect("scan must hit the corrupt page");
    match err {
        Error::CorruptPage { page, .. } => assert_eq!(page, victim),
        other => panic!("expected corruption of page {victim}, got {other}"),
    }
    let report = db.check().unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("page {victim}"))),
        "{:?}",
        report.problems
    );
}

#[test]
fn small_pool_serves_a_data_set_many_times_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 64 * 1024;
    let db = Db::open(
        dir.path(),
        Options {
            cache_bytes: budget,
            ..opts()
        },
    )
    .unwrap();
    fill(&db, 4000, 300, 500); // ~1.3 MB of payload, 20x the pool
    let stats = db.stats().unwrap();
    assert!(stats.file_bytes > 10 * budget as u64);
    for round in 0..3u32 {
        for i in (0..4000u32).map(|i| (i * 7 + round * 13) % 4000) {
            assert_eq!(
                db.get(&key(i)).unwrap(),
                Some(vec![(i % 251) as u8; 300]),
                "key {i}"
            );
        }
    }
    let n = db.begin_read().iter().count();
    assert_eq!(n, 4000);
    let pool = db.stats().unwrap().pool;
    assert!(pool.evictions > 1000, "{pool:?}");
    assert!(pool.misses > 1000, "{pool:?}");
    assert!(
        pool.resident_bytes <= pool.capacity_bytes + 4 * DEFAULT_PAGE_SIZE as u64,
        "{pool:?}"
    );
}

#[test]
fn deleted_space_is_reused_before_the_file_grows() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let n = 200_000u32;
    let fill_all = |db: &Db| {
        for chunk in 0..10 {
            fill_range(db, chunk * 20_000..(chunk + 1) * 20_000);
            db.checkpoint().unwrap();
        }
    };
    fill_all(&db);
    let first = db.stats().unwrap().file_bytes;
    delete_all(&db, n, 20_000);
    assert_eq!(db.stats().unwrap().entries, 0);
    fill_all(&db);
    let second = db.stats().unwrap().file_bytes;
    assert!(
        (second as f64) < first as f64 * 1.10,
        "file grew from {first} to {second} bytes in the second round"
    );
    assert!(db.check().unwrap().is_ok());
}

fn fill_range(db: &Db, keys: std::ops::Range<u32>) {
    let mut txn = db.begin_write();
    for j in keys {
        txn.put(&key(j), &[(j % 251) as u8; 20]).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn mass_delete_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    fill(&db, 50_000, 100, 10_000);
    db.checkpoint().unwrap();
    let full = std::fs::metadata(dir.path().join(DATA_FILE)).unwrap().len();
    delete_all(&db, 50_000, 50_000);
    // The checkpoint after the delete makes the old tree's pages free; later
    // checkpoints release them (and the delete checkpoint's free list) and cut
    // the free tail of the file.
    for v in [b"x", b"y"] {
        db.put(b"after", v).unwrap();
        db.checkpoint().unwrap();
    }
    let small = std::fs::metadata(dir.path().join(DATA_FILE)).unwrap().len();
    assert!(small * 10 < full, "file went from {full} to {small} bytes");
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn sixteen_mebibyte_values_roundtrip_and_free_their_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    db.put(b"big", &big).unwrap();
    db.put(b"small", b"s").unwrap();
    assert_eq!(db.get(b"big").unwrap().as_deref(), Some(&big[..]));
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.get(b"big").unwrap().as_deref(), Some(&big[..]));
    let used = db.stats().unwrap().pages_in_use;
    assert!(used > 4096, "{used}");
    db.delete(b"big").unwrap();
    db.checkpoint().unwrap(); // the chain is no longer needed by recovery
    db.put(b"tick", b"1").unwrap(); // ... and is released at the next commit
    let stats = db.stats().unwrap();
    assert!(stats.pages_in_use < 16, "{stats:?}");
    assert!(db.check().unwrap().is_ok());
    // Overwrite with another large value: reuses the freed pages.
    db.put(b"big", &big[..8 << 20]).unwrap();
    assert!(db.stats().unwrap().file_bytes <= 17 << 20);
}

#[test]
fn scans_and_lookups_in_pieces_hand_over_each_value_from_its_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let chunk = DEFAULT_PAGE_SIZE - 16;
    // Inline, one page, a page and a byte, the longest chain handed over in
    // pieces (8 pages), and one page more (assembled into one piece).
    let lens = [10, chunk, chunk + 1, 8 * chunk, 8 * chunk + 1, 20 * chunk];
    let values: Vec<Vec<u8>> = lens
        .iter()
        .map(|&n| (0..n).map(|i| (i % 241) as u8).collect())
        .collect();
    let mut txn = db.begin_write();
    for (i, v) in values.iter().enumerate() {
        txn.put(&key(i as u32), v).unwrap();
    }
    txn.commit().unwrap();
    let check = |db: &Db| {
        let mut seen = Vec::new();
        db.begin_read()
            .for_each_prefix_pieces(b"key-", |k, pieces| {
                seen.push((k.to_vec(), pieces.len(), pieces.concat()));
                Ok::<_, Error>(true)
            })
            .unwrap();
        let counts: Vec<usize> = seen.iter().map(|(_, n, _)| *n).collect();
        assert_eq!(counts, [1, 1, 2, 8, 1, 1]);
        for (i, (k, n, v)) in seen.iter().enumerate() {
            assert_eq!(k, &key(i as u32));
            assert_eq!(v, &values[i], "value {i}");
            // A point lookup hands over the same pieces.
            let got = db
                .begin_read()
                .get_pieces_with(k, |pieces| (pieces.len(), pieces.concat()))
                .unwrap();
            assert_eq!(got, Some((*n, values[i].clone())), "lookup of value {i}");
        }
        let missing = db.begin_read().get_pieces_with(b"key-none", |p| p.len());
        assert_eq!(missing.unwrap(), None);
    };
    check(&db);
    // Again with every page read from the file.
    drop(db);
    check(&Db::open(dir.path(), opts()).unwrap());
}

#[test]
fn keys_must_be_nonempty_and_at_most_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let max = db.max_key_len();
    assert!(max >= 1024);
    db.put(&vec![b'k'; max], b"v").unwrap();
    assert!(matches!(
        db.put(&vec![b'k'; max + 1], b"v"),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(db.put(b"", b"v"), Err(Error::InvalidKey { .. })));
    assert_eq!(db.get(&vec![b'k'; max]).unwrap(), Some(b"v".to_vec()));
}

/// `put_all` checks every pair before writing any: one bad key leaves the
/// transaction's writes as they were.
#[test]
fn put_all_writes_nothing_when_a_pair_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let mut txn = db.begin_write();
    txn.put(b"a", b"1").unwrap();
    let bad = vec![(b"b".to_vec(), b"2".to_vec()), (Vec::new(), b"3".to_vec())];
    assert!(matches!(txn.put_all(bad), Err(Error::InvalidKey { .. })));
    let long = vec![
        (b"c".to_vec(), b"4".to_vec()),
        (vec![b'k'; db.max_key_len() + 1], Vec::new()),
    ];
    assert!(matches!(txn.put_all(long), Err(Error::InvalidKey { .. })));
    txn.put_all(vec![
        (b"a".to_vec(), b"5".to_vec()),
        (b"d".to_vec(), b"6".to_vec()),
    ])
    .unwrap();
    txn.commit().unwrap();
    let all: Vec<(Vec<u8>, Vec<u8>)> = db.begin_read().iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        all,
        vec![
            (b"a".to_vec(), b"5".to_vec()),
            (b"d".to_vec(), b"6".to_vec())
        ]
    );
}

#[test]
fn missing_directory_and_non_directory_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let no_create = Options {
        create_if_missing: false,
        ..opts()
    };
    assert!(matches!(
        Db::open(&missing, no_create.clone()),
        Err(Error::MissingDirectory { .. })
    ));
    assert!(!missing.exists(), "nothing may be created");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Db::open(&file, opts()),
        Err(Error::NotADirectory { .. })
    ));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        Db::open(&empty, no_create),
        Err(Error::NoDatabase { .. })
    ));
    assert!(!empty.join(DATA_FILE).exists());
}

#[test]
fn foreign_and_newer_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DATA_FILE);
    let junk = b"PGDMP this is somebody else's file, not ours at all........".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    let err = Db::open(dir.path(), opts()).unwrap_err();
    assert!(matches!(err, Error::NotATreeStoreFile { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), junk);

    std::fs::remove_file(&path).unwrap();
    drop(Db::open(dir.path(), opts()).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24] = 99; // format version of page 0
    std::fs::write(&path, &bytes).unwrap();
    let err = Db::open(dir.path(), opts()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormatVersion { found: 99, .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_second_opener_is_refused_and_told_who_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    match Db::open(dir.path(), opts()) {
        Err(Error::Locked { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()), "{holder}")
        }
        other => panic!("expected a lock error, got {other:?}"),
    }
    drop(db);
    Db::open(dir.path(), opts()).unwrap();
}

#[test]
fn readers_keep_their_snapshot_while_writers_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    fill(&db, 1000, 10, 1000);
    let before = db.begin_read();
    let mut txn = db.begin_write();
    for i in 0..1000 {
        txn.put(&key(i), b"new").unwrap();
    }
    txn.delete(&key(5)).unwrap();
    txn.put(b"zzz", b"added").unwrap();
    // Uncommitted writes are invisible to others and visible to the writer.
    assert_eq!(db.get(b"zzz").unwrap(), None);
    assert_eq!(txn.get(b"zzz").unwrap(), Some(b"added".to_vec()));
    assert_eq!(txn.get(&key(5)).unwrap(), None);
    txn.commit().unwrap();
    // Many more commits to churn pages; the old snapshot must stay intact.
    for round in 0..20u32 {
        let mut batch = WriteBatch::new();
        for i in 0..1000 {
            batch.put(key(i), format!("r{round}"));
        }
        db.write(batch).unwrap();
    }
    assert_eq!(before.len(), 1000);
    for (i, kv) in before.iter().enumerate() {
        let (k, v) = kv.unwrap();
        assert_eq!(k, key(i as u32));
        assert_eq!(v, vec![(i % 251) as u8; 10]);
    }
    assert_eq!(db.get(&key(7)).unwrap(), Some(b"r19".to_vec()));
    drop(before);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn first_committer_wins_on_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    db.put(b"a", b"0").unwrap();
    let mut t1 = db.begin_write();
    let mut t2 = db.begin_write();
    let mut t3 = db.begin_write();
    t1.put(b"a", b"1").unwrap();
    t2.put(b"a", b"2").unwrap();
    t3.put(b"b", b"3").unwrap();
    t1.commit().unwrap();
    let err = t2.commit().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    t3.commit().unwrap(); // disjoint keys do not conflict
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(db.get(b"b").unwrap(), Some(b"3".to_vec()));
    // A dropped transaction leaves no trace.
    let mut t4 = db.begin_write();
    t4.put(b"c", b"x").unwrap();
    drop(t4);
    assert_eq!(db.get(b"c").unwrap(), None);
}

#[test]
fn torn_newest_meta_page_falls_back_to_the_previous_checkpoint_and_its_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        db.put(b"k", b"old").unwrap();
        db.checkpoint().unwrap();
        db.put(b"k", b"new").unwrap();
        db.put(b"k2", b"v2").unwrap();
        db.checkpoint().unwrap();
    }
    // Find the newest meta page (the higher checkpoint sequence at byte 32).
    let bytes = std::fs::read(dir.path().join(DATA_FILE)).unwrap();
    let seq_of = |slot: usize| {
        let at = slot * DEFAULT_PAGE_SIZE + 32;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    };
    let newest = if seq_of(0) > seq_of(1) { 0 } else { 1 };
    flip_byte(dir.path(), newest as u64, 3000);
    let db = Db::open(dir.path(), opts()).unwrap();
    // The older checkpoint has only "old"; its log still holds the rest.
    assert_eq!(db.get(b"k").unwrap(), Some(b"new".to_vec()));
    assert_eq!(db.get(b"k2").unwrap(), Some(b"v2".to_vec()));
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn range_bounds_and_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let mut model = BTreeMap::new();
    let mut batch = WriteBatch::new();
    for i in 0..5000u32 {
        let k = format!("{}/{:05}", ["a", "ab", "b", "c\u{ff}"][i as usize % 4], i).into_bytes();
        batch.put(k.clone(), i.to_le_bytes().to_vec());
        model.insert(k, i.to_le_bytes().to_vec());
    }
    db.write(batch).unwrap();
    let txn = db.begin_read();
    type Range<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);
    let cases: Vec<Range> = vec![
        (Bound::Included(b"ab/"), Bound::Excluded(b"b/")),
        (Bound::Excluded(b"a/00004"), Bound::Included(b"a/01000")),
        (Bound::Unbounded, Bound::Excluded(b"a/00100")),
        (Bound::Included(b"c"), Bound::Unbounded),
        (Bound::Included(b"b"), Bound::Excluded(b"a")), // empty
        (Bound::Excluded(b"b/00002"), Bound::Excluded(b"b/00002")), // empty
    ];
    for (lo, hi) in cases {
        let empty = match (lo, hi) {
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a >= b
            }
            _ => false,
        };
        let want: Vec<_> = if empty {
            Vec::new()
        } else {
            model
                .range::<[u8], _>((lo, hi))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let got: Vec<_> = txn.range(lo, hi).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, want, "{lo:?}..{hi:?}");
        let mut rev: Vec<_> = txn.range_rev(lo, hi).collect::<Result<_, _>>().unwrap();
        rev.reverse();
        assert_eq!(rev, want, "reverse {lo:?}..{hi:?}");
        let last = txn
            .last_in_with(lo, hi, |k, v| (k.to_vec(), v.to_vec()))
            .unwrap();
        assert_eq!(last.as_ref(), want.last(), "last of {lo:?}..{hi:?}");
    }
    let got: Vec<_> = txn.prefix(b"ab/", false).collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 1250);
    assert!(got.iter().all(|(k, _)| k.starts_with(b"ab/")));
}

#[test]
fn small_overflow_values_are_served_from_the_pool_and_large_ones_bypass_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let small = vec![7u8; 6_000]; // 2 overflow pages
    let large = vec![9u8; 200_000]; // ~50 pages, above the cached chain length
    db.put(b"small", &small).unwrap();
    db.put(b"large", &large).unwrap();
    db.checkpoint().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    let r = db.begin_read();
    assert_eq!(r.get(b"small").unwrap().unwrap(), small);
    let before = db.stats().unwrap().pool;
    for _ in 0..10 {
        assert_eq!(r.get(b"small").unwrap().unwrap(), small);
    }
    let after = db.stats().unwrap().pool;
    assert_eq!(
        after.misses, before.misses,
        "cached value read again from disk"
    );
    // Each read hits the leaf and both overflow pages in the pool.
    assert!(
        after.hits - before.hits >= 30,
        "{} hits",
        after.hits - before.hits
    );
    let resident = db.stats().unwrap().pool.resident_pages;
    assert_eq!(r.get(b"large").unwrap().unwrap(), large);
    assert!(
        db.stats().unwrap().pool.resident_pages < resident + 10,
        "large value was cached"
    );
}

/// Inside `cache_only`, a read that needs a page from the disk fails with
/// `NotCached` and reports the miss, and caches nothing; outside it the same
/// read goes to the disk, after which the cache-only read succeeds.
#[test]
fn cache_only_reads_never_touch_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        for i in 0..2_000u32 {
            db.put(format!("key-{i:05}").as_bytes(), &[7u8; 300])
                .unwrap();
        }
        db.put(b"big", &vec![9u8; 50_000]).unwrap();
        db.checkpoint().unwrap();
    }
    // Reopened: the pool starts empty.
    let db = Db::open(dir.path(), opts()).unwrap();
    for key in [&b"key-01234"[..], b"big"] {
        let (got, missed) = treestore_storage::cache_only(|| db.get(key));
        assert!(missed, "{key:?}");
        assert!(matches!(got, Err(Error::NotCached { .. })), "{got:?}");
        let (again, missed) = treestore_storage::cache_only(|| db.get(key));
        assert!(missed && again.is_err(), "a miss caches nothing");
        assert!(
            db.get(key).unwrap().is_some(),
            "outside the scope the disk is read"
        );
    }
    let (got, missed) = treestore_storage::cache_only(|| db.get(b"key-01234"));
    assert!(!missed);
    assert_eq!(got.unwrap(), Some(vec![7u8; 300]));
    // A value longer than the cached chains is always read from the disk.
    let (got, missed) = treestore_storage::cache_only(|| db.get(b"big"));
    assert!(missed && matches!(got, Err(Error::NotCached { .. })));
    // The scope ends with the call, also when the closure panics.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        treestore_storage::cache_only(|| panic!("inside"))
    }));
    assert!(caught.is_err());
    assert_eq!(db.get(b"key-00001").unwrap(), Some(vec![7u8; 300]));
}

/// `check` tells how full leaves and overflow pages are: every byte of the
/// overflow values counted once, and a leaf's slots and cells to the byte.
#[test]
fn check_reports_how_full_leaves_and_overflow_pages_are() {
    use treestore_storage::btree::node::{LEAF_CELL_HEADER, SLOT, SLOTS_START};
    use treestore_storage::btree::overflow::chunk_len;

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    fill(&db, 200, 50, 200);
    let big = 10_000usize;
    let mut txn = db.begin_write();
    for j in 0..10 {
        txn.put(format!("big-{j}").as_bytes(), &vec![7u8; big])
            .unwrap();
    }
    txn.commit().unwrap();
    db.checkpoint().unwrap();

    let r = db.check().unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.overflow_bytes, 10 * big as u64);
    let per_value = big.div_ceil(chunk_len(DEFAULT_PAGE_SIZE)) as u64;
    assert_eq!(r.overflow_pages, 10 * per_value);
    // 200 inline cells of a 12-byte key and 50-byte value, 10 cells of a
    // 5-byte key and a 16-byte overflow reference.
    let cells = 200 * (SLOT + LEAF_CELL_HEADER + 12 + 50) + 10 * (SLOT + LEAF_CELL_HEADER + 5 + 16);
    assert!(r.leaf_pages >= 4, "{} leaves", r.leaf_pages);
    assert_eq!(
        r.leaf_bytes,
        (cells + r.leaf_pages as usize * SLOTS_START) as u64
    );
    let leaf_pct = r.leaf_bytes * 100 / (r.leaf_pages * DEFAULT_PAGE_SIZE as u64);
    let overflow_pct = r.overflow_bytes * 100 / (r.overflow_pages * DEFAULT_PAGE_SIZE as u64);
    let summary = r.summary();
    assert!(
        summary.ends_with(&format!(
            "leaves {leaf_pct}% full, overflow pages {overflow_pct}% full"
        )),
        "{summary}"
    );
}
