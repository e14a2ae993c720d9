use std::path::PathBuf;

use super::{CommonArgs, JsonArgs, QeArgs, VerboseArgs};
use crate::benchmark::{self, BenchConfig, DataSource, StageSet};
use crate::index::Factory;
use crate::train::minibatch::Compress;
use crate::{Error, Result};

#[derive(clap::Args, Debug)]
// bench takes no positional argument, so `--json OUT` needs no equals sign.
#[command(mut_arg("query_expansion", |a| a.help(
    "The expand stage's α-query expansion settings (default alpha=3,k=16; --alpha and \
     --num-expand override its parts)"
)))]
#[command(mut_arg("json", |a| a.require_equals(false).help(
    "Also write the results as JSON to OUT (`--json OUT` or `--json=OUT`; `-` or no value: \
     stdout, the table then goes to stderr)"
)))]
#[command(after_help = "Examples:\n  rvc-index bench --data logs/myvoice\n  \
rvc-index bench --synthetic 50000,768 --nprobe 1,4,16 --json bench.json\n  \
rvc-index bench --data feats.npy --factory IVF{auto},Flat --factory Flat --repeat 3\n\n\
Stages, as benches/faiss_baseline.py runs them: load (read the .npy files and shuffle the rows \
as `train` does), assign (only with --stages assign: every row against the first K rows, K from \
--assign-k, the assignment kernel alone, 2000 rows checked against f64 scoring), compress (mini-batch k-means to 10000 centres when more than 200000 rows \
remain, as RVC does), exact (exhaustive search: the ground truth), then per index kind: train \
(coarse k-means; train_pq: the PQ codebooks), add, serialize (the faiss file's size), coarse \
(the queries' nearest lists), search per nprobe (for RFlat kinds also base_search and refine = \
search - base_search), and expand (alpha query expansion of the rows against all rows).\n\n\
With --data, the first min(--queries, N/10) shuffled rows are the queries and are removed from \
the database; with --synthetic, the queries are a separate draw of the same generator.\n\n\
Times are wall-clock seconds. Every backend call returns its results to the host, so on a GPU a \
stage's time includes the final readback. GFLOP/s counts the nominal work of the distance \
computations (2*N*K*D per k-means iteration or assignment pass, 2*nq*nlist*D for the coarse \
search, 2*nq*N*D for exact search and expansion), also where bounds skip part of it. Recall is \
against the exact search: R1@1 (true nearest ranked first), R1@k (true nearest among the k), \
Rk@k (overlap of the k results with the true k). Peak memory is VmHWM, reset before each stage.")]
pub struct BenchArgs {
    /// Real data: an experiment folder (logs/<exp>), a folder of .npy files, or one .npy file.
    #[arg(
        long,
        conflicts_with = "synthetic",
        required_unless_present_any = ["synthetic", "suite_report"]
    )]
    pub data: Option<PathBuf>,
    /// Synthetic RVC-like data as the faiss baseline harness generates it: N,D[,SEED].
    #[arg(long, value_name = "N,D[,SEED]")]
    pub synthetic: Option<String>,
    /// Index kind (repeatable); default: IVF{auto},Flat and IVF{auto},PQ{D/2}x4fs,RFlat.
    #[arg(long = "factory")]
    pub factories: Vec<Factory>,
    /// Lists probed per query, one search per value.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub nprobe: Vec<usize>,
    /// Neighbours per query.
    /// Neighbours per query, 1 to 2048.
    #[arg(short, default_value_t = 8, value_parser = crate::limits::parse_bounded(crate::limits::MAX_K))]
    pub k: usize,
    /// Query rows.
    #[arg(long, default_value_t = 10_000)]
    pub queries: usize,
    /// Run every stage this many times; the table shows min and median.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Expand only the first N rows (the neighbour search still covers all
    /// rows); the JSON adds the time extrapolated to all rows.
    #[arg(long, value_name = "N")]
    pub qe_rows: Option<usize>,
    #[command(flatten)]
    pub qe: QeArgs,
    /// Seed of the row shuffle and of the compression (and of --synthetic without SEED).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compression to k-means centres: auto (RVC: above 200000 rows), off, or K.
    #[arg(long, default_value = "auto", value_parser = Compress::parse)]
    pub compress: Compress,
    /// Stages to run (load and compress always run): train,add,search,expand,
    /// and assign (the assignment kernel alone, only when named).
    #[arg(long, default_value = "train,add,search,expand")]
    pub stages: String,
    /// Also run `train --recall R`'s measurement on every IVF index built
    /// (recall@8 of indexed rows, their neighbouring frames excluded) and
    /// search at the nprobe it chooses; the table shows the estimate beside
    /// the recall on the queries, and the measurement's share of the build.
    #[arg(long, value_name = "R", value_parser = crate::index::recall::parse_recall)]
    pub recall: Option<f64>,
    /// Draw recall@k against search time per query (one line per index
    /// kind, points labelled with their nprobe) into this PNG file.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Centroid counts of the assign stage (the first K rows are the
    /// centroids); default: RVC's list count for the rows.
    #[arg(long, value_delimiter = ',', value_name = "K")]
    pub assign_k: Vec<usize>,
    /// Write the --synthetic rows as an RVC experiment folder
    /// (DIR/3_feature768/ for D = 768, 3_feature256/ for D = 256, else
    /// DIR/ itself; one .npy per utterance) and stop, so that `train` can run
    /// on it.
    #[arg(long, value_name = "DIR", requires = "synthetic")]
    pub export: Option<PathBuf>,
    /// Assemble the GPU suite's report from the step outputs in DIR
    /// (benches/device/run.sh calls this): DIR/gpu_report.json and a table.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data", "synthetic", "export"])]
    pub suite_report: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

impl BenchArgs {
    pub fn config(&self) -> Result<BenchConfig> {
        let data = match (&self.data, &self.synthetic) {
            (Some(p), _) => DataSource::Path(p.clone()),
            (None, Some(s)) => DataSource::parse_synthetic(s, self.seed)?,
            (None, None) => {
                return Err(Error::Invalid("give --data or --synthetic".into()));
            }
        };
        let mut c = BenchConfig::new(data);
        c.factories = self.factories.clone();
        c.nprobe = self.nprobe.clone();
        c.k = self.k;
        c.queries = self.queries;
        c.repeat = self.repeat;
        c.qe_rows = self.qe_rows;
        c.qe = self.qe.params()?;
        c.seed = self.seed;
        c.compress = self.compress;
        c.stages = StageSet::parse(&self.stages)?;
        c.recall = self.recall;
        c.assign_k = self.assign_k.clone();
        c.check()?;
        if let Some(png) = &self.png {
            let dir = png.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) || png.is_dir() {
                return Err(Error::bad_input(
                    png,
                    "--png: not a file in an existing folder",
                ));
            }
        }
        if self.png.is_some() && !c.stages.search {
            return Err(Error::Invalid(
                "--png draws the searches: it needs the search stage".into(),
            ));
        }
        Ok(c)
    }
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if let Some(dir) = &a.suite_report {
        return benchmark::suite::report(dir, &mut std::io::stdout());
    }
    a.json.check()?;
    let cfg = a.config()?;
    if let Some(dir) = &a.export {
        return export(dir, &cfg.data);
    }
    let progress = a.common.progress(&VerboseArgs::default());
    // The table names the backend; no status line for it.
    let backend = crate::compute::select_backend(a.common.device)?;
    let report = benchmark::run(backend.as_ref(), &cfg, &progress)?;
    let mut out = a.json.text();
    let printed = benchmark::print_table(&report, &mut out)
        .and_then(|()| benchmark::print_recall_table(&report, &mut out));
    match printed.and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Error::io("<stdout>", e));
        }
        _ => {}
    }
    if let Some(png) = &a.png {
        let title = format!(
            "recall@{} against search time ({} rows x {})",
            cfg.k,
            report.data.as_ref().map_or(0, |d| d.n_db),
            report.data.as_ref().map_or(0, |d| d.d)
        );
        benchmark::plot::recall_png(png, &title, cfg.k, &benchmark::recall_series(&report))?;
    }
    a.json.emit(&report)
}

/// `--export DIR`: the synthetic rows as an experiment folder.
fn export(dir: &std::path::Path, data: &DataSource) -> Result<()> {
    let DataSource::Synthetic { n, d, seed } = *data else {
        return Err(Error::Invalid("--export needs --synthetic".into()));
    };
    let features = match d {
        768 => dir.join("3_feature768"),
        256 => dir.join("3_feature256"),
        _ => dir.to_path_buf(),
    };
    crate::synthetic::write_experiment(&features, n, d, seed)?;
    println!("wrote {n} rows x {d} to {}", features.display());
    Ok(())
}
