//! The document-layer benchmark: ingests a generated corpus (durable
//! `store_document` per document, from one client or `--writers` concurrent
//! ones, or atomic batches of documents with `--batch`; every index and
//! posting included), then
//! measures queries with a warm cache: each sampled query runs once to warm up,
//! then again timed, each on a fresh snapshot, with no version given (so the
//! current-version lookup is included).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use treestore::{Options, SearchScope, TreeStore, WriteOp};

use crate::corpus::{Corpus, CorpusSpec, Rng, Vocab};

/// What to run.
#[derive(Debug, Clone)]
pub struct DocBenchOptions {
    pub nodes: usize,
    pub seed: u64,
    pub dir: PathBuf,
    /// Timed queries per kind (cross-policy search uses a tenth).
    pub samples: usize,
    pub cache_bytes: usize,
    /// Page size of a new data directory.
    pub page_size: usize,
    /// Documents per transaction: 1 = one durable `store_document` each;
    /// more = atomic batches through `TreeStore::apply` (documents of a batch
    /// are indexed in parallel).
    pub batch: usize,
    /// Concurrent clients storing one document each at a time (with `batch`
    /// 1): documents are generated in rounds of [`ROUND_PER_WRITER`] per
    /// writer (untimed), then a round is stored by this many threads taking
    /// the next document as they come free.
    pub writers: usize,
    /// `dir` already holds this corpus (from an earlier run with the same
    /// seed and node count): skip the ingest, measure the queries.
    pub preloaded: bool,
    /// Measure only this query kind (one of [`QUERY_KINDS`]), for profiling.
    pub only: Option<String>,
}

/// Documents generated per writer and round of a `writers` > 1 ingest.
pub const ROUND_PER_WRITER: usize = 8;

/// Short names of the measured query kinds, in the order they run.
pub const QUERY_KINDS: [&str; 7] = [
    "get_node",
    "get_children",
    "subtree",
    "ancestors",
    "page",
    "search_one",
    "search_all",
];

/// Latency summary of one query kind, in microseconds.
#[derive(Debug, Clone)]
pub struct Stat {
    pub name: &'static str,
    pub count: usize,
    pub median_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    /// Mean number of nodes returned.
    pub mean_results: f64,
}

/// Results of a run.
#[derive(Debug, Clone)]
pub struct DocBenchReport {
    pub nodes: usize,
    pub documents: usize,
    pub ingest: Duration,
    pub generate: Duration,
    pub data_bytes: u64,
    /// Documents per ingest transaction.
    pub batch: usize,
    /// Concurrent ingest clients.
    pub writers: usize,
    pub stats: Vec<Stat>,
}

impl DocBenchReport {
    pub fn ingest_nodes_per_sec(&self) -> f64 {
        self.nodes as f64 / self.ingest.as_secs_f64()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "nodes": self.nodes,
            "documents": self.documents,
            "ingest_seconds": self.ingest.as_secs_f64(),
            "documents_per_transaction": self.batch,
            "writers": self.writers,
            "generate_seconds": self.generate.as_secs_f64(),
            "ingest_nodes_per_sec": self.ingest_nodes_per_sec(),
            "data_bytes": self.data_bytes,
            "queries": self.stats.iter().map(|s| json!({
                "name": s.name, "count": s.count, "median_us": s.median_us, "p90_us": s.p90_us,
                "p99_us": s.p99_us, "mean_us": s.mean_us, "mean_results": s.mean_results,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "{} nodes in {} documents, {} per transaction, {} writer(s): ingest {:.1} s = {:.0} nodes/s (generation {:.1} s, not counted); data directory {:.0} MiB\n\n",
            self.nodes,
            self.documents,
            self.batch.max(1),
            self.writers.max(1),
            self.ingest.as_secs_f64(),
            self.ingest_nodes_per_sec(),
            self.generate.as_secs_f64(),
            self.data_bytes as f64 / (1u64 << 20) as f64
        );
        s.push_str("| query | count | median | p90 | p99 | mean | results |\n|---|---|---|---|---|---|---|\n");
        for st in &self.stats {
            s.push_str(&format!(
                "| {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} |\n",
                st.name, st.count, st.median_us, st.p90_us, st.p99_us, st.mean_us, st.mean_results
            ));
        }
        s
    }
}

/// Stores `docs` with `writers` threads, each storing the next document not
/// yet taken (one durable `store_document` each); the wall time taken.
fn store_concurrently(
    store: &TreeStore,
    docs: Vec<crate::corpus::GeneratedDoc>,
    writers: usize,
) -> treestore::Result<Duration> {
    let queue = std::sync::Mutex::new(docs.into_iter());
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).next();
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| -> treestore::Result<()> {
                    while let Some(doc) = next() {
                        store.store_document(doc.document, doc.nodes)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    Ok(t.elapsed())
}

/// What the query sampler remembers of each stored document.
struct DocInfo {
    nodes: u16,
    pages: u32,
    /// Document-order positions of nodes with children.
    internal: Vec<u16>,
    deepest: u16,
}

fn node_id(pos: u16) -> String {
    format!("{pos:04}")
}

fn summarize(name: &'static str, mut times: Vec<Duration>, results: usize) -> Stat {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(times[((times.len() - 1) as f64 * q).round() as usize]);
    let count = times.len();
    Stat {
        name,
        count,
        median_us: at(0.5),
        p90_us: at(0.9),
        p99_us: at(0.99),
        mean_us: times.iter().map(|d| us(*d)).sum::<f64>() / count as f64,
        mean_results: results as f64 / count as f64,
    }
}

pub(crate) fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs a query once to warm up and once timed for each sample.
pub(crate) fn measure<S>(
    name: &'static str,
    samples: &[S],
    mut op: impl FnMut(&S) -> treestore::Result<usize>,
) -> treestore::Result<Stat> {
    for s in samples {
        op(s)?;
    }
    let mut times = Vec::with_capacity(samples.len());
    let mut results = 0;
    for s in samples {
        let t = Instant::now();
        results += op(s)?;
        times.push(t.elapsed());
    }
    Ok(summarize(name, times, results))
}

/// Two-term queries: a domain term and a mid-frequency vocabulary word.
fn queries(vocab: &Vocab, rng: &mut Rng, n: usize) -> Vec<String> {
    let domain = Vocab::domain_terms();
    (0..n)
        .map(|_| {
            let d = domain[rng.range(0, domain.len() - 1)];
            let w = &vocab.words[rng.range(50, 3_000.min(vocab.words.len() - 1))];
            format!("{d} {w}")
        })
        .collect()
}

pub fn run(opts: &DocBenchOptions) -> treestore::Result<DocBenchReport> {
    let options = Options {
        cache_bytes: opts.cache_bytes,
        page_size: opts.page_size,
        ..Options::default()
    };
    let store = TreeStore::open(&opts.dir, options)?;
    let mut corpus = Corpus::new(CorpusSpec::new(opts.seed, opts.nodes));
    let mut docs: Vec<DocInfo> = Vec::new();
    let (mut ingest, mut generate) = (Duration::ZERO, Duration::ZERO);
    let mut pending = Vec::new();
    let mut round = Vec::new();
    loop {
        let t = Instant::now();
        let Some(doc) = corpus.next() else { break };
        generate += t.elapsed();
        let deepest = (0..doc.nodes.len())
            .max_by_key(|&i| (doc.nodes[i].depth, i))
            .unwrap_or(0) as u16;
        let internal = (0..doc.nodes.len())
            .filter(|&i| !doc.nodes[i].child_ids.is_empty())
            .map(|i| i as u16)
            .collect();
        docs.push(DocInfo {
            nodes: doc.nodes.len() as u16,
            pages: doc.pages,
            internal,
            deepest,
        });
        if opts.preloaded {
            continue;
        }
        if opts.writers > 1 {
            round.push(doc);
            if round.len() >= ROUND_PER_WRITER * opts.writers {
                ingest += store_concurrently(&store, std::mem::take(&mut round), opts.writers)?;
            }
            continue;
        }
        let t = Instant::now();
        if opts.batch <= 1 {
            store.store_document(doc.document, doc.nodes)?;
        } else {
            pending.push(WriteOp::StoreDocument {
                document: doc.document,
                nodes: doc.nodes,
                version: None,
            });
            if pending.len() >= opts.batch {
                store.apply(std::mem::take(&mut pending))?;
            }
        }
        ingest += t.elapsed();
    }
    if !pending.is_empty() {
        let t = Instant::now();
        store.apply(pending)?;
        ingest += t.elapsed();
    }
    if !round.is_empty() {
        ingest += store_concurrently(&store, round, opts.writers)?;
    }
    let data_bytes = dir_size(&opts.dir);

    let wanted = |kind: &str| opts.only.as_deref().is_none_or(|only| only == kind);
    let mut rng = Rng::new(opts.seed ^ 0xBE7C);
    let n = opts.samples;
    let pick = |rng: &mut Rng| rng.range(0, docs.len() - 1);
    let mut stats = Vec::new();

    let sample: Vec<(usize, u16)> = (0..n)
        .map(|_| {
            let d = pick(&mut rng);
            (d, rng.range(0, docs[d].nodes as usize - 1) as u16)
        })
        .collect();
    stats.extend(
        wanted("get_node")
            .then(|| {
                measure("get_node", &sample, |(d, pos)| {
                    store
                        .read()
                        .get_node(&Corpus::policy_id(*d), None, &node_id(*pos))
                        .map(|_| 1)
                })
            })
            .transpose()?,
    );

    let sample: Vec<(usize, u16)> = (0..n)
        .filter_map(|_| {
            let d = pick(&mut rng);
            let i = &docs[d].internal;
            (!i.is_empty()).then(|| (d, i[rng.range(0, i.len() - 1)]))
        })
        .collect();
    stats.extend(
        wanted("get_children")
            .then(|| {
                measure("get_children", &sample, |(d, pos)| {
                    store
                        .read()
                        .get_children(&Corpus::policy_id(*d), None, Some(&node_id(*pos)))
                        .map(|v| v.len())
                })
            })
            .transpose()?,
    );

    let full: Vec<usize> = (0..docs.len()).filter(|&d| docs[d].nodes == 300).collect();
    if !full.is_empty() {
        let sample: Vec<usize> = (0..n).map(|_| full[rng.range(0, full.len() - 1)]).collect();
        stats.extend(
            wanted("subtree")
                .then(|| {
                    measure("subtree of a 300-node document", &sample, |d| {
                        store
                            .read()
                            .get_subtree(&Corpus::policy_id(*d), None, "0000", 0)
                            .map(|v| v.len())
                    })
                })
                .transpose()?,
        );
    }

    let sample: Vec<usize> = (0..n).map(|_| pick(&mut rng)).collect();
    stats.extend(
        wanted("ancestors")
            .then(|| {
                measure("ancestor path (deepest node)", &sample, |d| {
                    store
                        .read()
                        .get_ancestor_path(&Corpus::policy_id(*d), None, &node_id(docs[*d].deepest))
                        .map(|v| v.len())
                })
            })
            .transpose()?,
    );

    let sample: Vec<(usize, u32)> = (0..n)
        .map(|_| {
            let d = pick(&mut rng);
            (d, rng.range(1, docs[d].pages as usize) as u32)
        })
        .collect();
    stats.extend(
        wanted("page")
            .then(|| {
                measure("nodes by page", &sample, |(d, page)| {
                    store
                        .read()
                        .get_nodes_by_page(&Corpus::policy_id(*d), None, *page)
                        .map(|v| v.len())
                })
            })
            .transpose()?,
    );

    let qs = queries(corpus.vocab(), &mut rng, n);
    let sample: Vec<(usize, &String)> = qs.iter().map(|q| (pick(&mut rng), q)).collect();
    stats.extend(
        wanted("search_one")
            .then(|| {
                measure("search top-10, one policy", &sample, |(d, q)| {
                    let scope = SearchScope::Document {
                        policy: &Corpus::policy_id(*d),
                        version: None,
                    };
                    store.read().search(scope, q, 10).map(|v| v.len())
                })
            })
            .transpose()?,
    );

    let sample: Vec<&String> = qs.iter().take((n / 10).max(10)).collect();
    stats.extend(
        wanted("search_all")
            .then(|| {
                measure("search top-10, all policies", &sample, |q| {
                    store
                        .read()
                        .search(SearchScope::AllPolicies, q, 10)
                        .map(|v| v.len())
                })
            })
            .transpose()?,
    );

    store.close()?;
    Ok(DocBenchReport {
        nodes: opts.nodes,
        documents: docs.len(),
        ingest,
        batch: opts.batch.max(1),
        writers: opts.writers.max(1),
        generate,
        data_bytes,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_run(writers: usize) -> DocBenchReport {
        let tmp = tempfile::tempdir().expect("temp dir");
        let opts = DocBenchOptions {
            nodes: 4_500,
            seed: 7,
            dir: tmp.path().join("data"),
            samples: 20,
            cache_bytes: 64 << 20,
            page_size: Options::default().page_size,
            batch: 1,
            writers,
            preloaded: false,
            only: None,
        };
        run(&opts).expect("benchmark run")
    }

    /// Concurrent writers store every document (more than one round of
    /// them), and the queries then find what one writer's run finds.
    #[test]
    fn concurrent_writers_store_the_whole_corpus() {
        let one = small_run(1);
        let many = small_run(2);
        // A full round and part of another.
        assert!(
            many.documents > ROUND_PER_WRITER * 2
                && !many.documents.is_multiple_of(ROUND_PER_WRITER * 2),
            "{} documents",
            many.documents
        );
        assert_eq!((many.nodes, many.documents), (one.nodes, one.documents));
        assert_eq!(many.writers, 2);
        let results = |r: &DocBenchReport| -> Vec<(&str, f64)> {
            r.stats.iter().map(|s| (s.name, s.mean_results)).collect()
        };
        assert_eq!(results(&many), results(&one));
        assert!(many.stats.iter().all(|s| s.mean_results > 0.0));
    }
}
