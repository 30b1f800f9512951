//! Store errors as gRPC statuses: invalid input is INVALID_ARGUMENT naming the
//! field (or the offending node), missing things NOT_FOUND, lost transaction
//! conflicts ABORTED, a full disk RESOURCE_EXHAUSTED, everything else
//! INTERNAL with a message that never carries a panic or a stack.

use tonic::{Code, Status};
use treestore::Error;

/// The status for a store error.
pub fn from_error(e: Error) -> Status {
    let code = match &e {
        Error::InvalidArgument { .. } | Error::InvalidDocument { .. } => Code::InvalidArgument,
        e if e.is_not_found() => Code::NotFound,
        e if e.is_retryable() => Code::Aborted,
        Error::Storage(s) if is_disk_full(s) => Code::ResourceExhausted,
        // Only inside a cache-only attempt, whose result is discarded.
        Error::Storage(treestore_storage::Error::NotCached { .. }) => Code::Unavailable,
        Error::Storage(treestore_storage::Error::InvalidKey { .. })
        | Error::Storage(treestore_storage::Error::ValueTooLarge { .. }) => Code::InvalidArgument,
        _ => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "internal error");
    }
    Status::new(code, e.to_string())
}

/// The status for a store error about one record of a request: the field an
/// INVALID_ARGUMENT names is renamed to its wire name (`renames`: store name
/// to wire name, matching the whole field or its first path element) and
/// nested under `prefix` (`trajectory.case_id`).
pub fn in_field(prefix: &str, renames: &[(&str, &str)], e: Error) -> Status {
    match e {
        Error::InvalidArgument { field, reason } => {
            let mut field = wire_name(renames, &field);
            if !prefix.is_empty() {
                field = format!("{prefix}.{field}");
            }
            from_error(Error::InvalidArgument { field, reason })
        }
        other => from_error(other),
    }
}

/// The wire name of a store field (`renames`: store name to wire name,
/// matching the whole field or its first path element).
pub fn wire_name(renames: &[(&str, &str)], field: &str) -> String {
    for (store, wire) in renames {
        if field == *store {
            return wire.to_string();
        }
        if let Some(rest) = field.strip_prefix(&format!("{store}.")) {
            return format!("{wire}.{rest}");
        }
    }
    field.to_string()
}

fn is_disk_full(e: &treestore_storage::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.raw_os_error() == Some(28) // ENOSPC
                || io.kind() == std::io::ErrorKind::StorageFull;
        }
        src = s.source();
    }
    false
}

/// INVALID_ARGUMENT naming `field`.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid argument {field}: {reason}"))
}

/// A required string field: non-empty.
pub fn require(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// `Some(v)` for a non-empty string, `None` for empty.
pub fn opt(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// A request limit: 0 = the store's default, negative is invalid.
pub fn limit(field: &str, v: i32) -> Result<usize, Status> {
    usize::try_from(v).map_err(|_| invalid(field, format!("{v} is negative")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes() {
        let s = from_error(Error::InvalidArgument {
            field: "policy_id".into(),
            reason: "must not be empty".into(),
        });
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("policy_id"));
        let s = from_error(Error::NodeNotFound {
            policy: "p".into(),
            version: "v".into(),
            node_id: "n".into(),
        });
        assert_eq!(s.code(), Code::NotFound);
        let s = from_error(Error::Storage(treestore_storage::Error::Conflict));
        assert_eq!(s.code(), Code::Aborted);
        assert_eq!(
            limit("limit", -1).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(limit("limit", 0).unwrap(), 0);
        let e = || Error::InvalidArgument {
            field: "supersedes".into(),
            reason: "x".into(),
        };
        let s = in_field("version", &[("supersedes", "supersedes_version_id")], e());
        assert!(
            s.message().contains("version.supersedes_version_id"),
            "{}",
            s.message()
        );
        assert!(in_field("", &[], e())
            .message()
            .contains("argument supersedes:"));
    }
}
