//! Readers never see a partial document: several clients read (GetDocument,
//! StreamDocument, GetSubtree, GetChildren, SearchByKeyword, by the version
//! in force and by explicit version) while others keep re-storing versions
//! of the same policy with different node counts and contents.
//!
//! Store number g ("generation") writes version `v{g % VERSIONS}` with
//! `count(g)` nodes titled `g{g} node {i}`, each with the word "clause" in
//! its text, and document metadata `gen = g`. So every result says which
//! generation it must be entirely from, and how many nodes that has.
//!
//! Default: 4 seconds of load; `TREESTORE_SCALE=N` runs N times as long.

mod grpc_common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grpc_common::*;
use tokio_stream::StreamExt;
use treestore_server::pb;

const POLICY: &str = "pol";
const VERSIONS: u64 = 4;
const WRITERS: usize = 2;
const READERS: usize = 4;

fn count(g: u64) -> usize {
    20 + (g as usize * 37) % 181
}

fn store_gen(g: u64) -> pb::StoreDocumentRequest {
    let mut nodes = tree(count(g), 3, |i| format!("g{g} node {i}"));
    for n in &mut nodes {
        n.text = format!("clause of generation {g}");
    }
    let mut req = store_req(POLICY, &format!("v{}", g % VERSIONS), nodes);
    let d = req.document.as_mut().unwrap();
    d.metadata.insert("gen".into(), g.to_string());
    req
}

/// The generation a title is from.
fn gen_of(title: &str) -> u64 {
    title
        .strip_prefix('g')
        .and_then(|t| t.split(' ').next())
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("title without a generation marker: {title:?}"))
}

/// All nodes are from one generation g (of version `v{g % VERSIONS}`), and
/// there are `count(g)` of them when `whole`; returns g.
fn check_nodes(what: &str, nodes: &[pb::Node], whole: bool) -> u64 {
    assert!(!nodes.is_empty(), "{what}: no nodes");
    let g = gen_of(&nodes[0].title);
    let version = format!("v{}", g % VERSIONS);
    for n in nodes {
        assert_eq!(
            gen_of(&n.title),
            g,
            "{what}: generations mixed: {:?} among generation {g}",
            n.title
        );
        assert_eq!(n.version_id, version, "{what}: {:?}", n.title);
        assert_eq!(n.text, format!("clause of generation {g}"), "{what}");
    }
    if whole {
        assert_eq!(
            nodes.len(),
            count(g),
            "{what}: generation {g} has {} nodes, got {}",
            count(g),
            nodes.len()
        );
        let ids: BTreeSet<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids.len(), nodes.len(), "{what}: repeated nodes");
    }
    g
}

/// Checks a whole document: its metadata names the generation of every node.
fn check_document(what: &str, doc: &pb::Document, nodes: &[pb::Node], version: &str) -> u64 {
    let g: u64 = doc.metadata["gen"].parse().unwrap();
    assert_eq!(doc.version_id, format!("v{}", g % VERSIONS), "{what}");
    if !version.is_empty() {
        assert_eq!(doc.version_id, version, "{what}");
    }
    assert_eq!(
        check_nodes(what, nodes, true),
        g,
        "{what}: document of generation {g} with nodes of another"
    );
    assert_eq!(ids(nodes), tree_preorder(count(g), 3), "{what}: order");
    g
}

#[derive(Default)]
struct Seen {
    reads: AtomicU64,
    gens: std::sync::Mutex<BTreeSet<u64>>,
}

impl Seen {
    fn saw(&self, g: u64) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.gens.lock().unwrap().insert(g);
    }
}

async fn read_once(c: &mut Client, round: u64, seen: &Seen) {
    let version = if round % 3 == 2 {
        format!("v{}", round % VERSIONS)
    } else {
        String::new()
    };
    let what = |rpc: &str| format!("{rpc} (version {version:?})");
    match round % 5 {
        0 => {
            let r = ok(c
                .get_document(pb::GetDocumentRequest {
                    policy_id: POLICY.into(),
                    version_id: version.clone(),
                })
                .await);
            let g = check_document(
                &what("GetDocument"),
                &r.document.unwrap(),
                &r.nodes,
                &version,
            );
            seen.saw(g);
        }
        1 => {
            let mut s = ok(c
                .stream_document(pb::GetDocumentRequest {
                    policy_id: POLICY.into(),
                    version_id: version.clone(),
                })
                .await);
            let mut doc = None;
            let mut nodes = Vec::new();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.expect("stream chunk");
                if chunk.document.is_some() {
                    assert!(doc.is_none(), "two documents in one stream");
                    doc = chunk.document;
                }
                nodes.extend(chunk.nodes);
            }
            let g = check_document(&what("StreamDocument"), &doc.unwrap(), &nodes, &version);
            seen.saw(g);
        }
        2 => {
            let r = ok(c
                .get_subtree(pb::GetSubtreeRequest {
                    policy_id: POLICY.into(),
                    node_id: "n0".into(),
                    max_depth: 0,
                    version_id: version.clone(),
                })
                .await);
            let g = check_nodes(&what("GetSubtree"), &r.nodes, true);
            let expect: Vec<String> = (0..count(g)).map(|i| format!("n{i}")).collect();
            assert_eq!(ids(&r.nodes), expect, "GetSubtree order");
            seen.saw(g);
        }
        3 => {
            let r = ok(c
                .search_by_keyword(pb::SearchRequest {
                    policy_id: POLICY.into(),
                    query: "clause".into(),
                    limit: 10_000,
                    version_id: version.clone(),
                })
                .await);
            let nodes: Vec<pb::Node> = r
                .results
                .iter()
                .map(|h| {
                    assert_eq!(h.policy_id, POLICY);
                    h.node.clone().unwrap()
                })
                .collect();
            let g = check_nodes(&what("SearchByKeyword"), &nodes, true);
            assert!(r
                .results
                .iter()
                .all(|h| h.version_id == nodes[0].version_id));
            seen.saw(g);
        }
        _ => {
            let r = ok(c
                .get_children(pb::GetChildrenRequest {
                    policy_id: POLICY.into(),
                    parent_id: "n0".into(),
                    version_id: version.clone(),
                })
                .await);
            let g = check_nodes(&what("GetChildren"), &r.children, false);
            assert_eq!(ids(&r.children), ["n1", "n2", "n3"]);
            seen.saw(g);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_document() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    // Every version exists before the readers start.
    for g in 0..VERSIONS {
        ok(c.store_document(store_gen(g)).await);
    }
    let next_gen = Arc::new(AtomicU64::new(VERSIONS));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());

    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let mut c = srv.client().await;
        let (next_gen, stop) = (next_gen.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut stored = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = next_gen.fetch_add(1, Ordering::Relaxed);
                let r = ok(c.store_document(store_gen(g)).await);
                assert_eq!(r.node_count, count(g) as i64);
                stored += 1;
            }
            stored
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let mut c = srv.client().await;
        let (stop, seen) = (stop.clone(), seen.clone());
        readers.push(tokio::spawn(async move {
            let mut round = r as u64;
            while !stop.load(Ordering::Relaxed) {
                read_once(&mut c, round, &seen).await;
                round += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(4 * scale())).await;
    stop.store(true, Ordering::Relaxed);
    let mut stored = 0;
    for w in writers {
        stored += w.await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    let reads = seen.reads.load(Ordering::Relaxed);
    let gens = seen.gens.lock().unwrap().len();
    eprintln!("{stored} stores, {reads} checked reads over {gens} generations");
    assert!(stored >= 10, "only {stored} stores");
    assert!(reads >= 50, "only {reads} reads");
    assert!(gens >= 5, "the readers saw only {gens} generations");

    // Quiet again: the version in force is the last one stored.
    let last = next_gen.load(Ordering::Relaxed) - 1;
    let r = ok(c
        .get_document(pb::GetDocumentRequest {
            policy_id: POLICY.into(),
            version_id: String::new(),
        })
        .await);
    let g = check_document("final GetDocument", &r.document.unwrap(), &r.nodes, "");
    assert!(
        g + WRITERS as u64 > last,
        "generation {g} in force, {last} stored last"
    );
    let s = ok(c.stats(pb::StatsRequest {}).await);
    assert_eq!(s.total_versions, VERSIONS as i64);
}
