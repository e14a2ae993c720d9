//! Inverted-file helpers every IVF index kind uses: RVC's list count, the
//! assignment of rows to lists and the id lists faiss `add` leaves.

use ndarray::{ArrayView2, s};

use crate::compute::Backend;
use crate::progress::Progress;
use crate::{Metric, Result};

/// Rows assigned per backend call, so progress moves and GPU buffers stay bounded.
pub const ASSIGN_CHUNK: usize = 65_536;

/// RVC's list count: `min(int(16·√N), N // 39)`, at least 1.
pub fn rvc_nlist(n: usize) -> usize {
    let a = (16.0 * (n as f64).sqrt()) as usize;
    a.min(n / 39).max(1)
}

/// Ids of each list, ascending, as faiss `add` leaves them.
pub fn build_lists(labels: &[u32], nlist: usize) -> Vec<Vec<i64>> {
    let mut sizes = vec![0usize; nlist];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    let mut lists: Vec<Vec<i64>> = sizes.iter().map(|&s| Vec::with_capacity(s)).collect();
    for (i, &l) in labels.iter().enumerate() {
        lists[l as usize].push(i as i64);
    }
    lists
}

/// Assign every row to its nearest centroid, in chunks with progress.
/// Returns the labels and the sum of the distances (inner products for
/// `Metric::InnerProduct`) to the assigned centroids.
pub fn assign_all(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    centroids: ArrayView2<f32>,
    metric: Metric,
    progress: &Progress,
) -> Result<(Vec<u32>, f64)> {
    let bar = progress.bar(x.nrows() as u64, "add");
    let mut labels = Vec::with_capacity(x.nrows());
    let mut total = 0f64;
    let mut lo = 0;
    while lo < x.nrows() {
        let hi = (lo + ASSIGN_CHUNK).min(x.nrows());
        let xs = x.slice(s![lo..hi, ..]);
        let a = match metric {
            Metric::L2 => crate::compute::assign_l2(backend, xs, centroids)?,
            _ => backend.assign(xs, centroids, metric)?,
        };
        total += a.distances.iter().map(|&v| v as f64).sum::<f64>();
        labels.extend_from_slice(&a.labels);
        bar.inc((hi - lo) as u64);
        lo = hi;
    }
    bar.finish_and_clear();
    Ok((labels, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rvc_nlist_follows_rvc_rule() {
        // min(int(16·√N), N // 39): the second term rules small sets, the first large ones.
        assert_eq!(rvc_nlist(1), 1);
        assert_eq!(rvc_nlist(39), 1);
        assert_eq!(rvc_nlist(3000), 76);
        assert_eq!(rvc_nlist(200_000), 5128);
        assert_eq!(rvc_nlist(1_000_000), 16_000);
    }

    #[test]
    fn lists_hold_ascending_ids_per_label() {
        let lists = build_lists(&[2, 0, 2, 1, 0, 2], 4);
        assert_eq!(lists, vec![vec![1, 4], vec![3], vec![0, 2, 5], vec![]]);
    }
}
