//! Bulk numeric operations behind one trait, so every algorithm runs (and is
//! tested) unchanged on the CPU and on a wgpu device.

pub mod cpu;
pub mod gpu;
pub mod knn;

use ndarray::{Array2, ArrayView2};

use crate::{Metric, Result};

/// Nearest centroid of every row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignment {
    /// Index of the best centroid per row.
    pub labels: Vec<u32>,
    /// Its score: squared L2 distance, or inner product for `Metric::InnerProduct`.
    pub distances: Vec<f32>,
}

/// Nearest sub-centroid of every row in every sub-space (product quantisation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PqAssignment {
    /// `n × m` codes: the best of the `ksub` sub-centroids per row and sub-space.
    pub codes: Array2<u8>,
    /// `n × m` squared L2 distances to those sub-centroids.
    pub distances: Array2<f32>,
}

/// What a backend runs on, for progress lines and `--json` summaries.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendInfo {
    /// "cpu" or "gpu".
    pub kind: String,
    /// CPU features in use, or the wgpu adapter name.
    pub name: String,
    /// wgpu device type ("DiscreteGpu", "Cpu", ...), empty for the CPU backend.
    pub device_type: String,
    /// wgpu graphics API ("Vulkan", "Metal", ...), empty for the CPU backend.
    pub api: String,
}

pub trait Backend: Send + Sync {
    fn info(&self) -> BackendInfo;

    /// For each row of `x` (n×d), the best row of `centroids` (k×d, k ≥ 1).
    /// Ties go to the lowest centroid index. Never materialises an n×k matrix.
    fn assign(
        &self,
        x: ArrayView2<f32>,
        centroids: ArrayView2<f32>,
        metric: Metric,
    ) -> Result<Assignment>;

    /// `assign` for L2 that also returns each row's second-best squared
    /// distance (+∞ when k = 1). k-means uses it to bound how far a row is
    /// from every other centroid and skip rows whose label cannot change.
    /// `None` where a backend does not provide it (k-means then scans all rows).
    fn assign_top2(
        &self,
        _x: ArrayView2<f32>,
        _centroids: ArrayView2<f32>,
    ) -> Option<Result<(Assignment, Vec<f32>)>> {
        None
    }

    /// The native CPU backend itself, for host algorithms that call its
    /// kernels directly (k-means' dimension-pruned assignment); `None` for
    /// every other backend.
    fn as_cpu(&self) -> Option<&cpu::CpuBackend> {
        None
    }

    /// For every row of `x` (n×d) and every sub-space `s < m` (columns
    /// `s·d/m .. (s+1)·d/m`), the nearest of that sub-space's `ksub`
    /// sub-centroids in L2, ties to the lower index. `codebooks` is
    /// `(m·ksub) × (d/m)`: sub-space `s`'s centroids are rows `s·ksub ..`.
    /// `ksub` is at most 256.
    fn pq_assign(
        &self,
        x: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
        ksub: usize,
    ) -> Result<PqAssignment> {
        cpu::pq::pq_assign(x, codebooks, m, ksub)
    }

    /// Codes of every row of `x` under the product quantizer `pq` (`n × M`,
    /// row-major, one code per byte): the nearest sub-centroid per sub-space,
    /// ties to the lower index. The default is the host's SIMD encoder.
    fn pq_encode(
        &self,
        pq: &crate::faiss::ProductQuantizer,
        x: ArrayView2<f32>,
    ) -> Result<Vec<u8>> {
        if x.ncols() != pq.d {
            return Err(crate::Error::Invalid(format!(
                "PQ encoding: rows have {} columns, the quantizer {}",
                x.ncols(),
                pq.d
            )));
        }
        let x = x.as_standard_layout();
        Ok(crate::index::scan::pq_encode(
            pq,
            x.as_slice().expect("standard layout"),
        ))
    }

    /// The `k` best rows of `y` for every row of `x`, best first (ties to the
    /// lower index); id -1 and the worst score where `y` has fewer rows.
    fn knn(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<knn::Neighbours> {
        Ok(knn::knn(x, y, k, metric))
    }

    /// `knn(x, x, k, metric)`: every row's neighbours among the rows of `x`
    /// (itself included). Backends may exploit the symmetry.
    fn knn_self(&self, x: ArrayView2<f32>, k: usize, metric: Metric) -> Result<knn::Neighbours> {
        self.knn(x, x, k, metric)
    }

    /// Search a whole index (coarse search, list scan, refine) on this
    /// backend, or `None` to let `index::search::search_index` run its host
    /// path (which still calls `knn` for the coarse search). `nprobe`
    /// overrides the value stored in the index.
    fn search_index(
        &self,
        _index: &crate::faiss::Index,
        _queries: ArrayView2<f32>,
        _k: usize,
        _nprobe: Option<usize>,
    ) -> Option<Result<knn::Neighbours>> {
        None
    }

    /// α-query-expansion of the rows of `q` (already L2-normalised) from
    /// their neighbours `ids` (rows of `db`, normalised; -1 = none): the
    /// weights are `max(q·db_j, 0)^alpha`, the weighted sum is L2-normalised
    /// (eps 1e-9). See `crate::qe`.
    fn expand(
        &self,
        q: ArrayView2<f32>,
        db: ArrayView2<f32>,
        ids: ArrayView2<i64>,
        alpha: f32,
    ) -> Result<Array2<f32>> {
        Ok(crate::qe::weighted_sum(q, db, ids, alpha))
    }

    /// Per-label sums of the rows of `x` (k×d) and the row count per label.
    /// `labels[i] < k` for every row.
    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)>;
}

/// `--device auto|gpu|cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum DeviceChoice {
    /// A real GPU adapter when one exists, else the CPU backend.
    #[default]
    Auto,
    /// Any wgpu adapter, software ones (lavapipe, WARP) included.
    Gpu,
    /// The native CPU backend.
    Cpu,
}

/// Create the backend the user asked for.
pub fn select_backend(choice: DeviceChoice) -> Result<Box<dyn Backend>> {
    match choice {
        DeviceChoice::Cpu => Ok(Box::new(cpu::CpuBackend::new())),
        DeviceChoice::Gpu => Ok(Box::new(gpu::GpuBackend::new(true)?)),
        DeviceChoice::Auto => match gpu::GpuBackend::new(false) {
            Ok(g) => Ok(Box::new(g)),
            Err(_) => Ok(Box::new(cpu::CpuBackend::new())),
        },
    }
}
