//! Atomic batches: several writes of any store (documents, versions, tool
//! results, trajectories, cross-references, contradictions, prompts, usages,
//! deletions) applied in ONE durable transaction: all or nothing.
//!
//! Every operation is validated (and every document indexed) before the
//! transaction starts, so a bad operation anywhere in the batch rejects the
//! whole batch with the error of the first bad one and writes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::metadata::{
    contradictions, cross_refs, tool_results, trajectories, Contradiction, CrossReference,
    Resolution, ToolResult, Trajectory,
};
use crate::model::{Document, Node};
use crate::prompts::{self, PromptTemplate, PromptUsage};
use crate::store::{self, PreparedDocument, TreeStore};
use crate::time::Timestamp;
use crate::versions::{self, PolicyVersion, VersionSpec};

/// Most operations in one batch.
pub const MAX_BATCH_OPS: usize = 10_000;

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    StoreDocument {
        document: Document,
        nodes: Vec<Node>,
        version: Option<VersionSpec>,
    },
    /// One version, or every version (`None`).
    DeleteDocument {
        policy_id: String,
        version_id: Option<String>,
    },
    RegisterVersion(PolicyVersion),
    ToolResult(ToolResult),
    Trajectory(Trajectory),
    CrossReference(CrossReference),
    Contradiction(Contradiction),
    ResolveContradiction {
        contradiction_id: String,
        resolution: Resolution,
        note: String,
    },
    PromptTemplate(PromptTemplate),
    PromptUsage(PromptUsage),
}

/// An operation checked and ready to write.
enum Prepared {
    Document(Box<PreparedDocument>),
    Delete(String, Option<String>),
    Version(PolicyVersion),
    ToolResult(ToolResult),
    Trajectory(Trajectory),
    CrossReference(CrossReference),
    Contradiction(Contradiction),
    Resolve(String, Resolution, String),
    Prompt(PromptTemplate),
    Usage(PromptUsage),
}

/// What one applied operation produced: the id of the record it wrote (or
/// deleted), for documents `policy/version`.
pub type OpResult = String;

impl TreeStore {
    /// Applies `ops` in one durable transaction; returns one id per op.
    pub fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<OpResult>> {
        if ops.is_empty() {
            return Err(Error::invalid(
                "ops",
                "a batch needs at least one operation",
            ));
        }
        if ops.len() > MAX_BATCH_OPS {
            return Err(Error::invalid(
                "ops",
                format!("{} operations, at most {MAX_BATCH_OPS} allowed", ops.len()),
            ));
        }
        let prepared = self.prepare_ops(ops)?;
        let now = Timestamp::now();
        store::retry(|| {
            let mut txn = self.db().begin_write();
            let mut ids = Vec::with_capacity(prepared.len());
            for (i, p) in prepared.iter().enumerate() {
                let id = match p {
                    Prepared::Document(d) => {
                        d.write(&mut txn).map_err(|e| in_op(i, e))?;
                        d.id()
                    }
                    Prepared::Delete(policy, version) => {
                        store::delete_versions(&mut txn, policy, version.as_deref())
                            .map_err(|e| in_op(i, e))?;
                        match version {
                            Some(v) => format!("{policy}/{v}"),
                            None => policy.clone(),
                        }
                    }
                    Prepared::Version(v) => {
                        versions::register(&mut txn, v.clone()).map_err(|e| in_op(i, e))?;
                        format!("{}/{}", v.policy_id, v.version_id)
                    }
                    Prepared::ToolResult(r) => {
                        tool_results::write(&mut txn, r).map_err(|e| in_op(i, e))?;
                        r.execution_id.clone()
                    }
                    Prepared::Trajectory(t) => {
                        trajectories::write(&mut txn, t).map_err(|e| in_op(i, e))?;
                        t.trajectory_id.clone()
                    }
                    Prepared::CrossReference(r) => {
                        cross_refs::write(&mut txn, r).map_err(|e| in_op(i, e))?;
                        r.reference_id.clone()
                    }
                    Prepared::Contradiction(c) => {
                        contradictions::write(&mut txn, c).map_err(|e| in_op(i, e))?;
                        c.contradiction_id.clone()
                    }
                    Prepared::Resolve(id, resolution, note) => {
                        contradictions::resolve(&mut txn, id, *resolution, note, now)
                            .map_err(|e| in_op(i, e))?;
                        id.clone()
                    }
                    Prepared::Prompt(t) => {
                        let t = prompts::write_template(&mut txn, t).map_err(|e| in_op(i, e))?;
                        format!("{}/{}", t.prompt_id, t.version)
                    }
                    Prepared::Usage(u) => {
                        prompts::write_usage(&mut txn, u)
                            .map_err(|e| in_op(i, e))?
                            .usage_id
                    }
                };
                ids.push(id);
            }
            txn.commit()?;
            Ok(ids)
        })
    }

    /// Checks every op and indexes every document. With several documents
    /// they are prepared on parallel threads (each document on one), so a
    /// bulk load uses every core; the error reported is the first op's.
    fn prepare_ops(&self, ops: Vec<WriteOp>) -> Result<Vec<Prepared>> {
        let documents = ops
            .iter()
            .filter(|op| matches!(op, WriteOp::StoreDocument { .. }))
            .count();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(documents);
        // Each op's time, in op order, before any parallel work: a later
        // document of the batch is stored later (and becomes current).
        let stamps: Vec<Timestamp> = ops.iter().map(|_| Timestamp::now_monotonic()).collect();
        // Counted in the lone-store rule (see `parallel::Occupancy`): one
        // document splits across threads only if no other store runs.
        let occupant = self.storing().enter();
        if threads < 2 {
            return ops
                .into_iter()
                .zip(stamps)
                .enumerate()
                .map(|(i, (op, now))| {
                    self.prepare_op(op, occupant.alone, now)
                        .map_err(|e| in_op(i, e))
                })
                .collect();
        }
        let count = ops.len();
        let queue: Vec<Mutex<Option<WriteOp>>> =
            ops.into_iter().map(|op| Mutex::new(Some(op))).collect();
        let stamps = &stamps;
        let done: Vec<Mutex<Option<Result<Prepared>>>> =
            (0..count).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let Some(op) = lock(&queue[i]).take() else {
                        continue;
                    };
                    *lock(&done[i]) = Some(self.prepare_op(op, false, stamps[i]));
                });
            }
        });
        done.into_iter()
            .enumerate()
            .map(|(i, slot)| {
                slot.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or_else(|| Err(Error::invalid("ops", "operation was not prepared")))
                    .map_err(|e| in_op(i, e))
            })
            .collect()
    }

    /// Checks one op; `split` lets a large document be indexed on several
    /// threads; `now` is a document's store time.
    fn prepare_op(&self, op: WriteOp, split: bool, now: Timestamp) -> Result<Prepared> {
        Ok(match op {
            WriteOp::StoreDocument {
                document,
                nodes,
                version,
            } => Prepared::Document(Box::new(self.prepare_document(
                document,
                nodes,
                version.as_ref(),
                split,
                now,
            )?)),
            WriteOp::DeleteDocument {
                policy_id,
                version_id,
            } => {
                crate::records::check_id("policy_id", &policy_id)?;
                if let Some(v) = &version_id {
                    crate::records::check_id("version_id", v)?;
                }
                Prepared::Delete(policy_id, version_id)
            }
            WriteOp::RegisterVersion(v) => {
                versions::validate(&v)?;
                Prepared::Version(v)
            }
            WriteOp::ToolResult(r) => Prepared::ToolResult(tool_results::prepare(r)?),
            WriteOp::Trajectory(t) => Prepared::Trajectory(trajectories::prepare(t)?),
            WriteOp::CrossReference(r) => Prepared::CrossReference(cross_refs::prepare(r)?),
            WriteOp::Contradiction(c) => Prepared::Contradiction(contradictions::prepare(c)?),
            WriteOp::ResolveContradiction {
                contradiction_id,
                resolution,
                note,
            } => {
                crate::records::check_id("contradiction_id", &contradiction_id)?;
                Prepared::Resolve(contradiction_id, resolution, note)
            }
            WriteOp::PromptTemplate(t) => Prepared::Prompt(prompts::prepare_template(t)?),
            WriteOp::PromptUsage(u) => Prepared::Usage(prompts::prepare_usage(u)?),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prefixes an invalid-argument field with the operation's position (every
/// error an op raises, whether while it is prepared or inside the
/// transaction, names it); other errors (conflicts the retry looks for,
/// not-found) pass unchanged.
fn in_op(i: usize, e: Error) -> Error {
    match e {
        Error::InvalidArgument { field, reason } => Error::InvalidArgument {
            field: format!("ops[{i}].{field}"),
            reason,
        },
        e @ Error::InvalidDocument { .. } => Error::InvalidArgument {
            field: format!("ops[{i}].store_document"),
            reason: e.to_string(),
        },
        other => other,
    }
}
