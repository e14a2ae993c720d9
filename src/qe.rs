//! α-query expansion ("Attention-Based Query Expansion Learning"; the
//! "alpha QE" of the RVC faiss tips): each row is replaced by the
//! L2-normalised sum of its `num_expand` nearest neighbours by inner product
//! (itself included), neighbour j weighted by `(x·n_j)^α`.
//!
//! Negative similarities: `(x·n_j)^α` is NaN in NumPy for a non-integer α
//! and a negative base, and flips the sign of a neighbour's pull for odd
//! integer α. We clamp similarities at 0 first, so a neighbour pointing away
//! never contributes; for positive similarities (the usual case, and always
//! the row itself) this is the formula as written. A row whose weights are
//! all 0 (a zero row) stays 0.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, s};

use crate::Error;
use rayon::prelude::*;

use crate::compute::Backend;
use crate::progress::Progress;
use crate::{Metric, Result};

const EPS: f32 = 1e-9;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QeParams {
    pub alpha: f32,
    pub num_expand: usize,
    /// Rows expanded per step; bounds the memory of the neighbour search.
    pub batch_size: usize,
}

impl std::str::FromStr for QeParams {
    type Err = Error;

    /// `alpha=3,k=16` (either part may be left out; `num_expand=` is a synonym of `k=`).
    fn from_str(s: &str) -> Result<Self> {
        let mut p = QeParams::default();
        for part in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let bad = || {
                Error::Invalid(format!(
                    "query expansion {s:?}: expected alpha=<number>,k=<count>"
                ))
            };
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            match key.trim() {
                "alpha" => p.alpha = value.trim().parse().map_err(|_| bad())?,
                "k" | "num_expand" => p.num_expand = value.trim().parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        p.check()?;
        Ok(p)
    }
}

impl QeParams {
    pub fn check(&self) -> Result<()> {
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return Err(Error::Invalid(format!(
                "alpha must be a finite number ≥ 0, got {}",
                self.alpha
            )));
        }
        if self.num_expand == 0 {
            return Err(Error::Invalid(
                "the number of neighbours to expand with must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Default for QeParams {
    fn default() -> Self {
        QeParams {
            alpha: 3.0,
            num_expand: 16,
            batch_size: 4096,
        }
    }
}

/// `x / max(‖x‖, 1e-9)` for every row, in place.
pub fn normalize_rows(x: &mut Array2<f32>) {
    let d = x.ncols().max(1);
    if let Some(s) = x.as_slice_mut() {
        s.par_chunks_mut(d).for_each(normalize);
    } else {
        x.rows_mut()
            .into_iter()
            .for_each(|mut r| normalize(r.as_slice_mut().unwrap()));
    }
}

fn normalize(r: &mut [f32]) {
    let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(EPS);
    r.iter_mut().for_each(|v| *v /= n);
}

/// The CPU form of the fused expansion kernel (`Backend::expand`).
pub fn weighted_sum(
    q: ArrayView2<f32>,
    db: ArrayView2<f32>,
    ids: ArrayView2<i64>,
    alpha: f32,
) -> Array2<f32> {
    let d = q.ncols();
    let mut out = Array2::<f32>::zeros((q.nrows(), d));
    out.as_slice_mut()
        .expect("fresh arrays are contiguous")
        .par_chunks_mut(d.max(1))
        .enumerate()
        .for_each(|(i, y)| {
            let qi = q.row(i);
            for &id in ids.row(i).iter().filter(|&&id| id >= 0) {
                let n = db.row(id as usize);
                let sim: f32 = qi.iter().zip(n.iter()).map(|(a, b)| a * b).sum();
                let w = sim.max(0.0).powf(alpha);
                y.iter_mut().zip(n.iter()).for_each(|(o, &v)| *o += w * v);
            }
            normalize(y);
        });
    out
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QeSeconds {
    pub normalize: f64,
    pub knn: f64,
    pub weighted_sum: f64,
    pub total: f64,
}

/// Expand the rows of `q` against the (normalised) rows of `db`.
pub fn expand_against(
    backend: &dyn Backend,
    mut q: Array2<f32>,
    db: ArrayView2<f32>,
    p: &QeParams,
    progress: &Progress,
) -> Result<Array2<f32>> {
    normalize_rows(&mut q);
    expand_normalized(
        backend,
        q.view(),
        db,
        p,
        progress,
        &mut QeSeconds::default(),
    )
}

/// Expand every row of `x` against the rows of `x` itself. `x` is
/// normalised in place, so the peak is two matrices (input and output).
pub fn expand(
    backend: &dyn Backend,
    mut xn: Array2<f32>,
    p: &QeParams,
    progress: &Progress,
) -> Result<(Array2<f32>, QeSeconds)> {
    let t_all = Instant::now();
    let mut secs = QeSeconds::default();
    let t = Instant::now();
    normalize_rows(&mut xn);
    secs.normalize = t.elapsed().as_secs_f64();
    let out = expand_normalized(backend, xn.view(), xn.view(), p, progress, &mut secs)?;
    secs.total = t_all.elapsed().as_secs_f64();
    Ok((out, secs))
}

/// Batches of `p.batch_size` query rows: k-NN in `db`, then the weighted sum.
fn expand_normalized(
    backend: &dyn Backend,
    q: ArrayView2<f32>,
    db: ArrayView2<f32>,
    p: &QeParams,
    progress: &Progress,
    secs: &mut QeSeconds,
) -> Result<Array2<f32>> {
    let n = q.nrows();
    let mut out = Array2::<f32>::zeros(q.dim());
    let bar = progress.bar(n as u64, "expand");
    let batch = p.batch_size.max(1);
    for lo in (0..n).step_by(batch) {
        let hi = (lo + batch).min(n);
        let qb = q.slice(s![lo..hi, ..]);
        let t = Instant::now();
        let nb = backend.knn(qb, db, p.num_expand, Metric::InnerProduct)?;
        secs.knn += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let y = backend.expand(qb, db, nb.ids.view(), p.alpha)?;
        secs.weighted_sum += t.elapsed().as_secs_f64();
        out.slice_mut(s![lo..hi, ..]).assign(&y);
        bar.inc((hi - lo) as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
