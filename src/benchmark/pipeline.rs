//! The stages, in the order `faiss_baseline.py` runs them.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ndarray::{Array2, ArrayView2, Axis, s};

use super::report::{DataInfo, Recall, Report, Stage, cpu_model, loadavg};
use super::{BenchConfig, DataSource, default_factories, peak_rss_bytes, reset_peak_rss};
use crate::compute::Backend;
use crate::faiss::Index;
use crate::index::build::{self, BuildParams, BuildTimes, Trained};
use crate::index::factory::{Codec, Factory};
use crate::index::{pq, recall, search};
use crate::io::{experiment, features};
use crate::progress::Progress;
use crate::train::minibatch::{self, MiniBatchParams};
use crate::train::rvc::{RVC_COMPRESS_ABOVE, shuffle_permutation};
use crate::{Error, Metric, Result, qe};

/// Runs `f` `repeat` times (the previous result dropped first, so memory
/// peaks are one run's), returning the last result, every run's seconds and
/// the stage's peak resident memory.
pub(super) fn timed<T>(
    repeat: usize,
    peak: &mut Option<u64>,
    mut f: impl FnMut() -> Result<T>,
) -> Result<(T, Vec<f64>, Option<u64>)> {
    reset_peak_rss();
    let mut times = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat.max(1) {
        drop(last.take());
        let t = Instant::now();
        let v = f()?;
        times.push(t.elapsed().as_secs_f64());
        last = Some(v);
    }
    let p = peak_rss_bytes();
    if let Some(p) = p {
        *peak = Some(peak.map_or(p, |q| q.max(p)));
    }
    Ok((last.expect("at least one run"), times, p))
}

/// The feature files `--data` names: one `.npy`, a folder of them, or an
/// experiment folder.
fn feature_files(p: &Path) -> Result<Vec<features::NpyFile>> {
    if p.is_file() {
        return Ok(vec![features::inspect_npy(p)?]);
    }
    if !p.is_dir() {
        return Err(Error::bad_input(p, "no such file or folder"));
    }
    if experiment::has_npy(p) {
        return features::scan_dir(p);
    }
    let exp = experiment::Experiment::open(p, None, None)?;
    exp.feature_files()
}

/// Rows shuffled as `train` shuffles them: row i is row `perm[i]` of the files.
fn load(cfg: &BenchConfig) -> Result<(Array2<f32>, usize, String)> {
    match &cfg.data {
        DataSource::Path(p) => {
            let files = feature_files(p)?;
            let n: usize = files.iter().map(|f| f.rows).sum();
            if n == 0 {
                return Err(Error::bad_input(p, "the feature files hold no rows"));
            }
            let perm = shuffle_permutation(n, cfg.seed);
            let mut dest = vec![0usize; n];
            for (i, &j) in perm.iter().enumerate() {
                dest[j] = i;
            }
            let x = features::load_into(&files, Some(&dest), |_| {})?;
            Ok((x, files.len(), p.display().to_string()))
        }
        DataSource::Synthetic { n, d, seed } => {
            let x = crate::synthetic::database(*n, *d, *seed)?;
            let files = crate::synthetic::utterance_lengths(*n, *seed).len();
            let perm = shuffle_permutation(x.nrows(), cfg.seed);
            Ok((x.select(Axis(0), &perm), files, "synthetic".into()))
        }
    }
}

/// Where the indexed rows were in the feature files, for `--recall`'s
/// exclusion of a query's neighbouring frames: the first `held_out`
/// shuffled rows are not indexed; compressed centres have no place.
fn timeline(
    cfg: &BenchConfig,
    n_raw: usize,
    held_out: usize,
    compressed: bool,
) -> Result<recall::Timeline> {
    if compressed {
        return Ok(recall::Timeline::rows(0));
    }
    let lens: Vec<usize> = match &cfg.data {
        DataSource::Path(p) => feature_files(p)?.iter().map(|f| f.rows).collect(),
        DataSource::Synthetic { n, seed, .. } => crate::synthetic::utterance_lengths(*n, *seed),
    };
    let perm = shuffle_permutation(n_raw, cfg.seed);
    Ok(recall::Timeline::of_files(&lens, &perm[held_out..]))
}

/// Run every stage `cfg` asks for on `backend`.
pub fn run(backend: &dyn Backend, cfg: &BenchConfig, progress: &Progress) -> Result<Report> {
    cfg.check()?;
    let t_all = Instant::now();
    let loadavg_start = loadavg();
    let r = cfg.repeat;
    let k = cfg.k;
    let mut peak = None;
    let mut stages: Vec<Stage> = Vec::new();
    let step = |what: &str| progress.info(&format!("bench: {what}"));

    // ---- load: read + RVC's seeded shuffle
    step("load");
    let ((x, files, source), t, p) = timed(r, &mut peak, || load(cfg))?;
    let (n_raw, d) = x.dim();
    let mut st = Stage::new("load", t)
        .info("rows", n_raw)
        .info("files", files);
    st.peak_rss_bytes = p;
    stages.push(st);

    // ---- queries: as the harness draws them
    let (xq, db_raw, queries_source) = match &cfg.data {
        DataSource::Path(path) => {
            let nq = cfg.queries.min(n_raw / 10);
            if nq == 0 {
                return Err(Error::bad_input(
                    path,
                    format!(
                        "{n_raw} rows are too few to hold out queries (at least 10 are needed)"
                    ),
                ));
            }
            (
                x.slice(s![..nq, ..]).to_owned(),
                x.slice(s![nq.., ..]),
                format!("held out first {nq} shuffled rows (removed from db)"),
            )
        }
        DataSource::Synthetic { seed, .. } => (
            crate::synthetic::queries(cfg.queries, d, *seed)?,
            x.view(),
            "synthetic, same mixture, separate stream".into(),
        ),
    };
    let nq = xq.nrows();
    let n_after = db_raw.nrows();

    // ---- compress: RVC's reduction to k-means centres
    let centres = match cfg.compress.centres(n_after, RVC_COMPRESS_ABOVE) {
        Some(kc) => {
            if kc > n_after {
                return Err(Error::Invalid(format!(
                    "{n_after} rows are fewer than the {kc} centres to compress them to"
                )));
            }
            step(&format!("compress {n_after} rows to {kc} centres"));
            let mut params = MiniBatchParams::new(kc);
            params.seed = cfg.seed;
            let (fit, t, p) = timed(r, &mut peak, || {
                minibatch::fit(backend, db_raw, &params, |_| {})
            })?;
            let inertia = minibatch::inertia(backend, db_raw, fit.centroids.view(), |_| {})?;
            let sm = &fit.summary;
            let mut st = Stage::new("compress", t)
                .flops(2.0 * sm.rows_assigned as f64 * kc as f64 * d as f64)
                .info("centres", kc)
                .info("steps", sm.steps)
                .info("passes", sm.passes)
                .info("reseeded", sm.reseeded);
            st.objective_per_row = Some(inertia / n_after as f64);
            st.peak_rss_bytes = p;
            stages.push(st);
            Some(fit.centroids)
        }
        None => None,
    };
    let db: ArrayView2<f32> = centres.as_ref().map_or(db_raw, |c| c.view());
    let n = db.nrows();

    // ---- assign: the nearest-centroid kernel alone
    if cfg.stages.assign {
        let ks = if cfg.assign_k.is_empty() {
            vec![crate::train::rvc::rvc_nlist(n)]
        } else {
            cfg.assign_k.clone()
        };
        step(&format!("assign {n} rows to {ks:?} centroids"));
        stages.extend(super::assign_stage::run(backend, db, &ks, r, &mut peak)?);
    }

    // ---- exact search: the ground truth for recall
    let truth = if cfg.stages.search {
        step(&format!("exact search {nq} x {n}"));
        let (nb, t, p) = timed(r, &mut peak, || backend.knn(xq.view(), db, k, Metric::L2))?;
        let mut st = Stage::new("exact", t).flops(2.0 * nq as f64 * n as f64 * d as f64);
        st.queries_per_s = Some(nq as f64 / st.min_s);
        st.peak_rss_bytes = p;
        stages.push(st);
        Some(nb.ids)
    } else {
        None
    };

    // ---- per index kind: train, add, serialize, coarse, search, refine
    let factories = if cfg.factories.is_empty() {
        default_factories(d)
    } else {
        cfg.factories.clone()
    };
    let max_nprobe = cfg.nprobe.iter().copied().max().unwrap_or(1);
    // The stages of `index::build`, timed one by one, with the settings
    // `train` uses (faiss's IVF k-means, nprobe 1 stored).
    let params = BuildParams::new(Metric::L2, 1);
    let hidden = Progress::hidden();
    for &factory in factories.iter().filter(|_| cfg.stages.train) {
        let fixed = build::check(factory, n, d)?;
        let label = fixed.to_string();
        let (nlist, pq_m) = match fixed {
            Factory::Ivf { nlist, codec, .. } => (
                nlist.resolve(n),
                match codec {
                    Codec::Pq4FastScan { m } => Some(m),
                    Codec::Flat => None,
                },
            ),
            Factory::Flat => (0, None),
        };
        let mut trained = Trained {
            factory: fixed,
            d,
            metric: params.metric,
            nprobe: params.nprobe,
            kmeans: None,
            pq: None,
        };

        // train: the coarse quantizer's k-means, then the PQ codebooks
        if nlist > 0 {
            step(&format!("train {label}"));
            let (km, t, p) = timed(r, &mut peak, || {
                build::train_kmeans(backend, db, nlist, &params, &hidden)
            })?;
            let iters = km.iterations.len();
            let mut st = Stage::new("train", t)
                .factory(&label)
                .flops(2.0 * km.train_rows as f64 * nlist as f64 * d as f64 * iters as f64)
                .info("nlist", nlist)
                .info("iterations", iters)
                .info("train_rows", km.train_rows)
                .info(
                    "objective_last_per_train_row",
                    km.iterations
                        .last()
                        .map(|s| s.objective / km.train_rows as f64),
                );
            st.peak_rss_bytes = p;
            if let Some(a) = &km.final_assignment {
                st.objective_per_row = Some(build::per_row(
                    a.distances.iter().map(|&v| v as f64).sum(),
                    n,
                ));
            }
            stages.push(st);
            trained.kmeans = Some(km);
        }
        if let Some(m) = pq_m {
            let (pq, t, p) = timed(r, &mut peak, || build::train_pq(backend, db, m))?;
            let rows = n.min(pq::TRAIN_ROWS);
            let mut st = Stage::new("train_pq", t)
                .factory(&label)
                .flops(2.0 * rows as f64 * pq::KSUB as f64 * d as f64 * 25.0)
                .info("m", m)
                .info("train_rows", rows);
            st.peak_rss_bytes = p;
            stages.push(st);
            trained.pq = Some(pq);
        }
        if !cfg.stages.add {
            continue;
        }

        // add: every row to its list (labels k-means already has are reused,
        // as `train` does), PQ codes, the index structure
        step(&format!("add {label}"));
        let mut times = BuildTimes::default();
        let ((index, objective, reused), t, p) = timed(r, &mut peak, || {
            let added = build::add(backend, db, &trained, &hidden, &mut times)?;
            let (objective, reused) = (added.objective, added.labels_from_training);
            Ok((
                build::fill(&trained, added, db, &mut times),
                objective,
                reused,
            ))
        })?;
        let mut st = Stage::new("add", t)
            .factory(&label)
            .info("labels_from_training", reused)
            .info("assign_s", times.assign)
            .info("encode_s", times.encode)
            .info("fill_s", times.fill + times.refine);
        if nlist > 0 && !reused {
            st = st.flops(2.0 * n as f64 * nlist as f64 * d as f64);
        }
        if nlist > 0 {
            st.objective_per_row = Some(build::per_row(objective, n));
        }
        st.peak_rss_bytes = p;
        stages.push(st);
        let km = trained.kmeans.take();
        drop(trained);

        let (bytes, t, p) = timed(r, &mut peak, || {
            crate::faiss::index_to_bytes(&index).map(|b| b.len())
        })?;
        let mut st = Stage::new("serialize", t).factory(&label);
        st.index_bytes = Some(bytes as u64);
        st.peak_rss_bytes = p;
        stages.push(st);

        let Some(truth) = truth.as_ref() else {
            continue;
        };
        if let Some(km) = &km {
            let (_, t, p) = timed(r, &mut peak, || {
                search::coarse(
                    backend,
                    km.centroids.view(),
                    xq.view(),
                    max_nprobe,
                    Metric::L2,
                )
            })?;
            let mut st = Stage::new("coarse", t)
                .factory(&label)
                .flops(2.0 * nq as f64 * nlist as f64 * d as f64)
                .info("k", max_nprobe.min(nlist));
            st.peak_rss_bytes = p;
            stages.push(st);
        }
        // ---- recall: `train --recall`'s measurement of this index
        let mut nprobes = cfg.nprobe.clone();
        if let (Some(r), true) = (cfg.recall, km.is_some()) {
            step(&format!("recall {label}"));
            let timeline = timeline(cfg, n_raw, n_raw - n_after, centres.is_some())?;
            let t = Instant::now();
            let sample = recall::Sample::draw(
                backend,
                db,
                &timeline,
                cfg.seed,
                recall::sample_size(n, nlist),
            )?;
            let c = recall::measure(backend, db, &index, &sample, r)?;
            let secs = t.elapsed().as_secs_f64();
            let build_s: f64 = stages
                .iter()
                .filter(|s| {
                    s.factory.as_deref() == Some(label.as_str())
                        && ["train", "train_pq", "add"].contains(&s.name.as_str())
                })
                .map(|s| s.min_s)
                .sum();
            let mut st = Stage::new("recall", vec![secs])
                .factory(&label)
                .info("target", r)
                .info("reached", c.reached)
                .info("queries", sample.len())
                .info("excluded_per_query_max", sample.max_excluded)
                .info("method", c.method)
                .info("recall_at_nprobe_1", c.curve.first().map(|p| p.recall_at_8))
                .info("recall_at_chosen", c.recall_at_8)
                .info("share_of_train_and_add", secs / build_s.max(1e-9))
                .info("curve", &c.curve);
            st.nprobe = Some(c.nprobe);
            stages.push(st);
            if !nprobes.contains(&c.nprobe) {
                nprobes.push(c.nprobe);
                nprobes.sort_unstable();
            }
        }
        let probes: Vec<Option<usize>> = if km.is_some() {
            nprobes.iter().map(|&p| Some(p)).collect()
        } else {
            vec![None]
        };
        for np in probes {
            step(&format!(
                "search {label}{}",
                np.map_or(String::new(), |p| format!(" nprobe {p}"))
            ));
            let base = match &index {
                Index::Refine(rf) => {
                    let kb = ((k as f32 * rf.k_factor) as usize).max(k);
                    let (nb, t, p) = timed(r, &mut peak, || {
                        search::search_index(backend, &rf.base, xq.view(), kb, np)
                    })?;
                    let mut st = Stage::new("base_search", t).factory(&label).info("k", kb);
                    st.nprobe = np;
                    st.recall = Some(Recall::of(nb.ids.view(), truth.view(), k));
                    st.queries_per_s = Some(nq as f64 / st.min_s);
                    st.peak_rss_bytes = p;
                    Some(st)
                }
                _ => None,
            };
            let (nb, t, p) = timed(r, &mut peak, || {
                search::search_index(backend, &index, xq.view(), k, np)
            })?;
            let mut st = Stage::new("search", t).factory(&label);
            st.nprobe = np;
            st.recall = Some(Recall::of(nb.ids.view(), truth.view(), k));
            st.queries_per_s = Some(nq as f64 / st.min_s);
            st.peak_rss_bytes = p;
            if let Some(b) = base {
                // Refine = the whole search less the base search, run by run.
                let diff: Vec<f64> = st
                    .seconds
                    .iter()
                    .zip(&b.seconds)
                    .map(|(a, c)| (a - c).max(0.0))
                    .collect();
                let mut rf = Stage::new("refine", diff).factory(&label);
                // Per-run differences are noise-dominated; the difference
                // of the summaries is the better estimate.
                rf.min_s = (st.min_s - b.min_s).max(0.0);
                rf.median_s = (st.median_s - b.median_s).max(0.0);
                rf.nprobe = np;
                stages.push(b);
                stages.push(rf);
            }
            stages.push(st);
        }
    }

    // ---- expand: α-QE of the rows (or the first qe_rows) against all rows
    if cfg.stages.expand {
        let rows = cfg.qe_rows.unwrap_or(n).min(n);
        step(&format!("expand {rows} of {n} rows"));
        let hidden = Progress::hidden();
        let ((y, prep), t, p) = timed(r, &mut peak, || {
            if rows == n {
                let (y, secs) = qe::expand(backend, db.to_owned(), &cfg.qe, &hidden)?;
                Ok((y, secs.normalize))
            } else {
                let t = Instant::now();
                let mut xn = db.to_owned();
                qe::normalize_rows(&mut xn);
                let prep = t.elapsed().as_secs_f64();
                let q = xn.slice(s![..rows, ..]).to_owned();
                let y = qe::expand_against(backend, q, xn.view(), &cfg.qe, &hidden)?;
                Ok((y, prep))
            }
        })?;
        let mut cos = 0f64;
        for (yr, xr) in y.rows().into_iter().zip(db.rows()) {
            let nx = xr.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
            cos += (yr.iter().zip(xr.iter()).map(|(a, b)| a * b).sum::<f32>() / nx) as f64;
        }
        let mut st = Stage::new("expand", t)
            .flops(2.0 * rows as f64 * n as f64 * d as f64)
            .info("rows_expanded", rows)
            .info("num_expand", cfg.qe.num_expand)
            .info("alpha", cfg.qe.alpha)
            .info("prep_s", prep)
            .info("mean_cos_to_original", cos / rows.max(1) as f64);
        if rows < n {
            let full = prep + (st.min_s - prep).max(0.0) * n as f64 / rows as f64;
            st = st.info("extrapolated_total_s", full);
        }
        st.peak_rss_bytes = p;
        stages.push(st);
    }

    Ok(Report {
        tool: "rvc-index bench",
        version: env!("CARGO_PKG_VERSION"),
        date_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        backend: backend.info(),
        adapter: backend.adapter(),
        cpu: cpu_model(),
        threads: rayon::current_num_threads(),
        config: cfg.clone(),
        data: Some(DataInfo {
            source,
            files,
            n_raw,
            n_raw_after_holdout: n_after,
            n_db: n,
            d,
            n_queries: nq,
            queries_source,
            compressed: centres.is_some(),
        }),
        stages,
        peak_rss_bytes: peak,
        total_s: t_all.elapsed().as_secs_f64(),
        loadavg_start,
        loadavg_end: loadavg(),
    })
}
