//! Bulk numeric operations behind one trait, so every algorithm runs (and is
//! tested) unchanged on the CPU and on a wgpu device.
//!
//! This module is a leaf: it knows matrices, metrics and kernels, nothing of
//! index files, index kinds or query expansion. Each primitive of
//! [`Backend`] has one room: its WGSL kernel (`shaders/<name>.wgsl`), its
//! host module (`gpu/<name>.rs`), its CPU kernels (`cpu/<name>.rs`), its
//! scalar reference (`cpu::reference`) and its test (`tests/<name>.rs`).

pub mod cpu;
pub mod gpu;
pub mod lists;
pub mod neighbours;

use ndarray::{Array2, ArrayView2};

pub use lists::{FastScan, KSUB, List, PqTables};
pub use neighbours::{Neighbours, TopK};

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

/// Where a backend's PQ training (`Backend::pq_train`) left one sub-space.
#[derive(Clone, Debug, PartialEq)]
pub enum PqSpace {
    /// Its labels did not change at this iteration: its centroids are final.
    Done { iteration: usize },
    /// Still changing after the last iteration.
    Ran,
    /// At this iteration its labels (`n` codes) leave a centroid empty; the
    /// centroids are those the labels were computed with, and the caller
    /// makes the update (with its split) and goes on.
    Stalled { iteration: usize, labels: Vec<u8> },
}

/// What `Backend::pq_train` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct PqTrained {
    /// `(m·ksub) × dsub`, as the codebooks `pq_assign` takes.
    pub codebooks: Array2<f32>,
    pub spaces: Vec<PqSpace>,
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

/// The primitives every algorithm is written against. A backend implements
/// `info`, `assign` and `centroid_sums`; every other primitive has the CPU
/// kernel as its default. The list-scan primitives (`search_flat_lists`,
/// `search_pq_lists`, `refine`) answer `None` where a backend has no kernel
/// for the case (the default): the caller then runs the CPU kernel of
/// [`cpu`] for that stage.
pub trait Backend: Send + Sync {
    fn info(&self) -> BackendInfo;

    /// The device's details for reports (driver, kernel shapes, limits):
    /// `None` for backends without a device (the default).
    fn adapter(&self) -> Option<gpu::AdapterReport> {
        None
    }

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

    /// Per-label sums of the rows of `x` (k×d) and the row count per label.
    /// `labels[i] < k` for every row.
    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)>;

    /// The `k` best rows of `y` for every row of `x`, best first (ties to the
    /// lower index); id -1 and the worst score where `y` has fewer rows.
    fn knn(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<Neighbours> {
        cpu::knn_with(cpu::Isa::detected(), x, Some(y), k, metric)
    }

    /// `knn(x, x, k, metric)`: every row's neighbours among the rows of `x`
    /// (itself included). Backends may exploit the symmetry.
    fn knn_self(&self, x: ArrayView2<f32>, k: usize, metric: Metric) -> Result<Neighbours> {
        self.knn(x, x, k, metric)
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
        cpu::pq_assign::pq_assign(x, codebooks, m, ksub)
    }

    /// PQ training's lockstep k-means (`index::pq`) where the data are:
    /// from the codebooks `init` (`(m·ksub) × dsub`), up to `niter`
    /// iterations of `pq_assign` of every row, then per sub-space: done if
    /// its labels equal the previous iteration's, stalled if they leave a
    /// centroid empty, else its centroids become the row-order f32 means of
    /// its rows. Results equal that loop run on the host with this
    /// backend's `pq_assign`. `None` where there is no such kernel (the
    /// default) or it does not cover the case: the caller runs the loop.
    fn pq_train(
        &self,
        _x: ArrayView2<f32>,
        _init: ArrayView2<f32>,
        _m: usize,
        _ksub: usize,
        _niter: usize,
    ) -> Option<Result<PqTrained>> {
        None
    }

    /// The codes of `pq_assign` alone (`n × m`, row-major, one code per
    /// byte), `ksub = codebooks.nrows() / m`. The default is the CPU's SIMD
    /// encoder.
    fn pq_encode(
        &self,
        x: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
    ) -> Result<Vec<u8>> {
        cpu::pq_encode::pq_encode(cpu::Isa::detected(), x, codebooks, m)
    }

    /// The quantised look-up tables of every row of `queries` against 4-bit
    /// `codebooks` (`(m·16) × (d/m)`), see [`PqTables`]: scores are squared
    /// L2 distances, or inner products for `Metric::InnerProduct`.
    fn pq_tables(
        &self,
        queries: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
        metric: Metric,
    ) -> Result<PqTables> {
        cpu::pq_tables::pq_tables(cpu::Isa::detected(), queries, codebooks, m, metric)
    }

    /// Exact search of flat inverted lists (`lists[l].codes`: `len × d`
    /// floats): query `q` scans the lists `probes[q]` (-1 = none), best `k`
    /// kept, distances summed directly as faiss's IVF-Flat scanner does,
    /// ties to the list scanned first and within a list to the earlier
    /// entry (the GPU orders exact ties by id). `None`: no kernel here for
    /// this case.
    fn search_flat_lists(
        &self,
        _queries: ArrayView2<f32>,
        _lists: &[List<'_, f32>],
        _probes: ArrayView2<i64>,
        _k: usize,
        _metric: Metric,
    ) -> Option<Result<Neighbours>> {
        None
    }

    /// Search of 4-bit fast-scan lists (`layout`) with faiss's 8-bit
    /// quantised tables of the queries against `codebooks` (built with
    /// `pq_tables`): 16-bit table sums, equal sums by id (lower first for
    /// L2, higher first for inner product), distance `b + sum / a`.
    /// `None`: no kernel here for this case.
    #[allow(clippy::too_many_arguments)]
    fn search_pq_lists(
        &self,
        _queries: ArrayView2<f32>,
        _codebooks: ArrayView2<f32>,
        _layout: FastScan,
        _lists: &[List<'_, u8>],
        _probes: ArrayView2<i64>,
        _k: usize,
        _metric: Metric,
    ) -> Option<Result<Neighbours>> {
        None
    }

    /// Exact re-ranking: for every query its `candidates` (rows of `vectors`,
    /// -1 = none) scored exactly, best `k` kept, ties to the earlier
    /// candidate. `None`: no kernel here for this case.
    ///
    /// Every list-scan primitive checks its input first (probes that name
    /// no list, codes shorter than their ids, candidates that name no
    /// vector are errors, never panics).
    fn refine(
        &self,
        _queries: ArrayView2<f32>,
        _vectors: ArrayView2<f32>,
        _candidates: ArrayView2<i64>,
        _k: usize,
        _metric: Metric,
    ) -> Option<Result<Neighbours>> {
        None
    }

    /// Per row `i` of `q`: the L2-normalised (eps 1e-9) sum of the rows
    /// `ids[i]` of `db` (-1 = none), row `j` weighted by
    /// `max(q_i · db_j, 0)^alpha`.
    fn weighted_sum(
        &self,
        q: ArrayView2<f32>,
        db: ArrayView2<f32>,
        ids: ArrayView2<i64>,
        alpha: f32,
    ) -> Result<Array2<f32>> {
        cpu::weighted_sum::weighted_sum(q, db, ids, alpha)
    }
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
/// A forced CPU instruction set that is unknown or unavailable is an error
/// here, whatever the device (GPU backends run CPU kernels for the cases
/// their kernels do not cover).
pub fn select_backend(choice: DeviceChoice) -> Result<Box<dyn Backend>> {
    cpu::Isa::from_env()?;
    match choice {
        DeviceChoice::Cpu => Ok(Box::new(cpu::CpuBackend::new())),
        DeviceChoice::Gpu => Ok(Box::new(gpu::GpuBackend::new(true)?)),
        DeviceChoice::Auto => match gpu::GpuBackend::new(false) {
            Ok(g) => Ok(Box::new(g)),
            Err(_) => Ok(Box::new(cpu::CpuBackend::new())),
        },
    }
}

/// Fewest centroids for which [`assign_l2`] tries the pruned kernel: below
/// that a brute-force scan is cheap and pruning's fixed costs do not pay.
const PRUNE_MIN_K: usize = 512;

/// Exact L2 assignment of `x` to `centroids` for callers outside k-means
/// (compression, the add pass, inertia): on the CPU backend through the
/// dimension-pruned kernel (`cpu::pruned`) where it pays, else
/// [`Backend::assign`]. Labels equal a full scan's except where two
/// centroids are within f32 rounding of each other; distances are exact f32
/// squared distances (summed in another order than the GEMM form, so they
/// may differ from `assign`'s in the last bits).
pub fn assign_l2(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    centroids: ArrayView2<f32>,
) -> Result<Assignment> {
    if let Some(cpu) = backend.as_cpu()
        && centroids.nrows() >= PRUNE_MIN_K
        && centroids.ncols() == x.ncols()
        && x.nrows() >= 1024
        && let Some(t) = cpu::pruned::assign_top2(cpu.isa(), x, centroids)
    {
        return Ok(Assignment {
            labels: t.labels,
            distances: t.distances,
        });
    }
    backend.assign(x, centroids, Metric::L2)
}
