//! k-means on the CPU backend with the bounds and the dimension-pruned
//! assignment gives the result of the plain path (every row against every
//! centroid each iteration), while computing far fewer full distances, and
//! the same result on every run.

mod common;

use ndarray::{Array2, ArrayView2};
use rvc_index::Metric;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::train::kmeans::{KmeansParams, KmeansResult, Pruning, train_with};

fn data() -> Array2<f32> {
    // The benchmark harness's generator: RVC-like rows near a 48-dimensional
    // subspace; 150 columns (not a multiple of 16).
    rvc_index::synthetic::database(6000, 150, 3).unwrap()
}

fn run(x: ArrayView2<f32>, k: usize, pruning: Pruning) -> KmeansResult {
    let params = KmeansParams::ivf(k, Metric::L2);
    train_with(&CpuBackend::new(), x, &params, pruning, |_| {}).unwrap()
}

fn d2(a: ArrayView2<f32>, i: usize, c: ArrayView2<f32>, j: usize) -> f64 {
    a.row(i)
        .iter()
        .zip(c.row(j))
        .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
        .sum()
}

#[test]
fn pruned_kmeans_matches_plain() {
    let x = data();
    let (n, k) = (x.nrows(), 60);
    let plain = run(x.view(), k, Pruning::Off);
    let pruned = run(x.view(), k, Pruning::On);
    assert_eq!(plain.iterations.len(), pruned.iterations.len());
    for (a, b) in plain.iterations.iter().zip(&pruned.iterations) {
        assert!(
            (a.objective - b.objective).abs() <= 1e-5 * a.objective,
            "{a:?} vs {b:?}"
        );
        assert_eq!(a.nsplit, b.nsplit);
        assert_eq!((a.recomputed, a.pruned_dims), (n, 0), "plain: {a:?}");
        assert_eq!(a.exact_scores, (n * k) as u64, "plain: {a:?}");
        assert!(b.pruned_dims > 0, "pruned: {b:?}");
        // Far fewer full-dimension distances than a full scan of the
        // searched rows.
        assert!(
            b.exact_scores * 5 < (b.recomputed * k) as u64,
            "pruned: {b:?}"
        );
    }
    let last = pruned.iterations.last().unwrap();
    assert!(
        last.recomputed < n,
        "bounds skip rows: {:?}",
        pruned.iterations
    );
    let diff = (&plain.centroids - &pruned.centroids)
        .mapv(f32::abs)
        .fold(0f32, |m, &v| m.max(v));
    let scale = plain.centroids.mapv(f32::abs).fold(0f32, |m, &v| m.max(v));
    assert!(
        diff <= 1e-4 * scale,
        "centroids differ by {diff} (scale {scale})"
    );
    // Final labels: equal, or a near-tie under the final centroids.
    let (a, b) = (
        plain.final_assignment.as_ref().unwrap(),
        pruned.final_assignment.as_ref().unwrap(),
    );
    let c = plain.centroids.view();
    let mut ties = 0;
    for i in 0..n {
        let (la, lb) = (a.labels[i] as usize, b.labels[i] as usize);
        if la != lb {
            let (da, db) = (d2(x.view(), i, c, la), d2(x.view(), i, c, lb));
            assert!(
                (da - db).abs() <= 1e-4 * da.max(db),
                "row {i}: {da} vs {db}"
            );
            ties += 1;
        }
        // Both are f32 distances: within a few ulps of ‖x‖² + ‖c‖².
        let sq = |v: ndarray::ArrayView1<f32>| v.iter().map(|&t| (t as f64).powi(2)).sum::<f64>();
        let tol = 2e-5 * (sq(x.row(i)) + sq(c.row(la))) + 1e-6;
        assert!(
            (a.distances[i] as f64 - b.distances[i] as f64).abs() <= tol,
            "row {i}: {} vs {}",
            a.distances[i],
            b.distances[i]
        );
    }
    assert!(ties * 100 <= n, "{ties} labels differ");
}

#[test]
fn pruned_kmeans_is_deterministic() {
    let x = data();
    let a = run(x.view(), 40, Pruning::On);
    let b = run(x.view(), 40, Pruning::On);
    assert!(a.iterations.iter().all(|s| s.pruned_dims > 0));
    let bits = |r: &KmeansResult| r.centroids.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(
        a.final_assignment.unwrap().labels,
        b.final_assignment.unwrap().labels
    );
}

#[test]
fn inner_product_and_tiny_cases_scan_everything() {
    let x = data();
    let params = KmeansParams::ivf(20, Metric::InnerProduct);
    let r = train_with(&CpuBackend::new(), x.view(), &params, Pruning::On, |_| {}).unwrap();
    assert!(
        r.iterations
            .iter()
            .all(|s| s.pruned_dims == 0 && s.recomputed == r.train_rows)
    );
    // k = 1 and n = k.
    let one = run(x.slice(ndarray::s![..200, ..]), 1, Pruning::On);
    assert!(one.final_assignment.unwrap().labels.iter().all(|&l| l == 0));
    let few = x.slice(ndarray::s![..30, ..]).to_owned();
    let r = run(few.view(), 30, Pruning::On);
    let labels = r.final_assignment.unwrap().labels;
    assert_eq!(labels, (0..30).collect::<Vec<u32>>());
}

#[test]
fn auto_builds_the_pruner_only_where_it_can_pay() {
    use rvc_index::compute::cpu::pruned::worth_building;
    assert!(worth_building(200_000, 768, 5128, 11));
    assert!(worth_building(50_000, 768, 1538, 11));
    assert!(!worth_building(1800, 768, 46, 11));
    // Too small to repay the projection: Auto runs the bounds alone.
    let x = rvc_index::synthetic::database(2000, 96, 4).unwrap();
    let r = run(x.view(), 8, Pruning::Auto);
    assert!(r.iterations.iter().all(|s| s.pruned_dims == 0));
    assert!(r.iterations.last().unwrap().recomputed < r.train_rows);
}

const FAISS_KMEANS: &str = r#"
import sys, json, numpy as np, faiss
x = np.load(sys.argv[1]); k = int(sys.argv[2])
clus = faiss.Clustering(x.shape[1], k)
clus.niter = 10; clus.seed = 1234; clus.max_points_per_centroid = 256
clus.train(x, faiss.IndexFlatL2(x.shape[1]))
print(json.dumps([clus.iteration_stats.at(i).obj for i in range(clus.iteration_stats.size())]))
"#;

/// The pruned path against faiss `Clustering` itself on the same rows: the
/// objective of every iteration within 0.1 % (in practice rounding only).
#[test]
fn pruned_kmeans_follows_faiss_clustering() {
    let x = data();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    ndarray_npy::write_npy(&path, &x).unwrap();
    let ours = run(x.view(), 60, Pruning::On);
    assert!(ours.iterations.iter().all(|s| s.pruned_dims > 0));
    let Some(out) = common::python(FAISS_KMEANS, &[path.to_str().unwrap(), "60"]) else {
        return;
    };
    let theirs: Vec<f64> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ours.iterations.len(), theirs.len());
    for (a, b) in ours.iterations.iter().zip(&theirs) {
        assert!(
            (a.objective - b).abs() <= 1e-3 * b,
            "iteration {}: objective {} vs faiss {b}",
            a.iteration,
            a.objective
        );
    }
    let (a, b) = (
        ours.iterations.last().unwrap().objective,
        theirs.last().unwrap(),
    );
    eprintln!("final objective: ours {a}, faiss {b}, ratio {}", a / b);
}
