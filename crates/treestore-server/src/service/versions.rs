//! Version RPCs: GetVersionAsOf, ListVersions, RegisterVersion,
//! GetLatestVersion, DiffVersions.

use tonic::Status;
use treestore::Timestamp;

use super::Ctx;
use crate::convert::{self, from_ts, version_to_pb};
use crate::pb;
use crate::status::{from_error, in_field, limit};

/// Store field names of a version and their wire names.
pub const VERSION_FIELDS: &[(&str, &str)] = &[
    ("supersedes", "supersedes_version_id"),
    ("pageindex_doc_id", "document_id"),
];

pub fn get_version_as_of(
    ctx: &Ctx,
    r: pb::GetVersionAsOfRequest,
) -> Result<pb::PolicyVersion, Status> {
    let at = from_ts("as_of_time", r.as_of_time.as_ref())?.unwrap_or_else(Timestamp::now_observed);
    let v = ctx
        .store
        .versions()
        .as_of(&r.policy_id, at)
        .map_err(from_error)?;
    Ok(version_to_pb(v))
}

pub fn list_versions(
    ctx: &Ctx,
    r: pb::ListVersionsRequest,
) -> Result<pb::ListVersionsResponse, Status> {
    let limit = limit("limit", r.limit)?;
    let versions = ctx
        .store
        .versions()
        .list(&r.policy_id, limit)
        .map_err(from_error)?;
    Ok(pb::ListVersionsResponse {
        versions: versions.into_iter().map(version_to_pb).collect(),
    })
}

pub fn register_version(
    ctx: &Ctx,
    r: pb::RegisterVersionRequest,
) -> Result<pb::RegisterVersionResponse, Status> {
    let v = r
        .version
        .ok_or_else(|| crate::status::invalid("version", "must be set"))?;
    let v = convert::version_from_pb(v, "version")?;
    let v = ctx
        .store
        .versions()
        .register(v)
        .map_err(|e| in_field("version", VERSION_FIELDS, e))?;
    Ok(pb::RegisterVersionResponse {
        success: true,
        message: format!(
            "registered {}/{} effective from {}",
            v.policy_id, v.version_id, v.effective_start
        ),
        version: Some(version_to_pb(v)),
    })
}

pub fn get_latest_version(
    ctx: &Ctx,
    r: pb::GetLatestVersionRequest,
) -> Result<pb::PolicyVersion, Status> {
    let v = ctx
        .store
        .versions()
        .latest(&r.policy_id)
        .map_err(from_error)?;
    Ok(version_to_pb(v))
}

pub fn diff_versions(
    ctx: &Ctx,
    r: pb::DiffVersionsRequest,
) -> Result<pb::DiffVersionsResponse, Status> {
    let d = ctx
        .store
        .versions()
        .diff(&r.policy_id, &r.version_a, &r.version_b)
        .map_err(from_error)?;
    Ok(pb::DiffVersionsResponse {
        added: d.added,
        removed: d.removed,
        changed: d.changed,
    })
}
