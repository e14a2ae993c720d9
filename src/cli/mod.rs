//! Command-line front end: one module per subcommand.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rvc-index",
    version,
    about = "Build, search and inspect faiss-compatible IVF indexes for RVC voice models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {}

/// Parse the command line, run it, and return the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    match cli.command {}
}
