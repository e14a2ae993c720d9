//! Product quantisation with 4-bit codes, trained as faiss trains the PQ of
//! an `IVF…,PQ<M>x4fs` index: a seeded subsample of at most 16·256 = 4096
//! rows, then for every sub-space its own 16-centroid k-means (25
//! iterations, seed 1234) on that sub-space's columns.

use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

use crate::compute::Backend;
use crate::train::kmeans::{self, KmeansParams};
use crate::{Error, Metric, Result};

pub const KSUB: usize = 16;
/// faiss: `pq.cp.max_points_per_centroid * ksub` training rows.
pub const TRAIN_ROWS: usize = 256 * KSUB;

/// Codebook `[m][16][dsub]` in faiss's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Pq4 {
    pub d: usize,
    pub m: usize,
    pub centroids: Vec<f32>,
}

impl Pq4 {
    pub fn dsub(&self) -> usize {
        self.d / self.m
    }

    pub fn centroid(&self, sq: usize, k: usize) -> &[f32] {
        let ds = self.dsub();
        &self.centroids[(sq * KSUB + k) * ds..(sq * KSUB + k + 1) * ds]
    }

    /// Train on the rows of `x`.
    pub fn train(backend: &dyn Backend, x: ArrayView2<f32>, m: usize) -> Result<Pq4> {
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
        Ok(Pq4 { d, m, centroids })
    }

    /// One code (0..16) per row and sub-quantizer: the nearest centroid in L2.
    pub fn encode(&self, x: ArrayView2<f32>) -> Array2<u8> {
        let ds = self.dsub();
        let mut codes = Array2::<u8>::zeros((x.nrows(), self.m));
        codes
            .as_slice_mut()
            .expect("contiguous")
            .par_chunks_mut(self.m)
            .zip(x.axis_iter(Axis(0)).into_iter().collect::<Vec<_>>())
            .for_each(|(out, row)| {
                for (sq, o) in out.iter_mut().enumerate() {
                    let v = row.slice(s![sq * ds..(sq + 1) * ds]);
                    let mut best = (f32::INFINITY, 0u8);
                    for k in 0..KSUB {
                        let c = self.centroid(sq, k);
                        let dist: f32 = v.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
                        if dist < best.0 {
                            best = (dist, k as u8);
                        }
                    }
                    *o = best.1;
                }
            });
        codes
    }

    /// Reconstruction of codes (row-major n×m) as vectors.
    pub fn decode(&self, codes: ArrayView2<u8>) -> Array2<f32> {
        let ds = self.dsub();
        let mut out = Array2::<f32>::zeros((codes.nrows(), self.d));
        for (mut row, c) in out.rows_mut().into_iter().zip(codes.rows()) {
            for (sq, &k) in c.iter().enumerate() {
                row.slice_mut(s![sq * ds..(sq + 1) * ds])
                    .assign(&ndarray::ArrayView1::from(self.centroid(sq, k as usize)));
            }
        }
        out
    }
}
