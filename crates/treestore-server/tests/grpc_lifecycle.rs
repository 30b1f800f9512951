//! The server's lifecycle against the real `treestore serve` binary: a
//! shutdown that a client not reading its stream cannot stall beyond the
//! grace period, stream producers that give up on a stalled client, the
//! concurrency cap counting work that outlived its request's deadline, and a
//! metrics port that cannot be bound failing the start.

mod grpc_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grpc_common::*;
use tonic::{Code, Request};
use treestore_server::pb;

/// A document of `nodes` nodes with `words` words of text each (at 200, a
/// node is about 1 KiB: 20,000 are too much for a stream to sit in the
/// transport's buffers and windows).
fn big_doc(policy: &str, nodes: usize, words: usize) -> pb::StoreDocumentRequest {
    let text = "lorem ipsum dolor sit amet ".repeat(words / 5);
    let mut ns = tree(nodes, 8, |i| format!("section {i}"));
    for n in &mut ns {
        n.text = text.clone();
    }
    store_req(policy, "v1", ns)
}

fn get_doc(policy: &str) -> pb::GetDocumentRequest {
    pb::GetDocumentRequest {
        policy_id: policy.into(),
        version_id: String::new(),
    }
}

/// SIGTERM while a client holds a StreamDocument open without reading it:
/// the server waits the grace period, then checkpoints and exits 0 anyway;
/// after a restart every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_cannot_hold_off_shutdown_past_the_grace_period() {
    let grace = Duration::from_secs(2);
    let mut srv = Server::builder()
        .args(["--shutdown-grace", "2"])
        .start()
        .await;
    let mut c = srv.client().await;
    for i in 0..20 {
        ok(c.store_tool_result(pb::StoreToolResultRequest {
            result: Some(tool_result("search", "K", &format!("e{i}"))),
        })
        .await);
    }
    ok(c.store_document(big_doc("big", 20_000, 200)).await);

    // Another connection opens the stream and never reads it.
    let mut reader = srv.client().await;
    let stalled = ok(reader.stream_document(get_doc("big")).await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let status = tokio::task::block_in_place(|| srv.terminate());
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status}\n{}", srv.stderr());
    assert!(
        took >= grace - Duration::from_millis(500),
        "exited after {took:?}: the stream was not stalled, nothing was tested"
    );
    assert!(
        took < grace + Duration::from_secs(8),
        "exited {took:?} after SIGTERM with a {grace:?} grace period\n{}",
        srv.stderr()
    );
    assert!(srv.stderr().contains("grace period"), "{}", srv.stderr());
    drop(stalled);

    srv.restart().await;
    let mut c = srv.client().await;
    let got = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: "K".into(),
            ..Default::default()
        })
        .await);
    assert_eq!(got.results.len(), 20);
    let doc = ok(c.get_document(get_doc("big")).await);
    assert_eq!(doc.nodes.len(), 20_000);
    srv.stop();
}

/// With a cap of one request, a stream whose client does not read holds the
/// place while its producer waits (the place belongs to the producer, not to
/// the handler that returned the stream), and the producer gives up after
/// the request timeout, giving the place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_holds_its_place_until_the_producer_gives_up() {
    // Store the document without the tight limits, then restart with them.
    let mut first = Server::start().await;
    ok(first
        .client()
        .await
        .store_document(big_doc("big", 20_000, 200))
        .await);
    first.stop();
    let srv = Server::builder()
        .data(first.data.clone())
        .args(["--max-concurrent-requests", "1", "--request-timeout", "1"])
        .start()
        .await;
    let mut reader = srv.client().await;
    let stalled = ok(reader.stream_document(get_doc("big")).await);
    let mut c = srv.client().await;
    let mut refused = false;
    let t0 = Instant::now();
    loop {
        match c.health(pb::HealthRequest {}).await {
            Err(s) if s.code() == Code::ResourceExhausted => refused = true,
            Err(s) => panic!("unexpected {s:?}"),
            Ok(_) => break,
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the stalled stream's place was never given back\n{}",
            srv.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the stalled stream did not hold the only place");
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "place given back after {:?}, before the stall timeout",
        t0.elapsed()
    );
    // A client that reads late sees the stream end with an error, not as
    // a complete document.
    let mut stalled = stalled;
    let mut nodes = 0;
    let end = loop {
        match stalled.message().await {
            Ok(Some(chunk)) => nodes += chunk.nodes.len(),
            Ok(None) => break None,
            Err(s) => break Some(s),
        }
    };
    assert!(nodes < 20_000, "the whole document arrived");
    let end = end.expect("a cut-short stream ended as if complete");
    assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
}

/// With a cap of one request, a request whose deadline passed keeps its place
/// until its blocking work has finished: the next request is refused
/// meanwhile, and the work (a document store) still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_outliving_its_deadline_keeps_its_place_under_the_cap() {
    let srv = Server::builder()
        .args(["--max-concurrent-requests", "1"])
        .start()
        .await;
    let mut c = srv.client().await;
    // Calibrate: how long does storing the document take here?
    let mut nodes = 20_000;
    let mut took;
    loop {
        let t0 = Instant::now();
        ok(c.store_document(big_doc("calibrate", nodes, 10)).await);
        took = t0.elapsed();
        if took >= Duration::from_millis(600) || nodes >= 160_000 {
            break;
        }
        nodes *= 2;
    }
    let mut refused = false;
    for attempt in 0..3 {
        let policy = format!("big{attempt}");
        let mut req = Request::new(big_doc(&policy, nodes, 10));
        req.set_timeout(took / 3);
        match c.store_document(req).await {
            // The client's own timer may give up first (CANCELLED).
            Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled) => {}
            other => panic!("expected DEADLINE_EXCEEDED, got {other:?}"),
        }
        // Past the server's own timer for the request (the client's may
        // fire a little earlier): only the blocking work can hold the place.
        tokio::time::sleep(Duration::from_millis(50)).await;
        match c.health(pb::HealthRequest {}).await {
            Err(s) if s.code() == Code::ResourceExhausted => {
                refused = true;
            }
            Err(s) => panic!("unexpected {s:?}"),
            Ok(_) => continue,
        }
        // The place comes back once the store has finished, and it did
        // finish.
        let t0 = Instant::now();
        while c.health(pb::HealthRequest {}).await.is_err() {
            assert!(t0.elapsed() < Duration::from_secs(60), "never admitted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let doc = ok(c
            .get_node(pb::GetNodeRequest {
                policy_id: policy.clone(),
                node_id: "n0".into(),
                version_id: String::new(),
            })
            .await);
        assert_eq!(doc.node.unwrap().node_id, "n0");
        break;
    }
    assert!(
        refused,
        "a request was admitted while the timed-out store (~{took:?}) still ran"
    );
}

/// A metrics port that cannot be bound fails the start: non-zero exit and a
/// message naming the port.
#[test]
fn an_unbindable_metrics_port_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--port", &free_port().to_string()])
        .args(["--metrics-port", &port.to_string()]);
    for (k, _) in std::env::vars() {
        if k.starts_with("TREESTORE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server kept running without its metrics port");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "exit status {status}: {stderr}");
    assert!(
        stderr.contains("metrics port") && stderr.contains(&format!(":{port}")),
        "{stderr}"
    );
    drop(taken);
}
