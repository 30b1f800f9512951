//! Reasoning trajectories: the ordered steps an agent took on a case (tool,
//! action, observation, thought, nodes visited, confidence), queried by case,
//! with analytics: the most visited nodes of a policy and the mean number of
//! steps per trajectory.
//!
//! Keys: the record under `0x28 (trajectory_id)`; `0x29 (case_id, started_at,
//! trajectory_id)` with the step count as value; `0x2a (policy_id, node_id,
//! trajectory_id)` with the number of visits in that trajectory, so the most
//! visited nodes of a policy are one prefix scan and writers of different
//! trajectories never touch the same key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use treestore_storage::{ReadTxn, WriteTxn};

use crate::error::{Error, Result};
use crate::key::{self, Elem};
use crate::records::{
    self, check_id, check_len, check_list, check_opt_id, MAX_NAME_LEN, MAX_RECORD_LIST,
    MAX_RECORD_TEXT,
};
use crate::schema::{strs, SPACE_TRAJECTORY, SPACE_TRAJECTORY_BY_CASE, SPACE_VISITS};
use crate::time::Timestamp;

/// One step of a trajectory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryStep {
    /// Position in the trajectory; all zero = numbered 1, 2, ... in the given
    /// order. Steps are kept sorted by it; duplicates are rejected.
    pub step_number: u32,
    #[serde(default)]
    pub tool_name: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub observation: String,
    #[serde(default)]
    pub thought: String,
    /// Ids of the nodes the step visited.
    #[serde(default)]
    pub nodes_visited: Vec<String>,
    /// The policy of the visited nodes (empty = the trajectory's).
    #[serde(default)]
    pub policy_id: String,
    #[serde(default)]
    pub version_id: String,
    /// In [0, 1], if known.
    #[serde(default)]
    pub confidence: Option<f64>,
    pub timestamp: Timestamp,
}

/// A reasoning trajectory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// Generated when empty; storing the same id again replaces the record.
    pub trajectory_id: String,
    pub case_id: String,
    /// The policy most steps are about (empty = none).
    #[serde(default)]
    pub policy_id: String,
    pub steps: Vec<TrajectoryStep>,
    /// Defaults to the time of storing.
    pub started_at: Timestamp,
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// In [0, 1], if known.
    #[serde(default)]
    pub final_confidence: Option<f64>,
}

/// A node and how often trajectories visited it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeVisits {
    pub node_id: String,
    pub visits: u64,
}

fn check_confidence(field: &str, c: Option<f64>) -> Result<()> {
    match c {
        Some(c) if !(0.0..=1.0).contains(&c) => Err(Error::invalid(
            field,
            format!("{c} is not a confidence in [0, 1]"),
        )),
        _ => Ok(()),
    }
}

/// Checks a trajectory, numbers and orders its steps and fills its defaults.
pub(crate) fn prepare(mut t: Trajectory) -> Result<Trajectory> {
    t.trajectory_id = records::id_or_new("trajectory_id", &t.trajectory_id)?;
    check_id("case_id", &t.case_id)?;
    check_opt_id("policy_id", &t.policy_id)?;
    check_confidence("final_confidence", t.final_confidence)?;
    if t.steps.len() > MAX_RECORD_LIST {
        return Err(Error::invalid(
            "steps",
            format!("{} steps, at most {MAX_RECORD_LIST} allowed", t.steps.len()),
        ));
    }
    t.started_at = records::or_now(t.started_at);
    super::check_time("started_at", t.started_at)?;
    if let Some(done) = t.completed_at {
        super::check_time("completed_at", done)?;
        if done < t.started_at {
            return Err(Error::invalid(
                "completed_at",
                format!("{done} is before started_at {}", t.started_at),
            ));
        }
    }
    if t.steps.len() > 1 && t.steps.iter().all(|s| s.step_number == 0) {
        for (i, s) in t.steps.iter_mut().enumerate() {
            s.step_number = i as u32 + 1;
        }
    }
    t.steps.sort_by_key(|s| s.step_number);
    for (i, s) in t.steps.iter().enumerate() {
        let f = |name: &str| format!("steps[{i}].{name}");
        if i > 0 && t.steps[i - 1].step_number == s.step_number {
            return Err(Error::invalid(
                f("step_number"),
                format!("step number {} appears twice", s.step_number),
            ));
        }
        check_len(&f("tool_name"), &s.tool_name, MAX_NAME_LEN)?;
        check_len(&f("action"), &s.action, MAX_RECORD_TEXT)?;
        check_len(&f("observation"), &s.observation, MAX_RECORD_TEXT)?;
        check_len(&f("thought"), &s.thought, MAX_RECORD_TEXT)?;
        check_list(
            &f("nodes_visited"),
            &s.nodes_visited,
            crate::model::MAX_ID_LEN,
        )?;
        check_opt_id(&f("policy_id"), &s.policy_id)?;
        check_opt_id(&f("version_id"), &s.version_id)?;
        check_confidence(&f("confidence"), s.confidence)?;
        super::check_time(&f("timestamp"), s.timestamp)?;
        if !s.nodes_visited.is_empty() && s.policy_id.is_empty() && t.policy_id.is_empty() {
            return Err(Error::invalid(
                f("policy_id"),
                "nodes_visited needs the step's or the trajectory's policy_id",
            ));
        }
    }
    Ok(t)
}

fn record_key(id: &str) -> Vec<u8> {
    strs(SPACE_TRAJECTORY, &[id]).finish()
}

fn case_key(t: &Trajectory) -> Vec<u8> {
    strs(SPACE_TRAJECTORY_BY_CASE, &[&t.case_id])
        .i64(t.started_at.unix_nanos())
        .str(&t.trajectory_id)
        .finish()
}

/// Visits per (policy, node) in one trajectory.
fn visits(t: &Trajectory) -> BTreeMap<(&str, &str), u64> {
    let mut out = BTreeMap::new();
    for s in &t.steps {
        let policy = if s.policy_id.is_empty() {
            &t.policy_id
        } else {
            &s.policy_id
        };
        for n in &s.nodes_visited {
            *out.entry((policy.as_str(), n.as_str())).or_insert(0) += 1;
        }
    }
    out
}

fn visit_key(policy: &str, node: &str, trajectory: &str) -> Vec<u8> {
    strs(SPACE_VISITS, &[policy, node, trajectory]).finish()
}

fn index_entries(t: &Trajectory) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = vec![(case_key(t), (t.steps.len() as u64).to_be_bytes().to_vec())];
    for ((p, n), count) in visits(t) {
        out.push((
            visit_key(p, n, &t.trajectory_id),
            count.to_be_bytes().to_vec(),
        ));
    }
    out
}

/// Writes a prepared trajectory (an upsert by id).
pub(crate) fn write(txn: &mut WriteTxn, t: &Trajectory) -> Result<()> {
    records::upsert(txn, &record_key(&t.trajectory_id), t, index_entries)
}

pub(crate) fn get(txn: &ReadTxn, id: &str) -> Result<Option<Trajectory>> {
    records::get(txn, &record_key(id))
}

/// A case's trajectories, most recently started first.
pub(crate) fn by_case(txn: &ReadTxn, case_id: &str, limit: usize) -> Result<Vec<Trajectory>> {
    check_id("case_id", case_id)?;
    let prefix = strs(SPACE_TRAJECTORY_BY_CASE, &[case_id]).finish();
    let ids = records::ids_newest_first(txn, &prefix, records::limit(limit))?;
    records::fetch_all(txn, &ids, record_key)
}

fn count_value(k: &[u8], v: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(
        v.try_into()
            .map_err(|_| Error::corrupt(k, "malformed count"))?,
    ))
}

/// The nodes of a policy visited most often across all trajectories, most
/// visited first (ties by node id), at most `limit`.
pub(crate) fn most_visited(txn: &ReadTxn, policy: &str, limit: usize) -> Result<Vec<NodeVisits>> {
    check_id("policy_id", policy)?;
    let prefix = strs(SPACE_VISITS, &[policy]).finish();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for item in txn.prefix(&prefix, false) {
        let (k, v) = item?;
        let node = match key::decode(&k[1..])
            .map_err(|e| Error::corrupt(&k, e))?
            .as_slice()
        {
            [_, Elem::Bytes(n), _] => {
                String::from_utf8(n.clone()).map_err(|e| Error::corrupt(&k, e))?
            }
            _ => return Err(Error::corrupt(&k, "malformed visit key")),
        };
        *counts.entry(node).or_insert(0) += count_value(&k, &v)?;
    }
    let mut out: Vec<NodeVisits> = counts
        .into_iter()
        .map(|(node_id, visits)| NodeVisits { node_id, visits })
        .collect();
    out.sort_by(|a, b| {
        b.visits
            .cmp(&a.visits)
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    out.truncate(records::limit(limit));
    Ok(out)
}

/// (trajectories, mean steps per trajectory) of one case, or of all.
pub(crate) fn mean_steps(txn: &ReadTxn, case_id: Option<&str>) -> Result<(u64, f64)> {
    let prefix = match case_id {
        Some(c) => {
            check_id("case_id", c)?;
            strs(SPACE_TRAJECTORY_BY_CASE, &[c]).finish()
        }
        None => vec![SPACE_TRAJECTORY_BY_CASE],
    };
    let (mut n, mut steps) = (0u64, 0u64);
    for item in txn.prefix(&prefix, false) {
        let (k, v) = item?;
        n += 1;
        steps += count_value(&k, &v)?;
    }
    Ok((n, if n == 0 { 0.0 } else { steps as f64 / n as f64 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: u32, nodes: &[&str]) -> TrajectoryStep {
        TrajectoryStep {
            step_number: n,
            nodes_visited: nodes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn steps_are_numbered_sorted_and_checked() {
        let t = prepare(Trajectory {
            case_id: "c".into(),
            policy_id: "p".into(),
            steps: vec![step(0, &["a"]), step(0, &["a", "b"])],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            t.steps.iter().map(|s| s.step_number).collect::<Vec<_>>(),
            [1, 2]
        );
        let v = visits(&t);
        assert_eq!(v[&("p", "a")], 2);
        assert_eq!(v[&("p", "b")], 1);
        let t = prepare(Trajectory {
            case_id: "c".into(),
            steps: vec![step(3, &[]), step(1, &[])],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(t.steps[0].step_number, 1);
        let e = prepare(Trajectory {
            case_id: "c".into(),
            steps: vec![step(2, &[]), step(2, &[])],
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "steps[1].step_number"),
            "{e}"
        );
        let e = prepare(Trajectory {
            case_id: "c".into(),
            steps: vec![step(1, &["a"])],
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "steps[0].policy_id"),
            "{e}"
        );
        let e = prepare(Trajectory {
            case_id: "c".into(),
            final_confidence: Some(1.5),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "final_confidence"),
            "{e}"
        );
    }
}
