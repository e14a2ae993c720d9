//! The `pq_assign` primitive on the CPU: for every row and sub-space, the
//! nearest sub-centroid. This is the default `Backend::pq_assign` and the
//! reference the GPU kernel (`shaders/pq_assign.wgsl`) is tested against.
//!
//! Distances are summed in sub-vector order, `Σ (x_j − c_j)²`, as faiss's
//! `compute_codes` (and `ProductQuantizer::encode`) does, so codes are the
//! same as theirs, ties included.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::compute::PqAssignment;
use crate::{Error, Result};

/// Check that rows of `d` columns split into `m` sub-spaces of `ksub`
/// sub-centroids each, the shapes `codebooks` must have for `what`; returns
/// the sub-space width.
pub(crate) fn check(
    what: &str,
    d: usize,
    codebooks: ArrayView2<f32>,
    m: usize,
    ksub: usize,
) -> Result<usize> {
    if m == 0 || !d.is_multiple_of(m) {
        return Err(Error::Invalid(format!(
            "{what}: {d} dimensions do not split into {m} sub-spaces"
        )));
    }
    if ksub == 0 || ksub > 256 {
        return Err(Error::Invalid(format!(
            "{what}: {ksub} sub-centroids per sub-space (1 to 256 allowed)"
        )));
    }
    let dsub = d / m;
    if codebooks.dim() != (m * ksub, dsub) {
        return Err(Error::Invalid(format!(
            "{what}: codebooks are {}×{}, expected {}×{dsub}",
            codebooks.nrows(),
            codebooks.ncols(),
            m * ksub
        )));
    }
    Ok(dsub)
}

pub fn pq_assign(
    x: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    m: usize,
    ksub: usize,
) -> Result<PqAssignment> {
    let dsub = check("pq_assign", x.ncols(), codebooks, m, ksub)?;
    let n = x.nrows();
    let x = x.as_standard_layout();
    let cb = codebooks.as_standard_layout();
    let (xs, cs) = (
        x.as_slice().expect("standard layout"),
        cb.as_slice().expect("standard layout"),
    );
    let mut codes = Array2::<u8>::zeros((n, m));
    let mut distances = Array2::<f32>::zeros((n, m));
    if n == 0 {
        return Ok(PqAssignment { codes, distances });
    }
    let d = m * dsub;
    codes
        .as_slice_mut()
        .expect("contiguous")
        .par_chunks_mut(m)
        .zip(
            distances
                .as_slice_mut()
                .expect("contiguous")
                .par_chunks_mut(m),
        )
        .zip(xs.par_chunks(d.max(1)))
        .for_each(|((code, dist), row)| {
            for sq in 0..m {
                let sub = &row[sq * dsub..(sq + 1) * dsub];
                let book = &cs[sq * ksub * dsub..(sq + 1) * ksub * dsub];
                let mut best = (f32::INFINITY, 0usize);
                for (c, cen) in book.chunks_exact(dsub.max(1)).enumerate().take(ksub) {
                    let s: f32 = sub.iter().zip(cen).map(|(a, b)| (a - b) * (a - b)).sum();
                    if s < best.0 {
                        best = (s, c);
                    }
                }
                code[sq] = best.1 as u8;
                dist[sq] = best.0;
            }
        });
    Ok(PqAssignment { codes, distances })
}
