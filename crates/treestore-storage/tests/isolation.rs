//! Isolation under concurrency: conserved totals across concurrent transfers, no
//! lost updates, stable long-lived snapshots, invisible uncommitted writes, and
//! write skew rejected in serializable mode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use treestore_storage::{Db, Error, Options};

const ACCOUNTS: u32 = 20;
const INITIAL: i64 = 1000;

fn account(i: u32) -> Vec<u8> {
    format!("acct/{i:03}").into_bytes()
}

fn read_i64(v: Option<Vec<u8>>) -> i64 {
    let v = v.expect("account exists");
    i64::from_le_bytes(v.as_slice().try_into().expect("8-byte balance"))
}

fn open(dir: &std::path::Path) -> Db {
    Db::open(dir, Options::default()).unwrap()
}

/// Runs `f` until it commits, retrying conflicts; returns the number of tries.
fn retry(mut f: impl FnMut() -> Result<(), Error>) -> u32 {
    let mut tries = 1;
    loop {
        match f() {
            Ok(()) => return tries,
            Err(e) if e.is_retryable() => tries += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

#[test]
fn concurrent_transfers_conserve_the_total_in_every_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut txn = db.begin_write();
    for i in 0..ACCOUNTS {
        txn.put(&account(i), &INITIAL.to_le_bytes()).unwrap();
    }
    txn.commit().unwrap();
    let total = INITIAL * ACCOUNTS as i64;
    let done = Arc::new(AtomicBool::new(false));
    let conflicts = Arc::new(AtomicU64::new(0));

    let auditor = {
        let (db, done) = (db.clone(), done.clone());
        thread::spawn(move || {
            let mut audits = 0u64;
            while !done.load(Ordering::Relaxed) || audits < 10 {
                let snap = db.begin_read();
                let sum: i64 = snap
                    .prefix(b"acct/", false)
                    .map(|kv| read_i64(Some(kv.unwrap().1)))
                    .sum();
                assert_eq!(sum, total, "a snapshot saw a partial transfer");
                audits += 1;
            }
            audits
        })
    };
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let (db, conflicts) = (db.clone(), conflicts.clone());
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                for _ in 0..150 {
                    let (a, b) = (rng.random_range(0..ACCOUNTS), rng.random_range(0..ACCOUNTS));
                    if a == b {
                        continue;
                    }
                    let amount = rng.random_range(1..50i64);
                    let tries = retry(|| {
                        let mut txn = db.begin_write();
                        let from = read_i64(txn.get(&account(a))?);
                        let to = read_i64(txn.get(&account(b))?);
                        txn.put(&account(a), &(from - amount).to_le_bytes())?;
                        txn.put(&account(b), &(to + amount).to_le_bytes())?;
                        txn.commit().map(|_| ())
                    });
                    conflicts.fetch_add(u64::from(tries - 1), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let audits = auditor.join().unwrap();
    assert!(audits >= 10);
    let sum: i64 = db
        .begin_read()
        .prefix(b"acct/", false)
        .map(|kv| read_i64(Some(kv.unwrap().1)))
        .sum();
    assert_eq!(sum, total);
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "8 threads on 20 accounts must collide sometimes"
    );
    drop(db);
    // And after recovery.
    let db = open(dir.path());
    let sum: i64 = db
        .begin_read()
        .prefix(b"acct/", false)
        .map(|kv| read_i64(Some(kv.unwrap().1)))
        .sum();
    assert_eq!(sum, total);
}

#[test]
fn concurrent_increments_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(b"counter", &0i64.to_le_bytes()).unwrap();
    let committed = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (db, committed, start) = (db.clone(), committed.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..100 {
                    let mut txn = db.begin_write();
                    let v = read_i64(txn.get(b"counter").unwrap());
                    txn.put(b"counter", &(v + 1).to_le_bytes()).unwrap();
                    match txn.commit() {
                        Ok(_) => {
                            committed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.is_retryable() => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let value = read_i64(db.get(b"counter").unwrap());
    assert_eq!(value as u64, committed.load(Ordering::Relaxed));
    assert!(value > 0);
}

#[test]
fn a_long_reader_sees_identical_values_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut txn = db.begin_write();
    for i in 0..2000u32 {
        txn.put(format!("k{i:05}").as_bytes(), &i.to_le_bytes())
            .unwrap();
    }
    txn.commit().unwrap();
    let reader = db.begin_read();
    let before: Vec<_> = reader.iter().collect::<Result<_, _>>().unwrap();
    let writers: Vec<_> = (0..4u32)
        .map(|t| {
            let db = db.clone();
            thread::spawn(move || {
                for round in 0..30u32 {
                    let mut txn = db.begin_write();
                    for i in (t..2000).step_by(4) {
                        txn.put(
                            format!("k{i:05}").as_bytes(),
                            &(round * 10_000 + i).to_le_bytes(),
                        )
                        .unwrap();
                    }
                    // Each writer owns the keys i = t (mod 4), deletes included.
                    txn.delete(format!("k{:05}", t + 28).as_bytes()).unwrap();
                    txn.commit().unwrap();
                }
                db.checkpoint().unwrap();
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let after: Vec<_> = reader.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(before, after, "the snapshot changed under the reader");
    for i in [0u32, 7, 999, 1999] {
        assert_eq!(
            reader.get(format!("k{i:05}").as_bytes()).unwrap(),
            Some(i.to_le_bytes().to_vec())
        );
    }
}

#[test]
fn uncommitted_writes_are_invisible_to_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut writer = db.begin_write();
    writer.put(b"secret", b"1").unwrap();
    let other = db.begin_write();
    assert_eq!(db.get(b"secret").unwrap(), None);
    assert_eq!(other.get(b"secret").unwrap(), None);
    assert_eq!(db.begin_read().iter().count(), 0);
    assert_eq!(writer.get(b"secret").unwrap(), Some(b"1".to_vec()));
    drop(writer);
    assert_eq!(db.get(b"secret").unwrap(), None);
}

fn write_skew(db: &Db, serializable: bool) -> (Result<(), Error>, Result<(), Error>) {
    // Invariant the application wants: x + y >= 1. Each transaction checks it
    // and then sets one of them to 0; run together, both checks pass.
    let begin = || {
        if serializable {
            db.begin_write_serializable()
        } else {
            db.begin_write()
        }
    };
    let mut t1 = begin();
    let mut t2 = begin();
    let sum = |t: &treestore_storage::WriteTxn| {
        read_i64(t.get(b"x").unwrap()) + read_i64(t.get(b"y").unwrap())
    };
    assert_eq!(sum(&t1), 2);
    assert_eq!(sum(&t2), 2);
    t1.put(b"x", &0i64.to_le_bytes()).unwrap();
    t2.put(b"y", &0i64.to_le_bytes()).unwrap();
    (t1.commit().map(|_| ()), t2.commit().map(|_| ()))
}

#[test]
fn serializable_mode_rejects_write_skew_that_snapshot_isolation_allows() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let reset = || {
        let mut t = db.begin_write();
        t.put(b"x", &1i64.to_le_bytes()).unwrap();
        t.put(b"y", &1i64.to_le_bytes()).unwrap();
        t.commit().unwrap();
    };
    reset();
    let (a, b) = write_skew(&db, false);
    assert!(
        a.is_ok() && b.is_ok(),
        "snapshot isolation lets both commit"
    );
    assert_eq!(
        read_i64(db.get(b"x").unwrap()) + read_i64(db.get(b"y").unwrap()),
        0,
        "the skew happened"
    );

    reset();
    let (a, b) = write_skew(&db, true);
    assert!(a.is_ok());
    assert!(
        matches!(b, Err(Error::Conflict)),
        "serializable must reject the second: {b:?}"
    );
    assert_eq!(
        read_i64(db.get(b"x").unwrap()) + read_i64(db.get(b"y").unwrap()),
        1
    );

    // A scanned range counts as read too (phantom protection).
    let mut t1 = db.begin_write_serializable();
    let mut t2 = db.begin_write_serializable();
    assert_eq!(t1.prefix(b"item/", false).count(), 0);
    t1.put(b"summary", b"no items").unwrap();
    t2.put(b"item/1", b"new").unwrap();
    t2.commit().unwrap();
    assert!(matches!(t1.commit(), Err(Error::Conflict)));
}
