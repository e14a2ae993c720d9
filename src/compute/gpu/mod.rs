//! wgpu backend. Kernels live in `shaders/`, one host module per shader,
//! named after it:
//!
//! | primitive | shader | host module |
//! |---|---|---|
//! | `assign` | `assign.wgsl`, `assign_tiled128.wgsl`, `assign_subgroup.wgsl` | `assign/` |
//! | `centroid_sums` | `centroid_sums.wgsl` | `centroid_sums.rs` |
//! | `pq_assign`, `pq_encode` | `pq_assign.wgsl` | `pq_assign.rs` |
//! | `pq_train` | `pq_assign.wgsl`, `pq_train.wgsl` | `pq_train.rs` |
//! | `knn`, `search_flat_lists`, `search_pq_lists`, `refine` | `list_scan.wgsl` | `list_scan/` |
//! | `weighted_sum` | `weighted_sum.wgsl` | `weighted_sum.rs` |
//!
//! `pq_tables` runs on the host (the CPU kernel); where a list-scan kernel
//! does not cover a case its primitive answers `None` and the caller runs
//! the CPU kernel.

mod assign;
mod centroid_sums;
mod context;
mod list_scan;
mod pq_assign;
mod pq_train;
mod timer;
mod weighted_sum;

use ndarray::{Array2, ArrayView2};

pub use assign::{ASSIGN_KERNEL_ENV, AssignVariant};
use context::Gpu;
pub use list_scan::MAX_K as SEARCH_MAX_K;

use super::lists::{FastScan, List};
use super::neighbours::Neighbours;
use super::{Assignment, Backend, BackendInfo, PqAssignment, PqTrained, cpu};
use crate::{Metric, Result};

pub struct GpuBackend {
    gpu: Gpu,
    assign: assign::AssignKernel,
    sums: centroid_sums::SumsKernel,
    weighted_sum: weighted_sum::WeightedSumKernel,
    pq: pq_assign::PqKernel,
    pq_train: pq_train::PqTrainKernel,
    list_scan: list_scan::ListScanKernel,
    resident: list_scan::Resident,
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
        let sums = centroid_sums::SumsKernel::new(&gpu)?;
        let weighted_sum = weighted_sum::WeightedSumKernel::new(&gpu)?;
        let pq = pq_assign::PqKernel::new(&gpu)?;
        let pq_train = pq_train::PqTrainKernel::new(&gpu)?;
        let list_scan = list_scan::ListScanKernel::new(&gpu)?;
        // CPU adapters run invocations as SIMD lanes where every load is a
        // gather: register blocking with subgroup broadcasts pays there,
        // workgroup-memory tiles do not. GPUs get the tiles their register
        // files suit (see `assign::choose`); RVC_INDEX_ASSIGN_KERNEL forces one.
        let available = assign.variants();
        let variant = match assign::from_env(&available)? {
            Some(v) => v,
            None => assign::choose(&gpu.info, &available),
        };
        let max_binding = gpu.max_binding();
        Ok(GpuBackend {
            gpu,
            assign,
            sums,
            weighted_sum,
            pq,
            pq_train,
            list_scan,
            resident: Default::default(),
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

    /// Rows the cooperative-matrix assign kernel re-ran in f32 so far.
    pub fn coop_rerun_rows(&self) -> usize {
        self.assign.coop_rerun_rows()
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

    fn searcher(&self) -> list_scan::Searcher<'_> {
        list_scan::Searcher {
            gpu: &self.gpu,
            kernel: &self.list_scan,
            max_binding: self.max_binding,
            resident: &self.resident,
        }
    }

    /// How many times list-scan inputs (lists, k-NN databases) were
    /// uploaded: searches of what is already resident do not count.
    pub fn list_uploads(&self) -> usize {
        self.resident.uploads()
    }

    /// Forget every resident upload (the next search uploads again).
    pub fn clear_resident(&self) {
        self.resident.clear()
    }

    /// The wgpu adapter's details: name, backend, device type, subgroup sizes.
    pub fn adapter_info(&self) -> wgpu::AdapterInfo {
        self.gpu.info.clone()
    }
}

/// What a report says of the adapter: wgpu's details, the kernel shapes
/// chosen and the limits that decide them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    /// PCI vendor and device ids, hexadecimal.
    pub vendor: String,
    pub device: String,
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    pub subgroup_sizes: [u32; 2],
    /// The assign kernel in use and every one compiled for this adapter.
    pub assign_kernel: AssignVariant,
    pub assign_kernels: Vec<AssignVariant>,
    /// Whether the adapter offers cooperative matrices (wgpu's
    /// `EXPERIMENTAL_COOPERATIVE_MATRIX`) and in which shapes.
    pub cooperative_matrix: Vec<String>,
    pub max_storage_binding_bytes: u64,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    /// Rows the cooperative-matrix kernel has re-run in f32 so far.
    pub coop_rerun_rows: usize,
    /// Seconds the assign kernels have run on the device so far (GPU
    /// timestamps around each pass; none where the adapter has no
    /// timestamp queries).
    pub assign_kernel_seconds: Option<f64>,
}

impl GpuBackend {
    pub fn adapter_report(&self) -> AdapterReport {
        let i = &self.gpu.info;
        AdapterReport {
            name: i.name.clone(),
            vendor: format!("0x{:04x}", i.vendor),
            device: format!("0x{:04x}", i.device),
            device_type: format!("{:?}", i.device_type),
            backend: format!("{:?}", i.backend),
            driver: i.driver.clone(),
            driver_info: i.driver_info.clone(),
            subgroup_sizes: [i.subgroup_min_size, i.subgroup_max_size],
            assign_kernel: self.variant,
            assign_kernels: self.assign.variants(),
            cooperative_matrix: self.gpu.cooperative_matrix.clone(),
            max_storage_binding_bytes: self.gpu.max_binding(),
            max_workgroup_storage_bytes: self.gpu.limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: self.gpu.limits.max_compute_invocations_per_workgroup,
            coop_rerun_rows: self.coop_rerun_rows(),
            assign_kernel_seconds: self
                .gpu
                .device
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY)
                .then(|| {
                    self.gpu
                        .kernel_ns
                        .load(std::sync::atomic::Ordering::Relaxed) as f64
                        * 1e-9
                }),
        }
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

    fn adapter(&self) -> Option<AdapterReport> {
        Some(self.adapter_report())
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
        pq_assign::pq_assign(&self.gpu, &self.pq, self.max_binding, x, codebooks, m, ksub)
    }

    fn pq_train(
        &self,
        x: ArrayView2<f32>,
        init: ArrayView2<f32>,
        m: usize,
        ksub: usize,
        niter: usize,
    ) -> Option<Result<PqTrained>> {
        pq_train::pq_train(
            &self.gpu,
            &self.pq,
            &self.pq_train,
            self.max_binding,
            x,
            init,
            m,
            ksub,
            niter,
        )
    }

    /// Encoding is `pq_assign`'s codes.
    fn pq_encode(
        &self,
        x: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
    ) -> Result<Vec<u8>> {
        let ksub = codebooks.nrows() / m.max(1);
        let codes = self.pq_assign(x, codebooks, m, ksub)?.codes;
        Ok(if codes.is_standard_layout() {
            codes.into_raw_vec_and_offset().0
        } else {
            codes.iter().copied().collect()
        })
    }

    /// The device's k-NN where it covers `k`, else the CPU kernel.
    fn knn(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<Neighbours> {
        list_scan::knn(&self.searcher(), x, y, k, metric)
            .unwrap_or_else(|| cpu::knn_with(cpu::Isa::detected(), x, Some(y), k, metric))
    }

    fn search_flat_lists(
        &self,
        queries: ArrayView2<f32>,
        lists: &[List<'_, f32>],
        probes: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        list_scan::search_flat_lists(&self.searcher(), queries, lists, probes, k, metric)
    }

    fn search_pq_lists(
        &self,
        queries: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        layout: FastScan,
        lists: &[List<'_, u8>],
        probes: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        if !list_scan::pq_covered(layout, k, queries.nrows(), probes.ncols()) {
            return None;
        }
        let tables = match self.pq_tables(queries, codebooks, layout.m, metric) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        list_scan::search_pq_lists(&self.searcher(), &tables, layout, lists, probes, k, metric)
    }

    fn refine(
        &self,
        queries: ArrayView2<f32>,
        vectors: ArrayView2<f32>,
        candidates: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        list_scan::refine(&self.searcher(), queries, vectors, candidates, k, metric)
    }

    /// The device kernel for up to `weighted_sum::MAX_M` neighbours per row,
    /// the CPU kernel beyond.
    fn weighted_sum(
        &self,
        q: ArrayView2<f32>,
        db: ArrayView2<f32>,
        ids: ArrayView2<i64>,
        alpha: f32,
    ) -> Result<Array2<f32>> {
        if ids.ncols() > weighted_sum::MAX_M {
            return cpu::weighted_sum::weighted_sum(q, db, ids, alpha);
        }
        weighted_sum::weighted_sum(
            &self.gpu,
            &self.weighted_sum,
            self.max_binding,
            q,
            db,
            ids,
            alpha,
        )
    }

    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        centroid_sums::centroid_sums(&self.gpu, &self.sums, self.max_binding, x, labels, k)
    }
}
