//! Host side of `shaders/weighted_sum.wgsl`: the `weighted_sum` primitive
//! (the arithmetic of α-query expansion) on the device.

use std::collections::HashMap;

use ndarray::{Array2, ArrayView2};

use super::context::{Gpu, bind, upload_rows};
use crate::{Error, Result};

/// Neighbours per row the kernel's workgroup arrays hold.
pub const MAX_M: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dp4: u32,
    m: u32,
    nq: u32,
    alpha: f32,
    groups_x: u32,
    _pad: [u32; 3],
}

pub(crate) struct WeightedSumKernel {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl WeightedSumKernel {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        gpu.checked("compiling weighted_sum.wgsl", || {
            let (layout, mut p) = gpu.kernel(
                "weighted_sum.wgsl",
                include_str!("../../../shaders/weighted_sum.wgsl").into(),
                false,
                &[true, true, true, false],
                &["weighted_sum"],
            );
            let pipeline = p.remove(0);
            WeightedSumKernel { layout, pipeline }
        })
    }
}

/// Weighted sums of the rows of `q` from their neighbours `ids` in `db` (see
/// `cpu::weighted_sum`, the CPU form). Rows are processed in chunks
/// whose queries, distinct neighbour rows and outputs each fit one storage
/// binding; only the neighbour rows a chunk needs are uploaded.
pub(crate) fn weighted_sum(
    gpu: &Gpu,
    kernel: &WeightedSumKernel,
    max_binding: u64,
    q: ArrayView2<f32>,
    db: ArrayView2<f32>,
    ids: ArrayView2<i64>,
    alpha: f32,
) -> Result<Array2<f32>> {
    let (n, d) = q.dim();
    let m = ids.ncols();
    if db.ncols() != d || ids.nrows() != n {
        return Err(Error::Invalid(format!(
            "weighted_sum: {n}×{d} queries, {}×{} database, {}×{m} ids",
            db.nrows(),
            db.ncols(),
            ids.nrows()
        )));
    }
    if m > MAX_M {
        return Err(Error::Invalid(format!(
            "weighted_sum: at most {MAX_M} neighbours per row on the GPU, got {m}"
        )));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i >= db.nrows() as i64) {
        return Err(Error::Invalid(format!(
            "weighted_sum: neighbour id {bad} out of range"
        )));
    }
    let mut out = Array2::<f32>::zeros((n, d));
    if n == 0 || d == 0 {
        return Ok(out);
    }
    let dp4 = d.div_ceil(4);
    let row_bytes = (dp4 * 16) as u64;
    let cap_rows = (max_binding / row_bytes) as usize;
    if cap_rows <= m {
        return Err(Error::Gpu(format!(
            "{d}-dimensional rows do not fit the adapter's storage binding"
        )));
    }
    let max_x = gpu.limits.max_compute_workgroups_per_dimension as usize;

    let mut start = 0;
    while start < n {
        // Grow the chunk while its distinct neighbours fit one binding.
        let mut local: HashMap<i64, i32> = HashMap::new();
        let mut order: Vec<usize> = Vec::new();
        let mut end = start;
        while end < n && end - start < cap_rows {
            let new = ids
                .row(end)
                .iter()
                .filter(|&&i| i >= 0 && !local.contains_key(&i))
                .count();
            if local.len() + new > cap_rows {
                break;
            }
            for &i in ids.row(end).iter().filter(|&&i| i >= 0) {
                let next = local.len() as i32;
                local.entry(i).or_insert_with(|| {
                    order.push(i as usize);
                    next
                });
            }
            end += 1;
        }
        let nq = end - start;
        let remapped: Vec<i32> = ids
            .slice(ndarray::s![start..end, ..])
            .iter()
            .map(|&i| if i >= 0 { local[&i] } else { -1 })
            .collect();
        let rows = db.select(ndarray::Axis(0), &order);
        let chunk = gpu.checked("GPU weighted_sum", || -> Result<Vec<f32>> {
            let qbuf = gpu.buffer(
                "weighted_sum rows",
                nq as u64 * row_bytes,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            );
            upload_rows(gpu, &qbuf, q.slice(ndarray::s![start..end, ..]), nq, dp4)?;
            let dbuf = gpu.buffer(
                "weighted_sum neighbours",
                order.len().max(1) as u64 * row_bytes,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            );
            upload_rows(gpu, &dbuf, rows.view(), order.len(), dp4)?;
            let ibuf = gpu.upload(
                "weighted_sum ids",
                bytemuck::cast_slice(&remapped),
                wgpu::BufferUsages::STORAGE,
            );
            let out_bytes = nq as u64 * row_bytes;
            let obuf = gpu.buffer(
                "weighted_sum out",
                out_bytes,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            );
            let rb = gpu.buffer(
                "weighted_sum read-back",
                out_bytes,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
            let gx = nq.min(max_x);
            let params = Params {
                dp4: dp4 as u32,
                m: m as u32,
                nq: nq as u32,
                alpha,
                groups_x: gx as u32,
                _pad: [0; 3],
            };
            let pbuf = gpu.upload(
                "weighted_sum params",
                bytemuck::bytes_of(&params),
                wgpu::BufferUsages::UNIFORM,
            );
            let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("weighted_sum"),
                layout: &kernel.layout,
                entries: &[
                    bind(0, &pbuf),
                    bind(1, &qbuf),
                    bind(2, &dbuf),
                    bind(3, &ibuf),
                    bind(4, &obuf),
                ],
            });
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&kernel.pipeline);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(gx as u32, nq.div_ceil(gx) as u32, 1);
            }
            enc.copy_buffer_to_buffer(&obuf, 0, &rb, 0, out_bytes);
            let sub = gpu.queue.submit([enc.finish()]);
            gpu.read(sub, &rb, out_bytes, |bytes| {
                bytemuck::cast_slice::<u8, f32>(bytes).to_vec()
            })
        })??;
        for (r, row) in chunk.chunks_exact(dp4 * 4).enumerate() {
            out.row_mut(start + r)
                .as_slice_mut()
                .expect("contiguous")
                .copy_from_slice(&row[..d]);
        }
        start = end;
    }
    Ok(out)
}
