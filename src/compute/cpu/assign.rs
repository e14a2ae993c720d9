//! The `assign` primitive on the CPU: distances as a GEMM fused with the
//! argmin, so no `n × k` matrix ever exists (only per-task scratch). With
//! [`Isa::Avx512`] the hand-written register-tiled microkernel of
//! `avx512.rs` (the one that matches faiss + OpenBLAS), otherwise the `gemm`
//! crate's tiles (`portable.rs`).

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::{Isa, standard};
use crate::compute::Assignment;
use crate::{Error, Metric, Result};

/// The checks every assignment entry point makes.
fn check_assign(isa: Isa, d: usize, c: ArrayView2<f32>) -> Result<()> {
    let k = c.nrows();
    if c.ncols() != d {
        return Err(Error::Invalid(format!(
            "assign: rows have {d} dimensions but centroids have {}",
            c.ncols()
        )));
    }
    if k == 0 {
        return Err(Error::Invalid("assign: no centroids".into()));
    }
    if k > u32::MAX as usize || k > i32::MAX as usize - 64 {
        return Err(Error::Invalid(format!("assign: too many centroids ({k})")));
    }
    super::check_isa(isa)
}

/// [`Backend::assign_top2`](crate::compute::Backend::assign_top2) with an
/// explicit instruction set: the L2 assignment and each row's second-best
/// squared distance (`+∞` when `k = 1`), from the same fused GEMM + top-2
/// kernel (ties: the lowest index is the best, and an equal score is the
/// second best).
pub fn assign_top2_with(
    isa: Isa,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
) -> Result<(Assignment, Vec<f32>)> {
    let (n, d) = x.dim();
    check_assign(isa, d, c)?;
    let k = c.nrows();
    let mut out = Assignment {
        labels: vec![0; n],
        distances: vec![0.0; n],
    };
    let second_init = if k == 1 { f32::INFINITY } else { 0.0 };
    let mut second = vec![second_init; n];
    if n == 0 || d == 0 {
        // Every centroid scores 0: the lowest index wins, the next ties it.
        return Ok((out, second));
    }
    let xs = standard(x);
    let cs = standard(c);
    let (l, dist) = (&mut out.labels, &mut out.distances);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => super::avx512::assign_top2(&xs, n, &cs, k, d, l, dist, &mut second),
        _ => super::portable::assign_top2(&xs, n, &cs, k, d, l, dist, &mut second),
    }
    Ok((out, second))
}

/// [`Backend::assign`](crate::compute::Backend::assign) with an explicit
/// instruction set.
pub fn assign_with(
    isa: Isa,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
) -> Result<Assignment> {
    let (n, d) = x.dim();
    let k = c.nrows();
    check_assign(isa, d, c)?;
    let mut out = Assignment {
        labels: vec![0; n],
        distances: vec![0.0; n],
    };
    if n == 0 {
        return Ok(out);
    }
    let scores = Scores::from(metric);
    if d == 0 {
        // Every centroid scores 0: the lowest index wins.
        out.distances.fill(0.0);
        return Ok(out);
    }
    let xs = standard(x);
    let cs = standard(c);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => super::avx512::assign(
            &xs,
            n,
            &cs,
            k,
            d,
            scores,
            &mut out.labels,
            &mut out.distances,
        ),
        _ => super::portable::assign(
            &xs,
            n,
            &cs,
            k,
            d,
            scores,
            &mut out.labels,
            &mut out.distances,
        ),
    }
    Ok(out)
}

/// What the kernels minimise: `alpha·x·c + beta[c]`, turned back into the
/// reported score by [`Scores::finish`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scores {
    /// `‖c‖² − 2·x·c`; reported as `max(‖x‖² + that, 0)` (faiss clamps too).
    L2,
    /// `−x·c`; reported as `x·c`.
    InnerProduct,
}

impl From<Metric> for Scores {
    fn from(m: Metric) -> Self {
        match m {
            Metric::L2 => Scores::L2,
            Metric::InnerProduct => Scores::InnerProduct,
        }
    }
}

impl Scores {
    pub(crate) fn alpha(self) -> f32 {
        match self {
            Scores::L2 => -2.0,
            Scores::InnerProduct => -1.0,
        }
    }

    /// The reported distance of row `x` whose best minimised score is `v`.
    #[inline]
    pub(crate) fn finish(self, x: &[f32], v: f32) -> f32 {
        match self {
            Scores::L2 => (norm2(x) + v).max(0.0),
            Scores::InnerProduct => -v,
        }
    }
}

/// Per-centroid offsets `beta` (length `k`).
pub(crate) fn prepared_beta(c: &[f32], k: usize, d: usize, scores: Scores) -> Vec<f32> {
    match scores {
        Scores::L2 => c.par_chunks(d).map(norm2).collect(),
        Scores::InnerProduct => vec![0.0; k],
    }
}

/// Squared norm in f32 (16 interleaved partial sums, so it vectorises).
pub(crate) fn norm2(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = v.chunks_exact(16);
    for ch in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a += x * x;
        }
    }
    let mut s = 0f32;
    for &x in chunks.remainder() {
        s += x * x;
    }
    // Pairwise fold of the partial sums.
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    acc[0] + s
}
