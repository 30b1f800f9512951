//! `treestore-bench`: end-to-end benchmarks. `treestore-bench grpc` measures
//! the server over gRPC; `treestore-bench docs --nodes N`
//! runs the document-layer benchmark on a generated corpus; `treestore-bench
//! meta` the metadata benchmark (durable tool-result appends, tool-result
//! queries). Each prints a markdown table (and writes JSON with `--out`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use treestore_bench::docbench::{self, DocBenchOptions};
use treestore_bench::grpcbench::{self, GrpcBenchOptions};
use treestore_bench::metabench::{self, MetaBenchOptions};

/// mimalloc for the embedded measurements: node records are multi-KiB
/// strings, which glibc's malloc serves from its sorted bins (a 300-node
/// subtree took twice as long with it). An application embedding the
/// `treestore` crate chooses its allocator; the `treestore` server binary
/// keeps the system allocator, which did as well or better over gRPC
/// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "treestore-bench", about = "TreeStore end-to-end benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Document layer: ingest and queries on a generated PageIndex-shaped corpus.
    Docs {
        /// Total nodes to generate and ingest.
        #[arg(long, default_value_t = 50_000)]
        nodes: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Data directory (must not exist; default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Timed queries per kind.
        #[arg(long, default_value_t = 2_000)]
        samples: usize,
        /// Buffer pool size in MiB.
        #[arg(long, default_value_t = 4_096)]
        cache_mib: usize,
        /// Page size in bytes of a new data directory (a power of two from
        /// 1024 to 65536; an existing directory keeps its own).
        #[arg(long, default_value_t = treestore::Options::default().page_size)]
        page_size: usize,
        /// Documents per ingest transaction (1: one durable store_document
        /// each; more: atomic batches, documents indexed in parallel).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Concurrent ingest clients, each storing one document at a time
        /// with a durable store_document (with --batch 1 only).
        #[arg(long, default_value_t = 1)]
        writers: usize,
        /// `--dir` already holds this corpus (from a run with the same --seed
        /// and --nodes): skip the ingest and measure the queries only.
        #[arg(long)]
        preloaded: bool,
        /// Measure only this query kind (for profiling).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(docbench::QUERY_KINDS))]
        only: Option<String>,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The server end to end: starts `treestore serve`, stores a corpus over
    /// gRPC, then measures GetNode, GetChildren, GetSubtree and
    /// SearchByKeyword with 1, 8 and 32 concurrent clients.
    Grpc {
        /// Total nodes to generate and store.
        #[arg(long, default_value_t = 20_000)]
        nodes: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The server binary [default: `treestore` next to this binary].
        #[arg(long)]
        bin: Option<PathBuf>,
        /// Data directory (must not exist; default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Concurrent clients, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        clients: Vec<usize>,
        /// Measuring seconds per (RPC, clients) cell.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 50_551)]
        port: u16,
        /// `--dir` already holds this corpus (from `docs --dir` with the same
        /// --seed and --nodes): measure queries without storing it again.
        #[arg(long)]
        preloaded: bool,
        /// The server's buffer pool in MiB.
        #[arg(long, default_value_t = 2_048)]
        cache_mib: usize,
        /// Query only the first N documents, each read once (GetDocument)
        /// before measuring: a warm working set. Default: every document,
        /// no warm-up read.
        #[arg(long)]
        working_set: Option<usize>,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Metadata store: durable tool-result appends per second (1 and N
    /// threads) and tool-result query latency.
    Meta {
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Data directory (must not exist; default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Tool results loaded for the queries, all cases together.
        #[arg(long, default_value_t = 20_000)]
        total: usize,
        /// Of those, the results of the queried case.
        #[arg(long, default_value_t = 1_000)]
        case_results: usize,
        /// Distinct tool names among the loaded results.
        #[arg(long, default_value_t = 10)]
        tools: usize,
        /// Durable appends timed with one thread.
        #[arg(long, default_value_t = 5_000)]
        single_appends: usize,
        /// Threads of the concurrent append run.
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Durable appends per thread in the concurrent run.
        #[arg(long, default_value_t = 2_500)]
        appends_per_thread: usize,
        /// Timed queries per kind.
        #[arg(long, default_value_t = 1_000)]
        samples: usize,
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The data directory of a benchmark over a corpus: with `preloaded`, the
/// given directory, which must exist; otherwise as [`data_dir`].
fn bench_dir(
    dir: Option<PathBuf>,
    preloaded: bool,
) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    match (preloaded, dir) {
        (true, Some(d)) => {
            anyhow::ensure!(d.is_dir(), "--preloaded: {} does not exist", d.display());
            Ok((None, d))
        }
        (true, None) => anyhow::bail!("--preloaded needs --dir"),
        (false, dir) => data_dir(dir),
    }
}

/// The data directory: `dir` if given (it must not exist), else one in a
/// temporary directory that lives as long as the returned guard.
fn data_dir(dir: Option<PathBuf>) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    match dir {
        Some(d) => {
            anyhow::ensure!(!d.exists(), "{} already exists", d.display());
            Ok((None, d))
        }
        None => {
            let tmp = tempfile::tempdir()?;
            let d = tmp.path().join("data");
            Ok((Some(tmp), d))
        }
    }
}

fn write_json(out: Option<PathBuf>, value: &serde_json::Value) -> Result<()> {
    if let Some(out) = out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&out, serde_json::to_string_pretty(value)?)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Docs {
            nodes,
            seed,
            dir,
            samples,
            cache_mib,
            page_size,
            batch,
            writers,
            preloaded,
            only,
            out,
        } => {
            if writers > 1 && batch > 1 {
                anyhow::bail!("--writers and --batch cannot be combined");
            }
            let (_tmp, dir) = bench_dir(dir, preloaded)?;
            let opts = DocBenchOptions {
                nodes,
                seed,
                dir,
                samples,
                cache_bytes: cache_mib << 20,
                page_size,
                batch,
                writers,
                preloaded,
                only,
            };
            let report = docbench::run(&opts).context("document benchmark")?;
            print!("{}", report.to_markdown());
            write_json(out, &report.to_json())?;
        }
        Command::Grpc {
            nodes,
            seed,
            bin,
            dir,
            clients,
            seconds,
            port,
            preloaded,
            cache_mib,
            working_set,
            out,
        } => {
            let (_tmp, dir) = bench_dir(dir, preloaded)?;
            let bin = match bin {
                Some(b) => b,
                None => std::env::current_exe()?
                    .parent()
                    .context("no directory of the benchmark binary")?
                    .join("treestore"),
            };
            let opts = GrpcBenchOptions {
                bin,
                nodes,
                seed,
                dir,
                clients,
                seconds,
                port,
                preloaded,
                cache_mib,
                working_set,
            };
            let report = grpcbench::run(&opts).context("gRPC benchmark")?;
            print!("{}", report.to_markdown());
            write_json(out, &report.to_json())?;
        }
        Command::Meta {
            seed,
            dir,
            total,
            case_results,
            tools,
            single_appends,
            threads,
            appends_per_thread,
            samples,
            out,
        } => {
            let (_tmp, dir) = data_dir(dir)?;
            let opts = MetaBenchOptions {
                seed,
                dir,
                total_results: total,
                case_results,
                tools,
                single_appends,
                threads,
                appends_per_thread,
                samples,
            };
            let report = metabench::run(&opts).context("metadata benchmark")?;
            print!("{}", report.to_markdown());
            write_json(out, &report.to_json())?;
        }
    }
    Ok(())
}
