//! Choosing a backend: the GPU adapter is described and `--device auto`
//! refuses software adapters; the CPU instruction set is chosen once, by
//! `RVC_INDEX_CPU_ISA`, and a value that cannot be honoured is a one-line
//! error before anything is written.

mod device;

use std::process::Command;

use rvc_index::compute::Backend;
use rvc_index::compute::cpu::{ISA_ENV, Isa};
use rvc_index::compute::gpu::GpuBackend;

#[test]
fn adapter_is_vulkan_and_described() {
    let Some(g) = device::gpu() else { return };
    let info = g.info();
    assert_eq!(info.kind, "gpu");
    assert_eq!(info.api, "Vulkan");
    assert!(!info.name.is_empty());
    assert!(!info.device_type.is_empty());
}

#[test]
fn auto_refuses_software_adapters() {
    if device::gpu().is_none() {
        return;
    }
    match GpuBackend::new(false) {
        Ok(g) => assert_ne!(g.info().device_type, "Cpu", "software adapter accepted"),
        Err(e) => assert!(matches!(e, rvc_index::Error::Gpu(_)), "{e}"),
    }
}

/// `build` of a tiny Flat index on the CPU with `env` set: (success,
/// stderr, whether the index file exists).
fn build_with(env: &[(&str, &str)]) -> (bool, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let x = ndarray::Array2::from_shape_fn((40, 8), |(i, j)| (i * 8 + j) as f32 / 320.0);
    let xp = dir.path().join("x.npy");
    ndarray_npy::write_npy(&xp, &x).unwrap();
    let out = dir.path().join("flat.index");
    let mut c = Command::new(env!("CARGO_BIN_EXE_rvc-index"));
    c.env("NODEVICE_SELECT", "1")
        .env_remove(ISA_ENV)
        .env_remove("RVC_INDEX_CPU_KERNEL")
        .env_remove("RVC_INDEX_SCAN_ISA");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .args([
            "build",
            xp.to_str().unwrap(),
            "--factory",
            "Flat",
            "-o",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "-q",
        ])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        out.exists(),
    )
}

#[test]
fn every_instruction_set_this_cpu_runs_is_accepted() {
    for isa in Isa::available() {
        let (ok, err, written) = build_with(&[(ISA_ENV, isa.name())]);
        assert!(ok && written, "{isa:?}: {err}");
    }
    let (ok, err, _) = build_with(&[(ISA_ENV, "auto")]);
    assert!(ok, "auto: {err}");
}

#[test]
fn an_instruction_set_that_cannot_run_is_one_clear_error() {
    let mut bad = vec!["sse9".to_string(), "AVX2".to_string()];
    bad.extend(
        Isa::ALL
            .iter()
            .filter(|i| !i.is_available())
            .map(|i| i.name().to_string()),
    );
    for value in &bad {
        let (ok, err, written) = build_with(&[(ISA_ENV, value)]);
        assert!(!ok, "{value}: accepted");
        assert!(!written, "{value}: an index was written");
        assert_eq!(err.trim().lines().count(), 1, "{value}: {err}");
        assert!(
            err.contains(ISA_ENV) && err.contains(value.as_str()),
            "{value}: {err}"
        );
    }
}

#[test]
fn retired_variables_are_an_error_naming_the_new_one() {
    for old in ["RVC_INDEX_CPU_KERNEL", "RVC_INDEX_SCAN_ISA"] {
        let (ok, err, written) = build_with(&[(old, "portable")]);
        assert!(!ok && !written, "{old}: accepted");
        assert_eq!(err.trim().lines().count(), 1, "{old}: {err}");
        assert!(err.contains(old) && err.contains(ISA_ENV), "{old}: {err}");
    }
}
