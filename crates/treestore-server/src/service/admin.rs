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
    let wire: Vec<Option<WireOp>> = r.ops.iter().map(|op| op.op.as_ref().map(wire_op)).collect();
    let ops = r
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| write_op(i, op))
        .collect::<Result<Vec<_>, Status>>()?;
    let n = ops.len();
    let ids = ctx.store.apply(ops).map_err(|e| op_error(&wire, e))?;
    Ok(pb::ApplyWritesResponse {
        success: true,
        message: format!("applied {n} operations atomically"),
        ids,
    })
}

/// Where an operation's fields sit on the wire: the `WriteOp` field that
/// holds it, and the wire names of the store's fields of its record.
type WireOp = (&'static str, &'static [(&'static str, &'static str)]);

/// Store field names of a document write and their wire names in a
/// StoreDocumentRequest.
pub(crate) const DOCUMENT_FIELDS: &[(&str, &str)] = &[
    ("policy_id", "document.policy_id"),
    ("version_id", "document.version_id"),
    ("pageindex_doc_id", "document.pageindex_doc_id"),
    ("root_node_id", "document.root_node_id"),
    ("metadata", "document.metadata"),
    ("supersedes", "supersedes_version_id"),
];

fn wire_op(op: &Op) -> WireOp {
    match op {
        Op::StoreDocument(_) => ("store_document", DOCUMENT_FIELDS),
        Op::DeleteDocument(_) => ("delete_document", &[]),
        Op::ToolResult(_) => ("tool_result", super::metadata::TOOL_RESULT_FIELDS),
        Op::Trajectory(_) => ("trajectory", &[]),
        Op::CrossReference(_) => ("cross_reference", &[]),
        Op::Contradiction(_) => ("contradiction", super::metadata::EVIDENCE_FIELDS),
        Op::Prompt(_) => ("prompt", &[]),
        Op::PromptUsage(_) => ("prompt_usage", &[]),
        Op::RegisterVersion(_) => ("register_version", super::versions::VERSION_FIELDS),
        Op::ResolveContradiction(_) => ("resolve_contradiction", &[]),
    }
}

/// The status of a failed batch. The store names an invalid field
/// `ops[i].<store field>`; on the wire it is
/// `ops[i].<operation>.<wire field>` (`ops[2].tool_result.result_data`).
fn op_error(wire: &[Option<WireOp>], e: treestore::Error) -> Status {
    if let treestore::Error::InvalidArgument { field, reason } = &e {
        if let Some((i, rest)) = split_op_field(field) {
            if let Some(Some((name, renames))) = wire.get(i) {
                let field = match rest {
                    // The whole operation (an invalid document).
                    None => format!("ops[{i}].{name}"),
                    Some(rest) if rest == *name => format!("ops[{i}].{name}"),
                    Some(rest) => {
                        format!(
                            "ops[{i}].{name}.{}",
                            crate::status::wire_name(renames, rest)
                        )
                    }
                };
                return from_error(treestore::Error::InvalidArgument {
                    field,
                    reason: reason.clone(),
                });
            }
        }
    }
    from_error(e)
}

/// `ops[3].tool_name` -> `(3, Some("tool_name"))`; `ops[3]` -> `(3, None)`.
fn split_op_field(field: &str) -> Option<(usize, Option<&str>)> {
    let (index, rest) = field.strip_prefix("ops[")?.split_once(']')?;
    let i = index.parse().ok()?;
    match rest {
        "" => Some((i, None)),
        rest => Some((i, Some(rest.strip_prefix('.')?))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_of_an_op_name_the_wire_path() {
        let wire = vec![
            Some(wire_op(&Op::Prompt(Default::default()))),
            Some(wire_op(&Op::StoreDocument(Default::default()))),
            Some(wire_op(&Op::ToolResult(Default::default()))),
            Some(wire_op(&Op::Contradiction(Default::default()))),
        ];
        let e = |field: &str| treestore::Error::InvalidArgument {
            field: field.into(),
            reason: "bad".into(),
        };
        let msg = |field: &str| op_error(&wire, e(field)).message().to_string();
        assert!(msg("ops[2].tool_name").contains("ops[2].tool_result.tool_name: bad"));
        assert!(msg("ops[2].output").contains("ops[2].tool_result.result_data: bad"));
        assert!(msg("ops[3].evidence_b.node_id").contains("ops[3].contradiction.node_id_b:"));
        assert!(msg("ops[1].store_document").contains("argument ops[1].store_document: bad"));
        assert!(msg("ops[1].policy_id").contains("ops[1].store_document.document.policy_id:"));
        assert!(msg("ops[1].nodes[4].title").contains("ops[1].store_document.nodes[4].title:"));
        assert!(msg("ops[0].version").contains("ops[0].prompt.version:"));
        assert!(msg("ops").contains("argument ops: bad"));
        assert!(
            msg("ops[9].x").contains("argument ops[9].x: bad"),
            "unknown op kept"
        );
        assert_eq!(split_op_field("ops[12]"), Some((12, None)));
        assert_eq!(split_op_field("ops[x].a"), None);
    }
}
