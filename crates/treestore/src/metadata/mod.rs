//! The metadata store: what a reasoning agent did and found. Tool results,
//! trajectories, cross-references and contradictions, each in its own
//! module with its record, keys and queries; [`MetadataStore`] is the API.
//!
//! Every write is one durable transaction (or part of a batch, see
//! [`crate::batch`]); a record written twice with the same id is an upsert;
//! ids are generated when absent ([`crate::ids`]).

pub mod contradictions;
pub mod cross_refs;
pub mod tool_results;
pub mod trajectories;

use treestore_storage::Db;

pub use contradictions::{Contradiction, ContradictionQuery, Evidence, Resolution, Severity};
pub use cross_refs::{CrossReference, Direction};
pub use tool_results::{ToolResult, ToolResultQuery, ToolStats};
pub use trajectories::{NodeVisits, Trajectory, TrajectoryStep};

use crate::error::{Error, Result};
use crate::records;
use crate::time::Timestamp;

/// An instant a record stores: within the supported range (see
/// [`Timestamp::MIN`]), so that the record can be read back.
pub(crate) fn check_time(field: &str, t: Timestamp) -> Result<()> {
    if t.is_supported() {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{} ns since the epoch is out of range; instants from {} to {} are supported",
                t.unix_nanos(),
                Timestamp::MIN,
                Timestamp::MAX
            ),
        ))
    }
}

/// The metadata store's API. Get it with
/// [`TreeStore::metadata`](crate::TreeStore::metadata).
pub struct MetadataStore<'s> {
    db: &'s Db,
}

impl<'s> MetadataStore<'s> {
    pub(crate) fn new(db: &'s Db) -> Self {
        MetadataStore { db }
    }

    /// Stores a tool result durably; returns its execution id.
    pub fn put_tool_result(&self, r: ToolResult) -> Result<String> {
        let r = tool_results::prepare(r)?;
        records::write(self.db, |txn| tool_results::write(txn, &r))?;
        Ok(r.execution_id)
    }

    /// One tool result by execution id.
    pub fn tool_result(&self, execution_id: &str) -> Result<ToolResult> {
        records::check_id("execution_id", execution_id)?;
        tool_results::get(&self.db.begin_read(), execution_id)?
            .ok_or_else(|| Error::not_found("tool result", execution_id))
    }

    /// Tool results by case, policy and/or tool, newest first.
    pub fn tool_results(&self, q: &ToolResultQuery) -> Result<Vec<ToolResult>> {
        tool_results::query(&self.db.begin_read(), q)
    }

    /// Per-tool aggregates over results executed in `[since, until)`; one tool
    /// or every tool (by name).
    pub fn tool_stats(
        &self,
        tool: Option<&str>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<ToolStats>> {
        tool_results::stats(&self.db.begin_read(), tool, since, until)
    }

    /// Stores a trajectory durably; returns its id.
    pub fn put_trajectory(&self, t: Trajectory) -> Result<String> {
        let t = trajectories::prepare(t)?;
        records::write(self.db, |txn| trajectories::write(txn, &t))?;
        Ok(t.trajectory_id)
    }

    pub fn trajectory(&self, id: &str) -> Result<Trajectory> {
        records::check_id("trajectory_id", id)?;
        trajectories::get(&self.db.begin_read(), id)?
            .ok_or_else(|| Error::not_found("trajectory", id))
    }

    /// A case's trajectories, most recently started first.
    pub fn trajectories(&self, case_id: &str, limit: usize) -> Result<Vec<Trajectory>> {
        trajectories::by_case(&self.db.begin_read(), case_id, limit)
    }

    /// The most visited nodes of a policy across all trajectories.
    pub fn most_visited_nodes(&self, policy: &str, limit: usize) -> Result<Vec<NodeVisits>> {
        trajectories::most_visited(&self.db.begin_read(), policy, limit)
    }

    /// (trajectories, mean steps per trajectory) of one case or of all.
    pub fn mean_steps(&self, case_id: Option<&str>) -> Result<(u64, f64)> {
        trajectories::mean_steps(&self.db.begin_read(), case_id)
    }

    /// Stores a cross-reference durably; returns its id.
    pub fn put_cross_reference(&self, r: CrossReference) -> Result<String> {
        let r = cross_refs::prepare(r)?;
        records::write(self.db, |txn| cross_refs::write(txn, &r))?;
        Ok(r.reference_id)
    }

    /// A node's references in a direction, optionally of one type and one
    /// version of the node.
    pub fn cross_references(
        &self,
        policy: &str,
        node: &str,
        version: Option<&str>,
        direction: Direction,
        reference_type: Option<&str>,
    ) -> Result<Vec<CrossReference>> {
        cross_refs::query(
            &self.db.begin_read(),
            policy,
            node,
            version,
            direction,
            reference_type,
        )
    }

    /// Stores a contradiction durably; returns its id.
    pub fn put_contradiction(&self, c: Contradiction) -> Result<String> {
        let c = contradictions::prepare(c)?;
        records::write(self.db, |txn| contradictions::write(txn, &c))?;
        Ok(c.contradiction_id)
    }

    pub fn contradiction(&self, id: &str) -> Result<Contradiction> {
        records::check_id("contradiction_id", id)?;
        contradictions::get(&self.db.begin_read(), id)?
            .ok_or_else(|| Error::not_found("contradiction", id))
    }

    /// Contradictions by case, by criterion, by both or all unresolved,
    /// newest detected first; `unresolved_only` filters the others. Filters
    /// apply while scanning: the result is the first `limit` matches.
    pub fn contradictions(
        &self,
        q: ContradictionQuery,
        unresolved_only: bool,
        limit: usize,
    ) -> Result<Vec<Contradiction>> {
        contradictions::query(&self.db.begin_read(), q, unresolved_only, limit)
    }

    /// Resolves (or dismisses, or reopens) a contradiction.
    pub fn resolve_contradiction(
        &self,
        id: &str,
        resolution: Resolution,
        note: &str,
    ) -> Result<Contradiction> {
        let at = Timestamp::now();
        records::write(self.db, |txn| {
            contradictions::resolve(txn, id, resolution, note, at)
        })
    }
}
