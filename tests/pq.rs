//! 4-bit PQ training and encoding against real faiss.

mod common;

use common::*;
use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::index::pq;

const FAISS_PQ: &str = r#"
import sys, numpy as np, faiss
x = np.load(sys.argv[1]); m = int(sys.argv[2])
ix = faiss.index_factory(x.shape[1], f"IVF4,PQ{m}x4fs")
ix.train(x)
pq = faiss.downcast_index(faiss.extract_index_ivf(ix)).pq
np.save(sys.argv[3], faiss.vector_to_array(pq.centroids).reshape(-1, x.shape[1] // m))
np.save(sys.argv[4], pq.compute_codes(x[:500]))
"#;

#[test]
fn codebook_and_codes_follow_faiss() {
    let dir = tempfile::tempdir().unwrap();
    // More than 4096 rows, so the seeded training subsample is exercised.
    let x = mixture(5000, 32, 40, 12);
    let xp = dir.path().join("x.npy");
    write_npy(&xp, &x).unwrap();
    let cp = dir.path().join("c.npy");
    let codes_p = dir.path().join("codes.npy");
    let pq = pq::train(&CpuBackend::new(), x.view(), 8).unwrap();
    let Some(_) = python(
        FAISS_PQ,
        &[
            xp.to_str().unwrap(),
            "8",
            cp.to_str().unwrap(),
            codes_p.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    let fc: Array2<f32> = read_npy(&cp).unwrap();
    let scale = fc.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = fc
        .iter()
        .zip(&pq.centroids)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "codebooks differ by {diff} (scale {scale})"
    );
    // faiss packs two 4-bit codes per byte, low nibble first.
    let fcodes: Array2<u8> = read_npy(&codes_p).unwrap();
    let ours = pq::encode(&pq, x.slice(ndarray::s![..500, ..]));
    let mut mismatches = 0;
    for (r, row) in ours.rows().into_iter().enumerate() {
        for (sq, &c) in row.iter().enumerate() {
            let byte = fcodes[[r, sq / 2]];
            let theirs = if sq % 2 == 0 { byte & 15 } else { byte >> 4 };
            mismatches += (theirs != c) as usize;
        }
    }
    // Only exact ties between two sub-centroids could differ.
    assert!(mismatches <= 2, "{mismatches} codes differ");
}

// ---------------------------------------------------------------------------
// pq_assign (CPU and GPU) and lockstep training against independent references.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::compute::{Backend, PqAssignment};
use rvc_index::train::kmeans::{self, KmeansParams};

/// Every (row, sub-space)'s sub-centroid distances in f64, plus the tolerance
/// of an f32 sum of `dsub` squares: 1e-5 · Σ (|x| + |c|)².
fn reference(x: &Array2<f32>, books: &Array2<f32>, m: usize, ksub: usize) -> Vec<(Vec<f64>, f64)> {
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

#[test]
fn pq_assign_cpu_and_gpu_match_brute_force() {
    let g = gpu();
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
        let r = reference(&x, &books, m, ksub);
        let what = format!("n{n} d{d} m{m} ksub{ksub}");
        let cpu = CpuBackend::new()
            .pq_assign(x.view(), books.view(), m, ksub)
            .unwrap();
        assert_eq!(cpu.codes.dim(), (n, m));
        check_against_reference(&format!("cpu {what}"), &cpu, &r);
        if let Some(g) = &g {
            let got = g.pq_assign(x.view(), books.view(), m, ksub).unwrap();
            check_against_reference(&format!("gpu {what}"), &got, &r);
            // Several row chunks (binding capped at 128 rows of 24 floats).
            if d == 24 {
                let small = GpuBackend::new(true).unwrap().with_max_binding(128 * 96);
                let big = random(&mut rng, 300, d);
                let rb = reference(&big, &books, m, ksub);
                let got = small.pq_assign(big.view(), books.view(), m, ksub).unwrap();
                check_against_reference("gpu chunked", &got, &rb);
            }
        }
    }
}

#[test]
fn pq_assign_rejects_bad_shapes() {
    let x = Array2::<f32>::zeros((4, 10));
    let books = Array2::<f32>::zeros((3 * 16, 3));
    let e = CpuBackend::new()
        .pq_assign(x.view(), books.view(), 3, 16)
        .unwrap_err();
    assert!(e.to_string().contains("sub-spaces"), "{e}");
    let books = Array2::<f32>::zeros((5 * 16, 3));
    let e = CpuBackend::new()
        .pq_assign(x.view(), books.view(), 5, 16)
        .unwrap_err();
    assert!(e.to_string().contains("codebooks"), "{e}");
}

/// The CPU backend without `assign_top2`, so that `kmeans::train` reassigns
/// every row from scratch each iteration (brute force, as faiss does).
struct FullScan(CpuBackend);

impl Backend for FullScan {
    fn info(&self) -> rvc_index::compute::BackendInfo {
        self.0.info()
    }
    fn assign(
        &self,
        x: ndarray::ArrayView2<f32>,
        c: ndarray::ArrayView2<f32>,
        metric: Metric,
    ) -> rvc_index::Result<rvc_index::compute::Assignment> {
        self.0.assign(x, c, metric)
    }
    fn centroid_sums(
        &self,
        x: ndarray::ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> rvc_index::Result<(Array2<f32>, Vec<u64>)> {
        self.0.centroid_sums(x, labels, k)
    }
}

/// The PQ training of one sub-space at a time, each its own `kmeans::train`
/// (what faiss runs): the reference the lockstep training must reproduce.
fn separate_kmeans(x: &Array2<f32>, m: usize) -> (Vec<f32>, usize) {
    let n = x.nrows();
    let x = if n > pq::TRAIN_ROWS {
        let perm = kmeans::rand_perm(n, 1234);
        x.select(ndarray::Axis(0), &perm[..pq::TRAIN_ROWS])
    } else {
        x.clone()
    };
    let ds = x.ncols() / m;
    let mut params = KmeansParams::ivf(pq::KSUB, Metric::L2);
    params.niter = 25;
    let mut out = Vec::new();
    let mut splits = 0;
    for sq in 0..m {
        let sub = x.slice(ndarray::s![.., sq * ds..(sq + 1) * ds]).to_owned();
        let km = kmeans::train(&FullScan(CpuBackend::new()), sub.view(), &params, |s| {
            splits += s.nsplit
        })
        .unwrap();
        out.extend(km.centroids.iter().copied());
    }
    (out, splits)
}

fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    (diff, scale)
}

#[test]
fn lockstep_training_matches_separate_kmeans() {
    // Above 4096 rows (subsample), and a small set with an empty cluster to
    // split: the first two rows k-means draws as initial centroids are made
    // equal, so the second centroid is nobody's nearest.
    let big = mixture(5000, 32, 40, 12);
    let mut clumps = mixture(60, 12, 3, 5);
    let init = kmeans::rand_perm(60, 1235);
    let first = clumps.row(init[0]).to_owned();
    clumps.row_mut(init[1]).assign(&first);
    for (x, m, splits) in [(&big, 8, false), (&clumps, 4, true), (&big, 32, false)] {
        let (want, nsplit) = separate_kmeans(x, m);
        if splits {
            assert!(nsplit > 0, "the case meant to split clusters did not");
        }
        let cpu = pq::train(&CpuBackend::new(), x.view(), m).unwrap();
        let (diff, scale) = max_diff(&want, &cpu.centroids);
        assert!(diff <= 1e-5 * scale, "cpu M{m}: {diff} (scale {scale})");
        // Deterministic: a second run is bit-identical.
        let again = pq::train(&CpuBackend::new(), x.view(), m).unwrap();
        assert_eq!(again, cpu);
        if let Some(g) = gpu() {
            let gpq = pq::train(&g, x.view(), m).unwrap();
            let (diff, scale) = max_diff(&want, &gpq.centroids);
            assert!(diff <= 1e-4 * scale, "gpu M{m}: {diff} (scale {scale})");
            assert_eq!(pq::train(&g, x.view(), m).unwrap(), gpq);
        }
    }
}

#[test]
fn encode_is_the_nearest_sub_centroid() {
    let x = mixture(300, 24, 10, 3);
    let q = pq::train(&CpuBackend::new(), x.view(), 6).unwrap();
    let codes = pq::encode(&q, x.view());
    for (row, c) in x.rows().into_iter().zip(codes.rows()) {
        let want = q.encode(row.as_slice().unwrap());
        assert_eq!(c.to_vec(), want);
    }
}

/// `Backend::pq_encode`: the GPU (pq_assign kernel) and the CPU backend (the
/// host's SIMD encoder) give the codes of the quantizer's own scalar encoder.
#[test]
fn pq_encode_gpu_and_cpu_equal_the_scalar_encoder() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let x = random(&mut rng, 3001, 60);
    let quantizer = pq::train(&CpuBackend::new(), x.view(), 15).unwrap();
    let scalar: Vec<u8> = x
        .rows()
        .into_iter()
        .flat_map(|r| quantizer.encode(r.as_slice().unwrap()))
        .collect();
    let cpu = CpuBackend::new().pq_encode(&quantizer, x.view()).unwrap();
    let on_gpu = g.pq_encode(&quantizer, x.view()).unwrap();
    assert_eq!(cpu.len(), 3001 * 15);
    assert_eq!(cpu, scalar);
    let differ = on_gpu.iter().zip(&scalar).filter(|(a, b)| a != b).count();
    // Only exact ties between two sub-centroids could differ (f32 sums in
    // another order); uniform random data has none in practice.
    assert!(differ <= 2, "{differ} GPU codes differ");
    assert!(
        CpuBackend::new()
            .pq_encode(&quantizer, x.view().slice_move(ndarray::s![.., ..59]))
            .is_err()
    );
}
