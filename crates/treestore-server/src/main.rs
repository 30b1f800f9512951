//! The `treestore` binary: one executable with subcommands for the server and the
//! operator tools. Errors are reported on stderr with a non-zero exit code; the
//! binary never prints a panic for bad input.

mod check_cmd;
mod data_dir;
mod ingest_cmd;
mod kv_cmd;
mod query_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// TreeStore: a database for hierarchical documents.
#[derive(Debug, Parser)]
#[command(name = "treestore", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Low-level key/value access to a data directory (debugging tool).
    Kv(kv_cmd::KvArgs),
    /// Verify a data directory (pages, tree structure, free list, log) without
    /// modifying it.
    Check(check_cmd::CheckArgs),
    /// Import a PageIndex JSON output as one version of a policy.
    Ingest(ingest_cmd::IngestArgs),
    /// Query documents: node, nodes, children, subtree, ancestors, page,
    /// search, document. Prints JSON.
    Query(query_cmd::QueryArgs),
    /// Run the gRPC server (health, reflection, metrics, TLS, tokens, limits).
    Serve(treestore_server::config::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kv(args) => kv_cmd::run(args),
        Command::Check(args) => check_cmd::run(args),
        Command::Ingest(args) => ingest_cmd::run(args),
        Command::Query(args) => query_cmd::run(args),
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                // The reader went away (for example `| head`): not an error.
                return ExitCode::SUCCESS;
            }
            eprintln!("treestore: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: treestore_server::config::ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = treestore_server::config::Config::resolve(args)?;
    treestore_server::serve::init_logging(&cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(treestore_server::serve::run(cfg));
    // The store is checkpointed (or failed to open): do not wait long for
    // blocking work the shutdown gave up on.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
