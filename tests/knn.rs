//! The `knn` primitive (`shaders/list_scan.wgsl`; `compute/gpu/list_scan/`;
//! `compute/cpu/avx512_knn.rs`, `compute/cpu/portable.rs`) on every backend
//! against a brute-force f64 ranking; exact on exact data, ties to the lower
//! id; `knn_self` equal to `knn(x, x)`.

#![allow(clippy::needless_range_loop)]

mod common;
#[macro_use]
mod device;

use rvc_index::Metric;
use rvc_index::compute::cpu::{CpuBackend, Isa, reference};
use rvc_index::compute::{Backend, Neighbours};

fn brute(
    x: &ndarray::Array2<f32>,
    y: &ndarray::Array2<f32>,
    metric: Metric,
) -> Vec<Vec<(f64, usize)>> {
    x.rows()
        .into_iter()
        .map(|q| {
            let mut v: Vec<(f64, usize)> = y
                .rows()
                .into_iter()
                .enumerate()
                .map(|(j, r)| {
                    let s: f64 = match metric {
                        Metric::L2 => q
                            .iter()
                            .zip(r.iter())
                            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                            .sum(),
                        Metric::InnerProduct => -q
                            .iter()
                            .zip(r.iter())
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>(),
                    };
                    (s, j)
                })
                .collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        })
        .collect()
}

fn matches_brute_force(b: &dyn Backend, what: &str) {
    // Sizes straddle the 64-query and 1024-row tiles; k above the database size pads.
    for &(nq, nb, d, k) in &[
        (1usize, 1usize, 1usize, 1usize),
        (70, 1500, 13, 8),
        (130, 40, 64, 50),
        (5, 2100, 3, 16),
        (29, 1057, 33, 1),
        (43, 333, 17, 128),
        (15, 31, 8, 40),
    ] {
        let x = common::mixture(nq, d, 3, nq as u64);
        let y = common::mixture(nb, d, 7, nb as u64 + 1);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let nn = b.knn(x.view(), y.view(), k, metric).unwrap();
            let truth = brute(&x, &y, metric);
            for i in 0..nq {
                for r in 0..k {
                    let id = nn.ids[[i, r]];
                    if r >= nb {
                        assert_eq!(id, -1);
                        assert_eq!(nn.scores[[i, r]], metric.worst());
                        continue;
                    }
                    let (s, j) = truth[i][r];
                    let near_tie = (r > 0
                        && (truth[i][r - 1].0 - s).abs() < 1e-4 * s.abs().max(1.0))
                        || (r + 1 < nb && (truth[i][r + 1].0 - s).abs() < 1e-4 * s.abs().max(1.0));
                    if !near_tie {
                        assert_eq!(
                            id as usize, j,
                            "{what} {metric} nq={nq} nb={nb} d={d} query {i} rank {r}"
                        );
                    }
                    let want = if metric == Metric::L2 { s } else { -s };
                    let got = nn.scores[[i, r]] as f64;
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{what}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
test_device!(matches_brute_force);

/// The CPU backend with every instruction set this processor runs.
fn kernels() -> Vec<CpuBackend> {
    Isa::available()
        .into_iter()
        .map(|i| CpuBackend::with_isa(i).unwrap())
        .collect()
}

/// Small integers: every dot product and norm is exact in f32 whatever the
/// summation order, so all kernels must agree bit for bit, ties included
/// (many rows repeat, so ties are everywhere).
fn integer_rows(n: usize, d: usize, distinct: usize, seed: u64) -> ndarray::Array2<f32> {
    let base = common::mixture(distinct, d, distinct, seed);
    ndarray::Array2::from_shape_fn((n, d), |(i, j)| {
        (base[[(i * 7) % distinct, j]] / 3.0)
            .round()
            .clamp(-4.0, 4.0)
    })
}

/// Best first, -1 padding after the real entries; with `exact` data, equal
/// scores in id order (otherwise two keys that differ can round to the same
/// reported L2 score once the query's norm is added).
fn check_order(nn: &Neighbours, metric: Metric, exact: bool) {
    for (ids, scores) in nn.ids.rows().into_iter().zip(nn.scores.rows()) {
        for r in 1..ids.len() {
            if ids[r] < 0 {
                assert_eq!(scores[r], metric.worst());
                continue;
            }
            assert!(ids[r - 1] >= 0, "padding before a real entry");
            let (a, b) = (scores[r - 1], scores[r]);
            let better = if metric == Metric::L2 { a < b } else { a > b };
            assert!(
                better || (a == b && (!exact || ids[r - 1] < ids[r])),
                "{ids} {scores}"
            );
        }
    }
}

/// Equal to the f64 brute force bit for bit on exact data, ties included.
fn exact_on_exact_data_with_ties(b: &dyn Backend, what: &str) {
    for &(nq, nb, d, k) in &[
        (31usize, 1000usize, 37usize, 8usize),
        (200, 77, 5, 128),
        (3, 5, 1, 1),
        (17, 300, 96, 16),
    ] {
        let x = integer_rows(nq, d, 11, 1);
        let y = integer_rows(nb, d, 13, 2);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let want = reference::knn(x.view(), y.view(), k, metric).unwrap();
            check_order(&want, metric, true);
            let nn = b.knn(x.view(), y.view(), k, metric).unwrap();
            assert_eq!(nn, want, "{what} {metric} {nq}x{nb}x{d} k={k}");
        }
    }
}
test_device!(exact_on_exact_data_with_ties);

#[test]
fn knn_self_equals_knn_of_x_with_itself() {
    // 1100 rows span several blocks of the self-join (so both the diagonal
    // and the mirrored blocks run); 700 leaves a partial last block.
    for &(n, d, k) in &[
        (1100usize, 24usize, 8usize),
        (700, 19, 128),
        (20, 3, 40),
        (1, 4, 1),
    ] {
        let x = common::mixture(n, d, 9, n as u64);
        for metric in [Metric::L2, Metric::InnerProduct] {
            for b in kernels() {
                let full = b.knn(x.view(), x.view(), k, metric).unwrap();
                let own = b.knn_self(x.view(), k, metric).unwrap();
                check_order(&own, metric, false);
                assert_eq!(own, full, "{:?} {metric} n={n} d={d} k={k}", b.isa());
            }
        }
    }
    // Exact data with duplicate rows: ties everywhere, same answer as the
    // f64 brute force.
    let x = integer_rows(900, 33, 40, 3);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let want = reference::knn(x.view(), x.view(), 16, metric).unwrap();
        for b in kernels() {
            assert_eq!(
                b.knn_self(x.view(), 16, metric).unwrap(),
                want,
                "{:?}",
                b.isa()
            );
        }
    }
}

fn rejects_mismatched_dimensions(b: &dyn Backend, what: &str) {
    let x = ndarray::Array2::<f32>::zeros((3, 4));
    let y = ndarray::Array2::<f32>::zeros((3, 5));
    let e = b.knn(x.view(), y.view(), 2, Metric::L2).unwrap_err();
    assert!(e.to_string().contains("dimensions"), "{what}: {e}");
    // k beyond what the GPU selection holds still answers (on the CPU).
    let x = ndarray::Array2::<f32>::ones((2, 4));
    let nn = b.knn(x.view(), x.view(), 200, Metric::L2).unwrap();
    assert_eq!(nn.ids.dim(), (2, 200), "{what}");
    assert_eq!(nn.ids[[0, 0]], 0, "{what}");
    assert_eq!(nn.ids[[0, 2]], -1, "{what}");
}
test_device!(rejects_mismatched_dimensions);
