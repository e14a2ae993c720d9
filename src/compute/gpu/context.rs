//! The wgpu device: adapter choice, error scopes, uploads and read-backs.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, mpsc};

use ndarray::ArrayView2;

use crate::{Error, Result};

/// An open device plus what the kernels need to know about it.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The adapter's cooperative-matrix shapes ("16x16x16 f16->f32", …);
    /// empty where it has none.
    pub cooperative_matrix: Vec<String>,
    /// Nanoseconds the timed passes (`PassTimer`) took on the device, summed.
    pub kernel_ns: std::sync::atomic::AtomicU64,
    /// Errors no scope caught (e.g. raised on another thread); reported by
    /// the next `checked` call instead of wgpu's default panic.
    uncaptured: Arc<Mutex<Option<String>>>,
}

/// Software rasterisers also identify themselves by name; the device type is
/// the primary test, the names catch drivers that report `Other`.
fn is_software(info: &wgpu::AdapterInfo) -> bool {
    let name = info.name.to_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || [
            "llvmpipe",
            "lavapipe",
            "softpipe",
            "swiftshader",
            "basic render driver",
        ]
        .iter()
        .any(|s| name.contains(s))
}

/// Lower is better: real GPUs first, software last.
fn rank(info: &wgpu::AdapterInfo) -> u8 {
    if is_software(info) {
        return 4;
    }
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    }
}

impl Gpu {
    pub fn new(allow_software: bool) -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        // Vulkan first: wgpu's GL fallback compiles shaders slowly and lacks
        // features; other backends only when Vulkan offers nothing usable.
        let pick = |backends| {
            let mut adapters: Vec<wgpu::Adapter> =
                pollster::block_on(instance.enumerate_adapters(backends))
                    .into_iter()
                    .filter(|a| allow_software || !is_software(&a.get_info()))
                    .collect();
            adapters.sort_by_key(|a| rank(&a.get_info()));
            adapters.into_iter().next()
        };
        let adapter = pick(wgpu::Backends::VULKAN)
            .or_else(|| pick(wgpu::Backends::all() - wgpu::Backends::VULKAN))
            .ok_or_else(|| {
                Error::Gpu(if allow_software {
                    "no wgpu adapter found (on Linux: install mesa-vulkan-drivers)".into()
                } else {
                    "no hardware GPU adapter found (software adapters need --device gpu)".into()
                })
            })?;
        let info = adapter.get_info();
        let cooperative_matrix = if adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        {
            adapter
                .cooperative_matrix_properties()
                .iter()
                .map(|p| {
                    format!(
                        "{}x{}x{} {:?}->{:?}",
                        p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
                    )
                    .to_lowercase()
                })
                .collect()
        } else {
            Vec::new()
        };
        // The adapter's own limits: wgpu's defaults cap storage bindings far
        // below what the hardware allows.
        let limits = adapter.limits();
        // Subgroups only serve the CPU-adapter assign kernel; ask for them
        // where offered. Cooperative matrices (and f16) only when the
        // cooperative-matrix assign kernel is asked for: wgpu marks them
        // experimental.
        // Timestamps time the kernels on the device (bench's kernel_s).
        let mut features =
            adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY);
        let coop = std::env::var(super::ASSIGN_KERNEL_ENV).is_ok_and(|v| {
            v.trim()
                .eq_ignore_ascii_case(super::AssignVariant::Coop16.name())
        });
        let mut experimental = wgpu::ExperimentalFeatures::disabled();
        let wanted = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
        if coop && adapter.features().contains(wanted) {
            features |= wanted;
            // SAFETY: wgpu's experimental features may have bugs; they are
            // only enabled when RVC_INDEX_ASSIGN_KERNEL=coop16 asks for them,
            // and the kernel's results are checked row by row against an
            // error bound, the uncertain rows re-run in f32.
            experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rvc-index"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("{}: cannot open device: {e}", info.name)))?;
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            cooperative_matrix,
            kernel_ns: Default::default(),
            uncaptured,
        })
    }

    /// Run `f` inside validation and out-of-memory error scopes and turn
    /// whatever they caught into `Error::Gpu`, so that an over-limit buffer or
    /// binding is a clean error rather than a panic.
    pub fn checked<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        let stray = self
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match stray {
            Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
            None => Ok(out),
        }
    }

    /// Largest buffer a kernel may bind as storage.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    pub fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16),
            usage,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data` (at least 16 bytes, zero padded).
    pub fn upload(&self, label: &str, data: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let buf = self.buffer(
            label,
            data.len() as u64,
            usage | wgpu::BufferUsages::COPY_DST,
        );
        if !data.is_empty() {
            self.queue.write_buffer(&buf, 0, data);
        }
        buf
    }

    /// Block until `submission` is done.
    pub fn wait(&self, submission: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
    }

    /// Wait for `submission`, map the first `size` bytes of `buf` (a
    /// MAP_READ buffer it copied into) and hand them to `f`.
    pub fn read<T>(
        &self,
        submission: wgpu::SubmissionIndex,
        buf: &wgpu::Buffer,
        size: u64,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        let slice = buf.slice(..size);
        let (tx, rx) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait(submission)?;
        // The callback has run once the submission is done; poll once more in
        // case the mapping itself needed another turn.
        let mapped = match rx.try_recv() {
            Ok(r) => r,
            Err(_) => {
                self.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
                rx.recv()
                    .map_err(|_| Error::Gpu("read-back was cancelled".into()))?
            }
        };
        mapped.map_err(|e| Error::Gpu(format!("read-back failed: {e}")))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("read-back failed: {e}")))?;
            f(&view)
        };
        buf.unmap();
        Ok(out)
    }

    /// Compile `source` with the layout every kernel here uses: binding 0 a
    /// uniform (with a dynamic offset if `dynamic_uniform`), then one storage
    /// buffer per entry of `read_only`; one pipeline per entry point.
    pub fn kernel(
        &self,
        label: &str,
        source: String,
        dynamic_uniform: bool,
        read_only: &[bool],
        entry_points: &[&str],
    ) -> (wgpu::BindGroupLayout, Vec<wgpu::ComputePipeline>) {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform, dynamic_uniform)];
        entries.extend(
            read_only
                .iter()
                .enumerate()
                .map(|(i, &ro)| entry(i as u32 + 1, storage(ro), false)),
        );
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipelines = entry_points
            .iter()
            .map(|e| self.pipeline(&module, &pl, e))
            .collect();
        (layout, pipelines)
    }

    pub fn pipeline(
        &self,
        module: &wgpu::ShaderModule,
        layout: &wgpu::PipelineLayout,
        entry: &str,
    ) -> wgpu::ComputePipeline {
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(layout),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }
}

/// One bind-group-layout entry visible to compute shaders.
fn entry(binding: u32, ty: wgpu::BufferBindingType, dynamic: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: dynamic,
            min_binding_size: None,
        },
        count: None,
    }
}

/// A whole buffer as binding `binding` of a bind group.
pub(crate) fn bind(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

fn storage(read_only: bool) -> wgpu::BufferBindingType {
    wgpu::BufferBindingType::Storage { read_only }
}

/// Rows of `x`, each padded with zeros to `dp4` vec4s, as the kernels read
/// them: written straight into the queue's staging memory. Rows past the end
/// of `x` up to `padded_rows` are zero.
pub(crate) fn upload_rows(
    gpu: &Gpu,
    dst: &wgpu::Buffer,
    x: ArrayView2<f32>,
    padded_rows: usize,
    dp4: usize,
) -> Result<()> {
    let row_bytes = dp4 * 16;
    let total = (padded_rows * row_bytes) as u64;
    let Some(size) = wgpu::BufferSize::new(total) else {
        return Ok(());
    };
    let mut view = gpu
        .queue
        .write_buffer_with(dst, 0, size)
        .ok_or_else(|| Error::Gpu("cannot stage input rows".into()))?;
    let d = x.ncols();
    match x.as_slice() {
        // Contiguous and already a whole number of vec4s: one copy.
        Some(all) if d * 4 == row_bytes => {
            let bytes: &[u8] = bytemuck::cast_slice(all);
            view.slice(..bytes.len()).copy_from_slice(bytes);
        }
        _ => {
            for (i, row) in x.rows().into_iter().enumerate() {
                let at = i * row_bytes;
                match row.as_slice() {
                    Some(r) => view
                        .slice(at..at + d * 4)
                        .copy_from_slice(bytemuck::cast_slice(r)),
                    None => {
                        let r: Vec<f32> = row.to_vec();
                        view.slice(at..at + d * 4)
                            .copy_from_slice(bytemuck::cast_slice(&r));
                    }
                }
                view.slice(at + d * 4..at + row_bytes).fill(0);
            }
        }
    }
    view.slice(x.nrows() * row_bytes..).fill(0);
    Ok(())
}

/// Runs rows `0..n` through the device `chunk_rows` at a time with up to
/// `slots` chunks in flight: `submit(slot, rows)` uploads and encodes a chunk
/// on the resources of `slot` and returns its submission plus whatever
/// `finish` needs; `finish(slot, rows, submission, extra)` reads it back. With
/// two slots, chunk i + 1 is copied in while chunk i computes.
pub(crate) fn pipelined_chunks<T>(
    n: usize,
    chunk_rows: usize,
    slots: usize,
    mut submit: impl FnMut(usize, Range<usize>) -> Result<(wgpu::SubmissionIndex, T)>,
    mut finish: impl FnMut(usize, Range<usize>, wgpu::SubmissionIndex, T) -> Result<()>,
) -> Result<()> {
    let mut pending = VecDeque::new();
    for (i, start) in (0..n).step_by(chunk_rows.max(1)).enumerate() {
        if pending.len() == slots {
            let (slot, rows, sub, extra) = pending.pop_front().expect("a chunk in flight");
            finish(slot, rows, sub, extra)?;
        }
        let slot = i % slots;
        let rows = start..(start + chunk_rows).min(n);
        let (sub, extra) = submit(slot, rows.clone())?;
        pending.push_back((slot, rows, sub, extra));
    }
    while let Some((slot, rows, sub, extra)) = pending.pop_front() {
        finish(slot, rows, sub, extra)?;
    }
    Ok(())
}

pub(crate) fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An over-limit buffer is a validation error: it must come back as
    /// `Error::Gpu`, not as wgpu's panic. (Needs an adapter; without one
    /// there is nothing to check here, and tests/assign.rs fails.)
    #[test]
    fn validation_errors_are_errors() {
        let Ok(gpu) = Gpu::new(true) else { return };
        let too_big = gpu.limits.max_buffer_size.saturating_add(1 << 20);
        let r = gpu.checked("oversized buffer", || {
            gpu.buffer("too big", too_big, wgpu::BufferUsages::STORAGE)
        });
        assert!(matches!(r, Err(Error::Gpu(_))), "{:?}", r.map(|_| ()));
        // The device stays usable afterwards.
        let ok = gpu.checked("small buffer", || {
            gpu.buffer("small", 64, wgpu::BufferUsages::STORAGE)
        });
        assert!(ok.is_ok());
    }
}
