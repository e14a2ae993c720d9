//! Compression to K centres (`train::minibatch::fit`, the two-level k-means)
//! on an RVC-shaped mixture, on the CPU backend and, when an adapter exists,
//! the GPU backend.
//! The figures against scikit-learn and faiss at RVC's sizes come from
//! `benches/compare_mbk.py`; this bench tracks the Rust path itself.

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::{DeviceChoice, select_backend};
use rvc_index::train::minibatch::{CompressParams, fit};

/// Rows around 256 centres of unequal weight, with unit noise.
fn mixture(n: usize, d: usize) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<f32> = (0..256 * d).map(|_| rng.random::<f32>() * 8.0).collect();
    Array2::from_shape_fn((n, d), |(i, j)| {
        // Squaring skews the component choice towards low indices.
        let c = ((i.wrapping_mul(2654435761) % 65536) as f64 / 65536.0).powi(2);
        centres[(c * 256.0) as usize * d + j] + rng.random::<f32>() - 0.5
    })
}

fn bench_compress(c: &mut Criterion) {
    let (n, d, k) = (40_000, 64, 400);
    let x = mixture(n, d);
    let mut g = c.benchmark_group(format!("compress_{n}_x_{d}_to_{k}"));
    g.sample_size(10);
    for (name, choice) in [("cpu", DeviceChoice::Cpu), ("gpu", DeviceChoice::Gpu)] {
        let Ok(backend) = select_backend(choice) else {
            eprintln!("{name}: no adapter, skipped");
            continue;
        };
        let p = CompressParams::new(k);
        let r = fit(backend.as_ref(), x.view(), &p, |_| {}).unwrap();
        // GFLOP/s of the distance work (2·D per row–centre distance), for
        // comparison with the backend's own assign bench.
        let flop = 2.0 * r.summary.distance_evaluations as f64 * d as f64;
        eprintln!(
            "{name}: {:.2} passes, {:.3} s, {:.1} GFLOP/s of assignment",
            r.summary.passes,
            r.summary.fit_seconds,
            flop / r.summary.fit_seconds / 1e9
        );
        g.bench_function(name, |b| {
            b.iter(|| fit(backend.as_ref(), x.view(), &p, |_| {}).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_compress);
criterion_main!(benches);
