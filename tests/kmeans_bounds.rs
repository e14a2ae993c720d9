//! k-means with bounds-based row skipping gives the same result as scanning
//! every row, while skipping rows in later iterations.

mod common;

use ndarray::{Array2, ArrayView2};
use rvc_index::compute::cpu::reference;
use rvc_index::compute::{Assignment, Backend, BackendInfo};
use rvc_index::train::kmeans::{KmeansParams, train};
use rvc_index::{Metric, Result};

/// The scalar reference, with or without the second-best assignment.
struct Reference {
    top2: bool,
}

impl Backend for Reference {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "reference".into(),
            name: String::new(),
            device_type: String::new(),
            api: String::new(),
        }
    }
    fn assign(&self, x: ArrayView2<f32>, c: ArrayView2<f32>, m: Metric) -> Result<Assignment> {
        Ok(reference::assign(x, c, m))
    }
    fn assign_top2(
        &self,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
    ) -> Option<Result<(Assignment, Vec<f32>)>> {
        self.top2.then(|| Ok(reference::assign_top2(x, c)))
    }
    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        l: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        Ok(reference::centroid_sums(x, l, k))
    }
}

#[test]
fn bounds_change_nothing_but_the_work() {
    // Overlapping components, so labels keep changing for several iterations.
    let x = common::mixture(3000, 24, 60, 4) * 0.3;
    let params = KmeansParams::ivf(40, Metric::L2);
    let plain = train(&Reference { top2: false }, x.view(), &params, |_| {}).unwrap();
    let fast = train(&Reference { top2: true }, x.view(), &params, |_| {}).unwrap();
    assert_eq!(plain.iterations.len(), fast.iterations.len());
    for (a, b) in plain.iterations.iter().zip(&fast.iterations) {
        assert!(
            (a.objective - b.objective).abs() <= 1e-5 * a.objective,
            "{a:?} vs {b:?}"
        );
        assert_eq!(a.nsplit, b.nsplit);
    }
    let diff = (&plain.centroids - &fast.centroids)
        .mapv(f32::abs)
        .fold(0f32, |m, &v| m.max(v));
    assert!(diff < 1e-4, "centroids differ by {diff}");
    assert_eq!(
        plain.final_assignment.as_ref().unwrap().labels,
        fast.final_assignment.as_ref().unwrap().labels
    );
    assert!(plain.iterations.iter().all(|s| s.recomputed == 3000));
    let last = fast.iterations.last().unwrap();
    assert!(
        last.recomputed < 1500,
        "later iterations skip most rows: {:?}",
        fast.iterations
    );
}
