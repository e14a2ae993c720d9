//! 4-bit fast-scan code layout (faiss `pq4_pack_codes`, `faiss/impl/pq4_fast_scan.cpp`).
//!
//! A list's entries are cut into blocks of `bbs` entries (`bbs` a multiple of
//! 32). A block is `bbs * M2 / 2` bytes, `M2 = M` rounded up to even. Inside a
//! block, for each pair of sub-quantizers `(2p, 2p+1)` and each group of 32
//! entries there is one 32-byte chunk (pair-major, then group): bytes 0..16 hold
//! sub-quantizer `2p`, bytes 16..32 hold `2p+1`; byte `j` of a half holds entry
//! `PERM[j]` of the group in its low nibble and entry `PERM[j] + 16` in its high
//! nibble. Unused slots (past the list end, and sub-quantizer `M` when `M` is
//! odd) are zero.
//!
//! Codes are exchanged here as one byte per sub-quantizer code (`n × M`,
//! values 0..16), which is what a search kernel or an encoder works with.

/// `M` rounded up to even.
pub fn m2(m: usize) -> usize {
    m + (m & 1)
}

/// Bytes per block of `bbs` entries.
pub fn block_size(bbs: usize, m2: usize) -> usize {
    bbs * m2 / 2
}

/// Bytes of packed codes a list of `n` entries occupies.
pub fn packed_len(n: usize, m: usize, bbs: usize) -> usize {
    n.div_ceil(bbs) * block_size(bbs, m2(m))
}

/// Entry order inside one 16-byte half chunk: byte `j` holds entry `PERM[j]`
/// (low nibble) and `PERM[j] + 16` (high nibble); the search kernels' own.
pub use crate::compute::lists::PERM;

#[inline]
fn slot(t: usize) -> usize {
    if t < 8 { 2 * t } else { 2 * (t - 8) + 1 }
}

/// Byte offset in the list's packed codes, and whether the code is the high
/// nibble, of sub-quantizer `sq` of list entry `entry`.
#[inline]
pub fn location(entry: usize, sq: usize, bbs: usize, m2: usize) -> (usize, bool) {
    let (block, in_block) = (entry / bbs, entry % bbs);
    let (group, u) = (in_block / 32, in_block % 32);
    let off =
        block * block_size(bbs, m2) + (sq / 2) * bbs + group * 32 + (sq % 2) * 16 + slot(u % 16);
    (off, u >= 16)
}

/// Code of sub-quantizer `sq` of entry `entry`.
#[inline]
pub fn get(packed: &[u8], entry: usize, sq: usize, bbs: usize, m2: usize) -> u8 {
    let (off, hi) = location(entry, sq, bbs, m2);
    if hi {
        packed[off] >> 4
    } else {
        packed[off] & 15
    }
}

/// Pack `codes` (`n × m`, one code 0..16 per byte) into fast-scan blocks.
///
/// Panics if `codes.len()` is not a multiple of `m`, a code is 16 or more, or
/// `bbs` is not a positive multiple of 32.
pub fn pq4_pack(codes: &[u8], m: usize, bbs: usize) -> Vec<u8> {
    assert!(
        m > 0 && codes.len().is_multiple_of(m),
        "codes must be n × M"
    );
    assert!(
        bbs > 0 && bbs.is_multiple_of(32),
        "bbs must be a positive multiple of 32"
    );
    let n = codes.len() / m;
    let m2 = m2(m);
    let mut out = vec![0u8; packed_len(n, m, bbs)];
    for (entry, row) in codes.chunks_exact(m).enumerate() {
        for (sq, &c) in row.iter().enumerate() {
            assert!(c < 16, "4-bit code {c} out of range");
            let (off, hi) = location(entry, sq, bbs, m2);
            out[off] |= if hi { c << 4 } else { c };
        }
    }
    out
}

/// Unpack the first `n` entries of fast-scan blocks into `n × m` codes.
///
/// Panics if `packed` is shorter than [`packed_len`]`(n, m, bbs)`.
pub fn pq4_unpack(packed: &[u8], n: usize, m: usize, bbs: usize) -> Vec<u8> {
    let m2 = m2(m);
    assert!(
        packed.len() >= packed_len(n, m, bbs),
        "packed codes too short"
    );
    let mut out = Vec::with_capacity(n * m);
    for entry in 0..n {
        for sq in 0..m {
            out.push(get(packed, entry, sq, bbs, m2));
        }
    }
    out
}

/// faiss' "flat" PQ code bytes (what `ProductQuantizer::compute_codes`
/// returns) for 4-bit codes: LSB first, sub-quantizer `m` in byte `m / 2`,
/// low nibble for even `m`. `codes` is `n × m`; the result `n × ceil(m/2)`.
pub fn codes_to_pq_bytes(codes: &[u8], m: usize) -> Vec<u8> {
    let per = m.div_ceil(2);
    let mut out = vec![0u8; codes.len() / m * per];
    for (row, dst) in codes.chunks_exact(m).zip(out.chunks_exact_mut(per)) {
        for (sq, &c) in row.iter().enumerate() {
            dst[sq / 2] |= (c & 15) << (4 * (sq % 2));
        }
    }
    out
}

/// Inverse of [`codes_to_pq_bytes`].
pub fn pq_bytes_to_codes(bytes: &[u8], m: usize) -> Vec<u8> {
    let per = m.div_ceil(2);
    let mut out = Vec::with_capacity(bytes.len() / per * m);
    for row in bytes.chunks_exact(per) {
        for sq in 0..m {
            out.push(row[sq / 2] >> (4 * (sq % 2)) & 15);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        // List 0 of an IVF2,PQ4x4fs index written by faiss: entry 0 = [2, 1, 14, 5],
        // entry 8 starts with 12, entry 16 with 6.
        let mut codes = vec![0u8; 17 * 4];
        codes[..4].copy_from_slice(&[2, 1, 14, 5]);
        codes[8 * 4] = 12;
        codes[16 * 4] = 6;
        let p = pq4_pack(&codes, 4, 32);
        assert_eq!(p.len(), 64);
        assert_eq!(p[0], 0x62);
        assert_eq!(p[1], 0x0c); // the spec's 0x1c also has entry 24 = 1 in the high nibble
        assert_eq!(p[16], 0x01);
        assert_eq!(p[32], 0x0e);
        assert_eq!(p[48], 0x05);
        assert_eq!(pq4_unpack(&p, 17, 4, 32), codes);
    }

    #[test]
    fn roundtrip_odd_m_and_big_blocks() {
        for &(n, m, bbs) in &[
            (0, 3, 32),
            (1, 1, 32),
            (70, 5, 32),
            (100, 8, 64),
            (129, 7, 96),
        ] {
            let codes: Vec<u8> = (0..n * m).map(|i| ((i * 7 + i / 3) % 16) as u8).collect();
            let p = pq4_pack(&codes, m, bbs);
            assert_eq!(p.len(), packed_len(n, m, bbs));
            assert_eq!(pq4_unpack(&p, n, m, bbs), codes);
            // every slot is used exactly once: the padding stays zero
            let mut used = vec![0u8; p.len() * 2];
            for e in 0..n.div_ceil(bbs) * bbs {
                for sq in 0..m2(m) {
                    let (off, hi) = location(e, sq, bbs, m2(m));
                    used[off * 2 + hi as usize] += 1;
                }
            }
            assert!(used.iter().all(|&u| u == 1));
        }
    }

    #[test]
    fn flat_pq_bytes() {
        let codes = [2u8, 1, 14, 5, 3];
        let b = codes_to_pq_bytes(&codes, 5);
        assert_eq!(b, vec![0x12, 0x5e, 0x03]);
        assert_eq!(pq_bytes_to_codes(&b, 5), codes);
    }
}
