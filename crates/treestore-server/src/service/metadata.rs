//! Metadata RPCs: tool results (store, query, per-tool statistics),
//! trajectories (store, by case, most visited nodes, step statistics),
//! cross-references (store, both directions) and contradictions (store,
//! query, resolve).

use tonic::Status;
use treestore::metadata::{ContradictionQuery, Direction, ToolResultQuery};

use super::Ctx;
use crate::convert::{self, from_ts};
use crate::pb;
use crate::status::{from_error, in_field, invalid, limit, opt};

fn stored(what: &str, id: String) -> (bool, String, String) {
    (true, format!("stored {what} {id}"), id)
}

pub fn store_tool_result(
    ctx: &Ctx,
    r: pb::StoreToolResultRequest,
) -> Result<pb::StoreToolResultResponse, Status> {
    let t = r.result.ok_or_else(|| invalid("result", "must be set"))?;
    let t = convert::tool_result_from_pb(t, "result")?;
    let id = ctx
        .store
        .metadata()
        .put_tool_result(t)
        .map_err(|e| in_field("result", TOOL_RESULT_FIELDS, e))?;
    let (success, message, id) = stored("tool result", id);
    Ok(pb::StoreToolResultResponse {
        success,
        message,
        id,
    })
}

pub fn get_tool_results(
    ctx: &Ctx,
    r: pb::GetToolResultsRequest,
) -> Result<pb::GetToolResultsResponse, Status> {
    let q = ToolResultQuery {
        case_id: opt(&r.case_id),
        tool_name: opt(&r.tool_name),
        policy_id: opt(&r.policy_id),
        since: from_ts("since", r.since.as_ref())?,
        until: from_ts("until", r.until.as_ref())?,
        limit: limit("limit", r.limit)?,
    };
    let results = ctx.store.metadata().tool_results(&q).map_err(from_error)?;
    Ok(pb::GetToolResultsResponse {
        results: results
            .into_iter()
            .map(convert::tool_result_to_pb)
            .collect(),
    })
}

pub fn get_tool_stats(
    ctx: &Ctx,
    r: pb::GetToolStatsRequest,
) -> Result<pb::GetToolStatsResponse, Status> {
    let stats = ctx
        .store
        .metadata()
        .tool_stats(
            opt(&r.tool_name),
            from_ts("since", r.since.as_ref())?,
            from_ts("until", r.until.as_ref())?,
        )
        .map_err(from_error)?;
    Ok(pb::GetToolStatsResponse {
        stats: stats
            .into_iter()
            .map(|s| pb::ToolStat {
                tool_name: s.tool_name,
                count: s.count as i64,
                success_count: s.successes as i64,
                success_rate: s.success_rate,
                latency_p50_ms: s.latency_p50_ms,
                latency_p95_ms: s.latency_p95_ms,
            })
            .collect(),
    })
}

pub fn store_trajectory(
    ctx: &Ctx,
    r: pb::StoreTrajectoryRequest,
) -> Result<pb::StoreTrajectoryResponse, Status> {
    let t = r
        .trajectory
        .ok_or_else(|| invalid("trajectory", "must be set"))?;
    let t = convert::trajectory_from_pb(t, "trajectory")?;
    let id = ctx
        .store
        .metadata()
        .put_trajectory(t)
        .map_err(|e| in_field("trajectory", &[], e))?;
    let (success, message, id) = stored("trajectory", id);
    Ok(pb::StoreTrajectoryResponse {
        success,
        message,
        id,
    })
}

pub fn get_trajectories(
    ctx: &Ctx,
    r: pb::GetTrajectoriesRequest,
) -> Result<pb::GetTrajectoriesResponse, Status> {
    let t = ctx
        .store
        .metadata()
        .trajectories(&r.case_id, limit("limit", r.limit)?)
        .map_err(from_error)?;
    Ok(pb::GetTrajectoriesResponse {
        trajectories: t.into_iter().map(convert::trajectory_to_pb).collect(),
    })
}

pub fn get_most_visited_nodes(
    ctx: &Ctx,
    r: pb::GetMostVisitedNodesRequest,
) -> Result<pb::GetMostVisitedNodesResponse, Status> {
    let v = ctx
        .store
        .metadata()
        .most_visited_nodes(&r.policy_id, limit("limit", r.limit)?)
        .map_err(from_error)?;
    Ok(pb::GetMostVisitedNodesResponse {
        nodes: v
            .into_iter()
            .map(|n| pb::NodeVisitCount {
                node_id: n.node_id,
                visits: n.visits as i64,
            })
            .collect(),
    })
}

pub fn get_trajectory_stats(
    ctx: &Ctx,
    r: pb::GetTrajectoryStatsRequest,
) -> Result<pb::GetTrajectoryStatsResponse, Status> {
    let (n, mean) = ctx
        .store
        .metadata()
        .mean_steps(opt(&r.case_id))
        .map_err(from_error)?;
    Ok(pb::GetTrajectoryStatsResponse {
        trajectory_count: n as i64,
        mean_steps: mean,
    })
}

pub fn store_cross_reference(
    ctx: &Ctx,
    r: pb::StoreCrossReferenceRequest,
) -> Result<pb::StoreCrossReferenceResponse, Status> {
    let x = r
        .cross_reference
        .ok_or_else(|| invalid("cross_reference", "must be set"))?;
    let x = convert::cross_ref_from_pb(x, "cross_reference")?;
    let id = ctx
        .store
        .metadata()
        .put_cross_reference(x)
        .map_err(|e| in_field("cross_reference", &[], e))?;
    let (success, message, id) = stored("cross-reference", id);
    Ok(pb::StoreCrossReferenceResponse {
        success,
        message,
        id,
    })
}

pub fn get_cross_references(
    ctx: &Ctx,
    r: pb::GetCrossReferencesRequest,
) -> Result<pb::GetCrossReferencesResponse, Status> {
    let direction = match pb::ReferenceDirection::try_from(r.direction) {
        Ok(pb::ReferenceDirection::Both) => Direction::Both,
        Ok(pb::ReferenceDirection::Outgoing) => Direction::Outgoing,
        Ok(pb::ReferenceDirection::Incoming) => Direction::Incoming,
        Err(_) => {
            return Err(invalid(
                "direction",
                format!("unknown value {}", r.direction),
            ))
        }
    };
    let refs = ctx
        .store
        .metadata()
        .cross_references(
            &r.policy_id,
            &r.node_id,
            opt(&r.version_id),
            direction,
            opt(&r.reference_type),
        )
        .map_err(from_error)?;
    Ok(pb::GetCrossReferencesResponse {
        references: refs.into_iter().map(convert::cross_ref_to_pb).collect(),
    })
}

pub fn store_contradiction(
    ctx: &Ctx,
    r: pb::StoreContradictionRequest,
) -> Result<pb::StoreContradictionResponse, Status> {
    let c = r
        .contradiction
        .ok_or_else(|| invalid("contradiction", "must be set"))?;
    let c = convert::contradiction_from_pb(c, "contradiction")?;
    let id = ctx
        .store
        .metadata()
        .put_contradiction(c)
        .map_err(|e| in_field("contradiction", EVIDENCE_FIELDS, e))?;
    let (success, message, id) = stored("contradiction", id);
    Ok(pb::StoreContradictionResponse {
        success,
        message,
        id,
    })
}

/// Store field names of a contradiction and their wire names: the wire
/// flattens the evidence (`evidence_a.policy_id` -> `policy_id_a`).
pub const EVIDENCE_FIELDS: &[(&str, &str)] = &[
    ("evidence_a.policy_id", "policy_id_a"),
    ("evidence_a.version_id", "version_id_a"),
    ("evidence_a.node_id", "node_id_a"),
    ("evidence_a.excerpt", "excerpt_a"),
    ("evidence_a.stance", "stance_a"),
    ("evidence_b.policy_id", "policy_id_b"),
    ("evidence_b.version_id", "version_id_b"),
    ("evidence_b.node_id", "node_id_b"),
    ("evidence_b.excerpt", "excerpt_b"),
    ("evidence_b.stance", "stance_b"),
];

/// Store field names of a tool result and their wire names.
pub const TOOL_RESULT_FIELDS: &[(&str, &str)] = &[("output", "result_data")];

pub fn get_contradictions(
    ctx: &Ctx,
    r: pb::GetContradictionsRequest,
) -> Result<pb::GetContradictionsResponse, Status> {
    let limit = limit("limit", r.limit)?;
    let metadata = ctx.store.metadata();
    let c = match (opt(&r.case_id), opt(&r.criterion_id)) {
        // Both filters apply: the case's contradictions on that criterion.
        (Some(case), Some(criterion)) => metadata.contradictions(
            ContradictionQuery::CaseAndCriterion { case, criterion },
            r.unresolved_only,
            limit,
        ),
        (Some(c), None) => {
            metadata.contradictions(ContradictionQuery::Case(c), r.unresolved_only, limit)
        }
        (None, Some(c)) => {
            metadata.contradictions(ContradictionQuery::Criterion(c), r.unresolved_only, limit)
        }
        (None, None) => metadata.contradictions(ContradictionQuery::Unresolved, true, limit),
    }
    .map_err(from_error)?;
    Ok(pb::GetContradictionsResponse {
        contradictions: c.into_iter().map(convert::contradiction_to_pb).collect(),
    })
}

pub fn resolve_contradiction(
    ctx: &Ctx,
    r: pb::ResolveContradictionRequest,
) -> Result<pb::ResolveContradictionResponse, Status> {
    crate::status::require("resolution_status", &r.resolution_status)?;
    let status = convert::resolution("resolution_status", &r.resolution_status)?;
    let c = ctx
        .store
        .metadata()
        .resolve_contradiction(&r.contradiction_id, status, &r.resolution_note)
        .map_err(from_error)?;
    Ok(pb::ResolveContradictionResponse {
        success: true,
        message: format!(
            "contradiction {} is now {}",
            c.contradiction_id, c.resolution
        ),
        contradiction: Some(convert::contradiction_to_pb(c)),
    })
}
