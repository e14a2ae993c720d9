//! Command-line front end: one module per subcommand.

pub mod args;
pub mod batch;
pub mod bench;
pub mod blend;
pub mod build;
pub mod compress;
pub mod expand;
pub mod info;
pub mod recall;
pub mod search;
pub mod train;

use clap::{Parser, Subcommand};

pub use args::{CommonArgs, JsonArgs, QeArgs, VerboseArgs, print_stdout};

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
    /// Compress a feature matrix to K k-means centres (what RVC does with
    /// mini-batch k-means above 200000 rows), with a fixed, seeded schedule.
    Compress(compress::CompressArgs),
    /// Time every stage of the index pipeline (load, compress, train, add,
    /// search, refine, expand) with recall against exact search, as the faiss
    /// baseline harness does, for a side-by-side comparison.
    Bench(bench::BenchArgs),
}

/// Parse the command line, run it, and return the process exit code: 0 on
/// success, 1 after one `rvc-index: error: …` line on stderr (clap's own
/// usage errors exit with 2).
pub fn run() -> i32 {
    run_from(std::env::args_os())
}

/// [`run`] on the given arguments (the first is the program name), for
/// programs that embed the command line (the Python module's `rvc-index`).
/// `--help` and `--version` print and return 0; nothing exits the process
/// but an interruption (Ctrl-C, SIGTERM: exit code 130, see `io::signals`).
pub fn run_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0, usage errors to stderr with 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    crate::io::signals::install();
    match execute(cli.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rvc-index: error: {e}");
            1
        }
    }
}

/// Run one parsed subcommand. No signal handler is installed and nothing is
/// printed on failure: the caller reports the error.
pub fn execute(command: Command) -> crate::Result<()> {
    match command {
        Command::Train(a) => train::run(&a),
        Command::Batch(a) => batch::run(&a),
        Command::Expand(a) => expand::run(&a),
        Command::Info(a) => info::run(&a),
        Command::Build(a) => build::run(&a),
        Command::Search(a) => search::run(&a),
        Command::Blend(a) => blend::run(&a),
        Command::Compress(a) => compress::run(&a),
        Command::Bench(a) => bench::run(&a),
    }
}
