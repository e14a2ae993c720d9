//! IVF search as faiss does it: the `nprobe` nearest lists of each query by
//! the coarse quantizer, then every entry of those lists scored — exactly
//! (IVF-Flat) or from a per-query look-up table of sub-quantizer scores
//! (PQ) — into a top-k; optionally `k·k_factor` PQ candidates re-ranked with
//! exact distances (RFlat).

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::pq::KSUB;
use crate::compute::Backend;
use crate::compute::knn::{Neighbours, TopK, collect};
use crate::faiss::ProductQuantizer;
use crate::faiss::{Index, Ivf};
use crate::{Error, Metric, Result};

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

/// `f(i, query_i)` for every query in parallel.
fn per_query(queries: ArrayView2<f32>, f: impl Fn(usize, &[f32]) -> TopK + Sync) -> Vec<TopK> {
    let d = queries.ncols();
    let queries = queries.as_standard_layout();
    let all = queries.as_slice().expect("standard layout");
    (0..queries.nrows())
        .into_par_iter()
        .map(|i| f(i, &all[i * d..(i + 1) * d]))
        .collect()
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
    let tops = per_query(queries, |i, q| {
        let mut top = TopK::new(k);
        for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
            let list = &lists[l as usize];
            for (j, &id) in list.ids.iter().enumerate() {
                top.push(key(metric, q, &list.codes[j * d..(j + 1) * d]), id);
            }
        }
        top
    });
    Ok(collect(&tops, k, metric))
}

/// Per-query look-up table `[m][16]` of sub-quantizer scores ("smaller is
/// better" keys: squared distances, or negated inner products).
pub fn lut(pq: &ProductQuantizer, q: &[f32], metric: Metric) -> Vec<f32> {
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

/// faiss's 8-bit look-up table for non-residual fast-scan search
/// (`quantize_LUT_and_bias` without bias): per sub-quantizer the minimum is
/// subtracted, one scale `a` keeps every entry ≤ 255 and every sum ≤ 65535,
/// entries are rounded; a distance is `b + Σ entries / a`.
pub struct QuantizedLut {
    pub table: Vec<u16>,
    pub a: f32,
    pub b: f32,
}

pub fn quantize_lut(t: &[f32], m: usize) -> QuantizedLut {
    let rows: Vec<&[f32]> = t.chunks_exact(KSUB).take(m).collect();
    let mins: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().copied().fold(f32::INFINITY, f32::min))
        .collect();
    let (mut span_lut, mut span_dis, mut b) = (f32::NEG_INFINITY, 0f32, 0f32);
    for (r, &mn) in rows.iter().zip(&mins) {
        let span = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) - mn;
        span_lut = span_lut.max(span);
        span_dis += span;
        b += mn;
    }
    let pick = |span: f32, top: f32| {
        if span > 0.0 {
            top / span
        } else {
            f32::INFINITY
        }
    };
    let mut a = pick(span_lut, 255.0).min(pick(span_dis, 65535.0));
    if !a.is_finite() {
        a = 0.0;
    }
    let table = rows
        .iter()
        .zip(&mins)
        .flat_map(|(r, &mn)| r.iter().map(move |&v| ((v - mn) * a + 0.5).floor() as u16))
        .collect();
    QuantizedLut { table, a, b }
}

/// Search 4-bit fast-scan lists (`codes` = the packed blocks of `bbs`
/// entries) as faiss does: scores from the 8-bit quantised table, so the
/// candidates and distances are faiss's up to float rounding of the table.
#[allow(clippy::too_many_arguments)]
pub fn search_pq(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    pq: &ProductQuantizer,
    bbs: usize,
    lists: &[List<'_, u8>],
    metric: Metric,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: usize,
) -> Result<Neighbours> {
    let probes = coarse(backend, centroids, queries, nprobe, metric)?;
    let tops = per_query(queries, |i, q| {
        // faiss quantises the table of distances (L2) or of inner products (IP).
        let mut t = lut(pq, q, metric);
        if metric == Metric::InnerProduct {
            t.iter_mut().for_each(|v| *v = -*v);
        }
        let ql = quantize_lut(&t, pq.m);
        let mut top = TopK::new(k);
        for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
            let list = &lists[l as usize];
            scan_blocks(
                &ql.table,
                pq.m,
                bbs,
                list.codes,
                list.ids.len(),
                |e, acc| {
                    // Larger inner products are better: rank by -acc.
                    let key = if metric == Metric::L2 {
                        acc as f32
                    } else {
                        -(acc as f32)
                    };
                    top.push_by_id(key, list.ids[e], metric == Metric::InnerProduct);
                },
            );
        }
        let inv_a = if ql.a > 0.0 { 1.0 / ql.a } else { 0.0 };
        top.keys.iter_mut().for_each(|key| {
            let dist = ql.b + key.abs() * inv_a;
            // `collect` turns keys back into scores (negating for IP).
            *key = if metric == Metric::L2 { dist } else { -dist };
        });
        top
    });
    Ok(collect(&tops, k, metric))
}

/// Sum the table entries of every entry of packed fast-scan blocks (layout:
/// faiss `pq4_pack_codes`, see `faiss::fastscan`), calling `emit(entry, score)`.
fn scan_blocks(
    t: &[u16],
    m: usize,
    bbs: usize,
    packed: &[u8],
    n: usize,
    mut emit: impl FnMut(usize, u32),
) {
    // Byte j of a 16-byte half holds entries PERM[j] (low nibble) and PERM[j] + 16.
    const PERM: [usize; 16] = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];
    let m2 = m + (m & 1);
    let block = bbs * m2 / 2;
    let mut acc = [0u32; 32];
    for b in 0..n.div_ceil(bbs) {
        for g in 0..bbs / 32 {
            let first = b * bbs + g * 32;
            if first >= n {
                break;
            }
            acc.fill(0);
            for p in 0..m2 / 2 {
                let chunk = &packed[b * block + p * bbs + g * 32..][..32];
                let (t0, t1) = (
                    &t[2 * p * KSUB..][..KSUB],
                    t.get((2 * p + 1) * KSUB..(2 * p + 2) * KSUB),
                );
                for (j, &e) in PERM.iter().enumerate() {
                    let (lo, hi) = (chunk[j], chunk[16 + j]);
                    acc[e] += t0[(lo & 15) as usize] as u32;
                    acc[e + 16] += t0[(lo >> 4) as usize] as u32;
                    // With odd M the last slot is padding (code 0, no table).
                    if let Some(t1) = t1 {
                        acc[e] += t1[(hi & 15) as usize] as u32;
                        acc[e + 16] += t1[(hi >> 4) as usize] as u32;
                    }
                }
            }
            for (u, &s) in acc.iter().enumerate().take(n - first) {
                emit(first + u, s);
            }
        }
    }
}

fn quantizer(ivf: &Ivf) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((ivf.quantizer.ntotal(), ivf.d), &ivf.quantizer.xb)
        .expect("quantizer shape")
}

/// Search any supported index. `nprobe` overrides the stored value.
pub fn search_index(
    backend: &dyn Backend,
    index: &Index,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: Option<usize>,
) -> Result<Neighbours> {
    if queries.ncols() != index.d() {
        return Err(Error::Invalid(format!(
            "queries have {} columns but the index holds {}-dimensional vectors",
            queries.ncols(),
            index.d()
        )));
    }
    if let Some(found) = backend.search_index(index, queries, k, nprobe) {
        return found;
    }
    let metric = index.metric();
    match index {
        Index::Flat(f) => {
            let xb = ArrayView2::from_shape((f.ntotal(), f.d), &f.xb).expect("flat shape");
            backend.knn(queries, xb, k, metric)
        }
        Index::IvfFlat(ix) => {
            let lists: Vec<List<'_, f32>> = ix
                .lists
                .iter()
                .map(|l| List {
                    ids: &l.ids,
                    codes: &l.codes,
                })
                .collect();
            search_flat(
                backend,
                quantizer(&ix.ivf),
                &lists,
                metric,
                queries,
                k,
                nprobe.unwrap_or(ix.ivf.nprobe),
            )
        }
        Index::IvfPqFastScan(ix) => {
            if ix.by_residual {
                return Err(Error::Unsupported(
                    "searching residual fast-scan PQ (x4fsr) indexes".into(),
                ));
            }
            let lists: Vec<List<'_, u8>> = ix
                .lists
                .iter()
                .map(|l| List {
                    ids: &l.ids,
                    codes: &l.codes,
                })
                .collect();
            let np = nprobe.unwrap_or(ix.ivf.nprobe);
            search_pq(
                backend,
                quantizer(&ix.ivf),
                &ix.pq,
                ix.bbs,
                &lists,
                metric,
                queries,
                k,
                np,
            )
        }
        Index::Refine(r) => {
            // faiss: k_base = idx_t(k * k_factor).
            let kb = ((k as f32 * r.k_factor) as usize).max(k);
            let cand = search_index(backend, &r.base, queries, kb, nprobe)?;
            let tops = per_query(queries, |i, q| {
                let mut top = TopK::new(k);
                for &id in cand.ids.row(i).iter().filter(|&&id| id >= 0) {
                    top.push(key(metric, q, r.refine.vector(id as usize)), id);
                }
                top
            });
            Ok(collect(&tops, k, metric))
        }
    }
}
