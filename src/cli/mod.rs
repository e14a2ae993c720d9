//! Command-line front end: one module per subcommand.

use clap::{Parser, Subcommand};

pub mod info;

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
pub enum Command {
    /// Print what a faiss index file holds
    Info(info::InfoArgs),
}

/// Parse the command line, run it, and return the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Info(args) => info::run(args),
    }
}
