//! Wire messages to and from the store's model. Incoming values are checked
//! here only for what the wire can express and the model cannot (negative
//! page numbers, bad timestamps, enum strings); everything else is validated
//! by the store, which names the field.

use std::collections::BTreeMap;

use tonic::Status;
use treestore::metadata::{
    Contradiction, CrossReference, Evidence, Resolution, Severity, ToolResult, Trajectory,
    TrajectoryStep,
};
use treestore::prompts::{PromptTemplate, PromptUsage};
use treestore::{Document, Node, PolicyVersion, Timestamp, VersionSpec};

use crate::pb;
use crate::status::invalid;

/// A wire timestamp of a time the store always sets.
pub fn ts(t: Timestamp) -> Option<prost_types::Timestamp> {
    let (seconds, nanos) = t.unix_parts();
    Some(prost_types::Timestamp {
        seconds,
        nanos: nanos as i32,
    })
}

/// A wire timestamp of an optional time (unset = `None`).
pub fn opt_ts(t: Option<Timestamp>) -> Option<prost_types::Timestamp> {
    t.and_then(ts)
}

/// An incoming timestamp: unset = `None`; nanos outside 0..1e9 or an
/// instant outside the store's range ([`Timestamp::MIN`] to
/// [`Timestamp::MAX`], 1677-09-22 to 2262-04-11) = INVALID_ARGUMENT naming
/// `field`.
pub fn from_ts(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<Timestamp>, Status> {
    match t {
        None => Ok(None),
        Some(t) => u32::try_from(t.nanos)
            .ok()
            .and_then(|n| Timestamp::from_unix_parts(t.seconds, n))
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    field,
                    format!(
                        "timestamp ({} s, {} ns) out of range; instants from {} to {} are supported",
                        t.seconds,
                        t.nanos,
                        Timestamp::MIN,
                        Timestamp::MAX
                    ),
                )
            }),
    }
}

/// An incoming timestamp the store defaults when unset (the epoch).
fn from_ts_or_unset(field: &str, t: Option<&prost_types::Timestamp>) -> Result<Timestamp, Status> {
    Ok(from_ts(field, t)?.unwrap_or(Timestamp::EPOCH))
}

fn page(field: &str, v: i32) -> Result<u32, Status> {
    u32::try_from(v).map_err(|_| invalid(field, format!("{v} is negative")))
}

/// A wire node of the document (policy, version).
pub fn node_to_pb(n: Node, policy: &str, version: &str) -> pb::Node {
    pb::Node {
        node_id: n.node_id,
        policy_id: policy.to_string(),
        parent_id: n.parent_id.unwrap_or_default(),
        title: n.title,
        page_start: i32::try_from(n.page_start).unwrap_or(i32::MAX),
        page_end: i32::try_from(n.page_end).unwrap_or(i32::MAX),
        summary: n.summary,
        text: n.text,
        section_path: n.section_path,
        child_ids: n.child_ids,
        depth: i32::try_from(n.depth).unwrap_or(i32::MAX),
        created_at: ts(n.created_at),
        updated_at: ts(n.updated_at),
        keywords: n.keywords,
        see_also: n.see_also,
        version_id: version.to_string(),
    }
}

pub fn nodes_to_pb(nodes: Vec<Node>, policy: &str, version: &str) -> Vec<pb::Node> {
    nodes
        .into_iter()
        .map(|n| node_to_pb(n, policy, version))
        .collect()
}

/// An incoming node of the document (policy, version); `at` names it in
/// errors (`nodes[3]`).
pub fn node_from_pb(n: pb::Node, at: &str, policy: &str, version: &str) -> Result<Node, Status> {
    if !n.policy_id.is_empty() && n.policy_id != policy {
        return Err(invalid(
            &format!("{at}.policy_id"),
            format!("{:?} differs from the document's {policy:?}", n.policy_id),
        ));
    }
    if !n.version_id.is_empty() && n.version_id != version {
        return Err(invalid(
            &format!("{at}.version_id"),
            format!("{:?} differs from the document's {version:?}", n.version_id),
        ));
    }
    Ok(Node {
        page_start: page(&format!("{at}.page_start"), n.page_start)?,
        page_end: page(&format!("{at}.page_end"), n.page_end)?,
        created_at: from_ts_or_unset(&format!("{at}.created_at"), n.created_at.as_ref())?,
        updated_at: from_ts_or_unset(&format!("{at}.updated_at"), n.updated_at.as_ref())?,
        node_id: n.node_id,
        parent_id: (!n.parent_id.is_empty()).then_some(n.parent_id),
        title: n.title,
        summary: n.summary,
        text: n.text,
        section_path: n.section_path,
        child_ids: n.child_ids,
        depth: 0,
        keywords: n.keywords,
        see_also: n.see_also,
    })
}

pub fn nodes_from_pb(
    nodes: Vec<pb::Node>,
    policy: &str,
    version: &str,
) -> Result<Vec<Node>, Status> {
    nodes
        .into_iter()
        .enumerate()
        .map(|(i, n)| node_from_pb(n, &format!("nodes[{i}]"), policy, version))
        .collect()
}

pub fn document_to_pb(d: Document) -> pb::Document {
    pb::Document {
        policy_id: d.policy_id,
        version_id: d.version_id,
        pageindex_doc_id: d.pageindex_doc_id,
        root_node_id: d.root_node_id.unwrap_or_default(),
        metadata: d.metadata.into_iter().collect(),
        created_at: ts(d.created_at),
        updated_at: ts(d.updated_at),
    }
}

/// The metadata key baseline clients use to give a version's effective date.
pub const EFFECTIVE_DATE_KEY: &str = "effective_date";

/// A StoreDocument request as the store's document, nodes and version spec.
pub fn store_request(
    r: pb::StoreDocumentRequest,
) -> Result<(Document, Vec<Node>, Option<VersionSpec>), Status> {
    let d = r
        .document
        .ok_or_else(|| invalid("document", "must be set"))?;
    let mut start = from_ts("effective_start", r.effective_start.as_ref())?;
    if start.is_none() {
        if let Some(date) = d.metadata.get(EFFECTIVE_DATE_KEY).filter(|s| !s.is_empty()) {
            start = Some(
                Timestamp::parse(date)
                    .map_err(|e| invalid(&format!("document.metadata.{EFFECTIVE_DATE_KEY}"), e))?,
            );
        }
    }
    let doc = Document {
        created_at: from_ts_or_unset("document.created_at", d.created_at.as_ref())?,
        updated_at: Timestamp::EPOCH,
        root_node_id: (!d.root_node_id.is_empty()).then_some(d.root_node_id),
        metadata: d.metadata.into_iter().collect::<BTreeMap<_, _>>(),
        policy_id: d.policy_id,
        version_id: d.version_id,
        pageindex_doc_id: d.pageindex_doc_id,
    };
    let nodes = nodes_from_pb(r.nodes, &doc.policy_id, &doc.version_id)?;
    // Without dates or lineage, an earlier registration's details stay.
    let spec = (start.is_some() || !r.supersedes_version_id.is_empty()).then(|| VersionSpec {
        effective_start: start,
        supersedes: (!r.supersedes_version_id.is_empty()).then_some(r.supersedes_version_id),
        ..Default::default()
    });
    Ok((doc, nodes, spec))
}

pub fn version_to_pb(v: PolicyVersion) -> pb::PolicyVersion {
    pb::PolicyVersion {
        policy_id: v.policy_id,
        version_id: v.version_id,
        document_id: v.pageindex_doc_id,
        created_at: ts(v.registered_at),
        created_by: v.created_by,
        description: v.description,
        tags: v.tags,
        effective_start: ts(v.effective_start),
        effective_end: opt_ts(v.effective_end),
        supersedes_version_id: v.supersedes.unwrap_or_default(),
    }
}

pub fn version_from_pb(v: pb::PolicyVersion, at: &str) -> Result<PolicyVersion, Status> {
    let start = from_ts(&format!("{at}.effective_start"), v.effective_start.as_ref())?
        // Unset: in force from now (the time it is registered).
        .unwrap_or_else(Timestamp::now);
    let mut out = PolicyVersion::new(v.policy_id, v.version_id, start);
    out.effective_end = from_ts(&format!("{at}.effective_end"), v.effective_end.as_ref())?;
    out.supersedes = (!v.supersedes_version_id.is_empty()).then_some(v.supersedes_version_id);
    out.pageindex_doc_id = v.document_id;
    out.created_by = v.created_by;
    out.description = v.description;
    out.tags = v.tags;
    Ok(out)
}

pub fn tool_result_to_pb(r: ToolResult) -> pb::ToolResult {
    pb::ToolResult {
        tool_name: r.tool_name,
        execution_id: r.execution_id,
        policy_id: r.policy_id,
        node_id: r.node_id,
        result_data: r.output,
        success: r.success,
        error_message: r.error_message,
        executed_at: ts(r.executed_at),
        case_id: r.case_id,
        version_id: r.version_id,
        input: r.input,
        latency_ms: r.latency_ms,
    }
}

pub fn tool_result_from_pb(r: pb::ToolResult, at: &str) -> Result<ToolResult, Status> {
    Ok(ToolResult {
        executed_at: from_ts_or_unset(&format!("{at}.executed_at"), r.executed_at.as_ref())?,
        execution_id: r.execution_id,
        case_id: r.case_id,
        tool_name: r.tool_name,
        policy_id: r.policy_id,
        version_id: r.version_id,
        node_id: r.node_id,
        input: r.input,
        output: r.result_data,
        success: r.success,
        error_message: r.error_message,
        latency_ms: r.latency_ms,
    })
}

pub fn trajectory_to_pb(t: Trajectory) -> pb::Trajectory {
    pb::Trajectory {
        trajectory_id: t.trajectory_id,
        case_id: t.case_id,
        steps: t
            .steps
            .into_iter()
            .map(|s| pb::TrajectoryStep {
                step_number: i32::try_from(s.step_number).unwrap_or(i32::MAX),
                tool_name: s.tool_name,
                action: s.action,
                observation: s.observation,
                thought: s.thought,
                timestamp: ts(s.timestamp),
                nodes_visited: s.nodes_visited,
                confidence: s.confidence,
                policy_id: s.policy_id,
                version_id: s.version_id,
            })
            .collect(),
        started_at: ts(t.started_at),
        completed_at: opt_ts(t.completed_at),
        final_confidence: t.final_confidence,
        policy_id: t.policy_id,
    }
}

pub fn trajectory_from_pb(t: pb::Trajectory, at: &str) -> Result<Trajectory, Status> {
    let steps = t
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let f = |name: &str| format!("{at}.steps[{i}].{name}");
            Ok(TrajectoryStep {
                step_number: u32::try_from(s.step_number)
                    .map_err(|_| invalid(&f("step_number"), "negative"))?,
                timestamp: from_ts_or_unset(&f("timestamp"), s.timestamp.as_ref())?,
                tool_name: s.tool_name,
                action: s.action,
                observation: s.observation,
                thought: s.thought,
                nodes_visited: s.nodes_visited,
                policy_id: s.policy_id,
                version_id: s.version_id,
                confidence: s.confidence,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(Trajectory {
        trajectory_id: t.trajectory_id,
        case_id: t.case_id,
        policy_id: t.policy_id,
        steps,
        started_at: from_ts_or_unset(&format!("{at}.started_at"), t.started_at.as_ref())?,
        completed_at: from_ts(&format!("{at}.completed_at"), t.completed_at.as_ref())?,
        final_confidence: t.final_confidence,
    })
}

pub fn cross_ref_to_pb(r: CrossReference) -> pb::CrossReference {
    pb::CrossReference {
        source_policy_id: r.source_policy_id,
        source_node_id: r.source_node_id,
        target_policy_id: r.target_policy_id,
        target_node_id: r.target_node_id,
        reference_type: r.reference_type,
        context: r.context,
        created_at: ts(r.created_at),
        source_version_id: r.source_version_id,
        target_version_id: r.target_version_id,
        reference_id: r.reference_id,
    }
}

pub fn cross_ref_from_pb(r: pb::CrossReference, at: &str) -> Result<CrossReference, Status> {
    Ok(CrossReference {
        created_at: from_ts_or_unset(&format!("{at}.created_at"), r.created_at.as_ref())?,
        reference_id: r.reference_id,
        source_policy_id: r.source_policy_id,
        source_version_id: r.source_version_id,
        source_node_id: r.source_node_id,
        target_policy_id: r.target_policy_id,
        target_version_id: r.target_version_id,
        target_node_id: r.target_node_id,
        reference_type: r.reference_type,
        context: r.context,
    })
}

pub fn contradiction_to_pb(c: Contradiction) -> pb::Contradiction {
    pb::Contradiction {
        contradiction_id: c.contradiction_id,
        policy_id_a: c.evidence_a.policy_id,
        node_id_a: c.evidence_a.node_id,
        policy_id_b: c.evidence_b.policy_id,
        node_id_b: c.evidence_b.node_id,
        description: c.description,
        severity: c.severity.to_string(),
        detected_at: ts(c.detected_at),
        case_id: c.case_id,
        criterion_id: c.criterion_id,
        excerpt_a: c.evidence_a.excerpt,
        stance_a: c.evidence_a.stance,
        excerpt_b: c.evidence_b.excerpt,
        stance_b: c.evidence_b.stance,
        resolution_status: c.resolution.to_string(),
        resolution_note: c.resolution_note,
        resolved_at: opt_ts(c.resolved_at),
        version_id_a: c.evidence_a.version_id,
        version_id_b: c.evidence_b.version_id,
    }
}

/// A severity or resolution string: empty = the default.
fn parse_or_default<T: std::str::FromStr<Err = treestore::Error> + Default>(
    field: &str,
    s: &str,
) -> Result<T, Status> {
    if s.is_empty() {
        return Ok(T::default());
    }
    s.parse().map_err(|e: treestore::Error| match e {
        treestore::Error::InvalidArgument { reason, .. } => invalid(field, reason),
        other => crate::status::from_error(other),
    })
}

pub fn resolution(field: &str, s: &str) -> Result<Resolution, Status> {
    parse_or_default(field, s)
}

pub fn contradiction_from_pb(c: pb::Contradiction, at: &str) -> Result<Contradiction, Status> {
    Ok(Contradiction {
        severity: parse_or_default::<Severity>(&format!("{at}.severity"), &c.severity)?,
        resolution: resolution(&format!("{at}.resolution_status"), &c.resolution_status)?,
        detected_at: from_ts_or_unset(&format!("{at}.detected_at"), c.detected_at.as_ref())?,
        resolved_at: from_ts(&format!("{at}.resolved_at"), c.resolved_at.as_ref())?,
        contradiction_id: c.contradiction_id,
        case_id: c.case_id,
        criterion_id: c.criterion_id,
        evidence_a: Evidence {
            policy_id: c.policy_id_a,
            version_id: c.version_id_a,
            node_id: c.node_id_a,
            excerpt: c.excerpt_a,
            stance: c.stance_a,
        },
        evidence_b: Evidence {
            policy_id: c.policy_id_b,
            version_id: c.version_id_b,
            node_id: c.node_id_b,
            excerpt: c.excerpt_b,
            stance: c.stance_b,
        },
        description: c.description,
        resolution_note: c.resolution_note,
    })
}

pub fn prompt_to_pb(t: PromptTemplate) -> pb::PromptTemplate {
    pb::PromptTemplate {
        prompt_id: t.prompt_id,
        name: t.name,
        template: t.template,
        variables: t.variables,
        version: t.version,
        created_at: ts(t.created_at),
        tool_schemas: t.tool_schemas,
        deployed_at: opt_ts(t.deployed_at),
    }
}

pub fn prompt_from_pb(t: pb::PromptTemplate, at: &str) -> Result<PromptTemplate, Status> {
    Ok(PromptTemplate {
        created_at: from_ts_or_unset(&format!("{at}.created_at"), t.created_at.as_ref())?,
        deployed_at: from_ts(&format!("{at}.deployed_at"), t.deployed_at.as_ref())?,
        prompt_id: t.prompt_id,
        version: t.version,
        name: t.name,
        template: t.template,
        variables: t.variables,
        tool_schemas: t.tool_schemas,
        registered_at: Timestamp::EPOCH,
    })
}

pub fn usage_to_pb(u: PromptUsage) -> pb::PromptUsage {
    pb::PromptUsage {
        usage_id: u.usage_id,
        prompt_id: u.prompt_id,
        filled_variables: u.filled_variables.into_iter().collect(),
        response: u.response,
        used_at: ts(u.used_at),
        prompt_version: u.prompt_version,
        case_id: u.case_id,
        tool_result_ids: u.tool_result_ids,
        outcome: u.outcome,
    }
}

pub fn usage_from_pb(u: pb::PromptUsage, at: &str) -> Result<PromptUsage, Status> {
    Ok(PromptUsage {
        used_at: from_ts_or_unset(&format!("{at}.used_at"), u.used_at.as_ref())?,
        usage_id: u.usage_id,
        prompt_id: u.prompt_id,
        prompt_version: u.prompt_version,
        case_id: u.case_id,
        filled_variables: u.filled_variables.into_iter().collect(),
        response: u.response,
        tool_result_ids: u.tool_result_ids,
        outcome: u.outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_reject_bad_nanos() {
        let t = Timestamp::from_unix_nanos(-1_500_000_000);
        let w = ts(t).unwrap();
        assert_eq!((w.seconds, w.nanos), (-2, 500_000_000));
        assert_eq!(from_ts("x", Some(&w)).unwrap(), Some(t));
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(
            from_ts("x", Some(&bad)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        // 1677-09-21T12:00:00Z fits an i64 of nanoseconds, but records
        // holding it could not be read back.
        let early = prost_types::Timestamp {
            seconds: -9_223_329_600,
            nanos: 0,
        };
        let e = from_ts("result.executed_at", Some(&early)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("result.executed_at"),
            "{}",
            e.message()
        );
        let first = prost_types::Timestamp {
            seconds: Timestamp::MIN.unix_parts().0,
            nanos: 0,
        };
        assert_eq!(from_ts("x", Some(&first)).unwrap(), Some(Timestamp::MIN));
    }

    #[test]
    fn nodes_check_pages_and_policy() {
        let mut n = pb::Node {
            node_id: "a".into(),
            page_start: -1,
            ..Default::default()
        };
        let e = node_from_pb(n.clone(), "nodes[0]", "p", "v").unwrap_err();
        assert!(
            e.message().contains("nodes[0].page_start"),
            "{}",
            e.message()
        );
        n.page_start = 1;
        n.page_end = 2;
        n.policy_id = "other".into();
        let e = node_from_pb(n.clone(), "nodes[0]", "p", "v").unwrap_err();
        assert!(e.message().contains("nodes[0].policy_id"));
        n.policy_id = String::new();
        let node = node_from_pb(n, "nodes[0]", "p", "v").unwrap();
        assert_eq!(node.parent_id, None);
        let back = node_to_pb(node, "p", "v");
        assert_eq!(
            (back.page_start, back.page_end, back.policy_id.as_str()),
            (1, 2, "p")
        );
    }

    #[test]
    fn effective_date_comes_from_metadata_when_unset() {
        let mut d = pb::Document {
            policy_id: "p".into(),
            version_id: "v".into(),
            ..Default::default()
        };
        d.metadata
            .insert(EFFECTIVE_DATE_KEY.into(), "2024-03-01".into());
        let (_, _, spec) = store_request(pb::StoreDocumentRequest {
            document: Some(d.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            spec.unwrap().effective_start,
            Timestamp::from_date(2024, 3, 1)
        );
        d.metadata.insert(EFFECTIVE_DATE_KEY.into(), "March".into());
        let e = store_request(pb::StoreDocumentRequest {
            document: Some(d),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.message().contains("metadata.effective_date"));
    }
}
