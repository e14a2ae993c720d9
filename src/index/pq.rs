//! Product quantisation with 4-bit codes, trained as faiss trains the PQ of
//! an `IVF…,PQ<M>x4fs` index: a seeded subsample of at most 16·256 = 4096
//! rows, then for every sub-space its own 16-centroid k-means (25
//! iterations, seed 1234) on that sub-space's columns.
//!
//! The M k-means run in lockstep: one `Backend::pq_assign` call assigns every
//! row in every sub-space per iteration (one GPU dispatch instead of M), and
//! each sub-space then updates exactly as `train::kmeans` would on its own
//! columns — same initial rows, row-order f32 sums, empty-cluster splits and
//! stop on an unchanged objective — so the codebooks are those of M separate
//! k-means runs.

use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

use crate::compute::Backend;
use crate::faiss::ProductQuantizer;
use crate::train::kmeans;
use crate::{Error, Result};

pub const KSUB: usize = 16;
/// faiss: `pq.cp.max_points_per_centroid * ksub` training rows.
pub const TRAIN_ROWS: usize = 256 * KSUB;
/// faiss `ProductQuantizer::cp.niter` for PQ training.
pub const NITER: usize = 25;
/// faiss `ClusteringParameters::seed`.
const SEED: i64 = 1234;

/// One sub-space's k-means between iterations.
struct SubSpace {
    /// KSUB × dsub.
    centroids: Array2<f32>,
    last_objective: Option<f64>,
    done: bool,
}

/// Train the 4-bit product quantizer of `M = m` sub-spaces on the rows of `x`.
pub fn train(backend: &dyn Backend, x: ArrayView2<f32>, m: usize) -> Result<ProductQuantizer> {
    let (n, d) = x.dim();
    if m == 0 || !d.is_multiple_of(m) {
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
        let perm = kmeans::rand_perm(n, SEED);
        sample = x.select(Axis(0), &perm[..TRAIN_ROWS]);
        sample.view()
    } else {
        x
    };
    let x = x.as_standard_layout();
    let n = x.nrows();
    let ds = d / m;
    // faiss's k-means draws the initial centroids with seed + 1 from the
    // rows; every sub-space has the same rows, hence the same draw.
    let init: Vec<usize> = if n == KSUB {
        (0..KSUB).collect()
    } else {
        kmeans::rand_perm(n, SEED + 1)[..KSUB].to_vec()
    };
    let rows = x.select(Axis(0), &init);
    let mut spaces: Vec<SubSpace> = (0..m)
        .map(|sq| SubSpace {
            centroids: rows.slice(s![.., sq * ds..(sq + 1) * ds]).to_owned(),
            last_objective: None,
            done: n == KSUB,
        })
        .collect();

    for _ in 0..NITER {
        if spaces.iter().all(|s| s.done) {
            break;
        }
        let books = stacked(&spaces, ds);
        let a = backend.pq_assign(x.view(), books.view(), m, KSUB)?;
        spaces.par_iter_mut().enumerate().for_each(|(sq, sp)| {
            if sp.done {
                return;
            }
            let labels = a.codes.column(sq);
            let objective: f64 = a.distances.column(sq).iter().map(|&v| v as f64).sum();
            // Row-order f32 sums, as faiss's `compute_centroids`.
            let mut sums = Array2::<f32>::zeros((KSUB, ds));
            let mut counts = vec![0f32; KSUB];
            for (row, &l) in x.rows().into_iter().zip(labels.iter()) {
                let l = l as usize;
                counts[l] += 1.0;
                let mut acc = sums.row_mut(l);
                for (s, &v) in acc.iter_mut().zip(row.slice(s![sq * ds..(sq + 1) * ds])) {
                    *s += v;
                }
            }
            for (mut row, &c) in sums.rows_mut().into_iter().zip(&counts) {
                if c != 0.0 {
                    let norm = 1.0 / c;
                    row.mapv_inplace(|v| v * norm);
                }
            }
            kmeans::split_clusters(&mut sums, &mut counts, n);
            sp.centroids = sums;
            // As `kmeans::train`: an unchanged objective means unchanged
            // assignments, so later iterations would change nothing.
            sp.done = sp.last_objective == Some(objective);
            sp.last_objective = Some(objective);
        });
    }
    let centroids = stacked(&spaces, ds).into_raw_vec_and_offset().0;
    Ok(ProductQuantizer {
        d,
        m,
        nbits: 4,
        centroids,
    })
}

/// `(m·KSUB) × dsub`: every sub-space's centroids, sub-space after sub-space.
fn stacked(spaces: &[SubSpace], ds: usize) -> Array2<f32> {
    let mut books = Array2::<f32>::zeros((spaces.len() * KSUB, ds));
    for (sq, sp) in spaces.iter().enumerate() {
        books
            .slice_mut(s![sq * KSUB..(sq + 1) * KSUB, ..])
            .assign(&sp.centroids);
    }
    books
}

/// The quantizer's codebooks as the PQ primitives take them: `(M·ksub) ×
/// dsub`, sub-space `s`'s centroids at rows `s·ksub ..`.
pub fn codebooks(pq: &ProductQuantizer) -> Result<ArrayView2<'_, f32>> {
    ArrayView2::from_shape((pq.m * pq.ksub(), pq.dsub()), &pq.centroids)
        .map_err(|e| Error::Invalid(format!("PQ{}x{} codebooks: {e}", pq.m, pq.nbits)))
}

/// Codes of every row of `x` under `pq` (`n × M`, row-major, one code per
/// byte) with `backend`'s `pq_encode`: the nearest sub-centroid per
/// sub-space, ties to the lower index.
pub fn encode_with(
    backend: &dyn Backend,
    pq: &ProductQuantizer,
    x: ArrayView2<f32>,
) -> Result<Vec<u8>> {
    if x.ncols() != pq.d {
        return Err(Error::Invalid(format!(
            "PQ encoding: rows have {} columns, the quantizer {}",
            x.ncols(),
            pq.d
        )));
    }
    backend.pq_encode(x, codebooks(pq)?, pq.m)
}

/// [`encode_with`] on the CPU, as an `n × M` matrix (the quantizer and the
/// rows must agree: `pq.d` columns).
pub fn encode(pq: &ProductQuantizer, x: ArrayView2<f32>) -> Array2<u8> {
    let codes = encode_with(&crate::compute::cpu::CpuBackend::new(), pq, x)
        .expect("rows match the quantizer");
    Array2::from_shape_vec((x.nrows(), pq.m), codes).expect("n × M codes")
}
