//! One backend per device choice for the whole process: opening a GPU
//! adapter costs far more than a small search, so it is done once.

use std::sync::{Arc, OnceLock};

use clap::ValueEnum;
use pyo3::PyResult;
use rvc_index::compute::{self, Backend, DeviceChoice};

use crate::errors::value_error;

static BACKENDS: [OnceLock<Arc<dyn Backend>>; 3] =
    [OnceLock::new(), OnceLock::new(), OnceLock::new()];

fn slot(choice: DeviceChoice) -> usize {
    match choice {
        DeviceChoice::Auto => 0,
        DeviceChoice::Gpu => 1,
        DeviceChoice::Cpu => 2,
    }
}

/// The backend of `choice`, opened on first use (a failure is not kept:
/// the next call tries again).
pub fn backend(choice: DeviceChoice) -> rvc_index::Result<Arc<dyn Backend>> {
    let slot = &BACKENDS[slot(choice)];
    if let Some(b) = slot.get() {
        return Ok(b.clone());
    }
    let b: Arc<dyn Backend> = compute::select_backend(choice)?.into();
    Ok(slot.get_or_init(|| b).clone())
}

/// `device="auto" | "gpu" | "cpu"`, as `--device` takes it.
pub fn parse_device(s: &str) -> PyResult<DeviceChoice> {
    DeviceChoice::from_str(s, true).map_err(|_| {
        value_error(format!(
            "device must be \"auto\", \"gpu\" or \"cpu\", got {s:?}"
        ))
    })
}

pub fn device_name(d: DeviceChoice) -> &'static str {
    match d {
        DeviceChoice::Auto => "auto",
        DeviceChoice::Gpu => "gpu",
        DeviceChoice::Cpu => "cpu",
    }
}
