//! Cross-references between sections: source (policy, node) to target
//! (policy, node) with a type (cites, supports, contradicts, see-also, ...)
//! and context text. Both directions are indexed, so a node's outgoing and
//! incoming references are each one prefix scan, optionally of one type.
//!
//! Keys: the record under `0x30 (reference_id)`; `0x31 (source policy,
//! source node, type, reference_id)` and `0x32 (target policy, target node,
//! type, reference_id)`, empty values.

use serde::{Deserialize, Serialize};
use treestore_storage::{ReadTxn, WriteTxn};

use crate::error::Result;
use crate::records::{self, check_id, check_len, check_opt_id, MAX_NAME_LEN, MAX_RECORD_TEXT};
use crate::schema::{strs, SPACE_XREF, SPACE_XREF_IN, SPACE_XREF_OUT};
use crate::time::Timestamp;

/// A reference from one section to another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossReference {
    /// Generated when empty; storing the same id again replaces the record.
    pub reference_id: String,
    pub source_policy_id: String,
    /// Empty = any version.
    #[serde(default)]
    pub source_version_id: String,
    pub source_node_id: String,
    pub target_policy_id: String,
    #[serde(default)]
    pub target_version_id: String,
    pub target_node_id: String,
    /// Free-form type: cites, supports, contradicts, see-also, ...
    #[serde(default)]
    pub reference_type: String,
    #[serde(default)]
    pub context: String,
    /// Defaults to the time of storing.
    pub created_at: Timestamp,
}

/// Which references of a node to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Outgoing, then incoming.
    #[default]
    Both,
    /// The node is the source.
    Outgoing,
    /// The node is the target.
    Incoming,
}

pub(crate) fn prepare(mut r: CrossReference) -> Result<CrossReference> {
    r.reference_id = records::id_or_new("reference_id", &r.reference_id)?;
    check_id("source_policy_id", &r.source_policy_id)?;
    check_id("source_node_id", &r.source_node_id)?;
    check_id("target_policy_id", &r.target_policy_id)?;
    check_id("target_node_id", &r.target_node_id)?;
    check_opt_id("source_version_id", &r.source_version_id)?;
    check_opt_id("target_version_id", &r.target_version_id)?;
    check_len("reference_type", &r.reference_type, MAX_NAME_LEN)?;
    check_len("context", &r.context, MAX_RECORD_TEXT)?;
    r.created_at = records::or_now(r.created_at);
    super::check_time("created_at", r.created_at)?;
    Ok(r)
}

fn record_key(id: &str) -> Vec<u8> {
    strs(SPACE_XREF, &[id]).finish()
}

fn index_keys(r: &CrossReference) -> [Vec<u8>; 2] {
    [
        strs(
            SPACE_XREF_OUT,
            &[
                &r.source_policy_id,
                &r.source_node_id,
                &r.reference_type,
                &r.reference_id,
            ],
        )
        .finish(),
        strs(
            SPACE_XREF_IN,
            &[
                &r.target_policy_id,
                &r.target_node_id,
                &r.reference_type,
                &r.reference_id,
            ],
        )
        .finish(),
    ]
}

/// Writes a prepared reference (an upsert by id).
pub(crate) fn write(txn: &mut WriteTxn, r: &CrossReference) -> Result<()> {
    records::upsert(txn, &record_key(&r.reference_id), r, |r| {
        index_keys(r).into_iter().map(|k| (k, Vec::new())).collect()
    })
}

/// A node's references in `direction`, optionally only of one type and
/// touching one version of the node (references with no version match any).
/// Within a direction: by type, then by id (creation order for generated ids).
pub(crate) fn query(
    txn: &ReadTxn,
    policy: &str,
    node: &str,
    version: Option<&str>,
    direction: Direction,
    reference_type: Option<&str>,
) -> Result<Vec<CrossReference>> {
    check_id("policy_id", policy)?;
    check_id("node_id", node)?;
    let spaces: &[u8] = match direction {
        Direction::Both => &[SPACE_XREF_OUT, SPACE_XREF_IN],
        Direction::Outgoing => &[SPACE_XREF_OUT],
        Direction::Incoming => &[SPACE_XREF_IN],
    };
    let mut out: Vec<CrossReference> = Vec::new();
    for &space in spaces {
        let prefix = match reference_type {
            Some(t) => strs(space, &[policy, node, t]).finish(),
            None => strs(space, &[policy, node]).finish(),
        };
        for item in txn.prefix(&prefix, false) {
            let (k, _) = item?;
            let id = records::last_str(&k)?;
            if out.iter().any(|r| r.reference_id == id) {
                continue; // a self-reference, already listed as outgoing
            }
            let r: CrossReference = records::get(txn, &record_key(&id))?
                .ok_or_else(|| crate::error::Error::corrupt(&k, "index entry without a record"))?;
            let v = if space == SPACE_XREF_OUT {
                &r.source_version_id
            } else {
                &r.target_version_id
            };
            if version.is_none_or(|want| v.is_empty() || v == want) {
                out.push(r);
            }
        }
    }
    Ok(out)
}
