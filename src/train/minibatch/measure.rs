//! Checks and measures around the fit: non-finite input, the inertia of a
//! set of centres, repeated centres.

use ndarray::{ArrayView2, s};

use crate::Result;
use crate::compute::Backend;

/// First row and column holding NaN or an infinity.
pub fn find_non_finite(x: ArrayView2<f32>) -> Option<(usize, usize)> {
    x.rows()
        .into_iter()
        .enumerate()
        .find_map(|(i, r)| r.iter().position(|v| !v.is_finite()).map(|j| (i, j)))
}

/// Sum over the rows of `x` of the squared distance to the nearest centre,
/// assigned in chunks so that no large temporary is made.
pub fn inertia(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    centroids: ArrayView2<f32>,
    mut progress: impl FnMut(u64),
) -> Result<f64> {
    const CHUNK: usize = 65_536;
    let mut total = 0f64;
    let mut lo = 0;
    while lo < x.nrows() {
        let hi = (lo + CHUNK).min(x.nrows());
        let a = crate::compute::assign_l2(backend, x.slice(s![lo..hi, ..]), centroids)?;
        total += a.distances.iter().map(|&v| v.max(0.0) as f64).sum::<f64>();
        progress((hi - lo) as u64);
        lo = hi;
    }
    Ok(total)
}

/// How many centres are exact copies of an earlier one (happens only when the
/// data has fewer distinct rows than K).
pub fn duplicate_centres(c: ArrayView2<f32>) -> usize {
    let mut rows: Vec<Vec<u32>> = c
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|v| v.to_bits()).collect())
        .collect();
    rows.sort_unstable();
    rows.windows(2).filter(|w| w[0] == w[1]).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_counted() {
        let c = ndarray::arr2(&[[1.0f32, 2.0], [0.0, 0.0], [1.0, 2.0], [1.0, 2.0]]);
        assert_eq!(duplicate_centres(c.view()), 2);
    }
}
