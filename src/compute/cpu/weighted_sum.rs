//! The `weighted_sum` primitive on the CPU (the twin of
//! `shaders/weighted_sum.wgsl`): per row, its neighbours' rows weighted by
//! the clamped similarity raised to `alpha`, summed and L2-normalised.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::{Error, Result};

/// Norms below this count as this (a zero row stays zero).
pub const EPS: f32 = 1e-9;

/// `r / max(‖r‖, EPS)` in place.
pub fn normalize(r: &mut [f32]) {
    let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(EPS);
    r.iter_mut().for_each(|v| *v /= n);
}

/// Check the shapes `weighted_sum` takes.
pub(crate) fn check(q: ArrayView2<f32>, db: ArrayView2<f32>, ids: ArrayView2<i64>) -> Result<()> {
    if db.ncols() != q.ncols() || ids.nrows() != q.nrows() {
        return Err(Error::Invalid(format!(
            "weighted_sum: {}×{} rows, {}×{} neighbour rows and {} rows of ids do not match",
            q.nrows(),
            q.ncols(),
            db.nrows(),
            db.ncols(),
            ids.nrows()
        )));
    }
    let n = db.nrows() as i64;
    if let Some(&bad) = ids.iter().find(|&&id| id < -1 || id >= n) {
        return Err(Error::Invalid(format!(
            "weighted_sum: neighbour id {bad} is not among the {n} rows"
        )));
    }
    Ok(())
}

/// `Backend::weighted_sum`: row `i` of the result is the normalised
/// `Σ_j max(q_i · db_j, 0)^alpha · db_j` over the ids `j ≥ 0` of row `i`.
pub fn weighted_sum(
    q: ArrayView2<f32>,
    db: ArrayView2<f32>,
    ids: ArrayView2<i64>,
    alpha: f32,
) -> Result<Array2<f32>> {
    check(q, db, ids)?;
    let d = q.ncols();
    let mut out = Array2::<f32>::zeros((q.nrows(), d));
    if d == 0 {
        return Ok(out);
    }
    out.as_slice_mut()
        .expect("fresh arrays are contiguous")
        .par_chunks_mut(d)
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
    Ok(out)
}
