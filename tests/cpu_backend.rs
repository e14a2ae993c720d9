//! CPU backend against the scalar reference: both assignment kernels (the
//! AVX-512 one where the CPU has it, and the portable one, forced), both
//! metrics, awkward shapes; centroid sums bit-exact and thread-count
//! independent.

use ndarray::{Array2, ArrayView2, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::cpu::{CpuBackend, Kernel, assign_with, reference};
use rvc_index::compute::{Assignment, Backend};

/// Relative gap between best and second-best reference scores below which a
/// row counts as a near tie (its label is not checked, only its distance).
const TIE_EPS: f64 = 1e-4;
/// Distance tolerance, relative to the row's score scale (see `scale`).
const DIST_TOL: f64 = 2e-5;

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn kernels() -> Vec<Kernel> {
    let mut k = vec![Kernel::Portable];
    if Kernel::Avx512.is_available() {
        k.push(Kernel::Avx512);
    } else {
        eprintln!("note: this CPU has no AVX-512F; only the portable kernel is tested");
    }
    k
}

fn score(x: &[f32], c: &[f32], metric: Metric) -> f64 {
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
fn check(
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
            .map(|cr| score(row, cr.as_slice().unwrap(), metric))
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
            let s = score(row, c.row(gl as usize).as_slice().unwrap(), metric);
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

#[test]
fn assign_matches_reference() {
    for kernel in kernels() {
        let backend = CpuBackend::with_kernel(kernel).unwrap();
        assert_eq!(backend.kernel(), kernel);
        for (si, &(n, k, d)) in SHAPES.iter().enumerate() {
            let x = random(n, d, 100 + si as u64);
            let c = random(k, d, 200 + si as u64);
            for metric in [Metric::L2, Metric::InnerProduct] {
                let what = format!("{kernel:?} {metric} n={n} k={k} d={d}");
                let got = backend.assign(x.view(), c.view(), metric).unwrap();
                let ties = check(x.view(), c.view(), metric, &got, &what);
                assert!(
                    ties * 10 <= n.max(10),
                    "{what}: {ties} near ties of {n} rows"
                );
            }
        }
    }
}

/// Centroids taken from the rows themselves (k-means init): distances that
/// should be 0 come out as tiny negatives in GEMM form and must be clamped.
#[test]
fn assign_rows_that_are_centroids() {
    let x = random(200, 96, 7);
    let c = x.slice(s![10..50, ..]).to_owned();
    for kernel in kernels() {
        let got = assign_with(kernel, x.view(), c.view(), Metric::L2).unwrap();
        for i in 10..50 {
            assert_eq!(got.labels[i], (i - 10) as u32, "{kernel:?} row {i}");
            assert!(
                got.distances[i] >= 0.0 && got.distances[i] < 1e-4,
                "{kernel:?} row {i}: {}",
                got.distances[i]
            );
        }
        assert!(got.distances.iter().all(|&v| v >= 0.0));
        check(
            x.view(),
            c.view(),
            Metric::L2,
            &got,
            &format!("{kernel:?} self"),
        );
    }
}

/// Exact ties go to the lowest index: duplicated centroids (bit-identical
/// scores) across lanes, vectors and register tiles.
#[test]
fn assign_ties_go_to_lowest_index() {
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
    for kernel in kernels() {
        for metric in [Metric::L2, Metric::InnerProduct] {
            let got = assign_with(kernel, x.view(), c.view(), metric).unwrap();
            let want = reference::assign(x.view(), base.view(), metric);
            assert_eq!(got.labels, want.labels, "{kernel:?} {metric}");
            let got = assign_with(kernel, x.view(), c2.view(), metric).unwrap();
            let want = assign_with(kernel, x.view(), base2.view(), metric).unwrap();
            assert_eq!(got, want, "{kernel:?} {metric}: 900 centroids");
            let got = assign_with(kernel, x.view(), same.view(), metric).unwrap();
            assert!(
                got.labels.iter().all(|&l| l == 0),
                "{kernel:?} {metric}: {:?}",
                got.labels
            );
        }
    }
}

#[test]
fn assign_non_contiguous_views() {
    let big_x = random(160, 90, 21);
    let big_c = random(70, 90, 22);
    let x = big_x.slice(s![..;2, 3..80]); // strided rows, partial columns
    let ct = big_c.t().to_owned(); // 90 × 70, so ct.t() is a column-major view
    let c = ct.t();
    let c = c.slice(s![..65, 3..80]);
    assert!(x.as_slice().is_none() && c.as_slice().is_none());
    let (xo, co) = (x.to_owned(), c.to_owned());
    for kernel in kernels() {
        for metric in [Metric::L2, Metric::InnerProduct] {
            let got = assign_with(kernel, x, c, metric).unwrap();
            let contiguous = assign_with(kernel, xo.view(), co.view(), metric).unwrap();
            assert_eq!(got, contiguous, "{kernel:?} {metric}");
            check(x, c, metric, &got, &format!("{kernel:?} {metric} strided"));
        }
    }
}

/// The two kernels agree with each other on a size that spans many tiles,
/// row blocks and rayon tasks.
#[test]
fn assign_kernels_agree_on_larger_input() {
    let (n, k, d) = (700, 333, 768);
    let x = random(n, d, 31);
    let c = random(k, d, 32);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let all: Vec<Assignment> = kernels()
            .into_iter()
            .map(|kern| assign_with(kern, x.view(), c.view(), metric).unwrap())
            .collect();
        for (i, got) in all.iter().enumerate() {
            let ties = check(
                x.view(),
                c.view(),
                metric,
                got,
                &format!("kernel #{i} {metric}"),
            );
            assert!(ties * 20 <= n, "{ties} near ties");
        }
    }
}

/// Every (row, centroid) score is computed the same way whatever the task
/// grid, so results are bit-identical for any thread count.
#[test]
fn assign_independent_of_thread_count() {
    for &(n, k, d) in &[(3, 900, 40), (70, 900, 40), (1000, 150, 96)] {
        let x = random(n, d, 41);
        let c = random(k, d, 42);
        for kernel in kernels() {
            for metric in [Metric::L2, Metric::InnerProduct] {
                let runs: Vec<Assignment> = [1, 2, 3, 8]
                    .iter()
                    .map(|&t| {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(t)
                            .build()
                            .unwrap();
                        pool.install(|| assign_with(kernel, x.view(), c.view(), metric).unwrap())
                    })
                    .collect();
                for r in &runs[1..] {
                    assert_eq!(r, &runs[0], "{kernel:?} {metric} n={n} k={k} d={d}");
                }
                check(
                    x.view(),
                    c.view(),
                    metric,
                    &runs[0],
                    &format!("{kernel:?} {metric} threads"),
                );
            }
        }
    }
}

#[test]
fn assign_rejects_bad_shapes() {
    let x = random(4, 8, 1);
    for kernel in kernels() {
        assert!(assign_with(kernel, x.view(), random(3, 7, 2).view(), Metric::L2).is_err());
        assert!(assign_with(kernel, x.view(), Array2::zeros((0, 8)).view(), Metric::L2).is_err());
        let empty = assign_with(
            kernel,
            Array2::zeros((0, 8)).view(),
            random(3, 8, 2).view(),
            Metric::L2,
        )
        .unwrap();
        assert!(empty.labels.is_empty() && empty.distances.is_empty());
    }
}

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
fn centroid_sums_bit_exact_and_thread_independent() {
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

#[test]
fn centroid_sums_rejects_bad_labels() {
    let x = random(4, 3, 1);
    let b = CpuBackend::new();
    assert!(b.centroid_sums(x.view(), &[0, 1, 2, 3], 3).is_err());
    assert!(b.centroid_sums(x.view(), &[0, 1, 2], 3).is_err());
    let (s, c) = b.centroid_sums(x.view(), &[0, 0, 0, 0], 2).unwrap();
    assert_eq!(c, vec![4, 0]);
    assert!(s.row(1).iter().all(|&v| v == 0.0));
}

/// Quick throughput probe (not a test): `RVC_PERF=N,K,D,REPS`, e.g.
/// `RVC_PERF=200000,5128,768,3 cargo test --release --test cpu_backend perf -- --ignored --nocapture`.
/// `RVC_PERF_KERNEL=portable|avx512` picks one kernel (default: all available).
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
    for kernel in kernels() {
        if pick
            .as_deref()
            .is_some_and(|p| !kernel.name().starts_with(p))
        {
            continue;
        }
        for rep in 0..reps {
            let waited = quiet.map_or(0.0, wait_quiet);
            let before = cpu_ticks();
            let t = std::time::Instant::now();
            let a = assign_with(kernel, x.view(), c.view(), Metric::L2).unwrap();
            let s = t.elapsed().as_secs_f64();
            let after = cpu_ticks();
            let (busy, total, mine) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
            let others = (busy - mine).max(0.0) / total.max(1e-9);
            println!(
                "{{\"impl\": \"rvc-{}\", \"rep\": {rep}, \"s\": {s:.4}, \"gflops\": {:.1}, \"others\": {others:.3}, \"waited\": {waited:.1}, \"check\": {}}}",
                kernel.name().split(' ').next().unwrap(),
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
