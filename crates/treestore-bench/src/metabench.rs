//! The metadata benchmark behind `treestore-bench meta`: durable tool-result
//! appends per second (one thread, then several at once; each append is its
//! own durable transaction with the default durability), and query latency of
//! the tool-result queries an agent runs: the results of one case holding
//! 1,000 among 20,000, and per-tool aggregates.
//!
//! Order of a run: load the query data set (in batches of 500 through
//! `TreeStore::apply`, not timed), time the appends (under their own case and
//! tool names, so they leave the queried case and tool as loaded), then time
//! the queries with a warm cache: each sampled query runs once to warm up,
//! then again timed, each on a fresh snapshot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use treestore::metadata::{ToolResult, ToolResultQuery};
use treestore::{Options, Timestamp, TreeStore, WriteOp};

use crate::corpus::{Rng, Vocab};
use crate::docbench::{dir_size, measure, Stat};

/// What to run.
#[derive(Debug, Clone)]
pub struct MetaBenchOptions {
    pub seed: u64,
    pub dir: PathBuf,
    /// Tool results loaded for the queries, all cases together.
    pub total_results: usize,
    /// Of those, the results of the one queried case.
    pub case_results: usize,
    /// Distinct tool names of the loaded results.
    pub tools: usize,
    /// Durable appends timed with one thread.
    pub single_appends: usize,
    /// Threads of the concurrent append run, and appends per thread.
    pub threads: usize,
    pub appends_per_thread: usize,
    /// Timed queries per kind.
    pub samples: usize,
}

/// One timed append run.
#[derive(Debug, Clone)]
pub struct AppendRun {
    pub threads: usize,
    pub appends: usize,
    pub elapsed: Duration,
    /// Log fsyncs during the run (group commit shares them).
    pub fsyncs: u64,
}

impl AppendRun {
    pub fn per_sec(&self) -> f64 {
        self.appends as f64 / self.elapsed.as_secs_f64()
    }
}

/// Results of a run.
#[derive(Debug, Clone)]
pub struct MetaBenchReport {
    pub total_results: usize,
    pub case_results: usize,
    /// Results of the tool whose aggregates are timed.
    pub tool_results: usize,
    pub load: Duration,
    pub appends: Vec<AppendRun>,
    pub queries: Vec<Stat>,
    pub data_bytes: u64,
}

impl MetaBenchReport {
    pub fn to_json(&self) -> Value {
        json!({
            "total_results": self.total_results,
            "case_results": self.case_results,
            "tool_results": self.tool_results,
            "load_seconds": self.load.as_secs_f64(),
            "data_bytes": self.data_bytes,
            "appends": self.appends.iter().map(|a| json!({
                "threads": a.threads, "appends": a.appends,
                "seconds": a.elapsed.as_secs_f64(), "per_sec": a.per_sec(),
                "fsyncs": a.fsyncs,
            })).collect::<Vec<_>>(),
            "queries": self.queries.iter().map(|s| json!({
                "name": s.name, "count": s.count, "median_us": s.median_us, "p90_us": s.p90_us,
                "p99_us": s.p99_us, "mean_us": s.mean_us, "mean_results": s.mean_results,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "{} tool results loaded in {:.1} s (batches of 500, not timed); the queried case holds {}, the queried tool {}; data directory {:.0} MiB\n\n",
            self.total_results,
            self.load.as_secs_f64(),
            self.case_results,
            self.tool_results,
            self.data_bytes as f64 / (1u64 << 20) as f64
        );
        s.push_str(
            "| durable appends | count | time | appends/s | fsyncs |\n|---|---|---|---|---|\n",
        );
        for a in &self.appends {
            s.push_str(&format!(
                "| {} thread{} | {} | {:.2} s | {:.0} | {} |\n",
                a.threads,
                if a.threads == 1 { "" } else { "s" },
                a.appends,
                a.elapsed.as_secs_f64(),
                a.per_sec(),
                a.fsyncs
            ));
        }
        s.push_str("\n| query | count | median | p90 | p99 | mean | results |\n|---|---|---|---|---|---|---|\n");
        for st in &self.queries {
            s.push_str(&format!(
                "| {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} |\n",
                st.name, st.count, st.median_us, st.p90_us, st.p99_us, st.mean_us, st.mean_results
            ));
        }
        s
    }
}

const TARGET_CASE: &str = "case-target";
const TARGET_TOOL: &str = "tool-00";
const SEC: i64 = 1_000_000_000;

/// A tool result shaped like an agent's: a small JSON input, a JSON output of
/// a few hundred bytes, a policy and node for most.
fn generate(
    rng: &mut Rng,
    vocab: &Vocab,
    case: &str,
    tool: &str,
    executed_at: Timestamp,
) -> ToolResult {
    let mut text = String::new();
    vocab.phrase(rng, 40, &mut text);
    let policy = format!("policy-{:04}", rng.range(0, 499));
    let node = format!("{:04}", rng.range(0, 299));
    ToolResult {
        execution_id: String::new(),
        case_id: case.to_string(),
        tool_name: tool.to_string(),
        input: json!({"policy": policy, "query": text.chars().take(60).collect::<String>()})
            .to_string(),
        output: json!({"node": node, "excerpt": text, "score": rng.unit()}).to_string(),
        policy_id: policy,
        version_id: "v1".into(),
        node_id: node,
        success: rng.range(0, 99) < 93,
        latency_ms: 5.0 + rng.unit() * rng.unit() * 400.0,
        error_message: String::new(),
        executed_at,
    }
}

pub fn run(opts: &MetaBenchOptions) -> anyhow::Result<MetaBenchReport> {
    anyhow::ensure!(
        opts.case_results <= opts.total_results
            && opts.tools > 0
            && opts.threads > 0
            && opts.samples > 0,
        "need case_results <= total_results, and tools, threads and samples > 0"
    );
    let store = TreeStore::open(&opts.dir, Options::default())?;
    let mut rng = Rng::new(opts.seed);
    let vocab = Vocab::new(opts.seed, 5_000);
    let now = Timestamp::now();
    // Results over the last 30 days, in random order of time; the target case
    // interleaved with 100-result cases.
    let others = (opts.total_results - opts.case_results)
        .div_ceil(100)
        .max(1);
    let mut tool_count = 0;
    let t = Instant::now();
    let mut ops = Vec::with_capacity(500);
    // Exactly `case_results` positions of the target case, shuffled.
    let mut target: Vec<bool> = (0..opts.total_results)
        .map(|i| i < opts.case_results)
        .collect();
    for i in (1..target.len()).rev() {
        target.swap(i, rng.range(0, i));
    }
    for (i, &in_target) in target.iter().enumerate() {
        let case = if in_target {
            TARGET_CASE.to_string()
        } else {
            format!("case-{:05}", rng.range(0, others - 1))
        };
        let tool = format!("tool-{:02}", rng.range(0, opts.tools - 1));
        tool_count += usize::from(tool == TARGET_TOOL);
        let at =
            Timestamp::from_unix_nanos(now.unix_nanos() - rng.range(0, 30 * 86_400) as i64 * SEC);
        ops.push(WriteOp::ToolResult(generate(
            &mut rng, &vocab, &case, &tool, at,
        )));
        if ops.len() == 500 || i + 1 == opts.total_results {
            store.apply(std::mem::take(&mut ops))?;
        }
    }
    let load = t.elapsed();
    // The loaded counts, checked before timing anything.
    let case_query = ToolResultQuery {
        case_id: Some(TARGET_CASE),
        limit: 1_000,
        ..Default::default()
    };
    let loaded = store.metadata().tool_results(&ToolResultQuery {
        limit: treestore::MAX_QUERY_LIMIT,
        ..case_query.clone()
    })?;
    anyhow::ensure!(
        loaded.len() == opts.case_results,
        "the target case holds {} results, not {}",
        loaded.len(),
        opts.case_results
    );

    // Appends: each its own durable transaction.
    let mut appends = Vec::new();
    let fsyncs = |store: &TreeStore| store.db().stats().map(|s| s.wal.fsyncs);
    {
        let before = fsyncs(&store)?;
        let md = store.metadata();
        let batch: Vec<ToolResult> = (0..opts.single_appends)
            .map(|i| {
                generate(
                    &mut rng,
                    &vocab,
                    &format!("append-1-{}", i % 50),
                    "append",
                    Timestamp::EPOCH,
                )
            })
            .collect();
        let t = Instant::now();
        for r in batch {
            md.put_tool_result(r)?;
        }
        let elapsed = t.elapsed();
        appends.push(AppendRun {
            threads: 1,
            appends: opts.single_appends,
            elapsed,
            fsyncs: fsyncs(&store)? - before,
        });
    }
    {
        let per_thread: Vec<Vec<ToolResult>> = (0..opts.threads)
            .map(|th| {
                (0..opts.appends_per_thread)
                    .map(|i| {
                        let case = format!("append-{th}-{}", i % 50);
                        generate(&mut rng, &vocab, &case, "append", Timestamp::EPOCH)
                    })
                    .collect()
            })
            .collect();
        let before = fsyncs(&store)?;
        let t = Instant::now();
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = per_thread
                .into_iter()
                .map(|rs| {
                    let store = &store;
                    s.spawn(move || -> treestore::Result<()> {
                        let md = store.metadata();
                        for r in rs {
                            md.put_tool_result(r)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("append thread panicked"))??;
            }
            Ok(())
        })?;
        let elapsed = t.elapsed();
        appends.push(AppendRun {
            threads: opts.threads,
            appends: opts.threads * opts.appends_per_thread,
            elapsed,
            fsyncs: fsyncs(&store)? - before,
        });
    }

    // Queries.
    let samples: Vec<()> = vec![(); opts.samples];
    let md = store.metadata();
    let mut queries = Vec::new();
    queries.push(measure("tool_results(case, limit 1000)", &samples, |_| {
        md.tool_results(&case_query).map(|v| v.len())
    })?);
    let limit_10 = ToolResultQuery {
        limit: 10,
        ..case_query.clone()
    };
    queries.push(measure("tool_results(case, limit 10)", &samples, |_| {
        md.tool_results(&limit_10).map(|v| v.len())
    })?);
    queries.push(measure("tool_stats(one tool)", &samples, |_| {
        md.tool_stats(Some(TARGET_TOOL), None, None)
            .map(|v| v.first().map_or(0, |s| s.count as usize))
    })?);
    let week = Some(Timestamp::from_unix_nanos(
        now.unix_nanos() - 7 * 86_400 * SEC,
    ));
    queries.push(measure(
        "tool_stats(one tool, last 7 days)",
        &samples,
        |_| {
            md.tool_stats(Some(TARGET_TOOL), week, None)
                .map(|v| v.first().map_or(0, |s| s.count as usize))
        },
    )?);
    let stats = md.tool_stats(Some(TARGET_TOOL), None, None)?;
    anyhow::ensure!(
        stats.first().map(|s| s.count as usize) == Some(tool_count),
        "tool_stats counted {:?}, loaded {tool_count}",
        stats.first().map(|s| s.count)
    );
    store.close()?;
    Ok(MetaBenchReport {
        total_results: opts.total_results,
        case_results: opts.case_results,
        tool_results: tool_count,
        load,
        appends,
        queries,
        data_bytes: dir_size(&opts.dir),
    })
}
