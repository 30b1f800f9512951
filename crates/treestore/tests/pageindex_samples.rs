//! Every real PageIndex output in `tests/data/pageindex/` imports with its exact
//! node count, depth and top-level count, and queries return what the JSON says
//! (titles, page ranges, summaries, parents, child order, pages, ancestors).

use std::path::PathBuf;

use serde_json::Value;
use treestore::{pageindex, Document, SearchScope, TreeStore};

/// (file, nodes, depth, top-level), as the data README lists them.
const SAMPLES: [(&str, usize, u32, usize); 5] = [
    ("2023-annual-report_structure.json", 76, 3, 16),
    ("earthmover_structure.json", 21, 2, 11),
    ("four-lectures_structure.json", 53, 2, 7),
    ("q1-fy25-earnings_structure.json", 41, 3, 11),
    (
        "regulation-best-interest-interpretive_structure.json",
        9,
        2,
        4,
    ),
];

fn data(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pageindex")
        .join(file);
    std::fs::read_to_string(p).unwrap()
}

/// A node as the JSON states it, with its parent and child ids.
struct JsonNode {
    id: String,
    title: String,
    pages: (u32, u32),
    summary: String,
    parent: Option<String>,
    children: Vec<String>,
    depth: u32,
}

fn walk(list: &[Value], parent: Option<&str>, depth: u32, out: &mut Vec<JsonNode>) {
    for v in list {
        let kids = v
            .get("nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let id = v["node_id"].as_str().unwrap().to_string();
        out.push(JsonNode {
            id: id.clone(),
            title: v["title"].as_str().unwrap().to_string(),
            pages: (
                v["start_index"].as_u64().unwrap() as u32,
                v["end_index"].as_u64().unwrap() as u32,
            ),
            summary: v
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            parent: parent.map(str::to_string),
            children: kids
                .iter()
                .map(|k| k["node_id"].as_str().unwrap().to_string())
                .collect(),
            depth,
        });
        walk(&kids, Some(&id), depth + 1, out);
    }
}

#[test]
fn every_sample_imports_with_its_exact_structure() {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Default::default()).unwrap();
    for (file, count, depth, tops) in SAMPLES {
        let text = data(file);
        let imported = pageindex::parse(&text).unwrap();
        assert_eq!(imported.nodes.len(), count, "{file}");
        let policy = file.trim_end_matches("_structure.json");
        let mut doc = imported.document.clone();
        doc.policy_id = policy.to_string();
        doc.version_id = "v1".to_string();
        let report = store.store_document(doc, imported.nodes).unwrap();
        assert_eq!(report.nodes, count, "{file}");

        let json: Value = serde_json::from_str(&text).unwrap();
        let mut expected = Vec::new();
        walk(
            json["structure"].as_array().unwrap(),
            None,
            0,
            &mut expected,
        );
        assert_eq!(expected.len(), count);

        let r = store.read();
        let (d, nodes) = r.get_document(policy, None).unwrap();
        assert_eq!(d.pageindex_doc_id, json["doc_name"].as_str().unwrap());
        assert_eq!(nodes.len(), count);
        assert_eq!(
            nodes.iter().map(|n| n.depth).max().unwrap() + 1,
            depth,
            "{file}"
        );
        // Document order is the JSON's pre-order.
        let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, want, "{file}");
        let top = r.get_children(policy, None, None).unwrap();
        assert_eq!(top.len(), tops, "{file}");
        let top_ids: Vec<&str> = top.iter().map(|n| n.node_id.as_str()).collect();
        let want_top: Vec<&str> = expected
            .iter()
            .filter(|n| n.parent.is_none())
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(top_ids, want_top);

        for e in &expected {
            let n = r.get_node(policy, Some("v1"), &e.id).unwrap();
            assert_eq!(n.title, e.title);
            assert_eq!((n.page_start, n.page_end), e.pages);
            assert_eq!(n.summary, e.summary);
            assert_eq!(n.parent_id, e.parent);
            assert_eq!(n.child_ids, e.children);
            assert_eq!(n.depth, e.depth);
            let kids: Vec<String> = r
                .get_children(policy, None, Some(&e.id))
                .unwrap()
                .into_iter()
                .map(|n| n.node_id)
                .collect();
            assert_eq!(kids, e.children);
            let path = r.get_ancestor_path(policy, None, &e.id).unwrap();
            assert_eq!(path.len() as u32, e.depth + 1);
            assert_eq!(path.last().unwrap().node_id, e.id);
            assert!(path[0].parent_id.is_none());
            // The node is found by its section path, and by a word of its title.
            let by_path = r
                .get_by_section_path(policy, None, &n.section_path)
                .unwrap();
            assert_eq!(by_path[0].node_id, e.id);
        }
        let last_page = expected.iter().map(|e| e.pages.1).max().unwrap();
        for page in 0..=last_page + 1 {
            let got: Vec<String> = r
                .get_nodes_by_page(policy, None, page)
                .unwrap()
                .into_iter()
                .map(|n| n.node_id)
                .collect();
            let want: Vec<String> = expected
                .iter()
                .filter(|e| e.pages.0 <= page && page <= e.pages.1)
                .map(|e| e.id.clone())
                .collect();
            assert_eq!(got, want, "{file} page {page}");
        }
        // Subtree of a top-level node = the node and all its descendants.
        let first = &want_top[0];
        let sub = r.get_subtree(policy, None, first, 0).unwrap();
        assert_eq!(sub[0].node_id, *first);
    }

    // Searching a distinctive title finds its node first.
    let r = store.read();
    let hits = r
        .search(
            SearchScope::Document {
                policy: "earthmover",
                version: None,
            },
            "Earth Mover's Distance similarity search",
            5,
        )
        .unwrap();
    assert_eq!(hits[0].node.node_id, "0000");
    let all = r
        .search(SearchScope::AllPolicies, "Disney quarter earnings", 5)
        .unwrap();
    assert_eq!(all[0].policy_id, "q1-fy25-earnings");
}

#[test]
fn stored_nodes_equal_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Default::default()).unwrap();
    let imported = pageindex::parse(&data("q1-fy25-earnings_structure.json")).unwrap();
    let mut doc = Document::new("disney", "q1");
    doc.metadata = imported.document.metadata.clone();
    store.store_document(doc, imported.nodes.clone()).unwrap();
    let (d, nodes) = store.read().get_document("disney", Some("q1")).unwrap();
    assert!(d.metadata["doc_description"].starts_with("A comprehensive financial report"));
    for (got, want) in nodes.iter().zip(&imported.nodes) {
        assert_eq!(got.node_id, want.node_id);
        assert_eq!(got.section_path, want.section_path);
        assert_eq!(got.child_ids, want.child_ids);
        assert_eq!(got.summary, want.summary);
    }
}
