//! Host side of `shaders/centroid_sums.wgsl`: the `centroid_sums` primitive
//! on the device.

use ndarray::{Array2, ArrayView2};

use super::context::{Gpu, bind, pipelined_chunks, upload_rows};
use crate::{Error, Result};

/// Rows one invocation adds at most (lavapipe truncates loops at 65 535).
const SEGMENT_ROWS: usize = 8192;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dp4: u32,
    seg_count: u32,
    y_size: u32,
    _pad: u32,
}

pub(crate) struct SumsKernel {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl SumsKernel {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        gpu.checked("compiling centroid_sums.wgsl", || {
            let (layout, mut p) = gpu.kernel(
                "centroid_sums.wgsl",
                include_str!("../../../shaders/centroid_sums.wgsl").into(),
                false,
                &[true, true, true, false],
                &["centroid_sums"],
            );
            let pipeline = p.remove(0);
            SumsKernel { layout, pipeline }
        })
    }
}

pub(crate) fn centroid_sums(
    gpu: &Gpu,
    kernel: &SumsKernel,
    max_binding: u64,
    x: ArrayView2<f32>,
    labels: &[u32],
    k: usize,
) -> Result<(Array2<f32>, Vec<u64>)> {
    let (n, d) = x.dim();
    if labels.len() != n {
        return Err(Error::Invalid(format!(
            "centroid_sums: {n} rows but {} labels",
            labels.len()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(Error::Invalid(format!(
            "centroid_sums: label {bad} out of range for {k} centroids"
        )));
    }
    let mut counts = vec![0u64; k];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let mut sums = vec![0f64; k * d];
    if n == 0 || d == 0 {
        return Ok((to_array(sums, k, d), counts));
    }
    let dp4 = d.div_ceil(4);
    let row_bytes = dp4 as u64 * 16;
    // A chunk of r rows has at most min(k, r) + r / SEGMENT_ROWS segments
    // (one output row each): size chunks so that the partial sums fit a
    // binding as well as the rows do.
    let fit = (max_binding / row_bytes) as usize;
    let max_segs = |rows: usize| rows.min(k) + rows / SEGMENT_ROWS;
    let mut chunk_rows = fit.min(n);
    if max_segs(chunk_rows) > fit {
        chunk_rows = fit * SEGMENT_ROWS / (SEGMENT_ROWS + 1);
    }
    if chunk_rows == 0 {
        return Err(Error::Gpu(format!(
            "{d}-dimensional rows do not fit the adapter's {max_binding}-byte storage binding"
        )));
    }
    let out_bytes = (max_segs(chunk_rows) * dp4 * 16) as u64;
    let max_y = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let slots = if n > chunk_rows { 2 } else { 1 };

    gpu.checked("GPU centroid_sums", || -> Result<()> {
        let usage = |u| wgpu::BufferUsages::COPY_DST | u;
        let make = |label, size, u| -> Vec<wgpu::Buffer> {
            (0..slots).map(|_| gpu.buffer(label, size, u)).collect()
        };
        let xs = make(
            "sums rows",
            chunk_rows as u64 * row_bytes,
            usage(wgpu::BufferUsages::STORAGE),
        );
        let params = make("sums params", 16, usage(wgpu::BufferUsages::UNIFORM));
        let outs = make(
            "sums partials",
            out_bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let readbacks = make(
            "sums read-back",
            out_bytes,
            usage(wgpu::BufferUsages::MAP_READ),
        );
        pipelined_chunks(
            n,
            chunk_rows,
            slots,
            |slot, rows| {
                let (perm, segs, seg_label) = segments(&labels[rows.clone()], k);
                upload_rows(
                    gpu,
                    &xs[slot],
                    x.slice(ndarray::s![rows.clone(), ..]),
                    rows.len(),
                    dp4,
                )?;
                let perm_buf = gpu.upload(
                    "sums perm",
                    bytemuck::cast_slice(&perm),
                    wgpu::BufferUsages::STORAGE,
                );
                let seg_buf = gpu.upload(
                    "sums segments",
                    bytemuck::cast_slice(&segs),
                    wgpu::BufferUsages::STORAGE,
                );
                let y = segs.len().clamp(1, max_y);
                let p = Params {
                    dp4: dp4 as u32,
                    seg_count: segs.len() as u32,
                    y_size: y as u32,
                    _pad: 0,
                };
                gpu.queue
                    .write_buffer(&params[slot], 0, bytemuck::bytes_of(&p));
                let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("centroid_sums"),
                    layout: &kernel.layout,
                    entries: &[
                        bind(0, &params[slot]),
                        bind(1, &xs[slot]),
                        bind(2, &perm_buf),
                        bind(3, &seg_buf),
                        bind(4, &outs[slot]),
                    ],
                });
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&kernel.pipeline);
                    pass.set_bind_group(0, &group, &[]);
                    pass.dispatch_workgroups(
                        dp4.div_ceil(64) as u32,
                        y as u32,
                        segs.len().div_ceil(y) as u32,
                    );
                }
                let len = (segs.len() * dp4 * 16) as u64;
                enc.copy_buffer_to_buffer(&outs[slot], 0, &readbacks[slot], 0, len);
                Ok((gpu.queue.submit([enc.finish()]), seg_label))
            },
            |slot, _rows, submission, seg_label| {
                let len = (seg_label.len() * dp4 * 16) as u64;
                if len == 0 {
                    return gpu.wait(submission);
                }
                gpu.read(submission, &readbacks[slot], len, |bytes| {
                    let part: &[f32] = bytemuck::cast_slice(bytes);
                    for (row, &l) in part.chunks_exact(dp4 * 4).zip(&seg_label) {
                        let l = l as usize;
                        for (acc, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(row) {
                            *acc += v as f64;
                        }
                    }
                })
            },
        )
    })??;
    Ok((to_array(sums, k, d), counts))
}

/// Counting sort of `labels` into row order per label, cut into segments of
/// at most `SEGMENT_ROWS`: (permutation, (start, len) per segment, label per
/// segment). Empty labels get no segment.
fn segments(labels: &[u32], k: usize) -> (Vec<u32>, Vec<[u32; 2]>, Vec<u32>) {
    let mut offsets = vec![0usize; k + 1];
    for &l in labels {
        offsets[l as usize + 1] += 1;
    }
    for i in 0..k {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut perm = vec![0u32; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        perm[fill[l as usize]] = i as u32;
        fill[l as usize] += 1;
    }
    let mut segs = Vec::new();
    let mut seg_label = Vec::new();
    for l in 0..k {
        let mut s = offsets[l];
        while s < offsets[l + 1] {
            let e = (s + SEGMENT_ROWS).min(offsets[l + 1]);
            segs.push([s as u32, (e - s) as u32]);
            seg_label.push(l as u32);
            s = e;
        }
    }
    (perm, segs, seg_label)
}

fn to_array(sums: Vec<f64>, k: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_vec((k, d), sums.into_iter().map(|v| v as f32).collect()).expect("k·d sums")
}
