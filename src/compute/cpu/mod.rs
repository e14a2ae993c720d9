//! Native CPU backend: rayon over row blocks.
//!
//! `assign` computes distances as a GEMM fused with the argmin, so no `n × k`
//! matrix ever exists (only per-task scratch). Two kernels, chosen at run
//! time ([`Kernel::best`]):
//!
//! * [`Kernel::Avx512`] (x86-64 with AVX-512F): a hand-written register-tiled
//!   microkernel (`avx512.rs`), the one that matches faiss + OpenBLAS;
//! * [`Kernel::Portable`] (everything else): the `gemm` crate on tiles.
//!
//! The environment variable `RVC_INDEX_CPU_KERNEL=portable|avx512|auto` makes
//! [`CpuBackend::new`] use a given kernel (for benchmarks and tests).
//!
//! `centroid_sums` accumulates each centroid's rows in row order in f32,
//! exactly as faiss's `compute_centroids` does, so its result is bit-identical
//! to faiss's and does not depend on the thread count.

#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
pub mod avx512;
mod fixed_sums;
#[cfg(target_arch = "x86_64")]
mod knn;
mod portable;
pub mod pq;
pub mod projection;
pub mod pruned;
#[cfg(target_arch = "x86_64")]
mod pruned_avx512;
pub mod reference;

use std::borrow::Cow;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::knn::Neighbours;
use super::{Assignment, Backend, BackendInfo};
use crate::{Error, Metric, Result};

/// Environment variable that forces a kernel in [`CpuBackend::new`].
pub const KERNEL_ENV: &str = "RVC_INDEX_CPU_KERNEL";

/// Which assignment kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Hand-written AVX-512F microkernel (x86-64 only).
    Avx512,
    /// `gemm` crate tiles, any CPU.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        if Kernel::Avx512.is_available() {
            Kernel::Avx512
        } else {
            Kernel::Portable
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx512 => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512f",
            Kernel::Portable => "portable (gemm crate)",
        }
    }

    /// The kernel `RVC_INDEX_CPU_KERNEL` asks for, else [`Kernel::best`].
    /// An unknown or unavailable value falls back to the best kernel.
    pub fn from_env() -> Kernel {
        match std::env::var(KERNEL_ENV).as_deref() {
            Ok("portable") => Kernel::Portable,
            Ok("avx512") if Kernel::Avx512.is_available() => Kernel::Avx512,
            _ => Kernel::best(),
        }
    }
}

pub struct CpuBackend {
    kernel: Kernel,
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new()
    }
}

impl CpuBackend {
    /// The best kernel for this CPU, unless `RVC_INDEX_CPU_KERNEL` says otherwise.
    pub fn new() -> Self {
        CpuBackend {
            kernel: Kernel::from_env(),
        }
    }

    /// A backend running `kernel`; fails if this CPU cannot run it.
    pub fn with_kernel(kernel: Kernel) -> Result<Self> {
        if !kernel.is_available() {
            return Err(Error::Unsupported(format!(
                "CPU kernel {} on this processor",
                kernel.name()
            )));
        }
        Ok(CpuBackend { kernel })
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "cpu".into(),
            name: format!(
                "{}, {} threads",
                self.kernel.name(),
                rayon::current_num_threads()
            ),
            device_type: String::new(),
            api: String::new(),
        }
    }

    fn assign(&self, x: ArrayView2<f32>, c: ArrayView2<f32>, metric: Metric) -> Result<Assignment> {
        assign_with(self.kernel, x, c, metric)
    }

    fn assign_top2(
        &self,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
    ) -> Option<Result<(Assignment, Vec<f32>)>> {
        Some(assign_top2_with(self.kernel, x, c))
    }

    fn as_cpu(&self) -> Option<&CpuBackend> {
        Some(self)
    }

    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        centroid_sums(x, labels, k)
    }

    fn knn(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<Neighbours> {
        knn_with(self.kernel, x, Some(y), k, metric)
    }

    fn knn_self(&self, x: ArrayView2<f32>, k: usize, metric: Metric) -> Result<Neighbours> {
        knn_with(self.kernel, x, None, k, metric)
    }
}

/// [`Backend::knn`] (`y` given) or [`Backend::knn_self`] (`y` = `x`) with an
/// explicit kernel. The AVX-512 kernel fuses the top-k into its GEMM
/// microkernel (`knn.rs`); the portable one is `compute::knn::knn`.
pub fn knn_with(
    kernel: Kernel,
    x: ArrayView2<f32>,
    y: Option<ArrayView2<f32>>,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    let (nq, d) = x.dim();
    let yv = y.unwrap_or(x);
    if yv.ncols() != d {
        return Err(Error::Invalid(format!(
            "knn: queries have {d} dimensions but the database rows have {}",
            yv.ncols()
        )));
    }
    let nb = yv.nrows();
    if nb as u64 >= u32::MAX as u64 {
        return Err(Error::Invalid(format!(
            "knn: too many database rows ({nb})"
        )));
    }
    if !kernel.is_available() {
        return Err(Error::Unsupported(format!(
            "CPU kernel {} on this processor",
            kernel.name()
        )));
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if d > 0 && k > 0 && nq > 0 && nb > 0 => {
            let xs = standard(x);
            Ok(match y {
                Some(y) => knn::knn(&xs, nq, &standard(y), nb, d, k, metric),
                None => knn::knn_self(&xs, nq, d, k, metric),
            })
        }
        _ => Ok(crate::compute::knn::knn(x, yv, k, metric)),
    }
}

/// The checks every assignment entry point makes.
fn check_assign(kernel: Kernel, d: usize, c: ArrayView2<f32>) -> Result<()> {
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
    if !kernel.is_available() {
        return Err(Error::Unsupported(format!(
            "CPU kernel {} on this processor",
            kernel.name()
        )));
    }
    Ok(())
}

/// [`Backend::assign_top2`] with an explicit kernel: the L2 assignment and
/// each row's second-best squared distance (`+∞` when `k = 1`), from the
/// same fused GEMM + top-2 kernel (ties: the lowest index is the best, and
/// an equal score is the second best).
pub fn assign_top2_with(
    kernel: Kernel,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
) -> Result<(Assignment, Vec<f32>)> {
    let (n, d) = x.dim();
    check_assign(kernel, d, c)?;
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
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => avx512::assign_top2(&xs, n, &cs, k, d, l, dist, &mut second),
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx512 => unreachable!("checked by is_available"),
        Kernel::Portable => portable::assign_top2(&xs, n, &cs, k, d, l, dist, &mut second),
    }
    Ok((out, second))
}

/// [`Backend::assign`] with an explicit kernel.
pub fn assign_with(
    kernel: Kernel,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
) -> Result<Assignment> {
    let (n, d) = x.dim();
    let k = c.nrows();
    check_assign(kernel, d, c)?;
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
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => avx512::assign(
            &xs,
            n,
            &cs,
            k,
            d,
            scores,
            &mut out.labels,
            &mut out.distances,
        ),
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx512 => unreachable!("checked by is_available"),
        Kernel::Portable => portable::assign(
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

/// The elements of `a` in row-major order, borrowed when already laid out so.
fn standard<'a>(a: ArrayView2<'a, f32>) -> Cow<'a, [f32]> {
    match a.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
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

/// Per-label sums and counts, faiss's `compute_centroids` order: every
/// centroid starts at +0.0 and adds its rows in increasing row order in f32.
/// Rows are bucketed by label first (a stable counting sort), then the
/// centroids are summed in parallel, so the result is bit-identical whatever
/// the thread count.
pub fn centroid_sums(
    x: ArrayView2<f32>,
    labels: &[u32],
    k: usize,
) -> Result<(Array2<f32>, Vec<u64>)> {
    let (n, d) = x.dim();
    if labels.len() != n {
        return Err(Error::Invalid(format!(
            "centroid_sums: {n} rows but {} labels",
            labels.len()
        )));
    }
    let mut counts = vec![0u64; k];
    for (i, &l) in labels.iter().enumerate() {
        let Some(c) = counts.get_mut(l as usize) else {
            return Err(Error::Invalid(format!(
                "centroid_sums: label {l} of row {i} is not below k = {k}"
            )));
        };
        *c += 1;
    }
    let mut start = Vec::with_capacity(k + 1);
    let mut acc = 0usize;
    start.push(0);
    for &c in &counts {
        acc += c as usize;
        start.push(acc);
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; n];
    for (i, &l) in labels.iter().enumerate() {
        let f = &mut fill[l as usize];
        order[*f] = i;
        *f += 1;
    }
    let mut sums = Array2::<f32>::zeros((k, d));
    if d == 0 || k == 0 {
        return Ok((sums, counts));
    }
    let xs = standard(x);
    sums.as_slice_mut()
        .expect("fresh array is contiguous")
        .par_chunks_mut(d)
        .enumerate()
        .with_min_len(8)
        .for_each(|(j, s)| {
            for &r in &order[start[j]..start[j + 1]] {
                let row = &xs[r * d..(r + 1) * d];
                for (a, &v) in s.iter_mut().zip(row) {
                    *a += v;
                }
            }
        });
    Ok((sums, counts))
}
