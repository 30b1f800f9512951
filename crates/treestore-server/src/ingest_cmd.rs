//! `treestore ingest --data DIR --policy P --version V [--effective-date
//! YYYY-MM-DD] FILE.json`: imports a PageIndex output (either shape) as one
//! version of a policy, in one transaction, and prints `stored N nodes`.
//!
//! Exit codes: 0 stored; 2 any error (unreadable or malformed file, invalid
//! tree, data directory in use); nothing is stored on error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use treestore::{pageindex, Timestamp, TreeStore, VersionSpec};

use crate::data_dir::DataDir;

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    data: DataDir,
    /// Policy id the document belongs to.
    #[arg(long)]
    policy: String,
    /// Version id of this document within the policy.
    #[arg(long)]
    version: String,
    /// Date from which this version is in force (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    effective_date: Option<Timestamp>,
    /// PageIndex JSON output (open-source `structure` shape or the hosted API's
    /// `result`/`nodes` shape).
    file: PathBuf,
}

fn parse_date(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_date(s).map_err(|e| e.to_string())
}

pub fn run(args: IngestArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let imported = pageindex::parse(&text).with_context(|| format!("{}", args.file.display()))?;
    let mut doc = imported.document;
    doc.policy_id = args.policy;
    doc.version_id = args.version;
    if let Some(date) = args.effective_date {
        doc.metadata
            .insert("effective_date".into(), date.to_string());
    }
    let store = TreeStore::open(&args.data.path, Default::default())
        .with_context(|| format!("cannot open data directory {}", args.data.path.display()))?;
    // The version takes effect at the date given, else when it is stored.
    let spec = args.effective_date.map(|date| VersionSpec {
        effective_start: Some(date),
        ..Default::default()
    });
    let report = store.store_document_with(doc, imported.nodes, spec.as_ref())?;
    store.close()?;
    println!("stored {} nodes", report.nodes);
    Ok(ExitCode::SUCCESS)
}
