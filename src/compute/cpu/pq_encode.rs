//! The `pq_encode` primitive on the CPU for 16-centroid sub-spaces: the
//! nearest sub-centroid per row and sub-space, the 16 scores of a sub-space
//! computed lane-parallel (one AVX-512 vector where the [`Isa`] has it),
//! equal to `pq_assign`'s codes (same sums, ties to the lowest centroid).
//! Other sub-space sizes take `pq_assign`.

use ndarray::ArrayView2;

use super::Isa;
use super::pq_tables::Transposed;
use crate::Result;
use crate::compute::lists::KSUB;

/// Codes of every row of `x` (`n × m`, row-major, one code per byte): the
/// nearest of the `ksub = codebooks.nrows() / m` sub-centroids per
/// sub-space, ties to the lowest, in parallel. 16-centroid codebooks take
/// the lane-parallel encoder, others `pq_assign`.
pub fn pq_encode(
    isa: Isa,
    x: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    m: usize,
) -> Result<Vec<u8>> {
    use rayon::prelude::*;
    let ksub = codebooks.nrows() / m.max(1);
    if ksub != KSUB {
        let codes = super::pq_assign::pq_assign(x, codebooks, m, ksub)?.codes;
        return Ok(codes.into_raw_vec_and_offset().0);
    }
    super::pq_assign::check("pq_encode", x.ncols(), codebooks, m, KSUB)?;
    let tr = Transposed::new(codebooks, m);
    let (n, d) = x.dim();
    let mut codes = vec![0u8; n * m];
    if n == 0 || d == 0 {
        // No dimensions: every sub-centroid scores 0, the lowest wins.
        return Ok(codes);
    }
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout");
    let isa = isa.runnable();
    codes
        .par_chunks_mut(m * 256)
        .zip(x.par_chunks(d * 256))
        .for_each(|(out, rows)| match isa {
            // SAFETY: the CPU has the features (`runnable`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::encode_rows_512(&tr, rows, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::encode_rows_avx2(&tr, rows, out) },
            _ => encode_rows(&tr, rows, out),
        });
    Ok(codes)
}

#[inline(always)]
fn encode_rows(tr: &Transposed, rows: &[f32], out: &mut [u8]) {
    let d = tr.m * tr.dsub;
    for (o, row) in out
        .chunks_exact_mut(tr.m.max(1))
        .zip(rows.chunks_exact(d.max(1)))
    {
        for (sq, c) in o.iter_mut().enumerate() {
            *c = argmin16(&tr.scores(row, sq, false));
        }
    }
}

/// First index of the smallest of 16 scores (NaNs never win).
#[inline(always)]
fn argmin16(t: &[f32; KSUB]) -> u8 {
    let mut best = (f32::INFINITY, 0u8);
    for (k, &v) in t.iter().enumerate() {
        if v < best.0 {
            best = (v, k as u8);
        }
    }
    best.1
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Transposed;
    use std::arch::x86_64::*;

    /// `super::encode_rows` with the 16 scores of a sub-space in one vector
    /// (same operations per score, no FMA) and a vector argmin: the first
    /// lane equal to the minimum, as the scalar strict-< scan picks.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn encode_rows_512(tr: &Transposed, rows: &[f32], out: &mut [u8]) {
        let (m, dsub) = (tr.m, tr.dsub);
        let d = m * dsub;
        if d == 0 {
            return;
        }
        assert!(tr.c.len() >= m * dsub * 16);
        for (o, row) in out.chunks_exact_mut(m).zip(rows.chunks_exact(d)) {
            for (sq, code) in o.iter_mut().enumerate() {
                let mut t = _mm512_setzero_ps();
                for j in 0..dsub {
                    // SAFETY: sq·dsub + j < d = row.len(); the centroid
                    // table holds m·dsub·16 floats (asserted).
                    let (x, c) = unsafe {
                        (
                            _mm512_set1_ps(*row.get_unchecked(sq * dsub + j)),
                            _mm512_loadu_ps(tr.c.as_ptr().add((sq * dsub + j) * 16)),
                        )
                    };
                    let u = _mm512_sub_ps(x, c);
                    t = _mm512_add_ps(t, _mm512_mul_ps(u, u));
                }
                let mn = _mm512_reduce_min_ps(t);
                let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(t, _mm512_set1_ps(mn));
                *code = if hit == 0 {
                    0
                } else {
                    hit.trailing_zeros() as u8
                };
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn encode_rows_avx2(tr: &Transposed, rows: &[f32], out: &mut [u8]) {
        super::encode_rows(tr, rows, out)
    }
}
