use std::path::PathBuf;

use super::CommonArgs;
use crate::io::features;
use crate::train::minibatch::{self, CompressParams, FitSummary, RVC_CENTRES};
use crate::{Error, Result};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  rvc-index compress logs/bigvoice/3_feature768 -k 10000 -o centres.npy\n\n\
What it does (fixed work, no early stop, so the same seed gives the same centres on the same device):\n\
  1. seeding: K random rows, refined by --init-iters exact Lloyd iterations on a pool of \
--init-pool x K rows. On RVC-like features (heavy-tailed, Zipf-weighted clusters), k-means++ \
(D^2) seeding scored worse than random rows (it spends centres on outliers); a few Lloyd steps \
on 32 rows per centre score clearly better.\n\
  2. --epochs mini-batch passes over all rows in batches of --batch-size: each centre becomes \
the running mean of the rows it has taken (learning rate 1/count), the pool's counts weighted \
by 1/2. Large batches keep the distance computation one big GEMM and measured better than small ones.\n\
  3. a centre that no row reaches is re-seeded at a row drawn with probability proportional \
to its squared distance, as k-means++ places a centre.\n\
The default costs about two full assignment passes over the data at RVC's sizes (more passes below 500000 rows, where they are cheap). The progress bar shows the \
smoothed batch inertia (mean squared distance to the nearest centre); the final inertia over \
all rows is one more pass (skip it with --no-eval).\n\
Measured on the benchmark's synthetic 1M x 256 set to 10000 centres: 218.5 per row, against \
214.5 for faiss k-means (10 iterations, all rows: 5x the work) and 224.0 to 296.3 for \
scikit-learn's MiniBatchKMeans as RVC runs it (seeds 0-2); figures from the numpy/faiss \
mirror of this algorithm in benches/compare_mbk.py."
)]
pub struct CompressArgs {
    /// A .npy file, or a folder of .npy files (read in sorted name order, as RVC does).
    pub input: PathBuf,
    /// Number of centres (RVC: 10000).
    #[arg(short, long, default_value_t = RVC_CENTRES)]
    pub k: usize,
    /// Output .npy file (K × D float32), written atomically.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Seed of the permutation, the seeding and the re-seeding.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per backend call where rows are streamed.
    #[arg(long, default_value_t = 16_384)]
    pub batch_size: usize,
    /// Coarse groups (default: round(sqrt(K)), 100 for K = 10000).
    #[arg(long)]
    pub groups: Option<usize>,
    /// Lloyd iterations of the coarse level, on a sample of 256 rows per group.
    #[arg(long, default_value_t = 10)]
    pub coarse_iters: usize,
    /// Lloyd iterations of each group's share of the centres on its rows.
    #[arg(long, default_value_t = 8)]
    pub fine_iters: usize,
    /// Split of the centres among groups in proportion to rows^(1-b)·inertia^b.
    #[arg(long, default_value_t = 0.5)]
    pub alloc_power: f64,
    /// Refinement iterations over all rows, each row among the centres of
    /// nearby groups.
    #[arg(long, default_value_t = 4)]
    pub refine_iters: usize,
    /// Groups searched per row in the refinement (its own and the nearest others).
    #[arg(long, default_value_t = 4)]
    pub probe: usize,
    /// Time budget for the fit in seconds: the mini-batch passes stop when it
    /// is spent (the result then depends on the machine's speed).
    #[arg(long)]
    pub max_seconds: Option<f64>,
    /// Skip the final pass that measures the inertia over all rows.
    #[arg(long)]
    pub no_eval: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(serde::Serialize)]
struct Summary {
    input: PathBuf,
    output: PathBuf,
    files: usize,
    load_seconds: f64,
    backend: crate::compute::BackendInfo,
    fit: FitSummary,
    /// Assignment work of the fit (2·rows assigned·K·D flops) per second of
    /// fitting time: what the backend sustained, set-up and updates included.
    assign_gflop_per_s: f64,
    /// Σ over all rows of the squared distance to the nearest centre.
    inertia: Option<f64>,
    inertia_per_row: Option<f64>,
    eval_seconds: Option<f64>,
    /// Centres that equal an earlier one (only when there are fewer distinct rows than K).
    duplicate_centres: usize,
    history: Vec<minibatch::StepStats>,
}

pub fn run(a: &CompressArgs) -> Result<()> {
    let progress = a.common.progress();
    let t = std::time::Instant::now();
    let files = if a.input.is_dir() {
        features::scan_dir(&a.input)?
    } else {
        vec![features::inspect_npy(&a.input)?]
    };
    let n: usize = files.iter().map(|f| f.rows).sum();
    if a.k == 0 {
        return Err(Error::Invalid("-k must be at least 1".into()));
    }
    // Checked before loading, so a bad request costs nothing and writes nothing.
    if n < a.k {
        return Err(Error::bad_input(
            &a.input,
            format!(
                "only {n} rows, fewer than the {} centres asked for (-k)",
                a.k
            ),
        ));
    }
    if a.batch_size == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".into()));
    }
    if !(a.alloc_power.is_finite() && (0.0..=1.0).contains(&a.alloc_power)) {
        return Err(Error::Invalid(format!(
            "--alloc-power must be between 0 and 1, got {}",
            a.alloc_power
        )));
    }
    if a.probe == 0 {
        return Err(Error::Invalid("--probe must be at least 1".into()));
    }
    if a.groups == Some(0) {
        return Err(Error::Invalid("--groups must be at least 1".into()));
    }
    if a.max_seconds.is_some_and(|s| !(s.is_finite() && s >= 0.0)) {
        return Err(Error::Invalid("--max-seconds must be a number ≥ 0".into()));
    }
    let backend = a.common.backend(&progress)?;
    for f in features::converted(&files) {
        progress.warn(&format!(
            "{}: {} converted to float32",
            f.path.display(),
            f.dtype.name()
        ));
    }
    let bar = progress.bar(n as u64, "load");
    let x = features::load_into(&files, None, |r| bar.inc(r))?;
    bar.finish_and_clear();
    let load_seconds = t.elapsed().as_secs_f64();
    progress.info(&format!(
        "loaded {n} rows × {} from {} in {load_seconds:.2} s",
        x.ncols(),
        a.input.display()
    ));

    let params = CompressParams {
        seed: a.seed,
        batch_size: a.batch_size,
        groups: a.groups,
        coarse_iters: a.coarse_iters,
        fine_iters: a.fine_iters,
        alloc_power: a.alloc_power,
        refine_iters: a.refine_iters,
        probe: a.probe,
        max_seconds: a.max_seconds,
        ..CompressParams::new(a.k)
    };
    let r = minibatch::fit_with_progress(backend.as_ref(), x.view(), &params, &progress).map_err(
        |e| match e {
            Error::Invalid(m) => Error::bad_input(&a.input, m),
            e => e,
        },
    )?;
    let duplicates = minibatch::duplicate_centres(r.centroids.view());
    if duplicates > 0 {
        progress.warn(&format!(
            "{}: fewer distinct rows than centres; {duplicates} centres repeat another",
            a.input.display()
        ));
    }
    features::write_npy_atomic(&a.output, r.centroids.view())?;

    let (inertia, eval_seconds) = if a.no_eval {
        (None, None)
    } else {
        let t = std::time::Instant::now();
        let bar = progress.bar(n as u64, "inertia");
        let v = minibatch::inertia(backend.as_ref(), x.view(), r.centroids.view(), |m| {
            bar.inc(m)
        })?;
        bar.finish_and_clear();
        (Some(v), Some(t.elapsed().as_secs_f64()))
    };
    progress.info(&format!(
        "wrote {} ({} × {}): fit {:.2} s, {:.2} passes, {} re-seeded{}",
        a.output.display(),
        a.k,
        x.ncols(),
        r.summary.fit_seconds,
        r.summary.passes,
        r.summary.reseeded,
        inertia.map_or(String::new(), |v| format!(
            ", inertia {v:.6e} ({:.4} per row)",
            v / n as f64
        ))
    ));
    if a.common.json {
        super::print_json(&Summary {
            input: a.input.clone(),
            output: a.output.clone(),
            files: files.len(),
            load_seconds,
            backend: backend.info(),
            assign_gflop_per_s: 2.0
                * r.summary.rows_assigned as f64
                * a.k as f64
                * x.ncols() as f64
                / r.summary.fit_seconds.max(1e-9)
                / 1e9,
            fit: r.summary,
            inertia,
            inertia_per_row: inertia.map(|v| v / n as f64),
            eval_seconds,
            duplicate_centres: duplicates,
            history: r.history,
        })?;
    }
    Ok(())
}
