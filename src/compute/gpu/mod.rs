//! wgpu backend. Kernels live in `shaders/`.

use ndarray::{Array2, ArrayView2};

use super::{Assignment, Backend, BackendInfo};
use crate::{Error, Metric, Result};

pub struct GpuBackend {
    _private: (),
}

impl GpuBackend {
    /// Open a wgpu device. With `allow_software` false, software adapters
    /// (lavapipe, WARP) are refused so that `--device auto` falls back to the
    /// faster CPU backend.
    pub fn new(_allow_software: bool) -> Result<Self> {
        Err(Error::Gpu("GPU backend not built yet".into()))
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        unimplemented!()
    }
    fn assign(&self, _x: ArrayView2<f32>, _c: ArrayView2<f32>, _m: Metric) -> Result<Assignment> {
        unimplemented!()
    }
    fn centroid_sums(
        &self,
        _x: ArrayView2<f32>,
        _l: &[u32],
        _k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        unimplemented!()
    }
}
