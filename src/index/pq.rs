//! Product quantisation with 4-bit codes, trained as faiss trains the PQ of
//! an `IVF…,PQ<M>x4fs` index: a seeded subsample of at most 16·256 = 4096
//! rows, then for every sub-space its own 16-centroid k-means (25
//! iterations, seed 1234) on that sub-space's columns.
//!
//! The M k-means run in lockstep: one `Backend::pq_assign` call assigns every
//! row in every sub-space per iteration (one GPU dispatch instead of M), and
//! each sub-space then updates exactly as `train::kmeans` would on its own
//! columns — same initial rows, row-order f32 sums, empty-cluster splits —
//! so the codebooks are those of M separate k-means runs. A sub-space stops
//! when its labels equal the previous iteration's: its update would give
//! the same centroids again, so the result is that of all 25 iterations
//! (faiss runs them all).
//!
//! Where the backend has `Backend::pq_train` (the GPU), the iterations run
//! on the device without host round trips; a sub-space whose update needs
//! an empty-cluster split (faiss's random generator) comes back to the host
//! at that iteration and goes on here, so the result is the same.

use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

use crate::compute::{Backend, PqSpace};
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
    /// The labels of the last update.
    labels: Option<Vec<u8>>,
    /// First iteration the host runs for it.
    from: usize,
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
    // Each sub-space's columns, contiguous (n × ds), for the updates.
    let columns: Vec<Vec<f32>> = (0..m)
        .into_par_iter()
        .map(|sq| {
            x.slice(s![.., sq * ds..(sq + 1) * ds])
                .iter()
                .copied()
                .collect()
        })
        .collect();
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
            labels: None,
            from: 0,
            done: n == KSUB,
        })
        .collect();

    if n > KSUB
        && let Some(trained) =
            backend.pq_train(x.view(), stacked(&spaces, ds).view(), m, KSUB, NITER)
    {
        let t = trained?;
        for (sq, (sp, st)) in spaces.iter_mut().zip(t.spaces).enumerate() {
            sp.centroids = t
                .codebooks
                .slice(s![sq * KSUB..(sq + 1) * KSUB, ..])
                .to_owned();
            match st {
                PqSpace::Done { .. } | PqSpace::Ran => sp.done = true,
                PqSpace::Stalled { iteration, labels } => {
                    update(sp, &columns[sq], n, ds, labels);
                    sp.from = iteration + 1;
                }
            }
        }
    }

    for it in 0..NITER {
        let active: Vec<usize> = (0..m)
            .filter(|&sq| !spaces[sq].done && spaces[sq].from <= it)
            .collect();
        if active.is_empty() {
            if spaces.iter().all(|s| s.done) {
                break;
            }
            continue;
        }
        // Every row in every sub-space, in one call: copying the active
        // sub-spaces' columns out costs more than assigning the settled ones
        // too, unless few are left.
        let subset = active.len() * 8 <= m;
        let a = if subset {
            let cols: Vec<usize> = active
                .iter()
                .flat_map(|&sq| sq * ds..(sq + 1) * ds)
                .collect();
            let xs = x.select(Axis(1), &cols);
            let picked: Vec<&SubSpace> = active.iter().map(|&sq| &spaces[sq]).collect();
            backend.pq_assign(
                xs.view(),
                stacked_of(&picked, ds).view(),
                active.len(),
                KSUB,
            )?
        } else {
            backend.pq_assign(x.view(), stacked(&spaces, ds).view(), m, KSUB)?
        };
        let mut work: Vec<(usize, usize, &mut SubSpace)> = spaces
            .iter_mut()
            .enumerate()
            .filter(|(sq, _)| active.contains(sq))
            .enumerate()
            .map(|(i, (sq, sp))| (if subset { i } else { sq }, sq, sp))
            .collect();
        work.par_iter_mut().for_each(|(col, sq, sp)| {
            let labels: Vec<u8> = a.codes.column(*col).to_vec();
            if sp.labels.as_ref() == Some(&labels) {
                sp.done = true;
                return;
            }
            update(sp, &columns[*sq], n, ds, labels);
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

/// A sub-space's k-means update from `labels` over its rows (`cols`, n ×
/// ds, row-major): row-order f32 means (as faiss's `compute_centroids`),
/// then faiss's split of empty clusters.
fn update(sp: &mut SubSpace, cols: &[f32], n: usize, ds: usize, labels: Vec<u8>) {
    let mut sums = vec![0f32; KSUB * ds];
    let mut counts = vec![0f32; KSUB];
    for (row, &l) in cols.chunks_exact(ds).zip(labels.iter()) {
        let l = l as usize;
        counts[l] += 1.0;
        for (s, &v) in sums[l * ds..(l + 1) * ds].iter_mut().zip(row) {
            *s += v;
        }
    }
    for (row, &c) in sums.chunks_exact_mut(ds).zip(&counts) {
        if c != 0.0 {
            let norm = 1.0 / c;
            row.iter_mut().for_each(|v| *v *= norm);
        }
    }
    let mut sums = Array2::from_shape_vec((KSUB, ds), sums).expect("KSUB × ds");
    kmeans::split_clusters(&mut sums, &mut counts, n);
    sp.centroids = sums;
    sp.labels = Some(labels);
}

fn stacked_of(spaces: &[&SubSpace], ds: usize) -> Array2<f32> {
    let mut books = Array2::<f32>::zeros((spaces.len() * KSUB, ds));
    for (i, sp) in spaces.iter().enumerate() {
        books
            .slice_mut(s![i * KSUB..(i + 1) * KSUB, ..])
            .assign(&sp.centroids);
    }
    books
}

/// `(m·KSUB) × dsub`: every sub-space's centroids, sub-space after sub-space.
fn stacked(spaces: &[SubSpace], ds: usize) -> Array2<f32> {
    stacked_of(&spaces.iter().collect::<Vec<_>>(), ds)
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
