//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The rvc-index binary built for these tests.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rvc-index"));
    c.env("NODEVICE_SELECT", "1");
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run rvc-index")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard normal samples (Box–Muller), seeded.
pub fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` rows around `centres` well-separated centres (spread 10, noise 1).
pub fn mixture(n: usize, d: usize, centres: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c: Vec<f32> = (0..centres * d).map(|_| 10.0 * normal(&mut rng)).collect();
    Array2::from_shape_fn((n, d), |(i, j)| c[(i % centres) * d + j] + normal(&mut rng))
}

/// An RVC experiment folder `root/<name>/3_feature768` (or 256) holding
/// `x` cut into files of `rows_per_file` rows named `0_<i>.npy`.
pub fn make_experiment(root: &Path, name: &str, x: &Array2<f32>, rows_per_file: usize) -> PathBuf {
    let folder = if x.ncols() == 256 {
        "3_feature256"
    } else {
        "3_feature768"
    };
    let exp = root.join(name);
    let fd = exp.join(folder);
    std::fs::create_dir_all(&fd).unwrap();
    for (i, chunk) in x
        .axis_chunks_iter(ndarray::Axis(0), rows_per_file)
        .enumerate()
    {
        ndarray_npy::write_npy(fd.join(format!("0_{i}.npy")), &chunk.to_owned()).unwrap();
    }
    exp
}

/// Run a Python snippet with real faiss; `args` land in `sys.argv[1:]`.
/// Without faiss the test fails, unless RVC_INDEX_SKIP_FAISS_TESTS=1.
pub fn python(script: &str, args: &[&str]) -> Option<String> {
    if std::env::var("RVC_INDEX_SKIP_FAISS_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping: RVC_INDEX_SKIP_FAISS_TESTS=1");
        return None;
    }
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed (pip install faiss-cpu numpy)");
    assert!(
        o.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// tests/faiss_helper.py: `faiss_helper.py verify FILE...` checks files
/// with real faiss (structure through the faiss API, and that faiss writes
/// them back byte for byte).
pub fn faiss_helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faiss_helper.py")
}

/// Every file directly inside `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Rows on a smooth low-dimensional manifold: `z·A + 0.05·noise` with
/// `z ~ N(0, 1)^latent`, so nearest neighbours are well separated (no
/// near-ties), as with real speech features.
pub fn latent(n: usize, d: usize, latent: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a: Vec<f32> = (0..latent * d).map(|_| normal(&mut rng)).collect();
    let mut x = Array2::<f32>::zeros((n, d));
    for mut row in x.rows_mut() {
        let z: Vec<f32> = (0..latent).map(|_| normal(&mut rng)).collect();
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..latent).map(|r| z[r] * a[r * d + j]).sum::<f32>() + 0.05 * normal(&mut rng);
        }
    }
    x
}

/// The GPU backend with software adapters allowed; `None` (skip) only when
/// no adapter exists and RVC_INDEX_SKIP_GPU_TESTS=1.
pub fn gpu() -> Option<rvc_index::compute::gpu::GpuBackend> {
    match rvc_index::compute::gpu::GpuBackend::new(true) {
        Ok(g) => Some(g),
        Err(e) if std::env::var("RVC_INDEX_SKIP_GPU_TESTS").as_deref() == Ok("1") => {
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("no GPU adapter ({e}); set RVC_INDEX_SKIP_GPU_TESTS=1 to skip"),
    }
}

/// Uniform values in [-1, 1).
pub fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// Start `cmd` with the debug-build pause hook at `point` and return once
/// the pause is reached (the marker file appears), so a test can kill it
/// at a known place.
pub fn spawn_paused(mut cmd: Command, point: &str, marker: &Path) -> std::process::Child {
    let _ = std::fs::remove_file(marker);
    let child = cmd
        .env("RVC_INDEX_PAUSE_AT", point)
        .env("RVC_INDEX_PAUSE_MARKER", marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rvc-index");
    let t = std::time::Instant::now();
    while !marker.exists() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "never reached {point}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

/// `rvc-index batch LOGS --device cpu --quiet --json EXTRA…`: whether it
/// succeeded, its stderr (the table), and the JSON it printed on stdout.
pub fn batch_json(logs: &Path, extra: &[&str]) -> (bool, String, serde_json::Value) {
    let mut args = vec![
        "batch",
        logs.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    let j = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    (o.status.success(), err, j)
}

/// A small IVF-Flat index built by us over 300 rows of a 16-wide mixture,
/// written to `dir/x.npy` and `dir/x.index`; returns both paths.
pub fn small_index(dir: &Path) -> (PathBuf, PathBuf) {
    let x = dir.join("x.npy");
    ndarray_npy::write_npy(&x, &mixture(300, 16, 3, 5)).unwrap();
    let index = dir.join("x.index");
    let o = run(&[
        "build",
        x.to_str().unwrap(),
        "--factory",
        "IVF4,Flat",
        "--device",
        "cpu",
        "-o",
        index.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (x, index)
}
