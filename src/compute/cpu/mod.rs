//! Native CPU backend: rayon over row blocks.

pub mod reference;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::{Assignment, Backend, BackendInfo};
use crate::{Metric, Result};

#[derive(Default)]
pub struct CpuBackend {}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend {}
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "cpu".into(),
            name: format!("{} threads", rayon::current_num_threads()),
            device_type: String::new(),
            api: String::new(),
        }
    }

    fn assign(&self, x: ArrayView2<f32>, c: ArrayView2<f32>, metric: Metric) -> Result<Assignment> {
        // Placeholder: parallel reference until the blocked GEMM kernel lands.
        const BLOCK: usize = 256;
        let parts: Vec<Assignment> = (0..x.nrows().div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let lo = b * BLOCK;
                let hi = (lo + BLOCK).min(x.nrows());
                reference::assign(x.slice(ndarray::s![lo..hi, ..]), c, metric)
            })
            .collect();
        let mut out = Assignment::default();
        for p in parts {
            out.labels.extend(p.labels);
            out.distances.extend(p.distances);
        }
        Ok(out)
    }

    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        Ok(reference::centroid_sums(x, labels, k))
    }
}
