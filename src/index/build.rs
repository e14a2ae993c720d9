//! Build any index a factory string describes, as faiss's `index_factory` +
//! `train` + `add` would: the metric passes to every sub-index, ids are row
//! numbers, lists hold ascending ids.

use ndarray::ArrayView2;

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
    let flat =
        |x: ArrayView2<f32>| Flat::new(d, metric, x.as_standard_layout().iter().copied().collect());
    let Factory::Ivf {
        nlist,
        codec,
        refine,
    } = factory
    else {
        return Ok(Built {
            index: Index::Flat(flat(x)),
            kmeans: Vec::new(),
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

    let bar = progress.bar(10, "k-means");
    let km = kmeans::train(backend, x, &KmeansParams::ivf(nlist, metric), |_| {
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    let labels = match km.final_assignment {
        Some(a) => a.labels,
        None => assign_all(backend, x, km.centroids.view(), metric, progress)?.0,
    };
    let ids = build_lists(&labels, nlist);
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
        Codec::Flat => Index::IvfFlat(IvfFlat {
            ivf,
            size_table: SizeTable::faiss_choice(ids.iter().map(Vec::len)),
            lists: ids
                .into_iter()
                .map(|ids| FlatList {
                    codes: ids
                        .iter()
                        .flat_map(|&i| &rows[i as usize * d..(i as usize + 1) * d])
                        .copied()
                        .collect(),
                    ids,
                })
                .collect(),
        }),
        Codec::Pq4FastScan { m } => {
            let pq = pq::train(backend, x.view(), m)?;
            let codes = pq::encode(&pq, x.view());
            let codes = codes.as_slice().expect("contiguous");
            let lists = ids
                .into_iter()
                .map(|ids| {
                    let list_codes: Vec<u8> = ids
                        .iter()
                        .flat_map(|&i| &codes[i as usize * m..(i as usize + 1) * m])
                        .copied()
                        .collect();
                    BlockList {
                        codes: fastscan::pq4_pack(&list_codes, m, BBS),
                        ids,
                    }
                })
                .collect();
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
    Ok(Built {
        index,
        kmeans: km.iterations,
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
