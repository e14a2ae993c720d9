//! AVX-512 first pass of the pruned assignment (`pruned.rs`). The register
//! tile has the rows in the lanes: 32 rows (2 vectors) × `NR` = 14
//! centroids (broadcast), 28 accumulators over the `m + 1` projected
//! dimensions. Its epilogue turns each dot product into the widened lower
//! and upper bounds of 32 rows at once, keeps every row's running minimum
//! `T` of the upper bounds in a lane (no horizontal reduction) and lists
//! the centroids whose lower bound is at most `T`.

// Register tiles read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::pruned::{NR, Panels, Task};

/// Rows per register tile (two vectors).
const RW: usize = 32;

/// `acc[j][v] += b[j] · a[16v..16v+16]` over `len` steps (`a`: RW row
/// values per step, `b`: NR centroid values per step).
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `len·RW` and `b` `len·NR` floats.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn accumulate(
    acc: &mut [[__m512; 2]; NR],
    mut a: *const f32,
    mut b: *const f32,
    len: usize,
) {
    for _ in 0..len {
        // SAFETY: the caller's panels hold len steps.
        unsafe {
            let a0 = _mm512_loadu_ps(a);
            let a1 = _mm512_loadu_ps(a.add(16));
            for j in 0..NR {
                let bj = _mm512_set1_ps(*b.add(j));
                acc[j][0] = _mm512_fmadd_ps(bj, a0, acc[j][0]);
                acc[j][1] = _mm512_fmadd_ps(bj, a1, acc[j][1]);
            }
            a = a.add(RW);
            b = b.add(NR);
        }
    }
}

/// Run the first pass for the task's rows over every centroid panel.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn scan(t: &mut Task, p: &Panels) {
    let (live, len) = (t.live, t.len);
    let nq = live.div_ceil(RW);
    // Row panels, [q][l][r], zero-padded past `live`; per-row scalars padded
    // so that padding rows never list a candidate (lower bound +∞).
    t.scratch.clear();
    t.scratch.resize(nq * len * RW, 0.0);
    for r in 0..live {
        let (q, i) = (r / RW, r % RW);
        for l in 0..len {
            t.scratch[(q * len + l) * RW + i] = t.a[r * len + l];
        }
    }
    let pad = nq * RW;
    t.r4x.resize(pad, 0.0);
    t.x2e.resize(pad, 0.0);
    let m2 = _mm512_set1_ps(-2.0);
    let inf = _mm512_set1_ps(f32::INFINITY);
    let b = p.panels();
    for q in 0..nq {
        let r0 = q * RW;
        let ap = t.scratch[q * len * RW..].as_ptr();
        // SAFETY: the per-row vectors hold `pad` ≥ r0 + RW entries.
        let (r4x, x2e) = unsafe {
            let ld = |v: &[f32], o: usize| _mm512_loadu_ps(v.as_ptr().add(r0 + o));
            (
                [ld(&t.r4x, 0), ld(&t.r4x, 16)],
                [ld(&t.x2e, 0), ld(&t.x2e, 16)],
            )
        };
        let live_mask = |v: usize| -> u16 {
            let rows = live.saturating_sub(r0 + 16 * v).min(16);
            ((1u32 << rows) - 1) as u16
        };
        let alive = [live_mask(0), live_mask(1)];
        let mut thr = [inf; 2];
        let mut nclb = [inf; 2];
        for pi in 0..p.npanels {
            let mut acc = [[_mm512_setzero_ps(); 2]; NR];
            // SAFETY: panel pi holds len·NR floats, the row panel len·RW.
            unsafe { accumulate(&mut acc, ap, b[pi * len * NR..].as_ptr(), len) };
            let j0 = pi * NR;
            for j in 0..NR.min(p.k - j0) {
                let lo = _mm512_set1_ps(p.lo[j0 + j]);
                let e2c = _mm512_set1_ps(p.e2c[j0 + j]);
                let rc = _mm512_set1_ps(p.rc[j0 + j]);
                let mut hits = [0u16; 2];
                let mut lb = [inf; 2];
                for v in 0..2 {
                    lb[v] = _mm512_fmadd_ps(acc[j][v], m2, lo);
                    let u = _mm512_fmadd_ps(r4x[v], rc, _mm512_add_ps(lb[v], e2c));
                    thr[v] = _mm512_min_ps(thr[v], _mm512_add_ps(u, x2e[v]));
                    let k = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(lb[v], thr[v]);
                    nclb[v] = _mm512_mask_min_ps(nclb[v], !k, nclb[v], lb[v]);
                    hits[v] = k & alive[v];
                }
                if (hits[0] | hits[1]) != 0 {
                    // SAFETY: __m512 is 16 plain f32 lanes.
                    let vals: [f32; 32] = unsafe { std::mem::transmute(lb) };
                    let mut bits = hits[0] as u32 | (hits[1] as u32) << 16;
                    while bits != 0 {
                        let l = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        t.cands[r0 + l].push((vals[l], (j0 + j) as u32));
                    }
                }
            }
        }
        // SAFETY: __m512 is 16 plain f32 lanes.
        let (thr, nclb) = unsafe {
            (
                std::mem::transmute::<[__m512; 2], [f32; 32]>(thr),
                std::mem::transmute::<[__m512; 2], [f32; 32]>(nclb),
            )
        };
        for l in 0..RW.min(live - r0) {
            t.thr[r0 + l] = t.thr[r0 + l].min(thr[l]);
            t.nclb[r0 + l] = t.nclb[r0 + l].min(nclb[l]);
        }
    }
}
