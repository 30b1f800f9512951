//! `treestore check --data DIR`: verifies every page checksum, the B+tree's order
//! and structure, page accounting (no page both free and in use, none leaked) and
//! the log's framing, without modifying anything. Exit 0 and a one-line summary
//! when sound; exit 1 and one line per problem otherwise; exit 2 when the check
//! cannot run (missing directory, directory in use).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use treestore_storage::vfs::OsVfs;

use crate::data_dir::DataDir;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    data: DataDir,
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let dir = &args.data.path;
    let report = treestore_storage::check::check_dir(dir, &OsVfs)
        .with_context(|| format!("cannot check data directory {}", dir.display()))?;
    if report.is_ok() {
        println!("ok: {}", report.summary());
        return Ok(ExitCode::SUCCESS);
    }
    println!("damaged: {}", report.summary());
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    Ok(ExitCode::from(1))
}
