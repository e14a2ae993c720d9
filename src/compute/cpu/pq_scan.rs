//! The fast-scan PQ list-scan kernel (`search_pq_lists`): the 8-bit
//! quantised look-up tables faiss uses, looked up 16 entries at a time with
//! byte shuffles (`vpshufb`) over the 32-entry packed blocks, summed in
//! 16-bit lanes, and rejected against the query's current k-th best before
//! anything leaves the registers. AVX-512BW (two sub-quantizer pairs per
//! step, 4 queries per code load), AVX2 (one pair, 2 queries) or a scalar
//! loop, by [`Isa`].
//!
//! Candidates are ranked by a `u64` key: the 16-bit table sum (inverted for
//! inner product) above a 48-bit id, which orders equal sums by id as
//! faiss's heaps do.

use super::Isa;
use crate::compute::lists::PERM;

/// Largest id a packed PQ key carries.
pub const MAX_PACKED_ID: i64 = (1 << 48) - 1;

/// The key a PQ candidate is ranked by: smaller table sums first for L2,
/// larger first for inner product; equal sums by id, lower first for L2 and
/// higher first for inner product (faiss's min- and max-heaps).
#[inline]
pub fn pq_key(sum: u16, id: i64, ip: bool) -> u64 {
    debug_assert!((0..=MAX_PACKED_ID).contains(&id));
    if ip {
        ((!sum as u64) << 48) | (MAX_PACKED_ID - id) as u64
    } else {
        ((sum as u64) << 48) | id as u64
    }
}

/// Table sum and id of a packed key.
#[inline]
pub fn pq_unkey(key: u64, ip: bool) -> (u16, i64) {
    let s = (key >> 48) as u16;
    let id = (key & MAX_PACKED_ID as u64) as i64;
    if ip {
        (!s, MAX_PACKED_ID - id)
    } else {
        (s, id)
    }
}

/// The `k` smallest packed PQ keys seen (a total order, so arrival order
/// does not matter).
#[derive(Clone, Debug)]
pub struct PqTop {
    pub keys: Vec<u64>,
    k: usize,
}

impl PqTop {
    pub fn new(k: usize) -> Self {
        PqTop {
            keys: Vec::with_capacity(k + 1),
            k,
        }
    }

    pub fn clear(&mut self) {
        self.keys.clear();
    }

    /// Sums (in key form: inverted for inner product) above this cannot enter.
    #[inline]
    pub fn threshold16(&self) -> u16 {
        if self.keys.len() < self.k {
            u16::MAX
        } else {
            (self.keys[self.k - 1] >> 48) as u16
        }
    }

    #[inline]
    pub fn push(&mut self, key: u64) {
        if self.keys.len() == self.k {
            if self.k == 0 || key >= self.keys[self.k - 1] {
                return;
            }
            self.keys.pop();
        }
        let pos = self.keys.partition_point(|&v| v < key);
        self.keys.insert(pos, key);
    }
}

/// Scan one fast-scan list (`n` entries packed in blocks of 32, `m2 / 2`
/// sub-quantizer pairs) for each query's table, folding packed keys into
/// `tops[q]`. Sums are 16-bit, wrapping as faiss's do.
#[allow(clippy::too_many_arguments)]
pub fn scan_pq(
    isa: Isa,
    ip: bool,
    luts: &[&[u8]],
    m2: usize,
    packed: &[u8],
    n: usize,
    ids: &[i64],
    tops: &mut [PqTop],
) {
    assert_eq!(luts.len(), tops.len());
    assert!(ids.len() >= n);
    let npairs = m2 / 2;
    assert!(
        packed.len() >= n.div_ceil(32) * 32 * npairs,
        "packed codes too short"
    );
    assert!(luts.iter().all(|l| l.len() >= npairs * 32));
    if n == 0 || luts.is_empty() {
        return;
    }
    let mut q0 = 0;
    while q0 < luts.len() {
        let left = luts.len() - q0;
        let qm = match isa {
            Isa::Avx512 => 4,
            _ => 2,
        };
        let qn = if left >= qm {
            qm
        } else if left >= 2 {
            2
        } else {
            1
        };
        let (l, t) = (&luts[q0..q0 + qn], &mut tops[q0..q0 + qn]);
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if isa.is_available() => unsafe {
                match qn {
                    4 => x86::pq_scan_512::<4>(l, npairs, packed, n, ids, ip, t),
                    2 => x86::pq_scan_512::<2>(l, npairs, packed, n, ids, ip, t),
                    _ => x86::pq_scan_512::<1>(l, npairs, packed, n, ids, ip, t),
                }
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if isa.is_available() => unsafe {
                match qn {
                    2 => x86::pq_scan_avx2::<2>(l, npairs, packed, n, ids, ip, t),
                    _ => x86::pq_scan_avx2::<1>(l, npairs, packed, n, ids, ip, t),
                }
            },
            _ => {
                for (lut, top) in l.iter().zip(t.iter_mut()) {
                    pq_scan_scalar(lut, npairs, packed, n, |e, s| {
                        top.push(pq_key(s, ids[e], ip))
                    });
                }
            }
        }
        q0 += qn;
    }
}

/// Scalar reference: the 16-bit wrapping table sum of every entry.
pub fn pq_scan_scalar(
    lut: &[u8],
    npairs: usize,
    packed: &[u8],
    n: usize,
    mut emit: impl FnMut(usize, u16),
) {
    let mut acc = [0u16; 32];
    for blk in 0..n.div_ceil(32) {
        acc.fill(0);
        let base = &packed[blk * 32 * npairs..(blk + 1) * 32 * npairs];
        for p in 0..npairs {
            let chunk = &base[p * 32..p * 32 + 32];
            let (t0, t1) = (&lut[p * 32..p * 32 + 16], &lut[p * 32 + 16..p * 32 + 32]);
            for (j, &e) in PERM.iter().enumerate() {
                let (lo, hi) = (chunk[j], chunk[16 + j]);
                acc[e] = acc[e]
                    .wrapping_add(t0[(lo & 15) as usize] as u16)
                    .wrapping_add(t1[(hi & 15) as usize] as u16);
                acc[e + 16] = acc[e + 16]
                    .wrapping_add(t0[(lo >> 4) as usize] as u16)
                    .wrapping_add(t1[(hi >> 4) as usize] as u16);
            }
        }
        let first = blk * 32;
        for (u, &s) in acc.iter().enumerate().take(n - first) {
            emit(first + u, s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PqTop, pq_key};
    use std::arch::x86_64::*;

    /// Fast-scan over 32-entry blocks, two sub-quantizer pairs (64 code
    /// bytes) per step, `Q` queries sharing each code load.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn pq_scan_512<const Q: usize>(
        luts: &[&[u8]],
        npairs: usize,
        packed: &[u8],
        n: usize,
        ids: &[i64],
        ip: bool,
        tops: &mut [PqTop],
    ) {
        let mut lp = [std::ptr::null::<u8>(); Q];
        for a in 0..Q {
            lp[a] = luts[a].as_ptr();
        }
        let m4 = _mm512_set1_epi8(0x0f);
        let flip = _mm512_set1_epi16(if ip { -1 } else { 0 });
        let mut sums = [0u16; 32];
        for blk in 0..n.div_ceil(32) {
            // SAFETY: the caller checked packed ≥ blocks · 32 · npairs bytes
            // and each table ≥ npairs · 32 bytes; whole-64-byte loads run
            // while two pairs remain, the odd last pair is a masked 32-byte load.
            let base = unsafe { packed.as_ptr().add(blk * 32 * npairs) };
            let mut acc = [[_mm512_setzero_si512(); 4]; Q];
            let mut p = 0;
            while p < npairs {
                let (c, full) = if p + 2 <= npairs {
                    (
                        unsafe { _mm512_loadu_si512(base.add(p * 32) as *const _) },
                        true,
                    )
                } else {
                    (
                        unsafe {
                            _mm512_maskz_loadu_epi8(0xffff_ffff, base.add(p * 32) as *const i8)
                        },
                        false,
                    )
                };
                let lo = _mm512_and_si512(c, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(c), m4);
                for a in 0..Q {
                    let t = if full {
                        unsafe { _mm512_loadu_si512(lp[a].add(p * 32) as *const _) }
                    } else {
                        unsafe {
                            _mm512_maskz_loadu_epi8(0xffff_ffff, lp[a].add(p * 32) as *const i8)
                        }
                    };
                    let r0 = _mm512_shuffle_epi8(t, lo);
                    let r1 = _mm512_shuffle_epi8(t, hi);
                    acc[a][0] = _mm512_add_epi16(acc[a][0], r0);
                    acc[a][1] = _mm512_add_epi16(acc[a][1], _mm512_srli_epi16::<8>(r0));
                    acc[a][2] = _mm512_add_epi16(acc[a][2], r1);
                    acc[a][3] = _mm512_add_epi16(acc[a][3], _mm512_srli_epi16::<8>(r1));
                }
                p += 2;
            }
            let first = blk * 32;
            let valid: u32 = if n - first >= 32 {
                u32::MAX
            } else {
                (1u32 << (n - first)) - 1
            };
            for a in 0..Q {
                // Even bytes summed into the low byte of each 16-bit lane
                // also carried the odd bytes ×256: take them out.
                let a0 = _mm512_sub_epi16(acc[a][0], _mm512_slli_epi16::<8>(acc[a][1]));
                let a2 = _mm512_sub_epi16(acc[a][2], _mm512_slli_epi16::<8>(acc[a][3]));
                let (a1, a3) = (acc[a][1], acc[a][3]);
                // Sum the four 128-bit lanes of a0..a3 into lanes 0..3 of one
                // vector: entries 0-7, 8-15, 16-23, 24-31.
                let b01 = _mm512_add_epi16(
                    _mm512_shuffle_i64x2::<0x44>(a0, a1),
                    _mm512_shuffle_i64x2::<0xEE>(a0, a1),
                );
                let b23 = _mm512_add_epi16(
                    _mm512_shuffle_i64x2::<0x44>(a2, a3),
                    _mm512_shuffle_i64x2::<0xEE>(a2, a3),
                );
                let s = _mm512_add_epi16(
                    _mm512_shuffle_i64x2::<0x88>(b01, b23),
                    _mm512_shuffle_i64x2::<0xDD>(b01, b23),
                );
                let key = _mm512_xor_si512(s, flip);
                let thr = _mm512_set1_epi16(tops[a].threshold16() as i16);
                let mut mask = _mm512_cmple_epu16_mask(key, thr) & valid;
                if mask == 0 {
                    continue;
                }
                unsafe { _mm512_storeu_si512(sums.as_mut_ptr() as *mut _, s) };
                while mask != 0 {
                    let u = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    tops[a].push(pq_key(sums[u], ids[first + u], ip));
                }
            }
        }
    }

    /// Fast-scan with 32-byte shuffles, one sub-quantizer pair per step.
    #[target_feature(enable = "avx2")]
    pub unsafe fn pq_scan_avx2<const Q: usize>(
        luts: &[&[u8]],
        npairs: usize,
        packed: &[u8],
        n: usize,
        ids: &[i64],
        ip: bool,
        tops: &mut [PqTop],
    ) {
        let mut lp = [std::ptr::null::<u8>(); Q];
        for a in 0..Q {
            lp[a] = luts[a].as_ptr();
        }
        let m4 = _mm256_set1_epi8(0x0f);
        let flip = _mm256_set1_epi16(if ip { -1 } else { 0 });
        let mut sums = [0u16; 32];
        for blk in 0..n.div_ceil(32) {
            // SAFETY: as in `pq_scan_512`; every load is one whole pair.
            let base = unsafe { packed.as_ptr().add(blk * 32 * npairs) };
            let mut acc = [[_mm256_setzero_si256(); 4]; Q];
            for p in 0..npairs {
                let c = unsafe { _mm256_loadu_si256(base.add(p * 32) as *const _) };
                let lo = _mm256_and_si256(c, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(c), m4);
                for a in 0..Q {
                    let t = unsafe { _mm256_loadu_si256(lp[a].add(p * 32) as *const _) };
                    let r0 = _mm256_shuffle_epi8(t, lo);
                    let r1 = _mm256_shuffle_epi8(t, hi);
                    acc[a][0] = _mm256_add_epi16(acc[a][0], r0);
                    acc[a][1] = _mm256_add_epi16(acc[a][1], _mm256_srli_epi16::<8>(r0));
                    acc[a][2] = _mm256_add_epi16(acc[a][2], r1);
                    acc[a][3] = _mm256_add_epi16(acc[a][3], _mm256_srli_epi16::<8>(r1));
                }
            }
            let first = blk * 32;
            let valid: u32 = if n - first >= 32 {
                u32::MAX
            } else {
                (1u32 << (n - first)) - 1
            };
            for a in 0..Q {
                let a0 = _mm256_sub_epi16(acc[a][0], _mm256_slli_epi16::<8>(acc[a][1]));
                let a2 = _mm256_sub_epi16(acc[a][2], _mm256_slli_epi16::<8>(acc[a][3]));
                let (a1, a3) = (acc[a][1], acc[a][3]);
                let s01 = _mm256_add_epi16(
                    _mm256_permute2x128_si256::<0x20>(a0, a1),
                    _mm256_permute2x128_si256::<0x31>(a0, a1),
                );
                let s23 = _mm256_add_epi16(
                    _mm256_permute2x128_si256::<0x20>(a2, a3),
                    _mm256_permute2x128_si256::<0x31>(a2, a3),
                );
                let thr = _mm256_set1_epi16(tops[a].threshold16() as i16);
                let le = _mm256_cmpeq_epi16(
                    _mm256_min_epu16(_mm256_xor_si256(s01, flip), thr),
                    _mm256_xor_si256(s01, flip),
                );
                let le2 = _mm256_cmpeq_epi16(
                    _mm256_min_epu16(_mm256_xor_si256(s23, flip), thr),
                    _mm256_xor_si256(s23, flip),
                );
                // Bytes in entry order: quarters (0-7, 16-23, 8-15, 24-31) reordered.
                let packed_le = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi16(le, le2));
                let mut mask = _mm256_movemask_epi8(packed_le) as u32 & valid;
                if mask == 0 {
                    continue;
                }
                unsafe {
                    _mm256_storeu_si256(sums.as_mut_ptr() as *mut _, s01);
                    _mm256_storeu_si256(sums.as_mut_ptr().add(16) as *mut _, s23);
                }
                while mask != 0 {
                    let u = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    tops[a].push(pq_key(sums[u], ids[first + u], ip));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_keys_order_like_faiss_heaps() {
        // L2: smaller sums first, equal sums lower id first.
        assert!(pq_key(3, 9, false) < pq_key(4, 0, false));
        assert!(pq_key(3, 1, false) < pq_key(3, 2, false));
        // IP: larger sums first, equal sums higher id first.
        assert!(pq_key(4, 0, true) < pq_key(3, 9, true));
        assert!(pq_key(3, 2, true) < pq_key(3, 1, true));
        for ip in [false, true] {
            assert_eq!(pq_unkey(pq_key(777, 12345, ip), ip), (777, 12345));
        }
    }
}
