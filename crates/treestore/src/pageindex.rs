//! Import of PageIndex output into a [`Document`] and its nodes.
//!
//! Two shapes are accepted:
//! - the open-source output: an object with `doc_name`, optional
//!   `doc_description` and `structure`, a list of nodes with `title`, `node_id`,
//!   `start_index`, `end_index`, optional `summary` and `text`, children in
//!   `nodes`;
//! - the hosted API's: an object with a `result` or `nodes` list (and optionally
//!   `doc_id`, `doc_name`), nodes with `node_id`, `title`, `page_index`, optional
//!   `page_start`/`page_end`, `prefix_summary` (or `summary`), `text`, children
//!   in `nodes`.
//!
//! Parent ids, child order, depth and outline section paths (`2.1.3`) are
//! derived from the nesting. A node without `node_id` gets its pre-order
//! position as four digits (`0007`), as PageIndex numbers them. Errors name the
//! JSON path of the offending value.

use serde_json::{Map, Value};

use crate::model::{Document, Node};

/// Why a PageIndex file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("not a PageIndex document: {0}")]
    Shape(String),
    #[error("{path}: {reason}")]
    Field { path: String, reason: String },
}

impl From<serde_json::Error> for ImportError {
    fn from(e: serde_json::Error) -> Self {
        ImportError::Json(e)
    }
}

/// Which PageIndex shape a file had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenSource,
    Hosted,
}

/// A parsed PageIndex file: the document (policy and version ids left empty
/// for the caller) and its nodes in document order.
#[derive(Debug, Clone)]
pub struct Imported {
    pub shape: Shape,
    pub document: Document,
    pub nodes: Vec<Node>,
}

/// Parses PageIndex JSON text.
pub fn parse(json: &str) -> Result<Imported, ImportError> {
    let value: Value = serde_json::from_str(json)?;
    from_value(&value)
}

/// Converts parsed PageIndex JSON.
pub fn from_value(value: &Value) -> Result<Imported, ImportError> {
    let Value::Object(top) = value else {
        return Err(ImportError::Shape(format!(
            "expected a JSON object with `structure`, `result` or `nodes`, found {}",
            kind(value)
        )));
    };
    let (shape, list_key) = if top.contains_key("structure") {
        (Shape::OpenSource, "structure")
    } else if top.contains_key("result") {
        (Shape::Hosted, "result")
    } else if top.contains_key("nodes") {
        (Shape::Hosted, "nodes")
    } else {
        let keys: Vec<&str> = top.keys().map(String::as_str).take(8).collect();
        return Err(ImportError::Shape(format!(
            "expected a `structure`, `result` or `nodes` list; the object has keys {keys:?}"
        )));
    };
    let Value::Array(list) = &top[list_key] else {
        return Err(field(
            list_key,
            format!("expected a list, found {}", kind(&top[list_key])),
        ));
    };

    let mut document = Document::default();
    let name = opt_str(top, "doc_name", "doc_name")?;
    let id = opt_str(top, "doc_id", "doc_id")?;
    document.pageindex_doc_id = id.or(name.clone()).unwrap_or_default();
    if let Some(name) = name {
        document.metadata.insert("doc_name".into(), name);
    }
    if let Some(desc) = opt_str(top, "doc_description", "doc_description")? {
        document.metadata.insert("doc_description".into(), desc);
    }
    document.metadata.insert(
        "pageindex_shape".into(),
        match shape {
            Shape::OpenSource => "open-source",
            Shape::Hosted => "hosted",
        }
        .into(),
    );

    // Depth-first walk with an explicit stack (pre-order): (node, JSON path,
    // parent index, section path).
    let mut nodes: Vec<Node> = Vec::new();
    let mut pending: Vec<(&Value, String, Option<usize>, String)> = list
        .iter()
        .enumerate()
        .rev()
        .map(|(i, item)| (item, format!("{list_key}[{i}]"), None, (i + 1).to_string()))
        .collect();
    while let Some((item, path, parent, section)) = pending.pop() {
        let Value::Object(obj) = item else {
            return Err(field(
                &path,
                format!("expected a node object, found {}", kind(item)),
            ));
        };
        let mut node = node_fields(obj, &path, shape)?;
        if node.node_id.is_empty() {
            node.node_id = format!("{:04}", nodes.len());
        }
        node.parent_id = parent.map(|p| nodes[p].node_id.clone());
        node.depth = parent.map_or(0, |p| nodes[p].depth + 1);
        let me = nodes.len();
        if let Some(children) = obj.get("nodes") {
            let Value::Array(children) = children else {
                return Err(field(
                    &format!("{path}.nodes"),
                    format!("expected a list, found {}", kind(children)),
                ));
            };
            for (j, c) in children.iter().enumerate().rev() {
                pending.push((
                    c,
                    format!("{path}.nodes[{j}]"),
                    Some(me),
                    format!("{section}.{}", j + 1),
                ));
            }
        }
        node.section_path = section;
        nodes.push(node);
    }
    // Child lists in document order.
    let mut child_ids: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    let index: std::collections::HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.node_id.as_str(), i))
        .collect();
    for n in &nodes {
        if let Some(p) = n.parent_id.as_deref().and_then(|p| index.get(p)) {
            child_ids[*p].push(n.node_id.clone());
        }
    }
    for (n, c) in nodes.iter_mut().zip(child_ids) {
        n.child_ids = c;
    }
    Ok(Imported {
        shape,
        document,
        nodes,
    })
}

fn node_fields(obj: &Map<String, Value>, path: &str, shape: Shape) -> Result<Node, ImportError> {
    let mut node = Node {
        node_id: id_field(obj, path)?.unwrap_or_default(),
        title: opt_str(obj, "title", path)?.ok_or_else(|| field(path, "missing `title`"))?,
        text: opt_str(obj, "text", path)?.unwrap_or_default(),
        ..Default::default()
    };
    match shape {
        Shape::OpenSource => {
            node.summary = opt_str(obj, "summary", path)?.unwrap_or_default();
            node.page_start = page(obj, "start_index", path)?
                .ok_or_else(|| field(path, "missing `start_index`"))?;
            node.page_end = page(obj, "end_index", path)?.unwrap_or(node.page_start);
        }
        Shape::Hosted => {
            node.summary = match opt_str(obj, "prefix_summary", path)? {
                Some(s) => s,
                None => opt_str(obj, "summary", path)?.unwrap_or_default(),
            };
            let index = page(obj, "page_index", path)?;
            let start = page(obj, "page_start", path)?.or(index);
            let end = page(obj, "page_end", path)?.or(start);
            let (Some(start), Some(end)) = (start, end) else {
                return Err(field(path, "missing `page_index` (or `page_start`)"));
            };
            node.page_start = start;
            node.page_end = end;
        }
    }
    if node.page_start > node.page_end {
        return Err(field(
            path,
            format!(
                "page range {}..{} ends before it starts",
                node.page_start, node.page_end
            ),
        ));
    }
    Ok(node)
}

fn id_field(obj: &Map<String, Value>, path: &str) -> Result<Option<String>, ImportError> {
    match obj.get("node_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Some producers emit numeric ids.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(field(
            &format!("{path}.node_id"),
            format!("expected a string, found {}", kind(v)),
        )),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ImportError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(field(
            &join(path, key),
            format!("expected a string, found {}", kind(v)),
        )),
    }
}

fn page(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>, ImportError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(field(
                &join(path, key),
                format!("expected a page number (a non-negative integer), found {v}"),
            )),
        },
    }
}

fn join(path: &str, key: &str) -> String {
    if path == key {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn field(path: &str, reason: impl Into<String>) -> ImportError {
    ImportError::Field {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_source_shape() {
        let json = r#"{"doc_name": "p.pdf", "doc_description": "d", "structure": [
            {"title": "A", "node_id": "0000", "start_index": 1, "end_index": 3, "nodes": [
                {"title": "A1", "node_id": "0001", "start_index": 1, "end_index": 2, "summary": "s"},
                {"title": "A2", "node_id": "0002", "start_index": 2, "end_index": 3}]},
            {"title": "B", "node_id": "0003", "start_index": 4, "end_index": 4}]}"#;
        let imp = parse(json).unwrap();
        assert_eq!(imp.shape, Shape::OpenSource);
        assert_eq!(imp.document.pageindex_doc_id, "p.pdf");
        assert_eq!(imp.document.metadata["doc_description"], "d");
        let got: Vec<_> = imp
            .nodes
            .iter()
            .map(|n| {
                (
                    n.node_id.as_str(),
                    n.parent_id.as_deref(),
                    n.section_path.as_str(),
                    n.depth,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("0000", None, "1", 0),
                ("0001", Some("0000"), "1.1", 1),
                ("0002", Some("0000"), "1.2", 1),
                ("0003", None, "2", 0)
            ]
        );
        assert_eq!(imp.nodes[0].child_ids, ["0001", "0002"]);
        assert_eq!(imp.nodes[1].summary, "s");
        assert_eq!((imp.nodes[2].page_start, imp.nodes[2].page_end), (2, 3));
    }

    #[test]
    fn hosted_shape() {
        let json = r#"{"doc_id": "pi-123", "status": "completed", "result": [
            {"title": "Intro", "node_id": "n1", "page_index": 2, "prefix_summary": "ps", "text": "t",
             "nodes": [{"title": "Sub", "node_id": "n2", "page_index": 3, "page_start": 3, "page_end": 5}]}]}"#;
        let imp = parse(json).unwrap();
        assert_eq!(imp.shape, Shape::Hosted);
        assert_eq!(imp.document.pageindex_doc_id, "pi-123");
        assert_eq!(imp.nodes[0].summary, "ps");
        assert_eq!((imp.nodes[0].page_start, imp.nodes[0].page_end), (2, 2));
        assert_eq!((imp.nodes[1].page_start, imp.nodes[1].page_end), (3, 5));
        assert_eq!(imp.nodes[1].parent_id.as_deref(), Some("n1"));
        let nodes_key = r#"{"nodes": [{"title": "X", "page_index": 1}]}"#;
        let imp = parse(nodes_key).unwrap();
        assert_eq!(imp.nodes[0].node_id, "0000");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse("{").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = parse("[1]").unwrap_err().to_string();
        assert!(e.contains("found a list"), "{e}");
        let e = parse(r#"{"pages": []}"#).unwrap_err().to_string();
        assert!(e.contains("\"pages\""), "{e}");
        let e = parse(r#"{"structure": [{"title": "A", "start_index": "one"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("structure[0].start_index"), "{e}");
        let e = parse(
            r#"{"structure": [{"title": "A", "start_index": 1, "nodes": [{"start_index": 1}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("structure[0].nodes[0]") && e.contains("title"),
            "{e}"
        );
        let e = parse(r#"{"structure": [{"title": "A", "start_index": 3, "end_index": 1}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ends before it starts"), "{e}");
    }
}
