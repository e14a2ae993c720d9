//! The `pq_assign` and `pq_encode` primitives on every backend
//! (`benches/common`), and PQ training, which is M lockstep k-means over
//! `pq_assign`.
//!
//! `cargo bench --bench pq_assign`. Throughput is in "elements" = nominal
//! FLOPs (2 · rows · 16 · d per assignment), so `Gelem/s` reads as GFLOP/s.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::s;
use rvc_index::index::pq;

/// (label, n, d, m, large)
const ENCODE: &[(&str, usize, usize, usize, bool)] = &[
    ("small_20000_d64_m32", 20_000, 64, 32, false),
    ("rvc_200000_d768_m384", 200_000, 768, 384, true),
];

/// (label, d, m, large): faiss trains on at most 4096 rows either way.
const TRAIN: &[(&str, usize, usize, bool)] = &[
    ("small_d64_m32", 64, 32, false),
    ("rvc_d768_m384", 768, 384, true),
];

fn bench(cr: &mut Criterion) {
    let bs = common::backends();
    for &(label, n, d, m, large) in ENCODE.iter().filter(|s| common::wanted(s.4)) {
        let x = common::clustered(n, d, 64, 4);
        let q = pq::train(bs[0].backend.as_ref(), x.slice(s![..pq::TRAIN_ROWS, ..]), m).unwrap();
        let books = pq::codebooks(&q).unwrap();
        let mut g = common::group(cr, &format!("pq_assign/{label}"), large);
        g.throughput(Throughput::Elements((2 * n * pq::KSUB * d) as u64));
        for b in bs.iter().filter(|b| common::runs(b, large, label)) {
            g.bench_function(format!("{}/pq_assign", b.name), |bn| {
                bn.iter(|| b.backend.pq_assign(x.view(), books, m, pq::KSUB).unwrap())
            });
            g.bench_function(format!("{}/pq_encode", b.name), |bn| {
                bn.iter(|| b.backend.pq_encode(x.view(), books, m).unwrap())
            });
        }
        g.finish();
    }
    for &(label, d, m, large) in TRAIN.iter().filter(|s| common::wanted(s.3)) {
        let x = common::clustered(pq::TRAIN_ROWS, d, 64, 3);
        let mut g = common::group(cr, &format!("pq_train/{label}"), large);
        g.throughput(Throughput::Elements(
            (2 * pq::TRAIN_ROWS * pq::KSUB * d * pq::NITER) as u64,
        ));
        for b in bs.iter().filter(|b| common::runs(b, large, label)) {
            g.bench_function(b.name.as_str(), |bn| {
                bn.iter(|| pq::train(b.backend.as_ref(), x.view(), m).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
