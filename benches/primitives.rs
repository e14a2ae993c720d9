//! Every primitive of the index pipeline, on every backend that opens, at a
//! small size and at an RVC-realistic one (RVC's K and D with fewer rows, so
//! that one call takes well under a second on a CPU): assignment, centroid
//! update, PQ training, PQ encoding, fast-scan table scan, exact top-k and
//! α-QE expansion.
//!
//! `cargo bench --bench primitives` (a few minutes on 2 cores; filter with
//! e.g. `-- assign/`). Where the work is GEMM-shaped, criterion's
//! throughput is in "elements" = nominal FLOPs, so `Gelem/s` reads as GFLOP/s.
//!
//! The GPU backend runs when `GpuBackend::new(true)` succeeds (otherwise it
//! is skipped with a message); the realistic sizes run on it only when the
//! adapter is not a software one (lavapipe would take minutes per call).
//! Backend calls return host data, so GPU figures include the readback.

use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use ndarray::{Array2, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::compute::{Backend, DeviceChoice, select_backend};
use rvc_index::index::factory::{Codec, Factory, Nlist};
use rvc_index::index::{build, pq, search};
use rvc_index::progress::Progress;

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// Rows around `centres` random centres, so that lists and codes are uneven
/// as in real features.
fn clustered(rows: usize, cols: usize, centres: usize, seed: u64) -> Array2<f32> {
    let c = random(centres, cols, seed ^ 0x5eed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        4.0 * c[[(i * 7919) % centres, j]] + rng.random_range(-1.0f32..1.0)
    })
}

/// (name, backend, is a real device).
fn backends() -> Vec<(String, Box<dyn Backend>, bool)> {
    let mut out = Vec::new();
    let cpu = select_backend(DeviceChoice::Cpu).expect("CPU backend");
    eprintln!("cpu backend: {}", cpu.info().name);
    out.push(("cpu".to_string(), cpu, true));
    match GpuBackend::new(true) {
        Ok(g) => {
            let info = g.info();
            eprintln!(
                "gpu backend: {} ({}, {})",
                info.name, info.device_type, info.api
            );
            let real = info.device_type != "Cpu";
            out.push(("gpu".to_string(), Box::new(g), real));
        }
        Err(e) => eprintln!("skipping gpu: no adapter ({e})"),
    }
    out
}

fn group<'a>(cr: &'a mut Criterion, name: &str, large: bool) -> BenchmarkGroup<'a, WallTime> {
    let mut g = cr.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    if large {
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(4));
    } else {
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
    }
    g
}

/// Skip realistic sizes on software adapters.
fn runs(name: &str, real: bool, large: bool, label: &str) -> bool {
    if large && !real {
        eprintln!("skipping {name} at {label}: software adapter");
        return false;
    }
    true
}

/// (label, n, k, d, large)
const ASSIGN: &[(&str, usize, usize, usize, bool)] = &[
    ("small_20000x256x256", 20_000, 256, 256, false),
    ("rvc_20000x5128x768", 20_000, 5128, 768, true),
];

fn bench_assign(cr: &mut Criterion, bs: &[(String, Box<dyn Backend>, bool)]) {
    for &(label, n, k, d, large) in ASSIGN {
        let x = random(n, d, 1);
        let c = x.slice(s![..k, ..]).to_owned();
        let mut g = group(cr, &format!("assign/{label}"), large);
        g.throughput(Throughput::Elements((2 * n * k * d) as u64));
        for (name, b, real) in bs {
            if runs(name, *real, large, label) {
                g.bench_function(name.as_str(), |bn| {
                    bn.iter(|| b.assign(x.view(), c.view(), Metric::L2).unwrap())
                });
            }
        }
        g.finish();
    }
}

fn bench_centroid_sums(cr: &mut Criterion, bs: &[(String, Box<dyn Backend>, bool)]) {
    for &(label, n, k, d, large) in &[
        (
            "small_20000x256x256",
            20_000usize,
            256usize,
            256usize,
            false,
        ),
        ("rvc_200000x5128x768", 200_000, 5128, 768, true),
    ] {
        let x = random(n, d, 2);
        let labels: Vec<u32> = (0..n).map(|i| ((i * 2654435761) % k) as u32).collect();
        let mut g = group(cr, &format!("centroid_sums/{label}"), large);
        g.throughput(Throughput::Elements((n * d) as u64));
        for (name, b, real) in bs {
            if runs(name, *real, large, label) {
                g.bench_function(name.as_str(), |bn| {
                    bn.iter(|| b.centroid_sums(x.view(), &labels, k).unwrap())
                });
            }
        }
        g.finish();
    }
}

/// (label, d, m, large): faiss trains on at most 4096 rows either way.
const PQ: &[(&str, usize, usize, bool)] = &[
    ("small_d64_m32", 64, 32, false),
    ("rvc_d768_m384", 768, 384, true),
];

fn bench_pq_train(cr: &mut Criterion, bs: &[(String, Box<dyn Backend>, bool)]) {
    for &(label, d, m, large) in PQ {
        let x = clustered(pq::TRAIN_ROWS, d, 64, 3);
        let mut g = group(cr, &format!("pq_train/{label}"), large);
        g.throughput(Throughput::Elements(
            (2 * pq::TRAIN_ROWS * pq::KSUB * d * 25) as u64,
        ));
        for (name, b, real) in bs {
            if runs(name, *real, large, label) {
                g.bench_function(name.as_str(), |bn| {
                    bn.iter(|| pq::train(b.as_ref(), x.view(), m).unwrap())
                });
            }
        }
        g.finish();
    }
}

/// `Backend::pq_encode`: the host's SIMD encoder on the CPU backend, the
/// `pq_assign` kernel on the GPU.
fn bench_pq_encode(cr: &mut Criterion, bs: &[(String, Box<dyn Backend>, bool)]) {
    for &(label, n, d, m, large) in &[
        ("small_20000_d64_m32", 20_000usize, 64usize, 32usize, false),
        ("rvc_200000_d768_m384", 200_000, 768, 384, true),
    ] {
        let x = clustered(n, d, 64, 4);
        let q = pq::train(bs[0].1.as_ref(), x.slice(s![..pq::TRAIN_ROWS, ..]), m).unwrap();
        let mut g = group(cr, &format!("pq_encode/{label}"), large);
        g.throughput(Throughput::Elements((2 * n * pq::KSUB * d) as u64));
        for (name, b, real) in bs {
            if runs(name, *real, large, label) {
                g.bench_function(name.as_str(), |bn| {
                    bn.iter(|| b.pq_encode(&q, x.view()).unwrap())
                });
            }
        }
        g.finish();
    }
}

/// (label, n, d, nlist, m, nq, nprobe, large)
type ScanSize = (&'static str, usize, usize, usize, usize, usize, usize, bool);
const SCAN: &[ScanSize] = &[
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

fn bench_table_scan(cr: &mut Criterion, bs: &[(String, Box<dyn Backend>, bool)]) {
    for &(label, n, d, nlist, m, nq, nprobe, large) in SCAN {
        let x = clustered(n, d, 256, 5);
        let queries = clustered(nq, d, 256, 6);
        let f = Factory::Ivf {
            nlist: Nlist::Fixed(nlist),
            codec: Codec::Pq4FastScan { m },
            refine: false,
        };
        let built = build::build(
            bs[0].1.as_ref(),
            x.view(),
            f,
            Metric::L2,
            nprobe,
            &Progress::hidden(),
        )
        .unwrap();
        let mut g = group(
            cr,
            &format!("table_scan/{label}_nq{nq}_nprobe{nprobe}"),
            large,
        );
        g.throughput(Throughput::Elements(nq as u64));
        for (name, b, real) in bs {
            if runs(name, *real, large, label) {
                g.bench_function(name.as_str(), |bn| {
                    bn.iter(|| {
                        search::search_index(b.as_ref(), &built.index, queries.view(), 8, None)
                            .unwrap()
                    })
                });
            }
        }
        g.finish();
    }
}

fn bench_knn(cr: &mut Criterion, bs: &[(String, Box<dyn Backend>, bool)]) {
    for &(label, nq, nb, d, k, large) in &[
        (
            "small_1000x20000x256_k8",
            1000usize,
            20_000usize,
            256usize,
            8usize,
            false,
        ),
        ("rvc_2000x50000x768_k16", 2000, 50_000, 768, 16, true),
    ] {
        let q = random(nq, d, 7);
        let db = random(nb, d, 8);
        let mut g = group(cr, &format!("knn/{label}"), large);
        g.throughput(Throughput::Elements((2 * nq * nb * d) as u64));
        for (name, b, real) in bs {
            if runs(name, *real, large, label) {
                g.bench_function(name.as_str(), |bn| {
                    bn.iter(|| b.knn(q.view(), db.view(), k, Metric::InnerProduct).unwrap())
                });
            }
        }
        g.finish();
    }
}

fn bench_expand(cr: &mut Criterion, bs: &[(String, Box<dyn Backend>, bool)]) {
    for &(label, n, d, ne, large) in &[
        ("small_4096x256_k16", 4096usize, 256usize, 16usize, false),
        ("rvc_50000x768_k16", 50_000, 768, 16, true),
    ] {
        let mut db = random(n, d, 9);
        rvc_index::qe::normalize_rows(&mut db);
        let ids = Array2::from_shape_fn((n, ne), |(i, j)| {
            if j == 0 {
                i as i64
            } else {
                ((i * 31 + j * 7919) % n) as i64
            }
        });
        let mut g = group(cr, &format!("expand/{label}"), large);
        g.throughput(Throughput::Elements((4 * n * ne * d) as u64));
        for (name, b, real) in bs {
            if runs(name, *real, large, label) {
                g.bench_function(name.as_str(), |bn| {
                    bn.iter(|| b.expand(db.view(), db.view(), ids.view(), 3.0).unwrap())
                });
            }
        }
        g.finish();
    }
}

fn primitives(cr: &mut Criterion) {
    let bs = backends();
    bench_assign(cr, &bs);
    bench_centroid_sums(cr, &bs);
    bench_pq_train(cr, &bs);
    bench_pq_encode(cr, &bs);
    bench_table_scan(cr, &bs);
    bench_knn(cr, &bs);
    bench_expand(cr, &bs);
}

criterion_group!(benches, primitives);
criterion_main!(benches);
