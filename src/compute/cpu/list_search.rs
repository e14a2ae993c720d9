//! The list-scan primitives on the CPU: `search_flat_lists`,
//! `search_pq_lists` and `refine`.
//!
//! Queries are grouped by the lists they probe, and every probed list is
//! scanned once for all the queries that probe it (SIMD tiles: `flat_scan`,
//! `pq_scan`), in parallel over lists; the partial top-k of each (query,
//! probe) pair are then merged in probe order, which gives exactly the
//! one-query-at-a-time result of `reference`. Queries go in batches whose
//! partial results (and, for PQ, look-up tables) stay within a memory
//! budget.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::pq_scan::{self, PqTop};
use super::pq_tables::{Transposed, pq_tables_into};
use super::{Isa, flat_scan, reference};
use crate::compute::lists::{FastScan, KSUB, List, PqTables, check_lists};
use crate::compute::neighbours::{Neighbours, TopK, collect};
use crate::{Error, Metric, Result};

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

/// `Backend::search_flat_lists` on the CPU; queries go in batches of at most
/// `max_batch` (default: a memory budget).
#[allow(clippy::too_many_arguments)]
pub fn search_flat_lists(
    isa: Isa,
    queries: ArrayView2<f32>,
    lists: &[List<'_, f32>],
    probes: ArrayView2<i64>,
    k: usize,
    metric: Metric,
    max_batch: Option<usize>,
) -> Result<Neighbours> {
    let (nq, d) = queries.dim();
    check_lists("flat list search", nq, lists, probes, |n| n * d)?;
    if k == 0 {
        return Ok(empty(nq, metric));
    }
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
                flat_scan::scan_flat(
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
    Ok(Neighbours { ids, scores })
}

/// `Backend::search_pq_lists` on the CPU; queries go in batches of at most
/// `max_batch` (default: a memory budget). Blocks of other than 32 entries,
/// and ids outside `0..2⁴⁸` (which the packed keys cannot carry), take the
/// scalar reference.
#[allow(clippy::too_many_arguments)]
pub fn search_pq_lists(
    isa: Isa,
    queries: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    layout: FastScan,
    lists: &[List<'_, u8>],
    probes: ArrayView2<i64>,
    k: usize,
    metric: Metric,
    max_batch: Option<usize>,
) -> Result<Neighbours> {
    let (nq, d) = queries.dim();
    super::pq_assign::check("fast-scan list search", d, codebooks, layout.m, KSUB)?;
    if layout.bbs == 0 || !layout.bbs.is_multiple_of(32) {
        return Err(Error::Invalid(format!(
            "fast-scan list search: blocks of {} entries (a positive multiple of 32 expected)",
            layout.bbs
        )));
    }
    check_lists("fast-scan list search", nq, lists, probes, |n| {
        layout.packed_len(n)
    })?;
    if k == 0 {
        return Ok(empty(nq, metric));
    }
    let packable = lists.iter().all(|l| {
        l.ids
            .iter()
            .all(|&id| (0..=pq_scan::MAX_PACKED_ID).contains(&id))
    });
    if layout.bbs != 32 || !packable {
        return reference::search_pq_lists(queries, codebooks, layout, lists, probes, k, metric);
    }
    let ip = metric == Metric::InnerProduct;
    let queries = queries.as_standard_layout();
    let qs = queries.as_slice().expect("standard layout");
    let np = probes.ncols();
    let m2 = layout.m2();
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
    let tr = Transposed::new(codebooks, layout.m);
    let mut tables = PqTables::default();
    let mut keys = vec![0u64; batch.min(nq) * np * k];
    let mut lens = vec![0usize; batch.min(nq) * np];
    for b0 in (0..nq).step_by(batch) {
        let bn = batch.min(nq - b0);
        pq_tables_into(isa, &tr, &qs[b0 * d..(b0 + bn) * d], metric, &mut tables);
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
                pq_scan::scan_pq(isa, ip, lv, m2, list.codes, list.ids.len(), list.ids, tops);
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
                    let (sum, id) = pq_scan::pq_unkey(key, ip);
                    ids_q[r] = id;
                    scores_q[r] = tables.distance(q, sum as u32);
                }
            });
    }
    Ok(Neighbours { ids, scores })
}

/// Check the candidates `refine` takes: one row per query, each id -1 or a
/// row of `vectors`, and vectors as wide as the queries.
pub(crate) fn check_refine(
    queries: ArrayView2<f32>,
    vectors: ArrayView2<f32>,
    candidates: ArrayView2<i64>,
) -> Result<()> {
    if vectors.ncols() != queries.ncols() {
        return Err(Error::Invalid(format!(
            "refine: queries have {} dimensions, the stored vectors {}",
            queries.ncols(),
            vectors.ncols()
        )));
    }
    if candidates.nrows() != queries.nrows() {
        return Err(Error::Invalid(format!(
            "refine: {} queries but {} rows of candidates",
            queries.nrows(),
            candidates.nrows()
        )));
    }
    let n = vectors.nrows() as i64;
    if let Some(&bad) = candidates.iter().find(|&&id| id < -1 || id >= n) {
        return Err(Error::Invalid(format!(
            "refine: candidate id {bad} is not among the {n} stored vectors"
        )));
    }
    Ok(())
}

/// `Backend::refine` on the CPU: every query's candidates scored with the
/// flat-scan kernel, in candidate order.
pub fn refine(
    isa: Isa,
    queries: ArrayView2<f32>,
    vectors: ArrayView2<f32>,
    candidates: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    check_refine(queries, vectors, candidates)?;
    let vectors = vectors.as_standard_layout();
    let d = vectors.ncols();
    let vs = vectors.as_slice().expect("standard layout");
    let tops = reference::per_query(queries, |i, q| {
        let mut top = TopK::new(k);
        for &id in candidates.row(i).iter().filter(|&&id| id >= 0) {
            let v = &vs[id as usize * d..(id as usize + 1) * d];
            top.push(flat_scan::flat_key(isa, metric, q, v), id);
        }
        top
    });
    Ok(collect(&tops, k, metric))
}
