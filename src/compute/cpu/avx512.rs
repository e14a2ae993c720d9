//! AVX-512 assignment kernel: a register-blocked GEMM microkernel fused with
//! the per-row argmin.
//!
//! Layout (BLIS-style packing, without k-blocking: one microkernel call runs
//! the whole dot-product length `d`):
//!
//! * centroids are packed once per call into panels of `NR` centroids, each
//!   panel `d × NR` floats (`[k][j]`), zero-padded past `K`;
//! * each rayon task packs its block of up to `mc` rows of `x` into
//!   micro-panels of `MR` rows, `d × MR` floats (`[k][i]`), zero-padded;
//! * the microkernel keeps an `MR × NR` tile of dot products in 28 zmm
//!   registers (14 rows × 2 vectors of 16 centroids), broadcasting one `x`
//!   value per row and loading two centroid vectors per step of `k`;
//! * its epilogue turns the tile into scores `s = alpha·dot + beta[j]`
//!   (L2: `‖c‖² − 2·x·c`; inner product: `−x·c`; padding: `+∞`) and folds
//!   them into a running (value, index) minimum per row and per lane. Lanes
//!   see centroids in increasing order and only replace on a strict `<`, so
//!   ties keep the lowest index; the final horizontal reduction also breaks
//!   ties by index.
//!
//! The loop order inside a task is: centroid panel (outer) × row micro-panel
//! (inner), so one centroid panel (96 KiB at d = 768) is fetched from L3 once
//! and reused by every micro-panel of the row block, which stays in L2.

// Register tiles read best with explicit indices; the kernels take the
// matrices as (pointer, shape) argument lists.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{Scores, prepared_beta};

/// Rows per register tile.
pub const MR: usize = 14;
/// zmm vectors (of 16 centroids) per register tile row.
pub const NV: usize = 2;
/// Centroids per register tile.
pub const NR: usize = NV * 16;

/// Bytes of packed rows a task keeps resident (in L2) while it scans the centroids.
const ROW_BLOCK_BYTES: usize = 384 * 1024;
/// Upper bound on rows per task.
const MAX_ROW_BLOCK: usize = 32 * MR;

pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// 64-byte aligned, zero-initialised f32 buffer.
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl AlignedBuf {
    pub(crate) fn zeroed(len: usize) -> Self {
        AlignedBuf {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }

    /// Grow (never shrink) to `len` floats; contents are unspecified.
    fn ensure(&mut self, len: usize) {
        if self.lines.len() * 16 < len {
            self.lines = vec![Line([0.0; 16]); len.div_ceil(16)];
        }
        self.len = len;
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        // SAFETY: `Line` is 16 plain f32 with no padding; len ≤ 16·lines.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as above, and we hold the unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

/// Centroids packed into `d × NR` panels, with per-centroid score offsets.
struct PackedCentroids {
    panels: AlignedBuf,
    beta: AlignedBuf,
    npanels: usize,
}

fn pack_centroids(c: &[f32], k: usize, d: usize, beta_src: &[f32]) -> PackedCentroids {
    let npanels = k.div_ceil(NR);
    let mut panels = AlignedBuf::zeroed(npanels * NR * d);
    let mut beta = AlignedBuf::zeroed(npanels * NR);
    panels
        .as_mut_slice()
        .par_chunks_mut(NR * d)
        .enumerate()
        .for_each(|(p, panel)| {
            for jj in 0..NR.min(k - p * NR) {
                let row = &c[(p * NR + jj) * d..(p * NR + jj + 1) * d];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + jj] = v;
                }
            }
        });
    let b = beta.as_mut_slice();
    b.fill(f32::INFINITY);
    b[..k].copy_from_slice(beta_src);
    PackedCentroids {
        panels,
        beta,
        npanels,
    }
}

/// Pack `rows` rows of `x` (row-major, `d` columns) into `MR`-row micro-panels.
fn pack_rows(x: &[f32], rows: usize, d: usize, out: &mut [f32]) {
    for (q, panel) in out.chunks_exact_mut(MR * d).enumerate() {
        let live = MR.min(rows.saturating_sub(q * MR));
        if live < MR {
            panel.fill(0.0);
        }
        for ii in 0..live {
            let row = &x[(q * MR + ii) * d..(q * MR + ii + 1) * d];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * MR + ii] = v;
            }
        }
    }
}

/// Per-task scratch, reused across the row blocks one rayon split handles.
struct Scratch {
    rows: AlignedBuf,
    best_v: Vec<__m512>,
    best_i: Vec<__m512i>,
    /// Partial sums between k-blocks, `MR·NV` vectors per micro-panel.
    acc: Vec<__m512>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            rows: AlignedBuf::zeroed(0),
            best_v: Vec::new(),
            best_i: Vec::new(),
            acc: Vec::new(),
        }
    }
}

/// Rows per task: enough tasks for load balance, few enough rows to stay in L2.
pub(crate) fn row_block(n: usize, d: usize, mr: usize, threads: usize) -> usize {
    let budget = ROW_BYTES.load(std::sync::atomic::Ordering::Relaxed);
    let by_cache = (budget / (4 * d.max(1))).max(mr);
    let by_balance = n.div_ceil(4 * threads.max(1)).max(1);
    let rows = by_cache.min(by_balance).min(MAX_ROW_BLOCK);
    rows.div_ceil(mr) * mr
}

/// Nearest centroid per row. `x` is `n × d`, `c` is `k × d`, both row-major.
/// `beta`/`alpha` define the minimised score `alpha·x·c + beta[j]`.
pub(crate) fn assign(
    x: &[f32],
    n: usize,
    c: &[f32],
    k: usize,
    d: usize,
    scores: Scores,
    labels: &mut [u32],
    dist: &mut [f32],
) {
    assert!(available(), "AVX-512F kernel called on a CPU without it");
    debug_assert!(x.len() == n * d && c.len() == k * d && k >= 1 && d >= 1);
    let beta = prepared_beta(c, k, d, scores);
    let packed = pack_centroids(c, k, d, &beta);
    let mc = row_block(n, d, MR, rayon::current_num_threads());
    let alpha = scores.alpha();
    labels
        .par_chunks_mut(mc)
        .zip(dist.par_chunks_mut(mc))
        .enumerate()
        .for_each_init(Scratch::new, |scratch, (blk, (lab, dis))| {
            let r0 = blk * mc;
            let rows = lab.len();
            // SAFETY: AVX-512F was checked above.
            unsafe {
                row_block_task(&x[r0 * d..(r0 + rows) * d], rows, d, &packed, alpha, scratch)
            };
            finish_rows(&x[r0 * d..(r0 + rows) * d], rows, d, scratch, scores, lab, dis);
        });
}

#[target_feature(enable = "avx512f")]
unsafe fn row_block_task(
    x: &[f32],
    rows: usize,
    d: usize,
    packed: &PackedCentroids,
    alpha: f32,
    s: &mut Scratch,
) {
    let nq = rows.div_ceil(MR);
    s.rows.ensure(nq * MR * d);
    pack_rows(x, rows, d, s.rows.as_mut_slice());
    s.best_v.clear();
    s.best_i.clear();
    s.best_v.resize(nq * MR, _mm512_set1_ps(f32::INFINITY));
    s.best_i.resize(nq * MR, _mm512_setzero_si512());
    let kc = k_block(d);
    s.acc.clear();
    if kc < d {
        s.acc.resize(nq * MR * NV, _mm512_setzero_ps());
    }
    let a = s.rows.as_slice().as_ptr();
    let b = packed.panels.as_slice().as_ptr();
    let beta = packed.beta.as_slice().as_ptr();
    let alpha = _mm512_set1_ps(alpha);
    let acc = s.acc.as_mut_ptr();
    for p in 0..packed.npanels {
        // SAFETY: every offset stays inside the packed buffers sized above.
        unsafe {
            let bp = b.add(p * NR * d);
            let ep = Epilogue {
                alpha,
                beta: beta.add(p * NR),
                j0: (p * NR) as i32,
            };
            let mut k0 = 0;
            while k0 < d {
                let len = kc.min(d - k0);
                let first = k0 == 0;
                let last = k0 + len == d;
                for q in 0..nq {
                    let ap = a.add(q * MR * d + k0 * MR);
                    let bk = bp.add(k0 * NR);
                    let bv = s.best_v.as_mut_ptr().add(q * MR);
                    let bi = s.best_i.as_mut_ptr().add(q * MR);
                    let c = acc.add(q * MR * NV);
                    match (first, last) {
                        (true, true) => tile::<true, true>(ap, bk, len, c, &ep, bv, bi),
                        (true, false) => tile::<true, false>(ap, bk, len, c, &ep, bv, bi),
                        (false, false) => tile::<false, false>(ap, bk, len, c, &ep, bv, bi),
                        (false, true) => tile::<false, true>(ap, bk, len, c, &ep, bv, bi),
                    }
                }
                k0 += len;
            }
        }
    }
}

/// Length of the dot-product slices one microkernel call runs: the whole of
/// `d` when a centroid micro-panel fits in L1 next to a row micro-panel, else
/// blocks of about `KC` (partial sums then go through a small scratch).
fn k_block(d: usize) -> usize {
    let kc = KC.load(std::sync::atomic::Ordering::Relaxed);
    if d <= kc {
        d
    } else {
        // Equal blocks, so none is tiny.
        d.div_ceil(d.div_ceil(kc))
    }
}

/// Tunables for experiments (see `tune`).
static KC: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(DEFAULT_KC);
static ROW_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(ROW_BLOCK_BYTES);
const DEFAULT_KC: usize = 1024;

/// Override the k-block length and the row-block byte budget (experiments only).
#[doc(hidden)]
pub fn tune(kc: usize, row_block_bytes: usize) {
    KC.store(kc.max(1), std::sync::atomic::Ordering::Relaxed);
    ROW_BYTES.store(row_block_bytes.max(1), std::sync::atomic::Ordering::Relaxed);
}

struct Epilogue {
    alpha: __m512,
    beta: *const f32,
    j0: i32,
}

/// One `MR × NR` tile over `len` steps of `k`. `FIRST`: start from zero, else
/// from the partial sums in `c`; `LAST`: fold the scores into the running
/// minima, else store the partial sums to `c`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const FIRST: bool, const LAST: bool>(
    a: *const f32,
    b: *const f32,
    len: usize,
    c: *mut __m512,
    ep: &Epilogue,
    best_v: *mut __m512,
    best_i: *mut __m512i,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    if !FIRST {
        for i in 0..MR {
            for v in 0..NV {
                // SAFETY: c holds MR·NV vectors for this micro-panel.
                acc[i][v] = unsafe { *c.add(i * NV + v) };
            }
        }
    }
    let mut a = a;
    let mut b = b;
    for _ in 0..len {
        // SAFETY: `a` walks len·MR floats, `b` len·NR floats (64-byte aligned).
        unsafe {
            let mut bv = [_mm512_setzero_ps(); NV];
            for v in 0..NV {
                bv[v] = _mm512_load_ps(b.add(16 * v));
            }
            for i in 0..MR {
                let ai = _mm512_set1_ps(*a.add(i));
                for v in 0..NV {
                    acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    if !LAST {
        for i in 0..MR {
            for v in 0..NV {
                // SAFETY: as above.
                unsafe { *c.add(i * NV + v) = acc[i][v] };
            }
        }
        return;
    }
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut betav = [_mm512_setzero_ps(); NV];
    let mut idx = [_mm512_setzero_si512(); NV];
    for v in 0..NV {
        // SAFETY: beta has NR floats per panel, 64-byte aligned.
        betav[v] = unsafe { _mm512_load_ps(ep.beta.add(16 * v)) };
        idx[v] = _mm512_add_epi32(lane, _mm512_set1_epi32(ep.j0 + 16 * v as i32));
    }
    for i in 0..MR {
        // SAFETY: best_v/best_i point at MR entries for this micro-panel.
        unsafe {
            let mut bv = *best_v.add(i);
            let mut bi = *best_i.add(i);
            for v in 0..NV {
                let s = _mm512_fmadd_ps(acc[i][v], ep.alpha, betav[v]);
                let m = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(s, bv);
                bv = _mm512_mask_mov_ps(bv, m, s);
                bi = _mm512_mask_mov_epi32(bi, m, idx[v]);
            }
            *best_v.add(i) = bv;
            *best_i.add(i) = bi;
        }
    }
}

/// Horizontal (value, lowest index) minimum per row, then the reported score.
fn finish_rows(
    x: &[f32],
    rows: usize,
    d: usize,
    s: &Scratch,
    scores: Scores,
    labels: &mut [u32],
    dist: &mut [f32],
) {
    for r in 0..rows {
        // SAFETY: __m512 / __m512i are plain 16-lane f32 / i32 values.
        let vals: [f32; 16] = unsafe { std::mem::transmute(s.best_v[r]) };
        let idxs: [i32; 16] = unsafe { std::mem::transmute(s.best_i[r]) };
        let mut bv = vals[0];
        let mut bi = idxs[0];
        for l in 1..16 {
            if vals[l] < bv || (vals[l] == bv && idxs[l] < bi) {
                bv = vals[l];
                bi = idxs[l];
            }
        }
        labels[r] = bi as u32;
        dist[r] = scores.finish(&x[r * d..(r + 1) * d], bv);
    }
}
