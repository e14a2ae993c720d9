//! Exact k-nearest-neighbour search: GEMM tiles (the `gemm` crate) with a
//! running top-k per query, never an nq×nb matrix. This is the portable
//! implementation behind `Backend::knn`; backends may override it.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::Metric;

/// Queries per task and database rows per GEMM tile: a 64×1024 f32 tile
/// (256 KiB) stays in L2 while its scores are folded into the top-k lists.
const QB: usize = 64;
const DB: usize = 1024;

/// Result of a k-NN search, best first. Missing results (fewer than k
/// database rows) are id -1 with the metric's worst score, as faiss reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    pub ids: Array2<i64>,
    /// Squared L2 distances (ascending) or inner products (descending).
    pub scores: Array2<f32>,
}

/// A fixed-capacity list of the best (smallest) keys seen, ties kept in
/// arrival order so the earlier candidate wins. Keys are "smaller is
/// better": squared L2 distances, or negated inner products.
#[derive(Clone, Debug)]
pub struct TopK {
    pub keys: Vec<f32>,
    pub ids: Vec<i64>,
    k: usize,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            keys: Vec::with_capacity(k + 1),
            ids: Vec::with_capacity(k + 1),
            k,
        }
    }

    pub fn clear(&mut self) {
        self.keys.clear();
        self.ids.clear();
    }

    /// Keys must be below this to enter.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.keys.len() < self.k {
            f32::INFINITY
        } else {
            self.keys[self.k - 1]
        }
    }

    /// Like `push`, but equal keys are ordered by id whatever the arrival
    /// order, as faiss's heaps order them: lower id first, or higher id first
    /// with `high_first` (faiss's max-heaps, for inner product).
    #[inline]
    pub fn push_by_id(&mut self, key: f32, id: i64, high_first: bool) {
        let tie = |i: i64| if high_first { -i } else { i };
        if self.keys.len() == self.k
            && (key, tie(id)) >= (self.keys[self.k - 1], tie(self.ids[self.k - 1]))
        {
            return;
        }
        let pos = self
            .keys
            .iter()
            .zip(&self.ids)
            .position(|(&k, &i)| (k, tie(i)) > (key, tie(id)))
            .unwrap_or(self.keys.len());
        self.keys.insert(pos, key);
        self.ids.insert(pos, id);
        self.keys.truncate(self.k);
        self.ids.truncate(self.k);
    }

    #[inline]
    pub fn push(&mut self, key: f32, id: i64) {
        // Also rejects NaN keys.
        if key.partial_cmp(&self.threshold()) != Some(std::cmp::Ordering::Less) {
            return;
        }
        let pos = self.keys.partition_point(|&v| v <= key);
        self.keys.insert(pos, key);
        self.ids.insert(pos, id);
        self.keys.truncate(self.k);
        self.ids.truncate(self.k);
    }
}

/// The `k` best rows of `y` for every row of `x` under `metric`.
pub fn knn(x: ArrayView2<f32>, y: ArrayView2<f32>, k: usize, metric: Metric) -> Neighbours {
    let (nq, d) = x.dim();
    let nb = y.nrows();
    assert_eq!(y.ncols(), d, "query and database dimensions differ");
    let x = x.as_standard_layout();
    let y = y.as_standard_layout();
    let (xs, ys) = (x.as_slice().unwrap(), y.as_slice().unwrap());
    let ynorm: Vec<f32> = ys
        .chunks_exact(d.max(1))
        .map(|r| r.iter().map(|v| v * v).sum())
        .take(nb)
        .collect();
    let mut ids = Array2::from_elem((nq, k), -1i64);
    let mut scores = Array2::from_elem((nq, k), metric.worst());

    let ids_s = ids.as_slice_mut().unwrap();
    let scores_s = scores.as_slice_mut().unwrap();
    ids_s
        .par_chunks_mut(QB * k.max(1))
        .zip(scores_s.par_chunks_mut(QB * k.max(1)))
        .enumerate()
        .for_each(|(b, (ids_b, scores_b))| {
            let q0 = b * QB;
            let qn = QB.min(nq - q0);
            let mut tops: Vec<TopK> = (0..qn).map(|_| TopK::new(k)).collect();
            let mut tile = vec![0f32; QB * DB];
            let mut j0 = 0;
            while j0 < nb && k > 0 {
                let jn = DB.min(nb - j0);
                // tile[i][j] = x[q0+i] · y[j0+j]
                unsafe {
                    gemm::gemm(
                        qn,
                        jn,
                        d,
                        tile.as_mut_ptr(),
                        1,
                        jn as isize,
                        false,
                        xs.as_ptr().add(q0 * d),
                        1,
                        d as isize,
                        ys.as_ptr().add(j0 * d),
                        d as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (i, top) in tops.iter_mut().enumerate() {
                    let row = &tile[i * jn..(i + 1) * jn];
                    match metric {
                        Metric::L2 => {
                            for (j, &ip) in row.iter().enumerate() {
                                top.push(ynorm[j0 + j] - 2.0 * ip, (j0 + j) as i64);
                            }
                        }
                        Metric::InnerProduct => {
                            for (j, &ip) in row.iter().enumerate() {
                                top.push(-ip, (j0 + j) as i64);
                            }
                        }
                    }
                }
                j0 += jn;
            }
            for (i, top) in tops.iter().enumerate() {
                let xn: f32 = xs[(q0 + i) * d..(q0 + i + 1) * d]
                    .iter()
                    .map(|v| v * v)
                    .sum();
                for (r, (&key, &id)) in top.keys.iter().zip(&top.ids).enumerate() {
                    ids_b[i * k + r] = id;
                    scores_b[i * k + r] = match metric {
                        Metric::L2 => (key + xn).max(0.0),
                        Metric::InnerProduct => -key,
                    };
                }
            }
        });
    Neighbours { ids, scores }
}

/// Gather per-query top-k lists (keys as `TopK` keeps them) into `Neighbours`
/// with faiss's padding and score sign.
pub fn collect(tops: &[TopK], k: usize, metric: Metric) -> Neighbours {
    let mut ids = Array2::from_elem((tops.len(), k), -1i64);
    let mut scores = Array2::from_elem((tops.len(), k), metric.worst());
    for (i, t) in tops.iter().enumerate() {
        for (r, (&key, &id)) in t.keys.iter().zip(&t.ids).enumerate() {
            ids[[i, r]] = id;
            scores[[i, r]] = match metric {
                Metric::L2 => key,
                Metric::InnerProduct => -key,
            };
        }
    }
    Neighbours { ids, scores }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_order_and_ties() {
        let mut t = TopK::new(3);
        for (k, id) in [(5.0, 0), (1.0, 1), (5.0, 2), (1.0, 3), (0.5, 4), (1.0, 5)] {
            t.push(k, id);
        }
        assert_eq!(t.keys, vec![0.5, 1.0, 1.0]);
        assert_eq!(t.ids, vec![4, 1, 3]);
    }
}
