//! Recovery from the write-ahead log: commits that exist only in the log survive
//! a crash; a damaged record before the end of the log refuses the open and
//! names the segment and offset; a torn tail is cut at the last valid record;
//! segments rotate and are removed once a checkpoint covers them; rewriting the
//! same keys across many checkpoints keeps the file bounded; timer durability.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use treestore_storage::check::check_dir;
use treestore_storage::fault::{FaultKind, FaultPlan, FaultTarget, FaultVfs, LossMode};
use treestore_storage::vfs::Vfs;
use treestore_storage::{Db, Durability, Error, Options, DATA_FILE};

const DIR: &str = "/db";

fn commit_n(db: &Db, from: u32, n: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for i in from..from + n {
        let mut txn = db.begin_write();
        for part in 0..3 {
            let k = format!("k{i:05}/{part}").into_bytes();
            let v = format!("value {i} {part}").into_bytes();
            txn.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        txn.commit().unwrap();
    }
    model
}

fn contents(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.begin_read().iter().collect::<Result<_, _>>().unwrap()
}

/// Drops the database as a crash would: no final checkpoint, unsynced writes lost.
fn crash(vfs: &FaultVfs, db: Db) {
    vfs.cut_power();
    drop(db);
    vfs.power_loss(LossMode::DropUnsynced);
}

/// The log's files whose names end in `suffix`, sorted.
fn wal_files(vfs: &FaultVfs, suffix: &str) -> Vec<PathBuf> {
    let dir = Path::new(DIR).join("wal");
    let mut names = vfs.list_dir(&dir).unwrap();
    names.retain(|n| n.ends_with(suffix));
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

fn segments(vfs: &FaultVfs) -> Vec<PathBuf> {
    wal_files(vfs, ".wal")
}

#[test]
fn commits_only_in_the_log_survive_a_crash() {
    let vfs = FaultVfs::new();
    let opts = common::mem_options(&vfs, 4096, 1 << 20);
    let db = Db::open(DIR, opts.clone()).unwrap();
    let model = commit_n(&db, 0, 60);
    assert_eq!(
        db.stats().unwrap().checkpoint_commit_seq,
        0,
        "nothing checkpointed yet"
    );
    crash(&vfs, db);
    let db = Db::open(DIR, opts.clone()).unwrap();
    assert_eq!(contents(&db), model);
    let stats = db.stats().unwrap();
    assert_eq!(stats.commit_seq, 60);
    assert_eq!(stats.recovery.replayed_commits, 60);
    assert_eq!(
        stats.checkpoint_commit_seq, 0,
        "replayed commits stay in the log until a checkpoint"
    );
    // Crashing again before any checkpoint replays the same log again.
    let more = commit_n(&db, 60, 5);
    crash(&vfs, db);
    let db = Db::open(DIR, opts).unwrap();
    let mut want = model;
    want.extend(more);
    assert_eq!(contents(&db), want);
    assert_eq!(db.stats().unwrap().recovery.replayed_commits, 65);
    db.checkpoint().unwrap();
    assert_eq!(db.stats().unwrap().checkpoint_commit_seq, 65);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn a_damaged_record_before_the_end_refuses_the_open_and_names_segment_and_offset() {
    let vfs = FaultVfs::new();
    let opts = Options {
        wal_segment_bytes: 1 << 20,
        ..common::mem_options(&vfs, 4096, 1 << 20)
    };
    let db = Db::open(DIR, opts.clone()).unwrap();
    commit_n(&db, 0, 40);
    // The only segment starts at LSN 0, after its 32-byte header.
    let records_end = db.stats().unwrap().wal.end_lsn + 32;
    crash(&vfs, db);
    let segs = segments(&vfs);
    assert_eq!(segs.len(), 1);
    vfs.corrupt_byte(&segs[0], records_end / 2, 0x40);
    let before = vfs.file_len(&segs[0]);

    let err = Db::open(DIR, opts.clone()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::CorruptFile { .. }), "{msg}");
    let name = segs[0].file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name) && msg.contains("offset"), "{msg}");
    assert_eq!(
        vfs.file_len(&segs[0]),
        before,
        "a refused open must not cut the log"
    );

    let report = check_dir(Path::new(DIR), &vfs).unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems.iter().any(|p| p.contains(name)),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_torn_tail_is_cut_at_the_last_valid_record() {
    let vfs = FaultVfs::new();
    let opts = Options {
        wal_segment_bytes: 1 << 20,
        ..common::mem_options(&vfs, 4096, 1 << 20)
    };
    let db = Db::open(DIR, opts.clone()).unwrap();
    let all = commit_n(&db, 0, 40);
    let records_end = db.stats().unwrap().wal.end_lsn + 32;
    crash(&vfs, db);
    let segs = segments(&vfs);
    let len = records_end - 5;
    vfs.truncate_file(&segs[0], len);
    // The checker reports the torn tail but no problem, and changes nothing.
    let report = check_dir(Path::new(DIR), &vfs).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.log_records, 39);
    assert!(report.torn_tail_bytes > 0);
    assert_eq!(vfs.file_len(&segs[0]), Some(len));

    let db = Db::open(DIR, opts.clone()).unwrap();
    let mut want = all.clone();
    want.retain(|k, _| !k.starts_with(b"k00039/"));
    assert_eq!(contents(&db), want, "everything but the torn last commit");
    // The log continues cleanly after the cut.
    let more = commit_n(&db, 100, 5);
    want.extend(more);
    crash(&vfs, db);
    let db = Db::open(DIR, opts).unwrap();
    assert_eq!(contents(&db), want);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn segments_rotate_and_are_recycled_or_removed_once_checkpointed() {
    let vfs = FaultVfs::new();
    let opts = Options {
        // Four segments of log per checkpoint: five spares.
        checkpoint_log_bytes: 64 * 1024,
        ..common::mem_options(&vfs, 4096, 1 << 20) // 16 KiB segments
    };
    let db = Db::open(DIR, opts.clone()).unwrap();
    let mut model = commit_n(&db, 0, 2000);
    let many = segments(&vfs).len();
    assert!(many > 6, "{many} segments");
    assert_eq!(db.stats().unwrap().wal.segments as usize, many);
    db.checkpoint().unwrap();
    let few = segments(&vfs).len();
    assert!(few <= 2, "{few} segments left after the checkpoint");
    assert_eq!(
        wal_files(&vfs, ".spare").len(),
        5,
        "five kept, the rest deleted"
    );
    // New segments are made from the spares; files stay bounded.
    model.extend(commit_n(&db, 5000, 2000));
    db.checkpoint().unwrap();
    let files = vfs.list_dir(&Path::new(DIR).join("wal")).unwrap();
    assert!(files.len() <= 7, "{files:?}");
    crash(&vfs, db);
    let db = Db::open(DIR, opts).unwrap();
    assert_eq!(contents(&db), model);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn replaying_many_segments_of_rewrites_frees_the_pages_it_supersedes() {
    let vfs = FaultVfs::new();
    let opts = Options {
        // About one segment (16 KiB) and its writes per replay batch.
        replay_batch_bytes: 32 << 10,
        ..common::mem_options(&vfs, 4096, 64 << 20) // 16 KiB segments
    };
    let db = Db::open(DIR, opts.clone()).unwrap();
    // 100 keys rewritten 40 times, all only in the log (no checkpoint).
    let mut model = BTreeMap::new();
    for round in 0..40u32 {
        let v = format!("round {round}").into_bytes();
        model.extend(commit_n(&db, 0, 100).into_keys().map(|k| (k, v.clone())));
        let mut txn = db.begin_write();
        for (k, v) in &model {
            txn.put(k, v).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(db.stats().unwrap().checkpoint_commit_seq, 0);
    crash(&vfs, db);
    let db = Db::open(DIR, opts).unwrap();
    let stats = db.stats().unwrap();
    assert!(
        stats.recovery.replayed_commits > 4000,
        "{:?}",
        stats.recovery
    );
    assert!(segments(&vfs).len() > 20, "the log spans many segments");
    assert_eq!(contents(&db), model);
    // Each batch rewrote the whole tree; what earlier batches wrote
    // is free again rather than pending, and the pool never had to write a
    // dead page back to make room.
    assert!(
        stats.pending_pages <= stats.pages_in_use + 4,
        "pending {} vs in use {}",
        stats.pending_pages,
        stats.pages_in_use
    );
    assert!(stats.free_pages > 0, "{stats:?}");
    assert_eq!(stats.pool.dirty_writebacks, 0, "{:?}", stats.pool);
    db.checkpoint().unwrap();
    assert!(db.check().unwrap().is_ok());
    crash(&vfs, db);
    let db = Db::open(DIR, common::mem_options(&vfs, 4096, 1 << 20)).unwrap();
    assert_eq!(contents(&db), model);
}

/// Puts, overwrites and deletes of overlapping keys, only in the log (16 KiB
/// segments), then the same log replayed in batches of one write, of a few
/// commits and of the whole log: a later commit's write of a key must win over
/// an earlier one whether the two land in the same batch or not. `crash` drops
/// a handle without a checkpoint.
fn replay_in_batches(dir: &Path, opts: Options, crash: &dyn Fn(Db)) {
    let db = Db::open(dir, opts.clone()).unwrap();
    db.put(b"checkpointed", b"before the log").unwrap();
    db.checkpoint().unwrap();
    let mut model = contents(&db);
    let mut rng = 7u64;
    for i in 0..600u32 {
        let mut txn = db.begin_write();
        for _ in 0..4 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = format!("key{:03}", (rng >> 33) % 300).into_bytes();
            if (rng >> 20).is_multiple_of(4) {
                txn.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let v =
                    format!("value {i} {}", "x".repeat((rng >> 40) as usize % 200)).into_bytes();
                txn.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        txn.commit().unwrap();
    }
    assert_eq!(contents(&db), model);
    assert!(
        db.stats().unwrap().wal.segments > 5,
        "the log spans segments"
    );
    crash(db);
    // Nothing is checkpointed, so each open replays the same log: in batches
    // of one write, of about two segments' writes, and of the whole log, the
    // last also with a pool far smaller than the replayed tree, so the
    // batch's pages are written back to make room while it is applied.
    for (batch, cache) in [
        (1, 64 << 20),
        (40 << 10, 64 << 20),
        (512 << 20, 64 << 20),
        (512 << 20, 16 << 10),
    ] {
        let opts = Options {
            replay_batch_bytes: batch,
            cache_bytes: cache,
            ..opts.clone()
        };
        let db = Db::open(dir, opts).unwrap();
        let stats = db.stats().unwrap();
        let case = format!("batches of {batch} bytes, {cache} bytes of cache");
        assert_eq!(stats.recovery.replayed_commits, 600, "{case}");
        assert_eq!(contents(&db), model, "{case}");
        assert!(db.check().unwrap().is_ok(), "{case}");
        if cache < 1 << 20 {
            assert!(stats.pool.dirty_writebacks > 0, "{case}: {:?}", stats.pool);
        }
        crash(db);
    }
    let db = Db::open(dir, opts.clone()).unwrap();
    db.checkpoint().unwrap();
    crash(db);
    let db = Db::open(dir, opts).unwrap();
    assert_eq!(db.stats().unwrap().recovery.replayed_commits, 0);
    assert_eq!(contents(&db), model);
}

#[test]
fn replay_in_batches_of_any_size_rebuilds_the_same_contents() {
    let vfs = FaultVfs::new();
    let opts = common::mem_options(&vfs, 4096, 64 << 20);
    replay_in_batches(Path::new(DIR), opts, &|db| crash(&vfs, db));
}

/// The same on the real file system. A crash is a copy of the directory taken while the handle is open (every
/// commit is synced, nothing checkpointed since), put in its place once the
/// handle is gone (dropping a handle checkpoints).
#[test]
fn replay_on_the_real_file_system_rebuilds_the_same_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("db");
    let image = tmp.path().join("image");
    let opts = Options {
        background: false,
        wal_segment_bytes: 16 * 1024,
        wal_prepare_ahead: false,
        checkpoint_log_bytes: u64::MAX,
        checkpoint_interval: Duration::from_secs(1 << 30),
        ..Options::default()
    };
    let copy_dir = |from: &Path, to: &Path| {
        for sub in ["", "wal"] {
            std::fs::create_dir_all(to.join(sub)).unwrap();
            for entry in std::fs::read_dir(from.join(sub)).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    std::fs::copy(entry.path(), to.join(sub).join(entry.file_name())).unwrap();
                }
            }
        }
    };
    replay_in_batches(&live, opts, &|db| {
        copy_dir(&live, &image);
        drop(db);
        std::fs::remove_dir_all(&live).unwrap();
        std::fs::rename(&image, &live).unwrap();
    });
}

#[test]
fn replay_drops_the_images_of_the_pages_it_replaces() {
    let vfs = FaultVfs::new();
    let opts = common::mem_options(&vfs, 4096, 64 << 20);
    let db = Db::open(DIR, opts.clone()).unwrap();
    let mut model = BTreeMap::new();
    let mut txn = db.begin_write();
    for i in 0..3000u32 {
        let k = format!("key{i:05}").into_bytes();
        txn.put(&k, &[b'a'; 100]).unwrap();
        model.insert(k, vec![b'a'; 100]);
    }
    txn.commit().unwrap();
    db.checkpoint().unwrap();
    // Every key rewritten, only in the log: replay replaces every leaf of
    // the checkpointed tree.
    for chunk in 0..30u32 {
        let mut txn = db.begin_write();
        for i in chunk * 100..(chunk + 1) * 100 {
            let k = format!("key{i:05}").into_bytes();
            txn.put(&k, &[b'b'; 100]).unwrap();
            model.insert(k, vec![b'b'; 100]);
        }
        txn.commit().unwrap();
    }
    crash(&vfs, db);
    let db = Db::open(DIR, opts).unwrap();
    let stats = db.stats().unwrap();
    assert_eq!(stats.recovery.replayed_commits, 30);
    assert_eq!(contents(&db), model);
    // The pool holds the new tree, not the old leaves replay read as well.
    assert!(
        stats.pool.resident_pages <= stats.pages_in_use,
        "{} pages cached, {} in use",
        stats.pool.resident_pages,
        stats.pages_in_use
    );
    db.checkpoint().unwrap();
    assert!(db.check().unwrap().is_ok());
}

/// Pages a crashed process wrote past the checkpoint's end are not cut off
/// at open (opening would wait for the file system to drop them); replay
/// reuses their place and the next checkpoint cuts the file to its length.
#[test]
fn pages_past_the_checkpoint_are_cut_by_the_next_checkpoint_not_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (live, image) = (tmp.path().join("db"), tmp.path().join("image"));
    let opts = Options {
        background: false,
        // Small: dirty pages are evicted, written past the checkpoint's end.
        cache_bytes: 256 << 10,
        checkpoint_log_bytes: u64::MAX,
        checkpoint_interval: Duration::from_secs(1 << 30),
        ..Options::default()
    };
    let db = Db::open(&live, opts.clone()).unwrap();
    db.put(b"first", b"checkpointed").unwrap();
    db.checkpoint().unwrap();
    let checkpointed = db.stats().unwrap().file_bytes;
    let model = commit_n(&db, 0, 2000);
    assert!(db.stats().unwrap().pool.dirty_writebacks > 0);
    // A crash image: every commit synced, nothing checkpointed since.
    std::fs::create_dir_all(image.join("wal")).unwrap();
    for sub in ["", "wal"] {
        for entry in std::fs::read_dir(live.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), image.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    drop(db);
    let crashed = std::fs::metadata(image.join(DATA_FILE)).unwrap().len();
    assert!(crashed > checkpointed, "{crashed} vs {checkpointed}");
    let db = Db::open(&image, opts.clone()).unwrap();
    let stats = db.stats().unwrap();
    assert_eq!(stats.recovery.replayed_commits, 2000);
    assert!(stats.file_bytes >= crashed, "not cut at open");
    let mut want = model.clone();
    want.insert(b"first".to_vec(), b"checkpointed".to_vec());
    assert_eq!(contents(&db), want);
    assert!(db.check().unwrap().is_ok(), "a longer file is sound");
    db.checkpoint().unwrap();
    let stats = db.stats().unwrap();
    assert_eq!(stats.file_bytes, stats.page_count * stats.page_size);
    assert!(db.check().unwrap().is_ok());
    assert_eq!(contents(&db), want);
    // A stale tail with nothing to replay: a checkpoint that has nothing to
    // write still cuts it.
    drop(db);
    let path = image.join(DATA_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len + 10 * 4096).unwrap();
    drop(file);
    let db = Db::open(&image, opts).unwrap();
    assert_eq!(db.stats().unwrap().recovery.replayed_commits, 0);
    assert_eq!(db.stats().unwrap().file_bytes, len + 10 * 4096);
    db.checkpoint().unwrap();
    assert_eq!(db.stats().unwrap().file_bytes, len);
    assert_eq!(contents(&db), want);
}

#[test]
fn rewriting_the_same_keys_over_many_checkpoints_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut sizes = Vec::new();
    for round in 0..40u32 {
        let mut txn = db.begin_write();
        for i in 0..10_000u32 {
            txn.put(
                format!("key{i:05}").as_bytes(),
                format!("round {round:03} value {i:05}").as_bytes(),
            )
            .unwrap();
        }
        txn.commit().unwrap();
        db.checkpoint().unwrap();
        sizes.push(std::fs::metadata(dir.path().join(DATA_FILE)).unwrap().len());
    }
    // The live tree plus the previous checkpoint's (kept for recovery until the
    // next checkpoint is durable): the size settles after a few rounds.
    let early = sizes[4];
    let late = *sizes[5..].iter().max().unwrap();
    assert!(
        late as f64 <= early as f64 * 1.25,
        "data file kept growing: {sizes:?}"
    );
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn timer_durability_commits_are_visible_at_once_and_synced_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        durability: Durability::Timer {
            interval: Duration::from_millis(20),
        },
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let fsyncs_before = db.stats().unwrap().wal.fsyncs;
    for i in 0..200u32 {
        db.put(format!("t{i:04}").as_bytes(), b"v").unwrap();
        assert_eq!(
            db.get(format!("t{i:04}").as_bytes()).unwrap(),
            Some(b"v".to_vec())
        );
    }
    let after_commits = db.stats().unwrap().wal.fsyncs - fsyncs_before;
    assert!(
        after_commits < 100,
        "timer mode must not sync per commit ({after_commits} fsyncs for 200 commits)"
    );
    let appended = db.stats().unwrap().wal.end_lsn;
    // Within a few timer ticks everything appended is durable, with no commit
    // having waited for it.
    let mut durable = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        durable = db.stats().unwrap().wal.durable_lsn;
        if durable >= appended {
            break;
        }
    }
    assert!(
        durable >= appended,
        "the timer never synced: durable {durable} < appended {appended}"
    );
    drop(db);
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(db.begin_read().iter().count(), 200);
}

#[test]
fn a_large_transaction_is_made_durable_by_a_checkpoint_instead_of_the_log() {
    let vfs = FaultVfs::new();
    let opts = Options {
        large_txn_bytes: 8 * 1024,
        ..common::mem_options(&vfs, 4096, 1 << 20)
    };
    let db = Db::open(DIR, opts.clone()).unwrap();
    let mut model = commit_n(&db, 0, 10); // logged
    let log_before = db.stats().unwrap().wal.end_lsn;
    let mut txn = db.begin_write();
    for i in 0..500u32 {
        let (k, v) = (format!("bulk{i:04}").into_bytes(), vec![i as u8; 100]);
        txn.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    let seq = txn.commit().unwrap().seq;
    let stats = db.stats().unwrap();
    assert_eq!(
        stats.wal.end_lsn, log_before,
        "the large commit was not logged"
    );
    assert_eq!(
        stats.checkpoint_commit_seq, seq,
        "it is in the checkpoint instead"
    );
    model.extend(commit_n(&db, 10, 10)); // logged after it
    crash(&vfs, db);
    let db = Db::open(DIR, opts).unwrap();
    assert_eq!(contents(&db), model);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn a_failed_background_checkpoint_is_reported_and_retried() {
    let vfs = FaultVfs::new();
    let opts = Options {
        background: true,
        checkpoint_log_bytes: 1024,
        checkpoint_interval: Duration::from_secs(3600),
        ..common::mem_options(&vfs, 4096, 1 << 20)
    };
    let db = Db::open(DIR, opts).unwrap();
    // Write 0 is this commit's log append (its only write: the segment exists and
    // has room); write 1 is the first page write of the background checkpoint
    // that the log size makes due, and it fails with ENOSPC.
    vfs.set_plan(Some(FaultPlan {
        at: 1,
        kind: FaultKind::NoSpace,
        target: FaultTarget::Writes,
    }));
    let mut model = BTreeMap::new();
    let mut txn = db.begin_write();
    for i in 0..90u32 {
        let (k, v) = (
            format!("k{i:03}").into_bytes(),
            format!("value {i}").into_bytes(),
        );
        txn.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    let seq = txn.commit().unwrap().seq;
    let wait_for = |what: &str, pred: &dyn Fn(&treestore_storage::Stats) -> bool| {
        for _ in 0..200 {
            if pred(&db.stats().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}: {:?}", db.stats().unwrap());
    };
    wait_for("the failure to be reported", &|s| {
        s.background_error
            .as_deref()
            .is_some_and(|e| e.contains("checkpoint"))
    });
    // The fault fired once; the next tick's checkpoint succeeds and clears it.
    wait_for("the retry to succeed", &|s| {
        s.background_error.is_none() && s.checkpoint_commit_seq == seq
    });
    assert_eq!(contents(&db), model);
    crash(&vfs, db);
    let db = Db::open(DIR, common::mem_options(&vfs, 4096, 1 << 20)).unwrap();
    assert_eq!(contents(&db), model);
}

#[test]
fn a_failed_data_sync_in_a_checkpoint_poisons_the_handle_and_loses_nothing() {
    let vfs = FaultVfs::new();
    let opts = common::mem_options(&vfs, 4096, 1 << 20);
    let db = Db::open(DIR, opts.clone()).unwrap();
    let model = commit_n(&db, 0, 20);
    // The log is durable already, so the checkpoint's first sync is the data
    // file's: it fails.
    vfs.set_plan(Some(FaultPlan {
        at: 0,
        kind: FaultKind::Eio,
        target: FaultTarget::Syncs,
    }));
    assert!(matches!(db.checkpoint(), Err(Error::Io { .. })));
    assert!(
        matches!(db.put(b"after", b"x"), Err(Error::Poisoned(_))),
        "writes must stop after a failed fsync"
    );
    assert_eq!(contents(&db), model, "reads still work");
    crash(&vfs, db);
    let db = Db::open(DIR, opts).unwrap();
    assert_eq!(contents(&db), model);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn a_damaged_segment_header_in_front_of_records_refuses_the_open() {
    let vfs = FaultVfs::new();
    let opts = common::mem_options(&vfs, 4096, 1 << 20);
    let db = Db::open(DIR, opts.clone()).unwrap();
    commit_n(&db, 0, 5);
    crash(&vfs, db);
    let segs = segments(&vfs);
    assert_eq!(segs.len(), 1);
    vfs.corrupt_byte(&segs[0], 3, 0x01); // inside the magic
    let err = Db::open(DIR, opts).unwrap_err();
    assert!(err.to_string().contains("bad segment header"), "{err}");
}

#[test]
fn a_large_txn_limit_beyond_the_log_record_limit_is_refused() {
    let vfs = FaultVfs::new();
    let opts = Options {
        large_txn_bytes: 2 << 30,
        ..common::mem_options(&vfs, 4096, 1 << 20)
    };
    assert!(matches!(Db::open(DIR, opts), Err(Error::InvalidOptions(_))));
}

/// Writes two write batches of three commits each (timer durability, synced
/// explicitly) and returns the LSN where each of the six records starts, the
/// contents after batch 1, and the contents after batch 2.
type Contents = BTreeMap<Vec<u8>, Vec<u8>>;
fn two_batches(vfs: &FaultVfs) -> (Options, Vec<u64>, Contents, Contents) {
    let opts = Options {
        durability: Durability::Timer {
            interval: Duration::from_secs(3600),
        },
        wal_segment_bytes: 1 << 20,
        ..common::mem_options(vfs, 4096, 1 << 20)
    };
    let db = Db::open(DIR, opts.clone()).unwrap();
    let mut starts = Vec::new();
    let mut after_first = Contents::new();
    for i in 0..6u32 {
        starts.push(db.stats().unwrap().wal.end_lsn);
        db.put(
            format!("key{i}").as_bytes(),
            format!("value {i}").as_bytes(),
        )
        .unwrap();
        if i == 2 {
            db.sync().unwrap();
            after_first = contents(&db);
        }
    }
    db.sync().unwrap();
    let after_second = contents(&db);
    crash(vfs, db);
    (opts, starts, after_first, after_second)
}

#[test]
fn damage_inside_the_last_write_batch_is_a_torn_write() {
    let vfs = FaultVfs::new();
    let (opts, starts, after_first, after_second) = two_batches(&vfs);
    assert_eq!(after_second.len(), 6);
    // Record 3 opens batch 2; damage it but leave records 4 and 5 intact, as
    // when a disk persisted the batch's later blocks and not its first.
    let seg = &segments(&vfs)[0];
    vfs.corrupt_byte(seg, starts[3] + 32 + 20, 0x08);
    let db = Db::open(DIR, opts).unwrap();
    assert_eq!(
        contents(&db),
        after_first,
        "batch 2 is cut as a torn write; batch 1 is intact"
    );
    assert!(db.stats().unwrap().recovery.torn_tail_bytes > 0);
}

#[test]
fn damage_before_a_later_write_batch_refuses_the_open() {
    let vfs = FaultVfs::new();
    let (opts, starts, _, _) = two_batches(&vfs);
    let seg = &segments(&vfs)[0];
    vfs.corrupt_byte(seg, starts[1] + 32 + 20, 0x08); // inside batch 1
    let err = Db::open(DIR, opts).unwrap_err();
    assert!(err.to_string().contains("later synced batch"), "{err}");
}

#[test]
fn a_crash_while_creating_the_database_leaves_it_creatable() {
    for seed in 0..100u64 {
        let vfs = FaultVfs::new();
        let opts = common::mem_options(&vfs, 4096, 1 << 20);
        // The very first sync is the one that makes the new meta pages durable.
        vfs.set_plan(Some(FaultPlan {
            at: 0,
            kind: FaultKind::PowerCut,
            target: FaultTarget::Syncs,
        }));
        assert!(Db::open(DIR, opts.clone()).is_err());
        let mode = if seed % 4 == 0 {
            LossMode::DropUnsynced
        } else {
            LossMode::RandomSubset { seed }
        };
        vfs.power_loss(mode);
        let db = Db::open(DIR, opts.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(contents(&db), BTreeMap::new());
        db.put(b"k", b"v").unwrap();
        crash(&vfs, db);
        let db = Db::open(DIR, opts).unwrap();
        assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()), "seed {seed}");
    }
}

#[test]
fn the_background_thread_checkpoints_when_the_interval_passes() {
    let vfs = FaultVfs::new();
    let opts = Options {
        background: true,
        checkpoint_log_bytes: u64::MAX,
        checkpoint_interval: Duration::from_millis(300),
        ..common::mem_options(&vfs, 4096, 1 << 20)
    };
    let db = Db::open(DIR, opts).unwrap();
    // The log-size trigger is off: only the clock can start this checkpoint.
    let seq = db.put(b"k", b"v").unwrap().seq;
    for _ in 0..100 {
        if db.stats().unwrap().checkpoint_commit_seq == seq {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no checkpoint after 5 s with a 300 ms interval: {:?}",
        db.stats().unwrap()
    );
}
