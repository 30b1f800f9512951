//! Readers running while a document is replaced again and again see the old or
//! the new content of the whole document, never a mix: within one snapshot the
//! document, children, subtree, page lookup and search all agree on one
//! generation; each single query is itself consistent.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use treestore::{Document, Node, SearchScope, TreeStore};

/// Generation `g` of the document: shape and words depend on its parity, and
/// every node carries the marker `g<g>` in its text.
fn generation(g: usize) -> Vec<Node> {
    let (word, fanout) = if g.is_multiple_of(2) {
        ("alpha", 3)
    } else {
        ("beta", 5)
    };
    let mut nodes = vec![];
    for top in 0..fanout {
        let tid = format!("t{top}");
        let mut t = Node::new(&tid, None, format!("{word} section"), (top, top + 1));
        t.text = format!("g{g} {word}");
        nodes.push(t);
        for c in 0..fanout {
            let mut n = Node::new(
                format!("t{top}c{c}"),
                Some(&tid),
                format!("{word} clause"),
                (top, top),
            );
            n.text = format!("g{g} {word}");
            nodes.push(n);
        }
    }
    nodes
}

fn marker(n: &Node) -> &str {
    n.text.split(' ').next().unwrap()
}

#[test]
fn readers_never_see_a_half_replaced_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(TreeStore::open(dir.path(), Default::default()).unwrap());
    store
        .store_document(Document::new("p", "v"), generation(0))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));

    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, stop, checks) = (store.clone(), stop.clone(), checks.clone());
            std::thread::spawn(move || {
                let mut seen = std::collections::HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = store.read();
                    let (_, nodes) = r.get_document("p", None).unwrap();
                    let gen = marker(&nodes[0]).to_string();
                    seen.insert(gen.clone());
                    let g: usize = gen[1..].parse().unwrap();
                    let (word, fanout) = if g.is_multiple_of(2) {
                        ("alpha", 3)
                    } else {
                        ("beta", 5)
                    };
                    assert_eq!(nodes.len(), fanout * (fanout + 1));
                    assert!(nodes.iter().all(|n| marker(n) == gen), "mixed document");
                    let tops = r.get_children("p", None, None).unwrap();
                    assert_eq!(tops.len(), fanout);
                    let sub = r.get_subtree("p", None, "t0", 0).unwrap();
                    assert_eq!(sub.len(), fanout + 1);
                    assert!(sub.iter().chain(&tops).all(|n| marker(n) == gen));
                    let page = r.get_nodes_by_page("p", None, 0).unwrap();
                    assert_eq!(page.len(), fanout + 1);
                    let scope = SearchScope::Document {
                        policy: "p",
                        version: None,
                    };
                    let hits = r.search(scope, word, 100).unwrap();
                    assert_eq!(hits.len(), nodes.len(), "search disagrees with the nodes");
                    let other = if word == "alpha" { "beta" } else { "alpha" };
                    assert!(r.search(scope, other, 100).unwrap().is_empty());
                    let all = r.search(SearchScope::AllPolicies, word, 100).unwrap();
                    assert_eq!(all.len(), nodes.len());
                    // A single query on a fresh snapshot is consistent by itself.
                    let sub = store.read().get_subtree("p", None, "t1", 0).unwrap();
                    assert!(sub.iter().all(|n| marker(n) == marker(&sub[0])));
                    checks.fetch_add(1, Ordering::Relaxed);
                }
                seen.len()
            })
        })
        .collect();

    for g in 1..=60 {
        // Let the readers run between replacements (bounded wait, so a stalled
        // reader cannot hang the test; the readers' own asserts decide).
        let before = checks.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while checks.load(Ordering::Relaxed) == before && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        store
            .store_document(Document::new("p", "v"), generation(g))
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut generations_seen = 0;
    for r in readers {
        generations_seen += r.join().unwrap();
    }
    assert!(checks.load(Ordering::Relaxed) > 0);
    // The readers really ran during the replacements.
    assert!(
        generations_seen > 3,
        "readers saw only {generations_seen} generations"
    );
}
