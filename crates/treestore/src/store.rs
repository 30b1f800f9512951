//! [`TreeStore`]: the embedded document store. This module owns the write path:
//! `store_document` (validate, index, then write the document, its nodes, every
//! index and the search postings in one transaction) and `delete_document`.
//! Queries live in [`crate::reader`].

use std::path::Path;

use treestore_storage::{Db, Options, WriteTxn};

use crate::analyzer::Analyzer;
use crate::codec::{self, Current, DocStats};
use crate::error::{Error, Result};
use crate::model::{Document, Node, StoreReport};
use crate::plan::{self, Plan};
use crate::reader::Reader;
use crate::schema::{self, DocKeys};
use crate::search::{self, DocIndex};
use crate::time::Timestamp;

/// How often a write that lost a conflict to a concurrent transaction is
/// retried before the conflict is returned. Writes here replace whole records,
/// so a retry on a fresh snapshot is always correct.
const MAX_ATTEMPTS: usize = 8;

/// The document store on one database.
pub struct TreeStore {
    db: Db,
    analyzer: Analyzer,
}

impl TreeStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        Ok(Self::from_db(Db::open(dir, options)?))
    }

    /// A store on an already open database.
    pub fn from_db(db: Db) -> Self {
        TreeStore {
            db,
            analyzer: Analyzer::new(),
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
        Reader::new(&self.analyzer, self.db.begin_read())
    }

    /// Validates `doc` and `nodes`, then stores them in one durable transaction,
    /// replacing any earlier content of the same (policy, version), and makes
    /// this version the policy's current one. When validation fails nothing is
    /// written.
    pub fn store_document(&self, doc: Document, nodes: Vec<Node>) -> Result<StoreReport> {
        let now = Timestamp::now_monotonic();
        let plan = plan::plan(&doc, nodes, now)?;
        let index = search::index_document(&self.analyzer, &plan.nodes);
        let keys = DocKeys::new(&doc.policy_id, &doc.version_id);
        let records = Records::encode(&keys, &plan, &index);
        retry(|| {
            let mut txn = self.db.begin_write();
            let old = txn.get(&keys.document())?;
            let replaced = old.is_some();
            let mut doc = doc.clone();
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
                delete_content(&mut txn, &keys, &doc.policy_id, &doc.version_id)?;
            }
            let stats = DocStats {
                stored_at: now,
                node_count: plan.nodes.len() as u32,
                total_len: index.total_len,
                top_ords: plan.top_ords.clone(),
            };
            txn.put(&keys.document(), &codec::encode_document(&doc, &stats))?;
            for (k, v) in &records.entries {
                txn.put(k, v)?;
            }
            for (term, summary) in &records.summaries {
                txn.put(
                    &schema::term(term, &doc.policy_id, &doc.version_id),
                    summary,
                )?;
            }
            txn.put(
                &schema::version(&doc.policy_id, &doc.version_id),
                &codec::encode_i64(now.unix_nanos()),
            )?;
            let current = Current {
                version_id: doc.version_id.clone(),
                node_count: stats.node_count,
                total_len: stats.total_len,
            };
            txn.put(
                &schema::current(&doc.policy_id),
                &codec::encode_current(&current),
            )?;
            txn.commit()?;
            Ok(StoreReport {
                nodes: plan.nodes.len(),
                replaced,
                terms: index.postings.len(),
            })
        })
    }

    /// Deletes one version of a policy's document, or with `version` `None`
    /// every version. Returns the deleted version ids. When the current version
    /// is deleted, the most recently stored remaining version becomes current.
    pub fn delete_document(&self, policy: &str, version: Option<&str>) -> Result<Vec<String>> {
        plan::check_id_arg("policy_id", policy)?;
        if let Some(v) = version {
            plan::check_id_arg("version_id", v)?;
        }
        retry(|| {
            let mut txn = self.db.begin_write();
            let prefix = schema::versions(policy);
            let mut remaining: Vec<(String, i64)> = Vec::new();
            for item in txn.prefix(&prefix, false) {
                let (k, v) = item?;
                let id = schema::version_of_key(&prefix, &k)
                    .ok_or_else(|| Error::corrupt(&k, "malformed key"))?;
                let at = codec::decode_i64(&v).map_err(|e| Error::corrupt(&k, e))?;
                remaining.push((id, at));
            }
            let doomed: Vec<String> = match version {
                Some(v) => remaining
                    .iter()
                    .filter(|(id, _)| id == v)
                    .map(|(id, _)| id.clone())
                    .collect(),
                None => remaining.iter().map(|(id, _)| id.clone()).collect(),
            };
            if doomed.is_empty() {
                return Err(Error::DocumentNotFound {
                    policy: policy.to_string(),
                    version: version.map(str::to_string),
                });
            }
            for v in &doomed {
                delete_content(&mut txn, &DocKeys::new(policy, v), policy, v)?;
                txn.delete(&schema::version(policy, v))?;
            }
            remaining.retain(|(id, _)| !doomed.contains(id));
            let current_key = schema::current(policy);
            let current = match txn.get(&current_key)? {
                Some(v) => {
                    Some(codec::decode_current(&v).map_err(|e| Error::corrupt(&current_key, e))?)
                }
                None => None,
            };
            if current.is_none_or(|c| doomed.contains(&c.version_id)) {
                match remaining.iter().max_by_key(|(id, at)| (*at, id.clone())) {
                    None => txn.delete(&current_key)?,
                    Some((id, _)) => {
                        let keys = DocKeys::new(policy, id);
                        let raw = txn.get(&keys.document())?.ok_or_else(|| {
                            Error::corrupt(&keys.document(), "listed version has no document")
                        })?;
                        let (_, stats) = codec::decode_document(policy, id, &raw)
                            .map_err(|e| Error::corrupt(&keys.document(), e))?;
                        let c = Current {
                            version_id: id.clone(),
                            node_count: stats.node_count,
                            total_len: stats.total_len,
                        };
                        txn.put(&current_key, &codec::encode_current(&c))?;
                    }
                }
            }
            txn.commit()?;
            Ok(doomed.clone())
        })
    }
}

/// Runs a write, retrying it on a transaction conflict.
fn retry<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// The encoded keys and values of a document, built once outside the
/// transaction (and its retries).
struct Records {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Term to encoded summary, for the term-major index.
    summaries: Vec<(String, Vec<u8>)>,
}

impl Records {
    fn encode(keys: &DocKeys, plan: &Plan, index: &DocIndex) -> Records {
        let mut entries = Vec::with_capacity(plan.nodes.len() * 4 + index.postings.len());
        for (ord, (node, header)) in plan.nodes.iter().zip(&plan.headers).enumerate() {
            let ord = ord as u32;
            entries.push((keys.node(ord), codec::encode_node(header, node)));
            entries.push((keys.id(&node.node_id), codec::encode_u32(ord)));
            for page in node.page_start..=node.page_end {
                entries.push((keys.page(page, ord), Vec::new()));
            }
            if !node.section_path.is_empty() {
                entries.push((keys.section(&node.section_path, ord), Vec::new()));
            }
        }
        let mut summaries = Vec::with_capacity(index.postings.len());
        for (term, list) in &index.postings {
            let summary = codec::TermSummary::of(list);
            summaries.push((term.clone(), codec::encode_summary(&summary)));
            entries.push((keys.posting(term), codec::encode_postings(list)));
        }
        Records { entries, summaries }
    }
}

/// Deletes every key of one document version, its term summaries included
/// (but not its version-list entry or current pointer).
fn delete_content(txn: &mut WriteTxn, keys: &DocKeys, policy: &str, version: &str) -> Result<()> {
    let mut doomed = Vec::new();
    for item in txn.prefix(keys.prefix(), false) {
        let (k, _) = item?;
        if let Some(term) = keys.term_of_posting_key(&k) {
            doomed.push(schema::term(&term, policy, version));
        }
        doomed.push(k);
    }
    for k in doomed {
        txn.delete(&k)?;
    }
    Ok(())
}
