//! The `--data DIR` option every subcommand that works on a data directory takes.

use std::path::PathBuf;

use clap::Args;

/// Where the database lives.
#[derive(Debug, Args)]
pub struct DataDir {
    /// Data directory.
    #[arg(
        long = "data",
        value_name = "DIR",
        default_value = "./treestore-data",
        env = "TREESTORE_DATA"
    )]
    pub path: PathBuf,
}
