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

use ndarray::{Array2, ArrayView2};

use super::context::{Gpu, bind, round_up, upload_rows};
use crate::compute::lists::{FastScan, List, PqTables, check_lists};
use crate::compute::neighbours::Neighbours;
use crate::{Error, Metric, Result};

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

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    items_base: u32,
    n_items: u32,
    groups_x: u32,
    k: u32,
    dp4: u32,
    metric: u32,
    m: u32,
    bbs: u32,
    block_bytes: u32,
    lut_words: u32,
    inf: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Item {
    q: [u32; 4],
    out: [u32; 4],
    data: u32,
    ids: u32,
    count: u32,
    nq: u32,
    stride: u32,
    _pad: [u32; 3],
}

pub(crate) struct ListScanKernel {
    layout: wgpu::BindGroupLayout,
    scan_flat: wgpu::ComputePipeline,
    scan_pq: wgpu::ComputePipeline,
    merge: wgpu::ComputePipeline,
}

impl ListScanKernel {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        gpu.checked("compiling list_scan.wgsl", || {
            let (layout, mut p) = gpu.kernel(
                "list_scan.wgsl",
                include_str!("../../../shaders/list_scan.wgsl").into(),
                true,
                &[true, true, true, true, true, false],
                &["scan_flat", "scan_pq", "merge"],
            );
            let merge = p.pop().expect("merge");
            let scan_pq = p.pop().expect("scan_pq");
            let scan_flat = p.pop().expect("scan_flat");
            ListScanKernel {
                layout,
                scan_flat,
                scan_pq,
                merge,
            }
        })
    }
}

/// What the scan kernel reads.
#[derive(Clone, Copy)]
enum Scan {
    Flat {
        dp4: usize,
    },
    Pq {
        m: usize,
        bbs: usize,
        block_bytes: usize,
    },
}

/// A device buffer of vectors or codes, and the tie value of each entry.
struct Chunk {
    data: wgpu::Buffer,
    ids: wgpu::Buffer,
}

/// Up to `SEG` consecutive entries of one list inside one chunk.
#[derive(Clone, Copy)]
struct Seg {
    /// Unique per segment of one upload, so that queries scanning the same
    /// segment share work items.
    id: usize,
    chunk: usize,
    /// Flat: first vec4; PQ: first u32 word.
    data: u32,
    ids: u32,
    count: u32,
    /// Flat: entries the transposed segment is padded to (see `flat_chunks`).
    stride: u32,
}

/// A list to upload: raw vectors (`len × d`) or packed codes, and tie values.
struct HostList<'a, T> {
    data: &'a [T],
    ties: Vec<u32>,
}

pub(crate) struct Searcher<'a> {
    pub gpu: &'a Gpu,
    pub kernel: &'a ListScanKernel,
    pub max_binding: u64,
}

/// `(key, tie)` per query, best first, empty slots left out.
type Found = Vec<Vec<(f32, u32)>>;

fn cap(max_binding: u64) -> u64 {
    max_binding.min(CAP_BYTES)
}

/// Tie value of an id: faiss orders equal scores by id, lower first, or
/// higher first (`high_first`) where its heap is a max-heap.
fn ties(ids: &[i64], high_first: bool) -> Option<Vec<u32>> {
    ids.iter()
        .map(|&i| {
            let v = u32::try_from(i).ok().filter(|&v| v != EMPTY)?;
            Some(if high_first { !v } else { v })
        })
        .collect()
}

impl Searcher<'_> {
    /// Upload flat lists into binding-sized chunks of `dp4`-padded rows.
    fn flat_chunks(
        &self,
        lists: &[HostList<'_, f32>],
        d: usize,
        dp4: usize,
    ) -> Result<(Vec<Chunk>, Vec<Vec<Seg>>)> {
        let row_bytes = dp4 * 16;
        let cap_rows = cap(self.max_binding) as usize / row_bytes / 64 * 64;
        if cap_rows == 0 {
            return Err(Error::Gpu(format!(
                "{d}-dimensional vectors do not fit the adapter's storage binding"
            )));
        }
        // Segments never straddle chunks. Each is stored transposed, vec4
        // column c of its L entries (L = its size rounded up to 64) at
        // c·L + entry, so that neighbouring invocations read neighbouring
        // vec4s (coalesced on GPUs, contiguous vector loads on CPU adapters).
        let seg = SEG_FLAT.min(cap_rows);
        let mut chunks = Vec::new();
        let mut segs = Vec::with_capacity(lists.len());
        let (mut cols, mut tie): (Vec<f32>, Vec<u32>) = (Vec::new(), Vec::new());
        let mut nseg = 0;
        for l in lists {
            let mut mine = Vec::new();
            let n = l.ties.len();
            for s in (0..n).step_by(seg) {
                let e = (s + seg).min(n);
                let len = round_up(e - s, 64);
                if cols.len() / (dp4 * 4) + len > cap_rows {
                    chunks.push(self.upload_flat(&cols, &tie)?);
                    cols.clear();
                    tie.clear();
                }
                let at = cols.len();
                mine.push(Seg {
                    id: nseg,
                    chunk: chunks.len(),
                    data: (at / 4) as u32,
                    ids: tie.len() as u32,
                    count: (e - s) as u32,
                    stride: len as u32,
                });
                nseg += 1;
                cols.resize(at + len * dp4 * 4, 0.0);
                for (r, row) in l.data[s * d..e * d].chunks_exact(d.max(1)).enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        cols[at + ((j / 4) * len + r) * 4 + j % 4] = v;
                    }
                }
                tie.extend_from_slice(&l.ties[s..e]);
            }
            segs.push(mine);
        }
        if !tie.is_empty() || chunks.is_empty() {
            chunks.push(self.upload_flat(&cols, &tie)?);
        }
        Ok((chunks, segs))
    }

    fn upload_flat(&self, cols: &[f32], tie: &[u32]) -> Result<Chunk> {
        use wgpu::BufferUsages as U;
        let data = self
            .gpu
            .upload("search vectors", bytemuck::cast_slice(cols), U::STORAGE);
        let ids = self
            .gpu
            .upload("search ties", bytemuck::cast_slice(tie), U::STORAGE);
        Ok(Chunk { data, ids })
    }

    /// Upload packed fast-scan lists into chunks; segments are whole blocks.
    fn pq_chunks(
        &self,
        lists: &[HostList<'_, u8>],
        bbs: usize,
        block_bytes: usize,
    ) -> Result<(Vec<Chunk>, Vec<Vec<Seg>>)> {
        let cap = cap(self.max_binding) as usize;
        // Segments never straddle chunks.
        let seg_blocks = (SEG_FLAT / bbs).min(cap / block_bytes.max(1));
        let seg_entries = seg_blocks * bbs;
        if seg_blocks == 0 {
            return Err(Error::Gpu(
                "fast-scan blocks do not fit the adapter's storage binding".into(),
            ));
        }
        let mut chunks = Vec::new();
        let mut segs = Vec::with_capacity(lists.len());
        let (mut bytes, mut tie): (Vec<u8>, Vec<u32>) = (Vec::new(), Vec::new());
        let mut nseg = 0;
        let flush = |bytes: &mut Vec<u8>, tie: &mut Vec<u32>, chunks: &mut Vec<Chunk>| {
            bytes.resize(round_up(bytes.len().max(16), 16), 0);
            chunks.push(Chunk {
                data: self
                    .gpu
                    .upload("search codes", bytes, wgpu::BufferUsages::STORAGE),
                ids: self.gpu.upload(
                    "search ties",
                    bytemuck::cast_slice(tie),
                    wgpu::BufferUsages::STORAGE,
                ),
            });
            bytes.clear();
            tie.clear();
        };
        for l in lists {
            let mut mine = Vec::new();
            let n = l.ties.len();
            for s in (0..n).step_by(seg_entries) {
                let e = (s + seg_entries).min(n);
                let (b0, b1) = (s / bbs * block_bytes, e.div_ceil(bbs) * block_bytes);
                if bytes.len() + (b1 - b0) > cap {
                    flush(&mut bytes, &mut tie, &mut chunks);
                }
                mine.push(Seg {
                    id: nseg,
                    chunk: chunks.len(),
                    data: (bytes.len() / 4) as u32,
                    ids: tie.len() as u32,
                    count: (e - s) as u32,
                    stride: 0,
                });
                nseg += 1;
                bytes.extend_from_slice(&l.data[b0..b1]);
                tie.extend_from_slice(&l.ties[s..e]);
            }
            segs.push(mine);
        }
        if !tie.is_empty() || chunks.is_empty() {
            flush(&mut bytes, &mut tie, &mut chunks);
        }
        Ok((chunks, segs))
    }

    /// Batches of consecutive queries whose candidates fit one buffer.
    fn batches(&self, per_query: &[Vec<Seg>], k: usize) -> Result<Vec<std::ops::Range<usize>>> {
        // A segment costs k candidates (8 bytes each) and at most two work
        // items (64 bytes each, scan and merge) within the buffers' bound.
        let cap = (cap(self.max_binding) / (8 * k as u64).max(128)) as usize;
        let mut out = Vec::new();
        let (mut start, mut used) = (0, 0);
        for (q, segs) in per_query.iter().enumerate() {
            if segs.len() > cap {
                return Err(Error::Gpu(format!(
                    "one query's {} list segments exceed the device buffers",
                    segs.len()
                )));
            }
            if used + segs.len() > cap {
                out.push(start..q);
                start = q;
                used = 0;
            }
            used += segs.len();
        }
        out.push(start..per_query.len());
        Ok(out)
    }

    /// Score every segment of every query (queries `0..per_query.len()` of
    /// `qbuf`), keep the best `k` per segment, merge to `k` per query.
    fn select(
        &self,
        scan: Scan,
        metric: Metric,
        k: usize,
        qbuf: &wgpu::Buffer,
        chunks: &[Chunk],
        per_query: &[Vec<Seg>],
    ) -> Result<Found> {
        let gpu = self.gpu;
        let nq = per_query.len();
        let mut params: Vec<Params> = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        let base = Params {
            k: k as u32,
            metric: (metric == Metric::InnerProduct) as u32,
            inf: f32::INFINITY,
            ..Default::default()
        };
        let base = match scan {
            Scan::Flat { dp4 } => Params {
                dp4: dp4 as u32,
                ..base
            },
            Scan::Pq {
                m,
                bbs,
                block_bytes,
            } => Params {
                m: m as u32,
                bbs: bbs as u32,
                block_bytes: block_bytes as u32,
                lut_words: (m * 4) as u32,
                ..base
            },
        };
        let max_x = gpu.limits.max_compute_workgroups_per_dimension as usize;
        let mut dispatch = |items: &mut Vec<Item>, new: Vec<Item>| -> (usize, u32, u32) {
            let n = new.len();
            let gx = n.clamp(1, max_x);
            params.push(Params {
                items_base: items.len() as u32,
                n_items: n as u32,
                groups_x: gx as u32,
                ..base
            });
            items.extend(new);
            (params.len() - 1, gx as u32, n.div_ceil(gx) as u32)
        };

        // Scan: outputs per query contiguous; items grouped by chunk, and for
        // the flat scan up to QB queries of the same segment per item.
        let per_item = match scan {
            Scan::Flat { .. } => QB,
            // As many queries' tables as workgroup memory holds.
            Scan::Pq { m, .. } => (MAX_LUT_WORDS / (m * 4).max(1)).clamp(1, QB),
        };
        let mut region = Vec::with_capacity(nq);
        let mut users: std::collections::BTreeMap<usize, (Seg, Vec<(u32, u32)>)> =
            Default::default();
        let mut next = 0u32;
        for (q, segs) in per_query.iter().enumerate() {
            region.push((next, (segs.len() * k) as u32));
            for s in segs {
                users
                    .entry(s.id)
                    .or_insert((*s, Vec::new()))
                    .1
                    .push((q as u32, next));
                next += k as u32;
            }
        }
        let mut by_chunk: Vec<Vec<Item>> = (0..chunks.len()).map(|_| Vec::new()).collect();
        for (s, qs) in users.values() {
            for group in qs.chunks(per_item) {
                let mut item = Item {
                    data: s.data,
                    ids: s.ids,
                    count: s.count,
                    nq: group.len() as u32,
                    stride: s.stride,
                    ..Default::default()
                };
                for (j, &(q, out)) in group.iter().enumerate() {
                    item.q[j] = q;
                    item.out[j] = out;
                }
                by_chunk[s.chunk].push(item);
            }
        }
        let cand_len = next.max(1) as usize;
        let scans: Vec<(usize, usize, u32, u32)> = by_chunk
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(c, v)| {
                let (p, gx, gy) = dispatch(&mut items, v);
                (c, p, gx, gy)
            })
            .collect();
        // Merge passes until at most k candidates remain per query.
        let per = SEG / k * k;
        let mut merges = Vec::new();
        while region.iter().any(|&(_, c)| c as usize > k) {
            let mut new = Vec::new();
            let mut next = 0u32;
            let mut out_region = Vec::with_capacity(nq);
            for (q, &(s, c)) in region.iter().enumerate() {
                let start = next;
                for off in (0..c).step_by(per) {
                    new.push(Item {
                        q: [q as u32, 0, 0, 0],
                        out: [next, 0, 0, 0],
                        data: s + off,
                        count: (c - off).min(per as u32),
                        nq: 1,
                        ..Default::default()
                    });
                    next += k as u32;
                }
                out_region.push((start, next - start));
            }
            merges.push(dispatch(&mut items, new));
            region = out_region;
        }

        let stride = round_up(
            std::mem::size_of::<Params>(),
            gpu.limits.min_uniform_buffer_offset_alignment as usize,
        );
        let mut pbytes = vec![0u8; params.len().max(1) * stride];
        for (i, p) in params.iter().enumerate() {
            pbytes[i * stride..i * stride + std::mem::size_of::<Params>()]
                .copy_from_slice(bytemuck::bytes_of(p));
        }
        let total: u32 = region.iter().map(|r| r.1).sum();
        gpu.checked("GPU search", || -> Result<Found> {
            use wgpu::BufferUsages as U;
            let pbuf = gpu.upload("search params", &pbytes, U::UNIFORM);
            let ibuf = gpu.upload("search items", bytemuck::cast_slice(&items), U::STORAGE);
            let dummy = gpu.buffer("search unused", 16, U::STORAGE);
            let cand = [0, 1].map(|_| {
                gpu.buffer(
                    "search candidates",
                    (cand_len * 8) as u64,
                    U::STORAGE | U::COPY_SRC,
                )
            });
            let group = |data: &wgpu::Buffer, ids: &wgpu::Buffer, cin: &wgpu::Buffer, cout| {
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("search"),
                    layout: &self.kernel.layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &pbuf,
                                offset: 0,
                                size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
                            }),
                        },
                        bind(1, &ibuf),
                        bind(2, qbuf),
                        bind(3, data),
                        bind(4, ids),
                        bind(5, cin),
                        bind(6, cout),
                    ],
                })
            };
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(match scan {
                    Scan::Flat { .. } => &self.kernel.scan_flat,
                    Scan::Pq { .. } => &self.kernel.scan_pq,
                });
                for &(c, p, gx, gy) in &scans {
                    let g = group(&chunks[c].data, &chunks[c].ids, &dummy, &cand[0]);
                    pass.set_bind_group(0, &g, &[(p * stride) as u32]);
                    pass.dispatch_workgroups(gx, gy, 1);
                }
                pass.set_pipeline(&self.kernel.merge);
                let flips = [
                    group(&dummy, &dummy, &cand[0], &cand[1]),
                    group(&dummy, &dummy, &cand[1], &cand[0]),
                ];
                for (i, &(p, gx, gy)) in merges.iter().enumerate() {
                    pass.set_bind_group(0, &flips[i % 2], &[(p * stride) as u32]);
                    pass.dispatch_workgroups(gx, gy, 1);
                }
            }
            let fin = &cand[merges.len() % 2];
            let bytes = (total.max(1) as u64) * 8;
            let rb = gpu.buffer("search read-back", bytes, U::MAP_READ | U::COPY_DST);
            enc.copy_buffer_to_buffer(fin, 0, &rb, 0, bytes);
            let sub = gpu.queue.submit([enc.finish()]);
            gpu.read(sub, &rb, bytes, |b| {
                let all: &[[u32; 2]] = bytemuck::cast_slice(b);
                region
                    .iter()
                    .map(|&(s, c)| {
                        all[s as usize..(s + c) as usize]
                            .iter()
                            .map(|e| (f32::from_bits(e[0]), e[1]))
                            .filter(|&(key, tie)| !(key == f32::INFINITY && tie == EMPTY))
                            .collect()
                    })
                    .collect()
            })
        })?
    }

    /// `select` over flat lists for query rows `queries` (f32), batched.
    fn select_flat(
        &self,
        metric: Metric,
        k: usize,
        queries: ArrayView2<f32>,
        chunks: &[Chunk],
        per_query: &[Vec<Seg>],
    ) -> Result<Found> {
        let dp4 = queries.ncols().div_ceil(4).max(1);
        let mut out = Vec::with_capacity(queries.nrows());
        for r in self.batches(per_query, k)? {
            let qbuf = self.gpu.buffer(
                "search queries",
                (r.len() * dp4 * 16) as u64,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            );
            let qs = queries.slice(ndarray::s![r.clone(), ..]);
            upload_rows(self.gpu, &qbuf, qs, r.len(), dp4)?;
            out.extend(self.select(Scan::Flat { dp4 }, metric, k, &qbuf, chunks, &per_query[r])?);
        }
        Ok(out)
    }
}

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
        let (chunks, segs) = s.flat_chunks(&host, d, dp4)?;
        let found = s.select_flat(metric, k, queries.view(), &chunks, &probed(&segs, probes))?;
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
    if !covered(k, nq, probes.ncols())
        || m == 0
        || m * 4 > MAX_LUT_WORDS
        || layout.bbs == 0
        || !layout.bbs.is_multiple_of(32)
        || layout.bbs > SEG_FLAT
        || tables.m != m
    {
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
    let (chunks, segs) = s.pq_chunks(lists, layout.bbs, block_bytes)?;
    let per_query = probed(&segs, probes);
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
        let found = s.select(scan, metric, k, &qbuf, &chunks, &per_query[r.clone()])?;
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
