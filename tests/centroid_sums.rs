//! The `centroid_sums` primitive (`shaders/centroid_sums.wgsl`;
//! `compute/gpu/centroid_sums.rs`; `compute/cpu/centroid_sums.rs`) on every
//! backend against f64 sums: |got − ref| ≤ 1e-5 · Σ|x| over the cluster
//! (+1e-6), counts exact; the CPU's sums are moreover bit-identical to
//! faiss's row-order f32 sums whatever the thread count.

#[macro_use]
mod device;

use ndarray::{Array2, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::{CpuBackend, reference};
use rvc_index::compute::gpu::GpuBackend;

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn check_sums(b: &dyn Backend, x: ArrayView2<f32>, labels: &[u32], k: usize, what: &str) {
    let (got, counts) = b.centroid_sums(x, labels, k).unwrap();
    let (want, want_counts) = reference::centroid_sums(x, labels, k);
    assert_eq!(counts, want_counts, "{what}: counts");
    assert_eq!(got.dim(), want.dim(), "{what}: shape");
    let mut abs = Array2::<f64>::zeros(want.dim());
    for (row, &l) in x.rows().into_iter().zip(labels) {
        for (a, &v) in abs.row_mut(l as usize).iter_mut().zip(row.iter()) {
            *a += v.abs() as f64;
        }
    }
    for ((idx, &w), &gv) in want.indexed_iter().zip(got.iter()) {
        let tol = 1e-5 * abs[idx] + 1e-6;
        assert!(
            (gv as f64 - w as f64).abs() <= tol,
            "{what}: sum[{idx:?}] = {gv}, want {w}"
        );
    }
}

fn match_reference(b: &dyn Backend, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for &(n, k, d) in &[
        (1, 1, 1),
        (50, 7, 3),
        (400, 40, 5),
        (300, 12, 256),
        (90, 3, 768),
    ] {
        let x = random(&mut rng, n, d);
        // Labels skip every third centroid, so some are empty.
        let labels: Vec<u32> = (0..n)
            .map(|_| {
                let l = rng.random_range(0..k as u32);
                if l % 3 == 2 { l - 1 } else { l }
            })
            .collect();
        check_sums(
            b,
            x.view(),
            &labels,
            k,
            &format!("{what} n={n} k={k} d={d}"),
        );
    }
}
test_device!(match_reference);

/// Column slices (contiguous rows) and transposes (strided rows).
fn non_contiguous_inputs(b: &dyn Backend, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (n, d) = (90, 7);
    let wide = random(&mut rng, n, d + 3);
    let tall = random(&mut rng, d, n);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 5).collect();
    for x in [wide.slice(ndarray::s![.., 1..d + 1]), tall.t()] {
        check_sums(b, x, &labels, 5, &format!("{what} strided"));
    }
}
test_device!(non_contiguous_inputs);

/// One cluster much larger than a GPU segment.
fn big_cluster(b: &dyn Backend, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (n, k, d) = (20_000, 6, 6);
    let x = random(&mut rng, n, d);
    let labels: Vec<u32> = (0..n)
        .map(|i| {
            if i % 10 == 0 {
                rng.random_range(1..k as u32 - 1)
            } else {
                0
            }
        })
        .collect();
    check_sums(b, x.view(), &labels, k, &format!("{what} big cluster"));
}
test_device!(big_cluster);

fn rejects_bad_labels(b: &dyn Backend, what: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = random(&mut rng, 4, 3);
    assert!(
        b.centroid_sums(x.view(), &[0, 1, 2, 3], 3).is_err(),
        "{what}"
    );
    assert!(b.centroid_sums(x.view(), &[0, 1, 2], 3).is_err(), "{what}");
    let (s, c) = b.centroid_sums(x.view(), &[0, 0, 0, 0], 2).unwrap();
    assert_eq!(c, vec![4, 0], "{what}");
    assert!(s.row(1).iter().all(|&v| v == 0.0), "{what}");
}
test_device!(rejects_bad_labels);

/// Independent sequential version of faiss's `compute_centroids` order.
fn sequential_sums(x: ArrayView2<f32>, labels: &[u32], k: usize) -> (Vec<f32>, Vec<u64>) {
    let d = x.ncols();
    let mut sums = vec![0f32; k * d];
    let mut counts = vec![0u64; k];
    for (i, &l) in labels.iter().enumerate() {
        counts[l as usize] += 1;
        for t in 0..d {
            sums[l as usize * d + t] += x[[i, t]];
        }
    }
    (sums, counts)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn cpu_bit_exact_and_thread_independent() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for &(n, k, d) in &[
        (1, 1, 1),
        (1000, 37, 17),
        (3000, 300, 64),
        (5, 9, 768),
        (2500, 64, 768),
    ] {
        // Large dynamic range so that the f32 order of additions matters.
        let x = Array2::from_shape_fn((n, d), |_| {
            rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-3..4))
        });
        // Skewed labels, some clusters empty.
        let labels: Vec<u32> = (0..n)
            .map(|_| {
                let u: f32 = rng.random_range(0.0..1.0);
                ((u * u * k as f32) as u32).min(k as u32 - 1)
            })
            .collect();
        let (want, want_counts) = sequential_sums(x.view(), &labels, k);
        let mut runs = Vec::new();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (sums, counts) = pool
                .install(|| CpuBackend::new().centroid_sums(x.view(), &labels, k))
                .unwrap();
            assert_eq!(sums.dim(), (k, d));
            assert_eq!(counts, want_counts);
            let got = bits(sums.as_slice().unwrap());
            assert_eq!(got, bits(&want), "n={n} k={k} d={d} threads={threads}");
            runs.push(got);
        }
        assert!(runs.windows(2).all(|w| w[0] == w[1]));
        // A non-contiguous view of the same data gives the same sums.
        let xt = x.t().to_owned();
        let (sums, _) = CpuBackend::new().centroid_sums(xt.t(), &labels, k).unwrap();
        assert_eq!(bits(sums.as_slice().unwrap()), bits(&want));
    }
}

/// Small bindings: several row chunks, and more labels than a binding has
/// rows (chunks shrink so that one partial sum per label still fits).
#[test]
fn gpu_chunks() {
    let Some(g) = device::gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (n, k, d) = (20_000, 6, 6);
    let x = random(&mut rng, n, d);
    let labels: Vec<u32> = (0..n)
        .map(|i| {
            if i % 10 == 0 {
                rng.random_range(1..k as u32 - 1)
            } else {
                0
            }
        })
        .collect();
    let small = GpuBackend::new(true).unwrap().with_max_binding(32 * 3000);
    check_sums(&small, x.view(), &labels, k, "big cluster, chunked");
    let (n2, k2) = (500, 400);
    let x2 = random(&mut rng, n2, 4);
    let labels2: Vec<u32> = (0..n2).map(|_| rng.random_range(0..k2 as u32)).collect();
    let tiny = small.with_max_binding(16 * 100);
    check_sums(&tiny, x2.view(), &labels2, k2, "many labels, tiny bindings");
    let bad = [k as u32];
    assert!(
        g.centroid_sums(x.slice(ndarray::s![..1, ..]), &bad, k)
            .is_err()
    );
}
