//! Durability benchmark (end to end, on the real disk, one run):
//!
//! - the disk's own 4 KiB write + fdatasync latency: the physical floor of a
//!   durable commit;
//! - durable single-row commits with 1 and with 16 concurrent committers:
//!   commits/s, median latency, fsyncs per commit (group commit); committers
//!   as threads calling `commit`, and as tasks on a two-thread tokio runtime
//!   awaiting `commit_async`;
//! - the same with timer durability (10 ms);
//! - durable commits with 1 and 16 committers on a simulated slower disk:
//!   every fdatasync made `TREESTORE_BENCH_SLOW_SYNC_US` µs longer (default
//!   1,000, 0 skips it), where the sync, not the CPU, is what a commit waits
//!   for;
//! - recovery of a 256 MiB log: replay time and rate, separately from the
//!   checkpoint taken after it, onto an empty database and onto a 1 GiB one
//!   (`TREESTORE_BENCH_BASE_MIB` changes that size, 0 skips that run), with a
//!   4 GiB pool (`TREESTORE_BENCH_RECOVERY_CACHE_MIB`);
//! - read throughput (4 reader threads) with and without a concurrent writer.
//!
//! Run: `cargo bench -p treestore-storage --bench durability`. Prints a markdown
//! table and writes `target/bench/durability.json`. `TREESTORE_BENCH_LOG_MIB`
//! changes the recovery log size; `TREESTORE_BENCH_COMMITS_ONLY=1` runs only
//! the durable commit measurements; `TREESTORE_BENCH_REPLAY_ONLY=DIR` only
//! replays DIR (a copy of a crashed child's directory, made with
//! `TREESTORE_BENCH_RECOVERY_CHILD=DIR`) in a fresh process.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use treestore_storage::vfs::SyncHookVfs;
use treestore_storage::{Db, Durability, Options};

const CHILD_ENV: &str = "TREESTORE_BENCH_RECOVERY_CHILD";
/// Size in MiB of the database the child loads before its log (0: none).
const CHILD_BASE_ENV: &str = "TREESTORE_BENCH_RECOVERY_BASE_MIB";
/// Size in MiB of the large database the second recovery run starts from
/// (default 1024; 0 skips that run).
const BASE_ENV: &str = "TREESTORE_BENCH_BASE_MIB";
/// Set (to anything) to run only the durable commit measurements.
const COMMITS_ONLY_ENV: &str = "TREESTORE_BENCH_COMMITS_ONLY";
/// Set to a data directory: only replay it (see [`replay_only`]).
const REPLAY_ENV: &str = "TREESTORE_BENCH_REPLAY_ONLY";

/// The number in environment variable `name`, or `default`.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// 4 KiB write + fdatasync on a file in `dir`, `n` times: overwriting
/// allocated blocks, or appending (the file grows, so the sync also commits
/// file-system metadata).
fn raw_fdatasync(dir: &Path, n: usize, append: bool) -> Vec<Duration> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join(if append {
            "raw-append"
        } else {
            "raw-overwrite"
        }))
        .unwrap();
    let buf = vec![7u8; 4096];
    if !append {
        f.write_all_at(&vec![0u8; 64 * 4096], 0).unwrap();
        f.sync_data().unwrap();
    }
    (0..n)
        .map(|i| {
            let at = if append { i } else { i % 64 };
            let t = Instant::now();
            f.write_all_at(&buf, at as u64 * 4096).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect()
}

struct CommitRun {
    commits_per_s: f64,
    median_latency: Duration,
    fsyncs_per_commit: f64,
}

fn commit_run(durability: Durability, threads: usize, per_thread: usize) -> CommitRun {
    commit_run_on(durability, threads, per_thread, Options::default())
}

fn commit_run_on(
    durability: Durability,
    threads: usize,
    per_thread: usize,
    options: Options,
) -> CommitRun {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            durability,
            ..options
        },
    )
    .unwrap();
    let fsyncs_before = db.stats().unwrap().wal.fsyncs;
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (db, start) = (db.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                (0..per_thread)
                    .map(|i| {
                        let key = format!("t{t:02}/{i:08}");
                        let t0 = Instant::now();
                        db.put(key.as_bytes(), b"a small durable value").unwrap();
                        t0.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.join().unwrap());
    }
    let elapsed = t0.elapsed();
    let commits = (threads * per_thread) as f64;
    let fsyncs = (db.stats().unwrap().wal.fsyncs - fsyncs_before) as f64;
    CommitRun {
        commits_per_s: commits / elapsed.as_secs_f64(),
        median_latency: median(latencies),
        fsyncs_per_commit: fsyncs / commits,
    }
}

/// Like [`commit_run_on`], but each committer is a task on a tokio runtime
/// of two worker threads (as in the server) committing with
/// `commit_async().await`, so waiting for the sync parks no thread.
fn async_commit_run_on(
    durability: Durability,
    tasks: usize,
    per_task: usize,
    options: Options,
) -> CommitRun {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            durability,
            ..options
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let fsyncs_before = db.stats().unwrap().wal.fsyncs;
    let (elapsed, latencies) = runtime.block_on(async {
        let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (db, start) = (db.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let mut latencies = Vec::with_capacity(per_task);
                    for i in 0..per_task {
                        let key = format!("t{t:02}/{i:08}");
                        let t0 = Instant::now();
                        let mut txn = db.begin_write();
                        txn.put(key.as_bytes(), b"a small durable value").unwrap();
                        txn.commit_async().await.unwrap();
                        latencies.push(t0.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        start.wait().await;
        let t0 = Instant::now();
        let mut latencies = Vec::new();
        for h in handles {
            latencies.extend(h.await.unwrap());
        }
        (t0.elapsed(), latencies)
    });
    let commits = (tasks * per_task) as f64;
    let fsyncs = (db.stats().unwrap().wal.fsyncs - fsyncs_before) as f64;
    CommitRun {
        commits_per_s: commits / elapsed.as_secs_f64(),
        median_latency: median(latencies),
        fsyncs_per_commit: fsyncs / commits,
    }
}

/// Child process: loads `base_mib` MiB of 1,000-byte values (large
/// transactions, made durable by checkpoints), then writes `mib` MiB of log of
/// 100-put commits over the same key space without checkpointing, then exits
/// without closing (as a crash would).
fn recovery_child(dir: &str, mib: u64, base_mib: u64) {
    let db = Db::open(
        dir,
        Options {
            background: false,
            checkpoint_log_bytes: u64::MAX,
            checkpoint_interval: Duration::from_secs(1 << 30),
            cache_bytes: 1 << 30,
            ..Options::default()
        },
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let value = vec![0x5au8; 1000];
    let base_keys = base_mib * 1024;
    let space = base_keys.max(2_000_000);
    let mut loaded = 0u64;
    while loaded < base_keys {
        let mut txn = db.begin_write();
        for _ in 0..50_000.min(base_keys - loaded) {
            let k = loaded * space / base_keys;
            txn.put(format!("key{k:010}").as_bytes(), &value).unwrap();
            loaded += 1;
        }
        txn.commit().unwrap();
    }
    db.checkpoint().unwrap();
    let start = db.stats().unwrap().wal.end_lsn;
    let mut n = 0u64;
    while db.stats().unwrap().wal.end_lsn - start < mib << 20 {
        let mut txn = db.begin_write();
        for _ in 0..100 {
            let k: u64 = rng.random_range(0..space);
            txn.put(format!("key{k:010}").as_bytes(), &value).unwrap();
        }
        txn.commit().unwrap();
        n += 1;
    }
    eprintln!("child: {loaded} keys loaded, then {n} commits logged");
    // No drop: no final checkpoint.
    std::process::exit(0);
}

/// The pool of the recovering process: `TREESTORE_BENCH_RECOVERY_CACHE_MIB`,
/// default 4 GiB (the large database's tree fits, as its working set would in
/// a deployment sized for it).
fn recovery_cache_bytes() -> usize {
    env_number("TREESTORE_BENCH_RECOVERY_CACHE_MIB", 4096usize) << 20
}

/// Recovers the log a child that "crashes" wrote on top of a database of
/// `base_mib` MiB; returns a table row and a JSON field.
fn recovery_run(base_mib: u64) -> (String, String) {
    let rdir = tempfile::tempdir().unwrap();
    let data = rdir.path().join("data");
    let status = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &data)
        .env(CHILD_BASE_ENV, base_mib.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    let db = Db::open(
        &data,
        Options {
            cache_bytes: recovery_cache_bytes(),
            ..Options::default()
        },
    )
    .unwrap();
    let open_time = t0.elapsed();
    let rec = db.stats().unwrap().recovery;
    let t1 = Instant::now();
    db.checkpoint().unwrap();
    let checkpoint_time = t1.elapsed();
    drop(db);
    let mib = rec.replayed_bytes as f64 / (1 << 20) as f64;
    let (onto, key) = if base_mib == 0 {
        (String::new(), "recovery".to_string())
    } else {
        (
            format!(
                " onto a database of {} keys ({base_mib} MiB of values)",
                base_mib * 1024
            ),
            format!("recovery_base_{base_mib}_mib"),
        )
    };
    let row = format!(
        "| recovery: replay {mib:.0} MiB of log ({} commits){onto} | {:.2} s, {:.0} MiB/s; open total {:.2} s; the checkpoint of the recovered tree afterwards {:.2} s |",
        rec.replayed_commits,
        rec.replay_time.as_secs_f64(),
        mib / rec.replay_time.as_secs_f64(),
        open_time.as_secs_f64(),
        checkpoint_time.as_secs_f64()
    );
    let json = format!(
        "\"{key}\": {{\"log_mib\": {mib:.1}, \"replay_s\": {:.3}, \"checkpoint_s\": {:.3}, \"open_s\": {:.3}}}",
        rec.replay_time.as_secs_f64(),
        checkpoint_time.as_secs_f64(),
        open_time.as_secs_f64()
    );
    (row, json)
}

/// Opens `dir` (a copy of a crashed child's directory), prints what replay
/// took, and exits without the final checkpoint, so the same copy shows the
/// replay alone in a fresh process (for profiling it).
fn replay_only(dir: &str) {
    let t0 = Instant::now();
    let db = Db::open(
        dir,
        Options {
            cache_bytes: recovery_cache_bytes(),
            background: false,
            ..Options::default()
        },
    )
    .unwrap();
    let open = t0.elapsed();
    let stats = db.stats().unwrap();
    let rec = stats.recovery;
    let mib = rec.replayed_bytes as f64 / (1 << 20) as f64;
    println!(
        "replayed {mib:.0} MiB ({} commits) in {:.3} s: {:.0} MiB/s; open {:.3} s; \
         {} entries, {} pages in use, {} MiB cached",
        rec.replayed_commits,
        rec.replay_time.as_secs_f64(),
        mib / rec.replay_time.as_secs_f64(),
        open.as_secs_f64(),
        stats.entries,
        stats.pages_in_use,
        stats.pool.resident_bytes >> 20
    );
    std::process::exit(0);
}

struct ReadRun {
    gets_per_s: f64,
    writer_commits: u64,
}

fn read_run(db: &Db, keys: u32, with_writer: bool) -> ReadRun {
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    let writer_commits = Arc::new(AtomicU64::new(0));
    let writer = with_writer.then(|| {
        let (db, stop, writer_commits) = (db.clone(), stop.clone(), writer_commits.clone());
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(99);
            while !stop.load(Ordering::Relaxed) {
                let mut txn = db.begin_write();
                for _ in 0..100 {
                    let k = rng.random_range(0..keys);
                    txn.put(format!("r{k:08}").as_bytes(), &[1u8; 100]).unwrap();
                }
                txn.commit().unwrap();
                writer_commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    let readers: Vec<_> = (0..4u64)
        .map(|t| {
            let (db, stop, gets) = (db.clone(), stop.clone(), gets.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let txn = db.begin_read();
                    for _ in 0..1000 {
                        let k = rng.random_range(0..keys);
                        let len = txn
                            .get_with(format!("r{k:08}").as_bytes(), <[u8]>::len)
                            .unwrap();
                        assert!(len.is_some());
                    }
                    n += 1000;
                }
                gets.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    if let Some(w) = writer {
        w.join().unwrap();
    }
    ReadRun {
        gets_per_s: gets.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64(),
        writer_commits: writer_commits.load(Ordering::Relaxed),
    }
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let mib = env_number("TREESTORE_BENCH_LOG_MIB", 256);
        recovery_child(&dir, mib, env_number(CHILD_BASE_ENV, 0));
        return;
    }
    if let Ok(dir) = std::env::var(REPLAY_ENV) {
        replay_only(&dir);
        return;
    }
    // `cargo bench` passes --bench; anything else (cargo test) just smoke-runs.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut json = Vec::new();
    let mut table = vec![
        "| measurement | result |".to_string(),
        "|---|---|".to_string(),
    ];

    let dir = tempfile::tempdir().unwrap();
    let raw = median(raw_fdatasync(dir.path(), 300, false));
    let raw_append = median(raw_fdatasync(dir.path(), 300, true));
    table.push(format!(
        "| disk: 4 KiB overwrite + fdatasync, median | {:.3} ms ({:.0}/s) |",
        raw.as_secs_f64() * 1e3,
        1.0 / raw.as_secs_f64()
    ));
    table.push(format!(
        "| disk: 4 KiB append + fdatasync, median | {:.3} ms ({:.0}/s) |",
        raw_append.as_secs_f64() * 1e3,
        1.0 / raw_append.as_secs_f64()
    ));
    json.push(format!(
        "\"raw_fdatasync_ms\": {:.4}",
        raw.as_secs_f64() * 1e3
    ));
    json.push(format!(
        "\"raw_append_fdatasync_ms\": {:.4}",
        raw_append.as_secs_f64() * 1e3
    ));

    let one = commit_run(Durability::Sync, 1, 1000);
    let sixteen = commit_run(Durability::Sync, 16, 500);
    let async_one = async_commit_run_on(Durability::Sync, 1, 1000, Options::default());
    let async_sixteen = async_commit_run_on(Durability::Sync, 16, 2000, Options::default());
    if std::env::var_os(COMMITS_ONLY_ENV).is_some() {
        println!(
            "1 committer: {:.0} commits/s, median {:.3} ms; 16 committers: {:.0} commits/s, \
             median {:.3} ms, {:.2} fsyncs/commit ({:.1}x); async 1 task: {:.0} commits/s, \
             median {:.3} ms; async 16 tasks: {:.0} commits/s, median {:.3} ms, \
             {:.2} fsyncs/commit ({:.1}x of 1 committer)",
            one.commits_per_s,
            one.median_latency.as_secs_f64() * 1e3,
            sixteen.commits_per_s,
            sixteen.median_latency.as_secs_f64() * 1e3,
            sixteen.fsyncs_per_commit,
            sixteen.commits_per_s / one.commits_per_s,
            async_one.commits_per_s,
            async_one.median_latency.as_secs_f64() * 1e3,
            async_sixteen.commits_per_s,
            async_sixteen.median_latency.as_secs_f64() * 1e3,
            async_sixteen.fsyncs_per_commit,
            async_sixteen.commits_per_s / one.commits_per_s
        );
        return;
    }
    for (label, key, r) in [
        ("1 committer", "sync_1", &one),
        ("16 committers", "sync_16", &sixteen),
        ("1 async committer (task)", "async_1", &async_one),
        (
            "16 async committers (tasks on 2 threads)",
            "async_16",
            &async_sixteen,
        ),
    ] {
        table.push(format!(
            "| durable commits, {label} | {:.0} commits/s, median {:.3} ms, {:.2} fsyncs/commit |",
            r.commits_per_s,
            r.median_latency.as_secs_f64() * 1e3,
            r.fsyncs_per_commit
        ));
        json.push(format!(
            "\"{key}\": {{\"commits_per_s\": {:.1}, \"median_ms\": {:.4}, \"fsyncs_per_commit\": {:.3}}}",
            r.commits_per_s,
            r.median_latency.as_secs_f64() * 1e3,
            r.fsyncs_per_commit
        ));
    }
    table.push(format!(
        "| single commit latency / raw fdatasync | {:.2}x |",
        one.median_latency.as_secs_f64() / raw.as_secs_f64()
    ));
    table.push(format!(
        "| 16 committers / 1 committer throughput | {:.1}x |",
        sixteen.commits_per_s / one.commits_per_s
    ));
    table.push(format!(
        "| 16 async committers / 1 committer throughput | {:.1}x |",
        async_sixteen.commits_per_s / one.commits_per_s
    ));
    let slow_us: u64 = env_number("TREESTORE_BENCH_SLOW_SYNC_US", 1000);
    if slow_us > 0 {
        let slow = || Options {
            vfs: Arc::new(SyncHookVfs::slow(Duration::from_micros(slow_us))),
            ..Options::default()
        };
        let one = commit_run_on(Durability::Sync, 1, 300, slow());
        let sixteen = commit_run_on(Durability::Sync, 16, 200, slow());
        table.push(format!(
            "| durable commits, every fdatasync {:.3} ms slower: 1 / 16 committers | {:.0} / {:.0} commits/s \
             ({:.2} / {:.2} fsyncs/commit), {:.1}x |",
            slow_us as f64 / 1e3,
            one.commits_per_s,
            sixteen.commits_per_s,
            one.fsyncs_per_commit,
            sixteen.fsyncs_per_commit,
            sixteen.commits_per_s / one.commits_per_s
        ));
        json.push(format!(
            "\"slow_sync\": {{\"added_ms\": {:.3}, \"commits_per_s_1\": {:.1}, \"commits_per_s_16\": {:.1}, \"fsyncs_per_commit_16\": {:.3}}}",
            slow_us as f64 / 1e3,
            one.commits_per_s,
            sixteen.commits_per_s,
            sixteen.fsyncs_per_commit
        ));
    }
    let timer = Durability::Timer {
        interval: Duration::from_millis(10),
    };
    let t1 = commit_run(timer, 1, 5000);
    let t16 = commit_run(timer, 16, 1000);
    for (label, key, r) in [
        ("1 committer", "timer_1", &t1),
        ("16 committers", "timer_16", &t16),
    ] {
        table.push(format!(
            "| timer (10 ms) commits, {label} | {:.0} commits/s, median {:.4} ms |",
            r.commits_per_s,
            r.median_latency.as_secs_f64() * 1e3
        ));
        json.push(format!(
            "\"{key}\": {{\"commits_per_s\": {:.1}}}",
            r.commits_per_s
        ));
    }

    // Recovery of a large log, written by a child that "crashes": onto an
    // empty database, and onto a large one (whose leaves replay must read).
    let base_mib: u64 = env_number(BASE_ENV, 1024);
    let bases: &[u64] = if base_mib == 0 { &[0] } else { &[0, base_mib] };
    for &base in bases {
        let (row, field) = recovery_run(base);
        table.push(row);
        json.push(field);
    }

    // Reads with and without a writer.
    let rdir = tempfile::tempdir().unwrap();
    let db = Db::open(rdir.path(), Options::default()).unwrap();
    let keys = 200_000u32;
    let mut txn = db.begin_write();
    for k in 0..keys {
        txn.put(format!("r{k:08}").as_bytes(), &[0u8; 100]).unwrap();
    }
    txn.commit().unwrap();
    let alone = read_run(&db, keys, false);
    let contended = read_run(&db, keys, true);
    table.push(format!(
        "| reads, 4 threads, no writer | {:.0} gets/s |",
        alone.gets_per_s
    ));
    table.push(format!(
        "| reads, 4 threads, 1 writer committing | {:.0} gets/s ({:.2}x), writer {} commits of 100 puts in 3 s |",
        contended.gets_per_s,
        contended.gets_per_s / alone.gets_per_s,
        contended.writer_commits
    ));
    json.push(format!(
        "\"reads\": {{\"alone_gets_per_s\": {:.0}, \"with_writer_gets_per_s\": {:.0}}}",
        alone.gets_per_s, contended.gets_per_s
    ));

    println!("{}", table.join("\n"));
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let _ = std::fs::create_dir_all(&out);
    std::fs::write(
        out.join("durability.json"),
        format!("{{\n  {}\n}}\n", json.join(",\n  ")),
    )
    .unwrap();
}
