//! Device timestamps around compute passes: how long a kernel ran on the
//! device, transfers excluded.

use super::context::Gpu;

/// Device timestamps at the start and end of a compute pass, where the
/// device has them: `writes` goes into the pass descriptor, `resolve` after
/// the pass copies the two ticks into a read-back buffer, `add` counts the
/// read-back ticks into `Gpu::kernel_ns`.
pub(crate) struct PassTimer {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
}

/// Bytes `PassTimer::resolve` writes.
pub(crate) const TIMER_BYTES: u64 = 16;

impl Gpu {
    pub fn pass_timer(&self) -> Option<PassTimer> {
        if !self
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return None;
        }
        Some(PassTimer {
            set: self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: self.buffer(
                "pass timer ticks",
                TIMER_BYTES,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
        })
    }

    /// Add the pass time in `ticks` (what `PassTimer::resolve` copied).
    pub fn add_ticks(&self, ticks: &[u8]) {
        let t: &[u64] = bytemuck::cast_slice(&ticks[..TIMER_BYTES as usize]);
        let ns = t[1].saturating_sub(t[0]) as f64 * self.queue.get_timestamp_period() as f64;
        self.kernel_ns
            .fetch_add(ns as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PassTimer {
    pub fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// After the pass: the ticks into `dst` at `offset` (a multiple of 8).
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder, dst: &wgpu::Buffer, offset: u64) {
        enc.resolve_query_set(&self.set, 0..2, &self.resolved, 0);
        enc.copy_buffer_to_buffer(&self.resolved, 0, dst, offset, TIMER_BYTES);
    }
}
