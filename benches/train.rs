//! End-to-end `train` (load, shuffle, k-means, add, write) on a synthetic
//! RVC-shaped experiment, on the CPU backend and, when an adapter exists,
//! the GPU backend.

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::compute::{DeviceChoice, select_backend};
use rvc_index::io::experiment::Experiment;
use rvc_index::progress::Progress;
use rvc_index::train::rvc::{TrainOptions, train_experiment};

/// Rows around 64 centres with unit noise, cut into files of 180 frames.
fn make_experiment(root: &std::path::Path, n: usize, d: usize) -> Experiment {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<f32> = (0..64 * d).map(|_| rng.random::<f32>() * 8.0).collect();
    let fd = root.join("bench").join("3_feature768");
    std::fs::create_dir_all(&fd).unwrap();
    let mut row = 0;
    let mut file = 0;
    while row < n {
        let t = 180.min(n - row);
        let x = Array2::from_shape_fn((t, d), |(i, j)| {
            centres[((row + i) / 6 % 64) * d + j] + rng.random::<f32>() - 0.5
        });
        ndarray_npy::write_npy(fd.join(format!("0_{file}.npy")), &x).unwrap();
        row += t;
        file += 1;
    }
    Experiment::open(&root.join("bench"), None, None).unwrap()
}

fn bench_train(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let exp = make_experiment(dir.path(), 20_000, 768);
    let mut g = c.benchmark_group("train_20k_x_768");
    g.sample_size(10);
    for (name, choice) in [("cpu", DeviceChoice::Cpu), ("gpu", DeviceChoice::Gpu)] {
        let Ok(backend) = select_backend(choice) else {
            eprintln!("{name}: no adapter, skipped");
            continue;
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                train_experiment(
                    backend.as_ref(),
                    &exp,
                    &TrainOptions::default(),
                    &Progress::hidden(),
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_train);
criterion_main!(benches);
