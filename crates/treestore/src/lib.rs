//! TreeStore's document layer, built on [`treestore_storage`]: versioned
//! document trees (forests of PageIndex sections), their structural, page and
//! section indexes, BM25 search, and PageIndex import.
//!
//! - [`model`]: documents, nodes, limits.
//! - [`store`]: [`TreeStore`], the write path (`store_document`, `delete_document`).
//! - [`reader`]: queries on a consistent snapshot.
//! - [`plan`]: validation and derived fields.
//! - [`schema`]: the key layout; [`codec`]: the record encodings; [`key`]: tuple keys.
//! - [`analyzer`] and [`search`]: text analysis and BM25.
//! - [`pageindex`]: import of PageIndex JSON (both shapes).
//! - [`time`](mod@time): timestamps.

pub mod analyzer;
pub mod codec;
pub mod error;
pub mod key;
pub mod model;
pub mod pageindex;
pub mod plan;
pub mod reader;
pub mod schema;
pub mod search;
pub mod store;
pub mod time;

pub use error::{Error, Result};
pub use key::{Elem, KeyBuilder, KeyError};
pub use model::{Document, Node, SearchHit, StoreReport};
pub use reader::{Reader, SearchScope};
pub use store::TreeStore;
pub use time::Timestamp;
pub use treestore_storage::{Durability, Options};
