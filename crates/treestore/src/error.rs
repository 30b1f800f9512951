//! Errors of the document layer: one typed enum callers can match on (not found,
//! invalid input naming the field or node, conflicts, storage faults).

/// Result of the document layer.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong in a document-layer call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy has no stored document, or the named version does not exist.
    #[error("document not found: policy {policy:?}{}", version_suffix(.version))]
    DocumentNotFound {
        policy: String,
        version: Option<String>,
    },
    /// The document exists but has no node with this id.
    #[error("node {node_id:?} not found in policy {policy:?} version {version:?}")]
    NodeNotFound {
        policy: String,
        version: String,
        node_id: String,
    },
    /// The policy has versions, but none is in force at the instant asked
    /// (before the first one, or in a gap after an explicit end); `reason`
    /// says which.
    #[error("no version of policy {policy:?} in force: {reason}")]
    NoVersionInForce { policy: String, reason: String },
    /// A record of the version, metadata or prompt stores does not exist.
    #[error("{kind} {id:?} not found")]
    RecordNotFound { kind: &'static str, id: String },
    /// A request argument is missing or malformed; `field` names it.
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A document failed validation; nothing was written. `node` names the
    /// offending node when the problem is in one.
    #[error("invalid document: {}{reason}", node_prefix(.node))]
    InvalidDocument {
        node: Option<String>,
        reason: String,
    },
    /// A stored record does not decode: the database is damaged or was written by
    /// an incompatible version.
    #[error("corrupt record under key {key}: {reason}")]
    CorruptRecord { key: String, reason: String },
    /// An error of the storage engine (I/O, corruption, conflict).
    #[error(transparent)]
    Storage(#[from] treestore_storage::Error),
}

fn version_suffix(v: &Option<String>) -> String {
    match v {
        Some(v) => format!(" version {v:?}"),
        None => String::new(),
    }
}

fn node_prefix(n: &Option<String>) -> String {
    match n {
        Some(n) => format!("node {n:?}: "),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_node(node: &str, reason: impl Into<String>) -> Self {
        Error::InvalidDocument {
            node: Some(node.to_string()),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_doc(reason: impl Into<String>) -> Self {
        Error::InvalidDocument {
            node: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::RecordNotFound {
            kind,
            id: id.into(),
        }
    }

    pub(crate) fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> Self {
        Error::CorruptRecord {
            key: printable(key),
            reason: reason.to_string(),
        }
    }

    /// Whether the operation may succeed if retried (a transaction conflict).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Storage(e) if e.is_retryable())
    }

    /// Whether this is a not-found error (document, node, version in force or record).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::DocumentNotFound { .. }
                | Error::NodeNotFound { .. }
                | Error::NoVersionInForce { .. }
                | Error::RecordNotFound { .. }
        )
    }
}

/// A key rendered for messages: printable ASCII as is, other bytes as `\xNN`.
fn printable(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}
