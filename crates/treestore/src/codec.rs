//! Binary encoding of the records the document layer stores: documents, nodes,
//! current-version pointers, posting lists. Every record starts with a format
//! byte; integers are LEB128 varints (signed ones zigzag), strings and lists are
//! length-prefixed. Decoding checks every length and returns [`CodecError`]
//! instead of panicking on damaged bytes.

use std::collections::BTreeMap;

use crate::model::{Document, Node};
use crate::time::Timestamp;

/// Format byte of the records written by this version.
pub const FORMAT: u8 = 1;

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    #[error("varint too long at byte {0}")]
    BadVarint(usize),
    #[error("string at byte {0} is not UTF-8")]
    BadUtf8(usize),
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("value out of range at byte {0}")]
    OutOfRange(usize),
}

/// Appends record fields to a buffer.
#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn with_format() -> Self {
        Enc(vec![FORMAT])
    }
    pub fn u64(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(((v << 1) ^ (v >> 63)) as u64)
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn strs(&mut self, v: &[String]) -> &mut Self {
        self.u64(v.len() as u64);
        for s in v {
            self.str(s);
        }
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads record fields from a byte slice.
pub struct Dec<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Dec<'a> {
    /// Starts a record: checks its format byte.
    pub fn record(buf: &'a [u8]) -> Result<Self, CodecError> {
        match buf.first() {
            Some(&FORMAT) => Ok(Dec { buf, at: 1 }),
            Some(&f) => Err(CodecError::UnknownFormat(f)),
            None => Err(CodecError::Truncated(0)),
        }
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        let start = self.at;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or(CodecError::Truncated(self.at))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::BadVarint(start))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let at = self.at;
        u32::try_from(self.u64()?).map_err(|_| CodecError::OutOfRange(at))
    }
    pub fn read_len(&mut self) -> Result<usize, CodecError> {
        let at = self.at;
        let n = self.u64()?;
        // A length can never exceed the bytes left (every element takes >= 1 byte).
        if n > (self.buf.len() - self.at) as u64 {
            return Err(CodecError::Truncated(at));
        }
        Ok(n as usize)
    }
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        let v = self.u64()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.read_len()?;
        let b = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(b)
    }
    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        let at = self.at;
        simdutf8::basic::from_utf8(self.bytes()?).map_err(|_| CodecError::BadUtf8(at))
    }
    pub fn string(&mut self) -> Result<String, CodecError> {
        self.str().map(str::to_string)
    }
    pub fn strings(&mut self) -> Result<Vec<String>, CodecError> {
        let n = self.read_len()?;
        (0..n).map(|_| self.string()).collect()
    }
    pub fn u32s(&mut self) -> Result<Vec<u32>, CodecError> {
        let n = self.read_len()?;
        (0..n).map(|_| self.u32()).collect()
    }
    pub fn end(self) -> Result<(), CodecError> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

/// The structural part of a node record, decodable without the strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHeader {
    pub depth: u32,
    /// Document-order position of the parent; `None` for a top-level node.
    pub parent_ord: Option<u32>,
    /// Nodes in the subtree rooted here, this one included: the subtree is the
    /// ords `[ord, ord + subtree_size)`.
    pub subtree_size: u32,
    pub child_ords: Vec<u32>,
}

pub fn encode_node(h: &NodeHeader, n: &Node) -> Vec<u8> {
    let mut e = Enc::with_format();
    e.u64(h.depth.into())
        .u64(h.parent_ord.map_or(0, |p| u64::from(p) + 1))
        .u64(h.subtree_size.into());
    e.u64(h.child_ords.len() as u64);
    for &c in &h.child_ords {
        e.u64(c.into());
    }
    e.str(&n.node_id)
        .str(n.parent_id.as_deref().unwrap_or(""))
        .str(&n.title)
        .u64(n.page_start.into())
        .u64(n.page_end.into())
        .str(&n.summary)
        .str(&n.section_path)
        .strs(&n.child_ids)
        .strs(&n.keywords)
        .strs(&n.see_also)
        .i64(n.created_at.unix_nanos())
        .i64(n.updated_at.unix_nanos())
        .str(&n.text);
    e.finish()
}

fn decode_header(d: &mut Dec<'_>) -> Result<NodeHeader, CodecError> {
    let depth = d.u32()?;
    let at = d.at;
    let parent_ord = match d.u64()? {
        0 => None,
        p => Some(u32::try_from(p - 1).map_err(|_| CodecError::OutOfRange(at))?),
    };
    let subtree_size = d.u32()?;
    let child_ords = d.u32s()?;
    Ok(NodeHeader {
        depth,
        parent_ord,
        subtree_size,
        child_ords,
    })
}

/// Decodes only the structural header of a node record.
pub fn decode_node_header(buf: &[u8]) -> Result<NodeHeader, CodecError> {
    decode_header(&mut Dec::record(buf)?)
}

/// The structural header of a node record if the record is node `node_id`'s
/// (`None` when it holds another node).
pub fn decode_node_header_if_id(
    buf: &[u8],
    node_id: &str,
) -> Result<Option<NodeHeader>, CodecError> {
    let mut d = Dec::record(buf)?;
    let h = decode_header(&mut d)?;
    Ok((d.str()? == node_id).then_some(h))
}

/// Decodes with `decode` a part at the front of a record given as pieces:
/// from the first piece when it holds that part, else from the joined record
/// (which also gives any error exactly).
pub fn decode_front<T>(
    pieces: &[&[u8]],
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    match pieces {
        [] => decode(&[]),
        [one] => decode(one),
        [first, ..] => decode(first).or_else(|_| decode(&pieces.concat())),
    }
}

/// Decodes a whole node record.
pub fn decode_node(buf: &[u8]) -> Result<(NodeHeader, Node), CodecError> {
    let mut d = Dec::record(buf)?;
    let (h, mut node) = decode_node_but_text(&mut d)?;
    node.text = d.string()?;
    d.end()?;
    Ok((h, node))
}

/// Decodes a node record given as pieces whose concatenation is the record
/// (as a scan hands over a record spread over several pages). When
/// everything before the text lies in the first piece (the usual case: the
/// text, last in the record, is most of it), the text is copied from the
/// pieces straight into its string; otherwise the pieces are joined first.
/// Errors are those of [`decode_node`] on the joined record.
pub fn decode_node_pieces(pieces: &[&[u8]]) -> Result<(NodeHeader, Node), CodecError> {
    match pieces {
        [] => decode_node(&[]),
        [one] => decode_node(one),
        [first, rest @ ..] => match decode_node_split(first, rest) {
            Some(decoded) => Ok(decoded),
            None => decode_node(&pieces.concat()),
        },
    }
}

/// [`decode_node_pieces`] when all but the text lies in `first` and the
/// record is well formed; `None` otherwise (the caller then decodes the
/// joined record, which reports any error exactly).
fn decode_node_split(first: &[u8], rest: &[&[u8]]) -> Option<(NodeHeader, Node)> {
    let mut d = Dec::record(first).ok()?;
    let (h, mut node) = decode_node_but_text(&mut d).ok()?;
    let text_len = usize::try_from(d.u64().ok()?).ok()?;
    let total = first.len() + rest.iter().map(|p| p.len()).sum::<usize>();
    // The text runs exactly to the end of the record.
    if d.at > first.len() || total - d.at != text_len {
        return None;
    }
    let mut text = Vec::with_capacity(text_len);
    text.extend_from_slice(&first[d.at..]);
    for piece in rest {
        text.extend_from_slice(piece);
    }
    simdutf8::basic::from_utf8(&text).ok()?;
    // SAFETY: `text` was checked to be valid UTF-8 on the line above and is
    // not changed between that check and this conversion.
    node.text = unsafe { String::from_utf8_unchecked(text) };
    Some((h, node))
}

/// The fields of a node record before its text (the last field), with the
/// node's text left empty.
fn decode_node_but_text(d: &mut Dec<'_>) -> Result<(NodeHeader, Node), CodecError> {
    let h = decode_header(d)?;
    let node_id = d.string()?;
    let parent = d.str()?;
    let node = Node {
        node_id,
        parent_id: (!parent.is_empty()).then(|| parent.to_string()),
        title: d.string()?,
        page_start: d.u32()?,
        page_end: d.u32()?,
        summary: d.string()?,
        section_path: d.string()?,
        child_ids: d.strings()?,
        keywords: d.strings()?,
        see_also: d.strings()?,
        created_at: Timestamp::from_unix_nanos(d.i64()?),
        updated_at: Timestamp::from_unix_nanos(d.i64()?),
        text: String::new(),
        depth: h.depth,
    };
    Ok((h, node))
}

/// What the document record holds besides the [`Document`] fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocStats {
    /// Orders the versions of a policy by when they were stored.
    pub stored_at: Timestamp,
    pub node_count: u32,
    /// Sum of the weighted lengths of all nodes (for BM25's average length).
    pub total_len: u64,
    /// Document-order positions of the top-level nodes.
    pub top_ords: Vec<u32>,
}

pub fn encode_document(doc: &Document, s: &DocStats) -> Vec<u8> {
    let mut e = Enc::with_format();
    e.str(&doc.pageindex_doc_id)
        .str(doc.root_node_id.as_deref().unwrap_or(""));
    e.u64(doc.metadata.len() as u64);
    for (k, v) in &doc.metadata {
        e.str(k).str(v);
    }
    e.i64(doc.created_at.unix_nanos())
        .i64(doc.updated_at.unix_nanos())
        .i64(s.stored_at.unix_nanos())
        .u64(s.node_count.into())
        .u64(s.total_len);
    e.u64(s.top_ords.len() as u64);
    for &o in &s.top_ords {
        e.u64(o.into());
    }
    e.finish()
}

pub fn decode_document(
    policy: &str,
    version: &str,
    buf: &[u8],
) -> Result<(Document, DocStats), CodecError> {
    let mut d = Dec::record(buf)?;
    let pageindex_doc_id = d.string()?;
    let root = d.str()?;
    let n = d.read_len()?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n {
        let k = d.string()?;
        metadata.insert(k, d.string()?);
    }
    let doc = Document {
        policy_id: policy.to_string(),
        version_id: version.to_string(),
        pageindex_doc_id,
        root_node_id: (!root.is_empty()).then(|| root.to_string()),
        metadata,
        created_at: Timestamp::from_unix_nanos(d.i64()?),
        updated_at: Timestamp::from_unix_nanos(d.i64()?),
    };
    let stats = DocStats {
        stored_at: Timestamp::from_unix_nanos(d.i64()?),
        node_count: d.u32()?,
        total_len: d.u64()?,
        top_ords: d.u32s()?,
    };
    d.end()?;
    Ok((doc, stats))
}

/// A policy's version in force, with the statistics cross-policy search needs
/// (read from the version index, not from each document record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub version_id: String,
    pub node_count: u32,
    pub total_len: u64,
}

/// Most (tf, len) points a term summary keeps.
pub const MAX_PEAKS: usize = 4;

/// Summary of one term's postings in one document: enough to bound the score
/// any of its nodes can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TermSummary {
    /// Nodes containing the term.
    pub count: u32,
    /// Highest weighted term frequency among them.
    pub max_tf: u32,
    /// Shortest weighted length among them.
    pub min_len: u32,
    /// Up to [`MAX_PEAKS`] (tf, len) points such that every posting has a
    /// point with at least its tf and at most its length: BM25 grows with tf
    /// and falls with length, so the best score any node reaches for the term
    /// is at most the best over these points, and equal to it when the points
    /// are the postings no other posting beats on both. Empty (`peak_count`
    /// 0) in summaries written before peaks existed: then `(max_tf, min_len)`
    /// is the bound.
    pub peaks: [(u32, u32); MAX_PEAKS],
    pub peak_count: u8,
}

impl TermSummary {
    /// The summary of a posting list.
    pub fn of(postings: &[Posting]) -> Self {
        let mut front = Front::new(postings);
        // Each posting is sorted as one integer, length in the high half
        // and tf inverted in the low half: by length, then highest tf first.
        // Most terms are in a node or two: short lists are sorted on the
        // stack.
        const ON_STACK: usize = 32;
        let mut stack = [0u64; ON_STACK];
        let mut heap = Vec::new();
        let by_len: &mut [u64] = if postings.len() <= ON_STACK {
            &mut stack[..postings.len()]
        } else {
            heap.resize(postings.len(), 0);
            &mut heap
        };
        for (slot, p) in by_len.iter_mut().zip(postings) {
            *slot = u64::from(p.len) << 32 | u64::from(!p.tf);
        }
        by_len.sort_unstable();
        for &k in by_len.iter() {
            front.push((k >> 32) as u32, !(k as u32));
        }
        front.finish()
    }

    /// [`TermSummary::of`] a posting list of the document whose nodes
    /// `order` ranks by length: the same summary, found by visiting the
    /// postings in that order instead of sorting each list.
    pub fn of_ordered(postings: &[Posting], order: &mut LengthOrder) -> Self {
        let words = order.bits.len();
        // A walk costs a word per 64 nodes of the document, a sort a few
        // steps per posting: short lists of a large document are sorted.
        // The walk needs the list as an index builds it: ords strictly
        // increasing, of nodes the order knows, with their lengths.
        let walk = postings.len() > 1
            && words <= 4 * postings.len()
            && postings.windows(2).all(|w| w[0].ord < w[1].ord)
            && postings.iter().all(|p| {
                order
                    .rank_of_ord
                    .get(p.ord as usize)
                    .is_some_and(|&r| order.len_of_rank[r as usize] == p.len)
            });
        if !walk {
            return Self::of(postings);
        }
        let mut front = Front::new(postings);
        let (mut lo, mut hi) = (usize::MAX, 0);
        for p in postings {
            let r = order.rank_of_ord[p.ord as usize] as usize;
            order.bits[r / 64] |= 1 << (r % 64);
            order.tf_of_rank[r] = p.tf;
            lo = lo.min(r / 64);
            hi = hi.max(r / 64);
        }
        for w in lo..=hi {
            let mut bits = std::mem::take(&mut order.bits[w]);
            while bits != 0 {
                let r = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                front.push(order.len_of_rank[r], order.tf_of_rank[r]);
            }
        }
        front.finish()
    }

    /// The points that bound the term's score in this document.
    pub fn bound_points(&self) -> &[(u32, u32)] {
        match self.peak_count {
            0 => std::slice::from_ref(&self.peaks[0]),
            n => &self.peaks[..n as usize],
        }
    }
}

/// Builds a [`TermSummary`]'s peaks from postings given by length, shortest
/// first (in any order among equal lengths): the postings no other beats on
/// both tf and length, each one whose tf exceeds every shorter posting's.
/// The front's tf and length both increase along it; beyond [`MAX_PEAKS`]
/// points, the shortest `MAX_PEAKS - 1` stay and the rest become one point
/// that dominates them all (their highest tf, the last point's, and their
/// shortest length, the first's).
struct Front {
    s: TermSummary,
    /// Points found, those merged into the last peak included.
    points: usize,
    /// Highest tf so far and the length it was found at.
    best: Option<(u32, u32)>,
}

impl Front {
    fn new(postings: &[Posting]) -> Self {
        let max_tf = postings.iter().map(|p| p.tf).max().unwrap_or(0);
        let min_len = postings.iter().map(|p| p.len).min().unwrap_or(0);
        Front {
            s: TermSummary {
                count: postings.len() as u32,
                max_tf,
                min_len,
                // Unused slots hold the corner point, as decoding fills them.
                peaks: [(max_tf, min_len); MAX_PEAKS],
                peak_count: 0,
            },
            points: 0,
            best: None,
        }
    }

    fn push(&mut self, len: u32, tf: u32) {
        match self.best {
            Some((best, _)) if tf <= best => {}
            // As long as the last point and higher: it takes that point's
            // place (sorted by tf too, it would have come first).
            Some((_, at)) if at == len => {
                self.s.peaks[(self.points - 1).min(MAX_PEAKS - 1)].0 = tf;
                self.best = Some((tf, len));
            }
            _ => {
                if self.points < MAX_PEAKS {
                    self.s.peaks[self.points] = (tf, len);
                } else {
                    self.s.peaks[MAX_PEAKS - 1].0 = tf;
                }
                self.points += 1;
                self.best = Some((tf, len));
            }
        }
    }

    fn finish(mut self) -> TermSummary {
        self.s.peak_count = self.points.min(MAX_PEAKS) as u8;
        self.s
    }
}

/// A document's nodes ranked by weighted length (shortest first, then by
/// ord), with the scratch space [`TermSummary::of_ordered`] walks them in.
pub struct LengthOrder {
    rank_of_ord: Vec<u32>,
    len_of_rank: Vec<u32>,
    tf_of_rank: Vec<u32>,
    /// One bit per rank; all clear between uses.
    bits: Vec<u64>,
}

impl LengthOrder {
    /// The order of nodes whose weighted lengths are `lens` (by ord).
    pub fn new(lens: &[u32]) -> Self {
        let mut ords: Vec<u32> = (0..lens.len() as u32).collect();
        ords.sort_unstable_by_key(|&o| (lens[o as usize], o));
        let mut rank_of_ord = vec![0u32; lens.len()];
        for (r, &o) in ords.iter().enumerate() {
            rank_of_ord[o as usize] = r as u32;
        }
        LengthOrder {
            rank_of_ord,
            len_of_rank: ords.iter().map(|&o| lens[o as usize]).collect(),
            tf_of_rank: vec![0; lens.len()],
            bits: vec![0; lens.len().div_ceil(64)],
        }
    }
}

/// One posting: a node (by document-order position) containing a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub ord: u32,
    /// Weighted term frequency.
    pub tf: u32,
    /// Weighted length of the node.
    pub len: u32,
}

/// Appends a summary: count, max tf, min length, then the peaks.
fn put_summary(e: &mut Enc, s: &TermSummary) {
    e.u64(s.count.into())
        .u64(s.max_tf.into())
        .u64(s.min_len.into())
        .u64(s.peak_count.into());
    for (tf, len) in &s.peaks[..usize::from(s.peak_count)] {
        e.u64((*tf).into()).u64((*len).into());
    }
}

/// A term-index entry of the layout before summary blocks (see
/// [`encode_summary_blocks`]).
pub fn encode_summary(s: &TermSummary) -> Vec<u8> {
    let mut e = Enc::with_format();
    put_summary(&mut e, s);
    e.finish()
}

fn decode_summary_fields(d: &mut Dec<'_>) -> Result<TermSummary, CodecError> {
    let (count, max_tf, min_len) = (d.u32()?, d.u32()?, d.u32()?);
    Ok(TermSummary {
        count,
        max_tf,
        min_len,
        peaks: [(max_tf, min_len); MAX_PEAKS],
        peak_count: 0,
    })
}

/// Reads a summary written by [`put_summary`] that ends with `d`'s buffer
/// (entries without peaks, from before they existed, decode with none).
fn get_summary(mut d: Dec<'_>) -> Result<TermSummary, CodecError> {
    let mut s = decode_summary_fields(&mut d)?;
    if d.at < d.buf.len() {
        let at = d.at;
        let n = d.u32()?;
        if n as usize > MAX_PEAKS {
            return Err(CodecError::OutOfRange(at));
        }
        for i in 0..n as usize {
            s.peaks[i] = (d.u32()?, d.u32()?);
        }
        s.peak_count = n as u8;
    }
    d.end()?;
    Ok(s)
}

/// Decodes a term-index entry of the layout before summary blocks.
pub fn decode_summary(buf: &[u8]) -> Result<TermSummary, CodecError> {
    get_summary(Dec::record(buf)?)
}

/// Appends a posting list: count, highest tf, shortest length, then each
/// posting with its ord as the difference from the previous one (ords
/// strictly increase).
fn put_postings(e: &mut Enc, postings: &[Posting]) {
    let max_tf = postings.iter().map(|p| p.tf).max().unwrap_or(0);
    let min_len = postings.iter().map(|p| p.len).min().unwrap_or(0);
    e.u64(postings.len() as u64)
        .u64(max_tf.into())
        .u64(min_len.into());
    let mut prev = 0u32;
    for p in postings {
        e.u64((p.ord - prev).into())
            .u64(p.tf.into())
            .u64(p.len.into());
        prev = p.ord;
    }
}

/// Reads a posting list written by [`put_postings`] into `out`.
fn get_postings(d: &mut Dec<'_>, out: &mut Vec<Posting>) -> Result<TermSummary, CodecError> {
    let s = decode_summary_fields(d)?;
    out.clear();
    let mut ord: u32 = 0;
    for i in 0..s.count {
        let at = d.at;
        let delta = d.u32()?;
        ord = ord
            .checked_add(delta)
            .filter(|_| i == 0 || delta > 0)
            .ok_or(CodecError::OutOfRange(at))?;
        out.push(Posting {
            ord,
            tf: d.u32()?,
            len: d.u32()?,
        });
    }
    Ok(s)
}

/// One term's posting list as its own record: the layout of documents
/// stored before posting blocks (still read, no longer written).
pub fn encode_postings(postings: &[Posting]) -> Vec<u8> {
    let mut e = Enc::with_format();
    put_postings(&mut e, postings);
    e.finish()
}

pub fn decode_postings(buf: &[u8], out: &mut Vec<Posting>) -> Result<TermSummary, CodecError> {
    let mut d = Dec::record(buf)?;
    let s = get_postings(&mut d, out)?;
    d.end()?;
    Ok(s)
}

/// Encoded size at which a posting block is closed and the next term starts
/// a new one. Below half a 4 KiB page, so a block stays inline in its leaf
/// (one page read per lookup); large enough that a document's ~20,000 terms
/// make hundreds of entries rather than one each.
pub const POSTING_BLOCK_BYTES: usize = 1536;

/// Builds posting blocks: runs of consecutive terms (in term order) with
/// their posting lists, each block one record. Layout of a block: the format
/// byte, then per term its string, the byte length of its list and the list
/// (as [`encode_postings`] without the format byte), terms strictly
/// increasing. A term whose list alone passes the size is a block of its own.
#[derive(Default)]
pub struct PostingBlocks {
    blocks: Vec<(String, Vec<u8>)>,
    current: Option<(String, Enc)>,
}

impl PostingBlocks {
    /// Adds the next term (greater than every term added before).
    pub fn add(&mut self, term: &str, postings: &[Posting]) {
        let (_, block) = self.current.get_or_insert_with(|| {
            // Room for the block and the entry that closes it, typically.
            let mut block = Enc(Vec::with_capacity(2 * POSTING_BLOCK_BYTES));
            block.0.push(FORMAT);
            (term.to_string(), block)
        });
        put_term_entry_with(block, term, |e| put_postings(e, postings));
        if block.0.len() >= POSTING_BLOCK_BYTES {
            self.close();
        }
    }

    fn close(&mut self) {
        if let Some((first, block)) = self.current.take() {
            self.blocks.push((first, block.finish()));
        }
    }

    /// The blocks, each with its first term, in term order.
    pub fn finish(mut self) -> Vec<(String, Vec<u8>)> {
        self.close();
        self.blocks
    }
}

/// Appends one entry of a term block (see [`walk_term_block`]): the term,
/// the byte length of its payload and the payload, which `payload` writes.
/// The payload is written in place (not copied from a buffer of its own):
/// one byte is set aside for its length, enough below 128 bytes, and a
/// longer payload is moved along to make room for its length.
fn put_term_entry_with(block: &mut Enc, term: &str, payload: impl FnOnce(&mut Enc)) {
    block.str(term);
    let at = block.0.len();
    block.0.push(0);
    payload(block);
    let len = block.0.len() - at - 1;
    if len < 0x80 {
        block.0[at] = len as u8;
    } else {
        let mut prefix = Enc(Vec::with_capacity(10));
        prefix.u64(len as u64);
        block.0.splice(at..at + 1, prefix.0);
    }
}

/// Walks the entries of a term block (a posting block or a summary block:
/// the format byte, then per term its string, the byte length of its
/// payload and the payload): calls `f` with each term's bytes, where they
/// start, and a decoder positioned at the term's payload (and ending with
/// it), until `f` returns `Some`.
fn walk_term_block<'a, R>(
    buf: &'a [u8],
    mut f: impl FnMut(&'a [u8], usize, Dec<'a>) -> Result<Option<R>, CodecError>,
) -> Result<Option<R>, CodecError> {
    let mut d = Dec::record(buf)?;
    while d.at < d.buf.len() {
        let term_at = d.at;
        let term = d.bytes()?;
        let len = d.read_len()?;
        let list = Dec {
            buf: &d.buf[..d.at + len],
            at: d.at,
        };
        d.at += len;
        if let Some(r) = f(term, term_at, list)? {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Finds `term` in a posting block: its summary counts, and its postings in
/// `out`; `None` if the block does not hold it.
pub fn find_in_posting_block(
    buf: &[u8],
    term: &str,
    out: &mut Vec<Posting>,
) -> Result<Option<TermSummary>, CodecError> {
    find_in_term_block(buf, term, |mut list| {
        let s = get_postings(&mut list, out)?;
        list.end()?;
        Ok(s)
    })
}

/// Finds `term` in a term block and decodes its payload with `decode`;
/// `None` if the block does not hold it.
fn find_in_term_block<R>(
    buf: &[u8],
    term: &str,
    mut decode: impl FnMut(Dec<'_>) -> Result<R, CodecError>,
) -> Result<Option<R>, CodecError> {
    // Terms increase: past a greater one, the term is not in the block
    // (`Some(None)` ends the walk with that answer).
    let found = walk_term_block(buf, |t, _, payload| match t.cmp(term.as_bytes()) {
        std::cmp::Ordering::Less => Ok(None),
        std::cmp::Ordering::Equal => Ok(Some(Some(decode(payload)?))),
        std::cmp::Ordering::Greater => Ok(Some(None)),
    })?;
    Ok(found.flatten())
}

/// The terms of a posting block, in order.
pub fn posting_block_terms(buf: &[u8]) -> Result<Vec<String>, CodecError> {
    let mut terms = Vec::new();
    walk_term_block(buf, |t, at, _| {
        let t = simdutf8::basic::from_utf8(t).map_err(|_| CodecError::BadUtf8(at))?;
        terms.push(t.to_string());
        Ok(None::<()>)
    })?;
    Ok(terms)
}

/// Summary blocks of one document: its term summaries grouped by
/// `group_of(term)`, one block per group that holds any of its terms, in
/// group order. `terms` must come in increasing term order; a block lists
/// its terms in that order, each as its string, the byte length of its
/// summary and the summary (as [`encode_summary`] without the format byte).
pub fn encode_summary_blocks<'a>(
    terms: impl IntoIterator<Item = (&'a str, TermSummary)>,
    group_of: impl Fn(&str) -> u16,
) -> Vec<(u16, Vec<u8>)> {
    let terms: Vec<(u16, &str, TermSummary)> = terms
        .into_iter()
        .map(|(term, summary)| (group_of(term), term, summary))
        .collect();
    // The terms by group, each group's in their order (a counting sort),
    // so the blocks are written one after another rather than a few bytes
    // at a time into hundreds of growing buffers.
    let groups = terms
        .iter()
        .map(|t| usize::from(t.0) + 1)
        .max()
        .unwrap_or(0);
    let mut starts = vec![0u32; groups + 1];
    for t in &terms {
        starts[usize::from(t.0) + 1] += 1;
    }
    for g in 0..groups {
        starts[g + 1] += starts[g];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; terms.len()];
    for (i, t) in terms.iter().enumerate() {
        let at = &mut next[usize::from(t.0)];
        order[*at as usize] = i as u32;
        *at += 1;
    }
    let mut out = Vec::new();
    let mut block = Enc::default();
    for g in 0..groups {
        let members = &order[starts[g] as usize..starts[g + 1] as usize];
        if members.is_empty() {
            continue;
        }
        block.0.clear();
        block.0.push(FORMAT);
        for &i in members {
            let (_, term, summary) = &terms[i as usize];
            put_term_entry_with(&mut block, term, |e| put_summary(e, summary));
        }
        out.push((g as u16, block.0.clone()));
    }
    out
}

/// Joins the summary blocks of consecutive term ranges of one document
/// (each part as [`encode_summary_blocks`] returns it, every term of a part
/// before every term of the next): one block per group, its entries in part
/// order, so its terms stay in increasing order.
pub fn join_summary_blocks(parts: Vec<Vec<(u16, Vec<u8>)>>) -> Vec<(u16, Vec<u8>)> {
    let mut all: Vec<(u16, Vec<u8>)> = parts.into_iter().flatten().collect();
    // Stable: blocks of one group keep their part order.
    all.sort_by_key(|(g, _)| *g);
    let mut out: Vec<(u16, Vec<u8>)> = Vec::with_capacity(all.len());
    for (group, block) in all {
        match out.last_mut() {
            // The later block's entries, without its format byte.
            Some((g, joined)) if *g == group => joined.extend_from_slice(&block[1..]),
            _ => out.push((group, block)),
        }
    }
    out
}

/// Finds `term`'s summary in a summary block; `None` if the block does not
/// hold it.
pub fn find_in_summary_block(buf: &[u8], term: &str) -> Result<Option<TermSummary>, CodecError> {
    find_in_term_block(buf, term, get_summary)
}

/// A `u64` record value (the stored-at time of a version entry).
pub fn encode_i64(v: i64) -> Vec<u8> {
    let mut e = Enc::with_format();
    e.i64(v);
    e.finish()
}

pub fn decode_i64(buf: &[u8]) -> Result<i64, CodecError> {
    let mut d = Dec::record(buf)?;
    let v = d.i64()?;
    d.end()?;
    Ok(v)
}

/// A `u32` record value (the ord an id or section index points at).
pub fn encode_u32(v: u32) -> Vec<u8> {
    let mut e = Enc::with_format();
    e.u64(v.into());
    e.finish()
}

pub fn decode_u32(buf: &[u8]) -> Result<u32, CodecError> {
    let mut d = Dec::record(buf)?;
    let v = d.u32()?;
    d.end()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_node() -> (NodeHeader, Node) {
        let h = NodeHeader {
            depth: 2,
            parent_ord: Some(7),
            subtree_size: 3,
            child_ords: vec![9, 10],
        };
        let n = Node {
            node_id: "0012".into(),
            parent_id: Some("0007".into()),
            title: "Coverage criteria".into(),
            page_start: 4,
            page_end: 6,
            summary: "When imaging is covered.".into(),
            text: "MRI of the lumbar spine is covered when…".into(),
            section_path: "2.1.3".into(),
            child_ids: vec!["0013".into(), "0014".into()],
            depth: 2,
            keywords: vec!["mri".into()],
            see_also: vec!["0003".into()],
            created_at: Timestamp::from_unix_nanos(-5),
            updated_at: Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
        };
        (h, n)
    }

    #[test]
    fn node_round_trips() {
        let (h, n) = sample_node();
        let buf = encode_node(&h, &n);
        assert_eq!(decode_node(&buf).unwrap(), (h.clone(), n));
        assert_eq!(decode_node_header(&buf).unwrap(), h);
    }

    #[test]
    fn truncated_node_is_an_error_at_every_length() {
        let (h, n) = sample_node();
        let buf = encode_node(&h, &n);
        for len in 0..buf.len() {
            assert!(decode_node(&buf[..len]).is_err(), "accepted {len} bytes");
        }
    }

    #[test]
    fn postings_round_trip_and_reject_non_increasing_ords() {
        let ps = vec![
            Posting {
                ord: 0,
                tf: 3,
                len: 40,
            },
            Posting {
                ord: 5,
                tf: 1,
                len: 9,
            },
            Posting {
                ord: 300,
                tf: 12,
                len: 900,
            },
        ];
        let buf = encode_postings(&ps);
        let mut out = Vec::new();
        let s = decode_postings(&buf, &mut out).unwrap();
        assert_eq!(out, ps);
        assert_eq!((s.count, s.max_tf, s.min_len), (3, 12, 9));
        let mut e = Enc::with_format();
        e.u64(2).u64(1).u64(1);
        e.u64(4).u64(1).u64(1).u64(0).u64(1).u64(1);
        assert!(decode_postings(&e.finish(), &mut out).is_err());
    }

    #[test]
    fn posting_blocks_split_by_size_and_find_every_term() {
        let list = |n: u32| -> Vec<Posting> {
            (0..n)
                .map(|i| Posting {
                    ord: i * 3,
                    tf: i + 1,
                    len: 100 + i,
                })
                .collect()
        };
        // 600 terms with lists of 1 to 4 postings, one with 2,000 postings
        // (larger than a block on its own).
        let terms: Vec<(String, Vec<Posting>)> = (0..600u32)
            .map(|i| {
                let n = if i == 300 { 2_000 } else { i % 4 + 1 };
                (format!("t{i:04}"), list(n))
            })
            .collect();
        let mut b = PostingBlocks::default();
        for (t, l) in &terms {
            b.add(t, l);
        }
        let blocks = b.finish();
        assert!(blocks.len() > 3, "{} blocks", blocks.len());
        assert!(blocks.windows(2).all(|w| w[0].0 < w[1].0));
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (i, (first, block)) in blocks.iter().enumerate() {
            let held = posting_block_terms(block).unwrap();
            assert_eq!(&held[0], first);
            // Only the block holding the large list, or the last, may pass
            // the size by more than one small list.
            if !held.contains(&"t0300".to_string()) && i + 1 < blocks.len() {
                assert!(block.len() < POSTING_BLOCK_BYTES + 64, "{}", block.len());
            }
            for t in &held {
                let want = &terms.iter().find(|(x, _)| x == t).unwrap().1;
                let s = find_in_posting_block(block, t, &mut out).unwrap().unwrap();
                assert_eq!(&out, want, "{t}");
                assert_eq!(s.count as usize, want.len());
                assert_eq!(s.max_tf, want.iter().map(|p| p.tf).max().unwrap());
            }
            seen.extend(held);
            // Absent terms: before, between and after the block's terms.
            for t in [format!("{first}-"), "a".into(), "z".into()] {
                assert_eq!(find_in_posting_block(block, &t, &mut out).unwrap(), None);
            }
        }
        let all: Vec<String> = terms.iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(seen, all);
        // Damage: a list length past the end, a truncated block.
        let (first, block) = &blocks[0];
        let mut bad = Enc::with_format();
        bad.str(first).u64(1_000);
        assert!(find_in_posting_block(&bad.finish(), first, &mut out).is_err());
        let cut = &block[..block.len() - 1];
        let last = posting_block_terms(block).unwrap().pop().unwrap();
        assert!(find_in_posting_block(cut, &last, &mut out).is_err());
        assert!(posting_block_terms(cut).is_err());
    }

    #[test]
    fn term_entries_written_in_place_equal_term_length_payload() {
        // Payload lengths around each varint boundary of the length field.
        let lengths = [0usize, 1, 127, 128, 129, 16_383, 16_384, 20_000];
        let mut block = Enc::with_format();
        let mut want = vec![FORMAT];
        for (i, &n) in lengths.iter().enumerate() {
            let term = format!("term{i}");
            let payload: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
            put_term_entry_with(&mut block, &term, |e| e.0.extend_from_slice(&payload));
            let mut reference = Enc::default();
            reference.str(&term).u64(n as u64);
            want.extend_from_slice(&reference.0);
            want.extend_from_slice(&payload);
        }
        assert_eq!(block.0, want);
        let mut seen = Vec::new();
        walk_term_block(&block.0, |t, _, d| {
            seen.push((t.to_vec(), d.buf.len() - d.at));
            Ok(None::<()>)
        })
        .unwrap();
        let expect: Vec<(Vec<u8>, usize)> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("term{i}").into_bytes(), n))
            .collect();
        assert_eq!(seen, expect);
    }

    #[test]
    fn summary_blocks_group_terms_and_find_every_summary() {
        // 500 terms in 7 groups (by a test grouping), each with its own
        // summary; groups come out in order, terms within a block in order.
        let group_of = |t: &str| t.bytes().map(u16::from).sum::<u16>() % 7;
        let terms: Vec<(String, TermSummary)> = (0..500u32)
            .map(|i| {
                let postings: Vec<Posting> = (0..i % 5 + 1)
                    .map(|k| Posting {
                        ord: k,
                        tf: i + k,
                        len: 1000 - k * 7,
                    })
                    .collect();
                (format!("t{i:04}"), TermSummary::of(&postings))
            })
            .collect();
        let blocks = encode_summary_blocks(terms.iter().map(|(t, s)| (t.as_str(), *s)), group_of);
        assert_eq!(blocks.len(), 7);
        assert!(blocks.windows(2).all(|w| w[0].0 < w[1].0));
        for (t, want) in &terms {
            let (_, block) = blocks.iter().find(|(g, _)| *g == group_of(t)).unwrap();
            assert_eq!(find_in_summary_block(block, t).unwrap(), Some(*want), "{t}");
            // In another group's block the term is absent.
            let (_, other) = blocks.iter().find(|(g, _)| *g != group_of(t)).unwrap();
            assert_eq!(find_in_summary_block(other, t).unwrap(), None, "{t}");
        }
        for (_, block) in &blocks {
            for t in ["a", "t", "t0100-", "t9999", "u"] {
                assert_eq!(find_in_summary_block(block, t).unwrap(), None, "{t}");
            }
        }
        // Damage: a summary length past the end, a truncated block, a
        // summary with trailing bytes.
        let mut bad = Enc::with_format();
        bad.str("t0001").u64(1_000);
        assert!(find_in_summary_block(&bad.finish(), "t0001").is_err());
        let (_, block) = &blocks[0];
        let mut last = String::new();
        walk_term_block(block, |t, _, _| {
            last = String::from_utf8(t.to_vec()).unwrap();
            Ok(None::<()>)
        })
        .unwrap();
        assert!(find_in_summary_block(&block[..block.len() - 1], &last).is_err());
        let mut long = Enc::with_format();
        long.str("x")
            .u64(6)
            .u64(1)
            .u64(1)
            .u64(1)
            .u64(0)
            .u64(7)
            .u64(7);
        assert!(find_in_summary_block(&long.finish(), "x").is_err());
    }

    #[test]
    fn joined_summary_blocks_equal_blocks_built_whole() {
        let group_of = |t: &str| t.bytes().map(u16::from).sum::<u16>() % 5;
        let terms: Vec<(String, TermSummary)> = (0..200u32)
            .map(|i| {
                let p = Posting {
                    ord: i,
                    tf: i % 9 + 1,
                    len: 50 + i,
                };
                (format!("t{i:03}"), TermSummary::of(&[p]))
            })
            .collect();
        let blocks = |range: std::ops::Range<usize>| {
            encode_summary_blocks(terms[range].iter().map(|(t, s)| (t.as_str(), *s)), group_of)
        };
        let whole = blocks(0..200);
        for cuts in [
            vec![0, 200],
            vec![0, 1, 200],
            vec![0, 70, 140, 200],
            vec![0, 199, 200],
        ] {
            let parts = cuts.windows(2).map(|w| blocks(w[0]..w[1])).collect();
            assert_eq!(join_summary_blocks(parts), whole, "{cuts:?}");
        }
    }

    /// The summary's peaks by the definition: the postings no other beats
    /// on both tf and length, in increasing length, the longest beyond
    /// MAX_PEAKS - 1 merged into one point (their highest tf, their shortest
    /// length).
    fn reference_peaks(postings: &[Posting]) -> Vec<(u32, u32)> {
        let mut front: Vec<(u32, u32)> = postings
            .iter()
            .filter(|p| {
                !postings
                    .iter()
                    .any(|q| (q.tf >= p.tf && q.len < p.len) || (q.tf > p.tf && q.len <= p.len))
            })
            .map(|p| (p.tf, p.len))
            .collect();
        front.sort_unstable_by_key(|&(_, len)| len);
        front.dedup();
        if front.len() > MAX_PEAKS {
            let rest = front.split_off(MAX_PEAKS - 1);
            let tf = rest.iter().map(|p| p.0).max().unwrap();
            let len = rest.iter().map(|p| p.1).min().unwrap();
            front.push((tf, len));
        }
        front
    }

    proptest! {
        #[test]
        fn summaries_match_the_definition(
            points in proptest::collection::vec((1u32..12, 1u32..60), 1..80)
        ) {
            let postings: Vec<Posting> = points
                .iter()
                .enumerate()
                .map(|(i, &(tf, len))| Posting { ord: i as u32, tf, len })
                .collect();
            let s = TermSummary::of(&postings);
            prop_assert_eq!(s.count as usize, postings.len());
            prop_assert_eq!(s.max_tf, points.iter().map(|p| p.0).max().unwrap());
            prop_assert_eq!(s.min_len, points.iter().map(|p| p.1).min().unwrap());
            let want = reference_peaks(&postings);
            prop_assert_eq!(s.bound_points(), want.as_slice());
            prop_assert_eq!(decode_summary(&encode_summary(&s)).unwrap(), s);
        }
    }

    proptest! {
        #[test]
        fn summaries_walked_by_length_equal_summaries_sorted(
            lens in proptest::collection::vec(1u32..40, 1..300),
            lists in proptest::collection::vec(
                proptest::collection::vec((any::<bool>(), 1u32..12), 1..300), 1..6),
        ) {
            // Several lists of one document through one order (its scratch
            // space must be clear after each), lengths with many ties.
            let mut order = LengthOrder::new(&lens);
            for picks in &lists {
                let postings: Vec<Posting> = picks
                    .iter()
                    .zip(&lens)
                    .enumerate()
                    .filter(|(_, ((keep, _), _))| *keep)
                    .map(|(ord, ((_, tf), &len))| Posting { ord: ord as u32, tf: *tf, len })
                    .collect();
                let walked = TermSummary::of_ordered(&postings, &mut order);
                prop_assert_eq!(walked, TermSummary::of(&postings));
                if !postings.is_empty() {
                    let want = reference_peaks(&postings);
                    prop_assert_eq!(walked.bound_points(), want.as_slice());
                }
            }
            prop_assert!(order.bits.iter().all(|&w| w == 0));
        }
    }

    #[test]
    fn summaries_by_length_order_fall_back_to_sorting() {
        let p = |ord, tf, len| Posting { ord, tf, len };
        let order = |lens: &[u32]| LengthOrder::new(lens);
        // A length that is not the node's, an ord past the document, ords
        // out of order: the list is sorted instead, with the same result.
        for list in [
            vec![p(0, 3, 10), p(1, 5, 99)],
            vec![p(0, 3, 10), p(7, 5, 20)],
            vec![p(1, 5, 20), p(0, 3, 10)],
        ] {
            let mut o = order(&[10, 20, 30]);
            assert_eq!(
                TermSummary::of_ordered(&list, &mut o),
                TermSummary::of(&list)
            );
            assert!(o.bits.iter().all(|&w| w == 0));
        }
        // A large document: a short list is sorted, a long one walked.
        let lens: Vec<u32> = (0..5000).map(|i| 100 + (i * 37) % 500).collect();
        let mut o = order(&lens);
        for step in [997, 3] {
            let list: Vec<Posting> = (0..5000)
                .step_by(step)
                .map(|i| p(i as u32, (i % 13) as u32 + 1, lens[i]))
                .collect();
            assert_eq!(
                TermSummary::of_ordered(&list, &mut o),
                TermSummary::of(&list)
            );
        }
    }

    #[test]
    fn summary_peaks_bound_every_posting_and_round_trip() {
        let p = |tf, len| Posting { ord: 0, tf, len };
        // (3, 40) and (1, 9) are peaks; (2, 50) is beaten by (3, 40).
        let s = TermSummary::of(&[p(3, 40), p(1, 9), p(2, 50), p(12, 900)]);
        assert_eq!(s.bound_points(), [(1, 9), (3, 40), (12, 900)]);
        assert_eq!(decode_summary(&encode_summary(&s)).unwrap(), s);
        // More peaks than kept: the longest merge into one dominating point.
        let many: Vec<Posting> = (1..=10).map(|i| p(i, i * 10)).collect();
        let s = TermSummary::of(&many);
        assert_eq!(s.bound_points(), [(1, 10), (2, 20), (3, 30), (10, 40)]);
        for q in &many {
            assert!(s
                .bound_points()
                .iter()
                .any(|&(tf, len)| tf >= q.tf && len <= q.len));
        }
        // A summary written before peaks: (max_tf, min_len) is the bound.
        let mut e = Enc::with_format();
        e.u64(2).u64(7).u64(5);
        let old = decode_summary(&e.finish()).unwrap();
        assert_eq!(old.bound_points(), [(7, 5)]);
        let mut e = Enc::with_format();
        e.u64(2).u64(7).u64(5).u64(9);
        assert!(decode_summary(&e.finish()).is_err(), "too many peaks");
    }

    /// A node whose text is long and not all ASCII, so record splits fall
    /// inside multi-byte characters.
    fn long_node() -> (NodeHeader, Node) {
        let (h, mut n) = sample_node();
        n.text = "Prior authorization — é, ü, 漢字 and 🩺 apply. ".repeat(40);
        (h, n)
    }

    #[test]
    fn a_record_in_pieces_decodes_as_the_whole_at_every_cut() {
        for (h, n) in [sample_node(), long_node()] {
            let buf = encode_node(&h, &n);
            for cut in 0..=buf.len() {
                let (a, b) = buf.split_at(cut);
                assert_eq!(decode_node_pieces(&[a, b]).unwrap(), (h.clone(), n.clone()));
                assert_eq!(decode_front(&[a, b], decode_node_header).unwrap(), h);
                let if_id = |id: &'static str| move |buf: &[u8]| decode_node_header_if_id(buf, id);
                assert_eq!(
                    decode_front(&[a, b], if_id("0012")).unwrap(),
                    Some(h.clone())
                );
                assert_eq!(decode_front(&[a, b], if_id("0013")).unwrap(), None);
                // Three pieces, the second one possibly empty.
                let mid = cut + (buf.len() - cut) / 3;
                let (b1, b2) = b.split_at(mid - cut);
                assert_eq!(
                    decode_node_pieces(&[a, b1, b2]).unwrap(),
                    (h.clone(), n.clone())
                );
            }
            assert_eq!(decode_node_pieces(&[&buf]).unwrap(), (h.clone(), n.clone()));
        }
    }

    #[test]
    fn a_bad_record_in_pieces_fails_as_the_whole_does() {
        let (h, n) = long_node();
        let good = encode_node(&h, &n);
        // Invalid UTF-8 inside the text, a record cut short (its text length
        // points past the end), and one with bytes after the text.
        let mut bad_utf8 = good.clone();
        let at = good.len() - 10;
        bad_utf8[at] = 0xff;
        let mut trailing = good.clone();
        trailing.push(0);
        let records = [bad_utf8, good[..good.len() - 3].to_vec(), trailing];
        for buf in &records {
            let whole = decode_node(buf).unwrap_err();
            for cut in [1, buf.len() / 2, buf.len() - 12, buf.len() - 1] {
                let (a, b) = buf.split_at(cut);
                assert_eq!(
                    decode_node_pieces(&[a, b]).unwrap_err(),
                    whole,
                    "cut at {cut}"
                );
            }
        }
        assert!(decode_node_pieces(&[]).is_err());
        // A header cut short is an error from pieces as from the whole.
        let short = &good[..3];
        let whole = decode_node_header(short).unwrap_err();
        assert_eq!(
            decode_front(&[&short[..1], &short[1..]], decode_node_header).unwrap_err(),
            whole
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_node(&bytes);
            let _ = decode_document("p", "v", &bytes);
            let _ = decode_postings(&bytes, &mut Vec::new());
            let _ = decode_u32(&bytes);
            let _ = decode_i64(&bytes);
        }

        #[test]
        fn document_round_trips(meta in proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..5),
                                ords in proptest::collection::vec(any::<u32>(), 0..10),
                                created in any::<i64>(), total in any::<u64>()) {
            let doc = Document {
                policy_id: "p".into(),
                version_id: "v".into(),
                pageindex_doc_id: "x.pdf".into(),
                root_node_id: None,
                metadata: meta,
                created_at: Timestamp::from_unix_nanos(created),
                updated_at: Timestamp::from_unix_nanos(created / 2),
            };
            let stats = DocStats { stored_at: Timestamp::from_unix_nanos(9), node_count: 4, total_len: total, top_ords: ords };
            let buf = encode_document(&doc, &stats);
            prop_assert_eq!(decode_document("p", "v", &buf).unwrap(), (doc, stats));
        }
    }
}
