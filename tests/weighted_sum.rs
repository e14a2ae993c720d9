//! The `weighted_sum` primitive (`shaders/weighted_sum.wgsl`;
//! `compute/gpu/weighted_sum.rs`; `compute/cpu/weighted_sum.rs`), the
//! arithmetic of α-query expansion, on every backend against the CPU's f32
//! form (within 2e-5) and the f64 reference; the CPU form's arithmetic by
//! hand (clamped similarities, skipped ids, zero rows).

#[macro_use]
mod device;

use ndarray::{Array2, array};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::{reference, weighted_sum};
use rvc_index::qe;

#[allow(clippy::too_many_arguments)]
fn case(
    b: &dyn Backend,
    n: usize,
    nb: usize,
    d: usize,
    m: usize,
    alpha: f32,
    seed: u64,
    what: &str,
) {
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
    let tag = format!("{what} n={n} nb={nb} d={d} m={m} alpha={alpha}");
    let want = weighted_sum::weighted_sum(q.view(), db.view(), ids.view(), alpha).unwrap();
    let exact = reference::weighted_sum(q.view(), db.view(), ids.view(), alpha).unwrap();
    let got = b
        .weighted_sum(q.view(), db.view(), ids.view(), alpha)
        .unwrap();
    assert!(got.iter().all(|v| v.is_finite()), "NaN/inf for {tag}");
    for ((a, w), e) in got.iter().zip(want.iter()).zip(exact.iter()) {
        assert!((a - w).abs() <= 2e-5, "{tag}: {a} vs {w}");
        assert!((w - e).abs() <= 2e-5, "{tag}: the f32 form {w} vs f64 {e}");
    }
}

fn matches_cpu_on_awkward_shapes(b: &dyn Backend, what: &str) {
    for &(n, nb, d, m, alpha) in &[
        (1, 1, 1, 1, 3.0f32),
        (7, 20, 3, 5, 2.5),
        (70, 300, 256, 16, 3.0),
        (33, 50, 768, 64, 0.0),
        (100, 40, 17, 9, 1.0),
        // More neighbours per row than the GPU kernel holds.
        (9, 90, 12, 80, 2.0),
    ] {
        case(b, n, nb, d, m, alpha, (n * d + m) as u64, what);
    }
}
test_device!(matches_cpu_on_awkward_shapes);

fn rejects_bad_shapes_and_ids(b: &dyn Backend, what: &str) {
    let q = Array2::<f32>::zeros((2, 3));
    let db = Array2::<f32>::zeros((4, 3));
    assert!(
        b.weighted_sum(q.view(), db.view(), array![[0i64], [4]].view(), 1.0)
            .is_err(),
        "{what}"
    );
    assert!(
        b.weighted_sum(q.view(), db.view(), array![[0i64]].view(), 1.0)
            .is_err(),
        "{what}"
    );
    let narrow = Array2::<f32>::zeros((4, 2));
    assert!(
        b.weighted_sum(q.view(), narrow.view(), array![[0i64], [1]].view(), 1.0)
            .is_err(),
        "{what}"
    );
}
test_device!(rejects_bad_shapes_and_ids);

/// Negative similarities under a non-integer α: clamped to 0, never NaN.
#[test]
fn negative_similarities_are_clamped_not_nan() {
    let q = array![[1.0f32, 0.0], [0.6, 0.8]];
    let db = array![[1.0f32, 0.0], [-1.0, 0.0], [0.6, 0.8], [0.0, 0.0]];
    let ids = array![[0i64, 1, 2, 3], [2, 1, -1, 0]];
    let y = weighted_sum::weighted_sum(q.view(), db.view(), ids.view(), 2.5).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    // Row 0: weights 1, 0 (clamped), 0.6^2.5, 0.
    let w2 = 0.6f32.powf(2.5);
    let e0 = [1.0 + w2 * 0.6, w2 * 0.8];
    let n0 = (e0[0] * e0[0] + e0[1] * e0[1]).sqrt();
    assert!((y[[0, 0]] - e0[0] / n0).abs() < 1e-6 && (y[[0, 1]] - e0[1] / n0).abs() < 1e-6);
    // Row 1: itself (weight 1), id -1 skipped, row 0 with 0.6^2.5.
    let e1 = [0.6 + w2, 0.8];
    let n1 = (e1[0] * e1[0] + e1[1] * e1[1]).sqrt();
    assert!((y[[1, 0]] - e1[0] / n1).abs() < 1e-6 && (y[[1, 1]] - e1[1] / n1).abs() < 1e-6);
    // A zero row stays zero.
    let z = weighted_sum::weighted_sum(
        array![[0.0f32, 0.0]].view(),
        db.view(),
        array![[3i64]].view(),
        0.5,
    )
    .unwrap();
    assert_eq!(z, array![[0.0f32, 0.0]]);
}

#[test]
fn gpu_chunks_when_neighbours_exceed_a_binding() {
    let Some(g) = device::gpu() else { return };
    // 64 rows of 128 floats per binding: many chunks, each re-uploading its rows.
    let g = g.with_max_binding(64 * 512);
    case(&g, 200, 500, 128, 8, 3.0, 5, "gpu chunked");
}
