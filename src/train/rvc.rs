//! RVC's `train_index` step: features → shuffle → IVF k-means → the
//! `trained_…` and `added_…` IVF-Flat files, named as RVC names them (or
//! Applio's `<model>.index`, see `io::experiment::Layout`).

use std::path::PathBuf;
use std::time::Instant;

use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::kmeans::IterationStats;
use super::layout::RunLog;
use super::manifest::{
    InputFile, SetFacts, fingerprint_inputs, is_output_name, previous_link, previous_outputs,
    stage_manifest,
};
use super::minibatch::{self, Compress, FitSummary, MiniBatchParams};
use crate::compute::{Backend, BackendInfo};
use crate::index::build::{self, BuildParams, BuildTimes};
use crate::index::factory::{Factory, Nlist};
use crate::io::experiment::{Experiment, Layout, Version};
use crate::io::link::{self, LinkKind};
use crate::io::{OutputSet, Target, features};
use crate::progress::Progress;
use crate::{Error, Metric, Result};

/// RVC's list count (kept here for callers of the RVC pipeline).
pub use crate::index::ivf::rvc_nlist;

/// Above this many rows RVC first compresses the features to 10 000
/// k-means centres.
pub const RVC_COMPRESS_ABOVE: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nprobe {
    Fixed(usize),
    /// `int(nlist ** 0.3)`, as RVC 1.0/1.1 stored.
    Auto,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub seed: u64,
    pub nlist: Option<usize>,
    pub nprobe: Nprobe,
    /// faiss's k-means seed (1234 in faiss).
    pub kmeans_seed: u32,
    pub niter: usize,
    /// Replace the rows by their α-query expansion before indexing.
    pub query_expansion: Option<crate::qe::QeParams>,
    /// Another index kind than RVC's `IVF{auto},Flat` (None).
    pub factory: Option<Factory>,
    /// Mini-batch k-means compression before indexing (RVC: above 200 000 rows).
    pub compress: Compress,
    /// Row count above which `Compress::Auto` compresses (RVC: 200 000).
    pub compress_above: usize,
    /// `--recall`: store the smallest nprobe reaching this recall@8 (and
    /// with `--factory auto` the faster kind); None: `nprobe` as given.
    #[serde(default)]
    pub recall: Option<crate::index::recall::RecallTarget>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 0,
            nlist: None,
            nprobe: Nprobe::Fixed(1),
            kmeans_seed: 1234,
            niter: 10,
            query_expansion: None,
            factory: None,
            compress: Compress::Auto,
            compress_above: RVC_COMPRESS_ABOVE,
            recall: None,
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageSeconds {
    /// Reading and shuffling the feature files.
    pub load: f64,
    pub query_expansion: f64,
    pub write_total_fea: f64,
    /// faiss's `train`: the coarse k-means (and the PQ codebooks for PQ kinds).
    pub kmeans: f64,
    /// faiss's `add`: assigning the rows to their lists (PQ kinds: encoding
    /// and packing them, the refine copy).
    pub add: f64,
    /// Writing the trained and added files.
    pub write_index: f64,
    pub total: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    pub experiment: String,
    pub layout: Layout,
    /// Always false here (see `layout::TrainOutcome`).
    pub skipped: bool,
    pub version: Version,
    pub feature_dir: PathBuf,
    pub files: usize,
    pub n: usize,
    pub d: usize,
    /// The index kind, list count fixed (`IVF<n>,Flat` for RVC's kind).
    pub factory: String,
    pub nlist: usize,
    pub nprobe: usize,
    pub seed: u64,
    pub backend: BackendInfo,
    pub seconds: StageSeconds,
    /// Seconds per build stage, as `build --json` reports them.
    pub stage_seconds: BuildTimes,
    pub kmeans_iterations: Vec<IterationStats>,
    /// Mean squared L2 distance of every indexed row to the centroid of its
    /// list, at the final centroids (0 for `Flat`).
    pub objective_per_row: f64,
    /// Empty (`null` in JSON) where the layout writes none (RVC main, Applio).
    #[serde(serialize_with = "super::layout::path_or_null")]
    pub total_fea: PathBuf,
    /// Empty (`null` in JSON) where the layout writes none (Applio).
    #[serde(serialize_with = "super::layout::path_or_null")]
    pub trained_index: PathBuf,
    /// The index inference loads (Applio: `<model>.index`; `--output`).
    pub added_index: PathBuf,
    /// `--link`: the link to it, and what kind of link was made.
    pub link: Option<PathBuf>,
    pub link_kind: Option<LinkKind>,
    /// RVC main's `train_index.log`.
    pub log: Option<PathBuf>,
    /// Rows in the index: `n`, or the centres when the features were compressed.
    pub indexed_rows: usize,
    pub compression: Option<FitSummary>,
    /// `--recall`: the recall@8 curves measured and the nprobe chosen.
    pub recall: Option<crate::index::recall::RecallReport>,
}

/// A seeded permutation: row `i` of the shuffled matrix is row `perm[i]` of
/// the concatenated files.
pub fn shuffle_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    perm.shuffle(&mut rng);
    perm
}

/// An experiment's features, checked, loaded and shuffled: everything that
/// can be wrong with the input has been found, and nothing written yet.
pub struct Prepared {
    pub exp: Experiment,
    pub files: usize,
    /// Fingerprints of the feature files, for the manifest.
    pub inputs: Vec<InputFile>,
    /// Mini-batch k-means centres to compress the rows to before indexing.
    pub compress_to: Option<usize>,
    /// Shuffled rows: row i is row `shuffle_permutation(n, seed)[i]` of the files.
    pub x: Array2<f32>,
    pub nlist: usize,
    pub nprobe: usize,
    pub load_seconds: f64,
}

/// Read an experiment's features (the first half of `train_experiment`);
/// safe to run on another thread while a previous experiment trains.
pub fn prepare(exp: &Experiment, opts: &TrainOptions, progress: &Progress) -> Result<Prepared> {
    let t = Instant::now();
    let files = exp.feature_files()?;
    for f in features::converted(&files) {
        progress.warn(&format!(
            "{}: {} converted to float32",
            f.path.display(),
            f.dtype.name()
        ));
    }
    let n: usize = files.iter().map(|f| f.rows).sum();
    if n == 0 {
        return Err(Error::bad_input(
            &exp.feature_dir,
            "the feature files hold no rows",
        ));
    }
    let compress_to = opts.compress.centres(n, opts.compress_above);
    if let Some(k) = compress_to.filter(|&k| k > n) {
        return Err(Error::bad_input(
            &exp.feature_dir,
            format!("only {n} feature rows, fewer than the {k} centres to compress them to"),
        ));
    }
    // The index holds the centres when the rows are compressed.
    let n_raw = n;
    let n = compress_to.unwrap_or(n);
    let fixed = match opts.factory {
        Some(Factory::Ivf {
            nlist: Nlist::Fixed(k),
            ..
        }) => Some(k),
        _ => None,
    };
    let nlist = match opts.nlist.or(fixed) {
        Some(0) => return Err(Error::Invalid("--nlist must be at least 1".into())),
        Some(k) => k,
        None => {
            if n < 39 {
                return Err(Error::bad_input(
                    &exp.feature_dir,
                    format!(
                        "only {n} feature rows; RVC's index needs at least 39 rows for one list"
                    ),
                ));
            }
            rvc_nlist(n)
        }
    };
    if n < nlist {
        return Err(Error::bad_input(
            &exp.feature_dir,
            format!("only {n} feature rows, fewer than the {nlist} lists asked for"),
        ));
    }
    let nprobe = match opts.nprobe {
        Nprobe::Fixed(p) => p.max(1),
        Nprobe::Auto => ((nlist as f64).powf(0.3) as usize).max(1),
    };
    // Every setting is checked before the long work starts (and long before
    // anything is written).
    let d = files[0].cols;
    crate::index::recall::check(opts.recall.as_ref(), opts.factory)?;
    build::check(factory_of(opts, nlist), n, d)
        .map_err(|e| Error::bad_input(&exp.feature_dir, e.to_string()))?;
    check_width(exp, d, progress)?;
    super::layout::check_names(exp, &factory_of(opts, nlist).file_stem(nlist), nprobe)?;
    let inputs = fingerprint_inputs(exp)?;

    let perm = shuffle_permutation(n_raw, opts.seed);
    let mut dest = vec![0usize; n_raw];
    for (i, &p) in perm.iter().enumerate() {
        dest[p] = i;
    }
    drop(perm);
    let bar = progress.bar(n_raw as u64, "load");
    let x = features::load_into(&files, Some(&dest), |r| bar.inc(r))?;
    bar.finish_and_clear();
    Ok(Prepared {
        exp: exp.clone(),
        files: files.len(),
        inputs,
        compress_to,
        x,
        nlist,
        nprobe,
        load_seconds: t.elapsed().as_secs_f64(),
    })
}

/// The index kind `train` builds, with its list count.
fn factory_of(opts: &TrainOptions, nlist: usize) -> Factory {
    opts.factory.unwrap_or_else(Factory::rvc).with_nlist(nlist)
}

/// RVC names the feature folder after the width (`3_feature768` for v2,
/// `3_feature256` for v1) and the index after the version: v1 features in
/// the v2 folder (or the reverse) would give a wrongly named index, so that
/// is refused; with `--feature-dir` elsewhere it is only a warning. Other
/// widths are not RVC features, and are indexed as they are.
fn check_width(exp: &Experiment, d: usize, progress: &Progress) -> Result<()> {
    let (expected, other, other_version) = match exp.version {
        Version::V1 => (256, 768, Version::V2),
        Version::V2 => (768, 256, Version::V1),
    };
    if d != other {
        return Ok(());
    }
    let folder = exp.feature_dir.file_name().unwrap_or_default();
    if folder == exp.version.feature_folder() {
        return Err(Error::bad_input(
            &exp.feature_dir,
            format!(
                "features are {d} wide (RVC {}), but this is the {} folder ({expected} wide); \
                 move them to {} or pass --version {}",
                other_version.as_str(),
                exp.version.as_str(),
                other_version.feature_folder(),
                other_version.as_str()
            ),
        ));
    }
    progress.warn(&format!(
        "{}: features are {d} wide (RVC {}), indexed as {} because of --version",
        exp.feature_dir.display(),
        other_version.as_str(),
        exp.version.as_str()
    ));
    Ok(())
}

/// Take the experiment's lock (waiting, with a status line, while another
/// run holds it) and finish or clean what a killed run left there.
pub fn lock_experiment(exp: &Experiment, progress: &Progress) -> Result<crate::io::FolderLock> {
    let lock = crate::io::lock_folder(&exp.dir, || {
        progress.info(&format!(
            "{}: another rvc-index run is writing this experiment; waiting for it to finish",
            exp.dir.display()
        ))
    })?;
    let r = crate::io::recover(&exp.dir, &|n| is_output_name(exp, n))?;
    if r.rolled_forward {
        progress.info(&format!(
            "{}: completed the outputs of an interrupted run",
            exp.dir.display()
        ));
    }
    Ok(lock)
}

/// Run the whole RVC index step for one experiment, holding its lock.
pub fn train_experiment(
    backend: &dyn Backend,
    exp: &Experiment,
    opts: &TrainOptions,
    progress: &Progress,
) -> Result<TrainSummary> {
    let lock = lock_experiment(exp, progress)?;
    super::layout::build_locked(backend, exp, opts, progress, &lock)
}

/// Train and write the index of prepared features (the second half of
/// `train_experiment`), holding the experiment's `lock`. The layout's
/// outputs (RVC: total_fea.npy, the trained and the added index; RVC main:
/// no total_fea.npy; Applio: `<model>.index` only) and the manifest are
/// written whole under temporary names and committed as one set: whatever
/// stops the run, the folder keeps the previous set or gets the new one,
/// never a mix. With `--link` the index is linked once the set is in place
/// (a failure to link is an error, and the set stays committed).
pub fn build(
    backend: &dyn Backend,
    p: Prepared,
    opts: &TrainOptions,
    progress: &Progress,
    lock: &crate::io::FolderLock,
) -> Result<TrainSummary> {
    let mut log = RunLog::open(&p.exp)?;
    build_logged(backend, p, opts, progress, lock, &mut log)
}

/// [`build`], its stages written to RVC main's log (`log`); a failure is
/// logged too.
pub fn build_logged(
    backend: &dyn Backend,
    p: Prepared,
    opts: &TrainOptions,
    progress: &Progress,
    _lock: &crate::io::FolderLock,
    log: &mut RunLog,
) -> Result<TrainSummary> {
    let r = build_inner(backend, p, opts, progress, log);
    if let Err(e) = &r {
        log.failed(e);
    }
    r
}

fn build_inner(
    backend: &dyn Backend,
    p: Prepared,
    opts: &TrainOptions,
    progress: &Progress,
    log: &mut RunLog,
) -> Result<TrainSummary> {
    let t_start = Instant::now();
    let Prepared {
        exp,
        files,
        inputs,
        compress_to,
        x,
        nlist,
        nprobe,
        load_seconds,
    } = p;
    let exp = &exp;
    let (n_raw, d) = x.dim();
    let mut compression = None;
    let x = match compress_to {
        Some(k) => {
            log.line(&format!(
                "compressing {n_raw} feature rows to {k} k-means centres"
            ));
            let mut p = MiniBatchParams::new(k);
            p.seed = opts.seed;
            let r = minibatch::fit_with_progress(backend, x.view(), &p, progress)?;
            progress.info(&format!(
                "compressed {n_raw} rows to {k} k-means centres in {:.2} s",
                r.summary.fit_seconds
            ));
            compression = Some(r.summary);
            r.centroids
        }
        None => x,
    };
    let n = x.nrows();
    let mut secs_qe = 0.0;
    let x = match &opts.query_expansion {
        Some(q) => {
            let (y, s) = crate::qe::expand(backend, x, q, progress)?;
            secs_qe = s.total;
            y
        }
        None => x,
    };
    let mut secs = StageSeconds {
        load: load_seconds,
        query_expansion: secs_qe,
        ..StageSeconds::default()
    };
    progress.info(&format!(
        "{}: {n_raw} rows × {d} from {files} files; {nlist} lists",
        exp.feature_dir.display()
    ));
    log.line(&format!(
        "features: {n_raw} rows × {d} from {files} files; indexed rows: ({n}, {d}); IVF lists: {nlist}"
    ));

    let t = Instant::now();
    let mut set = OutputSet::new(&exp.dir);
    let total_fea = if exp.layout.writes_total_fea() {
        let p = exp.total_fea_path();
        features::write_npy_into(&mut Target::Set(&mut set), &p, x.view())?;
        p
    } else {
        PathBuf::new()
    };
    secs.write_total_fea = t.elapsed().as_secs_f64();
    crate::testing::pause_point("after-total-fea");

    // faiss's train and add (the one build path, its stages run one by
    // one), then the trained and the added file, staged.
    let factory = factory_of(opts, nlist);
    let params = BuildParams {
        niter: opts.niter,
        kmeans_seed: opts.kmeans_seed,
        ..BuildParams::new(Metric::L2, nprobe)
    };
    let mut stages = BuildTimes::default();
    log.line("training the index");
    let t = Instant::now();
    let trained = build::train(backend, x.view(), factory, &params, progress, &mut stages)?;
    secs.kmeans = t.elapsed().as_secs_f64();

    log.line("adding the rows");
    let t = Instant::now();
    let added = build::add(backend, x.view(), &trained, progress, &mut stages)?;
    let objective = added.objective;
    secs.add = t.elapsed().as_secs_f64();

    // ---- --recall: measure the built index and choose the stored nprobe
    // (with --factory auto also the kind) before the files, whose names
    // and headers carry it, are staged.
    let (trained, added, factory, nprobe, recall) = match &opts.recall {
        Some(target) => {
            let timeline = crate::index::recall::Timeline::of_experiment(
                exp,
                opts.seed,
                n_raw,
                compress_to.is_none(),
            );
            let c = crate::index::recall::choose(
                backend,
                x.view(),
                trained,
                added,
                target,
                &timeline,
                opts.seed,
                progress,
            )?;
            progress.info(&format!(
                "recall@8 {:.4} at nprobe {} ({}; measured in {:.2} s)",
                c.report.recall_at_8, c.nprobe, c.report.factory, c.report.seconds
            ));
            let f = c.trained.factory;
            (c.trained, c.added, f, c.nprobe, Some(c.report))
        }
        None => (trained, added, factory, nprobe, None),
    };
    // ---- end of --recall

    let t = Instant::now();
    let stem = factory.file_stem(nlist);
    let trained_index = match exp.trained_path(&stem, nprobe) {
        Some(p) => {
            build::write_trained(&mut Target::Set(&mut set), &p, &trained)?;
            p
        }
        None => PathBuf::new(),
    };
    let mut write_secs = t.elapsed().as_secs_f64();
    crate::testing::pause_point("after-trained");

    // IVF-Flat is streamed from the rows; other kinds are filled first,
    // and that part of the write counts as add.
    let t = Instant::now();
    let added_index = exp.added_path(&stem, nprobe);
    build::write_added(
        &mut Target::Set(&mut set),
        &added_index,
        &trained,
        added,
        x.view(),
        &mut stages,
    )?;
    let fill = stages.fill + stages.refine;
    secs.add += fill;
    crate::testing::pause_point("before-manifest");
    // The previous run's link, if it still leads to the previous index: a
    // run without `--link` (`batch`, say) links into the same folder again,
    // so that no link is left holding (hard) or missing (symbolic) an old
    // index; one that links elsewhere (another name, folder) removes it.
    let prev_link = previous_link(exp);
    let link_path = super::layout::link_to_make(exp, &added_index, prev_link.as_deref());
    let facts = SetFacts {
        inputs,
        rows: n_raw,
        nlist,
        index: &added_index,
        link: link_path.clone(),
    };
    stage_manifest(&mut set, exp, opts, facts)?;
    let old_link = prev_link.filter(|l| Some(l) != link_path.as_ref());
    // Outputs of older settings (another nlist gives other names) go with
    // the commit, so no stale index stays beside the new set.
    set.commit(&previous_outputs(exp))?;
    write_secs += (t.elapsed().as_secs_f64() - fill).max(0.0);
    log.line(&format!(
        "built the index: {}",
        added_index
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    ));
    if let Some(l) = old_link
        && let Err(e) = link::remove_link(&l)
    {
        progress.warn(&format!("the previous link was left in place: {e}"));
    }
    let link_kind = match &link_path {
        Some(l) => Some(super::layout::make_link(&added_index, l, log)?),
        None => None,
    };
    let link = link_path.filter(|_| link_kind != Some(LinkKind::Inside));
    secs.write_index = write_secs;
    secs.total = load_seconds + t_start.elapsed().as_secs_f64();

    Ok(TrainSummary {
        experiment: exp.name.clone(),
        layout: exp.layout,
        skipped: false,
        version: exp.version,
        feature_dir: exp.feature_dir.clone(),
        files,
        n: n_raw,
        d,
        factory: factory.to_string(),
        nlist,
        nprobe,
        seed: opts.seed,
        backend: backend.info(),
        seconds: secs,
        stage_seconds: stages,
        kmeans_iterations: trained.kmeans.map(|k| k.iterations).unwrap_or_default(),
        objective_per_row: build::per_row(objective, n),
        total_fea,
        trained_index,
        added_index,
        link,
        link_kind,
        log: exp.log_path(),
        indexed_rows: n,
        compression,
        recall,
    })
}
