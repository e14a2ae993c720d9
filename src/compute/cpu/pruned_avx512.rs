//! AVX-512 first pass of the pruned assignment (`pruned.rs`): the `MR × NR`
//! register tile of `avx512.rs` over the `m + 1` projected dimensions, with
//! an epilogue that turns each dot product into the widened lower and upper
//! bounds, keeps the running minimum `T` of the upper bounds per row (all
//! lanes: a horizontal minimum per tile) and lists the centroids whose lower
//! bound is at most `T`.

// Register tiles read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::avx512::{MR, NV};
use super::pruned::{NR, Panels, Task};

/// `acc[i][v] += a[i] · b[16v..16v+16]` over `len` steps (`a`: MR floats per
/// step, `b`: NR floats per step).
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `len·MR` and `b` `len·NR` floats.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn accumulate(
    acc: &mut [[__m512; NV]; MR],
    mut a: *const f32,
    mut b: *const f32,
    len: usize,
) {
    for _ in 0..len {
        // SAFETY: the caller's panels hold len steps.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for i in 0..MR {
                let ai = _mm512_set1_ps(*a.add(i));
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            }
            a = a.add(MR);
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
    let nq = live.div_ceil(MR);
    // Row micro-panels, [q][l][i], zero-padded past `live`.
    t.scratch.clear();
    t.scratch.resize(nq * len * MR, 0.0);
    for r in 0..live {
        let (q, i) = (r / MR, r % MR);
        for l in 0..len {
            t.scratch[(q * len + l) * MR + i] = t.a[r * len + l];
        }
    }
    let m2 = _mm512_set1_ps(-2.0);
    let b = p.panels();
    for q in 0..nq {
        let rows = MR.min(live - q * MR);
        let mut nclb = [_mm512_set1_ps(f32::INFINITY); MR];
        let ap = t.scratch[q * len * MR..].as_ptr();
        for pi in 0..p.npanels {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let j0 = pi * NR;
            // SAFETY: panel pi holds len·NR floats, the micro-panel len·MR;
            // lo/e2c/rc hold NR floats per panel.
            let (lo, e2c, rc) = unsafe {
                accumulate(&mut acc, ap, b[pi * len * NR..].as_ptr(), len);
                let ld = |v: &[f32], o: usize| _mm512_loadu_ps(v.as_ptr().add(j0 + o));
                (
                    [ld(&p.lo, 0), ld(&p.lo, 16)],
                    [ld(&p.e2c, 0), ld(&p.e2c, 16)],
                    [ld(&p.rc, 0), ld(&p.rc, 16)],
                )
            };
            for i in 0..rows {
                let r = q * MR + i;
                let r4x = _mm512_set1_ps(t.r4x[r]);
                let x2e = _mm512_set1_ps(t.x2e[r]);
                let mut lb = [_mm512_setzero_ps(); NV];
                let mut ub = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    lb[v] = _mm512_fmadd_ps(acc[i][v], m2, lo[v]);
                    let u = _mm512_fmadd_ps(r4x, rc[v], _mm512_add_ps(lb[v], e2c[v]));
                    ub[v] = _mm512_add_ps(u, x2e);
                }
                let thr = t.thr[r].min(_mm512_reduce_min_ps(_mm512_min_ps(ub[0], ub[1])));
                t.thr[r] = thr;
                let th = _mm512_set1_ps(thr);
                let k0 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(lb[0], th);
                let k1 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(lb[1], th);
                nclb[i] = _mm512_mask_min_ps(nclb[i], !k0, nclb[i], lb[0]);
                nclb[i] = _mm512_mask_min_ps(nclb[i], !k1, nclb[i], lb[1]);
                let mask = (k0 as u32) | ((k1 as u32) << 16);
                if mask != 0 {
                    // SAFETY: __m512 is 16 plain f32 lanes.
                    let vals: [f32; 32] = unsafe { std::mem::transmute(lb) };
                    let mut bits = mask;
                    while bits != 0 {
                        let l = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        if j0 + l < p.k {
                            t.cands[r].push((vals[l], (j0 + l) as u32));
                        }
                    }
                }
            }
        }
        for i in 0..rows {
            let r = q * MR + i;
            t.nclb[r] = t.nclb[r].min(_mm512_reduce_min_ps(nclb[i]));
        }
    }
}
