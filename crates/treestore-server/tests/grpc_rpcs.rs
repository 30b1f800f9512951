//! Every RPC of `proto/treestore.proto` over the wire against the real
//! `treestore serve` binary: the normal path and the bad inputs the contract
//! lists (status code, and for INVALID_ARGUMENT the field named in the
//! message), plus deadlines, server reflection and the metrics port.

mod grpc_common;

use std::collections::BTreeMap;
use std::time::Duration;

use grpc_common::*;
use tokio_stream::StreamExt;
use tonic::{Code, Request};
use treestore_server::pb;

/// The shared small document (policy `pol`, version `v1`), given children
/// before parents:
///
/// ```text
/// r  "Coverage rules" p1-10      1
///   a  "Eligibility" p1-4        1.1
///     a1 "Age limits" p1-2       1.1.1
///     a2 "Residency" p3-4        1.1.2
///   b  "Exclusions" p5-10        1.2
///     b1 "Cosmetic surgery" p5-6 1.2.1
/// t2 "Appendix" p11-12           2
/// ```
fn small_doc_nodes() -> Vec<pb::Node> {
    let n = |id: &str, parent: &str, title: &str, p0: i32, p1: i32, text: &str| pb::Node {
        node_id: id.into(),
        parent_id: parent.into(),
        title: title.into(),
        page_start: p0,
        page_end: p1,
        text: text.into(),
        ..Default::default()
    };
    vec![
        n(
            "a1",
            "a",
            "Age limits",
            1,
            2,
            "members must be eighteen years old",
        ),
        n(
            "b1",
            "b",
            "Cosmetic surgery",
            5,
            6,
            "cosmetic procedures are excluded",
        ),
        n("r", "", "Coverage rules", 1, 10, "general coverage rules"),
        n("a", "r", "Eligibility", 1, 4, "who is eligible"),
        n(
            "a2",
            "a",
            "Residency",
            3,
            4,
            "members must reside in the state",
        ),
        n("b", "r", "Exclusions", 5, 10, "what is not covered"),
        n("t2", "", "Appendix", 11, 12, "glossary of terms"),
    ]
}

const PREORDER: [&str; 7] = ["r", "a", "a1", "a2", "b", "b1", "t2"];

async fn store_small(c: &mut Client, policy: &str, version: &str) {
    let r = ok(c
        .store_document(store_req(policy, version, small_doc_nodes()))
        .await);
    assert!(r.success);
    assert_eq!(r.node_count, 7);
}

/// The small reads (node, children, ancestors, page) first run inline with
/// reads limited to the buffer pool; on a restarted server (empty pool) they
/// fall back to reading the disk and still answer correctly, and once the
/// pages are cached the same read needs no fallback. The cache-only attempt
/// never shows up as an error, neither to the client nor in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_reads_on_a_cold_pool_fall_back_to_the_disk() {
    let mut srv = Server::start().await;
    let mut c = srv.client().await;
    ok(c.store_document(store_req("pol", "v1", small_doc_nodes()))
        .await);
    drop(c);
    srv.stop();
    srv.restart().await;
    let mut c = srv.client().await;
    let node = |id: &str| pb::GetNodeRequest {
        policy_id: "pol".into(),
        node_id: id.into(),
        version_id: String::new(),
    };
    for _ in 0..2 {
        let r = ok(c.get_node(node("a1")).await);
        assert_eq!(r.node.unwrap().title, "Age limits");
    }
    let r = ok(c
        .get_children(pb::GetChildrenRequest {
            policy_id: "pol".into(),
            parent_id: "a".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(ids(&r.children), ["a1", "a2"]);
    let r = ok(c
        .get_ancestor_path(pb::GetAncestorPathRequest {
            policy_id: "pol".into(),
            node_id: "b1".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(ids(&r.ancestors), ["r", "b", "b1"]);
    let r = ok(c
        .get_nodes_by_page(pb::GetNodesByPageRequest {
            policy_id: "pol".into(),
            page_number: 5,
            version_id: String::new(),
        })
        .await);
    assert_eq!(ids(&r.nodes), ["r", "b", "b1"]);
    assert_code(c.get_node(node("nosuch")).await, Code::NotFound);

    let (code, body) = srv.http_get("/metrics");
    assert_eq!(code, 200, "{body}");
    let fallbacks = body
        .lines()
        .find(|l| {
            l.starts_with("treestore_grpc_disk_fallbacks_total{") && l.contains("rpc=\"GetNode\"")
        })
        .unwrap_or_else(|| panic!("no GetNode fallback counter in:\n{body}"));
    // The first read of a1 went to the disk; the second was served inline.
    assert!(fallbacks.ends_with(" 1"), "{fallbacks}");
    let log = srv.stderr();
    assert!(!log.contains("not in the buffer pool"), "{log}");
    assert!(!log.contains("internal error"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_get_and_delete_documents() {
    let srv = Server::start().await;
    let mut c = srv.client().await;

    let mut req = store_req("pol", "v1", small_doc_nodes());
    let d = req.document.as_mut().unwrap();
    d.pageindex_doc_id = "pi-123".into();
    d.root_node_id = "r".into();
    d.metadata.insert("source".into(), "unit test".into());
    let r = ok(c.store_document(req).await);
    assert!(r.success, "{r:?}");
    assert_eq!(r.node_count, 7);
    assert!(!r.message.is_empty());

    let got = ok(c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
        })
        .await);
    let d = got.document.unwrap();
    assert_eq!((d.policy_id.as_str(), d.version_id.as_str()), ("pol", "v1"));
    assert_eq!(d.pageindex_doc_id, "pi-123");
    assert_eq!(d.root_node_id, "r");
    assert_eq!(
        d.metadata.get("source").map(String::as_str),
        Some("unit test")
    );
    assert!(d.created_at.is_some() && d.updated_at.is_some());
    assert_eq!(ids(&got.nodes), PREORDER);
    let by_id: BTreeMap<_, _> = got.nodes.iter().map(|n| (n.node_id.as_str(), n)).collect();
    let expect = [
        ("r", 0, "1"),
        ("a", 1, "1.1"),
        ("a1", 2, "1.1.1"),
        ("a2", 2, "1.1.2"),
        ("b", 1, "1.2"),
        ("b1", 2, "1.2.1"),
        ("t2", 0, "2"),
    ];
    for (id, depth, path) in expect {
        let n = by_id[id];
        assert_eq!(n.depth, depth, "{id}");
        assert_eq!(n.section_path, path, "{id}");
        assert_eq!(n.policy_id, "pol");
        assert_eq!(n.version_id, "v1");
        assert!(n.created_at.is_some(), "{id} created_at");
    }
    assert_eq!(by_id["r"].child_ids, ["a", "b"]);
    assert_eq!(by_id["a"].child_ids, ["a1", "a2"]);
    assert_eq!(by_id["a1"].parent_id, "a");
    assert_eq!(by_id["r"].parent_id, "");
    assert_eq!(by_id["a2"].text, "members must reside in the state");
    assert_eq!((by_id["b"].page_start, by_id["b"].page_end), (5, 10));

    // Bad StoreDocument inputs.
    let e = c.store_document(pb::StoreDocumentRequest::default()).await;
    assert_status(e, Code::InvalidArgument, "document");
    let e = c
        .store_document(store_req("", "v1", small_doc_nodes()))
        .await;
    assert_status(e, Code::InvalidArgument, "document.policy_id");
    let e = c
        .store_document(store_req("pol", "", small_doc_nodes()))
        .await;
    assert_status(e, Code::InvalidArgument, "document.version_id");
    let mut bad_root = store_req("pol", "v9", small_doc_nodes());
    bad_root.document.as_mut().unwrap().root_node_id = "a1".into();
    let e = c.store_document(bad_root).await;
    assert_status(e, Code::InvalidArgument, "document.root_node_id");
    let mut orphan = small_doc_nodes();
    orphan.push(node("lost", "nosuchparent", "Lost"));
    let e = c.store_document(store_req("pol", "v9", orphan)).await;
    assert_status(e, Code::InvalidArgument, "lost");
    let mut pages = small_doc_nodes();
    pages[0].page_start = 9;
    pages[0].page_end = 2;
    let e = c.store_document(store_req("pol", "v9", pages)).await;
    assert_status(e, Code::InvalidArgument, "a1");
    let mut negative = small_doc_nodes();
    negative[3].page_start = -1;
    let e = c.store_document(store_req("pol", "v9", negative)).await;
    assert_status(e, Code::InvalidArgument, "page_start");
    let mut dup = small_doc_nodes();
    dup.push(node("a2", "r", "Duplicate"));
    let e = c.store_document(store_req("pol", "v9", dup)).await;
    assert_status(e, Code::InvalidArgument, "a2");
    let mut empty_id = small_doc_nodes();
    empty_id.push(node("", "r", "No id"));
    let e = c.store_document(store_req("pol", "v9", empty_id)).await;
    assert_code(e, Code::InvalidArgument);
    let mut other_policy = small_doc_nodes();
    other_policy[2].policy_id = "other".into();
    let e = c.store_document(store_req("pol", "v9", other_policy)).await;
    assert_status(e, Code::InvalidArgument, "policy_id");
    let mut sup = store_req("pol", "v9", small_doc_nodes());
    sup.supersedes_version_id = "v9".into();
    let e = c.store_document(sup).await;
    assert_status(e, Code::InvalidArgument, "supersedes_version_id");
    // None of the failed stores left anything behind.
    let e = c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: "v9".into(),
        })
        .await;
    assert_code(e, Code::NotFound);

    // Bad GetDocument inputs.
    let e = c.get_document(pb::GetDocumentRequest::default()).await;
    assert_status(e, Code::InvalidArgument, "policy_id");
    let e = c
        .get_document(pb::GetDocumentRequest {
            policy_id: "nosuch".into(),
            version_id: String::new(),
        })
        .await;
    assert_code(e, Code::NotFound);

    // Re-storing the same version replaces it.
    let r = ok(c
        .store_document(store_req(
            "pol",
            "v1",
            vec![node("only", "", "The only node")],
        ))
        .await);
    assert_eq!(r.node_count, 1);
    let got = ok(c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
        })
        .await);
    assert_eq!(ids(&got.nodes), ["only"]);
    let e = c
        .get_node(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "a1".into(),
            version_id: "v1".into(),
        })
        .await;
    assert_code(e, Code::NotFound);

    // Delete one version, then every version.
    store_small(&mut c, "pol", "v2").await;
    let e = c
        .delete_document(pb::DeleteDocumentRequest::default())
        .await;
    assert_status(e, Code::InvalidArgument, "policy_id");
    let r = ok(c
        .delete_document(pb::DeleteDocumentRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
        })
        .await);
    assert!(r.success && r.message.contains("v1"), "{r:?}");
    let e = c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
        })
        .await;
    assert_code(e, Code::NotFound);
    let e = c
        .delete_document(pb::DeleteDocumentRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
        })
        .await;
    assert_code(e, Code::NotFound);
    let vs = ok(c
        .list_versions(pb::ListVersionsRequest {
            policy_id: "pol".into(),
            limit: 0,
        })
        .await);
    assert_eq!(
        vs.versions
            .iter()
            .map(|v| v.version_id.as_str())
            .collect::<Vec<_>>(),
        ["v2"],
        "the deleted version's PolicyVersion record goes too"
    );
    store_small(&mut c, "pol", "v3").await;
    let r = ok(c
        .delete_document(pb::DeleteDocumentRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
        })
        .await);
    assert!(
        r.message.contains("v2") && r.message.contains("v3"),
        "{r:?}"
    );
    let e = c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
        })
        .await;
    assert_code(e, Code::NotFound);
    let e = c
        .delete_document(pb::DeleteDocumentRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
        })
        .await;
    assert_code(e, Code::NotFound);
    let vs = ok(c
        .list_versions(pb::ListVersionsRequest {
            policy_id: "pol".into(),
            limit: 0,
        })
        .await);
    assert!(vs.versions.is_empty(), "{vs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_queries() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_small(&mut c, "pol", "v1").await;
    let p = || "pol".to_string();

    // GetNode.
    let n = ok(c
        .get_node(pb::GetNodeRequest {
            policy_id: p(),
            node_id: "a2".into(),
            version_id: String::new(),
        })
        .await)
    .node
    .unwrap();
    assert_eq!((n.node_id.as_str(), n.title.as_str()), ("a2", "Residency"));
    assert_eq!((n.policy_id.as_str(), n.version_id.as_str()), ("pol", "v1"));
    assert_eq!((n.parent_id.as_str(), n.depth), ("a", 2));
    let e = c
        .get_node(pb::GetNodeRequest {
            policy_id: p(),
            node_id: "nosuch".into(),
            version_id: String::new(),
        })
        .await;
    assert_code(e, Code::NotFound);
    let e = c
        .get_node(pb::GetNodeRequest {
            policy_id: p(),
            node_id: String::new(),
            version_id: String::new(),
        })
        .await;
    assert_status(e, Code::InvalidArgument, "node_id");
    let e = c
        .get_node(pb::GetNodeRequest {
            policy_id: String::new(),
            node_id: "a".into(),
            version_id: String::new(),
        })
        .await;
    assert_status(e, Code::InvalidArgument, "policy_id");
    let e = c
        .get_node(pb::GetNodeRequest {
            policy_id: "nosuch".into(),
            node_id: "a".into(),
            version_id: String::new(),
        })
        .await;
    assert_code(e, Code::NotFound);

    // GetNodes: order asked, repeats repeat, missing listed.
    let r = ok(c
        .get_nodes(pb::GetNodesRequest {
            policy_id: p(),
            version_id: String::new(),
            node_ids: vec!["b1".into(), "x".into(), "r".into(), "b1".into(), "y".into()],
        })
        .await);
    assert_eq!(ids(&r.nodes), ["b1", "r", "b1"]);
    assert_eq!(r.missing_ids, ["x", "y"]);
    assert!(r.nodes.iter().all(|n| n.version_id == "v1"));
    let r = ok(c
        .get_nodes(pb::GetNodesRequest {
            policy_id: p(),
            version_id: String::new(),
            node_ids: vec![],
        })
        .await);
    assert!(r.nodes.is_empty() && r.missing_ids.is_empty());
    let e = c
        .get_nodes(pb::GetNodesRequest {
            policy_id: p(),
            version_id: String::new(),
            node_ids: vec!["a".into(), String::new()],
        })
        .await;
    assert_status(e, Code::InvalidArgument, "node_ids");
    let e = c
        .get_nodes(pb::GetNodesRequest {
            policy_id: String::new(),
            version_id: String::new(),
            node_ids: vec!["a".into()],
        })
        .await;
    assert_status(e, Code::InvalidArgument, "policy_id");
    let e = c
        .get_nodes(pb::GetNodesRequest {
            policy_id: "nosuch".into(),
            version_id: String::new(),
            node_ids: vec!["a".into()],
        })
        .await;
    assert_code(e, Code::NotFound);

    // GetChildren: empty parent = top level.
    let children = |parent: &str| pb::GetChildrenRequest {
        policy_id: p(),
        parent_id: parent.into(),
        version_id: String::new(),
    };
    let r = ok(c.get_children(children("")).await);
    assert_eq!(ids(&r.children), ["r", "t2"]);
    let r = ok(c.get_children(children("r")).await);
    assert_eq!(ids(&r.children), ["a", "b"]);
    let r = ok(c.get_children(children("a")).await);
    assert_eq!(ids(&r.children), ["a1", "a2"]);
    let r = ok(c.get_children(children("a1")).await);
    assert!(r.children.is_empty());
    assert_code(c.get_children(children("nosuch")).await, Code::NotFound);
    let e = c
        .get_children(pb::GetChildrenRequest {
            policy_id: String::new(),
            parent_id: "r".into(),
            version_id: String::new(),
        })
        .await;
    assert_status(e, Code::InvalidArgument, "policy_id");

    // GetSubtree: breadth-first, max_depth.
    let subtree = |id: &str, depth: i32| pb::GetSubtreeRequest {
        policy_id: p(),
        node_id: id.into(),
        max_depth: depth,
        version_id: String::new(),
    };
    let r = ok(c.get_subtree(subtree("r", 0)).await);
    assert_eq!(ids(&r.nodes), ["r", "a", "b", "a1", "a2", "b1"]);
    let r = ok(c.get_subtree(subtree("r", 1)).await);
    assert_eq!(ids(&r.nodes), ["r", "a", "b"]);
    let r = ok(c.get_subtree(subtree("a", 5)).await);
    assert_eq!(ids(&r.nodes), ["a", "a1", "a2"]);
    let r = ok(c.get_subtree(subtree("t2", 0)).await);
    assert_eq!(ids(&r.nodes), ["t2"]);
    assert_status(
        c.get_subtree(subtree("r", -1)).await,
        Code::InvalidArgument,
        "max_depth",
    );
    assert_code(c.get_subtree(subtree("nosuch", 0)).await, Code::NotFound);
    assert_status(
        c.get_subtree(subtree("", 0)).await,
        Code::InvalidArgument,
        "node_id",
    );

    // GetAncestorPath.
    let anc = |id: &str| pb::GetAncestorPathRequest {
        policy_id: p(),
        node_id: id.into(),
        version_id: String::new(),
    };
    let r = ok(c.get_ancestor_path(anc("a2")).await);
    assert_eq!(ids(&r.ancestors), ["r", "a", "a2"]);
    let r = ok(c.get_ancestor_path(anc("t2")).await);
    assert_eq!(ids(&r.ancestors), ["t2"]);
    assert_code(c.get_ancestor_path(anc("nosuch")).await, Code::NotFound);
    assert_status(
        c.get_ancestor_path(anc("")).await,
        Code::InvalidArgument,
        "node_id",
    );

    // GetNodesByPage.
    let page = |n: i32| pb::GetNodesByPageRequest {
        policy_id: p(),
        page_number: n,
        version_id: String::new(),
    };
    let r = ok(c.get_nodes_by_page(page(5)).await);
    assert_eq!(ids(&r.nodes), ["r", "b", "b1"]);
    let r = ok(c.get_nodes_by_page(page(2)).await);
    assert_eq!(ids(&r.nodes), ["r", "a", "a1"]);
    let r = ok(c.get_nodes_by_page(page(12)).await);
    assert_eq!(ids(&r.nodes), ["t2"]);
    let r = ok(c.get_nodes_by_page(page(99)).await);
    assert!(r.nodes.is_empty());
    assert_status(
        c.get_nodes_by_page(page(-1)).await,
        Code::InvalidArgument,
        "page_number",
    );
    let e = c
        .get_nodes_by_page(pb::GetNodesByPageRequest {
            policy_id: "nosuch".into(),
            page_number: 1,
            version_id: String::new(),
        })
        .await;
    assert_code(e, Code::NotFound);

    // GetBySectionPath.
    let sp = |path: &str| pb::GetBySectionPathRequest {
        policy_id: p(),
        version_id: String::new(),
        section_path: path.into(),
    };
    let n = ok(c.get_by_section_path(sp("1.1.2")).await).node.unwrap();
    assert_eq!(n.node_id, "a2");
    let n = ok(c.get_by_section_path(sp("2")).await).node.unwrap();
    assert_eq!(n.node_id, "t2");
    assert_code(c.get_by_section_path(sp("7.7")).await, Code::NotFound);
    // An empty section_path: see get_by_section_path_requires_section_path.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_search() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_small(&mut c, "pol", "v1").await;
    let mut other = vec![
        node("x", "", "Members handbook"),
        node("y", "x", "Dental cover"),
    ];
    other[0].text = "every member gets a handbook".into();
    other[1].text = "dental cleanings twice a year".into();
    other[1].keywords = vec!["orthodontics".into()];
    ok(c.store_document(store_req("other", "2024", other)).await);
    let search = |policy: &str, q: &str, limit: i32| pb::SearchRequest {
        policy_id: policy.into(),
        query: q.into(),
        limit,
        version_id: String::new(),
    };

    // One policy.
    let r = ok(c.search_by_keyword(search("pol", "members", 0)).await);
    let hits: Vec<_> = r
        .results
        .iter()
        .map(|h| h.node.as_ref().unwrap().node_id.as_str())
        .collect();
    let mut sorted = hits.clone();
    sorted.sort();
    assert_eq!(sorted, ["a1", "a2"], "{r:?}");
    for h in &r.results {
        assert_eq!((h.policy_id.as_str(), h.version_id.as_str()), ("pol", "v1"));
        let n = h.node.as_ref().unwrap();
        assert_eq!((n.policy_id.as_str(), n.version_id.as_str()), ("pol", "v1"));
        assert!(h.score > 0.0);
    }
    assert!(
        r.results.windows(2).all(|w| w[0].score >= w[1].score),
        "best first: {r:?}"
    );
    let r = ok(c.search_by_keyword(search("pol", "members", 1)).await);
    assert_eq!(r.results.len(), 1);
    let r = ok(c.search_by_keyword(search("pol", "cosmetic", 0)).await);
    assert_eq!(r.results[0].node.as_ref().unwrap().node_id, "b1");
    // Keywords are searched.
    let r = ok(c
        .search_by_keyword(search("other", "orthodontics", 0))
        .await);
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].node.as_ref().unwrap().node_id, "y");
    let r = ok(c.search_by_keyword(search("pol", "orthodontics", 0)).await);
    assert!(r.results.is_empty());

    // Every policy.
    let r = ok(c.search_by_keyword(search("", "members", 0)).await);
    let mut got: Vec<_> = r
        .results
        .iter()
        .map(|h| {
            assert_eq!(h.node.as_ref().unwrap().policy_id, h.policy_id);
            format!(
                "{}/{}/{}",
                h.policy_id,
                h.version_id,
                h.node.as_ref().unwrap().node_id
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, ["other/2024/x", "pol/v1/a1", "pol/v1/a2"], "{r:?}");

    // Bad inputs.
    assert_status(
        c.search_by_keyword(search("pol", "", 0)).await,
        Code::InvalidArgument,
        "query",
    );
    assert_status(
        c.search_by_keyword(search("pol", "   ", 0)).await,
        Code::InvalidArgument,
        "query",
    );
    assert_status(
        c.search_by_keyword(search("pol", "members", -1)).await,
        Code::InvalidArgument,
        "limit",
    );
    assert_status(
        c.search_by_keyword(search("pol", "members", 10_001)).await,
        Code::InvalidArgument,
        "limit",
    );
    let r = ok(c.search_by_keyword(search("pol", "members", 10_000)).await);
    assert_eq!(r.results.len(), 2);
    let e = c
        .search_by_keyword(pb::SearchRequest {
            policy_id: String::new(),
            query: "members".into(),
            limit: 0,
            version_id: "v1".into(),
        })
        .await;
    assert_status(e, Code::InvalidArgument, "version_id");
    assert_code(
        c.search_by_keyword(search("nosuch", "members", 0)).await,
        Code::NotFound,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_nodes_adds_replaces_and_is_atomic() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_small(&mut c, "pol", "v1").await;

    // Add a child of `a` and replace `b1`.
    let mut added = node("a3", "a", "Zanzibar residents");
    added.text = "special rule for zanzibar".into();
    let mut replaced = node("b1", "b", "Experimental treatments");
    replaced.page_start = 5;
    replaced.page_end = 6;
    replaced.text = "experimental therapies are excluded".into();
    let r = ok(c
        .insert_nodes(pb::InsertNodesRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
            nodes: vec![added, replaced],
        })
        .await);
    assert!(r.success);
    assert_eq!(r.inserted, 2);
    let kids = ok(c
        .get_children(pb::GetChildrenRequest {
            policy_id: "pol".into(),
            parent_id: "a".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(ids(&kids.children), ["a1", "a2", "a3"]);
    assert_eq!(kids.children[2].section_path, "1.1.3");
    assert_eq!(kids.children[2].depth, 2);
    let search = |q: &str| pb::SearchRequest {
        policy_id: "pol".into(),
        query: q.into(),
        limit: 0,
        version_id: String::new(),
    };
    let r = ok(c.search_by_keyword(search("zanzibar")).await);
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].node.as_ref().unwrap().node_id, "a3");
    let r = ok(c.search_by_keyword(search("experimental")).await);
    assert_eq!(r.results[0].node.as_ref().unwrap().node_id, "b1");
    let r = ok(c.search_by_keyword(search("cosmetic")).await);
    assert!(r.results.is_empty(), "old text still indexed: {r:?}");
    let n = ok(c
        .get_node(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "b1".into(),
            version_id: String::new(),
        })
        .await)
    .node
    .unwrap();
    assert_eq!(n.title, "Experimental treatments");
    let doc = ok(c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(
        ids(&doc.nodes),
        ["r", "a", "a1", "a2", "a3", "b", "b1", "t2"]
    );

    // A bad parent: INVALID_ARGUMENT and nothing changes (not even the good
    // node in the same request).
    let r = c
        .insert_nodes(pb::InsertNodesRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
            nodes: vec![
                node("good", "r", "Quokka section"),
                node("bad", "nosuchparent", "Orphan"),
            ],
        })
        .await;
    assert_status(r, Code::InvalidArgument, "bad");
    let after = ok(c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(ids(&after.nodes), ids(&doc.nodes));
    let r = ok(c.search_by_keyword(search("quokka")).await);
    assert!(r.results.is_empty());

    // Other bad inputs.
    let e = c
        .insert_nodes(pb::InsertNodesRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
            nodes: vec![node("z", "r", "Z")],
        })
        .await;
    assert_status(e, Code::InvalidArgument, "version_id");
    let e = c
        .insert_nodes(pb::InsertNodesRequest {
            policy_id: String::new(),
            version_id: "v1".into(),
            nodes: vec![node("z", "r", "Z")],
        })
        .await;
    assert_status(e, Code::InvalidArgument, "policy_id");
    let e = c
        .insert_nodes(pb::InsertNodesRequest {
            policy_id: "pol".into(),
            version_id: "v7".into(),
            nodes: vec![node("z", "r", "Z")],
        })
        .await;
    assert_code(e, Code::NotFound);
    let r = ok(c
        .insert_nodes(pb::InsertNodesRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
            nodes: vec![],
        })
        .await);
    assert_eq!(r.inserted, 0);
}

/// A 3,000-node document arrives complete and in order, across several
/// messages, from StreamDocument and StreamSubtree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_deliver_large_documents_in_order() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    const N: usize = 3000;
    let nodes = tree(N, 7, |i| format!("section number {i}"));
    let r = ok(c.store_document(store_req("big", "v1", nodes)).await);
    assert_eq!(r.node_count, N as i64);

    let mut stream = ok(c
        .stream_document(pb::GetDocumentRequest {
            policy_id: "big".into(),
            version_id: String::new(),
        })
        .await);
    let mut chunks = 0;
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("stream chunk");
        if chunks == 0 {
            let d = chunk
                .document
                .as_ref()
                .expect("document in the first chunk");
            assert_eq!((d.policy_id.as_str(), d.version_id.as_str()), ("big", "v1"));
        } else {
            assert!(chunk.document.is_none(), "document only in the first chunk");
        }
        chunks += 1;
        got.extend(chunk.nodes);
    }
    assert!(chunks >= 3, "{chunks} chunks");
    assert_eq!(got.len(), N);
    assert_eq!(ids(&got), tree_preorder(N, 7));
    for n in &got {
        let i: usize = n.node_id[1..].parse().unwrap();
        assert_eq!(n.title, format!("section number {i}"));
        assert_eq!(n.version_id, "v1");
    }
    let whole = ok(c
        .get_document(pb::GetDocumentRequest {
            policy_id: "big".into(),
            version_id: String::new(),
        })
        .await);
    assert_eq!(whole.nodes, got, "GetDocument and StreamDocument agree");

    let req = pb::GetSubtreeRequest {
        policy_id: "big".into(),
        node_id: "n0".into(),
        max_depth: 0,
        version_id: String::new(),
    };
    let mut stream = ok(c.stream_subtree(req.clone()).await);
    let mut batches = 0;
    let mut got = Vec::new();
    while let Some(b) = stream.next().await {
        batches += 1;
        got.extend(b.expect("stream batch").nodes);
    }
    assert!(batches >= 3, "{batches} batches");
    let expect: Vec<String> = (0..N).map(|i| format!("n{i}")).collect();
    assert_eq!(ids(&got), expect, "breadth-first");
    let unary = ok(c.get_subtree(req).await);
    assert_eq!(unary.nodes, got, "GetSubtree and StreamSubtree agree");

    // A subtree with a depth limit.
    let mut stream = ok(c
        .stream_subtree(pb::GetSubtreeRequest {
            policy_id: "big".into(),
            node_id: "n1".into(),
            max_depth: 1,
            version_id: String::new(),
        })
        .await);
    let mut got = Vec::new();
    while let Some(b) = stream.next().await {
        got.extend(b.unwrap().nodes);
    }
    assert_eq!(
        ids(&got),
        ["n1", "n8", "n9", "n10", "n11", "n12", "n13", "n14"]
    );

    // Errors come as a status.
    async fn first_error<T>(
        r: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    ) -> tonic::Status {
        match r {
            Err(s) => s,
            Ok(r) => {
                let mut s = r.into_inner();
                match s.next().await {
                    Some(Err(e)) => e,
                    Some(Ok(_)) => panic!("a message instead of an error"),
                    None => panic!("an empty stream instead of an error"),
                }
            }
        }
    }
    let e = first_error(
        c.stream_document(pb::GetDocumentRequest {
            policy_id: "nosuch".into(),
            version_id: String::new(),
        })
        .await,
    )
    .await;
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = first_error(
        c.stream_document(pb::GetDocumentRequest {
            policy_id: String::new(),
            version_id: String::new(),
        })
        .await,
    )
    .await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("policy_id"), "{e:?}");
    let e = first_error(
        c.stream_subtree(pb::GetSubtreeRequest {
            policy_id: "big".into(),
            node_id: "n1".into(),
            max_depth: -2,
            version_id: String::new(),
        })
        .await,
    )
    .await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("max_depth"), "{e:?}");
    let e = first_error(
        c.stream_subtree(pb::GetSubtreeRequest {
            policy_id: "big".into(),
            node_id: "nosuch".into(),
            max_depth: 0,
            version_id: String::new(),
        })
        .await,
    )
    .await;
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// Every query addresses an explicit version with `version_id`, and the
/// version in force without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_id_addresses_every_query() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    // v1 in force from 2020, v2 from 2021 (so v2 is in force now).
    let mut v1 = store_req(
        "pol",
        "v1",
        vec![node("top", "", "Top"), node("x", "top", "Alpha old rule")],
    );
    v1.effective_start = Some(ts(date(2020, 1, 1)));
    let mut v2 = store_req(
        "pol",
        "v2",
        vec![
            node("top", "", "Top"),
            node("x", "top", "Beta new rule"),
            node("y", "top", "Gamma addition"),
        ],
    );
    v2.nodes[2].page_start = 3;
    v2.nodes[2].page_end = 3;
    v2.effective_start = Some(ts(date(2021, 1, 1)));
    // Store v2 first: "in force" follows the effective dates, not the order.
    ok(c.store_document(v2).await);
    ok(c.store_document(v1).await);
    let p = || "pol".to_string();

    for (version, title, top_children) in [
        ("", "Beta new rule", vec!["x", "y"]),
        ("v2", "Beta new rule", vec!["x", "y"]),
        ("v1", "Alpha old rule", vec!["x"]),
    ] {
        let expect_v = if version.is_empty() { "v2" } else { version };
        let v = || version.to_string();
        let d = ok(c
            .get_document(pb::GetDocumentRequest {
                policy_id: p(),
                version_id: v(),
            })
            .await);
        assert_eq!(d.document.unwrap().version_id, expect_v);
        assert_eq!(d.nodes.len(), top_children.len() + 1);
        let n = ok(c
            .get_node(pb::GetNodeRequest {
                policy_id: p(),
                node_id: "x".into(),
                version_id: v(),
            })
            .await)
        .node
        .unwrap();
        assert_eq!((n.title.as_str(), n.version_id.as_str()), (title, expect_v));
        let r = ok(c
            .get_nodes(pb::GetNodesRequest {
                policy_id: p(),
                version_id: v(),
                node_ids: vec!["x".into(), "y".into()],
            })
            .await);
        assert_eq!(r.nodes[0].title, title);
        assert_eq!(r.missing_ids.is_empty(), expect_v == "v2");
        let r = ok(c
            .get_children(pb::GetChildrenRequest {
                policy_id: p(),
                parent_id: "top".into(),
                version_id: v(),
            })
            .await);
        assert_eq!(ids(&r.children), top_children);
        let r = ok(c
            .get_subtree(pb::GetSubtreeRequest {
                policy_id: p(),
                node_id: "top".into(),
                max_depth: 0,
                version_id: v(),
            })
            .await);
        assert_eq!(r.nodes.len(), top_children.len() + 1);
        assert!(r.nodes.iter().all(|n| n.version_id == expect_v));
        let r = ok(c
            .get_ancestor_path(pb::GetAncestorPathRequest {
                policy_id: p(),
                node_id: "x".into(),
                version_id: v(),
            })
            .await);
        assert_eq!(r.ancestors[1].title, title);
        let r = ok(c
            .get_nodes_by_page(pb::GetNodesByPageRequest {
                policy_id: p(),
                page_number: 3,
                version_id: v(),
            })
            .await);
        assert_eq!(ids(&r.nodes).len(), usize::from(expect_v == "v2"));
        let n = ok(c
            .get_by_section_path(pb::GetBySectionPathRequest {
                policy_id: p(),
                version_id: v(),
                section_path: "1.1".into(),
            })
            .await)
        .node
        .unwrap();
        assert_eq!(n.title, title);
        let word = title.split(' ').next().unwrap().to_lowercase();
        let r = ok(c
            .search_by_keyword(pb::SearchRequest {
                policy_id: p(),
                query: word.clone(),
                limit: 0,
                version_id: v(),
            })
            .await);
        assert_eq!(r.results.len(), 1, "{word} in {expect_v}");
        assert_eq!(r.results[0].version_id, expect_v);
        let other_word = if expect_v == "v1" { "beta" } else { "alpha" };
        let r = ok(c
            .search_by_keyword(pb::SearchRequest {
                policy_id: p(),
                query: other_word.into(),
                limit: 0,
                version_id: v(),
            })
            .await);
        assert!(r.results.is_empty(), "{other_word} in {expect_v}: {r:?}");
        let mut s = ok(c
            .stream_document(pb::GetDocumentRequest {
                policy_id: p(),
                version_id: v(),
            })
            .await);
        let mut n = 0;
        while let Some(chunk) = s.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.nodes.iter().all(|n| n.version_id == expect_v));
            n += chunk.nodes.len();
        }
        assert_eq!(n, top_children.len() + 1);
        let mut s = ok(c
            .stream_subtree(pb::GetSubtreeRequest {
                policy_id: p(),
                node_id: "x".into(),
                max_depth: 0,
                version_id: v(),
            })
            .await);
        let b = s.next().await.unwrap().unwrap();
        assert_eq!(b.nodes[0].title, title);
    }

    // An unknown version is NOT_FOUND for every query.
    let v = || "v404".to_string();
    assert_code(
        c.get_document(pb::GetDocumentRequest {
            policy_id: p(),
            version_id: v(),
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.get_node(pb::GetNodeRequest {
            policy_id: p(),
            node_id: "x".into(),
            version_id: v(),
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.get_nodes(pb::GetNodesRequest {
            policy_id: p(),
            version_id: v(),
            node_ids: vec!["x".into()],
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.get_children(pb::GetChildrenRequest {
            policy_id: p(),
            parent_id: String::new(),
            version_id: v(),
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.get_subtree(pb::GetSubtreeRequest {
            policy_id: p(),
            node_id: "top".into(),
            max_depth: 0,
            version_id: v(),
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.get_ancestor_path(pb::GetAncestorPathRequest {
            policy_id: p(),
            node_id: "x".into(),
            version_id: v(),
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.get_nodes_by_page(pb::GetNodesByPageRequest {
            policy_id: p(),
            page_number: 1,
            version_id: v(),
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.get_by_section_path(pb::GetBySectionPathRequest {
            policy_id: p(),
            version_id: v(),
            section_path: "1".into(),
        })
        .await,
        Code::NotFound,
    );
    assert_code(
        c.search_by_keyword(pb::SearchRequest {
            policy_id: p(),
            query: "alpha".into(),
            limit: 0,
            version_id: v(),
        })
        .await,
        Code::NotFound,
    );
}

fn version(policy: &str, id: &str, start: Option<i64>, end: Option<i64>) -> pb::PolicyVersion {
    pb::PolicyVersion {
        policy_id: policy.into(),
        version_id: id.into(),
        effective_start: start.map(ts),
        effective_end: end.map(ts),
        ..Default::default()
    }
}

fn register(v: pb::PolicyVersion) -> pb::RegisterVersionRequest {
    pb::RegisterVersionRequest { version: Some(v) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_register_list_as_of_latest_and_diff() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let (y2020, y2021, y2099) = (date(2020, 1, 1), date(2021, 1, 1), date(2099, 1, 1));

    let mut v1 = version("pol", "v1", Some(y2020), Some(y2021));
    v1.description = "first".into();
    v1.tags = vec!["a".into(), "b".into()];
    v1.created_by = "tester".into();
    let r = ok(c.register_version(register(v1)).await);
    assert!(r.success);
    let got = r.version.unwrap();
    assert_eq!(got.effective_start, Some(ts(y2020)));
    assert_eq!(got.effective_end, Some(ts(y2021)));
    assert_eq!(got.tags, ["a", "b"]);
    assert!(got.created_at.is_some());
    let mut v2 = version("pol", "v2", Some(y2021), None);
    v2.supersedes_version_id = "v1".into();
    ok(c.register_version(register(v2)).await);
    ok(
        c.register_version(register(version("pol", "v3", Some(y2099), None)))
            .await,
    );

    let as_of = |t: Option<i64>| pb::GetVersionAsOfRequest {
        policy_id: "pol".into(),
        as_of_time: t.map(ts),
    };
    let v = ok(c.get_version_as_of(as_of(Some(date(2020, 6, 1)))).await);
    assert_eq!(v.version_id, "v1");
    assert_eq!(v.description, "first");
    assert_eq!(v.created_by, "tester");
    let v = ok(c.get_version_as_of(as_of(Some(y2021))).await);
    assert_eq!(v.version_id, "v2", "effective_end is exclusive");
    assert_eq!(v.supersedes_version_id, "v1");
    let v = ok(c.get_version_as_of(as_of(None)).await);
    assert_eq!(v.version_id, "v2", "now: v3 is not in force yet");
    let v = ok(c.get_version_as_of(as_of(Some(date(2100, 1, 1)))).await);
    assert_eq!(v.version_id, "v3");
    assert_code(
        c.get_version_as_of(as_of(Some(date(2019, 1, 1)))).await,
        Code::NotFound,
    );
    assert_status(
        c.get_version_as_of(pb::GetVersionAsOfRequest {
            policy_id: String::new(),
            as_of_time: None,
        })
        .await,
        Code::InvalidArgument,
        "policy_id",
    );
    assert_code(
        c.get_version_as_of(pb::GetVersionAsOfRequest {
            policy_id: "nosuch".into(),
            as_of_time: None,
        })
        .await,
        Code::NotFound,
    );

    let list = |limit: i32| pb::ListVersionsRequest {
        policy_id: "pol".into(),
        limit,
    };
    let l = ok(c.list_versions(list(0)).await);
    let names: Vec<_> = l.versions.iter().map(|v| v.version_id.as_str()).collect();
    assert_eq!(names, ["v3", "v2", "v1"]);
    let l = ok(c.list_versions(list(2)).await);
    assert_eq!(l.versions.len(), 2);
    assert_status(
        c.list_versions(list(-1)).await,
        Code::InvalidArgument,
        "limit",
    );
    assert_status(
        c.list_versions(pb::ListVersionsRequest {
            policy_id: String::new(),
            limit: 0,
        })
        .await,
        Code::InvalidArgument,
        "policy_id",
    );
    let l = ok(c
        .list_versions(pb::ListVersionsRequest {
            policy_id: "nosuch".into(),
            limit: 0,
        })
        .await);
    assert!(l.versions.is_empty());

    let latest = ok(c
        .get_latest_version(pb::GetLatestVersionRequest {
            policy_id: "pol".into(),
        })
        .await);
    assert_eq!(latest.version_id, "v3", "latest even if not in force");
    assert_code(
        c.get_latest_version(pb::GetLatestVersionRequest {
            policy_id: "nosuch".into(),
        })
        .await,
        Code::NotFound,
    );
    assert_status(
        c.get_latest_version(pb::GetLatestVersionRequest {
            policy_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "policy_id",
    );

    // RegisterVersion's bad inputs; nothing is registered by them.
    assert_status(
        c.register_version(register(version("pol", "v9", Some(y2021), Some(y2020))))
            .await,
        Code::InvalidArgument,
        "effective_end",
    );
    assert_status(
        c.register_version(register(version("pol", "v9", Some(y2021), Some(y2021))))
            .await,
        Code::InvalidArgument,
        "effective_end",
    );
    let mut selfsup = version("pol", "v9", Some(y2021), None);
    selfsup.supersedes_version_id = "v9".into();
    assert_status(
        c.register_version(register(selfsup)).await,
        Code::InvalidArgument,
        "supersede",
    );
    assert_status(
        c.register_version(register(version("", "v9", Some(y2021), None)))
            .await,
        Code::InvalidArgument,
        "policy_id",
    );
    assert_status(
        c.register_version(register(version("pol", "", Some(y2021), None)))
            .await,
        Code::InvalidArgument,
        "version_id",
    );
    assert_status(
        c.register_version(pb::RegisterVersionRequest { version: None })
            .await,
        Code::InvalidArgument,
        "version",
    );
    assert_eq!(ok(c.list_versions(list(0)).await).versions.len(), 3);

    // DiffVersions.
    let mut old = store_req(
        "doc",
        "a",
        vec![
            node("top", "", "Top"),
            node("same", "top", "Same"),
            node("edit", "top", "Before"),
            node("gone", "top", "Removed later"),
        ],
    );
    old.effective_start = Some(ts(y2020));
    let mut new = store_req(
        "doc",
        "b",
        vec![
            node("top", "", "Top"),
            node("same", "top", "Same"),
            node("edit", "top", "After"),
            node("new1", "top", "New one"),
            node("new2", "new1", "New two"),
        ],
    );
    new.effective_start = Some(ts(y2021));
    ok(c.store_document(old).await);
    ok(c.store_document(new).await);
    let diff = |a: &str, b: &str| pb::DiffVersionsRequest {
        policy_id: "doc".into(),
        version_a: a.into(),
        version_b: b.into(),
    };
    let d = ok(c.diff_versions(diff("a", "b")).await);
    assert_eq!(d.added, ["new1", "new2"]);
    assert_eq!(d.removed, ["gone"]);
    // `top`'s children changed too: see diff_versions_reports_changed_children.
    assert!(d.changed.contains(&"edit".to_string()), "{d:?}");
    assert!(!d.changed.contains(&"same".to_string()), "{d:?}");
    let d = ok(c.diff_versions(diff("b", "a")).await);
    assert_eq!(d.added, ["gone"]);
    assert_eq!(d.removed, ["new1", "new2"]);
    let d = ok(c.diff_versions(diff("a", "a")).await);
    assert!(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty());
    assert_code(c.diff_versions(diff("a", "zz")).await, Code::NotFound);
    assert_status(
        c.diff_versions(diff("", "b")).await,
        Code::InvalidArgument,
        "version_a",
    );
    assert_status(
        c.diff_versions(diff("a", "")).await,
        Code::InvalidArgument,
        "version_b",
    );
    // Storing a document registered its version with the given start.
    let v = ok(c
        .get_version_as_of(pb::GetVersionAsOfRequest {
            policy_id: "doc".into(),
            as_of_time: Some(ts(date(2020, 5, 5))),
        })
        .await);
    assert_eq!(v.version_id, "a");
}

/// The proto: PolicyVersion.effective_start "Unset on input: the time the
/// version was stored", and RegisterVersion lists no error for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_version_without_start_takes_effect_now() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let before = now_secs();
    let r = ok(c
        .register_version(register(version("pol", "v1", None, None)))
        .await);
    let start = r.version.unwrap().effective_start.unwrap().seconds;
    assert!(
        (before - 5..=now_secs() + 5).contains(&start),
        "start {start}"
    );
    let v = ok(c
        .get_version_as_of(pb::GetVersionAsOfRequest {
            policy_id: "pol".into(),
            as_of_time: None,
        })
        .await);
    assert_eq!(v.version_id, "v1");
}

/// The proto: DiffVersionsResponse.changed lists nodes "with different
/// content (title, pages, summary, text, section path, parent, children,
/// keywords or see_also ...)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_versions_reports_changed_children() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    // Only the children of `top` differ (a child is appended, so no section
    // path of an existing node changes).
    ok(c.store_document(store_req(
        "doc",
        "a",
        vec![node("top", "", "Top"), node("k1", "top", "Kid")],
    ))
    .await);
    ok(c.store_document(store_req(
        "doc",
        "b",
        vec![
            node("top", "", "Top"),
            node("k1", "top", "Kid"),
            node("k2", "top", "New kid"),
        ],
    ))
    .await);
    let d = ok(c
        .diff_versions(pb::DiffVersionsRequest {
            policy_id: "doc".into(),
            version_a: "a".into(),
            version_b: "b".into(),
        })
        .await);
    assert_eq!(d.added, ["k2"]);
    assert_eq!(d.changed, ["top"], "top's child_ids differ: {d:?}");
}

/// Nearest-rank percentile of sorted values.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.max(1) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_results_and_stats() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let base = date(2024, 3, 1);
    // 20 "search" calls (case A or B, policy P or Q) and 7 "fetch" calls.
    let mut search_lat = Vec::new();
    let mut search_ok = 0;
    for i in 0..20i64 {
        let mut t = tool_result(
            "search",
            if i % 2 == 0 { "A" } else { "B" },
            &format!("s{i}"),
        );
        t.policy_id = if i % 4 < 2 { "P" } else { "Q" }.into();
        t.latency_ms = ((i * 37) % 101) as f64 + 0.5;
        t.success = i % 3 != 0;
        if !t.success {
            t.error_message = "boom".into();
        }
        t.executed_at = Some(ts(base + i * 60));
        t.input = "{\"q\":\"x\"}".into();
        search_lat.push(t.latency_ms);
        search_ok += i64::from(t.success);
        let r = ok(c
            .store_tool_result(pb::StoreToolResultRequest { result: Some(t) })
            .await);
        assert!(r.success);
        assert_eq!(r.id, format!("s{i}"));
    }
    let mut fetch_lat = Vec::new();
    for i in 0..7i64 {
        let mut t = tool_result("fetch", "A", "");
        t.latency_ms = (10 - i) as f64;
        t.executed_at = Some(ts(base + 10_000 + i));
        fetch_lat.push(t.latency_ms);
        let r = ok(c
            .store_tool_result(pb::StoreToolResultRequest { result: Some(t) })
            .await);
        assert!(!r.id.is_empty(), "server-assigned execution_id");
    }

    let q = |case: &str, tool: &str, policy: &str, limit: i32| pb::GetToolResultsRequest {
        case_id: case.into(),
        tool_name: tool.into(),
        policy_id: policy.into(),
        limit,
        ..Default::default()
    };
    let r = ok(c.get_tool_results(q("A", "", "", 0)).await);
    assert_eq!(r.results.len(), 17);
    let times: Vec<_> = r
        .results
        .iter()
        .map(|t| t.executed_at.unwrap().seconds)
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "most recent first");
    let r = ok(c.get_tool_results(q("A", "search", "", 0)).await);
    assert_eq!(r.results.len(), 10);
    assert_eq!(r.results[0].execution_id, "s18");
    let s18 = &r.results[0];
    assert_eq!(s18.result_data, "{\"id\":\"s18\"}");
    assert_eq!(s18.input, "{\"q\":\"x\"}");
    assert_eq!(s18.case_id, "A");
    assert_eq!(s18.latency_ms, ((18 * 37) % 101) as f64 + 0.5);
    assert!(!s18.success && s18.error_message == "boom");
    let r = ok(c.get_tool_results(q("", "", "P", 0)).await);
    assert_eq!(r.results.len(), 10);
    assert!(r.results.iter().all(|t| t.policy_id == "P"));
    let r = ok(c.get_tool_results(q("B", "search", "Q", 0)).await);
    let mut got: Vec<_> = r.results.iter().map(|t| t.execution_id.clone()).collect();
    got.sort();
    let mut expect: Vec<_> = (0..20)
        .filter(|i| i % 2 == 1 && i % 4 >= 2)
        .map(|i| format!("s{i}"))
        .collect();
    expect.sort();
    assert_eq!(got, expect, "filters are ANDed");
    let r = ok(c.get_tool_results(q("", "fetch", "", 3)).await);
    assert_eq!(r.results.len(), 3);
    let r = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            tool_name: "search".into(),
            since: Some(ts(base + 5 * 60)),
            until: Some(ts(base + 10 * 60)),
            ..Default::default()
        })
        .await);
    assert_eq!(r.results.len(), 5, "since inclusive, until exclusive");
    assert_status(
        c.get_tool_results(q("", "", "", 0)).await,
        Code::InvalidArgument,
        "",
    );
    assert_status(
        c.get_tool_results(q("A", "", "", -1)).await,
        Code::InvalidArgument,
        "limit",
    );

    // Storing an existing id replaces the record.
    let mut t = tool_result("search", "A", "s0");
    t.result_data = "{\"replaced\":true}".into();
    t.executed_at = Some(ts(base));
    t.latency_ms = search_lat[0];
    t.success = false;
    ok(
        c.store_tool_result(pb::StoreToolResultRequest { result: Some(t) })
            .await,
    );
    let r = ok(c.get_tool_results(q("A", "search", "", 0)).await);
    assert_eq!(r.results.len(), 10);
    let s0 = r.results.iter().find(|t| t.execution_id == "s0").unwrap();
    assert_eq!(s0.result_data, "{\"replaced\":true}");

    // GetToolStats against the values computed here.
    let stats = ok(c.get_tool_stats(pb::GetToolStatsRequest::default()).await);
    let names: Vec<_> = stats.stats.iter().map(|s| s.tool_name.as_str()).collect();
    assert_eq!(names, ["fetch", "search"]);
    search_lat.sort_by(f64::total_cmp);
    fetch_lat.sort_by(f64::total_cmp);
    let s = &stats.stats[1];
    assert_eq!((s.count, s.success_count), (20, search_ok));
    assert!((s.success_rate - search_ok as f64 / 20.0).abs() < 1e-9);
    assert_eq!(s.latency_p50_ms, nearest_rank(&search_lat, 50.0));
    assert_eq!(s.latency_p95_ms, nearest_rank(&search_lat, 95.0));
    let f = &stats.stats[0];
    assert_eq!((f.count, f.success_count, f.success_rate), (7, 7, 1.0));
    assert_eq!(f.latency_p50_ms, nearest_rank(&fetch_lat, 50.0));
    assert_eq!(f.latency_p95_ms, nearest_rank(&fetch_lat, 95.0));
    let stats = ok(c
        .get_tool_stats(pb::GetToolStatsRequest {
            tool_name: "search".into(),
            since: Some(ts(base)),
            until: Some(ts(base + 4 * 60)),
        })
        .await);
    assert_eq!(stats.stats.len(), 1);
    let s = &stats.stats[0];
    let window: Vec<i64> = (0..4).collect();
    let mut lat: Vec<f64> = window
        .iter()
        .map(|i| ((i * 37) % 101) as f64 + 0.5)
        .collect();
    lat.sort_by(f64::total_cmp);
    assert_eq!(s.count, 4);
    assert_eq!(
        s.success_count,
        window.iter().filter(|i| *i % 3 != 0).count() as i64
    );
    assert_eq!(s.latency_p50_ms, nearest_rank(&lat, 50.0));
    assert_eq!(s.latency_p95_ms, nearest_rank(&lat, 95.0));
    let empty = ok(c
        .get_tool_stats(pb::GetToolStatsRequest {
            tool_name: String::new(),
            since: Some(ts(date(2030, 1, 1))),
            until: None,
        })
        .await);
    assert!(empty.stats.is_empty());

    // Bad StoreToolResult inputs.
    let store = |t: pb::ToolResult| pb::StoreToolResultRequest { result: Some(t) };
    let mut bad = tool_result("search", "A", "bad1");
    bad.result_data = "{not json".into();
    assert_status(
        c.store_tool_result(store(bad)).await,
        Code::InvalidArgument,
        "result_data",
    );
    let mut bad = tool_result("search", "A", "bad2");
    bad.input = "nope".into();
    assert_status(
        c.store_tool_result(store(bad)).await,
        Code::InvalidArgument,
        "input",
    );
    let mut bad = tool_result("search", "A", "bad3");
    bad.latency_ms = -1.0;
    assert_status(
        c.store_tool_result(store(bad)).await,
        Code::InvalidArgument,
        "latency_ms",
    );
    assert_status(
        c.store_tool_result(store(tool_result("", "A", "bad4")))
            .await,
        Code::InvalidArgument,
        "tool_name",
    );
    assert_status(
        c.store_tool_result(pb::StoreToolResultRequest { result: None })
            .await,
        Code::InvalidArgument,
        "result",
    );
    let r = ok(c.get_tool_results(q("A", "", "", 0)).await);
    assert_eq!(r.results.len(), 17, "no bad record stored");
}

fn step(n: i32, nodes: &[&str]) -> pb::TrajectoryStep {
    pb::TrajectoryStep {
        step_number: n,
        tool_name: "search".into(),
        action: format!("action {n}"),
        nodes_visited: nodes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trajectories_and_their_aggregates() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let base = date(2024, 5, 1);
    let traj = |id: &str, case: &str, start: i64, steps: Vec<pb::TrajectoryStep>| pb::Trajectory {
        trajectory_id: id.into(),
        case_id: case.into(),
        policy_id: "P".into(),
        started_at: Some(ts(start)),
        steps,
        ..Default::default()
    };
    let all = [
        traj(
            "t1",
            "A",
            base,
            vec![step(2, &["n2"]), step(1, &["n1", "n2"])],
        ),
        traj(
            "t2",
            "A",
            base + 100,
            vec![step(1, &["n3"]), step(2, &["n2"]), step(3, &["n1"])],
        ),
        traj("t3", "A", base + 50, vec![step(1, &["n2"])]),
        traj(
            "t4",
            "B",
            base + 10,
            vec![step(1, &[]), step(2, &[]), step(3, &[]), step(4, &["n9"])],
        ),
    ];
    for t in &all {
        let r = ok(c
            .store_trajectory(pb::StoreTrajectoryRequest {
                trajectory: Some(t.clone()),
            })
            .await);
        assert!(r.success);
        assert_eq!(r.id, t.trajectory_id);
    }
    let mut with_conf = traj("", "C", base, vec![step(0, &[]), step(0, &[])]);
    with_conf.final_confidence = Some(0.75);
    with_conf.steps[1].confidence = Some(0.5);
    let r = ok(c
        .store_trajectory(pb::StoreTrajectoryRequest {
            trajectory: Some(with_conf),
        })
        .await);
    assert!(!r.id.is_empty(), "server-assigned trajectory_id");

    let r = ok(c
        .get_trajectories(pb::GetTrajectoriesRequest {
            case_id: "A".into(),
            limit: 0,
        })
        .await);
    let got: Vec<_> = r
        .trajectories
        .iter()
        .map(|t| t.trajectory_id.as_str())
        .collect();
    assert_eq!(got, ["t2", "t3", "t1"], "most recently started first");
    let t1 = &r.trajectories[2];
    let nums: Vec<_> = t1.steps.iter().map(|s| s.step_number).collect();
    assert_eq!(nums, [1, 2], "steps sorted by step_number");
    assert_eq!(t1.steps[0].nodes_visited, ["n1", "n2"]);
    let r = ok(c
        .get_trajectories(pb::GetTrajectoriesRequest {
            case_id: "A".into(),
            limit: 1,
        })
        .await);
    assert_eq!(r.trajectories.len(), 1);
    let r = ok(c
        .get_trajectories(pb::GetTrajectoriesRequest {
            case_id: "C".into(),
            limit: 0,
        })
        .await);
    let t = &r.trajectories[0];
    assert_eq!(t.final_confidence, Some(0.75));
    let nums: Vec<_> = t.steps.iter().map(|s| s.step_number).collect();
    assert_eq!(nums, [1, 2], "all-zero steps numbered in order");
    assert_eq!(t.steps[1].confidence, Some(0.5));
    assert_eq!(t.steps[0].confidence, None);

    // Bad inputs.
    let store = |t: pb::Trajectory| pb::StoreTrajectoryRequest {
        trajectory: Some(t),
    };
    assert_status(
        c.store_trajectory(store(traj("", "", base, vec![]))).await,
        Code::InvalidArgument,
        "case_id",
    );
    assert_status(
        c.store_trajectory(store(traj(
            "x",
            "A",
            base,
            vec![step(1, &[]), step(1, &[])],
        )))
        .await,
        Code::InvalidArgument,
        "step_number",
    );
    assert_status(
        c.store_trajectory(store(traj("x", "A", base, vec![step(-1, &[])])))
            .await,
        Code::InvalidArgument,
        "step_number",
    );
    let mut bad = traj("x", "A", base, vec![step(1, &[])]);
    bad.steps[0].confidence = Some(1.5);
    assert_status(
        c.store_trajectory(store(bad)).await,
        Code::InvalidArgument,
        "confidence",
    );
    let mut bad = traj("x", "A", base, vec![]);
    bad.final_confidence = Some(-0.1);
    assert_status(
        c.store_trajectory(store(bad)).await,
        Code::InvalidArgument,
        "final_confidence",
    );
    assert_status(
        c.get_trajectories(pb::GetTrajectoriesRequest {
            case_id: String::new(),
            limit: 0,
        })
        .await,
        Code::InvalidArgument,
        "case_id",
    );
    assert_status(
        c.get_trajectories(pb::GetTrajectoriesRequest {
            case_id: "A".into(),
            limit: -5,
        })
        .await,
        Code::InvalidArgument,
        "limit",
    );

    // Most visited nodes of P: count every visit of every step.
    let mut visits: BTreeMap<String, i64> = BTreeMap::new();
    for t in &all {
        for s in &t.steps {
            for n in &s.nodes_visited {
                *visits.entry(n.clone()).or_default() += 1;
            }
        }
    }
    let mut expect: Vec<(String, i64)> = visits.into_iter().collect();
    expect.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let r = ok(c
        .get_most_visited_nodes(pb::GetMostVisitedNodesRequest {
            policy_id: "P".into(),
            limit: 0,
        })
        .await);
    let got: Vec<(String, i64)> = r
        .nodes
        .iter()
        .map(|n| (n.node_id.clone(), n.visits))
        .collect();
    assert_eq!(got, expect);
    let r = ok(c
        .get_most_visited_nodes(pb::GetMostVisitedNodesRequest {
            policy_id: "P".into(),
            limit: 2,
        })
        .await);
    assert_eq!(r.nodes.len(), 2);
    let r = ok(c
        .get_most_visited_nodes(pb::GetMostVisitedNodesRequest {
            policy_id: "Z".into(),
            limit: 0,
        })
        .await);
    assert!(r.nodes.is_empty());
    assert_status(
        c.get_most_visited_nodes(pb::GetMostVisitedNodesRequest {
            policy_id: String::new(),
            limit: 0,
        })
        .await,
        Code::InvalidArgument,
        "policy_id",
    );
    assert_status(
        c.get_most_visited_nodes(pb::GetMostVisitedNodesRequest {
            policy_id: "P".into(),
            limit: -1,
        })
        .await,
        Code::InvalidArgument,
        "limit",
    );

    // Trajectory statistics.
    let r = ok(c
        .get_trajectory_stats(pb::GetTrajectoryStatsRequest {
            case_id: "A".into(),
        })
        .await);
    assert_eq!(r.trajectory_count, 3);
    assert!((r.mean_steps - 6.0 / 3.0).abs() < 1e-9, "{r:?}");
    let r = ok(c
        .get_trajectory_stats(pb::GetTrajectoryStatsRequest::default())
        .await);
    assert_eq!(r.trajectory_count, 5);
    assert!((r.mean_steps - 12.0 / 5.0).abs() < 1e-9, "{r:?}");
    let r = ok(c
        .get_trajectory_stats(pb::GetTrajectoryStatsRequest {
            case_id: "nosuch".into(),
        })
        .await);
    assert_eq!((r.trajectory_count, r.mean_steps), (0, 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_references_by_direction_and_type() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let xref = |sp: &str, sn: &str, tp: &str, tn: &str, kind: &str| pb::CrossReference {
        source_policy_id: sp.into(),
        source_node_id: sn.into(),
        target_policy_id: tp.into(),
        target_node_id: tn.into(),
        reference_type: kind.into(),
        context: format!("{sn} -> {tn}"),
        ..Default::default()
    };
    let store = |x: pb::CrossReference| pb::StoreCrossReferenceRequest {
        cross_reference: Some(x),
    };
    let mut ids_of = BTreeMap::new();
    for (name, x) in [
        ("out1", xref("P", "n1", "Q", "m1", "cites")),
        ("out2", xref("P", "n1", "Q", "m2", "supports")),
        ("in1", xref("R", "z", "P", "n1", "cites")),
        ("other", xref("P", "n2", "P", "n3", "cites")),
    ] {
        let r = ok(c.store_cross_reference(store(x)).await);
        assert!(r.success && !r.id.is_empty());
        ids_of.insert(name, r.id);
    }
    let get = |dir: pb::ReferenceDirection, kind: &str| pb::GetCrossReferencesRequest {
        policy_id: "P".into(),
        node_id: "n1".into(),
        direction: dir as i32,
        reference_type: kind.into(),
        version_id: String::new(),
    };
    let names = |r: &pb::GetCrossReferencesResponse| {
        let mut v: Vec<&str> = r
            .references
            .iter()
            .map(|x| {
                ids_of
                    .iter()
                    .find(|(_, id)| **id == x.reference_id)
                    .map(|(n, _)| *n)
                    .unwrap()
            })
            .collect();
        v.sort();
        v
    };
    let r = ok(c
        .get_cross_references(get(pb::ReferenceDirection::Outgoing, ""))
        .await);
    assert_eq!(names(&r), ["out1", "out2"]);
    assert!(r.references.iter().all(|x| x.source_node_id == "n1"));
    assert!(r.references[0].created_at.is_some());
    let r = ok(c
        .get_cross_references(get(pb::ReferenceDirection::Incoming, ""))
        .await);
    assert_eq!(names(&r), ["in1"]);
    assert_eq!(r.references[0].context, "z -> n1");
    let r = ok(c
        .get_cross_references(get(pb::ReferenceDirection::Both, ""))
        .await);
    assert_eq!(names(&r), ["in1", "out1", "out2"]);
    assert_eq!(
        r.references[2].target_node_id, "n1",
        "BOTH: outgoing first, then incoming"
    );
    let r = ok(c
        .get_cross_references(get(pb::ReferenceDirection::Both, "cites"))
        .await);
    assert_eq!(names(&r), ["in1", "out1"]);
    let r = ok(c
        .get_cross_references(get(pb::ReferenceDirection::Outgoing, "nosuchtype"))
        .await);
    assert!(r.references.is_empty());

    // Bad inputs.
    let mut bad = get(pb::ReferenceDirection::Both, "");
    bad.direction = 7;
    assert_status(
        c.get_cross_references(bad).await,
        Code::InvalidArgument,
        "direction",
    );
    let mut bad = get(pb::ReferenceDirection::Both, "");
    bad.node_id = String::new();
    assert_status(
        c.get_cross_references(bad).await,
        Code::InvalidArgument,
        "node_id",
    );
    let mut bad = get(pb::ReferenceDirection::Both, "");
    bad.policy_id = String::new();
    assert_status(
        c.get_cross_references(bad).await,
        Code::InvalidArgument,
        "policy_id",
    );
    for (field, x) in [
        ("source_policy_id", xref("", "n1", "Q", "m1", "")),
        ("source_node_id", xref("P", "", "Q", "m1", "")),
        ("target_policy_id", xref("P", "n1", "", "m1", "")),
        ("target_node_id", xref("P", "n1", "Q", "", "")),
    ] {
        assert_status(
            c.store_cross_reference(store(x)).await,
            Code::InvalidArgument,
            field,
        );
    }
    assert_status(
        c.store_cross_reference(pb::StoreCrossReferenceRequest {
            cross_reference: None,
        })
        .await,
        Code::InvalidArgument,
        "cross_reference",
    );
}

fn contradiction(case: &str, criterion: &str, severity: &str, at: i64) -> pb::Contradiction {
    pb::Contradiction {
        policy_id_a: "P".into(),
        node_id_a: "n1".into(),
        policy_id_b: "Q".into(),
        node_id_b: "m1".into(),
        description: format!("{case}/{criterion}"),
        severity: severity.into(),
        detected_at: Some(ts(at)),
        case_id: case.into(),
        criterion_id: criterion.into(),
        excerpt_a: "must".into(),
        excerpt_b: "must not".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradictions_store_query_resolve() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let base = date(2024, 6, 1);
    let store = |x: pb::Contradiction| pb::StoreContradictionRequest {
        contradiction: Some(x),
    };
    let c1 = ok(c
        .store_contradiction(store(contradiction("A", "X", "HIGH", base)))
        .await)
    .id;
    let c2 = ok(c
        .store_contradiction(store(contradiction("A", "Y", "", base + 10)))
        .await)
    .id;
    let c3 = ok(c
        .store_contradiction(store(contradiction("B", "X", "low", base + 20)))
        .await)
    .id;
    assert!(!c1.is_empty() && c1 != c2 && c2 != c3);

    let get = |case: &str, crit: &str, unresolved: bool| pb::GetContradictionsRequest {
        case_id: case.into(),
        criterion_id: crit.into(),
        unresolved_only: unresolved,
        limit: 0,
    };
    let list = |r: &pb::GetContradictionsResponse| -> Vec<String> {
        r.contradictions
            .iter()
            .map(|c| c.contradiction_id.clone())
            .collect()
    };
    let r = ok(c.get_contradictions(get("A", "", false)).await);
    assert_eq!(list(&r), [c2.clone(), c1.clone()], "most recent first");
    let first = &r.contradictions[1];
    assert_eq!(first.severity, "high");
    assert_eq!(first.resolution_status, "unresolved");
    assert!(first.resolved_at.is_none());
    assert_eq!(
        (first.excerpt_a.as_str(), first.excerpt_b.as_str()),
        ("must", "must not")
    );
    assert_eq!(r.contradictions[0].severity, "medium", "empty = medium");
    let r = ok(c.get_contradictions(get("", "X", false)).await);
    assert_eq!(list(&r), [c3.clone(), c1.clone()]);
    let r = ok(c.get_contradictions(get("", "", false)).await);
    assert_eq!(list(&r), [c3.clone(), c2.clone(), c1.clone()]);
    let mut limited = get("", "", false);
    limited.limit = 1;
    assert_eq!(
        ok(c.get_contradictions(limited).await).contradictions.len(),
        1
    );

    // Resolve c1.
    let r = ok(c
        .resolve_contradiction(pb::ResolveContradictionRequest {
            contradiction_id: c1.clone(),
            resolution_status: "Resolved".into(),
            resolution_note: "policy Q wins".into(),
        })
        .await);
    assert!(r.success);
    let now = r.contradiction.unwrap();
    assert_eq!(now.resolution_status, "resolved");
    assert_eq!(now.resolution_note, "policy Q wins");
    assert!(now.resolved_at.is_some());
    let r = ok(c.get_contradictions(get("A", "", true)).await);
    assert_eq!(list(&r), std::slice::from_ref(&c2));
    let r = ok(c.get_contradictions(get("A", "", false)).await);
    assert_eq!(r.contradictions.len(), 2);
    let r = ok(c.get_contradictions(get("", "", false)).await);
    assert_eq!(list(&r), [c3.clone(), c2.clone()], "default: unresolved");
    // Dismiss, then reopen.
    let r = ok(c
        .resolve_contradiction(pb::ResolveContradictionRequest {
            contradiction_id: c3.clone(),
            resolution_status: "dismissed".into(),
            resolution_note: String::new(),
        })
        .await);
    assert_eq!(r.contradiction.unwrap().resolution_status, "dismissed");
    let r = ok(c
        .resolve_contradiction(pb::ResolveContradictionRequest {
            contradiction_id: c1.clone(),
            resolution_status: "unresolved".into(),
            resolution_note: String::new(),
        })
        .await);
    let reopened = r.contradiction.unwrap();
    assert_eq!(reopened.resolution_status, "unresolved");
    assert!(
        reopened.resolved_at.is_none(),
        "reopening clears resolved_at"
    );
    let r = ok(c.get_contradictions(get("", "", false)).await);
    assert_eq!(list(&r), [c2.clone(), c1.clone()]);

    // Bad inputs.
    assert_status(
        c.store_contradiction(store(contradiction("A", "X", "catastrophic", base)))
            .await,
        Code::InvalidArgument,
        "severity",
    );
    let mut bad = contradiction("A", "X", "low", base);
    bad.resolution_status = "maybe".into();
    assert_status(
        c.store_contradiction(store(bad)).await,
        Code::InvalidArgument,
        "resolution_status",
    );
    let mut bad = contradiction("A", "X", "low", base);
    bad.node_id_b = String::new();
    assert_status(
        c.store_contradiction(store(bad)).await,
        Code::InvalidArgument,
        "node_id_b",
    );
    let mut bad = contradiction("A", "X", "low", base);
    bad.policy_id_a = String::new();
    assert_status(
        c.store_contradiction(store(bad)).await,
        Code::InvalidArgument,
        "policy_id_a",
    );
    assert_status(
        c.resolve_contradiction(pb::ResolveContradictionRequest {
            contradiction_id: c2.clone(),
            resolution_status: "fixed".into(),
            resolution_note: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "resolution_status",
    );
    assert_status(
        c.resolve_contradiction(pb::ResolveContradictionRequest {
            contradiction_id: String::new(),
            resolution_status: "resolved".into(),
            resolution_note: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "contradiction_id",
    );
    assert_code(
        c.resolve_contradiction(pb::ResolveContradictionRequest {
            contradiction_id: "nosuch".into(),
            resolution_status: "resolved".into(),
            resolution_note: String::new(),
        })
        .await,
        Code::NotFound,
    );
    let mut neg = get("A", "", false);
    neg.limit = -1;
    assert_status(
        c.get_contradictions(neg).await,
        Code::InvalidArgument,
        "limit",
    );
    let r = ok(c.get_contradictions(get("A", "", false)).await);
    assert_eq!(r.contradictions.len(), 2, "no bad record stored");
}

/// The proto: "the filters given are ANDed" (GetContradictionsRequest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradiction_filters_are_anded() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let base = date(2024, 6, 1);
    let store = |x: pb::Contradiction| pb::StoreContradictionRequest {
        contradiction: Some(x),
    };
    let c1 = ok(c
        .store_contradiction(store(contradiction("A", "X", "high", base)))
        .await)
    .id;
    ok(
        c.store_contradiction(store(contradiction("A", "Y", "", base + 10)))
            .await,
    );
    ok(
        c.store_contradiction(store(contradiction("B", "X", "low", base + 20)))
            .await,
    );
    let r = c
        .get_contradictions(pb::GetContradictionsRequest {
            case_id: "A".into(),
            criterion_id: "X".into(),
            unresolved_only: false,
            limit: 0,
        })
        .await;
    let r = ok(r);
    let got: Vec<_> = r
        .contradictions
        .iter()
        .map(|c| c.contradiction_id.clone())
        .collect();
    assert_eq!(got, [c1]);
}

/// The proto: ResolveContradictionRequest.resolution_status is "Required",
/// and ResolveContradiction is INVALID_ARGUMENT for a `resolution_status` "not
/// one of" the three values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_contradiction_requires_a_status() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let id = ok(c
        .store_contradiction(pb::StoreContradictionRequest {
            contradiction: Some(contradiction("A", "X", "high", date(2024, 1, 1))),
        })
        .await)
    .id;
    assert_status(
        c.resolve_contradiction(pb::ResolveContradictionRequest {
            contradiction_id: id,
            resolution_status: String::new(),
            resolution_note: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "resolution_status",
    );
}

/// The proto names nested fields in the errors of the single-record writes:
/// `cross_reference.source_policy_id`, `trajectory.case_id`,
/// `prompt.prompt_id`, `usage.prompt_id` (as StoreToolResult names
/// `result.tool_name` and StoreContradiction `contradiction.node_id_b`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_record_errors_name_the_nested_field() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let mut failures = Vec::new();
    let mut expect = |what: &str, r: Result<(), tonic::Status>| match r {
        Err(s) if s.code() == Code::InvalidArgument && s.message().contains(what) => {}
        other => failures.push(format!("{what}: {other:?}")),
    };
    let e = c
        .store_tool_result(pb::StoreToolResultRequest {
            result: Some(tool_result("", "A", "x")),
        })
        .await;
    expect("result.tool_name", e.map(drop));
    let e = c
        .store_trajectory(pb::StoreTrajectoryRequest {
            trajectory: Some(pb::Trajectory::default()),
        })
        .await;
    expect("trajectory.case_id", e.map(drop));
    let e = c
        .store_prompt(pb::StorePromptRequest {
            prompt: Some(pb::PromptTemplate::default()),
        })
        .await;
    expect("prompt.prompt_id", e.map(drop));
    let e = c
        .record_prompt_usage(pb::RecordPromptUsageRequest {
            usage: Some(pb::PromptUsage::default()),
        })
        .await;
    expect("usage.prompt_id", e.map(drop));
    let mut bad = contradiction("A", "X", "low", 0);
    bad.node_id_b = String::new();
    let e = c
        .store_contradiction(pb::StoreContradictionRequest {
            contradiction: Some(bad),
        })
        .await;
    expect("contradiction.node_id_b", e.map(drop));
    let e = c
        .store_cross_reference(pb::StoreCrossReferenceRequest {
            cross_reference: Some(pb::CrossReference {
                source_policy_id: String::new(),
                source_node_id: "n".into(),
                target_policy_id: "q".into(),
                target_node_id: "m".into(),
                ..Default::default()
            }),
        })
        .await;
    expect("cross_reference.source_policy_id", e.map(drop));
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The header of the proto: INVALID_ARGUMENT names the field, here the wire's
/// `supersedes_version_id` (the store calls it `supersedes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_supersession_names_supersedes_version_id() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let mut sup = store_req("pol", "v1", vec![node("a", "", "A")]);
    sup.supersedes_version_id = "v1".into();
    assert_status(
        c.store_document(sup).await,
        Code::InvalidArgument,
        "supersedes_version_id",
    );
    let mut v = version("pol", "v1", Some(date(2020, 1, 1)), None);
    v.supersedes_version_id = "v1".into();
    assert_status(
        c.register_version(register(v)).await,
        Code::InvalidArgument,
        "version.supersedes_version_id",
    );
}

/// The proto: GetBySectionPath is INVALID_ARGUMENT for an empty
/// `section_path`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_by_section_path_requires_section_path() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_small(&mut c, "pol", "v1").await;
    assert_status(
        c.get_by_section_path(pb::GetBySectionPathRequest {
            policy_id: "pol".into(),
            version_id: String::new(),
            section_path: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "section_path",
    );
}

/// The proto: ListPromptVersions is NOT_FOUND for "no such prompt".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prompt_versions_of_unknown_prompt_is_not_found() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    assert_code(
        c.list_prompt_versions(pb::ListPromptVersionsRequest {
            prompt_id: "nosuch".into(),
        })
        .await,
        Code::NotFound,
    );
}

/// The proto: ApplyWrites "if any operation fails nothing is written and the
/// status names the failing operation (`ops[i]...`)", also when the store's
/// document validation fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_writes_names_the_op_of_an_invalid_document() {
    use pb::write_op::Op;
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let e = c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K", "e1"))),
                op(Op::StoreDocument(store_req(
                    "pol",
                    "v1",
                    vec![node("child", "missing", "Orphan")],
                ))),
            ],
        })
        .await;
    assert_status(e, Code::InvalidArgument, "ops[1]");
}

fn prompt(id: &str, version: &str, created: i64, deployed: Option<i64>) -> pb::PromptTemplate {
    pb::PromptTemplate {
        prompt_id: id.into(),
        name: format!("{id} prompt"),
        template: format!("Answer {{question}} ({version})"),
        variables: vec!["question".into()],
        version: version.into(),
        created_at: Some(ts(created)),
        tool_schemas: String::new(),
        deployed_at: deployed.map(ts),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_usages() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let base = date(2024, 1, 1);
    let store = |p: pb::PromptTemplate| pb::StorePromptRequest { prompt: Some(p) };

    // Versions "1" and "2" are numbered by the server.
    let r = ok(c
        .store_prompt(store(prompt("triage", "", base, Some(base + 100))))
        .await);
    assert!(r.success);
    assert_eq!(r.prompt.unwrap().version, "1");
    let mut p2 = prompt("triage", "", base + 1000, Some(base + 2000));
    p2.tool_schemas = "[{\"name\":\"search\"}]".into();
    let r = ok(c.store_prompt(store(p2)).await);
    let stored = r.prompt.unwrap();
    assert_eq!(stored.version, "2");
    assert_eq!(stored.tool_schemas, "[{\"name\":\"search\"}]");
    // An undeployed draft, newest of all.
    ok(
        c.store_prompt(store(prompt("triage", "draft", base + 3000, None)))
            .await,
    );

    let get = |version: &str, as_of: Option<i64>| pb::GetPromptRequest {
        prompt_id: "triage".into(),
        version: version.into(),
        as_of: as_of.map(ts),
    };
    let p = ok(c.get_prompt(get("", None)).await).prompt.unwrap();
    assert_eq!(p.version, "draft", "latest = greatest created_at");
    let p = ok(c.get_prompt(get("1", None)).await).prompt.unwrap();
    assert_eq!(p.template, "Answer {question} ()");
    assert_eq!(p.variables, ["question"]);
    assert_eq!(p.name, "triage prompt");
    let p = ok(c.get_prompt(get("", Some(base + 1500))).await)
        .prompt
        .unwrap();
    assert_eq!(p.version, "1");
    let p = ok(c.get_prompt(get("", Some(base + 2000))).await)
        .prompt
        .unwrap();
    assert_eq!(p.version, "2", "deployed_at is inclusive");
    let p = ok(c.get_prompt(get("", Some(base + 99_999))).await)
        .prompt
        .unwrap();
    assert_eq!(p.version, "2", "the draft was never deployed");
    assert_code(c.get_prompt(get("", Some(base))).await, Code::NotFound);
    assert_code(c.get_prompt(get("9", None)).await, Code::NotFound);
    assert_status(
        c.get_prompt(get("1", Some(base + 1500))).await,
        Code::InvalidArgument,
        "",
    );
    assert_code(
        c.get_prompt(pb::GetPromptRequest {
            prompt_id: "nosuch".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
    );
    assert_status(
        c.get_prompt(pb::GetPromptRequest::default()).await,
        Code::InvalidArgument,
        "prompt_id",
    );

    let l = ok(c
        .list_prompt_versions(pb::ListPromptVersionsRequest {
            prompt_id: "triage".into(),
        })
        .await);
    let vs: Vec<_> = l.prompts.iter().map(|p| p.version.as_str()).collect();
    assert_eq!(vs, ["draft", "2", "1"]);
    assert_status(
        c.list_prompt_versions(pb::ListPromptVersionsRequest {
            prompt_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "prompt_id",
    );

    // Bad StorePrompt inputs.
    let mut bad = prompt("triage", "x", base, None);
    bad.tool_schemas = "{oops".into();
    assert_status(
        c.store_prompt(store(bad)).await,
        Code::InvalidArgument,
        "tool_schemas",
    );
    assert_status(
        c.store_prompt(store(prompt("", "x", base, None))).await,
        Code::InvalidArgument,
        "prompt_id",
    );
    assert_status(
        c.store_prompt(pb::StorePromptRequest { prompt: None })
            .await,
        Code::InvalidArgument,
        "prompt",
    );

    // Usages: (case, version, outcome).
    let uses = [
        ("c1", "1", "approved"),
        ("c1", "2", "approved"),
        ("c2", "2", "denied"),
        ("c2", "2", "approved"),
        ("c3", "1", ""),
        ("c3", "2", "denied"),
        ("c3", "", "escalated"),
    ];
    let mut usage_ids = Vec::new();
    for (i, (case, version, outcome)) in uses.iter().enumerate() {
        let mut vars = std::collections::HashMap::new();
        vars.insert("question".to_string(), format!("q{i}"));
        let r = ok(c
            .record_prompt_usage(pb::RecordPromptUsageRequest {
                usage: Some(pb::PromptUsage {
                    usage_id: String::new(),
                    prompt_id: "triage".into(),
                    filled_variables: vars,
                    response: format!("response {i}"),
                    used_at: Some(ts(base + 10_000 + i as i64)),
                    prompt_version: version.to_string(),
                    case_id: case.to_string(),
                    tool_result_ids: vec![format!("exec{i}")],
                    outcome: outcome.to_string(),
                }),
            })
            .await);
        assert!(r.success && !r.id.is_empty());
        usage_ids.push(r.id);
    }
    assert_status(
        c.record_prompt_usage(pb::RecordPromptUsageRequest {
            usage: Some(pb::PromptUsage::default()),
        })
        .await,
        Code::InvalidArgument,
        "prompt_id",
    );

    let usages = |case: &str, prompt: &str, version: &str| pb::GetPromptUsagesRequest {
        case_id: case.into(),
        prompt_id: prompt.into(),
        prompt_version: version.into(),
        limit: 0,
    };
    let r = ok(c.get_prompt_usages(usages("", "triage", "")).await);
    assert_eq!(r.usages.len(), 7);
    let got: Vec<_> = r.usages.iter().map(|u| u.usage_id.clone()).collect();
    let mut expect = usage_ids.clone();
    expect.reverse();
    assert_eq!(got, expect, "most recent first");
    let last = &r.usages[0];
    assert_eq!(
        last.prompt_version, "draft",
        "empty version = the latest at that time"
    );
    assert_eq!(
        last.filled_variables.get("question").map(String::as_str),
        Some("q6")
    );
    assert_eq!(last.tool_result_ids, ["exec6"]);
    let r = ok(c.get_prompt_usages(usages("c2", "", "")).await);
    assert_eq!(r.usages.len(), 2);
    assert!(r.usages.iter().all(|u| u.case_id == "c2"));
    let r = ok(c.get_prompt_usages(usages("", "triage", "1")).await);
    assert_eq!(r.usages.len(), 2);
    let r = ok(c.get_prompt_usages(usages("c3", "triage", "2")).await);
    assert_eq!(r.usages.len(), 1);
    let mut limited = usages("", "triage", "");
    limited.limit = 3;
    assert_eq!(ok(c.get_prompt_usages(limited).await).usages.len(), 3);
    assert_status(
        c.get_prompt_usages(usages("", "", "")).await,
        Code::InvalidArgument,
        "",
    );
    assert_status(
        c.get_prompt_usages(usages("", "", "2")).await,
        Code::InvalidArgument,
        "",
    );
    let mut neg = usages("c1", "", "");
    neg.limit = -1;
    assert_status(
        c.get_prompt_usages(neg).await,
        Code::InvalidArgument,
        "limit",
    );

    // Effectiveness against counts computed here.
    let eff = |version: &str| pb::GetPromptEffectivenessRequest {
        prompt_id: "triage".into(),
        prompt_version: version.into(),
    };
    let r = ok(c.get_prompt_effectiveness(eff("")).await);
    assert_eq!(r.uses, 7);
    let got: Vec<_> = r
        .outcomes
        .iter()
        .map(|o| (o.outcome.as_str(), o.count))
        .collect();
    assert_eq!(
        got,
        [("approved", 3), ("denied", 2), ("", 1), ("escalated", 1)],
        "most frequent first, ties by outcome"
    );
    let r = ok(c.get_prompt_effectiveness(eff("2")).await);
    assert_eq!(r.uses, 4);
    let got: Vec<_> = r
        .outcomes
        .iter()
        .map(|o| (o.outcome.as_str(), o.count))
        .collect();
    assert_eq!(got, [("approved", 2), ("denied", 2)]);
    let r = ok(c
        .get_prompt_effectiveness(pb::GetPromptEffectivenessRequest {
            prompt_id: "unused".into(),
            prompt_version: String::new(),
        })
        .await);
    assert_eq!(r.uses, 0);
    assert!(r.outcomes.is_empty());
    assert_status(
        c.get_prompt_effectiveness(pb::GetPromptEffectivenessRequest::default())
            .await,
        Code::InvalidArgument,
        "prompt_id",
    );
}

/// The proto: GetPromptUsages is INVALID_ARGUMENT for "`prompt_version`
/// without `prompt_id`", also when a case_id is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_usages_version_without_prompt_is_invalid() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    assert_status(
        c.get_prompt_usages(pb::GetPromptUsagesRequest {
            case_id: "c1".into(),
            prompt_id: String::new(),
            prompt_version: "2".into(),
            limit: 0,
        })
        .await,
        Code::InvalidArgument,
        "prompt_version",
    );
}

fn op(op: pb::write_op::Op) -> pb::WriteOp {
    pb::WriteOp { op: Some(op) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_writes_is_all_or_nothing() {
    use pb::write_op::Op;
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let base = date(2024, 2, 2);
    let mut contra = contradiction("K", "X", "low", base);
    contra.contradiction_id = "k1".into();
    let r = ok(c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::StoreDocument(store_req(
                    "pol",
                    "v1",
                    vec![node("top", "", "Top")],
                ))),
                op(Op::ToolResult(tool_result("search", "K", "e1"))),
                op(Op::Prompt(prompt("pr", "", base, None))),
                op(Op::RegisterVersion(version(
                    "pol",
                    "v0",
                    Some(date(2000, 1, 1)),
                    None,
                ))),
                op(Op::Contradiction(contra)),
                op(Op::ResolveContradiction(pb::ResolveContradictionRequest {
                    contradiction_id: "k1".into(),
                    resolution_status: "resolved".into(),
                    resolution_note: "in the same batch".into(),
                })),
                op(Op::Trajectory(pb::Trajectory {
                    trajectory_id: "tr1".into(),
                    case_id: "K".into(),
                    ..Default::default()
                })),
                op(Op::CrossReference(pb::CrossReference {
                    source_policy_id: "pol".into(),
                    source_node_id: "top".into(),
                    target_policy_id: "x".into(),
                    target_node_id: "y".into(),
                    reference_id: "ref1".into(),
                    ..Default::default()
                })),
                op(Op::PromptUsage(pb::PromptUsage {
                    usage_id: "u1".into(),
                    prompt_id: "pr".into(),
                    case_id: "K".into(),
                    ..Default::default()
                })),
            ],
        })
        .await);
    assert!(r.success);
    assert_eq!(
        r.ids,
        ["pol/v1", "e1", "pr/1", "pol/v0", "k1", "k1", "tr1", "ref1", "u1"]
    );
    let d = ok(c
        .get_document(pb::GetDocumentRequest {
            policy_id: "pol".into(),
            version_id: "v1".into(),
        })
        .await);
    assert_eq!(ids(&d.nodes), ["top"]);
    let k = ok(c
        .get_contradictions(pb::GetContradictionsRequest {
            case_id: "K".into(),
            ..Default::default()
        })
        .await);
    assert_eq!(k.contradictions[0].resolution_status, "resolved");
    assert_eq!(
        ok(c.list_versions(pb::ListVersionsRequest {
            policy_id: "pol".into(),
            limit: 0
        })
        .await)
        .versions
        .len(),
        2
    );

    // One bad operation: nothing is written, and the status names it.
    let bad_result = {
        let mut t = tool_result("search", "K2", "e2");
        t.result_data = "not json".into();
        t
    };
    let e = c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K2", "e-good"))),
                op(Op::StoreDocument(store_req(
                    "pol2",
                    "v1",
                    vec![node("top", "", "Top")],
                ))),
                op(Op::ToolResult(bad_result)),
            ],
        })
        .await;
    assert_status(e, Code::InvalidArgument, "ops[2]");
    let r = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: "K2".into(),
            ..Default::default()
        })
        .await);
    assert!(r.results.is_empty(), "op 0 was written: {r:?}");
    assert_code(
        c.get_document(pb::GetDocumentRequest {
            policy_id: "pol2".into(),
            version_id: String::new(),
        })
        .await,
        Code::NotFound,
    );
    // A document failing validation, named with its op.
    let e = c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K2", "e-good"))),
                op(Op::StoreDocument(store_req("pol2", "", vec![]))),
            ],
        })
        .await;
    assert_status(e, Code::InvalidArgument, "ops[1]");
    let e = c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K2", "e-good"))),
                op(Op::StoreDocument(store_req(
                    "pol2",
                    "v1",
                    vec![node("child", "missing", "Orphan")],
                ))),
            ],
        })
        .await;
    // Naming ops[1] here: see apply_writes_names_the_op_of_an_invalid_document.
    assert_status(e, Code::InvalidArgument, "child");
    // NOT_FOUND from a later op also undoes the earlier ones.
    let e = c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K2", "e-good"))),
                op(Op::ResolveContradiction(pb::ResolveContradictionRequest {
                    contradiction_id: "nosuch".into(),
                    resolution_status: "resolved".into(),
                    resolution_note: String::new(),
                })),
            ],
        })
        .await;
    assert_code(e, Code::NotFound);
    let e = c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K2", "e-good"))),
                op(Op::DeleteDocument(pb::DeleteDocumentRequest {
                    policy_id: "nosuch".into(),
                    version_id: String::new(),
                })),
            ],
        })
        .await;
    assert_code(e, Code::NotFound);
    let r = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: "K2".into(),
            ..Default::default()
        })
        .await);
    assert!(r.results.is_empty(), "{r:?}");
    // Empty batch, unset op, too many ops.
    assert_status(
        c.apply_writes(pb::ApplyWritesRequest { ops: vec![] }).await,
        Code::InvalidArgument,
        "ops",
    );
    assert_status(
        c.apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K2", "e-good"))),
                pb::WriteOp { op: None },
            ],
        })
        .await,
        Code::InvalidArgument,
        "ops[1]",
    );
    let many: Vec<_> = (0..10_001)
        .map(|i| op(Op::ToolResult(tool_result("t", "K3", &format!("m{i}")))))
        .collect();
    assert_status(
        c.apply_writes(pb::ApplyWritesRequest { ops: many }).await,
        Code::InvalidArgument,
        "ops",
    );
    // Later writes of the same record win.
    let mut later = tool_result("search", "K4", "same");
    later.result_data = "{\"n\":2}".into();
    let r = ok(c
        .apply_writes(pb::ApplyWritesRequest {
            ops: vec![
                op(Op::ToolResult(tool_result("search", "K4", "same"))),
                op(Op::ToolResult(later)),
            ],
        })
        .await);
    assert_eq!(r.ids, ["same", "same"]);
    let r = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: "K4".into(),
            ..Default::default()
        })
        .await);
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].result_data, "{\"n\":2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_stats() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let h = ok(c.health(pb::HealthRequest {}).await);
    assert!(h.healthy);
    assert!(!h.version.is_empty());
    assert!(h.uptime_seconds >= 0);

    let s = ok(c.stats(pb::StatsRequest {}).await);
    assert_eq!(
        (s.total_documents, s.total_nodes, s.total_versions),
        (0, 0, 0)
    );

    store_small(&mut c, "pol", "v1").await; // 7 nodes
    ok(c.store_document(store_req(
        "pol",
        "v2",
        vec![node("a", "", "A"), node("b", "a", "B")],
    ))
    .await);
    ok(
        c.store_document(store_req("other", "x", tree(40, 3, |i| format!("t{i}"))))
            .await,
    );
    ok(c.get_node(pb::GetNodeRequest {
        policy_id: "pol".into(),
        node_id: "a".into(),
        version_id: String::new(),
    })
    .await);
    let s = ok(c.stats(pb::StatsRequest {}).await);
    assert_eq!(s.total_documents, 2, "{s:?}");
    assert_eq!(s.total_versions, 3, "{s:?}");
    assert_eq!(s.total_nodes, 7 + 2 + 40, "{s:?}");
    assert!(s.db_size_bytes > 0);
    assert_eq!(s.operation_counts.get("StoreDocument"), Some(&3), "{s:?}");
    assert_eq!(s.operation_counts.get("GetNode"), Some(&1), "{s:?}");
    assert_eq!(s.operation_counts.get("Health"), Some(&1), "{s:?}");
    assert!(s.operation_counts.get("Stats").copied().unwrap_or(0) >= 1);

    // Deleting a version updates the counts.
    ok(c.delete_document(pb::DeleteDocumentRequest {
        policy_id: "pol".into(),
        version_id: "v1".into(),
    })
    .await);
    let s = ok(c.stats(pb::StatsRequest {}).await);
    assert_eq!(
        (s.total_documents, s.total_versions, s.total_nodes),
        (2, 2, 42)
    );
}

/// A request whose deadline the server cannot meet gets DEADLINE_EXCEEDED
/// from the server (never CANCELLED from the server's own timer, never OK).
/// The tonic client also runs a timer of its own for the deadline it sends
/// and may give up first, reporting CANCELLED "Timeout expired" locally: that
/// is the client's doing, so those calls are not counted against the server.
/// A 2 ms deadline leaves the server no budget (it keeps a 2 ms margin) and
/// the client's timer usually a little longer than the round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_deadlines_are_deadline_exceeded() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_small(&mut c, "pol", "v1").await;
    let mut codes = BTreeMap::new();
    for _ in 0..60 {
        let mut req = Request::new(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "a".into(),
            version_id: String::new(),
        });
        req.set_timeout(Duration::from_millis(2));
        let (code, message) = match c.get_node(req).await {
            Ok(_) => (Code::Ok, String::new()),
            Err(s) => (s.code(), s.message().to_string()),
        };
        let entry = codes
            .entry(format!("{code:?}"))
            .or_insert((0, message.clone()));
        entry.0 += 1;
        if code == Code::Cancelled {
            assert_eq!(
                message, "Timeout expired",
                "only the client's own timer cancels"
            );
        }
    }
    let server_answers = codes.get("DeadlineExceeded").map_or(0, |c| c.0);
    assert!(
        server_answers > 0
            && codes
                .keys()
                .all(|k| k == "DeadlineExceeded" || k == "Cancelled"),
        "codes of 60 calls with 2 ms deadlines: {codes:?}"
    );
    // A generous deadline is fine.
    let mut req = Request::new(pb::GetNodeRequest {
        policy_id: "pol".into(),
        node_id: "a".into(),
        version_id: String::new(),
    });
    req.set_timeout(Duration::from_secs(30));
    ok(c.get_node(req).await);
}

/// `--request-timeout` bounds requests without a client deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_request_timeout_applies() {
    let srv = Server::builder()
        .args(["--request-timeout", "0.001"])
        .start()
        .await;
    let mut c = srv.client().await;
    let r = c
        .store_document(store_req("big", "v1", tree(2000, 5, |i| format!("n {i}"))))
        .await;
    assert_code(r, Code::DeadlineExceeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let srv = Server::start().await;
    let mut rc = ServerReflectionClient::new(srv.channel().await);
    let reqs = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "treestore.TreeStoreService".into(),
            )),
        },
    ];
    let mut responses = ok(rc.server_reflection_info(tokio_stream::iter(reqs)).await);
    let first = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("{first:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"treestore.TreeStoreService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    let second = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(fd)) = second.message_response else {
        panic!("{second:?}")
    };
    assert!(!fd.file_descriptor_proto.is_empty());
    let raw = String::from_utf8_lossy(&fd.file_descriptor_proto[0]).to_string();
    assert!(
        raw.contains("GetBySectionPath"),
        "descriptor names the RPCs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_port_serves_metrics_health_and_readiness() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_small(&mut c, "pol", "v1").await;
    for _ in 0..3 {
        ok(c.get_node(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "a".into(),
            version_id: String::new(),
        })
        .await);
    }
    assert_code(
        c.get_node(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "nosuch".into(),
            version_id: String::new(),
        })
        .await,
        Code::NotFound,
    );
    let port = srv.metrics_port;
    let (code, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let line = |needle: &[&str]| {
        body.lines()
            .find(|l| !l.starts_with('#') && needle.iter().all(|n| l.contains(n)))
            .map(str::to_string)
    };
    let ok_line = line(&[
        "treestore_grpc_requests_total{",
        "rpc=\"GetNode\"",
        "code=\"Ok\"",
    ])
    .unwrap_or_else(|| panic!("no GetNode OK counter in:\n{body}"));
    assert!(ok_line.ends_with(" 3"), "{ok_line}");
    let nf = line(&[
        "treestore_grpc_requests_total{",
        "rpc=\"GetNode\"",
        "NotFound",
    ])
    .unwrap_or_else(|| panic!("no GetNode NotFound counter in:\n{body}"));
    assert!(nf.ends_with(" 1"), "{nf}");
    assert!(
        line(&[
            "treestore_grpc_request_duration_seconds_bucket{",
            "rpc=\"GetNode\""
        ])
        .is_some(),
        "latency histogram:\n{body}"
    );
    let fsyncs = line(&["treestore_wal_fsyncs_total"])
        .unwrap_or_else(|| panic!("no treestore_wal_fsyncs_total in:\n{body}"));
    let n: f64 = fsyncs.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{fsyncs}");
    let nodes =
        line(&["treestore_nodes "]).unwrap_or_else(|| panic!("no treestore_nodes:\n{body}"));
    assert!(nodes.ends_with(" 7"), "{nodes}");
    for name in [
        "treestore_buffer_pool_hits_total",
        "treestore_wal_bytes_total",
        "treestore_file_bytes",
    ] {
        assert!(line(&[name]).is_some(), "{name} missing:\n{body}");
    }

    let (code, _) = srv.http_get("/healthz");
    assert_eq!(code, 200);
    let (code, _) = srv.http_get("/readyz");
    assert_eq!(code, 200);
    let (code, _) = srv.http_get("/nosuchpage");
    assert_eq!(code, 404);
}

/// The CPU profile endpoint samples the server for the seconds asked and
/// returns a flame graph (SVG) of what it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_endpoint_returns_a_flame_graph() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    store_small(&mut c, "pol", "v1").await;
    let port = srv.metrics_port;
    let profile =
        tokio::task::spawn_blocking(move || http_get(port, "/debug/pprof/profile?seconds=2"));
    // Work to sample for as long as the profile runs.
    while !profile.is_finished() {
        ok(c.get_node(pb::GetNodeRequest {
            policy_id: "pol".into(),
            node_id: "a".into(),
            version_id: String::new(),
        })
        .await);
    }
    let (code, body) = profile.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("<svg"),
        "not an SVG ({} bytes): {}",
        body.len(),
        &body[..body.len().min(300)]
    );
}

/// StoreDocument with an effective date keeps what an earlier RegisterVersion
/// said about the version (its end, description, lineage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_dated_document_keeps_the_registration_details() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    ok(
        c.register_version(register(version("pol", "v0", Some(date(2020, 1, 1)), None)))
            .await,
    );
    let mut v1 = version("pol", "v1", Some(date(2024, 1, 1)), Some(date(2025, 1, 1)));
    v1.description = "interim".into();
    v1.supersedes_version_id = "v0".into();
    ok(c.register_version(register(v1)).await);
    let mut req = store_req("pol", "v1", small_doc_nodes());
    if let Some(d) = req.document.as_mut() {
        d.metadata
            .insert("effective_date".into(), "2024-01-01".into());
    }
    ok(c.store_document(req).await);
    let at = |secs| pb::GetVersionAsOfRequest {
        policy_id: "pol".into(),
        as_of_time: Some(ts(secs)),
    };
    let v = ok(c.get_version_as_of(at(date(2024, 6, 1))).await);
    assert_eq!(
        (
            v.version_id.as_str(),
            v.description.as_str(),
            v.supersedes_version_id.as_str()
        ),
        ("v1", "interim", "v0")
    );
    assert_eq!(v.effective_end, Some(ts(date(2025, 1, 1))));
    // After v1's end, v0 (open-ended) is in force again.
    let v = ok(c.get_version_as_of(at(date(2025, 6, 1))).await);
    assert_eq!(v.version_id, "v0");
}

/// The metrics' `rpc` label comes from the RPCs the server serves: a call to
/// a path that names no RPC (here unauthenticated too: tokens are on) is
/// counted under `unknown`, so arbitrary paths cannot add label sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_share_one_metrics_label() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, "sekret\n").unwrap();
    let srv = Server::builder()
        .args(["--auth-token-file", tokens.to_str().unwrap()])
        .start()
        .await;
    let mut grpc = tonic::client::Grpc::new(srv.channel().await);
    for path in [
        "/treestore.TreeStoreService/NoSuchRpcXyz",
        "/evil.Bogus/Zzz123",
    ] {
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<pb::HealthRequest, pb::HealthResponse>::default();
        let r = grpc
            .unary(
                Request::new(pb::HealthRequest {}),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                codec,
            )
            .await;
        assert_code(r, Code::Unauthenticated);
    }
    let port = srv.metrics_port;
    let (code, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        !body.contains("NoSuchRpcXyz") && !body.contains("Zzz123"),
        "a bogus path became a label:\n{body}"
    );
    let unknown = body
        .lines()
        .find(|l| {
            l.starts_with("treestore_grpc_requests_total{")
                && l.contains("rpc=\"unknown\"")
                && l.contains("Unauthenticated")
        })
        .unwrap_or_else(|| panic!("no unknown counter in:\n{body}"));
    assert!(unknown.ends_with(" 2"), "{unknown}");
}

/// Instants before 1677-09-22 fit the wire's Timestamp (and even an i64 of
/// nanoseconds) but a record holding one could not be read back: they are
/// INVALID_ARGUMENT naming the field, and nothing is stored. The first
/// supported instant round-trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_out_of_the_supported_range_are_invalid() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    // 1677-09-21T12:00:00Z.
    let early = prost_types::Timestamp {
        seconds: -9_223_329_600,
        nanos: 0,
    };
    let mut r = tool_result("search", "TS", "early");
    r.executed_at = Some(early);
    assert_status(
        c.store_tool_result(pb::StoreToolResultRequest { result: Some(r) })
            .await,
        Code::InvalidArgument,
        "result.executed_at",
    );
    let mut v = version("pol", "v1", None, None);
    v.effective_start = Some(early);
    assert_status(
        c.register_version(register(v)).await,
        Code::InvalidArgument,
        "version.effective_start",
    );
    let usage = pb::PromptUsage {
        prompt_id: "p".into(),
        case_id: "TS".into(),
        used_at: Some(early),
        ..Default::default()
    };
    assert_status(
        c.apply_writes(pb::ApplyWritesRequest {
            ops: vec![op(pb::write_op::Op::PromptUsage(usage))],
        })
        .await,
        Code::InvalidArgument,
        "ops[0].prompt_usage.used_at",
    );
    // Nothing was stored, and the case's records still read.
    let got = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: "TS".into(),
            ..Default::default()
        })
        .await);
    assert!(got.results.is_empty(), "{got:?}");
    // 1677-09-22T00:00:00Z, the first supported instant.
    let first = prost_types::Timestamp {
        seconds: -106_751 * 86_400,
        nanos: 0,
    };
    let mut r = tool_result("search", "TS", "first");
    r.executed_at = Some(first);
    ok(
        c.store_tool_result(pb::StoreToolResultRequest { result: Some(r) })
            .await,
    );
    let got = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: "TS".into(),
            ..Default::default()
        })
        .await);
    assert_eq!(got.results.len(), 1);
    assert_eq!(got.results[0].executed_at, Some(first));
}

/// The proto: a PolicyVersion's `document_id` empty on input is filled from
/// the document stored for that (policy, version); a version registered
/// before its document takes it when the document is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_version_fills_document_id_from_the_stored_document() {
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let mut req = store_req("pol", "v1", vec![node("a", "", "A")]);
    req.document.as_mut().unwrap().pageindex_doc_id = "pi-123".into();
    ok(c.store_document(req).await);
    let r = ok(c
        .register_version(register(version("pol", "v1", Some(date(2020, 1, 1)), None)))
        .await);
    assert_eq!(r.version.unwrap().document_id, "pi-123");
    let listed = ok(c
        .list_versions(pb::ListVersionsRequest {
            policy_id: "pol".into(),
            limit: 0,
        })
        .await);
    assert_eq!(listed.versions[0].document_id, "pi-123");
    // A document_id given explicitly is kept.
    let mut v = version("pol", "v1", Some(date(2020, 1, 1)), None);
    v.document_id = "explicit".into();
    let r = ok(c.register_version(register(v)).await);
    assert_eq!(r.version.unwrap().document_id, "explicit");
    // No document yet: stays empty until one is stored.
    let r = ok(c
        .register_version(register(version("pol", "v2", Some(date(2021, 1, 1)), None)))
        .await);
    assert_eq!(r.version.unwrap().document_id, "");
    let mut req = store_req("pol", "v2", vec![node("a", "", "A")]);
    req.document.as_mut().unwrap().pageindex_doc_id = "pi-456".into();
    ok(c.store_document(req).await);
    let latest = ok(c
        .get_latest_version(pb::GetLatestVersionRequest {
            policy_id: "pol".into(),
        })
        .await);
    assert_eq!(
        (latest.version_id.as_str(), latest.document_id.as_str()),
        ("v2", "pi-456")
    );
}

/// Filtered queries return the first `limit` matching records, however
/// many non-matching ones come first: a case's usages of one prompt behind
/// 150 newer usages of another prompt, and a case's contradictions on one
/// criterion behind 150 newer ones on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_queries_scan_past_non_matching_records() {
    use pb::write_op::Op;
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let base = date(2024, 1, 1);
    let usage = |id: String, prompt: &str, at: i64| pb::PromptUsage {
        usage_id: id,
        prompt_id: prompt.into(),
        prompt_version: "1".into(),
        case_id: "C".into(),
        used_at: Some(ts(at)),
        ..Default::default()
    };
    let mut ops: Vec<_> = (0..3)
        .map(|i| op(Op::PromptUsage(usage(format!("match{i}"), "p", base + i))))
        .collect();
    ops.extend((0..150).map(|i| {
        op(Op::PromptUsage(usage(
            format!("other{i}"),
            "q",
            base + 1000 + i,
        )))
    }));
    let mut later = contradiction("C", "X", "low", base);
    later.contradiction_id = "k-match0".into();
    ops.push(op(Op::Contradiction(later)));
    let mut later = contradiction("C", "X", "low", base + 1);
    later.contradiction_id = "k-match1".into();
    ops.push(op(Op::Contradiction(later)));
    ops.extend((0..150).map(|i| {
        let mut k = contradiction("C", "Y", "low", base + 1000 + i);
        k.contradiction_id = format!("k-other{i}");
        op(Op::Contradiction(k))
    }));
    ok(c.apply_writes(pb::ApplyWritesRequest { ops }).await);

    let usages = |limit: i32, version: &str| pb::GetPromptUsagesRequest {
        case_id: "C".into(),
        prompt_id: "p".into(),
        prompt_version: version.into(),
        limit,
    };
    let got = ok(c.get_prompt_usages(usages(0, "")).await);
    let ids: Vec<_> = got.usages.iter().map(|u| u.usage_id.as_str()).collect();
    assert_eq!(ids, ["match2", "match1", "match0"]);
    let got = ok(c.get_prompt_usages(usages(2, "1")).await);
    let ids: Vec<_> = got.usages.iter().map(|u| u.usage_id.as_str()).collect();
    assert_eq!(ids, ["match2", "match1"]);
    let got = ok(c.get_prompt_usages(usages(0, "2")).await);
    assert!(got.usages.is_empty(), "{got:?}");

    let contradictions = |limit: i32| pb::GetContradictionsRequest {
        case_id: "C".into(),
        criterion_id: "X".into(),
        unresolved_only: false,
        limit,
    };
    let got = ok(c.get_contradictions(contradictions(0)).await);
    let ids: Vec<_> = got
        .contradictions
        .iter()
        .map(|k| k.contradiction_id.as_str())
        .collect();
    assert_eq!(ids, ["k-match1", "k-match0"]);
    let got = ok(c.get_contradictions(contradictions(1)).await);
    assert_eq!(got.contradictions.len(), 1);
    assert_eq!(got.contradictions[0].contradiction_id, "k-match1");
}

/// ApplyWrites names an invalid field by its wire path
/// (`ops[i].<operation>.<field as the wire calls it>`), for errors of the
/// store's validation and for errors raised inside the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_writes_errors_name_the_wire_path() {
    use pb::write_op::Op;
    let srv = Server::start().await;
    let mut c = srv.client().await;
    let good = || op(Op::ToolResult(tool_result("search", "W", "good")));
    async fn apply(
        c: &mut Client,
        ops: Vec<pb::WriteOp>,
    ) -> Result<tonic::Response<pb::ApplyWritesResponse>, tonic::Status> {
        c.apply_writes(pb::ApplyWritesRequest { ops }).await
    }

    let e = apply(
        &mut c,
        vec![
            good(),
            good(),
            op(Op::ToolResult(tool_result("", "W", "e"))),
        ],
    )
    .await;
    assert_status(e, Code::InvalidArgument, "ops[2].tool_result.tool_name");

    let mut bad_json = tool_result("search", "W", "e");
    bad_json.result_data = "{not json".into();
    let e = apply(&mut c, vec![op(Op::ToolResult(bad_json))]).await;
    assert_status(e, Code::InvalidArgument, "ops[0].tool_result.result_data");

    let mut bad = contradiction("W", "X", "low", 0);
    bad.node_id_b = String::new();
    let e = apply(&mut c, vec![good(), op(Op::Contradiction(bad))]).await;
    assert_status(e, Code::InvalidArgument, "ops[1].contradiction.node_id_b");

    let e = apply(
        &mut c,
        vec![good(), op(Op::StoreDocument(store_req("pol", "", vec![])))],
    )
    .await;
    assert_status(
        e,
        Code::InvalidArgument,
        "ops[1].store_document.document.version_id",
    );

    let mut v = version("pol", "v1", Some(date(2020, 1, 1)), None);
    v.supersedes_version_id = "v1".into();
    let e = apply(&mut c, vec![op(Op::RegisterVersion(v))]).await;
    assert_status(
        e,
        Code::InvalidArgument,
        "ops[0].register_version.supersedes_version_id",
    );

    // Checked inside the transaction, after op 0 was written.
    let e = apply(
        &mut c,
        vec![
            good(),
            op(Op::ResolveContradiction(pb::ResolveContradictionRequest {
                contradiction_id: "k1".into(),
                resolution_status: "resolved".into(),
                resolution_note: "n".repeat(5 * 1024 * 1024),
            })),
        ],
    )
    .await;
    assert_status(
        e,
        Code::InvalidArgument,
        "ops[1].resolve_contradiction.resolution_note",
    );
    let got = ok(c
        .get_tool_results(pb::GetToolResultsRequest {
            case_id: "W".into(),
            ..Default::default()
        })
        .await);
    assert!(got.results.is_empty(), "{got:?}");
}
