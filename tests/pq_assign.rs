//! The `pq_assign` and `pq_encode` primitives (`shaders/pq_assign.wgsl`;
//! `compute/gpu/pq_assign.rs`; `compute/cpu/pq_assign.rs`,
//! `compute/cpu/pq_encode.rs`) on every backend against an f64 brute force.

#[macro_use]
mod device;

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::compute::{Backend, PqAssignment};
use rvc_index::index::pq;

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// Every (row, sub-space)'s sub-centroid distances in f64, plus the tolerance
/// of an f32 sum of `dsub` squares: 1e-5 · Σ (|x| + |c|)².
fn brute_force(
    x: &Array2<f32>,
    books: &Array2<f32>,
    m: usize,
    ksub: usize,
) -> Vec<(Vec<f64>, f64)> {
    let dsub = x.ncols() / m;
    let mut out = Vec::new();
    for row in x.rows() {
        for sq in 0..m {
            let sub = row.slice(ndarray::s![sq * dsub..(sq + 1) * dsub]);
            let mut ds = Vec::new();
            let mut scale = 0f64;
            for c in 0..ksub {
                let cen = books.row(sq * ksub + c);
                let mut s = 0f64;
                for (&a, &b) in sub.iter().zip(cen.iter()) {
                    s += (a as f64 - b as f64).powi(2);
                    scale = scale.max((a.abs() as f64 + b.abs() as f64).powi(2) * dsub as f64);
                }
                ds.push(s);
            }
            out.push((ds, 1e-5 * scale + 1e-12));
        }
    }
    out
}

/// Codes equal the f64 argmin wherever it is not a near-tie (else the pick is
/// within tolerance of the best), distances within tolerance.
fn check_against_reference(what: &str, got: &PqAssignment, reference: &[(Vec<f64>, f64)]) {
    for (i, ((&code, &dist), (ds, tol))) in got
        .codes
        .iter()
        .zip(got.distances.iter())
        .zip(reference)
        .enumerate()
    {
        let mut order: Vec<usize> = (0..ds.len()).collect();
        order.sort_by(|&a, &b| ds[a].total_cmp(&ds[b]).then(a.cmp(&b)));
        let best = ds[order[0]];
        let clear = order.len() < 2 || ds[order[1]] - best > 2.0 * tol;
        if clear {
            assert_eq!(code as usize, order[0], "{what}: entry {i}: {ds:?}");
        } else {
            assert!(ds[code as usize] - best <= 2.0 * tol, "{what}: entry {i}");
        }
        assert!(
            (dist as f64 - ds[code as usize]).abs() <= *tol,
            "{what}: entry {i}: distance {dist} vs {}",
            ds[code as usize]
        );
    }
}

fn matches_brute_force(b: &dyn Backend, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // (rows, d, m, ksub): odd sub-space widths, ksub not a multiple of 16,
    // more than one 16-centroid block, a single row.
    for &(n, d, m, ksub) in &[
        (1, 8, 4, 16),
        (70, 24, 8, 16),
        (200, 10, 5, 16),
        (130, 64, 4, 16),
        (90, 12, 3, 5),
        (100, 15, 5, 40),
        (65, 7, 7, 256),
    ] {
        let x = random(&mut rng, n, d);
        let books = random(&mut rng, m * ksub, d / m);
        let r = brute_force(&x, &books, m, ksub);
        let what = format!("{what} n{n} d{d} m{m} ksub{ksub}");
        let got = b.pq_assign(x.view(), books.view(), m, ksub).unwrap();
        assert_eq!(got.codes.dim(), (n, m), "{what}");
        check_against_reference(&what, &got, &r);
        // The codes alone.
        let codes = b.pq_encode(x.view(), books.view(), m).unwrap();
        assert_eq!(
            codes,
            got.codes.iter().copied().collect::<Vec<u8>>(),
            "{what}: pq_encode"
        );
    }
}
test_device!(matches_brute_force);

/// Several row chunks on the GPU (binding capped at 128 rows of 24 floats).
#[test]
fn gpu_chunks_rows() {
    if device::gpu().is_none() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (d, m, ksub) = (24, 8, 16);
    let books = random(&mut rng, m * ksub, d / m);
    let small = GpuBackend::new(true).unwrap().with_max_binding(128 * 96);
    let big = random(&mut rng, 300, d);
    let rb = brute_force(&big, &books, m, ksub);
    let got = small.pq_assign(big.view(), books.view(), m, ksub).unwrap();
    check_against_reference("gpu chunked", &got, &rb);
}

fn rejects_bad_shapes(b: &dyn Backend, what: &str) {
    let x = Array2::<f32>::zeros((4, 10));
    let books = Array2::<f32>::zeros((3 * 16, 3));
    let e = b.pq_assign(x.view(), books.view(), 3, 16).unwrap_err();
    assert!(e.to_string().contains("sub-spaces"), "{what}: {e}");
    let e = b.pq_encode(x.view(), books.view(), 3).unwrap_err();
    assert!(e.to_string().contains("sub-spaces"), "{what}: {e}");
    let books = Array2::<f32>::zeros((5 * 16, 3));
    let e = b.pq_assign(x.view(), books.view(), 5, 16).unwrap_err();
    assert!(e.to_string().contains("codebooks"), "{what}: {e}");
    let e = b.pq_encode(x.view(), books.view(), 5).unwrap_err();
    assert!(e.to_string().contains("codebooks"), "{what}: {e}");
}
test_device!(rejects_bad_shapes);

/// `Backend::pq_encode` of a trained quantizer: the CPU backend (the SIMD
/// encoder, every instruction set) gives the codes of the quantizer's own
/// scalar encoder exactly, the GPU (the pq_assign kernel) up to exact ties.
#[test]
fn pq_encode_equals_the_quantizers_scalar_encoder() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let x = random(&mut rng, 3001, 60);
    let quantizer = pq::train(&CpuBackend::new(), x.view(), 15).unwrap();
    let scalar: Vec<u8> = x
        .rows()
        .into_iter()
        .flat_map(|r| quantizer.encode(r.as_slice().unwrap()))
        .collect();
    for (what, b) in device::cpus() {
        let cpu = pq::encode_with(&b, &quantizer, x.view()).unwrap();
        assert_eq!(cpu.len(), 3001 * 15, "{what}");
        assert_eq!(cpu, scalar, "{what}");
        assert!(
            pq::encode_with(&b, &quantizer, x.view().slice_move(ndarray::s![.., ..59])).is_err()
        );
    }
    let Some(g) = device::gpu() else { return };
    let on_gpu = pq::encode_with(&g, &quantizer, x.view()).unwrap();
    let differ = on_gpu.iter().zip(&scalar).filter(|(a, b)| a != b).count();
    // Only exact ties between two sub-centroids could differ (f32 sums in
    // another order); uniform random data has none in practice.
    assert!(differ <= 2, "{differ} GPU codes differ");
}

/// The codes of `pq_encode` are the quantizer's own scalar encoder's
/// (exactly on the CPU and the reference; the GPU's f32 sums run in
/// another order, so only exact ties between two sub-centroids could
/// differ).
fn encode_equals_product_quantizer_encode(b: &dyn Backend, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for &(d, m) in &[(8usize, 8usize), (15, 5), (12, 3), (64, 32)] {
        let pq = rvc_index::faiss::ProductQuantizer {
            d,
            m,
            nbits: 4,
            centroids: (0..d * 16)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect(),
        };
        let x = random(&mut rng, 301, d);
        let want: Vec<u8> = x
            .rows()
            .into_iter()
            .flat_map(|r| pq.encode(r.as_slice().unwrap()))
            .collect();
        let got = pq::encode_with(b, &pq, x.view()).unwrap();
        let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        let allowed = if device::is_gpu(b) { 2 } else { 0 };
        assert!(
            differ <= allowed,
            "{what} d={d} m={m}: {differ} codes differ"
        );
        assert_eq!(got.len(), want.len(), "{what}");
    }
}
test_device!(encode_equals_product_quantizer_encode);
