use std::path::PathBuf;

use super::{CommonArgs, JsonArgs, QeArgs, VerboseArgs};
use crate::Result;
use crate::io::experiment::{Experiment, Layout, Version};
use crate::train::layout::{self, Begun, TrainOutcome};
use crate::train::minibatch::Compress;
use crate::train::rvc::{Nprobe, TrainOptions};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  rvc-index train logs/myvoice\n  \
rvc-index train logs/myvoice --layout rvc-main --skip-existing --link assets/indices\n  \
rvc-index train logs/mymodel --layout applio --skip-existing\n  \
rvc-index train logs/myvoice --recall 0.95   # store the nprobe reaching recall@8 0.95\n\n\
Reads logs/myvoice/3_feature768/*.npy (v2) or 3_feature256/*.npy (v1) in sorted name order, \
shuffles the rows (seeded), trains IVF k-means with nlist = min(16*sqrt(N), N // 39) as faiss \
does (10 iterations, seed 1234), and writes total_fea.npy, \
trained_IVF<n>_Flat_nprobe_1_<exp>_<ver>.index and added_IVF<n>_Flat_nprobe_1_<exp>_<ver>.index \
into the experiment folder (--layout rvc, RVC 20240604). --layout rvc-main (RVC's main branch) \
writes no total_fea.npy and logs to train_index.log; --layout applio reads extracted/*.npy \
and writes <model>.index only. Files appear whole or not at all.")]
pub struct TrainArgs {
    /// Experiment folder, e.g. logs/myvoice.
    pub experiment: PathBuf,
    /// Feature version; by default the folder that holds .npy files decides.
    #[arg(long, value_enum)]
    pub version: Option<Version>,
    /// Read features from this folder instead of <experiment>/3_feature768 or 3_feature256
    /// (or extracted/ for Applio).
    #[arg(long)]
    pub feature_dir: Option<PathBuf>,
    /// Whose folders and file names to follow. Default: detected from the folder
    /// (extracted/ with .npy files: applio; 3_feature768/ or 3_feature256/: rvc, or
    /// rvc-main when train_index.log, which RVC main's WebUI creates, is there).
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// File name of the index inference loads, instead of the layout's
    /// (added_IVF<n>_Flat_nprobe_1_<exp>_<ver>.index, Applio: <model>.index); a .index name
    /// in the experiment folder.
    #[arg(long, value_name = "NAME")]
    pub output: Option<String>,
    /// Do nothing (exit 0, saying so) when the layout's index exists already: the --output
    /// file, Applio's <model>.index, or an added_…_<exp>_<ver>.index (RVC main: also its link
    /// in --link DIR), as RVC main and Applio skip. With --link the found index is linked.
    #[arg(long)]
    pub skip_existing: bool,
    /// Link the index into DIR once written, as RVC links it into outside_index_root
    /// (named <exp>_<added name> for rvc-main, <exp>_IVF…_<exp>_<ver>.index for rvc): a hard
    /// link, or a relative symbolic link where a hard link cannot be made.
    #[arg(long, value_name = "DIR")]
    pub link: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub verbose: VerboseArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

/// Index settings shared by `train` and `batch`.
#[derive(clap::Args, Debug, Clone)]
#[command(mut_arg("query_expansion", |a| a.help(
    "Index the α-query expansion of the rows instead of the rows: each row becomes the \
     normalised, similarity^alpha-weighted sum of its k nearest rows by inner product (itself \
     included). Neighbours are exact unless `factory=` names an index to build over the rows \
     and search instead, e.g. `alpha=3,k=16,factory=IVF512,PQ128x4fs,RFlat,nprobe=16` (nprobe \
     default 16). Without a value: alpha=3,k=16; --alpha and --num-expand also turn it on"
)))]
pub struct SettingsArgs {
    /// Seed of the row shuffle; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of IVF lists (default: RVC's rule, min(int(16*sqrt(N)), N // 39)).
    #[arg(long)]
    pub nlist: Option<usize>,
    /// Stored nprobe: a number, or `auto` = int(nlist^0.3) as early RVC versions stored.
    #[arg(long, default_value = "1", value_parser = parse_nprobe)]
    pub nprobe: Nprobe,
    /// k-means iterations of the coarse quantizer, for every IVF kind (faiss
    /// trains IVF quantizers with 10), at most 10000.
    #[arg(long, default_value_t = 10, value_parser = crate::limits::parse_bounded(crate::limits::MAX_NITER))]
    pub niter: usize,
    /// Index kind, as a faiss factory string (default: RVC's IVF{auto},Flat).
    /// Other kinds are named after it: added_IVF256_PQ128x4fs_RFlat_nprobe_1_<exp>_<ver>.index.
    /// `auto` (with --recall): RVC's IVF-Flat or IVF<n>,PQ<M>x4fs,RFlat on the
    /// same lists, whichever reaches the recall with the faster search.
    #[arg(long)]
    pub factory: Option<super::recall::FactoryArg>,
    /// Store the smallest nprobe whose recall@8 reaches R (0 < R <= 1),
    /// measured on the built index: 500 to 1000 sampled rows, each without its own
    /// row and the rows within 32 of it in its feature file (as a frame of
    /// unseen speech), against exact search. The file names follow
    /// (nprobe_<p>); --json reports the curve. Default: RVC's nprobe 1.
    #[arg(long, value_name = "R", value_parser = crate::index::recall::parse_recall, conflicts_with = "nprobe")]
    pub recall: Option<f64>,
    /// Compress the features to k-means centres before indexing:
    /// `auto` = RVC's rule (above 200000 rows, 10000 centres, indexed with
    /// nlist 256, and in RVC's layout written as total_fea.npy), `off` =
    /// index every row,
    /// or a number of centres to compress to whatever the row count
    /// (Applio's "KMeans" index algorithm is `--compress 10000`). The
    /// shuffle seed also seeds the compression; see `rvc-index compress --help`.
    #[arg(long, default_value = "auto", value_parser = Compress::parse)]
    pub compress: Compress,
    #[command(flatten)]
    pub qe: QeArgs,
}

impl SettingsArgs {
    pub fn options(&self) -> Result<TrainOptions> {
        let factory = self.factory.and_then(|f| f.kind());
        if let (Some(n), Some(f)) = (self.nlist, factory)
            && f.fixed_nlist().is_some_and(|k| k != n)
        {
            return Err(crate::Error::Invalid(format!(
                "--nlist {n} contradicts --factory {f}: give the list count once"
            )));
        }
        let compare_pq = self.factory == Some(super::recall::FactoryArg::Auto);
        if compare_pq && self.recall.is_none() {
            return Err(crate::Error::Invalid(
                "--factory auto chooses the index kind by its recall: give --recall R too".into(),
            ));
        }
        let recall = self
            .recall
            .map(|recall| crate::index::recall::RecallTarget { recall, compare_pq });
        crate::index::recall::check(recall.as_ref(), factory)?;
        Ok(TrainOptions {
            seed: self.seed,
            nlist: self.nlist,
            nprobe: self.nprobe,
            niter: self.niter,
            query_expansion: self.qe.given()?,
            factory,
            compress: self.compress,
            recall,
            ..TrainOptions::default()
        })
    }
}

fn parse_nprobe(s: &str) -> std::result::Result<Nprobe, String> {
    if s == "auto" {
        return Ok(Nprobe::Auto);
    }
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("expected a positive number or `auto`, got {s:?}")),
        Ok(p) => Ok(Nprobe::Fixed(p)),
    }
}

pub fn run(a: &TrainArgs) -> Result<()> {
    a.json.check()?;
    let progress = a.common.progress(&a.verbose);
    let opts = a.settings.options()?;
    let exp =
        Experiment::open_layout(&a.experiment, a.layout, a.version, a.feature_dir.as_deref())?
            .with_output(a.output.as_deref())?
            .with_link(a.link.as_deref())?;
    let lock = match layout::begin(&exp, a.skip_existing, &progress)? {
        Begun::Skipped(s) => return a.json.emit(&TrainOutcome::Skipped(s)),
        Begun::Build(lock) => lock,
    };
    let backend = a.common.backend(&progress)?;
    let s = layout::build_locked(backend.as_ref(), &exp, &opts, &progress, &lock)?;
    let mut written: Vec<String> = [&s.total_fea, &s.trained_index, &s.added_index]
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.display().to_string())
        .collect();
    if let Some(l) = &s.link {
        written.push(format!("{} (link)", l.display()));
    }
    progress.info(&format!(
        "wrote {}\n{} rows, nlist {}, nprobe {}, {:.2} s (load {:.2}, k-means {:.2}, add {:.2}, write {:.2})",
        written.join("\n      "),
        s.n,
        s.nlist,
        s.nprobe,
        s.seconds.total,
        s.seconds.load,
        s.seconds.kmeans,
        s.seconds.add,
        s.seconds.write_index + s.seconds.write_total_fea
    ));
    a.json.emit(&TrainOutcome::Built(Box::new(s)))
}
