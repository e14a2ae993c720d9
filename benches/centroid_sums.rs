//! The `centroid_sums` primitive on every backend (`benches/common`): the
//! k-means update's per-label sums.
//!
//! `cargo bench --bench centroid_sums`. Throughput is in elements = values
//! added (N·D per call).

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// (label, n, k, d, large)
const SIZES: &[(&str, usize, usize, usize, bool)] = &[
    ("small_20000x256x256", 20_000, 256, 256, false),
    ("rvc_200000x5128x768", 200_000, 5128, 768, true),
];

fn bench(cr: &mut Criterion) {
    let bs = common::backends();
    for &(label, n, k, d, large) in SIZES.iter().filter(|s| common::wanted(s.4)) {
        let x = common::random(n, d, 2);
        let labels: Vec<u32> = (0..n).map(|i| ((i * 2654435761) % k) as u32).collect();
        let mut g = common::group(cr, &format!("centroid_sums/{label}"), large);
        g.throughput(Throughput::Elements((n * d) as u64));
        for b in bs.iter().filter(|b| common::runs(b, large, label)) {
            g.bench_function(b.name.as_str(), |bn| {
                bn.iter(|| b.backend.centroid_sums(x.view(), &labels, k).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
