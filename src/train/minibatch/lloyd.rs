//! The pieces both levels share: a subset of rows read through an index
//! list, Lloyd iterations on it through `Backend::assign` and
//! `Backend::centroid_sums`, re-seeding of empty centres at far rows, and the
//! split of K centres among groups.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use ndarray::{Array2, ArrayView2, s};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::compute::Backend;
use crate::{Metric, Result};

/// A subset gathered once is kept while it holds at most this many floats
/// (256 MiB); a larger one is gathered again, chunk by chunk, every pass.
const CACHE_FLOATS: usize = 64 << 20;

/// Rows of `x` named by `idx`, in that order.
pub(super) struct Subset<'a> {
    x: ArrayView2<'a, f32>,
    pub idx: &'a [u32],
    cache: Option<Array2<f32>>,
    chunk: usize,
}

/// Copy rows `idx` of `x` into `buf` (resized to idx.len() rows).
pub(super) fn gather(x: ArrayView2<f32>, idx: &[u32], buf: &mut Array2<f32>) {
    let d = x.ncols();
    if buf.nrows() != idx.len() {
        *buf = Array2::zeros((idx.len(), d));
    }
    for (mut dst, &i) in buf.rows_mut().into_iter().zip(idx) {
        dst.assign(&x.row(i as usize));
    }
}

impl<'a> Subset<'a> {
    /// `chunk`: rows per backend call when the subset is not cached.
    pub fn new(x: ArrayView2<'a, f32>, idx: &'a [u32], chunk: usize) -> Self {
        let cache = (idx.len().saturating_mul(x.ncols()) <= CACHE_FLOATS).then(|| {
            let mut b = Array2::zeros((0, x.ncols()));
            gather(x, idx, &mut b);
            b
        });
        Subset {
            x,
            idx,
            cache,
            chunk: chunk.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.idx.len()
    }

    /// Row `i` of the subset.
    pub fn row(&self, i: usize) -> ndarray::ArrayView1<'_, f32> {
        self.x.row(self.idx[i] as usize)
    }

    /// `f(offset, rows)` over consecutive chunks: the whole subset in one
    /// call when it is cached, else `chunk` gathered rows at a time.
    pub fn for_each_chunk(
        &self,
        buf: &mut Array2<f32>,
        mut f: impl FnMut(usize, ArrayView2<f32>) -> Result<()>,
    ) -> Result<()> {
        if let Some(c) = &self.cache {
            return f(0, c.view());
        }
        for lo in (0..self.idx.len()).step_by(self.chunk) {
            let hi = (lo + self.chunk).min(self.idx.len());
            gather(self.x, &self.idx[lo..hi], buf);
            f(lo, buf.view())?;
        }
        Ok(())
    }
}

/// Rows drawn with probability proportional to a weight (Efraimidis–Spirakis:
/// keep the `cap` largest keys ln(u)/w).
pub(super) struct Reservoir {
    cap: usize,
    heap: BinaryHeap<Keyed>,
}

struct Keyed(f64, usize);
impl PartialEq for Keyed {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Keyed {
    // Reversed so that the heap top is the smallest key, the one to evict.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

impl Reservoir {
    pub fn new(cap: usize) -> Self {
        Reservoir {
            cap,
            heap: BinaryHeap::with_capacity(cap + 1),
        }
    }

    pub fn offer(&mut self, rng: &mut ChaCha8Rng, item: usize, weight: f64) {
        // Rows already on a centre (weight 0) would only duplicate it.
        if self.cap == 0 || weight.is_nan() || weight <= 0.0 {
            return;
        }
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let key = u.ln() / weight;
        if self.heap.len() < self.cap {
            self.heap.push(Keyed(key, item));
        } else if self.heap.peek().is_some_and(|t| key > t.0) {
            self.heap.pop();
            self.heap.push(Keyed(key, item));
        }
    }

    /// Drawn items, heaviest first; empties the reservoir.
    pub fn take(&mut self) -> Vec<usize> {
        let mut v: Vec<Keyed> = std::mem::take(&mut self.heap).into_vec();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|k| k.1).collect()
    }
}

/// Up to `m` distinct positions of `dist`, drawn with probability
/// proportional to the distance (squared, as the backends report it), as
/// k-means++ places a new centre. Fewer when fewer rows are off a centre.
pub(super) fn far_rows(rng: &mut ChaCha8Rng, dist: &[f32], m: usize) -> Vec<usize> {
    let mut r = Reservoir::new(m);
    for (i, &v) in dist.iter().enumerate() {
        r.offer(rng, i, v as f64);
    }
    r.take()
}

/// Mean of each centre's rows from f64 sums; the centres nobody took are
/// returned (and left where they were).
pub(super) fn update(centroids: &mut Array2<f32>, sums: &[f64], counts: &[u64]) -> Vec<usize> {
    let d = centroids.ncols();
    let mut dead = Vec::new();
    for (j, mut row) in centroids.rows_mut().into_iter().enumerate() {
        if counts[j] == 0 {
            dead.push(j);
            continue;
        }
        let inv = 1.0 / counts[j] as f64;
        for (c, s) in row.iter_mut().zip(&sums[j * d..(j + 1) * d]) {
            *c = (*s * inv) as f32;
        }
    }
    dead
}

/// What a Lloyd run reports.
pub(super) struct LloydRun {
    /// Σ squared distance over the subset's rows at each iteration, before its update.
    pub inertia: Vec<f64>,
    /// Each row's centre in the last assignment (the one the final means
    /// were taken over).
    pub labels: Vec<u32>,
    pub reseeded: usize,
}

/// `iters` exact Lloyd iterations of `centroids` on `rows` (with 0, one
/// assignment and no update). Empty centres are re-seeded at rows drawn ∝
/// distance². `evals` counts row–centre distances computed.
pub(super) fn lloyd(
    backend: &dyn Backend,
    rows: &Subset,
    centroids: &mut Array2<f32>,
    iters: usize,
    rng: &mut ChaCha8Rng,
    evals: &mut u64,
) -> Result<LloydRun> {
    let (k, d) = centroids.dim();
    let n = rows.len();
    let mut out = LloydRun {
        inertia: Vec::with_capacity(iters),
        labels: vec![0; n],
        reseeded: 0,
    };
    let mut buf = Array2::<f32>::zeros((0, d));
    let mut dist = vec![0f32; n];
    for _ in 0..iters.max(1) {
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0u64; k];
        rows.for_each_chunk(&mut buf, |lo, xb| {
            let a = backend.assign(xb, centroids.view(), Metric::L2)?;
            out.labels[lo..lo + xb.nrows()].copy_from_slice(&a.labels);
            for (o, &v) in dist[lo..lo + xb.nrows()].iter_mut().zip(&a.distances) {
                *o = v.max(0.0);
            }
            if iters == 0 {
                return Ok(());
            }
            let (bs, bc) = backend.centroid_sums(xb, &a.labels, k)?;
            for (acc, &v) in sums.iter_mut().zip(bs.iter()) {
                *acc += v as f64;
            }
            for (acc, &c) in counts.iter_mut().zip(&bc) {
                *acc += c;
            }
            Ok(())
        })?;
        *evals += (n * k) as u64;
        if iters == 0 {
            break;
        }
        out.inertia.push(dist.iter().map(|&v| v as f64).sum());
        let dead = update(centroids, &sums, &counts);
        if !dead.is_empty() {
            let far = far_rows(rng, &dist, dead.len());
            for (&c, &i) in dead.iter().zip(&far) {
                centroids.row_mut(c).assign(&rows.row(i));
            }
            out.reseeded += far.len().min(dead.len());
        }
    }
    Ok(out)
}

/// Nearest of `centroids` for every row of `x`, in chunks of `chunk` rows
/// (no copy of `x`): labels and squared distances.
pub(super) fn assign_all(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    centroids: ArrayView2<f32>,
    chunk: usize,
    evals: &mut u64,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let n = x.nrows();
    let mut labels = Vec::with_capacity(n);
    let mut dist = Vec::with_capacity(n);
    let mut lo = 0;
    while lo < n {
        let hi = (lo + chunk.max(1)).min(n);
        let a = backend.assign(x.slice(s![lo..hi, ..]), centroids, Metric::L2)?;
        labels.extend_from_slice(&a.labels);
        dist.extend(a.distances.iter().map(|v| v.max(0.0)));
        lo = hi;
    }
    *evals += (n * centroids.nrows()) as u64;
    Ok((labels, dist))
}

/// Split `k` centres among groups of `sizes` rows in proportion to
/// `weights` (Sainte-Laguë: each next centre goes to the group with the
/// highest weight / (2·centres + 1)), every non-empty group at least one,
/// none more than its rows. Needs `k` ≥ non-empty groups and ≤ Σ sizes.
pub(super) fn allocate(k: usize, sizes: &[usize], weights: &[f64]) -> Vec<usize> {
    #[derive(PartialEq)]
    struct Prio(f64, usize);
    impl Eq for Prio {}
    impl PartialOrd for Prio {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Prio {
        // Highest priority first, then the lowest group index.
        fn cmp(&self, o: &Self) -> Ordering {
            self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
        }
    }
    let mut out: Vec<usize> = sizes.iter().map(|&s| (s > 0) as usize).collect();
    let mut left = k.saturating_sub(out.iter().sum());
    let prio = |g: usize, seats: usize| {
        let w = weights[g];
        Prio(
            if w.is_finite() { w.max(0.0) } else { 0.0 } / (2 * seats + 1) as f64,
            g,
        )
    };
    let mut heap: BinaryHeap<Prio> = (0..sizes.len())
        .filter(|&g| out[g] > 0 && out[g] < sizes[g])
        .map(|g| prio(g, out[g]))
        .collect();
    while left > 0 {
        let Some(Prio(_, g)) = heap.pop() else { break };
        out[g] += 1;
        left -= 1;
        if out[g] < sizes[g] {
            heap.push(prio(g, out[g]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn reservoir_prefers_heavy_rows_and_skips_zero_weight() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut heavy = 0;
        for _ in 0..200 {
            let t = far_rows(&mut rng, &[1.0, 9.0, 0.0], 1);
            assert_eq!(t.len(), 1);
            assert_ne!(t[0], 2);
            heavy += (t[0] == 1) as usize;
        }
        // P(row 1) = 0.9: 200 draws put it near 180.
        assert!((160..=195).contains(&heavy), "{heavy}");
    }

    #[test]
    fn allocation_is_proportional_and_capped() {
        // 1000 centres over weights 1:3 → 250:750.
        assert_eq!(
            allocate(1000, &[10_000, 10_000], &[1.0, 3.0]),
            vec![250, 750]
        );
        // A group cannot take more centres than rows; the rest go elsewhere.
        assert_eq!(
            allocate(10, &[2, 100, 0], &[100.0, 1.0, 5.0]),
            vec![2, 8, 0]
        );
        // Every non-empty group gets one, even at weight 0.
        assert_eq!(allocate(3, &[5, 5, 5], &[0.0, 0.0, 1.0]), vec![1, 1, 1]);
        let a = allocate(
            10_000,
            &[3000; 100],
            &(1..=100).map(f64::from).collect::<Vec<_>>(),
        );
        assert_eq!(a.iter().sum::<usize>(), 10_000);
        // Proportional: group g gets about 10 000·g/5050 centres.
        for (g, &c) in a.iter().enumerate() {
            let want = 10_000.0 * (g + 1) as f64 / 5050.0;
            assert!((c as f64 - want).abs() <= 1.0, "{g}: {c} vs {want}");
        }
    }
}
