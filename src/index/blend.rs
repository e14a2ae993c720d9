//! RVC's retrieval step at inference (`Pipeline.vc`): every frame is blended
//! with the inverse-square-distance-weighted mean of its k nearest stored
//! vectors.
//!
//! RVC computes `w = (1/D)² / Σ(1/D)²` in float32 and so yields NaN when a
//! distance is 0 (an exact match) or when every neighbour is missing (an
//! empty probed list); and it multiplies the vector of id -1 by a zero weight.
//! Here an exact match takes the whole weight (shared equally among exact
//! matches), a frame without neighbours is left unchanged, missing
//! neighbours (id -1) carry no weight, and the weights are computed in f64
//! so tiny distances cannot overflow.

use ndarray::{Array2, ArrayView2};

use crate::{Error, Result};

/// Blend `feats` (T×d) with the stored vectors `db` (rows by id) of each
/// frame's neighbours `ids` with squared-L2 distances `dist` (T×k):
/// `f ← rate·retrieved + (1 − rate)·f`.
pub fn blend(
    feats: ArrayView2<f32>,
    dist: ArrayView2<f32>,
    ids: ArrayView2<i64>,
    db: ArrayView2<f32>,
    index_rate: f32,
) -> Result<Array2<f32>> {
    if !(0.0..=1.0).contains(&index_rate) {
        return Err(Error::Invalid(format!(
            "--index-rate must be within 0..1, got {index_rate}"
        )));
    }
    let d = feats.ncols();
    let mut out = feats.to_owned();
    let mut weights = Vec::with_capacity(ids.ncols());
    for ((mut f, drow), irow) in out.rows_mut().into_iter().zip(dist.rows()).zip(ids.rows()) {
        weights.clear();
        let exact = irow
            .iter()
            .zip(drow.iter())
            .filter(|&(&i, &s)| i >= 0 && s <= 0.0)
            .count();
        for (&i, &s) in irow.iter().zip(drow.iter()) {
            let w = if i < 0 {
                0.0
            } else if exact > 0 {
                if s <= 0.0 { 1.0 } else { 0.0 }
            } else {
                let inv = 1.0 / s as f64;
                inv * inv
            };
            weights.push(w);
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            continue;
        }
        let mut retrieved = vec![0f64; d];
        for (&i, &w) in irow.iter().zip(&weights) {
            if w == 0.0 {
                continue;
            }
            let row = db.row(i as usize);
            for (r, &v) in retrieved.iter_mut().zip(row.iter()) {
                *r += w / total * v as f64;
            }
        }
        for (o, r) in f.iter_mut().zip(&retrieved) {
            *o = (index_rate as f64 * r + (1.0 - index_rate as f64) * *o as f64) as f32;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn exact_match_and_empty_frames() {
        let db = array![[1.0f32, 0.0], [0.0, 1.0], [2.0, 2.0]];
        let feats = array![[1.0f32, 0.0], [5.0, 5.0], [0.0, 0.0]];
        let dist = array![[0.0f32, 1.0], [f32::MAX, f32::MAX], [1.0, 4.0]];
        let ids = array![[0i64, 1], [-1, -1], [0, 1]];
        let out = blend(feats.view(), dist.view(), ids.view(), db.view(), 0.75).unwrap();
        // Exact match: the frame is that vector.
        assert_eq!(out.row(0), array![1.0f32, 0.0]);
        // No neighbours: unchanged.
        assert_eq!(out.row(1), array![5.0f32, 5.0]);
        // Weights 1 and 1/16 (normalised), then blended at 0.75.
        let w0 = 1.0 / (1.0 + 1.0 / 16.0);
        let r = [w0, 1.0 - w0];
        assert!((out[[2, 0]] - 0.75 * r[0] as f32).abs() < 1e-6);
        assert!((out[[2, 1]] - 0.75 * r[1] as f32).abs() < 1e-6);
        assert!(out.iter().all(|v| v.is_finite()));
    }
}
