//! The `weighted_sum` primitive on every backend (`benches/common`): the
//! arithmetic of α-query expansion (similarity, power, weighted sum,
//! normalisation) over 16 neighbours per row.
//!
//! `cargo bench --bench weighted_sum`. Throughput is in elements = nominal
//! FLOPs (4 · n · neighbours · d).

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;

fn bench(cr: &mut Criterion) {
    let bs = common::backends();
    for &(label, n, d, ne, large) in &[
        ("small_4096x256_k16", 4096usize, 256usize, 16usize, false),
        ("rvc_50000x768_k16", 50_000, 768, 16, true),
    ] {
        if !common::wanted(large) {
            continue;
        }
        let mut db = common::random(n, d, 9);
        rvc_index::qe::normalize_rows(&mut db);
        let ids = Array2::from_shape_fn((n, ne), |(i, j)| {
            if j == 0 {
                i as i64
            } else {
                ((i * 31 + j * 7919) % n) as i64
            }
        });
        let mut g = common::group(cr, &format!("weighted_sum/{label}"), large);
        g.throughput(Throughput::Elements((4 * n * ne * d) as u64));
        for b in bs.iter().filter(|b| common::runs(b, large, label)) {
            g.bench_function(b.name.as_str(), |bn| {
                bn.iter(|| {
                    b.backend
                        .weighted_sum(db.view(), db.view(), ids.view(), 3.0)
                        .unwrap()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
