//! The version store: which version of a policy is in force when.
//!
//! A version is registered with an effective period `[effective_start,
//! effective_end)` (end optional = open-ended). Storing a document registers
//! its version in the same transaction: with the effective start given, or
//! else effective from the moment it was stored (and re-storing such a
//! version moves its start, so without dates the current version is the one
//! most recently stored).
//!
//! The version in force at an instant is, among the versions whose period
//! contains it, the one with the latest start; several starting on the same
//! instant: the one registered last. Node queries that name no version use
//! the version in force now.
//!
//! Keys (see [`crate::schema`]): `0x12 (policy, version)` holds the
//! [`PolicyVersion`] record (JSON); `0x11 (policy, start, registered_at)` is
//! the effective-time index, whose value carries the version id, its end and,
//! once a document is stored, the document's node count and total length, so
//! finding the current version of every policy (cross-policy search) reads
//! only this index.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use treestore_storage::{ReadTxn, WriteTxn};

use crate::codec::{self, Current, Dec, Enc};
use crate::error::{Error, Result};
use crate::key::{self, Elem, KeyBuilder};
use crate::model::Node;
use crate::records::{self, check_id, check_len, check_list, check_opt_id, MAX_NAME_LEN};
use crate::schema::{self, DocKeys};
use crate::store::TreeStore;
use crate::time::Timestamp;

/// One registered version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub policy_id: String,
    pub version_id: String,
    pub effective_start: Timestamp,
    /// Exclusive end; `None` = in force until superseded.
    #[serde(default)]
    pub effective_end: Option<Timestamp>,
    /// The version this one replaces, if any.
    #[serde(default)]
    pub supersedes: Option<String>,
    #[serde(default)]
    pub pageindex_doc_id: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it was (last) registered; set by the store. Orders versions that
    /// start on the same instant.
    #[serde(default)]
    pub registered_at: Timestamp,
    /// True when no effective start was given: the version took effect when
    /// its document was stored. Set by the store.
    #[serde(default)]
    pub effective_from_store: bool,
}

impl PolicyVersion {
    /// A version effective from `start`, open-ended.
    pub fn new(
        policy_id: impl Into<String>,
        version_id: impl Into<String>,
        start: Timestamp,
    ) -> Self {
        PolicyVersion {
            policy_id: policy_id.into(),
            version_id: version_id.into(),
            effective_start: start,
            effective_end: None,
            supersedes: None,
            pageindex_doc_id: String::new(),
            created_by: String::new(),
            description: String::new(),
            tags: Vec::new(),
            registered_at: Timestamp::EPOCH,
            effective_from_store: false,
        }
    }

    /// Whether the version is in force at `at`.
    pub fn covers(&self, at: Timestamp) -> bool {
        self.effective_start <= at && self.effective_end.is_none_or(|e| at < e)
    }
}

/// How storing a document registers its version; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionSpec {
    /// `None`: keep the start of an earlier registration with an explicit
    /// start, else effective from the time of storing.
    pub effective_start: Option<Timestamp>,
    pub effective_end: Option<Timestamp>,
    pub supersedes: Option<String>,
    pub created_by: String,
    pub description: String,
    pub tags: Vec<String>,
}

/// What changed between two versions of a policy's document, by node id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionDiff {
    /// In the second version only (its document order).
    pub added: Vec<String>,
    /// In the first version only (its document order).
    pub removed: Vec<String>,
    /// In both, with different content (second version's order).
    pub changed: Vec<String>,
}

/// The version store's API (one durable transaction per write, one snapshot
/// per query). Get it with [`TreeStore::versions`].
pub struct VersionStore<'s> {
    store: &'s TreeStore,
}

impl<'s> VersionStore<'s> {
    pub(crate) fn new(store: &'s TreeStore) -> Self {
        VersionStore { store }
    }

    /// Registers a version, or re-registers it (an upsert by (policy,
    /// version): the new period replaces the old, and it counts as registered
    /// last). The document need not be stored yet.
    pub fn register(&self, version: PolicyVersion) -> Result<PolicyVersion> {
        validate(&version)?;
        records::write(self.store.db(), |txn| register(txn, version.clone()))
    }

    /// One version's registration.
    pub fn get(&self, policy: &str, version: &str) -> Result<PolicyVersion> {
        check_id("policy_id", policy)?;
        check_id("version_id", version)?;
        get(&self.store.db().begin_read(), policy, version)?
            .ok_or_else(|| Error::not_found("version", format!("{policy}/{version}")))
    }

    /// The version in force at `at` (see the module documentation); a
    /// not-found error that says why when there is none.
    pub fn as_of(&self, policy: &str, at: Timestamp) -> Result<PolicyVersion> {
        check_id("policy_id", policy)?;
        let txn = self.store.db().begin_read();
        match in_force(&txn, policy, at)? {
            Some(e) => get(&txn, policy, &e.version_id)?.ok_or_else(|| {
                Error::corrupt(
                    &record_key(policy, &e.version_id),
                    "indexed version has no record",
                )
            }),
            None => Err(Error::NoVersionInForce {
                policy: policy.to_string(),
                reason: "the policy has no registered versions".into(),
            }),
        }
    }

    /// The version node queries use when they name none: the one in force now.
    pub fn current(&self, policy: &str) -> Result<PolicyVersion> {
        self.as_of(policy, Timestamp::now_observed())
    }

    /// A policy's versions, latest effective start first, at most `limit`
    /// (0 = all).
    pub fn list(&self, policy: &str, limit: usize) -> Result<Vec<PolicyVersion>> {
        check_id("policy_id", policy)?;
        list(&self.store.db().begin_read(), policy, limit)
    }

    /// The version with the latest effective start (whether or not it is in
    /// force yet).
    pub fn latest(&self, policy: &str) -> Result<PolicyVersion> {
        self.list(policy, 1)?
            .pop()
            .ok_or_else(|| Error::NoVersionInForce {
                policy: policy.to_string(),
                reason: "the policy has no registered versions".into(),
            })
    }

    /// How much is stored: policies with a document, document versions and
    /// their nodes (read from the version index alone).
    pub fn totals(&self) -> Result<Totals> {
        let txn = self.store.db().begin_read();
        let mut t = Totals::default();
        let mut last_policy: Option<String> = None;
        for item in txn.prefix(&[schema::SPACE_EFFECTIVE], false) {
            let (k, v) = item?;
            let e = decode_entry(&k, &v)?;
            let Some((nodes, _)) = e.doc else { continue };
            let (policy, _) = decode_index_key(&k)?;
            if last_policy.as_deref() != Some(policy.as_str()) {
                t.policies += 1;
                last_policy = Some(policy);
            }
            t.versions += 1;
            t.nodes += u64::from(nodes);
        }
        Ok(t)
    }

    /// Node ids added, removed and changed (by [`content_hash`]) from version
    /// `a` to version `b` of a policy's document.
    pub fn diff(&self, policy: &str, a: &str, b: &str) -> Result<VersionDiff> {
        check_id("version_a", a)?;
        check_id("version_b", b)?;
        let reader = self.store.read();
        let (_, nodes_a) = reader.get_document(policy, Some(a))?;
        let (_, nodes_b) = reader.get_document(policy, Some(b))?;
        Ok(diff(&nodes_a, &nodes_b))
    }
}

/// What [`VersionStore::totals`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Policies with at least one stored document version.
    pub policies: u64,
    /// Stored document versions.
    pub versions: u64,
    /// Nodes across every stored document version.
    pub nodes: u64,
}

/// An entry of the effective-time index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub version_id: String,
    pub end: Option<Timestamp>,
    /// Node count and total length of its stored document, if any.
    pub doc: Option<(u32, u64)>,
}

fn record_key(policy: &str, version: &str) -> Vec<u8> {
    schema::version(policy, version)
}

fn index_prefix(policy: &str) -> Vec<u8> {
    KeyBuilder::new()
        .raw(&[schema::SPACE_EFFECTIVE])
        .str(policy)
        .finish()
}

fn index_key(v: &PolicyVersion) -> Vec<u8> {
    KeyBuilder::from(index_prefix(&v.policy_id))
        .i64(v.effective_start.unix_nanos())
        .i64(v.registered_at.unix_nanos())
        .finish()
}

fn encode_entry(e: &IndexEntry) -> Vec<u8> {
    let mut enc = Enc::with_format();
    enc.str(&e.version_id);
    match e.end {
        None => enc.u64(0),
        Some(t) => enc.u64(1).i64(t.unix_nanos()),
    };
    match e.doc {
        None => enc.u64(0),
        Some((n, len)) => enc.u64(1).u64(n.into()).u64(len),
    };
    enc.finish()
}

fn decode_entry(key: &[u8], raw: &[u8]) -> Result<IndexEntry> {
    let parse = || -> std::result::Result<IndexEntry, codec::CodecError> {
        let mut d = Dec::record(raw)?;
        let version_id = d.string()?;
        let end = match d.u64()? {
            0 => None,
            _ => Some(Timestamp::from_unix_nanos(d.i64()?)),
        };
        let doc = match d.u64()? {
            0 => None,
            _ => Some((d.u32()?, d.u64()?)),
        };
        d.end()?;
        Ok(IndexEntry {
            version_id,
            end,
            doc,
        })
    };
    parse().map_err(|e| Error::corrupt(key, e))
}

/// The (policy, start) of an effective-index key.
fn decode_index_key(key: &[u8]) -> Result<(String, Timestamp)> {
    let tail = key
        .strip_prefix(&[schema::SPACE_EFFECTIVE])
        .ok_or_else(|| Error::corrupt(key, "not an effective-index key"))?;
    match key::decode(tail)
        .map_err(|e| Error::corrupt(key, e))?
        .as_slice()
    {
        [Elem::Bytes(p), Elem::I64(start), Elem::I64(_)] => Ok((
            String::from_utf8(p.clone()).map_err(|e| Error::corrupt(key, e))?,
            Timestamp::from_unix_nanos(*start),
        )),
        _ => Err(Error::corrupt(key, "malformed effective-index key")),
    }
}

/// Checks a registration's fields.
pub(crate) fn validate(v: &PolicyVersion) -> Result<()> {
    check_id("policy_id", &v.policy_id)?;
    check_id("version_id", &v.version_id)?;
    if let Some(end) = v.effective_end {
        if end <= v.effective_start {
            return Err(Error::invalid(
                "effective_end",
                format!("{end} is not after effective_start {}", v.effective_start),
            ));
        }
    }
    if let Some(s) = &v.supersedes {
        check_id("supersedes", s)?;
        if *s == v.version_id {
            return Err(Error::invalid(
                "supersedes",
                "a version cannot supersede itself",
            ));
        }
    }
    check_opt_id("pageindex_doc_id", &v.pageindex_doc_id)?;
    check_len("created_by", &v.created_by, MAX_NAME_LEN)?;
    check_len("description", &v.description, records::MAX_RECORD_TEXT)?;
    check_list("tags", &v.tags, MAX_NAME_LEN)
}

/// Registers (or re-registers) a version in `txn`, after [`validate`]. Reads
/// the document's statistics if one is stored (or being stored in `txn`),
/// and takes its `pageindex_doc_id` when the registration gives none.
pub(crate) fn register(txn: &mut WriteTxn, mut v: PolicyVersion) -> Result<PolicyVersion> {
    validate(&v)?;
    // Checked here rather than in `validate`, which also checks probes
    // whose start is the earliest i64 (see `TreeStore::prepare_document`).
    crate::metadata::check_time("effective_start", v.effective_start)?;
    if let Some(end) = v.effective_end {
        crate::metadata::check_time("effective_end", end)?;
    }
    v.registered_at = Timestamp::now_monotonic();
    let stored = stored_document(txn, &v.policy_id, &v.version_id)?;
    if v.pageindex_doc_id.is_empty() {
        if let Some((d, _)) = &stored {
            v.pageindex_doc_id = d.pageindex_doc_id.clone();
        }
    }
    let doc = stored.map(|(_, stats)| (stats.node_count, stats.total_len));
    let key = record_key(&v.policy_id, &v.version_id);
    records::upsert(txn, &key, &v, |v| vec![index_entry(v, doc)])?;
    Ok(v)
}

/// The effective-index entry of a registration whose document has `doc`
/// statistics.
fn index_entry(v: &PolicyVersion, doc: Option<(u32, u64)>) -> (Vec<u8>, Vec<u8>) {
    let entry = IndexEntry {
        version_id: v.version_id.clone(),
        end: v.effective_end,
        doc,
    };
    (index_key(v), encode_entry(&entry))
}

/// Rewrites a registration's index entry with the statistics of the document
/// now stored (or being stored in `txn`), keeping its place; a registration
/// without a `pageindex_doc_id` takes the document's.
pub(crate) fn refresh_document(txn: &mut WriteTxn, v: &PolicyVersion) -> Result<()> {
    let stored = stored_document(txn, &v.policy_id, &v.version_id)?;
    if let Some((d, _)) = &stored {
        if v.pageindex_doc_id.is_empty() && !d.pageindex_doc_id.is_empty() {
            let mut filled = v.clone();
            filled.pageindex_doc_id = d.pageindex_doc_id.clone();
            txn.put(
                &record_key(&v.policy_id, &v.version_id),
                &records::encode(&filled)?,
            )?;
        }
    }
    let doc = stored.map(|(_, stats)| (stats.node_count, stats.total_len));
    let (key, value) = index_entry(v, doc);
    txn.put(&key, &value)?;
    Ok(())
}

/// The stored document of a version and its statistics, as `txn` sees it.
fn stored_document(
    txn: &WriteTxn,
    policy: &str,
    version: &str,
) -> Result<Option<(crate::model::Document, codec::DocStats)>> {
    let doc_key = DocKeys::new(policy, version).document();
    match txn.get(&doc_key)? {
        Some(raw) => codec::decode_document(policy, version, &raw)
            .map(Some)
            .map_err(|e| Error::corrupt(&doc_key, e)),
        None => Ok(None),
    }
}

/// The registration a document store makes: from `spec`, an earlier
/// registration `old`, and the time of storing.
pub(crate) fn for_document(
    policy: &str,
    version: &str,
    pageindex_doc_id: &str,
    old: Option<PolicyVersion>,
    spec: Option<&VersionSpec>,
    now: Timestamp,
) -> PolicyVersion {
    let mut v = old.unwrap_or_else(|| {
        let mut v = PolicyVersion::new(policy, version, now);
        v.effective_from_store = true;
        v
    });
    match spec {
        Some(s) => {
            match s.effective_start {
                Some(start) => {
                    v.effective_start = start;
                    v.effective_from_store = false;
                }
                None if v.effective_from_store => v.effective_start = now,
                None => {}
            }
            v.effective_end = s.effective_end;
            v.supersedes = s.supersedes.clone();
            v.created_by = s.created_by.clone();
            v.description = s.description.clone();
            v.tags = s.tags.clone();
        }
        None if v.effective_from_store => v.effective_start = now,
        None => {}
    }
    v.pageindex_doc_id = pageindex_doc_id.to_string();
    v
}

/// Removes a version's registration; whether there was one.
pub(crate) fn unregister(txn: &mut WriteTxn, policy: &str, version: &str) -> Result<bool> {
    let key = record_key(policy, version);
    match records::get_in::<PolicyVersion>(txn, &key)? {
        Some(old) => {
            txn.delete(&index_key(&old))?;
            txn.delete(&key)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The registered version ids of a policy (any order), as `txn` sees them.
pub(crate) fn registered_ids(txn: &WriteTxn, policy: &str) -> Result<Vec<String>> {
    let prefix = schema::versions(policy);
    let mut out = Vec::new();
    for item in txn.prefix(&prefix, false) {
        let (k, _) = item?;
        out.push(
            schema::version_of_key(&prefix, &k)
                .ok_or_else(|| Error::corrupt(&k, "malformed key"))?,
        );
    }
    Ok(out)
}

/// The registration of one version.
pub(crate) fn get(txn: &ReadTxn, policy: &str, version: &str) -> Result<Option<PolicyVersion>> {
    records::get(txn, &record_key(policy, version))
}

/// The version in force at `at`: `Ok(None)` when the policy has no versions
/// at all; a [`Error::NoVersionInForce`] saying why when it has some but none
/// covers `at` (before the first one, or in a gap after an explicit end).
/// Past the last key under a policy's index `prefix` whose effective start
/// is at or before `at` (every registration time included).
fn last_key_at(prefix: &[u8], at: Timestamp) -> Vec<u8> {
    KeyBuilder::from(prefix.to_vec())
        .i64(at.unix_nanos())
        .i64(i64::MAX)
        .finish()
}

pub(crate) fn in_force(txn: &ReadTxn, policy: &str, at: Timestamp) -> Result<Option<IndexEntry>> {
    let prefix = index_prefix(policy);
    let upper = last_key_at(&prefix, at);
    // The version that ended last before `at` (where the gap begins), for
    // the message.
    let mut ended: Option<IndexEntry> = None;
    for item in txn.range_rev(
        std::ops::Bound::Included(prefix.as_slice()),
        std::ops::Bound::Included(upper.as_slice()),
    ) {
        let (k, v) = item?;
        let e = decode_entry(&k, &v)?;
        if e.end.is_none_or(|end| at < end) {
            return Ok(Some(e));
        }
        if ended.as_ref().is_none_or(|last| e.end > last.end) {
            ended = Some(e);
        }
    }
    let reason = match ended {
        Some(e) => format!(
            "{at} falls in a gap: version {:?} ended at {}",
            e.version_id,
            e.end.unwrap_or(at)
        ),
        None => match txn.prefix(&prefix, false).next() {
            None => return Ok(None),
            Some(item) => {
                let (k, v) = item?;
                let (_, start) = decode_index_key(&k)?;
                let e = decode_entry(&k, &v)?;
                format!(
                    "{at} is before the first version {:?}, effective from {start}",
                    e.version_id
                )
            }
        },
    };
    Err(Error::NoVersionInForce {
        policy: policy.to_string(),
        reason,
    })
}

/// [`in_force`], with the instant until which the answer holds while the
/// index is unchanged (`None`: for good): the end of the version found, or
/// the next effective start after `at`, whichever comes first. From `at` to
/// then no entry starts, and every entry the scan passed over has ended.
pub(crate) fn in_force_until(
    txn: &ReadTxn,
    policy: &str,
    at: Timestamp,
) -> Result<Option<(IndexEntry, Option<Timestamp>)>> {
    let Some(found) = in_force(txn, policy, at)? else {
        return Ok(None);
    };
    let prefix = index_prefix(policy);
    let upper = last_key_at(&prefix, at);
    let next_start = match txn
        .range(
            std::ops::Bound::Excluded(upper.as_slice()),
            std::ops::Bound::Unbounded,
        )
        .next()
    {
        Some(item) => {
            let (k, _) = item?;
            if k.starts_with(&prefix) {
                Some(decode_index_key(&k)?.1)
            } else {
                None
            }
        }
        None => None,
    };
    let until = match (found.end, next_start) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Some((found, until)))
}

/// Every policy's version in force at `at` that has a stored document, with
/// its statistics, in policy order.
pub(crate) fn all_in_force(txn: &ReadTxn, at: Timestamp) -> Result<Vec<(String, Current)>> {
    let mut out = Vec::new();
    // Within a policy, keys arrive by (start, registration): the last entry
    // covering `at` is the one in force. `None` = in force but no document.
    let mut pending: Option<(String, Option<Current>)> = None;
    for item in txn.prefix(&[schema::SPACE_EFFECTIVE], false) {
        let (k, v) = item?;
        let (policy, start) = decode_index_key(&k)?;
        if pending.as_ref().is_some_and(|(p, _)| *p != policy) {
            if let Some((p, Some(c))) = pending.take() {
                out.push((p, c));
            }
        }
        if start > at {
            continue;
        }
        let e = decode_entry(&k, &v)?;
        if e.end.is_some_and(|end| at >= end) {
            continue;
        }
        let current = e.doc.map(|(node_count, total_len)| Current {
            version_id: e.version_id,
            node_count,
            total_len,
        });
        pending = Some((policy, current));
    }
    if let Some((p, Some(c))) = pending {
        out.push((p, c));
    }
    Ok(out)
}

/// A policy's versions, latest effective start first (same start: registered
/// last first), at most `limit` (0 = all).
pub(crate) fn list(txn: &ReadTxn, policy: &str, limit: usize) -> Result<Vec<PolicyVersion>> {
    let mut out = Vec::new();
    for item in txn.prefix(&index_prefix(policy), true) {
        if limit != 0 && out.len() >= limit {
            break;
        }
        let (k, v) = item?;
        let e = decode_entry(&k, &v)?;
        let rec = get(txn, policy, &e.version_id)?
            .ok_or_else(|| Error::corrupt(&k, "index entry without a version record"))?;
        out.push(rec);
    }
    Ok(out)
}

/// A hash of what a node says (not where or when it was stored), for diffs:
/// parent, title, pages, summary, text, section path, children, keywords and
/// see-also.
pub fn content_hash(n: &Node) -> u64 {
    // FNV-1a over length-prefixed fields: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for &x in (b.len() as u64).to_le_bytes().iter().chain(b) {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(n.parent_id.as_deref().unwrap_or("").as_bytes());
    feed(n.title.as_bytes());
    feed(&n.page_start.to_le_bytes());
    feed(&n.page_end.to_le_bytes());
    feed(n.summary.as_bytes());
    feed(n.text.as_bytes());
    feed(n.section_path.as_bytes());
    for c in &n.child_ids {
        feed(c.as_bytes());
    }
    feed(b"\xff");
    for k in &n.keywords {
        feed(k.as_bytes());
    }
    feed(b"\xff");
    for s in &n.see_also {
        feed(s.as_bytes());
    }
    h
}

/// The diff of two node lists (each in document order).
pub(crate) fn diff(a: &[Node], b: &[Node]) -> VersionDiff {
    let in_a: HashMap<&str, u64> = a
        .iter()
        .map(|n| (n.node_id.as_str(), content_hash(n)))
        .collect();
    let in_b: HashMap<&str, ()> = b.iter().map(|n| (n.node_id.as_str(), ())).collect();
    let mut d = VersionDiff::default();
    for n in b {
        match in_a.get(n.node_id.as_str()) {
            None => d.added.push(n.node_id.clone()),
            Some(&h) if h != content_hash(n) => d.changed.push(n.node_id.clone()),
            Some(_) => {}
        }
    }
    d.removed = a
        .iter()
        .filter(|n| !in_b.contains_key(n.node_id.as_str()))
        .map(|n| n.node_id.clone())
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> Timestamp {
        Timestamp::from_unix_nanos(n)
    }

    #[test]
    fn entries_round_trip() {
        for e in [
            IndexEntry {
                version_id: "v1".into(),
                end: None,
                doc: None,
            },
            IndexEntry {
                version_id: "v\u{e9}".into(),
                end: Some(t(-5)),
                doc: Some((3, 99)),
            },
        ] {
            assert_eq!(decode_entry(b"k", &encode_entry(&e)).unwrap(), e);
        }
        assert!(decode_entry(b"k", b"\x01").is_err());
        let mut v = PolicyVersion::new("p\0", "v", t(-7));
        v.registered_at = t(3);
        assert_eq!(
            decode_index_key(&index_key(&v)).unwrap(),
            ("p\0".into(), t(-7))
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut v = PolicyVersion::new("p", "v", t(10));
        v.effective_end = Some(t(10));
        let e = validate(&v).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "effective_end"),
            "{e}"
        );
        v.effective_end = None;
        v.supersedes = Some("v".into());
        let e = validate(&v).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "supersedes"),
            "{e}"
        );
        v.supersedes = None;
        v.policy_id.clear();
        let e = validate(&v).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "policy_id"),
            "{e}"
        );
    }

    #[test]
    fn document_registration_keeps_explicit_starts() {
        let spec = VersionSpec {
            effective_start: Some(t(100)),
            ..Default::default()
        };
        let v = for_document("p", "v", "doc", None, Some(&spec), t(500));
        assert_eq!((v.effective_start, v.effective_from_store), (t(100), false));
        // Re-stored without a spec: the explicit start stays.
        let again = for_document("p", "v", "doc2", Some(v), None, t(900));
        assert_eq!(again.effective_start, t(100));
        assert_eq!(again.pageindex_doc_id, "doc2");
        // Without any start: effective from each store.
        let first = for_document("p", "w", "", None, None, t(500));
        assert!(first.effective_from_store);
        let second = for_document("p", "w", "", Some(first), None, t(900));
        assert_eq!(second.effective_start, t(900));
    }

    #[test]
    fn diff_reports_added_removed_and_changed() {
        let n = |id: &str, text: &str| {
            let mut n = Node::new(id, None, "t", (1, 1));
            n.text = text.into();
            n
        };
        let a = [n("1", "x"), n("2", "y"), n("3", "z")];
        let mut b3 = n("3", "z");
        b3.updated_at = t(99); // timestamps are not content
        let b = [n("2", "y2"), b3, n("4", "w")];
        let d = diff(&a, &b);
        assert_eq!(d.added, ["4"]);
        assert_eq!(d.removed, ["1"]);
        assert_eq!(d.changed, ["2"]);
    }
}
