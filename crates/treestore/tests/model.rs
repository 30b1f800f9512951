//! Model-based test of the document layer: random forests are stored, replaced
//! and deleted under a few policies and versions, and after every operation each
//! query is checked against a plain in-memory reference implementation written
//! independently here (recursive tree walks, linear scans, BM25 by formula).
//!
//! `TREESTORE_PROPTEST_CASES` sets the number of cases (default 24).

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use treestore::analyzer::Analyzer;
use treestore::{Document, Error, Node, SearchScope, TreeStore};

const POLICIES: [&str; 3] = ["pol-a", "pol/b", "pol\0c"];
const VERSIONS: [&str; 3] = ["v1", "v2", "2025-01"];
const WORDS: [&str; 12] = [
    "knee",
    "mri",
    "imaging",
    "prior",
    "authorization",
    "lumbar",
    "spine",
    "therapy",
    "coverage",
    "denied",
    "the",
    "physical",
];

/// A generated node before validation: parent is an index of an earlier node.
#[derive(Debug, Clone)]
struct GenNode {
    parent: Option<usize>,
    pages: (u32, u32),
    title: Vec<usize>,
    text: Vec<usize>,
    keyword: Option<usize>,
}

#[derive(Debug, Clone)]
enum Op {
    Store {
        policy: usize,
        version: usize,
        forest: Vec<GenNode>,
        rev: bool,
    },
    Delete {
        policy: usize,
        version: Option<usize>,
    },
}

fn gen_node(max_parent: usize) -> impl Strategy<Value = GenNode> {
    (
        proptest::option::weighted(0.8, 0..max_parent.max(1)),
        0u32..6,
        0u32..3,
        proptest::collection::vec(0..WORDS.len(), 1..4),
        proptest::collection::vec(0..WORDS.len(), 0..8),
        proptest::option::of(0..WORDS.len()),
    )
        .prop_map(move |(parent, start, span, title, text, keyword)| GenNode {
            parent: parent.filter(|_| max_parent > 0),
            pages: (start, start + span),
            title,
            text,
            keyword,
        })
}

fn gen_forest() -> impl Strategy<Value = Vec<GenNode>> {
    (1usize..30).prop_flat_map(|n| (0..n).map(gen_node).collect::<Vec<_>>())
}

fn gen_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..POLICIES.len(), 0..VERSIONS.len(), gen_forest(), any::<bool>())
            .prop_map(|(policy, version, forest, rev)| Op::Store { policy, version, forest, rev }),
        1 => (0..POLICIES.len(), proptest::option::of(0..VERSIONS.len()))
            .prop_map(|(policy, version)| Op::Delete { policy, version }),
    ]
}

fn words(ix: &[usize]) -> String {
    ix.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" ")
}

/// The id of generated node `i`: even ones are PageIndex-style numbers
/// (`"0004"`), which the reader first looks for at that document position
/// (right for some nodes, wrong for others), odd ones are not numbers.
fn gen_id(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("{i:04}")
    } else {
        format!("n{i:02}")
    }
}

/// Input nodes; with `rev` they are given in reverse order (children listed
/// before parents) and every parent names its children explicitly in order.
fn to_nodes(forest: &[GenNode], rev: bool) -> Vec<Node> {
    let id = gen_id;
    let mut nodes: Vec<Node> = forest
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut n = Node::new(id(i), g.parent.map(id).as_deref(), words(&g.title), g.pages);
            n.text = words(&g.text);
            n.keywords = g
                .keyword
                .map(|k| vec![WORDS[k].to_string()])
                .unwrap_or_default();
            n
        })
        .collect();
    if rev {
        for (i, g) in forest.iter().enumerate() {
            if let Some(p) = g.parent {
                nodes[p].child_ids.push(id(i));
            }
        }
        nodes.reverse();
    }
    nodes
}

/// The reference: nodes in document order, computed recursively.
#[derive(Debug, Clone)]
struct RefDoc {
    nodes: Vec<Node>,
}

/// Top-level nodes keep their input order (reversed with `rev`); children
/// follow `child_ids` when given, else input order.
fn reference_doc(forest: &[GenNode], rev: bool) -> RefDoc {
    fn visit(i: usize, depth: u32, path: String, forest: &[GenNode], out: &mut Vec<Node>) {
        let g = &forest[i];
        let kids: Vec<usize> = (0..forest.len())
            .filter(|&c| forest[c].parent == Some(i))
            .collect();
        let mut n = Node::new(
            gen_id(i),
            g.parent.map(gen_id).as_deref(),
            words(&g.title),
            g.pages,
        );
        n.text = words(&g.text);
        n.keywords = g
            .keyword
            .map(|k| vec![WORDS[k].to_string()])
            .unwrap_or_default();
        n.depth = depth;
        n.section_path = path.clone();
        n.child_ids = kids.iter().map(|&c| gen_id(c)).collect();
        out.push(n);
        for (k, c) in kids.into_iter().enumerate() {
            visit(c, depth + 1, format!("{path}.{}", k + 1), forest, out);
        }
    }
    let mut out = Vec::new();
    let mut roots: Vec<usize> = (0..forest.len())
        .filter(|&i| forest[i].parent.is_none())
        .collect();
    if rev {
        roots.reverse();
    }
    for (k, r) in roots.into_iter().enumerate() {
        visit(r, 0, (k + 1).to_string(), forest, &mut out);
    }
    RefDoc { nodes: out }
}

/// Compares the fields the store derives or keeps (not timestamps).
fn same(a: &[Node], b: &[Node]) -> Result<(), TestCaseError> {
    let key = |n: &Node| {
        (
            n.node_id.clone(),
            n.parent_id.clone(),
            n.title.clone(),
            (n.page_start, n.page_end),
            n.text.clone(),
            n.section_path.clone(),
            n.child_ids.clone(),
            n.depth,
            n.keywords.clone(),
        )
    };
    let a: Vec<_> = a.iter().map(key).collect();
    let b: Vec<_> = b.iter().map(key).collect();
    prop_assert_eq!(a, b);
    Ok(())
}

struct Model {
    docs: BTreeMap<(usize, usize), RefDoc>,
    /// Per policy, versions in order of storing (last = current).
    order: HashMap<usize, Vec<usize>>,
}

impl Model {
    fn current(&self, p: usize) -> Option<usize> {
        self.order.get(&p).and_then(|o| o.last().copied())
    }
}

fn ref_subtree(doc: &RefDoc, id: &str, max_depth: u32) -> Vec<Node> {
    let by_id: HashMap<&str, &Node> = doc.nodes.iter().map(|n| (n.node_id.as_str(), n)).collect();
    let top = by_id[id];
    let mut out = vec![top.clone()];
    let mut level = vec![top];
    let mut d = 0;
    while !level.is_empty() && (max_depth == 0 || d < max_depth) {
        let next: Vec<&Node> = level
            .iter()
            .flat_map(|n| n.child_ids.iter().map(|c| by_id[c.as_str()]))
            .collect();
        out.extend(next.iter().map(|n| (*n).clone()));
        level = next;
        d += 1;
    }
    out
}

fn ref_ancestors(doc: &RefDoc, id: &str) -> Vec<Node> {
    let by_id: HashMap<&str, &Node> = doc.nodes.iter().map(|n| (n.node_id.as_str(), n)).collect();
    let mut out = vec![by_id[id].clone()];
    while let Some(p) = out.last().unwrap().parent_id.clone() {
        out.push(by_id[p.as_str()].clone());
    }
    out.reverse();
    out
}

/// BM25 with field weights title 4, keywords 3, summary 2, text 1 over `docs`.
fn ref_scores(
    a: &Analyzer,
    docs: &[(usize, &RefDoc)],
    query: &str,
) -> HashMap<(usize, String), f64> {
    let mut terms = a.terms(query);
    terms.sort();
    terms.dedup();
    let mut stats: Vec<(usize, String, HashMap<String, f64>, f64)> = Vec::new();
    for (p, d) in docs {
        for n in &d.nodes {
            let mut tf: HashMap<String, f64> = HashMap::new();
            let mut len = 0.0;
            let mut add = |text: &str, w: f64| {
                for t in a.terms(text) {
                    *tf.entry(t).or_default() += w;
                    len += w;
                }
            };
            add(&n.title, 4.0);
            add(&n.summary, 2.0);
            add(&n.text, 1.0);
            for k in &n.keywords {
                add(k, 3.0);
            }
            stats.push((*p, n.node_id.clone(), tf, len));
        }
    }
    let n = stats.len() as f64;
    let total: f64 = stats.iter().map(|s| s.3).sum();
    let avgdl = if n == 0.0 || total == 0.0 {
        1.0
    } else {
        total / n
    };
    let mut out = HashMap::new();
    for t in &terms {
        let df = stats.iter().filter(|s| s.2.contains_key(t)).count() as f64;
        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
        for (p, id, tf, len) in &stats {
            if let Some(&f) = tf.get(t) {
                let s = idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * len / avgdl));
                *out.entry((*p, id.clone())).or_insert(0.0) += s;
            }
        }
    }
    out
}

fn check_search(
    got: Vec<treestore::SearchHit>,
    want: &HashMap<(usize, String), f64>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for w in got.windows(2) {
        prop_assert!(w[0].score >= w[1].score);
    }
    for h in &got {
        let p = POLICIES.iter().position(|p| *p == h.policy_id).unwrap();
        let expected = want.get(&(p, h.node.node_id.clone()));
        prop_assert!(expected.is_some(), "unexpected hit {:?}", h.node.node_id);
        prop_assert!(
            (expected.unwrap() - h.score).abs() < 1e-9,
            "score {} vs {}",
            h.score,
            expected.unwrap()
        );
    }
    Ok(())
}

fn check_all(store: &TreeStore, model: &Model, a: &Analyzer) -> Result<(), TestCaseError> {
    let r = store.read();
    for (pi, policy) in POLICIES.iter().enumerate() {
        let cur = model.current(pi);
        prop_assert_eq!(
            r.current_version(policy).unwrap(),
            cur.map(|v| VERSIONS[v].to_string())
        );
        for (vi, version) in VERSIONS.iter().enumerate() {
            let vs = Some(*version);
            let Some(doc) = model.docs.get(&(pi, vi)) else {
                prop_assert!(
                    matches!(
                        r.get_document(policy, vs),
                        Err(Error::DocumentNotFound { .. })
                    ),
                    "unexpected result"
                );
                prop_assert!(
                    matches!(
                        r.get_node(policy, vs, "0000"),
                        Err(Error::DocumentNotFound { .. })
                    ),
                    "unexpected result"
                );
                continue;
            };
            let (d, nodes) = r.get_document(policy, vs).unwrap();
            prop_assert_eq!(&d.policy_id, policy);
            same(&nodes, &doc.nodes)?;
            let tops: Vec<Node> = doc
                .nodes
                .iter()
                .filter(|n| n.parent_id.is_none())
                .cloned()
                .collect();
            same(&r.get_children(policy, vs, None).unwrap(), &tops)?;
            for n in &doc.nodes {
                same(
                    &[r.get_node(policy, vs, &n.node_id).unwrap()],
                    std::slice::from_ref(n),
                )?;
                let kids: Vec<Node> = doc
                    .nodes
                    .iter()
                    .filter(|c| c.parent_id.as_deref() == Some(&n.node_id))
                    .cloned()
                    .collect();
                same(
                    &r.get_children(policy, vs, Some(&n.node_id)).unwrap(),
                    &kids,
                )?;
                for md in [0, 1, 2] {
                    same(
                        &r.get_subtree(policy, vs, &n.node_id, md).unwrap(),
                        &ref_subtree(doc, &n.node_id, md),
                    )?;
                }
                same(
                    &r.get_ancestor_path(policy, vs, &n.node_id).unwrap(),
                    &ref_ancestors(doc, &n.node_id),
                )?;
                let by_path: Vec<Node> = doc
                    .nodes
                    .iter()
                    .filter(|m| m.section_path == n.section_path)
                    .cloned()
                    .collect();
                same(
                    &r.get_by_section_path(policy, vs, &n.section_path).unwrap(),
                    &by_path,
                )?;
            }
            prop_assert!(
                matches!(
                    (
                        r.get_node(policy, vs, "missing"),
                        r.get_node(policy, vs, "0098")
                    ),
                    (
                        Err(Error::NodeNotFound { .. }),
                        Err(Error::NodeNotFound { .. })
                    )
                ),
                "unexpected result"
            );
            for page in 0..10 {
                let want: Vec<Node> = doc
                    .nodes
                    .iter()
                    .filter(|n| n.page_start <= page && page <= n.page_end)
                    .cloned()
                    .collect();
                same(&r.get_nodes_by_page(policy, vs, page).unwrap(), &want)?;
            }
            // Numeric ids are looked for at that position first: "0098" is
            // past any generated document's end.
            let ids = ["n03", "zz", "0000", "0002", "0098"];
            let (found, missing) = r.get_nodes(policy, vs, &ids).unwrap();
            let want: Vec<Node> = ids
                .iter()
                .filter_map(|i| doc.nodes.iter().find(|n| n.node_id == *i).cloned())
                .collect();
            same(&found, &want)?;
            prop_assert_eq!(missing.len(), ids.len() - want.len());
            for q in ["knee mri", "lumbar spine therapy", "coverage"] {
                let want = ref_scores(a, &[(pi, doc)], q);
                let got = r
                    .search(
                        SearchScope::Document {
                            policy,
                            version: vs,
                        },
                        q,
                        1000,
                    )
                    .unwrap();
                check_search(got, &want)?;
            }
        }
        match cur {
            None => prop_assert!(
                matches!(
                    r.get_node(policy, None, "0000"),
                    Err(Error::DocumentNotFound { .. })
                ),
                "unexpected result"
            ),
            Some(v) => {
                let (d, _) = r.get_document(policy, None).unwrap();
                prop_assert_eq!(d.version_id, VERSIONS[v]);
            }
        }
    }
    let currents: Vec<(usize, &RefDoc)> = (0..POLICIES.len())
        .filter_map(|p| model.current(p).map(|v| (p, &model.docs[&(p, v)])))
        .collect();
    for q in ["knee imaging", "prior authorization denied"] {
        let want = ref_scores(a, &currents, q);
        check_search(r.search(SearchScope::AllPolicies, q, 1000).unwrap(), &want)?;
        // A small limit returns the best ones.
        let top = r.search(SearchScope::AllPolicies, q, 3).unwrap();
        let mut best: Vec<f64> = want.values().copied().collect();
        best.sort_by(|a, b| b.total_cmp(a));
        prop_assert_eq!(top.len(), best.len().min(3));
        for (h, w) in top.iter().zip(&best) {
            prop_assert!((h.score - w).abs() < 1e-9);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("TREESTORE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn queries_match_the_reference(ops in proptest::collection::vec(gen_op(), 1..14)) {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(dir.path(), Default::default()).unwrap();
        let a = Analyzer::new();
        let mut model = Model { docs: BTreeMap::new(), order: HashMap::new() };
        for op in ops {
            match op {
                Op::Store { policy, version, forest, rev } => {
                    let doc = Document::new(POLICIES[policy], VERSIONS[version]);
                    let report = store.store_document(doc, to_nodes(&forest, rev)).unwrap();
                    prop_assert_eq!(report.nodes, forest.len());
                    prop_assert_eq!(report.replaced, model.docs.contains_key(&(policy, version)));
                    model.docs.insert((policy, version), reference_doc(&forest, rev));
                    let order = model.order.entry(policy).or_default();
                    order.retain(|v| *v != version);
                    order.push(version);
                }
                Op::Delete { policy, version } => {
                    let existing: Vec<usize> = (0..VERSIONS.len())
                        .filter(|v| model.docs.contains_key(&(policy, *v)) && version.is_none_or(|x| x == *v))
                        .collect();
                    let got = store.delete_document(POLICIES[policy], version.map(|v| VERSIONS[v]));
                    if existing.is_empty() {
                        prop_assert!(matches!(got, Err(Error::DocumentNotFound { .. })), "unexpected result");
                    } else {
                        let mut got = got.unwrap();
                        got.sort();
                        let mut want: Vec<String> = existing.iter().map(|v| VERSIONS[*v].to_string()).collect();
                        want.sort();
                        prop_assert_eq!(got, want);
                    }
                    for v in existing {
                        model.docs.remove(&(policy, v));
                        model.order.entry(policy).or_default().retain(|x| *x != v);
                    }
                }
            }
            check_all(&store, &model, &a)?;
        }
        // Everything survives a reopen, and the store passes its integrity check.
        drop(store);
        let store = TreeStore::open(dir.path(), Default::default()).unwrap();
        check_all(&store, &model, &a)?;
        let report = store.db().check().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report);
    }
}

/// Cross-policy search over enough policies that the summary scan is split
/// between threads (64 term-index buckets or more): the same scores as the
/// reference, and a small limit keeps the best ones.
#[test]
fn cross_policy_search_over_many_buckets_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Default::default()).unwrap();
    let a = Analyzer::new();
    let policies: Vec<String> = (0..150).map(|p| format!("policy-{p:03}")).collect();
    let mut refs = Vec::new();
    for (p, policy) in policies.iter().enumerate() {
        let pick = |i: usize| WORDS[(p * 7 + i * 5) % WORDS.len()];
        let mut root = Node::new("r", None, pick(0), (1, 3));
        root.text = format!("{} {} {}", pick(1), pick(2), pick(1));
        let mut kid = Node::new("k", Some("r"), pick(3), (2, 2));
        kid.text = format!("{} {}", pick(4), pick(p % 3));
        let nodes = vec![root, kid];
        store
            .store_document(Document::new(policy, "v1"), nodes.clone())
            .unwrap();
        refs.push(RefDoc { nodes });
    }
    let docs: Vec<(usize, &RefDoc)> = refs.iter().enumerate().collect();
    let r = store.read();
    for q in [
        "knee imaging",
        "prior authorization denied",
        "lumbar spine therapy",
    ] {
        let want = ref_scores(&a, &docs, q);
        assert!(!want.is_empty());
        let got = r.search(SearchScope::AllPolicies, q, 1000).unwrap();
        assert_eq!(got.len(), want.len(), "{q}");
        for h in &got {
            let p = policies.iter().position(|p| *p == h.policy_id).unwrap();
            let w = want[&(p, h.node.node_id.clone())];
            assert!((w - h.score).abs() < 1e-9, "{q}: {} vs {w}", h.score);
        }
        let top = r.search(SearchScope::AllPolicies, q, 5).unwrap();
        let mut best: Vec<f64> = want.values().copied().collect();
        best.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(top.len(), 5);
        for (h, w) in top.iter().zip(&best) {
            assert!((h.score - w).abs() < 1e-9, "{q}: top {} vs {w}", h.score);
        }
    }
}

/// Subtrees large enough to be read on parallel threads (64 nodes or more
/// below the top) come back exactly as the reference says, breadth-first,
/// with and without a depth limit.
#[test]
fn large_subtrees_read_in_parallel_and_documents_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Default::default()).unwrap();
    // 400 nodes in two top-level trees; each node's parent is an earlier
    // node, picked so depths vary from shallow and wide to long chains.
    let forest: Vec<GenNode> = (0..400usize)
        .map(|i| GenNode {
            parent: match i {
                0 | 250 => None,
                _ if i % 5 == 0 => Some(i - 1),
                _ if i > 250 => Some(250 + (i * 7919) % (i - 250)),
                _ => Some((i * 7919) % i),
            },
            pages: (i as u32 % 40, i as u32 % 40 + i as u32 % 3),
            title: vec![i % WORDS.len()],
            text: vec![(i * 3) % WORDS.len(), (i * 5) % WORDS.len()],
            keyword: (i % 4 == 0).then_some(i % WORDS.len()),
        })
        .collect();
    let reference = reference_doc(&forest, false);
    store
        .store_document(Document::new("big", "v1"), to_nodes(&forest, false))
        .unwrap();
    let r = store.read();
    // The whole document (400 nodes), in document order.
    let (_, all) = r.get_document("big", None).unwrap();
    same(&all, &reference.nodes).unwrap_or_else(|e| panic!("document: {e}"));
    let mut large = 0;
    for n in &reference.nodes {
        let size = ref_subtree(&reference, &n.node_id, 0).len();
        if size < 20 && n.node_id.len() % 3 != 0 {
            continue;
        }
        large += usize::from(size > 65);
        for md in [0, 1, 2, 3, 7] {
            let got = r.get_subtree("big", None, &n.node_id, md).unwrap();
            same(&got, &ref_subtree(&reference, &n.node_id, md))
                .unwrap_or_else(|e| panic!("subtree of {} to depth {md}: {e}", n.node_id));
        }
    }
    assert!(
        large >= 4,
        "only {large} subtrees above the parallel threshold"
    );
}
