//! The `pq_tables` primitive on the CPU: faiss's quantised look-up table of
//! each query (`quantize_LUT_and_bias` without bias), entry for entry as
//! the scalar reference (`reference::quantize_lut`) computes it, with the
//! 16 scores of a sub-space computed lane-parallel (16 AVX-512 lanes where
//! the [`Isa`] has them).

use ndarray::ArrayView2;

use super::Isa;
use crate::compute::lists::{KSUB, PqTables};
use crate::{Metric, Result};

/// Sub-quantizer centroids transposed to `[m][dsub][16]`, so that one
/// sub-space's 16 scores are computed lane-parallel.
pub(crate) struct Transposed {
    pub(crate) m: usize,
    pub(crate) dsub: usize,
    pub(crate) c: Vec<f32>,
}

impl Transposed {
    /// `codebooks` is `(m·16) × dsub`: sub-space `s`'s centroids are rows
    /// `16·s .. 16·s + 16`.
    pub(crate) fn new(codebooks: ArrayView2<f32>, m: usize) -> Self {
        let dsub = codebooks.ncols();
        let mut c = vec![0f32; m * dsub * KSUB];
        for sq in 0..m {
            for k in 0..KSUB {
                for (j, &v) in codebooks.row(sq * KSUB + k).iter().enumerate() {
                    c[(sq * dsub + j) * KSUB + k] = v;
                }
            }
        }
        Transposed { m, dsub, c }
    }

    /// The 16 scores of sub-space `sq` of `x`: Σ (x − c)² (or Σ x·c), summed
    /// over the sub-space's dimensions in order, exactly as the scalar
    /// `reference::lut` and `pq_assign` sum them.
    #[inline(always)]
    pub(crate) fn scores(&self, x: &[f32], sq: usize, ip: bool) -> [f32; KSUB] {
        let mut t = [0f32; KSUB];
        let xs = &x[sq * self.dsub..(sq + 1) * self.dsub];
        let cs = &self.c[sq * self.dsub * KSUB..(sq + 1) * self.dsub * KSUB];
        for (&xv, c) in xs.iter().zip(cs.chunks_exact(KSUB)) {
            for l in 0..KSUB {
                t[l] += if ip {
                    xv * c[l]
                } else {
                    (xv - c[l]) * (xv - c[l])
                };
            }
        }
        t
    }
}

/// faiss's quantised table of one query, written into `lut` (`m2 · 16`
/// bytes); the arithmetic is `reference::quantize_lut`'s, entry for entry.
/// Returns `(a, b)`.
#[inline(always)]
fn pq_table(
    tr: &Transposed,
    q: &[f32],
    ip: bool,
    lut: &mut [u8],
    raw: &mut Vec<f32>,
) -> (f32, f32) {
    let m = tr.m;
    // raw: m rows of 16 scores, then m minima.
    raw.clear();
    raw.resize(m * (KSUB + 1), 0.0);
    let (rows, mins) = raw.split_at_mut(m * KSUB);
    let (mut span_lut, mut span_dis, mut b) = (f32::NEG_INFINITY, 0f32, 0f32);
    for (sq, (r, mn)) in rows.chunks_exact_mut(KSUB).zip(mins.iter_mut()).enumerate() {
        let t = tr.scores(q, sq, ip);
        r.copy_from_slice(&t);
        // min and max are exact, so a tree gives the fold's values.
        let (mut lo, mut hi) = (t, t);
        for w in [8, 4, 2, 1] {
            for i in 0..w {
                lo[i] = lo[i].min(lo[i + w]);
                hi[i] = hi[i].max(hi[i + w]);
            }
        }
        *mn = lo[0];
        let span = hi[0] - lo[0];
        span_lut = span_lut.max(span);
        span_dis += span;
        b += lo[0];
    }
    let a = table_scale(span_lut, span_dis);
    lut.fill(0);
    let (rows, mins) = raw.split_at(m * KSUB);
    for ((r, out), &mn) in rows
        .chunks_exact(KSUB)
        .zip(lut.chunks_exact_mut(KSUB))
        .zip(mins)
    {
        for (o, &v) in out.iter_mut().zip(r) {
            *o = ((v - mn) * a + 0.5).floor().min(255.0) as u8;
        }
    }
    (a, b)
}

/// faiss's table scale: every entry ≤ 255 and every sum ≤ 65535.
fn table_scale(span_lut: f32, span_dis: f32) -> f32 {
    let pick = |span: f32, top: f32| {
        if span > 0.0 {
            top / span
        } else {
            f32::INFINITY
        }
    };
    let a = pick(span_lut, 255.0).min(pick(span_dis, 65535.0));
    if a.is_finite() { a } else { 0.0 }
}

/// The tables of every row of `queries` (`n × d`) against `codebooks`
/// (`(m·16) × (d/m)`), in parallel.
pub fn pq_tables(
    isa: Isa,
    queries: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    m: usize,
    metric: Metric,
) -> Result<PqTables> {
    super::pq_assign::check("pq_tables", queries.ncols(), codebooks, m, KSUB)?;
    let queries = queries.as_standard_layout();
    let mut out = PqTables::default();
    pq_tables_into(
        isa,
        &Transposed::new(codebooks, m),
        queries.as_slice().expect("standard layout"),
        metric,
        &mut out,
    );
    Ok(out)
}

/// [`pq_tables`] of the rows of `queries` (`m · dsub` floats each) into
/// `out`, reusing its buffers.
pub(crate) fn pq_tables_into(
    isa: Isa,
    tr: &Transposed,
    queries: &[f32],
    metric: Metric,
    out: &mut PqTables,
) {
    use rayon::prelude::*;
    let d = (tr.m * tr.dsub).max(1);
    let nq = queries.len() / d;
    let m2 = tr.m + (tr.m & 1);
    out.m = tr.m;
    out.m2 = m2;
    out.luts.resize(nq * m2 * KSUB, 0);
    out.a.resize(nq, 0.0);
    out.b.resize(nq, 0.0);
    let ip = metric == Metric::InnerProduct;
    let isa = isa.runnable();
    out.luts
        .par_chunks_mut((m2 * KSUB).max(1))
        .zip(out.a.par_iter_mut().zip(out.b.par_iter_mut()))
        .zip(queries.par_chunks(d))
        .with_min_len(16)
        .for_each_init(Vec::new, |raw, ((lut, (a, b)), q)| {
            (*a, *b) = match isa {
                // SAFETY: the CPU has the features (checked by `Isa`).
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { x86::pq_table_512(tr, q, ip, lut, raw) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { x86::pq_table_avx2(tr, q, ip, lut, raw) },
                _ => pq_table(tr, q, ip, lut, raw),
            };
        });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Transposed;
    use std::arch::x86_64::*;

    /// `super::pq_table` with 16-lane vectors: the same operations in the
    /// same order per entry (no FMA), so the same bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn pq_table_512(
        tr: &Transposed,
        q: &[f32],
        ip: bool,
        lut: &mut [u8],
        raw: &mut Vec<f32>,
    ) -> (f32, f32) {
        let (m, dsub) = (tr.m, tr.dsub);
        assert!(q.len() >= m * dsub && lut.len() >= m * 16 && tr.c.len() >= m * dsub * 16);
        raw.clear();
        raw.resize(m * 17, 0.0);
        let (rows, mins) = raw.split_at_mut(m * 16);
        let (mut span_lut, mut span_dis, mut b) = (f32::NEG_INFINITY, 0f32, 0f32);
        for sq in 0..m {
            let mut t = _mm512_setzero_ps();
            for j in 0..dsub {
                // SAFETY: bounds asserted above.
                let (x, c) = unsafe {
                    (
                        _mm512_set1_ps(*q.get_unchecked(sq * dsub + j)),
                        _mm512_loadu_ps(tr.c.as_ptr().add((sq * dsub + j) * 16)),
                    )
                };
                let p = if ip {
                    _mm512_mul_ps(x, c)
                } else {
                    let u = _mm512_sub_ps(x, c);
                    _mm512_mul_ps(u, u)
                };
                t = _mm512_add_ps(t, p);
            }
            unsafe { _mm512_storeu_ps(rows.as_mut_ptr().add(sq * 16), t) };
            let (lo, hi) = (_mm512_reduce_min_ps(t), _mm512_reduce_max_ps(t));
            mins[sq] = lo;
            let span = hi - lo;
            span_lut = span_lut.max(span);
            span_dis += span;
            b += lo;
        }
        let a = super::table_scale(span_lut, span_dis);
        let (va, half, top) = (
            _mm512_set1_ps(a),
            _mm512_set1_ps(0.5),
            _mm512_set1_ps(255.0),
        );
        for sq in 0..m {
            unsafe {
                let v = _mm512_loadu_ps(rows.as_ptr().add(sq * 16));
                let v = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_sub_ps(v, _mm512_set1_ps(mins[sq])), va),
                    half,
                );
                let v = _mm512_min_ps(
                    _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(v),
                    top,
                );
                let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v));
                _mm_storeu_si128(lut.as_mut_ptr().add(sq * 16) as *mut _, bytes);
            }
        }
        lut[m * 16..].fill(0);
        (a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn pq_table_avx2(
        tr: &Transposed,
        q: &[f32],
        ip: bool,
        lut: &mut [u8],
        raw: &mut Vec<f32>,
    ) -> (f32, f32) {
        super::pq_table(tr, q, ip, lut, raw)
    }
}
