//! Server RPCs: the baseline Health and Stats, and ApplyWrites (several
//! writes of any store in one atomic transaction).

use tonic::Status;
use treestore::WriteOp;

use super::{Ctx, Shared};
use crate::convert;
use crate::pb;
use crate::pb::write_op::Op;
use crate::status::{from_error, invalid, opt};

/// Healthy once recovery has finished and the store is open.
pub fn health(shared: &Shared) -> pb::HealthResponse {
    pb::HealthResponse {
        healthy: shared.store().is_some(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: shared.started.elapsed().as_secs() as i64,
    }
}

pub fn stats(ctx: &Ctx, _r: pb::StatsRequest) -> Result<pb::StatsResponse, Status> {
    let totals = ctx.store.versions().totals().map_err(from_error)?;
    let db = ctx.store.db().stats().map_err(|e| from_error(e.into()))?;
    Ok(pb::StatsResponse {
        total_documents: totals.policies as i64,
        total_nodes: totals.nodes as i64,
        total_versions: totals.versions as i64,
        db_size_bytes: db.file_bytes as i64,
        operation_counts: ctx
            .operation_counts()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    })
}

pub fn apply_writes(
    ctx: &Ctx,
    r: pb::ApplyWritesRequest,
) -> Result<pb::ApplyWritesResponse, Status> {
    let ops = r
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| write_op(i, op))
        .collect::<Result<Vec<_>, Status>>()?;
    let n = ops.len();
    let ids = ctx.store.apply(ops).map_err(from_error)?;
    Ok(pb::ApplyWritesResponse {
        success: true,
        message: format!("applied {n} operations atomically"),
        ids,
    })
}

fn write_op(i: usize, op: pb::WriteOp) -> Result<WriteOp, Status> {
    let at = format!("ops[{i}]");
    let field = |name: &str| format!("{at}.{name}");
    let op = op.op.ok_or_else(|| invalid(&at, "no operation set"))?;
    Ok(match op {
        Op::StoreDocument(r) => {
            let (document, nodes, version) = convert::store_request(r).map_err(|s| {
                Status::new(
                    s.code(),
                    s.message()
                        .replace("argument ", &format!("argument {at}.store_document.")),
                )
            })?;
            WriteOp::StoreDocument {
                document,
                nodes,
                version,
            }
        }
        Op::DeleteDocument(r) => WriteOp::DeleteDocument {
            policy_id: r.policy_id,
            version_id: opt(&r.version_id).map(str::to_string),
        },
        Op::ToolResult(r) => {
            WriteOp::ToolResult(convert::tool_result_from_pb(r, &field("tool_result"))?)
        }
        Op::Trajectory(t) => {
            WriteOp::Trajectory(convert::trajectory_from_pb(t, &field("trajectory"))?)
        }
        Op::CrossReference(x) => {
            WriteOp::CrossReference(convert::cross_ref_from_pb(x, &field("cross_reference"))?)
        }
        Op::Contradiction(c) => {
            WriteOp::Contradiction(convert::contradiction_from_pb(c, &field("contradiction"))?)
        }
        Op::Prompt(p) => WriteOp::PromptTemplate(convert::prompt_from_pb(p, &field("prompt"))?),
        Op::PromptUsage(u) => {
            WriteOp::PromptUsage(convert::usage_from_pb(u, &field("prompt_usage"))?)
        }
        Op::RegisterVersion(v) => {
            WriteOp::RegisterVersion(convert::version_from_pb(v, &field("register_version"))?)
        }
        Op::ResolveContradiction(r) => WriteOp::ResolveContradiction {
            resolution: {
                let f = field("resolve_contradiction.resolution_status");
                crate::status::require(&f, &r.resolution_status)?;
                convert::resolution(&f, &r.resolution_status)?
            },
            contradiction_id: r.contradiction_id,
            note: r.resolution_note,
        },
    })
}
