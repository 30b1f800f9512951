//! Key layout of the document layer, in the engine's single ordered key space.
//!
//! Every key starts with a one-byte space tag; tuples after it use the
//! order-preserving encoding of [`crate::key`], so ids may hold any bytes.
//! `ord` is a node's position in document order (pre-order, 0-based), written
//! as 4 bytes big endian so byte order is numeric order.
//!
//! | space | key                                              | value                 |
//! |-------|--------------------------------------------------|-----------------------|
//! | 0x10  | (policy, version) `d`                             | document record       |
//! | 0x10  | (policy, version) `n` ord                         | node record           |
//! | 0x10  | (policy, version) `i` (node_id)                   | ord                   |
//! | 0x10  | (policy, version) `g` page ord                    | empty (page index)    |
//! | 0x10  | (policy, version) `s` (section_path) ord          | empty                 |
//! | 0x10  | (policy, version) `p` (term)                      | posting list          |
//! | 0x11  | (policy)                                          | current version       |
//! | 0x12  | (policy, version)                                 | stored-at time        |
//! | 0x13  | (term, policy, version)                           | term summary          |
//!
//! All keys of one document share the prefix `0x10 (policy, version)`, so
//! deleting a document is one prefix scan; a subtree is the contiguous ord range
//! `[ord, ord + subtree_size)` of the node table. Space 0x13 is the term-major
//! index cross-policy search reads.

use crate::key::{self, Elem, KeyBuilder};

const SPACE_DOC: u8 = 0x10;
const SPACE_CURRENT: u8 = 0x11;
const SPACE_VERSIONS: u8 = 0x12;
const SPACE_TERMS: u8 = 0x13;

const T_DOC: u8 = b'd';
const T_NODE: u8 = b'n';
const T_ID: u8 = b'i';
const T_PAGE: u8 = b'g';
const T_SECTION: u8 = b's';
const T_POSTING: u8 = b'p';

/// Keys of one document version's tables.
#[derive(Debug, Clone)]
pub struct DocKeys {
    prefix: Vec<u8>,
}

impl DocKeys {
    pub fn new(policy: &str, version: &str) -> Self {
        DocKeys {
            prefix: KeyBuilder::new()
                .raw(&[SPACE_DOC])
                .str(policy)
                .str(version)
                .finish(),
        }
    }

    /// Prefix of every key of this document.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn table(&self, t: u8) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 16);
        k.extend_from_slice(&self.prefix);
        k.push(t);
        k
    }

    pub fn document(&self) -> Vec<u8> {
        self.table(T_DOC)
    }

    pub fn node(&self, ord: u32) -> Vec<u8> {
        let mut k = self.table(T_NODE);
        k.extend_from_slice(&ord.to_be_bytes());
        k
    }

    /// Prefix of the node table (scanning it yields nodes in document order).
    pub fn nodes(&self) -> Vec<u8> {
        self.table(T_NODE)
    }

    /// The ord of a node-table key of this document.
    pub fn ord_of_node_key(&self, key: &[u8]) -> Option<u32> {
        let tail = key
            .strip_prefix(self.prefix.as_slice())?
            .strip_prefix(&[T_NODE])?;
        Some(u32::from_be_bytes(tail.try_into().ok()?))
    }

    pub fn id(&self, node_id: &str) -> Vec<u8> {
        KeyBuilder::from(self.table(T_ID)).str(node_id).finish()
    }

    pub fn page(&self, page: u32, ord: u32) -> Vec<u8> {
        let mut k = self.pages(page);
        k.extend_from_slice(&ord.to_be_bytes());
        k
    }

    /// Prefix of the page-index entries of one page.
    pub fn pages(&self, page: u32) -> Vec<u8> {
        let mut k = self.table(T_PAGE);
        k.extend_from_slice(&page.to_be_bytes());
        k
    }

    /// The ord of a page-index key (its last 4 bytes).
    pub fn ord_of_suffix(key: &[u8]) -> Option<u32> {
        let tail = key.get(key.len().checked_sub(4)?..)?;
        Some(u32::from_be_bytes(tail.try_into().ok()?))
    }

    pub fn section(&self, path: &str, ord: u32) -> Vec<u8> {
        let mut k = self.sections(path);
        k.extend_from_slice(&ord.to_be_bytes());
        k
    }

    /// Prefix of the section-index entries of one section path.
    pub fn sections(&self, path: &str) -> Vec<u8> {
        KeyBuilder::from(self.table(T_SECTION)).str(path).finish()
    }

    pub fn posting(&self, term: &str) -> Vec<u8> {
        KeyBuilder::from(self.table(T_POSTING)).str(term).finish()
    }

    /// Prefix of the posting table.
    pub fn postings(&self) -> Vec<u8> {
        self.table(T_POSTING)
    }

    /// The term of a posting-table key of this document.
    pub fn term_of_posting_key(&self, key: &[u8]) -> Option<String> {
        let tail = key
            .strip_prefix(self.prefix.as_slice())?
            .strip_prefix(&[T_POSTING])?;
        match key::decode(tail).ok()?.as_slice() {
            [Elem::Bytes(t)] => String::from_utf8(t.clone()).ok(),
            _ => None,
        }
    }
}

/// The current-version pointer of a policy.
pub fn current(policy: &str) -> Vec<u8> {
    KeyBuilder::new().raw(&[SPACE_CURRENT]).str(policy).finish()
}

/// Prefix of every current-version pointer.
pub fn currents() -> Vec<u8> {
    vec![SPACE_CURRENT]
}

/// The policy of a current-version key.
pub fn policy_of_current_key(key: &[u8]) -> Option<String> {
    match key::decode(key.strip_prefix(&[SPACE_CURRENT])?)
        .ok()?
        .as_slice()
    {
        [Elem::Bytes(p)] => String::from_utf8(p.clone()).ok(),
        _ => None,
    }
}

/// The entry of one version in a policy's version list.
pub fn version(policy: &str, version: &str) -> Vec<u8> {
    KeyBuilder::new()
        .raw(&[SPACE_VERSIONS])
        .str(policy)
        .str(version)
        .finish()
}

/// Prefix of a policy's version list.
pub fn versions(policy: &str) -> Vec<u8> {
    KeyBuilder::new()
        .raw(&[SPACE_VERSIONS])
        .str(policy)
        .finish()
}

/// The version id of a version-list key under `prefix` ([`versions`]).
pub fn version_of_key(prefix: &[u8], key: &[u8]) -> Option<String> {
    match key::decode(key.strip_prefix(prefix)?).ok()?.as_slice() {
        [Elem::Bytes(v)] => String::from_utf8(v.clone()).ok(),
        _ => None,
    }
}

/// The summary of a term's postings in one document version.
pub fn term(term: &str, policy: &str, version: &str) -> Vec<u8> {
    KeyBuilder::new()
        .raw(&[SPACE_TERMS])
        .str(term)
        .str(policy)
        .str(version)
        .finish()
}

/// Prefix of a term's summaries across all documents.
pub fn terms(term: &str) -> Vec<u8> {
    KeyBuilder::new().raw(&[SPACE_TERMS]).str(term).finish()
}

/// The (policy, version) of a term-summary key under `prefix` ([`terms`]).
pub fn policy_version_of_term_key(prefix: &[u8], key: &[u8]) -> Option<(String, String)> {
    match key::decode(key.strip_prefix(prefix)?).ok()?.as_slice() {
        [Elem::Bytes(p), Elem::Bytes(v)] => Some((
            String::from_utf8(p.clone()).ok()?,
            String::from_utf8(v.clone()).ok()?,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_prefixes_never_nest() {
        // "a" + "bc" and "ab" + "c" must not share a document prefix.
        let a = DocKeys::new("a", "bc");
        let b = DocKeys::new("ab", "c");
        assert!(!a.node(1).starts_with(b.prefix()));
        assert!(!b.node(1).starts_with(a.prefix()));
        let c = DocKeys::new("a", "b");
        assert!(!a.node(0).starts_with(c.prefix()));
    }

    #[test]
    fn keys_decode_back() {
        let d = DocKeys::new("p\0x", "v1");
        assert_eq!(d.ord_of_node_key(&d.node(77)), Some(77));
        assert_eq!(DocKeys::ord_of_suffix(&d.page(3, 9)), Some(9));
        assert_eq!(
            d.term_of_posting_key(&d.posting("mri")).as_deref(),
            Some("mri")
        );
        assert_eq!(
            policy_of_current_key(&current("p\0x")).as_deref(),
            Some("p\0x")
        );
        let vp = versions("p");
        assert_eq!(
            version_of_key(&vp, &version("p", "v2")).as_deref(),
            Some("v2")
        );
        let tp = terms("mri");
        assert_eq!(
            policy_version_of_term_key(&tp, &term("mri", "p", "v")),
            Some(("p".into(), "v".into()))
        );
        assert!(d.node(5) < d.node(6) && d.node(255) < d.node(256));
    }
}
