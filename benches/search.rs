//! The CPU list scans of IVF search, per instruction set this CPU runs
//! (`scan::Isa`): an IVF-Flat list scored against a group of queries, a
//! fast-scan PQ list scanned with 8-bit tables, table building and PQ
//! encoding, at RVC's dimension (768, PQ384x4fs) and list sizes of an
//! IVF1024 index over 200k rows. End-to-end search against faiss lives in
//! `benches/compare_search.py`.
//!
//! `cargo bench --bench search` (filter with e.g. `-- flat/`). Throughput is
//! in list rows scored per query ("elements"), so `Melem/s` reads as
//! million (query, row) pairs per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::knn::TopK;
use rvc_index::faiss::{ProductQuantizer, fastscan};
use rvc_index::index::scan::{self, Isa, PqTop};

const D: usize = 768;
const M: usize = 384;
/// Rows of one list (200k rows / 1024 lists) and queries probing it
/// (10 000 queries × nprobe 16 / 1024 lists).
const ROWS: usize = 195;
const QUERIES: usize = 156;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bench(c: &mut Criterion) {
    let rows = random(ROWS * D, 1);
    let qs = random(QUERIES * D, 2);
    let queries: Vec<&[f32]> = qs.chunks_exact(D).collect();
    let ids: Vec<i64> = (0..ROWS as i64).collect();
    let mut g = c.benchmark_group("flat");
    g.throughput(Throughput::Elements((ROWS * QUERIES) as u64));
    for isa in Isa::available() {
        for metric in [Metric::L2, Metric::InnerProduct] {
            g.bench_function(format!("{}/{metric:?}/k8", isa.name()), |b| {
                let mut tops: Vec<TopK> = (0..QUERIES).map(|_| TopK::new(8)).collect();
                b.iter(|| {
                    tops.iter_mut().for_each(TopK::clear);
                    scan::scan_flat(
                        isa,
                        metric,
                        &queries,
                        D,
                        ROWS,
                        |i| &rows[i * D..(i + 1) * D],
                        |i| ids[i],
                        &mut tops,
                    );
                })
            });
        }
    }
    g.finish();

    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let pq = ProductQuantizer {
        d: D,
        m: M,
        nbits: 4,
        centroids: random(D * 16, 4),
    };
    let codes: Vec<u8> = (0..ROWS * M).map(|_| rng.random_range(0..16u8)).collect();
    let packed = fastscan::pq4_pack(&codes, M, 32);
    let tables = scan::pq_tables(&pq, &qs, Metric::L2);
    let luts: Vec<&[u8]> = (0..QUERIES).map(|q| tables.lut(q)).collect();
    let mut g = c.benchmark_group("pq");
    g.throughput(Throughput::Elements((ROWS * QUERIES) as u64));
    for isa in Isa::available() {
        for kb in [8, 64] {
            g.bench_function(format!("{}/k{kb}", isa.name()), |b| {
                let mut tops: Vec<PqTop> = (0..QUERIES).map(|_| PqTop::new(kb)).collect();
                b.iter(|| {
                    tops.iter_mut().for_each(PqTop::clear);
                    scan::scan_pq(isa, false, &luts, M, &packed, ROWS, &ids, &mut tops);
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("pq_prepare");
    g.throughput(Throughput::Elements(QUERIES as u64));
    g.bench_function("tables", |b| {
        b.iter(|| scan::pq_tables(&pq, &qs, Metric::L2))
    });
    let x = random(4096 * D, 5);
    g.throughput(Throughput::Elements(4096));
    g.bench_function("encode_4096_rows", |b| b.iter(|| scan::pq_encode(&pq, &x)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
