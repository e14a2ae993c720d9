//! Native CPU backend: rayon over row blocks, SIMD kernels chosen by one
//! instruction-set choice ([`Isa`], `isa.rs`, read once per process).
//!
//! One file per primitive, each the CPU twin of `gpu/<name>.rs`:
//!
//! | primitive | CPU kernels |
//! |---|---|
//! | `assign` | `assign.rs` (AVX-512 microkernel `avx512.rs`, `gemm` tiles `portable.rs`) |
//! | `centroid_sums` | `centroid_sums.rs` |
//! | `knn`, `knn_self` | `avx512_knn.rs` (fused top-k), `portable.rs` |
//! | `pq_assign` | `pq_assign.rs` |
//! | `pq_encode` | `pq_encode.rs` |
//! | `pq_tables` | `pq_tables.rs` |
//! | `search_flat_lists`, `refine` | `list_search.rs` over `flat_scan.rs` |
//! | `search_pq_lists` | `list_search.rs` over `pq_scan.rs` |
//! | `weighted_sum` | `weighted_sum.rs` |
//!
//! `reference` holds the scalar version of every primitive and
//! [`ReferenceBackend`](reference::ReferenceBackend), the backend made of them.

mod assign;
#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_knn;
mod centroid_sums;
mod fixed_sums;
pub mod flat_scan;
pub mod gemm;
pub mod isa;
pub mod list_search;
mod portable;
pub mod pq_assign;
pub mod pq_encode;
pub mod pq_scan;
pub mod pq_tables;
pub mod projection;
pub mod pruned;
#[cfg(target_arch = "x86_64")]
mod pruned_avx512;
pub mod reference;
pub mod weighted_sum;

use std::borrow::Cow;

use ndarray::{Array2, ArrayView2};

pub(crate) use assign::{Scores, norm2, prepared_beta};
pub use assign::{assign_top2_with, assign_with};
pub use centroid_sums::centroid_sums;
pub use isa::{ISA_ENV, Isa};

use super::lists::{FastScan, List, PqTables};
use super::neighbours::Neighbours;
use super::{Assignment, Backend, BackendInfo};
use crate::{Error, Metric, Result};

pub struct CpuBackend {
    isa: Isa,
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new()
    }
}

impl CpuBackend {
    /// The instruction set `RVC_INDEX_CPU_ISA` asks for, else the best this
    /// CPU runs ([`Isa::detected`]).
    pub fn new() -> Self {
        CpuBackend {
            isa: Isa::detected(),
        }
    }

    /// A backend running `isa`; fails if this CPU cannot run it.
    pub fn with_isa(isa: Isa) -> Result<Self> {
        check_isa(isa)?;
        Ok(CpuBackend { isa })
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// An error unless this processor runs `isa`.
fn check_isa(isa: Isa) -> Result<()> {
    if isa.is_available() {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "CPU instruction set {} ({}) on this processor",
            isa.name(),
            isa.describe()
        )))
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "cpu".into(),
            name: format!(
                "{}, {} threads",
                self.isa.name(),
                rayon::current_num_threads()
            ),
            device_type: String::new(),
            api: String::new(),
        }
    }

    fn assign(&self, x: ArrayView2<f32>, c: ArrayView2<f32>, metric: Metric) -> Result<Assignment> {
        assign_with(self.isa, x, c, metric)
    }

    fn assign_top2(
        &self,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
    ) -> Option<Result<(Assignment, Vec<f32>)>> {
        Some(assign_top2_with(self.isa, x, c))
    }

    fn as_cpu(&self) -> Option<&CpuBackend> {
        Some(self)
    }

    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        centroid_sums(x, labels, k)
    }

    fn knn(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<Neighbours> {
        knn_with(self.isa, x, Some(y), k, metric)
    }

    fn knn_self(&self, x: ArrayView2<f32>, k: usize, metric: Metric) -> Result<Neighbours> {
        knn_with(self.isa, x, None, k, metric)
    }

    fn pq_encode(
        &self,
        x: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
    ) -> Result<Vec<u8>> {
        pq_encode::pq_encode(self.isa, x, codebooks, m)
    }

    fn pq_tables(
        &self,
        queries: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
        metric: Metric,
    ) -> Result<PqTables> {
        pq_tables::pq_tables(self.isa, queries, codebooks, m, metric)
    }

    fn search_flat_lists(
        &self,
        queries: ArrayView2<f32>,
        lists: &[List<'_, f32>],
        probes: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        Some(list_search::search_flat_lists(
            self.isa, queries, lists, probes, k, metric, None,
        ))
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
        Some(list_search::search_pq_lists(
            self.isa, queries, codebooks, layout, lists, probes, k, metric, None,
        ))
    }

    fn refine(
        &self,
        queries: ArrayView2<f32>,
        vectors: ArrayView2<f32>,
        candidates: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        Some(list_search::refine(
            self.isa, queries, vectors, candidates, k, metric,
        ))
    }
}

/// [`Backend::knn`] (`y` given) or [`Backend::knn_self`] (`y` = `x`) with an
/// explicit instruction set. [`Isa::Avx512`] fuses the top-k into its GEMM
/// microkernel (`avx512_knn.rs`); the others run `gemm` crate tiles with a
/// running top-k (`portable.rs`).
pub fn knn_with(
    isa: Isa,
    x: ArrayView2<f32>,
    y: Option<ArrayView2<f32>>,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    let (nq, d) = x.dim();
    let yv = y.unwrap_or(x);
    if yv.ncols() != d {
        return Err(Error::Invalid(format!(
            "knn: queries have {d} dimensions but the database rows have {}",
            yv.ncols()
        )));
    }
    let nb = yv.nrows();
    if nb as u64 >= u32::MAX as u64 {
        return Err(Error::Invalid(format!(
            "knn: too many database rows ({nb})"
        )));
    }
    check_isa(isa)?;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if d > 0 && k > 0 && nq > 0 && nb > 0 => {
            let xs = standard(x);
            Ok(match y {
                Some(y) => avx512_knn::knn(&xs, nq, &standard(y), nb, d, k, metric),
                None => avx512_knn::knn_self(&xs, nq, d, k, metric),
            })
        }
        _ => portable::knn(x, yv, k, metric),
    }
}

/// The elements of `a` in row-major order, borrowed when already laid out so.
fn standard<'a>(a: ArrayView2<'a, f32>) -> Cow<'a, [f32]> {
    match a.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}
