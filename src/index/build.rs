//! Build any index a factory string describes, as faiss's `index_factory` +
//! `train` + `add` would: the metric passes to every sub-index, ids are row
//! numbers, lists hold ascending ids.
//!
//! This is the one build path. Its stages are public so that callers which
//! write files between them (`train` writes the trained file before `add`)
//! or time them one by one (`bench`) run the same code:
//!
//! 1. [`train`]: [`train_kmeans`] (the coarse quantizer) and [`train_pq`]
//!    (the PQ codebooks) give a [`Trained`] index;
//! 2. [`add`]: [`assign`] (every row to its list) and [`encode`] (PQ codes)
//!    give the [`Added`] lists;
//! 3. [`fill`] lays the lists out as an [`Index`] (copying the vectors,
//!    packing the codes, the refine copy), or [`write_added`] writes the
//!    file, streaming IVF-Flat and Flat files straight from the rows without
//!    a second copy of them.
//!
//! [`build`] and [`build_with`] run all three.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::factory::{Codec, Factory};
use super::ivf::{assign_all, build_lists};
use super::pq;
use crate::compute::Backend;
use crate::faiss::{
    self, BlockList, DirectMap, Flat, FlatList, Index, Ivf, IvfFlat, IvfPqFs, ProductQuantizer,
    RefineFlat, SizeTable, fastscan,
};
use crate::io::Target;
use crate::progress::Progress;
use crate::train::kmeans::{self, IterationStats, KmeansParams, KmeansResult};
use crate::{Error, Metric, Result};

/// Fast-scan block size faiss uses by default (and the only one whose
/// per-entry access faiss gets right).
pub const BBS: usize = 32;

/// How an index is trained: the metric every sub-index takes, the nprobe
/// stored in the file and the coarse quantizer's k-means settings (faiss's
/// IVF defaults from [`BuildParams::new`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BuildParams {
    pub metric: Metric,
    pub nprobe: usize,
    /// k-means iterations (faiss: 10).
    pub niter: usize,
    /// k-means seed of the subsample and the initial centroids (faiss: 1234).
    pub kmeans_seed: u32,
    /// Above `nlist · max_points_per_centroid` rows k-means trains on a
    /// seeded subsample (faiss: 256).
    pub max_points_per_centroid: usize,
}

impl BuildParams {
    pub fn new(metric: Metric, nprobe: usize) -> Self {
        let km = KmeansParams::ivf(1, metric);
        BuildParams {
            metric,
            nprobe,
            niter: km.niter,
            kmeans_seed: km.seed,
            max_points_per_centroid: km.max_points_per_centroid,
        }
    }

    /// The k-means parameters for `nlist` centroids.
    pub fn kmeans(&self, nlist: usize) -> KmeansParams {
        KmeansParams {
            niter: self.niter,
            seed: self.kmeans_seed,
            max_points_per_centroid: self.max_points_per_centroid,
            ..KmeansParams::ivf(nlist, self.metric)
        }
    }
}

/// Seconds spent in each build stage.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct BuildTimes {
    /// IVF k-means.
    pub kmeans: f64,
    /// Assigning every row to its list (when k-means did not already).
    pub assign: f64,
    /// PQ codebook training.
    pub pq_train: f64,
    /// PQ encoding of every row.
    pub encode: f64,
    /// Filling the inverted lists (copying vectors, packing codes); 0 where
    /// the file is streamed from the rows (IVF-Flat, Flat).
    pub fill: f64,
    /// The refine copy of the vectors (RFlat).
    pub refine: f64,
}

/// What faiss's `train` leaves: the index kind with its list count fixed,
/// the coarse quantizer (IVF kinds) and the PQ codebooks (PQ kinds).
pub struct Trained {
    /// `Factory::Flat`, or an IVF kind with `Nlist::Fixed`.
    pub factory: Factory,
    pub d: usize,
    pub metric: Metric,
    pub nprobe: usize,
    /// The coarse quantizer's k-means (IVF kinds).
    pub kmeans: Option<KmeansResult>,
    pub pq: Option<ProductQuantizer>,
}

/// What `add` computes before the lists are laid out.
pub struct Added {
    /// The ids of each list, ascending (none for `Flat`).
    pub lists: Vec<Vec<i64>>,
    /// Sum over the rows of the squared distance (inner product) to their
    /// list centroid: k-means' objective at the final centroids (0 for `Flat`).
    pub objective: f64,
    /// `n × m` PQ codes in row order (PQ kinds).
    pub codes: Option<Vec<u8>>,
    /// The labels are k-means' own final assignment (no assignment pass ran).
    pub labels_from_training: bool,
}

/// A built index with the statistics of its build.
pub struct Built {
    pub index: Index,
    pub kmeans: Vec<IterationStats>,
    pub stages: BuildTimes,
    /// `Added::objective` over the row count (0 for `Flat`).
    pub objective_per_row: f64,
}

/// The factory with its list count fixed for `n` rows of dimension `d`,
/// or why it cannot be built on them.
pub fn check(factory: Factory, n: usize, d: usize) -> Result<Factory> {
    let Factory::Ivf { nlist, codec, .. } = factory else {
        return Ok(factory);
    };
    let nlist = nlist.resolve(n);
    if n < nlist {
        return Err(Error::Invalid(format!(
            "{factory}: {n} rows are fewer than the {nlist} lists"
        )));
    }
    if let Codec::Pq4FastScan { m } = codec
        && (m == 0 || !d.is_multiple_of(m))
    {
        return Err(Error::Invalid(format!(
            "{factory}: the dimension {d} is not a multiple of M = {m}"
        )));
    }
    Ok(factory.with_nlist(nlist))
}

/// The coarse quantizer: faiss's IVF k-means of `nlist` centroids, with a
/// progress bar and, with `-v`, one line per iteration.
pub fn train_kmeans(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    nlist: usize,
    params: &BuildParams,
    progress: &Progress,
) -> Result<KmeansResult> {
    let kp = params.kmeans(nlist);
    crate::limits::check_range("k-means iterations", kp.niter, 1, crate::limits::MAX_NITER)?;
    let bar = progress.bar(kp.niter as u64, "k-means");
    let km = kmeans::train(backend, x, &kp, |s| {
        bar.set_message(format!("objective {:.6e}", s.objective));
        bar.inc(1);
        progress.verbose(&format!(
            "iteration {} ({:.2} s): objective={:.6e} imbalance={:.3} nsplit={} rows searched={}",
            s.iteration, s.seconds, s.objective, s.imbalance, s.nsplit, s.recomputed
        ));
    });
    bar.finish_and_clear();
    km
}

/// The 4-bit PQ codebooks of `m` sub-spaces.
pub fn train_pq(backend: &dyn Backend, x: ArrayView2<f32>, m: usize) -> Result<ProductQuantizer> {
    pq::train(backend, x, m)
}

/// faiss's `train`: k-means for IVF kinds, then the PQ codebooks for PQ kinds.
pub fn train(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    factory: Factory,
    params: &BuildParams,
    progress: &Progress,
    times: &mut BuildTimes,
) -> Result<Trained> {
    let (n, d) = x.dim();
    let factory = check(factory, n, d)?;
    let mut trained = Trained {
        factory,
        d,
        metric: params.metric,
        nprobe: params.nprobe.max(1),
        kmeans: None,
        pq: None,
    };
    if let Factory::Ivf { nlist, codec, .. } = factory {
        let t = Instant::now();
        trained.kmeans = Some(train_kmeans(
            backend,
            x,
            nlist.resolve(n),
            params,
            progress,
        )?);
        times.kmeans = t.elapsed().as_secs_f64();
        if let Codec::Pq4FastScan { m } = codec {
            let t = Instant::now();
            trained.pq = Some(train_pq(backend, x, m)?);
            times.pq_train = t.elapsed().as_secs_f64();
        }
    }
    Ok(trained)
}

impl Trained {
    /// The number of lists (0 for `Flat`).
    pub fn nlist(&self) -> usize {
        self.kmeans.as_ref().map_or(0, |k| k.centroids.nrows())
    }

    /// The kinds whose file is written straight from the rows: IVF-Flat
    /// without refine (RVC's kind) and Flat.
    fn streams(&self) -> bool {
        matches!(
            self.factory,
            Factory::Flat
                | Factory::Ivf {
                    codec: Codec::Flat,
                    refine: false,
                    ..
                }
        )
    }

    fn ivf(&self) -> Option<Ivf> {
        let km = self.kmeans.as_ref()?;
        Some(Ivf {
            d: self.d,
            metric: self.metric,
            is_trained: true,
            nprobe: self.nprobe,
            quantizer: flat(km.centroids.view(), self.metric),
            direct_map: DirectMap::NoMap,
        })
    }

    /// The index as `train` leaves it before `add`: trained parts, no
    /// vectors (what RVC writes as its `trained_…` file).
    pub fn empty_index(&self) -> Index {
        let empty = Flat::new(self.d, self.metric, Vec::new());
        let Some(ivf) = self.ivf() else {
            return Index::Flat(empty);
        };
        let nlist = self.nlist();
        let base = match &self.pq {
            None => Index::IvfFlat(IvfFlat {
                ivf,
                size_table: SizeTable::Auto,
                lists: vec![FlatList::default(); nlist],
            }),
            Some(pq) => ivf_pq(ivf, pq.clone(), vec![BlockList::default(); nlist]),
        };
        with_refine(self.factory, base, || empty)
    }
}

/// Every row's list and the sum of the distances to the list centroids:
/// k-means' final assignment where it has one, else an assignment pass.
/// Returns `(labels, objective, labels_from_training)`.
pub fn assign(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    trained: &Trained,
    progress: &Progress,
) -> Result<(Vec<u32>, f64, bool)> {
    let Some(km) = &trained.kmeans else {
        return Ok((Vec::new(), 0.0, false));
    };
    Ok(match &km.final_assignment {
        Some(a) if a.labels.len() == x.nrows() => (
            a.labels.clone(),
            a.distances.iter().map(|&v| v as f64).sum(),
            true,
        ),
        _ => {
            let (labels, total) =
                assign_all(backend, x, km.centroids.view(), trained.metric, progress)?;
            (labels, total, false)
        }
    })
}

/// The PQ codes of every row (`n × m`, row order), as the backend computes them.
pub fn encode(backend: &dyn Backend, pq: &ProductQuantizer, x: ArrayView2<f32>) -> Result<Vec<u8>> {
    pq::encode_with(backend, pq, x)
}

/// faiss's `add`: every row to its list, and its PQ code for PQ kinds.
pub fn add(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    trained: &Trained,
    progress: &Progress,
    times: &mut BuildTimes,
) -> Result<Added> {
    if x.ncols() != trained.d {
        return Err(Error::Invalid(format!(
            "rows have {} columns, the trained index {}",
            x.ncols(),
            trained.d
        )));
    }
    let t = Instant::now();
    let (labels, objective, labels_from_training) = assign(backend, x, trained, progress)?;
    let lists = if trained.kmeans.is_some() {
        build_lists(&labels, trained.nlist())
    } else {
        Vec::new()
    };
    drop(labels);
    times.assign = t.elapsed().as_secs_f64();
    let codes = match &trained.pq {
        Some(pq) => {
            let t = Instant::now();
            let c = encode(backend, pq, x)?;
            times.encode = t.elapsed().as_secs_f64();
            Some(c)
        }
        None => None,
    };
    Ok(Added {
        lists,
        objective,
        codes,
        labels_from_training,
    })
}

fn flat(x: ArrayView2<f32>, metric: Metric) -> Flat {
    let v = match x.as_slice() {
        Some(s) => s.to_vec(),
        None => x.as_standard_layout().iter().copied().collect(),
    };
    Flat::new(x.ncols(), metric, v)
}

fn ivf_pq(ivf: Ivf, pq: ProductQuantizer, lists: Vec<BlockList>) -> Index {
    Index::IvfPqFastScan(IvfPqFs {
        ivf,
        by_residual: false,
        bbs: BBS,
        implem: 0,
        qbs2: 0,
        pq,
        lists,
    })
}

fn with_refine(factory: Factory, base: Index, refine: impl FnOnce() -> Flat) -> Index {
    match factory {
        Factory::Ivf { refine: true, .. } => Index::Refine(Box::new(RefineFlat {
            is_trained: true,
            base,
            refine: refine(),
            k_factor: 1.0,
        })),
        _ => base,
    }
}

/// Lay the added lists out as an index: the vectors (IVF-Flat) or the
/// packed codes (fast-scan PQ) in list order, and the refine copy (RFlat).
pub fn fill(trained: &Trained, added: Added, x: ArrayView2<f32>, times: &mut BuildTimes) -> Index {
    let d = trained.d;
    let t = Instant::now();
    let Some(ivf) = trained.ivf() else {
        let index = Index::Flat(flat(x, trained.metric));
        times.fill = t.elapsed().as_secs_f64();
        return index;
    };
    let x = x.as_standard_layout();
    let rows = x.as_slice().expect("standard layout");
    let base = match (&trained.pq, &added.codes) {
        (Some(pq), Some(codes)) => {
            let m = pq.m;
            let lists = added
                .lists
                .into_par_iter()
                .map(|ids| {
                    let mut list_codes = Vec::with_capacity(ids.len() * m);
                    for &i in &ids {
                        list_codes.extend_from_slice(&codes[i as usize * m..(i as usize + 1) * m]);
                    }
                    BlockList {
                        codes: fastscan::pq4_pack(&list_codes, m, BBS),
                        ids,
                    }
                })
                .collect();
            ivf_pq(ivf, pq.clone(), lists)
        }
        _ => {
            let lists = added
                .lists
                .into_par_iter()
                .map(|ids| {
                    let mut codes = Vec::with_capacity(ids.len() * d);
                    for &i in &ids {
                        codes.extend_from_slice(&rows[i as usize * d..(i as usize + 1) * d]);
                    }
                    FlatList { codes, ids }
                })
                .collect::<Vec<_>>();
            Index::IvfFlat(IvfFlat {
                ivf,
                size_table: SizeTable::faiss_choice(lists.iter().map(|l| l.ids.len())),
                lists,
            })
        }
    };
    times.fill = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let index = with_refine(trained.factory, base, || flat(x.view(), trained.metric));
    times.refine = t.elapsed().as_secs_f64();
    index
}

/// Write the trained index (no vectors) to `path`, atomically.
pub fn write_trained(target: &mut Target, path: &Path, trained: &Trained) -> Result<()> {
    faiss::write::write_index_into(target, path, &trained.empty_index())
}

/// Write the filled index to `path`, atomically. IVF-Flat and Flat files are
/// streamed from `x` and the lists without copying the rows; the other
/// kinds are laid out with [`fill`] first (its seconds go to `times`).
pub fn write_added(
    target: &mut Target,
    path: &Path,
    trained: &Trained,
    added: Added,
    x: ArrayView2<f32>,
    times: &mut BuildTimes,
) -> Result<()> {
    if !trained.streams() {
        return faiss::write::write_index_into(target, path, &fill(trained, added, x, times));
    }
    match &trained.kmeans {
        Some(km) => target.write(path, |w| {
            faiss::write_ivf_flat(
                w,
                km.centroids.view(),
                trained.metric,
                trained.nprobe,
                Some(x),
                &added.lists,
            )
        }),
        None => target.write(path, |w| faiss::write::write_flat(w, x, trained.metric)),
    }
}

/// Train and fill the index `factory` describes on the rows of `x` with
/// faiss's default k-means settings (for cosine, pass normalised rows and
/// `Metric::InnerProduct`).
pub fn build(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    factory: Factory,
    metric: Metric,
    nprobe: usize,
    progress: &Progress,
) -> Result<Built> {
    build_with(
        backend,
        x,
        factory,
        &BuildParams::new(metric, nprobe),
        progress,
    )
}

/// [`build`] with every setting given.
pub fn build_with(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    factory: Factory,
    params: &BuildParams,
    progress: &Progress,
) -> Result<Built> {
    let mut stages = BuildTimes::default();
    let trained = train(backend, x, factory, params, progress, &mut stages)?;
    let added = add(backend, x, &trained, progress, &mut stages)?;
    let objective_per_row = per_row(added.objective, x.nrows());
    let index = fill(&trained, added, x, &mut stages);
    Ok(Built {
        index,
        kmeans: trained.kmeans.map(|k| k.iterations).unwrap_or_default(),
        stages,
        objective_per_row,
    })
}

/// `total / n`, 0 for no rows.
pub fn per_row(total: f64, n: usize) -> f64 {
    if n == 0 { 0.0 } else { total / n as f64 }
}
