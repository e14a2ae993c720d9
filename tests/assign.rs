//! The `assign` primitive (`shaders/assign.wgsl`, `assign_subgroup.wgsl`;
//! `compute/gpu/assign.rs`; `compute/cpu/assign.rs`) on every backend
//! against an f64 scoring of every (row, centroid) pair: both metrics,
//! awkward shapes, ties, strided views; then what only one backend has (the
//! GPU's kernel variants, chunking and lavapipe's loop cut-off; the CPU's
//! thread-count independence).
//!
//! Tolerances. CPU (and reference): a distance may differ from the f64
//! reference by 2e-5 · scale, scale = ‖x‖² + max ‖c‖² (L2) or ‖x‖·max ‖c‖
//! (IP); rows whose best two scores are within 1e-4 · scale are near ties
//! (the label must be near-best). GPU: 2e-5 · (‖x‖² + ‖c‖² + Σ|x_i c_i|)
//! (L2) or 2e-5 · Σ|x_i c_i| (IP), per (row, centroid); labels must equal
//! the reference wherever the best two are further apart than that.

#[macro_use]
mod device;

use ndarray::{Array2, ArrayView1, ArrayView2, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::cpu::{CpuBackend, Isa, assign_with, reference};
use rvc_index::compute::gpu::{AssignVariant, GpuBackend};
use rvc_index::compute::{Assignment, Backend};

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn random_rng(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// Relative gap between best and second-best reference scores below which a
/// row counts as a near tie (its label is not checked, only its distance).
const TIE_EPS: f64 = 1e-4;
/// Distance tolerance, relative to the row's score scale (see `scale`).
const DIST_TOL: f64 = 2e-5;

fn cpu_score(x: &[f32], c: &[f32], metric: Metric) -> f64 {
    match metric {
        Metric::L2 => x
            .iter()
            .zip(c)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum(),
        Metric::InnerProduct => x.iter().zip(c).map(|(&a, &b)| a as f64 * b as f64).sum(),
    }
}

fn sq(v: &[f32]) -> f64 {
    v.iter().map(|&a| (a as f64).powi(2)).sum()
}

/// Magnitude of the terms an f32 GEMM-form score is computed from.
fn scale(x: &[f32], c: ArrayView2<f32>, metric: Metric) -> f64 {
    let cmax = c
        .rows()
        .into_iter()
        .map(|r| sq(r.as_slice().unwrap()))
        .fold(0.0, f64::max);
    match metric {
        Metric::L2 => sq(x) + cmax + 1e-3,
        Metric::InnerProduct => (sq(x) * cmax).sqrt() + 1e-3,
    }
}

/// Check `got` against the reference; returns how many rows were near ties.
fn check_cpu(
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
    got: &Assignment,
    what: &str,
) -> usize {
    let want = reference::assign(x, c, metric);
    assert_eq!(got.labels.len(), x.nrows(), "{what}");
    assert_eq!(got.distances.len(), x.nrows(), "{what}");
    let x = x.as_standard_layout();
    let c = c.as_standard_layout();
    let mut ties = 0;
    for i in 0..x.nrows() {
        let row = x.row(i);
        let row = row.as_slice().unwrap();
        let sc = scale(row, c.view(), metric);
        let mut all: Vec<f64> = c
            .rows()
            .into_iter()
            .map(|cr| cpu_score(row, cr.as_slice().unwrap(), metric))
            .collect();
        if metric == Metric::InnerProduct {
            all.iter_mut().for_each(|v| *v = -*v);
        }
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let near_tie = all.len() > 1 && all[1] - all[0] <= TIE_EPS * sc;
        let (gl, gd) = (got.labels[i], got.distances[i] as f64);
        let wd = want.distances[i] as f64;
        assert!(
            (gd - wd).abs() <= DIST_TOL * sc + 1e-6,
            "{what}: row {i}: distance {gd} vs reference {wd} (scale {sc})"
        );
        assert!(
            (gl as usize) < c.nrows(),
            "{what}: row {i}: label {gl} out of range"
        );
        if near_tie {
            ties += 1;
            // The chosen centroid must still be one of the near-best.
            let s = cpu_score(row, c.row(gl as usize).as_slice().unwrap(), metric);
            let s = if metric == Metric::InnerProduct {
                -s
            } else {
                s
            };
            assert!(
                s - all[0] <= 2.0 * TIE_EPS * sc,
                "{what}: row {i}: label {gl} is not near-best"
            );
        } else {
            assert_eq!(
                gl, want.labels[i],
                "{what}: row {i}: label (distance {gd}, reference {wd})"
            );
        }
    }
    ties
}

fn score(x: ArrayView1<f32>, c: ArrayView1<f32>, metric: Metric) -> (f64, f64) {
    let mut s = 0f64;
    let mut abs = 0f64;
    let (mut xx, mut cc) = (0f64, 0f64);
    for (&a, &b) in x.iter().zip(c.iter()) {
        let (a, b) = (a as f64, b as f64);
        abs += (a * b).abs();
        xx += a * a;
        cc += b * b;
        s += match metric {
            Metric::L2 => (a - b) * (a - b),
            Metric::InnerProduct => a * b,
        };
    }
    let scale = match metric {
        Metric::L2 => xx + cc + abs,
        Metric::InnerProduct => abs,
    };
    (s, 2e-5 * scale + 1e-6)
}

/// Checks `got` against the reference as the header describes; returns how
/// many rows were near-ties.
fn check_gpu(
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
    got: &Assignment,
    what: &str,
) -> usize {
    let want = reference::assign(x, c, metric);
    assert_eq!(got.labels.len(), x.nrows(), "{what}: label count");
    assert_eq!(got.distances.len(), x.nrows(), "{what}: distance count");
    // Lower is better for both after flipping the sign of inner products.
    let sign = match metric {
        Metric::L2 => 1.0,
        Metric::InnerProduct => -1.0,
    };
    let mut ties = 0;
    for (i, row) in x.rows().into_iter().enumerate() {
        let scored: Vec<(f64, f64)> = c
            .rows()
            .into_iter()
            .map(|cr| score(row, cr, metric))
            .collect();
        let best = want.labels[i] as usize;
        let (best_s, tol) = scored[best];
        let second = scored
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != best)
            .map(|(_, s)| sign * s.0)
            .fold(f64::INFINITY, f64::min);
        let l = got.labels[i] as usize;
        assert!(l < c.nrows(), "{what}: row {i}: label {l} out of range");
        if second - sign * best_s > tol {
            assert_eq!(l, best, "{what}: row {i}: label");
        } else {
            ties += 1;
            let gap = sign * (scored[l].0 - best_s);
            assert!(
                gap <= tol,
                "{what}: row {i}: label {l} is {gap} worse than {best}"
            );
        }
        let dd = (got.distances[i] as f64 - best_s).abs();
        assert!(
            dd <= tol,
            "{what}: row {i}: distance {} vs {best_s} (tolerance {tol})",
            got.distances[i]
        );
    }
    ties
}

/// Check `got` of backend `b` with that backend's tolerances; returns how
/// many rows were near ties.
fn check(
    b: &dyn Backend,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
    got: &Assignment,
    what: &str,
) -> usize {
    if device::is_gpu(b) {
        check_gpu(x, c, metric, got, what)
    } else {
        check_cpu(x, c, metric, got, what)
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 5, 3),
    (3, 1, 17),
    (1, 40, 768),
    (100, 7, 1),
    (13, 31, 3),
    (14, 32, 17),
    (15, 33, 17),
    (29, 97, 256),
    (129, 65, 17),
    (57, 300, 256),
    (300, 45, 768),
    (41, 513, 33),
    (450, 100, 64),
    (33, 50, 2100), // several k-blocks in the AVX-512 kernel
    (5, 700, 64),   // few rows, many centroids: centroid ranges split across tasks
    (20, 2000, 33),
];

/// The shapes the GPU kernels' tiles make awkward: tiles are 8 or 64
/// rows/centroids and 4 dimensions wide.
const GPU_SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (37, 1, 3),
    (100, 5, 1),
    (513, 9, 3),
    (70, 65, 5),
    (300, 70, 256),
    (130, 33, 768),
];

fn matches_reference(b: &dyn Backend, what: &str) {
    for (si, &(n, k, d)) in SHAPES.iter().chain(GPU_SHAPES).enumerate() {
        let x = random(n, d, 100 + si as u64);
        let c = random(k, d, 200 + si as u64);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let what = format!("{what} {metric} n={n} k={k} d={d}");
            let got = b.assign(x.view(), c.view(), metric).unwrap();
            let ties = check(b, x.view(), c.view(), metric, &got, &what);
            assert!(
                ties * 10 <= n.max(10),
                "{what}: {ties} near ties of {n} rows"
            );
        }
    }
}
test_device!(matches_reference);

/// Centroids taken from the rows themselves (k-means init): distances that
/// should be 0 come out as tiny negatives in GEMM form and must be clamped.
fn rows_that_are_centroids(b: &dyn Backend, what: &str) {
    let x = random(200, 96, 7);
    let c = x.slice(s![10..50, ..]).to_owned();
    let got = b.assign(x.view(), c.view(), Metric::L2).unwrap();
    for i in 10..50 {
        assert_eq!(got.labels[i], (i - 10) as u32, "{what} row {i}");
        assert!(
            got.distances[i] >= 0.0 && got.distances[i] < 1e-4,
            "{what} row {i}: {}",
            got.distances[i]
        );
    }
    assert!(got.distances.iter().all(|&v| v >= 0.0), "{what}");
    check(
        b,
        x.view(),
        c.view(),
        Metric::L2,
        &got,
        &format!("{what} self"),
    );
}
test_device!(rows_that_are_centroids);

/// Exact ties go to the lowest index: duplicated centroids (bit-identical
/// scores) across lanes, vectors, register tiles, dispatches and chunks.
fn ties_go_to_the_lowest_index(b: &dyn Backend, what: &str) {
    let x = random(70, 19, 11);
    let base = random(37, 19, 12);
    // Centroid j and j + 37 (and j + 74) are identical.
    let mut c = Array2::zeros((111, 19));
    for r in 0..3 {
        c.slice_mut(s![r * 37..(r + 1) * 37, ..]).assign(&base);
    }
    // Many centroids (split into ranges across tasks): j, j + 300, j + 600.
    let base2 = random(300, 19, 13);
    let mut c2 = Array2::zeros((900, 19));
    for r in 0..3 {
        c2.slice_mut(s![r * 300..(r + 1) * 300, ..]).assign(&base2);
    }
    let same = Array2::from_elem((50, 19), 0.25f32);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let got = b.assign(x.view(), c.view(), metric).unwrap();
        let want = reference::assign(x.view(), base.view(), metric);
        assert_eq!(got.labels, want.labels, "{what} {metric}");
        let got = b.assign(x.view(), c2.view(), metric).unwrap();
        let want = b.assign(x.view(), base2.view(), metric).unwrap();
        assert_eq!(got, want, "{what} {metric}: 900 centroids");
        let got = b.assign(x.view(), same.view(), metric).unwrap();
        assert!(
            got.labels.iter().all(|&l| l == 0),
            "{what} {metric}: {:?}",
            got.labels
        );
    }
}
test_device!(ties_go_to_the_lowest_index);

/// Views that are not one contiguous block: strided rows, partial columns,
/// column-major centroids. They give what their contiguous copies give.
fn non_contiguous_views(b: &dyn Backend, what: &str) {
    let big_x = random(160, 90, 21);
    let big_c = random(70, 90, 22);
    let x = big_x.slice(s![..;2, 3..80]); // strided rows, partial columns
    let ct = big_c.t().to_owned(); // 90 × 70, so ct.t() is a column-major view
    let c = ct.t();
    let c = c.slice(s![..65, 3..80]);
    assert!(x.as_slice().is_none() && c.as_slice().is_none());
    let (xo, co) = (x.to_owned(), c.to_owned());
    for metric in [Metric::L2, Metric::InnerProduct] {
        let got = b.assign(x, c, metric).unwrap();
        let contiguous = b.assign(xo.view(), co.view(), metric).unwrap();
        assert_eq!(got, contiguous, "{what} {metric}");
        check(b, x, c, metric, &got, &format!("{what} {metric} strided"));
    }
    // Transposed rows.
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let tall = random_rng(&mut rng, 7, 90);
    let x_t = tall.t();
    let c_t = random_rng(&mut rng, 7, 20);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let got = b.assign(x_t, c_t.t(), metric).unwrap();
        check(
            b,
            x_t,
            c_t.t(),
            metric,
            &got,
            &format!("{what} transposed {metric}"),
        );
    }
}
test_device!(non_contiguous_views);

fn rejects_bad_shapes(b: &dyn Backend, what: &str) {
    let x = random(4, 8, 1);
    assert!(
        b.assign(x.view(), random(3, 7, 2).view(), Metric::L2)
            .is_err(),
        "{what}"
    );
    assert!(
        b.assign(x.view(), Array2::zeros((0, 8)).view(), Metric::L2)
            .is_err(),
        "{what}"
    );
    let empty = b
        .assign(
            Array2::zeros((0, 8)).view(),
            random(3, 8, 2).view(),
            Metric::L2,
        )
        .unwrap();
    assert!(
        empty.labels.is_empty() && empty.distances.is_empty(),
        "{what}"
    );
}
test_device!(rejects_bad_shapes);

// ------------------------------------------------------------------ CPU only

/// The instruction sets agree with each other on a size that spans many
/// tiles, row blocks and rayon tasks.
#[test]
fn cpu_instruction_sets_agree_on_larger_input() {
    let (n, k, d) = (700, 333, 768);
    let x = random(n, d, 31);
    let c = random(k, d, 32);
    for metric in [Metric::L2, Metric::InnerProduct] {
        for isa in Isa::available() {
            let got = assign_with(isa, x.view(), c.view(), metric).unwrap();
            let ties = check_cpu(
                x.view(),
                c.view(),
                metric,
                &got,
                &format!("{isa:?} {metric}"),
            );
            assert!(ties * 20 <= n, "{ties} near ties");
        }
    }
}

/// Every (row, centroid) score is computed the same way whatever the task
/// grid, so results are bit-identical for any thread count.
#[test]
fn cpu_independent_of_thread_count() {
    for &(n, k, d) in &[(3, 900, 40), (70, 900, 40), (1000, 150, 96)] {
        let x = random(n, d, 41);
        let c = random(k, d, 42);
        for isa in Isa::available() {
            for metric in [Metric::L2, Metric::InnerProduct] {
                let runs: Vec<Assignment> = [1, 2, 3, 8]
                    .iter()
                    .map(|&t| {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(t)
                            .build()
                            .unwrap();
                        pool.install(|| assign_with(isa, x.view(), c.view(), metric).unwrap())
                    })
                    .collect();
                for r in &runs[1..] {
                    assert_eq!(r, &runs[0], "{isa:?} {metric} n={n} k={k} d={d}");
                }
                check_cpu(
                    x.view(),
                    c.view(),
                    metric,
                    &runs[0],
                    &format!("{isa:?} {metric} threads"),
                );
            }
        }
    }
}

#[test]
fn cpu_backend_reports_its_instruction_set() {
    for isa in Isa::available() {
        let b = CpuBackend::with_isa(isa).unwrap();
        assert_eq!(b.isa(), isa);
        assert!(b.info().name.starts_with(isa.name()), "{:?}", b.info());
    }
    for isa in Isa::ALL {
        assert_eq!(CpuBackend::with_isa(isa).is_ok(), isa.is_available());
    }
}

// ------------------------------------------------------------------ GPU only

/// A second backend on the adapter `device::gpu()` found, running `variant`.
fn with_variant(variant: AssignVariant) -> GpuBackend {
    GpuBackend::new(true)
        .expect("adapter found a moment ago")
        .with_assign_variant(variant)
}

/// Every assign kernel the device has; on a CPU adapter (lavapipe) that must
/// include the subgroup one, which is what runs there by default.
fn variants(g: &GpuBackend) -> Vec<AssignVariant> {
    let v = g.assign_variants();
    if g.info().device_type == "Cpu" {
        // Lavapipe runs every f32 kernel shape, so each is tested here.
        for shape in [
            AssignVariant::Subgroup,
            AssignVariant::Tiled64,
            AssignVariant::Tiled128,
        ] {
            assert!(v.contains(&shape), "no {shape:?} kernel on {:?}", g.info());
        }
        assert_eq!(g.assign_variant(), AssignVariant::Subgroup);
    }
    v
}

/// One invocation scanning all 6000 centroids of 768 dimensions would loop
/// far past lavapipe's silent 65 535-iteration cut-off; rows whose best
/// centroid sits late in the list would then come out wrong.
#[test]
fn gpu_survives_the_loop_limiter() {
    let Some(g) = device::gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, k, d) = (48, 6000, 768);
    let x = random_rng(&mut rng, n, d);
    let mut c = random_rng(&mut rng, k, d);
    // Plant each row's twin near the end of the centroid list.
    for i in 0..n {
        let j = k - 1 - 7 * i;
        let noisy = x.row(i).mapv(|v| v + 0.01);
        c.row_mut(j).assign(&noisy);
    }
    for variant in variants(&g) {
        let g = with_variant(variant);
        let got = g.assign(x.view(), c.view(), Metric::L2).unwrap();
        for i in 0..n {
            assert_eq!(got.labels[i] as usize, k - 1 - 7 * i, "{variant:?} row {i}");
        }
        check_gpu(
            x.view(),
            c.view(),
            Metric::L2,
            &got,
            &format!("{variant:?} loop limit"),
        );
    }
}

/// Small bindings force several row chunks and centroid chunks per call.
#[test]
fn gpu_chunks_rows_and_centroids() {
    let Some(g) = device::gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n, k, d) = (1500, 700, 62); // 16 vec4s = 256 bytes per padded row
    let x = random_rng(&mut rng, n, d);
    let c = random_rng(&mut rng, k, d);
    for variant in variants(&g) {
        // 512 rows per binding: 3 row chunks, 2 centroid chunks.
        let g = with_variant(variant).with_max_binding(512 * 256);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let got = g.assign(x.view(), c.view(), metric).unwrap();
            check_gpu(
                x.view(),
                c.view(),
                metric,
                &got,
                &format!("{variant:?} chunked {metric}"),
            );
        }
        // 64 rows per binding: less than a subgroup-kernel or 128-row
        // workgroup covers.
        let tiny = g.with_max_binding(64 * 256);
        match (variant, tiny.assign(x.view(), c.view(), Metric::L2)) {
            (AssignVariant::Tiled64, Ok(got)) => {
                check_gpu(
                    x.view(),
                    c.view(),
                    Metric::L2,
                    &got,
                    "Tiled64, tiny bindings",
                );
            }
            (AssignVariant::Subgroup | AssignVariant::Tiled128, Err(rvc_index::Error::Gpu(_))) => {}
            (v, r) => panic!("{v:?} with tiny bindings: {:?}", r.map(|_| ())),
        }
    }
}

/// Exact duplicates on either side of dispatch and chunk boundaries: the
/// lower index must win every time.
#[test]
fn gpu_ties_across_chunks_go_to_the_lowest_index() {
    let Some(g) = device::gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (n, m, d) = (40, 1400, 768);
    let x = random_rng(&mut rng, n, d);
    let half = random_rng(&mut rng, m, d);
    let c = ndarray::concatenate![ndarray::Axis(0), half, half];
    for variant in variants(&g) {
        for cap in [None, Some(512 * 768 * 4)] {
            let mut b = with_variant(variant);
            if let Some(cap) = cap {
                b = b.with_max_binding(cap);
            }
            for metric in [Metric::L2, Metric::InnerProduct] {
                let got = b.assign(x.view(), c.view(), metric).unwrap();
                let what = format!("{variant:?} cap {cap:?} {metric}");
                assert!(
                    got.labels.iter().all(|&l| (l as usize) < m),
                    "{what}: {:?}",
                    got.labels
                );
                check_gpu(x.view(), c.view(), metric, &got, &what);
            }
        }
    }
}

/// Every kernel variant on the shapes its tiles make awkward.
#[test]
fn gpu_variants_match_reference() {
    let Some(g) = device::gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for variant in variants(&g) {
        let g = with_variant(variant);
        for &(n, k, d) in GPU_SHAPES {
            let x = random_rng(&mut rng, n, d);
            let c = random_rng(&mut rng, k, d);
            for metric in [Metric::L2, Metric::InnerProduct] {
                let got = g.assign(x.view(), c.view(), metric).unwrap();
                let what = format!("{variant:?} n={n} k={k} d={d} {metric}");
                let ties = check_gpu(x.view(), c.view(), metric, &got, &what);
                assert!(
                    ties * 10 <= n.max(10),
                    "{what}: {ties} near-ties, data too degenerate"
                );
            }
        }
    }
}

/// Quick throughput probe (not a test): `RVC_PERF=N,K,D,REPS`, e.g.
/// `RVC_PERF=200000,5128,768,3 cargo test --release --test assign perf -- --ignored --nocapture`.
/// `RVC_PERF_KERNEL=portable|avx2|avx512` picks one instruction set (default: all available).
/// `RVC_PERF_QUIET=0.1` waits before each timing until other processes use at
/// most that share of the CPUs (the machine may be shared).
#[test]
#[ignore]
fn perf_assign() {
    let spec = std::env::var("RVC_PERF").unwrap_or_else(|_| "200000,5128,768,3".into());
    let v: Vec<usize> = spec.split(',').map(|t| t.trim().parse().unwrap()).collect();
    let (n, k, d, reps) = (v[0], v[1], v[2], v.get(3).copied().unwrap_or(3));
    let x = random(n, d, 1);
    let c = if k <= n {
        x.slice(s![..k, ..]).to_owned()
    } else {
        random(k, d, 2)
    };
    let flop = 2.0 * n as f64 * k as f64 * d as f64;
    let pick = std::env::var("RVC_PERF_KERNEL").ok();
    #[cfg(target_arch = "x86_64")]
    if let Ok(t) = std::env::var("RVC_PERF_TUNE") {
        let t: Vec<usize> = t.split(',').map(|v| v.trim().parse().unwrap()).collect();
        rvc_index::compute::cpu::avx512::tune(t[0], t[1]);
    }
    let quiet: Option<f64> = std::env::var("RVC_PERF_QUIET")
        .ok()
        .map(|q| q.parse().unwrap());
    for isa in Isa::available() {
        if pick.as_deref().is_some_and(|p| !isa.name().starts_with(p)) {
            continue;
        }
        for rep in 0..reps {
            let waited = quiet.map_or(0.0, wait_quiet);
            let before = cpu_ticks();
            let t = std::time::Instant::now();
            let a = assign_with(isa, x.view(), c.view(), Metric::L2).unwrap();
            let s = t.elapsed().as_secs_f64();
            let after = cpu_ticks();
            let (busy, total, mine) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
            let others = (busy - mine).max(0.0) / total.max(1e-9);
            println!(
                "{{\"impl\": \"rvc-{}\", \"rep\": {rep}, \"s\": {s:.4}, \"gflops\": {:.1}, \"others\": {others:.3}, \"waited\": {waited:.1}, \"check\": {}}}",
                isa.name(),
                flop / s / 1e9,
                a.labels[n / 2]
            );
        }
    }
}

/// (machine busy ticks, machine total ticks, this process's ticks), Linux
/// only; zeros elsewhere. For the `others` share in `perf_assign`.
fn cpu_ticks() -> (f64, f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0, 0.0);
    };
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().unwrap_or(0.0))
        .collect();
    let total: f64 = v.iter().sum();
    let busy = total - v.get(3).unwrap_or(&0.0) - v.get(4).unwrap_or(&0.0);
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: utime and stime are 14 and 15.
    let rest = me.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0.0))
        .collect();
    let mine = f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0);
    (busy, total, mine)
}

/// Wait (up to 5 minutes) until other processes use at most `max_frac` of the CPUs.
fn wait_quiet(max_frac: f64) -> f64 {
    let t0 = std::time::Instant::now();
    loop {
        let a = cpu_ticks();
        std::thread::sleep(std::time::Duration::from_secs(2));
        let b = cpu_ticks();
        let frac = (b.0 - a.0) / (b.1 - a.1).max(1e-9);
        let waited = t0.elapsed().as_secs_f64();
        if frac <= max_frac || waited > 300.0 {
            return waited;
        }
    }
}
