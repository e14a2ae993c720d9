//! Mini-batch k-means for compressing a large feature set to K centres (RVC
//! replaces every set above 200 000 rows by 10 000 centres).
//!
//! scikit-learn's `MiniBatchKMeans` as RVC calls it (random init, batches of
//! 256·n_cpu, early stop after 10 batches without improvement of a smoothed
//! batch inertia) stops on noise: on the same data it ends after 12 steps
//! with centres barely moved from random rows, or after thousands of steps.
//! This version spends a fixed, predictable amount of assignment work — about
//! two passes over the data by default — and gets close to full k-means:
//!
//! 1. **Seeding: Lloyd on a pool.** K random rows, refined by `init_iters`
//!    exact Lloyd iterations on a pool of the first `init_pool·K` rows of a
//!    seeded permutation. On RVC-like synthetic data (Zipf-weighted,
//!    heavy-tailed clusters) D²-weighted k-means++ seeding landed *above* the inertia of
//!    plain random rows because it spends centres on outliers, while a few
//!    Lloyd steps on 32 rows per centre already beat random rows clearly.
//! 2. **Mini-batch passes** over all rows (`epochs`, in the same permutation,
//!    continuing after the pool), in large batches: each centre moves to the
//!    running mean of the rows assigned to it, i.e. a per-centre learning
//!    rate 1/count. The pool's counts enter with weight `carry`, so the
//!    seeded centres are neither frozen nor thrown away by the first batch.
//!    Large batches keep the assignment a big GEMM on either backend and, as
//!    measured, also give better centres per row seen than small ones.
//! 3. **Dead centres** (no row in the last window of at least 16 expected
//!    rows per centre, or empty after a pool iteration) are re-seeded at rows
//!    drawn with probability proportional to their squared distance, as
//!    k-means++ would place a new centre.
//!
//! There is no early stop, so the result depends only on the data, the seed,
//! the parameters and the backend. Batches are gathered row by row into one
//! reusable buffer: no second copy of the matrix is ever made.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, s};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::compute::Backend;
use crate::{Error, Metric, Result};

/// Centres RVC keeps when it compresses a big feature set.
pub const RVC_CENTRES: usize = 10_000;

#[derive(Clone, Debug, serde::Serialize)]
pub struct MiniBatchParams {
    /// Number of centres.
    pub k: usize,
    pub seed: u64,
    /// Rows per assignment call in both phases.
    pub batch_size: usize,
    /// Mini-batch passes over all rows after seeding (fractions allowed);
    /// None: `auto_epochs(n)`.
    pub epochs: Option<f64>,
    /// Rows per centre in the seeding pool (capped at N).
    pub init_pool: usize,
    /// Lloyd iterations on the pool.
    pub init_iters: usize,
    /// Weight of the pool's per-centre counts at the start of the mini-batch
    /// phase (0: the first batch replaces each centre it touches).
    pub carry: f64,
    /// Stop the mini-batch phase once this much time has passed since the
    /// start (breaks exact repeatability; off by default).
    pub max_seconds: Option<f64>,
}

impl MiniBatchParams {
    pub fn new(k: usize) -> Self {
        MiniBatchParams {
            k,
            seed: 0,
            batch_size: 16_384,
            epochs: None,
            init_pool: 32,
            init_iters: 3,
            carry: 0.5,
            max_seconds: None,
        }
    }
}

/// Default mini-batch passes: one, or as many as it takes to make 500 000
/// row updates when N is smaller (at most 10). Small inputs make a pass cheap
/// and need several to settle: at 50 000 rows × 64 to 500 centres, 1 pass
/// scored 2.6% above 10-iteration k-means and 3 passes 1.3%.
pub fn auto_epochs(n: usize) -> f64 {
    (500_000.0 / n.max(1) as f64).clamp(1.0, 10.0)
}

/// One batch as the progress bar and `--json` report it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepStats {
    /// "pool" (seeding) or "minibatch".
    pub phase: &'static str,
    /// Batches processed so far, both phases.
    pub step: usize,
    /// Rows assigned so far, both phases (the cost measure: one row = K·D multiply-adds).
    pub rows_assigned: u64,
    /// Mean squared distance of this batch's rows to their nearest centre,
    /// before the batch moved the centres.
    pub batch_inertia_per_row: f64,
    /// Exponential moving average of the above (half-life 65 536 rows).
    pub smoothed_inertia_per_row: f64,
    pub reseeded: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FitSummary {
    pub n: usize,
    pub d: usize,
    pub params: MiniBatchParams,
    pub steps: usize,
    pub rows_assigned: u64,
    /// Rows assigned divided by N: the work in full-pass units.
    pub passes: f64,
    /// Centres re-seeded because no row reached them.
    pub reseeded: usize,
    /// Whether `max_seconds` cut the mini-batch phase short.
    pub stopped_by_time: bool,
    pub fit_seconds: f64,
    /// Mean inertia per row of each pool (Lloyd) iteration, before its update.
    pub pool_inertia_per_row: Vec<f64>,
}

pub struct FitResult {
    pub centroids: Array2<f32>,
    pub summary: FitSummary,
    /// Every batch, in order, for inertia-versus-time curves.
    pub history: Vec<StepStats>,
}

/// Rows drawn with probability proportional to a weight (Efraimidis–Spirakis:
/// keep the `cap` largest keys ln(u)/w), collected while batches stream by.
struct Reservoir {
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
    fn new(cap: usize) -> Self {
        Reservoir {
            cap,
            heap: BinaryHeap::with_capacity(cap + 1),
        }
    }
    fn offer(&mut self, rng: &mut ChaCha8Rng, row: usize, weight: f64) {
        // Rows already on a centre (weight 0) would only duplicate it.
        if self.cap == 0 || weight.is_nan() || weight <= 0.0 {
            return;
        }
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let key = u.ln() / weight;
        if self.heap.len() < self.cap {
            self.heap.push(Keyed(key, row));
        } else if self.heap.peek().is_some_and(|t| key > t.0) {
            self.heap.pop();
            self.heap.push(Keyed(key, row));
        }
    }
    /// Drawn rows, heaviest first; empties the reservoir.
    fn take(&mut self) -> Vec<usize> {
        let mut v: Vec<Keyed> = std::mem::take(&mut self.heap).into_vec();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // A window longer than N can offer a row twice; one centre per row.
        let mut seen = std::collections::HashSet::new();
        v.into_iter()
            .map(|k| k.1)
            .filter(|r| seen.insert(*r))
            .collect()
    }
}

/// Copy rows `idx` of `x` into `buf` (resized to idx.len() rows).
fn gather(x: ArrayView2<f32>, idx: &[u32], buf: &mut Array2<f32>) {
    let d = x.ncols();
    if buf.nrows() != idx.len() {
        *buf = Array2::zeros((idx.len(), d));
    }
    for (mut dst, &i) in buf.rows_mut().into_iter().zip(idx) {
        dst.assign(&x.row(i as usize));
    }
}

/// First row and column holding NaN or an infinity.
pub fn find_non_finite(x: ArrayView2<f32>) -> Option<(usize, usize)> {
    x.rows()
        .into_iter()
        .enumerate()
        .find_map(|(i, r)| r.iter().position(|v| !v.is_finite()).map(|j| (i, j)))
}

/// Re-seed `dead` centres at the rows in `candidates` (drawn ∝ distance²).
/// Returns how many were re-seeded; with too few candidates (all rows on a
/// centre already), the rest stay where they are.
fn reseed(
    x: ArrayView2<f32>,
    centroids: &mut Array2<f32>,
    counts: &mut [f64],
    dead: &[usize],
    candidates: &[usize],
) -> usize {
    let mut n = 0;
    for (&c, &row) in dead.iter().zip(candidates) {
        centroids.row_mut(c).assign(&x.row(row));
        counts[c] = 0.0;
        n += 1;
    }
    n
}

/// Fit `params.k` centres to the rows of `x` (L2).
pub fn fit(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    params: &MiniBatchParams,
    mut on_step: impl FnMut(&StepStats),
) -> Result<FitResult> {
    let t0 = Instant::now();
    let (n, d) = x.dim();
    let k = params.k;
    if k == 0 {
        return Err(Error::Invalid(
            "the number of centres must be at least 1".into(),
        ));
    }
    if n < k {
        return Err(Error::Invalid(format!(
            "cannot compress {n} rows to {k} centres: K must not exceed the number of rows"
        )));
    }
    if d == 0 {
        return Err(Error::Invalid("the rows have no columns".into()));
    }
    if n > u32::MAX as usize {
        return Err(Error::Unsupported(format!(
            "{n} rows; at most {} are supported",
            u32::MAX
        )));
    }
    if params.batch_size == 0 {
        return Err(Error::Invalid("the batch size must be at least 1".into()));
    }
    let epochs = params.epochs.unwrap_or_else(|| auto_epochs(n));
    if !(epochs.is_finite() && epochs >= 0.0) {
        return Err(Error::Invalid(format!(
            "epochs must be a finite number ≥ 0, got {epochs}"
        )));
    }
    if !(params.carry.is_finite() && params.carry >= 0.0) {
        return Err(Error::Invalid(format!(
            "carry must be a finite number ≥ 0, got {}",
            params.carry
        )));
    }
    if let Some((i, j)) = find_non_finite(x) {
        return Err(Error::Invalid(format!(
            "row {i}, column {j} is {} (rows must be finite)",
            x[[i, j]]
        )));
    }

    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    perm.shuffle(&mut rng);

    let mut summary = FitSummary {
        n,
        d,
        params: params.clone(),
        steps: 0,
        rows_assigned: 0,
        passes: 0.0,
        reseeded: 0,
        stopped_by_time: false,
        fit_seconds: 0.0,
        pool_inertia_per_row: Vec::new(),
    };
    let mut history = Vec::new();

    // K = N: every row is its own centre, nothing to learn.
    let mut centroids = Array2::<f32>::zeros((k, d));
    gather(x, &perm[..k], &mut centroids);
    if n == k {
        summary.fit_seconds = t0.elapsed().as_secs_f64();
        return Ok(FitResult {
            centroids,
            summary,
            history,
        });
    }

    let b = params.batch_size;
    let mut buf = Array2::<f32>::zeros((0, d));
    let mut smoothed = f64::NAN;
    let mut step_done = |phase: &'static str,
                         rows: usize,
                         inertia: f64,
                         reseeded: usize,
                         summary: &mut FitSummary,
                         history: &mut Vec<StepStats>| {
        summary.steps += 1;
        summary.rows_assigned += rows as u64;
        let per_row = inertia / rows as f64;
        // Half-life of 65 536 rows whatever the batch size: a batch of 16 384
        // rows is already a low-noise estimate, so a fixed per-batch weight
        // would lag far behind the centres with large batches.
        let w = 1.0 - 0.5f64.powf(rows as f64 / 65_536.0);
        smoothed = if smoothed.is_nan() {
            per_row
        } else {
            (1.0 - w) * smoothed + w * per_row
        };
        let s = StepStats {
            phase,
            step: summary.steps,
            rows_assigned: summary.rows_assigned,
            batch_inertia_per_row: per_row,
            smoothed_inertia_per_row: smoothed,
            reseeded,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_step(&s);
        history.push(s);
    };

    // Phase 1: exact Lloyd iterations on the pool (the first P permuted rows).
    let pool = n.min(k.saturating_mul(params.init_pool.max(1))).max(k);
    let mut counts = vec![0f64; k];
    for _ in 0..params.init_iters {
        let mut sums = vec![0f64; k * d];
        let mut cnt = vec![0f64; k];
        let mut total = 0f64;
        let mut far = Reservoir::new(k.min(4096));
        for lo in (0..pool).step_by(b) {
            let idx = &perm[lo..(lo + b).min(pool)];
            gather(x, idx, &mut buf);
            let a = backend.assign(buf.view(), centroids.view(), Metric::L2)?;
            let (bs, bc) = backend.centroid_sums(buf.view(), &a.labels, k)?;
            let mut batch_inertia = 0f64;
            for (&row, &dist) in idx.iter().zip(&a.distances) {
                let dist = dist.max(0.0) as f64;
                batch_inertia += dist;
                far.offer(&mut rng, row as usize, dist);
            }
            total += batch_inertia;
            for (acc, v) in sums.iter_mut().zip(bs.iter()) {
                *acc += *v as f64;
            }
            for (acc, &c) in cnt.iter_mut().zip(&bc) {
                *acc += c as f64;
            }
            step_done(
                "pool",
                idx.len(),
                batch_inertia,
                0,
                &mut summary,
                &mut history,
            );
        }
        summary.pool_inertia_per_row.push(total / pool as f64);
        let mut dead = Vec::new();
        for j in 0..k {
            if cnt[j] > 0.0 {
                for (c, s) in centroids
                    .row_mut(j)
                    .iter_mut()
                    .zip(&sums[j * d..(j + 1) * d])
                {
                    *c = (*s / cnt[j]) as f32;
                }
            } else {
                dead.push(j);
            }
        }
        counts = cnt;
        let r = reseed(x, &mut centroids, &mut counts, &dead, &far.take());
        summary.reseeded += r;
        if let Some(last) = history.last_mut() {
            last.reseeded = r;
        }
    }

    // Phase 2: mini-batch passes over all rows, continuing after the pool so
    // that the pool rows come last in the first pass.
    for c in counts.iter_mut() {
        *c *= params.carry;
    }
    let total_rows = (epochs * n as f64).round() as u64;
    // A centre is dead when a window in which it should have received ≥ 16
    // rows brought it none (Poisson: a live centre fails that with p ≈ 1e-7).
    let window = (n / 4).max(16 * k) as u64;
    let mut hit = vec![false; k];
    let mut far = Reservoir::new(k.min(4096));
    let mut since_check = 0u64;
    let mut seen = 0u64;
    let mut idx: Vec<u32> = Vec::with_capacity(b);
    let deadline = params.max_seconds.map(Duration::from_secs_f64);
    while seen < total_rows {
        if deadline.is_some_and(|t| t0.elapsed() >= t) {
            summary.stopped_by_time = true;
            break;
        }
        let m = (b as u64).min(total_rows - seen) as usize;
        idx.clear();
        let start = (pool as u64 + seen) % n as u64;
        idx.extend((0..m as u64).map(|i| perm[((start + i) % n as u64) as usize]));
        gather(x, &idx, &mut buf);
        let a = backend.assign(buf.view(), centroids.view(), Metric::L2)?;
        let (bs, bc) = backend.centroid_sums(buf.view(), &a.labels, k)?;
        let mut batch_inertia = 0f64;
        for (&row, &dist) in idx.iter().zip(&a.distances) {
            let dist = dist.max(0.0) as f64;
            batch_inertia += dist;
            far.offer(&mut rng, row as usize, dist);
        }
        for j in 0..k {
            if bc[j] == 0 {
                continue;
            }
            hit[j] = true;
            let bcj = bc[j] as f64;
            counts[j] += bcj;
            // c ← c + (Σx − b·c)/count: the running mean of every row the
            // centre has taken, with the pool's share weighted by `carry`.
            let eta = 1.0 / counts[j];
            for (c, &s) in centroids.row_mut(j).iter_mut().zip(bs.row(j).iter()) {
                let cv = *c as f64;
                *c = (cv + (s as f64 - bcj * cv) * eta) as f32;
            }
        }
        seen += m as u64;
        since_check += m as u64;
        let mut r = 0;
        if since_check >= window {
            let dead: Vec<usize> = (0..k).filter(|&j| !hit[j]).collect();
            if !dead.is_empty() {
                r = reseed(x, &mut centroids, &mut counts, &dead, &far.take());
                summary.reseeded += r;
            }
            far = Reservoir::new(k.min(4096));
            hit.iter_mut().for_each(|h| *h = false);
            since_check = 0;
        }
        step_done("minibatch", m, batch_inertia, r, &mut summary, &mut history);
    }

    debug_assert!(centroids.iter().all(|v| v.is_finite()));
    summary.passes = summary.rows_assigned as f64 / n as f64;
    summary.fit_seconds = t0.elapsed().as_secs_f64();
    Ok(FitResult {
        centroids,
        summary,
        history,
    })
}

/// `--compress auto|off|<K>` of `train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Compress {
    /// RVC's rule: above the threshold (200 000 rows), compress to 10 000 centres.
    #[default]
    Auto,
    /// Index every row, however many.
    Off,
    /// Compress to this many centres whatever the number of rows.
    Centres(usize),
}

impl Compress {
    /// Centres to compress `n` rows to, or None to keep the rows.
    pub fn centres(self, n: usize, above: usize) -> Option<usize> {
        match self {
            Compress::Auto => (n > above).then_some(RVC_CENTRES),
            Compress::Off => None,
            Compress::Centres(k) => Some(k),
        }
    }

    /// Parse `auto`, `off` or a positive number.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Compress::Auto),
            "off" => Ok(Compress::Off),
            _ => match s.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Compress::Centres(k)),
                _ => Err(format!(
                    "expected `auto`, `off` or a positive number of centres, got {s:?}"
                )),
            },
        }
    }
}

/// `fit` with a progress bar over the rows to assign, showing the smoothed
/// batch inertia per row.
pub fn fit_with_progress(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    params: &MiniBatchParams,
    progress: &crate::progress::Progress,
) -> Result<FitResult> {
    let n = x.nrows();
    let pool = n
        .min(params.k.saturating_mul(params.init_pool.max(1)))
        .max(params.k);
    let epochs = params.epochs.unwrap_or_else(|| auto_epochs(n));
    let planned = (pool * params.init_iters) as u64 + (epochs * n as f64).round() as u64;
    let bar = progress.bar(planned, "compress");
    let r = fit(backend, x, params, |s| {
        bar.set_position(s.rows_assigned.min(planned));
        bar.set_message(format!(
            "{} inertia/row {:.4}",
            s.phase, s.smoothed_inertia_per_row
        ));
        progress.verbose(&format!(
            "step {} ({}, {:.2} s): rows {} batch inertia/row {:.4} smoothed {:.4} reseeded {}",
            s.step,
            s.phase,
            s.seconds,
            s.rows_assigned,
            s.batch_inertia_per_row,
            s.smoothed_inertia_per_row,
            s.reseeded
        ));
    });
    bar.finish_and_clear();
    r
}

/// Sum over the rows of `x` of the squared distance to the nearest centre,
/// assigned in chunks so that no large temporary is made.
pub fn inertia(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    centroids: ArrayView2<f32>,
    mut progress: impl FnMut(u64),
) -> Result<f64> {
    const CHUNK: usize = 65_536;
    let mut total = 0f64;
    let mut lo = 0;
    while lo < x.nrows() {
        let hi = (lo + CHUNK).min(x.nrows());
        let a = backend.assign(x.slice(s![lo..hi, ..]), centroids, Metric::L2)?;
        total += a.distances.iter().map(|&v| v.max(0.0) as f64).sum::<f64>();
        progress((hi - lo) as u64);
        lo = hi;
    }
    Ok(total)
}

/// How many centres are exact copies of an earlier one (happens only when the
/// data has fewer distinct rows than K).
pub fn duplicate_centres(c: ArrayView2<f32>) -> usize {
    let mut rows: Vec<Vec<u32>> = c
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|v| v.to_bits()).collect())
        .collect();
    rows.sort_unstable();
    rows.windows(2).filter(|w| w[0] == w[1]).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_prefers_heavy_rows_and_skips_zero_weight() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut heavy = 0;
        for _ in 0..200 {
            let mut r = Reservoir::new(1);
            r.offer(&mut rng, 0, 1.0);
            r.offer(&mut rng, 1, 9.0);
            r.offer(&mut rng, 2, 0.0);
            let t = r.take();
            assert_eq!(t.len(), 1);
            assert_ne!(t[0], 2);
            heavy += (t[0] == 1) as usize;
        }
        // P(row 1) = 0.9: 200 draws put it near 180.
        assert!((160..=195).contains(&heavy), "{heavy}");
    }

    #[test]
    fn duplicates_are_counted() {
        let c = ndarray::arr2(&[[1.0f32, 2.0], [0.0, 0.0], [1.0, 2.0], [1.0, 2.0]]);
        assert_eq!(duplicate_centres(c.view()), 2);
    }
}
