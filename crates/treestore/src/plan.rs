//! Validation of a document before it is stored, and what is derived from it:
//! document order (pre-order over the forest), depth, child order, outline
//! section paths and subtree sizes. Nothing here touches the store, so a
//! document that fails validation writes nothing.

use std::collections::{HashMap, HashSet};

use crate::codec::NodeHeader;
use crate::error::{Error, Result};
use crate::model::*;
use crate::time::Timestamp;

/// A validated document, its nodes in document order.
#[derive(Debug)]
pub(crate) struct Plan {
    pub nodes: Vec<Node>,
    /// `headers[ord]` describes `nodes[ord]`.
    pub headers: Vec<NodeHeader>,
    pub top_ords: Vec<u32>,
}

pub(crate) fn check_id_arg(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("{} bytes, at most {MAX_ID_LEN} allowed", id.len()),
        ));
    }
    Ok(())
}

fn check_len(node: &str, field: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::bad_node(
            node,
            format!("{field} is {len} bytes, at most {max} allowed"),
        ));
    }
    Ok(())
}

fn check_node_fields(n: &Node) -> Result<()> {
    let id = n.node_id.as_str();
    check_len(id, "title", n.title.len(), MAX_TITLE_LEN)?;
    check_len(id, "summary", n.summary.len(), MAX_SUMMARY_LEN)?;
    check_len(id, "text", n.text.len(), MAX_TEXT_LEN)?;
    check_len(
        id,
        "section_path",
        n.section_path.len(),
        MAX_SECTION_PATH_LEN,
    )?;
    if n.page_start > n.page_end {
        return Err(Error::bad_node(
            id,
            format!(
                "page_start {} is after page_end {}",
                n.page_start, n.page_end
            ),
        ));
    }
    if n.page_end - n.page_start >= MAX_PAGE_SPAN {
        return Err(Error::bad_node(
            id,
            format!(
                "spans {} pages, at most {MAX_PAGE_SPAN} allowed",
                u64::from(n.page_end - n.page_start) + 1
            ),
        ));
    }
    for (field, list, max_item) in [
        ("keywords", &n.keywords, MAX_KEYWORD_LEN),
        ("see_also", &n.see_also, MAX_ID_LEN),
    ] {
        if list.len() > MAX_LIST_LEN {
            return Err(Error::bad_node(
                id,
                format!("{} {field}, at most {MAX_LIST_LEN} allowed", list.len()),
            ));
        }
        for item in list {
            if item.is_empty() {
                return Err(Error::bad_node(id, format!("empty entry in {field}")));
            }
            check_len(id, field, item.len(), max_item)?;
        }
    }
    Ok(())
}

/// Checks the document fields (ids, metadata size).
pub(crate) fn check_document(doc: &Document) -> Result<()> {
    check_id_arg("policy_id", &doc.policy_id)?;
    check_id_arg("version_id", &doc.version_id)?;
    if doc.pageindex_doc_id.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            "pageindex_doc_id",
            format!("longer than {MAX_ID_LEN} bytes"),
        ));
    }
    let meta: usize = doc.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if meta > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            "metadata",
            format!("{meta} bytes, at most {MAX_METADATA_BYTES} allowed"),
        ));
    }
    Ok(())
}

/// Validates `nodes` for `doc` and puts them in document order with every
/// derived field filled in. Zero timestamps become `now`; `updated_at` is always
/// `now`.
pub(crate) fn plan(doc: &Document, mut nodes: Vec<Node>, now: Timestamp) -> Result<Plan> {
    check_document(doc)?;
    if nodes.len() > MAX_NODES {
        return Err(Error::bad_doc(format!(
            "{} nodes, at most {MAX_NODES} allowed",
            nodes.len()
        )));
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        if n.node_id.is_empty() {
            return Err(Error::bad_doc(format!(
                "node at position {i} has an empty node_id"
            )));
        }
        if n.node_id.len() > MAX_ID_LEN {
            return Err(Error::bad_doc(format!(
                "node at position {i}: node_id is {} bytes, at most {MAX_ID_LEN} allowed",
                n.node_id.len()
            )));
        }
        if index.insert(n.node_id.as_str(), i).is_some() {
            return Err(Error::bad_node(&n.node_id, "duplicate node_id"));
        }
        check_node_fields(n)?;
    }

    // Parent links, and children in input order.
    let mut parent: Vec<Option<usize>> = Vec::with_capacity(nodes.len());
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match n.parent_id.as_deref().filter(|p| !p.is_empty()) {
            None => {
                parent.push(None);
                roots.push(i);
            }
            Some(p) => {
                let Some(&pi) = index.get(p) else {
                    return Err(Error::bad_node(
                        &n.node_id,
                        format!("parent {p:?} does not exist in the document"),
                    ));
                };
                if pi == i {
                    return Err(Error::bad_node(&n.node_id, "is its own parent (a cycle)"));
                }
                parent.push(Some(pi));
                children[pi].push(i);
            }
        }
    }

    // A child list given on input fixes the order, but must name exactly the
    // nodes that name this one as parent.
    for (i, n) in nodes.iter().enumerate() {
        if n.child_ids.is_empty() {
            continue;
        }
        let derived = &children[i];
        let mut seen = HashSet::with_capacity(n.child_ids.len());
        let mut ordered = Vec::with_capacity(n.child_ids.len());
        for c in &n.child_ids {
            let ok = index.get(c.as_str()).filter(|&&ci| parent[ci] == Some(i));
            let Some(&ci) = ok else {
                return Err(Error::bad_node(
                    &n.node_id,
                    format!("child_ids lists {c:?}, which does not have this node as parent"),
                ));
            };
            if !seen.insert(ci) {
                return Err(Error::bad_node(
                    &n.node_id,
                    format!("child_ids lists {c:?} twice"),
                ));
            }
            ordered.push(ci);
        }
        if let Some(&missing) = derived.iter().find(|c| !seen.contains(c)) {
            return Err(Error::bad_node(
                &n.node_id,
                format!(
                    "child_ids omits {:?}, which has this node as parent",
                    nodes[missing].node_id
                ),
            ));
        }
        children[i] = ordered;
    }

    if let Some(root) = &doc.root_node_id {
        match index.get(root.as_str()) {
            Some(&r) if parent[r].is_none() => {}
            Some(_) => {
                return Err(Error::invalid(
                    "root_node_id",
                    format!("{root:?} is not a top-level node"),
                ))
            }
            None => {
                return Err(Error::invalid(
                    "root_node_id",
                    format!("{root:?} is not a node of the document"),
                ))
            }
        }
    }

    // Document order: pre-order over the forest.
    let mut ord_of = vec![u32::MAX; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    let mut depth = vec![0u32; nodes.len()];
    let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
    while let Some(i) = stack.pop() {
        ord_of[i] = order.len() as u32;
        order.push(i);
        if depth[i] > MAX_DEPTH {
            return Err(Error::bad_node(
                &nodes[i].node_id,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        for &c in children[i].iter().rev() {
            depth[c] = depth[i] + 1;
            stack.push(c);
        }
    }
    if order.len() < nodes.len() {
        // Every parent exists, so a node not reached from a top-level node has
        // a parent chain that loops.
        let start = (0..nodes.len())
            .find(|&i| ord_of[i] == u32::MAX)
            .unwrap_or(0);
        let mut seen = HashSet::new();
        let mut at = start;
        while seen.insert(at) {
            at = parent[at].unwrap_or(at);
        }
        let mut chain = vec![nodes[at].node_id.clone()];
        let mut c = parent[at].unwrap_or(at);
        while c != at {
            chain.push(nodes[c].node_id.clone());
            c = parent[c].unwrap_or(at);
        }
        chain.push(nodes[at].node_id.clone());
        return Err(Error::bad_node(
            &nodes[at].node_id,
            format!("cycle in parent links: {}", chain.join(" -> ")),
        ));
    }

    let n = order.len();
    let mut headers: Vec<NodeHeader> = order
        .iter()
        .map(|&i| NodeHeader {
            depth: depth[i],
            parent_ord: parent[i].map(|p| ord_of[p]),
            subtree_size: 1,
            child_ords: children[i].iter().map(|&c| ord_of[c]).collect(),
        })
        .collect();
    for ord in (0..n).rev() {
        if let Some(p) = headers[ord].parent_ord {
            let size = headers[ord].subtree_size;
            headers[p as usize].subtree_size += size;
        }
    }

    let child_ids: Vec<Vec<String>> = order
        .iter()
        .map(|&i| {
            children[i]
                .iter()
                .map(|&c| nodes[c].node_id.clone())
                .collect()
        })
        .collect();
    let mut slots: Vec<Option<Node>> = nodes.drain(..).map(Some).collect();
    let mut out: Vec<Node> = Vec::with_capacity(n);
    for (ord, (&i, kids)) in order.iter().zip(child_ids).enumerate() {
        let mut node = slots[i].take().unwrap_or_default();
        node.parent_id = headers[ord]
            .parent_ord
            .map(|p| out[p as usize].node_id.clone());
        node.child_ids = kids;
        node.depth = headers[ord].depth;
        if node.created_at == Timestamp::EPOCH {
            node.created_at = now;
        }
        node.updated_at = now;
        out.push(node);
    }

    // Outline numbers for nodes without a section path: "1", "1.2", "1.2.3".
    let top_ords: Vec<u32> = roots.iter().map(|&r| ord_of[r]).collect();
    for (k, &t) in top_ords.iter().enumerate() {
        if out[t as usize].section_path.is_empty() {
            out[t as usize].section_path = (k + 1).to_string();
        }
    }
    for ord in 0..n {
        let base = out[ord].section_path.clone();
        for (k, &c) in headers[ord].child_ords.iter().enumerate() {
            let child = &mut out[c as usize];
            if child.section_path.is_empty() {
                let derived = format!("{base}.{}", k + 1);
                // Only in trees hundreds of levels deep; such nodes get no path.
                if derived.len() <= MAX_SECTION_PATH_LEN {
                    child.section_path = derived;
                }
            }
        }
    }
    Ok(Plan {
        nodes: out,
        headers,
        top_ords,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        Document::new("p", "v")
    }

    fn node(id: &str, parent: Option<&str>) -> Node {
        Node::new(id, parent, id, (1, 1))
    }

    fn reason(r: Result<Plan>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn orders_a_forest_and_derives_fields() {
        let nodes = vec![
            node("b1", Some("b")),
            node("a", None),
            node("b", None),
            node("a1", Some("a")),
            node("a2", Some("a")),
            node("a1x", Some("a1")),
        ];
        let p = plan(&doc(), nodes, Timestamp::from_unix_nanos(5)).unwrap();
        let ids: Vec<_> = p.nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, ["a", "a1", "a1x", "a2", "b", "b1"]);
        let paths: Vec<_> = p.nodes.iter().map(|n| n.section_path.as_str()).collect();
        assert_eq!(paths, ["1", "1.1", "1.1.1", "1.2", "2", "2.1"]);
        let sizes: Vec<_> = p.headers.iter().map(|h| h.subtree_size).collect();
        assert_eq!(sizes, [4, 2, 1, 1, 2, 1]);
        assert_eq!(p.top_ords, [0, 4]);
        assert_eq!(p.nodes[0].child_ids, ["a1", "a2"]);
        assert_eq!(p.nodes[2].depth, 2);
        assert_eq!(p.headers[2].parent_ord, Some(1));
        assert_eq!(p.nodes[2].created_at, Timestamp::from_unix_nanos(5));
    }

    #[test]
    fn child_list_fixes_order_and_must_agree() {
        let mut a = node("a", None);
        a.child_ids = vec!["y".into(), "x".into()];
        let nodes = vec![a.clone(), node("x", Some("a")), node("y", Some("a"))];
        let p = plan(&doc(), nodes, Timestamp::EPOCH).unwrap();
        assert_eq!(p.nodes[1].node_id, "y");

        a.child_ids = vec!["x".into()];
        let nodes = vec![a.clone(), node("x", Some("a")), node("y", Some("a"))];
        assert!(reason(plan(&doc(), nodes, Timestamp::EPOCH)).contains("omits \"y\""));
        a.child_ids = vec!["x".into(), "y".into(), "z".into()];
        let nodes = vec![
            a,
            node("x", Some("a")),
            node("y", Some("a")),
            node("z", None),
        ];
        assert!(reason(plan(&doc(), nodes, Timestamp::EPOCH)).contains("\"z\""));
    }

    #[test]
    fn rejects_bad_structure_naming_the_node() {
        let e = reason(plan(
            &doc(),
            vec![node("a", None), node("a", None)],
            Timestamp::EPOCH,
        ));
        assert!(e.contains("\"a\"") && e.contains("duplicate"), "{e}");
        let e = reason(plan(&doc(), vec![node("a", Some("zz"))], Timestamp::EPOCH));
        assert!(e.contains("\"a\"") && e.contains("\"zz\""), "{e}");
        let e = reason(plan(
            &doc(),
            vec![
                node("r", None),
                node("a", Some("b")),
                node("b", Some("c")),
                node("c", Some("a")),
            ],
            Timestamp::EPOCH,
        ));
        assert!(e.contains("cycle") && e.contains("a -> "), "{e}");
        let e = reason(plan(&doc(), vec![node("s", Some("s"))], Timestamp::EPOCH));
        assert!(e.contains("own parent"), "{e}");
        let mut bad_pages = node("a", None);
        bad_pages.page_start = 5;
        bad_pages.page_end = 4;
        let e = reason(plan(&doc(), vec![bad_pages], Timestamp::EPOCH));
        assert!(e.contains("page_start 5"), "{e}");
        let e = reason(plan(&doc(), vec![node("", None)], Timestamp::EPOCH));
        assert!(e.contains("empty node_id"), "{e}");
        let mut big = node("t", None);
        big.title = "x".repeat(MAX_TITLE_LEN + 1);
        let e = reason(plan(&doc(), vec![big], Timestamp::EPOCH));
        assert!(e.contains("title"), "{e}");
        let e = reason(plan(&Document::new("", "v"), vec![], Timestamp::EPOCH));
        assert!(e.contains("policy_id"), "{e}");
    }

    #[test]
    fn root_node_id_must_be_top_level() {
        let mut d = doc();
        d.root_node_id = Some("c".into());
        let nodes = vec![node("r", None), node("c", Some("r"))];
        assert!(reason(plan(&d, nodes, Timestamp::EPOCH)).contains("root_node_id"));
    }
}
