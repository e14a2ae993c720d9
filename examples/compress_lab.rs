//! Compare `compress` schedules on one matrix, in one process, alternating
//! between them so that a loaded machine slows every candidate alike.
//!
//!   cargo run --release --example compress_lab -- X.npy K ROUNDS NAME:key=v,key=v ...
//!
//! Keys: groups, coarse_iters, coarse_sample, fine_iters, alloc_power,
//! refine_iters, neighbours, rescue, seed, batch_size. For each run it prints one JSON
//! line: wall and CPU seconds of the fit (CPU: user + system of the whole
//! process, from /proc/self/stat), the distances computed, the inertia per
//! row of every stage, and the exact inertia per row (all rows, or the first
//! EVAL_ROWS rows of a fixed permutation when that variable is set, the same
//! rows for every candidate).

use std::time::Instant;

use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rvc_index::compute::Backend;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::train::minibatch::{self, CompressParams};
use rvc_index::{Error, Result};

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    (get(11) + get(12)) / tick
}

fn parse(spec: &str, k: usize) -> Result<(String, CompressParams)> {
    let bad = || Error::Invalid(format!("bad candidate {spec:?}"));
    let (name, kv) = spec.split_once(':').unwrap_or((spec, ""));
    let mut p = CompressParams::new(k);
    for item in kv.split(',').filter(|s| !s.is_empty()) {
        let (key, v) = item.split_once('=').ok_or_else(bad)?;
        let u = || v.parse::<usize>().map_err(|_| bad());
        match key {
            "groups" => p.groups = Some(u()?),
            "coarse_iters" => p.coarse_iters = u()?,
            "coarse_sample" => p.coarse_sample = u()?,
            "fine_iters" => p.fine_iters = u()?,
            "refine_iters" => p.refine_iters = u()?,
            "neighbours" => p.neighbours = u()?,
            "seed" => p.seed = u()? as u64,
            "batch_size" => p.batch_size = u()?,
            "rescue" => p.rescue = v.parse().map_err(|_| bad())?,
            "alloc_power" => p.alloc_power = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    Ok((name.to_string(), p))
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        return Err(Error::Invalid("usage: see the file's header".into()));
    }
    let x = rvc_index::io::features::load_matrix(std::path::Path::new(&a[0]))?;
    let k: usize = a[1].parse().map_err(|_| Error::Invalid("K".into()))?;
    let rounds: usize = a[2].parse().map_err(|_| Error::Invalid("ROUNDS".into()))?;
    let cands = a[3..]
        .iter()
        .map(|s| parse(s, k))
        .collect::<Result<Vec<_>>>()?;
    let backend = CpuBackend::new();
    let eval: Array2<f32> = match std::env::var("EVAL_ROWS").ok().and_then(|v| v.parse().ok()) {
        Some(m) if m < x.nrows() => {
            let mut idx: Vec<usize> = (0..x.nrows()).collect();
            idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(99));
            x.select(Axis(0), &idx[..m])
        }
        _ => x.clone(),
    };
    for round in 0..rounds {
        for (name, p) in &cands {
            let (w, c) = (Instant::now(), cpu_seconds());
            // CPU seconds per phase: each step is charged the time since the previous one.
            let mut stage_cpu = std::collections::BTreeMap::<&str, f64>::new();
            let mut last = c;
            let r = minibatch::fit(&backend, x.view(), p, |s| {
                let now = cpu_seconds();
                *stage_cpu.entry(s.phase).or_default() += now - last;
                last = now;
            })?;
            let (wall, cpu) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
            let inertia = minibatch::inertia(&backend, eval.view(), r.centroids.view(), |_| {})?
                / eval.nrows() as f64;
            let s = &r.summary;
            println!(
                "{}",
                serde_json::json!({
                    "name": name, "round": round, "wall_s": wall, "cpu_s": cpu,
                    "passes": s.passes, "inertia_per_row": inertia,
                    "coarse": s.coarse_inertia_per_row.last(),
                    "fine": s.fine_inertia_per_row, "refine": s.refine_inertia_per_row,
                    "stage_seconds": s.stage_seconds, "stage_cpu_s": stage_cpu, "stage_evaluations": s.stage_evaluations, "reseeded": s.reseeded,
                    "group_rows": [s.group_rows_min, s.group_rows_max],
                    "backend": backend.info().name,
                })
            );
        }
    }
    Ok(())
}
