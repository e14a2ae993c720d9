//! Exact k-NN on the CPU backend: the AVX-512 kernel (when this CPU has it)
//! against the portable `gemm`-crate path, and `knn_self` against
//! `knn(x, x)`.
//!
//! `cargo bench --bench knn`. Throughput is in "elements" = FLOPs of the
//! distance GEMM (2·nq·nb·d; for `knn_self` the same count as `knn(x, x)`,
//! so its higher Gelem/s is the saving of computing each pair once).
//! Compare with faiss in one run with `benches/compare_knn.py` (coarse
//! search) and `benches/compare_qe.py` (query expansion).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, s};
use rvc_index::Metric;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::{CpuBackend, Kernel};

fn kernels() -> Vec<CpuBackend> {
    [Kernel::Avx512, Kernel::Portable]
        .into_iter()
        .filter(|k| k.is_available())
        .map(|k| CpuBackend::with_kernel(k).expect("available"))
        .collect()
}

fn data(n: usize, d: usize) -> Array2<f32> {
    rvc_index::synthetic::database(n, d, 0).expect("synthetic rows")
}

/// Coarse search: queries against IVF centroids.
fn bench_coarse(cr: &mut Criterion) {
    let (nq, nb, d) = (10_000, 5128, 768);
    let all = data(nq + nb, d);
    let (q, c) = (all.slice(s![..nq, ..]), all.slice(s![nq.., ..]));
    let mut g = cr.benchmark_group(format!("knn/coarse_{nq}x{nb}x{d}"));
    g.throughput(Throughput::Elements((2 * nq * nb * d) as u64));
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15));
    for b in kernels() {
        for k in [1, 8, 16] {
            g.bench_function(format!("{}/L2/k{k}", b.kernel().name()), |bch| {
                bch.iter(|| b.knn(q, c, k, Metric::L2).expect("knn"))
            });
        }
    }
    g.finish();
}

/// Query expansion's search: every row against all rows, inner product.
fn bench_self(cr: &mut Criterion) {
    let (n, d) = (20_000, 768);
    let x = data(n, d);
    let mut g = cr.benchmark_group(format!("knn/self_{n}x{d}"));
    g.throughput(Throughput::Elements((2 * n * n * d) as u64));
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    for b in kernels() {
        for k in [16, 128] {
            let name = b.kernel().name();
            g.bench_function(format!("{name}/knn_self/k{k}"), |bch| {
                bch.iter(|| b.knn_self(x.view(), k, Metric::InnerProduct).expect("knn"))
            });
            g.bench_function(format!("{name}/knn_xx/k{k}"), |bch| {
                bch.iter(|| {
                    b.knn(x.view(), x.view(), k, Metric::InnerProduct)
                        .expect("knn")
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_coarse, bench_self);
criterion_main!(benches);
