//! The `pq_tables` primitive on every backend (`benches/common`; the GPU
//! backend runs the CPU kernel): faiss's 8-bit look-up tables of a batch of
//! queries at RVC's dimension (768, PQ384x4fs).
//!
//! `cargo bench --bench pq_tables`. Throughput is in queries.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rvc_index::Metric;

fn bench(cr: &mut Criterion) {
    let bs = common::backends();
    let (nq, d, m) = (1000, 768, 384);
    let q = common::random(nq, d, 2);
    let books = common::random(m * 16, d / m, 4);
    let mut g = common::group(cr, &format!("pq_tables/{nq}_d{d}_m{m}"), false);
    g.throughput(Throughput::Elements(nq as u64));
    for b in &bs {
        for metric in [Metric::L2, Metric::InnerProduct] {
            g.bench_function(format!("{}/{metric:?}", b.name), |bn| {
                bn.iter(|| {
                    b.backend
                        .pq_tables(q.view(), books.view(), m, metric)
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
