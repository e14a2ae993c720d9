use std::path::PathBuf;

use super::{CommonArgs, JsonArgs, VerboseArgs};
use crate::index::Factory;
use crate::index::build::{self, BuildParams};
use crate::io::features;
use crate::{Metric, Result, qe};

/// `--metric`: what "near" means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    /// Squared Euclidean distance (RVC's indexes).
    L2,
    /// Inner product.
    Ip,
    /// Rows normalised to unit length, then inner product.
    Cosine,
}

impl MetricArg {
    pub fn metric(self) -> Metric {
        match self {
            MetricArg::L2 => Metric::L2,
            MetricArg::Ip | MetricArg::Cosine => Metric::InnerProduct,
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(
    mut_arg("verbose", |a| a.help("Also print per-iteration k-means statistics (IVF kinds)")),
    after_help = "Examples:\n  rvc-index build logs/myvoice/total_fea.npy --factory \"IVF{auto},Flat\" -o my.index\n  \
rvc-index build feats.npy --factory IVF1024,PQ128x4fs,RFlat --metric cosine -o pq.index\n\n\
Factory strings: Flat | IVF<n>,Flat | IVF<n>,PQ<M>x4fs, optionally followed by ,RFlat \
(exact re-ranking). <n> may be a number (with k = ×1024 or M = ×1048576) or {auto} for RVC's \
min(int(16·sqrt(N)), N // 39). PQ<M>x4fs is faiss's 4-bit fast-scan PQ (no residual, blocks \
of 32); M must divide the dimension. The ids of the index are the row numbers of the input \
(a folder of .npy files is read in sorted name order, without shuffling)."
)]
pub struct BuildArgs {
    /// A .npy matrix, or a folder of .npy feature files (e.g. logs/<exp>/3_feature768).
    pub input: PathBuf,
    /// faiss index_factory string.
    #[arg(long, default_value = "IVF{auto},Flat")]
    pub factory: Factory,
    #[arg(long, value_enum, default_value_t = MetricArg::L2)]
    pub metric: MetricArg,
    /// nprobe stored in the file (searches use it unless told otherwise).
    #[arg(long, default_value_t = 1, value_parser = crate::limits::parse_bounded(1 << 20))]
    pub nprobe: usize,
    /// k-means iterations of the coarse quantizer (IVF kinds; faiss: 10), at most 10000.
    #[arg(long, default_value_t = 10, value_parser = crate::limits::parse_bounded(crate::limits::MAX_NITER))]
    pub niter: usize,
    /// Output index file, written whole or not at all.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub verbose: VerboseArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(serde::Serialize)]
struct Summary {
    output: PathBuf,
    factory: String,
    n: usize,
    d: usize,
    backend: crate::compute::BackendInfo,
    load_seconds: f64,
    build_seconds: f64,
    write_seconds: f64,
    /// Seconds per build stage.
    stage_seconds: build::BuildTimes,
    kmeans_iterations: Vec<crate::train::kmeans::IterationStats>,
    /// Mean squared distance (inner product) of every row to its list
    /// centroid at the final centroids (0 for Flat).
    objective_per_row: f64,
    file_bytes: u64,
}

pub fn run(a: &BuildArgs) -> Result<()> {
    a.json.check()?;
    let progress = a.common.progress(&a.verbose);
    let t = std::time::Instant::now();
    let mut x = features::load_file_or_dir(&a.input)?;
    if a.metric == MetricArg::Cosine {
        qe::normalize_rows(&mut x);
    }
    let load_seconds = t.elapsed().as_secs_f64();
    let backend = a.common.backend(&progress)?;
    let params = BuildParams {
        niter: a.niter,
        ..BuildParams::new(a.metric.metric(), a.nprobe)
    };
    let mut stages = build::BuildTimes::default();
    let t = std::time::Instant::now();
    let trained = build::train(
        backend.as_ref(),
        x.view(),
        a.factory,
        &params,
        &progress,
        &mut stages,
    )?;
    let added = build::add(backend.as_ref(), x.view(), &trained, &progress, &mut stages)?;
    let objective_per_row = build::per_row(added.objective, x.nrows());
    let build_seconds = t.elapsed().as_secs_f64();
    // IVF-Flat and Flat stream from the rows; other kinds are filled first
    // (fill and refine seconds then count as build, not write).
    let t = std::time::Instant::now();
    build::write_added(
        &mut crate::io::Target::Direct,
        &a.output,
        &trained,
        added,
        x.view(),
        &mut stages,
    )?;
    let fill = stages.fill + stages.refine;
    let write_seconds = (t.elapsed().as_secs_f64() - fill).max(0.0);
    let build_seconds = build_seconds + fill;
    let file_bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    progress.info(&format!(
        "built {} over {} rows × {} in {build_seconds:.2} s -> {} ({file_bytes} bytes)",
        a.factory,
        x.nrows(),
        x.ncols(),
        a.output.display()
    ));
    a.json.emit(&Summary {
        output: a.output.clone(),
        factory: a.factory.to_string(),
        n: x.nrows(),
        d: x.ncols(),
        backend: backend.info(),
        load_seconds,
        build_seconds,
        write_seconds,
        stage_seconds: stages,
        kmeans_iterations: trained.kmeans.map(|k| k.iterations).unwrap_or_default(),
        objective_per_row,
        file_bytes,
    })
}
