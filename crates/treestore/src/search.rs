//! BM25 full-text search: building a document's posting lists when it is
//! stored, and ranking nodes for a query in one document version or across the
//! current versions of all policies.
//!
//! Each node is one BM25 "document". Fields are weighted by repeating their
//! terms (title x4, keywords x3, summary x2, text x1): a node's term frequency
//! and length are weighted sums over its fields, which keeps every stored number
//! an integer. With `N` nodes in scope, `df` of them containing the term, and
//! `avgdl` the mean weighted length in scope:
//!
//! `score = sum over query terms of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl))`,
//! `idf = ln(1 + (N - df + 0.5) / (df + 0.5))`, `k1 = 1.2`, `b = 0.75`.
//!
//! Results are ordered by score, best first; equal scores by (policy, version,
//! document order), so the order is deterministic.

use std::ops::Bound;
use std::sync::Mutex;

use treestore_storage::ReadTxn;

use crate::analyzer::Analyzer;
use crate::codec::{self, Current, DocStats, Posting, TermSummary};
use crate::error::{Error, Result};
use crate::model::Node;
use crate::parallel::{in_parts, run_len, shared_out, threads_for, Pool};
use crate::schema::{self, DocKeys};
use crate::term_cache::{TermCache, WordKey};

pub const K1: f64 = 1.2;
pub const B: f64 = 0.75;
pub const WEIGHT_TITLE: u32 = 4;
pub const WEIGHT_KEYWORDS: u32 = 3;
pub const WEIGHT_SUMMARY: u32 = 2;
pub const WEIGHT_TEXT: u32 = 1;

/// Results returned when the caller asks for 0.
pub const DEFAULT_LIMIT: usize = 10;
/// Most results one search returns.
pub const MAX_LIMIT: usize = 10_000;

/// Posting lists of one document, built before it is stored.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DocIndex {
    /// The document's terms, sorted, one after another (one allocation
    /// rather than one per term).
    text: String,
    /// Per term: the end of its text in `text` and the end of its postings
    /// in `postings` (a term starts where the previous term ends).
    ends: Vec<(usize, u32)>,
    /// Every term's postings, term after term, each term's in increasing ord.
    postings: Vec<Posting>,
    /// Sum of the weighted node lengths.
    pub total_len: u64,
    /// Each node's weighted length, by ord.
    node_lens: Vec<u32>,
}

impl DocIndex {
    /// Number of distinct terms.
    pub fn term_count(&self) -> usize {
        self.ends.len()
    }

    /// Each node's weighted length, by ord.
    pub fn node_lens(&self) -> &[u32] {
        &self.node_lens
    }

    /// Each term with its postings, in term order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Posting])> {
        self.iter_range(0..self.ends.len())
    }

    /// The terms at positions `range` (in term order) with their postings.
    pub fn iter_range(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (&str, &[Posting])> {
        let (mut text_start, mut start) = match range.start {
            0 => (0, 0),
            i => (self.ends[i - 1].0, self.ends[i - 1].1 as usize),
        };
        self.ends[range].iter().map(move |&(text_end, end)| {
            let term = &self.text[text_start..text_end];
            let list = &self.postings[start..end as usize];
            (text_start, start) = (text_end, end as usize);
            (term, list)
        })
    }

    /// The postings of `term`.
    #[cfg(test)]
    pub fn get(&self, term: &str) -> Option<&[Posting]> {
        self.iter().find(|(t, _)| *t == term).map(|(_, l)| l)
    }

    /// Appends a term (after every term held) and its postings, given as
    /// lists one after another.
    fn push(&mut self, term: &str, lists: &[&[Posting]]) {
        self.text.push_str(term);
        for list in lists {
            self.postings.extend_from_slice(list);
        }
        self.ends
            .push((self.text.len(), self.postings.len() as u32));
    }

    /// This index followed by `later`, whose nodes all come after this one's.
    fn append(self, later: DocIndex) -> DocIndex {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let mut out = DocIndex {
            text: String::with_capacity(self.text.len().max(later.text.len())),
            ends: Vec::with_capacity(self.ends.len().max(later.ends.len())),
            postings: Vec::with_capacity(self.postings.len() + later.postings.len()),
            total_len: self.total_len + later.total_len,
            node_lens: [self.node_lens.as_slice(), later.node_lens.as_slice()].concat(),
        };
        let (mut a, mut b) = (
            self.iter_range(0..self.ends.len()).peekable(),
            later.iter_range(0..later.ends.len()).peekable(),
        );
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Less,
                (None, Some(_)) => Greater,
                (Some(x), Some(y)) => x.0.cmp(y.0),
            };
            // The term's postings from this index (earlier nodes) first.
            match order {
                Less => {
                    if let Some((t, list)) = a.next() {
                        out.push(t, &[list]);
                    }
                }
                Greater => {
                    if let Some((t, list)) = b.next() {
                        out.push(t, &[list]);
                    }
                }
                Equal => {
                    if let (Some((t, first)), Some((_, then))) = (a.next(), b.next()) {
                        out.push(t, &[first, then]);
                    }
                }
            }
        }
        out
    }
}

/// The first 8 bytes of `s`, zero padded, as a big-endian number: comparing
/// these orders strings as comparing the strings would, except that equal
/// numbers need the whole strings compared.
fn sort_prefix(s: &[u8]) -> u64 {
    (0..8).fold(0u64, |v, i| {
        v << 8 | u64::from(s.get(i).copied().unwrap_or(0))
    })
}

/// Most term caches kept between documents.
const MAX_CACHES: usize = 4;

/// Term caches kept between documents, one per indexing thread.
#[derive(Default)]
pub(crate) struct Indexer {
    caches: Mutex<Vec<TermCache>>,
}

impl Indexer {
    fn take(&self) -> TermCache {
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Keeps `cache` for a later document, unless enough are kept already
    /// (many concurrent stores would otherwise leave one cache each).
    fn give_back(&self, cache: TermCache) {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        if caches.len() < MAX_CACHES {
            caches.push(cache);
        }
    }
}

/// How many words ahead of its lookup a word's cache slot is prefetched.
const LOOKUP_AHEAD: usize = 8;

fn index_range(
    analyzer: &Analyzer,
    terms: &mut TermCache,
    nodes: &[Node],
    first_ord: u32,
) -> DocIndex {
    terms.begin_document();
    // (document term id, posting), node after node.
    let mut raw: Vec<(u32, Posting)> = Vec::new();
    // Per-node term frequencies, by term id, and the ids touched.
    let mut tf: Vec<u32> = Vec::new();
    let mut touched: Vec<u32> = Vec::new();
    let mut total_len = 0u64;
    let mut node_lens = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let mut len: u32 = 0;
        let fields = [
            (node.title.as_str(), WEIGHT_TITLE),
            (node.summary.as_str(), WEIGHT_SUMMARY),
            (node.text.as_str(), WEIGHT_TEXT),
        ];
        let keywords = node.keywords.iter().map(|k| (k.as_str(), WEIGHT_KEYWORDS));
        for (text, weight) in fields.into_iter().chain(keywords) {
            let mut count = |id: Option<u32>| {
                let Some(id) = id else {
                    return;
                };
                let id = id as usize;
                if id >= tf.len() {
                    tf.resize(id + 1, 0);
                }
                if tf[id] == 0 {
                    touched.push(id as u32);
                }
                tf[id] = tf[id].saturating_add(weight);
                len = len.saturating_add(weight);
            };
            // Each word's cache slot is prefetched, and the word looked up
            // LOOKUP_AHEAD words later (a node's counts do not depend on
            // the order its words are counted in).
            // A ring of the keys waiting: `ahead[..filled]` hold keys, and
            // once it is full the oldest is at `next`. (Plain keys, not
            // options: an option's tag and padding made each word's copy
            // into the ring wait for the stores that had just built it.)
            let mut ahead = [WordKey::EMPTY; LOOKUP_AHEAD];
            let (mut next, mut filled) = (0, 0);
            analyzer.for_each_word(text, |w| match TermCache::key(w) {
                Some(key) => {
                    terms.prefetch(&key);
                    if filled == LOOKUP_AHEAD {
                        count(terms.id_of(analyzer, &ahead[next]));
                    } else {
                        filled += 1;
                    }
                    ahead[next] = key;
                    next = (next + 1) % LOOKUP_AHEAD;
                }
                None => count(terms.id(analyzer, w)),
            });
            for due in &ahead[..filled] {
                count(terms.id_of(analyzer, due));
            }
        }
        total_len += u64::from(len);
        node_lens.push(len);
        let ord = first_ord + i as u32;
        for id in touched.drain(..) {
            let slot = &mut tf[id as usize];
            raw.push((
                id,
                Posting {
                    ord,
                    tf: *slot,
                    len,
                },
            ));
            *slot = 0;
        }
    }
    // Sort the document's terms, then place each posting in its term's
    // range (in node order, so each list stays in increasing ord).
    let count = terms.doc_term_count();
    let prefixes: Vec<u64> = (0..count as u32)
        .map(|id| sort_prefix(terms.doc_term_bytes(id)))
        .collect();
    let mut order: Vec<u32> = (0..count as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        prefixes[a as usize]
            .cmp(&prefixes[b as usize])
            .then_with(|| terms.doc_term_bytes(a).cmp(terms.doc_term_bytes(b)))
    });
    let mut sizes = vec![0u32; count];
    for (id, _) in &raw {
        sizes[*id as usize] += 1;
    }
    let mut next = vec![0u32; count];
    let mut end = 0u32;
    let text_len = (0..count as u32)
        .map(|id| terms.doc_term_bytes(id).len())
        .sum();
    let mut text = Vec::with_capacity(text_len);
    let mut ends = Vec::with_capacity(count);
    for &id in &order {
        next[id as usize] = end;
        end += sizes[id as usize];
        text.extend_from_slice(terms.doc_term_bytes(id));
        ends.push((text.len(), end));
    }
    // Terms are made from `&str` only, so their concatenation is UTF-8 (and
    // is checked once here, not term by term).
    let text = String::from_utf8(text)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let mut postings = vec![
        Posting {
            ord: 0,
            tf: 0,
            len: 0
        };
        raw.len()
    ];
    for (id, p) in raw {
        let at = &mut next[id as usize];
        postings[*at as usize] = p;
        *at += 1;
    }
    DocIndex {
        text,
        ends,
        postings,
        total_len,
        node_lens,
    }
}

/// Builds the posting lists of a document whose nodes are in document order
/// (`nodes[ord]`), on up to four threads for large documents.
pub(crate) fn index_document(
    analyzer: &Analyzer,
    indexer: &Indexer,
    nodes: &[Node],
    split: bool,
) -> DocIndex {
    let threads = if split {
        threads_for(nodes.len(), PARALLEL_INDEX_NODES)
    } else {
        1
    };
    let run = |analyzer: &Analyzer, part: &[Node], first_ord: u32| {
        let mut cache = indexer.take();
        let index = index_range(analyzer, &mut cache, part, first_ord);
        indexer.give_back(cache);
        index
    };
    if threads < 2 {
        return run(analyzer, nodes, 0);
    }
    in_parts(Pool::Indexing, nodes, threads, |first, part| {
        run(&Analyzer::new(), part, first as u32)
    })
    .into_iter()
    .reduce(DocIndex::append)
    .unwrap_or_default()
}

pub(crate) fn idf(n: u64, df: u64) -> f64 {
    let (n, df) = (n as f64, df as f64);
    ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
}

pub(crate) fn tf_part(tf: u32, len: u32, avgdl: f64) -> f64 {
    let tf = f64::from(tf);
    tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * f64::from(len) / avgdl))
}

fn avg_len(total: u64, n: u64) -> f64 {
    if n == 0 || total == 0 {
        1.0
    } else {
        total as f64 / n as f64
    }
}

/// The distinct terms of a query, sorted. An empty (or whitespace-only) query is
/// an invalid argument; a query of stop words only has no terms.
pub(crate) fn query_terms(analyzer: &Analyzer, query: &str) -> Result<Vec<String>> {
    if query.trim().is_empty() {
        return Err(Error::invalid("query", "must not be empty"));
    }
    let mut terms = analyzer.terms(query);
    terms.sort();
    terms.dedup();
    Ok(terms)
}

/// Checks a result limit: 0 means [`DEFAULT_LIMIT`].
pub(crate) fn effective_limit(limit: usize) -> Result<usize> {
    match limit {
        0 => Ok(DEFAULT_LIMIT),
        l if l > MAX_LIMIT => Err(Error::invalid(
            "limit",
            format!("{l} is more than the maximum {MAX_LIMIT}"),
        )),
        l => Ok(l),
    }
}

/// A scored node, before its record is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scored {
    /// Index into the caller's list of document versions.
    pub doc: usize,
    pub ord: u32,
    pub score: f64,
}

/// Best first, then by document and document order.
fn rank(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.doc.cmp(&b.doc))
        .then(a.ord.cmp(&b.ord))
}

fn top(mut hits: Vec<Scored>, limit: usize) -> Vec<Scored> {
    if hits.len() > limit {
        hits.select_nth_unstable_by(limit - 1, rank);
        hits.truncate(limit);
    }
    hits.sort_by(rank);
    hits
}

/// The postings of `term` in one document of `node_count` nodes (into
/// `out`) and their counts; `None` if no node of it holds the term. The list
/// is in the posting block at or before the term's place; a document stored
/// before posting blocks existed has no blocks and a list per term instead.
fn read_postings(
    txn: &ReadTxn,
    keys: &DocKeys,
    term: &str,
    node_count: u32,
    out: &mut Vec<Posting>,
) -> Result<Option<TermSummary>> {
    // Ords index the dense score array: one past the document's nodes is a
    // corrupt list, not a reason to allocate without bound.
    let check = |key: &[u8],
                 decoded: std::result::Result<Option<TermSummary>, codec::CodecError>,
                 out: &[Posting]| {
        let summary = decoded.map_err(|e| Error::corrupt(key, e))?;
        if out.last().is_some_and(|p| p.ord >= node_count) {
            return Err(Error::corrupt(
                key,
                "posting names a node past the document's end",
            ));
        }
        Ok(summary)
    };
    let (lower, upper) = (keys.posting_blocks(), keys.posting_block(term));
    let in_block = txn.last_in_with(Bound::Included(&lower), Bound::Included(&upper), |k, v| {
        let decoded = codec::find_in_posting_block(v, term, out);
        check(k, decoded, out)
    })?;
    if let Some(found) = in_block {
        return found;
    }
    let key = keys.posting(term);
    match txn.get_with(&key, |v| codec::decode_postings(v, out).map(Some))? {
        None => Ok(None),
        Some(decoded) => check(&key, decoded, out),
    }
}

/// Per-node score sums of one document: a dense array by ord (documents are
/// small) and the ords touched, reused from document to document.
#[derive(Default)]
struct Scores {
    sums: Vec<f64>,
    touched: Vec<u32>,
    list: Vec<Posting>,
}

impl Scores {
    fn add(&mut self, ord: u32, v: f64) {
        let i = ord as usize;
        if i >= self.sums.len() {
            self.sums.resize(i + 1, 0.0);
        }
        if self.sums[i] == 0.0 {
            self.touched.push(ord);
        }
        // Scores are positive, so 0 means "not touched yet" (a zero score
        // pushed twice would only repeat an ord with score 0, which the
        // drain skips).
        self.sums[i] += v;
    }

    /// The scored nodes, each once, leaving the sums zeroed.
    fn drain(&mut self, mut f: impl FnMut(u32, f64)) {
        for ord in self.touched.drain(..) {
            let sum = std::mem::take(&mut self.sums[ord as usize]);
            if sum != 0.0 {
                f(ord, sum);
            }
        }
    }
}

/// Adds each node's score for `terms` to `scores`, with collection statistics
/// `n` and `avgdl`; `idfs[i]` is the idf of `terms[i]`, or `None` to use the
/// document's own df.
#[allow(clippy::too_many_arguments)]
fn score_document(
    txn: &ReadTxn,
    keys: &DocKeys,
    node_count: u32,
    terms: &[&str],
    idfs: Option<&[f64]>,
    n: u64,
    avgdl: f64,
    scores: &mut Scores,
) -> Result<()> {
    let mut list = std::mem::take(&mut scores.list);
    for (i, term) in terms.iter().enumerate() {
        let summary = match read_postings(txn, keys, term, node_count, &mut list) {
            Ok(Some(summary)) => summary,
            Ok(None) => continue,
            Err(e) => {
                scores.list = list;
                return Err(e);
            }
        };
        let w = match idfs {
            Some(idfs) => idfs[i],
            None => idf(n, summary.count.into()),
        };
        for p in &list {
            scores.add(p.ord, w * tf_part(p.tf, p.len, avgdl));
        }
    }
    scores.list = list;
    Ok(())
}

/// Ranks the nodes of one document version.
pub(crate) fn search_document(
    txn: &ReadTxn,
    keys: &DocKeys,
    stats: &DocStats,
    terms: &[String],
    limit: usize,
) -> Result<Vec<Scored>> {
    let n = u64::from(stats.node_count);
    let avgdl = avg_len(stats.total_len, n);
    let mut scores = Scores::default();
    let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
    score_document(
        txn,
        keys,
        stats.node_count,
        &terms,
        None,
        n,
        avgdl,
        &mut scores,
    )?;
    let mut hits = Vec::new();
    scores.drain(|ord, score| hits.push(Scored { doc: 0, ord, score }));
    Ok(top(hits, limit))
}

/// Ranks the nodes of the given document versions (`docs[i]` = (policy,
/// current)) together, with collection statistics over all of them. The term
/// summaries of the documents (in summary blocks) are read bucket by bucket (on up to
/// four threads when there are many buckets); documents are
/// then visited in decreasing order of the best score any of their nodes
/// could reach, and the visit stops once that bound falls below the
/// `limit`-th score found.
pub(crate) fn search_all(
    txn: &ReadTxn,
    docs: &[(String, Current)],
    terms: &[String],
    limit: usize,
) -> Result<Vec<Scored>> {
    let n: u64 = docs.iter().map(|(_, c)| u64::from(c.node_count)).sum();
    let total: u64 = docs.iter().map(|(_, c)| c.total_len).sum();
    let avgdl = avg_len(total, n);

    // The documents in scope by term-index bucket (buckets in key order):
    // a summary key ends with the encoded (policy, version), matched against
    // the few documents of its bucket without decoding the key.
    let mut in_bucket: Vec<(u16, Vec<u8>, usize)> = docs
        .iter()
        .enumerate()
        .map(|(i, (p, c))| {
            (
                schema::term_bucket(p),
                schema::term_key_suffix(p, &c.version_id),
                i,
            )
        })
        .collect();
    in_bucket.sort_unstable();
    let mut buckets: Vec<Bucket> = Vec::new();
    for (b, suffix, d) in in_bucket {
        match buckets.last_mut() {
            Some((last, list)) if *last == b => list.push((suffix, d)),
            _ => buckets.push((b, vec![(suffix, d)])),
        }
    }

    // Per (document, term): the term's summary in that document, if any.
    let mut summaries: Vec<Option<TermSummary>> = vec![None; docs.len() * terms.len()];
    let mut df = vec![0u64; terms.len()];
    // The summary scan is one seek per term and bucket (thousands at a
    // million nodes): the buckets, in runs of neighbours (one cursor each),
    // are shared out among threads on the same snapshot.
    let threads = threads_for(buckets.len(), PARALLEL_SCAN_BUCKETS);
    let runs: Vec<&[Bucket]> = buckets.chunks(run_len(buckets.len(), threads)).collect();
    let old_layout = has_old_summaries(txn)?;
    let found = shared_out(Pool::Queries, &runs, threads, |part| {
        scan_summaries(txn, part, terms, old_layout)
    });
    for part in found {
        for (d, t, s) in part? {
            df[t] += u64::from(s.count);
            summaries[d * terms.len() + t] = Some(s);
        }
    }
    let idfs: Vec<f64> = df.iter().map(|&d| idf(n, d)).collect();
    let of_doc = |d: usize| {
        summaries[d * terms.len()..(d + 1) * terms.len()]
            .iter()
            .enumerate()
            .filter_map(|(t, s)| s.map(|s| (t, s)))
    };
    let mut order: Vec<(f64, usize)> = (0..docs.len())
        .filter(|&d| of_doc(d).next().is_some())
        .map(|d| {
            let bound = of_doc(d)
                .map(|(t, s)| {
                    let best = s
                        .bound_points()
                        .iter()
                        .map(|&(tf, len)| tf_part(tf, len, avgdl))
                        .fold(0.0, f64::max);
                    idfs[t] * best
                })
                .sum::<f64>();
            (bound, d)
        })
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));

    let mut best: Vec<Scored> = Vec::new();
    let mut threshold = f64::NEG_INFINITY;
    let mut scores = Scores::default();
    let mut present: Vec<&str> = Vec::with_capacity(terms.len());
    let mut present_idfs: Vec<f64> = Vec::with_capacity(terms.len());
    for (bound, d) in order {
        // The bound uses the same arithmetic as the scores; the margin absorbs
        // rounding in sums taken in a different order.
        if best.len() >= limit && bound < threshold * (1.0 - 1e-9) {
            break;
        }
        let (policy, cur) = &docs[d];
        let keys = DocKeys::new(policy, &cur.version_id);
        present.clear();
        present_idfs.clear();
        for (t, _) in of_doc(d) {
            present.push(&terms[t]);
            present_idfs.push(idfs[t]);
        }
        score_document(
            txn,
            &keys,
            cur.node_count,
            &present,
            Some(&present_idfs),
            n,
            avgdl,
            &mut scores,
        )?;
        // Below the current threshold a node cannot enter the top (equal
        // scores can, by the tie order).
        scores.drain(|ord, score| {
            if best.len() < limit || score >= threshold {
                best.push(Scored { doc: d, ord, score });
            }
        });
        if best.len() >= limit {
            best = top(best, limit);
            threshold = best[limit - 1].score;
        }
    }
    Ok(top(best, limit))
}

/// A term-index bucket and the documents in scope stored in it, each as (the
/// suffix its summary keys end with, its index in the search's documents).
type Bucket = (u16, Vec<(Vec<u8>, usize)>);

/// Documents of at least this many nodes are indexed on parallel threads.
const PARALLEL_INDEX_NODES: usize = 64;

/// Cross-policy searches over at least this many buckets split the summary
/// scan between threads.
const PARALLEL_SCAN_BUCKETS: usize = 64;

/// The summaries of `terms` in the documents of `buckets` (bucket, then the
/// (key suffix, document) pairs in it), as (document, term, summary): from
/// each bucket's summary blocks of the term's group, and, when `old_layout`,
/// from the per-term entries of documents stored before summary blocks.
fn scan_summaries(
    txn: &ReadTxn,
    buckets: &[Bucket],
    terms: &[String],
    old_layout: bool,
) -> Result<Vec<(usize, usize, TermSummary)>> {
    let mut out = Vec::new();
    for (t, term) in terms.iter().enumerate() {
        let group = schema::term_group(term);
        scan_buckets(
            txn,
            buckets,
            |b| schema::summary_blocks(b, group),
            |k, v, d| {
                let s = codec::find_in_summary_block(v, term).map_err(|e| Error::corrupt(k, e))?;
                out.extend(s.map(|s| (d, t, s)));
                Ok(())
            },
        )?;
        if old_layout {
            scan_buckets(
                txn,
                buckets,
                |b| schema::terms(b, term),
                |k, v, d| {
                    let s = codec::decode_summary(v).map_err(|e| Error::corrupt(k, e))?;
                    out.push((d, t, s));
                    Ok(())
                },
            )?;
        }
    }
    Ok(out)
}

/// Calls `f` with each entry under `prefix_of(bucket)` of each of
/// `buckets` (in bucket order: one cursor hops from bucket to bucket) that
/// belongs to one of the bucket's documents in scope, with that document.
fn scan_buckets(
    txn: &ReadTxn,
    buckets: &[Bucket],
    prefix_of: impl Fn(u16) -> Vec<u8>,
    mut f: impl FnMut(&[u8], &[u8], usize) -> Result<()>,
) -> Result<()> {
    let prefixes: Vec<Vec<u8>> = buckets.iter().map(|(b, _)| prefix_of(*b)).collect();
    txn.for_each_in_prefixes(&prefixes, |i, k, v| -> Result<bool> {
        let suffix = &k[prefixes[i].len()..];
        if let Some((_, d)) = buckets[i].1.iter().find(|(s, _)| s.as_slice() == suffix) {
            f(k, v, *d)?;
        }
        Ok(true)
    })
}

/// Whether the store holds any term summary in the layout before summary
/// blocks (one seek; a store written since holds none).
fn has_old_summaries(txn: &ReadTxn) -> Result<bool> {
    let mut any = false;
    txn.for_each_prefix(&schema::old_term_space(), |_, _| -> Result<bool> {
        any = true;
        Ok(false)
    })?;
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_and_tf_match_the_formula() {
        // N = 3, df = 1: ln(1 + 2.5 / 1.5)
        assert!((idf(3, 1) - (1.0f64 + 2.5 / 1.5).ln()).abs() < 1e-12);
        // tf 4, len 8, avgdl 8: 4 * 2.2 / (4 + 1.2)
        assert!((tf_part(4, 8, 8.0) - 4.0 * 2.2 / 5.2).abs() < 1e-12);
        assert!(idf(1_000_000, 1_000_000) > 0.0);
    }

    #[test]
    fn weights_fields_when_indexing() {
        let a = Analyzer::new();
        let mut n = Node::new("x", None, "Knee MRI", (1, 1));
        n.summary = "knee".into();
        n.text = "mri mri knee".into();
        n.keywords = vec!["knee".into()];
        let idx = index_document(&a, &Indexer::default(), &[n], true);
        // knee: title 4 + summary 2 + text 1 + keywords 3 = 10
        assert_eq!(idx.get("knee").expect("knee")[0].tf, 10);
        assert_eq!(idx.get("mri").expect("mri")[0].tf, 4 + 2);
        // 2 title terms x4 + 1 x2 + 3 x1 + 1 x3
        assert_eq!(idx.get("mri").expect("mri")[0].len, 16);
        assert_eq!(idx.total_len, 16);
    }

    #[test]
    fn parallel_indexing_equals_sequential() {
        let a = Analyzer::new();
        let nodes: Vec<Node> = (0..300)
            .map(|i| {
                let mut n = Node::new(format!("n{i}"), None, format!("title {}", i % 7), (1, 1));
                n.text = format!("word{} common text {}", i % 13, i % 5);
                n
            })
            .collect();
        let indexer = Indexer::default();
        let par = index_document(&a, &indexer, &nodes, true);
        let seq = index_range(&a, &mut TermCache::default(), &nodes, 0);
        let again = index_document(&a, &indexer, &nodes, false);
        assert_eq!(again, seq, "with warm caches");
        assert_eq!(par, seq);
        let terms: Vec<&str> = seq.iter().map(|(t, _)| t).collect();
        assert!(terms.windows(2).all(|w| w[0] < w[1]), "terms sorted");
        assert!(seq
            .iter()
            .all(|(_, l)| !l.is_empty() && l.windows(2).all(|w| w[0].ord < w[1].ord)));
    }

    #[test]
    fn appending_indexes_equals_indexing_the_whole() {
        let a = Analyzer::new();
        let node = |i: usize, text: &str| {
            let mut n = Node::new(format!("n{i}"), None, String::new(), (1, 1));
            n.text = text.to_string();
            n
        };
        // Terms only in the first part, only in the second (before, between
        // and after the shared ones), and in both.
        let nodes = [
            node(0, "mango common kiwi"),
            node(1, "common mango"),
            node(2, "apple common banana"),
            node(3, "zebra kiwi common"),
        ];
        let whole = index_range(&a, &mut TermCache::default(), &nodes, 0);
        for cut in 1..nodes.len() {
            let first = index_range(&a, &mut TermCache::default(), &nodes[..cut], 0);
            let second = index_range(&a, &mut TermCache::default(), &nodes[cut..], cut as u32);
            assert_eq!(first.append(second), whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_document_index_lists_its_terms_in_byte_order() {
        let a = Analyzer::new();
        let mut n = Node::new("n0".to_string(), None, String::new(), (1, 1));
        // Terms sharing their first 8 bytes (sorted by the whole term),
        // first seen out of order, among shorter ones.
        n.text =
            "qqqqqqqqzz qqqqqqqqy kiwi qqqqqqqqzy qqqqqqqq apple qqqqqqqqa qqqqqqqqzz".to_string();
        let index = index_range(&a, &mut TermCache::default(), &[n], 0);
        let terms: Vec<&str> = index.iter().map(|(t, _)| t).collect();
        assert_eq!(terms.len(), 7, "{terms:?}");
        assert!(terms.windows(2).all(|w| w[0] < w[1]), "{terms:?}");
    }

    proptest::proptest! {
        /// Sort prefixes order strings as their bytes do: a smaller prefix
        /// means a smaller string, and a smaller string never has a larger
        /// prefix.
        #[test]
        fn sort_prefixes_agree_with_byte_order(
            a in proptest::collection::vec(0u8..4, 0..11),
            b in proptest::collection::vec(0u8..4, 0..11),
        ) {
            let (pa, pb) = (sort_prefix(&a), sort_prefix(&b));
            if pa < pb {
                proptest::prop_assert!(a < b);
            }
            if a < b {
                proptest::prop_assert!(pa <= pb);
            }
        }
    }

    #[test]
    fn ranking_is_deterministic_on_ties() {
        let hits = vec![
            Scored {
                doc: 1,
                ord: 0,
                score: 1.0,
            },
            Scored {
                doc: 0,
                ord: 5,
                score: 1.0,
            },
            Scored {
                doc: 0,
                ord: 2,
                score: 1.0,
            },
            Scored {
                doc: 2,
                ord: 0,
                score: 2.0,
            },
        ];
        let t = top(hits, 3);
        let got: Vec<_> = t.iter().map(|s| (s.doc, s.ord)).collect();
        assert_eq!(got, [(2, 0), (0, 2), (0, 5)]);
    }
}
