//! Host side of `shaders/assign.wgsl` (and the kernels appended to it):
//! chunking, dispatch splitting, read-back. `variant.rs` holds the kernels'
//! shapes and the choice of one per adapter.

mod coop;
mod variant;

use ndarray::ArrayView2;

pub use variant::{ASSIGN_KERNEL_ENV, AssignVariant};
pub(crate) use variant::{choose, from_env};

use super::context::{Gpu, bind, pipelined_chunks, round_up, upload_rows};
use super::timer::{PassTimer, TIMER_BYTES};
use crate::compute::Assignment;
use crate::{Error, Metric, Result};

/// Mesa's lavapipe silently stops a loop nest after this many iterations.
const LOOP_LIMIT: usize = 65_535;

/// Most loop iterations one invocation may run per dispatch: far below
/// `LOOP_LIMIT`, leaving room for the compiler's own restructuring.
const LOOP_BUDGET: usize = 16_384;

/// Row chunks stay around this size even where bindings allow more, so that
/// copying one chunk in overlaps computing the one before (but hold at least
/// `AssignVariant::min_workgroups` workgroups).
const CHUNK_BYTES: u64 = 32 << 20;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dp4: u32,
    c_begin: u32,
    c_end: u32,
    c_base: u32,
    alpha: f32,
    first: u32,
    init: f32,
    _pad: u32,
}

pub(crate) struct AssignKernel {
    layout: wgpu::BindGroupLayout,
    pipelines: Vec<(AssignVariant, wgpu::ComputePipeline)>,
    /// The cooperative-matrix kernel, where the device was opened for it.
    coop: Option<coop::CoopKernel>,
}

impl AssignKernel {
    /// Compiles the tiled kernels the adapter's limits allow, and the
    /// subgroup one where the device has subgroups of at least 8
    /// invocations.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let subgroups = gpu.device.features().contains(wgpu::Features::SUBGROUP)
            && gpu.info.subgroup_min_size >= 8;
        gpu.checked("compiling assign.wgsl", || {
            let mut source = include_str!("../../../../shaders/assign.wgsl").to_string();
            let mut variants = Vec::new();
            if AssignVariant::Tiled64.fits(&gpu.limits) {
                variants.push(AssignVariant::Tiled64);
            }
            if AssignVariant::Tiled128.fits(&gpu.limits) {
                source.push_str(include_str!("../../../../shaders/assign_tiled128.wgsl"));
                variants.push(AssignVariant::Tiled128);
            }
            if subgroups {
                source.push_str(include_str!("../../../../shaders/assign_subgroup.wgsl"));
                variants.push(AssignVariant::Subgroup);
            }
            let names: Vec<&str> = variants.iter().map(|v| v.entry_point()).collect();
            let (layout, compiled) = gpu.kernel(
                "assign.wgsl",
                source,
                true,
                &[true, true, true, false],
                &names,
            );
            let pipelines = variants.into_iter().zip(compiled).collect();
            (layout, pipelines)
        })
        .and_then(|(layout, pipelines)| {
            let coop = if coop::supported(gpu) && AssignVariant::Coop16.fits(&gpu.limits) {
                Some(coop::CoopKernel::new(gpu)?)
            } else {
                None
            };
            Ok(AssignKernel {
                layout,
                pipelines,
                coop,
            })
        })
    }

    /// Rows the cooperative-matrix kernel handed back to an f32 kernel.
    pub fn coop_rerun_rows(&self) -> usize {
        self.coop.as_ref().map_or(0, |c| {
            c.rerun_rows.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    pub fn variants(&self) -> Vec<AssignVariant> {
        let mut v: Vec<AssignVariant> = self.pipelines.iter().map(|(v, _)| *v).collect();
        if self.coop.is_some() {
            v.push(AssignVariant::Coop16);
        }
        v
    }

    fn pipeline(&self, v: AssignVariant) -> Result<&wgpu::ComputePipeline> {
        self.pipelines
            .iter()
            .find(|(w, _)| *w == v)
            .map(|(_, p)| p)
            .ok_or_else(|| Error::Unsupported(format!("{v:?} assign kernel on this device")))
    }
}

/// Centroids of one binding-sized chunk, padded, with their key bias.
struct CentroidChunk {
    cen: wgpu::Buffer,
    bias: wgpu::Buffer,
    /// Global index of the first centroid.
    base: usize,
    /// Centroids in the chunk, padded to whole blocks.
    padded: usize,
}

pub(crate) fn assign(
    gpu: &Gpu,
    kernel: &AssignKernel,
    variant: AssignVariant,
    max_binding: u64,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
) -> Result<Assignment> {
    let (n, d, k) = (x.nrows(), x.ncols(), c.nrows());
    if c.ncols() != d {
        return Err(Error::Invalid(format!(
            "assign: rows have {d} dimensions, centroids {}",
            c.ncols()
        )));
    }
    if k == 0 {
        return Err(Error::Invalid("assign: no centroids".into()));
    }
    if n == 0 {
        return Ok(Assignment::default());
    }
    if variant == AssignVariant::Coop16 {
        let coop = kernel.coop.as_ref().ok_or_else(|| {
            Error::Unsupported("cooperative-matrix assign kernel on this device".into())
        })?;
        // Rows the f16 products cannot decide, and cases the kernel does
        // not cover, go to the f32 kernel this adapter would use.
        let f32s: Vec<AssignVariant> = kernel
            .variants()
            .into_iter()
            .filter(|&v| v != AssignVariant::Coop16)
            .collect();
        let fallback = choose(&gpu.info, &f32s);
        let rerun =
            |rows: ArrayView2<f32>| assign(gpu, kernel, fallback, max_binding, rows, c, metric);
        return match coop::assign(gpu, coop, max_binding, x, c, metric, rerun) {
            Some(r) => r,
            None => assign(gpu, kernel, fallback, max_binding, x, c, metric),
        };
    }
    let pipeline = kernel.pipeline(variant)?;
    let dp4 = round_up(d.div_ceil(4).max(1), variant.vec4_align());
    let row_bytes = dp4 as u64 * 16;
    let per_block = variant.iterations_per_block(dp4);
    if per_block > LOOP_LIMIT / 2 {
        return Err(Error::Unsupported(format!(
            "GPU assign: {d} dimensions is more than one kernel loop can cover"
        )));
    }
    let wg_rows = variant.rows_per_workgroup();
    let cblock = variant.centroid_block();

    // Chunk sizes: every binding within the adapter's limit, and the row grid
    // within the dispatch limit.
    let fit = |unit: usize| (max_binding / row_bytes) as usize / unit * unit;
    let wanted = ((CHUNK_BYTES / row_bytes) as usize).max(variant.min_workgroups() * wg_rows);
    let chunk_rows = fit(wg_rows)
        .min(gpu.limits.max_compute_workgroups_per_dimension as usize * wg_rows)
        .min(round_up(wanted, wg_rows))
        .min(round_up(n, wg_rows));
    let chunk_cents = fit(cblock).min(round_up(k, cblock));
    if chunk_rows == 0 || chunk_cents == 0 {
        return Err(Error::Gpu(format!(
            "{d}-dimensional rows do not fit the adapter's {max_binding}-byte storage binding"
        )));
    }

    gpu.checked("GPU assign", || -> Result<Assignment> {
        let chunks = upload_centroids(gpu, c, metric, chunk_cents, cblock, dp4)?;

        // One Params entry per dispatch, at the uniform offset alignment.
        let stride = round_up(
            std::mem::size_of::<Params>(),
            gpu.limits.min_uniform_buffer_offset_alignment as usize,
        );
        let blocks_per_dispatch = (LOOP_BUDGET / per_block).max(1);
        let alpha = match metric {
            Metric::L2 => -2.0,
            Metric::InnerProduct => -1.0,
        };
        let mut params = Vec::new();
        let mut dispatches = Vec::new(); // (chunk, params offset)
        for (ci, ch) in chunks.iter().enumerate() {
            let blocks = ch.padded / cblock;
            let mut b = 0;
            while b < blocks {
                let e = (b + blocks_per_dispatch).min(blocks);
                let p = Params {
                    dp4: dp4 as u32,
                    c_begin: (b * cblock) as u32,
                    c_end: (e * cblock) as u32,
                    c_base: ch.base as u32,
                    alpha,
                    first: dispatches.is_empty() as u32,
                    init: f32::INFINITY,
                    _pad: 0,
                };
                dispatches.push((ci, params.len() as u32));
                params.extend_from_slice(bytemuck::bytes_of(&p));
                params.resize(params.len() + stride - std::mem::size_of::<Params>(), 0);
                b = e;
            }
        }
        let params_buf = gpu.upload("assign params", &params, wgpu::BufferUsages::UNIFORM);

        // Two slots, so one chunk uploads while the previous one computes.
        let slots = if n > chunk_rows { 2 } else { 1 };
        let best_bytes = chunk_rows as u64 * 8;
        let xs: Vec<_> = (0..slots)
            .map(|_| {
                gpu.buffer(
                    "assign rows",
                    chunk_rows as u64 * row_bytes,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                )
            })
            .collect();
        let bests: Vec<_> = (0..slots)
            .map(|_| {
                gpu.buffer(
                    "assign best",
                    best_bytes,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                )
            })
            .collect();
        // The bests, then (where the device has timestamps) the pass's ticks.
        let timers: Vec<Option<PassTimer>> = (0..slots).map(|_| gpu.pass_timer()).collect();
        let readbacks: Vec<_> = (0..slots)
            .map(|_| {
                gpu.buffer(
                    "assign read-back",
                    best_bytes + TIMER_BYTES,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                )
            })
            .collect();
        let groups: Vec<Vec<wgpu::BindGroup>> = (0..slots)
            .map(|s| {
                chunks
                    .iter()
                    .map(|ch| {
                        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("assign"),
                            layout: &kernel.layout,
                            entries: &[
                                wgpu::BindGroupEntry {
                                    binding: 0,
                                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                        buffer: &params_buf,
                                        offset: 0,
                                        size: wgpu::BufferSize::new(
                                            std::mem::size_of::<Params>() as u64
                                        ),
                                    }),
                                },
                                bind(1, &xs[s]),
                                bind(2, &ch.cen),
                                bind(3, &ch.bias),
                                bind(4, &bests[s]),
                            ],
                        })
                    })
                    .collect()
            })
            .collect();

        let mut out = Assignment {
            labels: vec![0; n],
            distances: vec![0.0; n],
        };
        pipelined_chunks(
            n,
            chunk_rows,
            slots,
            |slot, rows| {
                let padded = round_up(rows.len(), wg_rows);
                upload_rows(gpu, &xs[slot], x.slice(ndarray::s![rows, ..]), padded, dp4)?;
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("assign"),
                        timestamp_writes: timers[slot].as_ref().map(|t| t.writes()),
                    });
                    pass.set_pipeline(pipeline);
                    for &(chunk, offset) in &dispatches {
                        pass.set_bind_group(0, &groups[slot][chunk], &[offset]);
                        pass.dispatch_workgroups((padded / wg_rows) as u32, 1, 1);
                    }
                }
                enc.copy_buffer_to_buffer(&bests[slot], 0, &readbacks[slot], 0, padded as u64 * 8);
                if let Some(t) = &timers[slot] {
                    t.resolve(&mut enc, &readbacks[slot], best_bytes);
                }
                Ok((gpu.queue.submit([enc.finish()]), ()))
            },
            |slot, rows, submission, ()| {
                let timed = timers[slot].is_some();
                let len = if timed {
                    best_bytes + TIMER_BYTES
                } else {
                    (rows.len() * 8) as u64
                };
                gpu.read(submission, &readbacks[slot], len, |bytes| {
                    if timed {
                        gpu.add_ticks(&bytes[best_bytes as usize..]);
                    }
                    let best: &[[u32; 2]] = bytemuck::cast_slice(&bytes[..rows.len() * 8]);
                    for (i, b) in rows.zip(best) {
                        let key = f32::from_bits(b[0]);
                        out.labels[i] = b[1];
                        out.distances[i] = match metric {
                            Metric::L2 => {
                                let r = x.row(i);
                                (r.dot(&r) + key).max(0.0)
                            }
                            Metric::InnerProduct => -key,
                        };
                    }
                })
            },
        )?;
        Ok(out)
    })?
}

/// Centroids split into chunks of at most `per_chunk` (a whole number of
/// blocks), each padded with zero rows whose bias is +inf.
fn upload_centroids(
    gpu: &Gpu,
    c: ArrayView2<f32>,
    metric: Metric,
    per_chunk: usize,
    block: usize,
    dp4: usize,
) -> Result<Vec<CentroidChunk>> {
    let k = c.nrows();
    let mut chunks = Vec::new();
    for base in (0..k).step_by(per_chunk) {
        let rows = c.slice(ndarray::s![base..(base + per_chunk).min(k), ..]);
        let padded = round_up(rows.nrows(), block);
        let cen = gpu.buffer(
            "centroids",
            (padded * dp4 * 16) as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        upload_rows(gpu, &cen, rows, padded, dp4)?;
        let mut bias = vec![f32::INFINITY; padded];
        for (b, r) in bias.iter_mut().zip(rows.rows()) {
            *b = match metric {
                Metric::L2 => r.dot(&r),
                Metric::InnerProduct => 0.0,
            };
        }
        let bias = gpu.upload(
            "centroid bias",
            bytemuck::cast_slice(&bias),
            wgpu::BufferUsages::STORAGE,
        );
        chunks.push(CentroidChunk {
            cen,
            bias,
            base,
            padded,
        });
    }
    Ok(chunks)
}
