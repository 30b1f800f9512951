//! BM25 against a hand-computed example, and bad input: every rejected
//! document is named clearly and leaves the store exactly as it was.

use treestore::{pageindex, Document, Error, Node, SearchScope, TreeStore};

fn open() -> (tempfile::TempDir, TreeStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Default::default()).unwrap();
    (dir, store)
}

fn node(id: &str, parent: Option<&str>, title: &str, text: &str) -> Node {
    let mut n = Node::new(id, parent, title, (1, 1));
    n.text = text.to_string();
    n
}

/// Three nodes; weighted lengths (title x4, text x1): n1 = 4 + 2 = 6, n2 = 4 + 1
/// = 5, n3 = 4; N = 3, avgdl = 5. "knee" is in n1 (title and text: tf 5) and n2
/// (text: tf 1), so df 2 and idf = ln(1 + 1.5 / 2.5) = ln 1.6.
/// n1: ln1.6 * 5 * 2.2 / (5 + 1.2 * (0.25 + 0.75 * 6 / 5)) = ln1.6 * 11 / 6.38
/// n2: ln1.6 * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75)) = ln1.6
/// "mri" is in n1 (text: tf 1) and n3 (title: tf 4), df 2:
/// n1: ln1.6 * 2.2 / 2.38, n3: ln1.6 * 8.8 / (4 + 1.2 * 0.85) = ln1.6 * 8.8 / 5.02
#[test]
fn bm25_scores_equal_the_hand_computed_example() {
    let (_d, store) = open();
    let nodes = vec![
        node("n1", None, "knee", "mri knee"),
        node("n2", None, "spine", "knee"),
        node("n3", None, "mri", ""),
    ];
    store
        .store_document(Document::new("p", "v"), nodes)
        .unwrap();
    let r = store.read();
    let scope = SearchScope::Document {
        policy: "p",
        version: None,
    };
    let hits = r.search(scope, "knee", 10).unwrap();
    let got: Vec<(&str, f64)> = hits
        .iter()
        .map(|h| (h.node.node_id.as_str(), h.score))
        .collect();
    let ln16 = 1.6f64.ln();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "n1");
    assert!((got[0].1 - 0.8103510849064407).abs() < 1e-12, "{got:?}");
    assert!((got[0].1 - ln16 * 11.0 / 6.38).abs() < 1e-12);
    assert_eq!(got[1].0, "n2");
    assert!((got[1].1 - ln16).abs() < 1e-12);

    let hits = r.search(scope, "Knee MRI", 10).unwrap();
    let got: Vec<(&str, f64)> = hits
        .iter()
        .map(|h| (h.node.node_id.as_str(), h.score))
        .collect();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        ["n1", "n3", "n2"]
    );
    assert!((got[0].1 - 1.2448082211840115).abs() < 1e-12);
    assert!((got[1].1 - 0.8239107444945167).abs() < 1e-12);
    // limit caps the count.
    assert_eq!(r.search(scope, "knee mri", 1).unwrap().len(), 1);
    // Stop words only: no terms, no results; empty: invalid argument.
    assert!(r.search(scope, "the of", 10).unwrap().is_empty());
    assert!(matches!(
        r.search(scope, "  ", 10),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        r.search(SearchScope::AllPolicies, "", 10),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        r.search(scope, "knee", 1_000_000),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn equal_scores_are_ordered_by_document_order() {
    let (_d, store) = open();
    let nodes = (0..5)
        .map(|i| node(&format!("x{i}"), None, "same words", ""))
        .collect();
    store
        .store_document(Document::new("p", "v"), nodes)
        .unwrap();
    let hits = store
        .read()
        .search(
            SearchScope::Document {
                policy: "p",
                version: None,
            },
            "words",
            3,
        )
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.node.node_id.as_str()).collect();
    assert_eq!(ids, ["x0", "x1", "x2"]);
}

/// Every key and value in the database.
fn dump(store: &TreeStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.db().begin_read().iter().map(|r| r.unwrap()).collect()
}

#[test]
fn invalid_documents_name_the_problem_and_write_nothing() {
    let (_d, store) = open();
    store
        .store_document(
            Document::new("p", "v1"),
            vec![node("a", None, "original", "")],
        )
        .unwrap();
    let before = dump(&store);

    let cases: Vec<(Vec<Node>, &str)> = vec![
        (
            vec![
                node("a", None, "t", ""),
                node("b", Some("c"), "t", ""),
                node("c", Some("b"), "t", ""),
            ],
            "cycle",
        ),
        (
            vec![node("a", None, "t", ""), node("a", None, "t", "")],
            "duplicate",
        ),
        (
            vec![node("a", Some("ghost"), "t", "")],
            "\"ghost\" does not exist",
        ),
        (vec![node("", None, "t", "")], "empty node_id"),
        (
            {
                let mut n = node("a", None, "t", "");
                n.page_start = 9;
                n.page_end = 2;
                vec![n]
            },
            "page_start 9",
        ),
        (
            {
                let mut n = node("a", None, "t", "");
                n.child_ids = vec!["b".into()];
                vec![n, node("b", None, "t", "")]
            },
            "child_ids lists \"b\"",
        ),
        (
            vec![node(
                "a",
                None,
                &"x".repeat(treestore::model::MAX_TITLE_LEN + 1),
                "",
            )],
            "title is",
        ),
    ];
    for (nodes, expect) in cases {
        for version in ["v1", "v2"] {
            let err = store
                .store_document(Document::new("p", version), nodes.clone())
                .unwrap_err();
            assert!(matches!(err, Error::InvalidDocument { .. }), "{err}");
            assert!(err.to_string().contains(expect), "{err} lacks {expect}");
            assert_eq!(dump(&store), before, "{expect}: the store changed");
        }
    }
    let err = store
        .store_document(Document::new("", "v"), vec![])
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { ref field, .. } if field == "policy_id"),
        "{err}"
    );
    assert_eq!(dump(&store), before);
    // The original is intact and still current.
    assert_eq!(
        store.read().get_node("p", None, "a").unwrap().title,
        "original"
    );
}

#[test]
fn bad_pageindex_files_name_the_problem() {
    for (json, expect) in [
        ("{\"structure\": [", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ("{\"pages\": [1, 2]}", "`structure`, `result` or `nodes`"),
        (
            "{\"structure\": {\"title\": \"x\"}}",
            "structure: expected a list",
        ),
        (
            "{\"structure\": [{\"node_id\": \"1\", \"start_index\": 1}]}",
            "structure[0]: missing `title`",
        ),
        (
            "{\"structure\": [{\"title\": \"A\", \"start_index\": -1}]}",
            "structure[0].start_index",
        ),
        ("{\"result\": [{\"title\": \"A\"}]}", "missing `page_index`"),
        (
            "{\"structure\": [{\"title\": \"A\", \"start_index\": 1, \"nodes\": 5}]}",
            "structure[0].nodes: expected a list",
        ),
    ] {
        let err = pageindex::parse(json).unwrap_err().to_string();
        assert!(err.contains(expect), "{json}: {err}");
    }
    // Duplicate ids in a well-formed file are caught when storing.
    let (_d, store) = open();
    let imp = pageindex::parse(
        r#"{"structure": [{"title": "A", "node_id": "1", "start_index": 1},
                          {"title": "B", "node_id": "1", "start_index": 2}]}"#,
    )
    .unwrap();
    let err = store
        .store_document(Document::new("p", "v"), imp.nodes)
        .unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
    assert!(dump(&store).is_empty());
}

#[test]
fn not_found_is_typed_and_names_what_is_missing() {
    let (_d, store) = open();
    store
        .store_document(Document::new("p", "v"), vec![node("a", None, "t", "")])
        .unwrap();
    let r = store.read();
    let e = r.get_node("p", None, "zz").unwrap_err();
    assert!(
        matches!(e, Error::NodeNotFound { .. }) && e.to_string().contains("\"zz\""),
        "{e}"
    );
    let e = r.get_node("q", None, "a").unwrap_err();
    assert!(
        matches!(e, Error::DocumentNotFound { .. }) && e.to_string().contains("\"q\""),
        "{e}"
    );
    let e = r.get_node("p", Some("v9"), "a").unwrap_err();
    assert!(
        matches!(e, Error::DocumentNotFound { .. }) && e.to_string().contains("v9"),
        "{e}"
    );
    let e = r.get_children("p", None, Some("zz")).unwrap_err();
    assert!(e.is_not_found());
    let e = r.get_node("p", None, "").unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { ref field, .. } if field == "node_id"),
        "{e}"
    );
    assert!(r.get_nodes_by_page("p", None, 99).unwrap().is_empty());
    assert!(r
        .get_nodes_by_page("p", Some("v9"), 1)
        .unwrap_err()
        .is_not_found());
    let e = store.delete_document("p", Some("v9")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn deleting_the_current_version_falls_back_to_the_latest_remaining() {
    let (_d, store) = open();
    for v in ["v1", "v2", "v3"] {
        store
            .store_document(Document::new("p", v), vec![node("a", None, v, "")])
            .unwrap();
    }
    // Re-storing v1 makes it the latest stored.
    store
        .store_document(
            Document::new("p", "v1"),
            vec![node("a", None, "v1 again", "")],
        )
        .unwrap();
    assert_eq!(
        store.read().current_version("p").unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(store.delete_document("p", Some("v1")).unwrap(), ["v1"]);
    assert_eq!(
        store.read().current_version("p").unwrap().as_deref(),
        Some("v3")
    );
    let versions: Vec<String> = store
        .read()
        .list_versions("p")
        .unwrap()
        .into_iter()
        .map(|v| v.version_id)
        .collect();
    assert_eq!(versions, ["v3", "v2"], "latest effective start first");
    let mut all = store.delete_document("p", None).unwrap();
    all.sort();
    assert_eq!(all, ["v2", "v3"]);
    assert_eq!(store.read().current_version("p").unwrap(), None);
    assert!(
        dump(&store).is_empty(),
        "deleting every version leaves no key behind"
    );
}

/// Rewrites the postings of a stored document in the layout of documents
/// stored before posting blocks: one list per term under the posting table,
/// no blocks.
fn to_per_term_postings(store: &TreeStore, policy: &str, version: &str) {
    use treestore::codec;
    let keys = treestore::schema::DocKeys::new(policy, version);
    let blocks: Vec<(Vec<u8>, Vec<u8>)> = store
        .db()
        .begin_read()
        .prefix(&keys.posting_blocks(), false)
        .map(|r| r.unwrap())
        .collect();
    assert!(!blocks.is_empty());
    let mut txn = store.db().begin_write();
    let mut list = Vec::new();
    for (key, block) in blocks {
        for term in codec::posting_block_terms(&block).unwrap() {
            codec::find_in_posting_block(&block, &term, &mut list)
                .unwrap()
                .unwrap();
            txn.put(&keys.posting(&term), &codec::encode_postings(&list))
                .unwrap();
        }
        txn.delete(&key).unwrap();
    }
    txn.commit().unwrap();
}

/// Rewrites the term summaries of a stored document in the layout of
/// documents stored before summary blocks: one entry per term in space 0x13,
/// no blocks. Call it before [`to_per_term_postings`] (it finds the terms in
/// the posting blocks).
fn to_per_term_summaries(store: &TreeStore, policy: &str, version: &str) {
    use treestore::{codec, schema};
    let keys = schema::DocKeys::new(policy, version);
    let r = store.db().begin_read();
    let mut terms = Vec::new();
    for item in r.prefix(&keys.posting_blocks(), false) {
        let (_, block) = item.unwrap();
        terms.extend(codec::posting_block_terms(&block).unwrap());
    }
    assert!(!terms.is_empty());
    let mut txn = store.db().begin_write();
    for term in &terms {
        let key = schema::summary_block(schema::term_group(term), policy, version);
        let block = r.get(&key).unwrap().expect("summary block");
        let summary = codec::find_in_summary_block(&block, term)
            .unwrap()
            .expect("summary");
        txn.put(
            &schema::term(term, policy, version),
            &codec::encode_summary(&summary),
        )
        .unwrap();
        txn.delete(&key).unwrap();
    }
    txn.commit().unwrap();
}

/// A stored posting list naming a node past the document's end (a corrupt
/// record) makes the search fail with a corrupt-record error naming the key,
/// in one policy and across policies, instead of sizing score arrays from it:
/// in a posting block and in a per-term list of an older document.
#[test]
fn a_posting_past_the_document_end_is_reported_as_corrupt() {
    use treestore::codec::{encode_postings, Posting, PostingBlocks};
    for per_term in [false, true] {
        let (_d, store) = open();
        let nodes = vec![
            node("n1", None, "knee", "mri knee"),
            node("n2", None, "spine", "knee"),
        ];
        store
            .store_document(Document::new("p", "v1"), nodes)
            .unwrap();
        let bad = [Posting {
            ord: 4_000_000_000,
            tf: 1,
            len: 1,
        }];
        let keys = treestore::schema::DocKeys::new("p", "v1");
        if per_term {
            to_per_term_postings(&store, "p", "v1");
            store
                .db()
                .put(&keys.posting("knee"), &encode_postings(&bad))
                .unwrap();
        } else {
            // "knee" is the document's first term, so this block replaces
            // the one holding it.
            let mut blocks = PostingBlocks::default();
            blocks.add("knee", &bad);
            let (first, block) = blocks.finish().pop().unwrap();
            assert_eq!(first, "knee");
            store.db().put(&keys.posting_block(&first), &block).unwrap();
        }
        for scope in [
            SearchScope::Document {
                policy: "p",
                version: None,
            },
            SearchScope::AllPolicies,
        ] {
            match store.read().search(scope, "knee", 10) {
                Err(Error::CorruptRecord { reason, .. }) => {
                    assert!(reason.contains("past the document"), "{reason}")
                }
                other => panic!("per term {per_term}: expected a corrupt record, got {other:?}"),
            }
        }
    }
}

/// A document with thousands of distinct terms (many posting blocks): every
/// term is found in exactly the nodes that hold it, in one policy and across
/// policies; terms it does not hold (before its first, between and after its
/// terms) find nothing.
#[test]
fn every_term_of_a_many_block_document_is_found() {
    let (_d, store) = open();
    const NODES: usize = 40;
    const WORDS: usize = 3_000;
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|k| node(&format!("n{k:02}"), None, "section", ""))
        .collect();
    for i in 0..WORDS {
        let n = &mut nodes[i % NODES];
        n.text.push_str(&format!(" w{i:05}"));
    }
    store
        .store_document(Document::new("p", "v1"), nodes.clone())
        .unwrap();
    store
        .store_document(
            Document::new("other", "v1"),
            vec![node("o", None, "x", "w00007 zzz")],
        )
        .unwrap();
    let keys = treestore::schema::DocKeys::new("p", "v1");
    let blocks = store
        .db()
        .begin_read()
        .prefix(&keys.posting_blocks(), false)
        .count();
    assert!(blocks > 10, "{blocks} blocks");
    let one = |q: &str| -> Vec<String> {
        let scope = SearchScope::Document {
            policy: "p",
            version: None,
        };
        let hits = store.read().search(scope, q, 100).unwrap();
        hits.into_iter().map(|h| h.node.node_id).collect()
    };
    for i in 0..WORDS {
        let word = format!("w{i:05}");
        assert_eq!(one(&word), [format!("n{:02}", i % NODES)], "{word}");
    }
    for absent in ["a", "w", "w00000a", "w01500a", "w99999", "zzz"] {
        assert!(one(absent).is_empty(), "{absent}");
    }
    // Across policies too: the document's summaries fill most of the term
    // groups, and every term is found in its group's block.
    let summary_blocks = (0..treestore::schema::TERM_GROUPS)
        .filter(|&g| {
            let key = treestore::schema::summary_block(g, "p", "v1");
            store.db().get(&key).unwrap().is_some()
        })
        .count();
    assert!(summary_blocks > 900, "{summary_blocks} summary blocks");
    let r = store.read();
    for i in (0..WORDS).filter(|i| i % 3 == 0 && *i != 7) {
        let word = format!("w{i:05}");
        let hits = r.search(SearchScope::AllPolicies, &word, 10).unwrap();
        let got: Vec<(&str, &str)> = hits
            .iter()
            .map(|h| (h.policy_id.as_str(), h.node.node_id.as_str()))
            .collect();
        assert_eq!(
            got,
            [("p", format!("n{:02}", i % NODES).as_str())],
            "{word}"
        );
    }
    drop(r);
    let all = store
        .read()
        .search(SearchScope::AllPolicies, "w00007", 10)
        .unwrap();
    let mut got: Vec<(String, String)> = all
        .into_iter()
        .map(|h| (h.policy_id, h.node.node_id))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("other".to_string(), "o".to_string()),
            ("p".into(), "n07".into())
        ]
    );
}

/// Documents stored in the earlier layouts are searched exactly as before,
/// alone and next to documents in the current one, and deleting one removes
/// its lists and term summaries: summaries one entry per term with posting
/// blocks (stored before summary blocks), and with a list per term too
/// (stored before posting blocks).
#[test]
fn documents_in_earlier_layouts_search_and_delete_as_before() {
    for per_term_postings in [false, true] {
        search_and_delete_in_earlier_layout(per_term_postings);
    }
}

fn search_and_delete_in_earlier_layout(per_term_postings: bool) {
    let (_d, store) = open();
    let text = |k: usize| {
        format!(
            "knee mri criteria {} imaging w{k} spine",
            "text ".repeat(k % 5)
        )
    };
    for policy in ["a", "b"] {
        let nodes: Vec<Node> = (0..30)
            .map(|k| node(&format!("n{k}"), None, &format!("title {k}"), &text(k)))
            .collect();
        store
            .store_document(Document::new(policy, "v1"), nodes)
            .unwrap();
    }
    let queries = [
        "knee",
        "mri imaging",
        "w7",
        "title 3",
        "spine criteria w12",
        "absent",
    ];
    let results = |store: &TreeStore| -> Vec<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        for q in queries {
            for scope in [
                SearchScope::Document {
                    policy: "a",
                    version: None,
                },
                SearchScope::AllPolicies,
            ] {
                let hits = store.read().search(scope, q, 20).unwrap();
                out.push(
                    hits.into_iter()
                        .map(|h| (h.policy_id, h.node.node_id, h.score.to_bits()))
                        .collect(),
                );
            }
        }
        out
    };
    let before = results(&store);
    assert!(before.iter().filter(|r| !r.is_empty()).count() >= 8);
    to_per_term_summaries(&store, "a", "v1");
    if per_term_postings {
        to_per_term_postings(&store, "a", "v1");
    }
    assert_eq!(
        results(&store),
        before,
        "per-term postings {per_term_postings}"
    );
    store.delete_document("a", None).unwrap();
    store.delete_document("b", None).unwrap();
    assert!(dump(&store).is_empty(), "no list or summary left behind");
}

/// A node record whose subtree size is 0 (a size counts the node itself) is
/// reported as corrupt by a subtree query, not read as an empty range.
#[test]
fn a_subtree_size_of_zero_is_corrupt() {
    let (_d, store) = open();
    let nodes = vec![
        node("n1", None, "knee", "mri knee"),
        node("n2", Some("n1"), "spine", "knee"),
    ];
    store
        .store_document(Document::new("p", "v1"), nodes)
        .unwrap();
    let keys = treestore::schema::DocKeys::new("p", "v1");
    let raw = store.db().get(&keys.node(0)).unwrap().unwrap();
    let (mut header, n1) = treestore::codec::decode_node(&raw).unwrap();
    header.subtree_size = 0;
    store
        .db()
        .put(&keys.node(0), &treestore::codec::encode_node(&header, &n1))
        .unwrap();
    match store.read().get_subtree("p", None, "n1", 0) {
        Err(Error::CorruptRecord { .. }) => {}
        other => panic!("expected a corrupt record, got {other:?}"),
    }
}

/// A corrupt node record inside a scanned range, and a corrupt term summary,
/// end the scan with a corrupt-record error naming the key: for the whole
/// document, a subtree (with and without a depth limit) and a cross-policy
/// search.
#[test]
fn corrupt_records_met_in_a_scan_are_reported() {
    let (_d, store) = open();
    let nodes = vec![
        node("n1", None, "knee", "mri knee"),
        node("n2", Some("n1"), "spine", "knee"),
        node("n3", Some("n2"), "hip", "knee"),
    ];
    store
        .store_document(Document::new("p", "v1"), nodes)
        .unwrap();
    let keys = treestore::schema::DocKeys::new("p", "v1");
    let node2 = store.db().get(&keys.node(2)).unwrap().expect("node");
    store.db().put(&keys.node(2), b"\x01\xff").unwrap();
    let r = store.read();
    let corrupt = |e: Error| match e {
        Error::CorruptRecord { key, .. } => key,
        other => panic!("expected a corrupt record, got {other:?}"),
    };
    corrupt(r.get_document("p", None).unwrap_err());
    corrupt(r.get_subtree("p", None, "n1", 0).unwrap_err());
    corrupt(r.get_subtree("p", None, "n1", 2).unwrap_err());
    drop(r);
    store.db().put(&keys.node(2), &node2).unwrap();
    // A damaged summary block, then (the block restored) a damaged summary
    // in the layout before blocks.
    let block_key =
        treestore::schema::summary_block(treestore::schema::term_group("knee"), "p", "v1");
    let block = store.db().get(&block_key).unwrap().expect("summary block");
    store.db().put(&block_key, b"\x01\x04knee\x09").unwrap();
    let key = corrupt(
        store
            .read()
            .search(SearchScope::AllPolicies, "knee", 10)
            .unwrap_err(),
    );
    assert!(key.starts_with("\\x14"), "names the summary block: {key}");
    store.db().put(&block_key, &block).unwrap();
    assert_eq!(
        store
            .read()
            .search(SearchScope::AllPolicies, "knee", 10)
            .unwrap()
            .len(),
        3
    );
    store
        .db()
        .put(&treestore::schema::term("knee", "p", "v1"), b"\x01\xff")
        .unwrap();
    corrupt(
        store
            .read()
            .search(SearchScope::AllPolicies, "knee", 10)
            .unwrap_err(),
    );
}
