//! Host side of `shaders/pq_assign.wgsl`: every row's nearest sub-centroid in
//! every sub-space, all sub-spaces in one dispatch per row chunk.

use ndarray::{Array2, ArrayView2};

use super::context::{Gpu, bind, pipelined_chunks, round_up};
use crate::compute::PqAssignment;
use crate::compute::cpu::pq_assign::check;
use crate::{Error, Result};

/// Rows per workgroup (the shader's workgroup size).
pub(super) const WG_ROWS: usize = 64;
/// Loop trips one invocation may run (lavapipe cuts loops at 65 535).
const LOOP_BUDGET: usize = 16_384;
/// Row chunks stay around this size so uploads overlap compute.
const CHUNK_BYTES: usize = 32 << 20;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub n: u32,
    pub d: u32,
    pub dsub: u32,
    pub ksub: u32,
    pub blocks: u32,
    pub m: u32,
    pub _pad: [u32; 2],
}

pub(crate) struct PqKernel {
    pub(super) layout: wgpu::BindGroupLayout,
    pub(super) pipeline: wgpu::ComputePipeline,
}

impl PqKernel {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        gpu.checked("compiling pq_assign.wgsl", || {
            let (layout, mut p) = gpu.kernel(
                "pq_assign.wgsl",
                include_str!("../../../shaders/pq_assign.wgsl").into(),
                false,
                &[true, true, false],
                &["pq_assign"],
            );
            PqKernel {
                layout,
                pipeline: p.remove(0),
            }
        })
    }
}

/// The codebooks in the shader's layout: blocks of 16 centroids, transposed
/// to `[sub-space][block][component][16]`, padded with zero centroids.
pub(super) fn transpose_books(
    books: ArrayView2<f32>,
    m: usize,
    ksub: usize,
    blocks: usize,
) -> Vec<f32> {
    let dsub = books.ncols();
    let mut out = vec![0f32; m * blocks * dsub * 16];
    for sq in 0..m {
        for c in 0..ksub {
            let (b, t) = (c / 16, c % 16);
            let row = books.row(sq * ksub + c);
            for (j, &v) in row.iter().enumerate() {
                out[((sq * blocks + b) * dsub + j) * 16 + t] = v;
            }
        }
    }
    out
}

pub(crate) fn pq_assign(
    gpu: &Gpu,
    kernel: &PqKernel,
    max_binding: u64,
    x: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    m: usize,
    ksub: usize,
) -> Result<PqAssignment> {
    let dsub = check("pq_assign", x.ncols(), codebooks, m, ksub)?;
    let (n, d) = x.dim();
    let mut codes = Array2::<u8>::zeros((n, m));
    let mut distances = Array2::<f32>::zeros((n, m));
    if n == 0 || dsub == 0 {
        return Ok(PqAssignment { codes, distances });
    }
    let blocks = ksub.div_ceil(16);
    if blocks * dsub > LOOP_BUDGET {
        return Err(Error::Unsupported(format!(
            "GPU pq_assign: {dsub}-dimensional sub-spaces are more than one kernel loop can cover"
        )));
    }
    let row_bytes = d * 4;
    let out_row = m * 8;
    let fit = (max_binding as usize / row_bytes.max(out_row)) / WG_ROWS * WG_ROWS;
    let chunk_rows = fit
        .min(gpu.limits.max_compute_workgroups_per_dimension as usize * WG_ROWS)
        .min(round_up(CHUNK_BYTES / row_bytes, WG_ROWS))
        .min(round_up(n, WG_ROWS));
    let books = transpose_books(codebooks, m, ksub, blocks);
    if chunk_rows == 0 || books.len() * 4 > max_binding as usize {
        return Err(Error::Gpu(format!(
            "PQ{m} on {d} dimensions does not fit the adapter's {max_binding}-byte storage binding"
        )));
    }
    if m > gpu.limits.max_compute_workgroups_per_dimension as usize {
        return Err(Error::Unsupported(format!("GPU pq_assign: {m} sub-spaces")));
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");

    gpu.checked("GPU pq_assign", || -> Result<()> {
        let books = gpu.upload(
            "pq codebooks",
            bytemuck::cast_slice(&books),
            wgpu::BufferUsages::STORAGE,
        );
        let slots = if n > chunk_rows { 2 } else { 1 };
        let make = |label, size: usize, usage| -> Vec<wgpu::Buffer> {
            (0..slots)
                .map(|_| gpu.buffer(label, size as u64, usage))
                .collect()
        };
        use wgpu::BufferUsages as U;
        let xbufs = make("pq rows", chunk_rows * row_bytes, U::STORAGE | U::COPY_DST);
        let pbufs = make("pq params", 32, U::UNIFORM | U::COPY_DST);
        let obufs = make("pq out", chunk_rows * out_row, U::STORAGE | U::COPY_SRC);
        let rbufs = make(
            "pq read-back",
            chunk_rows * out_row,
            U::MAP_READ | U::COPY_DST,
        );
        let groups: Vec<wgpu::BindGroup> = (0..slots)
            .map(|s| {
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("pq_assign"),
                    layout: &kernel.layout,
                    entries: &[
                        bind(0, &pbufs[s]),
                        bind(1, &xbufs[s]),
                        bind(2, &books),
                        bind(3, &obufs[s]),
                    ],
                })
            })
            .collect();
        let codes_s = codes.as_slice_mut().expect("contiguous");
        let dist_s = distances.as_slice_mut().expect("contiguous");
        pipelined_chunks(
            n,
            chunk_rows,
            slots,
            |slot, rows| {
                let params = Params {
                    n: rows.len() as u32,
                    d: d as u32,
                    dsub: dsub as u32,
                    ksub: ksub as u32,
                    blocks: blocks as u32,
                    m: m as u32,
                    _pad: [0; 2],
                };
                gpu.queue
                    .write_buffer(&pbufs[slot], 0, bytemuck::bytes_of(&params));
                gpu.queue.write_buffer(
                    &xbufs[slot],
                    0,
                    bytemuck::cast_slice(&xs[rows.start * d..rows.end * d]),
                );
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&kernel.pipeline);
                    pass.set_bind_group(0, &groups[slot], &[]);
                    pass.dispatch_workgroups(rows.len().div_ceil(WG_ROWS) as u32, m as u32, 1);
                }
                let bytes = (rows.len() * out_row) as u64;
                enc.copy_buffer_to_buffer(&obufs[slot], 0, &rbufs[slot], 0, bytes);
                Ok((gpu.queue.submit([enc.finish()]), ()))
            },
            |slot, rows, submission, ()| {
                let bytes = (rows.len() * out_row) as u64;
                gpu.read(submission, &rbufs[slot], bytes, |b| {
                    let pairs: &[[u32; 2]] = bytemuck::cast_slice(b);
                    let at = rows.start * m;
                    for (i, pr) in pairs.iter().enumerate() {
                        codes_s[at + i] = pr[0] as u8;
                        dist_s[at + i] = f32::from_bits(pr[1]);
                    }
                })
            },
        )
    })??;
    Ok(PqAssignment { codes, distances })
}
