//! What every per-primitive bench shares: the backends (the CPU backend once
//! per instruction set this processor runs, and the GPU backend when an
//! adapter opens), seeded data and criterion group settings.
//!
//! Realistic sizes run on a GPU adapter only when it is not a software one
//! (lavapipe would take minutes per call), and not at all with
//! `RVC_BENCH_SMALL=1` (a quick check that the benches run: their data
//! and indexes are not even made). Backend calls return host data, so GPU
//! figures include the upload and the read-back.

#![allow(dead_code)]

use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, measurement::WallTime};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::{CpuBackend, Isa};
use rvc_index::compute::gpu::GpuBackend;

/// A backend to time: its label ("cpu-avx512", "gpu"), and whether it is
/// real hardware (not a software GPU adapter).
pub struct Bench {
    pub name: String,
    pub backend: Box<dyn Backend>,
    pub real: bool,
}

/// Every CPU instruction set, then the GPU if an adapter opens.
pub fn backends() -> Vec<Bench> {
    let mut out: Vec<Bench> = Isa::available()
        .into_iter()
        .map(|isa| Bench {
            name: format!("cpu-{}", isa.name()),
            backend: Box::new(CpuBackend::with_isa(isa).expect("available")),
            real: true,
        })
        .collect();
    eprintln!("cpu backend: {} threads", rayon::current_num_threads());
    match GpuBackend::new(true) {
        Ok(g) => {
            let info = g.info();
            eprintln!(
                "gpu backend: {} ({}, {})",
                info.name, info.device_type, info.api
            );
            let real = info.device_type != "Cpu";
            out.push(Bench {
                name: "gpu".into(),
                backend: Box::new(g),
                real,
            });
        }
        Err(e) => eprintln!("skipping gpu: no adapter ({e})"),
    }
    out
}

/// Whether sizes that are `large` (realistic) are measured at all.
pub fn wanted(large: bool) -> bool {
    !large || std::env::var("RVC_BENCH_SMALL").as_deref() != Ok("1")
}

/// Whether `b` runs at a size labelled `label` (`large`: realistic).
pub fn runs(b: &Bench, large: bool, label: &str) -> bool {
    if large && !b.real {
        eprintln!("skipping {} at {label}: software adapter", b.name);
        return false;
    }
    true
}

/// A group of 10 flat samples; realistic sizes measure longer.
pub fn group<'a>(cr: &'a mut Criterion, name: &str, large: bool) -> BenchmarkGroup<'a, WallTime> {
    let mut g = cr.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    if large {
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10));
    } else {
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
    }
    g
}

/// Uniform rows in [-1, 1), seeded.
pub fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// Rows around `centres` random centres, so that lists and codes are uneven
/// as in real features.
pub fn clustered(rows: usize, cols: usize, centres: usize, seed: u64) -> Array2<f32> {
    let c = random(centres, cols, seed ^ 0x5eed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        4.0 * c[[(i * 7919) % centres, j]] + rng.random_range(-1.0f32..1.0)
    })
}
