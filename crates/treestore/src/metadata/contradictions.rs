//! Contradictions an agent found between two pieces of evidence, with
//! severity and resolution, queried by case, by criterion, or all unresolved;
//! one can be resolved (or dismissed, or reopened).
//!
//! Keys: the record under `0x38 (contradiction_id)`; `0x39 (case_id,
//! detected_at, id)`, `0x3a (criterion_id, detected_at, id)` and, only while
//! unresolved, `0x3b (detected_at, id)`; empty values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use treestore_storage::{ReadTxn, WriteTxn};

use crate::error::{Error, Result};
use crate::records::{self, check_id, check_len, check_opt_id, MAX_NAME_LEN, MAX_RECORD_TEXT};
use crate::schema::{
    strs, SPACE_CONTRADICTION, SPACE_CONTRADICTION_BY_CASE, SPACE_CONTRADICTION_BY_CRITERION,
    SPACE_CONTRADICTION_UNRESOLVED,
};
use crate::time::Timestamp;

/// How serious a contradiction is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
}

/// Where a contradiction stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    #[default]
    Unresolved,
    Resolved,
    /// Judged not to be a real contradiction.
    Dismissed,
}

macro_rules! lowercase_enum {
    ($t:ty, $field:literal, $($v:ident => $s:literal),+) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(match self { $(Self::$v => $s),+ })
            }
        }
        impl FromStr for $t {
            type Err = Error;
            /// Case-insensitive.
            fn from_str(s: &str) -> Result<Self> {
                $(if s.eq_ignore_ascii_case($s) { return Ok(Self::$v); })+
                Err(Error::invalid(
                    $field,
                    format!("unknown value {s:?}; expected one of {}", [$($s),+].join(", ")),
                ))
            }
        }
    };
}

lowercase_enum!(Severity, "severity", Low => "low", Medium => "medium", High => "high");
lowercase_enum!(Resolution, "resolution_status",
    Unresolved => "unresolved", Resolved => "resolved", Dismissed => "dismissed");

/// One side of a contradiction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub policy_id: String,
    #[serde(default)]
    pub version_id: String,
    pub node_id: String,
    #[serde(default)]
    pub excerpt: String,
    /// What this evidence says about the criterion (e.g. "supports", "denies").
    #[serde(default)]
    pub stance: String,
}

/// A contradiction between two pieces of evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contradiction {
    /// Generated when empty; storing the same id again replaces the record.
    pub contradiction_id: String,
    #[serde(default)]
    pub case_id: String,
    #[serde(default)]
    pub criterion_id: String,
    pub evidence_a: Evidence,
    pub evidence_b: Evidence,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    pub resolution: Resolution,
    #[serde(default)]
    pub resolution_note: String,
    /// Defaults to the time of storing.
    pub detected_at: Timestamp,
    /// Set when resolved or dismissed.
    #[serde(default)]
    pub resolved_at: Option<Timestamp>,
}

fn check_evidence(side: &str, e: &Evidence) -> Result<()> {
    check_id(&format!("{side}.policy_id"), &e.policy_id)?;
    check_id(&format!("{side}.node_id"), &e.node_id)?;
    check_opt_id(&format!("{side}.version_id"), &e.version_id)?;
    check_len(&format!("{side}.excerpt"), &e.excerpt, MAX_RECORD_TEXT)?;
    check_len(&format!("{side}.stance"), &e.stance, MAX_NAME_LEN)
}

pub(crate) fn prepare(mut c: Contradiction) -> Result<Contradiction> {
    c.contradiction_id = records::id_or_new("contradiction_id", &c.contradiction_id)?;
    check_opt_id("case_id", &c.case_id)?;
    check_opt_id("criterion_id", &c.criterion_id)?;
    check_evidence("evidence_a", &c.evidence_a)?;
    check_evidence("evidence_b", &c.evidence_b)?;
    check_len("description", &c.description, MAX_RECORD_TEXT)?;
    check_len("resolution_note", &c.resolution_note, MAX_RECORD_TEXT)?;
    c.detected_at = records::or_now(c.detected_at);
    super::check_time("detected_at", c.detected_at)?;
    if let Some(t) = c.resolved_at {
        super::check_time("resolved_at", t)?;
    }
    match c.resolution {
        Resolution::Unresolved => c.resolved_at = None,
        _ => c.resolved_at = Some(c.resolved_at.unwrap_or_else(Timestamp::now)),
    }
    Ok(c)
}

fn record_key(id: &str) -> Vec<u8> {
    strs(SPACE_CONTRADICTION, &[id]).finish()
}

fn index_keys(c: &Contradiction) -> Vec<Vec<u8>> {
    let at = c.detected_at.unix_nanos();
    let id = c.contradiction_id.as_str();
    let mut out = Vec::new();
    if !c.case_id.is_empty() {
        out.push(
            strs(SPACE_CONTRADICTION_BY_CASE, &[&c.case_id])
                .i64(at)
                .str(id)
                .finish(),
        );
    }
    if !c.criterion_id.is_empty() {
        out.push(
            strs(SPACE_CONTRADICTION_BY_CRITERION, &[&c.criterion_id])
                .i64(at)
                .str(id)
                .finish(),
        );
    }
    if c.resolution == Resolution::Unresolved {
        out.push(
            strs(SPACE_CONTRADICTION_UNRESOLVED, &[])
                .i64(at)
                .str(id)
                .finish(),
        );
    }
    out
}

/// Writes a prepared contradiction (an upsert by id).
pub(crate) fn write(txn: &mut WriteTxn, c: &Contradiction) -> Result<()> {
    records::upsert(txn, &record_key(&c.contradiction_id), c, |c| {
        index_keys(c).into_iter().map(|k| (k, Vec::new())).collect()
    })
}

pub(crate) fn get(txn: &ReadTxn, id: &str) -> Result<Option<Contradiction>> {
    records::get(txn, &record_key(id))
}

/// Sets a contradiction's resolution in `txn`; the updated record.
pub(crate) fn resolve(
    txn: &mut WriteTxn,
    id: &str,
    resolution: Resolution,
    note: &str,
    at: Timestamp,
) -> Result<Contradiction> {
    check_id("contradiction_id", id)?;
    check_len("resolution_note", note, MAX_RECORD_TEXT)?;
    let mut c: Contradiction = records::get_in(txn, &record_key(id))?
        .ok_or_else(|| Error::not_found("contradiction", id))?;
    c.resolution = resolution;
    c.resolution_note = note.to_string();
    c.resolved_at = (resolution != Resolution::Unresolved).then_some(at);
    write(txn, &c)?;
    Ok(c)
}

/// Which contradictions a query returns (newest detected first).
#[derive(Debug, Clone, Copy, Default)]
pub enum ContradictionQuery<'a> {
    Case(&'a str),
    Criterion(&'a str),
    /// A case's contradictions on one criterion.
    CaseAndCriterion {
        case: &'a str,
        criterion: &'a str,
    },
    /// Every unresolved one.
    #[default]
    Unresolved,
}

pub(crate) fn query(
    txn: &ReadTxn,
    q: ContradictionQuery,
    unresolved_only: bool,
    limit: usize,
) -> Result<Vec<Contradiction>> {
    // Besides unresolved_only, the criterion a case query must match.
    let mut criterion = None;
    let prefix = match q {
        ContradictionQuery::Case(c) => {
            check_id("case_id", c)?;
            strs(SPACE_CONTRADICTION_BY_CASE, &[c]).finish()
        }
        ContradictionQuery::CaseAndCriterion { case, criterion: c } => {
            check_id("case_id", case)?;
            check_id("criterion_id", c)?;
            criterion = Some(c);
            strs(SPACE_CONTRADICTION_BY_CASE, &[case]).finish()
        }
        ContradictionQuery::Criterion(c) => {
            check_id("criterion_id", c)?;
            strs(SPACE_CONTRADICTION_BY_CRITERION, &[c]).finish()
        }
        ContradictionQuery::Unresolved => vec![SPACE_CONTRADICTION_UNRESOLVED],
    };
    let limit = records::limit(limit);
    // Filtered while scanning: the first `limit` that match.
    records::newest_matching(txn, &prefix, limit, record_key, |c: &Contradiction| {
        (!unresolved_only || c.resolution == Resolution::Unresolved)
            && criterion.is_none_or(|want| c.criterion_id == want)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_parse_case_insensitively_and_reject_unknowns() {
        assert_eq!("HIGH".parse::<Severity>().unwrap(), Severity::High);
        assert_eq!(Severity::Low.to_string(), "low");
        let e = "urgent".parse::<Severity>().unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "severity"),
            "{e}"
        );
        assert_eq!(
            "dismissed".parse::<Resolution>().unwrap(),
            Resolution::Dismissed
        );
    }

    #[test]
    fn evidence_needs_ids() {
        let e = prepare(Contradiction {
            evidence_a: Evidence {
                policy_id: "p".into(),
                node_id: "n".into(),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "evidence_b.policy_id"),
            "{e}"
        );
    }
}
