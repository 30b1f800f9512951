//! `treestore query --data DIR --policy P [--version V] WHAT`: runs one query
//! on a data directory and prints JSON on stdout: one node object for `node`,
//! an array of node objects for `nodes`, `children`, `subtree`, `ancestors`,
//! `page` and `document`, and for `search` an array of
//! `{"node": {...}, "score": x, "policy_id": .., "version_id": ..}`.
//! `search` without `--policy` searches the current version of every policy.
//!
//! Exit codes: 0 success; 1 a missing document or node (for `nodes`: any
//! requested id missing; the found ones are still printed); 2 other errors.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use treestore::{Options, SearchScope, TreeStore};

use crate::data_dir::DataDir;

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    data: DataDir,
    /// Policy id (required except for `search`, which without it searches
    /// every policy's current version).
    #[arg(long)]
    policy: Option<String>,
    /// Version id (default: the policy's current version).
    #[arg(long)]
    version: Option<String>,
    #[command(subcommand)]
    what: Query,
}

#[derive(Debug, Subcommand)]
enum Query {
    /// One node.
    Node { id: String },
    /// Several nodes by id, in the order given.
    Nodes {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Children of a node in document order; without ID, the top-level nodes.
    Children { id: Option<String> },
    /// The node, then its descendants breadth-first.
    Subtree {
        id: String,
        /// Levels below the node (0 = all).
        #[arg(long, default_value_t = 0)]
        max_depth: u32,
    },
    /// From the top-level ancestor down to the node.
    Ancestors { id: String },
    /// Nodes whose page range contains page N.
    Page { n: u32 },
    /// BM25 keyword search, best first.
    Search {
        query: String,
        /// At most N results.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Every node of the document, in document order.
    Document,
}

fn print(value: &impl Serialize) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

pub fn run(args: QueryArgs) -> Result<ExitCode> {
    let dir = &args.data.path;
    let options = Options {
        create_if_missing: false,
        ..Options::default()
    };
    let store = TreeStore::open(dir, options)
        .with_context(|| format!("cannot open data directory {}", dir.display()))?;
    let result = query(&store, &args);
    store.close()?;
    match result {
        Ok(code) => Ok(code),
        Err(e)
            if e.downcast_ref::<treestore::Error>()
                .is_some_and(|e| e.is_not_found()) =>
        {
            eprintln!("treestore: {e:#}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e),
    }
}

fn query(store: &TreeStore, args: &QueryArgs) -> Result<ExitCode> {
    let r = store.read();
    let version = args.version.as_deref();
    let policy = match (&args.policy, &args.what) {
        (Some(p), _) => p.as_str(),
        (None, Query::Search { query, limit }) => {
            if version.is_some() {
                bail!("--version needs --policy");
            }
            print(&r.search(SearchScope::AllPolicies, query, *limit)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        (None, _) => bail!("--policy is required (only `search` may omit it)"),
    };
    match &args.what {
        Query::Node { id } => print(&r.get_node(policy, version, id)?)?,
        Query::Nodes { ids } => {
            let (found, missing) = r.get_nodes(policy, version, ids)?;
            print(&found)?;
            if !missing.is_empty() {
                eprintln!("treestore: nodes not found: {}", missing.join(", "));
                return Ok(ExitCode::from(1));
            }
        }
        Query::Children { id } => print(&r.get_children(policy, version, id.as_deref())?)?,
        Query::Subtree { id, max_depth } => {
            print(&r.get_subtree(policy, version, id, *max_depth)?)?
        }
        Query::Ancestors { id } => print(&r.get_ancestor_path(policy, version, id)?)?,
        Query::Page { n } => print(&r.get_nodes_by_page(policy, version, *n)?)?,
        Query::Search { query, limit } => {
            let scope = SearchScope::Document { policy, version };
            print(&r.search(scope, query, *limit)?)?
        }
        Query::Document => print(&r.get_document(policy, version)?.1)?,
    }
    Ok(ExitCode::SUCCESS)
}
