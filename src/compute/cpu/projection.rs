//! A data-fitted orthonormal basis for dimension pruning (see `pruned.rs`):
//! the leading principal directions of a sample of the rows, found in f64
//! by subspace iteration on the sample covariance, and the projection of
//! rows onto them.
//!
//! Nothing here needs to be accurate for the pruned assignment to be exact:
//! any orthonormal basis gives valid bounds; a basis that captures more of
//! the spread only prunes more. It must be orthonormal to f64 precision and
//! deterministic, which it is (fixed sample, fixed start, fixed blocking).

use ndarray::ArrayView2;
use rayon::prelude::*;

/// Leading dimensions the pruned first pass may use.
pub const M_CHOICES: [usize; 4] = [16, 32, 48, 64];
/// Width of a projection (the largest choice).
pub const M_MAX: usize = 64;
/// Rows the covariance is estimated from.
const FIT_ROWS: usize = 2048;
/// Subspace iterations (each one a `d × d × m` product).
const ITERATIONS: usize = 8;
/// Rows per projection task.
const BLOCK: usize = 512;

/// An orthonormal `d × m` basis and the centre the rows are taken from.
#[derive(Clone)]
pub struct Projection {
    pub d: usize,
    pub m: usize,
    pub mean: Vec<f64>,
    /// Row-major `d × m`.
    pub q: Vec<f64>,
}

/// Rows in projected form.
pub struct Projected {
    pub n: usize,
    pub m: usize,
    /// Row-major `n × m`: the coordinates `(x − mean)·q` rounded to f32.
    pub lead: Vec<f32>,
    /// Row-major `n × M_CHOICES.len()`: for each choice `mc`, the norm of
    /// what the first `mc` coordinates leave out, `√(‖x − mean‖² − Σ_{i<mc} lead_i²)`,
    /// from the f64 coordinates.
    pub tail: Vec<f32>,
    /// `‖x − mean‖²`.
    pub norm2: Vec<f64>,
}

/// `dst (r × c) = a (r × k) · b (k × c)`, all row-major f64 with the given
/// row strides, on this thread.
fn gemm64(r: usize, c: usize, k: usize, dst: &mut [f64], a: &[f64], a_rs: usize, b: &[f64]) {
    debug_assert!(dst.len() >= r * c && a.len() >= (r.max(1) - 1) * a_rs + k);
    // SAFETY: dst is r×c (row stride c), a is r×k (row stride a_rs), b is k×c
    // (row stride c), all inside the slices checked above.
    unsafe {
        gemm::gemm(
            r,
            c,
            k,
            dst.as_mut_ptr(),
            1,
            c as isize,
            false,
            a.as_ptr(),
            1,
            a_rs as isize,
            b.as_ptr(),
            1,
            c as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Modified Gram–Schmidt, twice, on the columns of `q` (`d × m`, row-major).
/// A column that vanishes is replaced by a unit vector orthogonal to the others.
fn orthonormalise(q: &mut [f64], d: usize, m: usize) {
    for _ in 0..2 {
        for j in 0..m {
            for i in 0..j {
                let dot: f64 = (0..d).map(|r| q[r * m + i] * q[r * m + j]).sum();
                for r in 0..d {
                    q[r * m + j] -= dot * q[r * m + i];
                }
            }
            let mut norm = (0..d).map(|r| q[r * m + j].powi(2)).sum::<f64>().sqrt();
            if norm < 1e-150 {
                // Degenerate data: start over from a coordinate axis.
                for r in 0..d {
                    q[r * m + j] = if r == j { 1.0 } else { 0.0 };
                }
                for i in 0..j {
                    let dot = q[j * m + i];
                    for r in 0..d {
                        q[r * m + j] -= dot * q[r * m + i];
                    }
                }
                norm = (0..d).map(|r| q[r * m + j].powi(2)).sum::<f64>().sqrt();
            }
            for r in 0..d {
                q[r * m + j] /= norm;
            }
        }
    }
}

/// Eigenvectors of the symmetric `m × m` matrix `h` (cyclic Jacobi), as the
/// columns of a row-major matrix, ordered by decreasing eigenvalue.
fn symmetric_eigenvectors(mut h: Vec<f64>, m: usize) -> Vec<f64> {
    let mut v = vec![0f64; m * m];
    for i in 0..m {
        v[i * m + i] = 1.0;
    }
    for _sweep in 0..30 {
        let off: f64 = (0..m)
            .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| h[i * m + j].powi(2))
            .sum();
        let diag: f64 = (0..m).map(|i| h[i * m + i].powi(2)).sum();
        if off <= 1e-30 * diag.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = h[p * m + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (h[q * m + q] - h[p * m + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..m {
                    let (hkp, hkq) = (h[k * m + p], h[k * m + q]);
                    h[k * m + p] = c * hkp - s * hkq;
                    h[k * m + q] = s * hkp + c * hkq;
                }
                for k in 0..m {
                    let (hpk, hqk) = (h[p * m + k], h[q * m + k]);
                    h[p * m + k] = c * hpk - s * hqk;
                    h[q * m + k] = s * hpk + c * hqk;
                }
                for k in 0..m {
                    let (vkp, vkq) = (v[k * m + p], v[k * m + q]);
                    v[k * m + p] = c * vkp - s * vkq;
                    v[k * m + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| h[b * m + b].total_cmp(&h[a * m + a]).then(a.cmp(&b)));
    let mut out = vec![0f64; m * m];
    for r in 0..m {
        for (jn, &jo) in order.iter().enumerate() {
            out[r * m + jn] = v[r * m + jo];
        }
    }
    out
}

impl Projection {
    /// Fit to the rows of `x` (`n × d`, `n ≥ 1`): the `min(M_MAX, d)`
    /// leading principal directions of an evenly spaced sample.
    pub fn fit(x: ArrayView2<f32>) -> Projection {
        let (n, d) = x.dim();
        let m = M_MAX.min(d);
        let s = n.clamp(1, FIT_ROWS);
        let rows: Vec<usize> = (0..s).map(|i| i * n / s).collect();
        let mut mean = vec![0f64; d];
        for &r in &rows {
            for (a, &v) in mean.iter_mut().zip(x.row(r)) {
                *a += v as f64;
            }
        }
        mean.iter_mut().for_each(|v| *v /= s as f64);
        // Centred sample, transposed (d × s), so the covariance is one product.
        let mut xt = vec![0f64; d * s];
        for (i, &r) in rows.iter().enumerate() {
            for (j, &v) in x.row(r).iter().enumerate() {
                xt[j * s + i] = v as f64 - mean[j];
            }
        }
        // cov = xt · xtᵀ, by blocks of rows (deterministic whatever the threads).
        let mut x_rows = vec![0f64; s * d];
        for j in 0..d {
            for i in 0..s {
                x_rows[i * d + j] = xt[j * s + i];
            }
        }
        let mut cov = vec![0f64; d * d];
        cov.par_chunks_mut(32 * d).enumerate().for_each(|(b, out)| {
            let r = out.len() / d;
            gemm64(r, d, s, out, &xt[b * 32 * s..], s, &x_rows);
        });
        drop((xt, x_rows));
        // Subspace iteration from a fixed pseudo-random start.
        let mut q = vec![0f64; d * m];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for v in q.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *v = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        }
        orthonormalise(&mut q, d, m);
        let mut y = vec![0f64; d * m];
        for _ in 0..ITERATIONS {
            gemm64(d, m, d, &mut y, &cov, d, &q);
            std::mem::swap(&mut q, &mut y);
            orthonormalise(&mut q, d, m);
        }
        // Rayleigh–Ritz: order the basis by variance.
        gemm64(d, m, d, &mut y, &cov, d, &q);
        let mut h = vec![0f64; m * m];
        for i in 0..m {
            for j in 0..m {
                h[i * m + j] = (0..d).map(|r| q[r * m + i] * y[r * m + j]).sum();
            }
        }
        for i in 0..m {
            for j in 0..i {
                let a = 0.5 * (h[i * m + j] + h[j * m + i]);
                h[i * m + j] = a;
                h[j * m + i] = a;
            }
        }
        let v = symmetric_eigenvectors(h, m);
        let mut rotated = vec![0f64; d * m];
        gemm64(d, m, m, &mut rotated, &q, m, &v);
        orthonormalise(&mut rotated, d, m);
        Projection {
            d,
            m,
            mean,
            q: rotated,
        }
    }

    /// The choices of leading dimensions this projection offers (below `d`).
    pub fn choices(&self) -> Vec<usize> {
        M_CHOICES
            .iter()
            .copied()
            .filter(|&c| c <= self.m && c < self.d)
            .collect()
    }

    /// Project the rows of `x` (`n × d`).
    pub fn project(&self, x: ArrayView2<f32>) -> Projected {
        let (n, d) = x.dim();
        assert_eq!(d, self.d, "projection fitted to another dimension");
        let m = self.m;
        let nc = M_CHOICES.len();
        let mut lead = vec![0f32; n * m];
        let mut tail = vec![0f32; n * nc];
        let mut norm2 = vec![0f64; n];
        lead.par_chunks_mut(BLOCK * m)
            .zip(tail.par_chunks_mut(BLOCK * nc))
            .zip(norm2.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(b, ((lead, tail), norm2))| {
                let r0 = b * BLOCK;
                let rows = norm2.len();
                let mut xc = vec![0f64; rows * d];
                for r in 0..rows {
                    let src = x.row(r0 + r);
                    let dst = &mut xc[r * d..(r + 1) * d];
                    for ((o, &v), &mu) in dst.iter_mut().zip(src.iter()).zip(&self.mean) {
                        *o = v as f64 - mu;
                    }
                    norm2[r] = dst.iter().map(|v| v * v).sum();
                }
                let mut y = vec![0f64; rows * m];
                gemm64(rows, m, d, &mut y, &xc, d, &self.q);
                for r in 0..rows {
                    let yr = &y[r * m..(r + 1) * m];
                    for (o, &v) in lead[r * m..(r + 1) * m].iter_mut().zip(yr) {
                        *o = v as f32;
                    }
                    let mut acc = 0f64;
                    let mut done = 0;
                    for (ci, &mc) in M_CHOICES.iter().enumerate() {
                        let upto = mc.min(m);
                        acc += yr[done..upto].iter().map(|v| v * v).sum::<f64>();
                        done = upto;
                        tail[r * nc + ci] = (norm2[r] - acc).max(0.0).sqrt() as f32;
                    }
                }
            });
        Projected {
            n,
            m,
            lead,
            tail,
            norm2,
        }
    }
}

impl Projected {
    /// The rows `idx` of this set, in that order.
    pub fn select(&self, idx: &[usize]) -> Projected {
        let (m, nc) = (self.m, M_CHOICES.len());
        let mut out = Projected {
            n: idx.len(),
            m,
            lead: Vec::with_capacity(idx.len() * m),
            tail: Vec::with_capacity(idx.len() * nc),
            norm2: Vec::with_capacity(idx.len()),
        };
        for &i in idx {
            out.lead.extend_from_slice(&self.lead[i * m..(i + 1) * m]);
            out.tail.extend_from_slice(&self.tail[i * nc..(i + 1) * nc]);
            out.norm2.push(self.norm2[i]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_is_orthonormal_and_ordered() {
        // Rows spread mostly along three directions.
        let (n, d) = (500, 40);
        let mut state = 7u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f32 / (1u64 << 31) as f32 - 0.5
        };
        let x = ndarray::Array2::from_shape_fn((n, d), |(_, j)| {
            let scale = match j {
                5 => 50.0,
                17 => 20.0,
                30 => 8.0,
                _ => 0.1,
            };
            scale * rnd() + 3.0
        });
        let p = Projection::fit(x.view());
        assert_eq!((p.d, p.m), (d, d.min(M_MAX)));
        for i in 0..p.m {
            for j in 0..p.m {
                let dot: f64 = (0..d).map(|r| p.q[r * p.m + i] * p.q[r * p.m + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12, "q[{i}]·q[{j}] = {dot}");
            }
        }
        // The leading directions are the three axes with the spread, in order.
        for (col, axis) in [(0, 5), (1, 17), (2, 30)] {
            let v = p.q[axis * p.m + col].abs();
            assert!(v > 0.99, "direction {col} should be axis {axis}: {v}");
        }
        // Projections keep the norms: lead² + tail² = ‖x − mean‖².
        let pr = p.project(x.view());
        for r in 0..n {
            let lead: f64 = pr.lead[r * p.m..][..16]
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum();
            let tail = pr.tail[r * M_CHOICES.len()] as f64;
            let want: f64 = x
                .row(r)
                .iter()
                .zip(&p.mean)
                .map(|(&v, &m)| (v as f64 - m).powi(2))
                .sum();
            assert!((lead + tail * tail - want).abs() <= 1e-5 * want, "row {r}");
        }
    }
}
