//! [`TreeStore`]: the embedded document store. This module owns the write path:
//! `store_document` (validate, index, then write the document, its nodes, every
//! index and the search postings in one transaction) and `delete_document`.
//! Queries live in [`crate::reader`].

use std::path::Path;

use treestore_storage::{Db, Options, WriteTxn};

use crate::analyzer::Analyzer;
use crate::codec::{self, DocStats};
use crate::error::{Error, Result};
use crate::id_guess::Guesses;
use crate::metadata::MetadataStore;
use crate::model::{Document, Node, StoreReport};
use crate::parallel::{shared_out, threads_for, Occupancy, Pool};
use crate::plan::{self, Plan};
use crate::prompts::PromptStore;
use crate::reader::Reader;
use crate::records;
use crate::schema::{self, DocKeys};
use crate::search::{self, DocIndex};
use crate::time::Timestamp;
use crate::version_cache::VersionCache;
use crate::versions::{self, VersionSpec, VersionStore};

/// How often a write that lost a conflict to a concurrent transaction is
/// tried before the conflict is returned. Writes here replace whole records,
/// so a retry on a fresh snapshot is always correct.
const MAX_ATTEMPTS: usize = 12;

/// Wait before retry `attempt` (1-based): 0.25 ms doubling up to 16 ms, with
/// jitter of -50% to +50% so writers that collided do not collide again in
/// step. The total over every retry stays under about 0.15 s.
fn backoff(attempt: usize) -> std::time::Duration {
    let base = 250u64 << attempt.min(6);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
        % base;
    std::time::Duration::from_micros(base / 2 + jitter)
}

/// The document store on one database.
pub struct TreeStore {
    db: Db,
    analyzer: Analyzer,
    indexer: search::Indexer,
    guesses: Guesses,
    in_force: VersionCache,
    /// Calls storing a document right now: a store splits its indexing
    /// across threads only when it is the only one (see [`Occupancy`]).
    storing: Occupancy,
}

impl TreeStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        Ok(Self::from_db(Db::open(dir, options)?))
    }

    /// A store on an already open database.
    pub fn from_db(db: Db) -> Self {
        TreeStore {
            in_force: VersionCache::new(&db),
            db,
            analyzer: Analyzer::new(),
            indexer: search::Indexer::default(),
            guesses: Guesses::default(),
            storing: Occupancy::default(),
        }
    }

    /// The underlying database (for the other stores and for statistics).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Checkpoints and closes the database.
    pub fn close(self) -> Result<()> {
        Ok(self.db.close()?)
    }

    /// A consistent snapshot to run queries on: every query made through one
    /// reader sees the same committed state.
    pub fn read(&self) -> Reader<'_> {
        Reader::new(
            &self.analyzer,
            &self.guesses,
            &self.in_force,
            self.db.begin_read(),
        )
    }

    /// Validates `doc` and `nodes`, then stores them in one durable transaction,
    /// replacing any earlier content of the same (policy, version), and makes
    /// this version the policy's current one. When validation fails nothing is
    /// written.
    pub fn store_document(&self, doc: Document, nodes: Vec<Node>) -> Result<StoreReport> {
        self.store_document_with(doc, nodes, None)
    }

    /// [`TreeStore::store_document`], registering the version as `spec` says
    /// (effective period, supersedes, provenance) in the same transaction.
    /// Without a spec, a version registered earlier with an explicit start
    /// keeps it; otherwise the version is effective from now.
    pub fn store_document_with(
        &self,
        doc: Document,
        nodes: Vec<Node>,
        spec: Option<&VersionSpec>,
    ) -> Result<StoreReport> {
        let occupant = self.storing.enter();
        let now = Timestamp::now_monotonic();
        let prepared = self.prepare_document(doc, nodes, spec, occupant.alone, now)?;
        records::write(&self.db, |txn| prepared.write(txn))
    }

    /// Creates or replaces `nodes` in an existing document version, in one
    /// transaction: a node whose id exists is replaced in place, a new one is
    /// placed after its parent's existing children (in the order given). The
    /// resulting tree is validated as a whole, like [`TreeStore::store_document`],
    /// and every index is updated; the version's registration is kept as is.
    /// Returns the number of nodes written.
    pub fn insert_nodes(&self, policy: &str, version: &str, nodes: Vec<Node>) -> Result<usize> {
        plan::check_id_arg("policy_id", policy)?;
        plan::check_id_arg("version_id", version)?;
        let count = nodes.len();
        let occupant = self.storing.enter();
        // Reading, merging and indexing happen again on each attempt: a
        // conflict means the version changed under us.
        retry(|| {
            let (doc, existing) = self.read().get_document(policy, Some(version))?;
            let seen_update = doc.updated_at;
            let mut prepared = self.prepare_document(
                doc,
                merge_nodes(existing, &nodes),
                None,
                occupant.alone,
                Timestamp::now_monotonic(),
            )?;
            prepared.keep_registration = true;
            let mut txn = self.db.begin_write();
            let key = prepared.keys.document();
            let current = txn.get(&key)?.ok_or_else(|| Error::DocumentNotFound {
                policy: policy.to_string(),
                version: Some(version.to_string()),
            })?;
            let (now_doc, _) = codec::decode_document(policy, version, &current)
                .map_err(|e| Error::corrupt(&key, e))?;
            if now_doc.updated_at != seen_update {
                // Stored again since we read it: merge onto the new content.
                return Err(Error::Storage(treestore_storage::Error::Conflict));
            }
            prepared.write(&mut txn)?;
            txn.commit()?;
            Ok(count)
        })
    }

    /// Validates and indexes a document for [`PreparedDocument::write`]
    /// (outside any transaction: it is the expensive part of storing); with
    /// `split`, a large document is indexed on several threads. `now` is the
    /// store's time (taken by the caller, so a batch stamps its documents in
    /// op order even when it prepares them in parallel).
    pub(crate) fn prepare_document(
        &self,
        doc: Document,
        nodes: Vec<Node>,
        spec: Option<&VersionSpec>,
        split: bool,
        now: Timestamp,
    ) -> Result<PreparedDocument> {
        let plan = plan::plan(&doc, nodes, now)?;
        if let Some(spec) = spec {
            // Without a start, the start kept from an earlier registration is
            // only known in the transaction (which checks again): check the
            // other fields against the earliest start here.
            let probe_now = match spec.effective_start {
                Some(_) => now,
                None => Timestamp::from_unix_nanos(i64::MIN),
            };
            let probe = versions::for_document(
                &doc.policy_id,
                &doc.version_id,
                &doc.pageindex_doc_id,
                None,
                Some(spec),
                probe_now,
            );
            versions::validate(&probe)?;
        }
        let index = search::index_document(&self.analyzer, &self.indexer, &plan.nodes, split);
        let keys = DocKeys::new(&doc.policy_id, &doc.version_id);
        let records = Records::encode(&doc, &keys, &plan, &index, split);
        Ok(PreparedDocument {
            keep_registration: false,
            doc,
            spec: spec.cloned(),
            now,
            node_count: plan.nodes.len(),
            top_ords: plan.top_ords,
            total_len: index.total_len,
            terms: index.term_count(),
            keys,
            records,
        })
    }

    /// Counts the stores in progress (see [`Occupancy`]).
    pub(crate) fn storing(&self) -> &Occupancy {
        &self.storing
    }

    /// The version store on this database.
    pub fn versions(&self) -> VersionStore<'_> {
        VersionStore::new(self)
    }

    /// The metadata store (tool results, trajectories, cross-references,
    /// contradictions) on this database.
    pub fn metadata(&self) -> MetadataStore<'_> {
        MetadataStore::new(&self.db)
    }

    /// The prompt store on this database.
    pub fn prompts(&self) -> PromptStore<'_> {
        PromptStore::new(&self.db)
    }
}

/// A validated, indexed document ready to be written in a transaction.
pub(crate) struct PreparedDocument {
    /// Keep the version's registration (only its document statistics
    /// change), instead of registering it as a store does.
    keep_registration: bool,
    doc: Document,
    spec: Option<VersionSpec>,
    now: Timestamp,
    node_count: usize,
    top_ords: Vec<u32>,
    total_len: u64,
    terms: usize,
    keys: DocKeys,
    records: Records,
}

impl PreparedDocument {
    /// `policy/version`.
    pub(crate) fn id(&self) -> String {
        format!("{}/{}", self.doc.policy_id, self.doc.version_id)
    }

    /// Writes the document, replacing earlier content of its version, and
    /// registers the version.
    pub(crate) fn write(&self, txn: &mut WriteTxn) -> Result<StoreReport> {
        let (keys, records, now) = (&self.keys, &self.records, self.now);
        let old = txn.get(&keys.document())?;
        let replaced = old.is_some();
        let mut doc = self.doc.clone();
        doc.updated_at = now;
        doc.created_at = match &old {
            Some(v) => {
                codec::decode_document(&doc.policy_id, &doc.version_id, v)
                    .map_err(|e| Error::corrupt(&keys.document(), e))?
                    .0
                    .created_at
            }
            None if doc.created_at == Timestamp::EPOCH => now,
            None => doc.created_at,
        };
        if replaced {
            delete_content(txn, keys, &doc.policy_id, &doc.version_id)?;
        }
        let stats = DocStats {
            stored_at: now,
            node_count: self.node_count as u32,
            total_len: self.total_len,
            top_ords: self.top_ords.clone(),
        };
        txn.put(&keys.document(), &codec::encode_document(&doc, &stats))?;
        txn.put_all(records.entries.iter().cloned())?;
        let old_reg = records::get_in(txn, &schema::version(&doc.policy_id, &doc.version_id))?;
        if let (true, Some(old)) = (self.keep_registration, &old_reg) {
            versions::refresh_document(txn, old)?;
            return Ok(StoreReport {
                nodes: self.node_count,
                replaced,
                terms: self.terms,
            });
        }
        let reg = versions::for_document(
            &doc.policy_id,
            &doc.version_id,
            &doc.pageindex_doc_id,
            old_reg,
            self.spec.as_ref(),
            now,
        );
        versions::register(txn, reg)?;
        Ok(StoreReport {
            nodes: self.node_count,
            replaced,
            terms: self.terms,
        })
    }
}

impl TreeStore {
    /// Deletes one version of a policy (its document and its registration),
    /// or with `version` `None` every version. Returns the deleted version
    /// ids. Deleting the version in force makes the one that then covers the
    /// instant current (without effective dates: the most recently stored).
    pub fn delete_document(&self, policy: &str, version: Option<&str>) -> Result<Vec<String>> {
        plan::check_id_arg("policy_id", policy)?;
        if let Some(v) = version {
            plan::check_id_arg("version_id", v)?;
        }
        records::write(&self.db, |txn| delete_versions(txn, policy, version))
    }
}

/// Deletes one version (or all) of a policy in `txn`; the deleted ids, or
/// not-found when there is nothing to delete.
pub(crate) fn delete_versions(
    txn: &mut WriteTxn,
    policy: &str,
    version: Option<&str>,
) -> Result<Vec<String>> {
    let mut doomed = match version {
        Some(v) => vec![v.to_string()],
        None => versions::registered_ids(txn, policy)?,
    };
    doomed.sort();
    let mut deleted = Vec::new();
    for v in &doomed {
        let keys = DocKeys::new(policy, v);
        let had_doc = txn.get(&keys.document())?.is_some();
        if had_doc {
            delete_content(txn, &keys, policy, v)?;
        }
        if versions::unregister(txn, policy, v)? || had_doc {
            deleted.push(v.clone());
        }
    }
    if deleted.is_empty() {
        return Err(Error::DocumentNotFound {
            policy: policy.to_string(),
            version: version.map(str::to_string),
        });
    }
    Ok(deleted)
}

/// `existing` nodes (document order) with `nodes` merged in: a node whose id
/// exists replaces it in place, a new one is appended (so it follows its
/// parent's existing children). Child lists are cleared, so child order is
/// re-derived from the merged order, except where a given node fixes it.
fn merge_nodes(existing: Vec<Node>, nodes: &[Node]) -> Vec<Node> {
    let mut merged = existing;
    let mut position: std::collections::HashMap<String, usize> = merged
        .iter()
        .enumerate()
        .map(|(i, n)| (n.node_id.clone(), i))
        .collect();
    for n in &mut merged {
        n.child_ids.clear();
    }
    for n in nodes.iter().cloned() {
        match position.get(&n.node_id) {
            Some(&i) => merged[i] = n,
            None => {
                position.insert(n.node_id.clone(), merged.len());
                merged.push(n);
            }
        }
    }
    merged
}

/// Runs a write, retrying it on a transaction conflict (after a short,
/// growing, jittered wait).
pub(crate) fn retry<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                std::thread::sleep(backoff(attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The encoded keys and values of a document (all but its document record),
/// built once outside the transaction (and its retries).
struct Records {
    /// In key order, so the transaction's sort of them is one linear pass
    /// (see [`Records::encode`]).
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Records {
    /// Encodes the node tables, the search postings and the term summaries.
    /// Each table comes out in key order and the tables in the order of their
    /// tags (page `g` < id `i` < node `n` < posting block `q` < section `s`, all
    /// under the document's prefix in space 0x10, then the summaries in space
    /// 0x13), so the whole list is sorted: the transaction's sort of it is then
    /// one linear pass, and the work moves out of the transaction into
    /// preparation (which a batch runs for its documents in parallel). If the
    /// order were off, the transaction would still sort it.
    ///
    /// With `split`, a document with many terms is encoded on several
    /// threads: the node tables, and the search tables of each of two halves
    /// of its terms (posting blocks then end at the half, and the summary
    /// blocks of the halves are joined).
    fn encode(
        doc: &Document,
        keys: &DocKeys,
        plan: &Plan,
        index: &DocIndex,
        split: bool,
    ) -> Records {
        let terms = index.term_count();
        let threads = if split {
            threads_for(terms, PARALLEL_ENCODE_TERMS)
        } else {
            1
        };
        let ([pages, ids, nodes, sections], [postings, summaries]) = if threads < 2 {
            (
                Self::node_tables(keys, plan),
                Self::search_tables(doc, keys, index),
            )
        } else {
            let jobs = [None, Some(0..terms / 2), Some(terms / 2..terms)];
            let done = shared_out(Pool::Indexing, &jobs, threads, |job| match job {
                None => Encoded::Nodes(Self::node_tables(keys, plan)),
                Some(range) => Encoded::Terms(Self::search_parts(index, range.clone())),
            });
            // Results come in job order, so the term ranges stay in order.
            let (mut node_tables, mut parts) = (None, Vec::with_capacity(2));
            for part in done {
                match part {
                    Encoded::Nodes(tables) => node_tables = Some(tables),
                    Encoded::Terms(search) => parts.push(search),
                }
            }
            (
                node_tables.unwrap_or_else(|| Self::node_tables(keys, plan)),
                Self::search_join(doc, keys, parts),
            )
        };
        let mut entries = Vec::with_capacity(
            pages.len()
                + ids.len()
                + nodes.len()
                + postings.len()
                + sections.len()
                + summaries.len(),
        );
        for table in [pages, ids, nodes, postings, sections, summaries] {
            entries.extend(table);
        }
        Records { entries }
    }

    /// The page, id, node and section tables, each in key order.
    fn node_tables(keys: &DocKeys, plan: &Plan) -> [Vec<(Vec<u8>, Vec<u8>)>; 4] {
        let n = plan.nodes.len();
        let mut nodes = Vec::with_capacity(n);
        let mut pages: Vec<(u32, u32)> = Vec::with_capacity(n * 2);
        let mut sections: Vec<(&str, u32)> = Vec::with_capacity(n);
        for (ord, (node, header)) in plan.nodes.iter().zip(&plan.headers).enumerate() {
            let ord = ord as u32;
            nodes.push((keys.node(ord), codec::encode_node(header, node)));
            pages.extend((node.page_start..=node.page_end).map(|page| (page, ord)));
            if !node.section_path.is_empty() {
                sections.push((node.section_path.as_str(), ord));
            }
        }
        pages.sort_unstable();
        sections.sort_unstable();
        let mut by_id: Vec<u32> = (0..n as u32).collect();
        by_id.sort_unstable_by(|&a, &b| {
            plan.nodes[a as usize]
                .node_id
                .cmp(&plan.nodes[b as usize].node_id)
        });
        [
            pages
                .into_iter()
                .map(|(page, ord)| (keys.page(page, ord), Vec::new()))
                .collect(),
            by_id
                .into_iter()
                .map(|ord| {
                    (
                        keys.id(&plan.nodes[ord as usize].node_id),
                        codec::encode_u32(ord),
                    )
                })
                .collect(),
            nodes,
            sections
                .into_iter()
                .map(|(path, ord)| (keys.section(path, ord), Vec::new()))
                .collect(),
        ]
    }

    /// The posting blocks (in term order) and the summary blocks (in group
    /// order) of all the document's terms.
    fn search_tables(
        doc: &Document,
        keys: &DocKeys,
        index: &DocIndex,
    ) -> [Vec<(Vec<u8>, Vec<u8>)>; 2] {
        let all = 0..index.term_count();
        Self::search_join(doc, keys, vec![Self::search_parts(index, all)])
    }

    /// The posting blocks (each with its first term) and the summary blocks
    /// (each with its group) of the terms at positions `range`.
    fn search_parts(index: &DocIndex, range: std::ops::Range<usize>) -> SearchParts {
        let mut blocks = codec::PostingBlocks::default();
        for (term, list) in index.iter_range(range.clone()) {
            blocks.add(term, list);
        }
        let mut order = codec::LengthOrder::new(index.node_lens());
        let summaries = codec::encode_summary_blocks(
            index
                .iter_range(range)
                .map(|(term, list)| (term, codec::TermSummary::of_ordered(list, &mut order))),
            schema::term_group,
        );
        (blocks.finish(), summaries)
    }

    /// The keyed posting blocks and summary blocks of consecutive term
    /// ranges, in key order.
    fn search_join(
        doc: &Document,
        keys: &DocKeys,
        parts: Vec<SearchParts>,
    ) -> [Vec<(Vec<u8>, Vec<u8>)>; 2] {
        let mut postings = Vec::new();
        let mut summaries = Vec::with_capacity(parts.len());
        for (blocks, groups) in parts {
            postings.extend(
                blocks
                    .into_iter()
                    .map(|(first, block)| (keys.posting_block(&first), block)),
            );
            summaries.push(groups);
        }
        let summary_keys = schema::SummaryKeys::new(&doc.policy_id, &doc.version_id);
        let summaries = codec::join_summary_blocks(summaries)
            .into_iter()
            .map(|(group, block)| (summary_keys.block(group), block))
            .collect();
        [postings, summaries]
    }
}

/// Posting blocks by first term and summary blocks by group, of a range of
/// a document's terms.
type SearchParts = (Vec<(String, Vec<u8>)>, Vec<(u16, Vec<u8>)>);

/// What one job of a parallel [`Records::encode`] produced.
enum Encoded {
    Nodes([Vec<(Vec<u8>, Vec<u8>)>; 4]),
    Terms(SearchParts),
}

/// Documents with at least this many distinct terms are encoded on several
/// threads (a 263-node benchmark document has about 22,000).
const PARALLEL_ENCODE_TERMS: usize = 2_000;

/// Deletes every key of one document version, its term summaries included
/// (but not its version-list entry or current pointer). The summaries are
/// found from the document's terms: in summary blocks, or for a document
/// stored before them (no block for its first term), one entry per term.
fn delete_content(txn: &mut WriteTxn, keys: &DocKeys, policy: &str, version: &str) -> Result<()> {
    let mut doomed = Vec::new();
    let mut terms: Vec<String> = Vec::new();
    for item in txn.prefix(keys.prefix(), false) {
        let (k, v) = item?;
        if keys.is_posting_block_key(&k) {
            terms.extend(codec::posting_block_terms(&v).map_err(|e| Error::corrupt(&k, e))?);
        } else if let Some(term) = keys.term_of_posting_key(&k) {
            terms.push(term);
        }
        doomed.push(k);
    }
    if let Some(first) = terms.first() {
        let summary_keys = schema::SummaryKeys::new(policy, version);
        if txn
            .get(&summary_keys.block(schema::term_group(first)))?
            .is_some()
        {
            let mut groups: Vec<u16> = terms.iter().map(|t| schema::term_group(t)).collect();
            groups.sort_unstable();
            groups.dedup();
            doomed.extend(groups.into_iter().map(|g| summary_keys.block(g)));
        } else {
            doomed.extend(terms.iter().map(|t| schema::term(t, policy, version)));
        }
    }
    for k in doomed {
        txn.delete(&k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document's plan and its search index, as `prepare_document` makes
    /// them (on one thread).
    fn plan_and_index(doc: &Document, nodes: Vec<Node>) -> (Plan, DocIndex) {
        let plan = plan::plan(doc, nodes, Timestamp::from_unix_nanos(1)).unwrap();
        let index = search::index_document(
            &Analyzer::new(),
            &search::Indexer::default(),
            &plan.nodes,
            false,
        );
        (plan, index)
    }

    /// The records of a document come out in key order (so the transaction's
    /// sort is a linear pass), whatever the order of ids, pages and section
    /// paths in the document, and hold every key the tables need once.
    #[test]
    fn records_are_encoded_in_key_order() {
        let doc = Document::new("pol", "v1");
        let node =
            |id: &str, parent: Option<&str>, pages: (u32, u32), path: &str, text: &str| Node {
                node_id: id.into(),
                parent_id: parent.map(str::to_string),
                title: format!("title of {id}"),
                page_start: pages.0,
                page_end: pages.1,
                section_path: path.into(),
                text: text.into(),
                ..Node::default()
            };
        let nodes = vec![
            node("z9", None, (7, 9), "2", "knee arthroscopy criteria"),
            node("a1", Some("z9"), (9, 9), "2.10", "zebra apple knee"),
            node("m5", Some("z9"), (3, 12), "2.9", "imaging mri"),
            node("b2", None, (1, 2), "1", "aardvark"),
        ];
        let (plan, index) = plan_and_index(&doc, nodes);
        let keys = DocKeys::new(&doc.policy_id, &doc.version_id);
        let records = Records::encode(&doc, &keys, &plan, &index, false);
        let entries = &records.entries;
        for pair in entries.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{:?} before {:?}",
                pair[0].0,
                pair[1].0
            );
        }
        // 4 nodes, 4 ids, 3 + 1 + 10 + 2 page entries, 4 sections, one
        // posting block (few terms) and a summary block per term group.
        let terms = index.term_count();
        assert!(terms >= 8, "{terms} terms");
        let groups: std::collections::BTreeSet<u16> =
            index.iter().map(|(t, _)| schema::term_group(t)).collect();
        assert!(groups.len() > 1, "{groups:?}");
        assert_eq!(entries.len(), 4 + 4 + 16 + 4 + 1 + groups.len());
        let first = index.iter().next().expect("a term").0;
        assert!(entries.iter().any(|(k, _)| *k == keys.posting_block(first)));
        assert!(entries.iter().any(|(k, _)| *k == keys.page(12, 2)));
        assert!(entries.iter().any(|(k, _)| *k == keys.section("2.10", 1)));
        let knee = schema::summary_block(schema::term_group("knee"), "pol", "v1");
        let (_, block) = entries.iter().find(|(k, _)| *k == knee).expect("block");
        let summary = codec::find_in_summary_block(block, "knee").unwrap();
        assert_eq!(summary.map(|s| s.count), Some(2), "knee is in two nodes");
    }

    /// A document encoded on several threads has the same node tables and
    /// summary blocks as one encoded on one, and posting blocks (cut where
    /// the term halves meet) holding the same lists; all in key order.
    #[test]
    fn parallel_encoding_equals_sequential() {
        let doc = Document::new("pol", "v1");
        let nodes: Vec<Node> = (0..30)
            .map(|i| Node {
                node_id: format!("n{i:02}"),
                title: format!("title {i}"),
                page_start: i,
                page_end: i + 2,
                text: (0..150)
                    .map(|w| format!("w{} ", (w * 31 + i * 7) % 4_000))
                    .collect(),
                ..Node::default()
            })
            .collect();
        let (plan, index) = plan_and_index(&doc, nodes);
        assert!(index.term_count() >= PARALLEL_ENCODE_TERMS);
        let keys = DocKeys::new(&doc.policy_id, &doc.version_id);
        let one = Records::encode(&doc, &keys, &plan, &index, false).entries;
        let many = Records::encode(&doc, &keys, &plan, &index, true).entries;
        assert!(many.windows(2).all(|w| w[0].0 < w[1].0), "key order");
        let (one_blocks, one_rest): (Vec<_>, Vec<_>) = one
            .into_iter()
            .partition(|(k, _)| keys.is_posting_block_key(k));
        let (many_blocks, many_rest): (Vec<_>, Vec<_>) = many
            .into_iter()
            .partition(|(k, _)| keys.is_posting_block_key(k));
        assert_eq!(one_rest, many_rest);
        let lists = |blocks: &[(Vec<u8>, Vec<u8>)]| {
            let mut out = Vec::new();
            for (_, block) in blocks {
                for term in codec::posting_block_terms(block).unwrap() {
                    let mut list = Vec::new();
                    codec::find_in_posting_block(block, &term, &mut list).unwrap();
                    out.push((term, list));
                }
            }
            out
        };
        assert_eq!(lists(&one_blocks), lists(&many_blocks));
        assert_eq!(lists(&one_blocks).len(), index.term_count());
    }

    #[test]
    fn retries_conflicts_with_growing_waits_then_gives_up() {
        for attempt in 1..MAX_ATTEMPTS {
            let base = std::time::Duration::from_micros(250 << attempt.min(6));
            let wait = backoff(attempt);
            assert!(
                wait >= base / 2 && wait < base * 3 / 2,
                "{attempt}: {wait:?}"
            );
        }
        let mut tries = 0;
        let r: Result<()> = retry(|| {
            tries += 1;
            Err(Error::Storage(treestore_storage::Error::Conflict))
        });
        assert!(r.unwrap_err().is_retryable());
        assert_eq!(tries, MAX_ATTEMPTS);
        let mut tries = 0;
        let r = retry(|| {
            tries += 1;
            match tries {
                1..=3 => Err(Error::Storage(treestore_storage::Error::Conflict)),
                _ => Ok(tries),
            }
        });
        assert_eq!(r.unwrap(), 4);
    }
}
