//! `test_device!`: one test body per primitive, run on every backend — the
//! CPU backend with each instruction set this processor runs, the scalar
//! reference backend, and the GPU backend on whatever wgpu adapter exists
//! (lavapipe in CI). No adapter at all is a failure, unless
//! RVC_INDEX_SKIP_GPU_TESTS=1.
//!
//! ```ignore
//! #[macro_use]
//! mod device;
//!
//! fn sums_match(b: &dyn Backend, what: &str) {
//!     let (s, c) = b.centroid_sums(x.view(), &labels, k).unwrap();
//!     // ... assertions, messages tagged with `what`
//! }
//! test_device!(sums_match);
//! ```
//! adds a module `sums_match` with the tests `cpu`, `reference` and `gpu`,
//! each calling the body with a backend and `what` naming it.

#![allow(dead_code)]

use rvc_index::compute::Backend;
use rvc_index::compute::cpu::reference::ReferenceBackend;
use rvc_index::compute::cpu::{CpuBackend, Isa};
use rvc_index::compute::gpu::GpuBackend;

/// The GPU backend with software adapters allowed; `None` (skip) only when
/// no adapter exists and RVC_INDEX_SKIP_GPU_TESTS=1. Adapters must be Vulkan
/// (what CI installs: Mesa's lavapipe).
pub fn gpu() -> Option<GpuBackend> {
    match GpuBackend::new(true) {
        Ok(g) => {
            assert_eq!(
                g.adapter_info().backend,
                wgpu::Backend::Vulkan,
                "expected a Vulkan adapter (is mesa-vulkan-drivers installed?), got {:?}",
                g.info()
            );
            Some(g)
        }
        Err(e) if std::env::var("RVC_INDEX_SKIP_GPU_TESTS").as_deref() == Ok("1") => {
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("no GPU adapter ({e}); set RVC_INDEX_SKIP_GPU_TESTS=1 to skip"),
    }
}

/// The CPU backend once per instruction set this processor runs.
pub fn cpus() -> Vec<(String, CpuBackend)> {
    Isa::available()
        .into_iter()
        .map(|isa| {
            (
                format!("cpu {}", isa.name()),
                CpuBackend::with_isa(isa).expect("available"),
            )
        })
        .collect()
}

/// Run `body` on every CPU instruction set.
pub fn on_cpus(body: impl Fn(&dyn Backend, &str)) {
    for (what, b) in cpus() {
        body(&b, &what);
    }
}

/// Run `body` on the scalar reference backend.
pub fn on_reference(body: impl Fn(&dyn Backend, &str)) {
    body(&ReferenceBackend, "reference");
}

/// Run `body` on the GPU backend (see [`gpu`]).
pub fn on_gpu(body: impl Fn(&dyn Backend, &str)) {
    if let Some(g) = gpu() {
        let what = format!("gpu {}", g.adapter_info().name);
        body(&g, &what);
    }
}

/// Whether `b` is the GPU backend (for the tolerances that differ).
pub fn is_gpu(b: &dyn Backend) -> bool {
    b.info().kind == "gpu"
}

#[allow(unused_macros)]
macro_rules! test_device {
    ($body:ident) => {
        mod $body {
            #[test]
            fn cpu() {
                $crate::device::on_cpus(super::$body);
            }

            #[test]
            fn reference() {
                $crate::device::on_reference(super::$body);
            }

            #[test]
            fn gpu() {
                $crate::device::on_gpu(super::$body);
            }
        }
    };
}
