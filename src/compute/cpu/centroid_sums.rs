//! The `centroid_sums` primitive on the CPU: each centroid's rows added in
//! row order in f32, exactly as faiss's `compute_centroids` does, so the
//! result is bit-identical to faiss's and does not depend on the thread
//! count.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::standard;
use crate::{Error, Result};

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
