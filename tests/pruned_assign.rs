//! The dimension-pruned exact assignment (`compute::cpu::pruned`) against an
//! f64 reference and the brute-force kernels, on both CPU kernels and on
//! awkward data: duplicated rows and centroids (exact ties), a far-away
//! centroid, k = 1, odd d and d not a multiple of 16, fewer rows than a
//! register tile, a large common offset, constant rows, row subsets.

use ndarray::{Array2, ArrayView2, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::cpu::pruned::{Pruner, Rows, Top2};
use rvc_index::compute::cpu::{Isa, assign_top2_with};

fn kernels() -> Vec<Isa> {
    let mut k = vec![Isa::Portable];
    if Isa::Avx512.is_available() {
        k.push(Isa::Avx512);
    } else {
        eprintln!("note: this CPU has no AVX-512F; only the portable first pass is tested");
    }
    k
}

fn gauss(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller, enough for test data.
    let u: f32 = rng.random_range(1e-7f32..1.0);
    let v: f32 = rng.random_range(0.0f32..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// Rows near a `latent`-dimensional subspace (clusters in it) plus noise:
/// the structure dimension pruning is for.
fn clustered(n: usize, d: usize, latent: usize, clusters: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let basis = Array2::from_shape_fn((latent, d), |_| gauss(&mut rng));
    let centres = Array2::from_shape_fn((clusters, latent), |_| 3.0 * gauss(&mut rng));
    let mut x = Array2::zeros((n, d));
    for i in 0..n {
        let c = rng.random_range(0..clusters);
        let z: Vec<f32> = (0..latent)
            .map(|l| centres[[c, l]] + 0.5 * gauss(&mut rng))
            .collect();
        for j in 0..d {
            let mut v = 0.1 * gauss(&mut rng);
            for l in 0..latent {
                v += z[l] * basis[[l, j]];
            }
            x[[i, j]] = v;
        }
    }
    x
}

fn rows_of(x: &Array2<f32>, idx: impl Iterator<Item = usize>) -> Array2<f32> {
    let idx: Vec<usize> = idx.collect();
    x.select(ndarray::Axis(0), &idx)
}

/// f64 squared distances of row `x` to every centroid.
fn exact(x: &[f32], c: ArrayView2<f32>) -> Vec<f64> {
    c.rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .zip(x)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum()
        })
        .collect()
}

/// Check a pruned result for rows `idx` of `x`; returns near-tie rows.
fn check(x: &Array2<f32>, idx: &[usize], c: &Array2<f32>, got: &Top2, what: &str) -> usize {
    let k = c.nrows();
    let cmax = c
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>())
        .fold(0.0, f64::max);
    let mut ties = 0;
    for (r, &i) in idx.iter().enumerate() {
        let row = x.row(i);
        let row = row.as_slice().unwrap();
        let all = exact(row, c.view());
        let xn: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
        let tol = 2e-5 * (xn + cmax) + 1e-6;
        let mut sorted = all.clone();
        sorted.sort_by(f64::total_cmp);
        let best = all.iter().position(|&v| v == sorted[0]).unwrap();
        let (l, d1, d2) = (
            got.labels[r] as usize,
            got.distances[r] as f64,
            got.second[r] as f64,
        );
        assert!(l < k, "{what} row {i}: label {l}");
        assert!(
            (d1 - sorted[0]).abs() <= tol,
            "{what} row {i}: best {d1} vs {}",
            sorted[0]
        );
        if k == 1 {
            assert_eq!(got.second[r], f32::INFINITY, "{what} row {i}: k = 1");
        } else {
            // A lower bound on the second-best distance, never above it...
            assert!(
                d2 <= sorted[1] + tol,
                "{what} row {i}: second {d2} > {}",
                sorted[1]
            );
        }
        // ...and never below the best one.
        assert!(d2 + tol >= d1, "{what} row {i}: second {d2} < best {d1}");
        if l != best {
            assert!(
                all[l] - sorted[0] <= 2.0 * tol,
                "{what} row {i}: label {l} ({}) is not a near-tie of {best} ({})",
                all[l],
                sorted[0]
            );
            ties += 1;
        }
    }
    ties
}

/// Every choice of leading dimensions, both kernels, all rows and a subset.
fn check_all(x: &Array2<f32>, c: &Array2<f32>, what: &str) -> Vec<(usize, u64)> {
    let n = x.nrows();
    let mut work = Vec::new();
    for kernel in kernels() {
        let Some(p) = Pruner::new(kernel, x.view()) else {
            panic!("{what}: no pruner for d = {}", x.ncols());
        };
        let cs = p.prepare(c.view());
        let subset: Vec<usize> = (0..n).rev().step_by(3).chain([0, 0]).collect();
        for m in p.choices() {
            let w = format!("{what} {kernel:?} m={m}");
            let (_, e0) = p.work();
            let all = p.assign(x.view(), Rows::All, &cs, m);
            let (_, e1) = p.work();
            let ties = check(x, &(0..n).collect::<Vec<_>>(), c, &all, &w);
            assert!(ties * 20 <= n.max(20), "{w}: {ties} near ties");
            let sub = p.assign(x.view(), Rows::Some(&subset), &cs, m);
            check(x, &subset, c, &sub, &format!("{w} subset"));
            // A row's answer does not depend on which other rows are assigned.
            for (r, &i) in subset.iter().enumerate() {
                assert_eq!(sub.labels[r], all.labels[i], "{w} subset row {i}");
                assert_eq!(sub.distances[r], all.distances[i], "{w} subset row {i}");
            }
            work.push((m, e1 - e0));
        }
    }
    work
}

#[test]
fn clustered_data_prunes_and_matches() {
    let (n, d, k) = (1500, 200, 64);
    let x = clustered(n, d, 12, 40, 1);
    let c = rows_of(&x, (0..k).map(|j| j * 23));
    let work = check_all(&x, &c, "clustered");
    // On data this structured, 16 of 200 dimensions already leave few
    // candidates: far fewer exact scores than a full scan's n·k.
    for &(m, scored) in &work {
        assert!(
            scored * 10 < (n * k) as u64,
            "m = {m}: {scored} exact scores for {n} rows × {k} centroids"
        );
    }
    // Same answer as the brute-force kernel, row for row, away from ties.
    let (brute, _) = assign_top2_with(Isa::Portable, x.view(), c.view()).unwrap();
    let p = Pruner::new(Isa::Portable, x.view()).unwrap();
    let r = p.assign(x.view(), Rows::All, &p.prepare(c.view()), 32);
    let differ = brute
        .labels
        .iter()
        .zip(&r.labels)
        .filter(|(a, b)| a != b)
        .count();
    assert!(differ * 100 <= n, "{differ} labels differ from brute force");
}

#[test]
fn awkward_shapes() {
    for (n, d, k, what) in [
        (5, 33, 7, "n below one tile, d odd"),
        (40, 70, 1, "k = 1, d not a multiple of 16"),
        (300, 17, 45, "d just above the smallest choice"),
        (97, 129, 33, "k just above a panel"),
    ] {
        let x = clustered(n, d, 6, 9, n as u64 + d as u64);
        let c = rows_of(&x, (0..k).map(|j| (j * 7) % n));
        check_all(&x, &c, what);
    }
}

#[test]
fn ties_duplicates_and_outliers() {
    let (n, d) = (400, 96);
    let mut x = clustered(n, d, 8, 10, 5);
    // Duplicated rows.
    for i in 0..50 {
        let r = x.row(i).to_owned();
        x.row_mut(n - 1 - i).assign(&r);
    }
    // Centroids: 20 rows, each present three times (exact ties: the lowest
    // copy must win, the copy is the second best), and one far away.
    let base = rows_of(&x, (0..20).map(|j| j * 13));
    let mut c = Array2::zeros((61, d));
    for r in 0..3 {
        c.slice_mut(s![r * 20..(r + 1) * 20, ..]).assign(&base);
    }
    c.row_mut(60).fill(1e4);
    check_all(&x, &c, "duplicates");
    for kernel in kernels() {
        let p = Pruner::new(kernel, x.view()).unwrap();
        let cs = p.prepare(c.view());
        for m in p.choices() {
            let r = p.assign(x.view(), Rows::All, &cs, m);
            for i in 0..n {
                assert!(r.labels[i] < 20, "{kernel:?} m={m} row {i}: lowest copy");
                assert!(
                    r.second[i] <= r.distances[i],
                    "{kernel:?} m={m} row {i}: tie"
                );
            }
        }
    }
}

#[test]
fn offset_and_constant_rows() {
    // A large common offset: the bounds work on centred rows, the exact
    // scores on the rows as given.
    let x = clustered(300, 64, 5, 8, 9).mapv(|v| v + 1000.0);
    let c = rows_of(&x, (0..30).map(|j| j * 9));
    check_all(&x, &c, "offset");
    // Every row equal: a degenerate covariance, every centroid tied.
    let x = Array2::from_elem((50, 40), 2.5f32);
    let c = Array2::from_elem((6, 40), 2.5f32);
    for kernel in kernels() {
        let p = Pruner::new(kernel, x.view()).unwrap();
        let cs = p.prepare(c.view());
        for m in p.choices() {
            let r = p.assign(x.view(), Rows::All, &cs, m);
            assert!(r.labels.iter().all(|&l| l == 0), "{kernel:?} m={m}");
            assert!(r.distances.iter().all(|&v| v == 0.0), "{kernel:?} m={m}");
        }
    }
}

#[test]
fn small_d_has_no_pruner() {
    let x = clustered(30, 16, 3, 3, 2);
    assert!(Pruner::new(Isa::Portable, x.view()).is_none());
    let empty = Array2::<f32>::zeros((0, 64));
    assert!(Pruner::new(Isa::Portable, empty.view()).is_none());
}

/// A projection fitted on some rows serves other rows (mini-batches), and
/// the one-call `assign_top2` gives the same answer as a `Pruner`.
#[test]
fn reused_projection_and_one_call() {
    let x = clustered(2000, 120, 10, 30, 21);
    let (a, b) = (
        x.slice(s![..800, ..]).to_owned(),
        x.slice(s![800.., ..]).to_owned(),
    );
    let c = rows_of(&x, (0..50).map(|j| j * 37));
    for kernel in kernels() {
        let pa = Pruner::new(kernel, a.view()).unwrap();
        let pb = pa.with_rows(b.view());
        let cs = pb.prepare(c.view());
        for m in pb.choices() {
            let r = pb.assign(b.view(), Rows::All, &cs, m);
            check(
                &b,
                &(0..b.nrows()).collect::<Vec<_>>(),
                &c,
                &r,
                &format!("{kernel:?} reused m={m}"),
            );
        }
        // Enough centroids for the first pass to pay: the call prunes.
        let many = rows_of(&x, (0..300).map(|j| j * 6));
        let one = rvc_index::compute::cpu::pruned::assign_top2(kernel, x.view(), many.view())
            .expect("pruning pays for 300 centroids of structured rows");
        let all: Vec<usize> = (0..x.nrows()).collect();
        check(&x, &all, &many, &one, &format!("{kernel:?} one call"));
    }
}
