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
//! | 0x10  | (policy, version) `p` (term)                      | posting list (old)    |
//! | 0x10  | (policy, version) `q` (first term)                | posting block         |
//! | 0x11  | (policy, effective_start, registered_at)            | version index entry   |
//! | 0x12  | (policy, version)                                 | version record (JSON) |
//! | 0x13  | bucket(policy) (term, policy, version)            | term summary (old)    |
//! | 0x14  | bucket(policy) group(term) (policy, version)      | term summary block    |
//! | 0x20  | (execution_id)                                    | tool result (JSON)    |
//! | 0x21  | (case_id, executed_at, execution_id)              | execution_id          |
//! | 0x22  | (tool_name, executed_at, execution_id)            | success, latency      |
//! | 0x23  | (policy_id, executed_at, execution_id)            | execution_id          |
//! | 0x28  | (trajectory_id)                                   | trajectory (JSON)     |
//! | 0x29  | (case_id, started_at, trajectory_id)              | step count            |
//! | 0x2a  | (policy_id, node_id, trajectory_id)               | visits in it          |
//! | 0x30  | (reference_id)                                    | cross-reference (JSON)|
//! | 0x31  | (source policy, source node, type, reference_id)  | empty (outgoing)      |
//! | 0x32  | (target policy, target node, type, reference_id)  | empty (incoming)      |
//! | 0x38  | (contradiction_id)                                | contradiction (JSON)  |
//! | 0x39  | (case_id, detected_at, contradiction_id)          | empty                 |
//! | 0x3a  | (criterion_id, detected_at, contradiction_id)     | empty                 |
//! | 0x3b  | (detected_at, contradiction_id) while unresolved  | empty                 |
//! | 0x40  | (prompt_id, version)                              | prompt template (JSON)|
//! | 0x41  | (prompt_id, created_at, registered_at)            | version               |
//! | 0x42  | (prompt_id, deployed_at, registered_at)           | version               |
//! | 0x48  | (usage_id)                                        | prompt usage (JSON)   |
//! | 0x49  | (case_id, used_at, usage_id)                      | empty                 |
//! | 0x4a  | (prompt_id, version, used_at, usage_id)           | outcome               |
//!
//! All keys of one document share the prefix `0x10 (policy, version)`, so
//! deleting a document is one prefix scan; a subtree is the contiguous ord range
//! `[ord, ord + subtree_size)` of the node table. Space 0x14 is the
//! term-major index cross-policy search reads: a document's summaries of the
//! terms of one group in one block; `bucket` and `group` are 2 bytes each
//! ([`term_bucket`], [`term_group`]). Space 0x13 is its layout before blocks
//! (one entry per term), still read and deleted, no longer written.

use crate::key::{self, Elem, KeyBuilder};

const SPACE_DOC: u8 = 0x10;
/// The effective-time index of versions ([`crate::versions`]).
pub(crate) const SPACE_EFFECTIVE: u8 = 0x11;
const SPACE_VERSIONS: u8 = 0x12;
const SPACE_TERMS: u8 = 0x13;
const SPACE_TERM_BLOCKS: u8 = 0x14;
pub(crate) const SPACE_TOOL_RESULT: u8 = 0x20;
pub(crate) const SPACE_TOOL_BY_CASE: u8 = 0x21;
pub(crate) const SPACE_TOOL_BY_TOOL: u8 = 0x22;
pub(crate) const SPACE_TOOL_BY_POLICY: u8 = 0x23;
pub(crate) const SPACE_TRAJECTORY: u8 = 0x28;
pub(crate) const SPACE_TRAJECTORY_BY_CASE: u8 = 0x29;
pub(crate) const SPACE_VISITS: u8 = 0x2a;
pub(crate) const SPACE_XREF: u8 = 0x30;
pub(crate) const SPACE_XREF_OUT: u8 = 0x31;
pub(crate) const SPACE_XREF_IN: u8 = 0x32;
pub(crate) const SPACE_CONTRADICTION: u8 = 0x38;
pub(crate) const SPACE_CONTRADICTION_BY_CASE: u8 = 0x39;
pub(crate) const SPACE_CONTRADICTION_BY_CRITERION: u8 = 0x3a;
pub(crate) const SPACE_CONTRADICTION_UNRESOLVED: u8 = 0x3b;
pub(crate) const SPACE_PROMPT: u8 = 0x40;
pub(crate) const SPACE_PROMPT_BY_CREATED: u8 = 0x41;
pub(crate) const SPACE_PROMPT_BY_DEPLOYED: u8 = 0x42;
pub(crate) const SPACE_USAGE: u8 = 0x48;
pub(crate) const SPACE_USAGE_BY_CASE: u8 = 0x49;
pub(crate) const SPACE_USAGE_BY_PROMPT: u8 = 0x4a;

/// A key in `space` made of string elements.
pub(crate) fn strs(space: u8, parts: &[&str]) -> KeyBuilder {
    parts
        .iter()
        .fold(KeyBuilder::new().raw(&[space]), |k, p| k.str(p))
}

const T_DOC: u8 = b'd';
const T_NODE: u8 = b'n';
const T_ID: u8 = b'i';
const T_PAGE: u8 = b'g';
const T_SECTION: u8 = b's';
const T_POSTING: u8 = b'p';
const T_POSTING_BLOCK: u8 = b'q';

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

    /// The key of the posting block whose first term is `first_term`; also
    /// the upper bound (inclusive) of the search for the block that would
    /// hold a term: the last block key at or before `posting_block(term)`.
    pub fn posting_block(&self, first_term: &str) -> Vec<u8> {
        KeyBuilder::from(self.table(T_POSTING_BLOCK))
            .str(first_term)
            .finish()
    }

    /// Prefix of the posting-block table.
    pub fn posting_blocks(&self) -> Vec<u8> {
        self.table(T_POSTING_BLOCK)
    }

    /// Whether `key` is a posting-block key of this document.
    pub fn is_posting_block_key(&self, key: &[u8]) -> bool {
        key.strip_prefix(self.prefix.as_slice())
            .is_some_and(|tail| tail.first() == Some(&T_POSTING_BLOCK))
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

/// The record of one registered version of a policy.
pub fn version(policy: &str, version: &str) -> Vec<u8> {
    KeyBuilder::new()
        .raw(&[SPACE_VERSIONS])
        .str(policy)
        .str(version)
        .finish()
}

/// Prefix of a policy's version records.
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

/// Buckets of the term-major index. A document's term summaries go to the
/// bucket of its policy, so storing a document inserts into one bucket's
/// region of the table (which holds about 1/`TERM_BUCKETS` of all documents)
/// instead of at random places across the whole table; a cross-policy search
/// reads each query term once per bucket that holds a policy in scope.
pub const TERM_BUCKETS: u16 = 1024;

/// The term-index bucket of a policy: FNV-1a of its id, so it is the same in
/// every process and release.
pub fn term_bucket(policy: &str) -> u16 {
    (fnv1a(policy.as_bytes()) % u64::from(TERM_BUCKETS)) as u16
}

/// FNV-1a (64-bit) of `bytes`: the same in every process and release.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Term groups of the term-major index: a document's term summaries are
/// stored one block per group (the summaries of its terms in that group), so
/// storing a document writes about `TERM_GROUPS` entries instead of one per
/// distinct term (about 22,000 for a 263-node benchmark document), while a
/// cross-policy search still reads one region per bucket and query term: the
/// group's blocks of the bucket's documents (a few hundred bytes each).
pub const TERM_GROUPS: u16 = 1024;

/// The group of a term: FNV-1a of its bytes, the same in every process and
/// release.
pub fn term_group(term: &str) -> u16 {
    (fnv1a(term.as_bytes()) % u64::from(TERM_GROUPS)) as u16
}

/// Prefix of the summary blocks of one group in one bucket:
/// `0x14 bucket group`.
pub fn summary_blocks(bucket: u16, group: u16) -> Vec<u8> {
    let (b, g) = (bucket.to_be_bytes(), group.to_be_bytes());
    vec![SPACE_TERM_BLOCKS, b[0], b[1], g[0], g[1]]
}

/// The key of a document's summary block of one group:
/// `0x14 bucket(policy) group (policy, version)`.
pub fn summary_block(group: u16, policy: &str, version: &str) -> Vec<u8> {
    SummaryKeys::new(policy, version).block(group)
}

/// Keys of one document's summary blocks, its bucket and key suffix worked
/// out once for all its groups.
pub struct SummaryKeys {
    bucket: u16,
    suffix: Vec<u8>,
}

impl SummaryKeys {
    pub fn new(policy: &str, version: &str) -> Self {
        SummaryKeys {
            bucket: term_bucket(policy),
            suffix: term_key_suffix(policy, version),
        }
    }

    /// The key of the document's block of `group`.
    pub fn block(&self, group: u16) -> Vec<u8> {
        let mut k = summary_blocks(self.bucket, group);
        k.extend_from_slice(&self.suffix);
        k
    }
}

/// What follows the bucket (and term or group) in the key of a (policy,
/// version)'s term summary or summary block.
pub fn term_key_suffix(policy: &str, version: &str) -> Vec<u8> {
    KeyBuilder::new().str(policy).str(version).finish()
}

/// Prefix of every summary in the layout before blocks (space 0x13): a
/// store holding none needs no lookups there.
pub fn old_term_space() -> [u8; 1] {
    [SPACE_TERMS]
}

/// The key of a document's summary of `term` in the layout before blocks:
/// `0x13 bucket (term, policy, version)`.
pub fn term(term: &str, policy: &str, version: &str) -> Vec<u8> {
    KeyBuilder::from(terms(term_bucket(policy), term))
        .str(policy)
        .str(version)
        .finish()
}

/// Prefix of a term's summaries in one bucket in the layout before blocks.
pub fn terms(bucket: u16, term: &str) -> Vec<u8> {
    let b = bucket.to_be_bytes();
    KeyBuilder::new()
        .raw(&[SPACE_TERMS, b[0], b[1]])
        .str(term)
        .finish()
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
        // Block keys sort as their terms do, after the posting lists and
        // before the sections, and are told apart from other keys.
        let block = |t: &str| d.posting_block(t);
        assert!(block("knee") < block("knees") && block("knees") < block("mri"));
        assert!(block("a\0b") < block("a\u{1}") && block("") < block("\0"));
        assert!(d.posting("zz") < block("") && block("\u{10ffff}") < d.sections(""));
        assert!(d.is_posting_block_key(&block("x")));
        assert!(!d.is_posting_block_key(&d.posting("x")));
        assert!(!DocKeys::new("p\0x", "v2").is_posting_block_key(&block("x")));
        let vp = versions("p");
        assert_eq!(
            version_of_key(&vp, &version("p", "v2")).as_deref(),
            Some("v2")
        );
        let tp = terms(term_bucket("p"), "mri");
        assert_eq!(
            policy_version_of_term_key(&tp, &term("mri", "p", "v")),
            Some(("p".into(), "v".into()))
        );
        assert!(d.node(5) < d.node(6) && d.node(255) < d.node(256));
    }

    #[test]
    fn term_buckets_are_stable_and_spread() {
        // Stored keys depend on these values: a changed hash would hide every
        // stored summary from cross-policy search.
        assert_eq!(term_bucket(""), (0xcbf2_9ce4_8422_2325u64 % 1024) as u16);
        assert_eq!(term_bucket("policy-7"), 659);
        let used: std::collections::HashSet<u16> = (0..4096)
            .map(|i| term_bucket(&format!("policy-{i}")))
            .collect();
        assert!(used.len() > 900, "{} buckets used", used.len());
        assert!(used.iter().all(|&b| b < TERM_BUCKETS));
        let key = term("t", "p", "v");
        let prefix = terms(term_bucket("p"), "t");
        assert_eq!([prefix, term_key_suffix("p", "v")].concat(), key);
    }
}
