//! Search of any supported index as faiss does it. This is the one place
//! that knows index kinds; every stage runs as a backend primitive, so the
//! CPU and the GPU differ only in their kernels:
//!
//! * Flat: exact k-NN (`Backend::knn`);
//! * IVF: the coarse search (the `nprobe` nearest lists of each query:
//!   `Backend::assign` for one probe, `Backend::knn` for more), then every
//!   entry of those lists scored, exactly (IVF-Flat,
//!   `Backend::search_flat_lists`) or from per-query 8-bit look-up tables
//!   (PQ fast-scan, `Backend::search_pq_lists`);
//! * RFlat: the base index searched for `k · k_factor` candidates, which are
//!   re-ranked with exact distances (`Backend::refine`).
//!
//! Where a backend has no kernel for a list-scan stage (the GPU's cover
//! k ≤ 128, for instance) that stage runs the CPU kernel.

use std::time::Instant;

use ndarray::{Array2, ArrayView2};

use crate::compute::cpu::{Isa, list_search};
use crate::compute::{Backend, FastScan, KSUB, List, Neighbours};
use crate::faiss::{Flat, Index, Ivf};
use crate::{Error, Metric, Result};

/// Seconds spent in each search stage (summed over nested searches).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StageTimes {
    /// Coarse quantizer: the lists each query probes.
    pub coarse: f64,
    /// Look-up tables, list scans and the per-query top-k (Flat: the k-NN).
    pub scan: f64,
    /// Exact re-ranking (RFlat).
    pub refine: f64,
    /// Stages that ran the CPU kernel because the backend had none for the
    /// case (not part of `--json`).
    #[serde(skip)]
    pub cpu_fallback: Fallbacks,
}

/// Which list-scan stages fell back to the CPU kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks {
    pub scan: bool,
    pub refine: bool,
}

/// Candidates an RFlat index takes from its base index for `k` results
/// (faiss: `k_base = idx_t(k * k_factor)`), never fewer than `k`.
pub fn k_base(k: usize, k_factor: f32) -> usize {
    ((k as f32 * k_factor) as usize).max(k)
}

/// Lists probed: the caller's `nprobe`, else the index's own, clamped to
/// `1..=nlist` as faiss clamps it (a file may store any 64-bit value).
pub fn nprobe_of(ivf: &Ivf, nprobe: Option<usize>) -> usize {
    let nlist = ivf.quantizer.ntotal();
    nprobe.unwrap_or(ivf.nprobe).clamp(1, nlist.max(1))
}

/// The lists each query probes, nearest first (-1 where there are no
/// lists). One probe is a plain assignment (`Backend::assign`, ties to the
/// lower list as faiss's coarse search), more a k-NN over the centroids.
pub fn coarse(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    nprobe: usize,
    metric: Metric,
) -> Result<Array2<i64>> {
    let nq = queries.nrows();
    if centroids.nrows() == 0 {
        return Ok(Array2::from_elem((nq, 1), -1));
    }
    let nprobe = nprobe.min(centroids.nrows());
    if nprobe <= 1 {
        let a = backend.assign(queries, centroids, metric)?;
        let labels = a.labels.into_iter().map(i64::from).collect();
        return Ok(Array2::from_shape_vec((nq, 1), labels).expect("one label per query"));
    }
    Ok(backend
        .knn(queries, centroids, nprobe.min(centroids.nrows()), metric)?
        .ids)
}

/// Search any supported index. `nprobe` overrides the stored value.
pub fn search_index(
    backend: &dyn Backend,
    index: &Index,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: Option<usize>,
) -> Result<Neighbours> {
    search_index_timed(
        backend,
        index,
        queries,
        k,
        nprobe,
        &mut StageTimes::default(),
    )
}

/// [`search_index`], adding the seconds of each stage to `times`.
pub fn search_index_timed(
    backend: &dyn Backend,
    index: &Index,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: Option<usize>,
    times: &mut StageTimes,
) -> Result<Neighbours> {
    if queries.ncols() != index.d() {
        return Err(Error::Invalid(format!(
            "queries have {} columns but the index holds {}-dimensional vectors",
            queries.ncols(),
            index.d()
        )));
    }
    let metric = index.metric();
    let nq = queries.nrows();
    if k == 0 {
        return Ok(Neighbours {
            ids: Array2::from_elem((nq, 0), -1),
            scores: Array2::from_elem((nq, 0), metric.worst()),
        });
    }
    let isa = Isa::detected();
    match index {
        Index::Flat(f) => {
            let t = Instant::now();
            let found = backend.knn(queries, rows(f)?, k, metric);
            times.scan += t.elapsed().as_secs_f64();
            found
        }
        Index::IvfFlat(ix) => {
            let probes = timed_coarse(backend, &ix.ivf, queries, nprobe, metric, times)?;
            let lists: Vec<List<'_, f32>> = ix
                .lists
                .iter()
                .map(|l| List {
                    ids: &l.ids,
                    codes: &l.codes,
                })
                .collect();
            let t = Instant::now();
            let found = backend
                .search_flat_lists(queries, &lists, probes.view(), k, metric)
                .unwrap_or_else(|| {
                    times.cpu_fallback.scan = true;
                    list_search::search_flat_lists(
                        isa,
                        queries,
                        &lists,
                        probes.view(),
                        k,
                        metric,
                        None,
                    )
                });
            times.scan += t.elapsed().as_secs_f64();
            found
        }
        Index::IvfPqFastScan(ix) => {
            if ix.by_residual {
                return Err(Error::Unsupported(
                    "searching residual fast-scan PQ (x4fsr) indexes".into(),
                ));
            }
            if ix.pq.ksub() != KSUB {
                return Err(Error::Unsupported(format!(
                    "searching fast-scan PQ with {}-bit codes",
                    ix.pq.nbits
                )));
            }
            let codebooks =
                ArrayView2::from_shape((ix.pq.m * KSUB, ix.pq.dsub()), &ix.pq.centroids)
                    .map_err(|e| Error::Invalid(format!("PQ codebooks: {e}")))?;
            let layout = FastScan {
                m: ix.pq.m,
                bbs: ix.bbs,
            };
            let probes = timed_coarse(backend, &ix.ivf, queries, nprobe, metric, times)?;
            let lists: Vec<List<'_, u8>> = ix
                .lists
                .iter()
                .map(|l| List {
                    ids: &l.ids,
                    codes: &l.codes,
                })
                .collect();
            let t = Instant::now();
            let found = backend
                .search_pq_lists(queries, codebooks, layout, &lists, probes.view(), k, metric)
                .unwrap_or_else(|| {
                    times.cpu_fallback.scan = true;
                    list_search::search_pq_lists(
                        isa,
                        queries,
                        codebooks,
                        layout,
                        &lists,
                        probes.view(),
                        k,
                        metric,
                        None,
                    )
                });
            times.scan += t.elapsed().as_secs_f64();
            found
        }
        Index::Refine(r) => {
            let kb = k_base(k, r.k_factor);
            let cand = search_index_timed(backend, &r.base, queries, kb, nprobe, times)?;
            let vectors = rows(&r.refine)?;
            let t = Instant::now();
            let found = backend
                .refine(queries, vectors, cand.ids.view(), k, metric)
                .unwrap_or_else(|| {
                    times.cpu_fallback.refine = true;
                    list_search::refine(isa, queries, vectors, cand.ids.view(), k, metric)
                });
            times.refine += t.elapsed().as_secs_f64();
            found
        }
    }
}

/// The coarse search of an IVF index, its seconds added to `times`.
fn timed_coarse(
    backend: &dyn Backend,
    ivf: &Ivf,
    queries: ArrayView2<f32>,
    nprobe: Option<usize>,
    metric: Metric,
    times: &mut StageTimes,
) -> Result<Array2<i64>> {
    if !ivf.is_trained {
        return Err(Error::Invalid(
            "the index is not trained (it holds no coarse centroids): train it before searching"
                .into(),
        ));
    }
    let t = Instant::now();
    let centroids = rows(&ivf.quantizer)?;
    let probes = coarse(backend, centroids, queries, nprobe_of(ivf, nprobe), metric);
    times.coarse += t.elapsed().as_secs_f64();
    probes
}

/// The stored vectors of a flat index as a matrix.
fn rows(f: &Flat) -> Result<ArrayView2<'_, f32>> {
    ArrayView2::from_shape((f.ntotal(), f.d), &f.xb)
        .map_err(|e| Error::Invalid(format!("flat index of {} vectors: {e}", f.ntotal())))
}
