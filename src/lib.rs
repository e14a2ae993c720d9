//! rvc-index: build, search and inspect faiss-compatible IVF indexes for RVC
//! voice models, with WGSL compute kernels (wgpu) and a native CPU backend.

pub mod batch;
pub mod benchmark;
pub mod cli;
pub mod compute;
pub mod error;
pub mod faiss;
pub mod index;
pub mod io;
pub mod limits;
pub mod metric;
pub mod progress;
pub mod qe;
pub mod synthetic;
pub mod testing;
pub mod train;

pub use compute::{Backend, DeviceChoice};
pub use error::{Error, Result};
pub use metric::Metric;
