//! The `assign` primitive on every backend (`benches/common`): k-means's
//! nearest centroid of every row.
//!
//! `cargo bench --bench assign` (filter with e.g. `-- small`). Throughput is
//! in "elements" = FLOPs (2·N·K·D per call), so criterion's `Gelem/s` reads
//! as GFLOP/s. Compare with faiss on the same sizes with
//! `OPENBLAS_CORETYPE=SkylakeX python3 benches/faiss_assign.py --n 200000 --k 5128 --d 768`.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::s;
use rvc_index::Metric;

/// (label, n, k, d, large): the RVC size is 200k rows of 768-d features into
/// 5128 lists, 1.58 TFLOP per call.
const SIZES: &[(&str, usize, usize, usize, bool)] = &[
    ("small_20000x1024x256", 20_000, 1024, 256, false),
    ("rvc_200000x5128x768", 200_000, 5128, 768, true),
];

fn bench(cr: &mut Criterion) {
    let bs = common::backends();
    for &(label, n, k, d, large) in SIZES.iter().filter(|s| common::wanted(s.4)) {
        let x = common::random(n, d, 1);
        // Centroids drawn from the rows, as k-means initialises them.
        let c = x.slice(s![..k, ..]).to_owned();
        let mut g = common::group(cr, &format!("assign/{label}"), large);
        g.throughput(Throughput::Elements((2 * n * k * d) as u64));
        for b in bs.iter().filter(|b| common::runs(b, large, label)) {
            for metric in [Metric::L2, Metric::InnerProduct] {
                if large && metric == Metric::InnerProduct {
                    continue; // same GEMM; L2 is what k-means for IVF runs
                }
                g.bench_function(format!("{}/{metric:?}", b.name), |bn| {
                    bn.iter(|| b.backend.assign(x.view(), c.view(), metric).unwrap())
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
