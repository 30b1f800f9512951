//! TreeStore's document layer, built on [`treestore_storage`].
//!
//! So far this crate holds the order-preserving tuple encoding ([`key`]) that the
//! document, node and index key spaces are built from; the document store,
//! indexes, search and the version, metadata and prompt stores build on it.

pub mod key;

pub use key::{Elem, KeyBuilder, KeyError};
