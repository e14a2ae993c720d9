//! Results of the neighbour primitives: [`Neighbours`] (ids and scores,
//! best first, faiss's padding) and [`TopK`], the running list of the best
//! keys every CPU kernel folds candidates into.

use ndarray::Array2;

use crate::Metric;

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
