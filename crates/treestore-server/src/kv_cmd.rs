//! `treestore kv`: get, put, delete, scan, bulk-load and stats on a data directory,
//! each command one transaction. Keys and values are text on the command line.
//!
//! Exit codes: 0 success; 1 `get` of an absent key; 2 any error (bad input,
//! corruption, I/O, data directory in use).

use std::io::{BufRead, BufReader, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use treestore_storage::{Db, Options};

use crate::data_dir::DataDir;

#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Set KEY to VALUE (or to the contents of --value-file).
    Put {
        key: String,
        /// The value (omit when --value-file is given).
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
    },
    /// Print the value of KEY; exit code 1 if it is absent.
    Get { key: String },
    /// Delete KEY (no error if it is absent).
    Del { key: String },
    /// Print `KEY<TAB>VALUE` lines in key order.
    Scan {
        /// Only keys starting with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Only keys >= START.
        #[arg(long)]
        start: Option<String>,
        /// Only keys < END.
        #[arg(long)]
        end: Option<String>,
        /// At most N entries.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Last key first.
        #[arg(long)]
        reverse: bool,
    },
    /// Write every `KEY<TAB>VALUE` line of FILE in one atomic batch; prints the count.
    Load { file: PathBuf },
    /// Print sizes and counters as `name: value` lines.
    Stats,
}

fn open(dir: &PathBuf, create: bool) -> Result<Db> {
    let options = Options {
        create_if_missing: create,
        ..Options::default()
    };
    Db::open(dir, options).with_context(|| format!("cannot open data directory {}", dir.display()))
}

pub fn run(args: KvArgs) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.command {
        KvCommand::Put {
            key,
            value,
            value_file,
        } => {
            let value = match (value, value_file) {
                (Some(v), _) => v.into_bytes(),
                (None, Some(f)) => std::fs::read(&f)
                    .with_context(|| format!("cannot read value file {}", f.display()))?,
                (None, None) => bail!("put needs a VALUE or --value-file"),
            };
            let db = open(&args.data.path, true)?;
            db.put(key.as_bytes(), &value).context("put failed")?;
        }
        KvCommand::Get { key } => {
            let db = open(&args.data.path, false)?;
            match db.get(key.as_bytes()).context("get failed")? {
                Some(v) => {
                    out.write_all(&v)?;
                    out.write_all(b"\n")?;
                }
                None => {
                    eprintln!("treestore: key not found: {key}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        KvCommand::Del { key } => {
            let db = open(&args.data.path, false)?;
            db.delete(key.as_bytes()).context("delete failed")?;
        }
        KvCommand::Scan {
            prefix,
            start,
            end,
            limit,
            reverse,
        } => {
            let db = open(&args.data.path, false)?;
            let txn = db.begin_read();
            let (mut lower, mut upper) = match &prefix {
                Some(p) => treestore_storage::btree::cursor::prefix_bounds(p.as_bytes()),
                None => (Bound::Unbounded, Bound::Unbounded),
            };
            if let Some(s) = start {
                let s = s.into_bytes();
                lower = match lower {
                    Bound::Included(p) if p > s => Bound::Included(p),
                    _ => Bound::Included(s),
                };
            }
            if let Some(e) = end {
                let e = e.into_bytes();
                upper = match upper {
                    Bound::Excluded(p) if p < e => Bound::Excluded(p),
                    _ => Bound::Excluded(e),
                };
            }
            let lo = lower.as_ref().map(|k| k.as_slice());
            let hi = upper.as_ref().map(|k| k.as_slice());
            let iter = if reverse {
                txn.range_rev(lo, hi)
            } else {
                txn.range(lo, hi)
            };
            for item in iter.take(limit.unwrap_or(usize::MAX)) {
                let (k, v) = item.context("scan failed")?;
                out.write_all(&k)?;
                out.write_all(b"\t")?;
                out.write_all(&v)?;
                out.write_all(b"\n")?;
            }
        }
        KvCommand::Load { file } => {
            let pairs = read_load_file(&file)?;
            let db = open(&args.data.path, true)?;
            let mut txn = db.begin_write();
            for (line, (k, v)) in &pairs {
                txn.put(k.as_bytes(), v.as_bytes())
                    .with_context(|| format!("{}:{line}: invalid entry", file.display()))?;
            }
            txn.commit().context("load failed; nothing was written")?;
            writeln!(out, "{}", pairs.len())?;
        }
        KvCommand::Stats => {
            let db = open(&args.data.path, false)?;
            let s = db.stats().context("stats failed")?;
            writeln!(out, "page_size: {}", s.page_size)?;
            writeln!(out, "page_count: {}", s.page_count)?;
            writeln!(out, "pages_in_use: {}", s.pages_in_use)?;
            writeln!(out, "free_pages: {}", s.free_pages + s.pending_pages)?;
            writeln!(out, "file_bytes: {}", s.file_bytes)?;
            writeln!(out, "entries: {}", s.entries)?;
            writeln!(out, "tree_depth: {}", s.depth)?;
            writeln!(out, "commit_seq: {}", s.commit_seq)?;
            writeln!(out, "checkpoint_commit_seq: {}", s.checkpoint_commit_seq)?;
            writeln!(
                out,
                "log_bytes_since_checkpoint: {}",
                s.log_bytes_since_checkpoint
            )?;
            writeln!(out, "log_segments: {}", s.wal.segments)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Parses `KEY<TAB>VALUE` lines (the value is the rest of the line after the
/// first tab; blank lines are skipped). Any malformed line fails the whole load.
fn read_load_file(file: &PathBuf) -> Result<Vec<(usize, (String, String))>> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| {
            format!(
                "{}:{n}: cannot read line (is it UTF-8 text?)",
                file.display()
            )
        })?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('\t') else {
            bail!(
                "{}:{n}: expected KEY<TAB>VALUE; nothing was written",
                file.display()
            );
        };
        pairs.push((n, (k.to_string(), v.to_string())));
    }
    Ok(pairs)
}
