//! IVF search as faiss does it: the `nprobe` nearest lists of each query by
//! the coarse quantizer, then every entry of those lists scored — exactly
//! (IVF-Flat) or from a per-query look-up table of sub-quantizer scores
//! (PQ) — into a top-k; optionally `k·k_factor` PQ candidates re-ranked with
//! exact distances (RFlat).

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use std::time::Instant;

use super::pq::KSUB;
use super::scan::{self, Isa, PqTop};
use crate::compute::Backend;
use crate::compute::knn::{Neighbours, TopK, collect};
use crate::faiss::ProductQuantizer;
use crate::faiss::{Index, Ivf};
use crate::{Error, Metric, Result};

/// One inverted list: ids and, for IVF-Flat, the raw vectors (len·d floats)
/// or, for PQ, one code per sub-quantizer (len·M bytes).
pub struct List<'a, T> {
    pub ids: &'a [i64],
    pub codes: &'a [T],
}

#[inline]
fn key(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        Metric::InnerProduct => -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
    }
}

/// The lists each query probes, nearest first (-1 where there are fewer
/// lists than `nprobe`). One probe is a plain assignment (`Backend::assign`,
/// ties to the lower list as faiss's coarse search).
pub fn coarse(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    nprobe: usize,
    metric: Metric,
) -> Result<Array2<i64>> {
    let nq = queries.nrows();
    if centroids.nrows() == 0 {
        return Ok(Array2::from_elem((nq, nprobe.max(1)), -1));
    }
    if nprobe <= 1 {
        let a = backend.assign(queries, centroids, metric)?;
        let labels = a.labels.into_iter().map(i64::from).collect();
        return Ok(Array2::from_shape_vec((nq, 1), labels).expect("one label per query"));
    }
    Ok(backend
        .knn(queries, centroids, nprobe.min(centroids.nrows()), metric)?
        .ids)
}

/// Seconds spent in each search stage (summed over nested searches).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StageTimes {
    /// Coarse quantizer: the lists each query probes.
    pub coarse: f64,
    /// Look-up tables, list scans and the per-query top-k.
    pub scan: f64,
    /// Exact re-ranking (RFlat).
    pub refine: f64,
}

/// Partial results of one (query, probe) pair are kept in a slot; a batch of
/// queries is sized so that `slots × k` stays below this many entries.
const SLOT_BUDGET: usize = 1 << 22;
/// Bytes of PQ look-up tables per batch of queries.
const LUT_BUDGET: usize = 1 << 23;

/// Queries grouped by probed list: list `l` is probed by slots
/// `members[start[l]..start[l + 1]]` (slot = query · nprobe + rank, query
/// relative to the batch), queries ascending.
struct Groups {
    start: Vec<usize>,
    members: Vec<u32>,
    /// Lists with at least one query, most work first.
    order: Vec<usize>,
}

impl Groups {
    fn new(probes: ArrayView2<i64>, nlist: usize, list_len: impl Fn(usize) -> usize) -> Groups {
        let mut count = vec![0usize; nlist + 1];
        for &l in probes.iter() {
            if l >= 0 && (l as usize) < nlist {
                count[l as usize + 1] += 1;
            }
        }
        for l in 0..nlist {
            count[l + 1] += count[l];
        }
        let start = count.clone();
        let mut members = vec![0u32; start[nlist]];
        for (slot, &l) in probes.iter().enumerate() {
            if l >= 0 && (l as usize) < nlist {
                members[count[l as usize]] = slot as u32;
                count[l as usize] += 1;
            }
        }
        let mut order: Vec<usize> = (0..nlist).filter(|&l| start[l + 1] > start[l]).collect();
        order.sort_by_key(|&l| std::cmp::Reverse((start[l + 1] - start[l]) * list_len(l).max(1)));
        Groups {
            start,
            members,
            order,
        }
    }

    fn of(&self, l: usize) -> &[u32] {
        &self.members[self.start[l]..self.start[l + 1]]
    }
}

/// A buffer that parallel tasks write at disjoint places.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// SAFETY: no two live slices may overlap, and `at + len` is in bounds.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, at: usize, len: usize) -> &mut [T] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

fn empty(nq: usize, metric: Metric) -> Neighbours {
    Neighbours {
        ids: Array2::from_elem((nq, 0), -1),
        scores: Array2::from_elem((nq, 0), metric.worst()),
    }
}

/// Search IVF-Flat lists: every probed list is scanned once for all the
/// queries that probe it (SIMD tiles, see `scan`), in parallel over lists;
/// the partial top-k of each (query, probe) are then merged in probe order,
/// which gives exactly the one-query-at-a-time result. Queries go in
/// batches of at most `max_batch` (default: a memory budget).
#[allow(clippy::too_many_arguments)]
pub fn search_flat(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    lists: &[List<'_, f32>],
    metric: Metric,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: usize,
    max_batch: Option<usize>,
    times: &mut StageTimes,
) -> Result<Neighbours> {
    let (nq, d) = queries.dim();
    if k == 0 {
        return Ok(empty(nq, metric));
    }
    let t = Instant::now();
    let probes = coarse(backend, centroids, queries, nprobe, metric)?;
    times.coarse += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let isa = Isa::from_env();
    let queries = queries.as_standard_layout();
    let qs = queries.as_slice().expect("standard layout");
    let np = probes.ncols();
    let mut ids = Array2::from_elem((nq, k), -1i64);
    let mut scores = Array2::from_elem((nq, k), metric.worst());
    let batch = (SLOT_BUDGET / (np * k).max(1))
        .min(max_batch.unwrap_or(usize::MAX))
        .max(1);
    let (ids_all, scores_all) = (
        ids.as_slice_mut().expect("contiguous"),
        scores.as_slice_mut().expect("contiguous"),
    );
    for b0 in (0..nq).step_by(batch) {
        let bn = batch.min(nq - b0);
        let groups = Groups::new(
            probes.slice(ndarray::s![b0..b0 + bn, ..]),
            lists.len(),
            |l| lists[l].ids.len(),
        );
        let nslot = bn * np;
        let mut keys = vec![0f32; nslot * k];
        let mut sids = vec![-1i64; nslot * k];
        let mut lens = vec![0usize; nslot];
        let (kp, ip, lp) = (
            Shared(keys.as_mut_ptr()),
            Shared(sids.as_mut_ptr()),
            Shared(lens.as_mut_ptr()),
        );
        groups.order.par_iter().for_each_init(
            || (Vec::<TopK>::new(), Vec::<&[f32]>::new()),
            |(tops, qv), &l| {
                let members = groups.of(l);
                let list = &lists[l];
                tops.iter_mut().for_each(TopK::clear);
                tops.resize_with(members.len(), || TopK::new(k));
                tops.truncate(members.len());
                qv.clear();
                qv.extend(members.iter().map(|&s| {
                    let q = b0 + s as usize / np;
                    &qs[q * d..(q + 1) * d]
                }));
                scan::scan_flat(
                    isa,
                    metric,
                    qv,
                    d,
                    list.ids.len(),
                    |i| &list.codes[i * d..(i + 1) * d],
                    |i| list.ids[i],
                    tops,
                );
                for (top, &s) in tops.iter().zip(members) {
                    let s = s as usize;
                    // SAFETY: slots are disjoint (one per query and probe),
                    // and each is written by the one task of its list.
                    unsafe {
                        kp.slice(s * k, top.keys.len()).copy_from_slice(&top.keys);
                        ip.slice(s * k, top.ids.len()).copy_from_slice(&top.ids);
                        lp.slice(s, 1)[0] = top.keys.len();
                    }
                }
            },
        );
        ids_all[b0 * k..(b0 + bn) * k]
            .par_chunks_mut(k)
            .zip(scores_all[b0 * k..(b0 + bn) * k].par_chunks_mut(k))
            .enumerate()
            .for_each(|(q, (ids_q, scores_q))| {
                let mut top = TopK::new(k);
                for (s, &len) in lens.iter().enumerate().skip(q * np).take(np) {
                    for e in s * k..s * k + len {
                        top.push(keys[e], sids[e]);
                    }
                }
                for (r, (&key, &id)) in top.keys.iter().zip(&top.ids).enumerate() {
                    ids_q[r] = id;
                    scores_q[r] = match metric {
                        Metric::L2 => key,
                        Metric::InnerProduct => -key,
                    };
                }
            });
    }
    times.scan += t.elapsed().as_secs_f64();
    Ok(Neighbours { ids, scores })
}

/// `f(i, query_i)` for every query in parallel.
fn per_query(queries: ArrayView2<f32>, f: impl Fn(usize, &[f32]) -> TopK + Sync) -> Vec<TopK> {
    let d = queries.ncols();
    let queries = queries.as_standard_layout();
    let all = queries.as_slice().expect("standard layout");
    (0..queries.nrows())
        .into_par_iter()
        .map(|i| f(i, &all[i * d..(i + 1) * d]))
        .collect()
}

/// Scalar reference of [`search_flat`]: one query at a time, every probed
/// list scanned in probe order.
pub fn search_flat_reference(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    lists: &[List<'_, f32>],
    metric: Metric,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: usize,
) -> Result<Neighbours> {
    let d = queries.ncols();
    let probes = coarse(backend, centroids, queries, nprobe, metric)?;
    let tops = per_query(queries, |i, q| {
        let mut top = TopK::new(k);
        for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
            let list = &lists[l as usize];
            for (j, &id) in list.ids.iter().enumerate() {
                top.push(key(metric, q, &list.codes[j * d..(j + 1) * d]), id);
            }
        }
        top
    });
    Ok(collect(&tops, k, metric))
}

/// Per-query look-up table `[m][16]` of sub-quantizer scores ("smaller is
/// better" keys: squared distances, or negated inner products).
pub fn lut(pq: &ProductQuantizer, q: &[f32], metric: Metric) -> Vec<f32> {
    let ds = pq.dsub();
    let mut t = vec![0f32; pq.m * KSUB];
    for sq in 0..pq.m {
        let qs = &q[sq * ds..(sq + 1) * ds];
        for c in 0..KSUB {
            t[sq * KSUB + c] = key(metric, qs, pq.centroid(sq, c));
        }
    }
    t
}

/// faiss's 8-bit look-up table for non-residual fast-scan search
/// (`quantize_LUT_and_bias` without bias): per sub-quantizer the minimum is
/// subtracted, one scale `a` keeps every entry ≤ 255 and every sum ≤ 65535,
/// entries are rounded; a distance is `b + Σ entries / a`.
pub struct QuantizedLut {
    pub table: Vec<u16>,
    pub a: f32,
    pub b: f32,
}

pub fn quantize_lut(t: &[f32], m: usize) -> QuantizedLut {
    let rows: Vec<&[f32]> = t.chunks_exact(KSUB).take(m).collect();
    let mins: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().copied().fold(f32::INFINITY, f32::min))
        .collect();
    let (mut span_lut, mut span_dis, mut b) = (f32::NEG_INFINITY, 0f32, 0f32);
    for (r, &mn) in rows.iter().zip(&mins) {
        let span = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) - mn;
        span_lut = span_lut.max(span);
        span_dis += span;
        b += mn;
    }
    let pick = |span: f32, top: f32| {
        if span > 0.0 {
            top / span
        } else {
            f32::INFINITY
        }
    };
    let mut a = pick(span_lut, 255.0).min(pick(span_dis, 65535.0));
    if !a.is_finite() {
        a = 0.0;
    }
    let table = rows
        .iter()
        .zip(&mins)
        .flat_map(|(r, &mn)| r.iter().map(move |&v| ((v - mn) * a + 0.5).floor() as u16))
        .collect();
    QuantizedLut { table, a, b }
}

/// Scalar reference of [`search_pq`], one query at a time: search 4-bit
/// fast-scan lists (`codes` = the packed blocks of `bbs` entries) as faiss does: scores from the 8-bit quantised table, so the
/// candidates and distances are faiss's up to float rounding of the table.
#[allow(clippy::too_many_arguments)]
pub fn search_pq_reference(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    pq: &ProductQuantizer,
    bbs: usize,
    lists: &[List<'_, u8>],
    metric: Metric,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: usize,
) -> Result<Neighbours> {
    let probes = coarse(backend, centroids, queries, nprobe, metric)?;
    let tops = per_query(queries, |i, q| {
        // faiss quantises the table of distances (L2) or of inner products (IP).
        let mut t = lut(pq, q, metric);
        if metric == Metric::InnerProduct {
            t.iter_mut().for_each(|v| *v = -*v);
        }
        let ql = quantize_lut(&t, pq.m);
        let mut top = TopK::new(k);
        for &l in probes.row(i).iter().filter(|&&l| l >= 0) {
            let list = &lists[l as usize];
            scan_blocks(
                &ql.table,
                pq.m,
                bbs,
                list.codes,
                list.ids.len(),
                |e, acc| {
                    // Larger inner products are better: rank by -acc.
                    let key = if metric == Metric::L2 {
                        acc as f32
                    } else {
                        -(acc as f32)
                    };
                    top.push_by_id(key, list.ids[e], metric == Metric::InnerProduct);
                },
            );
        }
        let inv_a = if ql.a > 0.0 { 1.0 / ql.a } else { 0.0 };
        top.keys.iter_mut().for_each(|key| {
            let dist = ql.b + key.abs() * inv_a;
            // `collect` turns keys back into scores (negating for IP).
            *key = if metric == Metric::L2 { dist } else { -dist };
        });
        top
    });
    Ok(collect(&tops, k, metric))
}

/// Sum the table entries of every entry of packed fast-scan blocks (layout:
/// faiss `pq4_pack_codes`, see `faiss::fastscan`), calling `emit(entry, score)`.
fn scan_blocks(
    t: &[u16],
    m: usize,
    bbs: usize,
    packed: &[u8],
    n: usize,
    mut emit: impl FnMut(usize, u32),
) {
    // Byte j of a 16-byte half holds entries PERM[j] (low nibble) and PERM[j] + 16.
    const PERM: [usize; 16] = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];
    let m2 = m + (m & 1);
    let block = bbs * m2 / 2;
    let mut acc = [0u32; 32];
    for b in 0..n.div_ceil(bbs) {
        for g in 0..bbs / 32 {
            let first = b * bbs + g * 32;
            if first >= n {
                break;
            }
            acc.fill(0);
            for p in 0..m2 / 2 {
                let chunk = &packed[b * block + p * bbs + g * 32..][..32];
                let (t0, t1) = (
                    &t[2 * p * KSUB..][..KSUB],
                    t.get((2 * p + 1) * KSUB..(2 * p + 2) * KSUB),
                );
                for (j, &e) in PERM.iter().enumerate() {
                    let (lo, hi) = (chunk[j], chunk[16 + j]);
                    acc[e] += t0[(lo & 15) as usize] as u32;
                    acc[e + 16] += t0[(lo >> 4) as usize] as u32;
                    // With odd M the last slot is padding (code 0, no table).
                    if let Some(t1) = t1 {
                        acc[e] += t1[(hi & 15) as usize] as u32;
                        acc[e + 16] += t1[(hi >> 4) as usize] as u32;
                    }
                }
            }
            for (u, &s) in acc.iter().enumerate().take(n - first) {
                emit(first + u, s);
            }
        }
    }
}

/// Search 4-bit fast-scan lists as faiss does (8-bit quantised tables,
/// 16-bit sums, ties by id), each probed list scanned once for all its
/// queries with SIMD shuffles (see `scan`), in parallel over lists; queries
/// go in batches of at most `max_batch` (default: a memory budget). Falls
/// back to [`search_pq_reference`] for block sizes other than 32 and ids
/// outside `0..2⁴⁸`.
#[allow(clippy::too_many_arguments)]
pub fn search_pq(
    backend: &dyn Backend,
    centroids: ArrayView2<f32>,
    pq: &ProductQuantizer,
    bbs: usize,
    lists: &[List<'_, u8>],
    metric: Metric,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: usize,
    max_batch: Option<usize>,
    times: &mut StageTimes,
) -> Result<Neighbours> {
    let (nq, d) = queries.dim();
    if k == 0 {
        return Ok(empty(nq, metric));
    }
    let packable = lists.iter().all(|l| {
        l.ids
            .iter()
            .all(|&id| (0..=scan::MAX_PACKED_ID).contains(&id))
    });
    if bbs != 32 || !packable {
        let t = Instant::now();
        let r = search_pq_reference(
            backend, centroids, pq, bbs, lists, metric, queries, k, nprobe,
        );
        times.scan += t.elapsed().as_secs_f64();
        return r;
    }
    let t = Instant::now();
    let probes = coarse(backend, centroids, queries, nprobe, metric)?;
    times.coarse += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let isa = Isa::from_env();
    let ip = metric == Metric::InnerProduct;
    let queries = queries.as_standard_layout();
    let qs = queries.as_slice().expect("standard layout");
    let np = probes.ncols();
    let m2 = pq.m + (pq.m & 1);
    let mut ids = Array2::from_elem((nq, k), -1i64);
    let mut scores = Array2::from_elem((nq, k), metric.worst());
    let batch = (SLOT_BUDGET / (np * k).max(1))
        .min(LUT_BUDGET / (m2 * KSUB).max(1))
        .min(max_batch.unwrap_or(usize::MAX))
        .max(1);
    let (ids_all, scores_all) = (
        ids.as_slice_mut().expect("contiguous"),
        scores.as_slice_mut().expect("contiguous"),
    );
    let tr = scan::Transposed::new(pq);
    let mut tables = scan::PqTables::default();
    let mut keys = vec![0u64; batch.min(nq) * np * k];
    let mut lens = vec![0usize; batch.min(nq) * np];
    for b0 in (0..nq).step_by(batch) {
        let bn = batch.min(nq - b0);
        scan::pq_tables_into(&tr, &qs[b0 * d..(b0 + bn) * d], metric, &mut tables);
        // Slots of lists that are not probed (-1) hold nothing.
        lens.fill(0);
        let groups = Groups::new(
            probes.slice(ndarray::s![b0..b0 + bn, ..]),
            lists.len(),
            |l| lists[l].ids.len(),
        );
        let (kp, lp) = (Shared(keys.as_mut_ptr()), Shared(lens.as_mut_ptr()));
        groups.order.par_iter().for_each_init(
            || (Vec::<PqTop>::new(), Vec::<&[u8]>::new()),
            |(tops, lv), &l| {
                let members = groups.of(l);
                let list = &lists[l];
                tops.iter_mut().for_each(PqTop::clear);
                tops.resize_with(members.len(), || PqTop::new(k));
                tops.truncate(members.len());
                lv.clear();
                lv.extend(members.iter().map(|&s| tables.lut(s as usize / np)));
                scan::scan_pq(isa, ip, lv, m2, list.codes, list.ids.len(), list.ids, tops);
                for (top, &s) in tops.iter().zip(members) {
                    let s = s as usize;
                    // SAFETY: slots are disjoint (one per query and probe).
                    unsafe {
                        kp.slice(s * k, top.keys.len()).copy_from_slice(&top.keys);
                        lp.slice(s, 1)[0] = top.keys.len();
                    }
                }
            },
        );
        ids_all[b0 * k..(b0 + bn) * k]
            .par_chunks_mut(k)
            .zip(scores_all[b0 * k..(b0 + bn) * k].par_chunks_mut(k))
            .enumerate()
            .for_each_init(Vec::new, |all, (q, (ids_q, scores_q))| {
                all.clear();
                for s in q * np..(q + 1) * np {
                    all.extend_from_slice(&keys[s * k..s * k + lens[s]]);
                }
                all.sort_unstable();
                all.dedup();
                for (r, &key) in all.iter().take(k).enumerate() {
                    let (sum, id) = scan::pq_unkey(key, ip);
                    ids_q[r] = id;
                    scores_q[r] = tables.distance(q, sum);
                }
            });
    }
    times.scan += t.elapsed().as_secs_f64();
    Ok(Neighbours { ids, scores })
}

fn quantizer(ivf: &Ivf) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((ivf.quantizer.ntotal(), ivf.d), &ivf.quantizer.xb)
        .expect("quantizer shape")
}

/// Search any supported index. `nprobe` overrides the stored value.
pub fn search_index(
    backend: &dyn Backend,
    index: &Index,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: Option<usize>,
) -> Result<Neighbours> {
    search_index_timed(
        backend,
        index,
        queries,
        k,
        nprobe,
        &mut StageTimes::default(),
    )
}

/// [`search_index`], adding the seconds of each stage to `times`.
pub fn search_index_timed(
    backend: &dyn Backend,
    index: &Index,
    queries: ArrayView2<f32>,
    k: usize,
    nprobe: Option<usize>,
    times: &mut StageTimes,
) -> Result<Neighbours> {
    if queries.ncols() != index.d() {
        return Err(Error::Invalid(format!(
            "queries have {} columns but the index holds {}-dimensional vectors",
            queries.ncols(),
            index.d()
        )));
    }
    let t = Instant::now();
    if let Some(found) = backend.search_index(index, queries, k, nprobe) {
        times.scan += t.elapsed().as_secs_f64();
        return found;
    }
    let metric = index.metric();
    match index {
        Index::Flat(f) => {
            let xb = ArrayView2::from_shape((f.ntotal(), f.d), &f.xb).expect("flat shape");
            let r = backend.knn(queries, xb, k, metric);
            times.scan += t.elapsed().as_secs_f64();
            r
        }
        Index::IvfFlat(ix) => {
            let lists: Vec<List<'_, f32>> = ix
                .lists
                .iter()
                .map(|l| List {
                    ids: &l.ids,
                    codes: &l.codes,
                })
                .collect();
            search_flat(
                backend,
                quantizer(&ix.ivf),
                &lists,
                metric,
                queries,
                k,
                nprobe.unwrap_or(ix.ivf.nprobe),
                None,
                times,
            )
        }
        Index::IvfPqFastScan(ix) => {
            if ix.by_residual {
                return Err(Error::Unsupported(
                    "searching residual fast-scan PQ (x4fsr) indexes".into(),
                ));
            }
            let lists: Vec<List<'_, u8>> = ix
                .lists
                .iter()
                .map(|l| List {
                    ids: &l.ids,
                    codes: &l.codes,
                })
                .collect();
            let np = nprobe.unwrap_or(ix.ivf.nprobe);
            search_pq(
                backend,
                quantizer(&ix.ivf),
                &ix.pq,
                ix.bbs,
                &lists,
                metric,
                queries,
                k,
                np,
                None,
                times,
            )
        }
        Index::Refine(r) => {
            // faiss: k_base = idx_t(k * k_factor).
            let kb = ((k as f32 * r.k_factor) as usize).max(k);
            let cand = search_index_timed(backend, &r.base, queries, kb, nprobe, times)?;
            let t = Instant::now();
            let isa = Isa::from_env();
            let tops = per_query(queries, |i, q| {
                let mut top = TopK::new(k);
                for &id in cand.ids.row(i).iter().filter(|&&id| id >= 0) {
                    top.push(
                        scan::flat_key(isa, metric, q, r.refine.vector(id as usize)),
                        id,
                    );
                }
                top
            });
            let found = collect(&tops, k, metric);
            times.refine += t.elapsed().as_secs_f64();
            Ok(found)
        }
    }
}
