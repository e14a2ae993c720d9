use std::path::PathBuf;

use super::{CommonArgs, JsonArgs, VerboseArgs};
use crate::io::features;
use crate::train::minibatch::{self, CompressParams, FitSummary, RVC_CENTRES, defaults};
use crate::{Error, Result};

#[derive(clap::Args, Debug)]
#[command(
    mut_arg("verbose", |a| a.help("Also print the inertia of every coarse, fine and refinement iteration")),
    after_help = "Example:\n  rvc-index compress logs/bigvoice/3_feature768 -k 10000 -o centres.npy\n\n\
What it does: a two-level k-means with a fixed, seeded schedule (no early stop, so the same \
seed gives the same centres on the same device, whatever the thread count). One \"pass\" below \
is N x K distances, the cost of one flat k-means iteration (faiss's 10-iteration k-means on all \
rows: 10 passes).\n\
  1. coarse level: G = --groups (default 2 x sqrt(K), 200 for K = 10000) centres, \
--coarse-iters Lloyd iterations on a sample of 128 x G rows, then every row to its nearest \
group. Cost: 128 x G^2 per iteration + N x G distances.\n\
  2. fine level: the K centres are split among the groups in proportion to \
rows^(1-b) x inertia^b (b = --alloc-power, default 1: a group's inertia to its coarse centre); \
each group runs --fine-iters Lloyd iterations on its own rows from random rows of its own. \
Cost: about N x K/G per iteration.\n\
  3. refinement: first the --rescue share of rows (default 2 %) farthest from their centre is \
searched among all centres (rows of a cluster that the coarse partition cut off from the rest \
of it). Then --refine-iters Lloyd iterations over all rows, the rows of a group (the group \
owning a row's centre) compared with the centres they use and with each such centre's \
--neighbours nearest centres. Cost: rescue x N x K, one K x K neighbour search, then about \
N x 3K/G per iteration on structured data (more where the data has no structure). A row's \
centre stays among its candidates, so the inertia never rises.\n\
A centre left empty is re-seeded at a row drawn with probability proportional to its squared \
distance, as k-means++ places a centre. With the defaults at K = 10000 the fit cost 0.16 to 0.30 \
passes on the benchmark's data sets of 210000 to 1000000 rows (--json: fit.passes, \
fit.stage_evaluations). The progress bar counts distances and shows \
each stage's inertia (mean squared distance to the nearest centre); --json reports the inertia \
of every coarse, fine and refinement iteration and, unless --no-eval, the exact final inertia \
over all rows (one more pass).\n\
On the benchmark's synthetic RVC-like 210000 x 256 set to 10000 centres it reached 198.2 per \
row, against 198.9 for faiss.Kmeans (10 iterations, all rows) and 211.2 to 281.6 for \
scikit-learn's MiniBatchKMeans as RVC calls it (seeds 0-2); README \"compress\" has the rest."
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
    /// Seed of the permutation, the initial centres and the re-seeding.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per backend call where rows are streamed.
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    pub batch_size: usize,
    /// Coarse groups (default: round(2·sqrt(K)), 200 for K = 10000).
    #[arg(long)]
    pub groups: Option<usize>,
    /// Lloyd iterations of the coarse level, on a sample of 128 rows per group.
    #[arg(long, default_value_t = defaults::COARSE_ITERS)]
    pub coarse_iters: usize,
    /// Lloyd iterations of each group's share of the centres on its rows.
    #[arg(long, default_value_t = defaults::FINE_ITERS)]
    pub fine_iters: usize,
    /// b of the split of the centres among groups: rows^(1-b)·inertia^b (0 to 1).
    #[arg(long, default_value_t = defaults::ALLOC_POWER)]
    pub alloc_power: f64,
    /// Refinement iterations over all rows.
    #[arg(long, default_value_t = defaults::REFINE_ITERS)]
    pub refine_iters: usize,
    /// Nearest centres listed per centre: the refinement compares a row with
    /// the centres its group's rows use and their neighbours.
    #[arg(long, default_value_t = defaults::NEIGHBOURS)]
    pub neighbours: usize,
    /// Share of rows, the farthest from their centre, searched among all
    /// centres before the refinement (0 to 1).
    #[arg(long, default_value_t = defaults::RESCUE)]
    pub rescue: f64,
    /// Time budget for the fit in seconds: refinement iterations that would
    /// start later are skipped (the result then depends on the machine's speed).
    #[arg(long)]
    pub max_seconds: Option<f64>,
    /// Skip the final pass that measures the inertia over all rows.
    #[arg(long)]
    pub no_eval: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub verbose: VerboseArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(serde::Serialize)]
struct StageInertia {
    /// On the coarse sample, to G centres.
    coarse: Option<f64>,
    /// All rows, each to its own group's centres.
    fine: Option<f64>,
    /// All rows, each to the best of its candidates (before the last update).
    refine: Option<f64>,
    /// All rows, exact nearest centre (absent with --no-eval).
    final_exact: Option<f64>,
}

#[derive(serde::Serialize)]
struct Summary {
    input: PathBuf,
    output: PathBuf,
    files: usize,
    load_seconds: f64,
    backend: crate::compute::BackendInfo,
    fit: FitSummary,
    /// Distance work of the fit (2·D flops per row–centre distance) per
    /// second of fitting time: what the backend sustained, gathers, updates
    /// and small calls included.
    assign_gflop_per_s: f64,
    /// Inertia per row of each stage's last iteration and the exact final
    /// one: the figures `fit.*_inertia_per_row` list in full.
    stage_inertia_per_row: StageInertia,
    /// Σ over all rows of the squared distance to the nearest centre.
    inertia: Option<f64>,
    inertia_per_row: Option<f64>,
    eval_seconds: Option<f64>,
    /// Centres that equal an earlier one (only when there are fewer distinct rows than K).
    duplicate_centres: usize,
    history: Vec<minibatch::StepStats>,
}

pub fn run(a: &CompressArgs) -> Result<()> {
    a.json.check()?;
    let progress = a.common.progress(&a.verbose);
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
    if !(a.rescue.is_finite() && (0.0..=1.0).contains(&a.rescue)) {
        return Err(Error::Invalid(format!(
            "--rescue must be between 0 and 1, got {}",
            a.rescue
        )));
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
        neighbours: a.neighbours,
        rescue: a.rescue,
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
        "wrote {} ({} × {}): fit {:.2} s, {:.3} passes, {} re-seeded{}",
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
    a.json.emit(&Summary {
        input: a.input.clone(),
        output: a.output.clone(),
        files: files.len(),
        load_seconds,
        backend: backend.info(),
        assign_gflop_per_s: 2.0 * r.summary.distance_evaluations as f64 * x.ncols() as f64
            / r.summary.fit_seconds.max(1e-9)
            / 1e9,
        stage_inertia_per_row: StageInertia {
            coarse: r.summary.coarse_inertia_per_row.last().copied(),
            fine: r.summary.fine_inertia_per_row.last().copied(),
            refine: r.summary.refine_inertia_per_row.last().copied(),
            final_exact: inertia.map(|v| v / n as f64),
        },
        fit: r.summary,
        inertia,
        inertia_per_row: inertia.map(|v| v / n as f64),
        eval_seconds,
        duplicate_centres: duplicates,
        history: r.history,
    })
}
