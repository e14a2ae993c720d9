//! k-means on the baseline harness's synthetic data (or a `.npy` matrix),
//! with faiss's IVF parameters, on the CPU backend; prints one JSON object
//! with the total and per-iteration seconds, objectives and how many rows
//! each iteration searched from scratch.
//!
//!   cargo run --release --example kmeans_time -- N D K [options]
//!   cargo run --release --example kmeans_time -- --npy FILE K [options]
//!
//! Options: `--niter I` (10), `--seed S` (data seed, 0), `--kmeans-seed S`
//! (1234), `--write-npy FILE` (save the generated rows and stop),
//! `--centroids FILE` (save the centroids as .npy), `--prune auto|off|bounds|on`
//! (default auto: the pruned path where it pays; off = every row and every
//! centroid scanned in full each iteration), `--assign-only` (time one
//! assignment of every row to the centroids after `--niter` iterations:
//! brute force, and the pruned pass for each number of leading dimensions,
//! with its candidates per row and whether its labels agree), `--only-m M`
//! (after `--niter` iterations, one pruned pass with M leading dimensions,
//! or brute force for M = 0, and nothing else: for `perf stat`).

use std::path::PathBuf;
use std::time::Instant;

use rvc_index::compute::cpu::CpuBackend;
use rvc_index::train::kmeans::{KmeansParams, Pruning, train_with};
use rvc_index::{Error, Metric, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let (mut niter, mut seed, mut kseed) = (10usize, 0u64, 1234u32);
    let (mut npy, mut write_npy, mut cent) = (None, None, None);
    let mut prune = Pruning::Auto;
    let mut assign_only = false;
    let mut only_m = None;
    let mut it = args.iter();
    let bad = |what: &str| Error::Invalid(format!("kmeans_time: bad {what}"));
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| bad(a));
        match a.as_str() {
            "--niter" => niter = val()?.parse().map_err(|_| bad("--niter"))?,
            "--seed" => seed = val()?.parse().map_err(|_| bad("--seed"))?,
            "--kmeans-seed" => kseed = val()?.parse().map_err(|_| bad("--kmeans-seed"))?,
            "--npy" => npy = Some(PathBuf::from(val()?)),
            "--write-npy" => write_npy = Some(PathBuf::from(val()?)),
            "--centroids" => cent = Some(PathBuf::from(val()?)),
            "--assign-only" => assign_only = true,
            "--only-m" => only_m = Some(val()?.parse().map_err(|_| bad("--only-m"))?),
            "--prune" => {
                prune = match val()?.as_str() {
                    "auto" => Pruning::Auto,
                    "off" => Pruning::Off,
                    "on" => Pruning::On,
                    "bounds" => Pruning::Bounds,
                    _ => return Err(bad("--prune")),
                }
            }
            _ => pos.push(a.clone()),
        }
    }
    let num = |i: usize| -> Result<usize> {
        pos.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("positional arguments (N D K, or --npy FILE K)"))
    };
    let t = Instant::now();
    let (x, k) = match &npy {
        Some(p) => (rvc_index::io::features::load_file_or_dir(p)?, num(0)?),
        None => (
            rvc_index::synthetic::database(num(0)?, num(1)?, seed)?,
            num(2)?,
        ),
    };
    let load_s = t.elapsed().as_secs_f64();
    if let Some(p) = write_npy {
        ndarray_npy::write_npy(&p, &x).map_err(|e| Error::Invalid(e.to_string()))?;
        println!(
            "{{\"wrote\": {:?}, \"n\": {}, \"d\": {}}}",
            p,
            x.nrows(),
            x.ncols()
        );
        return Ok(());
    }
    let mut params = KmeansParams::ivf(k, Metric::L2);
    params.niter = niter;
    params.seed = kseed;
    let backend = CpuBackend::new();
    let t = Instant::now();
    let km = train_with(&backend, x.view(), &params, prune, |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    if let Some(m) = only_m {
        // One pruned pass with `m` leading dimensions (m = 0: brute force),
        // for cycle counts with `perf stat`.
        use rvc_index::compute::cpu::{assign_top2_with, pruned};
        let t = Instant::now();
        if m == 0 {
            assign_top2_with(backend.isa(), x.view(), km.centroids.view())?;
        } else {
            let pr = pruned::Pruner::new(backend.isa(), x.view()).expect("a pruner");
            let cs = pr.prepare(km.centroids.view());
            eprintln!("setup {:?}", t.elapsed());
            let t = Instant::now();
            pr.assign(x.view(), pruned::Rows::All, &cs, m);
            eprintln!("pass {:?}", t.elapsed());
        }
        return Ok(());
    }
    if assign_only {
        return assign_report(&backend, x.view(), km.centroids.view());
    }
    if let Some(p) = cent {
        ndarray_npy::write_npy(&p, &km.centroids).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let out = serde_json::json!({
        "n": x.nrows(),
        "d": x.ncols(),
        "k": k,
        "train_rows": km.train_rows,
        "threads": rayon::current_num_threads(),
        "prune": format!("{prune:?}"),
        "load_s": load_s,
        "kmeans_s": secs,
        "final_objective": km.final_assignment.as_ref()
            .map(|a| a.distances.iter().map(|&v| v as f64).sum::<f64>()),
        "iterations": km.iterations,
    });
    println!("{out}");
    Ok(())
}

/// Time one assignment of every row of `x` to `c`, brute force and pruned.
fn assign_report(
    backend: &CpuBackend,
    x: ndarray::ArrayView2<f32>,
    c: ndarray::ArrayView2<f32>,
) -> Result<()> {
    use rvc_index::compute::cpu::{assign_top2_with, pruned};
    let kernel = backend.isa();
    let t = Instant::now();
    let (brute, _) = assign_top2_with(kernel, x, c)?;
    let brute_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pr = pruned::Pruner::new(kernel, x).ok_or_else(|| Error::Invalid("no pruner".into()))?;
    let setup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cs = pr.prepare(c);
    let prepare_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (chosen, cost) = pr.choose(x, &cs, 256);
    let choose_s = t.elapsed().as_secs_f64();
    let mut per_m = Vec::new();
    for m in pr.choices() {
        let (_, e0) = pr.work();
        let t = Instant::now();
        let r = pr.assign(x, pruned::Rows::All, &cs, m);
        let secs = t.elapsed().as_secs_f64();
        let (_, e1) = pr.work();
        let differ = r
            .labels
            .iter()
            .zip(&brute.labels)
            .filter(|(a, b)| a != b)
            .count();
        // Where the labels differ, how close the two centroids are (f64
        // distances, relative to ‖x‖² + ‖c‖²): genuine near-ties or not.
        let mut worst_gap = 0f64;
        for (i, (&a, &b)) in r.labels.iter().zip(&brute.labels).enumerate() {
            if a != b {
                let d = |j: u32| -> (f64, f64) {
                    let (xr, cr) = (x.row(i), c.row(j as usize));
                    let dist = xr
                        .iter()
                        .zip(cr.iter())
                        .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                        .sum();
                    let scale = xr
                        .iter()
                        .chain(cr.iter())
                        .map(|&v| (v as f64).powi(2))
                        .sum();
                    (dist, scale)
                };
                let ((da, sa), (db, _)) = (d(a), d(b));
                worst_gap = worst_gap.max((da - db).abs() / sa);
            }
        }
        per_m.push(serde_json::json!({
            "m": m, "seconds": secs, "vs_brute": secs / brute_s,
            "candidates_per_row": (e1 - e0) as f64 / x.nrows() as f64,
            "labels_differing_from_brute": differ,
            "max_gap_where_differing": worst_gap,
        }));
    }
    let out = serde_json::json!({
        "n": x.nrows(), "d": x.ncols(), "k": c.nrows(), "kernel": kernel.name(),
        "threads": rayon::current_num_threads(),
        "brute_top2_s": brute_s,
        "brute_gflops": 2.0 * (x.nrows() * c.nrows() * x.ncols()) as f64 / brute_s / 1e9,
        "pruner_setup_s": setup_s, "prepare_centroids_s": prepare_s,
        "choose_s": choose_s, "chosen_m": chosen, "estimated_cost_vs_brute": cost,
        "pruned": per_m,
    });
    println!("{out}");
    Ok(())
}
