//! wgpu backend. Kernels live in `shaders/`, one host module per shader.

mod assign;
mod context;
mod expand;
mod pq;
mod search;
mod sums;

use ndarray::{Array2, ArrayView2};

pub use assign::AssignVariant;
use context::Gpu;
pub use search::MAX_K as SEARCH_MAX_K;

use super::{Assignment, Backend, BackendInfo, PqAssignment};
use crate::{Metric, Result};

pub struct GpuBackend {
    gpu: Gpu,
    assign: assign::AssignKernel,
    sums: sums::SumsKernel,
    expand: expand::ExpandKernel,
    pq: pq::PqKernel,
    search: search::SearchKernel,
    variant: AssignVariant,
    max_binding: u64,
}

impl GpuBackend {
    /// Open a wgpu device. With `allow_software` false, software adapters
    /// (lavapipe, WARP) are refused so that `--device auto` falls back to the
    /// faster CPU backend.
    pub fn new(allow_software: bool) -> Result<Self> {
        let gpu = Gpu::new(allow_software)?;
        let assign = assign::AssignKernel::new(&gpu)?;
        let sums = sums::SumsKernel::new(&gpu)?;
        let expand = expand::ExpandKernel::new(&gpu)?;
        let pq = pq::PqKernel::new(&gpu)?;
        let search = search::SearchKernel::new(&gpu)?;
        // CPU adapters run invocations as SIMD lanes where every load is a
        // gather: register blocking with subgroup broadcasts pays there,
        // workgroup-memory tiles do not.
        let variant = if gpu.info.device_type == wgpu::DeviceType::Cpu
            && assign.variants().contains(&AssignVariant::Subgroup)
        {
            AssignVariant::Subgroup
        } else {
            AssignVariant::Tiled
        };
        let max_binding = gpu.max_binding();
        Ok(GpuBackend {
            gpu,
            assign,
            sums,
            expand,
            pq,
            search,
            variant,
            max_binding,
        })
    }

    /// Cap every storage binding at `bytes` (never above the adapter's limit),
    /// so that tests can exercise the chunking paths with small inputs.
    pub fn with_max_binding(mut self, bytes: u64) -> Self {
        self.max_binding = bytes.min(self.gpu.max_binding());
        self
    }

    /// The assign kernels this device can run.
    pub fn assign_variants(&self) -> Vec<AssignVariant> {
        self.assign.variants()
    }

    /// The assign kernel in use.
    pub fn assign_variant(&self) -> AssignVariant {
        self.variant
    }

    /// Force one assign kernel (tests run every one the device has).
    pub fn with_assign_variant(mut self, variant: AssignVariant) -> Self {
        self.variant = variant;
        self
    }

    fn searcher(&self) -> search::Searcher<'_> {
        search::Searcher {
            gpu: &self.gpu,
            kernel: &self.search,
            max_binding: self.max_binding,
        }
    }

    /// The wgpu adapter's details: name, backend, device type, subgroup sizes.
    pub fn adapter_info(&self) -> wgpu::AdapterInfo {
        self.gpu.info.clone()
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "gpu".into(),
            name: self.gpu.info.name.clone(),
            device_type: format!("{:?}", self.gpu.info.device_type),
            api: format!("{:?}", self.gpu.info.backend),
        }
    }

    fn assign(&self, x: ArrayView2<f32>, c: ArrayView2<f32>, m: Metric) -> Result<Assignment> {
        assign::assign(
            &self.gpu,
            &self.assign,
            self.variant,
            self.max_binding,
            x,
            c,
            m,
        )
    }

    fn pq_assign(
        &self,
        x: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
        ksub: usize,
    ) -> Result<PqAssignment> {
        pq::pq_assign(&self.gpu, &self.pq, self.max_binding, x, codebooks, m, ksub)
    }

    /// Encoding is `pq_assign` against the quantizer's codebooks.
    fn pq_encode(
        &self,
        pq: &crate::faiss::ProductQuantizer,
        x: ArrayView2<f32>,
    ) -> Result<Vec<u8>> {
        let books = ArrayView2::from_shape((pq.m * pq.ksub(), pq.dsub()), &pq.centroids)
            .map_err(|e| crate::Error::Invalid(format!("PQ codebooks: {e}")))?;
        let codes = self.pq_assign(x, books, pq.m, pq.ksub())?.codes;
        Ok(if codes.is_standard_layout() {
            codes.into_raw_vec_and_offset().0
        } else {
            codes.iter().copied().collect()
        })
    }

    fn knn(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<super::knn::Neighbours> {
        let s = self.searcher();
        search::knn(&s, x, y, k, metric).unwrap_or_else(|| Ok(super::knn::knn(x, y, k, metric)))
    }

    fn search_index(
        &self,
        index: &crate::faiss::Index,
        queries: ArrayView2<f32>,
        k: usize,
        nprobe: Option<usize>,
    ) -> Option<Result<super::knn::Neighbours>> {
        search::search_index(&self.searcher(), index, queries, k, nprobe)
    }

    fn expand(
        &self,
        q: ArrayView2<f32>,
        db: ArrayView2<f32>,
        ids: ArrayView2<i64>,
        alpha: f32,
    ) -> Result<Array2<f32>> {
        if ids.ncols() > expand::MAX_M {
            return Ok(crate::qe::weighted_sum(q, db, ids, alpha));
        }
        expand::expand(&self.gpu, &self.expand, self.max_binding, q, db, ids, alpha)
    }

    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        sums::centroid_sums(&self.gpu, &self.sums, self.max_binding, x, labels, k)
    }
}
