//! Process kill: a child process commits transactions from several threads and
//! reports each acknowledged one on stdout; the parent SIGKILLs it at a random
//! moment, reopens the data directory, and checks that every acknowledged commit
//! is present and every transaction is whole (all of its keys or none). The real
//! `treestore check` must pass after each cycle.
//!
//! Default: 50 cycles; `TREESTORE_SCALE=N` runs N times as many.
//!
//! The child is this same test binary, re-run with `--ignored --exact
//! kill_child_writer` and the data directory in `TREESTORE_KILL_DIR`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use treestore_storage::{Db, Options};

const THREADS: u64 = 4;
const KEYS_PER_TXN: u64 = 3;

fn txn_key(id: u64, part: u64) -> Vec<u8> {
    format!("txn/{id:012}/{part}").into_bytes()
}

/// The child: commits until killed. Transaction ids are unique across cycles:
/// thread t of a child started at `base` uses ids base + t, base + t + THREADS, ...
#[test]
#[ignore = "helper process for every_acknowledged_commit_survives_sigkill"]
fn kill_child_writer() {
    let Ok(dir) = std::env::var("TREESTORE_KILL_DIR") else {
        return;
    };
    let base: u64 = std::env::var("TREESTORE_KILL_BASE")
        .unwrap()
        .parse()
        .unwrap();
    let db = Db::open(&dir, Options::default()).unwrap();
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, out) = (&db, &out);
            s.spawn(move || {
                for n in 0u64.. {
                    let id = base + t + n * THREADS;
                    let mut txn = db.begin_write();
                    for part in 0..KEYS_PER_TXN {
                        txn.put(&txn_key(id, part), format!("value of {id}").as_bytes())
                            .unwrap();
                    }
                    // Big values now and then, so overflow pages are in flight too.
                    if id.is_multiple_of(17) {
                        txn.put(format!("big/{id:012}").as_bytes(), &vec![id as u8; 20_000])
                            .unwrap();
                    }
                    txn.commit().unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {id}").unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

fn scale() -> u64 {
    std::env::var("TREESTORE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn check_with_binary(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_treestore"))
        .args(["check", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "treestore check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_acknowledged_commit_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut acked_total = 0usize;
    for cycle in 0..50 * scale() {
        let base = cycle * 1_000_000;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "kill_child_writer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("TREESTORE_KILL_DIR", &dir)
            .env("TREESTORE_KILL_BASE", base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read acknowledgements on a thread; kill after a random delay.
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ACK ") {
                    acked.push(id.trim().parse::<u64>().unwrap());
                }
            }
            acked
        });
        let delay = Duration::from_millis(30 + (cycle * 7919 % 170));
        let started = Instant::now();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        acked_total += acked.len();

        check_with_binary(&dir);
        let db = Db::open(&dir, Options::default()).unwrap();
        let txn = db.begin_read();
        for &id in &acked {
            for part in 0..KEYS_PER_TXN {
                assert_eq!(
                    txn.get(&txn_key(id, part)).unwrap(),
                    Some(format!("value of {id}").into_bytes()),
                    "cycle {cycle}: acknowledged transaction {id} lost key {part} (killed after {:?})",
                    started.elapsed()
                );
            }
        }
        // Every transaction present is whole.
        let mut parts: BTreeMap<u64, u64> = BTreeMap::new();
        for kv in txn.prefix(b"txn/", false) {
            let (k, _) = kv.unwrap();
            let id: u64 = std::str::from_utf8(&k[4..16]).unwrap().parse().unwrap();
            *parts.entry(id).or_default() += 1;
        }
        for (id, n) in parts {
            assert_eq!(
                n, KEYS_PER_TXN,
                "cycle {cycle}: transaction {id} is partial"
            );
        }
        drop(txn);
        drop(db);
    }
    assert!(
        acked_total > 100,
        "the children acknowledged only {acked_total} commits"
    );
}
