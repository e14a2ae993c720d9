//! GPU kernels against the scalar CPU reference, on whatever wgpu adapter the
//! machine has (lavapipe in CI: `NODEVICE_SELECT=1 cargo test --test gpu_backend`).
//!
//! No adapter at all is a failure, unless RVC_INDEX_SKIP_GPU_TESTS=1.
//!
//! Tolerances: a distance may differ from the f64 reference by
//! 2e-5 · scale, where scale = ‖x‖² + ‖c‖² + Σ|x_i c_i| (L2) or Σ|x_i c_i| (IP):
//! the f32 rounding of a length-D dot product, with room to spare. Labels must
//! equal the reference wherever the best and second-best reference distances
//! are further apart than that tolerance; elsewhere (near-ties) the chosen
//! centroid's reference distance must be within tolerance of the best.
//! Centroid sums: |gpu − ref| ≤ 1e-5 · Σ|x| over the cluster (+1e-6).

use ndarray::{Array2, ArrayView1, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::cpu::reference;
use rvc_index::compute::gpu::{AssignVariant, GpuBackend};
use rvc_index::compute::{Assignment, Backend};

/// The GPU backend with software adapters allowed; `None` (skip) only when
/// no adapter exists and RVC_INDEX_SKIP_GPU_TESTS=1.
fn gpu() -> Option<GpuBackend> {
    match GpuBackend::new(true) {
        Ok(g) => {
            assert_eq!(
                g.adapter_info().backend,
                wgpu::Backend::Vulkan,
                "expected a Vulkan adapter (is mesa-vulkan-drivers installed?), got {:?}",
                g.info()
            );
            Some(g)
        }
        Err(e) if std::env::var("RVC_INDEX_SKIP_GPU_TESTS").as_deref() == Ok("1") => {
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("no GPU adapter ({e}); set RVC_INDEX_SKIP_GPU_TESTS=1 to skip"),
    }
}

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
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
fn check_assign(
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

#[test]
fn adapter_is_vulkan_and_described() {
    let Some(g) = gpu() else { return };
    let info = g.info();
    assert_eq!(info.kind, "gpu");
    assert_eq!(info.api, "Vulkan");
    assert!(!info.name.is_empty());
    assert!(!info.device_type.is_empty());
}

#[test]
fn auto_refuses_software_adapters() {
    if gpu().is_none() {
        return;
    }
    match GpuBackend::new(false) {
        Ok(g) => assert_ne!(g.info().device_type, "Cpu", "software adapter accepted"),
        Err(e) => assert!(matches!(e, rvc_index::Error::Gpu(_)), "{e}"),
    }
}

#[test]
fn assign_matches_reference_on_awkward_shapes() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // (n, k, d): tiles are 8 or 64 rows/centroids and 4 dimensions wide.
    let shapes = [
        (1, 1, 1),
        (37, 1, 3),
        (100, 5, 1),
        (513, 9, 3),
        (70, 65, 5),
        (300, 70, 256),
        (130, 33, 768),
    ];
    for variant in variants(&g) {
        let g = with_variant(variant);
        for &(n, k, d) in &shapes {
            let x = random(&mut rng, n, d);
            let c = random(&mut rng, k, d);
            for metric in [Metric::L2, Metric::InnerProduct] {
                let got = g.assign(x.view(), c.view(), metric).unwrap();
                let what = format!("{variant:?} n={n} k={k} d={d} {metric}");
                let ties = check_assign(x.view(), c.view(), metric, &got, &what);
                assert!(
                    ties * 10 <= n.max(10),
                    "{what}: {ties} near-ties, data too degenerate"
                );
            }
        }
    }
}

/// Views that are not one contiguous block: column slices (contiguous rows)
/// and transposes (strided rows) go up row by row.
#[test]
fn non_contiguous_inputs() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (n, k, d) = (90, 20, 7);
    let wide = random(&mut rng, n, d + 3);
    let x_cols = wide.slice(ndarray::s![.., 1..d + 1]);
    let tall = random(&mut rng, d, n);
    let x_t = tall.t();
    let c_t = random(&mut rng, d, k);
    let c = c_t.t();
    for x in [x_cols, x_t] {
        for metric in [Metric::L2, Metric::InnerProduct] {
            let got = g.assign(x, c, metric).unwrap();
            check_assign(x, c, metric, &got, &format!("strided {metric}"));
        }
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 5).collect();
        check_sums(&g, x, &labels, 5, "strided sums");
    }
}

/// Every assign kernel the device has; on a CPU adapter (lavapipe) that must
/// include the subgroup one, which is what runs there by default.
fn variants(g: &GpuBackend) -> Vec<AssignVariant> {
    let v = g.assign_variants();
    if g.info().device_type == "Cpu" {
        assert!(
            v.contains(&AssignVariant::Subgroup),
            "no subgroup kernel on {:?}",
            g.info()
        );
        assert_eq!(g.assign_variant(), AssignVariant::Subgroup);
    }
    v
}

/// A second backend on the adapter `gpu()` found, running `variant`.
fn with_variant(variant: AssignVariant) -> GpuBackend {
    GpuBackend::new(true)
        .expect("adapter found a moment ago")
        .with_assign_variant(variant)
}

/// One invocation scanning all 6000 centroids of 768 dimensions would loop
/// far past lavapipe's silent 65 535-iteration cut-off; rows whose best
/// centroid sits late in the list would then come out wrong.
#[test]
fn assign_survives_the_loop_limiter() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, k, d) = (48, 6000, 768);
    let x = random(&mut rng, n, d);
    let mut c = random(&mut rng, k, d);
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
        check_assign(
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
fn assign_chunks_rows_and_centroids() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n, k, d) = (1500, 700, 62); // 16 vec4s = 256 bytes per padded row
    let x = random(&mut rng, n, d);
    let c = random(&mut rng, k, d);
    for variant in variants(&g) {
        // 512 rows per binding: 3 row chunks, 2 centroid chunks.
        let g = with_variant(variant).with_max_binding(512 * 256);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let got = g.assign(x.view(), c.view(), metric).unwrap();
            check_assign(
                x.view(),
                c.view(),
                metric,
                &got,
                &format!("{variant:?} chunked {metric}"),
            );
        }
        // 64 rows per binding: less than a subgroup-kernel workgroup covers.
        let tiny = g.with_max_binding(64 * 256);
        match (variant, tiny.assign(x.view(), c.view(), Metric::L2)) {
            (AssignVariant::Tiled, Ok(got)) => {
                check_assign(x.view(), c.view(), Metric::L2, &got, "Tiled, tiny bindings");
            }
            (AssignVariant::Subgroup, Err(rvc_index::Error::Gpu(_))) => {}
            (v, r) => panic!("{v:?} with tiny bindings: {:?}", r.map(|_| ())),
        }
    }
}

/// Exact duplicates on either side of dispatch and chunk boundaries: the
/// lower index must win every time.
#[test]
fn assign_ties_go_to_the_lowest_index() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (n, m, d) = (40, 1400, 768);
    let x = random(&mut rng, n, d);
    let half = random(&mut rng, m, d);
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
                check_assign(x.view(), c.view(), metric, &got, &what);
            }
        }
    }
}

#[test]
fn assign_rejects_mismatched_dimensions() {
    let Some(g) = gpu() else { return };
    let x = Array2::<f32>::zeros((4, 3));
    let c = Array2::<f32>::zeros((2, 4));
    assert!(g.assign(x.view(), c.view(), Metric::L2).is_err());
    let none = Array2::<f32>::zeros((0, 3));
    let got = g.assign(none.view(), x.view(), Metric::L2).unwrap();
    assert!(got.labels.is_empty());
}

fn check_sums(g: &GpuBackend, x: ArrayView2<f32>, labels: &[u32], k: usize, what: &str) {
    let (got, counts) = g.centroid_sums(x, labels, k).unwrap();
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

#[test]
fn centroid_sums_match_reference() {
    let Some(g) = gpu() else { return };
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
        check_sums(&g, x.view(), &labels, k, &format!("n={n} k={k} d={d}"));
    }
}

/// One cluster much larger than a segment, over several row chunks.
#[test]
fn centroid_sums_big_cluster_and_chunks() {
    let Some(g) = gpu() else { return };
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
    check_sums(&g, x.view(), &labels, k, "big cluster");
    let small = GpuBackend::new(true).unwrap().with_max_binding(32 * 3000);
    check_sums(&small, x.view(), &labels, k, "big cluster, chunked");
    // More labels than a binding has rows: chunks shrink so that one partial
    // sum per label still fits.
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
