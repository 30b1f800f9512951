//! The document model: a document version and the nodes of its forest, plus the
//! size limits validation enforces.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::time::Timestamp;

/// Longest policy, version, node or pageindex document id, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest title, in bytes.
pub const MAX_TITLE_LEN: usize = 4 * 1024;
/// Longest summary, in bytes.
pub const MAX_SUMMARY_LEN: usize = 256 * 1024;
/// Longest node text, in bytes.
pub const MAX_TEXT_LEN: usize = 16 * 1024 * 1024;
/// Longest section path, in bytes.
pub const MAX_SECTION_PATH_LEN: usize = 256;
/// Most keywords (and most see-also ids) per node.
pub const MAX_LIST_LEN: usize = 1024;
/// Longest keyword, in bytes.
pub const MAX_KEYWORD_LEN: usize = 256;
/// Most bytes in a document's metadata map (keys plus values).
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Most nodes in one document.
pub const MAX_NODES: usize = 1_000_000;
/// Deepest nesting (top-level nodes have depth 0).
pub const MAX_DEPTH: u32 = 1_000;
/// Most pages one node may span (`page_end - page_start + 1`); the page index
/// holds one entry per page.
pub const MAX_PAGE_SPAN: u32 = 100_000;

/// One stored version of a policy document. A document is a forest: it has any
/// number of top-level nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Document {
    pub policy_id: String,
    pub version_id: String,
    /// Id of the PageIndex run or source file the tree came from.
    pub pageindex_doc_id: String,
    /// Optional designated root; when set it must name a top-level node.
    pub root_node_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// When this (policy, version) was first stored; kept across replacements.
    pub created_at: Timestamp,
    /// When it was last stored.
    pub updated_at: Timestamp,
}

impl Document {
    pub fn new(policy_id: impl Into<String>, version_id: impl Into<String>) -> Self {
        Document {
            policy_id: policy_id.into(),
            version_id: version_id.into(),
            ..Default::default()
        }
    }
}

/// One section of a document.
///
/// On input, `child_ids` may be empty (children are then ordered as they appear
/// in the input) or list every child exactly once (it then fixes their order);
/// `depth` is ignored and derived; an empty `section_path` is derived as the
/// outline number (`2.1.3`); zero timestamps become the time of storing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    pub node_id: String,
    /// `None` for a top-level node.
    pub parent_id: Option<String>,
    pub title: String,
    pub page_start: u32,
    pub page_end: u32,
    pub summary: String,
    pub text: String,
    pub section_path: String,
    /// Ids of the children, in document order.
    pub child_ids: Vec<String>,
    /// 0 for a top-level node.
    pub depth: u32,
    pub keywords: Vec<String>,
    /// Ids of related nodes (not required to exist).
    pub see_also: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Node {
    /// A node with an id, a parent (or none), a title and a page range.
    pub fn new(
        node_id: impl Into<String>,
        parent_id: Option<&str>,
        title: impl Into<String>,
        pages: (u32, u32),
    ) -> Self {
        Node {
            node_id: node_id.into(),
            parent_id: parent_id.map(str::to_string),
            title: title.into(),
            page_start: pages.0,
            page_end: pages.1,
            ..Default::default()
        }
    }
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub policy_id: String,
    pub version_id: String,
    pub node: Node,
    pub score: f64,
}

/// What [`TreeStore::store_document`](crate::TreeStore::store_document) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    pub nodes: usize,
    /// Whether an earlier content of the same (policy, version) was replaced.
    pub replaced: bool,
    /// Distinct search terms indexed.
    pub terms: usize,
}
