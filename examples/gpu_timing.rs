//! Wall-clock of the GPU kernels (whatever wgpu adapter exists, lavapipe on
//! CI machines) against the CPU backend on the same inputs, as ratios:
//!
//!   NODEVICE_SELECT=1 cargo run --release --example gpu_timing -- [N] [D] [NQ] [REPEATS]
//!
//! Each figure is the median of REPEATS whole calls (upload, dispatches,
//! read-back). Prints one line per operation: cpu seconds, gpu seconds,
//! gpu/cpu.

use std::time::Instant;

use ndarray::{Array2, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::faiss::Index;
use rvc_index::index::{build::build, pq, search::search_index};
use rvc_index::progress::Progress;

fn median(repeats: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..repeats)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn line(what: &str, cpu: f64, gpu: f64) {
    println!(
        "{what:<40} cpu {cpu:>9.4} s  gpu {gpu:>9.4} s  gpu/cpu {:>7.2}",
        gpu / cpu
    );
}

fn main() -> rvc_index::Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let n = a.first().copied().unwrap_or(20_000);
    let d = a.get(1).copied().unwrap_or(256);
    let nq = a.get(2).copied().unwrap_or(500);
    let reps = a.get(3).copied().unwrap_or(3).max(1);
    let cpu = CpuBackend::new();
    let gpu = GpuBackend::new(true)?;
    println!(
        "adapter {} ({}), n {n}, d {d}, queries {nq}, median of {reps}, {} CPU threads",
        gpu.info().name,
        gpu.info().device_type,
        rayon::current_num_threads()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Clustered rows, so that IVF lists are uneven as with real features.
    let centres = Array2::from_shape_fn((50, d), |_| rng.random_range(-1.0f32..1.0));
    let x = Array2::from_shape_fn((n, d), |(i, j)| {
        centres[[i % 50, j]] + 0.3 * rng.random_range(-1.0f32..1.0)
    });
    let q = x.slice(s![..nq, ..]).to_owned() + 0.01;

    // PQ assignment and training (PQ d/4 x4fs: 4-dimensional sub-spaces).
    let m = d / 4;
    let sample = x.slice(s![..n.min(pq::TRAIN_ROWS), ..]);
    let books = pq::train(&cpu, sample, m)?;
    let bv = ndarray::ArrayView2::from_shape((m * 16, 4), &books.centroids).unwrap();
    let c = median(reps, || drop(cpu.pq_assign(x.view(), bv, m, 16).unwrap()));
    let g = median(reps, || drop(gpu.pq_assign(x.view(), bv, m, 16).unwrap()));
    line(&format!("pq_assign {n}x{d} M{m}"), c, g);
    let c = median(reps, || drop(pq::train(&cpu, x.view(), m).unwrap()));
    let g = median(reps, || drop(pq::train(&gpu, x.view(), m).unwrap()));
    line(&format!("pq::train M{m} (4096 rows, 25 it)"), c, g);

    let c = median(reps, || {
        drop(cpu.knn(q.view(), x.view(), 8, Metric::L2).unwrap())
    });
    let g = median(reps, || {
        drop(gpu.knn(q.view(), x.view(), 8, Metric::L2).unwrap())
    });
    line("knn k8 (= Flat search)", c, g);

    let nlist = ((n as f64).sqrt() as usize).max(1);
    for (factory, k_factor) in [
        (format!("IVF{nlist},Flat"), 1.0),
        (format!("IVF{nlist},PQ{m}x4fs"), 1.0),
        (format!("IVF{nlist},PQ{m}x4fs,RFlat"), 4.0),
    ] {
        let mut index = build(
            &cpu,
            x.view(),
            factory.parse()?,
            Metric::L2,
            1,
            &Progress::hidden(),
        )?
        .index;
        if let Index::Refine(r) = &mut index {
            r.k_factor = k_factor;
        }
        for np in [1, 16] {
            let c = median(reps, || {
                drop(search_index(&cpu, &index, q.view(), 8, Some(np)).unwrap())
            });
            let g = median(reps, || {
                drop(search_index(&gpu, &index, q.view(), 8, Some(np)).unwrap())
            });
            line(&format!("search {factory} k8 nprobe{np}"), c, g);
        }
    }
    Ok(())
}
