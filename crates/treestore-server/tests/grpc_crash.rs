//! Crash and shutdown over the wire: clients store tool results through the
//! real `treestore serve` and record which calls were acknowledged; the
//! server is SIGKILLed at a random moment (or SIGTERMed under load) and
//! restarted on the same data directory. After every restart each
//! acknowledged record is present and whole, and each unacknowledged one is
//! either whole or absent; `treestore check` passes on the data directory
//! after every kill and at the end.
//!
//! Default: 20 kill cycles; `TREESTORE_SCALE=N` runs N times as many.
//! `TREESTORE_SEED` fixes the random kill delays (the seed is printed on
//! failure).

mod grpc_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grpc_common::*;
use treestore_server::pb;

/// Concurrent writers per cycle.
const WRITERS: usize = 3;

/// A xorshift64* generator: enough randomness for kill delays, no crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    std::env::var("TREESTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1
}

fn check_with_binary(dir: &Path, ctx: &str) {
    let out = Command::new(BIN)
        .args(["check", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{ctx}: treestore check failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the writers of one cycle sent and which calls were acknowledged.
#[derive(Default)]
struct Log {
    sent: BTreeMap<String, pb::ToolResult>,
    acked: BTreeSet<String>,
}

/// The tool result number `n` of writer `w` in `case`: a unique
/// execution_id, every field set, and a payload of varying size (some span
/// several pages).
fn record(case: &str, w: usize, n: u64) -> pb::ToolResult {
    let id = format!("{case}-w{w}-{n}");
    let pad = "p".repeat(if n.is_multiple_of(13) {
        9_000
    } else {
        (n % 7) as usize * 50
    });
    pb::ToolResult {
        tool_name: format!("tool{}", n % 3),
        execution_id: id.clone(),
        policy_id: "pol".into(),
        node_id: format!("node{n}"),
        result_data: format!("{{\"id\":\"{id}\",\"pad\":\"{pad}\"}}"),
        success: !n.is_multiple_of(5),
        error_message: if n.is_multiple_of(5) {
            "failed".into()
        } else {
            String::new()
        },
        executed_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + n as i64,
            nanos: (w * 1000) as i32,
        }),
        case_id: case.into(),
        version_id: "v1".into(),
        input: format!("{{\"n\":{n}}}"),
        latency_ms: n as f64 / 4.0,
    }
}

/// Starts `WRITERS` tasks storing tool results for `case` until a call
/// fails (the server went away); returns the shared log and the tasks.
async fn start_writers(
    srv: &Server,
    case: &str,
) -> (Arc<Mutex<Log>>, Vec<tokio::task::JoinHandle<()>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = srv.client().await;
        let (log, case) = (log.clone(), case.to_string());
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                let r = record(&case, w, n);
                let id = r.execution_id.clone();
                log.lock().unwrap().sent.insert(id.clone(), r.clone());
                let req = tonic::Request::new(pb::StoreToolResultRequest { result: Some(r) });
                match c.store_tool_result(req).await {
                    Ok(resp) => {
                        assert_eq!(resp.get_ref().id, id);
                        log.lock().unwrap().acked.insert(id);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    (log, tasks)
}

async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("a writer did not notice the server went away")
            .expect("writer task panicked");
    }
}

/// Every acknowledged record of `case` is present and whole; every record
/// present was sent and is whole. Returns how many are present.
async fn verify(c: &mut Client, case: &str, log: &Log, ctx: &str) -> usize {
    let got = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: case.into(),
            limit: 100_000,
            ..Default::default()
        })
        .await);
    let mut present = BTreeMap::new();
    for r in got.results {
        let id = r.execution_id.clone();
        let sent = log
            .sent
            .get(&id)
            .unwrap_or_else(|| panic!("{ctx}: {id} is present but was never sent"));
        assert_eq!(&r, sent, "{ctx}: {id} is not whole");
        assert!(present.insert(id.clone(), r).is_none(), "{ctx}: {id} twice");
    }
    for id in &log.acked {
        assert!(
            present.contains_key(id),
            "{ctx}: acknowledged {id} is missing ({} acknowledged, {} present)",
            log.acked.len(),
            present.len()
        );
    }
    present.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_tool_results_survive_sigkill() {
    let seed = seed();
    let mut rng = XorShift(seed);
    let cycles = 20 * scale();
    let mut srv = Server::start().await;
    let mut logs: Vec<(String, Log)> = Vec::new();
    let (mut acked_total, mut unacked_present) = (0, 0);
    for cycle in 0..cycles {
        let case = format!("case{cycle}");
        let (log, writers) = start_writers(&srv, &case).await;
        let delay = rng.range(50, 400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        srv.kill9();
        join(writers).await;
        let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
        let ctx = format!(
            "seed {seed}, cycle {cycle}, killed after {delay} ms ({} sent, {} acknowledged)",
            log.sent.len(),
            log.acked.len()
        );
        check_with_binary(&srv.data, &ctx);
        srv.restart().await;
        let mut c = srv.client().await;
        let present = verify(&mut c, &case, &log, &ctx).await;
        acked_total += log.acked.len();
        unacked_present += present - log.acked.len();
        logs.push((case, log));
    }
    // Nothing of an earlier cycle was lost by a later crash or recovery.
    let mut c = srv.client().await;
    for (case, log) in &logs {
        verify(
            &mut c,
            case,
            log,
            &format!("seed {seed}, final pass, {case}"),
        )
        .await;
    }
    srv.stop();
    check_with_binary(&srv.data, &format!("seed {seed}, after the final SIGTERM"));
    assert!(
        acked_total >= cycles as usize * 2,
        "only {acked_total} acknowledged writes in {cycles} cycles"
    );
    eprintln!(
        "{cycles} cycles: {acked_total} acknowledged, {unacked_present} unacknowledged but present"
    );
}

/// SIGTERM under load: the server finishes in-flight requests, checkpoints
/// and exits 0; after a restart every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_acknowledged_write() {
    let mut srv = Server::start().await;
    for round in 0..2 {
        let case = format!("term{round}");
        let (log, writers) = start_writers(&srv, &case).await;
        // Readers too, so reads are in flight at the signal.
        let mut reader = srv.client().await;
        let read_case = case.clone();
        let readers = tokio::spawn(async move {
            while reader
                .get_tool_results(pb::GetToolResultsRequest {
                    case_id: read_case.clone(),
                    limit: 50,
                    ..Default::default()
                })
                .await
                .is_ok()
            {}
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        srv.stop();
        join(writers).await;
        tokio::time::timeout(Duration::from_secs(60), readers)
            .await
            .unwrap()
            .unwrap();
        let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
        assert!(!log.acked.is_empty(), "nothing was acknowledged");
        check_with_binary(&srv.data, "after SIGTERM");
        srv.restart().await;
        let mut c = srv.client().await;
        verify(&mut c, &case, &log, &format!("SIGTERM round {round}")).await;
    }
    srv.stop();
}
