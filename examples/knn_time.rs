//! Time exact k-NN on the CPU backend (used by `benches/compare_knn.py` and
//! `benches/compare_qe.py`), or write the harness's synthetic matrix.
//!
//!   cargo run --release --example knn_time -- gen N D SEED OUT.npy
//!   cargo run --release --example knn_time -- knn X.npy Y.npy l2|ip K[,K...] [REPEATS]
//!   cargo run --release --example knn_time -- self X.npy l2|ip K[,K...] [REPEATS]
//!
//! `knn` / `self` print one JSON line per k: the best and all wall seconds
//! of `Backend::knn(x, y)` / `Backend::knn_self(x)`.

use std::time::Instant;

use ndarray::Array2;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::{Error, Metric, Result};

fn load(p: &str) -> Result<Array2<f32>> {
    rvc_index::io::features::load_matrix(std::path::Path::new(p))
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        a.get(i)
            .map(String::as_str)
            .ok_or_else(|| Error::Invalid("missing argument (see the file's header)".into()))
    };
    let usage = || Error::Invalid(format!("bad argument in {a:?} (see the file's header)"));
    match arg(0)? {
        "gen" => {
            let n = arg(1)?.parse().map_err(|_| usage())?;
            let d = arg(2)?.parse().map_err(|_| usage())?;
            let seed = arg(3)?.parse().map_err(|_| usage())?;
            let x = rvc_index::synthetic::database(n, d, seed)?;
            rvc_index::io::features::write_npy_atomic(std::path::Path::new(arg(4)?), x.view())?;
        }
        mode @ ("knn" | "self") => {
            let x = load(arg(1)?)?;
            let off = if mode == "knn" { 1 } else { 0 };
            let y = if mode == "knn" {
                Some(load(arg(2)?)?)
            } else {
                None
            };
            let metric: Metric = match arg(2 + off)? {
                "l2" => Metric::L2,
                "ip" => Metric::InnerProduct,
                _ => return Err(usage()),
            };
            let ks: Vec<usize> = arg(3 + off)?
                .split(',')
                .map(|k| k.parse().map_err(|_| usage()))
                .collect::<Result<_>>()?;
            let repeats: usize = a.get(4 + off).and_then(|r| r.parse().ok()).unwrap_or(3);
            let b = CpuBackend::new();
            for k in ks {
                let mut times = Vec::new();
                for _ in 0..repeats.max(1) {
                    let t = Instant::now();
                    let nn = match &y {
                        Some(y) => b.knn(x.view(), y.view(), k, metric)?,
                        None => b.knn_self(x.view(), k, metric)?,
                    };
                    times.push(t.elapsed().as_secs_f64());
                    std::hint::black_box(nn);
                }
                let best = times.iter().copied().fold(f64::INFINITY, f64::min);
                println!(
                    "{{\"mode\": \"{mode}\", \"nq\": {}, \"nb\": {}, \"d\": {}, \"k\": {k}, \"metric\": \"{metric}\", \"kernel\": \"{}\", \"threads\": {}, \"best_s\": {best:.4}, \"times_s\": {times:?}}}",
                    x.nrows(),
                    y.as_ref().map_or(x.nrows(), |y| y.nrows()),
                    x.ncols(),
                    b.isa().name(),
                    rayon::current_num_threads()
                );
            }
        }
        _ => return Err(usage()),
    }
    Ok(())
}
