//! `treestore-bench`: end-to-end benchmarks. `treestore-bench docs --nodes N`
//! runs the document-layer benchmark on a generated corpus and prints a
//! markdown table (and writes JSON with `--out`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use treestore_bench::docbench::{self, DocBenchOptions};

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
        /// Write the results as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Docs {
            nodes,
            seed,
            dir,
            samples,
            cache_mib,
            out,
        } => {
            let tmp;
            let dir = match dir {
                Some(d) => {
                    anyhow::ensure!(!d.exists(), "{} already exists", d.display());
                    d
                }
                None => {
                    tmp = tempfile::tempdir()?;
                    tmp.path().join("data")
                }
            };
            let opts = DocBenchOptions {
                nodes,
                seed,
                dir,
                samples,
                cache_bytes: cache_mib << 20,
            };
            let report = docbench::run(&opts).context("document benchmark")?;
            print!("{}", report.to_markdown());
            if let Some(out) = out {
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&out, serde_json::to_string_pretty(&report.to_json())?)?;
            }
        }
    }
    Ok(())
}
