//! Queries on one consistent snapshot: documents, nodes, children, subtrees,
//! ancestor paths, page and section lookups, and search. Every query is
//! answered from an index or a contiguous key range of the document, never by
//! scanning a whole document to find a few nodes.

use std::collections::HashMap;

use treestore_storage::ReadTxn;

use crate::analyzer::Analyzer;
use crate::codec::{self, DocStats, NodeHeader};
use crate::error::{Error, Result};
use crate::id_guess::{self, Guesses};
use crate::model::{Document, Node, SearchHit};
use crate::parallel::{run_len, shared_out, threads_for, Pool};
use crate::plan::check_id_arg;
use crate::schema::DocKeys;
use crate::search;
use crate::time::Timestamp;
use crate::version_cache::VersionCache;
use crate::versions::{self, PolicyVersion};

/// Subtrees with at least this many nodes below their top are read on
/// parallel threads.
const PARALLEL_SUBTREE_NODES: usize = 64;

/// Where a search looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchScope<'a> {
    /// One version of one policy (`None` = its current version).
    Document {
        policy: &'a str,
        version: Option<&'a str>,
    },
    /// The current version of every policy.
    AllPolicies,
}

/// What [`Reader::for_each_node`] hands out: the document first, then nodes.
#[derive(Debug, Clone)]
pub enum NodeItem {
    Document(Document),
    Node(Node),
}

/// A read-only view of the store at one instant. Cheap to create; holding it
/// keeps the pages of its snapshot from being reused (see the engine's notes on
/// long-lived readers), so drop it when done.
pub struct Reader<'s> {
    analyzer: &'s Analyzer,
    guesses: &'s Guesses,
    in_force: &'s VersionCache,
    txn: ReadTxn,
}

/// A resolved (policy, version).
struct Doc {
    policy: String,
    version: String,
    keys: DocKeys,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(
        analyzer: &'s Analyzer,
        guesses: &'s Guesses,
        in_force: &'s VersionCache,
        txn: ReadTxn,
    ) -> Self {
        Reader {
            analyzer,
            guesses,
            in_force,
            txn,
        }
    }

    /// The policy's version in force now (without effective dates: the one
    /// most recently stored); `None` when it has no versions. In a gap between
    /// effective periods: [`Error::NoVersionInForce`].
    pub fn current_version(&self, policy: &str) -> Result<Option<String>> {
        check_id_arg("policy_id", policy)?;
        let (seq, at) = (self.txn.seq(), Timestamp::now_observed());
        if let Some(v) = self.in_force.get(seq, policy, at) {
            return Ok(Some(v));
        }
        Ok(
            versions::in_force_until(&self.txn, policy, at)?.map(|(e, until)| {
                self.in_force.put(seq, policy, at, until, &e.version_id);
                e.version_id
            }),
        )
    }

    /// A policy's registered versions, latest effective start first.
    pub fn list_versions(&self, policy: &str) -> Result<Vec<PolicyVersion>> {
        check_id_arg("policy_id", policy)?;
        versions::list(&self.txn, policy, 0)
    }

    /// The version a query with `version` addresses: the one named, or the
    /// version in force now. Checks the ids; does not check that a document
    /// is stored.
    pub fn resolve_version(&self, policy: &str, version: Option<&str>) -> Result<String> {
        Ok(self.resolve(policy, version)?.version)
    }

    /// The document record, then each node in document order, to `f` (which
    /// returns false to stop), without holding the whole document in memory.
    pub fn for_each_node(
        &self,
        policy: &str,
        version: Option<&str>,
        mut f: impl FnMut(NodeItem) -> bool,
    ) -> Result<()> {
        let doc = self.resolve(policy, version)?;
        let (document, _) = self.doc_record(&doc)?;
        if !f(NodeItem::Document(document)) {
            return Ok(());
        }
        self.scan_nodes(&doc.keys.nodes(), None, u32::MAX, |_, node| {
            f(NodeItem::Node(node))
        })
    }

    /// Decodes the node records under `prefix` (or in `[prefix, end)` when
    /// `end` is given), in document order, for `f` (false stops), skipping
    /// by their header alone the records deeper than `max_depth`. Records are
    /// decoded straight from the pages (a record in an overflow chain from
    /// its pages' pieces, so its text is copied once, into its string).
    fn scan_nodes(
        &self,
        prefix: &[u8],
        end: Option<&[u8]>,
        max_depth: u32,
        mut f: impl FnMut(&codec::NodeHeader, Node) -> bool,
    ) -> Result<()> {
        let visit = |k: &[u8], pieces: &[&[u8]]| -> Result<bool> {
            if max_depth < u32::MAX {
                let h = codec::decode_front(pieces, codec::decode_node_header)
                    .map_err(|e| Error::corrupt(k, e))?;
                if h.depth > max_depth {
                    return Ok(true);
                }
            }
            let (h, n) = codec::decode_node_pieces(pieces).map_err(|e| Error::corrupt(k, e))?;
            Ok(f(&h, n))
        };
        match end {
            None => self.txn.for_each_prefix_pieces(prefix, visit),
            Some(end) => self.txn.for_each_in_pieces(
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Excluded(end),
                visit,
            ),
        }
    }

    fn resolve(&self, policy: &str, version: Option<&str>) -> Result<Doc> {
        check_id_arg("policy_id", policy)?;
        let version = match version {
            Some(v) => {
                check_id_arg("version_id", v)?;
                v.to_string()
            }
            None => self
                .current_version(policy)?
                .ok_or_else(|| Error::DocumentNotFound {
                    policy: policy.to_string(),
                    version: None,
                })?,
        };
        Ok(Doc {
            keys: DocKeys::new(policy, &version),
            policy: policy.to_string(),
            version,
        })
    }

    fn doc_record(&self, doc: &Doc) -> Result<(Document, DocStats)> {
        let key = doc.keys.document();
        let raw = self.txn.get(&key)?.ok_or_else(|| self.doc_missing(doc))?;
        codec::decode_document(&doc.policy, &doc.version, &raw).map_err(|e| Error::corrupt(&key, e))
    }

    fn doc_missing(&self, doc: &Doc) -> Error {
        Error::DocumentNotFound {
            policy: doc.policy.clone(),
            version: Some(doc.version.clone()),
        }
    }

    /// The error for an id that has no node: the document may be missing too.
    fn node_missing(&self, doc: &Doc, node_id: &str) -> Error {
        match self.txn.get_with(&doc.keys.document(), |_| ()) {
            Ok(Some(())) => Error::NodeNotFound {
                policy: doc.policy.clone(),
                version: doc.version.clone(),
                node_id: node_id.to_string(),
            },
            Ok(None) => self.doc_missing(doc),
            Err(e) => e.into(),
        }
    }

    fn ord_of(&self, doc: &Doc, node_id: &str) -> Result<Option<u32>> {
        let key = doc.keys.id(node_id);
        match self.txn.get_with(&key, codec::decode_u32)? {
            None => Ok(None),
            Some(r) => r.map(Some).map_err(|e| Error::corrupt(&key, e)),
        }
    }

    /// The record at the position a PageIndex-style id names, decoded by
    /// `decode` (which answers `None` unless the record carries the id), when
    /// guessing is worth it for the document (see [`crate::id_guess`]).
    fn guess<T>(
        &self,
        doc: &Doc,
        node_id: &str,
        decode: impl FnOnce(&[&[u8]]) -> Option<T>,
    ) -> Result<Option<(u32, T)>> {
        let Some(ord) = id_guess::position_of(node_id) else {
            return Ok(None);
        };
        let guesses = self.guesses.for_document(doc.keys.prefix());
        if !guesses.worth_trying() {
            return Ok(None);
        }
        // No record there (an id past the document's end) says nothing
        // about the document's ids; a record with another id does.
        let Some(found) = self.txn.get_pieces_with(&doc.keys.node(ord), decode)? else {
            return Ok(None);
        };
        guesses.record(found.is_some());
        Ok(found.map(|t| (ord, t)))
    }

    /// The position and record of a node, or `None` when the document has
    /// no node with this id.
    fn find_node(&self, doc: &Doc, node_id: &str) -> Result<Option<(u32, NodeHeader, Node)>> {
        // A record that does not decode is not taken as the answer here: if
        // it is this node, the id index leads back to it and reports it.
        let decode = |pieces: &[&[u8]]| {
            codec::decode_node_pieces(pieces)
                .ok()
                .filter(|(_, n)| n.node_id == node_id)
        };
        if let Some((ord, (h, n))) = self.guess(doc, node_id, decode)? {
            return Ok(Some((ord, h, n)));
        }
        match self.ord_of(doc, node_id)? {
            Some(ord) => {
                let (h, n) = self.node_at(doc, ord)?;
                Ok(Some((ord, h, n)))
            }
            None => Ok(None),
        }
    }

    /// [`Reader::find_node`] for an id the caller gave: checked, and a
    /// missing node (or document) is an error.
    fn require_node(&self, doc: &Doc, node_id: &str) -> Result<(u32, NodeHeader, Node)> {
        check_id_arg("node_id", node_id)?;
        self.find_node(doc, node_id)?
            .ok_or_else(|| self.node_missing(doc, node_id))
    }

    /// The structural header of a node the caller named.
    fn require_header(&self, doc: &Doc, node_id: &str) -> Result<NodeHeader> {
        check_id_arg("node_id", node_id)?;
        let decode = |pieces: &[&[u8]]| {
            codec::decode_front(pieces, |buf| codec::decode_node_header_if_id(buf, node_id))
                .ok()
                .flatten()
        };
        if let Some((_, h)) = self.guess(doc, node_id, decode)? {
            return Ok(h);
        }
        let ord = self
            .ord_of(doc, node_id)?
            .ok_or_else(|| self.node_missing(doc, node_id))?;
        self.header_at(doc, ord)
    }

    fn node_at(&self, doc: &Doc, ord: u32) -> Result<(NodeHeader, Node)> {
        let key = doc.keys.node(ord);
        match self.txn.get_pieces_with(&key, codec::decode_node_pieces)? {
            Some(r) => r.map_err(|e| Error::corrupt(&key, e)),
            None => Err(Error::corrupt(
                &key,
                "an index names a node that does not exist",
            )),
        }
    }

    fn header_at(&self, doc: &Doc, ord: u32) -> Result<NodeHeader> {
        let key = doc.keys.node(ord);
        match self
            .txn
            .get_pieces_with(&key, |p| codec::decode_front(p, codec::decode_node_header))?
        {
            Some(r) => r.map_err(|e| Error::corrupt(&key, e)),
            None => Err(Error::corrupt(
                &key,
                "an index names a node that does not exist",
            )),
        }
    }

    fn nodes_at(&self, doc: &Doc, ords: impl IntoIterator<Item = u32>) -> Result<Vec<Node>> {
        ords.into_iter()
            .map(|o| self.node_at(doc, o).map(|(_, n)| n))
            .collect()
    }

    /// The document and all its nodes in document order.
    pub fn get_document(
        &self,
        policy: &str,
        version: Option<&str>,
    ) -> Result<(Document, Vec<Node>)> {
        let doc = self.resolve(policy, version)?;
        let (document, stats) = self.doc_record(&doc)?;
        let mut nodes = Vec::with_capacity(stats.node_count as usize);
        self.scan_nodes(&doc.keys.nodes(), None, u32::MAX, |_, n| {
            nodes.push(n);
            true
        })?;
        Ok((document, nodes))
    }

    /// The document record alone.
    pub fn get_document_info(&self, policy: &str, version: Option<&str>) -> Result<Document> {
        let doc = self.resolve(policy, version)?;
        Ok(self.doc_record(&doc)?.0)
    }

    /// One node.
    pub fn get_node(&self, policy: &str, version: Option<&str>, node_id: &str) -> Result<Node> {
        let doc = self.resolve(policy, version)?;
        Ok(self.require_node(&doc, node_id)?.2)
    }

    /// Many nodes by id, in the order asked; ids with no node are returned in
    /// the second list (a missing document is still an error).
    pub fn get_nodes<S: AsRef<str>>(
        &self,
        policy: &str,
        version: Option<&str>,
        node_ids: &[S],
    ) -> Result<(Vec<Node>, Vec<String>)> {
        let doc = self.resolve(policy, version)?;
        let mut found = Vec::with_capacity(node_ids.len());
        let mut missing = Vec::new();
        for id in node_ids {
            let id = id.as_ref();
            check_id_arg("node_ids", id)?;
            match self.find_node(&doc, id)? {
                Some((_, _, node)) => found.push(node),
                None => missing.push(id.to_string()),
            }
        }
        if found.is_empty() && !missing.is_empty() {
            // Distinguish "no such nodes" from "no such document".
            if let Error::DocumentNotFound { .. } = self.node_missing(&doc, &missing[0]) {
                return Err(self.doc_missing(&doc));
            }
        }
        Ok((found, missing))
    }

    /// The children of a node in document order; with no parent, the
    /// top-level nodes.
    pub fn get_children(
        &self,
        policy: &str,
        version: Option<&str>,
        parent_id: Option<&str>,
    ) -> Result<Vec<Node>> {
        let doc = self.resolve(policy, version)?;
        let ords = match parent_id.filter(|p| !p.is_empty()) {
            None => self.doc_record(&doc)?.1.top_ords,
            Some(p) => self.require_header(&doc, p)?.child_ords,
        };
        self.nodes_at(&doc, ords)
    }

    /// The node, then its descendants level by level (breadth-first, each
    /// level in document order). `max_depth` 0 means every level; N means at
    /// most N levels below the node.
    pub fn get_subtree(
        &self,
        policy: &str,
        version: Option<&str>,
        node_id: &str,
        max_depth: u32,
    ) -> Result<Vec<Node>> {
        let doc = self.resolve(policy, version)?;
        let (ord, top, first) = self.require_node(&doc, node_id)?;
        let limit = match max_depth {
            0 => u32::MAX,
            d => top.depth.saturating_add(d),
        };
        if max_depth == 1 {
            let mut out = vec![first];
            out.extend(self.nodes_at(&doc, top.child_ords)?);
            return Ok(out);
        }
        // The subtree is the contiguous ords [ord, ord + size): one range scan.
        // A size counts the node itself, so it is at least 1.
        let end = ord
            .checked_add(top.subtree_size)
            .filter(|_| top.subtree_size >= 1)
            .ok_or_else(|| Error::corrupt(&doc.keys.node(ord), "subtree size out of range"))?;
        // A large subtree is read as a few contiguous ord ranges, shared out
        // among parallel threads (records are several KiB: copying them out
        // of the pages and into strings is most of the work).
        let below = top.subtree_size - 1;
        let threads = threads_for(below as usize, PARALLEL_SUBTREE_NODES);
        let step = run_len(below as usize, threads);
        let ranges: Vec<(u32, u32)> = (ord + 1..end)
            .step_by(step)
            .map(|lo| (lo, lo.saturating_add(step as u32).min(end)))
            .collect();
        let parts = shared_out(
            Pool::Queries,
            &ranges,
            threads,
            |&(lo, hi)| -> Result<Vec<(u32, Node)>> {
                let mut out = Vec::new();
                let (lower, upper) = (doc.keys.node(lo), doc.keys.node(hi));
                self.scan_nodes(&lower, Some(&upper), limit, |h, n| {
                    out.push((h.depth, n));
                    true
                })?;
                Ok(out)
            },
        );
        // Sized from the record, but bounded: a corrupt size must not
        // allocate without bound before the scan finds the records missing.
        let cap = top.subtree_size.min(1 << 16) as usize;
        let mut nodes: Vec<Option<Node>> = Vec::with_capacity(cap);
        let mut order: Vec<(u32, u32)> = Vec::with_capacity(cap);
        order.push((top.depth, 0));
        nodes.push(Some(first));
        for part in parts {
            for (depth, node) in part? {
                order.push((depth, nodes.len() as u32));
                nodes.push(Some(node));
            }
        }
        // Pre-order restricted to one level is that level in document order,
        // so sorting (depth, document position) gives breadth-first order;
        // each node is then moved once, into its place.
        order.sort_unstable();
        Ok(order
            .iter()
            .filter_map(|&(_, i)| nodes[i as usize].take())
            .collect())
    }

    /// The chain from the top-level ancestor down to and including the node.
    pub fn get_ancestor_path(
        &self,
        policy: &str,
        version: Option<&str>,
        node_id: &str,
    ) -> Result<Vec<Node>> {
        let doc = self.resolve(policy, version)?;
        let (mut ord, mut h, n) = self.require_node(&doc, node_id)?;
        let mut path = vec![n];
        loop {
            match h.parent_ord {
                // Parents come before children in document order; anything else
                // would loop.
                Some(p) if p < ord => ord = p,
                Some(_) => return Err(Error::corrupt(&doc.keys.node(ord), "parent after child")),
                None => break,
            }
            let (parent_header, parent) = self.node_at(&doc, ord)?;
            h = parent_header;
            path.push(parent);
        }
        path.reverse();
        Ok(path)
    }

    /// The nodes whose page range contains `page`, in document order.
    pub fn get_nodes_by_page(
        &self,
        policy: &str,
        version: Option<&str>,
        page: u32,
    ) -> Result<Vec<Node>> {
        let doc = self.resolve(policy, version)?;
        self.indexed_nodes(&doc, &doc.keys.pages(page))
    }

    /// The nodes with this section path, in document order.
    pub fn get_by_section_path(
        &self,
        policy: &str,
        version: Option<&str>,
        section_path: &str,
    ) -> Result<Vec<Node>> {
        let doc = self.resolve(policy, version)?;
        self.indexed_nodes(&doc, &doc.keys.sections(section_path))
    }

    /// The nodes named by the index entries under `prefix`; no entries is an
    /// empty list if the document exists, else not found.
    fn indexed_nodes(&self, doc: &Doc, prefix: &[u8]) -> Result<Vec<Node>> {
        let ords = self.index_ords(prefix)?;
        if ords.is_empty() {
            self.doc_record(doc)?;
        }
        self.nodes_at(doc, ords)
    }

    /// Ords of the index entries under `prefix` (their keys end in the ord).
    fn index_ords(&self, prefix: &[u8]) -> Result<Vec<u32>> {
        let mut ords = Vec::new();
        for item in self.txn.prefix(prefix, false) {
            let (k, _) = item?;
            // Entries of a longer section path sharing this prefix differ in
            // length; only exact ones end right after the prefix plus 4 bytes.
            if k.len() != prefix.len() + 4 {
                continue;
            }
            ords.push(
                DocKeys::ord_of_suffix(&k).ok_or_else(|| Error::corrupt(&k, "malformed key"))?,
            );
        }
        Ok(ords)
    }

    /// BM25 search, best first (see [`crate::search`]). `limit` 0 means 10.
    pub fn search(
        &self,
        scope: SearchScope<'_>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let limit = search::effective_limit(limit)?;
        let terms = search::query_terms(self.analyzer, query)?;
        match scope {
            SearchScope::Document { policy, version } => {
                let doc = self.resolve(policy, version)?;
                let (_, stats) = self.doc_record(&doc)?;
                if terms.is_empty() {
                    return Ok(Vec::new());
                }
                let hits = search::search_document(&self.txn, &doc.keys, &stats, &terms, limit)?;
                hits.into_iter()
                    .map(|h| {
                        Ok(SearchHit {
                            policy_id: doc.policy.clone(),
                            version_id: doc.version.clone(),
                            node: self.node_at(&doc, h.ord)?.1,
                            score: h.score,
                        })
                    })
                    .collect()
            }
            SearchScope::AllPolicies => {
                if terms.is_empty() {
                    return Ok(Vec::new());
                }
                let docs = versions::all_in_force(&self.txn, Timestamp::now_observed())?;
                let hits = search::search_all(&self.txn, &docs, &terms, limit)?;
                let mut resolved: HashMap<usize, Doc> = HashMap::new();
                hits.into_iter()
                    .map(|h| {
                        let doc = resolved.entry(h.doc).or_insert_with(|| {
                            let (policy, cur) = &docs[h.doc];
                            Doc {
                                keys: DocKeys::new(policy, &cur.version_id),
                                policy: policy.clone(),
                                version: cur.version_id.clone(),
                            }
                        });
                        Ok(SearchHit {
                            policy_id: doc.policy.clone(),
                            version_id: doc.version.clone(),
                            node: self.node_at(doc, h.ord)?.1,
                            score: h.score,
                        })
                    })
                    .collect()
            }
        }
    }
}
