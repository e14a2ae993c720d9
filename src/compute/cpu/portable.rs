//! Portable GEMM-form kernels ([`Isa::Avx2`](super::Isa) and
//! [`Isa::Portable`]): the `gemm` crate (runtime-dispatched SIMD: AVX2+FMA,
//! NEON, scalar) on row block × column block tiles, each tile reduced right
//! away, so only one scratch tile per rayon task exists:
//!
//! * [`assign`] / [`assign_top2`]: a per-row running minimum (and the
//!   second-best score) over centroid tiles;
//! * [`knn`]: a running top-k per query over database tiles.

// Register tiles read best with explicit indices; the kernels take the
// matrices as (pointer, shape) argument lists.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use rayon::prelude::*;

use ndarray::{Array2, ArrayView2};

use super::assign::{Scores, prepared_beta};
use crate::Metric;
use crate::compute::neighbours::{Neighbours, TopK};

/// Queries per task and database rows per k-NN tile: a 64×1024 f32 tile
/// (256 KiB) stays in L2 while its scores are folded into the top-k lists.
const QB: usize = 64;
const DB: usize = 1024;

/// Centroids per GEMM tile.
const COLS: usize = 512;
/// Largest row block per task.
const MAX_ROWS: usize = 256;

pub(crate) fn assign(
    x: &[f32],
    n: usize,
    c: &[f32],
    k: usize,
    d: usize,
    scores: Scores,
    labels: &mut [u32],
    dist: &mut [f32],
) {
    let mut unused = vec![0f32; n];
    assign_impl::<false>(x, n, c, k, d, scores, labels, dist, &mut unused);
}

/// [`assign`] for L2 that also writes each row's second-best squared
/// distance (`+∞` when `k = 1`) to `second`.
pub(crate) fn assign_top2(
    x: &[f32],
    n: usize,
    c: &[f32],
    k: usize,
    d: usize,
    labels: &mut [u32],
    dist: &mut [f32],
    second: &mut [f32],
) {
    assign_impl::<true>(x, n, c, k, d, Scores::L2, labels, dist, second);
}

fn assign_impl<const TOP2: bool>(
    x: &[f32],
    n: usize,
    c: &[f32],
    k: usize,
    d: usize,
    scores: Scores,
    labels: &mut [u32],
    dist: &mut [f32],
    second: &mut [f32],
) {
    debug_assert!(x.len() == n * d && c.len() == k * d && k >= 1 && d >= 1);
    debug_assert!(second.len() == n);
    let beta = prepared_beta(c, k, d, scores);
    let alpha = scores.alpha();
    // Blocks depend on n only (not on the thread count), so the results do
    // not either: the gemm crate's rounding may depend on the block shape.
    let mc = n.div_ceil(32).clamp(16, MAX_ROWS);
    let nc = COLS.min(k);
    labels
        .par_chunks_mut(mc)
        .zip(dist.par_chunks_mut(mc))
        .zip(second.par_chunks_mut(mc))
        .enumerate()
        .for_each_init(
            || vec![0f32; mc * nc],
            |tile, (blk, ((lab, dis), sec))| {
                let r0 = blk * mc;
                let rows = lab.len();
                let xb = &x[r0 * d..(r0 + rows) * d];
                // (best score, its index, second-best score)
                let mut best = vec![(f32::INFINITY, 0u32, f32::INFINITY); rows];
                for j0 in (0..k).step_by(nc) {
                    let cols = nc.min(k - j0);
                    super::gemm::abt(rows, cols, d, xb, &c[j0 * d..], tile);
                    for (r, b) in best.iter_mut().enumerate() {
                        let line = &tile[r * cols..(r + 1) * cols];
                        for (jj, (&dot, &bt)) in line.iter().zip(&beta[j0..j0 + cols]).enumerate() {
                            let s = bt + alpha * dot;
                            if s < b.0 {
                                *b = (s, (j0 + jj) as u32, b.0);
                            } else if TOP2 && s < b.2 {
                                b.2 = s;
                            }
                        }
                    }
                }
                for (r, &(v, j, v2)) in best.iter().enumerate() {
                    let row = &xb[r * d..(r + 1) * d];
                    lab[r] = j;
                    dis[r] = scores.finish(row, v);
                    if TOP2 {
                        sec[r] = scores.finish(row, v2);
                    }
                }
            },
        );
}

/// The `k` best rows of `y` for every row of `x` under `metric`: GEMM tiles
/// with a running top-k per query, never an nq×nb matrix.
pub(crate) fn knn(
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    k: usize,
    metric: Metric,
) -> crate::Result<Neighbours> {
    let (nq, d) = x.dim();
    let nb = y.nrows();
    if y.ncols() != d {
        return Err(crate::Error::Invalid(format!(
            "knn: queries have {d} dimensions but the database rows have {}",
            y.ncols()
        )));
    }
    let x = x.as_standard_layout();
    let y = y.as_standard_layout();
    let (xs, ys) = (
        x.as_slice().expect("standard layout"),
        y.as_slice().expect("standard layout"),
    );
    let ynorm: Vec<f32> = ys
        .chunks_exact(d.max(1))
        .map(|r| r.iter().map(|v| v * v).sum())
        .take(nb)
        .collect();
    let mut ids = Array2::from_elem((nq, k), -1i64);
    let mut scores = Array2::from_elem((nq, k), metric.worst());

    let ids_s = ids.as_slice_mut().unwrap();
    let scores_s = scores.as_slice_mut().unwrap();
    ids_s
        .par_chunks_mut(QB * k.max(1))
        .zip(scores_s.par_chunks_mut(QB * k.max(1)))
        .enumerate()
        .for_each(|(b, (ids_b, scores_b))| {
            let q0 = b * QB;
            let qn = QB.min(nq - q0);
            let mut tops: Vec<TopK> = (0..qn).map(|_| TopK::new(k)).collect();
            let mut tile = vec![0f32; QB * DB];
            let mut j0 = 0;
            while j0 < nb && k > 0 {
                let jn = DB.min(nb - j0);
                // tile[i][j] = x[q0+i] · y[j0+j]
                super::gemm::abt(qn, jn, d, &xs[q0 * d..], &ys[j0 * d..], &mut tile);
                for (i, top) in tops.iter_mut().enumerate() {
                    let row = &tile[i * jn..(i + 1) * jn];
                    match metric {
                        Metric::L2 => {
                            for (j, &ip) in row.iter().enumerate() {
                                top.push(ynorm[j0 + j] - 2.0 * ip, (j0 + j) as i64);
                            }
                        }
                        Metric::InnerProduct => {
                            for (j, &ip) in row.iter().enumerate() {
                                top.push(-ip, (j0 + j) as i64);
                            }
                        }
                    }
                }
                j0 += jn;
            }
            for (i, top) in tops.iter().enumerate() {
                let xn: f32 = xs[(q0 + i) * d..(q0 + i + 1) * d]
                    .iter()
                    .map(|v| v * v)
                    .sum();
                for (r, (&key, &id)) in top.keys.iter().zip(&top.ids).enumerate() {
                    ids_b[i * k + r] = id;
                    scores_b[i * k + r] = match metric {
                        Metric::L2 => (key + xn).max(0.0),
                        Metric::InnerProduct => -key,
                    };
                }
            }
        });
    Ok(Neighbours { ids, scores })
}
