//! AVX-512 exact k-nearest-neighbour search (the `knn` primitive with
//! [`Isa::Avx512`](super::Isa)): the register-blocked GEMM
//! microkernel of `avx512.rs` (`MR` = 14 query rows × `NR` = 32 database
//! rows in 28 zmm accumulators, operands packed) fused with a per-query
//! top-k list.
//!
//! Every query keeps a threshold, the key of its current k-th best (or +∞
//! while it has fewer than k). The microkernel's epilogue compares each
//! vector of 16 keys against it with one instruction; only lanes that can
//! enter the list leave the registers and go through a scalar insertion.
//! Keys are what the kernel minimises, `alpha·x·y + beta[y]` (L2:
//! `‖y‖² − 2·x·y`, reported as `max(‖x‖² + key, 0)`; inner product: `−x·y`).
//! Lists are ordered by (key, id), so ties go to the lower id whatever order
//! the candidates arrive in, and the result does not depend on the thread
//! count. Padding rows and columns carry NaN offsets and thresholds, so they
//! fail every comparison.
//!
//! [`knn`] runs rayon tasks over blocks of queries (sized to stay in L2)
//! against database chunks packed once and shared. [`knn_self`] searches a
//! matrix against itself and computes each pair of row blocks once, feeding
//! both the rows' lists (candidates: the columns) and the columns' lists
//! (candidates: the rows): half the arithmetic. Block pairs are scheduled
//! in round-robin rounds in which no two tasks touch the same rows, so the
//! lists need no locks.
//!
//! Both compute every dot product with the same instruction sequence (`d`
//! steps of FMA from zero), and `a·b` equals `b·a` bit for bit under FMA,
//! so `knn_self(x)` returns exactly what `knn(x, x)` returns.

// Register tiles read best with explicit indices.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use ndarray::Array2;
use rayon::prelude::*;

use super::avx512::{AlignedBuf, MR, NR, NV, accumulate, available, pack_rows, pack_transposed};
use super::{Scores, norm2};
use crate::Metric;
use crate::compute::neighbours::Neighbours;

/// Bytes of packed query rows a task keeps in L2 while it scans the database.
const ROW_BLOCK_BYTES: usize = 384 * 1024;
/// Most query rows per task.
const MAX_ROW_BLOCK: usize = 32 * MR;
/// Bytes of packed database rows shared by all tasks at a time ([`knn`]).
const DB_CHUNK_BYTES: usize = 32 << 20;
/// Rows per block of the self-join: the most, and the fewest.
const MAX_SELF_BLOCK: usize = 2048;
const MIN_SELF_BLOCK: usize = 256;
/// Tasks per thread to aim for.
const TASKS_PER_THREAD: usize = 4;

/// Id of an empty slot.
const NONE: u32 = u32::MAX;

/// Raw view of the per-query lists, written by tasks that own disjoint rows.
#[derive(Clone, Copy)]
struct Lists {
    keys: *mut f32,
    ids: *mut u32,
    k: usize,
}

// SAFETY: tasks only touch the lists of the queries they own (see callers).
unsafe impl Send for Lists {}
unsafe impl Sync for Lists {}

/// One side of a tile: its rows' thresholds (local copies, NaN padding),
/// their offsets when they are the candidates (NaN padding), and the id of
/// its first row (also the index of its list).
struct Side {
    thr: *mut f32,
    beta: *const f32,
    id0: u32,
}

/// Insert `(key, id)` into the list of `k` slots at `keys`/`ids` if it is
/// among the k smallest (key, id) pairs; returns the new threshold.
#[inline]
unsafe fn insert(keys: *mut f32, ids: *mut u32, k: usize, key: f32, id: u32) -> f32 {
    // SAFETY: the caller passes one query's k slots.
    let (keys, ids) = unsafe {
        (
            std::slice::from_raw_parts_mut(keys, k),
            std::slice::from_raw_parts_mut(ids, k),
        )
    };
    let last = k - 1;
    let after = |kp: f32, ip: u32| kp > key || (kp == key && ip > id);
    if key.is_nan() || key == f32::INFINITY || !after(keys[last], ids[last]) {
        return keys[last];
    }
    let mut p = last;
    while p > 0 && after(keys[p - 1], ids[p - 1]) {
        keys[p] = keys[p - 1];
        ids[p] = ids[p - 1];
        p -= 1;
    }
    keys[p] = key;
    ids[p] = id;
    keys[last]
}

/// Lanes of `mask` (16 keys of one query row, candidates `cand0 + lane`)
/// into that query's list; updates its threshold.
#[cold]
#[inline(never)]
unsafe fn hits_row(lists: Lists, q: u32, thr: *mut f32, keys: &[f32; 16], mask: u16, cand0: u32) {
    let mut m = mask;
    while m != 0 {
        let l = m.trailing_zeros() as usize;
        m &= m - 1;
        let base = q as usize * lists.k;
        // SAFETY: q is a live query owned by this task.
        unsafe {
            *thr = insert(
                lists.keys.add(base),
                lists.ids.add(base),
                lists.k,
                keys[l],
                cand0 + l as u32,
            );
        }
    }
}

/// Lanes of `mask` (16 column queries `q0 + lane`, all with candidate
/// `cand`) into those queries' lists; updates their thresholds.
#[cold]
#[inline(never)]
unsafe fn hits_col(lists: Lists, q0: u32, thr: *mut f32, keys: &[f32; 16], mask: u16, cand: u32) {
    let mut m = mask;
    while m != 0 {
        let l = m.trailing_zeros() as usize;
        m &= m - 1;
        let base = (q0 as usize + l) * lists.k;
        // SAFETY: lane l is a live column query owned by this task.
        unsafe {
            *thr.add(l) = insert(
                lists.keys.add(base),
                lists.ids.add(base),
                lists.k,
                keys[l],
                cand,
            );
        }
    }
}

/// One `MR × NR` tile of dot products over `d` steps, folded into the lists
/// of its rows (candidates: its columns) and, with `SYM`, of its columns
/// (candidates: its rows).
#[target_feature(enable = "avx512f")]
unsafe fn tile<const SYM: bool>(
    a: *const f32,
    b: *const f32,
    d: usize,
    alpha: f32,
    lists: Lists,
    r: &Side,
    c: &Side,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    // SAFETY: the packed panels hold d steps.
    unsafe { accumulate(&mut acc, a, b, d) };
    let alpha = _mm512_set1_ps(alpha);
    let mut betac = [_mm512_setzero_ps(); NV];
    for v in 0..NV {
        // SAFETY: the column side has NR offsets.
        betac[v] = unsafe { _mm512_loadu_ps(c.beta.add(16 * v)) };
    }
    for i in 0..MR {
        // SAFETY: the row side has MR thresholds.
        let t = _mm512_set1_ps(unsafe { *r.thr.add(i) });
        let mut s = [_mm512_setzero_ps(); NV];
        let mut m = [0u16; NV];
        for v in 0..NV {
            s[v] = _mm512_fmadd_ps(acc[i][v], alpha, betac[v]);
            m[v] = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(s[v], t);
        }
        if m.iter().any(|&m| m != 0) {
            for v in 0..NV {
                if m[v] != 0 {
                    let mut keys = [0f32; 16];
                    // SAFETY: keys holds 16 floats.
                    unsafe {
                        _mm512_storeu_ps(keys.as_mut_ptr(), s[v]);
                        hits_row(
                            lists,
                            r.id0 + i as u32,
                            r.thr.add(i),
                            &keys,
                            m[v],
                            c.id0 + 16 * v as u32,
                        );
                    }
                }
            }
        }
    }
    if !SYM {
        return;
    }
    for v in 0..NV {
        // SAFETY: the column side has NR thresholds, the row side MR offsets.
        unsafe {
            let mut t = _mm512_loadu_ps(c.thr.add(16 * v));
            for i in 0..MR {
                let s = _mm512_fmadd_ps(acc[i][v], alpha, _mm512_set1_ps(*r.beta.add(i)));
                let m = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(s, t);
                if m != 0 {
                    let mut keys = [0f32; 16];
                    _mm512_storeu_ps(keys.as_mut_ptr(), s);
                    hits_col(
                        lists,
                        c.id0 + 16 * v as u32,
                        c.thr.add(16 * v),
                        &keys,
                        m,
                        r.id0 + i as u32,
                    );
                    t = _mm512_loadu_ps(c.thr.add(16 * v));
                }
            }
        }
    }
}

/// Per-thread scratch (packed operands and local thresholds/offsets), kept
/// by each rayon thread between calls (at most two blocks of the self-join,
/// 2 × 2048 rows × d floats).
struct Scratch {
    rows: AlignedBuf,
    cols: AlignedBuf,
    thr_r: Vec<f32>,
    beta_r: Vec<f32>,
    thr_c: Vec<f32>,
    beta_c: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        rows: AlignedBuf::zeroed(0),
        cols: AlignedBuf::zeroed(0),
        thr_r: Vec::new(),
        beta_r: Vec::new(),
        thr_c: Vec::new(),
        beta_c: Vec::new(),
    });
}

/// Local copies, padded with NaN to `len`: the thresholds of queries
/// `range` and their offsets `beta` (one per query of `range`).
fn local(
    lists: Lists,
    range: Range<usize>,
    beta: &[f32],
    len: usize,
    thr: &mut Vec<f32>,
    b: &mut Vec<f32>,
) {
    thr.clear();
    b.clear();
    for q in range.clone() {
        // SAFETY: q is a query owned by the calling task.
        thr.push(unsafe { *lists.keys.add(q * lists.k + lists.k - 1) });
    }
    b.extend_from_slice(beta);
    thr.resize(len, f32::NAN);
    b.resize(len, f32::NAN);
}

/// Rows per query block: as many as stay in L2, fewer when that leaves
/// fewer than `TASKS_PER_THREAD` tasks per thread.
fn row_block(n: usize, d: usize, threads: usize) -> usize {
    let by_cache = (ROW_BLOCK_BYTES / (4 * d)).clamp(MR, MAX_ROW_BLOCK) / MR * MR;
    let want = TASKS_PER_THREAD * threads.max(1);
    by_cache.min(n.div_ceil(want).div_ceil(MR) * MR).max(MR)
}

/// Scan packed rows (`rows` of them, micro-panels in `a`) against packed
/// column panels `b` (`cols` columns), `mc` rows at a time.
#[target_feature(enable = "avx512f")]
unsafe fn scan<const SYM: bool>(
    a: &[f32],
    rows: usize,
    b: &[f32],
    cols: usize,
    d: usize,
    alpha: f32,
    lists: Lists,
    s_r: (&mut [f32], &[f32], u32),
    s_c: (&mut [f32], &[f32], u32),
    mc: usize,
) {
    let npan = cols.div_ceil(NR);
    let nmic = rows.div_ceil(MR);
    let per_block = (mc / MR).max(1);
    let (thr_r, beta_r, id_r) = s_r;
    let (thr_c, beta_c, id_c) = s_c;
    for q0 in (0..nmic).step_by(per_block) {
        let q1 = (q0 + per_block).min(nmic);
        for p in 0..npan {
            let c = Side {
                thr: thr_c[p * NR..].as_mut_ptr(),
                beta: beta_c[p * NR..].as_ptr(),
                id0: id_c + (p * NR) as u32,
            };
            for q in q0..q1 {
                let r = Side {
                    thr: thr_r[q * MR..].as_mut_ptr(),
                    beta: beta_r[q * MR..].as_ptr(),
                    id0: id_r + (q * MR) as u32,
                };
                // SAFETY: micro-panel q and panel p lie inside the packed
                // buffers; the side arrays hold MR / NR entries from there.
                unsafe {
                    tile::<SYM>(
                        a.as_ptr().add(q * MR * d),
                        b.as_ptr().add(p * NR * d),
                        d,
                        alpha,
                        lists,
                        &r,
                        &c,
                    )
                };
            }
        }
    }
}

/// Pack `rows` rows of `y` (row-major) into `NR`-column panels.
fn pack_cols(y: &[f32], rows: usize, d: usize, out: &mut [f32]) {
    for (p, panel) in out.chunks_exact_mut(NR * d).enumerate() {
        let live = NR.min(rows - p * NR);
        pack_transposed::<NR>(&y[p * NR * d..], live, d, panel);
    }
}

/// Fresh lists: every slot empty.
fn new_lists(n: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    (vec![f32::INFINITY; n * k], vec![NONE; n * k])
}

/// Lists into `Neighbours`: ids as i64 (-1 when empty), keys to scores.
fn finish(
    keys: &[f32],
    ids: &[u32],
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    metric: Metric,
) -> Neighbours {
    let mut out_ids = Array2::from_elem((n, k), -1i64);
    let mut out_scores = Array2::from_elem((n, k), metric.worst());
    out_ids
        .as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut(k)
        .zip(
            out_scores
                .as_slice_mut()
                .expect("fresh array")
                .par_chunks_mut(k),
        )
        .enumerate()
        .for_each(|(q, (oi, os))| {
            let xn = match metric {
                Metric::L2 => norm2(&x[q * d..(q + 1) * d]),
                Metric::InnerProduct => 0.0,
            };
            for r in 0..k {
                let id = ids[q * k + r];
                if id != NONE {
                    let key = keys[q * k + r];
                    oi[r] = id as i64;
                    // As `Scores::finish`.
                    os[r] = match metric {
                        Metric::L2 => (xn + key).max(0.0),
                        Metric::InnerProduct => -key,
                    };
                }
            }
        });
    Neighbours {
        ids: out_ids,
        scores: out_scores,
    }
}

/// Offsets per database row: `‖y‖²` for L2, 0 for inner product.
fn offsets(y: &[f32], d: usize, metric: Metric) -> Vec<f32> {
    match metric {
        Metric::L2 => y.par_chunks(d).map(norm2).collect(),
        Metric::InnerProduct => vec![0.0; y.len() / d],
    }
}

/// The `k` best rows of `y` (`nb × d`) for each row of `x` (`nq × d`),
/// both row-major; `d`, `k` ≥ 1 and `nb` < 2³² − 1.
pub(crate) fn knn(
    x: &[f32],
    nq: usize,
    y: &[f32],
    nb: usize,
    d: usize,
    k: usize,
    metric: Metric,
) -> Neighbours {
    assert!(available(), "AVX-512F kernel called on a CPU without it");
    assert!(d >= 1 && k >= 1 && (nb as u64) < NONE as u64);
    debug_assert!(x.len() == nq * d && y.len() == nb * d);
    let alpha = Scores::from(metric).alpha();
    let beta = offsets(y, d, metric);
    let (mut keys, mut ids) = new_lists(nq, k);
    let lists = Lists {
        keys: keys.as_mut_ptr(),
        ids: ids.as_mut_ptr(),
        k,
    };
    let mc = row_block(nq, d, rayon::current_num_threads());
    let chunk = ((DB_CHUNK_BYTES / (4 * d)) / NR * NR).max(NR);
    let mut packed = AlignedBuf::zeroed(0);
    for y0 in (0..nb).step_by(chunk) {
        let cols = chunk.min(nb - y0);
        packed.ensure(cols.div_ceil(NR) * NR * d);
        packed
            .as_mut_slice()
            .par_chunks_mut(NR * d)
            .enumerate()
            .for_each(|(p, out)| {
                let r0 = y0 + p * NR;
                let live = NR.min(y0 + cols - r0);
                pack_transposed::<NR>(&y[r0 * d..], live, d, out);
            });
        let packed = &packed;
        let beta = &beta[y0..y0 + cols];
        (0..nq.div_ceil(mc)).into_par_iter().for_each(|blk| {
            let q0 = blk * mc;
            let rows = mc.min(nq - q0);
            SCRATCH.with_borrow_mut(|s| {
                let nmic = rows.div_ceil(MR);
                s.rows.ensure(nmic * MR * d);
                pack_rows(&x[q0 * d..(q0 + rows) * d], rows, d, s.rows.as_mut_slice());
                // Query rows are never candidates here: no offsets.
                let zeros = vec![0f32; rows];
                local(
                    lists,
                    q0..q0 + rows,
                    &zeros,
                    nmic * MR,
                    &mut s.thr_r,
                    &mut s.beta_r,
                );
                s.thr_c.clear();
                s.beta_c.clear();
                s.beta_c.extend_from_slice(beta);
                s.beta_c.resize(cols.div_ceil(NR) * NR, f32::NAN);
                s.thr_c.resize(s.beta_c.len(), f32::NAN);
                // SAFETY: AVX-512F was checked above; this task owns
                // queries q0..q0+rows.
                unsafe {
                    scan::<false>(
                        s.rows.as_slice(),
                        rows,
                        packed.as_slice(),
                        cols,
                        d,
                        alpha,
                        lists,
                        (&mut s.thr_r, &s.beta_r, q0 as u32),
                        (&mut s.thr_c, &s.beta_c, y0 as u32),
                        mc,
                    )
                };
            });
        });
    }
    finish(&keys, &ids, x, nq, d, k, metric)
}

/// Pairs of blocks `0..b` in rounds where no block appears twice (the
/// circle method), every unordered pair exactly once.
fn rounds(b: usize) -> Vec<Vec<(usize, usize)>> {
    let m = b + b % 2;
    let mut out = Vec::new();
    for r in 0..m.saturating_sub(1) {
        let mut round = vec![(m - 1, r)];
        for i in 1..m / 2 {
            round.push(((r + i) % (m - 1), (r + m - 1 - i) % (m - 1)));
        }
        round.retain(|&(i, j)| i < b && j < b);
        round
            .iter_mut()
            .for_each(|p| *p = (p.0.min(p.1), p.0.max(p.1)));
        out.push(round);
    }
    out
}

/// `knn(x, x)` computing each pair of rows once.
pub(crate) fn knn_self(x: &[f32], n: usize, d: usize, k: usize, metric: Metric) -> Neighbours {
    assert!(available(), "AVX-512F kernel called on a CPU without it");
    assert!(d >= 1 && k >= 1 && (n as u64) < NONE as u64);
    debug_assert!(x.len() == n * d);
    let threads = rayon::current_num_threads();
    let alpha = Scores::from(metric).alpha();
    let beta = offsets(x, d, metric);
    let (mut keys, mut ids) = new_lists(n, k);
    let lists = Lists {
        keys: keys.as_mut_ptr(),
        ids: ids.as_mut_ptr(),
        k,
    };
    let sb = n
        .div_ceil(2 * TASKS_PER_THREAD * threads)
        .clamp(MIN_SELF_BLOCK, MAX_SELF_BLOCK)
        .div_ceil(NR)
        * NR;
    let nblk = n.div_ceil(sb);
    let mc = row_block(usize::MAX / 2, d, 1);
    let block = |b: usize| b * sb..((b + 1) * sb).min(n);
    let run = |bi: usize, bj: usize| {
        let (ri, rj) = (block(bi), block(bj));
        SCRATCH.with_borrow_mut(|s| {
            let (rows, cols) = (ri.len(), rj.len());
            let nmic = rows.div_ceil(MR);
            s.rows.ensure(nmic * MR * d);
            pack_rows(&x[ri.start * d..ri.end * d], rows, d, s.rows.as_mut_slice());
            s.cols.ensure(cols.div_ceil(NR) * NR * d);
            pack_cols(&x[rj.start * d..rj.end * d], cols, d, s.cols.as_mut_slice());
            local(
                lists,
                ri.clone(),
                &beta[ri.clone()],
                nmic * MR,
                &mut s.thr_r,
                &mut s.beta_r,
            );
            local(
                lists,
                rj.clone(),
                &beta[rj.clone()],
                cols.div_ceil(NR) * NR,
                &mut s.thr_c,
                &mut s.beta_c,
            );
            let a = (&mut s.thr_r[..], &s.beta_r[..], ri.start as u32);
            let b = (&mut s.thr_c[..], &s.beta_c[..], rj.start as u32);
            // SAFETY: AVX-512F was checked above; in a round, this task is
            // the only one touching the queries of blocks bi and bj.
            unsafe {
                if bi == bj {
                    scan::<false>(
                        s.rows.as_slice(),
                        rows,
                        s.cols.as_slice(),
                        cols,
                        d,
                        alpha,
                        lists,
                        a,
                        b,
                        mc,
                    );
                } else {
                    scan::<true>(
                        s.rows.as_slice(),
                        rows,
                        s.cols.as_slice(),
                        cols,
                        d,
                        alpha,
                        lists,
                        a,
                        b,
                        mc,
                    );
                }
            }
        });
    };
    (0..nblk).into_par_iter().for_each(|b| run(b, b));
    for round in rounds(nblk) {
        round.into_par_iter().for_each(|(i, j)| run(i, j));
    }
    finish(&keys, &ids, x, n, d, k, metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_cover_every_pair_once_and_blocks_once_per_round() {
        for b in 1..12 {
            let mut seen = std::collections::HashSet::new();
            for round in rounds(b) {
                let mut used = std::collections::HashSet::new();
                for (i, j) in round {
                    assert!(i < j && j < b);
                    assert!(used.insert(i) && used.insert(j), "block twice in a round");
                    assert!(seen.insert((i, j)), "pair twice");
                }
            }
            assert_eq!(seen.len(), b * (b - 1) / 2);
        }
    }

    #[test]
    fn insert_orders_by_key_then_id() {
        let mut keys = [f32::INFINITY; 3];
        let mut ids = [NONE; 3];
        for (key, id) in [
            (5.0, 7),
            (1.0, 9),
            (1.0, 3),
            (5.0, 2),
            (0.5, 4),
            (f32::INFINITY, 1),
        ] {
            unsafe { insert(keys.as_mut_ptr(), ids.as_mut_ptr(), 3, key, id) };
        }
        assert_eq!(keys, [0.5, 1.0, 1.0]);
        assert_eq!(ids, [4, 3, 9]);
    }
}
