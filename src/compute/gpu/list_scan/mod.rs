//! Host side of `shaders/list_scan.wgsl`: the list-scan primitives
//! (`knn`, `search_flat_lists`, `search_pq_lists`, `refine`) on the device.
//!
//! Every primitive is the same "score segments, keep k per segment, merge to
//! k per query" pipeline ([`Searcher::select`]) over different data: a
//! database's rows (`knn`, which also serves the coarse quantizer), the
//! probed lists' vectors, the probed lists' packed 4-bit codes with
//! per-query 8-bit tables, or each query's candidates' raw vectors
//! (`refine`). Ties are broken as the CPU kernels break them, so results
//! equal theirs: exactly for PQ scores (integer table sums), up to float
//! rounding for exact distances. Each primitive answers `None` for what the
//! kernels do not cover (k above [`MAX_K`], ids that do not fit 32 bits, …).

mod chunks;
mod resident;
mod select;

use ndarray::{Array2, ArrayView2};

use super::context::round_up;
use crate::compute::lists::{FastScan, List, PqTables, check_lists};
use crate::compute::neighbours::Neighbours;
use crate::{Error, Metric, Result};
use chunks::{HostList, Seg, ties};
pub(crate) use resident::Resident;
use resident::{Uploaded, key_of};
use select::Scan;
pub(crate) use select::{ListScanKernel, Searcher};

/// Largest k (and nprobe, and k·k_factor) the device selection handles.
pub const MAX_K: usize = 128;
/// Entries per work item: the workgroup's selection buffer.
const SEG: usize = 1024;
/// Entries per scan work item, which scores up to `QB` queries at once.
const SEG_FLAT: usize = 256;
const QB: usize = 4;
/// Table words per query the PQ kernel keeps in workgroup memory.
const MAX_LUT_WORDS: usize = 4096;
/// Loop trips per invocation in the flat scan (dp4).
const LOOP_BUDGET: usize = 16_384;
/// Candidate buffers and data chunks stay at most this large.
const CAP_BYTES: u64 = 64 << 20;
const EMPTY: u32 = u32::MAX;

/// Result of one stage: per query, `(score, id)` best first.
type Scored = Vec<Vec<(f32, i64)>>;

fn to_neighbours(found: Scored, k: usize, metric: Metric) -> Neighbours {
    let nq = found.len();
    let mut ids = Array2::from_elem((nq, k), -1i64);
    let mut scores = Array2::from_elem((nq, k), metric.worst());
    for (q, row) in found.iter().enumerate() {
        for (r, &(s, id)) in row.iter().take(k).enumerate() {
            ids[[q, r]] = id;
            scores[[q, r]] = s;
        }
    }
    Neighbours { ids, scores }
}

fn flat_score(metric: Metric, key: f32) -> f32 {
    match metric {
        Metric::L2 => key,
        Metric::InnerProduct => -key,
    }
}

/// Whether the flat scan's loops stay within budget for `d` dimensions.
fn flat_ok(d: usize) -> bool {
    d.div_ceil(4).max(1) <= LOOP_BUDGET
}

/// Whether `k` and the probes per query are within what the selection holds.
fn covered(k: usize, nq: usize, probes: usize) -> bool {
    k > 0 && k <= MAX_K && nq > 0 && probes <= MAX_K
}

/// Whether the fast-scan kernel takes `layout`, `k` and `probes` per query
/// for `nq` queries (ids aside): the caller need not build tables otherwise.
pub(crate) fn pq_covered(layout: FastScan, k: usize, nq: usize, probes: usize) -> bool {
    covered(k, nq, probes)
        && layout.m > 0
        && layout.m * 4 <= MAX_LUT_WORDS
        && layout.bbs > 0
        && layout.bbs.is_multiple_of(32)
        && layout.bbs <= SEG_FLAT
}

/// Tie values of every list, or `None` where an id does not fit.
fn list_ties<T>(lists: &[List<'_, T>], high_first: bool) -> Option<Vec<Vec<u32>>> {
    lists.iter().map(|l| ties(l.ids, high_first)).collect()
}

/// The segments query `q` scans: those of its probed lists, in probe order.
fn probed(segs: &[Vec<Seg>], probes: ArrayView2<i64>) -> Vec<Vec<Seg>> {
    probes
        .rows()
        .into_iter()
        .map(|p| {
            p.iter()
                .filter(|&&l| l >= 0)
                .flat_map(|&l| segs[l as usize].iter().copied())
                .collect()
        })
        .collect()
}

/// `Backend::search_flat_lists` on the device.
pub(crate) fn search_flat_lists(
    s: &Searcher<'_>,
    queries: ArrayView2<f32>,
    lists: &[List<'_, f32>],
    probes: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Option<Result<Neighbours>> {
    let (nq, d) = queries.dim();
    if let Err(e) = check_lists("flat list search", nq, lists, probes, |n| n * d) {
        return Some(Err(e));
    }
    if !covered(k, nq, probes.ncols()) || !flat_ok(d) {
        return None;
    }
    let ties = list_ties(lists, false)?;
    let host: Vec<HostList<'_, f32>> = lists
        .iter()
        .zip(ties)
        .map(|(l, ties)| HostList {
            data: &l.codes[..l.ids.len() * d],
            ties,
        })
        .collect();
    let queries = queries.as_standard_layout();
    Some((|| {
        let dp4 = d.div_ceil(4).max(1);
        // Kept on the device: the next call with the same lists reuses it.
        let key = key_of("flat", &[d as u64, dp4 as u64, s.max_binding], &host);
        let entries: usize = host.iter().map(|l| l.ties.len()).sum();
        let up = s
            .resident
            .get_or_upload(key, (entries * dp4 * 16) as u64, || {
                let (chunks, segs) = s.flat_chunks(&host, d, dp4)?;
                Ok(Uploaded { chunks, segs })
            })?;
        let per_query = probed(&up.segs, probes);
        let found = s.select_flat(metric, k, queries.view(), &up.chunks, &per_query)?;
        Ok(to_neighbours(
            found
                .into_iter()
                .map(|v| {
                    v.into_iter()
                        .map(|(key, tie)| (flat_score(metric, key), tie as i64))
                        .collect()
                })
                .collect(),
            k,
            metric,
        ))
    })())
}

/// `Backend::search_pq_lists` on the device, with the queries' `tables`
/// (built on the host by `Backend::pq_tables`).
pub(crate) fn search_pq_lists(
    s: &Searcher<'_>,
    tables: &PqTables,
    layout: FastScan,
    lists: &[List<'_, u8>],
    probes: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Option<Result<Neighbours>> {
    let nq = tables.len();
    if let Err(e) = check_lists("fast-scan list search", nq, lists, probes, |n| {
        layout.packed_len(n)
    }) {
        return Some(Err(e));
    }
    let m = layout.m;
    if !pq_covered(layout, k, nq, probes.ncols()) || tables.m != m {
        return None;
    }
    let ip = metric == Metric::InnerProduct;
    let ties = list_ties(lists, ip)?;
    let host: Vec<HostList<'_, u8>> = lists
        .iter()
        .zip(ties)
        .map(|(l, ties)| HostList {
            data: &l.codes[..layout.packed_len(l.ids.len())],
            ties,
        })
        .collect();
    Some(pq_select(s, tables, layout, &host, probes, k, metric))
}

fn pq_select(
    s: &Searcher<'_>,
    tables: &PqTables,
    layout: FastScan,
    lists: &[HostList<'_, u8>],
    probes: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    let m = layout.m;
    let words = m * 4;
    let block_bytes = layout.block_bytes();
    let params = [
        m as u64,
        layout.bbs as u64,
        block_bytes as u64,
        s.max_binding,
    ];
    let bytes: usize = lists.iter().map(|l| l.data.len() + 4 * l.ties.len()).sum();
    let up = s
        .resident
        .get_or_upload(key_of("pq", &params, lists), bytes as u64, || {
            let (chunks, segs) = s.pq_chunks(lists, layout.bbs, block_bytes)?;
            Ok(Uploaded { chunks, segs })
        })?;
    let chunks = &up.chunks;
    let per_query = probed(&up.segs, probes);
    let mut out = Vec::with_capacity(tables.len());
    for r in s.batches(&per_query, k)? {
        // The kernel reads `m` tables of 16 bytes per query, four to a word.
        let mut bytes: Vec<u8> = Vec::with_capacity(r.len() * words * 4);
        for q in r.clone() {
            bytes.extend_from_slice(&tables.lut(q)[..m * 16]);
        }
        bytes.resize(round_up(bytes.len().max(16), 16), 0);
        let qbuf = s
            .gpu
            .upload("search tables", &bytes, wgpu::BufferUsages::STORAGE);
        let scan = Scan::Pq {
            m,
            bbs: layout.bbs,
            block_bytes,
        };
        let found = s.select(scan, metric, k, &qbuf, chunks, &per_query[r.clone()])?;
        for (q, v) in r.zip(found) {
            let (a, b) = (tables.a[q], tables.b[q]);
            let inv_a = if a > 0.0 { 1.0 / a } else { 0.0 };
            out.push(
                v.into_iter()
                    .map(|(key, tie)| {
                        let id = if metric == Metric::InnerProduct {
                            !tie
                        } else {
                            tie
                        };
                        (b + key.abs() * inv_a, id as i64)
                    })
                    .collect(),
            );
        }
    }
    Ok(to_neighbours(out, k, metric))
}

/// `Backend::refine` on the device: exact distances to each query's
/// candidates, best `k` kept (ties to the earlier candidate).
pub(crate) fn refine(
    s: &Searcher<'_>,
    queries: ArrayView2<f32>,
    vectors: ArrayView2<f32>,
    candidates: ArrayView2<i64>,
    k: usize,
    metric: Metric,
) -> Option<Result<Neighbours>> {
    if let Err(e) = crate::compute::cpu::list_search::check_refine(queries, vectors, candidates) {
        return Some(Err(e));
    }
    let (nq, d) = queries.dim();
    if !covered(k, nq, 0) || !flat_ok(d) {
        return None;
    }
    let vectors = vectors.as_standard_layout();
    let vs = vectors.as_slice().expect("standard layout");
    let cand: Vec<Vec<i64>> = candidates
        .rows()
        .into_iter()
        .map(|c| c.iter().copied().filter(|&id| id >= 0).collect())
        .collect();
    let rows: Vec<Vec<f32>> = cand
        .iter()
        .map(|c| {
            let mut r = Vec::with_capacity(c.len() * d);
            for &id in c {
                r.extend_from_slice(&vs[id as usize * d..(id as usize + 1) * d]);
            }
            r
        })
        .collect();
    let lists: Vec<HostList<'_, f32>> = rows
        .iter()
        .zip(&cand)
        .map(|(r, c)| HostList {
            data: r,
            ties: (0..c.len() as u32).collect(),
        })
        .collect();
    let queries = queries.as_standard_layout();
    Some((|| {
        let dp4 = d.div_ceil(4).max(1);
        let (chunks, segs) = s.flat_chunks(&lists, d, dp4)?;
        let found = s.select_flat(metric, k, queries.view(), &chunks, &segs)?;
        Ok(to_neighbours(
            found
                .into_iter()
                .zip(&cand)
                .map(|(v, c)| {
                    v.into_iter()
                        .map(|(key, tie)| (flat_score(metric, key), c[tie as usize]))
                        .collect()
                })
                .collect(),
            k,
            metric,
        ))
    })())
}

/// Exact k-NN of the rows of `x` among the rows of `y` (also the coarse
/// quantizer's search); `None` where the kernels do not cover the request.
pub(crate) fn knn(
    s: &Searcher<'_>,
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    k: usize,
    metric: Metric,
) -> Option<Result<Neighbours>> {
    let d = x.ncols();
    if y.ncols() != d {
        return Some(Err(Error::Invalid(format!(
            "knn: queries have {d} dimensions, the database {}",
            y.ncols()
        ))));
    }
    if !covered(k, x.nrows(), 0) || !flat_ok(d) || y.nrows() >= EMPTY as usize {
        return None;
    }
    let y = y.as_standard_layout();
    let ids: Vec<i64> = (0..y.nrows() as i64).collect();
    let list = List {
        ids: &ids,
        codes: y.as_slice().expect("standard layout"),
    };
    let probes = ndarray::Array2::<i64>::zeros((x.nrows(), 1));
    search_flat_lists(s, x, &[list], probes.view(), k, metric)
}
