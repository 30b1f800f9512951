//! The version in force of each policy, remembered between queries.
//!
//! Most queries name no version: they ask for the policy's version in force
//! now, a reverse scan of the policy's entries in the effective-time index
//! (space 0x11, [`crate::versions`]). That answer changes only when the index
//! is written or when time reaches the next boundary (the end of the version
//! in force, or the next version's effective start). So it is kept per policy
//! with the snapshot it was read on and the instants it holds for, and a
//! query uses it when:
//!
//! - the engine's watch on the index ([`treestore_storage::watch`]) says no
//!   commit wrote the index after either snapshot (the cached one and the
//!   query's), so both see the same index; and
//! - the query's instant lies in `[from, until)`.
//!
//! A reader on an older snapshot than the last write to the index never uses
//! the cache (nor fills it), so snapshot isolation is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use treestore_storage::{Db, Watch};

use crate::schema::SPACE_EFFECTIVE;
use crate::time::Timestamp;

/// Policies remembered; past this the cache starts afresh.
const MAX_POLICIES: usize = 65_536;

struct Known {
    /// Snapshot the answer was read on.
    seq: u64,
    from: Timestamp,
    until: Option<Timestamp>,
    version: String,
}

pub(crate) struct VersionCache {
    watch: Arc<Watch>,
    known: RwLock<HashMap<String, Known>>,
}

impl VersionCache {
    pub fn new(db: &Db) -> Self {
        VersionCache {
            watch: db.watch(&[SPACE_EFFECTIVE], &[SPACE_EFFECTIVE + 1]),
            known: RwLock::new(HashMap::new()),
        }
    }

    /// The version of `policy` in force at `at` for a reader on snapshot
    /// `seq`, if known.
    pub fn get(&self, seq: u64, policy: &str, at: Timestamp) -> Option<String> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        let k = known.get(policy)?;
        // Read after the entry: an entry put by a reader that saw a newer
        // write to the index comes with a watch value at least that new.
        let last_write = self.watch.last_write();
        let same_index = k.seq >= last_write && seq >= last_write;
        let in_period = k.from <= at && k.until.is_none_or(|u| at < u);
        (same_index && in_period).then(|| k.version.clone())
    }

    /// Remembers that `version` is in force from `from` until `until` (see
    /// [`crate::versions::in_force_until`]) on snapshot `seq`.
    pub fn put(
        &self,
        seq: u64,
        policy: &str,
        from: Timestamp,
        until: Option<Timestamp>,
        version: &str,
    ) {
        if seq < self.watch.last_write() {
            // Read on a snapshot older than the index: never usable.
            return;
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_POLICIES && !known.contains_key(policy) {
            known.clear();
        }
        known.insert(
            policy.to_string(),
            Known {
                seq,
                from,
                until,
                version: version.to_string(),
            },
        );
    }
}
