//! The `knn` and `knn_self` primitives on every backend (`benches/common`):
//! the coarse search of IVF (queries against centroids), a database search,
//! and query expansion's self-join (`knn_self` against `knn(x, x)`).
//!
//! `cargo bench --bench knn`. Throughput is in "elements" = FLOPs of the
//! distance GEMM (2·nq·nb·d; for `knn_self` the same count as `knn(x, x)`,
//! so its higher Gelem/s is the saving of computing each pair once).
//! Compare with faiss in one run with `benches/compare_knn.py` (coarse
//! search) and `benches/compare_qe.py` (query expansion).

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, s};
use rvc_index::Metric;

fn data(n: usize, d: usize) -> Array2<f32> {
    rvc_index::synthetic::database(n, d, 0).expect("synthetic rows")
}

fn bench(cr: &mut Criterion) {
    let bs = common::backends();
    // Small: every backend, software adapters included.
    let (nq, nb, d) = (1000, 20_000, 256);
    let q = common::random(nq, d, 7);
    let db = common::random(nb, d, 8);
    let mut g = common::group(cr, &format!("knn/small_{nq}x{nb}x{d}"), false);
    g.throughput(Throughput::Elements((2 * nq * nb * d) as u64));
    for b in &bs {
        g.bench_function(format!("{}/IP/k8", b.name), |bn| {
            bn.iter(|| {
                b.backend
                    .knn(q.view(), db.view(), 8, Metric::InnerProduct)
                    .unwrap()
            })
        });
    }
    g.finish();

    if !common::wanted(true) {
        return;
    }
    // Coarse search at RVC's size: 10 000 queries against 5128 centroids.
    let (nq, nb, d) = (10_000, 5128, 768);
    let all = data(nq + nb, d);
    let (q, c) = (all.slice(s![..nq, ..]), all.slice(s![nq.., ..]));
    let label = format!("coarse_{nq}x{nb}x{d}");
    let mut g = common::group(cr, &format!("knn/{label}"), true);
    g.throughput(Throughput::Elements((2 * nq * nb * d) as u64));
    for b in bs.iter().filter(|b| common::runs(b, true, &label)) {
        for k in [1, 8, 16] {
            g.bench_function(format!("{}/L2/k{k}", b.name), |bn| {
                bn.iter(|| b.backend.knn(q, c, k, Metric::L2).unwrap())
            });
        }
    }
    g.finish();

    // Query expansion's search: every row against all rows, inner product.
    let (n, d) = (20_000, 768);
    let x = data(n, d);
    let label = format!("self_{n}x{d}");
    let mut g = common::group(cr, &format!("knn/{label}"), true);
    g.throughput(Throughput::Elements((2 * n * n * d) as u64));
    for b in bs.iter().filter(|b| common::runs(b, true, &label)) {
        for k in [16, 128] {
            g.bench_function(format!("{}/knn_self/k{k}", b.name), |bn| {
                bn.iter(|| {
                    b.backend
                        .knn_self(x.view(), k, Metric::InnerProduct)
                        .unwrap()
                })
            });
            g.bench_function(format!("{}/knn_xx/k{k}", b.name), |bn| {
                bn.iter(|| {
                    b.backend
                        .knn(x.view(), x.view(), k, Metric::InnerProduct)
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
