//! The CPU backend's top-2 L2 assignment (`Backend::assign_top2`) against an
//! f64 scalar reference, on both kernels (AVX-512 where the CPU has it, the
//! portable one always) and awkward shapes: n below one register tile, k = 1,
//! d odd, d above the k-block length, few rows × many centroids (centroid
//! ranges merged across tasks), duplicated centroids (second best = best).

use ndarray::{Array2, ArrayView2, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::{CpuBackend, Isa, assign_top2_with};

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn kernels() -> Vec<Isa> {
    let mut k = vec![Isa::Portable];
    if Isa::Avx512.is_available() {
        k.push(Isa::Avx512);
    } else {
        eprintln!("note: this CPU has no AVX-512F; only the portable kernel is tested");
    }
    k
}

/// Every row's squared distances to all centroids in f64, sorted, with the
/// index of the best (lowest index among exact ties).
fn sorted_distances(x: ArrayView2<f32>, c: ArrayView2<f32>) -> Vec<(Vec<f64>, usize)> {
    x.rows()
        .into_iter()
        .map(|row| {
            let all: Vec<f64> = c
                .rows()
                .into_iter()
                .map(|cr| {
                    row.iter()
                        .zip(cr.iter())
                        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                        .sum()
                })
                .collect();
            let mut best = 0;
            for (j, &v) in all.iter().enumerate() {
                if v < all[best] {
                    best = j;
                }
            }
            let mut s = all;
            s.sort_by(f64::total_cmp);
            (s, best)
        })
        .collect()
}

/// Check one top-2 result; returns the number of near-tie rows.
fn check(x: ArrayView2<f32>, c: ArrayView2<f32>, kernel: Isa, what: &str) -> usize {
    let (a, second) = assign_top2_with(kernel, x, c).unwrap();
    assert_eq!(a.labels.len(), x.nrows(), "{what}");
    assert_eq!(second.len(), x.nrows(), "{what}");
    let cmax = c
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>())
        .fold(0.0, f64::max);
    let mut ties = 0;
    for (i, (all, best)) in sorted_distances(x, c).into_iter().enumerate() {
        let xn: f64 = x.row(i).iter().map(|&v| (v as f64).powi(2)).sum();
        // f32 GEMM-form distances are exact up to a few ulps of ‖x‖² + ‖c‖².
        let tol = 2e-5 * (xn + cmax) + 1e-6;
        let (d1, d2) = (a.distances[i] as f64, second[i] as f64);
        assert!(
            (d1 - all[0]).abs() <= tol,
            "{what} row {i}: best {d1} vs {}",
            all[0]
        );
        if all.len() == 1 {
            assert_eq!(second[i], f32::INFINITY, "{what} row {i}: k = 1");
        } else {
            assert!(
                (d2 - all[1]).abs() <= tol,
                "{what} row {i}: second {d2} vs {}",
                all[1]
            );
        }
        assert!(d2 >= d1, "{what} row {i}: second {d2} below best {d1}");
        if all.len() > 1 && all[1] - all[0] <= 2.0 * tol {
            ties += 1;
        } else {
            assert_eq!(a.labels[i] as usize, best, "{what} row {i}: label");
        }
    }
    ties
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (3, 1, 17),
    (1, 5, 3),
    (13, 31, 3),
    (14, 32, 17),
    (15, 33, 17),
    (29, 97, 255),
    (300, 45, 768),
    (41, 513, 33),
    (33, 50, 2100), // several k-blocks in the AVX-512 kernel
    (5, 700, 64),   // centroid ranges split across tasks, merged per row
    (20, 2000, 33),
];

#[test]
fn top2_matches_reference() {
    for kernel in kernels() {
        for (si, &(n, k, d)) in SHAPES.iter().enumerate() {
            let x = random(n, d, 300 + si as u64);
            let c = random(k, d, 400 + si as u64);
            let what = format!("{kernel:?} n={n} k={k} d={d}");
            let ties = check(x.view(), c.view(), kernel, &what);
            assert!(ties * 10 <= n.max(10), "{what}: {ties} near ties");
        }
    }
}

/// Centroid j, j + 37 and j + 74 are bit-identical: the best is the lowest
/// of the three and the second best equals it, whichever lanes, vectors,
/// tiles or centroid ranges the copies fall in.
#[test]
fn top2_duplicated_centroids() {
    for (n, d) in [(70, 19), (6, 64)] {
        let x = random(n, d, 11);
        let base = random(37, d, 12);
        let mut c = Array2::zeros((111, d));
        for r in 0..3 {
            c.slice_mut(s![r * 37..(r + 1) * 37, ..]).assign(&base);
        }
        for kernel in kernels() {
            let (a, second) = assign_top2_with(kernel, x.view(), c.view()).unwrap();
            let (want, _) = assign_top2_with(kernel, x.view(), base.view()).unwrap();
            assert_eq!(a.labels, want.labels, "{kernel:?}: lowest copy wins");
            assert_eq!(a.distances, second, "{kernel:?}: the copy is second best");
        }
    }
}

/// Through the backend trait, and the awkward inputs: no rows, d = 0.
#[test]
fn top2_through_the_backend() {
    let backend = CpuBackend::new();
    let x = random(50, 24, 5);
    let c = random(9, 24, 6);
    let (a, second) = backend.assign_top2(x.view(), c.view()).unwrap().unwrap();
    let (b, second_b) = assign_top2_with(backend.isa(), x.view(), c.view()).unwrap();
    assert_eq!((a, second), (b, second_b));

    let empty = Array2::<f32>::zeros((0, 24));
    let (a, second) = backend
        .assign_top2(empty.view(), c.view())
        .unwrap()
        .unwrap();
    assert!(a.labels.is_empty() && second.is_empty());

    let x0 = Array2::<f32>::zeros((4, 0));
    let c0 = Array2::<f32>::zeros((3, 0));
    let (a, second) = backend.assign_top2(x0.view(), c0.view()).unwrap().unwrap();
    assert_eq!(a.labels, vec![0; 4]);
    assert_eq!(second, vec![0.0; 4]);

    let bad = random(3, 23, 7);
    assert!(backend.assign_top2(x.view(), bad.view()).unwrap().is_err());
}
