//! Inputs of the list-scan primitives, as plain slices: inverted lists
//! ([`List`]), the packed 4-bit code layout they use ([`FastScan`]) and the
//! per-query quantised look-up tables of fast-scan PQ ([`PqTables`]).

/// Sub-centroids per sub-space of a 4-bit product quantizer.
pub const KSUB: usize = 16;

/// One inverted list: its ids, and per entry either a raw vector (`len · d`
/// floats, flat lists) or 4-bit PQ codes packed in fast-scan blocks (see
/// [`FastScan`]).
#[derive(Clone, Copy, Debug)]
pub struct List<'a, T> {
    pub ids: &'a [i64],
    pub codes: &'a [T],
}

/// Entry order inside one 16-byte half of a packed 32-entry group: byte `j`
/// holds entry `PERM[j]` (low nibble) and `PERM[j] + 16` (high nibble).
pub const PERM: [usize; 16] = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];

/// Layout of 4-bit fast-scan codes (faiss's `pq4_pack_codes`): entries in
/// blocks of `bbs` (a multiple of 32); inside a block, for each pair of
/// sub-quantizers `(2p, 2p+1)` and each group of 32 entries one 32-byte
/// chunk, bytes 0..16 for `2p` and 16..32 for `2p+1` in [`PERM`] order.
/// With odd `m` the last pair's second half is zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastScan {
    /// Sub-quantizers.
    pub m: usize,
    /// Entries per block.
    pub bbs: usize,
}

impl FastScan {
    /// `m` rounded up to even.
    pub fn m2(self) -> usize {
        self.m + (self.m & 1)
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.bbs * self.m2() / 2
    }

    /// Bytes the packed codes of `n` entries occupy.
    pub fn packed_len(self, n: usize) -> usize {
        if self.bbs == 0 {
            return 0;
        }
        n.div_ceil(self.bbs) * self.block_bytes()
    }
}

/// Quantised look-up tables of a batch of queries (faiss's
/// `quantize_LUT_and_bias` without bias), each `m2 · 16` bytes: `m` rounded
/// up to even, the padding sub-quantizer's table zero. Per sub-quantizer the
/// minimum score is subtracted, one scale `a` per query keeps every entry ≤
/// 255 and every sum of `m` entries ≤ 65535; a table sum `s` stands for the
/// distance `b + s / a`. For inner product the tables hold inner products,
/// larger sums being better.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PqTables {
    /// Sub-quantizers.
    pub m: usize,
    /// `m` rounded up to even.
    pub m2: usize,
    /// `nq × m2 × 16` entries.
    pub luts: Vec<u8>,
    /// Per query: distance = `b + sum / a`.
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl PqTables {
    /// Queries held.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// Table of query `q` (`m2 · 16` bytes).
    pub fn lut(&self, q: usize) -> &[u8] {
        &self.luts[q * self.m2 * KSUB..(q + 1) * self.m2 * KSUB]
    }

    /// The distance a table sum of query `q` stands for.
    pub fn distance(&self, q: usize, sum: u32) -> f32 {
        let inv_a = if self.a[q] > 0.0 {
            1.0 / self.a[q]
        } else {
            0.0
        };
        self.b[q] + sum as f32 * inv_a
    }
}

/// Checks every list-scan primitive makes before a kernel runs: one row of
/// probes per query, each -1 or a list number, and lists whose codes match
/// their ids (`row_len` codes per entry for flat lists, the packed length
/// for fast-scan lists).
pub(crate) fn check_lists<T>(
    what: &str,
    nq: usize,
    lists: &[List<'_, T>],
    probes: ndarray::ArrayView2<i64>,
    codes_len: impl Fn(usize) -> usize,
) -> crate::Result<()> {
    use crate::Error;
    if probes.nrows() != nq {
        return Err(Error::Invalid(format!(
            "{what}: {nq} queries but {} rows of probes",
            probes.nrows()
        )));
    }
    if let Some(&bad) = probes.iter().find(|&&l| l < -1 || l >= lists.len() as i64) {
        return Err(Error::Invalid(format!(
            "{what}: probe {bad} is not one of the {} lists",
            lists.len()
        )));
    }
    for (l, list) in lists.iter().enumerate() {
        let want = codes_len(list.ids.len());
        if list.codes.len() < want {
            return Err(Error::Invalid(format!(
                "{what}: list {l} has {} entries but {} code values ({want} expected)",
                list.ids.len(),
                list.codes.len()
            )));
        }
    }
    Ok(())
}
