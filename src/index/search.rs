//! IVF search as faiss does it: the `nprobe` nearest lists of each query by
//! the coarse quantizer, then every entry of those lists scored — exactly
//! (IVF-Flat) or from a per-query look-up table of sub-quantizer scores
//! (PQ) — into a top-k; optionally `k·k_factor` PQ candidates re-ranked with
//! exact distances (RFlat).

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::pq::{KSUB, Pq4};
use crate::compute::Backend;
use crate::compute::knn::{Neighbours, TopK, collect};
use crate::{Metric, Result};

/// One inverted list: ids and, for IVF-Flat, the raw vectors (len·d floats)
/// or, for PQ, one code per sub-quantizer (len·M bytes).
pub struct List<'a, T> {
    pub ids: &'a [i64],
    pub codes: &'a [T],
}

#[inline]
fn key(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        Metric::InnerProduct => -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
    }
}

/// The lists each query probes, nearest first.
pub fn coarse(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    nprobe: usize,
    metric: Metric,
) -> Result<Array2<i64>> {
    Ok(backend
        .knn(
            queries,
            centroids,
            nprobe.min(centroids.nrows()).max(1),
            metric,
        )?
        .ids)
}

/// Search IVF-Flat lists.
pub fn search_flat(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    lists: &[List<'_, f32>],
    metric: Metric,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: usize,
) -> Result<Neighbours> {
    let d = queries.ncols();
    let probes = coarse(backend, centroids, queries, nprobe, metric)?;
    let queries = queries.as_standard_layout();
    let tops: Vec<TopK> = (0..queries.nrows())
        .into_par_iter()
        .map(|i| {
            let q = &queries.as_slice().unwrap()[i * d..(i + 1) * d];
            let mut top = TopK::new(k);
            for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
                let list = &lists[l as usize];
                for (j, &id) in list.ids.iter().enumerate() {
                    top.push(key(metric, q, &list.codes[j * d..(j + 1) * d]), id);
                }
            }
            top
        })
        .collect();
    Ok(collect(&tops, k, metric))
}

/// Per-query look-up table `[m][16]` of sub-quantizer scores ("smaller is
/// better" keys: squared distances, or negated inner products).
pub fn lut(pq: &Pq4, q: &[f32], metric: Metric) -> Vec<f32> {
    let ds = pq.dsub();
    let mut t = vec![0f32; pq.m * KSUB];
    for sq in 0..pq.m {
        let qs = &q[sq * ds..(sq + 1) * ds];
        for c in 0..KSUB {
            t[sq * KSUB + c] = key(metric, qs, pq.centroid(sq, c));
        }
    }
    t
}

/// Search PQ lists; with `refine` (the raw vectors by id), `k·k_factor`
/// candidates are re-ranked with exact scores.
#[allow(clippy::too_many_arguments)]
pub fn search_pq(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    pq: &Pq4,
    lists: &[List<'_, u8>],
    metric: Metric,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: usize,
    refine: Option<(ArrayView2<f32>, f32)>,
) -> Result<Neighbours> {
    let d = queries.ncols();
    let m = pq.m;
    let kc = match refine {
        Some((_, f)) => ((k as f32 * f) as usize).max(k),
        None => k,
    };
    let probes = coarse(backend, centroids, queries, nprobe, metric)?;
    let queries = queries.as_standard_layout();
    let tops: Vec<TopK> = (0..queries.nrows())
        .into_par_iter()
        .map(|i| {
            let q = &queries.as_slice().unwrap()[i * d..(i + 1) * d];
            let t = lut(pq, q, metric);
            let mut cand = TopK::new(kc);
            for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
                let list = &lists[l as usize];
                for (j, &id) in list.ids.iter().enumerate() {
                    let codes = &list.codes[j * m..(j + 1) * m];
                    let s: f32 = codes
                        .iter()
                        .enumerate()
                        .map(|(sq, &c)| t[sq * KSUB + c as usize])
                        .sum();
                    cand.push(s, id);
                }
            }
            match refine {
                None => cand,
                Some((raw, _)) => {
                    let mut top = TopK::new(k);
                    for &id in &cand.ids {
                        let v = raw.row(id as usize);
                        let v = v.as_slice().expect("refine vectors are contiguous");
                        top.push(key(metric, q, v), id);
                    }
                    top
                }
            }
        })
        .collect();
    Ok(collect(&tops, k, metric))
}
