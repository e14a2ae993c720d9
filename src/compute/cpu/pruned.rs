//! Exact L2 assignment (best centroid, and a lower bound on the second-best
//! distance) that does most of its arithmetic in a few projected dimensions.
//!
//! With an orthonormal basis `Q` (`d × m`, [`Projection`]), a centre `μ`,
//! `x̃ = Qᵀ(x − μ)` and the tail norm `r_x = ‖(I − QQᵀ)(x − μ)‖`, every
//! distance is bracketed by
//!
//! ```text
//! LB = ‖x̃ − c̃‖² + (r_x − r_c)²  ≤  ‖x − c‖²  ≤  LB + 4·r_x·r_c = UB
//! ```
//!
//! and `LB = ‖x − μ‖² + ‖c − μ‖² − 2·(x̃·c̃ + r_x·r_c)`: one GEMM over `m + 1`
//! dimensions. The first pass runs that GEMM (the AVX-512 micro-kernel, or
//! the `gemm` crate on tiles), keeps a running minimum `T` of `UB` per row
//! and lists the centroids whose `LB ≤ T`; a centroid left out is provably
//! farther than the one that set `T`. The listed candidates are then scored
//! exactly in f32 on the full rows (`‖c‖² − 2·x·c`, as the brute-force
//! kernels score them), and the best wins, ties to the lowest index.
//!
//! Both bounds are widened by [`EPS`]`·(‖x − μ‖² + ‖c − μ‖²)`, about 15× the
//! worst-case f32 rounding of the first pass (projection in f64, rounded
//! coordinates, an `m + 1`-term f32 dot product), so the pruning is certified
//! in exact arithmetic. The label therefore equals a full assignment's except
//! where two centroids are within the f32 rounding of the exact scores (a
//! few ulps of `‖x‖² + ‖c‖²`), where either side's rounding decides.
//!
//! The second value returned is the smaller of the second-best exact score
//! among the candidates and the smallest widened `LB` of the others: a lower
//! bound on the distance to every centroid but the best, which is what the
//! k-means bounds need.

// Register tiles read best with explicit indices; the kernels take the
// matrices as (pointer, shape) argument lists.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::fixed_sums::dot;
pub use super::fixed_sums::sq_distance;
use super::projection::{M_CHOICES, Projected, Projection};
use super::{Isa, norm2};

/// Relative widening of both bounds (2⁻¹⁴).
pub const EPS: f64 = 1.0 / 16384.0;
/// Cost weights of [`Pruner::choose`], relative to a brute-force multiply-add.
const FIRST_PASS_WEIGHT: f64 = 1.0;
const EXACT_WEIGHT: f64 = 16.0;
/// Rows per task.
const ROWS_PER_TASK: usize = 8 * 32;
/// Centroids per tile of the portable first pass.
const PORTABLE_COLS: usize = 256;

/// Rows to assign: all of them, or a list of row indices.
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    All,
    Some(&'a [usize]),
}

impl Rows<'_> {
    fn len(&self, n: usize) -> usize {
        match self {
            Rows::All => n,
            Rows::Some(r) => r.len(),
        }
    }
    fn get(&self, i: usize) -> usize {
        match self {
            Rows::All => i,
            Rows::Some(r) => r[i],
        }
    }
}

/// Whether building a [`Pruner`] for `n × d` rows can pay back over
/// `passes` assignments to `k` centroids: fitting and projecting cost about
/// `(2048·d² + 64·n·d)` f64 multiply-adds (~4 brute-force f32 ones each), a
/// pruned pass saves at most ~80 % of a brute-force one (`n·k·d`).
pub fn worth_building(n: usize, d: usize, k: usize, passes: usize) -> bool {
    let (n, d, k) = (n as f64, d as f64, k as f64);
    let setup = 4.0 * (2048.0 * d * d + 64.0 * n * d);
    0.8 * passes as f64 * n * k * d > 2.0 * setup
}

/// The rows `x` of repeated assignments (k-means), fitted and projected once.
pub struct Pruner {
    kernel: Isa,
    proj: Projection,
    rows: Projected,
    /// Work counters (first-pass pairs, exact candidate scores).
    pairs: AtomicU64,
    exact: AtomicU64,
}

/// Centroids ready for [`Pruner::assign`]: the rows as given, their squared
/// norms, and their projection.
pub struct Centroids {
    k: usize,
    d: usize,
    c: Vec<f32>,
    cnorm: Vec<f32>,
    proj: Projected,
}

impl Centroids {
    pub fn len(&self) -> usize {
        self.k
    }
    pub fn is_empty(&self) -> bool {
        self.k == 0
    }

    /// The centroids `idx`, in that order (labels then index into `idx`).
    pub fn select(&self, idx: &[usize]) -> Centroids {
        let mut c = Vec::with_capacity(idx.len() * self.d);
        for &j in idx {
            c.extend_from_slice(&self.c[j * self.d..(j + 1) * self.d]);
        }
        Centroids {
            k: idx.len(),
            d: self.d,
            c,
            cnorm: idx.iter().map(|&j| self.cnorm[j]).collect(),
            proj: self.proj.select(idx),
        }
    }
}

/// One pass's result: labels, exact best distances, second-best lower bounds.
pub struct Top2 {
    pub labels: Vec<u32>,
    pub distances: Vec<f32>,
    pub second: Vec<f32>,
}

impl Pruner {
    /// Fit a projection to `x` and project it; `None` when `d` is too small
    /// for pruning to pay.
    pub fn new(kernel: Isa, x: ArrayView2<f32>) -> Option<Pruner> {
        if x.nrows() == 0 || !kernel.is_available() {
            return None;
        }
        let proj = Projection::fit(x);
        if proj.choices().is_empty() {
            return None;
        }
        let rows = proj.project(x);
        Some(Pruner {
            kernel,
            proj,
            rows,
            pairs: AtomicU64::new(0),
            exact: AtomicU64::new(0),
        })
    }

    /// A pruner for other rows `x` (same `d`) with this one's projection,
    /// without fitting again: mini-batches fit once and project each batch.
    pub fn with_rows(&self, x: ArrayView2<f32>) -> Pruner {
        Pruner {
            kernel: self.kernel,
            proj: self.proj.clone(),
            rows: self.proj.project(x),
            pairs: AtomicU64::new(0),
            exact: AtomicU64::new(0),
        }
    }

    /// The leading-dimension counts [`Pruner::assign`] accepts.
    pub fn choices(&self) -> Vec<usize> {
        self.proj.choices()
    }

    pub fn prepare(&self, c: ArrayView2<f32>) -> Centroids {
        let (k, d) = c.dim();
        let cs = c.as_standard_layout().into_owned();
        let c = cs.into_raw_vec_and_offset().0;
        Centroids {
            k,
            d,
            cnorm: c.par_chunks(d.max(1)).map(norm2).collect(),
            proj: self
                .proj
                .project(ArrayView2::from_shape((k, d), &c).expect("k × d")),
            c,
        }
    }

    /// (first-pass row × centroid pairs, exact candidate scores) so far.
    pub fn work(&self) -> (u64, u64) {
        (
            self.pairs.load(Ordering::Relaxed),
            self.exact.load(Ordering::Relaxed),
        )
    }

    /// Assign `rows` of `x` (the matrix the pruner was built on) to `c`
    /// with the first pass on `m` leading dimensions (one of [`Pruner::choices`]).
    pub fn assign(&self, x: ArrayView2<f32>, rows: Rows, c: &Centroids, m: usize) -> Top2 {
        let ci = M_CHOICES
            .iter()
            .position(|&v| v == m)
            .expect("m is one of the choices");
        assert!(m <= self.proj.m && x.dim() == (self.rows.n, self.proj.d));
        let n = rows.len(x.nrows());
        let mut out = Top2 {
            labels: vec![0; n],
            distances: vec![0.0; n],
            second: vec![f32::INFINITY; n],
        };
        if n == 0 || c.k == 0 {
            return out;
        }
        let panels = Panels::new(c, m, ci);
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let d = self.proj.d;
        let exact = AtomicU64::new(0);
        out.labels
            .par_chunks_mut(ROWS_PER_TASK)
            .zip(out.distances.par_chunks_mut(ROWS_PER_TASK))
            .zip(out.second.par_chunks_mut(ROWS_PER_TASK))
            .enumerate()
            .for_each_init(Task::default, |task, (b, ((lab, dis), sec))| {
                let i0 = b * ROWS_PER_TASK;
                let live = lab.len();
                task.load(&self.rows, rows, i0, live, m, ci);
                match self.kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the kernel was checked to be available in `new`.
                    Isa::Avx512 => unsafe { super::pruned_avx512::scan(task, &panels) },
                    _ => scan_portable(task, &panels),
                }
                let mut count = 0;
                for r in 0..live {
                    let row = &xs[rows.get(i0 + r) * d..][..d];
                    let (l, d1, d2, cnt) = finish(task, r, row, c, self.kernel);
                    lab[r] = l;
                    dis[r] = d1;
                    sec[r] = d2;
                    count += cnt;
                }
                exact.fetch_add(count, Ordering::Relaxed);
            });
        self.pairs.fetch_add((n * c.k) as u64, Ordering::Relaxed);
        self.exact
            .fetch_add(exact.load(Ordering::Relaxed), Ordering::Relaxed);
        out
    }

    /// Mean candidates per row for each choice on an evenly spaced sample of
    /// `sample` rows, and the choice with the lowest estimated cost, with
    /// that cost relative to a brute-force scan (`k·d`). The weights are
    /// measured ones (200k × 768 → 5128 and 50k × 768 → 1538): a first-pass
    /// pair costs about what `m + 9` brute-force multiply-adds do (short
    /// GEMM, bound epilogue), an exact candidate score about `16·d` (a
    /// centroid row fetched from memory).
    pub fn choose(&self, x: ArrayView2<f32>, c: &Centroids, sample: usize) -> (usize, f64) {
        let n = x.nrows();
        let s = sample.clamp(1, n);
        let idx: Vec<usize> = (0..s).map(|i| i * n / s).collect();
        let (k, d) = (c.k as f64, self.proj.d as f64);
        let mut best = (0, f64::INFINITY);
        for m in self.choices() {
            let before = self.exact.load(Ordering::Relaxed);
            self.assign(x, Rows::Some(&idx), c, m);
            let cands = (self.exact.load(Ordering::Relaxed) - before) as f64 / s as f64;
            let cost =
                (FIRST_PASS_WEIGHT * k * (m as f64 + 9.0) + EXACT_WEIGHT * d * cands) / (k * d);
            if cost < best.1 {
                best = (m, cost);
            }
        }
        best
    }
}

/// Centroid side of the first pass for one choice of `m`: panels of `NR`
/// (= 14) centroids, `L = m + 1` floats (`c̃[..m]`, `r_c`) per centroid, laid out
/// `[l][j]`, and per centroid `lo = ‖c − μ‖²(1 − ε)`, `e2c = 2ε‖c − μ‖²`, `r_c`
/// (padding: `lo = +∞`, the rest 0).
pub(crate) struct Panels {
    pub k: usize,
    pub npanels: usize,
    /// The panels start at `b[b_off]`, 64-byte aligned.
    b: Vec<f32>,
    b_off: usize,
    pub lo: Vec<f32>,
    pub e2c: Vec<f32>,
    pub rc: Vec<f32>,
    /// Row-major `k × L` (portable pass).
    pub rowmajor: Vec<f32>,
}

/// Centroids per panel: one register-tile row each in the AVX-512 pass.
pub(crate) const NR: usize = 14;

impl Panels {
    fn new(c: &Centroids, m: usize, ci: usize) -> Panels {
        let (k, len) = (c.k, m + 1);
        let npanels = k.div_ceil(NR);
        let nc = M_CHOICES.len();
        let pm = c.proj.m;
        let mut rowmajor = vec![0f32; k * len];
        for j in 0..k {
            rowmajor[j * len..j * len + m].copy_from_slice(&c.proj.lead[j * pm..j * pm + m]);
            rowmajor[j * len + m] = c.proj.tail[j * nc + ci];
        }
        let mut b = vec![0f32; npanels * NR * len + 16];
        let b_off = b.as_ptr().align_offset(64).min(16);
        for j in 0..k {
            let (p, jj) = (j / NR, j % NR);
            for l in 0..len {
                b[b_off + (p * len + l) * NR + jj] = rowmajor[j * len + l];
            }
        }
        let mut lo = vec![f32::INFINITY; npanels * NR];
        let mut e2c = vec![0f32; npanels * NR];
        let mut rc = vec![0f32; npanels * NR];
        for j in 0..k {
            let n2 = c.proj.norm2[j];
            lo[j] = (n2 * (1.0 - EPS)) as f32;
            e2c[j] = (2.0 * EPS * n2) as f32;
            rc[j] = c.proj.tail[j * nc + ci];
        }
        Panels {
            k,
            npanels,
            b,
            b_off,
            lo,
            e2c,
            rc,
            rowmajor,
        }
    }
}

impl Panels {
    /// `npanels` panels of `len × NR` floats.
    pub(crate) fn panels(&self) -> &[f32] {
        &self.b[self.b_off..]
    }
}

/// Per-task row side and results of the first pass.
#[derive(Default)]
pub(crate) struct Task {
    pub live: usize,
    pub len: usize,
    /// Row-major `live × L` (`x̃[..m]`, `r_x`).
    pub a: Vec<f32>,
    /// Per row: `4·r_x`, `2ε‖x − μ‖²`, `‖x − μ‖²(1 − ε)`.
    pub r4x: Vec<f32>,
    pub x2e: Vec<f32>,
    pub xlo: Vec<f32>,
    /// Per row: the running `T` (relative: minus `xlo`), the smallest
    /// relative `LB` of the centroids left out, and the listed candidates
    /// (relative `LB`, index), in increasing index order.
    pub thr: Vec<f32>,
    pub nclb: Vec<f32>,
    pub cands: Vec<Vec<(f32, u32)>>,
    /// Scratch for the AVX-512 pass (packed row micro-panels) or the
    /// portable one (a GEMM tile).
    pub scratch: Vec<f32>,
}

impl Task {
    fn load(&mut self, p: &Projected, rows: Rows, i0: usize, live: usize, m: usize, ci: usize) {
        let len = m + 1;
        let nc = M_CHOICES.len();
        self.live = live;
        self.len = len;
        self.a.clear();
        self.r4x.clear();
        self.x2e.clear();
        self.xlo.clear();
        for r in 0..live {
            let i = rows.get(i0 + r);
            self.a.extend_from_slice(&p.lead[i * p.m..i * p.m + m]);
            let t = p.tail[i * nc + ci];
            self.a.push(t);
            self.r4x.push(4.0 * t);
            self.x2e.push((2.0 * EPS * p.norm2[i]) as f32);
            self.xlo.push((p.norm2[i] * (1.0 - EPS)) as f32);
        }
        self.thr.clear();
        self.thr.resize(live, f32::INFINITY);
        self.nclb.clear();
        self.nclb.resize(live, f32::INFINITY);
        self.cands.resize_with(live.max(self.cands.len()), Vec::new);
        for c in &mut self.cands[..live] {
            c.clear();
        }
    }
}

/// Portable first pass: `gemm` crate tiles, then the bounds row by row.
fn scan_portable(t: &mut Task, p: &Panels) {
    let (live, len) = (t.live, t.len);
    let cols = PORTABLE_COLS.min(p.k);
    t.scratch.resize(live * cols, 0.0);
    for j0 in (0..p.k).step_by(cols) {
        let w = cols.min(p.k - j0);
        // SAFETY: dst is live×w (row stride w) inside scratch; lhs is t.a
        // (live×len, row-major); rhs is the transposed centroid block
        // (len×w: row stride 1, column stride len), all in bounds.
        unsafe {
            gemm::gemm(
                live,
                w,
                len,
                t.scratch.as_mut_ptr(),
                1,
                w as isize,
                false,
                t.a.as_ptr(),
                1,
                len as isize,
                p.rowmajor[j0 * len..].as_ptr(),
                len as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for r in 0..live {
            let dots = &t.scratch[r * w..(r + 1) * w];
            let (r4x, x2e) = (t.r4x[r], t.x2e[r]);
            let mut thr = t.thr[r];
            let mut nclb = t.nclb[r];
            for (jj, &acc) in dots.iter().enumerate() {
                let j = j0 + jj;
                let lb = p.lo[j] - 2.0 * acc;
                let ub = r4x * p.rc[j] + (lb + p.e2c[j]) + x2e;
                thr = thr.min(ub);
                if lb <= thr {
                    t.cands[r].push((lb, j as u32));
                } else {
                    nclb = nclb.min(lb);
                }
            }
            t.thr[r] = thr;
            t.nclb[r] = nclb;
        }
    }
}

/// Exact scores of row `r`'s candidates: (label, distance, second-best
/// lower bound, candidates scored).
fn finish(t: &mut Task, r: usize, x: &[f32], c: &Centroids, kernel: Isa) -> (u32, f32, f32, u64) {
    let d = c.d;
    let thr = t.thr[r];
    let mut nclb = t.nclb[r];
    let (mut b1, mut l1, mut b2) = (f32::INFINITY, u32::MAX, f32::INFINITY);
    let mut scored = 0u64;
    let score = |j: usize, b1: &mut f32, l1: &mut u32, b2: &mut f32| {
        let s = c.cnorm[j] - 2.0 * dot(kernel, x, &c.c[j * d..(j + 1) * d]);
        if s < *b1 {
            *b2 = *b1;
            *b1 = s;
            *l1 = j as u32;
        } else if s < *b2 {
            *b2 = s;
        }
    };
    for &(lb, j) in &t.cands[r] {
        if lb <= thr {
            score(j as usize, &mut b1, &mut l1, &mut b2);
            scored += 1;
        } else {
            nclb = nclb.min(lb);
        }
    }
    if l1 == u32::MAX {
        // No candidate (non-finite data): score every centroid.
        for j in 0..c.k {
            score(j, &mut b1, &mut l1, &mut b2);
        }
        scored += c.k as u64;
        nclb = f32::INFINITY;
        if l1 == u32::MAX {
            l1 = 0;
        }
    }
    let xn = norm2(x);
    let d1 = (xn + b1).max(0.0);
    let d2 = (xn + b2).max(0.0).min((nclb + t.xlo[r]).max(0.0));
    (l1, d1, d2, scored)
}

/// Pruned exact L2 assignment of `x` to `c` for any caller: fits a
/// projection to `x`, picks the number of leading dimensions on a sample,
/// and falls back to `None` when pruning would not pay (callers then use
/// the brute-force [`super::assign_top2_with`]).
pub fn assign_top2(kernel: Isa, x: ArrayView2<f32>, c: ArrayView2<f32>) -> Option<Top2> {
    let pruner = Pruner::new(kernel, x)?;
    let cs = pruner.prepare(c);
    let (m, cost) = pruner.choose(x, &cs, 256);
    (cost < 0.5).then(|| pruner.assign(x, Rows::All, &cs, m))
}
