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
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::index::build::build;
use rvc_index::index::search::search_index;
use rvc_index::progress::Progress;

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

/// `pq_assign` (all sub-spaces in one dispatch) and whole-index search, each
/// next to the CPU backend on the same input so the ratio can be read off.
fn pq_and_search(c: &mut Criterion) {
    let Some(g) = backend() else { return };
    let cpu = CpuBackend::new();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut group = c.benchmark_group("gpu_pq_search");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.warm_up_time(Duration::from_secs(1));
    let (n, d, m) = (20_000, 256, 64);
    let x = random(&mut rng, n, d);
    let books = random(&mut rng, m * 16, d / m);
    for (name, b) in [("cpu", &cpu as &dyn Backend), ("gpu", &g as &dyn Backend)] {
        group.bench_function(format!("pq_assign/{name}/n{n}_d{d}_m{m}"), |bch| {
            bch.iter(|| b.pq_assign(x.view(), books.view(), m, 16).unwrap())
        });
    }
    let q = random(&mut rng, 200, d);
    for factory in ["IVF128,Flat", "IVF128,PQ64x4fs", "IVF128,PQ64x4fs,RFlat"] {
        let index = build(
            &cpu,
            x.view(),
            factory.parse().unwrap(),
            Metric::L2,
            1,
            &Progress::hidden(),
        )
        .unwrap()
        .index;
        for np in [1, 16] {
            for (name, b) in [("cpu", &cpu as &dyn Backend), ("gpu", &g as &dyn Backend)] {
                group.bench_function(format!("search/{name}/{factory}/k8_nprobe{np}"), |bch| {
                    bch.iter(|| search_index(b, &index, q.view(), 8, Some(np)).unwrap())
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, assign, centroid_sums, pq_and_search);
criterion_main!(benches);
