//! Host side of `shaders/assign_coop.wgsl`: the assignment with
//! cooperative matrices (f16 products, f32 accumulation), each row's best
//! candidates re-scored in f32 on the device, and the rows whose f16
//! ranking was too close to call re-run with an f32 kernel, so that labels
//! are the f32 path's up to genuine near-ties.
//!
//! Opt-in (`RVC_INDEX_ASSIGN_KERNEL=coop16`): it needs wgpu's experimental
//! cooperative-matrix feature, which is only requested then, and an adapter
//! with 16 × 16 × 16 f16 → f32 matrices, f16 shaders and 32-wide subgroups.

use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{ArrayView2, Axis};

use super::{LOOP_BUDGET, upload_centroids};
use crate::compute::Assignment;
use crate::compute::gpu::context::{Gpu, bind, pipelined_chunks, round_up, upload_rows};
use crate::{Error, Metric, Result};

/// Candidates per row (the shader's CANDS).
const CANDS: usize = 4;
const WG_ROWS: usize = 64;
const BLOCK: usize = 64;
/// Row chunks, as the f32 kernels' (see `CHUNK_BYTES` there).
const CHUNK_BYTES: u64 = 32 << 20;
/// The adapter's cooperative-matrix shape the kernel uses.
pub(crate) const SHAPE: &str = "16x16x16 f16->f32";

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
    last: u32,
    sx: f32,
    sc: f32,
    tol: f32,
    tol0: f32,
}

pub(crate) struct CoopKernel {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
    /// Rows re-run with the f32 kernel so far.
    pub(crate) rerun_rows: AtomicUsize,
}

/// Whether the device was opened with what the kernel needs.
pub(crate) fn supported(gpu: &Gpu) -> bool {
    let f = gpu.device.features();
    f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16)
        && gpu.info.subgroup_min_size == 32
        && gpu.info.subgroup_max_size == 32
        && gpu.cooperative_matrix.iter().any(|s| s == SHAPE)
        && gpu.limits.max_compute_workgroup_storage_size >= 24 * 1024
}

impl CoopKernel {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        gpu.checked("compiling assign_coop.wgsl", || {
            let (layout, mut p) = gpu.kernel(
                "assign_coop.wgsl",
                include_str!("../../../../shaders/assign_coop.wgsl").into(),
                true,
                &[true, true, true, false],
                &["assign_coop"],
            );
            CoopKernel {
                layout,
                pipeline: p.remove(0),
                rerun_rows: AtomicUsize::new(0),
            }
        })
    }
}

/// The power of two that brings `max_abs` to [2^13, 2^14): far from f16's
/// overflow (65504) and 27 binades above its subnormals.
fn scale_for(max_abs: f32) -> f32 {
    if !(max_abs > 0.0 && max_abs.is_finite()) {
        return 1.0;
    }
    let e = max_abs.log2().floor() as i32;
    2f32.powi((13 - e).clamp(-126, 127))
}

/// `assign` with cooperative matrices; `rerun(rows)` assigns the rows whose
/// ranking the f16 products cannot decide with an f32 kernel. `None`: the
/// case is not covered (centroids beyond one binding), use an f32 kernel.
pub(crate) fn assign(
    gpu: &Gpu,
    kernel: &CoopKernel,
    max_binding: u64,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
    rerun: impl FnOnce(ArrayView2<f32>) -> Result<Assignment>,
) -> Option<Result<Assignment>> {
    let (n, d, k) = (x.nrows(), x.ncols(), c.nrows());
    let dp4 = round_up(d.div_ceil(4).max(1), 8);
    let row_bytes = dp4 as u64 * 16;
    let padded_k = round_up(k, BLOCK);
    if padded_k as u64 * row_bytes > max_binding || (padded_k as u64) >= u32::MAX as u64 {
        return None;
    }
    let fit = (max_binding / row_bytes.max(CANDS as u64 * 8)) as usize / WG_ROWS * WG_ROWS;
    let chunk_rows = fit
        .min(gpu.limits.max_compute_workgroups_per_dimension as usize * WG_ROWS)
        .min(round_up(
            ((CHUNK_BYTES / row_bytes) as usize).max(512 * WG_ROWS),
            WG_ROWS,
        ))
        .min(round_up(n, WG_ROWS));
    if chunk_rows == 0 {
        return None;
    }
    Some(run(gpu, kernel, x, c, metric, dp4, chunk_rows, rerun))
}

#[allow(clippy::too_many_arguments)]
fn run(
    gpu: &Gpu,
    kernel: &CoopKernel,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
    metric: Metric,
    dp4: usize,
    chunk_rows: usize,
    rerun: impl FnOnce(ArrayView2<f32>) -> Result<Assignment>,
) -> Result<Assignment> {
    let (n, k) = (x.nrows(), c.nrows());
    let row_bytes = dp4 as u64 * 16;
    let max_abs = |m: ArrayView2<f32>| m.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let (sx, sc) = (scale_for(max_abs(x)), scale_for(max_abs(c)));
    if !(max_abs(x).is_finite() && max_abs(c).is_finite()) {
        return Err(Error::Invalid(
            "assign: the input holds NaN or infinity".into(),
        ));
    }
    let cmax = c
        .rows()
        .into_iter()
        .map(|r| r.dot(&r).sqrt())
        .fold(0f32, f32::max);
    // One f16 rounding of each factor: |x̃c̃ − xc| ≤ (2u + u²)|xc| with
    // u = 2^-11, so a dot product is off by at most 2^-10 ‖x‖‖c‖ (Cauchy–
    // Schwarz), doubled for the f32 sums; subnormal inputs add at most
    // 2^-10 (scaled units) per term.
    let tol = 2f32.powi(-9) * cmax;
    let tol0 = 2.0 * (dp4 * 4) as f32 * 2f32.powi(-10) / (sx * sc);
    let alpha = match metric {
        Metric::L2 => -2.0,
        Metric::InnerProduct => -1.0,
    };
    let per_block = dp4 / 8 * 17 + 64;
    let blocks_per_dispatch = (LOOP_BUDGET / per_block).max(1);

    let mut out = Assignment {
        labels: vec![0; n],
        distances: vec![0.0; n],
    };
    let mut unsure: Vec<usize> = Vec::new();
    gpu.checked("GPU assign (cooperative matrices)", || -> Result<()> {
        let chunks = upload_centroids(gpu, c, metric, round_up(k, BLOCK), BLOCK, dp4)?;
        let ch = &chunks[0];
        let stride = round_up(
            std::mem::size_of::<Params>(),
            gpu.limits.min_uniform_buffer_offset_alignment as usize,
        );
        let blocks = ch.padded / BLOCK;
        let mut params = Vec::new();
        let mut offsets = Vec::new();
        let mut b = 0;
        while b < blocks {
            let e = (b + blocks_per_dispatch).min(blocks);
            let p = Params {
                dp4: dp4 as u32,
                c_begin: (b * BLOCK) as u32,
                c_end: (e * BLOCK) as u32,
                c_base: 0,
                alpha,
                first: (b == 0) as u32,
                init: f32::INFINITY,
                last: (e == blocks) as u32,
                sx,
                sc,
                tol,
                tol0,
            };
            offsets.push(params.len() as u32);
            params.extend_from_slice(bytemuck::bytes_of(&p));
            params.resize(params.len() + stride - std::mem::size_of::<Params>(), 0);
            b = e;
        }
        let params_buf = gpu.upload("coop params", &params, wgpu::BufferUsages::UNIFORM);
        use wgpu::BufferUsages as U;
        let slots = if n > chunk_rows { 2 } else { 1 };
        let cand_bytes = (chunk_rows * CANDS * 8) as u64;
        let xs: Vec<_> = (0..slots)
            .map(|_| {
                gpu.buffer(
                    "coop rows",
                    chunk_rows as u64 * row_bytes,
                    U::STORAGE | U::COPY_DST,
                )
            })
            .collect();
        let cands: Vec<_> = (0..slots)
            .map(|_| gpu.buffer("coop candidates", cand_bytes, U::STORAGE | U::COPY_SRC))
            .collect();
        let rbs: Vec<_> = (0..slots)
            .map(|_| gpu.buffer("coop read-back", cand_bytes, U::MAP_READ | U::COPY_DST))
            .collect();
        let groups: Vec<_> = (0..slots)
            .map(|s| {
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("assign_coop"),
                    layout: &kernel.layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &params_buf,
                                offset: 0,
                                size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
                            }),
                        },
                        bind(1, &xs[s]),
                        bind(2, &ch.cen),
                        bind(3, &ch.bias),
                        bind(4, &cands[s]),
                    ],
                })
            })
            .collect();
        pipelined_chunks(
            n,
            chunk_rows,
            slots,
            |slot, rows| {
                let padded = round_up(rows.len(), WG_ROWS);
                upload_rows(gpu, &xs[slot], x.slice(ndarray::s![rows, ..]), padded, dp4)?;
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&kernel.pipeline);
                    for &off in &offsets {
                        pass.set_bind_group(0, &groups[slot], &[off]);
                        pass.dispatch_workgroups((padded / WG_ROWS) as u32, 1, 1);
                    }
                }
                let bytes = (padded * CANDS * 8) as u64;
                enc.copy_buffer_to_buffer(&cands[slot], 0, &rbs[slot], 0, bytes);
                Ok((gpu.queue.submit([enc.finish()]), ()))
            },
            |slot, rows, submission, ()| {
                let len = (rows.len() * CANDS * 8) as u64;
                gpu.read(submission, &rbs[slot], len, |bytes| {
                    let all: &[[u32; 2]] = bytemuck::cast_slice(bytes);
                    for (i, e) in rows.zip(all.chunks_exact(CANDS)) {
                        if e[1][1] != 0 || e[0][1] as usize >= k {
                            unsure.push(i);
                            continue;
                        }
                        let key = f32::from_bits(e[0][0]);
                        out.labels[i] = e[0][1];
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
        )
    })??;
    if !unsure.is_empty() {
        kernel.rerun_rows.fetch_add(unsure.len(), Ordering::Relaxed);
        let sub = x.select(Axis(0), &unsure);
        let again = rerun(sub.view())?;
        for (j, &i) in unsure.iter().enumerate() {
            out.labels[i] = again.labels[j];
            out.distances[i] = again.distances[j];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::scale_for;

    #[test]
    fn scales_bring_the_largest_value_to_2_13() {
        for v in [1e-30f32, 3e-7, 0.75, 1.0, 5.5, 12345.0, 6e4, 3e30] {
            let s = scale_for(v);
            assert_eq!(s.log2().fract(), 0.0, "{v}: {s} is not a power of two");
            let scaled = v * s;
            assert!((8192.0..16384.0).contains(&scaled), "{v} -> {scaled}");
        }
        assert_eq!(scale_for(0.0), 1.0);
        assert_eq!(scale_for(f32::NAN), 1.0);
    }

    /// The kernel parses, validates with the capabilities it needs and
    /// compiles to SPIR-V, even where no adapter can run it.
    #[test]
    fn kernel_validates_and_compiles_to_spirv() {
        let src = include_str!("../../../../shaders/assign_coop.wgsl");
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        let caps = Capabilities::COOPERATIVE_MATRIX
            | Capabilities::SHADER_FLOAT16
            | Capabilities::SUBGROUP;
        let info = Validator::new(ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
        let opts = naga::back::spv::Options {
            lang_version: (1, 6),
            ..Default::default()
        };
        let words = naga::back::spv::write_vec(&module, &info, &opts, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(words.len() > 100);
    }
}
