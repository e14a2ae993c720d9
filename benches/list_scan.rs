//! The list-scan primitives on every backend (`benches/common`):
//! `search_flat_lists`, `search_pq_lists` (tables included) and `refine`
//! over the lists of a built index, with the probes of its coarse search
//! computed once; then the CPU's SIMD tiles alone, per instruction set: an
//! IVF-Flat list scored against a group of queries and a fast-scan PQ list
//! scanned with 8-bit tables, at RVC's dimension (768, PQ384x4fs) and the
//! list sizes of an IVF1024 index over 200k rows. Whole-index search lives
//! in `benches/search.rs`, against faiss in `benches/compare_search.py`.
//!
//! `cargo bench --bench list_scan` (filter with e.g. `-- tiles/`).
//! Throughput: queries for the primitives; list rows scored per query for
//! the tiles, so `Melem/s` reads as million (query, row) pairs per second.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::cpu::pq_scan::{self, PqTop};
use rvc_index::compute::cpu::{CpuBackend, Isa, flat_scan};
use rvc_index::compute::{Backend, FastScan, List, TopK};
use rvc_index::faiss::{Index, fastscan};
use rvc_index::index::factory::{Codec, Factory, Nlist};
use rvc_index::index::{build, pq, search};
use rvc_index::progress::Progress;

/// (label, n, d, nlist, m, nq, nprobe, large)
type Size = (&'static str, usize, usize, usize, usize, usize, usize, bool);
const SIZES: &[Size] = &[
    (
        "small_20000_d64_ivf64_pq32",
        20_000,
        64,
        64,
        32,
        1000,
        4,
        false,
    ),
    (
        "rvc_50000_d768_ivf1282_pq384",
        50_000,
        768,
        1282,
        384,
        1000,
        16,
        true,
    ),
];

fn built(x: ndarray::ArrayView2<f32>, nlist: usize, codec: Codec, nprobe: usize) -> Index {
    let f = Factory::Ivf {
        nlist: Nlist::Fixed(nlist),
        codec,
        refine: false,
    };
    build::build(
        &CpuBackend::new(),
        x,
        f,
        Metric::L2,
        nprobe,
        &Progress::hidden(),
    )
    .unwrap()
    .index
}

fn primitives(cr: &mut Criterion) {
    let bs = common::backends();
    let cpu = CpuBackend::new();
    for &(label, n, d, nlist, m, nq, nprobe, large) in SIZES.iter().filter(|s| common::wanted(s.7))
    {
        let x = common::clustered(n, d, 256, 5);
        let queries = common::clustered(nq, d, 256, 6);
        let flat = built(x.view(), nlist, Codec::Flat, nprobe);
        let fs = built(x.view(), nlist, Codec::Pq4FastScan { m }, nprobe);
        let (Index::IvfFlat(flat), Index::IvfPqFastScan(fs)) = (&flat, &fs) else {
            unreachable!("built as asked")
        };
        let centroids =
            ndarray::ArrayView2::from_shape((nlist, d), &flat.ivf.quantizer.xb).unwrap();
        let probes = search::coarse(&cpu, centroids, queries.view(), nprobe, Metric::L2).unwrap();
        let flat_lists: Vec<List<'_, f32>> = flat
            .lists
            .iter()
            .map(|l| List {
                ids: &l.ids,
                codes: &l.codes,
            })
            .collect();
        let fs_centroids =
            ndarray::ArrayView2::from_shape((nlist, d), &fs.ivf.quantizer.xb).unwrap();
        let fs_probes =
            search::coarse(&cpu, fs_centroids, queries.view(), nprobe, Metric::L2).unwrap();
        let pq_lists: Vec<List<'_, u8>> = fs
            .lists
            .iter()
            .map(|l| List {
                ids: &l.ids,
                codes: &l.codes,
            })
            .collect();
        let books = pq::codebooks(&fs.pq).unwrap();
        let layout = FastScan { m, bbs: fs.bbs };
        let cand = cpu
            .search_pq_lists(
                queries.view(),
                books,
                layout,
                &pq_lists,
                fs_probes.view(),
                32,
                Metric::L2,
            )
            .unwrap()
            .unwrap()
            .ids;
        let mut g = common::group(
            cr,
            &format!("list_scan/{label}_nq{nq}_nprobe{nprobe}"),
            large,
        );
        g.throughput(Throughput::Elements(nq as u64));
        for b in bs.iter().filter(|b| common::runs(b, large, label)) {
            let be = b.backend.as_ref();
            g.bench_function(format!("{}/flat_k8", b.name), |bn| {
                bn.iter(|| {
                    be.search_flat_lists(queries.view(), &flat_lists, probes.view(), 8, Metric::L2)
                        .expect("a kernel")
                        .unwrap()
                })
            });
            g.bench_function(format!("{}/pq_k32", b.name), |bn| {
                bn.iter(|| {
                    be.search_pq_lists(
                        queries.view(),
                        books,
                        layout,
                        &pq_lists,
                        fs_probes.view(),
                        32,
                        Metric::L2,
                    )
                    .expect("a kernel")
                    .unwrap()
                })
            });
            g.bench_function(format!("{}/refine_32_to_8", b.name), |bn| {
                bn.iter(|| {
                    be.refine(queries.view(), x.view(), cand.view(), 8, Metric::L2)
                        .expect("a kernel")
                        .unwrap()
                })
            });
        }
        g.finish();
    }
}

const D: usize = 768;
const M: usize = 384;
/// Rows of one list (200k rows / 1024 lists) and queries probing it
/// (10 000 queries × nprobe 16 / 1024 lists).
const ROWS: usize = 195;
const QUERIES: usize = 156;

fn tiles(c: &mut Criterion) {
    let rows = common::random(ROWS, D, 1).into_raw_vec_and_offset().0;
    let qs = common::random(QUERIES, D, 2);
    let queries: Vec<&[f32]> = qs.as_slice().unwrap().chunks_exact(D).collect();
    let ids: Vec<i64> = (0..ROWS as i64).collect();
    let mut g = c.benchmark_group("tiles/flat");
    g.sample_size(20);
    g.throughput(Throughput::Elements((ROWS * QUERIES) as u64));
    for isa in Isa::available() {
        for metric in [Metric::L2, Metric::InnerProduct] {
            g.bench_function(format!("{}/{metric:?}/k8", isa.name()), |b| {
                let mut tops: Vec<TopK> = (0..QUERIES).map(|_| TopK::new(8)).collect();
                b.iter(|| {
                    tops.iter_mut().for_each(TopK::clear);
                    flat_scan::scan_flat(
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
    let books = common::random(M * 16, D / M, 4);
    let codes: Vec<u8> = (0..ROWS * M).map(|_| rng.random_range(0..16u8)).collect();
    let packed = fastscan::pq4_pack(&codes, M, 32);
    let tables = CpuBackend::new()
        .pq_tables(qs.view(), books.view(), M, Metric::L2)
        .unwrap();
    let luts: Vec<&[u8]> = (0..QUERIES).map(|q| tables.lut(q)).collect();
    let mut g = c.benchmark_group("tiles/fast_scan");
    g.sample_size(20);
    g.throughput(Throughput::Elements((ROWS * QUERIES) as u64));
    for isa in Isa::available() {
        for kb in [8, 64] {
            g.bench_function(format!("{}/k{kb}", isa.name()), |b| {
                let mut tops: Vec<PqTop> = (0..QUERIES).map(|_| PqTop::new(kb)).collect();
                b.iter(|| {
                    tops.iter_mut().for_each(PqTop::clear);
                    pq_scan::scan_pq(isa, false, &luts, M, &packed, ROWS, &ids, &mut tops);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, primitives, tiles);
criterion_main!(benches);
