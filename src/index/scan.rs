//! SIMD inverted-list scans for IVF search on the CPU, chosen at run time
//! ([`Isa::best`]): AVX-512 (F + BW), AVX2 + FMA, or portable code.
//!
//! * IVF-Flat: one list is scored against a group of queries at once, in
//!   tiles of several queries × several list rows, so each list row is read
//!   from memory once per group rather than once per query. Distances are
//!   computed directly (Σ (x − y)², or −Σ x·y) as faiss's IVF-Flat scanner
//!   does, so results order as faiss's.
//! * 4-bit fast-scan PQ: the 8-bit quantised look-up tables faiss uses,
//!   looked up 16 entries at a time with byte shuffles (`vpshufb`) over the
//!   32-entry packed blocks, summed in 16-bit lanes, and rejected against the
//!   query's current k-th best before anything leaves the registers.
//!
//! Scores are "smaller is better" keys throughout: squared L2 distances or
//! negated inner products (flat), and for PQ a `u64` of the 16-bit table sum
//! (inverted for inner product) above a 48-bit id, which orders equal sums
//! by id as faiss's heaps do.

use crate::Metric;
use crate::compute::knn::TopK;
use crate::faiss::ProductQuantizer;
use crate::index::pq::KSUB;

/// Environment variable that forces an instruction set (`portable`, `avx2`,
/// `avx512`); an unknown or unavailable value means [`Isa::best`].
pub const ISA_ENV: &str = "RVC_INDEX_SCAN_ISA";

/// Instruction set a scan runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Portable)
    }

    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every instruction set this CPU runs (for tests and benches).
    pub fn available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|i| i.is_available())
            .collect()
    }

    pub fn from_env() -> Isa {
        let want = match std::env::var(ISA_ENV).as_deref() {
            Ok("portable") => Isa::Portable,
            Ok("avx2") => Isa::Avx2,
            Ok("avx512") => Isa::Avx512,
            _ => return Isa::best(),
        };
        if want.is_available() {
            want
        } else {
            Isa::best()
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

// ---------------------------------------------------------------- top-k

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

// ---------------------------------------------------------------- flat

/// Score every row of one list (`row(i)`, `n` rows of `d` floats) against each
/// query and fold the keys into `tops[q]` (ids `ids[i]`), rows in order.
#[allow(clippy::too_many_arguments)]
pub fn scan_flat<'a>(
    isa: Isa,
    metric: Metric,
    queries: &[&[f32]],
    d: usize,
    n: usize,
    row: impl Fn(usize) -> &'a [f32],
    ids: impl Fn(usize) -> i64,
    tops: &mut [TopK],
) {
    assert_eq!(queries.len(), tops.len());
    assert!(queries.iter().all(|q| q.len() >= d));
    if n == 0 || queries.is_empty() {
        return;
    }
    let ip = metric == Metric::InnerProduct;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            drive::<6, 4>(queries, d, n, &row, &ids, tops, |qs, rs, out| unsafe {
                x86::flat_tile_512(qs, rs, d, ip, out)
            })
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => {
            drive::<4, 2>(queries, d, n, &row, &ids, tops, |qs, rs, out| unsafe {
                x86::flat_tile_avx2(qs, rs, d, ip, out)
            })
        }
        _ => drive::<2, 2>(queries, d, n, &row, &ids, tops, |qs, rs, out| {
            flat_tile_portable(qs, rs, d, ip, out)
        }),
    }
}

/// Walk queries in groups of up to `QM` and rows in tiles of `R` (a short
/// last tile repeats its last row), folding each tile's keys into the tops.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn drive<'a, const R: usize, const QM: usize>(
    queries: &[&[f32]],
    d: usize,
    n: usize,
    row: &impl Fn(usize) -> &'a [f32],
    ids: &impl Fn(usize) -> i64,
    tops: &mut [TopK],
    tile: impl Fn(&[&[f32]], &[&[f32]; R], &mut [[f32; R]; 4]),
) {
    let mut out = [[0f32; R]; 4];
    let mut q0 = 0;
    while q0 < queries.len() {
        let left = queries.len() - q0;
        let qn = if left >= QM {
            QM
        } else if left >= 2 {
            2
        } else {
            1
        };
        let qs = &queries[q0..q0 + qn];
        let mut r0 = 0;
        while r0 < n {
            let rn = R.min(n - r0);
            let rs: [&[f32]; R] = std::array::from_fn(|b| {
                let r = row(r0 + b.min(rn - 1));
                debug_assert!(r.len() >= d);
                r
            });
            tile(qs, &rs, &mut out);
            for (a, top) in tops[q0..q0 + qn].iter_mut().enumerate() {
                let mut thr = top.threshold();
                for (b, &key) in out[a][..rn].iter().enumerate() {
                    if key < thr {
                        top.push(key, ids(r0 + b));
                        thr = top.threshold();
                    }
                }
            }
            r0 += R;
        }
        q0 += qn;
    }
}

/// Reference key of one row: Σ (x − y)² or −Σ x·y, summed in order.
pub fn flat_key_scalar(metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    match metric {
        Metric::L2 => x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum(),
        Metric::InnerProduct => -x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>(),
    }
}

/// Key of one row with the fastest kernel (for refine).
pub fn flat_key(isa: Isa, metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    let d = x.len().min(y.len());
    let mut out = [[0f32; 1]; 4];
    let ip = metric == Metric::InnerProduct;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => unsafe {
            x86::flat_tile_512::<1>(&[x], &[y], d, ip, &mut out)
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => unsafe {
            x86::flat_tile_avx2::<1>(&[x], &[y], d, ip, &mut out)
        },
        _ => flat_tile_portable::<1>(&[x], &[y], d, ip, &mut out),
    }
    out[0][0]
}

/// Portable tile: 8 independent lane sums per (query, row), `Q ≤ 4` queries.
#[inline(always)]
fn flat_tile_generic<const R: usize>(
    qs: &[&[f32]],
    rs: &[&[f32]; R],
    d: usize,
    ip: bool,
    out: &mut [[f32; R]; 4],
) {
    match qs.len() {
        4 => tile_q::<4, R>(qs, rs, d, ip, out),
        3 => tile_q::<3, R>(qs, rs, d, ip, out),
        2 => tile_q::<2, R>(qs, rs, d, ip, out),
        _ => tile_q::<1, R>(qs, rs, d, ip, out),
    }
}

#[inline(always)]
fn tile_q<const Q: usize, const R: usize>(
    qs: &[&[f32]],
    rs: &[&[f32]; R],
    d: usize,
    ip: bool,
    out: &mut [[f32; R]; 4],
) {
    const L: usize = 8;
    let qs: [&[f32]; Q] = std::array::from_fn(|a| &qs[a][..d]);
    let rs: [&[f32]; R] = std::array::from_fn(|b| &rs[b][..d]);
    let mut acc = [[[0f32; L]; R]; Q];
    let full = d / L * L;
    let mut j = 0;
    while j < full {
        for b in 0..R {
            let y: &[f32; L] = rs[b][j..j + L].try_into().unwrap();
            for a in 0..Q {
                let x: &[f32; L] = qs[a][j..j + L].try_into().unwrap();
                for l in 0..L {
                    let (u, v) = if ip {
                        (x[l], y[l])
                    } else {
                        (x[l] - y[l], x[l] - y[l])
                    };
                    acc[a][b][l] += u * v;
                }
            }
        }
        j += L;
    }
    for a in 0..Q {
        for b in 0..R {
            for jj in full..d {
                let (x, y) = (qs[a][jj], rs[b][jj]);
                let (u, v) = if ip { (x, y) } else { (x - y, x - y) };
                acc[a][b][jj - full] += u * v;
            }
            let s = acc[a][b].iter().sum::<f32>();
            out[a][b] = if ip { -s } else { s };
        }
    }
}

fn flat_tile_portable<const R: usize>(
    qs: &[&[f32]],
    rs: &[&[f32]; R],
    d: usize,
    ip: bool,
    out: &mut [[f32; R]; 4],
) {
    flat_tile_generic::<R>(qs, rs, d, ip, out)
}

// ---------------------------------------------------------------- PQ

/// Quantised look-up tables of a batch of queries, each `m2 · 16` bytes
/// (`M` rounded up to even; the padding sub-quantizer's table is zero), laid
/// out pair by pair as the packed codes are: `[2p][16]` then `[2p+1][16]`.
#[derive(Clone, Debug, Default)]
pub struct PqTables {
    pub m2: usize,
    pub luts: Vec<u8>,
    /// Per query: distance = `b + sum / a`.
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl PqTables {
    pub fn lut(&self, q: usize) -> &[u8] {
        &self.luts[q * self.m2 * KSUB..(q + 1) * self.m2 * KSUB]
    }

    /// The distance a table sum stands for.
    pub fn distance(&self, q: usize, sum: u16) -> f32 {
        let inv_a = if self.a[q] > 0.0 {
            1.0 / self.a[q]
        } else {
            0.0
        };
        self.b[q] + sum as f32 * inv_a
    }
}

/// Sub-quantizer centroids transposed to `[m][dsub][16]`, so that one
/// sub-space's 16 scores are computed lane-parallel.
pub struct Transposed {
    m: usize,
    dsub: usize,
    c: Vec<f32>,
}

impl Transposed {
    pub fn new(pq: &ProductQuantizer) -> Self {
        let (m, dsub) = (pq.m, pq.dsub());
        let mut c = vec![0f32; m * dsub * KSUB];
        for sq in 0..m {
            for k in 0..KSUB {
                for (j, &v) in pq.centroid(sq, k).iter().enumerate() {
                    c[(sq * dsub + j) * KSUB + k] = v;
                }
            }
        }
        Transposed { m, dsub, c }
    }

    /// The 16 scores of sub-space `sq` of `x`: Σ (x − c)² (or Σ x·c), summed
    /// over the sub-space's dimensions in order, exactly as the scalar
    /// `search::lut` and `ProductQuantizer::encode` sum them.
    #[inline(always)]
    fn scores(&self, x: &[f32], sq: usize, ip: bool) -> [f32; KSUB] {
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
/// bytes); the arithmetic is `search::quantize_lut`'s, entry for entry.
/// Returns `(a, b)`.
#[inline(always)]
pub fn pq_table(
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

/// Tables of every query (rows of `queries`, `d` floats each), in parallel.
pub fn pq_tables(pq: &ProductQuantizer, queries: &[f32], metric: Metric) -> PqTables {
    let mut t = PqTables::default();
    pq_tables_into(&Transposed::new(pq), queries, metric, &mut t);
    t
}

/// [`pq_tables`] into `out`, reusing its buffers.
pub fn pq_tables_into(tr: &Transposed, queries: &[f32], metric: Metric, out: &mut PqTables) {
    use rayon::prelude::*;
    let d = (tr.m * tr.dsub).max(1);
    let nq = queries.len() / d;
    let m2 = tr.m + (tr.m & 1);
    out.m2 = m2;
    out.luts.resize(nq * m2 * KSUB, 0);
    out.a.resize(nq, 0.0);
    out.b.resize(nq, 0.0);
    let ip = metric == Metric::InnerProduct;
    let isa = Isa::from_env();
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

/// Entry order inside a 16-byte half chunk (faiss `pq4_pack_codes`).
const PERM: [usize; 16] = crate::faiss::fastscan::PERM;

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

// ---------------------------------------------------------------- encoding

/// 4-bit PQ codes of rows `x` (`n × d`, one code per byte, `n × m`), equal
/// to `ProductQuantizer::encode` row by row (same sums, ties to the lowest
/// centroid), in parallel.
pub fn pq_encode(pq: &ProductQuantizer, x: &[f32]) -> Vec<u8> {
    use rayon::prelude::*;
    let tr = Transposed::new(pq);
    let (d, m) = (pq.d.max(1), pq.m.max(1));
    let n = x.len() / d;
    let mut codes = vec![0u8; n * pq.m];
    let isa = Isa::from_env();
    codes
        .par_chunks_mut(m * 256)
        .zip(x.par_chunks(d * 256))
        .for_each(|(out, rows)| match isa {
            // SAFETY: the CPU has the features (checked by `Isa`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::encode_rows_512(&tr, rows, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::encode_rows_avx2(&tr, rows, out) },
            _ => encode_rows(&tr, rows, out),
        });
    codes
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

// ---------------------------------------------------------------- x86 kernels

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PqTop, Transposed, pq_key};
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

    /// AVX-512 flat tile: up to 4 queries × `R` rows, 16-lane sums.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn flat_tile_512<const R: usize>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        ip: bool,
        out: &mut [[f32; R]; 4],
    ) {
        unsafe {
            match (qs.len(), ip) {
                (4, false) => tile512::<4, R, false>(qs, rs, d, out),
                (3, false) => tile512::<3, R, false>(qs, rs, d, out),
                (2, false) => tile512::<2, R, false>(qs, rs, d, out),
                (_, false) => tile512::<1, R, false>(qs, rs, d, out),
                (4, true) => tile512::<4, R, true>(qs, rs, d, out),
                (3, true) => tile512::<3, R, true>(qs, rs, d, out),
                (2, true) => tile512::<2, R, true>(qs, rs, d, out),
                (_, true) => tile512::<1, R, true>(qs, rs, d, out),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tile512<const Q: usize, const R: usize, const IP: bool>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        out: &mut [[f32; R]; 4],
    ) {
        let mut qp = [std::ptr::null::<f32>(); Q];
        for a in 0..Q {
            assert!(qs[a].len() >= d);
            qp[a] = qs[a].as_ptr();
        }
        let mut rp = [std::ptr::null::<f32>(); R];
        for b in 0..R {
            assert!(rs[b].len() >= d);
            rp[b] = rs[b].as_ptr();
        }
        let mut acc = [[_mm512_setzero_ps(); R]; Q];
        let mut j = 0;
        // SAFETY: every pointer has at least `d` floats; loads stay below d
        // (the tail is masked).
        unsafe {
            while j + 16 <= d {
                let mut x = [_mm512_setzero_ps(); Q];
                for a in 0..Q {
                    x[a] = _mm512_loadu_ps(qp[a].add(j));
                }
                for b in 0..R {
                    let y = _mm512_loadu_ps(rp[b].add(j));
                    for a in 0..Q {
                        acc[a][b] = if IP {
                            _mm512_fmadd_ps(x[a], y, acc[a][b])
                        } else {
                            let t = _mm512_sub_ps(x[a], y);
                            _mm512_fmadd_ps(t, t, acc[a][b])
                        };
                    }
                }
                j += 16;
            }
            if j < d {
                let k: __mmask16 = ((1u32 << (d - j)) - 1) as u16;
                let mut x = [_mm512_setzero_ps(); Q];
                for a in 0..Q {
                    x[a] = _mm512_maskz_loadu_ps(k, qp[a].add(j));
                }
                for b in 0..R {
                    let y = _mm512_maskz_loadu_ps(k, rp[b].add(j));
                    for a in 0..Q {
                        acc[a][b] = if IP {
                            _mm512_fmadd_ps(x[a], y, acc[a][b])
                        } else {
                            let t = _mm512_sub_ps(x[a], y);
                            _mm512_fmadd_ps(t, t, acc[a][b])
                        };
                    }
                }
            }
        }
        for a in 0..Q {
            for b in 0..R {
                let s = _mm512_reduce_add_ps(acc[a][b]);
                out[a][b] = if IP { -s } else { s };
            }
        }
    }

    /// AVX2 + FMA flat tile: up to 2 queries × `R` rows, 8-lane sums.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn flat_tile_avx2<const R: usize>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        ip: bool,
        out: &mut [[f32; R]; 4],
    ) {
        unsafe {
            match (qs.len(), ip) {
                (1, false) => tile256::<1, R, false>(qs, rs, d, out),
                (_, false) => tile256::<2, R, false>(qs, rs, d, out),
                (1, true) => tile256::<1, R, true>(qs, rs, d, out),
                (_, true) => tile256::<2, R, true>(qs, rs, d, out),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile256<const Q: usize, const R: usize, const IP: bool>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        out: &mut [[f32; R]; 4],
    ) {
        let mut qp = [std::ptr::null::<f32>(); Q];
        for a in 0..Q {
            assert!(qs[a].len() >= d);
            qp[a] = qs[a].as_ptr();
        }
        let mut rp = [std::ptr::null::<f32>(); R];
        for b in 0..R {
            assert!(rs[b].len() >= d);
            rp[b] = rs[b].as_ptr();
        }
        let mut acc = [[_mm256_setzero_ps(); R]; Q];
        let mut j = 0;
        // SAFETY: loads stay below `d` floats of every pointer.
        unsafe {
            while j + 8 <= d {
                let mut x = [_mm256_setzero_ps(); Q];
                for a in 0..Q {
                    x[a] = _mm256_loadu_ps(qp[a].add(j));
                }
                for b in 0..R {
                    let y = _mm256_loadu_ps(rp[b].add(j));
                    for a in 0..Q {
                        acc[a][b] = if IP {
                            _mm256_fmadd_ps(x[a], y, acc[a][b])
                        } else {
                            let t = _mm256_sub_ps(x[a], y);
                            _mm256_fmadd_ps(t, t, acc[a][b])
                        };
                    }
                }
                j += 8;
            }
        }
        let mut lanes = [0f32; 8];
        for a in 0..Q {
            for b in 0..R {
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[a][b]) };
                // SAFETY: jj < d.
                for (l, jj) in (j..d).enumerate() {
                    let (x, y) = unsafe { (*qp[a].add(jj), *rp[b].add(jj)) };
                    lanes[l] += if IP { x * y } else { (x - y) * (x - y) };
                }
                let s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                    + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
                out[a][b] = if IP { -s } else { s };
            }
        }
    }

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
