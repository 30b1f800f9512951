//! Finding nodes by PageIndex-style ids ("0000", "0001", ... = document
//! position): the record at that position is read first, and the id index
//! only when it holds another node. These tests check that the shortcut saves
//! the index lookup when ids are positions and never returns a wrong node when
//! they are not.

use std::time::Duration;

use treestore::{Document, Error, Node, Options, TreeStore};

/// A store whose pool counts only the queries' page visits (no background
/// checkpoint touches pages meanwhile).
fn open() -> (tempfile::TempDir, TreeStore) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        background: false,
        checkpoint_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let store = TreeStore::open(dir.path(), options).unwrap();
    (dir, store)
}

/// 200 nodes: 20 top-level sections of 9 children each, given in document
/// order, with ids `id(position)`.
fn forest(id: impl Fn(usize) -> String) -> Vec<Node> {
    let mut nodes = Vec::new();
    for s in 0..20 {
        let top = nodes.len();
        let mut n = Node::new(id(top), None, format!("section {s}"), (1, 2));
        n.text = "x".repeat(3000);
        nodes.push(n);
        for c in 0..9 {
            let pos = nodes.len();
            let mut n = Node::new(id(pos), Some(&id(top)), format!("part {s}.{c}"), (1, 1));
            n.text = format!("part {c} ").repeat(400);
            nodes.push(n);
        }
    }
    nodes
}

fn page_visits(store: &TreeStore) -> u64 {
    let p = store.db().stats().unwrap().pool;
    p.hits + p.misses
}

#[test]
fn position_ids_skip_the_id_index() {
    let (_d, store) = open();
    store
        .store_document(Document::new("p", "pos"), forest(|i| format!("{i:04}")))
        .unwrap();
    store
        .store_document(Document::new("p", "named"), forest(|i| format!("n{i:04}")))
        .unwrap();
    let visits = |version: &str, id: &dyn Fn(usize) -> String| {
        let r = store.read();
        let before = page_visits(&store);
        for i in (0..200).step_by(7) {
            let n = r.get_node("p", Some(version), &id(i)).unwrap();
            assert_eq!(n.node_id, id(i));
        }
        page_visits(&store) - before
    };
    let by_position = visits("pos", &|i| format!("{i:04}"));
    let by_index = visits("named", &|i| format!("n{i:04}"));
    let depth = u64::from(store.db().stats().unwrap().depth);
    // 29 lookups, each one descent (of `depth` pages) fewer.
    assert!(
        by_position + 29 * depth <= by_index,
        "{by_position} page visits by position, {by_index} through the index (depth {depth})"
    );

    // Numbered backwards, every guess is wrong: after the first few the
    // document is no longer guessed for, so its lookups cost what the index
    // costs, plus at most a retry or two.
    let back = |i: usize| format!("{:04}", 199 - i);
    store
        .store_document(Document::new("p", "back"), forest(back))
        .unwrap();
    visits("back", &back);
    let wrong_numbers = visits("back", &back);
    let by_index = visits("named", &|i| format!("n{i:04}"));
    assert!(
        wrong_numbers <= by_index + 2 * (depth + 3),
        "{wrong_numbers} page visits with wrong guesses, {by_index} through the index"
    );
}

#[test]
fn numeric_ids_that_are_not_positions_are_still_found() {
    let (_d, store) = open();
    // Numbered backwards: "0199" is at position 0, "0000" at 199, so every
    // guess reads another node's record; and numbered from 1, one off.
    type Scheme = fn(usize) -> String;
    let schemes: [(&str, Scheme); 2] = [
        ("backwards", |i| format!("{:04}", 199 - i)),
        ("from-one", |i| format!("{:04}", i + 1)),
    ];
    for (version, id) in schemes {
        let nodes = forest(id);
        store
            .store_document(Document::new("p", version), nodes.clone())
            .unwrap();
        let r = store.read();
        // Guessing is still on for this document here.
        let parent = &nodes[10].node_id;
        let kids = r.get_children("p", Some(version), Some(parent)).unwrap();
        let want: Vec<&str> = nodes[11..20].iter().map(|n| n.node_id.as_str()).collect();
        let got: Vec<&str> = kids.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(got, want, "{version}");
        let path = r
            .get_ancestor_path("p", Some(version), &nodes[15].node_id)
            .unwrap();
        assert_eq!(path.len(), 2);
        assert_eq!(path[0].node_id, *parent);
        let sub = r.get_subtree("p", Some(version), parent, 0).unwrap();
        assert_eq!(sub.len(), 10);
        assert_eq!(sub[0].node_id, *parent);
        // Many more lookups than wrong guesses turn guessing off, so both
        // the guessing and the not-guessing paths answer.
        for round in 0..3 {
            for (pos, want) in nodes.iter().enumerate() {
                let got = r.get_node("p", Some(version), &want.node_id).unwrap();
                assert_eq!(
                    got.node_id, want.node_id,
                    "{version} round {round} at {pos}"
                );
                assert_eq!(got.title, want.title);
            }
        }
        let (found, missing) = r
            .get_nodes(
                "p",
                Some(version),
                &[nodes[3].node_id.as_str(), "0200", "9999"],
            )
            .unwrap();
        let found: Vec<&str> = found.iter().map(|n| n.node_id.as_str()).collect();
        // "from-one" numbers 1 to 200, so "0200" is its last node; there is
        // no "0200" backwards (199 to 0).
        if version == "from-one" {
            assert_eq!(found, [nodes[3].node_id.as_str(), "0200"]);
            assert_eq!(missing, ["9999"]);
        } else {
            assert_eq!(found, [nodes[3].node_id.as_str()]);
            assert_eq!(missing, ["0200", "9999"]);
        }
    }
}

#[test]
fn a_replaced_document_is_read_by_its_new_ids() {
    let (_d, store) = open();
    store
        .store_document(Document::new("p", "v"), forest(|i| format!("{i:04}")))
        .unwrap();
    let old = store.read();
    store
        .store_document(
            Document::new("p", "v"),
            forest(|i| format!("{:04}", 199 - i)),
        )
        .unwrap();
    let new = store.read();
    // The same id names another node in each snapshot.
    let before = old.get_node("p", Some("v"), "0005").unwrap();
    let after = new.get_node("p", Some("v"), "0005").unwrap();
    assert_eq!(before.title, "part 0.4");
    assert_eq!(after.node_id, "0005");
    assert_eq!(after.title, "part 19.3");
    assert!(matches!(
        new.get_node("p", Some("v"), "0200"),
        Err(Error::NodeNotFound { .. })
    ));
}
