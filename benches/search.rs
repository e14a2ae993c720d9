//! Whole-index search (`index::search::search_index`: coarse search, list
//! scan, refine) on every backend (`benches/common`), for each index kind.
//! The primitives alone are in `benches/list_scan.rs` and `benches/knn.rs`;
//! against faiss in one run: `benches/compare_search.py`.
//!
//! `cargo bench --bench search`. Throughput is in queries.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rvc_index::Metric;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::index::build::build;
use rvc_index::index::search::search_index;
use rvc_index::progress::Progress;

/// (label, n, d, nlist, m, nq, large)
const SIZES: &[(&str, usize, usize, usize, usize, usize, bool)] = &[
    ("small_20000_d256", 20_000, 256, 128, 64, 200, false),
    ("rvc_50000_d768", 50_000, 768, 1282, 384, 1000, true),
];

fn bench(cr: &mut Criterion) {
    let bs = common::backends();
    let cpu = CpuBackend::new();
    for &(label, n, d, nlist, m, nq, large) in SIZES.iter().filter(|s| common::wanted(s.6)) {
        let x = common::clustered(n, d, 256, 5);
        let q = common::clustered(nq, d, 256, 6);
        for factory in [
            "Flat".to_string(),
            format!("IVF{nlist},Flat"),
            format!("IVF{nlist},PQ{m}x4fs"),
            format!("IVF{nlist},PQ{m}x4fs,RFlat"),
        ] {
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
            let probes: &[usize] = if factory == "Flat" { &[1] } else { &[1, 16] };
            for &np in probes {
                let mut g = common::group(
                    cr,
                    &format!("search/{label}/{factory}/k8_nprobe{np}"),
                    large,
                );
                g.throughput(Throughput::Elements(nq as u64));
                for b in bs.iter().filter(|b| common::runs(b, large, label)) {
                    g.bench_function(b.name.as_str(), |bn| {
                        bn.iter(|| {
                            search_index(b.backend.as_ref(), &index, q.view(), 8, Some(np)).unwrap()
                        })
                    });
                }
                g.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
