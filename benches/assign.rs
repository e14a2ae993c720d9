//! k-means assignment and centroid sums, on every backend that opens.
//!
//! `cargo bench --bench assign` (about 2 minutes on 2 cores). Throughput of
//! the `assign` groups is in "elements" = FLOPs (2·N·K·D per call), so
//! criterion's `Gelem/s` reads as GFLOP/s. Compare with faiss, measured on
//! the same sizes, with
//! `OPENBLAS_CORETYPE=SkylakeX python3 benches/faiss_assign.py --n 200000 --k 5128 --d 768`.
//!
//! The GPU backend is benchmarked when `GpuBackend::new(true)` succeeds; the
//! RVC size runs on it only when the adapter is not a software one (lavapipe
//! would take minutes per call).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::compute::{Backend, DeviceChoice, select_backend};

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn backends() -> Vec<(String, Box<dyn Backend>, bool)> {
    let mut out = Vec::new();
    let cpu = select_backend(DeviceChoice::Cpu).expect("CPU backend");
    eprintln!("cpu backend: {}", cpu.info().name);
    out.push(("cpu".to_string(), cpu, true));
    match GpuBackend::new(true) {
        Ok(_) => match select_backend(DeviceChoice::Gpu) {
            Ok(g) => {
                let info = g.info();
                eprintln!(
                    "gpu backend: {} ({}, {})",
                    info.name, info.device_type, info.api
                );
                let real = info.device_type != "Cpu";
                out.push(("gpu".to_string(), g, real));
            }
            Err(e) => eprintln!("skipping gpu: {e}"),
        },
        Err(e) => eprintln!("skipping gpu: {e}"),
    }
    out
}

/// (label, n, k, d, large): the RVC size is 200k rows of 768-d features into
/// 5128 lists, 1.58 TFLOP per call.
const SIZES: &[(&str, usize, usize, usize, bool)] = &[
    ("small_20000x1024x256", 20_000, 1024, 256, false),
    ("rvc_200000x5128x768", 200_000, 5128, 768, true),
];

fn bench_assign(cr: &mut Criterion) {
    let backends = backends();
    for &(label, n, k, d, large) in SIZES {
        let x = random(n, d, 1);
        // Centroids drawn from the rows, as k-means initialises them.
        let c = x.slice(s![..k, ..]).to_owned();
        let mut g = cr.benchmark_group(format!("assign/{label}"));
        g.throughput(Throughput::Elements((2 * n * k * d) as u64));
        g.sampling_mode(SamplingMode::Flat);
        if large {
            g.sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(40));
        } else {
            g.sample_size(20).measurement_time(Duration::from_secs(5));
        }
        for (name, b, real) in &backends {
            if large && !real {
                eprintln!("skipping {name} at {label}: software adapter");
                continue;
            }
            for metric in [Metric::L2, Metric::InnerProduct] {
                if large && metric == Metric::InnerProduct {
                    continue; // same GEMM; L2 is what k-means for IVF runs
                }
                g.bench_function(format!("{name}/{metric:?}"), |bch| {
                    bch.iter(|| b.assign(x.view(), c.view(), metric).expect("assign"))
                });
            }
        }
        g.finish();
    }
}

fn bench_centroid_sums(cr: &mut Criterion) {
    let backends = backends();
    let (n, k, d) = (200_000, 5128, 768);
    let x = random(n, d, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    let mut g = cr.benchmark_group("centroid_sums/rvc_200000x768_k5128");
    g.throughput(Throughput::Bytes((n * d * 4) as u64));
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (name, b, _) in &backends {
        g.bench_function(name.as_str(), |bch| {
            bch.iter(|| {
                b.centroid_sums(x.view(), &labels, k)
                    .expect("centroid_sums")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_assign, bench_centroid_sums);
criterion_main!(benches);
