//! The α-query-expansion kernel against the CPU form, on lavapipe in CI.
//! No adapter at all is a failure, unless RVC_INDEX_SKIP_GPU_TESTS=1.

mod common;
use common::gpu;

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::Backend;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::qe;

fn case(g: &GpuBackend, n: usize, nb: usize, d: usize, m: usize, alpha: f32, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut q = Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0f32..1.0));
    let mut db = Array2::from_shape_fn((nb, d), |_| rng.random_range(-1.0f32..1.0));
    qe::normalize_rows(&mut q);
    qe::normalize_rows(&mut db);
    // Random neighbours, some missing (-1): negative similarities included.
    let ids = Array2::from_shape_fn((n, m), |_| {
        if rng.random_range(0..10) == 0 {
            -1
        } else {
            rng.random_range(0..nb as i64)
        }
    });
    let want = qe::weighted_sum(q.view(), db.view(), ids.view(), alpha);
    let got = g.expand(q.view(), db.view(), ids.view(), alpha).unwrap();
    assert!(
        got.iter().all(|v| v.is_finite()),
        "NaN/inf for n={n} d={d} m={m} alpha={alpha}"
    );
    for (a, b) in got.iter().zip(want.iter()) {
        assert!(
            (a - b).abs() <= 2e-5,
            "n={n} nb={nb} d={d} m={m} alpha={alpha}: {a} vs {b}"
        );
    }
}

#[test]
fn expand_matches_cpu_on_awkward_shapes() {
    let Some(g) = gpu() else { return };
    for &(n, nb, d, m, alpha) in &[
        (1, 1, 1, 1, 3.0f32),
        (7, 20, 3, 5, 2.5),
        (70, 300, 256, 16, 3.0),
        (33, 50, 768, 64, 0.0),
        (100, 40, 17, 9, 1.0),
    ] {
        case(&g, n, nb, d, m, alpha, (n * d + m) as u64);
    }
}

#[test]
fn expand_chunks_when_neighbours_exceed_a_binding() {
    let Some(g) = gpu() else { return };
    // 64 rows of 128 floats per binding: many chunks, each re-uploading its rows.
    let g = g.with_max_binding(64 * 512);
    case(&g, 200, 500, 128, 8, 3.0, 5);
}
