//! k-means with the semantics faiss uses to train an IVF coarse quantizer
//! (`faiss::Clustering` as called by `IndexIVF::train`): the same seeded
//! subsample, the same initial centroids, the same empty-cluster splits, so
//! that on the same rows our centroids follow faiss's up to rounding.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, Axis};
use rand_mt::Mt;

use super::bounds::{self, BackendTop2, Bounds, PrunedTop2, Top2Source};
use crate::compute::cpu::pruned::{self, Pruner};
use crate::compute::{Assignment, Backend};

/// Rows on which each iteration estimates what the pruned pass costs.
const CHOOSE_SAMPLE: usize = 256;
/// The pruned pass is used when its estimated cost is below this share of
/// a brute-force scan.
const PRUNE_BELOW: f64 = 0.5;

/// One iteration's assignment.
struct Assigned {
    labels: Vec<u32>,
    distances: Vec<f32>,
    recomputed: usize,
    exact_scores: u64,
    pruned_dims: usize,
}
use crate::{Error, Metric, Result};

/// Parameters, with faiss's IVF defaults.
#[derive(Clone, Debug)]
pub struct KmeansParams {
    pub k: usize,
    /// Iterations (faiss IVF training: 10).
    pub niter: usize,
    /// Above `k * max_points_per_centroid` rows, a seeded subsample is used.
    pub max_points_per_centroid: usize,
    pub seed: u32,
    /// L2, or inner product (then spherical: centroids renormalised each iteration).
    pub metric: Metric,
}

impl KmeansParams {
    pub fn ivf(k: usize, metric: Metric) -> Self {
        KmeansParams {
            k,
            niter: 10,
            max_points_per_centroid: 256,
            seed: 1234,
            metric,
        }
    }
}

/// One iteration as faiss reports it in verbose mode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IterationStats {
    pub iteration: usize,
    /// Sum over training rows of the distance (or inner product) to the
    /// assigned centroid, before the update.
    pub objective: f64,
    pub imbalance: f64,
    pub nsplit: usize,
    /// Rows whose nearest centroid was searched from scratch; the others
    /// provably kept theirs.
    pub recomputed: usize,
    /// Full-dimension (row, centroid) distances computed for the searched
    /// rows: `recomputed × k` without dimension pruning, the candidates the
    /// pruned first pass left otherwise.
    pub exact_scores: u64,
    /// Leading dimensions of the pruned first pass (0: not used).
    pub pruned_dims: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug)]
pub struct KmeansResult {
    pub centroids: Array2<f32>,
    pub iterations: Vec<IterationStats>,
    /// Rows the clustering was trained on (after subsampling).
    pub train_rows: usize,
    /// Every input row's final label and squared distance (or inner product),
    /// when all rows were used for training.
    pub final_assignment: Option<Assignment>,
}

/// faiss `RandomGenerator`: a 32-bit Mersenne twister seeded with the
/// truncated seed; `rand_int(max) = mt() % max`, `rand_float = mt() / max`.
struct FaissRng(Mt);

impl FaissRng {
    fn new(seed: i64) -> Self {
        FaissRng(Mt::new(seed as u32))
    }
    fn rand_int(&mut self, max: usize) -> usize {
        // faiss passes `int`; the values here never exceed i32::MAX rows.
        (self.0.next_u32() % max as u32) as usize
    }
    fn rand_float(&mut self) -> f32 {
        self.0.next_u32() as f32 / u32::MAX as f32
    }
}

/// faiss `rand_perm`: Fisher–Yates driven by `FaissRng`.
pub fn rand_perm(n: usize, seed: i64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = FaissRng::new(seed);
    for i in 0..n.saturating_sub(1) {
        let i2 = i + rng.rand_int(n - i);
        perm.swap(i, i2);
    }
    perm
}

pub fn imbalance_factor(labels: &[u32], k: usize) -> f64 {
    let mut hist = vec![0u64; k];
    for &l in labels {
        hist[l as usize] += 1;
    }
    let tot: f64 = hist.iter().sum::<u64>() as f64;
    let uf: f64 = hist.iter().map(|&h| (h as f64) * (h as f64)).sum();
    uf * k as f64 / (tot * tot)
}

fn renormalize(c: &mut Array2<f32>) {
    for mut row in c.rows_mut() {
        let nr: f32 = row.iter().map(|v| v * v).sum();
        if nr > 0.0 {
            let inv = 1.0 / nr.sqrt();
            row.mapv_inplace(|v| v * inv);
        }
    }
}

/// faiss `split_clusters`: every empty cluster takes half of a donor picked
/// at random with probability (size − 1)/(n − k), copied with a small
/// symmetric perturbation. Returns the number of splits.
pub(crate) fn split_clusters(centroids: &mut Array2<f32>, counts: &mut [f32], n: usize) -> usize {
    const EPS: f32 = 1.0 / 1024.0;
    let k = counts.len();
    let d = centroids.ncols();
    let mut rng = FaissRng::new(1234);
    let mut nsplit = 0;
    for ci in 0..k {
        if counts[ci] != 0.0 {
            continue;
        }
        let mut cj = 0;
        loop {
            let p = (counts[cj] - 1.0) / (n - k) as f32;
            let r = rng.rand_float();
            if r < p {
                break;
            }
            cj = (cj + 1) % k;
        }
        let donor = centroids.row(cj).to_owned();
        centroids.row_mut(ci).assign(&donor);
        for j in 0..d {
            let (a, b) = if j % 2 == 0 {
                (1.0 + EPS, 1.0 - EPS)
            } else {
                (1.0 - EPS, 1.0 + EPS)
            };
            centroids[[ci, j]] *= a;
            centroids[[cj, j]] *= b;
        }
        // Counts are floats in faiss (weighted k-means), so the halving is exact.
        counts[ci] = counts[cj] / 2.0;
        counts[cj] -= counts[ci];
        nsplit += 1;
    }
    nsplit
}

/// How much work the L2 assignment of each iteration may skip. Every
/// choice gives the same result up to near-ties (see `bounds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pruning {
    /// Every row against every centroid, every iteration.
    Off,
    /// Rows whose label provably cannot change are skipped (needs a backend
    /// with `assign_top2`); the others are searched in full.
    Bounds,
    /// Bounds, and the searched rows go through the dimension-pruned
    /// assignment on the CPU backend.
    On,
    /// `On` where it pays (the problem is large enough to repay fitting the
    /// projection, and each iteration's sample says the pruned pass is
    /// cheaper than half a full scan), else `Bounds`.
    #[default]
    Auto,
}

/// Train `params.k` centroids on the rows of `x`.
pub fn train(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    params: &KmeansParams,
    on_iteration: impl FnMut(&IterationStats),
) -> Result<KmeansResult> {
    train_with(backend, x, params, Pruning::Auto, on_iteration)
}

/// [`train`] with an explicit [`Pruning`] choice.
pub fn train_with(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    params: &KmeansParams,
    pruning: Pruning,
    mut on_iteration: impl FnMut(&IterationStats),
) -> Result<KmeansResult> {
    let (n, d) = x.dim();
    let k = params.k;
    if k == 0 {
        return Err(Error::Invalid("k-means needs at least one centroid".into()));
    }
    if n < k {
        return Err(Error::Invalid(format!(
            "k-means needs at least as many rows as centroids: {n} rows for {k} centroids"
        )));
    }
    let spherical = params.metric == Metric::InnerProduct;

    let sample;
    let subsampled = n > k * params.max_points_per_centroid;
    let x = if subsampled {
        let perm = rand_perm(n, params.seed as i64);
        sample = x.select(Axis(0), &perm[..k * params.max_points_per_centroid]);
        sample.view()
    } else {
        x
    };
    let n = x.nrows();

    let mut centroids = if n == k {
        x.to_owned()
    } else {
        let perm = rand_perm(n, params.seed as i64 + 1);
        x.select(Axis(0), &perm[..k])
    };
    if spherical {
        renormalize(&mut centroids);
    }
    let mut iterations = Vec::with_capacity(params.niter);
    if n == k {
        let final_assignment = Some(backend.assign(x, centroids.view(), params.metric)?);
        return Ok(KmeansResult {
            centroids,
            iterations,
            train_rows: n,
            final_assignment,
        });
    }

    // L2 runs with bounds that skip rows whose label cannot change; on the
    // CPU backend the rows that are searched go through the dimension-pruned
    // assignment where it pays. Inner product (and backends without a
    // second-best assignment) scan every row.
    let l2 = params.metric == Metric::L2 && pruning != Pruning::Off;
    let pays = pruned::worth_building(n, d, k, params.niter + 1);
    let pruner = match (l2, pruning, backend.as_cpu()) {
        (true, Pruning::On, Some(cpu)) => Pruner::new(cpu.isa(), x),
        (true, Pruning::Auto, Some(cpu)) if pays => Pruner::new(cpu.isa(), x),
        _ => None,
    };
    let mut bounds: Option<Bounds> = None;
    let mut drift: Vec<f32> = Vec::new();
    let mut assign = |c: ArrayView2<f32>, drift: &[f32]| -> Result<Assigned> {
        if l2 {
            let prepared = pruner.as_ref().map(|p| (p, p.prepare(c)));
            let choice = prepared.as_ref().and_then(|(p, cs)| {
                let (m, cost) = p.choose(x, cs, CHOOSE_SAMPLE);
                (pruning == Pruning::On || cost < PRUNE_BELOW).then_some(m)
            });
            let before = pruner.as_ref().map(|p| p.work());
            let bt = BackendTop2 { backend, x, c };
            let pt = match (&prepared, choice) {
                (Some((p, cs)), Some(m)) => Some(PrunedTop2 {
                    pruner: p,
                    x,
                    c: cs,
                    m,
                }),
                _ => None,
            };
            let src: &dyn Top2Source = match &pt {
                Some(p) => p,
                None => &bt,
            };
            let pass = if let Some(b) = bounds.as_mut() {
                Some(b.step(src, x, c, drift)?)
            } else if pt.is_some() || bt.supported() {
                let (b, p) = Bounds::full(src, x.nrows())?;
                bounds = Some(b);
                Some(p)
            } else {
                None
            };
            if let Some(p) = pass {
                let b = bounds.as_ref().expect("set above");
                let exact = match (pruner.as_ref(), before, choice) {
                    (Some(pr), Some(w0), Some(_)) => pr.work().1 - w0.1,
                    _ => (p.recomputed * k) as u64,
                };
                return Ok(Assigned {
                    labels: b.labels.clone(),
                    distances: p.distances,
                    recomputed: p.recomputed,
                    exact_scores: exact,
                    pruned_dims: choice.unwrap_or(0),
                });
            }
        }
        let a = backend.assign(x, c, params.metric)?;
        Ok(Assigned {
            labels: a.labels,
            distances: a.distances,
            recomputed: x.nrows(),
            exact_scores: (x.nrows() * k) as u64,
            pruned_dims: 0,
        })
    };

    for it in 0..params.niter {
        let t0 = Instant::now();
        let Assigned {
            labels,
            distances,
            recomputed,
            exact_scores,
            pruned_dims,
        } = assign(centroids.view(), &drift)?;
        let objective: f64 = distances.iter().map(|&v| v as f64).sum();
        let (sums, counts) = backend.centroid_sums(x, &labels, k)?;
        let old = centroids;
        let mut counts: Vec<f32> = counts.iter().map(|&c| c as f32).collect();
        centroids = sums;
        for (mut row, &c) in centroids.rows_mut().into_iter().zip(&counts) {
            if c != 0.0 {
                let norm = 1.0 / c;
                row.mapv_inplace(|v| v * norm);
            }
        }
        let nsplit = split_clusters(&mut centroids, &mut counts, n);
        if spherical {
            renormalize(&mut centroids);
        }
        drift = bounds::drift(old.view(), centroids.view());
        let stats = IterationStats {
            iteration: it,
            objective,
            imbalance: imbalance_factor(&labels, k),
            nsplit,
            recomputed,
            exact_scores,
            pruned_dims,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_iteration(&stats);
        let converged = iterations
            .last()
            .is_some_and(|p: &IterationStats| p.objective == stats.objective);
        iterations.push(stats);
        // As recent faiss releases do: an unchanged objective means unchanged assignments,
        // so further iterations would reproduce the same centroids.
        if converged {
            break;
        }
    }
    debug_assert_eq!(centroids.dim(), (k, d));
    // The assignment to the final centroids, which `add` needs, costs little
    // more with the bounds at hand.
    let final_assignment = if subsampled {
        None
    } else {
        let a = assign(centroids.view(), &drift)?;
        Some(Assignment {
            labels: a.labels,
            distances: a.distances,
        })
    };
    Ok(KmeansResult {
        centroids,
        iterations,
        train_rows: n,
        final_assignment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rand_perm_is_a_permutation() {
        let mut p = rand_perm(1000, 1234);
        p.sort();
        assert!(p.iter().enumerate().all(|(i, &v)| i == v));
    }

    #[test]
    fn mt_matches_std_mt19937() {
        // The C++ standard fixes the 10000th output of a default-seeded
        // (5489) std::mt19937 at 4123659995.
        let mut m = Mt::new(5489);
        let mut v = 0;
        for _ in 0..10000 {
            v = m.next_u32();
        }
        assert_eq!(v, 4123659995);
    }
}
