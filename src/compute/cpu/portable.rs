//! Portable assignment kernel: the `gemm` crate (runtime-dispatched SIMD:
//! AVX2+FMA, NEON, scalar) on row block × centroid block tiles, each tile
//! reduced to a per-row running minimum (and, for `assign_top2`, the
//! second-best score) right away, so only one `ROWS × COLS` scratch tile per
//! rayon task exists.

// Register tiles read best with explicit indices; the kernels take the
// matrices as (pointer, shape) argument lists.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use rayon::prelude::*;

use super::{Scores, prepared_beta};

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
                    // SAFETY: dst is rows×cols (row stride cols) inside `tile`; lhs
                    // is xb (rows×d, row-major); rhs is cᵀ for centroids j0..j0+cols
                    // (d×cols: row stride 1, column stride d), all in bounds.
                    unsafe {
                        gemm::gemm(
                            rows,
                            cols,
                            d,
                            tile.as_mut_ptr(),
                            1,
                            cols as isize,
                            false,
                            xb.as_ptr(),
                            1,
                            d as isize,
                            c[j0 * d..].as_ptr(),
                            d as isize,
                            1,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
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
