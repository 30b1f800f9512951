//! TreeStore's document layer, built on [`treestore_storage`]: versioned
//! document trees (forests of PageIndex sections), their structural, page and
//! section indexes, BM25 search, and PageIndex import.
//!
//! - [`model`]: documents, nodes, limits.
//! - [`store`]: [`TreeStore`], the write path (`store_document`, `delete_document`).
//! - [`reader`]: queries on a consistent snapshot.
//! - [`plan`]: validation and derived fields.
//! - [`schema`]: the key layout; [`codec`]: the record encodings; [`key`]: tuple keys.
//! - [`analyzer`] and [`search`]: text analysis and BM25; `term_cache`: the
//!   word-to-term cache indexing uses.
//! - [`pageindex`]: import of PageIndex JSON (both shapes).
//! - [`versions`]: the version store (effective periods, as-of queries, diffs);
//!   `version_cache`: each policy's version in force, kept between queries.
//! - [`metadata`]: tool results, trajectories, cross-references, contradictions.
//! - [`prompts`]: prompt templates in versions and their usage.
//! - `parallel`: splitting one query's or document's work across threads.
//! - [`batch`]: several writes of any store in one atomic transaction.
//! - [`ids`]: generated, time-ordered record ids.
//! - `id_guess`: finding a node by a PageIndex-style id (its position)
//!   without the id index.
//! - [`time`](mod@time): timestamps.

pub mod analyzer;
pub mod batch;
pub mod codec;
mod cpus;
pub mod error;
mod id_guess;
pub mod ids;
pub mod key;
pub mod metadata;
pub mod model;
pub mod pageindex;
mod parallel;
pub mod plan;
pub mod prompts;
pub mod reader;
mod records;
pub mod schema;
pub mod search;
pub mod store;
mod term_cache;
pub mod time;
mod version_cache;
pub mod versions;

pub use batch::WriteOp;
pub use error::{Error, Result};
pub use key::{Elem, KeyBuilder, KeyError};
pub use metadata::MetadataStore;
pub use model::{Document, Node, SearchHit, StoreReport};
pub use prompts::PromptStore;
pub use reader::{NodeItem, Reader, SearchScope};
pub use records::{DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT};
pub use store::TreeStore;
pub use time::Timestamp;
pub use treestore_storage::{Durability, Options};
pub use versions::{PolicyVersion, VersionDiff, VersionSpec, VersionStore};
