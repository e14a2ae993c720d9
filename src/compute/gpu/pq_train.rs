//! Host side of `shaders/pq_train.wgsl`: PQ training's iterations in one
//! submission (`pq_assign`, `pq_check`, `pq_update` per iteration), read
//! back once.

use ndarray::{Array2, ArrayView2};

use super::context::{Gpu, bind};
use super::pq_assign::{Params as AssignParams, PqKernel, WG_ROWS, transpose_books};
use crate::compute::{PqSpace, PqTrained};
use crate::{Error, Result};

/// Rows one training may have: the kernels loop over every row.
const MAX_ROWS: usize = 16_384;
const KSUB: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    d: u32,
    dsub: u32,
    m: u32,
    iter: u32,
    _pad: [u32; 3],
}

pub(crate) struct PqTrainKernel {
    layout: wgpu::BindGroupLayout,
    check: wgpu::ComputePipeline,
    update: wgpu::ComputePipeline,
}

impl PqTrainKernel {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        gpu.checked("compiling pq_train.wgsl", || {
            let (layout, mut p) = gpu.kernel(
                "pq_train.wgsl",
                include_str!("../../../shaders/pq_train.wgsl").into(),
                true,
                &[true, true, false, false, false, false, true],
                &["pq_check", "pq_update"],
            );
            let update = p.pop().expect("pq_update");
            let check = p.pop().expect("pq_check");
            PqTrainKernel {
                layout,
                check,
                update,
            }
        })
    }
}

/// `Backend::pq_train` on the device; `None` for what it does not cover
/// (other than 16 centroids, more rows than `MAX_ROWS`, rows that do not fit
/// one binding).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pq_train(
    gpu: &Gpu,
    assign: &PqKernel,
    kernel: &PqTrainKernel,
    max_binding: u64,
    x: ArrayView2<f32>,
    init: ArrayView2<f32>,
    m: usize,
    ksub: usize,
    niter: usize,
) -> Option<Result<PqTrained>> {
    let (n, d) = x.dim();
    if ksub != KSUB || m == 0 || d % m != 0 || init.dim() != (m * KSUB, d / m) {
        return None;
    }
    let dsub = d / m;
    let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let fits = |bytes: usize| bytes as u64 <= max_binding;
    if n == 0
        || n > MAX_ROWS
        || niter == 0
        || !fits(n * d * 4)
        || !fits(n * m * 8)
        || m > max_groups
        || (m * dsub).div_ceil(64) > max_groups
    {
        return None;
    }
    let x = x.as_standard_layout();
    Some(run(gpu, assign, kernel, x.view(), init, m, dsub, niter))
}

#[allow(clippy::too_many_arguments)]
fn run(
    gpu: &Gpu,
    assign: &PqKernel,
    kernel: &PqTrainKernel,
    x: ArrayView2<f32>,
    init: ArrayView2<f32>,
    m: usize,
    dsub: usize,
    niter: usize,
) -> Result<PqTrained> {
    let (n, d) = x.dim();
    use wgpu::BufferUsages as U;
    gpu.checked("GPU PQ training", || -> Result<PqTrained> {
        let xs = x.as_slice().expect("standard layout");
        let xbuf = gpu.upload("pq train rows", bytemuck::cast_slice(xs), U::STORAGE);
        let books = transpose_books(init, m, KSUB, 1);
        let bbuf = gpu.upload(
            "pq train books",
            bytemuck::cast_slice(&books),
            U::STORAGE | U::COPY_SRC,
        );
        let ap = AssignParams {
            n: n as u32,
            d: d as u32,
            dsub: dsub as u32,
            ksub: KSUB as u32,
            blocks: 1,
            m: m as u32,
            _pad: [0; 2],
        };
        let apbuf = gpu.upload(
            "pq train assign params",
            bytemuck::bytes_of(&ap),
            U::UNIFORM,
        );
        let out = gpu.buffer("pq train codes", (n * m * 8) as u64, U::STORAGE);
        let prev = gpu.buffer(
            "pq train labels",
            (n * m * 4) as u64,
            U::STORAGE | U::COPY_SRC,
        );
        // Zeroed at creation: every sub-space starts active.
        let state = gpu.buffer("pq train state", (m * 8) as u64, U::STORAGE | U::COPY_SRC);
        let counts = gpu.buffer("pq train counts", (m * KSUB * 4) as u64, U::STORAGE);
        let inv: Vec<f32> = (0..=n)
            .map(|c| if c == 0 { 0.0 } else { 1.0 / c as f32 })
            .collect();
        let ibuf = gpu.upload("pq train 1/count", bytemuck::cast_slice(&inv), U::STORAGE);

        let stride = super::context::round_up(
            std::mem::size_of::<Params>(),
            gpu.limits.min_uniform_buffer_offset_alignment as usize,
        );
        let mut pbytes = vec![0u8; niter * stride];
        for it in 0..niter {
            let p = Params {
                n: n as u32,
                d: d as u32,
                dsub: dsub as u32,
                m: m as u32,
                iter: it as u32,
                _pad: [0; 3],
            };
            pbytes[it * stride..it * stride + std::mem::size_of::<Params>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
        }
        let pbuf = gpu.upload("pq train params", &pbytes, U::UNIFORM);

        let agroup = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("pq train assign"),
            layout: &assign.layout,
            entries: &[
                bind(0, &apbuf),
                bind(1, &xbuf),
                bind(2, &bbuf),
                bind(3, &out),
            ],
        });
        let tgroup = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("pq train"),
            layout: &kernel.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &pbuf,
                        offset: 0,
                        size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
                    }),
                },
                bind(1, &xbuf),
                bind(2, &out),
                bind(3, &prev),
                bind(4, &state),
                bind(5, &counts),
                bind(6, &bbuf),
                bind(7, &ibuf),
            ],
        });

        let (books_bytes, state_bytes, prev_bytes) =
            ((books.len() * 4) as u64, (m * 8) as u64, (n * m * 4) as u64);
        let rb = gpu.buffer(
            "pq train read-back",
            books_bytes + state_bytes + prev_bytes,
            U::MAP_READ | U::COPY_DST,
        );
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for it in 0..niter {
                pass.set_pipeline(&assign.pipeline);
                pass.set_bind_group(0, &agroup, &[]);
                pass.dispatch_workgroups(n.div_ceil(WG_ROWS) as u32, m as u32, 1);
                let offset = [(it * stride) as u32];
                pass.set_pipeline(&kernel.check);
                pass.set_bind_group(0, &tgroup, &offset);
                pass.dispatch_workgroups(m.div_ceil(64) as u32, 1, 1);
                pass.set_pipeline(&kernel.update);
                pass.set_bind_group(0, &tgroup, &offset);
                pass.dispatch_workgroups((m * dsub).div_ceil(64) as u32, 1, 1);
            }
        }
        enc.copy_buffer_to_buffer(&bbuf, 0, &rb, 0, books_bytes);
        enc.copy_buffer_to_buffer(&state, 0, &rb, books_bytes, state_bytes);
        enc.copy_buffer_to_buffer(&prev, 0, &rb, books_bytes + state_bytes, prev_bytes);
        let sub = gpu.queue.submit([enc.finish()]);
        gpu.read(sub, &rb, books_bytes + state_bytes + prev_bytes, |bytes| {
            let (b, rest) = bytes.split_at(books_bytes as usize);
            let (st, pv) = rest.split_at(state_bytes as usize);
            let b: &[f32] = bytemuck::cast_slice(b);
            let st: &[[u32; 2]] = bytemuck::cast_slice(st);
            let pv: &[u32] = bytemuck::cast_slice(pv);
            let mut codebooks = Array2::<f32>::zeros((m * KSUB, dsub));
            for sq in 0..m {
                for j in 0..dsub {
                    for c in 0..KSUB {
                        codebooks[[sq * KSUB + c, j]] = b[(sq * dsub + j) * KSUB + c];
                    }
                }
            }
            let spaces = st
                .iter()
                .enumerate()
                .map(|(sq, &[s, it])| match s {
                    1 => Ok(PqSpace::Done {
                        iteration: it as usize,
                    }),
                    2 => Ok(PqSpace::Stalled {
                        iteration: it as usize,
                        labels: (0..n).map(|r| pv[r * m + sq] as u8).collect(),
                    }),
                    0 => Ok(PqSpace::Ran),
                    other => Err(Error::Gpu(format!("PQ training: sub-space state {other}"))),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(PqTrained { codebooks, spaces })
        })?
    })?
}
