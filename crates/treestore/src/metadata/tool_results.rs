//! Tool results: what each tool call of an agent returned, queried by case, by
//! tool or by policy (newest first), with per-tool aggregates over a time
//! window (count, success rate, latency p50 and p95).
//!
//! Keys: the record under `0x20 (execution_id)`; index entries
//! `(case_id | tool_name | policy_id, executed_at, execution_id)` whose value is
//! the execution id (the tool index adds success and latency, so aggregates
//! read only the index).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use treestore_storage::{ReadTxn, WriteTxn};

use crate::error::{Error, Result};
use crate::key::{self, Elem, KeyBuilder};
use crate::records::{
    self, check_id, check_json, check_len, check_non_negative, check_opt_id, MAX_RECORD_TEXT,
};
use crate::schema::{
    strs, SPACE_TOOL_BY_CASE, SPACE_TOOL_BY_POLICY, SPACE_TOOL_BY_TOOL, SPACE_TOOL_RESULT,
};
use crate::time::Timestamp;

/// One tool call's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// Generated when empty; storing the same id again replaces the record.
    pub execution_id: String,
    /// The decision case it belongs to (empty = none).
    #[serde(default)]
    pub case_id: String,
    pub tool_name: String,
    #[serde(default)]
    pub policy_id: String,
    #[serde(default)]
    pub version_id: String,
    #[serde(default)]
    pub node_id: String,
    /// The tool's input, JSON text (empty = none).
    #[serde(default)]
    pub input: String,
    /// The tool's output, JSON text (empty = none).
    #[serde(default)]
    pub output: String,
    pub success: bool,
    #[serde(default)]
    pub error_message: String,
    #[serde(default)]
    pub latency_ms: f64,
    /// Defaults to the time of storing.
    pub executed_at: Timestamp,
}

/// Which tool results a query returns; at least one of case, tool and policy.
#[derive(Debug, Clone, Default)]
pub struct ToolResultQuery<'a> {
    pub case_id: Option<&'a str>,
    pub tool_name: Option<&'a str>,
    pub policy_id: Option<&'a str>,
    /// Executed at or after (inclusive).
    pub since: Option<Timestamp>,
    /// Executed before (exclusive).
    pub until: Option<Timestamp>,
    /// 0 = the default limit.
    pub limit: usize,
}

/// Aggregates of one tool's results in a time window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStats {
    pub tool_name: String,
    pub count: u64,
    pub successes: u64,
    /// successes / count.
    pub success_rate: f64,
    /// Nearest-rank percentiles of latency_ms.
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
}

/// Checks a result and fills its defaults (id, time); done once, before the
/// transaction and its retries.
pub(crate) fn prepare(mut r: ToolResult) -> Result<ToolResult> {
    r.execution_id = records::id_or_new("execution_id", &r.execution_id)?;
    check_id("tool_name", &r.tool_name)?;
    check_opt_id("case_id", &r.case_id)?;
    check_opt_id("policy_id", &r.policy_id)?;
    check_opt_id("version_id", &r.version_id)?;
    check_opt_id("node_id", &r.node_id)?;
    if r.policy_id.is_empty() && !(r.version_id.is_empty() && r.node_id.is_empty()) {
        return Err(Error::invalid(
            "policy_id",
            "required when version_id or node_id is given",
        ));
    }
    check_json("input", &r.input)?;
    check_json("output", &r.output)?;
    check_len("error_message", &r.error_message, MAX_RECORD_TEXT)?;
    check_non_negative("latency_ms", r.latency_ms)?;
    r.executed_at = records::or_now(r.executed_at);
    super::check_time("executed_at", r.executed_at)?;
    Ok(r)
}

fn record_key(id: &str) -> Vec<u8> {
    strs(SPACE_TOOL_RESULT, &[id]).finish()
}

fn index_key(space: u8, by: &str, r: &ToolResult) -> Vec<u8> {
    strs(space, &[by])
        .i64(r.executed_at.unix_nanos())
        .str(&r.execution_id)
        .finish()
}

fn index_entries(r: &ToolResult) -> Vec<(Vec<u8>, Vec<u8>)> {
    let id = r.execution_id.as_bytes().to_vec();
    let mut stat = vec![u8::from(r.success)];
    stat.extend_from_slice(&r.latency_ms.to_bits().to_be_bytes());
    let mut out = vec![(index_key(SPACE_TOOL_BY_TOOL, &r.tool_name, r), stat)];
    if !r.case_id.is_empty() {
        out.push((index_key(SPACE_TOOL_BY_CASE, &r.case_id, r), id.clone()));
    }
    if !r.policy_id.is_empty() {
        out.push((index_key(SPACE_TOOL_BY_POLICY, &r.policy_id, r), id));
    }
    out
}

/// Writes a prepared result (an upsert by execution id).
pub(crate) fn write(txn: &mut WriteTxn, r: &ToolResult) -> Result<()> {
    records::upsert(txn, &record_key(&r.execution_id), r, index_entries)
}

/// One result by id.
pub(crate) fn get(txn: &ReadTxn, id: &str) -> Result<Option<ToolResult>> {
    records::get(txn, &record_key(id))
}

/// The key range of an index prefix limited to a time window.
fn window(
    prefix: Vec<u8>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> (Vec<u8>, Vec<u8>) {
    let lower = match since {
        Some(s) => KeyBuilder::from(prefix.clone())
            .i64(s.unix_nanos())
            .finish(),
        None => prefix.clone(),
    };
    let upper = match until {
        Some(u) => KeyBuilder::from(prefix).i64(u.unix_nanos()).finish(),
        None => {
            let mut p = prefix;
            p.push(0xff);
            p
        }
    };
    (lower, upper)
}

/// Results matching `q`, newest first.
pub(crate) fn query(txn: &ReadTxn, q: &ToolResultQuery) -> Result<Vec<ToolResult>> {
    for (field, v) in [
        ("case_id", q.case_id),
        ("tool_name", q.tool_name),
        ("policy_id", q.policy_id),
    ] {
        if let Some(v) = v {
            check_id(field, v)?;
        }
    }
    // The most selective index: case, then policy, then tool.
    let prefix = match (q.case_id, q.policy_id, q.tool_name) {
        (Some(c), _, _) => strs(SPACE_TOOL_BY_CASE, &[c]).finish(),
        (None, Some(p), _) => strs(SPACE_TOOL_BY_POLICY, &[p]).finish(),
        (None, None, Some(t)) => strs(SPACE_TOOL_BY_TOOL, &[t]).finish(),
        (None, None, None) => {
            return Err(Error::invalid(
                "case_id",
                "give at least one of case_id, tool_name and policy_id",
            ))
        }
    };
    let limit = records::limit(q.limit);
    let (lower, upper) = window(prefix, q.since, q.until);
    let mut out = Vec::new();
    for item in txn.range_rev(
        std::ops::Bound::Included(lower.as_slice()),
        std::ops::Bound::Excluded(upper.as_slice()),
    ) {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item?;
        let id = id_of_index_key(&k)?;
        let r = get(txn, &id)?.ok_or_else(|| Error::corrupt(&k, "index entry without a record"))?;
        if q.tool_name.is_none_or(|t| r.tool_name == t)
            && q.policy_id.is_none_or(|p| r.policy_id == p)
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// The (by, executed_at, id) of an index key.
fn decode_index_key(key: &[u8]) -> Result<(String, Timestamp, String)> {
    let s = |b: &Vec<u8>| String::from_utf8(b.clone()).map_err(|e| Error::corrupt(key, e));
    match key::decode(&key[1..])
        .map_err(|e| Error::corrupt(key, e))?
        .as_slice()
    {
        [Elem::Bytes(by), Elem::I64(t), Elem::Bytes(id)] => {
            Ok((s(by)?, Timestamp::from_unix_nanos(*t), s(id)?))
        }
        _ => Err(Error::corrupt(key, "malformed tool-result index key")),
    }
}

fn id_of_index_key(key: &[u8]) -> Result<String> {
    Ok(decode_index_key(key)?.2)
}

/// Per-tool aggregates of results executed in `[since, until)`, by tool name.
pub(crate) fn stats(
    txn: &ReadTxn,
    tool: Option<&str>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<Vec<ToolStats>> {
    let mut by_tool: BTreeMap<String, (u64, Vec<f64>)> = BTreeMap::new();
    let mut add = |k: &[u8], v: &[u8]| -> Result<()> {
        let (name, at, _) = decode_index_key(k)?;
        if !records::in_window(at, since, until) {
            return Ok(());
        }
        let (&ok, lat) = v
            .split_first()
            .filter(|(_, l)| l.len() == 8)
            .ok_or_else(|| Error::corrupt(k, "malformed tool index value"))?;
        let latency = f64::from_bits(u64::from_be_bytes(lat.try_into().unwrap_or([0; 8])));
        let e = by_tool.entry(name).or_default();
        e.0 += u64::from(ok != 0);
        e.1.push(latency);
        Ok(())
    };
    match tool {
        Some(t) => {
            check_id("tool_name", t)?;
            let (lower, upper) = window(strs(SPACE_TOOL_BY_TOOL, &[t]).finish(), since, until);
            for item in txn.range(
                std::ops::Bound::Included(lower.as_slice()),
                std::ops::Bound::Excluded(upper.as_slice()),
            ) {
                let (k, v) = item?;
                add(&k, &v)?;
            }
        }
        None => {
            for item in txn.prefix(&[SPACE_TOOL_BY_TOOL], false) {
                let (k, v) = item?;
                add(&k, &v)?;
            }
        }
    }
    Ok(by_tool
        .into_iter()
        .map(|(tool_name, (successes, mut lat))| {
            lat.sort_by(f64::total_cmp);
            let count = lat.len() as u64;
            ToolStats {
                tool_name,
                count,
                successes,
                success_rate: successes as f64 / count as f64,
                latency_p50_ms: nearest_rank(&lat, 50),
                latency_p95_ms: nearest_rank(&lat, 95),
            }
        })
        .collect())
}

/// The nearest-rank percentile of sorted, non-empty values: the smallest
/// value with at least `p`% of the values at or below it.
pub fn nearest_rank(sorted: &[f64], p: u32) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let rank = (u64::from(p) * n as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), 10.0);
        assert_eq!(nearest_rank(&v, 95), 19.0);
        assert_eq!(nearest_rank(&[7.0], 95), 7.0);
        assert_eq!(nearest_rank(&[1.0, 2.0], 50), 1.0);
        assert_eq!(nearest_rank(&[], 50), 0.0);
    }

    #[test]
    fn prepare_checks_and_fills() {
        let r = prepare(ToolResult {
            tool_name: "lookup".into(),
            output: "{\"ok\":true}".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(crate::ids::is_generated(&r.execution_id));
        assert!(r.executed_at > Timestamp::EPOCH);
        let bad = ToolResult {
            tool_name: "lookup".into(),
            output: "{oops".into(),
            ..Default::default()
        };
        let e = prepare(bad).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "output"),
            "{e}"
        );
        let e = prepare(ToolResult::default()).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "tool_name"),
            "{e}"
        );
        let e = prepare(ToolResult {
            tool_name: "t".into(),
            latency_ms: -3.0,
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "latency_ms"),
            "{e}"
        );
    }
}
