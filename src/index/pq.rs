//! Product quantisation with 4-bit codes, trained as faiss trains the PQ of
//! an `IVF…,PQ<M>x4fs` index: a seeded subsample of at most 16·256 = 4096
//! rows, then for every sub-space its own 16-centroid k-means (25
//! iterations, seed 1234) on that sub-space's columns.

use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

use crate::compute::Backend;
use crate::faiss::ProductQuantizer;
use crate::train::kmeans::{self, KmeansParams};
use crate::{Error, Metric, Result};

pub const KSUB: usize = 16;
/// faiss: `pq.cp.max_points_per_centroid * ksub` training rows.
pub const TRAIN_ROWS: usize = 256 * KSUB;

/// Train the 4-bit product quantizer of `M = m` sub-spaces on the rows of `x`.
pub fn train(backend: &dyn Backend, x: ArrayView2<f32>, m: usize) -> Result<ProductQuantizer> {
    let (n, d) = x.dim();
    if m == 0 || d % m != 0 {
        return Err(Error::Invalid(format!(
            "PQ{m}: the dimension {d} must be a multiple of M"
        )));
    }
    if n < KSUB {
        return Err(Error::Invalid(format!(
            "PQ training needs at least {KSUB} rows, got {n}"
        )));
    }
    // faiss `fvecs_maybe_subsample(…, seed 1234)` before the sub-space k-means.
    let sample;
    let x = if n > TRAIN_ROWS {
        let perm = kmeans::rand_perm(n, 1234);
        sample = x.select(Axis(0), &perm[..TRAIN_ROWS]);
        sample.view()
    } else {
        x
    };
    let ds = d / m;
    let mut params = KmeansParams::ivf(KSUB, Metric::L2);
    params.niter = 25;
    let mut centroids = vec![0f32; m * KSUB * ds];
    for sq in 0..m {
        let sub = x.slice(s![.., sq * ds..(sq + 1) * ds]).to_owned();
        let km = kmeans::train(backend, sub.view(), &params, |_| {})?;
        centroids[sq * KSUB * ds..(sq + 1) * KSUB * ds]
            .copy_from_slice(km.centroids.as_slice().expect("contiguous"));
    }
    Ok(ProductQuantizer {
        d,
        m,
        nbits: 4,
        centroids,
    })
}

/// Codes of every row (`n × M`, one code per byte), in parallel.
pub fn encode(pq: &ProductQuantizer, x: ArrayView2<f32>) -> Array2<u8> {
    let x = x.as_standard_layout();
    let d = pq.d;
    let mut codes = Array2::<u8>::zeros((x.nrows(), pq.m));
    codes
        .as_slice_mut()
        .expect("contiguous")
        .par_chunks_mut(pq.m.max(1))
        .zip(x.as_slice().expect("standard layout").par_chunks(d.max(1)))
        .for_each(|(out, row)| out.copy_from_slice(&pq.encode(row)));
    codes
}
