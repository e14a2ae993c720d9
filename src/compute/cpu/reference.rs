//! Plain scalar versions of the backend operations, written for clarity.
//! Tests compare the fast kernels (CPU and GPU) against these.

use ndarray::{Array2, ArrayView2};

use crate::Metric;
use crate::compute::Assignment;

/// Exact nearest centroid per row, f64 accumulation, ties to the lowest index.
pub fn assign(x: ArrayView2<f32>, c: ArrayView2<f32>, metric: Metric) -> Assignment {
    let mut labels = Vec::with_capacity(x.nrows());
    let mut distances = Vec::with_capacity(x.nrows());
    for row in x.rows() {
        let mut best = (0u32, metric.worst() as f64);
        let mut first = true;
        for (j, cen) in c.rows().into_iter().enumerate() {
            let s: f64 = match metric {
                Metric::L2 => row
                    .iter()
                    .zip(cen.iter())
                    .map(|(&a, &b)| {
                        let t = a as f64 - b as f64;
                        t * t
                    })
                    .sum(),
                Metric::InnerProduct => row
                    .iter()
                    .zip(cen.iter())
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum(),
            };
            let better = match metric {
                Metric::L2 => s < best.1,
                Metric::InnerProduct => s > best.1,
            };
            if first || better {
                best = (j as u32, s);
                first = false;
            }
        }
        labels.push(best.0);
        distances.push(best.1 as f32);
    }
    Assignment { labels, distances }
}

/// Best and second-best squared L2 distance per row (f64 accumulation).
pub fn assign_top2(x: ArrayView2<f32>, c: ArrayView2<f32>) -> (Assignment, Vec<f32>) {
    let mut a = Assignment::default();
    let mut second = Vec::with_capacity(x.nrows());
    for row in x.rows() {
        let (mut b1, mut b2, mut l) = (f64::INFINITY, f64::INFINITY, 0u32);
        for (j, cen) in c.rows().into_iter().enumerate() {
            let s: f64 = row
                .iter()
                .zip(cen.iter())
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum();
            if s < b1 {
                b2 = b1;
                b1 = s;
                l = j as u32;
            } else if s < b2 {
                b2 = s;
            }
        }
        a.labels.push(l);
        a.distances.push(b1 as f32);
        second.push(b2 as f32);
    }
    (a, second)
}

/// Per-label sums (f64 accumulation) and counts.
pub fn centroid_sums(x: ArrayView2<f32>, labels: &[u32], k: usize) -> (Array2<f32>, Vec<u64>) {
    let d = x.ncols();
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0u64; k];
    for (row, &l) in x.rows().into_iter().zip(labels) {
        let l = l as usize;
        counts[l] += 1;
        for (s, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(row.iter()) {
            *s += v as f64;
        }
    }
    let sums = Array2::from_shape_vec((k, d), sums.into_iter().map(|v| v as f32).collect())
        .expect("shape matches");
    (sums, counts)
}
