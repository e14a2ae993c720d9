//! Scalar references of the PQ table and list-scan primitives: one query at
//! a time, every probed list in probe order, sums in the plainest order.
//! The SIMD kernels of `cpu::{flat_scan, pq_tables, pq_scan}` and the GPU's
//! `list_scan` are tested against these.

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::Metric;
use crate::Result;
use crate::compute::lists::{FastScan, KSUB, List, PERM, PqTables, check_lists};
use crate::compute::neighbours::{Neighbours, TopK, collect};

/// "Smaller is better" key of one row: Σ (x − y)² or −Σ x·y, summed in order.
pub fn flat_key(metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    match metric {
        Metric::L2 => x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum(),
        Metric::InnerProduct => -x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>(),
    }
}

/// `f(i, query_i)` for every query in parallel.
pub(crate) fn per_query(
    queries: ArrayView2<f32>,
    f: impl Fn(usize, &[f32]) -> TopK + Sync,
) -> Vec<TopK> {
    let d = queries.ncols();
    let queries = queries.as_standard_layout();
    let all = queries.as_slice().expect("standard layout");
    (0..queries.nrows())
        .into_par_iter()
        .map(|i| f(i, &all[i * d..(i + 1) * d]))
        .collect()
}

/// `Backend::search_flat_lists`, one query at a time.
pub fn search_flat_lists(
    queries: ArrayView2<f32>,
    lists: &[List<'_, f32>],
    probes: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    let d = queries.ncols();
    check_lists("flat list search", queries.nrows(), lists, probes, |n| {
        n * d
    })?;
    let tops = per_query(queries, |i, q| {
        let mut top = TopK::new(k);
        for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
            let list = &lists[l as usize];
            for (j, &id) in list.ids.iter().enumerate() {
                top.push(flat_key(metric, q, &list.codes[j * d..(j + 1) * d]), id);
            }
        }
        top
    });
    Ok(collect(&tops, k, metric))
}

/// Per-query look-up table `[m][16]` of sub-quantizer scores ("smaller is
/// better" keys: squared distances, or negated inner products) against
/// `codebooks` (`(m·16) × dsub`).
pub fn lut(codebooks: ArrayView2<f32>, m: usize, q: &[f32], metric: Metric) -> Vec<f32> {
    let ds = codebooks.ncols();
    let mut t = vec![0f32; m * KSUB];
    for sq in 0..m {
        let qs = &q[sq * ds..(sq + 1) * ds];
        for c in 0..KSUB {
            let row = codebooks.row(sq * KSUB + c);
            let cen: Vec<f32> = row.iter().copied().collect();
            t[sq * KSUB + c] = flat_key(metric, qs, &cen);
        }
    }
    t
}

/// faiss's 8-bit look-up table for non-residual fast-scan search
/// (`quantize_LUT_and_bias` without bias), as wide integers: per
/// sub-quantizer the minimum is subtracted, one scale `a` keeps every entry
/// ≤ 255 and every sum ≤ 65535, entries are rounded; a distance is
/// `b + Σ entries / a`.
pub struct QuantizedLut {
    pub table: Vec<u16>,
    pub a: f32,
    pub b: f32,
}

/// Quantise the `m × 16` table `t` (scores, larger = farther).
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

/// The quantised table faiss searches query `q` with: of distances (L2) or
/// of inner products (IP).
pub fn query_table(
    codebooks: ArrayView2<f32>,
    m: usize,
    q: &[f32],
    metric: Metric,
) -> QuantizedLut {
    let mut t = lut(codebooks, m, q, metric);
    if metric == Metric::InnerProduct {
        t.iter_mut().for_each(|v| *v = -*v);
    }
    quantize_lut(&t, m)
}

/// `Backend::pq_tables`, one query at a time, in the [`PqTables`] layout.
pub fn pq_tables(
    queries: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    m: usize,
    metric: Metric,
) -> Result<PqTables> {
    crate::compute::cpu::pq_assign::check("pq_tables", queries.ncols(), codebooks, m, KSUB)?;
    let m2 = m + (m & 1);
    let mut out = PqTables {
        m,
        m2,
        ..Default::default()
    };
    for q in queries.rows() {
        let q: Vec<f32> = q.iter().copied().collect();
        let ql = query_table(codebooks, m, &q, metric);
        let mut bytes = vec![0u8; m2 * KSUB];
        for (o, &v) in bytes.iter_mut().zip(&ql.table) {
            *o = v.min(255) as u8;
        }
        out.luts.extend_from_slice(&bytes);
        out.a.push(ql.a);
        out.b.push(ql.b);
    }
    Ok(out)
}

/// Sum the table entries of every entry of packed fast-scan blocks, calling
/// `emit(entry, sum)`.
fn scan_blocks(
    t: &[u16],
    layout: FastScan,
    packed: &[u8],
    n: usize,
    mut emit: impl FnMut(usize, u32),
) {
    let (m2, bbs) = (layout.m2(), layout.bbs);
    let block = layout.block_bytes();
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

/// `Backend::search_pq_lists`, one query at a time (any block size that is
/// a multiple of 32, any id).
pub fn search_pq_lists(
    queries: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    layout: FastScan,
    lists: &[List<'_, u8>],
    probes: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    let m = layout.m;
    crate::compute::cpu::pq_assign::check(
        "fast-scan list search",
        queries.ncols(),
        codebooks,
        m,
        KSUB,
    )?;
    check_lists(
        "fast-scan list search",
        queries.nrows(),
        lists,
        probes,
        |n| layout.packed_len(n),
    )?;
    let tops = per_query(queries, |i, q| {
        let ql = query_table(codebooks, m, q, metric);
        let mut top = TopK::new(k);
        for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
            let list = &lists[l as usize];
            scan_blocks(&ql.table, layout, list.codes, list.ids.len(), |e, acc| {
                // Larger inner products are better: rank by -acc.
                let key = if metric == Metric::L2 {
                    acc as f32
                } else {
                    -(acc as f32)
                };
                top.push_by_id(key, list.ids[e], metric == Metric::InnerProduct);
            });
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

/// `Backend::refine`, candidate by candidate.
pub fn refine(
    queries: ArrayView2<f32>,
    vectors: ArrayView2<f32>,
    candidates: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    crate::compute::cpu::list_search::check_refine(queries, vectors, candidates)?;
    let tops = per_query(queries, |i, q| {
        let mut top = TopK::new(k);
        for &id in candidates.row(i).iter().filter(|&&id| id >= 0) {
            let v: Vec<f32> = vectors.row(id as usize).iter().copied().collect();
            top.push(flat_key(metric, q, &v), id);
        }
        top
    });
    Ok(collect(&tops, k, metric))
}
