//! GPU kernel throughput on whatever wgpu adapter exists (lavapipe in CI):
//! `NODEVICE_SELECT=1 cargo bench --bench gpu_kernels`.
//!
//! Each iteration is one whole backend call: upload, dispatches and the
//! read-back the call waits for, so the clock stops only once the device is
//! done. Assign throughput is reported as elements/s with one element per
//! floating-point operation (2·N·K·D per call), i.e. "Gelem/s" = GFLOP/s.
//! Without any adapter the bench prints why and measures nothing.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::Backend;
use rvc_index::compute::gpu::GpuBackend;

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn backend() -> Option<GpuBackend> {
    match GpuBackend::new(true) {
        Ok(g) => {
            let info = g.info();
            eprintln!(
                "adapter: {} ({}, {}), assign kernel {:?}",
                info.name,
                info.device_type,
                info.api,
                g.assign_variant()
            );
            Some(g)
        }
        Err(e) => {
            eprintln!("gpu_kernels: no adapter, nothing measured: {e}");
            None
        }
    }
}

fn assign(c: &mut Criterion) {
    let Some(g) = backend() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("gpu_assign");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.warm_up_time(Duration::from_secs(1));
    for &(n, k, d) in &[(20_000, 256, 256), (100_000, 1024, 256)] {
        let x = random(&mut rng, n, d);
        let cen = random(&mut rng, k, d);
        group.throughput(Throughput::Elements(2 * (n * k * d) as u64));
        group.bench_function(format!("l2/n{n}_k{k}_d{d}"), |b| {
            b.iter(|| g.assign(x.view(), cen.view(), Metric::L2).unwrap())
        });
    }
    group.finish();
}

fn centroid_sums(c: &mut Criterion) {
    let Some(g) = backend() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut group = c.benchmark_group("gpu_centroid_sums");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.warm_up_time(Duration::from_secs(1));
    let (n, k, d) = (200_000, 5128, 768);
    let x = random(&mut rng, n, d);
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    group.throughput(Throughput::Elements((n * d) as u64));
    group.bench_function(format!("n{n}_k{k}_d{d}"), |b| {
        b.iter(|| g.centroid_sums(x.view(), &labels, k).unwrap())
    });
    group.finish();
}

criterion_group!(benches, assign, centroid_sums);
criterion_main!(benches);
