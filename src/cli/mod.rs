//! Command-line front end: one module per subcommand.

pub mod batch;
pub mod bench;
pub mod blend;
pub mod build;
pub mod compress;
pub mod expand;
pub mod info;
pub mod search;
pub mod train;

use clap::{Parser, Subcommand};

use crate::compute::{self, Backend, DeviceChoice};
use crate::progress::Progress;
use crate::{Error, Result};

#[derive(Parser)]
#[command(
    name = "rvc-index",
    version,
    about = "Build, search and inspect faiss-compatible IVF indexes for RVC voice models",
    long_about = "Build, search and inspect faiss-compatible IVF indexes for RVC (Retrieval-based \
Voice Conversion) voice models. `rvc-index train logs/<exp>` replaces RVC's \"train index\" step \
and writes the same files, loadable by faiss.read_index."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand that computes takes.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Where the arithmetic runs: `auto` takes a real GPU when there is one
    /// (Vulkan, Metal, DX12), else the CPU; `gpu` also accepts software
    /// adapters such as lavapipe (slow, for testing).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bars or status lines (warnings and errors still print).
    #[arg(short, long)]
    pub quiet: bool,
    /// Also print per-iteration k-means statistics.
    #[arg(short, long)]
    pub verbose: bool,
}

impl CommonArgs {
    pub fn progress(&self) -> Progress {
        Progress::new(self.quiet, self.verbose)
    }

    /// Open the backend and say which one was chosen.
    pub fn backend(&self, progress: &Progress) -> Result<Box<dyn Backend>> {
        let b = compute::select_backend(self.device)?;
        let info = b.info();
        if info.kind == "gpu" {
            progress.info(&format!(
                "device: gpu ({}, {}, {})",
                info.name, info.device_type, info.api
            ));
        } else {
            progress.info(&format!("device: cpu ({})", info.name));
        }
        Ok(b)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Build RVC's index for an experiment folder (logs/<exp>): total_fea.npy,
    /// trained_IVF…index and added_IVF…index, as RVC's train_index writes them.
    Train(train::TrainArgs),
    /// Re-index every experiment under a logs/ folder, skipping those that
    /// are up to date; resumable after an interruption.
    Batch(batch::BatchArgs),
    /// α-query expansion of a matrix: every row becomes the normalised,
    /// similarity^alpha-weighted sum of its nearest rows.
    Expand(expand::ExpandArgs),
    /// Print what a faiss index file holds.
    Info(info::InfoArgs),
    /// Build an index from a factory string (Flat, IVF<n>,Flat, IVF<n>,PQ<M>x4fs[,RFlat]).
    Build(build::BuildArgs),
    /// Search an index: k nearest neighbours of every query, as .npy files.
    Search(search::SearchArgs),
    /// RVC's retrieval blend of features with their nearest indexed vectors.
    Blend(blend::BlendArgs),
    /// Compress a feature matrix to K mini-batch k-means centres (what RVC
    /// does above 200000 rows), with a fixed, seeded amount of work.
    Compress(compress::CompressArgs),
    /// Time every stage of the index pipeline (load, compress, train, add,
    /// search, refine, expand) with recall against exact search, as the faiss
    /// baseline harness does, for a side-by-side comparison.
    Bench(bench::BenchArgs),
}

/// Print a JSON value on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// Parse the command line, run it, and return the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Train(a) => train::run(&a).map(|()| true),
        Command::Batch(a) => batch::run(&a),
        Command::Expand(a) => expand::run(&a).map(|()| true),
        Command::Info(a) => return info::run(a),
        Command::Build(a) => build::run(&a).map(|()| true),
        Command::Search(a) => search::run(&a).map(|()| true),
        Command::Blend(a) => blend::run(&a).map(|()| true),
        Command::Compress(a) => compress::run(&a).map(|()| true),
        Command::Bench(a) => bench::run(&a).map(|()| true),
    };
    match r {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("rvc-index: error: {e}");
            1
        }
    }
}
