use std::path::PathBuf;

use super::{CommonArgs, JsonArgs, QeArgs, VerboseArgs};
use crate::index::factory::Factory;
use crate::io::features;
use crate::qe::{self, QeParams};
use crate::{Error, Result};

#[derive(clap::Args, Debug)]
#[command(
    mut_arg("query_expansion", |a| a.help(
        "The settings as one value, as `train --query-expansion` takes them (--alpha, \
         --num-expand, --factory and --nprobe override its parts)"
    )),
    mut_arg("verbose", |a| a.help(
        "Also print per-iteration k-means statistics (of the index --factory builds)"
    )),
    after_help = "Example:\n  rvc-index expand logs/myvoice/total_fea.npy -o expanded.npy --alpha 3 --num-expand 16\n\n\
Each row is L2-normalised, its num-expand nearest rows by inner product are found (itself \
included), and it is replaced by the L2-normalised sum of those rows weighted by \
similarity^alpha. Similarities below 0 are clamped to 0 first, so a non-integer alpha never \
gives NaN (NumPy's power would). Rows are processed in batches, so memory stays at two copies \
of the matrix.\n\n\
The neighbour search is exact by default (inner product over all rows; on the CPU each pair of \
rows is computed once). With --factory, an index of that kind is built over the normalised rows \
and searched instead (approximate neighbours, as the RVC faiss tips do), e.g.\n  \
rvc-index expand total_fea.npy -o expanded.npy --factory \"IVF512,PQ128x4fs,RFlat\" --nprobe 16"
)]
pub struct ExpandArgs {
    /// Input matrix (.npy, 2-D, float32/16/64).
    pub input: PathBuf,
    /// Output .npy (float32), written whole or not at all.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub qe: QeArgs,
    /// Rows expanded per step.
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    /// Find neighbours with an index of this kind (e.g. "IVF512,PQ128x4fs,RFlat",
    /// any factory `build` accepts, inner product) instead of exact search
    /// (overrides factory= of --query-expansion).
    #[arg(long)]
    pub factory: Option<Factory>,
    /// Lists probed per row with --factory (IVF indexes; default 16).
    #[arg(long, requires = "factory")]
    pub nprobe: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub verbose: VerboseArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(serde::Serialize)]
struct Summary {
    input: PathBuf,
    output: PathBuf,
    n: usize,
    d: usize,
    params: QeParams,
    backend: crate::compute::BackendInfo,
    seconds: qe::QeSeconds,
    load_seconds: f64,
    write_seconds: f64,
}

pub fn run(a: &ExpandArgs) -> Result<()> {
    a.json.check()?;
    let progress = a.common.progress(&a.verbose);
    if a.batch_size == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".into()));
    }
    let mut params = a.qe.params()?;
    params.batch_size = a.batch_size;
    if let Some(f) = a.factory {
        params.factory = Some(f);
        params.nprobe = a.nprobe.unwrap_or(qe::DEFAULT_NPROBE);
    }
    params.check()?;
    let t = std::time::Instant::now();
    let x = features::load_matrix(&a.input)?;
    let load_seconds = t.elapsed().as_secs_f64();
    let backend = a.common.backend(&progress)?;
    let (n, d) = x.dim();
    let (y, seconds) = qe::expand(backend.as_ref(), x, &params, &progress)?;
    let t = std::time::Instant::now();
    features::write_npy_atomic(&a.output, y.view())?;
    let write_seconds = t.elapsed().as_secs_f64();
    progress.info(&format!(
        "expanded {n} rows × {d} in {:.2} s ({}kNN {:.2} s, weighted sum {:.2} s) -> {}",
        seconds.total,
        match params.factory {
            Some(f) => format!("{f} build {:.2} s, ", seconds.index_build),
            None => String::new(),
        },
        seconds.knn,
        seconds.weighted_sum,
        a.output.display()
    ));
    a.json.emit(&Summary {
        input: a.input.clone(),
        output: a.output.clone(),
        n,
        d,
        params,
        backend: backend.info(),
        seconds,
        load_seconds,
        write_seconds,
    })
}
