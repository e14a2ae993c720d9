//! The "score segments, keep k per segment, merge to k per query" pipeline
//! every list-scan primitive runs (`shaders/list_scan.wgsl`: `scan_flat`,
//! `scan_pq`, `merge`).

use ndarray::ArrayView2;

use super::chunks::{Chunk, Seg};
use super::{EMPTY, MAX_LUT_WORDS, QB, SEG};
use crate::compute::gpu::context::{Gpu, bind, round_up, upload_rows};
use crate::{Metric, Result};

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
                include_str!("../../../../shaders/list_scan.wgsl").into(),
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
pub(super) enum Scan {
    Flat {
        dp4: usize,
    },
    Pq {
        m: usize,
        bbs: usize,
        block_bytes: usize,
    },
}

pub(crate) struct Searcher<'a> {
    pub gpu: &'a Gpu,
    pub kernel: &'a ListScanKernel,
    pub max_binding: u64,
    /// Uploads kept across calls (see `resident.rs`).
    pub resident: &'a super::Resident,
}

/// `(key, tie)` per query, best first, empty slots left out.
pub(super) type Found = Vec<Vec<(f32, u32)>>;

impl Searcher<'_> {
    /// Score every segment of every query (queries `0..per_query.len()` of
    /// `qbuf`), keep the best `k` per segment, merge to `k` per query.
    pub(super) fn select(
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
    pub(super) fn select_flat(
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
