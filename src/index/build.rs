//! Build any index a factory string describes, as faiss's `index_factory` +
//! `train` + `add` would: the metric passes to every sub-index, ids are row
//! numbers, lists hold ascending ids.

use std::time::Instant;

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::factory::{Codec, Factory};
use super::pq;
use crate::compute::Backend;
use crate::faiss::{
    BlockList, DirectMap, Flat, FlatList, Index, Ivf, IvfFlat, IvfPqFs, RefineFlat, SizeTable,
    fastscan,
};
use crate::progress::Progress;
use crate::train::kmeans::{self, IterationStats, KmeansParams};
use crate::train::rvc::{assign_all, build_lists};
use crate::{Error, Metric, Result};

/// Fast-scan block size faiss uses by default (and the only one whose
/// per-entry access faiss gets right).
pub const BBS: usize = 32;

pub struct Built {
    pub index: Index,
    pub kmeans: Vec<IterationStats>,
    pub stages: BuildTimes,
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
    /// Filling the inverted lists (copying vectors, packing codes).
    pub fill: f64,
    /// The refine copy of the vectors (RFlat).
    pub refine: f64,
}

/// Train and fill the index `factory` describes on the rows of `x` (for
/// cosine, pass normalised rows and `Metric::InnerProduct`).
pub fn build(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    factory: Factory,
    metric: Metric,
    nprobe: usize,
    progress: &Progress,
) -> Result<Built> {
    let (n, d) = x.dim();
    let flat = |x: ArrayView2<f32>| {
        let v = match x.as_slice() {
            Some(s) => s.to_vec(),
            None => x.as_standard_layout().iter().copied().collect(),
        };
        Flat::new(d, metric, v)
    };
    let Factory::Ivf {
        nlist,
        codec,
        refine,
    } = factory
    else {
        let t = Instant::now();
        let index = Index::Flat(flat(x));
        return Ok(Built {
            index,
            kmeans: Vec::new(),
            stages: BuildTimes {
                fill: t.elapsed().as_secs_f64(),
                ..BuildTimes::default()
            },
        });
    };
    let nlist = nlist.resolve(n);
    if n < nlist {
        return Err(Error::Invalid(format!(
            "{factory}: {n} rows are fewer than the {nlist} lists"
        )));
    }
    if let Codec::Pq4FastScan { m } = codec
        && (m == 0 || d % m != 0)
    {
        return Err(Error::Invalid(format!(
            "{factory}: the dimension {d} is not a multiple of M = {m}"
        )));
    }

    let mut stages = BuildTimes::default();
    let t = Instant::now();
    let bar = progress.bar(10, "k-means");
    let km = kmeans::train(backend, x, &KmeansParams::ivf(nlist, metric), |_| {
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    stages.kmeans = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let labels = match km.final_assignment {
        Some(a) => a.labels,
        None => assign_all(backend, x, km.centroids.view(), metric, progress)?.0,
    };
    let ids = build_lists(&labels, nlist);
    stages.assign = t.elapsed().as_secs_f64();
    let ivf = Ivf {
        d,
        metric,
        is_trained: true,
        nprobe: nprobe.max(1),
        quantizer: flat(km.centroids.view()),
        direct_map: DirectMap::NoMap,
    };
    let x = x.as_standard_layout();
    let rows = x.as_slice().expect("standard layout");
    let base = match codec {
        Codec::Flat => {
            let t = Instant::now();
            let lists = ids
                .into_par_iter()
                .map(|ids| {
                    let mut codes = Vec::with_capacity(ids.len() * d);
                    for &i in &ids {
                        codes.extend_from_slice(&rows[i as usize * d..(i as usize + 1) * d]);
                    }
                    FlatList { codes, ids }
                })
                .collect::<Vec<_>>();
            stages.fill = t.elapsed().as_secs_f64();
            Index::IvfFlat(IvfFlat {
                ivf,
                size_table: SizeTable::faiss_choice(lists.iter().map(|l| l.ids.len())),
                lists,
            })
        }
        Codec::Pq4FastScan { m } => {
            let t = Instant::now();
            let pq = pq::train(backend, x.view(), m)?;
            stages.pq_train = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let codes = pq::encode_with(backend, &pq, x.view())?;
            stages.encode = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let lists = ids
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
            stages.fill = t.elapsed().as_secs_f64();
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
    };
    let t = Instant::now();
    let index = if refine {
        Index::Refine(Box::new(RefineFlat {
            is_trained: true,
            base,
            refine: flat(x.view()),
            k_factor: 1.0,
        }))
    } else {
        base
    };
    stages.refine = t.elapsed().as_secs_f64();
    Ok(Built {
        index,
        kmeans: km.iterations,
        stages,
    })
}

/// The index as `train` leaves it before `add`: trained parts, no vectors
/// (what RVC writes as its `trained_…` file).
pub fn without_vectors(index: &Index) -> Index {
    match index {
        Index::Flat(f) => Index::Flat(Flat::new(f.d, f.metric, Vec::new())),
        Index::IvfFlat(i) => Index::IvfFlat(IvfFlat {
            ivf: i.ivf.clone(),
            size_table: SizeTable::Auto,
            lists: vec![FlatList::default(); i.lists.len()],
        }),
        Index::IvfPqFastScan(i) => Index::IvfPqFastScan(IvfPqFs {
            ivf: i.ivf.clone(),
            by_residual: i.by_residual,
            bbs: i.bbs,
            implem: i.implem,
            qbs2: i.qbs2,
            pq: i.pq.clone(),
            lists: vec![BlockList::default(); i.lists.len()],
        }),
        Index::Refine(r) => Index::Refine(Box::new(RefineFlat {
            is_trained: r.is_trained,
            base: without_vectors(&r.base),
            refine: Flat::new(r.refine.d, r.refine.metric, Vec::new()),
            k_factor: r.k_factor,
        })),
    }
}
